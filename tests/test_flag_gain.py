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
    assert source_flags(s.gain[Identities.key(ONE)]) == ("FRS", [])
    assert s.gained() == {"S": 1, "R": 1, "F": 1}


def test_a_keyword_the_source_had_when_last_written_is_not_proposed_again():
    """The flags line records the keywords too, as the folder's letters: one the user
    removed on the target (its letter gone from the file) stays removed; one the source
    gained since is proposed, and apply is handed every keyword the source has, to
    record. A line of session 55 (capitals only) records no keyword: as before."""
    s = scan()
    there = folder({ONE: "S", TWO: "S"}, {"a": "Work", "b": "Junk"})
    there.recorded[Identities.key(ONE)] = "Sab"  # imported with both; the user removed them
    there.recorded[Identities.key(TWO)] = "S"  # recorded by session 55's writer
    s.compare_flags(ONE, "S", there, frozenset({"Work", "Junk"}))
    assert s.gain == {}
    s.compare_flags(ONE, "S", there, frozenset({"Work", "Junk", "Later"}))
    s.compare_flags(TWO, "S", there, frozenset({"Work"}))
    assert {k: (split_gain(v), source_flags(v)) for k, v in s.gain.items()} == {
        Identities.key(ONE): (("", ["Later"]), ("S", ["Junk", "Later", "Work"])),
        Identities.key(TWO): (("", ["Work"]), ("S", ["Work"]))}
    assert s.gained() == {"keywords": 2} and s.lost() == 0


def test_a_flag_the_source_lost_since_it_was_recorded_is_recorded_again():
    """Unset on the old server (pine's unread, a keyword taken off): nothing to add, but
    the message's record is written anew, so that the flag is a gain when it comes
    back; a message whose source still has all it had, or with no record, is not noted."""
    s = scan()
    there = folder({ONE: "", TWO: "Sa", ("c" * 64, 0): "S"}, {"a": "Work"})
    there.recorded[Identities.key(ONE)] = "FS"  # the user removed both on the target
    there.recorded[Identities.key(TWO)] = "Sa"
    s.compare_flags(ONE, "F", there)  # \Seen unset on the old server
    s.compare_flags(TWO, "S", there)  # the keyword taken off there
    s.compare_flags(("c" * 64, 0), "", there)  # no record: nothing to compare with
    assert {k: (split_gain(v), source_flags(v)) for k, v in s.gain.items()} == {
        Identities.key(ONE): (("", []), ("F", [])),
        Identities.key(TWO): (("", []), ("S", []))}
    assert s.gained() == {} and s.lost() == 2
    # recorded so (apply: the writer's flags line), \Seen back on the old server is a gain
    there.recorded[Identities.key(ONE)] = "F"
    there.recorded[Identities.key(TWO)] = "S"
    s.gain.clear()
    s.compare_flags(ONE, "FS", there)
    s.compare_flags(TWO, "S", there, frozenset({"Work"}))
    assert {k: split_gain(v) for k, v in s.gain.items()} == {
        Identities.key(ONE): ("S", [])}
