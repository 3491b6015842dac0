"""The writer agent for real: a child process writing Maildirs, killed, restarted, re-run."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import os
import select
import shutil
import stat
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from migration import TEST_PYTHON
from tools import require

from mailplan.connectors.base import CommandResult
from mailplan.facts.maildirs import _LEDGER_COUNT, parse_ledger
from mailplan.mail.agent_client import AgentClient, AgentError, AgentLost, LocalAgent
from mailplan.mail.bookkeeping import keyword_letters
from mailplan.mail.convert import MAX_PENDING, import_mbox
from mailplan.mail.maildir import Identities, parse_message_name
from mailplan.mail.mbox import read_mbox

SEP = b"From a@example.org Mon Jan  1 10:00:00 2001\n"
MBOX = (SEP + b"Status: RO\nX-Status: A\nSubject: one\n\nfirst\n\n"
        + b"From b@example.org  Tue Jan  2 11:00 2001\nSubject: two\n\n>From quoted\n\n"
        + SEP + b"Status: O\nX-Status: T\nSubject: draft\n\ndraft body\n\n"
        + b"From b@example.org  Tue Jan  2 11:00 2001\nSubject: two\n\n>From quoted\n")


def message_lines(root) -> int:
    """How many message lines (three fields) a Maildir's ledger has; its flags lines
    (four: a message's flags at its import) are not counted."""
    return sum(1 for line in (root / "mailplan-ledger").read_text().splitlines()
               if line.count("\t") == 2)


def maildir_state(root: Path) -> set[tuple[str, str, str, str | None, bytes, int]]:
    """(folder, subdir, identity, flags, bytes, mtime) of every message file."""
    out = set()
    for dirpath, _dirs, files in os.walk(root):
        sub = os.path.basename(dirpath)
        if sub not in ("new", "cur"):
            continue
        folder = os.path.relpath(os.path.dirname(dirpath), root)
        for name in files:
            parsed = parse_message_name(name)
            assert parsed is not None, name
            p = Path(dirpath, name)
            out.add((folder, sub, f"{parsed.digest}/{parsed.occurrence}", parsed.flags,
                     p.read_bytes(), int(p.stat().st_mtime)))
    return out


if TEST_PYTHON:  # the agent under another Python (tests/migration.py)
    LocalAgent = functools.partial(LocalAgent, TEST_PYTHON)  # type: ignore[misc]
_LocalAgent = LocalAgent


@pytest.fixture(autouse=True, params=["anonymous", "named"])
def tmp_files(request, monkeypatch) -> str:
    """Every test runs with both kinds of tmp/ file: anonymous (``O_TMPFILE``, linked by
    descriptor), and named then renamed, the agent's way where the filesystem has no
    ``O_TMPFILE``, forced here by an open-file limit too low for any anonymous file."""
    if request.param == "named":
        monkeypatch.setitem(globals(), "LocalAgent", functools.partial(
            _LocalAgent, wrapper=("prlimit", "--nofile=128:128")))
    return request.param


def unsynced(proc: LocalAgent, root: Path, kind: str) -> int:
    """Messages the agent wrote in root's tmp/ and has not made visible: files it named
    there, or its open anonymous files there that have no name yet (their /proc link
    reads ``tmp/#INODE``; one linked already, not closed yet, has a link count)."""
    tmp = root / "tmp"
    if kind == "named":  # its own: another writer's (or a test's) are not counted
        return sum(name.startswith(f"mailplan-{proc.proc.pid}-") for name in os.listdir(tmp))
    count = 0
    for fd in Path(f"/proc/{proc.proc.pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed meanwhile
            if os.readlink(fd).startswith(f"{tmp}/#") and fd.stat().st_nlink == 0:
                count += 1
    return count


def wait_for(ready: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Return once ``ready()``; fail after ``timeout`` seconds (a bound for a hang, not
    a pace: a loaded machine starts an agent slowly)."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.01)


IN_OPEN, IN_ISDIR = 0x20, 0x40000000
INOTIFY_EVENT = struct.Struct("iIII")  # wd, mask, cookie, name length


@contextlib.contextmanager
def directory_opens(path: Path) -> Iterator[Callable[[int], None]]:
    """Watch ``path`` (inotify): the function given waits until the directory itself was
    opened (listed: ``os.listdir`` opens it) that many times since the watch began."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0 or libc.inotify_add_watch(fd, os.fsencode(path), IN_OPEN) < 0:
        raise OSError(ctypes.get_errno(), f"inotify on {path}")
    seen = 0

    def opened(count: int, timeout: float = 30) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while seen < count:
            left = deadline - time.monotonic()
            assert left > 0, f"{path} was listed {seen} time(s), not {count}, in {timeout} s"
            if select.select([fd], [], [], left)[0]:
                data, pos = os.read(fd, 4096), 0
                while pos < len(data):
                    _wd, mask, _cookie, length = INOTIFY_EVENT.unpack_from(data, pos)
                    pos += INOTIFY_EVENT.size + length
                    seen += bool(mask & IN_ISDIR)  # the directory, not a file in it

    try:
        yield opened
    finally:
        os.close(fd)


@pytest.fixture
def client():
    proc = LocalAgent()
    c = AgentClient(proc)
    yield c
    proc.kill()


def test_import_writes_exact_files_modes_owner_and_times(client, tmp_path):
    root = tmp_path / "Maildir"
    client.open(str(root), uid=12345, gid=23456)
    import_mbox(client, io.BytesIO(MBOX), dirname="")
    import_mbox(client, io.BytesIO(MBOX), dirname=".Work")
    state = maildir_state(root)
    expected_msgs = read_mbox(io.BytesIO(MBOX))[0]
    for folder in (".", ".Work"):
        got = sorted((s, f, b, t) for fo, s, _i, f, b, t in state if fo == folder)
        want = sorted((e.subdir, None if e.subdir == "new" else e.flags, b, int(e.arrival))
                      for e, b in expected_msgs)
        assert got == want
    assert (root / ".Work" / "maildirfolder").is_file()
    assert not list((root / "tmp").iterdir()) and not list((root / ".Work" / "tmp").iterdir())
    for p in [root, *root.rglob("*")]:
        st_ = p.stat()
        assert (st_.st_uid, st_.st_gid) == (12345, 23456), p
        assert stat.S_IMODE(st_.st_mode) == (0o700 if p.is_dir() else 0o600), p



def test_whole_message_frames_write_what_streamed_frames_write(tmp_path):
    """A held message goes as one ``M`` frame, a big one as ``B``, ``D`` and ``E``
    frames (here: every message, with a 16-byte flush size); both write the same files,
    and the ``M`` frame is checked against its name like ``E``."""
    states = []
    for flush in (1 << 18, 16):
        proc = LocalAgent()
        c = AgentClient(proc, flush_bytes=flush)
        root = tmp_path / f"flush{flush}"
        c.open(str(root))
        import_mbox(c, io.BytesIO(MBOX), dirname="")
        import_mbox(c, io.BytesIO(MBOX), dirname=".Work")
        c.quit()
        proc.wait()
        states.append(maildir_state(root))
    assert states[0] == states[1] and len(states[0]) == 8
    assert {(fo, sub) for fo, sub, *_rest in states[0]} == {
        (".", "new"), (".", "cur"), (".Work", "new"), (".Work", "cur")}
    proc = LocalAgent()
    c = AgentClient(proc)
    c.open(str(tmp_path / "bad"))
    name = next((tmp_path / "flush16" / "new").iterdir()).name
    c.message("", [b"other ", b"bytes"], "new", name, None)
    with pytest.raises(AgentError, match="sha256"):
        c.sync()
    proc.kill()


def test_a_name_with_a_nul_byte_is_refused_before_it_reaches_a_sync_job(tmp_path):
    # sync jobs are NUL-separated fields: a NUL in a name would shift every later field
    proc = LocalAgent()
    c = AgentClient(proc)
    c.open(str(tmp_path / "Maildir"))
    body = b"Subject: 0\n\nbody\n"
    c.message("", [body], "new", name_for(0).replace(".h,", ".h\0x,"), 1e9)
    c.message("", [b"Subject: 1\n\nbody\n"], "new", name_for(1), 1e9)
    with pytest.raises(AgentError, match="bad message name"):
        c.sync()
    proc.kill()
    assert os.listdir(tmp_path / "Maildir" / "new") == []

def test_reimport_is_a_noop_and_deleted_mail_is_not_brought_back(client, tmp_path):
    root = tmp_path / "Maildir"
    client.open(str(root))
    first = import_mbox(client, io.BytesIO(MBOX), dirname="")
    assert first.durable == 4
    before = maildir_state(root)
    # known identities are not even sent; without them the agent still refuses duplicates
    known = client.scan().known("")
    again = import_mbox(client, io.BytesIO(MBOX), dirname="", known=known)
    assert (again.durable, again.already_present, again.bytes_sent) == (0, 4, 0)
    blind = import_mbox(client, io.BytesIO(MBOX), dirname="")
    assert (blind.durable, blind.already_present) == (0, 4)
    assert maildir_state(root) == before
    # the user deletes a message on the new server: the ledger keeps it from coming back
    victim = next((root / "cur").iterdir())
    victim.unlink()
    blind = import_mbox(client, io.BytesIO(MBOX), dirname="")
    assert blind.durable == 0 and not victim.exists()


def test_known_is_the_union_of_a_folders_files_and_ledger_lines(client, tmp_path):
    """What an import asks for (``known``, one text) is exactly what ``scan`` lists give:
    the identities of the folder's files and of its ledger lines, each once. Here a
    message the user deleted (its ledger line only), one whose ledger line was lost (its
    file only) and a folder that does not exist yet."""
    root = tmp_path / "Maildir"
    client.open(str(root))
    import_mbox(client, io.BytesIO(MBOX), dirname="")
    import_mbox(client, io.BytesIO(MBOX), dirname=".Work")
    deleted = next((root / "cur").iterdir())
    deleted.unlink()
    ledger = root / "mailplan-ledger"
    lines = ledger.read_text().splitlines(keepends=True)
    gone = parse_message_name(deleted.name).identity
    # a message line (its flags line, four fields, is no message's line: it may stay)
    lost = next(x for x in lines if x.startswith("\t") and x.count("\t") == 2
                and x != f"\t{gone[0]}\t{gone[1]}\n")
    ledger.write_text("".join(x for x in lines if x != lost))
    new = AgentClient(LocalAgent())  # a later run's agent, which reads the ledger afresh
    try:
        new.open(str(root))
        for folder in ("", ".Work", ".Later"):
            assert new.known(folder) == new.scan(folder).known(folder), folder
        known = new.known("")
        assert len(known) == 4 and gone in known
        _dir, digest, occ = lost.rstrip("\n").split("\t")
        assert (digest, int(occ)) in known
        assert len(new.known(".Work")) == 4 and new.known(".Later") == set()
    finally:
        new.pipe.kill()


@pytest.mark.parametrize("told", [True, False])
def test_ledger_lines_under_a_renamed_directorys_earlier_name_count_for_it(tmp_path, told):
    """A folder an earlier version imported into .inbox.x, whose messages the user
    deleted, the directory then renamed to today's .INBOX.x: told that .inbox.x is an
    earlier name of it (``F``'s ``also``), a later agent knows the deleted messages
    there and drops them when sent again; not told, it imports them (the lines count
    for .inbox.x only)."""
    root = tmp_path / "Maildir"
    first = AgentClient(LocalAgent())
    try:
        first.open(str(root))
        assert import_mbox(first, io.BytesIO(MBOX), dirname=".inbox.x").durable == 4
    finally:
        first.pipe.kill()
    for sub in ("new", "cur"):
        for f in (root / ".inbox.x" / sub).iterdir():
            f.unlink()
    (root / ".inbox.x").rename(root / ".INBOX.x")
    later = AgentClient(LocalAgent())
    try:
        later.open(str(root))
        later.create_folder(".INBOX.x", also=[".inbox.x"] if told else [])
        assert len(later.known(".INBOX.x")) == (4 if told else 0)
        blind = import_mbox(later, io.BytesIO(MBOX), dirname=".INBOX.x")
        assert (blind.durable, blind.already_present) == ((0, 4) if told else (4, 0))
    finally:
        later.pipe.kill()


def test_a_folder_the_writer_makes_gets_a_ledger_line_no_reader_takes_for_a_message(
        client, tmp_path):
    """``F`` that makes a folder (no cur/ and new/ there) appends ``dir TAB folder`` to
    the ledger, once: not for a folder already there. No reader counts it as a message
    (the agent's, parse_ledger, the count on the target), and the count on the target
    names the folders made, for a plan without the state's record of them."""
    from mailplan.connectors.local import LocalConnector
    from mailplan.facts.maildirs import parse_ledger, read_ledger_counts

    root = tmp_path / "Maildir"
    (root / ".Mine/cur").mkdir(parents=True)  # the user's own folder
    (root / ".Mine/new").mkdir()
    (root / ".Half/cur").mkdir(parents=True)  # no new/: no folder an IMAP server opens
    client.open(str(root))
    for folder in (".Sent", ".Sent", ".Mine", ".Half"):
        client.create_folder(folder)
    import_mbox(client, io.BytesIO(MBOX), dirname=".Work")
    client.sync()
    ledger = (root / "mailplan-ledger").read_text()
    assert [x for x in ledger.splitlines() if "\tfolder" in x] == [
        ".Sent\tfolder", ".Half\tfolder", ".Work\tfolder"]
    assert {d: len(v) for d, v in parse_ledger(ledger.encode()).items()} == {".Work": 4}
    counts: dict[str, set[str]] = {}
    assert read_ledger_counts(LocalConnector("newmail"), [str(root)], None, counts)[
        str(root)] == {".Work": 4, "/": len(ledger.encode())}
    assert counts == {str(root): {".Sent", ".Half", ".Work"}}
    client.open(str(root))
    assert client.scan().ledger == parse_ledger(ledger.encode())
    assert client.known(".Sent") == set() and len(client.known(".Work")) == 4


def test_a_grown_mailbox_imports_only_the_tail(client, tmp_path):
    root = tmp_path / "Maildir"
    client.open(str(root))
    journal = []
    first = import_mbox(client, io.BytesIO(MBOX), dirname="", on_durable=journal.extend)
    end = max(d.end for d in journal)
    occ = {e.sha256: e.occurrence + 1 for e, _b in read_mbox(io.BytesIO(MBOX))[0]}
    tail = SEP + b"Subject: new\n\nnew mail\n"
    grown = MBOX + b"\n" + tail
    second = import_mbox(client, io.BytesIO(grown[end:]), dirname="", offset=end,
                         occurrences=occ)
    assert (first.durable, second.durable) == (4, 1)
    assert len(maildir_state(root)) == 5


def test_existing_file_is_never_overwritten(client, tmp_path):
    root = tmp_path / "Maildir"
    client.open(str(root))
    import_mbox(client, io.BytesIO(MBOX), dirname="")
    name = next((root / "new").iterdir()).name
    client.begin("")
    client.data(b"different bytes")
    with pytest.raises(AgentError, match="sha256"):
        client.end("new", name, None)
        client.sync()


def test_subscriptions_merge_and_quota_refresh(client, tmp_path):
    root = tmp_path / "Maildir"
    client.open(str(root))
    (root / "subscriptions").write_text("Existing\n")
    assert client.subscribe({"subscriptions": ["Existing", "Work"],
                             "courierimapsubscribed": ["INBOX.Work"]}) == 2
    assert (root / "subscriptions").read_text() == "Existing\nWork\n"
    assert (root / "courierimapsubscribed").read_text() == "INBOX.Work\n"
    # a symbolic link is not read through (nor written): it is replaced by a file of the
    # lines asked for, the file it named left alone; a line not in UTF-8 is kept as is
    (tmp_path / "secret").write_text("Elsewhere\n")
    (root / "courierimapsubscribed").unlink()
    (root / "courierimapsubscribed").symlink_to(tmp_path / "secret")
    (root / "subscriptions").write_bytes(b"Existing\nWork\n\xff\n")
    assert client.subscribe({"subscriptions": ["Work", "Other"],
                             "courierimapsubscribed": ["INBOX.Work"]}) == 2
    assert not (root / "courierimapsubscribed").is_symlink()
    assert (root / "courierimapsubscribed").read_text() == "INBOX.Work\n"
    assert (tmp_path / "secret").read_text() == "Elsewhere\n"
    assert (root / "subscriptions").read_bytes() == b"Existing\nWork\n\xff\nOther\n"
    # dovecot's version 2 file (it rewrote it after a user's SUBSCRIBE on the target):
    # a name's levels go tab-separated, as dovecot itself writes and removes them
    (root / "subscriptions").write_text("V\t2\n\nLists\tpython\nWork\n")
    assert client.subscribe({"subscriptions": ["Work", "Lists.python", "Lists.py\tx"]}) == 1
    assert (root / "subscriptions").read_text() == (
        "V\t2\n\nLists\tpython\nWork\nLists\tpy\x01tx\n")
    assert client.refresh_quota() == {"maildirsize": False}
    (root / "maildirsize").write_text("10485760S\n0 0\n")
    import_mbox(client, io.BytesIO(MBOX), dirname="")
    total = sum(e.size for e, _b in read_mbox(io.BytesIO(MBOX))[0])
    assert client.refresh_quota()["bytes"] == total
    assert (root / "maildirsize").read_text() == f"10485760S\n{total} 4\n"


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_subscription_file_that_is_no_file_is_an_error_that_says_so(client, tmp_path,
                                                                      kind):
    """A directory (or a named pipe) where a subscription file goes is refused with a
    sentence naming it: it was an ``IsADirectoryError: [Errno 21] Is a directory: 3``
    (a pipe hung the writer), at every apply. It is left as it is."""
    root = tmp_path / "Maildir"
    client.open(str(root))
    path = root / "subscriptions"
    path.mkdir() if kind == "directory" else os.mkfifo(path)
    said = "a directory" if kind == "directory" else "not a regular file"
    done = threading.Event()

    def unblock() -> None:  # a writer that waits on the pipe is let go (the test fails)
        while not done.wait(0.2):
            with contextlib.suppress(OSError):  # no reader there (yet)
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))

    threading.Thread(target=unblock, daemon=True).start()
    try:
        with pytest.raises(AgentError, match=f"the subscription file {path} is {said}: "
                           r"no folder can be subscribed there \(move it away"):
            client.subscribe({"subscriptions": ["Work"],
                              "courierimapsubscribed": ["INBOX.Work"]})
    finally:
        done.set()
    assert path.is_dir() if kind == "directory" else stat.S_ISFIFO(path.stat().st_mode)


def test_keywords_become_dovecot_keyword_letters(client, tmp_path):
    """X-Keywords become letters after the flags in the file name, by the folder's
    dovecot-keywords: lines already there keep their numbers (dovecot's own, a user's
    labels), new keywords take free numbers, 26 at most; a keyword that is not an IMAP
    atom is not carried; a message with keywords is in cur/ even unseen."""
    root = tmp_path / "Maildir"
    client.open(str(root))
    (root / "dovecot-keywords").write_text("0 $Label1\n2 Work\n")
    words = " ".join(f"k{i}" for i in range(30))
    mbox = (b"From a@b Mon Jan  1 10:00:00 2001\nStatus: RO\nX-Keywords: Junk $Label1\n"
            b"Subject: one\n\nx\n\n"
            b"From a@b Mon Jan  1 10:00:00 2001\nX-Keywords: Work, bad(atom) \\Seen\n\ny\n\n"
            b"From a@b Mon Jan  1 10:00:00 2001\nX-Keywords: " + words.encode()
            + b"\n\nz\n\n")
    report = import_mbox(client, io.BytesIO(mbox), dirname="")
    client.sync()
    lines = (root / "dovecot-keywords").read_text().splitlines()
    assert lines[:3] == ["0 $Label1", "2 Work", "1 Junk"]
    # what was not carried is counted and named for apply's note: the second message's
    # two non-atoms, the third's k23 to k29 (the first five named)
    lost = report.keywords
    assert (lost.messages, lost.not_atoms, lost.no_letter, lost.more) == (
        2, ["bad(atom)", "\\Seen"], ["k23", "k24", "k25", "k26", "k27"], {"no_letter"})
    assert lost.text() == (
        "2 message(s) lost IMAP keywords, past the folder's 26 (dovecot-keywords letters "
        "a-z): k23, k24, k25, k26, k27 and more; not IMAP keywords (atoms of at most 64 "
        "characters): bad(atom), \\Seen (the messages and their other flags are imported)")
    assert len(lines) == 26 and sorted(int(x.split()[0]) for x in lines) == list(range(26))
    flags = sorted(parse_message_name(p.name).flags or "" for p in (root / "cur").iterdir())
    assert not list((root / "new").iterdir())
    assert flags[0] == "Sab" and flags[1] == "c"
    assert len(flags[2]) == 23 and flags[2] == "".join(sorted(flags[2]))  # 3 to 25: k0..k22
    # the same keywords for courier-imap: a file per message, named as the message up to
    # ":", a keyword per line (read by a real courier in test_mail_imap)
    courier = courier_keywords(root)
    by_flags = {parse_message_name(p.name).flags: p.name.partition(":")[0]
                for p in (root / "cur").iterdir()}
    assert courier[by_flags["Sab"]] == ["$Label1", "Junk"]
    assert courier[by_flags["c"]] == ["Work"]
    assert courier[by_flags[flags[2]]] == [f"k{i}" for i in range(23)]
    assert len(courier) == 3
    assert stat.S_IMODE((root / "courierimapkeywords").stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in (root / "courierimapkeywords").iterdir()} \
        == {0o600}
    assert not list((root / "tmp").glob("mailplan-*"))


def test_a_dovecot_keywords_link_is_not_read_and_a_directory_is_refused(client, tmp_path):
    """The writer reads a folder's dovecot-keywords as plan and verify do: not through a
    symbolic link (it is replaced by a file of the letters written, its target left
    alone), and a directory there is an error that says so, not a crash."""
    root = tmp_path / "Maildir"
    client.open(str(root))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("0 Other\n")
    (root / "dovecot-keywords").symlink_to(elsewhere)
    assert client.keyword_letters("", ["Work"]) == {"Work": "a"}
    assert not (root / "dovecot-keywords").is_symlink()
    assert (root / "dovecot-keywords").read_text() == "0 Work\n"
    assert elsewhere.read_text() == "0 Other\n"
    (root / ".Box" / "dovecot-keywords").mkdir(parents=True)
    with pytest.raises(AgentError, match=r"the keywords file .*/\.Box/dovecot-keywords is a "
                       r"directory: no IMAP keyword can be given a letter there \(move it"):
        client.keyword_letters(".Box", ["Work"])


def test_keyword_letters_follow_how_dovecot_keywords_is_read(tmp_path):
    """A dovecot-keywords with two lines for one number (not one dovecot writes) is read
    as verify reads it, the first line for a number counting: a keyword named only on a
    later line gets a free number, and courier's file says what that letter means."""
    from mailplan.mail.agent import Agent

    root = tmp_path / "Maildir"
    (root / "tmp").mkdir(parents=True)
    (root / "dovecot-keywords").write_text("0 A\n0 B\n1 A\n")
    agent = Agent(io.BytesIO())
    agent.root = str(root)
    letters = agent.keywords({"dir": "", "keywords": ["A", "B", "C"]})["letters"]
    names = keyword_letters((root / "dovecot-keywords").read_text())
    assert {k: names[v] for k, v in letters.items()} == {"A": "A", "B": "B", "C": "C"}
    assert agent._courier_text("", "S" + "".join(sorted(letters.values()))) == b"A\nB\nC\n"


def test_courier_keyword_files_are_shared_by_messages_with_the_same_keywords(client, tmp_path):
    """Messages of a batch with the same keywords get hard links to one keyword file (a
    link costs a third of a file); a message with other keywords gets its own; courier
    removing or renaming one file leaves the others' names in place."""
    root = tmp_path / "Maildir"
    client.open(str(root))
    msg = b"From a@b Mon Jan  1 10:00:00 2001\nX-Keywords: %s\nSubject: %d\n\nx\n\n"
    mbox = b"".join(msg % (b"NonJunk", i) for i in range(5)) + msg % (b"Junk", 5)
    import_mbox(client, io.BytesIO(mbox), dirname="")
    client.sync()
    files = list((root / "courierimapkeywords").iterdir())
    assert len(files) == 6
    texts = sorted(p.read_text() for p in files)
    assert texts == ["Junk\n"] + ["NonJunk\n"] * 5
    links = {p.read_text(): (p.stat().st_ino, p.stat().st_nlink) for p in files}
    assert links["NonJunk\n"][1] == 5 and links["Junk\n"][1] == 1
    assert len({p.stat().st_ino for p in files}) == 2


def test_a_courier_keyword_directory_that_is_a_link_is_not_written_through(client, tmp_path):
    """A folder's courierimapkeywords/ replaced by a symbolic link stops the sync with an
    error: no file is written where the link points."""
    root = tmp_path / "Maildir"
    client.open(str(root))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "courierimapkeywords").symlink_to(elsewhere)
    mbox = b"From a@b Mon Jan  1 10:00:00 2001\nX-Keywords: Junk\n\nx\n"
    with pytest.raises(AgentError, match="courierimapkeywords"):
        import_mbox(client, io.BytesIO(mbox), dirname="")
        client.sync()
    assert not list(elsewhere.iterdir())
    assert not list((root / "cur").iterdir())


def test_courier_keyword_file_taken_by_courier_is_not_linked_to(tmp_path):
    """When courier has renamed the file a batch links to (it folds an update into its
    :list once the message is in the folder), the next message gets a new file."""
    from mailplan.mail.agent import Agent

    root = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    (root / "dovecot-keywords").write_text("0 NonJunk\n")
    agent = Agent(io.BytesIO())
    agent.root = str(root)
    name = "1.M1P1_mp" + "a" * 64 + "_{}.host,S=1:2,Sa"
    agent._courier_keywords("", name.format(0))
    first = root / "courierimapkeywords" / name.format(0).partition(":")[0]
    first.rename(first.with_name(".29000000." + first.name))
    agent._courier_keywords("", name.format(1))
    second = root / "courierimapkeywords" / name.format(1).partition(":")[0]
    assert second.read_text() == "NonJunk\n" and second.stat().st_nlink == 1
    agent._courier_keywords("", name.format(2))  # linked to the second
    assert second.stat().st_nlink == 2
    # where there is no syncfs, the batch fsyncs the directory and each of these names
    kw_dir = root / "courierimapkeywords"
    assert list(agent._courier_paths()) == [str(kw_dir)] + [
        str(kw_dir / name.format(i).partition(":")[0]) for i in range(3)]


def _maildirsize_totals(root: Path) -> tuple[int, int]:
    lines = (root / "maildirsize").read_text().splitlines()[1:]
    return sum(int(x.split()[0]) for x in lines), sum(int(x.split()[1]) for x in lines)


def test_each_batch_is_counted_in_maildirsize_as_it_becomes_visible(client, tmp_path):
    """A batch made visible is added to vpopmail's quota accounting then, as a delivery
    is (a ``bytes count`` line): a run killed before the import's closing recount
    leaves maildirsize right, with no later run needed to fix it."""
    root = tmp_path / "Maildir"
    client.open(str(root))
    (root / "maildirsize").write_text("10485760S\n0 0\n")
    import_mbox(client, io.BytesIO(MBOX), dirname="")
    client.sync()  # no refresh_quota
    total = sum(e.size for e, _b in read_mbox(io.BytesIO(MBOX))[0])
    assert _maildirsize_totals(root) == (total, 4)
    assert client.refresh_quota()["bytes"] == total  # the recount agrees


def test_kill_mid_message_leaves_nothing_visible_and_restart_cleans_tmp(tmp_path,
                                                                       tmp_files):
    root = tmp_path / "Maildir"
    proc = LocalAgent()
    c = AgentClient(proc)
    c.open(str(root))
    c.begin("")
    c.data(b"Subject: partial\n\nhalf a mess")
    c.flush()
    # the file exists in tmp/ once the agent has read the frames; an anonymous one after
    # the marker has its name (the marker's own file is nameless for a moment before:
    # counted alone, a kill then left nothing, seen on a loaded machine)
    wait_for(lambda: unsynced(proc, root, tmp_files) == 1
             and len(os.listdir(root / "tmp")) == 1, "the message begun in tmp/")
    proc.kill()
    # left: the partial file, named; or the marker only (an anonymous file dies with
    # the process that held it)
    assert len(os.listdir(root / "tmp")) == 1
    if tmp_files == "anonymous":
        assert (root / "tmp" / os.listdir(root / "tmp")[0]).stat().st_size == 0
    assert not list((root / "new").iterdir()) and not list((root / "cur").iterdir())
    proc2 = LocalAgent()
    c2 = AgentClient(proc2)
    assert c2.open(str(root))["cleaned"] == 1
    assert not list((root / "tmp").iterdir())
    c2.quit()
    assert proc2.wait() == 0


class KillingPipe:
    """Forwards writes to an agent and SIGKILLs it after ``limit`` bytes."""

    def __init__(self, agent: LocalAgent, limit: int) -> None:
        self.agent, self.limit, self.sent = agent, limit, 0

    def write(self, data: bytes) -> None:
        if self.sent + len(data) > self.limit:
            cut = self.limit - self.sent
            if cut > 0:
                self.agent.write(data[:cut])
            self.agent.kill()
            raise BrokenPipeError("agent killed")
        self.sent += len(data)
        self.agent.write(data)

    def read(self, size: int = 65536) -> bytes:
        return self.agent.read(size)

    def readline(self) -> bytes:
        return self.agent.readline()

    def close_stdin(self) -> None:
        self.agent.close_stdin()


KEYWORDS = [b"", b"X-Keywords: NonJunk\n", b"", b"X-Keywords: $Label1 Junk\n"]


def big_mbox(count: int = 40) -> bytes:
    """Messages of many sizes, some seen, some with IMAP keywords."""
    parts = []
    for i in range(count):
        parts.append(SEP + b"Subject: m%d\n%s%s\n" % (i, b"Status: RO\n" if i % 3 else b"",
                                                     KEYWORDS[i % 4])
                     + b"x" * (i * 997 % 5000) + b"\n\n")
    return b"".join(parts)


def courier_keywords(folder: Path) -> dict[str, list[str]]:
    """Message name (up to ":") -> its keywords, by courier's per-message files."""
    kw_dir = folder / "courierimapkeywords"
    return {p.name: p.read_text().splitlines() for p in kw_dir.iterdir()} \
        if kw_dir.exists() else {}


def keywords_by_letters(folder: Path) -> dict[str, list[str]]:
    """Message name (up to ":") -> its keywords, by its letters and dovecot-keywords."""
    path = folder / "dovecot-keywords"
    names = keyword_letters(path.read_text()) if path.exists() else {}
    out = {}
    for p in (folder / "cur").iterdir():
        letters = [c for c in p.name.rpartition(":2,")[2] if c.islower()]
        if letters:
            out[p.name.partition(":")[0]] = sorted(names[c] for c in letters)
    return out


@pytest.mark.parametrize("limit", [100, 3000, 20_000, 45_000, 70_000, 90_000])
def test_chaos_kill_at_many_points_then_rerun_equals_clean_run(tmp_path, limit):
    data = big_mbox()
    clean = tmp_path / "clean"
    proc = LocalAgent()
    c = AgentClient(proc, flush_bytes=1024)
    c.open(str(clean))
    import_mbox(c, io.BytesIO(data), dirname=".F", batch_messages=7)
    c.quit()
    root = tmp_path / "chaos"
    proc = LocalAgent()
    c = AgentClient(KillingPipe(proc, limit), flush_bytes=1024)
    journal = []
    with pytest.raises(AgentError):
        c.open(str(root))
        import_mbox(c, io.BytesIO(data), dirname=".F", batch_messages=7,
                    on_durable=journal.extend)
    # journaled messages are really there
    for d in journal:
        assert any(p.name == d.name for p in (root / ".F").rglob("*"))
    proc = LocalAgent()
    c = AgentClient(proc)
    if root.exists():
        c.open(str(root))
    else:
        c.open(str(root))
    import_mbox(c, io.BytesIO(data), dirname=".F", known=c.scan().known(".F"))
    c.quit()
    strip = {(f, s, i, fl, b) for f, s, i, fl, b, _t in maildir_state(clean)}
    assert {(f, s, i, fl, b) for f, s, i, fl, b, _t in maildir_state(root)} == strip
    assert not list((root / ".F" / "tmp").iterdir())
    # every visible message with keywords has them for courier too (its file is written
    # before the message is linked); a file for a message killed before its link may be
    # left over, courier removes those
    by_letters = keywords_by_letters(root / ".F")
    assert len(by_letters) == 20
    courier = courier_keywords(root / ".F")
    assert {n: sorted(courier.get(n, [])) for n in by_letters} == by_letters
    assert keywords_by_letters(clean / ".F").values() and \
        sorted(courier_keywords(clean / ".F").values()) == sorted(
            keywords_by_letters(clean / ".F").values())
    # every visible message has its ledger line, and no pending record is left
    ledger = (root / "mailplan-ledger").read_text()
    assert all(f".F\t{i.replace('/', chr(9))}\n" in ledger for _f, _s, i, *_r in
               maildir_state(root))
    assert not list(root.glob("mailplan-pending-*"))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(
    st.sampled_from([b"", b"Status: O\n", b"Status: RO\n", b"Status: RO\nX-Status: AFT\n"]),
    st.integers(1, 28),
    st.binary(max_size=300).map(lambda b: b.replace(b"\nFrom ", b"\n>From ")),
    st.booleans()), max_size=8))
