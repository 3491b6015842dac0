"""Fact parsers on the exact reference outputs (09, 10, 08, 02), diff and commands."""

from __future__ import annotations

import subprocess

import pytest

from mailplan.routing.commands import WRITE_SCRIPT, commands_for, qmail_default_line
from mailplan.routing.diff import (
    AddAlias,
    AddAliasDomain,
    ChangeAlias,
    RemoveAlias,
    RemoveForward,
    SetCatchAll,
    SetForward,
    diff_routing,
    same_lines,
)
from mailplan.routing.facts import (
    ObservedRouting,
    parse_alias_domains,
    parse_dot_qmail,
    parse_qmail_default,
    parse_valias_list,
    parse_vdominfo,
)
from mailplan.routing.model import RoutingError
from mailplan.routing.rules import CatchAll, DomainRouting

VALIAS_S = "emptydest@small.example -> \n" + """\
first.last@small.example -> john@remote.example
info@small.example -> someone@remote.example
info@small.example -> second@remote.example
maildirdest@small.example -> /home/vpopmail/domains/small.example/u3/Maildir/
pipe@small.example -> | /usr/bin/logger -t valias
sales@small.example -> u1@small.example
support@small.example -> &u2@small.example
u1@small.example -> user@remote.example
upper.case@small.example -> upper@remote.example
"""

VDOMINFO = """\
domain: small.example
uid:    89
gid:    89
dir:    /home/vpopmail/domains/small.example
users:  5
alias: alias-small.example
alias: alias2-small.example
alias: alias3-small.example
alias: alias4-small.example
alias: alias5-small.example
alias: a..b.example
"""


def test_valias_list():
    parsed = parse_valias_list(VALIAS_S, 0)
    assert parsed["info"] == ("someone@remote.example", "second@remote.example")
    assert parsed["emptydest"] == ("",)
    assert parsed["first.last"] == ("john@remote.example",)
    assert parsed["pipe"] == ("| /usr/bin/logger -t valias",)
    assert parsed["support"] == ("&u2@small.example",)
    assert parsed["upper.case"] == ("upper@remote.example",)
    assert len(parsed) == 9


@pytest.mark.parametrize("stdout", [
    "No aliases found for domain small.example\n",
    "invalid domain, not in qmail assign file\nNo aliases found for domain example.com\n",
])
def test_valias_none_found_exit_255(stdout):
    assert parse_valias_list(stdout, 255) == {}


@pytest.mark.parametrize(("stdout", "code"), [
    ("valias: usage: [options] email_address \n", 254),
    ("garbage line\n", 0),
])
def test_valias_unexpected(stdout, code):
    with pytest.raises(RoutingError):
        parse_valias_list(stdout, code)


def test_vdominfo_and_alias_lines():
    info = parse_vdominfo(VDOMINFO)
    assert (info.domain, info.directory) == ("small.example",
                                             "/home/vpopmail/domains/small.example")
    assert info.alias_domains[0] == "alias-small.example"
    assert info.alias_domains[-1] == "a..b.example"
    dash_d = "/home/vpopmail/domains/small.example\nalias: alias-small.example\n"
    assert parse_alias_domains(dash_d) == ("alias-small.example",)
    assert parse_vdominfo(VDOMINFO.split("alias:")[0]).alias_domains == ()


@pytest.mark.parametrize(("content", "expected"), [
    ("| /home/vpopmail/bin/vdelivermail '' delete\n", CatchAll("delete")),
    ("| /home/vpopmail/bin/vdelivermail '' bounce-no-mailbox\n", CatchAll("bounce")),
    ("| /home/vpopmail/bin/vdelivermail '' catchall@elsewhere.example\n",
     CatchAll("forward-to-address", "catchall@elsewhere.example")),
    ("| /home/vpopmail/bin/vdelivermail '' /home/vpopmail/domains/catch2.example/postmaster\n",
     CatchAll("deliver-to-user", "postmaster")),
    ("| /home/vpopmail/bin/vdelivermail '' u1@catch2.example\n",
     CatchAll("deliver-to-user", "u1")),
    ("|/usr/bin/something else\n", None),
    ("", None),
    ("&a@b.example\n&c@d.example\n", None),
])
def test_qmail_default(content, expected):
    assert parse_qmail_default(content, "catch2.example") == expected


