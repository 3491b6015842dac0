"""Bounded retries of an apply after a transient failure: reconnect, re-plan, go on.

Only two failures are retried: a lost connection (:class:`~mailplan.errors.ConnectionLost`)
and a source mailbox that changed while it was read
(:class:`~mailplan.errors.SourceChanged`). Nothing is ever re-sent blindly: a retry
closes every connection, folds the journal of what was verified so far into the state,
reads both hosts again and computes a fresh plan, exactly as an administrator's second
``mailplan apply`` would. A step cut off mid-way is therefore judged by what the target
now holds (a user that was created is not created twice; a message that became durable
is not written again). A saved plan stays binding: the fresh plan may only contain
changes the saved one already had.

How often and how long to wait come from the spec's host entry of the host that failed
(``retries``, default 3; ``retry_delay`` seconds, default 2, doubled after each attempt,
at most 60). ``retries: 0`` turns retrying off. The wait is the caller's ``sleep``:
apply's ends on a stop request, a safe point (:meth:`mailplan.watch.ApplyWatch.pause`),
and the state's history then says the apply was interrupted, as its log does (the
attempt the failure cut off had recorded it failed).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from mailplan.apply import ApplyResult, apply_plan
from mailplan.engine import Planned, beyond
from mailplan.errors import (
    ConnectionLost,
    HostError,
    MailplanError,
    SourceChanged,
    StalePlanError,
)
from mailplan.plan import Change, Plan
from mailplan.state import State

DEFAULT_RETRIES = 3
DEFAULT_DELAY = 2.0
MAX_DELAY = 60.0
TRANSIENT = (ConnectionLost, SourceChanged)


def retry_policy(spec_data: dict[str, Any], host: str) -> tuple[int, float]:
    """(retries, first delay) for ``host``, from its spec entry (the target's if unknown)."""
    hosts = spec_data["hosts"]
    entry = hosts.get(host) or hosts[spec_data["target"]["host"]]
    return (int(entry.get("retries", DEFAULT_RETRIES)),
            float(entry.get("retry_delay", DEFAULT_DELAY)))


def backoff(delay: float, attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based)."""
    return min(delay * 2 ** (attempt - 1), MAX_DELAY)


def _within(saved: Plan, fresh: Plan) -> None:
    extra = beyond(saved, fresh)
    if extra:
        c = extra[0]
        raise StalePlanError(f"after reconnecting, the target needs a change the saved "
                             f"plan does not have ({c.symbol} {c.kind} {c.address})",
                             hint="run `mailplan plan` again and review the new plan")


def _with_step(exc: HostError, step: str | None) -> HostError:
    if exc.step is not None or step is None:
        return exc
    prefix = f"host {exc.host}: "
    raw = exc.message[len(prefix):] if exc.message.startswith(prefix) else exc.message
    return type(exc)(raw, host=exc.host, step=step, hint=exc.hint)


def apply_with_retries(planned: Planned, state: State, *, saved: Plan | None,
                       replan: Callable[[State], Planned], prune: bool, parallel: int = 1,
                       on_step: Callable[[Change, str], None] = lambda c, s: None,
                       on_retry: Callable[[HostError, int, float], None] = lambda e, n, s: None,
                       sleep: Callable[[float], None] = time.sleep,
                       **options: Any) -> ApplyResult:
    """``apply_plan`` with bounded reconnect-and-replan retries (the caller holds the state
    lock and closes ``planned``; plans made here are closed here; ``replan`` connects
    anew, taking the target's apply lock again on the new connection, as the CLI's does:
    :mod:`mailplan.target_lock`). ``options`` go to ``apply_plan`` unchanged."""
    current: dict[str, str | None] = {"step": None}
    done: list[Change] = []

    def track(change: Change, phase: str) -> None:
        if phase == "start":
            current["step"] = f"{change.symbol} {change.kind} {change.address}"
        elif phase == "done":
            done.append(change)
        on_step(change, phase)

    attempt = 0
    mine: list[Planned] = []
    live: Planned | None = planned
    between = False  # an attempt recorded itself failed, and no other has begun
    try:
        while True:
            try:
                if live is None:
                    live = replan(state)
                    mine.append(live)
                    if saved is not None:
                        _within(saved, live.plan)
                if saved is not None:
                    # the apply carries out the saved plan: its id goes into the state's
                    # history, so running that plan file again is recognised as a resume
                    live.plan.plan_id = saved.plan_id
                between = False  # this attempt records how it ends
                result = apply_plan(live, state, prune=prune, parallel=parallel,
                                    on_step=track, **options)
                return ApplyResult(done, result.skipped_deletes)
            except TRANSIENT as exc:
                between = True
                failed = _with_step(exc, current["step"])
                retries, delay = retry_policy(planned.spec.data, failed.host)
                attempt += 1
                if attempt > retries:
                    if retries:
                        failed.message += f" (gave up after {retries} retries)"
                    failed.hint = failed.hint or ("once the host is reachable, the same "
                                                  "apply resumes from the state file and "
                                                  "re-reads the target")
                    raise failed from None
                wait = backoff(delay, attempt)
                on_retry(failed, attempt, wait)
                if live is not None:
                    live.close()
                live = None  # the step cut off stays named: a failed re-plan names it
                sleep(wait)
                state = State.load(state.path)
    except KeyboardInterrupt:
        # a stop request ended the wait (or the re-plan after it): the apply ends
        # interrupted, as its log says, not failed as the cut off attempt recorded
        if between:
            # the stop goes on, also when that record cannot be saved (a full disk)
            with contextlib.suppress(MailplanError):
                state.interrupted()
        raise
    finally:
        for p in mine:
            p.close()
