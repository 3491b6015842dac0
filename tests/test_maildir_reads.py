"""The remote commands behind a plan's read of whole Maildirs (``read_maildirs``): a
``find`` of the folders, then one command that reads the import ledgers (through a
symbolic link, as the writer and the counts read them) and the folders'
``dovecot-keywords`` (never through one) with two ``tar`` whose archives come back
one after the other: each remote command is a round trip (some 85 ms over SSH)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailplan.connectors.local import LocalConnector
from mailplan.errors import HostError
from mailplan.facts.maildirs import LEDGER, read_maildirs
from mailplan.mail.maildir import KEYWORDS_FILE, Identities, message_name
from mailplan.remote_files import each_file


@pytest.fixture(params=["local", "ssh"])
def conn(request):
    if request.param == "local":
        return LocalConnector("newmail")
    return request.getfixturevalue("ssh_connector")


def observed(conn) -> list[str]:  # type: ignore[no-untyped-def]
    """The commands ``conn`` runs from now on, as its observer is told them."""
    seen: list[str] = []
    conn.observer = lambda cmd, res, secs, note: seen.append(cmd)
    return seen


def test_one_command_reads_links_followed_and_not_followed(conn, tmp_path):
    """``each_file``'s ``unfollowed`` paths join the same command: a second tar that
    does not follow links, its archive read on after the first's padding (a file of
    several tar records before it); a failure of either tar is an error."""
    big = tmp_path / "big"
    big.write_bytes(b"".join(b"line %d\n" % i for i in range(30000)))  # ~270 kB
    (tmp_path / "small").write_bytes(b"small\n")
    (tmp_path / "followed").symlink_to(big)
    (tmp_path / "not followed").symlink_to(tmp_path / "small")
    paths = [str(tmp_path / n) for n in ("followed", "missing")]
    unfollowed = [str(tmp_path / n) for n in ("small", "not followed", "gone")]
    got: dict[str, bytes] = {}
    others: dict[str, str] = {}
    seen = observed(conn)
    each_file(conn, paths, lambda p, fh: got.__setitem__(p, fh.read()), others=others,
              unfollowed=unfollowed)
    assert got == {paths[0]: big.read_bytes(), unfollowed[0]: b"small\n"}
    assert others == {unfollowed[1]: "a symbolic link"}
    assert len(seen) == 1 and seen[0].startswith("tar -c (read 5 file(s), first "), seen
    # follow=False: one tar for all, no link followed
    got.clear()
    each_file(conn, paths, lambda p, fh: got.__setitem__(p, fh.read()), follow=False,
              unfollowed=unfollowed)
    assert got == {unfollowed[0]: b"small\n"}


def test_a_failure_of_the_first_tar_is_not_hidden_by_the_second(monkeypatch, tmp_path):
    import mailplan.remote_files as remote_files

    real = remote_files.tar_command
    monkeypatch.setattr(remote_files, "tar_command", lambda paths, follow=True: real(
        paths, follow=follow) + ("; (exit 2)" if follow else ""))
    (tmp_path / "a").write_bytes(b"a")
    got: list[str] = []
    with pytest.raises(HostError, match="tar exited 2 while reading files"):
        each_file(LocalConnector("newmail"), [str(tmp_path / "a")],
                  lambda p, fh: got.append(p), unfollowed=[str(tmp_path / "a b")])
    assert got == [str(tmp_path / "a")]  # read, then the status counted


def _message(root: Path, sub: str, digest: str, flags: str | None) -> None:
    (root / sub).mkdir(parents=True, exist_ok=True)
    (root / sub / message_name(arrival=1, usec=1, pid=1, digest=digest, occurrence=0,
                               host="h", size=1, flags=flags)).write_bytes(b"x")


def test_a_whole_read_of_maildirs_is_two_commands(conn, tmp_path):
    """The find of the folders and one tar command for the ledgers and the keywords
    files of every Maildir, whatever their number; the same facts as ever: a ledger
    through a link is read, a dovecot-keywords through a link is not, a missing
    Maildir is empty."""
    one, two = tmp_path / "one" / "Maildir", tmp_path / "two" / "Maildir"
    _message(one, "cur", "a" * 64, "Sa")
    _message(one / ".Work", "new", "b" * 64, None)
    # a ledger of many lines (several tar records) before the keywords files' archive
    lines = [f"\t{i:064x}\t0\n" for i in range(3000)] + [f".Work\t{'c' * 64}\t1\n"]
    (one / LEDGER).write_text("".join(lines))
    (one / KEYWORDS_FILE).write_text("0 Work\n1 $Label1\n")
    (tmp_path / "elsewhere").write_text("0 Linked\n")
    (one / ".Work" / KEYWORDS_FILE).symlink_to(tmp_path / "elsewhere")
    _message(two, "new", "d" * 64, None)
    (tmp_path / "ledger two").write_text(f"\t{'e' * 64}\t0\n")
    (two / LEDGER).symlink_to(tmp_path / "ledger two")
    missing = str(tmp_path / "nobody" / "Maildir")
    seen = observed(conn)
    facts = read_maildirs(conn, {str(one): {"", ".Work"}, str(two): {""}, missing: {""}})
    assert [c.split(" ")[0] for c in seen] == ["find", "tar"], seen
    first, second = facts[str(one)], facts[str(two)]
    assert len(first.ids[""]) == 3001 and ("a" * 64, 0) in first.ids[""]
    assert set(first.ids[".Work"]) == {("b" * 64, 0), ("c" * 64, 1)}
    assert first.ledger_count == {"": 3000, ".Work": 1}
    assert first.ledger_size == (one / LEDGER).stat().st_size
    assert first.flags[""][Identities.key(("a" * 64, 0))] == "Sa"
    assert first.flags[""].keywords == {"a": "Work", "b": "$Label1"}
    assert first.flags[".Work"].keywords == {}  # the link: not read
    assert set(second.ids[""]) == {("d" * 64, 0), ("e" * 64, 0)}  # the linked ledger
    assert second.ledger_count == {"": 1} and second.flags[""].keywords == {}
    assert facts[missing].ids == {} and facts[missing].ledger_count == {}
    assert set(facts[missing].flags) == {""}  # every folder asked about has its flags
