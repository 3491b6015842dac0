"""``:include:`` files of the source's aliases, read and put in place of the line.

:func:`read_includes` reads them one nesting level per batch, as users' ~/.forward files
are read (no link followed; a file sendmail refuses for its modes is refused), under
``source.root`` where the copy's links lead inside it, and hands them to
:func:`~mailplan.routing.aliases.resolve_includes`. Read only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mailplan.connectors.base import Connector
from mailplan.errors import SourceDataError
from mailplan.facts.links import followed, resolve
from mailplan.facts.root import OutsideRoot, inside
from mailplan.routing.aliases import AliasFile, parse_listed, resolve_includes
from mailplan.routing.filesafety import FileSafety, read_guarded
from mailplan.routing.model import Include, RoutingError
from mailplan.routing.readfiles import FileRead
from mailplan.text import has_control

#: how many :include: files deep a list is read (one batch of commands per level)
MAX_INCLUDE_ROUNDS = 8


def host_error(exc: RoutingError, host: str) -> SourceDataError | RoutingError:
    """A parse error in a source file, naming the host as well as file and line."""
    if exc.origin is None:
        return exc
    message = exc.message.removeprefix(f"{exc.origin}: ")
    err = SourceDataError(message, host=host, path=exc.origin.path, line=exc.origin.line)
    err.hint = exc.hint
    return err


def _include_problem(path: str, read: FileRead, safety: FileSafety,
                     modes: dict[str, int]) -> str | None:
    """Why an :include: file is not used, or None: a symbolic link is not followed
    (mailplan reads as root; sendmail reads it as its owner), and one sendmail refuses
    (not a regular file, group- or world-writable, in such a directory; see
    :mod:`~mailplan.routing.filesafety`) is refused here too."""
    if read.link:
        return ("it is a symbolic link: not followed (mailplan reads as root); put the "
                "list in a plain file")
    if not read.exists:
        return None
    unsafe = (safety.dir_problem(path, modes, forwarding=False)
              or safety.file_problem(read, forwarding=False))
    if unsafe:
        return (f"it is {unsafe}: sendmail refuses such a file (DontBlameSendmail in "
                "sendmail.cf allows none of it)")
    return None


def _readable_include(path: str) -> bool:
    """Whether an :include: path names a file mailplan reads (resolve_includes reports
    the others: a control character, a relative path)."""
    return path.startswith("/") and not has_control(path)


def _include_paths(targets: Iterable[Any]) -> set[str]:
    """The :include: paths among ``targets`` that mailplan reads."""
    return {t.path for t in targets if isinstance(t, Include) and _readable_include(t.path)}


class _IncludeReader:
    """What :func:`read_includes` has learnt so far: each :include: path's text (None:
    not read, or not used), why a path is not used, and where this machine reads each
    path (``real``; the aliases file's own too, so that a loop back to it is seen)."""

    def __init__(self, conn: Connector, root: str, safety: FileSafety, aliases: str) -> None:
        self.conn, self.root, self.safety, self.aliases = conn, root, safety, aliases
        self.cache: dict[str, bytes | None] = {}
        self.why: dict[str, str] = {}
        self.real = followed(conn, root, [aliases])

    def read_level(self, pending: set[str]) -> set[str]:
        """Read one nesting level (one batch of commands); the paths its files include."""
        at = self._place(pending)
        self._read(at)
        nested: set[str] = set()
        for path in pending:
            data = self.cache.get(path)
            if data is not None:
                nested |= _include_paths(self._parse(path, data))
        return nested

    def _refuse(self, path: str, why: str) -> None:
        self.why[path], self.cache[path] = why, None

    def _place(self, pending: set[str]) -> dict[str, str]:
        """Where this machine reads each path (under the root, its links resolved but for
        the last); a path that leaves the root, or leads back to the aliases file, is
        settled here and not read. (The aliases file's place is looked up each time: an
        :include: of its own path gives it the place found for that path.)"""
        at: dict[str, str] = {}
        for path in pending:
            try:
                at[path] = inside(self.root, path)
            except OutsideRoot as exc:
                self._refuse(path, str(exc))
        for path, got in resolve(self.conn, self.root, at.values(), last=False).items():
            for named in [p for p, a in at.items() if a == path]:
                if isinstance(got, OutsideRoot):
                    self._refuse(named, str(got))
                    del at[named]
                    continue
                self.real[named] = at[named] = got
                if got == self.real[self.aliases]:  # the aliases file: a loop, not a
                    del at[named]                   # list (resolve_includes says so)
                    self.cache[named] = None
        return at

    def _read(self, at: dict[str, str]) -> None:
        """Read the files (with their directories' modes); keep the text of those
        sendmail would use, and say why of the others."""
        reads, modes = read_guarded(self.conn, sorted(set(at.values())), self.root)
        for path, read_at in at.items():
            read = reads[read_at]
            problem = _include_problem(read_at, read, self.safety, modes)
            if problem:
                self.why[path] = problem
            self.cache[path] = read.data if read.exists and not problem else None

    def _parse(self, path: str, data: bytes) -> list[Any]:
        """The targets an :include: file lists; a syntax error names the host, and the
        file read where it is not the path the aliases file writes."""
        try:
            return parse_listed(data, path)
        except RoutingError as exc:
            err = host_error(exc, self.conn.name)
            if self.real[path] != path:
                err.message += f" (read at {self.real[path]})"
            raise err from None


def read_includes(conn: Connector, aliases: AliasFile, root: str = "", *,
                  safety: FileSafety | None = None) -> AliasFile:
    """Read every :include: file (one batch per nesting level, the modes of their
    directories in the same one), then resolve. Files are read like users' ~/.forward
    (``follow=False``): a list kept where a user can write must not let that user have
    mailplan read another file as root. A path is the old server's: read under ``root``
    (``source.root``) where the copy's links lead inside it, and not at all when it
    would leave it (:func:`~mailplan.facts.root.inside`, :mod:`~mailplan.facts.links`).
    """
    reader = _IncludeReader(conn, root, safety or FileSafety(), aliases.path)
    pending = _include_paths(t for e in aliases.entries for t in e.targets)
    for _round in range(MAX_INCLUDE_ROUNDS):
        pending -= set(reader.cache)
        if not pending:
            break
        pending = reader.read_level(pending)
    for path in pending - set(reader.cache):  # named by the last level read: not read
        reader.why[path] = (f"nested more than {MAX_INCLUDE_ROUNDS} :include: files deep; "
                            "mailplan does not read it")
    try:
        return resolve_includes(aliases, lambda path: reader.cache.get(path), reader.why.get,
                                lambda path: reader.real.get(path, path))
    except RoutingError as exc:
        raise host_error(exc, conn.name) from None
