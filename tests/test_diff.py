"""The diff as a pure function: table tests over desired and observed states."""

from __future__ import annotations

import subprocess
from dataclasses import replace

import pytest

from mailplan.applylog import set_back_text
from mailplan.catchall import catchall_line
from mailplan.commands import Context, lock_user
from mailplan.desired import (
    LOCKED,
    PASSWORD_SET_BACK,
    Catchall,
    Desired,
    DesiredDomain,
    DesiredUser,
    Password,
    Problem,
)
from mailplan.diff import Managed, diff
from mailplan.facts.hashes import make_hash
from mailplan.facts.vpopmail import TargetDomain, TargetFacts, TargetUser
from mailplan.plan import Change, Plan
from mailplan.secret import Secret

VP = "/home/vpopmail"
H1 = "$1$saltsalt$RiZ4O533shs928qfyqLuE/"
H2 = ("$6$saltsalt$6s8//kSfi16OXpXR7sbK9HOvpChOK6ho6zs6kMyRtKW0GAE1raHMeAEFe.7DD0Xrdei6"
      "BqjKaHr4MmWUl7SiR.")
H2x = "$6$" + "s" * 16 + "$" + "c" * 86  # SHA-512 crypt's 106 bytes
BOUNCE = f"| {VP}/bin/vdelivermail '' bounce-no-mailbox\n"


BOUNCE_POLICY = Catchall("bounce")
DELETE_LINE = f"| {VP}/bin/vdelivermail '' delete\n"


def want(users=(), catchall=BOUNCE_POLICY, postmaster=None):
    dom = DesiredDomain("example.com", postmaster, catchall)
    for name, pw, quota, comment in users:
        dom.users[name] = DesiredUser(name, "example.com", name, pw, quota, comment)
    return Desired({"example.com": dom}, [])


def have(users=(), catchall=BOUNCE, exists=True):
    facts = TargetFacts("new")
    if exists:
        tu = {n: TargetUser(n, Secret(h), c, 0, f"{VP}/domains/example.com/{n}", q)
              for n, h, q, c in users}
        facts.domains["example.com"] = TargetDomain("example.com",
                                                    f"{VP}/domains/example.com", (), tu,
                                                    catchall)
    return facts


PW1 = Password("hash", Secret(H1), "shadow")
ALICE = ("alice", PW1, 1 << 30, "Alice")
ALICE_THERE = ("alice", H1, "1073741824S", "Alice")


def ids(result):
    return [c.id for c in result.changes]


@pytest.mark.parametrize("desired, observed, managed, expected", [
    pytest.param(want([ALICE]), have(exists=False), Managed(),
                 ["create-domain:example.com", "create-user:alice@example.com",
                  "update-catchall:example.com"], id="new domain"),
    pytest.param(want([ALICE]), have([ALICE_THERE]), Managed(), [], id="all in place"),
    pytest.param(want([ALICE]), have([("alice", H2, "1073741824S", "Alice")]), Managed(),
                 ["update-password:alice@example.com"], id="hash differs"),
    pytest.param(want([ALICE]), have([("alice", H1, "NOQUOTA", "alice")]), Managed(),
                 ["update-quota:alice@example.com", "update-comment:alice@example.com"],
                 id="quota and comment differ"),
    pytest.param(want([ALICE]), have([ALICE_THERE], catchall=DELETE_LINE),
                 Managed(), ["update-catchall:example.com"], id="catch-all deletes"),
    pytest.param(want([ALICE]), have([ALICE_THERE, ("bob", H1, "NOQUOTA", "bob")]), Managed(),
                 [], id="unmanaged extra user left alone"),
    pytest.param(want([ALICE]), have([ALICE_THERE, ("bob", H1, "NOQUOTA", "bob")]),
                 Managed(frozenset({"example.com"}), frozenset({("example.com", "bob")})),
                 ["delete-user:bob@example.com"], id="managed user gone from spec"),
])
def test_diff_table(desired, observed, managed, expected):
    assert ids(diff(desired, observed, VP, managed)) == expected


def test_noop_reasons_are_given():
    result = diff(want([ALICE]), have([ALICE_THERE]), VP)
    reasons = {(n.user, n.reason) for n in result.noops}
    assert ("alice", "user exists; password, quota and comment match") in reasons
    assert (None, "unknown recipients already: bounce") in reasons


