"""The header fields of a queued message that list and delete --match look at.

Part of the queue reader sent to the host (:mod:`mailplan.queue.agent`; stdlib only,
Python 3.7): the host runs this module's source first, then the agent's, in one
namespace (:mod:`mailplan.queue.remote`). So a read for ``list`` carries, for each
message, the few fields it shows and filters on instead of its whole header block (up
to 64 kB of Received chains and spam reports), and mailplan reads the fields out of that
short block with the very same functions as it would out of the whole one.

A header block is read as UTF-8, undecodable bytes as backslash escapes; its lines are
ended by LF (a CR before it dropped), as qmail stores them, up to the first empty one
(not :meth:`str.splitlines`' lines: a form feed, a NEL or a U+2028 in a Subject made
what followed it a header line of its own, a forged ``From:``, and two of them an empty
line that hid every header after it); a line
starting with a space or tab continues the header before it (joined with one space,
stripped); any other line with a colon starts a header (name and value stripped), and
a line without one is skipped. RFC 2047 decoding is left to mailplan
(:func:`mailplan.queue.formats.decoded`): the fields travel raw.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing is not imported to run (the agent starts faster)
if TYPE_CHECKING:  # annotations only
    from collections.abc import Iterator, Set

#: The longest value kept of a field, in characters: RFC 5322's limit for a line (998
#: characters), rounded. A longer one (a To of hundreds of addresses, a subject built to
#: be huge) is cut to this length, :data:`CUT` included, so that a queue of a hundred
#: thousand messages holds no more than this per field of each.
FIELD_LIMIT = 1000
#: What a cut value ends with.
CUT = " [...]"


def unfolded(block: bytes) -> Iterator[tuple[str, str]]:
    """(name, raw value) of each header of a message's header block, continuation lines
    joined (see the module's docstring)."""
    name = None
    parts: list[str] = []
    for line in block.decode("utf-8", "backslashreplace").split("\n"):
        line = line[:-1] if line.endswith("\r") else line
        if not line:
            break
        if line[0] in " \t" and name is not None:
            parts.append(line.strip())
        elif ":" in line:
            if name is not None:
                yield name, " ".join(parts)
            head, _, value = line.partition(":")
            name, parts = head.strip(), [value.strip()]
    if name is not None:
        yield name, " ".join(parts)


def capped(value: str, limit: int = FIELD_LIMIT) -> str:
    """``value``, or its first characters and :data:`CUT` when it is longer than
    ``limit`` (the result is ``limit`` long: capping it again changes nothing)."""
    return value if len(value) <= limit else value[:limit - len(CUT)] + CUT


def first_fields(block: bytes, names: Set[str]) -> list[tuple[str, str]]:
    """The first header of each of ``names`` (lower case) in ``block``, in block order,
    its value stripped (a first line or last continuation lines without text leave
    spaces at its ends) and :func:`capped`, its name interned (a hundred thousand
    messages share one ``Subject``): what mailplan looks at (the first Subject,
    From, To and Cc), and the same again when ``block`` is :func:`fields_block` of it."""
    out = []
    wanted = set(names)
    for name, value in unfolded(block):
        key = name.lower()
        if key in wanted:
            wanted.discard(key)
            out.append((sys.intern(name), capped(value.strip())))
            if not wanted:
                break
    return out


def fields_block(fields: list[tuple[str, str]]) -> bytes:
    """``fields`` as a header block of their own, one line each (UTF-8): what the agent
    sends for a mess file instead of its header block."""
    return "".join(f"{name}: {value}\n" for name, value in fields).encode("utf-8")
