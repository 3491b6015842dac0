"""Mailboxes are read on the source without changing their access times (where it can).

A spool whose access time is older than its modification time holds new mail for the
old server's mail programs; mailplan's reads must not clear that. The byte-range reads
(GNU dd, O_NOATIME) must give exactly what ``tail | head`` gave.
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest
from migration import (
    SourceAccount,
    install_target,
    mailplan,
    make_source,
    ssh_host,
    unique_domain,
    write_spec,
)

from mailplan.connectors.local import LocalConnector
from mailplan.facts import noatime
from mailplan.facts.noatime import ReadTools, parse_probe, read_tools
from mailplan.mail.windows import slice_command

ROOT = os.geteuid() == 0


def _run(command: str) -> tuple[int, bytes]:
    res = subprocess.run(["sh", "-c", command], capture_output=True, check=False)
    return res.returncode, res.stdout


def _new_mail(path: Path) -> float:
    """Make ``path`` look like a spool with unread new mail (atime before mtime)."""
    mtime = path.stat().st_mtime
    os.utime(path, (mtime - 3600, mtime))
    return mtime - 3600


@pytest.mark.parametrize(("start", "length"), [
    (0, 0), (0, 1), (0, 4096), (0, 10_000), (0, 20_000), (1, 1), (4095, 2), (9000, 1000),
    (9999, 1), (9999, 5), (10_000, 7), (12_000, 10), (3, 2_000_000)])
def test_dd_slices_are_the_bytes_tail_and_head_give(tmp_path, start, length):
    data = random.Random(7).randbytes(10_000)
    path = tmp_path / "spool with 'quotes' and $x"
    path.write_bytes(data)
    old = _run(slice_command(str(path), start, length, noatime=False))
    new = _run(slice_command(str(path), start, length, noatime=True))
    assert new == old == (0, data[start:start + length])
    missing = _run(slice_command(str(tmp_path / "gone"), 0, 10, noatime=True))
    assert missing[0] != 0 and missing[1] == b""


@pytest.mark.skipif(not ROOT, reason="O_NOATIME on another's file needs root")
def test_dd_slices_leave_the_access_time(tmp_path):
    path = tmp_path / "spool"
    path.write_bytes(b"From a@b Mon Jan  1 10:00:00 2001\n\nhi\n\n")
    atime = _new_mail(path)
    assert _run(slice_command(str(path), 2, 10, noatime=True))[0] == 0
    assert path.stat().st_atime == atime
    # what the slices did before (and still do where dd cannot): the new mail is "read"
    assert _run(slice_command(str(path), 2, 10, noatime=False))[0] == 0
    assert path.stat().st_atime > atime


@pytest.mark.parametrize(("out", "tools"), [
    (b"dd\ntar\n0\n", ReadTools(dd=True, tar=True)),
    (b"tar\n0\n", ReadTools(dd=False, tar=True)),  # coreutils before 8.20
    (b"dd\n0\n", ReadTools(dd=True, tar=False)),
    (b"dd\ntar\n1000\n", ReadTools()),  # not root: O_NOATIME only for owned files
    (b"", ReadTools()),
    (b"0\n", ReadTools()),
])
def test_parse_probe(out, tools):
    assert parse_probe(out) == tools


def test_read_tools_probes_once_per_connection(monkeypatch):
    calls: list[list[str]] = []
    batch = noatime.run_batch

    def counted(conn, commands):  # type: ignore[no-untyped-def]
        calls.append(list(commands))
        return batch(conn, commands)

    monkeypatch.setattr(noatime, "run_batch", counted)
    conn = LocalConnector("oldmail")
    try:
        first = read_tools(conn)
        assert read_tools(conn) is first and len(calls) == 1
        assert first == ReadTools(dd=ROOT, tar=ROOT)  # GNU dd and tar are installed here
    finally:
        conn.close()


@pytest.mark.ssh
@pytest.mark.skipif(not ROOT, reason="O_NOATIME on another's file needs root")
def test_plan_apply_and_verify_leave_the_spools_access_time(tmp_path, sshd):
    """A first plan (counting), its apply (the stream), a plan after new mail (the
    checkpoint's windows), its apply and a full verify (tar) all leave the spool
    looking as it did: new mail unread."""
    src = make_source(tmp_path / "source", [SourceAccount("alice", 1000, "Alice", "AlicePw1")])
    spool = src / "var/spool/mail/alice"
    spool.write_bytes(b"From a@x.example Mon Nov  2 10:00:00 2026\nSubject: one\n\nhi\n\n")
    (src / "home/alice/mail").mkdir(parents=True)
    folder = src / "home/alice/mail/Work"
    folder.write_bytes(b"From w@x.example Thu Nov  5 09:00:00 2026\nSubject: work\n\nw\n\n")
    target = install_target(tmp_path / "target")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      source_host=ssh_host(sshd), target_host=ssh_host(sshd),
                      domains={unique_domain("n"): {"import": {"uid_min": 1000}}})
    times = {p: _new_mail(p) for p in (spool, folder)}

    def unchanged() -> None:
        assert {p: p.stat().st_atime for p in times} == times

    mailplan("plan", str(spec), check=True)
    unchanged()
    mailplan("apply", str(spec), "--auto-approve", check=True)
    unchanged()
    with open(spool, "ab") as fh:  # new mail arrives on the old server
        fh.write(b"From b@x.example Tue Nov  3 11:00:00 2026\nSubject: two\n\nho\n\n")
    times[spool] = _new_mail(spool)
    assert "1 message(s), 17B to import into INBOX (read from byte 60" in mailplan(
        "plan", str(spec), check=True).stdout
    unchanged()
    mailplan("apply", str(spec), "--auto-approve", check=True)
    unchanged()
    assert mailplan("verify", str(spec), "--full").returncode == 0
    unchanged()