def test_left_alone_listed():
    result = diff(want([ALICE]), have([ALICE_THERE, ("bob", H1, "NOQUOTA", "bob")]), VP)
    assert [(n.user, n.domain) for n in result.left_alone] == [("bob", "example.com")]


def test_clear_password_compared_by_verifying():
    clear = Password("clear", Secret("Tr0ub4dor"), "env PW")
    stored = make_hash("Tr0ub4dor")
    result = diff(want([("alice", clear, 1 << 30, "Alice")]),
                  have([("alice", stored, "1073741824S", "Alice")]), VP)
    assert ids(result) == []
    result = diff(want([("alice", clear, 1 << 30, "Alice")]),
                  have([("alice", make_hash("other"), "1073741824S", "Alice")]), VP)
    assert ids(result) == ["update-password:alice@example.com"]
    assert "Tr0ub4dor" not in repr(result.changes) and result.changes[0].sensitive


def test_managed_domain_removed_from_spec_is_shown_for_deletion():
    observed = have([ALICE_THERE])
    observed.domains["old.example"] = TargetDomain("old.example", "/d", (), {}, BOUNCE)
    result = diff(want([ALICE]), observed, VP, Managed(frozenset({"old.example"})))
    assert ids(result) == ["delete-domain:old.example"]
    assert result.changes[0].reason == (
        "created by mailplan, no longer in the spec; vdeldomain deletes its users' Maildirs, "
        "mail included (applied only with --prune)")


def test_a_managed_user_shown_for_deletion_says_its_mail_goes_with_it():
    """vdeluser removes the user's directory: the plan says the Maildir goes too, where it
    said only that the account was no longer in the spec."""
    result = diff(want([ALICE]), have([ALICE_THERE, ("bob", H1, "NOQUOTA", "bob")]), VP,
                  Managed(frozenset({"example.com"}), frozenset({("example.com", "bob")})))
    assert [c.reason for c in result.changes] == [
        "created by mailplan, no longer in the spec; vdeluser deletes its Maildir, mail "
        "included (applied only with --prune)"]


def test_a_managed_user_gone_from_the_source_passwd_is_said_so():
    """dave was imported by the rule, then removed from the old server's passwd: the
    spec is unchanged, yet the plan said "no longer in the spec", and the admin looked
    for a change to the spec that nobody made."""
    desired = want([ALICE])
    desired.source_accounts = frozenset({"alice"})
    result = diff(desired, have([ALICE_THERE, ("dave", H1, "NOQUOTA", "dave")]), VP,
                  Managed(frozenset({"example.com"}), frozenset({("example.com", "dave")})))
    assert [c.reason for c in result.changes] == [
        "created by mailplan, no longer migrated: no user of the spec and no account in the "
        "source's passwd is named 'dave' (an account removed on the old server, or a user "
        "taken out of the spec); vdeluser deletes its Maildir, mail included (applied only "
        "with --prune)"]
    # still on the source: it is the spec that dropped it
    desired.source_accounts = frozenset({"alice", "dave"})
    result = diff(desired, have([ALICE_THERE, ("dave", H1, "NOQUOTA", "dave")]), VP,
                  Managed(frozenset({"example.com"}), frozenset({("example.com", "dave")})))
    assert result.changes[0].reason.startswith("created by mailplan, no longer in the spec;")


def test_a_managed_user_whose_source_account_has_a_problem_now_is_never_deleted():
    """bob was migrated, then locked on the old server (passwd -l): his account is a
    problem, not migrated, but the spec still names him: the plan said "no longer in the
    spec" and --prune deleted his mailbox, mail and all."""
    desired = want([ALICE])
    desired.problems.append(Problem("example.com", "bob", "account is locked"))
    result = diff(desired, have([ALICE_THERE, ("bob", H1, "NOQUOTA", "bob")]), VP,
                  Managed(frozenset({"example.com"}), frozenset({("example.com", "bob")})))
    assert ids(result) == []
    assert ("bob", "the spec names it, but its source account has a problem (see "
            "Problems): left as it is, never deleted for it") in {
        (n.user, n.reason) for n in result.noops}
    assert [p.user for p in result.problems] == ["bob"]


BOB_LOCKED = Password(LOCKED, Secret(""), "source account 'bob' is locked")


