"""Which aliases, forwards and alias domains mailplan created, kept in the state file.

The state document gets a ``routing`` section, ``{domain: {"alias": {name: {...}},
"forward": {mailbox: {...}}, "alias_domain": {name: {...}}}}``, folded from journal
entries that carry a ``routing`` key (see :func:`apply_routing_entry`). Only what is
recorded here is ever removed by ``--prune``: an alias someone else made is never
touched. Such entries are never mistaken for domains or users mailplan created.
"""

from __future__ import annotations

from typing import Any

ROUTING_KINDS = ("alias", "forward", "alias_domain")


def effect(kind: str, domain: str, name: str, *, created: bool = False,
           deleted: bool = False) -> dict[str, Any]:
    """The journal effect of one routing step."""
    out: dict[str, Any] = {"domain": domain, "routing": kind, "name": name}
    if created:
        out["created"] = True
    if deleted:
        out["deleted"] = True
    return out


def apply_routing_entry(data: dict[str, Any], entry: dict[str, Any]) -> bool:
    """Fold one journal entry into ``data``; True when it was a routing step.

    A domain mailplan deletes takes its routing records with it, and a deleted user its
    forward record; so does a user it creates: its directory is new (vadduser refuses
    one that holds files), so a forward record of that name is of a .qmail deleted by
    hand with the old directory (vdeluser), and ``--prune`` would remove a .qmail someone
    else writes there. Those entries still return False (the core records them).
    """
    kind, domain = entry.get("routing"), entry.get("domain")
    routing = data.get("routing")
    if kind is None:
        user = entry.get("user")
        if domain and routing and user and (entry.get("deleted") or entry.get("created")):
            routing.get(domain, {}).get("forward", {}).pop(user, None)
        elif domain and routing and entry.get("deleted"):
            routing.pop(domain, None)
        return False
    if kind not in ROUTING_KINDS or not domain or "name" not in entry:
        raise KeyError(f"routing entry needs domain, name and one of {ROUTING_KINDS}")
    names = data.setdefault("routing", {}).setdefault(domain, {}).setdefault(kind, {})
    if entry.get("created"):
        names[entry["name"]] = {"created": entry.get("at")}
    if entry.get("deleted"):
        names.pop(entry["name"], None)
    return True


def managed_routing(data: dict[str, Any], domain: str, kind: str) -> frozenset[str]:
    """Names of ``kind`` (alias, forward, alias_domain) mailplan created in ``domain``."""
    return frozenset(data.get("routing", {}).get(domain, {}).get(kind, {}))
