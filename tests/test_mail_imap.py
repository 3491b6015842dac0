"""End to end through real IMAP servers: mboxes -> agent -> Maildirs -> dovecot -> imaplib,
and the same Maildirs -> courier-imap -> imaplib.

Per user and folder, what an IMAP client sees (message count, BODY[] bytes, FLAGS with
keywords, and INTERNALDATE) must equal what the source mbox holds. Courier's imapd runs
preauthenticated on a pipe (``imapd Maildir``, as offlineimap's preauthtunnel runs it),
unpacked from Debian's courier-imap by scripts/install-test-deps.sh: the package itself
conflicts with dovecot-imapd.
"""

from __future__ import annotations

import imaplib
import io
import os
import pwd
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dovecot_fixture import Dovecot, start_dovecot
from tools import require

from mailplan.mail.agent_client import AgentClient, LocalAgent
from mailplan.mail.convert import import_mbox
from mailplan.mail.maildir import folder_dirname, subscription_lines
from mailplan.mail.mbox import MboxReader, MessageStart, read_mbox

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
COURIER_IMAPD = os.environ.get("MAILPLAN_TEST_COURIER_IMAPD", "/opt/courier-imap/usr/bin/imapd")
UID = GID = 5000
USERS = {"alice": "Alice-pw-1", "bob": "b0b secret"}
FLAG_NAMES = {"S": "\\Seen", "R": "\\Answered", "F": "\\Flagged", "T": "\\Deleted",
              "D": "\\Draft"}


def sep(day: int, extra: str = "") -> bytes:
    return f"From sender{day}@example.org  Mon Jan {day:2d} 1{day % 10}:0{day % 6}{extra} 2001\n"\
        .encode()


MAILBOXES = {
    "alice": {
        "INBOX": (sep(1) + b"Status: RO\nX-Status: A\nSubject: read+answered\n\nhi\n\n"
                  + sep(2) + b"Subject: unread\n\nnew mail\n>From quoted\n\n"
                  + sep(3, ":00 EST") + b"Status: O\nX-Status: FT\nSubject: draft\r\n\r\ncrlf\r\n"
                  + sep(4) + b"Subject: no blank before me\n\nlast"),
        "Work": (sep(5) + b"Status: RO\nX-Status: D\nSubject: deleted\n\nbye\n\n"
                 + sep(5) + b"Status: RO\nX-Status: D\nSubject: deleted\n\nbye\n\n"),
        "lists/python": sep(6) + b"Subject: nested \xe9\n\n\xff binary-ish \x00 body\n\n",
        "v1.2": sep(7) + b"Status: RO\nSubject: dotted folder\n\nx\n",
        ".old": sep(7) + b"Subject: a hidden folder file, which UW-IMAP lists\n\nx\n",
        "Labels": (sep(9) + b"Status: RO\nX-Keywords: $Label1 Junk\nSubject: labelled\n\na\n\n"
                   + sep(9) + b"X-Keywords: Junk\nSubject: unseen, a keyword\n\nb\n\n"),
    },
    "bob": {"INBOX": sep(8) + b"Subject: only one\n\nbody\n"},
}


@pytest.fixture(scope="module")
def migrated() -> Iterator[Dovecot]:
    workdir = Path(tempfile.mkdtemp(prefix="mailplan-dovecot-"))
    os.chmod(workdir, 0o755)
    daemon = start_dovecot(workdir, USERS, uid=UID, gid=GID)
    try:
        for user, folders in MAILBOXES.items():
            home = daemon.maildir(user).parent
            home.mkdir(mode=0o700)
            os.chown(home, UID, GID)
            client = AgentClient(LocalAgent())
            client.open(str(daemon.maildir(user)), uid=UID, gid=GID)
            for folder, data in folders.items():
                import_mbox(client, io.BytesIO(data), dirname=folder_dirname(folder))
            client.subscribe(subscription_lines(list(folders)))
            client.quit()
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)


FETCH_RE = re.compile(rb'FLAGS \(([^)]*)\) INTERNALDATE "([^"]+)" BODY\[\] \{(\d+)\}')


