"""Notes on source mailboxes carry their kind, and the plan files each by it.

A problem (a file not imported) goes under the plan's problems, a warning (mail imported
all the same: a Content-Length the reader could not check) under its warnings, in the
JSON plan and the apply log too, and information (``~/mbox`` and a folder file named
INBOX, merged into the INBOX) with what needs no change, shown by ``plan -v``. The plans
made here read a local source into the stand-in target."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
import yaml
from migration import (
    SourceAccount,
    install_target,
    mailplan,
    make_source,
    unique_domain,
    write_spec,
)
from tools import require

from mailplan.connectors.local import LocalConnector
from mailplan.engine import make_plan, state_path_for
from mailplan.facts.find_errors import find_messages
from mailplan.facts.listing_notes import unseen_notes
from mailplan.facts.mailboxes import (
    DOT_LOCK_NOTE,
    HOME_INBOX_NOTE,
    HOME_MBOX_NOTE,
    INBOX_FILE_NOTE,
    MISSING_SPOOL_NOTE,
    NO_SPOOL_DIR_NOTE,
    MailboxRef,
    _Found,
    list_source_mailboxes,
)
from mailplan.facts.notes import MAILDIR_NOTE, MIX_NOTE
from mailplan.mail.mbox import LOOKAHEAD
from mailplan.spec import load_spec
from mailplan.state import State
from mailplan.verify import verify


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


def test_a_missing_spool_is_noted_as_an_empty_inbox(tmp_path):
    """A user with no spool file has no INBOX mailbox, but a note says so (an empty
    INBOX, or one whose mail is in ~/mbox); a spool that is a symbolic link has its own
    note (a problem), not this one, and so has one that is a directory (a Maildir where
    the spool should be: its mail is not imported)."""
    names = ("bob", "dave", "erin", "fred")
    src = make_source(tmp_path / "source", [SourceAccount(name, 1000 + i, name, "pw")
                                            for i, name in enumerate(names)])
    spool, home = src / "var/spool/mail", src / "home"
    (home / "dave/mbox").write_bytes(msg("dave's mbox"))
    (tmp_path / "elsewhere").write_bytes(msg("erin's"))
    (spool / "erin").symlink_to(tmp_path / "elsewhere")
    (spool / "fred/cur").mkdir(parents=True)
    refs = [MailboxRef("example.com", name, name, str(spool / name), str(home / name / "mail"),
                       str(home / name)) for name in names]
    mailboxes, notes = list_source_mailboxes(LocalConnector("oldmail"), refs)
    assert [(m.user, m.name) for m in mailboxes] == [("dave", "INBOX (~/mbox)")]
    said = [(n.user, n.kind, n.path, n.folder, n.message) for n in notes
            if n.path != str(home / "dave/mbox")]
    assert said[:2] == [
        ("bob", "info", str(spool / "bob"), "INBOX",
         f"INBOX: {spool}/bob {MISSING_SPOOL_NOTE} (a missing spool is an empty INBOX)"),
        ("dave", "info", str(spool / "dave"), "INBOX",
         f"INBOX: {spool}/dave {MISSING_SPOOL_NOTE}; the INBOX's mail is in ~/mbox")]
    assert [(u, kind) for u, kind, *_ in said[2:]] == [("erin", "problem"),
                                                       ("fred", "problem")], said
    assert said[3][4] == (f"INBOX: {spool}/fred (the spool) is a directory, not an mbox "
                          "file: nothing is imported from it (mail kept there is left on "
                          "the old server)")
    assert MISSING_SPOOL_NOTE == "is missing, nothing to import from it"


def test_a_dot_lock_beside_its_mailbox_is_no_folder(tmp_path):
    """While pine (c-client), mutt or procmail write a folder NAME they hold NAME.lock
    beside it, empty or holding a PID, and a crash leaves it there: found by a real plan,
    an empty Sent.lock became a folder made on the target, and Drafts.lock with a PID in
    it a problem ("not an mbox") failing the apply. Too small for a From_ line (23 bytes
    at the least), it holds no mail: an information note, no folder. A file named so that
    could hold mail, or with no mailbox beside it, is a folder as before."""
    src = make_source(tmp_path / "source", [SourceAccount("bob", 1000, "Bob", "pw")])
    folders = src / "home/bob/mail"
    (folders / "sub").mkdir(parents=True)
    for name in ("Sent", "Drafts", "sub/x", "big"):
        (folders / name).write_bytes(msg(name))
    (folders / "Sent.lock").write_bytes(b"")
    (folders / "Drafts.lock").write_bytes(b"4194304\n")  # liblockfile writes the PID
    (folders / "sub/x.lock").write_bytes(b"0")  # procmail's
    (folders / "alone.lock").write_bytes(b"")  # no mailbox "alone": an empty folder
    (folders / "big.lock").write_bytes(b"From  Mon Jan 1 0:00 70")  # 23 bytes: an mbox
    ref = MailboxRef("example.com", "bob", "bob", str(src / "var/spool/mail/bob"),
                     str(folders), str(src / "home/bob"))
    mailboxes, notes = list_source_mailboxes(LocalConnector("oldmail"), [ref])
    assert sorted(m.folder for m in mailboxes) == [
        "Drafts", "Sent", "alone.lock", "big", "big.lock", "sub/x"]
    assert sorted((n.kind, n.message) for n in notes if n.folder != "INBOX") == [
        ("info", f"{folders}/{name}.lock {DOT_LOCK_NOTE}") for name in ("Drafts", "Sent",
                                                                        "sub/x")]


def test_a_mix_format_folder_is_a_problem_not_passed_over(tmp_path):
    """UW-IMAP's mix format keeps a folder as a directory of hidden files (.mixmeta,
    .mixindex, .mixstatus, .mixXXXXXXXX holding the mail). Hidden files are left out, so
    the folder was passed over in silence: plan, apply (exit 0) and verify ("Verified")
    said nothing of its mail (found by a real run). It is a problem naming it, as a
    folder file that is no mbox is (below a hidden directory too: UW-IMAP lists hidden
    files); its .mix files are no folders of their own."""
    src = make_source(tmp_path / "source", [SourceAccount("bob", 1000, "Bob", "pw")])
    folders = src / "home/bob/mail"
    for where in ("Work", "old/2001", ".trash/x"):
        (folders / where).mkdir(parents=True)
        for name, data in ((".mixmeta", b"S3a1b2c3d\nV3a1b2c3d\nL0\nN00000001\n"),
                           (".mixindex", b"S3a1b2c3d\n"), (".mixstatus", b"S3a1b2c3d\n"),
                           (".mix3a1b2c3d", b":msg:00000001:20010101100000+0000:0000000d:"
                                            b"\r\nSubject: x\r\n\r\n")):
            (folders / where / name).write_bytes(data)
    (folders / "old/Sent").write_bytes(msg("sent"))
    ref = MailboxRef("example.com", "bob", "bob", str(src / "var/spool/mail/bob"),
                     str(folders), str(src / "home/bob"))
    mailboxes, notes = list_source_mailboxes(LocalConnector("oldmail"), [ref])
    assert [m.folder for m in mailboxes] == ["old/Sent"]
    assert sorted((n.kind, n.folder, n.message) for n in notes if n.folder != "INBOX") == [
        ("problem", ".trash/x", f"{folders}/.trash/x {MIX_NOTE}"),
        ("problem", "Work", f"{folders}/Work {MIX_NOTE}"),
        ("problem", "old/2001", f"{folders}/old/2001 {MIX_NOTE}")]


def test_hidden_folder_files_are_imported_unless_the_folders_directory_is_home(tmp_path):
    """c-client's hideDotFiles is off by default (env_unix.c): UW-IMAP lists ~/mail/.old
    as a folder, whose mail was left behind without a word (hidden files were skipped).
    It is a folder like any other, below a hidden directory too, written .\\2eold on the
    target (as v1.2 is .v1\\2e2). A folders directory that is the home directory keeps
    its hidden files out: configuration, no folders."""
    src = make_source(tmp_path / "source", [SourceAccount("bob", 1000, "Bob", "pw"),
                                            SourceAccount("carol", 1001, "Carol", "pw")])
    home = src / "home"
    (home / "bob/mail/.arch").mkdir(parents=True)
    for name in (".old", ".arch/2001", "Sent"):
        (home / "bob/mail" / name).write_bytes(msg(name))
    for name in (".profile", ".pinerc", ".mailboxlist", "Sent"):
        (home / "carol" / name).write_bytes(msg(name))
    (home / "carol/.cache").mkdir()
    (home / "carol/.cache/x").write_bytes(msg("x"))
    for sub in ("cur", "new", "tmp"):  # a program's hidden Maildir-like cache
        (home / "carol/.cache/m" / sub).mkdir(parents=True)
    (home / "carol/.cache/m/cur/1").write_bytes(b"x")
    refs = [MailboxRef("example.com", "bob", "bob", str(src / "var/spool/mail/bob"),
                       str(home / "bob/mail"), str(home / "bob")),
            MailboxRef("example.com", "carol", "carol", str(src / "var/spool/mail/carol"),
                       f"{home}/carol/.", str(home / "carol"))]
    mailboxes, notes = list_source_mailboxes(LocalConnector("oldmail"), refs)
    assert sorted((m.user, m.folder, m.dirname) for m in mailboxes) == [
        ("bob", ".arch/2001", ".\\2earch.2001"), ("bob", ".old", ".\\2eold"),
        ("bob", "Sent", ".Sent"), ("carol", "Sent", ".Sent")]
    assert [n for n in notes if n.kind != "info"] == []


ALL_THREE = "cur, new and tmp directories"


def test_a_maildir_below_the_folders_directory_is_one_problem(tmp_path):
    """A Maildir under ~/mail (cur, new and tmp: mutt's or procmail's) gave one 'not an
    mbox' problem per message file. It is one problem naming it, with its count of
    message files (its Maildir++ folders' included) and how to bring them over; a
    ~/mail that is itself a Maildir likewise. A directory named cur beside no new and
    tmp holds folders as any directory does."""
    src = make_source(tmp_path / "source", [SourceAccount("bob", 1000, "Bob", "pw"),
                                            SourceAccount("carol", 1001, "Carol", "pw")])
    home = src / "home"
    lists = home / "bob/mail/lists"
    for sub in ("cur", "new", "tmp", ".Sent/cur", ".Sent/new", ".Sent/tmp", "x/cur"):
        (lists / sub).mkdir(parents=True)
    for i, sub in enumerate(("cur", "cur", "new", ".Sent/cur")):
        (lists / sub / f"17000000{i}.M1P1.old:2,S").write_bytes(b"Subject: x\n\nx\n")
    (lists / "dovecot-uidlist").write_bytes(b"3 V1 N4\n")
    (home / "bob/mail/cur").mkdir()
    (home / "bob/mail/cur/2001").write_bytes(msg("an mbox folder in a directory cur"))
    for sub in ("cur", "new", "tmp"):
        (home / "carol/mail" / sub).mkdir(parents=True)
    (home / "carol/mail/new/1700000000.M1P1.old").write_bytes(b"Subject: y\n\ny\n")
    refs = [MailboxRef("example.com", name, name, str(src / "var/spool/mail" / name),
                       str(home / name / "mail"), str(home / name)) for name in ("bob", "carol")]
    mailboxes, notes = list_source_mailboxes(LocalConnector("oldmail"), refs)
    assert [(m.user, m.folder) for m in mailboxes] == [("bob", "cur/2001")]
    assert [(n.user, n.kind, n.path, n.folder, n.message) for n in notes
            if n.kind != "info"] == [
        ("bob", "problem", str(lists), "lists", f"{lists} " + MAILDIR_NOTE.format(
            has=ALL_THREE, count=4, address="bob@example.com")),
        ("carol", "problem", f"{home}/carol/mail", None, f"{home}/carol/mail " +
         MAILDIR_NOTE.format(has=ALL_THREE, count=1, address="carol@example.com"))]
    assert "'vuserinfo -d bob@example.com'" in notes[0].message or any(
        "'vuserinfo -d bob@example.com'" in n.message for n in notes)


def test_an_inbox_c_client_keeps_in_the_home_directory_is_a_problem(tmp_path):
    """c-client's mbx, mix and mx drivers keep the INBOX in ~/INBOX (a file, or a
    directory) and move the spool's new mail into it: the spool then holds little or
    nothing, and the INBOX's mail was left behind without a word (found by a real run).
    A non-empty ~/INBOX, or a directory there, is a problem naming it; an empty file
    holds nothing."""
    names = ("mbx", "mix", "empty", "none")
    src = make_source(tmp_path / "source", [SourceAccount(name, 1000 + i, name, "pw")
                                            for i, name in enumerate(names)])
    home = src / "home"
    (home / "mbx/INBOX").write_bytes(b"*mbx*\r\n" + b" " * 2041)
    (home / "mix/INBOX").mkdir()
    (home / "mix/INBOX/.mixmeta").write_bytes(b"S3a1b2c3d\n")
    (home / "empty/INBOX").write_bytes(b"")
    for name in names:
        (src / "var/spool/mail" / name).write_bytes(msg(name))
    refs = [MailboxRef("example.com", name, name, str(src / "var/spool/mail" / name),
                       str(home / name / "mail"), str(home / name)) for name in names]
    mailboxes, notes = list_source_mailboxes(LocalConnector("oldmail"), refs)
    assert sorted(m.user for m in mailboxes) == sorted(names)
    assert [(n.user, n.kind, n.folder, n.message) for n in notes] == [
        (name, "problem", "INBOX", f"{home}/{name}/INBOX {HOME_INBOX_NOTE}")
        for name in ("mbx", "mix")]


def test_a_folders_directory_that_is_a_file_is_a_problem(tmp_path):
    """A user's ~/mail that is a file, not a directory (an mbox a mail program saved
    there, or a folder named "mail" an IMAP client made in the home directory), holds
    mail no folder brings over: a problem naming it, not a user without folders."""
    src = make_source(tmp_path / "source", [SourceAccount("bob", 1000, "Bob", "pw")])
    home = src / "home/bob"
    (home / "mail").write_bytes(msg("saved in ~/mail"))
    ref = MailboxRef("example.com", "bob", "bob", str(src / "var/spool/mail/bob"),
                     str(home / "mail"), str(home))
    mailboxes, notes = list_source_mailboxes(LocalConnector("oldmail"), [ref])
    assert mailboxes == []
    assert [(n.kind, n.path, n.folder, n.message) for n in notes if n.kind == "problem"] == [
        ("problem", str(home / "mail"), None,
         f"{home}/mail (the folders directory) is a file, not a directory: no mail in it is "
         "imported (move it into a directory of that name to import it)")]


def test_a_home_mbox_or_folder_entry_that_is_not_a_file_is_a_problem(tmp_path):
    """A ~/mbox that is a named pipe or a directory, and a folder entry that is a named
    pipe (or a socket), are problems naming the path and what it is, as a spool of
    another type is: nothing is imported from them (they were passed over in silence),
    and the user's other mailboxes go on. A directory under ~/mail stays a parent of
    folders, and a hidden entry is one too (UW-IMAP lists hidden files)."""
    import os
    import socket

    src = make_source(tmp_path / "source", [SourceAccount("bob", 1000, "Bob", "pw"),
                                            SourceAccount("carol", 1001, "Carol", "pw")])
    spool, home = src / "var/spool/mail", src / "home"
    (spool / "bob").write_bytes(msg("bob's spool"))
    os.mkfifo(home / "bob/mbox")
    (home / "bob/mail/Archive").mkdir(parents=True)
    (home / "bob/mail/Archive/2025").write_bytes(msg("archived"))
    os.mkfifo(home / "bob/mail/Work")
    os.mkfifo(home / "bob/mail/.hidden")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(home / "bob/mail/Archive/sock"))
    (home / "carol/mbox/cur").mkdir(parents=True)
    refs = [MailboxRef("example.com", name, name, str(spool / name), str(home / name / "mail"),
                       str(home / name)) for name in ("bob", "carol")]
    mailboxes, notes = list_source_mailboxes(LocalConnector("oldmail"), refs)
    assert [(m.user, m.name) for m in mailboxes] == [("bob", "INBOX"), ("bob", "Archive/2025")]
    assert [(n.user, n.path, n.folder, n.message) for n in notes if n.kind == "problem"] == [
        ("bob", f"{home}/bob/mbox", "INBOX",
         f"INBOX: {home}/bob/mbox (~/mbox, INBOX mail) is a named pipe, not an mbox file: "
         "nothing is imported from it (mail kept there is left on the old server)"),
        ("bob", f"{home}/bob/mail/.hidden", ".hidden",
         f"{home}/bob/mail/.hidden (a folder) is a named pipe, not an mbox file: "
         "nothing is imported from it (mail kept there is left on the old server)"),
        ("bob", f"{home}/bob/mail/Archive/sock", "Archive/sock",
         f"{home}/bob/mail/Archive/sock (a folder) is a socket, not an mbox file: "
         "nothing is imported from it (mail kept there is left on the old server)"),
        ("bob", f"{home}/bob/mail/Work", "Work",
         f"{home}/bob/mail/Work (a folder) is a named pipe, not an mbox file: "
         "nothing is imported from it (mail kept there is left on the old server)"),
        ("carol", f"{home}/carol/mbox", "INBOX",
         f"INBOX: {home}/carol/mbox (~/mbox, INBOX mail) is a directory, not an mbox file: "
         "nothing is imported from it (mail kept there is left on the old server)")]
    # carol's missing spool is an empty INBOX as before; her ~/mbox holds none of it
    assert [n.message for n in notes if n.user == "carol" and n.kind == "info"] == [
        f"INBOX: {spool}/carol {MISSING_SPOOL_NOTE} (a missing spool is an empty INBOX)"]


def test_a_folders_directory_that_is_a_named_pipe_is_a_problem(tmp_path):
    """A ~/mail that is neither a directory nor a file (a named pipe) is named too, as
    a ~/mail that is a file is: no folder is imported from it."""
    import os

    src = make_source(tmp_path / "source", [SourceAccount("bob", 1000, "Bob", "pw")])
    home = src / "home/bob"
    os.mkfifo(home / "mail")
    ref = MailboxRef("example.com", "bob", "bob", str(src / "var/spool/mail/bob"),
                     str(home / "mail"), str(home))
    mailboxes, notes = list_source_mailboxes(LocalConnector("oldmail"), [ref])
    assert mailboxes == []
    assert [(n.path, n.folder, n.message) for n in notes if n.kind == "problem"] == [
        (str(home / "mail"), None,
         f"{home}/mail (the folders directory) is a named pipe, not a directory: no mail "
         "in it is imported")]


def test_a_spool_whose_directory_is_missing_is_a_problem(tmp_path):
    """A spool directory that is not there (a typo in source.spool) is no user without
    mail: each INBOX of it is a problem naming the directory and the spec's key, where a
    plan said "No changes" and imported nothing. A spool directory reached through a
    symbolic link (/var/spool/mail -> ../mail on Debian) is there."""
    src = make_source(tmp_path / "source", [SourceAccount("bob", 1000, "Bob", "pw")])
    (tmp_path / "mail").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "mail")
    typo, linked = tmp_path / "spool-typo", tmp_path / "linked"
    refs = [MailboxRef("example.com", "bob", "bob", str(typo / "bob"), str(src / "home/bob/mail"),
                       str(src / "home/bob")),
            MailboxRef("example.com", "carol", "carol", str(linked / "carol"),
                       str(src / "home/carol/mail"), ""),
            MailboxRef("example.com", "dave", "dave", str(typo / "dave"), "/nonexistent/mail",
                       spool_given=True, user_key="domains['example.com'].users[2]")]
    _mailboxes, notes = list_source_mailboxes(LocalConnector("oldmail"), refs)
    bob = NO_SPOOL_DIR_NOTE.format(dir=typo, key="source.spool")
    dave = NO_SPOOL_DIR_NOTE.format(dir=typo, key="domains['example.com'].users[2].spool")
    assert [(n.user, n.kind, n.folder, n.message, n.wrong_path) for n in notes] == [
        ("bob", "problem", "INBOX", f"INBOX: {typo}/bob {bob}", True),
        ("carol", "info", "INBOX",
         f"INBOX: {linked}/carol {MISSING_SPOOL_NOTE} (a missing spool is an empty INBOX)",
         False),
        ("dave", "problem", "INBOX", f"INBOX: {typo}/dave {dave}", True)]
    assert bob.endswith("check source.spool in the spec"), bob


def test_a_folders_directory_the_spec_names_that_is_missing_is_a_problem(tmp_path):
    """A user's folders: in the spec (named by the administrator) that is not there, a
    typo, left every folder on the old server without a word, even with -v; the plan
    lists it among its problems now (apply exits 3), as a missing spool directory (dave's
    spool: under a directory the source does not have). verify fails on both, naming
    the user, the path and the spec key: it listed them as explained and said
    "Verified" (exit 0), all that mail left behind. The default ~/mail and spool missing
    (carol) are still a user without folders and an empty INBOX, not failing."""
    src = make_source(tmp_path / "source", [SourceAccount("bob", 1000, "Bob", "pw1"),
                                            SourceAccount("carol", 1001, "Carol", "pw2"),
                                            SourceAccount("dave", 1002, "Dave", "pw3")])
    (src / "home/bob/Mail").mkdir()
    (src / "home/bob/Mail/Work").write_bytes(b"From a@b Mon Nov  2 10:00:00 2026\n\nhi\n\n")
    typo, spool = src / "home/bob/mail", src / "var/spool/mial/dave"
    domain = unique_domain("nofolders")
    spec = write_spec(tmp_path / "m.yaml", source_root=src,
                      target=install_target(tmp_path / "target"),
                      domains={domain: {"users": [{"name": "bob", "folders": str(typo)},
                                                  {"name": "carol"},
                                                  {"name": "dave", "spool": str(spool)}]}})
    said = (f"bob@{domain}: {typo} (the folders directory, domains['{domain}'].users[0]."
            f"folders in the spec) is missing on the source: no folder is imported; check "
            "that path")
    dave = (f"dave@{domain}: INBOX: {spool} is missing, and so is its directory "
            f"{spool.parent} on the source: nothing is imported from it; check "
            f"domains['{domain}'].users[2].spool in the spec")
    text = mailplan("plan", str(spec)).stdout
    assert f"Problems (these are not migrated):\n  ! {said}\n  ! {dave}\n" in text, text
    assert "carol" not in text.partition("Problems")[2], text
    res = mailplan("apply", str(spec), "--auto-approve")
    assert res.returncode == 3 and "Not migrated: 2 problem(s)" in res.stdout, res.stdout
    res = mailplan("verify", str(spec))
    assert res.returncode == 3, res.stdout + res.stderr
    failed = res.stdout.partition("Not migrated (")[2].partition("\n\n")[0]
    assert f"  FAIL  {said}\n  FAIL  {dave}" in failed, res.stdout
    assert "carol" not in failed, res.stdout
    assert f"  ! carol@{domain}: INBOX: " in res.stdout.partition("Explained")[2], res.stdout
    assert "NOT verified: 2 item(s) marked FAIL above." in res.stdout, res.stdout
    loaded = load_spec(spec)
    report = verify(loaded, State.load(state_path_for(loaded)))
    assert not report.ok and report.unmigrated == [said, dave], report.unmigrated


def test_plan_v_and_verify_account_for_a_missing_spool_as_for_an_empty_one(tmp_path):
    """bob has never had mail (no spool file), carol's spool is empty: plan -v and
    verify give each a line, and verify passes."""
    src = make_source(tmp_path / "source", [SourceAccount("bob", 1000, "Bob", "pw1"),
                                            SourceAccount("carol", 1001, "Carol", "pw2")])
    spool = src / "var/spool/mail"
    (spool / "carol").write_bytes(b"")
    domain = unique_domain("nospool")
    spec = write_spec(tmp_path / "m.yaml", source_root=src,
                      target=install_target(tmp_path / "target"),
                      domains={domain: {"users": [{"name": "bob"}, {"name": "carol"}]}})
    missing = f"bob@{domain}: INBOX: {spool}/bob {MISSING_SPOOL_NOTE}"
    text = mailplan("plan", str(spec), "-v", check=True).stdout
    unchanged = text.partition("Unchanged:\n")[2]
    assert f"  = {missing} (a missing spool is an empty INBOX)\n" in unchanged, text
    assert f"  = carol@{domain}: INBOX: empty, nothing to import\n" in unchanged, text
    assert "Problems" not in text and "Warnings" not in text, text
    mailplan("apply", str(spec), "--auto-approve", check=True)
    res = mailplan("verify", str(spec))
    assert res.returncode == 0, res.stdout + res.stderr
    explained = res.stdout.partition(
        "Explained (not failures; the plan lists them too, some only with -v):\n")[2]
    assert f"  ! {missing} (a missing spool is an empty INBOX)\n" in explained, res.stdout
    assert re.search(rf"  ok    carol@{re.escape(domain)} INBOX +0 +0 ", res.stdout), \
        res.stdout
    assert "Verified: the target matches the source and the spec." in res.stdout


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


def test_a_content_length_not_checked_is_a_warning_and_the_mail_is_imported(tmp_path):
    """A Solaris message whose Content-Length claims more than the reader looks ahead on
    a pipe is cut by its From_ lines instead, and imported: the plan lists the reader's
    note under its warnings (text and JSON), not its problems, and the apply log under
    the warnings, counting nothing as not migrated. It was once a problem."""
    src = make_source(tmp_path / "source", [SourceAccount("alice", 1000, "Alice", "pw1")])
    spool = src / "var/spool/mail/alice"
    spool.write_bytes(msg("first"))
    target = install_target(tmp_path / "target")
    domain = unique_domain("cl")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"users": [{"name": "alice"}]}})
    mailplan("apply", str(spec), "--auto-approve", check=True)
    body = b"y" * 99 + b"\n"
    body *= LOOKAHEAD // len(body) + 1
    offset = spool.stat().st_size
    with spool.open("ab") as fh:  # read from the checkpoint on: through a pipe
        fh.write(b"From s@x.example Tue Nov  3 10:00:00 2026\nSubject: big\n"
                 b"Content-Length: %d\n\n" % len(body) + body + b"\n")
    headers = len(b"From s@x.example Tue Nov  3 10:00:00 2026\nSubject: big\n"
                  b"Content-Length: %d\n\n" % len(body))
    note = (f"INBOX ({spool}): Content-Length at offset {offset + headers} not checked "
            "(beyond lookahead on a non-seekable stream); separators used instead")

    text = mailplan("plan", str(spec), check=True).stdout
    assert "Problems" not in text, text
    assert (f"Warnings (migrated all the same; look at them):\n"
            f"  ! alice@{domain}: {note}\n") in text, text
    doc = json.loads(mailplan("plan", str(spec), "--json", check=True).stdout)
    assert doc["problems"] == []
    assert doc["warnings"] == [{"domain": domain, "user": "alice", "message": note}]

    mailplan("apply", str(spec), "--auto-approve", check=True)
    log = sorted(spec.with_name("m.state.json.logs").glob("apply-*.log"))[-1]  # this one
    logged = log.read_text()
    assert "1 warning(s), migrated all the same:" in logged
    assert f"  ! alice@{domain}: {note}\n" in logged
    assert "problem(s), not migrated" not in logged and "  not migrated: 0 " in logged
    home = target.tool("vuserinfo", "-d", f"alice@{domain}").stdout.decode().split("\n")[0]
    stored = [f.read_bytes() for f in Path(home, "Maildir").glob("*/*")
              if f.parent.name in ("new", "cur")]
    assert sorted(len(m) for m in stored) == [len(b"Subject: first\n\nbody\n"),
                                              len(b"Subject: big\n\n") + len(body)]


def test_empty_lines_before_the_first_from_line_are_a_warning_and_the_mail_is_imported(
        tmp_path):
    """A spool that starts with empty lines: they hold no mail, so the plan warns and the
    mail after them is imported (once: verify agrees, and mail appended later is read from
    the checkpoint, nothing twice)."""
    src = make_source(tmp_path / "source", [SourceAccount("alice", 1000, "Alice", "pw1")])
    spool = src / "var/spool/mail/alice"
    spool.write_bytes(b"\n\n" + msg("one") + msg("two"))
    target = install_target(tmp_path / "target")
    domain = unique_domain("blank")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"users": [{"name": "alice"}]}})
    text = mailplan("plan", str(spec), check=True).stdout
    assert "Problems" not in text, text
    assert (f"  ! alice@{domain}: INBOX ({spool}): 2 empty lines before the first From_ "
            "line (no mail in them) read as framing\n") in text, text
    assert f"+ mailbox alice@{domain} INBOX" in text and "2 message" in text, text
    mailplan("apply", str(spec), "--auto-approve", check=True)
    with spool.open("ab") as fh:
        fh.write(msg("three"))
    assert "1 message" in mailplan("plan", str(spec), check=True).stdout
    mailplan("apply", str(spec), "--auto-approve", check=True)
    mailplan("verify", str(spec), check=True)
    home = target.tool("vuserinfo", "-d", f"alice@{domain}").stdout.decode().split("\n")[0]
    stored = sorted(f.read_bytes() for f in Path(home, "Maildir").glob("*/*")
                    if f.parent.name in ("new", "cur"))
    assert stored == [b"Subject: %s\n\nbody\n" % s for s in (b"one", b"three", b"two")]


class _AsNobody(LocalConnector):
    """The source read as a user who may not read every user's mail (a login without
    root nor sudo): each command runs as nobody."""

    def wrap(self, command: str) -> str:
        return ("setpriv --reuid=nobody --regid=nogroup --clear-groups /bin/sh -c "
                + shlex.quote(command))


def test_mail_the_source_login_may_not_see_is_a_problem_not_an_empty_mailbox(tmp_path):
    """Read as nobody: bob's spool sits in a directory nobody may search, two of alice's
    folder directories (one with a quote and an accent in its name) may not be listed.
    Each is a problem of its user, naming the place and find's reason; what could be
    seen is listed as before, and a missing ~/mail or spool is still no problem."""
    require(shutil.which("setpriv"), "setpriv (util-linux)")
    src = make_source(tmp_path / "source", [SourceAccount("alice", 1000, "Alice", "pw1"),
                                            SourceAccount("bob", 1001, "Bob", "pw2"),
                                            SourceAccount("carol", 1002, "Carol", "pw3")])
    spool = src / "var/spool/mail"
    (spool / "alice").write_bytes(msg("alice"))
    hidden = src / "var/spool/hidden"
    hidden.mkdir()
    (hidden / "bob").write_bytes(msg("bob"))
    mail = src / "home/alice/mail"
    for name in ("Work", "it's", "\u00e9t\u00e9"):
        (mail / name).mkdir(parents=True)
        (mail / name / "box").write_bytes(msg(name))
    readable_by_others(tmp_path, src)
    hidden.chmod(0o700)
    (mail / "it's").chmod(0o700)
    (mail / "\u00e9t\u00e9").chmod(0o700)
    home = src / "home"
    refs = [MailboxRef("example.com", "alice", "alice", str(spool / "alice"), str(mail),
                       str(home / "alice")),
            MailboxRef("example.com", "bob", "bob", str(hidden / "bob"),
                       str(home / "bob/mail"), str(home / "bob")),
            MailboxRef("example.com", "carol", "carol", str(spool / "carol"),
                       str(home / "carol/mail"), str(home / "carol"))]
    mailboxes, notes = list_source_mailboxes(_AsNobody("oldmail"), refs)
    assert sorted((m.user, m.name) for m in mailboxes) == [("alice", "INBOX"),
                                                            ("alice", "Work/box")]
    # carol has no spool: said (an empty INBOX), but no problem
    assert [(n.user, n.kind, n.path) for n in notes if n.kind != "problem"] == [
        ("carol", "info", str(spool / "carol"))]
    problems = [(n.user, n.kind, n.path, n.folder, n.message) for n in notes
                if n.kind == "problem"]
    first = problems[0][4].partition("': ")[0]  # find lists the directory in its order
    assert first in (f"find: '{mail}/\\303\\251t\\303\\251", f"find: '{mail}/it\\'s"), first
    assert problems == [
        ("alice", "problem", str(mail), None,
         f"{first}': Permission denied (and 1 more): folders there are not imported; "
         "mailplan must be able to read it (log in to the source as root, or set "
         "sudo: true)"),
        ("bob", "problem", str(hidden / "bob"), "INBOX",
         f"find: '{hidden}/bob': Permission denied: mail there is not imported; mailplan "
         "must be able to read it (log in to the source as root, or set sudo: true)")], \
        problems


def readable_by_others(tmp_path: Path, src: Path) -> None:
    """Let other users walk down to ``src`` and read it (root's test tree is 0700)."""
    for path in (tmp_path, *tmp_path.parents):
        if path != Path("/"):
            path.chmod(path.stat().st_mode | 0o005)
    for path in (src, *src.rglob("*")):
        path.chmod(path.stat().st_mode | (0o005 if path.is_dir() else 0o004))


def test_verify_fails_where_the_source_login_could_not_see_the_mail(tmp_path):
    """Migrated as root, verified as a login that may not list alice's ~/mail: verify
    cannot say her folders are on the target, so it fails naming the place."""
    require(shutil.which("setpriv"), "setpriv (util-linux)")
    src = make_source(tmp_path / "source", [SourceAccount("alice", 1000, "Alice", "pw1")])
    (src / "var/spool/mail/alice").write_bytes(msg("inbox"))
    mail = src / "home/alice/mail"
    mail.mkdir()
    (mail / "Work").write_bytes(msg("work"))
    domain = unique_domain("unseen")
    path = write_spec(tmp_path / "m.yaml", source_root=src,
                      target=install_target(tmp_path / "target"),
                      domains={domain: {"users": [{"name": "alice"}]}})
    mailplan("apply", str(path), "--auto-approve", check=True)
    spec = load_spec(path)
    state = State.load(state_path_for(spec))
    report = verify(spec, state, connectors={"oldmail": LocalConnector("oldmail"),
                                             "newmail": LocalConnector("newmail")})
    assert report.ok and not report.unmigrated, report
    readable_by_others(tmp_path, src)
    mail.chmod(0o700)
    report = verify(spec, state, connectors={"oldmail": _AsNobody("oldmail"),
                                             "newmail": LocalConnector("newmail")})
    assert not report.ok
    assert report.unmigrated == [
        f"alice@{domain}: find: '{mail}': Permission denied: folders there are not imported; "
        "mailplan must be able to read it (log in to the source as root, or set sudo: "
        "true)"]


def test_a_find_message_naming_no_starting_point_counts_for_each_and_says_perhaps():
    errors = find_messages(b"find: '/m/a/x': Permission denied\n"
                          b"find: '/gone': No such file or directory\n"
                          b"find: something else went wrong\n", ["/m/a", "/m/b"])
    assert errors == [("/m/a", "find: '/m/a/x': Permission denied", True),
                      ("/m/a", "find: something else went wrong", False),
                      ("/m/b", "find: something else went wrong", False)]
    ref = MailboxRef("example.com", "bob", "bob", "/spool/bob", "/m/b", "/home/bob")
    (note,) = unseen_notes(ref, {"/m/b": [(errors[2][1], False)]})
    assert note.message == (
        "find: something else went wrong: listing /m/b: folders there are perhaps not all "
        "imported; mailplan must be able to read it (log in to the source as root, "
        "or set sudo: true)")


def test_the_owner_of_a_mailbox_file_is_checked_only_when_read_as_root():
    """Read as root (whom no mode keeps out), a file of another account's is no mailbox
    of this user's; read as another login, the file modes kept out what the user's own
    mail reader could not open, and the owner is not checked (the sandbox demo, run by
    anyone, owns every file of its fake old host)."""
    ref = MailboxRef("example.com", "mallory", "mallory", "/s/mallory", "/h/mallory/mail",
                     "/h/mallory", uid=1001)
    files = {"/h/mallory/mail/stolen": (5, 0.0, 7, 1, 1000, 1),
             "/h/mallory/mail/own": (5, 0.0, 8, 1, 1001, 1), "/s/mallory": (5, 0.0, 9, 1, 0, 1)}
    for as_root in (True, False):
        found = _Found(files=files, linked={}, other={}, missing_dirs=set(), unseen={},
                       now=1e9, as_root=as_root)
        out: tuple[list, list] = ([], [])
        for path in files:
            found.add(out, ref, path.rpartition("/")[2], path)
        assert [m.path for m in out[0]] == [p for p in files if not (
            as_root and p.endswith("stolen"))]
        assert [n.kind for n in out[1]] == (["problem"] if as_root else [])


@pytest.mark.skipif(os.geteuid() != 0, reason="files of root's and alice's are made as root")
def test_a_hard_link_to_a_file_of_roots_is_not_imported(tmp_path):
    """Root's spool (mode 0600), hard-linked into a user's ~/mail (which any user may do
    where fs.protected_hardlinks is off, and cannot then read): read as root, mailplan
    would put root's mail in that user's new mailbox. It is a problem, nothing imported
    from it; a file of root's with a single link (put there by root) is still the user's,
    and so is a file of the user's own with more than one link."""
    src = make_source(tmp_path / "source", [SourceAccount("alice", 1000, "Alice", "pw1")])
    home = src / "home/alice"
    (home / "mail").mkdir(exist_ok=True)
    root_spool = src / "var/spool/mail/root"
    root_spool.write_bytes(msg("root's cron output"))
    root_spool.chmod(0o600)
    (home / "mail/rootmail").hardlink_to(root_spool)
    (home / "mail/archive").write_bytes(msg("put there by root"))
    (home / "mail/mine").write_bytes(msg("alice's own"))
    (home / "mail/mine-too").hardlink_to(home / "mail/mine")
    os.chown(home / "mail/mine", 1000, 1000)
    ref = MailboxRef("example.com", "alice", "alice", str(src / "var/spool/mail/alice"),
                     str(home / "mail"), str(home), uid=1000)
    mailboxes, notes = list_source_mailboxes(LocalConnector("oldmail"), [ref])
    assert sorted(m.folder for m in mailboxes) == ["archive", "mine", "mine-too"]
    (note,) = [n for n in notes if n.kind == "problem"]
    assert (note.path, note.folder) == (str(home / "mail/rootmail"), "rootmail")
    assert "is a hard link (2 links) to a file of root's, not of alice's (uid 1000)" in \
        note.message


def test_bytes_before_the_first_from_line_are_reported_and_nothing_is_dropped(tmp_path):
    """A spool with a line of junk before its first From_ line, and a folder file with
    more text before it than the plan's first look reads (64 KiB): each is a problem
    naming the file and why, nothing is imported from either (the bytes before are not
    silently dropped, nor the mail after them imported without them), and the other
    folder is imported all the same."""
    src = make_source(tmp_path / "source", [SourceAccount("alice", 1000, "Alice", "pw1")])
    spool = src / "var/spool/mail/alice"
    spool.write_bytes(b"garbage line\n" + msg("one"))
    folders = src / "home/alice/mail"
    folders.mkdir(parents=True)
    (folders / "Notes").write_bytes(b"x" * 70000 + b"\n" + msg("late"))
    (folders / "Work").write_bytes(msg("work"))
    target = install_target(tmp_path / "target")
    domain = unique_domain("lead")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"users": [{"name": "alice"}]}})
    text = mailplan("plan", str(spec), check=True).stdout
    problems = text.partition("Problems (these are not migrated):\n")[2]
    assert (f"  ! alice@{domain}: INBOX ({spool}) is not readable as mail: oldmail:{spool}: "
            "not an mbox: 13 bytes before the first From_ line") in problems, text
    assert (f"  ! alice@{domain}: Notes ({folders}/Notes) is not readable as mail") in problems
    assert f"+ mailbox alice@{domain} Work" in text
    assert f"+ mailbox alice@{domain} INBOX" not in text and "Notes\n" not in text
    # the Work folder is imported, and apply exits 3: two mailboxes are not migrated
    assert mailplan("apply", str(spec), "--auto-approve").returncode == 3
    home = Path(target.tool("vuserinfo", "-d", f"alice@{domain}").stdout.decode()
                .split("\n")[0])
    stored = {f.parent.parent.name: f.read_bytes() for f in (home / "Maildir").rglob("*")
              if f.is_file() and f.parent.name in ("new", "cur")}
    assert stored == {".Work": b"Subject: work\n\nbody\n"}