def _locked_bob(locked_there: bool = False) -> tuple[Desired, TargetFacts]:
    """bob, migrated, then locked on the old server (passwd -l): still a user of the
    desired state (his mail, quota, comment and routing go on, as the old server still
    delivers to him), with a locked password; and the problem he is where the target
    does not have him."""
    desired = want([ALICE, ("bob", BOB_LOCKED, None, "bob")])
    desired.domains["example.com"].locked["bob"] = Problem("example.com", "bob",
                                                           "account is locked")
    return desired, have([ALICE_THERE, ("bob", "!" * locked_there + H1, "NOQUOTA", "bob")])


def test_a_user_locked_on_the_old_server_after_migration_is_locked_here_too():
    """His password here went on letting him in: the plan locks him, and says why; he is
    no problem (his mail and routing are still migrated)."""
    desired, observed = _locked_bob()
    result = diff(desired, observed, VP)
    assert [(c.action, c.kind, c.user, c.before, c.after) for c in result.changes] == [
        ("update", "lock", "bob", "login allowed", "locked")]
    assert result.changes[0].reason.startswith("source account 'bob' is locked: locked "
                                               "here the way passwd -l does")
    assert result.problems == []


def test_a_user_locked_here_already_is_left_as_it_is():
    desired, observed = _locked_bob(locked_there=True)
    result = diff(desired, observed, VP)
    assert ids(result) == [] and result.problems == []
    assert ("bob", "user exists, locked (source account 'bob' is locked); quota and "
            "comment match") in {(n.user, n.reason) for n in result.noops}


def test_create_only_passwords_leave_a_locked_user_able_to_log_in_and_say_so():
    desired, observed = _locked_bob()
    result = diff(desired, observed, VP, keep_passwords=True)
    assert ids(result) == []
    said = [p.message for p in result.problems if p.user == "bob"]
    assert any("its password here still lets it in: not locked here (target.passwords: "
               "create_only)" in m for m in said), said


def test_the_postmaster_is_never_locked():
    # the import rule never takes a "postmaster" account: no user of that name to lock
    desired, _observed = _locked_bob()
    desired.domains["example.com"].locked = {
        "postmaster": Problem("example.com", "postmaster", "it is locked")}
    observed = have([ALICE_THERE, ("postmaster", H1, "NOQUOTA", "Postmaster"),
                     ("bob", "!" + H1, "NOQUOTA", "bob")])
    assert ids(diff(desired, observed, VP)) == []


def test_a_locked_account_the_target_lacks_is_never_created():
    """Locked from the start (or the target lost him): no user is made for him, in an
    existing domain or a new one; he is his problem, and the rest of the plan (mail,
    routing) leaves him out (Desired.lock_out)."""
    desired, _observed = _locked_bob()
    for observed in (have([ALICE_THERE]), have(exists=False)):
        result = diff(desired, observed, VP)
        assert "create-user:bob@example.com" not in ids(result)
        assert [p.message for p in result.problems] == ["account is locked"]
    desired.lock_out(have([ALICE_THERE]).users())
    assert sorted(desired.domains["example.com"].users) == ["alice"]
    assert [(p.user, p.message) for p in desired.problems] == [("bob", "account is locked")]
    desired, observed = _locked_bob()
    desired.lock_out(observed.users())  # there: kept, to be locked
    assert "bob" in desired.domains["example.com"].users and desired.problems == []


def test_managed_domain_holding_accounts_mailplan_did_not_create_is_never_deleted():
    # vdeldomain would take the hand-made account and its mail with it
    observed = have([ALICE_THERE])
    observed.domains["old.example"] = TargetDomain("old.example", "/d", (), {
        name: TargetUser(name, Secret(H1), name, 0, "/d/" + name, "NOQUOTA")
        for name in ("postmaster", "made", "ceo")}, BOUNCE)
    result = diff(want([ALICE]), observed, VP, Managed(
        frozenset({"old.example"}), frozenset({("old.example", "made")})))
    assert ids(result) == []
    (problem,) = [p for p in result.problems if p.domain == "old.example"]
    assert "1 account(s) mailplan did not create (ceo)" in problem.message
    assert "not deleted, even with --prune" in problem.message


