"""Facts about the source's mailboxes (read only): which mbox files it has, what each holds.

One ``find`` lists every spool file and every folder file of the migrated users. A
mailbox whose folder has nothing on the target yet is only counted where it is
(:func:`count_mailboxes`: every message of it is to be imported). Any other is read as
a stream (a byte range, :func:`mailplan.mail.windows.slice_command`) through the mbox
reader, which keeps only identities and sizes, to be compared with what the target
holds (:mod:`mailplan.facts.maildirs`). Where the source allows it, no read changes a
mailbox's access time (:mod:`mailplan.facts.noatime`).
When an earlier apply recorded a checkpoint for a mailbox (the offset it imported
through and digests of the first and the last 4 KiB before it) and both windows still
match, only the bytes after the checkpoint are read: an unchanged 1 GB spool costs two
4 KiB reads. Each scan keeps the first and last 4 KiB it read, so a mailbox found
entirely on the target can be given a checkpoint too (:func:`mailplan.mailboxes.plan_mail`).

**Where a read may end.** A read ends at the size the listing saw, and the end of the data
read is a message boundary (for importing the last message and for a checkpoint) only
when the data ends the way a finished delivery leaves it: mail.local ends each message
with a blank line, so the data ends in ``\\n\\n`` (or ``\\r\\n\\r\\n``). A last message
not so terminated (a delivery still being written, or a writer that puts the blank line
before the next message) is left for the next run: it is not counted, and the read ends
(and apply's read, and its checkpoint, end) at its From_ line, exactly where a whole read
starts that message, so the next read resumes at a From_ line. A mailbox not modified for
:data:`SETTLED_AFTER` seconds (by the source's clock) is settled: its end is final
whatever its last bytes (a hand-made file whose last message has no newline). A
checkpoint whose offset is not followed by a From_ line (taken by an older version inside
a message) is not trusted: the mailbox is read whole (:func:`still_valid`).

**Where earlier reads ended.** A settled mailbox's last message without a final line end
is imported as it is; once a delivery appends after it, a whole read would see it with
the line end the delivery wrote first (or, with none, run on into the next message): a
different message. So a checkpoint also lists such ends (:attr:`Checkpoint.ends`,
:func:`checkpoint_ends`), and a whole read compared with the target's identities, while
the checkpoint still matches, ends a message at each of them as that read did
(:class:`~mailplan.mail.mbox.MboxReader`'s ``ends``); a message ending there was final
then and is final now. A checkpoint's own offset that follows no line end is such an end
even where the list lacks it (written by a version before it was kept): the check of the
checkpoint reads that byte (:func:`still_valid`'s ``ended``).
"""

from __future__ import annotations

import codecs
import hashlib
import io
import posixpath
import tarfile
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from mailplan.connectors.base import Connector
from mailplan.errors import ConnectionLost
from mailplan.facts.noatime import read_tools, tar_read
from mailplan.facts.notes import MailboxNote, NoteKind
from mailplan.mail.fromline import COUNT_SEPARATORS
from mailplan.mail.maildir import (
    FolderNameError,
    Identities,
    folder_dirname,
    is_inbox,
    source_folder,
)
from mailplan.mail.mbox import MailboxError, MboxReader, MessageEnd, MessageStart
from mailplan.mail.windows import WINDOW, Windows, digest, slice_command
from mailplan.remote import run_batch, tar_members
from mailplan.shell import chunks, join
from mailplan.text import escape, marked

HEAD_BYTES = 64 * 1024  # what a first import's plan reads of each mailbox
#: seconds since its last modification after which a mailbox's end is final even when
#: its last message does not end with a blank line (no delivery is still writing it)
SETTLED_AFTER = 300
_BLANK_END = (b"\n\n", b"\r\n\r\n")
#: find's record of a file, and of a symbolic link (its path, then where it points, in
#: two NUL-ended fields: either may hold a tab); the first letter tells them apart
_FILE_FORMAT = "f%s\\t%T@\\t%i\\t%D\\t%p\\0"
_LINK_FORMAT = "l%p\\0%l\\0"
#: find's record of a spool that is neither (a directory, a fifo...): its type letter
_OTHER_FORMAT = "o%y%p\\0"
#: what find's ``%y`` letters name
_FILE_TYPES = {"d": "a directory", "p": "a named pipe", "s": "a socket",
               "b": "a block device", "c": "a character device"}
