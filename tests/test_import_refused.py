"""A Maildir folder the writer may not write (restored or made by hand as root) fails
that mailbox only: the apply goes on with the user's other folders and the other users'
mailboxes, then ends non-zero naming the mailbox; after the administrator's ``chown``
the next apply imports exactly what is missing."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import migration
import pytest

OWNER = 4242


def msgs(tag: str, count: int) -> bytes:
    return b"".join(f"From a@example.org Mon Jan  1 10:00:00 2001\nSubject: {tag} {i}\n\n"
                    f"body\n\n".encode() for i in range(count))


@pytest.fixture
def reachable():
    """A directory the owner's writer can reach (pytest's own are 0700, root's)."""
    base = Path(tempfile.mkdtemp(prefix="mailplan-refused-"))
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _count(root: Path) -> int | None:
    """The messages of a Maildir folder, None when there is none."""
    if not (root / "cur").is_dir():
        return None
    return sum(1 for sub in ("new", "cur") for _ in (root / sub).iterdir())


#: a folder of root's is made as root, and the domain's files change owner
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0 or bool(migration.REAL_VPOPMAIL),
                               reason="needs root, and a target of its own")


def _two_users(tmp_path: Path, sshd: object, reachable: Path) -> tuple[Path, Path, Path, str]:
    """alice and bob, made on the target by a first apply (no mail yet), their domain's
    files then the vpopmail owner's (``OWNER``): the source, the spec, the domain's
    directory, the domain."""
    accounts = [migration.SourceAccount(name, uid, name.title(), "pw")
                for uid, name in enumerate(("alice", "bob"), 1000)]
    src = migration.make_source(tmp_path / "source", accounts)
    target = migration.install_target(reachable / "target")
    domain = migration.unique_domain()
    host = migration.ssh_host(sshd)
    spec = migration.write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                                source_host=host, target_host=host,
                                domains={domain: {"import": {"uid_min": 1000}}})
    migration.mailplan("apply", str(spec), "--auto-approve", check=True)  # no mail yet
    domain_dir = Path(target.vpopmail_dir, "domains", domain)
    for path in [domain_dir, *domain_dir.rglob("*")]:
        os.lchown(path, OWNER, OWNER)
    os.chmod(domain_dir.parent, 0o711)
    return src, spec, domain_dir, domain


@ROOT_ONLY
def test_a_folder_of_the_wrong_owner_fails_only_its_mailbox(tmp_path, sshd, reachable):
    src, spec, domain_dir, domain = _two_users(tmp_path, sshd, reachable)
    alice = domain_dir / "alice" / "Maildir"
    work = alice / ".Work"
    for sub in ("", "cur", "new", "tmp"):  # restored from a backup as root
        (work / sub).mkdir(mode=0o700)
    # alice's folders: A (before Work), Work, Zed (after it); then bob's INBOX
    (src / "home/alice/mail").mkdir(parents=True)
    for name, count in (("A", 1), ("Work", 2), ("Zed", 3)):
        (src / "home/alice/mail" / name).write_bytes(msgs(name, count))
    (src / "var/spool/mail/alice").write_bytes(msgs("alice", 4))
    (src / "var/spool/mail/bob").write_bytes(msgs("bob", 5))

    res = migration.mailplan("apply", str(spec), "--auto-approve")
    out = res.stdout + res.stderr
    assert res.returncode not in (0, 3), out
    assert (_count(alice), _count(alice / ".A"), _count(alice / ".Zed")) == (4, 1, 3), out
    assert _count(domain_dir / "bob" / "Maildir") == 5, out
    assert _count(work) == 0
    # said at the end, naming the mailbox and the remedy
    tail = out[out.rindex(f"alice@{domain} Work"):]
    assert "chown -R" in tail and str(work) in tail, out
    assert "1 mailbox" in out, out
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert state["history"][-1]["result"] == "failed"

    plan = migration.mailplan("plan", str(spec), check=True).stdout
    assert f"+ mailbox alice@{domain} Work" in plan, plan
    assert plan.count("+ mailbox") == 1, plan
    for path in [work, *work.rglob("*")]:
        os.lchown(path, OWNER, OWNER)
    res = migration.mailplan("apply", str(spec), "--auto-approve")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (_count(alice), _count(alice / ".A"), _count(work), _count(alice / ".Zed"),
            _count(domain_dir / "bob" / "Maildir")) == (4, 1, 2, 3, 5)
    assert "No changes." in migration.mailplan("plan", str(spec), check=True).stdout