def test_managed_domain_alias_domains_point_at_is_not_deleted():
    # vdeldomain refuses it (exit 0) while alias domains point at it: the deletion
    # failed at apply every time; and -f would take the alias domains too
    observed = have([ALICE_THERE])
    observed.domains["old.example"] = TargetDomain(
        "old.example", "/d", ("alias.example",), {
            name: TargetUser(name, Secret(H1), name, 0, "/d/" + name, "NOQUOTA")
            for name in ("postmaster", "made")}, BOUNCE)
    managed = Managed(frozenset({"old.example"}), frozenset({("old.example", "made")}))
    result = diff(want([ALICE]), observed, VP, managed)
    assert ids(result) == []
    (problem,) = [p for p in result.problems if p.domain == "old.example"]
    assert "alias domains point at it (alias.example)" in problem.message
    assert "not deleted, even with --prune" in problem.message
    observed.domains["old.example"] = replace(observed.domains["old.example"], aliases=())
    assert ids(diff(want([ALICE]), observed, VP, managed)) == ["delete-domain:old.example"]


def test_alias_domain_is_a_problem_not_a_change():
    observed = TargetFacts("new", alias_of={"example.com": "real.example"})
    result = diff(want([ALICE]), observed, VP)
    assert result.changes == [] and "alias of real.example" in result.problems[0].message


@pytest.mark.parametrize("catchall, user_dir, line", [
    (Catchall("bounce"), None, BOUNCE),
    (Catchall("delete"), None, f"| {VP}/bin/vdelivermail '' delete\n"),
    (Catchall("forward", "x@y.example"), None, f"| {VP}/bin/vdelivermail '' x@y.example\n"),
    (Catchall("deliver_to", "alice"), "/d/alice", f"| {VP}/bin/vdelivermail '' /d/alice\n"),
    (Catchall("deliver_to", "alice"), None, None),
])
def test_catchall_lines_match_vadddomain_forms(catchall, user_dir, line):
    assert catchall_line(catchall, VP, user_dir) == line


@pytest.mark.parametrize("catchall, user_dir", [
    (Catchall("forward", "x;touch${IFS}PWNED;@remote.example"), None),
    (Catchall("forward", "t`touch PWNED`k@remote.example"), None),
    (Catchall("deliver_to", "a&b"), "/d/a&b"),
])
def test_catchall_line_runs_no_shell_code_at_delivery(tmp_path, catchall, user_dir):
    """qmail-local runs a ``|`` line with /bin/sh -c: the address or path must reach
    vdelivermail as one literal argument, not run as shell code (a spec's forward address
    and vpopmail user names may hold ; & ` $)."""
    line = catchall_line(catchall, str(tmp_path / "vp"), user_dir)
    assert line is not None
    prog = tmp_path / "vp" / "bin" / "vdelivermail"
    prog.parent.mkdir(parents=True)
    prog.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "[$a]"; done\n')
    prog.chmod(0o755)
    res = subprocess.run(["/bin/sh", "-c", line[1:]], cwd=tmp_path, capture_output=True,
                         text=True, check=True)
    want = catchall.target if catchall.kind == "forward" else user_dir
    assert res.stdout == f"[]\n[{want}]\n"
    assert not (tmp_path / "PWNED").exists()


def test_create_only_keeps_a_password_changed_on_the_target_and_sets_new_ones():
    # after the cutover users change their passwords on the new server: a later apply
    # with target.passwords: create_only must not set the old ones back
    pm = Password("hash", Secret(H1), "spec")
    observed = have([("alice", H2, "1073741824S", "Alice"), ("postmaster", H2, "NOQUOTA", "")])
    result = diff(want([ALICE, ("bob", PW1, 1 << 30, "Bob")], postmaster=pm), observed, VP,
                  keep_passwords=True)
    assert ids(result) == ["create-user:bob@example.com"]
    kept = {n.user: n.reason for n in result.noops if "kept" in n.reason}
    assert kept == {u: "password differs from the spec's; kept (target.passwords: "
                    "create_only)" for u in ("alice", "postmaster")}
    synced = diff(want([ALICE], postmaster=pm), observed, VP)
    assert ids(synced) == ["update-password:postmaster@example.com",
                           "update-password:alice@example.com"]


