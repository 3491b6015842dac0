"""Part of the queue agent sent to the host (:mod:`mailplan.queue.agent`, whose docstring
describes its ``apply`` mode; stdlib only, Python 3.7 or newer): carries out the actions
of a delete or repair as they arrive on stdin, one JSON object a line, never following
a symlink below the queue. The host runs it before the agent, in one namespace.
"""

from __future__ import annotations

import errno
import fcntl
import grp
import json
import os
import pwd
import stat
import sys
import typing


def _inside(rel: str) -> list:
    """The components of ``rel`` (relative to the queue); paths that leave it are refused."""
    if rel == ".":
        return []
    parts = rel.split("/")
    if not rel or rel.startswith("/") or ".." in parts or "" in parts or "." in parts:
        raise ValueError(f"refusing path outside the queue: {rel!r}")
    return parts


def _ids(action: dict) -> tuple[int, int]:
    user = action.get("user")
    group = action.get("group")
    uid = pwd.getpwnam(user).pw_uid if user else -1
    gid = grp.getgrnam(group).gr_gid if group else -1
    return uid, gid


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def _parent(root: int, parts: list) -> int:
    """A new fd of the directory holding ``parts[-1]``, reached from ``root`` without
    following any symlink (a split directory swapped for one is refused)."""
    fd = os.dup(root)
    try:
        for part in parts[:-1]:
            child = os.open(part, _DIR, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _expect(st: os.stat_result, action: dict) -> None:
    """Refuse an object the caller's dump did not see there (``ino``: its inode then)."""
    if "ino" in action and st.st_ino != action["ino"]:
        raise ValueError("{} is no longer the object the check saw (inode {}, now {}); "
                         "refusing".format(action["path"], action["ino"], st.st_ino))


def _attrs(root: int, parts: list, action: dict, op: str) -> None:
    """chown or chmod through an fd opened without following symlinks, once it is known
    to be the directory, file or named pipe the dump saw (never a device, never a link)."""
    if parts:
        folder = _parent(root, parts)
        try:
            st = os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)
            if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)
                    or stat.S_ISFIFO(st.st_mode)):
                raise ValueError("not a directory, file or named pipe; refusing")
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                         | os.O_NOCTTY, dir_fd=folder)
        finally:
            os.close(folder)
    else:
        fd = os.dup(root)
        st = os.fstat(fd)
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise ValueError("changed while being opened; refusing")
        _expect(now, action)
        if op == "chmod":
            os.fchmod(fd, action["mode"])
        else:
            uid, gid = _ids(action)
            os.fchown(fd, uid, gid)
    finally:
        os.close(fd)


def _do(root: int, action: dict) -> None:
    """One action; every path is walked from the queue's fd without following symlinks."""
    op = action["op"]
    parts = _inside(action["path"])
    if op in ("chown", "chmod"):
        _attrs(root, parts, action, op)
        return
    if not parts:
        raise ValueError(f"refusing to {op} the queue directory itself")
    folder = _parent(root, parts)
    name = parts[-1]
    try:
        if op == "remove":
            st = os.stat(name, dir_fd=folder, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                raise ValueError("is a directory")
            _expect(st, action)
            os.unlink(name, dir_fd=folder)
        elif op == "rmdir":
            os.rmdir(name, dir_fd=folder)
        elif op == "rename":
            to = _inside(action["to"])
            if not to:
                raise ValueError("refusing to rename onto the queue directory")
            st = os.stat(name, dir_fd=folder, follow_symlinks=False)
            _expect(st, action)
            target = _parent(root, to)
            try:
                try:
                    os.stat(to[-1], dir_fd=target, follow_symlinks=False)
                except FileNotFoundError:
                    pass
                else:
                    raise ValueError("target {} exists".format(action["to"]))
                os.rename(name, to[-1], src_dir_fd=folder, dst_dir_fd=target)
            finally:
                os.close(target)
        elif op in ("mkdir", "mkfifo", "mkfile"):
            if op == "mkdir":
                os.mkdir(name, 0o700, dir_fd=folder)
            elif op == "mkfifo":
                os.mkfifo(name, 0o600, dir_fd=folder)
            else:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                             0o600, dir_fd=folder)
                try:
                    os.write(fd, b"\0" * action.get("size", 0))
                finally:
                    os.close(fd)
            made = {k: v for k, v in action.items() if k != "ino"}
            _attrs(root, parts, made, "chown")
            _attrs(root, parts, made, "chmod")
        else:
            raise ValueError(f"unknown action {op!r}")
    finally:
        os.close(folder)


