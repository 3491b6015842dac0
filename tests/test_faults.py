"""Faults apply must survive, each over the real test sshd into the vpopmail stand-in.

kill -9 at 30+ seeded points across whole migrations, dropped SSH sessions (with and
without retries), a full target disk, mail arriving and a spool rewritten during the
read, two applies at once, a damaged state file. Every source tree is checksummed when
built and again when the module ends (files a test changes on purpose excepted): the
source is only read. A saved plan gone stale and a fresh plan showing drift are
covered by tests/test_integration_core.py::test_drift_is_shown_and_a_saved_plan_goes_stale.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from migration import (
    REAL_VPOPMAIL,
    SourceAccount,
    install_target,
    left_running,
    mailplan,
    make_source,
    new_tag,
    small_disk,
    ssh_host,
    tree_digest,
    write_spec,
)
from writer_hold import WriterHold, writer_hold

from mailplan.facts.vpopmail import parse_vuserinfo
from mailplan.mail.maildir import parse_message_name
from mailplan.mail.mbox import read_mbox
from mailplan.remote import CLIENT_GRACE

pytestmark = [pytest.mark.ssh,
              pytest.mark.skipif(bool(REAL_VPOPMAIL), reason="each scenario needs its own "
                                 "throw-away target (and one mounts a tmpfs in it)")]
SEED = 20261128
ENV = {"PM_PW": "PostMaster#1"}
_SOURCES: list[tuple[Path, str, frozenset[str]]] = []


def track_source(root: Path, *, changed: tuple[Path, ...] = ()) -> None:
    skip = frozenset(str(p) for p in changed)
    _SOURCES.append((root, tree_digest(root, skip), skip))


@pytest.fixture(scope="module", autouse=True)
def source_stays_untouched():
    yield
    for root, before, skip in _SOURCES:
        assert tree_digest(root, skip) == before, f"the source tree {root} was modified"


def msg(i: int, body: str = "hello\n", status: str = "") -> bytes:
    day = 1 + i % 28
    return (f"From s{i}@x.example Mon Nov {day:2d} 10:{i % 60:02d}:00 2026\n"
            f"From: s{i}@x.example\nSubject: m{i}\n{status}\n{body}\n").encode()


def spool(n: int, *, seed: int = 0, size: int = 100) -> bytes:
    rng = random.Random(seed)
    return b"".join(msg(seed * 100000 + i, "x" * rng.randint(size // 2, size) + "\n",
                        rng.choice(["", "Status: RO\n", "Status: O\nX-Status: AF\n"]))
                    for i in range(n))


# -- target comparison ------------------------------------------------------------------

def maildir_state(root: Path, *, settled: bool = True) -> set[tuple[str, str, str, int, str]]:
    """Every visible message (each must be whole); after a finished run tmp/ is empty."""
    out = set()
    for sub in root.rglob("*"):
        if sub.is_file() and sub.parent.name in ("new", "cur"):
            parsed = parse_message_name(sub.name)
            assert parsed is not None, sub
            data = sub.read_bytes()
            assert len(data) == parsed.size and hashlib.sha256(data).hexdigest() == \
                parsed.digest, f"torn or partial message visible: {sub}"
            folder = str(sub.parent.parent.relative_to(root))
            out.add((folder, sub.parent.name, parsed.digest, parsed.occurrence,
                     parsed.flags or ""))
    if settled and (root / "tmp").exists():
        assert not any((root / "tmp").iterdir()), "a finished run left files in tmp/"
    return out


def snapshot(target, domains: list[str]) -> dict:
    """Users, quotas, comments, hashes (not postmaster's: a random salt), Maildirs by
    identity+flags, aliases and catch-alls, with the install path taken out."""
    doc = {}
    for d in domains:
        listing = target.tool("vuserinfo", "-D", d).stdout.decode()
        users = {}
        for f in parse_vuserinfo(listing):
            md = Path(f["dir"]) / "Maildir"
            users[f["name"]] = (f.get("comment/gecos"), f["quota"],
                                None if f["name"] == "postmaster" else f["passwd"],
                                sorted(maildir_state(md)) if md.exists() else [])
        aliases = sorted(target.tool("valias", "-s", d).stdout.decode().splitlines())
        ddir = target.tool("vdominfo", "-d", d).stdout.decode().split("\n")[0]
        default = Path(ddir, ".qmail-default").read_text().replace(target.vpopmail_dir, "V")
        doc[d] = {"users": users, "aliases": aliases, "default": default}
    return doc


# -- the whole-migration fixture ---------------------------------------------------------

DOMAINS = ["one.example", "two.example"]


def whole_source(root: Path) -> Path:
    accounts = [SourceAccount(f"u{i}", 1000 + i, f"User {i}", f"pw{i}") for i in range(8)]
    src = make_source(root, accounts)
    sp = src / "var/spool/mail"
    for i in range(8):
        (sp / f"u{i}").write_bytes(spool(20 + 15 * i, seed=i))
    (sp / "u0").write_bytes(spool(700, seed=99, size=1500))  # the long mid-mailbox window
    for i in (1, 5):
        (src / f"home/u{i}/mail/Lists").mkdir(parents=True)
        (src / f"home/u{i}/mail/Work").write_bytes(spool(40, seed=50 + i))
        (src / f"home/u{i}/mail/Lists/py").write_bytes(spool(25, seed=60 + i))
    track_source(src)
    return src


def whole_spec(path: Path, src: Path, target, sshd) -> Path:
    body1 = {"postmaster_password": {"env": "PM_PW"}, "default_quota": "1G",
             "import": {"uid_min": 1000, "uid_max": 1003},
             "aliases": {"sales": ["u1", "u2"], "info": ["u0"]}}
    body2 = {"postmaster_password": {"env": "PM_PW"}, "import": {"uid_min": 1004},
             "users": [{"name": "robert", "from": "u7", "quota": "2G"}],
             "unknown_recipients": {"deliver_to": "u4"}}
    spec = write_spec(path, source_root=src, target=target, source_host=ssh_host(sshd),
                      target_host=ssh_host(sshd), domains={DOMAINS[0]: body1,
                                                            DOMAINS[1]: body2})
    return spec


def start_apply(spec: Path, *args: str, stderr: int = subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mailplan", "apply", str(spec),
                             "--auto-approve", *args], stdout=subprocess.PIPE,
                            stderr=stderr, env={**os.environ, **ENV})


def kill_when(spec: Path, *, lines: int | None = None, delay: float | None = None,
              timeout: float = 120) -> bool:
    """kill -9 an apply once its journal has ``lines`` lines or after ``delay`` seconds;
    True when it was killed before finishing."""
    journal = spec.with_name(spec.stem + ".state.json.journal")
    proc = start_apply(spec)
    started = time.monotonic()
    while time.monotonic() - started < timeout and proc.poll() is None:
        if delay is not None and time.monotonic() - started >= delay:
            break
        if lines is not None and _read(journal).count(b"\n") >= lines:
            break
        time.sleep(0.003)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    return killed


def recorded(spec: Path) -> int:
    """Steps recorded so far by the applies of ``spec`` (state serial + journal lines)."""
    state = spec.with_name(spec.stem + ".state.json")
    journal = spec.with_name(spec.stem + ".state.json.journal")
    serial = json.loads(state.read_text())["serial"] if state.exists() else 0
    return serial + _read(journal).count(b"\n")


def _read(path: Path) -> bytes:
    """The file's bytes, or none: an apply removes its journal when it ends, maybe
    between a look at it and the read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


@pytest.mark.slow
def test_kill9_at_seeded_points_converges_to_the_clean_result(tmp_path, sshd):
    src = whole_source(tmp_path / "source")
    clean_target = install_target(tmp_path / "clean")
    clean_spec = whole_spec(tmp_path / "clean.yaml", src, clean_target, sshd)
    t0 = time.monotonic()
    mailplan("apply", str(clean_spec), "--auto-approve", env=ENV, check=True)
    duration = time.monotonic() - t0
    steps = json.loads((tmp_path / "clean.state.json").read_text())["serial"]
    clean = snapshot(clean_target, DOMAINS)
    assert sum(len(u[3]) for d in clean.values() for u in d["users"].values()) > 1000
    assert mailplan("verify", str(clean_spec), env=ENV).returncode == 0

    rng = random.Random(SEED)
    kills, rounds, log = 0, 0, []
    while kills < 32:
        rounds += 1
        target = install_target(tmp_path / f"t{rounds}")
        spec = whole_spec(tmp_path / f"r{rounds}.yaml", src, target, sshd)
        while kills < 32:
            left = max(1, steps - recorded(spec))  # somewhere in what is left to do
            if rng.random() < 0.5:
                point = {"lines": rng.randint(1, left)}
            else:  # by time: the plan phase and mid-mailbox included
                point = {"delay": round(rng.uniform(0.3, duration * max(0.4, left / steps)), 3)}
            if not kill_when(spec, **point):
                break  # this apply finished first: the round is complete
            kills += 1
            log.append(point)
        mailplan("apply", str(spec), "--auto-approve", env=ENV, check=True)
        res = mailplan("verify", str(spec), env=ENV)
        assert res.returncode == 0, res.stdout + res.stderr
        assert snapshot(target, DOMAINS) == clean, f"round {rounds} after kills at {log}"
    assert kills >= 30
    assert any("lines" in p for p in log) and any("delay" in p for p in log)


# -- one big mailbox: connection drops, disk full, concurrent applies -----------------------

def big_setup(tmp_path: Path, sshd, *, messages: int = 4000, host_extra: dict | None = None,
              target=None, hold: WriterHold | None = None):
    """One account's spool of ``messages`` into a new target (or ``target``); ``hold``:
    the target's writer runs under it."""
    src = make_source(tmp_path / "source", [SourceAccount("big", 1000, "Big", "BigPw1")])
    (src / "var/spool/mail/big").write_bytes(spool(messages, seed=7, size=2000))
    track_source(src)
    target = target or install_target(tmp_path / "target")
    host = {**ssh_host(sshd), **(host_extra or {})}
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      source_host=host,
                      target_host={**host, **({"python": str(hold.python)} if hold else {})},
                      domains={"big.example": {"import": {"uid_min": 1000}}})
    return src, target, spec