def test_a_password_set_back_is_a_warning_of_its_kind_which_apply_quiet_counts(tmp_path):
    """A password mailplan set that was changed on the new server since: the change sets
    it back, with a warning of kind PASSWORD_SET_BACK; ``apply --quiet``'s stderr line
    counts those by their kind, not by their words (a rewording of the warning, or
    another warning worded alike, must not change the count)."""
    key = b"k" * 32
    managed = Managed(passwords_set=frozenset({("example.com", "alice",
                                                 PW1.value.fingerprint(key))}))
    observed = have([("alice", H2, "1073741824S", "Alice")])
    result = diff(want([ALICE]), observed, VP, managed, key)
    assert ids(result) == ["update-password:alice@example.com"]
    assert [(w.user, w.kind) for w in result.warnings] == [("alice", PASSWORD_SET_BACK)]
    plain = diff(want([ALICE]), observed, VP, Managed(), key)  # changed on the old server
    assert ids(plain) == ids(result) and plain.warnings == []
    plan = Plan("s.yaml", "0" * 64, None, 0, "1" * 64, result.changes,
                warnings=[replace(result.warnings[0], message="reworded"),
                          Problem("example.com", "bob", result.warnings[0].message)])
    line = set_back_text(plan, tmp_path / "apply.log")
    assert line.startswith("Passwords set back: 1 user(s) had changed theirs"), line
    assert set_back_text(replace(plan, warnings=plan.warnings[1:]), tmp_path / "l") == ""


def test_create_only_sets_the_postmaster_password_only_of_a_domain_cut_short():
    # a domain mailplan made and recorded whole (also by an older mailplan, whose record
    # has no marker) keeps what the admin set; one found after a cut between vadddomain
    # and the spec's password, or whose creation is still pending, gets the spec's
    pm = Password("hash", Secret(H1), "spec")
    observed = have([ALICE_THERE, ("postmaster", H2, "NOQUOTA", "")])
    made = frozenset({"example.com"})
    for managed, expected in ((Managed(made), []),
                              (Managed(made, postmaster_unset=made),
                               ["update-password:postmaster@example.com"]),
                              (Managed(pending=made), ["update-password:postmaster@example.com"])):
        result = diff(want([ALICE], postmaster=pm), observed, VP, managed, keep_passwords=True)
        assert ids(result) == expected, managed


def test_create_only_sets_the_password_only_of_a_user_cut_short_in_vadduser():
    # vadduser -e makes the user with a random password, then stores the hash: a user
    # found after a cut between the two, or whose creation is still pending, gets the
    # source's password; one recorded whole keeps what is set there
    observed = have([("alice", H2, "1073741824S", "Alice")])
    cut = frozenset({("example.com", "alice")})
    for managed, expected in ((Managed(users=cut), []),
                              (Managed(users=cut, users_unset=cut),
                               ["update-password:alice@example.com"])):
        result = diff(want([ALICE]), observed, VP, managed, keep_passwords=True)
        assert ids(result) == expected, managed


def test_a_comment_that_would_make_the_vpasswd_line_too_long_is_a_problem():
    """vuserinfo -D stops at a vpasswd line longer than 299 bytes, and every later plan
    with it: a comment that would make the line longer is not changed, a problem says
    why. NAME:HASH:1:0:COMMENT:DIR:QUOTA and its line end."""
    name = "n" * 40
    udir = f"{VP}/domains/example.com/{name}"
    fits = 299 - (40 + len(H2) + 2 + len(udir) + len("1073741824S") + 7)
    pw = Password("hash", Secret(H2), "shadow")
    for comment, changed in (("c" * fits, True), ("c" * (fits + 1), False)):
        result = diff(want([(name, pw, 1 << 30, comment)]),
                      have([(name, H2, "1073741824S", "c")]), VP)
        assert ids(result) == ([f"update-comment:{name}@example.com"] if changed else [])
        assert bool(result.problems) is not changed
    (p,) = result.problems
    assert p.message.startswith(f"comment not changed to {'c' * (fits + 1)!r}: its vpasswd "
                                "line would be up to 300 bytes long; vuserinfo -D lists no "
                                "user past a line longer than 299 bytes")
    # a password changed at the same time counts with its new hash (a clear one: 106)
    longer = Password("clear", Secret("pw"), "env PW")
    result = diff(want([(name, longer, 1 << 30, "c" * (fits - 10))]),
                  have([(name, H1, "1073741824S", "c")]), VP)
    assert f"update-comment:{name}@example.com" in ids(result), result.problems
    result = diff(want([(name, longer, 1 << 30, "c" * (fits + 1))]),
                  have([(name, H1, "1073741824S", "c")]), VP)
    assert ids(result) == [f"update-password:{name}@example.com"] and result.problems


