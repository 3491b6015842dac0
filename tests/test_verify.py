"""mailplan verify: the pure comparisons as table tests, then the command over real SSH."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from migration import (
    SourceAccount,
    install_target,
    mailplan,
    make_source,
    migrate_over_ssh,
    source_with_mail,
    ssh_host,
    tree_digest,
    unique_domain,
    write_spec,
)
from passlib.hash import sha512_crypt
from test_mail_imap import courier_imap, need_courier
from test_mailbox_notes import _AsNobody, readable_by_others
from tools import require

from mailplan import verify as verify_mod
from mailplan import verify_reads
from mailplan.connectors.local import LocalConnector
from mailplan.desired import DesiredUser, Password
from mailplan.errors import HostError, MailplanError
from mailplan.facts import find_errors
from mailplan.facts.vpopmail import TargetUser
from mailplan.mail.maildir import message_name, parse_message_name, unsubscribed
from mailplan.secret import Secret
from mailplan.verify import password_from_env
from mailplan.verify_model import (
    FolderCheck,
    Report,
    SourceMessage,
    TargetMessage,
    check_account,
    compare_folder,
)
from mailplan.verify_reads import keyword_views
from mailplan.verify_render import _account_line, _details

A, B, C = ("a" * 64, 0), ("b" * 64, 0), ("c" * 64, 0)
KW = frozenset({"$Label1", "Junk"})


def tm(size=10, flags="", mtime=100.0, file_size=None, keywords=frozenset(), courier=None):
    return TargetMessage(size, size if file_size is None else file_size, flags, mtime, "/x",
                         frozenset(keywords), None if courier is None else frozenset(courier))


@pytest.mark.parametrize(("source", "target", "ledger", "field", "expected", "ok"), [
    ({A: SourceMessage(10, "S", 100.0)}, {A: [tm(flags="S")]}, {A}, None, None, True),
    ({A: SourceMessage(10, "", 100.0)}, {}, set(), "missing", ["aaaaaaaaaaaa#0"], False),
    ({A: SourceMessage(10, "", 100.0)}, {}, {A}, "deleted_on_target", ["aaaaaaaaaaaa#0"],
     True),
    ({}, {B: [tm()]}, set(), "extra", ["bbbbbbbbbbbb#0"], False),
    ({}, {B: [tm()]}, {B}, "gone_from_source", ["bbbbbbbbbbbb#0"], True),
    ({A: SourceMessage(10, "", 100.0)}, {A: [tm(), tm()]}, {A}, "extra",
     ["aaaaaaaaaaaa#0 (stored 2 times)"], False),
    ({A: SourceMessage(10, "", 100.0)}, {A: [tm(file_size=7)]}, {A}, "content",
     ["aaaaaaaaaaaa#0: size 7, name says 10, source 10"], False),
    ({A: SourceMessage(11, "", 100.0)}, {A: [tm()]}, {A}, "content",
     ["aaaaaaaaaaaa#0: size 10, name says 10, source 11"], False),
    ({A: SourceMessage(10, "FS", 100.0)}, {A: [tm(flags="S")]}, {A}, "flags",
     ["aaaaaaaaaaaa#0: source FS, target S"], False),
    ({A: SourceMessage(10, "S", 100.0)}, {A: [tm(flags="RS")]}, {A},
     "flags_added_on_target", ["aaaaaaaaaaaa#0: +R"], True),
    ({A: SourceMessage(10, "", 100.0)}, {A: [tm(mtime=160.0)]}, {A}, "dates",
     ["aaaaaaaaaaaa#0: source 1970-01-01 00:01:40 UTC, target 1970-01-01 00:02:40 UTC"], False),
    ({A: SourceMessage(10, "", None)}, {A: [tm(mtime=160.0)]}, {A}, None, None, True),
    # keywords count as flags do: one lost fails, one added on the target is explained
    ({A: SourceMessage(10, "S", 100.0, KW)}, {A: [tm(flags="S", keywords=KW)]}, {A}, None,
     None, True),
    ({A: SourceMessage(10, "S", 100.0, KW)}, {A: [tm(flags="S", keywords={"Junk"})]}, {A},
     "flags", ["aaaaaaaaaaaa#0: source S $Label1 Junk, target S Junk"], False),
    ({A: SourceMessage(10, "", 100.0, KW)}, {A: [tm()]}, {A}, "flags",
     ["aaaaaaaaaaaa#0: source $Label1 Junk, target -"], False),
    ({A: SourceMessage(10, "S", 100.0)}, {A: [tm(flags="FS", keywords={"Junk"})]}, {A},
     "flags_added_on_target", ["aaaaaaaaaaaa#0: +F Junk"], True),
    # and again as courier-imap shows them, where the folder has its keyword directory
    ({A: SourceMessage(10, "S", 100.0, KW)}, {A: [tm(flags="S", keywords=KW, courier=KW)]},
     {A}, None, None, True),
    ({A: SourceMessage(10, "S", 100.0, KW)},
     {A: [tm(flags="S", keywords=KW, courier={"Junk"})]}, {A}, "flags",
     ["aaaaaaaaaaaa#0: source $Label1 Junk, courier-imap Junk"], False),
    ({A: SourceMessage(10, "S", 100.0)}, {A: [tm(flags="S", courier={"Junk"})]}, {A},
     "flags_added_on_target", ["aaaaaaaaaaaa#0: +Junk (courier-imap)"], True),
    ({A: SourceMessage(10, "S", 100.0, KW)}, {A: [tm(flags="S", keywords=KW, courier=())]},
     {A}, "flags", ["aaaaaaaaaaaa#0: source $Label1 Junk, courier-imap -"], False),
])
def test_compare_folder(source, target, ledger, field, expected, ok):
    check = compare_folder(FolderCheck("d.example", "u", "INBOX"), source, target, ledger)
    assert check.ok is ok
    if field is not None:
        assert getattr(check, field) == expected
    assert check.source == len(source)


def test_flags_and_keywords_the_user_removed_are_said_not_failed():
    """The flags line records the keyword letters too (``recorded``, read with the
    folder's letters): a keyword the source had then and the file lacks was removed by
    the user, as a flag; one not recorded still fails as lost."""
    source = {A: SourceMessage(10, "FS", 100.0, KW), B: SourceMessage(10, "S", 100.0, KW)}
    target = {A: [tm(flags="F")], B: [tm(flags="S")]}
    named = {"a": "$Label1", "b": "Junk"}
    check = compare_folder(FolderCheck("d.example", "u", "INBOX"), source, target, {A, B},
                           frozenset(named.values()), recorded={A: "FSab", B: "Sa"},
                           named=named)
    assert check.flags_removed_on_target == ["aaaaaaaaaaaa#0: -S $Label1 Junk",
                                             "bbbbbbbbbbbb#0: -$Label1"]
    assert check.flags == ["bbbbbbbbbbbb#0: source S $Label1 Junk, target S"]


def test_a_message_imported_into_another_folder_is_moved_not_extra():
    # the ledger of another of the user's folders lists it: the import put it there and
    # the user moved it (filed it, renamed the folder) on the new server
    check = compare_folder(FolderCheck("d.example", "u", "Archive"), {}, {B: [tm()], C: [tm()]},
                           set(), elsewhere={"INBOX": {A}, "Work": {B}})
    assert check.moved_on_target == ["bbbbbbbbbbbb#0 (from Work)"]
    # in no ledger: never imported by mailplan, extra as before
    assert check.extra == ["cccccccccccc#0"] and not check.ok
    check = compare_folder(FolderCheck("d.example", "u", "Archive"), {}, {B: [tm()]}, set(),
                           elsewhere={"Work": {B}})
    assert check.ok and check.moved_on_target == ["bbbbbbbbbbbb#0 (from Work)"]
    # a name white space begins or ends is told apart, as the report's folder names are
    check = compare_folder(FolderCheck("d.example", "u", "Archive"), {}, {B: [tm()]}, set(),
                           elsewhere={"Work ": {B}})
    assert check.moved_on_target == ["bbbbbbbbbbbb#0 (from 'Work ')"]
    # copied (IMAP COPY), not moved: the folder it came from still holds it
    check = compare_folder(FolderCheck("d.example", "u", "Archive"), {}, {B: [tm()]}, set(),
                           elsewhere={"Work": {B}}, moved_to={"Work": {B: [tm()]}})
    assert check.ok and check.moved_on_target == [
        "bbbbbbbbbbbb#0 (from Work, copied: still there too)"]
    # its own folder's ledger still says "no longer on the source"
    check = compare_folder(FolderCheck("d.example", "u", "Work"), {}, {B: [tm()]}, {B},
                           elsewhere={"INBOX": {B}})
    assert check.gone_from_source == ["bbbbbbbbbbbb#0"] and not check.moved_on_target


def test_a_message_moved_to_another_folder_is_said_so_not_deleted():
    # imported into Work (its ledger), now in the user's INBOX on the target: Work's row
    # said "deleted by the user" while INBOX's said "moved here from Work"
    check = compare_folder(FolderCheck("d.example", "u", "Work"),
                           {A: SourceMessage(10, "", 1.0), B: SourceMessage(10, "", 1.0),
                            C: SourceMessage(10, "", 1.0)}, {}, {A, B},
                           moved_to={"INBOX": {A}, "Sent ": set()})
    assert check.moved_away == ["aaaaaaaaaaaa#0 (to INBOX)"]
    assert check.deleted_on_target == ["bbbbbbbbbbbb#0"]  # in no folder: deleted
    assert check.missing == ["cccccccccccc#0"] and not check.ok  # never imported here
    check = compare_folder(FolderCheck("d.example", "u", "Work"),
                           {A: SourceMessage(10, "", 1.0)}, {}, {A}, moved_to={"INBOX": {A}})
    assert check.ok and check.moved_away and not check.deleted_on_target
    check = compare_folder(FolderCheck("d.example", "u", "Work"),
                           {A: SourceMessage(10, "", 1.0)}, {}, {A}, moved_to={"Work ": {A}})
    assert check.moved_away == ["aaaaaaaaaaaa#0 (to 'Work ')"]


def test_a_message_in_two_folders_is_said_moved_to_and_from_the_right_one():
    """pine filed A into Work on the old server while the target's INBOX still held it
    (imported there first: mail is never deleted on the target), A was imported into
    Work too, and the user renamed Work to Jobs on the new server. Work's row said
    ``(to INBOX)`` and Jobs' ``(from INBOX)``: the first folder in sorted order holding
    it, or whose ledger lists it. INBOX got A from its own import, not from Work; the
    move was Work's to Jobs."""
    ledgers = {"INBOX": {A}, "Work": {A}}
    check = compare_folder(FolderCheck("d.example", "u", "Work"),
                           {A: SourceMessage(10, "", 1.0)}, {}, {A}, elsewhere=ledgers,
                           moved_to={"INBOX": {A}, "Jobs": {A}})
    assert check.ok and check.moved_away == ["aaaaaaaaaaaa#0 (to Jobs)"], check
    check = compare_folder(FolderCheck("d.example", "u", "Jobs"), {}, {A: [tm()]}, set(),
                           elsewhere=ledgers, moved_to={"INBOX": {A}})
    assert check.ok and check.moved_on_target == ["aaaaaaaaaaaa#0 (from Work)"], check
    # where every folder holding it had it imported, the first is named, as before
    check = compare_folder(FolderCheck("d.example", "u", "Work"),
                           {A: SourceMessage(10, "", 1.0)}, {}, {A},
                           elsewhere={"INBOX": {A}, "Sent": {A}, "Work": {A}},
                           moved_to={"INBOX": {A}, "Sent": {A}})
    assert check.moved_away == ["aaaaaaaaaaaa#0 (to INBOX)"], check
    # and where every folder listing it still holds it, it was copied from the first
    check = compare_folder(FolderCheck("d.example", "u", "Jobs"), {}, {A: [tm()]}, set(),
                           elsewhere=ledgers, moved_to={"INBOX": {A}, "Work": {A}})
    assert check.moved_on_target == ["aaaaaaaaaaaa#0 (from INBOX, copied: still there too)"]


def test_a_moved_message_lacking_a_source_flag_says_so_without_failing():
    # moved to INBOX on the target, then answered on the old server: no plan adds the
    # flag there (flags are added in the folder a message was imported into), so it is
    # said on its moved_away line, not a failure; a copy known by identity only says nothing
    source = {A: SourceMessage(10, "RS", 1.0, frozenset({"Work"})), B: SourceMessage(10, "S", 1.0)}
    check = compare_folder(FolderCheck("d.example", "u", "Work"), source, {}, {A, B},
                           moved_to={"INBOX": {A: [tm(flags="S")], B: [tm(flags="FS")]}})
    assert check.ok and check.moved_away == [
        "aaaaaaaaaaaa#0 (to INBOX; flags: source RS Work, there S, not carried to a moved "
        "message)", "bbbbbbbbbbbb#0 (to INBOX)"]
    check = compare_folder(FolderCheck("d.example", "u", "Work"), source, {}, {A},
                           moved_to={"INBOX": {A}})
    assert check.moved_away == ["aaaaaaaaaaaa#0 (to INBOX)"]


def test_compare_folder_with_a_full_keyword_file():
    """A folder whose dovecot-keywords names 26 keywords has no letter for another: the
    import could not carry it (listed, not a failure); one it names must still be there."""
    named = frozenset({"Junk", *(f"k{i}" for i in range(25))})
    source = {A: SourceMessage(10, "S", 100.0, KW)}
    check = compare_folder(FolderCheck("d.example", "u", "INBOX"), source,
                           {A: [tm(flags="S", keywords={"Junk"})]}, {A}, named)
    assert check.ok and check.keywords_not_carried == ["aaaaaaaaaaaa#0: $Label1"]
    check = compare_folder(FolderCheck("d.example", "u", "INBOX"), source,
                           {A: [tm(flags="S")]}, {A}, named)
    assert not check.ok and check.flags == ["aaaaaaaaaaaa#0: source S Junk, target S"]
    # with room left in the file, the same keyword is lost, not uncarried
    check = compare_folder(FolderCheck("d.example", "u", "INBOX"), source,
                           {A: [tm(flags="S", keywords={"Junk"})]}, {A}, frozenset({"Junk"}))
    assert not check.ok and check.flags == [
        "aaaaaaaaaaaa#0: source S $Label1 Junk, target S Junk"]
    assert not check.keywords_not_carried


WORK_LINES = {"courierimapsubscribed": ["INBOX.Work"], "subscriptions": ["Work"]}


@pytest.mark.parametrize(("courier", "dovecot", "expected"), [
    (b"INBOX.Work\n", b"Work\n", []),
    # lines the user added on the target are no concern; the order is not either
    (b"INBOX.Private\nINBOX.Work\n", b"Private\nWork\nSent\n", []),
    (b"INBOX.Private\n", b"Work\n", ["courierimapsubscribed"]),
    (b"INBOX.Work\n", b"", ["subscriptions"]),
    (None, None, ["courierimapsubscribed", "subscriptions"]),  # no file at all
    (b"INBOX.Work\n", b"INBOX.Work\nwork\n", ["subscriptions"]),  # not the same line
    # dovecot keeps a file in its version 2 form (levels tab-separated) as it found it
    (b"INBOX.Work\n", b"V\t2\n\nWork\n", []),
    (b"INBOX.Work\n", b"V\t2\n\nOther\n", ["subscriptions"]),
])
def test_unsubscribed_names_each_file_that_lacks_the_line(courier, dovecot, expected):
    files = {"courierimapsubscribed": courier, "subscriptions": dovecot}
    assert unsubscribed(WORK_LINES, files) == expected


def test_unsubscribed_reads_dovecot_version_2_levels_and_escapes():
    lines = {"subscriptions": ["Lists.py\\2econ", "Tab\tbed"]}
    assert unsubscribed(lines, {"subscriptions": b"V\t2\n\nLists\tpy\\2econ\n"
                                                 b"Tab\x01tbed\n"}) == []
    assert unsubscribed(lines, {"subscriptions": b"V\t2\n\nLists\tpy\\2econ\n"}) == [
        "subscriptions"]


def test_a_folder_missing_a_subscription_fails_and_names_the_file():
    check = FolderCheck("d.example", "u", "Work", unsubscribed=["subscriptions"])
    assert not check.ok
    assert _details(check) == ["          not subscribed in subscriptions (a client that "
                               "lists subscribed folders only will not show it; "
                               "`mailplan apply` subscribes it)"]


def test_check_account_compares_hash_without_showing_it():
    hashed = "$6$salt$abcdefghijklmnop"
    want = DesiredUser("alice", "d.example", "alice", Password("hash", Secret(hashed), "shadow"),
                       1 << 30, "Alice")
    have = TargetUser("alice", Secret(hashed), "Alice", 0, "/x", "1073741824S")
    good = check_account(want, have)
    assert good.ok and good.password == "identical"
    bad = check_account(want, TargetUser("alice", Secret("$6$salt$other"), "Al", 0, "/x",
                                         "NOQUOTA"))
    assert not bad.ok and bad.password == "different"
    assert bad.quota == ("1073741824S", "NOQUOTA") and bad.comment == ("Alice", "Al")
    assert hashed not in repr(bad) and hashed not in json.dumps(bad.__dict__)
    assert not check_account(want, None).ok
    kept = check_account(want, TargetUser("alice", Secret("$6$salt$other"), "Alice", 0, "/x",
                                          "1073741824S"), keep=True)  # create_only
    assert kept.ok and kept.password == "kept"
    # which side changed cannot be told (a new password on the old server looks the
    # same): the line says what verify knows, as plan does
    line = _account_line(kept)
    assert line == ("  ok    alice@d.example: password differs from the spec's; kept "
                    "(target.passwords: create_only), quota 1073741824S, comment 'Alice'")


def msg(sender: str, date: str, subject: str, extra: str = "") -> bytes:
    return (f"From {sender} {date}\nFrom: {sender}\nSubject: {subject}\n{extra}\nhi\n\n"
            ).encode()


INBOX = (msg("a@x.example", "Mon Nov  2 10:00:00 2026", "new")
         + msg("b@x.example", "Tue Nov  3 11:30:00 2026", "seen", "Status: RO\n")
         + msg("c@x.example", "Wed Nov  4 12:00:00 2026", "flagged",
               "Status: RO\nX-Status: F\n"))


@pytest.fixture
def migrated(tmp_path, sshd):
    src = make_source(tmp_path / "source", [SourceAccount("alice", 1000, "Alice", "AlicePw1"),
                                            SourceAccount("bob", 1001, "Bob", "BobPw2")])
    (src / "var/spool/mail/alice").write_bytes(INBOX)
    (src / "home/alice/mail").mkdir()
    (src / "home/alice/mail/Work").write_bytes(msg("w@x.example", "Thu Nov  5 09:00:00 2026",
                                                   "work", "Status: O\n"))
    target = install_target(tmp_path / "target")
    domain = unique_domain("v")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      source_host=ssh_host(sshd), target_host=ssh_host(sshd),
                      domains={domain: {"import": {"uid_min": 1000},
                                        "aliases": {"sales": ["alice"]}}})
    mailplan("apply", str(spec), "--auto-approve", check=True)
    udir = target.tool("vuserinfo", "-d", f"alice@{domain}").stdout.decode().split("\n")[0]
    return src, target, domain, spec, Path(udir) / "Maildir"


