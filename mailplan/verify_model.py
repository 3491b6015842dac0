"""What ``mailplan verify`` found, and the pure comparisons that decide it.

The I/O lives in :mod:`mailplan.verify`; everything here takes plain data read from the
two hosts and returns findings, so each rule is a table test. A finding either fails the
verification (missing mail, a different hash, ...) or is *explained*: listed, but expected
(a message the user deleted on the new server, a mailbox the plan reports as unreadable).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from mailplan.desired import LOCKED, DesiredUser
from mailplan.diff import password_matches
from mailplan.facts.vpopmail import TargetUser
from mailplan.mail.bookkeeping import MAX_KEYWORDS
from mailplan.names import quota_field
from mailplan.text import marked

Identity = tuple[str, int]


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """One message of a source mbox, as the importer would store it."""

    size: int
    flags: str  # Maildir flags ("" for a message that goes to new/)
    arrival: float | None
    keywords: frozenset[str] = frozenset()  # IMAP keywords an import carries (X-Keywords)
    #: where it is in its source file, as the reader met it: its number among the
    #: messages the importer takes (1-based, the UW-IMAP pseudo message is not one; 0:
    #: not known), the byte offset of its From_ line, and the file (the mailbox's path
    #: string, shared by its messages: no copy per message)
    number: int = 0
    offset: int = 0
    path: str = ""


@dataclass(frozen=True)
class SourcePosition:
    """Where the source has a message a finding names: what finds it on the old server."""

    path: str
    message: int  # its number in the file, 1-based, counting the messages the importer takes
    offset: int  # the byte offset of its From_ line
    #: the arrival time the importer takes (the From_ line's date, else the Date: header,
    #: else the mailbox's mtime), in whole seconds since the epoch, and as text in UTC
    arrival: int | None
    arrival_utc: str | None

    @classmethod
    def of(cls, msg: SourceMessage) -> SourcePosition:
        """The position of ``msg`` as the reader recorded it."""
        when = None if msg.arrival is None else int(msg.arrival)
        return cls(msg.path, msg.number, msg.offset, when,
                   None if when is None else utc(when))


def utc(seconds: float) -> str:
    """A file date as findings show it: ``2026-11-02 10:00:00 UTC`` (whole seconds, as
    the comparison takes them)."""
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class TargetMessage:
    """One mailplan-written file in a Maildir folder."""

    name_size: int  # the ,S= field
    file_size: int
    flags: str  # system flags after :2, ("" in new/)
    mtime: float
    path: str
    #: IMAP keywords: the name's keyword letters read through the folder's dovecot-keywords
    keywords: frozenset[str] = frozenset()
    #: the keywords courier-imap shows (courierimapkeywords/; None: not checked, the
    #: folder has no such directory or only dovecot opened it)
    courier: frozenset[str] | None = None
    #: False: ``keywords`` are not checked (only courier-imap opened the folder)
    dovecot: bool = True


@dataclass
class AccountCheck:
    """One user of the spec on the target."""

    domain: str
    user: str
    present: bool
    #: "identical", "different", "kept" (create_only), "locked" (as the old server has
    #: it), "not locked" (the old server locks it out, its password here lets it in),
    #: "-" (absent)
    password: str
    quota: tuple[str, str]  # (wanted, found)
    comment: tuple[str, str]

    @property
    def ok(self) -> bool:
        """Present, same password, quota and comment as specified."""
        return (self.present and self.password in ("identical", "kept", "locked")
                and self.quota[0] == self.quota[1] and self.comment[0] == self.comment[1])


@dataclass
class FolderCheck:
    """One folder: source messages against target files and the import ledger."""

    domain: str
    user: str
    folder: str
    source: int = 0
    target: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    content: list[str] = field(default_factory=list)  # size differs (name, file or source)
    flags: list[str] = field(default_factory=list)  # a source flag or keyword missing there
    dates: list[str] = field(default_factory=list)
    # explained, never failing:
    deleted_on_target: list[str] = field(default_factory=list)
    gone_from_source: list[str] = field(default_factory=list)
    #: imported into another of the user's folders (its ledger), moved here on the
    #: target (a message filed there, or the folder renamed): ``ID (from FOLDER)``
    moved_on_target: list[str] = field(default_factory=list)
    #: imported here, now in another of the user's folders: ``ID (to FOLDER)``
    moved_away: list[str] = field(default_factory=list)
    flags_added_on_target: list[str] = field(default_factory=list)
    #: flags the source had when mailplan last wrote them, removed on the target since
    flags_removed_on_target: list[str] = field(default_factory=list)
    #: source keywords the folder had no letter left for (dovecot keeps 26 a folder)
    keywords_not_carried: list[str] = field(default_factory=list)
    #: where the source has each message the lists above name (by the identity they name
    #: it by, :func:`identity_of`); a message only on the target has none
    on_source: dict[str, SourcePosition] = field(default_factory=dict)
    #: the folder's directory is not on the target, and no apply made it
    folder_missing: bool = False
    #: not on the target, though an apply made it: the user deleted it (not a failure)
    folder_deleted_on_target: bool = False
    #: the subscription files (:data:`~mailplan.mail.maildir.SUBSCRIPTION_FILES`) that
    #: lack the line apply writes for the folder
    unsubscribed: list[str] = field(default_factory=list)
    #: why apply cannot write those files (``subscriptions is a directory``)
    unsubscribable: list[str] = field(default_factory=list)
    error: str | None = None  # the source mailbox could not be read (the plan says so)
    changed_during_read: str | None = None
    reused: bool = False  # exactly as the last verify proved it; not read again

    @property
    def ok(self) -> bool:
        """No missing, extra, different or unverifiable message, subscribed as apply
        subscribes it."""
        return not (self.missing or self.extra or self.content or self.flags or self.dates
                    or self.changed_during_read or self.folder_missing or self.unsubscribed)


@dataclass
class Report:
    """The whole verification."""

    target_host: str
    accounts: list[AccountCheck] = field(default_factory=list)
    folders: list[FolderCheck] = field(default_factory=list)
    routing: list[str] = field(default_factory=list)  # pending routing/catch-all changes
    explained: list[str] = field(default_factory=list)  # expected differences
    #: what the spec covers and the plan cannot migrate (its problems: an account the
    #: import rule takes with a locked or unusable password, ...): failures until the
    #: spec leaves it out or says how to migrate it, for its mail would stay behind
    unmigrated: list[str] = field(default_factory=list)
    login: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """Everything matches (explained differences do not count)."""
        return (all(a.ok for a in self.accounts) and all(f.ok for f in self.folders)
                and not self.routing and not self.unmigrated
                and (self.login is None or bool(self.login["ok"])))

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document (never holds a password or a hash). Each folder's
        ``on_source`` was added to version 1 (its other keys are as they were)."""
        return {"format_version": 1, "ok": self.ok, "target": self.target_host,
                "accounts": [{**asdict(a), "ok": a.ok} for a in self.accounts],
                "folders": [{**asdict(f), "ok": f.ok} for f in self.folders],
                "routing": list(self.routing), "unmigrated": list(self.unmigrated),
                "explained": list(self.explained),
                "login": self.login}


