"""Many commands over one channel, each with its own exit status and outputs.

Each remote command costs a shell start-up (about 85 ms over SSH here), so mailplan
never opens a channel per user. Two forms share one framing:

* :func:`run_batch` sends a whole list of read-only commands as one ``/bin/sh -s``
  script (written from a thread while the results are read, so no size deadlocks) and
  parses the framed results (used to read facts).
* :class:`ShellSession` keeps one ``/bin/sh -s`` open and sends one command at a time,
  waiting for its framed result before sending the next, so apply can verify and journal
  each step before the following one starts (and stop after a failure).

* :func:`read_files` fetches many small files (aliases, .forward, .qmail files) with one
  ``tar`` process instead of one ``cat`` each.

Framing: after a command, the shell prints ``@@mp <tag> <exit> <stdout bytes> <stderr
bytes>`` and then both outputs verbatim, so binary output is safe.
"""

from __future__ import annotations

import tarfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import IO

from mailplan.connectors.base import CommandResult, Connector, Process
from mailplan.errors import ConnectionLost, HostError
from mailplan.shell import Cmd

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
    """Run shell command lines in order on one channel; return each one's result."""
    script = _PROLOGUE + "".join(_framed(i, c) for i, c in enumerate(commands))
    started = time.monotonic()
    proc = conn.start("/bin/sh -s")
    failed: list[OSError] = []

    def feed() -> None:
        # written from a thread while the results are read: a script and outputs both
        # larger than the pipe and channel buffers cannot deadlock
        try:
            proc.write(script.encode())
            proc.close_stdin()
        except OSError as exc:
            failed.append(exc)

    writer = threading.Thread(target=feed, name="mailplan-batch-writer", daemon=True)
    writer.start()
    try:
        results = [_read_frame(proc, i, conn.name) for i in range(len(commands))]
        writer.join()
        if failed:
            raise failed[0]
        proc.wait()
    except OSError as exc:
        proc.kill()
        raise ConnectionLost(f"connection lost during a batch of reads: {exc}",
                        host=conn.name) from None
    except BaseException:
        proc.kill()  # the writer thread ends once the channel is closed
        raise
    if conn.observer is not None:
        took = time.monotonic() - started
        for i, (command, res) in enumerate(zip(commands, results, strict=True)):
            conn.observer(command, res, took, f"batch {i + 1}/{len(commands)}, "
                          f"{took:.3f}s for the batch")
    return results


class ShellSession:
    """One long-lived remote shell that runs commands one at a time, in lockstep (threads
    may share it: each command waits for the one before)."""

    def __init__(self, conn: Connector) -> None:
        self.conn = conn
        self._proc = conn.start("/bin/sh -s")
        self._tag = 0
        self._lock = threading.Lock()
        try:
            self._proc.write(_PROLOGUE.encode())
        except OSError as exc:
            raise ConnectionLost(f"cannot start a remote shell: {exc}", host=conn.name) from None

    def run(self, command: str | Cmd) -> CommandResult:
        """Run one command line (a :class:`Cmd` is logged with its secrets masked);
        return once its result has arrived."""
        text = command.render() if isinstance(command, Cmd) else command
        with self._lock:
            self._tag += 1
            started = time.monotonic()
            try:
                self._proc.write(_framed(self._tag, text).encode())
            except OSError as exc:
                raise ConnectionLost(f"connection lost: {exc}", host=self.conn.name) from None
            res = _read_frame(self._proc, self._tag, self.conn.name)
        if self.conn.observer is not None:
            shown, logged = command, res
            if isinstance(command, Cmd):
                shown, logged = command.display(), _masked(res, command)
            self.conn.observer(str(shown), logged, time.monotonic() - started, "")
        return res

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

    One channel and one process whatever the number of files: GNU tar reads the NUL
    separated list from stdin (``-h`` follows symbolic links, ``-P`` keeps the absolute
    names). Only for small files: contents are held in memory.
    """
    unique = list(dict.fromkeys(paths))
    out: dict[str, bytes | None] = dict.fromkeys(unique)
    if not unique:
        return out
    started = time.monotonic()
    proc = conn.start("tar -chPf - --hard-dereference --no-recursion --ignore-failed-read "
                      "--null -T - "
                      "2>/dev/null")
    try:
        for name, handle in tar_members(proc, unique):
            if name in out:
                out[name] = handle.read()
        res = proc.wait()
    except (OSError, tarfile.TarError) as exc:
        proc.kill()
        raise HostError(f"reading {len(unique)} file(s) with tar failed: {exc}",
                        host=conn.name) from None
    if conn.observer is not None:
        conn.observer(f"tar -c (read {len(unique)} file(s), first {unique[0]})", res,
                      time.monotonic() - started, "")
    if res.returncode != 0:
        raise HostError(f"tar exited {res.returncode} while reading files (is GNU tar "
                        "installed?)", host=conn.name)
    return out
