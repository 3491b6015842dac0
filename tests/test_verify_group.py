"""mailplan verify on a source mailbox it cannot read as mail, or one that changed while
it read it (:class:`mailplan.verify_group.GroupCheck`): the library over the local
connector and the vpopmail stand-in."""

from __future__ import annotations

import shutil
from pathlib import Path

from migration import install_target, mailplan, source_with_mail, unique_domain, write_spec
from test_mailbox_notes import _AsNobody, readable_by_others
from tools import require

from mailplan import verify_group
from mailplan.connectors.local import LocalConnector
from mailplan.engine import make_plan
from mailplan.spec import load_spec
from mailplan.state import State
from mailplan.verify import verify
from mailplan.verify_model import Report


def _migrated(tmp_path: Path) -> tuple[Path, str, Path]:
    """Users g0 and g1 (2 and 3 messages in their spools), imported: the source, the
    domain and the spec's path."""
    src = source_with_mail(tmp_path / "source", "g", [2, 3])
    domain = unique_domain("g")
    spec = write_spec(tmp_path / "m.yaml", source_root=src,
                      target=install_target(tmp_path / "target"),
                      domains={domain: {"import": {"uid_min": 1000}}})
    mailplan("apply", str(spec), "--auto-approve", check=True)
    return src, domain, spec


def _verify(spec: Path) -> Report:
    return verify(load_spec(spec), State.load(spec.with_suffix(".state.json")), full=True)


def test_a_source_mailbox_not_readable_as_mail_is_explained_not_compared(tmp_path):
    src, domain, spec = _migrated(tmp_path)
    spool = src / "var/spool/mail/g1"
    spool.write_bytes(b"not a From_ line\n" + spool.read_bytes())
    report = _verify(spec)
    # g1's INBOX is no folder of the report (its Maildir's messages are not "extra")
    assert [(f.user, f.folder, f.source) for f in report.folders] == [("g0", "INBOX", 2)]
    (said,) = [e for e in report.explained if e.startswith("g1@")]
    assert said.startswith(f"g1@{domain}: INBOX ({spool}) is not readable as mail: "), said


def test_a_source_mailbox_that_changed_while_read_is_compared_and_fails(tmp_path,
                                                                       monkeypatch):
    # GNU tar's "file changed as we read it" (verify_reads.read_source_mail says so)
    src, _domain, spec = _migrated(tmp_path)
    spool = str(src / "var/spool/mail/g1")
    changed = f"changed while verify read it ({spool}: file changed as we read it)"
    real = verify_group.read_source_mail

    def read_source_mail(conn, mailboxes, **kw):  # type: ignore[no-untyped-def]
        messages, errors = real(conn, mailboxes, **kw)
        return messages, {**errors, spool: changed}

    monkeypatch.setattr(verify_group, "read_source_mail", read_source_mail)
    report = _verify(spec)
    g0, g1 = report.folders
    assert (g0.user, g0.ok, g0.changed_during_read) == ("g0", True, None)
    assert (g1.user, g1.source, g1.target, g1.changed_during_read) == ("g1", 3, 3, changed)
    assert not g1.ok and not report.ok
    assert not [e for e in report.explained if "not readable" in e]


def test_a_source_mailbox_the_login_may_not_read_fails_not_an_empty_inbox(tmp_path):
    """Verified as a login that may list the spool directory but not read g1's spool
    (0600, as a spool on NFS with root_squash is to root): tar passes it over with a
    warning and exit 0. That is no empty INBOX whose mail is "no longer on the source":
    verify fails, naming the file and tar's reason."""
    require(shutil.which("setpriv"), "setpriv (util-linux)")
    src, domain, spec = _migrated(tmp_path)
    spool = src / "var/spool/mail/g1"
    with spool.open("ab") as fh:  # new mail the import has not taken
        fh.write(b"From s@x.example Mon Nov  9 10:00:00 2026\nSubject: new\n\nnew\n\n")
    readable_by_others(tmp_path, src)
    spool.chmod(0o600)
    report = verify(load_spec(spec), State.load(spec.with_suffix(".state.json")),
                    connectors={"oldmail": _AsNobody("oldmail"),
                                "newmail": LocalConnector("newmail")}, full=True)
    assert [(f.user, f.folder, f.ok) for f in report.folders] == [("g0", "INBOX", True)]
    assert report.unmigrated == [
        f"g1@{domain}: INBOX ({spool}): cannot read it: Cannot open: Permission denied; "
        "verify cannot say its mail is on the target (mailplan must be able to read it: "
        "log in to the source as root, or set sudo: true)"]
    assert not report.ok
    # the plan says what to do, as for a directory the login may not list
    planned = make_plan(load_spec(spec), State.load(spec.with_suffix(".state.json")),
                        connectors={"oldmail": _AsNobody("oldmail"),
                                    "newmail": LocalConnector("newmail")})
    (problem,) = [p.message for p in planned.plan.problems if p.user == "g1"]
    assert problem.startswith(f"INBOX ({spool}) is not readable as mail: cannot read "), problem
    assert problem.endswith(": Permission denied; nothing is imported from it; mailplan must "
                            "be able to read it (log in to the source as root, or set sudo: "
                            "true)"), problem


def test_a_folder_gone_from_both_sides_says_so(tmp_path):
    """A folder renamed on the old server (~/mail/Old -> Older, imported again under the
    new name) whose old directory the user deleted on the new server: only the ledger
    names it. Its row said nothing but zeros; it says the folder was deleted there."""
    src, domain, spec = _migrated(tmp_path)
    mail = src / "home/g0/mail"
    mail.mkdir(parents=True)
    (mail / "Old").write_bytes(b"From s@x.example Mon Nov  9 10:00:00 2026\nSubject: o\n\no\n\n")
    mailplan("apply", str(spec), "--auto-approve", check=True)
    (mail / "Old").rename(mail / "Older")
    mailplan("apply", str(spec), "--auto-approve", check=True)
    maildir = next(tmp_path.glob(f"target/**/{domain}/g0/Maildir"))
    shutil.rmtree(maildir / ".Old")
    report = _verify(spec)
    assert report.ok
    (old,) = [f for f in report.folders if f.folder == "Old"]
    assert (old.source, old.target, old.folder_deleted_on_target) == (0, 0, True)
    (older,) = [f for f in report.folders if f.folder == "Older"]
    assert (older.source, older.target, older.folder_deleted_on_target) == (1, 1, False)
