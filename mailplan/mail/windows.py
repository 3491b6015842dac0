"""The first and the last 4 KiB of a read: how mailplan recognises a mailbox later.

A checkpoint records the sha256 of a spool's first 4 KiB and of the 4 KiB before the
offset an import reached; a rewrite of the file in place (a mail reader deleting
messages) shifts those bytes, an append does not. :class:`Windows` wraps any stream
read front to back (a snapshot read, a plan's scan, verify's read) and keeps exactly
those two windows of what went through it, so they come from the bytes that were
actually read, never from a second look at a file that may have changed since.
"""

from __future__ import annotations

import hashlib
import re

from mailplan.shell import join

WINDOW = 4096
#: where a :func:`guarded` command reads the mailbox it opened
OPENED = "/dev/fd/3"
#: the exit status of a :func:`guarded` command whose file is not the one listed
NOT_LISTED = 86
#: the exit status of a :func:`regular_only` command whose file is no regular file
NOT_A_FILE = 87
#: how many bytes after the end of a read are looked at (:func:`past_line_ends`)
PEEK = 64
_LINE_ENDS = re.compile(rb"(?:\r?\n)*")


def past_line_ends(after: bytes) -> bytes:
    """``after`` (the bytes after a message boundary: a checkpoint, the end of a read)
    without the line ends it starts with: those are framing, the line end and blank
    line a delivery writes after a last message that had none, before its From_ line
    (:class:`~mailplan.mail.mbox.MboxReader` reads a resumed read so)."""
    return after[_LINE_ENDS.match(after).end():]  # type: ignore[union-attr]


def guarded(path: str, ident: tuple[int, int], body: str) -> str:
    """``body`` (commands reading :data:`OPENED`) run on ``path`` opened once, and only
    when what was opened is the file the listing found (``ident``: its device and inode
    numbers). The source is read as root: a user who replaces a listed folder file, or
    the spool in a world-writable spool directory, with a link to another user's spool
    between the listing and a read must get nothing from it; the open follows such a
    link, the check then sees another file, and the command exits :data:`NOT_LISTED`
    with a line on stderr. ``body`` reopens :data:`OPENED` (``/proc/self/fd/3``: the
    opened file itself, with an offset and flags of its own).

    Only a regular file (``test -f``, through a link) is opened at all: the open of a
    named pipe waits for a writer, so a folder file or spool swapped for one (``mkfifo``
    needs no privilege) would hold the read, and apply, for ever. What is opened is
    still checked: a pipe swapped in between the test and the open (a race its owner
    must win within microseconds) is the one case left that can stall the read."""
    dev, inode = ident
    quoted = join([path])
    refused = _say(f"{path} is not the file listed (it was replaced, or is a link)")
    return (f"( [ -f {quoted} ] && exec 3<{quoted} && [ \"$(stat -L -c %d:%i {OPENED})\" = "
            f"{int(dev)}:{int(inode)} ] || {{ {refused} >&2; exit {NOT_LISTED}; }}; {body} )")


def regular_only(path: str, body: str) -> str:
    """``body`` (commands reading ``path`` by name: a plan's and verify's reads, which
    check no identity) run only when ``path`` is a regular file (``test -f``, through a
    link), else exit :data:`NOT_A_FILE` at once with a line on stderr saying so. The
    listing found a regular file, but a user may swap it for a named pipe (``mkfifo``
    needs no privilege) before the read: its open would wait for a writer, holding the
    read, and the shared shell it runs in, for ever. As in :func:`guarded`, a pipe swapped
    in between the test and the open (a race its owner must win within microseconds) is
    the one case left. The source is only read; ``path`` is quoted."""
    refused = _say(f"{path} is not a regular file (replaced since the listing)")
    return (f"if [ -f {join([path])} ]; then {body}; else {refused} >&2; "
            f"(exit {NOT_A_FILE}); fi")


def _say(message: str) -> str:
    """A command printing ``mailplan: message`` as it is: ``printf '%s\\n'``, not ``echo``,
    which in dash reads backslashes in it (a folder named ``a\\cb`` would lose the rest of
    the line)."""
    return join(["printf", "%s\\n", f"mailplan: {message}"])


def slice_command(path: str, start: int, length: int, *, noatime: bool) -> str:
    """A shell command printing ``length`` bytes of ``path`` from byte ``start`` (how a
    window, a checkpoint's prefix or a snapshot read is taken on the source); with
    ``noatime``, one that leaves the file's access time (GNU dd as root, see
    :mod:`mailplan.facts.noatime`)."""
    if noatime:
        return join(["dd", f"if={path}", "iflag=noatime,skip_bytes,count_bytes",
                     f"skip={start}", f"count={length}", "bs=1M", "status=none"])
    if start == 0:  # one process, no pipe: the whole first read of a mailbox
        return join(["head", "-c", str(length), "--", path])
    return (join(["tail", "-c", f"+{start + 1}", "--", path]) + " | "
            + join(["head", "-c", str(length)]))


def digest(data: bytes) -> str:
    """How a window is recorded in a checkpoint."""
    return hashlib.sha256(data).hexdigest()


def grown_head(head: str, before: bytes, read_head: bytes) -> str:
    """The head digest of a checkpoint after a read that started at an earlier one:
    ``head`` (the earlier one's) when that was at a window or later, else the digest of
    the window made of the file's bytes ``before`` the read (the earlier checkpoint's
    whole window, as its check read them) and the first bytes read."""
    return head if not before else digest((before + read_head)[:WINDOW])


class Windows:
    """A read-through wrapper recording the size and the first and last WINDOW bytes read."""

    def __init__(self, handle: object, window: int = WINDOW) -> None:
        self._handle, self._window = handle, window
        self.size = 0
        self.head = b""
        self.tail = b""

    def read(self, size: int = 65536) -> bytes:
        """Read from the wrapped stream, recording what went through."""
        chunk: bytes = self._handle.read(size)  # type: ignore[attr-defined]
        if chunk:
            self.size += len(chunk)
            if len(self.head) < self._window:
                self.head += chunk[: self._window - len(self.head)]
            if len(chunk) >= self._window:
                self.tail = chunk[-self._window:]
            else:
                self.tail = (self.tail + chunk)[-self._window:]
        return chunk

    def digests(self) -> tuple[str, str]:
        """sha256 of the first and of the last window read (as checkpoints record them)."""
        return digest(self.head), digest(self.tail)