@pytest.mark.parametrize("policy", [
    CatchAll("bounce"), CatchAll("delete"), CatchAll("deliver-to-user", "u1"),
    CatchAll("forward-to-address", "x@remote.example")])
def test_catch_all_line_round_trips(policy):
    line = qmail_default_line(policy, "catch2.example")
    assert parse_qmail_default(line + "\n", "catch2.example") == policy


def test_reference_default_line_is_delete():
    assert qmail_default_line(CatchAll("delete"), "x.example") == \
        "| /home/vpopmail/bin/vdelivermail '' delete"


def test_dot_qmail():
    assert parse_dot_qmail("./Maildir/\n&a@b.example\n") == ("./Maildir/", "&a@b.example")
    assert parse_dot_qmail("") == ()


def test_a_carriage_return_in_a_dot_qmail_is_part_of_its_line():
    """vdelivermail ends a .qmail line at its newline only: in a CRLF file the address
    ends in a carriage return, which is not the forward mailplan wants (rewritten)."""
    assert parse_dot_qmail("&a@b.example\r\n") == ("&a@b.example\r",)
    assert not same_lines(("&a@b.example",), parse_dot_qmail("&a@b.example\r\n"))


DESIRED = DomainRouting(
    "small.example",
    aliases={"info": ("&someone@remote.example", "&second@remote.example"),
             "sales": ("&u2@small.example",), "new": ("&x@remote.example",)},
    forwards={"u1": ("./Maildir/", "&u1@home.example")},
    alias_domains=("alias-small.example", "other-small.example"),
    catch_all=CatchAll("bounce"))


def _observed(**kw):
    base = dict(aliases=parse_valias_list(VALIAS_S, 0), alias_domains=("alias-small.example",),
                catch_all=CatchAll("delete"),
                catch_all_text="| /home/vpopmail/bin/vdelivermail '' delete")
    base.update(kw)
    return ObservedRouting("small.example", **base)


def test_diff_adds_changes_and_keeps_unmanaged():
    changes = diff_routing(DESIRED, _observed(), managed_by_mailplan={"pipe"})
    assert [(c.symbol, type(c).__name__) for c in changes] == [
        ("+", "AddAliasDomain"), ("+", "AddAlias"), ("~", "ChangeAlias"), ("+", "SetForward"),
        ("~", "SetCatchAll")]
    assert changes[2] == ChangeAlias("small.example", "sales", ("&u2@small.example",),
                                     ("u1@small.example",))
    assert changes[4].describe() == ("catch-all of small.example: bounce mail for unknown "
                                     "recipients (was delete mail for unknown recipients)")


def test_diff_prunes_only_what_mailplan_created():
    changes = diff_routing(DESIRED, _observed(forwards={"u2": ("&gone@x.example",)}),
                           managed_by_mailplan={"pipe"}, prune=True, managed_forwards={"u2"})
    removed = [c for c in changes if c.symbol == "-"]
    assert removed == [RemoveAlias("small.example", "pipe", ("| /usr/bin/logger -t valias",)),
                       RemoveForward("small.example", "u2", ("&gone@x.example",))]


def test_plan_after_apply_is_empty():
    observed = ObservedRouting(
        "small.example",
        aliases={"info": ("someone@remote.example", "second@remote.example"),
                 "sales": ("&u2@SMALL.example",), "new": ("&x@remote.example",)},
        forwards={"u1": ("./Maildir/", "&u1@home.example")},
        alias_domains=("other-small.example", "alias-small.example"),
        catch_all=parse_qmail_default(
            qmail_default_line(CatchAll("bounce"), "small.example"), "small.example"))
    assert diff_routing(DESIRED, observed, managed_by_mailplan=set(DESIRED.aliases),
                        prune=True) == []


