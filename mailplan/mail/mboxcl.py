"""Content-Length (Solaris mboxcl2) for the mbox reader: honoured only when the file agrees.

A mixin of :class:`mailplan.mail.mbox.MboxReader` (it works on the reader's buffer): the
byte at header end + length must be the end of the file or a line start (right after a
``\n``) where a separator line begins, optionally after one blank line (which is then
framing). Checking needs the claimed end: on seekable streams it is read by seeking; on
pipes only within ``lookahead`` bytes, else the header is ignored and the summary says so.
When honoured, the body is taken as stored (no mboxrd unescaping, no blank-line stripping).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from mailplan.mail.bookkeeping import _State
from mailplan.mail.fromline import MAX_LINE, FromLine, parse_from_line
from mailplan.mail.mboxtypes import Event, MboxSummary

if TYPE_CHECKING:
    from mailplan.mail.mboxtypes import MessageStart, Readable


# what is looked at the claimed end: the byte before it, a blank line and a whole From_ line
_PROBE = 2 * MAX_LINE


class ContentLength:
    """The reader's Content-Length handling (state lives in :class:`MboxReader`)."""

    stream: Readable
    summary: MboxSummary
    tz: int
    lookahead: int
    read_size: int
    _buf: bytes
    _base: int
    _eof: bool
    _seekable: bool
    _shift: int  # a seekable stream's position of a file offset X is X + _shift
    _message_start: int  # file offset of the From_ line of the message being read
    _limit: int | None  # where the file is read as ending for now (MboxReader's ends)

    if TYPE_CHECKING:
        def _fill(self, pos: int) -> bool: ...
        def _separator_at(self, i: int) -> FromLine | None | bool: ...
        def _is_internal(self, headers: bytes, start: int, state: _State) -> bool: ...
        def _head(self, raw_headers: bytes, sep: FromLine, start: int,
                  state: _State) -> MessageStart: ...
        def _close(self, head: MessageStart, start: int, nxt: int, size: int,
                   digest: hashlib._Hash, internal: bool) -> Iterator[Event]: ...

    def _cl_consistent(self, hend: int, length: int) -> bool:
        """Whether ``length`` bytes after the header block end at EOF, or at a line start
        (right after a ``\\n``) where a separator line begins, optionally after one blank
        line. A line start is checked: a length ending at the ``F`` of a quoted ``>From``
        line must not take the next message's From_ line in."""
        # from the claimed end's previous byte (the header block's last when length is 0)
        probe = self._probe(self._base + hend + length - 1)
        if probe is None:
            self.summary.warnings.append(
                f"Content-Length at offset {self._base + hend} not checked (beyond lookahead "
                "on a non-seekable stream); separators used instead")
            return False
        if not probe:  # False, or the file ends before the claimed end
            if self.summary.cl_past_end is None:
                self.summary.cl_past_end = self._message_start
            return False
        after = probe[1:]
        at_eof = len(probe) < _PROBE  # the probe holds the rest of the file
        if after == b"" and at_eof:
            return True  # the end of the file
        if probe[0] != 0x0A:  # "\n": not a line start
            return False
        for lead in (b"", b"\n", b"\r\n"):
            if not after.startswith(lead):
                continue
            rest = after[len(lead):]
            if lead and rest == b"" and at_eof:
                return True
            nl = rest.find(b"\n")
            if nl < 0 and not at_eof:
                continue  # longer than the probe: longer than MAX_LINE, not a separator
            line = rest if nl < 0 else rest[:nl]
            if line.startswith(b"From ") and parse_from_line(line, self.tz):
                return True
        return False

    def _probe(self, target: int) -> bytes | None | bool:
        """Up to ``_PROBE`` bytes at absolute offset ``target``: None if it cannot be
        looked at, False if the file is shorter than ``target``."""
        rel = target - self._base
        while rel + _PROBE > len(self._buf) and not self._eof:
            if self._seekable:
                found = _seek_read(self.stream, target + self._shift,
                                   self._base + len(self._buf) + self._shift)
                if self._limit is None or found is False:
                    return found
                # the file as the read sees it ends at the limit
                return found[:self._limit - target] if target <= self._limit else False
            if len(self._buf) > self.lookahead:
                return None
            self._fill(0)  # sets _eof at the end of the stream
        if rel > len(self._buf):
            return False
        return self._buf[rel:rel + _PROBE]

    def _after_cl(self, body_end: int) -> int:
        for lead in (b"\n", b"\r\n"):
            if self._buf.startswith(lead, body_end):
                rest = body_end + len(lead)
                if rest == len(self._buf) and self._eof:
                    return rest
                if self._buf.startswith(b"From ", rest) and self._separator_at(rest):
                    return rest
        return body_end

    def _cl_message(self, hstart: int, hend: int, headers: bytes, state: _State,
                    sep: FromLine, start: int, body_end_rel: int) -> Iterator[Event]:
        """A message whose body is exactly its (consistent) Content-Length."""
        internal = self._is_internal(headers, start, state)
        head = self._head(headers, sep, start, state)
        if not internal:
            yield head
        digest = hashlib.sha256(headers)
        size = len(headers)
        body_end = self._base + body_end_rel
        i = hend
        while True:
            avail_end = min(len(self._buf), body_end - self._base)
            chunk = self._buf[i:avail_end]
            if chunk:
                digest.update(chunk)
                size += len(chunk)
                if not internal:
                    yield chunk
            if self._base + avail_end >= body_end:
                i = avail_end
                break
            if not self._fill(avail_end):
                i = len(self._buf)
                break
            i = 0
        while len(self._buf) - i < _PROBE and not self._eof:  # the next From_ line, whole
            self._fill(i)
            i = 0
        nxt = self._after_cl(i)
        return (yield from self._close(head, start, nxt, size, digest, internal))


def _stream_shift(stream: object, offset: int) -> int | None:
    """For a seekable stream read from file ``offset`` on: its position minus the file
    offset (the stream may hold only the file's tail, as a resumed read's does); None
    when it cannot seek (then it is read, never seeked)."""
    try:
        if not stream.seekable() or not hasattr(stream, "tell"):  # type: ignore[attr-defined]
            return None
        return int(stream.tell()) - offset  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return None


def _seek_read(stream: object, target: int, resume: int) -> bytes | bool:
    """Up to ``_PROBE`` bytes at stream position ``target`` (False past the end), then
    back to ``resume``."""
    size = stream.seek(0, 2)  # type: ignore[attr-defined]
    if target > size:
        stream.seek(resume)  # type: ignore[attr-defined]
        return False
    stream.seek(target)  # type: ignore[attr-defined]
    data = b""
    while len(data) < _PROBE:  # a read may return less than asked before the end
        more = stream.read(_PROBE - len(data))  # type: ignore[attr-defined]
        if not more:
            break
        data += more
    stream.seek(resume)  # type: ignore[attr-defined]
    return data
