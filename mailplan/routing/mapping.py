"""Map parsed sendmail routing and the spec's rules to the desired vpopmail routing.

:func:`map_routing` is pure. Per domain it produces valias aliases (``.qmail-NAME`` in
the domain directory), each migrated user's own ``.qmail`` (their ~/.forward), alias
domains and the ``.qmail-default`` catch-all, plus findings. Policies, in order:

1. Aliases come from the aliases file (when ``import_aliases``, filtered by include /
   exclude and by the system-alias policy in :mod:`mailplan.routing.rules`), then from
   virtusertable ``user@domain`` lines (sendmail consults virtusertable first, so they
   win), then from the spec's explicit aliases (which win over both, with a note).
2. Routing for a name that is a mailbox of the domain never becomes an alias (a
   ``.qmail-NAME`` would shadow the mailbox): it becomes that mailbox's own ``.qmail``;
   sendmail's alias-before-~/.forward order is kept (the alias wins, with a note).
3. ``\\user`` (and a plain self-reference) in a ~/.forward keeps a local copy: the
   mailbox's own ``./Maildir/`` line, which vdelivermail delivers relative to the user's
   directory. A .qmail that would only say ``./Maildir/`` is not written. In an alias
   of a mailbox, a self-reference without the backslash (``bob: bob, x``) is the user
   as sendmail delivers it, through its ~/.forward: the forward's lines take its place.
4. Catch-all: the spec's policy; else virtusertable's ``@domain`` line when it has an
   equivalent (an address, a local user, a permanent ``error:`` -> bounce); else bounce,
   which is what sendmail did for unknown recipients (vpopmail's own default deletes).
5. Anything without a safe equivalent is a warning with its source line; with
   ``strict`` the warnings raise one RoutingError listing them all.
6. An alias loop through a user (``bob: staff`` with bob on staff) is broken at that
   user, as sendmail does: the user gets the mail once. An entry reaching such a
   mailbox, or a mailbox whose ~/.forward leads back to it (bob's ``staff``), does not
   list again what the mailbox's own .qmail delivers (sendmail sent each recipient one
   copy; qmail would deliver both lines): :mod:`mailplan.routing.handoffs`.

Each domain is mapped by :mod:`mailplan.routing.mapdomain`; here are the passes that need
every domain's result: dropping lines a loop delivers already (6), and findings for
what differs from sendmail only across domains (loops through full addresses,
virtusertable lines of unmigrated domains or caught by an ``@domain`` line, renamed
users' old addresses, ``\\user`` through a .qmail, +detail addresses).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set

from mailplan.routing.aliases import effective_aliases
from mailplan.routing.catchall import catch_all_from_virtual
from mailplan.routing.handoffs import Handoffs, handed_to_mailboxes
from mailplan.routing.loops import loops_on_vpopmail
from mailplan.routing.mapdomain import map_domain
from mailplan.routing.model import Address, Finding, RoutingError
from mailplan.routing.plussed import virtual_detail_caution
from mailplan.routing.resolve import Check, Directory, Resolver
from mailplan.routing.rules import (
    VPOPMAIL_OWNED,
    CatchAll,
    DomainRouting,
    DomainRules,
    RoutingPlan,
    SourceRouting,
)
from mailplan.routing.virtusertable import VirtualEntry, effective_entries

#: the deepest alias chain followed whatever sendmail.cf allows (the resolver recurses
#: once per alias: far below Python's recursion limit)
MAX_DEPTH = 100


def map_routing(source: SourceRouting, domains: Sequence[DomainRules], *,
                strict: bool = False, unwritten: Set[str] = frozenset()) -> RoutingPlan:
    """Desired vpopmail routing for every domain; raises RoutingError on bad spec rules.

    ``unwritten``: domains of ``domains`` whose routing the apply will not write (on the
    target they are alias domains of another): no other domain's entry relies on what
    their mailboxes' .qmail files would deliver."""
    table, findings = effective_aliases(source.aliases)
    virtual, vfindings = ({}, []) if source.virtusertable is None else \
        effective_entries(source.virtusertable)
    findings.extend(vfindings)
    # a migrated domain (or alias domain) named in class w keeps its own users: an
    # address there is resolved in that domain, not as a local name of the old host
    served = {r.domain for r in domains} | {a for r in domains for a in r.alias_domains}
    directory = Directory({r.domain: r for r in domains}, table,
                          source.local_hostnames - served,
                          {a: r.domain for r in domains for a in r.alias_domains},
                          min(source.max_alias_recursion, MAX_DEPTH),
                          plus_detail=source.plus_detail is not None,
                          plussed_domains=_plussed_domains(source, served),
                          virtual=virtual)
    if source.max_alias_recursion > MAX_DEPTH:
        findings.append(Finding(
            "note", f"sendmail.cf sets MaxAliasRecursion to {source.max_alias_recursion}; "
            f"mailplan follows aliases at most {MAX_DEPTH} deep (an entry deeper than that "
            "is warned about and not carried over)"))
    _unmigrated_virtual_domains(virtual, directory, findings)
    result: dict[str, DomainRouting] = {}
    checks = []
    escapes = []
    handoffs = Handoffs()
    for rules in domains:
        resolver = Resolver(directory, rules.domain)
        result[rules.domain] = map_domain(source, rules, table, virtual, resolver, handoffs)
        findings.extend(resolver.findings)
        checks.extend(resolver.checks)
        escapes.extend(resolver.escapes)
    findings.extend(handed_to_mailboxes(result, handoffs, unwritten))
    findings.extend(_escapes_through_qmail(escapes, result))
    findings.extend(_caught_by_catch_all(source, virtual, domains, directory, result))
    findings.extend(_old_logins(source, virtual, domains, result))
    findings.extend(loops_on_vpopmail(result))
    findings.extend(_plus_detail(source, virtual, domains, result))
    if source.virtusertable is not None:
        findings.extend(_virtual_qmail_reached_otherwise(source.virtusertable.path, result))
    for check in checks:
        target = result[check.domain]
        if (check.local in target.aliases or check.local == "postmaster"
                or check.local in directory.rules[check.domain].mailboxes.values()
                or target.catch_all.kind in ("deliver-to-user", "forward-to-address")):
            continue
        what = ("is a user the plan does not create (see its problem)"
                if check.local in directory.rules[check.domain].withheld.values()
                else "is neither a mailbox nor an alias on vpopmail")
        findings.append(Finding(
            "warning", f"{check.context}: {check.local}@{check.domain} {what}; mail to it "
            "will bounce", check.origin, check.domain))
    plan = RoutingPlan(result, tuple(findings))
    if strict and plan.warnings:
        listed = "\n".join(f"  {w}" for w in plan.warnings)
        raise RoutingError(f"{len(plan.warnings)} routing entries have no safe vpopmail "
                           f"equivalent (strict mode):\n{listed}",
                           hint="fix or exclude them on the source, or declare the routing "
                           "in the spec, then plan again")
    return plan


