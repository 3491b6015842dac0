"""Facts about what the source's mailboxes hold (read only): their messages'
identities and sizes.

A mailbox whose folder has nothing on the target yet is only counted where it is
(:func:`count_mailboxes`: every message of it is to be imported). Any other is read as
a stream (a byte range, :func:`mailplan.mail.windows.slice_command`) through the mbox
reader, which keeps only identities and sizes, to be compared with what the target
holds (:mod:`mailplan.facts.maildirs`), and with the flags of its files: what a message
found there gains (:mod:`mailplan.facts.flag_gain`). Whole reads of many mailboxes share
one ``tar`` stream (:func:`scan_mailboxes`). Where the source allows it, no read changes a
mailbox's access time (:mod:`mailplan.facts.noatime`). A mailbox with a checkpoint that
still matches (:mod:`mailplan.facts.checkpoints`) is read from the checkpoint on. Each
scan keeps the first and last 4 KiB it read, so a mailbox found entirely on the target
can be given a checkpoint too (:func:`mailplan.mailboxes.plan_mail`).

**Where a read may end.** A read ends at the size the listing saw, and the end of the data
read is a message boundary (for importing the last message and for a checkpoint) only
when the data ends the way a finished delivery leaves it: mail.local ends each message
with a blank line, so the data ends in ``\\n\\n`` (or ``\\r\\n\\r\\n``). A last message
not so terminated (a delivery still being written, or a writer that puts the blank line
before the next message) is left for the next run: it is not counted, and the read ends
(and apply's read, and its checkpoint, end) at its From_ line, exactly where a whole read
starts that message, so the next read resumes at a From_ line. A mailbox not modified for
:data:`~mailplan.facts.source_mailbox.SETTLED_AFTER` seconds (by the source's clock) is
settled: its end is final whatever its last bytes (a hand-made file whose last message
has no newline). One that is not, listed with a writer's fresh dot-lock beside it
(:attr:`~mailplan.facts.source_mailbox.SourceMailbox.locked`), has its last message left
for the next run whatever its last bytes: a delivery that stalled after an empty line
would look finished. A checkpoint whose offset is not followed by a From_ line (taken by an
older version inside a message) is not trusted: the mailbox is read whole
(:func:`~mailplan.facts.checkpoints.still_valid`). Where earlier reads ended, a whole
read ends a message too (:mod:`mailplan.facts.checkpoints`).
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from mailplan.connectors.base import Connector
from mailplan.errors import ConnectionLost
from mailplan.facts.flag_gain import FlagGain
from mailplan.facts.ledger_flags import FolderFlags
from mailplan.facts.noatime import read_tools, tar_read
from mailplan.facts.notes import MailboxNote, NoteKind
from mailplan.facts.scan_read import BLANK_END, ScanRead
from mailplan.facts.source_mailbox import SourceMailbox
from mailplan.mail.fromline import COUNT_SEPARATORS
from mailplan.mail.mbox import MailboxError, MboxReader
from mailplan.mail.windows import Windows, regular_only, slice_command
from mailplan.remote import run_batch
from mailplan.remote_files import tar_members
from mailplan.text import marked

HEAD_BYTES = 64 * 1024  # what a first import's plan reads of each mailbox


@dataclass
class MailboxScan(FlagGain):
    """The messages of one mailbox from ``start`` on (identities and sizes only)."""

    mailbox: SourceMailbox
    start: int
    total: int = 0  # messages read from ``start`` on
    todo: int = 0  # of those, not yet on the target
    todo_bytes: int = 0
    todo_digest: str = ""  # digest over the identities still to import
    end: int = 0
    skipped_internal: int = 0
    #: what the read found worth saying beside an error: the reader's warnings (a
    #: Content-Length it could not check: the mail is imported all the same) and the
    #: bytes it skipped (not imported), each a note of that kind
    notes: list[MailboxNote] = field(default_factory=list)
    error: str | None = None
    #: the first and last 4 KiB of what was read (from ``start`` to ``end``)
    seen: Windows | None = None
    #: a first import: From_ lines counted on the source, only the head read here
    counted: bool = False
    #: read with no identities to compare (``known`` None): each message's digest, its
    #: occurrence among the messages read, its size, the Maildir flags its import gives
    #: it (None: it goes to new/, which holds none) and the IMAP keywords it carries,
    #: until :meth:`number`
    appended: list[tuple[str, int, int, str | None, Collection[str]]] = field(
        default_factory=list)
    #: the last message read was left for the next run (not terminated by a blank line
    #: in a mailbox not settled): ``end`` is its From_ line, where apply's read ends
    held_back: bool = False
    #: messages found on the target (read with the flags of its files, ``there``) whose
    #: file lacks Maildir flags or IMAP keywords the source has: what to add, by identity
    #: (:meth:`Identities.key`), as the flags, then the keywords after a space each
    #: (:func:`~mailplan.facts.flag_gain.split_gain`); only what a plan adds is held,
    #: not every message
    gain: dict[bytes, str] = field(default_factory=dict)

    def number(self, seed: dict[str, int], known: set[tuple[str, int]],
               there: FolderFlags | None = None) -> None:
        """Number the ``appended`` messages after the ``seed`` (how often each digest
        comes before ``start``) and count those not in ``known``, as a read with both
        would have; ``there``: the flags of the folder's files found (``gain``)."""
        todo = hashlib.sha256()
        self.todo = self.todo_bytes = 0
        for sha, rel, size, flags, keywords in self.appended:
            occurrence = seed.get(sha, 0) + rel
            if (sha, occurrence) not in known:
                self.todo += 1
                self.todo_bytes += size
                todo.update(f"{sha}:{occurrence};".encode())
            elif there and flags is not None:
                self.compare_flags((sha, occurrence), flags, there, keywords)
        self.todo_digest = todo.hexdigest()[:16]
        self.appended = []


