"""mailplan verify says where the source has each message a finding names: its number
and From_ line offset in the source file and its arrival time, in the text report and in
``--json`` (``on_source``), carried from the mbox reader's own count."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mailplan.connectors.local import LocalConnector
from mailplan.facts.mailboxes import SourceMailbox
from mailplan.verify_cache import source_digest
from mailplan.verify_model import (
    FolderCheck,
    Report,
    SourceMessage,
    SourcePosition,
    TargetMessage,
    compare_folder,
    identity_of,
)
from mailplan.verify_reads import read_source_mail
from mailplan.verify_render import _details, render_report

A, B, C = ("a" * 64, 0), ("b" * 64, 0), ("c" * 64, 1)
SPOOL = "/var/spool/mail/alice"
NOV2 = 1793613600.0  # 2026-11-02 10:00:00 UTC
AT_A = SourcePosition(SPOOL, 3, 812, 1793613600, "2026-11-02 10:00:00 UTC")


def src(size: int = 10, flags: str = "", keywords: frozenset[str] = frozenset(),
        number: int = 3, offset: int = 812) -> SourceMessage:
    return SourceMessage(size, flags, NOV2, keywords, number, offset, SPOOL)


def tm(size: int = 10, flags: str = "", mtime: float = NOV2, file_size: int | None = None,
       keywords: frozenset[str] = frozenset()) -> TargetMessage:
    return TargetMessage(size, size if file_size is None else file_size, flags, mtime, "/x",
                         keywords)


def check_of(source: dict, target: dict, ledger: set, keywords: frozenset[str] = frozenset()
             ) -> FolderCheck:
    return compare_folder(FolderCheck("d.example", "alice", "INBOX"), source, target, ledger,
                          keywords)


@pytest.mark.parametrize(("source", "target", "ledger", "field"), [
    ({A: src()}, {}, set(), "missing"),
    ({A: src()}, {}, {A}, "deleted_on_target"),
    ({A: src()}, {A: [tm(), tm()]}, {A}, "extra"),  # stored twice
    ({A: src()}, {A: [tm(file_size=7)]}, {A}, "content"),
    ({A: src(flags="FS")}, {A: [tm(flags="S")]}, {A}, "flags"),
    ({A: src(flags="S")}, {A: [tm(flags="RS")]}, {A}, "flags_added_on_target"),
    ({A: src()}, {A: [tm(mtime=160.0)]}, {A}, "dates"),
])
def test_a_finding_about_a_source_message_says_where_it_is(source, target, ledger, field):
    check = check_of(source, target, ledger)
    (finding,) = getattr(check, field)
    assert identity_of(finding) == "aaaaaaaaaaaa#0"
    assert check.on_source == {"aaaaaaaaaaaa#0": AT_A}


def test_a_keyword_not_carried_says_where_its_message_is():
    named = frozenset({"Junk", *(f"k{i}" for i in range(25))})
    check = check_of({A: src(flags="S", keywords=frozenset({"$Label1", "Junk"}))},
                     {A: [tm(flags="S", keywords=frozenset({"Junk"}))]}, {A}, named)
    assert check.keywords_not_carried == ["aaaaaaaaaaaa#0: $Label1"]
    assert check.on_source == {"aaaaaaaaaaaa#0": AT_A}


def test_a_message_only_on_the_target_has_no_source_position():
    check = check_of({A: src()}, {A: [tm()], B: [tm()], C: [tm(file_size=3)]}, {C})
    assert check.extra == ["bbbbbbbbbbbb#0"] and check.gone_from_source == ["cccccccccccc#1"]
    assert check.content == ["cccccccccccc#1: size 3, name says 10"]
    assert check.on_source == {}  # and A, which matches, is named by no finding


def test_a_message_whose_position_is_not_known_has_none():
    check = check_of({A: SourceMessage(10, "", NOV2)}, {}, set())
    assert check.missing == ["aaaaaaaaaaaa#0"] and check.on_source == {}


def test_a_message_without_an_arrival_time_still_has_its_position():
    check = check_of({A: SourceMessage(10, "", None, frozenset(), 1, 0, SPOOL)}, {}, set())
    assert check.on_source == {"aaaaaaaaaaaa#0": SourcePosition(SPOOL, 1, 0, None, None)}
    assert _details(check) == [
        "          missing on the target:",
        f"            aaaaaaaaaaaa#0 (on the source: message 1, From_ line at byte 0 of "
        f"{SPOOL})"]


def test_the_text_report_puts_each_located_finding_on_a_line_of_its_own():
    many = {(f"{i:x}" * 64, 0): src(number=i, offset=100 * i) for i in range(1, 8)}
    check = check_of({**many, A: src(flags="FS")}, {A: [tm(flags="S")], B: [tm()]}, {A})
    assert _details(check) == [
        "          missing on the target:",
        *(f"            {i:x}{i:x}{i:x}{i:x}{i:x}{i:x}{i:x}{i:x}{i:x}{i:x}{i:x}{i:x}#0 (on "
          f"the source: message {i}, From_ line at byte {100 * i} of {SPOOL}, arrival "
          "2026-11-02 10:00:00 UTC)" for i in range(1, 6)),
        "            ... (7 in all)",
        "          extra: bbbbbbbbbbbb#0",  # only on the target: as before, on one line
        "          flags lost:",
        "            aaaaaaaaaaaa#0: source FS, target S (on the source: message 3, From_ "
        f"line at byte 812 of {SPOOL}, arrival 2026-11-02 10:00:00 UTC)",
        "          (`mailplan apply SPEC` adds them as `~ flags` where its plan reads that "
        "mailbox whole; where the plan shows no `~ flags`, only `mailplan apply --rescan "
        "SPEC` does: a flag set on the old server in place since the import, or one the user "
        "removed on the new server from a message an earlier mailplan imported, which "
        "verify cannot tell apart)"]
    assert ("            aaaaaaaaaaaa#0: source FS, target S (on the source: message 3"
            in render_report(Report("newmail", folders=[check])))


def test_the_json_keeps_the_identities_and_adds_where_the_source_has_them():
    check = check_of({A: src()}, {B: [tm()]}, set())
    doc = json.loads(json.dumps(Report("newmail", folders=[check]).to_dict()))
    (folder,) = doc["folders"]
    assert folder["missing"] == ["aaaaaaaaaaaa#0"] and folder["extra"] == ["bbbbbbbbbbbb#0"]
    assert folder["on_source"] == {"aaaaaaaaaaaa#0": {
        "path": SPOOL, "message": 3, "offset": 812, "arrival": 1793613600,
        "arrival_utc": "2026-11-02 10:00:00 UTC"}}


def test_the_verify_cache_digest_ignores_positions():
    """The record of folders proven identical stays valid: positions are not digested."""
    assert source_digest({A: src()}) == source_digest({A: src(number=9, offset=4096)}) \
        == source_digest({A: SourceMessage(10, "", NOV2)})


PSEUDO = (b"From MAILER-DAEMON Mon Nov  2 09:00:00 2026\nSubject: DON'T DELETE THIS MESSAGE "
          b"-- FOLDER INTERNAL DATA\nX-IMAP: 1 2\n\nx\n\n")


def _mbox(path: Path, data: bytes) -> SourceMailbox:
    path.write_bytes(data)
    st = os.stat(path)
    return SourceMailbox("d.example", "alice", "INBOX", str(path), st.st_size, st.st_mtime,
                         st.st_ino)


def test_the_source_read_carries_the_readers_count_and_offsets(tmp_path):
    """The number counts the messages the importer takes (not UW-IMAP's pseudo message);
    the offset is the From_ line's in the file, however the messages are framed."""
    first = b"From a@x.example Mon Nov  2 10:00:00 2026\nSubject: one\n\nbody\n\n"
    second = b"From b@x.example Tue Nov  3 11:30:00 2026\nSubject: two\n\nbody\n"
    third = b"From c@x.example Tue Nov  3 12:00:00 2026\nSubject: three\n\nbody\n"
    spool = _mbox(tmp_path / "alice", PSEUDO + first + second + third)
    other = _mbox(tmp_path / "mbox", third)
    messages, errors = read_source_mail(LocalConnector("oldmail"), [spool, other],
                                        mboxrd=False)
    assert errors == {}
    found = sorted((m.number, m.offset, m.path, m.arrival) for m in messages[spool.path].values())
    assert found == [(1, len(PSEUDO), spool.path, NOV2),
                     (2, len(PSEUDO + first), spool.path, 1793705400.0),
                     (3, len(PSEUDO + first + second), spool.path, 1793707200.0)]
    ((number, offset, path),) = [(m.number, m.offset, m.path)
                                 for m in messages[other.path].values()]
    assert (number, offset, path) == (1, 0, other.path)
