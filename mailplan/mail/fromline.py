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
not need a blank line before it (mail.local writes one, but real files lack it). A line
longer than :data:`MAX_LINE` (4096 bytes without its ``\\n``) is never a separator: a reader
must decide without holding a line of any length (no mailer writes one). The count on the
source (:data:`COUNT_SEPARATORS`) leaves such lines out too.

**Dates.** A From_ date without a zone, or with a zone name the stdlib does not know, is
read in ``zone``: the source host's time zone (mail.local writes its local time), with the
offset it had on that date (daylight saving time included); UTC when none is given. A
numeric zone (``+0000``, ``-0500``) is that offset. A
two-digit year is 1969-1999 (69-99) or 2000-2068 (00-68), as the stdlib reads it; four
digits are the year as written. A date out of range is no date, and the arrival time falls
back (to the ``Date:`` header, then the mbox mtime): a day the month does not have
(Feb 30), an hour over 23, a minute over 59, a second over 60 (60, a leap second, is read
as 59), a year outside 1970-2100 (:data:`YEARS`). It is never moved to another, valid
date. The line is a separator all the same (the separator rule does not read the date's
values). A ``Date:`` header is read by the stdlib; one outside 1970-2100, or with a year
written as four digits from 0 (``0050``, which the stdlib reads as 2050), is no date; one
without a zone (or ``-0000``) is read in ``zone`` too, never in the time zone of the
machine mailplan runs on.
"""

from __future__ import annotations

import calendar
import email.utils
import functools
import re
from datetime import UTC, datetime, timedelta, tzinfo
from typing import NamedTuple

from mailplan.shell import join

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
#: the longest line (without its ``\\n``) that may be a separator
MAX_LINE = 4096
_UTC_NAMES = frozenset({"UT", "UTC", "GMT", "Z"})
#: the years a From_ or Date: date may have; a date outside them is no date
YEARS = range(1970, 2101)
#: The same rule as a POSIX extended regular expression, for ``grep -E`` on the source
#: (counting a mailbox's separators where it is, in C locale, without reading it here;
#: the tests check both patterns agree). The trailing CR is a literal byte. It does not
#: bound the line's length: :data:`COUNT_SEPARATORS` drops the lines over MAX_LINE.
_ERE_ZONE = "([A-Za-z]{1,5}|[+-][0-9]{4})"
_ERE_START = "^From "  # a fixed start: COUNT_SEPARATORS picks lines by it first
FROM_LINE_ERE = (
    _ERE_START + ".* +(Mon|Tue|Wed|Thu|Fri|Sat|Sun),? +"
    "(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +[0-9]{1,2} +[0-9]{1,2}:[0-9]{2}"
    "(:[0-9]{2})?( +" + _ERE_ZONE + "){0,2} +"
    "([0-9]{4}|[0-9]{2})( +" + _ERE_ZONE + "){0,2}( +remote from .*)? *\r?$")

#: POSIX's least RE_DUP_MAX: no interval count in a pattern for the source's grep exceeds it
_DUP_MAX = 255
_RUNS, _REST = divmod(MAX_LINE + 1, _DUP_MAX)
#: a line longer than MAX_LINE: its first MAX_LINE + 1 bytes, as runs a grep with the least
#: RE_DUP_MAX takes too (GNU grep allows 32767)
_LONG_LINE = f"^(.{{{_DUP_MAX}}}){{{_RUNS}}}.{{{_REST}}}"
#: A shell pipeline that prints how many separators the stream on its stdin holds, as the
#: reader counts them: the lines FROM_LINE_ERE matches, less those longer than MAX_LINE
#: bytes (the reader takes such a line for body); every grep in C locale, bytes as bytes.
#: The lines are first picked by the pattern's fixed start (grep finds a fixed string at
#: memchr speed), so the full pattern runs on the From lines only: on 200 MB of 4 KB messages the
#: count took 0.26-0.41 s instead of 0.43-0.52 (user time 0.16-0.20 s against 0.27-0.31).
COUNT_SEPARATORS = (
    "LC_ALL=C " + join(["grep", "-a", _ERE_START])
    + " | LC_ALL=C " + join(["grep", "-a", "-E", FROM_LINE_ERE])
    + " | LC_ALL=C " + join(["grep", "-a", "-c", "-v", "-E", _LONG_LINE]))


class FromLine(NamedTuple):
    """A parsed separator line (without its line end). A named tuple: one is made per
    message, and a frozen dataclass costs five times as much to construct."""

    raw: bytes
    sender: bytes
    timestamp: float | None


def parse_from_line(line: bytes, zone: tzinfo | None = None) -> FromLine | None:
    """Parse a separator line (without ``\\n``); ``None`` when it is not one."""
    if len(line) > MAX_LINE:
        return None
    c = _COMMON.fullmatch(line)
    if c is not None:
        sender, mon, mday, h, mi, sec, year = c.groups()
        day = _day_start(mday, mon, year)
        hour, minute, second = int(h), int(mi), int(sec) if sec else 0
        # _seconds inline (a call costs 5% of this): out of range is no date; 60 is 59
        return FromLine(line.rstrip(b"\r"), sender, None if (
            day is None or hour > 23 or minute > 59 or second > 60) else float(
            day + hour * 3600 + minute * 60 + (second if second < 60 else 59)
            - (_offset(zone, day + hour * 3600 + minute * 60) if zone else 0)))
    return parse_general(line, zone)


def parse_general(line: bytes, zone: tzinfo | None = None) -> FromLine | None:
    """:func:`parse_from_line` without its fast path for the common line."""
    m = FROM_LINE.fullmatch(line)
    if m is None:
        return None
    return FromLine(line.rstrip(b"\r"), m["sender"], _from_date(m, zone))


_NUMERIC_ZONE = re.compile(rb"([+-])(\d\d)(\d\d)")


def _from_date(m: re.Match[bytes], zone: tzinfo | None) -> float | None:
    mday, mon, year, clock, zb, za = m.group("mday", "mon", "year", "time", "zb", "za")
    offset: int | None = None
    if zb or za:
        text = f"{mday.decode()} {mon.decode()} {year.decode()} 00:00:00"
        for word in (zb + za).split():
            numeric = _NUMERIC_ZONE.fullmatch(word)
            if numeric is not None:  # +0000 too: an offset of 0 is not "unknown"
                sign = -1 if numeric[1] == b"-" else 1
                offset = sign * (int(numeric[2]) * 3600 + int(numeric[3]) * 60)
                break
            name = word.decode()
            parsed = email.utils.parsedate_tz(f"{text} {name}")
            if parsed is None:
                continue
            # the stdlib gives 0 for a name it does not know: only UTC's names are 0
            if parsed[9] or name.upper() in _UTC_NAMES:
                offset = parsed[9]
                break
    day = _day_start(mday, mon, year)
    if day is None:
        return None
    hms = [int(x) for x in clock.split(b":")]
    seconds = _seconds(hms[0], hms[1], hms[2] if len(hms) == 3 else 0)
    if seconds is None:
        return None
    if offset is None:
        offset = _offset(zone, day + seconds) if zone else 0
    return float(day + seconds - offset)


def _offset(zone: tzinfo, local: int) -> int:
    """The UTC offset (seconds) ``zone`` has at wall-clock time ``local`` (seconds since
    1970-01-01 00:00 of that wall clock). A time a clock change skipped or repeated is
    read with the offset before the change (``fold=0``)."""
    return _quarter_offset(zone, local // 900)


@functools.lru_cache(maxsize=1 << 16)
def _quarter_offset(zone: tzinfo, quarter: int) -> int:
    """:func:`_offset` for a quarter of an hour of wall-clock time (clock changes fall on
    quarter hours): cached, as messages arrive close together."""
    wall = datetime(1970, 1, 1) + timedelta(seconds=quarter * 900)
    delta = wall.replace(tzinfo=zone).utcoffset()
    return int(delta.total_seconds()) if delta is not None else 0


def _seconds(hour: int, minute: int, second: int) -> int | None:
    """Seconds since midnight; None when a field is out of range (a leap second, 60, is
    read as 59: the same minute, not the next one)."""
    if hour > 23 or minute > 59 or second > 60:
        return None
    return hour * 3600 + minute * 60 + min(second, 59)


_MONTHS = {m: i for i, m in enumerate(
    b"Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}  # not locale's month_abbr


@functools.lru_cache(maxsize=4096)
def _day_start(mday: bytes, mon: bytes, year: bytes) -> int | None:
    """UTC seconds of the day's midnight; None when the day is not a day of that month or
    the year is outside :data:`YEARS`. A two-digit year is read as the stdlib's
    ``parsedate_tz`` reads it (69-99: 1900s, 00-68: 2000s); four digits as written.
    Cached: a spool's messages share few days, and this is per message."""
    y = int(year)
    if len(year) == 2:
        y += 1900 if y > 68 else 2000
    month = _MONTHS[mon]
    d = int(mday)
    if y not in YEARS or not 1 <= d <= calendar.monthrange(y, month)[1]:
        return None
    return calendar.timegm((y, month, d, 0, 0, 0, 0, 0, 0))


def header_date(headers: bytes, zone: tzinfo | None = None) -> float | None:
    """Timestamp of the ``Date:`` header of a header block, ``None`` if absent or bad; a
    date without a zone is read in ``zone`` (UTC when None)."""
    m = re.search(rb"(?im)^date[ \t]*:(.*(?:\r?\n[ \t].*)*)", headers)
    if m is None:
        return None
    try:
        value = m[1].decode("ascii", "replace").replace("\r", "").replace("\n", "")
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    # the stdlib reads a year written 0050 as 2050 (as if it were 50): no date either
    if when.year not in YEARS or _ZERO_YEAR.search(value):
        return None
    if when.tzinfo is None:  # no zone, or -0000: not this machine's zone
        when = when.replace(tzinfo=zone or UTC)
    return when.timestamp()


_ZERO_YEAR = re.compile(r"(?<![\d+-])0\d{3}(?!\d)")
