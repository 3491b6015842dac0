"""The connector interface shared by the local and SSH connections."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass

from mailplan.errors import ConnectionLost


@dataclass(frozen=True)
class CommandResult:
    """What one finished command produced."""

    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def stderr_text(self) -> str:
        """Stderr decoded for messages (undecodable bytes replaced)."""
        return self.stderr.decode("utf-8", "replace").strip()


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


class Connector(abc.ABC):
    """A host mailplan can run shell commands on."""

    def __init__(self, name: str, *, sudo: bool = False) -> None:
        self.name = name
        self.sudo = sudo
        #: How many command channels (SSH sessions or local processes) were opened.
        self.channels_opened = 0
        #: Told about every framed command (mailplan.applylog writes the apply log).
        self.observer: CommandObserver | None = None

    def wrap(self, command: str) -> str:
        """The command as it is sent: under ``sudo -n`` when the host asks for it."""
        if self.sudo:
            return "sudo -n /bin/sh -c " + _sh_quote(command)
        return command

    @abc.abstractmethod
    def start(self, command: str) -> Process:
        """Start a shell command line (already quoted) and return the running process."""

    def start_stream(self, command: str) -> Process:
        """Start a command that moves bulk data (a mailbox read, the writer agent).
        Connectors with a faster data path for streams override this."""
        return self.start(command)

    def run(self, command: str, stdin: bytes = b"") -> CommandResult:
        """Run a command to completion, feeding ``stdin``; return its outputs."""
        proc = self.start(command)
        try:
            if stdin:
                proc.write(stdin)
            proc.close_stdin()
            return proc.wait()
        except OSError as exc:
            proc.kill()
            raise ConnectionLost(f"connection lost while running a command: {exc}",
                            host=self.name) from exc

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection."""

    def __enter__(self) -> Connector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sh_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
