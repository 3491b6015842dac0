"""Install the vpopmail stand-in into a sandbox root, laid out like a fresh real install.

``install(root)`` creates ``root/home/vpopmail/{bin,domains,etc}`` and
``root/var/qmail/{users,control,bin}`` (owners/modes as in 01-before-any-domain.md and
15-maildir-layout-permissions.md) and one ``#!/bin/sh`` wrapper per tool that execs the
stand-in with the two directories baked in.  Test-only: never shipped with mailplan.
CLI: ``python3 tests/standin/install.py ROOT``.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

STANDIN = Path(__file__).resolve().with_name("vpopmail_standin.py")
VPOP_TOOLS = ("vadddomain", "vdeldomain", "vadduser", "vdeluser", "vmoduser", "vpasswd",
              "vsetuserquota", "vuserinfo", "vdominfo", "valias", "vaddaliasdomain", "vchkpw")
QMAIL_TOOLS = ("qmail-newu",)
PASSWORD_STRENGTH = """\
# vpopmail password policy (as installed by vpopmail 5.6.13)
Policy = Passwords must be at least one character long
MinLength = 1
"""


@dataclass(frozen=True)
class StandinPaths:
    """Where the stand-in lives; mirrors /home/vpopmail, /var/qmail and ~vpopmail/bin."""

    vpopmail_dir: Path
    qmail_dir: Path
    bin_dir: Path


def _ids(user: str, group: str) -> tuple[int, int]:
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        uid = os.getuid()
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        gid = os.getgid()
    return uid, gid


def _mkdir(path: Path, mode: int, uid: int, gid: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    try:  # noqa: SIM105 (no contextlib import: startup time)
        os.chown(path, uid, gid)
    except PermissionError:
        pass


def _write(path: Path, text: str, mode: int, uid: int, gid: int) -> None:
    path.write_text(text)
    os.chmod(path, mode)
    try:  # noqa: SIM105 (no contextlib import: startup time)
        os.chown(path, uid, gid)
    except PermissionError:
        pass


def _wrapper(tool_path: Path, vpop: Path, qmail: Path) -> str:
    python = shlex.quote(sys.executable)
    args = " ".join(shlex.quote(str(x)) for x in (STANDIN, tool_path, vpop, qmail))
    return f'#!/bin/sh\nexec {python} -S -E {args} "$@"\n'


def install(root: Path) -> StandinPaths:
    """Create a fresh stand-in vpopmail + qmail tree under ``root`` and return its paths."""
    root = Path(root).resolve()
    vpop, qmail = root / "home" / "vpopmail", root / "var" / "qmail"
    vuid, vgid = _ids("vpopmail", "vchkpw")
    _, qgid = _ids("root", "qmail")
    _mkdir(vpop, 0o755, vuid, vgid)
    for sub in ("bin", "etc"):
        _mkdir(vpop / sub, 0o755, vuid, vgid)
    _mkdir(vpop / "domains", 0o700, vuid, vgid)
    _write(vpop / "etc" / "password_strength.conf", PASSWORD_STRENGTH, 0o644, vuid, vgid)
    _mkdir(qmail, 0o755, 0, qgid)
    for sub in ("users", "control", "bin"):
        _mkdir(qmail / sub, 0o755, 0, qgid)
    for name in ("me", "locals", "rcpthosts", "defaultdomain", "plusdomain"):
        _write(qmail / "control" / name, "localhost\n", 0o644, 0, 0)
    for tool in VPOP_TOOLS:
        path = vpop / "bin" / tool
        _write(path, _wrapper(path, vpop, qmail), 0o711, vuid, vgid)
    for tool in QMAIL_TOOLS:
        path = qmail / "bin" / tool
        _write(path, _wrapper(path, vpop, qmail), 0o755, 0, qgid)
    return StandinPaths(vpopmail_dir=vpop, qmail_dir=qmail, bin_dir=vpop / "bin")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write("usage: python3 tests/standin/install.py ROOT\n")
        sys.exit(2)
    paths = install(Path(sys.argv[1]))
    print(f"vpopmail_dir={paths.vpopmail_dir}\nqmail_dir={paths.qmail_dir}\n"
          f"bin_dir={paths.bin_dir}")
