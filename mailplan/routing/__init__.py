"""Address routing carried from sendmail to vpopmail (issue 4): the pure layer.

Flow: parsers (:mod:`.aliases`, :mod:`.forward`, :mod:`.virtusertable`) read source
files into targets with file and line; :func:`.mapping.map_routing` turns them and the
spec's :class:`.rules.DomainRules` into desired :class:`.rules.DomainRouting` plus
findings; :mod:`.facts` parses what vpopmail reports; :func:`.diff.diff_routing` yields
changes and :func:`.commands.commands_for` their argv lists. None of those does I/O:
hosts are reached by :mod:`.source` and :mod:`.target` (reads, through :mod:`.readfiles`),
:mod:`.integrate` (the plan) and :mod:`.execute` (apply).
"""

from mailplan.routing.aliases import parse_aliases, resolve_includes
from mailplan.routing.commands import commands_for, qmail_default_line
from mailplan.routing.diff import Change, diff_routing
from mailplan.routing.facts import (
    ObservedRouting,
    parse_alias_domains,
    parse_dot_qmail,
    parse_qmail_default,
    parse_valias_list,
    parse_vdominfo,
)
from mailplan.routing.forward import parse_forward
from mailplan.routing.mapping import map_routing
from mailplan.routing.model import Finding, Origin, RoutingError
from mailplan.routing.rules import (
    CatchAll,
    DomainRouting,
    DomainRules,
    ExplicitAlias,
    RoutingPlan,
    SourceRouting,
)
from mailplan.routing.virtusertable import parse_virtusertable

__all__ = [
    "CatchAll", "Change", "DomainRouting", "DomainRules", "ExplicitAlias", "Finding",
    "ObservedRouting", "Origin", "RoutingError", "RoutingPlan", "SourceRouting",
    "commands_for", "diff_routing", "map_routing", "parse_alias_domains", "parse_aliases",
    "parse_dot_qmail", "parse_forward", "parse_qmail_default", "parse_valias_list",
    "parse_vdominfo", "parse_virtusertable", "qmail_default_line", "resolve_includes",
]
