"""What the target has for routing: aliases, users' own .qmail files, alias domains.

:func:`read_target_routing` reads it all in one batch (``valias -s`` per domain, the
.qmail of every mailbox of interest, ``vdominfo`` per wanted alias domain) for
:func:`mailplan.routing.integrate.plan_routing`. Read only.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailplan.connectors.base import CommandResult, Connector
from mailplan.errors import HostError
from mailplan.routing.execute import vpopmail_tool
from mailplan.routing.facts import ObservedRouting, parse_dot_qmail, parse_valias_list
from mailplan.routing.managed import managed_routing
from mailplan.routing.model import RoutingError
from mailplan.routing.readfiles import read_request, run_reads
from mailplan.routing.rules import DomainRouting
from mailplan.secret import mask_output
from mailplan.shell import join

if TYPE_CHECKING:
    from mailplan.facts.vpopmail import TargetFacts
    from mailplan.state import State


def _check(res: CommandResult, host: str, what: str) -> None:
    if res.returncode != 0:
        out = mask_output(res.stdout.decode("utf-8", "replace").strip() or res.stderr_text)
        raise HostError(f"{what} failed (exit {res.returncode}): {out[:300]}", host=host,
                        step="read target routing")


def _missing_domain(res: CommandResult) -> bool:
    text = res.stdout.decode("utf-8", "replace")
    return res.returncode != 0 and ("Invalid domain" in text or "can't read" in text)


@dataclass
class TargetRouting:
    """What the target has: per domain, and what each wanted alias domain is now."""

    observed: dict[str, ObservedRouting]
    alias_domain_owner: dict[str, str | None]  # alias domain -> real domain it serves
    #: ``valias -s`` of every domain read, those of ``also`` included (the prune guard's)
    listed: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)


def read_target_routing(conn: Connector, vpop: str, target: TargetFacts,
                        wanted: dict[str, DomainRouting], state: State,
                        also: Collection[str] = ()) -> TargetRouting:
    """One batch: valias -s, the .qmail of every mailbox of interest, alias domains;
    ``also``: domains on the target whose aliases are listed too (``listed``), those a
    plan would delete, for :func:`mailplan.prune_guard.keep_hand_made_aliases` (a batch
    of their own was one more remote command)."""
    cmds: list[str] = []
    jobs: list[tuple[str, str, str]] = []  # (what, domain, name)
    qmail: dict[tuple[str, str], str] = {}  # (domain, mailbox) -> path of its .qmail
    for name in sorted(wanted):
        have = target.domains.get(name)
        if have is None:
            continue
        cmds.append(join([vpopmail_tool(vpop, "valias"), "-s", name]))
        jobs.append(("valias", name, ""))
        mailboxes = set(wanted[name].forwards) | managed_routing(state.data, name, "forward")
        for mailbox in sorted(mailboxes):
            user = have.users.get(mailbox)
            if user is not None:
                qmail[(name, mailbox)] = user.dir.rstrip("/") + "/.qmail"
    for name in sorted(set(also) - set(wanted)):
        cmds.append(join([vpopmail_tool(vpop, "valias"), "-s", name]))
        jobs.append(("valias", name, ""))
    for alias in sorted({a for d in wanted.values() for a in d.alias_domains}):
        cmds.append(join([vpopmail_tool(vpop, "vdominfo"), "-n", "-d", alias]))
        jobs.append(("vdominfo", "", alias))
    aliases: dict[str, dict[str, tuple[str, ...]]] = {}
    forwards: dict[str, dict[str, tuple[str, ...]]] = {}
    owner: dict[str, str | None] = {}
    files, results = run_reads(conn, read_request(list(qmail.values())), cmds)
    for (domain, mailbox), path in qmail.items():
        read = files[path]
        if read.exists and read.data is None:
            raise HostError(f"cannot read {path} (the .qmail of {mailbox}@{domain})",
                            host=conn.name, step="read target routing")
        content = (read.data or b"").decode("utf-8", "replace")
        forwards.setdefault(domain, {})[mailbox] = parse_dot_qmail(content) if content else ()
    for (what, domain, name), res in zip(jobs, results, strict=True):
        if what == "valias":
            try:
                aliases[domain] = parse_valias_list(res.stdout.decode("utf-8", "replace"),
                                                    res.returncode)
            except RoutingError as exc:
                raise HostError(f"valias -s {domain}: {exc.message}", host=conn.name,
                                step="read target routing") from None
        else:
            if _missing_domain(res):
                owner[name] = None
                continue
            _check(res, conn.name, f"vdominfo {name}")
            owner[name] = res.stdout.decode("utf-8", "replace").split("\n", 1)[0].strip()
    observed = {
        name: ObservedRouting(name, aliases.get(name, {}), forwards.get(name, {}),
                              target.domains[name].aliases if name in target.domains else ())
        for name in wanted}
    return TargetRouting(observed, owner, aliases)
