"""A writer's dot-lock beside a mailbox (``NAME.lock``, as mail.local, procmail and
c-client hold it while they append): its last message is left for the next run even
when the mailbox ends with an empty line, since a delivery that stalled right after the
header block looks finished. Through the real CLI on a local source and the stand-in
target."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from migration import Target, mailplan, ssh_host, write_spec
from test_integration_mail import files, maildir, msg, one_user, settle, stored, whole_read

M1 = msg("s@x.example", "Mon Nov  2 11:00:00 2026", "m1", body="hello 1\n")
M2 = msg("s@x.example", "Mon Nov  2 12:00:00 2026", "m2", body="hello 2\nsecond line\n")
#: what a delivery of M2 that stalled after the header block has written: it ends with
#: an empty line, as a finished delivery does
STALLED = M2[:M2.index(b"\n\n") + 2]


def _mailbox(path: Path, where: str) -> Path:
    """The user's spool (``path``), or a folder file ~/mail/Work (the spool emptied)."""
    if where == "spool":
        return path
    folder = path.parents[3] / "home/ursula/mail/Work"
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_bytes(path.read_bytes())
    path.write_bytes(b"")
    return folder


def _stored(target: Target, address: str, where: str) -> list[bytes]:
    """The messages imported into the INBOX (``spool``) or the folder Work."""
    root = maildir(target, address) / ("" if where == "spool" else ".Work")
    return sorted(f.read_bytes() for sub in files(root).values() for f in sub)


@pytest.mark.parametrize("where", ["spool", "folder"])
@pytest.mark.parametrize("first", [True, False], ids=["first-import", "from-checkpoint"])
def test_a_stalled_delivery_under_its_lock_is_not_imported_twice(tmp_path, where, first):
    """A delivery that stalled after M2's header block (the mailbox ends with an empty
    line) while it holds the dot-lock: M2 is not imported cut short, the checkpoint stays
    at its From_ line; once the delivery finished (the rest written, the lock removed)
    M2 is imported once, whole: no truncated copy beside it. Whether the mailbox was
    imported before (a read from the checkpoint) or not (a first import, counted on the
    source) and for a folder file too (a mail program's lock)."""
    _stalled(tmp_path, where, first)


@pytest.mark.ssh
def test_a_stalled_delivery_under_its_lock_over_ssh(tmp_path, sshd):
    """The same, the source read over SSH (the listing's find in the remote shell)."""
    _stalled(tmp_path, "spool", False, ssh_host(sshd))


def _stalled(tmp_path: Path, where: str, first: bool, host: dict | None = None) -> None:
    path, target, domain, spec = one_user(tmp_path, M1)
    if host is not None:
        spec = write_spec(spec, source_root=path.parents[3], target=target,
                          source_host=host, target_host=host,
                          domains={domain: {"import": {"uid_min": 1000}}})
    box = _mailbox(path, where)
    key = f"ursula@{domain}/{'INBOX' if where == 'spool' else 'Work'}"
    if not first:
        mailplan("apply", str(spec), "--auto-approve", check=True)
    lock = Path(f"{box}.lock")
    lock.write_bytes(b"")  # mail.local's lock is empty
    with box.open("ab") as fh:
        fh.write(STALLED)
    plan = mailplan("plan", str(spec), "-v", check=True).stdout  # a noop when nothing else
    who = "a delivery" if where == "spool" else "a program writing the file"
    assert f"last message perhaps incomplete (locked by {who}: {box}.lock is there), " \
        "left for the next run" in plan, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    address = f"ursula@{domain}"
    assert _stored(target, address, where) == whole_read(M1)
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert state["mail"][key]["checkpoint"]["offset"] == len(M1)
    with box.open("ab") as fh:  # the delivery goes on, and lets go of the lock
        fh.write(M2[len(STALLED):])
    lock.unlink()
    plan = mailplan("plan", str(spec), check=True).stdout
    assert "incomplete" not in plan, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert _stored(target, address, where) == whole_read(M1 + M2)
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


@pytest.mark.parametrize("lock", ["none", "stale", "settled"])
def test_a_finished_last_message_without_a_fresh_lock_is_imported_at_once(tmp_path, lock):
    """No dot-lock, a stale one (as old as the settled age: the writer that left it is
    gone, and mail.local and c-client take it over), or a lock beside a settled
    mailbox: a last message ended with a blank line is imported at once, as before."""
    path, target, domain, spec = one_user(tmp_path, M1 + M2)
    if lock != "none":
        Path(f"{path}.lock").write_bytes(b"")
    if lock == "stale":
        old = Path(f"{path}.lock").stat().st_mtime - 301
        os.utime(f"{path}.lock", (old, old))
    elif lock == "settled":
        settle(path)
    plan = mailplan("plan", str(spec), check=True).stdout
    assert "incomplete" not in plan and "2 message(s)" in plan, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert stored(target, f"ursula@{domain}") == whole_read(M1 + M2)
