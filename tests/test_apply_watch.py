"""Watching an apply: progress (terminal in tmux, plain lines, --quiet), the apply log, and
Ctrl-C stopping at a safe point, then resuming."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from migration import (
    AGENT_DISPLAY,
    SourceAccount,
    install_target,
    mailplan,
    make_source,
    source_read,
    ssh_host,
    unique_domain,
    write_spec,
)
from tools import require

from mailplan.applylog import ApplyLog, Summary, default_log_path
from mailplan.connectors.local import LocalConnector
from mailplan.plan import Change
from mailplan.progress import LiveReporter, MailCounter, PlainReporter, Tally, duration
from mailplan.remote import ShellSession, run_batch
from mailplan.secret import Secret
from mailplan.shell import Cmd


def box(n: int, size: int = 2000) -> bytes:
    body = "x" * size + "\n"
    return b"".join(f"From s{i}@x.example Mon Nov  2 10:00:00 2026\nSubject: m{i}\n\n{body}\n"
                    .encode() for i in range(n))


def change(user: str, folder: str = "INBOX") -> Change:
    return Change("create", "mailbox", "d.example", user, item=folder)


def test_counter_rate_eta_and_texts():
    now = [100.0]
    counter = MailCounter(clock=lambda: now[0])
    counter.plan(change("a"), 10, 1000)
    counter.plan(change("b"), 30, 3000)
    assert counter.eta() is None and counter.rate() == 0.0
    counter.start()
    now[0] = 110.0
    counter.add(change("a"), 10, 1000)
    assert counter.rate() == 100.0
    assert counter.eta() == 30.0
    assert counter.users["a@d.example"].text() == "10/10 messages, 1000B/1000B (100%)"
    assert counter.status() == ("mail: 10/40 messages, 1000B/3.9K (25%), 100B/s, ETA 0:30")
    assert duration(3725) == "1:02:05" and duration(65) == "1:05"
    # per user: rate and ETA from when that user's import began
    counter.start_user(change("b"))
    now[0] = 130.0
    counter.add(change("b"), 10, 1000)
    assert counter.rate("b@d.example") == 50.0 and counter.eta("b@d.example") == 40.0
    assert counter.status("b@d.example") == ("b@d.example 10/30 messages, 1000B/2.9K (33%), "
                                             "50B/s, ETA 0:40")
    assert counter.status("a@d.example").endswith("1000B/1000B (100%), 50B/s, ETA 0:00")
    assert Tally().text() == "0/0 messages, 0B/0B"


def test_plain_reporter_prints_status_lines_at_its_interval(tmp_path):
    out = (tmp_path / "out").open("w+")
    reporter = PlainReporter(out, interval=0)
    reporter.plan_mail(change("a"), 4, 400)
    reporter.phase("mail import", 1)
    reporter.batch(change("a"), 2, 200)
    reporter.step_done(change("a"))
    out.seek(0)
    lines = out.read().splitlines()
    assert lines[0] == "mail import: 1 step(s); 0/4 messages, 0B/400B (0%)"
    assert lines[1].startswith("  mail: 2/4 messages, 200B/400B (50%), ")
    # the user's own rate and ETA follow the user's counts
    # (named with the folder being imported)
    assert re.search(r"; a@d\.example INBOX 2/4 messages, 200B/400B \(50%\), \S+/s, "
                     r"ETA \S+$", lines[1]), lines[1]
    # done: the user's totals become what was imported (2 of the 4 planned messages were
    # found on the target meanwhile, or the plan's count was an estimate)
    assert lines[2] == ("  + mailbox a@d.example INBOX: done "
                        "(2/2 messages, 200B/200B (100%) for this user)")


def test_a_mail_phase_that_moves_no_message_prints_no_counts(tmp_path):
    """Only flags updates (no message to import): the heading has no 0/0 counts."""
    out = (tmp_path / "out").open("w+")
    reporter = PlainReporter(out, interval=0)
    reporter.phase("mail import", 1)
    out.seek(0)
    assert out.read().splitlines() == ["mail import: 1 step(s)"]


@pytest.mark.parametrize("planned", [0, 3])
def test_the_live_display_shows_mail_counts_only_where_messages_move(tmp_path, planned):
    """The terminal's display, as the plain heading: a flags-only apply (nothing planned
    to import) has no 'all mail' row reading 0/0 messages, 0B/0B."""
    out = (tmp_path / "out").open("w+")
    reporter = LiveReporter(out)
    if planned:
        reporter.plan_mail(change("a"), planned, 300)
    reporter.phase("mail import", 1)
    flags = Change("update", "flags", "d.example", "a", item="INBOX",
                   after="1 message(s) gain flags (S 1)")
    reporter.step_started(flags)
    reporter.step_done(flags)
    reporter.close()
    out.seek(0)
    text = out.read()
    assert "  ~ flags a@d.example INBOX: done" in text and "1/1 steps" in text, text
    if planned:
        assert "all mail" in text and "0/3 messages, 0B/300B" in text, text
    else:
        assert "all mail" not in text and "0/0 messages" not in text, text


LONG = [("jean-christophe.dupont-lefebvre", "mail.example-company.co.uk",
         "Archive/2019/Projects/Customer correspondence"),
        ("b", "x.example", "INBOX")]


def _screen(reporter: LiveReporter, width: int) -> list[str]:
    """The live rows as the terminal shows them (colours left out)."""
    import io

    from rich.console import Console

    capture = Console(file=io.StringIO(), width=width, color_system=None, highlight=False)
    capture.print(reporter.progress.get_renderable())
    return [line.rstrip() for line in capture.file.getvalue().splitlines()]


@pytest.mark.parametrize("width", [80, 60])
def test_the_live_rows_fit_the_terminal_with_the_user_and_the_eta(tmp_path, monkeypatch,
                                                                 width):
    """An 80-column terminal (or a 60-column tmux pane): each row fits, and shows whose
    it is (an address shortened in the middle, its domain kept) and, whole, the ETA; a
    finished mailbox's line ends with ': done'. rich cut the user's row at the domain and
    the ETA off it, and wrapped the finished step's line."""
    from rich.cells import cell_len

    monkeypatch.setenv("COLUMNS", str(width))
    out = (tmp_path / "out").open("w+")
    reporter = LiveReporter(out)
    now = [1000.0]
    reporter.mail.clock = lambda: now[0]
    changes = [Change("create", "mailbox", domain, user, item=folder)
               for user, domain, folder in LONG]
    for c in changes:
        reporter.plan_mail(c, 123_456, 9_876_543_210)
    reporter.phase("mail import", len(changes))
    for c in changes:
        reporter.step_started(c)
    now[0] += 95
    for c in changes:
        reporter.batch(c, 2345, 123_456_789)
    rows = _screen(reporter, width)
    assert all(cell_len(row) <= width for row in rows), rows
    overall = duration(reporter.mail.eta())
    assert rows[1].startswith("all mail") and rows[1].endswith(f"ETA {overall}"), rows
    for (user, domain, _folder), row in zip(LONG, rows[2:], strict=True):
        who = f"{user}@{domain}"
        assert row.endswith(f"ETA {duration(reporter.mail.eta(who))}"), row
        assert f"@{domain} " in row and row.lstrip().startswith(user[:2]), row
    reporter.step_done(changes[0])
    reporter.close()
    out.seek(0)
    printed = [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line)
               for line in out.read().replace("\r", "\n").splitlines()]
    (done,) = [line for line in printed if line.startswith("  + mailbox ")]
    assert cell_len(done) <= width and done.endswith(": done"), printed
    assert f"@{LONG[0][1]} Archiv" in done and done.count("…") <= 2, done


