"""The apply log of a mail import over the test sshd: every remote command of the import
(the source reads, their window checks, the target's writer agent) is in it with its
duration and result, like every other remote command, and no secret is."""

from __future__ import annotations

import re

from migration import mailplan
from test_integration_mail import setup  # noqa: F401  (the fixture: 3 users, 5 mailboxes)

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
        read = [e for e in entries if e["cmd"] == f"head -c {size} -- {path}"]
        assert [(e["host"], e["status"], e["note"]) for e in read] == [
            ("oldmail", "started", "stream over OpenSSH"),
            ("oldmail", "exit 0, stdout 0 B, stderr 0 B", f"stream: {size} B out, 0 B in")], read
        assert float(read[1]["secs"]) > 0
        # the check that the read was not torn (the file still holds what was read, and
        # ends at a message boundary) is a remote command too
        check = [e for e in entries if e["cmd"].startswith(f"head -c {min(size, 4096)} -- "
                                                           f"{path}; ")
                 and e["cmd"].endswith(f"tail -c +{size + 1} -- {path} | head -c 6")]
        assert [(e["host"], e["status"][:6], e["note"]) for e in check] == [
            ("oldmail", "exit 0", None)], check
        assert float(check[0]["secs"]) > 0

    agent = [e for e in entries if e["cmd"] == "python3 -c '<mailplan's Maildir writer agent>'"]
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
