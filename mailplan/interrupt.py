"""Stopping on a signal: Ctrl-C (SIGINT), SIGTERM or SIGHUP.

While a command has changed nothing (``plan``, ``verify``, and ``apply`` until it starts
on its first change), a signal stops it at once: :class:`SignalStop` raises
:class:`Stopped` (a ``KeyboardInterrupt``) in the main thread wherever it waits, the code
that waits on other threads ends the connections first
(:meth:`~mailplan.connectors.base.Connector.abort`: a remote shell takes the commands it
runs with it, :data:`mailplan.remote.SHELL`), and the command ends with one line saying
that nothing was changed (:func:`stops_at_once`).

Once apply carries out steps, the first signal only asks it to stop at its next safe
point (:meth:`SignalStop.at_safe_points`, from :mod:`mailplan.watch`); a second SIGINT or
SIGTERM stops at once in the same way (a repeated SIGHUP does not). The journal holds
every finished step; a step begun and not recorded stays an intent, which the next run
settles from what the target holds.

Stopping at once is bounded: should something still hold mailplan
:data:`FORCE_EXIT_SECONDS` later (a host that does not let go of a closed connection),
it exits then, as a further SIGINT or SIGTERM makes it do at once; like ``kill -9``, that
loses nothing recorded. After SIGHUP (the terminal went away) standard output and error,
unless they are regular files, point at /dev/null (:func:`detach_terminal`); a SIGHUP
ignored when mailplan started (``nohup``) stays ignored. The exit status is that of the
signal that asked first: 130 after Ctrl-C, 143 after SIGTERM, 129 after SIGHUP.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from mailplan.errors import MailplanError

#: seconds a stop at once may take before mailplan just exits
FORCE_EXIT_SECONDS = 10
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def exit_status(signum: int) -> int:
    """The status a command stopped by ``signum`` exits with (as shells report one
    killed by it: 130 for SIGINT)."""
    return 128 + signum


def signal_name(signum: int) -> str:
    """``Ctrl-C`` for SIGINT, else the signal's name (``SIGTERM``)."""
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def by_signal(signum: int) -> str:
    """`` by SIGTERM`` for a message, nothing for Ctrl-C (the usual way)."""
    return "" if signum == signal.SIGINT else f" by {signal_name(signum)}"


class Stopped(KeyboardInterrupt):
    """A signal asked to stop at once (raised in the main thread)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum


class Interrupted(MailplanError):
    """A command stopped on a signal; the message says what it had done."""

    def __init__(self, message: str, *, signum: int = signal.SIGINT,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = exit_status(signum)


class SignalStop:
    """The handlers of SIGINT, SIGTERM and SIGHUP around one command (a context manager,
    installed from the main thread only); see the module docstring."""

    def __init__(self) -> None:
        #: the signal that first asked to stop, once one has
        self.signum: int | None = None
        #: :class:`Stopped` was raised: the command is stopping at once
        self.at_once = False
        self._requested: Callable[[int], None] | None = None
        self._again: Callable[[int], None] = lambda signum: None
        self._hangup: list[Callable[[], None]] = []
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalStop:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                if signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN:
                    continue  # nohup: the operator chose to outlive the terminal
                self._previous[signum] = signal.signal(signum, self._signalled)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def at_safe_points(self, requested: Callable[[int], None],
                       again: Callable[[int], None]) -> None:
        """From now on the first signal only calls ``requested(signum)`` (the caller
        stops at its next safe point); a second SIGINT or SIGTERM calls ``again(signum)``
        and stops at once. Both are called from the signal handler: they must not take
        a lock the interrupted code may hold."""
        self._requested, self._again = requested, again

    def on_hangup(self, call: Callable[[], None]) -> None:
        """Also call ``call()`` after SIGHUP has pointed the output at /dev/null."""
        self._hangup.append(call)

    def _signalled(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            detach_terminal()
            for call in self._hangup:
                call()
        if self.at_once:
            if signum != signal.SIGHUP:
                _exit(self.signum or signum, "stopping at once: exiting now")
            return
        first = self.signum is None
        if first:
            self.signum = signum
        if self._requested is not None:
            if first:
                self._requested(signum)
                return
            if signum == signal.SIGHUP:
                return  # the terminal going away does not hurry a stop under way
            self._again(signum)
        self.at_once = True
        watchdog = threading.Timer(FORCE_EXIT_SECONDS, _exit, (
            self.signum, f"not stopped {FORCE_EXIT_SECONDS} s after the signal: exiting "
            "now"))
        watchdog.daemon = True
        watchdog.start()
        raise Stopped(self.signum)


def _exit(signum: int, why: str) -> None:
    """Exit at once, as ``kill -9`` would (the journal holds every finished step)."""
    with contextlib.suppress(OSError):
        os.write(2, f"\nmailplan: {why} (every finished step is recorded)\n".encode())
    os._exit(exit_status(signum))


def detach_terminal() -> None:
    """After SIGHUP: point standard output and error at /dev/null unless they are regular
    files, so that nothing fails writing to a terminal that is gone (EIO, EPIPE)."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            for fd in (1, 2):
                with contextlib.suppress(OSError):
                    if not stat.S_ISREG(os.fstat(fd).st_mode):
                        os.dup2(devnull, fd)
        finally:
            os.close(devnull)


@contextlib.contextmanager
def stops_at_once(command: str, when: str = "") -> Iterator[SignalStop]:
    """Around a command that has changed nothing yet: a signal stops it at once, and it
    ends with :class:`Interrupted` ("``command`` interrupted[ by SIGTERM][ ``when``]:
    nothing was changed") and the signal's exit status."""
    with SignalStop() as stop:
        try:
            yield stop
        except KeyboardInterrupt:
            signum = stop.signum or signal.SIGINT
            raise Interrupted(f"{command} interrupted{by_signal(signum)}"
                              f"{' ' + when if when else ''}: nothing was changed",
                              signum=signum) from None


@contextlib.contextmanager
def like_ctrl_c() -> Iterator[None]:
    """Around a command with no stop of its own (``validate``, ``show``, the ``queue``
    commands): SIGTERM and SIGHUP raise :class:`Stopped` in the main thread, as Python's
    Ctrl-C raises ``KeyboardInterrupt``, where they ended Python silently; so the
    command ends the same way on each (its ``finally`` blocks run: a queue change
    starts the qmail-send it stopped again), and the CLI says so in one line with the
    signal's exit status. After SIGHUP the output points at /dev/null
    (:func:`detach_terminal`); a SIGHUP ignored (``nohup``) stays ignored. Nothing else
    changes from Ctrl-C's ways: no forced exit, a second signal raises again."""
    def raised(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            detach_terminal()
        raise Stopped(signum)

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(signum) != signal.SIG_IGN:
                previous[signum] = signal.signal(signum, raised)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
