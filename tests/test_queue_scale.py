"""A big queue (a spam backlog of a hundred thousand messages after an outage): what a
read carries and what mailplan holds grow with the number of messages only, not with
the size of their header blocks, and the agent's output is parsed as it arrives.
"""

from __future__ import annotations

import gc
import io
import json
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner
from queue_builder import QueueBuilder

from mailplan.connectors.local import LocalConnector
from mailplan.errors import HostError
from mailplan.queue import model, ops, render
from mailplan.queue.cli import queue as queue_cli
from mailplan.queue.control import Control
from mailplan.queue.dump import parse_dump, parse_stream, read_queue
from mailplan.queue.filters import Filter, Pattern
from mailplan.queue.grouping import grouped
from mailplan.queue.headerfields import CUT, FIELD_LIMIT
from mailplan.queue.remote import agent_command, agent_source

STOPPED = Control("custom", status_cmd="exit 1", stop_cmd="true", start_cmd="true")


def run(q: QueueBuilder, command: str, *args: str):
    return CliRunner().invoke(queue_cli, [command, "local", "--queue-dir", str(q.queue), *args])


def spam_headers(n: int, kb: int) -> str:
    """Header lines after ``From:`` (QueueBuilder's ``sender_header``): To and Cc, then
    spam reports up to about ``kb`` kB, as a spam's header block carries them."""
    lines = [f"S {n} <s{n}@spam.example>", "To: you@example.com", "Cc: them@example.com"]
    hop = 0
    while sum(map(len, lines)) < kb * 1024:
        lines.append(f"X-Spam-Report-{hop}: score=9.{hop} BAYES_99\n\t" + "y" * 60)
        hop += 1
    return "\n".join(lines)


# -- list and delete --match read the fields they use, not the header block -------------------

def test_list_reads_only_the_header_fields_it_uses(tmp_path):
    """The agent sent each message's whole header block (up to 64 kB) for list and
    delete --match, which look at the first Subject, From, To and Cc only; now it picks
    those out (unfolded, raw, each cut at FIELD_LIMIT characters) and show still
    prints the whole block of the one message it reads."""
    q = QueueBuilder(tmp_path / "qmail")
    many = ", ".join(f"reader{i}@list.example" for i in range(80))
    headers = ("=?UTF-8?Q?J=C3=BCrgen?= <j@spam.example>\n"
               f"To: {many[:500]}\n {many[500:]}\n"
               "Cc: first@example.com\nCc: second@example.com\n"
               + "".join(f"X-Spam-Report-{i}: " + "z" * 70 + "\n" for i in range(60))
               + "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\n\tfrom far")
    msg = q.add("spam@spam.example", remote=("x@remote.example",),
                subject="a second subject", sender_header=headers)
    dump = read_queue(LocalConnector("l"), str(q.queue), mess=model.FIELDS)
    [mess] = [e for e in dump.entries.values() if e.parts[:1] == ("mess",) and e.kind == "f"]
    to = f"{many[:500]} {many[500:]}"[:FIELD_LIMIT - len(CUT)] + CUT
    assert mess.data == ("From: =?UTF-8?Q?J=C3=BCrgen?= <j@spam.example>\n"
                         f"To: {to}\nCc: first@example.com\n"
                         "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= from far\n").encode()
    assert mess.size > 5000

    [shown] = json.loads(run(q, "list", "--json").output)
    assert (shown["id"], shown["subject"], shown["from"]) == \
        (msg, "Grüße from far", "Jürgen <j@spam.example>")
    assert json.loads(run(q, "list", "--subject", "ße from", "--json").output) == [shown]
    assert json.loads(run(q, "list", "--subject", "second", "--json").output) == []
    deleted = run(q, "delete", "--match", "to", "reader7@list.example", "--json")
    assert list(json.loads(deleted.output)["would_remove"]) == [str(msg)]
    # an address past the cut is not seen (the envelope recipients always are)
    assert json.loads(run(q, "delete", "--match", "to", "reader79@", "--json").output)[
        "would_remove"] == {}
    full = run(q, "show", str(msg)).output
    assert "X-Spam-Report-59: " in full and " reader79@list.example" in full
    assert "Subject: a second subject" in full


