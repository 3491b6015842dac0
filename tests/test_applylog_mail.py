"""The apply log of a mail import over the test sshd: every remote command of the import
(the source reads, their window checks, the target's writer agent) is in it with its
duration and result, like every other remote command, and no secret is."""

from __future__ import annotations

import re
from pathlib import Path

from migration import (
    AGENT_DISPLAY,
    SourceAccount,
    install_target,
    mailplan,
    make_source,
    small_disk,
    source_read,
    source_slice,
    ssh_host,
    unique_domain,
    write_spec,
)
from passlib.hash import sha512_crypt
from test_integration_mail import msg, setup  # noqa: F401  (setup: 3 users, 5 mailboxes)

from mailplan.mail.windows import OPENED, PEEK

AGENT = AGENT_DISPLAY

ENTRY = re.compile(r"^\S+ \[(?P<host>[^\]]+)\] (?P<secs>[0-9.]+)s (?P<status>started|exit "
                   r"-?\d+, stdout \d+ B, stderr \d+ B(?:: [^\n]*?)?)(?: \((?P<note>[^\n]*)\))?"
                   r"\n    \$ (?P<cmd>[^\n]*)$", re.M)


def test_log_has_each_mailbox_read_and_the_agent_with_duration_and_result(setup):  # noqa: F811
    src, _target, domain, spec = setup
    out = mailplan("apply", str(spec), "--auto-approve", check=True).stdout
    assert "Apply complete" in out
    (log,) = spec.with_name("m.state.json.logs").glob("apply-*.log")
    text = log.read_text()
    entries = [m.groupdict() for m in ENTRY.finditer(text)]
    assert len(entries) == int(re.search(r"remote commands logged: (\d+)", text)[1])

    # bob's spool is MMDF, not an mbox: the plan reports it and apply never reads it
    mailboxes = [src / "var/spool/mail/alice", src / "home/alice/mail/Work",
                 src / "home/alice/mail/Lists/Python", src / "var/spool/mail/carol"]
    for path in mailboxes:
        size = path.stat().st_size
        read = [e for e in entries if e["cmd"] == source_read(path, 0, size)]
        assert [(e["host"], e["status"], e["note"]) for e in read] == [
            ("oldmail", "started", "stream over OpenSSH"),
            ("oldmail", "exit 0, stdout 0 B, stderr 0 B", f"stream: {size} B out, 0 B in")], read
        assert float(read[1]["secs"]) > 0
        # the check that the read was not torn (the file still holds what was read, and
        # ends at a message boundary) is a remote command too
        # (not the plan's look at the same windows, which is one of a batch)
        check = [e for e in entries if e["cmd"].startswith(
                     source_read(path, 0, min(size, 4096))[:-len(" )")] + "; ")
                 and e["cmd"].endswith("; " + source_slice(OPENED, size, PEEK) + " )")
                 and not (e["note"] or "").startswith("batch ")]
        assert [(e["host"], e["status"][:6], e["note"]) for e in check] == [
            ("oldmail", "exit 0", None)], check
        assert float(check[0]["secs"]) > 0

    agent = [e for e in entries if e["cmd"] == AGENT]
    assert [(e["host"], e["status"]) for e in agent] == [
        ("newmail", "started"), ("newmail", "exit 0, stdout 0 B, stderr 0 B")], agent
    moved = re.fullmatch(r"stream: (\d+) B out, (\d+) B in", agent[1]["note"])
    assert moved and int(moved[2]) > sum(p.stat().st_size for p in mailboxes) // 2
    assert float(agent[1]["secs"]) > 0
    # every started stream ended, and was logged as ending
    started = [e["cmd"] for e in entries if e["status"] == "started"]
    ended = [e["cmd"] for e in entries if e["note"] and e["note"].startswith("stream: ")]
    assert sorted(started) == sorted(ended)

    # no secret: neither the passwords nor their hashes, in commands or anywhere else
    assert "(sensitive)" in text
    shadow = (src / "etc/shadow").read_text()
    hashes = [line.split(":")[1] for line in shadow.splitlines()
              if line.split(":")[1].startswith("$")]
    assert len(hashes) == 3
    for secret in ("pw1", "pw2", "pw3", *hashes, *(h.split("$")[-1] for h in hashes)):
        assert secret not in text
    assert "$6$" not in text
    assert f"step done: + mailbox carol@{domain} INBOX" in text


