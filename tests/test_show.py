"""mailplan show: a state file (managed objects, last apply, mail counts) and a saved plan,
as text and JSON, without contacting any host."""

from __future__ import annotations

import json
import os
from pathlib import Path

from migration import (
    SourceAccount,
    install_target,
    mailplan,
    make_source,
    unique_domain,
    write_spec,
)

from mailplan.plan import Change, Plan
from mailplan.state import State


def make_state(path):
    state = State.load(path)
    state.begin("plan-1")
    state.record("create-domain:example.com", {"domain": "example.com", "created": True})
    state.record("create-user:alice@example.com",
                 {"domain": "example.com", "user": "alice", "created": True})
    state.record("create-alias:info@example.com",
                 {"domain": "example.com", "routing": "alias", "name": "info",
                  "created": True})
    state.record("create-mailbox:alice@example.com/INBOX",
                 {"mailbox": "alice@example.com/INBOX", "imported": 2000, "bytes": 4096})
    state.record("create-mailbox:alice@example.com/INBOX",
                 {"mailbox": "alice@example.com/INBOX", "imported": 5, "bytes": 10,
                  "checkpoint": {"path": "/var/mail/alice", "inode": 7, "offset": 99,
                                 "head": "h", "tail": "t", "count": 5}})
    state.record("create-mailbox:alice@example.com/Work",
                 {"mailbox": "alice@example.com/Work", "imported": 3, "bytes": 30})
    state.finish("ok", {"changes_done": 5, "changes_planned": 5})


def test_show_state_text_and_json(tmp_path):
    path = tmp_path / "m.state.json"
    make_state(path)
    text = mailplan("show", str(path), check=True).stdout
    assert "Managed by mailplan:" in text
    assert "  example.com (created " in text
    assert "    users (1): alice" in text and "    aliases (1): info" in text
    assert "Last apply: ok, started " in text and ", 5 of 5 change(s)" in text
    assert "  alice@example.com: 2008 message(s), 4.0K (INBOX 2005, Work 3)" in text
    assert "bytes as stored in the Maildirs" in text  # not the plan's measure: said so
    doc = json.loads(mailplan("show", str(path), "--json", check=True).stdout)
    assert doc["kind"] == "state" and doc["serial"] == 6
    assert doc["managed"]["example.com"]["users"] == ["alice"]
    assert doc["mail"]["alice@example.com"]["INBOX"] == {
        "imported": 2005, "bytes": 4106, "complete_through_byte": 99, "found_on_target": 0}
    assert doc["last_apply"]["result"] == "ok"
    # no apply of a spec recorded its path in this state file (made by hand)
    assert "\nFor no spec yet (the next apply records its own)\n" in text
    assert doc["spec_path"] is None


def test_show_names_the_spec_the_state_file_belongs_to(tmp_path):
    """The spec the first apply recorded, as recorded (from the state file's directory):
    what the refusal of another spec's apply names, and what to set by hand in the state
    file after renaming the spec (docs/troubleshooting.md)."""
    (tmp_path / "specs").mkdir()
    make_state(tmp_path / "m.state.json")
    State.load(tmp_path / "m.state.json").claim(tmp_path / "specs" / "m.yaml")
    text = mailplan("show", str(tmp_path / "m.state.json"), check=True).stdout
    assert "\nFor the spec specs/m.yaml (from the state file's directory)\n" in text, text
    doc = json.loads(mailplan("show", str(tmp_path / "m.state.json"), "--json",
                              check=True).stdout)
    assert doc["spec_path"] == "specs/m.yaml"


