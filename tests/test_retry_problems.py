"""After a dropped connection apply plans again: the "Not migrated" line and exit status 3
follow that re-plan, the plan carried out, not the first one.

The drop is simulated where the retry sees it (``ConnectionLost`` from the first
``apply_plan``, before any step); between the two plans bob's spool changes on the
source, so that exactly one of the two plans has a problem (an MMDF spool, which is
no mbox: not migrated).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from migration import SourceAccount, install_target, make_source, unique_domain, write_spec

from mailplan import cli, retry
from mailplan.errors import ConnectionLost

MBOX = b"From a@x.example Mon Nov  2 10:00:00 2026\nFrom: a@x.example\nSubject: hi\n\nhello\n\n"
MMDF = b"\x01\x01\x01\x01\nFrom: mmdf\n\nx\n\x01\x01\x01\x01\n"


@pytest.mark.parametrize("first, then", [(MMDF, MBOX), (MBOX, MMDF)],
                         ids=["problem-gone-by-the-re-plan", "problem-new-in-the-re-plan"])
def test_not_migrated_follows_the_re_plan(tmp_path: Path, monkeypatch, first, then):
    src = make_source(tmp_path / "source", [SourceAccount("alice", 1000, "Alice", "pw1"),
                                            SourceAccount("bob", 1001, "Bob", "pw2")])
    (src / "var/spool/mail/alice").write_bytes(MBOX)
    bob = src / "var/spool/mail/bob"
    bob.write_bytes(first)
    target = install_target(tmp_path / "target")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      target_host={"local": True, "retry_delay": 0},
                      domains={unique_domain("retry"): {"import": {"uid_min": 1000}}})
    real = retry.apply_plan
    calls: list[int] = []

    def dropped_once(planned, state, **options):
        calls.append(len(planned.plan.problems))
        if len(calls) == 1:
            bob.write_bytes(then)  # the source changes while the apply reconnects
            raise ConnectionLost("connection lost", host="newmail")
        return real(planned, state, **options)

    monkeypatch.setattr(retry, "apply_plan", dropped_once)
    res = CliRunner().invoke(cli.main, ["apply", str(spec), "--auto-approve"])
    out = res.output
    assert "reconnecting and planning again in 0s (retry 1)" in out, out
    expected = [0 if first == MBOX else 1, 0 if then == MBOX else 1]
    assert calls == expected, out
    lines = [line for line in out.splitlines() if line.startswith("Not migrated: ")]
    if then == MMDF:  # the re-plan left bob's mailbox out: said, and exit 3
        assert res.exit_code == 3, out
        assert lines == ["Not migrated: 1 problem(s) of the plan (listed with it, and in "
                         "the log); exit status 3."], out
    else:  # the re-plan migrated everything: exit 0, no such line
        assert res.exit_code == 0, out
        assert lines == [], out
    log = Path(re.search(r"Log: (\S+)", out)[1]).read_text()
    assert f"  not migrated: {expected[1]} (the plan's problems" in log, log