def open_stream(conn: Connector, mailbox: SourceMailbox, start: int, end: int) -> object:
    """A streaming reader of the mailbox from byte ``start`` to ``end`` (one channel):
    the bytes apply reads, not more mail that arrived since the listing.

    A plan reads by name (here, the windows and the counts): what it reads only goes into
    the plan, for the admin. apply's read, which moves mail into a Maildir, reads the
    file the listing found only (:class:`mailplan.mail.snapshot.SnapshotStream`,
    ``ident``), at the cost of a ``stat`` that a plan of thousands of mailboxes does not
    pay (1.4 ms each, a quarter of an unchanged mailbox's re-plan). Only a regular file
    is read (:func:`~mailplan.mail.windows.regular_only`): one swapped for a named pipe
    since the listing is refused, not waited on."""
    return conn.start_stream(regular_only(mailbox.path, slice_command(
        mailbox.path, start, end - start, noatime=read_tools(conn).dd)))


def _scan_stream(stream: object, mailbox: SourceMailbox, start: int, mboxrd: bool, host: str,
                 known: set[tuple[str, int]] | None, ends: Collection[int] = (),
                 there: FolderFlags | None = None, *, head: bool = False
                 ) -> MailboxScan:
    # Only counts and a running digest are kept: memory does not grow with the mailbox.
    # With ``known`` None (a read from a checkpoint), each message's identity is kept
    # for MailboxScan.number instead (numbered there, after the messages before
    # ``start``): memory grows with the appended mail only.
    # The reader is given what apply's gives it (no skip_leading: a read from a checkpoint
    # starts at a From_ line, still_valid saw to that). Which messages count and where
    # the read ends: ScanRead (mailplan.facts.scan_read).
    # ``ends``: where earlier reads ended (Checkpoint.ends); what comes before the last of
    # them was final then, and is never left for the next run. ``there``: the flags of
    # the message files on the target, by identity key: a message found there whose
    # file lacks a flag the source gives it goes to ``gain``. ``head``: ``stream`` is the
    # file's first bytes only, cut anywhere: of its warnings only the one about the
    # file's start is sure (MboxSummary.lead).
    scan = MailboxScan(mailbox, start, seen=Windows(_Limit(stream, mailbox.size - start)))
    reader = MboxReader(scan.seen, offset=start, mboxrd=mboxrd, mtime=mailbox.mtime,  # type: ignore[arg-type]
                        path=f"{host}:{mailbox.path}", ends=ends)
    read = ScanRead(scan, reader, known, there, ends)
    try:
        cut = read.events()
    except MailboxError as exc:
        cut = read.unfinished_at()
        if cut is None:
            scan.error = exc.message
            return scan
    read.end(cut)
    scan.todo_digest = read.todo.hexdigest()[:16]
    scan.skipped_internal = reader.summary.skipped_internal
    warnings = reader.summary.warnings
    if head:
        warnings = [reader.summary.lead] if reader.summary.lead else []
    said: tuple[tuple[NoteKind, list[str]], ...] = (
        ("warning", warnings), ("problem", reader.summary.skipped))
    scan.notes = [MailboxNote(mailbox.domain, mailbox.user, kind, mailbox.path,
                              f"{marked(mailbox.name)} ({mailbox.path}): {text}",
                              mailbox.folder)
                  for kind, texts in said for text in texts]
    return scan