def test_property_every_message_arrives_once_with_bytes_flags_and_mtime(tmp_path_factory,
                                                                        msgs):
    root = tmp_path_factory.mktemp("prop") / "Maildir"
    data = b""
    for book, day, body, blank in msgs:
        body = b"Subject: p\n\n" + (body if not body.startswith(b"From ") else b">" + body)
        if not body.endswith(b"\n"):
            body += b"\n"
        data += b"From x  Mon Jan %2d 10:00 2001\n" % day + book + body
        if blank or body.endswith(b"\n\n"):
            data += b"\n"
    expected = read_mbox(io.BytesIO(data))[0]
    proc = LocalAgent()
    c = AgentClient(proc)
    c.open(str(root))
    report = import_mbox(c, io.BytesIO(data), dirname="")
    c.quit()
    assert report.durable == len(msgs) == len(expected)
    got = sorted((s, f, b, t) for _fo, s, _i, f, b, t in maildir_state(root))
    want = sorted((e.subdir, None if e.subdir == "new" else e.flags, b, int(e.arrival))
                  for e, b in expected)
    assert got == want


def test_syncs_overlap_the_stream_and_replies_stay_in_request_order(client, tmp_path):
    root = tmp_path / "Maildir"
    client.open(str(root))
    journaled: list[list] = []
    report = import_mbox(client, io.BytesIO(big_mbox()), dirname="", batch_messages=3,
                         syncs_in_flight=2, on_durable=journaled.append)
    assert report.durable == 40 and sum(map(len, journaled)) == 40
    # each sync during the read took one batch of 3; the last took the rest (1) with the
    # batches read but not asked for yet (at most MAX_PENDING): one flush at the end
    assert all(len(b) == 3 for b in journaled[:-1])
    assert len(journaled[-1]) in {1 + 3 * k for k in range(MAX_PENDING + 1)}
    assert len(maildir_state(root)) == 40
    # a request sent while a sync is outstanding waits for it; its result is kept
    client.sync_async()
    assert client.outstanding == 1
    assert len(client.scan().known("")) == 40
    assert len(client.scan("").known("")) == 40 and client.scan(".Other").known("") == set()
    assert client.outstanding == 0
    assert [(r.durable, r.present) for r in client.synced()] == [([], [])]
    assert client.synced() == []


