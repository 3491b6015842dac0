"""Read a spec's YAML: the data, plus the line and column of every value and key.

A restricted safe loader (no deep nesting, no alias bombs, string keys only, no
duplicate keys) whose errors name the file, line, column and key path
(:class:`~mailplan.errors.SpecError`); :mod:`mailplan.spec` validates what it reads.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path
from typing import Any

import yaml

from mailplan.errors import SpecError
from mailplan.local_read import SPEC_LIMIT, NotAFile, read_regular
from mailplan.yaml_where import JsonPath, open_path


def key_path(path: JsonPath) -> str:
    """``domains['example.com'].users[0].quota`` for a JSON path."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            out += ("." if out else "") + part
        else:
            out += f"[{part!r}]"
    return out or "(top level)"


def yaml_words(value: Any) -> str:
    """A value as the spec's YAML would show it, for an error (not Python's repr)."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (YAML reads yes, no, on, off as true or false)"
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return repr(value)


def yaml_flow(value: Any) -> str:
    """A value for an error as YAML writes it on one line (``{forward: x}``, not
    Python's ``{'forward': 'x'}``); text as quoted text."""
    if isinstance(value, dict | list):
        text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True,
                              sort_keys=False, width=1 << 16)
        return text.strip().removesuffix("\n...").strip()
    return repr(value)


def spec_text(file: Path) -> tuple[str, str]:
    """The text of the spec ``file`` (a regular file of UTF-8, at most SPEC_LIMIT bytes:
    a named pipe was waited on forever, a huge file read for minutes) and the sha256 of
    those very bytes: the plan's digest of the spec is of what was parsed and validated,
    never of a second read (which a file replaced in between would make another's)."""
    try:
        raw = read_regular(file, limit=SPEC_LIMIT, what="a spec")
    except NotAFile as exc:
        raise SpecError(f"cannot read the spec: {exc}", file=str(file), hint="give the spec "
                        "file itself (one of 10,000 users, as init writes it, is about 1 "
                        "MB); mailplan reads it whole before anything else") from None
    except OSError as exc:
        raise SpecError(f"cannot read the spec: {exc.strerror}", file=str(file)) from None
    try:
        return raw.decode("utf-8"), hashlib.sha256(raw).hexdigest()
    except UnicodeDecodeError as exc:  # where: the line and column (bytes) of the byte
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        raise SpecError(f"the spec is not UTF-8 text: byte 0x{raw[exc.start]:02X} (at byte "
                        f"{exc.start} of the file; save it as UTF-8)", file=str(file),
                        line=raw.count(b"\n", 0, exc.start) + 1,
                        column=exc.start - line_start + 1) from None


#: a number with an exponent YAML 1.1 reads as text: one without a dot or without the
#: exponent's sign (1e308, 2.5e3, 1e-3); JSON and YAML 1.2 read it as a number
_EXPONENT = re.compile(r"[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+")


def exponent_as_text(value: object, wanted: str | list[str]) -> str | None:
    """For a key that takes a number (``wanted``: its schema ``type``) given text like
    ``1e308``: that YAML read it as text, and how to write it as a number; None when
    ``value`` is no such text."""
    types = {wanted} if isinstance(wanted, str) else set(wanted)
    if not isinstance(value, str) or not _EXPONENT.fullmatch(value) \
            or not types & {"number", "integer"}:
        return None
    number = float(value.replace("_", ""))
    plain = f"{number:.0f}" if number.is_integer() and abs(number) < 1e15 else None
    if "number" not in types:
        return ("which YAML reads as text: write the whole number in plain digits"
                + (f" ({plain})" if plain else ""))
    mantissa, _, exponent = value.replace("E", "e").partition("e")
    fixed = (mantissa if "." in mantissa else f"{mantissa}.0") + "e" + (
        exponent if exponent[0] in "+-" else f"+{exponent}")
    if fixed == value.replace("E", "e"):  # '2.5e-1': a number YAML 1.1 reads, quoted
        return "which is text (in quotes): write it without the quotes"
    return (f"which YAML reads as text (a number with an exponent needs a dot and the "
            f"exponent's sign): write {fixed} or the number in plain digits"
            + (f" ({plain})" if plain else ""))


