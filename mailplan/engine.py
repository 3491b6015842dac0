"""The library entry points behind the CLI: validate, plan and apply a spec.

``make_plan`` reads both hosts (the source read-only, always) and returns the plan with
everything apply needs in memory; ``apply`` carries it out under the state lock,
recording each verified step in the journal before starting the next. A saved plan is
applied only if nothing it was computed from has changed, except when it is the same
plan resuming after an interrupted apply: then the fresh plan must be a subset of it.
"""

from __future__ import annotations

import hashlib
import json
import queue
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any

from mailplan import interpreter
from mailplan.commands import Context, creation_claim, execute
from mailplan.connectors.base import Connector, abort_all
from mailplan.desired import Desired, build_desired
from mailplan.diff import diff
from mailplan.errors import MailplanError, StalePlanError, StepFailed
from mailplan.facts.source import read_source
from mailplan.facts.vpopmail import TargetFacts, read_target
from mailplan.hosts import connect
from mailplan.importer import EarlyAgent, MailImporter, user_dirs
from mailplan.mail.agent_client import PROGRAM as WRITER
from mailplan.mailbox_changes import MailJob
from mailplan.mailboxes import plan_mail
from mailplan.plan import MAIL_KINDS, Change, Plan
from mailplan.remote import ShellSession
from mailplan.routing.integrate import merge_changes, plan_routing
from mailplan.routing.target import TargetRouting
from mailplan.spec import Spec, keeps_passwords, load_spec
from mailplan.state import State, fingerprint_key, locked
from mailplan.text import escape
from mailplan.userdirs import withhold_long_dirs

#: the --state option's help (plan, apply, verify), as ``state_path_for`` decides
STATE_HELP = ("State file (default: the spec's state:, else the spec's name with .state.json "
              "for its extension, beside it: migration.yaml -> migration.state.json).")


def state_path_for(spec: Spec, override: str | Path | None = None) -> Path:
    """``override`` (a --state), the spec's ``state:`` path, or ``<spec name>.state.json``
    beside the spec; links resolved, so that every way to the same file shares its lock,
    journal and key (and a save replaces the file, not the link)."""
    if override:
        return Path(override).resolve()
    if "state" in spec.data:
        return spec.resolve(spec.data["state"]).resolve()
    return spec.path.with_name(spec.path.stem + ".state.json").resolve()


def target_digest(facts: TargetFacts) -> str:
    """A digest of everything read from the target (secrets included, only as a digest)."""
    doc: dict[str, Any] = {"alias_of": facts.alias_of, "domains": {}}
    for name, dom in sorted(facts.domains.items()):
        doc["domains"][name] = {
            "dir": dom.dir, "aliases": list(dom.aliases), "catchall": dom.catchall,
            "users": {u.name: [u.password.reveal(), u.comment, u.flags, u.dir, u.quota]
                      for u in dom.users.values()},
        }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


@dataclass
class Planned:
    """A plan plus what applying it needs (kept in memory, never saved)."""

    spec: Spec
    plan: Plan
    desired: Desired
    target: TargetFacts
    connectors: dict[str, Connector] = field(default_factory=dict)
    mail_jobs: dict[str, MailJob] = field(default_factory=dict)
    #: checkpoints of mailboxes found complete on the target (state only, see
    #: :func:`mailplan.mailboxes.plan_mail`)
    mail_settled: list[dict[str, Any]] = field(default_factory=list)
    #: the source's time zone: dates without a zone in its mailboxes are read in it
    source_zone: tzinfo | None = None
    #: the target's aliases, forwards and alias domains as the plan read them
    routing_seen: TargetRouting | None = None

    @property
    def target_connector(self) -> Connector:
        """The connection to the target host."""
        return self.connectors[self.spec.data["target"]["host"]]

    def close(self) -> None:
        """Close every connection."""
        for conn in self.connectors.values():
            conn.close()


def _connectors(spec: Spec) -> dict[str, Connector]:
    names = {spec.data["source"]["host"], spec.data["target"]["host"]}
    return {n: connect(n, spec.data["hosts"][n]) for n in sorted(names)}


