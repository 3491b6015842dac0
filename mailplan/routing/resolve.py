"""Resolve sendmail targets to vpopmail delivery lines for one domain.

sendmail delivers a local name by looking it up in the aliases file first, then as a
user (whose ~/.forward applies). On vpopmail the same effect is a forward line
``&mailbox@domain``: vdelivermail then applies that mailbox's own .qmail (the migrated
~/.forward). Local names therefore resolve recursively through the aliases table and
through renamed users; loops, unknown names and deliveries with no safe equivalent
(``|program``, ``/file``, ``error:``, unreadable ``:include:``) and targets holding a
control character (a NUL cannot even be passed to a command) or a byte that is not UTF-8
become warnings carrying the source line. Pure; used by :mod:`mailplan.routing.mapdomain`
and :mod:`mailplan.routing.mapping`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from mailplan.routing.addresses import parse_item
from mailplan.routing.aliases import AliasEntry
from mailplan.routing.model import (
    Address,
    ErrorCode,
    FileDelivery,
    Finding,
    Include,
    Origin,
    Program,
    Target,
)
from mailplan.routing.rules import DomainRules
from mailplan.routing.virtusertable import VirtualEntry
from mailplan.text import escape, has_control, has_undecodable

OWN_MAILDIR = "./Maildir/"
#: a self-reference without a backslash (``bob: bob``): sendmail delivers to the user as
#: usual, through its ~/.forward. Never written: the mapping replaces it by the mailbox's
#: migrated ~/.forward lines (``./Maildir/`` when it has none, or in the ~/.forward itself)
SELF = "\0self"
#: a local name shown as it is in a warning; any other text is described, not echoed
#: (no '=': ``key=value`` is a configuration line, not a name), and neither is a name
#: read from an :include: file (``Address.listed``), which could be any file's line
_PLAIN_NAME = re.compile(r"[a-z0-9._+-]{1,64}")
DISCARD = "#"


@dataclass
class Directory:
    """What the resolver knows about every domain being migrated (read-only)."""

    rules: Mapping[str, DomainRules]
    aliases: Mapping[str, AliasEntry]
    local_hostnames: frozenset[str]
    #: alias domain (vaddaliasdomain) -> the migrated domain it delivers as
    alias_of: Mapping[str, str] = field(default_factory=dict)
    #: how many aliases deep an address is followed (sendmail's MaxAliasRecursion)
    max_depth: int = 10
    #: sendmail.cf has the plussed-users rule: a local ``name+detail`` that is no alias
    #: was delivered as ``name+*`` (an alias), else as ``name``
    plus_detail: bool = False
    #: migrated domains that were the old host's own names (class w): with the rule,
    #: ``name+detail@`` one of them was delivered as that local name (none whose
    #: ``@domain`` line the spec set aside: that line took it on sendmail)
    plussed_domains: frozenset[str] = frozenset()
    #: virtusertable key -> line (every migrated domain's): sendmail looked
    #: ``name+detail@domain`` up there as ``name+detail@``, ``name++@`` (a non-empty
    #: detail), ``name+*@``, ``name@``, ``++@`` (a non-empty detail), then ``+*@``
    virtual: Mapping[str, VirtualEntry] = field(default_factory=dict)

    def mailbox(self, name: str, domain: str, *, target_names: bool) -> list[tuple[str, str]]:
        """(domain, mailbox) candidates for a local name; ``domain``'s own come first.

        Source files speak in source logins; the spec (``target_names``) in mailbox names.
        """
        own = self.rules.get(domain)
        found: list[tuple[str, str]] = []
        if own is not None:
            if target_names and name in own.mailboxes.values():
                return [(domain, name)]
            if name in own.mailboxes:
                return [(domain, own.mailboxes[name])]
        for other in self.rules.values():
            if name in other.mailboxes:
                found.append((other.domain, other.mailboxes[name]))
        return found

    def withheld(self, name: str, domain: str, *, target_names: bool) -> tuple[str, str] | None:
        """(domain, user) when a local name is a user the plan does not create
        (:attr:`DomainRules.withheld`), ``domain``'s own first; else None."""
        for rules in sorted(self.rules.values(), key=lambda r: r.domain != domain):
            for login, user in sorted(rules.withheld.items()):
                if name == (user if target_names else login):
                    return rules.domain, user
        return None

    def renamed(self, local: str, domain: str) -> str:
        """The mailbox name for ``local@domain`` when ``domain`` is migrated."""
        rules = self.rules.get(domain)
        if rules is None:
            return local
        return rules.mailboxes.get(local.lower(), local)


@dataclass
class Check:
    """An address in a migrated domain that must exist there once everything is mapped."""

    local: str
    domain: str
    origin: Origin
    context: str


