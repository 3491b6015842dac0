"""Mailbox plan: what each source mailbox still has to move, and into which folder.

List the source mailboxes of every migrated user (spool file = INBOX, files under the
folder directory = folders). A mailbox whose folder has nothing on the target yet takes
every message: it is only counted on the source. Any other is read as a stream (only the
part after the last checkpoint when its first and last 4 KiB still match) and its
message identities are compared with what the user's Maildir already holds (file names
and the import ledger). A mailbox unchanged since its checkpoint needs only its folder's
ledger count, so its Maildir is not listed; one that grew since needs only the target's
identities with the digests of the appended messages (looked up there after the read,
:func:`_look_up_appended`); only a mailbox read whole has its folder listed, a group of
Maildirs at a time (:func:`_whole_read_groups`: memory follows the largest folder, not
the number of users). One ``mailbox`` change per folder with messages to import, and
one per folder with none whose directory is missing on the target (an empty folder, or
one holding only UW-IMAP's internal message: :func:`_missing_folders`), so that the
user's folder tree (Sent, Drafts, Trash after an expunge) exists on the new server;
everything else is explained.
A mailbox read whole (or past its checkpoint) and found entirely on the target gets a
checkpoint for apply to record in the state only (``MailPlan.settled``).
Each message such a read finds already in its folder is compared with its file there:
the Maildir flags the source gives it (set on the old server after its import) and the
file lacks make one ``flags`` change per mailbox (:func:`_flags_change`): apply adds
them, never removes one, and records that mailbox's checkpoint only then.

Apply carries out the ``mailbox`` changes with the jobs kept here: see
:mod:`mailplan.importer`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from mailplan.connectors.base import Connector
from mailplan.desired import Desired, Problem
from mailplan.facts.checkpoints import Checkpoint, checkpoint_ends, still_valid
from mailplan.facts.mailbox_scan import MailboxScan, count_mailboxes, scan_mailboxes
from mailplan.facts.mailboxes import MailboxRef, SourceMailbox, list_source_mailboxes
from mailplan.facts.maildirs import (
    LEDGER_BYTES,
    PENDING_KEY,
    MaildirFacts,
    look_up_digests,
    missing_folders,
    read_ledger_counts,
    read_maildirs,
)
from mailplan.facts.notes import MailboxNote
from mailplan.facts.source import SourceFacts
from mailplan.facts.vpopmail import TargetFacts
from mailplan.mail.windows import WINDOW, digest, grown_head
from mailplan.names import human_size
from mailplan.plan import Change, Noop
from mailplan.shell import chunks_within
from mailplan.spec import folder_names
from mailplan.subscriptions import (
    source_subscriptions,
    subscribed_text,
    subscribes,
    subscription_changes,
)
from mailplan.text import marked


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


@dataclass
class MailJob:
    """What apply needs to import one mailbox (kept in memory, never saved)."""

    mailbox: SourceMailbox
    begin: Start
    count: int
    size: int
    subscribe: bool
    #: ``size`` is the mbox's (a first import counted on the source): progress counts
    #: each message's bytes in the mbox, not as stored, so that it ends at the total
    counted: bool = False
    #: a ``flags`` change: the flags to add to messages already in the folder, by
    #: identity (:attr:`~mailplan.facts.mailbox_scan.MailboxScan.gain`)
    gain: dict[bytes, str] = field(default_factory=dict)
    #: a ``flags`` change of a mailbox found complete on the target: its checkpoint
    #: (a ``settled`` entry), recorded once the flags are added, not before: a later
    #: plan reads the mailbox from it, and would not see flags still missing
    settled: dict[str, Any] | None = None


@dataclass
class MailPlan:
    """The mailbox part of a plan."""

    changes: list[Change] = field(default_factory=list)
    noops: list[Noop] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    #: migrated all the same, but worth the administrator's look (Plan.warnings)
    warnings: list[Problem] = field(default_factory=list)
    jobs: dict[str, MailJob] = field(default_factory=dict)
    #: checkpoints of mailboxes read to their end and found already on the target
    #: (state entries: apply records them, so later plans read only what is appended)
    settled: list[dict[str, Any]] = field(default_factory=list)


def _refs(spec_data: dict[str, Any], desired: Desired, source: SourceFacts) -> list[MailboxRef]:
    src = spec_data["source"]
    spool_dir = src.get("spool", "/var/spool/mail").rstrip("/")
    folders = src.get("folders", "mail")
    refs = []
    for dname, domain in sorted(desired.domains.items()):
        if not domain.import_mail:
            continue
        for uname, user in sorted(domain.users.items()):
            account = source.accounts.get(user.source) if user.source else None
            if account is None and not (user.spool or user.folders):
                continue
            acct = account.name if account else uname
            home = account.home.rstrip("/") if account else ""
            folder_dir = user.folders or (folders.replace("%u", acct) if folders.startswith("/")
                                          else f"{home}/{folders}")
            refs.append(MailboxRef(dname, uname, acct, user.spool or f"{spool_dir}/{acct}",
                                   folder_dir, home, src.get("folder_names") == "mutf7"))
    return refs


def mailbox_refs(spec_data: dict[str, Any], desired: Desired, source: SourceFacts
                 ) -> list[MailboxRef]:
    """Where each migrated user's mail lives on the source (also used by verify)."""
    return _refs(spec_data, desired, source)