def scan_mailbox(conn: Connector, mailbox: SourceMailbox, start: int, *, mboxrd: bool,
                 known: set[tuple[str, int]] | None, ends: Collection[int] = (),
                 there: FolderFlags | None = None) -> MailboxScan:
    """Read a mailbox from ``start``: how many messages, and which are not in ``known``
    (None: keep their identities for :meth:`MailboxScan.number`); ``ends``: where
    earlier reads ended (:attr:`~mailplan.facts.checkpoints.Checkpoint.ends`);
    ``there``: the flags of the folder's message files by identity key
    (:attr:`MailboxScan.gain`)."""
    if start and start == mailbox.size:
        return MailboxScan(mailbox, start, end=start)
    proc = open_stream(conn, mailbox, start, mailbox.size)
    scan = _scan_stream(proc, mailbox, start, mboxrd, conn.name, known, ends, there)
    if scan.error:
        proc.kill()  # type: ignore[attr-defined]
        return scan
    try:
        res = proc.wait()  # type: ignore[attr-defined]
    except OSError as exc:  # the connection dropped: not a property of the mailbox
        raise ConnectionLost(f"connection lost while reading {mailbox.path}: {exc}",
                             host=conn.name) from None
    if res.returncode != 0:
        why = res.stderr_text[:300] or res.returncode
        scan.error = f"cannot read {mailbox.path}: {why}"
    return scan


def _count_command(mb: SourceMailbox, noatime: bool) -> str:
    # the separators in [0, size) (what apply will read), then the first bytes; a mailbox
    # not settled, its last 4 bytes first (does it end with a blank line?); none of it
    # when the file is no longer a regular file (regular_only)
    tail = "" if mb.settled or mb.size < 4 else slice_command(
        mb.path, mb.size - 4, 4, noatime=noatime) + "; "
    return regular_only(mb.path, tail + slice_command(mb.path, 0, mb.size, noatime=noatime)
                        + " | " + COUNT_SEPARATORS + "; "
                        + slice_command(mb.path, 0, HEAD_BYTES, noatime=noatime))


def count_mailboxes(conn: Connector, mailboxes: Sequence[SourceMailbox], *,
                    mboxrd: bool) -> list[MailboxScan | None]:
    """First imports: nothing of these mailboxes is on the target yet, so every message
    is to be imported and the plan need not read them here (apply reads them once).
    Their From_ lines are counted where they are (``grep`` with the reader's own rule,
    :data:`~mailplan.mail.fromline.COUNT_SEPARATORS`; all mailboxes in one batch), and
    only the first 64 KiB of each are read and parsed, for what the plan must report:
    not an mbox, no From_ line at the start, the UW-IMAP pseudo message (not counted).
    The bytes to import are the file's size. None for a mailbox grep could not count (no
    GNU grep there), and for one whose last message may still be being written (not
    settled, no blank line at its end, or a writer's dot-lock beside it): the caller
    reads that one (and leaves that message for the next run)."""
    if not mailboxes:
        return []
    scans: list[MailboxScan | None] = []
    noatime = read_tools(conn).dd
    # one a writer holds locked is read by the caller, not counted here
    free = [mb for mb in mailboxes if not mb.locked]
    results = iter(run_batch(conn, [_count_command(mb, noatime) for mb in free])
                   if free else [])
    for mb in mailboxes:
        if mb.locked:
            scans.append(None)
            continue
        res = next(results)
        out = res.stdout
        if not mb.settled and mb.size >= 4:
            end, out = out[:4], out[4:]
            if not end.endswith(BLANK_END):
                scans.append(None)
                continue
        first, _, head = out.partition(b"\n")
        if res.returncode == 0 and not first.isdigit():
            scans.append(None)
            continue
        scan = _scan_stream(_MemberReader(io.BytesIO(head)), mb, 0, mboxrd, conn.name,
                            set(), head=True)
        if res.returncode != 0:
            scan.error = scan.error or f"cannot read {mb.path}: " + (
                res.stderr_text[:300] or f"exit {res.returncode}")
        if scan.error is None:
            count = max(int(first) - scan.skipped_internal, 0)
            scan = MailboxScan(
                mb, 0, total=count, todo=count, todo_bytes=mb.size, end=mb.size,
                todo_digest=hashlib.sha256(f"{mb.path}\0{mb.size}\0{mb.inode}\0{count}\0"
                                           .encode() + head).hexdigest()[:16],
                skipped_internal=scan.skipped_internal, counted=True, notes=scan.notes)
        scans.append(scan)
    return scans


class _MemberReader:
    """Only ``read``: the mbox reader must not seek inside a tar stream (or past a head)."""

    def __init__(self, handle: object) -> None:
        self._handle = handle

    def read(self, size: int = 65536) -> bytes:
        return self._handle.read(size)  # type: ignore[attr-defined,no-any-return]


