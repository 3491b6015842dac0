"""plan / apply / plan again, over the real test sshd into the vpopmail stand-in.

Runs unchanged against a real vpopmail when MAILPLAN_TEST_VPOPMAIL is set (see
tests/migration.py). Every test builds its own source tree and uses its own domains.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jsonschema
import pytest
import yaml
from migration import (
    REAL_VPOPMAIL,
    SourceAccount,
    install_target,
    kill_apply_when,
    mailplan,
    make_source,
    ssh_host,
    unique_domain,
    write_spec,
)
from passlib.hash import sha512_crypt

from mailplan.connectors.local import LocalConnector
from mailplan.errors import HostError
from mailplan.facts.vpopmail import DirHashing, read_target
from mailplan.spec import load_schema

ODD = "o$&*|!~'`x"  # vpopmail accepts these; they must work and execute nothing

ACCOUNTS = [
    SourceAccount("alice", 1000, "Alice Smith,Room 1,,", "AlicePw1"),
    SourceAccount("bob", 1001, "Bob", "B0b-pass word"),
    SourceAccount("carol", 1002, "", "carolpw"),
    SourceAccount("locked", 1003, "Locked Out", raw_hash="!$6$abc$def"),
    SourceAccount("apache", 1004, "", raw_hash="$apr1$saltsalt$I5BAdfxlf6YutHCL4ZNLI/"),
    SourceAccount("system", 50, "daemonish", "x"),
]


@pytest.fixture
def target(tmp_path):
    t = install_target(tmp_path / "target")
    yield t
    if REAL_VPOPMAIL:
        for domain in t.created_domains:
            t.tool("vdeldomain", domain)


@pytest.fixture
def source(tmp_path):
    return make_source(tmp_path / "source", ACCOUNTS)


def spec_for(tmp_path, source, target, sshd, domain, **extra):
    body = {"postmaster_password": {"env": "PM_PW"}, "default_quota": "1G",
            "import": {"uid_min": 1000, "exclude": ["carol"]},
            "users": [{"name": "bob", "quota": "2.5G", "comment": "Robert"},
                      {"name": "charlotte", "from": "carol"}]}
    body.update(extra)
    return write_spec(tmp_path / "migration.yaml", source_root=source, target=target,
                      domains={domain: body}, source_host=ssh_host(sshd),
                      target_host=ssh_host(sshd))


ENV = {"PM_PW": "PostMaster#1"}


@pytest.mark.ssh
def test_plan_apply_plan_is_idempotent_and_passwords_work(tmp_path, source, target, sshd):
    domain = unique_domain()
    spec = spec_for(tmp_path, source, target, sshd, domain)
    first = mailplan("plan", str(spec), "--detailed-exitcode", env=ENV)
    assert first.returncode == 2, first.stderr
    out = first.stdout
    assert f"+ domain {domain}" in out and f"+ user alice@{domain}" in out
    assert f"+ user charlotte@{domain}" in out and f"+ user carol@{domain}" not in out
    assert f"locked@{domain}: password of source account 'locked' cannot be migrated" in out
    assert f"apache@{domain}" in out and "apr1" in out
    assert f"catchall {domain}: delete silently (vadddomain's default) -> bounce" in out
    assert "Plan: 4 to create, 1 to change, 0 to destroy." in out
    for secret in ("AlicePw1", "PostMaster#1", "$6$"):
        assert secret not in out + first.stderr

    applied = mailplan("apply", str(spec), "--auto-approve", env=ENV, check=True)
    assert "Apply complete: 5 change(s) made." in applied.stdout

    again = mailplan("plan", str(spec), "--detailed-exitcode", env=ENV)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes." in again.stdout

    assert target.login_ok(f"alice@{domain}", "AlicePw1")
    assert target.login_ok(f"bob@{domain}", "B0b-pass word")
    assert target.login_ok(f"charlotte@{domain}", "carolpw")
    assert target.login_ok(f"postmaster@{domain}", "PostMaster#1")
    assert not target.login_ok(f"alice@{domain}", "wrong")
    info = target.tool("vuserinfo", f"bob@{domain}").stdout.decode()
    assert "quota:     2684354560S" in info and "comment/gecos: Robert" in info
    info = target.tool("vuserinfo", f"alice@{domain}").stdout.decode()
    assert "comment/gecos: Alice Smith" in info and "quota:     1073741824S" in info
    ddir = target.tool("vdominfo", "-d", domain).stdout.decode().split("\n")[0]
    assert Path(ddir, ".qmail-default").read_text() == (
        f"| {target.vpopmail_dir}/bin/vdelivermail '' bounce-no-mailbox\n")
    state = tmp_path / "migration.state.json"
    assert oct(state.stat().st_mode & 0o777) == "0o600"
    assert "AlicePw1" not in state.read_text() and "$6$" not in state.read_text()


@pytest.mark.ssh
def test_a_saved_plan_is_named_so_that_apply_reads_it_as_one(tmp_path, source, target, sshd):
    """``plan -o tonight.plan`` saved the plan and said "apply exactly this plan with:
    mailplan apply tonight.plan", which read it as a spec ("unknown key 'changes'"):
    the name is refused before the hosts are read."""
    spec = spec_for(tmp_path, source, target, sshd, unique_domain())
    res = mailplan("plan", str(spec), "-o", str(tmp_path / "tonight.plan"), env=ENV)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "tonight.plan: a saved plan's name ends in .json" in res.stderr
    assert not (tmp_path / "tonight.plan").exists() and res.stdout == ""


@pytest.mark.ssh
def test_drift_is_shown_and_a_saved_plan_goes_stale(tmp_path, source, target, sshd):
    domain = unique_domain()
    spec = spec_for(tmp_path, source, target, sshd, domain)
    mailplan("apply", str(spec), "--auto-approve", env=ENV, check=True)
    saved = tmp_path / "p.json"
    plan = mailplan("plan", str(spec), "-o", str(saved), env=ENV, check=True)
    assert "No changes." in plan.stdout
    assert oct(saved.stat().st_mode & 0o777) == "0o600"
    # the target host is recorded, for show to name
    assert json.loads(saved.read_text())["target_host"] == "newmail"
    # someone changes things by hand between plan and apply
    assert target.tool("vsetuserquota", f"alice@{domain}", "5M").returncode == 0
    assert target.tool("vadduser", f"intruder@{domain}", "Intrude1").returncode == 0
    stale = mailplan("apply", str(saved), env=ENV)
    assert stale.returncode == 1
    assert "changed since this plan was saved" in stale.stderr
    assert f"(now: ~ quota alice@{domain})" in stale.stderr  # the first difference
    assert "Summary:" not in stale.stdout and "failed" not in stale.stdout  # said once
    fresh = mailplan("plan", str(spec), env=ENV, check=True).stdout
    assert f"~ quota alice@{domain}: 5242880S (5M) -> 1073741824S (1G)" in fresh
    assert f"= intruder@{domain}" in fresh  # not in the spec, not ours: left alone
    saved2 = tmp_path / "p2.json"
    mailplan("plan", str(spec), "-o", str(saved2), env=ENV, check=True)
    done = mailplan("apply", str(saved2), env=ENV, check=True)
    assert "Apply complete: 1 change(s) made." in done.stdout
    doc = json.loads(mailplan("plan", str(spec), "--json", env=ENV, check=True).stdout)
    assert doc["summary"] == {"create": 0, "update": 0, "delete": 0}
    assert doc["left_alone"] == [{"domain": domain, "user": "intruder", "reason":
                                  "on the target but not in the spec; not created by "
                                  "mailplan, left alone"}]
    # a quota and a comment changed together: two steps, each checks what it set
    spec = spec_for(tmp_path, source, target, sshd, domain,
                    users=[{"name": "bob", "quota": "3G", "comment": "Robert D."},
                           {"name": "charlotte", "from": "carol"}])
    both = mailplan("apply", str(spec), "--auto-approve", env=ENV, check=True)
    assert "Apply complete: 2 change(s) made." in both.stdout
    info = target.tool("vuserinfo", f"bob@{domain}").stdout.decode()
    assert "quota:     3221225472S" in info and "comment/gecos: Robert D." in info


@pytest.mark.ssh
def test_prune_only_what_mailplan_created(tmp_path, source, target, sshd):
    domain = unique_domain()
    spec = spec_for(tmp_path, source, target, sshd, domain)
    mailplan("apply", str(spec), "--auto-approve", env=ENV, check=True)
    spec2 = spec_for(tmp_path, source, target, sshd, domain,
                     users=[{"name": "bob", "quota": "2.5G", "comment": "Robert"}])
    plan = mailplan("plan", str(spec2), env=ENV, check=True).stdout
    assert f"- user charlotte@{domain}" in plan and "--prune" in plan
    no_prune = mailplan("apply", str(spec2), "--auto-approve", env=ENV, check=True).stdout
    assert "the plan's 1 deletion(s) are left out without --prune" in no_prune
    assert target.tool("vuserinfo", "-n", f"charlotte@{domain}").returncode == 0
    saved = tmp_path / "prune.json"
    said = mailplan("plan", str(spec2), "-o", str(saved), env=ENV, check=True).stdout
    assert f"with them, mail included: mailplan apply --prune {saved}" in said
    mailplan("apply", "--prune", str(saved), env=ENV, check=True)
    assert target.tool("vuserinfo", "-n", f"charlotte@{domain}").returncode != 0
    assert "No changes." in mailplan("plan", str(spec2), env=ENV, check=True).stdout


@pytest.mark.ssh
def test_prune_leaves_a_user_made_again_by_hand_once_an_apply_saw_it_gone(tmp_path, source,
                                                                          target, sshd):
    # charlotte, made by mailplan, is deleted by hand (vdeluser): the next apply drops
    # mailplan's record of her, so the charlotte an admin makes again by hand later, with
    # her own mail, is not taken for mailplan's and --prune leaves her alone
    domain = unique_domain()
    spec = spec_for(tmp_path, source, target, sshd, domain)
    mailplan("apply", str(spec), "--auto-approve", env=ENV, check=True)
    assert target.tool("vdeluser", f"charlotte@{domain}").returncode == 0
    spec2 = spec_for(tmp_path, source, target, sshd, domain,
                     users=[{"name": "bob", "quota": "2.5G", "comment": "Robert"}])
    seen = mailplan("plan", str(spec2), "-v", env=ENV, check=True).stdout
    assert (f"charlotte@{domain}: created by mailplan, not on the target any more (removed "
            "by hand): the next apply drops its record") in seen
    said = mailplan("apply", "--prune", str(spec2), "--auto-approve", env=ENV, check=True)
    assert "Dropping mailplan's records of 1 object(s) removed by hand" in said.stdout
    assert "charlotte" not in mailplan("plan", str(spec2), "-v", env=ENV, check=True).stdout
    assert target.tool("vadduser", f"charlotte@{domain}", "Again#1").returncode == 0
    plan = mailplan("plan", str(spec2), env=ENV, check=True).stdout
    assert f"- user charlotte@{domain}" not in plan
    assert "Left alone" in plan and f"  = charlotte@{domain}\n" in plan
    mailplan("apply", "--prune", str(spec2), "--auto-approve", env=ENV, check=True)
    assert target.login_ok(f"charlotte@{domain}", "Again#1")


@pytest.mark.ssh
def test_odd_usernames_work_and_execute_nothing(tmp_path, target, sshd):
    canary = tmp_path / "canary"
    name = "ab;touch${IFS}c"  # rejected: ';' is not a vpopmail byte
    src = make_source(tmp_path / "source", [SourceAccount("plain", 1000, "", "pw1")])
    domain = unique_domain()
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      source_host=ssh_host(sshd), target_host=ssh_host(sshd),
                      domains={domain: {"users": [{"name": name, "from": "plain"}]}})
    bad = mailplan("validate", str(spec))
    assert bad.returncode == 1 and "contains characters vpopmail rejects: ';'" in bad.stderr
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      source_host=ssh_host(sshd), target_host=ssh_host(sshd),
                      domains={domain: {"users": [{"name": ODD, "from": "plain",
                                                   "comment": "$(touch x) `id`"}]}})
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert target.login_ok(f"{ODD}@{domain}", "pw1")
    info = target.tool("vuserinfo", "-c", f"{ODD}@{domain}").stdout.decode()
    assert info == "$(touch x) `id`\n"
    assert not canary.exists() and not Path("x").exists()
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


@pytest.mark.ssh
def test_failed_step_stops_and_state_shows_what_was_done(tmp_path, source, target, sshd):
    if REAL_VPOPMAIL:
        pytest.skip("replaces a vpopmail program by a failing one")
    domain = unique_domain()
    spec = spec_for(tmp_path, source, target, sshd, domain)
    real = Path(target.vpopmail_dir, "bin/vadduser")
    hidden = Path(target.vpopmail_dir, "bin/.orig/vadduser")
    hidden.parent.mkdir()
    real.rename(hidden)
    # vpopmail's habit: an error on stdout and exit 0, here for the second user
    real.write_text("#!/bin/sh\ncase \"$*\" in *bob@*) echo 'Error: Unable to chown user "
                    f"dir'; exit 0;; esac\nexec {hidden} \"$@\"\n")
    real.chmod(0o755)
    res = mailplan("apply", str(spec), "--auto-approve", env=ENV)
    assert res.returncode == 1
    assert f"step + user bob@{domain}: vadduser failed (exit 0): Error: Unable to chown" \
        in res.stderr
    state = json.loads((tmp_path / "migration.state.json").read_text())
    assert state["history"][-1]["result"] == "failed"
    assert set(state["managed"][domain]["users"]) == {"alice"}
    hidden.rename(real)
    mailplan("apply", str(spec), "--auto-approve", env=ENV, check=True)
    assert "No changes." in mailplan("plan", str(spec), env=ENV, check=True).stdout


@pytest.mark.ssh
def test_killed_apply_converges_on_rerun(tmp_path, target, sshd):
    accounts = [SourceAccount(f"user{i:03d}", 1000 + i, f"User {i}", f"pw{i}")
                for i in range(40)]
    src = make_source(tmp_path / "source", accounts)
    domain = unique_domain()
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      source_host=ssh_host(sshd), target_host=ssh_host(sshd),
                      domains={domain: {"import": {"uid_min": 1000}}})
    kill_apply_when(spec, lambda data: data.count(b"\n") >= 12)
    partial = mailplan("plan", str(spec), check=True).stdout
    assert "to create" in partial  # work remains
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout
    listing = target.tool("vuserinfo", "-n", "-D", domain).stdout.decode().split("\n")
    names = [ln for ln in listing if ln and not ln.startswith("---")]
    assert sorted(names) == sorted(["postmaster"] + [a.name for a in accounts])
    assert all(target.login_ok(f"{a.name}@{domain}", a.password) for a in accounts[::7])
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert [h["result"] for h in state["history"]] == ["interrupted", "ok"]


@pytest.mark.ssh
def test_bad_hosts_change_nothing(tmp_path, source, target, sshd):
    domain = unique_domain()
    unknown_key = {**ssh_host(sshd), "known_hosts": str(tmp_path / "empty_known_hosts")}
    (tmp_path / "empty_known_hosts").write_text("")
    spec = write_spec(tmp_path / "m.yaml", source_root=source, target=target,
                      source_host=ssh_host(sshd), target_host=unknown_key,
                      domains={domain: {"import": {}}})
    res = mailplan("apply", str(spec), "--auto-approve")
    assert res.returncode == 1 and "host newmail: the SSH host key" in res.stderr
    assert re.search(r"is unknown \(it offered ssh-ed25519 SHA256:\S+\); refusing", res.stderr)
    spec = write_spec(tmp_path / "m.yaml", source_root=source,
                      target=type(target)("/nonexistent/vpopmail", target.qmail_dir, []),
                      source_host=ssh_host(sshd), target_host=ssh_host(sshd),
                      domains={domain: {"import": {}}})
    res = mailplan("plan", str(spec))
    assert res.returncode == 1 and "no vpopmail found" in res.stderr
    spec = write_spec(tmp_path / "m.yaml", source_root=source, target=target,
                      source_host=ssh_host(sshd), target_host=ssh_host(sshd),
                      domains={domain: {}})
    (source / "etc/shadow").rename(source / "etc/shadow.gone")
    res = mailplan("plan", str(spec))
    assert res.returncode == 1 and "cannot read" in res.stderr and "shadow" in res.stderr
    assert target.tool("vdominfo", domain).returncode != 0  # nothing was created


@pytest.mark.ssh
def test_a_saved_plan_resumes_after_a_kill_and_goes_stale_after_it_is_done(tmp_path, target,
                                                                           sshd):
    accounts = [SourceAccount(f"user{i:03d}", 1000 + i, f"User {i}", f"pw{i}")
                for i in range(30)]
    src = make_source(tmp_path / "source", accounts)
    domain = unique_domain()
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      source_host=ssh_host(sshd), target_host=ssh_host(sshd),
                      domains={domain: {"import": {"uid_min": 1000}}})
    saved = tmp_path / "p.json"
    mailplan("plan", str(spec), "-o", str(saved), check=True)
    plan_id = json.loads(saved.read_text())["plan_id"]
    journal = tmp_path / "m.state.json.journal"
    proc = subprocess.Popen([sys.executable, "-m", "mailplan", "apply", str(saved)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if journal.exists() and journal.read_bytes().count(b"\n") >= 10:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    assert proc.wait() == -signal.SIGKILL, "the apply finished before it could be killed"
    # the same saved plan again: a resume of that plan, not a stale plan
    resumed = mailplan("apply", str(saved))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert [(h["plan_id"], h["result"]) for h in state["history"]] == [
        (plan_id, "interrupted"), (plan_id, "ok")]
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout
    # once done, the plan is used up: refused as it is (it would otherwise apply what a
    # later plan would do, e.g. import mail that arrived since, never reviewed), and
    # after someone changed the target
    logs = sorted((tmp_path / "m.state.json.logs").iterdir())
    for _ in range(2):
        stale = mailplan("apply", str(saved))
        assert stale.returncode == 1 and "this plan was already applied" in stale.stderr, (
            stale.stderr)
        # said before any host is read: no apply log begun for it
        assert "Logging this apply" not in stale.stdout + stale.stderr
        assert target.tool("vsetuserquota", f"user000@{domain}", "5M").returncode == 0
    assert sorted((tmp_path / "m.state.json.logs").iterdir()) == logs


def test_plan_reads_the_source_and_the_target_at_once(tmp_path):
    """Each host read is a remote command (a shell start-up): the target's starts
    without waiting for the source's. The source read here waits for the target's to
    begin, which it would never see if the two ran one after the other."""
    import threading

    from mailplan.connectors.local import LocalConnector
    from mailplan.engine import make_plan, state_path_for
    from mailplan.spec import load_spec
    from mailplan.state import State

    src = make_source(tmp_path / "source", ACCOUNTS[:2])
    target = install_target(tmp_path / "target")
    spec = load_spec(write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                                domains={unique_domain("par"): {"import": {"uid_min": 1000}}}))
    target_started = threading.Event()

    class Target(LocalConnector):
        def start(self, command: str):  # type: ignore[no-untyped-def]
            target_started.set()
            return super().start(command)

    class Source(LocalConnector):
        def start(self, command: str):  # type: ignore[no-untyped-def]
            assert target_started.wait(20), "the target was read only after the source"
            return super().start(command)

    planned = make_plan(spec, State.load(state_path_for(spec)),
                        {"oldmail": Source("oldmail"), "newmail": Target("newmail")})
    assert {c.user for c in planned.plan.changes if c.kind == "user"} >= {"alice", "bob"}
    planned.close()


def test_a_user_listing_vpopmail_cut_short_is_an_error_not_missing_users(target):
    # vuserinfo -D stops, exit 0, at a vpasswd line longer than it reads (299 bytes):
    # the users after it would be created again, or taken for absent by --prune's check
    domain = unique_domain("cut")
    target.created_domains.append(domain)
    assert target.tool("vadddomain", domain, "Pm-pass1").returncode == 0
    for name, comment in (("aaa", "A"), ("b" * 60, "c" * 64), ("zzz", "Z")):
        assert target.tool("vadduser", "-c", comment, f"{name}@{domain}", "Pw-1234"
                           ).returncode == 0
    with pytest.raises(HostError, match=rf"vuserinfo -D {domain} listed \d of the 4 users in "
                       rf".*/vpasswd \(not {'b' * 60}, .*zzz\)") as info:
        read_target(LocalConnector("new"), target.vpopmail_dir, [domain])
    assert "shorten that user's comment" in str(info.value)



def test_a_longer_password_and_a_shorter_comment_go_through_in_one_apply(tmp_path, target):
    """A user of the target whose comment the spec shortens and whose password gets a
    longer hash (MD5 -> SHA-512): with the comment stored, the new hash would take the
    vpasswd line past the 299 bytes vuserinfo -D lists; with the new one it stays
    within. Both change in one apply (the comment first), nothing is left for the next."""
    from mailplan.userdirs import vpasswd_line_length

    domain = unique_domain("gecos")
    target.created_domains.append(domain)
    assert target.tool("vadddomain", domain, "Pm-pass1").returncode == 0
    ddir = target.tool("vdominfo", "-d", domain).stdout.decode().split("\n")[0]
    new_hash = sha512_crypt.using(rounds=5000).hash("LongerPw1")
    # NAME:HASH:1:0:COMMENT:DDIR/NAME:NOQUOTA: with the new hash and the comment stored,
    # 304 bytes; with the new comment, 9 bytes shorter, 295
    base = vpasswd_line_length("", len(new_hash), 64, len(ddir) + 1, "NOQUOTA")
    name = "u" * min(32, max(3, (304 - base) // 2))
    stored = 304 - vpasswd_line_length(name, len(new_hash), 0, f"{ddir}/{name}", "NOQUOTA")
    if not 10 <= stored <= 64:  # vpopmail stores a comment of up to 64 bytes
        pytest.skip(f"the test's directory {ddir} leaves no room for the case")
    comment = "c" * (stored - 9)
    md5 = "$1$saltsalt$RiZ4O533shs928qfyqLuE/"
    assert target.tool("vadduser", "-e", md5, "-c", "o" * stored, f"{name}@{domain}"
                       ).returncode == 0
    src = make_source(tmp_path / "source", [
        SourceAccount(name, 1000, comment, raw_hash=new_hash)])
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"~ comment {name}@{domain}" in plan and f"~ password {name}@{domain}" in plan, plan
    assert plan.index("~ comment") < plan.index("~ password"), plan
    res = mailplan("apply", str(spec), "--auto-approve")
    assert res.returncode == 0 and "Not migrated" not in res.stdout + res.stderr, (
        res.stdout + res.stderr)
    assert target.login_ok(f"{name}@{domain}", "LongerPw1")
    lines = Path(ddir, "vpasswd").read_bytes().splitlines()
    (line,) = [ln for ln in lines if ln.startswith(f"{name}:".encode())]
    assert len(line) + 1 == 295 and f":{comment}:".encode() in line
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


def test_read_target_reads_where_vpopmail_puts_the_next_directories(target):
    domain = unique_domain("hash")
    target.created_domains.append(domain)
    assert target.tool("vadddomain", domain, "Pm-pass1").returncode == 0
    assert target.tool("vadduser", f"ann@{domain}", "Pw-1234").returncode == 0
    facts = read_target(LocalConnector("new"), target.vpopmail_dir, [domain])
    assert facts.domains[domain].hashing == DirHashing(2, "")  # postmaster and ann
    assert facts.domain_hashing is not None and facts.domain_hashing.count >= 1
    Path(facts.domains[domain].dir, ".dir_control_free").write_text("0\n")
    facts = read_target(LocalConnector("new"), target.vpopmail_dir, [domain])
    assert facts.domains[domain].hashing == DirHashing(2, "", ("0",))


@pytest.mark.skipif(bool(REAL_VPOPMAIL), reason="removes vpopmail's own files")
def test_a_missing_dir_control_file_of_vpopmails_in_use_is_not_a_fresh_one(target):
    """vadddomain writes the domains' and the new domain's .dir-control (cdb backend);
    where one is missing the count is kept elsewhere (an SQL backend's dir_control
    table): the next directory is unknown, not the top level of a fresh directory."""
    domain = unique_domain("hash")
    target.created_domains.append(domain)
    before = read_target(LocalConnector("new"), target.vpopmail_dir, [domain])
    assert before.domain_hashing is not None
    assert target.tool("vadddomain", domain, "Pm-pass1").returncode == 0
    facts = read_target(LocalConnector("new"), target.vpopmail_dir, [domain])
    Path(facts.domains[domain].dir, ".dir-control").unlink()
    Path(target.vpopmail_dir, "domains/.dir-control").unlink()
    facts = read_target(LocalConnector("new"), target.vpopmail_dir, [domain])
    assert facts.domains[domain].hashing is None
    assert facts.domain_hashing is None  # domains/ holds domains: not a fresh install


@pytest.fixture
def short_target():
    """A target whose vpopmail directory has a short path (/tmp/mp-XXXXXXXX), as short
    as a real install's is nearly: the check of user directories measures the path."""
    root = Path(tempfile.mkdtemp(prefix="mp-"))
    t = install_target(root)
    yield t
    if REAL_VPOPMAIL:
        for domain in t.created_domains:
            t.tool("vdeldomain", domain)
    shutil.rmtree(root, ignore_errors=True)