def _plussed_domains(source: SourceRouting, served: Set[str]) -> frozenset[str]:
    """The migrated domains where sendmail's plussed-users rule delivered
    ``name+detail@`` to ``name``: the old host's own names (class w), with the rule,
    but not one whose ``@domain`` virtusertable line the spec set aside: sendmail looked
    that line up before delivering locally, and it took every unlisted ``name+detail@``
    (mail the spec's catch-all gets now)."""
    if source.plus_detail is None:
        return frozenset()
    return frozenset((source.local_hostnames & served) - source.set_aside_catch_alls)


def _names(names: Sequence[str], what: str) -> str:
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    plural = {"mailbox": "mailboxes", "alias": "aliases"}[what] if len(names) > 1 else what
    return f"{shown} ({plural})"


def _caught_by_catch_all(source: SourceRouting, virtual: Mapping[str, VirtualEntry],
                         domains: Sequence[DomainRules], directory: Directory,
                         result: Mapping[str, DomainRouting]) -> list[Finding]:
    """sendmail looks a domain's ``@domain`` virtusertable line up before it delivers
    locally: mail for a user or an alias of the domain without a ``user@domain`` line of
    its own went to the catch-all. On vpopmail the mailbox or alias of that name gets it:
    warn, naming them (the catch-all's own mailbox got that mail anyway)."""
    out: list[Finding] = []
    alias_files = {aliases.path for aliases in source.aliases}
    for rules in domains:
        domain = rules.domain
        entry = virtual.get(f"@{domain}")
        if entry is None:
            continue
        caught = catch_all_from_virtual(entry, rules, Resolver(directory, domain))
        own = caught.target if caught.kind == "deliver-to-user" else None
        routing = result[domain]
        mailboxes = sorted(m for m in set(rules.mailboxes.values()) - VPOPMAIL_OWNED
                           if m != own and f"{m}@{domain}" not in virtual)
        aliases = sorted(name for name, origin in routing.origins.items()
                         if name in routing.aliases and origin.path in alias_files
                         and f"{name}@{domain}" not in virtual)
        if not mailboxes and not aliases:
            continue
        what = ", ".join(x for x in (mailboxes and _names(mailboxes, "mailbox"),
                                     aliases and _names(aliases, "alias")) if x)
        out.append(Finding(
            "warning", f"virtusertable {entry.key} -> {entry.target}: sendmail looked this "
            f"line up before delivering locally, so mail for every address of {domain} "
            f"without a line of its own went here, also for {what}; on vpopmail that mail "
            "reaches the mailbox or alias of that name instead (for each address that "
            f"should keep it, add a line such as 'NAME@{domain}  NAME' on the source and "
            "plan again)", entry.origin, domain))
    return out


