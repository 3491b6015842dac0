"""Facts about the vpopmail target, read with vpopmail's own tools.

Reads are batched: one channel runs ``vdominfo -n -d`` and ``vuserinfo -D`` for every
domain of interest, a second one reads each domain's ``.qmail-default`` (its directory
is only known from the first answer: past 100 domains they sit in hashed
sub-directories) and the ``.dir-control`` files that say which hashed sub-directory
vpopmail gives the next user or domain (the plan checks that a new user's directory
fits vpopmail's limit: :mod:`mailplan.userdirs`). Parsers are pure and tested against
the recorded transcripts in reference/vpopmail (07-vuserinfo.md, 08-vdominfo.md,
14-many-users-dir-hashing.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from mailplan.connectors.base import CommandResult, Connector
from mailplan.errors import HostError
from mailplan.remote import run_batch
from mailplan.secret import Secret, mask_output
from mailplan.shell import join
from mailplan.text import is_number

DASHES = "-" * 42
_FIELD = re.compile(
    r"^(name|passwd|clear passwd|comment/gecos|uid|gid|flags|gecos|limits|dir|quota|usage"
    r"|account created|last auth|last auth ip):(.*)$"
)


@dataclass(frozen=True)
class TargetUser:
    """A vpopmail user as vuserinfo reports it."""

    name: str
    password: Secret
    comment: str
    flags: int
    dir: str
    quota: str


@dataclass(frozen=True)
class DirHashing:
    """Where vpopmail puts the next entries of a directory (users of a domain, or the
    domains): its ``.dir-control`` file (bigdir.c) and, for users, ``.dir_control_free``
    (backfill.c)."""

    count: int  # entries counted (line 1 of .dir-control)
    current: str  # hashed sub-directory handed out now, "" = none yet (its line 8)
    #: sub-directories freed by deleted users, handed out first (.dir_control_free)
    free: tuple[str, ...] = ()


@dataclass(frozen=True)
class TargetDomain:
    """A vpopmail domain as vdominfo and vuserinfo report it."""

    name: str
    dir: str
    aliases: tuple[str, ...]
    users: dict[str, TargetUser]
    catchall: str | None = None  # .qmail-default content, None when absent
    hashing: DirHashing | None = None  # of its user directories; None: not known


@dataclass
class TargetFacts:
    """What the target has for the domains mailplan looked at."""

    host: str
    domains: dict[str, TargetDomain] = field(default_factory=dict)
    alias_of: dict[str, str] = field(default_factory=dict)  # asked name -> real domain
    #: of the domain directories (``VPOPMAIL/domains/.dir-control``); None: not known
    domain_hashing: DirHashing | None = None
    #: the domains asked for: one of them missing from ``domains`` is not there
    looked_at: frozenset[str] = frozenset()

    def users(self) -> set[tuple[str, str]]:
        """Every ``(domain, user)`` the target has, of the domains looked at."""
        return {(name, user) for name, dom in self.domains.items() for user in dom.users}


def parse_vuserinfo(text: str) -> list[dict[str, str]]:
    """vuserinfo output (one user, or a ``-D`` listing) to one field dict per user."""
    users: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    last = ""
    for line in text.split("\n"):
        if line == DASHES:
            current = None
            continue
        match = _FIELD.match(line)
        if match:
            label, value = match.groups()
            if label == "name" and (current is None or "name" in current):
                current = {}
                users.append(current)
            if current is None:
                continue
            current[label] = value[1:] if label == "comment/gecos" else value.lstrip(" ")
            last = label
        elif line.startswith("        ") and current is not None and last == "limits":
            current["limits"] = (current.get("limits", "") + "\n" + line.strip()).strip()
    return users


def user_from_fields(fields: dict[str, str]) -> TargetUser:
    """A TargetUser from one parsed vuserinfo entry."""
    try:
        return TargetUser(
            name=fields["name"],
            password=Secret(fields["passwd"]),
            comment=fields.get("comment/gecos", ""),
            flags=int(fields.get("flags", "0") or 0),
            dir=fields["dir"],
            quota=fields.get("quota", "NOQUOTA"),
        )
    except (KeyError, ValueError) as exc:
        raise ValueError(f"vuserinfo entry without a usable {exc} field") from None


def parse_vdominfo_nd(text: str) -> tuple[str, str, tuple[str, ...]]:
    """``vdominfo -n -d DOMAIN`` output to (real domain, directory, alias domains)."""
    lines = [ln for ln in text.split("\n") if ln]
    if len(lines) < 2:
        raise ValueError("vdominfo printed fewer than two lines")
    aliases = tuple(ln[len("alias: "):] for ln in lines[2:] if ln.startswith("alias: "))
    return lines[0], lines[1], aliases


#: the characters of vpopmail's hashed sub-directory names (bigdir.c's dirlist)
HASH_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


#: a hashed sub-directory as vpopmail names them: one to three levels of one character
_HASHED = re.compile(f"[{HASH_CHARS}](?:/[{HASH_CHARS}]){{0,2}}")


def parse_dir_control(text: str, free: str = "") -> DirHashing:
    """A ``.dir-control`` file and a ``.dir_control_free`` one to a DirHashing; an empty
    text is a missing file, which vpopmail reads as a fresh one (nothing counted yet).

    Free entries are those backfill.c hands out, in order: it skips blank and ``#``
    lines and refuses a last line without its line end. Only the lines vpopmail writes
    (a hashed sub-directory alone on its line) are taken; any other line raises
    ValueError, as backfill.c would hand out something else or stop there."""
    entries: list[str] = []
    for line in free.split("\n")[:-1]:  # the part after the last line end: refused
        if not line.split("#", 1)[0].strip(" \t\r\v\f"):
            continue
        if not _HASHED.fullmatch(line):
            raise ValueError(f"unexpected line {line!r} in .dir_control_free")
        entries.append(line)
    if not text:
        return DirHashing(0, "", tuple(entries))
    lines = text.split("\n")
    if len(lines) < 8 or not is_number(lines[0]):
        raise ValueError("not a .dir-control file (8 lines, the first a count)")
    current = lines[7]
    if current and not _HASHED.fullmatch(current):
        raise ValueError(f"unexpected hashed directory {current!r} in line 8")
    return DirHashing(int(lines[0]), current, tuple(entries))


def dir_control_cmd(directory: str, name: str = ".dir-control", *,
                    missing: Literal["empty", "fails", "empty-in-empty-dir"] = "empty") -> str:
    """Print a directory's ``name`` file; one that cannot be read fails. A missing one
    prints nothing (``empty``), fails (``fails``), or prints nothing only where the
    directory itself is missing or empty (``empty-in-empty-dir``: a fresh install has
    no domains/.dir-control yet)."""
    path = f"{directory}/{name}"
    read = join(["cat", "--", path])
    if missing == "fails":
        return read
    absent = join(["test", "!", "-e", path])
    if missing == "empty-in-empty-dir":
        listing = join(["ls", "-A", "--", directory])
        absent += (f" && {{ {join(['test', '!', '-e', directory])} || "
                   f"test -z \"$({listing} 2>/dev/null || echo x)\"; }}")
    return f"{read} 2>/dev/null || {{ {absent}; }}"


def _hashing(control: CommandResult, free: CommandResult | None = None) -> DirHashing | None:
    """The DirHashing read, or None where a file could not be read or parsed (the plan
    then assumes the longest hashed sub-directory)."""
    if control.returncode != 0 or (free is not None and free.returncode != 0):
        return None
    try:
        return parse_dir_control(control.stdout.decode("utf-8", "replace"),
                                 free.stdout.decode("utf-8", "replace") if free else "")
    except ValueError:
        return None


def _tool(vpopmail_dir: str, name: str) -> str:
    return f"{vpopmail_dir.rstrip('/')}/bin/{name}"


def _check(res: CommandResult, host: str, what: str) -> None:
    if res.returncode != 0:
        # vuserinfo prints password hashes: never echo them
        out = mask_output(res.stdout.decode("utf-8", "replace").strip() or res.stderr_text)
        raise HostError(f"{what} failed (exit {res.returncode}): {out[:300]}", host=host,
                        step="read target state")


def read_target(conn: Connector, vpopmail_dir: str, domains: Iterable[str]) -> TargetFacts:
    """Read the given domains (and their users and catch-alls) from the target."""
    names = sorted(set(domains))
    vdominfo, vuserinfo = _tool(vpopmail_dir, "vdominfo"), _tool(vpopmail_dir, "vuserinfo")
    probe = join(["test", "-x", vdominfo]) + " && " + join(["test", "-x", vuserinfo])
    cmds = [probe]
    for name in names:
        cmds.append(join([vdominfo, "-n", "-d", name]))
        cmds.append(join([vuserinfo, "-D", name]))
    # missing where domains exist: kept elsewhere (an SQL backend), not known
    cmds.append(dir_control_cmd(f"{vpopmail_dir.rstrip('/')}/domains",
                                missing="empty-in-empty-dir"))
    results = run_batch(conn, cmds)
    if results[0].returncode != 0:
        raise HostError(f"no vpopmail found: {vdominfo} is missing or not executable",
                        host=conn.name, step="read target state",
                        hint="check target.vpopmail_dir in the spec, or install vpopmail")
    facts = TargetFacts(conn.name, domain_hashing=_hashing(results[-1]),
                        looked_at=frozenset(names))
    for i, name in enumerate(names):
        info, listing = results[1 + 2 * i], results[2 + 2 * i]
        text = info.stdout.decode("utf-8", "replace")
        if info.returncode != 0:
            if info.returncode in (245, 219, 255) and (
                    "Invalid domain name" in text or "can't read users/assign" in text):
                continue  # the domain does not exist (yet)
            _check(info, conn.name, f"vdominfo {name}")
        try:
            real, ddir, aliases = parse_vdominfo_nd(text)
        except ValueError as exc:
            raise HostError(f"cannot parse vdominfo output for {name}: {exc}",
                            host=conn.name, step="read target state") from None
        if real != name:
            facts.alias_of[name] = real
            continue
        _check(listing, conn.name, f"vuserinfo -D {name}")
        try:
            users = [user_from_fields(f) for f in
                     parse_vuserinfo(listing.stdout.decode("utf-8", "replace"))]
        except ValueError as exc:
            raise HostError(f"cannot parse vuserinfo -D {name}: {exc}", host=conn.name,
                            step="read target state") from None
        facts.domains[name] = TargetDomain(name, ddir, aliases, {u.name: u for u in users})
    _read_domain_files(conn, facts)
    return facts


def _read_domain_files(conn: Connector, facts: TargetFacts) -> None:
    """Each domain's catch-all (.qmail-default), the hashing of its user directories
    (.dir-control, .dir_control_free), and a check of its user listing against
    the names in its ``vpasswd`` file (where the backend keeps one): ``vuserinfo -D``
    stops without an error at a vpasswd line longer than it reads (299 bytes), and a
    user missing from the listing would be created again, or taken for absent by
    ``--prune``'s check of the accounts a domain holds."""
    names = sorted(facts.domains)
    if not names:
        return
    cmds = []
    for n in names:
        ddir = facts.domains[n].dir
        cmds.append(join(["cat", "--", f"{ddir}/.qmail-default"]))
        cmds.append(join(["cut", "-d:", "-f1", "--", f"{ddir}/vpasswd"]))
        # vadddomain writes it (cdb backend); missing: kept elsewhere, not known
        cmds.append(dir_control_cmd(ddir, missing="fails"))
        cmds.append(dir_control_cmd(ddir, ".dir_control_free"))
    results = run_batch(conn, cmds)
    for i, name in enumerate(names):
        res, vpasswd, control, free = results[4 * i: 4 * i + 4]
        dom = facts.domains[name]
        if vpasswd.returncode == 0:
            stored = set(vpasswd.stdout.decode("utf-8", "replace").split())
            unlisted = sorted(stored - set(dom.users))
            if unlisted:
                raise HostError(
                    f"vuserinfo -D {name} listed {len(dom.users)} of the {len(stored)} users "
                    f"in {dom.dir}/vpasswd (not {', '.join(unlisted[:5])}"
                    f"{', ...' if len(unlisted) > 5 else ''}): vpopmail's listing stops at "
                    "a vpasswd line longer than 299 bytes (a long name, comment and "
                    "directory together)", host=conn.name, step="read target state",
                    hint="shorten that user's comment (vmoduser -c) so its vpasswd line "
                    "fits, then run mailplan again")
        content = res.stdout.decode("utf-8", "replace") if res.returncode == 0 else None
        facts.domains[name] = TargetDomain(dom.name, dom.dir, dom.aliases, dom.users, content,
                                           _hashing(control, free))
