"""Target-side Maildir writer: a self-contained stdlib-only script driven over stdin/stdout.

mailplan sends this file's source to the target and runs it with the host's Python, as
``python3 -I -S -c "<version check; exec of argv[1]>" "<source>"`` (mailplan.interpreter),
or ``python3 - < agent.py`` with the stream following. It imports nothing from mailplan
and needs Python 3.7 or newer.

Protocol: every frame is ``type (1 byte) + length (4 bytes, big endian) + payload``.
Requests (only those marked * get a reply, so a mailbox streams without round trips):

``O``* open      JSON ``{"root", "uid", "gid"}`` (or ``"owner": "parent"``: the owner of the
                 Maildir's parent, the user directory vadduser made): select a Maildir
                 (created 0700 if missing), delete stale tmp files (those of dead
                 processes) and append the ledger lines a killed writer owed (see
                 "mailplan-pending" below)
``F``  folder    JSON ``{"dir"}``: create ``.Name`` with cur/new/tmp and ``maildirfolder``
``B``  begin     payload = folder dir (``""`` = INBOX): open a new file in its tmp/
                 (see "Files in tmp/")
``D``  data      raw message bytes
``E``  end       JSON ``{"subdir", "name", "mtime"}``: check size and sha256 against the
                 name, set mtime/owner, and queue the file; an identity already present
                 (a file in new/cur or a ledger line) is discarded instead
``M``  message   a whole message in one frame, what ``B`` + ``D`` + ``E`` do (the common
                 case: one frame to read and no JSON per message): ``MESSAGE`` (flags:
                 1 = cur/, 2 = an mtime is given; folder dir length; name length; mtime)
                 + folder dir + name + message bytes
``S``* sync      make every queued file durable (one syncfs, or fsync per file where
                 syncfs is missing), link or rename each into new/ or cur/ without
                 overwriting (linkat; renameat2 RENAME_NOREPLACE, else link+unlink),
                 append the ledger, count the batch in ``maildirsize`` (a ``bytes
                 count`` line, as a delivery adds; where the file exists), sync
                 again, reply ``{"durable": [[dir, name]], "present": [[dir, name]]}``.
                 Renames and ledger happen under an ``flock`` of the Maildir directory;
                 a message another writer made visible meanwhile (the ledger grew) is
                 dropped and replied as present.
                 With payload JSON ``{"through": n}`` only the messages among the first
                 ``n`` ``E`` frames of the session are taken (later ones stay in tmp/,
                 invisible, for a later sync): the sender can go on streaming while it
                 checks the source before asking for a batch's sync.
                 A sync process (forked at the first ``S``: see "Cost per message") does
                 this while the agent goes on writing the next messages to tmp/, so the
                 disk flush and the renames overlap the stream; replies still come in
                 request order (any other request waits for pending syncs)
``L``* scan      ``{"folders": {dir: [[digest, occ]]}, "ledger": [[dir, digest, occ]]}``:
                 the identities in new/ and cur/ of every folder, or with payload JSON
                 ``{"dir": d}`` of folder ``d`` only. With ``{"dir": d, "known": true}``
                 (what an import asks): ``{"known": "DIGEST OCC\\n..."}``, the identities
                 this agent holds as present in folder ``d`` (its files and its ledger
                 lines, one of each) as one text: a fraction of the lists' memory on
                 both sides for a folder of many messages
``U``* subscribe JSON ``{"files": {filename: [lines]}}``: add missing lines (never drop any)
``K``* keywords  JSON ``{"dir", "keywords": [...]}``: the file-name letters of these IMAP
                 keywords in folder ``dir`` (dovecot's ``dovecot-keywords``, extended
                 with the missing ones): ``{"letters": {keyword: letter}}``. Courier
                 keeps keywords elsewhere: a message whose name carries keyword letters
                 also gets, right before the sync links it, a file named after it (its
                 name up to ``:``) in the folder's ``courierimapkeywords/``, one keyword
                 per line, as courier's ``maildir_kwSave`` writes one; courier folds such
                 files into its ``:list`` when it next reads the folder
``G``* flags     JSON ``{"dir", "add": "DIGEST OCC FLAGS\\n..."}``: add Maildir flags to
                 messages already in folder ``dir`` (flags a message got on the old
                 server after its import), all of a folder's in one request: each
                 file of such an identity in new/ or cur/ is renamed as an IMAP
                 client renames it, ``new/NAME`` -> ``cur/NAME:2,FLAGS`` and
                 ``cur/BASE:2,OLD`` -> ``cur/BASE:2,MERGED`` (the union, in ASCII
                 order, so keyword letters stay after the flags; nothing is removed),
                 never over an existing name (renameat2 RENAME_NOREPLACE, else
                 link+unlink); then cur/ and new/ are synced. A file gone or renamed
                 meanwhile (a mail client got there first) is passed over. Reply
                 ``{"renamed": n, "gone": n, "taken": n}`` (taken: the new name
                 exists; the file is left as it is)
``Z``* quota     recompute ``maildirsize`` totals when that file exists (vpopmail quota)
``Q``* quit      sync what is queued, reply, exit 0

Replies: ``R`` + JSON, or ``X`` + error text (the agent then exits 1). A file is visible in
new/ or cur/ only after it is complete and durable. When the input ends (or a request
fails) before a sync, the agent removes its own files from tmp/ as it exits; only a
killed agent leaves files there, and the next ``O`` removes them. Directories are created
0700 and files 0600, owned by the given uid/gid (as vpopmail creates them); existing files
are never replaced.

Files in tmp/: where the filesystem has ``O_TMPFILE`` (Linux ext4, xfs, btrfs, tmpfs), a
message is written to a file with no name in the folder's tmp/, kept open, and given its
name in new/ or cur/ by ``linkat`` of ``/proc/AGENT/fd/N`` once durable (relative to a
directory fd the sync process keeps open on ``/proc/AGENT/fd``: the kernel then walks one
name per message, not four; kernel time of 15,000 links: 0.23-0.33 s against 0.28-0.37 s):
no name is made in tmp/ and removed again (measured on ext4 with and without a journal,
50,000 small messages: 3.4-5.0 s against 4.9-6.1 s, a quarter less kernel time), and a
killed agent leaves nothing behind, the kernel frees the file. While it holds such files
the agent keeps an empty marker ``mailplan-PID-SEQ.tmp`` in the Maildir's tmp/, so that
another agent's ``O`` waits for it and cleans up after it as for named files. Files stay
open until their batch is linked, so at most about half the open-file limit are held (the
agent raises its soft limit to the hard one, at most 65,536); past that, and where
``O_TMPFILE`` or /proc is missing, a message is a named file ``mailplan-PID-SEQ.tmp``
renamed into place.
The ledger ``mailplan-ledger`` (``dir TAB sha256 TAB occurrence`` per line) remembers every
imported message, so one the user deleted later is not brought back. Before a sync makes
a batch visible, its identities (``dir NUL sha256 NUL occurrence`` each, NUL-separated)
go to ``mailplan-pending-PID`` (durable with the batch, removed once its ledger lines
are): a writer killed between its renames and its ledger append leaves messages visible
without ledger lines, and the next ``O`` appends the lines of those it finds visible (by
identity: a mail reader may have renamed one since).

Memory: the identities of each folder the agent writes (its files in new/ and cur/, its
ledger lines, the messages queued) are held to discard one already present, each as the
digest's 32 bytes and the occurrence's digits (``key``): about 128 bytes a message with
its place in the set. The ledger is read line by line and a folder's files as the
directory is read (never listed whole), and the ``known`` reply is written a thousand
lines at a time, so a folder of many messages costs only its set.

Cost per message (the hot path): frames come from a 1 MiB stdin buffer (the pipe is
enlarged to 1 MiB where allowed), so reading costs one read(2) per megabyte, not two per
frame; a held message is one ``M`` frame (a struct, not JSON), written, hashed and
checked in one call (no hasher object or state list of its own); files are created,
unlinked and renamed relative to directory fds kept open for the session, so the kernel
does not walk the Maildir path each time. Syncs and renames run in a second process
forked from the agent, not in a thread: a thread shares the interpreter lock, and while
it renamed a batch (a few milliseconds per thousand files) the writing thread got the
lock only every switch interval, so the pipe filled and the sender stalled too (measured
with the agent alone replaying 12.5k small messages: wall 1.0-1.2 s -> 0.9 s, for about
10% more CPU). The sync process dies with the agent (``PR_SET_PDEATHSIG`` where Linux has
it, else at the end of its current batch, when it finds its job pipe closed), and the
agent stops with an error when the sync process dies (SIGCHLD), so the sender never
waits for a reply that cannot come. What is left is
what the delivery discipline needs: open, write, utime, fchown (as root), link, close.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import errno
import fcntl
import hashlib
import itertools
import json
import os
import re
import signal
import stat
import struct
import sys
import time
from collections.abc import Iterable, Iterator

TYPE_CHECKING = False  # typing is not imported to run: it costs the agent's start 5 ms
if TYPE_CHECKING:  # annotations only
    from typing import Any, BinaryIO, TextIO

# a name holds no NUL byte: the sync process's jobs are NUL-separated fields
NAME_RE = re.compile(
    r"^(?P<time>\d+)\.M(?P<usec>\d+)P(?P<pid>\d+)_mp(?P<digest>[0-9a-f]{64})_(?P<occ>\d+)"
    r"\.(?P<host>[^/:,\0]+),S=(?P<size>\d+)(?::2,(?P<flags>[A-Za-z]*))?$")
TMP_RE = re.compile(r"^mailplan-(\d+)-(\d+)\.tmp$")
LEDGER = "mailplan-ledger"
COURIER_KEYWORDS = "courierimapkeywords"  # a folder's keyword updates for courier-imap
PENDING_RE = re.compile(r"^mailplan-pending-(\d+)$")
DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
FLAG_LINE_RE = re.compile(r"^([0-9a-f]{64}) ([0-9]+) ([A-Z]+)$")  # a line of ``G``'s "add"
#: in the command line of every agent (``python3 -c SOURCE``): its first docstring line
AGENT_MARK = b"Target-side Maildir writer: a self-contained"
#: seconds ``O`` waits for another agent still finishing in the Maildir (see ``open``)
WRITER_WAIT = 30.0
HEADER = struct.Struct(">cI")
MESSAGE = struct.Struct(">BBHd")  # the head of an M frame: flags, dir length, name length, mtime
RENAME_NOREPLACE = 1
AT_FDCWD = -100
F_SETPIPE_SZ = 1031
IN_BUFFER = 1 << 20
CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
#: a file with no name yet in a directory's filesystem (Linux ``O_TMPFILE``); 0 where none
ANONYMOUS = (os.O_WRONLY | os.O_TMPFILE | getattr(os, "O_CLOEXEC", 0)
             if hasattr(os, "O_TMPFILE") else 0)
DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


class AgentError(Exception):
    """A request the agent cannot carry out."""


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
JOB = struct.Struct(">II")  # a job for the sync process: JSON head and batch lengths


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
    os.unlink(src, dir_fd=None if src_dir == AT_FDCWD else src_dir)
    return True


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


#: the first two lines of dovecot's version 2 subscription file
_DOVECOT_V2 = ("V\t2", "")


def _subscription_file_lines(fd: int, path: str) -> list[str]:
    """The lines of the subscription file open on ``fd`` (closed here); one that is no
    regular file (a directory, a named pipe) is an error that says so: it is not
    replaced, and no IMAP server keeps subscriptions in it either."""
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise AgentError(f"the subscription file {path} is {kind}: no folder can be "
                         "subscribed there (move it away, then apply again)")
    with open(fd, encoding="utf-8", errors="surrogateescape") as fh:
        return fh.read().splitlines()


def _tab_escaped(text: str) -> str:
    """A name's level as dovecot's version 2 subscription file writes it (its
    ``str_append_tabescaped``)."""
    return (text.replace("\x01", "\x011").replace("\t", "\x01t").replace("\r", "\x01r")
            .replace("\n", "\x01n"))


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


def _is_agent(pid: int) -> bool:
    """Whether process ``pid`` runs this agent (its command line holds this source), not
    a process that reuses the id of one that ended; False where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return AGENT_MARK in fh.read()
    except OSError:
        return False


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


