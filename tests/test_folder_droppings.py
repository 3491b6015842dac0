"""What programs leave under ~/mail that is no mail (dovecot's .imap/ index, .DS_Store,
an editor's swap file) is left out and said once per user, not a 'not an mbox' problem
each (apply exited 3 on a server that also ran dovecot); a file that starts with a From_
line is mail whatever its name, and any other file that is no mbox stays a problem. A
Maildir copied without its tmp/ is one problem naming it, not one per message file."""

from __future__ import annotations

from pathlib import Path

from migration import (
    SourceAccount,
    install_target,
    mailplan,
    make_source,
    unique_domain,
    write_spec,
)

from mailplan.connectors.local import LocalConnector
from mailplan.facts.droppings import _heads, dropping, lock_links
from mailplan.facts.mailboxes import MailboxRef, list_source_mailboxes
from mailplan.facts.notes import MAILDIR_NOTE


def msg(subject: str) -> bytes:
    return f"From b@x.example Mon Nov  2 10:00:00 2026\nSubject: {subject}\n\nbody\n\n".encode()


INDEX = b"\x01\x02\x00\x00dovecot index\x00"


def droppings(folders: Path) -> None:
    """bob's ~/mail: two folders, dovecot's index and subscriptions, Finder's and an
    editor's files, an editor's backup that is mail, an unknown non-mail file."""
    (folders / ".imap/INBOX").mkdir(parents=True)
    (folders / ".imap/Sent").mkdir()
    for name in ("INBOX/dovecot.index", "INBOX/dovecot.index.log", "Sent/dovecot.index"):
        (folders / ".imap" / name).write_bytes(INDEX)
    (folders / ".imap/Sent/dovecot-uidlist").write_bytes(b"3 V1 N4\n")
    (folders / "Sent").write_bytes(msg("sent"))
    (folders / "Work").write_bytes(msg("work"))
    (folders / ".subscriptions").write_bytes(b"Sent\nWork\n")
    (folders / ".mailboxlist").write_bytes(b"")
    (folders / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + b"\x00" * 20)
    (folders / ".Work.swp").write_bytes(b"b0VIM 8.2\x00\x00")
    (folders / "Work~").write_bytes(msg("backup of work"))  # mail: imported


def test_dropping_names():
    assert dropping(".imap/INBOX/dovecot.index") == "dovecot's index"
    assert dropping(".imap") is None  # a file named so is no index directory
    assert dropping("a/.DS_Store") == "macOS Finder's"
    assert dropping("._Sent") == "macOS Finder's"
    assert dropping(".Sent.swp") == dropping("Sent~") == dropping("#Sent#") == "an editor's"
    assert dropping(".subscriptions") == dropping("dovecot-uidvalidity") == "dovecot's"
    assert dropping("dovecot-uidvalidity.5f3a1b2c") == dropping("x/dovecot.index.log") \
        == dropping("dovecot.list.index") == dropping("dovecot-keywords") == "dovecot's"
    assert dropping(".mailboxlist") == "UW-IMAP's subscription list"
    assert dropping(".mh_sequences") == "MH's"
    for name in ("Sent", ".old", "swp", ".swp", "~", "notes.txt", "imap/x", "dovecot-notes",
                 "dovecot.conf"):
        assert dropping(name) is None, name


def test_heads_are_read_from_one_head_per_chunk():
    """head -v -c 5's output: a header per file it read (none for one it could not: b),
    at most 5 bytes each; only a part that is exactly 'From ' is mail; bytes that look
    like a header, or a part cut short, are read as they are; output that cannot be
    read so leaves the rest as folders."""
    paths = ["/m/a", "/m/b", "/m/c\nx", "/m/d", "/m/e", "/m/f"]
    out = (b"==> /m/a <==\n\x00\x01" + b"\n==> /m/c\nx <==\nFrom "
           + b"\n==> /m/d <==\n\n==> " + b"\n==> /m/e <==\n" + b"\n==> /m/f <==\nFrom")
    assert _heads(out, paths) == {"/m/a", "/m/d", "/m/e", "/m/f"}
    assert _heads(b"==> /m/a <==\n12345garbage", paths) == set()
    assert _heads(b"", paths) == set()


