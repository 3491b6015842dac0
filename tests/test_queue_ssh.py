"""delete and check --repair over real SSH (the suite's sshd) on queue trees in temp dirs.

qmail-send is stood in for by a flag file that custom status/stop/start commands look
at and change, so each test controls whether "qmail-send runs" and sees whether mailplan
stopped and restarted it. The process method is tested with a real process named
qmail-send.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from queue_builder import SPLIT, QueueBuilder

from mailplan.connectors.local import LocalConnector
from mailplan.queue import ops, render
from mailplan.queue.cli import queue as queue_cli
from mailplan.queue.control import Control, QmailRunning
from mailplan.queue.dump import read_queue
from mailplan.queue.model import messages

pytestmark = pytest.mark.ssh


class FakeQmail:
    """A "qmail-send" that is a flag file, with a log of stop/start calls."""

    def __init__(self, root: Path, running: bool) -> None:
        self.dir = root / "svc"
        self.dir.mkdir()
        if running:
            (self.dir / "running").touch()
        flag, log = shlex.quote(str(self.dir / "running")), shlex.quote(str(self.dir / "log"))
        self.status = f"test -e {flag}"
        self.stop = f"rm -f {flag}; echo stop >> {log}"
        self.start = f"touch {flag}; echo start >> {log}"

    @property
    def log(self) -> list[str]:
        path = self.dir / "log"
        return path.read_text().split() if path.exists() else []

    @property
    def running(self) -> bool:
        return (self.dir / "running").exists()

    def options(self) -> list[str]:
        return ["--control", "custom", "--status-cmd", self.status, "--stop-cmd", self.stop,
                "--start-cmd", self.start]

    def control(self, **kw: object) -> Control:
        return Control("custom", status_cmd=self.status, stop_cmd=self.stop,
                       start_cmd=self.start, **kw)


@pytest.fixture
def ssh_args(sshd) -> list[str]:
    return [f"ssh://{sshd.user}@127.0.0.1:{sshd.port}", "--identity", str(sshd.client_key),
            "--known-hosts", str(sshd.known_hosts)]


def run(args: list[str]):
    result = CliRunner().invoke(queue_cli, args)
    return result


def cmd(command: str, ssh_args: list[str], q: QueueBuilder, *extra: str):
    return run([command, *ssh_args, "--queue-dir", str(q.queue), *extra])


def test_reading_costs_one_channel(tmp_path, ssh_connector):
    q = QueueBuilder(tmp_path)
    for n in range(5):
        q.add(f"s{n}@example.net", local=(f"example.com-u{n}@example.com",))
    target = ops.Target(ssh_connector, str(q.queue))
    dump = target.read(step="test")
    assert len(messages(dump)) == 5
    assert ssh_connector.channels_opened == 1


def test_delete_is_a_dry_run_by_default(tmp_path, ssh_args):
    q = QueueBuilder(tmp_path)
    msg = q.add("a@example.net", local=("example.com-bob@example.com",),
                remote=("x@remote.example",))
    before = q.files()
    result = cmd("delete", ssh_args, q, str(msg))
    assert result.exit_code == 0, result.output
    assert q.files() == before
    split = msg % SPLIT
    assert (f"would remove message {msg}: local/{split}/{msg}, remote/{split}/{msg}, "
            f"info/{split}/{msg}, mess/{split}/{msg}") in result.output
    assert "add --execute to delete" in result.output


def test_delete_removes_every_file_with_qmail_send_stopped(tmp_path, ssh_args, ssh_connector):
    q = QueueBuilder(tmp_path)
    fake = FakeQmail(tmp_path, running=True)
    full = q.add("a@example.net", local=("example.com-bob@example.com",),
                 remote=("x@remote.example",))
    bounce = q.path("bounce", full)
    bounce.write_bytes(b"bounce text\n")
    shutil.chown(bounce, "qmails", "qmail")
    todo = q.add("b@example.net", remote=("y@remote.example",), preprocessed=False)
    half = q.add("c@example.net", preprocessed=False, todo=False)
    keep = q.add("d@example.net", local=("example.com-alice@example.com",))
    keep_files = [f for f in q.files() if f.endswith(f"/{keep}")]

    result = cmd("delete", ssh_args, q, str(full), str(todo), str(half), "--execute",
                 *fake.options())
    assert result.exit_code == 0, result.output
    assert fake.log == ["stop", "start"] and fake.running
    left = q.files()
    for msg in (full, todo, half):
        assert not [f for f in left if f.endswith(f"/{msg}")], msg
    assert [f for f in left if f.endswith(f"/{keep}")] == keep_files
    assert f"removed message {full}: bounce/{full}, local/" in result.output
    assert f"removed message {todo}: todo/{todo}, intd/{todo}, mess/{todo % SPLIT}/{todo}" \
        in result.output
    assert f"removed message {half}: mess/{half % SPLIT}/{half}" in result.output
    assert "qmail-send was stopped for this and started again" in result.output


def test_delete_channels(tmp_path, ssh_connector):
    q = QueueBuilder(tmp_path)
    fake = FakeQmail(tmp_path, running=True)
    msg = q.add("a@example.net", remote=("x@remote.example",))
    target = ops.Target(ssh_connector, str(q.queue), fake.control())
    change = ops.delete(target, ops.Selection((msg,)), execute=True)
    assert change.executed and change.stopped
    # read, the queue lock (mailplan.queue.lock), stop, re-read with qmail-send
    # stopped, apply, start
    assert ssh_connector.channels_opened == 6


@pytest.mark.parametrize("selector,victims", [
    (["--match", "subject", "cheap pills"], {"spam1", "spam2"}),
    (["--match", "subject", "^cheap", "--regex"], {"spam1"}),
    (["--match", "from", "spammer@"], {"spam1", "spam2"}),
    (["--match", "to", "victim@example.com"], {"spam2"}),  # prefix-less local address
    (["--bounces"], {"bounce", "double"}),
    (["--bounces", "--match", "to", "postmaster"], {"double"}),
])
def test_delete_by_pattern(tmp_path, ssh_args, selector, victims):
    q = QueueBuilder(tmp_path)
    fake = FakeQmail(tmp_path, running=False)
    ids = {
        "spam1": q.add("spammer@bad.example", remote=("a@remote.example",),
                       subject="cheap pills"),
        "spam2": q.add("x@bad.example", local=("example.com-victim@example.com",),
                       subject="more cheap pills", sender_header="Spammer <spammer@bad.example>"),
        "bounce": q.add("", remote=("original@remote.example",), subject="failure notice"),
        "double": q.add("#@[]", local=("alias-postmaster@localhost",), subject="double"),
        "ham": q.add("friend@example.net", local=("example.com-bob@example.com",)),
    }
    result = cmd("delete", ssh_args, q, *selector, "--execute", *fake.options())
    assert result.exit_code == 0, result.output
    left = {name for name, i in ids.items() if q.path("mess", i).exists()}
    assert left == set(ids) - victims
    assert fake.log == []  # it was not running: nothing to stop or start


# -- refusals -------------------------------------------------------------------------------

@pytest.fixture
def real_qmail_send(tmp_path):
    """A process really called qmail-send (a copy of sleep), for pgrep -x."""
    binary = tmp_path / "bin" / "qmail-send"
    binary.parent.mkdir()
    shutil.copy("/bin/sleep", binary)
    proc = subprocess.Popen([str(binary), "60"])
    time.sleep(0.1)
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("command", [["delete", "--execute"], ["check", "--repair"]])
def test_refuses_while_qmail_send_runs_and_cannot_be_stopped(tmp_path, ssh_args,
                                                             real_qmail_send, command):
    q = QueueBuilder(tmp_path)
    msg = q.add("a@example.net", remote=("x@remote.example",))
    os.chmod(q.path("info", msg), 0o644)  # something for repair to do
    before = q.files()
    result = cmd(command[0], ssh_args, q, str(msg), *command[1:]) if command[0] == "delete" \
        else cmd(command[0], ssh_args, q, *command[1:])
    assert result.exit_code == 1
    assert "qmail-send is running" in result.output
    assert "nothing was changed" in result.output
    assert q.files() == before
    assert q.path("info", msg).stat().st_mode & 0o777 == 0o644


def test_refuses_when_qmail_send_does_not_stop(tmp_path, ssh_connector):
    q = QueueBuilder(tmp_path)
    fake = FakeQmail(tmp_path, running=True)
    stubborn = Control("custom", status_cmd=fake.status, stop_cmd="true",
                       start_cmd=fake.start, timeout=1)
    msg = q.add("a@example.net", remote=("x@remote.example",))
    with pytest.raises(QmailRunning, match="still runs"):
        ops.delete(ops.Target(ssh_connector, str(q.queue), stubborn), ops.Selection((msg,)),
                   execute=True)
    assert q.path("mess", msg).exists()


def test_refuses_unknown_id(tmp_path, ssh_args):
    q = QueueBuilder(tmp_path)
    fake = FakeQmail(tmp_path, running=True)
    msg = q.add("a@example.net", remote=("x@remote.example",))
    result = cmd("delete", ssh_args, q, str(msg), "999999999", "--execute", *fake.options())
    assert result.exit_code == 1
    assert "no message 999999999 in the queue; nothing was changed" in result.output
    assert q.path("mess", msg).exists() and fake.log == []
    result = cmd("show", ssh_args, q, "999999999")
    assert result.exit_code == 1 and "no message 999999999" in result.output


def test_refuses_missing_queue_dir(tmp_path, ssh_args):
    result = run(["stat", *ssh_args, "--queue-dir", str(tmp_path / "queue")])
    assert result.exit_code == 1
    assert f"there is no qmail queue directory {tmp_path / 'queue'}" in result.output
    assert f"hint: --queue-dir {tmp_path / 'queue'} holds no qmail queue" in result.output


def test_refuses_host_without_qmail(tmp_path, ssh_args):
    missing = tmp_path / "var" / "qmail" / "queue"
    for command in (["stat"], ["list"], ["check", "--repair"], ["delete", "--bounces"]):
        result = run([command[0], *ssh_args, "--queue-dir", str(missing), *command[1:]])
        assert result.exit_code == 1, command
        assert "qmail does not seem to be installed" in result.output


def test_a_percent_encoded_user_logs_in_as_the_decoded_name(tmp_path, sshd, ssh_args):
    """The user of ssh:// was used as written, escapes and all (OpenSSH decodes it):
    spelled wholly in %XX, it is the same login."""
    q = QueueBuilder(tmp_path)
    q.add("a@example.net", remote=("x@remote.example",))
    encoded = "".join(f"%{b:02X}" for b in sshd.user.encode())
    args = [f"ssh://{encoded}@127.0.0.1:{sshd.port}", *ssh_args[1:]]
    result = cmd("stat", args, q)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == cmd("stat", ssh_args, q).output.splitlines()[0]
    assert result.output.startswith("messages in queue: 1\n"), result.output


def test_refuses_delete_without_selector(tmp_path, ssh_args):
    q = QueueBuilder(tmp_path)
    result = cmd("delete", ssh_args, q, "--execute")
    assert result.exit_code == 1 and "say which messages to delete" in result.output


# -- check and repair -----------------------------------------------------------------------

def damaged_queue(tmp_path: Path) -> tuple[QueueBuilder, dict[str, int], int]:
    """A queue with one of each problem; returns the builder, ids, and the emptied split."""
    q = QueueBuilder(tmp_path)
    ids = {
        "ok": q.add("ok@example.net", local=("example.com-bob@example.com",),
                    remote=("x@remote.example",)),
        "todo": q.add("todo@example.net", remote=("y@remote.example",), preprocessed=False),
        "stale": q.add("stale@example.net", preprocessed=False, todo=False, age=3 * 86400),
        "fresh": q.add("fresh@example.net", remote=("z@remote.example",), preprocessed=False,
                       todo=False),
        "moved": q.add("moved@example.net", local=("example.com-alice@example.com",)),
    }
    # wrong modes and owners
    os.chmod(q.path("info", ids["ok"]), 0o644)
    shutil.chown(q.path("local", ids["ok"]), "root", "root")
    os.chmod(q.queue / "info" / str((ids["ok"] + 1) % SPLIT), 0o755)
    # a message renamed away from its inode, as a restore from backup does
    moved, fake_id = ids["moved"], ids["moved"] + 1000003
    for area in ("mess", "info", "local"):
        dst = q.path(area, fake_id)
        q.path(area, moved).rename(dst)
    # a missing split directory (one that holds no file)
    used = {i % SPLIT for i in (*ids.values(), fake_id)}
    empty = next(n for n in range(SPLIT) if n not in used)
    os.rmdir(q.queue / "remote" / str(empty))
    # an orphan, a stray file and a missing lock fifo
    orphan = q.queue / "info" / "4" / "4000004"
    orphan.write_bytes(b"Fgone@example.net\0")
    shutil.chown(orphan, "qmails", "qmail")
    (q.queue / "mess" / "3" / "notes.txt").write_text("left by someone\n")
    os.unlink(q.queue / "lock" / "trigger")
    return q, {**ids, "fake": fake_id}, empty


def test_check_reports_every_problem(tmp_path, ssh_args):
    q, ids, empty = damaged_queue(tmp_path)
    result = cmd("check", ssh_args, q)
    assert result.exit_code == 2, result.output
    out = result.output
    ok_split = ids["ok"] % SPLIT
    assert f"mode: info/{ok_split}/{ids['ok']}: mode 0644, should be 0600" in out
    assert f"owner: local/{ok_split}/{ids['ok']}: owned by root:root, should be qmails:qmail" \
        in out
    assert f"mode: info/{(ids['ok'] + 1) % SPLIT}: mode 0755, should be 0700" in out
    assert f"inode-mismatch: mess/{ids['fake'] % SPLIT}/{ids['fake']}: message {ids['fake']}: " \
        f"its mess file has inode {ids['moved']}" in out
    assert f"missing-dir: remote/{empty}: directory is missing" in out
    assert "orphan: 4000004: files without a mess file: info/4/4000004" in out
    assert "stray-file: mess/3/notes.txt" in out
    assert "missing-file: lock/trigger" in out
    assert f"stale-partial: mess/{ids['stale'] % SPLIT}/{ids['stale']}: half-written" in out
    assert f"note: message {ids['fresh']} is being queued" in out
    assert str(ids["todo"]) not in out  # not preprocessed yet is normal
    assert "9 problem(s), 9 repairable with --repair" in out


def test_repair_fixes_everything_with_qmail_send_stopped(tmp_path, ssh_args):
    q, ids, empty = damaged_queue(tmp_path)
    fake = FakeQmail(tmp_path, running=True)
    result = cmd("check", ssh_args, q, "--repair", *fake.options())
    assert result.exit_code == 0, result.output
    assert fake.log == ["stop", "start"]
    after = result.output.split("check now says:")[1]
    assert "queue is healthy (split 23)" in after
    assert f"note: message {ids['fresh']} is being queued" in after
    # the renamed message is back under its inode, contents intact
    moved = ids["moved"]
    assert q.path("info", moved).read_bytes() == b"Fmoved@example.net\0"
    assert q.path("local", moved).read_bytes() == b"Texample.com-alice@example.com\0"
    assert not q.path("mess", ids["fake"]).exists()
    # modes, owners, directories, lock fifo
    assert q.path("info", ids["ok"]).stat().st_mode & 0o777 == 0o600
    assert q.path("local", ids["ok"]).owner() == "qmails"
    remote_dir = q.queue / "remote" / str(empty)
    assert remote_dir.is_dir() and remote_dir.owner() == "qmails"
    assert remote_dir.stat().st_mode & 0o777 == 0o700
    assert (q.queue / "lock" / "trigger").is_fifo()
    assert (q.queue / "lock" / "trigger").stat().st_mode & 0o777 == 0o622
    # removed: the stale half-written message, the orphan, the stray file
    assert not q.path("mess", ids["stale"]).exists()
    assert not (q.queue / "info" / "4" / "4000004").exists()
    assert not (q.queue / "mess" / "3" / "notes.txt").exists()
    # kept: the message in todo/ and the one still being queued
    assert q.path("todo", ids["todo"]).exists() and q.path("intd", ids["todo"]).exists()
    assert q.path("mess", ids["fresh"]).exists() and q.path("intd", ids["fresh"]).exists()
    again = cmd("check", ssh_args, q)
    assert again.exit_code == 0, again.output
    assert "problem" not in again.output


def test_repair_json_and_nothing_to_do(tmp_path, ssh_args):
    q = QueueBuilder(tmp_path)
    fake = FakeQmail(tmp_path, running=True)
    q.add("ok@example.net", remote=("x@remote.example",))
    result = cmd("check", ssh_args, q, "--repair", "--json", *fake.options())
    assert result.exit_code == 0, result.output
    assert '"problems": []' in result.output
    assert fake.log == []  # healthy: qmail-send is left alone


def test_repair_refuses_a_different_split(tmp_path, ssh_args):
    q = QueueBuilder(tmp_path)
    (q.queue / "mess" / "40").mkdir()
    result = cmd("check", ssh_args, q, "--repair")
    assert result.exit_code == 1
    assert "refusing to repair" in result.output and "--split" in result.output


def test_read_queue_reports_the_running_state(tmp_path, ssh_connector):
    q = QueueBuilder(tmp_path)
    fake = FakeQmail(tmp_path, running=True)
    dump = read_queue(ssh_connector, str(q.queue), status_command=fake.status)
    assert dump.status == 0
    (fake.dir / "running").unlink()
    dump = read_queue(ssh_connector, str(q.queue), status_command=fake.status)
    assert dump.status == 1


def test_show_full_over_ssh(tmp_path, ssh_args):
    """show --full over SSH: the text as it arrives in pieces, the same as shown whole."""
    q = QueueBuilder(tmp_path)
    msg = q.add("a@example.net", remote=("x@remote.example",))
    with open(q.path("mess", msg), "ab") as fh:
        fh.write(("\u00e9\u20ac line\n" * 40_000).encode() + b"\xff end")
    m, whole = ops.show(ops.Target(LocalConnector("l"), str(q.queue)), msg, full=True)
    result = cmd("show", ssh_args, q, str(msg), "--full")
    assert result.exit_code == 0, result.output
    assert result.output == render.show_text(m, whole)