def test_a_user_whose_directory_vpopmail_cannot_store_is_a_problem_not_a_failed_apply(
        tmp_path, short_target):
    # /home/vpopmail/domains/DOMAIN/USER: 23 + 73 + 1 + 64 = 161 bytes, one past
    # vpopmail's MAX_PW_DIR: vadduser made the directory, then refused the hash
    # ("dir too long"), leaving the account with its temporary password
    target = short_target
    domain = "l" * 50 + "." + unique_domain("long")
    long = "k" * 64
    assert len(domain) == 73
    src = make_source(tmp_path / "source", [SourceAccount("ann", 1000, "Ann", "pw0"),
                                            SourceAccount(long, 1001, "K", "pw1")])
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    out = mailplan("plan", str(spec), check=True).stdout
    assert f"+ user ann@{domain}" in out and f"+ user {long}@" not in out, out
    problem = next(x for x in out.split("\n") if f"! {long}@{domain}: " in x)
    size = len(f"{target.vpopmail_dir}/domains/{domain}/{long}")
    assert f"its directory {target.vpopmail_dir}/domains/{domain}/{long} would be {size} " \
           "bytes long; vpopmail stores at most 160 bytes (MAX_PW_DIR)" in problem, problem
    assert "Plan: 2 to create, 1 to change" in out, out  # the domain, ann; the catch-all
    applied = mailplan("apply", str(spec), "--auto-approve", check=True)
    assert "Apply complete: 3 change(s) made." in applied.stdout, applied.stdout
    assert target.tool("vuserinfo", f"ann@{domain}").returncode == 0
    assert target.tool("vuserinfo", f"{long}@{domain}").returncode != 0  # never attempted
    again = mailplan("plan", str(spec), check=True).stdout
    assert "No changes." in again and f"! {long}@{domain}: its directory" in again, again
    verified = mailplan("verify", str(spec)).stdout  # not migrated, not a missing account
    assert f"FAIL  {long}@{domain}: its directory" in verified, verified
    assert verified.count(f"{long}@{domain}") == 1, verified


