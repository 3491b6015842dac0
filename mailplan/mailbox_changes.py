"""The mailbox changes: what the plan makes of each source mailbox it read.

Each mailbox's read (:mod:`mailplan.mailbox_reads`) becomes a ``mailbox`` change with
its job, or the reason it needs none (:func:`judge`); notes on a mailbox become
problems, warnings or reasons (:func:`file`), and a user whose mail to import exceeds
the quota gets a warning (:func:`quota_warnings`).
A mailbox read whole (or past its checkpoint) and found entirely on the target gets a
checkpoint for apply to record in the state only (``MailPlan.settled``).
Each message such a read finds already in its folder is compared with its file there:
the Maildir flags the source gives it (set on the old server after its import) and the
file lacks make one ``flags`` change per mailbox (:func:`_flags_change`): apply adds
them, never removes one, and records that mailbox's checkpoint only then. Flags the
source lost since mailplan recorded them are recorded again by the same change (the
import ledger only), so that one that comes back is added.

Apply carries out the ``mailbox`` changes with the jobs kept here: see
:mod:`mailplan.importer`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from mailplan.desired import Desired, Problem
from mailplan.facts.checkpoints import checkpoint_ends
from mailplan.facts.mailbox_scan import MailboxScan
from mailplan.facts.notes import MailboxNote
from mailplan.facts.source_mailbox import SourceMailbox
from mailplan.mail.maildir import folder_from_dirname
from mailplan.mail.windows import WINDOW, digest, grown_head
from mailplan.mailbox_reads import Start
from mailplan.names import human_size
from mailplan.plan import Change, Noop, PlanPart
from mailplan.subscriptions import subscribed_text, subscribes
from mailplan.text import escape, marked


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
class MailPlan(PlanPart):
    """The mailbox part of a plan."""

    #: migrated all the same, but worth the administrator's look (Plan.warnings)
    warnings: list[Problem] = field(default_factory=list)
    jobs: dict[str, MailJob] = field(default_factory=dict)
    #: checkpoints of mailboxes read to their end and found already on the target
    #: (state entries: apply records them, so later plans read only what is appended)
    settled: list[dict[str, Any]] = field(default_factory=list)


def quota_warnings(out: MailPlan, desired: Desired, owners: dict[str, tuple[str, str]],
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


def file_note(out: MailPlan, note: MailboxNote) -> None:
    """Put a note on a source mailbox where its kind says: a problem (not migrated), a
    warning (migrated all the same) or, for ``plan -v``, with what needs no change."""
    if note.kind == "info":
        out.noops.append(Noop(note.domain, note.user, note.message))
    elif note.kind == "warning":
        out.warnings.append(Problem(note.domain, note.user, note.message))
    else:
        out.problems.append(Problem(note.domain, note.user, note.message))


def judge(out: MailPlan, mb: SourceMailbox, scan: MailboxScan, known: set[tuple[str, int]],
          begin: Start, ledger: tuple[int, int | None],
          subscribed: dict[tuple[str, str], set[str] | None], pending: bool,
          missing: bool = False, unsubscribable: bool = False,
          deleted: bool = False) -> None:
    """Explain the mailbox or add its change. ``ledger``: how many identities its
    folder's ledger holds, and the ledger's size in bytes (None: not known); ``pending``:
    its Maildir holds the record of a writer stopped before its ledger lines;
    ``missing``: its folder is to be created though it has nothing to import;
    ``unsubscribable``: its Maildir's subscription files cannot be written (the plan
    says so once for the Maildir): its folder is not subscribed; ``deleted``: its
    folder, which an earlier apply made, is not on the target (the user deleted it on
    the new server): the import makes it again with the new messages only, which the
    change and a warning say."""
    if scan.error:
        # the login's lack, not the file's: as for a directory it may not list
        login = "; mailplan must be able to read it (log in to the source as root, or " \
            "set sudo: true)" if "Permission denied" in scan.error else ""
        out.problems.append(Problem(mb.domain, mb.user, f"{marked(mb.name)} ({mb.path}) is "
                                    f"not readable as mail: {scan.error}; nothing is "
                                    f"imported from it{login}"))
        return
    for note in scan.notes:
        file_note(out, note)
    flags = _flags_change(out, mb, scan)
    there = scan.total - scan.todo
    skipped = f"; {scan.skipped_internal} UW-IMAP internal message skipped" \
        if scan.skipped_internal else ""
    subs = subscribed.get((mb.domain, mb.user))
    subscribe = subscribes(mb, subs) and not unsubscribable
    if scan.held_back:
        # apply reads (and its checkpoint ends) where that message starts: the next
        # run reads it from its From_ line, as a whole read would
        skipped += "; " + _held_back(mb)
        mb = replace(mb, size=scan.end)
    read = f" (read from byte {begin.offset}: unchanged before)" if begin.offset else ""
    if not scan.todo:
        settled = _settled(mb, scan, begin, ledger)
        if pending and scan.total:
            # its ledger lacks lines a stopped writer owed, and only a writer opening the
            # Maildir appends them: without this no run would, and every plan would read
            # the mailbox whole (and a message the user deletes meanwhile would come back)
            change = Change("create", "mailbox", mb.domain, mb.user, item=mb.name,
                            after=f"nothing to import ({there} already imported); "
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
                "its 1 message already imported" if held == 1 else
                f"all {held} messages already imported")
        out.noops.append(Noop(mb.domain, mb.user,
                              f"{marked(mb.name)}: {what}{read}{skipped}"))
        return
    size = scan.todo_bytes
    how = " (first import: From_ lines counted on the source, the mbox's size)" \
        if scan.counted else ""
    change = Change("create", "mailbox", mb.domain, mb.user, item=mb.name,
                    after=f"{scan.todo} message(s), {human_size(size)} to import into "
                    # as written (inbox/x goes into INBOX/x)
                    + ("INBOX" if mb.dirname == "" else marked(
                        folder_from_dirname(mb.dirname, mb.names)))
                    + (f"; {there} already imported" if there else "")
                    + read + how + skipped
                    + (f"; {_made_again(scan.todo, there + begin.count, False)}"
                       if deleted else ""),
                    fingerprint=scan.todo_digest)
    if deleted:
        out.warnings.append(Problem(mb.domain, mb.user, f"folder {marked(mb.name)} "
                                    + _made_again(scan.todo, there + begin.count, True)))
    out.changes.append(change)
    out.jobs[change.id] = MailJob(mb, begin, scan.todo, size, subscribe, scan.counted)


def _held_back(mb: SourceMailbox) -> str:
    """Why the plan leaves ``mb``'s last message for the next run."""
    if not mb.locked:
        return ("last message incomplete (no blank line at the end of the spool yet), "
                "left for the next run")
    who = "a program writing the file" if mb.folder_file else "a delivery"
    return (f"last message perhaps incomplete (locked by {who}: {escape(mb.path)}.lock is "
            "there), left for the next run")


