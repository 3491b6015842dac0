"""``--prune-only KIND``: the deletions of some kinds, not all of them as ``--prune``.

Over the real sshd and the vpopmail stand-in (or a real vpopmail), with the routing
tests' source tree: an alias the spec dropped is removed while a user that is no longer
migrated keeps its Maildir and mail; selecting ``user`` removes the user; a plan saved
with a selection carries exactly it, and cannot be applied as another.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
from migration import mailplan, ssh_host, unique_domain, write_spec
from test_integration_routing import World, target, world  # noqa: F401  (fixtures)

from mailplan.errors import MailplanError
from mailplan.plan import PRUNE_NOTE, Change, Plan
from mailplan.prune_select import parse_kinds, saved_selection, select_deletions
from mailplan.render import render_plan
from mailplan.spec import load_schema

MESSAGE = "From x@example.org Tue Nov  3 10:00:00 2026\nSubject: keep me\n\ncarol's mail\n\n"


def stale_alias_and_user(w: World) -> str:
    """Apply the spec with carol (one message in her spool) and the alias sales, then
    drop both from it: the plan then deletes the alias, carol's forward and carol."""
    (w.root / "var/spool/mail/carol").write_text(MESSAGE)
    mailplan("apply", str(w.write()), "--auto-approve", check=True)
    assert w.target.tool("vuserinfo", "-n", f"carol@{w.domain}").returncode == 0
    assert carol_mail(w) == 1
    return str(w.write(aliases={}, **{"import": {"uid_min": 1000, "exclude": ["bob", "carol"]}}))


def carol_mail(w: World) -> int:
    """How many messages carol's Maildir holds."""
    maildir = w.user_dir("carol") / "Maildir"
    return sum(1 for sub in ("new", "cur") for _ in (maildir / sub).iterdir())


@pytest.mark.ssh
def test_selecting_alias_removes_only_the_alias_and_user_removes_the_user(world):  # noqa: F811
    d, spec = world.domain, stale_alias_and_user(world)
    plan = mailplan("plan", spec, "--prune-only", "alias", check=True).stdout
    assert (f"  - alias sales@{d}\n      created by mailplan, no longer wanted (applied: "
            "selected with --prune-only alias)\n") in plan, plan
    left = plan.split("Deletions left out (2, not selected by --prune-only alias; not "
                      "applied):\n")[1]
    assert left.index(f"  - forward carol@{d}\n") < left.index(f"  - user carol@{d}\n")
    assert ("mail included (left out: user is not selected by --prune-only alias; "
            "--prune-only user, or --prune, applies it)") in left
    assert ("Deletions: only those selected with --prune-only alias are applied; 2 more "
            "left out (listed above).") in plan

    out = mailplan("apply", spec, "--auto-approve", "--prune-only", "alias", check=True).stdout
    assert f"sales@{d}" not in world.valias()
    assert world.target.tool("vuserinfo", "-n", f"carol@{d}").returncode == 0
    assert carol_mail(world) == 1  # her mail too
    assert (world.user_dir("carol") / ".qmail").exists()  # her forward was not selected
    assert ("2 deletion(s) left out (not selected by --prune-only alias): --prune-only "
            "forward,user, or --prune, applies them, deleting the Maildirs of the users and "
            "domains among them, mail included.\n") in out
    log = Path(out.rsplit("Log: ", 1)[1].strip()).read_text()
    assert "skipped: 2 (deletions not selected by --prune-only alias)" in log

    # the forward of a user whose deletion is selected goes with it
    plan = mailplan("plan", spec, "--prune-only", "user", check=True).stdout
    assert (f"  - forward carol@{d}\n      created by mailplan, no longer wanted (applied "
            "with the user's deletion, selected with --prune-only user: vdeluser removes "
            "the user's directory, this .qmail in it)\n") in plan, plan
    assert "Deletions left out" not in plan
    mailplan("apply", spec, "--auto-approve", "--prune-only", "user", check=True)
    assert world.target.tool("vuserinfo", "-n", f"carol@{d}").returncode != 0
    again = mailplan("plan", spec, "--detailed-exitcode")
    assert again.returncode == 0 and "\n  - " not in again.stdout, again.stdout


