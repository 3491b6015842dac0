"""Carry out one change on the target through vpopmail's tools, and check it took effect.

vpopmail's exit status cannot be trusted alone: several failures exit 0, errors are
printed on stdout, and exit codes are negative error numbers modulo 256
(reference/vpopmail/17-exit-codes-summary.md). So every step runs its command(s), then
reads the result back with vuserinfo / vdominfo / cat and compares it with what was
wanted. A step that did not take effect raises :class:`~mailplan.errors.StepFailed`
naming the host, the step and vpopmail's own words.

Commands are built from quoted parts (:class:`~mailplan.shell.Cmd`). Clear passwords
are turned into SHA-512 crypt hashes here (what vpopmail itself stores), except the
postmaster password that vadddomain reads from stdin through ``printf``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailplan.catchall import catchall_line
from mailplan.connectors.base import CommandResult
from mailplan.desired import Desired, DesiredUser, Password
from mailplan.diff import password_matches
from mailplan.errors import CommandTimeout, StepFailed
from mailplan.facts.hashes import classify, make_hash
from mailplan.facts.vpopmail import HASH_CHARS, parse_vuserinfo, user_from_fields
from mailplan.names import MAX_HASH, quota_field
from mailplan.plan import Change
from mailplan.remote import ShellSession
from mailplan.routing.execute import routing_claim
from mailplan.routing.integrate import ROUTING_KINDS, execute_routing
from mailplan.secret import Secret, mask_output
from mailplan.shell import Cmd
from mailplan.userdirs import MAX_VPASSWD_LINE, vpasswd_line_length

WRITE_FILE = ('printf "%s" "$1" > "$2.mailplan-tmp" && chown --reference="$3" "$2.mailplan-tmp"'
              ' && chmod 600 "$2.mailplan-tmp" && mv -f "$2.mailplan-tmp" "$2"')


@dataclass
class Context:
    """What steps need besides the change: the desired state and where vpopmail lives."""

    desired: Desired
    vpopmail_dir: str
    host: str

    def tool(self, name: str) -> str:
        """Absolute path of a vpopmail program."""
        return f"{self.vpopmail_dir.rstrip('/')}/bin/{name}"


def _words(res: CommandResult, secrets_: list[Secret]) -> str:
    text = (res.stdout.decode("utf-8", "replace") + "\n" + res.stderr_text).strip()
    for secret in secrets_:
        if secret.reveal():
            text = text.replace(secret.reveal(), "(sensitive)")
    text = mask_output(text)
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("Please enter")]
    errors = [ln for ln in lines if ln.startswith("Error")]
    return (errors or lines or [f"exit {res.returncode}, no output"])[0][:300]


class _Runner:
    """Runs the commands of one step and turns failures into StepFailed."""

    def __init__(self, session: ShellSession, ctx: Context, change: Change) -> None:
        self.session, self.ctx, self.change = session, ctx, change
        self.secrets: list[Secret] = []

    def fail(self, message: str) -> StepFailed:
        return StepFailed(message, host=self.ctx.host,
                          step=f"{self.change.symbol} {self.change.kind} {self.change.address}")

    def run(self, cmd: Cmd, *, ok_codes: tuple[int, ...] = (0,),
            unlimited: bool = False) -> CommandResult:
        res = self.session.run(cmd, unlimited=unlimited)
        out = res.stdout.decode("utf-8", "replace")
        if res.returncode not in ok_codes or out.startswith("Error"):
            program = str(cmd.argv[0]).rsplit("/", 1)[-1]
            raise self.fail(f"{program} failed (exit {res.returncode}): "
                            f"{_words(res, self.secrets)}")
        return res

    def read_user(self, address: str) -> Any:
        res = self.session.run(Cmd.of(self.ctx.tool("vuserinfo"), address).render())
        if res.returncode != 0:
            raise self.fail(f"after the change vuserinfo does not find {address}: "
                            f"{_words(res, self.secrets)}")
        entries = parse_vuserinfo(res.stdout.decode("utf-8", "replace"))
        if len(entries) != 1:
            raise self.fail(f"cannot read {address} back with vuserinfo")
        return user_from_fields(entries[0])

    def domain_dir(self, domain: str) -> str:
        res = self.session.run(Cmd.of(self.ctx.tool("vdominfo"), "-n", "-d", domain).render())
        lines = res.stdout.decode("utf-8", "replace").split("\n")
        if res.returncode != 0 or len(lines) < 2 or lines[0] != domain:
            raise self.fail(f"vdominfo does not report domain {domain}: "
                            f"{_words(res, self.secrets)}")
        return lines[1]


def _hash_for(password: Password) -> Secret:
    if password.kind == "hash":
        return password.value
    return Secret(make_hash(password.value.reveal()))


def _user(ctx: Context, change: Change) -> DesiredUser:
    return ctx.desired.domains[change.domain].users[str(change.user)]


def _check_user(r: _Runner, user: DesiredUser, *, password: Password | None,
                fields: tuple[str, ...] = ("quota", "comment"), made: bool = False) -> None:
    """Read the account back: the password (when given) and ``fields`` must hold what
    the step set. A step checks only what it set: a user whose quota and comment both
    change gets two steps, and the second is not yet new when the first is checked.
    ``made``: the step created the user, so one found with a wrong value is still its
    (:attr:`StepFailed.made`)."""
    stored = r.read_user(f"{user.name}@{user.domain}")
    wrong = []
    if password is not None and not password_matches(password, stored):
        wrong.append("password")
    if "quota" in fields and stored.quota != quota_field(user.quota):
        wrong.append(f"quota (is {stored.quota})")
    if "comment" in fields and stored.comment != user.comment:
        wrong.append(f"comment (is {stored.comment!r})")
    if wrong:
        failed = r.fail("vpopmail reported success but the user's " + ", ".join(wrong) +
                        " did not take the new value")
        failed.made = made
        raise failed


def create_domain(r: _Runner, change: Change) -> dict[str, Any]:
    """vadddomain with the postmaster password on stdin; then a hash if one was given."""
    want = r.ctx.desired.domains[change.domain]
    pm = want.postmaster
    clear = pm.value if pm and pm.kind == "clear" else Secret(secrets.token_urlsafe(18))
    r.secrets += [clear] + ([pm.value] if pm else [])
    known = r.session.run(Cmd.of(r.ctx.tool("vdominfo"), "-n", "-d", change.domain).render())
    if known.returncode == 0:  # made by hand since the plan: not mailplan's to claim
        raise r.fail("the domain exists on the target already (made since the plan read "
                     "it); run `mailplan plan` again and review the new plan")
    address = f"postmaster@{change.domain}"
    try:
        r.run(Cmd.of(r.ctx.tool("vadddomain"), change.domain, stdin_lines=[clear, clear]))
        r.domain_dir(change.domain)
        if pm and pm.kind == "hash":
            r.run(Cmd.of(r.ctx.tool("vmoduser"), "-e", pm.value, address))
        if pm and not password_matches(pm, r.read_user(address)):
            raise r.fail("the postmaster password did not take effect")
    except StepFailed as exc:
        # whatever vadddomain left of the domain is mailplan's (the next apply claims it
        # if it finds it), with its postmaster password not yet the spec's
        exc.made = True
        raise
    return {"domain": change.domain, "created": True, **({"postmaster_set": True} if pm else {})}


#: vadduser's words (exit 249, -7) when it cannot make the user's directory, such as one
#: that is there already (reference/vpopmail/17-exit-codes-summary.md)
DIR_EXISTS = "User's directory already exists"

#: removes every directory of user $2's in domain directory $1 (there, or in one of its
#: hashed sub-directories, 0/, 0/1/, ... one character each, past 100 users: bigdir.c;
#: a vadduser cut short does not give its slot back, so the next one tries the same
#: sub-directory until that is full) when each holds only empty directories and
#: vadduser's ``lastauth`` (what a vadduser cut between its mkdir and its vpasswd line
#: leaves: no mail can be in it); exit 4, printing its path and removing none, when one
#: holds anything else, and 3 when there is none (mkdir failed for another reason).
#: Never follows a link: what is a candidate (``d``: a directory, neither it nor its parent
#: a link) is tested where it is checked and again where it is removed, so one made a
#: link in between is left alone.
CLEAR_LEFTOVER = (f'h="[{HASH_CHARS}]"; '
                  'd() { [ -d "$1" ] && [ ! -L "$1" ] && [ ! -L "${1%/*}" ]; }; '
                  'set -- "$1/$2" "$1"/$h/"$2" "$1"/$h/$h/"$2" "$1"/$h/$h/$h/"$2"; k=0; '
                  'for u; do d "$u" || continue; '
                  'f=$(find "$u" -mindepth 1 ! -type d -print); '
                  '[ -z "$f" ] || [ "$f" = "$u/lastauth" ] || { printf "%s\\n" "$u"; exit 4; }; '
                  'k=$((k+1)); done; [ "$k" -gt 0 ] || exit 3; '
                  'for u; do d "$u" || continue; '
                  'rm -f -- "$u/lastauth" && find "$u" -depth -type d -empty -delete '
                  '&& [ ! -e "$u" ] || exit 5; done')


def _clear_leftover_dir(r: _Runner, domain: str, name: str, refused: StepFailed) -> None:
    """vadduser refused a user whose directory is there without an account: remove that
    directory (in the domain's directory or a hashed sub-directory of it) when it cannot
    hold mail (a vadduser cut short by a kill or a dropped connection leaves it, and
    would otherwise refuse the user at every run)."""
    ddir = r.domain_dir(domain)
    res = r.session.run(Cmd.of("sh", "-c", CLEAR_LEFTOVER, "sh", ddir, name).render())
    if res.returncode == 3:
        raise refused
    if res.returncode == 4:
        udir = res.stdout.decode("utf-8", "replace").strip() or f"{ddir}/{name}"
        raise r.fail(f"{udir} is there without an account (left by a vadduser cut short, "
                     "or made by hand) and holds files, so vadduser refuses the user: look "
                     "at it, move it away and apply again")
    if res.returncode != 0:
        raise r.fail(f"vadduser failed: {DIR_EXISTS}, and the directory {name!r} left in "
                     f"{ddir} could not be removed (exit {res.returncode}): "
                     f"{_words(res, r.secrets)}")


#: what vadduser says when it fails once it made the user (vadduser.c: the quota, or the
#: hash of -e, not stored): the user is there, with a random temporary password
MADE_THEN_FAILED = ("Error in vsetuserquota()", "Error in vauth_getpw()",
                    "Error in vauth_setpw()")


def create_user(r: _Runner, change: Change) -> dict[str, Any]:
    """vadduser -e HASH with quota and comment."""
    user = _user(r.ctx, change)
    hashed = _hash_for(user.password)
    r.secrets += [hashed, user.password.value]
    argv: list[str | Secret] = [r.ctx.tool("vadduser"), "-e", hashed]
    if user.quota is not None:
        argv += ["-q", str(user.quota)]
    argv += ["-c", user.comment, f"{user.name}@{user.domain}"]
    try:
        try:
            r.run(Cmd.of(*argv))
        except StepFailed as exc:
            if DIR_EXISTS not in exc.message:
                raise
            _clear_leftover_dir(r, user.domain, user.name, exc)
            r.run(Cmd.of(*argv))
    except StepFailed as exc:  # made, then failed: mailplan's, its password not yet set
        exc.made = exc.made or any(words in exc.message for words in MADE_THEN_FAILED)
        raise
    _check_user(r, user, password=user.password, made=True)
    return {"domain": user.domain, "user": user.name, "created": True,
            "password_fp": change.fingerprint}


def update_password(r: _Runner, change: Change) -> dict[str, Any]:
    """vmoduser -e with the new hash (postmaster or a user)."""
    if change.user == "postmaster":
        password = r.ctx.desired.domains[change.domain].postmaster
        assert password is not None
    else:
        password = _user(r.ctx, change).password
    hashed = _hash_for(password)
    r.secrets += [hashed, password.value]
    address = f"{change.user}@{change.domain}"
    r.run(Cmd.of(r.ctx.tool("vmoduser"), "-e", hashed, address))
    if not password_matches(password, r.read_user(address)):
        raise r.fail("vmoduser reported success but the password did not change")
    return {"domain": change.domain, "user": change.user,
            **({"postmaster_set": True} if change.user == "postmaster" else
               {"password_set": True, "password_fp": change.fingerprint})}


def lock_user(r: _Runner, change: Change) -> dict[str, Any]:
    """vmoduser -e with a '!' before the user's hash (``passwd -l``'s way: no password
    verifies against it, and the hash is still there to unlock by hand), read at the
    step, not at the plan: a user locked there meanwhile is left as it is. Where the
    '!' would make the hash longer than vpopmail stores, or the user's vpasswd line
    longer than ``vuserinfo -D`` lists, '!' alone is stored (the plan said so:
    :func:`mailplan.diff._lock`)."""
    address = f"{change.user}@{change.domain}"
    user = r.read_user(address)
    stored = user.password
    r.secrets.append(stored)
    notes = []
    if classify(stored.reveal()).status != "locked":
        locked = Secret("!" + stored.reveal())
        line = vpasswd_line_length(user.name, locked.reveal(), user.comment, user.dir,
                                   user.quota, user.flags)
        if len(locked.reveal().encode()) > MAX_HASH or line > MAX_VPASSWD_LINE:
            # vmoduser would refuse it, or vuserinfo -D stop at its line (as the plan said)
            locked = Secret("!")
            room = (f"its hash fills the {MAX_HASH} bytes vpopmail stores" if line <=
                    MAX_VPASSWD_LINE else f"its vpasswd line would be {line} bytes long")
            notes.append(f"{room}, leaving no room for a '!' before it: '!' alone is "
                         "stored, the hash is gone (to let it in again, give it a password: "
                         "vpasswd)")
        r.secrets.append(locked)
        r.run(Cmd.of(r.ctx.tool("vmoduser"), "-e", locked, address))
        if classify(r.read_user(address).password.reveal()).status != "locked":
            raise r.fail("vmoduser reported success but the password is not locked")
    # the password mailplan set is no longer the one there (an unlock sets it anew)
    return {"domain": change.domain, "user": change.user, "locked": True,
            "password_fp": "", **({"notes": notes} if notes else {})}


def update_quota(r: _Runner, change: Change) -> dict[str, Any]:
    """vsetuserquota with the quota in bytes (vpopmail does not understand G/T)."""
    user = _user(r.ctx, change)
    value = "NOQUOTA" if user.quota is None else str(user.quota)
    r.run(Cmd.of(r.ctx.tool("vsetuserquota"), f"{user.name}@{user.domain}", value))
    _check_user(r, user, password=None, fields=("quota",))
    return {"domain": user.domain, "user": user.name}


def update_comment(r: _Runner, change: Change) -> dict[str, Any]:
    """vmoduser -c."""
    user = _user(r.ctx, change)
    r.run(Cmd.of(r.ctx.tool("vmoduser"), "-c", user.comment, f"{user.name}@{user.domain}"))
    _check_user(r, user, password=None, fields=("comment",))
    return {"domain": user.domain, "user": user.name}


def update_catchall(r: _Runner, change: Change) -> dict[str, Any]:
    """Write the domain's .qmail-default (owner copied from the domain directory)."""
    want = r.ctx.desired.domains[change.domain].catchall
    ddir = r.domain_dir(change.domain)
    user_dir = None
    if want.kind == "deliver_to":
        user_dir = r.read_user(f"{want.target}@{change.domain}").dir
    line = catchall_line(want, r.ctx.vpopmail_dir, user_dir)
    assert line is not None
    path = f"{ddir}/.qmail-default"
    r.run(Cmd.of("sh", "-c", WRITE_FILE, "sh", line, path, ddir))
    res = r.run(Cmd.of("cat", "--", path))
    if res.stdout.decode("utf-8", "replace") != line:
        raise r.fail(f"{path} does not hold the new catch-all after writing it")
    return {"domain": change.domain}


