"""The writer's filesystem and process primitives: renames and links that never replace
a name, syncs, its open-file budget, and whether a process (an agent) still runs.

Part of the writer program (:mod:`mailplan.mail.writer`, which has the protocol):
stdlib only, Python 3.7, joined with the other parts into one script
(:mod:`mailplan.mail.writer.bundle`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterable

from mailplan.mail.writer.proto import AGENT_MARK

RENAME_NOREPLACE = 1
AT_FDCWD = -100


def _libc() -> ctypes.CDLL | None:
    """The C library: the symbols already loaded into this process (no
    ``ctypes.util.find_library``, which runs ldconfig and compilers to look for it)."""
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


LIBC = _libc()
RENAMEAT2 = getattr(LIBC, "renameat2", None)
# os.fsencode's codec, without its Python-level call (two per message in the sync process)
FS_CODEC = (sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())
PR_SET_PDEATHSIG = 1  # prctl: a signal for this process when its parent dies
PR_SET_DUMPABLE = 4  # prctl: after setuid, let the sync process use /proc/WRITER/fd again


def rename_noreplace_at(src_dir: int, src: str, dst_dir: int, dst: str) -> bool:
    """Rename ``src`` (relative to directory fd ``src_dir``) to ``dst`` (relative to
    ``dst_dir``) unless it exists; return False when it exists. Relative names keep the
    kernel from walking the whole Maildir path for every message."""
    global RENAMEAT2
    if RENAMEAT2 is not None:
        if RENAMEAT2(src_dir, src.encode(*FS_CODEC), dst_dir, dst.encode(*FS_CODEC),
                     RENAME_NOREPLACE) == 0:
            return True
        err = ctypes.get_errno()
        if err == 17:  # EEXIST
            return False
        if err not in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: fall back to link
            raise OSError(err, os.strerror(err), dst)
        RENAMEAT2 = None
    try:
        os.link(src, dst, src_dir_fd=None if src_dir == AT_FDCWD else src_dir,
                dst_dir_fd=None if dst_dir == AT_FDCWD else dst_dir)
    except FileExistsError:
        return False
    try:
        os.unlink(src, dir_fd=None if src_dir == AT_FDCWD else src_dir)
    except FileNotFoundError:
        raise SourceVanished(2, "renamed or removed during the rename", src) from None
    return True


class SourceVanished(FileNotFoundError):
    """The link-and-unlink rename (no ``renameat2``) made the new name, then found the old
    one gone: renamed or removed in between, so the file may now have a second name."""


def link_noreplace(src: str, dst_dir: int, dst: str, src_dir: int | None = None) -> bool:
    """Give the anonymous file ``src`` (``/proc/PID/fd/N`` of a descriptor open on it, or
    ``N`` relative to directory fd ``src_dir`` open on ``/proc/PID/fd``) the name ``dst``
    in directory fd ``dst_dir`` unless that name exists; return False when it exists
    (linkat never replaces a name)."""
    try:
        os.link(src, dst, src_dir_fd=src_dir, dst_dir_fd=dst_dir, follow_symlinks=True)
    except FileExistsError:
        return False
    return True


def fd_budget() -> int:
    """How many anonymous files this agent may hold open at once: half its open-file
    limit (raised to the hard limit, at most 65536) less 64 for everything else. The
    sync process links them through this process's descriptors, so they stay open until
    their batch is acknowledged; past the budget a file gets a name in tmp/ instead."""
    try:
        import resource
    except ImportError:  # not a Unix: no O_TMPFILE either
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return (1 << 15) - 64
    want = 1 << 16 if hard == resource.RLIM_INFINITY else min(hard, 1 << 16)
    if want > soft:
        with contextlib.suppress(ValueError, OSError):  # the soft limit stays
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
    return max(0, soft // 2 - 64)


def rename_noreplace(src: str, dst: str) -> bool:
    """Rename src to dst unless dst exists; return False when it exists."""
    return rename_noreplace_at(AT_FDCWD, src, AT_FDCWD, dst)


def sync_filesystem(path: str, files: Iterable[str]) -> None:
    """Make ``files`` (and everything else on path's filesystem) durable. ``files`` is
    only iterated where syncfs is missing (then each is fsynced)."""
    if LIBC is not None and hasattr(LIBC, "syncfs"):
        fd = os.open(path, os.O_RDONLY)
        try:
            if LIBC.syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    fsync_each(files)


def fsync_each(paths: Iterable[str]) -> None:
    """fsync each file or directory of ``paths``."""
    for name in paths:
        fd = os.open(name, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _is_agent(pid: int, unknown: bool = False) -> bool:
    """Whether process ``pid`` runs this agent (its command line holds this source), not
    a process that reuses the id of one that ended; ``unknown`` where /proc cannot tell
    (not Linux, or not ours to read)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return AGENT_MARK in fh.read()
    except OSError:
        return unknown


def writer_alive(pid: int) -> bool:
    """Whether the writer that named a file or a record after ``pid`` may still run: the
    process runs, and is an agent or ``/proc`` cannot tell. A process that got the id
    since (a daemon started after a reboot) is not that writer: what it left is a dead
    writer's, to take up."""
    return pid_alive(pid) and _is_agent(pid, unknown=True)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs. A zombie (exited, not yet reaped) counts as
    gone: an agent whose parent ended first is reparented to PID 1, and some PID 1s
    (container and VM init programs) reap it only seconds later, or never."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            line = fh.read()
    except OSError:  # no /proc (not Linux): kill(2) is all there is
        return True
    state = line[line.rfind(b")") + 2:line.rfind(b")") + 3]  # after "pid (comm) "
    return state != b"Z"


def append_lines(fd: int, data: bytes) -> None:
    """Append the lines ``data`` to ``fd`` (open ``O_RDWR | O_APPEND``) as
    :func:`append_whole` does, on a line of their own: after a last line without its
    end (cut short, or written so by hand), a line end first."""
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        data = b"\n" + data
    append_whole(fd, data)


def append_whole(fd: int, data: bytes) -> None:
    """Append ``data`` to ``fd`` (open ``O_APPEND``) whole or not at all: a write cut
    short (a full disk: ENOSPC after the bytes that fitted) is taken back, so no line is
    left without its end for the next append (this writer's, or a delivery's to
    ``maildirsize``) to continue. Taken back only while they are the file's last bytes."""
    done = 0
    try:
        while done < len(data):
            done += os.write(fd, data[done:])
    except OSError:
        if done:
            end = os.lseek(fd, 0, os.SEEK_CUR)
            with contextlib.suppress(OSError):
                if os.fstat(fd).st_size == end:
                    os.ftruncate(fd, end - done)
        raise
