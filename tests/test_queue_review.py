"""Defects a review of `mailplan queue` found, each pinned by a test on a local queue tree.

qmail-send is stood in for by status/stop/start commands (custom control) or by fake
``pgrep``, ``systemctl`` and ``svstat`` programs early in PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from queue_builder import QueueBuilder

from mailplan.connectors.local import LocalConnector
from mailplan.queue import formats, ops
from mailplan.queue.check import check, repair_actions
from mailplan.queue.cli import queue as queue_cli
from mailplan.queue.control import Control, QmailRunning
from mailplan.queue.dump import read_queue
from mailplan.queue.grouping import detect_layout, grouped
from mailplan.queue.layout import Layout
from mailplan.queue.model import messages


def run(*args: str):
    return CliRunner().invoke(queue_cli, list(args))


def fake_bin(tmp_path: Path, **programs: str) -> Path:
    """A directory of shell scripts named by ``programs`` (body: the script text)."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir(exist_ok=True)
    for name, body in programs.items():
        path = bindir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    return bindir


def bare_path(tmp_path: Path) -> Path:
    """A PATH directory with what the agent and the control scripts need, but no pgrep."""
    bindir = tmp_path / "bare"
    bindir.mkdir()
    for tool in ("sh", "mktemp", "head", "rm", "sleep", "grep", "cat", "test", "touch"):
        found = shutil.which(tool)
        if found:
            os.symlink(os.path.realpath(found), bindir / tool)
    os.symlink(sys.executable, bindir / "python3")
    return bindir


# -- #4: a status nobody can read is "unknown", never "stopped" ------------------------------

def test_no_pgrep_is_unknown_and_delete_refuses(tmp_path, monkeypatch):
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("spam@bad.example", remote=("x@remote.example",))
    monkeypatch.setenv("PATH", str(bare_path(tmp_path)))
    result = run("delete", "local", "--queue-dir", str(q.queue), str(msg), "--execute")
    assert result.exit_code == 1, result.output
    assert "cannot tell whether qmail-send runs" in result.output
    assert "exited 127" in result.output and "nothing was changed" in result.output
    assert q.path("mess", msg).exists()
    stat = run("stat", "local", "--queue-dir", str(q.queue))
    assert "qmail-send: unknown (status command exit 127)" in stat.output
    dry = run("delete", "local", "--queue-dir", str(q.queue), str(msg))
    assert "--execute will refuse" in dry.output


@pytest.mark.parametrize("code,deleted", [(1, True), (2, False), (3, False), (127, False)])
def test_custom_status_only_exit_1_means_stopped(tmp_path, code, deleted):
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("spam@bad.example", remote=("x@remote.example",))
    control = Control("custom", status_cmd=f"exit {code}", stop_cmd="true", start_cmd="true")
    target = ops.Target(LocalConnector("l"), str(q.queue), control)
    if deleted:
        ops.delete(target, ops.Selection((msg,)), execute=True)
    else:
        with pytest.raises(QmailRunning, match="cannot tell"):
            ops.delete(target, ops.Selection((msg,)), execute=True)
    assert q.path("mess", msg).exists() is not deleted


def status_of(control: Control, bindir: Path) -> int:
    path = f"{bindir}:{os.environ['PATH']}"
    return subprocess.run(["sh", "-c", f"( {control.status()}\n) >/dev/null 2>&1"],
                          env={**os.environ, "PATH": path}, check=False).returncode


@pytest.mark.parametrize("active,load,pgrep,expect", [
    (0, "loaded", 1, 0), (3, "loaded", 1, 1), (3, "masked", 1, 1), (3, "loaded", 0, 4),
    (4, "loaded", 1, 2), (1, "loaded", 1, 2), (3, "loaded", 2, 2), (3, "loaded", 127, 2),
    # a unit systemd does not know: is-active says 3 (inactive) all the same
    (3, "not-found", 1, 2), (3, "not-found", 0, 2)])
def test_systemctl_status_codes(tmp_path, active, load, pgrep, expect):
    systemctl = f'case $1 in is-active) exit {active};; show) echo "LoadState={load}";; esac'
    bindir = fake_bin(tmp_path, systemctl=systemctl, pgrep=f"exit {pgrep}")
    assert status_of(Control("systemctl"), bindir) == expect


@pytest.mark.parametrize("said,pgrep,expect", [
    ("up (pid 5) 9 seconds", 1, 0), ("down 4 seconds, normally up", 1, 1),
    ("down 4 seconds, normally up", 0, 4), ("down 4 seconds", 127, 2),
    ("supervise not running", 1, 2)])