@pytest.mark.ssh
def test_a_plan_saved_with_a_selection_is_applied_as_saved_and_only_so(world):  # noqa: F811
    d, spec = world.domain, stale_alias_and_user(world)
    saved = world.tmp / "p.json"
    res = mailplan("plan", spec, "--prune-only", "alias", "-o", str(saved), check=True)
    assert res.stdout.splitlines()[-1] == (
        f"Saved the plan to {saved}. Apply exactly this plan, its 1 deletion(s) selected "
        f"with --prune-only alias included; 2 left out, with: mailplan apply {saved}")
    doc = json.loads(saved.read_text())
    assert doc["prune_only"] == ["alias"]
    assert [c["id"] for c in doc["changes"] if c["action"] == "delete"] == \
        [f"delete-alias:sales@{d}"]
    assert [c["id"] for c in doc["left_out"]] == [f"delete-forward:carol@{d}",
                                                 f"delete-user:carol@{d}"]
    shown = mailplan("show", str(saved), check=True).stdout
    assert "Deletions left out (2, not selected by --prune-only alias" in shown

    # applied as another selection: refused before anything is read or changed
    for other in (["--prune"], ["--prune-only", "alias,user"]):
        res = mailplan("apply", *other, str(saved))
        assert res.returncode == 1, res.stdout
        assert "this plan was saved with --prune-only alias: it is applied with the " \
            "deletions it holds, not as" in res.stderr, res.stderr
    # the selection edited in the file: its deletions are not that selection's
    for edited in (["alias", "user"], ["user"]):
        changed = world.tmp / "edited.json"
        changed.write_text(json.dumps({**doc, "prune_only": edited}))
        res = mailplan("apply", str(changed))
        assert res.returncode == 1
        assert "this plan's deletions are not those of a plan saved with --prune-only " \
            f"{','.join(edited)}" in res.stderr, res.stderr
    assert f"sales@{d}" in world.valias()

    res = mailplan("apply", str(saved), check=True)
    assert "Apply complete" in res.stdout
    assert f"sales@{d}" not in world.valias()
    assert world.target.tool("vuserinfo", "-n", f"carol@{d}").returncode == 0
    assert carol_mail(world) == 1


@pytest.mark.ssh
def test_a_domain_is_deleted_only_when_users_are_selected_too(world):  # noqa: F811
    """A second domain mailplan made, dropped from the spec: its deletion takes dan's
    mailbox with it, so it is left out unless both kinds are selected."""
    d, gone = world.domain, unique_domain("rg")
    (world.root / "var/spool/mail/alice").write_text(MESSAGE)
    hosts = {"source_host": ssh_host(world.sshd), "target_host": ssh_host(world.sshd)}
    first = {"import": {"uid_min": 1000, "exclude": ["bob", "carol", "dave"]}}
    write_spec(world.spec, source_root=world.root, target=world.target, **hosts,
               domains={d: first, gone: {"users": [{"name": "dan", "from": "alice"}]}})
    mailplan("apply", str(world.spec), "--auto-approve", check=True)
    spec = str(write_spec(world.spec, source_root=world.root, target=world.target, **hosts,
                          domains={d: first}))
    out = mailplan("apply", spec, "--auto-approve", "--prune-only", "user", check=True).stdout
    assert (f"  - domain {gone}\n      created by mailplan, no longer in the spec; vdeldomain "
            "deletes its users' Maildirs, mail included (left out: domain is not selected by "
            "--prune-only user; --prune-only user,domain, or --prune, applies it)") in out, out
    assert "Nothing to apply: the plan's 1 deletion(s) are left out (not selected by " \
        "--prune-only user)." in out
    assert world.target.tool("vuserinfo", "-n", f"dan@{gone}").returncode == 0
    mailplan("apply", spec, "--auto-approve", "--prune-only", "domain,user", check=True)
    assert world.target.tool("vdominfo", gone).returncode != 0
    assert world.target.tool("vuserinfo", "-n", f"alice@{d}").returncode == 0