def test_a_new_domains_catch_all_to_a_withheld_user_bounces(tmp_path, short_target):
    # vadddomain's own catch-all deletes silently: the plan, apply and the next plan say
    # and do bounce instead, and verify reports the user as not migrated
    target = short_target
    domain = "l" * 50 + "." + unique_domain("long")
    long = "k" * 64
    src = make_source(tmp_path / "source", [SourceAccount("ann", 1000, "Ann", "pw0"),
                                            SourceAccount(long, 1001, "K", "pw1")])
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target, domains={
        domain: {"import": {"uid_min": 1000}, "unknown_recipients": {"deliver_to": long}}})
    out = mailplan("plan", str(spec), check=True).stdout
    assert f"~ catchall {domain}: delete silently (vadddomain's default) -> bounce" in out, out
    assert "they bounce instead (vadddomain's default would delete them silently)" in out, out
    mailplan("apply", str(spec), "--auto-approve", check=True)
    qmail_default = Path(target.vpopmail_dir, "domains", domain, ".qmail-default")
    assert "bounce-no-mailbox" in qmail_default.read_text()
    again = mailplan("plan", str(spec), check=True).stdout
    assert "No changes." in again, again


@pytest.mark.ssh
def test_a_user_created_but_not_recorded_before_a_kill_is_still_mailplans(tmp_path, target,
                                                                          sshd):
    # kill -9 between a vadduser that succeeded and its journal line: the next run must
    # still count the user as created by mailplan (else --prune would never remove it)
    accounts = [SourceAccount(f"u{i}", 1000 + i, f"U {i}", f"pw{i}") for i in range(3)]
    src = make_source(tmp_path / "source", accounts)
    domain = unique_domain("intent")
    target.created_domains.append(domain)
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      source_host=ssh_host(sshd), target_host=ssh_host(sshd),
                      domains={domain: {"import": {"uid_min": 1000}}})
    bindir = Path(target.vpopmail_dir, "bin")
    (bindir / "real").mkdir()
    (bindir / "vadduser").rename(bindir / "real/vadduser")
    marker = tmp_path / "u1-added"
    (bindir / "vadduser").write_text(  # the real one, then a stall for u1 (killed there)
        f'#!/bin/sh\n{bindir}/real/vadduser "$@"; rc=$?\ncase "$*" in *u1@{domain}*) '
        f'[ -e {marker} ] || {{ touch {marker}; sleep 30; }};; esac\nexit $rc\n')
    (bindir / "vadduser").chmod(0o755)
    kill_apply_when(spec, lambda _journal: marker.exists())
    journal = spec.with_name("m.state.json.journal").read_text()
    assert '"user": "u1"' in journal and "create-user:u1@" in journal  # its intent only
    assert journal.count("create-user:u1@") == 1
    mailplan("apply", str(spec), "--auto-approve", check=True)
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert sorted(state["managed"][domain]["users"]) == ["u0", "u1", "u2"]
    assert state["intents"] == {}
    # dropped from the spec, u1 is shown for deletion like u2, not left alone
    write_spec(spec, source_root=src, target=target, source_host=ssh_host(sshd),
               target_host=ssh_host(sshd),
               domains={domain: {"import": {"uid_min": 1000, "exclude": ["u1", "u2"]}}})
    out = mailplan("plan", str(spec), check=True).stdout
    assert f"- user u1@{domain}" in out and f"- user u2@{domain}" in out, out


