"""The state of one writer process, and what every request builds on: the directory fds
it keeps open, paths checked as folder names, and the files' owner (switched to).

Part of the writer program (:mod:`mailplan.mail.writer`, which has the protocol):
stdlib only, Python 3.7, joined with the other parts into one script
(:mod:`mailplan.mail.writer.bundle`).
"""

from __future__ import annotations

import codecs
import errno
import os
import stat
from collections.abc import Iterator

from mailplan.mail.writer.fs import FS_CODEC, LIBC, PR_SET_DUMPABLE, fd_budget
from mailplan.mail.writer.proto import ANONYMOUS, DIR_FLAGS, OTHER_OWNER, AgentError, send

TYPE_CHECKING = False  # typing is not imported to run: it costs the agent's start 5 ms
if TYPE_CHECKING:  # annotations only
    from typing import Any, BinaryIO


#: a full disk, a quota reached, a file size limit: said naming the folder (``_located``)
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class AgentBase:
    """State of one agent process: the open Maildir and the queued, not yet durable files
    (the requests are served by :class:`mailplan.mail.writer.core.Agent`)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.root = None
        #: the folder (its dir: ``""`` = INBOX) this process last wrote into, which a
        #: full disk's error names (``_located``)
        self.writing = ""
        self.uid = self.gid = None
        self.seq = 0
        self.ended = 0  # E frames received: the numbering an S "through" refers to
        #: dir -> the identities present in that folder (its files, its ledger lines and
        #: what this agent queued there), each as ``key``'s bytes; built at first use
        self.present = {}
        #: dir -> ledger identities (``key``'s bytes) of folders not in ``present`` yet
        self.ledger = {}
        #: dir -> the earlier names of that folder's directory, no longer there, whose
        #: ledger lines count for it (``F``'s ``also``: renamed by hand to today's name)
        self.also = {}
        # (E number, dir, source, subdir, name, identity, fd): the source is the tmp/
        # name, or for an anonymous file /proc/PID/fd/N of its fd (-1 for a named one)
        self.queue = []
        self.current = None  # [fd, hasher, size, dir, source]
        self.skipped = []  # (E number, [dir, name]) of identities found already present
        self.pid = os.getpid()
        self.euid = os.geteuid()
        self.became = None  # (uid, gid) this agent switched to (see ``_become``)
        self.undumpable = False  # switched, and PR_SET_DUMPABLE failed
        self.dir_fds = {}  # (folder dir, subdir) -> open directory fd
        self.fd_dirs = {}  # /proc/PID/fd -> an open directory fd on it (the sync process)
        self.syncer = None  # pid of the sync process, once forked
        self.job_w = self.ack_r = -1  # its job pipe and acknowledgement pipe
        self.jobs_sent = self.jobs_done = 0
        #: anonymous files: None until the first one in the open Maildir tells whether
        #: they work there; the fds of each unacknowledged job; how many are open
        self.anonymous = None
        self.job_fds = []
        self.held = 0
        self.budget = fd_budget() if ANONYMOUS else 0
        self.marker = None  # this writer's named file in tmp/ (see ``_mark``)
        self.proc_fds = ""  # /proc/PID/fd/ of this process (see ``_mark``)
        #: the ledger's size when ``open`` read it, and after this agent's last sync into
        #: each (Maildir, folder): another size means another writer synced meanwhile
        self.ledger_size = 0
        self.ledger_after = {}
        #: what a scan found when another writer had synced into a folder; later batches
        #: for it are checked against this too (the sync process only)
        self.rescanned = {}
        #: (Maildir, folder, a name's flags) -> the text of its courier keyword file
        self.courier_texts = {}
        #: the (folder, name) of the keyword files written for the batch being synced,
        #: and by (folder, their text) the name of one the next message with the same
        #: keywords is linked to
        self.courier_files = []
        self.courier_shared = {}

    def _dir_fd(self, dirname: str, sub: str) -> int:
        fd = self.dir_fds.get((dirname, sub))
        if fd is None:
            fd = os.open(os.path.join(self._folder_path(dirname), sub), DIR_FLAGS)
            self.dir_fds[(dirname, sub)] = fd
        return fd

    def _fd_dir(self, path: str) -> int:
        """A directory fd on ``path`` (``/proc/PID/fd``), opened once: a link relative
        to it spares the kernel a walk of ``/proc/PID/fd`` for every message."""
        fd = self.fd_dirs.get(path)
        if fd is None:
            fd = self.fd_dirs[path] = os.open(path, DIR_FLAGS)
        return fd

    def _close_dirs(self) -> None:
        for fd in self.dir_fds.values():
            os.close(fd)
        self.dir_fds = {}

    def _own(self, path_or_fd: str | int) -> None:
        if self.uid is None or self.euid != 0:
            return
        if isinstance(path_or_fd, int):
            os.fchown(path_or_fd, self.uid, self.gid)
        else:
            os.chown(path_or_fd, self.uid, self.gid)

    def _become(self, parent: str) -> None:
        """Run as the owner of the user's directory from now on, as qmail-local and
        vdelivermail deliver: a writer running as root would follow a link the Maildir's
        owner planted (``mailplan-ledger`` -> ``/etc/passwd``, a folder -> ``/root``) and
        write or chown what it points to. As that user, a link leads only where the user
        could write anyway. Under a user directory of root's the writer stays root only
        where no one else can have put anything (``_stay_root``). Once per agent: later
        Maildirs must have the owner of the first, root included (a sync process forked
        while the writer stayed root would stay root after a switch)."""
        if self.became is None and self.euid != 0:
            return  # not root: files are the caller's, nothing to switch
        if self.became is not None and self.became != (self.uid, self.gid):
            raise AgentError(f"the Maildir's parent {parent} belongs to uid {self.uid} "
                             f"gid {self.gid}, but this writer runs as uid "
                             f"{self.became[0]} gid {self.became[1]} {OTHER_OWNER}")
        if self.uid == 0:
            self._stay_root(parent)
            self.became = (self.uid, self.gid)
            return
        if self.became is not None:
            return  # already this owner
        # what is imported on first use, imported now: as that user, Python's own files
        # may be out of reach (an interpreter installed under /root)
        import select  # noqa: F401
        for name in ("ascii", "latin-1", FS_CODEC[0]):
            codecs.lookup(name)
        os.setgroups([])
        os.setresgid(self.gid, self.gid, self.gid)
        os.setresuid(self.uid, self.uid, self.uid)
        self.became, self.euid = (self.uid, self.gid), self.uid
        # the kernel made this process undumpable (its /proc/PID/fd root's): the sync
        # process, of the same user, links the anonymous files through it
        if LIBC is None or not hasattr(LIBC, "prctl") or \
                LIBC.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0:
            self.anonymous, self.undumpable = False, True

    def _stay_root(self, parent: str) -> None:
        """A user directory of root's own (a sandbox on a machine without a vpopmail
        user; vpopmail's belong to vpopmail): the writer stays root, which is safe only
        where no one else can have put anything: refused when the directory is writable
        by its group or others (a link to /tmp there would let anyone plant links in the
        Maildir) or the Maildir is not root's."""
        st = os.stat(parent)
        if st.st_mode & 0o022:
            raise AgentError(f"the Maildir's parent {parent} belongs to root and is writable "
                             "by others; the writer does not write there as root")
        try:
            md = os.lstat(self.root)
        except FileNotFoundError:
            return
        if md.st_uid != 0 or not stat.S_ISDIR(md.st_mode):
            raise AgentError(f"the Maildir {self.root} is not a directory of root's, in a "
                             "user directory of root's; the writer does not write there")

    def _mkdir(self, path: str) -> bool:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            return False
        os.chmod(path, 0o700)
        self._own(path)
        return True

    def _folder_path(self, dirname: str) -> str:
        if dirname and (not dirname.startswith(".") or "/" in dirname or dirname in (".", "..")
                        or "\0" in dirname):
            raise AgentError(f"bad folder directory name {dirname!r}")
        return os.path.join(self.root, dirname) if dirname else self.root

    def _folders(self) -> Iterator[str]:
        yield ""
        for entry in sorted(os.listdir(self.root)):
            if entry.startswith(".") and entry not in (".", "..") and os.path.isdir(
                    os.path.join(self.root, entry, "cur")):
                yield entry

    def _replace(self, path: str, text: str) -> None:
        self.seq += 1
        tmp = os.path.join(self.root, "tmp", f"mailplan-{os.getpid()}-{self.seq}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, text.encode("utf-8", "surrogateescape"))
            self._own(fd)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)

    def _located(self, exc: BaseException) -> BaseException:
        """``exc``, or for a full disk or quota (ENOSPC, EDQUOT, EFBIG) that names no
        absolute path (a write to an open file names none), the same error naming the
        folder this process was writing into: where the space ran out."""
        if not isinstance(exc, OSError) or exc.errno not in FULL or self.root is None \
                or str(exc.filename or "").startswith("/"):
            return exc
        try:
            where = self._folder_path(self.writing)
        except AgentError:
            where = self.root
        return OSError(exc.errno, f"{exc.strerror}, writing in {where}")

    def reply(self, kind: bytes, obj: Any) -> None:
        send(self.out, kind, obj)
