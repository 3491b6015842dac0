"""The reads behind the mailbox plan: each source mailbox read, and compared with its folder.

A mailbox whose folder has nothing on the target yet takes every message: it is only
counted on the source. Any other is read as a stream (only the part after the last
checkpoint when its first and last 4 KiB still match) and its message identities are
compared with what the user's Maildir already holds (file names and the import ledger).
A mailbox unchanged since its checkpoint needs only its folder's ledger count
(:func:`ledger_lines`), so its Maildir is not listed; one that grew since needs only the
target's identities with the digests of the appended messages (looked up there after
the read, :func:`look_up_appended`); only a mailbox read whole has its folder listed, a
group of Maildirs at a time (:func:`whole_read_groups`: memory follows the largest
folder, not the number of users). Where each read begins is its :class:`Start`.
:func:`mailplan.mailboxes.plan_mail` calls these; :mod:`mailplan.mailbox_changes` judges
what they read.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from mailplan.connectors.base import Connector
from mailplan.facts.checkpoints import Checkpoint
from mailplan.facts.mailbox_scan import MailboxScan, scan_mailboxes
from mailplan.facts.maildirs import (
    LEDGER_BYTES,
    PENDING_KEY,
    FolderFlags,
    MaildirFacts,
    look_up_digests,
    read_ledger_counts,
    read_maildirs,
)
from mailplan.facts.source_mailbox import SourceMailbox
from mailplan.shell import chunks_within


@dataclass(frozen=True)
class Start:
    """Where a mailbox is read from: 0, or an earlier checkpoint's offset (with the
    occurrence seed of the messages before it, their number and the file's head digest)."""

    offset: int = 0
    seed: dict[str, int] = field(default_factory=dict)
    count: int = 0
    head: str = ""
    #: the checkpoint's ledger size (see Checkpoint.ledger): the plan numbers appended
    #: messages from the ledger lines before it
    ledger: int | None = None
    #: the file's bytes before a checkpoint taken while it was smaller than a window
    #: (its head window then; see mail.windows.grown_head), else empty
    before: bytes = b""
    #: the checkpoint's digest of the window before ``offset`` (or ``ends_from``; apply's
    #: read proves the file still holds it and ``head``: mail.snapshot's ``prior``)
    tail: str = ""
    #: where earlier reads ended (Checkpoint.ends, of a checkpoint that still matches):
    #: a whole read ends messages there, and the next checkpoint lists them again
    ends: tuple[int, ...] = ()
    #: a whole read given ``ends``: the offset of the checkpoint they come from, whose
    #: digests ``head`` and ``tail`` are (0: none). The ends mean what they meant only
    #: while the file holds those windows: apply's read proves it does, as a read from
    #: that checkpoint proves it (a spool rewritten since the plan is read again)
    ends_from: int = 0
    #: the file's bytes before ``offset`` (up to a window), as the check of the
    #: checkpoint read them, when it grew by less than a window since: the window before
    #: the end of a read of what was appended is those and the bytes read
    #: (mailbox_changes: the checkpoint of a mailbox found complete)
    window: bytes = b""


def _seed(known: set[tuple[str, int]]) -> dict[str, int]:
    seed: dict[str, int] = {}
    for sha, occ in known:
        seed[sha] = max(seed.get(sha, 0), occ + 1)
    return seed


