"""Source files mailplan reads as root for routing: only what sendmail itself would read.

:include: files and users' ~/.forward are read without following links, their text is
not echoed into the plan, and a ~/.forward sendmail would ignore (group- or
world-writable, or owned by someone else) is not migrated. Run over the local connector,
so the real read script is exercised.
"""

from __future__ import annotations

import contextlib
import os
import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailplan.connectors.local import LocalConnector
from mailplan.desired import Catchall, Desired, DesiredDomain, DesiredUser, Password
from mailplan.errors import SourceDataError
from mailplan.facts.source import Account, SourceFacts
from mailplan.routing.aliases import parse_aliases
from mailplan.routing.filesafety import FileSafety
from mailplan.routing.includes import read_includes
from mailplan.routing.mapping import map_routing
from mailplan.routing.model import Include, RoutingError
from mailplan.routing.rules import DomainRules, SourceRouting
from mailplan.routing.sendmailcf import dont_blame_sendmail
from mailplan.routing.source import read_source_routing
from mailplan.secret import Secret
from mailplan.spec import load_spec

SECRET = "hunter2topsecret"


def _secret_file(tmp_path: Path) -> Path:
    secret = tmp_path / "my.cnf"
    secret.write_text(f"[client]\npassword={SECRET}\n")
    os.chmod(secret, 0o600)
    return secret


def _include_plan(tmp_path: Path, list_path: Path) -> tuple[SourceRouting, str]:
    aliases = parse_aliases(f"team: :include:{list_path}, alice\n", "/etc/aliases")
    resolved = read_includes(LocalConnector("oldmail"), aliases)
    plan = map_routing(SourceRouting(aliases=(resolved,)),
                       [DomainRules("example.com", {"alice": "alice"}, import_aliases=True)])
    shown = "\n".join(str(f) for f in plan.findings) + repr(plan.domains)
    return SourceRouting(aliases=(resolved,)), shown


def test_an_include_file_that_is_a_link_is_not_followed(tmp_path):
    team = tmp_path / "team"
    team.symlink_to(_secret_file(tmp_path))
    source, shown = _include_plan(tmp_path, team)
    assert SECRET not in shown
    include = source.aliases[0].entries[0].targets[0]
    assert isinstance(include, Include) and "symbolic link" in (include.problem or "")
    assert f"{team} not carried over: it is a symbolic link" in shown


def test_names_from_an_include_file_are_not_echoed(tmp_path):
    # a plain file (not a link) still may hold anything: its unresolved names are not shown
    team = tmp_path / "team"
    team.write_text(f"password={SECRET}\n{SECRET}\n")
    os.chmod(team, 0o644)
    _source, shown = _include_plan(tmp_path, team)
    assert SECRET not in shown
    assert f"{team}:1: alias team: a 25-character name in an :include: file resolves " \
           "to nothing" in shown


def test_a_syntax_error_in_an_include_file_does_not_quote_it(tmp_path):
    team = tmp_path / "team"
    team.write_text(f"password = {SECRET}\n")
    os.chmod(team, 0o644)
    try:
        _include_plan(tmp_path, team)
    except (RoutingError, SourceDataError) as exc:
        assert SECRET not in str(exc) and f"{team}:1: not an address list" in str(exc)
    else:
        raise AssertionError("a malformed include file was accepted")


def test_a_group_or_world_writable_include_file_is_refused_as_sendmail_does(tmp_path):
    team = tmp_path / "team"
    team.write_text("carol@remote.example\n")
    os.chmod(team, 0o666)
    _source, shown = _include_plan(tmp_path, team)
    assert "carol@remote.example" not in shown.split("warning")[0]
    assert "it is world-writable: sendmail refuses such a file" in shown


def test_a_relative_include_path_is_not_read_on_the_source(tmp_path, monkeypatch):
    # sendmail opens it from its queue directory; mailplan's reads run elsewhere (here:
    # a directory holding a file of that name, which is not read, nor its text shown)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "team").write_text(f"password = {SECRET}\n")
    aliases = parse_aliases("team: :include:team, alice\n", "/etc/aliases")
    resolved = read_includes(LocalConnector("oldmail"), aliases)
    plan = map_routing(SourceRouting(aliases=(resolved,)),
                       [DomainRules("example.com", {"alice": "alice"}, import_aliases=True)])
    assert plan.domains["example.com"].aliases["team"] == ("&alice@example.com",)
    assert [str(w) for w in plan.warnings] == [
        "warning: [example.com] /etc/aliases:1: alias team: :include:team not carried "
        "over: not an absolute path: sendmail opens it from its queue directory "
        "(QueueDirectory); write the full path on the source, or declare the alias in "
        "the spec"]


