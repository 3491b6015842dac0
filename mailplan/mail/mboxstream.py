"""Messages larger than the mbox reader's buffer, streamed; the framing and mboxrd rules.

A mixin of :class:`mailplan.mail.mbox.MboxReader`: a message that does not fit in the
buffer (more than ``header_limit`` + ``read_size`` bytes before its next separator is
found) goes out in chunks, each sent once no separator can start in it. What is held
back: the last line end and a few bytes (a separator may follow), a From_ line still
arriving, and with ``mboxrd`` a line that may still become a quoted From_ line (at most
:data:`MAX_QUOTES` ``>``). The helpers are the rules of the reader's docstring, shared
with messages held whole: :func:`_framing` (newline ownership: the framing blank line)
and :func:`_unescape` (``>From`` escaping, the same however the chunks are cut).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from mailplan.mail.bookkeeping import _State, split_bookkeeping
from mailplan.mail.fromline import FromLine
from mailplan.mail.mboxbuffer import SeparatorBuffer
from mailplan.mail.mboxtypes import Event

if TYPE_CHECKING:
    from mailplan.mail.mboxtypes import MessageStart

#: an mboxrd-quoted From_ line has at most this many ``>`` (a line quoted deeper is kept
#: as stored): a streamed message holds back an undecided quote this long, not longer
MAX_QUOTES = 4096
_UNESCAPE = re.compile(rb"^>(>{0,%d}From )" % (MAX_QUOTES - 1), re.M)


class Streamed(SeparatorBuffer):
    """The reader's path for a message larger than its buffer (state lives in
    :class:`MboxReader`)."""

    mboxrd: bool

    if TYPE_CHECKING:
        def _header_end(self, hstart: int, limit: int) -> int: ...
        def _cl_consistent(self, hend: int, length: int) -> bool: ...
        def _cl_message(self, hstart: int, hend: int, headers: bytes, state: _State,
                        sep: FromLine, start: int, body_end_rel: int) -> Iterator[Event]: ...
        def _is_internal(self, headers: bytes, start: int, state: _State) -> bool: ...
        def _head(self, raw_headers: bytes, sep: FromLine, start: int,
                  state: _State) -> MessageStart: ...
        def _close(self, head: MessageStart, start: int, nxt: int, size: int,
                   digest: hashlib._Hash, internal: bool) -> Iterator[Event]: ...

    def _streamed(self, pos: int, hstart: int, sep: FromLine,
                  start: int) -> Iterator[Event]:
        """A message larger than the buffer: stream the body with a small hold-back."""
        hend = self._header_end(hstart, len(self._buf))
        headers, state = split_bookkeeping(self._buf[hstart:hend])
        cl = state.content_length
        if cl is not None and self._cl_consistent(hend, cl):
            return (yield from self._cl_message(hstart, hend, headers, state, sep, start,
                                                hend + cl))
        bol = self._buf[hend - 1:hend] == b"\n"  # the header block may end mid-line
        if self.mboxrd:
            headers = _unescape(headers, True)
        internal = self._is_internal(headers, start, state)
        head = self._head(headers, sep, start, state)
        digest = hashlib.sha256(headers)
        size = len(headers)
        if not internal:
            yield head
        # i: the first byte not sent yet; lo: where the message starts (negative once
        # its start left the buffer), so the framing check sees what _whole sees
        i, lo = hend, hstart
        while True:
            end, nxt = self._cut(i, lo)
            chunk = self._buf[i:end]
            if chunk:
                if self.mboxrd:
                    chunk = _unescape(chunk, bol)
                bol = end > 0 and self._buf[end - 1:end] == b"\n"
                digest.update(chunk)
                size += len(chunk)
                if not internal:
                    yield chunk
            if nxt is not None:
                break
            # the last bytes sent stay in the buffer: the separator search looks one byte
            # behind what is unsent, the framing check up to four
            keep = max(end - 4, 0)
            self._fill(keep)
            i, lo = end - keep, lo - keep
        return (yield from self._close(head, start, nxt, size, digest, internal))

    def _cut(self, i: int, lo: int) -> tuple[int, int | None]:
        """Where the chunk of the buffer that starts at ``i`` ends, and where the next
        message starts when the message ends with that chunk (None: more of it follows)."""
        buf = self._buf
        nxt = self._next_separator(max(i - 1, 0))
        if nxt is not False and isinstance(nxt, int):
            return nxt - _framing(buf, lo, nxt), nxt
        if self._eof:
            return len(buf) - _framing(buf, lo, len(buf)), len(buf)
        if nxt is False:
            # a From_ line still arriving (the last line, unterminated): keep it and
            # the line end before it (CRLF too: it may be framing) unsent
            end = buf.rfind(b"\n")
            if buf[end - 1:end] == b"\r":
                end -= 1
            return max(end, i), None
        # Keep the last line end and 16 bytes unsent: a separator may follow
        # (after a short read the buffer may hold fewer: then nothing goes yet).
        safe = max(len(buf) - 16, i)
        nl = buf.rfind(b"\n", i, safe)
        end = nl if nl > i else safe
        if self.mboxrd and end > i:
            # a line cut while it may still be a quoted From_ line (">>Fr") would
            # be unescaped by neither chunk: cut before it instead
            start_of_line = buf.rfind(b"\n", 0, end) + 1
            if start_of_line >= i and _undecided_quote(
                    buf[start_of_line:min(end, start_of_line + MAX_QUOTES + 5)]):
                end = start_of_line
        return end, None


def _framing(buf: bytes, lo: int, end: int) -> int:
    """How many bytes before ``end`` are the framing blank line (0, 1 or 2): an empty
    last line, ``\\n`` or ``\\r\\n``, after a line end (the From_ line's when the
    message is empty). ``\\n\\r\\n`` counts too, not only ``\\r\\n\\r\\n``: a read resumed
    at a checkpoint takes a CRLF line end before its first From_ line as framing (see
    Rules), so a whole read must end an LF message followed by one the same way."""
    if buf[end - 2:end] == b"\n\n" and end - lo >= 1 and end >= 2:
        return 1
    if buf[end - 3:end] == b"\n\r\n" and end - lo >= 2 and end >= 3:
        return 2
    return 0


def _undecided_quote(line: bytes) -> bool:
    """Whether a line's first bytes may still become an mboxrd-quoted From_ line."""
    rest = line.lstrip(b">")
    quotes = len(line) - len(rest)
    return 0 < quotes <= MAX_QUOTES and len(rest) < 5 and b"From ".startswith(rest)


def _unescape(chunk: bytes, bol: bool) -> bytes:
    """``chunk`` with one ``>`` removed from each quoted From_ line (``bol``: it starts
    at a line start; else its first line is the end of one already sent). Every such
    line holds ``>From ``: a chunk without it is returned as it is, unsearched (the
    regex's line-start search cost a plain read's CPU again on text quoting ``>``)."""
    if b">From " not in chunk:
        return chunk
    if bol:
        return _UNESCAPE.sub(rb"\1", chunk)
    nl = chunk.find(b"\n")
    if nl < 0:
        return chunk
    return chunk[:nl + 1] + _UNESCAPE.sub(rb"\1", chunk[nl + 1:])
