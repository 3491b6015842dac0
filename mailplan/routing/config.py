"""The spec's side of routing: semantic checks and per-domain :class:`DomainRules`.

The schema (``schemas/spec-v1.schema.json``) fixes the shape of the routing keys:
``source.aliases`` / ``source.virtusertable`` / ``source.forward`` and, per domain,
``import_aliases`` (bool or include/exclude patterns), ``aliases`` (name ->
destinations) and ``alias_domains``. :func:`check_routing_spec` runs the checks that
need no host (alias and alias-domain names, destination syntax), so ``mailplan
validate`` reports them with file, line and key. :func:`domain_rules` turns a domain's
keys plus the core's desired mailboxes and catch-all into the pure layer's input.

The catch-all is the core's ``unknown_recipients``; routing never writes it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from mailplan.names import domain_problem
from mailplan.routing.addresses import parse_item
from mailplan.routing.mapdomain import alias_name_problem
from mailplan.routing.model import Origin, RoutingError
from mailplan.routing.rules import CatchAll, DomainRules, ExplicitAlias

if TYPE_CHECKING:
    from mailplan.desired import Catchall, DesiredDomain
    from mailplan.spec import Spec

CORE_CATCH_ALL = {"bounce": "bounce", "delete": "delete", "forward": "forward-to-address",
                  "deliver_to": "deliver-to-user"}


def spec_origin(spec: Spec, path: tuple[str | int, ...]) -> Origin:
    """The spec file and line of a value, as an Origin for findings and errors."""
    probe = tuple(path)
    while probe and probe not in spec.marks:
        probe = probe[:-1]
    return Origin(str(spec.path), spec.marks.get(probe, (0, 0))[0])


def check_routing_spec(spec: Spec) -> None:
    """Semantic checks of the routing keys; raises SpecError pointing at the value."""
    domains = {d.lower(): d for d in spec.data["domains"]}
    owner: dict[str, str] = {}  # alias domain -> the spec domain it is an alias of
    for key, body in spec.data["domains"].items():
        body = body or {}
        for i, alias in enumerate(body.get("alias_domains", [])):
            _check_alias_domain(spec, key, i, alias, domains, owner)
        explicit = {u["name"].lower() for u in body.get("users", [])}
        spelled: dict[str, str] = {}  # lower-cased alias name -> as first written
        for name, destinations in (body.get("aliases") or {}).items():
            _check_alias(spec, ("domains", key, "aliases", name), explicit, spelled)
            for j, dest in enumerate(destinations):
                _check_destination(spec, ("domains", key, "aliases", name, j), dest)


def _check_alias_domain(spec: Spec, key: str, index: int, alias: str,
                        domains: Mapping[str, str], owner: dict[str, str]) -> None:
    """One of domain ``key``'s alias domains: a valid name, not the domain itself, not a
    spec domain, not another domain's alias domain already (noted in ``owner``)."""
    name = alias.lower()
    problem = domain_problem(name)
    if problem is None and name == key.lower():
        problem = "it is the domain itself"
    if problem is None and name in domains:
        problem = f"{domains[name]!r} is a domain of its own in this spec"
    if problem is None and name in owner:
        problem = f"it is already an alias domain of {owner[name]!r}"
    if problem:
        raise spec.error(f"alias domain {alias!r}: {problem}",
                         ("domains", key, "alias_domains", index))
    owner[name] = key


def _check_alias(spec: Spec, apath: tuple[str, ...], explicit: Collection[str],
                 spelled: dict[str, str]) -> None:
    """An alias name (the last of ``apath``): one vpopmail accepts, not written before in
    other case (``spelled`` notes it), not postmaster, not a mailbox of the domain."""
    name = apath[-1]
    lowered = name.lower()
    problem = alias_name_problem(lowered)
    if problem is None and lowered in spelled:
        problem = (f"it is the same alias as {spelled[lowered]!r} (alias names are "
                   "case-insensitive); merge their destinations into one")
    spelled.setdefault(lowered, name)
    if problem is None and lowered == "postmaster":
        problem = "postmaster stays vpopmail's own account (created with the domain)"
    if problem is None and lowered in explicit:
        problem = (f"{lowered!r} is a mailbox of this domain; an alias would shadow "
                   "it (route a mailbox's mail with its ~/.forward instead)")
    if problem:
        raise spec.error(f"alias {name!r}: {problem}", apath, at_key=True)


def _check_destination(spec: Spec, where: tuple[str | int, ...], dest: str) -> None:
    """A spec alias's destination: an address or mailbox name, nothing a shell, a file
    or another list would receive."""
    try:
        parse_item(dest, spec_origin(spec, where))
    except RoutingError as exc:
        why = exc.message.rsplit(": ", 1)[-1] if exc.origin else exc.message
        raise spec.error(f"not a usable destination: {why}", where) from None
    if dest.lstrip().startswith(("|", "/", ":include:", "error:")):
        raise spec.error("a destination is a mailbox name of this domain or an "
                         "address (no programs, files, includes or error codes)", where)


def catch_all_of(core: Catchall, withheld: Collection[str] = ()) -> CatchAll:
    """The core's ``unknown_recipients`` policy in the routing layer's words. One that
    delivers to a user of ``withheld`` (not created: :meth:`Desired.withhold`) is
    ``kept``: the core leaves the domain's catch-all as it is."""
    if core.kind == "deliver_to" and core.target in withheld:
        return CatchAll("kept")
    return CatchAll(CORE_CATCH_ALL[core.kind], core.target)  # type: ignore[arg-type]


def domain_rules(spec: Spec, key: str, domain: DesiredDomain, *, catch_all: CatchAll | None,
                 withheld_users: Mapping[tuple[str, str], str] | None = None) -> DomainRules:
    """The routing rules of one spec domain (``key`` as written in the spec);
    ``withheld_users``: :attr:`Desired.withheld`."""
    withheld_users = withheld_users or {}
    body = spec.data["domains"][key] or {}
    where = ("domains", key)
    mailboxes = domain.routed()
    withheld = {login: name for (dom, name), login in sorted(withheld_users.items())
                if dom == domain.name}
    rule: Any = body.get("import_aliases", False)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    if isinstance(rule, dict):
        include = tuple(p.lower() for p in rule.get("include", []))
        exclude = tuple(p.lower() for p in rule.get("exclude", []))
    explicit = tuple(
        ExplicitAlias(name, tuple(dests), spec_origin(spec, (*where, "aliases", name)))
        for name, dests in (body.get("aliases") or {}).items())
    return DomainRules(
        domain=domain.name,
        mailboxes=mailboxes,
        import_aliases=rule is not False,
        include=include,
        exclude=exclude,
        aliases=explicit,
        alias_domains=tuple(a.lower() for a in body.get("alias_domains", [])),
        catch_all=catch_all,
        import_forwards=spec.data["source"].get("forward", True),
        origin=spec_origin(spec, where),
        withheld=withheld,
    )


def uses_routing(spec: Spec) -> bool:
    """Whether the spec asks for anything routing does (else no extra host reads)."""
    src = spec.data["source"]
    if src.get("forward", True) or "aliases" in src or "virtusertable" in src:
        return True
    return any((b or {}).get(k) for b in spec.data["domains"].values()
               for k in ("import_aliases", "aliases", "alias_domains"))