@pytest.mark.parametrize(("width", "row"), [
    (160, "  jean-christophe.dupont@mail.example-company.com ###### "
          "2345/123456 messages, 117.7M/9419.0M (1%), 4.8M/s, ETA 1:02:03"),
    (100, "  jean-christophe.dupont@mail.example-company.com "
          "2345/123k msgs, 118M/9.2G (1%), ETA 1:02:03"),
    (80, "  jean-christophe.dupo…@mail.example-company.com 2345/123k msgs, 1%, ETA 1:02:03"),
    (60, "  jean-christophe.…@mail.example-company.com 1%, ETA 1:02:03"),
    (40, "  j…@mail.exampl…company.com ETA 1:02:03"),
    (12, "  j…@m… ETA…"),
])
def test_a_row_gives_up_its_least_important_parts_first(width, row):
    """The bar, then the rate, then the sizes; then the address's middle (its domain
    kept), then the counts; the ETA last of all, and then with an ellipsis to say so."""
    from mailplan.progress_rows import fit_row, mail_details

    details = mail_details(2345, 123_456, 123_456_789, 9_876_543_210, rate=5_000_000,
                           eta="1:02:03", full="2345/123456 messages, 117.7M/9419.0M (1%), "
                           "4.8M/s, ETA 1:02:03")
    label, bar, detail = fit_row("  ", "jean-christophe.dupont@mail.example-company.com",
                                 details, width, keep=2, address=True)
    got = label + (" " + "#" * bar if bar else "") + (" " + detail if detail else "")
    assert len(got) <= width
    assert got == row.replace("######", "#" * 40)


@pytest.mark.parametrize(("width", "row"), [
    (160, "  jean-christophe.dupont@mail.example-company.com Archive/2019/Projects/Customer "
          "correspondence ############ 2345/123k msgs, 118M/9.2G (1%), 4.8M/s, ETA 1:02:03"),
    (100, "  je…@mail.example-company.com Archive/2019/Proje…mer correspondence "
          "2345/123k msgs, 1%, ETA 1:02:03"),
    (60, "  je…@mail.example-company.com Archiv…ndence 1%, ETA 1:02:03"),
    (40, "  j…@mail.….com Archiv…dence ETA 1:02:03"),
    (20, "  j…@m…m ETA 1:02:03"),
])
def test_a_users_row_names_the_folder_shortened_after_the_address(width, row):
    """The folder being imported follows the user on the row: shortened in the middle
    after the address was (to no less than 12 cells, before the counts go), left out
    before the user is."""
    from mailplan.progress_rows import fit_row, mail_details

    details = mail_details(2345, 123_456, 123_456_789, 9_876_543_210, rate=5_000_000,
                           eta="1:02:03", full="2345/123456 messages, 117.7M/9419.0M (1%), "
                           "4.8M/s, ETA 1:02:03")
    label, bar, detail = fit_row("  ", "jean-christophe.dupont@mail.example-company.com",
                                 details, width, keep=2, address=True,
                                 item="Archive/2019/Projects/Customer correspondence")
    got = label + (" " + "#" * bar if bar else "") + (" " + detail if detail else "")
    assert len(got) <= width
    assert got == row