def _made_again(todo: int, before: int, whole: bool) -> str:
    """What an import into a folder the user deleted on the new server does: in the
    change's line, or ``whole`` in its warning."""
    gone = f"the {before} imported before" if before else "the messages imported before"
    if not whole:
        return (f"the user deleted or renamed the folder on the new server: made again "
                f"with only these ({gone} are not brought back)")
    return (f"was deleted or renamed on the new server by the user after mailplan imported "
            f"into it: "
            f"apply makes it again with only the {todo} new message(s) from the old server "
            f"({gone} are not brought back; mail is never dropped: to keep the folder "
            "deleted, the user deletes it again after the apply)")


def _flags_change(out: MailPlan, mb: SourceMailbox, scan: MailboxScan) -> MailJob | None:
    """The ``flags`` change of a mailbox whose messages on the target lack flags the
    source has (read on the old server after the import: ``MailboxScan.gain``), with its
    job; it comes before the mailbox's import, which records a checkpoint later plans
    read from. None when there is none."""
    if not scan.gain:
        return None
    counts = ", ".join(f"{flag} {n}" for flag, n in scan.gained().items())
    lost = scan.lost()
    todo = hashlib.sha256()
    for ident, flags in sorted(scan.gain.items()):
        todo.update(ident + b" " + flags.encode() + b";")
    what = [f"{len(scan.gain) - lost} message(s) gain flags ({counts})"] if counts else []
    if lost:  # written to the ledger only, so that such a flag is a gain when it returns
        what.append(f"{lost} message(s) lost flags on the old server since mailplan "
                    "recorded them: recorded again (files unchanged)")
    change = Change("update", "flags", mb.domain, mb.user, item=mb.name,
                    after="; ".join(what), fingerprint=todo.hexdigest()[:16])
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
    # a read from a checkpoint of less than a window: the window before its end begins
    # in the bytes before the checkpoint, which its check read (Start.window)
    tail = b"" if seen is None else seen.tail if not begin.offset \
        or len(seen.tail) >= WINDOW else (begin.window + seen.tail)[-WINDOW:]
    if not scan.total or seen is None or scan.end <= begin.offset or ledger[0] < count \
            or scan.end != begin.offset + seen.size \
            or len(tail) < min(WINDOW, scan.end):
        return None  # nothing new read, an untrusted count, or a window before the read
    head = grown_head(begin.head, begin.before, seen.head) if begin.offset \
        else digest(seen.head)
    checkpoint = {"path": mb.path, "inode": mb.inode, "offset": scan.end, "head": head,
                  "tail": digest(tail), "count": count, "mtime": mb.mtime}
    if ledger[1] is not None:  # every message it counts is there: its line comes before
        checkpoint["ledger"] = ledger[1]
    ends = checkpoint_ends(begin.ends, scan.end, tail)
    if ends:
        checkpoint["ends"] = ends
    return {"mailbox": mb.key, "checkpoint": checkpoint}