# -- the agent's output is parsed as it arrives -----------------------------------------------

class Trickle:
    """A dump source handing out a few bytes per read, as a slow channel does."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readline(self) -> bytes:
        return self._data.readline()

    def read(self, size: int) -> bytes:
        return self._data.read(min(size, 3))


def test_a_dump_read_in_small_pieces_is_the_whole_dump(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    for n in range(3):
        q.add(f"s{n}@example.com", remote=("x@remote.example",) * 40, subject=f"s {n}")
    whole = read_queue(LocalConnector("l"), str(q.queue), mess="full")
    again = parse_stream(Trickle(_dump_bytes(q)), str(q.queue))
    assert {p: (e.data, e.inode) for p, e in again.entries.items()} == \
        {p: (e.data, e.inode) for p, e in whole.entries.items()}
    assert parse_dump(_dump_bytes(q), str(q.queue)).entries == again.entries


def _dump_bytes(q: QueueBuilder) -> bytes:
    """The agent's whole dump of ``q`` (mess files in full), as a channel carries it."""
    from mailplan.queue.remote import agent_command, agent_source

    conn = LocalConnector("l")
    res = conn.run(agent_command("dump", str(q.queue), ("full",)), stdin=agent_source())
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_the_dump_is_parsed_as_it_arrives(tmp_path):
    """The agent's whole output was collected, then parsed: mailplan held it and the
    dump made of it at once, twice the dump's size at its peak. Here the envelope
    files are big (a mailing list's remote/ file holds every recipient), and the peak
    of a read is the dump it leaves, not that and the output too."""
    q = QueueBuilder(tmp_path / "qmail")
    rcpts = tuple(f"member{i:04d}@lists.example.net" for i in range(400))
    for n in range(60):
        q.add(f"list{n}@example.com", remote=rcpts, subject=f"digest {n}")
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        dump = read_queue(LocalConnector("l"), str(q.queue), mess="none")
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    data = sum(len(e.data) for e in dump.entries.values())
    assert data > 60 * 400 * 30
    assert peak - kept < data / 5, (peak - kept, kept - before, data)


# -- memory per message ---------------------------------------------------------------------

def list_cost(tmp_path: Path, messages: int, kb: int) -> tuple[float, float]:
    """Bytes per message that a list of a queue of ``messages`` with header blocks of
    ``kb`` kB holds at its peak (read, messages, its lines), and what it keeps."""
    q = QueueBuilder(tmp_path / f"qmail-{kb}")
    for n in range(messages):
        q.add(f"s{n}@spam.example", remote=(f"v{n}@remote.example",), subject=f"offer {n}",
              sender_header=spam_headers(n, kb))
    target = ops.Target(LocalConnector("l"), str(q.queue), STOPPED)
    gc.collect()  # what earlier tests left is not freed while this one is measured
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        dump = target.read(step="read queue", mess=model.FIELDS)
        msgs, odd = model.sort_out(dump)
        offers = sum(" offer " in line for line in render.list_lines(msgs, odd))
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert offers == messages
    return (peak - before) / messages, (kept - before) / messages


def test_list_memory_per_message_does_not_grow_with_the_header_block(tmp_path):
    """Measured on 400 messages (20,000 with 4 kB header blocks: `mailplan queue list`
    peaked at 247 MiB before, 107 MiB now; see docs/queue.md): a message costs about
    3 kB at the peak of a list, whether its header block has 1 kB or 16 kB (it was over
    10 kB for 4 kB blocks, and grew with them: the dump kept each block, and the
    collected output held it once more)."""
    small_peak, small_kept = list_cost(tmp_path, 400, 1)
    big_peak, big_kept = list_cost(tmp_path, 400, 16)
    assert big_peak < 4000, (small_peak, big_peak)
    assert big_peak - small_peak < 300, (small_peak, big_peak)
    assert big_kept - small_kept < 100, (small_kept, big_kept)


