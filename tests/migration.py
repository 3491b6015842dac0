"""Builders for integration tests: a source tree, a vpopmail target, a spec, the CLI.

The source "host" is a directory holding passwd, shadow and a spool, read over the test
sshd like a real server's files. The target is the vpopmail stand-in installed in a
temp directory — or, when MAILPLAN_TEST_VPOPMAIL names a real vpopmail directory (with
MAILPLAN_TEST_QMAIL for qmail's, default /var/qmail), that real installation: tests use
unique domain names and remove them afterwards, so they run unchanged against either.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from passlib.hash import sha512_crypt

from mailplan.connectors.base import DEFAULT_PYTHON
from mailplan.mail.agent_client import agent_display

REAL_VPOPMAIL = os.environ.get("MAILPLAN_TEST_VPOPMAIL")
#: MAILPLAN_TEST_PYTHON: the Python the tests run mailplan's target-side programs with
#: (the Maildir writer, the queue reader) in specs (:func:`write_spec`), connectors
#: (conftest) and the writer's own tests, e.g. an old one, to check that they run there;
#: by default python3 (the connectors') or the one running the tests (test_mail_agent)
TEST_PYTHON = os.environ.get("MAILPLAN_TEST_PYTHON")
#: how the apply log shows the writer agent's command
AGENT_DISPLAY = agent_display(TEST_PYTHON or DEFAULT_PYTHON)


@dataclass
class SourceAccount:
    """One account to put in the source's passwd/shadow."""

    name: str
    uid: int
    gecos: str = ""
    password: str | None = None  # clear password; hashed with SHA-512 crypt
    raw_hash: str | None = None  # used as is when given (locked, apr1, ...)
    in_shadow: bool = True

    def hash(self) -> str:
        if self.raw_hash is not None:
            return self.raw_hash
        assert self.password is not None
        return sha512_crypt.using(rounds=5000).hash(self.password)


def make_source(root: Path, accounts: list[SourceAccount]) -> Path:
    """Write ROOT/etc/passwd, ROOT/etc/shadow, ROOT/var/spool/mail and homes under
    ROOT/home; return ROOT."""
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "var/spool/mail").mkdir(parents=True, exist_ok=True)
    passwd = ["root:x:0:0:root:/root:/bin/bash", "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin"]
    shadow = ["root:*:19000:0:99999:7:::", "daemon:*:19000:0:99999:7:::"]
    for a in accounts:
        home = root / "home" / a.name
        home.mkdir(parents=True, exist_ok=True)
        passwd.append(f"{a.name}:x:{a.uid}:{a.uid}:{a.gecos}:{home}:/bin/sh")
        if a.in_shadow:
            shadow.append(f"{a.name}:{a.hash()}:19000:0:99999:7:::")
    (root / "etc/passwd").write_text("\n".join(passwd) + "\n")
    (root / "etc/shadow").write_text("\n".join(shadow) + "\n")
    os.chmod(root / "etc/shadow", 0o640)
    return root