@ROOT_ONLY
def test_a_refusal_the_sender_meets_as_a_closed_pipe_fails_only_its_mailbox(
        tmp_path, sshd, reachable):
    """A folder imported once, then restored as root, that gets new mail: read from its
    checkpoint, its messages stream right after the folder's request, with no reply
    awaited; the writer refuses the folder and ends, and the sender's next write meets
    a closed channel before it reads the refusal. Its refusal, on the writer's stderr,
    was taken for a failure of the agent, which stopped the apply (bob's mail not
    imported). It fails that mailbox only, as a refusal the sender reads does; a re-run
    after the ``chown`` imports exactly what is missing."""
    src, spec, domain_dir, domain = _two_users(tmp_path, sshd, reachable)
    (src / "home/alice/mail").mkdir(parents=True)
    work_src = src / "home/alice/mail/Work"
    work_src.write_bytes(msgs("Work", 2))
    migration.mailplan("apply", str(spec), "--auto-approve", check=True)
    work = domain_dir / "alice" / "Maildir" / ".Work"
    assert _count(work) == 2
    for path in [work, *work.rglob("*")]:  # restored from a backup as root
        os.lchown(path, 0, 0)
    # enough new mail that the stream outlasts the writer (the channel's window and
    # the pipe's buffer): megabytes
    with work_src.open("ab") as fh:
        fh.writelines(f"From a@example.org Mon Jan  1 10:00:00 2001\nSubject: new {i}\n\n"
                      f"{'x' * 4000}\n\n".encode() for i in range(3000))
    (src / "var/spool/mail/bob").write_bytes(msgs("bob", 5))

    res = migration.mailplan("apply", str(spec), "--auto-approve")
    out = res.stdout + res.stderr
    assert res.returncode not in (0, 3), out
    assert _count(domain_dir / "bob" / "Maildir") == 5, out  # the apply went on
    assert _count(work) == 2, out
    tail = out[out.rindex(f"alice@{domain} Work"):]
    assert "1 mailbox" in out and "chown -R" in tail and str(work) in tail, out
    assert "interrupted" not in out and "connection lost" not in out, out
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert state["history"][-1]["result"] == "failed"

    for path in [work, *work.rglob("*")]:
        os.lchown(path, OWNER, OWNER)
    res = migration.mailplan("apply", str(spec), "--auto-approve")
    assert res.returncode == 0, res.stdout + res.stderr
    assert _count(work) == 3002
    assert "No changes." in migration.mailplan("plan", str(spec), check=True).stdout