def test_svc_status_codes(tmp_path, said, pgrep, expect):
    bindir = fake_bin(tmp_path, svstat=f'echo "$1: {said}"', pgrep=f"exit {pgrep}")
    assert status_of(Control("svc"), bindir) == expect


@pytest.mark.parametrize("method,manager", [
    ("svc", {"svstat": 'echo "$1: down 4 seconds, normally up"'}),
    ("systemctl", {"systemctl": 'case $1 in is-active) exit 3;; show) echo LoadState=loaded;;'
                                ' esac'})])
def test_a_qmail_send_outside_the_service_is_neither_stopped_nor_started(tmp_path, method,
                                                                         manager):
    """The service is down but pgrep sees a qmail-send (started some other way): that
    counted as "running", so delete --execute issued svc -d / systemctl stop (which stop
    nothing), waited, and then svc -u / systemctl start: it brought up the service the
    admin had down, a second qmail-send, and said "qmail-send was started again"."""
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("spam@bad.example", remote=("x@remote.example",))
    log = tmp_path / "calls"
    bindir = fake_bin(tmp_path, pgrep="exit 0", svc=f'echo "svc $*" >> {log}', **{
        name: f'echo "{name} $*" >> {log}\n{body}' for name, body in manager.items()})
    path = f"{bindir}:{os.environ['PATH']}"
    options = ["--queue-dir", str(q.queue), "--control", method, "--stop-timeout", "1"]
    env = {"PATH": path}
    result = CliRunner(env=env).invoke(queue_cli, ["delete", "local", str(msg), "--execute",
                                                   *options])
    assert result.exit_code == 1, result.output
    assert "qmail-send runs, but not under" in result.output
    assert "which says it is down" in result.output and "nothing was changed" in result.output
    assert "started again" not in result.output
    calls = log.read_text().splitlines() if log.exists() else []
    assert not [c for c in calls if c.startswith("svc ") or " stop " in f"{c} "
                or " start " in f"{c} "], calls
    assert q.path("mess", msg).exists()
    dry = CliRunner(env=env).invoke(queue_cli, ["delete", "local", str(msg), *options])
    assert "which says it is down: --execute will refuse" in dry.output
    os.chmod(q.queue / "todo", 0o777)
    repair = CliRunner(env=env).invoke(queue_cli, ["check", "local", "--repair", *options])
    assert repair.exit_code == 1 and "which says it is down" in repair.output
    assert os.stat(q.queue / "todo").st_mode & 0o777 == 0o777


# -- #5: once a stop was issued, qmail-send is started again ---------------------------------

class Service:
    """A qmail-send that is a flag file; its stop and start commands are logged."""

    def __init__(self, root: Path, stop: str = "rm -f {flag}", start: str = "touch {flag}"):
        self.flag, self.logfile = root / "running", root / "log"
        self.flag.touch()
        self.status = f"test -e {self.flag}"
        self.stop = f"echo stop >> {self.logfile}; " + stop.format(flag=self.flag)
        self.start = f"echo start >> {self.logfile}; " + start.format(flag=self.flag)

    @property
    def log(self) -> list[str]:
        return self.logfile.read_text().split() if self.logfile.exists() else []

    def options(self) -> list[str]:
        return ["--control", "custom", "--status-cmd", self.status, "--stop-cmd", self.stop,
                "--start-cmd", self.start]


@pytest.mark.parametrize("stop,said", [("true", "still runs 1 s after stopping"),
                                       ("false", "stopping qmail-send via the custom "
                                        "commands failed")])
def test_a_failed_or_slow_stop_is_followed_by_a_start(tmp_path, stop, said):
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("spam@bad.example", remote=("x@remote.example",))
    svc = Service(tmp_path, stop=stop)
    result = run("delete", "local", "--queue-dir", str(q.queue), str(msg), "--execute",
                 "--stop-timeout", "1", *svc.options())
    assert result.exit_code == 1, result.output
    assert said in result.output and "nothing was changed" in result.output
    assert "qmail-send was started again" in result.output
    assert svc.log == ["stop", "start"] and q.path("mess", msg).exists()


