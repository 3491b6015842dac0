"""Tests for the pure Maildir++ helpers (mailplan.mail.maildir)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailplan.facts.mailboxes import SourceMailbox, named
from mailplan.mail import agent
from mailplan.mail.maildir import (
    NAME_RE,
    FolderNameError,
    Identities,
    decode_mutf7,
    encode_mutf7,
    folder_dirname,
    folder_from_dirname,
    imap_name,
    message_name,
    parse_message_name,
    source_folder,
    subscription_lines,
)

DIGEST = "ab" * 32


@pytest.mark.parametrize("folder,dirname", [
    ("INBOX", ""),
    ("inbox", ""),
    ("Work", ".Work"),
    ("lists/python", ".lists.python"),
    ("a/b/c", ".a.b.c"),
    ("v1.2", ".v1\\2e2"),
    ("back\\slash", ".back\\5cslash"),
    ("Entw\u00fcrfe", ".Entw&APw-rfe"),
    ("R&D", ".R&-D"),
    # dovecot refuses a name that begins with ~ (listescape reads \7e as ~)
    ("~tilde", ".\\7etilde"),
    ("a/~b", ".a.\\7eb"),
    ("x~y", ".x~y"),
    ("\\7e", ".\\5c7e"),
    # Python upper-cases the dotless i to I: still not the INBOX for an IMAP server
    ("\u0131nbox", ".&ATE-nbox"),
])
def test_folder_dirname(folder, dirname):
    assert folder_dirname(folder) == dirname
    assert folder_from_dirname(dirname) == ("INBOX" if dirname == "" else folder)


@pytest.mark.parametrize("names", ["utf7", "utf8"])
def test_a_folder_under_inbox_in_any_case_is_under_INBOX(names):
    # dovecot lists a .inbox.x as INBOX.x, then opens INBOX.x in .INBOX.x: not there
    assert folder_dirname("inbox/x", names) == ".INBOX.x"
    assert folder_dirname("Inbox/a/b", names) == ".INBOX.a.b"
    assert folder_dirname("x/inbox", names) == ".x.inbox"
    assert imap_name("inbox/x") == "INBOX.x"
    assert subscription_lines(["inbox/x"], names)["subscriptions"] == ["INBOX.x"]


def test_only_ascii_inbox_is_the_inbox():
    assert imap_name("\u0131nbox") == "&ATE-nbox"
    assert subscription_lines(["\u0131nbox", "Inbox"]) == {
        "courierimapsubscribed": ["INBOX.&ATE-nbox"], "subscriptions": ["&ATE-nbox"]}


@pytest.mark.parametrize("folder", ["", "a//b", "../etc", "a/../b", "/abs", "a/", "x\x00y",
                                    "tab\there", ".", "a/./b", "x" * 300, "latin\udce9\udcff",
                                    "a/\udcff/b"])
def test_folder_dirname_refuses(folder):
    with pytest.raises(FolderNameError):
        folder_dirname(folder)


@given(st.text(min_size=1, max_size=30).filter(lambda s: "/" not in s))
def test_mutf7_round_trip(text):
    assert decode_mutf7(encode_mutf7(text)) == text


def test_imap_name_and_subscriptions():
    assert imap_name("lists/python") == "lists.python"
    assert imap_name("INBOX") == "INBOX"
    assert subscription_lines(["INBOX", "Work", "a/b"]) == {
        "courierimapsubscribed": ["INBOX.Work", "INBOX.a.b"],
        "subscriptions": ["Work", "a.b"]}


@pytest.mark.parametrize("folder,dirname", [
    ("Work", ".Work"),
    ("\u00c4rger", ".\u00c4rger"),
    ("Q&A", ".Q&A"),
    ("lists/Entw\u00fcrfe", ".lists.Entw\u00fcrfe"),
    ("v1.2", ".v1\\2e2"),
    ("&AMQ-rger", ".&AMQ-rger"),  # a folder so named on the source: literal in courier 5
    ("~tilde", ".~tilde"),  # courier opens it: not escaped as for dovecot
])
def test_folder_dirname_utf8(folder, dirname):
    """``target.folder_names: utf8`` (courier-imap 5): names stay UTF-8 on disk."""
    assert folder_dirname(folder, "utf8") == dirname
    assert folder_from_dirname(dirname, "utf8") == folder
    with pytest.raises(FolderNameError):  # too long in UTF-8, though not in mUTF-7
        folder_dirname("\u4e2d" * 90, "utf8")
    folder_dirname("\u4e2d" * 90)
    with pytest.raises(ValueError):
        folder_dirname("Work", "latin1")


def test_subscriptions_in_the_folders_encoding():
    assert subscription_lines(["INBOX", "\u00c4rger", "Q&A"], "utf8") == {
        "courierimapsubscribed": ["INBOX.\u00c4rger", "INBOX.Q&A"],
        "subscriptions": ["\u00c4rger", "Q&A"]}
    assert subscription_lines(["\u00c4rger", "Q&A"]) == {
        "courierimapsubscribed": ["INBOX.&AMQ-rger", "INBOX.Q&-A"],
        "subscriptions": ["&AMQ-rger", "Q&-A"]}


@pytest.mark.parametrize("rel,folder", [
    ("Entw&APw-rfe", "Entw\u00fcrfe"),  # UW-imapd's file for an IMAP client's folder
    ("Sent &- Drafts", "Sent & Drafts"),
    ("&-", "&"),
    ("a/Entw&APw-rfe/b", "a/Entw\u00fcrfe/b"),
    ("&2D3eAA-", "\U0001f600"),
    # not valid modified UTF-7: made by a local mail program, taken literally
    ("Q&A", "Q&A"),
    ("R&D-Team", "R&D-Team"),  # base64 that is no UTF-16 text
    ("x&", "x&"),
    ("&AMQ", "&AMQ"),
    ("&AEE-", "&AEE-"),  # 'A' encoded: not what an encoder writes
    ("&AMQ-&AMQ-", "&AMQ-&AMQ-"),  # two runs where an encoder writes one
    ("&AAE-", "&AAE-"),  # a control character
    ("\u00c4rger", "\u00c4rger"),
    ("Work", "Work"),
    ("latin\udce9&-", "latin\udce9&-"),  # not UTF-8: refused later, not decoded
])
def test_source_folder_decodes_uw_imapd_names_only(rel, folder):
    assert source_folder(rel) == folder


def test_named_gives_the_target_encoding_and_notes_clashes():
    def mb(folder, path):
        return SourceMailbox("example.com", "alice", folder, path, 1, 0.0, 1,
                             folder_file=True)

    listed = [mb("Entw\u00fcrfe", "/h/mail/Entw&APw-rfe"),
              mb("Entw\u00fcrfe", "/h/mail/Entw\u00fcrfe"), mb("\u4e2d" * 90, "/h/mail/x")]
    kept, notes = named((listed, []), "utf8")
    assert [(m.path, m.dirname) for m in kept] == [("/h/mail/Entw&APw-rfe", ".Entw\u00fcrfe")]
    assert [(n.kind, n.path) for n in notes] == [("problem", "/h/mail/Entw\u00fcrfe"),
                                                 ("problem", "/h/mail/x")], notes
    assert str(notes[0]).startswith("alice@example.com: /h/mail/Entw\u00fcrfe names the "
                                    "same folder 'Entw\u00fcrfe' as /h/mail/Entw&APw-rfe; "
                                    "not imported"), notes
    assert "too long" in notes[1].message
    assert named((listed[:1], []), "utf7")[0][0].dirname == ".Entw&APw-rfe"
    both = [mb("INBOX/x", "/h/mail/INBOX/x"), mb("inbox/x", "/h/mail/inbox/x")]
    kept, notes = named((both, []), "utf7")
    assert [m.path for m in kept] == ["/h/mail/INBOX/x"]
    assert str(notes[0]).startswith("alice@example.com: /h/mail/inbox/x names the same "
                                    "folder 'INBOX/x' as /h/mail/INBOX/x; not imported"), notes


@pytest.mark.parametrize("flags", [None, "", "S", "FRS", "SRF"])
def test_message_name_round_trip(flags):
    name = message_name(arrival=978343200.7, usec=12, pid=34, digest=DIGEST, occurrence=2,
                        host="mail.example:1/x", size=1234, flags=flags)
    parsed = parse_message_name(name)
    assert parsed is not None
    assert parsed.identity == (DIGEST, 2)
    assert (parsed.arrival, parsed.size) == (978343200, 1234)
    assert parsed.flags == (None if flags is None else "".join(sorted(set(flags))))
    assert "/" not in name and name.count(":") == (0 if flags is None else 1)


def test_message_name_parts_a_rescan_must_read_back():
    """What makes a name parse again (so a rescan finds the message): an arrival before
    1970 is written 0 (a name cannot start with "-"), a "," in the host is escaped as
    qmail's spec says (it ends the host part), an empty host is "localhost"; a flag
    given twice is written once; a digest that is not lowercase hex is refused."""
    name = message_name(arrival=-5.0, usec=1, pid=2, digest=DIGEST, occurrence=0,
                        host="a,b", size=9, flags="SRS")
    parsed = parse_message_name(name)
    assert parsed is not None
    assert (parsed.arrival, parsed.host, parsed.flags) == (0, "a\\054b", "RS")
    empty = parse_message_name(message_name(arrival=1.0, usec=1, pid=2, digest=DIGEST,
                                            occurrence=0, host="", size=9, flags=None))
    assert empty is not None and empty.host == "localhost"
    with pytest.raises(ValueError, match="not a sha256 hex digest"):
        message_name(arrival=1.0, usec=1, pid=2, digest="g" * 64, occurrence=0, host="h",
                     size=9, flags=None)


def test_a_folder_directory_name_is_at_most_255_bytes():
    assert len(folder_dirname("x" * 254)) == 255
    with pytest.raises(FolderNameError, match="too long"):
        folder_dirname("x" * 255)


@pytest.mark.parametrize("dirname", [".", ".."])
def test_dot_and_dot_dot_are_no_folder_directories(dirname):
    with pytest.raises(FolderNameError, match="is not a Maildir"):
        folder_from_dirname(dirname)


def test_dovecot_v2_subscriptions_are_read_back_unescaped():
    """A subscriptions file dovecot rewrote in its version 2 form: levels by tabs, a tab
    in a name escaped as \\x01t; read back in the one-line form apply writes."""
    from mailplan.mail.maildir import subscribed_names

    data = b"V\t2\n\nWork\tsub\nTab\x01tbed\n"
    assert subscribed_names(data) == {"Work.sub", "Tab\tbed"}


@pytest.mark.parametrize("arrival,subdir,flags", [
    (978343200.7, "cur", "SR"), (978343200.0, "new", ""), (None, "cur", "TDF"), (-5.0, "new", "")])
def test_the_importer_names_a_message_as_message_name_does(arrival, subdir, flags):
    # the importer formats names itself (message_name's checks and per-run parts hoisted
    # out of its per-message loop); the two must give the same name
    from mailplan.mail.convert import _name
    from mailplan.mail.maildir import name_tail
    from mailplan.mail.mboxtypes import MessageEnd

    end = MessageEnd(0, 0, 100, 1234, DIGEST, 2, flags, subdir, arrival)
    name = _name(end, name_tail("mail.example:1/x"), 34)
    usec = int(name.split(".M", 1)[1].split("P", 1)[0])
    assert name == message_name(arrival=arrival, usec=usec, pid=34, digest=DIGEST,
                                occurrence=2, host="mail.example:1/x", size=1234,
                                flags=None if subdir == "new" else flags)


def test_foreign_names_are_not_ours():
    assert parse_message_name("1700000000.M1P2.host,S=10:2,S") is None
    assert parse_message_name("1700000000.12345.host") is None


def test_agent_carries_the_same_name_pattern():
    assert agent.NAME_RE.pattern == NAME_RE.pattern


def test_agent_source_is_stdlib_only_and_small():
    """The writer as sent (its parts joined) and each part import nothing from mailplan
    but the parts before them, which the joined script leaves out."""
    import ast

    from mailplan.mail.agent_client import agent_source
    from mailplan.mail.writer.bundle import PARTS, part_path

    src = agent_source()
    assert len(src.encode()) < 100_000
    for text, allowed in [(src, ()), *((part_path(p).read_text(), PARTS[:i])
                                        for i, p in enumerate(PARTS))]:
        tree = ast.parse(text)
        mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        ours = {m for m in mods if m and m.startswith("mailplan")}
        assert ours <= {f"mailplan.mail.writer.{p}" for p in allowed}, ours


def test_identities_hold_identity_tuples_as_digest_bytes():
    """``Identities`` answers and lists identity tuples like a set of them, leaves out
    what is no message's identity, and its set operations give plain sets."""
    other = "0f" * 32
    ids = Identities()
    for identity in [(DIGEST, 0), (DIGEST, 12), (other, 0), (DIGEST, 0),
                     ("not-a-digest", 0), ("AB" * 32, 1), ("", 0)]:
        ids.add(identity)
    assert len(ids) == 3 and ids
    assert ids == {(DIGEST, 0), (DIGEST, 12), (other, 0)} == set(ids)
    assert (DIGEST, 12) in ids and (DIGEST, 1) not in ids and (other, 12) not in ids
    assert ("not-a-digest", 0) not in ids and "junk" not in ids and (DIGEST,) not in ids
    assert ids - {(other, 0)} == {(DIGEST, 0), (DIGEST, 12)}
    assert isinstance(ids & {(other, 0)}, set)
    assert not Identities() and Identities() == set()


@pytest.mark.parametrize("dirname", [".&ZZ-", ".&2D3-", ".&A-", ".ok.&ZZ-"])
def test_folder_from_dirname_refuses_broken_modified_utf7(dirname):
    # a target directory not named by an IMAP server: bad base64, odd UTF-16, a lone
    # surrogate
    with pytest.raises(FolderNameError, match="not valid modified UTF-7"):
        folder_from_dirname(dirname)