def test_a_user_locked_on_the_old_server_after_migration_keeps_the_mailbox(tmp_path,
                                                                         target):
    """u1 was migrated with his mail, then locked on the old server (passwd -l). The plan
    said "no longer in the spec" and apply --prune deleted his mailbox, mail and all;
    then his old password went on letting him in on the new server, and mail the old
    server still delivered to him stayed there. Now he is locked on the new server too,
    his mail kept and still migrated, and unlocked again once the old server unlocks
    him."""
    u1 = SourceAccount("u1", 1001, "U 1", "pw1")
    hashed = u1.hash()
    src = make_source(tmp_path / "source", [SourceAccount("u1", 1001, "U 1", raw_hash=hashed)])
    (src / "var/spool/mail/u1").write_text("From a@x.example Mon Nov  2 10:00:00 2026\n"
                                           "Subject: kept\n\nhello\n\n")
    domain = unique_domain("lock")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert target.login_ok(f"u1@{domain}", "pw1")
    make_source(src, [SourceAccount("u1", 1001, "U 1", raw_hash="!" + hashed)])
    with open(src / "var/spool/mail/u1", "a") as fh:  # the old server still delivers
        fh.write("From b@x.example Tue Nov  3 10:00:00 2026\nSubject: later\n\nhi\n\n")
    (src / "home/u1/.forward").write_text("\\u1, boss@x.example\n")  # and forwards
    plan = mailplan("plan", str(spec), "-v", check=True).stdout
    assert "cannot be migrated" not in plan and "Problems" not in plan, plan
    assert f"- user u1@{domain}" not in plan, plan
    assert f"+ mailbox u1@{domain} INBOX" in plan, plan
    assert f"+ forward u1@{domain}\n      ./Maildir/, &boss@x.example" in plan, plan
    assert f"~ lock u1@{domain}: login allowed -> locked" in plan, plan
    assert "source account 'u1' is locked (shadow line 3): locked here the way passwd -l " \
           "does" in plan, plan
    applied = mailplan("apply", str(spec), "--auto-approve", "--prune", check=True)
    assert hashed not in applied.stdout + applied.stderr
    res = target.tool("vuserinfo", "-d", f"u1@{domain}")
    assert res.returncode == 0, res.stdout  # not deleted
    udir = res.stdout.decode().strip()
    assert sorted(p.read_text() for p in Path(udir, "Maildir/new").iterdir()) == [
        "Subject: kept\n\nhello\n", "Subject: later\n\nhi\n"]
    assert not target.login_ok(f"u1@{domain}", "pw1")
    vpasswd = Path(udir).parent / "vpasswd"
    assert f"u1:!{hashed}:" in vpasswd.read_text()  # the hash kept behind the '!'
    plan = mailplan("plan", str(spec), "-v", check=True).stdout
    assert "~ lock" not in plan and "No changes." in plan, plan
    assert f"= u1@{domain}: user exists, locked (source account 'u1' is locked (shadow " \
           "line 3)); quota and comment match" in plan, plan
    assert mailplan("verify", str(spec)).returncode == 0  # locked, as on the old server
    # unlocked on the old server (passwd -u): his password is migrated again
    make_source(src, [SourceAccount("u1", 1001, "U 1", raw_hash=hashed)])
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"~ password u1@{domain}" in plan, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert target.login_ok(f"u1@{domain}", "pw1")
    # locked again, through a saved plan (the way a reviewed plan is applied)
    make_source(src, [SourceAccount("u1", 1001, "U 1", raw_hash="!" + hashed)])
    saved = tmp_path / "lock.plan.json"
    mailplan("plan", str(spec), "-o", str(saved), check=True)
    assert '"kind": "lock"' in saved.read_text() and hashed not in saved.read_text()
    mailplan("apply", str(saved), "--auto-approve", check=True)
    assert not target.login_ok(f"u1@{domain}", "pw1")