LONG = "n" * 40  # a long name, so that the comment brings the vpasswd line to its limit


def _comment_for(line: int, hashed: str, quota: str) -> str:
    """The comment that makes LONG's vpasswd line ``line`` bytes long, counted by hand:
    NAME:HASH:1:0:COMMENT:DIR:QUOTA and its line end."""
    udir = f"{VP}/domains/example.com/{LONG}"
    return "c" * (line - (len(LONG) + len(hashed) + 2 + len(udir) + len(quota) + 7))


def test_a_password_or_quota_change_that_would_make_the_vpasswd_line_too_long_is_a_problem():
    """vuserinfo -D stops at a vpasswd line longer than 299 bytes, and every later plan
    with it: a longer hash or quota that would take the line past it is not changed, a
    problem names the user and says why; at 299 bytes it is changed."""
    pw = Password("hash", Secret(H2), "shadow")
    for line, changed in ((299, True), (300, False)):
        comment = _comment_for(line, H2, "NOQUOTA")  # the stored hash H1 is shorter
        result = diff(want([(LONG, pw, None, comment)]),
                      have([(LONG, H1, "NOQUOTA", comment)]), VP)
        assert ids(result) == ([f"update-password:{LONG}@example.com"] if changed else [])
        assert [(p.user, p.message[:82]) for p in result.problems] == ([] if changed else [
            (LONG, "password not changed: its vpasswd line would be up to 300 bytes long; "
             "vuserinfo -D")]), result.problems
        comment = _comment_for(line, H1, "1073741824S")
        result = diff(want([(LONG, PW1, 1 << 30, comment)]),
                      have([(LONG, H1, "NOQUOTA", comment)]), VP)
        assert ids(result) == ([f"update-quota:{LONG}@example.com"] if changed else [])
        assert [p.message[:59] for p in result.problems] == ([] if changed else [
            "quota not changed to 1073741824S: its vpasswd line would be"])
    # a clear password counts as the SHA-512 crypt hash apply makes of it (106 bytes)
    clear = Password("clear", Secret("pw"), "env PW")
    comment = _comment_for(300, H2, "NOQUOTA")
    result = diff(want([(LONG, clear, None, comment)]),
                  have([(LONG, H1, "NOQUOTA", comment)]), VP)
    assert ids(result) == [] and "a hash of 106 bytes (env PW)" in result.problems[0].message
    # taken changes count in the next: the new hash, then a comment one byte longer
    result = diff(want([(LONG, pw, None, _comment_for(300, H2, "NOQUOTA"))]),
                  have([(LONG, H1, "NOQUOTA", _comment_for(299, H2, "NOQUOTA"))]), VP)
    assert ids(result) == [f"update-password:{LONG}@example.com"]
    assert result.problems[0].message.startswith("comment not changed to")
    # the postmaster's line too (its name 30 bytes shorter than LONG)
    pm = TargetUser("postmaster", Secret(H1), _comment_for(300, H2, "NOQUOTA") + "c" * 30, 0,
                    f"{VP}/domains/example.com/{LONG}", "NOQUOTA")
    observed = have([ALICE_THERE])
    observed.domains["example.com"].users["postmaster"] = pm
    result = diff(want([ALICE], postmaster=Password("hash", Secret(H2), "spec")), observed, VP)
    assert ids(result) == [] and result.problems[0].user == "postmaster"



