"""The remote commands behind a plan's read of whole Maildirs (``read_maildirs``): a
``find`` of the folders, then one command that reads the import ledgers (through a
symbolic link, as the writer and the counts read them) and the folders'
``dovecot-keywords`` (never through one) with two ``tar`` whose archives come back
one after the other: each remote command is a round trip (some 85 ms over SSH).

And behind its look-up of given digests (``look_up_digests``): one command per folder,
which lists the folder and reads its ledger once however many digests are asked about,
and gives the same facts as a plain reading of the files."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from mailplan.connectors.local import LocalConnector
from mailplan.errors import HostError, UnsafeArgument
from mailplan.facts.maildirs import LEDGER, look_up_digests, read_maildirs
from mailplan.mail.maildir import KEYWORDS_FILE, Identities, message_name, parse_message_name
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


def test_a_look_up_on_a_host_without_awk_fails_instead_of_finding_nothing(
        monkeypatch, tmp_path):
    """Without awk the look-up's filters print nothing: every message would look not
    imported yet (the writer would still not import one twice, but the plan's counts
    would be wrong). The command fails instead, naming awk, and the shell goes on."""
    digest = "ab" * 32
    _message(tmp_path / "Maildir", "cur", digest, "S")
    tools = tmp_path / "bin"  # every program of /usr/bin and /bin but the awks
    tools.mkdir()
    for where in (Path("/usr/bin"), Path("/bin")):
        for tool in where.iterdir():
            if "awk" not in tool.name and not (tools / tool.name).exists():
                (tools / tool.name).symlink_to(tool)
    monkeypatch.setenv("PATH", str(tools))
    conn = LocalConnector("newmail")
    with pytest.raises(HostError, match=r"host newmail, step look up messages in .*: awk "
                       r"is not on this host's PATH: cannot look up which messages"):
        look_up_digests(conn, {(str(tmp_path / "Maildir"), ""): {digest}})
    monkeypatch.undo()  # a shell started with awk on its PATH finds the message
    key = (str(tmp_path / "Maildir"), "")
    found, _early = look_up_digests(LocalConnector("newmail"), {key: {digest}})
    assert found == {key: {(digest, 0)}}


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


def _digest(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def test_a_look_up_of_many_digests_lists_the_folder_and_reads_its_ledger_once(
        conn, tmp_path):
    """However many digests are asked about (here more than any argument list would
    hold: the old code ran a find of the folder and a grep of the ledger for each
    thousand), a folder costs one command with one listing of new/ and cur/ and one
    read of the ledger, and what comes back is only what was asked about."""
    rng = random.Random(7)
    root = tmp_path / "u 1'$(x)" / "Maildir"
    held = [_digest(rng) for _ in range(40)]  # files, 20 asked about
    for i, sha in enumerate(held):
        _message(root, "cur" if i % 2 else "new", sha, "S" if i % 2 else None)
    lines = [_digest(rng) for _ in range(40)]  # ledger lines, 20 asked about
    (root / LEDGER).write_text("".join(f"\t{sha}\t0\n" for sha in lines))
    asked = [*held[:20], *lines[:20], *(_digest(rng) for _ in range(3000))]
    seen: list[tuple[str, bytes]] = []
    conn.observer = lambda cmd, res, secs, note: seen.append((cmd, res.stdout))
    flags: dict = {}
    found, early = look_up_digests(conn, {(str(root), ""): asked}, None, flags)
    assert len(seen) == 1, [c[:200] for c, _o in seen]
    cmd, out = seen[0]
    assert len(re.findall(r"\bfind ", cmd)) == 2 and cmd.count("LC_ALL=C awk ") == 2
    assert found[(str(root), "")] == {(sha, 0) for sha in held[:20] + lines[:20]}
    assert early == {(str(root), ""): {(sha, 0) for sha in lines[:20]}}  # the ledger's
    assert flags[(str(root), "")] == {Identities.key((sha, 0)): "S" if i % 2 else ""
                                      for i, sha in enumerate(held[:20])}
    # the names and lines not asked about stay on the target
    assert not any(sha.encode() in out for sha in held[20:] + lines[20:])
    # a digest goes into the command's text: anything but a sha256 in hex is refused
    seen.clear()
    for bad in ("a" * 63, "A" * 64, "a" * 64 + "\n", "a" * 63 + ";"):
        with pytest.raises(UnsafeArgument, match="not a sha256 in hex"):
            look_up_digests(conn, {(str(root), ""): [held[0], bad]})
    assert seen == []


def _random_maildir(rng: random.Random, root: Path, pool: list[str]) -> None:
    """Folders "" and ".Work" with message files in new/ and cur/ (flags, some in new/
    too), names that are not a message's, and a ledger of lines of several shapes."""
    lines = []
    for folder in ("", ".Work"):
        base = root / folder if folder else root
        for sub in ("new", "cur"):
            (base / sub).mkdir(parents=True, exist_ok=True)
            for sha in rng.sample(pool, rng.randint(0, 12)):
                flags = rng.choice([None, "", "S", "RS", "Sab"]) if sub == "cur" \
                    else rng.choice([None, None, "S"])
                host = rng.choice(["h", f"x{rng.choice(pool)}y"])  # a digest, not its own
                (base / sub / message_name(
                    arrival=rng.randint(0, 2 ** 31), usec=rng.randint(0, 999999), pid=1,
                    digest=sha, occurrence=rng.randint(0, 2), host=host, size=5,
                    flags=flags)).write_bytes(b"x")
            sha = rng.choice(pool)
            (base / sub / f"junk_mp{sha}_0").write_bytes(b"x")  # no message's name
            (base / sub / f"1.M1P1_mp{rng.choice(pool)}_0.h,S=1").mkdir()  # a dir
            (base / sub / f"1.M2P1_mp{rng.choice(pool)}_0.h,S=1").symlink_to(
                base / sub / f"junk_mp{sha}_0")  # a link: find -type f skips it
        lines += [f"{folder}\t{sha}\t{rng.randint(0, 3)}\n"
                  for sha in rng.sample(pool, rng.randint(0, 20))]
        for sha in rng.sample(pool, rng.randint(0, 6)):  # lines of other shapes
            lines.append(rng.choice([
                f".Other\t{sha}\t0\n",
                f"{folder}\tx{sha}\t0\n",  # the digest inside another field
                f"{folder}\t{sha}\tnot-a-number\n",
                f"{folder}\t{sha}\t3\rX\n",
                f"torn {sha}\n"]))
    rng.shuffle(lines)
    if lines or rng.random() < 0.5:
        (root / LEDGER).write_text("".join(lines))


