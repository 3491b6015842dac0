"""What a queue check finds: its problems, each with the actions ``--repair`` performs
(:mod:`mailplan.queue.check` finds them; the agent's ``apply`` mode performs them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mailplan.queue.layout import Layout

#: Repair order: create directories, fix owners and modes, remove, rename through a
#: temporary name (a move onto a name another file still holds is refused as a clash,
#: also when that file is itself to be renamed: swapped names and chains, see
#: ``Renames.problem`` in :mod:`mailplan.queue.renames`), recreate lock files, remove
#: directories that should not exist.
MKDIR, ATTRS, REMOVE, RENAME_TMP, RENAME, CREATE, RMDIR = range(7)

#: qmail-send's own age for cleaning up half-written messages (OSSIFIED, 36 hours).
STALE_AFTER = 129600


@dataclass(frozen=True)
class Action:
    """One filesystem change, as the agent's ``apply`` mode takes it."""

    phase: int
    op: dict[str, object]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the queue, and what repair does about it."""

    code: str
    path: str
    message: str
    actions: tuple[Action, ...] = ()

    @property
    def repairable(self) -> bool:
        """Whether ``--repair`` fixes it."""
        return bool(self.actions)


@dataclass
class Report:
    """The outcome of a check."""

    layout: Layout
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
