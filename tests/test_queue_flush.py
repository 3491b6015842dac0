"""``mailplan queue flush``: SIGALRM to a running qmail-send, by each control method.

qmail-send is a real process named qmail-send (a Python program run through a symlink
of that name, so pgrep/pkill -x see it) that writes a line to a file for each SIGALRM it
gets and keeps running. svc and systemctl are fake programs early in PATH that record
their arguments and pass the signal on to it, as the real ones would.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from queue_builder import QueueBuilder
from test_queue_ssh import FakeQmail

from mailplan.queue.cli import queue as queue_cli

DEADLINE = 20.0  # seconds; a generous bound, never a sleep to wait out

PROGRAM = """\
import signal, sys
from pathlib import Path
here = Path(sys.argv[1])
def on_alrm(signum, frame):
    with open(here / "alrm", "a") as f:
        f.write("ALRM\\n")
signal.signal(signal.SIGALRM, on_alrm)
(here / "ready").touch()
while True:
    signal.pause()
"""


def wait_for(path: Path) -> bool:
    """Poll for ``path`` until the deadline."""
    end = time.monotonic() + DEADLINE
    while not path.exists():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


class QmailSend:
    """The running fake: its pid and the signals it recorded."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "qmail-send"
        self.dir.mkdir()
        link = self.dir / "qmail-send"
        os.symlink(sys.executable, link)
        (self.dir / "program.py").write_text(PROGRAM)
        self.proc = subprocess.Popen([str(link), str(self.dir / "program.py"),
                                      str(self.dir)])
        assert wait_for(self.dir / "ready"), "the fake qmail-send did not start"

    @property
    def alarms(self) -> int:
        path = self.dir / "alrm"
        return len(path.read_text().split()) if path.exists() else 0

    def got_alarm(self) -> bool:
        return wait_for(self.dir / "alrm")

    def end(self) -> None:
        self.proc.kill()
        self.proc.wait()


def no_qmail_send() -> bool:
    return subprocess.run(["pgrep", "-x", "qmail-send"], check=False,
                          stdout=subprocess.DEVNULL).returncode == 1


@pytest.fixture
def qmail_send(tmp_path) -> Iterator[QmailSend]:
    # pkill -x qmail-send signals every process of that name on the machine
    assert no_qmail_send(), "another process is named qmail-send on this machine"
    fake = QmailSend(tmp_path)
    assert subprocess.run(["pgrep", "-x", "qmail-send"], check=False, capture_output=True,
                          text=True).stdout.split() == [str(fake.proc.pid)]
    yield fake
    fake.end()
    assert no_qmail_send()


@pytest.fixture
def ssh_args(sshd) -> list[str]:
    return [f"ssh://{sshd.user}@127.0.0.1:{sshd.port}", "--identity", str(sshd.client_key),
            "--known-hosts", str(sshd.known_hosts)]


def queue(tmp_path: Path) -> QueueBuilder:
    q = QueueBuilder(tmp_path / "qmail")
    q.add("a@example.net", remote=("x@remote.example",))
    q.add("b@example.net", local=("example.com-bob@example.com",), preprocessed=False)
    return q


def flush(host: list[str], q: QueueBuilder, *extra: str):
    return CliRunner().invoke(queue_cli, ["flush", *host, "--queue-dir", str(q.queue),
                                          *extra])


@pytest.mark.ssh
def test_flush_process_sends_alrm_over_ssh(tmp_path, ssh_args, qmail_send):
    q = queue(tmp_path)
    before = q.files()
    result = flush(ssh_args, q)
    assert result.exit_code == 0, result.output
    assert qmail_send.got_alarm() and qmail_send.alarms == 1
    assert qmail_send.proc.poll() is None  # still running
    assert result.output == ("asked qmail-send to retry every queued delivery now (SIGALRM "
                             "via every process named qmail-send: pkill -ALRM -x "
                             "qmail-send); 2 message(s) in the queue\n")
    assert q.files() == before


@pytest.mark.ssh
def test_flush_custom_runs_flush_cmd_over_ssh(tmp_path, ssh_args, qmail_send):
    q = queue(tmp_path)
    fake = FakeQmail(tmp_path, running=True)
    before = q.files()
    result = flush(ssh_args, q, "--control", "custom", "--status-cmd", fake.status,
                   "--flush-cmd", f"kill -ALRM {qmail_send.proc.pid}", "--json")
    assert result.exit_code == 0, result.output
    assert qmail_send.got_alarm() and qmail_send.alarms == 1
    assert '"messages": 2' in result.output and '"via": "--flush-cmd"' in result.output
    assert q.files() == before and fake.log == []


