"""What messages already on the target gain: the flags and keywords their files lack.

A message of the source found on the target (same identity) is not imported again; when
the import would now give it Maildir flags or IMAP keywords that its file there lacks
(mail read or answered on the old server after it was imported), it gains them: a plan
proposes adding them (a ``flags`` change, before the folder's import).
:class:`~mailplan.facts.mailbox_scan.MailboxScan` notes them in its ``gain`` (by
identity key: the flags, then each keyword after a space, then a tab and the source's
flags and keywords the same way), apply reads a value back with :func:`split_gain` and
:func:`source_flags`, and the plan's line counts them (:meth:`FlagGain.gained`).

A flag or keyword the source had already when mailplan last wrote the message's flags
(the ledger's flags line, :attr:`~mailplan.facts.ledger_flags.FolderFlags.recorded`:
its import, a ``G``) and its file lacks was removed there by its user: it is not
proposed again. One the source had then and has no longer (unset in pine on the old
server) makes a value with nothing to add: apply records the source's flags (the
writer appends its flags line, no file changes), so that the flag is a gain again when
it comes back (:meth:`FlagGain.lost`). A message without that line (imported by an
earlier version) is compared as before; a line of session 55, capitals only, records
no keyword. No I/O: the scan reads both sides.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from mailplan.facts.ledger_flags import FolderFlags
from mailplan.mail.bookkeeping import MAX_KEYWORDS
from mailplan.mail.maildir import Identities

#: the order a plan names the flags messages gain in: as README's flag rules list them
FLAG_ORDER = "SRFTD"
#: the key of :meth:`MailboxScan.gained` that counts the messages gaining keywords
KEYWORDS = "keywords"
_LETTERS = "abcdefghijklmnopqrstuvwxyz"  # keyword letters, after the flags in a name


def split_gain(value: str) -> tuple[str, list[str]]:
    """A :attr:`MailboxScan.gain` value as its Maildir flags and its IMAP keywords."""
    flags, *keywords = value.partition("\t")[0].split(" ")
    return flags, keywords


def source_flags(value: str) -> tuple[str, list[str]]:
    """The source's Maildir flags and IMAP keywords a :attr:`MailboxScan.gain` value
    carries: what the writer records in the ledger once the message has its flags
    (``G``, the keywords as the folder's letters)."""
    flags, *keywords = value.partition("\t")[2].split(" ")
    return flags, keywords


def _named(letters: str, named: Mapping[str, str]) -> set[str]:
    """The keywords the letters among ``letters`` (flags too: ``named`` has no capital)
    name in a folder (``named``: its ``dovecot-keywords``); a letter it does not name
    names none."""
    return {named[c] for c in letters if c in named}


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

    def lost(self) -> int:
        """How many values add nothing: messages whose source lost flags or keywords
        since mailplan recorded them, whose record alone apply writes anew."""
        return sum(1 for value in self.gain.values() if value.startswith("\t"))

    def compare_flags(self, identity: tuple[str, int], flags: str,
                      there: FolderFlags, keywords: Collection[str] = ()) -> None:
        """Note in ``gain`` the Maildir flags of ``flags`` and the IMAP ``keywords``
        (what the import gives the message now) that its file on the target (``there``,
        by identity key) lacks, but not those the source had when mailplan last wrote
        its flags (``there.recorded``: removed there by the user); a message with no
        file there (deleted by its user) gains nothing. A message whose source no longer
        has one ``there.recorded`` holds is noted with nothing to add (its record is
        written anew). A keyword counts only where the folder has a letter for it or one
        left (``there.keywords``): past its 26th it is not carried, and is not proposed
        again and again."""
        ident = Identities.key(identity)
        have = there.get(ident)
        if have is None:
            return
        had = there.recorded.get(ident)  # None: no flags line (an earlier version's)
        # its capitals, then the keyword letters (as in a file name): most often the
        # same capitals as the source's now, and no letter
        caps = had.rstrip(_LETTERS) if had else ""
        before = _named(had[len(caps):], there.keywords) if had and had != caps else set()
        missing = "".join(sorted(set(flags) - set(have) - set(caps)))
        if keywords:
            named = there.keywords
            held = _named(have, named)
            room = len(named) < MAX_KEYWORDS
            known = set(named.values())
            lacking = sorted(k for k in keywords if k not in held and k not in before
                             and (room or k in known))
            if lacking:
                missing += " " + " ".join(lacking)
        lost = had is not None and (caps != flags and not set(caps).issubset(flags)
                                    or before and not before.issubset(keywords))
        if missing or lost:
            self.gain[ident] = f"{missing}\t{flags}" + "".join(
                " " + k for k in sorted(keywords))
