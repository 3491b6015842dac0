"""The host's Python: named in the spec, checked at plan time, and a missing or too old
one reported as such (with a hint, never as a lost connection) by the plan, the writer
and the queue reader; the programs themselves need nothing newer than the minimum."""

from __future__ import annotations

import ast
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from migration import (
    SourceAccount,
    Target,
    install_target,
    mailplan,
    make_source,
    tree_digest,
    unique_domain,
    write_spec,
)
from queue_builder import QueueBuilder

from mailplan import interpreter, target_lock
from mailplan.connectors.local import LocalConnector
from mailplan.errors import ConnectionLost, HostError, StepFailed
from mailplan.mail.agent_client import PROGRAM as WRITER
from mailplan.mail.agent_client import agent_command, agent_source
from mailplan.mail.writer.bundle import PARTS, part_path
from mailplan.queue.dump import read_queue
from mailplan.queue.model import messages
from mailplan.queue.remote import PARTS as QUEUE_PARTS
from mailplan.shell import portable

REPO = Path(__file__).resolve().parent.parent
#: the programs' files: the writer's parts (the writer as sent joins them) and the queue
#: reader's (run one after the other)
AGENTS = [*map(part_path, PARTS), *(REPO / "mailplan/queue" / name for name in QUEUE_PARTS)]


def maildir(target: Target, address: str) -> Path:
    udir = target.tool("vuserinfo", "-d", address).stdout.decode().split("\n")[0]
    return Path(udir) / "Maildir"


MESSAGE = b"From s@x.example Mon Nov  2 10:00:00 2026\nFrom: s\nSubject: m\n\nhello\n\n"