def _old_logins(source: SourceRouting, virtual: Mapping[str, VirtualEntry],
                domains: Sequence[DomainRules],
                result: Mapping[str, DomainRouting]) -> list[Finding]:
    """A renamed user's old address at one of the old host's own names (class w):
    sendmail delivered ``login@domain`` to the user; on vpopmail, unless an alias keeps
    the old name, it is no mailbox and goes to the catch-all. (A domain with an
    ``@domain`` or ``login@domain`` virtusertable line: sendmail sent it there instead,
    reported with that line.)"""
    out: list[Finding] = []
    for rules in domains:
        domain = rules.domain
        if (domain not in source.local_hostnames or f"@{domain}" in virtual
                or domain in source.set_aside_catch_alls):
            continue
        routing = result[domain]
        mailboxes = set(rules.mailboxes.values())
        for login, mailbox in sorted(rules.mailboxes.items()):
            old = login.lower()
            if (old == mailbox or old in mailboxes or old in routing.aliases
                    or old in VPOPMAIL_OWNED or f"{old}@{domain}" in virtual
                    or routing.catch_all == CatchAll("deliver-to-user", mailbox)):
                continue
            out.append(Finding(
                "warning", f"{old}@{domain} delivered to the user {login} on sendmail "
                f"({domain} is one of the old host's own names); {login} is migrated as "
                f"{mailbox}, and no mailbox or alias {old} is left on vpopmail, so mail to "
                f"{old}@{domain} goes to the domain's catch-all: "
                f"{routing.catch_all.describe()} (declare the alias {old}: [{mailbox}] in "
                "the spec to keep it)", rules.origin, domain))
    return out


def _unmigrated_virtual_domains(virtual: dict[str, VirtualEntry], directory: Directory,
                                findings: list[Finding]) -> None:
    """Warn about virtusertable entries of domains the spec does not migrate.

    An alias domain (vaddaliasdomain) delivers exactly like its real domain, so only its
    ``@alias  %1@REAL`` catch-all, REAL being the domain it is an alias of, is carried
    over by it; every other entry of an alias domain gets a warning of its own (a
    specific address, a catch-all elsewhere). Other domains: one warning each.
    """
    owner = {a.lower(): r.domain for r in directory.rules.values() for a in r.alias_domains}
    seen: set[str] = set()
    for entry in virtual.values():
        if entry.domain in directory.rules:
            continue
        real = owner.get(entry.domain)
        if real is not None:
            target = entry.target
            if (entry.catch_all and isinstance(target, Address)
                    and target.local == "%1" and target.domain == real):
                continue  # what the alias domain does anyway
            what = "its catch-all" if entry.catch_all else entry.key
            findings.append(Finding(
                "warning", f"virtusertable {entry.key} -> {target}: {entry.domain} is an "
                f"alias domain of {real} in the spec, so {what} delivers as in {real}; this "
                f"line is not carried over (route it in {real}, or make {entry.domain} a "
                "domain of its own)", entry.origin, real))
            continue
        if entry.domain in seen:
            continue
        seen.add(entry.domain)
        hint = ""
        if entry.catch_all and entry.substitutes and isinstance(entry.target, Address):
            hint = f"; to mirror {entry.target.domain}, declare it as an alias domain there"
        findings.append(Finding(
            "warning", f"virtusertable entries for {entry.domain} are not migrated: it is "
            f"not a domain (or a matching alias domain) in the spec{hint}", entry.origin))