def fetch_all(imap: imaplib.IMAP4, mailbox: str, nul: bytes = b"\x80"
              ) -> list[tuple[bytes, frozenset[str], int]]:
    """Every message of ``mailbox`` as (BODY[] with NUL bytes back, flags, INTERNALDATE);
    ``nul``: what the server sends for a NUL byte (dovecot 0x80, courier NUL itself)."""
    typ, data = imap.select(mailbox, readonly=True)
    assert typ == "OK", (mailbox, data)
    if int(data[0]) == 0:
        return []
    typ, data = imap.fetch("1:*", "(FLAGS INTERNALDATE BODY.PEEK[])")
    assert typ == "OK"
    out = []
    for item in data:
        if not isinstance(item, tuple):
            continue
        m = FETCH_RE.search(item[0])
        assert m, item[0]
        flags = frozenset(f for f in m[1].decode().split() if f != "\\Recent")
        # Internaldate2tuple gives the local time (with its DST flag): mktime undoes that
        # in any time zone the runner has
        when = int(time.mktime(imaplib.Internaldate2tuple(b'INTERNALDATE "' + m[2] + b'"')))
        out.append((item[1].replace(nul, b"\0"), flags, when))
    return out


def expected(data: bytes, *, courier: bool = False
             ) -> list[tuple[bytes, frozenset[str], int]]:
    """What IMAP must show of each message: its bytes, its flags and X-Keywords, and
    its arrival time."""
    keywords = [e.keywords for e in MboxReader(io.BytesIO(data)) if isinstance(e, MessageStart)]
    out = []
    for (end, body), words in zip(read_mbox(io.BytesIO(data))[0], keywords, strict=True):
        # IMAP sends CRLF line ends (fetch_all puts back what a server sends for a NUL
        # byte); the file on disk holds the exact bytes (checked in test_mail_agent).
        # Courier puts a CR before every LF, also after the CR of a message stored with
        # CRLF line ends (Debian's mb2md would have rewritten them to LF)
        if courier:
            wire = body.replace(b"\n", b"\r\n")
        else:
            wire = body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        out.append((wire, frozenset(FLAG_NAMES[f] for f in end.flags) | set(words),
                    int(end.arrival)))
    return out


def imap_quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.mark.parametrize("user", sorted(MAILBOXES))
def test_every_folder_matches_the_source(migrated, user):
    imap = imaplib.IMAP4("127.0.0.1", migrated.port)
    try:
        imap.login(user, USERS[user])
        for folder, data in MAILBOXES[user].items():
            name = "INBOX" if folder == "INBOX" else folder_dirname(folder)[1:]
            got = fetch_all(imap, imap_quote(name))
            want = expected(data)
            assert len(got) == len(want), (folder, migrated.log()[-2000:])
            assert sorted(got, key=repr) == sorted(want, key=repr), folder
    finally:
        imap.logout()


def test_folders_listed_and_subscribed(migrated):
    imap = imaplib.IMAP4("127.0.0.1", migrated.port)
    try:
        imap.login("alice", USERS["alice"])
        _typ, listed = imap.list()
        names = {re.search(rb'"\." (.*)$', x).group(1).strip(b'"').decode() for x in listed}
        assert names == {"INBOX", "Work", "lists", "lists.python", "v1\\\\2e2", "\\\\2eold",
                         "Labels"} or \
            names == {"INBOX", "Work", "lists", "lists.python", "v1\\2e2", "\\2eold", "Labels"}
        _typ, subscribed = imap.lsub()
        subs = {re.search(rb'"\." (.*)$', x).group(1).strip(b'"').decode() for x in subscribed}
        assert {"Work", "lists.python"} <= subs
    finally:
        imap.logout()


def need_courier() -> None:
    """Fail the calling test where courier-imap's imapd is not installed."""
    require(COURIER_IMAPD, "courier-imap's imapd")


