"""`mailplan queue` on queue states a migration meets and earlier tests did not cover,
each on a real queue tree (:class:`queue_builder.QueueBuilder`) read by the real agent.
"""

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
from mailplan.queue import formats, ops
from mailplan.queue.check import check
from mailplan.queue.cli import queue as queue_cli
from mailplan.queue.control import Control
from mailplan.queue.grouping import detect_layout
from mailplan.queue.model import FIELDS, messages, stats

STOPPED = Control("custom", status_cmd="exit 1", stop_cmd="true", start_cmd="true")


def run(*args: str):
    return CliRunner().invoke(queue_cli, list(args))

# -- the group of a mess file is whoever queued it: on a host joined to a directory -------

#: Groups as sssd or winbind name them on a host joined to Active Directory.
DIRECTORY_GROUPS = {55501: "domain users", 55502: "Dom\u00e4nen-Benutzer"}


def python_with_directory_groups(tmp_path: Path) -> str:
    """A python3 whose ``grp`` knows :data:`DIRECTORY_GROUPS` (as NSS would on such a
    host), for the agent run as mailplan runs it (``python -I -S -c CODE ARGS``)."""
    # defaults, not globals: the agent runs in the same namespace and has its own
    patch = ("import grp\n"
             f"def _test_getgrgid(gid, real=grp.getgrgid, names={DIRECTORY_GROUPS!r}):\n"
             "    if gid in names:\n"
             "        return grp.struct_group((names[gid], 'x', gid, []))\n"
             "    return real(gid)\n"
             "grp.getgrgid = _test_getgrgid\n")
    wrapper = tmp_path / "python-with-directory-groups"
    # mailplan passes -I -S -c CODE: run CODE after the patch
    wrapper.write_text(f'#!/bin/sh\ncode=$4; shift 4\nexec {sys.executable} -I -S -c '
                       f'"$(cat {tmp_path / "patch.py"})\n$code" "$@"\n')
    (tmp_path / "patch.py").write_text(patch)
    wrapper.chmod(0o755)
    return str(wrapper)


def test_a_message_queued_by_a_directory_group_is_read(tmp_path):
    """qmail-queue is setuid qmailq, not setgid: a message's mess/, todo/ and intd/
    files keep the group of the process that queued it, here a user of the directory.
    A group name with a space or a non-ASCII letter once broke the dump's records, and
    with them every queue command (stat, list, check, delete) on such a host."""
    q = QueueBuilder(tmp_path / "qmail")
    spaced = q.add("alice@example.com", remote=("bob@remote.example",))
    accented = q.add("j@example.com", remote=("x@remote.example",), preprocessed=False)
    os.chown(q.path("mess", spaced), -1, 55501)
    for area in ("mess", "todo"):
        os.chown(q.path(area, accented), -1, 55502)
    os.chown(q.path("info", spaced), -1, 55502)  # and one where qmail is wanted
    conn = LocalConnector("l", python=python_with_directory_groups(tmp_path))
    dump = ops.Target(conn, str(q.queue), STOPPED).read(step="read queue")
    assert dump.entries[str(q.path("mess", spaced).relative_to(q.queue))].group == \
        "domain users"
    assert dump.entries[f"todo/{accented}"].group == "Dom\u00e4nen-Benutzer"
    assert {m.id: m.state for m in messages(dump)} == {spaced: "queued", accented: "todo"}
    assert stats(dump).messages == 2
    problems = check(dump, detect_layout(dump)).problems
    assert [(p.code, p.message) for p in problems] == [
        ("owner", "owned by qmails:Dom\u00e4nen-Benutzer, should be qmails:qmail")]


# -- qmail-send started by someone else while mailplan read the queue -----------------------

def started_after(tmp_path: Path, calls: int) -> Control:
    """A control whose status says "stopped" for its first ``calls`` runs and "running"
    from then on: an admin or a watchdog starting qmail-send while mailplan reads a big
    queue (the second read, taken with qmail-send seen stopped, may take minutes)."""
    count = tmp_path / "status-calls"
    status = (f"n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n >{count}; "
              f"[ $n -gt {calls} ] && exit 0; exit 1")
    return Control("custom", status_cmd=status, stop_cmd="true", start_cmd="true")