@pytest.mark.ssh
def test_verify_passes_after_apply_and_is_read_only(migrated, tmp_path):
    src, target, domain, spec, root = migrated
    before = (tree_digest(src), tree_digest(Path(target.vpopmail_dir)))
    res = mailplan("verify", str(spec))
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert f"ok    alice@{domain}: password identical, quota NOQUOTA, comment 'Alice'" in out
    assert f"alice@{domain} INBOX" in out and f"alice@{domain} Work" in out
    assert "Routing: domains, catch-alls, aliases and forwards as specified." in out
    assert out.endswith("Verified: the target matches the source and the spec.\n")
    doc = json.loads(mailplan("verify", str(spec), "--json", check=True).stdout)
    assert doc["ok"] is True
    inbox = next(f for f in doc["folders"] if f["folder"] == "INBOX")
    assert (inbox["source"], inbox["target"], inbox["missing"]) == (3, 3, [])
    assert (tree_digest(src), tree_digest(Path(target.vpopmail_dir))) == before
    for secret in ("AlicePw1", "BobPw2", "$6$"):
        assert secret not in out and secret not in json.dumps(doc)


@pytest.mark.ssh
def test_verify_finds_each_kind_of_difference(migrated):
    src, target, domain, spec, root = migrated
    cur = sorted((root / "cur").iterdir())
    seen = next(f for f in cur if b"Subject: seen" in f.read_bytes())
    flagged = next(f for f in cur if b"Subject: flagged" in f.read_bytes())
    (unseen,) = (root / "new").iterdir()
    # a user deletes one message on the new server: explained, verify still passes
    seen.unlink()
    res = mailplan("verify", str(spec))
    assert res.returncode == 0, res.stdout
    assert "deleted by the user on the target (not a failure)" in res.stdout
    # a flag lost, a date changed, a truncated file, a quota changed, an alias removed
    flagged.rename(flagged.with_name(flagged.name.replace(":2,FS", ":2,S")))
    # as an earlier version imported it: no flags lines, which tell a flag the user
    # removed (tests/test_flags_removed_on_target.py) from one lost
    ledger = root / "mailplan-ledger"
    ledger.write_text("".join(x for x in ledger.read_text().splitlines(keepends=True)
                              if x.count("\t") != 3))
    os.utime(unseen, (1, 1))
    work = next((root / ".Work/cur").iterdir())
    work.write_bytes(work.read_bytes()[:-2])
    assert target.tool("vsetuserquota", f"bob@{domain}", "5M").returncode == 0
    assert target.tool("valias", "-d", f"sales@{domain}").returncode == 0
    res = mailplan("verify", str(spec))
    assert res.returncode == 3, res.stdout + res.stderr
    out = res.stdout
    assert f"FAIL  bob@{domain}: password identical, quota 5242880S (spec: NOQUOTA)" in out
    # each finding about a message the source has says where it is there: its number
    # among the spool's messages, its From_ line's offset, its arrival time
    spool = src / "var/spool/mail/alice"
    assert re.search(r"\n {10}flags lost:\n {12}[0-9a-f]{12}#0: source FS, target S \(on "
                     rf"the source: message 3, From_ line at byte {INBOX.index(b'From c@')} "
                     rf"of {re.escape(str(spool))}, arrival 2026-11-04 12:00:00 UTC\)\n",
                     out), out
    assert re.search(r"\n {10}date differs:\n {12}[0-9a-f]{12}#0: source 2026-11-02 "
                     r"10:00:00 UTC, target 1970-01-01 00:00:01 UTC \(on the source: "
                     rf"message 1, From_ line at byte 0 of {re.escape(str(spool))}, "
                     r"arrival 2026-11-02 10:00:00 UTC\)\n", out)
    assert "content differs:\n" in out
    assert f"FAIL  + alias sales@{domain}" in out
    assert "NOT verified: 4 item(s) marked FAIL above." in out
    # a message missing (not in the ledger either: never imported)
    ledger = root / "mailplan-ledger"
    digest = parse_message_name(unseen.name).digest
    ledger.write_text("".join(ln for ln in ledger.read_text().splitlines(keepends=True)
                              if digest not in ln))
    unseen.unlink()
    doc = json.loads(mailplan("verify", str(spec), "--json").stdout)
    inbox = next(f for f in doc["folders"] if f["folder"] == "INBOX")
    assert inbox["missing"] == [f"{digest[:12]}#0"] and not inbox["ok"]
    assert inbox["on_source"][f"{digest[:12]}#0"] == {
        "path": str(spool), "message": 1, "offset": 0, "arrival": 1793613600,
        "arrival_utc": "2026-11-02 10:00:00 UTC"}