def maildir_of(user_dir: str) -> str:
    """vpopmail keeps a user's mail in USERDIR/Maildir."""
    return f"{user_dir.rstrip('/')}/Maildir"


def _checkpoint(state_mail: dict[str, Any], key: str) -> Checkpoint | None:
    raw = state_mail.get(key, {}).get("checkpoint")
    if not raw:
        return None
    ledger = raw.get("ledger")
    # none in a state file from before they were recorded; State refuses a damaged list
    ends = tuple(sorted(set(raw.get("ends") or ())))
    return Checkpoint(raw["path"], raw["inode"], raw["offset"], raw["head"], raw["tail"],
                      ledger if isinstance(ledger, int) else None, ends)


def with_ends(mailboxes: list[SourceMailbox], state_mail: dict[str, Any]
              ) -> list[tuple[SourceMailbox, Checkpoint]]:
    """The mailboxes whose checkpoint records where earlier reads ended
    (:attr:`Checkpoint.ends`), with it: once :func:`still_valid` found it matching the
    file, a whole read of one ends messages there as those reads did."""
    return [(mb, cp) for mb in mailboxes
            if (cp := _checkpoint(state_mail, mb.key)) is not None and cp.ends]


def _seed(known: set[tuple[str, int]]) -> dict[str, int]:
    seed: dict[str, int] = {}
    for sha, occ in known:
        seed[sha] = max(seed.get(sha, 0), occ + 1)
    return seed


