"""Mailbox import over real SSH into the stand-in: plan counts, exact bytes, flags, dates,
incremental runs, user deletions, rewritten spools, kill -9 mid-import."""

from __future__ import annotations

import calendar
import gc
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
from migration import (
    AGENT_DISPLAY,
    SourceAccount,
    Target,
    install_target,
    kill_apply_when,
    mailplan,
    make_source,
    migrate_over_ssh,
    source_slice,
    source_with_mail,
    ssh_host,
    unique_domain,
    write_spec,
)
from sshd_fixture import login_shell_user
from tools import require
from writer_hold import writer_hold

from mailplan.connectors.local import LocalConnector
from mailplan.mail.maildir import parse_message_name
from mailplan.mail.windows import OPENED
from mailplan.remote import SHELL


def msg(sender: str, date: str, subject: str, extra: str = "", body: str = "hello\n") -> bytes:
    return (f"From {sender} {date}\nFrom: {sender}\nSubject: {subject}\n{extra}\n{body}\n"
            ).encode()


INBOX = (msg("a@x.example", "Mon Nov  2 10:00:00 2026", "unseen")
         + msg("b@x.example", "Tue Nov  3 11:30:00 2026", "read", "Status: RO\n")
         + msg("c@x.example", "Wed Nov  4 12:00:00 2026", "answered+flagged",
               "Status: RO\nX-Status: AF\n", body="line\n>From the archive\n"))
WORK = msg("d@x.example", "Thu Nov  5 09:00:00 2026", "work", "Status: O\n")
PYTHON = (b"From MAILER-DAEMON Fri Nov  6 00:00:00 2026\nDate: 06 Nov 2026\n"
          b"From: Mail System Internal Data <MAILER-DAEMON@old>\n"
          b"Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n"
          b"X-IMAP: 1234 0000000002\n\nThis text is part of the internal format.\n\n"
          + msg("e@x.example", "Sat Nov  7 08:00:00 2026", "list mail", "Status: RO\n"))


@pytest.fixture
def setup(request, tmp_path, sshd):
    """A source of three users and a target, both over the test sshd (under ``sudo -n``
    on both hosts when the test's ``setup`` parameter says ``"sudo"``, and as the test
    account whose login shell is tcsh when it says ``"tcsh"``)."""
    host = ssh_host(sshd)
    if getattr(request, "param", None) == "sudo":
        require(shutil.which("sudo"), "sudo")
        host = {**host, "sudo": True}
    if getattr(request, "param", None) == "tcsh":
        host = {**host, "user": login_shell_user(sshd, "tcsh"), "sudo": True}
    src = make_source(tmp_path / "source", [SourceAccount("alice", 1000, "Alice", "pw1"),
                                            SourceAccount("bob", 1001, "Bob", "pw2"),
                                            SourceAccount("carol", 1002, "Carol", "pw3")])
    (src / "var/spool/mail/alice").write_bytes(INBOX)
    mmdf = b"\x01\x01\x01\x01\nFrom: mmdf\n\nx\n\x01\x01\x01\x01\n"
    (src / "var/spool/mail/bob").write_bytes(mmdf)
    home = src / "home/alice"
    (home / "mail/Lists").mkdir(parents=True)
    (home / "mail/Work").write_bytes(WORK)
    (home / "mail/Lists/Python").write_bytes(PYTHON)
    (home / ".mailboxlist").write_text("mail/Work\n")
    target = install_target(tmp_path / "target")
    domain = unique_domain()
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      source_host=host, target_host=host,
                      domains={domain: {"import": {"uid_min": 1000},
                                        "users": [{"name": "carol", "quota": 50}]}})
    (src / "var/spool/mail/carol").write_bytes(WORK + WORK)
    return src, target, domain, spec


def maildir(target, address) -> Path:
    udir = target.tool("vuserinfo", "-d", address).stdout.decode().split("\n")[0]
    return Path(udir) / "Maildir"


def files(root: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for sub in ("new", "cur"):
        for f in sorted((root / sub).iterdir()):
            out.setdefault(sub, []).append(f)
    return out


@pytest.mark.parametrize("setup", ["root", "sudo", "tcsh"], indirect=True)
def test_import_bytes_flags_dates_and_idempotence(setup):
    src, target, domain, spec = setup
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"+ mailbox alice@{domain} INBOX" in plan
    assert "3 message(s)" in plan
    assert f"+ mailbox alice@{domain} Work" in plan
    assert f"+ mailbox alice@{domain} Lists/Python" in plan
    assert "1 UW-IMAP internal message skipped" in plan
    assert f"bob@{domain}: INBOX" in plan and "not readable as mail" in plan
    assert "MMDF" in plan
    assert f"carol@{domain}: mail to import (" in plan and "exceeds the quota (50B)" in plan
    # carol's mail is imported all the same: a warning, not among what is not migrated
    problems, _, rest = plan.partition("Problems (these are not migrated):")[2].partition(
        "Warnings (migrated all the same; look at them):")
    assert "exceeds the quota" not in problems and "exceeds the quota (50B)" in rest
    # all else is imported, and apply says, last, that bob's INBOX is not, and exits 3:
    # no exit 0 with mail left behind (mb2md's on an MMDF file)
    res = mailplan("apply", str(spec), "--auto-approve")
    applied = res.stdout
    assert res.returncode == 3, res.stderr
    assert applied.rstrip().splitlines()[-2:-1] == [
        "Not migrated: 1 problem(s) of the plan (listed with it, and in the log); exit "
        "status 3."]  # then the log's path
    log = re.search(r"Log: (\S+)", applied)[1]
    assert "not migrated: 1 " in Path(log).read_text()  # bob's MMDF spool, not carol
    # and so does each run while it stays, also one with nothing to apply; --quiet says
    # it on stderr alone
    res = mailplan("apply", str(spec), "--auto-approve", "--quiet")
    assert (res.returncode, res.stdout) == (3, "")
    assert res.stderr.startswith("Not migrated: 1 problem(s) of the plan (listed in the "
                                 "log "), res.stderr
    # carol's mailbox, larger than her quota, is imported whole: the same message twice
    # is two messages, and vpopmail's quota accounting counts both
    carol = files(maildir(target, f"carol@{domain}"))
    assert [f.read_bytes() for f in carol["cur"]] == [b"From: d@x.example\nSubject: work\n"
                                                      b"\nhello\n"] * 2
    sizes = (maildir(target, f"carol@{domain}") / "maildirsize").read_text().splitlines()
    assert sizes[0] == "50S" and [sum(int(x.split()[i]) for x in sizes[1:])
                                  for i in (0, 1)] == [2 * carol["cur"][0].stat().st_size, 2]
    root = maildir(target, f"alice@{domain}")
    inbox = files(root)
    assert sorted(f.name.split(":2,")[-1] for f in inbox["cur"]) == ["FRS", "S"]
    (unseen,) = inbox["new"]
    assert unseen.read_bytes() == (b"From: a@x.example\nSubject: unseen\n\nhello\n")
    assert int(unseen.stat().st_mtime) == calendar.timegm((2026, 11, 2, 10, 0, 0))
    flagged = next(f for f in inbox["cur"] if "answered" in f.read_text())
    assert flagged.name.endswith(":2,FRS")
    assert flagged.read_bytes().endswith(b"line\n>From the archive\n")  # mboxo: kept as stored
    assert b"Status:" not in flagged.read_bytes()
    name = parse_message_name(flagged.name)
    assert name is not None and name.size == flagged.stat().st_size
    st = root.stat()
    assert oct(st.st_mode & 0o777) == "0o700"
    assert (st.st_uid, st.st_gid) == (root.parent.stat().st_uid, root.parent.stat().st_gid)
    assert oct(flagged.stat().st_mode & 0o777) == "0o600"
    # as vpopmail makes them (reference 15-maildir-layout-permissions.md): every directory
    # 0700 and every file 0600, the user directory's owner and group; the subscription
    # files, maildirfolder, maildirsize and the ledger too
    for user in ("alice", "carol"):
        udir = maildir(target, f"{user}@{domain}").parent
        owner = (udir.stat().st_uid, udir.stat().st_gid)
        for p in [udir, *udir.rglob("*")]:
            got = (stat.S_IMODE(p.lstat().st_mode), p.lstat().st_uid, p.lstat().st_gid)
            assert got == ((0o700 if p.is_dir() else 0o600), *owner), p
    assert (root / ".Work/maildirfolder").exists()
    assert [f.name for f in (root / ".Lists.Python/cur").iterdir()][0].endswith(":2,S")
    assert "Work" in (root / "subscriptions").read_text()
    assert "Lists" not in (root / "subscriptions").read_text()  # not in ~/.mailboxlist
    assert "INBOX.Work" in (root / "courierimapsubscribed").read_text()
    assert not any((root / "tmp").iterdir())
    again = mailplan("plan", str(spec), "--detailed-exitcode")
    assert again.returncode == 0, again.stdout
    assert "No changes." in again.stdout
    verbose = mailplan("plan", "-v", str(spec), check=True).stdout
    assert "Work: its 1 message already imported" in verbose, verbose
    assert "INBOX: all 3 messages already imported" in verbose


@pytest.mark.parametrize("mboxrd", [False, True])
def test_messages_past_a_mebibyte_arrive_as_the_whole_file_reading_gives(tmp_path, sshd,
                                                                        mboxrd):
    """Messages larger than the reader holds whole (1 MiB of header room + a read) are
    streamed from the source's pipe, whose reads end wherever ssh's packets do: each
    arrives byte for byte as reading the spool file whole gives it, CRLF framing and
    (with mboxrd) deeply quoted From_ lines included, and a re-plan has nothing to do."""
    import io

    from mailplan.mail.mbox import read_mbox

    line = b"An attachment line, base64 or not: ABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
    quoted = b">" * 40 + b"From the archive, quoted forty deep\n>From once\n"
    big_lf = (b"From a@x.example Mon Nov  2 10:00:00 2026\nSubject: big lf\nStatus: RO\n\n"
              + (line * 997 + quoted) * 24 + b"end\n\n")
    crlf = line.replace(b"\n", b"\r\n")
    big_crlf = (b"From b@x.example Tue Nov  3 11:00:00 2026\r\nSubject: big crlf\r\n\r\n"
                + crlf * 21_000 + b"end\r\n\r\n")
    small = b"From c@x.example Wed Nov  4 12:00:00 2026\nSubject: small\n\nhello\n"
    spool = big_lf + big_crlf + small
    src = make_source(tmp_path / "source", [SourceAccount("big", 1000, "Big", "BigPw1")])
    (src / "var/spool/mail/big").write_bytes(spool)
    settle(src / "var/spool/mail/big")  # its last message has no framing blank line
    target = install_target(tmp_path / "target")
    domain = unique_domain()
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      source_host=ssh_host(sshd), target_host=ssh_host(sshd),
                      domains={domain: {"import": {"uid_min": 1000}}})
    if mboxrd:
        text = spec.read_text().replace("source:\n", "source:\n  mboxrd: true\n", 1)
        spec.write_text(text)
    mailplan("apply", str(spec), "--auto-approve", check=True)
    expected, _summary = read_mbox(io.BytesIO(spool), mboxrd=mboxrd)
    assert [len(body) > 1 << 20 for _e, body in expected] == [True, True, False]
    assert (b"\n" + b">" * 39 + b"From the archive" in expected[0][1]) is mboxrd  # unescaped
    root = maildir(target, f"big@{domain}")
    got = sorted(f.read_bytes() for sub in ("new", "cur") for f in (root / sub).iterdir())
    assert got == sorted(body for _e, body in expected)
    again = mailplan("plan", str(spec), "--detailed-exitcode")
    assert again.returncode == 0, again.stdout


def test_incremental_run_moves_only_new_mail_and_respects_deletions(setup):
    src, target, domain, spec = setup
    mailplan("apply", str(spec), "--auto-approve", check=True)
    root = maildir(target, f"alice@{domain}")
    # the user deletes a message on the new server
    victim = next(f for f in files(root)["cur"] if "read" in f.read_text())
    victim.unlink()
    spool = src / "var/spool/mail/alice"
    with open(spool, "ab") as fh:
        fh.write(msg("n@x.example", "Sun Nov  8 10:00:00 2026", "new one"))
        fh.write(msg("a@x.example", "Mon Nov  2 10:00:00 2026", "unseen"))  # same as #1
    plan = mailplan("plan", str(spec), check=True).stdout
    # a copy of a message before the checkpoint has the spool read whole (numbered by
    # the file, not by the copies imported: look_up_appended)
    assert "2 message(s)" in plan and "read from byte" not in plan, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    subjects = sorted(f.read_text().split("Subject: ")[1].split("\n")[0]
                      for sub in files(root).values() for f in sub)
    assert subjects == ["answered+flagged", "new one", "unseen", "unseen"]
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout
    # the old server's reader rewrites the spool (deletes the first message): full rescan,
    # still nothing to import, nothing duplicated
    spool.write_bytes(spool.read_bytes()[len(INBOX.split(b"\nFrom b@")[0]) + 1:])
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout
    # ... and its new end is recorded, so later plans stop reading it whole
    assert_settled_then_read_from_the_end(spec, f"alice@{domain}", spool)


def assert_settled_then_read_from_the_end(spec: Path, address: str, spool: Path) -> None:
    """A mailbox found complete is read whole until apply records where it ends (state
    only); after that, plans read only what follows."""
    plan = mailplan("plan", str(spec), "-v", check=True).stdout
    line = next(x for x in plan.splitlines() if f"{address}: INBOX: all" in x)
    assert f"apply records that it is complete through byte {spool.stat().st_size}" in line
    assert "read from byte" not in line
    res = mailplan("apply", str(spec), "--auto-approve", check=True).stdout
    assert "Nothing to apply." in res and "Recorded that" in res
    state = json.loads(spec.with_name("m.state.json").read_text())
    assert state["mail"][f"{address}/INBOX"]["checkpoint"]["offset"] == spool.stat().st_size
    plan = mailplan("plan", str(spec), "-v", check=True).stdout
    assert "No changes." in plan
    line = next(x for x in plan.splitlines() if f"{address}: INBOX: all" in x)
    assert f"read from byte {spool.stat().st_size}" in line and "apply records" not in line
    assert "Recorded that" not in mailplan("apply", str(spec), "--auto-approve",
                                           check=True).stdout


def test_state_file_deleted_does_not_duplicate(setup, tmp_path):
    src, target, domain, spec = setup
    mailplan("apply", str(spec), "--auto-approve", check=True)
    (tmp_path / "m.state.json").unlink()
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout
    assert_settled_then_read_from_the_end(spec, f"alice@{domain}",
                                          src / "var/spool/mail/alice")
    # without the import ledger a plan would not trust a checkpoint's count: none offered
    (maildir(target, f"alice@{domain}") / "mailplan-ledger").unlink()
    (tmp_path / "m.state.json").unlink()
    plan = mailplan("plan", str(spec), "-v", check=True).stdout
    line = next(x for x in plan.splitlines() if f"alice@{domain}: INBOX: all" in x)
    assert "No changes." in plan and "apply records" not in line