class Agent:
    """State of one agent process: the open Maildir and the queued, not yet durable files."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.root = None
        self.uid = self.gid = None
        self.seq = 0
        self.ended = 0  # E frames received: the numbering an S "through" refers to
        #: dir -> the identities present in that folder (its files, its ledger lines and
        #: what this agent queued there), each as ``key``'s bytes; built at first use
        self.present = {}
        #: dir -> ledger identities (``key``'s bytes) of folders not in ``present`` yet
        self.ledger = {}
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

    # -- files and ownership --------------------------------------------------------
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
                             f"{self.became[0]} gid {self.became[1]} (one writer per owner)")
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

    # -- requests -------------------------------------------------------------------
    def open(self, req: dict[str, Any]) -> dict[str, Any]:
        if self.queue or self.current:
            raise AgentError("open while messages are pending")
        self._unmark()
        self._close_dirs()
        # another Maildir may be on another filesystem; none once the switch to the
        # owner left /proc/PID/fd closed to the sync process (see ``_become``)
        self.anonymous = False if self.undumpable else None
        self.root = req["root"]
        self.uid, self.gid = req.get("uid"), req.get("gid")
        created = False
        parent = os.path.dirname(self.root.rstrip("/"))
        if not os.path.isdir(parent):
            raise AgentError(f"parent of the Maildir does not exist: {parent}")
        if req.get("owner") == "parent":  # the user's directory, as vadduser made it
            st = os.stat(parent)
            self.uid, self.gid = st.st_uid, st.st_gid
            self._become(parent)
        created = self._mkdir(self.root)
        for sub in ("cur", "new", "tmp"):
            self._mkdir(os.path.join(self.root, sub))
        if self.became is not None:  # say so now, not at the first message
            for path in (self.root, *(os.path.join(self.root, s) for s in ("cur", "new", "tmp"))):
                if os.path.isdir(path) and not os.access(path, os.W_OK | os.X_OK):
                    raise AgentError(
                        f"{path} is uid {os.stat(path).st_uid}'s, and the writer, running "
                        f"as the owner of {parent} (uid {self.uid}), may not write there "
                        "(nor could vpopmail deliver there): chown -R the Maildir to that "
                        "owner")
        waited = self._wait_for_writers(float(req.get("writer_wait", WRITER_WAIT)))
        recovered, ledger = self._recover_pending()
        # the ledger as recovery left it (read under the lock), or read now
        self.present = {}
        if ledger is None:
            ledger, self.ledger_size = self._read_ledger()
        self.ledger = ledger
        return {"created": created, "cleaned": self._clean_tmp(), "ledger": self.ledger_size,
                "waited": waited, "recovered": recovered}

    def _recover_pending(self) -> tuple[int, dict[str, set[bytes]] | None]:
        """Append the ledger lines a killed writer owed: of each batch it recorded as
        pending (see ``_sync_batch``), the messages visible in their folder whose
        identity the ledger lacks. Visible by identity, in new/ or cur/ under any flags:
        a mail reader may have moved or renamed one since (new/ to cur/, a flag set); a
        message no longer there at all (never renamed, or deleted since) adds nothing.
        Then its record goes. Return how many lines were added, and the ledger (with
        them; ``ledger_size`` is its size) when there was a record to read it for. The
        record of a process still running is left alone, as its tmp/ files are
        (``_clean_tmp``): it may be a writer still at work."""
        stale = []
        for entry in os.listdir(self.root):
            m = PENDING_RE.match(entry)
            if m and (int(m.group(1)) == self.pid or not pid_alive(int(m.group(1)))):
                stale.append(os.path.join(self.root, entry))
        if not stale:
            return 0, None
        lock = os.open(self.root, DIR_FLAGS)
        try:
            with contextlib.suppress(OSError):  # as in _sync_batch
                fcntl.flock(lock, fcntl.LOCK_EX)
            (ledger, self.ledger_size), lines = self._read_ledger(), []
            owed: dict[str, set[bytes]] = {}  # dir -> identities the ledger lacks
            for path in stale:
                for dirname, (digest, occ) in self._read_pending(path):
                    ident = key(digest, occ)
                    if ident not in ledger.get(dirname, ()):
                        owed.setdefault(dirname, set()).add(ident)
            names: list[list[str]] = []  # the owed ones still visible, under their names
            for dirname, idents in owed.items():
                for d, o, _s, name in self._scan_dir(dirname):
                    ident = key(d, o)
                    if ident in idents and ident not in ledger.get(dirname, ()):
                        ledger.setdefault(dirname, set()).add(ident)
                        lines.append(f"{dirname}\t{d}\t{o}\n")
                        names.append([dirname, name])
            if lines:
                self.ledger_size = self._append_ledger(lines)
                self._count_quota(names)  # it died before counting them too
                sync_filesystem(self.root, [os.path.join(self.root, LEDGER)])
            for path in stale:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        finally:
            os.close(lock)
        return len(lines), ledger

    def _read_pending(self, path: str) -> Iterator[tuple[str, tuple[str, int]]]:
        """The (dir, identity) entries of a pending record; a torn or foreign entry is
        skipped."""
        try:
            with open(path, "rb") as fh:
                fields = fh.read().decode("utf-8", "replace").split("\0")
        except FileNotFoundError:
            return
        for k in range(0, len(fields) - 2, 3):
            dirname, digest, occ = fields[k:k + 3]
            if DIGEST_RE.match(digest) and occ.isascii() and occ.isdigit():
                try:
                    self._folder_path(dirname)
                except AgentError:
                    continue
                yield dirname, (digest, int(occ))

    def _wait_for_writers(self, limit: float) -> float:
        """Wait, up to ``limit`` seconds, until no other running agent has files in this
        Maildir's tmp/ folders; return the seconds waited. The writer of a run that was
        killed or failed finishes the sync it was asked for and removes its other files
        as it exits (a second or two): waiting for it leaves no debris behind this run
        and a complete ledger to read. One that does not end (its connection hangs) is
        not waited for longer: the ledger check at each sync still keeps its messages
        from being imported twice."""
        started = time.monotonic()
        while self._other_writers() and time.monotonic() - started < limit:
            time.sleep(0.05)
        return round(time.monotonic() - started, 3)

    def _other_writers(self) -> bool:
        """Whether another running agent has files in tmp/ of the open Maildir."""
        return any(pid != self.pid and pid_alive(pid) and _is_agent(pid)
                   for _path, pid in self._tmp_files())

    def _tmp_files(self) -> Iterator[tuple[str, int]]:
        """Each agent file in the tmp/ folders of the open Maildir: its path, and the
        process id its name holds."""
        for dirname in self._folders():
            tmp = os.path.join(self._folder_path(dirname), "tmp")
            try:
                names = os.listdir(tmp)
            except FileNotFoundError:
                continue
            for name in names:
                m = TMP_RE.match(name)
                if m:
                    yield os.path.join(tmp, name), int(m.group(1))

    def _folders(self) -> Iterator[str]:
        yield ""
        for entry in sorted(os.listdir(self.root)):
            if entry.startswith(".") and entry not in (".", "..") and os.path.isdir(
                    os.path.join(self.root, entry, "cur")):
                yield entry

    def _clean_tmp(self) -> int:
        cleaned = 0
        for path, pid in list(self._tmp_files()):
            if pid != self.pid and not pid_alive(pid):
                os.unlink(path)
                cleaned += 1
        return cleaned

    def discard_unsynced(self) -> int:
        """Remove this agent's files still in tmp/ (queued for a sync that never came, or
        half-written when the input ended). Called once the sync process has stopped, so
        nothing renames them any more: a sender that drops the agent (closes its input,
        as mailplan does when the source changed under a read) leaves no debris. Only a
        killed agent does (named files and the marker only: anonymous files go with the
        process), and the next ``O`` of another agent removes them."""
        fds = [f for fds in self.job_fds for f in fds] + [q[6] for q in self.queue]
        if self.current is not None:
            fds.append(self.current[0])
            self.current = None
        for fd in fds:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.queue, self.job_fds, self.held, self.marker = [], [], 0, None
        if self.root is None:
            return 0
        removed = 0
        for path, pid in list(self._tmp_files()):
            if pid == self.pid:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                removed += 1
        return removed

    def _read_ledger(self) -> tuple[dict[str, set[bytes]], int]:
        """The ledger's identities by folder (``key``'s bytes), and its size then."""
        ledger: dict[str, set[bytes]] = {}
        fh = self._ledger_file()
        if fh is None:
            return ledger, 0
        with fh:
            size = os.fstat(fh.fileno()).st_size
            for dirname, digest, occ in _ledger_lines(fh):
                if DIGEST_RE.match(digest):  # no message has another (a hand edit)
                    ledger.setdefault(dirname, set()).add(key(digest, occ))
        return ledger, size

    def _ledger_file(self) -> TextIO | None:
        """The ledger, open for reading as mailplan's readers read it (None: there is
        none yet)."""
        try:
            return open(os.path.join(self.root, LEDGER), encoding="utf-8",  # noqa: SIM115
                        errors="replace", newline="\n")
        except FileNotFoundError:
            return None

    def _scan_dir(self, dirname: str) -> Iterator[tuple[str, int, str, str]]:
        """``(digest, occurrence, subdir, name)`` of each message file in the folder's
        new/ and cur/, read as the directory is (not listed whole: a folder of many
        messages costs memory only for what the caller keeps)."""
        base = self._folder_path(dirname)
        for sub in ("new", "cur"):
            try:
                entries = os.scandir(os.path.join(base, sub))
            except FileNotFoundError:
                continue
            with entries:
                for entry in entries:
                    m = NAME_RE.match(entry.name)
                    if m:
                        yield m.group("digest"), int(m.group("occ")), sub, entry.name

    def _present(self, dirname: str) -> set[bytes]:
        """The folder's identities as ``key``'s bytes: its ledger lines (taken from
        ``ledger``: one set per folder, not two) and its files, then what is queued."""
        known = self.present.get(dirname)
        if known is None:
            known = self.ledger.pop(dirname, set())
            known.update(key(d, o) for d, o, _s, _n in self._scan_dir(dirname))
            self.present[dirname] = known
        return known

    def folder(self, req: dict[str, Any]) -> None:
        path = self._folder_path(req["dir"])
        if not req["dir"]:
            return
        self._mkdir(path)
        for sub in ("cur", "new", "tmp"):
            self._mkdir(os.path.join(path, sub))
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

    def _mark(self) -> bool:
        """Make a marker ``tmp/mailplan-PID-SEQ.tmp`` (empty) the way anonymous files
        become visible, and so learn whether they work in this Maildir. While this
        writer holds files there, it has a marker: another writer's ``open`` waits for it
        as for named files in tmp/ (``_wait_for_writers``), and the next ``open`` removes
        it once this process is gone (``_clean_tmp``). The sync process removes it after
        the batch that took the writer's last file (see ``sync_later``)."""
        tmp_dir = self._dir_fd("", "tmp")
        self.seq += 1
        name = f"mailplan-{self.pid}-{self.seq}.tmp"
        try:
            # this process as /proc knows it: in a PID namespace whose /proc is another
            # namespace's, /proc/PID would be another process
            self.proc_fds = f"/proc/{os.readlink('/proc/self')}/fd/"
            fd = os.open(".", ANONYMOUS, 0o600, dir_fd=tmp_dir)
            try:
                self._own(fd)
                link_noreplace(f"{self.proc_fds}{fd}", tmp_dir, name)  # False: ours
            finally:
                os.close(fd)
        except OSError:  # no O_TMPFILE here (EOPNOTSUPP, EISDIR), no /proc (ENOENT), ...
            self.anonymous = False
            return False
        self.anonymous, self.marker = True, name
        return True

    def _unmark(self, marker: str | None = None) -> None:
        """Remove this writer's marker (or ``marker``, the one a job names, in the sync
        process): the writer holds no file in the Maildir any more."""
        name, self.marker = marker or self.marker, None
        if name is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=self._dir_fd("", "tmp"))

    def _close(self, fds: Iterable[int]) -> None:
        """Close anonymous files (those not linked vanish)."""
        for fd in fds:
            os.close(fd)
            self.held -= 1

    def _discard(self, dirname: str, source: str, fd: int) -> None:
        """Drop a file that will not become visible: close it when anonymous (the sync
        process's link is done by then), else unlink its name from tmp/."""
        if fd >= 0:
            self._close((fd,))
        elif not source.startswith("/"):
            os.unlink(source, dir_fd=self._dir_fd(dirname, "tmp"))

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

    def sync(self) -> dict[str, Any]:
        """Make everything queued durable now (after any batch the sync process holds)."""
        self.drain()
        batch, present = self._take()
        try:
            return self._sync_batch(batch, present)
        finally:
            self._close([q[6] for q in batch if q[6] >= 0])
            self._unmark()

    def sync_later(self, through: int | None = None) -> None:
        """Hand what is queued (of the first ``through`` messages, when given) to the sync
        process, which replies when it is durable."""
        if self.syncer is None:
            self._start_syncer()
        batch, present = self._take(through)
        self.job_fds.append([q[6] for q in batch if q[6] >= 0])
        unmark = None
        if not self.queue and self.current is None:  # the marker goes with this batch
            unmark, self.marker = self.marker, None
        head = json.dumps({"root": self.root, "uid": self.uid, "gid": self.gid,
                           "present": present, "ledger_size": self.ledger_size,
                           "unmark": unmark}).encode("utf-8")
        # the batch as NUL-separated fields (no name holds a NUL): a third of JSON's cost
        body = "\0".join([f"{d}\0{t}\0{s}\0{n}\0{i[0]}\0{i[1]}"
                          for _e, d, t, s, n, i, _fd in batch]).encode("utf-8")
        write_all(self.job_w, b"".join((JOB.pack(len(head), len(body)), head, body)))
        self.jobs_sent += 1

    def drain(self) -> None:
        """Wait until the sync process has replied to every batch handed to it."""
        self._collect(block=True)
        if not self.queue and self.current is None:
            self._unmark()

    def _collect(self, *, block: bool) -> None:
        """Take the sync process's acknowledgements (all, waiting for them; or those
        already here) and close the anonymous files of each acknowledged batch."""
        while self.jobs_done < self.jobs_sent:
            if not block:
                import select  # only when the budget of open files is reached
                poll = select.poll()  # not select(): the pipe's fd may be past 1024
                poll.register(self.ack_r, select.POLLIN)
                if not poll.poll(0):
                    return
            acks = os.read(self.ack_r, 4096)
            if not acks:
                raise AgentError("the sync process ended without finishing its batches")
            for _ack in acks:
                self._close(self.job_fds.pop(0))
            self.jobs_done += len(acks)
            if not block:
                return

    def stop(self, *, kill: bool = False) -> None:
        """End the sync process (drained, or killed) and reap it."""
        if self.job_w < 0:
            return
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # its end is expected now
        if self.syncer is not None and kill:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.syncer, signal.SIGKILL)
        os.close(self.job_w)
        os.close(self.ack_r)
        self.job_w = self.ack_r = -1
        if self.syncer is not None:
            os.waitpid(self.syncer, 0)
            self.syncer = None

    def _syncer_ended(self, _signum: int, _frame: Any) -> None:
        """SIGCHLD before ``stop``: the sync process died (killed, or after replying an
        error). The agent stops too, whatever it was waiting for (the next frame, most
        likely), so the sender gets an error instead of waiting for a reply forever."""
        if self.syncer is None:
            return
        pid, status = os.waitpid(self.syncer, os.WNOHANG)
        if pid == 0:
            return
        self.syncer = None
        how = (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
               else f"exit status {os.WEXITSTATUS(status)}")
        raise AgentError(f"the sync process ended unexpectedly ({how})")

    def reply(self, kind: bytes, obj: Any) -> None:
        send(self.out, kind, obj)

    def _take(self, through: int | None = None) -> tuple[list[Any], list[list[str]]]:
        """The queued messages and skipped identities among the first ``through`` (their
        identities are in ``present`` already)."""
        cut = _count_through(self.queue, through)
        batch, self.queue = self.queue[:cut], self.queue[cut:]
        cut = _count_through(self.skipped, through)
        skipped, self.skipped = self.skipped[:cut], self.skipped[cut:]
        return batch, [entry for _n, entry in skipped]

    def _start_syncer(self) -> None:
        """Fork the sync process. It shares nothing with this one but the open files:
        jobs (a JSON head and NUL-separated fields) come over one pipe, a byte per
        finished job goes back over another, replies go straight to stdout (this
        process replies only after ``drain``)."""
        job_r, self.job_w = os.pipe()
        with contextlib.suppress(OSError):  # room for whole jobs: no wait on a busy syncer
            fcntl.fcntl(self.job_w, F_SETPIPE_SZ, IN_BUFFER)
        self.ack_r, ack_w = os.pipe()
        self.out.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the sync process
            code = 1
            try:
                os.close(self.job_w)
                os.close(self.ack_r)
                # the agent's own: this process links them through /proc/AGENT/fd/N
                for fd in [q[6] for q in self.queue] + [f for fds in self.job_fds
                                                        for f in fds]:
                    if fd >= 0:
                        os.close(fd)
                if LIBC is not None and hasattr(LIBC, "prctl"):  # SIGKILL when the agent dies
                    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                if os.getppid() == parent:
                    code = self._sync_jobs(job_r, ack_w)
            finally:
                os._exit(code)
        os.close(job_r)
        os.close(ack_w)
        self.syncer = pid
        signal.signal(signal.SIGCHLD, self._syncer_ended)

    def _sync_jobs(self, job_r: int, ack_w: int) -> int:
        """The sync process's loop: each job synced, renamed, replied to and acknowledged,
        in order, until the agent closes the job pipe; an error is replied and ends it
        (and the agent with it: see ``_syncer_ended``)."""
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        jobs = open(job_r, "rb", buffering=IN_BUFFER)  # noqa: SIM115
        self.out = open(1, "wb", closefd=False)  # noqa: SIM115 - not the agent's buffer
        while True:
            try:
                head = read_exact(jobs, JOB.size)
                if head is None:
                    return 0
                head_len, body_len = JOB.unpack(head)
                job = json.loads(read_exact(jobs, head_len) or b"")
                fields = (read_exact(jobs, body_len) or b"").decode("utf-8").split("\0")
                batch = [(0, *fields[k:k + 4], (fields[k + 4], int(fields[k + 5])), -1)
                         for k in range(0, len(fields) - 5, 6)]
                if job["root"] != self.root:
                    self._close_dirs()
                self.root, self.uid, self.gid = job["root"], job["uid"], job["gid"]
                self.ledger_size = job["ledger_size"]
                result = self._sync_batch(batch, job["present"])
                if job["unmark"] is not None:
                    self._unmark(job["unmark"])
                self.reply(b"R", result)
            except Exception as exc:  # noqa: BLE001 - reported to the sender, then it ends
                fail(self.out, exc)
                return 1
            os.write(ack_w, b"a")

    def _sync_batch(self, batch: list[Any], present: list[list[str]]) -> dict[str, Any]:
        durable = []
        if batch:
            # what is about to become visible, durable with the files: should this
            # process die between its renames and its ledger lines, the next open
            # appends the lines (``_recover_pending``)
            pending = os.path.join(self.root, f"mailplan-pending-{self.pid}")
            fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                self._own(fd)
                write_all(fd, "\0".join([f"{q[1]}\0{q[5][0]}\0{q[5][1]}"
                                         for q in batch]).encode("utf-8"))
            finally:
                os.close(fd)
            sync_filesystem(self.root, (path for group in (
                [pending], (os.path.join(self._folder_path(q[1]), "tmp", q[2]) for q in batch))
                for path in group))
            lock = os.open(self.root, DIR_FLAGS)
            try:
                # one writer's renames and ledger at a time; where the filesystem has no
                # locks (ENOLCK on an NFS without lockd) the ledger check still runs
                with contextlib.suppress(OSError):
                    fcntl.flock(lock, fcntl.LOCK_EX)
                durable, size = self._rename_batch(batch, present)
            finally:
                os.close(lock)
            dirs = {os.path.join(self._folder_path(q[1]), q[3]) for q in batch} | {self.root}
            sync_filesystem(self.root, itertools.chain(
                sorted(dirs), self._courier_paths(), [os.path.join(self.root, LEDGER)]))
            self.courier_files, self.courier_shared = [], {}
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pending)
            return {"durable": durable, "present": present, "ledger": size}
        return {"durable": durable, "present": present}

    def _rename_batch(self, batch: list[Any], present: list[list[str]]
                      ) -> tuple[list[list[str]], int]:
        """Rename a durable batch into new/ or cur/ and append its ledger lines (under the
        Maildir's lock); return the ``[dir, name]`` of each message made visible, and the
        ledger's size after those lines."""
        durable = []
        batch = self._drop_foreign(batch, present)
        lines = []
        for _n, dirname, source, subdir, name, ident, _fd in batch:
            if "a" <= name[-1] <= "z":  # keyword letters come last among the flags
                self._courier_keywords(dirname, name)
            if source.startswith("/"):
                fds, _, number = source.rpartition("/")
                made = link_noreplace(number, self._dir_fd(dirname, subdir), name,
                                      self._fd_dir(fds))
            else:
                made = rename_noreplace_at(self._dir_fd(dirname, "tmp"), source,
                                           self._dir_fd(dirname, subdir), name)
            if made:
                durable.append([dirname, name])
            else:  # the name exists: an anonymous file goes when the agent closes it
                self._discard(dirname, source, -1)
                present.append([dirname, name])
            lines.append(f"{dirname}\t{ident[0]}\t{ident[1]}\n")
        size = self._append_ledger(lines)
        self._count_quota(durable)
        for dirname in {q[1] for q in batch}:
            self.ledger_after[(self.root, dirname)] = size
        return durable, size

    def _courier_keywords(self, dirname: str, name: str) -> None:
        """Write the IMAP keywords of message ``name`` for courier: a file named after
        the message (up to ``:``) in the folder's ``courierimapkeywords/``, a keyword per
        line, which courier-imap reads as a keyword update for that message.

        Courier reads such a file only for a message in its folder, so the file is
        written whole before its message is linked: it may be created under its own
        name. Messages of a batch with the same keywords share one file (hard links to
        it, as many as the filesystem allows): a link costs a third of a new file and no
        writeback (measured on ext4, 50,000 files: 0.85 s of CPU against 2.3 s, and 0.01
        s of sync against 0.56 s); courier never writes into these files, it only reads,
        renames and removes them. A writer killed before the link leaves a file for a
        message that never appears (courier removes it after 15 minutes; the next run
        writes it again for the message's new name). A file already there is kept. It
        is made durable with the batch."""
        flags = name.rpartition(":2,")[2]
        data = self.courier_texts.get((self.root, dirname, flags))
        if data is None:
            data = self._courier_text(dirname, flags)
        if not data:
            return
        kw_fd = self.dir_fds.get((dirname, COURIER_KEYWORDS))
        if kw_fd is None:  # never through a link: files go where the folder is
            path = os.path.join(self._folder_path(dirname), COURIER_KEYWORDS)
            self._mkdir(path)
            kw_fd = self.dir_fds[(dirname, COURIER_KEYWORDS)] = os.open(
                path, DIR_FLAGS | getattr(os, "O_NOFOLLOW", 0))
        base = name.partition(":")[0]
        shared = self.courier_shared.get((dirname, data))
        if shared is not None:
            try:
                os.link(shared, base, src_dir_fd=kw_fd, dst_dir_fd=kw_fd)
            except FileExistsError:
                return
            except OSError:  # gone (courier took it), or its links are at the limit
                pass
            else:
                self.courier_files.append((dirname, base))
                return
        try:
            fd = os.open(base, CREATE, 0o600, dir_fd=kw_fd)
        except FileExistsError:
            return
        try:
            write_all(fd, data)
            self._own(fd)
        finally:
            os.close(fd)
        self.courier_shared[(dirname, data)] = base
        self.courier_files.append((dirname, base))

    def _courier_paths(self) -> Iterator[str]:
        """The keyword directories and files the batch wrote (for fsync where there is
        no syncfs: otherwise never asked for)."""
        for dirname in sorted({d for d, _b in self.courier_files}):
            yield os.path.join(self._folder_path(dirname), COURIER_KEYWORDS)
        for dirname, base in self.courier_files:
            yield os.path.join(self._folder_path(dirname), COURIER_KEYWORDS, base)

    def _courier_text(self, dirname: str, flags: str) -> bytes:
        """The keyword file's text for a message with these flags in folder ``dirname``
        (empty when none of its keyword letters is named): a keyword per line, by the
        folder's dovecot-keywords (read once per flags string: a folder has a few);
        kept for the next message with the same flags once every letter is named."""
        names = _dovecot_keywords(self._folder_path(dirname))[1]
        letters = [c for c in flags if "a" <= c <= "z"]
        data = "".join(names[c] + "\n" for c in letters if c in names).encode(
            "utf-8", "surrogateescape")
        if all(c in names for c in letters):
            self.courier_texts[(self.root, dirname, flags)] = data
        return data

    def _count_quota(self, visible: list[list[str]]) -> None:
        """Add the messages just made visible to vpopmail's quota accounting, as a
        delivery does: one ``bytes count`` line appended to ``maildirsize`` (Maildir++),
        where the Maildir has one; ``.Trash`` is not counted (as ``quota``). The import's
        end recomputes the file anyway (``Z``); this keeps it right when a run is killed
        before that, so no later run has to."""
        path = os.path.join(self.root, "maildirsize")
        if not visible or not os.path.exists(path):  # no quota: no name is parsed
            return
        total = count = 0
        for dirname, name in visible:
            m = NAME_RE.match(name)
            if m is not None and dirname != ".Trash":
                total += int(m.group("size"))
                count += 1
        if not count:
            return
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            write_all(fd, f"{total} {count}\n".encode("ascii"))
        finally:
            os.close(fd)

    def _append_ledger(self, lines: list[str]) -> int:
        """Append ``lines`` to the ledger (the caller holds the Maildir's lock); return
        the ledger's size after them."""
        fd = os.open(os.path.join(self.root, LEDGER), os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                     0o600)
        try:
            self._own(fd)
            write_all(fd, "".join(lines).encode("utf-8"))
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def _drop_foreign(self, batch: list[Any], present: list[list[str]]) -> list[Any]:
        """The batch without the messages another writer made visible since this agent
        looked (an earlier run's writer, dropped, that was still finishing the sync it
        had been asked for). Every writer appends the ledger under the lock, so the
        ledger's size tells whether one did: usually it is the size this agent left or
        read, and nothing is scanned. Once one did, the folder's visible messages are
        listed, and this and every later batch for it is checked against that list."""
        try:
            size = os.stat(os.path.join(self.root, LEDGER)).st_size
        except FileNotFoundError:
            size = 0
        folders = {q[1] for q in batch}
        for dirname in folders:
            if size not in (self.ledger_size, self.ledger_after.get((self.root, dirname))):
                self.rescanned[(self.root, dirname)] = {
                    (d, o) for d, o, _s, _n in self._scan_dir(dirname)}
        theirs = {dirname: self.rescanned[(self.root, dirname)] for dirname in folders
                  if (self.root, dirname) in self.rescanned}
        if not theirs:
            return batch
        kept = []
        for q in batch:
            if q[1] in theirs and q[5] in theirs[q[1]]:
                self._discard(q[1], q[2], -1)
                present.append([q[1], q[4]])
            else:
                kept.append(q)
        return kept

    def scan(self, req: dict[str, Any]) -> dict[str, Any]:
        only = req.get("dir")
        dirs = [only] if only is not None else list(self._folders())
        folders = {d: [[dg, o] for dg, o, _s, _n in self._scan_dir(d)] for d in dirs}
        # the ledger as it is on disk now (the agent keeps only its identities, by folder)
        lines: set[tuple[str, str, int]] = set()
        fh = self._ledger_file()
        if fh is not None:
            with fh:
                lines = {x for x in _ledger_lines(fh) if only is None or x[0] == only}
        return {"folders": folders, "ledger": [list(x) for x in sorted(lines)]}

    def reply_known(self, req: dict[str, Any]) -> None:
        """Reply to ``L`` with ``known``: ``{"known": "DIGEST OCC\\n..."}``, written a
        thousand lines at a time (its length is known beforehand: every line is 64
        hex digits, a space, the occurrence's digits and ``\\n``, two bytes in JSON), so
        the text is never whole in memory here, nor its JSON."""
        if req.get("dir") is None:
            raise AgentError("known needs a folder")
        known = self._present(req["dir"])
        head, tail = b'{"known": "', b'"}'
        self.out.write(HEADER.pack(b"R", len(head) + len(tail)
                                   + 35 * len(known) + sum(map(len, known))) + head)
        lines = []
        for k in known:
            lines.append(b"%s %s\\n" % (k[:32].hex().encode(), k[32:]))
            if len(lines) == 1024:
                self.out.write(b"".join(lines))
                lines.clear()
        self.out.write(b"".join(lines) + tail)
        self.out.flush()

    def subscribe(self, req: dict[str, Any]) -> dict[str, Any]:
        added = 0
        for fname, lines in req["files"].items():
            if fname not in ("courierimapsubscribed", "subscriptions"):
                raise AgentError(f"not a subscription file: {fname!r}")
            path = os.path.join(self.root, fname)
            try:
                # not read through a symbolic link (as plan and verify read none): one is
                # replaced by a file of the lines written here, its target left alone;
                # nor waited on (a named pipe of that name would hold the open forever)
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                             | getattr(os, "O_NONBLOCK", 0))
            except FileNotFoundError:
                old = []
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                old = []
            else:
                old = _subscription_file_lines(fd, path)
            if fname == "subscriptions" and old[:2] == list(_DOVECOT_V2):
                # dovecot keeps its file in the form it finds: in its version 2 a name's
                # levels are separated by tabs (and escaped), and UNSUBSCRIBE removes
                # only a line of that form
                lines = ["\t".join(_tab_escaped(level) for level in ln.split("."))
                         for ln in lines]
            new = [ln for ln in lines if ln not in old]
            if new:
                self._replace(path, "".join(x + "\n" for x in old + new))
                added += len(new)
        return {"added": added}

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

    def keywords(self, req: dict[str, Any]) -> dict[str, Any]:
        """``K``: the letters IMAP keywords have in folder ``dir``, by dovecot's
        ``dovecot-keywords`` (``N name`` lines; keyword N is the letter ``a`` + N among a
        file name's flags), adding those missing (26 at most; its lines are never
        dropped or renumbered). A keyword that finds no letter is left out."""
        if self.root is None:
            raise AgentError("keywords before open")
        folder = self._folder_path(req["dir"])
        lines, letters = _dovecot_keywords(folder)
        slots = {}
        for letter, name in letters.items():
            slots.setdefault(name, ord(letter) - 97)
        added = []
        for name in req["keywords"]:
            # a number is taken by its first line, whatever keyword it names
            free = [i for i in range(26) if chr(97 + i) not in letters]
            if name not in slots and free:
                letters[chr(97 + free[0])] = name
                slots[name] = free[0]
                added.append(f"{free[0]} {name}")
        if added:
            self._replace(os.path.join(folder, "dovecot-keywords"),
                          "".join(x + "\n" for x in lines + added))
        return {"letters": {k: chr(97 + slots[k]) for k in req["keywords"] if k in slots}}

    def add_flags(self, req: dict[str, Any]) -> dict[str, Any]:
        """``G``: add flags to messages of folder ``dir`` by renaming their files (the
        module docstring says how); what is asked is held by identity (``key``), the
        folder is read once, and the renames wait until it is read."""
        if self.root is None:
            raise AgentError("flags before open")
        wanted = {}
        for line in req["add"].split("\n"):
            if not line:
                continue
            m = FLAG_LINE_RE.match(line)
            if m is None:
                raise AgentError(f"bad flags line {line[:100]!r}")
            wanted[key(m.group(1), int(m.group(2)))] = m.group(3)
        base = self._folder_path(req["dir"])
        found = set()
        moves = []  # (subdir, name, new name in cur/)
        for digest, occ, sub, name in self._scan_dir(req["dir"]):
            k = key(digest, occ)
            add = wanted.get(k)
            if add is None:
                continue
            found.add(k)
            stem, info, old = name.partition(":2,")
            merged = "".join(sorted(set(old) | set(add)))
            if sub == "cur" and info and merged == old:
                continue  # it has them all already
            moves.append((sub, name, f"{stem}:2,{merged}"))
        renamed = taken = 0
        gone = len(wanted) - len(found)
        for sub, name, new in moves:
            try:
                if rename_noreplace(os.path.join(base, sub, name),
                                    os.path.join(base, "cur", new)):
                    renamed += 1
                else:
                    taken += 1
            except FileNotFoundError:  # moved or deleted since the folder was read
                gone += 1
        if renamed:  # the new names are durable before the caller records them
            fsync_each(os.path.join(base, sub) for sub in ("cur", "new"))
        return {"renamed": renamed, "gone": gone, "taken": taken}

    def quota(self) -> dict[str, Any]:
        path = os.path.join(self.root, "maildirsize")
        try:
            with open(path, encoding="ascii") as fh:
                definition = fh.readline().rstrip("\n")
        except FileNotFoundError:
            return {"maildirsize": False}
        total = count = 0
        for dirname in self._folders():
            if dirname == ".Trash":
                continue
            for sub in ("new", "cur"):
                try:
                    names = os.listdir(os.path.join(self._folder_path(dirname), sub))
                except FileNotFoundError:
                    continue
                for name in names:
                    m = re.search(r",S=(\d+)", name)
                    if m:
                        size = int(m.group(1))
                    else:
                        size = os.stat(os.path.join(self._folder_path(dirname), sub, name)).st_size
                    total += size
                    count += 1
        self._replace(path, f"{definition}\n{total} {count}\n")
        return {"maildirsize": True, "bytes": total, "messages": count}


