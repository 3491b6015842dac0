"""Stopping and starting qmail-send around changes to its queue.

qmail-send keeps the queue's state in memory; deleting or renaming files under it
makes it loop on missing files. So changes happen only while it is stopped. A
:class:`Control` says how to ask whether it runs and how to stop and start it:

* ``process`` (default): only looks for a ``qmail-send`` process (``pgrep -x``); it
  cannot stop anything, so changes are refused while qmail-send runs;
* ``svc``: daemontools (``svc -d``/``svc -u`` on a service directory, ``svstat``);
* ``systemctl``: a systemd unit (``systemctl stop``/``start``/``is-active``);
* ``custom``: the operator's own status, stop and start commands, run through
  ``/bin/sh`` as given.

Each method also says how to send qmail-send SIGALRM (:meth:`Control.flush`), which
makes it retry every queued delivery now (``mailplan queue flush``, qmHandle's ``-a``).

Every status command says one of three things by its exit code: 0 qmail-send runs,
1 it does not (:data:`STOPPED`), anything else nobody knows (pgrep missing, exit 127,
or failing, 2 and 3; systemctl or svstat unable to tell). Only an explicit "not running"
counts as stopped; an unknown state refuses every change. With svc and systemctl a
``qmail-send`` process seen by pgrep also counts as running, so a qmail started some
other way is never edited under.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailplan.connectors.base import CommandResult, Connector
from mailplan.errors import HostError, MailplanError
from mailplan.shell import join

METHODS = ("process", "svc", "systemctl", "custom")
_PGREP = "pgrep -x qmail-send >/dev/null"
#: The exit code of a status command meaning "qmail-send does not run"; 0 means it
#: runs, any other code that its state is unknown.
RUNNING, STOPPED = 0, 1
#: svc and systemctl only: the service is down, but pgrep sees a qmail-send, one started
#: some other way. Stopping the service would not stop it, and starting the service
#: "again" afterwards would start a second qmail-send where the admin had it down.
ELSEWHERE = 4
# After the service manager said "stopped": pgrep's verdict, its 1 (no such process) the
# only way to "stopped", a qmail-send it finds one outside the service, its other
# failures (2, 3, 127 when missing) "unknown".
_PGREP_TOO = (f"{_PGREP}; r=$?; [ $r -eq 0 ] && exit {ELSEWHERE}; [ $r -eq 1 ] && exit 1; "
              "exit 2")
#: svstat prints "SERVICE: up (pid N) ..." or "SERVICE: down ..." (a case pattern each)
_SVSTAT_UP, _SVSTAT_DOWN = '*": up "*', '*": down "*'


def state(status: int | None) -> str:
    """A status command's exit code in words: running, stopped, unknown or not checked."""
    if status is None:
        return "not checked"
    return {RUNNING: "running", STOPPED: "stopped"}.get(status, "unknown")


class QmailRunning(HostError):
    """qmail-send runs and mailplan was not told how to stop it (or it did not stop)."""


