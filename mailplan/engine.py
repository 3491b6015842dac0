"""The library entry points behind the CLI: load a spec or a saved plan, and plan it.

``make_plan`` reads both hosts (the source read-only, always) and returns the plan with
everything apply needs in memory; :mod:`mailplan.apply` carries it out under the state
lock, recording each verified step in the journal before starting the next. A saved plan
is applied only if nothing it was computed from has changed, except when it is the same
plan resuming after an interrupted apply: then the fresh plan must be a subset of it
(:func:`check_saved`).
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any

from mailplan import interpreter
from mailplan.connectors.base import Connector, abort_all
from mailplan.desired import Desired, build_desired
from mailplan.diff import diff
from mailplan.errors import MailplanError, SpecError, StalePlanError
from mailplan.facts.source import read_spec_source
from mailplan.facts.vpopmail import TargetFacts, read_target
from mailplan.hosts import connect
from mailplan.mail.agent_client import PROGRAM as WRITER
from mailplan.mailbox_changes import MailJob
from mailplan.mailboxes import plan_mail
from mailplan.plan import MAIL_KINDS, Change, Noop, Plan
from mailplan.private_files import fingerprint_key
from mailplan.prune_guard import (
    doomed_domains,
    dropped_domain_users,
    dropped_domains,
    keep_hand_made_aliases,
)
from mailplan.prune_select import select_deletions, shown
from mailplan.records import gone_noops, gone_records
from mailplan.routing.integrate import merge_changes, plan_routing
from mailplan.routing.managed import routing_domains
from mailplan.routing.target import TargetRouting
from mailplan.spec import Spec, keeps_passwords, load_spec
from mailplan.state import State, locked
from mailplan.text import escape
from mailplan.userdirs import withhold_unmakeable

#: the --state option's help (plan, apply, verify), as ``state_path_for`` decides
STATE_HELP = ("State file (default: the spec's state:, else the spec's name with .state.json "
              "for its extension, beside it: migration.yaml -> migration.state.json).")


def state_path_for(spec: Spec, override: str | Path | None = None) -> Path:
    """``override`` (a --state), the spec's ``state:`` path, or ``<spec name>.state.json``
    beside the spec; links resolved, so that every way to the same file shares its lock,
    journal and key (and a save replaces the file, not the link)."""
    if override:
        path = Path(override).resolve()
    elif "state" in spec.data:
        path = spec.resolve(spec.data["state"]).resolve()
    else:
        return spec.path.with_name(spec.path.stem + ".state.json").resolve()
    if path == spec.path.resolve():  # read as a state, it was "damaged: move it aside"
        raise MailplanError(f"{path}: that is the spec itself, not a state file", hint=(
            "leave --state out for the spec's own state file (its state:, else "
            "SPEC.state.json beside it)" if override else "set state: in the spec to "
            "another file, such as migration.state.json"))
    return path


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
    #: claims of the state's records whose objects the plan found gone (removed by
    #: hand): the apply drops them (:mod:`mailplan.records`)
    gone: list[dict[str, Any]] = field(default_factory=list)

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
              strict: bool = False, prune_only: tuple[str, ...] | None = None,
              rescan: bool = False) -> Planned:
    """Read both hosts and compute the plan (nothing is written anywhere); ``prune_only``:
    the kinds of deletion selected with ``--prune-only`` (the others left out:
    :func:`~mailplan.prune_select.select_deletions`); ``rescan``: every mailbox read
    whole, no checkpoint trusted (``--rescan``: :func:`~mailplan.mailboxes.plan_mail`)."""
    state.refuse_other_spec(spec.path)  # before any host is read
    conns = connectors or _connectors(spec)
    src, tgt = spec.data["source"], spec.data["target"]
    try:
        managed = state.view()
        vpop = tgt.get("vpopmail_dir", "/home/vpopmail")
        # the desired state's domains are the spec's, lower-cased (desired.build_desired),
        # with those mailplan made and those of steps begun and not recorded
        spec_domains = {key.lower() for key in spec.data["domains"]}
        named = spec_domains | managed.domains | dropped_domains(managed, spec_domains) | {
            claim["domain"] for claim in state.intents().values()} | routing_domains(
            state.data)  # what it made there is pruned, the spec dropping it (plan_routing)
        # two hosts are read at once (each read is a remote command: a shell start-up);
        # on an error nothing waits for the other read: ending the connections ends it
        pool = ThreadPoolExecutor(max_workers=1)
        try:
            target_read = pool.submit(read_target, conns[tgt["host"]], vpop, named) \
                if src["host"] != tgt["host"] else None
            source = read_spec_source(conns[src["host"]], src)
            desired = build_desired(spec, source)
            target = target_read.result() if target_read is not None else \
                read_target(conns[tgt["host"]], vpop, named)
        finally:
            pool.shutdown(wait=False)
        withhold_unmakeable(desired, target, vpop)  # locked accounts, paths too long
        result = diff(desired, target, vpop, managed, fingerprint_key(state.path),
                      keep_passwords=keeps_passwords(spec.data))
        result.changes = dropped_domain_users(result.changes, target, managed, spec_domains)
        # lines of passwd and shadow read as the old server reads them (plan -v)
        result.noops += [Noop(source.host, None, f"note: {n}") for n in source.notes]
        routing = plan_routing(spec, conns[src["host"]], conns[tgt["host"]], source, desired,
                               target, state, strict=strict,  # aliases, forwards (issue 4)
                               also_listed=doomed_domains(result.changes))
        # vdeldomain removes the domain's aliases too: never those mailplan did not write
        # (listed by routing's read of the target, in its batch)
        result.changes = keep_hand_made_aliases(result.changes, result.problems,
                                                routing.seen.listed if routing.seen else {},
                                                state.data)
        result.changes = merge_changes(result.changes, routing.changes)
        result.problems += routing.problems
        result.noops += routing.noops
        gone = gone_records(state.data, target, routing.seen)
        result.noops += gone_noops(gone)
        desired.routing = routing.actions
        mail = plan_mail(spec.data, conns[src["host"]], conns[tgt["host"]], desired, source,
                         target, state.mail(), rescan=rescan)  # mailboxes (issue 3)
        if any(c.kind in MAIL_KINDS for c in mail.changes):
            # the writer runs on the target's Python: a missing or too old one is said
            # now, not after the accounts were made
            interpreter.check(conns[tgt["host"]], WRITER, step="check the target's Python")
        result.changes += mail.changes
        result.problems += mail.problems
        result.noops += mail.noops
        warnings = result.warnings + routing.cautions + mail.warnings
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
        spec_digest=spec.digest,  # of the bytes load_spec parsed: one read
        lineage=state.lineage if state.exists else None,
        serial=state.serial,
        target_digest=target_digest(target), target_host=spec.data["target"]["host"],
        changes=result.changes, noops=result.noops, left_alone=result.left_alone,
        problems=result.problems, warnings=warnings, rescan=rescan,
    )
    select_deletions(plan, prune_only)
    return Planned(spec, plan, desired, target, conns, mail.jobs, mail.settled, source.zone,
                   routing.seen, gone)


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


def refuse_other_state(saved: Plan, state: State) -> None:
    """Refuse a saved plan made against another state file than ``state`` (said before
    the hosts are read): most often one planned with ``--state`` and applied without. A
    plan made where there was no state file yet is refused once ``state`` exists, unless
    that plan is being resumed (check_saved refused it too, but only after the hosts)."""
    hint = ("apply it with the state file it was planned with: `mailplan apply PLAN "
            "--state FILE`, as given to `mailplan plan --state`; or run `mailplan plan` "
            "again and review the new plan")
    if saved.lineage is None:
        if not state.exists or any(h.get("plan_id") == saved.plan_id
                                   for h in state.data["history"]):
            return
        raise StalePlanError(f"this plan was made where there was no state file yet, and "
                             f"{state.path} is one (lineage {state.lineage})", hint=hint)
    if state.exists and state.lineage == saved.lineage:
        return
    now = f"lineage {state.lineage}" if state.exists else "none there yet"
    raise StalePlanError(f"this plan was made against another state file than {state.path} "
                         f"(lineage {saved.lineage}; {now})", hint=hint)


def saved_rescan(saved: Plan | None, rescan: bool) -> bool:
    """Whether apply reads every mailbox whole (``--rescan``): as asked, or as a saved
    plan was made. A plan saved without it is refused with it (said before the hosts are
    read): its changes were reviewed without the flags a whole read finds."""
    if saved is None:
        return rescan
    if rescan and not saved.rescan:
        raise StalePlanError("this plan was saved without --rescan, and would be applied "
                             "with --rescan (a whole read finds changes it does not hold)",
                             hint="save a plan with `mailplan plan SPEC --rescan -o FILE` "
                             "and apply that, or apply this one without --rescan")
    return saved.rescan


def refuse_applied(saved: Plan, state: State) -> None:
    """Refuse a saved plan the state's history says was applied to the end."""
    applied = [h for h in state.data["history"]
               if h.get("plan_id") == saved.plan_id and h.get("result") == "ok"]
    if applied:
        raise StalePlanError(f"this plan was already applied (finished "
                             f"{applied[-1].get('finished') or 'earlier'})",
                             hint="run `mailplan plan` again and review the new plan")


