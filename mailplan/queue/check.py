"""Check a queue tree the way queue_repair.py does, and say how to repair it (pure).

:func:`check` compares a dump with the expected layout: the directories for the split
count, owners, groups and modes of every directory and file, message files whose name
is not the inode of their mess file (qmail names a message by that inode; restoring a
backup breaks it), files in the wrong split directory, orphans (info, local, remote,
todo, intd or bounce without a mess file), half-written messages that are stale, and
files qmail cannot read. Each :class:`Problem` carries the actions ``--repair`` performs;
an empty list means a human has to look. :func:`repair_actions` orders them. Whether
and how a message's files are renamed to where qmail looks for them is decided in
:mod:`mailplan.queue.renames`.
"""

from __future__ import annotations

from mailplan.queue.contents import check_contents
from mailplan.queue.dump import Dump, Entry
from mailplan.queue.grouping import (
    QueueFile,
    by_id,
    dir_number,
    name_id,
    queue_files,
    tree_complete,
    tree_split,
)
from mailplan.queue.layout import (
    DEFAULT_SPLIT,
    LOCK_FILES,
    MESSAGE_AREAS,
    MESSAGE_FILES,
    SPLIT_AREAS,
    Expect,
    Layout,
)
from mailplan.queue.problems import (
    ATTRS,
    CREATE,
    MKDIR,
    QUEUE_DEATH,
    REMOVE,
    RMDIR,
    STALE_AFTER,
    Action,
    Problem,
    Report,
)
from mailplan.queue.renames import Renames


def _attrs(entry: Entry, want: Expect, users: dict[str, int],
           groups: dict[str, int]) -> list[Problem]:
    out: list[Problem] = []
    path = entry.path or "."
    group_ok = want.group is None or entry.group == want.group
    if (entry.owner != want.user or not group_ok) and want.user in users and (
            want.group is None or want.group in groups):
        has = f"{entry.owner}:{entry.group}"
        should = want.user + (f":{want.group}" if want.group else "")
        op = {"op": "chown", "path": path, "user": want.user, "group": want.group,
              "ino": entry.inode}
        out.append(Problem("owner", path, f"owned by {has}, should be {should}",
                           (Action(ATTRS, op),)))
    if entry.mode != want.mode:
        op = {"op": "chmod", "path": path, "mode": want.mode, "ino": entry.inode}
        out.append(Problem("mode", path,
                           f"mode {entry.mode:04o}, should be {want.mode:04o}",
                           (Action(ATTRS, op),)))
    return out


def _rel(path: str) -> str:
    return path or "."


def _check_dirs(dump: Dump, layout: Layout, report: Report) -> None:
    expected = layout.expected_dirs()
    for path, want in expected.items():
        entry = dump.entries.get(path)
        if entry is None:
            op = {"op": "mkdir", "path": path, "mode": want.mode, "user": want.user,
                  "group": want.group}
            report.problems.append(Problem("missing-dir", path, "directory is missing",
                                           (Action(MKDIR, op),)))
        elif entry.kind != "d":
            report.problems.append(Problem(
                "wrong-type", _rel(path), "should be a directory; move it aside by hand"))
        else:
            report.problems += _attrs(entry, want, dump.users, dump.groups)
    extra = [e for e in dump.entries.values()
             if e.kind == "d" and len(e.parts) >= 2 and e.parts[0] in MESSAGE_AREAS
             and e.path not in expected]
    for entry in sorted(extra, key=lambda e: -len(e.parts)):
        numbered = len(entry.parts) == 2 and dir_number(entry.parts[1]) is not None
        if numbered and layout.is_split(entry.parts[0]):
            report.problems.append(Problem(
                "split-mismatch", entry.path,
                f"split directory {entry.parts[1]} is beyond the split count "
                f"{layout.split}; if qmail was built with a larger conf-split, pass --split"))
            continue
        report.problems.append(Problem("extra-dir", entry.path,
                                       "directory qmail does not use",
                                       (Action(RMDIR, {"op": "rmdir", "path": entry.path}),)))