@dataclass(frozen=True)
class Control:
    """How to find out whether qmail-send runs, and how to stop and start it."""

    method: str = "process"
    service: str = "/service/qmail-send"
    unit: str = "qmail"
    status_cmd: str | None = None
    stop_cmd: str | None = None
    start_cmd: str | None = None
    timeout: float = 30.0  # how long to wait for qmail-send to stop (--stop-timeout)
    flush_cmd: str | None = None  # custom: sends qmail-send SIGALRM (--flush-cmd)
    #: only to flush: custom then needs --status-cmd and --flush-cmd, not stop and start
    flush_only: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise MailplanError(f"unknown qmail-send control method {self.method!r}",
                                hint=f"use one of {', '.join(METHODS)}")
        if self.flush_only:
            if self.method == "custom" and not (self.status_cmd and self.flush_cmd):
                raise MailplanError("flush with --control custom needs --status-cmd and "
                                    "--flush-cmd; nothing was signalled",
                                    hint="--flush-cmd sends qmail-send SIGALRM, e.g. "
                                    "--flush-cmd 'pkill -ALRM -x qmail-send'; --status-cmd "
                                    "exits 0 while qmail-send runs and 1 when it does not")
            return
        if self.method == "custom" and not (self.status_cmd and self.stop_cmd
                                            and self.start_cmd):
            raise MailplanError("the custom control method needs --status-cmd, --stop-cmd "
                                "and --start-cmd",
                                hint="status exits 0 while qmail-send runs and 1 when it "
                                "does not (any other exit: unknown, changes are refused), "
                                "e.g. --status-cmd 'pgrep -x qmail-send'")

    def status(self) -> str:
        """Shell text exiting 0 while qmail-send runs, 1 when it does not, else unknown."""
        if self.method == "svc":
            # anything but up or down (supervise not running, no such directory) is no
            # answer
            return (f"s=$({join(['svstat', self.service])} 2>/dev/null) || exit 2\n"
                    f"case $s in {_SVSTAT_UP}) exit 0;; {_SVSTAT_DOWN}) ;; *) exit 2;; esac\n"
                    f"{_PGREP_TOO}")
        if self.method == "systemctl":
            # is-active: 0 active, 3 not running, the rest unknown. It says 3 for a unit
            # systemd does not know too (systemd issue 25680: a typo, or notqmail's
            # qmail-send.service under the default name qmail): that one's LoadState
            # is not-found, and its state unknown
            return (f"{join(['systemctl', 'is-active', '--quiet', self.unit])}; r=$?\n"
                    "[ $r -eq 0 ] && exit 0; [ $r -eq 3 ] || exit 2\n"
                    f"case $({join(['systemctl', 'show', '-p', 'LoadState', self.unit])} "
                    "2>/dev/null) in LoadState=loaded|LoadState=masked) ;; *) exit 2;; esac\n"
                    f"{_PGREP_TOO}")
        if self.method == "custom":
            assert self.status_cmd is not None
            return self.status_cmd
        return _PGREP

    def stop(self) -> str | None:
        """Shell text stopping qmail-send, None if this method cannot."""
        if self.method == "svc":
            return join(["svc", "-d", self.service])
        if self.method == "systemctl":
            return join(["systemctl", "stop", self.unit])
        return self.stop_cmd if self.method == "custom" else None

    def start(self) -> str | None:
        """Shell text starting qmail-send again, None if this method cannot."""
        if self.method == "svc":
            return join(["svc", "-u", self.service])
        if self.method == "systemctl":
            return join(["systemctl", "start", self.unit])
        return self.start_cmd if self.method == "custom" else None

    def flush(self) -> str:
        """Shell text sending qmail-send SIGALRM: it retries every queued delivery now."""
        if self.method == "svc":
            # svc -a on a service that is down signals nothing and exits 0 (the status
            # also says "running" when only pgrep sees a qmail-send)
            svstat = join(["svstat", self.service])
            return (f"s=$({svstat} 2>&1)\ncase $s in {_SVSTAT_UP}) ;; *) "
                    f'echo "svstat: $s" >&2; exit 3;; esac\n{join(["svc", "-a", self.service])}')
        if self.method == "systemctl":
            # --kill-who: systemd 252 (Debian 12) and every older one take it; newer ones
            # call it --kill-whom and still take this spelling
            return join(["systemctl", "kill", "--signal=SIGALRM", "--kill-who=main",
                         self.unit])
        if self.method == "custom":
            assert self.flush_cmd is not None
            return self.flush_cmd
        return "pkill -ALRM -x qmail-send"

    def describe(self) -> str:
        """The method in words, for messages."""
        return {"process": "pgrep -x qmail-send (cannot stop it)",
                "svc": f"daemontools service {self.service}",
                "systemctl": f"systemd unit {self.unit}",
                "custom": "the custom commands"}[self.method]


def elsewhere(control: Control, status: int | None) -> bool:
    """Whether ``status`` says the service is down but a qmail-send runs outside it."""
    return status == ELSEWHERE and control.method in ("svc", "systemctl")


def refuse_elsewhere(host: str, control: Control, status: int | None, step: str) -> None:
    """Refuse a change or a flush when qmail-send runs outside the service (see
    :data:`ELSEWHERE`): stopping the service would not stop it, and starting it after
    would start another."""
    if elsewhere(control, status):
        raise QmailRunning(
            f"qmail-send runs, but not under {control.describe()}, which says it is down "
            "and can neither stop nor signal it; nothing was changed", host=host, step=step,
            hint="stop qmail-send the way it was started, or name the service or unit "
            "that runs it (--service, --unit), or use --control custom")