def _dovecot_keywords(folder: str) -> tuple[list[str], dict[str, str]]:
    """A folder's ``dovecot-keywords``: its lines, and ``{letter: keyword}`` (``N name``
    lines, keyword N is the letter ``a`` + N; another line is skipped, the first of two
    lines for one number counts), the rule of mailplan's ``bookkeeping.keyword_letters``,
    which verify reads the file with (this program imports nothing from mailplan)."""
    try:
        with open(os.path.join(folder, "dovecot-keywords"), encoding="utf-8",
                  errors="surrogateescape") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        lines = []
    letters: dict[str, str] = {}
    for line in lines:
        number, _, name = line.partition(" ")
        if number.isascii() and number.isdigit() and int(number) < 26 and name:
            letters.setdefault(chr(97 + int(number)), name)
    return lines, letters


def _ledger_lines(fh: TextIO) -> Iterator[tuple[str, str, int]]:
    """Each ledger line of ``fh`` as ``(dir, digest, occurrence)``, by the rule of
    mailplan's own ledger readers: lines end at \\n only, three fields, an ASCII-numeric
    occurrence; another line (a hand edit) is skipped."""
    for line in fh:
        parts = line.rstrip("\n").split("\t")
        if len(parts) == 3 and parts[2].isascii() and parts[2].isdigit():
            yield parts[0], parts[1], int(parts[2])


