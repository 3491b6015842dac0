"""Drive the target-side writer agent (:mod:`mailplan.mail.writer`) over a byte pipe.

The pipe is anything with ``write(bytes)``, ``read(n)``, ``readline()`` and ``close_stdin()``:
a connector :class:`~mailplan.connectors.base.Process` (local or SSH) or, in tests and
benchmarks, :class:`LocalAgent`. Requests without a reply are buffered and written in large
blocks, so a mailbox travels as one stream with a reply only per sync batch, and a sync
can be asked for without waiting (:meth:`AgentClient.sync_async`): a thread collects the
replies, so the stream goes on while the target makes the previous batch durable.
"""

from __future__ import annotations

import itertools
import json
import queue
import re
import struct
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mailplan.connectors.base import DEFAULT_PYTHON
from mailplan.interpreter import FLAGS, launch
from mailplan.mail.maildir import Identities
from mailplan.mail.mbox import MailboxError
from mailplan.mail.writer.bundle import agent_source

HEADER = struct.Struct(">cI")
MESSAGE = struct.Struct(">BBHd")  # an M frame's head; see mailplan.mail.writer
FLUSH_BYTES = 1 << 18
#: messages per flags request (``G``: about 75 bytes each, and one read of the folder)
FLAGS_PER_REQUEST = 50_000


class AgentError(MailboxError):
    """The agent refused a request or died; the message says what it reported."""


class AgentLost(AgentError):
    """The agent's channel broke (connection lost or the agent was killed)."""


class AgentFailed(AgentError):
    """The agent replied with an error (an ``X`` reply); it exits by itself after one."""


class Pipe(Protocol):
    """The subset of a connector process the client needs."""

    def write(self, data: bytes) -> None: ...
    def read(self, size: int = ...) -> bytes: ...
    def readline(self) -> bytes: ...
    def close_stdin(self) -> None: ...


@dataclass(frozen=True)
class SyncResult:
    """Files made durable by one sync, and identities found already present (skipped)."""

    durable: list[tuple[str, str]]
    present: list[tuple[str, str]]
    #: the ledger's size after this sync's lines (None: nothing was synced)
    ledger: int | None = None


@dataclass(frozen=True)
class ScanResult:
    """What a Maildir already holds: identities per folder dir, and the import ledger."""

    folders: dict[str, set[tuple[str, int]]]
    ledger: dict[str, set[tuple[str, int]]]

    def known(self, dirname: str) -> set[tuple[str, int]]:
        """Identities that must not be imported into ``dirname`` again."""
        return self.folders.get(dirname, set()) | self.ledger.get(dirname, set())


#: what the writer is called in errors about its interpreter
PROGRAM = "mailplan's Maildir writer"
#: the bootstrap after the version check: the agent's source is its first argument
_BOOT = "exec(compile(sys.argv[1], 'mailplan-agent', 'exec'))"


def agent_command(python: str = DEFAULT_PYTHON) -> str:
    """A shell command line that runs the agent with ``python`` (a missing or too old
    one says so on stderr: :mod:`mailplan.interpreter`)."""
    return launch(python, _BOOT, [agent_source()], program=PROGRAM)


def agent_display(python: str = DEFAULT_PYTHON) -> str:
    """The agent's command as the apply log shows it (without the source)."""
    return f"{python} {' '.join(FLAGS)} -c '<mailplan's Maildir writer agent>'"


