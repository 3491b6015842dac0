"""courier-imap's view of a folder's IMAP keywords, read the way courier reads it.

Dovecot reads a message's keywords from the letters in its file name; courier-imap keeps
them in the folder's ``courierimapkeywords/`` directory instead (courier-libs,
``maildir/maildirkeywords2.c``, which these rules follow):

* ``:list``: the keywords, one per line, an empty line, then a line per message that has
  keywords: its file name up to ``:``, a ``:``, and the numbers of its keywords in that
  list separated by spaces (``NAME:0 2``). A number past the list counts for nothing; a
  later line for the same message replaces an earlier one.
* update files, newer than ``:list``: ``NAME`` (the newest: what courier writes when a
  client changes a message's keywords, and what mailplan's import writes) or ``.N.NAME``
  (N counts 5-minute intervals; courier renames an update it folded into ``:list`` so),
  a keyword per line up to an empty line. A message's newest update replaces its
  ``:list`` entry: ``NAME`` first, else the ``.N.NAME`` with the highest N. Names
  starting with ``:`` and ``.tmp.`` scratch files are not updates.

``verify`` uses this to check what courier-imap will show for each migrated message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TypeVar

DIRECTORY = "courierimapkeywords"
LIST = ":list"
_NEWEST = 1 << 62  # a plain ``NAME`` update outranks every ``.N.NAME``
_DOTTED = re.compile(r"\.(\d+)[^.]*\.(.+)", re.DOTALL)  # courier: atotime, then the next dot
_ATOI = re.compile(rb"[ \t\n\v\f\r]*([+-]?)(\d+)")
K = TypeVar("K")


def base_name(name: str) -> str:
    """A message file's name as courier keys keywords by: up to the first ``:``."""
    return name.split(":", 1)[0]


def update_of(entry: str) -> tuple[str, int] | None:
    """``(message name, rank)`` of an entry of ``courierimapkeywords/`` that is an update
    file (the higher rank wins), None for ``:list``, scratch files and other names."""
    if entry.startswith(":") or not entry:
        return None
    if not entry.startswith("."):
        return entry, _NEWEST
    m = _DOTTED.fullmatch(entry)
    if m is None or int(m.group(1)) == 0:  # courier: atotime 0 -> .tmp. or ignored
        return None
    return m.group(2), int(m.group(1))


def newest_updates(entries: Iterable[str]) -> dict[str, str]:
    """For each message name, the entry holding its newest update."""
    best: dict[str, tuple[int, str]] = {}
    for entry in entries:
        found = update_of(entry)
        if found is not None:
            name, rank = found
            if name not in best or rank > best[name][0]:
                best[name] = (rank, entry)
    return {name: entry for name, (_rank, entry) in best.items()}


def _lines(data: bytes) -> list[str]:
    return data.decode("utf-8", "surrogateescape").split("\n")


def parse_update(data: bytes) -> frozenset[str]:
    """The keywords of an update file: its lines up to the first empty one."""
    words = []
    for line in _lines(data):
        if not line:
            break
        words.append(line)
    return frozenset(words)


def _number(token: str) -> int:
    """C's ``atoi``: the leading number of ``token``, 0 when there is none."""
    m = _ATOI.match(token.encode("utf-8", "surrogateescape"))
    if m is None:
        return 0
    return -int(m.group(2)) if m.group(1) == b"-" else int(m.group(2))


def parse_list(data: bytes) -> dict[str, frozenset[str]]:
    """The keywords ``:list`` gives each message name."""
    lines = _lines(data)
    if lines and lines[-1] == "":
        lines.pop()  # the text after the last newline
    try:
        blank = lines.index("")
    except ValueError:
        return {}  # no message part (courier reads none either)
    names = lines[:blank]
    out: dict[str, frozenset[str]] = {}
    for line in lines[blank + 1:]:
        name, sep, numbers = line.partition(":")
        if not sep:
            continue
        picked = (_number(t) for t in numbers.split(" ") if t)
        out[name] = frozenset(names[n] for n in picked if 0 <= n < len(names))
    return out


def keywords_of(name: str, updates: Mapping[str, K], words: Mapping[K, frozenset[str]],
                listed: Mapping[str, frozenset[str]]) -> frozenset[str]:
    """What courier shows for message file ``name``: its newest update (``updates``: the
    key of each message's newest update, as :func:`newest_updates` names them or by any
    other key; ``words``: the keywords of each, :func:`parse_update`; an update missing
    there, unreadable, counts as no keywords), else its ``:list`` entry (``listed``,
    :func:`parse_list`), else none."""
    base = base_name(name)
    if base in updates:
        return words.get(updates[base], frozenset())
    return listed.get(base, frozenset())
