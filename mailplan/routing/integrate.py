"""Routing (issue 4) plugged into the core plan and apply: host reads, changes, steps.

:func:`plan_routing` is called by :func:`mailplan.engine.make_plan` once the core has
its desired state and target facts. It reads the source in a few batches
(:mod:`mailplan.routing.source`: sendmail.cf and the aliases files its AliasFile names,
or the spec's; virtusertable; each migrated user's ~/.forward; then ``:include:``
files), maps it with the pure layer, reads the target in one batch (``valias -s``,
users' own .qmail, alias domains) and returns core :class:`~mailplan.plan.Change`
objects of kinds ``alias``, ``forward`` and
``alias_domain``, with warnings as plan problems (file:line in each), cautions (an
alias database that is no file) as plan warnings and policy notes as noops. The
catch-all stays the core's
``unknown_recipients``: no routing change ever writes .qmail-default; when the spec
leaves it unset and virtusertable has an ``@domain`` line, the plan warns and suggests
the setting that keeps it.

:func:`execute_routing` (:mod:`mailplan.routing.execute`) carries out one such change;
the target's side is read by :mod:`mailplan.routing.target`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Set
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from mailplan.connectors.base import Connector
from mailplan.desired import Problem
from mailplan.plan import PRUNE_NOTE, Change, Noop, PlanPart
from mailplan.routing.commands import alias_file_name
from mailplan.routing.config import (
    catch_all_of,
    check_routing_spec,
    domain_rules,
    spec_origin,
)
from mailplan.routing.diff import (
    AddAlias,
    AddAliasDomain,
    ChangeAlias,
    RemoveAlias,
    RemoveForward,
    SetCatchAll,
    SetForward,
    diff_routing,
    same_lines,
)
from mailplan.routing.diff import Change as RoutingChange
from mailplan.routing.execute import execute_routing, show_lines
from mailplan.routing.facts import ObservedRouting
from mailplan.routing.managed import (
    ROUTING_KINDS,
    managed_routing,
    routing_domains,
    unchanged_routing,
)
from mailplan.routing.mapping import map_routing
from mailplan.routing.model import Finding, LeftOut, Origin, RoutingError
from mailplan.routing.rules import CatchAll, DomainRouting, RoutingPlan, SourceRouting
from mailplan.routing.source import read_source_routing
from mailplan.routing.target import TargetRouting, read_target_routing
from mailplan.routing.virtusertable import Virtusertable

if TYPE_CHECKING:
    from mailplan.desired import Desired
    from mailplan.facts.source import SourceFacts
    from mailplan.facts.vpopmail import TargetFacts
    from mailplan.spec import Spec
    from mailplan.state import State

PRUNE_REASON = f"created by mailplan, no longer wanted {PRUNE_NOTE}"

__all__ = ["ROUTING_KINDS", "RoutingOutcome", "check_routing_spec", "execute_routing",
           "merge_changes", "plan_routing"]


@dataclass
class RoutingOutcome(PlanPart):
    """What routing adds to a plan, and what apply needs to carry it out."""

    #: worth the administrator's look, nothing known left out (the plan's warnings)
    cautions: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    actions: dict[str, RoutingChange] = field(default_factory=dict)
    #: what the target has (aliases, forwards, alias domains) as the plan read it
    seen: TargetRouting | None = None


# ---------------------------------------------------------------------------- mapping


def _suggestion(policy: CatchAll) -> str:
    return {"bounce": "unknown_recipients: bounce", "delete": "unknown_recipients: delete",
            "deliver-to-user": f"unknown_recipients: {{deliver_to: {policy.target}}}",
            "forward-to-address": f"unknown_recipients: {{forward: {policy.target}}}",
            }[policy.kind]


def map_spec(spec: Spec, desired: Desired, source: SourceRouting, *,
             unwritten: Set[str] = frozenset()) -> RoutingPlan:
    """Map the source's routing with the spec's rules; the core's catch-all applies.

    Where the spec sets no ``unknown_recipients`` but virtusertable has an ``@domain``
    line, the line is mapped on its own to say what setting would keep it, with a
    warning carrying its line; the catch-all itself stays the core's default.
    ``unwritten``: the domains whose routing the apply leaves alone (``map_routing``).
    """
    keys = {k.lower(): k for k in spec.data["domains"]}
    names = [d for d in sorted(desired.domains) if d in keys]
    unset = {d for d in names if "unknown_recipients" not in (spec.data["domains"][keys[d]]
                                                              or {})}
    virtual = source.virtusertable
    wild = {e.domain: e for e in (virtual.entries if virtual else ())
            if e.catch_all and e.domain in unset}
    findings: list[Finding] = []
    if wild:
        probe = map_routing(source, [
            domain_rules(spec, keys[d], desired.domains[d], catch_all=None,
                         withheld_users=desired.withheld) for d in names], unwritten=unwritten)
        seen: set[str] = set()
        for domain, entry in sorted(wild.items()):
            if domain in seen:
                continue
            seen.add(domain)
            derived = probe.domains[domain].catch_all
            findings += [f for f in probe.findings
                         if f.origin == entry.origin and f.severity == "warning"]
            findings.append(Finding(
                "warning", f"virtusertable {entry.key} -> {entry.target}: the spec sets no "
                f"unknown_recipients for {domain}, so unknown recipients bounce; to keep "
                f"this catch-all set '{_suggestion(derived)}' in the spec", entry.origin,
                domain))
        assert virtual is not None
        kept = tuple(e for e in virtual.entries if not (e.catch_all and e.domain in wild))
        source = replace(source, virtusertable=Virtusertable(virtual.path, kept),
                         set_aside_catch_alls=frozenset(wild))
    rules = [domain_rules(spec, keys[d], desired.domains[d], catch_all=catch_all_of(
        desired.domains[d].catchall, {u for dom, u in desired.withheld if dom == d}),
        withheld_users=desired.withheld) for d in names]
    plan = map_routing(source, rules, unwritten=unwritten)
    return RoutingPlan(plan.domains, (*plan.findings, *findings))


# ---------------------------------------------------------------------------- changes


def _forward_ended(change: RemoveForward) -> Change:
    """The removal of the forward of a mailbox still migrated (its ~/.forward gone from
    the source, or keeping the mail there): a change of where its mail goes, made by
    every apply as the old server already delivers so; no mail is deleted with it (only
    a forward of a mailbox the spec drops waits for --prune, with its user)."""
    return Change("update", "forward", change.domain, change.mailbox,
                  before=show_lines(change.current),
                  after="its own Maildir (no forward: the source no longer forwards it)")


def _forward_set_aside(change: RemoveForward) -> Change:
    """The removal of a forward mailplan wrote for a mailbox whose routing on the source
    the spec no longer carries (``source.forward: false``, its alias not imported): the
    source may still forward its mail, so this is no change the source made; a deletion
    like any other of mailplan's, applied only with --prune."""
    return Change("delete", "forward", change.domain, change.mailbox,
                  before=show_lines(change.current),
                  reason="created by mailplan; the spec no longer carries this mailbox's "
                  "routing from the source (source.forward is false, or the alias of its "
                  f"name is not imported) {PRUNE_NOTE}")


