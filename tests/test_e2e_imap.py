"""End to end: a whole migration over SSH, then a real dovecot IMAP server over the
migrated Maildirs with a passdb built from the migrated vpopmail accounts. Each user logs
in with the old clear password and finds every message of every folder: same count,
BODY[] bytes, FLAGS (keywords too) and INTERNALDATE as the source; then courier-imap,
preauthenticated, finds the same."""

from __future__ import annotations

import calendar
import imaplib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from dovecot_fixture import start_dovecot
from migration import (
    SourceAccount,
    install_target,
    mailplan,
    make_source,
    migrate_over_ssh,
    unique_domain,
    write_spec,
)
from passlib.hash import md5_crypt
from test_mail_imap import courier_imap, expected, fetch_all, imap_quote, need_courier

from mailplan.mail.maildir import folder_dirname


def sep(day: int, sender: str = "someone@old.example") -> bytes:
    return f"From {sender} Mon Nov {day:2d} 10:{day:02d}:00 2026\n".encode()


MAIL = {
    "alice": {
        "INBOX": (sep(2) + b"From: a@x\nSubject: new\n\nbody\n\n"
                  + sep(3) + b"From: b@x\nSubject: read\nStatus: RO\n\nline\n>From me\n\n"
                  + sep(4) + b"From: c@x\nSubject: flagged\nStatus: RO\nX-Status: AF\n\nz\n"),
        "Projects/2026": sep(5) + b"From: d@x\nSubject: nested\nStatus: O\n\nnested\n\n",
    },
    "bob": {"INBOX": sep(6) + b"From: e@x\nSubject: draft\nStatus: RO\nX-Status: T\n"
                     b"X-Keywords: $Label1 NonJunk\n\nd\n\n"},
}
PASSWORDS = {"alice": "Alice-Old-Pw1", "bob": "b0b's old pw"}


def _when(day: int) -> int:
    return calendar.timegm((2026, 11, day, 10, day, 0))  # the source has no zone: UTC


#: what each folder must show, written out by hand (not read by mailplan's reader):
#: (BODY[] with LF line ends, FLAGS, INTERNALDATE)
SHOWN = {
    "alice": {
        "INBOX": [(b"From: a@x\nSubject: new\n\nbody\n", set(), _when(2)),
                  (b"From: b@x\nSubject: read\n\nline\n>From me\n", {"\\Seen"}, _when(3)),
                  (b"From: c@x\nSubject: flagged\n\nz\n",
                   {"\\Seen", "\\Answered", "\\Flagged"}, _when(4))],
        "Projects/2026": [(b"From: d@x\nSubject: nested\n\nnested\n", set(), _when(5))],
    },
    "bob": {"INBOX": [(b"From: e@x\nSubject: draft\n\nd\n",
                       {"\\Seen", "\\Draft", "$Label1", "NonJunk"}, _when(6))]},
}


@pytest.fixture
def migrated(sshd):
    # dovecot's processes run as vpopmail (uid 89): the tree must be traversable
    work = Path(tempfile.mkdtemp(prefix="mailplan-e2e-"))
    os.chmod(work, 0o755)
    try:
        src = make_source(work / "source", [
            SourceAccount("alice", 1000, "Alice", PASSWORDS["alice"]),
            SourceAccount("bob", 1001, "Bob", raw_hash=md5_crypt.hash(PASSWORDS["bob"]))])
        for user, folders in MAIL.items():
            for folder, data in folders.items():
                path = (src / "var/spool/mail" / user if folder == "INBOX"
                        else src / "home" / user / "mail" / folder)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                # alice's INBOX ends without a blank line (not as mail.local leaves a
                # spool): settled, its last message is final, not one still arriving
                settled = time.time() - 3600
                os.utime(path, (settled, settled))
        target, domain, spec = migrate_over_ssh(work, sshd, src)
        ddir = target.tool("vdominfo", "-d", domain).stdout.decode().split("\n")[0]
        accounts, homes = [], {}
        for line in Path(ddir, "vpasswd").read_text().splitlines():
            name, hashed, _uid, _gid, _gecos, udir, _quota = line.split(":")
            homes[name] = Path(udir)
            st = Path(udir).stat()
            accounts.append(f"{name}@{domain}:{{CRYPT}}{hashed}:{st.st_uid}:{st.st_gid}::"
                            f"{udir}::")
        daemon = start_dovecot(work / "dovecot", {}, uid=0, gid=0, accounts=accounts)
        try:
            yield daemon, domain, homes
        finally:
            daemon.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.parametrize("user", sorted(MAIL))