def check_account(want: DesiredUser, have: TargetUser | None, *, keep: bool = False
                  ) -> AccountCheck:
    """Compare one user (the hash is compared, never shown). ``keep``: a password that
    differs is kept (``target.passwords: create_only``): set on the target since, or
    changed on the source, which verify cannot tell apart."""
    quota = quota_field(want.quota)
    if have is None:
        return AccountCheck(want.domain, want.name, False, "-", (quota, "-"),
                            (want.comment, "-"))
    same = password_matches(want.password, have)
    if want.password.kind == LOCKED:  # kept or not, a lock that is not there fails
        password = "locked" if same else "not locked"
    else:
        password = "identical" if same else "kept" if keep else "different"
    return AccountCheck(want.domain, want.name, True, password, (quota, have.quota),
                        (want.comment, have.comment))


def _short(ident: Identity) -> str:
    return f"{ident[0][:12]}#{ident[1]}"


def identity_of(finding: str) -> str:
    """The identity a finding of :class:`FolderCheck` names (its first word, as
    :func:`_short` writes it: ``3f2a9c01b7de#1``), the key of ``on_source``."""
    return finding.split(" ", 1)[0].rstrip(":")


def _named(check: FolderCheck, source: dict[Identity, SourceMessage], ident: Identity
           ) -> str:
    """``ident`` as a finding names it; where the source has the message (its position
    known), noted in ``check.on_source``."""
    short = _short(ident)
    msg = source.get(ident)
    if msg is not None and msg.number:
        check.on_source[short] = SourcePosition.of(msg)
    return short