#: how deep a spec may nest (the real spec needs 8 levels; the YAML composer and the
#: builder recurse, so a deeper document would end in a RecursionError)
MAX_DEPTH = 64
#: how many values YAML aliases may add in all (``*name`` repeats its anchor's whole
#: value; nested aliases grow exponentially, "billion laughs")
MAX_ALIASED = 100_000


def _slot(parent: object, index: object) -> tuple[int, int]:
    """The place a node fills: its parent and its index there (a sequence's position,
    or a mapping's key node)."""
    return id(parent), index if isinstance(index, int) else id(index)


MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """A SafeLoader that refuses recursive aliases, excessive alias expansion and deep
    nesting while it composes, naming the line (before any of it is built)."""

    def __init__(self, text: str, file: str) -> None:
        super().__init__(text)
        self.file = file
        self.depth = 0
        self.aliased = 0
        self.open_anchors: list[str] = []
        self.sizes: dict[int, int] = {}
        #: line and column of each alias, by the place it fills (:func:`_slot`)
        self.alias_uses: dict[tuple[int, int], tuple[int, int]] = {}

    def _error(self, message: str, mark: yaml.Mark) -> SpecError:
        return SpecError(message, file=self.file, line=mark.line + 1, column=mark.column + 1)

    def _size(self, node: yaml.Node) -> int:
        """Values ``node`` stands for once every alias in it is expanded (memoised)."""
        if id(node) not in self.sizes:
            if isinstance(node, yaml.MappingNode):
                size = 1 + sum(self._size(k) + self._size(v) for k, v in node.value)
            elif isinstance(node, yaml.SequenceNode):
                size = 1 + sum(self._size(item) for item in node.value)
            else:
                size = 1
            self.sizes[id(node)] = size
        return self.sizes[id(node)]

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self.open_anchors:
                raise self._error(f"the YAML alias *{event.anchor} is inside the value it "
                                  "refers to (a recursive alias)", event.start_mark)
            target = self.anchors.get(event.anchor)
            # where the alias stands (its value's own marks are the anchor's)
            self.alias_uses[_slot(parent, index)] = (event.start_mark.line + 1,
                                                     event.start_mark.column + 1)
            if target is not None:
                self.aliased += self._size(target)
                if self.aliased > MAX_ALIASED:
                    raise self._error(f"YAML aliases expand to more than {MAX_ALIASED} "
                                      f"values (at *{event.anchor}); write the spec out "
                                      "without nested aliases", event.start_mark)
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        anchor = getattr(event, "anchor", None)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self._error(f"the spec nests more than {MAX_DEPTH} levels deep",
                              event.start_mark)
        if anchor is not None:
            self.open_anchors.append(anchor)
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self.depth -= 1
            if anchor is not None:
                self.open_anchors.pop()


#: a mapping entry: key node, value node, where its key is marked, where its value is
#: (None: where the value stands)
_Item = tuple[yaml.Node, yaml.Node, tuple[int, int], "tuple[int, int] | None"]


