"""The vocabulary shared by the routing parsers and the mapping.

A sendmail routing entry (an alias, a ~/.forward line, a virtusertable line) is a list
of *targets*; every target remembers the file and line it came from (:class:`Origin`) so
that a warning or an error can point the admin at the exact source line. The target
kinds are the ones sendmail itself distinguishes: a mail address or local name, a
``|program``, a ``/file`` delivery, an ``:include:`` list and an ``error:`` code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mailplan.errors import MailplanError


@dataclass(frozen=True, order=True)
class Origin:
    """Where a routing entry stood: a file (on the source host or the spec) and a line."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


class RoutingError(MailplanError):
    """A routing source file or routing rule is malformed or unusable; names file and line."""

    def __init__(self, message: str, *, origin: Origin | None = None,
                 hint: str | None = None) -> None:
        super().__init__(f"{origin}: {message}" if origin else message, hint=hint)
        self.origin = origin


@dataclass(frozen=True)
class Address:
    """A mail address (``local@domain``) or a bare local name (``domain`` is None).

    ``escaped`` is sendmail's ``\\user``: deliver to that user's own mailbox without
    alias or ~/.forward expansion (in a ~/.forward: keep a local copy). ``listed``: read
    from an ``:include:`` file, whose text a warning never quotes (mailplan reads it as
    root; it may hold anything). ``depth``: how many ``:include:`` files deep it was read
    from its alias (each is one level of sendmail's MaxAliasRecursion); not compared.
    """

    local: str
    domain: str | None
    origin: Origin
    escaped: bool = False
    listed: bool = False
    depth: int = field(default=0, compare=False)

    def __str__(self) -> str:
        text = self.local if self.domain is None else f"{self.local}@{self.domain}"
        return "\\" + text if self.escaped else text


@dataclass(frozen=True)
class Program:
    """``|command``: sendmail pipes the message into a shell command."""

    command: str
    origin: Origin

    def __str__(self) -> str:
        return "|" + self.command


@dataclass(frozen=True)
class FileDelivery:
    """``/path/file``: sendmail appends the message to a file."""

    path: str
    origin: Origin

    def __str__(self) -> str:
        return self.path


@dataclass(frozen=True)
class Include:
    """``:include:/path``: a list of targets read from another file.

    ``problem`` is set by :func:`mailplan.routing.aliases.resolve_includes` when the file
    could not be read or includes itself; an Include left in a resolved file always
    carries a problem.
    """

    path: str
    origin: Origin
    problem: str | None = None

    def __str__(self) -> str:
        return ":include:" + self.path


@dataclass(frozen=True)
class ErrorCode:
    """``error:status message``: sendmail rejects the recipient with that status."""

    status: str
    message: str
    origin: Origin

    def __str__(self) -> str:
        return f"error:{self.status} {self.message}".rstrip()


Target = Address | Program | FileDelivery | Include | ErrorCode

Severity = Literal["warning", "caution", "note"]


@dataclass(frozen=True)
class LeftOut:
    """Where mail for an address left without an alias on vpopmail goes: the domain's
    catch-all (``catch_all``: the policy as described), once no alias of that name is
    left on the target. ``alias``: the lines of the alias the target has now, as the plan
    shows them (None: it has none); ``ours``: that alias is mailplan's, unchanged since
    it wrote it (``--prune`` removes it). Set by the mapping; the plan fills in ``alias``
    and ``ours`` (:func:`mailplan.routing.integrate.plan_routing`)."""

    name: str
    domain: str
    catch_all: str
    alias: str | None = None
    ours: bool = False

    def __str__(self) -> str:
        address = f"{self.name}@{self.domain}"
        said = f"so mail to {address} goes to the domain's catch-all: {self.catch_all}"
        if self.alias is None:
            return said
        how = ("apply --prune removes it (mailplan made it)" if self.ours else
               "mailplan did not make it, or it was changed since mailplan wrote it, and "
               "leaves it")
        return (f"{said} once the alias {address} the target has now ({self.alias}) is "
                f"gone: {how}; until then mail to it still goes there")


@dataclass(frozen=True)
class Finding:
    """Something the admin must read: a warning (no safe equivalent), a caution or a
    policy note.

    Warnings are routing entries left out, the plan's problems, and what ``--strict``
    turns into a failed plan; a caution is worth a look but leaves no entry it knows of
    out (an alias database mailplan cannot read): one of the plan's warnings, which
    ``--strict`` lets through; notes explain a documented policy (postmaster kept,
    system alias not imported) and never fail a plan.
    """

    severity: Severity
    #: what the finding says, but for where mail for an entry left out goes (``left_out``)
    text: str
    origin: Origin | None = None
    domain: str | None = None
    left_out: LeftOut | None = None

    @property
    def message(self) -> str:
        """What the finding says: its text, then where the mail of an entry left out goes."""
        return f"{self.text}, {self.left_out}" if self.left_out else self.text

    def __str__(self) -> str:
        where = f"{self.origin}: " if self.origin else ""
        scope = f"[{self.domain}] " if self.domain else ""
        return f"{self.severity}: {scope}{where}{self.message}"
