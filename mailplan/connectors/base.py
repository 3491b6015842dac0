"""The connector interface shared by the local and SSH connections."""

from __future__ import annotations

import abc
import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailplan.errors import ConnectionLost, MailplanError
from mailplan.secret import mask_output

if TYPE_CHECKING:
    from mailplan.remote import ShellSession


@dataclass(frozen=True)
class CommandResult:
    """What one finished command produced."""

    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def stderr_text(self) -> str:
        """Stderr decoded for messages (undecodable bytes replaced), with anything that
        may be a secret masked (:func:`mailplan.secret.mask_output`): every error and log
        line that quotes a command's stderr takes it from here."""
        return mask_output(self.stderr.decode("utf-8", "replace").strip())


#: ``observer(display text, result or None, seconds, note)``; the text has secrets masked.
CommandObserver = Callable[[str, "CommandResult | None", float, str], None]


class Process(abc.ABC):
    """A running command on a host: write its stdin, read its stdout, then wait."""

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Send bytes to the command's stdin."""

    @abc.abstractmethod
    def close_stdin(self) -> None:
        """Signal end of input."""

    @abc.abstractmethod
    def read(self, size: int = 65536) -> bytes:
        """Read up to ``size`` bytes of stdout; ``b''`` at end of output."""

    @abc.abstractmethod
    def readline(self) -> bytes:
        """Read one line of stdout including its newline; ``b''`` at end of output."""

    @abc.abstractmethod
    def wait(self) -> CommandResult:
        """Wait for the exit; the result holds stderr and any stdout not yet read."""

    @abc.abstractmethod
    def kill(self) -> None:
        """Stop the command (close the channel or kill the process)."""

    def read_exact(self, size: int) -> bytes:
        """Read exactly ``size`` bytes of stdout or fail if output ends first."""
        chunks: list[bytes] = []
        remaining = size
        while remaining:
            chunk = self.read(min(remaining, 1 << 20))
            if not chunk:
                raise EOFError(f"output ended {remaining} bytes early")
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)


#: the interpreter a host runs mailplan's programs with when its spec entry names none
DEFAULT_PYTHON = "python3"
#: seconds a lockstep command may run when the host's spec entry names no command_timeout
DEFAULT_COMMAND_TIMEOUT = 300