def test_show_a_saved_plan(tmp_path):
    plan = Plan("/x/m.yaml", "0" * 64, None, 0, "1" * 64,
                [Change("create", "user", "example.com", "bob", after="quota 1G"),
                 Change("update", "password", "example.com", "carol", before="a", after="b",
                        sensitive=True)])
    plan.save(tmp_path / "p.json")
    text = mailplan("show", str(tmp_path / "p.json"), check=True).stdout
    assert text.startswith(f"Saved plan {tmp_path / 'p.json'} (id {plan.plan_id}")
    assert "  + user bob@example.com" in text
    assert "~ password carol@example.com: (sensitive) -> (sensitive)" in text
    # a plan saved before the target host was recorded
    assert "mailplan will make these changes on the target:" in text
    doc = json.loads(mailplan("show", "--json", str(tmp_path / "p.json"), check=True).stdout)
    assert doc["kind"] == "plan" and doc["plan"]["summary"] == {"create": 1, "update": 1,
                                                                 "delete": 0}
    plan.target_host = "newmail"  # as the plan command records it: the spec's target host
    plan.save(tmp_path / "p.json")
    text = mailplan("show", str(tmp_path / "p.json"), check=True).stdout
    assert "mailplan will make these changes on newmail:" in text


def count_reads(monkeypatch, path: Path) -> list[str]:
    """A list that gets an entry each time ``path`` is read: opened with os.open (as
    mailplan.local_read opens it) or read with Path.read_text."""
    reads: list[str] = []
    real_read, real_open = Path.read_text, os.open

    def read_text(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self == path:
            reads.append("read")
        return real_read(self, *args, **kwargs)

    def os_open(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        if Path(name) == path:
            reads.append("read")
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    monkeypatch.setattr(os, "open", os_open)
    return reads


def test_a_saved_plan_is_read_once(tmp_path, monkeypatch):
    """show reads the plan file once and renders what it read: the file gone after that
    read, or rewritten, changes nothing it prints; a bad, foreign or other-version file
    is refused as before."""
    from mailplan.show import load_shown, render

    plan = Plan("/x/m.yaml", "0" * 64, None, 0, "1" * 64,
                [Change("create", "user", "example.com", "bob", after="quota 1G")],
                target_host="newmail")
    path = tmp_path / "p.json"
    plan.save(path)
    expected = mailplan("show", str(path), check=True).stdout
    reads = count_reads(monkeypatch, path)
    doc = load_shown(path)
    path.unlink()  # what was read goes on, not the file's name
    assert render(doc) == expected and reads == ["read"]
    assert doc["plan"] == plan.to_dict()
    for text, error in (("{", "not readable as JSON"),
                        (json.dumps({**plan.to_dict(), "format_version": 2}),
                         "plan format version 2; this mailplan reads version 1"),
                        (json.dumps({**plan.to_dict(), "changes": 5}),
                         "not a valid plan file: 5 is not of type 'array'")):
        path.write_text(text)
        shown = mailplan("show", str(path))
        assert shown.returncode == 1 and error in shown.stderr, shown.stderr


def test_a_state_file_is_read_once(tmp_path, monkeypatch):
    """show reads a state file given by name once (its JSON decides between plan and
    state, and the state is made from what was read); a file holding JSON null or a
    list is still refused as no state file, not taken for a missing one."""
    from mailplan.show import load_shown, render

    path = tmp_path / "m.state.json"
    make_state(path)
    expected = mailplan("show", str(path), check=True).stdout
    reads = count_reads(monkeypatch, path)
    doc = load_shown(path)
    assert render(doc) == expected and reads == ["read"]
    for text in ("null", "[]"):
        path.write_text(text)
        shown = mailplan("show", str(path))
        assert shown.returncode == 1 and "not a mailplan state file" in shown.stderr, (
            shown.stderr)


def test_show_spec_without_state_and_missing_file(tmp_path):
    spec = tmp_path / "m.yaml"
    spec.write_text("version: 1\nhosts: {a: {local: true}}\nsource: {host: a}\n"
                    "target: {host: a}\ndomains: {example.com: {}}\n")
    text = mailplan("show", str(spec), check=True).stdout
    assert text == f"No state yet at {tmp_path / 'm.state.json'}: nothing has been applied on a.\n"
    missing = mailplan("show", str(tmp_path / "nope.json"))
    assert missing.returncode == 1 and "no such file" in missing.stderr


def test_a_tampered_saved_plan_shows_its_text_escaped(tmp_path):
    # a saved plan is a file anyone with write access may have edited: its id, date,
    # spec path and target host are shown, never a terminal escape sequence they hold
    plan = Plan("/x/m\x1b]0;owned\x07.yaml", "0" * 64, None, 0, "1" * 64,
                [Change("create", "user", "example.com", "bob")],
                target_host="new\x1b[2Jmail")
    plan.plan_id = "id\x1b[2J"
    plan.created_at = "2024\x9b31m"
    plan.save(tmp_path / "p.json")
    text = mailplan("show", str(tmp_path / "p.json"), check=True).stdout
    head = text.splitlines()[0]
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    assert "(id id\\x1b[2J, made 2024\\x9b31m, for /x/m\\x1b]0;owned\\x07.yaml," in head
    assert "mailplan will make these changes on new\\x1b[2Jmail:" in text


def test_a_state_file_holding_the_wrong_things_is_a_clear_error(tmp_path):
    path = tmp_path / "m.state.json"
    path.write_text(json.dumps({"format_version": 1, "lineage": "x", "serial": 1,
                                "managed": {}, "history": [],
                                "mail": {"a@example.com/INBOX": {"imported": "many",
                                                                 "bytes": 1}}}))
    shown = mailplan("show", str(path))
    assert shown.returncode == 1 and "Traceback" not in shown.stderr
    assert "the state file's 'mail' does not hold mailboxes" in shown.stderr


def test_a_last_apply_without_its_planned_count_is_shown(tmp_path):
    # a hand-edited history entry: show said KeyError in a traceback
    path = tmp_path / "m.state.json"
    path.write_text(json.dumps({"format_version": 1, "lineage": "x", "serial": 1,
                                "managed": {}, "history": [{"result": "ok",
                                                            "changes_done": 2}]}))
    shown = mailplan("show", str(path))
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    assert "Last apply: ok, started None, finished -, 2 of ? change(s)" in shown.stdout


def test_a_journal_line_holding_the_wrong_things_is_a_clear_error(tmp_path):
    path = tmp_path / "m.state.json"
    make_state(path)
    journal = path.with_name(path.name + ".journal")
    for line in ('{"id": "x", "mailbox": "a@example.com/INBOX", "checkpoint": 5}',
                 '{"id": "x", "mailbox": 5}'):
        journal.write_text(line + "\n")
        shown = mailplan("show", str(path))
        assert shown.returncode == 1 and "Traceback" not in shown.stderr, shown.stderr
        assert f"{journal}: the state file's 'mail' does not hold mailboxes" in shown.stderr


def _import_and_checkpoint(path: Path, plan: str, *, imported: int, inode: int,
                           offset: int, count: int) -> None:
    """An apply of ``plan`` that imported ``imported`` messages into alice's INBOX (two
    bytes each) and recorded its checkpoint (``count`` messages through ``offset``)."""
    state = State.load(path)
    state.begin(plan)
    state.record("create-mailbox:alice@example.com/INBOX",
                 {"mailbox": "alice@example.com/INBOX", "imported": imported,
                  "bytes": 2 * imported})
    state.record("create-mailbox:alice@example.com/INBOX",
                 {"mailbox": "alice@example.com/INBOX",
                  "checkpoint": {"path": "/var/mail/alice", "inode": inode, "offset": offset,
                                 "head": "h", "tail": "t", "count": count}})
    state.finish("ok", {"changes_done": 1, "changes_planned": 1})


def test_show_counts_the_messages_an_apply_found_already_on_the_target(tmp_path):
    # an apply killed after its writer made 4000 messages durable but journaled 2000:
    # the next apply found the rest there and recorded only the checkpoint (as after a
    # deleted state file); show must not say the Maildir holds 2000
    path = tmp_path / "m.state.json"
    state = State.load(path)
    state.begin("plan-1")
    state.record("create-mailbox:alice@example.com/INBOX",
                 {"mailbox": "alice@example.com/INBOX", "imported": 2000, "bytes": 4000})
    state.finish("interrupted", {"changes_done": 0, "changes_planned": 1})
    state.begin("plan-2")
    state.record("checkpoint alice@example.com/INBOX",
                 {"mailbox": "alice@example.com/INBOX",
                  "checkpoint": {"path": "/var/mail/alice", "inode": 7, "offset": 9000,
                                 "head": "h", "tail": "t", "count": 4000}})
    state.finish("ok", {"changes_done": 0, "changes_planned": 0})
    text = mailplan("show", str(path), check=True).stdout
    assert ("  alice@example.com: 2000 message(s), 3.9K (INBOX 2000); 2000 more found "
            "already on the target (INBOX 2000)") in text, text
    doc = json.loads(mailplan("show", str(path), "--json", check=True).stdout)
    assert doc["mail"]["alice@example.com"]["INBOX"]["found_on_target"] == 2000
    # the old server then deletes 500 of the messages and 10 arrive: the next apply's
    # checkpoint counts 3510 and it imports 10; the 2000 found stay found (it said 1500)
    _import_and_checkpoint(path, "plan-3", imported=10, inode=8, offset=8000, count=3510)
    text = mailplan("show", str(path), check=True).stdout
    assert ("  alice@example.com: 2010 message(s), 3.9K (INBOX 2010); 2000 more found "
            "already on the target (INBOX 2000)") in text, text


def test_a_pruned_user_made_anew_counts_only_the_mail_of_its_new_maildir(tmp_path):
    """apply --prune deletes bob and his Maildir: show no longer counts the message
    imported there, and once bob is back, only the one imported again (it said 2)."""
    src = make_source(tmp_path / "source", [SourceAccount("ann", 1000, "Ann", "pw1"),
                                            SourceAccount("bob", 1001, "Bob", "pw2")])
    (src / "var/spool/mail/bob").write_bytes(
        b"From a@x.example Mon Nov  2 10:00:00 2026\nSubject: s\n\nhi\n\n")
    domain = unique_domain("prune")
    target = install_target(tmp_path / "target")
    both = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"users": [{"name": "ann"}, {"name": "bob"}]}})
    text = both.read_text()
    mailplan("apply", str(both), "--auto-approve", check=True)
    shown = mailplan("show", str(both), check=True).stdout
    assert f"  bob@{domain}: 1 message(s)" in shown, shown
    both.write_text(text.replace("- name: bob\n", ""))
    pruned = mailplan("apply", str(both), "--auto-approve", "--prune", check=True).stdout
    assert f"- user bob@{domain}" in pruned
    assert "1 to destroy. Deletions are applied: --prune was given." in pruned, pruned
    assert f"bob@{domain}" not in mailplan("show", str(both), check=True).stdout
    both.write_text(text)
    mailplan("apply", str(both), "--auto-approve", check=True)
    shown = mailplan("show", str(both), check=True).stdout
    assert f"  bob@{domain}: 1 message(s)" in shown, shown


