"""The mbox reader's buffer: what it holds of the stream, and where separators are in it.

A base class of :class:`mailplan.mail.mbox.MboxReader` (its state is set up there). The
buffer holds the stream's bytes from file offset ``_base`` on; a refill drops what the
reader is done with and reads at least as much as it keeps, never past the next offset
where an earlier read ended (``_limit``). A separator line is found with
:func:`mailplan.mail.search.find_separator` and parsed once
(:func:`mailplan.mail.fromline.parse_from_line`): the separator that ends a message
starts the next, which takes the parsed line from ``_parsed``.
"""

from __future__ import annotations

from datetime import tzinfo

from mailplan.mail.fromline import MAX_LINE, FromLine, parse_from_line
from mailplan.mail.mboxtypes import Readable
from mailplan.mail.search import find_separator


class SeparatorBuffer:
    """The reader's buffer and its separator search (state lives in :class:`MboxReader`)."""

    stream: Readable
    tz: tzinfo | None
    read_size: int
    _buf: bytes
    _base: int  # file offset of _buf[0]
    _eof: bool
    _limit: int | None  # where the file is read as ending for now (MboxReader's ends)
    # the last line parsed: file offsets of its start and end, and what it is
    _parsed: tuple[int, FromLine | None, int]

    def _fill(self, pos: int) -> bool:
        """Drop bytes before ``pos`` and read more; return False at end of stream. The
        read is at least as large as what is kept, so a message held whole while the
        buffer grows is copied a bounded number of times, not once per ``read_size``."""
        if pos:
            self._buf = self._buf[pos:]
            self._base += pos
        if self._eof:
            return False
        size = max(self.read_size, len(self._buf))
        if self._limit is not None:
            size = min(size, self._limit - self._base - len(self._buf))
        data = self.stream.read(size) if size > 0 else b""
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    def _line_end(self, i: int) -> int | None:
        """Index just past the line starting at ``i`` (None: needs more data)."""
        nl = self._buf.find(b"\n", i)
        if nl >= 0:
            return nl + 1
        return len(self._buf) if self._eof else None

    def _separator_at(self, i: int) -> FromLine | None | bool:
        """Parse the line at ``i``: FromLine, None (not one), or False (need more data).
        When it is not False, ``_parsed`` holds it and where its line ends."""
        at, found, _end = self._parsed
        if at == self._base + i:
            return found
        end = self._line_end(i)
        if end is None:
            return None if len(self._buf) - i > MAX_LINE else False
        line = self._buf[i:end]
        if line.endswith(b"\n"):
            line = line[:-1]
        found = parse_from_line(line, self.tz)
        self._parsed = (self._base + i, found, self._base + end)
        return found

    def _next_separator(self, start: int) -> int | None | bool:
        """Index of the next separator line at or after ``start`` (needs a preceding \\n)."""
        i = start
        while True:
            j = find_separator(self._buf, i)
            if j < 0:
                return None
            found = self._separator_at(j + 1)
            if found is False:
                return False
            if found is not None:
                return j + 1
            i = j + 1