@ROOT_ONLY
def test_sigterm_after_a_refusal_says_the_refused_mailbox_failed_with_its_remedy(
        tmp_path, sshd, reachable):
    """SIGTERM once the writer is on alice's Work, restored as root: the apply stops at
    its next safe point (the next mailbox's start, or a batch), exits 143, and says the
    refused Work failed, with its ``chown`` remedy, in its summary and its error; it
    was counted "not finished", the refusal said only by the next run. bob's import
    cannot end before the stop is asked for: the test holds the ``flock`` of his Maildir
    that the writer's renames take, until mailplan says it is stopping (without it, a
    loaded machine let both other mailboxes finish first: exit 1, no stop)."""
    import fcntl
    import signal
    import subprocess
    import sys
    import time

    src, spec, domain, work = _work_restored_as_root(tmp_path, sshd, reachable)
    (src / "home/alice/mail/Zed").write_bytes(msgs("Zed", 5000))
    (src / "var/spool/mail/bob").write_bytes(msgs("bob", 5000))
    log, said = tmp_path / "apply.log", tmp_path / "apply.out"

    def as_from_a_terminal() -> None:  # a suite run in the background ignores them
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)

    def wait_for(path: Path, text: str) -> None:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and \
                not (path.exists() and text in path.read_text()):
            time.sleep(0.02)

    held = os.open(work.parents[2] / "bob" / "Maildir", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # bob's first sync waits for it
        with said.open("w") as out_file:
            proc = subprocess.Popen([sys.executable, "-m", "mailplan", "apply", str(spec),
                                     "--auto-approve", "--log", str(log)], text=True,
                                    stdout=out_file, stderr=subprocess.PIPE,
                                    preexec_fn=as_from_a_terminal)
        wait_for(log, f"step start: + mailbox alice@{domain} Work")
        proc.send_signal(signal.SIGTERM)
        wait_for(said, "Stopping after the current step")
    finally:
        os.close(held)  # bob's import goes on, to its next safe point: the stop
    _out, err = proc.communicate(timeout=120)
    out = said.read_text()
    assert proc.returncode == 143, out + err
    assert err.startswith("Error: apply interrupted by SIGTERM after "), err
    _refusal_said_at_the_stop(tmp_path, domain, work, out, err, "  not finished: ")


@ROOT_ONLY
def test_a_stop_while_a_retry_waits_says_the_refusal_met_before_it(tmp_path, sshd, reachable):
    """alice's Work refused by the writer, then bob's import cut by a lost connection
    (his writer held at its second sync, the SSH sessions then killed): apply waits to
    retry, and SIGTERM ends the wait. The refusal rode on the lost connection's error,
    which the retry had taken: the stop's summary counted Work "not finished" and its
    error said the refusal nowhere. Each refusal is now told to the apply's watch as it
    happens: Work is failed, with its ``chown`` remedy, in the summary and the error."""
    import signal
    import subprocess
    import sys

    import yaml
    from writer_hold import writer_hold

    src, spec, domain, work = _work_restored_as_root(tmp_path, sshd, reachable)
    (src / "var/spool/mail/bob").write_bytes(msgs("bob", 5000))  # three batches
    hold = writer_hold(tmp_path)
    data = yaml.safe_load(spec.read_text())
    for name, entry in data["hosts"].items():  # a wait no machine outlasts: 50 s
        entry.update(retries=2, retry_delay=50)
        if name == data["target"]["host"]:
            entry["python"] = str(hold.python)
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    hold.arm(2)  # bob's second sync: his first batch journaled, Work refused before

    def as_from_a_terminal() -> None:  # a suite run in the background ignores them
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)

    proc = subprocess.Popen([sys.executable, "-m", "mailplan", "apply", str(spec),
                             "--auto-approve"], text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=as_from_a_terminal)
    try:
        hold.wait(proc)
        sshd.kill_sessions()  # the held sync is dropped with the writer's input
        seen = ""
        while "reconnecting and planning again in 50s" not in seen:
            line = proc.stderr.readline()
            assert line, seen
            seen += line
        proc.send_signal(signal.SIGTERM)  # in the retry's wait
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, out + seen + err
    # the retry's warning (before the stop) is not what is checked: the closing error
    error = err[err.index("Error: apply interrupted by SIGTERM after "):]
    _refusal_said_at_the_stop(tmp_path, domain, work, out, error, "not finished: 1 change(s)")


