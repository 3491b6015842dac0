"""The writer on a target's Maildir as users and other programs leave it: odd files
where the writer reads, counts or writes."""

from __future__ import annotations

import functools
import io
import os
import time
from pathlib import Path
from typing import Any

import pytest
from migration import TEST_PYTHON

from mailplan.mail.agent_client import AgentClient, LocalAgent
from mailplan.mail.convert import import_mbox

if TEST_PYTHON:  # the agent under another Python (tests/migration.py)
    LocalAgent = functools.partial(LocalAgent, TEST_PYTHON)  # type: ignore[misc]

MBOX = b"".join(b"From a@example.org Mon Jan  1 10:00:00 2001\nSubject: %d\n\nbody\n\n" % i
                for i in range(3))


def import_and_recount(root: Path) -> dict[str, Any]:
    """Import ``MBOX`` into ``root``'s INBOX, then recount its quota (``Z``'s reply)."""
    client = AgentClient(LocalAgent())
    try:
        client.open(str(root))
        import_mbox(client, io.BytesIO(MBOX), dirname="")
        counted = client.refresh_quota()
        client.quit()
    finally:
        client.pipe.kill()
    return counted


def import_synced_then_recount(root: Path) -> tuple[str, dict[str, Any]]:
    """Import ``MBOX`` into ``root``'s INBOX: ``maildirsize`` once the batch is synced
    (counted), and the recount's reply (``Z``)."""
    client = AgentClient(LocalAgent())
    try:
        client.open(str(root))
        import_mbox(client, io.BytesIO(MBOX), dirname="")
        client.sync()
        counted = (root / "maildirsize").read_text()
        recounted = client.refresh_quota()
        client.quit()
    finally:
        client.pipe.kill()
    return counted, recounted


def test_the_quota_recount_keeps_a_definition_line_that_is_not_ascii(tmp_path):
    """The recount at the end of each import keeps maildirsize's first line (the quota)
    as it is: one with a byte that is not ASCII (a file damaged by a crash) stopped every
    import with ``UnicodeDecodeError: 'ascii' codec can't decode byte 0xff``, naming no
    file, after its messages were in."""
    root = tmp_path / "Maildir"
    root.mkdir()
    (root / "maildirsize").write_bytes(b"10485760S\xff\n0 0\n")
    counted = import_and_recount(root)
    assert counted["messages"] == 3
    assert (root / "maildirsize").read_bytes() == b"10485760S\xff\n%d 3\n" % counted["bytes"]


def test_the_quota_recount_passes_over_a_file_gone_since_the_folder_was_listed(tmp_path):
    """A message file whose name has no ``,S=`` size is measured; one gone by then (a
    mail client expunged it meanwhile; here: a link to nothing) stopped the recount, and
    with it the import, with ``FileNotFoundError``. It is not counted."""
    root = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    (root / "maildirsize").write_text("10485760S\n0 0\n")
    (root / "cur" / "1000000000.M1P1.other:2,S").write_bytes(b"x" * 100)
    os.symlink(root / "cur" / "gone", root / "cur" / "1000000001.M1P1.other:2,S")
    counted = import_and_recount(root)
    assert counted["messages"] == 4
    assert (root / "maildirsize").read_text() == f"10485760S\n{counted['bytes']} 4\n"


def test_the_quota_recount_reads_a_large_folder_as_the_directory_is_read(tmp_path):
    """The recount at the end of each import went through a folder's new/ and cur/ as
    lists of every name (``os.listdir``: about 150 bytes a message at once, 75 MB for a
    folder of half a million); it reads them as the directory is read, as the writer
    reads folders for identities, so its memory does not follow the folder's size."""
    import tracemalloc

    from mailplan.mail import agent as writer

    root = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    (root / "maildirsize").write_text("10485760S\n0 0\n")
    count = 10_000
    for i in range(count):
        name = f"1600000000.M{i}P1_mp{i:064x}_0.host,S=1234" + (":2,S" if i % 2 else "")
        os.close(os.open(root / ("cur" if i % 2 else "new") / name, os.O_CREAT, 0o600))
    agent = writer.Agent(io.BytesIO())
    agent.open({"root": str(root)})
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        counted = agent.quota()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert counted == {"maildirsize": True, "bytes": 1234 * count, "messages": count,
                       "counts": 1}
    assert peak < 20 * count, peak  # a few names' worth, not every name's (150 each)


