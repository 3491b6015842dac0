"""Sendmail address lists: split an RHS at top-level commas and classify each item.

Shared by the aliases, ~/.forward and virtusertable parsers. The rules follow sendmail's
aliases(5): items are separated by commas outside double quotes, angle brackets and
parenthesised comments; an item is ``|program``, ``/file``, ``:include:/path``,
``error:status message``, ``\\user``, ``user@domain`` or a bare local ``name``, optionally
written ``Full Name <addr>`` or ``addr (comment)``; a double-quoted item is taken
literally (``"|/usr/bin/prog arg"``). Anything that cannot be one of those raises
:class:`~mailplan.routing.model.RoutingError` naming the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from mailplan.routing.model import (
    Address,
    ErrorCode,
    FileDelivery,
    Include,
    Origin,
    Program,
    RoutingError,
    Target,
)

_DOMAIN = re.compile(r"^(\[[0-9A-Fa-f.:]+\]|[A-Za-z0-9%]([A-Za-z0-9.%_-]*[A-Za-z0-9%])?)$")
_BAD_LOCAL = re.compile(r"[\s<>()@,;\"\\]")


def split_items(text: str, origin_at: Callable[[int], Origin]) -> list[tuple[str, Origin]]:
    """The comma-separated items of ``text`` with the origin of each item's first byte."""
    items: list[tuple[str, Origin]] = []
    start = i = 0
    in_quote = False
    angle = paren = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if in_quote:
            in_quote = c != '"'
        elif c == '"':
            in_quote = True
        elif c == "(":
            paren += 1
        elif c == ")":
            if paren == 0:
                raise RoutingError("')' without '('", origin=origin_at(i))
            paren -= 1
        elif c == "<" and not paren:
            angle += 1
        elif c == ">" and not paren:
            if angle == 0:
                raise RoutingError("'>' without '<'", origin=origin_at(i))
            angle -= 1
        elif c == "," and not (angle or paren):
            items.append((text[start:i], origin_at(_first_text(text, start, i))))
            start = i + 1
        i += 1
    if in_quote:
        raise RoutingError("unterminated double quote", origin=origin_at(start))
    if angle or paren:
        raise RoutingError("unbalanced '<' or '('", origin=origin_at(start))
    items.append((text[start:], origin_at(_first_text(text, start, len(text)))))
    return [(item, origin) for item, origin in items if item.strip()]


def _first_text(text: str, start: int, end: int) -> int:
    """Offset of the first non-blank character in text[start:end] (for its line number)."""
    for pos in range(start, end):
        if not text[pos].isspace():
            return pos
    return start


def parse_item(item: str, origin: Origin) -> Target:
    """Classify one address-list item (already split at commas)."""
    text = _strip_comments(item.strip(), origin)
    if "<" in text and not text.startswith('"|'):
        match = re.fullmatch(r'(?:"[^"]*"|[^"<>])*<\s*([^<>]*?)\s*>\s*', text)
        if not match or not match.group(1):
            raise RoutingError(f"cannot read the address in {item.strip()!r}", origin=origin)
        text = match.group(1)
    if text.startswith('"'):
        content, rest = _read_quoted(text, origin)
        if not rest:
            return _classify(content, origin, quoted=True)
        if rest.startswith("@"):
            return _address(content, rest[1:], origin, escaped=False, quoted=True)
        raise RoutingError(f"unexpected text after a quoted string: {rest!r}", origin=origin)
    return _classify(text, origin, quoted=False)


def parse_list(text: str, origin_at: Callable[[int], Origin]) -> list[Target]:
    """Split and classify a whole address list."""
    return [parse_item(item, origin) for item, origin in split_items(text, origin_at)]


def _classify(text: str, origin: Origin, *, quoted: bool) -> Target:
    if text.startswith("|"):
        command = text[1:].strip()
        if not command:
            raise RoutingError("'|' without a program", origin=origin)
        return Program(command, origin)
    if text.startswith("/"):
        return FileDelivery(text, origin)
    lowered = text.lower()
    if lowered.startswith(":include:"):
        path = text[len(":include:"):].strip()
        if not path:
            raise RoutingError(":include: without a file name", origin=origin)
        return Include(path, origin)
    if lowered.startswith("error:"):
        status, _, message = text[len("error:"):].strip().partition(" ")
        if not status:
            raise RoutingError("error: without a status code", origin=origin)
        return ErrorCode(status, message.strip(), origin)
    escaped = text.startswith("\\")
    if escaped:
        text = text[1:]
        if text.startswith('"'):
            content, rest = _read_quoted(text, origin)
            if rest and not rest.startswith("@"):
                raise RoutingError(f"unexpected text after a quoted string: {rest!r}",
                                   origin=origin)
            return _address(content, rest[1:] if rest else None, origin, escaped=True,
                            quoted=True)
    local, at, domain = text.rpartition("@")
    if not at:
        return _address(text, None, origin, escaped=escaped, quoted=quoted)
    return _address(local, domain, origin, escaped=escaped, quoted=quoted)


def _address(local: str, domain: str | None, origin: Origin, *, escaped: bool,
             quoted: bool) -> Address:
    shown = local if domain is None else f"{local}@{domain}"
    if not local:
        raise RoutingError(f"{shown!r} has no user part", origin=origin)
    if not quoted and _BAD_LOCAL.search(local):
        raise RoutingError(f"{shown!r} is not an address or local name", origin=origin,
                           hint=_blank_hint(shown))
    if domain is not None and not _DOMAIN.match(domain):
        raise RoutingError(f"{shown!r} has no valid domain after '@'", origin=origin,
                           hint=_blank_hint(shown) if len(domain.split()) > 1 else None)
    return Address(local, domain.lower() if domain else None, origin, escaped)


def _blank_hint(item: str) -> str:
    """What most likely went wrong with an unquoted item that has blanks or specials:
    a trailing comment, a missing comma, or a name to quote."""
    words = item.split()
    if any(word.startswith("#") for word in words[1:]):
        return ("'#' starts a comment only at the start of a line (sendmail reads the "
                "rest of a line as addresses): move the comment to a line of its own")
    if len(words) > 1:
        return ("separate addresses with commas (a line that continues an entry needs "
                'one at the end of the line before it), or quote a name with spaces: '
                '"name with space"')
    return 'quote names that contain spaces: "name with space"'


def _read_quoted(text: str, origin: Origin) -> tuple[str, str]:
    """The unescaped content of the leading "..." and the stripped text after it."""
    out: list[str] = []
    i = 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), text[i + 1:].strip()
        out.append(c)
        i += 1
    raise RoutingError("unterminated double quote", origin=origin)


def _strip_comments(text: str, origin: Origin) -> str:
    """Drop RFC 822 ``(comments)`` outside double quotes."""
    out: list[str] = []
    depth = 0
    in_quote = False
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            if not depth:
                out.append(text[i:i + 2])
            i += 2
            continue
        if in_quote:
            in_quote = c != '"'
        elif c == '"' and not depth:
            in_quote = True
        elif c == "(":
            depth += 1
            i += 1
            continue
        elif c == ")" and depth:
            depth -= 1
            i += 1
            continue
        if not depth:
            out.append(c)
        i += 1
    if depth:
        raise RoutingError("unterminated '(' comment", origin=origin)
    return "".join(out).strip()
