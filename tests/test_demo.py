"""The README's first set-up command: the sandbox demo runs a whole migration, and the
sandbox it leaves can be planned again in a shell of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_sandbox_demo_migrates_and_its_sandbox_can_be_used_again(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEMO_")}
    env.update(PYTHONPATH=str(REPO), MAILPLAN_SANDBOX=str(tmp_path / "sandbox"),
               # the tests' real vpopmail, when they have one, is not the sandbox's
               MAILPLAN_TEST_VPOPMAIL=str(tmp_path / "real-vpopmail"))
    demo = subprocess.run([sys.executable, str(REPO / "examples/sandbox/demo.py")],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "alice@example.com logs in on the target with her old password: True" in demo.stdout
    assert "Postmaster-Demo-1" not in demo.stdout + demo.stderr  # its secret is not shown
    sandbox = tmp_path / "sandbox"
    # the old server's /etc/aliases is migrated: plan and apply show its aliases, the
    # pipe is one of the problems, and the re-plan finds nothing left to do
    aliases = sandbox / "oldmail/etc/aliases"
    assert (f"  + alias staff@example.com\n      &alice@example.com, &robert@example.com, "
            f"&pat@contractor.example (from {aliases}:18)\n") in demo.stdout
    assert f"  + alias abuse@example.com\n      &alice@example.com (from {aliases}:11)\n" \
        in demo.stdout
    for alias in ("abuse", "dave", "sales", "staff", "webmaster"):
        assert f"  + alias {alias}@example.com: done\n" in demo.stdout
    assert (f"  ! example.com: {aliases}:22: alias fax: program delivery "
            "'|/usr/local/bin/mail2fax' has no safe vpopmail equivalent") in demo.stdout
    assert demo.stdout.count("No changes. The target matches the spec") == 1
    domain = sandbox / "newmail/home/vpopmail/domains/example.com"
    assert (domain / ".qmail-staff").read_text() == (
        "&alice@example.com\n&robert@example.com\n&pat@contractor.example\n")
    assert not (domain / ".qmail-fax").exists()
    assert not (tmp_path / "real-vpopmail").exists()
    assert (sandbox / "postmaster.pw").stat().st_mode & 0o777 == 0o600
    again = subprocess.run([sys.executable, "-m", "mailplan", "plan", "migration.yaml"],
                           env=env, cwd=sandbox, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes." in again.stdout
    assert "+ alias" not in again.stdout
    # verify fails on mallory (not migrated) and lists the pipe, a routing problem,
    # without failing on it
    checked = subprocess.run([sys.executable, "-m", "mailplan", "verify", "migration.yaml"],
                             env=env, cwd=sandbox, capture_output=True, text=True, timeout=300)
    assert checked.returncode == 3, checked.stdout + checked.stderr
    explained = checked.stdout.split("Explained (not failures")[1]
    assert (f"  ! example.com: routing problem: {aliases}:22: alias fax: program delivery "
            "'|/usr/local/bin/mail2fax' has no safe vpopmail equivalent") in explained
    assert "NOT verified: 1 item(s) marked FAIL above." in checked.stdout
    # and the demo's closing words say so (they said verify exits 3 for the fax alias too)
    assert ("`verify` exits 3 for mallory, and lists the fax alias as explained"
            in demo.stdout)
