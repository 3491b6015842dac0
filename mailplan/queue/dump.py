"""The queue as read from a host: every directory, file and named pipe with its metadata.

:func:`parse_stream` is the pure parser of what the agent's ``dump`` mode prints (see
:mod:`mailplan.queue.agent` for the record layout), a record at a time as it is read;
:func:`read_queue` is the fact: one agent run over one channel, its output parsed while
it arrives, so that mailplan never holds the output and the dump made of it at once.
Nothing here interprets qmail's layout; :mod:`mailplan.queue.model` and
:mod:`mailplan.queue.check` do that.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Protocol, TypeVar
from urllib.parse import unquote

from mailplan.connectors.base import Connector, Process
from mailplan.errors import HostError, MailplanError
from mailplan.queue.layout import DIRS
from mailplan.queue.remote import agent_failed, run_agent

DEFAULT_QUEUE = "/var/qmail/queue"
T = TypeVar("T")
#: The directories every qmail queue has (a directory with none of them is not a queue).
QUEUE_DIRS = tuple(name for name in DIRS if name)
#: what the agent's ``M`` record says of lock/sendmutex
MUTEX_STATES = ("held", "free", "absent", "unknown")


class DumpFormatError(MailplanError):
    """The agent's output does not follow the dump format (a bug or a mangled channel)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One object under the queue directory, as lstat saw it."""

    path: str  # relative to the queue directory; "" is the queue directory itself
    kind: str  # d directory, f regular file, p named pipe (fifo), l symlink, o other
    mode: int  # permission bits only
    uid: int
    gid: int
    inode: int
    nlink: int
    size: int
    mtime: int
    ctime: int  # in nanoseconds: changes with every write, rename or chmod
    owner: str  # user name, or "#uid" when the host has no name for it
    group: str
    data: bytes = b""  # envelope files whole; mess files: what ``mess`` of read_queue asked
    atime: int = 0  # what qmail-send and qmail-clean judge a leftover's age by

    @property
    def touched(self) -> int:
        """When the file was last written or read (the later of mtime and atime): a
        leftover is stale only once both are old, so mailplan never removes one that
        qmail itself would still keep (it looks at atime) nor one still being written
        on a filesystem mounted noatime."""
        return max(self.mtime, self.atime)

    @property
    def parts(self) -> tuple[str, ...]:
        """The path split into its components."""
        return tuple(self.path.split("/")) if self.path else ()


@dataclass
class Dump:
    """Everything one read of a queue returned."""

    queue_dir: str
    exists: bool
    parent_exists: bool
    status: int | None  # exit code of the qmail-send status command, None if not run
    now: int  # the host's clock when it was read
    users: dict[str, int] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)
    entries: dict[str, Entry] = field(default_factory=dict)
    #: whether a process holds qmail-send's lock lock/sendmutex, read from /proc/locks
    #: (never tried): held, free, absent (no such file), unknown (no /proc/locks), or ""
    #: (not said: no queue)
    sendmutex: str = ""
    #: the pids /proc/locks names as its holders (none shown for some locks)
    sendmutex_pids: tuple[int, ...] = ()


class Source(Protocol):
    """Where a dump is read from: a running agent's stdout
    (:class:`~mailplan.connectors.base.Process`) or bytes in a :class:`io.BytesIO`."""

    def readline(self) -> bytes: ...

    def read(self, size: int) -> bytes: ...


class _Reader:
    """The lines and byte runs of a dump, read from a :class:`Source` as they come."""

    def __init__(self, source: Source) -> None:
        self._source = source
        self.pos = 0  # bytes read so far

    def line(self) -> list[str] | None:
        """The next line's words; None at the end of the dump."""
        raw = self._source.readline()
        if not raw:
            return None
        at, self.pos = self.pos, self.pos + len(raw)
        if not raw.endswith(b"\n"):
            raise DumpFormatError(f"queue dump truncated at byte {at}")
        return raw[:-1].decode("utf-8", "surrogateescape").split(" ")

    def exact(self, size: int) -> bytes:
        """The next ``size`` bytes (a record's path and data)."""
        chunks: list[bytes] = []
        left = size
        while left:
            chunk = self._source.read(min(left, 1 << 20))
            if not chunk:
                raise DumpFormatError(f"queue dump truncated in the record at byte {self.pos}")
            chunks.append(chunk)
            left -= len(chunk)
        self.pos += size
        return b"".join(chunks)


