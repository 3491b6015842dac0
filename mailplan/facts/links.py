"""Symbolic links in a copy of the old server's disk, followed as a chroot would.

A copy read under ``source.root`` (:mod:`mailplan.facts.root`) keeps the old server's
links: ``home/bob -> /data/mail/bob``, ``var/spool/mail -> /var/mail``. The kernel of the
machine reading the copy would resolve their targets on that machine (its /data, its
/var/mail), so every path mailplan reads under the root is resolved first, here, the way
the old server resolved it: an absolute target starts again at the root, ``..`` never
climbs above it, and more than :data:`MAX_HOPS` links (a loop) is an error
(:class:`~mailplan.facts.root.OutsideRoot`, naming the link and its target). What comes
back has no link left in it, except a last component left unfollowed where mailplan
reads a user's own file (the readers report such a link, and do not read it).

One ``find -maxdepth 0`` per round says which components are links and what they hold;
the first round asks for every component of every path at once, each further one only
for what a link's target brought in. Read-only: usable on the source. :func:`walk`,
which decides, is pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mailplan.connectors.base import Connector
from mailplan.errors import HostError
from mailplan.facts.root import OutsideRoot
from mailplan.remote import run_batch
from mailplan.shell import chunks, join

#: links followed on one path before it counts as a loop (Linux's MAXSYMLINKS)
MAX_HOPS = 40
#: rounds of look-ups before giving up (each follows at least one link, or a ``..``)
MAX_ROUNDS = 2 * MAX_HOPS + 2


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


def walk(root: str, path: str, links: Mapping[str, str | None], *, last: bool = True
         ) -> tuple[str | None, list[str]]:
    """``path`` (under ``root``, as this machine names it) with every link in it
    resolved inside ``root`` (``last=False``: all but its last component), as far as
    ``links`` (a path -> its link's target, None for anything that is not a link) says:
    ``(resolved, [])``, or ``(None, paths to look up)`` when it needs more. A path not
    under ``root`` comes back as it is. A loop raises :class:`OutsideRoot`."""
    if not root or not (path == root or path.startswith(root + "/")):
        return path, []
    todo = _parts(path[len(root):])[::-1]  # a stack: the next component last
    done: list[str] = []  # resolved, none of them a link
    hops = 0
    while todo:
        part = todo.pop()
        if part == "..":
            if done:  # at the root, ".." is the root (as in a chroot)
                done.pop()
            continue
        here = root + "/" + "/".join([*done, part])
        if not todo and not last:
            done.append(part)
            break
        if here not in links:  # this one, and the components after it, up to a ".."
            ahead = [here]
            for nxt in reversed(todo):
                if nxt == "..":
                    break
                ahead.append(ahead[-1] + "/" + nxt)
            return None, ahead
        target = links[here]
        if target is None:
            done.append(part)
            continue
        hops += 1
        if hops > MAX_HOPS:
            raise OutsideRoot(f"{path!r}: more than {MAX_HOPS} symbolic links (a loop: "
                              f"{here} -> {target}) under source.root ({root}): not read")
        if target.startswith("/"):
            done = []  # an absolute target starts at the root, not at this machine's /
        todo.extend(_parts(target)[::-1])
    return root + "/" + "/".join(done) if done else root + "/", []


# "PATH\0TYPE\0TARGET\0" for each path that exists (TARGET empty but for a link)
FORMAT = "%p\\0%y\\0%l\\0"


def _look_up(conn: Connector, paths: list[str], links: dict[str, str | None]) -> None:
    """Add to ``links`` what each of ``paths`` is (one ``find`` per chunk, never
    following a link; a path that is not there counts as no link)."""
    for chunk in chunks(paths):
        res = run_batch(conn, [join(["find", *chunk, "-maxdepth", "0", "-printf", FORMAT])
                               + " 2>/dev/null; true"])[0]
        if res.returncode != 0:
            raise HostError(f"looking up {len(chunk)} paths failed (exit {res.returncode}):"
                            f" {res.stderr_text[:300]}", host=conn.name, step="read files")
        fields = res.stdout.split(b"\0")
        for path in chunk:
            links[path] = None
        for i in range(0, len(fields) - 2, 3):
            if fields[i + 1] == b"l":
                links[fields[i].decode("utf-8", "surrogateescape")] = \
                    fields[i + 2].decode("utf-8", "surrogateescape")


def resolve(conn: Connector, root: str, paths: Iterable[str], *, last: bool = True
            ) -> dict[str, str | OutsideRoot]:
    """Each of ``paths`` (this machine's, under ``root``) resolved by :func:`walk`, or
    the :class:`OutsideRoot` that says why it cannot be read. Without a root, or for a
    path not under it, the path as it is (nothing is looked up)."""
    out: dict[str, str | OutsideRoot] = {}
    pending = list(dict.fromkeys(paths))
    links: dict[str, str | None] = {}
    for _round in range(MAX_ROUNDS):
        wanted: dict[str, None] = {}
        still = []
        for path in pending:
            try:
                done, ahead = walk(root, path, links, last=last)
            except OutsideRoot as exc:
                out[path] = exc
                continue
            if done is not None:
                out[path] = done
            else:
                still.append(path)
                wanted.update(dict.fromkeys(ahead))
        if not still:
            return out
        _look_up(conn, list(wanted), links)
        pending = still
    for path in pending:  # unreachable with MAX_HOPS; a guard against a walk that loops
        out[path] = OutsideRoot(f"{path!r}: its symbolic links under source.root ({root}) "
                                "could not be resolved: not read")
    return out


def followed(conn: Connector, root: str, paths: Iterable[str], *, last: bool = True,
             what: str | None = None, step: str = "read source files") -> dict[str, str]:
    """:func:`resolve` for paths mailplan must read (sendmail.cf, the aliases files, the
    spools and folder directories): links that loop are an error naming one of them,
    after ``what`` (by default "cannot read PATH")."""
    out = {}
    for path, got in resolve(conn, root, paths, last=last).items():
        if isinstance(got, OutsideRoot):
            raise HostError(f"{what or f'cannot read {path}'}: {got}", host=conn.name,
                            step=step, hint="replace the link in the copy with what it "
                            "should lead to")
        out[path] = got
    return out
