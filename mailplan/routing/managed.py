"""Which aliases, forwards and alias domains mailplan created, kept in the state file.

The state document gets a ``routing`` section, ``{domain: {"alias": {name: {...}},
"forward": {mailbox: {...}}, "alias_domain": {name: {...}}}}``, folded from journal
entries that carry a ``routing`` key (see :func:`apply_routing_entry`). Only what is
recorded here is ever removed by ``--prune``: an alias someone else made is never
touched. Such entries are never mistaken for domains or users mailplan created. A
step that writes an alias's or a forward's lines also records a digest of them
(``lines``), so that ``--prune`` leaves alone one changed on the target since (a
vacation .qmail written by qmailadmin over the migrated forward is the user's now).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from mailplan.routing.diff import canonical

ROUTING_KINDS = ("alias", "forward", "alias_domain")


def lines_digest(lines: Iterable[str]) -> str:
    """A digest of .qmail lines as qmail reads them (:func:`canonical`)."""
    text = "\n".join(canonical(line) for line in lines)
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def effect(kind: str, domain: str, name: str, *, created: bool = False,
           deleted: bool = False, lines: Iterable[str] | None = None) -> dict[str, Any]:
    """The journal effect of one routing step; ``lines``: what it wrote."""
    out: dict[str, Any] = {"domain": domain, "routing": kind, "name": name}
    if created:
        out["created"] = True
    if deleted:
        out["deleted"] = True
    if lines is not None:
        out["lines"] = lines_digest(lines)
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
    if isinstance(entry.get("lines"), str) and isinstance(names.get(entry["name"]), dict):
        names[entry["name"]]["lines"] = entry["lines"]
    if entry.get("deleted"):
        names.pop(entry["name"], None)
    return True


def managed_routing(data: dict[str, Any], domain: str, kind: str) -> frozenset[str]:
    """Names of ``kind`` (alias, forward, alias_domain) mailplan created in ``domain``."""
    return frozenset(data.get("routing", {}).get(domain, {}).get(kind, {}))


def routing_domains(data: dict[str, Any]) -> set[str]:
    """The domains where mailplan made aliases, forwards or alias domains (records)."""
    return {domain for domain, kinds in data.get("routing", {}).items()
            if any(kinds.get(kind) for kind in ROUTING_KINDS)}


def unchanged_routing(data: dict[str, Any], domain: str, kind: str,
                      observed: dict[str, tuple[str, ...]]) -> frozenset[str]:
    """Names of ``kind`` (alias, forward) mailplan created in ``domain`` whose lines on
    the target (``observed``) are still the ones it last wrote, or of a record without
    that digest (made before mailplan kept it): what ``--prune`` may remove."""
    out = set()
    for name, record in data.get("routing", {}).get(domain, {}).get(kind, {}).items():
        written = record.get("lines") if isinstance(record, dict) else None
        if written is None or (name in observed and written == lines_digest(observed[name])):
            out.add(name)
    return frozenset(out)
