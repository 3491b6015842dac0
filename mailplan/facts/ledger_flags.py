"""The ledger's flags lines: the Maildir flags and IMAP keywords each message had on
the source when mailplan last wrote its flags (its import into cur/, flags added or the
source's flags recorded by a ``flags`` change, the import's ``G`` for messages found).

The writer appends ``dir TAB sha256 TAB occurrence TAB FLAGS`` after a message's line
(``FLAGS_LINE`` of :mod:`mailplan.mail.writer.proto`); the last one of a message counts.
FLAGS is the capitals, then the keyword letters of the folder's ``dovecot-keywords``
(as in a file name after ``:2,``; a line of session 55 has capitals only). Four fields:
no ledger reader, of this version or an earlier one, takes it for a message's line. A
plan proposes only the flags and keywords the source gained since
(:mod:`mailplan.facts.flag_gain`): one the target lacks that the source had then was
removed there by its user; one the source dropped since is recorded again, so that it
is a gain when it comes back. A message without one (imported into new/ with no flag,
or by an earlier version) is compared as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_LINE = rb"([^\t\n]*)\t([0-9a-f]{64})\t([0-9]+)\t([A-Za-z]*)$"
_FLAGS_LINE = re.compile(rb"^" + _LINE, re.M)
#: the same after its byte offset in the ledger (as look_up_digests' awk prints it)
_OFFSET_FLAGS_LINE = re.compile(rb"^[0-9]+:" + _LINE, re.M)


class Recorded(set[tuple[str, int]]):
    """A folder's identities in the ledger (``parse_ledger``), with ``recorded``: the
    flags the source had when mailplan last wrote them, by identity (its flags lines)."""

    def __init__(self) -> None:
        super().__init__()
        self.recorded: dict[tuple[str, int], str] = {}


class FolderFlags(dict[bytes, str]):
    """A folder's message files on the target: the Maildir flags of each by identity
    key (:meth:`~mailplan.mail.maildir.Identities.key`): its capitals and keyword letters
    after ``:2,`` in cur/, "" in new/. ``keywords`` is the folder's ``dovecot-keywords``
    (letter -> keyword): what its files' letters name, and how many letters are taken.
    ``recorded``: by identity key, the flags and keyword letters the source had when
    mailplan last wrote them (the ledger's flags lines; a message imported by an earlier
    version has none)."""

    def __init__(self) -> None:
        super().__init__()
        self.keywords: dict[str, str] = {}
        self.recorded: dict[bytes, str] = {}


def flags_lines(data: bytes, *, offset: bool = False
                ) -> Iterator[tuple[str, tuple[str, int], str]]:
    """``(dir, identity, flags)`` of each flags line of ``data`` (ledger lines; with
    ``offset``, each after its byte offset and a colon), in order."""
    for m in (_OFFSET_FLAGS_LINE if offset else _FLAGS_LINE).finditer(data):
        yield m[1].decode("utf-8", "replace"), (m[2].decode(), int(m[3])), m[4].decode()
