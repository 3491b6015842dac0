"""vpopmail's quota accounting (Maildir++ ``maildirsize``): each batch counted as it becomes
visible, and the whole file recounted at the end of a mailbox's import without losing a
delivery that lands meanwhile.

Part of the writer program (:mod:`mailplan.mail.writer`, which has the protocol):
stdlib only, Python 3.7, joined with the other parts into one script
(:mod:`mailplan.mail.writer.bundle`).
"""

from __future__ import annotations

import os
import re
import time

from mailplan.mail.writer.base import AgentBase
from mailplan.mail.writer.fs import append_lines
from mailplan.mail.writer.proto import NAME_RE

TYPE_CHECKING = False  # typing is not imported to run: it costs the agent's start 5 ms
if TYPE_CHECKING:  # annotations only
    from collections.abc import Iterator
    from typing import Any

_SIZE_RE = re.compile(r",S=(\d+)")  # a message file name's size (Maildir++)
#: a ``bytes count`` line of maildirsize; a definition (``10485760S,1000C``) has no space
_COUNT_LINE_RE = re.compile(r"-?\d+ +-?\d+\Z")
#: how old (ns) the newest change to a counted directory must be before a recount starts:
#: more than a tick of the kernel's coarse clock, which file times come from, so a change
#: after the recount's first look always gives a later mtime than that look saw
SETTLE_NS = 20_000_000
#: recounts of a Maildir whose directories keep changing while they are counted; the
#: last count is then kept (a later recount, or vpopmail's own, puts it right)
RECOUNTS = 3


class QuotaMixin(AgentBase):
    """The ``maildirsize`` file of the open Maildir."""

    def _count_quota(self, visible: list[list[str]]) -> None:
        """Add the messages just made visible to vpopmail's quota accounting, as a
        delivery does: one ``bytes count`` line appended to ``maildirsize`` (Maildir++),
        where the Maildir has one; ``.Trash`` is not counted (as ``quota``). The import's
        end recomputes the file anyway (``Z``); this keeps it right when a run is killed
        before that, so no later run has to. An empty file has no quota definition line:
        it gets an empty one first, so the count never becomes the first line, where
        Maildir++ readers take the quota from (courier's parser makes ``51 3`` a quota
        of 3 bytes) and vpopmail, which takes the user's quota from vpasswd, skips
        whatever is there (the batch uncounted); the recount keeps that empty line, as
        it keeps any definition."""
        path = os.path.join(self.root, "maildirsize")
        if not visible or not os.path.exists(path):  # no quota: no name is parsed
            return
        total = count = 0
        for dirname, name in visible:
            m = NAME_RE.match(name)
            if m is not None and dirname != ".Trash":
                total += int(m.group("size"))
                count += 1
        if not count:
            return
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
        try:
            line = f"{total} {count}\n".encode("ascii")
            append_lines(fd, line if os.fstat(fd).st_size else b"\n" + line)
        finally:
            os.close(fd)

    def quota(self) -> dict[str, Any]:
        """Recount ``maildirsize`` (where the Maildir has one) from the messages in the
        folders' new/ and cur/, keeping its first line, the quota definition, byte for
        byte. A delivery (vdelivermail renames its message into new/, then appends its
        ``bytes count`` line) may land while the folders are counted: its message missed
        by the count and its line appended to the file the recount then replaces, it
        would go uncounted. So the counted directories' mtimes are taken before the
        count (once no change to them is recent enough to share a clock tick with a
        later one) and again after the new file is in place: a change between the two
        means a recount (at most :data:`RECOUNTS` counts in all). A delivery renamed in
        after that second look appends its line to the new file, as it should."""
        path = os.path.join(self.root, "maildirsize")
        try:
            # the quota line is kept byte for byte, whatever it holds
            with open(path, encoding="ascii", errors="surrogateescape") as fh:
                definition = fh.readline().rstrip("\n")
        except FileNotFoundError:
            return {"maildirsize": False}
        if _COUNT_LINE_RE.match(definition):
            # a count where the definition goes (an empty file counted into by an earlier
            # mailplan, see _count_quota): no definition, as the file had none
            definition = ""
        counts = 0
        while True:
            counts += 1
            before = self._settled_times()
            total, count = self._quota_count()
            self._replace(path, f"{definition}\n{total} {count}\n")
            if self._quota_times() == before or counts == RECOUNTS:
                break
        return {"maildirsize": True, "bytes": total, "messages": count, "counts": counts}

    def _counted_dirs(self) -> Iterator[str]:
        """The new/ and cur/ of every folder but ``.Trash``: what the quota counts."""
        for dirname in self._folders():
            if dirname != ".Trash":
                for sub in ("new", "cur"):
                    yield os.path.join(self._folder_path(dirname), sub)

    def _quota_count(self) -> tuple[int, int]:
        """The bytes and the messages in :meth:`_counted_dirs`."""
        total = count = 0
        for where in self._counted_dirs():
            try:  # read as the directory is: no list of a large folder's names
                entries = os.scandir(where)
            except FileNotFoundError:
                continue
            with entries:
                for entry in entries:
                    m = _SIZE_RE.search(entry.name)
                    if m:
                        size = int(m.group(1))
                    else:
                        try:
                            size = entry.stat().st_size
                        except FileNotFoundError:  # expunged since the listing
                            continue
                    total += size
                    count += 1
        return total, count

    def _quota_times(self) -> dict[str, int]:
        """The mtime (ns) of each of :meth:`_counted_dirs`, by path."""
        times = {}
        for where in self._counted_dirs():
            try:
                times[where] = os.stat(where).st_mtime_ns
            except FileNotFoundError:
                continue
        return times

    def _settled_times(self) -> dict[str, int]:
        """:meth:`_quota_times` once the newest is :data:`SETTLE_NS` old (waited for:
        the import's own last renames are that recent); given as it is after
        :data:`RECOUNTS` waits (a Maildir changing all the time: the check after the
        count then finds the change)."""
        for _wait in range(RECOUNTS):
            times = self._quota_times()
            wait = max(times.values(), default=0) + SETTLE_NS - time.time_ns()
            if wait <= 0:
                break
            time.sleep(min(wait, SETTLE_NS) / 1e9)  # (an mtime ahead of this clock)
        return times
