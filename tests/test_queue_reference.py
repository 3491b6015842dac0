"""stat, list, show and check on the recorded notqmail queue, against the real tools' output.

The queue is rebuilt from the transcripts (tests/queue_builder.py); these tests first
check that the rebuilt tree is the recorded one (files, sizes, modes, owners), then
compare mailplan's numbers and lists with what qmail-qstat, qmail-qread and qmHandle
printed for that same queue.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from queue_builder import (
    QUEUE,
    directory_table,
    file_table,
    gmt,
    parse_qmhandle,
    parse_qread,
    recorded,
    reference_queue,
)

from mailplan.connectors.local import LocalConnector
from mailplan.queue import grouping, model, ops
from mailplan.queue.check import check
from mailplan.queue.cli import queue as queue_cli
from mailplan.queue.dump import Dump, read_queue
from mailplan.queue.model import Message

T01, T02, T03 = ("01-inject-and-todo-state.md", "02-preprocessed-state.md", "03-qmhandle.md")
QREAD = parse_qread(recorded(T02, "/var/qmail/bin/qmail-qread", -1))


@pytest.fixture(scope="module")
def ref_queue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reference_queue(tmp_path_factory.mktemp("refq"))


@pytest.fixture(scope="module")
def dump(ref_queue: Path) -> Dump:
    return read_queue(LocalConnector("local"), str(ref_queue))


def by_id(dump: Dump) -> dict[int, Message]:
    return {m.id: m for m in model.messages(dump)}


# -- the rebuilt tree is the recorded one ---------------------------------------------------

def test_tree_has_the_recorded_files(ref_queue: Path):
    final = recorded(T02, "find /var/qmail/queue -type f | sort", -1).split()
    built = sorted(f"{QUEUE}{p.relative_to(ref_queue)}" for p in ref_queue.rglob("*")
                   if p.is_file())
    assert built == sorted(final)


def test_tree_has_the_recorded_modes_owners_and_sizes(dump: Dump):
    for path, (mode, owner, group, size) in file_table().items():
        entry = dump.entries[path]
        assert (entry.mode, entry.owner, entry.group, entry.size) == (mode, owner, group, size)
    for path, (mode, owner, group) in directory_table().items():
        entry = dump.entries[path]
        assert (entry.kind, entry.mode, entry.owner, entry.group) == ("d", mode, owner, group)


# -- stat ------------------------------------------------------------------------------------

def test_stat_prints_what_qmail_qstat_printed(ref_queue: Path):
    result = CliRunner().invoke(queue_cli, ["stat", "local", "--queue-dir", str(ref_queue)])
    assert result.exit_code == 0, result.output
    qstat = recorded(T02, "/var/qmail/bin/qmail-qstat", -1)
    assert result.output.startswith(qstat)
    assert qstat == "messages in queue: 32\nmessages in queue but not yet preprocessed: 2\n"


def test_stat_numbers_match_qmhandle(dump: Dump):
    text = recorded(T03, "/opt/ref/qmhandle/qmHandle -s")
    handle = dict(line.split(": ") for line in text.splitlines())
    stats = model.stats(dump)
    assert stats.messages == int(handle["Total messages"])
    assert stats.with_local == int(handle["Messages with local recipients"])
    assert stats.with_remote == int(handle["Messages with remote recipients"])
    assert stats.bouncing == int(handle["Messages with bounces"])
    assert stats.not_preprocessed == int(handle["Messages in preprocess"])


def test_stat_recipients_bounces_age_and_bytes(dump: Dump):
    stats = model.stats(dump)
    rcpts = Counter(c for e in QREAD for c, _ in e.recipients)
    assert (stats.local_pending, stats.remote_pending) == (rcpts["local"], rcpts["remote"])
    assert (stats.local_done, stats.remote_done) == (0, 0)
    assert stats.bounces == sum(1 for e in QREAD if e.sender in ("", "#@[]")) == 3
    sizes = sum(e.size for e in QREAD)
    late = sum(dump.entries[f"mess/{i % 23}/{i}"].size for i in (1475251, 1475353))
    assert stats.total_bytes == sizes + late
    # the oldest by qmail's clock: the earliest date qmail-qread printed (an info file's
    # mtime, from which qmail-send counts queuelifetime), not the earlier mess files'
    # (15:46:34); the two in todo/ were written later (15:47:10)
    assert stats.oldest == min(gmt(e.date) for e in QREAD) == gmt("28 Nov 2026 15:46:43")


def test_stat_json(ref_queue: Path):
    result = CliRunner().invoke(queue_cli, ["stat", "local", "--queue-dir", str(ref_queue),
                                            "--json"])
    data = json.loads(result.output)
    assert (data["messages"], data["not_preprocessed"], data["with_local"]) == (32, 2, 19)
    assert data["oldest_age"] > 0


# -- list ------------------------------------------------------------------------------------

def qread_block(m: Message) -> str:
    """A message in qmail-qread's format, from mailplan's model."""
    tm = time.gmtime(m.preprocessed)
    date = f"{tm.tm_mday} {time.strftime('%b %Y %H:%M:%S', tm)}"
    lines = [f"{date} GMT  #{m.id}  {m.size}  <{m.sender}> " + (" bouncing" if m.bouncing
                                                                  else "")]
    lines += [("  done" if r.done else "") + f"\t{r.channel}\t{r.address}"
              for r in m.recipients]
    return "\n".join(lines) + "\n"


def test_list_matches_qmail_qread(dump: Dump):
    text = recorded(T02, "/var/qmail/bin/qmail-qread", -1)
    blocks: dict[int, str] = {}
    for line in text.splitlines(keepends=True):
        if not line.startswith("\t"):
            current = int(line.split("#")[1].split()[0])
            blocks[current] = ""
        blocks[current] += line
    msgs = by_id(dump)
    queued = {i: m for i, m in msgs.items() if m.state == "queued"}
    assert set(queued) == set(blocks)
    for msg_id, block in blocks.items():
        assert qread_block(queued[msg_id]) == block
    # qmail-qread walks the split directories in order: so do the recorded ids
    splits = [e.id % 23 for e in QREAD]
    assert splits == sorted(splits)


def test_list_shows_what_qread_leaves_out(dump: Dump):
    late = {i: m for i, m in by_id(dump).items() if m.state == "todo"}
    assert set(late) == {1475251, 1475353}
    assert late[1475251].sender == "late1@remote.example.net"
    assert [(r.channel, r.address) for r in late[1475353].recipients] == \
        [("todo", "late-friend@remote.example.net")]


def test_list_matches_qmhandle_blocks(dump: Dump):
    msgs = by_id(dump)
    blocks = parse_qmhandle(recorded(T03, "/opt/ref/qmhandle/qmHandle -l"))
    assert len(blocks) == 33  # one per (message, queue): 3 messages are local and remote
    for block in blocks:
        m = msgs[int(block["id"])]
        headers = list(m.headers)
        assert m.split_dir == block["split"]
        assert block["Return-path"] == m.sender
        assert block["From"] == model.formats.header(headers, "From")
        assert block["Subject"] == model.formats.header(headers, "Subject")
        assert block["Size"] == f"{m.size} bytes"
    local = {int(b["id"]) for b in parse_qmhandle(recorded(T03, "/opt/ref/qmhandle/qmHandle -L"))}
    remote = {int(b["id"])
              for b in parse_qmhandle(recorded(T03, "/opt/ref/qmhandle/qmHandle -R"))}
    assert local == {m.id for m in msgs.values() if any(r.channel == "local"
                                                        for r in m.recipients)}
    assert remote == {m.id for m in msgs.values() if any(r.channel == "remote"
                                                         for r in m.recipients)}


def run_list(ref_queue: Path, *args: str) -> list[dict]:
    result = CliRunner().invoke(queue_cli, ["list", "local", "--queue-dir", str(ref_queue),
                                            "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize("args,ids", [
    (["--bounces"], {1475301, 1475303, 1475305}),
    (["--sender", "first+tag@"], {1475289}),
    (["--sender", "^(alice|bob)@example\\.com$", "--regex"],
     {1475279, 1475291, 1475317, 1475275, 1475277, 1475293, 1475283, 1475353}),
    (["--recipient", "user001@bulk.example"], {1475293, 1475299}),  # prefix-less form
    (["--recipient", "example.com-UPPERCASE@"], {1475267}),
    (["--subject", "grüße"], {1475311}),  # decoded, case-insensitive
    (["--subject", "^remote [0-9]$", "--regex"],
     {1475275, 1475277, 1475279, 1475281, 1475285, 1475287}),
    (["--subject", "failure notice", "--recipient", "alice"], {1475303}),
])
def test_list_filters(ref_queue: Path, args: list[str], ids: set[int]):
    assert {m["id"] for m in run_list(ref_queue, *args)} == ids


def test_list_age_filters(ref_queue: Path):
    everything = run_list(ref_queue)
    assert len(everything) == 32
    # by qmail's clock the preprocessed messages are from 15:46:43 (their info files, the
    # date qmail-qread printed), the late ones in todo/ from 15:47:10 (their mess files)
    now = time.time()
    old = int(now - time.mktime(time.strptime("2026-11-28 15:47:00", "%Y-%m-%d %H:%M:%S"))
              + time.timezone)
    older = run_list(ref_queue, "--older-than", f"{old}s")
    newer = run_list(ref_queue, "--newer-than", f"{old}s")
    assert len(older) == 30 and {m["id"] for m in newer} == {1475251, 1475353}
    assert run_list(ref_queue, "--newer-than", "1s") == []


def test_list_text_one_line_per_message(ref_queue: Path):
    result = CliRunner().invoke(queue_cli, ["list", "local", "--queue-dir", str(ref_queue)])
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["ID", "QUEUED", "(UTC)"]
    assert lines[-1] == "32 message(s)"
    row = next(line for line in lines if line.startswith("1475291 "))
    assert "<alice@example.com>" in row and "mixed 1" in row
    # the date qmail-qread printed for it (its info file's), not its mess file's 15:46:34
    [qread] = [e for e in QREAD if e.id == 1475291]
    assert qread.date == "28 Nov 2026 15:46:43" and "  2026-11-28 15:46:43  " in row
    assert "local:example.com-bob@example.com, remote:friend@remote.example.net" in row
    assert any("Grüße" in line for line in lines)


# -- show ------------------------------------------------------------------------------------

def test_show_headers_and_full(ref_queue: Path):
    whole = recorded(T01, "M=$(find /var/qmail/queue/mess -name 1474861); head -12 $M")
    target = ops.Target(LocalConnector("local"), str(ref_queue))
    msg, headers = ops.show(target, 1474861)
    assert headers.decode() == whole.split("\n\n")[0] + "\n"
    _, full = ops.show(target, 1474861, full=True)
    assert full.decode() == whole
    result = CliRunner().invoke(queue_cli, ["show", "local", "1474861", "--queue-dir",
                                            str(ref_queue), "--full"])
    assert "envelope sender: <sender1@remote.example.net>" in result.output
    assert result.output.endswith("Hello alice.\n")
    assert msg.subject == "local 1: to alice"


# -- check on the restored snapshot ----------------------------------------------------------

def test_check_finds_the_names_a_restore_broke_and_nothing_else(dump: Dump):
    report = check(dump, grouping.detect_layout(dump))
    assert Counter(p.code for p in report.problems) == {"inode-mismatch": 32}
    assert report.notes == []
    first = next(p for p in report.problems if p.path == "mess/9/1474861")
    assert str(dump.entries["mess/9/1474861"].inode) in first.message


def test_repair_renames_the_restored_snapshot_to_inodes(tmp_path: Path):
    q = reference_queue(tmp_path)
    before = read_queue(LocalConnector("local"), str(q))
    result = CliRunner().invoke(queue_cli, ["check", "local", "--queue-dir", str(q), "--repair"])
    assert result.exit_code == 0, result.output
    assert "queue is healthy" in result.output.splitlines()[-1]
    after = read_queue(LocalConnector("local"), str(q))
    for entry in after.entries.values():
        if entry.parts[:1] == ("mess",) and entry.kind == "f":
            assert entry.parts[-1] == str(entry.inode)
            assert entry.parts[1] == str(entry.inode % 23)
    summary = lambda d: sorted((m.sender, m.state, m.size, m.subject,  # noqa: E731
                                tuple((r.channel, r.address) for r in m.recipients))
                               for m in model.messages(d))
    assert summary(after) == summary(before)
    assert model.stats(after).messages == 32 and model.stats(after).not_preprocessed == 2
    # todo and intd stay hard links of one another, as qmail-queue made them
    todo = [e for e in after.entries.values() if e.parts[:1] == ("todo",) and e.kind == "f"]
    assert len(todo) == 2 and all(e.nlink == 2 for e in todo)
    assert os.path.exists(q / "lock" / "trigger")