def _plus_detail(source: SourceRouting, virtual: Mapping[str, VirtualEntry],
                 domains: Sequence[DomainRules],
                 result: Mapping[str, DomainRouting]) -> list[Finding]:
    """Where sendmail delivered ``name+detail@D``, which on vpopmail is nobody
    (qmail-local's .qmail-NAME-default search and vdelivermail's --enable-qmail-ext
    split an extension only at '-') and goes to the domain's catch-all: a caution per
    domain. sendmail's virtusertable lookup (ruleset 0) tried a line ``name@D`` for it
    first, and then the ``@D`` line; only in a domain without an ``@D`` line (none in
    the source's virtusertable, none set aside) did it reach local delivery, where
    sendmail.cf's plussed-users rule delivered it to the user or alias ``name``: with
    the rule, such a domain with mailboxes or aliases gets the rule's caution, every
    other one that of its ``name@D`` lines (:func:`virtual_detail_caution`)."""
    out: list[Finding] = []
    rule = source.plus_detail
    for rules in domains:
        d = rules.domain
        routing = result[d]
        if rule is None or f"@{d}" in virtual or d in source.set_aside_catch_alls:
            found = virtual_detail_caution(d, virtual.values(), routing.catch_all)
            out.extend([found] if found else [])
            continue
        if not rules.mailboxes and not routing.aliases:
            continue
        out.append(Finding(
            "caution", f"sendmail delivered NAME+DETAIL@{d} to the user or alias NAME (this "
            "plussed-users rule); qmail and vpopmail split an address extension only at "
            f"'-', so on vpopmail NAME+DETAIL@{d} is no mailbox nor alias and goes to the "
            f"domain's catch-all: {routing.catch_all.describe()} (NAME-DETAIL@{d} reaches "
            "the mailbox NAME where vpopmail is built with --enable-qmail-ext): tell the "
            "users who hand out +detail addresses", rule, d))
    return out


def _escapes_through_qmail(escapes: Sequence[Check],
                           result: Mapping[str, DomainRouting]) -> list[Finding]:
    """``\\user`` put mail in the user's mailbox without its ~/.forward; the vpopmail line
    ``&user@domain`` goes through the mailbox's own .qmail. Warn where it has one."""
    out: list[Finding] = []
    for escape in escapes:
        lines = result[escape.domain].forwards.get(escape.local) if escape.domain in result \
            else None
        if not lines:
            continue
        out.append(Finding(
            "warning", f"{escape.context} delivered to the mailbox itself on sendmail, "
            f"without its ~/.forward; on vpopmail &{escape.local}@{escape.domain} goes through "
            f"{escape.local}'s own .qmail ({', '.join(lines)}), so this mail is delivered as "
            "that says", escape.origin, escape.domain))
    return out


def _virtual_qmail_reached_otherwise(virtual_path: str,
                                     result: Mapping[str, DomainRouting]) -> list[Finding]:
    """A virtusertable ``user@domain`` line of a mailbox becomes the mailbox's own .qmail,
    which vpopmail applies to all its mail: warn when aliases or forwards reach that
    mailbox too (on sendmail they got the user's mailbox or ~/.forward, not that line)."""
    out: list[Finding] = []
    for domain, routing in sorted(result.items()):
        for mailbox, origin in sorted(routing.origins.items()):
            if mailbox not in routing.forwards or origin.path != virtual_path:
                continue
            line = f"&{mailbox}@{domain}"
            via = sorted({f"alias {name}@{other}" for other, r in result.items()
                          for name, lines in r.aliases.items() if line in lines}
                         | {f"the .qmail of {name}@{other}" for other, r in result.items()
                            for name, lines in r.forwards.items()
                            if line in lines and (other, name) != (domain, mailbox)})
            if not via:
                continue
            out.append(Finding(
                "warning", f"virtusertable {mailbox}@{domain} becomes {mailbox}'s own .qmail "
                f"({', '.join(routing.forwards[mailbox])}), which vpopmail applies to all mail "
                f"for {mailbox}: mail reaching it through {', '.join(via)} follows it too, "
                f"where sendmail delivered that to {mailbox}'s mailbox (or ~/.forward)",
                origin, domain))
    return out
