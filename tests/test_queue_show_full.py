"""``queue show --full`` writes the message as it arrives: a message of any size is held
whole neither by mailplan nor by the agent on the host (before, mailplan peaked at some
five times the message: its bytes, their text, its lines, the escaped lines, the joined
text), and prints what it printed before, byte for byte."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from queue_builder import QueueBuilder

from mailplan.connectors.local import LocalConnector
from mailplan.errors import HostError
from mailplan.queue import ops, render
from mailplan.queue.cli import queue as queue_cli
from mailplan.queue.model import messages
from mailplan.queue.remote import run_agent
from mailplan.queue.showing import BodyText

REPO = Path(__file__).resolve().parent.parent


def _tricky(size: int) -> bytes:
    """Bytes that cross every piece boundary mid-character: a 2-, 3- and 4-byte UTF-8
    character, bytes no UTF-8 has, control characters, CR LF, a bidi override."""
    unit = "é€😀\u202e\x1b[2J\r\n".encode() + b"\xff\xc3" + b"x" * 7 + b"\n"
    return (unit * (size // len(unit) + 1))[:size]


@pytest.mark.parametrize("tail", [b"", b"no newline at the end", b"\xe2\x82"])
def test_full_text_is_what_it_was(tmp_path, tail):
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("a@example.com", remote=("x@remote.example",))
    with open(q.path("mess", msg), "ab") as fh:
        fh.write(_tricky(300_000) + tail)
    target = ops.Target(LocalConnector("l"), str(q.queue))
    m, whole = ops.show(target, msg, full=True)
    res = CliRunner().invoke(queue_cli, ["show", "local", str(msg), "--queue-dir",
                                         str(q.queue), "--full"])
    assert res.exit_code == 0, res.output
    assert res.output == render.show_text(m, whole)
    assert "\x1b" not in res.output and "\u202e" not in res.output


def test_pieces_of_any_size_give_the_same_text():
    data = _tricky(5000) + b"\xf0\x9f"
    whole = BodyText()
    expected = whole.piece(data) + whole.end()
    for size in (1, 2, 3, 7, 4096):
        text = BodyText()
        got = "".join(text.piece(data[i:i + size]) for i in range(0, len(data), size))
        assert got + text.end() == expected


def test_a_big_message_is_never_held_whole(tmp_path):
    """64 MB of message: mailplan's peak stays near an empty queue's (it was some 350 MB
    above it)."""
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("a@example.com", remote=("x@remote.example",))
    with open(q.path("mess", msg), "ab") as fh:
        for _ in range(64):
            fh.write(_tricky(1 << 20))
    code = ("import sys\nfrom mailplan.cli import main\n"
            f"sys.argv = ['mailplan', 'queue', 'show', 'local', '{msg}', '--queue-dir', "
            f"{str(q.queue)!r}, '--full']\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            # VmHWM: this program's own peak (ru_maxrss keeps the forking pytest's across
            # exec, which in a whole test run is past the bound by itself)
            "print([x.split()[1] for x in open('/proc/self/status') if x.startswith("
            "'VmHWM:')][0], file=sys.stderr)\n")
    with open(os.devnull, "wb") as null:
        res = subprocess.run([sys.executable, "-c", code], cwd=REPO, stdout=null,
                             stderr=subprocess.PIPE, check=True)
    peak_kib = int(res.stderr.split()[-1])
    assert peak_kib < 120 * 1024, peak_kib  # measured: 38 MiB; before: 390 MiB


def test_a_mess_file_replaced_meanwhile_is_not_shown(tmp_path):
    """The agent shows the mess file only while it is the one the dump saw (a message
    delivered meanwhile leaves its id to the next one qmail-queue writes), and nothing
    but a mess file."""
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("a@example.com", remote=("x@remote.example",))
    conn = LocalConnector("l")
    dump = ops.Target(conn, str(q.queue)).read(step="read", only_id=msg)
    (m,) = messages(dump)
    inode = dump.entries[m.mess_file].inode
    ok = run_agent(conn, "cat", str(q.queue), (m.mess_file, str(inode)), step="show")
    assert ok.returncode == 0 and ok.stdout == q.path("mess", msg).read_bytes()
    with pytest.raises(HostError, match=r"\(exit 5\): mess/.* is no longer the message"):
        run_agent(conn, "cat", str(q.queue), (m.mess_file, str(inode + 1)), step="show")
    for path in ("lock/tcpto", "mess/0/../../lock/tcpto"):
        with pytest.raises(HostError, match=r"\(exit 2\): refusing to show .*not a mess"):
            run_agent(conn, "cat", str(q.queue), (path, str(inode)), step="show")
