"""Framed batches and lockstep sessions over the local shell and the test sshd."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import login_shell_connector

from mailplan.connectors.base import CommandResult, Connector, Process
from mailplan.connectors.local import LocalConnector
from mailplan.errors import CommandTimeout, ConnectionLost, HostError
from mailplan.remote import CLIENT_GRACE, ShellSession, run_batch
from mailplan.remote_files import read_files, tar_command, tar_files
from mailplan.remote_frames import KILL_GRACE
from mailplan.shell import Cmd, chunks_within


@pytest.fixture(params=["local", "ssh", "ssh-sudo", "ssh-tcsh", "ssh-fish"])
def conn(request):
    if request.param == "local":
        return LocalConnector("local")
    if request.param == "ssh":
        return request.getfixturevalue("ssh_connector")
    if request.param == "ssh-sudo":
        return request.getfixturevalue("sudo_connector")
    # a login shell that reads no sh lines (sudo: the tests' files are root's)
    conn = login_shell_connector(request.getfixturevalue("sshd"), request.param[4:])
    request.addfinalizer(conn.close)
    return conn


def test_batch_keeps_each_result_apart(conn):
    results = run_batch(conn, ["printf 'a\\0b'", "echo oops >&2; exit 3", "cat", "true"])
    assert [r.returncode for r in results] == [0, 3, 0, 0]
    assert results[0].stdout == b"a\0b"
    assert results[1].stderr == b"oops\n"
    assert results[2].stdout == b""  # stdin is /dev/null, not the script
    assert conn.channels_opened == 1


def test_session_is_lockstep_and_keeps_shell_state(conn, tmp_path):
    marker = tmp_path / "m"
    with ShellSession(conn) as sh:
        assert sh.run(f"echo one > {marker}").returncode == 0
        assert marker.read_text() == "one\n"  # done before the next command is even sent
        assert sh.run("exit 4").returncode == 4  # a subshell: the session survives
        assert sh.run(f"cat {marker}").stdout == b"one\n"
    assert conn.channels_opened == 1


def test_dead_shell_is_reported():
    conn = LocalConnector("box")
    sh = ShellSession(conn)
    assert sh.run("true").returncode == 0  # the prologue finished, no child left
    sh._proc.kill()
    with pytest.raises(HostError, match="host box"):
        sh.run("true")


def test_batches_lockstep_commands_and_file_reads_share_one_shell(conn, tmp_path):
    (tmp_path / "f").write_text("x")
    assert run_batch(conn, ["echo a"])[0].stdout == b"a\n"
    assert conn.shell().run("echo b").stdout == b"b\n"
    assert read_files(conn, [str(tmp_path / "f")]) == {str(tmp_path / "f"): b"x"}
    assert run_batch(conn, ["echo c", "echo d"])[1].stdout == b"d\n"
    assert conn.channels_opened == 1


def test_a_broken_shared_shell_is_replaced_by_the_next_call():
    conn = LocalConnector("box")
    first = conn.shell()
    assert run_batch(conn, ["true"])[0].returncode == 0
    first._proc.kill()
    with pytest.raises(HostError, match="host box"):
        run_batch(conn, ["true"])
    assert first.broken
    assert run_batch(conn, ["echo again"])[0].stdout == b"again\n"
    assert conn.shell() is not first and conn.channels_opened == 2
    conn.close()
    assert conn.shell() is not first  # close ended it: a later use starts a new one


def test_read_files_in_one_channel(conn, tmp_path):
    (tmp_path / "a").write_bytes(b"alpha\0\n")
    (tmp_path / "long").mkdir()
    deep = tmp_path / ("x" * 120)
    deep.write_text("deep")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    paths = [str(tmp_path / "a"), str(tmp_path / "missing"), str(tmp_path / "long"),
             str(deep), str(tmp_path / "link"), str(tmp_path / "odd name; $(x)")]
    (tmp_path / "odd name; $(x)").write_text("odd")
    got = read_files(conn, paths)
    assert got == {paths[0]: b"alpha\0\n", paths[1]: None, paths[2]: None,
                   paths[3]: b"deep", paths[4]: b"alpha\0\n", paths[5]: b"odd"}
    assert conn.channels_opened == 1


def test_files_read_by_tar_in_a_batch_of_other_commands(conn, tmp_path):
    # tar_command joins a batch (no round trip of its own) and tar_files gives what
    # read_files gives for the same paths, links not followed where asked
    (tmp_path / "a").write_bytes(b"alpha\0\n")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    (tmp_path / "dir").mkdir()
    paths = [str(tmp_path / n) for n in ("a", "link", "dir", "missing", "odd name; $(x)")]
    (tmp_path / "odd name; $(x)").write_text("odd")
    for follow in (True, False):
        echo, read = run_batch(conn, ["echo a", tar_command(paths, follow=follow)])
        assert echo.stdout == b"a\n"
        assert tar_files(conn, paths, read) == read_files(conn, paths, follow=follow)
    assert tar_files(conn, paths, read)[paths[1]] is None  # follow=False: the link
    assert conn.channels_opened == 1
    with pytest.raises(HostError, match="tar exited 2 while reading files"):
        tar_files(conn, paths, CommandResult(2, b"", b""))
    with pytest.raises(HostError, match="reading 5 file"):
        tar_files(conn, paths, CommandResult(0, b"not a tar archive" * 40, b""))


def test_a_batch_with_a_big_script_and_big_outputs_does_not_deadlock(conn):
    import threading

    # ~1 MB of script and ~6 MB of output: far beyond any pipe or channel buffer
    commands = [f"head -c 2000 /dev/zero; : {'x' * 300}" for _ in range(3000)]
    out: list = []
    worker = threading.Thread(target=lambda: out.append(run_batch(conn, commands)),
                              daemon=True)
    worker.start()
    worker.join(120)
    assert not worker.is_alive(), "the batch deadlocked"
    (results,) = out
    assert len(results) == 3000
    assert all(r.returncode == 0 and r.stdout == b"\0" * 2000 for r in results)


def test_a_session_writes_nothing_on_the_host(tmp_path, monkeypatch):
    """The shell session frames its commands' outputs without files: on the source a
    file of a command's output would be a write, and a copy of what it read (the
    shadow file) left behind if the shell were killed. Its temp directory stays empty
    through commands with output, errors and a kill."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    conn = LocalConnector("box")
    secret = tmp_path / "shadow"
    secret.write_text("alice:$6$salt$hash:19000::::::\n")
    sh = conn.shell()
    results = run_batch(conn, [f"cat {secret}", "echo warn >&2; exit 2"])
    assert results[0].stdout == secret.read_bytes() and results[1].stderr == b"warn\n"
    with sh.stream(f"cat {secret}; echo err >&2") as res:
        assert res.stdout.read() == secret.read_bytes()
    assert res.returncode == 0
    assert list(scratch.iterdir()) == []
    sh._proc.kill()
    assert list(scratch.iterdir()) == []


