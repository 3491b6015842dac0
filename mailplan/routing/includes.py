"""``:include:`` files of the source's aliases, read and put in place of the line.

:func:`read_includes` reads them one nesting level per batch, as users' ~/.forward files
are read (no link followed; a file sendmail refuses for its modes is refused), under
``source.root`` where the copy's links lead inside it, and hands them to
:func:`~mailplan.routing.aliases.resolve_includes`. Read only.
"""

from __future__ import annotations

from mailplan.connectors.base import Connector
from mailplan.errors import SourceDataError
from mailplan.facts.links import followed, resolve
from mailplan.facts.root import OutsideRoot, inside
from mailplan.routing.aliases import AliasFile, parse_listed, resolve_includes
from mailplan.routing.filesafety import FileSafety, read_guarded
from mailplan.routing.model import Include, RoutingError
from mailplan.routing.readfiles import FileRead
from mailplan.text import has_control

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


def read_includes(conn: Connector, aliases: AliasFile, root: str = "", *,
                  safety: FileSafety | None = None) -> AliasFile:
    """Read every :include: file (one batch per nesting level, the modes of their
    directories in the same one), then resolve. Files are read like users' ~/.forward
    (``follow=False``): a list kept where a user can write must not let that user have
    mailplan read another file as root. A path is the old server's: read under ``root``
    (``source.root``) where the copy's links lead inside it, and not at all when it
    would leave it (:func:`~mailplan.facts.root.inside`, :mod:`~mailplan.facts.links`).
    """
    cache: dict[str, bytes | None] = {}
    why: dict[str, str] = {}
    # where this machine reads each path (the aliases file's own too: a loop back to it)
    real = followed(conn, root, [aliases.path])
    pending = {t.path for e in aliases.entries for t in e.targets
               if isinstance(t, Include) and _readable_include(t.path)}
    for _round in range(MAX_INCLUDE_ROUNDS):
        pending -= set(cache)
        if not pending:
            break
        at: dict[str, str] = {}
        for path in pending:
            try:
                at[path] = inside(root, path)
            except OutsideRoot as exc:
                why[path], cache[path] = str(exc), None
        for path, got in resolve(conn, root, at.values(), last=False).items():
            for named in [p for p, a in at.items() if a == path]:
                if isinstance(got, OutsideRoot):
                    why[named], cache[named] = str(got), None
                    del at[named]
                else:
                    real[named] = at[named] = got
                    if got == real[aliases.path]:  # the aliases file itself: a loop, not a
                        del at[named]              # list (resolve_includes says so)
                        cache[named] = None
        reads, modes = read_guarded(conn, sorted(set(at.values())), root)
        for path, read_at in at.items():
            read = reads[read_at]
            problem = _include_problem(read_at, read, safety or FileSafety(), modes)
            if problem:
                why[path] = problem
            cache[path] = read.data if read.exists and not problem else None
        nested: set[str] = set()
        for path in pending:
            data = cache.get(path)
            if data is None:
                continue
            try:
                targets = parse_listed(data, path)
            except RoutingError as exc:
                err = host_error(exc, conn.name)
                if real[path] != path:  # the :include: path, and the file read for it
                    err.message += f" (read at {real[path]})"
                raise err from None
            nested |= {t.path for t in targets
                       if isinstance(t, Include) and _readable_include(t.path)}
        pending = nested
    try:
        return resolve_includes(aliases, lambda path: cache.get(path), why.get,
                                lambda path: real.get(path, path))
    except RoutingError as exc:
        raise host_error(exc, conn.name) from None
