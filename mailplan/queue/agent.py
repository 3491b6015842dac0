"""The program mailplan runs on the target to read or change a qmail queue in one go.

It is not imported by mailplan: its source is sent over one SSH channel and run by the
target's ``python3`` (stdlib only, Python 3.7 or newer), so reading a whole queue costs
one round trip instead of one per file. The bootstrap in :mod:`mailplan.queue.remote`
reads this source from stdin; whatever stdin holds after it is this program's input.

Modes (``sys.argv[2:]``):

``dump QUEUE STATUS [MESS [ID]]``
    Walk QUEUE (itself followed if it is a symlink) without following symlinks below it,
    depth first in name order but todo, intd and mess first (see :data:`FIRST`),
    and print, for every directory, file and named pipe,
    a record ``E type mode uid gid inode nlink size mtime ctime owner group pathlen datalen
    atime`` followed by the relative path and the data bytes (owner and group are
    percent-escaped, see :func:`_word`). Data is the whole file for the small
    envelope files (info, local, remote, todo, intd); for mess files MESS says: ``headers``
    (the default) the header block, ``full`` the whole message, ``none`` nothing,
    ``fields=NAME,...`` the first header of each NAME, unfolded and capped, as a header
    block of its own (:mod:`mailplan.queue.headerfields`, run before this program). With ID
    only that message's files are listed. The
    first record ``H`` says whether QUEUE and its parent exist and passes STATUS (the exit
    code of the qmail-send status command the caller ran) through; ``U``/``G`` records map
    the qmail user and group names to ids; the ``M`` record says whether a process holds
    qmail-send's lock ``lock/sendmutex`` (:func:`_mutex_record`), read from /proc/locks: the
    lock is neither taken nor tried. What it cannot stat, list or read (other
    than an object gone meanwhile) is named on stderr and makes it exit 1.

``cat QUEUE STATUS PATH INODE``
    Print the mess file PATH (relative to QUEUE) whole, a piece at a time, if it is still
    the regular file of inode INODE (exit 5 if not): ``show --full``.

``apply QUEUE STATUS``
    Unless STATUS is ``1`` (qmail-send stopped) or ``-`` (no status command was run),
    change nothing: say so on stderr and exit 3; so too when another process holds
    qmail-send's lock ``lock/sendmutex`` (flock or lockf), which it takes otherwise and
    holds until it ends, so that no qmail-send starts meanwhile. Else read actions from
    stdin, one JSON
    object a line (remove, rmdir, rename, chown, chmod, mkdir,
    mkfifo, mkfile; paths relative to QUEUE), ended by ``{"end": COUNT}``, and carry
    them out in order as they arrive, printing one JSON line per action with its
    outcome: a delete of a hundred thousand messages is never held whole on either
    side. An action of a ``batch`` is carried out once the whole batch has arrived
    (the line after it is another's, or the end mark), so input cut off (mailplan
    stopped, the connection lost) leaves no message half removed; that input, or an
    end mark with another count, is named on stderr and makes it exit 4 (the actions
    before it were carried out). Paths that leave QUEUE are refused, and no
    symlink below QUEUE is followed: directories are walked with ``dir_fd`` and
    ``O_NOFOLLOW``, owners and modes are changed through an fd (``fchown``/``fchmod``)
    of the directory, file or named pipe itself, and an action carrying ``ino`` (the inode the
    caller's dump saw) is refused when the object there has another. Actions
    with the same ``batch`` stand or fall together: after one of them fails, the rest
    of its batch are skipped (reported as failed); a ``remove`` whose file is already
    gone does not count as failing there. (``group`` is the Unix group of chown,
    mkdir, mkfifo and mkfile, never a batch: the two once shared the key, and one
    failed chown to group qmail skipped every later action naming that group.)
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import stat
import sys
import time
import typing
from urllib.parse import quote

if "first_fields" not in globals():  # the host runs headerfields.py first, in this namespace
    from mailplan.queue.headerfields import fields_block, first_fields
if "apply" not in globals():  # and actions.py (apply mode) then
    from mailplan.queue.actions import apply

ENVELOPE_AREAS = ("info", "local", "remote", "todo", "intd")
#: The areas walked first, in this order (then the others by name): qmail-send works on
#: while the walk goes on, and each area is read before those a message moves to next.
#: A message it preprocesses meanwhile (info/ and local/remote/ written, then todo/ and
#: intd/ removed) is seen in todo/ or in info/, never in neither (with recipients: "no
#: info file"); one it finishes (local/remote/, info/, then mess/ removed) is seen with
#: its mess file or not at all, never as an info/ file without it (an orphan).
FIRST = ("todo", "intd", "mess")
HEADER_LIMIT = 65536
USERS = ("qmailq", "qmails", "qmailr", "qmaild", "qmaill", "qmailp", "alias")
GROUPS = ("qmail", "nofiles")

_names: dict = {}
_T = typing.TypeVar("_T")


def _owner(uid: int) -> str:
    key = ("u", uid)
    if key not in _names:
        try:
            _names[key] = pwd.getpwuid(uid).pw_name
        except KeyError:
            _names[key] = f"#{uid}"
    return _names[key]


def _group(gid: int) -> str:
    key = ("g", gid)
    if key not in _names:
        try:
            _names[key] = grp.getgrgid(gid).gr_name
        except KeyError:
            _names[key] = f"#{gid}"
    return _names[key]


def _word(name: str) -> str:
    """A user or group name as one ASCII word of a record: ``%XX`` for each byte of its
    UTF-8 other than letters, digits, ``_.-~`` and ``#`` (the parser undoes it). The
    group of a mess, todo and intd file is the one of whoever queued the message, and on
    a host joined to a directory that can be ``domain users`` or ``Domänen-Benutzer``."""
    return quote(name.encode("utf-8", "surrogateescape"), safe="#")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "d"
    if stat.S_ISREG(mode):
        return "f"
    if stat.S_ISFIFO(mode):
        return "p"
    if stat.S_ISLNK(mode):
        return "l"
    return "o"


def _read(path: str, area: str, mess: str) -> bytes:
    """The data the dump carries for one file; OSError when it cannot be read (the
    caller tells a file gone meanwhile from one it may not read)."""
    if area == "mess" and mess == "none":
        return b""
    with os.fdopen(_open_quietly(path), "rb") as fh:
        if area == "mess" and mess != "full":
            block = fh.read(HEADER_LIMIT)
            end = block.find(b"\n\n")
            block = block if end < 0 else block[:end + 1]
            if mess.startswith("fields="):
                return fields_block(first_fields(block, set(mess[7:].split(","))))
            return block
        # mess with MESS=full, and envelope files always: whole (a mailing list's
        # remote/ file holds every recipient; a cut one would look malformed)
        return fh.read()


def _open_quietly(path: str) -> int:
    """Open a queue file for reading without moving its access time where the kernel
    lets us (O_NOATIME: the file's owner, or root): qmail-send and qmail-clean judge a
    half-written message and a pid file by their atime, so a read by mailplan would
    put their clean-up off for 36 hours."""
    flags = os.O_RDONLY | os.O_NOFOLLOW
    noatime = getattr(os, "O_NOATIME", 0)
    if noatime:
        try:
            return os.open(path, flags | noatime)
        except PermissionError:  # EPERM: neither the owner nor root
            pass
    return os.open(path, flags)


def _record(out: typing.BinaryIO, rel: str, st: os.stat_result, data: bytes) -> None:
    path = rel.encode("utf-8", "surrogateescape")
    fields = (_kind(st.st_mode), format(stat.S_IMODE(st.st_mode), "o"), st.st_uid, st.st_gid,
              st.st_ino, st.st_nlink, st.st_size, int(st.st_mtime), st.st_ctime_ns,
              _word(_owner(st.st_uid)),
              _word(_group(st.st_gid)), len(path), len(data), int(st.st_atime))
    head = "E " + " ".join(str(f) for f in fields) + "\n"
    out.write(head.encode("ascii"))
    out.write(path)
    out.write(data)


#: The kinds of /proc/locks entries that are locks (flock, fcntl/lockf, open file
#: description locks); leases and delegations are not.
LOCK_KINDS = ("FLOCK", "POSIX", "OFDLCK")


def _mutex_record(queue: str) -> str:
    """(Not named ``_sendmutex``: that is apply's, in actions.py, run in this namespace.)
    The ``M`` record: whether a process holds qmail-send's lock ``lock/sendmutex``
    (qmail-send holds it, with flock or lockf, for as long as it runs), from
    /proc/locks, whose entries name the locked file by device and inode. The lock is
    not tried: a try-lock, for as short as it is held, makes a qmail-send starting
    that moment exit ("already running").

    ``M held PIDS`` (the pids /proc/locks gives, comma-separated; ``-`` if none is
    shown), ``M free -``, ``M absent -`` (no such regular file: qmail-send cannot run)
    or ``M unknown -`` (no /proc/locks to read). /proc/locks lists the locks of the
    processes this /proc can see: not those of another pid namespace's parent."""
    try:
        st = os.lstat(os.path.join(queue, "lock", "sendmutex"))
    except OSError:
        return "M absent -\n"
    if not stat.S_ISREG(st.st_mode):  # a link or a pipe: qmail-send cannot lock it
        return "M absent -\n"
    try:
        with open("/proc/locks", "rb") as fh:
            table = fh.read().decode("ascii", "replace")
    except OSError:
        return "M unknown -\n"
    # the kernel writes the device as %02x:%02x (major, minor) and the inode in decimal
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids: list = []
    held = False
    for line in table.splitlines():
        words = line.split()
        # "N: KIND ADVISORY TYPE PID DEV:INO START END"; "N: -> ..." only waits for it
        if len(words) < 6 or words[1] not in LOCK_KINDS or words[5] != wanted:
            continue
        held = True
        if words[4].isdigit() and words[4] != "0" and words[4] not in pids:
            pids.append(words[4])
    if not held:
        return "M free -\n"
    return "M held " + (",".join(pids) or "-") + "\n"


def _header(out: typing.BinaryIO, queue: str, status: str) -> bool:
    """Write the ``H`` record and the ``U``/``G`` records of the qmail users and groups
    the host has; whether QUEUE is a directory."""
    exists = os.path.isdir(queue)
    parent = os.path.isdir(os.path.dirname(queue.rstrip("/")) or "/")
    out.write(f"H 1 {int(exists)} {int(parent)} {status} {int(time.time())}\n".encode())
    for name in USERS:
        with contextlib.suppress(KeyError):
            out.write(f"U {name} {pwd.getpwnam(name).pw_uid}\n".encode())
    for name in GROUPS:
        with contextlib.suppress(KeyError):
            out.write(f"G {name} {grp.getgrnam(name).gr_gid}\n".encode())
    if exists:
        out.write(_mutex_record(queue).encode("ascii"))
    return exists


class _Walk:
    """One dump's walk of QUEUE, depth first in name order (but :data:`FIRST`), writing
    an ``E`` record for each object it sees.

    What could not be seen makes the dump fail (exit 1): an area the reader may not
    list would otherwise pass for an empty one, and a preprocessed message whose
    info/ it cannot see for a half-written one that repair removes. Only an object
    gone between listing and reading (qmail at work) is left out quietly. ``unseen``
    collects the lines that name the rest.
    """

    def __init__(self, out: typing.BinaryIO, queue: str, mess: str,
                 only: str | None) -> None:
        self.out = out
        self.queue = queue
        self.mess = mess
        self.only = only
        self.unseen: list[str] = []

    def run(self) -> None:
        """Walk the whole tree below QUEUE (QUEUE included)."""
        stack = [""]
        while stack:
            stack += self._visit(stack.pop())

    def _try(self, verb: str, path: str, call: typing.Callable[[str], _T]) -> _T | None:
        """``call(path)``, or None when it fails: quietly for an object gone meanwhile,
        else named in ``unseen`` as ``cannot VERB PATH``."""
        try:
            return call(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.unseen.append(f"cannot {verb} {path}: {exc.strerror}")
            return None

    def _visit(self, rel: str) -> list[str]:
        """Record the object at ``rel`` (relative to QUEUE, ``""`` for QUEUE itself);
        the paths of its children, last first (they go on the stack)."""
        full_path = os.path.join(self.queue, rel) if rel else self.queue
        # QUEUE itself may be a symlink (/var/qmail/queue -> /data/queue): followed
        # once, as qmail does; nothing below it is.
        st = self._try("stat", full_path, os.lstat if rel else os.stat)
        if st is None:
            return []
        is_dir = stat.S_ISDIR(st.st_mode)
        wanted = self.only is None or rel.rsplit("/", 1)[-1] == self.only
        data = b""
        area = rel.split("/", 1)[0]
        if wanted and stat.S_ISREG(st.st_mode) and area in ENVELOPE_AREAS + ("mess",):
            data = self._try("read", full_path, lambda path: _read(path, area, self.mess))
            if data is None:
                return []
        if wanted or is_dir:
            _record(self.out, rel, st, data)
        names = self._try("list", full_path, os.listdir) if is_dir else None
        order = sorted(names or (), key=lambda name: (
            FIRST.index(name) if not rel and name in FIRST else len(FIRST), name))
        return [os.path.join(rel, child) if rel else child for child in reversed(order)]


def _tell_unseen(unseen: list[str]) -> None:
    """Name on stderr what the walk could not see: the first 20, then how many more."""
    for line in unseen[:20]:
        sys.stderr.write(line + "\n")
    if len(unseen) > 20:
        sys.stderr.write(f"... and {len(unseen) - 20} more\n")


def dump(queue: str, status: str, mess: str = "headers", only: str | None = None) -> int:
    """The ``dump`` mode (see the module docstring): its exit code."""
    out = sys.stdout.buffer
    if not _header(out, queue, status):
        return 0
    walk = _Walk(out, queue, mess, only)
    walk.run()
    out.flush()
    _tell_unseen(walk.unseen)
    return 1 if walk.unseen else 0


def cat(queue: str, rel: str, inode: int) -> int:
    """The ``cat`` mode: the whole of the mess file ``rel`` on stdout, a piece at a time
    (``show --full``: a message of any size is held whole on neither side), opened as the
    dump opens it; exit 5 when it is no longer the regular file of inode ``inode`` the
    dump saw, 1 when it cannot be read, 2 for a path that is no mess file."""
    parts = rel.split("/")
    if len(parts) != 3 or parts[0] != "mess" or not all(p.isdigit() for p in parts[1:]):
        sys.stderr.write(f"refusing to show {rel!r}: not a mess file\n")
        return 2
    try:
        fh = os.fdopen(_open_quietly(os.path.join(queue, rel)), "rb")
    except OSError as exc:
        sys.stderr.write(f"cannot read {rel}: {exc.strerror}\n")
        return 1
    with fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_ino != inode:
            sys.stderr.write(f"{rel} is no longer the message read a moment ago\n")
            return 5
        out = sys.stdout.buffer
        while True:
            chunk = fh.read(1 << 16)
            if not chunk:
                break
            out.write(chunk)
        out.flush()
    return 0


def main(argv: list[str]) -> int:
    mode = argv[0]
    if mode == "cat":
        return cat(argv[1], argv[3], int(argv[4]))
    if mode == "dump":
        mess = argv[3] if len(argv) > 3 else "headers"
        only = argv[4] if len(argv) > 4 and argv[4] else None
        return dump(argv[1], argv[2], mess, only)
    if mode == "apply":
        return apply(argv[1], argv[2])
    sys.stderr.write(f"unknown mode {mode!r}\n")
    return 2


sys.exit(main(sys.argv[2:]))
