"""The ledger's flags lines: the Maildir flags each message had on the source when
mailplan last wrote its flags (its import into cur/, flags added by a ``flags`` change).

The writer appends ``dir TAB sha256 TAB occurrence TAB FLAGS`` after a message's line
(``FLAGS_LINE`` of :mod:`mailplan.mail.writer.proto`); the last one of a message counts.
Four fields: no ledger reader, of this version or an earlier one, takes it for a
message's line. A plan proposes only the flags the source gained since
(:mod:`mailplan.facts.flag_gain`): one the target lacks that the source had then was
removed there by its user. A message without one (imported into new/ with no flag, or by
an earlier version) is compared as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_LINE = rb"([^\t\n]*)\t([0-9a-f]{64})\t([0-9]+)\t([A-Z]*)$"
_FLAGS_LINE = re.compile(rb"^" + _LINE, re.M)
#: the same after its byte offset in the ledger (as look_up_digests' awk prints it)
_OFFSET_FLAGS_LINE = re.compile(rb"^[0-9]+:" + _LINE, re.M)


class Recorded(set[tuple[str, int]]):
    """A folder's identities in the ledger (``parse_ledger``), with ``recorded``: the
    flags the source had when mailplan last wrote them, by identity (its flags lines)."""

    def __init__(self) -> None:
        super().__init__()
        self.recorded: dict[tuple[str, int], str] = {}


def flags_lines(data: bytes, *, offset: bool = False
                ) -> Iterator[tuple[str, tuple[str, int], str]]:
    """``(dir, identity, flags)`` of each flags line of ``data`` (ledger lines; with
    ``offset``, each after its byte offset and a colon), in order."""
    for m in (_OFFSET_FLAGS_LINE if offset else _FLAGS_LINE).finditer(data):
        yield m[1].decode("utf-8", "replace"), (m[2].decode(), int(m[3])), m[4].decode()