def test_a_domain_holding_aliases_mailplan_did_not_make_is_never_deleted(world):  # noqa: F811
    """vdeldomain removes the whole domain directory, a hand-made alias (.qmail-NAME)
    with it, and refuses a domain alias domains point at: either keeps the domain, with
    a problem saying why, until they are gone; then --prune deletes it."""
    d, gone = world.domain, unique_domain("rh")
    hosts = {"source_host": ssh_host(world.sshd), "target_host": ssh_host(world.sshd)}
    first = {"import": {"uid_min": 1000, "exclude": ["bob", "carol", "dave"]}}
    write_spec(world.spec, source_root=world.root, target=world.target, **hosts,
               domains={d: first, gone: {"users": [{"name": "dan", "from": "alice"}]}})
    mailplan("apply", str(world.spec), "--auto-approve", check=True)
    alias_domain = unique_domain("rha")
    world.target.created_domains.append(alias_domain)
    vadd = world.target.tool("vaddaliasdomain", alias_domain, gone)
    assert vadd.returncode == 0, vadd
    assert world.target.tool("valias", "-i", "x@remote.example", f"list@{gone}"
                             ).returncode == 0
    spec = str(write_spec(world.spec, source_root=world.root, target=world.target, **hosts,
                          domains={d: first}))
    res = mailplan("apply", spec, "--auto-approve", "--prune")
    assert res.returncode == 3, res.stdout + res.stderr
    assert (f"  ! {gone}: created by mailplan, no longer in the spec, but alias domains "
            f"point at it ({alias_domain}): not deleted, even with --prune") in res.stdout
    assert f"- domain {gone}" not in res.stdout
    assert world.target.tool("vdeldomain", alias_domain).returncode == 0
    res = mailplan("apply", spec, "--auto-approve", "--prune")
    assert res.returncode == 3, res.stdout + res.stderr
    assert (f"  ! {gone}: created by mailplan, no longer in the spec, but it holds 1 "
            "alias(es) mailplan did not write, or wrote and someone changed since "
            f"(list@{gone}): not deleted, even with --prune") in res.stdout, res.stdout
    assert f"- domain {gone}" not in res.stdout
    # the guard's valias -s is in routing's batch of reads of the target, not one more
    log = max(world.spec.parent.glob("*.logs/apply-*.log"), key=lambda p: p.stat().st_mtime)
    batch = {name: when for *when, name in re.findall(
        r"(?m)^(\S+) \[newmail\] [^\n]*\(batch \d+/(\d+), ([0-9.]+)s for the batch\)\n"
        r"    \$ \S*/valias -s (\S+)$", log.read_text())}
    assert batch.keys() == {d, gone} and batch[gone] == batch[d], batch
    assert world.target.tool("vuserinfo", "-n", f"dan@{gone}").returncode == 0
    assert "x@remote.example" in world.target.tool("valias", "-s", f"list@{gone}"
                                                   ).stdout.decode()
    assert world.target.tool("valias", "-d", f"list@{gone}").returncode == 0
    mailplan("apply", spec, "--auto-approve", "--prune", check=True)
    assert world.target.tool("vdominfo", gone).returncode != 0