class _Builder:
    """Turns a composed YAML node tree into data, remembering node positions.

    A value an alias (``*name``) stands for is marked where the alias stands, not where
    its anchor is: an error in it names the line that uses it. Merge keys
    (``<<: *defaults``) add the keys of the mapping(s) they name that the mapping does not
    set itself, as YAML 1.1 defines them."""

    def __init__(self, loader: _Loader, file: str) -> None:
        self.loader, self.file = loader, file
        self.marks: dict[JsonPath, tuple[int, int]] = {}
        self.key_marks: dict[JsonPath, tuple[int, int]] = {}
        #: the text of each plain scalar YAML read as something else than text (0123,
        #: 12:30, 2024-01-01, yes), for an error that wanted text
        self.written: dict[JsonPath, str] = {}

    def _alias_at(self, parent: yaml.Node, index: object,
                  at: tuple[int, int] | None) -> tuple[int, int] | None:
        """Where the child of ``parent`` at ``index`` is marked: inside an alias's value
        where that alias stands, else where an alias in that place stands, else None
        (its own position)."""
        return at or self.loader.alias_uses.get(_slot(parent, index))

    def build(self, node: yaml.Node, path: JsonPath,
              at: tuple[int, int] | None = None) -> Any:
        self.marks[path] = at or (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            explicit, merged = self._items(node, path, at)
            out: dict[str, Any] = {}
            for item in explicit:
                key, where = self._key(item[0], path, item[2]), item[2]
                if key in out:
                    raise SpecError(f"duplicate key {key!r}", file=self.file, line=where[0],
                                    column=where[1], key=key_path((*path, key)))
                self._add(out, key, item, path)
            for item in merged:  # what the mapping sets itself wins
                key = self._key(item[0], path, item[2])
                if key not in out:
                    self._add(out, key, item, path)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), self._alias_at(node, i, at))
                    for i, item in enumerate(node.value)]
        value = self.loader.construct_object(node)
        if not isinstance(value, str) and isinstance(node, yaml.ScalarNode) and not node.style:
            self.written[path] = node.value
        return value

    def _add(self, out: dict[str, Any], key: str, item: _Item, path: JsonPath) -> None:
        _key_node, value_node, where, value_at = item
        self.key_marks[(*path, key)] = where
        out[key] = self.build(value_node, (*path, key), value_at)

    def _key(self, key_node: yaml.Node, path: JsonPath, where: tuple[int, int]) -> str:
        if not isinstance(key_node, yaml.ScalarNode):
            raise SpecError("keys must be strings, got a list or mapping",
                            file=self.file, line=where[0], column=where[1],
                            key=key_path(path))
        key = self.loader.construct_object(key_node)
        if not isinstance(key, str):
            raise SpecError(f"keys must be strings, got {yaml_words(key)} (quote it: "
                            f"'{key_node.value}':)", file=self.file,
                            line=where[0], column=where[1], key=key_path(path))
        return key

    def _items(self, node: yaml.MappingNode, path: JsonPath,
               at: tuple[int, int] | None) -> tuple[list[_Item], list[_Item]]:
        """A mapping's own entries, and the entries its merge key adds, first wins:
        each the key and value nodes, where to mark the key, where to mark the value
        (None: where it stands)."""
        explicit: list[_Item] = []
        merged: list[_Item] = []
        merges = 0
        for key_node, value_node in node.value:
            where = at or _mark(key_node)
            if key_node.tag != MERGE_TAG:
                explicit.append((key_node, value_node, where,
                                 self._alias_at(node, key_node, at)))
                continue
            merges += 1
            if merges > 1:
                raise SpecError("duplicate merge key '<<' (name several mappings in one: "
                                "<<: [*one, *two])", file=self.file, line=where[0],
                                column=where[1], key=key_path(path))
            use = self._alias_at(node, key_node, at)
            sources: list[tuple[yaml.Node, tuple[int, int] | None]] = []
            if isinstance(value_node, yaml.MappingNode):
                sources = [(value_node, use)]
            elif isinstance(value_node, yaml.SequenceNode):
                sources = [(item, self._alias_at(value_node, i, use))
                           for i, item in enumerate(value_node.value)]
            if not sources or any(not isinstance(s, yaml.MappingNode) for s, _ in sources):
                spot = use or _mark(value_node)
                raise SpecError("a merge key '<<' takes a mapping or a list of mappings "
                                "(<<: *name, <<: [*one, *two])", file=self.file,
                                line=spot[0], column=spot[1], key=key_path(path))
            for source, source_at in sources:
                own, more = self._items(source, path, source_at)  # type: ignore[arg-type]
                merged += own + more
        return explicit, merged


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


Marks = dict[JsonPath, tuple[int, int]]