def _from(origin: Origin | None) -> str:
    return f" (from {origin})" if origin else ""


def to_core(change: RoutingChange, origins: dict[str, Origin]) -> Change:
    """The core's view of one routing change (display values only)."""
    if isinstance(change, AddAlias):
        return Change("create", "alias", change.domain, change.name,
                      after=show_lines(change.destinations) + _from(origins.get(change.name)))
    if isinstance(change, ChangeAlias):
        return Change("update", "alias", change.domain, change.name,
                      before=show_lines(change.current),
                      after=show_lines(change.destinations) + _from(origins.get(change.name)))
    if isinstance(change, RemoveAlias):
        return Change("delete", "alias", change.domain, change.name,
                      before=show_lines(change.current), reason=PRUNE_REASON)
    if isinstance(change, SetForward):
        after = show_lines(change.lines) + _from(origins.get(change.mailbox))
        if change.current is None:
            return Change("create", "forward", change.domain, change.mailbox, after=after)
        return Change("update", "forward", change.domain, change.mailbox,
                      before=show_lines(change.current), after=after)
    if isinstance(change, RemoveForward):
        return Change("delete", "forward", change.domain, change.mailbox,
                      before=show_lines(change.current), reason=PRUNE_REASON)
    assert isinstance(change, AddAliasDomain)
    return Change("create", "alias_domain", change.alias_domain,
                  after=f"alias of {change.domain} (vaddaliasdomain)")