LOCK_NAMES = ("u1", "u2", "u3")
LONG_HASH = f"$y$j9T${'s' * 77}${'h' * 43}"  # 128 bytes: stored, a '!' more refused


def _lock_accounts(locked: bool) -> list[SourceAccount]:
    return [SourceAccount(n, 1001 + i, n.upper(), raw_hash="!" * locked
                          + SourceAccount(n, 0, password=f"pw-{n}").hash())
            for i, n in enumerate(LOCK_NAMES)]


def _hashes_of(target, domain: str) -> dict[str, str]:
    udir = target.tool("vuserinfo", "-d", f"u1@{domain}").stdout.decode().strip()
    lines = (Path(udir).parent / "vpasswd").read_text().splitlines()
    return {f[0]: f[1] for f in (line.split(":") for line in lines)}


def test_a_lock_puts_a_bang_before_the_hash_there_now_whatever_it_is(tmp_path, target):
    """u1's password was changed on the new server (webmail, say), u2's hash is 128
    bytes long, u3 was locked there by hand ('*'); then the old server locks all three."""
    src = make_source(tmp_path / "source", _lock_accounts(locked=False))
    domain = unique_domain("lk")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert target.tool("vpasswd", f"u1@{domain}", "changed-here").returncode == 0
    assert target.tool("vmoduser", "-e", LONG_HASH, f"u2@{domain}").returncode == 0
    assert target.tool("vmoduser", "-e", "*", f"u3@{domain}").returncode == 0
    by_hand = _hashes_of(target, domain)["u1"]
    make_source(src, _lock_accounts(locked=True))
    res = mailplan("plan", str(spec), "--json", check=True)
    doc = json.loads(res.stdout)
    jsonschema.validate(doc, load_schema("plan-v1.schema.json"))
    assert [(c["kind"], c["user"]) for c in doc["changes"]] == [("lock", "u1"), ("lock", "u2")]
    saved = tmp_path / "lock.plan.json"
    mailplan("plan", str(spec), "-o", str(saved), check=True)
    jsonschema.validate(json.loads(saved.read_text()), load_schema("plan-v1.schema.json"))
    shown = mailplan("show", str(saved), check=True).stdout
    assert f"~ lock u1@{domain}: login allowed -> locked" in shown, shown
    assert "source account 'u1' is locked (shadow line 3): locked here the way passwd -l" \
        in shown, shown
    log = tmp_path / "apply.log"
    applied = mailplan("apply", str(saved), "--auto-approve", "--log", str(log), check=True)
    assert "changed: 2" in log.read_text(), log.read_text()
    hashes = _hashes_of(target, domain)
    for secret in {by_hand, LONG_HASH, *hashes.values()} - {"!", "*"}:
        assert secret not in applied.stdout + applied.stderr + log.read_text()
    assert hashes["u1"] == "!" + by_hand  # the hash set here kept behind the '!'
    assert hashes["u2"] == "!"  # no room for the '!' before it: locked all the same
    said = (f"! ~ lock u2@{domain}: its hash fills the 128 bytes vpopmail stores, leaving "
            "no room for a '!' before it: '!' alone is stored, the hash is gone")
    assert said in applied.stdout + applied.stderr and said in log.read_text()
    assert f"~ lock u1@{domain}: its hash" not in applied.stdout + applied.stderr
    assert hashes["u3"] == "*"  # locked already: left as it is
    assert not target.login_ok(f"u1@{domain}", "changed-here")
    assert "~ lock" not in mailplan("plan", str(spec), check=True).stdout
    make_source(src, _lock_accounts(locked=False))  # passwd -u: the old passwords again
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert all(target.login_ok(f"{n}@{domain}", f"pw-{n}") for n in LOCK_NAMES)