def test_include_files_are_read_to_a_nesting_depth_of_eight(tmp_path):
    # one batch per nesting level, MAX_INCLUDE_ROUNDS of them: a list nested deeper
    # (here a chain of ten files) is not read, and its :include: says why (it said the
    # file could not be read, though it was never tried)
    from mailplan.routing.includes import MAX_INCLUDE_ROUNDS

    for i in range(10):
        (tmp_path / f"l{i}").write_text(f"u{i}\n:include:{tmp_path}/l{i + 1}\n")
    conn, rounds = LocalConnector("oldmail"), []
    conn.observer = lambda shown, _res, _took, _note: rounds.append(shown.startswith("sh -c"))
    aliases = parse_aliases(f"team: :include:{tmp_path}/l0\n", "/etc/aliases")
    (entry,) = read_includes(conn, aliases).entries
    *listed, last = entry.targets
    assert [str(t) for t in listed] == [f"u{i}" for i in range(MAX_INCLUDE_ROUNDS)] == \
        [f"u{i}" for i in range(8)]
    assert isinstance(last, Include) and last.path == f"{tmp_path}/l8"
    assert last.problem == "nested more than 8 :include: files deep; mailplan does not read it"
    assert sum(rounds) == 8  # one read per level


@contextlib.contextmanager
def _not_waiting_on(pipe: Path) -> Iterator[None]:
    """Fail (not hang) when a read waits on the named pipe ``pipe``; a reader left
    waiting on it (a failed test) is let go."""
    def stuck(*_args: object) -> None:
        raise TimeoutError(f"the read of {pipe} hangs")

    old = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(20)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        with contextlib.suppress(OSError):
            os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))


def test_an_include_file_that_is_a_named_pipe_is_not_opened(tmp_path):
    team = tmp_path / "team"
    os.mkfifo(team)
    with _not_waiting_on(team):
        _source, shown = _include_plan(tmp_path, team)
    assert f"{team} not carried over: it is not a regular file" in shown


def _forward_world(tmp_path: Path, mode: int, uid: int | None = None,
                   chown: int | None = None, *, findings: list | None = None,
                   ) -> tuple[SourceRouting, list[str]]:
    home = tmp_path / "home" / "carol"
    home.mkdir(parents=True)
    forward = home / ".forward"
    forward.write_text("evil@attacker.example\n")
    os.chmod(forward, mode)
    if chown is not None:
        os.chown(forward, chown, chown)
    return _read_forwards(tmp_path, home, uid, findings)


def _read_forwards(tmp_path: Path, home: Path, uid: int | None = None,
                   findings: list | None = None) -> tuple[SourceRouting, list[str]]:
    """read_source_routing for carol, whose home is ``home``; the source's /etc is
    tmp_path/etc (its hostname oldmail: ForwardPath's default is ~/.forward.oldmail,
    then ~/.forward)."""
    aliases = tmp_path / "aliases"
    aliases.write_text("root: alice\n")
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "hostname").write_text("oldmail\n")
    spec_path = tmp_path / "m.yaml"
    spec_path.write_text(textwrap.dedent(f"""\
        version: 1
        hosts:
          old: {{local: true}}
          new: {{local: true}}
        source: {{host: old, aliases: {aliases}, passwd: {etc}/passwd,
                  local_hostnames: [oldmail.example]}}
        target: {{host: new}}
        domains:
          example.com: {{}}
        """))
    spec = load_spec(spec_path)
    pw = Password("hash", Secret("$6$x$y"), "shadow")
    user = DesiredUser("carol", "example.com", "carol", pw, None, "carol")
    desired = Desired({"example.com": DesiredDomain("example.com", None, Catchall("bounce"),
                                                    {"carol": user})}, [])
    owner = os.getuid() if uid is None else uid
    account = Account("carol", owner, owner, "Carol", str(home), "/bin/sh", None, None, 1)
    source = SourceFacts("oldmail", "/etc/passwd", "/etc/shadow", {"carol": account})
    findings = [] if findings is None else findings
    got = read_source_routing(LocalConnector("oldmail"), spec, source, desired,
                              need_aliases=False, findings=findings)
    return got, [str(f) for f in findings if f.severity == "warning"]


def test_a_safe_forward_is_migrated(tmp_path):
    got, findings = _forward_world(tmp_path, 0o644)
    assert "carol" in got.forwards and findings == []


