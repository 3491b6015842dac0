"""A real OpenSSH sshd for the test suite, on 127.0.0.1 with throw-away keys.

The suite starts Debian's ``/usr/sbin/sshd`` itself (no system service involved): a fresh
host key, a fresh client key allowed for the current user, and a known_hosts file that
names the server as ``[127.0.0.1]:PORT``. Nothing here is mocked: Fabric/paramiko talk to
this daemon over TCP exactly as they would to a mail server. Besides the current user, it
lets in the test accounts whose login shell is tcsh or fish (:func:`login_shell_user`).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from tools import INSTALL, require

SSHD = "/usr/sbin/sshd"
#: the authorized-keys file of a test account with another login shell, in its home
LOGIN_KEYS = ".mailplan-test-keys"


@dataclass
class Sshd:
    """Where the test daemon listens and the files a client needs to reach it."""

    port: int
    user: str
    client_key: Path
    known_hosts: Path
    host_pubkey: str
    workdir: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """Terminate the daemon (and so every session it serves)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill_sessions(self) -> None:
        """Kill the per-connection sshd processes, leaving the listener up: each
        connection's privileged monitor and the sshd process under it that holds the
        connection (OpenSSH 9.8 and later leave that one serving it when only the monitor
        dies), not the commands they run."""
        monitors = _children(self.process.pid)
        sessions = [pid for m in monitors for pid in _children(m) if _is_sshd(pid)]
        for pid in monitors + sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), 9)


def _children(pid: int | str) -> list[str]:
    return subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True,
                          check=False).stdout.split()


def _is_sshd(pid: str) -> bool:
    """Whether ``pid`` runs sshd (``sshd``, or OpenSSH 9.8's ``sshd-session``)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().startswith("sshd")
    except OSError:
        return False


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True)


def start_sshd(workdir: Path) -> Sshd:
    """Generate keys and config under ``workdir`` and start sshd; wait until it listens."""
    require(SSHD, "sshd (Debian's openssh-server)")
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o700)
    host_key, client_key = workdir / "host_ed25519", workdir / "client_ed25519"
    _keygen(host_key)
    _keygen(client_key)
    authorized = workdir / "authorized_keys"
    authorized.write_text((client_key.with_suffix(".pub")).read_text())
    os.chmod(authorized, 0o600)
    port = free_port()
    config = workdir / "sshd_config"
    config.write_text(
        "\n".join([
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {host_key}",
            # and, for the test accounts of other login shells, a file in their home
            # (sshd reads it as that user, who may not enter this directory)
            f"AuthorizedKeysFile {authorized} %h/{LOGIN_KEYS}",
            f"PidFile {workdir / 'sshd.pid'}",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "MaxSessions 64",
            "MaxStartups 64:30:128",
            "LogLevel ERROR",
            "Subsystem sftp internal-sftp",
            "",
        ])
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    log = open(workdir / "sshd.log", "wb")  # noqa: SIM115 - lives as long as the daemon
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
    deadline = time.monotonic() + 30  # a bound for a hang: a loaded machine is slow
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {(workdir / 'sshd.log').read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError("sshd did not start listening within 30 s")
    pub = host_key.with_suffix(".pub").read_text().split()
    host_pubkey = f"{pub[0]} {pub[1]}"
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pubkey}\n")
    return Sshd(port, getpass.getuser(), client_key, known_hosts, host_pubkey, workdir, proc)


def login_shell_user(sshd: Sshd, shell: str) -> str:
    """The test account whose login shell is ``shell`` (tcsh or fish, made with its
    sudo rights by the install script), let in with the test sshd's client key."""
    require(shutil.which(shell), shell)
    require(shutil.which("sudo"), "sudo")
    user = f"mailplan-{shell}"
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        pytest.fail(f"the test account {user} is missing: {INSTALL} makes it (as root)",
                    pytrace=False)
    keys = Path(account.pw_dir) / LOGIN_KEYS
    keys.write_bytes(sshd.client_key.with_suffix(".pub").read_bytes())
    os.chown(keys, account.pw_uid, account.pw_gid)
    os.chmod(keys, 0o600)
    return user
