"""The SSH identity file of a host (``identity_file`` in the spec, ``--identity``),
checked before connecting: paramiko reports a missing file as a failed connection
(check the address, port and firewall; retried as one), and any file that is not a
private key, the public half ``id_ed25519.pub`` included, as "not a valid OPENSSH
private key file", naming neither the file nor what is wrong with it.
"""

from __future__ import annotations

import os

from mailplan.errors import HostError

#: how much of the file is looked at (a private key is a few kB)
READ = 64 * 1024


def check_identity(path: str, *, host: str, spec: bool) -> None:
    """Raise :class:`HostError` naming ``path`` (and where it was given: the spec, or
    ``--identity``) when it cannot be read or is plainly no private key: empty, a
    public key (OpenSSH's one line, or a ``PUBLIC KEY`` block), or without a ``PRIVATE
    KEY`` block. A private key paramiko cannot use still fails at the login."""
    given = "identity_file in the spec" if spec else "--identity"
    relative = "the spec" if spec else "this directory"
    try:
        with open(path, "rb") as file:
            data = file.read(READ)
    except OSError as exc:
        raise HostError(f"cannot read the SSH identity file {path} ({given}): "
                        f"{(exc.strerror or str(exc)).lower()}", host=host,
                        hint=f"give the private key's path (a relative one is relative "
                        f"to {relative})") from None
    problem, hint = _problem(path, data)
    if problem is not None:
        raise HostError(f"the SSH identity file {path} ({given}) {problem}", host=host,
                        hint=hint)


def _problem(path: str, data: bytes) -> tuple[str | None, str]:
    """What is wrong with a key file holding ``data`` (None: nothing seen), and the hint."""
    first = (data.strip().splitlines() or [b""])[0].strip()
    private = ("give the private key's path (the file that starts with '-----BEGIN "
               "OPENSSH PRIVATE KEY-----', as ssh-keygen writes it)")
    if not first:
        return "is empty: it holds no private key", private
    if b"PUBLIC KEY" in first or first.split()[0].startswith((b"ssh-", b"ecdsa-", b"sk-")):
        other = path[:-len(".pub")] if path.endswith(".pub") else None
        return ("is a public key (the .pub half of a key pair): mailplan logs in with the "
                "private key", f"give the private key instead: {other}, if that is its "
                "other half" if other and os.path.isfile(other) else
                "give the private key instead (the same name without .pub)")
    if b"PRIVATE KEY-----" not in data:
        return "holds no private key (no '-----BEGIN ... PRIVATE KEY-----' line)", private
    return None, ""
