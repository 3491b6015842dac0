"""list, stat, show and check see a message as qmail does: its age from qmail-send's
birth of it (the info file's mtime), and only the files qmail opens (the one at
``split/ID`` of each area), on real queue trees read by the real agent.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from pathlib import Path

from click.testing import CliRunner
from queue_builder import SPLIT, QueueBuilder

from mailplan.connectors.local import LocalConnector
from mailplan.queue import grouping, model, ops
from mailplan.queue.cli import queue as queue_cli
from mailplan.queue.control import Control
from mailplan.queue.filters import Filter, Pattern

STOPPED = Control("custom", status_cmd="exit 1", stop_cmd="true", start_cmd="true")
STOPPED_ARGS = ("--control", "custom", "--status-cmd", "exit 1", "--stop-cmd", "true",
                "--start-cmd", "true")


def run(q: QueueBuilder, command: str, *args: str):
    return CliRunner().invoke(queue_cli, [command, "local", "--queue-dir", str(q.queue),
                                          *args])


def utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def date(path: Path, ago: int) -> int:
    when = int(time.time()) - ago
    os.utime(path, (when, when))
    return when


def earlier_split(msg: int) -> str:
    """A split directory other than ``msg``'s own that the dump lists before it (the
    agent walks names in sorted order: ``12`` before ``3``); see :func:`add`."""
    own = str(msg % SPLIT)
    return min(str(n) for n in range(SPLIT) if str(n) < own)


def add(q: QueueBuilder, sender: str, **kw) -> int:
    """A preprocessed message not in split directory 0, which no other sorts before."""
    while True:
        msg = q.add(sender, **kw)
        if msg % SPLIT:
            return msg
        for area in ("mess", "info", "local", "remote"):
            q.path(area, msg).unlink(missing_ok=True)


# -- the age is qmail-send's: from the info file's mtime ----------------------------------

def test_age_and_date_count_from_the_info_file_as_qmail_send_does(tmp_path):
    """qmail-send counts queuelifetime from the info file's mtime (getinfo: "birth"), and
    qmail-qread prints that date: a message that waited ten days in todo/ while
    qmail-send was stopped, preprocessed an hour ago, is an hour old to qmail. list's
    --older-than, its date and stat's oldest counted from the mess file instead."""
    q = QueueBuilder(tmp_path / "qmail")
    late = q.add("a@example.com", remote=("x@remote.example",))
    written = date(q.path("mess", late), 10 * 86400)
    born = date(q.path("info", late), 3600)
    waiting = q.add("b@example.com", remote=("y@remote.example",), preprocessed=False)
    waiting_written = date(q.path("mess", waiting), 3 * 86400)

    # not yet preprocessed: no birth yet, its mess file's date counts
    assert [m["id"] for m in json.loads(run(q, "list", "--older-than", "2d",
                                            "--json").output)] == [waiting]
    assert [m["id"] for m in json.loads(run(q, "list", "--newer-than", "2h",
                                            "--json").output)] == [late]
    listed = run(q, "list")
    assert listed.exit_code == 0, listed.output
    rows = {line.split()[0]: line for line in listed.output.splitlines()[1:3]}
    assert f"{utc(born)}  " in rows[str(late)] and utc(written) not in listed.output
    assert f"{utc(waiting_written)}  " in rows[str(waiting)]
    assert listed.output.splitlines()[1].startswith(str(waiting))  # oldest first
    [data] = json.loads(run(q, "list", "--sender", "a@", "--json").output)
    assert (data["queued"], data["preprocessed"], data["written"]) == \
        (utc(born), utc(born), utc(written))
    assert f"queued {utc(born)} UTC" in run(q, "show", str(late)).output
    stat = json.loads(run(q, "stat", "--json").output)
    assert stat["oldest"] == waiting_written


# -- two files where qmail opens one: damage, shown once --------------------------------------

