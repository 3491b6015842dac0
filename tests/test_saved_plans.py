"""A saved plan applied again: resumed only while it is what is left to do (pure)."""

from __future__ import annotations

import pytest

from mailplan.engine import beyond, check_saved
from mailplan.errors import StalePlanError
from mailplan.plan import Change, Plan
from mailplan.state import State

DOMAIN = Change("create", "domain", "d.example", after="postmaster password hash in spec",
                sensitive=True, fingerprint="f1")
USER = Change("create", "user", "d.example", "ann", after="quota unlimited", sensitive=True,
              fingerprint="f2")
PM = Change("update", "password", "d.example", "postmaster", "(sensitive)", "(sensitive)",
            True, "f1", "from hash in spec")


def plan(*changes: Change, plan_id: str = "saved") -> Plan:
    return Plan("m.yaml", "spec", "lineage", 3, "target", list(changes), plan_id=plan_id)


def test_a_domain_cut_between_its_two_commands_leaves_its_postmaster_password():
    # vadddomain (a random postmaster password) ran, then mailplan ended before
    # vmoduser -e set the spec's: the same password is what is left of the domain
    saved = plan(DOMAIN, USER)
    assert beyond(saved, plan(PM, USER, plan_id="fresh")) == []
    other = Change("update", "password", "d.example", "postmaster", "(sensitive)",
                   "(sensitive)", True, "f9", "from hash in spec")
    assert beyond(saved, plan(other, USER, plan_id="fresh")) == [other]
    assert beyond(plan(USER), plan(PM, plan_id="fresh")) == [PM]  # no domain made


@pytest.mark.parametrize(("history", "refused"), [
    ([{"plan_id": "saved", "result": "interrupted", "started": "t1"}], None),
    ([{"plan_id": "saved", "result": "interrupted", "started": "t1"},
      {"plan_id": "other", "result": "ok", "started": "t2"}],
     r"this plan was interrupted, and another apply ran after it \(ok, started t2\)"),
    ([{"plan_id": "saved", "result": "ok", "finished": "t3"}], "already applied"),
])
def test_a_saved_plan_resumes_only_while_no_other_apply_ran_after_it(tmp_path, history,
                                                                       refused):
    state = State.load(tmp_path / "s.json")
    state.data["history"] = history
    saved, fresh = plan(DOMAIN, USER), plan(USER, plan_id="fresh")
    if refused is None:
        check_saved(saved, fresh, state)
    else:
        with pytest.raises(StalePlanError, match=refused):
            check_saved(saved, fresh, state)


def test_a_stale_plans_first_difference_names_a_mailbox_once():
    from mailplan.engine import _first_difference

    box = Change("create", "mailbox", "d.example", "ann", after="1 message(s)", item="INBOX")
    grown = Change("create", "mailbox", "d.example", "ann", after="2 message(s)", item="INBOX")
    assert _first_difference(plan(box), plan(grown, plan_id="fresh")) == (
        " (changed: + mailbox ann@d.example INBOX)")


def test_a_stale_plan_whose_changes_are_only_reordered_says_so():
    # a plan saved by a mailplan that ordered a user's changes otherwise (a change that
    # shortens the vpasswd line comes first now): no change differs, yet it is stale
    from mailplan.engine import _first_difference

    quota = Change("update", "quota", "d.example", "ann", "2G", "1G")
    comment = Change("update", "comment", "d.example", "ann", "'Ann'", "'A'")
    assert _first_difference(plan(quota, comment), plan(comment, quota, plan_id="fresh")) \
        == " (the same changes in another order: the plan was saved by another mailplan version)"
    assert _first_difference(plan(quota, comment), plan(quota, comment, plan_id="f")) == ""


def test_a_plan_saved_where_there_was_no_state_yet_is_refused_once_there_is_one(tmp_path):
    """A plan saved with no state file there yet (``plan --state NEW -o p.json``, or a
    first plan) applied where a state file exists now was refused only after both hosts
    were read, as stale ("the state changed ... (serial 0, now N)", "run `mailplan plan`
    again"): it is refused before, saying so and naming --state; resuming that very plan
    (its run in the state's history, or in a journal not folded yet) is not refused."""
    from mailplan.engine import refuse_other_state

    first = Plan("m.yaml", "spec", None, 0, "target", [DOMAIN], plan_id="first")
    path = tmp_path / "m.state.json"
    refuse_other_state(first, State.load(path))  # still none: the plan is the first
    state = State.load(path)
    state.save()
    with pytest.raises(StalePlanError, match=r"this plan was made where there was no state "
                       rf"file yet, and {path} is one \(lineage {state.lineage}\)") as err:
        refuse_other_state(first, State.load(path))
    assert "--state FILE" in (err.value.hint or "")
    resumed = State.load(path)
    resumed.data["history"] = [{"plan_id": "first", "result": "interrupted"}]
    resumed.save()
    refuse_other_state(first, State.load(path, fold=False))
    journaled = State.load(tmp_path / "j.state.json")
    journaled.begin("first")  # killed after it began: its run is only in the journal
    refuse_other_state(first, State.load(tmp_path / "j.state.json", fold=False))
    other = Plan("m.yaml", "spec", "another", 3, "target", [DOMAIN], plan_id="other")
    with pytest.raises(StalePlanError, match="made against another state file than"):
        refuse_other_state(other, State.load(path))


def test_a_saved_plan_whose_spec_moved_says_whose_spec_it_reads(tmp_path):
    """``apply p.json`` reads the spec the plan was saved from again; once that was moved
    away it said "m.yaml: cannot read the spec: No such file or directory" alone, naming
    a file the command line did not hold."""
    from mailplan.engine import load_for_apply
    from mailplan.errors import SpecError

    saved = Plan(str(tmp_path / "m.yaml"), "0" * 64, None, 0, "1" * 64,
                 [Change("create", "user", "d.example", "ann")])
    saved.save(tmp_path / "p.json")
    with pytest.raises(SpecError) as info:
        load_for_apply(tmp_path / "p.json")
    assert str(info.value) == (
        f"{tmp_path}/m.yaml: cannot read the spec: No such file or directory\n  hint: "
        f"{tmp_path}/p.json was saved from the spec {tmp_path}/m.yaml, which apply reads "
        "again (its hosts and passwords): put it back there, or plan the spec where it "
        "is now")
