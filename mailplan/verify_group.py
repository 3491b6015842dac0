"""One group of users in ``mailplan verify``: their folders, source against target.

:mod:`mailplan.verify` groups the users and reads the target's side of a group
(:func:`~mailplan.verify_reads.read_target_mail`); a :class:`GroupCheck` holds that and
reads the source's side in two round trips: one batch that checks the imports'
checkpoints and last time's proofs (:func:`~mailplan.facts.checkpoints.still_valid`),
then one ``tar`` channel for the mailboxes not proven again
(:func:`~mailplan.verify_reads.read_source_mail`). It then compares each user's folders
into the report, and records the folders that matched exactly
(:mod:`mailplan.verify_cache`).
"""

from __future__ import annotations

from collections import Counter
from datetime import tzinfo
from typing import Any

from mailplan.connectors.base import Connector
from mailplan.errors import MailplanError
from mailplan.facts.checkpoints import Checkpoint, still_valid
from mailplan.facts.ledger_flags import Recorded
from mailplan.facts.source_mailbox import SourceMailbox
from mailplan.mail.maildir import folder_from_dirname, unsubscribed
from mailplan.mail.windows import Windows
from mailplan.mailboxes import with_checkpoints
from mailplan.remote_files import NOT_READ
from mailplan.subscriptions import subscribes, unusable_files
from mailplan.text import marked
from mailplan.verify_cache import Proven, key, source_digest, target_digest, zone_id
from mailplan.verify_model import (
    FolderCheck,
    Identity,
    Report,
    SourceMessage,
    TargetMessage,
    compare_folder,
)
from mailplan.verify_reads import TargetMail, read_source_mail

#: what the target has of a user's folders, by folder directory: mailplan's message
#: files, the ledger and the keywords (as :class:`~mailplan.verify_reads.TargetMail` has)
UserFolders = tuple[dict[str, dict[Identity, list[TargetMessage]]], dict[str, Recorded],
                    dict[str, dict[str, str]]]