def test_a_longer_password_fits_when_the_same_plan_shortens_the_comment():
    """A password whose hash is longer and a comment shorter, the line at the end within
    299 bytes: both are changed in one apply, the comment first (apply runs the plan's
    order, and stops at a step that fails), so the line never gets longer than the
    longer of before and after. Counted against the comment stored, the password was
    refused, and went through only at the next apply."""
    pw = Password("hash", Secret(H2), "shadow")
    old = _comment_for(305, H2, "NOQUOTA")  # H2 with the comment stored: 305 bytes
    stored = have([(LONG, H1, "NOQUOTA", old)])
    for line in (299, 290):
        result = diff(want([(LONG, pw, None, _comment_for(line, H2, "NOQUOTA"))]), stored, VP)
        assert ids(result) == [f"update-comment:{LONG}@example.com",
                               f"update-password:{LONG}@example.com"], result.problems
        assert result.problems == []
    # at the end still too long: the comment is shortened, the password not changed
    result = diff(want([(LONG, pw, None, _comment_for(300, H2, "NOQUOTA"))]), stored, VP)
    assert ids(result) == [f"update-comment:{LONG}@example.com"]
    assert [p.message[:58] for p in result.problems] == [
        "password not changed: its vpasswd line would be up to 300 "]
    # a quota shortened (NOQUOTA, 7 bytes, for 11) makes room the same way, and a comment
    # that grows is still counted after the password's longer hash
    quota = _comment_for(303, H2, "1073741824S")
    result = diff(want([(LONG, pw, None, quota + "cc")]),
                  have([(LONG, H1, "1073741824S", quota)]), VP)
    assert ids(result) == [f"update-quota:{LONG}@example.com",
                           f"update-password:{LONG}@example.com"]
    assert result.problems[0].message.startswith("comment not changed to"), result.problems

def test_a_lock_that_would_make_the_vpasswd_line_too_long_stores_a_bang_alone():
    """Locking puts a '!' before the hash, one byte more: where that takes bob's vpasswd
    line (91 bytes and his comment, here 299 in all) past 299 bytes (or the hash past
    the 128 vpopmail stores) a '!' alone is stored, the hash dropped, and the plan says
    so; the user is locked all the same."""
    bob = ("bob", BOB_LOCKED, None, "bob")
    for hashed, comment, how in (
            (H1, "b", "the way passwd -l does, a '!' put before its hash"),
            (H1, "b" * 208, "with a '!' alone, its hash dropped: with a '!' before the hash "
             "its vpasswd line would be 300 bytes long (vuserinfo -D lists no user past a "
             "line longer than 299 bytes"),
            ("$6$" + "s" * 16 + "$" + "x" * 108, "b", "with a '!' alone, its hash dropped: "
             "with a '!' before the hash its hash fills the 128 bytes vpopmail stores")):
        desired = want([ALICE, bob[:3] + (comment,)])
        result = diff(desired, have([ALICE_THERE, ("bob", hashed, "NOQUOTA", comment)]), VP)
        assert ids(result) == ["update-lock:bob@example.com"], result.problems
        assert result.changes[0].reason.startswith(
            f"source account 'bob' is locked: locked here {how}"), result.changes[0].reason
        assert result.problems == []


def test_a_lock_that_cannot_be_written_is_a_loud_problem():
    """A user whose password is empty here and whose vpasswd line is 299 bytes already
    (57 and his comment):
    even a '!' alone would take it past what vuserinfo -D lists. He is not locked, and
    the plan says loudly that he can still log in."""
    desired = want([ALICE, ("bob", BOB_LOCKED, None, "b" * 242)])
    result = diff(desired, have([ALICE_THERE, ("bob", "", "NOQUOTA", "b" * 242)]), VP)
    assert ids(result) == []
    (p,) = result.problems
    assert p.user == "bob" and p.message.startswith(
        "source account 'bob' is locked, but its password here STILL LETS IT IN: not locked "
        "here, as even a '!' alone would make its vpasswd line 300 bytes long"), p.message


class _Vmoduser:
    """What lock_user reads and runs, for one user of the target: vuserinfo gives
    ``user``, vmoduser -e stores the hash it is given."""

    def __init__(self, user: TargetUser) -> None:
        self.user, self.secrets = user, []
        self.ctx = Context(Desired({}, []), VP, "new")

    def read_user(self, address: str) -> TargetUser:
        return self.user

    def run(self, cmd):
        assert [str(a) for a in cmd.argv[:2]] == [f"{VP}/bin/vmoduser", "-e"]
        self.user = replace(self.user, password=cmd.argv[2])