def test_a_start_that_fails_after_a_stop_timeout_is_said_loudly(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("spam@bad.example", remote=("x@remote.example",))
    svc = Service(tmp_path, stop="true", start="exit 5")
    result = run("delete", "local", "--queue-dir", str(q.queue), str(msg), "--execute",
                 "--stop-timeout", "1", *svc.options())
    assert result.exit_code == 1, result.output
    assert "qmail-send IS LEFT STOPPED" in result.output and "exit 5" in result.output
    assert svc.log == ["stop", "start"]


def test_a_failure_after_the_stop_restarts_and_a_failed_restart_is_a_warning(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("spam@bad.example", remote=("x@remote.example",))
    svc = Service(tmp_path, start="exit 5")
    control = Control("custom", status_cmd=svc.status, stop_cmd=svc.stop,
                      start_cmd=svc.start)
    change = ops.delete(ops.Target(LocalConnector("l"), str(q.queue), control),
                        ops.Selection((msg,)), execute=True)
    assert change.executed and not q.path("mess", msg).exists()
    assert any("IS LEFT STOPPED" in w for w in change.warnings)
    assert svc.log == ["stop", "start"]


# -- #3: a cut-off inode-mismatch repair is resumed, never taken for orphans ------------------

def restored(q: QueueBuilder, msg: int) -> int:
    """Give message ``msg``'s mess file a new inode, as a restore does; the new inode."""
    mess = q.path("mess", msg)
    st = mess.stat()
    copy = mess.with_name("copy")
    shutil.copy2(mess, copy)
    os.chown(copy, st.st_uid, st.st_gid)
    os.rename(copy, mess)
    return mess.stat().st_ino


def read(q: QueueBuilder):
    return read_queue(LocalConnector("l"), str(q.queue), mess="none")


def test_every_cut_of_an_inode_repair_is_finished_by_the_next_repair(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    old = q.add("alice@example.com", local=("example.com-bob@example.com",),
                remote=("friend@remote.example.net",))
    new = restored(q, old)
    target = ops.Target(LocalConnector("l"), str(q.queue))
    actions = repair_actions(check(read(q), detect_layout(read(q))))
    assert len(actions) == 8 and all(a["batch"] == f"message {old}" for a in actions)
    contents = {area: q.path(area, old).read_bytes() for area in ("info", "local", "remote")}
    for cut in range(len(actions)):
        if cut:  # put the message back under its old names, then cut the repair there
            for area in ("mess", "info", "local", "remote"):
                os.rename(q.path(area, new), q.path(area, old))
        ops.ctl_apply(target, actions[:cut], "cut")
        report = check(read(q), detect_layout(read(q)))
        assert [p.code for p in report.problems] == \
            ["inode-mismatch" if cut == 0 else "unfinished-repair"], (cut, report.problems)
        ops.ctl_apply(target, repair_actions(report), "resume")
        assert check(read(q), detect_layout(read(q))).problems == [], cut
        for area, data in contents.items():
            assert q.path(area, new).read_bytes() == data, (cut, area)


def test_a_file_renamed_ahead_of_its_mess_is_not_an_orphan(tmp_path):
    """As left by a cut-off repair of an older mailplan: info under .mailplan-NEW."""
    q = QueueBuilder(tmp_path / "qmail")
    old = q.add("alice@example.com", remote=("friend@remote.example.net",))
    new = restored(q, old)
    ahead = q.queue / "info" / str(new % 23) / f".mailplan-{new}"
    os.rename(q.path("info", old), ahead)
    result = run("check", "local", "--queue-dir", str(q.queue), "--repair")
    assert "orphan" not in result.output and result.exit_code == 0, result.output
    assert q.path("info", new).read_bytes() == b"Falice@example.com\0"
    assert q.path("remote", new).exists() and q.path("mess", new).exists()


def test_the_agent_stops_a_batch_at_its_first_failure(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    (q.queue / "pid" / "a").write_text("a")
    (q.queue / "pid" / "b").write_text("b")
    outcomes = ops.ctl_apply(ops.Target(LocalConnector("l"), str(q.queue)), [
        {"op": "rename", "path": "pid/missing", "to": "pid/x", "batch": "g"},
        {"op": "rename", "path": "pid/a", "to": "pid/y", "batch": "g"},
        {"op": "rename", "path": "pid/b", "to": "pid/z"}], "t")
    assert [o["ok"] for o in outcomes] == [False, False, True]
    assert "skipped" in outcomes[1]["error"]
    assert (q.queue / "pid" / "a").exists() and (q.queue / "pid" / "z").exists()


def test_outcomes_give_every_outcome_as_the_agent_sent_it(tmp_path):
    """Outcomes keeps a count and the failed outcomes only, and yet is a sequence of
    every outcome (tests zip it with the actions): that holds as long as the agent's
    answer for an action that worked is exactly ``{"i": index, "ok": true}``, which
    Outcomes makes again for it. Compared here with the agent's own lines."""
    import json

    from mailplan.queue.remote import Outcomes, _Lines, run_agent

    q = QueueBuilder(tmp_path / "qmail")
    for name in "abc":
        (q.queue / "pid" / name).write_text(name)
    actions = [{"op": "rename", "path": "pid/missing", "to": "pid/x", "batch": "g"},
               {"op": "rename", "path": "pid/a", "to": "pid/y", "batch": "g"},
               {"op": "remove", "path": "pid/b"}, {"op": "remove", "path": "pid/gone"},
               {"op": "rename", "path": "pid/c", "to": "pid/z"}]
    said = run_agent(LocalConnector("l"), "apply", str(q.queue),
                     payload=b"".join(_Lines(actions)), step="t").stdout.splitlines()
    outcomes = Outcomes()
    for line in said:
        outcomes.take(line)
    assert outcomes.garbled is None and len(outcomes) == len(actions)
    assert list(outcomes) == [json.loads(line) for line in said]
    assert [o["ok"] for o in outcomes] == [False, False, True, False, True]


def test_recipients_without_info_are_a_problem_not_a_message_being_queued(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("alice@example.com", remote=("friend@remote.example.net",))
    q.path("info", msg).unlink()
    report = check(read(q), Layout())
    assert [p.code for p in report.problems] == ["no-info"]
    assert not report.problems[0].repairable and report.notes == []


# -- #1: a --split other than the tree's is refused, the tree's is the default --------------

def tree_of(q: QueueBuilder) -> list[str]:
    return sorted(str(p.relative_to(q.queue)) for p in q.queue.rglob("*"))


def test_repair_with_a_wrong_split_moves_nothing(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    ids = [q.add("a@example.net", remote=(f"x{i}@remote.example",)) for i in range(3)]
    before = tree_of(q)
    result = run("check", "local", "--queue-dir", str(q.queue), "--split", "101", "--repair")
    assert result.exit_code == 1 and "refusing to repair" in result.output, result.output
    assert "pass --split 23" in result.output
    assert tree_of(q) == before and all(q.path("mess", i).exists() for i in ids)
    checked = run("check", "local", "--queue-dir", str(q.queue), "--split", "101")
    assert checked.exit_code == 2 and "misplaced" not in checked.output
    assert checked.output.startswith("split-mismatch: mess: the tree has split directories "
                                     "0..22 (conf-split 23), not 0..100")


def test_the_split_count_is_read_from_the_tree(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    for area in ("mess", "info", "local", "remote"):
        for n in range(23, 31):
            d = q.queue / area / str(n)
            d.mkdir()
            st = (q.queue / area / "0").stat()
            os.chown(d, st.st_uid, st.st_gid)
            os.chmod(d, st.st_mode & 0o777)
    result = run("check", "local", "--queue-dir", str(q.queue))
    assert result.exit_code == 0 and "queue is healthy (split 31)" in result.output, \
        result.output
    os.rmdir(q.queue / "remote" / "30")  # one missing top directory is just missing
    result = run("check", "local", "--queue-dir", str(q.queue))
    assert "missing-dir: remote/30" in result.output and "mismatch" not in result.output


# -- #2: big-todo is detected from any numbered todo/intd directory --------------------------

def test_big_todo_without_todo_0_is_repaired_not_dismantled(tmp_path):
    # one message, whose id (its mess file's inode) is not in todo/0's share: a queue
    # built again until it is (an id divisible by 23 would need the missing todo/0)
    for attempt in range(50):
        q = QueueBuilder(tmp_path / f"qmail{attempt}")
        msg = q.add("alice@example.com", remote=("x@remote.example",), preprocessed=False)
        if msg % 23:
            break
    for area in ("todo", "intd"):
        st = (q.queue / area).stat()
        for n in range(23):
            d = q.queue / area / str(n)
            d.mkdir()
            os.chown(d, st.st_uid, st.st_gid)
            os.chmod(d, st.st_mode & 0o777)
    for area in ("todo", "intd"):
        os.rename(q.queue / area / str(msg), q.queue / area / str(msg % 23) / str(msg))
    (q.queue / "todo" / "0").rmdir()
    report = check(read(q), detect_layout(read(q)))
    assert report.layout.big_todo
    assert [(p.code, p.path) for p in report.problems] == [("missing-dir", "todo/0")]
    result = run("check", "local", "--queue-dir", str(q.queue), "--repair")
    assert result.exit_code == 0 and "healthy (split 23, big-todo)" in result.output
    assert (q.queue / "todo" / "0").is_dir()
    assert (q.queue / "todo" / str(msg % 23) / str(msg)).exists()


# -- #12: delete removes only the message it chose, not a new one under the same id ---------

def test_a_new_message_under_a_chosen_id_is_not_deleted(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("spam@bad.example", remote=("victim@remote.example",), subject="BUY NOW")
    other = q.add("spam@bad.example", remote=("other@remote.example",), subject="BUY NOW")
    svc = Service(tmp_path)
    mess, info, remote = (q.path(a, msg) for a in ("mess", "info", "remote"))
    # while qmail-send stops, the spam is delivered and a new message takes its inode
    svc_stop = (f"{svc.stop}; printf 'From: ceo@example.com\\nSubject: contract\\n\\nhi\\n' "
                f"> {mess}; printf 'Fceo@example.com\\0' > {info}; "
                f"printf 'Tlawyer@remote.example\\0' > {remote}")
    options = ["--control", "custom", "--status-cmd", svc.status, "--stop-cmd", svc_stop,
               "--start-cmd", svc.start]
    result = run("delete", "local", "--queue-dir", str(q.queue), "--match", "subject",
                 "BUY NOW", "--execute", *options)
    assert result.exit_code == 0, result.output
    assert f"message {msg} vanished" in result.output
    assert f"removed message {other}" in result.output
    assert mess.exists() and b"contract" in mess.read_bytes() and info.exists()
    assert not q.path("mess", other).exists()


# -- #11: the repair agent follows no symlink and changes only what the check saw -----------

@pytest.mark.parametrize(("area", "mode", "swap", "error"), [
    ("mess", 0o600, os.symlink, ""),  # a symbolic link: not followed
    ("info", 0o644, os.link, "no longer the object"),  # a hard link: another inode
])
def test_chmod_of_a_file_swapped_after_the_check_is_refused(tmp_path, area, mode, swap,
                                                            error):
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("a@example.net", remote=("x@remote.example",))
    os.chmod(q.path(area, msg), mode)
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret\n")
    os.chmod(secret, 0o600)
    actions = repair_actions(check(read(q), Layout()))
    assert [a["op"] for a in actions] == ["chmod"]
    q.path(area, msg).unlink()
    swap(secret, q.path(area, msg))
    outcomes = ops.ctl_apply(ops.Target(LocalConnector("l"), str(q.queue)), actions, "t")
    assert not outcomes[0]["ok"] and error in outcomes[0]["error"]
    assert secret.stat().st_mode & 0o777 == 0o600


def test_no_action_goes_through_a_split_directory_swapped_for_a_symlink(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep")
    (outside / "other").write_text("keep")
    os.rmdir(q.queue / "info" / "5")
    os.symlink(outside, q.queue / "info" / "5")
    outcomes = ops.ctl_apply(ops.Target(LocalConnector("l"), str(q.queue)), [
        {"op": "remove", "path": "info/5/victim"},
        {"op": "rename", "path": "info/5/other", "to": "info/6/other"},
        {"op": "chmod", "path": "info/5/other", "mode": 0o666},
        {"op": "mkdir", "path": "info/5/new", "mode": 0o700, "user": "root",
         "group": "root"}], "t")
    assert [o["ok"] for o in outcomes] == [False] * 4
    assert sorted(p.name for p in outside.iterdir()) == ["other", "victim"]
    assert (outside / "other").stat().st_mode & 0o777 != 0o666


# -- #7: envelope files are read whole ------------------------------------------------------

def test_a_big_recipient_list_is_read_whole(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    rcpts = tuple(f"member{i:05d}@lists.remote.example" for i in range(40000))
    msg = q.add("list-owner@example.com", remote=rcpts)
    assert q.path("remote", msg).stat().st_size > 1 << 20
    report = check(read(q), Layout())
    assert report.problems == []
    stat = run("stat", "local", "--queue-dir", str(q.queue))
    assert "remote recipients: 40000 pending, 0 done" in stat.output


# -- #8: a message still in todo/ is in state todo, whatever info/local/remote hold ---------

def test_a_message_half_preprocessed_is_todo_with_its_todo_envelope(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("alice@example.com", remote=("bob@remote.example",), preprocessed=False)
    # qmail-send was killed while writing info/ and remote/ (both cut short)
    for area, data in (("info", b"Falice@exa"), ("remote", b"Tbob@rem")):
        q.path(area, msg).write_bytes(data)
        shutil.chown(q.path(area, msg), "qmails", "qmail")
        os.chmod(q.path(area, msg), 0o600)
    [message] = messages(read_queue(LocalConnector("l"), str(q.queue)))
    assert message.state == "todo" and message.sender == "alice@example.com"
    assert [(r.address, r.channel) for r in message.recipients] == \
        [("bob@remote.example", "todo")] and message.damaged == ()
    assert check(read(q), Layout()).problems == []


# -- #6: a queue directory that is a symlink is read through -----------------------------------

def test_a_symlinked_queue_directory_is_read(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    q.add("alice@example.com", remote=("bob@remote.example",))
    link = tmp_path / "queue-link"
    os.symlink(q.queue, link)
    stat = run("stat", "local", "--queue-dir", str(link))
    assert stat.output.startswith("messages in queue: 1\n"), stat.output
    checked = run("check", "local", "--queue-dir", str(link))
    assert checked.exit_code == 0 and "queue is healthy" in checked.output, checked.output


# -- #9, #10: no control character from the queue reaches the terminal ----------------------

@pytest.mark.parametrize("char", ["\n", "\t", "\r", "\x1b", "\x9b", "\x85", "\u2028",
                                  "\u2029", "\u202e"])
def test_printable_leaves_no_control_character(char):
    assert formats.printable(f"a{char}b") == "a_b"


def test_a_subject_cannot_forge_a_list_row(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    q.add("a@example.net", remote=("x@remote.example",),
          subject="=?UTF-8?Q?hi=0A9999999__2020-01-01=09x=C2=9B2J?=")
    out = run("list", "local", "--queue-dir", str(q.queue)).output
    assert len(out.splitlines()) == 3 and "\t" not in out and "\x9b" not in out, out


def test_check_prints_file_names_sanitised(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    (q.queue / "mess" / "3" / "x\x1b[2K\rqueue is healthy (split 23)\nfake").write_text("")
    out = run("check", "local", "--queue-dir", str(q.queue)).output
    assert "\x1b" not in out and "\r" not in out
    assert len(out.splitlines()) == 2 and out.startswith("stray-file: mess/3/x_[2K_queue")


# -- delete removes a message's files in an order qmail-send copes with at every cut --------

def queue_with_doomed(root: Path) -> tuple[QueueBuilder, list[int]]:
    """A queued message with local, remote and bounce files, and one still in todo/."""
    q = QueueBuilder(root)
    full = q.add("spam@bad.example", local=("example.com-bob@example.com",),
                 remote=("x@remote.example",))
    bounce = q.path("bounce", full)
    bounce.write_bytes(b"Tgone@remote.example\0")
    shutil.chown(bounce, "qmails", "qmail")
    os.chmod(bounce, 0o600)
    todo = q.add("spam@bad.example", remote=("y@remote.example",), preprocessed=False)
    return q, [full, todo]


def qmail_send_trips(q: QueueBuilder, msg: int) -> list[str]:
    """What qmail-send (or qmail-queue) mishandles in what is left of ``msg``."""
    left = {a for a in ("todo", "intd", "bounce", "local", "remote", "info", "mess")
            if q.path(a, msg).exists()}
    trips = []
    if left and "mess" not in left:
        # todo_do cannot stat mess (every run); spawns cannot open it; a stale intd/todo
        # makes qmail-queue fail for the next message given that inode
        trips.append(f"{sorted(left)} without mess")
    if left & {"local", "remote"} and not left & {"info", "todo"}:
        trips.append("local/remote without info: never delivered, never cleaned up")
    if {"bounce", "info"} <= left and not left & {"local", "remote", "todo"}:
        trips.append("qmail-send would send the bounce of a deleted message")
    return trips


def test_a_delete_cut_after_any_removal_leaves_what_qmail_send_copes_with(tmp_path):
    q, ids = queue_with_doomed(tmp_path / "plan")
    dump = read(q)
    files = ops.Selection(tuple(ids)).files(grouped(dump), "l", strict=True)
    actions = list(ops.delete_actions(dump, files))
    assert len(actions) == 8
    for cut in range(len(actions) + 1):
        q, ids = queue_with_doomed(tmp_path / f"cut{cut}")
        dump = read(q)
        files = ops.Selection(tuple(ids)).files(grouped(dump), "l", strict=True)
        actions = list(ops.delete_actions(dump, files))
        target = ops.Target(LocalConnector("l"), str(q.queue))
        assert all(o["ok"] for o in ops.ctl_apply(target, actions[:cut], "cut"))
        for msg in ids:
            assert qmail_send_trips(q, msg) == [], (cut, msg)
        report = check(read(q), detect_layout(read(q)))
        assert report.problems == [], (cut, report.problems)
        # what is left is still a message (or half of one): deleting it again finishes
        left = [m.id for m in messages(read(q))]
        assert set(left) <= set(ids)
        if left:
            result = run("delete", "local", "--queue-dir", str(q.queue), *map(str, left),
                         "--execute")
            assert result.exit_code == 0, (cut, result.output)
        assert [f for f in q.files() if f.rsplit("/", 1)[-1] in map(str, ids)] == [], cut
        assert check(read(q), detect_layout(read(q))).problems == [], cut


def test_delete_prints_files_in_removal_order(tmp_path):
    q, (full, todo) = queue_with_doomed(tmp_path / "qmail")
    result = run("delete", "local", "--queue-dir", str(q.queue), str(full), str(todo))
    s = full % 23
    assert (f"would remove message {full}: bounce/{full}, local/{s}/{full}, "
            f"remote/{s}/{full}, info/{s}/{full}, mess/{s}/{full}") in result.output
    assert (f"would remove message {todo}: todo/{todo}, intd/{todo}, "
            f"mess/{todo % 23}/{todo}") in result.output


def test_a_removal_that_fails_keeps_the_rest_of_its_message(tmp_path):
    q, (full, todo) = queue_with_doomed(tmp_path / "qmail")
    dump = read(q)
    files = ops.Selection((full, todo)).files(grouped(dump), "l", strict=True)
    actions = list(ops.delete_actions(dump, files))
    # todo/ is now another file than the one read: its removal is refused, and so the
    # message's intd and mess stay (else todo/ would be left without mess)
    todo_file = q.path("todo", todo)
    shutil.copy2(todo_file, todo_file.with_name("copy"))
    os.rename(todo_file.with_name("copy"), todo_file)
    q.path("bounce", full).unlink()  # gone already: no reason to stop
    outcomes = ops.ctl_apply(ops.Target(LocalConnector("l"), str(q.queue)), actions, "t")
    said = {a["path"]: o for a, o in zip(actions, outcomes, strict=True)}
    assert said[f"bounce/{full}"].get("gone")
    assert "no longer the object" in said[f"todo/{todo}"]["error"]
    assert "skipped" in said[f"intd/{todo}"]["error"]
    assert "skipped" in said[f"mess/{todo % 23}/{todo}"]["error"]
    assert not [f for f in q.files() if f.endswith(f"/{full}")]
    assert all(q.path(a, todo).exists() for a in ("todo", "intd", "mess"))


# -- a filter does not take a message qmail-queue may still be writing ----------------------

def test_delete_by_filter_leaves_partial_messages_unless_asked(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    queued = q.add("spam@bad.example", remote=("victim@remote.example",), subject="BUY NOW")
    waiting = q.add("spam@bad.example", remote=("victim@remote.example",), subject="BUY NOW",
                    preprocessed=False)
    # qmail-queue has written mess and intd/, its todo/ link is still to come
    writing = q.add("spam@bad.example", remote=("victim@remote.example",), subject="BUY NOW",
                    preprocessed=False, todo=False)
    states = {m.id: m.state for m in messages(read(q))}
    assert (states[queued], states[waiting], states[writing]) == ("queued", "todo", "partial")
    base = ("delete", "local", "--queue-dir", str(q.queue), "--match", "to", "victim@")

    dry = run(*base)
    assert f"would remove message {queued}" in dry.output
    assert f"would remove message {waiting}" in dry.output
    assert f"message {writing}:" not in dry.output
    assert (f"1 partial message(s) matched but were not selected ({writing}): qmail-queue "
            "may still be writing them") in dry.output

    result = run(*base, "--execute", "--json")
    assert result.exit_code == 0, result.output
    assert '"partial_left_out": [\n    ' + str(writing) in result.output
    assert not q.path("mess", queued).exists() and not q.path("todo", waiting).exists()
    assert q.path("mess", writing).exists() and q.path("intd", writing).exists()

    again = run(*base, "--execute")
    assert "no message selected; nothing to delete" in again.output
    assert q.path("mess", writing).exists()

    included = run(*base, "--include-partial", "--execute")
    assert included.exit_code == 0 and f"removed message {writing}" in included.output
    assert "partial message" not in included.output
    assert not q.path("mess", writing).exists() and not q.path("intd", writing).exists()


def test_a_partial_message_named_by_id_is_deleted(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    writing = q.add("a@example.net", subject="x", preprocessed=False, todo=False)
    result = run("delete", "local", "--queue-dir", str(q.queue), str(writing), "--match",
                 "from", "a@example", "--execute")
    assert result.exit_code == 0 and f"removed message {writing}" in result.output
    assert "partial" not in result.output and not q.path("mess", writing).exists()


# -- swapped names are refused (and said so); a chain is repaired one link per run ----------

AREAS3 = ("mess", "info", "remote")


def rename_message(q: QueueBuilder, old: int, new: int) -> None:
    """Give every file of message ``old`` the name ``new`` (in new's split directories)."""
    for area in AREAS3:
        os.rename(q.path(area, old), q.path(area, new))


def unused_id(q: QueueBuilder) -> int:
    used = {int(p.name) for p in q.queue.rglob("*") if p.name.isdigit()}
    used |= {p.stat().st_ino for p in (q.queue / "mess").rglob("*") if p.is_file()}
    return next(n for n in range(999_999_937, 10**10) if n not in used)


def two_messages(q: QueueBuilder, first: str, second: str) -> tuple[int, int, int]:
    """Messages from ``first@example.net`` and ``second@example.net``, and an unused id."""
    one = q.add(f"{first}@example.net", remote=("x@remote.example",))
    two = q.add(f"{second}@example.net", remote=("y@remote.example",))
    return one, two, unused_id(q)


def chained(path: Path) -> tuple[QueueBuilder, int, int, int]:
    """A queue where message y is named ``spare`` and wants the name y, held by message
    x (named y, wants x)."""
    q = QueueBuilder(path)
    x, y, spare = two_messages(q, "x", "y")
    rename_message(q, y, spare)
    rename_message(q, x, y)
    return q, x, y, spare


def test_swapped_names_are_refused_and_the_documented_way_out_works(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    a, b, spare = two_messages(q, "a", "b")
    rename_message(q, a, spare)
    rename_message(q, b, a)
    rename_message(q, spare, b)  # now a's files are named b and b's are named a
    before = tree_of(q)
    result = run("check", "local", "--queue-dir", str(q.queue), "--repair")
    assert result.exit_code == 2 and tree_of(q) == before, result.output
    for mine, other in ((a, b), (b, a)):
        assert (f"message {mine}: its mess file has inode {other}") in result.output
        assert (f"belong to message {other}, whose name is swapped with this one's "
                "(directly or through others): --repair never renames swapped names"
                ) in result.output
    # docs/queue.md, "Swapped names": give one of them an unused number, repair twice
    rename_message(q, b, spare)  # the files named b (message a's) go to an unused name
    first = run("check", "local", "--queue-dir", str(q.queue), "--repair")
    assert first.exit_code == 2 and "run --repair again once it is" in first.output
    second = run("check", "local", "--queue-dir", str(q.queue), "--repair")
    assert second.exit_code == 0 and second.output.endswith("queue is healthy (split 23)\n")
    assert q.path("info", a).read_bytes() == b"Fa@example.net\0"
    assert q.path("info", b).read_bytes() == b"Fb@example.net\0"
    assert q.path("mess", a).stat().st_ino == a and q.path("mess", b).stat().st_ino == b


def test_a_chain_is_repaired_one_link_per_run_also_when_cut_off(tmp_path):
    q0, _x0, y0, spare = chained(tmp_path / "plan")
    report = check(read(q0), detect_layout(read(q0)))
    said = {p.path: p for p in report.problems}
    assert said[f"mess/{y0 % 23}/{y0}"].repairable
    blocked = said[f"mess/{spare % 23}/{spare}"]
    assert not blocked.repairable and f"belong to message {y0}, which is to be renamed " \
        "first: run --repair again once it is" in blocked.message
    steps = len(repair_actions(report))
    assert steps == 6
    for cut in range(steps + 1):
        q, x, y, spare = chained(tmp_path / f"cut{cut}")
        target = ops.Target(LocalConnector("l"), str(q.queue))
        ops.ctl_apply(target, repair_actions(check(read(q), detect_layout(read(q))))[:cut],
                      "cut")
        if any(f".mailplan-{y}-" in f for f in q.files()):
            # message y is not renamed to y while x's files still carry that id
            said = {p.path: p for p in check(read(q), detect_layout(read(q))).problems}
            waiting = said[f"mess/{spare % 23}/{spare}"]
            assert not waiting.repairable, (cut, waiting.message)
        for _ in range(3):
            ops.ctl_apply(target, repair_actions(check(read(q), detect_layout(read(q)))),
                          "resume")
        assert check(read(q), detect_layout(read(q))).problems == [], cut
        assert q.path("info", x).read_bytes() == b"Fx@example.net\0", cut
        assert q.path("info", y).read_bytes() == b"Fy@example.net\0", cut
        assert not [f for f in q.files() if str(spare) in f or ".mailplan" in f], cut
