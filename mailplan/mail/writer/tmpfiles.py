"""The writer's files in tmp/: its marker, its anonymous and named files and what drops
them, and the files of other writers (a dead one's removed, a running one waited for).

Part of the writer program (:mod:`mailplan.mail.writer`, which has the protocol):
stdlib only, Python 3.7, joined with the other parts into one script
(:mod:`mailplan.mail.writer.bundle`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator

from mailplan.mail.writer.base import AgentBase
from mailplan.mail.writer.fs import _is_agent, link_noreplace, pid_alive, writer_alive
from mailplan.mail.writer.proto import ANONYMOUS, TMP_RE


class TmpFilesMixin(AgentBase):
    """Files in the tmp/ folders of the open Maildir."""

    def _wait_for_writers(self, limit: float) -> float:
        """Wait, up to ``limit`` seconds, until no other running agent has files in this
        Maildir's tmp/ folders; return the seconds waited. The writer of a run that was
        killed or failed finishes the sync it was asked for and removes its other files
        as it exits (a second or two): waiting for it leaves no debris behind this run
        and a complete ledger to read. One that does not end (its connection hangs) is
        not waited for longer: the ledger check at each sync still keeps its messages
        from being imported twice."""
        started = time.monotonic()
        while self._other_writers() and time.monotonic() - started < limit:
            time.sleep(0.05)
        return round(time.monotonic() - started, 3)

    def _other_writers(self) -> bool:
        """Whether another running agent has files in tmp/ of the open Maildir."""
        return any(pid != self.pid and pid_alive(pid) and _is_agent(pid)
                   for _path, pid in self._tmp_files())

    def _tmp_files(self) -> Iterator[tuple[str, int]]:
        """Each agent file in the tmp/ folders of the open Maildir: its path, and the
        process id its name holds."""
        for dirname in self._folders():
            tmp = os.path.join(self._folder_path(dirname), "tmp")
            try:
                names = os.listdir(tmp)
            except FileNotFoundError:
                continue
            for name in names:
                m = TMP_RE.match(name)
                if m:
                    yield os.path.join(tmp, name), int(m.group(1))

    def _clean_tmp(self) -> int:
        cleaned = 0
        for path, pid in list(self._tmp_files()):
            if pid != self.pid and not writer_alive(pid):
                try:
                    os.unlink(path)
                except FileNotFoundError:  # an IMAP server's tmp/ clean-up came first
                    continue
                cleaned += 1
        return cleaned

    def discard_unsynced(self) -> int:
        """Remove this agent's files still in tmp/ (queued for a sync that never came, or
        half-written when the input ended). Called once the sync process has stopped, so
        nothing renames them any more: a sender that drops the agent (closes its input,
        as mailplan does when the source changed under a read) leaves no debris. Only a
        killed agent does (named files and the marker only: anonymous files go with the
        process), and the next ``O`` of another agent removes them."""
        fds = [f for fds in self.job_fds for f in fds] + [q[6] for q in self.queue]
        if self.current is not None:
            fds.append(self.current[0])
            self.current = None
        for fd in fds:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.queue, self.job_fds, self.held, self.marker = [], [], 0, None
        if self.root is None:
            return 0
        removed = 0
        for path, pid in list(self._tmp_files()):
            if pid == self.pid:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                removed += 1
        return removed

    def _mark(self) -> bool:
        """Make a marker ``tmp/mailplan-PID-SEQ.tmp`` (empty) the way anonymous files
        become visible, and so learn whether they work in this Maildir. While this
        writer holds files there, it has a marker: another writer's ``open`` waits for it
        as for named files in tmp/ (``_wait_for_writers``), and the next ``open`` removes
        it once this process is gone (``_clean_tmp``). The sync process removes it after
        the batch that took the writer's last file (see ``sync_later``)."""
        tmp_dir = self._dir_fd("", "tmp")
        self.seq += 1
        name = f"mailplan-{self.pid}-{self.seq}.tmp"
        try:
            # this process as /proc knows it: in a PID namespace whose /proc is another
            # namespace's, /proc/PID would be another process
            self.proc_fds = f"/proc/{os.readlink('/proc/self')}/fd/"
            fd = os.open(".", ANONYMOUS, 0o600, dir_fd=tmp_dir)
            try:
                self._own(fd)
                link_noreplace(f"{self.proc_fds}{fd}", tmp_dir, name)  # False: ours
            finally:
                os.close(fd)
        except OSError:  # no O_TMPFILE here (EOPNOTSUPP, EISDIR), no /proc (ENOENT), ...
            self.anonymous = False
            return False
        self.anonymous, self.marker = True, name
        return True

    def _unmark(self, marker: str | None = None) -> None:
        """Remove this writer's marker (or ``marker``, the one a job names, in the sync
        process): the writer holds no file in the Maildir any more."""
        name, self.marker = marker or self.marker, None
        if name is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=self._dir_fd("", "tmp"))

    def _close(self, fds: Iterable[int]) -> None:
        """Close anonymous files (those not linked vanish), their pages dropped from the
        page cache first. Those are synced and linked by now (or never will be): nobody
        reads them soon, and the next files reuse the pages (cheaper than memory never
        touched, above all in a new VM, where the host backs each such page at its first
        write) instead of pushing the host's working set out (docs/performance.md)."""
        for fd in fds:
            with contextlib.suppress(OSError):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
            self.held -= 1

    def _discard(self, dirname: str, source: str, fd: int) -> None:
        """Drop a file that will not become visible: close it when anonymous (the sync
        process's link is done by then), else unlink its name from tmp/."""
        if fd >= 0:
            self._close((fd,))
        elif not source.startswith("/"):
            os.unlink(source, dir_fd=self._dir_fd(dirname, "tmp"))
