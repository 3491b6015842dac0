"""Inputs and outputs of the routing mapping, and the fixed policies it applies.

Inputs: :class:`SourceRouting` (what was parsed on the sendmail host) and one
:class:`DomainRules` per vpopmail domain (what the spec says). Output: a
:class:`RoutingPlan` holding, per domain, the desired :class:`DomainRouting` and the
findings (warnings and notes, each with its source line).

Policies (documented for admins, see also :mod:`mailplan.routing.mapping`):

- ``postmaster`` stays vpopmail's own account (created by vadddomain): never an alias,
  never a forward target other than that mailbox.
- ``MAILER-DAEMON`` is the MTA's bounce sender; qmail handles it, no alias is created.
- Operating-system accounts (root, daemon, bin, nobody, ...) are not created as aliases
  in a virtual domain unless the domain's ``include`` list names them literally; as
  *targets* they still resolve through the aliases file (``abuse: root``, ``root: alice``).
- RFC 2142 role addresses (abuse, hostmaster, webmaster, security, noc, ...) are
  ordinary aliases and are imported like any other.
- Alias names ``default`` and ``*-default`` are refused: qmail would read
  ``.qmail-default`` / ``.qmail-x-default`` as the domain catch-all or a wildcard.
- sendmail's ``NAME+*`` wildcards are never aliases: qmail splits extensions only at
  '-', so nothing catches ``NAME+DETAIL`` (:mod:`mailplan.routing.plussed`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from mailplan.routing.aliases import AliasFile
from mailplan.routing.forward import ForwardFile
from mailplan.routing.model import Finding, Origin
from mailplan.routing.virtusertable import Virtusertable

VPOPMAIL_OWNED = frozenset({"postmaster"})
MTA_INTERNAL = frozenset({"mailer-daemon"})
SYSTEM_ACCOUNTS = frozenset({
    "root", "toor", "daemon", "bin", "sys", "adm", "lp", "sync", "shutdown", "halt", "mail",
    "news", "usenet", "uucp", "operator", "games", "gopher", "man", "nobody", "nfsnobody",
    "ftp", "www", "www-data", "apache", "backup", "list", "irc", "gnats", "proxy", "sshd",
    "dbus", "smmsp", "decode", "dumper", "manager", "ingres", "system", "bind", "named",
    "ntp", "postgres", "mysql", "rpc", "rpcuser", "nscd", "mailnull", "vcsa", "pcap",
})

#: ``kept``: whatever the domain's .qmail-default does now, left as it is (the spec's
#: catch-all delivers to a user the plan does not create: :meth:`Desired.withhold`)
CatchAllKind = Literal["bounce", "delete", "deliver-to-user", "forward-to-address", "kept"]


@dataclass(frozen=True)
class CatchAll:
    """What the domain's .qmail-default does with mail for unknown recipients.

    ``target`` is the mailbox name (deliver-to-user) or the address (forward-to-address).
    """

    kind: CatchAllKind
    target: str = ""

    def describe(self) -> str:
        """A short human form for plans."""
        return {
            "bounce": "bounce mail for unknown recipients",
            "delete": "delete mail for unknown recipients",
            "deliver-to-user": f"deliver mail for unknown recipients to {self.target}",
            "forward-to-address": f"forward mail for unknown recipients to {self.target}",
            "kept": "leave mail for unknown recipients to the catch-all the domain has (not "
                    "changed)",
        }[self.kind]


@dataclass(frozen=True)
class ExplicitAlias:
    """An alias declared in the spec; destinations are addresses or mailbox names."""

    name: str
    destinations: tuple[str, ...]
    origin: Origin | None = None


@dataclass(frozen=True)
class DomainRules:
    """The spec's routing rules for one vpopmail domain.

    ``mailboxes`` maps each migrated source login to its vpopmail mailbox name (an
    unrenamed user maps to itself). ``include``/``exclude`` are fnmatch patterns on alias
    names of the source aliases file; an empty ``include`` imports every alias.
    ``catch_all`` None means: take it from virtusertable's ``@domain`` entry, else bounce.
    ``withheld`` maps the source login of each user the plan does not create (its
    directory too long: :meth:`Desired.withhold`) to its name: no mailbox, said so.
    """

    domain: str
    mailboxes: Mapping[str, str] = field(default_factory=dict)
    import_aliases: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    aliases: tuple[ExplicitAlias, ...] = ()
    alias_domains: tuple[str, ...] = ()
    catch_all: CatchAll | None = None
    import_forwards: bool = True
    origin: Origin | None = None
    withheld: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceRouting:
    """Routing read from the sendmail host (aliases with includes already resolved).

    ``aliases``: sendmail's alias files in the order it looks names up in them (the first
    that has a name wins). ``forwards`` is keyed by source login; ``local_hostnames`` is
    sendmail's class w (``user@host`` for such a host is a local name, as sendmail
    treats it).
    ``set_aside_catch_alls``: domains whose ``@domain`` virtusertable line was left out
    of ``virtusertable`` for the mapping (the spec's catch-all applies instead); sendmail
    still sent their unlisted addresses there. ``plus_detail``: where sendmail.cf
    delivers ``name+detail`` to ``name`` (its plussed-users rule), or None.
    """

    aliases: tuple[AliasFile, ...] = ()
    forwards: Mapping[str, ForwardFile] = field(default_factory=dict)
    virtusertable: Virtusertable | None = None
    local_hostnames: frozenset[str] = frozenset({"localhost"})
    set_aside_catch_alls: frozenset[str] = frozenset()
    #: sendmail.cf's rule delivering ``user+detail`` to ``user``, when it has one
    plus_detail: Origin | None = None
    #: sendmail.cf's MaxAliasRecursion (:func:`~mailplan.routing.sendmailcf.max_alias_recursion`)
    max_alias_recursion: int = 10


@dataclass(frozen=True)
class DomainRouting:
    """Desired vpopmail routing of one domain.

    ``aliases``: alias name (lower-case, '.' kept) -> .qmail-NAME lines in order, forward
    lines in ``&user@domain`` form. ``forwards``: mailbox name -> lines of the mailbox's
    own .qmail (``./Maildir/`` keeps a local copy). ``origins`` says where each alias or
    forward came from, for display. ``set_aside``: mailboxes whose routing on the source
    the spec does not carry (``source.forward: false``; an alias of the mailbox's name
    not imported): a forward mailplan wrote for one is not taken for one the source
    dropped.
    """

    domain: str
    aliases: Mapping[str, tuple[str, ...]]
    forwards: Mapping[str, tuple[str, ...]]
    alias_domains: tuple[str, ...]
    catch_all: CatchAll
    origins: Mapping[str, Origin] = field(default_factory=dict)
    set_aside: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RoutingPlan:
    """The mapping's result: desired routing per domain plus what the admin must read."""

    domains: Mapping[str, DomainRouting]
    findings: tuple[Finding, ...]

    @property
    def warnings(self) -> tuple[Finding, ...]:
        """Entries with no safe equivalent (what --strict refuses)."""
        return tuple(f for f in self.findings if f.severity == "warning")