def test_a_second_mess_file_is_damage_and_never_renamed(tmp_path):
    """A copy of a mess file in another split directory (a restore by hand): qmail reads
    only mess/N/ID. list called the message healthy, showed the size and headers of
    whichever file the dump listed first, and check --repair renamed both files to
    the copy's inode: the second rename failed, leaving the message's info and mess
    files under a temporary name, where qmail-send never finds them."""
    q = QueueBuilder(tmp_path / "qmail")
    msg = add(q, "a@example.com", remote=("x@remote.example",), subject="the real one")
    real = q.path("mess", msg)
    copy = q.queue / "mess" / earlier_split(msg) / str(msg)
    copy.write_bytes(b"Subject: a stale copy\n\n" + b"x" * 500)
    rel, copy_rel = (str(p.relative_to(q.queue)) for p in (real, copy))
    size = real.stat().st_size

    listed = json.loads(run(q, "list", "--json").output)
    assert [(m["id"], m["size"], m["subject"]) for m in listed] == [(msg, size, "the real one")]
    assert listed[0]["damaged"] == [
        f"{copy_rel}: a second mess file of message {msg}: qmail reads only {rel} "
        "(check reports a duplicate)"]
    assert "queued,damaged" in run(q, "list").output
    shown = run(q, "show", str(msg)).output
    assert "Subject: the real one" in shown and "stale copy" not in shown, shown
    stat = run(q, "stat")
    assert "messages in queue: 2\n" in stat.output  # qmail-qstat's find counts both
    assert "remote recipients: 1 pending, 0 done\n" in stat.output
    assert f"total size: {size} bytes\n" in stat.output
    assert "damaged messages: 1, with a file qmail cannot use or never reads" in stat.output

    checked = run(q, "check")
    assert checked.exit_code == 2
    assert (f"duplicate: {copy_rel}: message {msg} has 2 mess files ({copy_rel}, {rel}) and "
            f"qmail reads only {rel}; keep one by hand: nothing of this message is renamed "
            "or moved until then [not repairable]") in checked.output, checked.output
    assert "inode-mismatch" not in checked.output
    before = q.files()
    repaired = run(q, "check", "--repair", *STOPPED_ARGS)
    assert q.files() == before, repaired.output
    assert "FAILED" not in repaired.output


def test_a_named_pipe_beside_the_mess_file_does_not_hide_its_headers(tmp_path):
    """show printed the data of the first file named ID in mess/: a named pipe listed
    before the real mess file gave an empty header block."""
    q = QueueBuilder(tmp_path / "qmail")
    msg = add(q, "a@example.com", remote=("x@remote.example",), subject="hello there")
    os.mkfifo(q.queue / "mess" / earlier_split(msg) / str(msg))
    shown = run(q, "show", str(msg))
    assert shown.exit_code == 0, shown.output
    assert "Subject: hello there" in shown.output, shown.output
    assert f"damaged: mess/{earlier_split(msg)}/{msg}: a " in shown.output


def test_an_envelope_file_where_qmail_does_not_look_is_damage(tmp_path):
    """qmail-send opens info/N/ID with N = ID mod conf-split, nothing else: an info file in
    another split directory is never read (check: misplaced, which --repair moves), and
    list showed the message as healthy."""
    q = QueueBuilder(tmp_path / "qmail")
    msg = add(q, "a@example.com", remote=("x@remote.example",))
    elsewhere = q.queue / "info" / earlier_split(msg) / str(msg)
    os.rename(q.path("info", msg), elsewhere)
    [data] = json.loads(run(q, "list", "--json").output)
    assert data["sender"] == "a@example.com"
    assert data["damaged"] == [
        f"info/{earlier_split(msg)}/{msg}: not where qmail looks for it "
        f"(info/{msg % SPLIT}/{msg}): qmail never reads it ('mailplan queue check' says why)"]
    assert "misplaced" in run(q, "check").output
    assert run(q, "check", "--repair", *STOPPED_ARGS).exit_code == 0
    [data] = json.loads(run(q, "list", "--json").output)
    assert data["damaged"] == []


def test_a_tree_of_another_split_count_is_read_with_it(tmp_path):
    """A qmail built with conf-split 7: where qmail looks is ID mod 7, read from the
    tree, never 23."""
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("a@example.com", remote=("x@remote.example",))
    for area in ("mess", "info", "remote"):
        os.rename(q.path(area, msg), q.queue / area / str(msg))  # out of the way
    for area in ("mess", "info", "local", "remote"):
        for n in range(7, SPLIT):
            shutil.rmtree(q.queue / area / str(n))
    for area in ("mess", "info", "remote"):
        os.rename(q.queue / area / str(msg), q.queue / area / str(msg % 7) / str(msg))
    [data] = json.loads(run(q, "list", "--json").output)
    assert (data["id"], data["damaged"]) == (msg, [])
    assert run(q, "check").output.endswith("queue is healthy (split 7)\n")


def _drop_empty_split_dirs(q: QueueBuilder) -> None:
    """What a restore or a clean-up that keeps no empty directory leaves of a small
    queue: the numbered directories of mess, info, local and remote that held a file."""
    for area in ("mess", "info", "local", "remote"):
        for sub in (q.queue / area).iterdir():
            if not any(sub.iterdir()):
                sub.rmdir()


