"""Apply's standard output and error, which may go away under it (``mailplan apply ... 2>&1
| head``, a terminal gone): a write error there must neither end the apply where it
happens to print (a retry's warning on stderr) nor raise from a signal handler (the
first signal's note is printed from it). A command's last ``Error:`` line is written
with :func:`error_line`.

:class:`GuardedOutput` wraps the stream: the first write error (EPIPE, EIO, a full disk)
is reported once to its ``gone`` callback (the apply stops at its next safe point and
says why on stderr: :mod:`mailplan.watch`), the file descriptor is pointed at
/dev/null (so that what is left in the stream's buffer is not an error again at exit),
and every later write is dropped.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO


class GuardedOutput:
    """A text stream whose writes never raise (see the module docstring). It takes no
    lock: it may be written from a signal handler, and ``gone`` is called from there
    too, so it must not take one either."""

    def __init__(self, stream: TextIO, gone: Callable[[str], None]) -> None:
        self.stream = stream
        self._gone = gone
        #: why the output went away (``Broken pipe``), once it has
        self.lost: str | None = None

    def write(self, text: str) -> int:
        if self.lost is None:
            try:
                self.stream.write(text)
            except (OSError, ValueError) as exc:
                self._lose(exc)
        return len(text)

    def flush(self) -> None:
        if self.lost is None:
            try:
                self.stream.flush()
            except (OSError, ValueError) as exc:
                self._lose(exc)

    def isatty(self) -> bool:
        try:
            return self.lost is None and self.stream.isatty()
        except (OSError, ValueError):
            return False

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, ... (rich, click)
        return getattr(self.stream, name)

    def _lose(self, exc: BaseException) -> None:
        if self.lost is not None:
            return
        errno = getattr(exc, "errno", None)
        self.lost = os.strerror(errno) if errno else str(exc) or type(exc).__name__
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self.stream.fileno())
            finally:
                os.close(devnull)
        self._gone(self.lost)


def first_lost(**outputs: GuardedOutput) -> str | None:
    """``standard output was closed (Broken pipe)`` for the first of ``outputs`` (named:
    ``output=``, ``error=``) that went away; None while all are there."""
    return next((f"standard {name} was closed ({out.lost})"
                 for name, out in outputs.items() if out.lost), None)


def error_line(text: str) -> None:
    """Write a command's last line (``Error: ...``) to stderr, which may have gone away
    (``2>&1 | head``): then it is dropped, not raised (click would end the command with
    exit status 1 all the same, but silently, and Python add "Exception ignored" at
    exit); the exit status still says it failed (an apply's log says why)."""
    err = GuardedOutput(sys.stderr, lambda why: None)
    err.write(text + "\n")
    err.flush()