def test_output_that_looks_like_framing_is_passed_through(conn):
    """A command's output cannot end its frame early: the trailer carries a nonce
    chosen per session, which nothing on the host knows; output without a final
    newline, and empty output, come back exactly."""
    forged = b"\n@@0123456789abcdef 1 0 0\n@@mp 1 0 0 0\n"
    results = run_batch(conn, ["printf '\\n@@0123456789abcdef 1 0 0\\n@@mp 1 0 0 0\\n'",
                               "printf 'tail'", "true", "head -c 200000 /dev/zero"])
    assert [r.stdout for r in results] == [forged, b"tail", b"", b"\0" * 200000]
    sh = conn.shell()
    with sh.stream("printf 'a\\nb'; exit 5") as res:
        assert res.stdout.read(1) == b"a"  # the rest is dropped after the block
    assert res.returncode == 5
    assert sh.run("echo next").stdout == b"next\n"


def test_chunks_within_keeps_order_and_every_bound():
    """Consecutive groups within every limit; an item past a limit is a group alone."""
    items = [(3, 0), (3, 0), (5, 0), (1, 9), (1, 1), (20, 0), (2, 2)]
    assert chunks_within(items, lambda x: x, (6, 10)) == [
        [(3, 0), (3, 0)], [(5, 0), (1, 9)], [(1, 1)], [(20, 0)], [(2, 2)]]
    assert chunks_within([], lambda x: x, (1,)) == []
    assert chunks_within(items, lambda x: x, (100, 100)) == [items]


def _running(pattern: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True,
                          check=False).stdout.split()


