"""From a spec and the source's accounts to the desired state of the target. Pure.

Defaults and normalisation live here: lower-cased names, quotas in bytes, comments
from the source's gecos, passwords from shadow or the spec (:mod:`mailplan.passwords`).
Accounts that cannot be migrated as they are (empty or unverifiable hashes, names
vpopmail rejects) become :class:`Problem` entries, shown in the plan, never migrated
silently. An account the old server no longer lets in (locked, expired) is migrated
only where the target has it already, and locked there (:meth:`Desired.lock_out`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from mailplan.facts.source import Account, SourceFacts
from mailplan.names import MAX_GECOS, parse_size, user_problem
from mailplan.passwords import LOCKED, Password, own_password, resolve_password
from mailplan.secret import Secret
from mailplan.spec import JsonPath, Spec
from mailplan.text import has_control

__all__ = ["LOCKED", "PASSWORD_SET_BACK", "Catchall", "Desired", "DesiredDomain",
           "DesiredUser", "Password", "Problem", "build_desired"]


@dataclass(frozen=True)
class Catchall:
    """What mail to unknown users of a domain gets."""

    kind: str  # "bounce", "delete", "forward", "deliver_to"
    target: str = ""

    def describe(self) -> str:
        """Plan wording."""
        return {"bounce": "bounce", "delete": "delete silently",
                "forward": f"forward to {self.target}",
                "deliver_to": f"deliver to {self.target}"}[self.kind]


@dataclass(frozen=True)
class DesiredUser:
    """One mailbox the target must have."""

    name: str
    domain: str
    source: str | None
    password: Password
    quota: int | None
    comment: str
    spool: str | None = None  # INBOX mbox on the source, when not SPOOL/ACCOUNT
    folders: str | None = None  # folder directory on the source, when not HOME/<folders>


#: a plan warning that a change sets back a password the user changed on the new server
#: (:func:`mailplan.diff.diff`); ``apply --quiet`` counts them on stderr
PASSWORD_SET_BACK = "password_set_back"


@dataclass(frozen=True)
class Problem:
    """Something the plan must show and that mailplan will not do on its own.
    ``kind``: what it is, for a problem or warning that code acts on, not only shows
    (:data:`PASSWORD_SET_BACK`); None for the others."""

    domain: str
    user: str | None
    message: str
    kind: str | None = None


@dataclass
class DesiredDomain:
    """One virtual domain with its users."""

    name: str
    postmaster: Password | None
    catchall: Catchall
    users: dict[str, DesiredUser] = field(default_factory=dict)
    import_mail: bool = True
    #: users whose source account no longer lets them in on the old server (locked with
    #: ``passwd -l``, expired), each with the problem it is where the target does not
    #: have it yet (never created so). One the target has stays migrated, mail, quota,
    #: comment and routing alike, as the old server still delivers to it, and is locked
    #: there (its password: :data:`LOCKED`, why in its origin): :meth:`Desired.lock_out`
    locked: dict[str, Problem] = field(default_factory=dict)
    #: users of the spec left out for a problem of their source account (no shadow
    #: entry, an empty or unusable password), each with its source login
    held: dict[str, str] = field(default_factory=dict)
    #: of those, the ones the target has (:meth:`Desired.keep_held`): left as they are,
    #: so mail still reaches them the way the old server delivers it (aliases naming
    #: them, their ~/.forward)
    kept: dict[str, str] = field(default_factory=dict)

    def routed(self) -> dict[str, str]:
        """The mailboxes routing delivers to, by source login: the users, then the
        users held back that the target keeps."""
        return {**{(u.source or u.name): u.name for u in self.users.values()},
                **{login: name for name, login in sorted(self.kept.items())}}

    def postmaster_origin(self) -> str:
        """Where a new domain's postmaster password comes from, as the plan says it."""
        if self.postmaster is not None:
            return self.postmaster.origin
        # vadddomain gets a random one (commands.create_domain) that is never shown
        return (f"random, never shown: nobody can log in as postmaster@{self.name} until "
                "the spec sets postmaster_password")