def _batches(stdin: typing.BinaryIO) -> typing.Iterator[list]:
    """The actions on ``stdin`` in runs of one batch (an action without one is a run of
    its own), each given once all of it has arrived; ValueError for input that ends
    without the end mark or whose end mark has another count."""
    held = []  # type: list
    count = 0
    for line in stdin:
        if not line.endswith(b"\n"):
            break  # cut off in the middle of a line
        item = json.loads(line.decode("utf-8"))
        if "end" in item:
            if item["end"] != count:
                raise ValueError("the end mark says {} actions, {} came".format(
                    item["end"], count))
            if held:
                yield held
            return
        count += 1
        batch = item.get("batch")
        if held and (batch is None or batch != held[0].get("batch")):
            yield held
            held = []
        held.append(item)
    raise ValueError(f"the actions ended after {count} without their end mark; the last "
                     f"{len(held)} (one batch) were not carried out")


def _sendmutex(root: int) -> int | None:
    """Take qmail-send's own lock, ``lock/sendmutex``, as qmail-send does when it starts
    (``flock``, or ``lockf`` where qmail was built without flock: both are taken), and
    hold it until this program ends: an fd, or None when there is no such regular file
    or the lock cannot be had for another reason than being held (nothing to go by but
    the status command then). A running qmail-send holds it for its whole life, whatever
    its process is called or whichever process table it is in; one started while the
    lock is held here exits at once ("qmail-send is already running") and is started
    again by its supervisor later. Raises BlockingIOError while another process holds it.
    """
    try:
        folder = _parent(root, ["lock", "sendmutex"])
    except OSError:
        return None
    try:
        fd = os.open("sendmutex", os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY,
                     dir_fd=folder)
    except OSError:  # missing (qmail-send cannot start then), a link, a named pipe
        return None
    finally:
        os.close(folder)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise BlockingIOError(exc.errno, "held") from None
        return None
    return fd


def _refuse(stdin: typing.BinaryIO, why: str) -> int:
    """Change nothing: read the actions to their end (so the sender never writes into a
    closed pipe) and say why on stderr; exit code 3."""
    while stdin.read(1 << 16):
        pass
    sys.stderr.write(f"{why}; nothing was changed\n")
    return 3


def apply(queue: str, status: str) -> int:
    stdin = sys.stdin.buffer
    if status not in ("1", "-"):
        # qmail-send was seen stopped by the dump the actions were computed from, but
        # that dump may have taken minutes: whoever started it since must not find its
        # queue changed under it
        return _refuse(stdin, f"qmail-send is not stopped (its status command exited "
                       f"{status}) right before the changes")
    root = os.open(queue, os.O_RDONLY | os.O_DIRECTORY)
    try:
        # its fd stays open, the lock held, until this program ends: qmail-send cannot
        # start while the queue changes
        _sendmutex(root)
    except BlockingIOError:
        os.close(root)
        return _refuse(stdin, "qmail-send is running: a process holds its lock "
                       "lock/sendmutex (the status command said it is stopped; is it "
                       "qmail-send's?)")
    index = 0
    failed = 0
    broken = set()  # batches (one message's renames) with a failed action: skip the rest
    try:
        for run in _batches(stdin):
            for action in run:
                result = {"i": index, "ok": True}
                batch = action.get("batch")
                try:
                    if batch is not None and batch in broken:
                        raise ValueError(f"skipped: an earlier step of {batch} failed")
                    _do(root, action)
                except FileNotFoundError:
                    result = {"i": index, "ok": False, "gone": True, "error": "no such file"}
                    failed += 1
                except (OSError, ValueError, KeyError) as exc:
                    result = {"i": index, "ok": False, "error": str(exc)}
                    failed += 1
                # a file to remove that is gone already is no reason to stop its group
                gone = result.get("gone") and action.get("op") == "remove"
                if not result["ok"] and batch is not None and not gone:
                    broken.add(batch)
                sys.stdout.write(json.dumps(result) + "\n")
                index += 1
    except ValueError as exc:  # input cut off or garbled: what came before was done
        sys.stdout.flush()
        sys.stderr.write(f"{exc}\n")
        return 4
    sys.stdout.flush()
    return 1 if failed else 0
