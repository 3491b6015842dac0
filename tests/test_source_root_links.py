"""source.root follows the copy's symbolic links as a chroot would: an absolute target
starts again at the root, ``..`` stops at it, a loop is an error naming the link. Each
link here also leads somewhere on this machine (the same path outside the copy) that
holds other mail: a plan that shows it read outside the copy.

Also: an ``:include:`` problem names the path the aliases file writes and the file read
for it, and an aliases file that includes itself by its old path is an include loop."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from migration import mailplan
from test_source_root import HOME, MBOX, copy_of_old_server, write_spec

from mailplan.connectors.local import LocalConnector
from mailplan.facts.links import walk
from mailplan.facts.mailboxes import MailboxRef
from mailplan.facts.root import OutsideRoot
from mailplan.facts.source import read_spec_source
from mailplan.subscriptions import source_subscriptions

STOLEN = MBOX * 3  # three messages: not the copy's one


@pytest.mark.parametrize(("links", "path", "last", "read"), [
    ({"/c/home": "/export/home", "/c/export": None, "/c/export/home": None,
      "/c/export/home/bob": None}, "/c/home/bob/.forward", False, "/c/export/home/bob/.forward"),
    ({"/c/var": None, "/c/var/spool": None, "/c/var/spool/mail": "../../../../var/mail",
      "/c/var/mail": None}, "/c/var/spool/mail/alice", False, "/c/var/mail/alice"),
    ({"/c/a": "/b"}, "/c/a", False, "/c/a"),  # the last one left for the reader
    ({"/c/a": "/b", "/c/b": None}, "/c/a", True, "/c/b"),
    ({}, "/elsewhere/x", True, "/elsewhere/x"),  # not under the root: as it is
])
def test_a_link_is_followed_inside_the_root(links, path, last, read):
    assert walk("/c", path, links, last=last) == (read, [])


def test_a_walk_asks_for_what_it_does_not_know_and_refuses_a_loop():
    assert walk("/c", "/c/home/bob", {}) == (None, ["/c/home", "/c/home/bob"])
    with pytest.raises(OutsideRoot, match=re.escape("a loop: /c/a -> b")):
        walk("/c", "/c/a/x", {"/c/a": "b", "/c/b": "a"})


def linked_copy(tmp_path: Path) -> tuple[Path, Path]:
    """The copy, with its home, spool directory and /etc/mail moved to /moved and linked
    back by absolute links; /moved exists outside the copy too, with other mail."""
    src = copy_of_old_server(tmp_path / "old")
    outside = tmp_path / "outside"
    moved = str(outside)  # the link targets: the copy's /moved is this machine's too
    for name, old in (("home", "home/alice"), ("spool", "var/spool/mail"),
                      ("mail", "etc/mail")):
        (src / moved.lstrip("/")).mkdir(parents=True, exist_ok=True)
        (src / old).rename(src / moved.lstrip("/") / name)
        (src / old).symlink_to(f"{moved}/{name}")
        (outside / name).mkdir(parents=True)
    (outside / "home/mail").mkdir()
    (outside / "home/.forward").write_text("thief@attacker.example\n")
    (outside / "home/mail/Stolen").write_bytes(STOLEN)
    (outside / "spool/alice").write_bytes(STOLEN)
    (outside / "mail/staff").write_text("thief@attacker.example\n")
    return src, outside


def test_links_in_the_copy_are_followed_inside_it(tmp_path):
    """home/alice, var/spool/mail and etc/mail are absolute links: their targets are
    read in the copy, never on this machine."""
    src, outside = linked_copy(tmp_path)
    spec = write_spec(tmp_path / "m.yaml", {"root": str(src)}, tmp_path / "target")
    out = mailplan("plan", "-v", str(spec), check=True).stdout
    moved = f"{src}{outside}"
    assert "attacker" not in out and "Stolen" not in out, out
    assert f"&alice@elsewhere.example (from {moved}/home/.forward:1)" in out, out
    assert "&alice@example.com (from " in out, out  # the copy's staff
    for folder in ("INBOX", "INBOX (~/mbox)", "Work", "Old"):
        assert f"+ mailbox alice@example.com {folder}\n      1 message(s)" in out, out
    # ~/.mailboxlist names /home/alice/mail/Work: the folder behind the link
    conn = LocalConnector("old")
    source = read_spec_source(conn, {"host": "old", "root": str(src)})
    assert source.home(source.accounts["alice"]) == f"{moved}/home"
    ref = MailboxRef("example.com", "alice", "alice", f"{moved}/spool/alice",
                     f"{moved}/home/mail", f"{moved}/home")
    assert source_subscriptions(conn, [ref], source) == {("example.com", "alice"): {"Work"}}


def test_a_home_whose_links_loop_is_an_error_naming_the_link(tmp_path):
    src = copy_of_old_server(tmp_path / "old")
    home = src / HOME.lstrip("/")
    home.rename(src / "home/real")
    home.symlink_to(HOME)  # itself
    spec = write_spec(tmp_path / "m.yaml", {"root": str(src)}, tmp_path / "target")
    res = mailplan("plan", str(spec))
    assert res.returncode == 1, res.stdout + res.stderr
    assert (f"old:{src}/etc/passwd:3: the home directory of 'alice': '{src}{HOME}': more "
            f"than 40 symbolic links (a loop: {src}{HOME} -> {HOME}) under source.root "
            f"({src}): not read") in res.stderr, res.stderr


def test_an_include_problem_names_the_path_written_and_the_file_read(tmp_path):
    src = copy_of_old_server(tmp_path / "old")
    (src / "etc/mail/staff").unlink()
    spec = write_spec(tmp_path / "m.yaml", {"root": str(src)}, tmp_path / "target")
    out = mailplan("plan", str(spec), check=True).stdout
    assert ("alias staff: :include:/etc/mail/staff not carried over: file could not be "
            f"read on the source (read at {src}/etc/mail/staff)") in out, out
    (src / "etc/mail/staff").write_text("staff: alice\n")  # an aliases line, not a list
    res = mailplan("plan", str(spec))
    assert res.returncode == 1, res.stdout + res.stderr
    assert (f"old:/etc/mail/staff:1: not an address list (its text is not shown: mailplan "
            f"reads :include: files as root) (read at {src}/etc/mail/staff)") in res.stderr
def test_an_aliases_file_that_includes_itself_by_its_old_path_is_a_loop(tmp_path):
    """/etc/aliases in the copy is the aliases file read: not an address list to read
    again, but a loop (sendmail breaks it too: a duplicate, or "aliasing/forwarding
    loop broken"), reported with its line."""
    src = copy_of_old_server(tmp_path / "old")
    (src / "etc/aliases").write_text("staff: :include:/etc/aliases\nsales: alice\n")
    spec = write_spec(tmp_path / "m.yaml", {"root": str(src)}, tmp_path / "target")
    out = mailplan("plan", str(spec), check=True).stdout
    assert (f"{src}/etc/aliases:1: alias staff: :include:/etc/aliases not carried over: "
            f"include loop: {src}/etc/aliases -> /etc/aliases (read at {src}/etc/aliases)"
            ) in out, out
    assert "+ alias sales@example.com" in out and "+ alias staff" not in out, out


def test_the_copys_localtime_link_names_the_copys_zone_file(tmp_path):
    """/etc/localtime -> /usr/share/zoneinfo/Etc/GMT-5, as on the old server: the zone is
    the copy's file there (Tokyo's here), not this machine's GMT-5."""
    src = copy_of_old_server(tmp_path / "old")
    zones = src / "usr/share/zoneinfo/Etc"
    zones.mkdir(parents=True)
    (zones / "GMT-5").write_bytes(Path("/usr/share/zoneinfo/Asia/Tokyo").read_bytes())
    (src / "etc/localtime").symlink_to("/usr/share/zoneinfo/Etc/GMT-5")
    source = read_spec_source(LocalConnector("old"), {"host": "old", "root": str(src)})
    assert source.zone_origin == (f"{src}/etc/localtime (read at {zones}/GMT-5) on old "
                                  "(now JST)"), source.zone_origin


def test_a_spool_directory_whose_links_loop_is_an_error_naming_the_link(tmp_path):
    src = copy_of_old_server(tmp_path / "old")
    spool = src / "var/spool/mail"
    spool.rename(src / "var/spool/real")
    spool.symlink_to("/var/spool/mail")  # itself
    spec = write_spec(tmp_path / "m.yaml", {"root": str(src)}, tmp_path / "target")
    res = mailplan("plan", str(spec))
    assert res.returncode == 1, res.stdout + res.stderr
    assert (f"a spool or folders directory: '{spool}/alice': more than 40 symbolic links "
            f"(a loop: {spool} -> /var/spool/mail) under source.root ({src}): not read"
            ) in res.stderr, res.stderr


def test_init_reads_the_copy_where_its_links_lead_inside_it(tmp_path):
    """init --root sizes the copy's spool and folders and reads its local-host-names
    through the same links, not this machine's files at their targets."""
    src, outside = linked_copy(tmp_path)
    (src / str(outside).lstrip("/") / "mail/local-host-names").write_text("example.com\n")
    (outside / "mail/local-host-names").write_text("stolen.example\n")
    spec = tmp_path / "init.yaml"
    mailplan("init", "--source", "local", "--root", str(src), "-o", str(spec), check=True)
    text = spec.read_text()
    assert "stolen" not in text and "  example.com:\n" in text, text
    # the copy's ~/mbox (init sizes it as the import reads it: mail to migrate)
    assert "- name: alice  # uid 1000; INBOX 62B, ~/mbox 62B, 2 folder(s) 124B\n" in text, text
