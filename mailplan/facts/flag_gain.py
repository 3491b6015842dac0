"""What messages already on the target gain: the flags and keywords their files lack.

A message of the source found on the target (same identity) is not imported again; when
the import would now give it Maildir flags or IMAP keywords that its file there lacks
(mail read or answered on the old server after it was imported), it gains them: a plan
proposes adding them (a ``flags`` change, before the folder's import).
:class:`~mailplan.facts.mailbox_scan.MailboxScan` notes them in its ``gain`` (by
identity key: the flags, then each keyword after a space, then a tab and the source's
flags), apply reads a value back with :func:`split_gain` and :func:`source_flags`, and
the plan's line counts them (:meth:`FlagGain.gained`). A flag the source had already
when mailplan last wrote the message's flags (the ledger's flags line, ``recorded`` of
:class:`~mailplan.facts.maildirs.FolderFlags`: its import, a ``G``) and its file lacks
was removed there by its user: it is not proposed again. A message without that line
(imported by an earlier version) is compared as before: whatever its file lacks.
No I/O: the scan reads both sides.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from mailplan.mail.bookkeeping import MAX_KEYWORDS
from mailplan.mail.maildir import Identities

#: the order a plan names the flags messages gain in: as README's flag rules list them
FLAG_ORDER = "SRFTD"
#: the key of :meth:`MailboxScan.gained` that counts the messages gaining keywords
KEYWORDS = "keywords"


def split_gain(value: str) -> tuple[str, list[str]]:
    """A :attr:`MailboxScan.gain` value as its Maildir flags and its IMAP keywords."""
    flags, *keywords = value.partition("\t")[0].split(" ")
    return flags, keywords


def source_flags(value: str) -> str:
    """The source's Maildir flags a :attr:`MailboxScan.gain` value carries: what the
    writer records in the ledger once the message has its flags (``G``)."""
    return value.partition("\t")[2]


class FlagGain:
    """What a scan's messages gain (a mixin of :class:`MailboxScan`, which holds ``gain``)."""

    gain: dict[bytes, str]

    def gained(self) -> dict[str, int]:
        """How many messages gain each flag, in the order of :data:`FLAG_ORDER`, then
        how many gain keywords (under ``keywords``)."""
        counts = {flag: 0 for flag in (*FLAG_ORDER, KEYWORDS)}
        for value in self.gain.values():
            flags, keywords = split_gain(value)
            for flag in flags:
                counts[flag] = counts.get(flag, 0) + 1
            if keywords:
                counts[KEYWORDS] += 1
        return {flag: n for flag, n in counts.items() if n}

    def compare_flags(self, identity: tuple[str, int], flags: str,
                      there: Mapping[bytes, str], keywords: Collection[str] = ()) -> None:
        """Note in ``gain`` the Maildir flags of ``flags`` and the IMAP ``keywords``
        (what the import gives the message now) that its file on the target (``there``,
        by identity key) lacks, but not those the source had when mailplan last wrote
        its flags (``there.recorded``: removed there by the user); a message with no
        file there (deleted by its user) gains nothing. A keyword counts only where the
        folder has a letter for it or one left (``there.keywords``,
        :class:`~mailplan.facts.maildirs.FolderFlags`): past its 26th it is not carried,
        and is not proposed again and again."""
        ident = Identities.key(identity)
        have = there.get(ident)
        if have is None:
            return
        recorded: Mapping[bytes, str] = getattr(there, "recorded", {})
        missing = "".join(sorted(set(flags) - set(have) - set(recorded.get(ident, ""))))
        if keywords:
            named: Mapping[str, str] = getattr(there, "keywords", {})
            held = {named.get(c) for c in have if c.islower()}
            room = len(named) < MAX_KEYWORDS
            known = set(named.values())
            lacking = sorted(k for k in keywords if k not in held and (room or k in known))
            if lacking:
                missing += " " + " ".join(lacking)
        if missing:
            self.gain[ident] = f"{missing}\t{flags}"
