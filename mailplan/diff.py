"""Desired state + observed target state -> the list of changes. Pure: no I/O.

Ordering is the order apply runs them: domains, users, updates, catch-alls, and last
the deletions (users before their domain). Everything that needs no change is
explained as a :class:`~mailplan.plan.Noop`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailplan.catchall import catchall_line, describe_catchall
from mailplan.desired import (
    LOCKED,
    PASSWORD_SET_BACK,
    Desired,
    DesiredDomain,
    DesiredUser,
    Password,
    Problem,
)
from mailplan.facts.hashes import classify, verify
from mailplan.facts.vpopmail import TargetDomain, TargetFacts, TargetUser
from mailplan.names import MAX_HASH, human_size, quota_field
from mailplan.plan import PRUNE_NOTE, Change, Noop, PlanPart
from mailplan.userdirs import LISTING_STOPS, MAX_VPASSWD_LINE, LineBound, hash_bytes


@dataclass(frozen=True)
class Managed:
    """What the state file says mailplan created (only those may be pruned)."""

    domains: frozenset[str] = frozenset()
    users: frozenset[tuple[str, str]] = frozenset()  # (domain, user)
    #: domains mailplan made whose postmaster password may still be vadddomain's random
    #: one: their creation began and was not recorded (``pending``), or was recorded only
    #: by finding the domain afterwards (``postmaster_unset``). Under ``create_only``
    #: they get the spec's password; every other domain keeps what it has
    postmaster_unset: frozenset[str] = frozenset()
    pending: frozenset[str] = frozenset()
    #: users mailplan made whose password may still be the random one vadduser gives a
    #: user before it stores the hash (``vadduser -e``): found after a cut between the
    #: two, or their creation began and was not recorded. Under ``create_only`` they get
    #: the source's (or spec's) password; every other user keeps what it has
    users_unset: frozenset[tuple[str, str]] = frozenset()
    #: ``(domain, user, fingerprint)``: the password mailplan last set on a user it made
    #: (keyed as :func:`_fingerprint`); a user's that differs on the target while the
    #: spec's is still this one was changed on the new server since
    passwords_set: frozenset[tuple[str, str, str]] = frozenset()


@dataclass
class Diff(PlanPart):
    """The outcome of comparing desired and observed state."""

    left_alone: list[Noop] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)  # Plan.warnings


def password_matches(password: Password, stored: TargetUser) -> bool:
    """Whether the target already has this password (for :data:`LOCKED`: any locked
    one, a ``!`` or ``*`` before whatever hash is there)."""
    if password.kind == LOCKED:
        return classify(stored.password.reveal()).status == "locked"
    if password.kind == "hash":
        return password.value == stored.password
    return verify(password.value.reveal(), stored.password.reveal()) is True


def _describe_user(user: DesiredUser) -> str:
    return (f"quota {human_size(user.quota)}, comment {user.comment!r}, "
            f"password from {user.password.origin}")


def _fingerprint(password: Password | None, key: bytes) -> str:
    return password.value.fingerprint(key) if password else ""


def diff(desired: Desired, observed: TargetFacts, vpopmail_dir: str,
         managed: Managed = Managed(), key: bytes = b"", *, keep_passwords: bool = False
         ) -> Diff:
    """Compare and return the changes (see the module docstring for their order).
    ``key``: what password fingerprints are keyed with (:func:`Secret.fingerprint`);
    ``keep_passwords`` (the spec's ``target.passwords: create_only``): a password that
    differs on an existing user or postmaster is kept, not changed."""
    out = Diff(problems=list(desired.problems))
    deletes: list[Change] = []
    catchalls: list[Change] = []
    for name in sorted(desired.domains):
        want = desired.domains[name]
        if name in observed.alias_of:
            out.problems.append(Problem(name, None, "exists on the target as an alias of "
                                        f"{observed.alias_of[name]}; not touched"))
            continue
        have = observed.domains.get(name)
        if have is None:
            pm = want.postmaster_origin()
            out.changes.append(Change("create", "domain", name, after=(
                f"postmaster password {pm}; unknown recipients: {want.catchall.describe()}"),
                sensitive=want.postmaster is not None,
                fingerprint=_fingerprint(want.postmaster, key)))
            for uname in sorted(want.users):
                user = want.users[uname]
                if _never_created(want, uname, out):
                    continue
                out.changes.append(Change("create", "user", name, uname,
                                          after=_describe_user(user), sensitive=True,
                                          fingerprint=_fingerprint(user.password, key)))
            if missing := _no_mailbox(want, None):
                out.problems.append(missing)
            elif want.catchall.kind != "delete":
                catchalls.append(Change("update", "catchall", name,
                                        before="delete silently (vadddomain's default)",
                                        after=want.catchall.describe()))
            continue
        _diff_domain(want, have, vpopmail_dir, managed, out, catchalls, deletes, key,
                     keep_passwords, desired.source_accounts)
    for name in sorted(managed.domains - set(desired.domains)):
        have = observed.domains.get(name)
        if have is None:
            continue
        if (kept := _kept_domain(name, have, managed)) is not None:
            out.problems.append(kept)
            continue
        deletes.append(Change("delete", "domain", name, reason="created by mailplan, "
                              "no longer in the spec; vdeldomain deletes its users' Maildirs, "
                              f"mail included {PRUNE_NOTE}"))
    out.changes.extend(catchalls)
    out.changes.extend(deletes)
    return out


def _kept_domain(name: str, have: TargetDomain, managed: Managed) -> Problem | None:
    """Why a domain mailplan made, no longer in the spec, is not deleted (None: it is):
    vdeldomain takes every account with it, so never one holding accounts mailplan did
    not create; and it refuses (exit 0) a domain alias domains point at."""
    foreign = sorted(u for u in set(have.users) - {"postmaster"}
                     if (name, u) not in managed.users)
    if foreign:
        return Problem(name, None, (
            "created by mailplan, no longer in the spec, but it holds "
            f"{len(foreign)} account(s) mailplan did not create ({', '.join(foreign[:5])}"
            f"{', ...' if len(foreign) > 5 else ''}): not deleted, even with --prune "
            "(vdeldomain would delete them and their mail); put the domain back in the "
            "spec, or move those accounts and delete it by hand"))
    if have.aliases:
        return Problem(name, None, (
            "created by mailplan, no longer in the spec, but alias domains point at it "
            f"({', '.join(have.aliases[:5])}{', ...' if len(have.aliases) > 5 else ''}): "
            "not deleted, even with --prune (vdeldomain refuses such a domain, and with -f "
            "deletes the alias domains too); put the domain back in the spec, or remove "
            "them by hand (vdeldomain ALIAS) and apply again"))
    return None


def _diff_domain(want: DesiredDomain, have: TargetDomain, vpopmail_dir: str, managed: Managed,
                 out: Diff, catchalls: list[Change], deletes: list[Change],
                 key: bytes, keep_passwords: bool,
                 source_accounts: frozenset[str] | None = None) -> None:
    name = want.name
    pm = have.users.get("postmaster")
    if want.postmaster and pm and not password_matches(want.postmaster, pm):
        unset = name in managed.pending or name in managed.postmaster_unset
        if keep_passwords and not unset:
            out.noops.append(Noop(name, "postmaster", KEPT))
        elif _fits(out, (name, "postmaster"), LineBound(pm), "password", "hashed",
                   hash_bytes(want.postmaster), "give it a password whose hash is shorter"):
            out.changes.append(Change("update", "password", name, "postmaster", "(sensitive)",
                                      "(sensitive)", True, _fingerprint(want.postmaster, key),
                                      f"from {want.postmaster.origin}"))
    for uname in sorted(want.users):
        user = want.users[uname]
        stored = have.users.get(uname)
        if stored is None and _never_created(want, uname, out):
            continue
        if stored is None:
            out.changes.append(Change("create", "user", name, uname, after=_describe_user(user),
                                      sensitive=True, fingerprint=_fingerprint(user.password, key)))
            continue
        _diff_user(user, stored, out, key,
                   keep_passwords and (name, uname) not in managed.users_unset,
                   (name, uname, _fingerprint(user.password, key)) in managed.passwords_set)
    # the spec still names a user whose source account has a problem now (locked,
    # expired, ...): not migrated, and not deleted either, mail and all
    named = {p.user.lower() for p in out.problems if p.domain == name and p.user}
    for uname in sorted(set(have.users) - set(want.users) - {"postmaster"}):
        if uname in named:
            out.noops.append(Noop(name, uname, HELD))
        elif (name, uname) in managed.users:
            deletes.append(Change("delete", "user", name, uname, reason=(
                f"{_why_gone(uname, source_accounts)}; vdeluser deletes its Maildir, mail "
                f"included {PRUNE_NOTE}")))
        else:
            out.left_alone.append(Noop(name, uname, "on the target but not in the spec; "
                                       "not created by mailplan, left alone"))
    user_dir = have.users[want.catchall.target].dir if (
        want.catchall.kind == "deliver_to" and want.catchall.target in have.users) else None
    line = catchall_line(want.catchall, vpopmail_dir, user_dir)
    if missing := _no_mailbox(want, have):
        out.problems.append(missing)
    elif line is None or have.catchall != line:
        catchalls.append(Change("update", "catchall", name,
                                before=describe_catchall(have.catchall, vpopmail_dir),
                                after=want.catchall.describe()))
    else:
        out.noops.append(Noop(name, None, f"unknown recipients already: "
                              f"{want.catchall.describe()}"))


def _never_created(want: DesiredDomain, uname: str, out: Diff) -> bool:
    """Whether the user is one the old server locks out, which is never created (the
    plan leaves it out before anything else reads the users, in
    :func:`mailplan.userdirs.withhold_unmakeable`; a diff of a desired state that did not
    is no different): then its problem is said."""
    if uname not in want.locked:
        return False
    out.problems.append(want.locked[uname])
    return True


def _why_gone(uname: str, source_accounts: frozenset[str] | None) -> str:
    """Why a user mailplan created is no longer migrated: the spec's own change, or (the
    spec unchanged, seen in a daily apply) its account gone from the old server's passwd.
    The state does not record a user's source account: a renamed user (``from:``) taken
    out of the spec has no account of its name either, so both causes are named."""
    if source_accounts is not None and uname not in source_accounts:
        return (f"created by mailplan, no longer migrated: no user of the spec and no "
                f"account in the source's passwd is named {uname!r} (an account removed on "
                "the old server, or a user taken out of the spec)")
    return "created by mailplan, no longer in the spec"


def _no_mailbox(want: DesiredDomain, have: TargetDomain | None) -> Problem | None:
    """A problem when the catch-all delivers to a user the target does not have and
    the plan does not create (one withheld: :meth:`Desired.withhold`): apply could not
    find the directory to deliver to."""
    target = want.catchall.target
    if want.catchall.kind != "deliver_to" or target in want.users or (
            have is not None and target in have.users):
        return None
    return Problem(want.name, None, f"unknown recipients are to be delivered to {target!r}, "
                   "which is not created (see its problem): the catch-all is not changed")


#: why a user of the target the spec names, held back by a problem, is left as it is
HELD = ("the spec names it, but its source account has a problem (see Problems): left "
        "as it is, never deleted for it")
#: why a password that differs is not changed
KEPT = "password differs from the spec's; kept (target.passwords: create_only)"
#: what a password change adds, and its warning (PASSWORD_SET_BACK), when changed there
SET_BACK = ("; the new server's password was changed there since mailplan set this one "
            "(the old server's is the same): apply sets the old one back; "
            "target.passwords: create_only in the spec keeps the new server's")
SET_BACK_WARNING = ("password changed on the new server since mailplan set it: apply sets "
                    "the old server's back (target.passwords: create_only keeps the new one)")


def _set_back(out: Diff, where: tuple[str, str], set_before: bool) -> str:
    """A password change's words, and warning, when it sets one changed there back."""
    out.warnings += [Problem(*where, SET_BACK_WARNING, PASSWORD_SET_BACK)] if set_before else []
    return SET_BACK if set_before else ""


