"""Parse a sendmail aliases file (/etc/aliases, /etc/mail/aliases) and resolve :include:.

The syntax is sendmail's aliases(5), read as strictly as sendmail's own ``newaliases``:

- ``#`` in column 1 starts a comment line; blank lines are ignored;
- ``name: target, target, ...``; a line starting with a blank or TAB continues the
  previous entry (even one holding only blanks; an empty or comment line ends it), a
  line ending in a backslash is joined to the next, and a continuation line cannot be
  a comment (sendmail would read it as addresses);
- a name may be double-quoted (``"name with space": ...``); names are case-insensitive
  and are returned lower-cased;
- targets are classified by :mod:`mailplan.routing.addresses`;
- an entry longer than sendmail's line buffer (``BUFSIZ``: 8192 bytes on glibc, name,
  targets and continuation lines together) is one ``newaliases`` refuses ("alias line
  too long", "alias too long"): the old server does not have it, and it is kept apart
  (:attr:`AliasFile.too_long`), not among the entries.

Parsing is pure: :func:`parse_aliases` takes the file's bytes. ``:include:`` files are
read by the caller through :func:`resolve_includes`, which is given a ``read(path)``
callback (the source connection) and returns a new :class:`AliasFile` whose includes are
replaced by the included targets, or kept with a ``problem`` when unreadable or looping.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from mailplan.routing.addresses import parse_item, parse_list, split_items
from mailplan.routing.model import Address, Finding, Include, Origin, RoutingError, Target
from mailplan.text import has_control

Reader = Callable[[str], bytes | None]
#: sendmail opens an :include: file from its working directory, the queue directory
#: (main.c: chdir(QueueDir)); mailplan does not guess it, and reads no such path
#: the blanks of C's isspace()
_C_SPACE = " \t\n\v\f\r"
#: sendmail's include() ends a line of an :include: or .forward file at a ``#@#`` that
#: follows a blank and ends the line or precedes one (a comment anywhere, "for Japanese
#: character sets"): the addresses before it are delivered to
_HASH_AT_COMMENT = re.compile(rf"(?<=[{_C_SPACE}])#@#(?=[{_C_SPACE}]|$)")
#: sendmail's readaliases holds an entry in ``char line[BUFSIZ]`` (alias.c), read with
#: fgets: the entry's text (each continuation line's without its newline, a joining
#: backslash and its newline left out) and the newline that ends it must fit in
#: ``BUFSIZ - 1`` bytes; glibc's ``BUFSIZ``, as on the Linux servers mailplan reads
SENDMAIL_ALIAS_BUFFER = 8192
RELATIVE_INCLUDE = ("not an absolute path: sendmail opens it from its queue directory "
                    "(QueueDirectory); write the full path on the source, or declare the "
                    "alias in the spec")


@dataclass(frozen=True)
class AliasEntry:
    """One ``name: targets`` entry; ``origin`` is the line holding the name."""

    name: str
    targets: tuple[Target, ...]
    origin: Origin


@dataclass(frozen=True)
class AliasFile:
    """A parsed aliases file: its entries in file order (duplicates kept)."""

    path: str
    entries: tuple[AliasEntry, ...]
    #: entries newaliases refuses (over :data:`SENDMAIL_ALIAS_BUFFER`), with their size
    too_long: tuple[tuple[AliasEntry, int], ...] = ()


def decode(data: bytes | str) -> str:
    """Source files as text; undecodable bytes survive (and fail name validation later)."""
    if isinstance(data, str):
        return data
    return data.decode("utf-8", errors="surrogateescape")


def _logical_lines(text: str, path: str) -> list[tuple[str, list[int], list[int], int]]:
    """Join continuation lines: (text, offset where each physical line starts, its number,
    the bytes sendmail's buffer needs for the entry: see :data:`SENDMAIL_ALIAS_BUFFER`).

    As sendmail's readaliases: a line that starts an entry (or a comment) and ends in a
    backslash is joined to the next one (the backslash and the newline removed), and so
    on while the joined lines end in one; a line starting with a blank continues the
    entry, even when it holds nothing else, and its own trailing backslash is text
    (sendmail reads continuation lines without looking for one); an empty line or a
    comment ends it.
    """
    groups: list[list[tuple[int, str, str]]] = []  # (number, text, joined to previous by)
    held: list[int] = []  # each group's bytes in sendmail's buffer
    entry_open = False
    glued = False  # the previous line ended in a backslash that joins
    raws = text.split("\n")
    for number, raw in enumerate(raws, start=1):
        line = raw.rstrip("\r")
        was_glued, glued = glued, False
        continuation = not was_glued and entry_open and line[:1] in (" ", "\t")
        if not continuation and line.endswith("\\"):
            glued, line = True, line[:-1]
        if entry_open and (was_glued or continuation):
            # what fgets put in the buffer: the line, less a joining backslash (its
            # newline is overwritten by the next line's text; the entry's last stays)
            held[-1] = held[-1] - 1 + _buffered(raw, glued, number < len(raws))
        if was_glued:  # part of the line before: an entry's, or a comment's
            if entry_open:
                groups[-1].append((number, line, ""))
            continue
        if not line.strip() and line and entry_open:
            continue  # blanks only: a continuation line that adds nothing
        if not line.strip() or line.startswith("#"):
            entry_open = False
            continue
        if line[0] not in " \t":
            groups.append([(number, line, "")])
            held.append(_buffered(raw, glued, number < len(raws)))
            entry_open = True
            continue
        if not entry_open:
            raise RoutingError("a line starting with a blank must continue an entry",
                               origin=Origin(path, number),
                               hint="remove the leading blanks or join it to the entry above")
        if line.lstrip().startswith("#"):
            raise RoutingError("a comment cannot stand in a continuation line "
                               "(sendmail reads it as addresses)", origin=Origin(path, number),
                               hint="move the comment to column 1 above the entry")
        groups[-1].append((number, line, " "))
    out: list[tuple[str, list[int], list[int], int]] = []
    for group, size in zip(groups, held, strict=True):
        starts, offset, parts = [], 0, []
        for _number, line, sep in group:
            offset += len(sep) if parts else 0
            starts.append(offset)
            parts.append((sep if parts else "") + line)
            offset += len(line)
        out.append(("".join(parts), starts, [n for n, _l, _s in group], size))
    return out


def _buffered(raw: str, glued: bool, newline: bool) -> int:
    """The bytes a physical line takes in sendmail's buffer (its newline counted; the
    next line of the entry overwrites it, and a joining backslash)."""
    return len(raw.encode("utf-8", "surrogateescape")) - glued + newline


def _split_name(text: str, origin: Origin) -> tuple[str, int]:
    """The alias name and the offset just after its colon."""
    if text.startswith('"'):
        end = 1
        while end < len(text) and text[end] != '"':
            end += 2 if text[end] == "\\" else 1
        if end >= len(text):
            raise RoutingError("unterminated quoted alias name", origin=origin)
        name = text[1:end].replace('\\"', '"').replace("\\\\", "\\")
        rest = end + 1
        while rest < len(text) and text[rest] in " \t":
            rest += 1
        if rest >= len(text) or text[rest] != ":":
            raise RoutingError(f"missing ':' after alias name \"{name}\"", origin=origin)
        return name, rest + 1
    colon = text.find(":")
    if colon < 0:
        raise RoutingError("missing ':' between alias name and targets", origin=origin,
                           hint="write entries as  name: target, target")
    name = text[:colon].strip()
    if not name or any(c.isspace() for c in name):
        raise RoutingError(f"{text[:colon].strip()!r} is not an alias name", origin=origin,
                           hint="quote names that contain spaces")
    return name, colon + 1


def parse_aliases(data: bytes | str, path: str) -> AliasFile:
    """Parse an aliases file; raises RoutingError naming the path and line on bad syntax."""
    entries: list[AliasEntry] = []
    too_long: list[tuple[AliasEntry, int]] = []
    for text, starts, numbers, size in _logical_lines(decode(data), path):

        def origin_at(offset: int, starts: list[int] = starts,
                      numbers: list[int] = numbers) -> Origin:
            return Origin(path, numbers[bisect.bisect_right(starts, offset) - 1])

        origin = Origin(path, numbers[0])
        name, after = _split_name(text, origin)
        targets = parse_list(text[after:], lambda off, a=after: origin_at(off + a))
        if not targets:
            raise RoutingError(f"alias {name!r} has no targets", origin=origin)
        entry = AliasEntry(name.lower(), tuple(targets), origin)
        if size > SENDMAIL_ALIAS_BUFFER - 1:
            too_long.append((entry, size))
        else:
            entries.append(entry)
    return AliasFile(path, tuple(entries), tuple(too_long))


def parse_include(data: bytes | str, path: str,
                  bad: list[Origin] | None = None) -> list[Target]:
    """The targets of an ``:include:`` file: address lists, one or more per line (what
    follows a `` #@#`` is a comment, as sendmail reads it). A
    line or item that is no address raises, or, given ``bad``, is left out and its
    origin appended there (as sendmail's sendtolist() rejects that one address and
    goes on with the others)."""
    targets: list[Target] = []
    for number, raw in enumerate(decode(data).split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        comment = _HASH_AT_COMMENT.search(line)
        if comment is not None:
            line = line[:comment.start()].rstrip(_C_SPACE)
            if not line:
                continue
        origin = Origin(path, number)
        if bad is None:
            targets.extend(parse_list(line, lambda _off, o=origin: o))
            continue
        try:
            items = split_items(line, lambda _off, o=origin: o)
        except RoutingError:
            bad.append(origin)
            continue
        for item, _origin in items:
            try:
                targets.append(parse_item(item, origin))
            except RoutingError:
                bad.append(origin)
    return targets


def parse_listed(data: bytes | str, path: str) -> list[Target]:
    """The targets of an ``:include:`` file, marked ``listed``; a syntax error names the
    file and line but does not quote the text (the file is read as root and may be
    anything, a configuration file with a password for one)."""
    try:
        targets = parse_include(data, path)
    except RoutingError as exc:
        raise RoutingError("not an address list (its text is not shown: mailplan reads "
                           ":include: files as root)", origin=exc.origin,
                           hint="check that the aliases file names the right file, and "
                           "the syntax of that line") from None
    return [replace(t, listed=True) if isinstance(t, Address) else t for t in targets]


def resolve_includes(aliases: AliasFile, read: Reader,
                     why: Callable[[str], str | None] = lambda _path: None,
                     where: Callable[[str], str] = lambda path: path) -> AliasFile:
    """Replace each ``:include:`` by the targets of the file it names, recursively.

    ``read(path)`` returns the file's bytes or None when it cannot be read (``why(path)``
    then says why, when it knows); a relative path is not read. ``where(path)`` is the
    file this machine reads for an ``:include:`` path (under ``source.root``, its links
    followed), also for the aliases file's own path: a file met again in the chain that
    includes it is a loop, however it is named, and a problem whose file is read
    elsewhere than its name says names both. An unreadable file, a relative path or an
    include loop leaves the :class:`Include` in place with ``problem`` set, so the
    mapping reports it with its line (sendmail reads the file again as an address list,
    as it reads any ``:include:``, and drops the repeated ``:include:`` as a duplicate
    recipient, or past MaxAliasRecursion bounces it, "aliasing/forwarding loop broken":
    an aliases file read as a list is nothing its author meant); a syntax error in an
    included file raises (see :func:`parse_listed`).
    """
    cache: dict[str, list[Target] | None] = {}

    def load(path: str) -> list[Target] | None:
        if path not in cache:
            data = read(path)
            cache[path] = None if data is None else parse_listed(data, path)
        return cache[path]

    def at(path: str) -> str:
        return "" if where(path) == path else f" (read at {where(path)})"

    def expand(targets: tuple[Target, ...], chain: tuple[str, ...]) -> list[Target]:
        out: list[Target] = []
        depth = len(chain) - 1  # :include: files between the alias and these targets
        for target in targets:
            if isinstance(target, Address) and depth:
                out.append(replace(target, depth=depth))
            elif not isinstance(target, Include):
                out.append(target)
            elif has_control(target.path):
                out.append(replace(target, problem="its path holds a control character"))
            elif not target.path.startswith("/"):
                out.append(replace(target, problem=RELATIVE_INCLUDE))
            elif where(target.path) in map(where, chain):
                loop = " -> ".join((*chain, target.path)) + at(target.path)
                out.append(replace(target, problem=f"include loop: {loop}"))
            else:
                included = load(target.path)
                if included is None:
                    out.append(replace(target, problem=(
                        why(target.path) or "file could not be read on the source")
                        + at(target.path)))
                else:
                    out.extend(expand(tuple(included), (*chain, target.path)))
        return out

    entries = tuple(replace(e, targets=tuple(expand(e.targets, (aliases.path,))))
                    for e in aliases.entries)
    return replace(aliases, entries=entries)


def effective_aliases(files: Sequence[AliasFile]) -> tuple[dict[str, AliasEntry], list[Finding]]:
    """Name -> entry as sendmail uses them, from its alias files in lookup order.

    Within one file a later duplicate replaces an earlier one: newaliases prints
    "duplicate alias name" and keeps the last definition; we do the same and report it
    as a warning with both lines. An entry newaliases refuses as too long is a warning
    and takes no name (an earlier definition stays). Across files the first file that
    has the name wins (sendmail looks the name up in each database in turn); a
    definition it never reaches is a note naming the one it uses.
    """
    table: dict[str, AliasEntry] = {}
    findings: list[Finding] = []
    for aliases in files:
        findings.extend(Finding(
            "warning", f"alias {entry.name!r} is not carried over: its entry takes {size} "
            f"bytes, and sendmail's newaliases refuses one over "
            f"{SENDMAIL_ALIAS_BUFFER - 1} (\"alias too long\"), so the old server does not "
            "have it; to keep it, move its targets into an :include: file or declare it "
            "in the spec", entry.origin) for entry, size in aliases.too_long)
        own: dict[str, AliasEntry] = {}
        for entry in aliases.entries:
            earlier = own.get(entry.name)
            if earlier is not None:
                findings.append(Finding(
                    "warning",
                    f"duplicate alias name {entry.name!r}: this definition replaces the one "
                    f"at line {earlier.origin.line}, as newaliases does", entry.origin))
            own[entry.name] = entry
        for name, entry in own.items():
            first = table.setdefault(name, entry)
            if first is not entry:
                findings.append(Finding(
                    "note", f"alias {name!r} is not used: sendmail finds it first in "
                    f"{first.origin} (it looks a name up in its alias files in order)",
                    entry.origin))
    return table, findings