def test_a_small_queue_without_its_empty_split_directories_is_split_23(tmp_path):
    """A queue of three messages whose empty split directories are gone, the top ones
    of every area among them: its highest directory is no split count. Before, check
    took it for one (here, 1 more than the highest left), called every message
    misplaced, and --repair moved them all where qmail, built with 23, never looks.
    Now the tree is read as split 23: only the directories are missing, and repair
    makes them and moves nothing."""
    q = QueueBuilder(tmp_path / "qmail")
    rejected: list[int] = []

    def below_the_top(add: functools.partial[int]) -> int:
        """A message queued by ``add`` whose id (its inode: the filesystem's choice)
        does not put it in the top split directory, 22, which must be one of those gone
        (one id in 23 did: the test failed by chance); one that did is queued again."""
        msg_id = add()
        while msg_id % SPLIT == SPLIT - 1:
            rejected.append(msg_id)  # removed at the end (its inode not given back)
            msg_id = add()
        return msg_id
    ids = [below_the_top(functools.partial(q.add, "a@example.com",
                                           remote=("x@remote.example",))),
           below_the_top(functools.partial(q.add, "", local=("example.com-b@example.com",))),
           below_the_top(functools.partial(q.add, "c@example.com",
                                           remote=("y@remote.example",), preprocessed=False))]
    for msg_id in rejected:
        for area in ("mess", "info", "local", "remote", "intd", "todo"):
            q.path(area, msg_id).unlink(missing_ok=True)
    _drop_empty_split_dirs(q)
    assert max(int(p.name) for p in (q.queue / "mess").iterdir()) < SPLIT - 1
    before = q.files()
    out = run(q, "check").output
    assert "misplaced" not in out and "split-mismatch" not in out, out
    assert "missing-dir: mess/22: directory is missing" in out
    assert all(not d["damaged"] for d in json.loads(run(q, "list", "--json").output))
    assert run(q, "check", "--repair", *STOPPED_ARGS).output.endswith(
        "queue is healthy (split 23)\n")
    assert q.files() == before  # every file where qmail opens it: nothing moved
    assert all(q.path("mess", i).is_file() for i in ids)


def test_a_tree_of_another_split_count_missing_directories_is_in_doubt(tmp_path):
    """A qmail built with conf-split 7 whose empty split directories 3 and 6 are gone in
    every area: its files are not where 23 puts them, and what is left (0..5 with a
    gap) is no split count, so check cannot tell it: it says so (split-mismatch),
    repair refuses and moves nothing. With --split 7 the directories are made again."""
    q = QueueBuilder(tmp_path / "qmail")
    msg = next(m for m in iter(lambda: q.add("a@example.com", remote=("x@remote.example",)),
                               None) if m % 7 not in (3, 6, m % SPLIT))
    for area in ("mess", "info", "remote"):
        os.rename(q.path(area, msg), q.queue / area / str(msg))
    for area in ("mess", "info", "local", "remote"):
        for n in (3, *range(6, SPLIT)):
            shutil.rmtree(q.queue / area / str(n))
    for area in ("mess", "info", "remote"):
        os.rename(q.queue / area / str(msg), q.queue / area / str(msg % 7) / str(msg))
    for other in {int(p.name) for p in q.queue.glob("mess/*/*")} - {msg}:
        for path in q.queue.glob(f"*/*/{other}"):
            path.unlink()  # only the one message with a telling id is kept
    before = q.files()
    out = run(q, "check").output
    assert f"split-mismatch: mess/{msg % 7}/{msg}: split directories are missing" in out
    assert "misplaced" not in out, out
    res = run(q, "check", "--repair", *STOPPED_ARGS)
    assert res.exit_code == 1 and "refusing to repair" in res.output, res.output
    assert q.files() == before
    assert run(q, "check", "--split", "7").output.startswith(
        "missing-dir: mess/3: directory is missing\nmissing-dir: mess/6: directory")
    assert run(q, "check", "--repair", "--split", "7", *STOPPED_ARGS).output.endswith(
        "queue is healthy (split 7)\n")
    assert q.files() == before


