"""How an apply that an exception ended is summed up (:class:`~mailplan.watch.ApplyWatch`).

The summary's result says what ended it: the operator did not confirm (:class:`Cancelled`),
a saved plan gone stale, a signal or a failure before the first change (nothing was
changed), or one after it. Its ``failed`` lines give each change that failed, each with
its own error, and ``not finished`` counts the others, which the same command again does.

A mailbox the writer refused (:class:`~mailplan.errors.MailboxRefused`: a Maildir folder
restored as root) fails alone and the imports go on. When something else then ends the
apply (a lost connection, a full disk, Ctrl-C, SIGTERM), :func:`also_refused` gives that
error the refusals met (``refused`` and ``failures``, change id -> that mailbox's error),
so that each refused mailbox is said failed with its own cause and remedy (the ``chown``),
never as not finished nor with the error that stopped the apply, and the apply's closing
error names them (:func:`refused_text`); without it, only the next run said them.
"""

from __future__ import annotations

from mailplan.applylog import Summary
from mailplan.errors import MailboxRefused, MailplanError, StalePlanError
from mailplan.interrupt import by_signal
from mailplan.plan import Change
from mailplan.text import escape, escape_lines

#: the mailboxes the writer refused: change id, mailbox address, the refusal
Refusals = list[tuple[str, str, MailboxRefused]]


class Cancelled(MailplanError):
    """The operator did not confirm the plan: nothing was started."""


def also_refused(failed: BaseException, refused: Refusals) -> None:
    """Give the error that ended the imports (``failed``: a failure, or a stop a signal
    asked for) the mailboxes the writer refused before: ``failures`` (change id -> its
    own error, which the summary gives for each failed step) and ``refused``; a
    failure's message names them too (a stop's is :class:`ApplyWatch`'s, which does)."""
    if not refused:
        return
    failed.refused = [*getattr(failed, "refused", []), *refused]  # type: ignore[attr-defined]
    failed.failures = {**getattr(failed, "failures", {}),  # type: ignore[attr-defined]
                       **{change_id: exc for change_id, _a, exc in refused}}
    if isinstance(failed, MailplanError):
        failed.message += refused_text(refused)


def refused_text(refused: Refusals) -> str:
    """The lines that name the mailboxes the writer refused, each with its refusal, after
    the message of the error that ended the apply ("" for none)."""
    if not refused:
        return ""
    return f"\n  also not imported: {len(refused)} mailbox(es) the writer refused:\n" + \
        "\n".join(f"    {address}: {exc.reason}" for _id, address, exc in refused)


def outcome(summary: Summary, exc: BaseException, *, planned: int, done: int,
            running: list[Change], interrupted: bool, not_started: bool,
            signum: int) -> None:
    """Fill ``summary`` for an apply that ``exc`` ended: its result, the changes failed
    and those not finished. ``planned``: the changes it was to make, ``done`` of them
    made; ``running``: those begun and not done (a failed or refused step among them);
    ``signum``: the signal that asked to stop."""
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
        failures = getattr(exc, "failures", {})
        # interrupted: a step begun is not finished, unless the writer refused it; failed:
        # each step begun failed, with the error that stopped it unless it has its own
        failed = [c for c in running if c.id in failures] if interrupted else running
        summary.unfinished = max(0, planned - done - len(failed))
        summary.failed = [f"{c.symbol} {c.kind} {escape(c.address)}: " + escape(
            (str(failures.get(c.id, exc)).splitlines() or [""])[0]) for c in failed]
        if not interrupted and not failed:
            summary.failed = [escape_lines(str(exc))]
