"""The queue click group standalone: help texts, host strings, options; pure check cases."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from queue_builder import SPLIT, QueueBuilder

from mailplan.connectors.local import LocalConnector
from mailplan.errors import MailplanError
from mailplan.queue import ops
from mailplan.queue.check import check, repair_actions
from mailplan.queue.cli import queue as queue_cli
from mailplan.queue.control import Control
from mailplan.queue.dump import read_queue
from mailplan.queue.filters import Pattern, parse_age
from mailplan.queue.grouping import detect_layout
from mailplan.queue.host import HostOptions, connect_host, host_entry
from mailplan.queue.layout import Layout

COMMANDS = ["stat", "list", "show", "delete", "check", "flush"]


def test_every_command_has_help_with_an_example():
    assert sorted(queue_cli.commands) == sorted(COMMANDS)
    for name in COMMANDS:
        result = CliRunner().invoke(queue_cli, [name, "--help"])
        assert result.exit_code == 0
        command = queue_cli.commands[name]
        assert command.help and len(command.help) > 20, name
        assert "Example" in result.output and f"mailplan queue {name} " in result.output, name
        assert "--queue-dir" in result.output and "--identity" in result.output


def test_delete_and_check_have_the_control_options():
    for name in ("delete", "check"):
        params = {p.name for p in queue_cli.commands[name].params}
        assert {"control", "service", "unit", "status_cmd", "stop_cmd", "start_cmd"} <= params
    assert {"execute", "match", "bounces", "regex"} <= \
        {p.name for p in queue_cli.commands["delete"].params}


def test_group_can_be_added_to_another_cli():
    @click.group()
    def main() -> None:
        """Main."""

    main.add_command(queue_cli)
    result = CliRunner().invoke(main, ["queue", "stat", "--help"])
    assert result.exit_code == 0 and "qmail-qstat" in result.output


@pytest.mark.parametrize("text", ["mx1", "ssh://", "ssh://host:notaport", "ssh://u:pw@host",
                                  "http://host",
                                  "ssh://root@host:99999",
                                  # urlsplit raised ValueError (a traceback) for this one
                                  "ssh://root@[::1",
                                  # these connected elsewhere than written: port 22 for
                                  # port 0, the host without what follows it
                                  "ssh://root@host:0", "ssh://root@host?port=2222",
                                  "ssh://root@host#2222", "ssh://root@[::1]2222"])
def test_bad_host_strings(text):
    with pytest.raises(MailplanError) as caught:
        connect_host(text, HostOptions())
    assert "connection string" in str(caught.value) or "unknown host" in str(caught.value)


@pytest.mark.parametrize(("text", "entry"), [
    ("ssh://root@[::1]:2222", {"address": "::1", "user": "root", "port": 2222}),
    ("ssh://[2001:db8::1]", {"address": "2001:db8::1"}),
    ("ssh://admin@mx1.example.com/", {"address": "mx1.example.com", "user": "admin"}),
])
def test_good_host_strings(text, entry):
    assert host_entry(text, HostOptions()) == entry


def test_a_user_name_is_percent_decoded_as_openssh_does():
    """`ssh://j%C3%BCrgen@host` logged in as the literal `j%C3%BCrgen`; OpenSSH decodes
    an ssh:// URI's user, and so does init --source/--target, which shares the parser."""
    assert host_entry("ssh://j%C3%BCrgen@mx1:2222", HostOptions()) == {
        "address": "mx1", "user": "jürgen", "port": 2222}
    assert host_entry("ssh://mail%2Dadmin@mx1", HostOptions())["user"] == "mail-admin"
    conn = connect_host("ssh://j%C3%BCrgen@mx1", HostOptions())
    assert conn._conn.user == "jürgen"  # type: ignore[attr-defined]


@pytest.mark.parametrize("user", ["a%40b", "a@b", "a%3Apw", "a%2Fb", "a%20b", "a%09b",
                                  "a%0Ab", "a%00", "a%1B%5B2J", "a%7F", "a%C2%85",
                                  "a%C2%A0b", "a%FFb", "a%C3"])