def test_a_folders_directory_the_login_may_not_reach_is_not_called_missing(tmp_path):
    """A user's folders: below a directory the source login may not search (bob's 0700
    home, read as nobody): test -d is false there as for a missing one, and the plan
    said "is missing on the source: check that path" beside find's "Permission denied",
    sending the administrator after a typo that is not there. The same command now tells
    the two apart: bob's (there) and carol's (not there, which nobody cannot know) cannot
    be read by nobody, naming the directory it may not search; dave's, under a directory
    it may search, is missing; read as root only carol's and dave's are, and bob's has
    no note."""
    require(shutil.which("setpriv"), "setpriv (util-linux)")
    src = make_source(tmp_path / "source", [SourceAccount("bob", 1000, "Bob", "pw1")])
    (src / "home/bob/Mail").mkdir()
    (src / "home/bob/Mail/Work").write_bytes(msg("work"))
    (src / "home/carol").mkdir()
    readable_by_others(tmp_path, src)
    for home in ("bob", "carol"):
        (src / "home" / home).chmod(0o700)
    dave = src / "home/dave's $HOME x/Mail"
    refs = [MailboxRef("example.com", user, user, str(src / "var/spool/mail" / user), folders,
                       str(src / "home" / user), folders_given=True,
                       user_key=f"domains['example.com'].users[{i}]")
            for i, (user, folders) in enumerate((("bob", str(src / "home/bob/Mail")),
                                                 ("carol", str(src / "home/carol/Mail")),
                                                 ("dave", str(dave))))]

    def said(conn: LocalConnector) -> list[tuple[str, str, bool, bool]]:
        _mailboxes, notes = list_source_mailboxes(conn, refs)
        return [(n.user, n.message, n.unseen, n.wrong_path) for n in notes
                if n.kind == "problem" and n.path in {r.folders for r in refs}]

    def shut(user: str, i: int) -> tuple[str, str, bool, bool]:
        return (user, f"{src}/home/{user}/Mail (the folders directory, domains['example.com']."
                f"users[{i}].folders in the spec) cannot be read by nobody (permission: "
                f"{src}/home/{user} may not be searched by it, whether the directory is there "
                "or not); no folder is imported; mailplan must be able to read it (log in to "
                "the source as root, or set sudo: true)", True, False)

    def missing(user: str, path: str, i: int) -> tuple[str, str, bool, bool]:
        return (user, f"{path} (the folders directory, domains['example.com'].users[{i}]."
                "folders in the spec) is missing on the source: no folder is imported; check "
                "that path", False, True)

    assert said(_AsNobody("oldmail")) == [shut("bob", 0), shut("carol", 1),
                                          missing("dave", str(dave), 2)]
    assert said(LocalConnector("oldmail")) == [
        missing("carol", f"{src}/home/carol/Mail", 1), missing("dave", str(dave), 2)]
