"""Parsers for the bytes of qmail's queue files (pure functions, no I/O).

As recorded from notqmail (see ``reference/qmail-queue``):

* ``todo/ID`` and ``intd/ID`` (qmail-queue): ``u<uid>\\0p<pid>\\0F<sender>\\0T<rcpt>\\0...``;
* ``info/N/ID`` (qmail-send): ``F<sender>\\0``, just ``F\\0`` for the empty sender <>;
* ``local/N/ID`` and ``remote/N/ID``: ``T<rcpt>\\0`` per recipient still to do, ``D`` instead
  of ``T`` once done;
* ``mess/N/ID``: the message; qmail-queue put a ``Received:`` line in front.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.header import decode_header, make_header

#: Envelope senders of bounces: <> for a bounce, #@[] for a double bounce.
BOUNCE_SENDERS = frozenset({"", "#@[]"})

#: What may not reach a terminal from one line of queue text: C0 controls (tab and
#: newline too: they forge columns and rows), DEL, C1 controls (\x9b is a CSI), the
#: Unicode line and paragraph separators, and bidi and zero-width format characters.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e"
                      "\u2066-\u2069\ufeff]")


class FormatError(ValueError):
    """A queue file does not have the layout qmail writes."""


def text(raw: bytes) -> str:
    """Queue bytes as text: UTF-8, undecodable bytes shown as backslash escapes."""
    return raw.decode("utf-8", "backslashreplace")


def printable(value: str) -> str:
    """``value`` safe for a terminal on one line: control characters (newline and tab
    included) become ``_`` (as qmail-qread)."""
    return _CONTROL.sub("_", value)


def _records(data: bytes) -> list[bytes]:
    """The NUL-terminated records of a queue file, as qmail-send reads them with
    ``getln(..., '\\0')``: bytes after the last NUL are a record it never reads (see
    :func:`unread_record`)."""
    return data.split(b"\0")[:-1]


def unread_record(data: bytes) -> str | None:
    """What qmail-send makes of the bytes after the last NUL of a todo/, local/ or
    remote/ file (None when there are none): getln reaches the end of the file without
    the NUL, and qmail-send takes that as the end of the file (todo_do preprocesses the
    envelope without it, pass_dochan finishes the file without it). Its recipient, if
    it is one, gets nothing, and no bounce either; the file's other recipients are
    delivered."""
    tail = data[data.rfind(b"\0") + 1:]
    if not tail:
        return None
    said = f"its last record {text(tail)[:60]!r} does not end with a NUL byte: " \
        "qmail-send never reads it"
    if tail.startswith(b"T"):
        said += f", so {text(tail[1:])[:60]!r} gets nothing (and no bounce)"
    return said


@dataclass(frozen=True)
class Envelope:
    """What qmail-queue wrote to todo/ (and intd/)."""

    uid: int | None
    pid: int | None
    sender: str
    recipients: tuple[str, ...]


def parse_envelope(data: bytes) -> Envelope:
    """Parse a todo/ or intd/ file as qmail-send's todo_do reads it: ``u``, ``p``, ``F``
    and ``T`` records in any order (the first ``F`` is the sender), each ending in a NUL
    (a last one without it qmail-send never reads: :func:`unread_record`). Any other record,
    the empty one too (two NULs in a row, as ending the envelope qmail-queue reads on
    fd 1, which it does not copy), stops qmail-send at it on every pass ("unknown
    record type"): the message is never delivered."""
    uid = pid = None
    sender: str | None = None
    rcpts: list[str] = []
    for field in _records(data):
        kind, value = field[:1], field[1:]
        if kind == b"u":
            uid = int(value) if value.isdigit() else None
        elif kind == b"p":
            pid = int(value) if value.isdigit() else None
        elif kind == b"F":
            sender = text(value) if sender is None else sender
        elif kind == b"T":
            rcpts.append(text(value))
        elif field == b"":
            raise FormatError("envelope has an empty record (two NUL bytes in a row), "
                              "which qmail-send stops at")
        else:
            raise FormatError(f"unexpected envelope field {text(field)[:40]!r}")
    if sender is None:
        raise FormatError("envelope has no F (sender) field")
    return Envelope(uid, pid, sender, tuple(rcpts))


def parse_info(data: bytes) -> str:
    """The envelope sender in an info/ file (``""`` for <>), read as qmail-send's
    getinfo does: its first NUL-terminated record, which must be ``F<sender>``;
    anything after it is never read (qmail-send writes one ``F`` record per ``F`` of
    the todo/ envelope)."""
    end = data.find(b"\0")
    if end < 0 or not data.startswith(b"F"):
        raise FormatError("info file does not begin with an F<sender> record ending in NUL")
    return text(data[1:end])


def read_recipients(data: bytes) -> tuple[list[tuple[str, bool]], FormatError | None]:
    """(address, done) for each recipient of a local/ or remote/ file that qmail-send's
    pass_dochan reads, and why it stops before the end (None: it does not). It reads
    the NUL-terminated records (a last one without its NUL it never reads:
    :func:`unread_record`) up to one that is neither ``T`` nor ``D``: there it stops at
    every pass ("unknown record type"), after starting the deliveries before it."""
    out = []
    for field in _records(data):
        if field[:1] not in (b"T", b"D"):
            return out, FormatError(f"recipient entry {text(field)[:40]!r} starts with "
                                    "neither T nor D")
        out.append((text(field[1:]), field[:1] == b"D"))
    return out, None


def parse_recipients(data: bytes) -> list[tuple[str, bool]]:
    """(address, done) for each recipient of a local/ or remote/ file
    (:func:`read_recipients`); :class:`FormatError` where qmail-send stops early."""
    out, stop = read_recipients(data)
    if stop is not None:
        raise stop
    return out


def header(headers: list[tuple[str, str]], name: str) -> str | None:
    """The first header called ``name`` (case-insensitive), raw."""
    wanted = name.lower()
    return next((v for n, v in headers if n.lower() == wanted), None)


def decoded(value: str) -> str:
    """A header value with RFC 2047 encoded words decoded (left as is if they are broken:
    an unknown charset, bytes it cannot decode, base64 of an impossible length)."""
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeDecodeError, HeaderParseError):
        return value


def plain_local(address: str) -> str:
    """``DOMAIN-user@DOMAIN`` (a virtualdomains rewrite) as ``user@DOMAIN``; else as is."""
    local, at, domain = address.rpartition("@")
    prefix = domain + "-"
    if at and local.lower().startswith(prefix.lower()) and len(local) > len(prefix):
        return f"{local[len(prefix):]}@{domain}"
    return address