@dataclass
class Desired:
    """The whole desired target state."""

    domains: dict[str, DesiredDomain]
    problems: list[Problem]
    # change id -> routing action (mailplan.routing.integrate), filled in by make_plan
    routing: dict[str, Any] = field(default_factory=dict)
    #: (domain, user) -> its source login (or name): users left out once the target was
    #: read (:meth:`withhold`)
    withheld: dict[tuple[str, str], str] = field(default_factory=dict)
    #: the source's account names, lower-cased (None: not read), so that the plan can
    #: say a user it no longer migrates has left the old server's passwd
    source_accounts: frozenset[str] | None = None

    def lock_out(self, there: Collection[tuple[str, str]]) -> None:
        """Leave out the users the old server locks out that the target does not have
        (``there``: its ``(domain, user)`` pairs), each with its problem: a locked account
        is never created. Those it has stay, to be locked there."""
        self.withhold([problem for name, dom in sorted(self.domains.items())
                       for user, problem in sorted(dom.locked.items())
                       if (name, user) not in there])

    def keep_held(self, there: Collection[tuple[str, str]]) -> None:
        """Of the users held back by a problem of their source account, those the target
        has (``there``: its ``(domain, user)`` pairs) are kept for routing: the plan
        leaves them as they are (:data:`mailplan.diff.HELD`), and the old server still
        delivers to them."""
        for name, dom in self.domains.items():
            dom.kept = {user: login for user, login in dom.held.items()
                        if (name, user) in there}

    def withhold(self, problems: list[Problem], created: Collection[str] = ()) -> None:
        """Leave out the users these problems are about (found once the target was
        read: :mod:`mailplan.userdirs`) and list the problems with the others.

        A domain the plan creates (``created``) whose unknown recipients were to be
        delivered to a user left out bounces them instead: vadddomain's own catch-all
        would delete them silently. An existing domain's catch-all is left as it is
        (:func:`mailplan.diff.diff` says so)."""
        for problem in problems:
            if problem.user is not None:
                user = self.domains[problem.domain].users.pop(problem.user, None)
                if user is not None:
                    self.withheld[(problem.domain, problem.user)] = user.source or user.name
        self.problems.extend(problems)
        for name in sorted(set(created) & set(self.domains)):
            dom = self.domains[name]
            if dom.catchall.kind == "deliver_to" and (name, dom.catchall.target) in self.withheld:
                self.problems.append(Problem(name, None, (
                    f"unknown recipients are to be delivered to {dom.catchall.target!r}, which "
                    "is not created (see its problem): they bounce instead (vadddomain's "
                    "default would delete them silently)")))
                dom.catchall = Catchall("bounce")


def _source_password(account: Account, domain: str, name: str) -> Password | Problem:
    if account.password is None or account.hash_info is None:
        return Problem(domain, name, f"source account {account.name!r} has no shadow entry")
    if not account.hash_info.usable:
        return Problem(domain, name, f"password of source account {account.name!r} cannot "
                       f"be migrated ({account.password_at}): "
                       f"{account.hash_info.detail}; not migrated (give it a password in the "
                       "spec, or leave it out)")
    if account.expired:
        return Problem(domain, name, f"{_shut_out(account)}; not migrated, as its password "
                       "would let it in again on the new one (give it a password in the spec "
                       "to migrate it anyway, or leave it out)")
    where = str(account.password_at).split(" ", 1)[0]  # shadow, or passwd's own field
    return Password("hash", account.password, f"{where} ({account.hash_info.detail})")


def _shut_out(account: Account) -> str | None:
    """Why the old server no longer lets this account in (locked, expired), or None
    (no password, or one vpopmail cannot verify: it may still log in there)."""
    if account.hash_info is not None and account.hash_info.status == "locked":
        return f"source account {account.name!r} is locked ({account.password_at})"
    if account.expired:
        return (f"source account {account.name!r} cannot log in on the old server "
                f"(shadow line {account.shadow_line}): {account.expired}")
    return None


def _gecos_problem(source: SourceFacts, account: Account, domain: str,
                   user: str | None = None) -> Problem | None:
    """A Problem when the account's full name, the mailbox's comment, holds a control
    character (a NUL cannot even be passed to vadduser)."""
    if not has_control(account.full_name):
        return None
    return Problem(domain, user or account.name,
                   f"{source.host}:{source.passwd_path}:{account.line}: the full name (gecos) "
                   f"of source account {account.name!r} contains a control character; not "
                   "migrated (list it under users: with a comment: to migrate it)")


