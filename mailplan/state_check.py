"""What a state document must hold to be read (:mod:`mailplan.state`): its format
version and keys, and the shape of each part, refused with advice where it does not
(a hand edit, another tool's file, a damaged journal line)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mailplan.errors import StateError
from mailplan.spec import mailplan_file

STATE_VERSION = 1
RECOVER = ("move the damaged file aside and run `mailplan plan` again: the target itself "
           "is enough to rebuild (nothing is duplicated); only the record of what mailplan "
           "created, used by --prune, is lost")


def _dict_of(value: Any, each: type | Callable[[Any], bool]) -> bool:
    """Whether ``value`` is a dict whose every value passes ``each`` (a type or a test)."""
    test = (lambda v: isinstance(v, each)) if isinstance(each, type) else each
    return isinstance(value, dict) and all(test(v) for v in value.values())


def _checkpoint_ok(checkpoint: Any) -> bool:
    """Whether a mailbox's checkpoint (none: ``{}``) holds what the plan reads of it:
    the source file's ``path`` and ``inode``, ``head`` and ``tail`` (the digests of its
    bytes there), a whole number ``offset``, ``count`` (messages through it) a whole
    number too, and ``ends`` (where earlier reads ended, absent in older state files) a
    list of whole numbers after byte 0 and not after ``offset``; ``mtime`` a number.
    A damaged ``ends`` ignored would silently cost that record: a message imported twice."""
    if not isinstance(checkpoint, dict):
        return False
    if not checkpoint:
        return True
    offset, ends = checkpoint.get("offset"), checkpoint.get("ends", [])
    count, mtime = checkpoint.get("count", 0), checkpoint.get("mtime", 0)
    return (isinstance(checkpoint.get("path"), str) and type(checkpoint.get("inode")) is int
            and type(mtime) in (int, float) and all(
                isinstance(checkpoint.get(k), str) for k in ("head", "tail"))
            and type(count) is int and count >= 0
            and type(offset) is int and offset >= 0 and isinstance(ends, list) and all(
                type(end) is int and 0 < end <= offset for end in ends))


def check_version(path: Path, data: Any) -> None:
    if not isinstance(data, dict):
        raise StateError(f"{path}: not a mailplan state file", hint=RECOVER)
    if mailplan_file(data) == "a saved plan":  # plan -o's output, given as --state
        raise StateError(f"{path}: this is a saved plan of mailplan's (a plan file), not a "
                         "state file", hint="leave --state out for the spec's own state file "
                         "(its state:, else SPEC.state.json beside it), or give the one the "
                         "plan was made with; a saved plan is applied with `mailplan apply "
                         "PLAN.json` (with that --state) and shown with `mailplan show "
                         "PLAN.json`")
    if "format_version" not in data:  # no version at all: not written by any mailplan
        raise StateError(f"{path}: not a mailplan state file (it has no format_version)",
                         hint=RECOVER)
    version = data["format_version"]
    if version != STATE_VERSION:
        raise StateError(f"{path}: state format version {version!r}, but this mailplan "
                         f"reads version {STATE_VERSION}",
                         hint="use the mailplan version that wrote it")
    for key in ("lineage", "serial", "managed", "history"):
        if key not in data:
            raise StateError(f"{path}: state file lacks {key!r}", hint=RECOVER)
    check_shape(path, data)


def check_shape(path: Path, data: dict[str, Any]) -> None:
    """Each part of the state holds what mailplan reads there (a hand edit, another
    tool's file, a damaged journal line)."""
    managed, mail = data["managed"], data.get("mail", {})
    routing, intents = data.get("routing", {}), data.get("intents", {})
    for key, ok, what in (
            ("lineage", isinstance(data["lineage"], str), "text"),
            ("serial", type(data["serial"]) is int, "a whole number"),
            ("history", isinstance(data["history"], list) and all(
                isinstance(run, dict) for run in data["history"]), "a list of applies"),
            ("managed", isinstance(managed, dict) and all(
                isinstance(body, dict) and isinstance(body.get("users"), dict)
                for body in managed.values()), "domains, each with its users"),
            ("mail", isinstance(mail, dict) and all(
                isinstance(name, str) and isinstance(box, dict)
                and all(type(box.get(n, 0)) is int for n in ("imported", "bytes", "found"))
                and _checkpoint_ok(box.get("checkpoint") or {})
                for name, box in mail.items()), "mailboxes"),
            ("routing", _dict_of(routing, lambda kinds: _dict_of(
                kinds, lambda names: _dict_of(names, dict))), "domains"),
            ("intents", _dict_of(intents, lambda claim: isinstance(
                claim, dict) and isinstance(claim.get("domain"), str)), "steps"),
            ("current_apply", isinstance(data.get("current_apply") or {}, dict),
             "an apply"),
            ("spec_path", isinstance(data.get("spec_path", ""), str), "a path")):
        if not ok:
            raise StateError(f"{path}: the state file's {key!r} does not hold {what}",
                             hint=RECOVER)
