"""The target's apply lock: two applies against one target with different state files
(two specs, two domains) are one at a time; a refused one names the holder and changes
nothing; the lock is released when the holder ends, also when it is killed with SIGKILL
mid-apply. Over the real test sshd and through the local connector."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from migration import (
    REAL_VPOPMAIL,
    Target,
    install_target,
    mailplan,
    source_with_mail,
    ssh_host,
    tree_digest,
    unique_domain,
    write_spec,
)
from writer_hold import WriterHold, writer_hold

from mailplan.connectors.base import Connector, Process
from mailplan.connectors.local import LocalConnector
from mailplan.connectors.ssh import SSHConnector
from mailplan.errors import ConnectionLost, TargetLocked
from mailplan.target_lock import APPLY_LOCK, LOCK_NAME, Holder, lock_target, take

pytestmark = pytest.mark.skipif(bool(REAL_VPOPMAIL), reason="the lock of a shared real "
                                "vpopmail would be taken by other test sessions' applies")


def two_specs(tmp_path: Path, sshd, transport: str
              ) -> tuple[Path, Path, Target, WriterHold, tuple[str, str]]:
    """One target, two specs (each its own domain and state file) of one source; the
    first's target Python runs under a writer hold (its import can be held mid-way)."""
    src = source_with_mail(tmp_path / "source", "u", [400, 400])
    target = install_target(tmp_path / "target")
    hold = writer_hold(tmp_path)
    host = ssh_host(sshd) if transport == "ssh" else {"local": True}
    domains = (unique_domain("one"), unique_domain("two"))
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
    first = write_spec(tmp_path / "first/m.yaml", source_root=src, target=target,
                       source_host=host, target_host={**host, "python": str(hold.python)},
                       domains={domains[0]: {"import": {"uid_min": 1000}}})
    second = write_spec(tmp_path / "second/m.yaml", source_root=src, target=target,
                        source_host=host, target_host=host,
                        domains={domains[1]: {"import": {"uid_min": 1000}}})
    return first, second, target, hold, domains