class AgentClient:
    """Requests to one running agent; see the protocol in :mod:`mailplan.mail.writer`."""

    def __init__(self, pipe: Pipe, *, flush_bytes: int = FLUSH_BYTES) -> None:
        self.pipe = pipe
        self.flush_bytes = flush_bytes
        self._out: list[bytes] = []
        self._pending = 0
        self._replies: queue.Queue[dict[str, Any] | AgentError] | None = None
        self._failed: AgentError | None = None
        #: syncs asked for with ``sync_async`` whose reply has not been taken yet
        self.outstanding = 0
        self._ready: list[SyncResult] = []
        #: ``E`` frames sent (whole messages): what ``sync_async(through=...)`` counts in
        self.ended = 0

    # -- framing --------------------------------------------------------------------
    def _send(self, kind: bytes, payload: bytes) -> None:
        self._out.append(HEADER.pack(kind, len(payload)))
        self._out.append(payload)
        self._pending += len(payload) + 5
        if self._pending >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        """Write buffered frames to the pipe."""
        if self._out:
            data = b"".join(self._out)
            self._out, self._pending = [], 0
            self._write(data)

    def _write(self, data: bytes) -> None:
        if self._failed is not None:  # the agent reported an error and stopped
            raise self._failed
        try:
            self.pipe.write(data)
        except OSError as exc:
            raise AgentLost(f"agent pipe closed: {exc}") from exc

    def _read_exact(self, n: int) -> bytes:
        parts: list[bytes] = []
        while n:
            chunk = self.pipe.read(n)
            if not chunk:
                raise AgentLost("agent ended without replying (killed or crashed)")
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def _read_reply(self) -> dict[str, Any]:
        head = self._read_exact(5)
        rkind, length = HEADER.unpack(head)
        payload = self._read_exact(length) if length else b""
        if rkind == b"X":
            raise AgentFailed(f"agent: {payload.decode('utf-8', 'replace')}")
        if rkind != b"R":
            raise AgentError(f"agent sent an unknown reply type {rkind!r}")
        return json.loads(payload)  # type: ignore[no-any-return]

    def _collect(self) -> None:
        """The reply thread: every reply in order, then the first error (and stop)."""
        assert self._replies is not None
        while True:
            try:
                self._replies.put(self._read_reply())
            except AgentError as exc:
                self._replies.put(exc)
                return
            except (OSError, ValueError) as exc:
                self._replies.put(AgentLost(f"agent pipe broken: {exc}"))
                return

    def _reply(self, block: bool = True) -> dict[str, Any] | None:
        """The next reply (None when ``block`` is false and none has arrived yet)."""
        if self._failed is not None:
            raise self._failed
        if self._replies is None:
            return self._read_reply()
        if not block and self._replies.empty():
            return None
        item = self._replies.get()
        if isinstance(item, AgentError):
            self._failed = item
            raise item
        return item

    def _request(self, kind: bytes, obj: Any = None) -> dict[str, Any]:
        self._send(kind, b"" if obj is None else json.dumps(obj).encode())
        self.flush()
        self.synced(keep=0, hold=True)  # replies come in request order
        reply = self._reply()
        assert reply is not None
        return reply

    # -- requests -------------------------------------------------------------------
    def open(self, root: str, *, uid: int | None = None, gid: int | None = None,
             owner_of_parent: bool = False) -> dict[str, Any]:
        """Select a Maildir (created if missing) and clean this agent's stale tmp files.
        Files get ``uid``/``gid``, or with ``owner_of_parent`` the owner of the Maildir's
        parent directory (the user directory vpopmail made: no extra ``stat`` command)."""
        req: dict[str, Any] = {"root": root, "uid": uid, "gid": gid}
        if owner_of_parent:
            req["owner"] = "parent"
        return self._request(b"O", req)

    def create_folder(self, dirname: str, also: Sequence[str] = ()) -> None:
        """Create a Maildir++ folder directory (``.Name``) if it is missing. ``also``:
        earlier names of its directory, no longer there, whose ledger lines count for it
        from now on (what :meth:`known` gives, and what the agent drops as present)."""
        req: dict[str, Any] = {"dir": dirname}
        if also:
            req["also"] = list(also)
        self._send(b"F", json.dumps(req).encode())

    def begin(self, dirname: str) -> None:
        """Start a message in folder ``dirname`` (``""`` = INBOX)."""
        self._send(b"B", dirname.encode("utf-8"))

    def data(self, chunk: bytes) -> None:
        """Append bytes to the current message."""
        if len(chunk) >= self.flush_bytes:
            self.flush()
            self._write(HEADER.pack(b"D", len(chunk)) + chunk)
        else:
            self._send(b"D", chunk)

    def end(self, subdir: str, name: str, mtime: float | None) -> None:
        """Finish the current message as ``subdir/name`` with file mtime ``mtime``."""
        self.ended += 1
        self._send(b"E", _end_payload(subdir, name, mtime))

    def message(self, dirname: str, parts: list[bytes], subdir: str, name: str,
                mtime: float | None, *, size: int | None = None) -> None:
        """A whole message at once, given as the pieces it was read in (``size``: their
        total length, when the caller knows it): one ``M`` frame, queued without joining
        the pieces (``flush`` copies them once). A message too big to hold goes as
        ``B``, ``D`` and ``E`` frames."""
        if size is None:
            size = sum(map(len, parts))
        folder = dirname.encode("utf-8")
        if size >= self.flush_bytes or subdir not in ("new", "cur") or len(folder) > 255:
            self.begin(dirname)
            self.data(b"".join(parts))
            self.end(subdir, name, mtime)
            return
        self.ended += 1
        label = name.encode("utf-8")
        flags = (1 if subdir == "cur" else 0) | (0 if mtime is None else 2)
        head = MESSAGE.pack(flags, len(folder), len(label), mtime or 0.0)
        length = len(head) + len(folder) + len(label) + size
        out = self._out
        out += (HEADER.pack(b"M", length), head, folder, label)
        out += parts
        self._pending += length + 5
        if self._pending >= self.flush_bytes:
            self.flush()

    def sync(self) -> SyncResult:
        """Make queued messages durable and visible; return what became durable."""
        return _sync_result(self._request(b"S"))

    def sync_async(self, through: int | None = None) -> None:
        """Ask for a sync without waiting for it; :meth:`synced` returns the result.
        With ``through``, only messages among the first ``through`` sent (``ended``
        counts them) are synced; later ones wait for a later sync."""
        if self._replies is None:
            self._replies = queue.Queue()
            threading.Thread(target=self._collect, daemon=True,
                             name="mailplan-agent-replies").start()
        self._send(b"S", b"" if through is None else b'{"through": %d}' % through)
        self.flush()
        self.outstanding += 1

    def synced(self, keep: int = 0, *, hold: bool = False) -> list[SyncResult]:
        """Results of earlier :meth:`sync_async` calls, in order: every one that has
        arrived, waiting until at most ``keep`` are still outstanding. With ``hold`` they
        are kept for the next call instead (a request must not lose them)."""
        while self.outstanding:
            reply = self._reply(block=self.outstanding > keep)
            if reply is None:
                break
            self.outstanding -= 1
            self._ready.append(_sync_result(reply))
        if hold:
            return []
        ready, self._ready = self._ready, []
        return ready

    def scan(self, dirname: str | None = None) -> ScanResult:
        """Identities already in the Maildir and its folders (only in folder ``dirname``
        when given), and the import ledger."""
        reply = self._request(b"L", None if dirname is None else {"dir": dirname})
        folders = {d: {(x[0], int(x[1])) for x in rows} for d, rows in reply["folders"].items()}
        ledger: dict[str, set[tuple[str, int]]] = {}
        for d, digest, occ in reply["ledger"]:
            ledger.setdefault(d, set()).add((digest, int(occ)))
        return ScanResult(folders=folders, ledger=ledger)

    def known(self, dirname: str) -> Identities:
        """Identities that must not be imported into folder ``dirname`` again: those of
        its message files and of its ledger lines (what ``scan(dirname).known(dirname)``
        gives), sent by the agent as one text of ``digest occ`` lines, parsed without a
        list per identity and held compactly (:class:`Identities`)."""
        text = self._request(b"L", {"dir": dirname, "known": True})["known"]
        return Identities({Identities.key((m[1], int(m[2]))) for m in _KNOWN.finditer(text)})

    def subscribe(self, files: dict[str, list[str]]) -> int:
        """Add subscription lines (courier and dovecot files); return how many were new."""
        return int(self._request(b"U", {"files": files})["added"])

    def keyword_letters(self, dirname: str, keywords: list[str]) -> dict[str, str]:
        """The file-name letters of IMAP ``keywords`` in folder ``dirname`` (dovecot's
        ``dovecot-keywords``, extended on the target); a keyword without one is left out."""
        return dict(self._request(b"K", {"dir": dirname, "keywords": keywords})["letters"])

    def add_flags(self, dirname: str, add: Mapping[tuple[str, int], str]
                  | Iterable[tuple[tuple[str, int], str]]) -> dict[str, int]:
        """Add Maildir flags to messages already in folder ``dirname`` (``add``: flags by
        identity, or its items; after a space, the source's flags the writer records),
        renaming their files there as an IMAP client does (``G``), in requests of
        :data:`FLAGS_PER_REQUEST` messages: ``{"renamed", "gone", "taken"}`` summed over
        them (gone: no longer there; taken: the new name existed)."""
        out = {"renamed": 0, "gone": 0, "taken": 0}
        items = iter(add.items() if isinstance(add, Mapping) else add)
        while chunk := list(itertools.islice(items, FLAGS_PER_REQUEST)):
            text = "".join(f"{sha} {occ} {flags}\n" for (sha, occ), flags in chunk)
            reply = self._request(b"G", {"dir": dirname, "add": text})
            for name in out:
                out[name] += int(reply[name])
        return out

    def refresh_quota(self) -> dict[str, Any]:
        """Recompute ``maildirsize`` totals where vpopmail keeps one."""
        return self._request(b"Z")

    def quit(self) -> SyncResult:
        """Sync what is queued and stop the agent."""
        result = _sync_result(self._request(b"Q"))
        self.pipe.close_stdin()
        return result