#: what is said of a user's ~/mbox (an ``info`` note: merged into the INBOX, a plan
#: lists it with what needs no change, not among the problems)
HOME_MBOX_NOTE = ("holds INBOX mail (UW-IMAP keeps the INBOX there once it exists); merged "
                  "into the INBOX")
#: what is said of a folder file named INBOX (an ``info`` note: merged into the INBOX,
#: like ~/mbox)
INBOX_FILE_NOTE = "is named INBOX; merged into the INBOX"
#: what is said of a spool file that is not there (an ``info`` note after ``INBOX: PATH``),
#: as of an empty one: mail.local makes it at the first delivery
MISSING_SPOOL_NOTE = "is missing, nothing to import from it"


@dataclass(frozen=True)
class MailboxRef:
    """Where one user's mail lives on the source."""

    domain: str
    user: str
    account: str
    spool: str
    folders: str
    #: the home directory, where ``~/mbox`` may hold the INBOX (c-client moves the spool's
    #: mail there when it exists); "" when not known
    home: str = ""
    #: folder file names in IMAP's modified UTF-7 are decoded (``source.folder_names``)
    decode_names: bool = False


@dataclass(frozen=True)
class SourceMailbox:
    """One mbox file on the source and the folder it becomes."""

    domain: str
    user: str
    folder: str  # "INBOX" or a path such as "Work/2025"
    path: str
    size: int
    mtime: float
    inode: int
    #: not modified for SETTLED_AFTER seconds: the end of the file is a message boundary
    settled: bool = True
    folder_file: bool = False  # a file under the folders directory, not the spool
    device: int = 0  # st_dev as listed (0: not known, in hand-made ones)
    home_mbox: bool = False  # ~/mbox, the INBOX c-client keeps once it exists
    #: how the target's folder directories are named (the spec's target.folder_names)
    names: str = "utf7"

    @property
    def ident(self) -> tuple[int, int] | None:
        """Device and inode as listed: apply's read checks the file it opened is this
        one (:func:`mailplan.mail.windows.guarded`); None where the device is not
        known."""
        return (self.device, self.inode) if self.device else None

    @property
    def key(self) -> str:
        """Stable name of this mailbox in plans and checkpoints. A folder file named
        ``INBOX`` (merged into the INBOX like any spelling of that name) is not the spool:
        its key says so, or the two would share reads, scans and checkpoints."""
        return f"{self.user}@{self.domain}/{self.name}"

    @property
    def name(self) -> str:
        """The folder, as plans show it (unique among a user's mailboxes)."""
        if self.home_mbox:
            return "INBOX (~/mbox)"
        return "INBOX (folder file)" if self.folder_file and self.folder == "INBOX" \
            else self.folder

    @property
    def dirname(self) -> str:
        """The Maildir++ directory it is imported into (``""`` = INBOX)."""
        return folder_dirname(self.folder, self.names)


@dataclass(frozen=True)
class Checkpoint:
    """What an earlier apply imported through, to read only what was appended since."""

    path: str
    inode: int
    offset: int
    head: str  # sha256 of the first WINDOW bytes
    tail: str  # sha256 of the WINDOW bytes before offset
    #: the Maildir ledger's size when it was taken: the ledger line of every message
    #: before ``offset`` comes before it (None: not known, from an older state file)
    ledger: int | None = None
    #: where reads that led to it ended after a last message without a final line end
    #: (:func:`checkpoint_ends`): a whole read ends a message there too
    ends: tuple[int, ...] = ()


def checkpoint_ends(ends: Sequence[int], offset: int, tail: bytes) -> list[int]:
    """The ends a checkpoint at ``offset`` records: the earlier ones (``ends``) before
    it, and ``offset`` itself when the bytes just read before it (``tail``) end without
    a line end. There a settled mailbox's last message was taken as it was: mail
    appended later puts a line end after it, or its From_ line right after it, and a
    whole read would then see another message (an end after a line end reads the same
    either way, and is not listed: the list does not grow with every run)."""
    kept = sorted({e for e in ends if 0 < e <= offset})
    if tail and not tail.endswith(b"\n") and offset not in kept:
        kept.append(offset)
    return kept