def _state(flags: str, keywords: frozenset[str] | set[str]) -> str:
    """Flags and keywords as a finding shows them: ``FS $Label1 Junk``, ``-`` for none."""
    return " ".join(["".join(sorted(flags))] * bool(flags) + sorted(keywords)) or "-"


def _first(folders: Mapping[str, Container[Identity]], ident: Identity,
           unlike: Mapping[str, Container[Identity]]) -> str | None:
    """The first folder, by name, that holds ``ident`` and that ``unlike`` does not list
    it for; else the first that holds it (None: none does). A message in two folders
    (pine filed it into another on the old server while the target's INBOX kept it) was
    moved to (from) the folder it was not imported into (that still holds it)."""
    held = [f for f, there in sorted(folders.items()) if ident in there]
    return next((f for f in held if ident not in unlike.get(f, ())), held[0] if held else None)


def _not_here(check: FolderCheck, idents: list[Identity], ledger: set[Identity],
              moved_to: Mapping[str, Container[Identity]], name: Callable[[Identity], str],
              source: Mapping[Identity, SourceMessage],
              ledgers: Mapping[str, Container[Identity]]) -> None:
    """The source's messages the folder lacks: missing, or imported (in its ledger) and
    then moved to another folder (``moved_to`` holds it, preferably one whose ledger
    ``ledgers`` does not list it) or deleted by the user. A moved
    message whose copy there lacks a flag or keyword the source has (set on the old
    server after the move, or removed by the user on the new one: verify cannot tell)
    says so: no plan adds it (flags are added only in the folder a message was imported
    into), and the copy is the user's now, as a deleted message is."""
    for ident in idents:
        to = _first(moved_to, ident, ledgers) if ident in ledger else None
        if to is not None:
            check.moved_away.append(f"{name(ident)} (to {marked(to)}"
                                    f"{_moved_flags(source[ident], moved_to[to], ident)})")
        else:
            (check.deleted_on_target if ident in ledger else check.missing).append(name(ident))


def _moved_flags(want: SourceMessage, there: Container[Identity], ident: Identity) -> str:
    """What a moved message's copy lacks of its source's flags and keywords ("" for
    nothing, or where the copies are not known: only their identities)."""
    copies = there.get(ident) if isinstance(there, Mapping) else None
    if not copies:
        return ""
    have = copies[0]
    letters = have.keywords if have.dovecot else want.keywords
    if not (set(want.flags) - set(have.flags) or want.keywords - letters):
        return ""
    return (f"; flags: source {_state(want.flags, want.keywords)}, there "
            f"{_state(have.flags, letters)}, not carried to a moved message")