def test_what_a_dead_writer_left_is_taken_up_though_its_process_id_runs_again(tmp_path):
    """A writer killed between its renames and its ledger lines leaves its record
    (``mailplan-pending-PID``) and its files in tmp/; the next writer takes them up
    unless that writer still runs. A process that got the dead writer's id since (a
    daemon started after the target's reboot) counted as that writer, so the record
    stayed: its messages never got their ledger lines (one the user deleted came back)
    and every plan proposed to complete the import record again. Only a writer counts
    (its command line says so); another process of that id does not."""
    import subprocess
    import sys

    from mailplan.mail import agent as writer_module
    from mailplan.mail.writer.proto import AGENT_MARK

    root = tmp_path / "Maildir"
    import_and_recount(root)
    ledger = root / "mailplan-ledger"
    owed = ledger.read_text().splitlines()
    ledger.unlink()  # as a writer killed before its ledger lines leaves it
    record = b"\0".join(b"\0".join(x.encode().split(b"\t")) for x in owed)
    sleep = "import time; time.sleep(60)"
    with subprocess.Popen([sys.executable, "-c", sleep]) as daemon, \
            subprocess.Popen([sys.executable, "-c", sleep, AGENT_MARK.decode()]) as writer:
        try:
            # until exec, a child's command line is this process's: wait for the writer's
            _wait_for_cmdline(writer.pid, AGENT_MARK)
            for pid in (daemon.pid, writer.pid):
                (root / f"mailplan-pending-{pid}").write_bytes(record)
                (root / "tmp" / f"mailplan-{pid}-1.tmp").write_bytes(b"half a message")
            # (the writer at work is not waited for: see test_mail_agent)
            opened = writer_module.Agent(io.BytesIO()).open({"root": str(root),
                                                             "writer_wait": 0})
        finally:
            daemon.kill()
            writer.kill()
    assert (opened["recovered"], opened["cleaned"]) == (len(owed), 1)
    assert sorted(ledger.read_text().splitlines()) == sorted(owed)
    assert not (root / f"mailplan-pending-{daemon.pid}").exists()
    assert not (root / "tmp" / f"mailplan-{daemon.pid}-1.tmp").exists()
    # a writer still at work is left alone
    assert (root / f"mailplan-pending-{writer.pid}").exists()
    assert (root / "tmp" / f"mailplan-{writer.pid}-1.tmp").exists()