def test_import_for_existing_users_asks_the_target_nothing_per_user(tmp_path):
    """Users that existed at plan time: their directories come from the plan's facts, so
    the import runs the writer agent and nothing else on the target whatever the number
    of users — including users past the 100th, whose directories vpopmail hashes."""
    n = 103
    hashed = sha512_crypt.using(rounds=1000).hash("pw-shared-secret")
    users = [SourceAccount(f"u{i:03d}", 2000 + i, f"U {i}", raw_hash=hashed) for i in range(n)]
    src = make_source(tmp_path / "source", users)
    target = install_target(tmp_path / "target")
    domain = unique_domain()
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 2000}}})
    mailplan("apply", str(spec), "--auto-approve", check=True)  # the users, no mail yet
    for u in users:
        (src / "var/spool/mail" / u.name).write_bytes(
            msg("a@x.example", "Mon Nov  2 10:00:00 2026", f"{u.name} 1")
            + msg("b@x.example", "Tue Nov  3 11:30:00 2026", f"{u.name} 2", "Status: RO\n"))
    out = mailplan("apply", str(spec), "--auto-approve", check=True).stdout
    assert f"Apply complete: {n} change(s) made." in out  # one mailbox per user
    second = sorted(spec.with_name("m.state.json.logs").glob("apply-*.log"))[-1]
    text = second.read_text()
    applying = text[text.index(f": {n} change(s) to apply"):]
    target_cmds = [m.groupdict() for m in ENTRY.finditer(applying) if m["host"] == "newmail"]
    assert [(e["status"][:6], e["cmd"]) for e in target_cmds] == [
        ("starte", AGENT), ("exit 0", AGENT)], target_cmds
    target_text = "\n".join(e["cmd"] for e in ENTRY.finditer(text) if e["host"] == "newmail")
    assert "vuserinfo -d" not in target_text and "stat -c" not in target_text
    assert "pw-shared-secret" not in text and hashed not in text
    # same places and owners as vpopmail made them, hashed directories included
    domain_dir = Path(target.tool("vdominfo", "-d", domain).stdout.decode().split("\n")[0])
    nested = 0
    for u in users:
        address = f"{u.name}@{domain}"
        udir = Path(target.tool("vuserinfo", "-d", address).stdout.decode().split("\n")[0])
        nested += udir.parent != domain_dir
        root = udir / "Maildir"
        assert len(list((root / "new").iterdir())) + len(list((root / "cur").iterdir())) == 2
        owner = (udir.stat().st_uid, udir.stat().st_gid)
        assert {(p.stat().st_uid, p.stat().st_gid) for p in [root, *root.rglob("*")]} == {owner}
    assert 0 < nested < 10  # vpopmail nests the last few (its level holds 100 entries)


def test_a_failed_import_still_logs_how_each_of_its_commands_ended(tmp_path, sshd):
    """The target's disk fills up mid-mailbox: the agent's exit and error, and the source
    read it cut short (stopped by mailplan), are in the log; no stream is left open."""
    target = install_target(tmp_path / "target")
    domains = Path(target.vpopmail_dir, "domains")
    with small_disk(domains):
        src = make_source(tmp_path / "source", [SourceAccount("big", 1000, "Big", "BigPw1")])
        box = src / "var/spool/mail/big"
        # 20 MB: far more than the streams' buffers hold once the writer has stopped, so
        # the read cannot end on its own before mailplan stops it (3 MB fill the disk)
        box.write_bytes(b"".join(
            msg(f"s{i}@x.example", "Mon Nov  2 10:00:00 2026", f"m{i}", body="x" * 2000 + "\n")
            for i in range(10000)))
        spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                          source_host=ssh_host(sshd), target_host=ssh_host(sshd),
                          domains={unique_domain(): {"import": {"uid_min": 1000}}})
        res = mailplan("apply", str(spec), "--auto-approve")
        assert res.returncode == 1 and "No space left on device" in res.stderr, res.stderr
    (log,) = spec.with_name("m.state.json.logs").glob("apply-*.log")
    text = log.read_text()
    entries = [m.groupdict() for m in ENTRY.finditer(text)]
    size = box.stat().st_size
    read = [e for e in entries if e["cmd"] == source_read(box, 0, size)]
    assert [(e["status"], e["note"].split(", ")[-1]) for e in read] == [
        ("started", "stream over OpenSSH"),
        ("exit -1, stdout 0 B, stderr 19 B: stopped by mailplan", "stopped")]
    assert float(read[1]["secs"]) > 0
    agent = [e for e in entries if e["cmd"] == AGENT]
    assert agent[0]["status"] == "started" and len(agent) == 2
    # the writer's error, or its sync process's (which may name the file it wrote)
    assert re.fullmatch(r"exit 1, stdout \d+ B, stderr \d+ B: mailplan agent: .*No space left "
                        r"on device.*", agent[1]["status"]), agent[1]
    started = [e["cmd"] for e in entries if e["status"] == "started"]
    ended = [e["cmd"] for e in entries if e["note"] and e["note"].startswith("stream: ")]
    assert sorted(started) == sorted(ended)
    assert "result: failed" in text and "BigPw1" not in text and "$6$" not in text


def test_an_agent_that_reports_an_error_is_logged_with_its_own_exit(tmp_path):
    """The writer refuses a request and says why (an ``X`` reply; here the user's
    Maildir/tmp is a plain file, so opening the Maildir fails). It ends by itself after
    that: mailplan waits for it instead of stopping it, so the log shows its exit and
    error, not a kill."""
    src = make_source(tmp_path / "source", [SourceAccount("dora", 1000, "Dora", "DoraPw1")])
    target = install_target(tmp_path / "target")
    domain = unique_domain()
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    mailplan("apply", str(spec), "--auto-approve", check=True)  # the user, no mail yet
    (src / "var/spool/mail/dora").write_bytes(msg("a@x.example", "Mon Nov  2 10:00:00 2026",
                                                  "one"))
    udir = Path(target.tool("vuserinfo", "-d", f"dora@{domain}").stdout.decode().split("\n")[0])
    (udir / "Maildir" / "tmp").rmdir()
    (udir / "Maildir" / "tmp").write_bytes(b"")
    res = mailplan("apply", str(spec), "--auto-approve")
    assert res.returncode == 1 and "Not a directory" in res.stderr, res.stderr
    second = sorted(spec.with_name("m.state.json.logs").glob("apply-*.log"))[-1]
    agent = [m.groupdict() for m in ENTRY.finditer(second.read_text()) if m["cmd"] == AGENT]
    assert agent[0]["status"] == "started" and len(agent) == 2, agent
    assert re.fullmatch(r"exit 1, stdout \d+ B, stderr \d+ B: mailplan agent: .*Not a "
                        r"directory.*", agent[1]["status"]), agent[1]