def test_user_logs_in_with_old_password_and_finds_every_message(migrated, user):
    daemon, domain, homes = migrated
    imap = imaplib.IMAP4("127.0.0.1", daemon.port)
    try:
        with pytest.raises(imaplib.IMAP4.error):
            imaplib.IMAP4("127.0.0.1", daemon.port).login(f"{user}@{domain}", "wrong")
        imap.login(f"{user}@{domain}", PASSWORDS[user])
        for folder, data in MAIL[user].items():
            name = "INBOX" if folder == "INBOX" else folder_dirname(folder)[1:]
            got = fetch_all(imap, imap_quote(name))
            want = expected(data)
            assert len(got) == len(want), (folder, daemon.log()[-2000:])
            assert sorted(got, key=repr) == sorted(want, key=repr), folder
            assert sorted(got, key=repr) == sorted(
                ((body.replace(b"\n", b"\r\n"), frozenset(flags), when)
                 for body, flags, when in SHOWN[user][folder]), key=repr), folder
    finally:
        imap.logout()
    need_courier()
    imap = courier_imap(homes[user])
    try:
        for folder, data in MAIL[user].items():
            name = "INBOX" if folder == "INBOX" else "INBOX" + folder_dirname(folder)
            got = fetch_all(imap, imap_quote(name), nul=b"\0")
            assert sorted(got, key=repr) == sorted(expected(data, courier=True), key=repr), \
                folder
    finally:
        imap.logout()


#: source folder file -> (the folder it is, its IMAP name): files named by a local mail
#: program (UTF-8, a literal '&') and by UW-imapd for an IMAP client (modified UTF-7)
NAMED = {"\u00c4rger": ("\u00c4rger", "&AMQ-rger"), "Q&A": ("Q&A", "Q&-A"),
         "Entw&APw-rfe": ("Entw\u00fcrfe", "Entw&APw-rfe"),
         "Sent &- Drafts": ("Sent & Drafts", "Sent &- Drafts")}


def listed(imap: imaplib.IMAP4, command: str) -> set[str]:
    """The mailbox names a LIST or LSUB gives (quotes removed), INBOX left out."""
    typ, lines = getattr(imap, command)()
    assert typ == "OK", lines
    names = set()
    for line in lines:
        name = line.decode().split(' "." ', 1)[1]
        name = re.sub(r"\\(.)", r"\1", name[1:-1]) if name.startswith('"') else name
        if name != "INBOX":
            names.add(name)
    return names


def alice_with_folders(work: Path, names: Iterable[str]) -> Path:
    """alice's source under ``work``: her spool, and a folder file under ~/mail for each
    of ``names`` (one message each, settled), all subscribed in ~/.mailboxlist."""
    src = make_source(work / "source", [SourceAccount("alice", 1000, "Alice", "Pw-alice1")])
    (src / "var/spool/mail/alice").write_bytes(sep(2) + b"From: a@x\nSubject: i\n\nb\n\n")
    for day, name in enumerate(names, 3):
        path = src / "home/alice/mail" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(sep(day) + f"From: a@x\nSubject: {day}\n\nb\n\n".encode())
        os.utime(path, (time.time() - 3600,) * 2)
    (src / "home/alice/.mailboxlist").write_text("".join(f"mail/{n}\n" for n in names))
    return src


