"""Loops on vpopmail that sendmail broke: aliases and mailboxes' own .qmail files that
forward to each other through full addresses.

``bb: cc@example.com`` and ``cc: bb@example.com``, or two ~/.forward files naming each
other, were delivered once by sendmail, which broke the loop; qmail bounces such mail
once it comes round again (its Delivered-To line). The resolver follows local names
only, so these loops are found here, on every domain's mapped routing at once, and
become warnings. Pure; the walk is iterative, so a long chain of aliases cannot exhaust
Python's recursion limit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from mailplan.routing.model import Finding
from mailplan.routing.rules import DomainRouting

Node = tuple[str, str, str]  # ("alias" | "forward", domain, name)


def loops_on_vpopmail(result: Mapping[str, DomainRouting]) -> list[Finding]:
    """A warning per loop through full addresses, at the origin of its first node; loops
    are found in the order of the domains, then of their aliases and forwards, by name."""
    out = []
    for cycle in _cycles(result):
        first = cycle[0]
        out.append(Finding(
            "warning", "alias loop on vpopmail: " + " -> ".join(map(_show, [*cycle, first]))
            + "; qmail bounces mail that comes round again as looping",
            result[first[1]].origins.get(first[2]), first[1]))
    return out


def _cycles(result: Mapping[str, DomainRouting]) -> list[list[Node]]:
    """Every cycle a depth-first walk from each node in turn closes (each node walked
    once, so a cycle is reported once, from the first of its nodes reached)."""
    state: dict[Node, int] = {}  # 1 on the path being walked, 2 done
    found: list[list[Node]] = []
    for start in _nodes(result):
        if start in state:
            continue
        state[start] = 1
        path, stack = [start], [iter(_targets(result, start))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:  # every target of the path's last node walked
                stack.pop()
                state[path.pop()] = 2
            elif state.get(nxt) == 1:
                found.append(path[path.index(nxt):])
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(_targets(result, nxt)))
    return found


def _nodes(result: Mapping[str, DomainRouting]) -> Iterator[Node]:
    """Each domain's aliases, then its mailboxes' forwards, domains and names sorted."""
    for domain in sorted(result):
        routing = result[domain]
        yield from (("alias", domain, n) for n in sorted(routing.aliases))
        yield from (("forward", domain, n) for n in sorted(routing.forwards))


def _targets(result: Mapping[str, DomainRouting], node: Node) -> list[Node]:
    """The aliases and forwards of migrated domains that ``node``'s lines forward to."""
    kind, domain, name = node
    routing = result[domain]
    out: list[Node] = []
    for line in (routing.aliases if kind == "alias" else routing.forwards)[name]:
        local, at, host = line.removeprefix("&").rpartition("@")
        if not line.startswith("&") or not at or host not in result:
            continue
        if local in result[host].aliases:
            out.append(("alias", host, local))
        elif local in result[host].forwards:
            out.append(("forward", host, local))
    return out


def _show(node: Node) -> str:
    kind, domain, name = node
    return f"alias {name}@{domain}" if kind == "alias" else f"the .qmail of {name}@{domain}"