def _wait_for_cmdline(pid: int, mark: bytes) -> None:
    """Wait (up to 10 s) until process ``pid``'s command line holds ``mark``."""
    import time

    deadline = time.monotonic() + 10
    while mark not in Path(f"/proc/{pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline, f"process {pid} did not exec"
        time.sleep(0.01)


def test_a_dead_writers_file_an_imap_server_removes_first_is_no_error(tmp_path, monkeypatch):
    """The IMAP servers remove files of tmp/ older than 36 hours when they open a folder
    (the Maildir rule dovecot and courier follow): a killed run's file, days old, may go
    between the writer's look at tmp/ and its own removal. That stopped the open (the
    import) with ``FileNotFoundError``."""
    from mailplan.mail import agent as writer_module
    from mailplan.mail.writer import tmpfiles

    root = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    stale = root / "tmp" / "mailplan-999999999-1.tmp"
    stale.write_bytes(b"half a message")

    def imap_server_first(pid: int) -> bool:  # its clean-up runs right then
        stale.unlink()
        return False

    monkeypatch.setattr(tmpfiles, "writer_alive", imap_server_first)
    opened = writer_module.Agent(io.BytesIO()).open({"root": str(root)})
    assert opened["cleaned"] == 0 and os.listdir(root / "tmp") == []


def test_a_maildirsize_without_its_last_line_end_is_not_continued(tmp_path):
    """A ``maildirsize`` whose last line has no end (written by hand with ``printf``, or
    cut short): a batch's ``bytes count`` line was appended to it, and the recount kept
    the result as the quota (``10485760S51 3``) for good. It starts a line of its own."""
    root = tmp_path / "Maildir"
    root.mkdir()
    (root / "maildirsize").write_text("10485760S")
    counted, recounted = import_synced_then_recount(root)
    assert counted == f"10485760S\n{recounted['bytes']} 3\n"
    assert (root / "maildirsize").read_text() == counted


def test_an_empty_maildirsize_gets_no_count_line_as_its_first_line(tmp_path):
    """An empty ``maildirsize`` (0 bytes: truncated by hand, ``touch``) holds no quota
    definition line. A batch's ``bytes count`` line appended to it became its first line,
    where Maildir++ readers take the quota from (``51 3``: a quota of 3 bytes for
    courier's parser) and vpopmail skips whatever is there, taking the user's quota from
    vpasswd (maildirquota.c's maildirsize_read: the batch went uncounted). The writer
    keeps the file without a definition, as it was: an empty first line (no quota for
    those reading it from the file; vpopmail takes the user's from vpasswd), then the
    count, which the recount at the end of the import keeps so."""
    root = tmp_path / "Maildir"
    root.mkdir()
    (root / "maildirsize").write_bytes(b"")
    counted, recounted = import_synced_then_recount(root)
    assert counted == f"\n{recounted['bytes']} 3\n"
    assert (root / "maildirsize").read_text() == counted


def test_a_count_line_where_the_definition_goes_is_not_kept_as_one(tmp_path):
    """A ``maildirsize`` whose first line is a ``bytes count`` line (an empty file counted
    into by an earlier mailplan, which appended the batch's count as its first line)
    has no definition: Maildir++ readers took ``51 3`` for a quota of 3 bytes. The
    recount writes the empty definition line an empty file gets; a real definition line
    (no space in it) is kept as it is (the tests above)."""
    root = tmp_path / "Maildir"
    root.mkdir()
    (root / "maildirsize").write_bytes(b"51 3\n")
    counted = import_and_recount(root)
    assert (root / "maildirsize").read_text() == f"\n{counted['bytes']} 3\n"


def _deliver(root: Path, number: int) -> int:
    """What vdelivermail does: the message written in tmp/, renamed into new/, then its
    ``bytes count`` line appended to ``maildirsize``; its size."""
    body = b"Subject: delivered %d\n\nhello\n" % number
    name = f"1700000000.M{number}P9.newmail,S={len(body)}"
    (root / "tmp" / name).write_bytes(body)
    os.rename(root / "tmp" / name, root / "new" / name)
    with open(root / "maildirsize", "a") as fh:
        fh.write(f"{len(body)} 1\n")
    return len(body)


@pytest.mark.parametrize("when", ["during-the-count", "before-the-file-is-replaced"])
def test_a_delivery_during_the_quota_recount_stays_counted(tmp_path, monkeypatch, when):
    """The recount at the end of an import replaces ``maildirsize``: a delivery that
    landed after its count read new/ (``during-the-count``: missed) and appended its line
    before the file was replaced (lost with the old file) went uncounted, the user under
    quota by that message until some later recount. The folders' directories are looked
    at before the count and after the replacement: a change means a recount."""
    from mailplan.mail import agent as writer
    from mailplan.mail.writer import quota

    root = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    (root / "maildirsize").write_text("10485760S\n300 3\n")
    for i in range(3):
        (root / "cur" / f"1600000000.M{i}P1.old,S=100:2,S").write_bytes(b"x" * 100)
    agent = writer.Agent(io.BytesIO())
    agent.open({"root": str(root)})
    delivered: list[int] = []
    if when == "during-the-count":
        scandir = os.scandir

        class Listed(list):  # what the count read of the directory, before the delivery
            def __enter__(self) -> Listed:
                return self

            def __exit__(self, *exc: object) -> None:
                pass

        def listed_then_delivered(path: str) -> Listed:
            with scandir(path) as entries:
                seen = Listed(entries)
            if path.endswith("/new") and not delivered:
                delivered.append(_deliver(root, 1))
            return seen
        monkeypatch.setattr(quota.os, "scandir", listed_then_delivered)
    else:
        replace = agent._replace

        def delivered_then_replaced(path: str, text: str) -> None:
            if not delivered:
                delivered.append(_deliver(root, 1))
            replace(path, text)
        monkeypatch.setattr(agent, "_replace", delivered_then_replaced)
    counted = agent.quota()
    assert delivered and counted["counts"] == 2
    assert (root / "maildirsize").read_text() == f"10485760S\n{300 + delivered[0]} 4\n"


def test_the_quota_recount_waits_no_longer_than_a_tick_for_an_mtime_ahead(tmp_path,
                                                                          monkeypatch):
    """A folder's mtime ahead of the writer's clock (another host's clock on a shared
    filesystem) is waited for a tick at a time, a few times, not until it passes."""
    from mailplan.mail import agent as writer
    from mailplan.mail.writer import quota

    root = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    (root / "maildirsize").write_text("10485760S\n0 0\n")
    ahead = time.time_ns() + 3600 * 10**9
    os.utime(root / "new", ns=(ahead, ahead))
    waits: list[float] = []
    monkeypatch.setattr(quota.time, "sleep", waits.append)
    agent = writer.Agent(io.BytesIO())
    agent.open({"root": str(root)})
    assert agent.quota() == {"maildirsize": True, "bytes": 0, "messages": 0, "counts": 1}
    assert waits == [quota.SETTLE_NS / 1e9] * quota.RECOUNTS