def _diff_user(user: DesiredUser, stored: TargetUser, out: Diff, key: bytes,
               keep_passwords: bool, set_before: bool = False) -> None:
    """The user's changes (password or lock, quota, comment) in the order apply runs
    them: those that make their field shorter first, so that each later one is counted
    with them done (apply stops at a step that fails); each taken only where the user's
    vpasswd line stays one ``vuserinfo -D`` lists (:class:`LineBound`: else every later
    plan would stop at that listing); a change that would not is a problem, and not
    made. ``set_before``: mailplan set this very password on the user last (the state
    says so): one that differs now was changed on the new server, and the change says
    so."""
    same: list[str] = []
    bound, where = LineBound(stored), (user.domain, user.name)
    want_quota = quota_field(user.quota)

    def password() -> None:
        if password_matches(user.password, stored):
            same.append("password")
        elif user.password.kind == LOCKED:
            _lock(user, stored, bound, out, keep_passwords)
        elif keep_passwords:
            out.noops.append(Noop(user.domain, user.name, KEPT))
        elif _fits(out, where, bound, "password", "hashed", hash_bytes(user.password),
                   f"a hash of {hash_bytes(user.password)} bytes ({user.password.origin}); "
                   "give it a shorter comment: in the spec, or a password whose hash is "
                   "shorter"):
            out.changes.append(Change("update", "password", user.domain, user.name,
                                      "(sensitive)", "(sensitive)", True,
                                      _fingerprint(user.password, key),
                                      f"from {user.password.origin}"
                                      + _set_back(out, where, set_before)))

    def quota() -> None:
        if stored.quota == want_quota:
            same.append("quota")
        elif _fits(out, where, bound, f"quota not changed to {want_quota}", "quota",
                   want_quota, "give it a shorter comment: in the spec"):
            out.changes.append(Change("update", "quota", user.domain, user.name,
                                      _shown_quota(stored.quota),
                                      f"{want_quota} ({human_size(user.quota)})"))

    def comment() -> None:
        if stored.comment == user.comment:
            same.append("comment")
        elif _fits(out, where, bound, f"comment not changed to {user.comment!r}", "gecos",
                   user.comment, "give it a shorter comment: in the spec"):
            out.changes.append(Change("update", "comment", user.domain, user.name,
                                      repr(stored.comment), repr(user.comment)))

    shorter = {password: _new_hash_bytes(user, stored) < _bytes(stored.password.reveal()),
               quota: _bytes(want_quota) < _bytes(stored.quota),
               comment: _bytes(user.comment) < _bytes(stored.comment)}
    for step in sorted(shorter, key=lambda s: not shorter[s]):  # stable: the rest as listed
        step()
    if len(same) == 3 and user.password.kind == LOCKED:
        why = user.password.origin
        out.noops.append(Noop(user.domain, user.name, f"user exists, locked ({why}); quota "
                              "and comment match"))
    elif len(same) == 3:
        out.noops.append(Noop(user.domain, user.name, "user exists; password, quota and "
                              "comment match"))


