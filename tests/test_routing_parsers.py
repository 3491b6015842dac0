"""Table tests for the sendmail aliases, ~/.forward and virtusertable parsers."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailplan.errors import MailplanError
from mailplan.routing.aliases import effective_aliases, parse_aliases, resolve_includes
from mailplan.routing.forward import parse_forward
from mailplan.routing.model import (
    Address,
    ErrorCode,
    FileDelivery,
    Include,
    Origin,
    Program,
    RoutingError,
)
from mailplan.routing.sendmailcf import max_alias_recursion, parse_alias_files, plus_detail_rule
from mailplan.routing.virtusertable import effective_entries, parse_virtusertable

DATA = Path(__file__).parent / "data" / "routing"
ALIASES = "/etc/aliases"


def _aliases():
    return parse_aliases((DATA / "aliases").read_bytes(), ALIASES)


def _read(path: str) -> bytes | None:
    local = DATA / "lists" / Path(path).name
    return local.read_bytes() if local.exists() else None


@pytest.mark.parametrize(("name", "line", "targets"), [
    ("mailer-daemon", 11, [Address("postmaster", None, Origin(ALIASES, 11))]),
    ("nobody", 17, [FileDelivery("/dev/null", Origin(ALIASES, 17))]),
    ("webmaster", 22, [Address("alice", None, Origin(ALIASES, 22)),
                       Address("bob", None, Origin(ALIASES, 22))]),
    ("office manager", 23, [Address("carol", None, Origin(ALIASES, 23))]),
    ("staff", 26, [Address("alice", None, Origin(ALIASES, 26)),
                   Address("bob", None, Origin(ALIASES, 27), escaped=True),
                   Address("carol", "example.com", Origin(ALIASES, 28)),
                   Address("dave", "remote.example", Origin(ALIASES, 29))]),
    ("all", 30, [Include("/etc/mail/lists/all", Origin(ALIASES, 30))]),
    ("info", 32, [Address("sales", None, Origin(ALIASES, 32))]),
    ("sales", 33, [Address("bob", None, Origin(ALIASES, 33)),
                   Program("/usr/bin/autoreply --from sales", Origin(ALIASES, 33)),
                   FileDelivery("/var/spool/mail/sales-archive", Origin(ALIASES, 33))]),
    ("gone", 34, [ErrorCode("nouser", "User has left the company", Origin(ALIASES, 34))]),
    ("first.last", 38, [Address("carol", None, Origin(ALIASES, 38))]),
    ("bob", 39, [Address("bob", None, Origin(ALIASES, 39), escaped=True),
                 Address("bob", "home.example", Origin(ALIASES, 39))]),
])
def test_aliases_file(name, line, targets):
    table, findings = effective_aliases([_aliases()])
    assert findings == []
    assert table[name].origin == Origin(ALIASES, line)
    assert list(table[name].targets) == targets


@pytest.mark.parametrize(("text", "expected"), [
    ('x: "|/usr/bin/prog arg, with comma"', [Program("/usr/bin/prog arg, with comma",
                                                     Origin("f", 1))]),
    ("x: |/usr/bin/vacation", [Program("/usr/bin/vacation", Origin("f", 1))]),
    ('x: "error:5.7.1:550 Go away", bob', [ErrorCode("5.7.1:550", "Go away", Origin("f", 1)),
                                          Address("bob", None, Origin("f", 1))]),
    ("x: error:nouser No such user", [ErrorCode("nouser", "No such user", Origin("f", 1))]),
    ("x: :INCLUDE: /etc/list", [Include("/etc/list", Origin("f", 1))]),
    ('x: "john doe"@example.com', [Address("john doe", "example.com", Origin("f", 1))]),
    ("x: bob (Bob Smith), <carol@[10.0.0.1]>", [
        Address("bob", None, Origin("f", 1)), Address("carol", "[10.0.0.1]", Origin("f", 1))]),
    ("x:a,\n\tb,\n# a comment ends the entry\ny: c",
     [Address("a", None, Origin("f", 1)), Address("b", None, Origin("f", 2))]),
    ('"Quoted \\" Name": bob', [Address("bob", None, Origin("f", 1))]),
    ("x: a,, b ,", [Address("a", None, Origin("f", 1)), Address("b", None, Origin("f", 1))]),
])
def test_alias_syntax(text, expected):
    parsed = parse_aliases(text, "f")
    assert list(parsed.entries[0].targets) == expected


@pytest.mark.parametrize(("text", "line", "words"), [
    ("  bob: carol", 1, "must continue an entry"),
    ("x: a,\n  # comment\n", 2, "comment cannot stand"),
    ("no colon here", 1, "missing ':'"),
    ("two words: bob", 1, "not an alias name"),
    ("x:", 1, "no targets"),
    ('x: "|prog', 1, "unterminated double quote"),
    ("x: bob\ny: carol <c@x", 2, "unbalanced"),
    ("x: bob smith", 1, "not an address"),
    ("x: bob@", 1, "no valid domain"),
    ("x: @example.com", 1, "no user part"),
    ("x: :include:", 1, "without a file name"),
    ("x: error:", 1, "without a status"),
    ("x: a)", 1, "without '('"),
])
def test_alias_errors_name_file_and_line(text, line, words):
    with pytest.raises(RoutingError) as caught:
        parse_aliases(text, "/etc/mail/aliases")
    assert isinstance(caught.value, MailplanError)
    assert caught.value.origin == Origin("/etc/mail/aliases", line)
    assert str(caught.value).startswith(f"/etc/mail/aliases:{line}: ")
    assert words in str(caught.value)


@pytest.mark.parametrize(("text", "hint"), [
    ("x: alice, bob # the team", "'#' starts a comment only at the start of a line"),
    ("x: alice, bob@x.example  # home", "'#' starts a comment only at the start of a line"),
    ("x: alice\n\tbob", "separate addresses with commas (a line that continues an entry"),
    ("x: bob@x.example carol@y.example", "separate addresses with commas"),
    ("x: a;b", 'quote names that contain spaces: "name with space"'),
])
def test_an_item_with_blanks_gets_the_hint_for_its_likely_mistake(text, hint):
    """A trailing comment or a missing comma is the usual cause, not a name to quote."""
    with pytest.raises(RoutingError) as caught:
        parse_aliases(text, "/etc/aliases")
    assert caught.value.hint is not None and caught.value.hint.startswith(hint), \
        caught.value.hint


def test_duplicate_alias_last_wins_with_warning():
    table, findings = effective_aliases([parse_aliases("a: x\nb: y\na: z\n", "f")])
    assert [str(t) for t in table["a"].targets] == ["z"]
    assert [(f.severity, f.origin) for f in findings] == [("warning", Origin("f", 3))]
    assert "line 1" in findings[0].message


def test_across_alias_files_the_first_file_that_has_a_name_wins():
    """sendmail looks a name up in its alias files in turn: a later file's definition of
    a name is never used (a note names the one used); a duplicate within one file keeps
    newaliases' rule (the last one wins, with a warning)."""
    first = parse_aliases("staff: alice\nstaff: bob\n", "/etc/mail/aliases")
    second = parse_aliases("staff: carol\nlocal: dave\n", "/etc/mail/aliases.local")
    table, findings = effective_aliases([first, second])
    assert [str(t) for t in table["staff"].targets] == ["bob"]
    assert [str(t) for t in table["local"].targets] == ["dave"]
    assert [(f.severity, str(f.origin)) for f in findings] == [
        ("warning", "/etc/mail/aliases:2"), ("note", "/etc/mail/aliases.local:1")]
    assert findings[1].message == ("alias 'staff' is not used: sendmail finds it first in "
                                   "/etc/mail/aliases:2 (it looks a name up in its alias "
                                   "files in order)")
    table, _ = effective_aliases([second, first])
    assert [str(t) for t in table["staff"].targets] == ["carol"]


