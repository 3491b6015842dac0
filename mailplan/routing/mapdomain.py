"""Map one domain's routing: its mailboxes' ~/.forward, aliases, virtusertable lines,
the spec's aliases, alias domains and catch-all (:mod:`mailplan.routing.catchall`);
what owner aliases mean is said by :mod:`mailplan.routing.owners`, what ``+*`` wildcards
do by :mod:`mailplan.routing.plussed`.

:func:`map_domain` is called by :func:`mailplan.routing.mapping.map_routing` for each
domain, which documents the policies applied here (in that order) and then checks the
result across domains. A :class:`_DomainMapper` holds what the phases share: the
aliases and forwards mapped so far and the findings of the entry being mapped.
:func:`alias_name_problem` is also the spec check's (:mod:`mailplan.routing.config`).
Pure.
"""

from __future__ import annotations

from dataclasses import replace
from fnmatch import fnmatchcase

from mailplan.names import domain_problem, user_problem
from mailplan.routing.addresses import parse_item
from mailplan.routing.aliases import AliasEntry
from mailplan.routing.catchall import domain_catch_all
from mailplan.routing.handoffs import Handoffs
from mailplan.routing.model import Address, Finding, LeftOut, Origin, RoutingError
from mailplan.routing.owners import owner_findings
from mailplan.routing.plussed import NO_PLUS, WILDCARD, wildcard_alias, wildcard_problem
from mailplan.routing.resolve import DISCARD, OWN_MAILDIR, SELF, Resolver
from mailplan.routing.rules import (
    MTA_INTERNAL,
    SYSTEM_ACCOUNTS,
    VPOPMAIL_OWNED,
    DomainRouting,
    DomainRules,
    ExplicitAlias,
    SourceRouting,
)
from mailplan.routing.virtusertable import VirtualEntry

#: valias -i drops a line of 160 bytes or more (MAX_ALIAS_LINE) and valias -s reads lines
#: in 159-byte pieces (fgets into a 160-byte buffer): an alias line must be shorter
MAX_ALIAS_LINE = 158
#: vdelivermail reads a mailbox's own .qmail with fgets into 500 bytes: a line, its
#: newline and the NUL must fit
MAX_FORWARD_LINE = 498


def _alias_line_problem(lines: list[str]) -> str | None:
    longest = max((len(line.encode()) for line in lines), default=0)
    if longest > MAX_ALIAS_LINE:
        return (f"a destination line of {longest} bytes; valias keeps lines of at most "
                f"{MAX_ALIAS_LINE} (it drops one of 160 or more and reads one of 159 or more "
                "in pieces)")
    return None


def alias_name_problem(name: str) -> str | None:
    """Why vpopmail (or qmail-local) cannot carry an alias of this name, or None."""
    if name == "default" or name.endswith("-default"):
        return "qmail-local would read .qmail-" + name + " as a catch-all or wildcard"
    return wildcard_problem(name) or user_problem(name, alias=True)


def map_domain(source: SourceRouting, rules: DomainRules, table: dict[str, AliasEntry],
               virtual: dict[str, VirtualEntry], resolver: Resolver,
               handoffs: Handoffs) -> DomainRouting:
    """The desired routing of ``rules.domain``; findings go to ``resolver``, the mailboxes
    each entry reaches and where its loops were broken to ``handoffs``. Raises
    RoutingError on bad spec rules."""
    return _DomainMapper(source, rules, table, virtual, resolver, handoffs).run()