def test_a_refusal_then_a_stopping_failure_names_each_for_its_own_mailbox(tmp_path, monkeypatch):
    """alice's Work refused by the writer (that mailbox only: the apply goes on), then
    bob's import stopped by a lost connection: the summary's line for alice's Work gave
    the lost connection, and the refusal (its cause, its ``chown`` remedy) was said
    nowhere. Each failed mailbox now has its own error in the summary, and the stopping
    error (what the apply ends with, resumed or retried as before) names the refused
    one too."""
    from mailplan.errors import ConnectionLost

    def inbox_run(_watch) -> dict:
        raise lost

    case = _one_refused_then(tmp_path, monkeypatch, inbox_run)
    lost = ConnectionLost("mailbox import interrupted: agent pipe closed", host="newmail",
                          step=f"+ mailbox {case.inbox.address}")
    said = str(lost)
    with pytest.raises(ConnectionLost) as raised:
        case.run()
    assert case.watch.summary.failed == [
        f"+ mailbox {case.work.address}: {case.refusal}",
        f"+ mailbox {case.inbox.address}: {said}"]
    text = str(raised.value)
    assert text.startswith(said + "\n"), text
    assert f"{case.work.address}: {case.refusal.reason}" in text, text


def _one_refused_then(tmp_path: Path, monkeypatch, inbox_run):
    """alice's Work refused by the writer, then bob's INBOX run by ``inbox_run(watch)``,
    under an :class:`ApplyWatch` begun on both (as apply's): the watch, the two changes,
    the refusal, the planned apply and what _import_mail needs."""
    import io
    import threading
    from types import SimpleNamespace

    from mailplan import apply
    from mailplan.errors import MailboxRefused
    from mailplan.interrupt import SignalStop
    from mailplan.plan import Change
    from mailplan.watch import ApplyWatch

    work = Change("create", "mailbox", "d.example", "alice", item="Work")
    inbox = Change("create", "mailbox", "d.example", "bob", item="INBOX")
    refusal = MailboxRefused("mailbox import failed: agent: Refused: /m/.Work is uid 0's: "
                             "chown -R the Maildir to that owner", host="newmail",
                             step=f"+ mailbox {work.address}")
    out = io.StringIO()
    watch = ApplyWatch(tmp_path / "state.json", resume="mailplan apply m.yaml",
                       signals=SignalStop(), log_path=tmp_path / "apply.log", stream=out)

    class Importer:
        def __init__(self, *_args: object, **_kw: object) -> None:
            pass

        def run(self, change: Change, _job: object, *, recount: bool = True) -> dict:
            if change is work:
                raise refusal
            return inbox_run(watch)

        def close(self) -> None:
            pass

    aborted = threading.Event()
    monkeypatch.setattr(apply, "MailImporter", Importer)
    monkeypatch.setattr(apply, "user_dirs", lambda *_a: {})
    planned = SimpleNamespace(
        target=SimpleNamespace(domains={}), source_zone=None,
        connectors={"old": SimpleNamespace(abort=aborted.set)},
        target_connector=SimpleNamespace(name="newmail", shell=lambda: None),
        spec=SimpleNamespace(data={"source": {"host": "old"}}),
        mail_jobs={work.id: None, inbox.id: None}, gone=[],
        plan=SimpleNamespace(plan_id="p1"))

    def run() -> None:
        with watch:
            watch.begin(planned, [work, inbox], "newmail")
            apply._import_mail(planned, SimpleNamespace(vpopmail_dir="/home/vpopmail"),
                               [work, inbox], 1, lambda *_a: None, lambda *_a: None,
                               watch.on_step, watch.on_mail, on_refused=watch.on_refused)

    return SimpleNamespace(run=run, watch=watch, work=work, inbox=inbox, refusal=refusal,
                           aborted=aborted, out=out, log=tmp_path / "apply.log",
                           planned=planned, ctx=SimpleNamespace(vpopmail_dir="/home/vpopmail"))