def test_a_command_past_its_timeout_is_stopped_on_the_host(conn, tmp_path):
    """A hung command (a vpopmail tool stuck on a lock) fails after the host's
    command_timeout, and what it started on the host is gone, even a process that
    ignores SIGTERM; the next command gets a new shell."""
    conn.command_timeout = 1
    hung = tmp_path / "hung"
    tag = f"sleep {random.randrange(5_000_000, 6_000_000)}"  # no other run uses it
    hung.write_text(f"#!/bin/sh\ntrap '' TERM\n{tag} &\n{tag}\n")
    hung.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"hung did not finish within 1 s") as caught:
        conn.shell().run(Cmd.of(str(hung)))
    # the host's watchdog ended it (TERM, then KILL: about 6 s), not mailplan's own
    # give-up (CLIENT_GRACE later); the margin is for a loaded machine
    assert time.monotonic() - started < 1 + KILL_GRACE + CLIENT_GRACE / 2
    assert caught.value.host == conn.name and caught.value.hint
    deadline = time.monotonic() + 30  # gone at once here; a bound for a hang
    while (_running(tag) or _running("sleep 1$")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _running(tag) == []
    conn.command_timeout = 30
    assert conn.shell().run("echo again").stdout == b"again\n"  # a fresh shell
    watchdog = int(conn.shell().run("sleep 0.2; echo $w").stdout)  # this command's own
    deadline = time.monotonic() + 10  # well before it would end by itself (30 s)
    while _alive(watchdog) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(watchdog)  # each command's watchdog ends with it


def test_an_unlimited_command_runs_past_the_timeout(conn):
    # a deletion (vdeldomain of a big domain) must not be stopped halfway
    conn.command_timeout = 1
    session = conn.shell()
    assert session.run("sleep 1.5; echo done", unlimited=True).stdout == b"done\n"
    with pytest.raises(CommandTimeout):
        session.run("sleep 60")  # stopped after 1 s, however late the watchdog runs


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not); a process may go between any two looks
    (its /proc file then fails to open or to read: ENOENT, ESRCH)."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    return not stat.split(") ", 1)[1].startswith("Z")


def _hung(tmp_path: Path) -> tuple[Path, str]:
    """A program that hangs ignoring SIGTERM and SIGHUP, as does its child; and the
    pattern that finds both (a sleep no other run on this machine uses)."""
    tag = f"sleep {random.randrange(5_000_000, 6_000_000)}"
    hung = tmp_path / "hung"
    hung.write_text(f"#!/bin/sh\ntrap '' TERM HUP\n{tag} &\n{tag}\n")
    hung.chmod(0o755)
    return hung, tag


def _ended(tag: str, count: int = 0, wait: float = 30) -> bool:
    """Whether ``count`` processes of ``tag`` run within ``wait`` seconds (with 0: all
    ended; whatever is left is killed then, by id)."""
    deadline = time.monotonic() + wait
    while len(_running(tag)) != count and time.monotonic() < deadline:
        time.sleep(0.02)
    ok = len(_running(tag)) == count
    if count == 0:
        for pid in _running(tag):
            os.kill(int(pid), signal.SIGKILL)
    return ok


def test_closing_a_connection_under_a_command_ends_it_on_the_host(conn, tmp_path):
    """A stop at once closes the connection while another thread waits on a hung
    command: the close returns at once, that thread gets ConnectionLost, and nothing of
    the command is left on the host, over SSH too (remote.SHELL: sshd sends a session
    no SIGHUP, but the relay kills its process group when its input ends)."""
    hung, tag = _hung(tmp_path)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            conn.shell().run(Cmd.of(str(hung)), unlimited=True)
        except ConnectionLost as exc:
            failed.append(exc)

    waiting = threading.Thread(target=run)
    waiting.start()
    assert _ended(tag, count=2)  # the program and its child run
    started = time.monotonic()
    conn.close()
    waiting.join(5)
    assert not waiting.is_alive() and failed, failed
    assert time.monotonic() - started < 8  # the close waited for no hung command
    assert _ended(tag)


@pytest.mark.parametrize("sudo", [False, True])
def test_a_killed_client_leaves_no_command_on_the_host(sshd, tmp_path, sudo):
    """mailplan killed (kill -9) during a remote command: the connection drops, and the
    command and its child end on the host (run under sudo too)."""
    hung, tag = _hung(tmp_path)
    code = (f"from mailplan.connectors.ssh import SSHConnector\n"
            f"c = SSHConnector('h', address='127.0.0.1', port={sshd.port}, "
            f"user={sshd.user!r}, identity_file={str(sshd.client_key)!r}, "
            f"known_hosts={str(sshd.known_hosts)!r}, sudo={sudo})\n"
            f"c.shell().run({str(hung)!r}, unlimited=True)\n")
    client = subprocess.Popen([sys.executable, "-c", code])
    try:
        assert _ended(tag, count=2, wait=30)
    finally:
        client.kill()
        client.wait()
    assert _ended(tag)


class _Unanswered(Process):
    """A host that never answers nor ends a command (a hung network path), until
    mailplan kills the command."""

    def __init__(self) -> None:
        self.killed = threading.Event()

    def write(self, data: bytes) -> None:
        pass

    def close_stdin(self) -> None:
        pass

    def read(self, size: int = 65536) -> bytes:
        self.killed.wait()
        return b""

    def readline(self) -> bytes:
        return self.read()

    def wait(self) -> CommandResult:
        self.killed.wait()
        return CommandResult(-1, b"", b"")

    def kill(self) -> None:
        self.killed.set()