def check_saved(saved: Plan, fresh: Plan, state: State) -> None:
    """Refuse a saved plan that no longer describes what apply would do."""
    rerun = "run `mailplan plan` again and review the new plan"
    if saved.spec_digest != fresh.spec_digest:
        raise StalePlanError("the spec changed since this plan was saved", hint=rerun)
    if saved.prune_only != fresh.prune_only:  # the deletions it holds are another choice
        raise StalePlanError(f"this plan was saved {_selection(saved)}, and would be applied "
                             f"{_selection(fresh)}", hint=rerun)
    if saved.rescan != fresh.rescan:  # a whole read finds flags an incremental one cannot
        raise StalePlanError(f"this plan was saved {_rescan(saved)}, and would be applied "
                             f"{_rescan(fresh)}", hint=rerun)
    if saved.lineage != fresh.lineage and saved.lineage is not None:
        raise StalePlanError(f"this plan was made against another state file (lineage "
                             f"{saved.lineage}, now {fresh.lineage})", hint=rerun)
    refuse_applied(saved, state)
    runs = [h for h in state.data["history"] if h.get("plan_id") == saved.plan_id]
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


def _selection(plan: Plan) -> str:
    """How a plan's deletions were chosen, for an error."""
    return "without --prune-only" if plan.prune_only is None else \
        f"with {shown(plan.prune_only)}"