def make_plan(spec: Spec, state: State,
              connectors: dict[str, Connector] | None = None, *,
              strict: bool = False) -> Planned:
    """Read both hosts and compute the plan (nothing is written anywhere)."""
    conns = connectors or _connectors(spec)
    src, tgt = spec.data["source"], spec.data["target"]
    try:
        managed = state.view()
        vpop = tgt.get("vpopmail_dir", "/home/vpopmail")
        # the desired state's domains are the spec's, lower-cased (desired.build_desired),
        # with those mailplan made and those of steps begun and not recorded
        named = {key.lower() for key in spec.data["domains"]} | managed.domains | {
            claim["domain"] for claim in state.intents().values()}
        # two hosts are read at once (each read is a remote command: a shell start-up);
        # on an error nothing waits for the other read: ending the connections ends it
        pool = ThreadPoolExecutor(max_workers=1)
        try:
            target_read = pool.submit(read_target, conns[tgt["host"]], vpop, named) \
                if src["host"] != tgt["host"] else None
            source = read_source(conns[src["host"]], src.get("passwd", "/etc/passwd"),
                                 src.get("shadow", "/etc/shadow"), src.get("timezone"))
            desired = build_desired(spec, source)
            target = target_read.result() if target_read is not None else \
                read_target(conns[tgt["host"]], vpop, named)
        finally:
            pool.shutdown(wait=False)
        withhold_long_dirs(desired, target, vpop)  # paths vpopmail refuses
        result = diff(desired, target, vpop, managed, fingerprint_key(state.path),
                      keep_passwords=keeps_passwords(spec.data))
        routing = plan_routing(spec, conns[src["host"]], conns[tgt["host"]], source, desired,
                               target, state, strict=strict)  # aliases, forwards (issue 4)
        result.changes = merge_changes(result.changes, routing.changes)
        result.problems += routing.problems
        result.noops += routing.noops
        desired.routing = routing.actions
        mail = plan_mail(spec.data, conns[src["host"]], conns[tgt["host"]], desired, source,
                         target, state.mail())  # mailboxes (issue 3)
        if any(c.kind in MAIL_KINDS for c in mail.changes):
            # the writer runs on the target's Python: a missing or too old one is said
            # now, not after the accounts were made
            interpreter.check(conns[tgt["host"]], WRITER, step="check the target's Python")
        result.changes += mail.changes
        result.problems += mail.problems
        result.noops += mail.noops
        warnings = routing.cautions + mail.warnings
    except KeyboardInterrupt:
        # stopping at once (mailplan.interrupt): a read may wait on a hung command, in
        # this thread or the other; the connections go, the caller's included
        abort_all(conns.values())
        raise
    except BaseException:
        if connectors is None:
            for conn in conns.values():
                conn.close()
        raise
    plan = Plan(
        spec_path=str(spec.path.resolve()),
        spec_digest=hashlib.sha256(spec.path.read_bytes()).hexdigest(),
        lineage=state.lineage if state.exists else None,
        serial=state.serial,
        target_digest=target_digest(target),
        changes=result.changes, noops=result.noops, left_alone=result.left_alone,
        problems=result.problems, warnings=warnings,
    )
    return Planned(spec, plan, desired, target, conns, mail.jobs, mail.settled, source.zone,
                   routing.seen)


def _same(a: Change, b: Change) -> bool:
    return (a.id, a.fingerprint, a.after, a.before) == (b.id, b.fingerprint, b.after, b.before)


def same_intent(a: Change, b: Change) -> bool:
    """The same change with the same result (what it finds before may differ: the part
    of the plan already applied changes that, e.g. a new domain's default catch-all)."""
    return (a.id, a.fingerprint, a.after) == (b.id, b.fingerprint, b.after)


