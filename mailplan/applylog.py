"""The apply log: one file per apply with every remote command, the steps and a summary.

By default the log goes beside the state file, ``STATE.logs/apply-<UTC timestamp>.log``
(directory 0700, file 0600); one named with ``--log`` goes where it is named, in a
directory that must exist. Each remote command is written as the connector's observer
reports it (:attr:`mailplan.connectors.base.Connector.observer`): the display form of
the command (secrets shown as ``(sensitive)``, never the rendered text), how long it
took, its exit status and output sizes, and the first line of its error output. Command
output itself is not logged: vuserinfo prints password hashes. The summary at the end
counts what was created, changed, deleted, imported, skipped, not migrated (the plan's
problems, each written to the log when the plan is made) and failed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mailplan import __version__
from mailplan.connectors.base import CommandObserver, CommandResult
from mailplan.desired import PASSWORD_SET_BACK
from mailplan.errors import MailplanError
from mailplan.names import human_size
from mailplan.plan import Change, Plan
from mailplan.private_files import open_private_append

MAX_COMMAND = 2000


def set_back_text(plan: Plan, log: Path) -> str:
    """What ``apply --quiet`` says on stderr (cron mails it) when ``plan`` sets back the
    password of users who changed theirs on the new server since mailplan set it (its
    warnings of kind :data:`~mailplan.desired.PASSWORD_SET_BACK` say so); "" when it
    sets none. The plan's warnings are otherwise only in the log, but this undoes what
    users did."""
    users = sum(p.kind == PASSWORD_SET_BACK for p in plan.warnings)
    return (f"Passwords set back: {users} user(s) had changed theirs on the new server "
            "since mailplan set it, and have the old server's again (listed in the log "
            f"{log}; target.passwords: create_only keeps a password changed there).\n"
            ) if users else ""


def default_log_path(state_path: Path, now: datetime | None = None) -> Path:
    """``STATE.logs/apply-YYYYmmddTHHMMSSZ.log`` beside the state file."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S.%fZ")
    return state_path.with_name(state_path.name + ".logs") / f"apply-{stamp}.log"


@dataclass
class Summary:
    """What one apply did, counted for the log and the final message."""

    created: int = 0
    changed: int = 0
    deleted: int = 0
    imported_messages: int = 0
    imported_bytes: int = 0
    mailboxes: int = 0
    #: deletions the plan holds that were left out (no --prune), and why
    skipped: int = 0
    skipped_why: str = "deletions left out without --prune"
    #: changes an interrupted or failed apply did not finish (the next run does them)
    unfinished: int = 0
    #: the plan's problems: what the spec asks for that is not migrated
    not_migrated: int = 0
    #: lines finished steps said for the operator (``! ...`` on the output, ``step note:
    #: ! ...`` in the log: keywords not carried)
    noted: int = 0
    failed: list[str] = field(default_factory=list)
    result: str = "ok"

    def count(self, change: Change) -> None:
        """Count a finished step."""
        if change.kind == "mailbox":
            self.mailboxes += 1
        elif change.action == "create":
            self.created += 1
        elif change.action == "update":
            self.changed += 1
        else:
            self.deleted += 1

    def lines(self) -> list[str]:
        """The summary as text lines."""
        out = [f"result: {self.result}",
               f"created: {self.created}", f"changed: {self.changed}",
               f"deleted: {self.deleted}",
               f"imported: {self.imported_messages} message(s), "
               # a stopped import's journaled batches count, in no completed mailbox
               f"{human_size(self.imported_bytes)}; {self.mailboxes} mailbox(es) completed",
               f"skipped: {self.skipped}"
               + (f" ({self.skipped_why})" if self.skipped else ""),
               f"not migrated: {self.not_migrated} (the plan's problems"
               + (", listed above)" if self.not_migrated else ")"),
               f"failed: {len(self.failed)}"]
        if self.unfinished:
            out.insert(5, f"not finished: {self.unfinished} change(s) (the same command "
                       "again does them)")
        if self.noted:
            out.insert(-1, f"notes: {self.noted} (the lines with ! above)")
        out += [f"  failed: {f}" for f in self.failed]
        return out


NAMED_HINT = ("give --log a new file in an existing directory, or an earlier apply log "
              "to append to; nothing was applied")
