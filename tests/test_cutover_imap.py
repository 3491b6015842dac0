"""The weeks around a cutover with a real IMAP reader: mailplan applied days before, the
users already reading their mail on the new server through dovecot (over the migrated
Maildirs, logging in with their vpopmail password) while mail still arrives in the old
server's spools and folders, and applies keep carrying it over."""

from __future__ import annotations

import imaplib
import json
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
    and dovecot serving her Maildir with the password hash vpopmail stores: the source,
    the spec, dovecot, her address and the target."""
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
        yield src, spec, daemon, f"alice@{domain}", target
    finally:
        if daemon is not None:
            daemon.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_a_password_changed_on_the_new_server_is_not_set_back_without_the_plan_saying_so(
        migrated):
    """The user changes the password on the new server (vpopmail's vpasswd, as its web
    form or an admin does) days before the cutover, the old server's staying as it was: the
    next plan's ``~ password`` says the new server's was changed there since mailplan set
    this one and that apply sets the old one back, naming ``create_only`` (it said only
    ``from shadow``, as for a password changed with passwd on the old server). A password
    then changed on the old server too is planned without those words."""
    src, spec, _daemon, address, target = migrated
    res = target.tool("vpasswd", address, "New-Pw-2")
    assert res.returncode == 0, res
    assert target.login_ok(address, "New-Pw-2")
    plan = mailplan("plan", str(spec), check=True).stdout
    assert (f"  ~ password {address}: (sensitive) -> (sensitive)\n      from shadow "
            "(SHA-512 crypt); the new server's password was changed there since mailplan "
            "set this one (the old server's is the same): apply sets the old one back; "
            "target.passwords: create_only in the spec keeps the new server's\n") in plan, plan
    assert "New-Pw-2" not in plan
    # among the warnings too: a quiet apply (cron) lists them in its log
    warning = (f"  ! {address}: password changed on the new server since mailplan set it: "
               "apply sets the old server's back (target.passwords: create_only keeps the "
               "new one)\n")
    assert "Warnings (migrated all the same; look at them):\n" + warning in plan, plan
    shadow = src / "etc/shadow"  # passwd on the old server
    shadow.write_text(shadow.read_text().replace(
        shadow.read_text().split("alice:")[1].split(":")[0],
        SourceAccount("alice", 1000, password="Old-Pw-3").hash()))
    plan = mailplan("plan", str(spec), check=True).stdout
    assert (f"  ~ password {address}: (sensitive) -> (sensitive)\n      from shadow "
            "(SHA-512 crypt)\n") in plan, plan
    assert "password changed on the new server" not in plan, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert target.login_ok(address, "Old-Pw-3")
    res = target.tool("vpasswd", address, "New-Pw-4")  # changed on the new server again
    assert res.returncode == 0, res
    plan = mailplan("plan", str(spec), check=True).stdout
    assert "since mailplan set this one" in plan, plan
    quiet = mailplan("apply", str(spec), "--auto-approve", "--quiet", check=True)
    log_path = sorted(spec.with_name("m.state.json.logs").glob("apply-*.log"))[-1]
    # on stderr, which cron mails: the warnings are otherwise only in the log
    assert quiet.stdout == "" and quiet.stderr == (
        "Passwords set back: 1 user(s) had changed theirs on the new server since mailplan "
        "set it, and have the old server's again (listed in the log "
        f"{log_path}; target.passwords: create_only keeps a password changed there).\n"
        ), quiet
    assert target.login_ok(address, "Old-Pw-3")
    quiet = mailplan("apply", str(spec), "--auto-approve", "--quiet", check=True)
    assert quiet.stderr == "", quiet  # said once: the password is mailplan's again
    log = log_path.read_text()
    assert "1 warning(s), migrated all the same:" in log, log
    assert warning.rstrip("\n") in log, log  # each log line after its timestamp
    assert "New-Pw-4" not in log and "Old-Pw-3" not in log


def test_a_password_unlocked_on_the_old_server_is_set_again_without_those_words(migrated):
    """A lock is mailplan's own change of the password: once the old server unlocks the
    account (the same hash again), the plan sets it back as a password changed on the
    old server, not as one changed on the new server."""
    src, spec, _daemon, address, target = migrated
    shadow = src / "etc/shadow"
    before = shadow.read_text()
    shadow.write_text(before.replace("alice:", "alice:!", 1))  # passwd -l
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"~ lock {address}" in plan, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert not target.login_ok(address, PASSWORD)
    shadow.write_text(before)  # passwd -u
    plan = mailplan("plan", str(spec), check=True).stdout
    assert (f"  ~ password {address}: (sensitive) -> (sensitive)\n      from shadow "
            "(SHA-512 crypt)\n") in plan, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert target.login_ok(address, PASSWORD)


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
    src, spec, daemon, address, _target = migrated
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
    src, spec, daemon, address, _target = migrated
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


def test_verify_tells_a_message_copied_over_imap_from_one_moved(migrated):
    """Over IMAP the user copies the INBOX message into a new folder ``Keep`` (dovecot
    links the same file) and moves ``Old``'s into another, ``Moved``: verify listed both
    as "moved here"; the copy, still in the INBOX, says so."""
    _src, spec, daemon, address, _target = migrated
    imap = imaplib.IMAP4("127.0.0.1", daemon.port)
    imap.login(address, PASSWORD)
    try:
        for folder in ("Keep", "Moved"):
            assert imap.create(folder)[0] == "OK"
        imap.select("INBOX")
        assert imap.copy("1", "Keep")[0] == "OK"
        imap.select("Old")
        assert imap.copy("1", "Moved")[0] == "OK"
        imap.store("1", "+FLAGS", "\\Deleted")
        imap.expunge()
        assert subjects(imap) == {"INBOX": ["in1"], "Old": [], "Keep": ["in1"],
                                  "Moved": ["old1"]}
    finally:
        imap.logout()
    res = mailplan("verify", str(spec))
    assert res.returncode == 0, res.stdout + res.stderr
    keep = res.stdout[res.stdout.index(" Keep "):].split("\n")[1]
    moved = res.stdout[res.stdout.index(" Moved "):].split("\n")[1]
    heading = ("moved or copied here by the user on the target from another folder (not a "
               "failure): ")
    assert keep.startswith("          " + heading), res.stdout
    assert keep.endswith(" (from INBOX, copied: still there too)"), res.stdout
    assert moved.startswith("          " + heading), res.stdout
    assert moved.endswith(" (from Old)"), res.stdout


def test_verify_names_the_folder_a_message_in_two_folders_was_moved_to(migrated):
    """pine files the INBOX message into ``Work`` on the old server (the target's INBOX
    keeps it: mail is never deleted there), apply imports it into ``Work`` too, and the
    user renames ``Work`` to ``Jobs`` over IMAP. verify said ``(to INBOX)`` on Work's row
    and ``(from INBOX)`` on Jobs': the first folder by name holding the message, or whose
    ledger lists it; INBOX got it from its own import, and the move was Work's, to Jobs."""
    src, spec, daemon, address, _target = migrated
    spool = src / "var/spool/mail/alice"
    (src / "home/alice/mail/Work").write_bytes(spool.read_bytes())  # pine's save
    spool.write_bytes(b"")
    settle(src / "home/alice/mail/Work")
    settle(spool)
    mailplan("apply", str(spec), "--auto-approve", check=True)
    imap = imaplib.IMAP4("127.0.0.1", daemon.port)
    imap.login(address, PASSWORD)
    try:
        assert subjects(imap) == {"INBOX": ["in1"], "Old": ["old1"], "Work": ["in1"]}
        typ, data = imap.rename("Work", "Jobs")
        assert typ == "OK", data
        imap = relogin(imap, daemon.port, address)
        assert subjects(imap) == {"INBOX": ["in1"], "Old": ["old1"], "Jobs": ["in1"]}
    finally:
        imap.logout()
    res = mailplan("verify", str(spec))
    out = res.stdout
    assert res.returncode == 0, out + res.stderr
    work = out[out.index(" Work "):out.index(" Jobs ")]
    assert "(not a failure):\n" in work and "#0 (to Jobs) (on the source: " in work, out
    jobs = out[out.index(" Jobs "):].split("\n", 2)[1]
    assert jobs.endswith("(not a failure): " + work.split("#0 (to Jobs)")[0][-12:]
                         + "#0 (from Work)"), out
    assert "(to INBOX)" not in out and "(from INBOX" not in out, out


