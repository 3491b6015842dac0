"""`mailplan queue` on a live queue: what it must never do to mail it was not asked to
touch (a queue it cannot read whole, a stray directory in todo/, a cut-off repair's
leftovers, a damaged envelope file), each on a real queue tree
(:class:`queue_builder.QueueBuilder`) read and changed by the real agent.

A reader that may not see the whole queue is stood in for by running the agent's Python
as the qmailq user (``setpriv``), which can list mess/ and todo/ but not info/, local/
or remote/ (qmails, 0700), exactly as on a qmail host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from queue_builder import QueueBuilder
from tools import INSTALL, require

from mailplan.connectors.local import LocalConnector
from mailplan.errors import HostError
from mailplan.queue import ops
from mailplan.queue.cli import queue as queue_cli
from mailplan.queue.control import Control
from mailplan.queue.filters import Filter

STOPPED = Control("custom", status_cmd="exit 1", stop_cmd="true", start_cmd="true")


def run(*args: str):
    return CliRunner().invoke(queue_cli, list(args))


def as_qmailq(tmp_path: Path) -> str:
    """A python3 that runs as qmailq:qmail (what an unprivileged reader can see)."""
    require(shutil.which("setpriv"), "setpriv (util-linux)")
    switch = "setpriv --reuid=qmailq --regid=qmail --init-groups"
    usable = [exe for exe in ("/usr/bin/python3", "/usr/local/bin/python3")
              if subprocess.run(f"{switch} {exe} -c pass", shell=True,
                                capture_output=True, check=False).returncode == 0]
    if not usable:
        pytest.fail(f"no python3 the qmailq user may run: {INSTALL} installs Debian's "
                    "(as root)", pytrace=False)
    wrapper = tmp_path / "python-as-qmailq"
    wrapper.write_text(f'#!/bin/sh\nexec {switch} {usable[0]} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def reachable(tmp_path: Path) -> None:
    """Let other users walk down to the queue (the tests' tmp_path is root's 0700)."""
    for folder in (tmp_path, *tmp_path.parents):
        if folder == Path("/"):
            break
        os.chmod(folder, os.stat(folder).st_mode | 0o005)


# -- a directory the reader cannot list is an error, never an empty area ------------------

def test_unlistable_area_is_an_error_not_a_partial_message(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("a@example.com", remote=("x@remote.example",), age=200000)
    reachable(tmp_path)
    conn = LocalConnector("l", python=as_qmailq(tmp_path))
    target = ops.Target(conn, str(q.queue), STOPPED)
    # repair must not take the preprocessed message for a stale half-written one
    with pytest.raises(HostError) as err:
        ops.repair(target)
    assert q.path("mess", msg).exists() and q.path("info", msg).exists()
    assert "cannot list" in str(err.value) and "info" in str(err.value)
    assert "--sudo" in (err.value.hint or "")
    stat = run("stat", "local", "--queue-dir", str(q.queue))  # as root: all of it
    assert stat.exit_code == 0 and "messages in queue: 1" in stat.output


@pytest.mark.ssh
def test_unlistable_area_over_ssh_changes_nothing(tmp_path, ssh_connector):
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("a@example.com", remote=("x@remote.example",), age=200000)
    bounce = q.add("", remote=("x@remote.example",))
    reachable(tmp_path)
    ssh_connector.python = as_qmailq(tmp_path)
    target = ops.Target(ssh_connector, str(q.queue), STOPPED)
    before = q.files()
    with pytest.raises(HostError) as err:
        ops.delete(target, ops.Selection((), Filter(bounces=True)), execute=True)
    assert "cannot list" in str(err.value) and str(q.queue / "info") in str(err.value)
    with pytest.raises(HostError):
        ops.repair(target)
    assert q.files() == before and q.path("mess", msg).exists() and bounce


# -- one stray numbered directory in todo/ does not make a flat queue big-todo ----------

@pytest.mark.parametrize("area", ["todo", "intd"])
def test_stray_numbered_dir_in_todo_does_not_move_flat_messages(tmp_path, area):
    q = QueueBuilder(tmp_path / "qmail")
    waiting = q.add("a@example.com", remote=("x@remote.example",), preprocessed=False)
    (q.queue / area / "3").mkdir()  # by hand, or a half-done big-todo conversion
    before = q.files()
    result = run("check", "local", "--queue-dir", str(q.queue), "--repair", "--control",
                 "custom", "--status-cmd", "exit 1", "--stop-cmd", "true",
                 "--start-cmd", "true")
    assert result.exit_code == 1 and "refusing to repair" in result.output, result.output
    assert f"{area}/3" in result.output and "big-todo" in result.output
    assert q.files() == before
    assert q.path("todo", waiting).exists() and q.path("intd", waiting).exists()
    assert not (q.queue / area / "0").exists()
    checked = run("check", "local", "--queue-dir", str(q.queue))
    assert checked.exit_code == 2 and "split-mismatch" in checked.output


@pytest.mark.parametrize("area", ["todo", "intd"])
def test_stray_numbered_dir_in_an_empty_todo_is_not_multiplied(tmp_path, area):
    # nothing waiting in todo/ or intd/: one numbered directory alone does not make the
    # queue big-todo for repair, which would add 45 more that a qmail built without
    # big-todo takes for unreadable messages in todo/
    q = QueueBuilder(tmp_path / "qmail")
    q.add("a@example.com", remote=("x@remote.example",))  # delivered from info/ on
    (q.queue / area / "3").mkdir()
    before = q.files()
    checked = run("check", "local", "--queue-dir", str(q.queue))
    assert checked.exit_code == 2 and "split-mismatch" in checked.output, checked.output
    assert (f"{area}/3: 1 numbered directory in todo/ and intd/, where a qmail built with "
            "big-todo has todo/0..22 and intd/0..22") in checked.output
    result = run("check", "local", "--queue-dir", str(q.queue), "--repair", "--control",
                 "custom", "--status-cmd", "exit 1", "--stop-cmd", "true",
                 "--start-cmd", "true")
    assert result.exit_code == 1 and "refusing to repair" in result.output, result.output
    assert q.files() == before
    assert sorted(p.name for p in (q.queue / area).iterdir()) == ["3"]


# -- a failed chown to group qmail does not skip the other repairs -------------------------

def test_one_failed_chown_does_not_skip_unrelated_repairs(tmp_path):
    from mailplan.queue.check import check, repair_actions
    from mailplan.queue.dump import read_queue
    from mailplan.queue.grouping import detect_layout
    from mailplan.queue.remote import run_actions

    q = QueueBuilder(tmp_path / "qmail")
    tcpto = q.queue / "lock" / "tcpto"
    os.chown(tcpto, 0, 0)  # owner problem: chown to qmailr:qmail
    (q.queue / "lock" / "trigger").unlink()  # missing-file: mkfifo, then chown to qmails:qmail
    os.rmdir(q.queue / "bounce")  # missing-dir: mkdir, chown to qmails:qmail
    conn = LocalConnector("l")
    dump = read_queue(conn, str(q.queue))
    actions = repair_actions(check(dump, detect_layout(dump)))
    # tcpto is replaced between the check and the repair: its chown is refused
    (q.queue / "lock" / "tcpto.new").write_bytes(b"\0" * 1024)
    os.rename(q.queue / "lock" / "tcpto.new", tcpto)  # a new inode, never the old one
    outcomes = run_actions(conn, str(q.queue), actions, step="repair")
    failed = [(a["op"], a["path"], o.get("error")) for a, o in zip(actions, outcomes,
                                                                     strict=True)
              if not o["ok"]]
    assert [f[:2] for f in failed] == [("chown", "lock/tcpto")], failed
    assert (q.queue / "lock" / "trigger").exists() and (q.queue / "bounce").is_dir()


# -- a cut-off repair's temporary name belongs to the message it was renaming to --------------

def cut_off_repair_leftover(q: QueueBuilder) -> tuple[int, int, Path]:
    """Message B was being renamed from its old id to its inode when the repair was cut
    off: its mess and info are under the new id, its local file still carries the
    temporary name ``.mailplan-OLD-NEW``. Meanwhile OLD became the id of message C (the
    message that held that inode was deleted, and qmail-queue gave it to C)."""
    c_id = q.add("c@example.com", remote=("c-friend@remote.example",))
    b_id = q.add("b@example.com", local=("example.com-bob@example.com",),
                 remote=("b-friend@remote.example",))
    temp = q.queue / "local" / str(b_id % 23) / f".mailplan-{c_id}-{b_id}"
    os.rename(q.path("local", b_id), temp)
    return b_id, c_id, temp


def test_repair_finishes_a_temporary_name_for_its_own_message(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    b_id, c_id, temp = cut_off_repair_leftover(q)
    result = run("check", "local", "--queue-dir", str(q.queue), "--repair")
    assert result.exit_code == 0, result.output
    assert q.path("local", b_id).read_bytes() == b"Texample.com-bob@example.com\0"
    assert not q.path("local", c_id).exists() and not temp.exists()


def test_delete_leaves_another_message_s_temporary_name_alone(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    b_id, c_id, temp = cut_off_repair_leftover(q)
    result = run("delete", "local", "--queue-dir", str(q.queue), str(c_id), "--execute")
    assert result.exit_code == 0, result.output
    assert temp.exists() and str(temp.relative_to(q.queue)) not in result.output
    assert not q.path("mess", c_id).exists()


# -- show says which queue file it could not read, and why -------------------------------

def test_show_names_a_damaged_envelope_file(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("a@example.com", local=("example.com-bob@example.com",),
                remote=("friend@remote.example",))
    q.path("remote", msg).write_bytes(b"Xfriend@remote.example\0\xff\0")
    result = run("show", "local", "--queue-dir", str(q.queue), str(msg))
    assert result.exit_code == 0, result.output
    rel = str(q.path("remote", msg).relative_to(q.queue))
    assert f"damaged: {rel}: recipient entry 'Xfriend@remote.example' starts with " \
        "neither T nor D" in result.output, result.output


# -- a queue entry that is no regular file is reported, never renamed ----------------------

def test_a_fifo_named_like_a_message_is_reported_not_renamed(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    q.add("a@example.com", remote=("x@remote.example",))
    fifo = q.queue / "mess" / str(99999 % 23) / "99999"
    os.mkfifo(fifo)
    checked = run("check", "local", "--queue-dir", str(q.queue))
    assert checked.exit_code == 2 and "wrong-type" in checked.output, checked.output
    assert "inode-mismatch" not in checked.output
    before = q.files()
    repaired = run("check", "local", "--queue-dir", str(q.queue), "--repair")
    assert fifo.exists() and q.files() == before, repaired.output


def test_a_fifo_or_link_named_as_a_mess_file_is_no_message_in_list_and_stat(tmp_path):
    """check calls such a file wrong-type and nobody's message; list showed it as a
    partial message and stat counted it half-written, in the oldest date and the total
    size. Now both leave it out and say so; qmail-qstat's find -type f does not count it
    either, nor does qmail-qread list an id without an info/ file."""
    import json

    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("a@example.com", remote=("x@remote.example",), age=3600)
    size = q.path("mess", msg).stat().st_size
    fifo = q.queue / "mess" / "3" / "99999"
    os.mkfifo(fifo)
    link = q.queue / "mess" / "4" / "88888"
    link.symlink_to(q.path("mess", msg))
    old = int(time.time()) - 10 * 86400  # older than the message: it would be "oldest"
    for path in (fifo, link):
        os.utime(path, (old, old), follow_symlinks=False)
    base = ("local", "--queue-dir", str(q.queue))

    checked = run("check", *base)
    assert "wrong-type: mess/3/99999: should be a regular file" in checked.output
    assert "wrong-type: mess/4/88888: should be a regular file" in checked.output

    listed = run("list", *base)
    assert listed.exit_code == 0, listed.output
    assert "99999" not in listed.output.split("1 message(s)")[0]
    assert "88888" not in listed.output.split("1 message(s)")[0]
    assert listed.output.endswith(
        "1 message(s)\nnot listed: 2 file(s) named as a mess file but not a regular file, "
        "so no message (mess/3/99999: a named pipe); 'mailplan queue check' reports them "
        "(wrong-type)\n"), listed.output
    as_json = json.loads(run("list", *base, "--json").output)
    assert [m["id"] for m in as_json] == [msg]

    stat = run("stat", *base)
    assert stat.exit_code == 0, stat.output
    assert "half-written messages: 0\n" in stat.output
    assert f"total size: {size} bytes\n" in stat.output
    assert ("not messages: 2 named pipe(s) or symbolic link(s) named as a mess file, left "
            "out above ('mailplan queue check' reports them: wrong-type)\n") in stat.output
    numbers = json.loads(run("stat", *base, "--json").output)
    assert (numbers["partial"], numbers["total_bytes"], numbers["not_messages"]) == \
        (0, size, 2)
    assert numbers["oldest"] == int(q.path("mess", msg).stat().st_mtime)

    # show said "no mess file under that id", of an id whose mess file is a named pipe
    shown = run("show", *base, "99999")
    assert "no message 99999 (no regular mess file under that id; mess/3/99999: a named " \
        "pipe); its files: mess/3/99999\n" in shown.output, shown.output
    assert "check: wrong-type: mess/3/99999" in shown.output
    shown = run("show", *base, "88888")
    assert "(no regular mess file under that id; mess/4/88888: a symbolic link)" in \
        shown.output, shown.output


def test_a_fifo_as_a_message_s_info_file_is_damaged_not_misread(tmp_path):
    """A message whose info/ file is a fifo (check: wrong-type) is damaged in list, and
    show says what the file is, not that its (unread) bytes do not parse."""
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("a@example.com", remote=("x@remote.example",))
    q.path("info", msg).unlink()
    os.mkfifo(q.path("info", msg))
    base = ("local", "--queue-dir", str(q.queue))
    rel = f"info/{msg % 23}/{msg}"
    assert f"wrong-type: {rel}: should be a regular file" in run("check", *base).output
    assert "queued,damaged" in run("list", *base).output
    shown = run("show", *base, str(msg))
    assert f"damaged: {rel}: a named pipe, not a regular file: not read (check reports it as " \
        "wrong-type)\n" in shown.output, shown.output
    assert "does not begin with an F<sender> record" not in shown.output


def test_list_marks_a_message_with_a_damaged_envelope_file(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    good = q.add("a@example.com", remote=("friend@remote.example",))
    bad = q.add("b@example.com", remote=("friend@remote.example",))
    q.path("info", bad).write_bytes(b"\xff")
    result = run("list", "local", "--queue-dir", str(q.queue))
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines()[1:3]}
    assert ",damaged" in rows[str(bad)] and ",damaged" not in rows[str(good)]
    assert result.output.endswith(
        "2 message(s)\n1 with a file qmail cannot use or never reads (state 'damaged': the "
        "sender or recipients shown may lack what it holds); 'mailplan queue show' of one "
        f"(message {bad}) says which file and why\n"), result.output


# -- a name of non-ASCII digits is no message id and no split directory ------------------

def test_names_of_other_digits_are_strays_not_ids(tmp_path):
    # "²" and "١٠" are digits to str.isdigit, and int() refuses the first: a file or
    # directory so named made the check fail with a ValueError
    q = QueueBuilder(tmp_path / "qmail")
    q.add("a@example.com", remote=("x@remote.example",))
    (q.queue / "mess" / "0" / "²").write_bytes(b"x")
    (q.queue / "todo" / "١٠").mkdir()
    checked = run("check", "local", "--queue-dir", str(q.queue))
    assert checked.exit_code == 2, checked.output
    assert "mess/0/²: not a qmail message file (name is not an id)" in checked.output
    assert "big-todo" not in checked.output


# -- actions go as JSON lines: a cut-off input leaves no message half removed ------------------

def _apply_lines(q: QueueBuilder, data: bytes):
    """The agent's apply mode (qmail-send counted as stopped) given ``data`` as input."""
    from mailplan.queue.remote import agent_command, agent_source

    return LocalConnector("l").run(agent_command("apply", str(q.queue)),
                                   stdin=agent_source() + data)


