"""What the read-only queue commands say of qmail-send when its lock, ``lock/sendmutex``,
is held: stat, a dry-run delete and check report it running (read from /proc/locks,
the lock never taken nor tried) and say where the status command disagrees. Before,
they went by the status command alone and said "not running", and only --execute and
--repair found out.

The lock is held by another process, as qmail-send holds it: ``flock -n FILE sleep``
(qmail built with flock), or a Python holding ``lockf`` (qmail without it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner
from queue_builder import QueueBuilder

from mailplan.queue import render
from mailplan.queue.cli import queue as queue_cli

HOLDERS = {
    "flock": lambda path: ["flock", "-n", str(path), "sleep", "60"],
    "lockf": lambda path: [sys.executable, "-c",
                           "import fcntl, os, sys, time\n"
                           "fd = os.open(sys.argv[1], os.O_WRONLY)\n"
                           "fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
                           "time.sleep(60)\n", str(path)],
}
#: the status command of --control custom: qmail-send is not running
STOPPED = ["--control", "custom", "--status-cmd", "exit 1", "--stop-cmd", "true",
           "--start-cmd", "true"]


def _listed(path: Path) -> bool:
    """Whether /proc/locks lists a lock on ``path`` (the holder has taken it)."""
    st = os.stat(path)
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    return any(line.split()[5:6] == [wanted]
               for line in Path("/proc/locks").read_text().splitlines())


@contextmanager
def held(path: Path, how: str = "flock") -> Iterator[int]:
    """``path`` locked by another process, as qmail-send locks it; yields its pid."""
    proc = subprocess.Popen(HOLDERS[how](path))
    try:
        deadline = time.monotonic() + 20
        while not _listed(path):
            assert proc.poll() is None, "the lock holder ended"
            assert time.monotonic() < deadline, "the lock holder took no lock"
            time.sleep(0.02)
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def _queue(tmp_path: Path) -> tuple[QueueBuilder, int]:
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("", local=("example.com-bob@example.com",))
    return q, msg


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(queue_cli, list(args))
    return res.exit_code, res.output


@pytest.mark.parametrize("how", sorted(HOLDERS))
def test_stat_says_running_while_the_sendmutex_is_held(tmp_path, how):
    """pgrep finds no qmail-send (stat's default status command), but a process holds
    lock/sendmutex: stat says running, names the holder and that the status command
    disagrees. Before: "qmail-send: not running"."""
    q, _ = _queue(tmp_path)
    mutex = q.queue / "lock" / "sendmutex"
    before = (q.files(), os.stat(mutex))
    with held(mutex, how) as pid:
        code, out = _run("stat", "local", "--queue-dir", str(q.queue))
        jcode, jout = _run("stat", "local", "--queue-dir", str(q.queue), "--json")
        still = _listed(mutex)
    assert code == 0 and jcode == 0, out + jout
    line = out.splitlines()[-1]
    assert line.startswith("qmail-send: running: "), out
    assert f"a process (pid {pid}) holds qmail-send's lock lock/sendmutex" in line
    assert "the status command says it is not running" in line
    assert "delete --execute and check --repair refuse while it is held" in line
    data = json.loads(jout)
    assert data["qmail_send"] == "running"
    assert data["status_command"] == "not running"
    assert data["sendmutex"] == "held" and data["sendmutex_pids"] == [pid]
    assert "the status command says it is not running" in data["qmail_send_note"]
    assert still  # the holder kept its lock throughout
    after = os.stat(mutex)
    assert q.files() == before[0]
    assert (after.st_ino, after.st_mtime_ns, after.st_mode) == \
        (before[1].st_ino, before[1].st_mtime_ns, before[1].st_mode)


def test_stat_says_not_running_when_the_sendmutex_is_free(tmp_path):
    """No holder, or one of another file (another queue's sendmutex): "not running",
    as the status command says."""
    q, _ = _queue(tmp_path)
    other = QueueBuilder(tmp_path / "other")
    with held(other.queue / "lock" / "sendmutex"):
        code, out = _run("stat", "local", "--queue-dir", str(q.queue))
        jcode, jout = _run("stat", "local", "--queue-dir", str(q.queue), "--json")
    assert code == 0 and jcode == 0, out + jout
    assert out.splitlines()[-1] == "qmail-send: not running"
    data = json.loads(jout)
    assert data["qmail_send"] == data["status_command"] == "not running"
    assert data["sendmutex"] == "free" and data["qmail_send_note"] is None


def test_a_running_status_with_the_sendmutex_free_is_said(tmp_path):
    """The status command says running, but nobody holds the lock (a wrong custom
    status command; a qmail-send of another pid namespace): the words say so. With no
    lock/sendmutex, the status command alone, as before."""
    assert render.send_text(0, "free") == (
        "running (the status command says so), but no process seen here holds its lock "
        "lock/sendmutex, as a running qmail-send does")
    assert render.send_text(0, "held", (5,)) == render.send_text(0) == "running"
    assert render.send_text(2, "held", ()).startswith(
        "running: a process holds qmail-send's lock lock/sendmutex, as a running "
        "qmail-send does, but the status command cannot tell (exit 2)")
    assert render.send_text(1, "absent") == render.send_text(1, "unknown") == "not running"
    q, _ = _queue(tmp_path)
    (q.queue / "lock" / "sendmutex").unlink()
    code, out = _run("stat", "local", "--queue-dir", str(q.queue), "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["sendmutex"] == "absent" and data["qmail_send"] == "not running"


def test_a_dry_run_delete_says_execute_will_refuse(tmp_path):
    """delete without --execute, status "stopped", lock held: it warns that --execute
    will refuse, and removes nothing. Before: no warning at all."""
    q, msg = _queue(tmp_path)
    before = q.files()
    with held(q.queue / "lock" / "sendmutex") as pid:
        code, out = _run("delete", "local", "--bounces", "--queue-dir", str(q.queue),
                         *STOPPED)
        jcode, jout = _run("delete", "local", str(msg), "--queue-dir", str(q.queue),
                           *STOPPED, "--json")
    assert code == 0 and jcode == 0, out + jout
    assert f"would remove message {msg}" in out
    assert (f"warning: a process (pid {pid}) holds qmail-send's lock lock/sendmutex"
            in out)
    assert "--execute will refuse while it is held" in out
    (warning,) = json.loads(jout)["warnings"]
    assert "lock/sendmutex" in warning and "the status command says it is not" in warning
    assert q.files() == before


def test_check_says_repair_will_refuse(tmp_path):
    """check (no --repair) of a queue with a repairable problem while the lock is held:
    it warns that --repair will refuse; nothing changes."""
    q, msg = _queue(tmp_path)
    os.chmod(q.path("info", msg), 0o644)  # repairable
    with held(q.queue / "lock" / "sendmutex"):
        code, out = _run("check", "local", "--queue-dir", str(q.queue), *STOPPED)
        jcode, jout = _run("check", "local", "--queue-dir", str(q.queue), *STOPPED,
                           "--json")
    assert code == 2 and jcode == 2, out + jout
    assert "holds qmail-send's lock lock/sendmutex" in out
    assert "--repair will refuse while it is held" in out
    assert "--repair will refuse" in json.loads(jout)["warnings"][0]
    assert os.stat(q.path("info", msg)).st_mode & 0o777 == 0o644


def test_flush_says_the_sendmutex_is_held(tmp_path):
    """flush refuses when the status command says qmail-send is not running; with the
    lock held, its hint says a process holds it and how to signal that one."""
    q, _ = _queue(tmp_path)
    with held(q.queue / "lock" / "sendmutex") as pid:
        code, out = _run("flush", "local", "--queue-dir", str(q.queue))
    assert code != 0
    assert "qmail-send is not running" in out and "nothing was signalled" in out
    assert f"a process (pid {pid}) holds qmail-send's lock lock/sendmutex" in out
    assert "signal it yourself" in out
