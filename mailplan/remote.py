"""Many commands over one channel, each with its own exit status and outputs.

Each remote command costs a shell start-up (about 85 ms over SSH here), so mailplan
never opens a channel per user. Two forms share one framing:

* :func:`run_batch` sends a whole list of read-only commands as one ``/bin/sh -s``
  script and parses the framed results (used to read facts).
* :class:`ShellSession` keeps one ``/bin/sh -s`` open and sends one command at a time,
  waiting for its framed result before sending the next, so apply can verify and journal
  each step before the following one starts (and stop after a failure).

Framing: after a command, the shell prints ``@@mp <tag> <exit> <stdout bytes> <stderr
bytes>`` and then both outputs verbatim, so binary output is safe.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailplan.connectors.base import CommandResult, Connector, Process
from mailplan.errors import HostError

_PROLOGUE = (
    "umask 077\n"
    'T=$(mktemp -d "${TMPDIR:-/tmp}/mailplan.XXXXXX") || exit 97\n'
    "trap 'rm -rf \"$T\"' EXIT\n"
)


def _framed(tag: int, command: str) -> str:
    return (
        f"( {command}\n) </dev/null >\"$T/o\" 2>\"$T/e\"; rc=$?\n"
        f"printf '@@mp %s %s %s %s\\n' {tag} \"$rc\" \"$(wc -c <\"$T/o\")\" "
        f"\"$(wc -c <\"$T/e\")\"\n"
        "cat \"$T/o\" \"$T/e\"\n"
    )


def _read_frame(proc: Process, tag: int, host: str) -> CommandResult:
    header = proc.readline()
    parts = header.split()
    if len(parts) != 5 or parts[0] != b"@@mp" or parts[1] != str(tag).encode():
        rest = proc.wait()
        detail = (header + rest.stdout)[:200].decode("utf-8", "replace").strip()
        err = rest.stderr.decode("utf-8", "replace").strip()[:300]
        raise HostError(
            f"the remote shell stopped answering (exit {rest.returncode}); "
            f"got {detail!r}{'; stderr: ' + err if err else ''}",
            host=host,
        )
    code, out_len, err_len = int(parts[2]), int(parts[3]), int(parts[4])
    try:
        out = proc.read_exact(out_len)
        err = proc.read_exact(err_len)
    except (EOFError, OSError) as exc:
        raise HostError(f"connection lost while reading a command's output: {exc}",
                        host=host) from None
    return CommandResult(code, out, err)


def run_batch(conn: Connector, commands: Sequence[str]) -> list[CommandResult]:
    """Run shell command lines in order on one channel; return each one's result."""
    script = _PROLOGUE + "".join(_framed(i, c) for i, c in enumerate(commands))
    proc = conn.start("/bin/sh -s")
    try:
        proc.write(script.encode())
        proc.close_stdin()
        results = [_read_frame(proc, i, conn.name) for i in range(len(commands))]
        proc.wait()
    except OSError as exc:
        proc.kill()
        raise HostError(f"connection lost during a batch of reads: {exc}",
                        host=conn.name) from None
    return results


class ShellSession:
    """One long-lived remote shell that runs commands one at a time, in lockstep."""

    def __init__(self, conn: Connector) -> None:
        self.conn = conn
        self._proc = conn.start("/bin/sh -s")
        self._tag = 0
        try:
            self._proc.write(_PROLOGUE.encode())
        except OSError as exc:
            raise HostError(f"cannot start a remote shell: {exc}", host=conn.name) from None

    def run(self, command: str) -> CommandResult:
        """Run one command line; return once its result has arrived."""
        self._tag += 1
        try:
            self._proc.write(_framed(self._tag, command).encode())
        except OSError as exc:
            raise HostError(f"connection lost: {exc}", host=self.conn.name) from None
        return _read_frame(self._proc, self._tag, self.conn.name)

    def close(self) -> None:
        """End the shell (its EXIT trap removes the temporary directory)."""
        try:
            self._proc.close_stdin()
            self._proc.wait()
        except OSError:
            self._proc.kill()

    def __enter__(self) -> ShellSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