class GroupCheck:
    """A group of users (``refs``) and what verify read of their mail: on the target
    (``target``, in their Maildirs ``maildirs``), and on the source (their mailboxes,
    ``by_user``), once :meth:`read_source` has read it. ``state_mail``: the state's
    mailboxes: those an apply made (one whose folder the user deleted on the target
    since is not missing), and their checkpoints' record of where the imports' reads
    ended; ``subscribed``: the folders each user's ``~/.mailboxlist`` lists (None: there
    is none), which apply subscribes (:func:`mailplan.subscriptions.subscribes`)."""

    def __init__(self, refs: list[Any], maildirs: dict[tuple[str, str], str],
                 by_user: dict[tuple[str, str], list[SourceMailbox]], target: TargetMail, *,
                 mboxrd: bool, zone: tzinfo | None, names: str, state_mail: dict[str, Any],
                 subscribed: dict[tuple[str, str], set[str] | None]) -> None:
        self.refs, self.maildirs, self.by_user = refs, maildirs, by_user
        self.files, self.ledgers, self.keywords, self.there, self.subscriptions = target
        self.mboxrd, self.zone, self.zone_name = mboxrd, zone, zone_id(zone)
        self.names, self.state_mail, self.subscribed = names, state_mail, subscribed
        self.mailboxes = [mb for r in refs for mb in by_user.get((r.domain, r.user), [])]
        # what read_source finds: the folders proven again (by source path), and the
        # others' messages, read errors and what was read of each file
        self.reused: dict[str, Proven] = {}
        self.messages: dict[str, dict[Identity, SourceMessage]] = {}
        self.errors: dict[str, str] = {}
        self.windows: dict[str, Windows] = {}

    # -- a source mailbox, and its folder on the target

    def folder_key(self, mb: SourceMailbox) -> str:
        """The folder's key in verify's record of proofs."""
        return key(mb.domain, mb.user, mb.dirname, mb.path, self.mboxrd, self.zone_name)

    def has_folder(self, mb: SourceMailbox) -> bool:
        """Whether the mailbox's folder is on the target."""
        root = self.maildirs.get((mb.domain, mb.user))
        return root is not None and mb.dirname in self.there.get(root, set())

    def target_files(self, mb: SourceMailbox) -> dict[Identity, list[TargetMessage]]:
        """mailplan's message files in the mailbox's folder on the target."""
        root = self.maildirs.get((mb.domain, mb.user))
        return self.files.get(root, {}).get(mb.dirname, {}) if root else {}

    def subscription_gaps(self, mb: SourceMailbox) -> tuple[list[str], list[str]]:
        """For a folder on the target that apply subscribes: each subscription file
        lacking its line (a folder not there fails already, or the user deleted it), and
        what keeps apply from writing them (a directory where a file belongs: the plan
        says so too)."""
        root = self.maildirs.get((mb.domain, mb.user))
        if root is None or not mb.dirname or not self.has_folder(mb) \
                or not subscribes(mb, self.subscribed.get((mb.domain, mb.user))):
            return [], []
        found = self.subscriptions.get(root, {})
        gaps = unsubscribed(mb.subscription, found)
        return gaps, unusable_files(found) if gaps else []

    # -- the source's side: two round trips

    def _proven_before(self, old: dict[str, Proven]) -> list[tuple[SourceMailbox, Proven]]:
        """The mailboxes proven identical last time whose source file is listed with the
        same size and mtime and whose folder is on the target, with that proof; a folder
        fed by more than one file (the spool, ~/mbox, a folder file named INBOX) is read
        whole."""
        feeds = Counter((mb.domain, mb.user, mb.dirname) for mb in self.mailboxes)
        return [(mb, old[self.folder_key(mb)]) for mb in self.mailboxes
                if self.folder_key(mb) in old
                and (old[self.folder_key(mb)].size, old[self.folder_key(mb)].mtime)
                == (mb.size, mb.mtime)
                and feeds[(mb.domain, mb.user, mb.dirname)] == 1 and self.has_folder(mb)]

    def read_source(self, conn: Connector, old: dict[str, Proven]) -> None:
        """Check in one batch the checkpoints that say where the imports' reads ended
        and the files of the folders proven last time (``old``): a folder whose file
        still starts and ends as proven, and whose target listing gives the same digest,
        is not read again; read the other mailboxes through one ``tar`` channel."""
        pairs = self._proven_before(old)
        imports = with_checkpoints(self.mailboxes, self.state_mail)
        ended: set[int] = set()  # as the plan's check finds them (_checked_checkpoints)
        valid = still_valid(conn, [*imports, *[
            (mb, Checkpoint(p.path, p.inode, p.size, p.head, p.tail)) for mb, p in pairs]],
            ended=ended)
        ends = {mb.path: (cp.ended_at_offset() if i in ended else cp).ends
                for i, ((mb, cp), ok)
                in enumerate(zip(imports, valid[:len(imports)], strict=True)) if ok}
        self.reused = {mb.path: p for (mb, p), ok
                       in zip(pairs, valid[len(imports):], strict=True)
                       if ok and target_digest(self.target_files(mb)) == p.digest}
        self.messages, self.errors = read_source_mail(
            conn, [mb for mb in self.mailboxes if mb.path not in self.reused],
            mboxrd=self.mboxrd, windows=self.windows, zone=self.zone, ends=ends)

    # -- the comparison

    def compare(self, report: Report, proven: dict[str, Proven]) -> None:
        """Add each user's folders to ``report`` (in the users' order, a user's folders
        by directory name, then the folders only the target has), and to ``proven``
        those that matched exactly."""
        for ref in self.refs:
            root = self.maildirs.get((ref.domain, ref.user))
            on_target = ((self.files.get(root, {}), self.ledgers.get(root, {}),
                          self.keywords.get(root, {})) if root else ({}, {}, {}))
            folders = self._source_folders(ref)
            # what the imports put in each folder (a message moved since is not extra)
            imported = {_folder_name(d, self.names): ids for d, ids in on_target[1].items()}
            for group in folders.values():
                self._compare_folder(ref, group, on_target, report, proven, imported)
            self._target_only(ref, on_target, set(folders), report, imported)

    def _source_folders(self, ref: Any) -> dict[str, list[SourceMailbox]]:
        """A user's mailboxes by folder directory (the INBOX may have several)."""
        folders: dict[str, list[SourceMailbox]] = {}
        for mb in sorted(self.by_user.get((ref.domain, ref.user), []),
                         key=lambda m: (m.dirname, m.path)):
            folders.setdefault(mb.dirname, []).append(mb)
        return folders

    def _compare_folder(self, ref: Any, group: list[SourceMailbox], on_target: UserFolders,
                        report: Report, proven: dict[str, Proven],
                        imported: dict[str, set[Identity]]) -> None:
        """One folder, fed by the files ``group``: as proven last time, or unreadable (not
        a folder of the report: explained), or compared; its proof recorded."""
        mb = group[0]
        check = FolderCheck(ref.domain, ref.user, mb.folder)
        if mb.path in self.reused:  # (only a folder fed by one file is reused)
            self._reuse(check, mb, report, proven)
            return
        if not self._readable(check, group, report):
            return
        files, ledger, named = on_target
        if mb.dirname and not self.has_folder(mb):  # (a missing user's account fails)
            # made by an apply: the state records it, or (the state file lost or older
            # than the target) the ledger names messages imported into it or says a
            # writer made it; the plan does not make it again (mailboxes._missing_folders)
            if any(m.key in self.state_mail for m in group) \
                    or not ledger.keys().isdisjoint((mb.dirname, *mb.ledger_also)):
                check.folder_deleted_on_target = True
            else:
                check.folder_missing = True
        # the files feeding one folder are compared together: a message held identically
        # in two of them is imported once (one identity)
        source_msgs: dict[Identity, SourceMessage] = {}
        for m in reversed(group):
            source_msgs.update(self.messages.get(m.path, {}))
        # the user's other folders' message files: where one deleted here went
        others = {_folder_name(d, self.names): f for d, f in files.items() if d != mb.dirname}
        here, letters = ledger.get(mb.dirname, Recorded()), named.get(mb.dirname, {})
        result = compare_folder(check, source_msgs, files.get(mb.dirname, {}), here,
                                frozenset(letters.values()), imported, others,
                                here.recorded, letters)
        report.folders.append(result)
        proof = _proof(mb, result, source_msgs, self.windows.get(mb.path)) \
            if len(group) == 1 else None
        if proof is not None:
            proven[self.folder_key(mb)] = proof
        # after the proof, which is of the messages only
        result.unsubscribed, result.unsubscribable = self.subscription_gaps(mb)

    def _reuse(self, check: FolderCheck, mb: SourceMailbox, report: Report,
               proven: dict[str, Proven]) -> None:
        """A folder as last time's proof has it, and that proof kept."""
        proof = self.reused[mb.path]
        check.source = check.target = proof.count
        check.reused = True
        check.unsubscribed, check.unsubscribable = self.subscription_gaps(mb)
        proven[self.folder_key(mb)] = proof
        report.folders.append(check)

    def _readable(self, check: FolderCheck, group: list[SourceMailbox], report: Report
                  ) -> bool:
        """Whether the folder's files could be read as mail; if not, the first that could
        not is explained. A file that changed while verify read it counts as read, and
        ``check`` says it changed."""
        failed = [(m, self.errors[m.path]) for m in group if m.path in self.errors]
        unreadable = [(m, e) for m, e in failed if not e.startswith("changed while")]
        not_read = [(m, e) for m, e in unreadable if e.startswith(NOT_READ)]
        if not_read:  # no property of the file: verify cannot say its mail is there
            m, err = not_read[0]
            check.error = err
            report.unmigrated.append(
                f"{check.user}@{check.domain}: {marked(m.folder)} ({m.path}): {err}; verify "
                "cannot say its mail is on the target (mailplan must be able to read it: "
                "log in to the source as root, or set sudo: true)")
            return False
        if unreadable:
            m, err = unreadable[0]
            check.error = err
            report.explained.append(f"{check.user}@{check.domain}: {marked(m.folder)} "
                                    f"({m.path}) is not readable as mail: {err}")
            return False
        if failed:
            check.changed_during_read = failed[0][1]
        return True

    def _target_only(self, ref: Any, on_target: UserFolders, seen: set[str],
                     report: Report, imported: dict[str, set[Identity]]) -> None:
        """The user's folders on the target (message files or a ledger) that no source
        mailbox feeds, by directory name (``imported``: the ledgers by folder name)."""
        files, ledger, _named = on_target
        there = self.there.get(self.maildirs.get((ref.domain, ref.user), ""), set())
        # (a folder a writer made that never held a message is no row)
        for dirname in sorted((set(files) | {d for d, ids in ledger.items() if ids}) - seen):
            check = FolderCheck(ref.domain, ref.user, _folder_name(dirname, self.names))
            # imported into, and gone from both sides: said, not a bare row of zeros
            check.folder_deleted_on_target = dirname not in there
            others = {_folder_name(d, self.names): f for d, f in files.items() if d != dirname}
            report.folders.append(compare_folder(check, {}, files.get(dirname, {}),
                                                 ledger.get(dirname, Recorded()),
                                                 elsewhere=imported, moved_to=others))


def _proof(mb: SourceMailbox, check: FolderCheck, messages: dict[Identity, SourceMessage],
           seen: Windows | None) -> Proven | None:
    """What to remember of a folder that matched exactly (None: nothing to remember)."""
    if seen is None or seen.size != mb.size or not check.ok or check.error or (
            check.deleted_on_target or check.gone_from_source or check.moved_on_target
            or check.moved_away
            or check.flags_added_on_target or check.flags_removed_on_target
            or check.keywords_not_carried):
        return None
    digest = source_digest(messages)
    if digest is None:
        return None
    head, tail = seen.digests()
    return Proven(mb.path, mb.inode, mb.size, mb.mtime, head, tail, len(messages), digest)


def _folder_name(dirname: str, names: str) -> str:
    """A folder directory's name as the IMAP server shows it; as it is on disk where it is
    no valid name."""
    try:
        return folder_from_dirname(dirname, names)
    except MailplanError:
        return dirname