def test_the_live_display_shows_the_folder_being_imported(tmp_path, monkeypatch):
    """The user's row showed whose mail was moving but not which folder: it names the
    folder of the mailbox under way (the user's next one when it starts), written as
    the finished steps' lines write it (quoted where a space ends it, escaped)."""
    monkeypatch.setenv("COLUMNS", "120")
    out = (tmp_path / "out").open("w+")
    reporter = LiveReporter(out)
    folders = ["INBOX", "Sent ", "Jobs\x1b[2J"]
    for folder in folders:
        reporter.plan_mail(change("a", folder), 10, 1000)
    reporter.phase("mail import", len(folders))
    shown = []
    for folder in folders:
        reporter.step_started(change("a", folder))
        reporter.batch(change("a", folder), 5, 500)
        (row,) = [r for r in _screen(reporter, 120) if r.startswith("  a@d.example")]
        shown.append(row)
        reporter.step_done(change("a", folder))
    reporter.close()
    assert shown[0].startswith("  a@d.example INBOX ━"), shown
    assert shown[1].startswith("  a@d.example 'Sent ' ━"), shown
    assert shown[2].startswith("  a@d.example Jobs\\x1b[2J ━"), shown
    # the figures stay the user's (all its folders), the ETA at the end
    assert re.search(r" 5/30 messages, 500B/2\.9K \(16%\), \S+/s, ETA \S+$", shown[0]), shown
    assert "\x1b" not in "".join(shown)


def test_a_finished_mailbox_settles_the_totals_to_what_it_imported():
    counter = MailCounter()
    counter.plan(change("a"), 1, 95)  # a first import: the mbox's size
    counter.plan(change("a", "Work"), 3, 300)
    counter.plan(change("b"), 5, 500)
    counter.add(change("a"), 1, 48)  # the stored message, without From_ line and Status
    counter.settle(change("a"))
    counter.add(change("a", "Work"), 1, 100)
    assert counter.users["a@d.example"].text() == "2/4 messages, 148B/348B (42%)"
    assert counter.overall.text() == "2/9 messages, 148B/848B (17%)"
    counter.settle(change("a", "Work"))
    assert counter.users["a@d.example"].text() == "2/2 messages, 148B/148B (100%)"
    assert counter.overall.text() == "2/7 messages, 148B/648B (22%)"


def test_the_summary_does_not_put_a_stopped_imports_messages_into_completed_mailboxes():
    # stopped during its second mailbox: 4 messages of a completed INBOX and 2000 of a
    # folder whose import was stopped at a journaled batch
    lines = Summary(imported_messages=2004, imported_bytes=3 << 20, mailboxes=1).lines()
    assert "imported: 2004 message(s), 3M; 1 mailbox(es) completed" in lines, lines


def test_log_masks_secrets_in_commands_and_their_output(tmp_path):
    log = ApplyLog(default_log_path(tmp_path / "m.state.json"))
    conn = LocalConnector("here")
    conn.observer = log.observer("here")
    secret = Secret("hunter2-very-secret")
    with ShellSession(conn) as session:
        res = session.run(Cmd.of("sh", "-c", 'echo "bad $0" >&2; exit 3', secret))
        assert res.returncode == 3 and b"hunter2" in res.stderr  # the caller sees it
        session.run(Cmd.of("true"))
    run_batch(conn, ["echo one", "exit 4"])
    log.summary(Summary(created=2, imported_messages=5, imported_bytes=2048, failed=["x"]))
    log.close()
    text = log.path.read_text()
    assert "hunter2" not in text
    assert "exit 3, stdout 0 B, stderr 16 B: bad (sensitive)" in text
    assert "$ sh -c 'echo \"bad $0\" >&2; exit 3' (sensitive) </dev/null" in text
    assert "exit 4" in text and "batch 2/2" in text
    assert "  created: 2" in text
    assert "  imported: 5 message(s), 2K; 0 mailbox(es) completed" in text
    assert "  failed: 1" in text and "remote commands logged: 4" in text
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.path.parent.stat().st_mode) == 0o700
    assert log.path.parent.name == "m.state.json.logs"


def over_ssh(tmp_path: Path, sshd, spools: dict[str, bytes]) -> tuple[Path, str]:
    """A spec migrating one user per entry of ``spools`` (name -> spool bytes, uids from
    1000), over SSH into the stand-in: (spec path, domain)."""
    src = make_source(tmp_path / "source", [
        SourceAccount(name, 1000 + i, name.title(), f"pw-{name}")
        for i, name in enumerate(spools)])
    for name, data in spools.items():
        (src / "var/spool/mail" / name).write_bytes(data)
    target = install_target(tmp_path / "target")
    domain = unique_domain()
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      source_host=ssh_host(sshd), target_host=ssh_host(sshd),
                      domains={domain: {"import": {"uid_min": 1000}}})
    return spec, domain