def named(listed: tuple[list[SourceMailbox], list[MailboxNote]], names: str
          ) -> tuple[list[SourceMailbox], list[MailboxNote]]:
    """What :func:`list_source_mailboxes` gave, each mailbox's folder directory named in
    the target's encoding ``names`` (``target.folder_names``). A folder whose directory
    name would be too long in it, and a second file of a user that names the same
    folder (``Entw&APw-rfe`` beside a file named ``Entwürfe``: UW-imapd's modified UTF-7
    name is decoded), join the notes as problems and are not imported."""
    mailboxes, notes = listed
    out = []
    seen: dict[tuple[str, str, str], str] = {}
    for mb in mailboxes:
        mb = replace(mb, names=names)
        try:
            mb.dirname  # noqa: B018 -- refused here rather than at apply
        except FolderNameError as exc:
            notes.append(MailboxNote(mb.domain, mb.user, "problem", mb.path,
                                     f"{escape(mb.path)}: {exc.message}; not imported",
                                     mb.folder))
            continue
        other = seen.setdefault((mb.domain, mb.user, mb.name), mb.path)
        if other != mb.path:
            notes.append(MailboxNote(mb.domain, mb.user, "problem", mb.path,
                                     f"{escape(mb.path)} names the same folder "
                                     f"'{escape(mb.name)}' as {escape(other)}; not imported "
                                     "(rename one of them on the source)", mb.folder))
            continue
        out.append(mb)
    return out, notes


@dataclass
class MailboxScan:
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
    #: occurrence among the messages read, its size and the Maildir flags its import
    #: gives it ("" for new/), until :meth:`number`
    appended: list[tuple[str, int, int, str]] = field(default_factory=list)
    #: the last message read was left for the next run (not terminated by a blank line
    #: in a mailbox not settled): ``end`` is its From_ line, where apply's read ends
    held_back: bool = False
    #: messages found on the target (read with the flags of its files, ``there``) whose
    #: file lacks Maildir flags the source has: the flags to add, by identity
    #: (:meth:`Identities.key`); only what a plan adds is held, not every message
    gain: dict[bytes, str] = field(default_factory=dict)

    def gained(self) -> dict[str, int]:
        """How many messages gain each flag, in the order of :data:`FLAG_ORDER`."""
        counts = {flag: 0 for flag in FLAG_ORDER}
        for flags in self.gain.values():
            for flag in flags:
                counts[flag] = counts.get(flag, 0) + 1
        return {flag: n for flag, n in counts.items() if n}

    def number(self, seed: dict[str, int], known: set[tuple[str, int]],
               there: Mapping[bytes, str] | None = None) -> None:
        """Number the ``appended`` messages after the ``seed`` (how often each digest
        comes before ``start``) and count those not in ``known``, as a read with both
        would have; ``there``: the flags of the folder's files found (``gain``)."""
        todo = hashlib.sha256()
        self.todo = self.todo_bytes = 0
        for sha, rel, size, flags in self.appended:
            occurrence = seed.get(sha, 0) + rel
            if (sha, occurrence) not in known:
                self.todo += 1
                self.todo_bytes += size
                todo.update(f"{sha}:{occurrence};".encode())
            elif there and flags:
                self.compare_flags((sha, occurrence), flags, there)
        self.todo_digest = todo.hexdigest()[:16]
        self.appended = []

    def compare_flags(self, identity: tuple[str, int], flags: str,
                      there: Mapping[bytes, str]) -> None:
        """Note in ``gain`` the Maildir flags of ``flags`` (what the import gives the
        message now) that its file on the target (``there``, by identity key) lacks; a
        message with no file there (deleted by its user) gains nothing."""
        ident = Identities.key(identity)
        have = there.get(ident)
        missing = "" if have is None else "".join(sorted(set(flags) - set(have)))
        if missing:
            self.gain[ident] = missing


#: the order a plan names the flags messages gain in: as README's flag rules list them
FLAG_ORDER = "SRFTD"


def _parse_find(data: bytes) -> tuple[list[tuple[int, float, int, int, str]],
                                      list[tuple[str, str]], dict[str, str]]:
    """The files (size, mtime, inode, device, path), the symbolic links (path, where
    it points) and the paths of other types (path: find's type letter) of ``find``'s
    records (``_FILE_FORMAT``, ``_LINK_FORMAT``, ``_OTHER_FORMAT``)."""
    files, links, others = [], [], {}
    fields = iter(data.split(b"\0"))
    for record in fields:
        if record[:1] == b"f":
            size, mtime, inode, device, path = record[1:].split(b"\t", 4)
            files.append((int(size), float(mtime), int(inode), int(device),
                          path.decode("utf-8", "surrogateescape")))
        elif record[:1] == b"l":
            links.append((record[1:].decode("utf-8", "surrogateescape"),
                          next(fields, b"").decode("utf-8", "surrogateescape")))
        elif record[:1] == b"o":
            others[record[2:].decode("utf-8", "surrogateescape")] = chr(record[1])
    return files, links, others