def _comment(account: Account | None, name: str) -> str:
    """The source's full name (or the user's name) cut to vpopmail's 64 bytes, on a
    character's boundary."""
    text = (account.full_name if account else "") or name
    return text.encode()[:MAX_GECOS].decode("utf-8", "ignore")


def build_desired(spec: Spec, source: SourceFacts) -> Desired:
    """The desired state for every domain of the spec."""
    _no_missing_accounts(spec, source)
    domains: dict[str, DesiredDomain] = {}
    problems: list[Problem] = []
    for key, body in spec.data["domains"].items():
        body = body or {}
        name = key.lower()
        where: JsonPath = ("domains", key)
        pm = body.get("postmaster_password")
        postmaster = resolve_password(spec, pm, (*where, "postmaster_password")) if pm else None
        domain = DesiredDomain(name, postmaster, _catchall(body.get("unknown_recipients")),
                               import_mail=bool(body.get("import_mail", True)))
        default_quota = parse_size(body.get("default_quota", "unlimited"))
        # the accounts users are made of are not imported a second time by the rule; one
        # whose name (lower-cased) a user of the spec takes is not migrated, and the plan
        # says so
        users = body.get("users", [])
        renamed = {u["name"].lower(): u["from"] for u in users
                   if u.get("from", u["name"]).lower() != u["name"].lower()}
        sources = {u.get("from", u["name"]).lower(): (u.get("from", u["name"]), u["name"])
                   for u in users}
        # by an account of the rule, migrated or a problem: lower-cased name -> account
        taken: dict[str, str] = {}
        for account in _imported(body.get("import"), source,
                                 {exact for exact, _user in sources.values()}):
            uname = account.name.lower()
            if uname in sources:  # another account, the same name once lower-cased
                other, user = sources[uname]
                problems.append(Problem(
                    name, account.name, f"source account {account.name!r} is not migrated: "
                    f"vpopmail names are lower-case, and the spec migrates source account "
                    f"{other!r} (as user {user.lower()!r}); give this one a user of its own "
                    f"(another name, from: {account.name}) or exclude it from the import "
                    "rule"))
                continue
            if uname == "postmaster":  # vadddomain makes it; its mail is not left silently
                problems.append(Problem(
                    name, account.name, f"source account {account.name!r} is not migrated: "
                    "postmaster is vpopmail's own account of the domain, made with it; to "
                    f"import its mail, give it a user of another name (from: {account.name}),"
                    " or exclude it from the import rule"))
                continue
            if uname in renamed:
                problems.append(Problem(
                    name, account.name, f"source account {account.name!r} is not migrated: "
                    f"the spec's user {uname!r} is made from source account "
                    f"{renamed[uname]!r}; give this one a user of its own (another name, "
                    f"from: {account.name}) or exclude it from the import rule"))
                continue
            why = user_problem(uname)
            # taken even by one not migrated (locked, say): the mailbox of that name,
            # migrated from it before, must not go to the other account
            if why is None and uname in taken:
                why = (f"source account {taken[uname]!r} is also {uname!r} once lower-cased, "
                       f"and is migrated as {uname!r} ({_WINNER})")
            if why:
                problems.append(Problem(name, account.name, "source account name cannot be "
                                        f"a vpopmail user: {why}; not migrated"))
                continue
            taken[uname] = account.name
            if gecos := _gecos_problem(source, account, name):
                problems.append(gecos)
                continue
            _add(domain, problems, uname, account, None, default_quota, None)
        for i, user in enumerate(body.get("users", [])):
            uname = user["name"].lower()
            src_name = user.get("from", user["name"])
            account = source.accounts.get(src_name)
            uwhere = (*where, "users", i)
            password = None
            if own_password(user):
                password = resolve_password(spec, user["password"], (*uwhere, "password"))
            elif account.password is None:  # (account: _no_missing_accounts)
                raise spec.error(
                    f"user {user['name']!r} migrates source account {src_name!r} (passwd line "
                    f"{account.line}), which has no entry in the shadow file "
                    f"({source.host}:{source.shadow_path})",
                    (*uwhere, "from" if "from" in user else "name"),
                    hint="give the user a password in the spec, or add the account's line "
                    "to the shadow file on the old server")
            if account is not None and "comment" not in user and \
                    (gecos := _gecos_problem(source, account, name, uname)):
                problems.append(gecos)
                continue
            quota = parse_size(user["quota"]) if "quota" in user else default_quota
            _add(domain, problems, uname, account, password, quota, user.get("comment"),
                 user.get("spool"), user.get("folders"))
        if domain.catchall.kind == "deliver_to" and domain.catchall.target not in domain.users:
            raise spec.error(f"unknown_recipients delivers to {domain.catchall.target!r}, "
                             "which is not a user of this domain",
                             (*where, "unknown_recipients"))
        domains[name] = domain
    return Desired(domains, problems,
                   source_accounts=frozenset(n.lower() for n in source.accounts))