def _rescan(plan: Plan) -> str:
    """How a plan's mailboxes were read, for an error."""
    return "with --rescan" if plan.rescan else "without --rescan"


def _first_difference(saved: Plan, fresh: Plan) -> str:
    """Where a fresh plan first differs from a saved one, for the error (``""``: only in
    what the target holds beyond the changes). The same changes in another order come
    from another mailplan version, which ordered a user's changes otherwise."""
    old = {c.id: c for c in saved.changes}
    new = {c.id: c for c in fresh.changes}
    for change in fresh.changes:
        if change.id not in old or not _same(old[change.id], change):
            verb = "now" if change.id not in old else "changed"
            return f" ({verb}: {_shown(change)})"
    for change in saved.changes:
        if change.id not in new:
            return f" (no longer: {_shown(change)})"
    if [c.id for c in saved.changes] != [c.id for c in fresh.changes]:
        return (" (the same changes in another order: the plan was saved by another "
                "mailplan version)")
    return ""


def _shown(change: Change) -> str:
    """A change as the plan's heading line names it."""
    return escape(f"{change.symbol} {change.kind} {change.address}")


def load_for_apply(path: Path) -> tuple[Spec, Plan | None]:
    """``apply`` takes a spec or a saved plan; return the spec and the plan if any."""
    if path.suffix == ".json":
        saved = Plan.load(path)
        try:
            return load_spec(saved.spec_path), saved
        except SpecError as exc:  # read again for its hosts: say whose spec it is
            if exc.hint is None and not Path(saved.spec_path).is_file():
                exc.hint = (f"{path} was saved from the spec {saved.spec_path}, which "
                            "apply reads again (its hosts and passwords): put it back "
                            "there, or plan the spec where it is now")
            raise
    return load_spec(path), None


def plan_and_lock(spec: Spec) -> tuple[Path, Any]:
    """The state path and its lock context manager, for apply."""
    path = state_path_for(spec)
    return path, locked(path)


__all__ = ["MailplanError", "Planned", "check_saved", "load_for_apply", "make_plan",
           "plan_and_lock", "saved_rescan", "state_path_for", "target_digest"]