def refusal_note(control: Control, status: int | None) -> str:
    """A dry run's warning that --execute will refuse (``status``: neither running nor
    stopped)."""
    if elsewhere(control, status):
        return (f"qmail-send runs, but not under {control.describe()}, which says it is "
                "down: --execute will refuse")
    return f"cannot tell whether qmail-send runs (status command exit {status}): " \
        "--execute will refuse"


def holders(pids: tuple[int, ...]) -> str:
    """Who holds lock/sendmutex, in words: ``a process (pid 812)``."""
    if not pids:
        return "a process"
    return f"a process (pid {', '.join(str(p) for p in pids)})"


def lock_note(status: int | None, sendmutex: str, pids: tuple[int, ...]) -> str | None:
    """The sentence saying that a process holds qmail-send's lock ``lock/sendmutex``
    (read from /proc/locks by the dump, never tried) while the status command does not
    say qmail-send runs; None when they agree. delete --execute and check --repair
    refuse then (:mod:`mailplan.queue.actions`), whatever the status said."""
    if sendmutex != "held" or status == RUNNING:
        return None
    said = {STOPPED: "says it is not running", None: "was not run"}.get(
        status, f"cannot tell (exit {status})")
    return (f"{holders(pids)} holds qmail-send's lock lock/sendmutex, as a running "
            f"qmail-send does, but the status command {said} (a qmail-send in another "
            "process table, or under a name it does not match?)")


def can_stop(conn: Connector, control: Control) -> str:
    """The stop command; refuses (before anything is issued) when the method has none."""
    stop = control.stop()
    if stop is None:
        raise QmailRunning("qmail-send is running and the control method 'process' cannot "
                           "stop it; nothing was changed", host=conn.name, step="stop qmail-send",
                           hint="stop qmail-send yourself, or pass --control svc|systemctl|"
                           "custom so mailplan stops and restarts it")
    return stop


def stop_and_wait(conn: Connector, control: Control) -> None:
    """Stop qmail-send and wait until the status says it is gone (one channel).

    Raises when the stop command fails or qmail-send is not seen stopped within
    ``control.timeout``; the caller starts it again in both cases.
    """
    timeout = control.timeout
    stop = can_stop(conn, control)
    tries = max(1, int(timeout / 0.5))
    # Wait for an explicit "stopped" (1); the last status code is printed on a timeout.
    script = (f"( {stop}\n) </dev/null >/dev/null 2>&1 || exit 3\n"
              f"i=0; while :; do\n"
              f"  ( {control.status()}\n) </dev/null >/dev/null 2>&1; st=$?\n"
              f"  [ $st -eq {STOPPED} ] && exit 0\n"
              f"  i=$((i+1)); [ $i -ge {tries} ] && {{ echo $st; exit 4; }}; sleep 0.5\n"
              "done\n")
    result = conn.run(script)
    if result.returncode == 3:
        raise HostError(f"stopping qmail-send via {control.describe()} failed; nothing was "
                        "changed", host=conn.name, step="stop qmail-send",
                        hint="run the stop command by hand to see its error")
    if result.returncode != 0:
        last = result.stdout.decode("ascii", "replace").strip()
        if last == str(RUNNING):
            what = "still runs"
        elif last == str(ELSEWHERE) and elsewhere(control, ELSEWHERE):
            what = f"still runs, outside {control.describe()} (which says it is down),"
        else:
            what = f"is in an unknown state (status command exit {last or '?'})"
        raise QmailRunning(f"qmail-send {what} {timeout:.0f} s after stopping it via "
                           f"{control.describe()}; nothing was changed", host=conn.name,
                           step="stop qmail-send")


def start(conn: Connector, control: Control) -> str | None:
    """Start qmail-send again; returns a warning instead of raising (the change is done)."""
    command = control.start()
    if command is None:
        return None
    result = run_detached(conn, command)
    if result.returncode != 0:
        return (f"starting qmail-send via {control.describe()} failed (exit "
                f"{result.returncode}): {result.stderr_text}; start it by hand")
    return None


def run_detached(conn: Connector, command: str) -> CommandResult:
    """Run a control command, its output (the first 2000 bytes) on stderr.

    Output goes to a file: a command that leaves a daemon holding our stdout open would
    otherwise keep the channel from ever ending.
    """
    return conn.run(f'f=$(mktemp) || exit 1\n( {command}\n) </dev/null >"$f" 2>&1; rc=$?\n'
                    'head -c 2000 "$f" >&2; rm -f "$f"; exit $rc')
