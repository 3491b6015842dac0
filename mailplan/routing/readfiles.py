"""Read many small files on a host with a few commands: ~/.forward, .qmail, :include:.

A framed batch command costs several process starts; thousands of users' ~/.forward
files read one command each would dominate a plan. Here one constant ``sh -c`` script
reads files given as positional parameters (never formatted into the script): per file
it prints a header, the bytes (``cat``; with ``follow=False`` also ``stat``, twice) and
a trailer with cat's exit status, or status 3 when the file does not exist. With
``follow=False`` only a regular file is opened (status 5 for anything else, which
sendmail does not read either: the open of a named pipe would block), and the trailer
also holds the mode and owner of the file read (from the same ``stat`` that checks it is
the file named), for sendmail's file-safety rules. Headers and trailers carry a random
marker chosen per call, so no file content can forge one.
Read-only: usable on the source.

A batch is written to the remote shell while it runs, and its output is only read once
all of it is written. A read command is large (its paths) and its output can be large
too, so each one must be the *first* command of its batch, followed only by small ones:
the shell then has read it whole before it prints anything. Paths are split into
commands of at most :data:`CHUNK_BYTES` (far below the kernel's argument limits); more
than one command means more than one batch (about 20,000 users each).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from mailplan.connectors.base import CommandResult, Connector
from mailplan.errors import HostError
from mailplan.remote import run_batch
from mailplan.shell import join

MISSING = 3
LINK = 4  # a symbolic link, not read (``follow=False``)
SPECIAL = 5  # not a regular file (a directory, a named pipe, ...), not read (``follow=False``)
CHUNK_BYTES = 512 * 1024
# ``nofollow``: a link is not read, and neither is a file swapped for one between that
# look and the open (the open follows it): the file is opened once (fd 3) and read only
# when what was opened is what the name holds now (device and inode of each), else it
# counts as a link. Only a regular file is opened: the open of a named pipe blocks (a
# user's ~/.forward could hang the plan), and what was opened is checked to be one too
READ_SCRIPT = (
    'm=$1; l=$2; shift 2; i=0; s=; '
    'for f do '
    'printf "@@%s %s\\n" "$m" "$i"; '
    'if [ "$l" = nofollow ]; then '
    'if [ -L "$f" ]; then rc=4; elif [ -f "$f" ]; then rc=1; '
    'elif [ -e "$f" ]; then rc=5; else rc=3; fi; '
    'if [ $rc = 1 ]; then { o=$(stat -L -c "%d:%i %a %u" /dev/fd/3); '
    'n=$(stat -c %d:%i -- "$f"); '
    'if [ -n "$o" ] && [ "${o%% *}" = "$n" ]; then '
    'if [ -f /dev/fd/3 ]; then cat <&3; rc=$?; s=${o#* }; else rc=5; fi; '
    'else rc=4; fi; } 3<"$f" 2>/dev/null; fi; '
    'elif [ -e "$f" ]; then cat -- "$f" 2>/dev/null; rc=$?; else rc=3; fi; '
    'printf "\\n@@%s %s %s %s\\n" "$m" "$i" "$rc" "$s"; s=; '
    'i=$((i+1)); '
    'done'
)

# a directory that does not exist is left out (stat's error silenced): "MODE NAME\0" each
DIRS_SCRIPT = 'stat -L --printf "%a %n\\0" -- "$@" 2>/dev/null; exit 0'


@dataclass(frozen=True)
class FileRead:
    """One file: whether it exists, and its bytes (None when it could not be read)."""

    exists: bool
    data: bytes | None
    link: bool = False  # a symbolic link left unread (``follow=False``)
    # ``follow=False`` only, for a file read: its permission bits and owner, of the very
    # file read (taken from the opened descriptor), for sendmail's file-safety checks
    mode: int | None = None
    uid: int | None = None
    #: not a regular file (a directory, a named pipe, ...), left unread (``follow=False``)
    special: bool = False


@dataclass(frozen=True)
class ReadRequest:
    """The commands that read ``paths``, and how to decode their results."""

    paths: tuple[str, ...]
    marker: str
    commands: tuple[str, ...]
    chunks: tuple[tuple[str, ...], ...]

    def decode(self, results: Sequence[CommandResult], host: str) -> dict[str, FileRead]:
        """Path -> FileRead from the results of :attr:`commands`, in order."""
        out: dict[str, FileRead] = {}
        for chunk, res in zip(self.chunks, results, strict=True):
            if res.returncode != 0:
                raise HostError(f"reading {len(chunk)} files failed (exit {res.returncode}): "
                                f"{res.stderr_text[:300]}", host=host,
                                step="read files")
            out.update(_parse(res.stdout, chunk, self.marker.encode(), host))
        return out


def read_request(paths: Sequence[str], *, follow: bool = True) -> ReadRequest:
    """Commands reading every path (duplicates read once). ``follow=False`` for files a
    user controls (``~/.forward``): the migration account reads as root, and a link to
    ``/etc/shadow`` would hand it the hashes; such a link is reported, not read, and so
    is a file the user swaps for one while it is read (see READ_SCRIPT)."""
    unique = tuple(dict.fromkeys(paths))
    marker = secrets.token_hex(16)
    chunks = _chunks(unique)
    mode = "follow" if follow else "nofollow"
    commands = tuple(join(["sh", "-c", READ_SCRIPT, "mailplan-read", marker, mode, *chunk])
                     for chunk in chunks)
    return ReadRequest(unique, marker, commands, tuple(chunks))


def _chunks(paths: Sequence[str]) -> list[tuple[str, ...]]:
    """``paths`` in runs of at most :data:`CHUNK_BYTES`, one command's arguments each."""
    chunks: list[tuple[str, ...]] = []
    current: list[str] = []
    size = 0
    for path in paths:
        if current and size + len(path) + 1 > CHUNK_BYTES:
            chunks.append(tuple(current))
            current, size = [], 0
        current.append(path)
        size += len(path.encode("utf-8", "surrogateescape")) + 1
    if current:
        chunks.append(tuple(current))
    return chunks