class CountingConnector(LocalConnector):
    """A local connector that counts the bytes its commands send back (``received``)."""

    received = 0

    def start(self, command: str):  # type: ignore[no-untyped-def]
        proc = super().start(command)
        read = proc.read

        def counted(size: int = 65536) -> bytes:
            data = read(size)
            self.received += len(data)
            return data  # type: ignore[no-any-return]

        proc.read = counted  # type: ignore[method-assign]
        return proc

def six_thousand(tmp_path: Path, **hosts: dict) -> tuple[bytes, Target, str, Path]:
    """A user "big" with 6000 messages of 2 KB: (spool bytes, target, domain, spec)."""
    src = make_source(tmp_path / "source", [SourceAccount("big", 1000, "Big", "BigPw1")])
    body = "x" * 2000 + "\n"
    data = b"".join(msg(f"s{i}@x.example", "Mon Nov  2 10:00:00 2026", f"m{i}", body=body)
                    for i in range(6000))
    (src / "var/spool/mail/big").write_bytes(data)
    target = install_target(tmp_path / "target")
    domain = unique_domain()
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}}, **hosts)
    return data, target, domain, spec


def assert_each_once(target: Target, domain: str) -> None:
    """All 6000 messages of big@domain are there, each once, and tmp/ is empty."""
    root = maildir(target, f"big@{domain}")
    names = [f.name for sub in files(root).values() for f in sub]
    assert len(names) == len({parse_message_name(n).identity for n in names}) == 6000
    assert not any((root / "tmp").iterdir())


def test_kill_during_import_then_rerun(tmp_path, sshd):
    data, target, domain, spec = six_thousand(tmp_path, source_host=ssh_host(sshd),
                                              target_host=ssh_host(sshd))
    kill_apply_when(spec, lambda data: b'"imported"' in data)
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert_each_once(target, domain)
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout
    state = json.loads((tmp_path / "m.state.json").read_text())
    box = state["mail"][f"big@{domain}/INBOX"]
    assert box["checkpoint"]["offset"] == len(data) and box["checkpoint"]["count"] == 6000
    # "imported" counts journaled messages, each once: the kill came with the first
    # journaled batch (2000); what the target made durable after it (the batches read
    # ahead and, once the read ended, the rest in one sync) is found on the target by the
    # re-run, not counted again
    assert 2000 <= box["imported"] <= 6000


def test_parallel_import_of_several_users(tmp_path, sshd):
    src = source_with_mail(tmp_path / "source", "p", [50 + i for i in range(5)])
    users = [f"p{i}" for i in range(5)]
    target = install_target(tmp_path / "target")
    domain = unique_domain()
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      source_host=ssh_host(sshd), target_host=ssh_host(sshd),
                      domains={domain: {"import": {"uid_min": 1000}}})
    out = mailplan("apply", str(spec), "--auto-approve", "--parallel", "3", check=True).stdout
    assert "Apply complete: 12 change(s) made." in out  # domain, catch-all, 5 users, 5 boxes
    for i, u in enumerate(users):
        root = maildir(target, f"{u}@{domain}")
        assert len(list((root / "new").iterdir())) == 50 + i
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert sum(b["imported"] for b in state["mail"].values()) == sum(50 + i for i in range(5))
    # the target's commands do not grow per user: one writer agent per worker (3), the
    # new users' directories asked for in one batch, no stat; owners as vpopmail made them
    (log,) = (tmp_path / "m.state.json.logs").glob("apply-*.log")
    text = log.read_text()
    assert text.count(f"started (stream over OpenSSH)\n    $ {AGENT_DISPLAY}") == 3
    asked = re.findall(r"\(batch \d+/(\d+), [0-9.]+s for the batch\)\n    \$ \S*/vuserinfo -d "
                       r"p\d@", text)
    assert asked == ["5"] * 5, asked
    target_commands = re.findall(r"\[newmail\][^\n]*\n    \$ ([^\n]*)", text)
    assert target_commands and not [c for c in target_commands if "stat -c" in c]
    for u in users:
        root = maildir(target, f"{u}@{domain}")
        user_dir = root.parent.stat()
        assert {(p.stat().st_uid, p.stat().st_gid) for p in [root, *root.rglob("*")]} == {
            (user_dir.st_uid, user_dir.st_gid)}


def test_the_checks_of_an_import_share_one_source_shell(tmp_path):
    """A mailbox of three sync batches is checked before each batch and at its end, and
    its checkpoint is read: all in the one long-lived source shell the plan's reads
    started, besides the read itself (each remote command is a shell start-up). On the
    target, the plan's reads, the account steps and the import's commands share one
    shell too, besides the writer agent."""
    from mailplan.apply import apply_plan
    from mailplan.engine import make_plan, state_path_for
    from mailplan.mail.agent_client import agent_command
    from mailplan.spec import load_spec
    from mailplan.state import State, locked

    src = make_source(tmp_path / "source", [SourceAccount("big", 1000, "Big", "BigPw1")])
    (src / "var/spool/mail/big").write_bytes(b"".join(
        msg(f"s{i}@x.example", "Mon Nov  2 10:00:00 2026", f"m{i}") for i in range(5000)))
    target = install_target(tmp_path / "target")
    spec = load_spec(write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                                domains={unique_domain(): {"import": {"uid_min": 1000}}}))
    started: list[str] = []
    target_started: list[str] = []

    class Source(LocalConnector):
        def start(self, command: str):  # type: ignore[no-untyped-def]
            started.append(command)
            return super().start(command)

    class Target(LocalConnector):
        def start(self, command: str):  # type: ignore[no-untyped-def]
            target_started.append(command)
            return super().start(command)

    path = state_path_for(spec)
    with locked(path):
        state = State.load(path)
        tgt = Target("newmail")
        planned = make_plan(spec, state, {"oldmail": Source("oldmail"), "newmail": tgt})
        planning = len(started)
        result = apply_plan(planned, state, prune=False)
        planned.close()
    assert any(c.kind == "user" for c in result.done)
    assert any(c.kind == "mailbox" for c in result.done)
    # the read itself, on the file the plan listed only (mail.windows.guarded)
    (read,) = started[planning:]
    assert read.startswith("( [ -f ") and "exec 3<" in read
    assert source_slice(OPENED, 0, 1).split(" ")[0] in read
    assert [c for c in started if c.startswith("/bin/sh")] == [SHELL], started
    assert target_started == [SHELL, agent_command(tgt.python)], target_started


def test_an_imports_read_has_the_files_ctime_from_the_listing_not_a_command(tmp_path,
                                                                              monkeypatch):
    """apply's read of a mailbox skips the digest of its checks while the file's ctime is
    still the one the plan's listing printed (mail.snapshot): it runs no command on the
    source to learn it (a round trip per mailbox). A file changed after the listing (a
    message flagged on the old server before its read) is hashed all the same."""
    import shlex

    from mailplan.apply import apply_plan
    from mailplan.engine import make_plan, state_path_for
    from mailplan.facts import source_mailbox
    from mailplan.spec import load_spec
    from mailplan.state import State, locked

    monkeypatch.setattr(source_mailbox, "CTIME_SETTLED", 0)  # (written just now)
    src = make_source(tmp_path / "source", [SourceAccount("ann", 1000, "Ann", "AnnPw1")])
    spool, work = src / "var/spool/mail/ann", src / "home/ann/mail/Work"
    spool.write_bytes(INBOX)
    work.parent.mkdir(parents=True)
    work.write_bytes(WORK)
    target = install_target(tmp_path / "target")
    domain = unique_domain()
    spec = load_spec(write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                                domains={domain: {"import": {"uid_min": 1000}}}))
    source, seen = LocalConnector("oldmail"), []
    path = state_path_for(spec)
    with locked(path):
        state = State.load(path)
        planned = make_plan(spec, state, {"oldmail": source, "newmail": LocalConnector("newmail")})
        listed = {mb.path: mb for job in planned.mail_jobs.values() for mb in [job.mailbox]}
        assert {p: mb.ctime_settled for p, mb in listed.items()} == {
            str(spool): True, str(work): True}
        work.write_bytes(WORK.replace(b"Status: O", b"Status: R"))  # same size, new ctime
        source.observer = lambda cmd, res, secs, note: seen.append((cmd, res))
        try:
            result = apply_plan(planned, state, prune=False)
        finally:
            planned.close()
    assert len([c for c in result.done if c.kind == "mailbox"]) == 2
    assert not [cmd for cmd, _res in seen if "date +%s" in cmd], seen  # no ctime read
    for mailbox, unchanged in ((spool, True), (work, False)):
        named = [(cmd, res) for cmd, res in seen if shlex.quote(str(mailbox)) in cmd]
        # the read (its start and its end) and one check, the end's
        (check,) = [res for cmd, res in named if "then echo unchanged" in cmd]
        assert (b"unchanged\n" in check.stdout) == unchanged, check.stdout
        assert (b"  -\n" in check.stdout) != unchanged, check.stdout  # sha1sum's digest
        assert len(named) == 3, named
    (imported,) = maildir(target, f"ann@{domain}").glob(".Work/cur/*")
    assert parse_message_name(imported.name).flags == "S"  # read as it was then: Status: R


def test_a_checkpoint_is_made_of_the_bytes_the_import_read(tmp_path, monkeypatch):
    """The old server rewrites the spool right after the import read it (a reader deletes
    the first message, new mail arrives): the checkpoint must describe what was read, not
    the rewritten file, or the next plan would start reading inside the new message."""
    from mailplan.apply import apply_plan
    from mailplan.engine import make_plan, state_path_for
    from mailplan.mail.agent_client import AgentClient
    from mailplan.spec import load_spec
    from mailplan.state import State, locked

    src = make_source(tmp_path / "source", [SourceAccount("ann", 1000, "Ann", "AnnPw1")])
    spool = src / "var/spool/mail/ann"
    old = [msg(f"s{i}@x.example", "Mon Nov  2 10:00:00 2026", f"m{i}") for i in range(20)]
    spool.write_bytes(b"".join(old))
    late = msg("late@x.example", "Tue Nov  3 10:00:00 2026", "late", body="y" * 9000 + "\n")
    target = install_target(tmp_path / "target")
    domain = unique_domain()
    spec = load_spec(write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                                domains={domain: {"import": {"uid_min": 1000}}}))
    real_refresh = AgentClient.refresh_quota

    def rewrite_then_refresh(self):  # type: ignore[no-untyped-def]
        with open(spool, "r+b") as fh:  # in place, as UW-IMAP rewrites a spool
            fh.write(b"".join(old[1:]) + late)
        return real_refresh(self)

    def apply_once() -> None:
        path = state_path_for(spec)
        with locked(path):
            state = State.load(path)
            planned = make_plan(spec, state, {"oldmail": LocalConnector("oldmail"),
                                              "newmail": LocalConnector("newmail")})
            try:
                apply_plan(planned, state, prune=False)
            finally:
                planned.close()

    monkeypatch.setattr(AgentClient, "refresh_quota", rewrite_then_refresh)
    apply_once()
    monkeypatch.setattr(AgentClient, "refresh_quota", real_refresh)
    apply_once()
    subjects = sorted(f.read_text().split("Subject: ")[1].split("\n")[0]
                      for sub in files(maildir(target, f"ann@{domain}")).values() for f in sub)
    assert subjects == sorted([f"m{i}" for i in range(20)] + ["late"])


def test_a_first_import_is_counted_on_the_source_not_read_by_the_plan(tmp_path, monkeypatch):
    """Nothing of the folder is on the target yet: the plan counts the From_ lines where
    the mailbox is (grep) and reads only its head, not the 3 MB; the count is exact for
    an mbox whose bodies hold lines that look like From_ lines but are not separators."""
    from mailplan.engine import make_plan
    from mailplan.spec import load_spec
    from mailplan.state import State

    src = make_source(tmp_path / "source", [SourceAccount("big", 1000, "Big", "BigPw1")])
    body = "From here on, text.\n>From a@b Mon Jan  1 10:00:00 2001\n" + "x" * 3000 + "\n"
    (src / "var/spool/mail/big").write_bytes(PYTHON.replace(b"list mail", b"m0") + b"".join(
        msg(f"s{i}@x.example", "Mon Nov  2 10:00:00 2026", f"m{i}", body=body)
        for i in range(1, 1000)))
    target = install_target(tmp_path / "target")
    domain = unique_domain()
    spec = load_spec(write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                                domains={domain: {"import": {"uid_min": 1000}}}))
    source = CountingConnector("oldmail")

    def plan() -> tuple[str, int]:
        source.received = 0
        planned = make_plan(spec, State.load(tmp_path / "m.state.json"),
                            {"oldmail": source, "newmail": LocalConnector("newmail")})
        planned.close()
        (change,) = [c for c in planned.plan.changes if c.kind == "mailbox"]
        assert change.after.startswith("1000 message(s)"), change.after
        assert "1 UW-IMAP internal message skipped" in change.after
        return change.after, source.received

    after, read = plan()
    assert "first import" in after and read < 200_000, read  # the spool is over 3 MB
    # a source without a grep that can count: the plan reads the mailbox instead
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "grep").write_text("#!/bin/sh\necho 'grep: unrecognized option' >&2\nexit 2\n")
    (fake / "grep").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    after, read = plan()
    assert "first import" not in after and read > 3_000_000


