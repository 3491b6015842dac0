"""Where qmail keeps each file of a message, and who should own what in the queue.

qmail names a message by the inode number of its ``mess`` file (the id) and spreads the
split areas over ``conf-split`` subdirectories (23 unless qmail was built otherwise):
``mess/N/ID`` with N = ID mod split. ``todo`` and ``intd`` are flat unless qmail was
built with big-todo (then they are split too). Owners and modes are those of a notqmail
install (``reference/qmail-queue``), the same table queue_repair.py uses.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SPLIT = 23
SPLIT_AREAS = ("mess", "info", "local", "remote")
MESSAGE_AREAS = ("mess", "info", "local", "remote", "todo", "intd", "bounce")

#: The order ``delete`` removes a message's files in, so that a delete cut off after any
#: file leaves a state qmail-send handles (qmail-send.c, qmail-clean.c): todo first (with
#: todo/ID and no mess, todo_do fails on every run; with it, qmail-send would preprocess
#: and deliver the message again), intd (a leftover intd/ID makes qmail-queue fail for
#: the next message given that inode), bounce (info and bounce without local/remote make
#: qmail-send send the bounce), local and remote, then info (info alone with mess is a
#: finished message: qmail-send removes info and mess itself; local/remote without info
#: are never seen and stay forever), mess last, as qmail-clean does. What is left is a
#: message qmail-send still delivers or finishes, or a mess file alone (half-written).
REMOVE_ORDER = ("todo", "intd", "bounce", "local", "remote", "info", "mess")


@dataclass(frozen=True)
class Expect:
    """The owner, group and permission bits an object should have (None: any)."""

    kind: str  # d, f or p
    user: str
    group: str | None
    mode: int


#: Top-level directories, relative to the queue directory ("" is the queue itself).
DIRS: dict[str, Expect] = {
    "": Expect("d", "qmailq", "qmail", 0o750),
    "bounce": Expect("d", "qmails", "qmail", 0o700),
    "info": Expect("d", "qmails", "qmail", 0o700),
    "intd": Expect("d", "qmailq", "qmail", 0o700),
    "local": Expect("d", "qmails", "qmail", 0o700),
    "lock": Expect("d", "qmailq", "qmail", 0o750),
    "mess": Expect("d", "qmailq", "qmail", 0o750),
    "pid": Expect("d", "qmailq", "qmail", 0o700),
    "remote": Expect("d", "qmails", "qmail", 0o700),
    "todo": Expect("d", "qmailq", "qmail", 0o750),
}

#: Files in lock/ and how to recreate them (size for tcpto: qmail-remote's table).
LOCK_FILES: dict[str, tuple[Expect, int]] = {
    "lock/sendmutex": (Expect("f", "qmails", "qmail", 0o600), 0),
    "lock/tcpto": (Expect("f", "qmailr", "qmail", 0o644), 1024),
    "lock/trigger": (Expect("p", "qmails", "qmail", 0o622), 0),
}

#: Message files. mess/, todo/ and intd/ keep the group of the process that queued the
#: message (root, a vpopmail user...), so their group is not checked.
MESSAGE_FILES: dict[str, Expect] = {
    "mess": Expect("f", "qmailq", None, 0o644),
    "todo": Expect("f", "qmailq", None, 0o644),
    "intd": Expect("f", "qmailq", None, 0o644),
    "info": Expect("f", "qmails", "qmail", 0o600),
    "local": Expect("f", "qmails", "qmail", 0o600),
    "remote": Expect("f", "qmails", "qmail", 0o600),
    "bounce": Expect("f", "qmails", "qmail", 0o600),
}


@dataclass(frozen=True)
class Layout:
    """The shape of one queue: its split count and whether todo/intd are split."""

    split: int = DEFAULT_SPLIT
    big_todo: bool = False
    #: the split count was given (``--split``), not read from the tree
    given: bool = False

    def is_split(self, area: str) -> bool:
        """Whether ``area`` has numbered subdirectories."""
        return area in SPLIT_AREAS or (self.big_todo and area in ("todo", "intd"))

    def path(self, area: str, msg_id: int) -> str:
        """Where the ``area`` file of message ``msg_id`` lives (relative to the queue)."""
        if self.is_split(area):
            return f"{area}/{msg_id % self.split}/{msg_id}"
        return f"{area}/{msg_id}"

    def split_dirs(self, area: str) -> list[str]:
        """The numbered subdirectories ``area`` must have."""
        return [f"{area}/{n}" for n in range(self.split)] if self.is_split(area) else []

    def expected_dirs(self) -> dict[str, Expect]:
        """Every directory the queue must have, parents before children."""
        out = dict(DIRS)
        for area in MESSAGE_AREAS:
            for sub in self.split_dirs(area):
                out[sub] = DIRS[area]
        return out