def wait_journal(spec: Path, needle: bytes, proc: subprocess.Popen, timeout: float = 60) -> None:
    journal = spec.with_name(spec.stem + ".state.json.journal")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if needle in _read(journal):
            return
        time.sleep(0.003)
    raise AssertionError(f"apply never journaled {needle!r}")


def drop_mid_import(tmp_path: Path, sshd, retries: int, delay: float = 0.2,
                    stderr: int = subprocess.PIPE) -> tuple[subprocess.Popen, Path, Path]:
    """Start the apply of DROP_MESSAGES and cut its SSH connections while the writer
    holds its second sync: mid-import (the first batch durable and journaled, the rest
    not visible), however fast the machine would finish the rest. Return the apply, the
    target's Maildir and the spec."""
    hold = writer_hold(tmp_path)
    src, target, spec = big_setup(tmp_path, sshd, messages=DROP_MESSAGES, hold=hold,
                                  host_extra={"retries": retries, "retry_delay": delay})
    hold.arm(2)
    proc = start_apply(spec, stderr=stderr)
    hold.wait(proc)
    sshd.kill_sessions()  # the held sync is dropped with the writer's input
    return proc, Path(target.vpopmail_dir, "domains/big.example/big/Maildir"), spec


# messages for the connection-drop tests: two batches of 2,000 (the drop comes while the
# writer holds the second one's sync)
DROP_MESSAGES = 4000


