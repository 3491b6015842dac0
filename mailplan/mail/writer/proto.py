"""The writer's shared names: frame layouts, file name patterns, identities, replies.

Part of the writer program (:mod:`mailplan.mail.writer`, which has the protocol):
stdlib only, Python 3.7, joined with the other parts into one script
(:mod:`mailplan.mail.writer.bundle`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
import sys

TYPE_CHECKING = False  # typing is not imported to run: it costs the agent's start 5 ms
if TYPE_CHECKING:  # annotations only
    from typing import Any, BinaryIO

# a name holds no NUL byte: the sync process's jobs are NUL-separated fields
NAME_RE = re.compile(
    r"^(?P<time>\d+)\.M(?P<usec>\d+)P(?P<pid>\d+)_mp(?P<digest>[0-9a-f]{64})_(?P<occ>\d+)"
    r"\.(?P<host>[^/:,\0]+),S=(?P<size>\d+)(?::2,(?P<flags>[A-Za-z]*))?$")
TMP_RE = re.compile(r"^mailplan-(\d+)-(\d+)\.tmp$")
LEDGER = "mailplan-ledger"
#: the second field of the ledger line ``dir TAB folder`` a writer appends when it makes a
#: folder (two fields: no ledger reader takes it for a message's line)
FOLDER_MADE = "folder"
#: the ledger line ``dir TAB sha256 TAB occurrence TAB FLAGS`` (a message's Maildir flags,
#: capitals, then its keyword letters, as the source had them when a writer last wrote
#: them: its import into cur/, a ``G``) after its message line; the last one counts. Four
#: fields: no ledger reader takes it for a message's line, of this version or an earlier one
FLAGS_LINE = "{}\t{}\t{}\t{}\n"
COURIER_KEYWORDS = "courierimapkeywords"  # a folder's keyword updates for courier-imap
COURIER_UIDS = "courierimapuiddb"  # in a folder courier-imap has opened
PENDING_RE = re.compile(r"^mailplan-pending-(\d+)$")
DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
#: a line of ``G``'s "add": identity, flags to add (none: only the source's to record),
#: then the source's flags and keyword letters to record
FLAG_LINE_RE = re.compile(r"^([0-9a-f]{64}) ([0-9]+) ([A-Za-z]*)(?: ([A-Za-z]*))?$")
#: in the command line of every agent (``python3 -c SOURCE``): its first docstring line
AGENT_MARK = b"Target-side Maildir writer: a self-contained"
#: what ``O`` says of a Maildir of another owner than the one the writer switched to
#: (the importer then opens it with a writer of its own)
OTHER_OWNER = "(one writer per owner)"
#: seconds ``O`` waits for another agent still finishing in the Maildir (see ``open``)
WRITER_WAIT = 30.0
HEADER = struct.Struct(">cI")
MESSAGE = struct.Struct(">BBHd")  # the head of an M frame: flags, dir length, name length, mtime
JOB = struct.Struct(">II")  # a job for the sync process: JSON head and batch lengths
F_SETPIPE_SZ = 1031
IN_BUFFER = 1 << 20
CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
#: a file with no name yet in a directory's filesystem (Linux ``O_TMPFILE``); 0 where none
ANONYMOUS = (os.O_WRONLY | os.O_TMPFILE | getattr(os, "O_CLOEXEC", 0)
             if hasattr(os, "O_TMPFILE") else 0)
DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


class AgentError(Exception):
    """A request the agent cannot carry out."""


class Refused(AgentError):
    """A Maildir or folder its owner may not write as it is (another owner's, a mode
    that forbids it, a file the writer appends to that is no regular file): the sender
    fails that mailbox only, by this name in the ``X`` reply (``REFUSED``), and goes on
    with the others."""


#: how an ``X`` reply begins that refuses one Maildir only (``fail``: the type's name)
REFUSED = f"{Refused.__name__}: "


def key(digest: str, occ: int) -> bytes:
    """An identity as the agent holds it: the digest's 32 bytes, then the occurrence in
    decimal (72 bytes of memory, against 190 for a tuple of the hex text and an int)."""
    return bytes.fromhex(digest) + b"%d" % occ


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
    """Report ``exc`` as an ``X`` reply and on stderr (the agent then exits 1). A
    refusal says so on stderr too (``REFUSED``): a sender whose write met the pipe this
    agent closed by ending has only that to tell it from another failure."""
    with contextlib.suppress(OSError):
        send(out, b"X", f"{type(exc).__name__}: {exc}")
    with contextlib.suppress(OSError):  # the connection may be gone: the clean-up goes on
        sys.stderr.write(f"mailplan agent: {REFUSED if isinstance(exc, Refused) else ''}"
                         f"{exc}\n")
        sys.stderr.flush()


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` (a pipe or a disk may take less per call)."""
    n = os.write(fd, data)
    if n < len(data):  # rare: no memoryview for the common case
        view = memoryview(data)[n:]
        while view:
            view = view[os.write(fd, view):]
