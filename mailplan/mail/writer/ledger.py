"""What a Maildir holds already: the import ledger (read, appended, and completed after
a killed writer) and the identities in its folders.

Part of the writer program (:mod:`mailplan.mail.writer`, which has the protocol):
stdlib only, Python 3.7, joined with the other parts into one script
(:mod:`mailplan.mail.writer.bundle`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Collection, Iterator

from mailplan.mail.writer.fs import append_lines, fsync_each, sync_filesystem, writer_alive
from mailplan.mail.writer.proto import (
    DIGEST_RE,
    DIR_FLAGS,
    FOLDER_MADE,
    HEADER,
    LEDGER,
    NAME_RE,
    PENDING_RE,
    AgentError,
    key,
)
from mailplan.mail.writer.quota import QuotaMixin

TYPE_CHECKING = False  # typing is not imported to run: it costs the agent's start 5 ms
if TYPE_CHECKING:  # annotations only
    from typing import Any, TextIO


class LedgerMixin(QuotaMixin):
    """The ledger and the folders' identities of the open Maildir."""

    def _recover_pending(self) -> tuple[int, dict[str, set[bytes]] | None]:
        """Append the ledger lines a killed writer owed: of each batch it recorded as
        pending (see ``_sync_batch``), the messages visible in their folder whose
        identity the ledger lacks. Visible by identity, in new/ or cur/ under any flags:
        a mail reader may have moved or renamed one since (new/ to cur/, a flag set); a
        message no longer there at all (never renamed, or deleted since) adds nothing.
        Then its record goes. Return how many lines were added, and the ledger (with
        them; ``ledger_size`` is its size) when there was a record to read it for. The
        record of a writer still running is left alone, as its tmp/ files are
        (``_clean_tmp``): it may be at work (``writer_alive``: another process that
        got a dead writer's id since is not one)."""
        stale = []
        for entry in os.listdir(self.root):
            m = PENDING_RE.match(entry)
            if m and (int(m.group(1)) == self.pid or not writer_alive(int(m.group(1)))):
                stale.append(os.path.join(self.root, entry))
        if not stale:
            return 0, None
        lock = os.open(self.root, DIR_FLAGS)
        try:
            with contextlib.suppress(OSError):  # as in _sync_batch
                fcntl.flock(lock, fcntl.LOCK_EX)
            (ledger, self.ledger_size), lines = self._read_ledger(), []
            owed: dict[str, set[bytes]] = {}  # dir -> identities the ledger lacks
            for path in stale:
                for dirname, (digest, occ) in self._read_pending(path):
                    ident = key(digest, occ)
                    if ident not in ledger.get(dirname, ()):
                        owed.setdefault(dirname, set()).add(ident)
            names: list[list[str]] = []  # the owed ones still visible, under their names
            for dirname, idents in owed.items():
                for d, o, _s, name in self._scan_dir(dirname):
                    ident = key(d, o)
                    if ident in idents and ident not in ledger.get(dirname, ()):
                        ledger.setdefault(dirname, set()).add(ident)
                        lines.append(f"{dirname}\t{d}\t{o}\n")
                        names.append([dirname, name])
            if lines:
                self.ledger_size = self._append_ledger(lines)
                self._count_quota(names)  # it died before counting them too
                sync_filesystem(self.root, [os.path.join(self.root, LEDGER)])
            for path in stale:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        finally:
            os.close(lock)
        return len(lines), ledger

    def _read_pending(self, path: str) -> Iterator[tuple[str, tuple[str, int]]]:
        """The (dir, identity) entries of a pending record; a torn or foreign entry is
        skipped."""
        try:
            with open(path, "rb") as fh:
                fields = fh.read().decode("utf-8", "replace").split("\0")
        except FileNotFoundError:
            return
        for k in range(0, len(fields) - 2, 3):
            dirname, digest, occ = fields[k:k + 3]
            if DIGEST_RE.match(digest) and occ.isascii() and occ.isdigit():
                try:
                    self._folder_path(dirname)
                except AgentError:
                    continue
                yield dirname, (digest, int(occ))

    def _read_ledger(self) -> tuple[dict[str, set[bytes]], int]:
        """The ledger's identities by folder (``key``'s bytes), and its size then."""
        ledger: dict[str, set[bytes]] = {}
        fh = self._ledger_file()
        if fh is None:
            return ledger, 0
        with fh:
            size = os.fstat(fh.fileno()).st_size
            for dirname, digest, occ in _ledger_lines(fh):
                if DIGEST_RE.match(digest):  # no message has another (a hand edit)
                    ledger.setdefault(dirname, set()).add(key(digest, occ))
        return ledger, size

    def _recorded_flags(self, dirname: str, wanted: Collection[bytes]) -> dict[bytes, str]:
        """The flags the ledger's flags lines (``FLAGS_LINE``) record for the messages of
        ``wanted`` in folder ``dirname``, by ``key`` (the last line of each counts): what
        the source had when a writer last wrote their flags. One read of the ledger."""
        recorded: dict[bytes, str] = {}
        fh = self._ledger_file()
        if fh is None:
            return recorded
        with fh:
            for line in fh:
                parts = line.rstrip("\n").split("\t")
                if len(parts) == 4 and parts[0] == dirname and DIGEST_RE.match(parts[1]) \
                        and parts[2].isascii() and parts[2].isdigit():
                    k = key(parts[1], int(parts[2]))
                    if k in wanted:
                        recorded[k] = parts[3]
        return recorded

    def _ledger_file(self) -> TextIO | None:
        """The ledger, open for reading as mailplan's readers read it (None: there is
        none yet)."""
        try:
            return open(os.path.join(self.root, LEDGER), encoding="utf-8",  # noqa: SIM115
                        errors="replace", newline="\n")
        except FileNotFoundError:
            return None

    def _append_ledger(self, lines: list[str]) -> int:
        """Append ``lines`` to the ledger (the caller holds the Maildir's lock); return
        the ledger's size after them."""
        fd = os.open(os.path.join(self.root, LEDGER), os.O_RDWR | os.O_CREAT | os.O_APPEND,
                     0o600)
        try:
            self._own(fd)
            # after a line torn by a writer killed mid-append: its own line, which no
            # reader takes (its batch's lines come again from the pending record)
            append_lines(fd, "".join(lines).encode("utf-8"))
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def _record_folder(self, dirname: str) -> None:
        """Append ``dirname TAB folder`` to the ledger: this writer made that folder. A
        plan without the state's record of it (a state file lost) reads that line, so a
        folder the user deleted since, one that held no message (no message line names
        it), is not made again. Durable when written, not with the next batch's sync
        (none may follow: a folder made with no message to import): the folder's
        directories first, then its line, as a batch's files are made durable before its
        lines (a line that outlived its folder in a crash would have a plan take the
        folder for one the user deleted). A few fsyncs per folder made, none per
        message."""
        self._append_durably([f"{dirname}\t{FOLDER_MADE}\n"],
                             first=[self._folder_path(dirname), self.root])

    def _append_durably(self, lines: list[str], first: list[str] | None = None) -> None:
        """Append ``lines`` to the ledger under the Maildir's lock, as a sync appends, and
        make them durable at once: ``first`` (paths fsynced before the lines are
        written), then the ledger and the Maildir (the ledger's name, when these lines
        made the file). Then the ledger's size is the one later syncs expect, when no
        other writer appended since ``open`` read it."""
        lock = os.open(self.root, DIR_FLAGS)
        try:
            with contextlib.suppress(OSError):  # as in _sync_batch
                fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                before = os.stat(os.path.join(self.root, LEDGER)).st_size
            except FileNotFoundError:
                before = 0
            fsync_each(first or [])
            after = self._append_ledger(lines)
            fsync_each([os.path.join(self.root, LEDGER), self.root])
            if before == self.ledger_size:
                self.ledger_size = after
        finally:
            os.close(lock)

    def _scan_dir(self, dirname: str) -> Iterator[tuple[str, int, str, str]]:
        """``(digest, occurrence, subdir, name)`` of each message file in the folder's
        new/ and cur/, read as the directory is (not listed whole: a folder of many
        messages costs memory only for what the caller keeps)."""
        base = self._folder_path(dirname)
        for sub in ("new", "cur"):
            try:
                entries = os.scandir(os.path.join(base, sub))
            except FileNotFoundError:
                continue
            with entries:
                for entry in entries:
                    m = NAME_RE.match(entry.name)
                    if m:
                        yield m.group("digest"), int(m.group("occ")), sub, entry.name

    def _present(self, dirname: str) -> set[bytes]:
        """The folder's identities as ``key``'s bytes: its ledger lines (taken from
        ``ledger``: one set per folder, not two), those under the earlier names of its
        directory ``F`` gave (``also``: a message the user deleted before the directory
        was renamed to today's name), and its files, then what is queued."""
        known = self.present.get(dirname)
        if known is None:
            known = self.ledger.pop(dirname, set())
            known.update(key(d, o) for d, o, _s, _n in self._scan_dir(dirname))
            self.present[dirname] = known
        for earlier in self.also.pop(dirname, ()):
            known.update(self.ledger.get(earlier, ()))
        return known

    def scan(self, req: dict[str, Any]) -> dict[str, Any]:
        only = req.get("dir")
        dirs = [only] if only is not None else list(self._folders())
        folders = {d: [[dg, o] for dg, o, _s, _n in self._scan_dir(d)] for d in dirs}
        # the ledger as it is on disk now (the agent keeps only its identities, by folder)
        lines: set[tuple[str, str, int]] = set()
        fh = self._ledger_file()
        if fh is not None:
            with fh:
                lines = {x for x in _ledger_lines(fh) if only is None or x[0] == only}
        return {"folders": folders, "ledger": [list(x) for x in sorted(lines)]}

    def reply_known(self, req: dict[str, Any]) -> None:
        """Reply to ``L`` with ``known``: ``{"known": "DIGEST OCC\\n..."}``, written a
        thousand lines at a time (its length is known beforehand: every line is 64
        hex digits, a space, the occurrence's digits and ``\\n``, two bytes in JSON), so
        the text is never whole in memory here, nor its JSON."""
        if req.get("dir") is None:
            raise AgentError("known needs a folder")
        known = self._present(req["dir"])
        head, tail = b'{"known": "', b'"}'
        self.out.write(HEADER.pack(b"R", len(head) + len(tail)
                                   + 35 * len(known) + sum(map(len, known))) + head)
        lines = []
        for k in known:
            lines.append(b"%s %s\\n" % (k[:32].hex().encode(), k[32:]))
            if len(lines) == 1024:
                self.out.write(b"".join(lines))
                lines.clear()
        self.out.write(b"".join(lines) + tail)
        self.out.flush()


def _ledger_lines(fh: TextIO) -> Iterator[tuple[str, str, int]]:
    """Each ledger line of ``fh`` as ``(dir, digest, occurrence)``, by the rule of
    mailplan's own ledger readers: lines end at \\n only, three fields, an ASCII-numeric
    occurrence; another line (a hand edit) is skipped."""
    for line in fh:
        parts = line.rstrip("\n").split("\t")
        if len(parts) == 3 and parts[2].isascii() and parts[2].isdigit():
            yield parts[0], parts[1], int(parts[2])