def plan_mail(spec_data: dict[str, Any], source_conn: Connector, target_conn: Connector,
              desired: Desired, source: SourceFacts, target: TargetFacts,
              state_mail: dict[str, Any]) -> MailPlan:
    """The mailbox changes: read-only on both hosts."""
    out = MailPlan()
    refs = _refs(spec_data, desired, source)
    if not refs:
        return out
    source_conn.prepare_streams()  # the mailbox scan streams: set that up meanwhile
    mboxrd = bool(spec_data["source"].get("mboxrd", False))
    mailboxes, notes = list_source_mailboxes(source_conn, refs, folder_names(spec_data))
    for note in notes:
        _file(out, note)
    where = {}  # mailbox -> the Maildir of its user on the target ("" while there is none)
    for mb in mailboxes:
        tdom = target.domains.get(mb.domain)
        tuser = tdom.users.get(mb.user) if tdom else None
        where[mb.key] = maildir_of(tuser.dir) if tuser is not None else ""
    subscribed = source_subscriptions(source_conn, refs, source)
    checkpoints = [(mb, _checkpoint(state_mail, mb.key)) for mb in mailboxes]
    with_cp = [(mb, cp) for mb, cp in checkpoints if cp is not None]
    small_heads: dict[int, bytes] = {}
    ended: set[int] = set()
    valid = dict(zip([mb.key for mb, _ in with_cp],
                     still_valid(source_conn, with_cp, small_heads, ended), strict=True))
    before = {with_cp[i][0].key: data for i, data in small_heads.items()}
    # a checkpoint whose offset follows no line end is where a read took a settled last
    # message as it was: one of the ends, though a state file from before they were
    # recorded does not list it
    for i in ended:
        mb, cp = with_cp[i]
        with_cp[i] = (mb, replace(cp, ends=tuple(sorted({*cp.ends, cp.offset}))))
    found = {mb.key: cp for mb, cp in with_cp}
    checkpoints = [(mb, found.get(mb.key)) for mb, _cp in checkpoints]
    # where earlier reads ended, of the checkpoints that still match (trusted or not: a
    # whole read compared with what those reads imported ends messages there too)
    ends = {mb.key: cp for mb, cp in with_cp if valid[mb.key] and cp.ends}
    recorded = {mb.key: state_mail.get(mb.key, {}).get("checkpoint", {}).get("count", 0)
                for mb, _cp in with_cp}
    # the trust check that catches a wiped or replaced Maildir: its folder's ledger still
    # holds the messages the checkpoint counts (counted on the target: a few bytes back)
    # (of every mailbox's Maildir: the same look finds a stopped writer's record)
    lines, sizes, pending, files = _ledger_lines(target_conn, mailboxes, where)
    trusted = {mb.key for mb, _cp in with_cp
               if valid[mb.key] and where[mb.key] and lines[mb.key] >= recorded[mb.key]}
    # unchanged since the checkpoint: nothing to read, no identities, no occurrence seed
    quiet = {mb.key: lines[mb.key] for mb, cp in with_cp
             if mb.key in trusted and mb.size == cp.offset}
    if len(quiet) < len(mailboxes):  # mail may be imported: an apply's agents will stream
        target_conn.prepare_streams()
    reads: dict[str, Read] = {}
    scans: dict[str, MailboxScan] = {}
    for mb, cp in checkpoints:
        if mb.key in trusted:
            assert cp is not None
            # grown since the checkpoint (or unchanged): only the appended part is read,
            # and the target is asked about those messages only (known is None: after)
            begin = Start(cp.offset, {}, recorded[mb.key], cp.head, cp.ledger,
                          before.get(mb.key, b""), cp.tail, cp.ends)
            reads[mb.key] = (mb, begin, set() if mb.key in quiet else None, lines[mb.key])
        elif not where[mb.key]:  # no Maildir yet: nothing there
            reads[mb.key] = (mb, Start(), set(), 0)
    # a mailbox read whole is compared with its folder's identities on the target: those
    # are listed a group of Maildirs at a time, each dropped once its group is read
    for group in _whole_read_groups([mb for mb in mailboxes if mb.key not in reads],
                                    where, sizes):
        _read_whole(group, where, source_conn, target_conn, mboxrd, reads, scans, sizes,
                    ends)
    ordered = [reads[mb.key] for mb in mailboxes]
    # a folder with nothing on the target yet takes every message: counted on the source
    # (not a read from a checkpoint at byte 0, known None: an empty file's, mail since
    # arrived in it; its messages are numbered after the target's, _look_up_appended)
    first = [r[0] for r in ordered if r[0].key not in scans and not r[1].offset
             and r[2] is not None and not r[2]]
    counted = dict(zip(first, count_mailboxes(source_conn, first, mboxrd=mboxrd),
                       strict=True))
    todo = [r for r in ordered if r[0].key not in scans and counted.get(r[0]) is None]
    scans.update(zip([r[0].key for r in todo],
                     scan_mailboxes(source_conn, [(mb, begin.offset, known)
                                                  for mb, begin, known, _n in todo],
                                    mboxrd=mboxrd), strict=True))
    scanned = [counted.get(r[0]) or scans[r[0].key] for r in ordered]
    done, mixed = _look_up_appended(target_conn, ordered, scanned, where,
                                    _shared_inboxes(mailboxes, state_mail))
    if mixed:  # appended copies of INBOX messages: numbered as a whole read numbers them
        _reread_whole(mixed, done, scanned, where, source_conn, target_conn, mboxrd, sizes,
                      ends)
    missing = _missing_folders(target_conn, scanned, where, state_mail)
    for (mb, begin, known, ledger), scan in zip(done, scanned, strict=True):
        _judge(out, mb, scan, known or set(), begin, (ledger, sizes.get(where[mb.key])),
               subscribed, where[mb.key] in pending, mb.key in missing)
    # a folder with nothing to import whose subscription line is missing on the target
    covered = {(j.mailbox.domain, j.mailbox.user, j.mailbox.dirname)
               for j in out.jobs.values() if j.subscribe}
    failed = {scan.mailbox.key for scan in scanned if scan.error}
    for change, mb in subscription_changes(target_conn,
                                           [mb for mb in mailboxes if mb.key not in failed],
                                           where, subscribed, files, covered):
        out.changes.append(change)
        out.jobs[change.id] = MailJob(mb, Start(), 0, 0, True)
    _quota_warnings(out, desired, {mb.key: (mb.domain, mb.user) for mb in mailboxes},
                    state_mail)
    return out