class _DomainMapper:
    """One domain's mapping: its phases, and the state they share."""

    def __init__(self, source: SourceRouting, rules: DomainRules,
                 table: dict[str, AliasEntry], virtual: dict[str, VirtualEntry],
                 resolver: Resolver, handoffs: Handoffs) -> None:
        self.source = source
        self.rules = rules
        self.table = table
        self.virtual = virtual
        self.resolver = resolver
        self.handoffs = handoffs
        self.domain = rules.domain
        self.mailboxes = set(rules.mailboxes.values())
        #: mailbox -> the source login renamed to it (on the source, the name was another)
        kept = {mailbox for login, mailbox in rules.mailboxes.items() if login.lower() == mailbox}
        self.renamed_from = {mailbox: login for login, mailbox in rules.mailboxes.items()
                             if mailbox not in kept}
        self.aliases: dict[str, tuple[str, ...]] = {}
        self.forwards: dict[str, tuple[str, ...]] = {}
        self.origins: dict[str, Origin] = {}
        self.own_forward: dict[str, tuple[str, ...]] = {}  # mailbox -> its migrated ~/.forward
        #: mailboxes whose source routing the spec leaves out (DomainRouting.set_aside)
        self.set_aside: set[str] = set() if rules.import_forwards else set(self.mailboxes)
        # findings, loop breaks and mailboxes reached before the entry being mapped: its
        # own warnings say enough, its breaks and reaches which .qmail it hands mail to
        self.findings_mark = self.breaks_mark = self.reached_mark = 0
        # what unknown recipients get, to say where mail for an entry left out goes (the
        # findings of this early look are dropped: the real one in run() reports them)
        self.catch_all = domain_catch_all(rules, virtual, Resolver(resolver.directory,
                                                                   self.domain))

    def run(self) -> DomainRouting:
        """Every phase in order; each may replace what an earlier one mapped."""
        if self.rules.import_forwards:
            self._import_forwards()
        if self.rules.import_aliases:
            self._import_aliases()
        else:
            self.set_aside.update(set(self.table) & self.mailboxes)
        self._import_virtual()
        self._add_spec_aliases()
        owner_findings(self.domain, self.aliases, self.origins, self.resolver, self.catch_all)
        # a looping ~/.forward that an alias or virtusertable line replaced is no .qmail
        self.handoffs.looping -= {(self.domain, m) for m, lines in self.own_forward.items()
                                  if self.forwards.get(m) != lines}
        return DomainRouting(self.domain, self.aliases, self.forwards,
                             _alias_domains(self.rules),
                             domain_catch_all(self.rules, self.virtual, self.resolver),
                             self.origins, frozenset(self.set_aside))

    def _begin_entry(self) -> None:
        self.findings_mark = len(self.resolver.findings)
        self.breaks_mark = len(self.resolver.breaks)
        self.reached_mark = len(self.resolver.reached)

    def _import_forwards(self) -> None:
        """~/.forward first: aliases and virtusertable for the same name replace it."""
        login_of = {new: old for old, new in self.rules.mailboxes.items()}
        for mailbox in sorted(self.mailboxes):
            forward = self.source.forwards.get(login_of.get(mailbox, mailbox))
            if forward is None or not forward.targets:
                continue
            context = f"~{forward.user}/.forward"
            origin = forward.targets[0].origin
            self._begin_entry()
            lines = self.resolver.lines(forward.targets, context=context, owner=mailbox,
                                        chain=(forward.user,))
            if not lines:
                self.resolver.warn(f"{context}: nothing left to forward; mail is delivered "
                                   f"to {mailbox}'s mailbox", origin)
            if SELF in lines:  # it leads back to the mailbox: a loop sendmail broke there
                self.handoffs.looping.add((self.domain, mailbox))
            self._put(mailbox, lines, origin, "forward")
            self.own_forward[mailbox] = self.forwards.get(mailbox, ())

    def _import_aliases(self) -> None:
        for name, entry in self.table.items():
            if not _imported(name, self.rules, self.resolver, entry):
                self.set_aside.update({name} & self.mailboxes)
                continue
            if name.endswith(WILDCARD):  # sendmail's list+*: no vpopmail equivalent
                self.resolver.findings.append(wildcard_alias(
                    name, entry.origin, self.domain, catch_all=self.catch_all,
                    plus_detail=self.resolver.directory.plus_detail))
                continue
            owner = name if name in self.mailboxes else None
            self._begin_entry()
            lines = self.resolver.lines(entry.targets, context=f"alias {name}", owner=owner,
                                        chain=(name,))
            self._put(name, lines, entry.origin, "alias")

    def _import_virtual(self) -> None:
        for entry in self.virtual.values():
            if entry.domain == self.domain and not entry.catch_all:
                self._begin_entry()
                self._virtual_alias(entry)

    def _virtual_alias(self, entry: VirtualEntry) -> None:
        context = f"virtusertable {entry.key}"
        if entry.any_detail:
            self.resolver.warn(f"{context}: '+detail' keys have no vpopmail equivalent: "
                               f"{NO_PLUS}", entry.origin)
            name = entry.local or "NAME"  # +*@D, ++@D: every user's
            self._outcome(f"{name}+DETAIL", context, "mail to "
                          f"{name}+DETAIL@{self.domain} goes to the domain's "
                          f"catch-all: {self.catch_all.describe()}", entry.origin)
            return
        target = entry.target
        if isinstance(target, Address) and entry.substitutes:
            text = entry.filled(entry.local or "")
            if "%" in text:
                self.resolver.warn(f"{context}: {target} uses a substitution with no "
                                   "equivalent here", entry.origin)
                return
            target = parse_item(text, entry.origin)
        local = entry.local or ""
        owner = local if local in self.mailboxes else None
        lines = self.resolver.lines([target], context=context, owner=owner, chain=())
        self._put(local, lines, entry.origin, "virtusertable address")

    def _add_spec_aliases(self) -> None:
        """The spec's aliases, last: they replace what the source files say, also as
        the destinations of one another (``a: [b]`` with the spec's ``b``)."""
        entries = {alias.name.lower(): AliasEntry(alias.name.lower(), tuple(
            parse_item(d, alias.origin or Origin("spec", 0)) for d in alias.destinations),
            alias.origin or Origin("spec", 0)) for alias in self.rules.aliases}
        directory = replace(self.resolver.directory,
                            aliases={**self.resolver.directory.aliases, **entries})
        explicit = Resolver(directory, self.domain, self.resolver.findings,
                            self.resolver.checks, target_names=True,
                            escapes=self.resolver.escapes, breaks=self.resolver.breaks,
                            reached=self.resolver.reached)
        declared: set[str] = set()
        for alias in self.rules.aliases:
            name = alias.name.lower()
            self._refuse_spec_alias(alias, name, declared)
            declared.add(name)
            if name in self.aliases:
                explicit.note(f"alias {name!r} from the spec replaces the one imported from "
                              f"{self.origins.get(name, 'the source')}", alias.origin)
            targets = list(entries[name].targets)
            self._begin_entry()
            self._put(name, explicit.lines(targets, context=f"alias {name}", chain=(name,)),
                      alias.origin, "alias")

    def _refuse_spec_alias(self, alias: ExplicitAlias, name: str, declared: set[str]) -> None:
        """Raise RoutingError for a spec alias the domain cannot have."""
        if name in declared:
            raise RoutingError(f"alias {alias.name!r} in {self.domain} is declared twice "
                               "(alias names are case-insensitive)", origin=alias.origin)
        if name in VPOPMAIL_OWNED or name in self.mailboxes:
            raise RoutingError(f"alias {name!r} in {self.domain} would shadow the mailbox of "
                               "the same name", origin=alias.origin,
                               hint="route a mailbox's mail with its forward, not an alias")
        problem = alias_name_problem(name)
        if problem:
            raise RoutingError(f"alias {name!r} in {self.domain}: {problem}",
                               origin=alias.origin)

    def _put(self, name: str, lines: list[str], origin: Origin | None, what: str) -> None:
        """Map what ``name`` resolves to (``what``: forward, alias or virtusertable
        address): postmaster stays vpopmail's, a mailbox's name becomes its own .qmail,
        any other name an alias."""
        if SELF in lines:  # the user itself, as sendmail delivers it: its ~/.forward
            own = [OWN_MAILDIR] if what == "forward" else \
                list(self.own_forward.get(name) or (OWN_MAILDIR,))
            lines = list(dict.fromkeys(x for line in lines
                                       for x in (own if line == SELF else [line])))
        if name in VPOPMAIL_OWNED:
            _postmaster_kept(self.resolver, self.domain, f"{what} {name!r} not created",
                             lines, origin)
        elif name in self.mailboxes:
            self._put_forward(name, lines, origin, what)
        else:
            self._put_alias(name, lines, origin, what)

    def _put_forward(self, name: str, lines: list[str], origin: Origin | None,
                     what: str) -> None:
        """Mail for a mailbox's own name: its own .qmail, never a shadowing alias.
        Resolving to the mailbox itself changes nothing (its forward still applies)."""
        if not lines and what != "forward":
            how = (f"as its own .qmail says ({', '.join(self.forwards[name])})"
                   if name in self.forwards else "to its mailbox")
            self._outcome(name, what, f"{name} is a mailbox on vpopmail, so mail to "
                          f"{name}@{self.domain} is delivered {how}, where sendmail did "
                          "not deliver it", origin)
        if not lines or lines == [OWN_MAILDIR] or self.forwards.get(name) == tuple(lines):
            return  # nothing to write, or what its ~/.forward says already
        if what != "forward" and name in self.renamed_from:
            self._renamed_over(name, lines, origin, what)
            return
        longest = max(len(line.encode()) for line in lines)
        if longest > MAX_FORWARD_LINE:
            self.resolver.warn(f"{what} {name!r} cannot be the mailbox's .qmail on vpopmail: "
                               f"a line of {longest} bytes, and vdelivermail reads lines of "
                               f"at most {MAX_FORWARD_LINE} (fgets into 500 bytes: a longer "
                               "one is delivered in pieces); mail stays in its mailbox",
                               origin)
            return
        if what != "forward" and name in self.forwards:
            self.resolver.note(f"{what} {name!r} replaces the mailbox's ~/.forward, as in "
                               "sendmail (aliases are expanded before ~/.forward)", origin)
        self._keep(self.forwards, name, lines, origin)

    def _renamed_over(self, name: str, lines: list[str], origin: Origin | None,
                      what: str) -> None:
        """A source alias (or virtusertable address) named like the mailbox a user is
        renamed to: sendmail gave it mail for that name only; the mailbox's .qmail would
        take all of the renamed user's mail. Not carried over: the mailbox keeps it."""
        login = self.renamed_from[name]
        went = ", ".join(f"{name}'s mailbox" if line == OWN_MAILDIR
                         else "/dev/null" if line == DISCARD else line.removeprefix("&")
                         for line in lines)
        self.resolver.warn(
            f"{what} {name!r} is not carried over: {name} is the mailbox {login} is "
            "migrated as, and as its .qmail it would take all of that mailbox's mail "
            f"({login}'s own), where sendmail gave it only mail for {name}; mail to "
            f"{name}@{self.domain} now stays in that mailbox, where sendmail delivered it "
            f"to {went} (forward the mailbox on the target if that is wanted)", origin)

    def _put_alias(self, name: str, lines: list[str], origin: Origin | None,
                   what: str) -> None:
        problem = alias_name_problem(name) or _alias_line_problem(lines)
        if problem:
            self.resolver.warn(f"{what} {name!r} cannot be an alias on vpopmail: {problem}",
                               origin)
        elif not lines:
            self._left_out(name, origin, what)
        else:
            self._keep(self.aliases, name, lines, origin)

    def _left_out(self, name: str, origin: Origin | None, what: str) -> None:
        """Nothing on vpopmail for this name: the address falls to the catch-all. A
        virtusertable line wins over the aliases file (sendmail looks it up first), so an
        alias of the same name imported before is dropped, not kept."""
        left = f"no alias {name!r} is created"
        if what.startswith("virtusertable") and name in self.aliases:
            self.aliases.pop(name)
            was = self.origins.pop(name, None)
            left = (f"the alias {name!r}{f' from {was}' if was else ''} is dropped "
                    "(sendmail looked virtusertable up first and never reached it)")
        self._outcome(name, what, left, origin,
                      LeftOut(name, self.domain, self.catch_all.describe()))

    def _keep(self, kept: dict[str, tuple[str, ...]], name: str, lines: list[str],
              origin: Origin | None) -> None:
        """Record the lines (an alias's or a mailbox's .qmail) and where they came from."""
        kept[name] = tuple(lines)
        self._handed(name)
        if origin:
            self.origins[name] = origin

    def _outcome(self, name: str, what: str, consequence: str,
                 origin: Origin | None, left_out: LeftOut | None = None) -> None:
        """Say what happens to mail for ``name``: appended to the entry's own first
        warning (one warning per entry), else a warning of its own; ``left_out``: where
        its mail goes, said after ``consequence`` (the plan completes it)."""
        findings = self.resolver.findings
        for i in range(self.findings_mark, len(findings)):
            if findings[i].severity == "warning" and findings[i].left_out is None:
                findings[i] = replace(findings[i], text=f"{findings[i].text}; {consequence}",
                                      left_out=left_out)
                return
        findings.append(Finding("warning", f"{what} {name!r} resolves to nothing; "
                                f"{consequence}", origin, self.domain, left_out))

    def _handed(self, name: str) -> None:
        """Remember the mailboxes where the entry's alias loops were broken, and those
        it names (their ~/.forward may lead back to them)."""
        self.handoffs.record((self.domain, name), self.resolver.breaks[self.breaks_mark:],
                             self.resolver.reached[self.reached_mark:])


