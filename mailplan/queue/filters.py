"""Choosing messages: the filters of ``queue list`` and the selectors of ``queue delete``.

Patterns are case-insensitive substrings unless ``regex`` is set (then Python regular
expressions, searched anywhere). A sender pattern sees the envelope sender; a recipient
pattern sees every envelope recipient both as stored (``example.com-bob@example.com``)
and without qmail's virtualdomains prefix (``bob@example.com``); ``from``/``to`` for
delete also see the From and To/Cc headers; subjects are matched decoded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailplan.errors import MailplanError
from mailplan.queue import formats
from mailplan.queue.model import Message

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> int:
    """``90s``, ``15m``, ``2h``, ``3d``, ``1w`` (or plain seconds) as seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", text)
    if not match:
        raise MailplanError(f"cannot read the age {text!r}",
                            hint="write a number with a unit: 30m, 2h, 3d, 1w")
    return int(match.group(1)) * _UNITS[match.group(2) or "s"]


@dataclass(frozen=True)
class Pattern:
    """A substring or regular expression, case-insensitive."""

    text: str
    regex: bool = False

    def __post_init__(self) -> None:
        if self.regex:
            try:
                re.compile(self.text)
            except re.error as exc:
                raise MailplanError(f"bad regular expression {self.text!r}: {exc}") from None

    def matches(self, value: str) -> bool:
        """Whether ``value`` contains the pattern."""
        if self.regex:
            return re.search(self.text, value, re.IGNORECASE) is not None
        return self.text.lower() in value.lower()

    def any(self, values: list[str]) -> bool:
        """Whether any of ``values`` contains the pattern."""
        return any(self.matches(v) for v in values)


def senders(msg: Message, headers: bool) -> list[str]:
    """What a sender pattern is matched against."""
    out = [msg.sender or ""]
    if headers:
        out.append(msg.header_from)
    return out


def recipients(msg: Message, headers: bool) -> list[str]:
    """What a recipient pattern is matched against."""
    out = [a for r in msg.recipients for a in (r.address, r.plain)]
    if headers:
        for name in ("To", "Cc"):
            value = formats.header(list(msg.headers), name)
            if value:
                out.append(formats.decoded(value))
    return out


@dataclass(frozen=True)
class Filter:
    """The conditions a message must meet, all of them (an empty filter takes all)."""

    sender: Pattern | None = None
    recipient: Pattern | None = None
    subject: Pattern | None = None
    older_than: int | None = None
    newer_than: int | None = None
    bounces: bool = False
    headers: bool = False  # also match From/To/Cc headers (delete --match)

    @property
    def needs_headers(self) -> bool:
        """Whether the filter looks at a message's headers (Subject; From, To and Cc)."""
        return self.subject is not None or self.headers

    def accepts(self, msg: Message, now: int) -> bool:
        """Whether ``msg`` meets every condition."""
        if self.sender and not self.sender.any(senders(msg, self.headers)):
            return False
        if self.recipient and not self.recipient.any(recipients(msg, self.headers)):
            return False
        if self.subject and not self.subject.matches(msg.subject):
            return False
        if self.older_than is not None and msg.age(now) < self.older_than:
            return False
        if self.newer_than is not None and msg.age(now) > self.newer_than:
            return False
        return not (self.bounces and not msg.is_bounce)

    def select(self, msgs: list[Message], now: int) -> list[Message]:
        """The messages that pass."""
        return [m for m in msgs if self.accepts(m, now)]


def match_filter(field: str, pattern: str, regex: bool) -> Filter:
    """The filter of ``delete --match FIELD PATTERN``. An empty PATTERN is refused: every
    text contains it, so ``--match from ''``, written for the bounces' empty sender,
    chose the whole queue."""
    if field not in ("from", "to", "subject"):
        raise MailplanError(f"cannot match on {field!r}", hint="use from, to or subject")
    if pattern == "":
        raise MailplanError(f"--match {field} '': an empty pattern matches every message; "
                            "nothing was deleted",
                            hint="for bounces (envelope sender <> or #@[]) use --bounces; "
                            "to choose every message, say so: --match from '^' --regex")
    pat = Pattern(pattern, regex)
    if field == "from":
        return Filter(sender=pat, headers=True)
    if field == "to":
        return Filter(recipient=pat, headers=True)
    if field == "subject":
        return Filter(subject=pat)
    raise MailplanError(f"cannot match on {field!r}", hint="use from, to or subject")