def fake_manager(tmp_path: Path, monkeypatch, pid: int) -> Path:
    """svstat/svc and systemctl that say "up" and pass -a / kill on to ``pid``."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    log = shlex.quote(str(tmp_path / "argv"))
    programs = {
        "svstat": 'echo "$1: up (pid 1) 100 seconds"',
        "svc": f'echo "svc $*" >> {log}; [ "$1" = -a ] && kill -ALRM {pid}',
        "systemctl": f'echo "systemctl $*" >> {log}\ncase $1 in is-active) exit 0;; '
                     f'kill) kill -ALRM {pid};; *) exit 5;; esac',
    }
    for name, body in programs.items():
        (bindir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bindir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return tmp_path / "argv"


@pytest.mark.parametrize("options,argv", [
    (["--control", "svc", "--service", "/service/my qmail"], "svc -a /service/my qmail"),
    (["--control", "systemctl", "--unit", "qmail-send"],
     "systemctl kill --signal=SIGALRM --kill-who=main qmail-send"),
])
def test_flush_svc_and_systemctl(tmp_path, monkeypatch, qmail_send, options, argv):
    q = queue(tmp_path)
    before = q.files()
    log = fake_manager(tmp_path, monkeypatch, qmail_send.proc.pid)
    result = flush(["local"], q, *options)
    assert result.exit_code == 0, result.output
    assert qmail_send.got_alarm() and qmail_send.alarms == 1
    assert argv in log.read_text().splitlines()
    assert q.files() == before


@pytest.mark.ssh
@pytest.mark.parametrize("status,said", [
    ("exit 1", "qmail-send is not running (status via the custom commands): nothing to "
     "flush; nothing was signalled"),
    ("exit 7", "cannot tell whether qmail-send runs (the status command exited 7)"),
])
def test_flush_refuses_unless_running(tmp_path, ssh_args, qmail_send, status, said):
    q = queue(tmp_path)
    before = q.files()
    result = flush(ssh_args, q, "--control", "custom", "--status-cmd", status,
                   "--flush-cmd", f"kill -ALRM {qmail_send.proc.pid}")
    assert result.exit_code == 1, result.output
    assert said in result.output
    assert q.files() == before
    assert not (qmail_send.dir / "alrm").exists()


def test_flush_refuses_when_no_qmail_send_process(tmp_path):
    assert no_qmail_send()
    q = queue(tmp_path)
    before = q.files()
    result = flush(["local"], q)
    assert result.exit_code == 1, result.output
    assert "qmail-send is not running" in result.output and "nothing to flush" in result.output
    assert q.files() == before


def test_flush_custom_needs_flush_cmd(tmp_path, qmail_send):
    q = queue(tmp_path)
    before = q.files()
    result = flush(["local"], q, "--control", "custom", "--status-cmd", "true")
    assert result.exit_code == 1, result.output
    assert "flush with --control custom needs --status-cmd and --flush-cmd" in result.output
    assert "hint: --flush-cmd sends qmail-send SIGALRM, e.g. --flush-cmd " \
        "'pkill -ALRM -x qmail-send'" in result.output
    assert q.files() == before
    assert not (qmail_send.dir / "alrm").exists()


def test_flush_failing_signal_command_is_an_error(tmp_path, qmail_send):
    q = queue(tmp_path)
    result = flush(["local"], q, "--control", "custom", "--status-cmd", "true",
                   "--flush-cmd", "echo no such service >&2; exit 4")
    assert result.exit_code == 1, result.output
    assert "sending qmail-send SIGALRM via the custom commands failed (exit 4: no such " \
        "service)" in result.output


def test_flush_refuses_the_spec_source_host(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("version: 1\nhosts:\n  old: {local: true}\n  new: {local: true}\n"
                    "source: {host: old}\ntarget: {host: new}\n"
                    "domains:\n  example.com:\n    default_quota: 1G\n")
    result = CliRunner().invoke(queue_cli, ["flush", "source", "--spec", str(spec)])
    assert result.exit_code == 1, result.output
    assert "mailplan never writes to the source, so it does not signal qmail-send there" \
        in result.output


def test_flush_svc_refuses_a_service_that_is_down(tmp_path, monkeypatch, qmail_send):
    """pgrep sees a qmail-send (so the status says running), but not under this service:
    svc -a would signal nothing and exit 0."""
    q = queue(tmp_path)
    log = fake_manager(tmp_path, monkeypatch, qmail_send.proc.pid)
    (tmp_path / "fakebin" / "svstat").write_text('#!/bin/sh\necho "$1: down 5 seconds"\n')
    result = flush(["local"], q, "--control", "svc")
    assert result.exit_code == 1, result.output
    assert ("qmail-send runs, but not under daemontools service /service/qmail-send, which "
            "says it is down and can neither stop nor signal it") in result.output
    assert not log.exists() and qmail_send.alarms == 0