def key(digest: str, occ: int) -> bytes:
    """An identity as the agent holds it: the digest's 32 bytes, then the occurrence in
    decimal (72 bytes of memory, against 190 for a tuple of the hex text and an int)."""
    return bytes.fromhex(digest) + b"%d" % occ


def _count_through(entries: list[Any], through: int | None) -> int:
    """How many of ``entries`` (in E order, each starting with its E number) are among
    the first ``through`` messages (all of them when ``through`` is None)."""
    if through is None:
        return len(entries)
    n = 0
    while n < len(entries) and entries[n][0] <= through:
        n += 1
    return n


def read_exact(stream: BinaryIO, n: int) -> bytes | None:
    data = stream.read(n)
    if len(data) != n:
        if not data:
            return None
        raise AgentError("input ended inside a frame")
    return data


def send(out: BinaryIO, kind: bytes, obj: Any) -> None:
    payload = json.dumps(obj).encode("utf-8") if kind == b"R" else obj.encode("utf-8")
    out.write(HEADER.pack(kind, len(payload)) + payload)
    out.flush()


def fail(out: BinaryIO, exc: BaseException) -> None:
    """Report ``exc`` as an ``X`` reply and on stderr (the agent then exits 1)."""
    with contextlib.suppress(OSError):
        send(out, b"X", f"{type(exc).__name__}: {exc}")
    with contextlib.suppress(OSError):  # the connection may be gone: the clean-up goes on
        sys.stderr.write(f"mailplan agent: {exc}\n")
        sys.stderr.flush()


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` (a pipe or a disk may take less per call)."""
    n = os.write(fd, data)
    if n < len(data):  # rare: no memoryview for the common case
        view = memoryview(data)[n:]
        while view:
            view = view[os.write(fd, view):]


def serve(inp: BinaryIO, out: BinaryIO) -> int:
    agent = Agent(out)
    try:
        code = _serve(agent, inp)
    except (AgentError, OSError, ValueError, KeyError) as exc:
        with contextlib.suppress(AgentError, OSError):
            agent.drain()  # the replies the sync process owes go out before the error
        agent.stop(kill=True)
        fail(out, exc)  # the sender learns of it now, not after the clean-up
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