def test_a_log_named_in_a_missing_directory_is_refused_before_anything_is_applied(
        tmp_path, sshd):
    spec, domain = over_ssh(tmp_path, sshd, {"solo": box(3)})
    log = tmp_path / "mistyped" / "apply.log"
    res = mailplan("apply", str(spec), "--auto-approve", "--log", str(log))
    assert res.returncode == 1
    assert f"{log}: cannot write the apply log there: {log.parent} does not exist" \
        in res.stderr, res.stderr
    assert not log.parent.exists() and not spec.with_name("m.state.json").exists()
    log.parent.write_text("a file, not the directory\n")  # one that is there: said so
    res = mailplan("apply", str(spec), "--auto-approve", "--log", str(log))
    assert res.returncode == 1
    assert f"{log}: cannot write the apply log there: {log.parent} is not a directory" \
        in res.stderr, res.stderr
    log.parent.unlink()
    assert f"+ domain {domain}" in mailplan("plan", str(spec), check=True).stdout
    log.parent.mkdir()
    mailplan("apply", str(spec), "--auto-approve", "--log", str(log), check=True)
    assert "result: ok" in log.read_text()


def test_a_log_named_over_a_file_not_an_apply_log_is_refused_and_the_file_left_alone(
        tmp_path):
    """`--log migration.state.json` (or the spec, a password file: one tab completion
    away) appended the log to that file, leaving the state unreadable, and made it 0600;
    `--log /dev/null` as root made /dev/null 0600 for every user; a link or a directory
    that may not be written was a traceback. Each is refused before anything is done;
    an earlier apply log (or a new file) is appended to as before."""
    src = make_source(tmp_path / "source", [SourceAccount("ann", 1000, "Ann", "pw-ann")])
    target = install_target(tmp_path / "target")
    domain = unique_domain()
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    log = tmp_path / "apply.log"
    mailplan("apply", str(spec), "--auto-approve", "--log", str(log), check=True)
    state = spec.with_name("m.state.json")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o644)
    os.chmod(fifo, 0o644)
    (tmp_path / "link.log").symlink_to(tmp_path / "elsewhere.log")
    make_source(src, [SourceAccount("ann", 1000, "Ann", "pw-ann"),
                      SourceAccount("bo", 1001, "Bo", "pw-bo")])  # one more to apply
    for given, why in [(spec, "a file that is no apply log of mailplan's"),
                       (state, "a file that is no apply log of mailplan's"),
                       (fifo, "not a regular file"),
                       (tmp_path / "link.log", "cannot write the apply log there: it is a "
                        "symbolic link")]:
        before = given.read_bytes() if given.is_file() else None
        mode = os.lstat(given).st_mode
        res = mailplan("apply", str(spec), "--auto-approve", "--log", str(given))
        assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
        assert res.stderr.startswith(f"Error: {given}: {why}"), res.stderr
        assert "nothing was applied" in res.stderr
        assert os.lstat(given).st_mode == mode
        if before is not None:
            assert given.read_bytes() == before
    assert not (tmp_path / "elsewhere.log").exists()
    assert f"+ user bo@{domain}" in mailplan("plan", str(spec), check=True).stdout
    mailplan("apply", str(spec), "--auto-approve", "--log", str(log), check=True)
    assert log.read_text().count("result: ") == 2  # appended to the earlier log


@pytest.fixture
def big(tmp_path, sshd):
    """Two users with 6000 and 200 messages, over SSH into the stand-in."""
    return over_ssh(tmp_path, sshd, {"big": box(6000), "small": box(200, 100)})


def logs(spec: Path) -> list[Path]:
    return sorted(spec.with_name("m.state.json.logs").glob("apply-*.log"))


def test_plain_progress_log_file_and_quiet(big):
    spec, domain = big
    res = mailplan("apply", str(spec), "--auto-approve", env={"MAILPLAN_PROGRESS_INTERVAL": "0"},
                   check=True)
    out = res.stdout
    (log,) = logs(spec)
    assert f"Logging this apply to {log}" in out and out.rstrip().endswith(f"Log: {log}")
    assert "accounts and routing: 4 step(s)" in out  # domain, catch-all, 2 users
    assert "mail import: 2 step(s); 0/6200 messages" in out
    assert "  mail: 2000/6200 messages" in out and "/s, ETA " in out
    assert f"big@{domain} INBOX 2000/6000 messages" in out
    assert re.search(rf"; big@{re.escape(domain)} INBOX 2000/6000 messages, .*/s, ETA ", out)
    # a first import's total is the mbox's size: progress counts the source's bytes too,
    # so the last batch reaches the total (as stored, the From_ lines would be missing)
    assert re.search(rf"big@{domain} INBOX 6000/6000 messages, (\S+)/\1 \(100%\)", out), out
    assert f"  + mailbox big@{domain} INBOX: done (6000/6000 messages" in out
    assert "Apply complete: 6 change(s) made." in out
    text = log.read_text()
    assert "vadduser" in text and "(sensitive)" in text
    assert "pw-big" not in text and "$6$" not in text
    assert "step done: + mailbox big@" in text
    # the mail streams are logged like every other remote command: started, then how
    # they ended, with their duration and the bytes they moved
    spool = str(spec.parent / "source/var/spool/mail/big")
    size = Path(spool).stat().st_size
    read = [ln for ln in text.splitlines() if ln.endswith("$ " + source_read(spool, 0, size))]
    assert len(read) == 2, read  # started, ended
    ended = re.compile(r"\[oldmail\] [0-9.]+s exit 0, stdout 0 B, stderr 0 B \(stream: "
                       r"(\d+) B out, 0 B in\)\n    \$ \( \[ -f ")
    assert sorted(int(n) for n in ended.findall(text)) == sorted(
        p.stat().st_size for p in (spec.parent / "source/var/spool/mail").iterdir())
    agent = re.findall(r"\[newmail\] [0-9.]+s (.*)\n    \$ " + re.escape(AGENT_DISPLAY), text)
    assert agent[0] == "started (stream over OpenSSH)"
    assert re.fullmatch(r"exit 0, stdout 0 B, stderr 0 B \(stream: \d+ B out, \d+ B in\)",
                        agent[-1]), agent
    assert "result: ok" in text and "created: 3" in text and "changed: 1" in text  # catch-all
    assert "imported: 6200 message(s)" in text and "; 2 mailbox(es) completed" in text
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    quiet = mailplan("apply", str(spec), "--auto-approve", "--quiet", check=True)
    assert quiet.stdout == "" and quiet.stderr == ""
    assert len(logs(spec)) == 2 and "result: nothing to apply" in logs(spec)[-1].read_text()
    shown = json.loads(mailplan("show", str(spec), "--json", check=True).stdout)
    assert shown["mail"][f"big@{domain}"]["INBOX"]["imported"] == 6000
    assert shown["last_apply"]["result"] == "ok"
    text_show = mailplan("show", str(spec), check=True).stdout
    assert f"big@{domain}: 6000 message(s)" in text_show
    assert "users (2): big, small" in text_show