def test_connection_drop_stops_with_host_and_step_then_rerun_completes(tmp_path, sshd):
    proc, root, spec = drop_mid_import(tmp_path, sshd, retries=0)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, out.decode() + err.decode()
    text = err.decode()
    assert "Error: host " in text and ", step + mailbox big@big.example INBOX: " in text, text
    assert any(w in text for w in ("connection lost", "interrupted", "stopped")), text
    assert "the same apply resumes from the state file" in text
    assert text.rstrip().endswith(f"then resume with: mailplan apply {spec}"), text
    assert len(maildir_state(root, settled=False)) == 2000  # whole, and the first batch's
    mailplan("apply", str(spec), "--auto-approve", check=True)
    res = mailplan("verify", str(spec))
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(maildir_state(root)) == DROP_MESSAGES


def test_connection_drop_is_retried_with_backoff(tmp_path, sshd):
    proc, root, spec = drop_mid_import(tmp_path, sshd, retries=2)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out.decode() + err.decode()
    assert "reconnecting and planning again in 0.2s (retry 1)" in err.decode()
    res = mailplan("verify", str(spec))
    assert res.returncode == 0, res.stdout + res.stderr
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert [h["result"] for h in state["history"]] == ["failed", "ok"]
    # every message is there (verify), each journaled once: the first batch before the
    # drop, the rest after it (nothing was durable unjournaled: the sync was held)
    assert state["mail"]["big@big.example/INBOX"]["imported"] == DROP_MESSAGES
    assert len(maildir_state(root)) == DROP_MESSAGES


