"""Desired vs observed vpopmail routing -> a small, closed list of changes. Pure.

Each change is a frozen dataclass with the ``symbol`` the plan prints (``+`` add,
``~`` change, ``-`` remove) and a human ``describe()``; the core adapts them into its
plan model and :mod:`mailplan.routing.commands` turns each into argv lists. Delivery
lines are compared the way qmail-local reads them (``&user@host`` and ``user@host`` are
the same forward; host names are case-insensitive), so a plan after apply is empty.
Aliases and forwards are removed only when mailplan created them and ``prune`` is set;
alias domains are only ever added.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import ClassVar

from mailplan.routing.facts import ObservedRouting
from mailplan.routing.rules import CatchAll, DomainRouting


def _show(lines: tuple[str, ...]) -> str:
    return ", ".join(lines) if lines else "(nothing)"


@dataclass(frozen=True)
class AddAlias:
    """Create alias NAME@DOMAIN with these delivery lines."""

    symbol: ClassVar[str] = "+"
    domain: str
    name: str
    destinations: tuple[str, ...]

    def describe(self) -> str:
        """One plan line."""
        return f"alias {self.name}@{self.domain} -> {_show(self.destinations)}"


@dataclass(frozen=True)
class ChangeAlias:
    """Replace the delivery lines of an existing alias."""

    symbol: ClassVar[str] = "~"
    domain: str
    name: str
    destinations: tuple[str, ...]
    current: tuple[str, ...]

    def describe(self) -> str:
        """One plan line."""
        return (f"alias {self.name}@{self.domain}: {_show(self.current)} -> "
                f"{_show(self.destinations)}")


@dataclass(frozen=True)
class RemoveAlias:
    """Delete an alias mailplan created that the spec no longer wants (prune)."""

    symbol: ClassVar[str] = "-"
    domain: str
    name: str
    current: tuple[str, ...]

    def describe(self) -> str:
        """One plan line."""
        return f"alias {self.name}@{self.domain} (was {_show(self.current)})"


@dataclass(frozen=True)
class SetForward:
    """Write a mailbox's own .qmail (its migrated ~/.forward)."""

    domain: str
    mailbox: str
    lines: tuple[str, ...]
    current: tuple[str, ...] | None = None

    @property
    def symbol(self) -> str:
        """``+`` for a new .qmail, ``~`` when one exists."""
        return "+" if self.current is None else "~"

    def describe(self) -> str:
        """One plan line."""
        was = "" if self.current is None else f" (was {_show(self.current)})"
        return f"forward of {self.mailbox}@{self.domain} -> {_show(self.lines)}{was}"


@dataclass(frozen=True)
class RemoveForward:
    """Delete a mailbox's .qmail that mailplan wrote and no longer wants (prune)."""

    symbol: ClassVar[str] = "-"
    domain: str
    mailbox: str
    current: tuple[str, ...]

    def describe(self) -> str:
        """One plan line."""
        return f"forward of {self.mailbox}@{self.domain} (was {_show(self.current)})"


@dataclass(frozen=True)
class AddAliasDomain:
    """Make ALIAS_DOMAIN an alias of DOMAIN (vaddaliasdomain)."""

    symbol: ClassVar[str] = "+"
    domain: str
    alias_domain: str

    def describe(self) -> str:
        """One plan line."""
        return f"alias domain {self.alias_domain} -> {self.domain}"


@dataclass(frozen=True)
class SetCatchAll:
    """Rewrite the domain's .qmail-default."""

    symbol: ClassVar[str] = "~"
    domain: str
    policy: CatchAll
    current: CatchAll | None
    current_text: str = ""

    def describe(self) -> str:
        """One plan line."""
        if self.current is not None:
            was = self.current.describe()
        else:
            was = repr(self.current_text.strip()) if self.current_text.strip() else "missing"
        return f"catch-all of {self.domain}: {self.policy.describe()} (was {was})"


Change = (AddAlias | ChangeAlias | RemoveAlias | SetForward | RemoveForward | AddAliasDomain
          | SetCatchAll)


def canonical(line: str) -> str:
    """A delivery line as qmail-local reads it, for comparison."""
    text = line[1:] if line.startswith("&") else line
    if line.startswith(("|", "/", ".", "#")) or "@" not in text:
        return line
    local, _, host = text.rpartition("@")
    return f"{local}@{host.lower()}"


def same_lines(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Whether two .qmail line lists deliver the same way, in the same order."""
    return [canonical(x) for x in a] == [canonical(x) for x in b]


def diff_routing(desired: DomainRouting, observed: ObservedRouting,
                 managed_by_mailplan: Collection[str], *, prune: bool = False,
                 managed_forwards: Collection[str] = ()) -> list[Change]:
    """Changes that bring ``observed`` to ``desired`` for one domain.

    ``managed_by_mailplan`` names the aliases mailplan created (from its state file);
    only those are removed, and only with ``prune``. Same for ``managed_forwards``.
    """
    domain = desired.domain
    changes: list[Change] = []
    present = {d.lower() for d in observed.alias_domains}
    changes += [AddAliasDomain(domain, a) for a in desired.alias_domains if a not in present]
    for name in sorted(desired.aliases):
        want = tuple(desired.aliases[name])
        have = observed.aliases.get(name)
        if have is None:
            changes.append(AddAlias(domain, name, want))
        elif not same_lines(want, have):
            changes.append(ChangeAlias(domain, name, want, have))
    if prune:
        changes += [RemoveAlias(domain, name, observed.aliases[name])
                    for name in sorted(observed.aliases)
                    if name not in desired.aliases and name in managed_by_mailplan]
    for mailbox in sorted(desired.forwards):
        want = tuple(desired.forwards[mailbox])
        current = observed.forwards.get(mailbox)
        if current is None or not current:
            changes.append(SetForward(domain, mailbox, want))
        elif not same_lines(want, current):
            changes.append(SetForward(domain, mailbox, want, current))
    if prune:
        changes += [RemoveForward(domain, m, observed.forwards[m])
                    for m in sorted(observed.forwards)
                    if m not in desired.forwards and m in managed_forwards
                    and observed.forwards[m]]
    if observed.catch_all != desired.catch_all:
        changes.append(SetCatchAll(domain, desired.catch_all, observed.catch_all,
                                   observed.catch_all_text))
    return changes