class Connector(abc.ABC):
    """A host mailplan can run shell commands on."""

    def __init__(self, name: str, *, sudo: bool = False, python: str = DEFAULT_PYTHON,
                 command_timeout: int | None = DEFAULT_COMMAND_TIMEOUT) -> None:
        self.name = name
        #: Seconds a command of the shared shell may run (:meth:`ShellSession.run`: the
        #: steps on accounts and routing, never the mail streams); None: no limit.
        self.command_timeout = command_timeout
        self.sudo = sudo
        #: The Python 3 interpreter that runs mailplan's programs on this host (the
        #: Maildir writer, the queue reader): a command name on the login's PATH or a path.
        self.python = python
        #: How many command channels (SSH sessions or local processes) were opened.
        self.channels_opened = 0
        #: Told about every framed command (mailplan.applylog writes the apply log).
        self.observer: CommandObserver | None = None
        self._shell: ShellSession | None = None
        self._shell_lock = threading.Lock()
        #: every command started and not yet collected, for :meth:`abort`
        self._started: weakref.WeakSet[Process] = weakref.WeakSet()
        #: :meth:`abort` was called: closing waits for nothing
        self.aborted = False
        #: commands kept running for as long as the connection is open (:meth:`hold`)
        self._held: list[Process] = []

    def wrap(self, command: str) -> str:
        """The command as it is sent: under ``sudo -n`` when the host asks for it."""
        if self.sudo:
            return "sudo -n /bin/sh -c " + _sh_quote(command)
        return command

    @abc.abstractmethod
    def start(self, command: str) -> Process:
        """Start a shell command line (already quoted) and return the running process
        (implementations pass it through :meth:`_track`)."""

    def _track(self, proc: Process) -> Process:
        """Remember a started command, so that :meth:`abort` can stop it."""
        self._started.add(proc)
        return proc

    def start_stream(self, command: str, *, display: str | None = None) -> Process:
        """Start a command that moves bulk data (a mailbox read, the writer agent). The
        observer (the apply log) is told when it starts and how it ended, under
        ``display`` when given (the command line itself may be long)."""
        started = time.monotonic()
        shown = display or command
        try:
            proc = self._start_stream(command)
        except (OSError, MailplanError) as exc:
            self._observe(shown, _failed(exc), started, "stream could not start")
            raise
        if self.observer is None:
            return proc
        self.observer(shown, None, 0.0, f"stream over {self.stream_path()}")
        self._started.discard(proc)  # abort() kills it through the wrapper, which logs it
        return self._track(_ObservedStream(proc, self, shown, started))

    def prepare_streams(self) -> None:  # noqa: B027 - optional hook
        """Streams will follow: a connector whose stream path needs setting up may start
        that now, in the background, so it overlaps the commands that come first."""

    def _start_stream(self, command: str) -> Process:
        """Connectors with a faster data path for streams override this."""
        return self.start(command)

    def stream_path(self) -> str:
        """How streams travel (for the apply log)."""
        return "the connection"

    def run(self, command: str, stdin: bytes | Iterable[bytes] = b"",
            read: Callable[[Process], None] | None = None) -> CommandResult:
        """Run a command to completion, feeding ``stdin``; return its outputs. The
        observer (the apply log) is told the command, its duration and how it ended
        (``stdin`` is never shown: it may carry a password).

        ``read``, when given, is handed the command once its stdin is sent, to read
        stdout as it arrives (the result's stdout is what it left unread): a long output
        is then never held whole. Should ``read`` raise, the command is stopped.

        ``stdin`` may also be pieces made one after the other (with ``read`` only): a
        thread writes each as it is made while ``read`` reads, so a long input is never
        held whole either, and a command that answers while it reads cannot block on a
        full output pipe while mailplan blocks on a full input pipe. Should making a
        piece fail, the command is stopped and that error raised."""
        if not isinstance(stdin, bytes) and read is None:
            raise TypeError("stdin in pieces needs read")
        started = time.monotonic()
        try:
            proc = self.start(command)
        except (OSError, MailplanError) as exc:
            self._observe(command, _failed(exc), started, "could not start")
            raise
        feeder = None
        try:
            if isinstance(stdin, bytes):
                if stdin:
                    proc.write(stdin)
                proc.close_stdin()
            else:
                feeder = _Feeder(proc, stdin)
                feeder.start()
            if read is not None:
                _reading(proc, read)
            if feeder is not None:
                feeder.join()
            res = proc.wait()
            if feeder is not None:
                feeder.check(res)
        except OSError as exc:
            proc.kill()
            self._observe(command, _failed(exc), started, "connection lost")
            raise ConnectionLost(f"connection lost while running a command: {exc}",
                            host=self.name) from exc
        self._observe(command, res, started, "")
        return res

    def _observe(self, shown: str, result: CommandResult, started: float, note: str) -> None:
        if self.observer is not None:
            self.observer(shown, result, time.monotonic() - started, note)

    def shell(self) -> ShellSession:
        """The connection's one long-lived shell, started on first use (and again after it
        broke): every batch of reads and every lockstep command of a run shares it, so a
        run pays one shell start-up per host (about 85 ms over SSH here), not one per
        batch. Commands sent by several threads wait for each other."""
        from mailplan.remote import ShellSession  # remote builds on this module

        with self._shell_lock:
            if self._shell is None or self._shell.broken:
                self._shell = ShellSession(self)
            return self._shell

    def hold(self, proc: Process) -> None:
        """Keep ``proc`` (a command started here that waits for the end of its input,
        as the target's apply lock does: :mod:`mailplan.target_lock`) running for as
        long as this connection is open: :meth:`close` ends its input and waits for it
        to exit, before the connection goes, so that what it holds is free once
        ``close`` returns (after :meth:`abort` it is killed, waiting for nothing)."""
        with self._shell_lock:
            self._held.append(proc)

    def let_go(self, proc: Process) -> None:
        """End ``proc``, kept by :meth:`hold`, before the connection closes: its input
        ends and it is waited for (killed after :meth:`abort`), so what it held is
        free once this returns (a queue lock at the end of its command)."""
        with self._shell_lock:
            if proc not in self._held:
                return
            self._held.remove(proc)
        _let_go(proc, at_once=self.aborted)

    def abort(self) -> None:
        """End the connection at once (a stop on a signal): every command it started is
        killed without waiting for it to finish (a remote shell takes the commands it
        runs with it: :data:`mailplan.remote.SHELL`), then it is closed. The threads
        reading from those commands then fail (:class:`ConnectionLost`), so that whoever
        waits for them is not held by a command that hangs."""
        self.aborted = True
        for proc in list(self._started):
            with contextlib.suppress(OSError, MailplanError):
                proc.kill()
        self.close()

    def close(self) -> None:
        """Release the connection (subclasses call this first): ends the shared shell,
        then the commands it holds (:meth:`hold`)."""
        with self._shell_lock:
            shell, self._shell = self._shell, None
            held, self._held = self._held, []
        if shell is not None:
            shell.close()
        for proc in held:
            _let_go(proc, at_once=self.aborted)

    def __enter__(self) -> Connector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def abort_all(conns: Iterable[Connector]) -> None:
    """:meth:`Connector.abort` each connection (a stop at once)."""
    for conn in conns:
        conn.abort()