class _Limit:
    """Only ``read``, and at most ``left`` bytes: a scan reads what apply will read (the
    size listed), not mail appended since (a tar member is the file as tar found it)."""

    def __init__(self, handle: object, left: int) -> None:
        self._handle, self._left = handle, left

    def read(self, size: int = 65536) -> bytes:
        if self._left <= 0:
            return b""
        data: bytes = self._handle.read(min(size, self._left))  # type: ignore[attr-defined]
        self._left -= len(data)
        return data


def _scan_with_tar(conn: Connector, mailboxes: Sequence[SourceMailbox], mboxrd: bool,
                   known: dict[str, set[tuple[str, int]] | None],
                   ends: dict[str, Collection[int]],
                   there: Mapping[str, FolderFlags]) -> dict[str, MailboxScan] | None:
    """Full scans of many mailboxes through one ``tar`` stream, by path: those tar read
    as it found them (the others are read again one by one, :func:`_read_again`); None
    when the stream cannot be trusted at all."""
    by_path = {mb.path: mb for mb in mailboxes}
    proc = conn.start_stream(f"LC_ALL=C {tar_read(conn)} --no-recursion "
                             "--quoting-style=literal --null -T -")
    out: dict[str, MailboxScan] = {}
    try:
        for name, handle in tar_members(proc, by_path):
            mb = by_path.get(name)
            if mb is not None:
                out[mb.path] = _scan_stream(_MemberReader(handle), mb, 0, mboxrd,
                                            conn.name, known[mb.path], ends.get(mb.path, ()),
                                            there.get(mb.path))
        res = proc.wait()
    except (OSError, tarfile.TarError):
        proc.kill()
        return None
    # decoded as find's paths are (stderr_text replaces bytes not UTF-8 and masks text
    # shaped like a secret: a name so changed would match no mailbox, and all be read again)
    again = _read_again(res.returncode, res.stderr.decode("utf-8", "surrogateescape"),
                        by_path)
    return None if again is None else {p: s for p, s in out.items() if p not in again}


#: a warning of GNU tar (``LC_ALL=C``, ``--quoting-style=literal``) that names a file it
#: did not read as it found it: changed (a delivery appended, a mail reader rewrote it),
#: shrank (padded with zeros), removed, or not to be opened
_TAR_SAID = re.compile(r"tar: (?P<path>.+): (?:file changed as we read it|File shrank by "
                       r"\d+ bytes; padding with zeros|File removed before we read it|"
                       r"(?:Warning: )?Cannot \w+: .+)")


def _read_again(status: int, stderr: str, paths: Collection[str]) -> set[str] | None:
    """The mailboxes of the shared read that tar's warnings name (``status`` 1: a file
    changed or vanished while it was read), to be read again one by one rather than
    trusted as a padded or cut copy; None (every one read again) for a fatal error, or
    a warning that names no mailbox of the read (a name tar wrote some other way). A
    line not from tar (sudo's "unable to resolve host", a login script's) names no file
    tar read: it is passed over, unless a name of the read holds a line end (that line
    may be the rest of tar's warning about it)."""
    if status not in (0, 1):
        return None
    named = set()
    whole_lines = not any("\n" in path for path in paths)
    for line in stderr.split("\n"):  # not splitlines: a name may hold a \r, a \f...
        if not line or (whole_lines and not line.startswith("tar: ")):
            continue
        said = _TAR_SAID.fullmatch(line)
        if said is None or said["path"] not in paths:
            return None
        named.add(said["path"])
    return named if named or status == 0 else None


Job = tuple[SourceMailbox, int, "set[tuple[str, int]] | None"]


def scan_mailboxes(conn: Connector, jobs: Sequence[Job], *, mboxrd: bool,
                   ends: dict[str, Collection[int]] | None = None,
                   there: Mapping[str, FolderFlags] | None = None
                   ) -> list[MailboxScan]:
    """Scan each (mailbox, start offset, identities already on the target): full reads
    share one channel. ``ends``: by mailbox path, where earlier reads ended
    (:attr:`~mailplan.facts.checkpoints.Checkpoint.ends`); ``there``: by mailbox path,
    the flags of its folder's message files on the target (:attr:`MailboxScan.gain`)."""
    ends = ends or {}
    there = there or {}
    full = [mb for mb, start, _known in jobs if start == 0]
    known = {mb.path: k for mb, _s, k in jobs}
    shared = _scan_with_tar(conn, full, mboxrd, known, ends, there) if len(full) > 1 \
        else None
    scans = []
    for mb, start, k in jobs:
        if shared is not None and start == 0 and mb.path in shared:
            scans.append(shared[mb.path])
        else:
            scans.append(scan_mailbox(conn, mb, start, mboxrd=mboxrd, known=k,
                                      ends=ends.get(mb.path, ()), there=there.get(mb.path)))
    return scans