CF = "/etc/mail/sendmail.cf"


@pytest.mark.parametrize(("cf", "want"), [
    # m4's usual line, and its one-letter form
    ("O AliasFile=/etc/mail/aliases\n", [("implicit", "/etc/mail/aliases", False, 1)]),
    ("OA/etc/aliases\n", [("implicit", "/etc/aliases", False, 1)]),
    # a list, map classes, -o (optional) before the file, blanks around the pieces
    ("# comment\nO AliasFile = /etc/mail/aliases, hash:-o /etc/mail/aliases.local,"
     "nis:mail.aliases\n",
     [("implicit", "/etc/mail/aliases", False, 2),
      ("hash", "/etc/mail/aliases.local", True, 2), ("nis", None, False, 2)]),
    # each AliasFile line adds to the ones before; long option names ignore case
    ("O AliasFile=/etc/a\nO aliasfile=btree:/etc/b\nOA dbm:/etc/c\n",
     [("implicit", "/etc/a", False, 1), ("btree", "/etc/b", False, 2),
      ("dbm", "/etc/c", False, 3)]),
    # a line starting with a blank continues the one before (sendmail.cf's folding)
    ("O AliasFile=/etc/a,\n\t/etc/b\n", [("implicit", "/etc/a", False, 1),
                                          ("implicit", "/etc/b", False, 1)]),
    # an ldap spec's commas inside double quotes do not split it; -k takes a word
    ('O AliasFile=ldap:-k "(&(objectClass=a),(cn=%0))" -v mail,hash:-k k /etc/x\n',
     [("ldap", None, False, 1), ("hash", "/etc/x", False, 1)]),
    # other options: AliasWait (Oa: one-letter names keep their case), a comment
    ("Oa10\nO AliasWait=10\n#O AliasFile=/etc/no\nO AliasFileX=/etc/no\n", []),
])
def test_alias_files_named_by_sendmail_cf(cf, want):
    got = parse_alias_files(cf, CF)
    assert [(d.kind, d.path, d.optional, d.origin.line) for d in got] == want
    assert all(d.origin.path == CF for d in got)


