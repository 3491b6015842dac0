"""Parse sendmail's virtusertable source text (the input of ``makemap``).

One entry per line, ``key<blanks>value``; ``#`` comment lines and blank lines are
ignored. Keys are ``user@domain``, ``user+*@domain`` (any +detail, an empty one too),
``user++@domain`` (a non-empty +detail: cf/README, "'+' matches only a non-empty detail"),
``++@domain`` and ``+*@domain`` (any user's +detail, tried after ``user@domain``) or
``@domain`` (the domain's catch-all, used when no ``user@domain`` key matches);
makemap lower-cases keys and so does this parser. A value is one address
(``user@remote``, a local user or alias name, possibly with ``%1`` = the original user,
``%2`` = the +detail, ``%3`` = ``+detail``) or ``error:status message``. Pure; malformed
lines raise RoutingError with file and line.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailplan.routing.addresses import parse_item, split_items
from mailplan.routing.aliases import decode
from mailplan.routing.model import Address, ErrorCode, Finding, Origin, RoutingError


@dataclass(frozen=True)
class VirtualEntry:
    """One virtusertable line. ``local`` is None for an ``@domain`` catch-all and for
    the ``+*@domain`` and ``++@domain`` wildcards (``any_detail``)."""

    local: str | None
    domain: str
    target: Address | ErrorCode
    origin: Origin
    #: a ``user+*`` or ``user++`` key: sendmail's wildcard for ``user+DETAIL``
    any_detail: bool = False
    #: a ``user++`` key: for a non-empty DETAIL only
    nonempty_detail: bool = False

    @property
    def key(self) -> str:
        """The key as makemap stores it."""
        wildcard = ("++" if self.nonempty_detail else "+*") if self.any_detail else ""
        return f"{self.local or ''}{wildcard}@{self.domain}"

    @property
    def catch_all(self) -> bool:
        """Whether this is the ``@domain`` line (every address without a line of its own)."""
        return self.local is None and not self.any_detail

    @property
    def substitutes(self) -> bool:
        """Whether the value uses %1/%2/%3 (depends on the recipient being looked up)."""
        return isinstance(self.target, Address) and "%" in str(self.target)

    def filled(self, user: str, detail: str | None = None) -> str:
        """The value's text with ``%1`` = ``user`` and, given the detail of the address
        looked up, ``%2`` = it and ``%3`` = ``+detail`` (empty without one); without
        ``detail`` those two are left as written."""
        text = str(self.target).replace("%1", user)
        if detail is not None:
            text = text.replace("%2", detail).replace("%3", f"+{detail}" if detail else "")
        return text


@dataclass(frozen=True)
class Virtusertable:
    """A parsed virtusertable: entries in file order (duplicates kept)."""

    path: str
    entries: tuple[VirtualEntry, ...]


def _key(text: str, origin: Origin) -> tuple[str | None, str, str | None]:
    """(user or None, domain, the +detail wildcard: '+*', '++' or None)."""
    local, at, domain = text.lower().rpartition("@")
    # a single-label domain (help@intranet) is a valid key for makemap and sendmail
    if not at or not domain.strip("."):
        raise RoutingError(f"key {text!r} must be user@domain or @domain", origin=origin)
    wildcard = local[-2:] if local.endswith(("+*", "++")) else None
    if wildcard:
        local = local[:-2]  # none: every user's +detail (cf/README's +*@foo.org)
    return (local or None), domain, wildcard


def parse_virtusertable(data: bytes | str, path: str) -> Virtusertable:
    """Parse virtusertable text; raises RoutingError naming path and line."""
    entries: list[VirtualEntry] = []
    for number, raw in enumerate(decode(data).split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        origin = Origin(path, number)
        if line[0] in " \t":
            raise RoutingError("a virtusertable line cannot start with a blank "
                               "(makemap has no continuation lines)", origin=origin)
        parts = line.split(None, 1)
        if len(parts) < 2:
            raise RoutingError(f"key {parts[0]!r} has no value", origin=origin)
        local, domain, wildcard = _key(parts[0], origin)
        value = parts[1].strip()
        items = split_items(value, lambda _off, o=origin: o)
        if len(items) != 1 and not value.lower().startswith("error:"):
            raise RoutingError(f"{parts[0]} maps to {len(items)} addresses; a virtusertable "
                               "value is one address", origin=origin,
                               hint="map it to an alias in the aliases file instead")
        target = parse_item(value, origin)
        if not isinstance(target, Address | ErrorCode):
            raise RoutingError(f"{parts[0]}: a virtusertable value must be an address or "
                               f"error:, not {target}", origin=origin)
        entries.append(VirtualEntry(local, domain, target, origin, wildcard is not None,
                                    wildcard == "++"))
    return Virtusertable(path, tuple(entries))


def effective_entries(table: Virtusertable) -> tuple[dict[str, VirtualEntry], list[Finding]]:
    """Key -> entry as makemap builds the map: the first of duplicate keys wins."""
    out: dict[str, VirtualEntry] = {}
    findings: list[Finding] = []
    for entry in table.entries:
        first = out.get(entry.key)
        if first is not None:
            findings.append(Finding(
                "warning", f"duplicate virtusertable key {entry.key!r}: ignored, makemap keeps "
                f"the entry at line {first.origin.line}", entry.origin))
            continue
        out[entry.key] = entry
    return out, findings