@pytest.mark.ssh
def test_verify_fails_on_what_the_spec_covers_but_was_not_migrated(migrated, sshd):
    src, target, domain, spec, root = migrated
    # an account the import rule takes, locked on the old server, with mail in its spool
    with open(src / "etc/passwd", "a") as fh:
        fh.write(f"sales:x:1002:1002:Sales:{src}/home/sales:/bin/sh\n")
    with open(src / "etc/shadow", "a") as fh:
        fh.write("sales:!$6$x$y:19000:0:99999:7:::\n")
    (src / "var/spool/mail/sales").write_bytes(INBOX)
    res = mailplan("verify", str(spec))
    assert res.returncode == 3, res.stdout + res.stderr
    assert "Not migrated (the plan's problems" in res.stdout
    assert f"  FAIL  sales@{domain}: password of source account 'sales'" in res.stdout
    assert "NOT verified: 1 item(s) marked FAIL above." in res.stdout
    doc = json.loads(mailplan("verify", str(spec), "--json").stdout)
    assert doc["ok"] is False and len(doc["unmigrated"]) == 1
    # the admin's decision, in the spec (and a postmaster password): verified again
    pm_hash = sha512_crypt.using(rounds=5000).hash("Postmaster1")
    write_spec(spec, source_root=src, target=target, source_host=ssh_host(sshd),
               target_host=ssh_host(sshd),
               domains={domain: {"import": {"uid_min": 1000, "exclude": ["sales"]},
                                 "aliases": {"sales": ["alice"]},
                                 "postmaster_password": {"hash": pm_hash}}})
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert mailplan("verify", str(spec)).returncode == 0
    # the postmaster's password changed by hand on the new server: plan would change it
    assert target.tool("vpasswd", f"postmaster@{domain}", "Other1pw").returncode == 0
    res = mailplan("verify", str(spec))
    assert res.returncode == 3 and f"FAIL  ~ password postmaster@{domain}" in res.stdout