def _said_failed_not_unfinished(case, ended) -> None:
    """The refused mailbox failed, with its refusal, in the summary, the log and the
    closing error; bob's INBOX not finished."""
    work, refusal = case.work, case.refusal
    assert case.watch.summary.result == "interrupted"
    assert case.watch.summary.failed == [f"+ mailbox {work.address}: {refusal}"]
    assert case.watch.summary.unfinished == 1
    text = str(ended.value)
    assert f"also not imported: 1 mailbox(es) the writer refused:\n    {work.address}: " \
        f"{refusal.reason}\n" in text, text
    assert "not finished: 1 change(s)" in case.out.getvalue(), case.out.getvalue()
    assert f"  failed: + mailbox {work.address}: " in case.out.getvalue()
    assert "chown -R the Maildir" in case.log.read_text()


def test_a_refusal_then_a_stop_at_the_next_safe_point_says_the_refusal(tmp_path, monkeypatch):
    """alice's Work refused by the writer, then SIGTERM (or Ctrl-C) during bob's import:
    the apply stops after bob's batch. The refused mailbox was counted "not finished",
    and its refusal (cause, ``chown`` remedy) said nowhere: only the next run said it.
    It is failed now, with its refusal, in the summary and the closing error; bob's
    INBOX, begun, is not finished."""
    import signal

    from mailplan.interrupt import Interrupted

    def inbox_run(watch) -> dict:
        watch.signals._signalled(signal.SIGTERM, None)  # as its handler is called
        watch.on_mail(case.inbox, 1, 100)  # the batch's safe point: stops
        raise AssertionError("not stopped at the safe point")

    case = _one_refused_then(tmp_path, monkeypatch, inbox_run)
    with pytest.raises(Interrupted) as ended:
        case.run()
    assert ended.value.exit_code == 143
    assert str(ended.value).startswith("apply interrupted by SIGTERM after 0 of 2 change(s)")
    _said_failed_not_unfinished(case, ended)


def test_a_refusal_then_a_stop_at_once_says_the_refusal(tmp_path, monkeypatch):
    """The same when the stop is at once (a second signal: Stopped, raised in the main
    thread while bob's import hangs): the connections are ended, the workers waited for,
    and the refusal is said failed all the same."""
    import os
    import signal

    from mailplan.errors import ConnectionLost
    from mailplan.interrupt import Interrupted, Stopped

    def inbox_run(watch) -> dict:
        os.kill(os.getpid(), signal.SIGUSR1)  # the second signal, in the main thread
        assert case.aborted.wait(30), "the connections were not ended"
        raise ConnectionLost("agent pipe closed", host="newmail")  # as an abort makes it

    def second_signal(_signum: int, _frame: object) -> None:
        case.watch.signals.signum = signal.SIGINT
        case.watch.signals.at_once = True
        raise Stopped(signal.SIGINT)

    case = _one_refused_then(tmp_path, monkeypatch, inbox_run)
    previous = signal.signal(signal.SIGUSR1, second_signal)
    try:
        with pytest.raises(Interrupted) as ended:
            case.run()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert ended.value.exit_code == 130
    assert str(ended.value).startswith("apply interrupted after 0 of 2 change(s)")
    _said_failed_not_unfinished(case, ended)


def test_a_mailbox_refused_then_imported_by_a_retry_is_not_said_refused(tmp_path,
                                                                         monkeypatch):
    """A refusal is told as it happens; when a later attempt of the same apply (a retry
    after the ``chown``) imports that mailbox, a stop after it does not say it refused
    nor failed: it is done."""
    import signal

    from mailplan.interrupt import Interrupted

    def inbox_run(watch) -> dict:
        watch.on_step(case.work, "start")  # as a retry's attempt would: imported now
        watch.on_step(case.work, "done")
        watch.signals._signalled(signal.SIGTERM, None)
        watch.on_mail(case.inbox, 1, 100)  # the batch's safe point: stops
        raise AssertionError("not stopped at the safe point")

    case = _one_refused_then(tmp_path, monkeypatch, inbox_run)
    with pytest.raises(Interrupted) as ended:
        case.run()
    assert str(ended.value).startswith("apply interrupted by SIGTERM after 1 of 2 change(s)")
    assert "also not imported" not in str(ended.value), str(ended.value)
    assert case.watch.summary.failed == [] and case.watch.summary.unfinished == 1


