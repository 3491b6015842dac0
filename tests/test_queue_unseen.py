"""The queue agent's dump of a queue it cannot see whole, on a real queue tree
(:class:`queue_builder.QueueBuilder`) read by the real agent: what it may not stat, read
or list is named on stderr (the first 20, then how many more) and makes it exit 1, while
an object gone between listing and reading (qmail at work) is left out quietly.

A reader with less rights is the qmailq user (``as_qmailq``), which cannot list info/,
local/, remote/ nor bounce/ (qmails, 0700); a race with qmail is stood in for by a Python
whose ``lstat``, ``open`` and ``listdir`` find given names gone.
"""

from __future__ import annotations

import grp
import os
import pwd
import sys
from pathlib import Path

import pytest
from queue_builder import QueueBuilder
from test_queue_safety import as_qmailq, reachable

from mailplan.connectors.base import CommandResult
from mailplan.connectors.local import LocalConnector
from mailplan.queue import ops
from mailplan.queue.dump import parse_dump
from mailplan.queue.remote import run_agent

#: The areas the qmailq user may not list, in the order the dump walks them (after
#: todo/, intd/ and mess/, which it walks first).
HIDDEN = ("bounce", "info", "local")


def dump(q: QueueBuilder, python: str) -> CommandResult:
    return run_agent(LocalConnector("l", python=python), "dump", str(q.queue),
                     ("headers",), step="test")


def unseen_tree(tmp_path: Path, hidden_files: int) -> QueueBuilder:
    """A queue with ``hidden_files`` files in mess/3, which qmailq may list but not
    search (so not stat what is in it), and a mess file (mess/4/4) only root may read."""
    q = QueueBuilder(tmp_path / "qmail")
    (q.queue / "mess" / "4" / "4").write_bytes(b"Subject: s\n\nbody\n")
    os.chmod(q.queue / "mess" / "4" / "4", 0o600)
    for n in range(hidden_files):
        (q.queue / "mess" / "3" / f"x{n:02}").write_bytes(b"")
    os.chmod(q.queue / "mess" / "3", 0o640)
    reachable(tmp_path)
    return q


def test_what_cannot_be_stat_or_read_is_named_and_fails_the_dump(tmp_path):
    q = unseen_tree(tmp_path, 1)
    result = dump(q, as_qmailq(tmp_path))
    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == [
        f"cannot stat {q.queue / 'mess/3/x00'}: Permission denied",
        f"cannot read {q.queue / 'mess/4/4'}: Permission denied",
        *(f"cannot list {q.queue / area}: Permission denied" for area in HIDDEN),
        f"cannot list {q.queue / 'remote'}: Permission denied"]
    seen = parse_dump(result.stdout, str(q.queue)).entries
    assert "mess/3" in seen and "remote" in seen and "todo" in seen
    assert "mess/3/x00" not in seen and "mess/4/4" not in seen


def test_only_the_first_twenty_unseen_are_named(tmp_path):
    q = unseen_tree(tmp_path, 21)
    result = dump(q, as_qmailq(tmp_path))
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 1 and len(lines) == 21
    assert lines[0] == f"cannot stat {q.queue / 'mess/3/x00'}: Permission denied"
    assert lines[19] == f"cannot stat {q.queue / 'mess/3/x19'}: Permission denied"
    assert lines[20] == "... and 6 more"  # x20, mess/4/4, bounce/, info/, local/, remote/


def patched_python(wrapper: Path, patch: str) -> str:
    """A Python (written at ``wrapper``) that runs the agent's ``-c`` program as usual,
    after ``patch`` (code with ``os`` and ``sys`` imported)."""
    wrapper.write_text(f"""#!{sys.executable}
import os, sys
{patch}
at = sys.argv.index("-c")
code = sys.argv[at + 1]
sys.argv = ["-c", *sys.argv[at + 2:]]
exec(compile(code, "<string>", "exec"), {{"__name__": "__main__"}})
""")
    wrapper.chmod(0o755)
    return str(wrapper)