def migrate_labelled(tmp_path: Path, sshd, prefix: str):  # type: ignore[no-untyped-def]
    """Migrate alice's INBOX of a message with keywords ($Label1 Junk) and one without;
    return the spec and her home directory on the target."""
    src = make_source(tmp_path / "source", [SourceAccount("alice", 1000, "Alice", "AlicePw1")])
    (src / "var/spool/mail/alice").write_bytes(
        msg("a@x.example", "Mon Nov  2 10:00:00 2026", "labelled",
            "Status: RO\nX-Keywords: $Label1 Junk\n")
        + msg("b@x.example", "Tue Nov  3 11:30:00 2026", "plain", "Status: RO\n"))
    target, domain, spec = migrate_over_ssh(tmp_path, sshd, src, prefix)
    home = target.tool("vuserinfo", "-d", f"alice@{domain}").stdout.decode().split("\n")[0]
    return spec, Path(home)


def _lock_bob(src: Path) -> None:
    """passwd -l bob on the old server."""
    shadow = src / "etc/shadow"
    shadow.write_text("".join(f"bob:!{line[4:]}" if line.startswith("bob:") else line
                              for line in shadow.read_text().splitlines(keepends=True)))


NOT_LOCKED = ("password NOT LOCKED: the old server locks the account out, its password "
              "here still lets it in")


@pytest.mark.ssh
def test_verify_says_a_user_locked_on_the_old_server_still_logs_in_here(migrated):
    """Locked on the old server after his migration, bob fails verify until apply has
    locked him here too; then he passes: locked, as on the old server."""
    src, target, domain, spec, root = migrated
    _lock_bob(src)
    res = mailplan("verify", str(spec))
    assert res.returncode == 3, res.stdout + res.stderr
    assert f"  FAIL  bob@{domain}: {NOT_LOCKED}" in res.stdout, res.stdout
    assert "NOT verified: 1 item(s) marked FAIL above." in res.stdout, res.stdout
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert not target.login_ok(f"bob@{domain}", "BobPw2")
    res = mailplan("verify", str(spec))
    assert res.returncode == 0, res.stdout
    assert (f"  ok    bob@{domain}: password locked, as on the old server, quota NOQUOTA, "
            "comment 'Bob'") in res.stdout, res.stdout


@pytest.mark.ssh
def test_verify_says_a_locked_user_create_only_leaves_alone_still_logs_in_here(migrated):
    """Under create_only apply does not lock him: verify says his password still lets
    him in here, whatever create_only keeps."""
    src, target, domain, spec, root = migrated
    data = yaml.safe_load(spec.read_text())
    data["target"]["passwords"] = "create_only"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    _lock_bob(src)
    planned = mailplan("plan", str(spec), check=True).stdout
    assert (f"bob@{domain}: source account 'bob' is locked (shadow line 4), but its "
            "password here still lets it in: not locked here (target.passwords: "
            "create_only)") in planned, planned
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert target.login_ok(f"bob@{domain}", "BobPw2")
    res = mailplan("verify", str(spec))
    assert res.returncode == 3, res.stdout + res.stderr
    assert f"  FAIL  bob@{domain}: {NOT_LOCKED}" in res.stdout, res.stdout
    assert "NOT verified: 1 item(s) marked FAIL above." in res.stdout, res.stdout


@pytest.mark.ssh
def test_verify_compares_keywords_through_dovecot_keywords(tmp_path, sshd):
    """X-Keywords arrive as letters named by the folder's dovecot-keywords; verify reads
    the names back and compares them as it compares flags: one the user removed on the
    new server (the flags line records it) or added there is listed and passes, a
    symbolic link in place of the file is not read (the letters then name nothing: lost,
    a failure)."""
    spec, home = migrate_labelled(tmp_path, sshd, "k")
    root = home / "Maildir"
    assert mailplan("verify", str(spec)).returncode == 0
    labelled = next(f for f in (root / "cur").iterdir() if b"labelled" in f.read_bytes())
    plain = next(f for f in (root / "cur").iterdir() if b"plain" in f.read_bytes())
    letters = labelled.name.rsplit(":2,", 1)[1]
    assert letters == "Sab"
    # the user removes one keyword and labels the other message on the new server: the
    # ledger's flags line records the keyword was imported, so its removal is the
    # user's (a keyword lost without that record fails: the link below)
    labelled.rename(labelled.with_name(labelled.name[:-1]))
    plain.rename(plain.with_name(plain.name + "a"))
    res = mailplan("verify", str(spec), "--full")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "flags removed on the target by the user (not a failure)" in res.stdout
    assert ": -Junk (" in res.stdout and ": +$Label1" in res.stdout
    # put back: passes again, the added label listed but not failing
    lost = next(f for f in (root / "cur").iterdir() if f.name.endswith(":2,Sa")
                and b"labelled" in f.read_bytes())
    lost.rename(lost.with_name(lost.name + "b"))
    res = mailplan("verify", str(spec), "--full")
    assert res.returncode == 0, res.stdout
    assert "flags added on the target (not a failure)" in res.stdout
    # a dovecot-keywords replaced by a link to another file is not read through it
    keywords = root / "dovecot-keywords"
    (tmp_path / "elsewhere").write_bytes(keywords.read_bytes())
    keywords.unlink()
    keywords.symlink_to(tmp_path / "elsewhere")
    res = mailplan("verify", str(spec), "--full")
    assert res.returncode == 3, res.stdout
    assert "flags lost:\n" in res.stdout
    assert "source S $Label1 Junk, target S (on the source: message 1, " in res.stdout


@pytest.mark.parametrize(("served", "views"), [
    (set(), (True, True)),  # before the cutover: the import wrote both, both must hold
    ({"dovecot"}, (True, False)),
    ({"courier"}, (False, True)),
    ({"dovecot", "courier"}, (True, True)),
])
def test_keyword_views_follow_the_servers_that_opened_the_folder(served, views):
    assert keyword_views(served) == views


def test_read_target_mail_reads_keywords_as_each_server_would(tmp_path, monkeypatch):
    """The target listing per folder: dovecot's letters, courier's files (an update
    linked to several messages read once, a symbolic link never read: no keywords), and
    which server's view counts (a folder only dovecot opened has no courier view, one
    only courier opened no letters checked)."""
    root = tmp_path / "Maildir"
    names = {}
    for dirname, n, served in (("", 0, None), (".Work", 1, "dovecot-uidlist"),
                               (".Old", 2, "courierimapuiddb")):
        folder = root / dirname if dirname else root
        for sub in ("cur", "new", "tmp"):
            (folder / sub).mkdir(parents=True)
        (folder / "dovecot-keywords").write_text("0 Junk\n1 $Label1\n")
        (folder / "courierimapkeywords").mkdir(mode=0o700)
        if served:
            (folder / served).write_text("x\n")
        for i in range(3):
            digest = f"{n}{i}".ljust(64, "0")
            name = message_name(arrival=100, usec=i, pid=1, digest=digest, occurrence=0,
                                host="h", size=1, flags="Sa")
            (folder / "cur" / name).write_bytes(b"x")
            names[(dirname, i)] = name
        kw = folder / "courierimapkeywords"
        first = kw / names[(dirname, 0)].split(":")[0]
        first.write_text("Junk\n$Label1\n")
        os.link(first, kw / names[(dirname, 1)].split(":")[0])  # as the import links them
        (tmp_path / f"elsewhere{n}").write_text("Junk\n")
        (kw / names[(dirname, 2)].split(":")[0]).symlink_to(tmp_path / f"elsewhere{n}")
    read = counted_reads(monkeypatch)
    mail = verify_reads.read_target_mail(LocalConnector("here"), [str(root)])
    got = {(d, i): next(m for ms in mail.files[str(root)][d].values() for m in ms
                        if m.path.endswith(names[(d, i)]))
           for d, i in names}
    both = frozenset({"Junk", "$Label1"})
    for i, courier in enumerate((both, both, frozenset())):
        assert (got[("", i)].keywords, got[("", i)].courier, got[("", i)].dovecot) == (
            frozenset({"Junk"}), courier, True)
        assert (got[(".Work", i)].courier, got[(".Work", i)].dovecot) == (None, True)
        assert (got[(".Old", i)].courier, got[(".Old", i)].dovecot) == (courier, False)
    (courier_read,) = [paths for paths in read if any("courierimapkeywords" in p
                                                      for p in paths)]
    assert len(courier_read) == 2  # the linked update of the INBOX and of .Old, once each


def counted_reads(monkeypatch) -> list[list[str]]:  # type: ignore[no-untyped-def]
    """The paths of each ``read_files`` call verify makes from now on, call by call."""
    read: list[list[str]] = []
    real = verify_reads.read_files

    def counting(conn, paths, **kw):  # type: ignore[no-untyped-def]
        read.append(list(paths))
        return real(conn, paths, **kw)

    monkeypatch.setattr(verify_reads, "read_files", counting)
    return read