def courier_imap(home: Path) -> imaplib.IMAP4:
    """A courier-imap session, preauthenticated, on ``home``/Maildir, run as the
    Maildir's owner (as vpopmail's authentication runs it: courier refuses a Maildir
    another user owns)."""
    st = (home / "Maildir").stat()
    # IMAP_KEYWORDS=1 as Debian's /etc/courier/imapd sets it (the bare imapd reads no
    # configuration file)
    return imaplib.IMAP4_stream(
        f"cd {shlex.quote(str(home))} && exec setpriv --reuid={st.st_uid} "
        f"--regid={st.st_gid} --clear-groups env IMAP_KEYWORDS=1 "
        f"{shlex.quote(COURIER_IMAPD)} Maildir 2>/dev/null")


@pytest.fixture(scope="module")
def courier(migrated) -> Iterator[Callable[[str], imaplib.IMAP4]]:
    """Log a user in to courier-imap over a copy of the migrated Maildirs (courier writes
    its own files into a Maildir it serves: dovecot's tests keep the originals)."""
    need_courier()
    workdir = Path(tempfile.mkdtemp(prefix="mailplan-courier-"))
    os.chmod(workdir, 0o755)
    try:
        for user in MAILBOXES:
            (workdir / user).mkdir(mode=0o755)
            # modes and times as they are, owned by vpopmail as on a vpopmail host
            # (courier looks the owner up in the passwd file: uid 5000 is in none)
            subprocess.run(["cp", "-a", str(migrated.maildir(user)), str(workdir / user)],
                           check=True)
            subprocess.run(["chown", "-R", "vpopmail:vchkpw", str(workdir / user / "Maildir")],
                           check=True)

        yield lambda user: courier_imap(workdir / user)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.parametrize("user", sorted(MAILBOXES))
def test_courier_reads_every_folder_as_the_source(courier, user):
    """courier-imap, the IMAP server of most vpopmail installs, shows every message of
    every folder as the source holds it: bytes, flags, the X-Keywords (which courier
    reads from courierimapkeywords/, not from the file name as dovecot does) and the
    arrival date. Folders are courier's INBOX.Name."""
    imap = courier(user)
    try:
        assert imap.state == "AUTH"  # PREAUTH
        for folder, data in MAILBOXES[user].items():
            name = "INBOX" if folder == "INBOX" else "INBOX" + folder_dirname(folder)
            got = fetch_all(imap, imap_quote(name), nul=b"\0")
            want = expected(data, courier=True)
            assert len(got) == len(want), folder
            assert sorted(got, key=repr) == sorted(want, key=repr), folder
    finally:
        imap.logout()


def test_courier_lists_the_subscribed_folders(courier):
    imap = courier("alice")
    try:
        _typ, subscribed = imap.lsub()
        # names come as IMAP quoted strings, a backslash doubled
        subs = {re.sub(r'\\(.)', r'\1', re.search(r'"\." "(.*)"$', x.decode()).group(1))
                for x in subscribed}
        want = {"INBOX" + folder_dirname(f) for f in MAILBOXES["alice"] if f != "INBOX"}
        assert want <= subs, subscribed
    finally:
        imap.logout()


def test_courier_keeps_its_keywords_and_reads_those_of_a_later_run(tmp_path):
    """The run after the cutover adds mail to folders courier already opened (it has
    folded the first run's keyword files into its :list and renamed them): courier shows
    the keywords of both runs, and a keyword a user changed in courier stays changed."""
    need_courier()
    owner = pwd.getpwnam("vpopmail")
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chown(home, owner.pw_uid, owner.pw_gid)
    first = (sep(1) + b"Status: RO\nX-Keywords: NonJunk\nSubject: one\n\na\n\n"
             + sep(2) + b"Status: RO\nX-Keywords: $Label1\nSubject: two\n\nb\n\n")
    later = first + sep(3) + b"Status: RO\nX-Keywords: NonJunk $Label2\nSubject: three\n\nc\n\n"

    def run(data: bytes) -> None:
        client = AgentClient(LocalAgent())
        client.open(str(home / "Maildir"), uid=owner.pw_uid, gid=owner.pw_gid)
        import_mbox(client, io.BytesIO(data), dirname="", known=client.scan().known(""))
        client.quit()

    def keywords(imap: imaplib.IMAP4) -> dict[bytes, frozenset[str]]:
        return {body.split(b"Subject: ")[1][:5].split(b"\r")[0]: flags - {"\\Seen"}
                for body, flags, _t in fetch_all(imap, "INBOX", nul=b"\0")}

    run(first)
    imap = courier_imap(home)
    try:
        assert keywords(imap) == {b"one": {"NonJunk"}, b"two": {"$Label1"}}
        imap.select("INBOX")
        typ, _ = imap.store("2", "-FLAGS", "($Label1)")  # the user unlabels one
        assert typ == "OK"
    finally:
        imap.logout()
    assert (home / "Maildir/courierimapkeywords/:list").exists()
    run(later)
    imap = courier_imap(home)
    try:
        assert keywords(imap) == {b"one": {"NonJunk"}, b"two": frozenset(),
                                  b"three": {"NonJunk", "$Label2"}}
    finally:
        imap.logout()


