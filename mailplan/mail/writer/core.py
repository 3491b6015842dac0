"""The writer's requests and its entry point: a Maildir opened, messages written to tmp/
and checked, the frames read and dispatched (``serve``), and ``main``.

Part of the writer program (:mod:`mailplan.mail.writer`, which has the protocol):
stdlib only, Python 3.7, joined with the other parts into one script
(:mod:`mailplan.mail.writer.bundle`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import stat
import sys

from mailplan.mail.writer.flags import FlagsMixin
from mailplan.mail.writer.keywords import KeywordsMixin
from mailplan.mail.writer.ledger import LedgerMixin
from mailplan.mail.writer.proto import (
    ANONYMOUS,
    CREATE,
    F_SETPIPE_SZ,
    HEADER,
    IN_BUFFER,
    LEDGER,
    MESSAGE,
    NAME_RE,
    OTHER_OWNER,
    WRITER_WAIT,
    AgentError,
    Refused,
    fail,
    key,
    read_exact,
    write_all,
)
from mailplan.mail.writer.syncer import SyncerMixin
from mailplan.mail.writer.tmpfiles import TmpFilesMixin

TYPE_CHECKING = False  # typing is not imported to run: it costs the agent's start 5 ms
if TYPE_CHECKING:  # annotations only
    from typing import Any, BinaryIO


class Agent(LedgerMixin, TmpFilesMixin, SyncerMixin, KeywordsMixin, FlagsMixin):
    """One agent process: the requests it serves, over the state of
    :class:`~mailplan.mail.writer.base.AgentBase` (each request group in a mixin of its own)."""

    def open(self, req: dict[str, Any]) -> dict[str, Any]:
        if self.queue or self.current:
            raise AgentError("open while messages are pending")
        self._unmark()
        self._close_dirs()
        # another Maildir may be on another filesystem; none once the switch to the
        # owner left /proc/PID/fd closed to the sync process (see ``_become``)
        self.anonymous = False if self.undumpable else None
        self.root, self.writing = req["root"], ""
        self.uid, self.gid = req.get("uid"), req.get("gid")
        created = False
        parent = os.path.dirname(self.root.rstrip("/"))
        try:
            there = stat.S_ISDIR(os.stat(parent).st_mode)
        except PermissionError:
            if self.became is None:
                there = False
            else:
                # out of reach of the owner this writer switched to: another's, whose
                # directories that owner may not enter (vadddomain -i: 0700, its own)
                raise AgentError(f"the Maildir's parent {parent} is out of reach of uid "
                                 f"{self.became[0]}, which this writer runs as "
                                 f"{OTHER_OWNER}") from None
        except OSError:
            there = False
        if not there:
            raise AgentError(f"parent of the Maildir does not exist: {parent}")
        if req.get("owner") == "parent":  # the user's directory, as vadduser made it
            st = os.stat(parent)
            self.uid, self.gid = st.st_uid, st.st_gid
            self._become(parent)
        created = self._mkdir(self.root)
        for sub in ("cur", "new", "tmp"):
            self._mkdir(os.path.join(self.root, sub))
        if self.became is not None:  # say so now, not at the first message; the folders
            for dirname in self._folders():  # read too: their tmp/ listed, their mail counted
                self._check_writable(self._folder_path(dirname), write=not dirname)
        waited = self._wait_for_writers(float(req.get("writer_wait", WRITER_WAIT)))
        recovered, ledger = self._recover_pending()
        # the ledger as recovery left it (read under the lock), or read now
        self.present, self.also = {}, {}
        if ledger is None:
            ledger, self.ledger_size = self._read_ledger()
        self.ledger = ledger
        return {"created": created, "cleaned": self._clean_tmp(), "ledger": self.ledger_size,
                "waited": waited, "recovered": recovered}

    def _check_writable(self, root: str, write: bool = True) -> None:
        """Refuse a Maildir (``root``: it, or one of its folders) whose directories, or
        the files every sync appends to (the ledger, vpopmail's ``maildirsize``), its
        owner may not write (made or touched by hand as root): found at a sync, a batch
        would be visible by then, and each run would make one more visible before
        failing; in a folder, a bare PermissionError would name no cause. Not ``write``:
        a folder not written to, whose directories every open reads."""
        parent = os.path.dirname(self.root.rstrip("/"))
        dirs = [root, *(os.path.join(root, s) for s in ("cur", "new", "tmp"))]
        files = [os.path.join(root, name) for name in (LEDGER, "maildirsize")] \
            if root == self.root else []
        for path in files:  # a named pipe would hang the sync that opens it
            with contextlib.suppress(FileNotFoundError):
                if not stat.S_ISREG(os.stat(path).st_mode):
                    raise Refused(f"{path} is not a regular file: the writer appends to "
                                  "it at every sync; move it away (vpopmail's own "
                                  "maildirsize is a file)")
        for path, mode in [(d, (os.W_OK if write else os.R_OK) | os.X_OK) for d in dirs] + \
                [(f, os.R_OK | os.W_OK) for f in files]:
            there = os.path.isdir(path) if path in dirs else os.path.exists(path)
            if there and not os.access(path, mode):
                st = os.stat(path)
                theirs = st.st_uid == self.uid  # then its mode forbids it
                raise Refused(
                    (f"{path} has mode {stat.S_IMODE(st.st_mode):04o}" if theirs
                     else f"{path} is uid {st.st_uid}'s")
                    + f", and the writer, running as the owner of {parent} (uid "
                    f"{self.uid}), may not " + ("read it (every import reads each folder)"
                                                 if not write else "write there (nor could "
                                                 "vpopmail deliver there)" if path in dirs
                                                 else "write it")
                    + (": chmod u+rwX it" if theirs else ": chown -R the Maildir to that owner"))

    def folder(self, req: dict[str, Any]) -> None:
        path = self._folder_path(req["dir"])
        if not req["dir"]:
            return
        self.writing = req["dir"]
        also = [d for d in req.get("also", ()) if d]
        for earlier in also:
            self._folder_path(earlier)  # a name no folder directory has is refused
        if also:  # taken by _present, now or when the folder is first asked about
            self.also[req["dir"]] = also
        made = self._mkdir(path)
        if self.became is not None:  # one made or restored by hand as root
            self._check_writable(path)
        for sub in ("cur", "new", "tmp"):
            if self._mkdir(os.path.join(path, sub)) and sub != "tmp":
                made = True
        if made:  # no folder an IMAP server opens was there: the ledger says who made it
            self._record_folder(req["dir"])
        marker = os.path.join(path, "maildirfolder")
        if not os.path.exists(marker):
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            self._own(fd)
            os.close(fd)

    def begin(self, dirname: str) -> None:
        fd, tmp = self._create(dirname)
        self.current = [fd, hashlib.sha256(), 0, dirname, tmp]

    def _create(self, dirname: str) -> tuple[int, str]:
        """A new file in the folder's tmp/: its fd and its source for the sync (see
        ``queue``). Anonymous where the filesystem has them and the budget allows: no
        name is made in tmp/ and removed again, and a killed writer leaves nothing."""
        if self.root is None:
            raise AgentError("begin before open")
        if self.current is not None:
            raise AgentError("begin inside a message")
        tmp_dir = self._dir_fd(dirname, "tmp")
        self.writing = dirname  # for a full disk's error (_located)
        if self.anonymous is not False and self.budget:
            if self.held >= self.budget and self.jobs_done < self.jobs_sent:
                self._collect(block=False)
            if self.held < self.budget and (self.marker is not None or self._mark()):
                try:
                    fd = os.open(".", ANONYMOUS, 0o600, dir_fd=tmp_dir)
                except OSError:  # a folder on a filesystem without them: names from now
                    self.anonymous = False
                else:
                    self.held += 1
                    return fd, f"{self.proc_fds}{fd}"
        self.seq += 1
        tmp = f"mailplan-{self.pid}-{self.seq}.tmp"
        return os.open(tmp, CREATE, 0o600, dir_fd=tmp_dir), tmp

    def data(self, chunk: bytes | memoryview) -> None:
        cur = self.current
        if cur is None:
            raise AgentError("data outside a message")
        write_all(cur[0], chunk)
        cur[1].update(chunk)
        cur[2] += len(chunk)

    def message(self, payload: bytes) -> None:
        """An ``M`` frame: what begin, data and end do, for a whole message (the hot
        path: no per-message hasher object or state list)."""
        if len(payload) < MESSAGE.size:
            raise AgentError("message frame too short")
        flags, dlen, nlen, mtime = MESSAGE.unpack_from(payload)
        start = MESSAGE.size + dlen
        stop = start + nlen
        if len(payload) < stop:
            raise AgentError("message frame too short")
        dirname = payload[MESSAGE.size:start].decode("utf-8")
        fd, tmp = self._create(dirname)
        body = memoryview(payload)[stop:]
        write_all(fd, body)  # a failure stops the agent; the next open removes the tmp file
        self._finish(fd, hashlib.sha256(body).hexdigest(), len(body), dirname, tmp,
                     payload[start:stop].decode("utf-8"), "cur" if flags & 1 else "new",
                     mtime if flags & 2 else None)

    def end(self, name: str, subdir: str, mtime: float | None) -> None:
        cur = self.current
        if cur is None:
            raise AgentError("end outside a message")
        self.current = None
        fd, hasher, size, dirname, tmp = cur
        self._finish(fd, hasher.hexdigest(), size, dirname, tmp, name, subdir, mtime)

    def _finish(self, fd: int, digest: str, size: int, dirname: str, source: str,
                name: str, subdir: str, mtime: float | None) -> None:
        """Check the written file against its name, set its mtime and owner, close it
        (an anonymous one stays open until the sync process linked it), and queue it for
        the next sync (or discard it: its identity is present)."""
        self.ended += 1
        m = NAME_RE.match(name)
        anonymous = source.startswith("/")
        try:
            if m is None or subdir not in ("new", "cur"):
                raise AgentError(f"bad message name or subdir: {subdir!r} {name!r}")
            named, occ, stated = m.group("digest", "occ", "size")  # one call: per message
            if int(stated) != size or named != digest:
                raise AgentError(f"message {name}: received {size} bytes with sha256 "
                                 f"{digest}")
            if mtime is not None:
                os.utime(fd, (mtime, mtime))
            self._own(fd)
        except BaseException:
            if not anonymous:
                os.close(fd)
            self._discard(dirname, source, fd if anonymous else -1)
            raise
        if not anonymous:
            os.close(fd)
            fd = -1
        ident = (digest, int(occ))
        known = self._present(dirname)
        compact = key(*ident)
        if compact in known:
            self._discard(dirname, source, fd)
            self.skipped.append((self.ended, [dirname, name]))
            return
        known.add(compact)
        self.queue.append((self.ended, dirname, source, subdir, name, ident, fd))


def serve(inp: BinaryIO, out: BinaryIO) -> int:
    agent = Agent(out)
    try:
        code = _serve(agent, inp)
    except (AgentError, OSError, ValueError, KeyError) as exc:
        with contextlib.suppress(AgentError, OSError):
            agent.drain()  # the replies the sync process owes go out before the error
        agent.stop(kill=True)
        fail(out, agent._located(exc))  # the sender learns of it now, not after the clean-up
        with contextlib.suppress(OSError):
            agent.discard_unsynced()
        return 1
    agent.stop()
    if agent.queue or agent.current:  # the input ended without a sync: dropped
        agent.discard_unsynced()
    return code


def _serve(agent: Agent, inp: BinaryIO) -> int:
    replying = {b"O": lambda p: agent.open(json.loads(p)),
                b"U": lambda p: agent.subscribe(json.loads(p)), b"Z": lambda p: agent.quota(),
                b"K": lambda p: agent.keywords(json.loads(p)),
                b"G": lambda p: agent.add_flags(json.loads(p))}
    while True:
        head = read_exact(inp, 5)
        if head is None:
            agent.drain()
            return 0
        kind, length = HEADER.unpack(head)
        payload = read_exact(inp, length) if length else b""
        if payload is None:
            raise AgentError("input ended inside a frame")
        if kind == b"M":
            agent.message(payload)
        elif kind == b"D":
            agent.data(payload)
        elif kind == b"B":
            agent.begin(payload.decode("utf-8"))
        elif kind == b"E":
            req = json.loads(payload)
            agent.end(req["name"], req["subdir"], req.get("mtime"))
        elif kind == b"F":
            agent.folder(json.loads(payload))
        elif kind == b"S":
            agent.sync_later(json.loads(payload)["through"] if payload else None)
        elif kind == b"L":
            agent.drain()  # replies go out in request order
            req = json.loads(payload) if payload else {}
            if req.get("known"):
                agent.reply_known(req)  # written in pieces, not as one JSON value
            else:
                agent.reply(b"R", agent.scan(req))
        elif kind in replying:
            agent.drain()  # replies go out in request order
            agent.reply(b"R", replying[kind](payload))
        elif kind == b"Q":
            agent.reply(b"R", agent.sync())
            return 0
        else:
            raise AgentError(f"unknown frame type {kind!r}")


def main() -> int:
    os.umask(0o077)
    with contextlib.suppress(OSError):  # a larger pipe: fewer wake-ups per megabyte
        fcntl.fcntl(0, F_SETPIPE_SZ, IN_BUFFER)
    # read frames from a large buffer: one read(2) per megabyte, not two per frame
    inp = open(0, "rb", buffering=IN_BUFFER, closefd=False)  # noqa: SIM115
    out = sys.stdout.buffer
    try:
        return serve(inp, out)
    except (AgentError, OSError, ValueError, KeyError) as exc:
        fail(out, exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