def dir_modes(conn: Connector, directories: Sequence[str]) -> dict[str, int]:
    """The permission bits (sticky bit included) of each directory that exists, through
    links (``stat -L``), for sendmail's safedirpath(); one command per chunk, each the
    only one of its batch. Read-only."""
    out: dict[str, int] = {}
    for chunk in _chunks(tuple(dict.fromkeys(directories))):
        res = run_batch(conn, [join(["sh", "-c", DIRS_SCRIPT, "mailplan-dirs", *chunk])])[0]
        if res.returncode != 0:
            raise HostError(f"reading the modes of {len(chunk)} directories failed (exit "
                            f"{res.returncode}): {res.stderr_text[:300]}", host=conn.name,
                            step="read files")
        for record in res.stdout.split(b"\0"):
            mode, _, name = record.partition(b" ")
            if mode.isdigit() and name:
                out[name.decode("utf-8", "surrogateescape")] = int(mode, 8)
    return out


def run_reads(conn: Connector, request: ReadRequest,
              others: Sequence[str] = ()) -> tuple[dict[str, FileRead], list[CommandResult]]:
    """Run the read commands (each first in its own batch) and ``others`` (small ones).

    Returns the files read and the results of ``others``, in order.
    """
    if not request.commands:
        return {}, (run_batch(conn, list(others)) if others else [])
    first = run_batch(conn, [request.commands[0], *others])
    results = [first[0]] + [run_batch(conn, [c])[0] for c in request.commands[1:]]
    return request.decode(results, conn.name), first[1:]


def _parse(data: bytes, paths: Sequence[str], marker: bytes,
           host: str) -> dict[str, FileRead]:
    out: dict[str, FileRead] = {}
    pos = 0
    for i, path in enumerate(paths):
        header = b"@@" + marker + b" %d\n" % i
        trailer = b"\n@@" + marker + b" %d " % i
        if not data.startswith(header, pos):
            raise HostError(f"unexpected output while reading {path}", host=host,
                            step="read files")
        start = pos + len(header)
        end = data.find(trailer, start)
        eol = data.find(b"\n", end + len(trailer)) if end >= 0 else -1
        if eol < 0:
            raise HostError(f"truncated output while reading {path}", host=host,
                            step="read files")
        fields = data[end + len(trailer):eol].split()
        status = int(fields[0]) if fields and fields[0].isdigit() else -1
        mode = uid = None
        if len(fields) == 3 and fields[2].isdigit():  # nofollow: "STATUS MODE UID"
            try:
                mode, uid = int(fields[1], 8), int(fields[2])
            except ValueError:
                raise HostError(f"unexpected file mode while reading {path}", host=host,
                                step="read files") from None
        out[path] = FileRead(status not in (MISSING, LINK),
                             data[start:end] if status == 0 else None, status == LINK,
                             mode, uid, status == SPECIAL)
        pos = eol + 1
    return out