def test_dovecot_with_listescape_shows_a_dotted_folder_under_its_own_name():
    """A ``.`` inside a folder's name is written ``\\2e``, as dovecot's listescape plugin
    reads it: dovecot with ``mail_plugins = listescape`` (its separator ``/``) lists and
    subscribes ``v1.2``, ``a.b/c.d``, ``~tilde``, ``v1/~x`` and ``.old`` (a hidden folder
    file of UW-IMAP's) under their own names and
    serves their mail; without the plugin they are folders of their own (above), never
    merged into ``v1/2``."""
    folders = {"v1.2": sep(7) + b"Status: RO\nSubject: dotted\n\nx\n\n",
               "a.b/c.d": sep(8) + b"Subject: dotted parent\n\ny\n\n",
               "v1": sep(9) + b"Subject: no dot\n\nz\n\n",
               # listescape reads \7e as a ~ that begins a level (dovecot refuses it bare)
               "~tilde": sep(10) + b"Subject: tilde\n\nt\n\n",
               "v1/~x": sep(11) + b"Subject: tilde below\n\nu\n\n",
               # a hidden folder file UW-IMAP lists (~/mail/.old): .\2eold
               ".old": sep(12) + b"Subject: hidden\n\nh\n\n",
               ".arch/2001": sep(13) + b"Subject: hidden parent\n\ng\n\n"}
    workdir = Path(tempfile.mkdtemp(prefix="mailplan-listescape-"))
    os.chmod(workdir, 0o755)
    daemon = start_dovecot(workdir, {"alice": USERS["alice"]}, uid=UID, gid=GID,
                           listescape=True)
    try:
        home = daemon.maildir("alice").parent
        home.mkdir(mode=0o700)
        os.chown(home, UID, GID)
        client = AgentClient(LocalAgent())
        client.open(str(daemon.maildir("alice")), uid=UID, gid=GID)
        for folder, data in folders.items():
            import_mbox(client, io.BytesIO(data), dirname=folder_dirname(folder))
        client.subscribe(subscription_lines(list(folders)))
        client.quit()
        assert {p.name for p in daemon.maildir("alice").iterdir() if p.name[:1] == "."} \
            >= {".v1\\2e2", ".a\\2eb.c\\2ed", ".v1", ".\\7etilde", ".v1.\\7ex", ".\\2eold",
                ".\\2earch.2001"}
        imap = imaplib.IMAP4("127.0.0.1", daemon.port)
        try:
            imap.login("alice", USERS["alice"])

            def names(command: str) -> set[str]:
                typ, lines = getattr(imap, command)()
                assert typ == "OK", lines
                return {re.search(rb'"/" (.*)$', x).group(1).strip(b'"').decode()
                        for x in lines}

            assert names("list") == {"INBOX", "a.b", ".arch", *folders}, daemon.log()
            assert names("lsub") == set(folders)
            for folder, data in folders.items():
                assert fetch_all(imap, imap_quote(folder)) == expected(data), folder
        finally:
            imap.logout()
    finally:
        daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)
