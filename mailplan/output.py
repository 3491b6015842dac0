"""Apply's standard output, which may go away under it (``mailplan apply ... | head``, a
terminal gone): a write error there must neither end the apply where it happens to
print nor raise from a signal handler (the first signal's note is printed from it).

:class:`GuardedOutput` wraps the stream: the first write error (EPIPE, EIO, a full disk)
is reported once to its ``gone`` callback (the apply stops at its next safe point and
says why on stderr: :mod:`mailplan.watch`), the file descriptor is pointed at
/dev/null (so that what is left in the stream's buffer is not an error again at exit),
and every later write is dropped.
"""

from __future__ import annotations

import contextlib
import os
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