@dataclass
class Target:
    """Where vpopmail is, and a helper to run its tools directly."""

    vpopmail_dir: str
    qmail_dir: str
    created_domains: list[str]

    def tool(self, name: str, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
        return subprocess.run([f"{self.vpopmail_dir}/bin/{name}", *args], input=stdin,
                              capture_output=True, check=False)

    def login_ok(self, address: str, password: str) -> bool:
        """Authenticate through vchkpw (checkpassword on fd 3), as the POP/IMAP servers do."""
        res = subprocess.run(["/bin/sh", "-c", '"$0" /bin/true 3<&0',
                              f"{self.vpopmail_dir}/bin/vchkpw"],
                             input=address.encode() + b"\0" + password.encode() + b"\0\0",
                             capture_output=True, check=False)
        return res.returncode == 0


def source_with_mail(root: Path, prefix: str, counts: list[int], headers: str = "") -> Path:
    """:func:`make_source` with users PREFIX0, PREFIX1, ... (uids from 1000, password
    ``pwI``) whose spools hold ``counts[i]`` small messages each (subject PREFIXi-j,
    and ``headers``, e.g. ``"X-Keywords: NonJunk\n"``)."""
    users = [SourceAccount(f"{prefix}{i}", 1000 + i, f"{prefix.upper()} {i}", f"pw{i}")
             for i in range(len(counts))]
    src = make_source(root, users)
    for user, count in zip(users, counts, strict=True):
        (src / "var/spool/mail" / user.name).write_bytes(b"".join(
            f"From s{j}@x.example Mon Nov  2 10:00:00 2026\nFrom: s{j}@x.example\n"
            f"Subject: {user.name}-{j}\n{headers}\nhello\n\n".encode() for j in range(count)))
    return src


def install_target(root: Path) -> Target:
    """The stand-in in ROOT, or the real vpopmail named by MAILPLAN_TEST_VPOPMAIL."""
    if REAL_VPOPMAIL:
        return Target(REAL_VPOPMAIL, os.environ.get("MAILPLAN_TEST_QMAIL", "/var/qmail"), [])
    return install_standin(root)


def install_standin(root: Path) -> Target:
    """The vpopmail stand-in in ROOT, whatever MAILPLAN_TEST_VPOPMAIL says (the sandbox
    demo's target: it never touches a real vpopmail)."""
    sys.path.insert(0, str(Path(__file__).parent / "standin"))
    from install import install  # the stand-in's installer (tests/standin/install.py)

    paths = install(root)
    return Target(str(paths.vpopmail_dir), str(paths.qmail_dir), [])


def tree_digest(root: Path, skip: frozenset[str] = frozenset()) -> str:
    """Names, modes, sizes, mtimes and contents of every file under ``root`` (paths in
    ``skip`` left out): equal digests mean nothing under it changed."""
    h = hashlib.sha256()
    for dirpath, dirs, names in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(names):
            p = Path(dirpath, name)
            if str(p) in skip:
                continue
            st = p.lstat()
            h.update(f"{p}\0{st.st_mode:o}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
            if p.is_file() and not p.is_symlink():
                h.update(p.read_bytes())
    return h.hexdigest()


@contextlib.contextmanager
def small_disk(path: Path, size: str = "3m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` for the block (a target disk that fills up);
    the test is skipped where this machine cannot mount one."""
    import pytest  # here, not at the top: the benchmarks import this module without it

    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=755", "tmpfs",
                              str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the target here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remote(tag: str) -> list[int]:
    """The processes whose command line holds ``tag`` (a hung command's)."""
    out = subprocess.run(["pgrep", "-f", tag], capture_output=True, text=True,
                         check=False).stdout
    return [int(pid) for pid in out.split()]


def left_running(tag: str, wait: float = 30.0) -> list[int]:
    """The processes of ``tag`` still there after ``wait`` seconds (killed then, by id, so
    that a failure leaves nothing behind). A hung program ends on the host only after
    mailplan let go of it (the session's relay kills it once its input ends): a loaded
    machine gets there late, and waiting costs nothing when it is quick."""
    deadline = time.monotonic() + wait
    while remote(tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = remote(tag)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


def new_tag() -> str:
    """A sleep's duration no other run on this machine uses (to find its processes:
    other test sessions may run the same test at the same time)."""
    return str(random.randrange(4_000_000, 5_000_000))


def unique_domain(prefix: str = "t") -> str:
    """A domain name no other test uses (tests may share a real vpopmail)."""
    return f"{prefix}{uuid.uuid4().hex[:10]}.example"


def ssh_host(sshd: object) -> dict[str, object]:
    """A hosts: entry for the test sshd."""
    return {"address": "127.0.0.1", "port": sshd.port, "user": sshd.user,
            "identity_file": str(sshd.client_key), "known_hosts": str(sshd.known_hosts)}


def write_spec(path: Path, *, source_root: Path, target: Target, domains: dict,
               source_host: dict | None = None, target_host: dict | None = None,
               source: dict | None = None) -> Path:
    """Write a spec with two hosts (SSH to the test sshd by default, or local); ``source``
    adds keys to its source (``aliases``, ...)."""
    hosts = {"oldmail": source_host or {"local": True},
             "newmail": target_host or {"local": True}}
    if TEST_PYTHON:  # the programs run with the Python under test (conftest)
        hosts = {name: {"python": TEST_PYTHON, **entry} for name, entry in hosts.items()}
    spec = {
        "version": 1,
        "hosts": hosts,
        "source": {"host": "oldmail", "passwd": str(source_root / "etc/passwd"),
                   "shadow": str(source_root / "etc/shadow"),
                   "spool": str(source_root / "var/spool/mail"), **(source or {})},
        "target": {"host": "newmail", "vpopmail_dir": target.vpopmail_dir,
                   "qmail_dir": target.qmail_dir},
        "domains": domains,
    }
    target.created_domains.extend(domains)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def migrate_over_ssh(work: Path, sshd: object, src: Path, prefix: str = "t"
                     ) -> tuple[Target, str, Path]:
    """Apply a spec for the source tree ``src`` (its users from uid 1000, into a new
    domain) over the test sshd, in ``work``: the target, the domain and the spec's path."""
    target = install_target(work / "target")
    domain = unique_domain(prefix)
    spec = write_spec(work / "m.yaml", source_root=src, target=target,
                      source_host=ssh_host(sshd), target_host=ssh_host(sshd),
                      domains={domain: {"import": {"uid_min": 1000}}})
    mailplan("apply", str(spec), "--auto-approve", check=True)
    return target, domain, spec


def mailplan(*args: str, env: dict[str, str] | None = None, check: bool = False,
             cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess (as an administrator would). ``check``: it must
    succeed: exit 0, or for an apply whose plan has problems exit 3 with the line that
    says so (:func:`not_migrated`), and only then."""
    full_env = {**os.environ, **(env or {})}
    res = subprocess.run([sys.executable, "-m", "mailplan", *args], capture_output=True,
                         text=True, env=full_env, cwd=cwd, check=False)
    ok = 3 if args[:1] == ("apply",) and not_migrated(res) else 0
    if check and res.returncode != ok:
        raise AssertionError(f"mailplan {' '.join(args)} exited {res.returncode}:\n"
                             f"{res.stdout}\n{res.stderr}")
    return res


def not_migrated(res: subprocess.CompletedProcess) -> bool:
    """Whether an apply said, last, that its plan's problems stay (then it exits 3)."""
    return any(line.startswith("Not migrated: ") and line.endswith("exit status 3.")
               for line in (res.stdout + res.stderr).splitlines())


def kill_apply_when(spec: Path, ready: Callable[[bytes], bool], *, timeout: float = 120,
                    args: tuple[str, ...] = (), plan: Path | None = None) -> None:
    """Start ``mailplan apply SPEC --auto-approve`` (or ``mailplan apply PLAN``, a saved
    plan of SPEC) and kill -9 it once its journal (SPEC's state journal) satisfies
    ``ready`` (or the timeout passes)."""
    journal = spec.with_name(spec.stem + ".state.json.journal")
    command = [str(plan)] if plan is not None else [str(spec), "--auto-approve"]
    proc = subprocess.Popen([sys.executable, "-m", "mailplan", "apply", *command, *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if ready(journal.read_bytes()):
                break
        except FileNotFoundError:
            pass  # not begun yet, or folded in or removed by an apply that is ending
        time.sleep(0.005)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@functools.cache
def _source_noatime() -> bool:
    from mailplan.connectors.local import LocalConnector
    from mailplan.facts.noatime import read_tools

    conn = LocalConnector("oldmail")
    try:
        return read_tools(conn).dd
    finally:
        conn.close()


def source_read(path: object, start: int, length: int) -> str:
    """The whole command mailplan reads a byte range of a listed source mailbox with:
    ``source_slice`` of the file it opened, once it proved that file is the one listed
    (:func:`mailplan.mail.windows.guarded`)."""
    from mailplan.mail.windows import OPENED, guarded

    st = os.stat(str(path))
    return guarded(str(path), (st.st_dev, st.st_ino), source_slice(OPENED, start, length))


def source_slice(path: object, start: int, length: int) -> str:
    """The command mailplan reads a byte range of a source mailbox with here (the test
    source is this machine, reached as the same user: GNU dd as root, else head/tail)."""
    from mailplan.mail.windows import slice_command

    return slice_command(str(path), start, length, noatime=_source_noatime())