def test_a_decoded_user_name_no_login_has_is_refused(user):
    """Decoded, these hold a control character, whitespace, '@', ':' or '/', or bytes
    that are no UTF-8: no login name has them."""
    text = f"ssh://{user}@mx1"
    with pytest.raises(MailplanError) as caught:
        host_entry(text, HostOptions())
    assert str(caught.value).startswith(f"cannot read the connection string {text!r}")
    with pytest.raises(MailplanError, match="cannot read the connection string"):
        connect_host(text, HostOptions())


def test_a_spec_given_as_the_host_is_told_how_to_name_its_target():
    """`mailplan queue stat migration.yaml`: the hint writes the command that reads the
    spec's target."""
    with pytest.raises(MailplanError) as caught:
        connect_host("my migration.yaml", HostOptions())
    assert caught.value.hint.startswith("for the spec's target: target --spec "
                                        "'my migration.yaml'; or give `local`")


def test_host_strings():
    assert isinstance(connect_host("local", HostOptions()), LocalConnector)
    conn = connect_host("ssh://admin@mx1.example.com:2222", HostOptions())
    assert conn.name == "mx1.example.com" and conn._address == "mx1.example.com:2222"


def test_host_from_a_spec(tmp_path):
    spec = tmp_path / "m.yaml"
    q = QueueBuilder(tmp_path / "qmail")
    q.add("a@example.net", remote=("x@remote.example",))
    spec.write_text("version: 1\nhosts: {old: {local: true}, new: {local: true}}\n"
                    "source: {host: old}\n"
                    f"target: {{host: new, qmail_dir: {tmp_path / 'qmail'}}}\n"
                    "domains:\n  example.com:\n    default_quota: 1G\n")
    options = HostOptions(spec=str(spec))
    assert connect_host("new", options).name == "new"
    assert connect_host("target", options).name == "new"
    assert connect_host("source", options).name == "old"
    with pytest.raises(MailplanError, match="not in"):
        connect_host("other", options)
    # the target's queue is found through the spec's qmail_dir
    result = CliRunner().invoke(queue_cli, ["stat", "target", "--spec", str(spec)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("messages in queue: 1\n")
    # the connection options have no effect with a spec (its hosts entry says how the
    # host is reached): refused, not silently ignored
    for extra in (["--sudo"], ["--identity", "k"], ["--known-hosts", "kh"],
                  ["--accept-new-host-key"]):
        result = CliRunner().invoke(queue_cli, ["stat", "target", "--spec", str(spec), *extra])
        assert result.exit_code != 0, extra
        assert f"{extra[0]}: not used with --spec" in result.output, result.output


def test_commands_that_write_refuse_the_specs_source_host(tmp_path):
    """mailplan never writes to the source: with a spec, --repair and --execute on its
    source host are refused before anything is contacted; reading it, and writing on a
    host that is also the target, are not refused."""
    queue_dir = tmp_path / "qmail" / "queue"
    spec = tmp_path / "m.yaml"
    spec.write_text("version: 1\nhosts: {old: {local: true}, new: {local: true}}\n"
                    "source: {host: old}\ntarget: {host: new}\n"
                    "domains:\n  example.com:\n    default_quota: 1G\n")
    runner = CliRunner()
    for host in ("source", "old"):
        for args in (["check", host, "--repair"], ["delete", host, "--bounces", "--execute"]):
            result = runner.invoke(queue_cli, [*args, "--spec", str(spec),
                                               "--queue-dir", str(queue_dir)])
            assert result.exit_code != 0, args
            assert "never writes to the source" in result.output, result.output
    assert not queue_dir.exists()  # repair would have made the whole tree
    dry = runner.invoke(queue_cli, ["delete", "source", "--bounces", "--spec", str(spec),
                                    "--queue-dir", str(queue_dir)])
    assert "never writes" not in dry.output
    spec.write_text(spec.read_text().replace("target: {host: new}", "target: {host: old}"))
    both = runner.invoke(queue_cli, ["check", "source", "--repair", "--spec", str(spec),
                                     "--queue-dir", str(queue_dir)])
    assert "never writes" not in both.output


def test_custom_control_needs_its_three_commands():
    with pytest.raises(MailplanError, match="--status-cmd"):
        Control("custom", status_cmd="true")
    with pytest.raises(MailplanError, match="unknown"):
        Control("init.d")


def test_control_commands_are_quoted():
    svc = Control("svc", service="/service/qmail send")
    assert svc.stop() == "svc -d '/service/qmail send'"
    assert "pgrep -x qmail-send" in svc.status()
    assert Control("systemctl", unit="qmail").start() == "systemctl start qmail"
    assert Control().stop() is None and Control().status() == "pgrep -x qmail-send >/dev/null"


@pytest.mark.parametrize("text,seconds", [("90", 90), ("15m", 900), ("2h", 7200),
                                          ("3d", 259200), ("1w", 604800)])
def test_ages(text, seconds):
    assert parse_age(text) == seconds


def test_bad_age_and_regex():
    with pytest.raises(MailplanError):
        parse_age("yesterday")
    with pytest.raises(MailplanError, match="regular expression"):
        Pattern("(", regex=True)


def test_process_method_deletes_when_qmail_send_is_not_running(tmp_path):
    q = QueueBuilder(tmp_path)
    msg = q.add("a@example.net", remote=("x@remote.example",))
    result = CliRunner().invoke(queue_cli, ["delete", "local", "--queue-dir", str(q.queue),
                                            str(msg), "--execute"])
    assert result.exit_code == 0, result.output
    assert q.files() == ["lock/sendmutex", "lock/tcpto", "lock/trigger"]


@pytest.mark.parametrize("field", ["from", "to", "subject"])
def test_delete_refuses_an_empty_match_pattern(tmp_path, field):
    """`--match from ''`, written for the bounces' empty envelope sender, chose every
    message (each text contains ''): with --execute the whole queue went."""
    q = QueueBuilder(tmp_path)
    mail = q.add("alice@example.net", remote=("x@remote.example",))
    bounce = q.add("", remote=("alice@example.net",))
    before = q.files()
    result = CliRunner().invoke(queue_cli, ["delete", "local", "--queue-dir", str(q.queue),
                                            "--match", field, "", "--execute"])
    assert result.exit_code == 1
    assert "an empty pattern matches every message; nothing was deleted" in result.output
    assert "--bounces" in result.output
    assert q.files() == before and q.path("mess", mail).exists()
    # what the hint says does what it says
    bounces = CliRunner().invoke(queue_cli, ["delete", "local", "--queue-dir", str(q.queue),
                                             "--bounces", "--json"])
    assert list(json.loads(bounces.output)["would_remove"]) == [str(bounce)]
    every = CliRunner().invoke(queue_cli, ["delete", "local", "--queue-dir", str(q.queue),
                                           "--match", "from", "^", "--regex", "--json"])
    assert sorted(json.loads(every.output)["would_remove"]) == sorted([str(mail),
                                                                      str(bounce)])


def test_delete_chooses_by_age_with_match_and_bounces(tmp_path):
    """"Delete the bounces older than 3 days" needed a `list --bounces --older-than 3d`
    and then its ids: delete had no age options. They join --match and --bounces (all
    must hold), keep delete a dry run without --execute and leave ids as they are."""
    q = QueueBuilder(tmp_path)
    day = 86400
    old_bounce = q.add("", remote=("alice@example.net",), age=4 * day)
    young_bounce = q.add("", remote=("bob@example.net",), age=day)
    old_mail = q.add("carol@example.net", remote=("x@remote.example",), age=5 * day,
                     subject="offer")
    young_mail = q.add("dave@example.net", remote=("y@remote.example",), age=60,
                       subject="offer")
    runner = CliRunner()

    def would_remove(*args: str) -> list[str]:
        result = runner.invoke(queue_cli, ["delete", "local", "--queue-dir", str(q.queue),
                                           *args, "--json"])
        assert result.exit_code == 0, result.output
        return sorted(json.loads(result.output)["would_remove"])

    assert would_remove("--bounces", "--older-than", "3d") == [str(old_bounce)]
    assert would_remove("--bounces", "--newer-than", "3d") == [str(young_bounce)]
    assert would_remove("--match", "subject", "offer", "--older-than", "2d") == [str(old_mail)]
    assert would_remove("--older-than", "2d", "--newer-than", "6d") == sorted(
        [str(old_bounce), str(old_mail)])
    assert would_remove("--newer-than", "1h") == [str(young_mail)]
    # an id is deleted as given, whatever the filters choose
    assert would_remove(str(young_mail), "--bounces", "--older-than", "3d") == sorted(
        [str(old_bounce), str(young_mail)])
    before = q.files()
    dry = runner.invoke(queue_cli, ["delete", "local", "--queue-dir", str(q.queue),
                                    "--bounces", "--older-than", "3d"])
    assert dry.exit_code == 0 and f"would remove message {old_bounce}:" in dry.output
    assert q.files() == before
    done = runner.invoke(queue_cli, ["delete", "local", "--queue-dir", str(q.queue),
                                     "--bounces", "--older-than", "3d", "--execute"])
    assert done.exit_code == 0, done.output
    assert not q.path("mess", old_bounce).exists()
    assert all(q.path("mess", i).exists() for i in (young_bounce, old_mail, young_mail))
    bad = runner.invoke(queue_cli, ["delete", "local", "--queue-dir", str(q.queue),
                                    "--older-than", "3 days"])
    assert bad.exit_code == 1 and "cannot read the age '3 days'" in bad.output
    assert q.path("mess", young_bounce).exists()


def test_delete_by_age_leaves_out_partial_messages(tmp_path):
    """As --match and --bounces: an age alone never takes a half-written message unless
    --include-partial (qmail-queue may still be writing it)."""
    q = QueueBuilder(tmp_path)
    partial = q.add("a@example.net", preprocessed=False, todo=False, age=7200)
    queued = q.add("b@example.net", remote=("x@remote.example",), age=7200)
    base = ["delete", "local", "--queue-dir", str(q.queue), "--older-than", "1h", "--json"]
    result = CliRunner().invoke(queue_cli, base)
    data = json.loads(result.output)
    assert list(data["would_remove"]) == [str(queued)]
    assert data["partial_left_out"] == [partial]
    taken = json.loads(CliRunner().invoke(queue_cli, [*base, "--include-partial"]).output)
    assert sorted(taken["would_remove"]) == sorted([str(partial), str(queued)])


def test_agent_refuses_paths_outside_the_queue(tmp_path):
    q = QueueBuilder(tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    outcomes = ops.ctl_apply(ops.Target(LocalConnector("l"), str(q.queue)),
                             [{"op": "remove", "path": "../victim"},
                              {"op": "remove", "path": "/etc/passwd"}], "test")
    assert [o["ok"] for o in outcomes] == [False, False]
    assert "outside the queue" in outcomes[0]["error"] and victim.exists()


# -- pure check cases on small trees --------------------------------------------------------

def read(q: QueueBuilder):
    return read_queue(LocalConnector("l"), str(q.queue))


def test_stale_leftovers_are_judged_by_access_time_too(tmp_path):
    """qmail-send and qmail-clean remove a half-written message and a pid file once
    their atime is 36 hours old; mailplan waits until both atime and mtime are (a
    file qmail keeps is never removed here), and its own read leaves atime alone."""
    q = QueueBuilder(tmp_path)
    now = int(time.time())
    msg = q.add("a@example.net", preprocessed=False, todo=False, age=2 * 86400)
    mess = q.path("mess", msg)
    pid = q.queue / "pid" / "4711"
    pid.write_text("")
    for path in (mess, pid):
        os.utime(path, (now - 3600, now - 3 * 86400))  # read an hour ago, written long ago
    report = check(read(q), Layout())
    assert [p.code for p in report.problems] == []
    assert any(f"message {msg} is being queued" in n for n in report.notes)
    # old on both counts: stale, as qmail itself would find it
    for path in (mess, pid):
        os.utime(path, (now - 2 * 86400, now - 3 * 86400))
    codes = sorted(p.code for p in check(read(q), Layout()).problems)
    assert codes == ["stale-partial", "stale-pid"]
    # written recently, last read long ago (a noatime mount): not stale either
    for path in (mess, pid):
        os.utime(path, (now - 3 * 86400, now - 60))
    assert check(read(q), Layout()).problems == []


@pytest.mark.skipif(not hasattr(os, "O_NOATIME"), reason="a kernel without O_NOATIME")
def test_queue_read_leaves_access_times_alone(tmp_path):
    """A read of the queue (headers, or a whole message) must not put qmail's clean-up of
    a leftover off: relatime would move an atime older than the mtime to now."""
    q = QueueBuilder(tmp_path)
    msg = q.add("a@example.net", preprocessed=False, todo=False, age=2 * 86400)
    mess = q.path("mess", msg)
    old = int(time.time()) - 2 * 86400
    os.utime(mess, (old - 60, old))
    read(q)
    read_queue(LocalConnector("l"), str(q.queue), only_id=msg, mess="full")
    assert int(mess.stat().st_atime) == old - 60


def test_misplaced_file_is_moved_to_its_split(tmp_path):
    q = QueueBuilder(tmp_path)
    msg = q.add("a@example.net", remote=("x@remote.example",))
    wrong = q.queue / "info" / str((msg + 1) % SPLIT) / str(msg)
    q.path("info", msg).rename(wrong)
    report = check(read(q), Layout())
    assert [p.code for p in report.problems] == ["misplaced"]
    ops.ctl_apply(ops.Target(LocalConnector("l"), str(q.queue)), repair_actions(report), "t")
    assert q.path("info", msg).exists() and not wrong.exists()
    assert check(read(q), Layout()).problems == []


def test_orphan_todo_and_malformed_info(tmp_path):
    q = QueueBuilder(tmp_path)
    msg = q.add("a@example.net", remote=("x@remote.example",))
    q.path("info", msg).write_bytes(b"garbage")
    todo = q.queue / "todo" / "77"
    todo.write_bytes(b"u0\0p1\0Fa@b\0Tc@d\0")
    os.chown(todo, q.queue.stat().st_uid, 0)
    report = check(read(q), Layout())
    codes = {p.code: p for p in report.problems}
    assert set(codes) == {"malformed", "orphan"}
    assert not codes["malformed"].repairable and "mailplan queue delete" in \
        codes["malformed"].message


def test_big_todo_is_detected(tmp_path):
    q = QueueBuilder(tmp_path)
    for area in ("todo", "intd"):
        for n in range(SPLIT):
            d = q.queue / area / str(n)
            d.mkdir()
            os.chmod(d, 0o750 if area == "todo" else 0o700)
            os.chown(d, (q.queue / area).stat().st_uid, (q.queue / area).stat().st_gid)
    dump = read(q)
    layout = detect_layout(dump)
    assert layout.big_todo and layout.path("todo", 47) == "todo/1/47"
    assert check(dump, layout).problems == []


def test_split_mismatch_is_not_repaired(tmp_path: Path):
    q = QueueBuilder(tmp_path)
    (q.queue / "info" / "30").mkdir()
    report = check(read(q), Layout())
    assert [p.code for p in report.problems][-1] == "split-mismatch"
    assert not report.problems[-1].repairable


def test_counting_reads_no_message_text(tmp_path):
    q = QueueBuilder(tmp_path)
    msg = q.add("a@example.net", remote=("x@remote.example",), body="secret body\n")
    mess = f"mess/{msg % SPLIT}/{msg}"
    assert read_queue(LocalConnector("l"), str(q.queue), mess="none").entries[mess].data == b""
    headers = read_queue(LocalConnector("l"), str(q.queue)).entries[mess].data
    assert b"Subject: test" in headers and b"secret" not in headers
    full = read_queue(LocalConnector("l"), str(q.queue), only_id=msg, mess="full")
    assert full.entries[mess].data.endswith(b"secret body\n")
    assert {e.parts[-1] for e in full.entries.values() if e.kind == "f"} == {str(msg)}


def test_a_young_stale_partial_is_not_said_to_be_abandoned(tmp_path):
    """check with a --stale-after under 24 h said of a half-written message 2 h old
    that "qmail-queue died while queueing it": qmail-queue may write one for 24 h
    (DEATH in qmail-queue.c). Only past that is it known to have died."""
    q = QueueBuilder(tmp_path)
    young = q.add("a@example.net", preprocessed=False, todo=False, age=7200)
    old = q.add("b@example.net", preprocessed=False, todo=False, age=30 * 3600)
    report = check(read(q), Layout(), stale_after=3600)
    said = {p.path: p.message for p in report.problems if p.code == "stale-partial"}
    young_says = said[str(q.path("mess", young).relative_to(q.queue))]
    assert "died" not in young_says
    assert "older than --stale-after 3600s" in young_says
    assert "still being written: qmail-queue may take up to 24 h" in young_says
    assert young_says.startswith("half-written message (mess without info or todo, 72")
    old_says = said[str(q.path("mess", old).relative_to(q.queue))]
    assert old_says == ("half-written message (mess without info or todo, 30 h old): "
                        "qmail-queue died while queueing it")
    # --repair refuses a --stale-after under 24 h: the young one is not counted as
    # repairable (the count the report prints), the old one is
    repairable = {p.path: p.repairable for p in report.problems if p.code == "stale-partial"}
    assert repairable == {str(q.path("mess", young).relative_to(q.queue)): False,
                          str(q.path("mess", old).relative_to(q.queue)): True}


def test_queue_root_and_stale_partial_with_leftovers(tmp_path):
    q = QueueBuilder(tmp_path)
    os.chmod(q.queue, 0o755)
    msg = q.add("a@example.net", preprocessed=False, todo=False, age=2 * 86400)
    remote = q.path("remote", msg)
    remote.write_bytes(b"Tx@remote.example\0")
    os.chown(remote, *(q.queue / "remote").stat()[4:6])
    os.chmod(remote, 0o600)
    report = check(read(q), Layout())
    assert sorted(p.code for p in report.problems) == ["mode", "stale-partial"]
    ops.ctl_apply(ops.Target(LocalConnector("l"), str(q.queue)), repair_actions(report), "t")
    assert q.queue.stat().st_mode & 0o777 == 0o750
    assert not remote.exists() and not q.path("mess", msg).exists()
    assert check(read(q), Layout()).problems == []


def _hostile_ssh_server(banner: bytes):  # type: ignore[no-untyped-def]
    """A TCP server on localhost answering every connection with ``banner``; its port."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(banner)
                conn.recv(4096)

    threading.Thread(target=serve, daemon=True).start()
    return server


def test_an_error_quoting_what_a_host_said_is_escaped(tmp_path):
    # the SSH server's version string (sent before any host key is checked) comes back
    # in the connection error: it reaches the screen escaped, as the main CLI's errors
    server = _hostile_ssh_server("SSH-\x1b]0;owned\x07\x9b2J-x\r\n".encode())
    try:
        port = server.getsockname()[1]
        result = CliRunner().invoke(queue_cli, [
            "stat", f"ssh://root@127.0.0.1:{port}", "--known-hosts",
            str(tmp_path / "known_hosts")])
    finally:
        server.close()
    assert result.exit_code == 1, result.output
    assert "Error: host " in result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\x9b" not in result.output
    assert "\\x1b]0;owned\\x07\\x9b2J" in result.output


def test_list_json_carries_no_terminal_control_raw(tmp_path):
    # JSON escapes C0 controls itself; the C1 CSI (U+009B) and bidi overrides of a
    # crafted subject or sender are written as \u escapes too, the data unchanged
    import json

    q = QueueBuilder(tmp_path)
    q.add("evil\u202e@example.net", remote=("x@remote.example",),
          subject="pay\u009b2Jnow\u202e")
    result = CliRunner().invoke(queue_cli, ["list", "local", "--queue-dir", str(q.queue),
                                            "--json"])
    assert result.exit_code == 0, result.output
    assert "\u009b" not in result.output and "\u202e" not in result.output
    (doc,) = json.loads(result.output)
    assert doc["subject"] == "pay\u009b2Jnow\u202e" and doc["sender"] == "evil\u202e@example.net"


def test_a_directory_that_is_no_queue_is_refused(tmp_path):
    """--queue-dir naming qmail's own directory (or any directory without the queue's
    mess/, todo/, info/, ...) is refused by every command: before, stat counted 0
    messages (an admin watching the queue drain would believe it had), and check
    --repair would have chmod'ed the directory to 0750 and built a queue tree in it."""
    qmail = tmp_path / "qmail"
    (qmail / "control").mkdir(parents=True)
    (qmail / "control" / "me").write_text("mx1.example.com\n")
    os.chmod(qmail, 0o755)
    runner = CliRunner()
    for args in (["stat"], ["list"], ["show", "1"], ["delete", "--bounces", "--execute"],
                 ["check"], ["check", "--repair"]):
        result = runner.invoke(queue_cli, [args[0], "local", *args[1:],
                                           "--queue-dir", str(qmail)])
        assert result.exit_code == 1, (args, result.output)
        assert f"{qmail} is not a qmail queue: it has none of the queue's directories" \
            in result.output, (args, result.output)
    assert sorted(p.name for p in qmail.iterdir()) == ["control"]
    assert qmail.stat().st_mode & 0o777 == 0o755


def test_a_wrong_queue_dir_s_hint_names_the_path_given(tmp_path):
    """With --queue-dir naming no queue, the hint said "pass --queue-dir if qmail lives
    elsewhere" to one who had passed it: it names the path given, says it holds no qmail
    queue and what was expected there. A queue directory from the spec's qmail_dir says
    so and points at target.qmail_dir."""
    empty = tmp_path / "empty"
    empty.mkdir()
    runner = CliRunner()
    for wrong in (tmp_path / "wrong" / "queue", tmp_path / "missing", empty):
        result = runner.invoke(queue_cli, ["stat", "local", "--queue-dir", str(wrong)])
        assert result.exit_code == 1, result.output
        text = " ".join(result.output.split())
        assert f"hint: --queue-dir {wrong} holds no qmail queue: it must name qmail's " \
            "queue directory (QMAILDIR/queue, /var/qmail/queue by default), the one with " \
            "mess/, todo/, info/, ...; check the path given" in text, text
        assert "pass --queue-dir" not in text, text
    spec = tmp_path / "m.yaml"
    spec.write_text("version: 1\nhosts: {old: {local: true}, new: {local: true}}\n"
                    "source: {host: old}\n"
                    f"target: {{host: new, qmail_dir: {tmp_path / 'wrong'}}}\n"
                    "domains:\n  example.com:\n    default_quota: 1G\n")
    result = runner.invoke(queue_cli, ["stat", "target", "--spec", str(spec)])
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert f"hint: {tmp_path / 'wrong' / 'queue'} (the spec's target.qmail_dir + /queue) " \
        "holds no qmail queue" in text and "correct target.qmail_dir in the spec" in text, text


def test_delete_json_names_a_dry_run_s_files_would_remove(tmp_path):
    """A dry run's JSON listed its files under "removed" (with "executed": false), which
    a script could take for files that are gone: they are "would_remove" now, and
    "removed" is there only with --execute."""
    import json

    q = QueueBuilder(tmp_path)
    msg = q.add("spam@bad.example", remote=("x@remote.example",))
    files = sorted(str(p.relative_to(q.queue)) for p in q.queue.rglob(str(msg)))
    runner = CliRunner()
    base = ["delete", "local", "--queue-dir", str(q.queue), str(msg), "--json"]

    dry = runner.invoke(queue_cli, base)
    assert dry.exit_code == 0, dry.output
    doc = json.loads(dry.output)
    assert "removed" not in doc and (doc["executed"], doc["dry_run"]) == (False, True)
    assert sorted(doc["would_remove"][str(msg)]) == files
    assert q.path("mess", msg).exists()

    done = runner.invoke(queue_cli, [*base, "--execute"])
    assert done.exit_code == 0, done.output
    doc = json.loads(done.output)
    assert "would_remove" not in doc and (doc["executed"], doc["dry_run"]) == (True, False)
    assert sorted(doc["removed"][str(msg)]) == files
    assert not q.path("mess", msg).exists()

    # --execute choosing nothing: nothing removed, and still no dry run
    none = runner.invoke(queue_cli, ["delete", "local", "--queue-dir", str(q.queue),
                                     "--bounces", "--execute", "--json"])
    doc = json.loads(none.output)
    assert (doc["removed"], doc["executed"], doc["dry_run"]) == ({}, False, False)
