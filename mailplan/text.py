"""Control characters in text that came from outside: detect them, and escape them for
display.

Names, addresses and comments read from the source (passwd, ~/.forward, aliases, folder
file names) or the spec may hold NUL, newlines or terminal escape sequences. Such text is
refused where it would reach a command (:func:`has_control`), and every text shown to
the user passes :func:`escape` so that it can neither break a line of output nor send
escape sequences to a terminal. A folder name that begins or ends with a space is
quoted where it is shown (:func:`marked`): the space would not show.
"""

from __future__ import annotations

import unicodedata

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def is_number(text: str) -> bool:
    """Whether ``text`` is a non-negative integer in ASCII digits (``str.isdigit`` and
    ``int`` also take ``١٠٠٠`` or ``¹``)."""
    return text.isascii() and text.isdigit()


def is_control(char: str) -> bool:
    """Whether ``char`` is a control character (C0, DEL or C1)."""
    return unicodedata.category(char) == "Cc"


def has_control(text: str) -> bool:
    """Whether ``text`` holds any control character (NUL, newline, tab, ESC, DEL, C1)."""
    return any(is_control(c) for c in text)


def has_undecodable(text: str) -> bool:
    """Whether ``text`` holds a byte that was not UTF-8 where it was read (decoded with
    ``surrogateescape``): such text cannot be written out as UTF-8, nor found again in
    what a host reports back."""
    return any("\udc80" <= c <= "\udcff" for c in text)


def _escaped(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape_lines(text: str) -> str:
    """:func:`escape` for a text whose newlines are meant (an error with its hint): each
    line escaped, the newlines kept."""
    return "\n".join(escape(line) for line in text.split("\n"))


def escape(text: str) -> str:
    """``text`` with every non-printable character (except the space) written as an
    escape (``\\n``, ``\\x1b``, ``\\u202e``, ...); a printable text is returned as is."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else _escaped(c) for c in text)


def marked(name: str) -> str:
    """A folder name as output shows it among other words: between single quotes when
    white space begins or ends it (``' INBOX'``, ``'Sent '``, told apart from ``INBOX``
    and ``Sent``), or a quote begins it (so that a quoted name is never mistaken for
    one); any other name as it is. Not escaped: the line it goes into is."""
    if name != name.strip() or name.startswith("'"):
        return f"'{name}'"
    return name