_KNOWN = re.compile(r"([0-9a-f]{64}) ([0-9]+)\n")  # a line of the agent's known text


def _end_payload(subdir: str, name: str, mtime: float | None) -> bytes:
    """``json.dumps({"subdir", "name", "mtime"})``, formatted directly in the common case
    (plain ASCII names and a finite number): the same bytes, a fraction of the cost."""
    if (subdir in ("new", "cur") and _plain_ascii(name)
            and (mtime is None or type(mtime) in (int, float) and mtime - mtime == 0)):
        num = "null" if mtime is None else repr(mtime)
        return f'{{"subdir": "{subdir}", "name": "{name}", "mtime": {num}}}'.encode()
    return json.dumps({"subdir": subdir, "name": name, "mtime": mtime}).encode()


def _plain_ascii(text: str) -> bool:
    """Whether JSON writes ``text`` as it is: printable ASCII without ``"`` or ``\\``
    (what :func:`_end_payload` checks for every message; str methods, not a regex)."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def _sync_result(reply: dict[str, Any]) -> SyncResult:
    return SyncResult(durable=[(d, n) for d, n in reply["durable"]],
                      present=[(d, n) for d, n in reply["present"]],
                      ledger=reply.get("ledger"))


class LocalAgent:
    """The agent as a local child process (tests, benchmarks, local targets)."""

    def __init__(self, python: str = sys.executable, *, wrapper: tuple[str, ...] = ()) -> None:
        """``wrapper``: a command that runs the agent (``("prlimit", "--nofile=128")``)."""
        self.proc = subprocess.Popen([*wrapper, python, *FLAGS, "-c", agent_source()],
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in, self._outp = self.proc.stdin, self.proc.stdout

    def write(self, data: bytes) -> None:
        """Send bytes to the agent's stdin."""
        self._in.write(data)
        self._in.flush()

    def read(self, size: int = 65536) -> bytes:
        """Read up to ``size`` bytes of the agent's stdout."""
        return self._outp.read1(size)

    def readline(self) -> bytes:
        """Read one line of the agent's stdout."""
        return self._outp.readline()

    def close_stdin(self) -> None:
        """Signal end of input."""
        self._in.close()

    def wait(self) -> int:
        """Wait for the exit; return its status."""
        return self.proc.wait()

    def kill(self) -> None:
        """SIGKILL the agent."""
        self.proc.kill()
        self.proc.wait()