def plan_routing(spec: Spec, source_conn: Connector, target_conn: Connector,
                 source: SourceFacts, desired: Desired, target: TargetFacts, state: State,
                 *, strict: bool = False, also_listed: Collection[str] = ()) -> RoutingOutcome:
    """Everything routing adds to the plan; raises RoutingError in strict mode.
    ``also_listed``: domains whose aliases the target's read lists too (``seen.listed``:
    :func:`~mailplan.routing.target.read_target_routing`)."""
    imports = any((b or {}).get("import_aliases", False) is not False
                  for b in spec.data["domains"].values())
    read_findings: list[Finding] = []
    src = read_source_routing(source_conn, spec, source, desired, need_aliases=imports,
                              findings=read_findings)
    # Domains the core will not touch (an alias of another domain on the target): neither,
    # and no other domain's aliases rely on their mailboxes' .qmail files.
    mapped = map_spec(spec, desired, src, unwritten=frozenset(target.alias_of))
    wanted = {d: r for d, r in mapped.domains.items() if d not in target.alias_of}
    wanted.update(_dropped_domains(set(wanted), target, state))
    vpop = spec.data["target"].get("vpopmail_dir", "/home/vpopmail")
    have = read_target_routing(target_conn, vpop, target, wanted, state, also_listed)
    out = RoutingOutcome(seen=have)
    findings = [*read_findings, *mapped.findings]
    for name in sorted(wanted):
        want = wanted[name]
        observed = have.observed[name]
        # --prune removes only what still holds the lines mailplan wrote there
        ours = unchanged_routing(state.data, name, "alias", dict(observed.aliases))
        ours_forwards = unchanged_routing(state.data, name, "forward",
                                          dict(observed.forwards))
        changes = diff_routing(want, observed, ours, prune=True,
                               managed_forwards=ours_forwards)
        out.noops.extend(_changed_since(name, want, observed, state, ours, ours_forwards))
        findings = _still_on_target(findings, want, observed, ours)
        users = target.domains[name].users if name in target.domains else {}
        mailboxes = set(desired.domains[name].routed().values()) \
            if name in desired.domains else set()
        for change in changes:
            if isinstance(change, SetCatchAll):
                continue  # the core's unknown_recipients owns .qmail-default
            if isinstance(change, AddAliasDomain):
                owner = have.alias_domain_owner.get(change.alias_domain)
                if owner is not None and owner != name:
                    what = ("a domain of its own" if owner == change.alias_domain
                            else f"an alias domain of {owner}")
                    findings.append(Finding("warning", f"alias domain {change.alias_domain} "
                                            f"is already {what} on the target; not changed",
                                            _rules_origin(spec, name), name))
                    continue
                if owner == name:
                    continue
            if isinstance(change, AddAlias) and change.name in users:
                findings.append(Finding("warning", f"alias {change.name!r} would shadow the "
                                        f"existing mailbox {change.name}@{name} on the "
                                        "target; not created", want.origins.get(change.name),
                                        name))
                continue
            core = to_core(change, dict(want.origins))
            if isinstance(change, RemoveForward) and change.mailbox in mailboxes:
                # the source still routes a mailbox set aside: the spec's choice, --prune
                core = _forward_set_aside(change) if change.mailbox in want.set_aside \
                    else _forward_ended(change)
            out.changes.append(core)
            out.actions[core.id] = change
        findings += _shadowed_mailboxes(name, observed.aliases, desired, ours,
                                        managed_routing(state.data, name, "alias"))
        for alias in sorted(set(observed.aliases) - set(want.aliases)
                            - managed_routing(state.data, name, "alias")):
            out.noops.append(Noop(name, alias, "alias on the target, not wanted by the spec "
                                  "and not created by mailplan; left alone"))
        for alias, lines in sorted(want.aliases.items()):
            if alias in observed.aliases and same_lines(tuple(lines), observed.aliases[alias]):
                out.noops.append(Noop(name, alias,
                                      f"alias already delivers to {show_lines(lines)}"))
        for mailbox, lines in sorted(want.forwards.items()):
            if same_lines(tuple(lines), observed.forwards.get(mailbox) or ()):
                out.noops.append(Noop(name, mailbox, f"forward already {show_lines(lines)}"))
    report_findings(findings, source_conn.name, out)
    if strict and out.warnings:
        listed = "\n".join(f"  {w}" for w in out.warnings)
        raise RoutingError(f"{len(out.warnings)} routing entries have no safe vpopmail "
                           f"equivalent (--strict):\n{listed}",
                           hint="fix them on the source, exclude them, or declare the "
                           "routing in the spec, then plan again")
    return out


def _still_on_target(findings: list[Finding], want: DomainRouting, observed: ObservedRouting,
                     ours: frozenset[str]) -> list[Finding]:
    """The mapping says mail for an entry left without an alias goes to the catch-all;
    while the target still has an alias of that name, mail goes there: the findings say
    so, and what removes it (``ours``: mailplan's, unchanged since)."""
    def now(left: LeftOut) -> LeftOut:
        if left.domain != want.domain or left.name in want.aliases \
                or left.name not in observed.aliases:
            return left
        return replace(left, alias=show_lines(observed.aliases[left.name]),
                       ours=left.name in ours)
    return [replace(f, left_out=now(f.left_out)) if f.left_out else f for f in findings]


