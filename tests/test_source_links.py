"""Symbolic links on the source never let one user's mail into another's Maildir.

mailplan reads the source as root: a user who replaces a folder file or the folders
directory with a link to someone else's spool must get nothing from it."""

from __future__ import annotations

import os
import subprocess
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
from pipes_wait import at_once

from mailplan.apply import apply_plan
from mailplan.engine import make_plan, state_path_for
from mailplan.errors import SourceChanged
from mailplan.facts.mailboxes import _FILE_FORMAT, _LINK_FORMAT, _parse_find
from mailplan.spec import load_spec
from mailplan.state import State


def msg(subject: str) -> bytes:
    return f"From b@x.example Mon Nov  2 10:00:00 2026\nSubject: {subject}\n\nbody\n\n".encode()


def subjects(target, address: str) -> list[bytes]:
    """The Subject lines of every message in the user's Maildir."""
    home = target.tool("vuserinfo", "-d", address).stdout.decode().split("\n")[0]
    return sorted(line for f in Path(home, "Maildir").rglob("*")
                  if f.is_file() and f.parent.name in ("new", "cur")
                  for line in f.read_bytes().splitlines() if line.startswith(b"Subject"))


def two_users(tmp_path: Path):
    src = make_source(tmp_path / "source", [SourceAccount("alice", 1000, "Alice", "pw1"),
                                            SourceAccount("mallory", 1001, "Mallory", "pw2")])
    (src / "var/spool/mail/alice").write_bytes(msg("ALICE-PRIVATE"))
    (src / "var/spool/mail/mallory").write_bytes(msg("mallory's own"))
    return src, install_target(tmp_path / "target"), unique_domain("links")


def test_a_linked_folders_directory_is_not_followed_even_written_with_a_slash(tmp_path):
    src, target, domain = two_users(tmp_path)
    os.symlink(src / "var/spool/mail", src / "home/mallory/mail")  # mallory's doing
    path = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"users": [{"name": "mallory"}]}})
    data = yaml.safe_load(path.read_text())
    data["source"]["folders"] = "mail/"
    path.write_text(yaml.safe_dump(data))
    spec = load_spec(path)
    state = State.load(state_path_for(spec))
    planned = make_plan(spec, state)
    try:
        apply_plan(planned, state, prune=False)
    finally:
        planned.close()
    assert subjects(target, f"mallory@{domain}") == [b"Subject: mallory's own"]


@pytest.mark.parametrize("where", ["home/mallory/mail/stolen", "home/mallory/mbox",
                                   "var/spool/mail/mallory"])
def test_a_hard_link_to_another_users_spool_is_not_imported_as_theirs(tmp_path, where):
    """Where the old server's kernel leaves fs.protected_hardlinks off, mallory may hard
    link alice's spool into his ~/mail, as ~/mbox, or (in a spool directory anyone may
    write) as his own spool. It is the very file listed, so no link or inode check sees
    it; read as root, it would be imported as mallory's mail. A mailbox file neither
    the account's nor root's is a problem naming its owner, and nothing of it is
    imported; alice's own mail goes to alice."""
    src, target, domain = two_users(tmp_path)
    spool = src / "var/spool/mail/alice"
    os.chown(spool, 1000, 1000)
    (src / "home/mallory/mail").mkdir()
    (src / "home/mallory/mail/own").write_bytes(msg("mallory's folder"))
    os.chown(src / "home/mallory/mail/own", 1001, 1001)
    (src / where).unlink(missing_ok=True)
    os.link(spool, src / where)
    path = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"users": [{"name": "alice"}, {"name": "mallory"}]}})
    spec = load_spec(path)
    state = State.load(state_path_for(spec))
    planned = make_plan(spec, state)
    try:
        said = [p.message for p in planned.plan.problems if p.user == "mallory"]
        assert said == [f"{src / where} belongs to uid 1000, not to mallory (uid 1001) nor "
                        "root: nothing is imported from it (another account's mail, or a "
                        "hard link to it; if it is this user's, chown it to them on the old "
                        "server)"], planned.plan.problems
        apply_plan(planned, state, prune=False)
    finally:
        planned.close()
    assert b"Subject: ALICE-PRIVATE" not in b"".join(subjects(target, f"mallory@{domain}"))
    assert b"Subject: mallory's folder" in subjects(target, f"mallory@{domain}")
    assert subjects(target, f"alice@{domain}") == [b"Subject: ALICE-PRIVATE"]


