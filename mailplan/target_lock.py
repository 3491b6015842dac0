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
  its process id, the state file, the spec, when it started, plus the holder program's
  pid on the target; nothing secret) is what a refused apply names
  (:class:`~mailplan.errors.TargetLocked`). An apply that lost its connection and
  reconnects (:mod:`mailplan.retry`) takes the lock again; its own earlier holder, not
  yet ended on the target, is waited for a few seconds, then the retry's back-off.

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


def lock_target(conn: Connector, vpopmail_dir: str, holder: Holder) -> tuple[str, int]:
    """Take ``conn``'s apply lock for ``holder`` and keep it for as long as ``conn`` is
    open (:meth:`Connector.hold`); return the lock file's path on the target and the
    process id there of the program that holds it. Refused
    (:class:`TargetLocked`) when another apply holds it; :class:`ConnectionLost` when
    this very apply's earlier connection still holds it after :data:`OWN_WAIT` seconds
    (the retry's back-off then waits longer)."""
    deadline = time.monotonic() + OWN_WAIT
    while True:
        proc, doc = take(conn, APPLY_LOCK, vpopmail_dir, holder)
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
                "with that apply's connection, so it is never left behind; see "
                "docs/troubleshooting.md")
        if time.monotonic() >= deadline:
            raise ConnectionLost("the target still holds this apply's lock for its "
                                 "earlier connection, which it has not seen end yet",
                                 host=conn.name)
        time.sleep(0.2)


def take(conn: Connector, kind: LockKind, directory: str,
         holder: LockHolder) -> tuple[Process, dict[str, Any]]:
    """Start the holder program for a ``kind`` lock in ``directory`` (links resolved on
    the host); its process and its answer: ``locked`` (the process holds the lock until
    its input ends: the caller keeps it, :meth:`Connector.hold`) or ``busy`` (it has
    ended; ``holder`` says who holds the lock), else a :class:`HostError`."""
    line = interpreter.launch(conn.python, PROGRAM, [directory, kind.name, holder.line(),
                                                     kind.place, kind.what],
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