def test_a_forward_sendmail_ignores_is_not_migrated(tmp_path):
    for mode, why in ((0o666, "world-writable"), (0o664, "group-writable")):
        sub = tmp_path / oct(mode)
        sub.mkdir()
        got, findings = _forward_world(sub, mode)
        assert "carol" not in got.forwards
        assert any(f"is {why}: sendmail ignores such a file, so it is not migrated" in f
                   for f in findings), findings


def test_a_forward_owned_by_another_user_is_not_migrated(tmp_path):
    """SFF_MUSTOWN|SFF_ROOTOK: the user's own file or root's. As root the file is given
    to a third uid; otherwise it stays the runner's and the account is someone else."""
    if os.getuid() == 0:
        got, findings = _forward_world(tmp_path, 0o644, uid=1000, chown=4242)
        owner = 4242
    else:
        got, findings = _forward_world(tmp_path, 0o644, uid=os.getuid() + 4242)
        owner = os.getuid()
    assert "carol" not in got.forwards
    assert any(f"owned by uid {owner}, neither its user nor root" in f for f in findings)


def test_a_forward_owned_by_root_is_migrated(tmp_path):
    if os.getuid() != 0:
        return  # only root can make a file root's
    got, _findings = _forward_world(tmp_path, 0o644, uid=1000)
    assert "carol" in got.forwards


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can make a file root's")
def test_a_forward_of_roots_its_user_may_not_read_is_not_migrated(tmp_path):
    """A file of root's that only root may read (root's own list, hard-linked as the
    user's ~/.forward where fs.protected_hardlinks is off): sendmail reads a ~/.forward
    as its user, cannot open it, and passes it over; read as root, its addresses would
    have become the user's forward. One its group may read is still taken."""
    got, findings = _forward_world(tmp_path / "a", 0o600, uid=1000)
    assert "carol" not in got.forwards
    assert any("is owned by uid 0 with mode 600, so its user may not read it (sendmail "
               "reads it as the user): sendmail ignores such a file" in f
               for f in findings), findings
    got, findings = _forward_world(tmp_path / "b", 0o640, uid=1000)
    assert "carol" in got.forwards and findings == []


@pytest.mark.parametrize("kind", ["named pipe", "directory"])
def test_a_forward_that_is_not_a_regular_file_is_not_opened(tmp_path, kind):
    """sendmail reads only a regular file (SFF_REGONLY). A ~/.forward that is a named
    pipe hung the plan (the open of a pipe waits for a writer); a directory stopped it
    ("cannot read the ~/.forward of carol"). Now either is a warning, and mail stays in
    the mailbox as on sendmail."""
    home = tmp_path / "home" / "carol"
    home.mkdir(parents=True)
    forward = home / ".forward"
    if kind == "named pipe":
        os.mkfifo(forward)
    else:
        forward.mkdir()
    with _not_waiting_on(forward):
        got, warnings = _read_forwards(tmp_path, home)
    assert "carol" not in got.forwards
    assert warnings == [f"warning: the ~/.forward of carol ({forward}) is not a regular "
                        "file: sendmail ignores such a file, so it is not migrated (mail "
                        "stays in carol's mailbox); fix it on the source if it should apply"]


def test_a_forward_file_sendmail_refuses_is_passed_over_for_the_next(tmp_path):
    """sendmail's forward() tries each file of its ForwardPath: one it refuses is passed
    over, and the next one that is there is read. Before, the first one there was taken
    and, refused, left the user with no forward at all."""
    home = tmp_path / "home" / "carol"
    home.mkdir(parents=True)
    host_file, plain = home / ".forward.oldmail", home / ".forward"
    host_file.write_text("evil@attacker.example\n")
    os.chmod(host_file, 0o666)
    plain.write_text("carol@elsewhere.example\n")
    os.chmod(plain, 0o644)
    findings: list = []
    got, warnings = _read_forwards(tmp_path, home, findings=findings)
    assert [str(t) for t in got.forwards["carol"].targets] == ["carol@elsewhere.example"]
    assert got.forwards["carol"].path == str(plain)
    assert warnings == [f"warning: the ~/.forward of carol ({host_file}) is world-writable: "
                        "sendmail ignores such a file, so it is not migrated (sendmail reads "
                        f"{plain} instead); fix it on the source if it should apply"]
    assert not any("forward file is" in str(f) for f in findings)  # ~/.forward itself