def _cut_inside_vadduser(tmp_path: Path, target) -> tuple[Path, str, Path]:
    """kill -9 an apply while vadduser for u1 has made u1's directory and not yet its
    vpasswd line (the relay then kills vadduser too, as sshd does when a connection
    drops): (spec, domain, u1's directory)."""
    accounts = [SourceAccount(f"u{i}", 1000 + i, f"U {i}", f"pw{i}") for i in range(3)]
    src = make_source(tmp_path / "source", accounts)
    domain = unique_domain("cut")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    udir = Path(target.vpopmail_dir, "domains", domain, "u1")
    marker = tmp_path / "u1-cut"
    wrap(target, "vadduser", f'case "$*" in *u1@{domain}*) [ -e {marker} ] || {{ '
                             f'mkdir -m 700 {udir} {udir}/Maildir; echo 0.0.0.0 > {udir}/lastauth; '
                             f'touch {marker}; sleep 30; '
                             '};; esac\nexec "$REAL" "$@"')
    kill_apply_when(spec, lambda _journal: marker.exists())
    assert (udir / "Maildir").is_dir() and not (udir / "Maildir/new").exists()
    return spec, domain, udir


def test_a_user_directory_left_by_a_vadduser_cut_short_is_replaced(tmp_path, target):
    # the directory holds nothing but empty directories and lastauth: no mail can be in
    # it, and vadduser would refuse that user at every run ("User's directory already
    # exists")
    spec, domain, udir = _cut_inside_vadduser(tmp_path, target)
    applied = mailplan("apply", str(spec), "--auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert target.login_ok(f"u1@{domain}", "pw1")
    assert (udir / "Maildir/new").is_dir()
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


def test_a_user_directory_holding_files_is_never_removed(tmp_path, target):
    spec, domain, udir = _cut_inside_vadduser(tmp_path, target)
    (udir / "Maildir/cur").mkdir()
    kept = udir / "Maildir/cur/1.M1P1.host:2,S"
    kept.write_text("Subject: mail\n\nkept\n")
    applied = mailplan("apply", str(spec), "--auto-approve")
    assert applied.returncode == 1
    assert kept.read_text() == "Subject: mail\n\nkept\n"
    assert (f"{udir} is there without an account (left by a vadduser cut short, or made "
            "by hand) and holds files") in applied.stderr, applied.stderr


def test_a_user_directory_left_in_a_hashed_sub_directory_is_replaced(tmp_path, target):
    """Past 100 users vpopmail makes a new user's directory in a hashed sub-directory
    (0/, 1/, ...): a vadduser cut short leaves it there, and the next vadduser tries the
    same sub-directory (the slot is not given back), so it must be found there."""
    src = make_source(tmp_path / "source", [SourceAccount("u1", 1001, "U 1", "pw1")])
    domain = unique_domain("hcut")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    assert target.tool("vadddomain", domain, "Pm-pass-1").returncode == 0
    for i in range(100):
        assert target.tool("vadduser", f"f{i:02d}@{domain}", "Fill-pass-1").returncode == 0
    # the slot the next user gets: a probe's, given back by vdeluser (backfill)
    assert target.tool("vadduser", f"probe@{domain}", "Probe-pass-1").returncode == 0
    slot = Path(target.tool("vuserinfo", "-d", f"probe@{domain}").stdout.decode().strip())
    assert target.tool("vdeluser", f"probe@{domain}").returncode == 0
    ddir = Path(target.tool("vdominfo", "-d", domain).stdout.decode().strip())
    assert slot.parent != ddir  # a hashed sub-directory
    udir = slot.parent / "u1"  # what vadduser cut between its mkdir and vpasswd leaves
    (udir / "Maildir").mkdir(mode=0o700, parents=True)
    (udir / "lastauth").write_text("0.0.0.0")
    applied = mailplan("apply", str(spec), "--auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert target.login_ok(f"u1@{domain}", "pw1")
    made = Path(target.tool("vuserinfo", "-d", f"u1@{domain}").stdout.decode().strip())
    assert (made / "Maildir/new").is_dir()
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


@pytest.mark.skipif(bool(REAL_VPOPMAIL), reason="the cut makes the directory where the "
                    "stand-in puts a new domain; a real install may hash it")
def test_a_domain_directory_left_by_a_vadddomain_cut_short_is_used_again(tmp_path, target):
    """kill -9 an apply while vadddomain has made the domain's directory and not yet its
    assign line: the next apply makes the domain (vpopmail's r_mkdir takes the directory
    that is there) and its users."""
    src = make_source(tmp_path / "source", [SourceAccount("u1", 1001, "U 1", "pw1")])
    domain = unique_domain("dcut")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    ddir = Path(target.vpopmail_dir, "domains", domain)
    marker = tmp_path / "domain-cut"
    wrap(target, "vadddomain", f'[ -e {marker} ] || {{ mkdir -m 700 {ddir}; touch {marker}; '
                               'sleep 30; }\nexec "$REAL" "$@"')
    kill_apply_when(spec, lambda _journal: marker.exists())
    assert ddir.is_dir() and not (ddir / "postmaster").exists()
    applied = mailplan("apply", str(spec), "--auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert target.login_ok(f"u1@{domain}", "pw1")
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


def wrap(target, tool: str, body: str) -> None:
    """Replace a vpopmail tool by a shell script running ``body`` (the real one is
    ``$REAL``, in bin/real/ so that the stand-in still knows its name)."""
    bindir = Path(target.vpopmail_dir, "bin")
    (bindir / "real").mkdir(exist_ok=True)
    (bindir / tool).rename(bindir / "real" / tool)
    (bindir / tool).write_text(f"#!/bin/sh\nREAL={bindir}/real/{tool}\n{body}\n")
    (bindir / tool).chmod(0o755)


def _ann_and_bob(tmp_path: Path, target, sshd, prefix: str, **domain_keys: object):
    """Source accounts ann and bob, a new domain, and a function writing the spec of that
    domain with a given import rule (and ``domain_keys``)."""
    accounts = [SourceAccount(n, 1000 + i, n, f"pw{i}") for i, n in enumerate(("ann", "bob"))]
    src = make_source(tmp_path / "source", accounts)
    domain = unique_domain(prefix)
    target.created_domains.append(domain)

    def spec_with(rule: dict) -> Path:
        return write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                          source_host=ssh_host(sshd), target_host=ssh_host(sshd),
                          domains={domain: {"import": rule, **domain_keys}})

    return spec_with, domain


@pytest.mark.ssh
def test_a_create_step_that_fails_claims_nothing(tmp_path, target, sshd):
    # vadduser refuses bob; bob leaves the spec and is made by hand later: he is not
    # mailplan's, and --prune never deletes him
    spec_with, domain = _ann_and_bob(tmp_path, target, sshd, "fail")

    spec = spec_with({"uid_min": 1000})
    wrap(target, "vadduser", 'case "$*" in *bob@*) echo "Error: refused"; exit 1;; esac\n'
                             'exec "$REAL" "$@"')
    assert mailplan("apply", str(spec), "--auto-approve").returncode == 1
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert state["intents"] == {}  # the failed step's intent is gone
    spec = spec_with({"uid_min": 1000, "exclude": ["bob"]})
    assert target.tool("real/vadduser", f"bob@{domain}", "Hand-made1").returncode == 0
    out = mailplan("apply", str(spec), "--auto-approve", "--prune", check=True).stdout
    assert f"- user bob@{domain}" not in out
    assert target.tool("vuserinfo", f"bob@{domain}").returncode == 0


def _create_only_postmaster_spec(tmp_path: Path, target, sshd, prefix: str,
                                 password: dict | None = None) -> tuple[Path, str]:
    """A spec with ``passwords: create_only`` and a new domain whose postmaster password
    is ``password`` (default: the hash of ``Postmaster-1``), and that domain."""
    src = make_source(tmp_path / "source", [SourceAccount("ann", 1000, "Ann", "pw0")])
    domain = unique_domain(prefix)
    target.created_domains.append(domain)
    password = password or {"hash": sha512_crypt.using(rounds=5000).hash("Postmaster-1")}
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      source_host=ssh_host(sshd), target_host=ssh_host(sshd),
                      domains={domain: {"import": {"uid_min": 1000},
                                        "postmaster_password": password}})
    text = spec.read_text().replace("target:\n", "target:\n  passwords: create_only\n", 1)
    spec.write_text(text)
    return spec, domain


@pytest.mark.ssh
def test_create_only_still_sets_the_postmaster_password_of_a_domain_cut_short(
        tmp_path, target, sshd):
    # vadddomain ran (a random postmaster password), the spec's hash did not take: the
    # domain is mailplan's and its postmaster password is not the spec's yet, so
    # create_only must not keep the random one
    spec, domain = _create_only_postmaster_spec(tmp_path, target, sshd, "pm")
    once = tmp_path / "failed-once"
    wrap(target, "vmoduser", f'case "$*" in *postmaster@*) [ -e {once} ] || '
                             f'{{ touch {once}; echo "Error: busy"; exit 1; }};; esac\n'
                             'exec "$REAL" "$@"')
    assert mailplan("apply", str(spec), "--auto-approve").returncode == 1
    assert not target.login_ok(f"postmaster@{domain}", "Postmaster-1")
    out = mailplan("plan", str(spec), check=True).stdout
    assert f"~ password postmaster@{domain}" in out, out
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert target.login_ok(f"postmaster@{domain}", "Postmaster-1")
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert "created" in state["managed"][domain]
    assert "postmaster_unset" not in state["managed"][domain]  # set now: kept from here on
    # set once from the spec: from now on create_only keeps what the admin sets there
    assert target.tool("vpasswd", f"postmaster@{domain}", "Changed-2").returncode == 0
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


@pytest.mark.ssh
def test_create_only_sets_a_postmaster_password_the_spec_gives_after_the_domain_was_made(
        tmp_path, target, sshd):
    # made without postmaster_password: vadddomain's random password, never shown, is no
    # one's choice; the spec's, added later, must be set under create_only too
    spec, domain = _create_only_postmaster_spec(tmp_path, target, sshd, "nopm")
    text = spec.read_text()
    data = yaml.safe_load(text)
    del data["domains"][domain]["postmaster_password"]
    spec.write_text(yaml.safe_dump(data))
    assert "postmaster password random, never shown" in mailplan("plan", str(spec)).stdout
    mailplan("apply", str(spec), "--auto-approve", check=True)
    spec.write_text(text)
    out = mailplan("plan", str(spec), check=True).stdout
    assert f"~ password postmaster@{domain}" in out, out
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert target.login_ok(f"postmaster@{domain}", "Postmaster-1")
    # set once from the spec: from now on create_only keeps what the admin sets there
    assert target.tool("vpasswd", f"postmaster@{domain}", "Changed-2").returncode == 0
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


@pytest.mark.ssh
def test_a_domain_made_by_hand_since_the_plan_is_never_claimed(tmp_path, target, sshd):
    # the domain is made by hand between the plan and the apply (vadddomain would refuse
    # it: "Domain already exists"): mailplan made nothing, so it is not mailplan's:
    # create_only keeps its postmaster password, --prune never deletes it
    spec, domain = _create_only_postmaster_spec(tmp_path, target, sshd, "race",
                                                {"env": "PM_PW"})
    once = tmp_path / "made-by-hand"
    vadd = Path(target.vpopmail_dir, "bin", "vadddomain")
    wrap(target, "vdominfo", f'"$REAL" "$@"; rc=$?\ncase "$*" in "-n -d {domain}") '
                             f'[ -e {once} ] || {{ touch {once}; {vadd} {domain} HandMade-1 '
                             '</dev/null >/dev/null 2>&1; } ;; esac\nexit $rc')
    # (right after the plan read the target)
    res = mailplan("apply", str(spec), "--auto-approve", env=ENV)
    assert res.returncode == 1, res.stderr
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert state["intents"] == {}  # the refused step claims nothing
    mailplan("apply", str(spec), "--auto-approve", env=ENV, check=True)
    assert target.login_ok(f"postmaster@{domain}", "HandMade-1")  # kept: not mailplan's
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert "created" not in state["managed"].get(domain, {})
    assert "postmaster_unset" not in state["managed"].get(domain, {})


@pytest.mark.ssh
def test_what_a_failing_vadddomain_left_is_mailplans(tmp_path, target, sshd):
    # vadddomain made the domain and then failed: it is mailplan's, and its postmaster
    # password (vadddomain's random one) is set from the spec by the next apply, also
    # under create_only
    spec, domain = _create_only_postmaster_spec(tmp_path, target, sshd, "half",
                                                {"env": "PM_PW"})
    wrap(target, "vadddomain", '"$REAL" "$1" Random-1 </dev/null >/dev/null 2>&1\n'
                               'echo "Error: could not update a control file"; exit 1')
    res = mailplan("apply", str(spec), "--auto-approve", env=ENV)
    assert res.returncode == 1 and "vadddomain failed" in res.stderr, res.stderr
    mailplan("apply", str(spec), "--auto-approve", env=ENV, check=True)
    assert target.login_ok(f"postmaster@{domain}", ENV["PM_PW"])
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert "created" in state["managed"][domain]


@pytest.mark.ssh
def test_create_only_keeps_a_postmaster_password_once_a_cut_domain_was_found_set(
        tmp_path, target, sshd):
    # killed after the spec's postmaster password took effect, before the step's record:
    # the next apply finds the domain with the spec's password, so nothing is left to
    # set; a password the admin sets afterwards must be kept (create_only)
    spec, domain = _create_only_postmaster_spec(tmp_path, target, sshd, "pmcut")
    marker = tmp_path / "pm-checked"
    wrap(target, "vuserinfo", f'case "$*" in *postmaster@*) [ -e {marker} ] || '
                              f'{{ touch {marker}; sleep 30; }};; esac\nexec "$REAL" "$@"')
    kill_apply_when(spec, lambda _journal: marker.exists())
    assert target.login_ok(f"postmaster@{domain}", "Postmaster-1")
    mailplan("apply", str(spec), "--auto-approve", check=True)
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert "created" in state["managed"][domain]
    assert target.tool("vpasswd", f"postmaster@{domain}", "Changed-2").returncode == 0
    out = mailplan("plan", str(spec), check=True).stdout
    assert "No changes." in out, out  # kept


@pytest.mark.ssh
def test_a_user_vadduser_made_is_mailplans_even_when_its_check_fails(tmp_path, target, sshd):
    # vadduser made bob but his quota did not take (the step fails on its read-back):
    # bob is there, made by mailplan, and stays mailplan's (--prune may remove him)
    spec_with, domain = _ann_and_bob(tmp_path, target, sshd, "made", default_quota="1G")

    spec = spec_with({"uid_min": 1000})
    once = tmp_path / "quota-dropped"
    wrap(target, "vadduser", f'case "$*" in *bob@*) [ -e {once} ] || {{ touch {once}; '
                             'h=$2; shift 4; exec "$REAL" -e "$h" "$@"; } ;; esac\n'
                             'exec "$REAL" "$@"')
    res = mailplan("apply", str(spec), "--auto-approve")
    assert res.returncode == 1 and "quota" in res.stderr, res.stderr
    assert target.tool("vuserinfo", f"bob@{domain}").returncode == 0
    mailplan("apply", str(spec), "--auto-approve", check=True)  # sets bob's quota
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert sorted(state["managed"][domain]["users"]) == ["ann", "bob"]
    spec = spec_with({"uid_min": 1000, "exclude": ["bob"]})
    out = mailplan("plan", str(spec), check=True).stdout
    assert f"- user bob@{domain}" in out, out


def test_create_only_sets_the_password_of_a_user_cut_short_in_vadduser(tmp_path):
    """vadduser -e makes the user with a temporary random password, then stores the
    hash (vadduser.c): an apply killed between the two leaves the user with that random
    password, which no one knows. It is mailplan's, and its password is not the
    source's yet: under create_only the next apply sets it (not 'kept'), and from then
    on keeps what is set there."""
    src = make_source(tmp_path / "source", [SourceAccount("ann", 1000, "Ann", "Ann-pw1")])
    target = install_target(tmp_path / "target")

    def spec_from(uid_min: int) -> Path:
        spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                          domains={"cut.example": {"import": {"uid_min": uid_min}}})
        spec.write_text(spec.read_text().replace("target:\n",
                                                 "target:\n  passwords: create_only\n", 1))
        return spec

    mailplan("apply", str(spec_from(2000)), "--auto-approve", check=True)  # the domain
    spec, state = spec_from(1000), tmp_path / "m.state.json"
    marker = tmp_path / "vadduser-ran"
    wrap(target, "vadduser", f'[ -e {marker} ] && exec "$REAL" "$@"\n'
                             'for a; do u=$a; done\n'  # vadduser() with a random password
                             f'"$REAL" -q 1073741824 "$u" Random-Tmp-1 >/dev/null; touch {marker}; '
                             'sleep 60')
    kill_apply_when(spec, lambda _journal: marker.exists())
    assert target.login_ok("ann@cut.example", "Random-Tmp-1")
    out = mailplan("plan", str(spec), check=True).stdout
    assert "~ password ann@cut.example" in out, out
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert target.login_ok("ann@cut.example", "Ann-pw1")
    assert "password_unset" not in json.loads(state.read_text())["managed"]["cut.example"][
        "users"]["ann"]
    # set once from the source: from now on create_only keeps what is set there
    assert target.tool("vpasswd", "ann@cut.example", "Changed-2").returncode == 0
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