def test_a_folder_file_swapped_for_a_link_after_the_plan_gives_nothing(tmp_path):
    """The plan lists mallory's ~/mail/notes, a regular file as long as alice's spool;
    before apply reads it (the confirmation prompt is time enough), mallory makes it a
    link to alice's spool. The read opens the file once and checks it is the one listed
    (device and inode): the import stops with SourceChanged, nothing of alice's arrives,
    and the next plan does not list a link at all."""
    src, target, domain = two_users(tmp_path)
    secret = msg("ALICE-PRIVATE-1") + msg("ALICE-PRIVATE-2")
    (src / "var/spool/mail/alice").write_bytes(secret)
    (src / "home/mallory/mail").mkdir()
    notes = src / "home/mallory/mail/notes"
    notes.write_bytes(msg("decoy").ljust(len(secret) - 2, b"x") + b"\n\n")
    os.utime(notes, (1e9, 1e9))  # settled
    path = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"users": [{"name": "mallory"}]}})
    spec = load_spec(path)
    state = State.load(state_path_for(spec))
    planned = make_plan(spec, state)
    assert any(c.kind == "mailbox" and "notes" in c.address + (c.item or "")
               for c in planned.plan.changes)
    notes.unlink()
    notes.symlink_to(src / "var/spool/mail/alice")
    try:
        with pytest.raises(SourceChanged, match="no longer the file the plan listed"):
            apply_plan(planned, state, prune=False)
    finally:
        planned.close()
    state = State.load(state_path_for(spec))
    planned = make_plan(spec, state)
    try:
        assert not any("notes" in c.address + (c.item or "") for c in planned.plan.changes)
        apply_plan(planned, state, prune=False)
    finally:
        planned.close()
    assert subjects(target, f"mallory@{domain}") == [b"Subject: mallory's own"]


def test_apply_reads_only_the_file_the_listing_found(tmp_path):
    """apply's read of a mailbox (and each of its checks) opens the file once and goes on
    only if it is the one listed (device and inode): swapped for a link between the
    listing and the read, it gives nothing."""
    from mailplan.connectors.local import LocalConnector
    from mailplan.facts.mailboxes import MailboxRef, list_source_mailboxes
    from mailplan.mail.snapshot import SnapshotStream

    spool = tmp_path / "spool"
    spool.write_bytes(msg("mine"))
    other = tmp_path / "other"
    other.write_bytes(msg("someone else's"))
    conn = LocalConnector("oldmail")
    (mb,), _notes = list_source_mailboxes(conn, [MailboxRef("example.com", "u", "u",
                                                            str(spool), str(tmp_path / "no"))])
    assert mb.ident == (os.stat(spool).st_dev, os.stat(spool).st_ino)

    def read() -> bytes:
        stream = SnapshotStream(conn, str(spool), 0, mb.size, step="test", ident=mb.ident)
        data = b""
        while chunk := stream.read(65536):
            data += chunk
        return data

    assert read() == msg("mine")
    spool.unlink()
    spool.symlink_to(other)
    with pytest.raises(SourceChanged, match="no longer the file the plan listed"):
        read()


def test_a_mailbox_swapped_for_a_named_pipe_is_refused_not_waited_on(tmp_path):
    """A spool or folder file replaced with a named pipe between the listing and apply's
    read (mkfifo needs no privilege; the confirmation prompt is time enough): opening a
    pipe waits for a writer, for ever. The read refuses it at once, as any file that is
    not the one listed, instead of holding apply."""
    from mailplan.connectors.local import LocalConnector
    from mailplan.facts.mailboxes import MailboxRef, list_source_mailboxes
    from mailplan.mail.snapshot import SnapshotStream

    spool = tmp_path / "spool"
    spool.write_bytes(msg("mine"))
    conn = LocalConnector("oldmail")
    (mb,), _notes = list_source_mailboxes(conn, [MailboxRef("example.com", "u", "u",
                                                            str(spool), str(tmp_path / "no"))])
    spool.unlink()
    os.mkfifo(spool)

    def read() -> bytes:
        stream = SnapshotStream(conn, str(spool), 0, mb.size, step="test", ident=mb.ident)
        return stream.read(65536)

    outcome = at_once(read, [spool])
    assert isinstance(outcome, SourceChanged), outcome
    assert "no longer the file the plan listed" in str(outcome)


