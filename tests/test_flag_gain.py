"""What a plan holds for the flags change of a folder (``MailboxScan.gain``): the Maildir
flags and IMAP keywords the source has that a message's file on the target lacks, as
apply reads them back (``split_gain``), counted for the plan's line (``gained``)."""

from __future__ import annotations

import pytest

from mailplan.facts.flag_gain import source_flags, split_gain
from mailplan.facts.mailbox_scan import MailboxScan
from mailplan.facts.mailboxes import SourceMailbox
from mailplan.facts.maildirs import FolderFlags
from mailplan.mail.bookkeeping import KEYWORD, MAX_KEYWORDS
from mailplan.mail.maildir import Identities

ONE = ("a" * 64, 0)
TWO = ("b" * 64, 0)
#: every character an IMAP keyword the import carries may hold but letters and digits
ODD = "$!#&'+-.:;<=>?@^_`|~/"


def scan() -> MailboxScan:
    mb = SourceMailbox("d.example", "ann", "INBOX", "/var/mail/ann", 0, 0.0, 1)
    return MailboxScan(mb, 0)


def folder(files: dict[tuple[str, int], str], keywords: dict[str, str]) -> FolderFlags:
    there = FolderFlags()
    there.update({Identities.key(i): flags for i, flags in files.items()})
    there.keywords = keywords
    return there


def test_keywords_with_any_atom_character_come_back_as_they_were_proposed():
    assert KEYWORD.fullmatch(ODD)
    s = scan()
    there = folder({ONE: "Sa", TWO: ""}, {"a": "Work"})
    s.compare_flags(ONE, "RS", there, frozenset({"Work", ODD, "Junk"}))
    s.compare_flags(TWO, "", there, frozenset({ODD}))
    assert split_gain(s.gain[Identities.key(ONE)]) == ("R", sorted(["Junk", ODD]))
    assert split_gain(s.gain[Identities.key(TWO)]) == ("", [ODD])
    assert s.gained() == {"R": 1, "keywords": 2}


@pytest.mark.parametrize(("taken", "proposed"), [
    (MAX_KEYWORDS - 1, ["Junk", "Work"]),  # a letter left: both asked for
    (MAX_KEYWORDS, ["Work"]),  # none left: only the keyword the folder has
])
def test_a_keyword_is_proposed_only_where_the_folder_has_a_letter_for_it(taken, proposed):
    named = {chr(97 + n): f"k{n}" for n in range(taken)}
    named["a"] = "Work"
    s = scan()
    s.compare_flags(ONE, "S", folder({ONE: "S"}, named), frozenset({"Work", "Junk"}))
    assert split_gain(s.gain[Identities.key(ONE)]) == ("", proposed)


def test_a_message_with_all_it_has_or_no_file_gains_nothing():
    s = scan()
    there = folder({ONE: "RSab"}, {"a": "Work", "b": "Junk"})
    s.compare_flags(ONE, "S", there, frozenset({"Work", "Junk"}))
    s.compare_flags(TWO, "SF", there, frozenset({"Work"}))
    assert s.gain == {} and s.gained() == {}


def test_a_flag_the_source_had_when_last_written_is_not_proposed_again():
    """The ledger's flags line (``recorded``): what the source had when mailplan last
    wrote the message's flags; the file's lack of one was the user's doing. Without
    one (an earlier version's import) whatever the file lacks is proposed, as before."""
    s = scan()
    there = folder({ONE: "", TWO: ""}, {})
    there.recorded[Identities.key(ONE)] = "FS"
    s.compare_flags(ONE, "FS", there)
    assert s.gain == {}
    s.compare_flags(ONE, "FRS", there)  # answered on the old server since
    s.compare_flags(TWO, "FS", there)  # imported by an earlier version: no record
    assert {k: split_gain(v) for k, v in s.gain.items()} == {
        Identities.key(ONE): ("R", []), Identities.key(TWO): ("FS", [])}
    # what apply hands the writer to record: the source's flags
    assert source_flags(s.gain[Identities.key(ONE)]) == "FRS"
    assert s.gained() == {"S": 1, "R": 1, "F": 1}