def test_read_target_mail_reads_subscriptions_with_the_keyword_files(tmp_path,
                                                                      monkeypatch):
    """The subscription files are listed by the same ``find`` and read in the same
    channel as the folders' dovecot-keywords (no channel per user or folder); one that
    is a symbolic link is not read (as if it were not there)."""
    roots = [tmp_path / f"u{n}" / "Maildir" for n in range(2)]
    for n, root in enumerate(roots):
        for sub in ("cur", "new", "tmp"):
            (root / ".Work" / sub).mkdir(parents=True)
        (root / ".Work/dovecot-keywords").write_text("0 Junk\n")
        (root / "courierimapsubscribed").write_text(f"INBOX.Work\nINBOX.Mine{n}\n")
    (tmp_path / "elsewhere").write_text("Work\n")
    (roots[0] / "subscriptions").write_text("Work\n")
    (roots[1] / "subscriptions").symlink_to(tmp_path / "elsewhere")
    read = counted_reads(monkeypatch)
    mail = verify_reads.read_target_mail(LocalConnector("here"), [str(r) for r in roots])
    assert mail.subscriptions == {
        str(roots[0]): {"courierimapsubscribed": b"INBOX.Work\nINBOX.Mine0\n",
                        "subscriptions": b"Work\n"},
        str(roots[1]): {"courierimapsubscribed": b"INBOX.Work\nINBOX.Mine1\n"}}
    assert len(read) == 2  # the ledgers; the keyword and subscription files together
    assert sum(p.endswith("subscribed") or p.endswith("/subscriptions")
               for p in read[0]) == 3


def test_read_target_mail_leaves_out_what_is_no_message_or_file_of_a_folder(tmp_path,
                                                                          monkeypatch):
    """What the listing shows that is no mailplan message in a folder's ``cur/`` or
    ``new/``, no folder's dovecot-keywords and no folder's ``cur/`` and ``new/`` is left
    out: a message's name in ``tmp/``, in a directory of a folder or directly in the
    Maildir, a name like mailplan's that it did not write, a dovecot-keywords in
    ``cur/`` (not read), ``cur/`` and ``new/`` of a directory in a folder, and a record
    under none of the Maildirs; for no Maildirs nothing is run."""
    root = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp", ".Work/cur", ".Work/new", ".Work/tmp", ".Work/x/cur",
                ".Work/x/new"):
        (root / sub).mkdir(parents=True)

    def name(n: int) -> str:
        return message_name(arrival=100, usec=n, pid=1, digest=str(n).ljust(64, "0"),
                            occurrence=0, host="h", size=1, flags="S")

    for n, place in enumerate(("cur", "tmp", ".", ".Work/cur", ".Work/tmp", ".Work/x")):
        (root / place / name(n)).write_bytes(b"x")
    (root / "cur/notmailplans_mp1").write_bytes(b"x")
    (root / ".Work/cur/dovecot-keywords").write_text("0 Junk\n")
    real = find_errors.run_batch  # the listing's (find_errors.whole_listing)

    def listing(conn, commands):  # type: ignore[no-untyped-def]
        (res,) = real(conn, commands)
        outside = f"f\t100.0\t1\t1\t{tmp_path}/Other/cur/{name(9)}\0".encode()
        return [dataclasses.replace(res, stdout=res.stdout + outside)]

    monkeypatch.setattr(find_errors, "run_batch", listing)
    read = counted_reads(monkeypatch)
    mail = verify_reads.read_target_mail(LocalConnector("here"), [str(root)])
    assert {d: [m.path for ms in f.values() for m in ms]
            for d, f in mail.files[str(root)].items()} == {
        "": [str(root / "cur" / name(0))], ".Work": [str(root / ".Work/cur" / name(3))]}
    assert mail.folders == {str(root): {"", ".Work"}}
    assert (mail.keywords, mail.subscriptions) == ({}, {str(root): {}})
    assert read == [[f"{root}/mailplan-ledger"]]  # the ledger only

    def no_listing(conn, commands):  # type: ignore[no-untyped-def]
        raise AssertionError(f"ran {commands}")

    monkeypatch.setattr(find_errors, "run_batch", no_listing)
    assert verify_reads.read_target_mail(LocalConnector("here"), []) == (
        verify_reads.TargetMail({}, {}, {}, {}, {}))
    assert read == [[f"{root}/mailplan-ledger"]]


@pytest.mark.ssh
def test_verify_compares_keywords_as_courier_imap_shows_them(tmp_path, sshd):
    """The keywords are also checked as courier-imap reads them, from its own files: those
    the import wrote, and once a real courier served the folder (folding them into its
    :list), what courier keeps. Each server keeps up only its own: a folder only dovecot
    opened is not checked through courier's files, one only courier opened not through
    the letters (courier drops them when a client changes a message's flags). A keyword
    the user removes in courier fails verify even without --full."""
    need_courier()
    spec, home = migrate_labelled(tmp_path, sshd, "ck")
    root = home / "Maildir"
    assert mailplan("verify", str(spec)).returncode == 0
    # without the import's update file courier would show no keywords
    (update,) = (root / "courierimapkeywords").iterdir()
    text = update.read_bytes()
    update.unlink()
    res = mailplan("verify", str(spec))
    assert res.returncode == 3 and "source $Label1 Junk, courier-imap -" in res.stdout, \
        res.stdout
    (root / "dovecot-uidlist").write_text("3 V1 N3\n")  # dovecot opened it, not courier
    res = mailplan("verify", str(spec))
    assert res.returncode == 0, res.stdout
    (root / "dovecot-uidlist").unlink()
    update.write_bytes(text)
    assert mailplan("verify", str(spec)).returncode == 0
    # a real courier-imap opens the folder: it folds the update into its :list
    subprocess.run(["chown", "-R", "vpopmail:vchkpw", str(home)], check=True)
    imap = courier_imap(home)
    try:
        assert imap.select("INBOX")[0] == "OK"
        typ, data = imap.search(None, "KEYWORD", "Junk")
        (number,) = data[0].split()
    finally:
        imap.logout()
    assert (root / "courierimapkeywords" / ":list").exists()
    res = mailplan("verify", str(spec), "--full")
    assert res.returncode == 0, res.stdout + res.stderr
    # the user removes a keyword in courier (which also renames the message without
    # dovecot's letters): the one courier-imap finding, though the last verify proved it
    imap = courier_imap(home)
    try:
        imap.select("INBOX")
        assert imap.store(number.decode(), "-FLAGS", "(Junk)")[0] == "OK"
    finally:
        imap.logout()
    res = mailplan("verify", str(spec), "--json")
    assert res.returncode == 3, res.stdout + res.stderr
    (inbox,) = json.loads(res.stdout)["folders"]
    assert [f.split(": ", 1)[1] for f in inbox["flags"]] == [
        "source $Label1 Junk, courier-imap $Label1"]


@pytest.mark.ssh
@pytest.mark.parametrize("login", ["alice", "@d.example", "alice@", "al ice@d.example",
                                   "alice@d.example\n"])
def test_verify_login_check_wants_an_address(tmp_path, login):
    # a bare name was checked all the same and reported "rejected", as a wrong password
    # is (vchkpw looks it up in vpopmail's default domain, when it has one)
    res = mailplan("verify", str(tmp_path / "m.yaml"), "--check-login", login,
                   "--password-env", "TEST_PW", env={"TEST_PW": "pw"})
    assert res.returncode == 1
    assert "not an address (USER@DOMAIN)" in res.stderr, res.stderr
    assert "give the user's address with its domain" in res.stderr


def test_a_folder_the_verify_login_may_not_list_is_an_error_not_deleted_mail(tmp_path):
    """Listed by a login that may not read a folder's cur/ (a folder restored as root,
    verify run as vpopmail): find's complaint was thrown away, so its messages, in the
    ledger but not listed, were "deleted by the user on the target", not failing. Now
    verify stops naming the directory; a Maildir or file gone meanwhile is no error."""
    require(shutil.which("setpriv"), "setpriv (util-linux)")
    root = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp", ".Work/cur", ".Work/new", ".Work/tmp"):
        (root / sub).mkdir(parents=True)
    name = message_name(arrival=100, usec=1, pid=1, digest="1".ljust(64, "0"),
                        occurrence=0, host="h", size=1, flags="S")
    (root / ".Work/cur" / name).write_bytes(b"x")
    readable_by_others(tmp_path, root)
    gone = str(tmp_path / "gone/Maildir")
    assert verify_reads.read_target_mail(_AsNobody("here"), [str(root), gone]).files[
        str(root)][".Work"]
    (root / ".Work/cur").chmod(0o700)
    with pytest.raises(HostError, match=re.escape(
            f"cannot list every file there: find: '{root}/.Work/cur': Permission denied")):
        verify_reads.read_target_mail(_AsNobody("here"), [str(root), gone])