def racing_python(tmp_path: Path, gone: dict[str, str]) -> str:
    """A Python that runs the agent's ``-c`` program as usual but finds each object named
    in ``gone`` (a file or directory name -> the call that finds it gone: lstat, open or
    listdir) missing, as if qmail had removed it after the directory was listed."""
    return patched_python(tmp_path / "python-racing", f"""GONE = {gone!r}
def racing(name):
    real = getattr(os, name)
    def call(path, *args, **kwargs):
        if isinstance(path, str) and GONE.get(os.path.basename(path)) == name:
            raise FileNotFoundError(2, "No such file or directory", path)
        return real(path, *args, **kwargs)
    setattr(os, name, call)
for name in set(GONE.values()):
    racing(name)""")


def test_an_object_gone_meanwhile_is_left_out_quietly(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    msg = q.add("a@example.com", remote=("x@remote.example",))
    kept = q.add("b@example.com", remote=("y@remote.example",))
    result = dump(q, racing_python(tmp_path, {"tcpto": "lstat", str(msg): "open",
                                              "pid": "listdir"}))
    assert (result.returncode, result.stderr) == (0, b"")
    seen = parse_dump(result.stdout, str(q.queue)).entries
    for area in ("mess", "info", "remote"):
        assert str(q.path(area, msg).relative_to(q.queue)) not in seen
        assert str(q.path(area, kept).relative_to(q.queue)) in seen
    assert "lock/tcpto" not in seen and "lock/sendmutex" in seen and "pid" in seen


def qmail_send_at(tmp_path: Path, area: str, action: str) -> str:
    """A Python that runs the agent as usual, but the first time it lists the queue's
    ``area`` directory, first runs ``action`` (Python code with ``os`` at hand): what
    qmail-send does meanwhile, at that point of the walk."""
    return patched_python(tmp_path / f"python-qmail-send-{area}", f"""real = os.listdir
def listdir(path, *args, **kwargs):
    if isinstance(path, str) and os.path.basename(path) == {area!r} and \\
            os.path.basename(os.path.dirname(path)) == "queue" and not os.environ.get("DONE"):
        os.environ["DONE"] = "1"
        exec({action!r})
    return real(path, *args, **kwargs)
os.listdir = listdir""")


AREAS = ("bounce", "info", "intd", "local", "lock", "mess", "pid", "remote", "todo")


@pytest.mark.parametrize("area", AREAS)
@pytest.mark.parametrize("moves", ["preprocesses", "finishes"])
def test_a_message_qmail_send_moves_during_the_read_is_no_problem(tmp_path, area, moves):
    """qmail-send works on while a read-only check, stat or list walks the queue: it
    preprocesses a message (writes info/ and remote/, then removes todo/ and intd/) or
    finishes one (removes remote/, info/, then mess/). Whenever that happens during the
    walk, the message is read whole before or after, or as being queued: never as a
    problem of a healthy queue (the walk once read info/ before todo/, and took a message
    preprocessed meanwhile for one with recipients but no info file that qmail-send
    never delivers, and info/ before mess/, a message finished meanwhile for an orphan)."""
    q = QueueBuilder(tmp_path / "qmail")
    q.add("a@example.com", remote=("x@remote.example",))
    if moves == "preprocesses":
        msg = q.add("b@example.com", remote=("y@remote.example",), preprocessed=False)
        owner = (pwd.getpwnam("qmails").pw_uid, grp.getgrnam("qmail").gr_gid)
        action = "; ".join(
            [f"fd = os.open({str(q.path(a, msg))!r}, os.O_WRONLY | os.O_CREAT, 0o600); "
             f"os.write(fd, {data!r}); os.fchown(fd, *{owner!r}); os.close(fd)"
             for a, data in (("info", b"Fb@example.com\0"), ("remote", b"Ty@remote.example\0"))]
            + [f"os.unlink({str(q.path(a, msg))!r})" for a in ("todo", "intd")])
    else:
        msg = q.add("b@example.com", remote=("y@remote.example",))
        action = "; ".join(f"os.unlink({str(q.path(a, msg))!r})"
                           for a in ("remote", "info", "mess"))
    target = ops.Target(LocalConnector("l", python=qmail_send_at(tmp_path, area, action)),
                        str(q.queue))
    _dump, report = ops.check_queue(target)
    assert report.problems == []