def list_source_mailboxes(conn: Connector, refs: Sequence[MailboxRef], names: str = "utf7"
                          ) -> tuple[list[SourceMailbox], list[MailboxNote]]:
    """Every spool and folder file of ``refs`` (one batch), their folders named in the
    target's encoding ``names`` (:func:`named`); plus notes on files not imported
    (problems), on files merged into the INBOX and on a missing spool (info)."""
    mboxes = {r.home.rstrip("/") + "/mbox" for r in refs if r.home}
    spools = sorted({r.spool for r in refs} | mboxes)
    if not refs:
        return [], []
    # without a trailing slash: find would follow a folders directory that is a
    # symbolic link (a user's ~/mail -> /var/spool/mail: everyone's spools as folders)
    roots = sorted({r.folders.rstrip("/") or "/" for r in refs})
    # find's messages in the C locale: a missing file or folder directory is no error (an
    # empty INBOX, no folders); one it may not see or list is (read as a user who may
    # not read another's ~/mail, it would look empty: mail left behind without a word)
    # The symbolic links there, never followed, are listed by the same walk and named in
    # the plan: mail behind one (a folders directory moved to another disk and linked
    # back) is not imported.
    spool_chunks, root_chunks = list(chunks(spools)), list(chunks(roots))
    what = ["(", "-type", "f", "-printf", _FILE_FORMAT, ")", "-o",
            "(", "-type", "l", "-printf", _LINK_FORMAT, ")"]
    # a spool of another type (a directory: a Maildir in the spool's place) is said too
    cmds = [join(["LC_ALL=C", "find", *chunk, "-maxdepth", "0", *what, "-o", "-printf",
                  _OTHER_FORMAT]) + "; true" for chunk in spool_chunks]
    cmds += [join(["LC_ALL=C", "find", *chunk, *what]) + "; true" for chunk in root_chunks]
    found: dict[str, tuple[int, float, int, int]] = {}
    linked: dict[str, str] = {}
    other: dict[str, str] = {}  # spool and ~/mbox paths that are neither file nor link
    results = run_batch(conn, ["date +%s", *cmds])
    clock = results[0].stdout.strip()
    # the source's clock, as the mtimes are (the local one where date has no %s)
    now = int(clock) if results[0].returncode == 0 and clock.isdigit() else time.time()
    unseen: dict[str, list[tuple[str, bool]]] = {}  # spool or folder dir -> find's words
    for res, chunk in zip(results[1:], [*spool_chunks, *root_chunks], strict=True):
        files, links, others = _parse_find(res.stdout)
        for size, mtime, inode, device, path in files:
            found[path] = (size, mtime, inode, device)
        linked.update(links)
        other.update(others)
        for start, said, exact in _find_errors(res.stderr, chunk):
            unseen.setdefault(start, []).append((said, exact))
    mailboxes: list[SourceMailbox] = []
    notes: list[MailboxNote] = []
    for ref in refs:
        notes += _unseen_notes(ref, unseen)
        mbox = ref.home.rstrip("/") + "/mbox" if ref.home else None
        if ref.spool in found:
            size, mtime, inode, device = found[ref.spool]
            mailboxes.append(SourceMailbox(ref.domain, ref.user, "INBOX", ref.spool, size,
                                           mtime, inode, now - mtime >= SETTLED_AFTER,
                                           device=device))
        elif ref.spool in other:
            kind = _FILE_TYPES.get(other[ref.spool], "not a regular file")
            notes.append(MailboxNote(ref.domain, ref.user, "problem", ref.spool,
                                     f"INBOX: {escape(ref.spool)} (the spool) is {kind}, "
                                     "not an mbox file: nothing is imported from it (mail "
                                     "kept there is left on the old server)", "INBOX"))
        elif ref.spool not in linked and ref.spool not in unseen:
            # said, as an empty spool is, so that every user's INBOX is accounted for (a
            # link, or a spool find could not see, has its own note)
            notes.append(MailboxNote(ref.domain, ref.user, "info", ref.spool,
                                     f"INBOX: {escape(ref.spool)} {MISSING_SPOOL_NOTE}"
                                     + ("; the INBOX's mail is in ~/mbox" if mbox in found
                                        else " (a missing spool is an empty INBOX)"),
                                     "INBOX"))
        if mbox is not None and mbox in found and mbox != ref.spool:
            notes.append(MailboxNote(ref.domain, ref.user, "info", mbox,
                                     f"{escape(mbox)} {HOME_MBOX_NOTE}", "INBOX"))
            size, mtime, inode, device = found[mbox]
            mailboxes.append(SourceMailbox(ref.domain, ref.user, "INBOX", mbox, size, mtime,
                                           inode, now - mtime >= SETTLED_AFTER,
                                           folder_file=True, device=device, home_mbox=True))
        prefix = ref.folders.rstrip("/") + "/"
        for path in sorted(p for p in found
                           if p.startswith(prefix) and posixpath.normpath(p) != mbox):
            rel = path[len(prefix):]
            if ref.decode_names:  # UW-imapd's modified UTF-7 names
                rel = source_folder(rel)
            if any(part.startswith(".") for part in rel.split("/")):
                continue  # hidden files: IMAP servers do not show them as folders
            if is_inbox(rel):
                notes.append(MailboxNote(ref.domain, ref.user, "info", path,
                                         f"{escape(path)} {INBOX_FILE_NOTE}", "INBOX"))
            size, mtime, inode, device = found[path]
            mailboxes.append(SourceMailbox(ref.domain, ref.user, rel, path, size, mtime,
                                           inode, now - mtime >= SETTLED_AFTER,
                                           folder_file=True, device=device))
        notes += _link_notes(ref, linked)
    return named((mailboxes, notes), names)


