"""Many files read from a host by one ``tar``, not one ``cat`` each.

:func:`read_files` fetches many small files (a folder's ``dovecot-keywords``, a
user's subscription files) with one ``tar`` command in the connection's shared
shell and holds them in memory; :func:`each_file` streams them (ledgers, with the
keywords files read in the same command), and
:func:`tar_command` with :func:`tar_files` read them in a batch of other commands;
:func:`tar_members` reads the archive of a ``tar`` started on a channel of its own
(whole mailboxes). Files a user controls are read without following symbolic links
(``follow=False``). Split from :mod:`mailplan.remote`, whose shell they use.
"""

from __future__ import annotations

import io
import shlex
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO

from mailplan.connectors.base import CommandResult, Connector, Process
from mailplan.errors import HostError


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


def tar_members(proc: Process, paths: Iterable[str], others: dict[str, str] | None = None
                ) -> Iterator[tuple[str, IO[bytes]]]:
    """Give a started ``tar -cPf - --null -T -`` its NUL-separated list of ``paths`` and
    yield ``(name, contents)`` for each regular file of the archive it streams back, in the
    order tar reads them: one channel for any number of files. Each ``contents`` is readable
    only until the next item (stream mode); errors (``OSError``, ``tarfile.TarError``) and
    tar's exit status are the caller's. ``others`` gets what each other member is (tar
    archives a named pipe without opening it: see :func:`regular_members`)."""
    proc.write(b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in paths))
    proc.close_stdin()
    yield from regular_members(ProcessReader(proc), others)


#: how :func:`tar_not_read` begins (the caller tells it from a file's own errors)
NOT_READ = "cannot read it: "


def tar_not_read(path: str, stderr: str) -> str:
    """Why :func:`tar_members` gave nothing of ``path``: with ``--ignore-failed-read``
    tar passes over a file it may not open with a warning (exit 0), and one removed
    since it was listed too. Never an empty file: tar's words, after :data:`NOT_READ`."""
    for line in stderr.splitlines():
        # GNU tar: "tar: PATH: Warning: Cannot open: Permission denied"
        if line.startswith(f"tar: {path}: "):
            return NOT_READ + line[len(f"tar: {path}: "):].removeprefix("Warning: ")
    return NOT_READ + "tar read none of it (removed since it was listed?)"


#: what :func:`regular_members` says of a member that is not a regular file
_MEMBER_KINDS = ((tarfile.TarInfo.issym, "a symbolic link"), (tarfile.TarInfo.isdir,
                 "a directory"), (tarfile.TarInfo.isfifo, "a named pipe"))


def regular_members(stream: object, others: dict[str, str] | None = None, *,
                    concatenated: bool = False) -> Iterator[tuple[str, IO[bytes]]]:
    """``(name, contents)`` of each regular file of the tar archive read from ``stream``
    as it arrives (stream mode: each ``contents`` only until the next item); ``others``
    gets what each other member is (``a symbolic link``, ``a directory``, ...).
    ``concatenated``: the stream holds archives one after the other (what two ``tar``
    write to one output), read through the end-of-archive blocks between them."""
    with tarfile.open(fileobj=stream, mode="r|",  # type: ignore[call-overload]
                      ignore_zeros=concatenated) as archive:
        for member in archive:
            handle = archive.extractfile(member) if member.isfile() else None
            if handle is not None:
                yield member.name, handle
            elif others is not None:
                others[member.name] = next((kind for test, kind in _MEMBER_KINDS
                                            if test(member)), "not a regular file")


def read_files(conn: Connector, paths: Sequence[str], *, follow: bool = True,
               others: dict[str, str] | None = None) -> dict[str, bytes | None]:
    """Contents of each path (None when missing, unreadable or not a regular file), held
    in memory: for small files (see :func:`each_file`, and for ``others``)."""
    out: dict[str, bytes | None] = dict.fromkeys(paths)

    def keep(path: str, handle: IO[bytes]) -> None:
        out[path] = handle.read()

    each_file(conn, paths, keep, follow=follow, others=others)
    return out