def test_mail_behind_a_link_is_named_in_the_plan_not_passed_over(tmp_path):
    """A folder file, or the whole folders directory, moved to another disk and linked
    back: not followed, and so not imported, but the plan says so (a problem, which
    verify lists too) instead of leaving that mail on the old server unmentioned. A
    ~/mail/INBOX linked to the user's own spool (as made for pine) is only noted."""
    src, target, domain = two_users(tmp_path)
    elsewhere = tmp_path / "disk2"
    elsewhere.mkdir()
    (elsewhere / "archive").write_bytes(msg("archived"))
    (elsewhere / "mallory-mail").mkdir()
    (elsewhere / "mallory-mail/Old").write_bytes(msg("old"))
    mail = src / "home/alice/mail"
    mail.mkdir()
    (mail / "Work").write_bytes(msg("work"))
    (mail / "Archive").symlink_to(elsewhere / "archive")
    (mail / "INBOX").symlink_to(src / "var/spool/mail/alice")
    (mail / ".hidden").symlink_to(elsewhere / "archive")
    (src / "home/mallory/mail").symlink_to(elsewhere / "mallory-mail")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    plan = mailplan("plan", str(spec), "-v", check=True).stdout
    problems = plan.partition("Problems (these are not migrated):")[2].partition(
        "Unchanged:")[0]
    assert (f"alice@{domain}: {mail}/Archive (a folder) is a symbolic link: not followed "
            "(mailplan reads the source as root), so no mail behind it is imported") \
        in problems, plan
    assert (f"mallory@{domain}: {src}/home/mallory/mail (the folders directory) is a "
            "symbolic link: not followed") in problems, plan
    assert f"{mail}/INBOX is a symbolic link to the spool, whose mail is imported" in plan
    assert f"{mail}/INBOX" not in problems
    # a hidden one too: UW-IMAP lists hidden files of ~/mail as folders
    assert f"{mail}/.hidden (a folder) is a symbolic link: not followed" in problems, plan
    assert f"+ mailbox alice@{domain} Work" in plan and "Archive\n" not in plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert subjects(target, f"alice@{domain}") == [b"Subject: ALICE-PRIVATE", b"Subject: work"]
    verify = mailplan("verify", str(spec)).stdout
    assert f"{mail}/Archive (a folder) is a symbolic link" in verify, verify


def test_one_walk_lists_files_and_links_whatever_their_names_hold(tmp_path):
    """The listing's find prints files and links in one walk; a tab in a link's name or
    in where it points splits neither (each is its own NUL-ended field)."""
    (tmp_path / "Work\tplain").write_bytes(b"12345")
    (tmp_path / "Tab\tlink").symlink_to("dest\there")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/Old").symlink_to("/elsewhere/old")
    out = subprocess.run(
        ["find", str(tmp_path), "(", "-type", "f", "-printf", _FILE_FORMAT, ")", "-o",
         "(", "-type", "l", "-printf", _LINK_FORMAT, ")"],
        check=True, capture_output=True).stdout
    files, links, _others = _parse_find(out)
    assert [(size, owner, nlink, path) for size, _m, _c, _i, _d, owner, nlink, path
            in files] == [
        (5, os.getuid(), 1, f"{tmp_path}/Work\tplain")]
    assert sorted(links) == [(f"{tmp_path}/Tab\tlink", "dest\there"),
                             (f"{tmp_path}/sub/Old", "/elsewhere/old")]


def test_a_plans_spec_digest_is_of_the_spec_it_planned_not_of_the_file_now(tmp_path):
    """make_plan read the spec's file again for the plan's digest: a spec replaced after
    load_spec gave a saved plan the digest of a file never validated nor planned, and an
    apply of that plan would have taken the new file for the one reviewed."""
    import hashlib

    src, target, domain = two_users(tmp_path)
    path = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"users": [{"name": "alice"}]}})
    planned_bytes = path.read_bytes()
    spec = load_spec(path)
    path.write_bytes(planned_bytes.replace(b"alice", b"mallory"))  # swapped after the read
    planned = make_plan(spec, State.load(state_path_for(spec)))
    planned.close()
    assert planned.plan.spec_digest == hashlib.sha256(planned_bytes).hexdigest()
