"""The weeks around a cutover with a real IMAP reader: mailplan applied days before, the
users already reading their mail on the new server through dovecot (over the migrated
Maildirs, logging in with their vpopmail password) while mail still arrives in the old
server's spools and folders, and applies keep carrying it over."""

from __future__ import annotations

import imaplib
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from dovecot_fixture import start_dovecot
from migration import (
    SourceAccount,
    install_target,
    mailplan,
    make_source,
    unique_domain,
    write_spec,
)

PASSWORD = "Old-Pw-1"


def msg(day: int, subject: str) -> bytes:
    return (f"From x@old.example Mon Nov {day:2d} 10:00:00 2026\nFrom: x@old.example\n"
            f"Subject: {subject}\n\nbody {subject}\n\n").encode()


def settle(path: Path) -> None:
    """Make ``path`` look written an hour ago (not a delivery still in progress)."""
    os.utime(path, (time.time() - 3600,) * 2)


@pytest.fixture
def migrated():
    """alice's INBOX and folder ``Old`` applied to the stand-in target (local hosts),
    and dovecot serving her Maildir with the password hash vpopmail stores."""
    work = Path(tempfile.mkdtemp(prefix="mailplan-cutover-"))
    os.chmod(work, 0o755)  # dovecot's processes run as vpopmail: traversable
    daemon = None
    try:
        src = make_source(work / "source", [SourceAccount("alice", 1000, "Alice", PASSWORD)])
        (src / "var/spool/mail/alice").write_bytes(msg(1, "in1"))
        (src / "home/alice/mail").mkdir(parents=True)
        (src / "home/alice/mail/Old").write_bytes(msg(2, "old1"))
        settle(src / "var/spool/mail/alice")
        settle(src / "home/alice/mail/Old")
        target = install_target(work / "target")
        domain = unique_domain()
        spec = write_spec(work / "m.yaml", source_root=src, target=target,
                          domains={domain: {"import": {"uid_min": 1000}}})
        mailplan("apply", str(spec), "--auto-approve", check=True)
        ddir = target.tool("vdominfo", "-d", domain).stdout.decode().split("\n")[0]
        accounts = []
        for line in Path(ddir, "vpasswd").read_text().splitlines():
            name, hashed, _uid, _gid, _gecos, udir, _quota = line.split(":")
            st = Path(udir).stat()
            accounts.append(f"{name}@{domain}:{{CRYPT}}{hashed}:{st.st_uid}:{st.st_gid}::"
                            f"{udir}::")
        daemon = start_dovecot(work / "dovecot", {}, uid=0, gid=0, accounts=accounts)
        yield src, spec, daemon, f"alice@{domain}"
    finally:
        if daemon is not None:
            daemon.stop()
        shutil.rmtree(work, ignore_errors=True)


def subjects(imap: imaplib.IMAP4) -> dict[str, list[str]]:
    """Each folder's message subjects, as the IMAP server lists them."""
    typ, lines = imap.list()
    assert typ == "OK", lines
    out = {}
    for line in lines:
        name = line.decode().split(' "." ', 1)[1].strip('"')
        typ, data = imap.select(f'"{name}"', readonly=True)
        assert typ == "OK", data
        found = []
        if int(data[0]):
            typ, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            found = [re.sub(rb"\s+", b" ", item[1]).decode().strip()[len("Subject: "):]
                     for item in data if isinstance(item, tuple)]
        out[name] = sorted(found)
    return out


def relogin(imap: imaplib.IMAP4, port: int, address: str) -> imaplib.IMAP4:
    """A new session (as a mail program that reconnects): dovecot's open session may
    keep the folder list it had."""
    imap.logout()
    imap = imaplib.IMAP4("127.0.0.1", port)
    imap.login(address, PASSWORD)
    return imap


def test_a_folder_renamed_on_the_new_server_is_made_again_for_new_mail_and_the_plan_says_so(
        migrated):
    """The user renames ``Old`` to ``Archive`` over IMAP on the new server; on the old
    server mail is still filed into ``Old``. The next plan's ``+ mailbox ... Old`` says
    the folder is no longer on the target and is made again holding only that mail (it
    said only how many messages it imports, as if into the folder the user has); apply
    then makes ``Old`` with the new message alone: nothing in ``Archive`` is copied again
    or lost, and a later plan has nothing to do."""
    src, spec, daemon, address = migrated
    imap = imaplib.IMAP4("127.0.0.1", daemon.port)
    imap.login(address, PASSWORD)
    try:
        typ, data = imap.rename("Old", "Archive")
        assert typ == "OK", data
        assert subjects(imap) == {"INBOX": ["in1"], "Archive": ["old1"]}
        with open(src / "home/alice/mail/Old", "ab") as folder:  # pine on the old server
            folder.write(msg(3, "old2"))
        settle(src / "home/alice/mail/Old")
        plan = mailplan("plan", str(spec), check=True).stdout
        assert (f"  + mailbox {address} Old\n      1 message(s), 45B to import into Old "
                "(read from byte 90: unchanged before); the user deleted or renamed the "
                "folder on the new server: made again with only these (the 1 imported "
                "before are not brought back)\n") in plan, plan
        assert "INBOX" not in plan, plan
        mailplan("apply", str(spec), "--auto-approve", check=True)
        imap = relogin(imap, daemon.port, address)
        assert subjects(imap) == {
            "INBOX": ["in1"], "Archive": ["old1"], "Old": ["old2"]}
        again = mailplan("plan", str(spec), check=True).stdout
        assert "No changes." in again, again
    finally:
        imap.logout()


def test_a_folder_still_on_the_new_server_gets_its_new_mail_without_that_note(migrated):
    """The note is for a folder that is gone: new mail for a folder the user kept (and
    read in over IMAP) is planned as before, and lands in it."""
    src, spec, daemon, address = migrated
    imap = imaplib.IMAP4("127.0.0.1", daemon.port)
    imap.login(address, PASSWORD)
    try:
        assert subjects(imap) == {"INBOX": ["in1"], "Old": ["old1"]}
        with open(src / "home/alice/mail/Old", "ab") as folder:
            folder.write(msg(3, "old2"))
        settle(src / "home/alice/mail/Old")
        plan = mailplan("plan", str(spec), check=True).stdout
        assert (f"  + mailbox {address} Old\n      1 message(s), 45B to import into Old "
                "(read from byte 90: unchanged before)\n") in plan, plan
        mailplan("apply", str(spec), "--auto-approve", check=True)
        imap = relogin(imap, daemon.port, address)
        assert subjects(imap) == {
            "INBOX": ["in1"], "Old": ["old1", "old2"]}
    finally:
        imap.logout()
