"""courier-imap's keyword files as verify reads them: the rules as table tests, then the
same Maildir read by a real courier-imap, which must show what the rules say."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from test_mail_imap import courier_imap, need_courier

from mailplan.mail import courierkw

N1 = "1700000000.M1P1_mp" + "a" * 64 + "_0.vm,S=10"


@pytest.mark.parametrize(("entry", "expected"), [
    (N1, (N1, 1 << 62)),
    (f".5897.{N1}", (N1, 5897)),
    (f".12x.{N1}", (N1, 12)),  # courier: the number, then whatever follows to the next dot
    (":list", None),
    (f".tmp.1700000000.{N1}", None),  # a scratch file
    (f".0.{N1}", None),
    (".5897", None),
    ("", None),
])
def test_update_of(entry, expected):
    assert courierkw.update_of(entry) == expected


def test_the_newest_update_wins():
    entries = [f".10.{N1}", f".12.{N1}", f".11.{N1}", ":list", ".20.other", "plain"]
    assert courierkw.newest_updates(entries) == {N1: f".12.{N1}", "other": ".20.other",
                                                 "plain": "plain"}
    assert courierkw.newest_updates([*entries, N1])[N1] == N1


def test_parse_list_as_courier_imports_it():
    text = (b"Junk\n$Label1\nwork\n\n"
            b"one:0 2\n"
            b"two:1\n"
            b"junkline\n"  # no colon: skipped
            b"three:7 0\n"  # 7 is past the list
            b"two:2\n"  # a later line replaces an earlier one
            b"four:x\n"  # atoi("x") is 0
            b"five:\n")
    assert courierkw.parse_list(text) == {
        "one": frozenset({"Junk", "work"}), "two": frozenset({"work"}),
        "three": frozenset({"Junk"}), "four": frozenset({"Junk"}), "five": frozenset()}
    assert courierkw.parse_list(b"Junk\n") == {}  # no empty line: no message part
    assert courierkw.parse_list(b"") == {}


def test_parse_update_stops_at_an_empty_line():
    assert courierkw.parse_update(b"Junk\n$Label1\n\nignored\n") == {"Junk", "$Label1"}
    assert courierkw.parse_update(b"Junk") == {"Junk"}
    assert courierkw.parse_update(b"") == frozenset()


def test_keywords_of_prefers_the_update_to_the_list():
    listed = {"m1": frozenset({"Junk"}), "m2": frozenset({"Junk"})}
    updates = {"m2": "m2", "m3": ".5.m3"}
    words = {"m2": frozenset({"work"}), ".5.m3": frozenset({"NonJunk"})}
    assert courierkw.keywords_of("m1:2,S", updates, words, listed) == {"Junk"}
    assert courierkw.keywords_of("m2:2,S", updates, words, listed) == {"work"}
    assert courierkw.keywords_of("m3", updates, words, listed) == {"NonJunk"}
    assert courierkw.keywords_of("m4:2,", updates, words, listed) == frozenset()
    assert courierkw.keywords_of("m2:2,S", updates, {}, listed) == frozenset()  # unreadable


def _message(cur: Path, base: str, subject: str) -> None:
    (cur / f"{base}:2,S").write_bytes(f"Subject: {subject}\n\nbody\n".encode())


def test_real_courier_shows_what_the_rules_say():
    """A folder with a ``:list``, updates of every kind (plain, dotted, several for one
    message, an empty one), a scratch file and an update for a message that is not there:
    courier-imap's FLAGS for each message are the keywords :func:`keywords_of` gives."""
    need_courier()
    if os.geteuid() != 0:
        pytest.skip("needs root (courier runs as the Maildir's owner)")
    tn = int(time.time()) // 300
    home = Path(tempfile.mkdtemp(prefix="mailplan-courierkw-"))
    try:
        os.chmod(home, 0o755)
        root = home / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (root / sub).mkdir(parents=True)
        bases = {f"m{i}": f"170000000{i}.M{i}P1_mp{chr(96 + i) * 64}_0.vm,S=20"
                 for i in range(1, 7)}
        for subject, base in bases.items():
            _message(root / "cur", base, subject)
        kw = root / courierkw.DIRECTORY
        kw.mkdir(mode=0o700)
        (kw / courierkw.LIST).write_bytes(
            b"Junk\n$Label1\nwork\n\n"
            + f"{bases['m1']}:0 2\n{bases['m2']}:1\n{bases['m3']}:0\n{bases['m6']}:1\n"
            .encode())
        (kw / bases["m2"]).write_bytes(b"NonJunk\n")  # the newest: wins over :list
        (kw / f".{tn - 9}.{bases['m3']}").write_bytes(b"old\n")
        (kw / f".{tn - 3}.{bases['m3']}").write_bytes(b"newer\nJunk\n")  # the higher N wins
        (kw / f".{tn - 4}.{bases['m4']}").write_bytes(b"work\n")  # not in :list
        (kw / bases["m6"]).write_bytes(b"")  # an empty update: no keywords
        (kw / f".tmp.{int(time.time())}.scratch").write_bytes(b"Junk\n")
        (kw / "1600000000.M9P9_mpgone").write_bytes(b"Junk\n")  # no such message
        entries = os.listdir(kw)
        updates = courierkw.newest_updates(entries)
        words = {e: courierkw.parse_update((kw / e).read_bytes()) for e in entries}
        listed = courierkw.parse_list((kw / courierkw.LIST).read_bytes())
        want = {subject: courierkw.keywords_of(f"{base}:2,S", updates, words, listed)
                for subject, base in bases.items()}
        assert want == {"m1": {"Junk", "work"}, "m2": {"NonJunk"}, "m3": {"newer", "Junk"},
                        "m4": {"work"}, "m5": frozenset(), "m6": frozenset()}
        subprocess.run(["chown", "-R", "vpopmail:vchkpw", str(root)], check=True)
        imap = courier_imap(home)
        try:
            assert imap.select("INBOX")[0] == "OK"
            typ, data = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            assert typ == "OK"
        finally:
            imap.logout()
        got = {}
        for item in data:
            if isinstance(item, tuple):
                flags = item[0].decode().split("FLAGS (", 1)[1].split(")", 1)[0].split()
                subject = item[1].decode().split(":", 1)[1].strip()
                got[subject] = frozenset(f for f in flags if not f.startswith("\\"))
        assert got == want
    finally:
        shutil.rmtree(home, ignore_errors=True)