def _postmaster_kept(resolver: Resolver, domain: str, what: str, lines: list[str],
                     origin: Origin | None) -> None:
    """Say that routing for postmaster is not carried over (it stays vpopmail's own
    account): a note, or a caution when sendmail delivered its mail elsewhere. Mail for
    postmaster (abuse reports, bounces) that reached an admin then waits in a mailbox
    nobody may read, which the plan should show without ``-v``."""
    kept = f"postmaster@{domain}"
    went = [line.removeprefix("&") for line in lines if line != SELF]
    if went == [kept]:
        return  # what it does anyway
    if not went:
        resolver.note(f"{what}: postmaster stays vpopmail's own account", origin)
        return
    there = ("discarded it (/dev/null)" if went == [DISCARD]
             else f"delivered it to {', '.join(went)}")
    resolver.findings.append(Finding(
        "caution", f"{what}: postmaster stays vpopmail's own account, so mail to {kept} "
        f"stays in that mailbox, where sendmail {there} (read it as {kept}, or forward "
        "that mailbox on the target)", origin, domain))


def _imported(name: str, rules: DomainRules, resolver: Resolver, entry: AliasEntry) -> bool:
    origin = entry.origin
    if name in VPOPMAIL_OWNED:
        # where sendmail delivered it (an early look: its findings are dropped)
        lines = Resolver(resolver.directory, rules.domain).lines(
            entry.targets, context=f"alias {name}", chain=(name,))
        _postmaster_kept(resolver, rules.domain, f"alias {name!r} not imported", lines, origin)
        return False
    if name in MTA_INTERNAL:
        resolver.note(f"alias {name!r} not imported: qmail sends and handles bounces itself",
                      origin)
        return False
    if rules.include and not any(fnmatchcase(name, p) for p in rules.include):
        return False
    if any(fnmatchcase(name, p) for p in rules.exclude):
        return False
    if name in SYSTEM_ACCOUNTS and name not in {*rules.include, *rules.mailboxes.values()}:
        resolver.note(f"system alias {name!r} not imported into {rules.domain} (name it in "
                      "include to import it); it still resolves as a target", origin)
        return False
    return True


def _alias_domains(rules: DomainRules) -> tuple[str, ...]:
    out: list[str] = []
    for alias in rules.alias_domains:
        name = alias.lower()
        problem = domain_problem(name)
        if problem or name == rules.domain:
            raise RoutingError(f"alias domain {alias!r} of {rules.domain}: "
                               f"{problem or 'it is the domain itself'}", origin=rules.origin)
        if name not in out:
            out.append(name)
    return tuple(out)
