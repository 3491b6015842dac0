"""Which message each file of a queue belongs to (pure functions over a dump).

qmail names a message by the inode number of its mess file and finds its other files by
that name alone, in split directory ``ID mod conf-split`` of mess/, info/, local/ and
remote/ (and of todo/ and intd/ with big-todo). Here are: what id a file name stands for
(a repair's temporary name ``.mailplan-OLD-NEW`` included), the split count a tree was
made with, and the grouping of every file of the message areas by id, which
:mod:`mailplan.queue.model` turns into messages and :mod:`mailplan.queue.check` checks.
"""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass

from mailplan.queue.dump import Dump, Entry
from mailplan.queue.layout import DEFAULT_SPLIT, MESSAGE_AREAS, SPLIT_AREAS, Layout
from mailplan.text import is_number


@dataclass(frozen=True, slots=True)
class QueueFile:
    """A file in one of the message areas, with the id its name gives."""

    area: str
    msg_id: int | None  # None: the name is not a number
    split_dir: str | None  # the numbered subdirectory it sits in, None in a flat area
    entry: Entry
    temp_for: int | None = None  # a repair's temporary name: the id it was renaming to


def dir_number(name: str) -> int | None:
    """The split number a directory's name stands for, as qmail writes one (fmt_ulong:
    decimal, no leading zero); None for any other name: qmail never opens ``07`` (it
    opens ``7``), nor takes ``00`` in todo/ for a split directory."""
    return int(name) if is_number(name) and (name == "0" or name[0] != "0") else None


def split_counts(dump: Dump) -> dict[str, int]:
    """For each area with numbered subdirectories, one more than the highest of them
    (one pass over the dump, whatever its size)."""
    out: dict[str, int] = {}
    for e in dump.entries.values():
        if e.kind == "d" and len(e.parts) == 2 and e.parts[0] in MESSAGE_AREAS:
            number = dir_number(e.parts[1])
            if number is not None and number >= out.get(e.parts[0], 0):
                out[e.parts[0]] = number + 1
    return out


def tree_split(dump: Dump, counts: dict[str, int] | None = None) -> int | None:
    """The split count the tree was made with: the one most of mess, info, local and
    remote have (mess's on a tie), so that one stray or missing top directory does not
    change it; None for a tree without numbered directories. ``counts``: what
    :func:`split_counts` said of ``dump``, if asked already."""
    counts = split_counts(dump) if counts is None else counts
    found = [counts[a] for a in SPLIT_AREAS if a in counts]
    return Counter(found).most_common(1)[0][0] if found else None


def tree_complete(dump: Dump, split: int) -> bool:
    """Whether one of mess, info, local and remote has every split directory 0..split-1,
    so that the tree's split count is read from a whole area. A restore or a clean-up
    that drops empty directories takes the top ones of every area of a small queue
    (no message with ID mod 23 = 22 leaves mess/22 empty): what is left is no count."""
    have = {(e.parts[0], e.parts[1]) for e in dump.entries.values()
            if e.kind == "d" and len(e.parts) == 2 and e.parts[0] in SPLIT_AREAS}
    return any(all((area, str(n)) in have for n in range(split)) for area in SPLIT_AREAS)


def detect_layout(dump: Dump, split: int | None = None) -> Layout:
    """The layout: ``split`` as given (else the tree's, else 23), big-todo if todo/ or
    intd/ has any numbered subdirectory (not only todo/0: that one may be the missing one).
    A tree whose split count is below 23 with directories missing in every area
    (:func:`tree_complete`) is taken for qmail's default, 23: a qmail built with a smaller
    conf-split made all of its directories; check says when its message files disagree."""
    counts = split_counts(dump)
    big_todo = "todo" in counts or "intd" in counts
    tree = tree_split(dump, counts)
    if split is None and tree is not None and tree < DEFAULT_SPLIT \
            and not tree_complete(dump, tree):
        tree = DEFAULT_SPLIT
    return Layout(split=split or tree or DEFAULT_SPLIT, big_todo=big_todo,
                  given=split is not None)