def five_sent_three_synced(client: AgentClient, root: Path) -> None:
    """Open ``root``, send five messages and sync the first three: only they are there."""
    client.open(str(root))
    for i in range(5):
        client.message("", [b"Subject: %d\n\nbody\n" % i], "new", name_for(i), 1e9)
    client.sync_async(through=3)
    (first,) = client.synced()
    assert len(first.durable) == 3 and len(maildir_state(root)) == 3


def test_a_sync_through_n_makes_only_the_first_n_messages_visible(tmp_path, tmp_files):
    root = tmp_path / "Maildir"
    client = AgentClient(proc := LocalAgent())
    five_sent_three_synced(client, root)
    assert unsynced(proc, root, tmp_files) == 2  # written, invisible until a later sync
    client.sync_async()
    (rest,) = client.synced()
    assert len(rest.durable) == 2 and len(maildir_state(root)) == 5
    # nothing left, not even the marker of anonymous files: it goes with the last batch
    assert unsynced(proc, root, tmp_files) == 0 and os.listdir(root / "tmp") == []
    client.quit()
    assert proc.wait() == 0


@pytest.mark.parametrize("how", ["between messages", "inside a frame", "mid-message"])
def test_an_agent_dropped_before_a_sync_removes_its_own_tmp_files(tmp_path, how):
    """The sender drops the agent (closes its input: the source changed under the read)
    before syncing the last messages: they never become visible, and the agent removes
    them from tmp/ as it exits, even while another agent's files sit there."""
    root = tmp_path / "Maildir"
    client = AgentClient(proc := LocalAgent())
    client.open(str(root))
    other = root / "tmp" / f"mailplan-{os.getpid()}-1.tmp"  # a live agent's file
    other.write_bytes(b"in progress")
    for i in range(5):
        client.message("", [b"Subject: %d\n\nbody\n" % i], "new", name_for(i), 1e9)
    client.sync_async(through=2)
    (first,) = client.synced()
    if how == "mid-message":
        client.begin("")
        client.data(b"Subject: half")
    client.flush()
    if how == "inside a frame":
        proc.write(b"M\x00\x00\x01\x00partial")
    proc.close_stdin()
    proc.wait()
    assert len(first.durable) == 2 and len(maildir_state(root)) == 2
    assert os.listdir(root / "tmp") == [other.name]


def test_a_zombie_counts_as_gone_so_its_tmp_files_are_cleaned(tmp_path):
    """An agent orphaned when its SSH session ends is reparented to PID 1, which may reap
    it late: its stale tmp/ files are removed while it is still a zombie."""
    from mailplan.mail.agent import pid_alive

    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        # until it has exited (a zombie: this process does not wait)
        wait_for(lambda: Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
                 == b"Z", "the child a zombie")
        os.kill(pid, 0)  # still there for kill(2)
        assert not pid_alive(pid)
        assert pid_alive(os.getpid())
        root = tmp_path / "Maildir"
        (root / "tmp").mkdir(parents=True)
        (root / "tmp" / f"mailplan-{pid}-1.tmp").write_bytes(b"left by a zombie")
        proc = LocalAgent()
        client = AgentClient(proc)
        assert client.open(str(root))["cleaned"] == 1
        client.quit()
        assert proc.wait() == 0
    finally:
        os.waitpid(pid, 0)


def test_a_message_another_writer_synced_meanwhile_is_not_made_visible_twice(tmp_path):
    """A writer dropped by a failed run may still be finishing the sync it was asked for
    when the next run's writer has already looked at the Maildir: whichever syncs second
    finds the other's copies (the ledger grew under the Maildir's lock) and drops its own,
    even in a later batch."""
    root = tmp_path / "Maildir"
    bodies = [b"Subject: %d\n\nbody\n" % i for i in range(4)]
    old, new = AgentClient(old_proc := LocalAgent()), AgentClient(new_proc := LocalAgent())
    old.open(str(root))
    for i in (0, 1, 2):
        old.message("", [bodies[i]], "new", name_for(i), 1e9)
    old.flush()
    new._request(b"O", {"root": str(root), "writer_wait": 0})  # not waiting for the old
    assert new.scan().known("") == set()
    for i in (1, 2, 3):
        new.message("", [bodies[i]], "new", name_for(i).replace("P1_", "P2_"), 1e9)
    new.sync_async()
    (synced,) = new.synced()
    assert len(synced.durable) == 3
    old.sync_async(through=2)  # messages 0 and 1: 1 is there now
    (first,) = old.synced()
    old.sync_async()  # message 2, in a later batch: there too
    (second,) = old.synced()
    assert [n for _d, n in first.durable] == [name_for(0)]
    assert [n for _d, n in first.present] == [name_for(1)]
    assert second.durable == [] and [n for _d, n in second.present] == [name_for(2)]
    digests = sorted(parse_message_name(p.name).digest for p in (root / "new").iterdir())
    assert len(digests) == 4 and len(set(digests)) == 4
    assert os.listdir(root / "tmp") == []
    for client, proc in ((old, old_proc), (new, new_proc)):
        client.quit()
        assert proc.wait() == 0


def test_open_waits_a_while_for_a_writer_still_finishing_in_the_same_maildir(tmp_path,
                                                                             tmp_files):
    """The writer of a killed run may still be finishing its last sync when the next
    run's writer opens the Maildir: the new one waits for it (bounded), so no file of
    the old one is left in tmp/ after the new run. Files named after a running process
    that is not a writer (a dead writer's id, reused) are not waited for, and go as a
    dead writer's do."""
    import threading

    root = tmp_path / "Maildir"
    old = AgentClient(old_proc := LocalAgent())
    old.open(str(root))
    for i in range(3):
        old.message("", [b"Subject: %d\n\nbody\n" % i], "new", name_for(i), 1e9)
    old.flush()
    # the files are in tmp/ once the old writer read the frames
    wait_for(lambda: unsynced(old_proc, root, tmp_files) == 3, "the old writer's files")
    (root / "tmp" / f"mailplan-{os.getpid()}-9.tmp").write_bytes(b"")  # not a writer
    new = AgentClient(new_proc := LocalAgent())
    opened: list[dict] = []
    opener = threading.Thread(target=lambda: opened.append(new.open(str(root))))
    with directory_opens(root / "tmp") as listed:
        opener.start()
        # the new writer looked in tmp/ three times (an open that does not wait looks
        # twice: once to find writers, once to clean): it found the old writer there and
        # waits for it, however late it started (a sleep here was not always enough: the
        # old one was gone before the new one looked, and it reported a wait of 0 s)
        listed(3)
    assert opener.is_alive() and not opened  # waiting for the old writer
    old_proc.close_stdin()  # dropped: it removes its unsynced files and ends
    opener.join(timeout=30)
    assert opened and opened[0]["waited"] > 0  # it reports the wait
    assert os.listdir(root / "tmp") == []
    old_proc.wait()
    # a writer that does not end is waited for only so long
    stuck = AgentClient(stuck_proc := LocalAgent())
    stuck.open(str(root))
    stuck.message("", [b"Subject: 0\n\nbody\n"], "new", name_for(0), 1e9)
    stuck.flush()
    # its marker named too (see test_kill_mid_message_leaves_nothing_visible_...)
    wait_for(lambda: unsynced(stuck_proc, root, tmp_files) == 1
             and len(os.listdir(root / "tmp")) == 1, "the stuck writer's file")
    late = AgentClient(late_proc := LocalAgent())
    # bounded by writer_wait, not by the default (WRITER_WAIT, 30 s)
    assert 0.3 <= late._request(b"O", {"root": str(root), "writer_wait": 0.3})["waited"] < 15
    for client, proc in ((new, new_proc), (late, late_proc), (stuck, stuck_proc)):
        client.quit()
        assert proc.wait() == 0


def name_for(i: int) -> str:
    import hashlib

    from mailplan.mail.maildir import message_name

    body = b"Subject: %d\n\nbody\n" % i
    return message_name(arrival=1e9, usec=i, pid=1, digest=hashlib.sha256(body).hexdigest(),
                        occurrence=0, host="h", size=len(body), flags=None)