def read_whole(group: list[SourceMailbox], where: dict[str, str], source_conn: Connector,
               target_conn: Connector, mboxrd: bool, reads: dict[str, Read],
               scans: dict[str, MailboxScan], sizes: dict[str, int | None],
               ends: dict[str, Checkpoint]) -> None:
    """List the identities a group of mailboxes read whole has on the target and read
    those that have some (the others, empty there, are counted later with every first
    import): their scans go to ``scans``, their reads to ``reads`` with the identities
    dropped, each Maildir's ledger size to ``sizes``. ``ends``: by mailbox key, the
    matching checkpoint that records where earlier reads ended (:attr:`Checkpoint.ends`):
    the read of a mailbox that has identities there ends messages there as those reads
    did (what they imported)."""
    wanted: dict[str, set[str]] = {}
    for mb in group:
        wanted.setdefault(where[mb.key], set()).update([mb.dirname, *mb.ledger_also])
    maildirs = read_maildirs(target_conn, wanted)
    there = []
    for mb in group:
        facts = maildirs.get(where[mb.key], MaildirFacts())
        sizes[where[mb.key]] = facts.ledger_size
        known = facts.known(mb.dirname)
        for earlier in mb.ledger_also:  # its directory's name before a rename
            known = known | facts.known(earlier)
        cp = ends.get(mb.key) if known else None
        begin = Start() if cp is None else Start(head=cp.head, tail=cp.tail, ends=cp.ends,
                                                  ends_from=cp.offset)
        reads[mb.key] = (mb, begin, set(), sum(facts.ledger_count.get(d, 0)
                                               for d in (mb.dirname, *mb.ledger_also)))
        if known:
            there.append((mb, 0, known))
    scans.update(zip([mb.key for mb, _s, _k in there],
                     scan_mailboxes(source_conn, there, mboxrd=mboxrd,
                                    ends={mb.path: reads[mb.key][1].ends
                                          for mb, _s, _k in there},
                                    there={mb.path: maildirs[where[mb.key]].flags.get(
                                        mb.dirname, {}) for mb, _s, _k in there}),
                     strict=True))


#: ledger bytes of the Maildirs whose identities a plan holds at once for mailboxes read
#: whole (about 100,000 identities: their sets, the listing of their message files and
#: the ledgers, some 45 MB); a Maildir with a larger ledger is listed alone
WHOLE_READ_LEDGER_BYTES = 8 << 20


def whole_read_groups(mailboxes: list[SourceMailbox], where: dict[str, str],
                      ledger_bytes: dict[str, int | None]) -> list[list[SourceMailbox]]:
    """The mailboxes read whole, in groups of Maildirs whose ledgers together hold at
    most :data:`WHOLE_READ_LEDGER_BYTES` (the ledger lists every message imported, so
    its size bounds the identities a folder has): a plan holds one group's identities
    at a time, so its memory follows the largest Maildir, not the number of users."""
    by_maildir: dict[str, list[SourceMailbox]] = {}
    for mb in mailboxes:
        by_maildir.setdefault(where[mb.key], []).append(mb)
    groups = chunks_within(by_maildir.items(), lambda its: (ledger_bytes.get(its[0]) or 0,),
                           (WHOLE_READ_LEDGER_BYTES,))
    return [[mb for _maildir, its in group for mb in its] for group in groups]


def ledger_lines(target_conn: Connector, mailboxes: list[SourceMailbox],
                 where: dict[str, str]
                 ) -> tuple[dict[str, int], dict[str, int | None], set[str],
                             dict[str, dict[str, bytes]], set[str]]:
    """How many identities each mailbox's folder ledger holds, each Maildir's ledger
    size in bytes, the Maildirs holding a stopped writer's pending record, each
    Maildir's subscription files, and the mailboxes whose folder the ledger records a
    writer made (counted and read on the target, in one batch; their Maildirs are not
    listed)."""
    files: dict[str, dict[str, bytes]] = {}
    made: dict[str, set[str]] = {}
    counts = read_ledger_counts(target_conn, sorted({where[mb.key] for mb in mailboxes}
                                                    - {""}), files, made)
    return ({mb.key: sum(counts.get(where[mb.key], {}).get(d, 0)
                         for d in (mb.dirname, *mb.ledger_also)) for mb in mailboxes},
            {m: c.get(LEDGER_BYTES) for m, c in counts.items()},
            {m for m, c in counts.items() if c.get(PENDING_KEY)}, files,
            {mb.key for mb in mailboxes if mb.dirname and not made.get(
                where[mb.key], set()).isdisjoint((mb.dirname, *mb.ledger_also))})


Read = tuple[SourceMailbox, Start, "set[tuple[str, int]] | None", int]


