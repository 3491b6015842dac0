"""Mail imported into the domains of several owners in one apply: vpopmail gives a
domain made with ``vadddomain -i UID -g GID`` (or ``-u USER``) that owner, and the
users' directories under it too; the writer, which runs as a Maildir's owner, serves
one owner, so another one's Maildir gets a writer of its own."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import migration
import pytest

from mailplan.mail.maildir import parse_message_name

MAIL = b"".join(b"From a@example.org Mon Jan  1 10:00:00 2001\nSubject: %d\n\nbody\n\n" % i
                for i in range(3))


@pytest.fixture
def reachable():
    """A directory each owner's writer can reach (pytest's own are 0700, root's)."""
    base = Path(tempfile.mkdtemp(prefix="mailplan-owners-"))
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="a domain of another owner is made as root")
@pytest.mark.skipif(bool(migration.REAL_VPOPMAIL),
                    reason="changes the owner of a domain's files")
def test_one_apply_imports_into_the_domains_of_two_owners(tmp_path, sshd, reachable):
    accounts = [migration.SourceAccount(name, uid, name.title(), "pw")
                for uid, name in enumerate(("alice", "bob", "carol"), 1000)]
    src = migration.make_source(tmp_path / "source", accounts)
    target = migration.install_target(reachable / "target")
    first, other = migration.unique_domain(), migration.unique_domain()
    host = migration.ssh_host(sshd)
    spec = migration.write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                                source_host=host, target_host=host,
                                domains={first: {"import": {"include": ["alice", "carol"]}},
                                         other: {"import": {"include": ["bob"]}}})
    migration.mailplan("apply", str(spec), "--auto-approve", check=True)  # no mail yet
    # the second domain as vadddomain -i 4242 -g 4242 makes it: its owner's, all of it
    # (its users reachable by their owner, as qmail-local delivers as that owner)
    domain_dir = Path(target.vpopmail_dir, "domains", other)
    for path in [domain_dir, *domain_dir.rglob("*")]:
        os.lchown(path, 4242, 4242)
    os.chmod(domain_dir.parent, 0o711)
    for user in ("alice", "bob", "carol"):  # one writer meets both owners, in turn
        (src / "var/spool/mail" / user).write_bytes(MAIL)
    res = migration.mailplan("apply", str(spec), "--auto-approve")
    assert res.returncode == 0, res.stdout + res.stderr
    for domain, user in ((first, "alice"), (other, "bob"), (first, "carol")):
        root = Path(target.vpopmail_dir, "domains", domain, user, "Maildir")
        names = [parse_message_name(p.name) for p in (root / "new").iterdir()]
        assert len(names) == 3 and None not in names, (domain, user)
        owner = root.parent.stat()
        assert {(p.stat().st_uid, p.stat().st_gid) for p in root.rglob("*")} == {
            (owner.st_uid, owner.st_gid)}
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert sum(b["imported"] for b in state["mail"].values()) == 9
    assert "No changes." in migration.mailplan("plan", str(spec), check=True).stdout