@pytest.mark.parametrize(("cf", "want"), [
    # a '#' after the start of a line is a comment to its end (readcf's translate_dollars),
    # on a continuation line too: what follows it names no file sendmail reads
    ("O AliasFile=/etc/mail/aliases   # was: /etc/aliases, /etc/mail/old\n",
     [("implicit", "/etc/mail/aliases")]),
    ("O AliasFile=/etc/a, # first\n\t/etc/b # , /etc/no\n\t# , /etc/no2\n",
     [("implicit", "/etc/a"), ("implicit", "/etc/b")]),
    # \\# is a '#'
    ("O AliasFile=/etc/mail/al\\#x\n", [("implicit", "/etc/mail/al#x")]),
    # setoption: exactly one blank after the O; a long name may be shortened while it
    # names one option (AliasF, not Alias: AliasWait too)
    ("O\tAliasFile=/etc/a\nO  AliasFile=/etc/b\nO Alias=/etc/c\nO AliasF=/etc/d\n",
     [("implicit", "/etc/d")]),
    # no value: sendmail's default, the file aliases (relative: mailplan cannot read it)
    ("O AliasFile\nOA\n", [("implicit", "aliases"), ("implicit", "aliases")]),
])
def test_alias_files_as_sendmail_reads_the_option_line(cf, want):
    assert [(d.kind, d.path) for d in parse_alias_files(cf, CF)] == want


def test_an_alias_file_path_with_a_control_character_is_not_read():
    # it could not even be passed to a command (a NUL): a caution, not a failed plan
    (db,) = parse_alias_files("O AliasFile=/etc/mail/al\0x\n", CF)
    assert not db.readable and db.why_not_read == "a path with a control character"


def test_an_alias_file_spec_keeps_its_text_and_says_whether_it_can_be_read():
    got = parse_alias_files("O AliasFile=nis:mail.aliases, aliases, hash:/etc/x\n", CF)
    assert [(d.spec, d.readable) for d in got] == [
        ("nis:mail.aliases", False), ("aliases", False), ("hash:/etc/x", True)]


PLUSSED = ("S5\n# deal with plussed users so aliases work nicely\n"
           "R$+ + *\t\t\t$#local $@ $&h $: $1\nR$+ + $*\t\t$#local $@ + $2 $: $1 + *\n")


@pytest.mark.parametrize(("cf", "line"), [
    (PLUSSED, 3),                                          # cf/m4/proto.m4 of 8.9 and later
    ("S5\nR< > $+ + $*\t\t$#local $@ $2 $: $1\n", 2),      # older: after the forward host
    ("S5\nR$+\t\t\t$: <> $1\n", None),                      # _PRESERVE_LOCAL_PLUS_DETAIL_
    ("R$+ + $*\t\t$: $1\n#R$+ + $*\t$#local $: $1\n", None),  # no mailer; a comment
    # a rule refusing (or dropping) plussed addresses delivers nothing to the user
    ('S5\nR$+ + $*\t\t$#error $@ 5.1.1 $: "550 no + addresses"\n', None),
    ("S5\nR$+ + $*\t\t$#discard $: $1\n", None),
])
def test_the_plussed_users_rule_of_sendmail_cf(cf, line):
    got = plus_detail_rule(cf, CF)
    assert got == (Origin(CF, line) if line else None)