def inbox_flags(imap: imaplib.IMAP4) -> dict[str, set[str]]:
    """The flags and keywords of each INBOX message, by subject, as dovecot says them."""
    typ, data = imap.select("INBOX")
    assert typ == "OK", data
    typ, data = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK", data
    out = {}
    for item in data:
        if isinstance(item, tuple):
            flags = re.search(rb"FLAGS \(([^)]*)\)", item[0])[1].decode().split()
            subject = item[1].decode().strip()[len("Subject: "):]
            out[subject] = set(flags) - {"\\Recent"}
    return out


def test_flags_and_keywords_follow_the_old_server_not_back_over_the_users_removals(
        migrated):
    """pine on the old server reads ``in1`` and labels it ``Work`` (UW-IMAP's
    X-Keywords); apply gives both to the target's file. The user takes both off over
    IMAP on the new server: the next whole read of the spool (new mail rewrote it)
    brought the keyword back, as only capitals were recorded. Then ``in1`` is marked
    unread on the old server and read again: the return of \\Seen was no gain, the
    record still holding it; now the loss is recorded (a plan line, no file changed) and
    the return is added."""
    src, spec, daemon, address, _target = migrated
    spool = src / "var/spool/mail/alice"

    def pine(status: str, *more: bytes, uid: str = "") -> None:  # the old server rewrites
        head = msg(1, "in1").split(b"\n\n", 1)  # the spool (c-client's X-UID: no mail)
        spool.write_bytes(head[0] + f"\nStatus: {status}\nX-Keywords: Work\n{uid}\n".encode()
                          + head[1] + b"".join(more))
        settle(spool)

    pine("RO")
    plan = mailplan("plan", str(spec), check=True).stdout
    assert "1 message(s) gain flags (S 1, keywords 1)" in plan, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    imap = imaplib.IMAP4("127.0.0.1", daemon.port)
    imap.login(address, PASSWORD)
    try:
        assert inbox_flags(imap) == {"in1": {"\\Seen", "Work"}}
        typ, data = imap.store("1", "-FLAGS", "(\\Seen Work)")  # the user, on the new server
        assert typ == "OK", data
        assert inbox_flags(imap) == {"in1": set()}
        pine("RO", msg(3, "in2"), uid="X-UID: 1\n")  # rewritten: the spool is read whole
        plan = mailplan("plan", str(spec), "--json", check=True).stdout
        assert [c["kind"] for c in json.loads(plan)["changes"]] == ["mailbox"], plan
        mailplan("apply", str(spec), "--auto-approve", check=True)
        imap = relogin(imap, daemon.port, address)
        assert inbox_flags(imap) == {"in1": set(), "in2": set()}
        # verify: the user's doing, keyword too, not "flags lost"
        res = mailplan("verify", str(spec))
        assert res.returncode == 0, res.stdout + res.stderr
        assert re.search(r"flags removed on the target by the user \(not a failure\):\n"
                         r" +[0-9a-f]{12}#0: -S Work \(", res.stdout), res.stdout
        pine("O", msg(3, "in2"))  # marked unread on the old server
        plan = mailplan("plan", str(spec), check=True).stdout
        assert (f"  ~ flags {address} INBOX: 1 message(s) lost flags on the old server "
                "since mailplan recorded them: recorded again (files unchanged)\n") in plan, plan
        mailplan("apply", str(spec), "--auto-approve", check=True)
        assert "No changes." in mailplan("plan", str(spec), check=True).stdout
        imap = relogin(imap, daemon.port, address)
        assert inbox_flags(imap) == {"in1": set(), "in2": set()}
        pine("RO", msg(3, "in2"))  # read there again: \Seen comes, Work stays removed
        plan = mailplan("plan", str(spec), check=True).stdout
        assert f"  ~ flags {address} INBOX: 1 message(s) gain flags (S 1)\n" in plan, plan
        mailplan("apply", str(spec), "--auto-approve", check=True)
        imap = relogin(imap, daemon.port, address)
        assert inbox_flags(imap) == {"in1": {"\\Seen"}, "in2": set()}
        assert "No changes." in mailplan("plan", str(spec), check=True).stdout
    finally:
        imap.logout()
