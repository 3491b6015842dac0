"""Flags added to messages already imported (``G``): their files renamed as an IMAP client does.

Part of the writer program (:mod:`mailplan.mail.writer`, which has the protocol):
stdlib only, Python 3.7, joined with the other parts into one script
(:mod:`mailplan.mail.writer.bundle`).
"""

from __future__ import annotations

import contextlib
import os

from mailplan.mail.writer.base import AgentBase
from mailplan.mail.writer.fs import SourceVanished, fsync_each, rename_noreplace
from mailplan.mail.writer.proto import (
    COURIER_KEYWORDS,
    FLAG_LINE_RE,
    FLAGS_LINE,
    AgentError,
    key,
)

TYPE_CHECKING = False  # typing is not imported to run: it costs the agent's start 5 ms
if TYPE_CHECKING:  # annotations only
    from typing import Any


class FlagsMixin(AgentBase):
    """Flags added to messages in a folder (``G``); keyword letters among them also go
    to courier (``_courier_update``, of the keywords part: the Agent combines both)."""

    def add_flags(self, req: dict[str, Any]) -> dict[str, Any]:
        """``G``: add flags to messages of folder ``dir`` by renaming their files (the
        protocol says how); what is asked is held by identity (``key``), the folder is
        read once, and the renames wait until it is read (it is read once more only
        for files renamed in between). A line's source flags, when it has them, go to
        the ledger (``FLAGS_LINE``) for each message that has its flags now."""
        if self.root is None:
            raise AgentError("flags before open")
        wanted, source = _asked(req["dir"], req["add"])
        base = self._folder_path(req["dir"])
        lines = self._drop_recorded(req["dir"], wanted, source) if source else []
        renamed = taken = gone = 0
        courier, seen = False, set()
        todo = wanted
        for _attempt in (1, 2):
            moves, found = self._flag_moves(req["dir"], todo)
            seen |= found
            gone += len(todo) - len(found)  # not in the folder: deleted on the new server
            missed = {}
            for k, sub, name, new in moves:
                # keyword letters it gains: courier's update first, as at the import (it
                # reads one for a message it has: the file is there under its old name)
                if set(new.partition(":2,")[2]) - set(name.partition(":2,")[2]) - _CAPITALS:
                    courier = self._courier_update(req["dir"], new) or courier
                try:
                    if rename_noreplace(os.path.join(base, sub, name),
                                        os.path.join(base, "cur", new)):
                        renamed += 1
                    else:
                        taken += 1
                        source.pop(k, None)  # not given its flags: nothing to record
                except SourceVanished:
                    # renamed or deleted by a mail client between the link and the
                    # unlink (no renameat2): the name made here goes again, so that the
                    # file neither shows twice nor comes back; it is looked for again
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(base, "cur", new))
                    missed[k] = todo[k]
                except FileNotFoundError:
                    missed[k] = todo[k]
            # a file renamed since the folder was read (a client's SELECT moves new/ to
            # cur/, a flag set there renames it) is looked for once more under its new
            # name; one gone again is left to the next run
            todo = missed
            if not todo:
                break
        gone += len(todo)
        if renamed or courier:  # the new names are durable before the caller records them
            fsync_each(os.path.join(base, sub) for sub in ("cur", "new") + (
                (COURIER_KEYWORDS,) if courier else ()))
        lines += [source[k] for k in seen - set(todo) if k in source]
        if lines:  # after the renames are durable: a line never says more than is there
            self._append_durably(lines)
        return {"renamed": renamed, "gone": gone, "taken": taken}

    def _drop_recorded(self, dirname: str, wanted: dict[bytes, str], source: dict[bytes, str]
                       ) -> list[str]:
        """Take out of ``wanted`` the flags and keyword letters the ledger records the
        source had when they were last written (``_recorded_flags``): the user removed
        them here since. A message left with none to add (or asked none: the source lost
        flags since) is no longer asked; its flags line (of ``source``) is returned, to
        be appended, where the source's flags changed since (or none is recorded)."""
        lines = []
        recorded = self._recorded_flags(dirname, source)
        for k, line in source.items():
            had = recorded.get(k)
            if had is not None and k in wanted:
                wanted[k] = "".join(c for c in wanted[k] if c not in had)
            if not wanted.get(k):
                wanted.pop(k, None)
                if had is None or line.rpartition("\t")[2] != had + "\n":
                    lines.append(line)
        return lines

    def _flag_moves(self, dirname: str, wanted: dict[bytes, str]
                    ) -> tuple[list[tuple[bytes, str, str, str]], set[bytes]]:
        """The renames that give the messages of ``wanted`` (identity key -> flags to
        add) their flags, read from the folder now: ``(key, subdir, name, new name in
        cur/)`` each, and the keys found (a message that has them all needs none)."""
        found = set()
        moves = []
        for digest, occ, sub, name in self._scan_dir(dirname):
            k = key(digest, occ)
            add = wanted.get(k)
            if add is None:
                continue
            found.add(k)
            stem, info, old = name.partition(":2,")
            merged = "".join(sorted(set(old) | set(add)))
            if sub == "cur" and info and merged == old:
                continue  # it has them all already
            moves.append((k, sub, name, f"{stem}:2,{merged}"))
        return moves, found


def _asked(dirname: str, text: str) -> tuple[dict[bytes, str], dict[bytes, str]]:
    """The lines of a ``G`` request: the flags to add by identity (``key``; a line with
    none only has the source's flags to record), and the flags line (``FLAGS_LINE``) of
    each line that ends in the source's flags."""
    wanted, source = {}, {}
    for line in text.split("\n"):
        if not line:
            continue
        m = FLAG_LINE_RE.match(line)
        if m is None:
            raise AgentError(f"bad flags line {line[:100]!r}")
        k = key(m.group(1), int(m.group(2)))
        if m.group(3):
            wanted[k] = m.group(3)
        if m.group(4) is not None:
            source[k] = FLAGS_LINE.format(dirname, m.group(1), int(m.group(2)), m.group(4))
    return wanted, source


_CAPITALS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")  # Maildir flags; keywords are a-z