@pytest.mark.parametrize(("home_mode", "file_mode", "cf", "refused"), [
    # sendmail's safedirpath(): a group- or world-writable directory on the path of a
    # ~/.forward makes sendmail ignore it ("Group writable directory" in its log)
    (0o775, 0o644, "", "in a group-writable directory ({home}, mode 775)"),
    (0o777, 0o644, "", "in a world-writable directory ({home}, mode 777)"),
    (0o755, 0o644, "", None),
    # DontBlameSendmail in sendmail.cf relaxes the rules, as sendmail does
    (0o775, 0o644, "O DontBlameSendmail=ForwardFileInGroupWritableDirPath\n", None),
    (0o775, 0o644, "O DontBlameSendmail=GroupWritableDirPathSafe\n", None),
    (0o777, 0o644, "O DontBlameSendmail=forwardfileingroupwritabledirpath\n",
     "in a world-writable directory ({home}, mode 777)"),
    (0o777, 0o644, "O DontBlameSendmail=forwardfileinunsafedirpath, safe\n",
     "in a world-writable directory ({home}, mode 777)"),
    (0o777, 0o644, "O DontBlameSendmail = ForwardFileInUnsafeDirPath\n", None),
    # and the file's own mode
    (0o755, 0o664, "", "group-writable"),
    (0o755, 0o664, "O DontBlameSendmail=GroupWritableForwardFile\n", None),
])
def test_a_forward_in_a_writable_directory_is_passed_over_as_sendmail_does(
        tmp_path, home_mode, file_mode, cf, refused):
    home = tmp_path / "home" / "carol"
    home.mkdir(parents=True)
    (home / ".forward").write_text("carol@elsewhere.example\n")
    os.chmod(home / ".forward", file_mode)
    os.chmod(home, home_mode)
    (tmp_path / "etc/mail").mkdir(parents=True)
    (tmp_path / "etc/mail/sendmail.cf").write_text(cf)
    got, warnings = _read_forwards(tmp_path, home)
    if refused is None:
        assert "carol" in got.forwards and warnings == []
        return
    assert "carol" not in got.forwards
    assert warnings == [f"warning: the ~/.forward of carol ({home}/.forward) is "
                        f"{refused.format(home=home)}: sendmail ignores such a file, so it "
                        "is not migrated (mail stays in carol's mailbox); fix it on the "
                        "source if it should apply"]


@pytest.mark.parametrize(("cf", "file_mode", "dir_mode", "refused"), [
    ("", 0o644, 0o2775, "it is in a group-writable directory ({lists}, mode 2775)"),
    ("O DontBlameSendmail=IncludeFileInGroupWritableDirPath\n", 0o644, 0o2775, None),
    ("", 0o664, 0o755, "it is group-writable"),
    ("O DontBlameSendmail=GroupWritableIncludeFile\n", 0o664, 0o755, None),
    ("O DontBlameSendmail=GroupWritableForwardFile\n", 0o664, 0o755, "it is group-writable"),
])
def test_an_include_file_sendmail_refuses_for_its_mode_or_directory_is_not_read(
        tmp_path, cf, file_mode, dir_mode, refused):
    lists = tmp_path / "lists"
    lists.mkdir()
    team = lists / "team"
    team.write_text("carol@remote.example\n")
    os.chmod(team, file_mode)
    os.chmod(lists, dir_mode)
    aliases = parse_aliases(f"team: :include:{team}, alice\n", "/etc/aliases")
    resolved = read_includes(LocalConnector("oldmail"), aliases,
                                 safety=FileSafety(dont_blame_sendmail(cf)))
    include = resolved.entries[0].targets[0]
    if refused is None:
        assert str(include) == "carol@remote.example"
    else:
        assert isinstance(include, Include)
        assert (include.problem or "").startswith(refused.format(lists=lists) + ": sendmail "
                                                  "refuses such a file")


def test_a_forward_with_an_entry_that_is_no_address_is_migrated_without_it(tmp_path):
    # a trailing comment: sendmail rejects that address and delivers to the rest; the
    # plan warns (file and line, not the text: the file is read as root) and goes on
    home = tmp_path / "home" / "carol"
    home.mkdir(parents=True)
    (home / ".forward").write_text(f"\\carol\ncarol@home.example  # {SECRET}\n"
                                   "carol@work.example\n")
    os.chmod(home / ".forward", 0o644)
    got, warnings = _read_forwards(tmp_path, home)
    assert [str(t) for t in got.forwards["carol"].targets] == ["\\carol",
                                                               "carol@work.example"]
    assert warnings == [f"warning: {home}/.forward:2: ~carol/.forward: an entry that is not "
                        "an address (its text is not shown) is not migrated; sendmail "
                        "could not deliver to it either"]
