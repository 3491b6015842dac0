"""How an apply that an exception ended is summed up (:class:`~mailplan.watch.ApplyWatch`).

The summary's result says what ended it: the operator did not confirm (:class:`Cancelled`),
a saved plan gone stale, a signal or a failure before the first change (nothing was
changed), or one after it. Its ``failed`` lines give each change that failed, each with
its own error, and ``not finished`` counts the others, which the same command again does.

A mailbox the writer refused (:class:`~mailplan.errors.MailboxRefused`: a Maildir folder
restored as root) fails alone and the imports go on. Each refusal is told to the apply's
:class:`Refusals` as it happens (``apply_plan``'s ``on_refused``), so whatever then ends
the apply (a lost connection, a full disk, Ctrl-C, SIGTERM, a stop while a retry waits,
or the end of the imports) each refused mailbox is said failed with its own cause and
remedy (the ``chown``), never as not finished nor with the error that stopped the apply,
and the apply's closing error names them (:meth:`Refusals.text`, :meth:`Refusals.name_in`).
One imported by a later attempt of the same apply (a retry after the ``chown``) is
dropped from them.
"""

from __future__ import annotations

import threading

from mailplan.applylog import Summary
from mailplan.errors import MailboxesRefused, MailboxRefused, MailplanError, StalePlanError
from mailplan.interrupt import by_signal
from mailplan.plan import Change
from mailplan.text import escape, escape_lines


class Cancelled(MailplanError):
    """The operator did not confirm the plan: nothing was started."""


class Refusals:
    """The mailboxes the writer refused during one apply, in the order met (each change
    once: a later attempt's refusal replaces an earlier one's); thread-safe (the import
    workers tell them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._met: dict[str, tuple[str, MailboxRefused]] = {}

    def add(self, change: Change, exc: MailboxRefused) -> None:
        """The writer refused ``change``'s mailbox."""
        with self._lock:
            self._met.pop(change.id, None)
            self._met[change.id] = (change.address, exc)

    def done(self, change_id: str) -> None:
        """A later attempt imported it (a retry after the ``chown``): not refused."""
        with self._lock:
            self._met.pop(change_id, None)

    def failures(self) -> dict[str, MailboxRefused]:
        """Change id -> that mailbox's refusal."""
        with self._lock:
            return {change_id: exc for change_id, (_a, exc) in self._met.items()}

    def text(self, but: frozenset[str] = frozenset()) -> str:
        """The lines that name the refused mailboxes (those in ``but`` left out), each
        with its refusal, after the message of the error that ended the apply ("" for
        none)."""
        with self._lock:
            listed = [(a, exc) for i, (a, exc) in self._met.items() if i not in but]
        if not listed:
            return ""
        return f"\n  also not imported: {len(listed)} mailbox(es) the writer refused:\n" + \
            "\n".join(f"    {address}: {exc.reason}" for address, exc in listed)

    def name_in(self, failed: MailplanError) -> None:
        """Add to the message of the failure that ended the apply the refused mailboxes
        it does not name itself (:class:`MailboxesRefused` names those of its attempt)."""
        named = frozenset(failed.failures) if isinstance(failed, MailboxesRefused) \
            else frozenset()
        failed.message += self.text(but=named)


def outcome(summary: Summary, exc: BaseException, *, planned: int, done: int,
            running: list[Change], interrupted: bool, not_started: bool,
            signum: int, refused: dict[str, MailboxRefused]) -> None:
    """Fill ``summary`` for an apply that ``exc`` ended: its result, the changes failed
    and those not finished. ``planned``: the changes it was to make, ``done`` of them
    made; ``running``: those begun and not done (a failed or refused step among them);
    ``signum``: the signal that asked to stop; ``refused``: change id -> the writer's
    refusal of that mailbox (:meth:`Refusals.failures`)."""
    if isinstance(exc, Cancelled):
        summary.result = "cancelled"
    elif isinstance(exc, StalePlanError):
        summary.result = "not applied: the saved plan is stale"
    elif not_started and interrupted:
        summary.result = (f"interrupted{by_signal(signum)} before the first change: "
                          "nothing was changed")
    elif not_started:
        summary.result = "failed before the first change: nothing was changed"
        summary.failed = [escape_lines(str(exc))]
    else:
        summary.result = "interrupted" if interrupted else "failed"
        # interrupted: a step begun is not finished, unless the writer refused it; failed:
        # each step begun failed, with the error that stopped it unless it has its own
        failed = [c for c in running if c.id in refused] if interrupted else running
        summary.unfinished = max(0, planned - done - len(failed))
        summary.failed = [f"{c.symbol} {c.kind} {escape(c.address)}: " + escape(
            (str(refused.get(c.id, exc)).splitlines() or [""])[0]) for c in failed]
        if not interrupted and not failed:
            summary.failed = [escape_lines(str(exc))]
