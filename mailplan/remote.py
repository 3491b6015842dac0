"""Many commands over one channel, each with its own exit status and outputs.

Each remote command costs a shell start-up (about 85 ms over SSH here, more with a
heavy login profile), so mailplan never opens a channel per user, nor per batch: a
:class:`ShellSession` keeps one ``/bin/sh -s`` open, and each connector shares one for a
whole run (:meth:`~mailplan.connectors.base.Connector.shell`). It takes commands in two
forms that share one framing:

* :func:`run_batch` (:meth:`ShellSession.batch`) sends a whole list of read-only
  commands at once (written from a thread while the results are read, so no size
  deadlocks) and parses the framed results (used to read facts);
* :meth:`ShellSession.run` sends one command at a time, waiting for its framed result
  before sending the next, so apply can verify and journal each step before the
  following one starts (and stop after a failure).

* :meth:`ShellSession.stream` gives one command's stdout as a stream while it arrives
  (listings of big folders, and many small files read with one ``tar``:
  :mod:`mailplan.remote_files`).

Framing (:mod:`mailplan.remote_frames`): each command is followed by its exit status
and stderr, marked by a nonce random per session, so binary output is safe and nothing
is written to a file on the host.
"""

from __future__ import annotations

import contextlib
import io
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO

from mailplan.connectors.base import CommandResult, Connector
from mailplan.errors import CommandTimeout, ConnectionLost
from mailplan.remote_frames import Frames, Pieces, framed
from mailplan.shell import Cmd

#: How a session's shell is started: ``/bin/sh -s`` reads the commands through a ``cat``
#: that relays the channel's input, and once that input ends (mailplan closed the
#: session, or stopped on a signal, or was killed and its connection dropped) the relay
#: kills the session's whole process group, the command running in it included. sshd
#: gives each session a process group of its own and, with no terminal, sends it no
#: SIGHUP when the channel or the connection goes: without the relay a hung command
#: would outlive the run that gave up on it (an idle shell killed so at a normal close
#: loses nothing). Only the shell and its commands hold the channel's output, so the
#: shell's own end is seen at once as before.
SHELL = ("/bin/sh -c 'exec 3>&1 4<&0 </dev/null >/dev/null; "
         "{ cat; kill -KILL 0; } <&4 3>&- 4<&- | /bin/sh -s >&3 3>&- 4<&- & "
         "exec 3>&- 4<&-; wait'")

#: the shell's start: files it makes are private; a signal ends it (dash would otherwise
#: go on after a SIGPIPE from a channel closed under a running command)
_PROLOGUE = (
    "umask 077\n"
    "trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 141' PIPE; trap 'exit 143' TERM\n"
)


#: how much longer than a command's timeout mailplan itself waits for the host (whose
#: own watchdog should have ended the shell by then) before it closes the channel
CLIENT_GRACE = 20



def run_batch(conn: Connector, commands: Sequence[str]) -> list[CommandResult]:
    """Run shell command lines in order in the connection's shared shell
    (:meth:`Connector.shell`); return each one's result."""
    return conn.shell().batch(commands)


