"""Routing change -> argv lists for the target, built from parts, never shell text.

Aliases use vpopmail's own ``valias`` (``-i LINE ALIAS@DOMAIN`` appends one line to
.qmail-NAME, ``-d`` deletes the whole alias; see reference 09) and alias domains
``vaddaliasdomain REAL ALIAS`` (reference 10). A *changed* alias is not deleted and
re-inserted (a failure in between would leave the address bouncing): its .qmail-NAME is
written whole, exactly as valias's cdb backend keeps it, and renamed into place. That
file, files vpopmail has no tool for — a
domain's .qmail-default and a mailbox's own .qmail — are written by one constant
``sh -c`` script whose data (tool, address, file name, lines) arrive as positional
parameters: the directory is asked from ``vdominfo -d`` / ``vuserinfo -d`` at apply time
(paths must be read, never computed: directory hashing), the file is written to a
temporary name, given the directory's owner and mode 600, and renamed into place.
"""

from __future__ import annotations

from mailplan.routing.diff import (
    AddAlias,
    AddAliasDomain,
    Change,
    ChangeAlias,
    RemoveAlias,
    RemoveForward,
    SetCatchAll,
    SetForward,
)
from mailplan.routing.rules import CatchAll
from mailplan.shell import dot_qmail_program

VPOPMAIL_DIR = "/home/vpopmail"

# $1 = vdominfo/vuserinfo, $2 = domain or address, $3 = file name, $4.. = lines
# (no line: remove the file). vdominfo -d also prints "alias:" lines: keep the first.
WRITE_SCRIPT = (
    'tool=$1 who=$2 name=$3; shift 3; '
    'dir=$("$tool" -d "$who" | head -n 1); '
    'if [ -z "$dir" ] || [ ! -d "$dir" ]; then '
    'echo "mailplan: no directory for $who" >&2; exit 1; fi; '
    'if [ $# -eq 0 ]; then rm -f -- "$dir/$name"; exit; fi; '
    'tmp="$dir/$name.mailplan-tmp"; '
    'printf "%s\\n" "$@" > "$tmp" && chown --reference="$dir" -- "$tmp" '
    '&& chmod 600 -- "$tmp" && mv -f -- "$tmp" "$dir/$name"'
)


def qmail_default_line(policy: CatchAll, domain: str, vpopmail_dir: str = VPOPMAIL_DIR) -> str:
    """The .qmail-default line for a catch-all policy (vdelivermail's last argument).

    deliver-to-user is written as ``user@domain`` (vdelivermail re-injects it): the
    user's directory may not exist yet when the plan is made, and may be hashed.
    """
    what = {
        "bounce": "bounce-no-mailbox",
        "delete": "delete",
        "deliver-to-user": f"{policy.target}@{domain}",
        "forward-to-address": policy.target,
    }[policy.kind]
    return dot_qmail_program([f"{vpopmail_dir}/bin/vdelivermail", "", what])


def alias_file_name(name: str) -> str:
    """The file valias (cdb backend) keeps an alias in, in the domain directory: each
    line of it one line of the file, '.' in the name stored as ':' (reference 09)."""
    return ".qmail-" + name.replace(".", ":")


def _write(tool: str, who: str, name: str, lines: tuple[str, ...]) -> list[str]:
    return ["sh", "-c", WRITE_SCRIPT, "mailplan-write", tool, who, name, *lines]


def commands_for(change: Change, vpopmail_dir: str = VPOPMAIL_DIR) -> list[list[str]]:
    """The argv lists that carry out ``change``, in order."""
    bin_dir = f"{vpopmail_dir}/bin"
    valias = f"{bin_dir}/valias"
    if isinstance(change, ChangeAlias):
        # valias can only delete a whole alias and append lines: delete-then-insert
        # leaves the address bouncing when a step fails in between. The new .qmail-NAME
        # is written whole and renamed over the old one instead.
        return [_write(f"{bin_dir}/vdominfo", change.domain, alias_file_name(change.name),
                       change.destinations)]
    if isinstance(change, AddAlias | RemoveAlias):
        address = f"{change.name}@{change.domain}"
        if isinstance(change, RemoveAlias):
            return [[valias, "-d", address]]
        return [[valias, "-i", line, address] for line in change.destinations]
    if isinstance(change, AddAliasDomain):
        return [[f"{bin_dir}/vaddaliasdomain", change.domain, change.alias_domain]]
    if isinstance(change, SetCatchAll):
        line = qmail_default_line(change.policy, change.domain, vpopmail_dir)
        return [_write(f"{bin_dir}/vdominfo", change.domain, ".qmail-default", (line,))]
    address = f"{change.mailbox}@{change.domain}"
    if isinstance(change, SetForward):
        return [_write(f"{bin_dir}/vuserinfo", address, ".qmail", change.lines)]
    assert isinstance(change, RemoveForward)
    return [_write(f"{bin_dir}/vuserinfo", address, ".qmail", ())]