def _no_missing_accounts(spec: Spec, source: SourceFacts) -> None:
    """Refuse a spec whose users name accounts the source does not have (and give no
    password of their own), all of them in one error: at the first, naming the others'
    lines, so that an admin mends every one before the next run."""
    missing: list[tuple[str, JsonPath]] = []
    for key, body in spec.data["domains"].items():
        for i, user in enumerate((body or {}).get("users", [])):
            src_name = user.get("from", user["name"])
            if src_name not in source.accounts and not own_password(user):
                missing.append((src_name, ("domains", key, "users", i,
                                           "from" if "from" in user else "name")))
    if not missing:
        return
    (first, where), *more = missing
    nor = "; nor " + ", ".join(f"{name!r} (line {spec.mark(path)[0]})"
                               for name, path in more) if more else ""
    raise spec.error(f"there is no account {first!r} on the source "
                     f"({source.host}:{source.passwd_path}){nor}", where,
                     hint="fix the name, add from: OLDNAME, or give a password")


def _add(domain: DesiredDomain, problems: list[Problem], name: str, account: Account | None,
         password: Password | None, quota: int | None, comment: str | None,
         spool: str | None = None, folders: str | None = None) -> None:
    if password is None:
        assert account is not None
        resolved = _source_password(account, domain.name, name)
        if isinstance(resolved, Problem):
            why = _shut_out(account)
            if why is None:
                problems.append(resolved)
                domain.users.pop(name, None)
                domain.held[name] = account.name
                return
            domain.locked[name] = resolved  # a problem only where the target lacks it
            password = Password(LOCKED, Secret(""), why)
        else:
            password = resolved
    domain.users[name] = DesiredUser(
        name, domain.name, account.name if account else None, password, quota,
        comment if comment is not None else _comment(account, name), spool, folders)


#: which of two source accounts one name once lower-cased (vpopmail's are) is migrated
#: under it: the one whose name it is, as sendmail's local mailer (no F=u) lower-cases
#: the address and delivered NAME@ to that account; else the lower uid, the older
#: account most often: an account made later never takes over a user migrated before
_WINNER = ("the one whose name it is: sendmail delivered mail for that name to it; "
           "else the lower uid")


def _imported(rule: dict[str, Any] | None, source: SourceFacts,
              made: set[str]) -> list[Account]:
    if rule is None:
        return []
    lo, hi = rule.get("uid_min", 1000), rule.get("uid_max", 59999)
    include = set(rule["include"]) if "include" in rule else None
    exclude = set(rule.get("exclude", []))
    out = []
    # of accounts one name once lower-cased, the first takes it (_WINNER)
    for account in sorted(source.accounts.values(), key=lambda a: (
            a.name.lower(), a.name != a.name.lower(), a.uid, a.name)):
        if not lo <= account.uid <= hi or account.name in exclude:
            continue
        if include is not None and account.name not in include:
            continue
        if account.name in made:
            continue
        out.append(account)
    return out


def _catchall(value: Any) -> Catchall:
    if value is None or value == "bounce":
        return Catchall("bounce")
    if value == "delete":
        return Catchall("delete")
    if "forward" in value:
        return Catchall("forward", value["forward"])
    return Catchall("deliver_to", value["deliver_to"].lower())