def start_apply(spec: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "mailplan", "apply", str(spec),
                             "--auto-approve"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def lock_file(target: Target) -> Path:
    return Path(target.vpopmail_dir).resolve() / LOCK_NAME


def domain_made(target: Target, domain: str) -> bool:
    return (Path(target.vpopmail_dir) / "domains" / domain).exists()


def refused(res: subprocess.CompletedProcess, spec: Path, pid: int) -> None:
    """``res`` is an apply refused by the lock that ``spec``'s apply (process ``pid``)
    holds, named with its machine, pid, state file, spec and start."""
    assert res.returncode == 1, res.stdout + res.stderr
    state = spec.with_name("m.state.json").resolve()
    assert (f"Error: host newmail: another mailplan apply is changing this target (pid {pid} "
            f"on {socket.gethostname()}, state {state}, spec {spec.resolve()}, since 20"
            ) in res.stderr, res.stderr
    assert "nothing was changed" in res.stderr and "Traceback" not in res.stderr


def gone(pid: int, wait: float = 10.0) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.ssh
@pytest.mark.parametrize("transport", ["ssh", "local"])
def test_an_apply_with_another_state_file_waits_for_the_one_changing_the_target(
        tmp_path, sshd, transport):
    """The first apply is held mid-import: a second one (another spec, another state
    file, another domain) is refused, naming the first, and changes nothing on the
    target nor in its state; plan reads meanwhile (it takes no lock). Once the first
    has ended, the second runs."""
    first, second, target, hold, (one, two) = two_specs(tmp_path, sshd, transport)
    hold.arm(1)
    running = start_apply(first)
    hold.wait(running)
    try:
        holder = json.loads(lock_file(target).read_text())
        assert holder["pid"] == running.pid and holder["state"] == str(
            first.with_name("m.state.json").resolve())
        before = tree_digest(Path(target.vpopmail_dir), frozenset({str(lock_file(target))}))
        res = mailplan("apply", str(second), "--auto-approve")
        refused(res, first, running.pid)
        assert tree_digest(Path(target.vpopmail_dir),
                           frozenset({str(lock_file(target))})) == before
        assert not domain_made(target, two)
        assert not second.with_name("m.state.json").exists()  # nothing recorded either
        assert json.loads(lock_file(target).read_text()) == holder  # still the first's
        planned = mailplan("plan", str(second))  # plan only reads: no lock
        assert planned.returncode == 0 and f"+ domain {two}" in planned.stdout, planned.stderr
    finally:
        hold.release()
    out, err = running.communicate(timeout=120)
    assert running.returncode == 0, out + err
    assert lock_file(target).read_text() == ""  # released: nobody named
    (log,) = first.with_name("m.state.json.logs").glob("apply-*.log")
    assert f"apply lock taken on newmail: {lock_file(target)} (held by pid " \
        f"{holder['lock_pid']} there until this apply ends)" in log.read_text()
    mailplan("apply", str(second), "--auto-approve", check=True)
    assert domain_made(target, one) and domain_made(target, two)
    assert mailplan("verify", str(second)).returncode == 0


@pytest.mark.ssh
@pytest.mark.parametrize("transport", ["ssh", "local"])
def test_an_apply_killed_mid_import_leaves_no_lock_behind(tmp_path, sshd, transport):
    """kill -9 of the apply holding the lock (mid-import): its holder on the target
    sees its connection end and exits, the kernel releases the lock, and the other
    spec's apply, refused while it ran, runs at once."""
    first, second, target, hold, (one, two) = two_specs(tmp_path, sshd, transport)
    hold.arm(1)
    running = start_apply(first)
    hold.wait(running)
    holder = json.loads(lock_file(target).read_text())
    refused(mailplan("apply", str(second), "--auto-approve"), first, running.pid)
    os.kill(running.pid, signal.SIGKILL)
    running.communicate()
    assert gone(holder["lock_pid"]), "the lock's holder outlived its apply"
    assert lock_file(target).read_text() == ""
    res = mailplan("apply", str(second), "--auto-approve")
    assert res.returncode == 0, res.stdout + res.stderr
    assert domain_made(target, two)
    hold.held.unlink(missing_ok=True)
    mailplan("apply", str(first), "--auto-approve", check=True)  # the first resumes
    assert mailplan("verify", str(first)).returncode == 0


def ended(pid: int, wait: float = 30.0) -> bool:
    """Whether process ``pid`` exits within ``wait`` seconds (gone, or a zombie its
    parent has not collected yet: the lock it held is free either way)."""
    deadline = time.monotonic() + wait
    while not _exited(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _exited(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def dead_pid() -> int:
    """A process id that is certainly not running: a child started and collected."""
    child = subprocess.Popen(["true"])
    child.wait()
    with pytest.raises(ProcessLookupError):
        os.kill(child.pid, 0)
    return child.pid


def test_a_reconnecting_apply_takes_over_its_own_earlier_holder(tmp_path, monkeypatch):
    """An apply that lost its connection takes the lock again on its new one. Its own
    earlier holder, whose connection the target has not seen end (a client that
    vanished from the network: its input stays open), is taken over at once: ended on
    the target, and said; another apply's is refused at once."""
    (tmp_path / "vpopmail").mkdir()
    home = str(tmp_path / "vpopmail")
    mine = Holder.of(tmp_path / "a.state.json", tmp_path / "a.yaml")
    monkeypatch.setattr("mailplan.target_lock.OWN_WAIT", 60.0)
    old, new, other = (LocalConnector("newmail") for _ in range(3))
    said: list[str] = []
    try:
        earlier = lock_target(old, home, mine)[1]
        with pytest.raises(TargetLocked, match=r"another mailplan apply .*state "
                           f"{tmp_path}/a.state.json"):
            lock_target(other, home, Holder.of(tmp_path / "b.state.json", tmp_path / "b.yaml"))
        started = time.monotonic()
        path, pid = lock_target(new, home, mine, notice=said.append)  # old stays open
        assert time.monotonic() - started < 30  # not the 60 s of waiting for its end
        assert ended(earlier), "the earlier holder still runs"
        assert json.loads(Path(path).read_text())["lock_pid"] == pid != earlier
        assert said == ["took over the apply lock from this apply's earlier connection, "
                        "which the target had not seen end"]
        with pytest.raises(TargetLocked, match=f"held on the target by pid {pid}"):
            lock_target(other, home, Holder.of(tmp_path / "b.state.json", tmp_path / "b.yaml"))
    finally:
        for conn in (old, new, other):
            conn.close()
    assert (Path(home) / LOCK_NAME).read_text() == ""


#: a process holding a lock file, that is not mailplan's program for it: its pid in a
#: description cannot be taken over (a pid reused on the target since)
IMPOSTOR = ("import fcntl, sys; f = open(sys.argv[1] + '/' + sys.argv[2], 'a'); "
            "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()")


def test_an_own_holder_that_cannot_be_taken_over_is_waited_for(tmp_path, monkeypatch):
    """When the process the description names as the lock's holder is not the holder
    program of that apply (a pid reused, here a process whose arguments name the lock
    file and another apply), nothing is ended: this apply's own earlier holder is waited
    for, a lost connection if it does not end in time (the retry's back-off waits
    longer), and the lock is taken once it has ended."""
    home = tmp_path / "vpopmail"
    home.mkdir()
    mine = Holder.of(tmp_path / "a.state.json", tmp_path / "a.yaml")
    another = Holder.of(tmp_path / "a.state.json", tmp_path / "a.yaml")
    impostor = subprocess.Popen([sys.executable, "-c", IMPOSTOR, str(home), LOCK_NAME,
                                 another.line()], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
    try:
        assert impostor.stdout.readline() == "held\n"
        (home / LOCK_NAME).write_text(json.dumps({**json.loads(mine.line()),
                                                  "lock_pid": impostor.pid}) + "\n")
        said: list[str] = []
        monkeypatch.setattr("mailplan.target_lock.OWN_WAIT", 0.5)
        with LocalConnector("newmail") as new, \
                pytest.raises(ConnectionLost, match="still holds this apply's lock"):
            lock_target(new, str(home), mine, notice=said.append)
        assert impostor.poll() is None and said == []  # not ended, nothing said
        monkeypatch.setattr("mailplan.target_lock.OWN_WAIT", 30.0)
        threading.Timer(0.5, impostor.stdin.close).start()  # it ends meanwhile
        with LocalConnector("newmail") as new:
            assert lock_target(new, str(home), mine, notice=said.append)[0] == str(
                home.resolve() / LOCK_NAME)
        assert impostor.wait(timeout=30) == 0 and said == []  # it ended of itself
    finally:
        impostor.kill()
        impostor.wait()


def plant(conn: Connector, target: Target, spec: Path, **about: object) -> tuple[Process, int]:
    """A holder of ``target``'s apply lock left by an apply of ``spec`` on this machine
    (``about`` changes its description) whose connection the target has not seen end:
    the holder program, started on ``conn`` and never told its input ended (as when the
    machine running that apply vanished from the network); and its pid there."""
    stale = Holder(**{"state": str(spec.with_name("m.state.json").resolve()),
                      "spec": str(spec.resolve()), **about})
    proc, doc = take(conn, APPLY_LOCK, target.vpopmail_dir, stale)
    assert "locked" in doc, doc
    return proc, int(doc["pid"])


def one_spec(tmp_path: Path, sshd, transport: str) -> tuple[Path, Target, str]:
    src = source_with_mail(tmp_path / "source", "u", [20])
    target = install_target(tmp_path / "target")
    host = ssh_host(sshd) if transport == "ssh" else {"local": True}
    domain = unique_domain()
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target, source_host=host,
                      target_host=host, domains={domain: {"import": {"uid_min": 1000}}})
    return spec, target, domain


@pytest.mark.ssh
@pytest.mark.parametrize("transport", ["ssh", "local"])
def test_the_holder_of_a_dead_apply_of_the_same_state_on_this_machine_is_taken_over(
        tmp_path, sshd, transport, request):
    """The machine running an apply vanished from the network, and the apply is gone:
    its holder on the target still runs. The same state's next apply on that machine
    ends it (it names this machine, this state and a process no longer running), says
    so, takes the lock and runs."""
    spec, target, domain = one_spec(tmp_path, sshd, transport)
    conn = request.getfixturevalue("ssh_connector") if transport == "ssh" \
        else LocalConnector("newmail")
    dead = dead_pid()
    try:
        _proc, lock_pid = plant(conn, target, spec, pid=dead, started="2026-12-06T09:00:00+00:00")
        res = mailplan("apply", str(spec), "--auto-approve")
        assert res.returncode == 0, res.stdout + res.stderr
        assert (f"Took over the apply lock from this machine's earlier apply of the same "
                f"state (pid {dead}, since 2026-12-06T09:00:00+00:00), which is no longer "
                "running; its connection had not ended on the target.\n") in res.stdout
        assert ended(lock_pid), "the abandoned holder still runs"
        (log,) = spec.with_name("m.state.json.logs").glob("apply-*.log")
        assert "Took over the apply lock" in log.read_text()
        assert domain_made(target, domain)
        assert mailplan("verify", str(spec)).returncode == 0
        assert lock_file(target).read_text() == ""
    finally:
        conn.close()


@pytest.mark.parametrize("whose", ["a running process", "another state", "another machine"])
def test_a_holder_not_provably_abandoned_is_not_taken_over(tmp_path, whose):
    """A holder whose apply may still run (its process is alive), or that is another
    state's or another machine's, is refused as ever, naming it: nothing is changed,
    and it still holds the lock."""
    spec, target, domain = one_spec(tmp_path, None, "local")
    about: dict[str, object] = {"pid": dead_pid()}
    if whose == "a running process":
        about["pid"] = os.getpid()
    elif whose == "another state":
        about["state"] = str(tmp_path / "other.state.json")
    else:
        about["machine"] = "elsewhere.example"
    holder = Holder(**{"state": str(spec.with_name("m.state.json").resolve()),
                       "spec": str(spec.resolve()), **about})
    with LocalConnector("newmail") as conn:
        _proc, lock_pid = plant(conn, target, spec, **about)
        said = lock_file(target).read_text()
        before = tree_digest(Path(target.vpopmail_dir), frozenset({str(lock_file(target))}))
        res = mailplan("apply", str(spec), "--auto-approve")
        assert res.returncode == 1, res.stdout + res.stderr
        assert (f"another mailplan apply is changing this target (pid {holder.pid} on "
                f"{holder.machine}, state {holder.state}, spec {holder.spec}, since "
                f"{holder.started}, its lock held on the target by pid {lock_pid}); "
                "nothing was changed") in res.stderr, res.stderr
        assert "Took over" not in res.stdout
        assert tree_digest(Path(target.vpopmail_dir),
                           frozenset({str(lock_file(target))})) == before
        assert lock_file(target).read_text() == said
        assert not spec.with_name("m.state.json").exists()
        assert not _exited(lock_pid)  # still holding the lock
        assert not domain_made(target, domain)


def test_a_holder_caught_ending_is_waited_for_not_named_unknown(tmp_path):
    """A holder empties the lock file just before it ends and releases the lock: an apply
    that tries in between takes the lock once it is released, rather than being refused
    by an unknown holder; a lock held with nothing said for longer is refused, named
    unknown."""
    home = tmp_path / "vpopmail"
    home.mkdir()
    lock = (home / LOCK_NAME).open("w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # held, the file empty: a holder in its last moment
    threading.Timer(0.5, lock.close).start()
    conn = LocalConnector("newmail")
    try:
        assert lock_target(conn, str(home), Holder.of(tmp_path / "a.state.json",
                                                      tmp_path / "a.yaml"))[1] > 0
    finally:
        conn.close()
    with (home / LOCK_NAME).open("w") as lock, LocalConnector("newmail") as conn:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(TargetLocked, match=r"\(holder unknown\)"):
            lock_target(conn, str(home), Holder.of(tmp_path / "b.state.json",
                                                   tmp_path / "b.yaml"))


@pytest.mark.ssh
def test_the_lock_through_sudo_belongs_to_vpopmails_home_owner_and_ends_with_the_connection(
        tmp_path, sudo_connector, ssh_connector):
    """Taken as root (under ``sudo -n``), the lock file is given to the owner of
    vpopmail's home, so applies logged in as vpopmail share it; the holder's input
    passes through sudo, so closing the connection releases it."""
    home = tmp_path / "vpopmail"
    home.mkdir()
    os.chown(home, 65534, 65534)
    mine = Holder.of(tmp_path / "a.state.json", tmp_path / "a.yaml")
    path = Path(lock_target(sudo_connector, str(home), mine)[0])
    assert (path.stat().st_uid, path.stat().st_gid) == (65534, 65534)
    lock_pid = json.loads(path.read_text())["lock_pid"]
    with pytest.raises(TargetLocked, match=f"held on the target by pid {lock_pid}"):
        lock_target(ssh_connector, str(home), Holder.of(tmp_path / "b", tmp_path / "c"))
    sudo_connector.close()
    assert gone(lock_pid) and path.read_text() == ""
    lock_target(ssh_connector, str(home), Holder.of(tmp_path / "b", tmp_path / "c"))


@pytest.mark.ssh
def test_a_holder_taken_under_sudo_is_taken_over_under_sudo(tmp_path, sshd, sudo_connector,
                                                            monkeypatch):
    """A root holder (``sudo: true``) whose connection the target has not seen end is
    taken over by the same apply reconnecting under sudo: the new program, root too,
    ends it; the lock file stays vpopmail's home owner's."""
    home = tmp_path / "vpopmail"
    home.mkdir()
    os.chown(home, 65534, 65534)
    mine = Holder.of(tmp_path / "a.state.json", tmp_path / "a.yaml")
    monkeypatch.setattr("mailplan.target_lock.OWN_WAIT", 60.0)
    earlier = lock_target(sudo_connector, str(home), mine)[1]  # its connection stays open
    again = SSHConnector("testhost", address="127.0.0.1", port=sshd.port, user=sshd.user,
                         identity_file=str(sshd.client_key), known_hosts=str(sshd.known_hosts),
                         sudo=True)
    said: list[str] = []
    try:
        started = time.monotonic()
        path, pid = lock_target(again, str(home), mine, notice=said.append)
        assert time.monotonic() - started < 30  # not the 60 s of waiting for its end
        assert ended(earlier), "the earlier root holder still runs"
        assert said and said[0].startswith("took over the apply lock from this apply's")
        lock = Path(path)
        assert json.loads(lock.read_text())["lock_pid"] == pid != earlier
        assert (lock.stat().st_uid, lock.stat().st_gid) == (65534, 65534)
    finally:
        again.close()
    assert ended(pid) and Path(path).read_text() == ""