def test_a_queue_whose_top_split_directories_are_gone_is_not_moved(tmp_path):
    """mess/22, info/22, local/22 and remote/22 gone (empty, removed by a clean-up): the
    tree is whole up to 22 directories, but its files sit where 23 puts them. Before,
    check took 22 for the split count and --repair moved every message where qmail
    never looks; now it says the count is in doubt and repair refuses, and with
    --split 23 (refused before: "the tree has 0..21") it makes the directories again."""
    q = QueueBuilder(tmp_path / "qmail")
    ids: list[int] = []
    # three messages or more, one kept (not in 22) that 22 directories would put
    # elsewhere, which is what shows the count in doubt (ids are inodes, the
    # filesystem's choice: about one time in 25 three in a row had none)
    while len(ids) < 3 or not any(i % SPLIT != i % (SPLIT - 1) for i in ids
                                  if i % SPLIT != SPLIT - 1):
        ids.append(q.add("a@example.com", remote=("x@remote.example",)))
    for i in ids:
        if i % SPLIT == SPLIT - 1:  # in the directory to remove: out of the way
            for path in q.queue.glob(f"*/*/{i}"):
                path.unlink()
    for area in ("mess", "info", "local", "remote"):
        (q.queue / area / str(SPLIT - 1)).rmdir()
    before = q.files()
    out = run(q, "check").output
    assert "split-mismatch: mess/" in out and "the tree has split directories 0..21" in out
    assert "misplaced" not in out, out
    res = run(q, "check", "--repair", *STOPPED_ARGS)
    assert res.exit_code == 1 and "refusing to repair" in res.output, res.output
    assert q.files() == before
    assert run(q, "check", "--split", "23").output == "".join(
        f"missing-dir: {area}/22: directory is missing\n"
        for area in ("mess", "info", "local", "remote")) + \
        "4 problem(s), 4 repairable with --repair\n"
    assert run(q, "check", "--repair", "--split", "23", *STOPPED_ARGS).output.endswith(
        "queue is healthy (split 23)\n")
    assert q.files() == before


def test_waiting_messages_are_no_damage_where_big_todo_is_in_doubt(tmp_path):
    """One stray numbered directory in todo/ makes the tree look big-todo, which check
    doubts (split-mismatch: it cannot tell how qmail was built); list is not to take a
    side and call every message waiting in todo/ damaged."""
    q = QueueBuilder(tmp_path / "qmail")
    waiting = q.add("a@example.com", remote=("x@remote.example",), preprocessed=False)
    (q.queue / "todo" / "3").mkdir()
    [data] = json.loads(run(q, "list", "--json").output)
    assert (data["id"], data["state"], data["damaged"]) == (waiting, "todo", [])
    assert "split-mismatch" in run(q, "check").output


# -- a big queue: a message keeps the headers list looks at, not all of them ------------------

def test_messages_keep_only_the_headers_list_uses(tmp_path):
    """Each message kept its whole parsed header block: some 10 kB of Python objects for
    a header block of 4 kB (spam's Received chains and reports), a gigabyte for a
    hundred thousand messages. It keeps Subject, From, To and Cc (what list shows and
    its filters and delete --match look at); show prints the mess file's own block."""
    import tracemalloc

    q = QueueBuilder(tmp_path / "qmail")
    report = "".join(f"X-Spam-Report-{n}: " + "x" * 60 + "\n\t" + "y" * 60 + "\n"
                     for n in range(30))
    for n in range(200):
        q.add(f"s{n}@example.com", remote=("x@remote.example",), subject=f"offer {n}",
              sender_header=f"S {n} <s{n}@example.com>\nTo: you@example.com\n{report.strip()}")
    dump = ops.Target(LocalConnector("l"), str(q.queue), STOPPED).read(step="read queue")
    assert min(len(e.data) for e in dump.entries.values() if e.parts[:1] == ("mess",)
               and e.kind == "f") > 4000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        msgs = model.messages(dump)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(msgs) == 200 and grown / 200 < 3000, grown / 200
    assert {name for m in msgs for name, _ in m.headers} == {"From", "Subject", "To"}
    assert msgs[0].subject.startswith("offer ")
    seventh = next(m.id for m in msgs if m.subject == "offer 7")
    assert [m["id"] for m in json.loads(run(q, "list", "--subject", "^offer 7$", "--regex",
                                            "--json").output)] == [seventh]
    shown = run(q, "show", str(msgs[0].id)).output
    assert "X-Spam-Report-29: " in shown and f"Subject: {msgs[0].subject}\n" in shown


# -- delete groups each read once -------------------------------------------------------------

def test_delete_groups_each_read_of_the_queue_once(tmp_path, monkeypatch):
    """delete grouped the first read three times (to choose, for the files, for the
    identities) and the second twice; with a big queue each grouping is seconds."""
    q = QueueBuilder(tmp_path / "qmail")
    doomed = q.add("spam@bad.example", remote=("x@remote.example",), subject="buy now")
    kept = q.add("a@example.com", remote=("y@remote.example",))
    calls = []
    real = grouping.by_id

    def counted(files):
        calls.append(len(files))
        return real(files)

    for module in (grouping, model, ops):
        monkeypatch.setattr(module, "by_id", counted, raising=False)
    target = ops.Target(LocalConnector("l"), str(q.queue), STOPPED)
    chosen = ops.Selection((), Filter(subject=Pattern("buy")))
    change = ops.delete(target, chosen, execute=True)
    assert list(change.removed) == [doomed] and not change.failed
    assert len(calls) == 2, calls  # the read to choose, the read with qmail-send stopped
    assert not q.path("mess", doomed).exists() and q.path("mess", kept).exists()