def test_a_saved_plan_resumes_after_a_kill_during_its_mail_import(tmp_path):
    """``mailplan apply PLAN.json`` killed mid-import and run again: the mailbox change
    is what is left of the saved one (fewer messages to go), not a new change."""
    # killed while the target's writer holds its second sync (the first batch durable
    # and journaled, nothing after it visible), not once the journal shows that batch:
    # three batches of 2000, and a loaded machine let the apply end before the kill
    hold = writer_hold(tmp_path)
    _data, target, domain, spec = six_thousand(
        tmp_path, target_host={"local": True, "python": str(hold.python)})
    saved = tmp_path / "p.json"
    mailplan("plan", str(spec), "-o", str(saved), check=True)
    hold.arm(2)
    proc = subprocess.Popen([sys.executable, "-m", "mailplan", "apply", str(saved)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        hold.wait(proc)
        assert b'"imported"' in (tmp_path / "m.state.json.journal").read_bytes()
    finally:
        proc.kill()
        proc.wait()
    assert (tmp_path / "m.state.json.journal").exists()  # killed mid-apply
    hold.held.unlink(missing_ok=True)  # its relay went with its input: nothing held
    mailplan("apply", str(saved), check=True)
    assert_each_once(target, domain)
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


def test_a_replan_of_unchanged_mailboxes_counts_ledgers_instead_of_listing_maildirs(
        tmp_path):
    """Right after the cutover most mailboxes are unchanged since their checkpoint: the
    plan then counts each folder's ledger lines on the target instead of listing every
    message file (6000 names here). A ledger that no longer holds what the checkpoint
    counted (a wiped or replaced Maildir) is not trusted: the Maildir is listed and the
    mailbox read whole, as before."""
    from mailplan.engine import make_plan
    from mailplan.spec import load_spec
    from mailplan.state import State

    data, target, domain, spec_path = six_thousand(tmp_path)
    mailplan("apply", str(spec_path), "--auto-approve", check=True)
    spec = load_spec(spec_path)
    target_conn = CountingConnector("newmail")

    def plan() -> tuple[str, int]:
        target_conn.received = 0
        planned = make_plan(spec, State.load(tmp_path / "m.state.json"),
                            {"oldmail": LocalConnector("oldmail"), "newmail": target_conn})
        planned.close()
        assert not planned.plan.changes
        (line,) = [n.reason for n in planned.plan.noops if "INBOX: all" in n.reason]
        return line, target_conn.received

    line, read = plan()
    assert f"all 6000 messages already imported (read from byte {len(data)}" in line
    assert read < 20_000, read  # listing the 6000 files reads over 300 kB
    ledger = maildir(target, f"big@{domain}") / "mailplan-ledger"
    ledger.write_bytes(b"".join(ledger.read_bytes().splitlines(keepends=True)[:-1]))
    line, read = plan()
    assert "all 6000 messages already imported" in line and "read from byte" not in line
    assert read > 300_000, read


def test_mailboxes_read_whole_are_compared_a_group_of_maildirs_at_a_time(tmp_path,
                                                                         monkeypatch):
    """Without a checkpoint (state file lost, or spools the old server rewrote since the
    last run: the usual state right after the cutover) every mailbox is read whole and
    compared with its folder's identities on the target. The plan lists those a group of
    Maildirs at a time (bounded by their ledgers' size) and drops each group's before the
    next, so its memory does not grow with the number of users; the plan is the same."""
    from mailplan import mailbox_reads
    from mailplan.engine import make_plan
    from mailplan.spec import load_spec
    from mailplan.state import State

    src = source_with_mail(tmp_path / "source", "g", [20, 21, 22, 23])
    target = install_target(tmp_path / "target")
    domain = unique_domain()
    spec_path = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                           domains={domain: {"import": {"uid_min": 1000}}})
    mailplan("apply", str(spec_path), "--auto-approve", check=True)
    (tmp_path / "m.state.json").unlink()
    for i in (1, 3):  # new mail for two of them
        with open(src / "var/spool/mail" / f"g{i}", "ab") as fh:
            fh.write(b"".join(msg(f"s{j}@x.example", "Mon Nov  2 10:00:00 2026", f"g{i}-{j}")
                              for j in range(20 + i, 25 + i)))
    asked: list[list[str]] = []
    held: list[weakref.ref] = []  # the identity sets of the groups listed before
    listed = mailbox_reads.read_maildirs

    def read_maildirs(conn, folders):  # type: ignore[no-untyped-def]
        gc.collect()
        assert all(ref() is None for ref in held), "an earlier group's identities are held"
        asked.append(sorted(Path(m).parent.name for m in folders))
        facts = listed(conn, folders)
        held.extend(weakref.ref(ids) for f in facts.values() for ids in f.ids.values())
        return facts

    monkeypatch.setattr(mailbox_reads, "read_maildirs", read_maildirs)
    spec = load_spec(spec_path)

    def plan() -> tuple[list[str], list[str]]:
        planned = make_plan(spec, State.load(tmp_path / "m.state.json"),
                            {"oldmail": LocalConnector("oldmail"),
                             "newmail": LocalConnector("newmail")})
        planned.close()
        return ([f"{c.user}: {c.after}" for c in planned.plan.changes if c.kind == "mailbox"],
                sorted(n.reason for n in planned.plan.noops if "INBOX" in n.reason))

    whole = plan()
    assert asked == [["g0", "g1", "g2", "g3"]]
    assert whole[0] == ["g1: 5 message(s), 210B to import into INBOX; 21 already imported",
                        "g3: 5 message(s), 210B to import into INBOX; 23 already imported"]
    assert len(whole[1]) == 2 and all("already imported" in n for n in whole[1])
    asked.clear()
    monkeypatch.setattr(mailbox_reads, "WHOLE_READ_LEDGER_BYTES", 1)  # every Maildir alone
    assert plan() == whole
    assert asked == [["g0"], ["g1"], ["g2"], ["g3"]]


def test_a_grown_mailbox_is_looked_up_on_the_target_by_its_new_digests_only(tmp_path):
    """A mailbox that grew since its checkpoint: the plan reads the appended messages and
    asks the target about their digests only, so what comes back (and what the plan
    holds) follows the new mail, not the 6000 messages of the folder, and messages
    already there (a run killed after they became durable, before they were journaled)
    are found. A byte-identical copy of a message before the checkpoint is numbered by a
    whole read: the ledger's copies may be more than the file's (the old server deleted
    one), so counting them could import it again."""
    from mailplan.engine import make_plan
    from mailplan.spec import load_spec
    from mailplan.state import State

    data, target, domain, spec_path = six_thousand(tmp_path)
    mailplan("apply", str(spec_path), "--auto-approve", check=True)
    state_path = tmp_path / "m.state.json"
    before = state_path.read_bytes()
    spool = tmp_path / "source/var/spool/mail/big"
    first = data[: data.index(b"\nFrom ", 1) + 1]
    with open(spool, "ab") as fh:
        fh.write(msg("n1@x.example", "Tue Nov  3 10:00:00 2026", "new 1")
                 + msg("n3@x.example", "Tue Nov  3 10:30:00 2026", "new 3")
                 + msg("n2@x.example", "Tue Nov  3 11:00:00 2026", "new 2"))
    target_conn = CountingConnector("newmail")

    def plan():  # type: ignore[no-untyped-def]
        target_conn.received = 0
        planned = make_plan(load_spec(spec_path), State.load(state_path),
                            {"oldmail": LocalConnector("oldmail"), "newmail": target_conn})
        planned.close()
        return planned.plan

    grown = plan()
    (change,) = grown.changes
    assert change.after.startswith("3 message(s)") and f"read from byte {len(data)}" in \
        change.after, change.after
    assert target_conn.received < 20_000, target_conn.received  # the listing is 300 kB+
    mailplan("apply", str(spec_path), "--auto-approve", check=True)
    root = maildir(target, f"big@{domain}")
    names = [f.name for sub in files(root).values() for f in sub]
    idents = {parse_message_name(n).identity for n in names}
    assert len(names) == len(idents) == 6003
    # as if that apply had been killed after its sync, before journaling it
    state_path.write_bytes(before)
    again = plan()
    assert not again.changes
    (line,) = [n.reason for n in again.noops if "INBOX: all" in n.reason]
    assert f"all 6003 messages already imported (read from byte {len(data)}" in line
    assert target_conn.received < 20_000, target_conn.received
    mailplan("apply", str(spec_path), "--auto-approve", check=True)
    with open(spool, "ab") as fh:
        fh.write(first)
    (copy,) = plan().changes
    assert copy.after.startswith("1 message(s)") and "read from byte" not in copy.after, \
        copy.after
    mailplan("apply", str(spec_path), "--auto-approve", check=True)
    idents = {parse_message_name(f.name).identity
              for sub in files(root).values() for f in sub}
    assert len(idents) == 6004
    sha0 = next(i[0] for i in idents if i[1] == 1)
    assert (sha0, 0) in idents  # the copy is occurrence 1 of message 0's digest


class StreamRecorder(LocalConnector):
    """A local target that keeps every stream it starts (the writer agents)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.streams: list = []

    def start_stream(self, command: str, *, display: str | None = None):  # type: ignore[no-untyped-def]
        proc = super().start_stream(command, display=display)
        self.streams.append(proc)
        return proc


def test_an_early_agent_goes_to_one_taker_and_one_nobody_took_is_stopped():
    from mailplan.errors import ConnectionLost
    from mailplan.importer import EarlyAgent

    target = StreamRecorder("newmail")
    early = EarlyAgent(target)
    proc = early.take()
    assert proc is target.streams[0] and early.take() is None
    proc.kill()
    EarlyAgent(target).discard()
    assert target.streams[1]._proc.wait(timeout=30) is not None  # stopped, not left running

    class Unreachable(LocalConnector):
        def start_stream(self, command: str, *, display: str | None = None):  # type: ignore[no-untyped-def]
            raise ConnectionLost("gone", host=self.name)

    assert EarlyAgent(Unreachable("newmail")).take() is None  # the importer starts its own


def test_an_apply_that_fails_before_its_mail_stops_the_agent_it_started_early(
        tmp_path, monkeypatch):
    from mailplan import apply
    from mailplan.apply import apply_plan
    from mailplan.engine import make_plan, state_path_for
    from mailplan.errors import StepFailed
    from mailplan.spec import load_spec
    from mailplan.state import State, locked

    src = make_source(tmp_path / "source", [SourceAccount("ann", 1000, "Ann", "AnnPw1")])
    (src / "var/spool/mail/ann").write_bytes(msg("s@x.example", "Mon Nov  2 10:00:00 2026", "m"))
    target = install_target(tmp_path / "target")
    spec = load_spec(write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                                domains={unique_domain(): {"import": {"uid_min": 1000}}}))
    target_conn = StreamRecorder("newmail")

    def refused(session, ctx, change):  # type: ignore[no-untyped-def]
        raise StepFailed("refused by the test", host="newmail", step=change.address)

    monkeypatch.setattr(apply, "execute", refused)
    path = state_path_for(spec)
    with locked(path):
        state = State.load(path)
        planned = make_plan(spec, state, {"oldmail": LocalConnector("oldmail"),
                                          "newmail": target_conn})
        assert any(c.kind == "mailbox" for c in planned.plan.changes)
        with pytest.raises(StepFailed, match="refused by the test"):
            apply_plan(planned, state, prune=False)
        planned.close()
    streams = target_conn.streams
    assert len(streams) == 1  # the agent, started while the accounts were being made
    assert streams[0]._proc.wait(timeout=30) is not None


def _small_spool_grown_past_a_window(tmp_path: Path) -> tuple[Path, Target, str, Path, bytes]:
    """A spool of 3 KB imported (its checkpoint's head window is the whole file), then
    grown past 4 KiB and imported again: (spool, target, domain, spec, the state file
    as the first run left it)."""
    src = make_source(tmp_path / "source", [SourceAccount("big", 1000, "Big", "BigPw1")])
    spool = src / "var/spool/mail/big"
    spool.write_bytes(b"".join(msg(f"s{i}@x.example", "Mon Nov  2 10:00:00 2026", f"m{i}")
                               for i in range(40)))
    target = install_target(tmp_path / "target")
    domain = unique_domain()
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    mailplan("apply", str(spec), "--auto-approve", check=True)
    earlier = (tmp_path / "m.state.json").read_bytes()
    first = spool.stat().st_size
    with open(spool, "ab") as fh:  # new mail (over 4 KiB of it), imported by a second run
        fh.write(b"".join(msg(f"n{i}@x.example", "Tue Nov  3 10:00:00 2026", f"n{i}")
                          for i in range(60)))
    assert first < 4096 < spool.stat().st_size - first
    mailplan("apply", str(spec), "--auto-approve", check=True)
    return spool, target, domain, spec, earlier


@pytest.mark.parametrize("journaled", [True, False])
def test_a_spool_that_grew_past_its_first_window_is_read_from_its_checkpoint(tmp_path,
                                                                            journaled):
    """A first checkpoint taken while the spool was smaller than the 4 KiB head window
    recorded the digest of the whole file; the next one (the import of the new mail,
    or a plan that finds the new mail already there because the run that imported it
    was stopped before journaling it) records the digest of the first 4 KiB now. Both
    were once recorded with the old digest, so every later plan read the mailbox whole
    once more."""
    spool, target, domain, spec, earlier = _small_spool_grown_past_a_window(tmp_path)
    if not journaled:
        (tmp_path / "m.state.json").write_bytes(earlier)
        plan = mailplan("plan", str(spec), "-v", check=True).stdout
        assert f"apply records that it is complete through byte {spool.stat().st_size}" \
            in plan, plan
        assert "Recorded that" in mailplan("apply", str(spec), "--auto-approve",
                                           check=True).stdout
    again = mailplan("plan", str(spec), "-v", check=True).stdout
    line = next(x for x in again.splitlines() if f"big@{domain}: INBOX: all" in x)
    assert f"read from byte {spool.stat().st_size}" in line and "apply records" not in line


def test_a_few_messages_found_after_the_checkpoint_advance_it(tmp_path):
    """A second run killed after its last batch became durable but before it was
    journaled (here: the state file as the first run left it), having imported less than
    4 KiB of new mail: the next plan reads from the old checkpoint and finds that mail
    on the target, and apply records the new end, as it does after more. It recorded
    nothing (the tail window of the new end was not all in the bytes read), so every
    later plan read from the old checkpoint, and a flag set in place afterwards on the
    old server (the size kept: a file no larger than its checkpoint is read whole when
    its time changed) went unseen, the file being larger than that old checkpoint."""
    src = make_source(tmp_path / "source", [SourceAccount("big", 1000, "Big", "BigPw1")])
    spool = src / "var/spool/mail/big"
    padded = "Status: O\nX-Keywords:   \n"  # c-client's padding, as in every message
    spool.write_bytes(b"".join(msg(f"s{i}@x.example", "Mon Nov  2 10:00:00 2026", f"m{i}",
                                   padded) for i in range(200)))
    target = install_target(tmp_path / "target")
    domain = unique_domain()
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    mailplan("apply", str(spec), "--auto-approve", check=True)
    earlier = (tmp_path / "m.state.json").read_bytes()
    first = spool.stat().st_size
    with open(spool, "ab") as fh:
        fh.write(msg("n@x.example", "Tue Nov  3 10:00:00 2026", "new one", padded))
    assert first > 4096 and spool.stat().st_size - first < 4096
    mailplan("apply", str(spec), "--auto-approve", check=True)
    (tmp_path / "m.state.json").write_bytes(earlier)
    plan = mailplan("plan", str(spec), "-v", check=True).stdout
    line = next(x for x in plan.splitlines() if f"big@{domain}: INBOX: all" in x)
    assert f"read from byte {first}" in line, plan
    assert f"apply records that it is complete through byte {spool.stat().st_size}" \
        in line, plan
    assert "Recorded that" in mailplan("apply", str(spec), "--auto-approve",
                                       check=True).stdout
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert state["mail"][f"big@{domain}/INBOX"]["checkpoint"]["offset"] \
        == spool.stat().st_size
    again = mailplan("plan", str(spec), "-v", check=True).stdout
    line = next(x for x in again.splitlines() if f"big@{domain}: INBOX: all" in x)
    assert f"read from byte {spool.stat().st_size}" in line and "apply records" not in line
    # the old server's reader marks m100 read in place, into the padding (c-client): the
    # size and both windows kept, only the time tells
    data = spool.read_bytes()
    head = b"Subject: m100\nStatus: O\nX-Keywords:   \n"
    with open(spool, "r+b") as fh:
        fh.write(data.replace(head, b"Subject: m100\nStatus: RO\nX-Keywords:  \n"))
    assert spool.stat().st_size == len(data) and head in data
    os.utime(spool, (spool.stat().st_mtime + 60,) * 2)
    flagged = mailplan("plan", str(spec), check=True).stdout
    assert "1 message(s) gain flags (S 1)" in flagged, flagged


def _stop_writer_before_its_ledger_lines(root: Path, how_many: int) -> None:
    """Leave a Maildir as a writer leaves it when it is stopped between renaming its last
    batch into view and appending that batch's ledger lines: the last ``how_many``
    messages are visible, their ledger lines are missing, and the writer's pending
    record (of a process that is gone) lists them."""
    import subprocess

    ledger = root / "mailplan-ledger"
    lines = ledger.read_bytes().splitlines(keepends=True)
    dropped = lines[-how_many:]
    ledger.write_bytes(b"".join(lines[:-how_many]))
    wanted = {tuple(line.decode().rstrip("\n").split("\t")[1:]) for line in dropped}
    fields = []
    for sub in ("new", "cur"):
        for f in (root / sub).iterdir():
            parsed = parse_message_name(f.name)
            if parsed is not None and (parsed.digest, str(parsed.occurrence)) in wanted:
                fields += ["", parsed.digest, str(parsed.occurrence)]
    assert len(fields) == 3 * how_many
    gone = subprocess.Popen(["true"])
    gone.wait()
    (root / f"mailplan-pending-{gone.pid}").write_bytes("\0".join(fields).encode())


@pytest.mark.parametrize("checkpoint", ["none", "earlier"])
def test_a_writer_stopped_before_its_ledger_lines_is_completed_by_the_next_apply(tmp_path,
                                                                                 checkpoint):
    """A run stopped between its last batch becoming visible and that batch's ledger
    lines leaves every message on the target but a ledger short of them. Only a writer
    opening the Maildir completes it; with no mail left to import none would, and every
    later plan would read the mailbox again (and a message the user deleted meanwhile
    would be imported again). The plan sees the writer's record and asks apply to open
    the Maildir: the lines come back, nothing is imported twice, and the next plan reads
    nothing. Whether the mailbox had no checkpoint (a first import: read whole) or an
    earlier one (an incremental run: the appended part is read)."""
    spool, target, domain, spec, earlier = _small_spool_grown_past_a_window(tmp_path)
    state = tmp_path / "m.state.json"
    root = maildir(target, f"big@{domain}")
    # ... which was stopped before its last ledger lines and before journaling its end
    _stop_writer_before_its_ledger_lines(root, 10)
    if checkpoint == "none":
        state.unlink()
    else:
        state.write_bytes(earlier)
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"+ mailbox big@{domain} INBOX" in plan, plan
    assert "completes the import record an interrupted run left" in plan
    before = sorted(f.name for sub in ("new", "cur") for f in (root / sub).iterdir())
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert sorted(f.name for sub in ("new", "cur") for f in (root / sub).iterdir()) == before
    assert len((root / "mailplan-ledger").read_bytes().splitlines()) == 100
    assert not list(root.glob("mailplan-pending-*"))
    again = mailplan("plan", str(spec), "-v", check=True).stdout
    assert "No changes." in again
    line = next(x for x in again.splitlines() if f"big@{domain}: INBOX: all" in x)
    assert f"read from byte {spool.stat().st_size}" in line, (line, state.read_text())


@pytest.mark.parametrize("then", ["deleted on the target", "delivered again"])
def test_a_stopped_writers_record_is_completed_also_when_the_spool_was_rewritten(tmp_path,
                                                                                 then):
    """The same, after the old server rewrote the spool (messages deleted there): the
    folder's ledger then holds at least as many lines as the spool has messages, and the
    plan would record the mailbox as complete (a checkpoint) without opening the Maildir,
    so the missing lines would wait. Then a message of that batch the user deletes on the
    new server came back at the next whole read, and the same message delivered again
    was counted as the one already there (numbered from the short ledger)."""
    def m(i: int) -> bytes:
        return msg(f"s{i}@x.example", f"Mon Nov  2 1{i % 10}:00:00 2026", f"m{i}",
                   body=f"hello {i}\n")

    src = make_source(tmp_path / "source", [SourceAccount("ursula", 1000, "Ursula", "pw")])
    spool = src / "var/spool/mail/ursula"
    spool.write_bytes(b"".join(m(i) for i in range(4)))
    target = install_target(tmp_path / "target")
    domain = unique_domain()
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    state = tmp_path / "m.state.json"
    mailplan("apply", str(spec), "--auto-approve", check=True)
    earlier = state.read_bytes()
    # the old server's reader deletes m0 and m1, m4 arrives; a run imports m4 and is
    # stopped after making it visible, before its ledger line and its journal entry
    spool.write_bytes(m(2) + m(3) + m(4))
    mailplan("apply", str(spec), "--auto-approve", check=True)
    root = maildir(target, f"ursula@{domain}")
    _stop_writer_before_its_ledger_lines(root, 1)
    state.write_bytes(earlier)
    plan = mailplan("plan", str(spec), check=True).stdout
    assert "completes the import record an interrupted run left" in plan, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert not list(root.glob("mailplan-pending-*"))

    def subjects() -> list[str]:
        return sorted(re.search(rb"Subject: (\S+)", f.read_bytes())[1].decode()
                      for sub in ("new", "cur") for f in (root / sub).iterdir())

    if then == "deleted on the target":
        next(f for sub in ("new", "cur") for f in (root / sub).iterdir()
             if b"Subject: m4\n" in f.read_bytes()).unlink()
        spool.write_bytes(m(3) + m(4) + m(5))  # rewritten again (m2 deleted), m5 arrives
        want = ["m0", "m1", "m2", "m3", "m5"]
    else:
        with spool.open("ab") as fh:
            fh.write(m(4))  # the same message delivered a second time
        want = ["m0", "m1", "m2", "m3", "m4", "m4"]
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert subjects() == want


@pytest.mark.ssh
@pytest.mark.parametrize("spelt", ["INBOX", "Inbox"])
def test_a_folder_file_named_INBOX_is_merged_not_lost(setup, spelt):
    """~/mail/INBOX is merged into the INBOX like any spelling of that name, and is a
    mailbox of its own beside the spool: both are imported, and later mail of both. The
    plan says it goes into the INBOX, however the file spells that name."""
    src, target, domain, spec = setup
    folder = src / "home/alice/mail" / spelt
    folder.write_bytes(WORK)
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"+ mailbox alice@{domain} INBOX\n" in plan
    file_item = "INBOX (folder file)" if spelt == "INBOX" else f"INBOX (folder file {spelt})"
    assert f"+ mailbox alice@{domain} {file_item}\n" in plan
    assert re.search(rf"{re.escape(file_item)}\n +1 message\(s\), \S+ to import into INBOX[ ;\n]",
                     plan), plan
    # its mail is migrated: noted with -v (Unchanged), not listed as a problem
    assert "is named INBOX" not in plan, plan
    assert "is named INBOX; merged into the INBOX" in mailplan(
        "plan", str(spec), "-v", check=True).stdout
    mailplan("apply", str(spec), "--auto-approve", check=True)
    root = maildir(target, f"alice@{domain}")

    def subjects() -> list[str]:
        return sorted(re.search(rb"Subject: (.*)", f.read_bytes())[1].decode()
                      for sub in files(root).values() for f in sub)

    assert subjects() == ["answered+flagged", "read", "unseen", "work"]
    with open(src / "var/spool/mail/alice", "ab") as fh:
        fh.write(msg("f@x.example", "Sun Nov  8 08:00:00 2026", "spool later"))
    with open(folder, "ab") as fh:
        fh.write(msg("g@x.example", "Sun Nov  8 09:00:00 2026", "folder later"))
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert subjects() == ["answered+flagged", "folder later", "read", "spool later",
                          "unseen", "work"]
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


def settle(path: Path) -> None:
    """Make a mailbox settled: not modified for longer than SETTLED_AFTER."""
    old = path.stat().st_mtime - 3600
    os.utime(path, (old, old))


def one_user(tmp_path: Path, spool: bytes) -> tuple[Path, Target, str, Path]:
    """A user "ursula" whose spool holds ``spool``: (spool path, target, domain, spec)."""
    src = make_source(tmp_path / "source", [SourceAccount("ursula", 1000, "Ursula", "UrsPw1")])
    path = src / "var/spool/mail/ursula"
    path.write_bytes(spool)
    target = install_target(tmp_path / "target")
    domain = unique_domain()
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    return path, target, domain, spec


def stored(target: Target, address: str) -> list[bytes]:
    root = maildir(target, address)
    return sorted(f.read_bytes() for sub in files(root).values() for f in sub)


def whole_read(data: bytes) -> list[bytes]:
    import io

    from mailplan.mail.mbox import read_mbox
    return sorted(body for _e, body in read_mbox(io.BytesIO(data))[0])


def test_a_delivery_in_progress_is_left_for_the_next_run(tmp_path):
    """A spool read while a delivery is writing its last message (m2 cut inside its body):
    that message is neither imported cut short nor checkpointed inside; once the rest
    and more mail arrived, every message is imported once, complete, without a warning."""
    m1, m2, m3 = (msg("s@x.example", f"Mon Nov  2 1{i}:00:00 2026", f"m{i}",
                      body=f"hello {i}\n") for i in (1, 2, 3))
    path, target, domain, spec = one_user(tmp_path, m1 + m2[:-8])  # ends "\n\nh"
    plan = mailplan("plan", str(spec), check=True).stdout
    assert "last message incomplete" in plan and "left for the next run" in plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert stored(target, f"ursula@{domain}") == whole_read(m1)
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert state["mail"][f"ursula@{domain}/INBOX"]["checkpoint"]["offset"] == len(m1)
    with path.open("ab") as fh:
        fh.write(m2[-8:] + m3)
    plan = mailplan("plan", str(spec), check=True)
    assert "skipped" not in plan.stdout + plan.stderr and "incomplete" not in plan.stdout
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert stored(target, f"ursula@{domain}") == whole_read(m1 + m2 + m3)
    (tmp_path / "m.state.json").unlink()
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


def test_a_last_message_without_a_newline_is_imported_once(tmp_path):
    """A last message without a trailing newline in a spool just written is left for the
    next run; once a delivery appended "\\nFrom ...", it is imported as a whole read
    gives it, so a plan without the state file finds everything there. In a settled
    (hand-made) mailbox such a message is final and imported as stored."""
    m1 = b"From s@x.example Mon Nov  2 10:00:00 2026\nFrom: s\nSubject: m1\n\nbody"
    m2 = b"\nFrom s@x.example Mon Nov  2 11:00:00 2026\nFrom: s\nSubject: m2\n\nbody2\n\n"
    path, target, domain, spec = one_user(tmp_path, m1)
    mailplan("apply", str(spec), "--auto-approve", check=True)
    with path.open("ab") as fh:
        fh.write(m2)
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert stored(target, f"ursula@{domain}") == whole_read(m1 + m2)
    (tmp_path / "m.state.json").unlink()
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert stored(target, f"ursula@{domain}") == whole_read(m1 + m2)

    path, target, domain, spec = one_user(tmp_path / "settled", m1)
    settle(path)
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert stored(target, f"ursula@{domain}") == [b"From: s\nSubject: m1\n\nbody"]


def _imported_settled_without_newline(tmp_path: Path):
    """A spool whose settled last message m1 has no final newline, beside a ~/mbox,
    imported: (a: the spool's first message, the spool, the target, the user's address,
    the spec, m1's length with a before it, what the INBOX holds)."""
    a = msg("a@x.example", "Mon Nov  2 10:00:00 2026", "twice")
    m1 = b"From s@x.example Mon Nov  2 11:00:00 2026\nFrom: s\nSubject: m1\n\nbody"
    path, target, domain, spec = one_user(tmp_path, a + m1)
    settle(path)
    home = path.parent.parent.parent.parent / "home/ursula"
    b = msg("b@x.example", "Tue Nov  3 10:00:00 2026", "in mbox")
    (home / "mbox").write_bytes(b)
    mailplan("apply", str(spec), "--auto-approve", check=True)
    once = sorted([*whole_read(a), b"From: s\nSubject: m1\n\nbody", *whole_read(b)])
    return a, path, target, f"ursula@{domain}", spec, len(a + m1), once


def _append_and_import(tmp_path: Path, path: Path, spec: Path, target: Target, address: str,
                       data: bytes, expected: list[bytes]) -> dict:
    """Append ``data`` to the spool; the plan shows one message to import, apply stores
    ``expected`` in all, and a plan after it has no changes. Return the state's INBOX
    checkpoint."""
    with path.open("ab") as fh:
        fh.write(data)
    domain = address.split("@")[1]
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"+ mailbox ursula@{domain} INBOX\n      1 message(s)" in plan, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert stored(target, address) == sorted(expected)
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout
    state = json.loads((tmp_path / "m.state.json").read_text())
    return state["mail"][f"{address}/INBOX"]["checkpoint"]


@pytest.mark.parametrize("lead", [b"\n", b"\r\n", b"", b"\n\n", b"\r\n\r\n"])
def test_a_settled_last_message_without_a_newline_is_not_imported_again_by_a_whole_read(
        tmp_path, lead):
    """A settled spool's last message without a final newline is imported as stored. A
    delivery then appends after it (with a line end first, that and a blank line, or
    right after it): a read
    from the checkpoint starts there, and so does a whole read (a spool beside ~/mbox
    whose appended message is a copy of one before the checkpoint is read whole): the
    earlier message is not imported a second time, the new one is imported once."""
    a, path, target, address, spec, end, once = _imported_settled_without_newline(tmp_path)
    assert stored(target, address) == once
    # the same message delivered again
    checkpoint = _append_and_import(tmp_path, path, spec, target, address, lead + a,
                                    [*once, *whole_read(a)])
    # the next checkpoint still says where that message ended: read whole again, the
    # spool gives it as it was imported
    assert checkpoint["ends"] == [end]
    _append_and_import(tmp_path, path, spec, target, address, a,
                       [*once, *whole_read(a), *whole_read(a)])
    # verify reads the spool as the imports did: nothing missing, nothing extra
    doc = json.loads(mailplan("verify", str(spec), "--json", "--full").stdout)
    row = next(f for f in doc["folders"] if f["folder"] == "INBOX")
    assert (row["source"], row["target"], row["ok"]) == (5, 5, True), row


@pytest.mark.parametrize("lead", [b"\n\n", b"\r\n\r\n", b"\n\r\n", b"\n\n\n"])
@pytest.mark.parametrize("later", [False, True], ids=["with-mail", "mail-later"])
def test_line_ends_written_after_a_settled_last_message_are_framing(tmp_path, lead, later):
    """A settled spool's last message without a final newline is imported as stored;
    then the old server writes its line end and a blank line (``lead``), and new mail
    after them (``later``: in a later run, the line ends alone first). The checkpoint
    still holds: the next runs import the new mail once, and that message is not
    imported a second time (as it was when only one line end before the From_ line
    was taken for framing: the checkpoint was dropped, the spool read whole)."""
    a, path, target, address, spec, end, once = _imported_settled_without_newline(tmp_path)
    new = msg("n@x.example", "Tue Nov  3 12:00:00 2026", "new")
    if later:
        with path.open("ab") as fh:
            fh.write(lead)
        settle(path)
        mailplan("apply", str(spec), "--auto-approve", check=True)
        assert stored(target, address) == once
    checkpoint = _append_and_import(tmp_path, path, spec, target, address,
                                    new if later else lead + new, [*once, *whole_read(new)])
    assert checkpoint["ends"] == [end]
    doc = json.loads(mailplan("verify", str(spec), "--json", "--full").stdout)
    row = next(f for f in doc["folders"] if f["folder"] == "INBOX")
    assert (row["source"], row["target"], row["ok"]) == (4, 4, True), row  # ~/mbox too


@pytest.mark.parametrize(("last", "extra"), [
    (b"hello\n\n", b"\n"),  # a message ending in its framing blank line, one more
    (b"hello\n\n", b"\r\n\n"),
    (b"hello\n", b"\n\n"),  # no blank line (a writer that puts it before the next)
])
@pytest.mark.parametrize("later", [False, True], ids=["with-mail", "mail-later"])
def test_extra_blank_lines_after_a_checkpoint_leave_the_message_before_it_as_imported(
        tmp_path, last, extra, later):
    """A settled spool imported through its last message ``last``; then the old server
    writes more line ends (``extra``) than that message's framing blank line before the
    next From_ line (``later``: in a run of their own first). A read from the checkpoint
    takes them as framing; a whole read (--rescan, verify) would give that message one
    more line, a message not on the target: it ends that message at the checkpoint as
    the import did (the plan's check of the checkpoint sees those line ends, and the
    next checkpoint lists that end), so --rescan and verify find it imported, nothing
    imported twice."""
    a = msg("a@x.example", "Mon Nov  2 10:00:00 2026", "first")
    m1 = b"From s@x.example Mon Nov  2 11:00:00 2026\nFrom: s\nSubject: m1\n\n" + last
    path, target, domain, spec = one_user(tmp_path, a + m1)
    settle(path)
    mailplan("apply", str(spec), "--auto-approve", check=True)
    address = f"ursula@{domain}"
    once = stored(target, address)
    assert once == sorted([*whole_read(a), *whole_read(m1)])
    new = msg("n@x.example", "Tue Nov  3 12:00:00 2026", "new")
    with path.open("ab") as fh:
        fh.write(extra if later else extra + new)
    if later:
        settle(path)
        assert "No changes." in mailplan("plan", str(spec), "--rescan", check=True).stdout
        mailplan("apply", str(spec), "--auto-approve", check=True)
        # verify too reads that message as the import did (the checkpoint lists no end)
        doc = json.loads(mailplan("verify", str(spec), "--json", "--full").stdout)
        row = next(f for f in doc["folders"] if f["folder"] == "INBOX")
        assert (row["source"], row["target"], row["ok"]) == (2, 2, True), row
        with path.open("ab") as fh:
            fh.write(new)
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"+ mailbox {address} INBOX\n      1 message(s)" in plan, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert stored(target, address) == sorted([*once, *whole_read(new)])
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert state["mail"][f"{address}/INBOX"]["checkpoint"]["ends"] == [len(a + m1)]
    plan = mailplan("plan", str(spec), "--rescan", check=True).stdout
    assert "No changes." in plan, plan
    doc = json.loads(mailplan("verify", str(spec), "--json", "--full").stdout)
    row = next(f for f in doc["folders"] if f["folder"] == "INBOX")
    assert (row["source"], row["target"], row["ok"]) == (3, 3, True), row


@pytest.mark.parametrize("lead", [b"\n", b"\r\n", b""])
def test_a_checkpoint_from_before_ends_were_recorded_still_ends_its_message(tmp_path, lead):
    """A state file written before checkpoints recorded where reads ended (no "ends"):
    its checkpoint's offset follows a settled last message without a final newline (the
    byte before it is no line end). The plan sees that in the window it reads to check
    the checkpoint, so a whole read after an append (a spool beside ~/mbox whose new
    message is a copy of an earlier one) ends that message there, as the import read
    it: it is not imported again, and the next checkpoint records that end."""
    a, path, target, address, spec, end, once = _imported_settled_without_newline(tmp_path)
    state_path = tmp_path / "m.state.json"
    state = json.loads(state_path.read_text())
    del state["mail"][f"{address}/INBOX"]["checkpoint"]["ends"]  # as an older version
    state_path.write_text(json.dumps(state))
    checkpoint = _append_and_import(tmp_path, path, spec, target, address, lead + a,
                                    [*once, *whole_read(a)])
    assert checkpoint["ends"] == [end]


NO_NEWLINE = b"From s@x.example Mon Nov  2 11:00:00 2026\nFrom: s\nSubject: m1\n\nbody"
# a Content-Length counting a final line end that was not written: past the end of the
# file the import read, consistent once "\nFrom ..." follows
LONGER = b"From c@x.example Mon Nov  2 09:00:00 2026\nContent-Length: 5\n\nbody"


A = msg("a@x.example", "Mon Nov  2 10:00:00 2026", "a")
# a Solaris delivery still being written: its body's From_ line is not quoted
SOLARIS = (b"From z@x.example Mon Nov  2 12:00:00 2026\nContent-Length: 900\n\npart\n"
           b"From y@x.example Mon Nov  2 12:00:00 2026\nnot a separator")


@pytest.mark.parametrize(("imported", "appended", "total", "todo", "held"), [
    # nothing appended, the spool touched since: that message stays as it was imported
    ([A, NO_NEWLINE], b"", 2, 0, None),
    # a delivery writing its From_ line right after it: nothing new yet
    ([A, NO_NEWLINE], b"\nFrom s@x", 2, 0, 0),
    ([A, NO_NEWLINE], b"\n\nFrom s@x", 2, 0, 0),
    # the line end and blank line a delivery writes first, nothing after them yet: no mail
    ([A, NO_NEWLINE], b"\n\n", 2, 0, None),
    # a Content-Length past the end then is no delivery being written now ...
    ([LONGER], b"\n" + A, 2, 1, None),
    ([LONGER, b"\n" + NO_NEWLINE], b"\n" + A, 3, 1, None),
    # ... but one past the end now is
    ([LONGER], b"\n" + SOLARIS, 1, 0, 1),
])
def test_a_whole_read_of_a_spool_not_settled_takes_what_earlier_reads_ended(
        tmp_path, imported, appended, total, todo, held):
    """A whole read of a spool being written to (not settled), given where an earlier
    read ended after a settled last message without a final line end: that message is
    final (it was imported as it was), not left for the next run, nor is a message
    before it whose Content-Length reached past that end. ``held``: where the read
    leaves the rest for the next run, after that end (None: nothing left)."""
    import io

    from mailplan.facts.mailbox_scan import scan_mailboxes
    from mailplan.facts.mailboxes import SourceMailbox
    from mailplan.mail.mbox import read_mbox

    first = b"".join(imported)
    path = tmp_path / "spool"
    path.write_bytes(first + appended)
    st = path.stat()
    known = {e.identity for e, _b in read_mbox(io.BytesIO(first))[0]}
    mb = SourceMailbox("d.example", "u", "INBOX", str(path), st.st_size, st.st_mtime,
                       st.st_ino, settled=False)
    (scan,) = scan_mailboxes(LocalConnector("old"), [(mb, 0, known)], mboxrd=False,
                             ends={str(path): [len(first)]})
    assert scan.error is None
    assert (scan.total, scan.todo, scan.held_back) == (total, todo, held is not None)
    assert scan.end == (st.st_size if held is None else len(first) + held)


@pytest.mark.ssh
def test_arrival_dates_are_read_in_the_source_time_zone(setup, tmp_path):
    """mail.local writes From_ dates in the server's local time: they are read in the
    zone of the source's /etc/localtime (here New York: EST in November, EDT in
    July), so IMAP's INTERNALDATE is the moment the mail arrived; source.timezone in
    the spec overrides it."""
    import shutil

    src, target, domain, spec = setup
    shutil.copyfile("/usr/share/zoneinfo/America/New_York", src / "etc/localtime")
    spool = src / "var/spool/mail/alice"
    spool.write_bytes(INBOX[:INBOX.index(b"From b@")]
                      + msg("z@x.example", "Wed Jul  1 09:00:00 2026", "summer"))
    mailplan("apply", str(spec), "--auto-approve", check=True)

    def arrivals() -> dict[str, int]:
        return {re.search(rb"Subject: (.*)", f.read_bytes())[1].decode(): int(f.stat().st_mtime)
                for sub in files(maildir(target, f"alice@{domain}")).values() for f in sub}

    assert arrivals() == {"unseen": calendar.timegm((2026, 11, 2, 15, 0, 0)),
                          "summer": calendar.timegm((2026, 7, 1, 13, 0, 0))}
    # the spec's zone wins (an invalid one is refused by validate, naming the key)
    text = spec.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("source:\n", "source:\n  timezone: Mars/Olympus\n", 1))
    res = mailplan("validate", str(bad))
    assert res.returncode != 0 and "timezone" in res.stderr and "Mars/Olympus" in res.stderr


@pytest.mark.ssh
def test_the_quota_warning_counts_what_earlier_applies_imported(setup):
    """A user over quota after the first import stays warned about when a little more
    mail arrives: the plan adds what earlier applies imported to what it will import."""
    src, target, domain, spec = setup
    spec.write_text(spec.read_text().replace("quota: 50", "quota: 200"))
    assert "carol@" not in "".join(
        line for line in mailplan("plan", str(spec), check=True).stdout.splitlines()
        if "exceeds the quota" in line)
    mailplan("apply", str(spec), "--auto-approve", check=True)
    with open(src / "var/spool/mail/carol", "ab") as fh:
        fh.write(msg("f@x.example", "Sun Nov  8 08:00:00 2026", "more", body="x" * 150 + "\n"))
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"carol@{domain}: mail to import (" in plan
    assert "with what earlier applies imported (" in plan and "exceeds the quota (200B)" in plan


@pytest.mark.parametrize(("folders", "listed", "expected"), [
    ("mail", ["mail/Work", "Work", "INBOX", "mail/"], {"Work"}),
    # c-client names a folder relative to the home directory: source.folders: Mail
    ("Mail", ["Mail/Work", "~/Mail/Lists/python", "@HOME@/Mail/Arch", "mail/Other"],
     {"Work", "Lists/python", "Arch"}),
    (".", ["Work", "~/Sent"], {"Work", "Sent"}),
    # a line is the name as c-client wrote it: a space at either end is the folder's own
    # ('Sent ' is not Sent); only the line end goes, CRLF's too
    ("mail", ["mail/Sent ", " mail/Lists", "mail/ Drafts", "mail/Work\r"],
     {"Sent ", " Drafts", "Work"}),
])
def test_subscriptions_follow_the_folders_directory(tmp_path, folders, listed, expected):
    from mailplan.connectors.local import LocalConnector
    from mailplan.facts.mailboxes import MailboxRef
    from mailplan.facts.source import read_source
    from mailplan.mailboxes import source_subscriptions

    src = make_source(tmp_path / "source", [SourceAccount("alice", 1000, "Alice", "pw1")])
    home = src / "home/alice"
    (home / ".mailboxlist").write_text(
        "".join(f"{e.replace('@HOME@', str(home))}\n" for e in listed))
    conn = LocalConnector("old")
    source = read_source(conn, str(src / "etc/passwd"), str(src / "etc/shadow"))
    path = str(home) if folders == "." else f"{home}/{folders}"
    ref = MailboxRef("d.example", "alice", "alice", str(src / "var/spool/mail/alice"), path)
    assert source_subscriptions(conn, [ref], source) == {("d.example", "alice"): expected}


@pytest.mark.parametrize("folders", ["mail", "."])
def test_a_home_mbox_is_imported_into_the_inbox(tmp_path, folders):
    """Once ~/mbox exists, UW-IMAP keeps the INBOX there (its c-client moves the spool's
    mail into it): imported into the INBOX beside the spool, never as a folder "mbox"
    (also when the folders directory is the home directory itself)."""
    path, target, domain, spec = one_user(
        tmp_path, msg("a@x.example", "Mon Nov  2 10:00:00 2026", "in the spool"))
    home = path.parent.parent.parent.parent / "home/ursula"
    (home / "mbox").write_bytes(msg("b@x.example", "Tue Nov  3 10:00:00 2026", "moved")
                                + msg("c@x.example", "Wed Nov  4 10:00:00 2026", "read"))
    if folders != "mail":
        spec.write_text(spec.read_text().replace("source:\n", f"source:\n  folders: {folders}\n"))
    plan = mailplan("plan", str(spec), "-v", check=True).stdout
    assert f"+ mailbox ursula@{domain} INBOX (~/mbox)\n" in plan, plan
    assert "holds INBOX mail (UW-IMAP keeps the INBOX there" in plan
    # its mail is migrated: noted with -v (Unchanged), not listed as a problem
    assert "Problems" not in plan
    assert "holds INBOX mail" not in mailplan("plan", str(spec), check=True).stdout
    mailplan("apply", str(spec), "--auto-approve", check=True)
    root = maildir(target, f"ursula@{domain}")
    assert [d.name for d in root.iterdir() if d.name.startswith(".")] == []  # no ".mbox"
    assert sorted(re.search(rb"Subject: (.*)", b)[1] for b in stored(
        target, f"ursula@{domain}")) == [b"in the spool", b"moved", b"read"]
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


PSEUDO_ONLY = PYTHON[:PYTHON.index(b"From e@x.example")]


@pytest.mark.parametrize("state", ["older", "deleted"])
def test_a_folder_deleted_on_the_target_stays_deleted_without_the_states_record(setup,
                                                                             tmp_path,
                                                                             state):
    """A folder imported by a run the state file does not know of (restored from a
    backup older than the target, or deleted) and then deleted by the user on the new
    server: its messages are in the Maildir's ledger, so nothing is imported again, and
    the folder is not made again either (it was, empty: the plan looked only at the
    state's record)."""
    src, target, domain, spec = setup
    mailplan("apply", str(spec), "--auto-approve", check=True)
    earlier = (tmp_path / "m.state.json").read_bytes()
    (src / "home/alice/mail/Later").write_bytes(
        msg("l@x.example", "Mon Nov  9 10:00:00 2026", "later"))
    mailplan("apply", str(spec), "--auto-approve", check=True)
    root = maildir(target, f"alice@{domain}")
    assert any((root / ".Later/new").iterdir())
    shutil.rmtree(root / ".Later")  # the user deletes the folder (dovecot's DELETE)
    if state == "older":
        (tmp_path / "m.state.json").write_bytes(earlier)
    else:
        (tmp_path / "m.state.json").unlink()
    plan = mailplan("plan", str(spec), check=True).stdout
    assert "Later" not in plan and "No changes." in plan, plan
    # verify agrees: explained, not "missing (`mailplan apply` creates it)", a failure
    # no apply could mend
    res = mailplan("verify", str(spec))
    assert res.returncode == 0, res.stdout + res.stderr
    later = res.stdout[res.stdout.index(" Later "):]
    assert "folder deleted by the user on the target (not a failure)" in later, res.stdout
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert not (root / ".Later").exists()


@pytest.mark.parametrize("state", ["kept", "deleted"])
def test_a_folder_deleted_on_the_target_is_made_again_for_new_mail_and_the_plan_says_so(
        setup, tmp_path, state):
    """A folder mailplan imported into that the user then deleted on the new server gets
    new mail on the old server: the new messages are imported (mail is never dropped),
    which makes the folder again with them only (the ones imported before are not brought
    back), and the plan says so, as a warning too, so the administrator can decide before
    apply (it said only "+ mailbox ... 1 message(s)"). With the state file or without it
    (the Maildir's ledger names the folder). verify agrees before and after."""
    src, target, domain, spec = setup
    later = src / "home/alice/mail/Later"
    later.write_bytes(msg("l@x.example", "Mon Nov  9 10:00:00 2026", "later")
                      + msg("m@x.example", "Mon Nov  9 11:00:00 2026", "later too"))
    mailplan("apply", str(spec), "--auto-approve", check=True)
    root = maildir(target, f"alice@{domain}")
    shutil.rmtree(root / ".Later")  # the user deletes the folder (dovecot's DELETE)
    if state == "deleted":
        (tmp_path / "m.state.json").unlink()
    with later.open("ab") as f:
        f.write(msg("n@x.example", "Tue Nov 10 10:00:00 2026", "new"))
    plan = mailplan("plan", str(spec), check=True).stdout
    assert (f"+ mailbox alice@{domain} Later\n      1 message(s), ") in plan, plan
    assert ("to import into Later (read from byte 170: unchanged before)" if state == "kept"
            else "to import into Later; 2 already imported") in plan, plan
    assert ("; the user deleted or renamed the folder on the new server: made again with "
            "only these (the 2 imported before are not brought back)\n") in plan, plan
    assert (f"! alice@{domain}: folder Later was deleted or renamed on the new server by the "
            "user after mailplan imported into it: apply makes it again with only the 1 new "
            "message(s) from the old server (the 2 imported before are not brought back; mail "
            "is never dropped: to keep the folder deleted, the user deletes it again after the "
            "apply)"
            ) in plan.split("Warnings")[1], plan
    # verify says the same: the new message is missing (a failure until the apply), the
    # others deleted by the user, and the folder is made again with the missing one only
    res = mailplan("verify", str(spec))
    assert res.returncode == 3, res.stdout + res.stderr
    later = res.stdout[res.stdout.index(" Later "):]
    later = later[:later.index(" Lists/Python ")]
    assert re.search(r"Later +3 +0 +1 +0 +0 +0 +0 +2\n", later), later
    assert ("folder deleted by the user on the target after mailplan imported into it (not "
            "a failure); `mailplan apply` makes it again with only the 1 message(s) missing "
            "(those deleted are not brought back)") in later, later
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert [re.search(rb"Subject: (.*)", p.read_bytes())[1]
            for sub in files(root / ".Later").values() for p in sub] == [b"new"]
    res = mailplan("verify", str(spec))
    assert res.returncode == 0, res.stdout + res.stderr
    later = res.stdout[res.stdout.index(" Later "):]
    assert re.search(r"Later +3 +1 +0 +0 +0 +0 +0 +2\n", later), later
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout
    # show counts what apply imported (the count the plan's "already imported" is), not
    # what the user kept
    if state == "kept":
        assert "Later 3" in mailplan("show", str(spec), check=True).stdout


@pytest.mark.parametrize("state", ["older", "deleted"])
def test_an_empty_folder_deleted_on_the_target_stays_deleted_without_the_states_record(
        setup, tmp_path, state):
    """A folder mailplan made with no message in it (UW-IMAP's internal message only)
    and the user then deleted on the new server, after which the state file was lost or
    restored from a backup older than the folder: no message line names it, but the
    writer's ``dir TAB folder`` line does, so it is not made again (it was: nothing on
    the target said mailplan had made it). A folder never made is still made, and the
    line counts as no message."""
    src, target, domain, spec = setup
    mailplan("apply", str(spec), "--auto-approve", check=True)
    earlier = (tmp_path / "m.state.json").read_bytes()
    mail = src / "home/alice/mail"
    (mail / "Sent").write_bytes(PSEUDO_ONLY)
    mailplan("apply", str(spec), "--auto-approve", check=True)
    root = maildir(target, f"alice@{domain}")
    assert (root / ".Sent/cur").is_dir()
    assert ".Sent\tfolder\n" in (root / "mailplan-ledger").read_text()
    shutil.rmtree(root / ".Sent")  # the user deletes the folder (dovecot's DELETE)
    if state == "older":
        (tmp_path / "m.state.json").write_bytes(earlier)
    else:
        (tmp_path / "m.state.json").unlink()
    (mail / "Drafts").write_bytes(b"")  # never on the target: made
    plan = mailplan("plan", str(spec), check=True).stdout
    assert "Sent" not in plan, plan
    assert f"+ mailbox alice@{domain} Drafts\n      0 messages; create the folder\n" in plan
    (mail / "Drafts").unlink()  # verify of Sent alone: explained, as the plan has it
    res = mailplan("verify", str(spec))
    assert res.returncode == 0, res.stdout + res.stderr
    sent = res.stdout[res.stdout.index(" Sent "):]
    assert "folder deleted by the user on the target (not a failure)" in sent, res.stdout
    (mail / "Drafts").write_bytes(b"")
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert not (root / ".Sent").exists()
    assert (root / ".Drafts/cur").is_dir()
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


def test_empty_folders_are_created_and_subscribed_once(setup):
    """A folder with no message to import (an empty file, an empty nested one, one holding
    only UW-IMAP's internal message) is still made on the target and subscribed as on the
    source; a re-plan finds nothing to do, a folder already there is not made again, and
    one the user deleted on the new server after mailplan made it stays deleted."""
    src, target, domain, spec = setup
    mail = src / "home/alice/mail"
    (mail / "Archive").write_bytes(b"")
    (mail / "Sent").write_bytes(PSEUDO_ONLY)
    (mail / "Projects").mkdir()
    (mail / "Projects/Old").write_bytes(b"")
    (mail / "Drafts").write_bytes(b"")  # not in ~/.mailboxlist: made, not subscribed
    (src / "home/alice/.mailboxlist").write_text(
        "mail/Work\nmail/Archive\nmail/Sent\nmail/Projects/Old\n")
    address = f"alice@{domain}"
    plan = mailplan("plan", str(spec), check=True).stdout
    for folder in ("Archive", "Projects/Old"):
        assert (f"+ mailbox {address} {folder}\n"
                "      0 messages; create the folder, subscribed as on the source\n") in plan
    assert (f"+ mailbox {address} Sent\n      0 messages; create the folder, subscribed as "
            "on the source; 1 UW-IMAP internal message skipped\n") in plan
    assert f"+ mailbox {address} Drafts\n      0 messages; create the folder\n" in plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    root = maildir(target, address)
    owner = (root.stat().st_uid, root.stat().st_gid)
    for name in (".Archive", ".Sent", ".Projects.Old", ".Drafts"):
        folder = root / name
        for path in (folder, folder / "cur", folder / "new", folder / "tmp"):
            assert oct(path.stat().st_mode & 0o7777) == "0o700", path
            assert (path.stat().st_uid, path.stat().st_gid) == owner, path
        assert (folder / "maildirfolder").stat().st_uid == owner[0]
        assert not any(any((folder / sub).iterdir()) for sub in ("cur", "new", "tmp"))
    assert not (root / ".Projects").exists()  # a directory on the source: no mailbox
    subscriptions = (root / "subscriptions").read_text().split()
    assert sorted(subscriptions) == ["Archive", "Projects.Old", "Sent", "Work"]
    assert "INBOX.Sent" in (root / "courierimapsubscribed").read_text().split()
    again = mailplan("plan", str(spec), "--detailed-exitcode")
    assert again.returncode == 0, again.stdout
    assert "No changes." in again.stdout
    assert mailplan("verify", str(spec)).returncode == 0
    # a new empty folder on the source is made on the next run; one the user already made
    # on the new server is left alone, and one the user deleted there is not made again
    (mail / "Trash").write_bytes(b"")
    (mail / "Junk").write_bytes(b"")
    shutil.copytree(root / ".Drafts", root / ".Junk", symlinks=True)
    for sub in ("cur", "new", "tmp"):
        (root / ".Drafts" / sub).rmdir()
    (root / ".Drafts/maildirfolder").unlink()
    (root / ".Drafts").rmdir()
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"+ mailbox {address} Trash\n      0 messages; create the folder\n" in plan
    assert "Junk" not in plan and "Drafts" not in plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert (root / ".Trash/cur").is_dir() and not (root / ".Drafts").exists()
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout
    assert mailplan("verify", str(spec)).returncode == 0
    # without a ~/.mailboxlist every folder is subscribed, and the plan says so
    (src / "home/alice/.mailboxlist").unlink()
    (mail / "Receipts").write_bytes(b"")
    plan = mailplan("plan", str(spec), check=True).stdout
    assert (f"+ mailbox {address} Receipts\n      0 messages; create the folder, subscribed "
            "(the source has no ~/.mailboxlist: every folder is)\n") in plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert "Receipts" in (root / "subscriptions").read_text().split()


def test_verify_compares_every_file_that_feeds_the_inbox(tmp_path):
    # the spool and ~/mbox both feed the INBOX: verify reads both, not the first only
    path, target, domain, spec = one_user(
        tmp_path, msg("a@x.example", "Mon Nov  2 10:00:00 2026", "in the spool"))
    home = path.parent.parent.parent.parent / "home/ursula"
    (home / "mbox").write_bytes(msg("b@x.example", "Tue Nov  3 10:00:00 2026", "moved"))
    mailplan("apply", str(spec), "--auto-approve", check=True)

    def inbox() -> dict:
        doc = json.loads(mailplan("verify", str(spec), "--json", "--full").stdout)
        return next(f for f in doc["folders"] if f["folder"] == "INBOX")

    row = inbox()
    assert (row["source"], row["target"], row["ok"]) == (2, 2, True), row
    # the spool's message lost on the target (its file and its ledger line): missing
    root = maildir(target, f"ursula@{domain}")

    def lose(subject: bytes) -> str:
        (lost,) = [f for sub in files(root).values() for f in sub
                   if b"Subject: " + subject in f.read_bytes()]
        digest = parse_message_name(lost.name).digest
        ledger = root / "mailplan-ledger"
        ledger.write_text("".join(ln for ln in ledger.read_text().splitlines(keepends=True)
                                  if digest not in ln))
        lost.unlink()
        return f"{digest[:12]}#0"

    spooled = lose(b"in the spool")
    row = inbox()
    assert not row["ok"] and row["missing"] == [spooled], row
    # ~/mbox's too: each is said to be where it is, in the file that holds it
    moved = lose(b"moved")
    row = inbox()
    assert sorted(row["missing"]) == sorted([spooled, moved])
    assert {ident: (at["path"], at["message"], at["offset"], at["arrival_utc"])
            for ident, at in row["on_source"].items()} == {
        spooled: (str(path), 1, 0, "2026-11-02 10:00:00 UTC"),
        moved: (str(home / "mbox"), 1, 0, "2026-11-03 10:00:00 UTC")}, row


@pytest.mark.parametrize(("decode", "expected"), [
    (False, ["Entw&APw-rfe", "Sales&Ops-2024"]),  # the default: names as they are
    (True, ["Entwürfe", "Sales\u3a9b2024"]),  # opted in: what looks encoded is decoded
])
def test_source_folder_names_are_decoded_only_when_asked(tmp_path, decode, expected):
    # an ordinary name can look like modified UTF-7 (Sales&Ops-2024): decoding is the
    # spec's choice (source.folder_names: mutf7), never a guess made for everyone
    from mailplan.connectors.local import LocalConnector
    from mailplan.facts.mailboxes import MailboxRef, list_source_mailboxes

    folders = tmp_path / "home/ann/mail"
    folders.mkdir(parents=True)
    for name in ("Entw&APw-rfe", "Sales&Ops-2024"):
        (folders / name).write_bytes(msg("a@x.example", "Mon Nov  2 10:00:00 2026", name))
    ref = MailboxRef("d.example", "ann", "ann", str(tmp_path / "spool/ann"), str(folders),
                     str(tmp_path / "home/ann"), decode)
    mailboxes, _notes = list_source_mailboxes(LocalConnector("old"), [ref])
    assert sorted(mb.folder for mb in mailboxes) == expected


def test_keywords_of_messages_appended_since_a_checkpoint_are_compared(tmp_path):
    # a message c-client moved into ~/mbox (appended: read from ~/mbox's checkpoint and
    # found on the target by its digest) is compared for its IMAP keywords as for its
    # flags: one labelled on the old server meanwhile gains the label's letter, one whose
    # file has its labels already gains nothing, and the plan settles
    a = msg("a@x.example", "Mon Nov  2 10:00:00 2026", "labelled", "Status: RO\n"
            "X-Keywords: Work\n")
    b = msg("b@x.example", "Tue Nov  3 10:00:00 2026", "kept", "Status: RO\n"
            "X-Keywords: Work\n")
    path, target, domain, spec = one_user(
        tmp_path, msg("e@x.example", "Sun Nov  1 10:00:00 2026", "first"))
    home = path.parent.parent.parent.parent / "home/ursula"
    (home / "mbox").write_bytes(msg("c@x.example", "Wed Nov  4 10:00:00 2026", "there"))
    mailplan("apply", str(spec), "--auto-approve", check=True)
    # a and b arrive in the spool after ~/mbox's checkpoint was recorded: their ledger
    # lines come after it, so a read from that checkpoint numbers them as appended
    path.write_bytes(a + b)
    mailplan("apply", str(spec), "--auto-approve", check=True)
    address = f"ursula@{domain}"
    root = maildir(target, address)
    with (home / "mbox").open("ab") as fh:
        fh.write(a.replace(b"X-Keywords: Work\n", b"X-Keywords: Work $Label1\n")
                 + b + msg("d@x.example", "Thu Nov  5 10:00:00 2026", "new"))
    path.write_bytes(b"")
    plan = mailplan("plan", str(spec), check=True).stdout
    assert "1 message(s), " in plan, plan  # only d is imported: a and b are there
    assert f"~ flags {address} INBOX (~/mbox): 1 message(s) gain flags (keywords 1)" \
        in plan, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    names = {f.read_text().split("Subject: ")[1].split("\n")[0]:
             f.name.partition(":2,")[2] for f in files(root)["cur"]}
    assert {k: names[k] for k in ("labelled", "kept")} == {
        "labelled": "Sab", "kept": "Sa"}, names
    assert (root / "dovecot-keywords").read_text().split("\n")[:2] == ["0 Work", "1 $Label1"]
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


def test_mail_c_client_moves_into_the_home_mbox_is_not_imported_again(tmp_path):
    # UW-IMAP's c-client moves the spool's mail into ~/mbox (adding its bookkeeping
    # headers, which are not part of the stored message): a message already imported
    # from the spool and now appended to ~/mbox is the same message, as a whole read of
    # ~/mbox (or a plan without the state file) finds; a read from ~/mbox's checkpoint
    # must not number it after the spool's copy and import it a second time
    a = msg("a@x.example", "Mon Nov  2 10:00:00 2026", "in the spool")
    path, target, domain, spec = one_user(tmp_path, a)
    home = path.parent.parent.parent.parent / "home/ursula"
    b = msg("b@x.example", "Tue Nov  3 10:00:00 2026", "moved before")
    (home / "mbox").write_bytes(b)
    mailplan("apply", str(spec), "--auto-approve", check=True)
    address = f"ursula@{domain}"
    assert len(stored(target, address)) == 2
    moved = a.replace(b"Subject: in the spool\n", b"Subject: in the spool\nStatus: RO\n"
                      b"X-Status: \nX-Keywords: \nX-UID: 2\n")
    with (home / "mbox").open("ab") as fh:
        fh.write(moved)
    path.write_bytes(b"")
    plan = mailplan("plan", str(spec), check=True).stdout
    # nothing to import; it was read on the old server meanwhile (Status: RO): \Seen
    assert "+ mailbox" not in plan and "Plan: 0 to create, 1 to change" in plan, plan
    assert f"~ flags {address} INBOX (~/mbox): 1 message(s) gain flags (S 1)" in plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert len(stored(target, address)) == 2
    # moved again beside new mail: only the new message is imported
    d = msg("d@x.example", "Thu Nov  5 10:00:00 2026", "spool again")
    c = msg("c@x.example", "Wed Nov  4 10:00:00 2026", "new")
    path.write_bytes(d)
    mailplan("apply", str(spec), "--auto-approve", check=True)
    with (home / "mbox").open("ab") as fh:
        fh.write(d.replace(b"\n\n", b"\nStatus: RO\n\n", 1) + c)
    path.write_bytes(b"")
    plan = mailplan("plan", str(spec), check=True).stdout
    assert "1 message(s), " in plan, plan
    # d, found on the target by its digest (read from ~/mbox's checkpoint), was read too
    assert f"~ flags {address} INBOX (~/mbox): 1 message(s) gain flags (S 1)" in plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert len(stored(target, address)) == 4
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout
    (tmp_path / "m.state.json").unlink()
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


@pytest.mark.parametrize("folders", [".", "./mail"])
def test_subscriptions_with_a_dotted_folders_directory(tmp_path, folders):
    # source.folders "." (the home directory itself) or "./mail" names the same
    # directories as "" and "mail": ~/.mailboxlist's entries (relative to the home
    # directory, as c-client writes them) subscribe the folders as they do there
    path, target, domain, spec = one_user(
        tmp_path, msg("a@x.example", "Mon Nov  2 10:00:00 2026", "in the spool"))
    home = path.parent.parent.parent.parent / "home/ursula"
    where = home if folders == "." else home / "mail"
    where.mkdir(exist_ok=True)
    (where / "Work").write_bytes(msg("b@x.example", "Tue Nov  3 10:00:00 2026", "work"))
    (where / "Old").write_bytes(msg("c@x.example", "Wed Nov  4 10:00:00 2026", "old"))
    (home / ".mailboxlist").write_text("Work\n" if folders == "." else "mail/Work\n")
    spec.write_text(spec.read_text().replace("source:\n", f"source:\n  folders: {folders}\n"))
    mailplan("apply", str(spec), "--auto-approve", check=True)
    root = maildir(target, f"ursula@{domain}")
    assert (root / ".Old/cur").is_dir() or (root / ".Old/new").is_dir()
    assert (root / "subscriptions").read_text().split() == ["Work"]


def test_mail_arriving_in_an_empty_folder_mailplan_made_is_imported(tmp_path):
    # an empty folder file is made on the target, and its checkpoint is at byte 0; the
    # mail that arrives in it later is imported (a read from byte 0 is a whole read, not
    # a first import counted on the source and then numbered as no message at all)
    path, target, domain, spec = one_user(
        tmp_path, msg("a@x.example", "Mon Nov  2 10:00:00 2026", "in the spool"))
    folders = path.parent.parent.parent.parent / "home/ursula/mail"
    folders.mkdir()
    (folders / "Archive").write_bytes(b"")
    mailplan("apply", str(spec), "--auto-approve", check=True)
    root = maildir(target, f"ursula@{domain}")
    assert (root / ".Archive/cur").is_dir()
    (folders / "Archive").write_bytes(msg("b@x.example", "Tue Nov  3 10:00:00 2026", "kept"))
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"+ mailbox ursula@{domain} Archive\n      1 message(s)" in plan, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert len(files(root / ".Archive").get("new", [])) == 1
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


@pytest.mark.parametrize("read_in", ["spool", "mbox"])
def test_a_message_in_both_files_of_the_inbox_gets_the_flags_of_both(tmp_path, read_in):
    # the spool and ~/mbox hold the same message (c-client's move of it cut short, the
    # same delivery twice), one copy read on the old server: it is imported once, in one
    # apply, from whichever file is imported first; the other copy is found there, and
    # its flags are added as a plan adds them (the union), for a first import as for
    # messages appended since a checkpoint. Found by tests/test_mail_stateful.py.
    a = msg("a@x.example", "Mon Nov  2 10:00:00 2026", "twice")
    b = msg("b@x.example", "Tue Nov  3 10:00:00 2026", "twice later")
    unread, read = (a, a.replace(b"\n\n", b"\nStatus: RO\nX-Status: F\n\n", 1))
    path, target, domain, spec = one_user(tmp_path, read if read_in == "spool" else unread)
    home = path.parent.parent.parent.parent / "home/ursula"
    (home / "mbox").write_bytes(read if read_in == "mbox" else unread)
    mailplan("apply", str(spec), "--auto-approve", check=True)
    root = maildir(target, f"ursula@{domain}")
    (only,) = files(root)["cur"]
    assert only.name.endswith(":2,FS") and "new" not in files(root), only.name
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout
    later = b.replace(b"\n\n", b"\nStatus: RO\n\n", 1)
    for file, data in ((path, later if read_in == "spool" else b),
                       (home / "mbox", later if read_in == "mbox" else b)):
        with file.open("ab") as fh:
            fh.write(data)
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert sorted(f.name.rpartition(":2,")[2] for f in files(root)["cur"]) == ["FS", "S"]
    assert "new" not in files(root)
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


def test_a_copy_delivered_again_after_the_old_server_deleted_one_is_numbered_by_the_spool(
        tmp_path):
    # the spool held a message twice (both imported), the old server deleted one copy
    # (a whole read: nothing to import, the target keeps both), then the same bytes
    # arrive again: the spool holds two copies, as the target does. A read from the
    # checkpoint numbering them after the ledger's copies (two) would import a third; a
    # whole read (or a plan without the state file) finds it there
    h = msg("h@x.example", "Mon Nov  2 10:00:00 2026", "twice")
    path, target, domain, spec = one_user(tmp_path, h + h)
    address = f"ursula@{domain}"
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert len(stored(target, address)) == 2
    m = msg("m@x.example", "Tue Nov  3 10:00:00 2026", "between")
    path.write_bytes(h + m)
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert len(stored(target, address)) == 3
    f = msg("f@x.example", "Wed Nov  4 10:00:00 2026", "new")
    with path.open("ab") as fh:
        fh.write(f + h)
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"+ mailbox {address} INBOX\n      1 message(s)" in plan, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert len(stored(target, address)) == 4
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout
    (tmp_path / "m.state.json").unlink()
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


def test_a_spool_duplicate_is_numbered_by_its_own_checkpoint_beside_the_home_mbox(tmp_path):
    # the spool and ~/mbox both read from their checkpoints in one plan: the spool's
    # appended second copy of its own message is numbered after the copies before the
    # spool's checkpoint, not ~/mbox's (an earlier one), as a whole read numbers it
    a = msg("a@x.example", "Mon Nov  2 10:00:00 2026", "first")
    path, target, domain, spec = one_user(tmp_path, a)
    home = path.parent.parent.parent.parent / "home/ursula"
    (home / "mbox").write_bytes(msg("b@x.example", "Tue Nov  3 10:00:00 2026", "in mbox"))
    mailplan("apply", str(spec), "--auto-approve", check=True)
    c = msg("c@x.example", "Wed Nov  4 10:00:00 2026", "twice")
    with path.open("ab") as fh:
        fh.write(c)
    mailplan("apply", str(spec), "--auto-approve", check=True)
    with path.open("ab") as fh:
        fh.write(c)
    with (home / "mbox").open("ab") as fh:
        fh.write(msg("d@x.example", "Thu Nov  5 10:00:00 2026", "more"))
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"+ mailbox ursula@{domain} INBOX\n      1 message(s)" in plan, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    address = f"ursula@{domain}"
    assert len(stored(target, address)) == 5
    (tmp_path / "m.state.json").unlink()
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


def test_an_empty_mailbox_is_not_said_to_be_on_the_target(tmp_path):
    """An empty spool of a user the plan creates: nothing to import, and nothing is on
    the target yet, so ``plan -v`` must not say its messages are already there."""
    _path, _target, domain, spec = one_user(tmp_path, b"")
    plan = mailplan("plan", str(spec), "-v", check=True).stdout
    assert f"+ user ursula@{domain}" in plan
    assert f"= ursula@{domain}: INBOX: empty, nothing to import" in plan, plan
    assert "all 0 messages" not in plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert "all 0 messages" not in mailplan("plan", str(spec), "-v", check=True).stdout


def flagged_on_the_old_server(tmp_path: Path, sshd: dict) -> tuple[Path, Target, str, Path]:
    """A user whose four unread messages are imported over SSH (all to new/): (spool,
    target, domain, spec)."""
    src = make_source(tmp_path / "source", [SourceAccount("ursula", 1000, "Ursula", "UrsPw1")])
    spool = src / "var/spool/mail/ursula"
    spool.write_bytes(b"".join(msg(f"{s}@x.example", f"Mon Nov  {d} 10:00:00 2026", s)
                               for d, s in enumerate(["one", "two", "three", "four"], 2)))
    target, domain, spec = migrate_over_ssh(tmp_path, sshd, src)
    return spool, target, domain, spec


def test_flags_set_on_the_old_server_after_the_import_are_added_on_the_target(tmp_path, sshd):
    """Read on the old server between two runs: the flags the source has and the target
    file lacks are added (renamed as an IMAP client renames), never removed."""
    spool, target, domain, spec = flagged_on_the_old_server(tmp_path, sshd)
    root = maildir(target, f"ursula@{domain}")
    by_subject = {f.read_text().split("Subject: ")[1].split("\n")[0]: f
                  for f in files(root)["new"]}
    assert sorted(by_subject) == ["four", "one", "three", "two"]
    # on the new server the user flags "three" and reads "four", then marks it unread
    three, four = by_subject["three"], by_subject["four"]
    three.rename(root / "cur" / (three.name + ":2,F"))
    four.rename(root / "cur" / (four.name + ":2,"))
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout
    # on the old server the user reads all four and answers and flags "two": the mail
    # reader rewrites the spool with Status (and X-Status) headers
    data = spool.read_bytes()
    data = data.replace(b"Subject: ", b"Status: RO\nSubject: ")
    data = data.replace(b"Subject: two\n", b"Subject: two\nX-Status: AF\n")
    spool.write_bytes(data)
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"~ flags ursula@{domain} INBOX: 4 message(s) gain flags (S 4, R 1, F 1)" \
        in plan, plan
    assert "Plan: 0 to create, 1 to change, 0 to destroy." in plan
    doc = json.loads(mailplan("plan", str(spec), "--json", check=True).stdout)
    assert [(c["action"], c["kind"], c["item"]) for c in doc["changes"]] == [
        ("update", "flags", "INBOX")]
    failed = mailplan("verify", str(spec))
    assert failed.returncode == 3 and "flags lost" in failed.stdout
    # "one" gets its S on the new server first (a mail client, or an apply killed after
    # its rename): what is left is planned, and the apply passes over nothing twice
    (one,) = [f for f in files(root)["new"] if "Subject: one" in f.read_text()]
    one.rename(root / "cur" / (one.name + ":2,S"))
    saved = tmp_path / "flags.plan.json"
    plan = mailplan("plan", str(spec), "-o", str(saved), check=True).stdout
    assert "INBOX: 3 message(s) gain flags (S 3, R 1, F 1)" in plan, plan
    mailplan("apply", str(saved), check=True)  # a saved plan: as reviewed
    got = {f.read_text().split("Subject: ")[1].split("\n")[0]: (f.parent.name,
                                                                 f.name.partition(":2,")[2])
           for sub in files(root).values() for f in sub}
    # "three" keeps the F its user set; "four" gets back the S its user took away
    assert got == {"one": ("cur", "S"), "two": ("cur", "FRS"), "three": ("cur", "FS"),
                   "four": ("cur", "S")}
    assert not files(root).get("new")
    again = mailplan("plan", str(spec), "--detailed-exitcode")
    assert again.returncode == 0 and "No changes." in again.stdout, again.stdout
    verified = mailplan("verify", str(spec))
    assert verified.returncode == 0, verified.stdout
    # a flag the user removes on the new server afterwards stays removed until the old
    # server's copy changes again (its spool unchanged: read from the checkpoint)
    one = next(f for f in files(root)["cur"] if "Subject: one" in f.read_text())
    one.rename(one.with_name(one.name.partition(":2,")[0] + ":2,"))
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


class _RacedWriter:
    """A writer whose flags request finds one message's file moved by a mail client
    between its read of the folder and its rename (an IMAP SELECT moving new/ to cur/)."""

    def open(self, *_args: object, **_kw: object) -> dict:
        return {}

    def add_flags(self, _dirname: str, add: object) -> dict[str, int]:
        return {"renamed": len(list(add)) - 1, "gone": 1, "taken": 0}  # type: ignore[call-overload]


def test_a_flags_update_finding_a_file_gone_records_no_checkpoint():
    """A message whose file the writer found gone (moved meanwhile by a mail client)
    may still lack its flags: the mailbox's checkpoint is not recorded, so that the
    next plan reads it whole and compares it again (from a checkpoint it never would)."""
    from mailplan.facts.mailboxes import SourceMailbox
    from mailplan.importer import MailImporter
    from mailplan.mailbox_changes import MailJob
    from mailplan.mailbox_reads import Start
    from mailplan.plan import Change

    mb = SourceMailbox("d.example", "ursula", "INBOX", "/var/spool/mail/ursula", 100, 0.0, 7)
    change = Change("update", "flags", "d.example", "ursula", item="INBOX",
                    after="2 message(s) gain flags (S 2)", fingerprint="0" * 16)
    gain = {bytes(32) + b"0": "S", bytes(32) + b"1": "S"}
    checkpoint = {"path": mb.path, "inode": 7, "offset": 100, "head": "h", "tail": "t",
                  "count": 2}
    job = MailJob(mb, Start(), 2, 0, False, gain=gain,
                  settled={"mailbox": mb.key, "checkpoint": checkpoint})
    importer = MailImporter(None, None, None, "/home/vpopmail", False,  # type: ignore[arg-type]
                            lambda *_a: None, user_dirs={"ursula@d.example": "/u"})
    importer._client = _RacedWriter()  # type: ignore[assignment]
    effect = importer.run(change, job)
    assert effect["flags_added"] == 1 and effect["flags_gone"] == 1
    assert "checkpoint" not in effect
    # all of them renamed, or one's new name taken by another file (which no later run
    # changes: planned again at every run, it would never settle): recorded
    for taken in (0, 1):
        importer._client.add_flags = lambda _d, add, t=taken: {  # type: ignore[method-assign]
            "renamed": len(list(add)) - t, "gone": 0, "taken": t}
        assert importer.run(change, job)["checkpoint"] == checkpoint


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_subscription_file_apply_cannot_write_is_a_plan_problem(tmp_path, kind):
    # a directory (or a named pipe) where a subscription file belongs: the writer refuses
    # to subscribe there, so the plan says so for the user and subscribes nothing in that
    # Maildir, and the mail is imported all the same; once it is moved away the next
    # plan subscribes the folders
    path, target, domain, spec = one_user(
        tmp_path, msg("a@x.example", "Mon Nov  2 10:00:00 2026", "in the spool"))
    mailplan("apply", str(spec), "--auto-approve", check=True)
    address = f"ursula@{domain}"
    root = maildir(target, address)
    folders = path.parent.parent.parent.parent / "home/ursula/mail"
    folders.mkdir()
    (folders / "Work").write_bytes(msg("b@x.example", "Tue Nov  3 10:00:00 2026", "work"))
    blocker = root / "subscriptions"
    if kind == "directory":
        blocker.mkdir()
    else:
        os.mkfifo(blocker)
    said = "a directory" if kind == "directory" else "not a regular file"
    plan = mailplan("plan", str(spec), check=True).stdout
    assert (f"folders are not subscribed: in {root} on the target subscriptions is {said}, "
            "where no IMAP server keeps subscriptions (move it away, then plan again); the "
            "mail is imported all the same") in plan, plan
    assert f"+ mailbox {address} Work\n      1 message(s)" in plan
    assert "subscri" not in plan.split(f"+ mailbox {address} Work\n")[1].split("\n")[0]
    done = mailplan("apply", str(spec), "--auto-approve")
    # the mail is imported, and apply exits 3: the subscription is not migrated
    assert done.returncode == 3, done.stdout + done.stderr
    assert [b"Subject: work\n" in f.read_bytes()
            for sub in files(root / ".Work").values() for f in sub] == [True]
    assert not (root / "courierimapsubscribed").exists()
    checked = mailplan("verify", str(spec))  # Work is not subscribed, and verify says why
    assert checked.returncode == 3, checked.stdout
    assert (f"not subscribed in courierimapsubscribed, subscriptions (a client that lists "
            f"subscribed folders only will not show it; subscriptions is {said}, where no "
            "IMAP server keeps subscriptions: move it away, then apply)") in checked.stdout
    if kind == "directory":
        blocker.rmdir()
    else:
        blocker.unlink()
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"+ subscription {address} Work" in plan, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert (root / "subscriptions").read_text().split() == ["Work"]
    assert mailplan("verify", str(spec)).returncode == 0


@pytest.mark.parametrize("kind", ["symbolic link", "directory"])
def test_a_mailboxlist_that_is_no_file_is_not_read_and_the_plan_says_so(tmp_path, kind):
    # a ~/.mailboxlist that is a symbolic link is not followed (the user could point it
    # at any file, read as root): every folder is subscribed, as without a list, and the
    # plan warns, naming it, rather than taking it silently for no list
    path, target, domain, spec = one_user(
        tmp_path, msg("a@x.example", "Mon Nov  2 10:00:00 2026", "in the spool"))
    home = path.parent.parent.parent.parent / "home/ursula"
    (home / "mail").mkdir()
    for name in ("Work", "Old"):
        (home / "mail" / name).write_bytes(msg("b@x.example", "Tue Nov  3 10:00:00 2026", name))
    listed = home / ".mailboxlist"
    if kind == "directory":
        listed.mkdir()
    else:
        (home / "real-list").write_text("mail/Work\n")
        listed.symlink_to(home / "real-list")
    plan = mailplan("plan", str(spec), check=True).stdout
    assert (f"{listed} on the source is a {kind}, not a file: not read (a link is not "
            "followed), so every folder is subscribed, as for a user without one") in plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    root = maildir(target, f"ursula@{domain}")
    assert sorted((root / "subscriptions").read_text().split()) == ["Old", "Work"]


def test_a_subscription_change_is_listed_with_its_folder(tmp_path):
    # the plan lists each folder's changes together, in the order of the folders: a
    # folder's missing subscription line comes between the imports of the folders
    # before and after it, not after every import
    path, target, domain, spec = one_user(
        tmp_path, msg("a@x.example", "Mon Nov  2 10:00:00 2026", "in the spool"))
    folders = path.parent.parent.parent.parent / "home/ursula/mail"
    folders.mkdir()
    for name in ("Alpha", "Beta"):
        (folders / name).write_bytes(msg("b@x.example", "Tue Nov  3 10:00:00 2026", name))
    mailplan("apply", str(spec), "--auto-approve", check=True)
    root = maildir(target, f"ursula@{domain}")
    (root / "subscriptions").write_text("Beta\n")
    for where in (path, folders / "Beta"):
        with where.open("ab") as fh:
            fh.write(msg("c@x.example", "Wed Nov  4 10:00:00 2026", "new"))
    plan = mailplan("plan", str(spec), check=True).stdout
    heads = [line.split()[1] + " " + line.split()[-1] for line in plan.splitlines()
             if line.startswith("  + ")]
    assert heads == ["mailbox INBOX", "subscription Alpha", "mailbox Beta"], plan


def test_keywords_set_on_the_old_server_after_the_import_are_added_on_the_target(tmp_path):
    """Labels (IMAP keywords) a user sets on the old server between two runs are added
    as flags are: the file gains the keyword's letter (a new keyword a free one in the
    folder's dovecot-keywords), and courier-imap gets the message's keywords too; a
    keyword past the folder's 26th is not proposed (it cannot be carried), so the plan
    settles."""
    path, target, domain, spec = one_user(
        tmp_path, msg("a@x.example", "Mon Nov  2 10:00:00 2026", "one",
                      "Status: RO\nX-Keywords: Work\n")
        + msg("b@x.example", "Tue Nov  3 10:00:00 2026", "two", "Status: RO\n"))
    mailplan("apply", str(spec), "--auto-approve", check=True)
    address = f"ursula@{domain}"
    root = maildir(target, address)

    def names() -> dict[str, str]:
        return {f.read_text().split("Subject: ")[1].split("\n")[0]:
                f.name.partition(":2,")[2] for f in files(root)["cur"]}

    assert names() == {"one": "Sa", "two": "S"}
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout
    # on the old server: "one" gets $Label1 too, "two" Junk (the mail reader rewrites
    # the spool's headers)
    data = path.read_bytes().replace(b"X-Keywords: Work\n", b"X-Keywords: Work $Label1\n")
    path.write_bytes(data.replace(b"Subject: two\n", b"Subject: two\nX-Keywords: Junk\n"))
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"~ flags {address} INBOX: 2 message(s) gain flags (keywords 2)" in plan, plan
    assert mailplan("verify", str(spec)).returncode == 3
    mailplan("apply", str(spec), "--auto-approve", check=True)
    from mailplan.mail.bookkeeping import keyword_letters

    letters = keyword_letters((root / "dovecot-keywords").read_text())
    assert letters == {"a": "Work", "b": "$Label1", "c": "Junk"}
    assert names() == {"one": "Sab", "two": "Sc"}
    # courier's per-message keyword files say the same (courier has not opened the folder)
    assert {p.name: sorted(p.read_text().split()) for p in
            (root / "courierimapkeywords").iterdir()} == {
        f.name.partition(":")[0]: sorted(letters[c] for c in f.name.partition(":2,")[2]
                                         if c.islower()) for f in files(root)["cur"]}
    verified = mailplan("verify", str(spec))
    assert verified.returncode == 0, verified.stdout
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout
    # the folder's 26 letters taken: a 27th keyword set on the old server is not carried,
    # and not proposed at every run
    (root / "dovecot-keywords").write_text(
        (root / "dovecot-keywords").read_text()
        + "".join(f"{n} k{n}\n" for n in range(3, 26)))
    path.write_bytes(path.read_bytes().replace(b"X-Keywords: Junk\n",
                                               b"X-Keywords: Junk Extra\n"))
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


def test_a_replan_reads_from_the_source_only_the_windows_and_the_new_tail(tmp_path):
    """After an import of a 12 MB spool, a plan of it unchanged reads almost nothing of
    the source (the checkpoint's two 4 KiB windows, the accounts), and a plan of it grown
    by three messages reads those besides, not the 12 MB again."""
    from mailplan.engine import make_plan
    from mailplan.spec import load_spec
    from mailplan.state import State

    data, _target, _domain, spec_path = six_thousand(tmp_path)
    mailplan("apply", str(spec_path), "--auto-approve", check=True)
    source = CountingConnector("oldmail")

    def plan_reads() -> tuple[list[str], int]:
        source.received = 0
        planned = make_plan(load_spec(spec_path), State.load(tmp_path / "m.state.json"),
                            {"oldmail": source, "newmail": LocalConnector("newmail")})
        planned.close()
        return [c.after for c in planned.plan.changes], source.received

    changes, unchanged = plan_reads()
    assert changes == [] and unchanged < 64 * 1024, unchanged
    tail = b"".join(msg(f"n{i}@x.example", "Tue Nov  3 10:00:00 2026", f"new {i}",
                        body="y" * 2000 + "\n") for i in range(3))
    with open(tmp_path / "source/var/spool/mail/big", "ab") as fh:
        fh.write(tail)
    changes, grown = plan_reads()
    assert len(changes) == 1 and changes[0].startswith("3 message(s)"), changes
    assert f"read from byte {len(data)}" in changes[0]
    assert len(tail) <= grown < unchanged + len(tail) + 16 * 1024, (unchanged, grown)


def test_a_users_spool_and_folders_named_in_the_spec_are_read_instead_of_the_defaults(
        tmp_path):
    """``spool:`` and ``folders:`` on a user replace SPOOL/ACCOUNT and HOME/mail: the mail
    there is imported, and nothing of the default places (which hold other mail)."""
    src = make_source(tmp_path / "source", [SourceAccount("ann", 1000, "Ann", "AnnPw1")])
    (src / "var/spool/mail/ann").write_bytes(msg("a@x.example", "Mon Nov  2 10:00:00 2026",
                                                  "default spool"))
    (src / "home/ann/mail").mkdir(parents=True)
    (src / "home/ann/mail/Old").write_bytes(msg("b@x.example", "Mon Nov  2 11:00:00 2026",
                                                "default folder"))
    (src / "srv/ann/Mail").mkdir(parents=True)
    (src / "srv/ann/inbox").write_bytes(msg("c@x.example", "Mon Nov  2 12:00:00 2026",
                                            "named spool"))
    (src / "srv/ann/Mail/New").write_bytes(msg("d@x.example", "Mon Nov  2 13:00:00 2026",
                                               "named folder"))
    target = install_target(tmp_path / "target")
    domain = unique_domain()
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target, domains={
        domain: {"users": [{"name": "ann", "spool": str(src / "srv/ann/inbox"),
                            "folders": str(src / "srv/ann/Mail")}]}})
    mailplan("apply", str(spec), "--auto-approve", check=True)
    root = maildir(target, f"ann@{domain}")
    got = {str(f.parent.parent.relative_to(root)): f.read_bytes().split(b"Subject: ")[1]
           for f in root.rglob("*") if f.is_file() and f.parent.name in ("new", "cur")}
    assert got == {".": b"named spool\n\nhello\n", ".New": b"named folder\n\nhello\n"}


def test_arrival_falls_back_to_the_date_header_then_to_the_mbox_mtime(tmp_path):
    """A From_ line whose date is no date (Feb 30) still separates; the message's
    arrival (its file's mtime, IMAP's INTERNALDATE) is its Date: header, and without one
    the mbox's mtime, through a whole apply."""
    data = (b"From a@x.example Mon Feb 30 10:00:00 2026\nDate: Tue, 3 Mar 2026 08:30:00 +0100\n"
            b"Subject: dated\n\nhello\n\n"
            b"From b@x.example Mon Feb 30 10:00:00 2026\nSubject: undated\n\nhello\n\n")
    path, target, domain, spec = one_user(tmp_path, data)
    mtime = calendar.timegm((2026, 3, 4, 12, 0, 0))
    os.utime(path, (mtime, mtime))
    mailplan("apply", str(spec), "--auto-approve", check=True)
    root = maildir(target, f"ursula@{domain}")
    got = {f.read_bytes().split(b"Subject: ")[1].split(b"\n")[0]: int(f.stat().st_mtime)
           for sub in files(root).values() for f in sub}
    assert got == {b"dated": calendar.timegm((2026, 3, 3, 7, 30, 0)), b"undated": mtime}
