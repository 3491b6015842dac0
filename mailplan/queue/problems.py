"""What a queue check finds: its problems, each with the actions ``--repair`` performs
(:mod:`mailplan.queue.check` finds them; the agent's ``apply`` mode performs them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mailplan.errors import MailplanError
from mailplan.queue.layout import Layout

#: Repair order: create directories, fix owners and modes, remove, rename through a
#: temporary name (a move onto a name another file still holds is refused as a clash,
#: also when that file is itself to be renamed: swapped names and chains, see
#: ``Renames.problem`` in :mod:`mailplan.queue.renames`), recreate lock files, remove
#: directories that should not exist.
MKDIR, ATTRS, REMOVE, RENAME_TMP, RENAME, CREATE, RMDIR = range(7)

#: qmail-send's own age for cleaning up half-written messages (OSSIFIED, 36 hours).
STALE_AFTER = 129600
#: How long a qmail-queue may live, writing its message (DEATH in qmail-queue.c, 24
#: hours, which "_must_ be below q-s's OSSIFIED"): only a half-written message older
#: than this is known to be written by nobody. The least ``--stale-after`` of a repair.
QUEUE_DEATH = 86400


def refuse_young_stale(stale_after: int) -> None:
    """Refuse a repair whose ``stale_after`` is under :data:`QUEUE_DEATH`: stopping
    qmail-send does not stop qmail-queue (qmail-smtpd goes on accepting mail), and a
    mess file removed under a qmail-queue still writing it is a message its sender was
    told was accepted, left as a todo/ file without a mess file."""
    if stale_after < QUEUE_DEATH:
        raise MailplanError(
            f"refusing to repair with --stale-after {stale_after}s: a half-written "
            "message younger than 24 h may be one qmail-queue is still writing (it gives "
            "up only after 24 h, and stopping qmail-send does not stop it), and removing "
            "it loses a message its sender was told was accepted; nothing was changed",
            hint="leave --stale-after out (36 h, qmail-send's own limit) or give 24h or "
            "more; check without --repair reports with any --stale-after")


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