def wait_for(predicate, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError("timed out")


def journal_has_mail(spec: Path) -> bool:
    journal = spec.with_name("m.state.json.journal")
    return journal.exists() and b'"imported"' in journal.read_bytes()


@pytest.fixture
def many(tmp_path, sshd):
    """One user with 30,000 small messages (15 sync batches), over SSH: however fast
    the machine, an interrupt sent once the first batch is journaled lands mid-mailbox
    (with 3 batches, a fast run had made all three durable by then)."""
    return over_ssh(tmp_path, sshd, {"big": box(30000, 400)})


def test_the_resume_command_is_quoted_for_the_shell(tmp_path):
    """A spec in a directory whose name has a space: the resume command printed after
    Ctrl-C quotes it, so that pasting it resumes (it gave ``mailplan apply /tmp/my
    migration/m.yaml``, two arguments)."""
    where = tmp_path / "my migration"
    src = make_source(where / "source", [SourceAccount("big", 1000, "Big", "pw-big")])
    (src / "var/spool/mail/big").write_bytes(box(60000, 100))
    spec = write_spec(where / "m.yaml", source_root=src, target=install_target(
        where / "target"), domains={"one.example": {"import": {"uid_min": 1000}}})
    proc = subprocess.Popen([sys.executable, "-m", "mailplan", "apply", str(spec),
                             "--auto-approve"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for(lambda: journal_has_mail(spec))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert f"hint: resume with: mailplan apply '{spec}'\n" in err, err
    assert f"resume with: mailplan apply '{spec}'\n" in logs(spec)[-1].read_text()


def test_a_failed_step_says_how_to_resume(tmp_path):
    """A step that fails once apply has begun: the error's hint ends with the command
    that resumes (it was only in the log), after what to fix."""
    src = make_source(tmp_path / "source", [SourceAccount("u1", 1000, "U1", "pw-u1"),
                                            SourceAccount("u2", 1001, "U2", "pw-u2")])
    target = install_target(tmp_path / "target")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={"one.example": {"import": {"uid_min": 1000}}})
    tool = Path(target.vpopmail_dir, "bin/vadduser")
    real = tool.parent / "real" / "vadduser"  # the stand-in knows a tool by its name
    real.parent.mkdir()
    tool.rename(real)
    tool.write_text(f'#!/bin/sh\ncase "$*" in *u2@*) echo "disk full" >&2; exit 1;; esac\n'
                    f'exec "{real}" "$@"\n')
    tool.chmod(0o755)
    res = mailplan("apply", str(spec), "--auto-approve")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Summary:" in res.stdout and "u2@one.example" in res.stderr
    assert res.stderr.rstrip().endswith(f"resume with: mailplan apply {spec}"), res.stderr
    # --strict, --rescan and --parallel are part of the command that resumes, as given
    res = mailplan("apply", str(spec), "--auto-approve", "--strict", "--rescan",
                   "--parallel", "2")
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stderr.rstrip().endswith(f"resume with: mailplan apply {spec} --strict "
                                        "--rescan --parallel 2"), res.stderr
    tool.unlink()
    real.rename(tool)
    mailplan("apply", str(spec), "--auto-approve", check=True)


def test_ctrl_c_stops_at_a_safe_point_then_resume(many):
    spec, domain = many
    proc = subprocess.Popen([sys.executable, "-m", "mailplan", "apply", str(spec),
                             "--auto-approve"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "MAILPLAN_PROGRESS_INTERVAL": "0"})
    wait_for(lambda: journal_has_mail(spec))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "Stopping after the current step" in out
    assert f"resume with: mailplan apply {spec}" in err
    assert "Apply complete" not in out
    assert "result: interrupted" in out
    # the mailbox cut off between batches is a change not finished, not one "skipped"
    assert "  not finished: 1 change(s) (the same command again does them)\n" in out, out
    assert "  skipped: 0\n" in out, out
    state = json.loads(spec.with_name("m.state.json").read_text())
    assert state["history"][-1]["result"] == "interrupted"
    done = state["mail"][f"big@{domain}/INBOX"]["imported"]
    assert 0 < done < 30000 and done % 2000 == 0  # whole durable batches only
    assert "result: interrupted" in logs(spec)[-1].read_text()
    resumed = mailplan("apply", str(spec), "--auto-approve", check=True)
    assert "Apply complete" in resumed.stdout
    state = json.loads(spec.with_name("m.state.json").read_text())
    assert state["mail"][f"big@{domain}/INBOX"]["imported"] == 30000
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


def coloured(screen: str) -> bool:
    """Whether any SGR sequence sets a foreground colour (30-37, 90-97, 38;...)."""
    for params in re.findall(r"\x1b\[([0-9;]*)m", screen):
        codes = [int(c) for c in params.split(";") if c]
        if any(30 <= c <= 38 or 90 <= c <= 97 for c in codes):
            return True
    return False


def tmux(sock: Path, *args: str) -> str:
    return subprocess.run(["tmux", "-S", str(sock), *args], capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.parametrize("no_color", [False, True])
def test_live_display_in_a_terminal_and_ctrl_c(many, tmp_path, no_color):
    # many, not big: with 6,000 messages a fast run finished before the Ctrl-C landed
    require(shutil.which("tmux"), "tmux")
    spec, domain = many
    sock = tmp_path / "tmux.sock"
    env = "NO_COLOR=1 " if no_color else ""
    # COLUMNS pins rich's width to the pane's: twice on a loaded machine the display was
    # drawn 80 columns wide in this 160-column pane (the user's row cut to
    # "big@t41abee46c0.exam…"); rich falls back to 80 where the terminal reports no size
    command = (f"env -u NO_COLOR {env}TERM=xterm-256color COLUMNS=160 LINES=50 "
               f"{sys.executable} -m mailplan apply {spec} --auto-approve; echo EXIT=$?; "
               "sleep 600")
    tmux(sock, "new-session", "-d", "-x", "160", "-y", "50", command)
    try:
        wait_for(lambda: journal_has_mail(spec))
        screen = tmux(sock, "capture-pane", "-p", "-e")
        assert "all mail" in screen and "messages" in screen and "ETA" in screen
        assert f"big@{domain}" in screen
        # the user's row names the folder being imported, and has its own rate and ETA,
        # as the overall one
        assert re.search(rf"^  big@{re.escape(domain)} INBOX .* messages, .*/s, ETA ",
                         re.sub(r"\x1b\[[0-9;]*m", "", screen), re.M), screen
        assert coloured(screen) is not no_color
        tmux(sock, "send-keys", "C-c")
        wait_for(lambda: "EXIT=" in tmux(sock, "capture-pane", "-p", "-S", "-200"))
        screen = tmux(sock, "capture-pane", "-p", "-J", "-S", "-200")
        assert "EXIT=130" in screen
        assert "Stopping after the current step" in screen
        assert f"resume with: mailplan apply {spec}" in screen
    finally:
        subprocess.run(["tmux", "-S", str(sock), "kill-server"], check=False)
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


def test_a_plan_not_confirmed_is_cancelled_not_failed(tmp_path):
    """Answering anything but yes (on a terminal) starts nothing: the run says so once,
    with no summary of "failed" steps, and its log's result is "cancelled"."""
    import pty

    src = make_source(tmp_path / "source", [SourceAccount("ann", 1000, "Ann", "pw-ann")])
    target = install_target(tmp_path / "target")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={unique_domain(): {"import": {"uid_min": 1000}}})
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "mailplan", "apply", str(spec)],
                                stdin=secondary, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env={**os.environ, "NO_COLOR": "1"})
        os.write(primary, b"no\n")
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(primary)
        os.close(secondary)
    assert proc.returncode == 1
    assert "apply cancelled: nothing was changed" in err.decode()
    assert "Summary:" not in out.decode() and "failed" not in out.decode()
    (log,) = logs(spec)
    assert "result: cancelled" in log.read_text()
    assert "No changes." not in mailplan("plan", str(spec), check=True).stdout  # nothing made


