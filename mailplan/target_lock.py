"""The target's apply lock: one ``mailplan apply`` at a time per vpopmail installation,
whatever spec, state file or machine it runs from.

The state file's lock (:func:`mailplan.state.locked`) keeps two applies of one state
apart; two specs for two domains, a cron job and an administrator, or two copies of the
spec directory each have a state of their own, and would run vpopmail's tools and
Maildir imports on the same target at once. So apply also holds a lock on the target,
from before it reads the target until it ends, taken by :func:`lock_target`:

* **Where.** ``.mailplan-apply.lock`` in vpopmail's home directory (the spec's
  ``target.vpopmail_dir``, links resolved on the target): every apply that changes that
  installation runs its tools from there, however its spec spells the path, and only
  those who may change vpopmail (root, vpopmail) can write there, so no other local user
  can take or plant the lock. Two installations on one machine (two sandboxes, two
  test runs) have two locks; ``/run/lock`` would make them wait for each other.
* **How it is held.** A small program (:data:`PROGRAM`, stdlib only, run with the host's
  Python as the Maildir writer is: :mod:`mailplan.interpreter`) takes an exclusive,
  non-blocking ``flock`` on the file, writes the holder's description into it, says
  ``locked`` and then reads its standard input until it ends. That input is the
  apply's connection (an SSH channel, or a pipe from mailplan for a local target): when
  the apply ends, is killed (``kill -9``), or its connection drops, the program reads
  end of input and exits, and the kernel releases the lock, so it is never stale.
  :meth:`~mailplan.connectors.base.Connector.hold` ties it to the connection, whose
  close ends it first (the next apply then finds the lock free at once).
* **Who holds it.** The description (:class:`Holder`: the machine mailplan runs on,
  its process id, the state file, the spec, when it started, this apply's id, plus
  the holder program's pid on the target; nothing secret) is what a refused apply
  names (:class:`~mailplan.errors.TargetLocked`).
* **A holder left behind.** A connection ends on the target only when word of its end
  reaches it: when the machine running the apply vanishes from the network (a laptop
  loses its Wi-Fi or VPN), sshd keeps the session until its ``ClientAliveInterval`` or
  TCP keepalive notices (hours, by default), and the holder with it. Two such holders
  are provably abandoned (:meth:`Holder.abandoned`), and taken over: the apply's own,
  when it reconnects after a lost connection (:mod:`mailplan.retry`; nothing of this
  apply uses that connection any more), and that of an apply of the same state file on
  this machine whose process is no longer running (the state's lock, held around this
  one, leaves no other apply of it running here). The holder program ends that holder
  on the target, having checked in ``/proc`` that it is that very program (so a pid
  reused since is never signalled), takes the lock and the apply says so. Where that
  cannot be done (no ``/proc``, another user's process, ...), the apply's own holder is
  waited for a few seconds, then the retry's back-off; every other holder is refused.
  The abandoned connection may also have left a Maildir writer running on the target,
  which is safe: writers make messages visible and append the import ledger under an
  ``flock`` on the Maildir, one at a time, and one that finds the ledger grown since it
  looked lists the folder and drops its copies of what the other made visible
  (:mod:`mailplan.mail.writer`); neither removes the other's files in ``tmp/`` or its
  record of a batch while it runs. That connection's remote shell runs nothing more: it
  reads its commands from the connection.

The mechanism is not the apply's alone: a :class:`LockKind` names a lock's file and how
its messages speak of it, a :class:`LockHolder` subclass describes who holds it, and
:func:`take` starts the holder program for any of them. The queue commands that change
a qmail queue lock its directory with it (:mod:`mailplan.queue.lock`).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from mailplan import interpreter
from mailplan.connectors.base import CommandResult, Connector, Process
from mailplan.errors import ConnectionLost, HostError, TargetLocked
from mailplan.lock_program import PROGRAM
from mailplan.text import escape

#: the lock file's name in vpopmail's home directory
LOCK_NAME = ".mailplan-apply.lock"
#: how the program is named in its errors (a missing or too old Python)
PROGRAM_NAME = "mailplan's apply lock"
#: seconds an apply that reconnected waits for its own earlier holder to end
OWN_WAIT = 10.0

def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class LockKind:
    """One kind of lock taken by :data:`PROGRAM`: its file's name in the directory it
    guards, and how its messages name it."""

    name: str  # the lock file's name in the directory
    what: str  # the lock in words: "apply lock"
    place: str  # the directory in words: "vpopmail_dir"
    program: str  # the program in an interpreter's errors: "mailplan's apply lock"
    where: str  # the host it lives on in words: "target"
    place_hint: str  # what to do when the directory is missing
    access_hint: str  # what to do when the lock cannot be taken otherwise


APPLY_LOCK = LockKind(
    LOCK_NAME, "apply lock", "vpopmail_dir", PROGRAM_NAME, "target",
    place_hint="check target.vpopmail_dir in the spec, or install vpopmail",
    access_hint="mailplan's user on the target must be able to write in vpopmail_dir, as "
    "vpopmail's tools must: root or vpopmail (or sudo: true on the host)")


@dataclass(frozen=True, kw_only=True)
class LockHolder:
    """Who holds a lock: one run of mailplan, described without any secret (a subclass
    per kind of run adds what names it)."""

    #: the ``mailplan`` word of its description, telling the kinds apart
    KIND: ClassVar[str] = ""
    machine: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started: str = field(default_factory=_now)

    def line(self) -> str:
        """The description the holder program writes into the lock file (ASCII)."""
        return json.dumps({"mailplan": self.KIND, **asdict(self)}, sort_keys=True)

    @classmethod
    def words(cls, doc: dict[str, Any]) -> list[str]:
        """What, beside machine, pid and start, names a holder of this kind."""
        return []

    def owns(self, doc: dict[str, Any]) -> bool:
        """Whether a lock file's description is this very run's (an earlier connection)."""
        return False


@dataclass(frozen=True, kw_only=True)
class Holder(LockHolder):
    """Who holds a target's apply lock: one apply."""

    KIND: ClassVar[str] = "apply"
    state: str
    spec: str
    #: one apply's mark, the same on each of its connections
    apply: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def of(cls, state: Path, spec: Path) -> Holder:
        """This apply, of ``spec`` with the state file ``state``."""
        return cls(state=str(state), spec=str(spec))

    @classmethod
    def words(cls, doc: dict[str, Any]) -> list[str]:
        return [f"state {doc.get('state')}", f"spec {doc.get('spec')}"]

    def owns(self, doc: dict[str, Any]) -> bool:
        return doc.get("apply") == self.apply

    def abandoned(self, doc: dict[str, Any]) -> bool:
        """Whether the apply a lock file's description names has provably let its lock
        go, though the target has not seen its connection end: this very apply's
        earlier connection (:meth:`owns`), or an apply of the same state file on this
        machine whose process is no longer running. Either may be taken over
        (:func:`lock_target`); any other holder is not."""
        mark = doc.get("apply")
        if not isinstance(mark, str) or not mark:
            return False  # the holder program could not tell its process
        if self.owns(doc):
            return True
        return (doc.get("mailplan") == self.KIND and doc.get("machine") == self.machine
                and _same_file(doc.get("state"), self.state) and not _running(doc.get("pid")))

    def took_over(self, doc: dict[str, Any]) -> str:
        """The line that tells the administrator that the lock was taken over from the
        holder ``doc`` describes (:meth:`abandoned`)."""
        if self.owns(doc):
            return ("took over the apply lock from this apply's earlier connection, which "
                    "the target had not seen end")
        return escape("took over the apply lock from this machine's earlier apply of the "
                      f"same state (pid {doc.get('pid')}, since {doc.get('started')}), which "
                      "is no longer running; its connection had not ended on the target")


