"""Golden plan output: the terraform-style text and the JSON document."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from mailplan.desired import PASSWORD_SET_BACK, Problem
from mailplan.errors import StateError
from mailplan.plan import Change, Noop, Plan
from mailplan.render import render_plan
from mailplan.spec import load_schema
from mailplan.text import marked

GOLDEN = Path(__file__).parent / "data" / "golden"


def sample_plan() -> Plan:
    return Plan(
        spec_path="/srv/migration.yaml", spec_digest="0" * 64, lineage=None, serial=0,
        target_digest="1" * 64, plan_id="00000000-0000-0000-0000-000000000000",
        created_at="2026-11-28T12:00:00+00:00",
        changes=[
            Change("create", "domain", "example.com", after="postmaster password env PM; "
                   "unknown recipients: bounce", sensitive=True, fingerprint="a" * 16),
            Change("create", "user", "example.com", "alice", after="quota 1G, comment "
                   "'Alice', password from shadow (SHA-512 crypt)", sensitive=True,
                   fingerprint="b" * 16),
            Change("update", "password", "example.com", "bob", "(sensitive)", "(sensitive)",
                   True, "c" * 16, "from shadow (MD5 crypt)"),
            Change("update", "quota", "example.com", "bob", "NOQUOTA (unlimited)",
                   "1073741824S (1G)"),
            Change("update", "catchall", "example.com", before="delete silently "
                   "(vadddomain's default)", after="bounce"),
            Change("update", "flags", "example.com", "alice", item="INBOX",
                   after="12 message(s) gain flags (S 10, R 2)", fingerprint="d" * 16),
            Change("create", "mailbox", "example.com", "alice", item="INBOX",
                   after="3 message(s), 1.2K to import into INBOX"),
            Change("delete", "user", "example.com", "olduser", reason="created by mailplan, "
                   "no longer in the spec (applied only with --prune)"),
        ],
        noops=[Noop("example.com", "carol", "user exists; password, quota and comment match")],
        left_alone=[Noop("example.com", "legacy", "on the target but not in the spec; not "
                         "created by mailplan, left alone")],
        problems=[Problem("example.com", "dave", "password of source account 'dave' cannot "
                          "be migrated: account is locked")],
        warnings=[Problem("example.com", "carol", "mail to import (2.4G) exceeds the quota "
                          "(2G); it is imported anyway")],
    )


def test_text_matches_golden():
    text = render_plan(sample_plan(), target="newmail", verbose=True)
    assert text == (GOLDEN / "plan.txt").read_text()


def test_json_is_valid_and_matches_golden():
    doc = sample_plan().to_dict()
    jsonschema.validate(doc, load_schema("plan-v1.schema.json"))
    assert json.dumps(doc, indent=2, sort_keys=True) + "\n" == (GOLDEN / "plan.json").read_text()


def test_a_plan_made_with_rescan_records_it_and_one_without_omits_it(tmp_path):
    """--rescan is kept in a saved plan (``apply FILE`` plans the same way); a plan
    saved without it, or before it existed, has no key and loads as without it."""
    plain = sample_plan()
    assert "rescan" not in plain.to_dict()
    assert Plan.from_dict(plain.to_dict(), "p.json").rescan is False
    rescan = sample_plan()
    rescan.rescan = True
    doc = rescan.to_dict()
    jsonschema.validate(doc, load_schema("plan-v1.schema.json"))
    assert doc["rescan"] is True
    path = tmp_path / "p.json"
    rescan.save(path)
    assert Plan.load(path).rescan is True
    doc["rescan"] = "yes"
    with pytest.raises(StateError, match="not a valid plan file"):
        Plan.from_dict(doc, "p.json")


def test_a_warnings_kind_is_kept_in_a_saved_plan_and_absent_where_it_has_none(tmp_path):
    """A password set back (PASSWORD_SET_BACK) keeps its kind through a saved plan; the
    other warnings and problems are saved as before (no kind key), and load kindless."""
    plan = sample_plan()
    plan.warnings.append(Problem("example.com", "bob", "password changed on the new "
                                 "server since mailplan set it", PASSWORD_SET_BACK))
    doc = plan.to_dict()
    jsonschema.validate(doc, load_schema("plan-v1.schema.json"))
    assert [w.get("kind") for w in doc["warnings"]] == [None, PASSWORD_SET_BACK]
    assert "kind" not in doc["warnings"][0] and "kind" not in doc["problems"][0]
    path = tmp_path / "p.json"
    plan.save(path)
    assert Plan.load(path).warnings == plan.warnings
    doc["warnings"][1]["kind"] = "something else"
    with pytest.raises(StateError, match="not a valid plan file"):
        Plan.from_dict(doc, "p.json")


def test_a_plan_saved_before_warnings_existed_loads(tmp_path):
    doc = sample_plan().to_dict()
    del doc["warnings"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(doc))
    loaded = Plan.load(path)
    assert loaded.warnings == [] and loaded.problems == sample_plan().problems


def test_colour_only_when_asked():
    plain = render_plan(sample_plan(), target="t")
    assert "\033[" not in plain
    assert "\033[32m+ domain example.com\033[0m" in render_plan(sample_plan(), target="t",
                                                                 colour=True)


def test_an_apply_given_prune_says_its_deletions_are_applied():
    """apply --prune shows the plan it confirms: its last line said "Deletions are applied
    only with --prune" as if the option had not been given."""
    text = render_plan(sample_plan(), target="t", prune=True)
    assert text.splitlines()[-1] == ("Plan: 3 to create, 4 to change, 1 to destroy. "
                                     "Deletions are applied: --prune was given.")
    # and so do the deletions' own lines
    assert "no longer in the spec (applied: --prune was given)\n" in text
    assert "only with --prune" not in text
    assert render_plan(sample_plan(), target="t").splitlines()[-1].endswith(
        " Deletions are applied only with --prune.")