class ShellSession:
    """One long-lived remote shell that runs commands in order: one at a time in lockstep
    (:meth:`run`) or a whole list at once (:meth:`batch`). Threads may share it: each
    call waits for the one before. A session whose framing was cut off (a lost
    connection, an interrupt mid-command) is :attr:`broken` and killed; the connector's
    :meth:`~mailplan.connectors.base.Connector.shell` then starts a new one."""

    def __init__(self, conn: Connector) -> None:
        self.conn = conn
        self.broken = False
        self._proc = conn.start(SHELL)
        self._tag = 0
        self._nonce = secrets.token_hex(16)
        self._frames = Frames(self._proc, self._nonce, conn.name)
        self._lock = threading.Lock()
        try:
            self._proc.write(_PROLOGUE.encode())
        except OSError as exc:
            self.broken = True
            raise ConnectionLost(f"cannot start a remote shell: {exc}", host=conn.name) from None

    def run(self, command: str | Cmd, *, shown: str | None = None,
            unlimited: bool = False) -> CommandResult:
        """Run one command line (a :class:`Cmd` is logged with its secrets masked, a long
        one as ``shown``); return once its result has arrived.

        Unless ``unlimited`` (a deletion, which stopped halfway would leave a domain or
        mailbox half removed), the command has the connector's
        :attr:`~Connector.command_timeout`: a watchdog on the host ends the shell and
        the command once it is past (:func:`~mailplan.remote_frames._watchdog`), and
        should the host not answer even then, mailplan closes the channel itself
        :data:`CLIENT_GRACE` seconds later; either way :class:`CommandTimeout` is
        raised and the session is broken."""
        text = command.render() if isinstance(command, Cmd) else command
        limit = None if unlimited else self.conn.command_timeout
        with self._lock:
            started = time.monotonic()
            gave_up = threading.Event()
            timer = None
            if limit is not None:
                def give_up() -> None:
                    gave_up.set()
                    self._proc.kill()

                timer = threading.Timer(limit + CLIENT_GRACE, give_up)
                timer.daemon = True
                timer.start()
            try:
                (res,) = self._exchange([text], "connection lost", limit)
            except ConnectionLost:
                if limit is None or not (gave_up.is_set()
                                         or time.monotonic() - started >= limit):
                    raise
                name = command.display() if isinstance(command, Cmd) else (shown or text)
                self._observe_cut(name, started, b"timed out",
                                  f"no result within command_timeout ({limit} s): stopped")
                program = str(command.argv[0]) if isinstance(command, Cmd) else \
                    (text.split() or ["the command"])[0]
                raise CommandTimeout(program.rsplit("/", 1)[-1], limit,
                                     host=self.conn.name) from None
            except KeyboardInterrupt:  # stopping at once: the shell and the command end
                self._observe_cut(command.display() if isinstance(command, Cmd) else
                                  (shown or text), started, b"stopped by mailplan",
                                  "interrupted: stopped on the host")
                raise
            finally:
                if timer is not None:
                    timer.cancel()
        if self.conn.observer is not None:
            logged = res
            if isinstance(command, Cmd):
                shown, logged = shown or command.display(), _masked(res, command)
            self.conn.observer(shown or text, logged, time.monotonic() - started, "")
        return res

    def _observe_cut(self, shown: str, started: float, said: bytes, note: str) -> None:
        """Tell the observer (the apply log) of a command that had no result."""
        if self.conn.observer is not None:
            self.conn.observer(shown, CommandResult(-1, b"", said),
                               time.monotonic() - started, note)

    def batch(self, commands: Sequence[str]) -> list[CommandResult]:
        """Send all ``commands`` at once, then read their results in order."""
        if not commands:
            return []
        with self._lock:
            started = time.monotonic()
            results = self._exchange(commands, "connection lost during a batch of reads")
        if self.conn.observer is not None:
            took = time.monotonic() - started
            for i, (command, res) in enumerate(zip(commands, results, strict=True)):
                self.conn.observer(command, res, took, f"batch {i + 1}/{len(commands)}, "
                                   f"{took:.3f}s for the batch")
        return results

    @contextlib.contextmanager
    def stream(self, command: str, *, shown: str | None = None) -> Iterator[Streamed]:
        """Run one command line and give its stdout as a stream while it arrives: for
        outputs that would be large held whole (listings of big folders). Its exit
        status and stderr are known once the block has read the stream to its end (what
        it leaves unread is read and dropped after it). An exception out of the block
        ends the session, whose framing it cut short."""
        with self._lock:
            if self.broken:
                raise ConnectionLost("the remote shell broke off earlier", host=self.conn.name)
            self._tag += 1
            started = time.monotonic()
            try:
                try:
                    self._proc.write(framed(self._tag, self._nonce, command).encode(
                        "utf-8", "surrogateescape"))
                except OSError as exc:
                    raise ConnectionLost(f"connection lost: {exc}",
                                         host=self.conn.name) from None
                pieces = Pieces(self._frames.stdout(self._tag))
                streamed = Streamed(io.BufferedReader(pieces, 1 << 16))
                yield streamed
                for piece in pieces.rest:  # what the block left unread
                    pieces.size += len(piece)
                streamed.returncode, err = self._frames.trailer()
            except BaseException:
                self._break()
                raise
        if self.conn.observer is not None:
            self.conn.observer(shown or command, CommandResult(streamed.returncode, b"", err),
                               time.monotonic() - started,
                               f"stdout streamed, {pieces.size} B")

    def _exchange(self, commands: Sequence[str], lost: str,
                  timeout: int | None = None) -> list[CommandResult]:
        """Write the framed commands (from a thread when there are several, so a script
        and outputs both larger than the pipe and channel buffers cannot deadlock) and
        read one frame each, each under a watchdog on the host when a ``timeout`` is
        given. The caller holds the lock."""
        if self.broken:
            raise ConnectionLost("the remote shell broke off earlier", host=self.conn.name)
        first = self._tag + 1
        self._tag += len(commands)
        script = "".join(framed(first + i, self._nonce, c, timeout)
                         for i, c in enumerate(commands))
        data = script.encode("utf-8", "surrogateescape")  # paths as the host spells them
        failed: list[OSError] = []

        def feed() -> None:
            try:
                self._proc.write(data)
            except OSError as exc:
                failed.append(exc)

        writer = None
        try:
            if len(commands) == 1:
                feed()
            else:
                writer = threading.Thread(target=feed, name="mailplan-batch-writer",
                                          daemon=True)
                writer.start()
            if failed:
                raise failed[0]
            results = [self._frames.result(first + i) for i in range(len(commands))]
            if writer is not None:
                writer.join()
            if failed:
                raise failed[0]
            return results
        except OSError as exc:
            self._break()
            raise ConnectionLost(f"{lost}: {exc}", host=self.conn.name) from None
        except BaseException:
            self._break()  # the writer thread ends once the channel is closed
            raise

    def _break(self) -> None:
        self.broken = True
        self._proc.kill()

    def close(self) -> None:
        """End the shell. One that is running a command for another thread is killed
        with that command (:data:`SHELL`), not waited for: a hung command would hold
        the close, and a stop on a signal, for as long as it hangs."""
        if self.broken:
            return
        if not self._lock.acquire(blocking=False):
            self._break()  # that thread's read then ends with ConnectionLost
            return
        try:
            self.broken = True  # no command after this one
            try:
                self._proc.close_stdin()
                self._proc.wait()
            except OSError:
                self._proc.kill()
        finally:
            self._lock.release()

    def __enter__(self) -> ShellSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Streamed:
    """A command run by :meth:`ShellSession.stream`: its stdout, and its exit status
    once the stdout is read to its end (-1 until then)."""

    stdout: IO[bytes]
    returncode: int = -1


def _masked(res: CommandResult, cmd: Cmd) -> CommandResult:
    """The result with every secret of ``cmd`` replaced, for the log."""
    out, err = res.stdout, res.stderr
    for part in (*cmd.argv, *cmd.stdin_lines):
        if not isinstance(part, str) and part.reveal():
            value = part.reveal().encode()
            out, err = out.replace(value, b"(sensitive)"), err.replace(value, b"(sensitive)")
    return CommandResult(res.returncode, out, err)