def _same_file(said: Any, mine: str) -> bool:
    """Whether a description's state path is ``mine`` (both with links resolved)."""
    return isinstance(said, str) and os.path.realpath(said) == os.path.realpath(mine)


def _running(pid: Any) -> bool:
    """Whether ``pid`` may be a running process on this machine (anything but a pid
    that certainly is not: one that does not parse, or whose look-up fails otherwise,
    counts as running)."""
    if type(pid) is not int or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # EPERM: another user's, running
        return True
    return True


def describe(text: str, holder: type[LockHolder] = Holder, where: str = "target") -> str:
    """A lock file's description in words (``unknown`` and what it says, when it is not
    one of mailplan's of ``holder``'s kind); ``where``: the host the lock is on."""
    doc = _doc(text)
    if doc is None or doc.get("mailplan") != holder.KIND:
        shown = text.strip()[:200]
        return "holder unknown" + (f" (the lock file says: {escape(shown)})" if shown else "")
    parts = [f"pid {doc.get('pid')} on {doc.get('machine')}", *holder.words(doc),
             f"since {doc.get('started')}"]
    if "lock_pid" in doc:
        parts.append(f"its lock held on the {where} by pid {doc['lock_pid']}")
    return escape(", ".join(parts))


def _doc(text: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def lock_target(conn: Connector, vpopmail_dir: str, holder: Holder,
                notice: Callable[[str], None] = lambda text: None) -> tuple[str, int]:
    """Take ``conn``'s apply lock for ``holder`` and keep it for as long as ``conn`` is
    open (:meth:`Connector.hold`); return the lock file's path on the target and the
    process id there of the program that holds it. Refused
    (:class:`TargetLocked`) when another apply holds it; :class:`ConnectionLost` when
    this very apply's earlier connection still holds it after :data:`OWN_WAIT` seconds
    (the retry's back-off then waits longer).

    A holder that is provably abandoned (:meth:`Holder.abandoned`: this apply's own
    earlier connection, or a dead apply of the same state on this machine) is taken
    over once instead: the holder program ends it on the target, checking it is that
    very program (:data:`PROGRAM`), and ``notice`` is told (:meth:`Holder.took_over`).
    Where that cannot be done, the above applies."""
    deadline = time.monotonic() + OWN_WAIT
    tried = False
    while True:
        proc, doc = take(conn, APPLY_LOCK, vpopmail_dir, holder)
        theirs = _doc(str(doc.get("holder", ""))) or {}
        if "locked" not in doc and not tried and holder.abandoned(theirs):
            tried = True  # once: a takeover that cannot be done is not tried again
            proc, doc = take(conn, APPLY_LOCK, vpopmail_dir, holder, end=theirs["apply"])
            if "ended" in doc:
                notice(holder.took_over(theirs))
        if "locked" in doc:
            conn.hold(proc)
            return str(doc["locked"]), int(doc["pid"])
        said = str(doc.get("holder", ""))
        if not holder.owns(_doc(said) or {}):
            raise TargetLocked(
                f"another mailplan apply is changing this target ({describe(said)}); "
                "nothing was changed", host=conn.name,
                hint=f"wait for it to end, then run this apply again. Its lock "
                f"({escape(str(doc['busy']))}) is held by a process on the target that ends "
                "with that apply's connection; if that apply is gone but the target has not "
                "seen its connection end, see docs/troubleshooting.md")
        if time.monotonic() >= deadline:
            raise ConnectionLost("the target still holds this apply's lock for its "
                                 "earlier connection, which it has not seen end yet",
                                 host=conn.name)
        time.sleep(0.2)


def take(conn: Connector, kind: LockKind, directory: str, holder: LockHolder,
         end: str = "") -> tuple[Process, dict[str, Any]]:
    """Start the holder program for a ``kind`` lock in ``directory`` (links resolved on
    the host); its process and its answer: ``locked`` (the process holds the lock until
    its input ends: the caller keeps it, :meth:`Connector.hold`; ``ended``: the pid of
    the holder it took the lock over from) or ``busy`` (it has ended; ``holder`` says
    who holds the lock), else a :class:`HostError`. ``end``: an apply's id, whose
    holder the program ends to take the lock over (:data:`PROGRAM`; apply's lock only,
    never the queue's)."""
    line = interpreter.launch(conn.python, PROGRAM, [directory, kind.name, holder.line(),
                                                     kind.place, kind.what,
                                                     *([end] if end else [])],
                              program=kind.program)
    proc = conn.start(line)
    try:
        answer = proc.readline()
    except OSError as exc:
        proc.kill()
        raise ConnectionLost(f"connection lost while taking the {kind.what}: {exc}",
                             host=conn.name) from None
    except BaseException:
        proc.kill()
        raise
    try:
        doc = json.loads(answer) if answer.strip() else None
    except ValueError:
        doc = None
    if isinstance(doc, dict) and "locked" in doc:
        return proc, doc
    res = _end(proc, conn, kind)
    if isinstance(doc, dict) and "busy" in doc:
        return proc, doc
    said = interpreter.complaint(res.stderr_text)
    if said and interpreter.about_interpreter(said):
        hint = interpreter.hint(conn)
    elif said and said.startswith(f"cannot reach {kind.place}") or \
            said and said.endswith("is not a directory"):
        hint = kind.place_hint
    else:
        hint = kind.access_hint
    raise HostError(said or f"the {kind.what} could not be taken (exit {res.returncode}): "
                    f"{res.stderr_text[:200] or 'no message'}", host=conn.name,
                    step=f"take the {kind.what}", hint=hint)


def _end(proc: Process, conn: Connector, kind: LockKind) -> CommandResult:
    """The holder program's end, once it has answered anything but ``locked``."""
    proc.close_stdin()
    try:
        return proc.wait()
    except OSError as exc:
        raise ConnectionLost(f"connection lost while taking the {kind.what}: {exc}",
                             host=conn.name) from None