def test_the_stream_goes_on_while_a_batch_is_checked_and_syncs_wait_for_the_check(
        client, tmp_path):
    import threading

    root = tmp_path / "Maildir"
    client.open(str(root))
    second_batch_read = threading.Event()
    seen_during_check: list[int] = []
    boundaries: list[int] = []

    def checkpoint() -> Callable[[], None]:
        boundaries.append(client.ended)
        if len(boundaries) == 2:
            second_batch_read.set()

        def check() -> None:
            if len(boundaries) == 1:  # the first check ends only once the next batch is read
                assert second_batch_read.wait(30)
                seen_during_check.append(len(maildir_state(root)))
        return check

    journaled: list[list] = []
    report = import_mbox(client, io.BytesIO(big_mbox()), dirname="", batch_messages=10,
                         checkpoint=checkpoint, on_durable=journaled.append)
    assert boundaries == [10, 20, 30, 40]
    assert seen_during_check == [0]  # nothing was synced before its check passed
    assert [len(b) for b in journaled] == [10, 10, 10, 10]  # each sync took its batch only
    assert report.durable == 40 and len(maildir_state(root)) == 40


def test_batches_still_waiting_for_their_check_when_the_read_ends_go_in_one_sync(
        client, tmp_path):
    """Both batches' checks end only once the read has reached the end of the stream:
    then the two batches and the rest are made durable by one sync, not three in turn."""
    import threading

    read_all = threading.Event()

    class Stream(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            data = super().read(size)
            if not data:
                read_all.set()
            return data

    def checkpoint() -> Callable[[], None]:
        return lambda: None if read_all.wait(30) else pytest.fail("the read did not end")

    root = tmp_path / "Maildir"
    client.open(str(root))
    journaled: list[list] = []
    report = import_mbox(client, Stream(big_mbox(25)), dirname="", batch_messages=10,
                         checkpoint=checkpoint, on_durable=journaled.append)
    assert [len(b) for b in journaled] == [25]
    assert report.durable == 25 and len(maildir_state(root)) == 25
    assert message_lines(root) == 25


def test_a_failed_background_sync_is_reported_and_stays_failed(client, tmp_path):
    root = tmp_path / "Maildir"
    client.open(str(root))
    (root / "mailplan-ledger").mkdir()  # the sync process cannot append the ledger
    with pytest.raises(AgentError, match="IsADirectoryError"):
        import_mbox(client, io.BytesIO(big_mbox()), dirname="", batch_messages=5)
    with pytest.raises(AgentError, match="IsADirectoryError"):
        client.scan()


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (read from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def test_one_agent_syncs_into_each_maildir_it_opens_in_turn(client, tmp_path):
    # the sync process is forked at the first sync, holding that Maildir's directories;
    # later batches of another Maildir must land in that one
    roots = [tmp_path / "a" / "Maildir", tmp_path / "b" / "Maildir"]
    for root in roots:
        root.parent.mkdir()
        client.open(str(root))
        report = import_mbox(client, io.BytesIO(big_mbox()), dirname="", batch_messages=7)
        assert report.durable == 40
    for root in roots:
        assert len(maildir_state(root)) == 40
        assert message_lines(root) == 40
        assert os.listdir(root / "tmp") == []


def resident_bytes(path: Path) -> int:
    """How much of ``path`` is in the page cache (util-linux's fincore)."""
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                         check=True, capture_output=True, text=True).stdout
    return int(out.strip())


def test_imported_messages_leave_the_page_cache_once_durable(client, tmp_path, tmp_files):
    """The agent drops each message's pages once its batch is synced and linked (the next
    files reuse them): after an import none of the messages is cached, where a file
    written and synced without that stays cached. (Named files, the agent's way without
    ``O_TMPFILE``, stay cached: it does not open them again for that.)"""
    if tmp_files == "named":
        pytest.skip("files named in tmp/ are closed before their sync, not dropped")
    control = tmp_path / "control"
    control.write_bytes(b"x" * 65536)
    with control.open("rb+") as f:
        os.fsync(f.fileno())
    if resident_bytes(control) == 0:
        pytest.skip("this filesystem does not keep written files in the page cache")
    root = tmp_path / "Maildir"
    client.open(str(root))
    report = import_mbox(client, io.BytesIO(big_mbox()), dirname="", batch_messages=7)
    client.quit()
    files = [p for sub in ("new", "cur") for p in (root / sub).iterdir()]
    assert report.durable == 40 == len(files)
    assert sum(p.stat().st_size for p in files) > 65536
    assert [p.name for p in files if resident_bytes(p)] == []
    assert resident_bytes(control) == 65536


def test_past_its_budget_of_open_files_the_agent_names_files_and_frees_synced_ones(
        tmp_path, tmp_files):
    """Anonymous files stay open until their batch is linked: with an open-file limit of
    4,400 the agent may hold 2,136. The stream runs ahead of the syncs, so it reaches
    that: it closes what the sync process acknowledged (the pipe it learns that from,
    made at the first sync, has a descriptor past 1,024) and names the rest in tmp/.
    Every message lands once, with its ledger line, and nothing is left in tmp/."""
    if tmp_files == "named":
        pytest.skip("this test sets its own open-file limit")
    mbox = b"".join(SEP + b"Subject: %d\n\nbody %d\n\n" % (i, i) for i in range(5000))
    root = tmp_path / "Maildir"
    client = AgentClient(proc := _LocalAgent(wrapper=("prlimit", "--nofile=4400:4400")))
    client.open(str(root))
    report = import_mbox(client, io.BytesIO(mbox), dirname="", batch_messages=1200)
    client.quit()
    assert proc.wait() == 0
    assert report.durable == 5000 and len(maildir_state(root)) == 5000
    assert message_lines(root) == 5000
    assert os.listdir(root / "tmp") == []


def test_anonymous_files_work_in_a_pid_namespace_whose_proc_is_another_namespaces(
        tmp_path, tmp_files):
    """In a PID namespace with the parent's /proc (``unshare --pid`` without remounting
    it), the agent's own process id names another process in /proc: it finds itself
    through /proc/self instead, so its files are linked from its own descriptors."""
    if tmp_files == "named":
        pytest.skip("this test runs the agent its own way")
    if subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True,
                      check=False).returncode != 0:
        pytest.skip("unshare --pid is not permitted here")
    root = tmp_path / "Maildir"
    client = AgentClient(proc := _LocalAgent(wrapper=("unshare", "--pid", "--fork")))
    five_sent_three_synced(client, root)
    # two messages written, not visible: anonymous, so tmp/ holds the (empty) marker only
    (marker,) = os.listdir(root / "tmp")
    assert (root / "tmp" / marker).stat().st_size == 0
    client.quit()
    assert proc.wait() == 0
    assert len(maildir_state(root)) == 5 and os.listdir(root / "tmp") == []


def test_without_proc_the_agent_names_its_files_in_tmp(tmp_path, tmp_files):
    """Anonymous files are linked through /proc: where it is missing (here an empty
    /proc in a mount namespace of the agent's own), each message is a named file in
    tmp/, renamed into place."""
    if tmp_files == "named":
        pytest.skip("this test runs the agent its own way")
    hide = ("unshare", "--mount", "sh", "-c", 'mount -t tmpfs none /proc && exec "$0" "$@"')
    if subprocess.run([*hide, "true"], capture_output=True, check=False).returncode != 0:
        pytest.skip("unshare --mount is not permitted here")
    root = tmp_path / "Maildir"
    client = AgentClient(proc := _LocalAgent(wrapper=hide))
    five_sent_three_synced(client, root)
    assert len(os.listdir(root / "tmp")) == 2  # the two unsynced messages, named
    client.quit()
    assert proc.wait() == 0
    assert len(maildir_state(root)) == 5 and os.listdir(root / "tmp") == []


def test_where_syncfs_fails_each_file_is_fsynced(tmp_path, tmp_files):
    """Where syncfs is missing or fails (here strace makes every call fail with ENOSYS),
    each batch fsyncs what it makes durable, in the sync process: before the links every
    message file and the list of pending identities, after them the directories the
    messages went into, the Maildir, courier's keyword files with their directory, and
    the ledger. The result is the same Maildir."""
    require(shutil.which("strace"), "strace")
    log = tmp_path / "strace.log"
    limit = ("prlimit", "--nofile=128:128") if tmp_files == "named" else ()
    trace = ("strace", "-f", "-qq", "-y", "-e", "trace=fsync,syncfs",
             "-e", "inject=syncfs:error=ENOSYS", "-o", str(log))
    root = tmp_path / "Maildir"
    client = AgentClient(proc := _LocalAgent(wrapper=(*limit, *trace)))
    client.open(str(root))
    mbox = b"".join(b"From a@b Mon Jan  1 10:00:00 2001\nStatus: RO\n%sSubject: %d\n\nx\n\n"
                    % (KEYWORDS[i % 4], i) for i in range(6))
    import_mbox(client, io.BytesIO(mbox), dirname="")
    import_mbox(client, io.BytesIO(mbox), dirname=".Work")
    client.quit()
    assert proc.wait() == 0
    calls = log.read_text().splitlines()
    syncfs = [c for c in calls if " syncfs(" in c]
    assert syncfs and all("ENOSYS" in c and "INJECTED" in c for c in syncfs)
    sync_process = {c.split()[0] for c in syncfs}  # the writer fsyncs its dovecot-keywords
    synced = [c.split("<", 1)[1].split(">", 1)[0] for c in calls
              if " fsync(" in c and c.rstrip().endswith("= 0") and c.split()[0] in sync_process]
    # the message files, each fsynced once, while still in tmp/ (anonymous: tmp/#INODE)
    in_tmp = [p for p in synced if p.startswith((f"{root}/tmp/", f"{root}/.Work/tmp/"))]
    assert len(in_tmp) == 12 and len(set(in_tmp)) == 12
    courier = {f"{folder}/courierimapkeywords/{name}" for folder in (root, root / ".Work")
               for name in courier_keywords(folder)}
    assert len(courier) == 6  # three keyworded messages in each folder
    assert {str(root), f"{root}/cur", f"{root}/.Work/cur", f"{root}/mailplan-ledger",
            f"{root}/courierimapkeywords", f"{root}/.Work/courierimapkeywords",
            *courier} <= set(synced)
    assert any(p.startswith(f"{root}/mailplan-pending-") for p in synced)
    assert len(maildir_state(root)) == 12
    assert courier_keywords(root) == keywords_by_letters(root)


def test_a_folders_ledger_line_is_durable_when_written(tmp_path):
    """The line ``dir TAB folder`` a writer appends when it makes a folder became durable
    only with the next batch's sync, and none may follow (a folder with no message to
    import): a crash could lose it, and a plan without the state's record would make the
    folder again after the user deleted it. The writer now fsyncs the folder's
    directories, then the ledger and the Maildir, when it writes the line; a folder that
    was there already costs none of it."""
    require(shutil.which("strace"), "strace")
    log = tmp_path / "strace.log"
    root = tmp_path / "Maildir"
    trace = ("strace", "-f", "-qq", "-y", "-e", "trace=fsync,syncfs", "-o", str(log))
    client = AgentClient(proc := _LocalAgent(wrapper=trace))
    client.open(str(root))
    client.create_folder(".Work")
    assert client.known(".Work") == set()  # a reply: the folder's request is done
    client.create_folder(".Work")  # there: no line, no sync
    client.known(".Work")
    client.quit()
    assert proc.wait() == 0
    synced = [c.split("<", 1)[1].split(">", 1)[0] for c in log.read_text().splitlines()
              if " fsync(" in c and c.rstrip().endswith("= 0")]
    ledger = f"{root}/mailplan-ledger"
    assert (root / "mailplan-ledger").read_text() == ".Work\tfolder\n"
    assert synced == [f"{root}/.Work", str(root), ledger, str(root)], synced


def test_the_sync_process_dies_with_the_agent_even_in_the_middle_of_a_batch(tmp_path):
    root = tmp_path / "Maildir"
    proc = LocalAgent()
    c = AgentClient(proc)
    c.open(str(root))
    # the sync process renames the batch, then blocks opening the ledger (a FIFO)
    os.mkfifo(root / "mailplan-ledger")
    for i in range(3):
        c.message("", [b"Subject: %d\n\nbody\n" % i], "new", name_for(i), 1e9)
    c.sync_async()
    import time
    deadline = time.monotonic() + 30
    while len(os.listdir(root / "new")) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    (syncer,) = children_of(proc.proc.pid)
    try:
        proc.kill()
        while Path(f"/proc/{syncer}").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        try:  # it may go between any two looks (ENOENT, ESRCH): gone
            alive = "Z" not in Path(f"/proc/{syncer}/stat").read_text().rsplit(")", 1)[1]\
                .split()[0]
        except (FileNotFoundError, ProcessLookupError):
            alive = False
        assert not alive, "the sync process outlived the agent"
    finally:  # let a stray sync process through its open, to its end
        with contextlib.suppress(OSError):
            os.close(os.open(root / "mailplan-ledger", os.O_RDONLY | os.O_NONBLOCK))


def test_a_sync_process_killed_between_batches_stops_the_agent_with_an_error(tmp_path):
    import threading

    proc = LocalAgent()
    c = AgentClient(proc)
    c.open(str(tmp_path / "Maildir"))
    c.message("", [b"Subject: 0\n\nbody\n"], "new", name_for(0), 1e9)
    c.sync_async()
    assert len(c.synced()[0].durable) == 1
    (syncer,) = children_of(proc.proc.pid)
    os.kill(syncer, 9)
    # the next batch gets an error, not a wait for a reply that never comes
    outcome: list[BaseException | None] = []

    def next_batch() -> None:
        try:
            c.message("", [b"Subject: 1\n\nbody\n"], "new", name_for(1), 1e9)
            c.sync()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome.append(exc)

    waiting = threading.Thread(target=next_batch, daemon=True)
    waiting.start()
    waiting.join(30)
    before_kill = list(outcome)  # (killing the agent would end any wait with an error)
    proc.kill()
    assert before_kill and isinstance(before_kill[0], AgentError), before_kill
    assert "sync process ended" in str(before_kill[0]) or isinstance(before_kill[0],
                                                                      AgentLost)


def test_a_quit_agent_leaves_no_sync_process_behind(tmp_path):
    proc = LocalAgent()
    c = AgentClient(proc)
    c.open(str(tmp_path / "Maildir"))
    import_mbox(c, io.BytesIO(big_mbox()), dirname="", batch_messages=7)
    (syncer,) = children_of(proc.proc.pid)
    c.quit()
    assert proc.wait() == 0
    assert not Path(f"/proc/{syncer}").exists()  # ended and reaped by the agent


