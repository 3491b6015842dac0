"""End to end through a real IMAP server: mboxes -> agent -> Maildirs -> dovecot -> imaplib.

Per user and folder, what an IMAP client sees (message count, BODY[] bytes, FLAGS and
INTERNALDATE) must equal what the source mbox holds.
"""

from __future__ import annotations

import calendar
import imaplib
import io
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from dovecot_fixture import DOVECOT, Dovecot, start_dovecot

from mailplan.mail.agent_client import AgentClient, LocalAgent
from mailplan.mail.convert import import_mbox
from mailplan.mail.maildir import folder_dirname, subscription_lines
from mailplan.mail.mbox import MboxReader, MessageStart, read_mbox

pytestmark = pytest.mark.skipif(not os.path.exists(DOVECOT) or os.geteuid() != 0,
                                reason="needs Debian dovecot and root")
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


def fetch_all(imap: imaplib.IMAP4, mailbox: str) -> list[tuple[bytes, frozenset[str], int]]:
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
        when = calendar.timegm(imaplib.Internaldate2tuple(b'INTERNALDATE "' + m[2] + b'"'))
        when -= 0  # Internaldate2tuple returns local time; TZ is UTC in the test runner
        out.append((item[1], flags, when))
    return out


def expected(data: bytes) -> list[tuple[bytes, frozenset[str], int]]:
    """What IMAP must show of each message: its bytes, its flags and X-Keywords, and
    its arrival time."""
    keywords = [e.keywords for e in MboxReader(io.BytesIO(data)) if isinstance(e, MessageStart)]
    out = []
    for (end, body), words in zip(read_mbox(io.BytesIO(data))[0], keywords, strict=True):
        # IMAP sends CRLF line ends, and dovecot sends NUL as 0x80 (no BINARY in FETCH);
        # the file on disk holds the exact bytes (checked in test_mail_agent).
        wire = body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n").replace(b"\0", b"\x80")
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
        assert names == {"INBOX", "Work", "lists", "lists.python", "v1\\\\2e2", "Labels"} or \
            names == {"INBOX", "Work", "lists", "lists.python", "v1\\2e2", "Labels"}
        _typ, subscribed = imap.lsub()
        subs = {re.search(rb'"\." (.*)$', x).group(1).strip(b'"').decode() for x in subscribed}
        assert {"Work", "lists.python"} <= subs
    finally:
        imap.logout()


def test_time_zone_of_runner_is_utc():
    # fetch_all compares INTERNALDATE via Internaldate2tuple, which yields local time
    import time
    assert time.timezone == 0 or os.environ.get("TZ") in (None, "UTC", "")