def _check_lock(dump: Dump, report: Report) -> None:
    for path, (want, size) in LOCK_FILES.items():
        entry = dump.entries.get(path)
        create = {"op": "mkfifo" if want.kind == "p" else "mkfile", "path": path,
                  "mode": want.mode, "user": want.user, "group": want.group, "size": size}
        if entry is None:
            report.problems.append(Problem("missing-file", path, "lock file is missing",
                                           (Action(CREATE, create),)))
        elif entry.kind != want.kind:
            kind = "a named pipe" if want.kind == "p" else "a regular file"
            report.problems.append(Problem(
                "wrong-type", path, f"should be {kind}",
                (Action(REMOVE, {"op": "remove", "path": path, "ino": entry.inode}),
                 Action(CREATE, create))))
        else:
            report.problems += _attrs(entry, want, dump.users, dump.groups)


def _remove(qfs: list[QueueFile]) -> tuple[Action, ...]:
    return tuple(Action(REMOVE, {"op": "remove", "path": qf.entry.path,
                                 "ino": qf.entry.inode}) for qf in qfs)


def _orphan(msg_id: int, files: list[QueueFile], report: Report) -> set[str]:
    """Files of an id without a mess file: removed, unless some carry a cut-off repair's
    temporary name (their mess file is to be looked for by hand); the paths repair
    removes."""
    names = ", ".join(sorted(qf.entry.path for qf in files))
    if any(qf.temp_for is not None for qf in files):
        report.problems.append(Problem(
            "orphan", str(msg_id), f"files of a cut-off repair, without a mess file: "
            f"{names}; look for the message's mess file by hand"))
        return set()
    report.problems.append(Problem("orphan", str(msg_id),
                                   f"files without a mess file: {names}", _remove(files)))
    return {qf.entry.path for qf in files}


def _no_envelope(msg_id: int, areas: dict[str, list[QueueFile]], files: list[QueueFile],
                 age: int, stale_after: int, report: Report) -> set[str]:
    """A mess file without info or todo, ``age`` seconds old: a message being queued, one
    whose info file went missing, or (stale) a half-written one; the paths repair removes
    (those of the stale one, else none)."""
    if age < stale_after and (areas.get("local") or areas.get("remote")):
        # qmail-queue never writes local/remote: something removed the info file
        names = ", ".join(sorted(qf.entry.path for qf in files))
        report.problems.append(Problem(
            "no-info", areas["mess"][0].entry.path,
            f"message {msg_id} has recipients but no info file ({names}): qmail-send "
            "never delivers it; look at it (mailplan queue show) and requeue or delete "
            "it by hand"))
    elif age < stale_after:
        report.notes.append(f"message {msg_id} is being queued (mess without info or "
                            f"todo, {age} s old): left alone")
    else:
        # under qmail-queue's lifetime it may still be writing it: no repair removes it
        # (--repair refuses such a --stale-after: ops.repair), so none is counted
        report.problems.append(Problem(
            "stale-partial", areas["mess"][0].entry.path, _stale_partial(age, stale_after),
            _remove(files) if age >= QUEUE_DEATH else ()))
        return {qf.entry.path for qf in files}
    return set()


def _stale_partial(age: int, stale_after: int) -> str:
    """What a stale-partial problem says of a half-written message ``age`` seconds old:
    only past qmail-queue's lifetime is it known to have died; a younger one (a check
    with a --stale-after under 24 h) may still be being written."""
    if age >= QUEUE_DEATH:
        return (f"half-written message (mess without info or todo, {age // 3600} h old): "
                "qmail-queue died while queueing it")
    return (f"half-written message (mess without info or todo, {age} s old, older than "
            f"--stale-after {stale_after}s): abandoned, or still being written: "
            "qmail-queue may take up to 24 h over a message")


def _duplicates(msg_id: int, areas: dict[str, list[QueueFile]], layout: Layout,
                report: Report) -> bool:
    """Report each area where the message has more than one file; whether there is one."""
    doubled = [(area, qfs) for area, qfs in areas.items() if len(qfs) > 1]
    for area, qfs in doubled:
        names = ", ".join(qf.entry.path for qf in qfs)
        where = layout.path(area, msg_id)
        reads = f"only {where}" if where in {qf.entry.path for qf in qfs} else \
            f"none of them (it looks for {where})"
        report.problems.append(Problem(
            "duplicate", qfs[0].entry.path,
            f"message {msg_id} has {len(qfs)} {area} files ({names}) and qmail reads "
            f"{reads}; keep one by hand: nothing of this message is renamed or moved "
            "until then"))
    return bool(doubled)


