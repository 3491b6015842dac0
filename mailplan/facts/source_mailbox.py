"""A mailbox file on the source and where a user's mail lives there (read only data).

:class:`MailboxRef` says where one user's spool, ~/mbox and folders are;
:class:`SourceMailbox` is one mbox file found there
(:func:`mailplan.facts.mailboxes.list_source_mailboxes`) and the folder it becomes.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailplan.mail.maildir import dir_subscription_lines, folder_dirname, is_inbox

#: seconds since its last modification after which a mailbox's end is final even when
#: its last message does not end with a blank line (no delivery is still writing it)
SETTLED_AFTER = 300
#: seconds by the source's clock after which a file's ctime, unchanged, proves nothing
#: wrote to it since: a write within one tick of the kernel's coarse clock after a change
#: could leave the ctime as that change set it (:mod:`mailplan.mail.snapshot`)
CTIME_SETTLED = 2


def ctime_settled(ctime: str, clock: str | float) -> bool | None:
    """Whether ``ctime`` (as ``find -printf %C@`` prints it) is CTIME_SETTLED seconds old
    or more by ``clock``, the source's (``date +%s``; whole seconds); None when either is
    no time (not printed: every check of the read then hashes what it read)."""
    try:
        return int(clock) - int(float(ctime)) >= CTIME_SETTLED
    except (ValueError, OverflowError):
        return None


@dataclass(frozen=True)
class MailboxRef:
    """Where one user's mail lives on the source."""

    domain: str
    user: str
    account: str
    spool: str
    folders: str
    #: the home directory, where ``~/mbox`` may hold the INBOX (c-client moves the spool's
    #: mail there when it exists); "" when not known
    home: str = ""
    #: folder file names in IMAP's modified UTF-7 are decoded (``source.folder_names``)
    decode_names: bool = False
    #: the account's uid: a mailbox file of another owner (root's aside) is not read as
    #: this user's (None: not known, no check)
    uid: int | None = None
    #: the spool is the spec's ``spool:``, named by the administrator: its owner is theirs
    #: to choose, not checked
    spool_given: bool = False
    #: the folders directory is the spec's ``folders:``: missing, it is a problem (a typo
    #: would leave the folders behind without a word), not a user without folders
    folders_given: bool = False
    #: the user's entry in the spec, as its errors name keys (``domains['example.com'].
    #: users[0]``): a note on a path it names says where; "" for a user of the import rule
    user_key: str = ""

    @property
    def spool_key(self) -> str:
        """The spec key the spool's path comes from (``source.spool`` when it is the
        default one: SPOOL/ACCOUNT)."""
        return self.spec_key("spool") if self.spool_given else "source.spool"

    def spec_key(self, name: str) -> str:
        """The key ``name`` (``spool``, ``folders``) of the user's entry in the spec."""
        return f"{self.user_key}.{name}" if self.user_key else f"the user's {name}:"

    @property
    def home_mbox(self) -> str | None:
        """The user's ``~/mbox`` (None: the home directory is not known)."""
        return self.home.rstrip("/") + "/mbox" if self.home else None


@dataclass(frozen=True)
class SourceMailbox:
    """One mbox file on the source and the folder it becomes."""

    domain: str
    user: str
    folder: str  # "INBOX" or a path such as "Work/2025"
    path: str
    size: int
    mtime: float
    inode: int
    #: not modified for SETTLED_AFTER seconds: the end of the file is a message boundary
    settled: bool = True
    folder_file: bool = False  # a file under the folders directory, not the spool
    device: int = 0  # st_dev as listed (0: not known, in hand-made ones)
    home_mbox: bool = False  # ~/mbox, the INBOX c-client keeps once it exists
    #: how the target's folder directories are named (the spec's target.folder_names)
    names: str = "utf7"
    #: the directory an earlier mailplan version imported this folder into, under a name
    #: the folder no longer gets (:mod:`mailplan.earlier_folders`); None: today's name
    written: str | None = None
    #: earlier names of its directory, no longer there, whose ledger lines count for it
    #: (renamed by hand to today's name, :mod:`mailplan.earlier_folders`)
    ledger_also: tuple[str, ...] = ()
    #: not settled, and a dot-lock ``PATH.lock`` less than SETTLED_AFTER seconds old was
    #: beside it when it was listed: a delivery (mail.local, procmail) or a mail program
    #: may be writing its last message, whatever its last bytes, which is left for the
    #: next run (:meth:`mailplan.facts.scan_read.ScanRead.end`)
    locked: bool = False
    #: the file's ctime as the listing's ``find`` printed it (``%C@``: seconds since the
    #: epoch, with nanoseconds), "" when not listed (a mailbox made by hand); and whether
    #: it was CTIME_SETTLED seconds old then by the source's clock (a clock not read from
    #: the source is no such proof): apply's read skips the digest of its checks while the
    #: file's ctime is still this settled one (:class:`mailplan.mail.snapshot.SnapshotStream`)
    ctime: str = ""
    ctime_settled: bool = False

    @property
    def listed_ctime(self) -> tuple[str, bool] | None:
        """``(ctime, ctime_settled)`` as listed; None for a mailbox not from a listing."""
        return (self.ctime, self.ctime_settled) if self.ctime else None

    @property
    def ident(self) -> tuple[int, int] | None:
        """Device and inode as listed: apply's read checks the file it opened is this
        one (:func:`mailplan.mail.windows.guarded`); None where the device is not
        known."""
        return (self.device, self.inode) if self.device else None

    @property
    def key(self) -> str:
        """Stable name of this mailbox in plans and checkpoints. A folder file named
        ``INBOX`` (merged into the INBOX like any spelling of that name) is not the spool:
        its key says so, or the two would share reads, scans and checkpoints."""
        return f"{self.user}@{self.domain}/{self.name}"

    @property
    def name(self) -> str:
        """The folder, as plans show it (unique among a user's mailboxes)."""
        if self.home_mbox:
            return "INBOX (~/mbox)"
        if not (self.folder_file and is_inbox(self.folder)):
            return self.folder
        return "INBOX (folder file)" if self.folder == "INBOX" \
            else f"INBOX (folder file {self.folder})"

    @property
    def dirname(self) -> str:
        """The Maildir++ directory it is imported into (``""`` = INBOX)."""
        if self.written is not None:
            return self.written
        return folder_dirname(self.folder, self.names)

    @property
    def subscription(self) -> dict[str, list[str]]:
        """Its lines in the subscription files (:func:`dir_subscription_lines`)."""
        return dir_subscription_lines([self.dirname])
