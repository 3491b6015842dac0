"""A domain mailplan made and the spec no longer names is deleted (``--prune``) with
vdeldomain, which removes the domain's whole directory: its users' Maildirs, and every
alias in it (the ``.qmail-NAME`` files valias writes, a mailing list's pipe, a forward an
administrator added by hand). The diff keeps a domain holding accounts mailplan did not
create (:func:`mailplan.diff.diff`); it cannot see the aliases, which only ``valias -s``
lists. Routing's read of the target lists them for the domains a plan would delete too
(:func:`doomed_domains`; no remote command of their own), and
:func:`keep_hand_made_aliases` keeps every domain holding an alias
mailplan did not write, or one it wrote and someone changed since
(:func:`~mailplan.routing.managed.unchanged_routing`, as ``--prune`` decides for an
alias of its own): a problem of the plan says so, and the domain is not deleted.

A domain mailplan did not make, in which it created users, is not deleted when the spec
drops it, but those users are mailplan's as any other: :func:`dropped_domain_users` adds
their deletions (``--prune``), which the diff, going by the spec's domains and those
mailplan made, left out: the plan said "No changes" and forgot them.
"""

from __future__ import annotations

from typing import Any

from mailplan.desired import Problem
from mailplan.diff import Managed
from mailplan.facts.vpopmail import TargetFacts
from mailplan.plan import PRUNE_NOTE, Change
from mailplan.routing.managed import unchanged_routing


def doomed_domains(changes: list[Change]) -> list[str]:
    """The domains ``changes`` delete (vdeldomain): routing's read of the target lists
    their aliases too (``plan_routing``'s ``also_listed``) for
    :func:`keep_hand_made_aliases`."""
    return [c.domain for c in changes if (c.action, c.kind) == ("delete", "domain")]


def keep_hand_made_aliases(changes: list[Change], problems: list[Problem],
                           listed: dict[str, dict[str, tuple[str, ...]]],
                           data: dict[str, Any]) -> list[Change]:
    """``changes`` without the deletion of a domain that holds aliases mailplan did not
    write (``listed``: ``valias -s`` of each domain deleted, as routing's read of the
    target listed it; ``data``: the state's records); each one left out gets a problem
    in ``problems`` that names those aliases."""
    kept: set[str] = set()
    for name in doomed_domains(changes):
        observed = listed[name]
        foreign = sorted(set(observed) - unchanged_routing(data, name, "alias", observed))
        if not foreign:
            continue
        kept.add(name)
        shown = ", ".join(f"{alias}@{name}" for alias in foreign[:5])
        problems.append(Problem(name, None, (
            f"created by mailplan, no longer in the spec, but it holds {len(foreign)} "
            f"alias(es) mailplan did not write, or wrote and someone changed since "
            f"({shown}{', ...' if len(foreign) > 5 else ''}): not deleted, even with "
            "--prune (vdeldomain would delete them with the domain's directory); put the "
            "domain back in the spec, or move those aliases and delete it by hand")))
    return [c for c in changes
            if not ((c.action, c.kind) == ("delete", "domain") and c.domain in kept)]


def dropped_domains(managed: Managed, spec_domains: set[str]) -> set[str]:
    """Domains mailplan did not make, in which it created users, that the spec no longer
    names (to be read from the target, for :func:`dropped_domain_users`)."""
    return {domain for domain, _ in managed.users} - managed.domains - spec_domains


def dropped_domain_users(changes: list[Change], target: TargetFacts, managed: Managed,
                         spec_domains: set[str]) -> list[Change]:
    """``changes`` with the deletion of every user mailplan created, still on the
    target, in a domain it did not make that the spec no longer names; put with the
    other users' deletions, before those of domains (the order apply runs them)."""
    gone = [Change("delete", "user", domain, user, reason=(
        "created by mailplan, no longer in the spec (its domain, which mailplan did not "
        f"make, is no longer either: kept); vdeluser deletes its Maildir, mail included "
        f"{PRUNE_NOTE}"))
        for domain in sorted(dropped_domains(managed, spec_domains))
        if domain in target.domains
        for user in sorted(target.domains[domain].users)
        if (domain, user) in managed.users and user != "postmaster"]
    if not gone:
        return changes
    at = next((i for i, c in enumerate(changes) if (c.action, c.kind) == ("delete", "domain")),
              len(changes))
    return [*changes[:at], *gone, *changes[at:]]