@pytest.mark.parametrize(("cf", "depth"), [
    ("", 10),                                                  # conf.c's default
    ("O AliasFile=/etc/mail/aliases\n", 10),
    ("O MaxAliasRecursion=3\n", 3),
    ("O MaxAliasRecursion = 25\nO MaxAliasRecursion=4\n", 4),  # the last setting wins
    ("O MaxAliasR=7\n", 7),                                    # a name cut short
    ("O maxaliasrecursion=12\n", 12),                          # in any case
    ("O MaxAliasRecursion=15 # comment\n", 15),                # atoi: leading digits
    ("O MaxAliasRecursion=lots\n", 0),                         # atoi: no digits, 0
    ("#O MaxAliasRecursion=3\nO MaxHopCount=30\n", 10),      # a comment; another option
])
def test_max_alias_recursion_of_sendmail_cf(cf, depth):
    assert max_alias_recursion(cf) == depth


def test_resolve_includes_expands_keeps_lines_and_detects_loops():
    table, _ = effective_aliases([resolve_includes(_aliases(), _read)])
    all_targets = table["all"].targets
    assert [str(t) for t in all_targets[:3]] == ["alice", "bob", "carol"]
    assert all_targets[2].origin == Origin("/etc/mail/lists/all", 3)
    loop = all_targets[3]
    assert isinstance(loop, Include) and loop.problem is not None
    assert "include loop" in loop.problem
    broken = table["broken"].targets[0]
    assert isinstance(broken, Include)
    assert broken.problem == "file could not be read on the source"


def test_a_relative_include_path_is_not_read():
    """sendmail opens a relative :include: path from its queue directory (its working
    directory); mailplan read it from wherever its own command ran (the login's home
    over SSH, the admin's directory on a copy of the disk), another file altogether."""
    def read(path: str) -> bytes | None:
        raise AssertionError(f"read {path!r}")

    resolved = resolve_includes(parse_aliases("staff: :include:lists/staff, ann\n",
                                              "/etc/aliases"), read)
    include, ann = resolved.entries[0].targets
    assert isinstance(include, Include) and include.path == "lists/staff"
    assert include.problem is not None and include.problem.startswith(
        "not an absolute path: sendmail opens it from its queue directory")
    assert str(ann) == "ann"


def test_include_syntax_error_names_the_included_file():
    with pytest.raises(RoutingError, match=r"^/lists/bad:2: "):
        resolve_includes(parse_aliases("x: :include:/lists/bad", "f"),
                         lambda _p: b"ok\nbad name here\n")


@pytest.mark.parametrize(("user", "expected", "local_copy"), [
    ("alice", [Address("alice", None, Origin("/home/alice/.forward", 1), escaped=True),
               Address("alice", "gmail.example", Origin("/home/alice/.forward", 1))], True),
    ("carol", [Program("/usr/bin/procmail -f-", Origin("/home/carol/.forward", 2))], False),
    ("dave", [Address("dave", None, Origin("/home/dave/.forward", 2), escaped=True),
              Address("dave", "home.example", Origin("/home/dave/.forward", 3)),
              FileDelivery("/home/dave/mail-log", Origin("/home/dave/.forward", 5))], True),
])
def test_forward_files(user, expected, local_copy):
    path = f"/home/{user}/.forward"
    parsed = parse_forward((DATA / f"forward-{user}").read_bytes(), path, user)
    assert list(parsed.targets) == expected
    assert parsed.keeps_local_copy() is local_copy


@pytest.mark.parametrize(("text", "count"), [("", 0), ("\n\n# only a comment\n", 0)])
def test_empty_forward_is_no_forward(text, count):
    assert len(parse_forward(text, "/home/x/.forward", "x").targets) == count


def test_an_entry_of_a_forward_that_is_no_address_is_left_out_with_its_line():
    """sendmail rejects that one address and delivers to the rest; a user's typo (or a
    trailing comment) stopped the whole plan before."""
    got = parse_forward('ok@example.com\n"unterminated\nbob@x.example # home, \\bob\n'
                        "a@b.example, bad name, c@d.example\n", "/home/x/.forward", "x")
    assert [str(t) for t in got.targets] == ["ok@example.com", "\\bob", "a@b.example",
                                             "c@d.example"]
    assert got.bad == (Origin("/home/x/.forward", 2), Origin("/home/x/.forward", 3),
                       Origin("/home/x/.forward", 4))
    # an :include: file stays strict (the admin's list): the plan stops, naming the line
    with pytest.raises(RoutingError, match=r"^/l:2: "):
        resolve_includes(parse_aliases("x: :include:/l", "f"),
                         lambda _p: b'ok@example.com\n"unterminated\n')


VT = "/etc/mail/virtusertable"