@pytest.mark.parametrize("noatime", [True, False], ids=["dd-noatime", "head-tail"])
@pytest.mark.parametrize("checked", [True, False])
def test_a_spool_rewritten_during_a_long_import_never_shows_a_spliced_message(tmp_path,
                                                                              checked,
                                                                              noatime):
    from mailplan.connectors.local import LocalConnector
    from mailplan.errors import SourceChanged
    from mailplan.mail.snapshot import SnapshotStream

    msgs = [SEP + b"Subject: m%d\n\n" % i + b"line %d of a long message\n" % i * 120 + b"\n"
            for i in range(3000)]  # ~3.6 KB each: ~11 MB, far more than any pipe holds
    spool = tmp_path / "spool"
    spool.write_bytes(b"".join(msgs))
    originals = {b for _e, b in read_mbox(io.BytesIO(spool.read_bytes()))[0]}
    stream = SnapshotStream(LocalConnector("oldmail"), str(spool), 0, spool.stat().st_size,
                            step="+ mailbox test", noatime=noatime)
    boundaries: list[int] = []
    first_checked = threading.Event()

    def reader_expunges_then_checkpoint() -> Callable[[], None] | None:
        boundaries.append(len(boundaries))
        if len(boundaries) == 2:  # a mail reader deletes message 5 in place: the rest shifts
            # after the first batch's check ran (on its own thread): run later, it would
            # find the rewrite too, rightly, and nothing would become visible
            assert not checked or first_checked.wait(30)
            with open(spool, "r+b") as fh:
                fh.write(b"".join(msgs[:5] + msgs[6:]))
                fh.truncate()
        check = stream.checkpoint() if checked else None
        if check is None or len(boundaries) != 1:
            return check

        def first_check() -> None:
            try:
                check()
            finally:
                first_checked.set()
        return first_check

    root = tmp_path / "Maildir"
    proc = LocalAgent()
    client = AgentClient(proc)
    client.open(str(root))
    with pytest.raises(SourceChanged, match="rewritten while it was read" if checked
                       else "shrank while it was read"):  # found only at the end
        import_mbox(client, stream, dirname="", batch_messages=400,
                    checkpoint=reader_expunges_then_checkpoint)
    proc.close_stdin()  # dropped: it finishes the syncs asked for (not a kill racing them)
    proc.wait()
    visible = [b for _f, _s, _i, _fl, b, _t in maildir_state(root)]
    spliced = [b for b in visible if b not in originals]
    if checked:  # only the batch read before the rewrite became visible, all of it whole
        assert len(visible) == 400 and not spliced
    else:  # without the check, batches read after the rewrite were made visible
        assert len(boundaries) > 2 and spliced


#: a mail reader's rewrite of the spool (an expunge, a flag change) as c-client's mbox
#: driver makes it: under the spool's dot-lock (``NAME.lock``, made exclusively) and an
#: exclusive flock and fcntl lock on the spool, the file is rewritten in place (from the
#: start here, as fast as it can be) and cut to its new size; then the locks go
REWRITE = """
import fcntl, os, sys
spool, keep = sys.argv[1], sys.stdin.buffer.read()
dot = os.open(spool + ".lock", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
with open(spool, "r+b") as fh:
    fcntl.flock(fh, fcntl.LOCK_EX)
    fcntl.lockf(fh, fcntl.LOCK_EX)
    fh.write(keep)
    fh.truncate()
    fh.flush()
    fcntl.lockf(fh, fcntl.LOCK_UN)
    fcntl.flock(fh, fcntl.LOCK_UN)
os.close(dot)
os.unlink(spool + ".lock")
"""


@pytest.mark.parametrize("listed", ["by-name", "listed", "by-hand"])
@pytest.mark.parametrize("noatime", [True, False], ids=["dd-noatime", "head-tail"])
@pytest.mark.parametrize("rewrite", ["expunge", "flag"])
def test_a_rewrite_that_overtakes_the_read_after_a_check_passed_shows_no_spliced_message(
        tmp_path, noatime, rewrite, listed, monkeypatch):
    """The rewrite comes right after a batch's check passed, while the next batch is
    read: the read holds the old file up to where it was (what the source's read had
    taken ahead of mailplan), then the new one, so one message is spliced from the two.
    By that batch's check the rewrite is done: both windows are the new file's, and only
    the bytes between tell. Nothing read after the rewrite becomes visible, and what
    did is whole. ``expunge``: message 5 deleted (the file shrinks: without the check
    only the end's count stops the read, after the spliced batch became visible);
    ``flag``: message 5 marked read (``Status: O`` -> ``Status: RO``, one byte more:
    without the check the import ends as if nothing happened, the spliced message, one
    byte doubled, imported and a checkpoint recorded after it). ``listed``: read as
    apply reads (the file the listing found, with the ctime the listing printed), the
    file taken for settled: the first check finds the ctime unchanged and skips the
    digest; the rewrite changes it, so the next check compares the bytes. ``by-hand``:
    the file's identity given without a listed ctime (a mailbox made by hand): the read
    prints the ctime first, and the same holds."""
    import sys

    from mailplan.connectors.local import LocalConnector
    from mailplan.errors import SourceChanged
    from mailplan.facts import source_mailbox
    from mailplan.facts.mailboxes import MailboxRef, list_source_mailboxes
    from mailplan.mail.snapshot import SnapshotStream

    msgs = [SEP + b"Subject: m%d\n\n" % i + b"line %d of a long message\n" % i * 120 + b"\n"
            for i in range(3000)]  # ~3.4 KB each; a batch of 600 is ~2 MB, more than the
    # source's read (dd's 1 MiB block, the pipes) takes ahead of mailplan's
    msgs[5] = msgs[5].replace(b"\n\n", b"\nStatus: O\n\n", 1)  # seen, not yet read
    spool = tmp_path / "spool"
    spool.write_bytes(b"".join(msgs))
    originals = {b for _e, b in read_mbox(io.BytesIO(spool.read_bytes()))[0]}
    conn, said = LocalConnector("oldmail"), []
    # (written just now: settled only for this test)
    monkeypatch.setattr(source_mailbox, "CTIME_SETTLED", 0)
    (mb,), _notes = list_source_mailboxes(conn, [MailboxRef("d.example", "u", "u", str(spool),
                                                            str(tmp_path / "no"))])
    assert mb.ctime_settled and mb.size == spool.stat().st_size

    def run(command: str) -> CommandResult:
        said.append(conn.run(command))
        return said[-1]
    stream = SnapshotStream(conn, str(spool), 0, mb.size, step="+ mailbox test",
                            noatime=noatime, run=run,
                            ident=None if listed == "by-name" else mb.ident,
                            ctime=mb.listed_ctime if listed == "listed" else None)
    boundaries: list[int] = []

    def check_then_rewrite() -> Callable[[], None] | None:
        boundaries.append(len(boundaries))
        check = stream.checkpoint()
        if check is not None:  # run here, not on the checks' thread: the read stops at
            check()  # the batch whose check fails (else a loaded machine may read on)
        if len(boundaries) != 1 or check is None:
            return None  # (checked already)
        kept = msgs[:5] + msgs[6:] if rewrite == "expunge" else [
            *msgs[:5], msgs[5].replace(b"Status: O", b"Status: RO"), *msgs[6:]]
        subprocess.run([sys.executable, "-c", REWRITE, str(spool)], check=True,
                       input=b"".join(kept))
        assert not Path(f"{spool}.lock").exists()
        return None  # (checked already)

    root = tmp_path / "Maildir"
    proc = LocalAgent()
    client = AgentClient(proc)
    client.open(str(root))
    try:
        import_mbox(client, stream, dirname="", batch_messages=600,
                    checkpoint=check_then_rewrite)
    except SourceChanged as exc:
        stopped = str(exc)
    else:
        stopped = "not stopped"
    proc.close_stdin()  # dropped: it finishes the syncs asked for (not a kill racing them)
    proc.wait()
    visible = [b for _f, _s, _i, _fl, b, _t in maildir_state(root)]
    # (the windows alone pass every later batch: the spliced one becomes visible)
    assert not [b for b in visible if b not in originals]
    assert len(visible) == 600 and len(boundaries) == 2  # the second batch's check
    assert "rewritten while it was read" in stopped
    # the first check (after the file's ctime was read, by hand) skipped the digest
    # only where the file's identity and ctime were known
    first = said[int(listed == "by-hand")]
    assert (b"unchanged\n" in first.stdout) == (listed != "by-name")
    assert (b"  -\n" in first.stdout) == (listed == "by-name")


@pytest.mark.parametrize("listed", [True, False], ids=["listed", "by-hand"])
@pytest.mark.parametrize("settled", [True, False], ids=["settled", "just-written"])
def test_a_mailbox_nothing_writes_to_during_its_read_is_not_hashed_twice(tmp_path, settled,
                                                                         listed):
    """apply's read has the file's ctime from the listing (find's, to the nanosecond),
    and runs no command of its own for it; a check that finds it unchanged skips the
    digest of the bytes read (the old server's second pass over them), unless the file
    was changed less than CTIME_SETTLED seconds before it was listed (a write within the
    same tick of the kernel's coarse clock would leave the ctime as it was). Read with
    the file's identity but no listed ctime (``by-hand``), the read prints the ctime
    first, and the same holds. Every message is imported either way."""
    from mailplan.connectors.local import LocalConnector
    from mailplan.facts.mailboxes import MailboxRef, list_source_mailboxes
    from mailplan.facts.source_mailbox import CTIME_SETTLED
    from mailplan.mail.snapshot import SnapshotStream

    msgs = [SEP + b"Subject: m%d\n\n" % i + b"body %d\n" % i * 200 + b"\n" for i in range(2000)]
    spool = tmp_path / "spool"
    spool.write_bytes(b"".join(msgs))
    if settled:
        time.sleep(CTIME_SETTLED + 1.1)  # (whole seconds of the source's clock)
    conn, said, sent = LocalConnector("oldmail"), [], []
    (mb,), _notes = list_source_mailboxes(conn, [MailboxRef("d.example", "u", "u", str(spool),
                                                            str(tmp_path / "no"))])
    ns = spool.stat().st_ctime_ns  # as find prints it: seconds, nanoseconds and a 0
    assert (mb.ctime, mb.ctime_settled) == (f"{ns // 10**9}.{ns % 10**9:09d}0", settled)

    def run(command: str) -> CommandResult:
        if not said and not settled and not listed:  # the ctime read: the file changed
            # right before it (not only at its write above: on a loaded machine the
            # agent's start-up between the two could reach CTIME_SETTLED, and the file
            # was settled then)
            os.chmod(spool, stat.S_IMODE(spool.stat().st_mode))  # its ctime is now
        sent.append(command)
        said.append(conn.run(command))
        return said[-1]
    stream = SnapshotStream(conn, str(spool), 0, mb.size, step="+ mailbox test",
                            run=run, ident=mb.ident, ctime=mb.listed_ctime if listed else None)
    root = tmp_path / "Maildir"
    proc = LocalAgent()
    client = AgentClient(proc)
    client.open(str(root))
    import_mbox(client, stream, dirname="", batch_messages=500, checkpoint=stream.checkpoint)
    client.quit()
    proc.wait()
    assert len(maildir_state(root)) == 2000
    if listed:  # checks only
        checks = said
    else:  # the file's ctime read before the read began (as the listing printed it), then
        ctime, *checks = said  # the checks
        ns = spool.stat().st_ctime_ns  # (just written: as the chmod above left it)
        assert ctime.stdout.split(b"\n")[0].decode() == f"{ns // 10**9}.{ns % 10**9:09d}0" \
            and "date +%s" in sent[0]
    assert all(("then echo unchanged" in c) == settled and "date" not in c
               for c in sent[len(sent) - len(checks):])
    assert len(checks) >= 4  # a check before each batch but the first, and the end's
    assert all((b"unchanged\n" in res.stdout) == settled for res in checks)
    assert all((b"  -\n" in res.stdout) != settled for res in checks)