def _find_errors(stderr: bytes, starts: Sequence[str]) -> list[tuple[str, str, bool]]:
    """``(start, message, named)`` for each of ``find``'s messages (C locale) on
    ``stderr`` but those of a missing file (an empty INBOX, no folders): ``start`` is
    the starting point of ``starts`` the message names or lies under (``named``); a
    message that names none of them counts for every one (not ``named``)."""
    out = []
    for line in stderr.decode("utf-8", "surrogateescape").splitlines():
        if not line.strip() or line.endswith(": No such file or directory"):
            continue
        path = _find_quoted(line)
        under = [s for s in starts
                 if path is not None and (path == s or path.startswith(s.rstrip("/") + "/"))]
        out += [(start, line, bool(under)) for start in (under or starts)]
    return out


def _find_quoted(line: str) -> str | None:
    """The file a ``find: 'PATH': REASON`` message names: find (C locale) writes it
    between quotes with C escapes (``\\'``, ``\\\\``, octal for other bytes)."""
    if not line.startswith("find: '"):
        return None
    quoted = line[len("find: '"):].rpartition("': ")[0]
    try:
        raw = codecs.escape_decode(quoted.encode("utf-8", "surrogateescape"))[0]
    except ValueError:
        return None
    return raw.decode("utf-8", "surrogateescape")


def _unseen_notes(ref: MailboxRef, unseen: dict[str, list[tuple[str, bool]]]
                  ) -> list[MailboxNote]:
    """Problems of a user's spool, ~/mbox or folder directory that ``find`` could not
    see whole."""
    notes = []
    mbox = ref.home.rstrip("/") + "/mbox" if ref.home else ""
    for start, what, folder in ((ref.spool, "mail there is", "INBOX"),
                                (mbox, "mail there is", "INBOX"),
                                (ref.folders.rstrip("/") or "/", "folders there are", None)):
        said = unseen.get(start) if start else None
        if not said:
            continue
        line, exact = said[0]
        more = f" (and {len(said) - 1} more)" if len(said) > 1 else ""
        effect = (f"{what} not imported" if exact else
                  f"listing {escape(start)}: {what} perhaps not all imported")
        notes.append(MailboxNote(
            ref.domain, ref.user, "problem", start,
            f"{escape(line)}{more}: {effect}; mailplan must be able to read it (log in to "
            "the source as root, or set sudo: true)", folder, unseen=True))
    return notes