@pytest.mark.parametrize("end", [b"", b'{"op": "remove", "pa', b'{"end": 9}\n'])
def test_actions_cut_off_leave_the_last_message_whole(tmp_path, end):
    """Input that ends without its end mark (mailplan stopped, the connection lost), in
    the middle of a line or not, or whose end mark counts other actions: the messages
    whose removals all arrived are removed, the one whose removals did not all arrive
    (or may not have) is left whole, and the agent says so and exits 4."""
    import json

    from mailplan.queue.dump import read_queue
    from mailplan.queue.grouping import grouped

    q = QueueBuilder(tmp_path / "qmail")
    ids = [q.add(f"s{n}@example.com", remote=("x@remote.example",)) for n in range(2)]
    dump = read_queue(LocalConnector("l"), str(q.queue), mess="none")
    actions = list(ops.delete_actions(dump, ops.Selection(tuple(ids)).files(
        grouped(dump), "l", strict=True)))
    # the message whose removals come first (the ids are inodes: either may be lower)
    gone, kept = sorted(ids, key=lambda i: actions[0]["batch"] != f"delete {i}")
    res = _apply_lines(q, b"".join(json.dumps(a).encode() + b"\n" for a in actions[:5])
                       + end)
    assert res.returncode == 4, res
    assert len(res.stdout.splitlines()) == 3
    assert b"not carried out" in res.stderr or b"end mark says 9" in res.stderr
    assert not q.path("mess", gone).exists() and not q.path("info", gone).exists()
    assert all(q.path(area, kept).exists() for area in ("mess", "info", "remote"))


def test_a_refusal_reads_a_long_input_to_its_end(tmp_path):
    """qmail-send runs: the agent changes nothing, and reads the actions (as many as a
    spam backlog's, far more than a pipe holds) to their end, so the sender is told the
    refusal and not a broken pipe."""
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("s@example.com", remote=("x@remote.example",))
    actions = ({"op": "remove", "path": f"mess/{n % 23}/{msg}", "batch": f"delete {n}"}
               for n in range(100_000))
    target = ops.Target(LocalConnector("l"), str(q.queue),
                        Control("custom", status_cmd="exit 0", stop_cmd="true",
                                start_cmd="true"))
    with pytest.raises(HostError, match="qmail-send is not stopped"):
        ops.ctl_apply(target, actions, "delete")
    assert q.path("mess", msg).exists()
