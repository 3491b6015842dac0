"""``mailplan queue flush``: make qmail-send retry every queued delivery now (SIGALRM).

qmail-send retries a failed delivery on a back-off schedule; on SIGALRM it retries every
one at once (qmail-send(8); qmHandle's ``-a``, daemontools' ``svc -a``). That is what an
admin wants right after a cutover: MX switched, DNS fixed, a remote host back up.

Flushing only signals qmail-send: it changes nothing in the queue and takes no lock
(neither the queue lock nor apply's). It costs two channels: one read of the queue
(the count ``stat`` prints, and qmail-send's status, taken in the same channel as for
every queue command) and one for the signal, sent only when the status said "running".
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from mailplan.errors import HostError
from mailplan.queue import control as ctl
from mailplan.queue import ops
from mailplan.queue.formats import printable
from mailplan.queue.model import stats

STEP = "flush queue"


class NothingToFlush(HostError):
    """qmail-send does not run, so there is nobody to signal."""


@dataclass(frozen=True)
class Flushed:
    """What ``flush`` did: the command sent and the messages queued when it was."""

    via: str
    command: str
    messages: int


def flush(target: ops.Target) -> Flushed:
    """Send qmail-send SIGALRM by the target's control method, if its status says it runs.

    Refuses (nothing signalled) when qmail-send is stopped or its state is unknown, and
    when the signal command fails.
    """
    control, conn = target.control, target.conn
    dump = target.read(step=STEP, mess="none")
    if dump.status == ctl.STOPPED:
        note = ctl.lock_note(dump.status, dump.sendmutex, dump.sendmutex_pids)
        hint = ("start qmail-send; flush only asks a running qmail-send to retry its "
                "queue now") if note is None else (
            f"{note}: signal it yourself, or pass a --status-cmd and --flush-cmd that "
            "find it (--control custom)")
        raise NothingToFlush(f"qmail-send is not running (status via {control.describe()}): "
                             "nothing to flush; nothing was signalled", host=conn.name,
                             step=STEP, hint=hint)
    ops.refuse_unknown(target, dump.status, STEP)
    command = control.flush()
    result = ctl.run_detached(conn, command)
    if result.returncode != 0:
        said = printable(result.stderr_text.strip()) or "no output"
        raise HostError(f"sending qmail-send SIGALRM via {control.describe()} failed (exit "
                        f"{result.returncode}: {said}); the queue was not changed",
                        host=conn.name, step=STEP,
                        hint="run the command by hand to see why: " + command)
    return Flushed(via=_via(control), command=command,
                   messages=stats(dump).messages)


def _via(control: ctl.Control) -> str:
    """Whom the signal went through, in words."""
    if control.method == "process":
        return "every process named qmail-send"
    return "--flush-cmd" if control.method == "custom" else control.describe()


def flush_text(done: Flushed) -> str:
    """The one line ``queue flush`` prints."""
    return (f"asked qmail-send to retry every queued delivery now (SIGALRM via {done.via}: "
            f"{printable(done.command)}); {done.messages} message(s) in the queue\n")


def flush_json(done: Flushed) -> str:
    """``queue flush --json``."""
    return json.dumps({"signalled": True, "via": done.via, "command": done.command,
                       "messages": done.messages}, indent=2) + "\n"
