"""One read of a mailbox scan (:func:`mailplan.facts.mailbox_scan.scan_mailbox` and the
others): the mbox reader's events counted into a
:class:`~mailplan.facts.mailbox_scan.MailboxScan`, and where the read ends.

A message is taken into account once the next one starts: the last one only if the end
read is a message boundary. What is left for the next run follows the rules of
:mod:`mailplan.facts.mailbox_scan` ("Where a read may end"): a Solaris delivery whose
Content-Length reaches past what was read, a From_ line still being written after a
checkpoint (or an end of an earlier read), a last message without its blank line in a
mailbox not settled, or with it in a mailbox a writer held locked (its dot-lock).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from typing import TYPE_CHECKING

from mailplan.facts.ledger_flags import FolderFlags
from mailplan.mail.bookkeeping import carried_keywords
from mailplan.mail.mbox import MboxReader, MessageEnd, MessageStart
from mailplan.mail.windows import Windows, past_line_ends

if TYPE_CHECKING:
    from mailplan.facts.mailbox_scan import MailboxScan

#: how a finished delivery leaves the end of a mailbox: mail.local's blank line
BLANK_END = (b"\n\n", b"\r\n\r\n")


class ScanRead:
    """The state of one read while the reader goes through it: the scan it fills, what
    its messages are compared with (``known``, ``there``: see ``_scan_stream``), the
    running digest of those still to import, and the last message read, not yet taken
    (``last``, with its IMAP keywords)."""

    __slots__ = ("scan", "reader", "known", "there", "ends", "todo", "last", "last_keywords")

    def __init__(self, scan: MailboxScan, reader: MboxReader,
                 known: set[tuple[str, int]] | None, there: FolderFlags | None,
                 ends: Collection[int]) -> None:
        self.scan, self.reader, self.known, self.there = scan, reader, known, there
        self.ends = ends
        self.todo = hashlib.sha256()
        self.last: MessageEnd | None = None
        self.last_keywords: tuple[str, ...] = ()

    def take(self, event: MessageEnd, keywords: tuple[str, ...]) -> None:
        """Count a message of the read: to import (not in ``known``), or found on the
        target and compared with the flags of its file there; with ``known`` None, its
        identity is kept for :meth:`MailboxScan.number`."""
        scan, known = self.scan, self.known
        scan.total += 1
        if known is None:
            scan.appended.append((event.sha256, event.occurrence, event.size,
                                  event.flags if event.subdir == "cur" else None,
                                  carried_keywords(keywords) if keywords else ()))
        elif event.identity not in known:
            scan.todo += 1
            scan.todo_bytes += event.size
            self.todo.update(f"{event.sha256}:{event.occurrence};".encode())
        elif self.there and event.subdir == "cur":
            scan.compare_flags(event.identity, event.flags, self.there,
                               carried_keywords(keywords) if keywords else ())

    def events(self) -> int | None:
        """Go through the reader's events, taking each message once the next one is read
        (the last stays in ``last``). Returns where what is left for the next run starts
        when a Solaris delivery is still writing a message its Content-Length says is
        longer (None: read to the end); raises the reader's :class:`MailboxError`."""
        summary = self.reader.summary
        settled = self.scan.mailbox.settled
        final = max(self.ends, default=0)
        keywords: tuple[str, ...] = ()  # of the message being read
        # (the loop keeps ``last`` in local variables: it runs once per message)
        take, last, last_keywords = self.take, self.last, self.last_keywords
        try:
            for event in self.reader:
                if isinstance(event, MessageEnd):
                    if last is not None:
                        take(last, last_keywords)
                    last, last_keywords = event, keywords
                elif isinstance(event, MessageStart):
                    keywords = event.keywords
                    if not settled and summary.cl_past_end is not None \
                            and summary.cl_past_end >= final:
                        # its body may hold unquoted From_ lines, which would cut it in
                        # two; it and what follows are left for the next run (as a
                        # whole read then honours that length)
                        return summary.cl_past_end
        finally:  # also when the reader raises (end may take it then)
            self.last, self.last_keywords = last, last_keywords
        return None

    def unfinished_at(self) -> int | None:
        """After the reader's error: where a delivery is writing its From_ line right
        after the checkpoint (or an end of an earlier read), so that nothing is new yet
        (a whole read would hold that message back the same way); None: the error
        stands."""
        start = self.scan.start
        at = start if self.reader.resumed_at is None else self.reader.resumed_at
        if at and not self.scan.mailbox.settled \
                and unfinished_separator(self.scan.seen, at - start):
            return at
        return None

    def end(self, cut: int | None) -> None:
        """Where the read ends: at ``cut`` (the last message read taken, what follows
        left for the next run), else at the end read, the last message taken if the
        mailbox is settled, ends in a blank line or an earlier read ended there, else
        left for the next run (a delivery may still be writing it); a mailbox a writer
        held locked when it was listed (``locked``) has no such end: a delivery that
        stalled after an empty line would look finished."""
        scan, last = self.scan, self.last
        if cut is not None:
            if last is not None:
                self.take(last, self.last_keywords)
            scan.held_back, scan.end = True, cut
            return
        scan.end = self.reader.summary.end_offset
        if last is None:
            return
        mailbox = scan.mailbox
        if mailbox.settled or (scan.seen.tail.endswith(BLANK_END) and not mailbox.locked) \
                or last.end in self.ends:
            self.take(last, self.last_keywords)
        else:
            scan.held_back, scan.end = True, last.start


def unfinished_separator(seen: Windows, skip: int = 0) -> bool:
    """Whether all a read found after its first ``skip`` bytes (a checkpoint's offset,
    or an end of an earlier read) is the start of a From_ line still being written: no
    line end after the framing ones (line ends alone, as MboxReader reads a resumed
    read), and a prefix of ``From ``."""
    left = seen.size - skip
    if left > len(seen.tail):
        return False
    rest = seen.tail[len(seen.tail) - left:]
    rest = past_line_ends(rest)
    return b"\n" not in rest and (rest.startswith(b"From ") or b"From ".startswith(rest))