def what_is_left(saved: Change, fresh: Change) -> bool:
    """Whether ``fresh`` is what remains of ``saved`` after part of a plan was applied:
    the same intent, or the same mailbox import (its messages already on the target
    are no longer counted, so its figures and fingerprint differ; mail that arrived
    since is imported with the rest), or what is left of the same folder's flags."""
    return same_intent(saved, fresh) or (
        saved.kind == fresh.kind and saved.kind in MAIL_KINDS and saved.id == fresh.id)


def beyond(saved: Plan, fresh: Plan) -> list[Change]:
    """The changes of ``fresh`` that are not what is left of one of ``saved``'s (a saved
    plan being resumed, after an interruption or a reconnect, must have none). A new
    domain is made in two commands (vadddomain with a random postmaster password, then
    the spec's); cut between them, what is left is that password, the same one."""
    known = {c.id: c for c in saved.changes}

    def left(change: Change) -> bool:
        if change.id in known:
            return what_is_left(known[change.id], change)
        made = known.get(f"create-domain:{change.domain}")
        return (made is not None and (change.action, change.kind, change.user)
                == ("update", "password", "postmaster") and bool(made.fingerprint)
                and change.fingerprint == made.fingerprint)

    return [c for c in fresh.changes if not left(c)]


def check_saved(saved: Plan, fresh: Plan, state: State) -> None:
    """Refuse a saved plan that no longer describes what apply would do."""
    rerun = "run `mailplan plan` again and review the new plan"
    if saved.spec_digest != fresh.spec_digest:
        raise StalePlanError("the spec changed since this plan was saved", hint=rerun)
    if saved.lineage != fresh.lineage and saved.lineage is not None:
        raise StalePlanError(f"this plan was made against another state file (lineage "
                             f"{saved.lineage}, now {fresh.lineage})", hint=rerun)
    runs = [h for h in state.data["history"] if h.get("plan_id") == saved.plan_id]
    applied = [h for h in runs if h.get("result") == "ok"]
    if applied:
        raise StalePlanError(f"this plan was already applied (finished "
                             f"{applied[-1].get('finished') or 'earlier'})", hint=rerun)
    if runs:
        # Resuming this very plan: no other apply since (it would have done some of what
        # is left, unreviewed here), and whatever is still to do must be part of it.
        last = state.data["history"][-1]
        if last.get("plan_id") != saved.plan_id:
            raise StalePlanError(f"this plan was interrupted, and another apply ran after it "
                                 f"({last.get('result')}, started {last.get('started')})",
                                 hint=rerun)
        extra = beyond(saved, fresh)
        if extra:
            raise StalePlanError(f"this plan was partly applied and the target has since "
                                 f"changed in other ways ({extra[0].symbol} {extra[0].kind} "
                                 f"{extra[0].address})", hint=rerun)
        return
    if saved.serial != fresh.serial or (saved.lineage is None and fresh.lineage is not None):
        raise StalePlanError(f"the state changed since this plan was saved (serial "
                             f"{saved.serial}, now {fresh.serial})", hint=rerun)
    if saved.target_digest != fresh.target_digest or len(saved.changes) != len(fresh.changes) \
            or not all(_same(a, b) for a, b in zip(saved.changes, fresh.changes, strict=True)):
        raise StalePlanError("the target or the source changed since this plan was saved"
                             f"{_first_difference(saved, fresh)}", hint=rerun)


def _first_difference(saved: Plan, fresh: Plan) -> str:
    """Where a fresh plan first differs from a saved one, for the error (``""``: only in
    what the target holds beyond the changes)."""
    old = {c.id: c for c in saved.changes}
    new = {c.id: c for c in fresh.changes}
    for change in fresh.changes:
        if change.id not in old or not _same(old[change.id], change):
            verb = "now" if change.id not in old else "changed"
            return f" ({verb}: {_shown(change)})"
    for change in saved.changes:
        if change.id not in new:
            return f" (no longer: {_shown(change)})"
    return ""


def _shown(change: Change) -> str:
    """A change as the plan's heading line names it."""
    return escape(f"{change.symbol} {change.kind} {change.address}")


