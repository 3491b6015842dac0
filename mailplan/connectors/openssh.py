"""Bulk data streams through the OpenSSH client, multiplexed over one master connection.

Mail moves through mailplan in two long streams per mailbox (the source read and the
target's writer agent). Over paramiko, every byte is encrypted and decrypted by Python
code in mailplan's own process, which also parses the mbox: measured on loopback, a
paramiko relay moves about 140 MB/s, where ``cat | ssh host 'cat >/dev/null'`` with the
OpenSSH client moves 400 MB/s (benchmarks/mail_e2e.py prints both). So an SSH host
sends its *streams* (never its control commands, which stay on Fabric) through a local
``ssh`` process when one is installed and can log in without asking anything:

* host keys: ``StrictHostKeyChecking=yes`` against exactly the known_hosts files the
  Fabric connection trusts (the spec's ``known_hosts`` and ``~/.ssh/known_hosts``, not
  the global file); the Fabric connection is always opened first, so a key accepted
  with ``accept_new_host_key`` is already saved. An unknown or changed key fails, as
  it does on Fabric;
* ``BatchMode=yes``: no password or passphrase prompt; a host that needs one keeps
  using paramiko for its streams (``stream_transport: auto``) or fails
  (``stream_transport: openssh``);
* one master connection per host (``ControlMaster=auto`` on a private socket in a 0700
  directory), so a stream costs a channel, not a handshake. The master exits 60 s after
  its last stream (``ControlPersist``), so a killed mailplan leaves nothing running for
  long; a later stream starts a new master if the old one is gone. The directory is
  named after mailplan's process id; one left behind by a mailplan that was killed
  (``kill -9`` skips the clean-up) is removed by the next mailplan once that process and
  its master are gone;
* no tty, no agent or X11 forwarding, no escape character; AES-GCM preferred.

``ssh`` exits 255 when the connection fails; the process then raises ``OSError`` from
``wait()``, which callers already turn into :class:`~mailplan.errors.ConnectionLost`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from mailplan.connectors.base import CommandResult
from mailplan.connectors.local import LocalProcess
from mailplan.mail.agent import pid_alive  # the agent is self-contained: its copy serves

PERSIST_SECONDS = 60
SSH_FAILED = 255
#: AES-GCM first (hardware AES: measured ~25% less time per byte than OpenSSH's default
#: chacha20-poly1305 here); every entry is known to OpenSSH 6.5 and later
CIPHERS = ("aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,"
           "aes128-ctr,aes192-ctr,aes256-ctr")


DIR_PREFIX = "mailplan-ssh-"


def sweep_stale_dirs() -> None:
    """Remove this user's socket directories left by killed mailplan processes: the
    process named in the directory is gone and so is its master (no socket)."""
    for path in Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*-*"):
        pid = path.name[len(DIR_PREFIX):].split("-", 1)[0]
        try:
            if not pid.isdigit() or path.lstat().st_uid != os.getuid() or path.is_symlink():
                continue
            if (path / "master").exists() or pid_alive(int(pid)):
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)


class OpenSSHProcess(LocalProcess):
    """A stream command run by a local ``ssh`` client; exit 255 is a lost connection."""

    def wait(self) -> CommandResult:
        res = super().wait()
        if res.returncode == SSH_FAILED:
            raise OSError(f"SSH connection lost ({res.stderr_text or 'ssh exited 255'})")
        return res


class OpenSSHStreams:
    """How to run stream commands on one host through the OpenSSH client."""

    def __init__(self, *, address: str, user: str | None, port: int | None,
                 identity_file: str | None, known_hosts: list[str],
                 connect_timeout: int) -> None:
        self.address = address
        sweep_stale_dirs()
        self._dir = tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-")  # 0700
        self._socket = os.path.join(self._dir, "master")
        atexit.register(self.close)  # also when the caller never closes the connector
        files = " ".join(f'"{path}"' for path in known_hosts) or "/dev/null"
        self._options = [
            "-T", "-x", "-a", "-e", "none",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={files}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "UpdateHostKeys=no",
            "-o", "ClearAllForwardings=yes",
            "-o", f"ConnectTimeout={connect_timeout}",
            "-o", "ServerAliveInterval=15",
            "-o", f"Ciphers={CIPHERS}",
            "-o", "ControlMaster=auto",
            "-o", f"ControlPath={self._socket}",
            "-o", f"ControlPersist={PERSIST_SECONDS}",
        ]
        if user:
            self._options += ["-l", user]
        if port:
            self._options += ["-p", str(port)]
        if identity_file:
            self._options += ["-i", os.path.expanduser(identity_file)]

    def argv(self, command: str) -> list[str]:
        """The local command line that runs ``command`` (a quoted shell line) remotely."""
        return ["ssh", *self._options, "--", self.address, command]

    def probe(self) -> str | None:
        """Start the master and check a login works; None when it does, else why not.
        ``-N``: no remote command, so no login shell starts (with ``ControlPersist``
        the client goes to the background as the master once it has logged in)."""
        if shutil.which("ssh") is None:
            return "no ssh client installed"
        with tempfile.TemporaryFile() as err:
            try:
                res = subprocess.run(["ssh", *self._options, "-N", "--", self.address],
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=err, check=False)
            except OSError as exc:
                return f"cannot run ssh: {exc}"
            if res.returncode == 0:
                return None
            err.seek(0)
            said = err.read().decode("utf-8", "replace").strip().splitlines()
        return f"ssh could not log in ({said[-1] if said else f'exit {res.returncode}'})"

    def start(self, command: str) -> OpenSSHProcess:
        """Run ``command`` remotely over the master connection."""
        return OpenSSHProcess(self.argv(command))

    def close(self) -> None:
        """Stop the master connection and remove its socket directory (idempotent)."""
        atexit.unregister(self.close)
        if os.path.exists(self._socket):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(["ssh", "-o", f"ControlPath={self._socket}", "-O", "exit",
                                "--", self.address], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               timeout=10, check=False)
        shutil.rmtree(self._dir, ignore_errors=True)
