"""Put a message's files where qmail looks for them (pure; a part of
:func:`mailplan.queue.check.check`).

qmail names a message by the inode of its mess file and finds its other files by that
name alone, in split directory ``ID mod conf-split``. A message whose mess file has
another inode (restored from a backup: ``inode-mismatch``), whose files sit in another
split directory (``misplaced``) or that a cut-off repair left under temporary names
(``unfinished-repair``) is renamed through ``.mailplan-OLD-NEW`` names, unless a name it
needs is taken (:meth:`Renames.problem` says why it waits).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailplan.queue.dump import Entry
from mailplan.queue.grouping import QueueFile, temp_name
from mailplan.queue.layout import Layout
from mailplan.queue.problems import RENAME, RENAME_TMP, Action, Problem


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


def _what(msg_id: int, new_id: int, moves: list[tuple[QueueFile, str]], sources: set[str],
          layout: Layout) -> tuple[str, str]:
    """The problem code and the text saying what is wrong with a message to rename."""
    if any(qf.temp_for is not None for qf, _ in moves):
        return "unfinished-repair", (f"message {msg_id}: an earlier repair was cut "
                                     f"off while renaming it to {new_id}; finish it")
    if new_id != msg_id:
        return "inode-mismatch", (f"message {msg_id}: its mess file has inode {new_id} "
                                  f"(restored from a backup?); rename it to {new_id}")
    return "misplaced", f"message {msg_id} has files outside split directory " \
        f"{msg_id % layout.split}: " + ", ".join(sorted(sources))


@dataclass(frozen=True)
class Renames:
    """What deciding on one message's renames needs to know of the whole queue."""

    layout: Layout
    taken: set[str]  # the path of every file in the message areas
    waits: dict[int, set[int]]  # see _waits_for
    carried: dict[int, set[str]]  # OLD of .mailplan-OLD-NEW names -> their paths

    @classmethod
    def of(cls, files: list[QueueFile], grouped: dict[int, dict[str, list[QueueFile]]],
           layout: Layout) -> Renames:
        """The state for ``files`` (grouped by id in ``grouped``)."""
        carried: dict[int, set[str]] = {}
        for qf in files:
            if qf.temp_for is not None and qf.msg_id is not None and qf.msg_id != qf.temp_for:
                carried.setdefault(qf.msg_id, set()).add(qf.entry.path)
        return cls(layout, {qf.entry.path for qf in files}, _waits_for(grouped, layout),
                   carried)

    def problem(self, msg_id: int, mess: Entry, files: list[QueueFile]) -> Problem | None:
        """What is wrong with the names of message ``msg_id`` (its mess file ``mess``,
        all its files ``files``), with the renames when they can be done now; None when
        every file is where qmail looks for it.

        A rename onto a name another message's file holds is refused, also when that file
        would itself be renamed (a chain: each run renames the messages whose names are
        free, so repeated repairs go down the chain; swapped names, a cycle, never free
        up). Files are found by name alone: a run cut off half-way through a swap or a
        chain done in one go would leave files of two messages under one id, which no
        later check could tell apart.
        """
        new_id = mess.inode
        moves = [(qf, self.layout.path(qf.area, new_id)) for qf in files
                 if qf.entry.path != self.layout.path(qf.area, new_id)]
        if not moves:
            return None
        sources = {qf.entry.path for qf, _ in moves}
        clash = [dst for _, dst in moves if dst in self.taken and dst not in sources]
        # temporary names .mailplan-NEW_ID-X of another message's cut-off repair: renamed
        # to NEW_ID now, this message and those files would share one id until that
        # repair is finished, and no later check could tell them apart
        pending = sorted(self.carried.get(new_id, set()) - sources)
        code, text = _what(msg_id, new_id, moves, sources, self.layout)
        if pending and not clash:
            return Problem(code, mess.path, f"{text}; not yet: {', '.join(pending)} of a "
                           f"cut-off repair still carry the id {new_id}: run --repair again "
                           "once it is finished")
        if clash:
            return Problem(code, mess.path, f"{text}; cannot: {', '.join(clash)} already "
                           f"exist{self._blocked_by(msg_id)}")
        return Problem(code, mess.path, text, _moves(msg_id, new_id, moves))

    def _blocked_by(self, msg_id: int) -> str:
        """Whose files hold the names message ``msg_id`` needs, said after ``exist``."""
        others = ", ".join(map(str, sorted(self.waits.get(msg_id, ()))))
        if others and _in_cycle(msg_id, self.waits):
            return (f" and belong to message {others}, whose name is swapped with this one's "
                    "(directly or through others): --repair never renames swapped names; "
                    "see \"Swapped names\" in docs/queue.md")
        if others:
            return (f" and belong to message {others}, which is to be renamed first: run "
                    "--repair again once it is")
        return ""
