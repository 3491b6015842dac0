"""The writer on a target whose disk fills up: a write cut short leaves no torn line in
the import ledger or in vpopmail's ``maildirsize`` for the next append to be glued to."""

from __future__ import annotations

import functools
import io
from pathlib import Path

import pytest
from migration import TEST_PYTHON, small_disk

from mailplan.facts.maildirs import parse_ledger
from mailplan.mail.agent_client import AgentClient, AgentError, AgentLost, LocalAgent
from mailplan.mail.convert import import_mbox
from mailplan.mail.maildir import parse_message_name

if TEST_PYTHON:  # the agent under another Python (tests/migration.py)
    LocalAgent = functools.partial(LocalAgent, TEST_PYTHON)  # type: ignore[misc]


def mbox(count: int, tag: bytes) -> bytes:
    return b"".join(b"From a@example.org Mon Jan  1 10:00:00 2001\nSubject: %s %d\n\nbody\n\n"
                    % (tag, i) for i in range(count))


def run(root: Path, data: bytes, dirname: str = "", limit: int | None = None) -> str | None:
    """Import ``data`` into ``root``'s folder ``dirname`` with an agent whose files may
    not grow past ``limit`` bytes (``RLIMIT_FSIZE``: a write past it fails with EFBIG,
    as one fails with ENOSPC on a full disk, after the bytes that fitted); return the
    error the import ended with, if any."""
    wrapper = ("prlimit", f"--fsize={limit}") if limit else ()
    proc = LocalAgent(wrapper=wrapper)
    client = AgentClient(proc)
    try:
        client.open(str(root))
        import_mbox(client, io.BytesIO(data), dirname=dirname, batch_messages=5)
        client.refresh_quota()
        client.quit()
    except (AgentError, AgentLost) as exc:
        return str(exc)
    finally:
        proc.close_stdin()
        proc.wait()
    return None


def visible(root: Path, dirname: str = "") -> dict[tuple[str, int], Path]:
    folder = root / dirname if dirname else root
    return {parse_message_name(p.name).identity: p
            for sub in ("new", "cur") for p in (folder / sub).iterdir()}


def test_a_ledger_append_cut_short_is_not_glued_to_the_next_line(tmp_path):
    """A disk that fills up while the writer appends a batch's ledger lines left the last
    one torn (no line end), and the next append (the next run's recovery of that batch's
    lines) continued it: two identities in one line no reader takes, so a message the
    user deleted afterwards was imported again. The writer now takes back the bytes of a
    failed append, and starts a new line after a torn one (a writer killed mid-write)."""
    root = tmp_path / "Maildir"
    assert run(root, mbox(60, b"old"), ".Old") is None
    size = (root / "mailplan-ledger").stat().st_size
    # room for a few more lines, the last one cut in its digest
    failed = run(root, mbox(20, b"new"), limit=size + 3 * 68 + 30)
    assert failed is not None and "File too large" in failed
    assert (root / "mailplan-ledger").read_bytes().endswith(b"\n")
    assert run(root, mbox(20, b"new")) is None
    ledger = parse_ledger((root / "mailplan-ledger").read_bytes())
    files = visible(root)
    assert len(files) == 20 and set(files) <= ledger[""]
    # the user deletes them all on the new server: none comes back
    for path in files.values():
        path.unlink()
    assert run(root, mbox(20, b"new")) is None
    assert visible(root) == {}


def test_a_torn_last_ledger_line_stays_a_line_of_its_own(tmp_path):
    """A writer killed in the middle of its ledger append leaves a line without its end:
    the next one starts a new line, and the torn one is skipped as any odd line is."""
    root = tmp_path / "Maildir"
    assert run(root, mbox(3, b"one")) is None
    ledger = root / "mailplan-ledger"
    torn = ledger.read_bytes().splitlines(keepends=True)[-1][:30]
    ledger.write_bytes(ledger.read_bytes() + torn)
    assert run(root, mbox(4, b"two"), ".Two") is None
    assert (root / "mailplan-ledger").read_bytes().count(torn + b"\n") == 1
    assert set(visible(root, ".Two")) == parse_ledger(ledger.read_bytes())[".Two"]


@pytest.mark.parametrize("quota", ["10485760S", "1000C"])
def test_a_maildirsize_append_cut_short_leaves_no_torn_line(tmp_path, quota):
    """vpopmail's quota accounting (``maildirsize``) gets a ``bytes count`` line per
    batch made visible: a disk full in the middle of one left a line without its end,
    which the next delivery's line continued (``1`` + ``2048 1``: a user over quota at
    once, until a later run recounts). The failed append's bytes are taken back."""
    root = tmp_path / "Maildir"
    root.mkdir()
    # longer than the ledger and the pending record get: only this file meets the limit
    (root / "maildirsize").write_text(f"{quota}\n" + "0 0\n" * 1000)
    size = (root / "maildirsize").stat().st_size
    failed = run(root, mbox(20, b"new"), limit=size + 8)  # one batch's line, 2 bytes more
    assert failed is not None and "File too large" in failed
    assert failed.endswith(f", writing in {root}"), failed  # the sync process's append
    lines = (root / "maildirsize").read_text().split("\n")
    assert lines[0] == quota and lines[-1] == ""
    counted = [tuple(map(int, x.split())) for x in lines[1:-1]]
    # the first batch counted; the second one visible, not counted (the next import's
    # recount at its end counts it)
    assert all(len(x) == 2 for x in counted) and sum(c for _b, c in counted) == 5
    assert len(visible(root)) == 10
    # a delivery meanwhile counts itself as vpopmail's does: a line appended
    with open(root / "maildirsize", "a") as fh:
        fh.write("2048 1\n")
    assert [tuple(map(int, x.split())) for x in
            (root / "maildirsize").read_text().splitlines()[1:]][-2:] == [counted[-1], (2048, 1)]
    assert run(root, mbox(20, b"new")) is None
    total = sum(int(p.name.rsplit("=", 1)[1]) for p in visible(root).values())
    assert (root / "maildirsize").read_text() == f"{quota}\n{total} 20\n"


@pytest.mark.parametrize("dirname", ["", ".Work"])
def test_a_full_disk_is_said_naming_the_folder_written_into(tmp_path, dirname):
    """ENOSPC in the writer said only 'No space left on device' (apply added the host and
    the step): a write to an open file names no path. It now names the folder the
    writer was writing into (nothing of the message)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    with small_disk(disk, "1m"):
        root = disk / "Maildir"
        data = b"".join(b"From a@example.org Mon Jan  1 10:00:00 2001\nSubject: %d\n\n%s\n\n"
                        % (i, b"x" * 20000) for i in range(100))  # 2 MB
        failed = run(root, data, dirname)
    assert failed is not None and "No space left on device" in failed, failed
    where = root / dirname if dirname else root
    assert failed.endswith(f", writing in {where}"), failed
    assert "Subject" not in failed and "xxx" not in failed
