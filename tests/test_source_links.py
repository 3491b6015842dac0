"""Symbolic links on the source never let one user's mail into another's Maildir.

mailplan reads the source as root: a user who replaces a folder file or the folders
directory with a link to someone else's spool must get nothing from it."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from migration import SourceAccount, install_target, make_source, unique_domain, write_spec

from mailplan.engine import apply_plan, make_plan, state_path_for
from mailplan.spec import load_spec
from mailplan.state import State


def msg(subject: str) -> bytes:
    return f"From b@x.example Mon Nov  2 10:00:00 2026\nSubject: {subject}\n\nbody\n\n".encode()


def subjects(target, address: str) -> list[bytes]:
    """The Subject lines of every message in the user's Maildir."""
    home = target.tool("vuserinfo", "-d", address).stdout.decode().split("\n")[0]
    return sorted(line for f in Path(home, "Maildir").rglob("*")
                  if f.is_file() and f.parent.name in ("new", "cur")
                  for line in f.read_bytes().splitlines() if line.startswith(b"Subject"))


def two_users(tmp_path: Path):
    src = make_source(tmp_path / "source", [SourceAccount("alice", 1000, "Alice", "pw1"),
                                            SourceAccount("mallory", 1001, "Mallory", "pw2")])
    (src / "var/spool/mail/alice").write_bytes(msg("ALICE-PRIVATE"))
    (src / "var/spool/mail/mallory").write_bytes(msg("mallory's own"))
    return src, install_target(tmp_path / "target"), unique_domain("links")


def test_a_linked_folders_directory_is_not_followed_even_written_with_a_slash(tmp_path):
    src, target, domain = two_users(tmp_path)
    os.symlink(src / "var/spool/mail", src / "home/mallory/mail")  # mallory's doing
    path = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"users": [{"name": "mallory"}]}})
    data = yaml.safe_load(path.read_text())
    data["source"]["folders"] = "mail/"
    path.write_text(yaml.safe_dump(data))
    spec = load_spec(path)
    state = State.load(state_path_for(spec))
    planned = make_plan(spec, state)
    try:
        apply_plan(planned, state, prune=False)
    finally:
        planned.close()
    assert subjects(target, f"mallory@{domain}") == [b"Subject: mallory's own"]