def test_no_changes_wording():
    plan = sample_plan()
    plan.changes = []
    assert render_plan(plan, target="t").endswith("No changes. The target matches the spec "
                                                  "(1 items checked).\n")


def test_text_from_outside_is_escaped_never_printed_raw():
    plan = sample_plan()
    plan.changes.append(Change("create", "mailbox", "example.com", "alice",
                               item="new\nline\x1b[2J", after="1 message(s) into new\nline"))
    plan.problems.append(Problem("example.com", "al\x00ice", "/home/alice/mail/x\x1b]0;t\x07\n"
                                "y\u202e: folder name is not UTF-8 text; not imported"))
    text = render_plan(plan, target="newmail", verbose=True)
    assert not any(c in text for c in "\x00\x07\x1b\u202e")
    assert "+ mailbox alice@example.com new\\nline\\x1b[2J\n" in text
    assert ("! al\\x00ice@example.com: /home/alice/mail/x\\x1b]0;t\\x07\\ny\\u202e: folder "
            "name") in text
    assert text.count("\n") == render_plan(sample_plan(), target="newmail",
                                           verbose=True).count("\n") + 3


def test_a_folder_name_with_a_space_at_an_end_is_quoted_where_shown():
    """`` INBOX`` and ``Sent `` would read as INBOX and Sent: such names (and one that
    begins with a quote, so that a quoted name is never taken for one) are quoted; the
    others are shown as they are, and the JSON plan keeps every name as it is."""
    assert [marked(n) for n in ("INBOX", "Sent", "Work/2025", "it's", "a b")] == [
        "INBOX", "Sent", "Work/2025", "it's", "a b"]
    assert [marked(n) for n in (" INBOX", "Sent ", "\tx", "'x'")] == [
        "' INBOX'", "'Sent '", "'\tx'", "''x''"]
    plan = sample_plan()
    plan.changes.append(Change("create", "mailbox", "example.com", "alice", item=" INBOX",
                               after="1 message(s), 40B to import into ' INBOX'"))
    plan.changes.append(Change("update", "flags", "example.com", "alice", item="Sent ",
                               after="1 message(s) gain flags (S 1)"))
    text = render_plan(plan, target="newmail")
    assert "  + mailbox alice@example.com ' INBOX'\n" in text, text
    assert "  ~ flags alice@example.com 'Sent ': 1 message(s) gain flags (S 1)\n" in text
    assert "  + mailbox alice@example.com INBOX\n" in text  # as in the golden plan
    assert [c["item"] for c in plan.to_dict()["changes"][-2:]] == [" INBOX", "Sent "]


def test_a_retry_warning_shows_the_failure_escaped():
    # apply's "reconnecting" warning quotes what failed: a source mailbox's path, whose
    # folder name the source's user chose (and made change while it was read)
    import io

    from mailplan.cli import _retrying
    from mailplan.errors import SourceChanged

    path = "/home/mallory/mail/Work\u009b2J\x1b]0;owned\x07"
    errors = io.StringIO()  # apply's stderr (ApplyWatch.errors)
    _retrying(errors, SourceChanged(f"{path} shrank while it was read", host="oldmail",
                                    hint="run apply again: the mailbox is read afresh"), 1,
              0.2)
    err = errors.getvalue()
    assert "\x1b" not in err and "\u009b" not in err and "\x07" not in err
    assert "Work\\x9b2J\\x1b]0;owned\\x07 shrank while it was read" in err
    assert err.endswith("\n  reconnecting and planning again in 0.2s (retry 1)\n")
    assert "hint" not in err  # "run apply again", while apply does it itself


@pytest.mark.parametrize("term, coloured", [("xterm-256color", True), ("dumb", False)])
def test_a_plan_on_a_dumb_terminal_has_no_colour(tmp_path, term, coloured):
    """`mailplan plan` on a terminal whose TERM is dumb (Emacs' shell, a serial console)
    prints no escape sequences, as apply's progress does there; it printed them."""
    import os
    import pty
    import subprocess
    import sys

    from migration import SourceAccount, install_target, make_source, unique_domain, write_spec

    src = make_source(tmp_path / "source", [SourceAccount("ann", 1000, "Ann", "pw-ann")])
    spec = write_spec(tmp_path / "m.yaml", source_root=src,
                      target=install_target(tmp_path / "target"),
                      domains={unique_domain(): {"import": {"uid_min": 1000}}})
    primary, secondary = pty.openpty()
    try:
        env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        proc = subprocess.run([sys.executable, "-m", "mailplan", "plan", str(spec)],
                              stdout=secondary, stderr=subprocess.PIPE, timeout=120,
                              env={**env, "TERM": term}, check=False)
        os.close(secondary)
        out = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the terminal's other end is closed, all was read
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(primary)
    assert proc.returncode == 0, proc.stderr
    assert b"+ user ann@" in out
    assert (b"\x1b[" in out) is coloured, out