def _dropped_domains(wanted: Set[str], target: TargetFacts, state: State
                     ) -> dict[str, DomainRouting]:
    """Domains the spec dropped that mailplan did not make (vdeldomain is not run there)
    and where it made aliases or forwards: nothing is wanted there any more, so
    ``--prune`` removes what it made (they were neither read nor listed)."""
    made_domains, _ = state.managed()
    return {name: DomainRouting(name, {}, {}, (), CatchAll("bounce"))
            for name in sorted(routing_domains(state.data) - set(wanted) - made_domains)
            if name in target.domains}


def report_findings(findings: Iterable[Finding], host: str, out: RoutingOutcome) -> None:
    """Findings into the plan: warnings are problems (and what --strict refuses),
    cautions the plan's warnings, notes noops; scoped to their domain, else the host."""
    for finding in findings:
        where = f"{finding.origin}: " if finding.origin else ""
        scope = finding.domain or host
        if finding.severity == "warning":
            out.problems.append(Problem(scope, None, f"{where}{finding.message}"))
            out.warnings.append(str(finding))
        elif finding.severity == "caution":
            out.cautions.append(Problem(scope, None, f"{where}{finding.message}"))
        else:
            out.noops.append(Noop(scope, None, f"note: {where}{finding.message}"))


def _shadowed_mailboxes(domain: str, aliases: Iterable[str], desired: Desired,
                        ours: frozenset[str], made: frozenset[str]) -> list[Finding]:
    """An alias on the target named like a mailbox the spec migrates: qmail-local reads
    the domain's .qmail-NAME before vdelivermail looks for the mailbox, so the mailbox
    would get none of its mail. mailplan removes only its own (``ours``: made by it and
    unchanged, with --prune); one it made (``made``) that was changed on the target
    since is left alone like one it did not make, and the warning says which it is."""
    wanted = desired.domains.get(domain)
    mailboxes = set(wanted.users) | set(wanted.kept) if wanted is not None else set()
    out = []
    for alias in sorted(set(aliases) & mailboxes):
        by_hand = f"remove it by hand (valias -d {alias}@{domain})"
        if alias in ours:
            how = "apply --prune or --prune-only alias removes it (mailplan made it)"
        elif alias in made:
            how = ("mailplan made it, but it was changed on the target since mailplan "
                   "wrote it, so --prune leaves it alone (not mailplan's lines now): "
                   f"{by_hand} once its new lines are no longer wanted")
        else:
            how = f"mailplan did not make it and leaves it alone: {by_hand}"
        out.append(Finding(
            "warning", f"alias {alias}@{domain} on the target has the name of the mailbox "
            f"{alias}: qmail-local reads {alias_file_name(alias)} first, so the mailbox gets "
            f"none of its mail while it exists; {how}", None, domain))
    return out


def _changed_since(domain: str, want: DomainRouting, observed: ObservedRouting,
                   state: State, aliases: frozenset[str],
                   forwards: frozenset[str]) -> list[Noop]:
    """Aliases and forwards mailplan made that the spec no longer wants but that were
    changed on the target since mailplan wrote them: not removed (not its lines now)."""
    out = []
    for kind, wanted, have, ours in (("alias", want.aliases, observed.aliases, aliases),
                                     ("forward", want.forwards, observed.forwards,
                                      forwards)):
        for name in sorted(managed_routing(state.data, domain, kind) - ours):
            if name not in wanted and have.get(name):
                out.append(Noop(domain, name, f"{kind} created by mailplan, not wanted by "
                                "the spec any more, but changed on the target since "
                                f"mailplan wrote it ({show_lines(tuple(have[name]))}); "
                                "left alone, also by --prune"))
    return out


def _rules_origin(spec: Spec, domain: str) -> Origin:
    key = next(k for k in spec.data["domains"] if k.lower() == domain)
    return spec_origin(spec, ("domains", key, "alias_domains"))


def merge_changes(core: list[Change], routing: list[Change]) -> list[Change]:
    """Routing changes after the core's creations and updates, before its deletions.

    Aliases and forwards need their domain and mailboxes to exist first; pruned forwards
    must go before their mailbox does.
    """
    first_delete = next((i for i, c in enumerate(core) if c.action == "delete"), len(core))
    ordered = ([c for c in routing if c.action != "delete"]
               + [c for c in routing if c.action == "delete"])
    return core[:first_delete] + ordered + core[first_delete:]