def test_users_mailplan_made_in_a_domain_it_did_not_make_are_pruned_when_it_is_dropped(
        world):  # noqa: F811
    """A domain made by hand, where mailplan created a user and an alias, dropped from the
    spec: the domain is not mailplan's and stays, as does an alias made by hand there;
    the user and the alias are mailplan's, and are shown for deletion (the plan said "No
    changes" and forgot them), deleted with --prune-only alias,user."""
    d, hand = world.domain, unique_domain("rd")
    world.target.created_domains.append(hand)
    assert world.target.tool("vadddomain", hand, "HandPw1").returncode == 0
    hosts = {"source_host": ssh_host(world.sshd), "target_host": ssh_host(world.sshd)}
    first = {"import": {"uid_min": 1000, "exclude": ["bob", "carol", "dave"]}}
    write_spec(world.spec, source_root=world.root, target=world.target, **hosts,
               domains={d: first, hand: {"users": [{"name": "dan", "from": "alice"}],
                                         "aliases": {"team": ["dan"]}}})
    mailplan("apply", str(world.spec), "--auto-approve", check=True)
    assert world.target.tool("valias", "-i", "x@remote.example", f"byhand@{hand}"
                             ).returncode == 0
    spec = str(write_spec(world.spec, source_root=world.root, target=world.target, **hosts,
                          domains={d: first}))
    plan = mailplan("plan", spec, "--detailed-exitcode")
    assert (f"  - alias team@{hand}\n      created by mailplan, no longer wanted (applied "
            "only with --prune)\n") in plan.stdout, plan.stdout
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert (f"  - user dan@{hand}\n      created by mailplan, no longer in the spec (its "
            "domain, which mailplan did not make, is no longer either: kept); vdeluser "
            "deletes its Maildir, mail included (applied only with --prune)\n") in plan.stdout
    assert f"- domain {hand}" not in plan.stdout
    mailplan("apply", spec, "--auto-approve", "--prune-only", "alias,user", check=True)
    assert world.target.tool("vuserinfo", "-n", f"dan@{hand}").returncode != 0
    assert world.target.tool("vdominfo", "-n", "-d", hand).returncode == 0
    aliases = world.target.tool("valias", "-s", hand).stdout.decode()
    assert f"team@{hand}" not in aliases and f"byhand@{hand} -> x@remote.example" in aliases
    again = mailplan("plan", spec, "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr


@pytest.mark.parametrize(("args", "said"), [
    (["plan", "m.yaml", "--prune-only", "mailbox"],
     "Invalid value for '--prune-only': 'mailbox' is not a kind of deletion; choose from "
     "alias, forward, user, domain (comma-separated, or the option repeated)"),
    (["apply", "m.yaml", "--prune-only", "alias,alias-domain"],
     "Invalid value for '--prune-only': 'alias-domain': mailplan never deletes an alias "
     "domain"),
    (["apply", "m.yaml", "--prune-only", "domain"],
     "Invalid value for '--prune-only': 'domain' needs 'user' too: vdeldomain deletes a "
     "domain with every user in it and their mail; give --prune-only user,domain"),
    (["plan", "m.yaml", "--prune-only", "alias,"],
     "Invalid value for '--prune-only': 'alias,': an empty kind"),
    (["apply", "m.yaml", "--prune", "--prune-only", "alias"],
     "--prune and --prune-only exclude each other"),
])
def test_a_bad_selection_is_an_error_naming_the_option(tmp_path, args, said):
    res = mailplan(*args, cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert said in " ".join(res.stderr.split()), res.stderr
    detailed = mailplan("plan", "m.yaml", "--detailed-exitcode", "--prune-only", "mailbox",
                        cwd=tmp_path)
    assert detailed.returncode == 1  # 2 there means "changes pending"


def stale_plan() -> Plan:
    """A plan that creates alice and deletes an alias, two forwards (one of a user it
    deletes), that user and a domain."""
    return Plan(spec_path="/srv/m.yaml", spec_digest="0" * 64, lineage=None, serial=0,
                target_digest="1" * 64, changes=[
                    Change("create", "user", "a.example", "alice", after="quota 1G"),
                    Change("delete", "alias", "a.example", "sales", reason=f"old {PRUNE_NOTE}"),
                    Change("delete", "forward", "a.example", "bob", reason=f"old {PRUNE_NOTE}"),
                    Change("delete", "forward", "a.example", "dan", reason=f"old {PRUNE_NOTE}"),
                    Change("delete", "user", "a.example", "dan", reason=f"old {PRUNE_NOTE}"),
                    Change("delete", "domain", "b.example", reason=f"old {PRUNE_NOTE}")])


def test_a_domain_and_the_forward_of_a_user_go_with_the_selection_of_users():
    plan = stale_plan()
    select_deletions(plan, parse_kinds(["domain", "USER"]))
    assert plan.prune_only == ("user", "domain")
    assert [c.id for c in plan.changes] == [
        "create-user:alice@a.example", "delete-forward:dan@a.example",
        "delete-user:dan@a.example", "delete-domain:b.example"]
    assert [c.id for c in plan.left_out] == ["delete-alias:sales@a.example",
                                            "delete-forward:bob@a.example"]
    assert plan.changes[3].reason == "old (applied: selected with --prune-only user,domain)"
    assert plan.left_out[0].reason == ("old (left out: alias is not selected by --prune-only "
                                       "user,domain; --prune-only alias, or --prune, applies it)")
    jsonschema.validate(plan.to_dict(), load_schema("plan-v1.schema.json"))
    again = Plan.from_dict(plan.to_dict(), "p.json")
    assert (again.prune_only, again.left_out) == (plan.prune_only, plan.left_out)
    # a domain left out says what selects it: users, their mail, come with it
    other = stale_plan()
    select_deletions(other, ("alias",))
    assert other.left_out[-1].reason.endswith("--prune-only user,domain, or --prune, "
                                              "applies it)")


def test_a_selection_with_nothing_to_apply_says_what_it_left_out():
    plan = stale_plan()
    plan.changes = [c for c in plan.changes
                    if c.action == "delete" and c.kind in ("user", "domain")]
    select_deletions(plan, ("alias", "forward"))
    text = render_plan(plan, target="newmail")
    assert "Deletions left out (2, not selected by --prune-only alias,forward; not " \
        "applied):\n  - user dan@a.example\n" in text
    assert text.endswith("No changes selected: the plan's 2 deletion(s) are left out (not "
                         "selected by --prune-only alias,forward).\n")
    assert "The target matches the spec" not in text


def test_a_plan_saved_without_a_selection_is_not_applied_with_one():
    with pytest.raises(MailplanError, match="this plan was saved without --prune-only: "
                       "--prune-only user would apply only some of the deletions it holds"):
        saved_selection(stale_plan(), prune=False, kinds=("user",))
    assert saved_selection(stale_plan(), prune=True, kinds=None) is None