#: A repair's temporary name: ``.mailplan-OLD-NEW`` (``.mailplan-NEW`` from older
#: versions of mailplan, which did not record the old id).
_TEMP = re.compile(r"^\.mailplan-([1-9][0-9]*)(?:-([1-9][0-9]*))?$")


def temp_name(old: int, new: int) -> str:
    """The temporary name a repair gives a file of message ``old`` on its way to ``new``."""
    return f".mailplan-{old}-{new}"


def name_id(name: str) -> int | None:
    """The message id a file name stands for; a repair's temporary name stands for the id
    the message had when that repair began (both ids are in it)."""
    if is_number(name) and not name.startswith("0"):
        return int(name)
    temp = _TEMP.match(name)
    return int(temp.group(1)) if temp else None


def temp_target(name: str) -> int | None:
    """The id a repair's temporary name was renaming to, None for any other name."""
    temp = _TEMP.match(name)
    return int(temp.group(2) or temp.group(1)) if temp else None


def queue_files(dump: Dump) -> list[QueueFile]:
    """Every non-directory in the message areas, wherever it sits."""
    files: list[QueueFile] = []
    for entry in dump.entries.values():
        parts = entry.parts
        if len(parts) < 2 or parts[0] not in MESSAGE_AREAS or entry.kind == "d":
            continue
        split_dir = sys.intern(parts[1]) if len(parts) == 3 else None  # 23 of them
        files.append(QueueFile(parts[0], name_id(parts[-1]), split_dir, entry,
                               temp_target(parts[-1])))
    return files


def by_id(files: list[QueueFile]) -> dict[int, dict[str, list[QueueFile]]]:
    """Message files grouped by id, then by area.

    The files of a message whose renaming (a repair of an inode mismatch) was cut off
    carry several names: the old id, the temporary ``.mailplan-OLD-NEW`` and the new id.
    A temporary name counts only by its NEW (the inode of the mess file the renaming
    was for): its OLD may by now be the inode or the name of another message (the next
    link of a chain of renames, or a message qmail-queue gave a freed inode), whose
    files it never was. A group without a mess file joins the message whose mess file
    has the inode its name gives, so none of it ever passes for an orphan.
    """
    out: dict[int, dict[str, list[QueueFile]]] = defaultdict(lambda: defaultdict(list))
    for qf in files:
        if qf.msg_id is not None:
            out[qf.msg_id][qf.area].append(qf)
    home_of: dict[int, int] = {}  # a mess file's inode -> the id of its group
    for key, areas in out.items():
        for qf in areas.get("mess", []):
            home_of.setdefault(qf.entry.inode, key)
    # A temporary name goes to the message whose mess file has its NEW, also when its
    # OLD now names another message: that one's files it never was.
    for key in list(out):
        for area, qfs in out[key].items():
            if area == "mess":
                continue
            for qf in [qf for qf in qfs if qf.temp_for is not None]:
                home = home_of.get(qf.temp_for, key)
                if home != key:
                    qfs.remove(qf)
                    out[home][area].append(qf)
    for key in [k for k, areas in out.items() if not any(areas.values())]:
        del out[key]
    for key in [k for k, areas in out.items() if not areas.get("mess")]:
        wanted = {key if qf.temp_for is None else qf.temp_for
                  for qfs in out[key].values() for qf in qfs}
        homes = {home_of[i] for i in wanted if i in home_of}
        if len(homes) == 1:
            home = homes.pop()
            for area, qfs in out.pop(key).items():
                out[home][area] += qfs
    return out


#: Message files by id, then by area (:func:`by_id`).
Groups = dict[int, dict[str, list[QueueFile]]]


def grouped(dump: Dump) -> Groups:
    """The message files of ``dump`` by id (:func:`by_id` of :func:`queue_files`)."""
    return by_id(queue_files(dump))