def _check_message(msg_id: int, areas: dict[str, list[QueueFile]], dump: Dump,
                   renames: Renames, stale_after: int, report: Report) -> set[str]:
    """Problems of one id; returns the paths that repair removes."""
    all_files = [qf for qfs in areas.values() for qf in qfs]
    if any(qf.entry.kind != "f" for qf in all_files):
        # reported as wrong-type (not repairable): a named pipe, a directory or a link named as
        # a message's file is nobody's message, and nothing under this id is touched
        return set()
    mess = areas.get("mess", [])
    if not mess:
        return _orphan(msg_id, all_files, report)
    if not areas.get("info") and not areas.get("todo"):
        removed = _no_envelope(msg_id, areas, all_files, dump.now - mess[0].entry.touched,
                               stale_after, report)
        if removed:  # stale: removed whole, nothing else of it is checked
            return removed
    doubled = _duplicates(msg_id, areas, renames.layout, report)
    check_contents(areas, report)
    if doubled:
        # renamed or moved, both files would go to one name: the second rename fails
        # and skips the rest, leaving the message half under a temporary name
        return set()
    problem = renames.problem(msg_id, mess[0].entry, all_files)
    if problem is not None:
        report.problems.append(problem)
    return set()


def _big_todo_doubt(dump: Dump, layout: Layout) -> Problem | None:
    """A ``split-mismatch`` when todo/ or intd/ has both numbered subdirectories (which
    make the layout big-todo) and message files directly in it (as without big-todo):
    qmail reads only one of the two, and which is not to be told from the tree. Taken
    for big-todo, repair would move every waiting message into a subdirectory a qmail
    built without it never reads. Without such files, also when the numbered
    directories are fewer than the split count (a big-todo tree has twice as many,
    todo/0.. and intd/0..): one or two strays, which repair, taking them for a big-todo
    tree missing the others, would multiply into directories a qmail built without it
    takes for messages in todo/ (``trouble reading``, at every pass)."""
    if not layout.big_todo:
        return None
    top = [e for e in dump.entries.values()
           if len(e.parts) == 2 and e.parts[0] in ("todo", "intd")]
    numbered = sorted((e for e in top if e.kind == "d" and dir_number(e.parts[1]) is not None),
                      key=lambda e: (e.parts[0], int(e.parts[1])))
    flat = sorted(e.path for e in top if e.kind != "d" and name_id(e.parts[1]) is not None)
    dirs = [e.path for e in numbered]

    def some(paths: list[str]) -> str:
        return ", ".join(paths[:4]) + (f" and {len(paths) - 4} more" if len(paths) > 4 else "")

    if not flat:
        if len(dirs) >= layout.split:
            return None
        return Problem(
            "split-mismatch", dirs[0],
            f"{some(dirs)}: {len(dirs)} numbered director{'y' if len(dirs) == 1 else 'ies'} "
            f"in todo/ and intd/, where a qmail built with big-todo has todo/0..{layout.split - 1} "
            f"and intd/0..{layout.split - 1}, and one built without it none (it takes one for "
            "a message it cannot read): cannot tell how qmail was built; remove the stray "
            "directories by hand, or make the missing ones if qmail uses big-todo")
    return Problem(
        "split-mismatch", dirs[0],
        f"{some(dirs)} would be big-todo split directories, but {some(flat)} sit directly "
        "in todo/ or intd/, as without big-todo: cannot tell how qmail was built, and "
        "moving the messages to the wrong place hides them from qmail-send; remove the "
        "stray directories (or move the files into them) by hand")


def _astray(dump: Dump, split: int) -> list[QueueFile]:
    """The message files of mess, info, local and remote outside the split directory
    ``split`` gives them (a repair's temporary names left out)."""
    return [qf for qf in queue_files(dump)
            if qf.area in SPLIT_AREAS and qf.msg_id is not None and qf.temp_for is None
            and qf.split_dir is not None and dir_number(qf.split_dir) != qf.msg_id % split]


