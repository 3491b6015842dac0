"""Incremental mbox reader: a byte stream in, one event stream per message out.

The reader never holds more than a few MiB whatever the size of the mailbox or of a single
message: it yields a :class:`MessageStart` (From_ line, stored header block, flags), then the
rest of the stored message as ``bytes`` chunks, then a :class:`MessageEnd` (offsets, size,
sha256 and occurrence number). The rules below are the ones the README quotes. The
reader's parts: its buffer and separator search (:mod:`mailplan.mail.mboxbuffer`),
messages larger than the buffer (:mod:`mailplan.mail.mboxstream`), Content-Length
(:mod:`mailplan.mail.mboxcl`); its events and errors are in :mod:`mailplan.mail.mboxtypes`.

Rules
-----

**Separator.** A line is a message separator when it begins with ``From `` and ends in a
date: the precise rule is in :mod:`mailplan.mail.fromline`.

**Newline ownership.** mail.local ends each message with an extra empty line before the next
From_ line. That empty line belongs to the mbox framing, not to the message: when the bytes
between a From_ line and the next one (or end of file) end with an empty line (``\\n\\n``, or
``\\r\\n`` after a line end: ``\\r\\n\\r\\n``, and ``\\n\\r\\n`` where LF mail is followed by a
CRLF blank line), exactly one line end is removed. Otherwise (no blank line before the next
separator, or a last message without trailing newline) the bytes are kept as they are: no
newline is ever added. The one ambiguity of mboxo: a message whose own last line is empty and
which is *not* followed by the framing blank line loses that line.

**``>From`` escaping.** By default message bytes are kept as stored (``>From `` stays
``>From ``): mboxo quoting cannot be undone without guessing. ``mboxrd=True`` removes one
``>`` from every line of the message matching ``^>+From `` (up to
:data:`~mailplan.mail.mboxstream.MAX_QUOTES` ``>``), in the header block too (a message
with no empty line is all header block). The same input and mode always give the same
bytes, however the stream's reads are cut.

**Content-Length** (Solaris mboxcl2) is honoured only when it is consistent with the file:
the byte at header end + length is the end of the file or a line start (right after a
``\\n``) where a separator line begins, optionally after one blank line (which is then
framing). A wrong value is ignored and the separator rule applies, so it never swallows
the next message (not even when it ends at the ``F`` of a quoted ``>From`` line). Checking
needs the claimed end: on seekable streams it is read by seeking; on pipes only when it
lies within ``lookahead`` bytes, else the header is ignored and
:attr:`MboxSummary.warnings` says so (the message is read all the same, cut by the
separators). When honoured, the body is taken as stored (no mboxrd unescaping, no
blank-line stripping).

**Header block.** The lines up to and including the first empty line, at most
``header_limit`` bytes (1 MiB); beyond that the rest is body. Its bookkeeping headers
(``Status``, ``X-Status``, ...) become Maildir state and flags and are removed from the
stored bytes: the rules are in :mod:`mailplan.mail.bookkeeping`.

**UW-IMAP pseudo message.** A first message whose Subject is ``DON'T DELETE THIS MESSAGE --
FOLDER INTERNAL DATA`` is skipped and counted in :attr:`MboxSummary.skipped_internal`.

**Arrival time.** The From_ line date; else the ``Date:`` header; else the mbox mtime given
by the caller (dates are read as :mod:`mailplan.mail.fromline` says).

**Not an mbox.** A non-empty stream that does not start with a separator raises
:class:`NotAnMbox` with the reason (MMDF ``\\x01\\x01\\x01\\x01``, binary data, text with no
From_ line, or the count of the bytes before the first From_ line). With
``skip_leading=True`` those bytes are skipped instead and reported in the summary
(:attr:`MboxSummary.skipped`), never dropped silently. Empty lines alone before it hold
no mail: they are framing, and :attr:`MboxSummary.warnings` says so. An empty stream is
an empty mailbox. A read resumed at ``offset > 0``
(the spool grew) starts where the plan placed the checkpoint: at a From_ line when the
last message read had no blank line at its end (it was left for that next read, see
:mod:`mailplan.facts.mailbox_scan`), or after a final last message, where it may start with
line ends before the From_ line: the framing blank line of that message, and before it
the line end it lacked, written when the new mail was appended (line ends with nothing
after them yet hold no mail: the read ends after them). Plan and apply read a resumed
read alike.

**Where earlier reads ended.** ``ends`` lists offsets where an earlier read of the same
file ended and took the last message as it was then: a settled mailbox's last message
without a final line end, or one after which more line ends came than a whole read
takes for framing (see :mod:`mailplan.facts.checkpoints`). Once mail is appended,
that message's bytes as a read through them sees them change (line ends added before
the next From_ line, or that From_ line right after its last byte, not a separator there),
so its identity would too. A read therefore ends the message at each of those offsets, as
the earlier read did, and goes on from there as a read resumed at that offset does: a
read from byte 0 gives every message the identity that the reads of earlier runs gave it.

**Identity.** ``(sha256 of the stored bytes, occurrence)``: the occurrence counts earlier
messages of the same folder with the same digest, so the same message twice is imported
twice and two different messages with the same Message-ID are both imported.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from datetime import tzinfo

from mailplan.mail.bookkeeping import _State, maildir_flags, split_bookkeeping, subject
from mailplan.mail.fromline import MAX_LINE, FromLine, header_date
from mailplan.mail.maildir import DIGEST_RE
from mailplan.mail.mboxcl import ContentLength, _stream_shift
from mailplan.mail.mboxstream import Streamed, _framing, _unescape
from mailplan.mail.mboxtypes import (
    Event,
    MailboxError,
    MboxSummary,
    MessageEnd,
    MessageStart,
    NotAnMbox,
    Readable,
    classify_not_mbox,
)
from mailplan.mail.windows import past_line_ends

__all__ = ["Event", "MailboxError", "MboxReader", "MboxSummary", "MessageEnd", "MessageStart",
           "NotAnMbox", "Readable", "classify_not_mbox", "read_mbox"]

HEADER_LIMIT = 1 << 20
# Reads are small enough for malloc to serve from its heap: with 1 MiB reads every
# refill was a fresh mmap (the read, then the buffer it is appended to), and their page
# faults cost the reader 6 us per 4 KB message (sys time 0.74 s -> 0.15 s per 100k).
# A message that does not fit makes the next read as large as the buffer (see _fill).
READ_SIZE = 64 << 10
LOOKAHEAD = 8 << 20
PSEUDO_SUBJECT = b"DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA"
_EMPTY_LINE = re.compile(rb"\n\r?\n")


#: empty lines (none longer than a line end) before the first From_ line of a file
_BLANK_LEAD = re.compile(rb"(?:\r?\n)+(?=From )")


class MboxReader(ContentLength, Streamed):
    """Iterate the events of an mbox read from ``stream`` starting at byte ``offset``.

    ``occurrences`` seeds the per-digest counters (hex digest -> how many copies come
    before ``offset``, for an incremental read that resumes there); it is not changed.
    The reader counts by the digest's 32 bytes: it remembers every digest it read (that
    is what numbering the copies takes), at 72 bytes each against 120 for the hex text.
    ``ends``: offsets where earlier reads ended (see Rules); those after ``offset`` end a
    message. After iteration, :attr:`summary` is complete.
    """

    def __init__(self, stream: Readable, *, offset: int = 0, mboxrd: bool = False,
                 mtime: float | None = None, zone: tzinfo | None = None,
                 skip_leading: bool = False, header_limit: int = HEADER_LIMIT,
                 read_size: int = READ_SIZE, lookahead: int = LOOKAHEAD,
                 occurrences: dict[str, int] | None = None, path: str | None = None,
                 ends: Sequence[int] = ()) -> None:
        self.stream = stream
        self.mboxrd = mboxrd
        self.mtime = mtime
        self.tz = zone  # where a date without a zone is read (fromline)
        self.skip_leading = skip_leading
        self.header_limit = header_limit
        self.read_size = read_size
        self.lookahead = lookahead
        self.occurrences = {bytes.fromhex(k): n for k, n in (occurrences or {}).items()
                            if DIGEST_RE.fullmatch(k)}  # another key matches no message
        self.path = path
        self.summary = MboxSummary(end_offset=offset)
        self._buf = b""
        self._base = offset  # file offset of _buf[0]
        self._eof = False
        shift = _stream_shift(stream, offset)
        self._seekable = shift is not None
        self._shift = shift or 0
        self._index = 0
        self._message_start = offset
        # the last line parsed: file offsets of its start and end, and what it is. The
        # separator that ended a message starts the next, which takes it from here
        # (date parsing is the reader's hot spot); bytes at a file offset never change
        self._parsed: tuple[int, FromLine | None, int] = (-1, None, -1)
        # the next of ``ends``: the stream is read up to it as if the file ended there
        self._ends = sorted({e for e in ends if e > offset}, reverse=True)
        self._limit: int | None = self._ends.pop() if self._ends else None
        #: where the read last went on from one of ``ends`` (None: it has not)
        self.resumed_at: int | None = None

    # -- iteration ----------------------------------------------------------------------
    def __iter__(self) -> Iterator[Event]:
        pos = self._start()
        while True:
            while pos is not None:
                pos = yield from self._message(pos)
            if not self._resume():
                break
            pos = self._start()
        self.summary.end_offset = self._base + len(self._buf)

    def _resume(self) -> bool:
        """At one of ``ends`` (every byte before it read): go on from there as a read
        resumed there would. False at the end of the stream."""
        end = self._limit
        if end is None or self._base + len(self._buf) != end:
            return False  # (a stream that ends before it: the file is shorter now)
        self._buf, self._base, self._eof = b"", end, False
        self._parsed = (-1, None, -1)
        self._limit = self._ends.pop() if self._ends else None
        self.resumed_at = end
        # a Content-Length past that end was past the end of the file that read saw
        self.summary.cl_past_end = None
        return True

    def _start(self) -> int | None:
        while len(self._buf) < 8192 and self._fill(0):
            pass
        if not self._buf:
            return None
        if self._buf.startswith(b"From ") and self._separator_at(0):
            return 0
        if self._base > 0:
            # Resuming after a last message taken without its line end or framing blank
            # line: the line ends appended before the next From_ line are framing, and
            # so are line ends with nothing after them yet (no mail in them).
            if (blank := _BLANK_LEAD.match(self._buf)) and self._separator_at(blank.end()):
                return blank.end()
            if self._eof and not past_line_ends(self._buf):
                self._buf, self._base = b"", self._base + len(self._buf)
                return None
        elif (blank := _BLANK_LEAD.match(self._buf)) and self._separator_at(blank.end()):
            # Empty lines before the first From_ line hold no mail: framing, as above.
            lines = blank[0].count(b"\n")
            self.summary.lead = (f"{lines} empty line{'s' * (lines > 1)} before the first "
                                 "From_ line (no mail in them) read as framing")
            self.summary.warnings.append(self.summary.lead)
            return blank.end()
        if not self.skip_leading:
            raise NotAnMbox(classify_not_mbox(self._buf), path=self.path)
        start = self._base
        while True:
            found = self._next_separator(0)
            if found is not None and found is not False:
                break
            if self._eof:
                self.summary.leading_offset = start
                self.summary.leading_bytes = self._base + len(self._buf) - start
                self.summary.skipped.append(
                    f"{self.summary.leading_bytes} bytes at offset {start} hold no From_ line")
                self._buf = b""
                return None
            self._fill(max(len(self._buf) - 8192, 0))
        self.summary.leading_offset = start
        self.summary.leading_bytes = self._base + found - start
        self.summary.skipped.append(
            f"{self.summary.leading_bytes} bytes before the first From_ line "
            f"(offset {start}) were skipped")
        return found

    def _message(self, pos: int) -> Iterator[Event]:
        """Emit one message whose From_ line starts at ``pos``; return the next position."""
        while True:
            sep = self._separator_at(pos)
            if sep is not False:
                break
            self._fill(pos)
            pos = 0
        assert isinstance(sep, FromLine)
        hstart = self._parsed[2] - self._base
        start = self._message_start = self._base + pos
        # Try to hold the whole message in the buffer (the common case).
        while True:
            nxt = self._next_separator(hstart - 1)
            if isinstance(nxt, int) and nxt is not False:
                break
            if self._eof:
                nxt = len(self._buf)
                break
            # past what is held whole, stream it; also while a From line at the buffer's
            # end is undecided (False: every read may end inside one, in a body of them),
            # once that line lies past the header block (streaming cuts no line there)
            if len(self._buf) - hstart > self.header_limit + self.read_size + (
                    MAX_LINE + 2 if nxt is False else 0):
                break
            off = pos
            self._fill(off)
            pos, hstart = 0, hstart - off
        if isinstance(nxt, int) and nxt is not False:
            return (yield from self._whole(pos, hstart, nxt, sep, start))
        return (yield from self._streamed(pos, hstart, sep, start))

    def _header_end(self, hstart: int, limit: int) -> int:
        """End of the header block in ``_buf[hstart:limit]`` (empty line, or bounded)."""
        m = _EMPTY_LINE.search(self._buf, hstart - 1, limit)
        if m is not None and m.end() - hstart <= self.header_limit:
            return m.end()
        if limit - hstart <= self.header_limit:
            return limit
        cut = self._buf.rfind(b"\n", hstart, hstart + self.header_limit)
        return cut + 1 if cut >= 0 else hstart + self.header_limit

    def _head(self, raw_headers: bytes, sep: FromLine, start: int,
              state: _State) -> MessageStart:
        flags, subdir = maildir_flags(state.status, state.xstatus)
        if state.keywords:  # IMAP keywords are flags of the file's name: not in new/
            subdir = "cur"
        arrival = sep.timestamp
        if arrival is None:
            arrival = header_date(raw_headers, self.tz)
        if arrival is None:
            arrival = self.mtime
        # positional: a named tuple built from keywords costs a third more, per message
        return MessageStart(self._index, start, sep, raw_headers, flags, subdir,
                            tuple(state.keywords), arrival, state.content_length)

    def _is_internal(self, headers: bytes, start: int, state: _State) -> bool:
        """UW-IMAP's pseudo message: the file's first (at offset 0, not merely the first
        of a read from a checkpoint), with its X-IMAP header and its subject; a message
        of the user's with that subject is mail like any other."""
        return start == 0 and state.imap and self.summary.skipped_internal == 0 and (
            subject(headers) == PSEUDO_SUBJECT)

    def _finish(self, head: MessageStart, start: int, end: int, size: int,
                digest: bytes) -> MessageEnd:
        occ = self.occurrences.get(digest, 0)
        self.occurrences[digest] = occ + 1
        self._index += 1
        self.summary.messages += 1
        self.summary.bytes_stored += size
        self.summary.end_offset = end
        return MessageEnd(head.index, start, end, size, digest.hex(), occ, head.flags,
                          head.subdir, head.arrival)

    def _close(self, head: MessageStart, start: int, nxt: int, size: int,
               digest: hashlib._Hash, internal: bool) -> Iterator[Event]:
        """End a streamed message whose next separator is at ``nxt``: its MessageEnd (or
        the count of a skipped pseudo message); return the next position."""
        if internal:
            self.summary.skipped_internal += 1
            self.summary.end_offset = self._base + nxt
        else:
            yield self._finish(head, start, self._base + nxt, size, digest.digest())
        return nxt if nxt < len(self._buf) or not self._eof else None

    def _whole(self, pos: int, hstart: int, nxt: int, sep: FromLine,
               start: int) -> Iterator[Event]:
        """The message from ``hstart`` to ``nxt`` is entirely in the buffer."""
        buf = self._buf
        hend = self._header_end(hstart, nxt)
        headers, state = split_bookkeeping(buf[hstart:hend])
        cl = state.content_length
        if cl is not None and self._cl_consistent(hend, cl):
            return (yield from self._cl_message(hstart, hend, headers, state, sep, start,
                                                hend + cl))
        seg_end = nxt - _framing(buf, hstart, nxt)
        if seg_end < hend:
            headers, state = split_bookkeeping(buf[hstart:seg_end])
            hend = seg_end
        body = buf[hend:seg_end]
        if self.mboxrd:
            # a header block cut mid-line (a first line longer than header_limit) goes on
            # in the body, not at a line start; the default limit (1 MiB) never cuts a
            # quote (at most MAX_QUOTES + 5 bytes)
            headers = _unescape(headers, True)
            body = _unescape(body, buf[hend - 1:hend] == b"\n")
        next_pos = nxt
        if self._is_internal(headers, start, state):
            self.summary.skipped_internal += 1
            self.summary.end_offset = self._base + next_pos
            return next_pos if next_pos < len(buf) or not self._eof else None
        head = self._head(headers, sep, start, state)
        yield head
        if body:
            yield body
        digest = hashlib.sha256(headers)
        digest.update(body)
        yield self._finish(head, start, self._base + next_pos, len(headers) + len(body),
                           digest.digest())
        return next_pos if next_pos < len(buf) or not self._eof else None

def read_mbox(stream: Readable, **options: object) -> tuple[list[tuple[MessageEnd, bytes]],
                                                            MboxSummary]:
    """Read a whole (small) mbox into memory: ``[(end, stored bytes)], summary``.

    For tests and small tools only; real imports iterate :class:`MboxReader`.
    """
    reader = MboxReader(stream, **options)  # type: ignore[arg-type]
    out: list[tuple[MessageEnd, bytes]] = []
    parts: list[bytes] = []
    for event in reader:
        if isinstance(event, MessageStart):
            parts = [event.headers]
        elif isinstance(event, MessageEnd):
            out.append((event, b"".join(parts)))
        else:
            parts.append(event)
    return out, reader.summary
