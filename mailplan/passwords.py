"""Passwords as the desired state holds them, and the spec's own resolved.

A :class:`Password` is a crypt hash to store (from the source's shadow file or the
spec), a clear value to hash (from an environment variable or a file the spec names,
read now and kept as a :class:`~mailplan.secret.Secret`), or :data:`LOCKED`: an account
the old server no longer lets in, locked on the target. :func:`resolve_password` turns
a spec's password reference into one, refusing (without quoting it) what vpopmail would
not take; :func:`unresolved_passwords` lists what would be refused, for ``validate``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from mailplan.errors import SpecError
from mailplan.names import MAX_CLEAR_PASSWORD
from mailplan.secret import Secret
from mailplan.spec import JsonPath, Spec
from mailplan.text import has_control

#: a password file holds one line; anything larger is a mistake (``{file: /dev/zero}``)
MAX_PASSWORD_FILE = 4096


#: the kind of a :class:`Password` that no password verifies against: the account is
#: locked on the target (``!`` before its hash, as ``passwd -l`` does)
LOCKED = "locked"


@dataclass(frozen=True)
class Password:
    """A resolved password: a crypt hash to store, a clear value to hash, or
    :data:`LOCKED` (no value; its origin says why)."""

    kind: str  # "hash", "clear" or "locked"
    value: Secret
    origin: str  # where it came from, for the plan ("shadow", "env PM_PW", ...)


def resolve_password(spec: Spec, ref: dict[str, Any], where: JsonPath) -> Password:
    """A password reference from the spec (env, file or hash) to a Password."""
    if "env" in ref:
        value = os.environ.get(ref["env"])
        if not value:
            raise spec.error(f"environment variable {ref['env']} is not set or empty",
                             (*where, "env"), hint=f"export {ref['env']}=... before running")
        return _clear(spec, value, f"environment variable {ref['env']}", (*where, "env"),
                      f"env {ref['env']}")
    if "file" in ref:
        path = spec.resolve(ref["file"])
        try:
            with path.open("rb") as f:
                data = f.read(MAX_PASSWORD_FILE + 1)
        except OSError as exc:
            raise spec.error(f"cannot read password file {path}: {exc.strerror or exc}",
                             (*where, "file")) from None
        if len(data) > MAX_PASSWORD_FILE:
            raise spec.error(f"password file {path} is larger than {MAX_PASSWORD_FILE} bytes "
                             "(a password file holds one line)", (*where, "file"))
        try:  # the error never quotes the file's bytes: they are the password
            first = data.decode("utf-8").split("\n", 1)[0]
        except UnicodeDecodeError:
            raise spec.error(f"password file {path} is not UTF-8 text", (*where, "file")) \
                from None
        if not first:
            raise spec.error(f"password file {path} starts with an empty line",
                             (*where, "file"))
        return _clear(spec, first, f"the first line of password file {path}",
                      (*where, "file"), f"file {ref['file']}")
    return Password("hash", Secret(ref["hash"]), "hash in spec")  # checked by load_spec


def unresolved_passwords(spec: Spec) -> list[SpecError]:
    """What plan and apply would refuse in the spec's passwords read from this machine
    (an unset environment variable, a password file missing or unusable), for validate
    to mention: it checks the spec itself, and may run where the secrets are not."""
    refs: list[tuple[dict[str, Any], JsonPath]] = []
    for key, body in spec.data["domains"].items():
        body = body or {}
        if body.get("postmaster_password"):
            refs.append((body["postmaster_password"], ("domains", key, "postmaster_password")))
        for i, user in enumerate(body.get("users", [])):
            if own_password(user):
                refs.append((user["password"], ("domains", key, "users", i, "password")))
    found = []
    for ref, where in refs:
        try:
            resolve_password(spec, ref, where)
        except SpecError as exc:
            found.append(exc)
    return found


def _clear(spec: Spec, value: str, what: str, where: JsonPath, origin: str) -> Password:
    """A clear password vpopmail would take (never quoted in an error)."""
    try:  # an environment variable's bytes that are not UTF-8 are surrogates here
        value.encode()
    except UnicodeEncodeError:
        raise spec.error(f"{what} is not UTF-8 text", where) from None
    if has_control(value.replace("\t", "")):
        raise spec.error(f"{what} holds a control character (a CRLF line end, a NUL, ...)",
                         where)
    if len(value.encode()) > MAX_CLEAR_PASSWORD:
        raise spec.error(f"{what} is {len(value.encode())} bytes long; vpopmail takes at "
                         f"most {MAX_CLEAR_PASSWORD} (vpasswd refuses a longer one, and its "
                         "vchkpw would not accept it at login)", where)
    return Password("clear", Secret(value), origin)


def own_password(user: dict[str, Any]) -> bool:
    """Whether a spec user gives a password of its own (env, file or hash), not the
    source account's."""
    return "password" in user and "source" not in user["password"]