@pytest.mark.parametrize(("key", "line", "target", "substitutes"), [
    ("info@example.org", 2, "info", False),
    ("sales@example.org", 3, "bob", False),
    ("jobs@example.org", 5, "error:nouser 550 No such user here", False),
    ("tickets+*@example.org", 7, "%1%3@helpdesk.example", True),
    ("@example.org", 8, "error:nouser User unknown", False),
    ("@old.example", 9, "%1@example.com", True),
    ("@example.net", 10, "alice", False),
])
def test_virtusertable(key, line, target, substitutes):
    entries, findings = effective_entries(
        parse_virtusertable((DATA / "virtusertable").read_bytes(), VT))
    assert findings == []
    entry = entries[key]
    assert (entry.origin, str(entry.target), entry.substitutes) == (
        Origin(VT, line), target, substitutes)


@pytest.mark.parametrize(("text", "words"), [
    ("info@example.org", "has no value"),
    ("info  bob", "must be user@domain"),
    ("info@example.org  a@x.org, b@y.org", "one address"),
    ("info@example.org  |/bin/prog", "must be an address"),
    ("  @example.org  bob", "cannot start with a blank"),
])
def test_virtusertable_errors(text, words):
    with pytest.raises(RoutingError, match=rf"^{VT}:1: .*{words}"):
        parse_virtusertable(text, VT)


def test_virtusertable_wildcards_of_every_user():
    """cf/README's '+*@foo.org  %1%3@example.com' and 'X++@foo.org': '+*' and '++'
    with no user before them are every user's +detail wildcards, not an error, and
    not the domain's catch-all (@foo.org)."""
    table = parse_virtusertable("+*@foo.org  %1%3@example.com\n++@Foo.org  bob\n"
                                "x++@foo.org  z%3@example.com\n@foo.org  alice\n", VT)
    got = [(e.key, e.local, e.any_detail, e.nonempty_detail, e.catch_all)
           for e in table.entries]
    assert got == [("+*@foo.org", None, True, False, False),
                   ("++@foo.org", None, True, True, False),
                   ("x++@foo.org", "x", True, True, False),
                   ("@foo.org", None, False, False, True)]


def test_virtusertable_duplicate_first_wins():
    entries, findings = effective_entries(parse_virtusertable(
        "a@x.org b\nA@X.org c\n", VT))
    assert str(entries["a@x.org"].target) == "b"
    assert findings[0].origin == Origin(VT, 2)


@pytest.mark.parametrize(("text", "expected"), [
    # backslash-newline joins the lines (sendmail's readaliases)
    ("staff: alice, \\\nbob\n", [("staff", ["alice", "bob"], [1, 2])]),
    ("staff: ali\\\nce, bob\n", [("staff", ["alice", "bob"], [1, 2])]),
    # a line of blanks inside an entry continues it with nothing
    ("staff: alice,\n   \n\tbob\n", [("staff", ["alice", "bob"], [1, 3])]),
    # a comment ending in a backslash swallows the next line, as in sendmail
    ("# old: \\\nx: y\nstaff: alice\n", [("staff", ["alice"], [3])]),
    # an entry's first line joined to an indented one; the next entry stays its own
    ("staff: alice, \\\n  bob\nsales: carol\n",
     [("staff", ["alice", "bob"], [1, 2]), ("sales", ["carol"], [3])]),
])
def test_continuations_sendmail_accepts(text, expected):
    got = [(e.name, [str(t) for t in e.targets], [t.origin.line for t in e.targets])
           for e in parse_aliases(text, "/etc/aliases").entries]
    assert got == expected


def test_a_continuation_lines_backslash_joins_nothing():
    # sendmail joins backslash lines only where an entry starts: in an indented line the
    # backslash is text, and the next entry is not swallowed into this one
    with pytest.raises(RoutingError, match=r"^/etc/aliases:2: 'bob\\\\' is not an address"):
        parse_aliases("staff: alice,\n  bob\\\nsales: carol\n", "/etc/aliases")


def test_a_single_label_domain_key_is_accepted_and_reported_not_migrated():
    from mailplan.routing.mapping import map_routing
    from mailplan.routing.rules import DomainRules, SourceRouting

    vt = parse_virtusertable("info@example.com\tbob\nhelp@intranet\tbob\n", "/etc/vt")
    assert [e.key for e in vt.entries] == ["info@example.com", "help@intranet"]
    plan = map_routing(SourceRouting(virtusertable=vt),
                       [DomainRules("example.com", {"bob": "bob"})])
    assert [f.origin.line for f in plan.warnings if "intranet are not migrated"
            in f.message] == [2]