def test_programs_files_are_left_out_with_one_note_and_mail_is_kept(tmp_path):
    src = make_source(tmp_path / "source", [SourceAccount("bob", 1000, "Bob", "pw")])
    folders = src / "home/bob/mail"
    folders.mkdir()
    droppings(folders)
    (folders / "._Old").write_bytes(msg("a Finder name, but mail"))
    ref = MailboxRef("example.com", "bob", "bob", str(src / "var/spool/mail/bob"),
                     str(folders), str(src / "home/bob"))
    mailboxes, notes = list_source_mailboxes(LocalConnector("oldmail"), [ref])
    assert sorted(m.folder for m in mailboxes) == ["._Old", "Sent", "Work", "Work~"]
    said = [n for n in notes if n.path == str(folders)]
    assert [(n.kind, n.message) for n in said] == [(
        "info", f"{folders}: 8 file(s) left out, programs' own files that hold no mail "
        "(named so, none starts with a From_ line): macOS Finder's .DS_Store; an "
        "editor's .Work.swp; dovecot's index .imap/ (4 files); UW-IMAP's subscription "
        "list .mailboxlist; dovecot's .subscriptions")]
    assert [n for n in notes if n.kind != "info"] == []


def test_plan_apply_and_verify_with_programs_files_under_mail(tmp_path):
    """apply exits 0 where only programs' own files are left out (plan -v and verify say
    them), and 3 once a file that is neither theirs nor an mbox is there."""
    src = make_source(tmp_path / "source", [SourceAccount("bob", 1000, "Bob", "pw")])
    (src / "var/spool/mail/bob").write_bytes(msg("inbox"))
    folders = src / "home/bob/mail"
    folders.mkdir()
    droppings(folders)
    domain = unique_domain("drop")
    spec = write_spec(tmp_path / "m.yaml", source_root=src,
                      target=install_target(tmp_path / "target"),
                      domains={domain: {"users": [{"name": "bob"}]}})
    said = f"bob@{domain}: {folders}: 8 file(s) left out, programs' own files"
    text = mailplan("plan", str(spec), "-v", check=True).stdout
    assert "Problems" not in text and "not an mbox" not in text, text
    assert f"  = {said}" in text.partition("Unchanged:\n")[2], text
    for folder in ("INBOX", "Sent", "Work", "Work~"):
        assert f"+ mailbox bob@{domain} {folder}\n" in text, text
    assert mailplan("apply", str(spec), "--auto-approve").returncode == 0
    res = mailplan("verify", str(spec))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"  ! {said}" in res.stdout, res.stdout
    (folders / "notes.txt").write_bytes(b"call the bank\n")  # no program's: a problem
    text = mailplan("plan", str(spec)).stdout
    assert f"notes.txt ({folders}/notes.txt) is not readable as mail" in text.partition(
        "Problems (these are not migrated):\n")[2], text
    assert mailplan("apply", str(spec), "--auto-approve").returncode == 3


