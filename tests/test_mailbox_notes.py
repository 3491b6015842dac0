"""Notes on source mailboxes carry their kind, and the plan files each by it.

A problem (a file not imported) goes under the plan's problems, information (``~/mbox``
and a folder file named INBOX, merged into the INBOX) with what needs no change, shown
by ``plan -v``. The plan made here reads a local source into the stand-in target."""

from __future__ import annotations

from pathlib import Path

import yaml
from migration import SourceAccount, install_target, make_source, unique_domain, write_spec

from mailplan.connectors.local import LocalConnector
from mailplan.engine import make_plan, state_path_for
from mailplan.facts.mailboxes import (
    HOME_MBOX_NOTE,
    INBOX_FILE_NOTE,
    MailboxRef,
    list_source_mailboxes,
)
from mailplan.spec import load_spec
from mailplan.state import State


def msg(subject: str) -> bytes:
    return f"From b@x.example Mon Nov  2 10:00:00 2026\nSubject: {subject}\n\nbody\n\n".encode()


def alice_with_notes(root: Path) -> Path:
    """alice's spool, her ~/mbox, a folder file named INBOX and two folder files naming
    the same folder once UW-imapd's modified UTF-7 is decoded."""
    src = make_source(root, [SourceAccount("alice", 1000, "Alice", "pw1")])
    (src / "var/spool/mail/alice").write_bytes(msg("spool"))
    home = src / "home/alice"
    (home / "mbox").write_bytes(msg("home mbox"))
    (home / "mail").mkdir()
    (home / "mail/INBOX").write_bytes(msg("inbox file"))
    (home / "mail/Entw&APw-rfe").write_bytes(msg("draft 1"))
    (home / "mail/Entw\u00fcrfe").write_bytes(msg("draft 2"))
    return src


def test_the_listing_gives_each_note_its_kind(tmp_path):
    src = alice_with_notes(tmp_path / "source")
    home = src / "home/alice"
    ref = MailboxRef("example.com", "alice", "alice", str(src / "var/spool/mail/alice"),
                     str(home / "mail"), str(home), decode_names=True)
    _mailboxes, notes = list_source_mailboxes(LocalConnector("oldmail"), [ref])
    assert sorted((n.kind, n.path, n.folder) for n in notes) == [
        ("info", str(home / "mail/INBOX"), "INBOX"),
        ("info", str(home / "mbox"), "INBOX"),
        ("problem", str(home / "mail/Entw\u00fcrfe"), "Entw\u00fcrfe"),
    ]
    # the text is what the plan, plan -v and verify show
    assert f"alice@example.com: {home}/mbox {HOME_MBOX_NOTE}" in map(str, notes)
    assert f"alice@example.com: {home}/mail/INBOX {INBOX_FILE_NOTE}" in map(str, notes)


def test_the_plan_files_problems_and_information_by_kind(tmp_path):
    src = alice_with_notes(tmp_path / "source")
    home = src / "home/alice"
    domain = unique_domain("notes")
    path = write_spec(tmp_path / "m.yaml", source_root=src,
                      target=install_target(tmp_path / "target"),
                      domains={domain: {"users": [{"name": "alice"}]}})
    data = yaml.safe_load(path.read_text())
    data["source"]["folder_names"] = "mutf7"
    path.write_text(yaml.safe_dump(data))
    spec = load_spec(path)
    planned = make_plan(spec, State.load(state_path_for(spec)))
    try:
        plan = planned.plan
    finally:
        planned.close()
    assert [(p.user, p.message) for p in plan.problems] == [
        ("alice", f"{home}/mail/Entw\u00fcrfe names the same folder 'Entw\u00fcrfe' as "
                  f"{home}/mail/Entw&APw-rfe; not imported (rename one of them on the "
                  "source)")]
    assert plan.warnings == []
    reasons = {n.reason for n in plan.noops if n.user == "alice"}
    assert {f"{home}/mbox {HOME_MBOX_NOTE}", f"{home}/mail/INBOX {INBOX_FILE_NOTE}"} <= reasons