@dataclass
class Resolver:
    """Resolves targets for one domain; collects findings and existence checks."""

    directory: Directory
    domain: str
    findings: list[Finding] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    target_names: bool = False
    #: ``\\user`` deliveries: sendmail put them in the mailbox without its ~/.forward,
    #: ``&user@domain`` on vpopmail goes through the mailbox's .qmail (checked once the
    #: mailboxes' .qmail files are known)
    escapes: list[Check] = field(default_factory=list)
    #: (domain, mailbox) where an alias loop was broken: the mailbox gets the mail as a
    #: user (``&mailbox@domain``), as sendmail's self_reference breaks a loop at a user
    breaks: list[tuple[str, str]] = field(default_factory=list)
    #: (domain, mailbox) named without a backslash: its ``&mailbox@domain`` line runs
    #: the mailbox's .qmail, as sendmail delivered such a name through its ~/.forward
    reached: list[tuple[str, str]] = field(default_factory=list)

    def warn(self, message: str, origin: Origin | None) -> None:
        """Record a target with no safe equivalent."""
        self.findings.append(Finding("warning", message, origin, self.domain))

    def note(self, message: str, origin: Origin | None) -> None:
        """Record a policy decision."""
        self.findings.append(Finding("note", message, origin, self.domain))

    def lines(self, targets: Iterable[Target], *, context: str, owner: str | None = None,
              chain: tuple[str, ...] = (), depth: int | None = None) -> list[str]:
        """Delivery lines for ``targets``, deduplicated in order.

        ``owner`` is the mailbox whose own .qmail is being built (self-references become
        ``./Maildir/``); ``chain`` holds the alias names being expanded (loop detection);
        ``depth``: sendmail's alias level of ``targets`` (default: one per alias of
        ``chain``; an ``:include:`` file between them counts one more, as in sendmail).
        """
        level = len(chain) if depth is None else depth
        out: list[str] = []
        discard = False
        for target in targets:
            if isinstance(target, FileDelivery) and target.path == "/dev/null":
                discard = True
                self.note(f"{context}: /dev/null (discard) needs no delivery line",
                          target.origin)
                continue
            for line in self._one(target, context=context, owner=owner, chain=chain,
                                  depth=level):
                if line not in out:
                    out.append(line)
        if not out and discard:
            self.note(f"{context}: mail is discarded with a '#' line, as /dev/null did", None)
            return [DISCARD]
        return out

    def _one(self, target: Target, *, context: str, owner: str | None,
             chain: tuple[str, ...], depth: int) -> list[str]:
        text = str(target)
        if isinstance(target, Address):
            depth += target.depth  # read from :include: files
        if depth > self.directory.max_depth:
            # sendmail's recipient(): an address past MaxAliasRecursion is refused
            through = f"reached through {chain[-1]!r}" if chain else "read from :include: files"
            self.warn(f"{context}: an entry {through} is {depth} "
                      "aliases deep, past sendmail's MaxAliasRecursion "
                      f"({self.directory.max_depth}): sendmail bounced mail to it (554 "
                      "aliasing/forwarding loop broken); it is not carried over",
                      target.origin)
        elif has_control(text) or has_undecodable(text):
            # a byte that is not UTF-8 would reach qmail raw, where neither the apply log
            # nor the read-back of the .qmail (UTF-8) can carry it: never settled
            why = ("contains a control character (NUL, newline, ...)" if has_control(text)
                   else "holds a byte that is not UTF-8 text")
            shown = ("an entry of an :include: file (its text is not shown)"
                     if isinstance(target, Address) and target.listed
                     else repr(text) if has_control(text) else f"'{escape(text)}'")
            self.warn(f"{context}: {shown} {why} and is not carried over", target.origin)
        elif isinstance(target, Program):
            self.warn(f"{context}: program delivery {str(target)!r} has no safe vpopmail "
                      "equivalent and is not carried over", target.origin)
        elif isinstance(target, FileDelivery):
            self.warn(f"{context}: file delivery {target.path!r} has no safe vpopmail "
                      "equivalent and is not carried over", target.origin)
        elif isinstance(target, ErrorCode):
            self.warn(f"{context}: {str(target)!r} rejects mail on sendmail; vpopmail has no "
                      "per-address error code", target.origin)
        elif isinstance(target, Include):
            why = target.problem or "the file was not read"
            self.warn(f"{context}: {target} not carried over: {why}", target.origin)
        elif target.domain is None or target.domain in self.directory.local_hostnames:
            return self._local(target, context=context, owner=owner, chain=chain,
                               depth=depth)
        else:
            return self._remote(target, context=context, owner=owner, chain=chain,
                                depth=depth)
        return []

    def _local(self, target: Address, *, context: str, owner: str | None,
               chain: tuple[str, ...], depth: int) -> list[str]:
        name = target.local.lower()
        if name == "postmaster":
            return [f"&postmaster@{self.domain}"]
        if not target.escaped and name not in chain and name in self.directory.aliases:
            entry = self.directory.aliases[name]
            return self.lines(entry.targets, context=context, owner=owner,
                              chain=(*chain, name), depth=depth + 1)
        base, plus, _detail = name.partition("+")
        if self.directory.plus_detail and plus and base:
            return self._plussed(target, base, context=context, owner=owner, chain=chain,
                                 depth=depth)
        found = self.directory.mailbox(name, self.domain, target_names=self.target_names)
        if len(found) == 1:
            domain, mailbox = found[0]
            if domain == self.domain and mailbox == owner:
                return [OWN_MAILDIR if target.escaped else SELF]
            if target.escaped:
                self.escapes.append(Check(mailbox, domain, target.origin,
                                          f"{context}: \\{name}"))
            elif name in chain:  # a loop back to a user: sendmail delivers to it
                self.breaks.append((domain, mailbox))
            if not target.escaped:
                self.reached.append((domain, mailbox))
            return [f"&{mailbox}@{domain}"]
        if len(found) > 1:
            where = ", ".join(f"{m}@{d}" for d, m in found)
            self.warn(f"{context}: local name {name!r} is a migrated user in several domains "
                      f"({where}); name the address explicitly", target.origin)
        elif name in chain:
            broken = self._break_loop(name, context=context, owner=owner, chain=chain,
                                      origin=target.origin)
            if broken is not None:
                return [broken]
            self.warn(f"{context}: alias loop {' -> '.join((*chain, name))}", target.origin)
        elif withheld := self.directory.withheld(name, self.domain,
                                                 target_names=self.target_names):
            self.warn(f"{context}: {name!r} is the user {withheld[1]}@{withheld[0]}, which the "
                      "plan does not create (see its problem); nothing is delivered to it",
                      target.origin)
        elif _PLAIN_NAME.fullmatch(name) and not target.listed:
            self.warn(f"{context}: local name {name!r} resolves to nothing (no alias, no "
                      "migrated user)", target.origin)
        elif target.listed:  # not echoed: a line of an :include: file read as root
            self.warn(f"{context}: a {len(name)}-character name in an :include: file "
                      "resolves to nothing (no alias, no migrated user; its text is not "
                      "shown)", target.origin)
        else:  # not echoed: a line of any file a user can point a ~/.forward at
            self.warn(f"{context}: a {len(name)}-character entry that is not a plain local "
                      "name (letters, digits, . _ + -) resolves to nothing (no alias, no "
                      "migrated user)", target.origin)
        return []

    def _plussed(self, target: Address, base: str, *, context: str, owner: str | None,
                 chain: tuple[str, ...], depth: int) -> list[str]:
        """``name+detail`` with sendmail.cf's plussed-users rule (ruleset 5, after the
        alias lookup of the whole name failed): the alias ``name+*``, else ``name`` as
        an alias or user. On vpopmail the line is ``name``'s (the detail is dropped:
        qmail splits extensions only at '-')."""
        wildcard = f"{base}+*"
        if not target.escaped and wildcard not in chain and wildcard in self.directory.aliases:
            entry = self.directory.aliases[wildcard]
            return self.lines(entry.targets, context=context, owner=owner,
                              chain=(*chain, wildcard), depth=depth + 1)
        name = target.local.lower()
        shown = (f"{name} is delivered as {base}"
                 if _PLAIN_NAME.fullmatch(name) and not target.listed  # as warnings do
                 else "a name+detail entry is delivered as the name before its '+'")
        self.note(f"{context}: {shown}, as sendmail's plussed-users rule did (the +detail "
                  "is not kept on vpopmail)", target.origin)
        return self._local(replace(target, local=base, domain=None), context=context,
                           owner=owner, chain=chain, depth=depth)

    def _break_loop(self, name: str, *, context: str, owner: str | None,
                    chain: tuple[str, ...], origin: Origin) -> str | None:
        """The line of the user an alias loop ends at, or None when it has none.

        sendmail (recipient.c, self_reference) breaks a loop at the nearest name, going
        back up the expansion from the repeated one, that is a real user: that user is
        delivered to (its mailbox or ~/.forward) and the repetition dropped. A real user
        here is a migrated mailbox."""
        for ancestor in reversed(chain):
            found = self.directory.mailbox(ancestor, self.domain,
                                           target_names=self.target_names)
            if len(found) != 1:
                continue
            domain, mailbox = found[0]
            self.note(f"{context}: the alias loop {' -> '.join((*chain, name))} ends at "
                      f"{ancestor}, a user, who gets the mail once (as on sendmail)", origin)
            if domain == self.domain and mailbox == owner:
                return SELF
            self.breaks.append((domain, mailbox))
            return f"&{mailbox}@{domain}"
        return None

    def _remote(self, target: Address, *, context: str, owner: str | None,
                chain: tuple[str, ...], depth: int) -> list[str]:
        assert target.domain is not None
        # an alias domain the spec declares delivers as its domain: resolved there
        domain = self.directory.alias_of.get(target.domain, target.domain)
        if domain not in self.directory.rules:
            return [f"&{target.local}@{target.domain}"]
        # vpopmail names are lower-case (vpopmail and qmail-local fold the recipient):
        # Info@ is info@, which the existence check below must find
        local = target.local.lower()
        base, plus, detail = local.partition("+")
        if plus and base and f"{local}@{domain}" not in self.directory.virtual:
            virtual = self._detail_line(base, detail, domain, context=context, owner=owner,
                                        chain=chain, depth=depth, origin=target.origin)
            if virtual is not None:
                return virtual
            if (domain in self.directory.plussed_domains
                    and f"@{domain}" not in self.directory.virtual
                    and local not in self.directory.aliases):
                if f"{base}+*" in self.directory.aliases:  # no vpopmail alias: its lines
                    return self._local(replace(target, local=local, domain=None),
                                       context=context, owner=owner, chain=chain,
                                       depth=depth)
                self.note(f"{context}: an address NAME+DETAIL@{domain} is delivered as "
                          f"NAME@{domain}, as sendmail's plussed-users rule did ({domain} was "
                          "one of its own names; the +detail is not kept on vpopmail)",
                          target.origin)
                local = base
        return self._mailbox(local, domain, context=context, owner=owner,
                             origin=target.origin, escaped=target.escaped)

    def _mailbox(self, local: str, domain: str, *, context: str, owner: str | None,
                 origin: Origin, escaped: bool = False) -> list[str]:
        """The line delivering to ``local@domain`` of a migrated domain (its renamed
        mailbox or alias, checked to exist once every domain is mapped); the owner's
        own Maildir when it is the owner's own name."""
        mailbox = self.directory.renamed(local, domain)
        if domain == self.domain and owner is not None and mailbox == owner:
            return [OWN_MAILDIR if escaped else SELF]
        self.checks.append(Check(mailbox, domain, origin, context))
        if not escaped:
            self.reached.append((domain, mailbox))
        return [f"&{mailbox}@{domain}"]

    def _detail_line(self, base: str, detail: str, domain: str, *, context: str,
                     owner: str | None, chain: tuple[str, ...], depth: int,
                     origin: Origin) -> list[str] | None:
        """``name+detail@domain`` as sendmail's virtusertable lookup delivered it (after
        the key ``name+detail@domain``): the line ``name++@domain`` (a non-empty detail
        only), else ``name+*@domain``, else ``name@domain``, else ``++@domain`` (a
        non-empty detail only), else ``+*@domain``;
        whatever the domain (one of the old host's own names or a virtusertable-only
        one), with or without the plussed-users rule. The ``name+*`` line has no vpopmail
        alias, and neither has a line using %2 or %3 (the detail): their target is
        resolved here, the detail put in; a plain ``name@`` line is its alias (or the
        mailbox's .qmail). None when no line matches."""
        keys = [*([f"{base}++@{domain}"] if detail else []), f"{base}+*@{domain}",
                f"{base}@{domain}", *([f"++@{domain}"] if detail else []), f"+*@{domain}"]
        entry = next((self.directory.virtual[k] for k in keys if k in self.directory.virtual),
                     None)
        if entry is None:
            return None
        key = f"virtusertable {entry.key}"
        what = f"an address {base}+DETAIL@{domain} is delivered by the line {entry.key}"
        if not entry.any_detail and not entry.substitutes:
            self.note(f"{context}: {what}, as sendmail's virtusertable lookup did (the "
                      "+detail is not kept on vpopmail)", origin)
            return self._mailbox(base, domain, context=context, owner=owner, origin=origin)
        if key in chain:
            self.warn(f"{context}: virtusertable loop {' -> '.join((*chain, key))}", origin)
            return []
        self.note(f"{context}: {what}, as sendmail's virtusertable lookup did; that line "
                  "has no vpopmail alias, so its destination is written here", origin)
        target = entry.target
        if isinstance(target, Address) and entry.substitutes:
            target = parse_item(entry.filled(base, detail), entry.origin)
        return self.lines([target], context=f"{context} ({key})", owner=owner,
                          chain=(*chain, key), depth=depth + 1)