@pytest.mark.parametrize(("change", "argv"), [
    (AddAlias("small.example", "first.last", ("&john@remote.example", "| prog")),
     [["/home/vpopmail/bin/valias", "-i", "&john@remote.example", "first.last@small.example"],
      ["/home/vpopmail/bin/valias", "-i", "| prog", "first.last@small.example"]]),
    (ChangeAlias("small.example", "first.last", ("&a@b.example", "c@d.example"),
                 ("x@y.example",)),
     [["sh", "-c", WRITE_SCRIPT, "mailplan-write", "/home/vpopmail/bin/vdominfo",
       "small.example", ".qmail-first:last", "&a@b.example", "c@d.example"]]),
    (RemoveAlias("small.example", "info", ("x@y.example",)),
     [["/home/vpopmail/bin/valias", "-d", "info@small.example"]]),
    (AddAliasDomain("small.example", "alias-small.example"),
     [["/home/vpopmail/bin/vaddaliasdomain", "small.example", "alias-small.example"]]),
])
def test_commands(change, argv):
    assert commands_for(change) == argv
    assert change.describe()


def _run_write(argv, tmp_path, tool_output):
    tool = tmp_path / "tool"
    tool.write_text(f"#!/bin/sh\nprintf '%s\\n' {tool_output}\n")
    tool.chmod(0o755)
    argv = [str(tool) if a.endswith(("/vdominfo", "/vuserinfo")) else a for a in argv]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def test_set_catch_all_writes_file_from_parts(tmp_path):
    domain_dir = tmp_path / "it's a; $(dir)"
    domain_dir.mkdir()
    [argv] = commands_for(SetCatchAll("small.example", CatchAll("bounce"), None))
    assert argv[:2] == ["sh", "-c"] and "small.example" in argv
    done = _run_write(argv, tmp_path, f"'{domain_dir}' 'alias: a.example'".replace(
        "it's", "it'\\''s"))
    assert done.returncode == 0, done.stderr
    written = (domain_dir / ".qmail-default").read_text()
    assert written == "| /home/vpopmail/bin/vdelivermail '' bounce-no-mailbox\n"
    assert oct((domain_dir / ".qmail-default").stat().st_mode & 0o777) == "0o600"


def test_set_and_remove_forward(tmp_path):
    user_dir = tmp_path / "u1"
    user_dir.mkdir()
    [argv] = commands_for(SetForward("small.example", "u1", ("./Maildir/", "&x@y.example")))
    assert _run_write(argv, tmp_path, f"'{user_dir}'").returncode == 0
    assert (user_dir / ".qmail").read_text() == "./Maildir/\n&x@y.example\n"
    [argv] = commands_for(RemoveForward("small.example", "u1", ("./Maildir/",)))
    assert _run_write(argv, tmp_path, f"'{user_dir}'").returncode == 0
    assert not (user_dir / ".qmail").exists()


def test_write_refuses_missing_directory(tmp_path):
    [argv] = commands_for(SetForward("small.example", "u1", ("./Maildir/",)))
    done = _run_write(argv, tmp_path, "''")
    assert done.returncode == 1 and "no directory" in done.stderr


def test_catch_all_line_quotes_a_forward_address_with_shell_characters():
    """The line is run by /bin/sh -c at delivery: a forward address from the spec with
    ``;`` or backquotes is one quoted argument, and reads back as the same policy."""
    policy = CatchAll("forward-to-address", "x;touch${IFS}P;@remote.example")
    line = qmail_default_line(policy, "catch2.example")
    assert line == ("| /home/vpopmail/bin/vdelivermail '' "
                    "'x;touch${IFS}P;@remote.example'")
    assert parse_qmail_default(line + "\n", "catch2.example") == policy


def test_a_changed_alias_is_replaced_whole_never_deleted_first(tmp_path):
    """valias -d then -i left the address bouncing when an insert failed: the new file
    is written under a temporary name and renamed over the old one, in the very form
    valias keeps (reference 09: .qmail-first:last, one line each, mode 600)."""
    domain_dir = tmp_path / "small.example"
    domain_dir.mkdir()
    old = domain_dir / ".qmail-first:last"
    old.write_text("x@y.example\n")
    change = ChangeAlias("small.example", "first.last", ("&a@b.example", "c@d.example"),
                         ("x@y.example",))
    argvs = commands_for(change)
    assert not any(a[0].endswith("/valias") for a in argvs)
    [argv] = argvs
    assert _run_write(argv, tmp_path, f"'{domain_dir}'").returncode == 0
    assert old.read_text() == "&a@b.example\nc@d.example\n"
    assert oct(old.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in domain_dir.iterdir()) == [".qmail-first:last"]
