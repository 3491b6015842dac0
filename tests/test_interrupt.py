"""Ctrl-C, SIGTERM and SIGHUP: at once while mailplan only reads (plan, verify, apply until
its first change), and on a second signal during apply, whatever the hosts do.

Each scenario runs the real CLI over the test sshd into the vpopmail stand-in, with a
stand-in tool (or the writer agent's interpreter) that hangs, ignoring SIGTERM and
SIGHUP, and a child of its own: the signal must end mailplan within seconds, with one
line on what was done, its exit status, and nothing of its left running on the host.
Stopping at the first safe point (the first signal during apply) is covered by
tests/test_apply_watch.py and tests/test_faults.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from migration import (
    REAL_VPOPMAIL,
    SourceAccount,
    Target,
    install_target,
    left_running,
    mailplan,
    make_source,
    new_tag,
    remote,
    ssh_host,
    write_spec,
)

from mailplan import interrupt
from mailplan.interrupt import SignalStop, Stopped
from mailplan.mail.writer.proto import AGENT_MARK

pytestmark = pytest.mark.skipif(bool(REAL_VPOPMAIL), reason="the stand-in's tools are made "
                                "to hang")
ENV = {"PM_PW": "PostMaster#1"}
#: how long a stop at once may take, signal to exit: it takes about 0.1 s here ("within
#: a second or two"); the margin is for a loaded CI machine, and stays under the 10 s
#: after which mailplan exits anyway (interrupt.FORCE_EXIT_SECONDS), so a stop that only
#: that safety net ends still fails
PROMPT = 8.0
assert PROMPT < interrupt.FORCE_EXIT_SECONDS


def hang(path: Path, marker: Path, tag: str, *, then: str = "sleep") -> None:
    """Replace the program ``path`` by one that touches ``marker`` and hangs: it ignores
    SIGTERM and SIGHUP, and so does its child (``then``: ``sleep``, or ``cat``, which
    reads its input to the end)."""
    hung = f"sleep {tag}" if then == "sleep" else f"sh -c 'cat >/dev/null; exit 0' {tag}"
    path.write_text(f"#!/bin/sh\ntrap '' TERM HUP\ntouch {marker}\n{hung} &\n{hung}\n")
    path.chmod(0o755)


def sshd_children(sshd) -> set[int]:
    """The daemon's per-connection processes."""
    out = subprocess.run(["pgrep", "-P", str(sshd.process.pid)], capture_output=True,
                         text=True, check=False).stdout
    return {int(pid) for pid in out.split()}


def migration(tmp_path: Path, sshd, *, one_host: bool = False,
              target_extra: dict | None = None, spools: bool = False) -> tuple[Path, Target]:
    """Two users to migrate over SSH into the stand-in; ``one_host``: source and target
    are the same host of the spec (read one after the other, in the main thread)."""
    src = make_source(tmp_path / "source", [SourceAccount(f"u{i}", 1000 + i, f"User {i}",
                                                          f"pw{i}") for i in range(2)])
    if spools:
        for i in range(2):
            (src / "var/spool/mail" / f"u{i}").write_bytes(
                b"From a@x.example Mon Nov  2 10:00:00 2026\nSubject: hi\n\nhello\n\n")
    target = install_target(tmp_path / "target")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      source_host=ssh_host(sshd),
                      target_host={**ssh_host(sshd), **(target_extra or {})},
                      domains={"one.example": {"postmaster_password": {"env": "PM_PW"},
                                               "import": {"uid_min": 1000}}})
    if one_host:
        doc = yaml.safe_load(spec.read_text())
        doc["target"]["host"] = "oldmail"
        del doc["hosts"]["newmail"]
        spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    return spec, target


def start(*args: str) -> subprocess.Popen[str]:
    # SIGHUP as a terminal leaves it (the suite may run under nohup, which mailplan keeps)
    return subprocess.Popen([sys.executable, "-m", "mailplan", *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **ENV},
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))