def test_a_retry_that_gives_up_after_a_failed_replan_names_the_refusal(tmp_path, monkeypatch):
    """alice's Work refused, then bob's import cut by a lost connection; the retry's
    re-plan cannot connect, and apply gives up with that error: it carried no refusal,
    so Work was said failed with the connection's error and its refusal nowhere. The
    summary gives Work its refusal, and the closing error names it."""
    from mailplan import apply, retry
    from mailplan.errors import ConnectionLost
    from mailplan.state import State

    def inbox_run(_watch) -> dict:
        raise ConnectionLost("agent pipe closed", host="newmail",
                             step=f"+ mailbox {case.inbox.address}")

    case = _one_refused_then(tmp_path, monkeypatch, inbox_run)
    planned = case.planned
    planned.spec.data.update(hosts={"newmail": {"retries": 1, "retry_delay": 0}},
                             target={"host": "newmail"})
    planned.close = lambda: None

    def attempt(planned, _state, *, on_step, on_mail, on_refused, **_options):
        apply._import_mail(planned, case.ctx, [case.work, case.inbox], 1, lambda *_a: None,
                           lambda *_a: None, on_step, on_mail, on_refused=on_refused)

    def replan(_state):
        raise ConnectionLost("cannot connect to newmail:22: connection refused",
                             host="newmail")

    monkeypatch.setattr(retry, "apply_plan", attempt)
    with pytest.raises(ConnectionLost) as ended, case.watch as watch:
        watch.begin(planned, [case.work, case.inbox], "newmail")
        retry.apply_with_retries(planned, State.load(tmp_path / "s.json"), saved=None,
                                 replan=replan, prune=False, on_step=watch.on_step,
                                 on_mail=watch.on_mail, on_refused=watch.on_refused,
                                 sleep=watch.pause)
    text = str(ended.value)
    assert "connection refused (gave up after 1 retries)" in text, text
    assert f"also not imported: 1 mailbox(es) the writer refused:\n    {case.work.address}: " \
        f"{case.refusal.reason}\n" in text, text
    assert watch.summary.failed[0] == f"+ mailbox {case.work.address}: {case.refusal}"


def _refusal_said_at_the_stop(tmp_path: Path, domain: str, work: Path, out: str,
                              error: str, unfinished: str) -> None:
    """What an apply stopped by SIGTERM after alice's Work was refused says: the closing
    ``error`` names the refusal and its ``chown`` remedy, the summary (``out``) gives
    Work as failed with it, the rest as ``unfinished``; nothing imported into Work, the
    run recorded as interrupted."""
    assert f"also not imported: 1 mailbox(es) the writer refused:\n    alice@{domain} " \
        "Work: " in error and "chown -R" in error and str(work) in error, error
    failed = [line for line in out.splitlines() if line.startswith("    failed: ")]
    assert len(failed) == 1 and f"+ mailbox alice@{domain} Work: " in failed[0] and \
        "chown -R" in failed[0], out
    assert "  failed: 1" in out and unfinished in out, out
    assert _count(work) == 0
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert state["history"][-1]["result"] == "interrupted"


def _work_restored_as_root(tmp_path: Path, sshd: object, reachable: object
                           ) -> tuple[Path, Path, str, Path]:
    """:func:`_two_users` with alice's Maildir folder ``.Work`` restored from a backup as
    root (the writer refuses it) and her source folder Work of 2 messages: the source,
    the spec, the domain and that folder."""
    src, spec, domain_dir, domain = _two_users(tmp_path, sshd, reachable)
    work = domain_dir / "alice" / "Maildir" / ".Work"
    for sub in ("", "cur", "new", "tmp"):
        (work / sub).mkdir(mode=0o700)
    (src / "home/alice/mail").mkdir(parents=True)
    (src / "home/alice/mail/Work").write_bytes(msgs("Work", 2))
    return src, spec, domain, work