#: characters YAML 1.1 (PyYAML) reads as line breaks that editors do not: in a
#: comment too, they would start a line of YAML and move every line number after them
_BREAKS = {"\x85": "NEXT LINE", "\u2028": "LINE SEPARATOR", "\u2029": "PARAGRAPH SEPARATOR"}
#: spaces YAML does not read as a space (text pasted from a web page or a document)
_SPACES = re.compile("[\u00a0\u1680\u180e\u2000-\u200b\u202f\u205f\u3000\ufeff]")


def _place(text: str, index: int) -> tuple[int, int]:
    """Line and column (1-based, lines as an editor counts them) of ``text[index]``."""
    start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - start + 1


def _refuse_breaks(text: str, file: str) -> None:
    """A U+0085, U+2028 or U+2029 is an error naming where it is: YAML would read it as
    a line break (also in a comment), parse what follows it as YAML, and count every
    line after it once more than an editor does."""
    found = [(text.find(char), char) for char in _BREAKS if char in text]
    if found:
        index, char = min(found)
        line, column = _place(text, index)
        raise SpecError(f"character U+{ord(char):04X} ({_BREAKS[char]}) is read as a line "
                        "break in YAML (also in a comment), though an editor shows none "
                        "there", file=file, line=line, column=column,
                        hint=f"remove it (in a double-quoted value write it as "
                        f"\\u{ord(char):04x})")


def _spaces_hint(text: str, line: int | None) -> str | None:
    """A hint naming an unusual space (a no-break space, ...) on the erring line or the
    one before it, which YAML reads as text, not as a space."""
    if line is None:
        return None
    lines = text.split("\n")
    for number in (line, line - 1):
        bom = number == 1 and text.startswith("\ufeff")  # a BOM YAML passes over
        if 1 <= number <= len(lines) and (m := _SPACES.search(lines[number - 1], bom)):
            return (f"line {number}, column {m.start() + 1} holds U+{ord(m.group()):04X} "
                    f"({unicodedata.name(m.group(), 'a space')}), which YAML does not "
                    "read as a space: replace it with a plain space")
    return None


def _open_key(text: str, index: int, *, whole: bool = True) -> str | None:
    """The key path a YAML syntax error at ``text[index]`` is in (:func:`open_path`)."""
    path = open_path(text, index, limit=MAX_DEPTH, whole=whole)
    return key_path(path) if path is not None else None


def parse_yaml(text: str, file: str) -> tuple[Any, Marks, Marks, dict[JsonPath, str]]:
    """YAML text to data plus the position of every value and every key, and the text
    of each plain scalar YAML did not read as text (:attr:`_Builder.written`)."""
    _refuse_breaks(text, file)
    try:
        loader = _Loader(text, file)
    except yaml.reader.ReaderError as exc:  # a character YAML forbids (ESC, NUL, ...)
        before = text[:exc.position]
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise SpecError(f"malformed YAML: character U+{code:04X} is not allowed in YAML "
                        "(a control character: remove it)", file=file,
                        line=before.count("\n") + 1,
                        column=exc.position - (before.rfind("\n") + 1) + 1,
                        key=_open_key(text, exc.position, whole=False)) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError("the file is empty" if not text.strip() else "the file holds "
                            "no YAML document, only comments", file=file, line=1)
        builder = _Builder(loader, file)
        return builder.build(node, ()), builder.marks, builder.key_marks, builder.written
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        problem = exc.problem or exc.context
        hint = ("YAML indents and separates with spaces: replace the tab with spaces"
                if problem and "'\\t'" in problem else _spaces_hint(text, line))
        raise SpecError(f"malformed YAML: {problem}", file=file, line=line, column=col,
                        key=_open_key(text, mark.index) if mark else None, hint=hint) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"malformed YAML: {exc}", file=file) from None
    except RecursionError:  # a last guard: _Loader refuses deep nesting before this
        mark = loader.get_mark()
        raise SpecError("the spec nests too deeply", file=file, line=mark.line + 1) from None
    finally:
        loader.dispose()