@pytest.mark.parametrize("encoding", ["utf7", "utf8"])
def test_folder_names_list_under_their_names_in_the_server_of_their_encoding(encoding):
    """``target.folder_names``: utf8 folders (and subscriptions) list correctly in
    courier-imap 5, utf7 ones in dovecot; with ``source.folder_names: mutf7``, UW-imapd's
    modified UTF-7 file names are decoded once, a local ``Q&A`` is taken literally.
    verify and a second plan read the Maildir back under the same names."""
    if encoding == "utf8":
        need_courier()
    work = Path(tempfile.mkdtemp(prefix="mailplan-names-"))
    os.chmod(work, 0o755)
    daemon = None
    try:
        src = alice_with_folders(work, NAMED)
        target = install_target(work / "target")
        domain = unique_domain()
        spec = write_spec(work / "m.yaml", source_root=src, target=target,
                          domains={domain: {"import": {"uid_min": 1000}}})
        spec.write_text(spec.read_text().replace(
            "  host: newmail\n", f"  host: newmail\n  folder_names: {encoding}\n").replace(
            "  host: oldmail\n", "  host: oldmail\n  folder_names: mutf7\n"))
        mailplan("apply", str(spec), "--auto-approve", check=True)
        address = f"alice@{domain}"
        home = Path(target.tool("vuserinfo", "-d", address).stdout.decode().split("\n")[0])
        on_disk = {p.name for p in (home / "Maildir").iterdir() if p.name.startswith(".")
                   and p.is_dir()}
        folders = {folder for folder, _imap in NAMED.values()}
        assert on_disk == {folder_dirname(f, encoding) for f in folders}
        want = {imap for _folder, imap in NAMED.values()}
        if encoding == "utf8":
            assert on_disk == {"." + f for f in folders}
            imap = courier_imap(home)
            want = {"INBOX." + n for n in want}
        else:
            vpasswd = Path(target.tool("vdominfo", "-d", domain).stdout.decode()
                           .split("\n")[0], "vpasswd")
            accounts = []
            for line in vpasswd.read_text().splitlines():
                name, hashed, _uid, _gid, _gecos, udir, _quota = line.split(":")
                st = Path(udir).stat()
                accounts.append(f"{name}@{domain}:{{CRYPT}}{hashed}:{st.st_uid}:"
                                f"{st.st_gid}::{udir}::")
            daemon = start_dovecot(work / "dovecot", {}, uid=0, gid=0, accounts=accounts)
            imap = imaplib.IMAP4("127.0.0.1", daemon.port)
            imap.login(address, "Pw-alice1")
        try:
            assert listed(imap, "list") == want
            assert listed(imap, "lsub") == want
            for name in want:
                assert len(fetch_all(imap, imap_quote(name), nul=b"\0")) == 1, name
        finally:
            imap.logout()
        mailplan("verify", str(spec), check=True)
        again = mailplan("plan", str(spec), check=True).stdout
        assert "+ mailbox" not in again, again
    finally:
        if daemon is not None:
            daemon.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_flags_set_on_the_old_server_between_two_runs_show_in_imap(sshd):
    """Imported unread, then read, answered, flagged and labelled on the old server
    before the second run: dovecot, which had opened the folder after the first run,
    shows the messages with \\Seen, \\Answered, \\Flagged and the new keyword after
    it, as the source has them."""
    work = Path(tempfile.mkdtemp(prefix="mailplan-e2e-"))
    os.chmod(work, 0o755)  # dovecot's processes run as vpopmail: traversable
    try:
        src = make_source(work / "source", [
            SourceAccount("alice", 1000, "Alice", PASSWORDS["alice"])])
        spool = src / "var/spool/mail/alice"
        spool.write_bytes(sep(2) + b"From: a@x\nSubject: one\nX-Keywords: Work\n\nbody\n\n"
                          + sep(3) + b"From: b@x\nSubject: two\n\nline\n\n")
        target, domain, spec = migrate_over_ssh(work, sshd, src)
        udir = target.tool("vuserinfo", "-d", f"alice@{domain}").stdout.decode().split("\n")[0]
        st = Path(udir).stat()
        hashed = next(line.split(":")[1] for line in Path(udir).parent.joinpath(
            "vpasswd").read_text().splitlines() if line.startswith("alice:"))
        daemon = start_dovecot(work / "dovecot", {}, uid=0, gid=0, accounts=[
            f"alice@{domain}:{{CRYPT}}{hashed}:{st.st_uid}:{st.st_gid}::{udir}::"])

        def inbox() -> list:
            imap = imaplib.IMAP4("127.0.0.1", daemon.port)
            try:
                imap.login(f"alice@{domain}", PASSWORDS["alice"])
                return fetch_all(imap, "INBOX")
            finally:
                imap.logout()

        try:
            assert sorted(sorted(flags) for _body, flags, _when in inbox()) == [[], ["Work"]]
            # the old server's mail reader rewrites the spool with the state it keeps
            flagged = (spool.read_bytes()
                       .replace(b"X-Keywords: Work\n", b"Status: RO\nX-Keywords: Work $Label1\n")
                       .replace(b"Subject: two\n", b"Subject: two\nStatus: RO\nX-Status: AF\n"))
            spool.write_bytes(flagged)
            assert "~ flags alice@" in mailplan("plan", str(spec), check=True).stdout
            mailplan("apply", str(spec), "--auto-approve", check=True)
            got = inbox()
        finally:
            daemon.stop()
        assert sorted(sorted(flags) for _body, flags, _when in got) == [
            ["$Label1", "Work", "\\Seen"], ["\\Answered", "\\Flagged", "\\Seen"]]
        assert sorted(got, key=repr) == sorted(expected(flagged), key=repr)
    finally:
        shutil.rmtree(work, ignore_errors=True)


