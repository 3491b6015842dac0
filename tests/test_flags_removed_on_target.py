"""A flag the user removed on the new server stays removed (the defect of session 55:
a mailbox read whole put back every \\Seen and \\Flagged its messages had at import).

The writer records the flags the source had when it last wrote a message's flags (the
ledger's flags lines); a plan proposes only what the source gained since."""

from __future__ import annotations

import json
import re
from pathlib import Path

from migration import (
    SourceAccount,
    install_target,
    mailplan,
    make_source,
    unique_domain,
    write_spec,
)


def message(i: int, status: str, xstatus: str = "") -> bytes:
    extra = f"X-Status: {xstatus}\n" if xstatus else ""
    return (f"From s{i}@x.example Mon Nov  2 10:00:00 2026\nFrom: s{i}@x.example\n"
            f"Subject: m{i}\nStatus: {status}\n{extra}\nbody line\n\n").encode()


def flagged(home: str) -> dict[str, str]:
    """The Maildir flags of each message file on the target, by subject."""
    out = {}
    for f in Path(home, "Maildir").rglob("*_mp*"):
        subject = re.search(rb"Subject: (\S+)", f.read_bytes())[1].decode()
        out[subject] = f.name.partition(":2,")[2]
    return out


def unflag(home: str, subject: str) -> None:
    """Remove every flag of a message, as dovecot does for an IMAP STORE -FLAGS: its
    file renamed (into cur/, its info emptied)."""
    for f in Path(home, "Maildir").rglob("*_mp*"):
        if f"Subject: {subject}\n".encode() in f.read_bytes():
            f.rename(f.parent.parent / "cur" / (f.name.partition(":2,")[0] + ":2,"))


def changes(spec: Path, *opts: str) -> list[tuple[str, str]]:
    res = mailplan("plan", str(spec), "--json", *opts, check=True)
    return [(c["kind"], c["after"]) for c in json.loads(res.stdout)["changes"]]


def test_a_flag_removed_on_the_target_is_not_put_back(tmp_path):
    src = make_source(tmp_path / "source", [SourceAccount("ursula", 1000, "Ursula", "pw")])
    spool = src / "var/spool/mail/ursula"
    spool.write_bytes(message(0, "RO", "F") + message(1, "O") + message(2, "O"))
    target = install_target(tmp_path / "target")
    domain = unique_domain("unflag")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    mailplan("apply", str(spec), "--auto-approve", check=True)
    home = target.tool("vuserinfo", "-d", f"ursula@{domain}").stdout.decode().split("\n")[0]
    assert flagged(home) == {"m0": "FS", "m1": "", "m2": ""}
    unflag(home, "m0")  # the user removes \Seen and \Flagged on the new server
    # the old server expunges m1, marks m2 read, gets new mail: the spool is read whole
    spool.write_bytes(message(0, "RO", "F") + message(2, "RO") + message(3, "O"))
    plan = changes(spec)
    # m2's \Seen is gained on the source: proposed; m0's removed flags are not
    assert [k for k, _ in plan] == ["flags", "mailbox"], plan
    assert plan[0][1] == "1 message(s) gain flags (S 1)", plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert flagged(home) == {"m0": "", "m1": "", "m2": "S", "m3": ""}
    verified = mailplan("verify", str(spec))
    assert verified.returncode == 0, verified.stdout
    assert re.search(r"flags removed on the target by the user \(not a failure\):\n"
                     r" +[0-9a-f]{12}#0: -FS \(on the source: message 1,", verified.stdout), \
        verified.stdout
    # the flag the flags change added is recorded too: removed, it stays removed,
    # also where every mailbox is read whole (the runbook's final sync)
    unflag(home, "m2")
    assert changes(spec, "--rescan") == []
    mailplan("apply", str(spec), "--rescan", "--auto-approve", check=True)
    assert flagged(home) == {"m0": "", "m1": "", "m2": "", "m3": ""}
    # what the source gains after that still comes: m0 answered on the old server
    spool.write_bytes(message(0, "RO", "AF") + message(2, "RO") + message(3, "O"))
    assert changes(spec) == [("flags", "1 message(s) gain flags (R 1)")]
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert flagged(home)["m0"] == "R"
