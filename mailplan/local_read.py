"""Read a file a user names on the command line (a spec, a saved plan, a state file).

Such a path may be anything: a named pipe (``mailplan validate <(...)``, or a FIFO left
where the spec was) made mailplan wait forever for a writer, a device (``/dev/zero``)
or a huge file made it read until memory ran out. The file is opened without blocking,
its kind checked on the open descriptor (not on the name, which may change between a
check and the open), and only a regular file is read, up to a limit.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

#: a real spec of 10,000 users written as init writes it is about 0.8 MB (3.1 MB with a
#: from:, comment: and quota: for each and 10,000 accounts left out as comments)
SPEC_LIMIT = 8 * 1024 * 1024

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


class NotAFile(ValueError):
    """The path names no regular file, or one past the limit; the text says which."""


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def read_regular(path: Path, *, limit: int | None = None, what: str = "a file",
                 check: Callable[[os.stat_result], None] | None = None) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes (``what``: the
    file, as the error says it); NotAFile for anything else (said as ``it is a named
    pipe (FIFO), not a regular file``), OSError when it cannot be opened or read.
    ``check``: called with the opened file's status before it is read (it may raise)."""
    # O_NONBLOCK: opening a FIFO with no writer returns at once (without it: forever)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd)
        if not stat.S_ISREG(mode.st_mode):
            kind = next((kind for test, kind in _KINDS if test(mode.st_mode)), None)
            raise NotAFile(f"it is {kind}, not a regular file" if kind
                           else "it is not a regular file")
        if check is not None:
            check(mode)
        if limit is not None and mode.st_size > limit:
            raise NotAFile(f"it is {_megabytes(mode.st_size)}, more than the "
                           f"{_megabytes(limit)} {what} may be")
        chunks, total = [], 0
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            total += len(chunk)
            if limit is not None and total > limit:  # grown since fstat
                raise NotAFile(f"it is more than the {_megabytes(limit)} {what} may be")
        return b"".join(chunks)
    finally:
        os.close(fd)