def _signals_as_a_terminal_sends_them() -> None:
    """In the child: SIGINT and SIGHUP at their defaults, as in a shell on a terminal
    (a suite run in the background, or under nohup, ignores them: mailplan keeps that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def wait_until(ready, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ready(), proc.communicate(timeout=PROMPT)


def stopped(proc: subprocess.Popen[str], signum: int) -> tuple[str, str, float]:
    """Send ``signum``; (stdout, stderr, seconds until mailplan exited)."""
    sent = time.monotonic()
    os.kill(proc.pid, signum)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"mailplan did not stop within 30 s: {out}\n{err}")
    return out, err, time.monotonic() - sent


def first_signal_taken(proc: subprocess.Popen[str], signum: int, name: str) -> str:
    """Send ``signum`` and return apply's output up to its answer to it ("Stopping after
    the current step (NAME again ..."): a second signal sent before the first was taken
    would be the same pending signal, not a second one (a sleep was the wait before)."""
    os.kill(proc.pid, signum)
    want, out = f"Stopping after the current step ({name} again", ""
    deadline = time.monotonic() + 60
    while want not in out:
        left = deadline - time.monotonic()
        assert left > 0 and proc.poll() is None, out
        if select.select([proc.stdout], [], [], left)[0]:
            chunk = os.read(proc.stdout.fileno(), 65536).decode()
            assert chunk, out  # the output ended
            out += chunk
    return out


def lock_is_free(state: Path) -> bool:
    lock = state.with_name(state.name + ".lock")
    if not lock.exists():
        return True
    with lock.open("r+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
    return True


@pytest.mark.parametrize(("command", "signum", "hosts"), [
    ("plan", signal.SIGINT, "two"),
    ("plan", signal.SIGTERM, "one"),
    ("plan", signal.SIGHUP, "two"),
    ("plan", signal.SIGINT, "two, both hung"),
    ("verify", signal.SIGINT, "two"),
    ("verify", signal.SIGTERM, "one"),
    ("apply", signal.SIGINT, "one"),
    ("apply", signal.SIGTERM, "two"),
    ("apply", signal.SIGINT, "two, both hung"),
])
def test_a_signal_while_reading_the_hosts_stops_at_once(tmp_path, sshd, command, signum,
                                                        hosts):
    """vdominfo hangs on the target (a stuck lock): a signal during the reads stops the
    command within seconds, on one line saying that nothing was changed, with the
    signal's exit status; its remote commands are gone, its connections closed, and
    there is no state file (apply's lock file stays, released). With two hosts the
    target is read on a thread while the source is read; "both hung": the source's read
    hangs too (its passwd is a FIFO nothing writes to), so the signal lands there."""
    spec, target = migration(tmp_path, sshd, one_host=hosts == "one")
    marker, tag = tmp_path / "reading", new_tag()
    hang(Path(target.vpopmail_dir, "bin/vdominfo"), marker, tag)
    passwd = tmp_path / "source/etc/passwd"
    if hosts == "two, both hung":
        passwd.unlink()
        os.mkfifo(passwd)
    before = sshd_children(sshd)
    proc = start(command, str(spec), *(["--auto-approve"] if command == "apply" else []))
    wait_until(lambda: marker.exists() and (passwd.is_file() or remote(str(passwd))), proc)
    time.sleep(0.2)  # well inside the reads
    out, err, took = stopped(proc, signum)
    assert proc.returncode == 128 + signum, out + err
    assert took < PROMPT, took
    by = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
    if signum == signal.SIGHUP:  # the terminal is gone: nothing more is written to it
        assert err == "", err
    else:
        when = "before the first change" if command == "apply" else \
            "while reading the hosts"
        assert err == f"Error: {command} interrupted{by} {when}: nothing was changed\n"
    assert left_running(tag) == []
    assert left_running(str(target.vpopmail_dir)) == []  # nor the tool's own shell
    assert left_running(str(passwd)) == []
    deadline = time.monotonic() + 30  # sshd's own pace: a bound, not a requirement
    while sshd_children(sshd) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sshd_children(sshd) - before == set()  # every connection closed
    state = tmp_path / "m.state.json"
    assert sorted(p.name for p in tmp_path.glob("m.state.json*")) == (
        ["m.state.json.lock", "m.state.json.logs"] if command == "apply" else [])
    assert lock_is_free(state)
    if command == "apply":
        assert out.startswith("Logging this apply to ") and "Summary" not in out
        (log,) = state.with_name("m.state.json.logs").glob("apply-*.log")
        text = log.read_text()
        assert f"result: interrupted{by} before the first change: nothing was changed" \
            in text, text
        assert "resume with" not in text


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_stops_a_hung_step_at_once_and_the_next_apply_settles_it(
        tmp_path, sshd, signum):
    """vadduser hangs: the first signal asks to stop after the step, which never ends;
    the second stops now. The hung tool is killed on the host, the step stays an
    intent in the state (begun, not recorded), the log says how the command ended, and
    the same apply, once the tool works, settles the intent and completes."""
    spec, target = migration(tmp_path, sshd)
    tool = Path(target.vpopmail_dir, "bin/vadduser")
    real = tool.read_bytes()
    marker, tag, log = tmp_path / "in-vadduser", new_tag(), tmp_path / "a.log"
    hang(tool, marker, tag)
    proc = start("apply", str(spec), "--auto-approve", "--log", str(log))
    wait_until(marker.exists, proc)
    name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    early = first_signal_taken(proc, signum, name)
    time.sleep(1)
    assert proc.poll() is None  # the first signal waits for the step
    out, err, took = stopped(proc, signum)
    out = early + out
    assert proc.returncode == 128 + signum, out + err
    assert took < PROMPT, took
    by = "" if signum == signal.SIGINT else " by SIGTERM"
    assert err.startswith(f"Error: apply interrupted{by} after 1 of 4 change(s); "), err
    assert f"hint: resume with: mailplan apply {spec}" in err and "Traceback" not in err
    assert f"Stopping after the current step ({name} again to stop at once" in out
    assert left_running(tag) == []
    text = log.read_text()
    assert f"{name}: stopping at the next safe point" in text
    assert f"{name} again: stopping at once" in text
    assert re.search(r"\[newmail\] [0-9.]+s exit -1, stdout 0 B, stderr 19 B: stopped by "
                     r"mailplan \(interrupted: stopped on the host\)\n    \$ .*/vadduser .*"
                     r"u0@one\.example", text), text
    assert "step start: + user u0@one.example" in text
    assert "step done: + user u0@one.example" not in text
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert state["history"][-1]["result"] == "interrupted"
    assert list(state["intents"]) == ["create-user:u0@one.example"]
    assert state["managed"]["one.example"]["users"] == {}
    assert lock_is_free(tmp_path / "m.state.json")
    tool.write_bytes(real)
    mailplan("apply", str(spec), "--auto-approve", env=ENV, check=True)
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert state.get("intents") == {} and set(state["managed"]["one.example"]["users"]) == {
        "u0", "u1"}
    assert mailplan("verify", str(spec), env=ENV).returncode == 0


def test_a_second_ctrl_c_stops_a_hung_mail_import_at_once(tmp_path, sshd):
    """The writer agent never answers (its interpreter hangs, reading its input): the
    import waits on it in a worker thread. The second Ctrl-C ends the connections, which
    ends the agent on the host, and mailplan exits at once; nothing of the mailbox is
    recorded, and the same apply then imports it."""
    wrapper, marker, tag = tmp_path / "python", tmp_path / "agent", new_tag()
    hung = tmp_path / "hung-python"
    hang(hung, marker, tag, then="cat")
    # the apply lock and the plan's check of the interpreter pass; the writer agent
    # itself hangs while tmp_path/hang exists
    wrapper.write_text(f'#!/bin/sh\ncase "$*" in *"{AGENT_MARK.decode()}"*) '
                       f'[ -e {tmp_path}/hang ] && exec {hung};; esac\n'
                       f'exec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    (tmp_path / "hang").touch()
    spec, _ = migration(tmp_path, sshd, target_extra={"python": str(wrapper)}, spools=True)
    log = tmp_path / "a.log"
    proc = start("apply", str(spec), "--auto-approve", "--log", str(log))
    wait_until(lambda: marker.exists() and "step start: + mailbox" in log.read_text(), proc)
    time.sleep(0.3)
    first_signal_taken(proc, signal.SIGINT, "Ctrl-C")
    time.sleep(1)
    assert proc.poll() is None  # the first Ctrl-C waits for the import's next batch
    out, err, took = stopped(proc, signal.SIGINT)
    assert proc.returncode == 130, out + err
    assert took < PROMPT, took
    assert err.startswith("Error: apply interrupted after 4 of 6 change(s); "), err
    assert left_running(tag) == []
    text = log.read_text()
    assert "Ctrl-C again: stopping at once" in text
    # the agent's start and end are logged (how it ended depends on which of the
    # import's streams the stop ended first: killed, or its input closed by the import)
    agent = re.findall(r"\[newmail\] [0-9.]+s (.*)\n    \$ \S*/python -I -S", text)
    assert len(agent) == 2 and agent[0].startswith("started") and \
        agent[1].startswith("exit "), text
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert state["history"][-1]["result"] == "interrupted" and "mail" not in state
    (tmp_path / "hang").unlink()
    mailplan("apply", str(spec), "--auto-approve", env=ENV, check=True)
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert {box: n["imported"] for box, n in state["mail"].items()} == {
        "u0@one.example/INBOX": 1, "u1@one.example/INBOX": 1}
    assert mailplan("verify", str(spec), env=ENV).returncode == 0


def test_ctrl_c_or_end_of_input_at_the_confirmation_changes_nothing(tmp_path):
    """At apply's question, Ctrl-C stops (130, nothing was changed) and Ctrl-D cancels
    (1): one line each, never click's "Aborted!" nor a summary of failed steps."""
    import pty

    src = make_source(tmp_path / "source", [SourceAccount("ann", 1000, "Ann", "pw-ann")])
    target = install_target(tmp_path / "target")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={"one.example": {"import": {"uid_min": 1000}}})
    for answer in ("ctrl-c", "ctrl-d"):
        primary, secondary = pty.openpty()
        try:
            proc = subprocess.Popen([sys.executable, "-m", "mailplan", "apply", str(spec)],
                                    stdin=secondary, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env={**os.environ,
                                                                 "NO_COLOR": "1"})
            shown = b""
            while b"Only 'yes' will be accepted" not in shown:
                ready, _, _ = select.select([proc.stdout], [], [], 60)
                assert ready and proc.poll() is None, shown
                shown += os.read(proc.stdout.fileno(), 65536)
            if answer == "ctrl-c":
                os.kill(proc.pid, signal.SIGINT)
            else:
                os.write(primary, b"\x04")  # end of input at the start of a line
            out, err = proc.communicate(timeout=60)
        finally:
            os.close(primary)
            os.close(secondary)
        log = sorted(tmp_path.glob("m.state.json.logs/apply-*.log"))[-1].read_text()
        assert "Aborted" not in err.decode() and "Summary" not in out.decode()
        assert out.startswith(b"\nLog: "), out  # not on the question's line
        if answer == "ctrl-c":
            assert proc.returncode == 130
            assert err.decode() == ("Error: apply interrupted before the first change: "
                                    "nothing was changed\n")
            assert "result: interrupted before the first change" in log
        else:
            assert proc.returncode == 1
            assert err.decode() == "Error: apply cancelled: nothing was changed\n"
            assert "result: cancelled" in log
    assert not (tmp_path / "m.state.json").exists()


def until(ready: Callable[[], object], timeout: float = 5) -> None:
    """Return once ``ready()``; fail after ``timeout`` s (for timers of 0.2 s: a loaded
    machine runs them late, not 25 times late)."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"not within {timeout} s"
        time.sleep(0.01)


def test_signal_stop_at_once_then_at_safe_points(monkeypatch):
    """The handlers' rules, in this process: at once while reading; once at safe points,
    the first signal only asks, a repeated SIGHUP changes nothing, SIGINT or SIGTERM again
    stops at once; the exit status is the first signal's. Stopping at once is bounded
    (FORCE_EXIT_SECONDS), and a further signal exits at once."""
    exits: list[tuple[int, str]] = []
    monkeypatch.setattr(interrupt, "_exit", lambda signum, why: exits.append((signum, why)))
    monkeypatch.setattr(interrupt, "FORCE_EXIT_SECONDS", 0.2)
    monkeypatch.setattr(interrupt, "detach_terminal", lambda: None)
    previous = signal.getsignal(signal.SIGINT)
    hup = signal.signal(signal.SIGHUP, signal.SIG_DFL)  # as without nohup
    try:
        with SignalStop() as stop, pytest.raises(Stopped) as caught:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler raises before this ends
        assert caught.value.signum == signal.SIGTERM and stop.at_once
        until(lambda: exits)  # the bound's timer has run (0.2 s)
        assert exits == [(signal.SIGTERM, "not stopped 0.2 s after the signal: exiting now")]
        assert signal.getsignal(signal.SIGINT) is previous  # restored
        asked: list[int] = []
        again: list[int] = []
        with SignalStop() as stop:
            stop.at_safe_points(asked.append, again.append)
            os.kill(os.getpid(), signal.SIGHUP)
            os.kill(os.getpid(), signal.SIGHUP)
            assert asked == [signal.SIGHUP] and not stop.at_once
            with pytest.raises(Stopped) as caught:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
            assert caught.value.signum == signal.SIGHUP and again == [signal.SIGINT]
            assert interrupt.exit_status(caught.value.signum) == 129
            os.kill(os.getpid(), signal.SIGINT)  # a third: exit now
            assert (signal.SIGHUP, "stopping at once: exiting now") in exits
        bound = (signal.SIGHUP, "not stopped 0.2 s after the signal: exiting now")
        until(lambda: bound in exits)  # the bound's timer has run (into the list)
        time.sleep(0.3)  # and only once
        assert exits.count(bound) == 1
    finally:
        signal.signal(signal.SIGHUP, hup)


# what apply's first signal does (watch.ApplyWatch._stop_requested): a note for the
# operator, printed from the signal handler in the thread the signal interrupted
FIRST_SIGNAL_WHILE_PRINTING = '''
import io, os, signal
from mailplan.interrupt import SignalStop
from mailplan.progress import PlainReporter

class Stream(io.StringIO):
    interrupted = False

    def write(self, text):
        if not Stream.interrupted:  # the signal lands while a line is printed
            Stream.interrupted = True
            os.kill(os.getpid(), signal.SIGINT)
        return super().write(text)

reporter = PlainReporter(Stream())
with SignalStop() as stop:
    stop.at_safe_points(lambda signum: reporter.note("Stopping after the current step"),
                        lambda signum: None)
    reporter.note("  + user ann@one.example: done")
print(reporter.stream.getvalue(), end="")
'''


def test_a_first_signal_while_a_line_is_printed_is_answered():
    """The first signal's note is printed by the handler in the thread it interrupted:
    when that thread was printing a line (holding the reporter's lock), the handler
    waited for the lock forever, and the apply never reached its next safe point."""
    try:
        res = subprocess.run([sys.executable, "-c", FIRST_SIGNAL_WHILE_PRINTING],
                             capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("the signal handler waited for the lock its own thread held")
    assert res.returncode == 0, res.stderr
    assert sorted(res.stdout.splitlines()) == ["  + user ann@one.example: done",
                                               "Stopping after the current step"]


def _waiting_on_a_fifo(tmp_path: Path, command: str) -> tuple[list[str], str | None]:
    """Arguments that make ``command`` wait in the open of a FIFO nothing writes to (a
    spec, saved plan or state file that is one is refused at once, b25bd18), and what it
    prints before: validate on a password file (after its verdict on the spec itself),
    show on writing its output to a pipe nobody reads yet (a state file's journal that is
    a FIFO is refused at once too, 626b1e0: ``None``, what it printed is a part of it),
    queue stat on a known_hosts file."""
    fifo = tmp_path / "fifo"
    if command == "validate":
        os.mkfifo(fifo)
        spec = tmp_path / "m.yaml"
        spec.write_text("version: 1\nhosts:\n  old: {address: old.example.com}\n"
                        "  new: {local: true}\nsource: {host: old}\ntarget: {host: new}\n"
                        "domains:\n  example.com:\n    users:\n      - name: alice\n"
                        f"        password: {{file: {fifo}}}\n")
        return ["validate", str(spec)], \
            f"{spec}: valid (spec version 1, 1 domain(s), 1 explicit user(s))\n"
    if command == "show":
        from mailplan.state import State

        state = State.load(tmp_path / "m.state.json")
        # more lines than a pipe holds (64 KiB): show waits in a write
        state.data["mail"] = {f"user{n}@example.com/INBOX": {"imported": 1, "bytes": 10}
                              for n in range(4000)}
        state.save()
        return ["show", str(state.path)], None
    os.mkfifo(fifo)
    return ["queue", "stat", "ssh://root@127.0.0.1:9", "--known-hosts", str(fifo)], ""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("command", ["validate", "show", "queue stat"])
def test_a_signal_in_a_command_without_its_own_stop_exits_128_plus_it_with_one_line(
        tmp_path, command, signum):
    """validate, show and the queue commands (waiting here in the open of a FIFO nothing
    writes to) ended a Ctrl-C with click's "Aborted!" and exit 1, where the README
    promises 130, and died silently on SIGTERM or SIGHUP (Python's default)."""
    args, printed = _waiting_on_a_fifo(tmp_path, command)
    proc = subprocess.Popen([sys.executable, "-m", "mailplan", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_signals_as_a_terminal_sends_them)

    def waiting() -> bool:  # in its open of the FIFO for a writer, or its write to stdout
        return Path(f"/proc/{proc.pid}/wchan").read_text() in (
            "wait_for_partner", "pipe_write", "anon_pipe_write")

    wait_until(waiting, proc)
    out, err, _ = stopped(proc, signum)
    assert proc.returncode == 128 + signum, err
    name = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}.get(signum)
    # after SIGHUP the terminal is gone: stderr (a pipe here) points at /dev/null
    assert err == (f"Error: {command} interrupted ({name})\n" if name else ""), err
    assert out == printed if printed is not None else out.startswith("State "), out[:200]


def test_ctrl_c_while_mailplan_loads_is_one_line_not_a_traceback(monkeypatch, capsys):
    """The CLI takes about a second to load: a Ctrl-C then printed the traceback of
    whatever import it hit. The entry point (`mailplan`, `python -m mailplan`) says it."""
    import importlib.abc

    from mailplan.__main__ import run

    class Interrupting(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "mailplan.cli":
                raise KeyboardInterrupt
            return None

    monkeypatch.delitem(sys.modules, "mailplan.cli", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Interrupting(), *sys.meta_path])
    with pytest.raises(SystemExit) as exited:
        run()
    assert exited.value.code == 130
    assert capsys.readouterr().err == "Error: interrupted while starting: nothing was done\n"