def look_up_appended(target_conn: Connector, reads: list[Read], scans: list[MailboxScan],
                     where: dict[str, str]) -> tuple[list[Read], set[str]]:
    """For each mailbox read from its checkpoint (``known`` None), ask its folder on the
    target about the digests of the appended messages only, then number them (the
    occurrence seed: how often each digest is there already) and count what is still to
    import. Memory follows the appended mail, not the size of the user's folder.

    Also the keys of the mailboxes, left unnumbered, with an appended message whose
    digest the folder's ledger holds before the checkpoint: the seed counts the copies
    imported, which may be more than the file holds before its checkpoint (the old server
    deleted one after it was imported, or another file fed the same INBOX: the spool,
    ``~/mbox``, a folder file named INBOX, each numbering its copies from 0, and the ledger
    does not say which file a line came from), so the appended copy would be numbered
    after them and imported again (the spool's message c-client moved into ``~/mbox``, a
    message delivered again after the old server deleted its other copy). Such a mailbox
    is read whole (:func:`reread_whole`), which numbers its copies by the file, as a plan
    without the state file does. A digest appended twice is rare: a delivery's own
    headers make its bytes unlike any other's."""
    pending = [(i, r, scans[i]) for i, r in enumerate(reads)
               if r[2] is None and not scans[i].error]
    only: dict[tuple[str, str], set[str]] = {}
    for _i, (mb, _b, _k, _n), scan in pending:
        only.setdefault((where[mb.key], mb.dirname), set()).update(
            entry[0] for entry in scan.appended)
    # the ledger lines before the latest of the checkpoints reading into a folder (an
    # INBOX's files have their own): a digest before an earlier one's is then among
    # ``early`` too, and has that mailbox read whole, never numbered as new
    before: dict[tuple[str, str], int | None] = {}
    for _i, (mb, begin, _k, _n), _s in pending:
        key = (where[mb.key], mb.dirname)
        had = before.get(key, begin.ledger)
        before[key] = None if had is None or begin.ledger is None \
            else max(had, begin.ledger)
    flags: dict[tuple[str, str], FolderFlags] = {}
    # the folders where appended messages with IMAP keywords may be found: what the
    # letters of their files name is read too
    named = {(where[mb.key], mb.dirname) for _i, (mb, _b, _k, _n), scan in pending
             if any(entry[4] for entry in scan.appended)}
    also = {(where[mb.key], mb.dirname): mb.ledger_also
            for _i, (mb, _b, _k, _n), _s in pending if mb.ledger_also}
    found, early = look_up_digests(target_conn, only, before, flags, named, also) \
        if only else ({}, {})
    out = list(reads)
    mixed = set()
    for i, (mb, begin, _k, ledger), scan in pending:
        key = (where[mb.key], mb.dirname)
        if {sha for sha, _occ in early[key]}.intersection(
                entry[0] for entry in scan.appended):
            mixed.add(mb.key)
            continue
        # the seed counts the copies before the checkpoint only: messages a killed run
        # made durable after it (their ledger lines come later) are appended ones
        seed = _seed(early[key])
        scan.number(seed, found[key], flags.get(key))
        out[i] = (mb, replace(begin, seed=seed), found[key], ledger)
    return out, mixed


def reread_whole(keys: set[str], reads: list[Read], scans: list[MailboxScan],
                 where: dict[str, str], source_conn: Connector, target_conn: Connector,
                 mboxrd: bool, sizes: dict[str, int | None],
                 ends: dict[str, Checkpoint]) -> None:
    """Read the mailboxes ``keys`` whole after all, compared with their folders'
    identities (:func:`look_up_appended` says why), in place of their reads from a
    checkpoint in ``reads`` and ``scans``; with their checkpoints' ``ends``."""
    again = [r[0] for r in reads if r[0].key in keys]
    whole: dict[str, Read] = {}
    whole_scans: dict[str, MailboxScan] = {}
    for group in whole_read_groups(again, where, sizes):
        read_whole(group, where, source_conn, target_conn, mboxrd, whole, whole_scans,
                   sizes, ends)
    left = [mb for mb in again if mb.key not in whole_scans]  # nothing there after all
    whole_scans.update(zip([mb.key for mb in left], scan_mailboxes(
        source_conn, [(mb, 0, set()) for mb in left], mboxrd=mboxrd), strict=True))
    for i, read in enumerate(reads):
        if read[0].key in keys:
            reads[i], scans[i] = whole[read[0].key], whole_scans[read[0].key]