def test_a_maildir_copied_without_tmp_is_one_problem(tmp_path):
    """cur and new without tmp (a copy that dropped the empty tmp/), and a cur/ alone
    holding Maildir message files, are each one problem naming the Maildir; a directory
    new holding mbox folders stays a directory of folders."""
    src = make_source(tmp_path / "source", [SourceAccount("bob", 1000, "Bob", "pw")])
    folders = src / "home/bob/mail"
    for sub in ("lists/cur", "lists/new", "old/cur", "new"):
        (folders / sub).mkdir(parents=True)
    for i, sub in enumerate(("lists/cur", "lists/cur", "lists/new", "old/cur")):
        (folders / sub / f"17000000{i}.M1P1.oldhost:2,S").write_bytes(b"Subject: x\n\nx\n")
    (folders / "new/2001").write_bytes(msg("an mbox folder in a directory new"))
    ref = MailboxRef("example.com", "bob", "bob", str(src / "var/spool/mail/bob"),
                     str(folders), str(src / "home/bob"))
    mailboxes, notes = list_source_mailboxes(LocalConnector("oldmail"), [ref])
    assert [m.folder for m in mailboxes] == ["new/2001"]
    address = "bob@example.com"
    assert [(n.kind, n.path, n.message) for n in notes if n.kind != "info"] == [
        ("problem", f"{folders}/lists", f"{folders}/lists " + MAILDIR_NOTE.format(
            has="cur and new directories; its tmp is missing", count=3, address=address)),
        ("problem", f"{folders}/old", f"{folders}/old " + MAILDIR_NOTE.format(
            has="a cur directory of Maildir message files; its new and tmp are missing",
            count=1, address=address))]


def test_emacs_lock_links_are_named_as_droppings():
    """emacs's lock: a link .#NAME to USER@HOST.PID[:BOOT_TIME], which names nothing
    listed beside it; any other link stays a link (a problem)."""
    linked = {"/m/.#Work": "alice@mail.example.org.4242:1764000000",
              "/m/a/.#Sent": "bob@oldhost.77",  # emacs that did not know the boot time
              "/m/.#Old": "alice@host.1:2",  # names a file listed beside it
              "/m/.#Notes": "/home/alice/notes",  # a path, no lock text
              "/m/.#Lists": "../alice@host.1:2",
              "/m/.#": "alice@host.1:2",
              "/m/Work.lnk": "alice@host.1:2",  # no lock's name
              "/m/.#Spam": "alice@host:2",  # no pid
              "/m/.#Ham": "alice.1:2"}  # no user@
    assert lock_links(linked, {"/m/alice@host.1:2": 0}) == {"/m/.#Work", "/m/a/.#Sent"}
    assert dropping(".#Work") == "an editor's"


def test_an_emacs_lock_link_under_mail_is_a_dropping_not_a_problem(tmp_path):
    """An emacs lock link in ~/mail was a 'symbolic link: not followed' problem (apply
    exited 3). It is left out with programs' own files, in their one note; a link that
    only has the lock's name, or only its text, stays a problem."""
    src = make_source(tmp_path / "source", [SourceAccount("bob", 1000, "Bob", "pw")])
    folders = src / "home/bob/mail"
    folders.mkdir()
    (folders / "Work").write_bytes(msg("work"))
    (folders / ".#Work").symlink_to("bob@oldmail.example.org.31337:1764000000")
    ref = MailboxRef("example.com", "bob", "bob", str(src / "var/spool/mail/bob"),
                     str(folders), str(src / "home/bob"))
    mailboxes, notes = list_source_mailboxes(LocalConnector("oldmail"), [ref])
    assert [m.folder for m in mailboxes] == ["Work"]
    assert [(n.kind, n.message) for n in notes if n.path == str(folders)] == [(
        "info", f"{folders}: 1 file(s) left out, programs' own files that hold no mail "
        "(named so, none starts with a From_ line): an editor's .#Work")]
    assert [n for n in notes if n.kind != "info"] == []

    (folders / ".#Sent").symlink_to(folders / "Work")  # a lock's name, a link to mail
    (folders / "Lists").symlink_to("bob@oldmail.example.org.31337:1764000000")
    _mailboxes, notes = list_source_mailboxes(LocalConnector("oldmail"), [ref])
    assert sorted(n.path for n in notes if n.kind == "problem") == [
        f"{folders}/.#Sent", f"{folders}/Lists"]
    assert all("is a symbolic link: not followed" in n.message
               for n in notes if n.kind == "problem")