#: how each line of an apply log begins (:meth:`ApplyLog.write`)
LOG_LINE = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def refuse_other_file(path: Path) -> None:
    """A ``--log`` that exists must be an apply log, appended to: another file (the spec,
    its state file or key, a password file, one tab completion away) would get the log
    appended and be made 0600, a device such as /dev/null too, for every user."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise MailplanError(f"{path}: cannot write the apply log there: {exc.strerror}",
                            hint=NAMED_HINT) from None
    if stat.S_ISREG(st.st_mode) and st.st_size:
        with contextlib.suppress(OSError), open(path, "rb") as fh:
            if LOG_LINE.match(fh.read(19)):
                return
    elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
        return  # empty: nothing to lose; a link: refused by the open, said there
    what = "a file that is no apply log of mailplan's" if stat.S_ISREG(st.st_mode) else \
        "not a regular file"
    raise MailplanError(f"{path}: {what}; the apply log would be appended to it and the "
                        "file made 0600", hint=NAMED_HINT)


class ApplyLog:
    """An open apply log; thread-safe (parallel mail workers write to it too)."""

    def __init__(self, path: Path, *, make_dir: bool = True) -> None:
        """``make_dir``: make the log's directory (the default one, beside the state
        file); else a missing one is refused: a log named by hand in a mistyped
        directory is not made somewhere new."""
        self.path = path
        if make_dir:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        elif not path.parent.is_dir():
            what = "is not a directory" if path.parent.exists() else "does not exist"
            raise MailplanError(f"{path}: cannot write the apply log there: {path.parent} "
                                f"{what}", hint=NAMED_HINT)
        else:
            refuse_other_file(path)
        try:
            fd = open_private_append(path)
        except OSError as exc:  # a link (O_NOFOLLOW), a directory we may not write
            why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
            raise MailplanError(f"{path}: cannot write the apply log there: {why}",
                                hint=NAMED_HINT) from None
        self._file = os.fdopen(fd, "w", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()
        self.commands = 0
        #: why the log stopped (a full disk): the apply goes on, its state is what counts
        self.failed: str | None = None

    def write(self, text: str) -> None:
        """One timestamped line (or block). A log that cannot be written (a full disk)
        stops; the apply does not stop for it, midway through a step."""
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        with self._lock:
            if self.failed is not None:
                return
            try:
                self._file.write(f"{stamp} {text}\n")
            except OSError as exc:
                self.failed = exc.strerror or str(exc)

    def header(self, **fields: object) -> None:
        """What this apply is: version, spec, plan, target, ..."""
        self.write(f"mailplan {__version__} apply")
        for key, value in fields.items():
            self.write(f"  {key}: {value}")

    def observer(self, host: str) -> CommandObserver:
        """A connector observer writing each command of ``host`` to this log."""
        def observe(command: str, result: CommandResult | None, seconds: float,
                    note: str) -> None:
            self.command(host, command, result, seconds, note)
        return observe

    def command(self, host: str, command: str, result: CommandResult | None, seconds: float,
                note: str = "") -> None:
        """Log one remote command (``command`` is already the masked display form)."""
        self.commands += 1
        shown = command if len(command) <= MAX_COMMAND else (
            command[:MAX_COMMAND] + f" ... ({len(command) - MAX_COMMAND} more characters)")
        status = "started" if result is None else (
            f"exit {result.returncode}, stdout {len(result.stdout)} B, "
            f"stderr {len(result.stderr)} B")
        if result is not None and result.returncode != 0 and result.stderr_text:
            status += f": {result.stderr_text.splitlines()[0][:300]}"
        extra = f" ({note})" if note else ""
        self.write(f"[{host}] {seconds:.3f}s {status}{extra}\n    $ " + shown.replace(
            "\n", "\n      "))

    def summary(self, summary: Summary) -> None:
        """The closing summary."""
        self.write("summary:")
        for line in summary.lines():
            self.write(f"  {line}")
        self.write(f"  remote commands logged: {self.commands}")

    def close(self) -> None:
        """Flush and close the file."""
        with self._lock:
            try:
                self._file.close()
            except OSError as exc:
                self.failed = self.failed or exc.strerror or str(exc)

