"""Apply a plan: run its changes in order, verifying and journaling each before the next.

:func:`apply_plan` carries out a :class:`~mailplan.engine.Planned` under the state lock
and the target's apply lock (the caller holds both: :mod:`mailplan.target_lock`):
accounts and routing one at a time in one remote shell, then the mailbox imports,
``parallel`` users at a time (:mod:`mailplan.importer`). Every apply first settles the
steps an earlier run began and did not record, drops the records of objects removed by
hand since (:func:`settle_intents`) and records the checkpoints of mailboxes the plan
found complete; for a plan with no change to make,
:func:`record_settled` does only that.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from mailplan.commands import Context, creation_claim, execute
from mailplan.connectors.base import abort_all
from mailplan.engine import Planned
from mailplan.errors import MailboxesRefused, MailboxRefused, MailplanError, StepFailed
from mailplan.importer import EarlyAgent, MailImporter, user_dirs
from mailplan.plan import MAIL_KINDS, Change
from mailplan.records import found, gone_id
from mailplan.remote import ShellSession
from mailplan.state import State


def _import_mail(planned: Planned, ctx: Context, changes: list[Change], parallel: int,
                 record: Callable[[str, dict[str, Any]], None],
                 finished: Callable[[Change, dict[str, Any]], None],
                 on_step: Callable[[Change, str], None],
                 on_mail: Callable[[Change, int, int], None] | None,
                 early: EarlyAgent | None = None, *,
                 on_refused: Callable[[Change, MailboxRefused], None]) -> None:
    """Mailbox imports, ``parallel`` users at a time. Each worker keeps one remote shell
    and one writer agent for all the users it takes (never one per user; the first
    worker takes the ``early`` one); the users' directories come from the plan's facts,
    and those created by this apply are asked for in one batch. A mailbox the writer
    refuses (``MailboxRefused``: a folder restored as root) fails alone: it is told to
    ``on_refused`` at once, the others go on, and the refused ones are raised together
    at the end (``MailboxesRefused``); any other failure (a lost connection, a full
    disk) stops every worker, as a stop does (``on_refused`` has the refusals met: the
    summary and closing error of :class:`~mailplan.watch.ApplyWatch` name them)."""
    by_user: dict[str, list[Change]] = {}
    for change in changes:
        by_user.setdefault(f"{change.user}@{change.domain}", []).append(change)
    if not by_user:
        return
    known = {f"{u}@{d}": user.dir for d, dom in planned.target.domains.items()
             for u, user in dom.users.items()}
    dirs = {a: known[a] for a in by_user if a in known}
    dirs.update(user_dirs(planned.target_connector, ctx.vpopmail_dir,
                          [a for a in by_user if a not in dirs]))
    todo: queue.SimpleQueue[list[Change]] = queue.SimpleQueue()
    for group in by_user.values():
        todo.put(group)
    stop = threading.Event()
    source = planned.connectors[planned.spec.data["source"]["host"]]
    mboxrd = bool(planned.spec.data["source"].get("mboxrd", False))

    workers = max(1, min(parallel, len(by_user)))
    # the mailboxes the writer refused (a folder restored as root), each with its error;
    # nothing of them is visible unjournaled (the importer drops its writer unsynced)
    refused: list[tuple[str, str, MailboxRefused]] = []
    lock = threading.Lock()

    def worker() -> None:
        # a single worker uses the connection's shared shell; several keep one each, so
        # that their commands do not wait for each other
        with (ShellSession(planned.target_connector) if workers > 1
              else nullcontext(planned.target_connector.shell())) as session:
            importer = MailImporter(source, planned.target_connector, session,
                                    ctx.vpopmail_dir, mboxrd, record, on_mail, user_dirs=dirs,
                                    agent=early.take() if early is not None else None,
                                    zone=planned.source_zone)
            try:
                while not stop.is_set():
                    try:
                        group = todo.get_nowait()
                    except queue.Empty:
                        return
                    # vpopmail's maildirsize, counted into by each batch, is recounted
                    # once per user, after the last import (every folder is counted)
                    last = [c for c in group if c.kind == "mailbox"][-1:]
                    for change in group:
                        on_step(change, "start")
                        try:
                            effect = importer.run(change, planned.mail_jobs[change.id],
                                                  recount=change in last)
                        except MailboxRefused as exc:  # that mailbox only: said at the end
                            with lock:
                                refused.append((change.id, change.address, exc))
                            on_refused(change, exc)
                            continue
                        finished(change, effect)
            except BaseException:
                stop.set()  # the other workers finish their current user, then stop
                raise
            finally:
                importer.close()

    pool = ThreadPoolExecutor(max_workers=workers)
    failed: BaseException | None = None
    try:
        futures = [pool.submit(worker) for _ in range(workers)]
        for future in as_completed(futures):
            failed = future.exception()
            if failed is not None:
                stop.set()  # the other workers finish their current user (or batch)
                break
        pool.shutdown(wait=True)
    except KeyboardInterrupt:
        # stopping at once, in this thread (a worker's StopRequested, the safe point, is
        # ``failed``): a worker may wait on a hung command; the connections go first,
        # which ends every worker's command, then the workers are waited for
        stop.set()
        abort_all(planned.connectors.values())
        pool.shutdown(wait=True)
        raise
    if failed is not None:  # a failure, or a stop asked for (StopRequested)
        raise failed
    if refused:  # the others are done: the apply fails, naming each
        raise MailboxesRefused(refused, host=planned.target_connector.name)


@dataclass
class ApplyResult:
    """What an apply did."""

    done: list[Change]
    skipped_deletes: list[Change]


def apply_plan(planned: Planned, state: State, *, prune: bool, parallel: int = 1,
               on_step: Callable[[Change, str], None] = lambda c, s: None,
               on_mail: Callable[[Change, int, int], None] | None = None,
               on_note: Callable[[Change, str], None] = lambda c, t: None,
               on_refused: Callable[[Change, MailboxRefused], None] = lambda c, e: None,
               ) -> ApplyResult:
    """Run the plan's changes in order, verifying and journaling each (caller holds the lock).

    Accounts and routing run one at a time in one remote shell; mailbox imports run
    after them, ``parallel`` users at a time (each worker with its own remote shell and
    writer agent; the journal is shared under a lock). ``on_mail(change, messages,
    bytes)`` is told about each durable, journaled batch of a mailbox import;
    ``on_note(change, text)`` about what a finished step says for the operator (its
    effect's ``notes``: IMAP keywords a mailbox could not carry, a lock that left no room
    for the hash behind its '!'), before its ``done``; ``on_refused(change, error)``
    about each mailbox the writer refused, when it does (the apply goes on without it).
    """
    changes = [c for c in planned.plan.changes if prune or c.action != "delete"]
    skipped = [c for c in planned.plan.changes if c not in changes]
    tgt = planned.spec.data["target"]
    ctx = Context(planned.desired, tgt.get("vpopmail_dir", "/home/vpopmail"),
                  planned.target_connector.name)
    done: list[Change] = []
    lock = threading.Lock()

    def record(change_id: str, effect: dict[str, Any]) -> None:
        with lock:
            state.record(change_id, effect)

    def finished(change: Change, effect: dict[str, Any]) -> None:
        record(change.id, effect)
        with lock:
            done.append(change)
        for text in effect.get("notes", ()):
            on_note(change, text)
        on_step(change, "done")

    state.begin(planned.plan.plan_id)
    result = "failed"
    try:
        settle_intents(planned, state)
        _record_settled(planned, record)
        early = None
        if any(c.kind in MAIL_KINDS for c in changes):  # the writer agents will stream
            planned.target_connector.prepare_streams()
            early = EarlyAgent(planned.target_connector)  # starts during the accounts
        try:
            session = planned.target_connector.shell()
            for change in [c for c in changes if c.kind not in MAIL_KINDS]:
                on_step(change, "start")
                claim = creation_claim(ctx, change)
                if claim is not None:
                    state.intend(change.id, claim)
                try:
                    effect = execute(session, ctx, change)
                except StepFailed as exc:
                    # the tool said no, or its result was not what was asked: never
                    # claim what may not be there (kept on a lost connection or a kill,
                    # settled by the next apply from what it finds). A domain is made in
                    # two commands: failed at the second (the spec's postmaster password),
                    # it is there, with vadddomain's random one, and stays claimed, as
                    # does whatever a failing vadddomain left and a user vadduser made
                    # whose read-back differs (StepFailed.made); a domain made by hand
                    # since the plan is refused before vadddomain, and never claimed
                    if claim is not None and not exc.made:
                        state.drop_intent(change.id)
                    raise
                finished(change, effect)
            _import_mail(planned, ctx, [c for c in changes if c.kind in MAIL_KINDS],
                         parallel, record, finished, on_step, on_mail, early,
                         on_refused=on_refused)
        finally:
            if early is not None:
                early.discard()
        result = "ok"
    except KeyboardInterrupt:
        result = "interrupted"
        raise
    finally:
        with lock:
            _finish(state, result, {"changes_done": len(done), "changes_planned": len(changes)})
    return ApplyResult(done, skipped)


def settle_intents(planned: Planned, state: State) -> None:
    """Settle the steps an earlier run began and did not record (``State.intend``): one
    whose object the plan found on the target is recorded as mailplan's (the plan
    creates only what the target lacks); any other is forgotten (it did not get that far,
    or what is there cannot be told from something made by hand since: never claimed).
    Then drop the records of objects the plan found gone (``Planned.gone``: removed by
    hand). Runs at the start of every apply (inside ``state.begin``)."""
    again = {c.id for c in planned.plan.changes}
    for change_id, claim in state.intents().items():
        if change_id not in again and found(planned.target, planned.routing_seen, claim):
            state.record(change_id, {**claim, "adopted": True, **_postmaster_set(
                planned, claim)})
        else:
            state.drop_intent(change_id)
    for claim in planned.gone:  # removed by hand since mailplan made them: not ours now
        state.record(gone_id(claim), {**claim, "deleted": True, "gone": True})


def _postmaster_set(planned: Planned, claim: dict[str, Any]) -> dict[str, Any]:
    """For a domain (a user) found after a cut: ``postmaster_set`` (``password_set``) when
    the plan has no postmaster (user) password left to set there (the spec's, or the
    source's hash, took effect before the cut, or the spec gives none), so that
    ``create_only`` keeps what is set there from now on."""
    if claim.get("routing") is not None:
        return {}
    user = claim.get("user")
    left = any((c.action, c.kind, c.domain, c.user) == ("update", "password", claim["domain"],
                                                         user or "postmaster")
               for c in planned.plan.changes)
    return {} if left else {"password_set": True} if user else {"postmaster_set": True}


def _finish(state: State, result: str, summary: dict[str, Any]) -> None:
    """End the apply's record. When that fails (a full disk) while the apply's own error
    is on its way, that error goes on and says both: it is what went wrong first."""
    pending = sys.exc_info()[1]
    try:
        state.finish(result, summary)
    except MailplanError as exc:
        if not isinstance(pending, MailplanError):
            raise
        pending.message += f"\n  then the state could not be saved: {exc.message}"


def _record_settled(planned: Planned, record: Callable[[str, dict[str, Any]], None]) -> None:
    for entry in planned.mail_settled:
        record(f"checkpoint {entry['mailbox']}", entry)


def record_settled(planned: Planned, state: State) -> int:
    """For an apply with no change to make: record the checkpoints of mailboxes the plan
    found complete, and settle the steps an earlier run began and did not record and the
    records of objects removed by hand (nothing is written on either host); return how
    many checkpoints."""
    if not planned.mail_settled and not state.intents() and not planned.gone:
        return 0
    state.begin(planned.plan.plan_id)
    result = "failed"
    try:
        settle_intents(planned, state)
        _record_settled(planned, state.record)
        result = "ok"
    finally:
        state.finish(result, {"changes_done": 0, "changes_planned": 0,
                              "checkpoints_recorded": len(planned.mail_settled)})
    return len(planned.mail_settled)
