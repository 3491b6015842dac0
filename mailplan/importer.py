"""Mailbox import during apply: move the messages a plan listed into the user's Maildir.

One writer agent per apply worker on the target (a stdlib Python program started over
one channel, see :mod:`mailplan.mail.writer`) serves every user the worker takes, and one
streaming read per mailbox on the source (:class:`~mailplan.mail.snapshot.SnapshotStream`,
proven untorn). Messages are written to tmp/, synced in batches and only then named in
new/ or cur/, never overwriting; each durable batch is journaled as soon as the writer
acknowledges it (the next batch streams meanwhile), and the mailbox's checkpoint is
recorded once it is complete, from the bytes the import read, so the next run reads
only what was appended. A ``flags`` change goes through the same agent: one request
per folder renames the files of the messages that gain flags (:meth:`MailImporter.run`),
and so does a ``subscription`` change, adding a folder's missing subscription lines.
The plan side is :mod:`mailplan.mailboxes` (and :mod:`mailplan.subscriptions`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from datetime import tzinfo
from typing import Any

from mailplan import interpreter
from mailplan.connectors.base import CommandResult, Connector, Process
from mailplan.errors import ConnectionLost, HostError, MailboxRefused, StepFailed
from mailplan.facts.checkpoints import checkpoint_ends
from mailplan.facts.flag_gain import source_flags, split_gain
from mailplan.mail.agent_client import (
    AgentClient,
    AgentError,
    AgentFailed,
    AgentLost,
    agent_command,
    agent_display,
)
from mailplan.mail.convert import Delivered, import_mbox
from mailplan.mail.maildir import Identities
from mailplan.mail.mbox import MailboxError
from mailplan.mail.snapshot import SnapshotStream
from mailplan.mail.writer.proto import OTHER_OWNER, REFUSED
from mailplan.mailbox_changes import MailJob
from mailplan.mailboxes import maildir_of
from mailplan.plan import Change
from mailplan.remote import ShellSession, run_batch
from mailplan.shell import Cmd


def user_dirs(conn: Connector, vpopmail_dir: str, addresses: list[str]) -> dict[str, str]:
    """Each address's user directory (``vuserinfo -d``), all in one channel; addresses
    vuserinfo does not know are left out (the import then says so for that user)."""
    if not addresses:
        return {}
    results = run_batch(conn, [Cmd.of(f"{vpopmail_dir}/bin/vuserinfo", "-d", a).render()
                               for a in addresses])
    found = {}
    for address, res in zip(addresses, results, strict=True):
        udir = res.stdout.decode("utf-8", "replace").split("\n")[0]
        if res.returncode == 0 and udir.startswith("/"):
            found[address] = udir
    return found


def start_agent(target: Connector) -> Process:
    """Start a writer agent on ``target`` with the host's Python."""
    return target.start_stream(agent_command(target.python), display=agent_display(target.python))


class EarlyAgent:
    """A writer agent started on a thread before it is needed, so that its start-up (a
    channel and a Python interpreter on the target) overlaps apply's account steps. The
    first importer takes it; one nobody took is stopped by :meth:`discard`."""

    def __init__(self, target: Connector) -> None:
        self._proc: Process | None = None
        self._lock = threading.Lock()  # parallel workers each ask for it
        self._thread = threading.Thread(target=self._start, args=(target,), daemon=True,
                                        name="mailplan-agent-start")
        self._thread.start()

    def _start(self, target: Connector) -> None:
        # a failed start leaves nothing: the importer then starts its own agent, and that
        # start reports the error where the import can handle it
        with contextlib.suppress(Exception):
            self._proc = start_agent(target)

    def take(self) -> Process | None:
        """The started agent, to the first caller only."""
        self._thread.join()
        with self._lock:
            proc, self._proc = self._proc, None
        return proc

    def discard(self) -> None:
        """Stop the agent if nobody took it."""
        proc = self.take()
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.kill()


