"""Install the vpopmail stand-in into a sandbox root, laid out like a fresh real install.

``install(root)`` creates ``root/home/vpopmail/{bin,doc,domains,etc,include,lib}`` and
``root/var/qmail/{alias,bin,boot,control,doc,man,queue,users}`` (the directories, owners and
modes of a real install, as listed in 01, 15 and 18-final-server-state.md) and one wrapper per
tool.  A wrapper is a tiny Python script (``#!PYTHON -SE``) that imports the stand-in (so its
byte code is cached) with the two directories baked in; being exec'd directly, it hands the
caller's environment to the stand-in untouched, which vchkpw passes on to its child.
Test-only: never shipped with mailplan.
CLI: ``python3 tests/standin/install.py ROOT``.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

STANDIN = Path(__file__).resolve().with_name("vpopmail_standin.py")
VPOP_TOOLS = ("vadddomain", "vdeldomain", "vadduser", "vdeluser", "vmoduser", "vpasswd",
              "vsetuserquota", "vuserinfo", "vdominfo", "valias", "vaddaliasdomain", "vchkpw")
QMAIL_TOOLS = ("qmail-newu",)
PASSWORD_STRENGTH = """\
# vpopmail password policy (stand-in; not the upstream file, which is larger)
Policy = Passwords must be at least one character long
MinLength = 1
"""
# ~vpopmail/etc as "make install" leaves it: name -> (text, owned by vpopmail (else root),
# size of the installed upstream file).  inc_deps/lib_deps are what vpopmail's Makefile
# writes for this build (cdb, -lcrypt).  The three config files are NOT copies of the
# upstream ones (nothing reads them here): short stand-in texts padded with '#' lines to
# the size the real install has, so directory listings (18-final-server-state.md) match.
ETC_FILES = {
    "inc_deps": ("-I{vpop}/include\n", False, 0),
    "lib_deps": ("-L{vpop}/lib -lvpopmail  -lcrypt \n", False, 0),
    "password_strength.conf": (PASSWORD_STRENGTH, False, 2115),
    "vlimits.default": ("# default domain limits (stand-in placeholder)\n", True, 1161),
    "vusagec.conf": ("# vusaged client configuration (stand-in placeholder)\n", True, 1114),
}


def _padded(text: str, size: int) -> str:
    """text followed by '#' comment lines up to exactly size bytes (0: unchanged)."""
    while size and len(text) < size:
        room = size - len(text)
        text += "#" * (min(room, 72) - 1) + "\n" if room > 1 else "\n"
    return text
MAX_SHEBANG = 127  # older kernels truncate longer #! lines


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
    """A directly exec'd Python wrapper; falls back to /bin/sh if the #! line is too long.

    The /bin/sh form works too, but dash re-orders the exported environment and adds PWD,
    which the child that vchkpw runs would see.
    """
    shebang = f"#!{sys.executable} -SE"
    if len(shebang) <= MAX_SHEBANG and " " not in sys.executable:
        return (f"{shebang}\n# vpopmail stand-in wrapper, written by {Path(__file__).name}\n"
                f"import sys\nsys.path[0] = {str(STANDIN.parent)!r}\n"
                "from vpopmail_standin import main\n"
                f"sys.exit(main([sys.argv[0], {str(vpop)!r}, {str(qmail)!r}, *sys.argv[1:]]))\n")
    python = shlex.quote(sys.executable)
    args = " ".join(shlex.quote(str(x)) for x in (STANDIN, tool_path, vpop, qmail))
    return f'#!/bin/sh\nexec {python} -S -E {args} "$@"\n'


#: where the stand-in's tools find the owner fixed at install time (vpopmail's ids), in
#: the sandbox root: no listing of a transcript shows it
OWNER_FILE = ".standin-owner"


def _reachable(root: Path) -> bool:
    """Make ``root``'s ancestors searchable by others where they are temp directories
    made for a run (pytest's, a benchmark's: 0700), as a real install's / and /home are;
    return whether every ancestor then is. mailplan's writer runs as the Maildir's owner
    (vpopmail), which must reach it; a directory elsewhere (a checkout in /root) is never
    changed: the sandbox then belongs to the caller instead."""
    temp = Path(tempfile.gettempdir()).resolve()
    ok = True
    for parent in root.parents:
        mode = parent.stat().st_mode
        if mode & stat.S_IXOTH:
            continue
        if temp in parent.parents and parent.stat().st_uid == os.getuid():
            os.chmod(parent, stat.S_IMODE(mode) | stat.S_IXOTH)
        else:
            ok = False
    return ok


def install(root: Path) -> StandinPaths:
    """Create a fresh stand-in vpopmail + qmail tree under ``root`` and return its paths.
    Its files belong to vpopmail:vchkpw where those exist and can reach ``root``, else to
    the caller (recorded in OWNER_FILE, which the tools read)."""
    root = Path(root).resolve()
    vpop, qmail = root / "home" / "vpopmail", root / "var" / "qmail"
    root.mkdir(parents=True, exist_ok=True)
    vuid, vgid = _ids("vpopmail", "vchkpw") if _reachable(root) else (os.getuid(), os.getgid())
    _, qgid = _ids("root", "qmail")
    _mkdir(vpop, 0o755, vuid, vgid)
    for sub in ("bin", "etc", "include", "lib", "doc/doc_html", "doc/man_html"):
        _mkdir(vpop / sub, 0o755, vuid, vgid)
    _mkdir(vpop / "doc", 0o755, vuid, vgid)
    _mkdir(vpop / "domains", 0o700, vuid, vgid)
    for name, (text, vpop_owned, size) in ETC_FILES.items():
        owner = (vuid, vgid) if vpop_owned else (0, 0)
        _write(vpop / "etc" / name, _padded(text.format(vpop=vpop), size), 0o644, *owner)
    _write(root / OWNER_FILE, f"{vuid} {vgid}\n", 0o644, 0, 0)
    _mkdir(qmail, 0o755, 0, qgid)
    for sub in ("alias", "bin", "boot", "control", "doc", "man", "queue", "users"):
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