def test_verify_login_check_never_shows_the_password(migrated):
    src, target, domain, spec, root = migrated
    ok = mailplan("verify", str(spec), "--check-login", f"alice@{domain}", "--password-env",
                  "TEST_PW", env={"TEST_PW": "AlicePw1"})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"Login check: ok    alice@{domain}: accepted" in ok.stdout
    bad = mailplan("verify", str(spec), "--check-login", f"alice@{domain}", "--password-env",
                   "TEST_PW", env={"TEST_PW": "WrongPw9"})
    assert bad.returncode == 3
    assert f"Login check: FAIL  alice@{domain}: rejected (vchkpw exit 3)" in bad.stdout
    for res in (ok, bad):
        assert "AlicePw1" not in res.stdout + res.stderr
        assert "WrongPw9" not in res.stdout + res.stderr
    unset = mailplan("verify", str(spec), "--check-login", f"alice@{domain}",
                     "--password-env", "NOPE_UNSET")
    assert unset.returncode == 1
    assert "environment variable NOPE_UNSET is not set or empty" in unset.stderr


def test_a_login_check_password_that_is_not_utf8_is_refused_before_reading(monkeypatch):
    """A byte that is not UTF-8 in --password-env's variable was a traceback once the
    whole verify had run (UnicodeEncodeError naming the byte and its position in the
    password); it is refused at the start, the password not quoted."""
    monkeypatch.setenv("ODD_PW", b"Sekr1t\xff".decode("utf-8", "surrogateescape"))
    with pytest.raises(MailplanError) as info:
        password_from_env("ODD_PW")
    assert info.value.message == "environment variable ODD_PW is not UTF-8 text"
    assert "Sekr1t" not in str(info.value)
    monkeypatch.setenv("ODD_PW", "Sékr1t")
    assert password_from_env("ODD_PW").reveal() == "Sékr1t"


class _Counted:
    """Counts the stdout bytes of every command a connector runs (what was read)."""

    def __init__(self, inner, box: list[int]) -> None:
        self._inner, self._box = inner, box

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def read(self, size=65536):
        data = self._inner.read(size)
        self._box[0] += len(data)
        return data

    def readline(self):
        data = self._inner.readline()
        self._box[0] += len(data)
        return data

    def wait(self):
        res = self._inner.wait()
        self._box[0] += len(res.stdout)
        return res


def _counting(conn, box: list[int]):
    start, start_stream = conn.start, conn.start_stream
    conn.start = lambda command: _Counted(start(command), box)
    conn.start_stream = lambda command, **kw: _Counted(start_stream(command, **kw), box)
    return conn


@pytest.mark.ssh
def test_verify_rereads_only_what_changed_since_the_last_proof(tmp_path, sshd):
    from mailplan.engine import state_path_for
    from mailplan.hosts import connect
    from mailplan.spec import load_spec
    from mailplan.state import State
    from mailplan.verify import verify

    src = make_source(tmp_path / "source", [SourceAccount("carol", 1000, "Carol", "CarolPw3")])
    spool = src / "var/spool/mail/carol"
    spool.write_bytes(b"".join(msg(f"s{i}@x.example", "Mon Nov  2 10:00:00 2026", f"m{i}",
                                   "Status: RO\n" if i % 2 else "") + b"x" * 3000 + b"\n\n"
                               for i in range(200)))
    target, domain, spec_path = migrate_over_ssh(tmp_path, sshd, src, "c")
    spec = load_spec(spec_path)
    state_path = state_path_for(spec)

    def run(full: bool = False):
        box = [0]
        conns = {n: _counting(connect(n, spec.data["hosts"][n]), box) if n == "oldmail"
                 else connect(n, spec.data["hosts"][n]) for n in ("oldmail", "newmail")}
        try:
            report = verify(spec, State.load(state_path, fold=False), connectors=conns,
                            full=full)
        finally:
            for conn in conns.values():
                conn.close()
        (inbox,) = [f for f in report.folders if f.folder == "INBOX"]
        return report, inbox, box[0]

    size = spool.stat().st_size
    first, inbox, read = run()
    assert first.ok and not inbox.reused and read > size  # the whole spool, through tar
    assert oct(Path(f"{state_path}.verified").stat().st_mode & 0o777) == "0o600"
    again, inbox, read = run()
    assert again.ok and inbox.reused and (inbox.source, inbox.target) == (200, 200)
    assert read < 20_000, read  # passwd, shadow, listings and two 4 KiB windows
    assert "not read again; --full re-reads them" in mailplan("verify", str(spec_path),
                                                             check=True).stdout
    _r, inbox, read = run(full=True)
    assert not inbox.reused and read > size
    # the source rewritten in place (same size, other bytes at the end): read again
    data = spool.read_bytes()
    with open(spool, "r+b") as fh:
        fh.seek(len(data) - 6)
        fh.write(b"yyyy\n\n")
    changed, inbox, read = run()
    assert not inbox.reused and read > size and not changed.ok
    with open(spool, "r+b") as fh:
        fh.write(data)
    _r, inbox, read = run()
    assert inbox.source == 200 and not inbox.reused and inbox.ok  # proven again
    # a message removed on the target: noticed without any help from the record
    udir = target.tool("vuserinfo", "-d", f"carol@{domain}").stdout.decode().split("\n")[0]
    victim = sorted(Path(udir, "Maildir/cur").iterdir())[0]
    victim.unlink()
    after, inbox, read = run()
    assert not inbox.reused and read > size and len(inbox.deleted_on_target) == 1
    assert inbox.target == 199


def test_folder_names_with_a_space_at_an_end_are_told_apart(tmp_path):
    """Folder files `` INBOX`` and ``Sent `` beside ``Sent``: plan, plan -v, verify and
    show quote the names a space begins or ends, so that none reads as another."""
    src = make_source(tmp_path / "source", [SourceAccount("alice", 1000, "Alice", "pw1")])
    (src / "var/spool/mail/alice").write_bytes(INBOX)
    mail = src / "home/alice/mail"
    mail.mkdir()
    for name in (" INBOX", "Sent ", "Sent"):
        (mail / name).write_bytes(msg("a@x.example", "Mon Nov  2 10:00:00 2026", name))
    domain = unique_domain("sp")
    spec = write_spec(tmp_path / "m.yaml", source_root=src,
                      target=install_target(tmp_path / "target"),
                      domains={domain: {"users": [{"name": "alice"}]}})
    text = mailplan("plan", str(spec), check=True).stdout
    for shown in ("' INBOX'", "'Sent '", "Sent"):
        assert f"  + mailbox alice@{domain} {shown}\n" in text, text
        assert f"to import into {shown} (first import" in text, text
    assert f"  + mailbox alice@{domain} INBOX\n" in text, text
    mailplan("apply", str(spec), "--auto-approve", check=True)
    text = mailplan("plan", str(spec), "-v", check=True).stdout
    assert f"  = alice@{domain}: 'Sent ': its 1 message already imported" in text, text
    assert f"  = alice@{domain}: Sent: its 1 message already imported" in text, text
    res = mailplan("verify", str(spec))
    assert res.returncode == 0, res.stdout + res.stderr
    for shown, n in (("' INBOX'", 1), ("'Sent '", 1), ("Sent", 1), ("INBOX", 3)):
        assert re.search(rf"^  ok    alice@{re.escape(domain)} {shown} +{n} +{n} ", res.stdout,
                         re.M), res.stdout
    shown = mailplan("show", str(spec), check=True).stdout
    assert "'Sent ' 1" in shown and "' INBOX' 1" in shown, shown