@pytest.mark.parametrize("nl", [b"\n", b"\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("noatime", [True, False], ids=["dd-noatime", "head-tail"])
@pytest.mark.parametrize("appended", ["whole", "partial", "framing", "line end"])
def test_a_message_being_appended_at_the_size_the_plan_saw_is_never_imported(tmp_path,
                                                                              appended,
                                                                              noatime, nl):
    """The plan lists the spool's size; sendmail may have been half-way through
    appending a message then. The read stops at that size, and before the reader sees
    the end it checks what follows: a separator (or nothing) means the size was a
    message boundary and the messages before it go in; anything else means a message
    was cut, and nothing of the read is made visible (a re-plan reads it again). Line
    ends before that separator are framing (``line end``: a settled last message read
    without its final line end, which a delivery then wrote before its blank line)."""
    from mailplan.connectors.local import LocalConnector
    from mailplan.errors import SourceChanged
    from mailplan.mail.snapshot import SnapshotStream

    msgs = [(SEP + b"Subject: m%d\n\nbody %d\n\n" % (i, i)).replace(b"\n", nl)
            for i in range(3)]
    spool = tmp_path / "spool"
    spool.write_bytes(msgs[0] + msgs[1] + msgs[2])
    end = {"whole": len(msgs[0] + msgs[1]),  # the size when message 2 had not begun
           # message 1's framing line not yet there
           "framing": len(msgs[0] + msgs[1]) - len(nl),
           # message 1's final line end not there either
           "line end": len(msgs[0] + msgs[1]) - 2 * len(nl),
           "partial": len(msgs[0] + msgs[1]) + len(SEP) + 5}[appended]  # inside message 2
    stream = SnapshotStream(LocalConnector("oldmail"), str(spool), 0, end,
                            step="+ mailbox test", noatime=noatime)
    root = tmp_path / "Maildir"
    proc = LocalAgent()
    client = AgentClient(proc)
    client.open(str(root))
    if appended == "partial":
        with pytest.raises(SourceChanged, match="was being appended"):
            import_mbox(client, stream, dirname="")
        proc.kill()
        assert maildir_state(root) == set()
        return
    report = import_mbox(client, stream, dirname="")
    client.quit()
    assert proc.wait() == 0
    assert report.durable == 2
    assert sorted(b for _f, _s, _i, _fl, b, _t in maildir_state(root)) == [
        b"Subject: m0\n\nbody 0\n".replace(b"\n", nl),
        b"Subject: m1\n\nbody 1\n".replace(b"\n", nl)[:-len(nl) if appended == "line end"
                                                       else None]]


@pytest.mark.parametrize("noatime", [True, False], ids=["dd-noatime", "head-tail"])
def test_snapshot_checkpoint_digests_are_those_plans_check(tmp_path, noatime):
    """The checkpoint an import records is the one the next plan accepts: of a whole
    read, of a short read after an earlier checkpoint (its window reaches back before
    the read), and none before the read is proven whole."""
    import hashlib

    from mailplan.connectors.local import LocalConnector
    from mailplan.facts.checkpoints import Checkpoint, still_valid
    from mailplan.facts.mailboxes import SourceMailbox
    from mailplan.mail.snapshot import SnapshotStream

    conn = LocalConnector("oldmail")
    spool = tmp_path / "spool"
    data = b"".join(SEP + b"Subject: m%d\n\n" % i + b"x" * 900 + b"\n\n" for i in range(30))
    spool.write_bytes(data)

    def read(start: int, end: int, head: str, before: bytes = b"") -> tuple[str, str] | None:
        stream = SnapshotStream(conn, str(spool), start, end, step="+ mailbox test",
                                noatime=noatime)
        assert stream.checkpoint_digests(head, before) is None  # not read yet
        while stream.read(1000):
            pass
        return stream.checkpoint_digests(head, before)

    heads: dict[int, bytes] = {}  # what the plan's check keeps of a checkpoint under 4 KiB

    def valid(offset: int, digests: tuple[str, str]) -> bool:
        st = spool.stat()
        mb = SourceMailbox("d.example", "u", "INBOX", str(spool), st.st_size, st.st_mtime,
                           st.st_ino)
        cp = Checkpoint(str(spool), st.st_ino, offset, digests[0], digests[1])
        heads.clear()
        return still_valid(conn, [(mb, cp)], heads) == [True]

    sha = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    first = data.rindex(b"\n\n" + SEP) + 2  # the last message: under 1 KB
    whole = read(0, first, "")
    assert whole == (sha(data[:4096]), sha(data[first - 4096:first])) and valid(first, whole)
    short = read(first, len(data), whole[0])  # the window reaches back before the read
    assert short == (whole[0], sha(data[-4096:])) and valid(len(data), short)
    # a first checkpoint before 4 KiB: its head window was the whole file then, and the
    # next checkpoint's head (the file's first 4 KiB now) takes bytes from before its read
    early = data.index(b"\n\n" + SEP, 2000) + 2  # the end of a message, before 4 KiB
    small = read(0, early, "")
    assert small == (sha(data[:early]), sha(data[:early])) and valid(early, small)
    grown = read(early, len(data), small[0], heads[0])
    assert grown == (sha(data[:4096]), sha(data[-4096:])) and valid(len(data), grown)
    with open(spool, "ab") as fh:
        fh.write(SEP + b"Subject: new\n\nx\n")
    assert valid(len(data), short)  # an append keeps it; a rewrite does not
    spool.write_bytes(data[10:] + b"x" * 10)
    assert not valid(len(data), short)


def test_the_plan_lists_only_the_folders_it_reads_and_counts_ledgers_where_they_are(
        client, tmp_path):
    """read_maildirs lists only the folder dirs asked for (a user's archive folders are
    not listed when only the INBOX grew) and reads the whole ledger; read_ledger_counts
    counts each folder's ledger lines on the target, as parse_ledger keeps them."""
    from mailplan.connectors.local import LocalConnector
    from mailplan.facts.maildirs import (
        look_up_digests,
        parse_ledger,
        read_ledger_counts,
        read_maildirs,
    )

    root = tmp_path / "u 1'$(x)" / "Maildir"
    root.parent.mkdir()
    client.open(str(root))
    import_mbox(client, io.BytesIO(MBOX), dirname="")
    import_mbox(client, io.BytesIO(MBOX), dirname=".Work")
    client.sync()
    everything = {(fo, ident) for fo, _s, ident, *_rest in maildir_state(root)}
    with open(root / "mailplan-ledger", "ab") as fh:  # lines of other shapes: skipped
        fh.write(b"torn line\n.Work\tabc\tnot-a-number\n.Work\tabc\t\xc2\xb2\n"
                 b".Work\tabc\t7\rX\n\xff\tabc\t3\n")  # (the last: a folder of its own)
    conn = LocalConnector("newmail")
    missing = str(tmp_path / "nobody" / "Maildir")
    facts = read_maildirs(conn, {str(root): {""}, missing: {""}})
    inbox = facts[str(root)]
    assert set(inbox.ids) == {""} and {f"{d}/{o}" for d, o in inbox.ids[""]} == {
        ident for fo, ident in everything if fo == "."}
    assert inbox.ledger_count == {"": 4, ".Work": 4, "\ufffd": 1}
    assert facts[missing].ids == {} and facts[missing].ledger_count == {}
    both = read_maildirs(conn, {str(root): {"", ".Work"}})[str(root)]
    assert {d: len(v) for d, v in both.ids.items()} == {"": 4, ".Work": 4}
    # only the identities with the given digests, from the files and the ledger alike
    some = {next(iter(both.ids[""]))[0], next(iter(both.ids[".Work"]))[0]}
    wanted = {(str(root), ""): some, (str(root), ".Work"): some, (missing, ""): some}
    only, early = look_up_digests(conn, wanted)
    assert only[(str(root), "")] == {i for i in both.ids[""] if i[0] in some}
    assert only[(str(root), ".Work")] == {i for i in both.ids[".Work"] if i[0] in some}
    assert len(only[(str(root), "")]) >= 1 and only[(missing, "")] == set()
    assert early == only  # every ledger line counts when no offset is given
    # the flags of the files found (what follows :2, in cur/, keyword letters too; ""
    # in new/), by identity, as read_maildirs gives them for a whole folder
    found_flags: dict = {}
    look_up_digests(conn, wanted, None, found_flags)
    on_disk = {Identities.key((ident.split("/")[0], int(ident.split("/")[1]))):
               (fl or "") if sub == "cur" else ""
               for fo, sub, ident, fl, *_rest in maildir_state(root) if fo == "."}
    assert both.flags[""] == on_disk and set(on_disk.values()) == {"", "RS", "D"}
    # keyed by the very objects the identity set holds: a file costs one key, not two
    held = {id(k) for k in both.ids[""]._keys}
    assert all(id(k) in held for k in both.flags[""])
    assert found_flags[(str(root), "")] == {
        k: v for k, v in on_disk.items() if k[:32].hex() in some}
    # lines from an offset on (a later run's) are found, but not counted as earlier
    size = (root / "mailplan-ledger").stat().st_size
    _found, early = look_up_digests(conn, wanted, {(str(root), ""): 0,
                                                   (str(root), ".Work"): size})
    assert early[(str(root), "")] == set() and early[(str(root), ".Work")] == only[
        (str(root), ".Work")]
    # the ledger alone still counts (a message the user deleted on the new server)
    for f in (root / "cur").iterdir():
        f.unlink()
    for f in (root / "new").iterdir():
        f.unlink()
    assert look_up_digests(conn, {(str(root), ""): some})[0] == {(str(root), ""): only[
        (str(root), "")]}
    counts = read_ledger_counts(conn, [str(root), missing])
    ledger = parse_ledger((root / "mailplan-ledger").read_bytes())
    # the agent reads the ledger by the same rule (a new open reads it again)
    client.open(str(root))
    assert client.scan().ledger == ledger
    assert counts == {str(root): {**{d: len(v) for d, v in ledger.items()},
                                  "/": (root / "mailplan-ledger").stat().st_size},
                      missing: {}}


def test_looking_up_digests_reads_the_folders_keywords_in_the_same_batch(client, tmp_path):
    """look_up_digests reads the dovecot-keywords of the folders where keywords are
    compared by one more command in the batch of its greps, not in a round trip of its
    own (each costs some 85 ms over SSH), as read_maildirs reads them (a symbolic link
    not followed); where none is asked for, no keywords file is read at all."""
    from mailplan.connectors.local import LocalConnector
    from mailplan.facts.maildirs import look_up_digests, read_maildirs

    root = tmp_path / "Maildir"
    client.open(str(root))
    import_mbox(client, io.BytesIO(b"From a@b Mon Jan  1 10:00:00 2001\nStatus: RO\n"
                                   b"X-Keywords: Work $Label1\n\nx\n"), dirname="")
    import_mbox(client, io.BytesIO(MBOX), dirname=".Work")
    client.sync()
    (elsewhere := tmp_path / "elsewhere").write_bytes(b"0 Linked\n")
    (root / ".Work" / "dovecot-keywords").symlink_to(elsewhere)
    inbox, work = (str(root), ""), (str(root), ".Work")
    state = maildir_state(root)
    digests = {key: {ident.split("/")[0] for fo, _s, ident, *_r in state
                     if fo == (key[1] or ".")} for key in (inbox, work)}
    conn = LocalConnector("newmail")
    seen: list[tuple[str, str]] = []
    conn.observer = lambda cmd, res, secs, note: seen.append((cmd, note.split(",")[0]))
    flags: dict = {}
    found, _early = look_up_digests(conn, digests, None, flags, {inbox, work})
    # one batch: a grep job per folder, then the keywords files' tar
    assert [note for _c, note in seen] == ["batch 1/3", "batch 2/3", "batch 3/3"], seen
    assert len(found[inbox]) == 1 and len(found[work]) == 4
    assert set(flags[inbox].values()) == {"Sab"}
    whole = read_maildirs(conn, {str(root): {"", ".Work"}})[str(root)].flags
    assert flags[inbox].keywords == whole[""].keywords == {"a": "Work", "b": "$Label1"}
    assert flags[work].keywords == whole[".Work"].keywords == {}  # the link: not read
    seen.clear()
    flags = {}
    look_up_digests(conn, digests, None, flags)  # no keywords compared: none read
    assert [note for _c, note in seen] == ["batch 1/2", "batch 2/2"], seen
    assert not any("tar" in cmd for cmd, _n in seen)
    assert {key: f.keywords for key, f in flags.items()} == {inbox: {}, work: {}}


def test_the_agent_imports_nothing_from_the_login_directory_or_pythonpath(tmp_path):
    """The agent runs as root on the target with ``python3 -c``, in whatever directory
    the SSH login starts: a ``json.py`` there (or on PYTHONPATH) must not be imported in
    place of the standard library's."""
    import subprocess
    import sys

    from mailplan.mail.agent_client import agent_command

    marker = tmp_path / "imported"
    (tmp_path / "json.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    res = subprocess.run(agent_command(sys.executable), shell=True, cwd=tmp_path, env=env,
                         input=b"", capture_output=True, check=False)
    assert res.returncode == 0, res.stderr
    assert not marker.exists()


def _frame(kind: bytes, payload: bytes) -> bytes:
    from mailplan.mail.agent_client import HEADER

    return HEADER.pack(kind, len(payload)) + payload


def _message_payloads(mbox: bytes, pid: int = 1) -> list[bytes]:
    """The payload of an ``M`` frame for every message of ``mbox`` (into cur/), named as
    by a sender with process id ``pid``."""
    from mailplan.mail.agent_client import MESSAGE
    from mailplan.mail.maildir import message_name

    messages, _summary = read_mbox(io.BytesIO(mbox), mtime=0.0)
    payloads = []
    for end, body in messages:
        name = message_name(arrival=end.arrival, usec=1, pid=pid, digest=end.sha256,
                            occurrence=end.occurrence, host="t", size=end.size,
                            flags=end.flags)
        payloads.append(MESSAGE.pack(1, 0, len(name), end.arrival or 0.0) + name.encode()
                        + body)
    return payloads


def _in_process_session(root: Path, mbox: bytes) -> tuple[bytes, bytes, int]:
    """The frames of an agent session (the ``O`` frame; the ``M`` frames of every message
    of ``mbox`` then a ``Q``) for :func:`mailplan.mail.agent.serve` run in this process:
    ``Q`` syncs there, with no sync process forked, so a test can patch the sync."""
    import json

    payloads = _message_payloads(mbox)
    return (_frame(b"O", json.dumps({"root": str(root)}).encode()),
            b"".join(_frame(b"M", p) for p in payloads) + _frame(b"Q", b""), len(payloads))


def test_a_writer_killed_between_its_renames_and_its_ledger_lines_owes_nothing(
        tmp_path, monkeypatch):
    """The batch a sync makes visible is recorded before its renames; a writer that dies
    after them but before appending the ledger (here: the agent run in this process,
    stopped at that point) leaves visible messages without ledger lines, and the next
    open appends exactly those lines, then removes the record."""
    import json

    from mailplan.mail import agent as writer
    from mailplan.mail.agent_client import HEADER

    root = tmp_path / "Maildir"
    opening, rest, count = _in_process_session(root, MBOX)
    root.mkdir()
    (root / "maildirsize").write_text("10485760S\n0 0\n")  # vpopmail's quota accounting

    class Died(BaseException):
        pass

    def die(self, lines):
        raise Died

    with monkeypatch.context() as m:
        m.setattr(writer.Agent, "_append_ledger", die)
        with pytest.raises(Died):
            writer.serve(io.BytesIO(opening + rest), io.BytesIO())
    visible = {i for _f, _s, i, *_r in maildir_state(root)}
    assert len(visible) == count and not (root / "mailplan-ledger").exists()
    assert len(list(root.glob("mailplan-pending-*"))) == 1
    # meanwhile a mail reader renamed two of them: one flagged seen and replied, one
    # moved back to new/ (a reader moves new/ to cur/; either way the name changes)
    first, second = sorted((root / "cur").iterdir())[:2]
    first.rename(first.with_name(first.name.split(":2,")[0] + ":2,RS"))
    second.rename(root / "new" / second.name.split(":2,")[0])
    assert {i for _f, _s, i, *_r in maildir_state(root)} == visible
    out = io.BytesIO()
    assert writer.serve(io.BytesIO(opening + _frame(b"Q", b"")), out) == 0
    first = json.loads(out.getvalue()[5:5 + HEADER.unpack(out.getvalue()[:5])[1]])
    assert first["recovered"] == count
    lines = (root / "mailplan-ledger").read_text().splitlines()
    assert sorted(lines) == sorted(f"\t{i.replace('/', chr(9))}" for i in visible)
    assert not list(root.glob("mailplan-pending-*"))
    # the quota accounting it owed too, once (as a delivery counts: a bytes count line)
    assert _maildirsize_totals(root) == (sum(e.size for e, _b in read_mbox(
        io.BytesIO(MBOX))[0]), count)
    # a record whose files never became visible (killed before its renames) adds nothing
    (root / f"mailplan-pending-{os.getpid()}").write_bytes(
        b"\0".join([b"", b"a" * 64, b"0"]))
    assert writer.serve(io.BytesIO(opening + _frame(b"Q", b"")), io.BytesIO()) == 0
    assert (root / "mailplan-ledger").read_text().splitlines() == lines
    assert not list(root.glob("mailplan-pending-*"))
    # the record of a writer still running is left alone: it may be at work (one of
    # another process, which got a dead writer's id, is not: test_writer_messy_target)
    import subprocess
    import sys

    from mailplan.mail.writer.proto import AGENT_MARK

    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                           AGENT_MARK.decode()]) as running:
        record = root / f"mailplan-pending-{running.pid}"
        record.write_bytes(b"")
        assert writer.serve(io.BytesIO(opening + _frame(b"Q", b"")), io.BytesIO()) == 0
        assert record.exists()
        running.kill()
    assert writer.serve(io.BytesIO(opening + _frame(b"Q", b"")), io.BytesIO()) == 0
    assert not record.exists()