def _read_whole(group: list[SourceMailbox], where: dict[str, str], source_conn: Connector,
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
        wanted.setdefault(where[mb.key], set()).add(mb.dirname)
    maildirs = read_maildirs(target_conn, wanted)
    there = []
    for mb in group:
        facts = maildirs.get(where[mb.key], MaildirFacts())
        sizes[where[mb.key]] = facts.ledger_size
        known = facts.known(mb.dirname)
        cp = ends.get(mb.key) if known else None
        begin = Start() if cp is None else Start(head=cp.head, tail=cp.tail, ends=cp.ends,
                                                  ends_from=cp.offset)
        reads[mb.key] = (mb, begin, set(), facts.ledger_count.get(mb.dirname, 0))
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


def _whole_read_groups(mailboxes: list[SourceMailbox], where: dict[str, str],
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


def _ledger_lines(target_conn: Connector, mailboxes: list[SourceMailbox],
                  where: dict[str, str]
                  ) -> tuple[dict[str, int], dict[str, int | None], set[str],
                             dict[str, dict[str, bytes]]]:
    """How many identities each mailbox's folder ledger holds, each Maildir's ledger
    size in bytes, the Maildirs holding a stopped writer's pending record, and each
    Maildir's subscription files (counted and read on the target, in one batch; their
    Maildirs are not listed)."""
    files: dict[str, dict[str, bytes]] = {}
    counts = read_ledger_counts(target_conn, sorted({where[mb.key] for mb in mailboxes}
                                                    - {""}), files)
    return ({mb.key: counts.get(where[mb.key], {}).get(mb.dirname, 0) for mb in mailboxes},
            {m: c.get(LEDGER_BYTES) for m, c in counts.items()},
            {m for m, c in counts.items() if c.get(PENDING_KEY)}, files)


Read = tuple[SourceMailbox, Start, "set[tuple[str, int]] | None", int]


#: the names (upper case) of the mailboxes that feed a user's INBOX (SourceMailbox.name)
_INBOX_NAMES = frozenset({"INBOX", "INBOX (~/MBOX)", "INBOX (FOLDER FILE)"})


def _shared_inboxes(mailboxes: list[SourceMailbox], state_mail: dict[str, Any]) -> set[str]:
    """The keys of the INBOX mailboxes whose user's INBOX another file feeds too, or
    fed on an earlier run (the state's entries): the spool beside ``~/mbox``."""
    feeders: dict[str, set[str]] = {}
    for key in [mb.key for mb in mailboxes if not mb.dirname] + list(state_mail):
        user, _, name = key.partition("/")
        if name.upper() in _INBOX_NAMES:
            feeders.setdefault(user, set()).add(key)
    return {key for keys in feeders.values() if len(keys) > 1 for key in keys}


def _look_up_appended(target_conn: Connector, reads: list[Read], scans: list[MailboxScan],
                      where: dict[str, str], shared: set[str]
                      ) -> tuple[list[Read], set[str]]:
    """For each mailbox read from its checkpoint (``known`` None), ask its folder on the
    target about the digests of the appended messages only, then number them (the
    occurrence seed: how often each digest is there already) and count what is still to
    import. Memory follows the appended mail, not the size of the user's folder.

    Also the keys of the mailboxes of ``shared`` (INBOXes fed by several files: the
    spool, ``~/mbox``, a folder file named INBOX), left unnumbered, with an appended
    message whose digest the INBOX's ledger holds before the checkpoint: each file
    numbers its copies from 0, and the ledger does not say which file a line came from,
    so the seed may count another file's copy (the spool's message c-client moved into
    ``~/mbox`` would be numbered 1 and imported again): such a mailbox is read whole
    (:func:`_reread_whole`)."""
    pending = [(i, r, scans[i]) for i, r in enumerate(reads)
               if r[2] is None and not scans[i].error]
    only: dict[tuple[str, str], set[str]] = {}
    for _i, (mb, _b, _k, _n), scan in pending:
        only.setdefault((where[mb.key], mb.dirname), set()).update(
            sha for sha, _rel, _size, _flags in scan.appended)
    # the ledger lines before the latest of the checkpoints reading into a folder (an
    # INBOX's files have their own): a digest before an earlier one's is then among
    # ``early`` too, and has that mailbox read whole (``shared``), never numbered as new
    before: dict[tuple[str, str], int | None] = {}
    for _i, (mb, begin, _k, _n), _s in pending:
        key = (where[mb.key], mb.dirname)
        had = before.get(key, begin.ledger)
        before[key] = None if had is None or begin.ledger is None \
            else max(had, begin.ledger)
    flags: dict[tuple[str, str], dict[bytes, str]] = {}
    found, early = look_up_digests(target_conn, only, before, flags) if only else ({}, {})
    out = list(reads)
    mixed = set()
    for i, (mb, begin, _k, ledger), scan in pending:
        key = (where[mb.key], mb.dirname)
        if mb.key in shared and {sha for sha, _occ in early[key]}.intersection(
                sha for sha, _rel, _size, _flags in scan.appended):
            mixed.add(mb.key)
            continue
        # the seed counts the copies before the checkpoint only: messages a killed run
        # made durable after it (their ledger lines come later) are appended ones
        seed = _seed(early[key])
        scan.number(seed, found[key], flags.get(key))
        out[i] = (mb, replace(begin, seed=seed), found[key], ledger)
    return out, mixed


def _reread_whole(keys: set[str], reads: list[Read], scans: list[MailboxScan],
                  where: dict[str, str], source_conn: Connector, target_conn: Connector,
                  mboxrd: bool, sizes: dict[str, int | None],
                  ends: dict[str, Checkpoint]) -> None:
    """Read the mailboxes ``keys`` whole after all, compared with their folders'
    identities (:func:`_look_up_appended` says why), in place of their reads from a
    checkpoint in ``reads`` and ``scans``; with their checkpoints' ``ends``."""
    again = [r[0] for r in reads if r[0].key in keys]
    whole: dict[str, Read] = {}
    whole_scans: dict[str, MailboxScan] = {}
    for group in _whole_read_groups(again, where, sizes):
        _read_whole(group, where, source_conn, target_conn, mboxrd, whole, whole_scans,
                    sizes, ends)
    left = [mb for mb in again if mb.key not in whole_scans]  # nothing there after all
    whole_scans.update(zip([mb.key for mb in left], scan_mailboxes(
        source_conn, [(mb, 0, set()) for mb in left], mboxrd=mboxrd), strict=True))
    for i, read in enumerate(reads):
        if read[0].key in keys:
            reads[i], scans[i] = whole[read[0].key], whole_scans[read[0].key]


def _missing_folders(target_conn: Connector, scans: list[MailboxScan],
                     where: dict[str, str], state_mail: dict[str, Any]) -> set[str]:
    """The mailboxes with nothing to import whose folder the plan creates: a folder (not
    the INBOX) whose directory is not on the target (its user's Maildir missing, or the
    folder in it: :func:`~mailplan.facts.maildirs.missing_folders`, one batch), and of
    which the state records nothing: a folder an earlier apply made (or imported into)
    and the user deleted on the new server stays deleted, as a deleted message does."""
    empty = [scan.mailbox for scan in scans
             if not scan.error and not scan.todo and scan.mailbox.dirname
             and scan.mailbox.key not in state_mail]
    wanted: dict[str, set[str]] = {}
    for mb in empty:
        if where[mb.key]:
            wanted.setdefault(where[mb.key], set()).add(mb.dirname)
    gone = missing_folders(target_conn, wanted) if wanted else set()
    return {mb.key for mb in empty if not where[mb.key] or (where[mb.key], mb.dirname) in gone}


def _quota_warnings(out: MailPlan, desired: Desired, owners: dict[str, tuple[str, str]],
                    state_mail: dict[str, Any]) -> None:
    """A warning for each user whose mail to import, with what earlier applies imported
    (the state's record), exceeds the quota: the mail is imported all the same."""
    totals: dict[tuple[str, str], int] = {}
    for job in out.jobs.values():
        key = (job.mailbox.domain, job.mailbox.user)
        totals[key] = totals.get(key, 0) + job.size
    before: dict[tuple[str, str], int] = {}
    for mailbox, owner in owners.items():
        if owner in totals:
            before[owner] = before.get(owner, 0) + int(
                (state_mail.get(mailbox) or {}).get("bytes", 0))
    for (domain, user), size in sorted(totals.items()):
        quota = desired.domains[domain].users[user].quota
        had = before.get((domain, user), 0)
        if quota is not None and size + had > quota:
            what = f"mail to import ({human_size(size)})" + (
                f" with what earlier applies imported ({human_size(had)})" if had else "")
            out.warnings.append(Problem(domain, user, f"{what} exceeds the quota "
                                        f"({human_size(quota)}); it is imported anyway (mail "
                                        "is never dropped), but new mail will bounce until "
                                        "the quota is raised"))


def _file(out: MailPlan, note: MailboxNote) -> None:
    """Put a note on a source mailbox where its kind says: a problem (not migrated), a
    warning (migrated all the same) or, for ``plan -v``, with what needs no change."""
    if note.kind == "info":
        out.noops.append(Noop(note.domain, note.user, note.message))
    elif note.kind == "warning":
        out.warnings.append(Problem(note.domain, note.user, note.message))
    else:
        out.problems.append(Problem(note.domain, note.user, note.message))


def _judge(out: MailPlan, mb: SourceMailbox, scan: MailboxScan, known: set[tuple[str, int]],
           begin: Start, ledger: tuple[int, int | None],
           subscribed: dict[tuple[str, str], set[str] | None], pending: bool,
           missing: bool = False) -> None:
    """Explain the mailbox or add its change. ``ledger``: how many identities its
    folder's ledger holds, and the ledger's size in bytes (None: not known); ``pending``:
    its Maildir holds the record of a writer stopped before its ledger lines;
    ``missing``: its folder is to be created though it has nothing to import."""
    if scan.error:
        out.problems.append(Problem(mb.domain, mb.user, f"{marked(mb.name)} ({mb.path}) is "
                                    f"not readable as mail: {scan.error}; nothing is "
                                    "imported from it"))
        return
    for note in scan.notes:
        _file(out, note)
    flags = _flags_change(out, mb, scan)
    there = scan.total - scan.todo
    skipped = f"; {scan.skipped_internal} UW-IMAP internal message skipped" \
        if scan.skipped_internal else ""
    subs = subscribed.get((mb.domain, mb.user))
    subscribe = subscribes(mb, subs)
    if scan.held_back:
        # apply reads (and its checkpoint ends) where that message starts: the next
        # run reads it from its From_ line, as a whole read would
        skipped += ("; last message incomplete (no blank line at the end of the spool yet), "
                    "left for the next run")
        mb = replace(mb, size=scan.end)
    read = f" (read from byte {begin.offset}: unchanged before)" if begin.offset else ""
    if not scan.todo:
        settled = _settled(mb, scan, begin, ledger)
        if pending and scan.total:
            # its ledger lacks lines a stopped writer owed, and only a writer opening the
            # Maildir appends them: without this no run would, and every plan would read
            # the mailbox whole (and a message the user deletes meanwhile would come back)
            change = Change("create", "mailbox", mb.domain, mb.user, item=mb.name,
                            after=f"nothing to import ({there} already on the target); "
                            "completes the import record an interrupted run left in the "
                            "Maildir, so later plans read only new mail" + skipped,
                            fingerprint=scan.todo_digest)
            out.changes.append(change)
            out.jobs[change.id] = MailJob(mb, begin, 0, 0, missing and subscribe)
            return
        if missing:
            # the import's path with no message: the writer makes the folder (as it makes
            # any, with vpopmail's modes and owner) and writes its subscription
            change = Change("create", "mailbox", mb.domain, mb.user, item=mb.name,
                            after="0 messages; create the folder"
                            + subscribed_text(subs, subscribe) + read + skipped,
                            fingerprint=scan.todo_digest)
            out.changes.append(change)
            out.jobs[change.id] = MailJob(mb, begin, 0, 0, subscribe)
            return
        if settled is not None and flags is not None:
            flags.settled = settled  # recorded once the flags are added
        elif settled is not None:
            out.settled.append(settled)
            read += (f"; apply records that it is complete through byte {scan.end}, so "
                     "later plans read only what arrives after")
        held = there + begin.count
        # an empty mailbox has nothing "on the target" (its user may not be there yet)
        what = ("empty, nothing to import" if not held else
                "its 1 message already on the target" if held == 1 else
                f"all {held} messages already on the target")
        out.noops.append(Noop(mb.domain, mb.user,
                              f"{marked(mb.name)}: {what}{read}{skipped}"))
        return
    size = scan.todo_bytes
    how = " (first import: From_ lines counted on the source, the mbox's size)" \
        if scan.counted else ""
    change = Change("create", "mailbox", mb.domain, mb.user, item=mb.name,
                    after=f"{scan.todo} message(s), {human_size(size)} to import into "
                    + marked(mb.folder) + (f"; {there} already on the target" if there else "")
                    + read + how + skipped,
                    fingerprint=scan.todo_digest)
    out.changes.append(change)
    out.jobs[change.id] = MailJob(mb, begin, scan.todo, size, subscribe, scan.counted)


def _flags_change(out: MailPlan, mb: SourceMailbox, scan: MailboxScan) -> MailJob | None:
    """The ``flags`` change of a mailbox whose messages on the target lack flags the
    source has (read on the old server after the import: ``MailboxScan.gain``), with its
    job; it comes before the mailbox's import, which records a checkpoint later plans
    read from. None when there is none."""
    if not scan.gain:
        return None
    counts = ", ".join(f"{flag} {n}" for flag, n in scan.gained().items())
    todo = hashlib.sha256()
    for ident, flags in sorted(scan.gain.items()):
        todo.update(ident + b" " + flags.encode() + b";")
    change = Change("update", "flags", mb.domain, mb.user, item=mb.name,
                    after=f"{len(scan.gain)} message(s) gain flags ({counts})",
                    fingerprint=todo.hexdigest()[:16])
    out.changes.append(change)
    job = MailJob(mb, Start(), len(scan.gain), 0, False, gain=scan.gain)
    out.jobs[change.id] = job
    return job


def _settled(mb: SourceMailbox, scan: MailboxScan, begin: Start,
             ledger: tuple[int, int | None]) -> dict[str, Any] | None:
    """The checkpoint of a mailbox whose messages are all on the target already (a run
    killed between its last sync and journaling it, a state file deleted, a spool the
    old server rewrote): without it every later plan would read it whole again. The
    windows come from the bytes this plan read, like an import's. None when a plan
    would not trust it (the folder's ledger holds fewer messages than it counts)."""
    seen = scan.seen
    count = begin.count + scan.total
    if not scan.total or seen is None or scan.end <= begin.offset or ledger[0] < count \
            or scan.end != begin.offset + seen.size \
            or (begin.offset and len(seen.tail) < WINDOW):
        return None  # nothing new read, an untrusted count, or a window before the read
    head = grown_head(begin.head, begin.before, seen.head) if begin.offset \
        else digest(seen.head)
    checkpoint = {"path": mb.path, "inode": mb.inode, "offset": scan.end, "head": head,
                  "tail": digest(seen.tail), "count": count}
    if ledger[1] is not None:  # every message it counts is there: its line comes before
        checkpoint["ledger"] = ledger[1]
    ends = checkpoint_ends(begin.ends, scan.end, seen.tail)
    if ends:
        checkpoint["ends"] = ends
    return {"mailbox": mb.key, "checkpoint": checkpoint}