def test_a_failure_before_the_first_change_prints_no_summary_of_failed_steps(tmp_path):
    """An apply that fails before its first change (here: the spec's password variable
    is not set) changed nothing: it says so once, the error, with no "Summary:" of a
    failed step repeating it and no command to resume; its log's result says that
    nothing was changed."""
    src = make_source(tmp_path / "source", [SourceAccount("ann", 1000, "Ann", "pw-ann")])
    target = install_target(tmp_path / "target")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={unique_domain(): {
                          "import": {"uid_min": 1000},
                          "users": [{"name": "bo", "password": {"env": "MP_UNSET_PW"}}]}})
    res = mailplan("apply", str(spec), "--auto-approve", env={"MP_UNSET_PW": ""})
    assert res.returncode == 1, res.stdout + res.stderr
    assert "environment variable MP_UNSET_PW is not set" in res.stderr
    assert res.stderr.count("MP_UNSET_PW is not set") == 1, res.stderr
    assert "Summary:" not in res.stdout and "failed" not in res.stdout, res.stdout
    assert "resume with" not in res.stdout + res.stderr
    (log,) = logs(spec)
    text = log.read_text()
    assert "result: failed before the first change: nothing was changed" in text, text
    assert "resume with" not in text


def test_a_log_that_cannot_be_written_stops_without_stopping_the_apply(tmp_path):
    import errno

    log = ApplyLog(default_log_path(tmp_path / "m.state.json"))
    log.write("first")

    class Full:  # the file as a full disk leaves it
        def write(self, _text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            raise OSError(errno.ENOSPC, "No space left on device")

    log._file.flush()
    log._file.close()
    log._file = Full()
    log.write("second")  # no exception: a log must not stop an apply midway
    log.summary(Summary())
    log.close()
    assert log.failed == "No space left on device"
    assert log.path.read_text().count("\n") == 1


def test_a_state_that_cannot_be_saved_after_an_error_says_both(tmp_path):
    from mailplan.apply import _finish
    from mailplan.errors import HostError, MailplanError

    class Full:
        def finish(self, result, summary):
            raise MailplanError("cannot write /s.json: No space left on device")

    with pytest.raises(HostError) as info:
        try:
            raise HostError("vadduser failed", host="new")
        finally:
            _finish(Full(), "failed", {})  # type: ignore[arg-type]
    assert str(info.value).startswith("host new: vadduser failed\n  then the state could not "
                                      "be saved: cannot write /s.json")
    with pytest.raises(MailplanError, match="cannot write"):
        _finish(Full(), "ok", {})  # type: ignore[arg-type]


def test_the_log_records_what_the_plan_does_not_migrate(tmp_path):
    """The apply log is the record of the run: the plan's problems (accounts that are not
    migrated, and why) are in it, and its summary counts them, also when the spec is
    applied without showing the plan (--quiet) and when there is nothing to apply."""
    src = make_source(tmp_path / "source", [
        SourceAccount("ann", 1000, "Ann", "pw-ann"),
        SourceAccount("lou", 1001, "Locked", raw_hash="!$6$salt$lockedhashvalue")])
    target = install_target(tmp_path / "target")
    domain = unique_domain()
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    for args in ((), ("--quiet",)):  # applies the plan, then finds nothing to apply
        # exit 3 both times: lou is not migrated
        assert mailplan("apply", str(spec), "--auto-approve", *args).returncode == 3
        text = logs(spec)[-1].read_text()
        assert re.search(rf"  ! lou@{re.escape(domain)}: password of source account 'lou' "
                         r"cannot be migrated \(shadow line \d+\): account is locked", text)
        assert "not migrated: 1 (the plan's problems, listed above)" in text
        assert "lockedhashvalue" not in text and "pw-ann" not in text
    assert "result: nothing to apply" in text


def test_keywords_an_import_cannot_carry_are_told_in_the_output_and_the_log(tmp_path):
    """A folder holds 26 IMAP keywords (dovecot-keywords letters a-z): a message with
    more is imported with the first 26, and apply says which were not carried, on its
    output and in its log, and counts that line in the summary."""
    src = make_source(tmp_path / "source", [SourceAccount("ann", 1000, "Ann", "pw-ann")])
    words = " ".join(f"k{i}" for i in range(28)).encode()
    (src / "var/spool/mail/ann").write_bytes(
        b"From a@b.example Mon Nov  2 10:00:00 2026\nX-Keywords: " + words
        + b"\nSubject: many\n\nbody\n\n"
        + b"From a@b.example Mon Nov  2 10:00:00 2026\nX-Keywords: k3\nSubject: one\n\nx\n\n")
    target = install_target(tmp_path / "target")
    domain = unique_domain()
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    out = mailplan("apply", str(spec), "--auto-approve", check=True).stdout
    line = (f"  ! + mailbox ann@{domain} INBOX: 1 message(s) lost IMAP keywords, past the "
            "folder's 26 (dovecot-keywords letters a-z): k26, k27 (the messages and their "
            "other flags are imported)")
    assert line in out.splitlines(), out
    assert out.index(line) < out.index(f"  + mailbox ann@{domain} INBOX: done")
    text = logs(spec)[-1].read_text()
    assert f"step note: {line[2:]}" in text
    assert "  notes: 1 (the lines with ! above)" in text
    assert "imported: 2 message(s)" in text


def test_a_note_is_escaped_in_the_log_as_on_the_output(tmp_path):
    """A note names keywords that are not IMAP atoms, as a message's X-Keywords header
    had them (a sender's own header may put one in the spool): a control character in
    one is escaped in the log, as on the output, never written to it raw."""
    from io import StringIO

    from mailplan.interrupt import SignalStop
    from mailplan.watch import ApplyWatch

    out = StringIO()
    log = tmp_path / "apply.log"
    watch = ApplyWatch(tmp_path / "state.json", resume="", signals=SignalStop(),
                       log_path=log, stream=out)
    watch.reporter = PlainReporter(out)
    watch.on_note(change("ann"), "1 message(s) lost IMAP keywords, not IMAP keywords "
                                 "(atoms): bad\x1b[2J\x9b1m")
    watch.log.close()
    text = log.read_text()
    assert "\x1b" not in text and "\x9b" not in text
    assert "(atoms): bad\\x1b[2J\\x9b1m" in text
    assert "\x1b" not in out.getvalue() and "bad\\x1b[2J\\x9b1m" in out.getvalue()
    assert watch.summary.noted == 1


def test_stdout_closed_mid_apply_stops_at_a_safe_point_and_says_so_on_stderr(many):
    """`mailplan apply ... | head`: the reader goes away mid-import. The apply stops at
    its next safe point (the batch under way durable and journaled), and says on stderr
    why it stopped and how to resume, exit status 1; it stopped at its next print with
    nothing on stderr (click swallows the broken pipe)."""
    spec, domain = many
    proc = subprocess.Popen([sys.executable, "-m", "mailplan", "apply", str(spec),
                             "--auto-approve"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "MAILPLAN_PROGRESS_INTERVAL": "0"})
    wait_for(lambda: journal_has_mail(spec))
    proc.stdout.close()  # the next status line meets a closed pipe
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 1, err
    assert re.search(r"^Error: apply stopped after \d+ of \d+ change\(s\): its standard "
                     r"output was closed \(Broken pipe\); everything finished is recorded "
                     r"in ", err, re.M), err
    assert err.rstrip().endswith(f"hint: resume with: mailplan apply {spec}"), err
    assert "Exception ignored" not in err and "Traceback" not in err, err
    state = json.loads(spec.with_name("m.state.json").read_text())
    assert state["history"][-1]["result"] == "interrupted"
    done = state["mail"][f"big@{domain}/INBOX"]["imported"]
    assert 0 < done < 30000 and done % 2000 == 0  # whole durable batches only
    text = logs(spec)[-1].read_text()
    assert "standard output closed (Broken pipe): stopping at the next safe point (at " in text
    assert "result: interrupted" in text and f"resume with: mailplan apply {spec}" in text
    mailplan("apply", str(spec), "--auto-approve", check=True)
    state = json.loads(spec.with_name("m.state.json").read_text())
    assert state["mail"][f"big@{domain}/INBOX"]["imported"] == 30000


def test_stdout_closed_before_the_first_change_changes_nothing_and_says_so(tmp_path):
    """Standard output already gone when apply starts (`| head -1` that has exited):
    nothing is changed, and stderr says why, exit status 1 (it said nothing)."""
    src = make_source(tmp_path / "source", [SourceAccount("ann", 1000, "Ann", "pw-ann")])
    spec = write_spec(tmp_path / "m.yaml", source_root=src,
                      target=install_target(tmp_path / "target"),
                      domains={unique_domain(): {"import": {"uid_min": 1000}}})
    read, write = os.pipe()
    os.close(read)
    try:
        res = subprocess.run([sys.executable, "-m", "mailplan", "apply", str(spec),
                              "--auto-approve"], stdout=write, stderr=subprocess.PIPE,
                             text=True, timeout=120)
    finally:
        os.close(write)
    assert res.returncode == 1, res.stderr
    assert res.stderr.startswith("Error: standard output was closed (Broken pipe) before "
                                 "the first change: nothing was changed"), res.stderr
    assert "Exception ignored" not in res.stderr, res.stderr
    assert "resume with" not in res.stderr
    assert not spec.with_name("m.state.json").exists()  # nothing was applied
    assert "result: failed before the first change: nothing was changed" in \
        logs(spec)[-1].read_text()


def test_the_stop_note_from_the_signal_handler_never_raises_on_a_write_error(tmp_path):
    """The first signal's note is printed from the signal handler: a write error there
    (the reader of stdout gone) must not raise into the code the signal interrupted."""
    import errno

    from mailplan.interrupt import SignalStop
    from mailplan.watch import ApplyWatch

    class Gone:
        broken = False

        def write(self, text):
            if self.broken:
                raise BrokenPipeError(errno.EPIPE, "Broken pipe")
            return len(text)

        def flush(self):
            pass

        def isatty(self):
            return False

    out = Gone()
    watch = ApplyWatch(tmp_path / "state.json", resume="mailplan apply m.yaml",
                       signals=SignalStop(), log_path=tmp_path / "apply.log", stream=out)
    watch.reporter = PlainReporter(watch.stream)
    out.broken = True
    watch._stop_requested(signal.SIGINT)  # raised BrokenPipeError
    assert watch.stop
    watch.reporter.note("more")  # and every later write is dropped, not raised
    watch.log.close()


def test_the_error_line_on_a_closed_stderr_is_dropped_not_raised(monkeypatch):
    """A command's last line, ``Error: ...``, meets a stderr gone away (``2>&1 | head``):
    it is dropped and stderr's descriptor pointed at /dev/null; it raised BrokenPipeError
    into click, which ended the command silently."""
    import errno

    from mailplan.output import error_line

    class Gone:
        def write(self, text):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

        def flush(self):
            pass

        def fileno(self):
            return fd

    fd = os.dup(2)  # what is pointed at /dev/null: a copy, not the test's own stderr
    try:
        monkeypatch.setattr(sys, "stderr", Gone())
        error_line("Error: something")
        assert os.path.samestat(os.fstat(fd), os.stat(os.devnull))
    finally:
        os.close(fd)
