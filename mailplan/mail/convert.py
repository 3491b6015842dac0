"""One mbox into one Maildir folder: reader events -> names -> agent frames -> journal.

This is the glue plan/apply calls per mailbox. It streams: memory stays flat whatever the
mailbox or message size. Messages whose identity is already known on the target (from a
scan: files or ledger) are not sent at all; every other message is sent, and reported to
``on_durable`` only once the agent acknowledged it durable, so the caller journals exactly
what is safely on disk. A batch is synced every ``batch_messages`` messages or
``batch_bytes`` bytes (one filesystem sync per batch, not per file), without waiting:
the stream goes on while the source is checked for the batch and the target syncs it.
A batch's sync is asked for (naming the last message it holds: later ones stay
invisible in tmp/) only once its source check passed and ``syncs_in_flight``
(default 0) earlier syncs are acknowledged and journaled, so a run killed or cut off
leaves at most one sync's messages durable on the target but not journaled (the next
run finds them there and does not import them again): one batch, or at the end of the
read the batches still waiting and the rest, which go in one sync rather than one
flush after another.

A message found already in the folder (``known``, or dropped by the writer as present)
may carry flags on the source its file lacks: the copy imported was another file's (the
spool and ~/mbox both feed the INBOX, and c-client copies between them) or made before
the old server's reader changed it. Those flags are added once the read ended (``G``,
the union a plan's flags change adds), so a mailbox is never recorded complete with
flags missing that no later plan would compare (it reads only what is appended).
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence, Set
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import NamedTuple

from mailplan.mail.agent_client import AgentClient, SyncResult
from mailplan.mail.bookkeeping import KEYWORD, KeywordLoss
from mailplan.mail.maildir import Identities, format_name, name_tail
from mailplan.mail.mbox import MboxReader, MboxSummary, MessageEnd, MessageStart, Readable

HOLD_BYTES = 1 << 20
MAX_PENDING = 2  # batches read ahead of their source check before the read waits
POLL_EVERY = 64  # messages between looks for acknowledgements and passed checks


class Delivered(NamedTuple):
    """A message the agent made durable: where it came from and where it went (a named
    tuple: one is made per message)."""

    dirname: str
    name: str
    sha256: str
    occurrence: int
    start: int
    end: int
    size: int


@dataclass
class ImportReport:
    """Counts of one mailbox import."""

    durable: int = 0
    already_present: int = 0
    bytes_sent: int = 0
    summary: MboxSummary = field(default_factory=MboxSummary)
    #: the Maildir ledger's size after the last sync (None: nothing was synced)
    ledger_size: int | None = None
    #: messages sent without some of their IMAP keywords (no letter for them)
    keywords: KeywordLoss = field(default_factory=KeywordLoss)
    #: messages found already in the folder whose files gained the source's flags
    flags_added: int = 0


def import_mbox(client: AgentClient, stream: Readable, *, dirname: str,
                known: Set[tuple[str, int]] | None = None, mtime: float | None = None,
                mboxrd: bool = False, offset: int = 0,
                occurrences: dict[str, int] | None = None,
                on_durable: Callable[[list[Delivered]], None] | None = None,
                batch_messages: int = 2000, batch_bytes: int = 64 << 20,
                syncs_in_flight: int = 0,
                checkpoint: Callable[[], Callable[[], None] | None] | None = None,
                host: str | None = None, zone: tzinfo | None = None,
                ends: Sequence[int] = ()) -> ImportReport:
    """Import every message of ``stream`` into folder ``dirname`` through ``client``.

    ``known`` holds identities already on the target (``AgentClient.known(dirname)``);
    ``ends``: where earlier reads ended (:class:`~mailplan.mail.mbox.MboxReader`).
    ``checkpoint`` is called at the end of each batch, in the reading thread; the check
    it returns (the source read proving it is not torn so far) runs on a worker thread
    while the stream goes on, and the batch's sync is asked for only once it returned.
    An exception from a check stops the import with that batch and later ones unsynced.
    """
    reader = MboxReader(stream, offset=offset, mboxrd=mboxrd, mtime=mtime,
                        occurrences=occurrences, zone=zone, ends=ends)
    if dirname:
        client.create_folder(dirname)
    run = _Import(client, dirname, ImportReport(summary=reader.summary),
                  known=known or frozenset(),
                  tail=name_tail(host or socket.gethostname().split(".")[0]),
                  on_durable=on_durable, checkpoint=checkpoint,
                  limits=(batch_messages, batch_bytes), syncs_in_flight=syncs_in_flight)
    return run.run(reader)


class _Import:
    """One :func:`import_mbox`: the messages sent and not yet acknowledged durable, the
    batches read whose sync is not asked for yet, and the flags of messages found there."""

    def __init__(self, client: AgentClient, dirname: str, report: ImportReport, *,
                 known: Set[tuple[str, int]], tail: str,
                 on_durable: Callable[[list[Delivered]], None] | None,
                 checkpoint: Callable[[], Callable[[], None] | None] | None,
                 limits: tuple[int, int], syncs_in_flight: int) -> None:
        self.client, self.dirname, self.report = client, dirname, report
        self.known, self.tail, self.pid = known, tail, os.getpid()
        self.on_durable, self.checkpoint = on_durable, checkpoint
        self.batch_messages, self.batch_bytes = limits
        self.syncs_in_flight = syncs_in_flight
        self.letters = _Keywords(client, dirname, report.keywords)
        self.batch: dict[str, MessageEnd] = {}  # sent, not yet acknowledged durable
        self.batch_size = self.batch_count = 0
        # batches read whose sync is not asked for yet: (messages sent through it, its check)
        self.pending: deque[tuple[int, Future[None] | None]] = deque()
        self.checks = ThreadPoolExecutor(max_workers=1,
                                         thread_name_prefix="mailplan-source-check")
        # flags (and keyword letters) of messages found already there, by identity key
        # (Identities.key: 40 bytes, not a tuple of the hex text: a folder read whole
        # after a rewrite may find all its messages there); a folder has few distinct
        # flags strings
        self.found: dict[bytes, str] = {}
        self.shared: dict[str, str] = {}

    def run(self, reader: MboxReader) -> ImportReport:
        """Read and send every message, then sync the rest and add the flags of those
        found there."""
        try:
            self._read(reader)
            self._finish()
        except BaseException as exc:
            # a torn source found by a batch's check comes first: the read may have
            # ended badly because of that very rewrite
            torn = next((f.exception() for _t, f in self.pending
                         if f is not None and f.exception() is not None), None)
            if torn is not None and torn is not exc:
                raise torn from exc
            raise
        finally:
            self.checks.shutdown(wait=True)
        return self.report

    def _read(self, reader: MboxReader) -> None:
        """The hot loop: small messages go as one frame; big ones start streaming once
        1 MiB is held."""
        client, dirname, known = self.client, self.dirname, self.known
        head: MessageStart | None = None
        held: list[bytes] = []
        held_size = 0
        sending = False
        for event in reader:
            if isinstance(event, bytes):
                if sending:
                    client.data(event)
                    continue
                held.append(event)
                held_size += len(event)
                if held_size >= HOLD_BYTES:
                    client.begin(dirname)
                    client.data(b"".join([head.headers, *held]))  # type: ignore[union-attr]
                    held.clear()
                    sending = True
            elif isinstance(event, MessageStart):
                head, sending, held_size = event, False, 0
                held.clear()
            elif sending:
                name = self._name(event, head)  # type: ignore[arg-type]
                client.end(event.subdir, name, event.arrival)
                self._sent(name, event)
            elif known and event.identity in known:  # a first import knows none
                self._known(event, head)  # type: ignore[arg-type]
            else:
                # the common case: the whole message was held; B, D and E go out together
                name = self._name(event, head)  # type: ignore[arg-type]
                client.message(dirname, [head.headers, *held],  # type: ignore[union-attr]
                               event.subdir, name, event.arrival, size=event.size)
                held.clear()
                self._sent(name, event)

    def _name(self, event: MessageEnd, head: MessageStart) -> str:
        return _name(event, self.tail, self.pid, self.letters(head.keywords))

    def _known(self, event: MessageEnd, head: MessageStart) -> None:
        """A message already in the folder: not sent; its source flags kept for the end."""
        self.report.already_present += 1
        if event.flags or head.keywords:
            self._found_there(event.identity, event.flags + self.letters(head.keywords))

    def _found_there(self, identity: tuple[str, int], flags: str) -> None:
        self.found[Identities.key(identity)] = self.shared.setdefault(flags, flags)

    def _sent(self, name: str, event: MessageEnd) -> None:
        """Count a message sent; at a batch's end, start its source check and ask for
        the syncs that may go."""
        self.batch[name] = event
        self.batch_size += event.size
        self.batch_count += 1
        self.report.bytes_sent += event.size
        if self.batch_count >= self.batch_messages or self.batch_size >= self.batch_bytes:
            check = self.checkpoint() if self.checkpoint is not None else None
            self.pending.append((self.client.ended,
                                 self.checks.submit(check) if check else None))
            self.batch_size = self.batch_count = 0
            self._advance(block=len(self.pending) > MAX_PENDING)
        elif (self.pending or self.client.outstanding) and not self.batch_count % POLL_EVERY:
            self._advance(block=False)  # journal acknowledgements soon after they arrive

    def _finish(self) -> None:
        """The read is over: the batches still waiting for their sync go in one sync
        with the rest (checked by the read's own end), not in turn, each waiting for the
        previous one's flush; then the flags of messages found there are added."""
        for _through, check in self.pending:
            if check is not None:
                check.result()  # raises what the check found
        self.pending.clear()
        self.pending.append((self.client.ended, None))
        self._advance(block=True)
        for result in self.client.synced():
            self._settle(result)
        if self.found:  # each with the source's flags and keyword letters, which the
            # writer records; what it recorded at the last write and the file lacks is
            # not added
            self.report.flags_added = self.client.add_flags(self.dirname, (
                (Identities.identity(k), f"{flags} {flags}")
                for k, flags in self.found.items()))["renamed"]

    def _advance(self, *, block: bool) -> None:
        """Journal the acknowledgements that are here, and ask for each pending batch's
        sync, in order, once its check passed and at most ``syncs_in_flight`` earlier
        syncs are unacknowledged; with ``block``, wait until every pending one is asked."""
        client, pending = self.client, self.pending
        while True:
            for result in client.synced(keep=self.syncs_in_flight if block
                                        else client.outstanding):
                self._settle(result)
            if not pending:
                return
            through, check = pending[0]
            if not block and (client.outstanding > self.syncs_in_flight
                              or (check is not None and not check.done())):
                return
            if check is not None:
                check.result()  # raises what the check found
            pending.popleft()
            client.sync_async(through=through)

    def _settle(self, result: SyncResult) -> None:
        """Journal a sync's durable messages; note the flags of those found there."""
        done: list[Delivered] = []
        for d, name in result.durable:
            end = self.batch.pop(name)
            done.append(Delivered(d, name, end.sha256, end.occurrence, end.start, end.end,
                                  end.size))
        for _d, name in result.present:
            end = self.batch.pop(name, None)
            flags = name.partition(":2,")[2]  # as the plan names the message
            if end is not None and flags:
                self._found_there(end.identity, flags)
        self.report.durable += len(done)
        self.report.already_present += len(result.present)
        if result.ledger is not None:
            self.report.ledger_size = result.ledger
        if self.on_durable and done:
            self.on_durable(done)


def _name(end: MessageEnd, tail: str, pid: int, keywords: str = "") -> str:
    """The message's file name (``message_name``'s, with ``tail`` from ``name_tail``);
    ``keywords``: the letters of its IMAP keywords, after its flags."""
    return format_name(end.arrival, int(time.time() * 1e6) % 1000000, pid, end.sha256,
                       end.occurrence, tail, end.size,
                       None if end.subdir == "new" else end.flags + keywords)


class _Keywords:
    """A folder's keyword letters, asked of the writer once per keyword it has not seen
    (a round trip only when a new keyword appears, not per message); a message's
    keywords that get none are counted in ``lost``."""

    def __init__(self, client: AgentClient, dirname: str, lost: KeywordLoss) -> None:
        self.client, self.dirname, self.lost = client, dirname, lost
        self.letters: dict[str, str] = {}
        self.asked: set[str] = set()

    def __call__(self, keywords: tuple[str, ...]) -> str:
        if not keywords:
            return ""
        new = [k for k in dict.fromkeys(keywords) if k not in self.asked and KEYWORD.fullmatch(k)]
        if new:
            self.asked.update(new)
            self.letters.update(self.client.keyword_letters(self.dirname, new))
        missing = [k for k in dict.fromkeys(keywords) if k not in self.letters]
        if missing:
            self.lost.add(missing)
        return "".join(sorted({self.letters[k] for k in keywords if k in self.letters}))