def test_a_user_deleted_by_hand_and_made_anew_starts_with_the_mail_of_its_new_maildir(
        tmp_path):
    """bob deleted on the target by hand (vdeluser, not --prune) is made again by the
    next apply: show counts the message imported into his new Maildir once (it said 2),
    and his empty folder is made in that apply (the state's record of the deleted
    Maildir's folder was taken for a folder bob deleted: never made, and verify said
    "folder deleted by the user")."""
    src = make_source(tmp_path / "source", [SourceAccount("ann", 1000, "Ann", "pw1"),
                                            SourceAccount("bob", 1001, "Bob", "pw2")])
    (src / "var/spool/mail/bob").write_bytes(
        b"From a@x.example Mon Nov  2 10:00:00 2026\nSubject: s\n\nhi\n\n")
    (src / "home/bob/mail").mkdir()
    (src / "home/bob/mail/Sent").write_bytes(b"")
    domain = unique_domain("byhand")
    target = install_target(tmp_path / "target")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"users": [{"name": "ann"}, {"name": "bob"}]}})
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert target.tool("vdeluser", f"bob@{domain}").returncode == 0
    again = mailplan("apply", str(spec), "--auto-approve", check=True).stdout
    assert f"+ user bob@{domain}" in again, again
    udir = target.tool("vuserinfo", "-d", f"bob@{domain}").stdout.decode().split("\n")[0]
    assert Path(udir, "Maildir/.Sent/cur").is_dir()
    shown = mailplan("show", str(spec), check=True).stdout
    assert f"  bob@{domain}: 1 message(s)" in shown, shown
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout
    verified = mailplan("verify", str(spec), check=True).stdout
    assert "folder deleted by the user" not in verified, verified


