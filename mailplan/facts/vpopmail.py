"""Facts about the vpopmail target, read with vpopmail's own tools.

Reads are batched: one channel runs ``vdominfo -n -d`` and ``vuserinfo -D`` for every
domain of interest, a second one reads each domain's ``.qmail-default`` (its directory
is only known from the first answer: past 100 domains they sit in hashed
sub-directories). Parsers are pure and tested against the recorded transcripts in
reference/vpopmail (07-vuserinfo.md, 08-vdominfo.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from mailplan.connectors.base import CommandResult, Connector
from mailplan.errors import HostError
from mailplan.remote import run_batch
from mailplan.secret import Secret, mask_output
from mailplan.shell import join

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
class TargetDomain:
    """A vpopmail domain as vdominfo and vuserinfo report it."""

    name: str
    dir: str
    aliases: tuple[str, ...]
    users: dict[str, TargetUser]
    catchall: str | None = None  # .qmail-default content, None when absent


@dataclass
class TargetFacts:
    """What the target has for the domains mailplan looked at."""

    host: str
    domains: dict[str, TargetDomain] = field(default_factory=dict)
    alias_of: dict[str, str] = field(default_factory=dict)  # asked name -> real domain


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
    results = run_batch(conn, cmds)
    if results[0].returncode != 0:
        raise HostError(f"no vpopmail found: {vdominfo} is missing or not executable",
                        host=conn.name, step="read target state",
                        hint="check target.vpopmail_dir in the spec, or install vpopmail")
    facts = TargetFacts(conn.name)
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
    """Each domain's catch-all (.qmail-default), and a check of its user listing against
    the names in its ``vpasswd`` file (where the backend keeps one): ``vuserinfo -D``
    stops without an error at a vpasswd line longer than it reads (299 bytes), and a
    user missing from the listing would be created again, or taken for absent by
    ``--prune``'s check of the accounts a domain holds."""
    names = sorted(facts.domains)
    if not names:
        return
    cmds = []
    for n in names:
        cmds.append(join(["cat", "--", f"{facts.domains[n].dir}/.qmail-default"]))
        cmds.append(join(["cut", "-d:", "-f1", "--", f"{facts.domains[n].dir}/vpasswd"]))
    results = run_batch(conn, cmds)
    for i, name in enumerate(names):
        res, vpasswd = results[2 * i], results[2 * i + 1]
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
        facts.domains[name] = TargetDomain(dom.name, dom.dir, dom.aliases, dom.users, content)