def test_verify_reads_the_users_a_group_at_a_time_with_the_same_report(tmp_path, monkeypatch):
    """Verify holds both sides' messages of a group of users at a time (bounded by their
    ledgers' and mailboxes' sizes), so its memory follows the largest user, not the
    number of users; the report is the one of reading everyone at once. Here every
    user is a group alone, and one has a difference to find."""
    from mailplan.spec import load_spec
    from mailplan.state import State

    src = source_with_mail(tmp_path / "source", "v", [5, 6, 7])
    (src / "home/v1/mail").mkdir(parents=True)
    (src / "home/v1/mail/Work").write_bytes(msg("w@x.example", "Thu Nov  5 09:00:00 2026",
                                                "work", "Status: O\n"))
    target = install_target(tmp_path / "target")
    domain = unique_domain("v")
    spec_path = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                           domains={domain: {"import": {"uid_min": 1000}}})
    mailplan("apply", str(spec_path), "--auto-approve", check=True)
    with open(src / "var/spool/mail/v2", "ab") as fh:  # new mail, not imported yet
        fh.write(msg("late@x.example", "Tue Nov  3 10:00:00 2026", "late"))
    spec = load_spec(spec_path)
    groups: list[list[str]] = []
    listed = verify_mod.read_target_mail

    def read_target_mail(conn, maildirs):  # type: ignore[no-untyped-def]
        groups.append(sorted(Path(m).parent.name for m in maildirs))
        return listed(conn, maildirs)

    monkeypatch.setattr(verify_mod, "read_target_mail", read_target_mail)

    def report() -> dict:
        return verify_mod.verify(spec, State.load(tmp_path / "m.state.json"),
                                 full=True).to_dict()

    whole = report()
    assert groups == [["v0", "v1", "v2"]]
    assert not whole["ok"]
    assert [(f["user"], f["folder"], len(f["missing"])) for f in whole["folders"]] == [
        ("v0", "INBOX", 0), ("v1", "INBOX", 0), ("v1", "Work", 0), ("v2", "INBOX", 1)]
    groups.clear()
    monkeypatch.setattr(verify_mod, "GROUP_LEDGER_BYTES", 1)  # every user alone
    assert report() == whole
    assert groups == [["v0"], ["v1"], ["v2"]]
    groups.clear()
    monkeypatch.setattr(verify_mod, "GROUP_LEDGER_BYTES", 1 << 30)
    monkeypatch.setattr(verify_mod, "GROUP_SOURCE_BYTES", 1)  # the other bound
    assert report() == whole
    assert groups == [["v0"], ["v1"], ["v2"]]


@pytest.mark.ssh
def test_a_target_folder_named_in_broken_modified_utf7_is_shown_as_named(migrated):
    # a folder directory on the target that is not valid modified UTF-7 (made by hand,
    # or by a tool other than the IMAP server) holding a mailplan-written message:
    # verify names it as it is on disk, it does not die on its name
    src, target, domain, spec, root = migrated
    work = next((root / ".Work/cur").iterdir())
    odd = root / ".&ZZ-" / "cur"
    odd.mkdir(parents=True)
    (odd / work.name).write_bytes(work.read_bytes())
    res = mailplan("verify", str(spec))
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode in (0, 3), res.stdout + res.stderr
    assert f"alice@{domain} .&ZZ-" in res.stdout


@pytest.mark.ssh
def test_verify_record_is_not_trusted_after_a_same_size_rewrite(migrated):
    # UW-IMAP updates Status/X-Status in place where the length allows: the old server's
    # user flags a message differently after the import, the spool keeps its size, its
    # first and last 4 KiB (the message is in the middle) but not its mtime
    src, target, domain, spec, root = migrated
    spool = src / "var/spool/mail/alice"
    padding = b"".join(msg(f"p{i}@x.example", "Mon Nov  2 10:00:00 2026", f"p{i}")
                       + b"x" * 9000 + b"\n\n" for i in range(2))
    spool.write_bytes(padding + INBOX + padding)
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert mailplan("verify", str(spec)).returncode == 0
    assert "not read again" in mailplan("verify", str(spec), check=True).stdout
    data = spool.read_bytes()
    assert data.count(b"X-Status: F\n") == 1
    stat = spool.stat()
    spool.write_bytes(data.replace(b"X-Status: F\n", b"X-Status: A\n"))
    os.utime(spool, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5 * 10**9))
    res = mailplan("verify", str(spec))
    assert res.returncode == 3, res.stdout + res.stderr
    assert "flags lost:\n" in res.stdout
    full = mailplan("verify", str(spec), "--full")
    assert full.returncode == 3, full.stdout


@pytest.mark.ssh
def test_verify_passes_after_the_user_files_mail_and_renames_a_folder(migrated):
    # on the new server the user files an INBOX message into Work and then renames Work
    # to Archive (dovecot and courier-imap keep the file names): nothing is lost
    src, target, domain, spec, root = migrated
    seen = next(f for f in (root / "cur").iterdir() if b"Subject: seen" in f.read_bytes())
    seen.rename(root / ".Work/cur" / seen.name)
    (root / ".Work").rename(root / ".Archive")
    res = mailplan("verify", str(spec))
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    ident = parse_message_name(seen.name).digest[:12] + "#0"
    assert f"ok    alice@{domain} Archive " in out
    assert ("moved or copied here by the user on the target from another folder (not a "
            "failure)") in out
    assert f"{ident} (from INBOX)" in out and "(from Work)" in out
    # and the folders it was imported into say where it went, not "deleted"
    assert f"{ident} (to Archive)" in out, out
    assert "deleted by the user on the target (not a failure):" not in out, out
    doc = json.loads(mailplan("verify", str(spec), "--json").stdout)
    archive = next(f for f in doc["folders"] if f["folder"] == "Archive")
    assert archive["ok"] and archive["extra"] == [] and len(archive["moved_on_target"]) == 2
    inbox = next(f for f in doc["folders"] if f["folder"] == "INBOX")
    assert inbox["moved_away"] == [f"{ident} (to Archive)"] and not inbox["deleted_on_target"]
    assert doc["ok"] is True


@pytest.mark.ssh
def test_a_message_moved_on_the_target_then_answered_on_the_old_server(migrated):
    """The user files an INBOX message into Work on the new server, then answers it on
    the old one (pine rewrites the spool's X-Status): no plan adds the flag to the moved
    copy, and verify passes, saying on the moved message's line which flags it lacks."""
    src, target, domain, spec, root = migrated
    seen = next(f for f in (root / "cur").iterdir() if b"Subject: seen" in f.read_bytes())
    seen.rename(root / ".Work/cur" / seen.name)
    spool = src / "var/spool/mail/alice"
    spool.write_bytes(spool.read_bytes().replace(
        b"Subject: seen\nStatus: RO\n", b"Subject: seen\nStatus: RO\nX-Status: A\n"))
    plan = mailplan("plan", str(spec), check=True).stdout
    assert "flags" not in plan and "No changes." in plan, plan
    res = mailplan("verify", str(spec))
    assert res.returncode == 0, res.stdout + res.stderr
    ident = parse_message_name(seen.name).digest[:12] + "#0"
    assert (f"{ident} (to Work; flags: source RS, there S, not carried to a moved message)"
            in res.stdout), res.stdout


@pytest.mark.ssh
def test_verify_fails_on_a_folder_missing_on_the_target(migrated):
    # an empty folder on the source (plan creates it, the user sees it on the new
    # server): while it is not on the target, nothing is verified; once an apply made
    # it, the user may delete it on the new server (the plan leaves it deleted)
    src, target, domain, spec, root = migrated
    (src / "home/alice/mail/Empty").write_bytes(b"")
    res = mailplan("verify", str(spec))
    assert res.returncode == 3, res.stdout + res.stderr
    assert f"FAIL  alice@{domain} Empty" in res.stdout
    assert "folder missing on the target" in res.stdout
    doc = json.loads(mailplan("verify", str(spec), "--json").stdout)
    empty = next(f for f in doc["folders"] if f["folder"] == "Empty")
    assert empty["folder_missing"] is True and not empty["ok"]
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert (root / ".Empty/cur").is_dir()
    assert mailplan("verify", str(spec)).returncode == 0
    shutil.rmtree(root / ".Empty")
    res = mailplan("verify", str(spec))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "deleted by the user on the target" in res.stdout


@pytest.mark.ssh
def test_verify_record_is_not_reused_when_the_source_time_zone_changes(migrated):
    # the admin corrects source.timezone after the import: the From_ dates now mean
    # other instants, so the target's dates differ; the record of the last verify,
    # which read them in the old zone, must not say otherwise
    import yaml

    src, target, domain, spec, root = migrated
    assert mailplan("verify", str(spec)).returncode == 0
    assert "not read again" in mailplan("verify", str(spec), check=True).stdout
    doc = yaml.safe_load(spec.read_text())
    doc["source"]["timezone"] = "America/New_York"
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    res = mailplan("verify", str(spec))
    assert res.returncode == 3, res.stdout + res.stderr
    assert "date differs:\n" in res.stdout
    full = mailplan("verify", str(spec), "--full")
    assert full.returncode == 3 and "date differs:\n" in full.stdout, full.stdout


