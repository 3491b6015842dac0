"""The sync process: what the writer queued made durable, then visible in new/ or cur/
under the Maildir's lock, with its ledger lines, in a process forked from the writer.

Part of the writer program (:mod:`mailplan.mail.writer`, which has the protocol):
stdlib only, Python 3.7, joined with the other parts into one script
(:mod:`mailplan.mail.writer.bundle`).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import signal

from mailplan.mail.writer.base import AgentBase
from mailplan.mail.writer.fs import (
    LIBC,
    PR_SET_PDEATHSIG,
    link_noreplace,
    rename_noreplace_at,
    sync_filesystem,
)
from mailplan.mail.writer.proto import (
    DIR_FLAGS,
    F_SETPIPE_SZ,
    IN_BUFFER,
    JOB,
    LEDGER,
    AgentError,
    fail,
    read_exact,
    write_all,
)

TYPE_CHECKING = False  # typing is not imported to run: it costs the agent's start 5 ms
if TYPE_CHECKING:  # annotations only
    from typing import Any


class SyncerMixin(AgentBase):
    """Syncs: the sync process, its jobs, and the batches it makes visible."""

    def sync(self) -> dict[str, Any]:
        """Make everything queued durable now (after any batch the sync process holds)."""
        self.drain()
        batch, present = self._take()
        try:
            return self._sync_batch(batch, present)
        finally:
            self._close([q[6] for q in batch if q[6] >= 0])
            self._unmark()

    def sync_later(self, through: int | None = None) -> None:
        """Hand what is queued (of the first ``through`` messages, when given) to the sync
        process, which replies when it is durable."""
        if self.syncer is None:
            self._start_syncer()
        batch, present = self._take(through)
        self.job_fds.append([q[6] for q in batch if q[6] >= 0])
        unmark = None
        if not self.queue and self.current is None:  # the marker goes with this batch
            unmark, self.marker = self.marker, None
        head = json.dumps({"root": self.root, "uid": self.uid, "gid": self.gid,
                           "present": present, "ledger_size": self.ledger_size,
                           "unmark": unmark}).encode("utf-8")
        # the batch as NUL-separated fields (no name holds a NUL): a third of JSON's cost
        body = "\0".join([f"{d}\0{t}\0{s}\0{n}\0{i[0]}\0{i[1]}"
                          for _e, d, t, s, n, i, _fd in batch]).encode("utf-8")
        write_all(self.job_w, b"".join((JOB.pack(len(head), len(body)), head, body)))
        self.jobs_sent += 1

    def drain(self) -> None:
        """Wait until the sync process has replied to every batch handed to it."""
        self._collect(block=True)
        if not self.queue and self.current is None:
            self._unmark()

    def _collect(self, *, block: bool) -> None:
        """Take the sync process's acknowledgements (all, waiting for them; or those
        already here) and close the anonymous files of each acknowledged batch."""
        while self.jobs_done < self.jobs_sent:
            if not block:
                import select  # only when the budget of open files is reached
                poll = select.poll()  # not select(): the pipe's fd may be past 1024
                poll.register(self.ack_r, select.POLLIN)
                if not poll.poll(0):
                    return
            acks = os.read(self.ack_r, 4096)
            if not acks:
                raise AgentError("the sync process ended without finishing its batches")
            for _ack in acks:
                self._close(self.job_fds.pop(0))
            self.jobs_done += len(acks)
            if not block:
                return

    def stop(self, *, kill: bool = False) -> None:
        """End the sync process (drained, or killed) and reap it."""
        if self.job_w < 0:
            return
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # its end is expected now
        if self.syncer is not None and kill:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.syncer, signal.SIGKILL)
        os.close(self.job_w)
        os.close(self.ack_r)
        self.job_w = self.ack_r = -1
        if self.syncer is not None:
            os.waitpid(self.syncer, 0)
            self.syncer = None

    def _syncer_ended(self, _signum: int, _frame: Any) -> None:
        """SIGCHLD before ``stop``: the sync process died (killed, or after replying an
        error). The agent stops too, whatever it was waiting for (the next frame, most
        likely), so the sender gets an error instead of waiting for a reply forever."""
        if self.syncer is None:
            return
        pid, status = os.waitpid(self.syncer, os.WNOHANG)
        if pid == 0:
            return
        self.syncer = None
        how = (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
               else f"exit status {os.WEXITSTATUS(status)}")
        raise AgentError(f"the sync process ended unexpectedly ({how})")

    def _take(self, through: int | None = None) -> tuple[list[Any], list[list[str]]]:
        """The queued messages and skipped identities among the first ``through`` (their
        identities are in ``present`` already)."""
        cut = _count_through(self.queue, through)
        batch, self.queue = self.queue[:cut], self.queue[cut:]
        cut = _count_through(self.skipped, through)
        skipped, self.skipped = self.skipped[:cut], self.skipped[cut:]
        return batch, [entry for _n, entry in skipped]

    def _start_syncer(self) -> None:
        """Fork the sync process. It shares nothing with this one but the open files:
        jobs (a JSON head and NUL-separated fields) come over one pipe, a byte per
        finished job goes back over another, replies go straight to stdout (this
        process replies only after ``drain``)."""
        job_r, self.job_w = os.pipe()
        with contextlib.suppress(OSError):  # room for whole jobs: no wait on a busy syncer
            fcntl.fcntl(self.job_w, F_SETPIPE_SZ, IN_BUFFER)
        self.ack_r, ack_w = os.pipe()
        self.out.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the sync process
            code = 1
            try:
                os.close(self.job_w)
                os.close(self.ack_r)
                # the agent's own: this process links them through /proc/AGENT/fd/N
                for fd in [q[6] for q in self.queue] + [f for fds in self.job_fds
                                                        for f in fds]:
                    if fd >= 0:
                        os.close(fd)
                if LIBC is not None and hasattr(LIBC, "prctl"):  # SIGKILL when the agent dies
                    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                if os.getppid() == parent:
                    code = self._sync_jobs(job_r, ack_w)
            finally:
                os._exit(code)
        os.close(job_r)
        os.close(ack_w)
        self.syncer = pid
        signal.signal(signal.SIGCHLD, self._syncer_ended)

    def _sync_jobs(self, job_r: int, ack_w: int) -> int:
        """The sync process's loop: each job synced, renamed, replied to and acknowledged,
        in order, until the agent closes the job pipe; an error is replied and ends it
        (and the agent with it: see ``_syncer_ended``)."""
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        jobs = open(job_r, "rb", buffering=IN_BUFFER)  # noqa: SIM115
        self.out = open(1, "wb", closefd=False)  # noqa: SIM115 - not the agent's buffer
        while True:
            try:
                head = read_exact(jobs, JOB.size)
                if head is None:
                    return 0
                head_len, body_len = JOB.unpack(head)
                job = json.loads(read_exact(jobs, head_len) or b"")
                fields = (read_exact(jobs, body_len) or b"").decode("utf-8").split("\0")
                batch = [(0, *fields[k:k + 4], (fields[k + 4], int(fields[k + 5])), -1)
                         for k in range(0, len(fields) - 5, 6)]
                if job["root"] != self.root:
                    self._close_dirs()
                self.root, self.uid, self.gid = job["root"], job["uid"], job["gid"]
                self.ledger_size = job["ledger_size"]
                result = self._sync_batch(batch, job["present"])
                if job["unmark"] is not None:
                    self._unmark(job["unmark"])
                self.reply(b"R", result)
            except Exception as exc:  # noqa: BLE001 - reported to the sender, then it ends
                fail(self.out, self._located(exc))
                return 1
            os.write(ack_w, b"a")

    def _sync_batch(self, batch: list[Any], present: list[list[str]]) -> dict[str, Any]:
        durable = []
        if batch:
            self.writing = batch[0][1]  # for a full disk's error (_located)
            # what is about to become visible, durable with the files: should this
            # process die between its renames and its ledger lines, the next open
            # appends the lines (``_recover_pending``)
            pending = os.path.join(self.root, f"mailplan-pending-{self.pid}")
            fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                self._own(fd)
                write_all(fd, "\0".join([f"{q[1]}\0{q[5][0]}\0{q[5][1]}"
                                         for q in batch]).encode("utf-8"))
            finally:
                os.close(fd)
            sync_filesystem(self.root, (path for group in (
                [pending], (os.path.join(self._folder_path(q[1]), "tmp", q[2]) for q in batch))
                for path in group))
            lock = os.open(self.root, DIR_FLAGS)
            try:
                # one writer's renames and ledger at a time; where the filesystem has no
                # locks (ENOLCK on an NFS without lockd) the ledger check still runs
                with contextlib.suppress(OSError):
                    fcntl.flock(lock, fcntl.LOCK_EX)
                durable, size = self._rename_batch(batch, present)
            finally:
                os.close(lock)
            dirs = {os.path.join(self._folder_path(q[1]), q[3]) for q in batch} | {self.root}
            sync_filesystem(self.root, itertools.chain(
                sorted(dirs), self._courier_paths(), [os.path.join(self.root, LEDGER)]))
            self.courier_files, self.courier_shared = [], {}
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pending)
            return {"durable": durable, "present": present, "ledger": size}
        return {"durable": durable, "present": present}

    def _rename_batch(self, batch: list[Any], present: list[list[str]]
                      ) -> tuple[list[list[str]], int]:
        """Rename a durable batch into new/ or cur/ and append its ledger lines (under the
        Maildir's lock); return the ``[dir, name]`` of each message made visible, and the
        ledger's size after those lines."""
        durable = []
        batch = self._drop_foreign(batch, present)
        lines = []
        for _n, dirname, source, subdir, name, ident, _fd in batch:
            if "a" <= name[-1] <= "z":  # keyword letters come last among the flags
                self._courier_keywords(dirname, name)
            if source.startswith("/"):
                fds, _, number = source.rpartition("/")
                made = link_noreplace(number, self._dir_fd(dirname, subdir), name,
                                      self._fd_dir(fds))
            else:
                made = rename_noreplace_at(self._dir_fd(dirname, "tmp"), source,
                                           self._dir_fd(dirname, subdir), name)
            if made:
                durable.append([dirname, name])
            else:  # the name exists: an anonymous file goes when the agent closes it
                self._discard(dirname, source, -1)
                present.append([dirname, name])
            lines.append(f"{dirname}\t{ident[0]}\t{ident[1]}\n")
            if subdir == "cur":  # its flags line (proto.FLAGS_LINE): what the import gave
                info = name.partition(":2,")[2]  # it, flags and keyword letters
                if info:
                    lines.append(f"{dirname}\t{ident[0]}\t{ident[1]}\t{info}\n")
        size = self._append_ledger(lines)
        self._count_quota(durable)
        for dirname in {q[1] for q in batch}:
            self.ledger_after[(self.root, dirname)] = size
        return durable, size

    def _drop_foreign(self, batch: list[Any], present: list[list[str]]) -> list[Any]:
        """The batch without the messages another writer made visible since this agent
        looked (an earlier run's writer, dropped, that was still finishing the sync it
        had been asked for). Every writer appends the ledger under the lock, so the
        ledger's size tells whether one did: usually it is the size this agent left or
        read, and nothing is scanned. Once one did, the folder's visible messages are
        listed, and this and every later batch for it is checked against that list."""
        try:
            size = os.stat(os.path.join(self.root, LEDGER)).st_size
        except FileNotFoundError:
            size = 0
        folders = {q[1] for q in batch}
        for dirname in folders:
            if size not in (self.ledger_size, self.ledger_after.get((self.root, dirname))):
                self.rescanned[(self.root, dirname)] = {
                    (d, o) for d, o, _s, _n in self._scan_dir(dirname)}
        theirs = {dirname: self.rescanned[(self.root, dirname)] for dirname in folders
                  if (self.root, dirname) in self.rescanned}
        if not theirs:
            return batch
        kept = []
        for q in batch:
            if q[1] in theirs and q[5] in theirs[q[1]]:
                self._discard(q[1], q[2], -1)
                present.append([q[1], q[4]])
            else:
                kept.append(q)
        return kept


def _count_through(entries: list[Any], through: int | None) -> int:
    """How many of ``entries`` (in E order, each starting with its E number) are among
    the first ``through`` messages (all of them when ``through`` is None)."""
    if through is None:
        return len(entries)
    n = 0
    while n < len(entries) and entries[n][0] <= through:
        n += 1
    return n
