"""What ``find`` (C locale) says on stderr while the source's mailboxes are listed
(:mod:`mailplan.facts.mailboxes`): which starting point each message is about, so that a
spool or folders directory find could not see is named in the plan, not taken for an
empty one; and a listing that must be whole (:func:`whole_listing`: verify's of the
target's Maildirs)."""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mailplan.errors import HostError
from mailplan.remote import run_batch

if TYPE_CHECKING:
    from mailplan.connectors.base import Connector


def find_messages(stderr: bytes, starts: Sequence[str]) -> list[tuple[str, str, bool]]:
    """``(start, message, named)`` for each of ``find``'s messages (C locale) on
    ``stderr`` but those of a missing file (an empty INBOX, no folders): ``start`` is
    the starting point of ``starts`` the message names or lies under (``named``); a
    message that names none of them counts for every one (not ``named``)."""
    out = []
    for line in stderr.decode("utf-8", "surrogateescape").splitlines():
        if not line.strip() or line.endswith(": No such file or directory"):
            continue
        path = _quoted_path(line)
        under = [s for s in starts
                 if path is not None and (path == s or path.startswith(s.rstrip("/") + "/"))]
        out += [(start, line, bool(under)) for start in (under or starts)]
    return out


def _quoted_path(line: str) -> str | None:
    """The file a ``find: 'PATH': REASON`` message names: find (C locale) writes it
    between quotes with C escapes (``\\'``, ``\\\\``, octal for other bytes)."""
    if not line.startswith("find: '"):
        return None
    quoted = line[len("find: '"):].rpartition("': ")[0]
    try:
        raw = codecs.escape_decode(quoted.encode("utf-8", "surrogateescape"))[0]
    except ValueError:
        return None
    return raw.decode("utf-8", "surrogateescape")


def whole_listing(conn: Connector, command: str, starts: Sequence[str], step: str) -> bytes:
    """The output of ``command``, a ``find`` (C locale) of ``starts`` whose stderr is
    kept: :class:`HostError` when find could not read something there (a directory the
    login may not read would hide what is in it); files gone meanwhile (a mail client's
    rename) and missing starting points are no error."""
    (res,) = run_batch(conn, [command])
    said = list(dict.fromkeys(line for _start, line, _named in find_messages(res.stderr,
                                                                            starts)))
    if said:
        more = f" (and {len(said) - 1} more)" if len(said) > 1 else ""
        raise HostError(f"cannot list every file there: {said[0]}{more}", host=conn.name,
                        step=step, hint="the listing must be whole: log in to that host "
                        "as root, or set sudo: true")
    return res.stdout
