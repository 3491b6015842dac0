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