def test_a_filesystem_without_locks_does_not_stop_a_sync(tmp_path, monkeypatch):
    """Where flock fails (ENOLCK: an NFS without lockd) the renames and the ledger still
    happen, and the ledger check still keeps a message another writer made visible from
    being made visible twice."""
    import errno
    import fcntl

    from mailplan.mail import agent as writer

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    root = tmp_path / "Maildir"
    opening, rest, count = _in_process_session(root, MBOX)
    assert writer.serve(io.BytesIO(opening + rest), io.BytesIO()) == 0
    assert len(maildir_state(root)) == count
    assert message_lines(root) == count
    # the same messages from a writer that looked at the folder before those were synced:
    # the ledger grew since it looked, so it lists the folder and drops its copies
    root2 = tmp_path / "Maildir2"
    other = writer.Agent(io.BytesIO())
    other.open({"root": str(root2)})
    other.seq = 10**6  # its tmp names apart from the first writer's (same process id)
    payloads = _message_payloads(MBOX, pid=2)  # other names for the same identities
    other.message(payloads[0])  # it lists the (empty) folder here
    opening, rest, count = _in_process_session(root2, MBOX)
    assert writer.serve(io.BytesIO(opening + rest), io.BytesIO()) == 0
    for payload in payloads[1:]:
        other.message(payload)
    reply = other.sync()
    assert reply["durable"] == [] and len(reply["present"]) == count
    assert len(maildir_state(root2)) == count
    assert not list((root2 / "tmp").iterdir())


def test_the_writer_holds_a_folders_identities_compactly_and_streams_its_known_reply(
        tmp_path):
    """A folder's identities (here 40,000 ledger lines) cost the writer under 150 bytes
    each with the ledger read (as tuples of the hex digest and the occurrence: 274), and the
    ``known`` reply is written in pieces: its peak is a fraction of the text it sends
    (building the text, then its JSON, took several times the text). The reply is the
    ledger exactly, in a frame of the right length."""
    import hashlib
    import json
    import tracemalloc

    from mailplan.mail import agent as writer
    from mailplan.mail.agent_client import HEADER

    root = tmp_path / "Maildir"
    root.mkdir()
    count = 40_000
    idents = {(hashlib.sha256(b"%d" % i).hexdigest(), i % 3) for i in range(count)}
    (root / "mailplan-ledger").write_text(
        "".join(f"\t{d}\t{o}\n" for d, o in sorted(idents)) + ".Other\tnot-a-digest\t0\n")
    agent = writer.Agent(io.BytesIO())
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        agent.open({"root": str(root)})  # reads the ledger
        known = agent._present("")
        held = tracemalloc.get_traced_memory()[0] - before
        assert len(known) == count and held / count < 150, held / count
        with open(tmp_path / "reply", "wb", buffering=0) as out:
            agent.out = out
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            agent.reply_known({"dir": ""})
            peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    frame = (tmp_path / "reply").read_bytes()
    kind, length = HEADER.unpack(frame[:5])
    assert kind == b"R" and length == len(frame) - 5
    text = json.loads(frame[5:])["known"]
    assert {(d, int(o)) for d, o in (x.split(" ") for x in text.splitlines())} == idents
    assert peak < len(text) / 2, (peak, len(text))


def test_an_import_holds_a_full_folders_identities_compactly(tmp_path):
    """What an import into a full folder asks for (``known``: here 40,000 ledger lines)
    costs mailplan under 150 bytes an identity once parsed (a set of tuples of the hex
    digest and the occurrence: 221), and answers membership of identity tuples."""
    import hashlib
    import tracemalloc

    root = tmp_path / "Maildir"
    root.mkdir()
    count = 40_000
    idents = {(hashlib.sha256(b"%d" % i).hexdigest(), i % 3) for i in range(count)}
    (root / "mailplan-ledger").write_text("".join(f"\t{d}\t{o}\n" for d, o in idents))
    client = AgentClient(LocalAgent())
    try:
        client.open(str(root))
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            known = client.known("")
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    finally:
        client.pipe.kill()
    assert len(known) == count and held / count < 150, held / count
    assert set(known) == idents and known == idents
    some = next(iter(idents))
    assert some in known and (some[0], some[1] + 3) not in known
    assert ("not a digest", 0) not in known and "junk" not in known


@pytest.fixture
def reachable(tmp_path_factory):
    """A directory the Maildir owner can reach (pytest's own are 0700, root's)."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="mailplan-owner-"))
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _user_dir(base: Path, uid: int = 4242) -> Path:
    """vpopmail's user directory and a Maildir as vadduser leaves them, owned by uid."""
    home = base / "domains" / "d.example" / "bob"
    home.mkdir(parents=True)
    for p in (base / "domains", home.parent, home):
        os.chown(p, uid, uid)
    for sub in ("", "cur", "new", "tmp"):
        (home / "Maildir" / sub).mkdir(mode=0o700, exist_ok=True)
        os.chown(home / "Maildir" / sub, uid, uid)
    return home


@pytest.mark.skipif(os.geteuid() != 0, reason="the writer switches users only as root")
def test_the_writer_runs_as_the_maildir_owner_so_planted_links_lead_nowhere(reachable):
    """Run as root, the writer becomes the owner of the user's directory before it
    touches the Maildir (as qmail-local and vdelivermail deliver): links the owner
    planted in the Maildir (the ledger, maildirsize, a folder) to root's files would
    otherwise be written and chowned through."""
    outside = reachable / "root-file"
    outside.write_text("root:x:0:0:root:/root:/bin/sh\n")
    root_dir = reachable / "root-dir"
    root_dir.mkdir(mode=0o755)
    home = _user_dir(reachable)
    maildir = home / "Maildir"
    (maildir / "mailplan-ledger").symlink_to(outside)
    (maildir / ".Work").symlink_to(root_dir)
    for target, dirname in ((maildir / "mailplan-ledger", ""), (maildir / ".Work", ".Work")):
        agent = LocalAgent()
        client = AgentClient(agent)
        try:  # each link is refused as the open (or the folder's request) finds it not
            # the owner's to write
            with pytest.raises(AgentError, match="may not write (it|there)"):
                client.open(str(maildir), owner_of_parent=True)
                import_mbox(client, io.BytesIO(MBOX), dirname=dirname)
        finally:
            agent.kill()
        target.unlink()
    assert outside.read_text() == "root:x:0:0:root:/root:/bin/sh\n"
    assert outside.stat().st_uid == 0 and list(root_dir.iterdir()) == []
    # without links: the messages arrive, every file is the owner's, made by the owner
    agent = LocalAgent()
    client = AgentClient(agent)
    client.open(str(maildir), owner_of_parent=True)
    status = Path(f"/proc/{agent.proc.pid}/status").read_text()
    ids = {line.split(":")[0]: line.split()[1:] for line in status.splitlines()}
    assert ids["Uid"] == ["4242"] * 4 and ids["Gid"] == ["4242"] * 4 and ids["Groups"] == []
    import_mbox(client, io.BytesIO(MBOX), dirname="")
    import_mbox(client, io.BytesIO(MBOX), dirname=".Work")
    client.quit()
    assert agent.wait() == 0
    files = [p for p in maildir.rglob("*") if p.is_file()]
    assert len([p for p in files if p.parent.name in ("new", "cur")]) == \
        2 * len(read_mbox(io.BytesIO(MBOX))[0])
    assert {(p.stat().st_uid, p.stat().st_gid) for p in files} == {(4242, 4242)}


@pytest.mark.skipif(os.geteuid() != 0, reason="the writer switches users only as root")
def test_a_writer_stays_root_only_where_no_one_else_can_have_put_anything(reachable):
    """A user directory of root's (a sandbox without a vpopmail user): the writer stays
    root, but not when others may write there (a link to /tmp as the user directory) or
    the Maildir is someone else's; and a writer that switched to one owner refuses a
    Maildir of another."""
    shared = reachable / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    home = reachable / "home"
    home.mkdir(mode=0o755)
    theirs = reachable / "theirs"
    theirs.mkdir(mode=0o755)
    (theirs / "Maildir").mkdir()
    os.chown(theirs / "Maildir", 4242, 4242)
    other = _user_dir(reachable / "other", uid=4343)
    first = _user_dir(reachable / "first")
    for parent, why in ((shared, "writable by others"), (theirs, "not a directory of root's")):
        agent = LocalAgent()
        try:
            with pytest.raises(AgentError, match=why):
                AgentClient(agent).open(str(parent / "Maildir"), owner_of_parent=True)
        finally:
            agent.kill()
    agent = LocalAgent()
    client = AgentClient(agent)
    client.open(str(home / "Maildir"), owner_of_parent=True)
    import_mbox(client, io.BytesIO(MBOX), dirname="")
    with pytest.raises(AgentError, match="one writer per owner"):  # root stays root
        client.open(str(first / "Maildir"), owner_of_parent=True)
    agent.kill()
    assert {p.stat().st_uid for p in (home / "Maildir").rglob("*")} == {0}
    assert len([p for p in (home / "Maildir").rglob("*")
                if p.parent.name in ("new", "cur")]) == len(read_mbox(io.BytesIO(MBOX))[0])
    agent = LocalAgent()
    client = AgentClient(agent)
    try:
        client.open(str(first / "Maildir"), owner_of_parent=True)
        with pytest.raises(AgentError, match="one writer per owner"):
            client.open(str(other / "Maildir"), owner_of_parent=True)
    finally:
        agent.kill()


@pytest.mark.skipif(os.geteuid() != 0, reason="the writer switches users only as root")
def test_a_maildir_its_owner_may_not_write_is_refused_when_opened(reachable):
    """A Maildir made by hand as root (mb2md run as root, no chown) under a user
    directory of vpopmail's: vpopmail could not deliver there, and the writer running as
    that owner could not write; it says so when the Maildir is opened, naming it."""
    home = _user_dir(reachable)
    os.chown(home / "Maildir" / "cur", 0, 0)
    agent = LocalAgent()
    try:
        with pytest.raises(AgentError, match=r"Maildir/cur is uid 0's, and the writer, "
                           r"running as the owner of .* \(uid 4242\), may not write there"):
            AgentClient(agent).open(str(home / "Maildir"), owner_of_parent=True)
    finally:
        agent.kill()


@pytest.mark.skipif(os.geteuid() != 0, reason="the writer switches users only as root")
@pytest.mark.parametrize("name", ["maildirsize", "mailplan-ledger"])
def test_a_file_every_sync_appends_to_that_the_owner_may_not_write_is_refused_when_opened(
        reachable, name):
    """vpopmail's quota accounting made by hand as root (``maildirmake -q`` run as root),
    or the ledger: the writer, running as the Maildir's owner, failed at its first sync,
    once the batch was visible, and each run made one more batch visible before failing.
    It says so when the Maildir is opened, naming the file; nothing is written."""
    home = _user_dir(reachable)
    (home / "Maildir" / name).write_text("10485760S\n0 0\n" if name == "maildirsize" else "")
    _refused_nothing_written(home, f"Maildir/{name} is uid 0's, and the writer, running "
                             r"as the owner of .* \(uid 4242\), may not write it")


def _refused_nothing_written(home: Path, match: str) -> None:
    """Importing into ``home``'s Maildir as its owner fails, ``match`` saying why, and
    no message is visible."""
    agent = LocalAgent()
    try:
        with pytest.raises(AgentError, match=match):
            client = AgentClient(agent)
            client.open(str(home / "Maildir"), owner_of_parent=True)
            import_mbox(client, io.BytesIO(MBOX), dirname="")
    finally:
        agent.kill()
    assert list((home / "Maildir" / "new").iterdir()) == []
    assert list((home / "Maildir" / "cur").iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="the writer switches users only as root")
@pytest.mark.parametrize("sub", ["", "new", "tmp"])
def test_a_folder_its_owner_may_not_write_is_refused_naming_the_cause(reachable, sub):
    """A folder restored or made by hand as root (``cp -a`` of a backup, ``maildirmake``
    run as root) in a Maildir of vpopmail's: the writer, running as its owner, failed
    with a bare ``PermissionError`` naming a directory and no cause. It says so as for
    the Maildir itself (whose owner, and what to do), and nothing is written."""
    home = _user_dir(reachable)
    folder = home / "Maildir" / ".Work"
    for part in ("", "cur", "new", "tmp"):
        (folder / part).mkdir(mode=0o700)
        os.chown(folder / part, 0 if part == sub else 4242, 0 if part == sub else 4242)
    agent = LocalAgent()
    try:
        with pytest.raises(AgentError, match=rf"Maildir/\.Work{'/' if sub else ''}{sub} "
                           r"is uid 0's, and the writer, running as the owner of .* \(uid "
                           r"4242\), may not (write there|read it) .*: chown -R the "
                           r"Maildir"):
            client = AgentClient(agent)
            client.open(str(home / "Maildir"), owner_of_parent=True)
            import_mbox(client, io.BytesIO(MBOX), dirname=".Work")
    finally:
        agent.kill()
    assert [p for p in folder.rglob("*") if p.is_file()] == []


@pytest.mark.skipif(os.geteuid() != 0, reason="the writer switches users only as root")
def test_another_folder_its_owner_may_not_write_is_refused_at_the_open(reachable):
    """Every open lists each folder's tmp/ (writers' debris, a running writer): one
    made by hand as root that its owner may not read failed an import into any folder,
    the INBOX too, with a bare PermissionError. It is named at the open, with what to
    do; nothing is written. One it may read (0755) is no obstacle where it is not
    written to."""
    home = _user_dir(reachable)
    for part in ("", "cur", "new", "tmp"):
        (home / "Maildir" / ".Old" / part).mkdir(mode=0o700)
        os.chown(home / "Maildir" / ".Old" / part, 4242 if part != "tmp" else 0, 4242)
    _refused_nothing_written(home, r"Maildir/\.Old/tmp is uid 0's, and the writer, running "
                             r"as the owner of .* \(uid 4242\), may not read it")
    for part in ("", "cur", "new", "tmp"):
        os.chown(home / "Maildir" / ".Old" / part, 0, 0)
        (home / "Maildir" / ".Old" / part).chmod(0o755)
    agent = LocalAgent()
    try:
        client = AgentClient(agent)
        client.open(str(home / "Maildir"), owner_of_parent=True)
        import_mbox(client, io.BytesIO(MBOX), dirname="")
        client.quit()
        assert agent.wait() == 0
    finally:
        agent.kill()
    assert len(list((home / "Maildir" / "new").iterdir())) + len(
        list((home / "Maildir" / "cur").iterdir())) == len(read_mbox(io.BytesIO(MBOX))[0])


