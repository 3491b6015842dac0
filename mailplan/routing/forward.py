"""Parse a user's ~/.forward file as sendmail reads it.

Each non-blank line that does not start with ``#`` is an address list (see
:mod:`mailplan.routing.addresses`): addresses, ``\\user`` (deliver to the user's own
mailbox as well: "keep a local copy"), ``"|program"``, ``/file``. sendmail treats an
empty ~/.forward as absent; so does :func:`parse_forward` (no targets); an entry that is
no address is left out, with its line (``ForwardFile.bad``). Pure: the caller reads the
file through the source connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailplan.routing.aliases import parse_include
from mailplan.routing.model import Address, Origin, Target


@dataclass(frozen=True)
class ForwardFile:
    """The parsed ~/.forward of one source user (``user`` is the source login);
    ``bad``: where an entry that is no address was left out."""

    user: str
    path: str
    targets: tuple[Target, ...]
    bad: tuple[Origin, ...] = ()

    def keeps_local_copy(self) -> bool:
        """Whether a ``\\user`` line keeps delivering to the user's own mailbox."""
        return any(isinstance(t, Address) and t.escaped and t.domain is None
                   and t.local.lower() == self.user.lower() for t in self.targets)


def parse_forward(data: bytes | str, path: str, user: str) -> ForwardFile:
    """Parse ~/.forward of ``user``. Its lines are read like an ``:include:`` file's
    (address lists; blank and ``#`` lines skipped), but an entry that is no address
    (a typo, a trailing comment: ``bob@x.example  # home``) does not stop the plan: it
    is left out and its line recorded in ``bad``, as sendmail rejected that address
    and delivered to the rest. A user's file is not the admin's to fix first."""
    bad: list[Origin] = []
    targets = parse_include(data, path, bad)
    return ForwardFile(user, path, tuple(targets), tuple(bad))
