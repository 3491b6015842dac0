"""The state file: what mailplan has done, so re-runs converge and --prune is safe.

Layout: ``STATE`` is a JSON document with a format version, a lineage (a uuid set once)
and a serial that rises with every recorded step. While an apply runs, each finished
step is appended to ``STATE.journal`` (one JSON line, flushed and fsynced before the
next step starts); at the end the journal is folded into ``STATE``, which is replaced
atomically (temp file, fsync, rename). A run killed at any point leaves a journal that
the next run folds in first. Both files are created mode 0600
(:mod:`mailplan.private_files` writes them). ``STATE.lock`` is held with flock for the
whole apply, so a second apply on the same state is refused, with the holder named.

The target itself is the authority on what exists; the state adds what cannot be read
there: which domains and users mailplan created (only those may be pruned), and the
history of applies. It belongs to one spec, whose path (from the state file's
directory) the first apply records (``spec_path``): another spec's plan, apply or
verify is refused, as it would take what this one made for its own to prune
(:meth:`State.refuse_other_spec`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailplan.errors import StateError
from mailplan.private_files import open_private_append, read_mine, write_all, write_private
from mailplan.routing.managed import apply_routing_entry
from mailplan.state_check import RECOVER, STATE_VERSION, check_shape, check_version

if TYPE_CHECKING:
    from mailplan.diff import Managed

UNREAD: Any = object()  # State.load's data when the caller has not read the file


def mailbox_owner(key: str) -> tuple[str, str]:
    """The domain and user of a mailbox record's key (``user@domain/FOLDER``, the
    folder may hold ``/`` and ``@``)."""
    user, _, domain = key.partition("/")[0].rpartition("@")
    return domain, user


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class State:
    """An in-memory state document bound to its file."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data
        self._journal: int | None = None

    @property
    def journal_path(self) -> Path:
        """Where steps of a running apply are appended."""
        return self.path.with_name(self.path.name + ".journal")

    @property
    def exists(self) -> bool:
        """Whether the state has ever been written."""
        return self.path.exists()

    @classmethod
    def load(cls, path: Path, *, fold: bool = True, data: Any = UNREAD) -> State:
        """Read the state (folding in a journal left by a killed run), or start a new one.

        ``fold=False`` (for plan, which holds no lock) reads the journal without
        rewriting any file. ``data``: the state file's JSON, when the caller has read it
        already (``show``: neither file is refused for its owner or mode then), checked
        here as if read from ``path``.
        """
        shown = data is not UNREAD
        if data is UNREAD and path.exists():
            try:
                data = json.loads(read_mine(path, path).decode("utf-8"))
            except (OSError, ValueError) as exc:
                raise StateError(f"{path}: the state file is unreadable or corrupt ({exc})",
                                 hint=RECOVER) from None
        if data is not UNREAD:
            check_version(path, data)
        else:
            data = {"format_version": STATE_VERSION, "lineage": str(uuid.uuid4()),
                    "serial": 0, "managed": {}, "history": [], "current_apply": None}
        state = cls(path, data)
        state._fold_journal(write=fold, check=not shown)
        return state

    @property
    def lineage(self) -> str:
        """The uuid given to this state when it was created."""
        return str(self.data["lineage"])

    @property
    def serial(self) -> int:
        """Rises with every recorded step."""
        return int(self.data["serial"])

    def mail(self) -> dict[str, Any]:
        """Per mailbox (``user@domain/FOLDER``): messages and bytes imported, checkpoint.

        ``imported``/``bytes`` count what apply journaled. Syncs are pipelined, so a run
        killed at the wrong moment can leave one batch durable on the target but not
        journaled; the next run finds it there (never imports it twice) and does not
        count it. ``checkpoint.count`` is the exact number of messages through the
        checkpoint."""
        return dict(self.data.get("mail", {}))

    def managed(self) -> tuple[set[str], set[tuple[str, str]]]:
        """Domains and (domain, user) pairs mailplan created (a domain that only holds
        users mailplan created is not one: it was there before). A step begun and not
        recorded (``intend``) counts only once the next apply found its object there."""
        domains = {d for d, body in self.data["managed"].items() if "created" in body}
        users = {(d, u) for d, body in self.data["managed"].items() for u in body["users"]}
        return domains, users

    def view(self) -> Managed:
        """What the plan needs of the record: :meth:`managed`, and the domains mailplan
        made whose postmaster password may still be vadddomain's random one: recorded by
        finding them after a cut (``postmaster_unset`` until the spec's is set), or whose
        creation began and was not recorded yet."""
        from mailplan.diff import Managed

        domains, users = self.managed()
        claims = [c for c in self.intents().values() if "routing" not in c]
        return Managed(frozenset(domains), frozenset(users), frozenset(
            d for d, body in self.data["managed"].items() if "postmaster_unset" in body),
            frozenset(c["domain"] for c in claims if not c.get("user")),
            frozenset({(d, u) for d, body in self.data["managed"].items()
                       for u, made in body["users"].items() if "password_unset" in made}
                      | {(c["domain"], c["user"]) for c in claims if c.get("user")}),
            frozenset((d, u, made["password_fp"]) for d, body in self.data["managed"].items()
                      for u, made in body["users"].items()
                      if isinstance(made.get("password_fp"), str)))

    def intents(self) -> dict[str, dict[str, Any]]:
        """Change id -> what the step will have created: steps begun, not recorded."""
        return dict(self.data.get("intents", {}))

    def intend(self, change_id: str, claim: dict[str, Any]) -> None:
        """Journal, before a step runs, what it will have created (its effect)."""
        self._journal_entry({"id": change_id, "at": _now(), "intent": claim})

    def drop_intent(self, change_id: str) -> None:
        """Forget an intent whose step left nothing (its object is not on the target)."""
        self._journal_entry({"id": change_id, "at": _now(), "intent": None})

    def _spec_key(self, spec_path: Path) -> str:
        """The spec as the state file records it: its path from the state file's
        directory (both resolved), so a spec and its state file moved together (another
        checkout, a renamed directory) still go together."""
        return os.path.relpath(spec_path.resolve(), self.path.resolve().parent)

    def refuse_other_spec(self, spec_path: Path) -> None:
        """Refuse a state file another spec uses (its path from the state file's
        directory, recorded by the first apply: :meth:`claim`): what that spec made
        would be this one's to prune. A state file without the record (none applied
        yet, or written before it was kept) is this spec's, and the next apply records
        it."""
        recorded, here = self.data.get("spec_path"), self._spec_key(spec_path)
        if recorded is not None and recorded != here:
            raise StateError(
                f"{self.path}: this state file belongs to the spec {recorded}, not to {here} "
                "(paths from the state file's directory): what that spec made would be "
                "taken for this one's (--prune would delete it); nothing was read or "
                "changed", hint="give each spec a state file of its own (leave --state and "
                "state: out: SPEC.state.json beside the spec); if this spec is that one "
                "renamed or moved without its state file, set \"spec_path\" in the state "
                "file to the second path (docs/troubleshooting.md)")

    def claim(self, spec_path: Path) -> None:
        """For an apply of the spec at ``spec_path``, under the state's lock: refuse the
        state file of another spec, and record this one's where none is: in a state file
        written before the record was kept, at once (adopted, even by an apply with
        nothing to do); in a new one, with its first save (an apply that changes nothing
        writes no state file)."""
        self.refuse_other_spec(spec_path)
        if "spec_path" not in self.data:
            self.data["spec_path"] = self._spec_key(spec_path)
            if self.path.exists():
                self.save()

    def begin(self, plan_id: str) -> None:
        """Start recording an apply of ``plan_id``."""
        self.data["current_apply"] = {"plan_id": plan_id, "started": _now(), "done": []}
        self.save()
        self._journal = open_private_append(self.journal_path)

    def record(self, change_id: str, effect: dict[str, Any]) -> None:
        """Record one finished step: appended and fsynced before the caller goes on."""
        self._journal_entry({"id": change_id, "at": _now(), **effect})

    def _journal_entry(self, entry: dict[str, Any]) -> None:
        self._apply_entry(entry)  # in memory first: the state's final save holds it too
        if self._journal is None:
            raise StateError("internal: record() outside an apply")
        size = os.fstat(self._journal).st_size
        try:
            write_all(self._journal, (json.dumps(entry, sort_keys=True) + "\n").encode())
            os.fsync(self._journal)
        except OSError as exc:
            # a line cut short (a full disk takes part of a write) would join the next
            # one and make the journal unreadable: cut it back to its last whole line
            with contextlib.suppress(OSError):
                os.ftruncate(self._journal, size)
            raise StateError(
                f"cannot write the journal {self.journal_path}: {exc.strerror or exc}",
                hint=f"free space in {self.journal_path.parent} and run apply again: this "
                "step is done on the target, and the next plan finds it there") from None

    def finish(self, result: str, summary: dict[str, Any]) -> None:
        """End the apply: history entry, fold the journal, write the state atomically."""
        current = self.data.get("current_apply") or {}
        self.data["history"].append({"plan_id": current.get("plan_id"),
                                     "started": current.get("started"), "finished": _now(),
                                     "result": result, **summary})
        self.data["current_apply"] = None
        try:  # what is folded in now, should the journal outlive this save (a kill)
            self.data["journal_folded"] = hashlib.sha256(
                self.journal_path.read_bytes()).hexdigest()
        except OSError:
            self.data.pop("journal_folded", None)
        self.save()
        if self._journal is not None:
            os.close(self._journal)
            self._journal = None
        with contextlib.suppress(FileNotFoundError):
            self.journal_path.unlink()

    def interrupted(self) -> None:
        """Say the last apply recorded was interrupted (a stop while apply waited to
        retry the attempt a dropped connection ended, which recorded it failed)."""
        if self.data["history"]:
            self.data["history"][-1]["result"] = "interrupted"
            self.save()

    def save(self) -> None:
        """Write the state document atomically."""
        write_private(self.path, json.dumps(self.data, indent=1, sort_keys=True) + "\n")

    def _apply_entry(self, entry: dict[str, Any]) -> None:
        """Fold one journal entry into the state document: an intent, or a step done."""
        intents = self.data.setdefault("intents", {})
        if "intent" in entry:  # a step about to run (or, None, one that left nothing)
            if entry["intent"] is None:
                intents.pop(entry["id"], None)
            else:
                intents[entry["id"]] = entry["intent"]
            return
        intents.pop(entry["id"], None)
        self.data["serial"] = self.serial + 1
        current = self.data.get("current_apply")
        if current is not None:
            current["done"].append(entry["id"])
        if apply_routing_entry(self.data, entry):
            return  # an alias/forward/alias-domain step: never a domain or user
        if "mailbox" in entry:
            box = self.data.setdefault("mail", {}).setdefault(
                entry["mailbox"], {"imported": 0, "bytes": 0})
            box["imported"] += int(entry.get("imported", 0))
            box["bytes"] += int(entry.get("bytes", 0))
            if "mboxrd" in entry:  # how the mail imported was read (source.mboxrd)
                box["mboxrd"] = bool(entry["mboxrd"])
            if "checkpoint" in entry:
                box["checkpoint"] = point = entry["checkpoint"]
                # the most messages through it an apply found on the target and did not
                # import (show's count), kept when the source deletes mail (state_check)
                count = point.get("count") if isinstance(point, dict) else None
                if type(count) is int and type(box.get("found", 0)) is int \
                        and count - box["imported"] > box.get("found", 0):
                    box["found"] = count - box["imported"]
            return
        self._account_entry(entry)

    def _account_entry(self, entry: dict[str, Any]) -> None:
        """A domain or user step done: what mailplan manages (made, adopted, deleted)."""
        managed = self.data["managed"]
        domain, user = entry.get("domain"), entry.get("user")
        if entry.get("created") and domain:
            body = managed.setdefault(domain, {"users": {}})
            if user:
                body["users"][user] = {"created": entry["at"]}
            else:  # the domain itself: only its own step says mailplan created it
                body.setdefault("created", entry["at"])
            # made now (vadduser refuses a directory holding files): none of the mail
            # recorded under its name is in it, the Maildir that held it was deleted
            # outside mailplan (a vdeluser by hand); kept, show would count that mail
            # with the new import, and its empty folders be taken for the user's
            # deletions and not made again
            self._drop_mail(domain, user)
        if domain and not user and entry.get("created") and (entry.get("adopted") or not
                                                            entry.get("postmaster_set")):
            # found after a cut before the spec's postmaster password, or made without one
            managed.setdefault(domain, {"users": {}})["postmaster_unset"] = entry["at"]
        if entry.get("postmaster_set") and domain:  # the spec's postmaster password is set
            managed.setdefault(domain, {"users": {}}).pop("postmaster_unset", None)
        if entry.get("adopted") and domain and user and entry.get("created"):
            # found after a cut between vadduser's temporary password and the hash
            managed[domain]["users"][user]["password_unset"] = entry["at"]
        if entry.get("password_set") and domain and user:  # the user's password is set
            managed.get(domain, {"users": {}})["users"].get(user, {}).pop("password_unset",
                                                                         None)
        if "password_fp" in entry and domain and user:
            # the password mailplan set (a keyed fingerprint): the plan tells a password
            # changed on the new server since from one changed on the old server
            made = managed.get(domain, {"users": {}})["users"].get(user)
            if made is not None and entry["password_fp"]:
                made["password_fp"] = entry["password_fp"]
            elif made is not None:
                made.pop("password_fp", None)
        if entry.get("deleted") and domain:
            if user:
                managed.get(domain, {"users": {}})["users"].pop(user, None)
            else:
                managed.pop(domain, None)
            # the Maildirs went with it: their import records and checkpoints too, or
            # show would count that mail, and again once the user is made anew
            self._drop_mail(domain, user)

    def _drop_mail(self, domain: str, user: str | None) -> None:
        """Forget the import records and checkpoints of ``user``'s mailboxes, or of
        every user of ``domain`` (``user`` None)."""
        mail = self.data.get("mail", {})
        for key in list(mail):
            where, who = mailbox_owner(key)
            if where == domain and (user is None or who == user):
                del mail[key]

    def _fold_journal(self, *, write: bool, check: bool = True) -> None:
        try:
            raw = read_mine(self.journal_path, self.path, check=check)
        except FileNotFoundError:
            return
        if self.data.get("current_apply") is None and \
                self.data.get("journal_folded") == hashlib.sha256(raw).hexdigest():
            # finish() saved the state with this very journal folded in and was stopped
            # before removing it: folding it again would count its steps twice and add
            # a run that never was
            if write:
                with contextlib.suppress(FileNotFoundError):
                    self.journal_path.unlink()
            return
        lines = raw.split(b"\n")
        if lines and lines[-1] != b"":
            lines = lines[:-1]  # a line cut by a kill was never fsynced: never recorded
        for number, line in enumerate(lines, start=1):
            if not line:
                continue
            try:
                self._apply_entry(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                raise StateError(f"{self.journal_path}:{number}: corrupt journal line ({exc})",
                                 hint=RECOVER) from None
        check_shape(self.journal_path, self.data)  # what its lines added holds the same
        current = self.data.get("current_apply") or {}
        self.data["history"].append({"plan_id": current.get("plan_id"),
                                     "started": current.get("started"), "finished": None,
                                     "result": "interrupted"})
        self.data["current_apply"] = None
        if write:
            self.data["journal_folded"] = hashlib.sha256(raw).hexdigest()
            self.save()
            self.journal_path.unlink()


@contextlib.contextmanager
def locked(state_path: Path) -> Iterator[None]:
    """Hold the state's lock; refuse at once, naming the holder, if someone has it."""
    lock_path = state_path.with_name(state_path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise StateError(f"cannot open the state's lock file {lock_path}: "
                         f"{exc.strerror or exc}", hint=f"the directory {lock_path.parent} "
                         "must exist and be writable (or choose another --state)") from None
    os.fchmod(fd, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown"
            raise StateError(f"{state_path} is locked by another mailplan apply ({holder})",
                             hint="wait for it to finish; if that process is gone the lock "
                             "is released automatically") from None
        info = f"pid {os.getpid()} on {socket.gethostname()} since {_now()}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        yield
    finally:
        os.close(fd)
