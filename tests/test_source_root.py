"""source.root: a copy of the old server's disk is read under its root, paths its files
name included (passwd's homes and what is read there, :include:, the default files),
and a path that climbs out of it through '..' is not read at all.

The copy's passwd names /home/alice as the old server did. That directory does not
exist on this machine: without a root the same spec reads there and finds nothing of
alice's ~/.forward, folders or ~/mbox, so what a plan with the root shows came from
the copy."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from migration import SourceAccount, install_target, mailplan, make_source

from mailplan.connectors.local import LocalConnector
from mailplan.facts.mailboxes import MailboxRef
from mailplan.facts.root import OutsideRoot, inside
from mailplan.facts.source import read_spec_source
from mailplan.subscriptions import source_subscriptions

MBOX = b"From a@x.example Mon Nov  2 10:00:00 2026\nSubject: hi\n\nhello\n\n"
HOME = "/home/alice"  # as the old server's passwd names it


def copy_of_old_server(root: Path) -> Path:
    """A copy of the old server's disk under ``root``: its passwd names /home/alice; the
    copy holds that home's ~/.forward, ~/mbox, ~/.mailboxlist and mail folders, and an
    aliases file whose :include: names /etc/mail/staff (in the copy too)."""
    src = make_source(root, [SourceAccount("alice", 1000, "Alice", "pw")])
    passwd = src / "etc/passwd"
    passwd.write_text(passwd.read_text().replace(f"{src}/home/alice", HOME))
    home = src / HOME.lstrip("/")
    (home / "mail").mkdir()
    (src / "var/spool/mail/alice").write_bytes(MBOX)
    (home / "mail/Work").write_bytes(MBOX)
    (home / "mail/Old").write_bytes(MBOX)
    (home / "mbox").write_bytes(MBOX)
    (home / ".forward").write_text("alice@elsewhere.example\n")
    (home / ".mailboxlist").write_text(f"{HOME}/mail/Work\n")  # absolute, as c-client may
    (src / "etc/mail").mkdir()
    (src / "etc/aliases").write_text("staff: :include:/etc/mail/staff\n")
    (src / "etc/mail/staff").write_text("alice\n")
    return src


def write_spec(path: Path, source: dict, target_dir: Path) -> Path:
    target = install_target(target_dir)
    path.write_text(yaml.safe_dump({
        "version": 1, "hosts": {"old": {"local": True}, "new": {"local": True}},
        "source": {"host": "old", **source},
        "target": {"host": "new", "vpopmail_dir": target.vpopmail_dir,
                   "qmail_dir": target.qmail_dir},
        "domains": {"example.com": {"import": {"uid_min": 1000}, "import_aliases": True}}}))
    return path


@pytest.mark.parametrize(("path", "read"), [
    ("/home/alice", "/copy/home/alice"),
    ("/home/alice/../bob/./.forward", "/copy/home/alice/../bob/./.forward"),
    ("/copy/home/alice", "/copy/home/alice"),  # under the root already: not twice
    ("/copyright/x", "/copy/copyright/x"),
    ("/", "/copy/"),
])
def test_a_path_from_a_source_file_is_read_under_the_root(path, read):
    assert inside("/copy", path) == read
    assert inside("", path) == path  # no root: as named


@pytest.mark.parametrize(("path", "why"), [
    ("/..", "leaves source.root (/copy) through '..'"),
    ("/home/../../etc/shadow", "leaves source.root (/copy) through '..'"),
    ("/copy/home/../../x", "leaves source.root (/copy) through '..'"),
    ("etc/staff", "is not an absolute path"),
])
def test_a_path_that_would_leave_the_root_is_refused(path, why):
    with pytest.raises(OutsideRoot, match=re.escape(why)):
        inside("/copy", path)


def test_plan_reads_the_homes_includes_and_defaults_under_the_root(tmp_path):
    """A spec with only ``root``: passwd, shadow, spool and the aliases file are the
    copy's, and so are alice's ~/.forward, ~/mbox and folders, and the :include:."""
    assert not os.path.lexists(HOME), f"{HOME} exists on this machine: the test needs it not to"
    src = copy_of_old_server(tmp_path / "old")
    spec = write_spec(tmp_path / "m.yaml", {"root": str(src)}, tmp_path / "target")
    out = mailplan("plan", "-v", str(spec), check=True).stdout
    assert ("+ forward alice@example.com\n      &alice@elsewhere.example (from "
            f"{src}{HOME}/.forward:1)") in out, out
    assert f"+ alias staff@example.com\n      &alice@example.com (from {src}/etc/aliases:1)" \
        in out, out
    for folder in ("INBOX", "INBOX (~/mbox)", "Work", "Old"):
        assert f"+ mailbox alice@example.com {folder}\n" in out, out
    assert f"aliases are read from {src}/etc/aliases: the first of {src}/etc/aliases" in out


def test_without_a_root_the_same_copy_is_read_where_passwd_and_aliases_name(tmp_path):
    """The spec names the copy's files but has no root: alice's home and the :include:
    are read as named, outside the copy, where there is nothing."""
    src = copy_of_old_server(tmp_path / "old")
    spec = write_spec(tmp_path / "m.yaml", {
        "passwd": f"{src}/etc/passwd", "shadow": f"{src}/etc/shadow",
        "spool": f"{src}/var/spool/mail", "aliases": f"{src}/etc/aliases"},
        tmp_path / "target")
    out = mailplan("plan", "-v", str(spec), check=True).stdout
    assert "+ mailbox alice@example.com INBOX\n" in out, out
    assert "forward alice" not in out and "~/mbox" not in out and "Work" not in out
    assert ("alias staff: :include:/etc/mail/staff not carried over: file could not be "
            "read on the source") in out, out


def test_a_home_that_climbs_out_of_the_root_is_an_error_naming_its_passwd_line(tmp_path):
    src = copy_of_old_server(tmp_path / "old")
    outside = tmp_path / "outside/alice"  # what /../outside/alice reaches: never read
    (outside / "mail").mkdir(parents=True)
    (outside / ".forward").write_text("thief@attacker.example\n")
    (outside / "mail/Stolen").write_bytes(MBOX)
    passwd = src / "etc/passwd"
    passwd.write_text(passwd.read_text().replace(HOME, "/home/../../outside/alice"))
    spec = write_spec(tmp_path / "m.yaml", {"root": str(src)}, tmp_path / "target")
    res = mailplan("plan", str(spec))
    assert res.returncode == 1, res.stdout + res.stderr
    assert (f"old:{src}/etc/passwd:3: the home directory "
            f"of 'alice': '/home/../../outside/alice' leaves source.root ({src}) through "
            "'..': not read") in res.stderr, res.stderr
    assert "attacker" not in res.stdout + res.stderr and "Stolen" not in res.stdout


def test_an_include_that_climbs_out_of_the_root_is_not_read(tmp_path):
    src = copy_of_old_server(tmp_path / "old")
    (tmp_path / "staff").write_text("alice\n")  # what /../staff reaches: never read
    (src / "etc/aliases").write_text("staff: :include:/../staff\n")
    spec = write_spec(tmp_path / "m.yaml", {"root": str(src)}, tmp_path / "target")
    out = mailplan("plan", str(spec), check=True).stdout
    assert (f"alias staff: :include:/../staff not carried over: '/../staff' leaves "
            f"source.root ({src}) through '..': not read") in out, out
    assert "+ alias staff" not in out


def test_the_mailboxlist_is_read_in_the_home_under_the_root(tmp_path):
    """~/.mailboxlist is the copy's, and its absolute entries name the old server's
    paths: /home/alice/mail/Work is the copy's folder Work."""
    src = copy_of_old_server(tmp_path / "old")
    conn = LocalConnector("old")
    source = read_spec_source(conn, {"host": "old", "root": str(src)})
    assert source.passwd_path == f"{src}/etc/passwd" and source.home(
        source.accounts["alice"]) == f"{src}{HOME}"
    ref = MailboxRef("example.com", "alice", "alice", f"{src}/var/spool/mail/alice",
                     f"{src}{HOME}/mail", f"{src}{HOME}")
    assert source_subscriptions(conn, [ref], source) == {("example.com", "alice"): {"Work"}}
    # without a root: read at /home/alice, where there is none (every folder subscribed)
    plain = read_spec_source(conn, {"host": "old", "passwd": f"{src}/etc/passwd",
                                    "shadow": f"{src}/etc/shadow"})
    assert plain.home(plain.accounts["alice"]) == HOME
    assert source_subscriptions(conn, [ref], plain) == {("example.com", "alice"): None}