def _split_doubt(dump: Dump, layout: Layout, tree: int, whole: bool) -> Problem | None:
    """A ``split-mismatch`` when the split count read from the tree may be wrong and
    message files sit outside the directory it gives them: moved there, they would be
    out of reach of a qmail built with another conf-split. It may be wrong when split
    directories are missing in every area
    (:func:`~mailplan.queue.grouping.tree_complete`), or, in a tree whole up to a count
    below 23, when fewer files are astray under 23, qmail's default (its top split
    directories gone in every area)."""
    astray = _astray(dump, layout.split)
    if not astray:
        return None
    first = min(astray, key=lambda qf: (qf.area != "mess", qf.entry.path))
    if whole:
        if layout.split >= DEFAULT_SPLIT or \
                len(_astray(dump, DEFAULT_SPLIT)) >= len(astray):
            return None
        why = (f"the tree has split directories 0..{tree - 1}, but {len(astray)} message "
               "file(s), this one among them, sit outside the directories that count gives "
               f"them, and fewer outside those of {DEFAULT_SPLIT}, qmail's default: the top "
               "split directories may be gone")
    else:
        why = (f"split directories are missing in every area (the highest is {tree - 1}), "
               "so the split count cannot be read from the tree, and under split "
               f"{layout.split} {len(astray)} message file(s), this one among them, sit "
               "outside the directory qmail would open")
    return Problem(
        "split-mismatch", first.entry.path,
        f"{why}: moving them could put them out of its reach. Pass --split with the "
        f"conf-split qmail was built with ({DEFAULT_SPLIT} unless it was built otherwise)")


def check(dump: Dump, layout: Layout, *, stale_after: int = STALE_AFTER) -> Report:
    """Everything wrong with the queue in ``dump``."""
    report = Report(layout)
    missing = [n for n in ("qmailq", "qmails", "qmailr") if n not in dump.users]
    missing += [f"group {n}" for n in ("qmail",) if n not in dump.groups]
    if missing:
        report.problems.append(Problem(
            "no-users", ".", f"the host has no {', '.join(missing)}: owners cannot be "
            "checked or fixed; is qmail installed?"))
    tree = tree_split(dump)
    whole = tree is not None and tree_complete(dump, tree)
    doubt = None if tree is None or layout.given else _split_doubt(dump, layout, tree, whole)
    if doubt is not None:
        report.problems.append(doubt)
        report.notes.append("nothing else was checked: it depends on the split count")
        return report
    # --split 23 on a tree whole up to fewer directories whose files all sit where 23
    # puts them: its top split directories are gone, and repair makes them again
    regrow = layout.split == DEFAULT_SPLIT and tree is not None and tree < DEFAULT_SPLIT \
        and not _astray(dump, DEFAULT_SPLIT)
    if whole and tree != layout.split and not regrow:
        # Another --split than the tree's: every message would look misplaced and be
        # moved out of qmail's reach. Nothing else is checked until --split is right.
        report.problems.append(Problem(
            "split-mismatch", "mess", f"the tree has split directories 0..{tree - 1} "
            f"(conf-split {tree}), not 0..{layout.split - 1}; pass --split {tree}, or leave "
            "--split out: the tree's split count is the default"))
        report.notes.append("nothing else was checked: it depends on the split count")
        return report
    doubt = _big_todo_doubt(dump, layout)
    if doubt is not None:
        report.problems.append(doubt)
        report.notes.append("nothing else was checked: it depends on whether todo/ and "
                            "intd/ are split (big-todo)")
        return report
    _check_dirs(dump, layout, report)
    _check_lock(dump, report)
    files = queue_files(dump)
    removed: set[str] = set()
    for qf in files:
        if qf.msg_id is None:
            report.problems.append(Problem("stray-file", qf.entry.path,
                                           "not a qmail message file (name is not an id)",
                                           _remove([qf])))
            removed.add(qf.entry.path)
    grouped = by_id(files)
    renames = Renames.of(files, grouped, layout)
    for msg_id, areas in sorted(grouped.items()):
        removed |= _check_message(msg_id, areas, dump, renames, stale_after, report)
    for qf in files:
        if qf.entry.path not in removed:
            want = MESSAGE_FILES[qf.area]
            if qf.entry.kind != "f":
                report.problems.append(Problem("wrong-type", qf.entry.path,
                                               "should be a regular file; look at it"))
            else:
                report.problems += _attrs(qf.entry, want, dump.users, dump.groups)
    for entry in dump.entries.values():
        if len(entry.parts) == 2 and entry.parts[0] == "pid" and \
                dump.now - entry.touched >= stale_after:
            report.problems.append(Problem("stale-pid", entry.path,
                                           "leftover qmail-queue pid file",
                                           _remove([QueueFile("pid", None, None, entry)])))
    return report


def repair_actions(report: Report) -> list[dict[str, object]]:
    """The agent actions that fix every repairable problem, in a safe order."""
    actions = [a for p in report.problems for a in p.actions]
    return [a.op for a in sorted(actions, key=lambda a: a.phase)]