#: source folder file -> the name dovecot lists (and opens) it under
AWKWARD = {"inbox/x": "INBOX.x", "Inbox/y/z": "INBOX.y.z", "x/inbox": "x.inbox",
           " lead": " lead", "trail ": "trail ", "%pct": "%pct", "st*ar": "st*ar",
           'q"uote': 'q"uote', "~tilde": "\\7etilde", "t/~b": "t.\\7eb"}


def test_every_folder_dovecot_lists_opens_with_its_mail():
    """Folder names dovecot treats specially: each imported folder is listed and
    subscribed under the name a client opens it by, and holds its message there; a
    second plan changes nothing. (A ``.inbox.x`` directory was listed as ``INBOX.x``, but
    dovecot opens ``INBOX.x`` in ``.INBOX.x``: "Mailbox doesn't exist"; a ``.~tilde``
    was listed, but refused: "Invalid mailbox name: Begins with '~'", and its
    subscription dropped at each login, so verify failed and plan re-added it forever.)"""
    work = Path(tempfile.mkdtemp(prefix="mailplan-names-"))
    os.chmod(work, 0o755)
    daemon = None
    try:
        src = alice_with_folders(work, AWKWARD)
        target = install_target(work / "target")
        domain = unique_domain()
        spec = write_spec(work / "m.yaml", source_root=src, target=target,
                          domains={domain: {"import": {"uid_min": 1000}}})
        out = mailplan("apply", str(spec), "--auto-approve", check=True).stdout
        # the plan names the folder the mail goes into
        assert "to import into INBOX/y/z " in out and "into Inbox" not in out, out
        address = f"alice@{domain}"
        udir = target.tool("vuserinfo", "-d", address).stdout.decode().split("\n")[0]
        st = Path(udir).stat()
        hashed = next(line.split(":")[1] for line in Path(udir).parent.joinpath(
            "vpasswd").read_text().splitlines() if line.startswith("alice:"))
        daemon = start_dovecot(work / "dovecot", {}, uid=0, gid=0, accounts=[
            f"{address}:{{CRYPT}}{hashed}:{st.st_uid}:{st.st_gid}::{udir}::"])
        imap = imaplib.IMAP4("127.0.0.1", daemon.port)
        try:
            imap.login(address, "Pw-alice1")
            want = set(AWKWARD.values())
            parents = {"x", "INBOX.y", "t"}  # \Noselect levels above x.inbox, INBOX.y.z, t.~b
            assert listed(imap, "list") == want | parents, daemon.log()[-2000:]
            assert listed(imap, "lsub") == want, daemon.log()[-2000:]
            for name in want:
                typ, data = imap.status(imap_quote(name), "(MESSAGES)")
                assert typ == "OK" and data[0].endswith(b"(MESSAGES 1)"), (name, data)
        finally:
            imap.logout()
        mailplan("verify", str(spec), check=True)
        again = mailplan("plan", str(spec), check=True).stdout
        assert "No changes" in again, again
    finally:
        if daemon is not None:
            daemon.stop()
        shutil.rmtree(work, ignore_errors=True)
