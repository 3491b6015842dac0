"""``--rescan``: flags set on the old server in place since the import, in a spool that
also grew.

Between the first run and the one after the MX switch, users read mail on the old
server (UW-IMAP, mutt: ``Status: O`` -> ``RO`` rewritten in place, the size kept) and
new mail arrives. The plan trusts the checkpoint (the first 4 KiB and the 4 KiB before
it match) and reads only what was appended: cheap, but a flag set in the middle of the
spool is not seen, and verify says "flags lost" for ever. ``plan``/``apply --rescan``
read every mailbox whole: those flags become ``~ flags``, no message is imported twice.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import jsonschema
from click.testing import CliRunner
from migration import (
    SourceAccount,
    install_target,
    mailplan,
    make_source,
    unique_domain,
    write_spec,
)

from mailplan import cli
from mailplan.errors import MailplanError
from mailplan.spec import load_schema


def marked(i: int, status: str, keywords: str = "") -> bytes:
    """A message as c-client writes it: its keywords in a blank-padded X-Keywords."""
    return (f"From s{i}@x.example Mon Nov  2 10:00:00 2026\nFrom: s{i}@x.example\n"
            f"Subject: m{i}\nStatus: {status}\nX-Keywords: {keywords:<20}\n\n"
            + "body line\n" * 50 + "\n").encode()


def imported(tmp_path: Path, keyword: bool = False) -> tuple[Path, Path, object, str]:
    """A spool of 40 messages (about 22 KiB: m20 and m21 lie beyond the first 4 KiB and
    the last), applied; then m20 marked unread and m21 read in place, the size kept
    (or, ``keyword``, m21 given the keyword Work in its padding), and m40 delivered.
    The spool, the spec, the target and the domain."""
    src = make_source(tmp_path / "source", [SourceAccount("ursula", 1000, "Ursula", "pw")])
    spool = src / "var/spool/mail/ursula"
    before = {i: "RO" if i == 20 else "O" for i in range(40)}
    spool.write_bytes(b"".join(marked(i, s) for i, s in before.items()))
    assert spool.stat().st_size > 2 * 8192
    target = install_target(tmp_path / "target")
    domain = unique_domain("rescan")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    mailplan("apply", str(spec), "--auto-approve", check=True)
    size, mtime = spool.stat().st_size, spool.stat().st_mtime
    after = {**before, 20: "O", 21: "RO"} if not keyword else before
    with spool.open("r+b") as fh:  # rewritten in place, as mutt or c-client syncs it
        fh.write(b"".join(marked(i, s, "Work" if keyword and i == 21 else "")
                          for i, s in after.items()))
    assert spool.stat().st_size == size
    with spool.open("ab") as fh:  # then new mail
        fh.write(marked(40, "O"))
    os.utime(spool, (mtime + 60, mtime + 60))
    return spool, spec, target, domain


def seen(target, address: str) -> list[str]:
    """The subjects of the messages with the Seen flag on the target, and all of them."""
    home = target.tool("vuserinfo", "-d", address).stdout.decode().split("\n")[0]
    files = [f for f in Path(home, "Maildir").rglob("*")
             if f.is_file() and f.parent.name in ("new", "cur")]

    def subject(f: Path) -> str:
        return re.search(rb"Subject: (\S+)", f.read_bytes())[1].decode()

    return sorted(subject(f) for f in files if re.search(r":2,[A-Z]*S", f.name))


def count(target, address: str) -> int:
    home = target.tool("vuserinfo", "-d", address).stdout.decode().split("\n")[0]
    return sum(1 for f in Path(home, "Maildir").rglob("*")
               if f.is_file() and f.parent.name in ("new", "cur"))


def changes(spec: Path, *opts: str) -> list[tuple[str, str]]:
    res = mailplan("plan", str(spec), "--json", *opts, check=True)
    return [(c["kind"], c["after"]) for c in json.loads(res.stdout)["changes"]]


def test_rescan_carries_a_keyword_set_in_place_in_c_client_padding(tmp_path):
    spool, spec, target, domain = imported(tmp_path, keyword=True)
    assert [k for k, _ in changes(spec)] == ["mailbox"]
    rescan = changes(spec, "--rescan")
    assert [k for k, _ in rescan] == ["flags", "mailbox"], rescan
    assert rescan[0][1] == "1 message(s) gain flags (keywords 1)", rescan
    before = mailplan("verify", str(spec), "--full")
    assert before.returncode != 0 and "flags lost:" in before.stdout, before.stdout
    mailplan("apply", str(spec), "--rescan", "--auto-approve", check=True)
    verified = mailplan("verify", str(spec), "--full")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "No changes" in mailplan("plan", str(spec), check=True).stdout


def test_rescan_carries_flags_set_in_place_on_a_spool_that_also_grew(tmp_path):
    spool, spec, target, domain = imported(tmp_path)
    address = f"ursula@{domain}"
    # the limit of the cheap plan: only the appended message, the flag not seen
    plain = changes(spec)
    assert [k for k, _ in plain] == ["mailbox"], plain
    assert plain[0][1].startswith("1 message(s), 534B to import"), plain
    text = mailplan("plan", str(spec), check=True).stdout
    assert "~ flags" not in text
    # --rescan: the flag, and the one new message (nothing imported twice)
    rescan = changes(spec, "--rescan")
    assert [k for k, _ in rescan] == ["flags", "mailbox"], rescan
    # m21 read, m20 marked unread: m20's loss is recorded (its file keeps \Seen)
    assert rescan[0][1] == ("1 message(s) gain flags (S 1); 1 message(s) lost flags on the "
                            "old server since mailplan recorded them: recorded again (files "
                            "unchanged)"), rescan
    assert rescan[1][1].startswith("1 message(s), 534B to import"), rescan
    assert "~ flags" in mailplan("plan", str(spec), "--rescan", check=True).stdout
    mailplan("apply", str(spec), "--rescan", "--auto-approve", check=True)
    assert seen(target, address) == ["m20", "m21"]  # m20's S stays: never removed
    assert count(target, address) == 41
    verified = mailplan("verify", str(spec))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "No changes" in mailplan("plan", str(spec), check=True).stdout
    again = mailplan("plan", str(spec), "--rescan", check=True).stdout
    assert "No changes" in again
    # the plan says how it read the mailboxes (a plain one does not)
    assert again.rstrip().endswith("Every mailbox was read whole (--rescan): flags set on "
                                   "the old server since the import are included."), again
    assert "--rescan" not in mailplan("plan", str(spec), check=True).stdout


def test_without_rescan_verify_says_how_the_lost_flag_is_carried(tmp_path):
    spool, spec, target, domain = imported(tmp_path)
    mailplan("apply", str(spec), "--auto-approve", check=True)  # the appended one only
    assert count(target, f"ursula@{domain}") == 41
    assert "No changes" in mailplan("plan", str(spec), check=True).stdout
    res = mailplan("verify", str(spec))
    assert res.returncode != 0 and "flags lost:" in res.stdout, res.stdout
    assert "`mailplan apply --rescan SPEC`" in res.stdout


def test_a_plan_saved_with_rescan_is_applied_with_it(tmp_path):
    spool, spec, target, domain = imported(tmp_path)
    saved = tmp_path / "p.json"
    mailplan("plan", str(spec), "--rescan", "-o", str(saved), check=True)
    doc = json.loads(saved.read_text())
    jsonschema.validate(doc, load_schema("plan-v1.schema.json"))
    assert doc["rescan"] is True
    assert [c["kind"] for c in doc["changes"]] == ["flags", "mailbox"]
    mailplan("apply", str(saved), check=True)
    assert seen(target, f"ursula@{domain}") == ["m20", "m21"]
    assert count(target, f"ursula@{domain}") == 41
    assert mailplan("verify", str(spec)).returncode == 0


def test_a_plan_saved_without_rescan_is_not_applied_with_it(tmp_path):
    spool, spec, target, domain = imported(tmp_path)
    saved = tmp_path / "p.json"
    mailplan("plan", str(spec), "-o", str(saved), check=True)
    assert "rescan" not in json.loads(saved.read_text())
    logs = tmp_path / "m.state.json.logs"
    assert logs.is_dir()
    before = sorted(logs.iterdir())
    res = mailplan("apply", str(saved), "--rescan")
    assert res.returncode == 1
    assert "saved without --rescan, and would be applied with --rescan" in res.stderr
    assert "mailplan plan SPEC --rescan -o FILE" in res.stderr
    assert count(target, f"ursula@{domain}") == 40  # nothing done
    assert sorted(logs.iterdir()) == before  # refused before an apply log is begun


def test_the_re_plan_after_a_dropped_connection_keeps_rescan(tmp_path, monkeypatch):
    """apply's retry plans again after a reconnect: with --rescan too (a plan from the
    checkpoints would drop the flags the first one showed)."""
    spool, spec, target, domain = imported(tmp_path)
    asked: list[bool] = []
    real = cli.make_plan

    def make_plan(*args, **kwargs):
        asked.append(kwargs.get("rescan", False))
        return real(*args, **kwargs)

    def dropped(planned, current, **kwargs):
        again = kwargs["replan"](current)  # what the retry does after reconnecting
        again.close()
        assert [c.kind for c in again.plan.changes] == ["flags", "mailbox"]
        raise MailplanError("stopped by the test")

    monkeypatch.setattr(cli, "make_plan", make_plan)
    monkeypatch.setattr(cli, "apply_with_retries", dropped)
    res = CliRunner().invoke(cli.main, ["apply", str(spec), "--rescan", "--auto-approve"])
    assert "stopped by the test" in res.output, res.output
    assert asked == [True, True]
