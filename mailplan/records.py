"""The state's records against the target: is the object of a record (or of a step begun
and not recorded) there, and which records name objects that are gone.

The state file names what mailplan created (:mod:`mailplan.state`, and
:mod:`mailplan.routing.managed` for aliases, forwards and alias domains): only those may
be pruned. An object removed by hand and later made again by hand under the same name is
not mailplan's, but nothing on the target tells it from the one mailplan made. So a plan
that finds a recorded object gone says so (a noop), and the next apply drops its record
(:func:`gone_records`, recorded by ``mailplan.apply``): ``--prune`` never deletes the
one made again. Only what the plan's reads can tell is judged: a domain it did not read,
or routing it did not look at, keeps its records.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mailplan.facts.vpopmail import TargetFacts
from mailplan.plan import Noop
from mailplan.routing.target import TargetRouting

GONE = ("created by mailplan, not on the target any more (removed by hand): the next "
        "apply drops its record, so that one made again by hand is never pruned")


def presence(target: TargetFacts, seen: TargetRouting | None,
             claim: dict[str, Any]) -> bool | None:
    """Whether the plan's reads found the object of a claim (a record's or an intent's:
    ``domain``, and ``user``, or ``routing`` and ``name``) on the target; None when
    they cannot tell (the domain was not read, or its routing not looked at)."""
    name = claim["domain"]
    domain = target.domains.get(name)
    if domain is None:
        return False if name in target.looked_at else None
    kind = claim.get("routing")
    if kind is None:
        return not claim.get("user") or claim["user"] in domain.users
    if seen is None or name not in seen.observed:
        return None
    if kind == "alias":
        return claim["name"] in seen.observed[name].aliases
    if kind == "forward":
        return bool(seen.observed[name].forwards.get(claim["name"]))
    if claim["name"] not in seen.alias_domain_owner:
        return None
    return seen.alias_domain_owner[claim["name"]] == name


def found(target: TargetFacts, seen: TargetRouting | None, claim: dict[str, Any]) -> bool:
    """Whether the plan's reads found the object of a claim on the target (not when they
    cannot tell)."""
    return presence(target, seen, claim) is True


def _records(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The claim of every record of the state document ``data``: each domain's own
    before its users' and its routing's."""
    routing = data.get("routing", {})
    for domain in sorted(set(data["managed"]) | set(routing)):
        body = data["managed"].get(domain, {"users": {}})
        if "created" in body:
            yield {"domain": domain}
        for user in sorted(body["users"]):
            yield {"domain": domain, "user": user}
        for kind, names in sorted(routing.get(domain, {}).items()):
            for name in sorted(names):
                yield {"domain": domain, "routing": kind, "name": name}


def gone_records(data: dict[str, Any], target: TargetFacts,
                 seen: TargetRouting | None) -> list[dict[str, Any]]:
    """The claims of the records of ``data`` whose objects the plan's reads found gone
    (a domain's stands for its users' and its routing's: dropping it drops them)."""
    gone: list[dict[str, Any]] = []
    domains: set[str] = set()
    for claim in _records(data):
        if claim["domain"] in domains or presence(target, seen, claim) is not False:
            continue
        gone.append(claim)
        if len(claim) == 1:
            domains.add(claim["domain"])
    return gone


def gone_id(claim: dict[str, Any]) -> str:
    """The journal id of dropping the record of ``claim``."""
    name = claim.get("user") or claim.get("name")
    what = f"{name}@{claim['domain']}" if name else claim["domain"]
    return f"gone-{claim.get('routing', 'user' if 'user' in claim else 'domain')}:{what}"


def gone_noops(gone: list[dict[str, Any]]) -> list[Noop]:
    """What the plan says of each record the next apply drops."""
    return [Noop(c["domain"], c.get("user") or c.get("name"),
                 f"{c['routing'].replace('_', ' ')} {GONE}" if "routing" in c else GONE)
            for c in gone]