def _plain_look_up(wanted: dict, before: dict) -> tuple[dict, dict, dict]:
    """What look_up_digests should find, read from the files here in Python."""
    found: dict = {key: set() for key in wanted}
    early: dict = {key: set() for key in wanted}
    flags: dict = {}
    for (maildir, folder), digests in wanted.items():
        key = (maildir, folder)
        base = Path(maildir) / folder if folder else Path(maildir)
        for sub in ("new", "cur"):  # cur/ last: its flags win for an identity in both
            for f in sorted((base / sub).iterdir()) if (base / sub).is_dir() else []:
                parsed = parse_message_name(f.name)
                if f.is_symlink() or not f.is_file() or parsed is None \
                        or parsed.digest not in digests:
                    continue
                found[key].add(parsed.identity)
                flags.setdefault(key, {})[Identities.key(parsed.identity)] = \
                    (parsed.flags or "") if sub == "cur" else ""
        ledger = Path(maildir) / LEDGER
        offset = 0
        for line in ledger.read_bytes().split(b"\n") if ledger.exists() else []:
            m = re.fullmatch(rb"([^\t\n]*)\t([^\t\n]*)\t([0-9]+)", line)
            if m and m[1].decode() == folder and m[2].decode() in digests:
                found[key].add((m[2].decode(), int(m[3])))
                if before.get(key) is None or offset < before[key]:
                    early[key].add((m[2].decode(), int(m[3])))
            offset += len(line) + 1
    return found, early, flags


@pytest.mark.parametrize("seed", range(30))
def test_a_look_up_of_digests_finds_what_the_files_hold(seed, tmp_path):
    """Random folders: files in new/ and cur/ with flags, ledger lines of several
    shapes, digests in both, in one, in neither, cut points of the ledger anywhere. The
    greps match the bare digest anywhere (in another message's host part, in another
    field of a ledger line): only an identity asked about counts."""
    rng = random.Random(seed)
    pool = [_digest(rng) for _ in range(30)]
    maildirs = [tmp_path / f"u{i}" / "Maildir" for i in range(2)]
    for root in maildirs:
        _random_maildir(rng, root, pool)
    keys = [(str(m), f) for m in maildirs for f in ("", ".Work")] \
        + [(str(tmp_path / "nobody" / "Maildir"), "")]
    wanted = {key: set(rng.sample(pool, rng.randint(0, 30)))
              | {_digest(rng) for _ in range(rng.randint(0, 3))} for key in keys}
    before: dict = {}
    for key in keys:
        ledger = Path(key[0]) / LEDGER
        data = ledger.read_bytes() if ledger.exists() else b""
        starts = [0] + [i + 1 for i, c in enumerate(data) if c == ord("\n")]
        choice = rng.choice(["absent", "none", "cut", "line", "line"])
        if choice == "none":
            before[key] = None
        elif choice == "cut":  # anywhere, mid-line too
            before[key] = rng.randint(0, len(data) + 1)
        elif choice == "line":  # at a line's first byte (not before it) or its second
            before[key] = rng.choice(starts) + rng.choice([0, 1])
    flags: dict = {}
    found, early = look_up_digests(LocalConnector("newmail"), wanted, before, flags)
    expected = _plain_look_up(wanted, before)
    assert (found, early, {k: dict(v) for k, v in flags.items()}) == expected
