"""known_hosts files read as OpenSSH reads them, for paramiko's host key check.

paramiko's own ``HostKeys.load`` raises on a line it cannot parse, and it does not know
OpenSSH's markers: ``@cert-authority`` and ``@revoked`` lines (common where host keys
are signed by a CA) ended mailplan with a traceback. Here a line that cannot be read
is passed over, as by OpenSSH; a ``@cert-authority`` line is passed over too (paramiko
checks no host certificates: such a host's key stays unknown and is refused); a key
of a ``@revoked`` line is never trusted, even where another line (or file) lists it,
and is never accepted as new. The policies for a key in no file (refuse it, or trust it
once and save it) are here too.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import paramiko
from paramiko.hostkeys import HostKeyEntry

from mailplan.errors import HostError


def unusable(path: Path, exc: OSError, host: str, *, saving: str | None = None) -> HostError:
    """A known_hosts file mailplan cannot read (a directory, no permission) or save a
    new key to (``saving``: the spec's key or the command's option that asked for it,
    ``accept_new_host_key`` or ``--accept-new-host-key``): said naming the file, not
    taken for a failed connection (nor left as a traceback)."""
    why = (exc.strerror or str(exc)).lower()
    if exc.filename is not None and str(exc.filename) != str(path):  # its directory
        why = f"{exc.filename}: {why}"
    if saving:
        return HostError(f"cannot save the new SSH host key to the known_hosts file {path} "
                         f"({saving}): {why}", host=host,
                         hint="known_hosts must name a file mailplan can write, in a "
                         "directory it can write (the default: ~/.ssh/known_hosts)")
    return HostError(f"cannot read the known_hosts file {path}: {why}", host=host,
                     hint="mailplan reads ~/.ssh/known_hosts and the host's own "
                     "known_hosts file: each must be a readable file of host keys, or "
                     "absent")


def _entries(path: Path) -> Iterable[tuple[str | None, HostKeyEntry]]:
    """(marker or None, entry) of each line of ``path`` that can be read."""
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        marker = None
        if line.startswith("@"):
            marker, _, line = line.partition(" ")
        try:
            entry = HostKeyEntry.from_line(" ".join(line.split()))
        except (paramiko.SSHException, ValueError, TypeError):  # InvalidHostKey, ...
            continue
        if entry is not None and entry.key is not None:
            yield marker, entry


def load(keys: paramiko.HostKeys, files: Iterable[Path], host: str) -> frozenset[str]:
    """Add the host keys of ``files`` (those that exist, in order: the first key of a
    type for a name wins, as paramiko looks them up) to ``keys``, but revoked ones;
    return the revoked keys' base64. One that cannot be read is :func:`unusable` for
    ``host``."""
    read = []
    for path in files:
        try:
            read += list(_entries(path)) if path.exists() else []
        except OSError as exc:
            raise unusable(path, exc, host) from None
    revoked = frozenset(e.key.get_base64() for marker, e in read if marker == "@revoked")
    for marker, entry in read:
        if marker is not None or entry.key.get_base64() in revoked:
            continue
        for name in entry.hostnames:
            if entry.key.get_name() not in (keys.lookup(name) or {}):
                keys.add(name, entry.key.get_name(), entry.key)
    return revoked


def sha256_fingerprint(key: paramiko.PKey) -> str:
    """The key's fingerprint as OpenSSH prints it (``ssh-keygen -lf``, ``ssh -v``):
    ``SHA256:`` and the unpadded base64 of the key blob's SHA-256."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


class RejectPolicy(paramiko.MissingHostKeyPolicy):
    """paramiko's ``RejectPolicy``, saying which key the host offered: the admin compares
    its fingerprint with the one the server shows (``ssh-keygen -lf``) before trusting it.
    ``revoked``: the keys of known_hosts' ``@revoked`` lines (:mod:`.known_hosts`)."""

    def __init__(self, revoked: frozenset[str] = frozenset()) -> None:
        self.revoked = revoked

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        raise UnknownKey(hostname, key, key.get_base64() in self.revoked)


class UnknownKey(paramiko.SSHException):
    """A host key in no known_hosts file (or a revoked one); ``hostname`` as known_hosts
    would name it."""

    def __init__(self, hostname: str, key: paramiko.PKey, revoked: bool = False) -> None:
        super().__init__(f"Server {hostname!r} not found in known_hosts")
        self.hostname, self.revoked = hostname, revoked
        self.offered = f"{key.get_name()} {sha256_fingerprint(key)}"


class AcceptNewPolicy(RejectPolicy):
    """Trust a host key never seen before and remember it; changed and revoked keys
    still fail."""

    def __init__(self, known_hosts: Path, revoked: frozenset[str], host: str,
                 asked_by: str = "accept_new_host_key") -> None:
        super().__init__(revoked)
        # asked_by: what turned it on, named when the key cannot be saved
        self.known_hosts, self.host, self.asked_by = known_hosts, host, asked_by

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        if key.get_base64() in self.revoked:
            super().missing_host_key(client, hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)
        # a new ~/.ssh is private, as ssh makes it
        try:
            self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # a new file is at most 0644 whatever the umask (under umask 000 it was 0666:
            # any local user could add a key for the target); an existing one keeps its mode
            fd = os.open(self.known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            with os.fdopen(fd, "a", encoding="ascii") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        except OSError as exc:
            raise unusable(self.known_hosts, exc, self.host, saving=self.asked_by) from None