def compare_folder(check: FolderCheck, source: dict[Identity, SourceMessage],
                   target: dict[Identity, list[TargetMessage]],
                   ledger: set[Identity], keywords: frozenset[str] = frozenset(),
                   elsewhere: Mapping[str, Container[Identity]] | None = None,
                   moved_to: Mapping[str, Container[Identity]] | None = None,
                   recorded: Mapping[Identity, str] | None = None,
                   named: Mapping[str, str] | None = None) -> FolderCheck:
    """Fill ``check`` from one folder's messages on both sides and its ledger lines.
    ``recorded``: the flags and keyword letters its ledger's flags lines record
    (``Recorded.recorded``; ``named``: the folder's letters, letter -> keyword): a source
    flag or keyword one holds that the file lacks was removed there by its user.

    ``keywords``: the names the folder's ``dovecot-keywords`` holds. Once it holds 26, a
    source keyword not among them had no letter left: the import could not carry it, and
    it is listed as such, not as lost. Keywords are compared as dovecot reads them (the
    name's letters) and as courier-imap does (its own files,
    :mod:`mailplan.mail.courierkw`), each where the target message says so
    (:func:`mailplan.verify.keyword_views`).

    ``elsewhere``: the ledgers of the user's folders, by folder name (this folder's may
    be among them: ``ledger`` is looked at first). A message only the target has here
    that another folder's lists was imported there and moved here by
    the user (an IMAP client filing it, the folder renamed): explained, not extra.
    ``moved_to``: the message files of the user's other folders, by folder name: a
    message deleted here that one of them holds was moved there, and is said so; one
    that came here and that its folder still holds was copied. Of two folders, the one
    it was not imported into (the one that no longer holds it) is named (:func:`_first`)."""
    full = len(keywords) >= MAX_KEYWORDS
    name = partial(_named, check, source)
    check.source = len(source)
    check.target = sum(len(v) for v in target.values())
    _not_here(check, sorted(source.keys() - target.keys()), ledger, moved_to or {}, name,
              source, elsewhere or {})
    for ident in sorted(target.keys() - source.keys()):
        origin = None if ident in ledger else _first(elsewhere or {}, ident, moved_to or {})
        if origin is not None:
            # a copy (IMAP COPY: dovecot links the same file) leaves it there too
            copied = ", copied: still there too" if ident in (moved_to or {}).get(
                origin, ()) else ""
            check.moved_on_target.append(f"{name(ident)} (from {marked(origin)}{copied})")
        else:
            (check.gone_from_source if ident in ledger else check.extra).append(name(ident))
    for ident in sorted(target.keys()):
        files = target[ident]
        if len(files) > 1:
            check.extra.append(f"{name(ident)} (stored {len(files)} times)")
        want = source.get(ident)
        for have in files:
            sizes = {have.name_size, have.file_size} | ({want.size} if want else set())
            if len(sizes) > 1:
                check.content.append(f"{name(ident)}: size {have.file_size}, name says "
                                     f"{have.name_size}" + (f", source {want.size}"
                                                            if want else ""))
            if want is None:
                continue
            expected = want.keywords & keywords if full else want.keywords
            if full and want.keywords - keywords:
                check.keywords_not_carried.append(
                    f"{name(ident)}: {_state('', want.keywords - keywords)}")
            added_flags = "".join(set(have.flags) - set(want.flags))
            wanted, letters = (expected, have.keywords) if have.dovecot else (set(), set())
            added_keywords = letters - wanted
            # what the source had when mailplan last wrote the message's flags (the
            # ledger's flags line) and the file lacks: removed there by its user
            had = (recorded or {}).get(ident, "")
            removed = (set(want.flags) - set(have.flags)) & set(had)
            unset = (wanted - letters) & {(named or {}).get(c) for c in had}
            if removed or unset:
                check.flags_removed_on_target.append(
                    f"{name(ident)}: -{_state(''.join(removed), unset)}")
            if set(want.flags) - set(have.flags) - removed or wanted - letters - unset:
                check.flags.append(f"{name(ident)}: source {_state(want.flags, wanted)}, "
                                   f"target {_state(have.flags, letters)}")
            elif added_flags or added_keywords:
                check.flags_added_on_target.append(
                    f"{name(ident)}: +{_state(added_flags, added_keywords)}")
            if have.courier is not None and expected - have.courier:
                check.flags.append(f"{name(ident)}: source {_state('', expected)}, "
                                   f"courier-imap {_state('', have.courier)}")
            elif have.courier is not None and have.courier - expected:
                check.flags_added_on_target.append(
                    f"{name(ident)}: +{_state('', have.courier - expected)} (courier-imap)")
            if want.arrival is not None and int(have.mtime) != int(want.arrival):
                check.dates.append(f"{name(ident)}: source {utc(want.arrival)}, target "
                                   f"{utc(have.mtime)}")
    return check
