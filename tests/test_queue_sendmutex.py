"""qmail-send's own lock, ``lock/sendmutex``: `delete --execute` and `check --repair`
change the queue only while nobody holds it, and hold it themselves while they change
it, so a qmail-send the status command does not see (another process table, a name
pgrep does not match) is never edited under, and none starts half-way through.

qmail-send takes the lock with ``flock`` (``lockf`` where qmail was built without
flock) when it starts, and exits ("qmail-send is already running") when it cannot.
Each test holds it the one way or the other from this process, as qmail-send would.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from queue_builder import QueueBuilder

from mailplan.connectors.local import LocalConnector
from mailplan.errors import HostError
from mailplan.queue import ops
from mailplan.queue.cli import queue as queue_cli
from mailplan.queue.control import Control

STOPPED = Control("custom", status_cmd="exit 1", stop_cmd="true", start_cmd="true")
LOCKS = {"flock": fcntl.flock, "lockf": fcntl.lockf}


def _held(path: Path, how: str) -> bool:
    """Whether another process holds ``path``'s lock of kind ``how`` (tried, let go)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        LOCKS[how](fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also lets go of the lock if it was had
    return False


@pytest.mark.parametrize("how", sorted(LOCKS))
@pytest.mark.parametrize("command", ["delete", "repair"])
def test_nothing_is_changed_while_the_sendmutex_is_held(tmp_path, how, command):
    """The status command says qmail-send is stopped (pgrep finds no process of that
    name), but a process holds lock/sendmutex, as a running qmail-send does: nothing is
    removed or repaired, and the error says why. Before, the files went."""
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("", local=("example.com-bob@example.com",))
    os.chmod(q.path("info", msg), 0o644)  # a repairable problem
    before = q.files()
    fd = os.open(q.queue / "lock" / "sendmutex", os.O_WRONLY)
    try:
        LOCKS[how](fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        args = (["delete", "local", "--bounces", "--execute"] if command == "delete"
                else ["check", "local", "--repair"])
        res = CliRunner().invoke(queue_cli, [*args, "--queue-dir", str(q.queue),
                                             "--control", "custom", "--status-cmd", "exit 1",
                                             "--stop-cmd", "true", "--start-cmd", "true"])
    finally:
        os.close(fd)
    assert res.exit_code == 1, res.output
    assert "a process holds its lock lock/sendmutex" in res.output
    assert "nothing was changed" in res.output
    assert q.files() == before
    assert os.stat(q.path("info", msg)).st_mode & 0o777 == 0o644


@pytest.mark.parametrize("how", sorted(LOCKS))
def test_the_sendmutex_is_held_while_the_queue_changes(tmp_path, how):
    """While the agent removes files, lock/sendmutex is its own: a qmail-send started
    meanwhile (by its supervisor, by an admin) cannot take it and exits, instead of
    reading a queue that is half removed. Once the agent is done, the lock is free."""
    q = QueueBuilder(tmp_path / "qmail")
    first, second = (q.add(f"s{n}@example.com", remote=("x@remote.example",))
                     for n in range(2))
    mutex = q.queue / "lock" / "sendmutex"
    seen: list[bool] = []

    def actions():
        yield {"op": "remove", "path": str(q.path("mess", first).relative_to(q.queue))}
        # the agent carries out an action once the next line has come
        yield {"op": "remove", "path": str(q.path("mess", second).relative_to(q.queue))}
        deadline = time.monotonic() + 20
        while q.path("mess", first).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        seen.append(_held(mutex, how))

    target = ops.Target(LocalConnector("l"), str(q.queue), STOPPED)
    outcomes = ops.ctl_apply(target, actions(), "delete")
    assert len(outcomes) == 2 and not outcomes.failed
    assert not q.path("mess", first).exists() and not q.path("mess", second).exists()
    assert seen == [True]
    assert not _held(mutex, how)


def test_a_queue_without_a_sendmutex_is_still_changed(tmp_path):
    """No lock/sendmutex (no qmail-send can start then; repair makes it again): the
    status command alone decides, as before."""
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("", local=("example.com-bob@example.com",))
    (q.queue / "lock" / "sendmutex").unlink()
    target = ops.Target(LocalConnector("l"), str(q.queue), STOPPED)
    change = ops.delete(target, ops.Selection((msg,)), execute=True)
    assert list(change.removed) == [msg] and not change.failed
    assert not q.path("mess", msg).exists()


def test_a_running_qmail_send_is_still_refused_by_its_status(tmp_path):
    """The status command saying "running" refuses as before, whatever the lock."""
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("", local=("example.com-bob@example.com",))
    target = ops.Target(LocalConnector("l"), str(q.queue),
                        Control("custom", status_cmd="exit 0", stop_cmd="true",
                                start_cmd="true"))
    with pytest.raises(HostError, match="qmail-send is not stopped"):
        ops.ctl_apply(target, iter([{"op": "remove", "path": str(
            q.path("mess", msg).relative_to(q.queue))}]), "delete")
    assert q.path("mess", msg).exists()