def delete_user(r: _Runner, change: Change) -> dict[str, Any]:
    """vdeluser, then make sure vuserinfo no longer knows the user."""
    address = f"{change.user}@{change.domain}"
    r.run(Cmd.of(r.ctx.tool("vdeluser"), address), unlimited=True)  # a big Maildir takes time
    res = r.session.run(Cmd.of(r.ctx.tool("vuserinfo"), "-n", address).render())
    if res.returncode == 0:
        raise r.fail(f"vdeluser reported success but {address} still exists")
    return {"domain": change.domain, "user": change.user, "deleted": True}


def delete_domain(r: _Runner, change: Change) -> dict[str, Any]:
    """vdeldomain (which exits 0 when it refuses), then check the domain is gone."""
    r.run(Cmd.of(r.ctx.tool("vdeldomain"), change.domain), unlimited=True)
    res = r.session.run(Cmd.of(r.ctx.tool("vdominfo"), "-n", change.domain).render())
    if res.returncode == 0:
        raise r.fail("vdeldomain did not remove the domain (alias domains still point "
                     "at it?)")
    return {"domain": change.domain, "deleted": True}


EXECUTORS: dict[tuple[str, str], Callable[[_Runner, Change], dict[str, Any]]] = {
    ("create", "domain"): create_domain,
    ("create", "user"): create_user,
    ("update", "password"): update_password,
    ("update", "lock"): lock_user,
    ("update", "quota"): update_quota,
    ("update", "comment"): update_comment,
    ("update", "catchall"): update_catchall,
    ("delete", "user"): delete_user,
    ("delete", "domain"): delete_domain,
}


def creation_claim(ctx: Context, change: Change) -> dict[str, Any] | None:
    """The effect a step that creates a domain, user, alias, forward or alias domain
    records once done (None for other steps): the apply journals it as an intent before
    the step runs, so that mailplan still counts it as its own (``--prune``) when it
    ends between the step and its record."""
    if change.kind in ROUTING_KINDS:
        return routing_claim(ctx, change)
    if change.action == "create" and change.kind == "domain":
        return {"domain": change.domain, "created": True}
    if change.action == "create" and change.kind == "user":
        return {"domain": change.domain, "user": change.user, "created": True}
    return None


def execute(session: ShellSession, ctx: Context, change: Change) -> dict[str, Any]:
    """Carry out one change and verify it; return the journal entry's effect. A command
    past its host's ``command_timeout`` fails the step (:class:`CommandTimeout`, naming
    it)."""
    try:
        if change.kind in ROUTING_KINDS:
            return execute_routing(session, ctx, change)
        return EXECUTORS[(change.action, change.kind)](_Runner(session, ctx, change), change)
    except CommandTimeout as exc:
        if exc.step is not None:
            raise
        raise exc.at(f"{change.symbol} {change.kind} {change.address}") from None