def test_stderr_closed_when_a_retry_warns_stops_at_a_safe_point_and_logs_why(tmp_path, sshd):
    """`apply ... 2>&1 >apply.out | head` with head gone: the retry's warning meets a
    closed stderr. The apply stops at the retry's wait (a safe point), exit 1, and the
    log says why and how to resume; the warning's broken pipe ended it there (click's
    silent EPIPE exit), the log naming a failed step and no reason."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc, root, spec = drop_mid_import(tmp_path, sshd, retries=2, delay=0.2,
                                           stderr=write)
    finally:
        os.close(write)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out.decode()
    assert "Apply complete" not in out.decode()
    log = next(tmp_path.glob("m.state.json.logs/apply-*.log")).read_text()
    assert "standard error closed (Broken pipe): stopping at the next safe point (at " \
        in log, log
    assert "result: interrupted" in log and f"resume with: mailplan apply {spec}" in log, log
    assert log.count("apply lock taken on") == 1, log  # no host was read again
    # the state's history says so too (it said failed: the attempt the drop cut off)
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert [h["result"] for h in state["history"]] == ["interrupted"]
    assert len(maildir_state(root, settled=False)) == 2000  # the first batch, whole
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert mailplan("verify", str(spec)).returncode == 0
    assert len(maildir_state(root)) == DROP_MESSAGES


def test_ctrl_c_during_a_retrys_wait_stops_at_once(tmp_path, sshd):
    """Nothing is in flight while a retry waits: the first Ctrl-C ends the wait and
    stops there (it waited it out, then re-read both hosts), as a stop at a safe point."""
    proc, root, spec = drop_mid_import(tmp_path, sshd, retries=2, delay=50)
    seen = b""
    while b"reconnecting and planning again in 50s" not in seen:
        line = proc.stderr.readline()
        assert line, seen
        seen += line
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - started < 10, "the wait was not cut short"
    text = err.decode()
    assert proc.returncode == 130, out.decode() + text
    assert "Error: apply interrupted after 3 of 4 change(s); everything finished is " \
        "recorded in" in text, text
    assert text.rstrip().endswith(f"resume with: mailplan apply {spec}"), text
    log = next(tmp_path.glob("m.state.json.logs/apply-*.log")).read_text()
    assert "Ctrl-C: stopping at the next safe point" in log
    assert "result: interrupted" in log, log
    assert log.count("apply lock taken on") == 1, log  # no host was read again
    # the state's history says so too (it said failed: the attempt the drop cut off)
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert [h["result"] for h in state["history"]] == ["interrupted"]
    assert len(maildir_state(root, settled=False)) == 2000  # the first batch, whole
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert mailplan("verify", str(spec)).returncode == 0
    assert len(maildir_state(root)) == DROP_MESSAGES


def test_two_applies_at_once_the_second_is_refused(tmp_path, sshd):
    hold = writer_hold(tmp_path)
    src, target, spec = big_setup(tmp_path, sshd, messages=3000, hold=hold)
    # the first waits (keeping its lock) on its first sync, which the writer holds until
    # the second ran: on a busy machine the second's start-up outlasted the first's
    # whole import, took the lock the first had released and applied (nothing left to
    # do) with exit status 0
    hold.arm(1)
    first = start_apply(spec)
    hold.wait(first)
    try:
        second = mailplan("apply", str(spec), "--auto-approve")
    finally:
        hold.release()
    assert second.returncode == 1, second.stdout + second.stderr
    assert "is locked by another mailplan apply (pid " in second.stderr
    first.communicate(timeout=120)
    assert first.returncode == 0
    assert mailplan("verify", str(spec)).returncode == 0


def test_target_disk_full_during_import(tmp_path, sshd):
    target = install_target(tmp_path / "target")
    domains = Path(target.vpopmail_dir, "domains")
    with small_disk(domains):
        src, target, spec = big_setup(tmp_path, sshd, messages=3000, target=target)
        res = mailplan("apply", str(spec), "--auto-approve")
        assert res.returncode == 1, res.stdout
        assert "host newmail, step + mailbox big@big.example INBOX: " in res.stderr
        assert "No space left on device" in res.stderr
        root = domains / "big.example/big/Maildir"
        visible = maildir_state(root, settled=False)  # each visible file is whole
        state = json.loads((tmp_path / "m.state.json").read_text())
        recorded = state.get("mail", {}).get("big@big.example/INBOX", {}).get("imported", 0)
        assert recorded <= len(visible)
        ledger = (root / "mailplan-ledger").read_text().splitlines() \
            if (root / "mailplan-ledger").exists() else []
        assert len(ledger) == len(visible)
        subprocess.run(["mount", "-o", "remount,size=64m", str(domains)], check=True)
        mailplan("apply", str(spec), "--auto-approve", check=True)
        assert mailplan("verify", str(spec)).returncode == 0
        assert len(maildir_state(root)) == 3000


# -- the source changes while it is read -------------------------------------------------

def identities(data: bytes) -> set[tuple[str, int]]:
    return {end.identity for end, _ in read_mbox(__import__("io").BytesIO(data))[0]}


def _busy_spec(tmp_path, sshd, data: bytes, *, hold: WriterHold | None = None):
    src = make_source(tmp_path / "source", [SourceAccount("busy", 1000, "Busy", "pw")])
    box = src / "var/spool/mail/busy"
    box.write_bytes(data)
    track_source(src, changed=(box,))
    target = install_target(tmp_path / "target")
    host = {**ssh_host(sshd), "retry_delay": 0.1}
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target, source_host=host,
                      target_host={**host, **({"python": str(hold.python)} if hold else {})},
                      domains={"busy.example": {"import": {"uid_min": 1000}}})
    return box, spec, Path(target.vpopmail_dir, "domains/busy.example/busy/Maildir")


def test_mail_arriving_during_the_read_is_never_torn_and_comes_next_run(tmp_path, sshd):
    box, spec, root = _busy_spec(tmp_path, sshd, spool(1500, seed=3, size=2000))
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            data = msg(900000 + i, "appended " * 50 + "\n")
            with open(box, "ab") as fh:  # like mail.local: one message, written in parts
                fh.write(data[:40])
                fh.flush()
                time.sleep(0.002)
                fh.write(data[40:])
            i += 1
            time.sleep(0.01)

    thread = threading.Thread(target=writer)
    proc = start_apply(spec)
    thread.start()
    out, err = proc.communicate(timeout=120)
    stop.set()
    thread.join()
    final = identities(box.read_bytes())
    got = {(d, o) for _f, _s, d, o, _fl in maildir_state(root, settled=False)}
    assert got <= final, "a message not in the source (torn) was imported"
    assert len(final) > 1500 and len(got) >= (1500 if proc.returncode == 0 else 0)
    if proc.returncode != 0:
        assert "while it was read" in err.decode(), err.decode()
    mailplan("apply", str(spec), "--auto-approve", check=True)
    res = mailplan("verify", str(spec))
    assert res.returncode == 0, res.stdout + res.stderr
    assert {(d, o) for _f, _s, d, o, _fl in maildir_state(root)} == final


def test_spool_rewritten_during_the_read_imports_no_torn_message(tmp_path, sshd):
    original = spool(1500, seed=4, size=2000)
    box, spec, root = _busy_spec(tmp_path, sshd, original)
    cut = original.index(b"\nFrom s400100@") + 1  # a mail reader deletes the first 100
    rewritten = original[cut:]
    proc = start_apply(spec)
    wait_journal(spec, b"create-user", proc)
    time.sleep(0.3)
    with open(box, "r+b") as fh:  # in place, as UW-IMAP rewrites a spool
        fh.write(rewritten)
        fh.truncate()
    out, err = proc.communicate(timeout=120)
    allowed = identities(original) | identities(rewritten)
    got = {(d, o) for _f, _s, d, o, _fl in maildir_state(root, settled=False)}
    assert got <= allowed, "a spliced message was imported"
    mailplan("apply", str(spec), "--auto-approve", check=True)
    res = mailplan("verify", str(spec))
    assert res.returncode == 0, res.stdout + res.stderr
    assert identities(rewritten) <= {(d, o) for _f, _s, d, o, _fl in maildir_state(root)}


def test_kill9_during_an_incremental_import_then_rerun_imports_each_message_once(tmp_path,
                                                                                 sshd):
    """The second run of a migration (new mail since the first) is killed once a batch of
    the new mail is durable; the checkpoint still ends where the first run ended. The
    next run recognizes what the killed one wrote (numbered as an uninterrupted run
    numbers it: byte-identical copies of an earlier message included) and imports the
    rest once."""
    first = spool(1000, seed=5, size=2000)
    hold = writer_hold(tmp_path)
    box, spec, root = _busy_spec(tmp_path, sshd, first, hold=hold)
    mailplan("apply", str(spec), "--auto-approve", check=True)
    journal = spec.with_name(spec.stem + ".state.json.journal")
    assert not journal.exists() or b'"imported"' not in journal.read_bytes()
    copy = first[: first.index(b"\nFrom ", 1) + 1]  # byte-identical to the first message
    grown = first + copy + spool(5000, seed=6, size=2000) + copy
    with open(box, "ab") as fh:  # new mail appended, as mail.local does
        fh.write(grown[len(first):])
    # killed while the writer holds the second sync (the first one's batch is durable
    # and journaled, the rest is not visible), not once the journal shows that batch:
    # a loaded machine let the apply finish the last sync before the kill came
    hold.arm(2)
    proc = start_apply(spec)
    hold.wait(proc)
    assert b'"imported"' in _read(journal)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    written = sum(1 for f in root.rglob("*") if f.parent.name in ("new", "cur"))
    assert 1000 < written < 6002, written  # killed in the middle of the new mail
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert mailplan("verify", str(spec)).returncode == 0
    want = identities(grown)
    assert len(want) == 6002  # the copies are occurrences 1 and 2 of the first message
    names = [f.name for f in root.rglob("*") if f.parent.name in ("new", "cur")]
    assert len(names) == 6002, len(names)
    assert {(d, o) for _f, _s, d, o, _fl in maildir_state(root)} == want


# -- damaged state -----------------------------------------------------------------------

def test_damaged_state_is_refused_and_replanning_without_it_duplicates_nothing(tmp_path,
                                                                              sshd):
    src, target, spec = big_setup(tmp_path, sshd, messages=300)
    mailplan("apply", str(spec), "--auto-approve", check=True)
    state = tmp_path / "m.state.json"
    root = Path(target.vpopmail_dir, "domains/big.example/big/Maildir")
    before = maildir_state(root)
    for damage in (state.read_bytes()[: state.stat().st_size // 2], b"\x00garbage{",
                   json.dumps({"format_version": 1}).encode()):
        state.write_bytes(damage)
        for cmd in (("plan", str(spec)), ("apply", str(spec), "--auto-approve")):
            res = mailplan(*cmd)
            assert res.returncode == 1
            assert str(state) in res.stderr
            assert "move the damaged file aside and run `mailplan plan` again" in res.stderr
    state.rename(tmp_path / "m.state.json.damaged")
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert maildir_state(root) == before
    assert mailplan("verify", str(spec)).returncode == 0
    doc = yaml.safe_load(spec.read_text())
    assert doc["domains"]["big.example"]["import"] == {"uid_min": 1000}


def test_a_hung_vpopmail_tool_times_out_naming_host_and_step_then_resume(tmp_path, sshd):
    """vadduser hangs (a lock, NFS): the step fails after the host's command_timeout with
    the host, the step and a hint; the hung process is gone from the target (it cannot
    race with the resume); once the tool works again, the same apply completes."""
    src = make_source(tmp_path / "source", [SourceAccount(f"u{i}", 1000 + i, f"User {i}",
                                                          f"pw{i}") for i in range(2)])
    track_source(src)
    target = install_target(tmp_path / "target")
    # every other command on the target must finish within it too (the stand-in's tools
    # take 0.01-0.15 s here, with the machine loaded three times over): 5 s, not 2
    host = {**ssh_host(sshd), "command_timeout": 5}
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      source_host=ssh_host(sshd), target_host=host,
                      domains={"one.example": {"postmaster_password": {"env": "PM_PW"},
                                               "import": {"uid_min": 1000}}})
    tool = Path(target.vpopmail_dir, "bin/vadduser")
    real = tool.read_bytes()
    tag = new_tag()  # not a fixed one: another session may run this test meanwhile
    tool.write_text(f"#!/bin/sh\nexec sleep {tag}\n")
    res = subprocess.run([sys.executable, "-m", "mailplan", "apply", str(spec),
                          "--auto-approve"], capture_output=True, text=True,
                         env={**os.environ, **ENV}, timeout=60, check=False)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Error: host newmail, step + user u0@one.example: vadduser did not finish " \
           "within 5 s; mailplan stopped it on the host" in res.stderr, res.stderr
    assert "hint: " in res.stderr and "command_timeout" in res.stderr
    assert left_running(f"sleep {tag}", wait=0) == []
    # the host's own watchdog ended it, a few seconds past the 5: not mailplan's later
    # give-up (CLIENT_GRACE past them), which would close the channel on a host whose
    # watchdog never fires
    (log,) = Path(f"{spec.with_suffix('')}.state.json.logs").iterdir()
    (took,) = [float(line.split()[2].rstrip("s")) for line in log.read_text().splitlines()
               if "no result within command_timeout (5 s)" in line]
    assert 5 <= took < 5 + CLIENT_GRACE / 2, took
    tool.write_bytes(real)
    mailplan("apply", str(spec), "--auto-approve", env=ENV, check=True)
    assert mailplan("verify", str(spec), env=ENV).returncode == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_stop_at_a_safe_point_with_summary_and_resume(tmp_path, sshd,
                                                                         signum):
    """SIGTERM (shutdown, kill) and SIGHUP (the terminal went away) stop like the first
    Ctrl-C: the step under way finishes and is journaled, the log gets its summary and
    the resume command; after SIGHUP nothing more is written to the terminal."""
    src = make_source(tmp_path / "source", [SourceAccount(f"u{i}", 1000 + i, f"User {i}",
                                                          f"pw{i}") for i in range(3)])
    track_source(src)
    target = install_target(tmp_path / "target")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      source_host=ssh_host(sshd), target_host=ssh_host(sshd),
                      domains={"one.example": {"postmaster_password": {"env": "PM_PW"},
                                               "import": {"uid_min": 1000}}})
    tool = Path(target.vpopmail_dir, "bin/vadduser")
    real = tool.parent / "real" / "vadduser"  # the stand-in knows a tool by its name
    real.parent.mkdir()
    tool.rename(real)
    # once u1 is made, its vadduser waits (a minute at most) until the signal was sent:
    # the signal comes while the step is under way however slowly this test runs
    marker, sent = tmp_path / "in-u1", tmp_path / "signal-sent"
    tool.write_text(f'#!/bin/sh\n"{real}" "$@"; rc=$?\ncase "$*" in *u1@*) '
                    f'[ -e {marker} ] || {{ touch {marker}; i=0; while [ ! -e {sent} ] '
                    f'&& [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; }};; esac\n'
                    'exit $rc\n')
    tool.chmod(0o755)
    log = tmp_path / "a.log"
    # SIGHUP as a terminal leaves it: the suite itself may run under nohup (ignored
    # then, which mailplan keeps, as an admin's nohup asks)
    proc = subprocess.Popen([sys.executable, "-m", "mailplan", "apply", str(spec),
                             "--auto-approve", "--log", str(log)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, **ENV},
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert marker.exists(), proc.communicate()
    os.kill(proc.pid, signum)
    sent.touch()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, out.decode() + err.decode()
    name = signal.Signals(signum).name
    text = log.read_text()
    assert f"{name}: stopping at the next safe point" in text
    assert "step done: + user u1@one.example" in text  # the step under way finished
    assert "step start: + user u2@one.example" not in text
    assert "summary:" in text and "result: interrupted" in text, text
    assert f"resume with: mailplan apply {spec} " not in text  # no stray option
    assert f"resume with: mailplan apply {spec}" in text
    if signum == signal.SIGTERM:
        assert "apply interrupted by SIGTERM" in err.decode()
        assert "resume with: mailplan apply" in err.decode()
    else:  # the terminal is gone: nothing after the signal reaches it
        assert b"Error" not in err and b"Summary" not in out, out + err
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert "u1" in state["managed"]["one.example"]["users"]
    mailplan("apply", str(spec), "--auto-approve", env=ENV, check=True)
    assert mailplan("verify", str(spec), env=ENV).returncode == 0


def test_giving_up_after_a_failed_reconnect_names_the_step_cut_off(tmp_path, monkeypatch):
    """The connection drops during a step; every re-plan then fails to connect: the
    final error names the host and that step (the docs' promise), not the host alone."""
    from types import SimpleNamespace

    from mailplan import retry
    from mailplan.errors import ConnectionLost
    from mailplan.plan import Change
    from mailplan.state import State

    step = Change("create", "mailbox", "d.example", "ann", item="INBOX")

    def cut(planned, state, *, on_step, **options):
        on_step(step, "start")
        raise ConnectionLost("connection lost", host="newmail")

    def refused(state):
        raise ConnectionLost("cannot connect to newmail:22: connection refused",
                             host="newmail")

    monkeypatch.setattr(retry, "apply_plan", cut)
    planned = SimpleNamespace(spec=SimpleNamespace(data={
        "hosts": {"newmail": {"retries": 2}}, "target": {"host": "newmail"}}),
        close=lambda: None)
    with pytest.raises(ConnectionLost) as caught:
        retry.apply_with_retries(planned, State.load(tmp_path / "s.json"), saved=None,
                                 replan=refused, prune=False, sleep=lambda s: None)
    assert str(caught.value).splitlines()[0] == (
        "host newmail, step + mailbox ann@d.example INBOX: cannot connect to newmail:22: "
        "connection refused (gave up after 2 retries)")


@pytest.mark.parametrize("stopped", ["wait", "replan", "next attempt"])
def test_a_stop_between_retries_leaves_the_states_history_interrupted(tmp_path, monkeypatch,
                                                                      stopped):
    """A stop while apply waits to retry an attempt a dropped connection ended, or while
    it plans again after the wait: the state's last history entry says interrupted, as
    the apply's log does (it said failed, the cut off attempt's). A stop in the next
    attempt is that attempt's to record: the failed one before it stays failed."""
    from types import SimpleNamespace

    from mailplan import retry
    from mailplan.errors import ConnectionLost
    from mailplan.state import State
    from mailplan.watch import StopRequested

    attempts = []

    def attempt(planned, state, *, on_step, **options):
        state.begin("p")
        attempts.append(1)
        if len(attempts) == 1:
            state.finish("failed", {})
            raise ConnectionLost("connection lost", host="newmail")
        state.finish("interrupted", {})
        raise StopRequested

    def replan(state):
        if stopped == "replan":
            raise KeyboardInterrupt  # a second Ctrl-C: no safe point waited for
        return planned

    def sleep(seconds):
        if stopped == "wait":
            raise StopRequested

    planned = SimpleNamespace(spec=SimpleNamespace(data={
        "hosts": {"newmail": {"retries": 2}}, "target": {"host": "newmail"}}),
        close=lambda: None, plan=SimpleNamespace(plan_id="p"))
    path = tmp_path / "s.json"
    monkeypatch.setattr(retry, "apply_plan", attempt)
    with pytest.raises(KeyboardInterrupt):
        retry.apply_with_retries(planned, State.load(path), saved=None, replan=replan,
                                 prune=False, sleep=sleep)
    assert [h["result"] for h in json.loads(path.read_text())["history"]] == (
        ["failed", "interrupted"] if stopped == "next attempt" else ["interrupted"])
