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

from mailplan.connectors.local import LocalConnector
from mailplan.errors import ConnectionLost, TargetLocked
from mailplan.target_lock import LOCK_NAME, Holder, lock_target

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


def test_a_reconnecting_apply_waits_for_its_own_earlier_holder(tmp_path, monkeypatch):
    """An apply that lost its connection takes the lock again on its new one: its own
    earlier holder (the same apply, not yet ended on the target) is waited for, another
    apply's is refused at once, and one that does not end in time is a lost connection
    (the retry's back-off waits longer)."""
    (tmp_path / "vpopmail").mkdir()
    home = str(tmp_path / "vpopmail")
    mine = Holder.of(tmp_path / "a.state.json", tmp_path / "a.yaml")
    old, new, other = (LocalConnector("newmail") for _ in range(3))
    try:
        lock_target(old, home, mine)
        with pytest.raises(TargetLocked, match=r"another mailplan apply .*state "
                           f"{tmp_path}/a.state.json"):
            lock_target(other, home, Holder.of(tmp_path / "b.state.json", tmp_path / "b.yaml"))
        monkeypatch.setattr("mailplan.target_lock.OWN_WAIT", 0.5)
        with pytest.raises(ConnectionLost, match="still holds this apply's lock"):
            lock_target(new, home, mine)
        monkeypatch.setattr("mailplan.target_lock.OWN_WAIT", 30.0)
        threading.Timer(0.5, old.close).start()  # the old connection ends meanwhile
        started = time.monotonic()
        assert lock_target(new, home, mine)[0] == str(Path(home).resolve() / LOCK_NAME)
        assert time.monotonic() - started < 10
    finally:
        for conn in (old, new, other):
            conn.close()
    assert (Path(home) / LOCK_NAME).read_text() == ""


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
