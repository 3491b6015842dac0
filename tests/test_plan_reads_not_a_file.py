"""The plan's and verify's reads of a mailbox by name refuse a file that is no longer a
regular file, at once.

The listing found a regular file; a user may swap it for a named pipe (``mkfifo`` needs
no privilege) within seconds, before the plan reads it. Opening a named pipe waits for
a writer, so a read that opened it would hold the plan (and the shared shell) for ever.
Apply's reads check the file they opened (:func:`mailplan.mail.windows.guarded`); these
are the reads that go by name: a first import's count, a scan, the check of a
checkpoint, the shared ``tar`` read and verify's, and a snapshot read without a listed
identity."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from pipes_wait import at_once

from mailplan.connectors.local import LocalConnector
from mailplan.errors import SourceChanged
from mailplan.facts.checkpoints import Checkpoint, still_valid
from mailplan.facts.mailbox_scan import count_mailboxes, scan_mailbox, scan_mailboxes
from mailplan.facts.mailboxes import MailboxRef, SourceMailbox, list_source_mailboxes
from mailplan.mail.snapshot import SnapshotStream
from mailplan.mail.windows import NOT_A_FILE, NOT_LISTED, WINDOW, digest, guarded, regular_only
from mailplan.verify_reads import read_source_mail

MAIL = b"From b@x.example Mon Nov  2 10:00:00 2026\nSubject: s\n\nbody\n\n"


def listed_then_swapped(tmp_path: Path, names: tuple[str, ...] = ("spool",)
                        ) -> tuple[LocalConnector, list[SourceMailbox], list[Path]]:
    """Settled mailboxes listed, then each replaced with a named pipe."""
    conn = LocalConnector("oldmail")
    paths = [tmp_path / name for name in names]
    for path in paths:
        path.write_bytes(MAIL)
        os.utime(path, (time.time() - 3600, time.time() - 3600))  # settled
    mailboxes = [mb for path in paths for mb in list_source_mailboxes(
        conn, [MailboxRef("example.com", path.name, path.name, str(path),
                          str(tmp_path / "no-folders"))])[0]]
    assert len(mailboxes) == len(paths)
    for path in paths:
        path.unlink()
        os.mkfifo(path)
    return conn, mailboxes, paths


REFUSED = "is not a regular file"


def test_a_first_imports_count_refuses_a_named_pipe(tmp_path):
    conn, (mb,), pipes = listed_then_swapped(tmp_path)
    (scan,) = at_once(lambda: count_mailboxes(conn, [mb], mboxrd=False), pipes)
    assert scan is not None and REFUSED in (scan.error or ""), scan


def test_a_scan_refuses_a_named_pipe(tmp_path):
    conn, (mb,), pipes = listed_then_swapped(tmp_path)
    scan = at_once(lambda: scan_mailbox(conn, mb, 0, mboxrd=False, known=set()), pipes)
    assert REFUSED in (scan.error or ""), scan.error


def test_the_shared_tar_read_and_its_fallback_refuse_a_named_pipe(tmp_path):
    """tar archives a named pipe without opening it; the mailboxes are then read one by
    one, by name."""
    conn, mbs, pipes = listed_then_swapped(tmp_path, ("a", "b"))
    scans = at_once(lambda: scan_mailboxes(conn, [(mb, 0, set()) for mb in mbs],
                                           mboxrd=False), pipes)
    assert all(REFUSED in (scan.error or "") for scan in scans), [s.error for s in scans]


def test_a_checkpoints_check_refuses_a_named_pipe(tmp_path):
    conn, (mb,), pipes = listed_then_swapped(tmp_path)
    window = digest(MAIL[:WINDOW])
    cp = Checkpoint(mb.path, mb.inode, mb.size, window, window)
    assert at_once(lambda: still_valid(conn, [(mb, cp)]), pipes) == [False]


def test_verify_says_a_named_pipe_is_not_a_mailbox(tmp_path):
    conn, (mb,), pipes = listed_then_swapped(tmp_path)
    messages, errors = at_once(lambda: read_source_mail(conn, [mb], mboxrd=False), pipes)
    assert messages.get(mb.path, {}) == {}
    assert errors[mb.path] == ("it is a named pipe, not a regular file (replaced since "
                              "the listing)")


def test_a_snapshot_read_by_name_refuses_a_named_pipe(tmp_path):
    """A SnapshotStream without the listed identity (a mailbox made by hand) reads by
    name: it refuses a pipe as a replaced file."""
    conn, (mb,), pipes = listed_then_swapped(tmp_path)

    def read() -> bytes:
        stream = SnapshotStream(conn, mb.path, 0, mb.size, step="test")
        return stream.read(65536)

    outcome = at_once(read, pipes)
    assert isinstance(outcome, SourceChanged), outcome
    assert "is no longer a regular file" in str(outcome)


def test_the_refusals_name_a_path_with_backslashes_as_it_is(tmp_path):
    """dash's ``echo`` reads backslashes (``\\c`` ends its output): the refusals print the
    path as it is, both the guarded read's and the read by name's."""
    (tmp_path / "a\\cb\\nc").mkdir()  # a folder named so, not a regular file
    path = str(tmp_path / "a\\cb\\nc")
    for command, status, said in (
            (guarded(path, (0, 0), "cat /dev/fd/3"), NOT_LISTED, "is not the file listed"),
            (regular_only(path, "cat"), NOT_A_FILE, "is not a regular file")):
        res = subprocess.run(["dash", "-c", command], capture_output=True, timeout=10)
        assert res.returncode == status, res
        assert res.stderr.decode().startswith(f"mailplan: {path} {said} ("), res.stderr
        assert res.stderr.count(b"\n") == 1, res.stderr