def each_file(conn: Connector, paths: Sequence[str],
              consume: Callable[[str, IO[bytes]], None], *, follow: bool = True,
              others: dict[str, str] | None = None, unfollowed: Sequence[str] = ()) -> None:
    """Call ``consume(path, contents)`` for each of ``paths`` that is a regular file, in
    the order they come, as its contents stream in (readable only during the call).

    One command in the connection's shared shell whatever the number of files: GNU tar
    reads the NUL separated list from ``printf`` (``-h`` follows symbolic links, ``-P``
    keeps the absolute names), and its archive is read as it arrives. ``follow=False``
    for files a user controls: a symbolic link is then not a regular file (a link in a
    home directory to ``/etc/shadow`` is not read as root). ``unfollowed``: more paths,
    read so in the same command after ``paths`` (tar follows links for all its files or
    for none: a second one, whose archive follows the first's). ``others`` gets what
    each path that is there but not a regular file is (``a symbolic link``, ...).
    """
    alone, skip = list(dict.fromkeys(unfollowed)), set(unfollowed)
    if follow:  # a path in both is not followed
        groups = [([p for p in dict.fromkeys(paths) if p not in skip], True),
                  (alone, False)]
    else:
        groups = [(list(dict.fromkeys([*paths, *alone])), False)]
    groups = [(group, how) for group, how in groups if group]
    unique = [p for group, _how in groups for p in group]
    if not unique:
        return
    wanted = set(unique)
    # each tar's own status counts: the second's, else the first's
    command = "; s=$?; ".join(tar_command(group, follow=how) for group, how in groups) \
        + (' && (exit "$s")' if len(groups) == 2 else "")
    broken = None  # raised once the frame is read through: the shell stays usable
    with conn.shell().stream(command, shown=f"tar -c (read {len(unique)} file(s), first "
                                            f"{unique[0]})") as res:
        try:
            for name, handle in regular_members(res.stdout, others,
                                                concatenated=len(groups) == 2):
                if name in wanted:
                    consume(name, handle)
        except tarfile.TarError as exc:
            broken = _TAR_BROKEN.format(len(unique), exc)
    if res.returncode != 0:  # known once the stream is read; tar's failure explains more
        broken = _TAR_FAILED.format(res.returncode)
    if broken is not None:
        raise HostError(broken, host=conn.name)


_TAR_BROKEN = "reading {} file(s) with tar failed: {}"
_TAR_FAILED = "tar exited {} while reading files (is GNU tar installed?)"


def tar_command(paths: Sequence[str], *, follow: bool = True) -> str:
    """The command :func:`each_file` runs to read ``paths`` (see there), also for a
    batch of reads (:func:`~mailplan.remote.run_batch`) that a few small files join,
    with no round trip of their own: :func:`tar_files` reads its result."""
    return (f"printf '%s\\0' {' '.join(shlex.quote(p) for p in paths)} | "
            f"tar -c{'h' if follow else ''}Pf - --hard-dereference --no-recursion "
            "--ignore-failed-read --null -T - 2>/dev/null")


def tar_files(conn: Connector, paths: Sequence[str], res: CommandResult
              ) -> dict[str, bytes | None]:
    """Contents of each path, as :func:`read_files` gives them, from the result of
    :func:`tar_command` run in a batch (held whole: for small files)."""
    if res.returncode != 0:
        raise HostError(_TAR_FAILED.format(res.returncode), host=conn.name)
    out: dict[str, bytes | None] = dict.fromkeys(paths)
    try:
        for name, handle in regular_members(io.BytesIO(res.stdout)):
            if name in out:
                out[name] = handle.read()
    except tarfile.TarError as exc:
        raise HostError(_TAR_BROKEN.format(len(out), exc), host=conn.name) from None
    return out