@pytest.mark.skipif(os.geteuid() != 0, reason="the writer switches users only as root")
@pytest.mark.parametrize("kind", ["fifo", "directory"])
@pytest.mark.parametrize("name", ["maildirsize", "mailplan-ledger"])
def test_a_file_every_sync_appends_to_that_is_no_file_is_refused_when_opened(
        reachable, name, kind):
    """A named pipe where maildirsize or the ledger belongs hung the writer at its first
    sync, a directory failed it once a batch was visible: refused at the open, named."""
    home = _user_dir(reachable)
    path = home / "Maildir" / name
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    os.chown(path, 4242, 4242)
    _refused_nothing_written(home, f"Maildir/{name} is not a regular file")


@pytest.mark.skipif(os.geteuid() != 0, reason="the writer switches users only as root")
def test_a_file_of_the_owner_whose_mode_forbids_writing_is_named_by_its_mode(reachable):
    """The owner's own maildirsize made read-only (chmod 0400): the refusal names the
    mode, not an owner that is right."""
    home = _user_dir(reachable)
    size = home / "Maildir" / "maildirsize"
    size.write_text("10485760S\n0 0\n")
    os.chown(size, 4242, 4242)
    size.chmod(0o400)
    agent = LocalAgent()
    try:
        with pytest.raises(AgentError, match=r"Maildir/maildirsize has mode 0400, and the "
                           r"writer, running as the owner of .* \(uid 4242\), may not "
                           r"write it: chmod u\+rwX it"):
            AgentClient(agent).open(str(home / "Maildir"), owner_of_parent=True)
    finally:
        agent.kill()


def test_keyword_letters_added_by_flags_reach_courier_unless_courier_opened_the_folder(
        client, tmp_path):
    """``G`` may add keyword letters (a label set on the old server after the import):
    the message's keywords, all of them by the folder's dovecot-keywords, also go to
    courier as an update file named after it (replacing one courier has not read yet);
    not in a folder courier has opened (its courierimapuiddb), where courier keeps its
    own keywords, which an update would replace."""
    root = tmp_path / "Maildir"
    client.open(str(root))
    mbox = b"".join(b"From a@b Mon Jan  1 10:00:00 2001\nStatus: RO\nX-Keywords: Work\n"
                    b"Subject: %d\n\nx\n\n" % n for n in range(2))
    for folder in ("", ".Seen"):
        import_mbox(client, io.BytesIO(mbox), dirname=folder)
    client.sync()
    (root / ".Seen" / "courierimapuiddb").write_text("1 1 3\n")
    letters = client.keyword_letters("", ["$Label1"]) | client.keyword_letters(
        ".Seen", ["$Label1"])
    assert letters == {"$Label1": "b"}
    for folder in ("", ".Seen"):
        base = root / folder
        first, second = sorted(base.joinpath("cur").iterdir())
        stale = base / "courierimapkeywords" / first.name.partition(":")[0]
        stale.write_text("Work\n")  # an update courier has not read yet
        ids = [parse_message_name(f.name).identity for f in (first, second)]
        reply = client.add_flags(folder, {ids[0]: "b", ids[1]: "S"})
        assert reply == {"renamed": 1, "gone": 0, "taken": 0}
        assert sorted(f.name.partition(":2,")[2] for f in base.joinpath("cur").iterdir()) \
            == ["Sa", "Sab"]
        updates = {p.name: p.read_text().split()
                   for p in (base / "courierimapkeywords").iterdir()}
        kept = updates.pop(second.name.partition(":")[0])
        assert kept == ["Work"]
        assert updates == {first.name.partition(":")[0]: (
            ["Work", "$Label1"] if folder == "" else ["Work"])}


def test_a_file_a_mail_client_renames_during_a_flags_request_is_looked_for_again(
        client, tmp_path, monkeypatch):
    """A file renamed between the writer's read of the folder and its rename (an IMAP
    SELECT moved it from new/ to cur/ and set a flag) gets its flags all the same, under
    its new name: the folder is read once more for it. One renamed again then is passed
    over as gone (the next run compares it again)."""
    from mailplan.mail import agent as writer
    from mailplan.mail.writer import flags

    root = tmp_path / "Maildir"
    client.open(str(root))
    import_mbox(client, io.BytesIO(MBOX), dirname="")
    client.sync()
    news = sorted((root / "new").iterdir())
    assert len(news) >= 2
    first, second = (parse_message_name(f.name) for f in news[:2])
    real = flags.rename_noreplace
    raced: list[str] = []

    def client_first(src: str, dst: str) -> bool:
        # the mail client renames the file just before the writer does: once for the
        # first message, at every attempt for the second
        stem = os.path.basename(src).partition(":2,")[0]
        if (stem == news[0].name and stem not in raced) or stem == news[1].name:
            raced.append(stem)
            seen = "S" if os.path.basename(os.path.dirname(src)) == "new" else "RS"
            os.rename(src, os.path.join(root, "cur", f"{stem}:2,{seen}"))
        return real(src, dst)

    monkeypatch.setattr(flags, "rename_noreplace", client_first)
    agent = writer.Agent(io.BytesIO())
    agent.open({"root": str(root)})
    reply = agent.add_flags({"dir": "", "add": "".join(
        f"{m.digest} {m.occurrence} F\n" for m in (first, second))})
    assert reply == {"renamed": 1, "gone": 1, "taken": 0}
    assert (root / "cur" / f"{news[0].name}:2,FS").is_file()  # the client's S kept
    assert len(raced) == 3  # the second was raced at both attempts: left to the next run
    assert not list((root / "new").glob(news[0].name + "*"))


def test_without_renameat2_a_client_rename_during_the_link_leaves_one_name(
        client, tmp_path, monkeypatch):
    """Where the kernel has no renameat2, a rename is a link and an unlink: a mail client
    renaming the file in between left it under two names (one message shown twice), and
    one deleting it left it under the writer's new name (a deleted message back). The
    name the writer made goes again: the file is flagged under the client's name, and a
    deleted one stays deleted."""
    from mailplan.mail import agent as writer
    from mailplan.mail.writer import fs

    root = tmp_path / "Maildir"
    client.open(str(root))
    import_mbox(client, io.BytesIO(MBOX), dirname="")
    client.sync()
    renamed, removed = sorted((root / "new").iterdir())[:2]
    ids = [parse_message_name(f.name) for f in (renamed, removed)]
    real_link = os.link
    raced = set()

    def link_then_client(src: object, dst: object, **kw: object) -> None:
        real_link(src, dst, **kw)  # type: ignore[arg-type]
        path = Path(str(src))
        if path.parent.name == "new" and path.name not in raced:
            raced.add(path.name)
            if path.name == renamed.name:  # a SELECT that set \Seen
                path.rename(root / "cur" / f"{path.name}:2,S")
            else:  # deleted by the user (as an expunge does)
                path.unlink()

    monkeypatch.setattr(fs, "RENAMEAT2", None)
    monkeypatch.setattr(os, "link", link_then_client)
    agent = writer.Agent(io.BytesIO())
    agent.open({"root": str(root)})
    reply = agent.add_flags({"dir": "", "add": "".join(
        f"{m.digest} {m.occurrence} F\n" for m in ids)})
    assert raced == {renamed.name, removed.name}
    assert reply == {"renamed": 1, "gone": 1, "taken": 0}
    assert sorted(p.name for p in (root / "cur").glob(renamed.name + "*")) == [
        f"{renamed.name}:2,FS"]
    assert not list(root.glob(f"*/{removed.name}*"))


def test_flags_are_added_by_renaming_within_the_folder_never_over_a_file(client, tmp_path):
    """``G`` adds flags the source has to messages already in a folder, in one request:
    new/NAME -> cur/NAME:2,FLAGS, cur/BASE:2,OLD -> cur/BASE:2,MERGED (ASCII order,
    keyword letters kept, nothing removed); a message gone meanwhile is passed over, and
    a name that exists already is never replaced."""
    root = tmp_path / "Maildir"
    client.open(str(root))
    import_mbox(client, io.BytesIO(MBOX), dirname="")
    by_subject = {}
    for sub in ("new", "cur"):
        for f in (root / sub).iterdir():
            parsed = parse_message_name(f.name)
            by_subject.setdefault(f.read_bytes().split(b"Subject: ")[1].split(b"\n")[0],
                                  []).append((f, parsed))
    (one, one_name), = by_subject[b"one"]
    (draft, draft_name), = by_subject[b"draft"]
    (two, two_name), (gone, gone_name) = sorted(by_subject[b"two"],
                                                key=lambda x: x[1].occurrence)
    assert (one.parent.name, one_name.flags, two.parent.name) == ("cur", "RS", "new")
    # a keyword letter a client set (dovecot's "a") stays after the flags
    keyword = one.with_name(one.name + "a")
    one.rename(keyword)
    gone.unlink()  # deleted on the new server: nothing to do, no error
    # the name the draft would get is taken (by a file that is not the draft): kept
    taken = draft.with_name(draft.name.split(":2,")[0] + ":2,DS")
    taken.write_bytes(b"someone else's\n")
    reply = client.add_flags("", {one_name.identity: "F", two_name.identity: "S",
                                  gone_name.identity: "S", draft_name.identity: "S"})
    assert reply == {"renamed": 2, "gone": 1, "taken": 1}
    assert not keyword.exists() and not two.exists()
    assert (root / "cur" / (one.name.split(":2,")[0] + ":2,FRSa")).is_file()
    assert (root / "cur" / (two.name + ":2,S")).read_bytes().startswith(b"Subject: two")
    assert draft.is_file() and taken.read_bytes() == b"someone else's\n"
    # asked again: everything holds those flags already, nothing is renamed
    assert client.add_flags("", {one_name.identity: "FS", two_name.identity: "S"}) == {
        "renamed": 0, "gone": 0, "taken": 0}
    # a folder that is not there has nothing to flag
    assert client.add_flags(".Nowhere", {one_name.identity: "F"}) == {
        "renamed": 0, "gone": 1, "taken": 0}


def test_flags_lines_are_no_message_lines_and_g_keeps_what_the_user_removed(client, tmp_path):
    """The import appends a flags line (four fields) after the line of each message it
    gives flags: every ledger reader (the agent's, parse_ledger, the plan's awk count,
    all as in earlier versions) counts the same messages as without them. ``G`` with
    the source's flags adds none the line records (the user removed it since), adds
    what the source gained, and records the source's flags again."""
    root = tmp_path / "Maildir"
    client.open(str(root))
    import_mbox(client, io.BytesIO(MBOX), dirname="")
    ledger = root / "mailplan-ledger"
    lines = ledger.read_text().splitlines()
    flagged = [x.split("\t") for x in lines if x.count("\t") == 3]
    assert flagged and all(x[3] and x[3].isupper() for x in flagged)
    messages = {(x[1], int(x[2])) for x in (y.split("\t") for y in lines) if len(x) == 3}
    assert parse_ledger(ledger.read_bytes()) == {"": messages}
    assert parse_ledger(ledger.read_bytes())[""].recorded == {
        (x[1], int(x[2])): x[3] for x in flagged}
    counted = subprocess.run(["sh", "-c", f'i=1; f="$1"; {_LEDGER_COUNT}', "sh", str(ledger)],
                             capture_output=True, text=True, check=True).stdout
    assert f"1\t\t{len(messages)}\n" in counted
    new = AgentClient(LocalAgent())
    try:
        new.open(str(root))
        assert new.known("") == messages
        # the user removes every flag of the first flagged message
        digest, occ, had = flagged[0][1], int(flagged[0][2]), flagged[0][3]
        (path,) = [p for p in root.glob("cur/*") if f"_mp{digest}_{occ}." in p.name]
        bare = path.with_name(path.name.partition(":2,")[0] + ":2,")
        path.rename(bare)
        assert new.add_flags("", {(digest, occ): f"{had} {had}"})["renamed"] == 0
        assert bare.exists()
        gained = next(c for c in "RFP" if c not in had)  # on the old server since
        now = "".join(sorted(had + gained))
        assert new.add_flags("", {(digest, occ): f"{now} {now}"})["renamed"] == 1
        assert [p.name.partition(":2,")[2] for p in root.glob(f"cur/*_mp{digest}_*")] \
            == [gained]
        assert parse_ledger(ledger.read_bytes())[""].recorded[(digest, occ)] == now
    finally:
        new.pipe.kill()


def test_flags_lines_record_keywords_and_what_the_source_lost(client, tmp_path):
    """The import's flags line records the keyword letters too (a keyword the user
    removes on the target is not given back by ``G``), and a ``G`` line with nothing to
    add records the source's flags alone (nothing renamed): a flag the source lost and
    got back after that is added again, as any gain."""
    root = tmp_path / "Maildir"
    client.open(str(root))
    import_mbox(client, io.BytesIO(SEP + b"Status: RO\nX-Keywords: Work\nSubject: kw\n\n"
                                   b"body\n\n"), dirname="")
    (path,) = root.glob("cur/*")
    parsed = parse_message_name(path.name)
    ident = parsed.identity
    assert parsed.flags == "Sa" and (root / "dovecot-keywords").read_text() == "0 Work\n"
    ledger = root / "mailplan-ledger"
    assert parse_ledger(ledger.read_bytes())[""].recorded == {ident: "Sa"}
    bare = path.with_name(path.name.partition(":2,")[0] + ":2,")
    path.rename(bare)  # the user removes \Seen and the keyword on the new server
    assert client.add_flags("", {ident: "Sa Sa"}) == {"renamed": 0, "gone": 0, "taken": 0}
    assert bare.exists()
    lines = ledger.read_text()
    # \Seen unset on the old server: recorded, no file renamed; asked again, no new line
    assert client.add_flags("", {ident: " a"}) == {"renamed": 0, "gone": 0, "taken": 0}
    assert bare.exists() and ledger.read_text() == lines + f"\t{ident[0]}\t{ident[1]}\ta\n"
    assert client.add_flags("", {ident: " a"})["renamed"] == 0
    assert ledger.read_text() == lines + f"\t{ident[0]}\t{ident[1]}\ta\n"
    # \Seen set again there: a gain; the keyword the user removed stays removed
    assert client.add_flags("", {ident: "Sa Sa"})["renamed"] == 1
    assert [p.name.partition(":2,")[2] for p in root.glob("cur/*")] == ["S"]
    assert parse_ledger(ledger.read_bytes())[""].recorded == {ident: "Sa"}
