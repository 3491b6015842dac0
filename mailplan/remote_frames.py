"""The framing of a remote shell's commands: how :class:`mailplan.remote.ShellSession`
wraps each command it sends and reads each one's result back.

Framing: a command's stdout passes straight through; after it the shell prints a newline,
``@@<nonce> <tag> <exit> <stderr bytes>``, a newline and the stderr, which it held in a
shell variable meanwhile. The nonce is random per session (nothing on the host can know
it, so no output forges a trailer), binary output is safe, and nothing is written to a
file on the host: on the source, a file of a command's output would be a write and a
copy of what it read (the shadow file among it).

A command with a timeout runs under a watchdog on the host (:func:`_watchdog`);
a stream's stdout is read while it arrives (:class:`Pieces`).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from mailplan.connectors.base import CommandResult, Process
from mailplan.errors import ConnectionLost
from mailplan.secret import mask_output

#: seconds between the watchdog's SIGTERM and its SIGKILL to a command past its time
KILL_GRACE = 5


def _watchdog(seconds: int) -> str:
    """Shell text that starts a watchdog in the background (its pid in ``$w``): after
    ``seconds`` it sends SIGTERM to the shell's whole process group (the session's
    shell, the command and everything it started: a hung vpopmail tool does not outlive
    the step mailplan gave up on), then SIGKILL after :data:`KILL_GRACE`. It sleeps a
    second at a time: ``kill $w`` (the command ended in time) ends it at once, leaving
    at most a ``sleep 1``, and it ends by itself within a second once the session's
    shell is gone. It holds none of the session's pipes."""
    return (
        f"( p=$$; i=0; while [ $i -lt {int(seconds)} ]; do sleep 1; "
        "kill -0 $p 2>/dev/null || exit 0; i=$((i+1)); done; "
        f"trap '' TERM; kill -TERM 0; sleep {KILL_GRACE}; kill -KILL 0 ) "
        "</dev/null >/dev/null 2>&1 3>&- & w=$!\n"
    )


def framed(tag: int, nonce: str, command: str, timeout: int | None = None) -> str:
    """``command`` with its stdout passed straight through, then the frame's trailer
    (newline, ``@@NONCE TAG EXIT STDERR-BYTES``, newline) and its stderr, which the shell
    holds in a variable meanwhile: nothing is written to a file on the host (the source
    is only read; a file of a command's output there would be a copy of what it read,
    /etc/shadow included, left behind if the shell were killed). With a ``timeout``, a
    watchdog on the host ends the shell and the command after that many seconds
    (:func:`_watchdog`)."""
    if timeout is not None:
        return (_watchdog(timeout) + framed(tag, nonce, command)
                + "kill $w 2>/dev/null\n")
    return (
        # "x" after the stderr: $( ) would drop its trailing newlines
        f"{{ e=$( ( {command}\n) </dev/null 2>&1 1>&3 3>&-; r=$?; printf x; exit $r ); "
        "rc=$?; } 3>&1; e=${e%x}\n"
        "if [ -n \"$e\" ]; then n=$(printf %s \"$e\" | wc -c); else n=0; fi\n"
        f"printf '\\n@@%s %s %s %s\\n' {nonce} {tag} \"$rc\" $n; printf %s \"$e\"\n"
    )


LOST_HINT = ("check that the host is up and reachable, then run the same command again "
             "(an apply goes on from its state file)")


class Frames:
    """Reads a session's frames off its stdout: a command's output runs until the
    trailer that ends it, recognised by a nonce chosen for the session (a command's
    output cannot forge it: nothing on the host knows it); bytes past a frame wait in
    a buffer for the next one."""

    def __init__(self, proc: Process, nonce: str, host: str) -> None:
        self.proc, self.nonce, self.host = proc, nonce.encode(), host
        self.buf = b""

    def _more(self) -> bytes:
        try:
            chunk = self.proc.read(1 << 16)
        except OSError as exc:
            raise ConnectionLost(f"connection lost while reading a command's output: {exc}",
                                 host=self.host) from None
        if not chunk:
            rest = self.proc.wait()
            detail = mask_output((self.buf + rest.stdout)[-4096:].decode("utf-8", "replace"))
            detail = detail.strip()[-200:]
            err = mask_output(rest.stderr[:4096].decode("utf-8", "replace")).strip()[:300]
            if rest.returncode == -1 and not detail and not err:  # no word from the host
                raise ConnectionLost("the remote shell stopped answering: the connection "
                                     "ended, with no exit status from the host",
                                     host=self.host, hint=LOST_HINT)
            raise ConnectionLost(
                f"the remote shell stopped answering (exit {rest.returncode}); "
                f"got {detail!r}{'; stderr: ' + err if err else ''}",
                host=self.host,
            )
        return chunk

    def stdout(self, tag: int) -> Iterator[bytes]:
        """The frame's stdout, piece by piece, up to its trailer (left in the buffer)."""
        marker = b"\n@@" + self.nonce + b" %d " % tag
        keep = len(marker) - 1  # a marker may be cut by a read: its start is held back
        while True:
            at = self.buf.find(marker)
            if at >= 0:
                if at:
                    yield self.buf[:at]
                self.buf = self.buf[at + len(marker):]
                return
            if len(self.buf) > keep:
                yield self.buf[:-keep]
                self.buf = self.buf[-keep:]
            self.buf += self._more()

    def trailer(self) -> tuple[int, bytes]:
        """After :meth:`stdout`: the exit status and the stderr."""
        while b"\n" not in self.buf:
            self.buf += self._more()
        line, self.buf = self.buf.split(b"\n", 1)
        parts = line.split()
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ConnectionLost(f"the remote shell's answer is garbled ({line[:80]!r})",
                                 host=self.host)
        code, size = int(parts[0]), int(parts[1])
        while len(self.buf) < size:
            self.buf += self._more()
        err, self.buf = self.buf[:size], self.buf[size:]
        return code, err

    def result(self, tag: int) -> CommandResult:
        """One whole frame."""
        out = b"".join(self.stdout(tag))
        code, err = self.trailer()
        return CommandResult(code, out, err)


class Pieces(io.RawIOBase):
    """A frame's stdout pieces as a readable stream."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self.rest, self.pending, self.size = pieces, b"", 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending:
            piece = next(self.rest, None)
            if piece is None:
                return 0
            self.pending = piece
            self.size += len(piece)
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n
