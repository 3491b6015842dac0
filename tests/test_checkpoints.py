"""A checkpoint's check (``mailplan.facts.checkpoints``) on a local file: only a spool
whose first and last 4 KiB before the checkpoint are unchanged, that is still the same
file, and that has a From_ line (or nothing yet) after the checkpoint is read from the
checkpoint on; any other is read whole."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mailplan.connectors.local import LocalConnector
from mailplan.facts.checkpoints import Checkpoint, rewritten_in_place, still_valid
from mailplan.facts.mailboxes import SourceMailbox
from mailplan.mail.windows import WINDOW, digest


def message(i: int, nl: bytes = b"\n") -> bytes:
    return (b"From a@b Mon Jan  1 10:00:00 2001\nSubject: m%d\n\n" % i + b"x" * 3000
            + b"\n\n").replace(b"\n", nl)


def listed(path: Path) -> SourceMailbox:
    st = path.stat()
    return SourceMailbox("d.example", "u", "INBOX", str(path), st.st_size, st.st_mtime,
                         st.st_ino)


def taken(path: Path, offset: int, data: bytes | None = None) -> Checkpoint:
    """The checkpoint an import through ``offset`` of ``data`` (the file) records."""
    data = path.read_bytes() if data is None else data
    width = min(WINDOW, offset)
    return Checkpoint(str(path), path.stat().st_ino, offset, digest(data[:width]),
                      digest(data[offset - width:offset]), mtime=path.stat().st_mtime)


def check(path: Path, cp: Checkpoint) -> tuple[bool, dict[int, bytes], set[int]]:
    heads: dict[int, bytes] = {}
    ended: set[int] = set()
    [ok] = still_valid(LocalConnector("oldmail"), [(listed(path), cp)], heads, ended)
    return ok, heads, ended


@pytest.mark.parametrize("nl", [b"\n", b"\r\n"])
def test_a_grown_spool_is_read_from_its_checkpoint(tmp_path, nl):
    """Mail appended after the checkpoint (its From_ line right there, or after the line
    end a last message without its blank line gets from the next delivery, LF or
    CRLF): the checkpoint holds."""
    spool = tmp_path / "spool"
    first = b"".join(message(i, nl) for i in range(4))
    spool.write_bytes(first + message(4, nl))
    assert check(spool, taken(spool, len(first)))[0]
    # the last message read had no blank line yet: the delivery wrote its line end first
    spool.write_bytes(first[:-len(nl)] + nl + message(4, nl))
    assert check(spool, taken(spool, len(first) - len(nl)))[0]


def test_a_changed_first_window_is_read_whole(tmp_path):
    """A byte changed in the first 4 KiB (a flag set on the first message), the last
    4 KiB before the checkpoint unchanged: not valid."""
    spool = tmp_path / "spool"
    data = b"".join(message(i) for i in range(4))
    spool.write_bytes(data)
    cp = taken(spool, len(data))
    spool.write_bytes(data.replace(b"Subject: m0", b"Subject: M0"))
    assert check(spool, cp)[0] is False


def test_another_file_at_the_path_is_read_whole(tmp_path):
    """The same bytes in another file (another inode: the spool replaced) are not the
    mailbox the checkpoint was taken of."""
    spool = tmp_path / "spool"
    data = b"".join(message(i) for i in range(2))
    spool.write_bytes(data)
    cp = taken(spool, len(data))
    other = tmp_path / "other"
    other.write_bytes(data)
    other.replace(spool)
    assert check(spool, cp)[0] is False


def test_a_checkpoint_not_followed_by_a_from_line_is_read_whole(tmp_path):
    """A checkpoint inside a message (an older version's, taken while a delivery was
    being written) is not trusted, though its windows match."""
    spool = tmp_path / "spool"
    data = b"".join(message(i) for i in range(3))
    spool.write_bytes(data)
    inside = len(message(0)) + 100
    assert check(spool, taken(spool, inside))[0] is False


def test_the_check_says_which_checkpoints_are_short_or_end_without_a_line_end(tmp_path):
    """``heads`` gets the bytes before a checkpoint under one window (its head digest
    was the whole file), ``ended`` a checkpoint whose offset follows no line end."""
    spool = tmp_path / "spool"
    short = b"From a@b Mon Jan  1 10:00:00 2001\nSubject: s\n\nno line end"
    spool.write_bytes(short + b"\n" + message(1))
    ok, heads, ended = check(spool, taken(spool, len(short)))
    assert (ok, heads, ended) == (True, {0: short}, {0})
    ok, heads, ended = check(spool, taken(spool, len(short) + 1))
    assert (ok, heads, ended) == (True, {0: short + b"\n"}, set())
    data = spool.read_bytes() + message(2)  # over one window
    spool.write_bytes(data + message(3))
    assert check(spool, taken(spool, len(data))) == (True, {}, set())


@pytest.mark.parametrize(("last", "after", "ends"), [
    (b"x\n\n", b"", False),  # nothing after it yet
    (b"x\n\n", b"From a@b", False),  # the next message right after its blank line
    (b"x\n", b"\nFrom a@b", False),  # its blank line, written before the next one
    (b"x\r\n", b"\r\nFrom a@b", False),
    (b"x\n", b"\r\nFrom a@b", False),
    (b"x\r\n", b"\n", False),
    (b"x", b"\nFrom a@b", True),  # no final line end
    (b"x\n\n", b"\nFrom a@b", True),  # a blank line more than its framing one
    (b"x\n\n", b"\n", True),  # ... the next message not written yet
    (b"x\r\n\r\n", b"\r\nFrom a@b", True),
    (b"x\n\n", b"\r\n\n\r", True),
    (b"x\n", b"\n\nFrom a@b", True),  # its blank line, and one more
])
def test_ended_says_where_a_whole_read_would_end_the_message_otherwise(
        tmp_path, last, after, ends):
    """``ended`` gets a checkpoint where a whole read would end the message before it
    otherwise than the read that took it did (which took it as the file then ended,
    one framing blank line removed): the line ends a read from the checkpoint takes for
    framing would be that message's. Not where they are the blank line it lacked, which
    a whole read takes for framing too: the list of ends does not grow with every run of
    a writer that puts the blank line before each message."""
    spool = tmp_path / "spool"
    data = message(0) + b"From a@b Mon Jan  1 10:00:00 2001\nSubject: s\n\n" + last
    spool.write_bytes(data + after)
    ok, _heads, ended = check(spool, taken(spool, len(data), data))
    assert ok and ended == ({0} if ends else set())


def test_a_mailbox_rewritten_to_its_own_size_is_read_whole_only_then(tmp_path):
    """The same size as the checkpoint's offset and another modification time: written
    in place since (flags changed). The same time, or a file that grew, says nothing."""
    spool = tmp_path / "spool"
    spool.write_bytes(message(0))
    cp = taken(spool, len(message(0)))
    mb = listed(spool)
    later = replace(mb, mtime=mb.mtime + 1)
    assert not rewritten_in_place(mb, cp)
    assert rewritten_in_place(later, cp)
    assert not rewritten_in_place(replace(later, size=mb.size + 10), cp)
    assert not rewritten_in_place(later, replace(cp, mtime=None))  # an older state file