def test_delete_changes_nothing_once_qmail_send_runs_again(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("spam@bad.example", remote=("x@remote.example",))
    before = q.files()
    # runs 1 and 2: the first read and the re-read; run 3 is just before the removals
    target = ops.Target(LocalConnector("l"), str(q.queue), started_after(tmp_path, 2))
    with pytest.raises(HostError) as err:
        ops.delete(target, ops.Selection((msg,)), execute=True)
    assert "qmail-send is not stopped" in str(err.value)
    assert "nothing was changed" in str(err.value)
    assert q.files() == before


def test_sigterm_mid_delete_starts_qmail_send_again_and_says_so_in_one_line(tmp_path):
    """SIGTERM while `delete --execute` has qmail-send stopped (here: its stop command
    still running) ended Python silently (exit -15): qmail-send left stopped by
    mailplan. It ends as a Ctrl-C does: qmail-send is started again, one line says so,
    exit 143, nothing of the queue removed (the removals had not begun)."""
    import signal
    import time

    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("spam@bad.example", remote=("x@remote.example",))
    before = q.files()
    stopping, started = tmp_path / "stopping", tmp_path / "started"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailplan", "queue", "delete", "local", str(msg),
         "--queue-dir", str(q.queue), "--execute", "--control", "custom", "--status-cmd",
         "exit 0", "--stop-cmd", f"touch {stopping}; sleep 30", "--start-cmd",
         f"touch {started}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not stopping.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, out + err
    assert err == "Error: queue delete interrupted (SIGTERM); qmail-send was started " \
        "again\n", err
    assert started.exists()
    assert q.files() == before


def test_repair_changes_nothing_once_qmail_send_runs_again(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    q.add("a@example.com", remote=("x@remote.example",))
    os.chmod(q.queue / "todo", 0o777)
    target = ops.Target(LocalConnector("l"), str(q.queue), started_after(tmp_path, 2))
    with pytest.raises(HostError, match="qmail-send is not stopped"):
        ops.repair(target)
    assert os.stat(q.queue / "todo").st_mode & 0o777 == 0o777
    # while it stays stopped, the same repair goes through
    (tmp_path / "status-calls").unlink()
    target = ops.Target(LocalConnector("l"), str(q.queue), started_after(tmp_path, 9))
    assert ops.repair(target).after.problems == []
    assert os.stat(q.queue / "todo").st_mode & 0o777 == 0o750


# -- a repair never counts a message qmail-queue may still be writing as abandoned -------

@pytest.mark.parametrize(("age", "written"), [("0s", 60), ("30m", 7200), ("23h", 83400)])
def test_repair_refuses_a_stale_after_under_qmail_queues_lifetime(tmp_path, age, written):
    """qmail-queue writes for up to 24 h (DEATH), and stopping qmail-send does not stop
    it: `--repair --stale-after 0s` removed the mess file of a message being written
    now, which qmail-queue then reported accepted as a todo/ file without its mess."""
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("a@example.com", remote=("x@remote.example",), preprocessed=False,
                todo=False, age=written)
    os.unlink(q.path("intd", msg))  # the message itself still coming in: mess only
    before = q.files()
    res = run("check", "local", "--queue-dir", str(q.queue), "--repair", "--control",
              "custom", "--status-cmd", "exit 1", "--stop-cmd", "true", "--start-cmd",
              "true", "--stale-after", age)
    assert res.exit_code == 1, res.output
    assert "refusing to repair with --stale-after" in res.output
    assert "nothing was changed" in res.output
    assert q.files() == before and q.path("mess", msg).exists()
    # check alone reports with it; a repair with 24 h goes on (and leaves it: young)
    res = run("check", "local", "--queue-dir", str(q.queue), "--stale-after", age)
    assert res.exit_code == 2 and "stale-partial" in res.output
    assert ops.repair(ops.Target(LocalConnector("l"), str(q.queue), STOPPED),
                      stale_after=86400).after.problems == []
    assert q.files() == before


# -- a message qmail-queue is writing is partial, not damaged -------------------------------

def test_an_envelope_still_being_written_is_not_damaged(tmp_path):
    """qmail-queue writes intd/ID after the message, then links it to todo/ID: until
    then intd/ may end in the middle of a recipient. That is a partial message (which
    check leaves alone as being queued), not one with a file qmail cannot use."""
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("a@example.com", remote=("x@remote.example", "y@remote.example"),
                preprocessed=False, todo=False)
    intd = q.path("intd", msg)
    intd.write_bytes(intd.read_bytes()[:-3])  # "...\0Ty@remote.examp"
    dump = ops.Target(LocalConnector("l"), str(q.queue), STOPPED).read(step="read queue")
    [found] = messages(dump)
    assert (found.state, found.damaged) == ("partial", ())
    report = check(dump, detect_layout(dump))
    assert report.problems == [] and any(f"message {msg} is being queued" in n
                                         for n in report.notes)
    # linked into todo/ like that, qmail-send's todo_do preprocesses it without the
    # cut record (getln finds no NUL: the end of the envelope): x gets it, y nothing
    os.link(intd, q.path("todo", msg))
    dump = ops.Target(LocalConnector("l"), str(q.queue), STOPPED).read(step="read queue")
    [found] = messages(dump)
    assert (found.state, found.damaged) == ("todo", ())
    assert [r.address for r in found.recipients] == ["x@remote.example"]
    assert found.skipped == (
        f"todo/{msg}: its last record 'Ty@remote.examp' does not end with a NUL byte: "
        "qmail-send never reads it, so 'y@remote.examp' gets nothing (and no bounce)",)


# -- a broken encoded word, as spam carries them --------------------------------------------

@pytest.mark.parametrize("value", ["=?utf-8?b?d?= you won", "=?UTF-8?B?DSDC6Lc1m?="])
def test_a_base64_word_of_impossible_length_is_shown_as_is(value):
    assert formats.decoded(value) == value


def test_list_and_delete_match_a_subject_with_a_broken_encoded_word(tmp_path):
    """email.header raises HeaderParseError (not a ValueError) for base64 of an
    impossible length: one such spam made list and delete --match end in a traceback."""
    q = QueueBuilder(tmp_path / "qmail")
    spam = q.add("spam@bad.example", remote=("x@remote.example",),
                 subject="=?utf-8?b?d?= you won")
    q.add("alice@example.com", remote=("bob@remote.example",), subject="lunch")
    listed = run("list", "local", "--queue-dir", str(q.queue), "--subject", "won")
    assert listed.exit_code == 0, listed.output
    assert f"{spam} " in listed.output and "=?utf-8?b?d?= you won" in listed.output
    deleted = run("delete", "local", "--queue-dir", str(q.queue), "--match", "subject", "won")
    assert deleted.exit_code == 0, deleted.output
    assert f"would remove message {spam}:" in deleted.output


# -- --control systemctl with a unit systemd does not know ----------------------------------

def test_a_unit_systemd_does_not_know_is_unknown_not_stopped(tmp_path, monkeypatch):
    """`systemctl is-active` exits 3 (inactive) for a unit that does not exist, as for
    a stopped one (systemd issue 25680): with the default --unit qmail on a notqmail host
    (whose unit is qmail-send) mailplan took it for stopped, went on when pgrep saw no
    qmail-send, and, had it seen one, "stopped" it with a command that failed and then
    warned qmail-send IS LEFT STOPPED. Its LoadState tells the two apart."""
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("spam@bad.example", remote=("x@remote.example",))
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    # as systemd 252 answers for a unit it has no file for
    (bindir / "systemctl").write_text(
        '#!/bin/sh\ncase $1 in is-active) exit 3;; show) echo LoadState=not-found;; '
        'stop|start) echo "Failed to $1 $2.service: Unit $2.service not loaded." >&2; '
        'exit 5;; esac\n')
    (bindir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    result = run("delete", "local", "--queue-dir", str(q.queue), str(msg), "--execute",
                 "--control", "systemctl")
    assert result.exit_code == 1, result.output
    assert "cannot tell whether qmail-send runs" in result.output
    assert "is 'qmail' the systemd unit that runs qmail-send" in result.output
    assert q.path("mess", msg).exists()


@pytest.mark.parametrize("control,said", [
    (["--control", "svc", "--service", "/service/nosuch"],
     "is '/service/nosuch' the daemontools service directory of qmail-send"),
    (["--control", "custom", "--status-cmd", "exit 5", "--stop-cmd", "true",
      "--start-cmd", "true"], "check --status-cmd: the status command must exit 0"),
])
def test_an_unknown_state_hint_fits_the_control_method_given(tmp_path, control, said):
    """svstat on no service directory (or a status command exiting 5) is no answer: the
    hint names what to check for that method, never "pass --control svc" to one who did."""
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("spam@bad.example", remote=("x@remote.example",))
    result = run("delete", "local", "--queue-dir", str(q.queue), str(msg), "--execute",
                 *control)
    assert result.exit_code == 1, result.output
    assert "cannot tell whether qmail-send runs" in result.output
    assert said in result.output and "pass --control svc" not in result.output
    assert q.path("mess", msg).exists()


# -- a todo/ envelope as qmail-send's todo_do reads it --------------------------------------

@pytest.mark.parametrize("data,sender,rcpts", [
    (b"u0\0p1\0Fa@x\0Tb@y\0", "a@x", ("b@y",)),
    (b"u0\0p1\0Tb@y\0Fa@x\0Tc@z\0", "a@x", ("b@y", "c@z")),  # qmail-send takes any order
    (b"uroot\0p\0F\0Tb@y\0", "", ("b@y",)),  # u and p: qmail-send's scan_ulong never fails
])
def test_envelopes_qmail_send_reads(data, sender, rcpts):
    env = formats.parse_envelope(data)
    assert (env.sender, env.recipients) == (sender, rcpts)


@pytest.mark.parametrize("data", [b"u0\0p1\0Fa@x\0Tb@y\0\0", b"u0\0\0p1\0Fa@x\0Tb@y\0"])
def test_an_empty_envelope_record_is_malformed(data):
    with pytest.raises(formats.FormatError, match="empty record"):
        formats.parse_envelope(data)


def test_check_reports_a_todo_envelope_qmail_send_stops_at(tmp_path):
    """An envelope copied into todo/ as qmail-queue reads it on fd 1 (ending in an empty
    record) makes qmail-send log "unknown record type" at every pass and never deliver
    the message; check called the queue healthy."""
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("a@example.com", remote=("x@remote.example",), preprocessed=False)
    todo = q.path("todo", msg)
    todo.write_bytes(todo.read_bytes() + b"\0")  # intd/ is the same file: one link
    dump = ops.Target(LocalConnector("l"), str(q.queue), STOPPED).read(step="read queue")
    problems = check(dump, detect_layout(dump)).problems
    assert [(p.code, p.path) for p in problems] == [("malformed", f"todo/{msg}")]
    [found] = messages(dump)
    assert found.state == "todo" and found.damaged


@pytest.mark.parametrize("data,sender", [
    (b"Fa@x\0", "a@x"), (b"F\0", ""),
    # qmail-send's getinfo reads the first record only: it delivers these
    (b"Fa@x\0Fb@y\0", "a@x"), (b"Fa@x\0junk", "a@x")])
def test_info_files_qmail_send_reads(data, sender):
    assert formats.parse_info(data) == sender


def test_a_todo_with_two_senders_stays_deliverable_once_preprocessed(tmp_path):
    """qmail-send copies every F record of todo/ into info/, and then reads only the
    first: check called such a message malformed and told to delete it."""
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("a@example.com", remote=("x@remote.example",))
    q.path("info", msg).write_bytes(b"Fa@example.com\0Fb@example.com\0")
    dump = ops.Target(LocalConnector("l"), str(q.queue), STOPPED).read(step="read queue")
    assert check(dump, detect_layout(dump)).problems == []
    [found] = messages(dump)
    assert (found.sender, found.damaged) == ("a@example.com", ())


# -- a local/ or remote/ file whose last record lacks its NUL ------------------------------

def test_a_cut_last_recipient_is_skipped_not_a_reason_to_delete_the_message(tmp_path):
    """qmail-send reads local/ and remote/ files with getln(..., '\\0'): a last record
    without its NUL is the end of the file to it (pass_dochan: ``if (!match)``), so it
    delivers to the other recipients and never to that one. check called the file
    malformed and told to delete the message, which loses the others' mail too."""
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("a@example.com", local=("example.com-bob@example.com",),
                remote=("x@remote.example", "y@remote.example"))
    remote = q.path("remote", msg)
    remote.write_bytes(remote.read_bytes()[:-1])  # "Tx@remote.example\0Ty@remote.example"
    rel = f"remote/{msg % 23}/{msg}"
    checked = run("check", "local", "--queue-dir", str(q.queue))
    assert checked.exit_code == 2, checked.output
    assert checked.output.startswith(
        f"unread-record: {rel}: its last record 'Ty@remote.example' does not end with a "
        "NUL byte: qmail-send never reads it, so 'y@remote.example' gets nothing (and no "
        "bounce); qmail-send delivers the message to its 2 other pending recipient(s): do "
        "not delete the message for it"), checked.output
    assert "malformed" not in checked.output and "queue delete" not in checked.output
    shown = run("show", "local", "--queue-dir", str(q.queue), str(msg))
    assert "recipient: remote:x@remote.example\n" in shown.output, shown.output
    assert "damaged" not in shown.output and "recipient: remote:y" not in shown.output
    assert f"skipped: {rel}: its last record 'Ty@remote.example'" in shown.output
    listed = run("list", "local", "--queue-dir", str(q.queue))
    row = listed.output.splitlines()[1]
    assert "queued " in row and "damaged" not in row and "remote:x@remote.example" in row
    assert f"(message {msg}) says which" in listed.output, listed.output


def test_a_cut_only_recipient_leaves_nothing_pending(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("a@example.com", remote=("x@remote.example",))
    q.path("remote", msg).write_bytes(b"Tx@remote.example")
    dump = ops.Target(LocalConnector("l"), str(q.queue), STOPPED).read(step="read queue")
    [problem] = check(dump, detect_layout(dump)).problems
    assert problem.code == "unread-record" and not problem.repairable
    assert "qmail-send finishes the message without it (no other recipient is pending)" \
        in problem.message
    data = b"u0\0p1\0Fa@x\0Tb@y"
    assert formats.parse_envelope(data).recipients == ()
    assert formats.parse_recipients(b"Tb@y") == []
    assert formats.unread_record(b"Ta@x\0Db@y") == (
        "its last record 'Db@y' does not end with a NUL byte: qmail-send never reads it")
    assert formats.unread_record(b"Ta@x\0") is None and formats.unread_record(b"") is None


# -- stat's first two lines are qmail-qstat's ----------------------------------------------

#: notqmail's qmail-qstat.sh (commit a7012e4), QMAIL as its Makefile substitutes it.
QMAIL_QSTAT = """messfiles=`find QMAIL/queue/mess/* -type f | wc -l`
todofiles=`find QMAIL/queue/todo -type f | wc -l`
echo "messages in queue:" $messfiles
echo "messages in queue but not yet preprocessed:" $todofiles
"""


def test_stat_counts_what_qmail_qstat_counts(tmp_path):
    """qmail-qstat counts regular files (find -type f): stat counted a fifo or a
    symbolic link in mess/ or todo/ as a message too."""
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("a@example.com", remote=("x@remote.example",))
    q.add("b@example.com", remote=("y@remote.example",), preprocessed=False)
    os.mkfifo(q.queue / "mess" / "3" / "99999")
    (q.queue / "mess" / "4" / "88888").symlink_to(q.path("mess", msg))
    (q.queue / "todo" / "77777").symlink_to(q.path("mess", msg))
    os.mkfifo(q.queue / "todo" / "66666")
    (q.queue / "mess" / "5" / ".mailplan-1-2").write_bytes(b"x")  # found by find
    (q.queue / "mess" / ".hidden").write_bytes(b"x")  # not matched by mess/*
    script = QMAIL_QSTAT.replace("QMAIL", str(tmp_path / "qmail"))
    real = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    assert real.stdout == ("messages in queue: 3\n"
                           "messages in queue but not yet preprocessed: 1\n")
    result = run("stat", "local", "--queue-dir", str(q.queue))
    assert result.exit_code == 0, result.output
    assert result.output.startswith(real.stdout), result.output


# -- delete reads the message headers only where --match looks at them -----------------------

@pytest.mark.parametrize("args,reads", [
    (("ID",), ["none", "none"]),
    (("--bounces",), ["none", "none"]),
    (("--match", "to", "x@remote"), [FIELDS, "none"]),
    (("--match", "subject", "hello"), [FIELDS, "none"]),
])
def test_delete_reads_headers_only_for_match_and_once(tmp_path, monkeypatch, args, reads):
    """The second read, with qmail-send stopped, checks that each chosen message is
    still the same mess file (inode, change time, size), whose headers the first read
    had: delete read every message's header block twice, also by id and --bounces.
    The first read of --match asks for the header fields it matches on, not the block."""
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("", remote=("x@remote.example",), subject="hello")
    kept = q.add("a@example.com", remote=("y@remote.example",), subject="other")
    seen: list[str] = []
    real = ops.read_queue

    def counted(*a, mess="headers", **kw):
        seen.append(mess)
        return real(*a, mess=mess, **kw)

    monkeypatch.setattr(ops, "read_queue", counted)
    argv = [str(msg) if a == "ID" else a for a in args]
    result = run("delete", "local", "--queue-dir", str(q.queue), *argv, "--execute",
                 "--control", "custom", "--status-cmd", "exit 1", "--stop-cmd", "true",
                 "--start-cmd", "true")
    assert result.exit_code == 0, result.output
    assert seen == reads
    assert f"removed message {msg}:" in result.output and str(kept) not in result.output
    assert not q.path("mess", msg).exists() and q.path("mess", kept).exists()


# -- a local/ or remote/ file qmail-send stops reading part-way ------------------------------

def test_a_bad_record_mid_file_does_not_have_undelivered_mail_deleted(tmp_path):
    """pass_dochan starts a delivery for each T record before one that is neither T nor
    D, and stops there at every pass: the recipients before it get the message. check
    told to delete the message at once, losing theirs; show listed none of them."""
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("a@example.com", local=("example.com-bob@example.com",),
                remote=("x@remote.example",))
    q.path("remote", msg).write_bytes(b"Tx@remote.example\0Xjunk\0Ty@remote.example\0")
    rel = f"remote/{msg % 23}/{msg}"
    dump = ops.Target(LocalConnector("l"), str(q.queue), STOPPED).read(step="read queue")
    [problem] = check(dump, detect_layout(dump)).problems
    assert (problem.code, problem.path) == ("malformed", rel)
    assert "it still delivers to its 2 pending recipient(s) before that record and in " \
        "the message's other files: once those are done" in problem.message, problem.message
    assert "after looking at it" not in problem.message
    # job_close never removes the file (no end reached), so messdone never runs, nor
    # does its injectbounce: the failures so far wait in bounce/ID, never sent
    assert "nor finishes the message, so it never sends a bounce either, not even for " \
        "the recipients before that record that fail permanently (their failure reports " \
        f"collect in bounce/{msg}, and deleting the message deletes them)" in problem.message
    assert problem.message.endswith("once those are done (mailplan queue show), mend the "
                                    "file by hand (with qmail-send stopped, remove that "
                                    "record: qmail-send then finishes the message and sends "
                                    "the bounce), or delete the message (mailplan queue "
                                    "delete)"), problem.message
    [found] = messages(dump)
    assert [r.address for r in found.recipients] == ["example.com-bob@example.com",
                                                     "x@remote.example"]
    assert found.damaged == (f"{rel}: recipient entry 'Xjunk' starts with neither T nor D "
                             "(qmail-send stops there: never delivers to the recipients "
                             "after it)",)
    # once those are done, nothing is left that qmail-send delivers: delete it
    q.path("remote", msg).write_bytes(b"Dx@remote.example\0Xjunk\0Ty@remote.example\0")
    q.path("local", msg).unlink()
    dump = ops.Target(LocalConnector("l"), str(q.queue), STOPPED).read(step="read queue")
    [problem] = check(dump, detect_layout(dump)).problems
    assert problem.message.endswith("deleting the message deletes them): mend the file by "
                                    "hand (with qmail-send stopped, remove that record: "
                                    "qmail-send then finishes the message and sends the "
                                    "bounce), or delete the message (mailplan queue delete) "
                                    "after looking at it"), problem.message


# -- show of an id with files but no mess file -------------------------------------------------

def test_show_of_an_orphan_says_what_is_there(tmp_path):
    """show said "no message" for an id whose info/, local/ and remote/ files are still
    in the queue (its mess file gone), hiding what check calls an orphan."""
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("a@example.com", local=("example.com-bob@example.com",))
    other = q.add("b@example.com", remote=("x@remote.example",))
    q.path("mess", msg).unlink()
    result = run("show", "local", "--queue-dir", str(q.queue), str(msg))
    assert result.exit_code == 0, result.output
    split = msg % 23
    files = f"info/{split}/{msg}, local/{split}/{msg}"
    assert result.output == (
        f"no message {msg} (no mess file under that id); its files: {files}\n"
        f"check: orphan: {msg}: files without a mess file: {files}\n"), result.output
    assert str(other) not in result.output
    unknown = run("show", "local", "--queue-dir", str(q.queue), "4242")
    assert unknown.exit_code == 1 and "no message 4242 in the queue" in unknown.output


def test_show_of_an_id_whose_mess_file_has_another_name(tmp_path):
    """A restored mess file (named N, inode M) keeps its info/ and local/ files under M:
    show M finds no mess file named M, and says what check says of the message."""
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("a@example.com", local=("example.com-bob@example.com",))
    renamed = msg + 23 * 1000  # same split directory, a name no file has
    os.rename(q.path("mess", msg), q.path("mess", renamed))
    result = run("show", "local", "--queue-dir", str(q.queue), str(msg))
    assert result.exit_code == 0, result.output
    assert f"check: inode-mismatch: mess/{msg % 23}/{renamed}: message {renamed}: its mess " \
        f"file has inode {msg}" in result.output, result.output
    assert "orphan" not in result.output


# -- a directory named 07 is none of qmail's ----------------------------------------------------

def test_a_split_name_with_a_leading_zero_is_an_extra_directory(tmp_path):
    """qmail names split directories with fmt_ulong (mess/7, never mess/07) and opens
    only those: mess/07 is a directory it does not use, not one "beyond the split
    count"; todo/00 made the tree look like a broken big-todo one, stopping check."""
    q = QueueBuilder(tmp_path / "qmail")
    q.add("a@example.com", remote=("x@remote.example",))
    (q.queue / "mess" / "07").mkdir()
    (q.queue / "todo" / "00").mkdir()
    checked = run("check", "local", "--queue-dir", str(q.queue))
    assert checked.exit_code == 2, checked.output
    assert sorted(checked.output.splitlines()) == [
        "2 problem(s), 2 repairable with --repair",
        "extra-dir: mess/07: directory qmail does not use",
        "extra-dir: todo/00: directory qmail does not use"], checked.output
    repaired = run("check", "local", "--queue-dir", str(q.queue), "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert not (q.queue / "mess" / "07").exists() and (q.queue / "mess" / "7").is_dir()