class _Unanswering(Connector):
    def start(self, command: str) -> Process:
        return self._track(_Unanswered())


@pytest.mark.parametrize("how", ["close", "abort"])
def test_ending_a_connection_waits_for_no_command_in_flight(how):
    """Closing (or aborting) a connection whose shell runs a command for another thread
    kills that shell instead of waiting for it to end, however long the host takes: the
    waiting thread gets ConnectionLost, and whoever closes goes on."""
    conn = _Unanswering("stuck")
    failed: list[BaseException] = []

    def run() -> None:
        try:
            conn.shell().run("true", unlimited=True)
        except ConnectionLost as exc:
            failed.append(exc)

    waiting = threading.Thread(target=run, daemon=True)
    waiting.start()
    deadline = time.monotonic() + 30
    while not conn.shell()._lock.locked() and time.monotonic() < deadline:
        time.sleep(0.01)
    ending = threading.Thread(target=getattr(conn, how), daemon=True)
    ending.start()
    ending.join(10)  # at once here; the host never answers, so waiting would hang
    waiting.join(10)
    assert not ending.is_alive() and not waiting.is_alive()
    assert len(failed) == 1 and "stopped answering" in str(failed[0])


ANCESTORS = ('p=$$; while [ "$p" -gt 1 ]; do cat /proc/$p/comm; '
             'p=$(sed -n "s/^PPid:[[:space:]]*//p" /proc/$p/status); done')


def test_a_sudo_hosts_session_runs_under_sudo(ssh_connector, sudo_connector):
    """``sudo: true``: the session's shell, its relay and its commands run under
    ``sudo -n`` (so the tests of the ``ssh-sudo`` connection exercise that path)."""
    assert "sudo" in sudo_connector.shell().run(ANCESTORS).stdout.decode().split()
    assert "sudo" not in ssh_connector.shell().run(ANCESTORS).stdout.decode().split()


def test_a_stream_reads_as_sh_reads_it_whatever_the_login_shell(conn):
    """sshd hands a stream's command line to the login shell: csh, tcsh and fish read
    redirections, braces and a newline inside quotes otherwise than sh (tcsh: 'Ambiguous
    output redirect', fish: no '{ ...; }'), and a line that went wrong there still
    ended 0. The line runs as sh reads it, its input and exit status its own."""
    _stream_as_sh(conn)


@pytest.mark.parametrize("shell", ["tcsh", "fish"])
def test_a_stream_reads_as_sh_reads_it_without_sudo_too(sshd, shell):
    """The same, logged in without sudo (the login shell reads the line itself, not a
    sudo line quoted for it)."""
    conn = login_shell_connector(sshd, shell, sudo=False)
    try:
        _stream_as_sh(conn)
    finally:
        conn.close()


def _stream_as_sh(conn: Connector) -> None:
    proc = conn.start_stream("command -v cat >/dev/null 2>&1 || { echo no cat >&2; exit 9; }\n"
                             "printf '%s\\n' 'two\nlines' \"$((6 * 7))\" 2>/dev/null\n"
                             "{ read -r x; echo \"got $x\"; } 2>&1; cat; exit 5")
    proc.write(b"first\nrest\n")
    proc.close_stdin()
    res = proc.wait()
    assert (res.returncode, res.stdout, res.stderr) == (
        5, b"two\nlines\n42\ngot first\nrest\n", b"")


def test_a_connection_dropped_under_a_command_is_said_in_words(sshd):
    """sshd's sessions killed while the remote shell runs a command (the network or the
    host gone): "the remote shell stopped answering (exit -1); got ''" said nothing an
    administrator could act on; it says the connection ended, with a hint."""
    from mailplan.connectors.ssh import SSHConnector
    from mailplan.errors import ConnectionLost

    conn = SSHConnector("oldmail", address="127.0.0.1", port=sshd.port, user=sshd.user,
                        identity_file=str(sshd.client_key), known_hosts=str(sshd.known_hosts))
    try:
        shell = conn.shell()
        assert shell.run("echo up").stdout == b"up\n"
        threading.Timer(1.0, sshd.kill_sessions).start()
        with pytest.raises(ConnectionLost) as info:
            shell.run("sleep 30", unlimited=True)
    finally:
        conn.close()
    assert str(info.value) == (
        "host oldmail: the remote shell stopped answering: the connection ended, with no "
        "exit status from the host\n  hint: check that the host is up and reachable, then "
        "run the same command again (an apply goes on from its state file)")