def _link_notes(ref: MailboxRef, linked: dict[str, str]) -> list[MailboxNote]:
    """A problem for each of the user's spool and folder paths that is a symbolic link
    (not followed: mailplan reads as root), hidden ones left out as their folders are;
    an ``info`` note for a link to the user's own spool (``~/mail/INBOX`` made so for
    pine), whose mail is imported from the spool."""
    notes = []
    root = ref.folders.rstrip("/") or "/"
    mbox = ref.home.rstrip("/") + "/mbox" if ref.home else None
    for path in sorted(linked):
        rel = path[len(root) + 1:] if path.startswith(root + "/") else ""
        if path not in (ref.spool, root, mbox) and not rel:
            continue  # another user's
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        dest = posixpath.normpath(posixpath.join(posixpath.dirname(path), linked[path]))
        if path != ref.spool and dest == posixpath.normpath(ref.spool):
            notes.append(MailboxNote(ref.domain, ref.user, "info", path,
                                     f"{escape(path)} is a symbolic link to the spool, "
                                     "whose mail is imported into the INBOX", "INBOX"))
            continue
        what = "the folders directory" if path == root else "the spool" if path == ref.spool \
            else "~/mbox, INBOX mail" if path == mbox else "a folder"
        notes.append(MailboxNote(ref.domain, ref.user, "problem", path,
                                 f"{escape(path)} ({what}) is a symbolic link: not followed "
                                 "(mailplan reads the source as root), so no mail behind it "
                                 "is imported (if it is this user's, replace the link with "
                                 "what it points to)", rel or None))
    return notes


#: what may follow a checkpoint: a From_ line, possibly after the line end that ends the
#: last message read when it had no blank line yet (see MboxReader: resumed reads)
_BOUNDARY = (b"From ", b"\nFrom ", b"\r\nFrom ")
_PEEK = 7


def _window_cmd(path: str, offset: int, noatime: bool) -> str:
    width = min(WINDOW, offset)
    return "; ".join(slice_command(path, start, length, noatime=noatime) for start, length
                     in ((0, width), (offset - width, width), (offset, _PEEK)))


def still_valid(conn: Connector, pairs: Sequence[tuple[SourceMailbox, Checkpoint]],
                heads: dict[int, bytes] | None = None, ended: set[int] | None = None
                ) -> list[bool]:
    """Whether each mailbox still starts with what its checkpoint recorded (one batch),
    and a From_ line follows the checkpoint (or nothing yet): a checkpoint inside a
    message (taken by an older version at the end of a delivery still being written) is
    not trusted, so the mailbox is read whole. ``heads`` receives, by index, the bytes
    before a valid checkpoint taken before the file reached one window (its head window
    was the whole file: a later checkpoint's head is those bytes and more, see
    :func:`mailplan.mail.windows.grown_head`); ``ended`` the indexes of the valid
    checkpoints whose offset follows no line end (the read that took it ended there
    after a last message without one: :func:`checkpoint_ends`)."""
    todo = [(i, mb, cp) for i, (mb, cp) in enumerate(pairs)
            if mb.inode == cp.inode and mb.path == cp.path and mb.size >= cp.offset]
    ok = [False] * len(pairs)
    if not todo:
        return ok
    noatime = read_tools(conn).dd
    results = run_batch(conn, [_window_cmd(mb.path, cp.offset, noatime) for _i, mb, cp in todo])
    for (i, _mb, cp), res in zip(todo, results, strict=True):
        head_len = min(WINDOW, cp.offset) if cp.offset else 0
        data, want = res.stdout, head_len + min(WINDOW, cp.offset)
        after = data[want:]
        if res.returncode == 0 and len(data) >= want:
            data = data[:want]
            ok[i] = digest(data[:head_len]) == cp.head and digest(data[head_len:]) == cp.tail \
                and (after == b"" or any(b.startswith(after) or after.startswith(b)
                                         for b in _BOUNDARY))
            if ok[i] and heads is not None and cp.offset < WINDOW:
                heads[i] = data[:head_len]
            if ok[i] and ended is not None and cp.offset and not data.endswith(b"\n"):
                ended.add(i)
        elif cp.offset == 0:
            ok[i] = True
    return ok


def open_stream(conn: Connector, mailbox: SourceMailbox, start: int, end: int) -> object:
    """A streaming reader of the mailbox from byte ``start`` to ``end`` (one channel):
    the bytes apply reads, not more mail that arrived since the listing.

    A plan reads by name (here, the windows and the counts): what it reads only goes into
    the plan, for the admin. apply's read, which moves mail into a Maildir, reads the
    file the listing found only (:class:`mailplan.mail.snapshot.SnapshotStream`,
    ``ident``), at the cost of a ``stat`` that a plan of thousands of mailboxes does not
    pay (1.4 ms each, a quarter of an unchanged mailbox's re-plan)."""
    return conn.start_stream(slice_command(mailbox.path, start, end - start,
                                           noatime=read_tools(conn).dd))


