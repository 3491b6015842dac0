"""Check a queue tree the way queue_repair.py does, and say how to repair it (pure).

:func:`check` compares a dump with the expected layout: the directories for the split
count, owners, groups and modes of every directory and file, message files whose name
is not the inode of their mess file (qmail names a message by that inode; restoring a
backup breaks it), files in the wrong split directory, orphans (info, local, remote,
todo, intd or bounce without a mess file), half-written messages that are stale, and
files qmail cannot read. Each :class:`Problem` carries the actions ``--repair`` performs;
an empty list means a human has to look. :func:`repair_actions` orders them.
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
    temp_name,
    tree_split,
)
from mailplan.queue.layout import LOCK_FILES, MESSAGE_AREAS, MESSAGE_FILES, Expect, Layout
from mailplan.queue.problems import (
    ATTRS,
    CREATE,
    MKDIR,
    REMOVE,
    RENAME,
    RENAME_TMP,
    RMDIR,
    STALE_AFTER,
    Action,
    Problem,
    Report,
)


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


def _moves(msg_id: int, new_id: int,
           moves: list[tuple[QueueFile, str]]) -> tuple[Action, ...]:
    """Rename each file to its place through ``.mailplan-OLD-NEW`` in the target directory
    (a file already there, from a cut-off repair, goes on from it). All renames of one
    message form a batch: the agent skips the rest of a batch after its first failure,
    so a message is never left half under one id and half under the other."""
    first, second = [], []
    batch = f"message {msg_id}"
    for qf, dst in moves:
        src = qf.entry.path
        folder = dst.rsplit("/", 1)[0]
        tmp = f"{folder}/{temp_name(msg_id, new_id)}"
        if qf.temp_for == new_id and src.rsplit("/", 1)[0] == folder:
            tmp = src
        if src != tmp:
            first.append(Action(RENAME_TMP, {"op": "rename", "path": src, "to": tmp,
                                             "batch": batch, "ino": qf.entry.inode}))
        second.append(Action(RENAME, {"op": "rename", "path": tmp, "to": dst,
                                      "batch": batch, "ino": qf.entry.inode}))
    return tuple(first + second)


def _waits_for(grouped: dict[int, dict[str, list[QueueFile]]],
               layout: Layout) -> dict[int, set[int]]:
    """For each message whose rename is blocked by another message's files that would
    themselves be renamed away, the ids of those messages."""
    moving: dict[str, int] = {}
    wanted: dict[int, set[str]] = {}
    for msg_id, areas in grouped.items():
        mess = areas.get("mess")
        if not mess:
            continue
        new_id = mess[0].entry.inode
        for qf in (qf for qfs in areas.values() for qf in qfs):
            dst = layout.path(qf.area, new_id)
            if qf.entry.path != dst:
                moving[qf.entry.path] = msg_id
                wanted.setdefault(msg_id, set()).add(dst)
    return {i: {moving[d] for d in dsts if d in moving and moving[d] != i}
            for i, dsts in wanted.items()}


def _in_cycle(msg_id: int, waits: dict[int, set[int]]) -> bool:
    """Whether ``msg_id`` waits, through others, for itself (swapped names)."""
    seen: set[int] = set()
    todo = list(waits.get(msg_id, ()))
    while todo:
        other = todo.pop()
        if other == msg_id:
            return True
        if other not in seen:
            seen.add(other)
            todo += waits.get(other, ())
    return False


def _check_message(msg_id: int, areas: dict[str, list[QueueFile]], dump: Dump,
                   layout: Layout, taken: set[str], waits: dict[int, set[int]],
                   carried: dict[int, set[str]], stale_after: int,
                   report: Report) -> set[str]:
    """Problems of one id; returns the paths that repair removes.

    A rename onto a name another message's file holds is refused, also when that file
    would itself be renamed (a chain: each run renames the messages whose names are
    free, so repeated repairs go down the chain; swapped names, a cycle, never free up).
    Files are found by name alone: a run cut off half-way through a swap or a chain
    done in one go would leave files of two messages under one id, which no later check
    could tell apart.
    """
    all_files = [qf for qfs in areas.values() for qf in qfs]
    if any(qf.entry.kind != "f" for qf in all_files):
        # reported as wrong-type (not repairable): a named pipe, a directory or a link named as
        # a message's file is nobody's message, and nothing under this id is touched
        return set()
    mess = areas.get("mess", [])
    if not mess:
        names = ", ".join(sorted(qf.entry.path for qf in all_files))
        if any(qf.temp_for is not None for qf in all_files):
            report.problems.append(Problem(
                "orphan", str(msg_id), f"files of a cut-off repair, without a mess file: "
                f"{names}; look for the message's mess file by hand"))
            return set()
        report.problems.append(Problem("orphan", str(msg_id),
                                       f"files without a mess file: {names}",
                                       _remove(all_files)))
        return {qf.entry.path for qf in all_files}
    if not areas.get("info") and not areas.get("todo"):
        age = dump.now - mess[0].entry.touched
        if age < stale_after and (areas.get("local") or areas.get("remote")):
            # qmail-queue never writes local/remote: something removed the info file
            names = ", ".join(sorted(qf.entry.path for qf in all_files))
            report.problems.append(Problem(
                "no-info", mess[0].entry.path,
                f"message {msg_id} has recipients but no info file ({names}): qmail-send "
                "never delivers it; look at it (mailplan queue show) and requeue or delete "
                "it by hand"))
        elif age < stale_after:
            report.notes.append(f"message {msg_id} is being queued (mess without info or "
                                f"todo, {age} s old): left alone")
        else:
            doomed = all_files
            report.problems.append(Problem(
                "stale-partial", mess[0].entry.path,
                f"half-written message (mess without info or todo, {age // 3600} h old): "
                "qmail-queue died while queueing it", _remove(doomed)))
            return {qf.entry.path for qf in doomed}
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
    check_contents(areas, report)
    if doubled:
        # renamed or moved, both files would go to one name: the second rename fails
        # and skips the rest, leaving the message half under a temporary name
        return set()
    new_id = mess[0].entry.inode
    moves = [(qf, layout.path(qf.area, new_id)) for qf in all_files
             if qf.entry.path != layout.path(qf.area, new_id)]
    if not moves:
        return set()
    sources = {qf.entry.path for qf, _ in moves}
    clash = [dst for _, dst in moves if dst in taken and dst not in sources]
    # temporary names .mailplan-NEW_ID-X of another message's cut-off repair: renamed to
    # NEW_ID now, this message and those files would share one id until that repair is
    # finished, and no later check could tell them apart
    pending = sorted(carried.get(new_id, set()) - sources)
    if any(qf.temp_for is not None for qf, _ in moves):
        code, text = "unfinished-repair", (f"message {msg_id}: an earlier repair was cut "
                                           f"off while renaming it to {new_id}; finish it")
    elif new_id != msg_id:
        code, text = "inode-mismatch", (f"message {msg_id}: its mess file has inode {new_id} "
                                        f"(restored from a backup?); rename it to {new_id}")
    else:
        code, text = "misplaced", f"message {msg_id} has files outside split directory " \
            f"{msg_id % layout.split}: " + ", ".join(sorted(sources))
    if pending and not clash:
        report.problems.append(Problem(
            code, mess[0].entry.path, f"{text}; not yet: {', '.join(pending)} of a cut-off "
            f"repair still carry the id {new_id}: run --repair again once it is finished"))
    elif clash:
        others = ", ".join(map(str, sorted(waits.get(msg_id, ()))))
        why = ""
        if others and _in_cycle(msg_id, waits):
            why = (f" and belong to message {others}, whose name is swapped with this one's "
                   "(directly or through others): --repair never renames swapped names; "
                   "see \"Swapped names\" in docs/queue.md")
        elif others:
            why = (f" and belong to message {others}, which is to be renamed first: run "
                   "--repair again once it is")
        report.problems.append(Problem(code, mess[0].entry.path,
                                       f"{text}; cannot: {', '.join(clash)} already "
                                       f"exist{why}"))
    else:
        report.problems.append(Problem(code, mess[0].entry.path, text,
                                       _moves(msg_id, new_id, moves)))
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
    if tree is not None and tree != layout.split:
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
    taken = {qf.entry.path for qf in files}
    grouped = by_id(files)
    waits = _waits_for(grouped, layout)
    carried: dict[int, set[str]] = {}  # OLD of .mailplan-OLD-NEW names -> their paths
    for qf in files:
        if qf.temp_for is not None and qf.msg_id is not None and qf.msg_id != qf.temp_for:
            carried.setdefault(qf.msg_id, set()).add(qf.entry.path)
    for msg_id, areas in sorted(grouped.items()):
        removed |= _check_message(msg_id, areas, dump, layout, taken, waits, carried,
                                  stale_after, report)
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
