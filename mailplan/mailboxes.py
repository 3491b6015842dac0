"""Mailbox plan: what each source mailbox still has to move, and into which folder.

List the source mailboxes of every migrated user (spool file = INBOX, files under the
folder directory = folders), read each, from its checkpoint where one still matches
(:mod:`mailplan.mailbox_reads`), and judge what each read found
(:mod:`mailplan.mailbox_changes`). One ``mailbox`` change per folder with messages to
import, and one per folder with none whose directory is missing on the target (an empty
folder, or one holding only UW-IMAP's internal message: :func:`_missing_folders`), so
that the user's folder tree (Sent, Drafts, Trash after an expunge) exists on the new
server; everything else is explained.

Apply carries out the ``mailbox`` changes with the jobs the plan keeps
(:class:`~mailplan.mailbox_changes.MailJob`): see :mod:`mailplan.importer`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mailplan.connectors.base import Connector
from mailplan.desired import Desired, Problem
from mailplan.earlier_folders import earlier_folders
from mailplan.facts.checkpoints import Checkpoint, rewritten_in_place, still_valid
from mailplan.facts.folders_there import missing_folders
from mailplan.facts.links import followed
from mailplan.facts.mailbox_scan import MailboxScan, count_mailboxes, scan_mailboxes
from mailplan.facts.mailboxes import MailboxRef, SourceMailbox, list_source_mailboxes
from mailplan.facts.root import spec_file
from mailplan.facts.source import SourceFacts
from mailplan.facts.vpopmail import TargetFacts
from mailplan.mailbox_changes import MailJob, MailPlan, file_note, judge, quota_warnings
from mailplan.mailbox_reads import (
    Read,
    Start,
    ledger_lines,
    look_up_appended,
    read_whole,
    reread_whole,
    whole_read_groups,
)
from mailplan.plan import Noop
from mailplan.spec import folder_names
from mailplan.spec_yaml import key_path
from mailplan.state import mailbox_owner
from mailplan.subscriptions import (
    source_subscriptions,
    subscription_changes,
    unusable_files,
    unusable_problem,
)
from mailplan.text import marked


def _refs(spec_data: dict[str, Any], desired: Desired, source: SourceFacts,
          conn: Connector) -> list[MailboxRef]:
    src = spec_data["source"]
    spool_dir = spec_file(src, "spool").rstrip("/")  # the default under source.root
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
            home = source.home(account) if account else ""  # under source.root
            folder_dir = user.folders or (folders.replace("%u", acct) if folders.startswith("/")
                                          else f"{home}/{folders}")
            refs.append(MailboxRef(dname, uname, acct, user.spool or f"{spool_dir}/{acct}",
                                   folder_dir, home, src.get("folder_names") == "mutf7",
                                   account.uid if account else None, bool(user.spool),
                                   bool(user.folders), _user_key(spec_data, dname, uname)))
    return _followed(conn, source, refs)


def _user_key(spec_data: dict[str, Any], domain: str, user: str) -> str:
    """The key of ``user``'s entry among ``domain``'s users in the spec, as its errors
    name keys (``domains['example.com'].users[0]``); "" when none lists the user."""
    for key, body in spec_data["domains"].items():
        if key.lower() == domain:
            for i, entry in enumerate((body or {}).get("users", [])):
                if entry["name"].lower() == user:
                    return key_path(("domains", key, "users", i))
    return ""


def _followed(conn: Connector, source: SourceFacts, refs: list[MailboxRef]
              ) -> list[MailboxRef]:
    """Under ``source.root``, the spools and folder directories with the copy's links
    above them followed inside the root (:mod:`mailplan.facts.links`; a link at the
    spool or the folders directory itself is left for the scan to name, as without a
    root); a loop is an error naming the link."""
    if not source.root:
        return refs
    real = followed(conn, source.root, [p for r in refs for p in (r.spool, r.folders)],
                    last=False, what="a spool or folders directory",
                    step="list source mailboxes")
    return [replace(r, spool=real[r.spool], folders=real[r.folders]) for r in refs]


def mailbox_refs(spec_data: dict[str, Any], desired: Desired, source: SourceFacts,
                 conn: Connector) -> list[MailboxRef]:
    """Where each migrated user's mail lives on the source, as ``conn`` reads it (also
    used by verify)."""
    return _refs(spec_data, desired, source, conn)


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
    mtime = raw.get("mtime")  # none in a state file from before it was recorded
    return Checkpoint(raw["path"], raw["inode"], raw["offset"], raw["head"], raw["tail"],
                      ledger if isinstance(ledger, int) else None, ends,
                      float(mtime) if isinstance(mtime, int | float) else None)


def with_checkpoints(mailboxes: list[SourceMailbox], state_mail: dict[str, Any]
                     ) -> list[tuple[SourceMailbox, Checkpoint]]:
    """The mailboxes the state holds a checkpoint of, with it: once :func:`still_valid`
    found it matching the file, a whole read of one ends messages where earlier reads
    did (:attr:`Checkpoint.ends`, and its offset where the check finds it one)."""
    return [(mb, cp) for mb in mailboxes
            if (cp := _checkpoint(state_mail, mb.key)) is not None]



def plan_mail(spec_data: dict[str, Any], source_conn: Connector, target_conn: Connector,
              desired: Desired, source: SourceFacts, target: TargetFacts,
              state_mail: dict[str, Any], *, rescan: bool = False) -> MailPlan:
    """The mailbox changes: read-only on both hosts. ``rescan`` (``--rescan``): no
    checkpoint is trusted, every mailbox is read whole (as a file rewritten in place
    is), so flags set on the old server since the import, in place at the same size,
    are found."""
    out = MailPlan(noops=[Noop(name, None, "mail is not imported: import_mail is false in "
                               "the spec") for name, domain in sorted(desired.domains.items())
                          if not domain.import_mail])
    refs = _refs(spec_data, desired, source, source_conn)
    if not refs:
        return out
    source_conn.prepare_streams()  # the mailbox scan streams: set that up meanwhile
    mboxrd = bool(spec_data["source"].get("mboxrd", False))
    mailboxes, notes = list_source_mailboxes(source_conn, refs, folder_names(spec_data))
    for note in notes:
        file_note(out, note)
    where = _user_maildirs(mailboxes, target)
    # what the state records of a user not on the target was imported into a Maildir
    # deleted outside mailplan (a vdeluser by hand): none of that mail and none of those
    # folders is there (an empty folder recorded is not one its user deleted: it is made)
    absent = {(mb.domain, mb.user) for mb in mailboxes if not where[mb.key]}
    state_mail = {key: box for key, box in state_mail.items()
                  if mailbox_owner(key) not in absent}
    out.warnings += _mode_changed(mailboxes, state_mail, mboxrd)
    # a folder an earlier version imported under a name it no longer gets: into that one
    mailboxes, renamed = earlier_folders(target_conn, mailboxes, where, state_mail)
    out.warnings += renamed
    unread: dict[tuple[str, str], str] = {}
    subscribed = source_subscriptions(source_conn, refs, source, unread)
    for (domain, user), why in sorted(unread.items()):
        out.warnings.append(Problem(domain, user, why))
    with_cp, valid, before, windows = _checked_checkpoints(source_conn, mailboxes, state_mail)
    found = {mb.key: cp for mb, cp in with_cp}
    checkpoints = [(mb, found.get(mb.key)) for mb in mailboxes]
    # where earlier reads ended, of the checkpoints that still match (trusted or not: a
    # whole read compared with what those reads imported ends messages there too)
    ends = {mb.key: cp for mb, cp in with_cp if valid[mb.key] and cp.ends}
    recorded = {mb.key: state_mail.get(mb.key, {}).get("checkpoint", {}).get("count", 0)
                for mb, _cp in with_cp}
    # the trust check that catches a wiped or replaced Maildir: its folder's ledger still
    # holds the messages the checkpoint counts (counted on the target: a few bytes back)
    # (of every mailbox's Maildir: the same look finds a stopped writer's record); and a
    # file rewritten in place to the same size (flags changed there) is read whole, and
    # so is every mailbox under --rescan (a rewrite that also grew the file looks appended)
    lines, sizes, pending, files, made = ledger_lines(target_conn, mailboxes, where)
    trusted = {mb.key for mb, cp in with_cp
               if not rescan and valid[mb.key] and where[mb.key]
               and lines[mb.key] >= recorded[mb.key] and not rewritten_in_place(mb, cp)}
    # unchanged since the checkpoint: nothing to read, no identities, no occurrence seed
    quiet = {mb.key: lines[mb.key] for mb, cp in with_cp
             if mb.key in trusted and mb.size == cp.offset}
    if len(quiet) < len(mailboxes):  # mail may be imported: an apply's agents will stream
        target_conn.prepare_streams()
    reads = _reads_not_whole(checkpoints, where, trusted, quiet, recorded, before, lines,
                             windows)
    scans: dict[str, MailboxScan] = {}
    # a mailbox read whole is compared with its folder's identities on the target: those
    # are listed a group of Maildirs at a time, each dropped once its group is read
    for group in whole_read_groups([mb for mb in mailboxes if mb.key not in reads],
                                   where, sizes):
        read_whole(group, where, source_conn, target_conn, mboxrd, reads, scans, sizes,
                   ends)
    ordered = [reads[mb.key] for mb in mailboxes]
    # a folder with nothing on the target yet takes every message: counted on the source
    # (not a read from a checkpoint at byte 0, known None: an empty file's, mail since
    # arrived in it; its messages are numbered after the target's, look_up_appended)
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
    done, mixed = look_up_appended(target_conn, ordered, scanned, where)
    if mixed:  # appended copies of messages there: numbered as a whole read numbers them
        reread_whole(mixed, done, scanned, where, source_conn, target_conn, mboxrd, sizes,
                     ends)
    missing, deleted = _missing_folders(target_conn, scanned, where, state_mail,
                                        {r[0].key for r in done if r[3]} | made)
    blocked = _blocked_maildirs(out, files, mailboxes, where)
    for (mb, begin, known, ledger), scan in zip(done, scanned, strict=True):
        judge(out, mb, scan, known or set(), begin, (ledger, sizes.get(where[mb.key])),
              subscribed, where[mb.key] in pending, mb.key in missing,
              where[mb.key] in blocked, mb.key in deleted)
    # a folder with nothing to import whose subscription line is missing on the target
    covered = {(j.mailbox.domain, j.mailbox.user, j.mailbox.dirname)
               for j in out.jobs.values() if j.subscribe}
    failed = {scan.mailbox.key for scan in scanned if scan.error}
    for change, mb in subscription_changes(target_conn,
                                           [mb for mb in mailboxes if mb.key not in failed
                                            and where[mb.key] not in blocked],
                                           where, subscribed, files, covered):
        out.changes.append(change)
        out.jobs[change.id] = MailJob(mb, Start(), 0, 0, True)
    # each change next to its folder's others, in the order the mailboxes were listed (a
    # subscription change was made last); a flags change stays before its import
    position = {mb.key: i for i, mb in enumerate(mailboxes)}
    out.changes.sort(key=lambda c: position[out.jobs[c.id].mailbox.key])
    quota_warnings(out, desired, {mb.key: (mb.domain, mb.user) for mb in mailboxes},
                   state_mail)
    return out


def _mode_changed(mailboxes: list[SourceMailbox], state_mail: dict[str, Any],
                  mboxrd: bool) -> list[Problem]:
    """A warning for each user whose mail earlier applies imported read in the other
    ``source.mboxrd`` mode (the state records it): a message with a ``>From`` line read
    now is another message, imported again by any whole read of its mailbox."""
    folders: dict[tuple[str, str], list[str]] = {}
    for mb in mailboxes:
        if bool(state_mail.get(mb.key, {}).get("mboxrd", mboxrd)) != mboxrd:
            folders.setdefault((mb.domain, mb.user), []).append(mb.folder)
    then, now = ("true", "false") if not mboxrd else ("false", "true")
    return [Problem(domain, user, f"{', '.join(marked(f) for f in names)}: imported "
                    f"with source.mboxrd: {then}, the spec now says {now}: a message "
                    "holding a >From line is read as another message, and a whole read "
                    "of its mailbox (the old server rewrote it, or --rescan) imports it "
                    f"again beside the first copy; set source.mboxrd: "
                    f"{then} again (choose the mode before the first import)")
            for (domain, user), names in sorted(folders.items())]


def _user_maildirs(mailboxes: list[SourceMailbox], target: TargetFacts) -> dict[str, str]:
    """By mailbox key, the Maildir of its user on the target ("" while there is none)."""
    where = {}
    for mb in mailboxes:
        tdom = target.domains.get(mb.domain)
        tuser = tdom.users.get(mb.user) if tdom else None
        where[mb.key] = maildir_of(tuser.dir) if tuser is not None else ""
    return where


def _checked_checkpoints(source_conn: Connector, mailboxes: list[SourceMailbox],
                         state_mail: dict[str, Any]
                         ) -> tuple[list[tuple[SourceMailbox, Checkpoint]], dict[str, bool],
                                    dict[str, bytes], dict[str, bytes]]:
    """The mailboxes the state holds a checkpoint of, each with it, checked against the
    files by :func:`still_valid` (one batch): by mailbox key, whether it still matches,
    and the file's bytes before a matching checkpoint taken while the file was smaller
    than a window (:attr:`Start.before`), and the bytes before one of a file grown by
    less than a window since (:attr:`Start.window`)."""
    with_cp = [(mb, cp) for mb in mailboxes
               if (cp := _checkpoint(state_mail, mb.key)) is not None]
    small_heads: dict[int, bytes] = {}
    tails: dict[int, bytes] = {}
    ended: set[int] = set()
    valid = dict(zip([mb.key for mb, _ in with_cp],
                     still_valid(source_conn, with_cp, small_heads, ended, tails), strict=True))
    before = {with_cp[i][0].key: data for i, data in small_heads.items()}
    windows = {with_cp[i][0].key: data for i, data in tails.items()}
    # a checkpoint where a whole read would end the message before it otherwise than
    # the read that took it did (its offset follows no line end, or more line ends came
    # after it than a whole read takes for framing: checkpoints.reframed) is one of the
    # ends, though the state (from before they were recorded, or before those line ends
    # came) may not list it
    for i in ended:
        mb, cp = with_cp[i]
        with_cp[i] = (mb, cp.ended_at_offset())
    return with_cp, valid, before, windows


def _reads_not_whole(checkpoints: list[tuple[SourceMailbox, Checkpoint | None]],
                     where: dict[str, str], trusted: set[str], quiet: dict[str, int],
                     recorded: dict[str, int], before: dict[str, bytes],
                     lines: dict[str, int], windows: dict[str, bytes]) -> dict[str, Read]:
    """The reads of the mailboxes not compared whole with their folder on the target, by
    mailbox key: of a trusted checkpoint, from its offset (``quiet``: unchanged since,
    nothing to read); of a user with no Maildir yet, from byte 0 (nothing there)."""
    reads: dict[str, Read] = {}
    for mb, cp in checkpoints:
        if mb.key in trusted:
            assert cp is not None
            # grown since the checkpoint (or unchanged): only the appended part is read,
            # and the target is asked about those messages only (known is None: after)
            begin = Start(cp.offset, {}, recorded[mb.key], cp.head, cp.ledger,
                          before.get(mb.key, b""), cp.tail, cp.ends,
                          window=windows.get(mb.key, b""))
            reads[mb.key] = (mb, begin, set() if mb.key in quiet else None, lines[mb.key])
        elif not where[mb.key]:  # no Maildir yet: nothing there
            reads[mb.key] = (mb, Start(), set(), 0)
    return reads


def _blocked_maildirs(out: MailPlan, files: dict[str, dict[str, bytes]],
                      mailboxes: list[SourceMailbox], where: dict[str, str]
                      ) -> dict[str, list[str]]:
    """The Maildirs whose subscription files apply cannot write (by Maildir: why), each
    said once in ``out`` as a problem of each of its users with folders: a plan
    subscribes nothing there."""
    blocked = {root: why for root, found in files.items() if (why := unusable_files(found))}
    for root in sorted(blocked):
        users = sorted({(mb.domain, mb.user) for mb in mailboxes
                        if where[mb.key] == root and mb.dirname})
        for domain, user in users:
            out.problems.append(Problem(domain, user, unusable_problem(root, blocked[root])))
    return blocked


def _missing_folders(target_conn: Connector, scans: list[MailboxScan],
                     where: dict[str, str], state_mail: dict[str, Any],
                     ledgered: set[str]) -> tuple[set[str], set[str]]:
    """The mailboxes with nothing to import whose folder the plan creates, and those
    with mail to import whose folder the user deleted on the new server (one batch of
    :func:`~mailplan.facts.folders_there.missing_folders` for both).

    The first: a folder (not the INBOX) whose directory is not on the target (its
    user's Maildir missing, or the folder in it), and of which neither the state records
    anything nor the Maildir's ledger holds a line (``ledgered``: its messages were
    imported there, or a writer made it, also in a run the state file, lost or restored
    from an older backup, does not know of): a folder an earlier apply made (or imported
    into) and the user deleted on the new server stays deleted, as a deleted message
    does. The second: such a folder, recorded or ledgered, not on the target, that has
    new mail on the source: the import makes it again with the new messages only (mail
    is never dropped; the ones imported before stay deleted), which the plan says."""
    def made_before(mb: SourceMailbox) -> bool:
        return mb.key in state_mail or mb.key in ledgered

    empty = [scan.mailbox for scan in scans
             if not scan.error and not scan.todo and scan.mailbox.dirname
             and not made_before(scan.mailbox)]
    filled = [scan.mailbox for scan in scans
              if not scan.error and scan.todo and scan.mailbox.dirname
              and where[scan.mailbox.key] and made_before(scan.mailbox)]
    wanted: dict[str, set[str]] = {}
    for mb in empty + filled:
        if where[mb.key]:
            wanted.setdefault(where[mb.key], set()).add(mb.dirname)
    gone = missing_folders(target_conn, wanted) if wanted else set()
    return ({mb.key for mb in empty if not where[mb.key] or (where[mb.key], mb.dirname) in gone},
            {mb.key for mb in filled if (where[mb.key], mb.dirname) in gone})