def _scan_stream(stream: object, mailbox: SourceMailbox, start: int, mboxrd: bool, host: str,
                 known: set[tuple[str, int]] | None, ends: Collection[int] = (),
                 there: Mapping[bytes, str] | None = None) -> MailboxScan:
    # Only counts and a running digest are kept: memory does not grow with the mailbox.
    # With ``known`` None (a read from a checkpoint), each message's identity is kept
    # for MailboxScan.number instead (numbered there, after the messages before
    # ``start``): memory grows with the appended mail only.
    # The reader is given what apply's gives it (no skip_leading: a read from a checkpoint
    # starts at a From_ line, still_valid saw to that). A message is taken into account
    # once the next one starts: the last one only if the end read is a message boundary.
    # ``ends``: where earlier reads ended (Checkpoint.ends); what comes before the last of
    # them was final then, and is never left for the next run. ``there``: the flags of
    # the message files on the target, by identity key: a message found there whose
    # file lacks a flag the source gives it goes to ``gain``.
    scan = MailboxScan(mailbox, start, seen=Windows(_Limit(stream, mailbox.size - start)))
    todo = hashlib.sha256()
    reader = MboxReader(scan.seen, offset=start, mboxrd=mboxrd, mtime=mailbox.mtime,  # type: ignore[arg-type]
                        path=f"{host}:{mailbox.path}", ends=ends)
    final = max(ends, default=0)

    def take(event: MessageEnd) -> None:
        scan.total += 1
        if known is None:
            scan.appended.append((event.sha256, event.occurrence, event.size,
                                  event.flags if event.subdir == "cur" else ""))
        elif event.identity not in known:
            scan.todo += 1
            scan.todo_bytes += event.size
            todo.update(f"{event.sha256}:{event.occurrence};".encode())
        elif there and event.subdir == "cur":
            scan.compare_flags(event.identity, event.flags, there)

    last: MessageEnd | None = None
    cut: int | None = None  # where what is left for the next run starts, if not at ``last``
    try:
        for event in reader:
            if isinstance(event, MessageEnd):
                if last is not None:
                    take(last)
                last = event
            elif isinstance(event, MessageStart) and not mailbox.settled \
                    and reader.summary.cl_past_end is not None \
                    and reader.summary.cl_past_end >= final:
                # a Solaris delivery still writing a message its Content-Length says is
                # longer: its body may hold unquoted From_ lines, which would cut it in
                # two; it and what follows are left for the next run (as a whole read
                # then honours that length)
                cut = reader.summary.cl_past_end
                break
    except MailboxError as exc:
        at = start if reader.resumed_at is None else reader.resumed_at
        if not (at and not mailbox.settled and _unfinished_separator(scan.seen, at - start)):
            scan.error = exc.message
            return scan
        # a delivery writing its From_ line right after the checkpoint (or an end of an
        # earlier read): nothing new yet (a whole read would hold that message back the
        # same way)
        cut = at
    if cut is not None:
        if last is not None:
            take(last)
        scan.held_back, scan.end = True, cut
    else:
        scan.end = reader.summary.end_offset
        if last is not None:
            if mailbox.settled or scan.seen.tail.endswith(_BLANK_END) or last.end in ends:
                take(last)
            else:  # a delivery may still be writing it: left for the next run
                scan.held_back, scan.end = True, last.start
    scan.todo_digest = todo.hexdigest()[:16]
    scan.skipped_internal = reader.summary.skipped_internal
    said: tuple[tuple[NoteKind, list[str]], ...] = (
        ("warning", reader.summary.warnings), ("problem", reader.summary.skipped))
    scan.notes = [MailboxNote(mailbox.domain, mailbox.user, kind, mailbox.path,
                              f"{marked(mailbox.name)} ({mailbox.path}): {text}",
                              mailbox.folder)
                  for kind, texts in said for text in texts]
    return scan


def _unfinished_separator(seen: Windows, skip: int = 0) -> bool:
    """Whether all a read found after its first ``skip`` bytes (a checkpoint's offset,
    or an end of an earlier read) is the start of a From_ line still being written: no
    line end after the framing one, and a prefix of ``From ``."""
    left = seen.size - skip
    if left > len(seen.tail):
        return False
    rest = seen.tail[len(seen.tail) - left:]
    for lead in (b"\r\n", b"\n"):
        if rest.startswith(lead):
            rest = rest[len(lead):]
            break
    return b"\n" not in rest and (rest.startswith(b"From ") or b"From ".startswith(rest))


