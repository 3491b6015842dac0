"""vpopmail's ``maildirsize`` is recounted once per user by apply, after the user's last
mailbox import, not after each: the recount reads every folder of the Maildir (a user
with many folders had them all listed again after each one) and waits for the folders'
directories to settle (the writer's :mod:`~mailplan.mail.writer.quota`)."""

from __future__ import annotations

from pathlib import Path

from migration import SourceAccount, install_target, make_source, unique_domain, write_spec

from mailplan.apply import apply_plan
from mailplan.engine import make_plan, state_path_for
from mailplan.mail.agent_client import AgentClient
from mailplan.spec import load_spec
from mailplan.state import State


def msg(subject: str, size: int = 0) -> bytes:
    return (f"From b@x.example Mon Nov  2 10:00:00 2026\nSubject: {subject}\n\n".encode()
            + b"x" * size + b"\nbody\n\n")


def test_maildirsize_is_recounted_once_per_user_and_is_right(tmp_path, monkeypatch):
    src = make_source(tmp_path / "source", [SourceAccount("alice", 1000, "Alice", "pw1"),
                                            SourceAccount("bob", 1001, "Bob", "pw2")])
    (src / "var/spool/mail/alice").write_bytes(msg("in") + msg("in2", 100))
    (src / "home/alice/mail").mkdir()
    for name in ("Work", "Lists", "Old"):
        (src / "home/alice/mail" / name).write_bytes(msg(name, 50))
    (src / "var/spool/mail/bob").write_bytes(msg("bob"))
    target = install_target(tmp_path / "target")
    domain = unique_domain("recount")
    path = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"users": [{"name": "alice", "quota": "1M"},
                                                  {"name": "bob", "quota": "1M"}]}})
    recounts: list[str] = []
    refresh = AgentClient.refresh_quota

    def counted(self: AgentClient) -> dict:  # type: ignore[type-arg]
        recounts.append("Z")
        return refresh(self)
    monkeypatch.setattr(AgentClient, "refresh_quota", counted)
    spec = load_spec(path)
    state = State.load(state_path_for(spec))
    planned = make_plan(spec, state)
    try:
        imports = [c for c in planned.plan.changes if c.kind == "mailbox"]
        apply_plan(planned, state, prune=False)
    finally:
        planned.close()
    assert len(imports) == 5 and len(recounts) == 2  # one per user
    for user in ("alice", "bob"):
        maildir = Path(target.vpopmail_dir, "domains", domain, user, "Maildir")
        files = [f for f in maildir.rglob("*") if f.is_file() and f.parent.name in
                 ("new", "cur")]
        lines = (maildir / "maildirsize").read_text().splitlines()
        assert lines[0] == "1048576S" and lines[1:] == [
            f"{sum(f.stat().st_size for f in files)} {len(files)}"], (user, lines)