def test_the_programs_need_nothing_newer_than_the_minimum_python(tmp_path):
    """vermin reads every construct, module and function the two programs use (the writer
    as sent, and each of its parts) and knows in which Python each appeared: nothing may be
    newer than MIN_VERSION."""
    wanted = ".".join(map(str, interpreter.MIN_VERSION))
    writer = tmp_path / "writer.py"
    writer.write_text(agent_source())
    lock = tmp_path / "lock.py"  # the target's apply lock, as it runs there
    lock.write_text(interpreter.guard(target_lock.PROGRAM_NAME) + target_lock.PROGRAM)
    res = subprocess.run([sys.executable, "-c", "import sys; from vermin.main import main; "
                          "sys.exit(main())", "--no-tips", "--violations", f"-t={wanted}-",
                          *map(str, [writer, lock, *AGENTS])], capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_version_check_parses_where_the_programs_do_not():
    """The check is compiled by the old interpreter before anything else: it must parse
    there (the oldest grammar ast knows), where the programs themselves do not."""
    ast.parse(interpreter.guard(WRITER), feature_version=(3, 4))
    with pytest.raises(SyntaxError):
        ast.parse(agent_source(), feature_version=(3, 4))


def fake_python(tmp_path: Path, version: tuple[int, int, int] | None) -> Path:
    """An interpreter named ``python3`` that runs the real one, saying it is ``version``
    to the code it runs (None: one that fails whatever it is asked)."""
    path = tmp_path / "fakebin" / "python3"
    path.parent.mkdir(exist_ok=True)
    if version is None:
        path.write_text("#!/bin/sh\necho 'not the python you want' >&2\nexit 99\n")
    else:
        said = f"import sys; sys.version_info = {(*version, 'final', 0)!r}"
        # "$@" is -I -S -c CODE ARGS...: the code gets the line above first
        path.write_text(f'#!/bin/sh\na=$1 b=$2 c=$3 code=$4; shift 4\nexec {sys.executable} '
                        f'"$a" "$b" "$c" "{said}\n$code" "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def one_user(tmp_path: Path, python: str | None) -> tuple[Path, Target, str]:
    src = make_source(tmp_path / "source", [SourceAccount("ursula", 1000, "Ursula", "UrsPw1")])
    (src / "var/spool/mail/ursula").write_bytes(MESSAGE)
    target = install_target(tmp_path / "target")
    domain = unique_domain()
    host = {"local": True} if python is None else {"local": True, "python": python}
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target, target_host=host,
                      domains={domain: {"import": {"uid_min": 1000}}})
    return spec, target, domain


@pytest.mark.parametrize("kind", ["missing", "too old"])
def test_a_plan_with_mail_to_import_says_when_the_targets_python_cannot_run_the_writer(
        tmp_path, kind):
    python = "/nonexistent/python3" if kind == "missing" else str(
        fake_python(tmp_path, (3, 6, 15)))
    spec, target, _domain = one_user(tmp_path, python)
    before = tree_digest(Path(target.vpopmail_dir))
    for command in (["plan", str(spec)], ["apply", str(spec), "--auto-approve"]):
        res = mailplan(*command)
        assert res.returncode != 0, res.stdout
        # apply's first program on the target is its apply lock (mailplan.target_lock)
        program = "Maildir writer" if command[0] == "plan" else "apply lock"
        said = ("/nonexistent/python3 not found on this host" if kind == "missing"
                else f"is Python 3.6; mailplan's {program} needs Python 3.7 or newer")
        assert said in res.stderr, res.stderr
        assert "hosts.newmail.python" in res.stderr and "Traceback" not in res.stderr
    assert tree_digest(Path(target.vpopmail_dir)) == before  # nothing made, not even users


def test_the_writer_runs_with_the_python_the_spec_names(tmp_path):
    """The login's PATH finds a python3 that fails; the spec names the right one."""
    spec, target, domain = one_user(tmp_path, sys.executable)
    bad = fake_python(tmp_path, None)
    env = {"PATH": f"{bad.parent}:{os.environ['PATH']}"}
    assert "not the python you want" in subprocess.run(
        "python3", shell=True, env=env, capture_output=True, text=True).stderr
    mailplan("apply", str(spec), "--auto-approve", env=env, check=True)
    inbox = maildir(target, f"ursula@{domain}")
    assert [f.read_bytes() for f in (inbox / "new").iterdir()] == [
        b"From: s\nSubject: m\n\nhello\n"]


def test_a_python_gone_by_the_apply_fails_the_import_with_a_hint_not_a_retry(tmp_path):
    """The plan found the interpreter, the apply's writer does not (removed in between):
    the import fails as a step (StepFailed, which apply does not retry), saying why,
    while the account steps before it are done."""
    from mailplan.apply import apply_plan
    from mailplan.engine import make_plan, state_path_for
    from mailplan.spec import load_spec
    from mailplan.state import State, locked

    spec_path, target, domain = one_user(tmp_path, None)
    spec = load_spec(spec_path)
    newmail = LocalConnector("newmail")
    with locked(state_path_for(spec)):
        state = State.load(state_path_for(spec))
        planned = make_plan(spec, state, {"oldmail": LocalConnector("oldmail"),
                                          "newmail": newmail})
        assert [c.kind for c in planned.plan.changes][-1] == "mailbox"
        newmail.python = "/nonexistent/python3"
        with pytest.raises(StepFailed) as info:
            apply_plan(planned, state, prune=False)
        planned.close()
    assert not isinstance(info.value, ConnectionLost)
    assert "/nonexistent/python3 not found on this host; mailplan's Maildir writer" in str(
        info.value)
    assert "hosts.newmail.python" in str(info.value.hint)
    inbox = maildir(target, f"ursula@{domain}")  # the user was made
    assert inbox.is_dir() and not list((inbox / "new").iterdir())


@pytest.mark.parametrize("kind", ["missing", "too old", "named"])
def test_the_queue_reader_runs_with_the_hosts_python_or_says_why_not(tmp_path, monkeypatch,
                                                                     kind):
    q = QueueBuilder(tmp_path)
    q.add("a@example.net", remote=("x@remote.example",))
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no python3 on the PATH at all
    python = {"missing": "/nonexistent/python3", "too old": str(fake_python(tmp_path, (3, 5, 2))),
              "named": sys.executable}[kind]
    conn = LocalConnector("qhost", python=python)
    if kind == "named":
        assert len(messages(read_queue(conn, str(q.queue)))) == 1
        return
    with pytest.raises(HostError) as info:
        read_queue(conn, str(q.queue))
    said = ("/nonexistent/python3 not found on this host" if kind == "missing"
            else "is Python 3.5; mailplan's qmail queue reader needs Python 3.7 or newer")
    assert said in str(info.value)
    assert "hosts.qhost.python" in str(info.value.hint)


def test_the_writers_command_line_fits_in_one_argument_of_a_linux_exec():
    """sshd hands the command line to the login shell as one argument of ``-c`` (under
    sudo, quoted once more), and the shell hands the writer's source to Python as one
    argument: Linux refuses any single argument over 32 pages (MAX_ARG_STRLEN, 128 KiB)
    with "Argument list too long", so the writer would not start at all. Over SSH the
    line goes in portable form, escaped (mailplan.shell.portable)."""
    limit = 32 * 4096
    line = agent_command("/opt/some/long/path/to/python3")
    for sudo in (False, True):
        sent = LocalConnector("t", sudo=sudo).wrap(line)
        assert len(sent.encode()) < limit * 0.75, "the writer's source is nearing the limit"
        assert len(portable(sent)) < limit * 0.75, "the writer's source is nearing the limit"
    assert len(agent_source().encode()) < limit * 0.75


def test_the_programs_name_files_in_utf8_also_under_a_latin1_locale(tmp_path):
    # a login whose LANG is Latin-1: the writer would name folders (folder_names: utf8)
    # in Latin-1, or fail on a character Latin-1 lacks; the bootstrap restarts it in
    # Python's UTF-8 mode. (The C locale is UTF-8 already: Python coerces it.)
    locales = tmp_path / "locales"
    locales.mkdir()
    made = subprocess.run(["localedef", "-c", "-i", "de_DE", "-f", "ISO-8859-1",
                           str(locales / "de_DE.ISO-8859-1")], capture_output=True,
                          check=False)
    assert (locales / "de_DE.ISO-8859-1").is_dir(), made.stderr  # locales is a test dependency
    env = {**os.environ, "LOCPATH": str(locales), "LC_ALL": "de_DE.ISO-8859-1"}
    code = "import sys; sys.stdout.write(sys.getfilesystemencoding() + ' ' + str(len(sys.argv)))"
    line = interpreter.launch(sys.executable, code, ["one", "two"], program="a test")
    res = subprocess.run(["/bin/sh", "-c", line], capture_output=True, env=env, check=False)
    assert res.stdout == b"utf-8 3", res.stdout + res.stderr
    plain = subprocess.run([sys.executable, "-I", "-S", "-c",
                            "import sys; sys.stdout.write(sys.getfilesystemencoding())"],
                           capture_output=True, env=env, check=False)
    assert plain.stdout == b"iso8859-1"  # what the programs saw before