@pytest.mark.ssh
def test_verify_checks_the_subscriptions_apply_writes(migrated):
    # no ~/.mailboxlist on the source: apply subscribed Work in both files; lines the
    # user adds on the new server pass, a line missing from either file fails (also for
    # a folder the last verify proved and does not read again)
    src, target, domain, spec, root = migrated
    courier, dovecot = root / "courierimapsubscribed", root / "subscriptions"
    assert courier.read_text() == "INBOX.Work\n" and dovecot.read_text() == "Work\n"
    with open(courier, "a") as fh:
        fh.write("INBOX.Private\n")
    dovecot.write_text("Private\nWork\n")
    res = mailplan("verify", str(spec))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "not subscribed" not in res.stdout
    dovecot.write_text("Private\n")
    res = mailplan("verify", str(spec))
    assert res.returncode == 3, res.stdout + res.stderr
    assert f"FAIL  alice@{domain} Work" in res.stdout
    assert "          not subscribed in subscriptions (a client that lists subscribed " \
           "folders only will not show it; `mailplan apply` subscribes it)" in res.stdout
    assert "NOT verified: 1 item(s) marked FAIL above." in res.stdout
    doc = json.loads(mailplan("verify", str(spec), "--json").stdout)
    work = next(f for f in doc["folders"] if f["folder"] == "Work")
    assert work["reused"] and work["unsubscribed"] == ["subscriptions"] and not work["ok"]
    assert all(f["unsubscribed"] == [] for f in doc["folders"] if f["folder"] != "Work")
    courier.unlink()
    doc = json.loads(mailplan("verify", str(spec), "--json", "--full").stdout)
    work = next(f for f in doc["folders"] if f["folder"] == "Work")
    assert work["unsubscribed"] == ["courierimapsubscribed", "subscriptions"]
    assert not work["reused"] and not doc["ok"]


def import_other_unlisted(migrated) -> None:  # type: ignore[no-untyped-def]
    """alice's ~/.mailboxlist lists only Work, and a new folder Other is imported."""
    src, _target, _domain, spec, _root = migrated
    (src / "home/alice/.mailboxlist").write_text("mail/Work\n")
    (src / "home/alice/mail/Other").write_bytes(msg("o@x.example",
                                                    "Fri Nov  6 09:00:00 2026", "other"))
    mailplan("apply", str(spec), "--auto-approve", check=True)


@pytest.mark.ssh
def test_verify_asks_only_for_the_subscriptions_of_the_mailboxlist(migrated):
    # with a ~/.mailboxlist, apply subscribes the folders it lists, and verify asks
    # for no other; a folder listed there since must be subscribed on the target
    src, target, domain, spec, root = migrated
    import_other_unlisted(migrated)
    assert (root / ".Other/cur").is_dir() or (root / ".Other/new").is_dir()
    assert (root / "subscriptions").read_text() == "Work\n"
    res = mailplan("verify", str(spec))
    assert res.returncode == 0, res.stdout + res.stderr
    (src / "home/alice/.mailboxlist").write_text("mail/Work\nmail/Other\n")
    res = mailplan("verify", str(spec))
    assert res.returncode == 3, res.stdout + res.stderr
    assert f"FAIL  alice@{domain} Other" in res.stdout
    assert "not subscribed in courierimapsubscribed, subscriptions" in res.stdout


def test_the_plan_reads_the_subscription_files_with_the_ledger_counts(tmp_path, monkeypatch):
    """read_ledger_counts reads each Maildir's subscription files in its one batch, as
    they are (a line holding tabs: dovecot's version 2 form), a symbolic link not (as
    verify reads none), and without them asked for it reads none."""
    from mailplan.facts import maildirs as facts

    roots = [tmp_path / f"u{n}" / "Maildir" for n in range(4)]
    for root in roots:
        root.mkdir(parents=True)
    (roots[0] / "mailplan-ledger").write_bytes(b"\tabc\t0\n.Work\tabc\t0\n")
    (roots[0] / "courierimapsubscribed").write_bytes(b"INBOX.Work\nINBOX.Tab\tbed")
    (roots[0] / "subscriptions").write_bytes(b"")  # as good as none: no line
    (roots[1] / "subscriptions").write_bytes(b"V\t2\n\nLists\tpy\n\xff\n")
    (tmp_path / "elsewhere").write_bytes(b"Work\n")
    (roots[2] / "subscriptions").symlink_to(tmp_path / "elsewhere")
    batches: list[int] = []
    real = facts.run_batch

    def counting(conn, cmds):  # type: ignore[no-untyped-def]
        batches.append(len(cmds))
        return real(conn, cmds)

    monkeypatch.setattr(facts, "run_batch", counting)
    files: dict = {}
    conn = LocalConnector("here")
    counts = facts.read_ledger_counts(conn, [str(r) for r in roots], files)
    assert files == {str(roots[0]): {"courierimapsubscribed": b"INBOX.Work\nINBOX.Tab\tbed\n"},
                     str(roots[1]): {"subscriptions": b"V\t2\n\nLists\tpy\n\xff\n"}}
    assert counts[str(roots[0])] == {"": 1, ".Work": 1, "/": 19}
    assert counts[str(roots[1])] == {} and batches == [1]
    assert facts.read_ledger_counts(conn, [str(r) for r in roots]) == counts


@pytest.mark.ssh
def test_plan_adds_a_subscription_lost_on_the_target(migrated):
    # a folder fully imported whose line is gone from one file and whose other file is
    # deleted: verify fails, the plan proposes the subscription (nothing else), apply
    # adds the lines (keeping the one the user added; the new file with the Maildir's
    # owner and mode 0600), then the plan has no change and verify passes
    src, target, domain, spec, root = migrated
    courier, dovecot = root / "courierimapsubscribed", root / "subscriptions"
    dovecot.write_text("Private\n")
    courier.unlink()
    res = mailplan("verify", str(spec))
    assert res.returncode == 3 and "`mailplan apply` subscribes it" in res.stdout
    res = mailplan("plan", str(spec), "--detailed-exitcode")
    assert res.returncode == 2, res.stdout + res.stderr
    assert (f"  + subscription alice@{domain} Work\n      add the folder's line to "
            "courierimapsubscribed and subscriptions (the source has no ~/.mailboxlist: "
            "every folder is subscribed)\n") in res.stdout
    assert "Plan: 1 to create, 0 to change, 0 to destroy." in res.stdout, res.stdout
    out = mailplan("apply", str(spec), "--auto-approve", check=True).stdout
    assert f"subscription alice@{domain} Work" in out
    assert dovecot.read_text() == "Private\nWork\n"
    assert courier.read_text() == "INBOX.Work\n"
    owner = (root.stat().st_uid, root.stat().st_gid)
    assert (courier.stat().st_uid, courier.stat().st_gid) == owner
    assert oct(courier.stat().st_mode & 0o7777) == "0o600"
    again = mailplan("plan", str(spec), "--detailed-exitcode")
    assert again.returncode == 0 and "No changes." in again.stdout, again.stdout
    res = mailplan("verify", str(spec))
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.ssh
def test_plan_subscribes_a_folder_the_mailboxlist_gains_after_its_import(migrated):
    # Other is imported unsubscribed (not in ~/.mailboxlist); the list gains it: the
    # plan subscribes it (said so), and once it is, a plan has no change; a folder the
    # user deleted on the target is not subscribed again
    src, target, domain, spec, root = migrated
    import_other_unlisted(migrated)
    assert (root / "subscriptions").read_text() == "Work\n"
    again = mailplan("plan", str(spec), "--detailed-exitcode")
    assert again.returncode == 0 and "No changes." in again.stdout, again.stdout
    (src / "home/alice/.mailboxlist").write_text("mail/Work\nmail/Other\n")
    res = mailplan("plan", str(spec), check=True)
    assert (f"  + subscription alice@{domain} Other\n      add the folder's line to "
            "courierimapsubscribed and subscriptions (listed in the source's "
            "~/.mailboxlist)\n") in res.stdout, res.stdout
    assert "+ mailbox" not in res.stdout and "subscription alice@" + domain + " Work" \
        not in res.stdout
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert (root / "subscriptions").read_text() == "Work\nOther\n"
    assert (root / "courierimapsubscribed").read_text() == "INBOX.Work\nINBOX.Other\n"
    again = mailplan("plan", str(spec), "--detailed-exitcode")
    assert again.returncode == 0 and "No changes." in again.stdout, again.stdout
    res = mailplan("verify", str(spec))
    assert res.returncode == 0, res.stdout + res.stderr
    # the user deletes the folder on the new server (and its lines, as a client does)
    shutil.rmtree(root / ".Other")
    (root / "subscriptions").write_text("Work\n")
    (root / "courierimapsubscribed").write_text("INBOX.Work\n")
    again = mailplan("plan", str(spec), "--detailed-exitcode")
    assert again.returncode == 0 and "No changes." in again.stdout, again.stdout


def test_the_login_check_is_not_shown_as_part_of_the_unmigrated_list():
    """The login check's line follows a blank line: after the "Not migrated" list it read
    as one more of its entries."""
    from mailplan.verify_render import render_report

    report = Report("newmail", unmigrated=["mallory@example.com: account is locked"],
                    login={"ok": True, "address": "alice@example.com", "detail": "accepted"})
    assert "  FAIL  mallory@example.com: account is locked\n\nLogin check: ok    " \
        "alice@example.com: accepted\n" in render_report(report)
