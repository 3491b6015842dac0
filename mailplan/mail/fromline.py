"""The mbox From_ separator line: recognising it, and the dates it and the header carry.

:class:`mailplan.mail.mbox.MboxReader` asks :func:`parse_from_line` whether a line is a
message separator; the timestamp it returns (or :func:`header_date`, when the From_ line has
no usable date) is the message's arrival time.

Rules
-----

**Separator.** A line is a message separator when, and only when, it starts at offset 0 or
right after a ``\\n``, begins with ``From `` and the rest of the line is
``<sender> <weekday> <month> <day> <hh:mm[:ss]> [zone [zone]] <year> [zone [zone]]``
optionally followed by `` remote from <host>``, then the line end (``\\n``, ``\\r\\n`` or end
of file). The sender may be empty, contain spaces or non-ASCII bytes; the separating runs of
spaces may be longer than one (``From a  Mon Jan  1 ...``); the day may be unpadded; the
zone may be a name (``EST``, ``MET DST``) or a numeric offset, before or after the year.
A body line ``From here on ...`` is *not* a separator (no date at its end). A separator does
not need a blank line before it (mail.local writes one, but real files lack it).

**Dates.** A From_ date without a zone, or with a zone name the stdlib does not know, is
read in ``default_utc_offset`` (seconds; the source host's offset, 0 by default).
"""

from __future__ import annotations

import calendar
import email.utils
import functools
import re
from typing import NamedTuple

_DAY = rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_MON = rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_ZONE = rb"(?:[A-Za-z]{1,5}|[+-]\d{4})"
# The sender is empty or ends in a byte that is not a space: the same lines and fields as
# a lazy ``.*?`` before the `` +`` (the shortest sender never ends in a space, a shorter one
# would match), but each run of spaces is tried once, where it starts, not once per byte
# of it: ``.*?`` made "From " + 40k spaces take 21 s (quadratic), this takes milliseconds.
FROM_LINE = re.compile(
    rb"From (?P<sender>(?:.*?[^ ])??) +(?P<wday>" + _DAY + rb"),? +(?P<mon>" + _MON + rb") +"
    rb"(?P<mday>\d{1,2}) +(?P<time>\d{1,2}:\d{2}(?::\d{2})?)"
    rb"(?P<zb>(?: +" + _ZONE + rb"){0,2}) +(?P<year>\d{4}|\d{2})"
    rb"(?P<za>(?: +" + _ZONE + rb"){0,2})(?: +remote from .*)? *\r?", re.S)
# The line mail.local writes (a sender without spaces, no zone, no "remote from"), matched
# without FROM_LINE's backtracking over the sender (2.7 -> 1.2 us a line). Wherever it
# matches, FROM_LINE matches with the same fields (its lazy sender cannot end before the
# first space, and the rest has one reading); any other line goes to FROM_LINE. The tests
# compare the two readings.
_COMMON = re.compile(
    rb"From ([^ ]+) +(?:" + _DAY + rb"),? +(" + _MON + rb") +(\d{1,2}) +(\d{1,2}):(\d{2})"
    rb"(?::(\d{2}))? +(\d{4}|\d{2}) *\r?")  # groups by position: names cost 0.6 us a line
_UTC_NAMES = frozenset({"UT", "UTC", "GMT", "Z"})
#: The same rule as a POSIX extended regular expression, for ``grep -E`` on the source
#: (counting a mailbox's separators where it is, in C locale, without reading it here;
#: the tests check both patterns agree). The trailing CR is a literal byte.
_ERE_ZONE = "([A-Za-z]{1,5}|[+-][0-9]{4})"
FROM_LINE_ERE = (
    "^From .* +(Mon|Tue|Wed|Thu|Fri|Sat|Sun),? +(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|"
    "Dec) +[0-9]{1,2} +[0-9]{1,2}:[0-9]{2}(:[0-9]{2})?( +" + _ERE_ZONE + "){0,2} +"
    "([0-9]{4}|[0-9]{2})( +" + _ERE_ZONE + "){0,2}( +remote from .*)? *\r?$")


class FromLine(NamedTuple):
    """A parsed separator line (without its line end). A named tuple: one is made per
    message, and a frozen dataclass costs five times as much to construct."""

    raw: bytes
    sender: bytes
    timestamp: float | None


def parse_from_line(line: bytes, default_utc_offset: int = 0) -> FromLine | None:
    """Parse a separator line (without ``\\n``); ``None`` when it is not one."""
    c = _COMMON.fullmatch(line)
    if c is not None:
        sender, mon, mday, h, mi, sec, year = c.groups()
        day = _day_start(mday, mon, year)
        return FromLine(line.rstrip(b"\r"), sender, None if day is None else float(
            day + int(h) * 3600 + int(mi) * 60 + (int(sec) if sec else 0)
            - default_utc_offset))
    return parse_general(line, default_utc_offset)


def parse_general(line: bytes, default_utc_offset: int = 0) -> FromLine | None:
    """:func:`parse_from_line` without its fast path for the common line."""
    m = FROM_LINE.fullmatch(line)
    if m is None:
        return None
    return FromLine(line.rstrip(b"\r"), m["sender"], _from_date(m, default_utc_offset))


def _from_date(m: re.Match[bytes], default_offset: int) -> float | None:
    mday, mon, year, clock, zb, za = m.group("mday", "mon", "year", "time", "zb", "za")
    offset: int | None = None
    if zb or za:
        text = f"{mday.decode()} {mon.decode()} {year.decode()} 00:00:00"
        for zone in (zb + za).split():
            name = zone.decode()
            parsed = email.utils.parsedate_tz(f"{text} {name}")
            if parsed is None:
                continue
            if parsed[9] or name.upper() in _UTC_NAMES:
                offset = parsed[9]
                break
    day = _day_start(mday, mon, year)
    if day is None:
        return None
    hms = [int(x) for x in clock.split(b":")]
    seconds = hms[0] * 3600 + hms[1] * 60 + (hms[2] if len(hms) == 3 else 0)
    return float(day + seconds - (default_offset if offset is None else offset))


@functools.lru_cache(maxsize=4096)
def _day_start(mday: bytes, mon: bytes, year: bytes) -> int | None:
    """UTC seconds of the day's midnight, read as the stdlib's ``parsedate_tz`` reads it
    (two-digit years included); cached: a spool's messages share few days, and this is per
    message. ``calendar.timegm`` is linear in the time of day, so adding it after is exact."""
    parsed = email.utils.parsedate_tz(f"{mday.decode()} {mon.decode()} {year.decode()} 00:00:00")
    if parsed is None:
        return None
    try:
        return calendar.timegm(parsed[:3] + (0, 0, 0, 0, 0, 0))
    except (OverflowError, ValueError):
        return None


def header_date(headers: bytes) -> float | None:
    """Timestamp of the ``Date:`` header of a header block, ``None`` if absent or bad."""
    m = re.search(rb"(?im)^date[ \t]*:(.*(?:\r?\n[ \t].*)*)", headers)
    if m is None:
        return None
    try:
        value = m[1].decode("ascii", "replace").replace("\r", "").replace("\n", "")
        return email.utils.parsedate_to_datetime(value.strip()).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