class _Stdout(io.StringIO):
    """A stdout that records each write (click probes it with empty ones first)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:  # type: ignore[override]
        if text:
            self.writes.append(text)
        return super().write(text)


def test_list_writes_each_line_as_it_is_made(tmp_path, monkeypatch):
    """list made its whole text (about 150 bytes a message, 20,000 messages and more on
    a spam backlog) and wrote it in one piece; now it writes a line at a time, the same
    text."""
    q = QueueBuilder(tmp_path / "qmail")
    for n in range(30):
        q.add(f"s{n}@spam.example", remote=(f"v{n}@remote.example",), subject=f"offer {n}")
    whole = run(q, "list").output
    out = _Stdout()
    monkeypatch.setattr(sys, "stdout", out)
    queue_cli.main(["list", "local", "--queue-dir", str(q.queue)], standalone_mode=False)
    assert "".join(out.writes) == whole
    assert len(out.writes) == 32 and all(w.count("\n") == 1 for w in out.writes), out.writes


def _spam_backlog(tmp_path, tail: str) -> tuple[QueueBuilder, list, list]:
    """A spam backlog of 600 messages of 4 remote recipients each (subjects ``offer N``
    followed by ``tail``), read as the queue commands read it: the queue, its messages
    and its odd files."""
    q = QueueBuilder(tmp_path / "qmail")
    for n in range(600):
        q.add(f"s{n}@spam.example", subject=f"offer {n}{tail}",
              remote=tuple(f"v{n}.{i}@remote.example" for i in range(4)))
    dump = ops.Target(LocalConnector("l"), str(q.queue), STOPPED).read(
        step="read queue", mess=model.FIELDS)
    return (q, *model.sort_out(dump))


def test_list_lines_never_hold_the_output(tmp_path):
    """The lines are made one at a time: making them all takes, above the messages, a
    line's worth of memory and the columns' widths, not the text (which list held whole,
    with its lines and their cells besides: some 3 times the text)."""
    _q, msgs, odd = _spam_backlog(tmp_path, "")
    gc.collect()
    tracemalloc.start()
    try:
        size = sum(len(line) for line in render.list_lines(msgs, odd))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # measured: a peak of 12 kB for 117 kB of text, and the same 12 kB for 50 messages
    assert size > 600 * 150
    assert peak < size / 5, (peak, size)


def test_list_json_is_made_a_message_at_a_time(tmp_path):
    """``list --json`` makes its text a message at a time, as the table's lines: above
    the messages it holds one message's JSON, not the text and every message's dict
    (which json.dumps of the whole list held: some 2 kB a message, twice what the
    messages themselves take in a spam backlog). The text is json.dumps's, byte for
    byte, for no message, one and many."""
    q, msgs, _ = _spam_backlog(tmp_path, "\u202e\"\\\n")
    for some in ([], msgs[:1], msgs):
        expected = json.dumps([render.message_dict(m) for m in some], indent=2) + "\n"
        assert "".join(render.list_json(some)) == expected
    gc.collect()
    tracemalloc.start()
    try:
        size = sum(len(piece) for piece in render.list_json(msgs))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert size > 600 * 1000
    # measured: a peak of 113 kB for 666 kB of text; json.dumps of the list: 5.2 MB
    assert peak < size / 4, (peak, size)
    whole = run(q, "list", "--json").output
    assert json.loads(whole) == json.loads(expected) and whole == expected


def delete_cost(tmp_path: Path, messages: int, *, execute: bool) -> float:
    """Bytes per message that ``delete`` of every message of a queue of ``messages``
    holds at its peak, as a dry run or with ``execute``."""
    q = QueueBuilder(tmp_path / f"qmail-{execute}")
    for n in range(messages):
        q.add(f"s{n}@spam.example", remote=(f"v{n}@remote.example",), subject=f"offer {n}")
    target = ops.Target(LocalConnector("l"), str(q.queue), STOPPED)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        change = ops.delete(target, ops.Selection(filter=Filter(sender=Pattern("spam"))),
                            execute=execute)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (len(change.removed), change.failed, change.executed) == (messages, [], execute)
    assert all(len(files) == 3 for files in change.removed.values())
    return (peak - before) / messages


def test_delete_execute_memory_per_message_is_about_that_of_the_dry_run(tmp_path):
    """Measured on 400 messages (20,000: `mailplan queue delete --execute` peaked at
    206 MiB before, 115 MiB now; see docs/queue.md): the removal of a message's files
    costs little more at the peak than choosing it (about 3 kB). It cost 8 kB: the
    actions were made whole (a dict a file), sent as one JSON text, and the agent's
    answers (a line a file) collected whole and parsed into a dict each, all while the
    first read and the second were both held."""
    dry = delete_cost(tmp_path, 400, execute=False)
    executed = delete_cost(tmp_path, 400, execute=True)
    assert not [f for f in (tmp_path / "qmail-True" / "queue").rglob("*") if f.is_file()
                and f.parts[-3] in ("mess", "info", "remote")]
    assert executed - dry < 1000, (dry, executed)


def test_the_agent_carries_out_actions_as_they_arrive(tmp_path):
    """The agent read all its input before it did anything, and mailplan wrote it all
    before it read an answer: a hundred thousand messages' actions were held whole on
    both sides. Now a message's removals are carried out, and answered, once the whole
    batch has arrived (the next line is another message's), before the input ends."""
    q = QueueBuilder(tmp_path / "qmail")
    first, second = (q.add(f"s{n}@spam.example", remote=("x@remote.example",))
                     for n in range(2))
    dump = read_queue(LocalConnector("l"), str(q.queue), mess="none")
    files = ops.Selection((first, second)).files(grouped(dump), "l", strict=True)
    lines = [json.dumps(a).encode() + b"\n" for a in ops.delete_actions(dump, files)]
    proc = LocalConnector("l").start(agent_command("apply", str(q.queue)))
    try:
        proc.write(agent_source() + b"".join(lines[:4]))  # the first's 3, the second's 1st
        waited = time.monotonic()
        while q.path("mess", first).exists() and time.monotonic() - waited < 30:
            time.sleep(0.01)
        assert not q.path("mess", first).exists() and q.path("mess", second).exists()
        assert q.path("info", second).exists()  # arrived, but not yet all of its batch
        proc.write(b"".join(lines[4:]) + b'{"end": 6}\n')
        proc.close_stdin()
        res = proc.wait()
    finally:
        proc.kill()
    assert res.returncode == 0, res
    assert [json.loads(line) for line in res.stdout.splitlines()] == \
        [{"i": i, "ok": True} for i in range(6)]
    assert not q.path("mess", second).exists()


# -- what the agent says when it fails ---------------------------------------------------------

def fake_python(tmp_path: Path, script: str) -> str:
    """A ``python3`` that reads the agent from stdin and does ``script`` instead."""
    path = tmp_path / "python3"
    path.write_text(f"#!/bin/sh\ncat >/dev/null\n{script}\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("script,said", [
    ("echo 'it broke' >&2; exit 3", "the queue agent failed (exit 3): it broke"),
    ("printf 'H 1 1 1 - 5\\nX odd\\n'; yes 0123456789 | head -c 3000000; exit 0",
     "cannot read the queue of /q: unknown record 'X odd' in queue dump"),
    ("printf 'H 1 1 1 - 5\\nE f 600'; exit 1",
     "cannot read the queue of /q: queue dump truncated at byte 12"),
])
def test_an_agent_that_fails_or_prints_no_dump_is_reported(tmp_path, script, said):
    """The output is parsed while the agent runs: an agent that printed nothing and
    failed is still told as such (its stderr), and a mangled dump is an error once the
    agent ended (the rest of its output read and dropped, not held)."""
    conn = LocalConnector("l", python=fake_python(tmp_path, script))
    with pytest.raises(HostError) as caught:
        read_queue(conn, "/q")
    assert said in caught.value.message
