"""Files only mailplan's user may read, written so that no stop leaves one half
written: the state and its journal (:mod:`mailplan.state`), saved plans, the verify
cache, the apply log, and the key saved plans' password fingerprints are made with.

Each is created mode 0600 and never written through a symbolic link or a file left
beside it; a whole file is replaced atomically (temp file, fsync, rename, fsync of the
directory), a journal or log is appended to.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shlex
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from mailplan.errors import MailplanError, StateError
from mailplan.local_read import NotAFile, read_regular


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` (a disk may take less per call)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def fingerprint_key(state_path: Path) -> bytes:
    """The key saved plans' password fingerprints are made with: random, kept in
    ``STATE.key`` beside the state file (0600, made by the first plan), never in a plan.
    A plan file alone then tells nothing about a password; ``apply p.json`` needs the
    key file that made it (the same state directory)."""
    path = state_path.with_name(state_path.name + ".key")
    if not os.path.lexists(path):
        _create_key(path)
    try:
        key = bytes.fromhex(_key_text(path))
    except FileNotFoundError:  # _create_key could not make it: nothing to remove
        raise StateError(f"{path}: cannot create the plan fingerprint key",
                         hint=f"the directory {path.parent} must exist and be writable "
                         "(or choose another --state)") from None
    except (OSError, ValueError) as exc:
        raise StateError(f"{path}: cannot read the plan fingerprint key: {exc}",
                         hint="remove it and run `mailplan plan` again (saved plans made "
                         "with it are then refused as stale)") from None
    if len(key) < 16:
        raise StateError(f"{path}: the plan fingerprint key is too short",
                         hint="remove it and run `mailplan plan` again")
    return key


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _not_private(path: Path, st: os.stat_result, forbidden: int, may: str
                ) -> tuple[str, str] | None:
    """What is wrong with ``path`` (``st``: the opened file's status) for a file only
    its owner may use, as OpenSSH judges a private key, and its fix: another user owns it,
    or group or others have a ``forbidden`` mode bit (``may``: read or write, as said);
    None when neither."""
    shown, me = shlex.quote(str(path)), _user(os.geteuid())
    if st.st_uid != os.geteuid():
        return (f"it belongs to {_user(st.st_uid)}, not to {me} who runs mailplan",
                f"`chown {me} {shown}` and `chmod 600 {shown}`")
    if st.st_mode & forbidden:
        return (f"its mode is {stat.S_IMODE(st.st_mode):04o}: group or others may {may} it",
                f"`chmod 600 {shown}`")
    return None


def _key_text(path: Path) -> str:
    """The key file's text, refused as OpenSSH refuses a private key: a key another user
    owns, or one that group or others may read or write, may have been planted (a state
    kept in a directory others can write to) or read: fingerprints made with a key
    another knows let a plan file be tested against password guesses. The checks are of
    the file opened (not of its name, which may change in between)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            what, fix = "it is not a regular file", ""
        elif (wrong := _not_private(path, st, 0o077, "read or write")) is not None:
            what, fix = wrong
        else:
            return os.read(fd, 4096).decode("ascii").strip()
        raise StateError(f"{path}: refusing the plan fingerprint key: {what}", hint=(
            f"if you made it, {fix}; if not, " if fix else "") + "remove it (a new one is "
            "made by the next plan; plans saved with the old one are then refused as stale)")
    finally:
        os.close(fd)


def only_mine(path: Path, what: str, why: str, otherwise: str
              ) -> Callable[[os.stat_result], None]:
    """A check for :func:`~mailplan.local_read.read_regular` of a file whose content
    decides what mailplan changes: ``path`` (``what``, as the error names it) is refused
    as OpenSSH refuses a key, with StateError, when another user owns it or group or
    others may write it (reading it may be harmless). ``why``: what it decides, said in
    the error; ``otherwise``: the hint's advice to one who did not make it."""
    def check(st: os.stat_result) -> None:
        if (problem := _not_private(path, st, 0o022, "write")) is None:
            return
        wrong, fix = problem
        raise StateError(f"{path}: refusing {what}: {wrong} ({why})",
                         hint=f"if you made it, {fix}; if not, {otherwise}")
    return check


def read_mine(path: Path, state: Path, *, check: bool = True) -> bytes:
    """The state file (``state``) or its journal at ``path``, read as
    :func:`~mailplan.local_read.read_regular` reads it, and refused (:func:`only_mine`)
    when another user owns it or group or others may write it: they hold no secret, but
    what they record decides what ``--prune`` deletes, so whoever could write them could
    have it run vdeluser or vdeldomain on accounts mailplan never made. A state mailplan
    made is 0600. ``check=False``: not refused (``show``, which changes nothing, shows
    it all the same)."""
    what = "the state file" if path == state else "the state's journal"
    mine = only_mine(path, what, "what it records decides what --prune deletes",
                     f"look at what it records (`mailplan show {shlex.quote(str(state))}`) "
                     "before you trust it")
    try:
        return read_regular(path, check=mine if check else None)
    except NotAFile as exc:  # a FIFO, a directory: nothing damaged to move aside
        raise StateError(f"{path}: cannot read {what}: {exc}") from None


def _create_key(path: Path) -> None:
    """Write a new key whole, then link it into place: a plan stopped (or killed) at
    any point leaves no key or a whole one, never an empty one that every later plan
    would refuse; of two plans making it at once, the first link wins. Where the file
    system has no hard links, the key is written in place (``O_EXCL``). An error is
    left for the read that follows to report."""
    key = secrets.token_hex(32).encode() + b"\n"
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        _write_synced(fd, key)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:  # no hard links here
            _write_synced(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                                  0o600), key)
    except OSError:
        pass
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _write_synced(fd: int, data: bytes) -> None:
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def open_private_append(path: Path) -> int:
    """``path`` opened for appending, mode 0600 also when it existed with another mode; a
    symbolic link there is refused (``O_NOFOLLOW``), not written through."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def write_private(path: Path, text: str) -> None:
    """Atomically replace ``path`` with ``text``: temp file 0600, fsync, rename, fsync dir.
    The temp file is new (``mkstemp``: an unpredictable name, created exclusively), so a
    file or symbolic link left under some name beside ``path`` is never written through
    nor keeps its mode."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise MailplanError(f"cannot write {path}: {exc.strerror or exc}",
                            hint=f"the directory {path.parent} must exist and be writable"
                            ) from None
    try:
        try:
            write_all(fd, text.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:  # a full disk, most likely: the old file is still whole
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise MailplanError(f"cannot write {path}: {exc.strerror or exc}",
                            hint=f"free space in {path.parent}, then run the command again"
                            ) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