def test_show_of_a_spec_with_another_spec_s_state_file_says_whose_it_is(tmp_path):
    """``show OTHER.yaml --state S``, S recorded for m.yaml: refused as plan, apply and
    verify refuse it (same check, same words), not shown as OTHER's state; ``show S``
    shows it, and m.yaml's own state is shown with it as before."""
    make_state(tmp_path / "m.state.json")
    State.load(tmp_path / "m.state.json").claim(tmp_path / "m.yaml")
    for name, domain in (("m.yaml", "example.com"), ("other.yaml", "other.example")):
        (tmp_path / name).write_text("version: 1\nhosts: {a: {local: true}}\nsource: {host: a}"
                                     f"\ntarget: {{host: a}}\ndomains: {{{domain}: {{}}}}\n")
    state = tmp_path / "m.state.json"
    for extra in ((), ("--json",)):
        res = mailplan("show", str(tmp_path / "other.yaml"), "--state", str(state), *extra)
        assert (res.returncode, res.stdout) == (1, ""), res.stdout
        assert res.stderr.startswith(
            f"Error: {state}: this state file belongs to the spec m.yaml, not to other.yaml "
            "(paths from the state file's directory)"), res.stderr
        assert f"  hint: to look at that state file itself: mailplan show {state}; give " \
            "each spec a state file of its own" in res.stderr, res.stderr
    assert "For the spec m.yaml" in mailplan("show", str(state), check=True).stdout
    own = mailplan("show", str(tmp_path / "m.yaml"), "--state", str(state), check=True)
    assert "    users (1): alice" in own.stdout


