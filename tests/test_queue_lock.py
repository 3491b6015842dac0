"""The queue lock: of the queue commands, those that change the queue (``delete
--execute``, ``check --repair``) hold a lock on the queue directory from before they stop
qmail-send until it is started again; a second one is refused at once, naming the
holder, and changes nothing; the commands that only read take no lock. Over the test
suite's sshd and through the local connector, on real queue trees
(:class:`queue_builder.QueueBuilder`) with qmail-send stood in for by a flag file."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from queue_builder import QueueBuilder
from test_queue_ssh import FakeQmail
from tools import require

from mailplan.connectors.base import Connector
from mailplan.connectors.local import LocalConnector
from mailplan.connectors.ssh import SSHConnector
from mailplan.queue.cli import queue as queue_cli
from mailplan.queue.lock import LOCK_NAME, QueueHolder, queue_locked


def run(args: list[str]):
    return CliRunner().invoke(queue_cli, args)


def host_args(transport: str, sshd) -> list[str]:
    if transport == "local":
        return ["local"]
    return [f"ssh://{sshd.user}@127.0.0.1:{sshd.port}", "--identity", str(sshd.client_key),
            "--known-hosts", str(sshd.known_hosts)]


def other_connection(transport: str, sshd) -> Connector:
    """A connection of another mailplan to the same host, the other way round."""
    if transport == "ssh":
        return LocalConnector("other")
    return SSHConnector("other", address="127.0.0.1", port=sshd.port, user=sshd.user,
                        identity_file=str(sshd.client_key), known_hosts=str(sshd.known_hosts))


def snapshot(q: QueueBuilder) -> dict[str, tuple[bytes, int, int, int, int]]:
    """Every object below the queue: its bytes (a file's), mode, owner, group and inode."""
    out = {}
    for path in sorted(q.queue.rglob("*")):
        st = path.lstat()
        data = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
        out[str(path.relative_to(q.queue))] = (data, st.st_mode, st.st_uid, st.st_gid,
                                               st.st_ino)
    return out


def free(lock: Path) -> bool:
    """Whether nobody holds the lock (flock(1) asks the kernel; it holds it no longer)."""
    flock = require(shutil.which("flock"), "flock (util-linux)")
    return subprocess.run([flock, "-n", str(lock), "true"], check=False).returncode == 0


def damaged(q: QueueBuilder) -> int:
    """A message whose info file has the wrong mode: something to delete or repair."""
    msg = q.add("a@example.net", remote=("x@remote.example",))
    os.chmod(q.path("info", msg), 0o644)
    return msg


@pytest.mark.ssh
@pytest.mark.parametrize("transport", ["ssh", "local"])
@pytest.mark.parametrize("command", ["delete", "repair"])
def test_a_changing_command_is_refused_while_another_holds_the_queue_lock(
        tmp_path, sshd, transport, command):
    """While another mailplan holds the queue's lock, delete --execute and check --repair
    are refused at once, naming it, and change nothing: not the queue (byte for byte),
    not qmail-send (not stopped); the commands that only read run meanwhile. Once the
    holder has ended, the refused command runs."""
    q = QueueBuilder(tmp_path)
    fake = FakeQmail(tmp_path, running=True)
    msg = damaged(q)
    where = [*host_args(transport, sshd), "--queue-dir", str(q.queue)]
    args = ["delete", *where, str(msg), "--execute"] if command == "delete" else \
        ["check", *where, "--repair"]
    holder = QueueHolder(command="mailplan queue check --repair", queue=str(q.queue))
    with other_connection(transport, sshd) as other, \
            queue_locked(other, str(q.queue), holder) as path:
        assert path == str(q.queue.resolve() / LOCK_NAME)
        before = snapshot(q)
        res = run([*args, *fake.options()])
        assert res.exit_code == 1, res.output
        assert ("another mailplan queue command is changing this queue (pid "
                f"{os.getpid()} on {socket.gethostname()}, command mailplan queue check "
                f"--repair, queue {q.queue}, since 20") in res.output, res.output
        assert "its lock held on the host by pid" in res.output
        assert "nothing was changed" in res.output and "Traceback" not in res.output
        assert snapshot(q) == before
        assert fake.log == [] and fake.running  # qmail-send neither stopped nor started
        for reading in (["stat"], ["list"], ["show", str(msg)], ["check"],
                        ["delete", str(msg)]):
            res = run([reading[0], *where, *reading[1:]])
            assert res.exit_code == (2 if reading == ["check"] else 0), res.output
            assert "queue lock" not in res.output
        assert snapshot(q) == before
    res = run([*args, *fake.options()])
    assert res.exit_code == 0, res.output
    assert fake.log == ["stop", "start"] and fake.running
    if command == "delete":
        assert not q.path("mess", msg).exists()
    else:
        assert q.path("info", msg).stat().st_mode & 0o777 == 0o600


@pytest.mark.ssh
@pytest.mark.parametrize("transport", ["ssh", "local"])
def test_the_queue_lock_is_held_from_the_stop_to_the_start_and_let_go_at_the_end(
        tmp_path, sshd, transport):
    """qmail-send's stop and start commands, run on the host, find the lock held and
    described (this command, this process); once the command has ended, also in an
    error, it is free, and the next command of the same process takes it. The lock file
    sits at the top of the queue, the queue directory's owner's, and check does not
    mind it."""
    q = QueueBuilder(tmp_path)
    fake = FakeQmail(tmp_path, running=True)
    msg = damaged(q)
    lock, seen = q.queue / LOCK_NAME, tmp_path / "seen"
    require(shutil.which("flock"), "flock (util-linux)")  # the probe below runs it
    probe = (f"if [ -f {shlex.quote(str(lock))} ] && ! flock -n {shlex.quote(str(lock))} "
             f"true; then cat {shlex.quote(str(lock))}; else echo free; fi "
             f">> {shlex.quote(str(seen))}; ")
    where = [*host_args(transport, sshd), "--queue-dir", str(q.queue)]
    control = ["--control", "custom", "--status-cmd", fake.status]
    failing = run(["delete", *where, str(msg), "--execute", *control,
                   "--stop-cmd", probe + "false", "--start-cmd", probe + fake.start])
    assert failing.exit_code == 1 and "qmail-send was started again" in failing.output
    assert q.path("mess", msg).exists() and free(lock)
    res = run(["delete", *where, str(msg), "--execute", *control,
               "--stop-cmd", probe + fake.stop, "--start-cmd", probe + fake.start])
    assert res.exit_code == 0, res.output
    assert not q.path("mess", msg).exists() and free(lock)
    said = seen.read_text().splitlines()
    assert len(said) == 4 and "free" not in said, said  # held at each stop and start
    for line in said:
        assert '"command": "mailplan queue delete --execute"' in line
        assert f'"pid": {os.getpid()}' in line and f'"queue": "{q.queue}"' in line
    assert lock.read_text() == ""  # nobody named: the holder emptied it as it ended
    assert (lock.owner(), lock.group()) == ("qmailq", "qmail")  # as the queue directory
    assert lock.stat().st_mode & 0o777 == 0o644
    checked = run(["check", *where])
    assert checked.exit_code == 0 and "queue is healthy" in checked.output, checked.output


def test_each_queue_directory_has_its_own_lock_found_through_links(tmp_path):
    """Two queues on one machine have two locks: one held leaves the other free. A
    queue named through a symbolic link is locked where the link leads."""
    one, two = QueueBuilder(tmp_path / "one"), QueueBuilder(tmp_path / "two")
    fake = FakeQmail(tmp_path, running=False)
    damaged(one), damaged(two)
    link = tmp_path / "link"
    link.symlink_to(one.queue)
    with LocalConnector("other") as other, queue_locked(other, str(link), QueueHolder(
            command="mailplan queue delete --execute", queue=str(link))):
        res = run(["check", "local", "--queue-dir", str(one.queue), "--repair",
                   *fake.options()])
        assert res.exit_code == 1 and f"queue {link}, since" in res.output, res.output
        res = run(["check", "local", "--queue-dir", str(two.queue), "--repair",
                   *fake.options()])
        assert res.exit_code == 0, res.output
    assert not (tmp_path / LOCK_NAME).exists()  # none beside the link