class MailImporter:
    """Runs mailbox changes during apply: one writer agent on the target, reused."""

    def __init__(self, source: Connector, target: Connector, session: ShellSession,
                 vpopmail_dir: str, mboxrd: bool,
                 record: Callable[[str, dict[str, Any]], None],
                 on_batch: Callable[[Change, int, int], None] | None = None,
                 user_dirs: dict[str, str] | None = None,
                 agent: Process | None = None, zone: tzinfo | None = None) -> None:
        self.source, self.target, self.session = source, target, session
        self.zone = zone  # the source's time zone (dates without a zone)
        self.vpopmail_dir, self.mboxrd, self.record = vpopmail_dir, mboxrd, record
        #: ``user@domain`` -> user directory, known from the plan's facts or read in one
        #: batch for the users this apply created (see :func:`user_dirs`)
        self.user_dirs = user_dirs or {}
        #: told (change, messages, bytes) after each durable batch has been journaled
        self.on_batch = on_batch
        #: the agent's process, when started (``agent``: started early, see EarlyAgent)
        self._proc: Process | None = agent
        self._client: AgentClient | None = None

    def _source_run(self, command: str) -> CommandResult:
        """A read-only command on the source, in the connection's shared shell (the
        per-batch checks would otherwise each start a remote shell)."""
        return self.source.shell().run(command)

    def _agent(self) -> AgentClient:
        if self._client is None:
            if self._proc is None:
                self._proc = start_agent(self.target)
            self._client = AgentClient(self._proc)
        return self._client

    def _user_dir(self, change: Change) -> str:
        address = f"{change.user}@{change.domain}"
        known = self.user_dirs.get(address)
        if known is not None:
            return known
        res = self.session.run(Cmd.of(f"{self.vpopmail_dir}/bin/vuserinfo", "-d",
                                      address).render())
        udir = res.stdout.decode("utf-8", "replace").split("\n")[0]
        if res.returncode != 0 or not udir.startswith("/"):
            raise StepFailed(f"vuserinfo does not know {address}", host=self.target.name,
                             step=f"+ mailbox {change.address}")
        return udir

    def run(self, change: Change, job: MailJob, *, recount: bool = True) -> dict[str, Any]:
        """Import one mailbox; journal each durable batch; return the final effect.
        ``recount``: recount the Maildir's ``maildirsize`` after an import (each batch is
        counted into it as it becomes visible; the recount, of every folder, puts right
        what else changed: apply asks it after a user's last import only).

        On any failure or stop (Ctrl-C stops at a journaled batch) the agent is dropped
        without a sync: what was streamed since the last sync never becomes visible (the
        agent removes it from tmp/) instead of becoming durable unjournaled."""
        try:
            if change.kind == "flags":
                return self._add_flags(change, job)
            if change.kind == "subscription":
                return self._subscribe(change, job)
            return self._import(change, job, recount)
        except BaseException:
            self.abort()
            raise

    def _import(self, change: Change, job: MailJob, recount: bool) -> dict[str, Any]:
        step = f"+ mailbox {change.address}"
        mb = job.mailbox
        udir = self._user_dir(change)
        client = self._agent()
        stream: SnapshotStream | None = None
        opened: dict[str, Any] = {}
        try:
            with self._writer_errors(step, "mailbox import", lambda: (
                    None if stream is None else stream.check_prior())):
                # exactly what the plan listed, proven untorn (mail.snapshot); started first,
                # so that its start-up on the source overlaps the agent's on the target
                # (a whole read ending messages where the checkpoint says earlier reads
                # ended proves that checkpoint's windows too: Start.ends_from); the file's
                # ctime is this apply's listing's (its re-plan's: MailJob is never saved)
                stream = SnapshotStream(self.source, mb.path, job.begin.offset, mb.size, step=step,
                                        run=self._source_run,
                                        prior=(job.begin.head, job.begin.tail),
                                        prior_at=job.begin.offset or job.begin.ends_from,
                                        ident=mb.ident, ctime=mb.listed_ctime)
                client, opened = self._open(udir)
                # a read from a checkpoint sends every appended message: the writer drops one
                # already there (the plan found few, if any), so the folder is not listed back
                # here; a whole read skips what the folder holds rather than resend it
                if mb.dirname:  # first: what it says counts for known()
                    client.create_folder(mb.dirname, mb.ledger_also)
                known = client.known(mb.dirname) if not job.begin.offset else set()

                def durable(batch: list[Delivered]) -> None:
                    size = sum(d.size for d in batch)
                    # the mode read in: another mode reads a >From message as another
                    self.record(change.id, {"mailbox": mb.key, "imported": len(batch),
                                            "bytes": size, "mboxrd": self.mboxrd})
                    if self.on_batch is not None:  # in the plan's measure (see MailJob)
                        self.on_batch(change, len(batch), sum(d.end - d.start for d in batch)
                                      if job.counted else size)

                report = import_mbox(client, stream, dirname=mb.dirname, known=known,  # type: ignore[arg-type]
                                     mtime=mb.mtime, mboxrd=self.mboxrd, offset=job.begin.offset,
                                     occurrences=dict(job.begin.seed), on_durable=durable,
                                     host=self.target.name, checkpoint=stream.checkpoint,
                                     zone=self.zone, ends=job.begin.ends)
                res = stream.wait()  # type: ignore[attr-defined]
                if res.returncode != 0:
                    raise StepFailed(f"reading {mb.path} on the source failed: "
                                     f"{res.stderr_text[:300]}",
                                     host=self.source.name, step=step)
                if job.subscribe and mb.dirname:
                    client.subscribe(mb.subscription)
                if recount:
                    client.refresh_quota()
        finally:
            if stream is not None:
                stream.close()  # a read cut short by a failure still ends (and is logged)
        # the read is proven to have ended at stream.end (mail.snapshot)
        digests = stream.checkpoint_digests(job.begin.head, job.begin.before)
        checkpoint = None if digests is None else {
            "path": mb.path, "inode": mb.inode, "offset": stream.end, "head": digests[0],
            "tail": digests[1], "count": job.begin.count + report.summary.messages,
            "mtime": mb.mtime}  # as listed: a later change without growth is a rewrite
        ledger = report.ledger_size if report.ledger_size is not None \
            else opened.get("ledger")
        if checkpoint is not None and isinstance(ledger, int):
            # every message before the offset has its ledger line before this size: the
            # next plan numbers appended messages from those lines only (mailbox_reads.py)
            checkpoint["ledger"] = ledger
        ends = checkpoint_ends(job.begin.ends, stream.end, stream.seen.tail)
        if checkpoint is not None and ends:
            # a last message taken without its final line end: a whole read ends it there
            checkpoint["ends"] = ends
        # no checkpoint rather than a doubtful one: the next plan reads the whole mailbox
        effect = {"mailbox": mb.key, "checkpoint": checkpoint, "domain": change.domain,
                  "user": change.user}
        if report.keywords.messages:  # for the operator (apply's on_note) and the journal
            effect["notes"] = [report.keywords.text()]
        if report.flags_added:  # messages found there, given this copy's flags (convert.py)
            effect["flags_added"] = report.flags_added
        return effect

    def _add_flags(self, change: Change, job: MailJob) -> dict[str, Any]:
        """Add the flags and keywords the source has to the folder's messages that lack
        them (one batched request: the agent renames each file as an IMAP client does,
        never over another, passing over one a mail client moved meanwhile), then record the
        mailbox's checkpoint when the plan found it complete (``MailJob.settled``) and
        no file was gone."""
        mb = job.mailbox
        with self._maildir_writer(change, f"~ flags {change.address}",
                                  "flags update") as client:
            # keywords become the folder's letters (a new one gets a free letter); one
            # left without (its 26 taken meanwhile) is not added, nor recorded
            asked = {k: (split_gain(value), source_flags(value))
                     for k, value in job.gain.items()}
            names = sorted({k for both in asked.values() for _f, kws in both for k in kws})
            letters = client.keyword_letters(mb.dirname, names) if names else {}

            def flags_of(flags: str, keywords: list[str]) -> str:
                return flags + "".join(sorted({letters[k] for k in keywords if k in letters}))

            # each with the source's flags and keywords, which the writer records (the
            # next plan proposes only what the source gains after them); one with
            # nothing to add (the source lost flags since) has only them recorded
            done = client.add_flags(mb.dirname, [
                (Identities.identity(k), f"{flags} {flags_of(*source)}")
                for k, (add, source) in asked.items()
                if (flags := flags_of(*add)) or not add[0] and not add[1]])
        effect: dict[str, Any] = {"mailbox": mb.key, "flags_added": done["renamed"],
                                  "flags_gone": done["gone"] + done["taken"],
                                  "domain": change.domain, "user": change.user}
        # a file passed over as gone (moved by a mail client between the writer's read
        # of the folder and its rename, as a SELECT moves new/ to cur/) may still lack
        # its flags: no checkpoint then, so the next plan reads the mailbox whole and
        # compares it again (read from a checkpoint, it never would); one whose new name
        # is taken by another file stays so, and is not planned again at every run
        if job.settled is not None and not done["gone"]:
            effect["checkpoint"] = job.settled["checkpoint"]
        return effect

    def _subscribe(self, change: Change, job: MailJob) -> dict[str, Any]:
        """Add the folder's lines to the Maildir's subscription files: the writer adds
        only those missing (a line a user added or kept stays), writing each file as it
        writes any (a new one with vpopmail's mode and owner)."""
        mb = job.mailbox
        with self._maildir_writer(change, f"+ subscription {change.address}",
                                  "subscription") as client:
            added = client.subscribe(mb.subscription)
        return {"subscription": mb.key, "added": added, "domain": change.domain,
                "user": change.user}

    @contextlib.contextmanager
    def _maildir_writer(self, change: Change, step: str, what: str) -> Iterator[AgentClient]:
        """The writer, opened on the user's Maildir (as its owner), for a request that
        is not an import (``what``: a flags update, a subscription), its failures mapped
        as an import's (:meth:`_writer_errors`)."""
        udir = self._user_dir(change)
        with self._writer_errors(step, what):
            client, _opened = self._open(udir)
            yield client

    def _open(self, udir: str) -> tuple[AgentClient, dict[str, Any]]:
        """The writer, opened on the Maildir of user directory ``udir`` as its owner,
        and what the open replied. A writer runs as one owner, the first Maildir's; a
        Maildir of another (a domain made with ``vadddomain -i`` or ``-u``: its users'
        directories are that owner's) gets a writer of its own, started in its place."""
        client = self._agent()
        try:
            return client, client.open(maildir_of(udir), owner_of_parent=True)
        except AgentFailed as exc:
            if OTHER_OWNER not in exc.message:
                raise
        self._last_words()  # it said so, and ends
        client = self._agent()
        return client, client.open(maildir_of(udir), owner_of_parent=True)

    @contextlib.contextmanager
    def _writer_errors(self, step: str, what: str,
                       mail_error: Callable[[], object] | None = None) -> Iterator[None]:
        """The failures of the writer and of the streams during ``what`` ("mailbox
        import", "flags update") as the step's errors: what a dead agent said (about its
        interpreter: with the hint), a lost connection, the agent's own report.
        ``mail_error`` runs first on a mail error (the source check of a read from a
        checkpoint of a rewritten mailbox)."""
        try:
            yield
        except AgentLost as exc:
            said = self._last_words()
            if said is not None and interpreter.about_interpreter(said):
                raise StepFailed(f"{what} failed: {said}", host=self.target.name,
                                 step=step, hint=interpreter.hint(self.target)) from None
            if said is not None:  # the agent failed (disk full, ...), not the connection;
                # a refusal (the agent ended before this side read it) fails this mailbox
                # only, as one read from the reply does
                kind = MailboxRefused if said.startswith(REFUSED) else StepFailed
                raise kind(f"{what} failed: agent: {said}", host=self.target.name,
                           step=step) from None
            raise ConnectionLost(f"{what} interrupted: {exc.message}",
                                 host=self.target.name, step=step) from None
        except AgentFailed as exc:
            # it said why and exits by itself: its own exit, not a kill, goes to the log
            self._last_words()
            # a Maildir its owner may not write (restored as root): this mailbox only
            kind = MailboxRefused if exc.message.startswith(f"agent: {REFUSED}") \
                else StepFailed
            raise kind(f"{what} failed: {exc.message}", host=self.target.name,
                       step=step) from None
        except MailboxError as exc:  # the agent's errors are mail errors too
            if mail_error is not None:
                mail_error()
            raise StepFailed(f"{what} failed: {exc.message}", host=self.target.name,
                             step=step) from None
        except OSError as exc:
            raise HostError(f"connection lost during the {what}: {exc}",
                            host=self.target.name, step=step) from None

    def _last_words(self) -> str | None:
        """The error a dead (or ending) agent, or the check of its interpreter, wrote on
        stderr (:func:`mailplan.interpreter.complaint`); None when the connection died.
        Its input is closed first: an agent still reading ends at its end."""
        proc, self._proc, self._client = self._proc, None, None
        if proc is None:
            return None
        try:
            with contextlib.suppress(OSError):
                proc.close_stdin()
            res = proc.wait()
        except (OSError, EOFError):
            return None
        return interpreter.complaint(res.stderr_text)

    def abort(self) -> None:
        """Drop the agent without a sync: its queued files never become visible, and it
        removes them from tmp/ when its input ends (mail.writer)."""
        if self._proc is not None:
            with contextlib.suppress(OSError):  # it may have exited already
                self._proc.kill()
        self._proc, self._client = None, None

    def close(self) -> None:
        """Stop the agent (it syncs anything still queued)."""
        if self._client is None and self._proc is not None:  # started early, never used
            self._client = AgentClient(self._proc)
        if self._client is not None:
            with contextlib.suppress(AgentError, OSError):
                self._client.quit()
            if self._proc is not None:
                with contextlib.suppress(OSError):  # the connection is gone: the error
                    self._proc.wait()  # that ended the import is the one to report