def test_show_of_a_json_file_not_mailplan_s_says_so_without_the_damaged_state_hint(tmp_path):
    """`show package.json` (any JSON that is neither a state file nor a saved plan) was
    reported as a damaged state file, with the hint to move it aside and plan again;
    a file named as a state file still gets that hint."""
    other = tmp_path / "package.json"
    other.write_text('{"name": "x"}\n')
    shown = mailplan("show", str(other))
    assert shown.returncode == 1
    assert shown.stderr == (
        f"Error: {other}: neither a state file nor a saved plan of mailplan's\n"
        "  hint: give a spec, a state file (*.state.json) or a saved plan (mailplan plan "
        "SPEC -o PLAN.json)\n")
    assert other.read_text() == '{"name": "x"}\n'
    state = tmp_path / "m.state.json"
    state.write_text('{"name": "x"}\n')
    shown = mailplan("show", str(state))
    assert shown.returncode == 1 and "move the damaged file aside" in shown.stderr


def test_a_damaged_saved_plan_is_said_so_as_apply_says_it(tmp_path):
    """A saved plan missing its changes was read as a state file: "this is a saved plan
    of mailplan's (a plan file), not a state file" and a hint about --state, which the
    command line did not hold."""
    plan = Plan("/x/m.yaml", "0" * 64, None, 0, "1" * 64,
                [Change("create", "user", "example.com", "bob")], target_host="new")
    plan.save(tmp_path / "p.json")
    doc = json.loads((tmp_path / "p.json").read_text())
    del doc["changes"]
    (tmp_path / "p.json").write_text(json.dumps(doc))
    shown, applied = (mailplan(command, str(tmp_path / "p.json"))
                      for command in ("show", "apply"))
    assert shown.returncode == applied.returncode == 1
    assert shown.stderr == applied.stderr == (
        f"Error: {tmp_path}/p.json: not a valid plan file: 'changes' is a required "
        "property\n"), (shown.stderr, applied.stderr)
