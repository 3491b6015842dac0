"""The SSH identity file of a host (``identity_file`` in the spec, ``--identity``),
checked before connecting: paramiko reports a missing file as a failed connection
(check the address, port and firewall; retried as one), and any file that is not a
private key, the public half ``id_ed25519.pub`` included, as "not a valid OPENSSH
private key file", naming neither the file nor what is wrong with it.
"""

from __future__ import annotations

import os
import re

import paramiko

from mailplan.errors import HostError

#: how much of the file is looked at (a private key is a few kB)
READ = 64 * 1024
#: paramiko's errors of reading a key file as one key type (it tries RSA, ECDSA and
#: Ed25519 in turn and raises the last error it met)
KEY_READ = re.compile(r"Invalid key|encountered \S+ key, expected \S+ key|not a valid \S+ "
                      r"private key file|no lines in \S+ private key file")


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


def masked(path: str, exc: Exception) -> Exception:
    """What the login with the identity file ``path`` really met, when paramiko's ``exc``
    is a key type's reading error (:data:`KEY_READ`): paramiko tries each key type in
    turn and raises the last one's error, so an RSA or ECDSA key the host refused, or
    one that needs a passphrase, came out as "Invalid key" or "encountered RSA key,
    expected OPENSSH key". The refusal (``AuthenticationException``) when the key loads,
    its ``PasswordRequiredException`` when it is encrypted, else the error of loading
    it (a key type paramiko does not read); ``exc`` itself for any other error."""
    if not KEY_READ.fullmatch(str(exc)):
        return exc
    try:
        paramiko.PKey.from_path(path)
    except paramiko.PasswordRequiredException as encrypted:
        return encrypted
    except TypeError as error:  # cryptography's, for an encrypted PEM key
        return paramiko.PasswordRequiredException(str(error)) if "encrypted" in str(error) \
            else error
    except (paramiko.SSHException, OSError, ValueError) as error:
        return error
    return paramiko.AuthenticationException("Authentication failed.")