def _name(word: str) -> str:
    """A user or group name as the agent escaped it (``domain%20users``)."""
    return unquote(word, errors="surrogateescape")


def _shared(known: dict[object, object], value: T) -> T:
    """``value``, or the equal one ``known`` holds already: owner, group, mode, uid and
    gid are alike in most of a queue's files, and one object serves them all (a
    queue of a hundred thousand messages has some 300,000 files)."""
    return known.setdefault(value, value)  # type: ignore[return-value]


def parse_dump(data: bytes, queue_dir: str) -> Dump:
    """Parse the agent's dump output; a malformed one raises :class:`DumpFormatError`."""
    return parse_stream(io.BytesIO(data), queue_dir)


def parse_stream(source: Source, queue_dir: str) -> Dump:
    """Parse the agent's dump as it is read from ``source``, a record at a time (the
    output is never held whole); a malformed one raises :class:`DumpFormatError`."""
    return _parse_checked(_Reader(source), queue_dir)


def _parse_checked(reader: _Reader, queue_dir: str) -> Dump:
    try:
        return _parse(reader, queue_dir)
    except ValueError as exc:  # a number field that is not one
        raise DumpFormatError(f"queue dump has a malformed number ({exc})") from None


def _parse(reader: _Reader, queue_dir: str) -> Dump:
    fields = reader.line()
    if fields is None:
        raise DumpFormatError("queue dump truncated at byte 0")
    if fields[:2] != ["H", "1"] or len(fields) != 6:
        raise DumpFormatError(f"not a queue dump (header {' '.join(fields)[:80]!r})")
    status = None if fields[4] == "-" else int(fields[4])
    dump = Dump(queue_dir, fields[2] == "1", fields[3] == "1", status, int(fields[5]))
    known: dict[object, object] = {}
    while (fields := reader.line()) is not None:
        if fields[0] == "U" and len(fields) == 3:
            dump.users[fields[1]] = int(fields[2])
        elif fields[0] == "G" and len(fields) == 3:
            dump.groups[fields[1]] = int(fields[2])
        elif fields[0] == "M" and len(fields) == 3 and fields[1] in MUTEX_STATES:
            dump.sendmutex = fields[1]
            dump.sendmutex_pids = tuple(int(p) for p in fields[2].split(",") if p != "-")
        elif fields[0] == "E" and len(fields) == 15:
            path_len, data_len = int(fields[12]), int(fields[13])
            if min(path_len, data_len) < 0:
                raise DumpFormatError(f"queue dump truncated in the record at byte "
                                      f"{reader.pos}")
            path = reader.exact(path_len).decode("utf-8", "surrogateescape")
            body = reader.exact(data_len)
            dump.entries[path] = Entry(
                path=path, kind=fields[1], mode=_shared(known, int(fields[2], 8)),
                uid=_shared(known, int(fields[3])), gid=_shared(known, int(fields[4])),
                inode=int(fields[5]), nlink=int(fields[6]), size=int(fields[7]),
                mtime=int(fields[8]), ctime=int(fields[9]),
                owner=_shared(known, _name(fields[10])),
                group=_shared(known, _name(fields[11])), data=body, atime=int(fields[14]))
        else:
            raise DumpFormatError(f"unknown record {' '.join(fields)[:80]!r} in queue dump")
    dump.entries = _in_name_order(dump.entries)
    return dump


def _in_name_order(entries: dict[str, Entry]) -> dict[str, Entry]:
    """``entries`` as a walk of the queue in name order would give them. The agent walks
    todo/, intd/ and mess/ first (qmail-send moves messages on meanwhile: see its
    ``FIRST``), each area in name order; put back in name order, everything made of a
    dump (the order of check's problems, say) is as it always was."""
    areas: dict[str, list[str]] = {}
    for path in entries:
        areas.setdefault(path.partition("/")[0], []).append(path)
    return {path: entries[path] for area in sorted(areas) for path in areas[area]}


class _Streamed:
    """The dump parsed from the agent's stdout while it runs (``read`` of
    :meth:`~mailplan.connectors.base.Connector.run`)."""

    def __init__(self, queue_dir: str) -> None:
        self.queue_dir = queue_dir
        self.dump: Dump | None = None
        self.error: DumpFormatError | None = None
        self.empty = False  # the agent printed nothing

    def __call__(self, proc: Process) -> None:
        reader = _Reader(proc)
        try:
            self.dump = _parse_checked(reader, self.queue_dir)
        except DumpFormatError as exc:
            self.error, self.empty = exc, reader.pos == 0
            # the rest is read and dropped: its exit code and stderr say what went wrong
            while proc.read(1 << 16):
                pass


