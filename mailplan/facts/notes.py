"""Notes on the source's mailboxes, each with what it means for the migration.

Listing and reading a user's mbox files says things the plan must show: a file that is
not imported (two files naming the same folder, a folder name the target cannot hold),
mail imported all the same that the administrator should look at (a Content-Length the
reader could not check), or how a file is imported (``~/mbox`` and a folder file named
INBOX are merged into the INBOX, a missing spool is an empty INBOX: ``plan -v`` says
so). Each note carries its kind, and its consumers (the plan, verify) sort notes by that
kind, never by their wording.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: ``problem``: the file, or part of it, is not migrated; ``warning``: migrated all the
#: same, but the administrator should look; ``info``: migrated as expected, said only
#: with ``plan -v``
NoteKind = Literal["problem", "warning", "info"]


@dataclass(frozen=True)
class MailboxNote:
    """Something to say about one source mailbox file of a user."""

    domain: str
    user: str
    kind: NoteKind
    #: the source file it is about
    path: str
    #: what is said, as shown after ``user@domain: `` (the path is written in it)
    message: str
    #: the folder the file is imported into, or would be; None where it has none
    folder: str | None = None
    #: the source login could not see or read it: no mailbox of this user can be
    #: compared there (verify fails on it, where other notes only explain a difference)
    unseen: bool = False
    #: a path the spec names (a user's ``folders:``, the directory of ``source.spool`` or
    #: of a user's ``spool:``) that the source does not have: the mail the administrator
    #: meant is left behind, and verify fails on it too until the spec is corrected
    wrong_path: bool = False

    @property
    def address(self) -> str:
        """``user@domain``."""
        return f"{self.user}@{self.domain}"

    def __str__(self) -> str:
        return f"{self.address}: {self.message}"


#: said of a folder directory holding .mixmeta: UW-IMAP's mix format (the mail is all in
#: its hidden .mix files, which c-client does not list as folders), no mbox
MIX_NOTE = ("is a UW-IMAP mix-format mailbox (its mail is in the hidden .mix files), not an "
            "mbox: nothing is imported from it (copy it into an mbox folder on the old "
            "server, e.g. with UW-IMAP's mailutil)")
#: said of a Maildir below a folders directory (cur, new and tmp directories: {has} says
#: which it has), with the number of message files in its cur/ and new/ directories (its
#: folders' included)
MAILDIR_NOTE = ("is a Maildir ({has}), not an mbox: nothing is "
                "imported from it ({count} message files in its cur/ and new/, its Maildir++ "
                "folders included); to bring them over, copy its cur/ and new/ files into a "
                "folder of the user's Maildir on the new server (under the directory "
                "'vuserinfo -d {address}' names, owned as the rest of it), or save them into "
                "an mbox folder on the old server and plan again")
#: said of NAME.lock beside the mailbox NAME, too small for a From_ line (23 bytes): the
#: dot-lock pine, mutt or procmail hold while writing NAME (empty, or a PID); no folder
DOT_LOCK_NOTE = ("is the dot-lock of the mailbox beside it (mail programs make it while "
                 "they write that one): no mail fits in it, not a folder")
#: said of ~/INBOX: where c-client's mbx, mix and mx drivers keep the INBOX (a file, or a
#: directory), moving the spool's new mail into it; not an mbox, and not read
HOME_INBOX_NOTE = ("is where UW-IMAP keeps an INBOX in its mbx, mix or mx format (it moves "
                   "the spool's new mail there): not an mbox, nothing is imported from it "
                   "(copy its mail into the spool on the old server, e.g. with UW-IMAP's "
                   "mailutil)")
#: what is said of a user's ~/mbox (an ``info`` note: merged into the INBOX, a plan
#: lists it with what needs no change, not among the problems)
HOME_MBOX_NOTE = ("holds INBOX mail (UW-IMAP keeps the INBOX there once it exists); merged "
                  "into the INBOX")
#: what is said of a folder file named INBOX (an ``info`` note: merged into the INBOX,
#: like ~/mbox)
INBOX_FILE_NOTE = "is named INBOX; merged into the INBOX"
#: what is said of a spool file that is not there (an ``info`` note after ``INBOX: PATH``),
#: as of an empty one: mail.local makes it at the first delivery
MISSING_SPOOL_NOTE = "is missing, nothing to import from it"
#: what is said of a spool whose directory is not there either (a problem: a wrong
#: ``source.spool`` or ``spool:`` in the spec, not a user who never had mail)
NO_SPOOL_DIR_NOTE = ("is missing, and so is its directory {dir} on the source: nothing is "
                     "imported from it; check {key} in the spec")
#: what is said of a user's ``folders:`` that the source does not have (a problem: a
#: typo would leave every folder behind), after ``PATH (the folders directory, KEY in
#: the spec)``
NO_FOLDERS_DIR_NOTE = "is missing on the source: no folder is imported; check that path"
#: what is said of a user's ``folders:`` below a directory the source login may not search
#: (a permission, told apart from a missing one), after ``cannot be read by LOGIN (...)``
SHUT_DIR_NOTE = ("no folder is imported; mailplan must be able to read it (log in to the "
                 "source as root, or set sudo: true)")
