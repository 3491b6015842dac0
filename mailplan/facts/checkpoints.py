"""Checkpoints of the source's mailboxes (read only): where an earlier apply's import
ended, and whether the mailbox still holds what it read.

When an earlier apply recorded a checkpoint for a mailbox (the offset it imported
through and digests of the first and the last 4 KiB before it) and both windows still
match (:func:`still_valid`), only the bytes after the checkpoint are read
(:mod:`mailplan.facts.mailbox_scan`): an unchanged 1 GB spool costs two 4 KiB reads. A
checkpoint whose offset is not followed by a From_ line (taken by an older version
inside a message) is not trusted: the mailbox is read whole, and so is a file no larger
than the checkpoint whose modification time is not the one listed then
(:func:`rewritten_in_place`: flags changed in place, the size kept).

**Where earlier reads ended.** A settled mailbox's last message without a final line end
is imported as it is; once a delivery appends after it, a whole read would see it with
the line ends the delivery wrote first (its line end, then the framing blank line; or,
with none, run on into the next message): a different message. Line ends after a
checkpoint, before the next From_ line, are framing (:func:`still_valid`), read from
the checkpoint or whole alike. So a checkpoint also lists such ends (:attr:`Checkpoint.ends`,
:func:`checkpoint_ends`), and a whole read compared with the target's identities, while
the checkpoint still matches, ends a message at each of them as that read did
(:class:`~mailplan.mail.mbox.MboxReader`'s ``ends``); a message ending there was final
then and is final now. A checkpoint's own offset is such an end even where the list
lacks it when the check of the checkpoint finds a whole read would end the message
before it otherwise (:func:`reframed`, :func:`still_valid`'s ``ended``): it follows no
line end (a checkpoint written by a version before the list was kept), or line ends
came after it that a whole read counts to that message (a blank line more than its
framing one; its blank line, after a message that ended in one). The file alone cannot
tell those from a message that arrived with those lines: without the checkpoint (a lost
state file) a whole read gives that message the lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from mailplan.connectors.base import Connector
from mailplan.facts.noatime import read_tools
from mailplan.facts.source_mailbox import SourceMailbox
from mailplan.mail.mboxstream import _framing
from mailplan.mail.windows import (
    PEEK,
    WINDOW,
    digest,
    past_line_ends,
    regular_only,
    slice_command,
)
from mailplan.remote import run_batch


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
    #: the file's modification time as the plan listed it (None: from an older state
    #: file): a file no larger than ``offset`` whose time changed was rewritten in place
    #: (:func:`rewritten_in_place`)
    mtime: float | None = None

    def ended_at_offset(self) -> Checkpoint:
        """This checkpoint with its own offset among its ``ends``: where
        :func:`still_valid` found a whole read must end a message there (``ended``)."""
        return replace(self, ends=tuple(sorted({*self.ends, self.offset})))


def rewritten_in_place(mailbox: SourceMailbox, checkpoint: Checkpoint) -> bool:
    """Whether the file, nothing appended to it since ``checkpoint``, was written to
    since: its modification time is not the one listed when the checkpoint was taken. A
    mail reader on the old server that marks one message read and another unread in
    one session (``Status: O`` -> ``RO``, ``RO`` -> ``O``) rewrites the file to the same
    size, and when both are in the middle its first and last 4 KiB stay too: without
    this the flags it set would never be read (only what is appended is). Mail appended
    changes the time too, so a file that grew says nothing by its time."""
    return checkpoint.mtime is not None and mailbox.size == checkpoint.offset \
        and mailbox.mtime != checkpoint.mtime


def checkpoint_ends(ends: Sequence[int], offset: int, tail: bytes) -> list[int]:
    """The ends a checkpoint at ``offset`` records: the earlier ones (``ends``) before
    it, and ``offset`` itself when the bytes just read before it (``tail``) end without
    a line end. There a settled mailbox's last message was taken as it was: mail
    appended later puts a line end after it, or its From_ line right after it, and a
    whole read would then see another message (an end after a line end reads the same
    either way until more line ends come after it, and is not listed: the list does not
    grow with every run; :func:`still_valid` finds it one once they came)."""
    kept = sorted({e for e in ends if 0 < e <= offset})
    if tail and not tail.endswith(b"\n") and offset not in kept:
        kept.append(offset)
    return kept


def reframed(tail: bytes, after: bytes) -> bool:
    """Whether a whole read would end the message before a checkpoint otherwise than the
    read that took it there did (``tail``: the bytes before the checkpoint, ``after``: up
    to :data:`PEEK` after it): that read took the message as the file then ended, its
    framing blank line removed; a whole read now takes the line ends after it too (those
    before the next From_ line, which a read from the checkpoint takes as framing) and
    removes one. The same message only when nothing follows but its missing blank line
    (one line end after a final line end); not when it lacked that line end, nor when
    it ended in its blank line, nor when more line ends follow."""
    if not tail.endswith(b"\n"):
        return True
    grown = tail + after[:len(after) - len(past_line_ends(after))]
    return grown[:len(grown) - _framing(grown, 0, len(grown))] \
        != tail[:len(tail) - _framing(tail, 0, len(tail))]


def _boundary(after: bytes) -> bool:
    """Whether the bytes after a checkpoint (up to :data:`PEEK`, fewer where the file
    ends) are what may follow it: a From_ line, possibly after line ends (the one that
    ends the last message read when it had none, the blank line that frames it: see
    MboxReader, resumed reads), or the start of that (the rest not written yet)."""
    rest = past_line_ends(after)
    return rest.startswith(b"From ") or b"From ".startswith(rest) or rest == b"\r"


def _window_cmd(path: str, offset: int, noatime: bool) -> str:
    # by name, so only a regular file (not one swapped for a named pipe since the
    # listing, whose open would wait for ever): a refusal is a checkpoint not valid
    width = min(WINDOW, offset)
    return regular_only(path, "; ".join(
        slice_command(path, start, length, noatime=noatime) for start, length
        in ((0, width), (offset - width, width), (offset, PEEK))))


def still_valid(conn: Connector, pairs: Sequence[tuple[SourceMailbox, Checkpoint]],
                heads: dict[int, bytes] | None = None, ended: set[int] | None = None,
                tails: dict[int, bytes] | None = None) -> list[bool]:
    """Whether each mailbox still starts with what its checkpoint recorded (one batch),
    and a From_ line follows the checkpoint, maybe after line ends (or nothing yet, or
    only the start of that): a checkpoint inside a
    message (taken by an older version at the end of a delivery still being written) is
    not trusted, so the mailbox is read whole. ``heads`` receives, by index, the bytes
    before a valid checkpoint taken before the file reached one window (its head window
    was the whole file: a later checkpoint's head is those bytes and more, see
    :func:`mailplan.mail.windows.grown_head`); ``ended`` the indexes of the valid
    checkpoints whose offset a whole read must end a message at, as the read that took
    it did (:func:`reframed`): an end :func:`checkpoint_ends` records, or would have;
    ``tails`` the bytes before a valid checkpoint (its tail window) of a file grown by
    less than a window since: a read of what was appended holds too little of the
    window before the file's new end to record a checkpoint there
    (:attr:`mailplan.mailbox_reads.Start.window`)."""
    todo = [(i, mb, cp) for i, (mb, cp) in enumerate(pairs)
            if mb.inode == cp.inode and mb.path == cp.path and mb.size >= cp.offset]
    ok = [False] * len(pairs)
    if not todo:
        return ok
    noatime = read_tools(conn).dd
    results = run_batch(conn, [_window_cmd(mb.path, cp.offset, noatime) for _i, mb, cp in todo])
    for (i, mb, cp), res in zip(todo, results, strict=True):
        head_len = min(WINDOW, cp.offset) if cp.offset else 0
        data, want = res.stdout, head_len + min(WINDOW, cp.offset)
        after = data[want:]
        if res.returncode == 0 and len(data) >= want:
            data = data[:want]
            ok[i] = digest(data[:head_len]) == cp.head and digest(data[head_len:]) == cp.tail \
                and _boundary(after)
            if ok[i] and heads is not None and cp.offset < WINDOW:
                heads[i] = data[:head_len]
            if ok[i] and tails is not None and 0 < mb.size - cp.offset < WINDOW:
                tails[i] = data[head_len:]
            if ok[i] and ended is not None and cp.offset \
                    and reframed(data[head_len:], after):
                ended.add(i)
        elif cp.offset == 0:
            ok[i] = True
    return ok