def test_apply_locks_with_a_bang_alone_where_the_plan_said_so():
    """lock_user decides as the plan did (:func:`diff._lock`): a '!' before the hash
    while the vpasswd line stays within 299 bytes, else '!' alone, and says so. Here a
    SHA-512 hash (106 bytes) and a 150-byte directory: the comment brings it to 299."""
    udir = f"{VP}/domains/" + "d" * (150 - len(VP) - 9)
    for comment, stored in (("c" * 22, "!" + H2x), ("c" * 23, "!")):
        runner = _Vmoduser(TargetUser("user", Secret(H2x), comment, 0, udir, "NOQUOTA"))
        done = lock_user(runner, Change("update", "lock", "example.com", "user"))
        assert runner.user.password.reveal() == stored
        assert ("notes" in done) is (stored == "!")
    assert done["notes"][0].startswith("its vpasswd line would be 300 bytes long, leaving "
                                       "no room for a '!' before it")


def test_a_quota_change_shows_both_sizes_readably():
    """The old quota was vpopmail's raw field (``1073741824S``) beside the new one's
    size: both get it; a field mailplan does not write (a message count set by hand) is
    shown as stored."""
    from mailplan.diff import _shown_quota

    assert _shown_quota("1073741824S") == "1073741824S (1G)"
    assert _shown_quota("NOQUOTA") == "NOQUOTA (unlimited)"
    assert _shown_quota("5242880S,1000C") == "5242880S,1000C"
    assert _shown_quota("S") == "S" and _shown_quota("\u0661S") == "\u0661S"


@pytest.mark.parametrize("line", [
    "| /usr/local/vpopmail/bin/vdelivermail '' bounce-no-mailbox\n",
    f"| {VP}/bin/vdelivermail '' bounce-no-mailbox",  # no newline at its end
])
def test_a_catchall_that_bounces_by_another_line_is_shown_as_written(line):
    """A .qmail-default that bounces, but through another vdelivermail (vpopmail once
    installed elsewhere) or not as mailplan writes it, is rewritten; the plan read
    ``~ catchall example.com: bounce -> bounce``, a change that seemed to be none."""
    d = diff(want([ALICE]), have([ALICE_THERE], catchall=line), VP)
    [change] = [c for c in d.changes if c.kind == "catchall"]
    assert change.before == f"bounce, written as {line.strip()!r}"
    assert change.after == "bounce"
    assert [c.before for c in diff(want([ALICE]), have([ALICE_THERE], catchall=DELETE_LINE),
                                   VP).changes] == ["delete silently"]


def test_users_mailplan_made_in_a_dropped_domain_it_did_not_make_are_deleted_first():
    from mailplan.prune_guard import dropped_domain_users, dropped_domains

    observed = have([ALICE_THERE])
    observed.domains["hand.example"] = TargetDomain("hand.example", "/h", (), {
        name: TargetUser(name, Secret(H1), name, 0, "/h/" + name, "NOQUOTA")
        for name in ("postmaster", "made", "own")}, BOUNCE)
    managed = Managed(frozenset({"old.example"}), frozenset(
        {("hand.example", "made"), ("hand.example", "gone"), ("example.com", "alice")}))
    assert dropped_domains(managed, {"example.com"}) == {"hand.example"}
    assert dropped_domains(managed, {"example.com", "hand.example"}) == set()
    changes = [Change("delete", "user", "example.com", "bob"),
               Change("delete", "domain", "old.example")]
    out = dropped_domain_users(changes, observed, managed, {"example.com"})
    assert [c.id for c in out] == ["delete-user:bob@example.com",
                                   "delete-user:made@hand.example", "delete-domain:old.example"]
    assert dropped_domain_users(changes, observed, managed,
                                {"example.com", "hand.example"}) == changes



def test_a_new_domain_without_postmaster_password_says_nobody_can_log_in_as_postmaster():
    """vadddomain gets a random password mailplan never shows: the plan says what that
    means and how to set one, not just "random" (the plan's postmaster warning tells the
    admin to read that mailbox as postmaster@)."""
    made = diff(want([ALICE]), have(exists=False), VP, Managed()).changes[0]
    assert made.id == "create-domain:example.com"
    assert made.after.startswith("postmaster password random, never shown: nobody can log in "
                                 "as postmaster@example.com until the spec sets "
                                 "postmaster_password; unknown recipients: bounce")
    given = Password("clear", Secret("pw"), "env PM")
    made = diff(want([ALICE], postmaster=given), have(exists=False), VP, Managed()).changes[0]
    assert made.after.startswith("postmaster password env PM; ")
