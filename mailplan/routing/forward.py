"""Parse a user's ~/.forward file as sendmail reads it.

Each non-blank line that does not start with ``#`` is an address list (see
:mod:`mailplan.routing.addresses`): addresses, ``\\user`` (deliver to the user's own
mailbox as well: "keep a local copy"), ``"|program"``, ``/file``. sendmail treats an
empty ~/.forward as absent; so does :func:`parse_forward` (no targets). Pure: the caller
reads the file through the source connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailplan.routing.addresses import parse_list
from mailplan.routing.aliases import decode
from mailplan.routing.model import Address, Origin, Target


@dataclass(frozen=True)
class ForwardFile:
    """The parsed ~/.forward of one source user (``user`` is the source login)."""

    user: str
    path: str
    targets: tuple[Target, ...]

    def keeps_local_copy(self) -> bool:
        """Whether a ``\\user`` line keeps delivering to the user's own mailbox."""
        return any(isinstance(t, Address) and t.escaped and t.domain is None
                   and t.local.lower() == self.user.lower() for t in self.targets)


def parse_forward(data: bytes | str, path: str, user: str) -> ForwardFile:
    """Parse ~/.forward of ``user``; raises RoutingError naming path and line."""
    targets: list[Target] = []
    for number, raw in enumerate(decode(data).split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        targets.extend(parse_list(line, lambda _off, n=number: Origin(path, n)))
    return ForwardFile(user, path, tuple(targets))