def scan_mailbox(conn: Connector, mailbox: SourceMailbox, start: int, *, mboxrd: bool,
                 known: set[tuple[str, int]] | None, ends: Collection[int] = (),
                 there: Mapping[bytes, str] | None = None) -> MailboxScan:
    """Read a mailbox from ``start``: how many messages, and which are not in ``known``
    (None: keep their identities for :meth:`MailboxScan.number`); ``ends``: where
    earlier reads ended (:attr:`Checkpoint.ends`); ``there``: the flags of the folder's
    message files by identity key (:attr:`MailboxScan.gain`)."""
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
    # not settled, its last 4 bytes first (does it end with a blank line?)
    tail = "" if mb.settled or mb.size < 4 else slice_command(
        mb.path, mb.size - 4, 4, noatime=noatime) + "; "
    return (tail + slice_command(mb.path, 0, mb.size, noatime=noatime) + " | "
            + COUNT_SEPARATORS + "; " + slice_command(mb.path, 0, HEAD_BYTES, noatime=noatime))


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
    settled, no blank line at its end): the caller reads that one (and leaves that
    message for the next run)."""
    if not mailboxes:
        return []
    scans: list[MailboxScan | None] = []
    noatime = read_tools(conn).dd
    for mb, res in zip(mailboxes, run_batch(conn, [_count_command(mb, noatime)
                                                   for mb in mailboxes]), strict=True):
        out = res.stdout
        if not mb.settled and mb.size >= 4:
            end, out = out[:4], out[4:]
            if not end.endswith(_BLANK_END):
                scans.append(None)
                continue
        first, _, head = out.partition(b"\n")
        if res.returncode == 0 and not first.isdigit():
            scans.append(None)
            continue
        scan = _scan_stream(_MemberReader(io.BytesIO(head)), mb, 0, mboxrd, conn.name,
                            set())
        if res.returncode != 0:
            scan.error = scan.error or f"cannot read {mb.path}: " + (
                res.stderr_text[:300] or f"exit {res.returncode}")
        if scan.error is None:
            count = max(int(first) - scan.skipped_internal, 0)
            scan = MailboxScan(
                mb, 0, total=count, todo=count, todo_bytes=mb.size, end=mb.size,
                todo_digest=hashlib.sha256(f"{mb.path}\0{mb.size}\0{mb.inode}\0{count}\0"
                                           .encode() + head).hexdigest()[:16],
                skipped_internal=scan.skipped_internal, counted=True)
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
                   there: Mapping[str, Mapping[bytes, str]]) -> dict[str, MailboxScan] | None:
    """Full scans of many mailboxes through one ``tar`` stream (None: fall back)."""
    by_path = {mb.path: mb for mb in mailboxes}
    proc = conn.start_stream(f"{tar_read(conn)} --no-recursion --null -T - 2>/dev/null")
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
    # tar exits non-zero when a file changed or vanished while it was read: read those
    # mailboxes again one by one rather than trust a padded or cut copy
    return out if res.returncode == 0 and len(out) == len(by_path) else None


Job = tuple[SourceMailbox, int, "set[tuple[str, int]] | None"]


def scan_mailboxes(conn: Connector, jobs: Sequence[Job], *, mboxrd: bool,
                   ends: dict[str, Collection[int]] | None = None,
                   there: Mapping[str, Mapping[bytes, str]] | None = None
                   ) -> list[MailboxScan]:
    """Scan each (mailbox, start offset, identities already on the target): full reads
    share one channel. ``ends``: by mailbox path, where earlier reads ended
    (:attr:`Checkpoint.ends`); ``there``: by mailbox path, the flags of its folder's
    message files on the target (:attr:`MailboxScan.gain`)."""
    ends = ends or {}
    there = there or {}
    full = [mb for mb, start, _known in jobs if start == 0]
    known = {mb.path: k for mb, _s, k in jobs}
    shared = _scan_with_tar(conn, full, mboxrd, known, ends, there) if len(full) > 1 \
        else None
    scans = []
    for mb, start, k in jobs:
        if shared is not None and start == 0:
            scans.append(shared[mb.path])
        else:
            scans.append(scan_mailbox(conn, mb, start, mboxrd=mboxrd, known=k,
                                      ends=ends.get(mb.path, ()), there=there.get(mb.path)))
    return scans