def _bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def _new_hash_bytes(user: DesiredUser, stored: TargetUser) -> int:
    """How long the password field gets with the user's password change: a lock puts a
    '!' before the hash (or, where that would not be stored, '!' alone: still after
    the shorter fields, which can only help it)."""
    if user.password.kind == LOCKED:
        return 1 + _bytes(stored.password.reveal())
    return hash_bytes(user.password)


def _shown_quota(stored: str) -> str:
    """A quota as vpopmail stores it, with its size as the plan writes sizes where it is
    one mailplan writes (``1073741824S (1G)``, ``NOQUOTA (unlimited)``); else as stored
    (a maildir quota with a message count, set by hand)."""
    if stored == quota_field(None):
        return f"{stored} (unlimited)"
    size = stored[:-1]
    if stored.endswith("S") and size.isdigit() and size.isascii():
        return f"{stored} ({human_size(int(size))})"
    return stored


def _fits(out: Diff, where: tuple[str, str], bound: LineBound, what: str, field: str,
          value: str | int, hint: str) -> bool:
    """Whether the change of ``field`` keeps the user's vpasswd line listable (then it is
    taken); if not, a problem of the user ``where`` (domain, name) says so: ``what`` was
    not changed, and ``hint``."""
    line = bound.take(field, value)
    if line <= MAX_VPASSWD_LINE:
        return True
    what = "password not changed" if what == "password" else what
    out.problems.append(Problem(*where, (
        f"{what}: its vpasswd line would be up to {line} bytes long; {LISTING_STOPS} "
        f"({hint})")))
    return False