def test_files_sendmail_cf_names_out_of_the_root_are_not_read(tmp_path):
    """sendmail.cf's AliasFile, Fw and ForwardPath paths that climb out of the copy are
    not read (what they would reach exists): each is one of the plan's warnings."""
    src = copy_of_old_server(tmp_path / "old")
    (tmp_path / "aliases").write_text("sales: alice\n")
    (tmp_path / "names").write_text("stolen.example\n")
    (tmp_path / "fwd").write_text("thief@attacker.example\n")
    (src / "etc/mail/sendmail.cf").write_text(
        "O AliasFile=/../aliases\nFw/../names\nO ForwardPath=$z/../../../fwd:$z/.forward\n")
    spec = write_spec(tmp_path / "m.yaml", {"root": str(src), "aliases": f"{src}/etc/aliases"},
                      tmp_path / "target")
    spec.write_text(spec.read_text().replace("import_aliases: true", "import_aliases: false"))
    out = mailplan("plan", "-v", str(spec), check=True).stdout
    warnings = out.split("Warnings (migrated all the same; look at them):\n")[1]
    assert (f"the forward file of alice (ForwardPath entry '$z/../../../fwd') "
            f"'/home/alice/../../../fwd' leaves source.root ({src}) through '..': not read"
            ) in warnings, out
    assert (f"{src}/etc/mail/sendmail.cf: the Fw file '/../names' leaves source.root ({src}) "
            "through '..': not read; the names in it are not local names") in warnings, out
    assert "attacker" not in out and "stolen" not in out
    assert "&alice@elsewhere.example" in out  # the next ForwardPath entry, in the copy
    # the AliasFile is sendmail.cf's only when the spec names none
    spec.write_text(spec.read_text().replace(f"  aliases: {src}/etc/aliases\n", ""))
    out = mailplan("plan", "-v", str(spec), check=True).stdout
    assert (f"{src}/etc/mail/sendmail.cf:1: AliasFile /../aliases: '/../aliases' leaves "
            f"source.root ({src}) through '..': not read") in out, out
    assert "sales" not in out


def test_directory_modes_are_the_copys_from_its_root_down(tmp_path):
    """sendmail refuses a ~/.forward below a group- or world-writable directory of the
    old server's disk: with a root, that walk starts at the root. A world-writable
    directory above the copy (where it was unpacked here) refuses nothing; a
    group-writable home inside the copy refuses alice's ~/.forward."""
    above = tmp_path / "unpacked"
    above.mkdir()
    src = copy_of_old_server(above / "old")
    os.chmod(above, 0o777)  # not sticky: without the root's start it would refuse
    spec = write_spec(tmp_path / "m.yaml", {"root": str(src)}, tmp_path / "target")
    out = mailplan("plan", "-v", str(spec), check=True).stdout
    assert "&alice@elsewhere.example" in out and str(above) + "," not in out, out
    os.chmod(src / HOME.lstrip("/"), 0o775)
    out = mailplan("plan", "-v", str(spec), check=True).stdout
    assert "&alice@elsewhere.example" not in out, out
    assert (f"the ~/.forward of alice ({src}{HOME}/.forward) is in a group-writable "
            f"directory ({src}{HOME}, mode 775)") in out, out