def _let_go(proc: Process, *, at_once: bool) -> None:
    """End a held command: its input ends and it is waited for, or killed ``at_once``
    (or when the connection fails under it)."""
    if at_once:
        with contextlib.suppress(OSError, MailplanError):
            proc.kill()
        return
    try:
        proc.close_stdin()
        proc.wait()
    except (OSError, MailplanError):
        with contextlib.suppress(OSError, MailplanError):
            proc.kill()


def _sh_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def _reading(proc: Process, read: Callable[[Process], None]) -> None:
    """``read(proc)``; the command is stopped if that raises anything but OSError (which
    :meth:`Connector.run` reports as a lost connection)."""
    try:
        read(proc)
    except OSError:
        raise
    except BaseException:
        proc.kill()
        raise


class _Feeder(threading.Thread):
    """Writes a command's stdin from pieces made one after the other
    (:meth:`Connector.run`), while the caller reads its stdout."""

    def __init__(self, proc: Process, pieces: Iterable[bytes]) -> None:
        super().__init__(name="mailplan-stdin-writer", daemon=True)
        self._proc, self._pieces = proc, pieces
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            for piece in self._pieces:
                self._proc.write(piece)
            self._proc.close_stdin()
        except OSError as exc:  # the command ended without reading it all, or a lost link
            self._error = exc
        except BaseException as exc:  # making a piece failed: nothing more may reach it
            self._error = exc
            self._proc.kill()

    def check(self, res: CommandResult) -> None:
        """Raise what stopped the writing; a command that stopped reading because it
        failed (a non-zero exit) is for the caller to tell by its result."""
        if self._error is None or (isinstance(self._error, OSError) and res.returncode):
            return
        raise self._error


def _failed(exc: BaseException) -> CommandResult:
    """A command that never ran to its end, as the log shows it (exit -1, the error)."""
    message = exc.message if isinstance(exc, MailplanError) else str(exc)
    return CommandResult(-1, b"", message.encode("utf-8", "replace"))


class _ObservedStream(Process):
    """A stream process that reports to its connector's observer how it ended."""

    def __init__(self, inner: Process, conn: Connector, shown: str, started: float) -> None:
        self._inner, self._conn, self._shown, self._started = inner, conn, shown, started
        self._read = self._written = 0
        self._reported = False

    def _report(self, result: CommandResult, note: str) -> None:
        # once: the end of a stream is how it first ended (a kill after the exit, or a
        # second kill, changes nothing the log should say)
        if self._reported:
            return
        self._reported = True
        self._conn._observe(self._shown, result, self._started,
                            f"stream: {self._read} B out, {self._written} B in{note}")

    def write(self, data: bytes) -> None:
        self._inner.write(data)
        self._written += len(data)

    def close_stdin(self) -> None:
        self._inner.close_stdin()

    def read(self, size: int = 65536) -> bytes:
        chunk = self._inner.read(size)
        self._read += len(chunk)
        return chunk

    def readline(self) -> bytes:
        line = self._inner.readline()
        self._read += len(line)
        return line

    def wait(self) -> CommandResult:
        try:
            res = self._inner.wait()
        except OSError as exc:
            self._report(CommandResult(-1, b"", str(exc).encode()), ", connection lost")
            raise
        self._read += len(res.stdout)
        self._report(res, "")
        return res

    def kill(self) -> None:
        # said first: a thread waiting on the stream would otherwise log the end the kill
        # causes (killed by a signal, a lost connection) as how it ended
        self._report(CommandResult(-1, b"", b"stopped by mailplan"), ", stopped")
        self._inner.kill()