def test_a_user_vadduser_made_before_failing_is_mailplans_and_gets_its_password(tmp_path):
    """vadduser fails after it made the user ("Error in vauth_setpw()"): the user is
    there with vadduser's random temporary password. It is mailplan's (claimed, so
    --prune may delete it), and the next apply sets its password, create_only or not."""
    src = make_source(tmp_path / "source", [SourceAccount("ann", 1000, "Ann", "Ann-pw1")])
    target = install_target(tmp_path / "target")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={"half.example": {"import": {"uid_min": 1000}}})
    spec.write_text(spec.read_text().replace("target:\n", "target:\n  passwords: create_only\n",
                                             1))
    once = tmp_path / "failed-once"
    wrap(target, "vadduser", f'[ -e {once} ] && exec "$REAL" "$@"\ntouch {once}\n'
                             'for a; do u=$a; done\n"$REAL" "$u" Random-Tmp-1 >/dev/null\n'
                             'echo "Error in vauth_setpw()"; exit 255')
    res = mailplan("apply", str(spec), "--auto-approve")
    assert res.returncode == 1 and "Error in vauth_setpw()" in res.stderr, res.stderr
    assert target.login_ok("ann@half.example", "Random-Tmp-1")
    out = mailplan("plan", str(spec), check=True).stdout
    assert "~ password ann@half.example" in out, out
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert target.login_ok("ann@half.example", "Ann-pw1")
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert "created" in state["managed"]["half.example"]["users"]["ann"]
