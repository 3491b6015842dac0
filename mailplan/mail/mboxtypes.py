"""What the mbox reader emits and raises: the events of a message, the summary of a
read, and the errors (with why a file is not an mbox). See :mod:`mailplan.mail.mbox`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from mailplan.errors import MailplanError
from mailplan.mail.fromline import FromLine, parse_from_line


class MailboxError(MailplanError):
    """A mailbox could not be read as mail."""


class NotAnMbox(MailboxError):
    """The file is not an mbox; ``reason`` says why. Nothing from it is imported."""

    def __init__(self, reason: str, *, path: str | None = None) -> None:
        super().__init__(f"{path}: not an mbox: {reason}" if path else f"not an mbox: {reason}",
                         hint="the mailbox is reported as unreadable and skipped")
        self.reason, self.path = reason, path


class Readable(Protocol):
    """Anything with ``read(n) -> bytes`` (a file, a pipe, a connector process)."""

    def read(self, size: int = ..., /) -> bytes: ...


class MessageStart(NamedTuple):
    """First event of a message: framing, state and the stored header block.

    The two events of every message are named tuples: immutable like a frozen dataclass,
    at a fifth of its construction cost (the reader makes two per message)."""

    index: int
    start: int
    from_line: FromLine
    headers: bytes
    flags: str
    subdir: str
    keywords: tuple[str, ...]
    arrival: float | None
    content_length: int | None


class MessageEnd(NamedTuple):
    """Last event of a message: its extent in the file and its identity."""

    index: int
    start: int
    end: int
    size: int
    sha256: str
    occurrence: int
    flags: str
    subdir: str
    arrival: float | None

    @property
    def identity(self) -> tuple[str, int]:
        """``(digest, occurrence)``: what makes this message unique in its folder."""
        return (self.sha256, self.occurrence)


@dataclass
class MboxSummary:
    """What a whole read found, complete once the iterator is exhausted."""

    messages: int = 0
    bytes_stored: int = 0
    skipped_internal: int = 0
    leading_offset: int | None = None
    leading_bytes: int = 0
    end_offset: int = 0
    #: what was read otherwise than the file says, every message read all the same (a
    #: Content-Length not checked: the separators cut the message instead)
    warnings: list[str] = field(default_factory=list)
    #: what :attr:`warnings` says of empty lines before the first From_ line (read as
    #: framing: no mail in them), None where there were none
    lead: str | None = None
    #: bytes not read as mail (``skip_leading``: the bytes before the first From_ line)
    skipped: list[str] = field(default_factory=list)
    #: file offset of the first message whose Content-Length reaches past the end of
    #: what was read (read by the separators instead): in a spool still being written,
    #: a Solaris delivery not finished yet
    cl_past_end: int | None = None


Event = MessageStart | bytes | MessageEnd


def classify_not_mbox(data: bytes) -> str:
    """Why bytes that do not start with a separator are not an mbox (for the report)."""
    if data.startswith(b"\x01\x01\x01\x01"):
        return "MMDF mailbox (\\x01\\x01\\x01\\x01 separators), not mboxo"
    if b"\x00" in data[:4096]:
        return "binary data (NUL bytes) where a From_ line should start"
    for first in re.finditer(rb"(?:^|\n)(From [^\n]*)", data):
        if parse_from_line(first[1]) is not None:
            at = first.start(1)
            return (f"{at} bytes before the first From_ line; the file does not start "
                    "with a From_ line")
    return "no From_ line at the start (plain text or headers without a From_ line)"
