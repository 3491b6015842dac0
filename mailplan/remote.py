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

* :func:`read_files` fetches many small files (aliases, .forward, .qmail files) with one
  ``tar`` command in that shell instead of one ``cat`` each.

Framing: after a command, the shell prints ``@@mp <tag> <exit> <stdout bytes> <stderr
bytes>`` and then both outputs verbatim, so binary output is safe.
"""

from __future__ import annotations

import io
import shlex
import tarfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import IO

from mailplan.connectors.base import CommandResult, Connector, Process
from mailplan.errors import ConnectionLost, HostError
from mailplan.secret import mask_output
from mailplan.shell import Cmd

_PROLOGUE = (
    "umask 077\n"
    'T=$(mktemp -d "${TMPDIR:-/tmp}/mailplan.XXXXXX") || exit 97\n'
    "trap 'rm -rf \"$T\"' EXIT\n"
    # a signal ends the shell through the EXIT trap (dash skips it otherwise): a channel
    # closed under a running command ends in SIGPIPE at the shell's next write
    "trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 141' PIPE; trap 'exit 143' TERM\n"
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
        detail = mask_output((header + rest.stdout)[:4096].decode("utf-8", "replace"))
        detail = detail.strip()[:200]
        err = mask_output(rest.stderr[:4096].decode("utf-8", "replace")).strip()[:300]
        raise ConnectionLost(
            f"the remote shell stopped answering (exit {rest.returncode}); "
            f"got {detail!r}{'; stderr: ' + err if err else ''}",
            host=host,
        )
    code, out_len, err_len = int(parts[2]), int(parts[3]), int(parts[4])
    try:
        out = proc.read_exact(out_len)
        err = proc.read_exact(err_len)
    except (EOFError, OSError) as exc:
        raise ConnectionLost(f"connection lost while reading a command's output: {exc}",
                        host=host) from None
    return CommandResult(code, out, err)


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
        self._proc = conn.start("/bin/sh -s")
        self._tag = 0
        self._lock = threading.Lock()
        try:
            self._proc.write(_PROLOGUE.encode())
        except OSError as exc:
            self.broken = True
            raise ConnectionLost(f"cannot start a remote shell: {exc}", host=conn.name) from None

    def run(self, command: str | Cmd, *, shown: str | None = None) -> CommandResult:
        """Run one command line (a :class:`Cmd` is logged with its secrets masked, a long
        one as ``shown``); return once its result has arrived."""
        text = command.render() if isinstance(command, Cmd) else command
        with self._lock:
            started = time.monotonic()
            (res,) = self._exchange([text], "connection lost")
        if self.conn.observer is not None:
            logged = res
            if isinstance(command, Cmd):
                shown, logged = shown or command.display(), _masked(res, command)
            self.conn.observer(shown or text, logged, time.monotonic() - started, "")
        return res

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

    def _exchange(self, commands: Sequence[str], lost: str) -> list[CommandResult]:
        """Write the framed commands (from a thread when there are several, so a script
        and outputs both larger than the pipe and channel buffers cannot deadlock) and
        read one frame each. The caller holds the lock."""
        if self.broken:
            raise ConnectionLost("the remote shell broke off earlier", host=self.conn.name)
        first = self._tag + 1
        self._tag += len(commands)
        script = "".join(_framed(first + i, c) for i, c in enumerate(commands))
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
            results = [_read_frame(self._proc, first + i, self.conn.name)
                       for i in range(len(commands))]
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
        """End the shell (its EXIT trap removes the temporary directory)."""
        if self.broken:
            return
        self.broken = True  # no command after this one
        try:
            self._proc.close_stdin()
            self._proc.wait()
        except OSError:
            self._proc.kill()

    def __enter__(self) -> ShellSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ProcessReader:
    """A file-like view of a process's stdout, for tarfile's stream mode."""

    def __init__(self, proc: Process) -> None:
        self.proc = proc

    def read(self, size: int = 65536) -> bytes:
        out = b""
        while len(out) < size:
            chunk = self.proc.read(size - len(out))
            if not chunk:
                break
            out += chunk
        return out


def tar_members(proc: Process, paths: Iterable[str]) -> Iterator[tuple[str, IO[bytes]]]:
    """Give a started ``tar -cPf - --null -T -`` its NUL-separated list of ``paths`` and
    yield ``(name, contents)`` for each regular file of the archive it streams back, in the
    order tar reads them: one channel for any number of files. Each ``contents`` is readable
    only until the next item (stream mode); errors (``OSError``, ``tarfile.TarError``) and
    tar's exit status are the caller's."""
    proc.write(b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in paths))
    proc.close_stdin()
    with tarfile.open(fileobj=ProcessReader(proc), mode="r|") as archive:  # type: ignore[call-overload]
        for member in archive:
            handle = archive.extractfile(member) if member.isfile() else None
            if handle is not None:
                yield member.name, handle


def _masked(res: CommandResult, cmd: Cmd) -> CommandResult:
    """The result with every secret of ``cmd`` replaced, for the log."""
    out, err = res.stdout, res.stderr
    for part in (*cmd.argv, *cmd.stdin_lines):
        if not isinstance(part, str) and part.reveal():
            value = part.reveal().encode()
            out, err = out.replace(value, b"(sensitive)"), err.replace(value, b"(sensitive)")
    return CommandResult(res.returncode, out, err)


def read_files(conn: Connector, paths: Sequence[str]) -> dict[str, bytes | None]:
    """Contents of each path (None when missing, unreadable or not a regular file).

    One command in the connection's shared shell whatever the number of files: GNU tar
    reads the NUL separated list from ``printf`` (``-h`` follows symbolic links, ``-P``
    keeps the absolute names). Only for small files: contents are held in memory.
    """
    unique = list(dict.fromkeys(paths))
    out: dict[str, bytes | None] = dict.fromkeys(unique)
    if not unique:
        return out
    res = conn.shell().run(
        f"printf '%s\\0' {' '.join(shlex.quote(p) for p in unique)} | "
        "tar -chPf - --hard-dereference --no-recursion --ignore-failed-read --null -T - "
        "2>/dev/null", shown=f"tar -c (read {len(unique)} file(s), first {unique[0]})")
    if res.returncode != 0:
        raise HostError(f"tar exited {res.returncode} while reading files (is GNU tar "
                        "installed?)", host=conn.name)
    try:
        with tarfile.open(fileobj=io.BytesIO(res.stdout), mode="r|") as archive:
            for member in archive:
                handle = archive.extractfile(member) if member.isfile() else None
                if handle is not None and member.name in out:
                    out[member.name] = handle.read()
    except tarfile.TarError as exc:
        raise HostError(f"reading {len(unique)} file(s) with tar failed: {exc}",
                        host=conn.name) from None
    return out
