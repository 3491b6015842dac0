"""Parse a user's ~/.forward file as sendmail reads it.

Each non-blank line that does not start with ``#`` is an address list (see
:mod:`mailplan.routing.addresses`): addresses, ``\\user`` (deliver to the user's own
mailbox as well: "keep a local copy"), ``"|program"``, ``/file``. sendmail treats an
empty ~/.forward as absent; so does :func:`parse_forward` (no targets). Pure: the caller
reads the file through the source connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailplan.routing.aliases import parse_include
from mailplan.routing.model import Address, Target


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
    """Parse ~/.forward of ``user``; raises RoutingError naming path and line. Its lines
    are read like an ``:include:`` file's (address lists; blank and ``#`` lines skipped)."""
    return ForwardFile(user, path, tuple(parse_include(data, path)))
