"""Read many small files on a host with a few commands: ~/.forward, .qmail, :include:.

A framed batch command costs several process starts; thousands of users' ~/.forward
files read one command each would dominate a plan. Here one constant ``sh -c`` script
reads files given as positional parameters (never formatted into the script): per file
it prints a header, the bytes (``cat``; with ``follow=False`` also ``stat``, twice) and
a trailer with cat's exit status, or status 3 when the file does not exist. With
``follow=False`` only a regular file is opened (status 5 for anything else, which
sendmail does not read either: the open of a named pipe would block), and the trailer
also holds the mode and owner of the file read (from the same ``stat`` that checks it is
the file named), for sendmail's file-safety rules. After the files, the same command
can ask the modes of directories (``dirs``: those sendmail's safedirpath() walks, the
parents of the files, known before the read), which would otherwise cost one remote
command more. Headers and trailers carry a random marker chosen per call, so no file
content can forge one.
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
    'm=$1; l=$2; k=$3; shift 3; i=0; s=; '
    'while [ $i -lt $k ]; do f=$1; shift; '
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
    'done; '
    # then the directories left in "$@": "MODE NAME\0" each, through links; one that does
    # not exist is left out (stat's error silenced)
    'if [ $# -gt 0 ]; then printf "@@%s dirs\\n" "$m"; '
    'stat -L --printf "%a %n\\0" -- "$@" 2>/dev/null; printf "\\n@@%s end\\n" "$m"; fi'
)


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
    """The commands that read ``paths`` and ask the modes of ``dirs``, and how to decode
    their results."""

    paths: tuple[str, ...]
    marker: str
    commands: tuple[str, ...]
    chunks: tuple[tuple[str, ...], ...]
    #: the directories each command asks the mode of (after its files)
    dir_chunks: tuple[tuple[str, ...], ...]

    def decode(self, results: Sequence[CommandResult], host: str) -> dict[str, FileRead]:
        """Path -> FileRead from the results of :attr:`commands`, in order."""
        return self.decode_all(results, host)[0]

    def decode_all(self, results: Sequence[CommandResult], host: str
                   ) -> tuple[dict[str, FileRead], dict[str, int]]:
        """The files read (path -> FileRead) and the modes of the directories that
        exist (path -> permission bits, sticky bit included), from the results of
        :attr:`commands`, in order."""
        files: dict[str, FileRead] = {}
        modes: dict[str, int] = {}
        for chunk, dirs, res in zip(self.chunks, self.dir_chunks, results, strict=True):
            if res.returncode != 0:
                what = f" and the modes of {len(dirs)} directories" if dirs else ""
                raise HostError(f"reading {len(chunk)} files{what} failed (exit "
                                f"{res.returncode}): {res.stderr_text[:300]}", host=host,
                                step="read files")
            marker = self.marker.encode()
            got, pos = _parse(res.stdout, chunk, marker, host)
            files.update(got)
            if dirs:
                modes.update(_parse_modes(res.stdout, pos, marker, host))
        return files, modes


def read_request(paths: Sequence[str], *, follow: bool = True,
                 dirs: Sequence[str] = ()) -> ReadRequest:
    """Commands reading every path (duplicates read once), then asking the mode of each
    of ``dirs`` (through links, as sendmail's safedirpath() sees them). ``follow=False``
    for files a user controls (``~/.forward``): the migration account reads as root, and a
    link to ``/etc/shadow`` would hand it the hashes; such a link is reported, not read,
    and so is a file the user swaps for one while it is read (see READ_SCRIPT)."""
    unique = tuple(dict.fromkeys(paths))
    unique_dirs = tuple(dict.fromkeys(dirs))
    marker = secrets.token_hex(16)
    mode = "follow" if follow else "nofollow"
    chunks: list[tuple[str, ...]] = []
    dir_chunks: list[tuple[str, ...]] = []
    done = 0  # the files and directories are split in runs as one list, files first
    for part in _chunks((*unique, *unique_dirs)):
        files = max(0, min(len(part), len(unique) - done))
        chunks.append(part[:files])
        dir_chunks.append(part[files:])
        done += len(part)
    commands = tuple(join(["sh", "-c", READ_SCRIPT, "mailplan-read", marker, mode,
                           str(len(chunk)), *chunk, *dirs_of])
                     for chunk, dirs_of in zip(chunks, dir_chunks, strict=True))
    return ReadRequest(unique, marker, commands, tuple(chunks), tuple(dir_chunks))


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


def run_reads(conn: Connector, request: ReadRequest,
              others: Sequence[str] = ()) -> tuple[dict[str, FileRead], list[CommandResult]]:
    """Run the read commands (each first in its own batch) and ``others`` (small ones).

    Returns the files read and the results of ``others``, in order.
    """
    results, rest = _run(conn, request, others)
    return request.decode(results, conn.name), rest


def read_with_modes(conn: Connector, paths: Sequence[str], dirs: Sequence[str], *,
                    follow: bool = True) -> tuple[dict[str, FileRead], dict[str, int]]:
    """Read ``paths`` and ask the modes of ``dirs`` (for sendmail's safedirpath(): the
    directories that exist, permission bits with the sticky bit) in the same commands:
    one remote command per chunk, not one more for the modes. Read-only."""
    request = read_request(paths, follow=follow, dirs=dirs)
    return request.decode_all(_run(conn, request)[0], conn.name)


def _run(conn: Connector, request: ReadRequest, others: Sequence[str] = ()
         ) -> tuple[list[CommandResult], list[CommandResult]]:
    """The results of the request's commands, each first in its own batch (its output
    may be large), and of ``others``, after the first one."""
    if not request.commands:
        return [], (run_batch(conn, list(others)) if others else [])
    first = run_batch(conn, [request.commands[0], *others])
    return [first[0]] + [run_batch(conn, [c])[0] for c in request.commands[1:]], first[1:]


def _parse(data: bytes, paths: Sequence[str], marker: bytes,
           host: str) -> tuple[dict[str, FileRead], int]:
    """The files' part of a read's output: each path's FileRead, and where it ends."""
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
    return out, pos


def _parse_modes(data: bytes, pos: int, marker: bytes, host: str) -> dict[str, int]:
    """The directories' part of a read's output, from ``pos``: "MODE NAME\\0" each."""
    header, trailer = b"@@" + marker + b" dirs\n", b"\n@@" + marker + b" end\n"
    end = data.find(trailer, pos + len(header))
    if not data.startswith(header, pos) or end < 0:
        raise HostError("unexpected output while reading the modes of directories",
                        host=host, step="read files")
    out: dict[str, int] = {}
    for record in data[pos + len(header):end].split(b"\0"):
        mode, _, name = record.partition(b" ")
        if mode.isdigit() and name:
            out[name.decode("utf-8", "surrogateescape")] = int(mode, 8)
    return out
