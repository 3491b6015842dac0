"""Aliases sendmail's newaliases refuses as too long: not carried over, with a warning.

The boundaries below were measured with Debian's sendmail 8.17.1.9 (``sendmail -bi`` on
these very entries, then ``praliases``): an entry fits while its text (continuation
lines without their newlines, a joining backslash and its newline left out, a CR kept)
and its final newline take at most 8191 bytes (glibc's BUFSIZ less one); the last entry
of a file without a final newline may take 8191 bytes of text.
"""

from __future__ import annotations

import pytest

from mailplan.routing.aliases import SENDMAIL_ALIAS_BUFFER, effective_aliases, parse_aliases
from mailplan.routing.model import Origin


def _fill(prefix: str, n: int) -> str:
    """``prefix`` then ``a,`` repeated, ``n`` characters in all, ending in a comma."""
    text = (prefix + "a," * n)[:n]
    return text if text.endswith(",") else text[:-1] + ","


def _entries(text: str) -> tuple[list[str], list[tuple[str, int, int]]]:
    parsed = parse_aliases(text.encode(), "/etc/aliases")
    return ([e.name for e in parsed.entries],
            [(e.name, e.origin.line, size) for e, size in parsed.too_long])


@pytest.mark.parametrize("total", [8190, 8191])
@pytest.mark.parametrize(("kind", "make"), [
    # one line
    ("line", lambda name, total: _fill(f"{name}: ", total - 1) + "z"),
    # a continuation line (starting with a blank): its newline is not in the buffer
    ("continued", lambda name, total: _fill(f"{name}: ", 4000) + "\n"
     + _fill(" ", total - 4001) + "z"),
    # a backslash joins two lines: neither it nor the newline is in the buffer
    ("joined", lambda name, total: _fill(f"{name}: ", 4000) + "\\\n"
     + _fill("", total - 4001) + "z"),
    # a line of blanks inside the entry: its blanks are
    ("blank line", lambda name, total: _fill(f"{name}: ", 4000) + "\n" + " " * 10 + "\n"
     + _fill(" ", total - 4011) + "z"),
    # a CR before the newline is text to sendmail
    ("crlf", lambda name, total: _fill(f"{name}: ", total - 2) + "z\r"),
])
def test_an_entry_fits_sendmails_buffer_up_to_8190_bytes_of_text(kind, make, total):
    text = make("big", total) + "\nnext: bob\n"
    kept, dropped = _entries(text)
    if total == SENDMAIL_ALIAS_BUFFER - 2:
        assert (kept, dropped) == (["big", "next"], [])
    else:
        assert kept == ["next"]
        assert [(name, line) for name, line, _size in dropped] == [("big", 1)]
        assert dropped[0][2] == SENDMAIL_ALIAS_BUFFER


def test_the_last_entry_without_a_newline_may_take_8191_bytes():
    assert _entries("first: bob\n" + _fill("big: ", 8190) + "z") == (["first", "big"], [])
    assert _entries("first: bob\n" + _fill("big: ", 8191) + "z")[1] == [("big", 2, 8192)]


def test_a_refused_entry_is_a_warning_and_an_earlier_definition_stays():
    """newaliases stores nothing for an entry it refuses: a name defined before keeps
    that definition (no "duplicate" either), and the warning says what to do."""
    text = "staff: alice\n" + _fill("staff: ", 9000) + "z\nsales: carol\n"
    table, findings = effective_aliases([parse_aliases(text, "/etc/aliases")])
    assert [str(t) for t in table["staff"].targets] == ["alice"]
    assert sorted(table) == ["sales", "staff"]
    assert [(f.severity, f.origin) for f in findings] == [("warning", Origin("/etc/aliases", 2))]
    assert findings[0].message.startswith(
        "alias 'staff' is not carried over: its entry takes 9002 bytes, and sendmail's "
        "newaliases refuses one over 8191")
    assert ":include: file" in findings[0].message


def test_bytes_not_characters_are_counted():
    # sendmail's buffer holds bytes: a UTF-8 name of two-byte characters counts twice
    name = "\u00e9" * 10
    fits = _fill(f"x{name}: ", 8190 - 10) + "z"
    assert len(fits) == 8190 - 9 and len(fits.encode()) == 8191
    assert _entries(fits + "\n")[1] == [(f"x{name}", 1, 8192)]