def _import_mail(planned: Planned, ctx: Context, changes: list[Change], parallel: int,
                 record: Callable[[str, dict[str, Any]], None],
                 finished: Callable[[Change, dict[str, Any]], None],
                 on_step: Callable[[Change, str], None],
                 on_mail: Callable[[Change, int, int], None] | None,
                 early: EarlyAgent | None = None) -> None:
    """Mailbox imports, ``parallel`` users at a time. Each worker keeps one remote shell
    and one writer agent for all the users it takes (never one per user; the first
    worker takes the ``early`` one); the users' directories come from the plan's facts,
    and those created by this apply are asked for in one batch."""
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
                    for change in group:
                        on_step(change, "start")
                        finished(change, importer.run(change, planned.mail_jobs[change.id]))
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
    if failed is not None:
        raise failed


@dataclass
class ApplyResult:
    """What an apply did."""

    done: list[Change]
    skipped_deletes: list[Change]


def apply_plan(planned: Planned, state: State, *, prune: bool, parallel: int = 1,
               on_step: Callable[[Change, str], None] = lambda c, s: None,
               on_mail: Callable[[Change, int, int], None] | None = None) -> ApplyResult:
    """Run the plan's changes in order, verifying and journaling each (caller holds the lock).

    Accounts and routing run one at a time in one remote shell; mailbox imports run
    after them, ``parallel`` users at a time (each worker with its own remote shell and
    writer agent; the journal is shared under a lock). ``on_mail(change, messages,
    bytes)`` is told about each durable, journaled batch of a mailbox import.
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
                         parallel, record, finished, on_step, on_mail, early)
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
    Runs at the start of every apply (inside ``state.begin``)."""
    again = {c.id for c in planned.plan.changes}
    for change_id, claim in state.intents().items():
        if change_id not in again and _found(planned, claim):
            state.record(change_id, {**claim, "adopted": True, **_postmaster_set(
                planned, claim)})
        else:
            state.drop_intent(change_id)


def _postmaster_set(planned: Planned, claim: dict[str, Any]) -> dict[str, Any]:
    """For a domain found after a cut: ``postmaster_set`` when the plan has no postmaster
    password left to set there (the spec's took effect before the cut, or the spec gives
    none), so that ``create_only`` keeps what is set there from now on."""
    if claim.get("routing") is not None or claim.get("user"):
        return {}
    left = any((c.action, c.kind, c.domain, c.user) == ("update", "password", claim["domain"],
                                                         "postmaster")
               for c in planned.plan.changes)
    return {} if left else {"postmaster_set": True}


def _found(planned: Planned, claim: dict[str, Any]) -> bool:
    """Whether the plan's reads found the object of a claim on the target."""
    name = claim["domain"]
    domain = planned.target.domains.get(name)
    if domain is None:
        return False
    kind = claim.get("routing")
    if kind is None:
        return not claim.get("user") or claim["user"] in domain.users
    seen = planned.routing_seen
    if seen is None or name not in seen.observed:
        return False
    if kind == "alias":
        return claim["name"] in seen.observed[name].aliases
    if kind == "forward":
        return bool(seen.observed[name].forwards.get(claim["name"]))
    return seen.alias_domain_owner.get(claim["name"]) == name


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
    found complete, and settle the steps an earlier run began and did not record
    (nothing is written on either host); return how many checkpoints."""
    if not planned.mail_settled and not state.intents():
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


def load_for_apply(path: Path) -> tuple[Spec, Plan | None]:
    """``apply`` takes a spec or a saved plan; return the spec and the plan if any."""
    if path.suffix == ".json":
        saved = Plan.load(path)
        return load_spec(saved.spec_path), saved
    return load_spec(path), None


def plan_and_lock(spec: Spec) -> tuple[Path, Any]:
    """The state path and its lock context manager, for apply."""
    path = state_path_for(spec)
    return path, locked(path)


__all__ = ["MailplanError", "Planned", "apply_plan", "check_saved", "load_for_apply",
           "make_plan", "plan_and_lock", "record_settled", "state_path_for", "target_digest"]