#: ``given_by`` of :func:`read_queue`: the queue directory was passed as --queue-dir
GIVEN_BY_OPTION = "--queue-dir"
#: ``given_by`` of :func:`read_queue`: the queue directory is the spec's target.qmail_dir/queue
GIVEN_BY_SPEC = "target.qmail_dir"
_EXPECTED = ("qmail's queue directory (QMAILDIR/queue, /var/qmail/queue by default), the one "
             "with mess/, todo/, info/, ...")


def _place_hint(queue_dir: str, given_by: str | None, default: str) -> str:
    """The hint when ``queue_dir`` holds no qmail queue: what to correct depends on where
    the path came from (telling to pass --queue-dir to one who did would mislead)."""
    if given_by == GIVEN_BY_OPTION:
        return (f"--queue-dir {queue_dir} holds no qmail queue: it must name {_EXPECTED}; "
                "check the path given (and that qmail is installed on the host)")
    if given_by == GIVEN_BY_SPEC:
        return (f"{queue_dir} (the spec's target.qmail_dir + /queue) holds no qmail queue: "
                f"expected {_EXPECTED}; correct target.qmail_dir in the spec, or pass "
                "--queue-dir with the queue's real path")
    return default


def read_queue(conn: Connector, queue_dir: str = DEFAULT_QUEUE, *,
               status_command: str | None = None, only_id: int | None = None,
               mess: str = "headers", step: str = "read queue",
               given_by: str | None = None) -> Dump:
    """Read the whole queue (or one message's files) in one command; fail if it is absent.

    ``mess`` says what of each message file comes along: ``headers``, ``full``,
    ``none`` (enough for counting and checking, and much less to transfer) or
    ``fields=NAME,...`` (those header fields only: :mod:`mailplan.queue.headerfields`).
    ``given_by``: where ``queue_dir`` came from (:data:`GIVEN_BY_OPTION`,
    :data:`GIVEN_BY_SPEC`, None for the default), for the hint when it holds no queue.
    """
    extra: tuple[str, ...] = (mess,) if only_id is None else (mess, str(only_id))
    parsed = _Streamed(queue_dir)
    result = run_agent(conn, "dump", queue_dir, extra, status_command=status_command,
                       step=step, read=parsed)
    if parsed.error is not None:
        if parsed.empty and result.returncode != 0:
            raise agent_failed(conn, result, step)
        raise HostError(f"cannot read the queue of {queue_dir}: {parsed.error.message}",
                        host=conn.name, step=step)
    dump = parsed.dump
    assert dump is not None
    if not dump.exists:
        parent = queue_dir.rstrip("/").rsplit("/", 1)[0] or "/"
        if not dump.parent_exists:
            raise HostError(f"qmail does not seem to be installed: neither {queue_dir} nor "
                            f"{parent} exists", host=conn.name, step=step,
                            hint=_place_hint(queue_dir, given_by, "check the host, or pass "
                                             "--queue-dir if qmail lives elsewhere"))
        raise HostError(f"there is no qmail queue directory {queue_dir} ({parent} exists)",
                        host=conn.name, step=step,
                        hint=_place_hint(queue_dir, given_by,
                                         "pass --queue-dir with the queue's real path"))
    if result.returncode != 0:
        raise HostError(f"reading the queue failed, nothing was changed: "
                        f"{result.stderr_text.strip() or f'exit {result.returncode}'}",
                        host=conn.name, step=step,
                        hint="mailplan must see every directory and file of the queue: "
                        "log in as root, or pass --sudo")
    if not any(name in dump.entries for name in QUEUE_DIRS):
        # /var/qmail or an empty directory: counted as an empty queue, it would tell an
        # admin the queue had drained, and repair would build a queue tree in it
        raise HostError(f"{queue_dir} is not a qmail queue: it has none of the queue's "
                        f"directories ({', '.join(QUEUE_DIRS)}); nothing was changed",
                        host=conn.name, step=step,
                        hint=_place_hint(queue_dir, given_by, "pass --queue-dir with the "
                                         "queue's real path (or correct the spec's "
                                         "target.qmail_dir): qmail keeps it in QMAILDIR/queue"))
    return dump