def _lock(user: DesiredUser, stored: TargetUser, bound: LineBound, out: Diff,
          keep_passwords: bool) -> None:
    """A user the old server no longer lets in (``passwd -l`` after the migration, an
    expiry) whose password here still would: locked, unless the spec keeps passwords
    (then it is a problem to see to by hand). A '!' is put before its hash, as passwd -l
    does, or stored alone where that would be longer than vpopmail stores or than its
    vpasswd line may be (:func:`mailplan.commands.lock_user` decides the same): locked
    all the same, the hash dropped. Where even that line is too long, a problem says the
    account still lets its user in."""
    why = user.password.origin
    if keep_passwords:  # verify fails it too (verify_model.check_account)
        out.problems.append(Problem(user.domain, user.name, (
            f"{why}, but its password here still lets it in: not locked here "
            "(target.passwords: create_only); lock it by hand (vmoduser -e with '!' "
            "before its hash)")))
        return
    kept = 1 + len(stored.password.reveal().encode("utf-8", "surrogateescape"))
    if kept <= MAX_HASH and (line := bound.take("hashed", kept)) <= MAX_VPASSWD_LINE:
        how = "the way passwd -l does, a '!' put before its hash"
    elif (line_alone := bound.take("hashed", 1)) <= MAX_VPASSWD_LINE:
        room = (f"its vpasswd line would be {line} bytes long ({LISTING_STOPS})"
                if kept <= MAX_HASH else f"its hash fills the {MAX_HASH} bytes vpopmail "
                "stores")
        how = (f"with a '!' alone, its hash dropped: with a '!' before the hash {room}; to "
               "let it in again, give it a password")
    else:
        out.problems.append(Problem(user.domain, user.name, (
            f"{why}, but its password here STILL LETS IT IN: not locked here, as even a "
            f"'!' alone would make its vpasswd line {line_alone} bytes long; "
            f"{LISTING_STOPS}. Shorten its comment (vmoduser -c) and apply again, or lock "
            "it by hand")))
        return
    out.changes.append(Change("update", "lock", user.domain, user.name, "login allowed",
                              "locked", reason=f"{why}: locked here {how} (its mail is "
                              "kept, and still migrated)"))
