"""Where in a spec's YAML a syntax error is: the key path open at the error's position.

PyYAML's syntax errors (a bad indent, "mapping values are not allowed here", a quote
left open) carry a line and column but no key. :func:`open_path` reads the text again
up to that position, event by event, with PyYAML's own parser (not a guess from the
indentation: comments, quoted, block and flow values are read as YAML reads them), and
returns the keys and sequence indexes of the collections still open there, for
:func:`mailplan.spec_yaml.parse_yaml` to name. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

JsonPath = tuple[str | int, ...]

#: what PyYAML counts as a line break (U+0085, U+2028, U+2029 never reach here: refused)
_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass
class _Open:
    """A mapping or sequence the parser has begun and not ended."""

    mapping: bool
    #: a mapping's last key (None: one that is no plain scalar, such as an alias)
    key: str | None = None
    #: a mapping: between two entries (else the value of ``key`` is being read)
    want_key: bool = True
    #: a mapping: the line (0-based) where the last value ended, when it is a scalar
    value_end: int | None = None
    #: a sequence: how many items it has so far
    items: int = 0
    #: a collection that is a mapping's key (YAML allows it; a spec never has one)
    is_key: bool = False
    #: a block collection's column (0-based; None: a flow one, which ignores indents)
    column: int | None = None


def open_path(text: str, index: int, *, limit: int, whole: bool = True
              ) -> JsonPath | None:
    """The path of the value being read at ``text[index]`` (a character index, as
    PyYAML's marks count), read from ``text`` up to there (``whole=False``: from the
    text before it alone, for an error PyYAML finds before it parses, such as a
    character it refuses): each open mapping gives the key whose value is open, each
    open sequence the index of its item that is open. A mapping between two entries
    gives the key before, when its value is a scalar ending on the error's line: the
    error is in that value or right after it (``host: new: x``, or a value that ran on
    into the next line, its indent too deep). An error at the first character of a
    line is in none of the block collections indented deeper than that line (YAML
    closes them there; the parser stopped before it did). None when nothing was open
    there (no document yet), when the path goes through a key that is no plain scalar,
    or when more than ``limit`` collections are open (too deep for a spec)."""
    breaks = list(_BREAK.finditer(text, 0, index))  # lines as PyYAML's marks count them
    line, start = len(breaks), breaks[-1].end() if breaks else 0
    stack: list[_Open] = []
    loader = yaml.SafeLoader(text if whole else text[:index])
    try:
        while loader.check_event() and len(stack) <= limit:
            event = loader.get_event()
            if event.start_mark.index >= index:  # what comes at the error or after it
                break
            _read(stack, event)
    except yaml.YAMLError:  # the error itself, or the end of the text before it
        pass
    finally:
        loader.dispose()
    if len(stack) > limit:
        return None
    # the error is where the line's text begins (not at a tab: no indent to YAML)
    if not text[start:index].strip(" ") and text[index:index + 1] not in ("", "\n", "\r",
                                                                          "\t"):
        _dedent(stack, index - start)
    return _path(stack, line)


def _dedent(stack: list[_Open], column: int) -> None:
    """Close the block collections that begin right of ``column``, as YAML does at a
    line whose text begins there."""
    deeper = next((i for i, each in enumerate(stack)
                   if each.column is not None and each.column > column), None)
    if deeper is None:
        return
    is_key = stack[deeper].is_key
    del stack[deeper:]
    if stack and is_key:
        _keyed(stack[-1], None)
    elif stack:
        _ended(stack[-1], None)


def _read(stack: list[_Open], event: yaml.Event) -> None:
    top = stack[-1] if stack else None
    as_key = top is not None and top.mapping and top.want_key
    if isinstance(event, yaml.CollectionStartEvent):
        stack.append(_Open(isinstance(event, yaml.MappingStartEvent), is_key=as_key,
                           column=None if event.flow_style else event.start_mark.column))
    elif isinstance(event, yaml.CollectionEndEvent):
        ended = stack.pop()
        if stack and ended.is_key:
            _keyed(stack[-1], None)
        elif stack:
            _ended(stack[-1], None)
    elif isinstance(event, yaml.ScalarEvent | yaml.AliasEvent) and top is not None:
        scalar = isinstance(event, yaml.ScalarEvent)
        end = event.end_mark
        # a block scalar (``|``, ``>``) ends where the line after its last one begins
        last = end.line - (end.column == 0 and end.index > event.start_mark.index)
        if as_key:
            _keyed(top, event.value if scalar else None)
        else:
            _ended(top, last if scalar else None)


def _keyed(mapping: _Open, key: str | None) -> None:
    mapping.key, mapping.want_key = key, False


def _ended(top: _Open, end_line: int | None) -> None:
    """A value of ``top`` read whole (``end_line``: where it ended, for a scalar)."""
    if top.mapping:
        top.want_key, top.value_end = True, end_line
    else:
        top.items += 1


def _path(stack: list[_Open], line: int) -> JsonPath | None:
    if not stack:
        return None
    path: list[str | int] = []
    for depth, each in enumerate(stack):
        last = depth == len(stack) - 1
        if each.mapping:
            if each.want_key and not (last and each.value_end == line):
                if not last:  # a collection as a key is open: no key to name
                    return None
                break
            if each.key is None:
                return None
            path.append(each.key)
        elif not last:
            path.append(each.items)
    return tuple(path)
