"""A domain's catch-all (what its .qmail-default does with mail for unknown recipients):
the spec's policy, else virtusertable's ``@domain`` line when vpopmail has an equivalent
for it, else bounce, as sendmail did.

:func:`domain_catch_all` is :func:`mailplan.routing.mapdomain.map_domain`'s;
:func:`catch_all_from_virtual` is also :mod:`mailplan.routing.mapping`'s. Pure: findings
go to the resolver given.
"""

from __future__ import annotations

from mailplan.routing.model import ErrorCode, RoutingError
from mailplan.routing.resolve import Resolver
from mailplan.routing.rules import CatchAll, DomainRules
from mailplan.routing.virtusertable import VirtualEntry

_TEMPORARY = ("4", "tempfail", "ex_tempfail", "75")
#: first characters vdelivermail reads otherwise than as a forward address
_NOT_AN_ADDRESS = ("|", "/", ".", "#", "&")


def domain_catch_all(rules: DomainRules, virtual: dict[str, VirtualEntry],
                     resolver: Resolver) -> CatchAll:
    """The domain's catch-all; raises RoutingError when the spec's names no mailbox of
    the domain, or forwards to no full address."""
    entry = virtual.get(f"@{rules.domain}")
    if rules.catch_all is not None:
        policy = rules.catch_all
        if policy.kind == "deliver-to-user" and policy.target not in rules.mailboxes.values():
            raise RoutingError(f"catch-all of {rules.domain}: {policy.target!r} is not a "
                               "mailbox of the domain", origin=rules.origin)
        if policy.kind == "forward-to-address" and "@" not in policy.target:
            raise RoutingError(f"catch-all of {rules.domain}: forward needs a full address, "
                               f"not {policy.target!r}", origin=rules.origin)
        if entry is not None:
            resolver.note(f"catch-all from the spec ({policy.describe()}) replaces "
                          f"virtusertable {entry.key} -> {entry.target}", entry.origin)
        return policy
    if entry is None:
        resolver.note("no catch-all declared: unknown recipients bounce, as on sendmail "
                      "(vpopmail's default would delete them)", rules.origin)
        return CatchAll("bounce")
    return catch_all_from_virtual(entry, rules, resolver)


def catch_all_from_virtual(entry: VirtualEntry, rules: DomainRules,
                            resolver: Resolver) -> CatchAll:
    """What an ``@domain`` virtusertable line becomes on vpopmail (bounce when it has no
    equivalent, with a warning or a note)."""
    context = f"virtusertable {entry.key}"
    target = entry.target
    if isinstance(target, ErrorCode):
        if target.status.lower().startswith(_TEMPORARY):
            resolver.warn(f"{context}: temporary {target} has no vpopmail equivalent; "
                          "unknown recipients bounce instead", entry.origin)
        else:
            resolver.note(f"{context}: {target} becomes a bounce (vpopmail's own message "
                          "text)", entry.origin)
        return CatchAll("bounce")
    if entry.substitutes:
        resolver.warn(f"{context}: {target} rewrites every address; vpopmail's catch-all "
                      "forwards to one fixed address. If the domain only mirrors another, "
                      "declare it as an alias domain there. Unknown recipients bounce "
                      "instead", entry.origin)
        return CatchAll("bounce")
    lines = resolver.lines([target], context=context, chain=())
    if len(lines) == 1 and lines[0].startswith("&"):
        address = lines[0][1:]
        local, _, domain = address.rpartition("@")
        if domain == rules.domain and local in rules.mailboxes.values():
            return CatchAll("deliver-to-user", local)
        if not address.startswith(_NOT_AN_ADDRESS):
            return CatchAll("forward-to-address", address)
        resolver.warn(f"{context}: {address!r} starts with {address[0]!r}, which "
                      "vdelivermail reads as a program, a path or a comment, not as an "
                      "address. Unknown recipients bounce instead", entry.origin)
        return CatchAll("bounce")
    if lines:
        resolver.warn(f"{context}: the catch-all expands to {len(lines)} destinations; "
                      "vdelivermail forwards to one address. Unknown recipients bounce "
                      "instead", entry.origin)
    return CatchAll("bounce")
