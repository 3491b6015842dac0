"""Table tests for mapping sendmail routing to vpopmail (renames, loops, policies)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from mailplan.routing.aliases import parse_aliases, resolve_includes
from mailplan.routing.forward import parse_forward
from mailplan.routing.mapping import map_routing
from mailplan.routing.model import Origin, RoutingError
from mailplan.routing.rules import CatchAll, DomainRules, ExplicitAlias, SourceRouting
from mailplan.routing.virtusertable import parse_virtusertable

DATA = Path(__file__).parent / "data" / "routing"
COM = {"alice": "alice", "bob": "robert", "carol": "carol"}


def _read(path: str) -> bytes | None:
    local = DATA / "lists" / Path(path).name
    return local.read_bytes() if local.exists() else None


def _source(**extra) -> SourceRouting:
    aliases = resolve_includes(parse_aliases((DATA / "aliases").read_bytes(), "/etc/aliases"),
                               _read)
    forwards = {u: parse_forward((DATA / f"forward-{u}").read_bytes(), f"/home/{u}/.forward", u)
                for u in ("alice", "carol", "dave")}
    vt = parse_virtusertable((DATA / "virtusertable").read_bytes(), "/etc/mail/virtusertable")
    return SourceRouting(aliases=(aliases,), forwards=forwards, virtusertable=vt, **extra)


def _plan(*rules: DomainRules, strict: bool = False, source: SourceRouting | None = None):
    rules = rules or (DomainRules("example.com", COM, import_aliases=True),
                      DomainRules("example.org", {"dave": "dave"},
                                  alias_domains=("old.example",)))
    return map_routing(source or _source(), rules, strict=strict)


def _messages(plan, severity="warning"):
    return [str(f) for f in plan.findings if f.severity == severity]


@pytest.mark.parametrize(("name", "lines"), [
    ("abuse", ("&alice@example.com",)),                     # abuse -> root -> alice
    ("webmaster", ("&alice@example.com", "&robert@example.com", "&bob@home.example")),
    ("staff", ("&alice@example.com", "&robert@example.com", "&carol@example.com",
               "&dave@remote.example")),                    # \bob: the renamed mailbox
    ("all", ("&alice@example.com", "&robert@example.com", "&bob@home.example",
             "&carol@example.com")),                        # via :include:
    ("info", ("&robert@example.com", "&bob@home.example")),  # Info -> sales, pipe/file dropped
    ("first.last", ("&carol@example.com",)),
    ("bob", ("&robert@example.com", "&bob@home.example")),  # old login stays an address
])
def test_imported_aliases(name, lines):
    assert _plan().domains["example.com"].aliases[name] == lines


@pytest.mark.parametrize("name", ["postmaster", "mailer-daemon", "root", "bin", "daemon",
                                  "nobody", "office manager", "broken", "gone", "loop1",
                                  "loop2", "ghost", "sales-archive"])
def test_not_created_as_aliases(name):
    assert name not in _plan().domains["example.com"].aliases


@pytest.mark.parametrize(("severity", "origin", "words"), [
    ("caution", Origin("/etc/aliases", 12), "postmaster stays vpopmail's own account, so "
     "mail to postmaster@example.com stays in that mailbox, where sendmail delivered it to "
     "alice@example.com"),
    ("note", Origin("/etc/aliases", 11), "qmail sends and handles bounces"),
    ("note", Origin("/etc/aliases", 18), "system alias 'root' not imported"),
    ("warning", Origin("/etc/aliases", 23), "'office manager' cannot be an alias"),
    ("warning", Origin("/etc/mail/lists/all", 4), "include loop"),
    ("warning", Origin("/etc/aliases", 31), "could not be read on the source"),
    ("warning", Origin("/etc/aliases", 33), "program delivery '|/usr/bin/autoreply"),
    ("warning", Origin("/etc/aliases", 33), "file delivery '/var/spool/mail/sales-archive'"),
    ("warning", Origin("/etc/aliases", 34), "'error:nouser User has left the company'"),
    ("warning", Origin("/etc/aliases", 36), "alias loop loop1 -> loop2 -> loop1"),
    ("warning", Origin("/etc/aliases", 37), "'nosuchuser' resolves to nothing"),
    ("warning", Origin("/home/carol/.forward", 2), "program delivery '|/usr/bin/procmail"),
    ("warning", Origin("/home/dave/.forward", 5), "file delivery '/home/dave/mail-log'"),
    ("warning", Origin("/etc/mail/virtusertable", 7), "'+detail' keys"),
    ("warning", Origin("/etc/mail/virtusertable", 10), "example.net are not migrated"),
])
def test_findings_carry_source_lines(severity, origin, words):
    found = [f for f in _plan().findings
             if f.severity == severity and f.origin == origin and words in f.message]
    assert found, f"no {severity} at {origin} containing {words!r}"


def test_one_warning_per_unmappable_entry():
    gone = [f for f in _plan().findings if "gone" in f.message]
    assert len(gone) == 1


@pytest.mark.parametrize(("domain", "mailbox", "lines"), [
    ("example.com", "alice", ("./Maildir/", "&alice@gmail.example")),  # \alice keeps a copy
    ("example.org", "dave", ("./Maildir/", "&dave@home.example")),
])
def test_forwards_keep_local_copy(domain, mailbox, lines):
    assert _plan().domains[domain].forwards[mailbox] == lines


def test_forward_with_only_a_program_writes_no_qmail():
    routing = _plan().domains["example.com"]
    assert "carol" not in routing.forwards
    assert any("delivered to carol's mailbox" in m for m in _messages(_plan()))


def test_renamed_user_forward_is_read_from_old_login():
    source = SourceRouting(forwards={"bob": parse_forward("\\bob\nbob@x.example\n",
                                                          "/home/bob/.forward", "bob")})
    plan = map_routing(source, [DomainRules("example.com", COM)])
    assert plan.domains["example.com"].forwards == {
        "robert": ("./Maildir/", "&bob@x.example")}


@pytest.mark.parametrize(("length", "kept"), [(498, True), (499, False)])
def test_a_forward_line_vdelivermail_would_read_in_pieces_is_a_warning(length, kept):
    """vdelivermail reads a mailbox's .qmail with fgets into 500 bytes: a line of 499
    bytes or more would be delivered in pieces (two wrong addresses)."""
    address = "a" * (length - len("&@x.example")) + "@x.example"
    source = SourceRouting(forwards={"alice": parse_forward(
        f"{address}\n", "/home/alice/.forward", "alice")})
    plan = map_routing(source, [DomainRules("example.com", COM)])
    assert plan.domains["example.com"].forwards == (
        {"alice": (f"&{address}",)} if kept else {})
    found = [f for f in plan.findings if f.severity == "warning"
             and f"a line of {length} bytes, and vdelivermail reads lines of at most 498"
             in f.message]
    assert bool(found) is not kept, plan.findings


@pytest.mark.parametrize("text", ["foo\0bar@remote.example", '"foo\0bar"@remote.example',
                                  '"a\x1b[31m"@remote.example', "x\x7fy", ":include:/a\0b"])
def test_control_characters_in_a_forward_are_a_warning_the_rest_goes_on(text):
    source = SourceRouting(forwards={"alice": parse_forward(
        f"keep@x.example, {text}\n", "/home/alice/.forward", "alice")})
    plan = map_routing(source, [DomainRules("example.com", COM)])
    assert plan.domains["example.com"].forwards == {"alice": ("&keep@x.example",)}
    found = [f for f in plan.findings if f.severity == "warning"
             and f.origin == Origin("/home/alice/.forward", 1)
             and "contains a control character" in f.message]
    assert found, plan.findings


def test_a_byte_that_is_not_utf8_in_a_target_is_a_warning_the_rest_goes_on():
    """A Latin-1 address (caf\xe9@...) in an old aliases file or ~/.forward: the alias
    crashed the plan (UnicodeEncodeError), and the forward was written raw, read back
    as U+FFFD and planned again at every run. Now each is left out with a warning."""
    source = SourceRouting(
        aliases=(parse_aliases(b"friends: caf\xe9@remote.example, ann@x.example\n",
                               "/etc/aliases"),),
        forwards={"alice": parse_forward(b"keep@x.example, caf\xe9@remote.example\n",
                                         "/home/alice/.forward", "alice")})
    plan = map_routing(source, [DomainRules("example.com", COM, import_aliases=True)])
    routing = plan.domains["example.com"]
    assert routing.aliases["friends"] == ("&ann@x.example",)
    assert routing.forwards == {"alice": ("&keep@x.example",)}
    assert sorted((str(f.origin), f.message) for f in plan.warnings) == [
        ("/etc/aliases:1", "alias friends: 'caf\\xe9@remote.example' holds a byte that "
         "is not UTF-8 text and is not carried over"),
        ("/home/alice/.forward:1", "~alice/.forward: 'caf\\xe9@remote.example' holds a "
         "byte that is not UTF-8 text and is not carried over")]


@pytest.mark.parametrize("line", [b"a\x1bb@remote.example", b"d\xe9f@remote.example"])
def test_an_unusable_entry_of_an_include_file_is_not_echoed(line):
    # an :include: file is read as root and may be any file: its text is never shown
    aliases = resolve_includes(parse_aliases("staff: :include:/etc/l, ann@x.example\n",
                                             "/etc/aliases"), lambda _p: line + b"\n")
    plan = map_routing(SourceRouting(aliases=(aliases,)),
                       [DomainRules("example.com", COM, import_aliases=True)])
    assert plan.domains["example.com"].aliases["staff"] == ("&ann@x.example",)
    (warning,) = plan.warnings
    assert warning.origin == Origin("/etc/l", 1)
    assert "an entry of an :include: file (its text is not shown)" in warning.message
    assert "remote.example" not in warning.message


def test_an_include_path_with_a_control_character_is_not_read():
    def read(path: str) -> bytes | None:
        raise AssertionError(f"read {path!r}")

    aliases = resolve_includes(parse_aliases('staff: ":include:/etc/l\0x", ann@x.example\n',
                                             "/etc/aliases"), read)
    source = SourceRouting(aliases=(aliases,))
    plan = map_routing(source, [DomainRules("example.com", COM, import_aliases=True)])
    assert plan.domains["example.com"].aliases["staff"] == ("&ann@x.example",)
    assert any("control character" in str(f) and f.origin == Origin("/etc/aliases", 1)
               for f in plan.findings)


def test_alias_for_a_mailbox_becomes_its_forward_and_replaces_dotforward():
    source = SourceRouting(
        aliases=(parse_aliases("alice: \\alice, boss@corp.example\n", "/etc/aliases"),),
        forwards={"alice": parse_forward("elsewhere@x.example\n", "/home/alice/.forward",
                                         "alice")})
    plan = map_routing(source, [DomainRules("example.com", COM, import_aliases=True)])
    routing = plan.domains["example.com"]
    assert "alice" not in routing.aliases
    assert routing.forwards["alice"] == ("./Maildir/", "&boss@corp.example")
    assert any("replaces the mailbox's ~/.forward" in str(f) for f in plan.findings)


def test_dev_null_alias_discards_with_comment_line():
    source = SourceRouting(aliases=(parse_aliases("spamtrap: /dev/null\n", "/etc/aliases"),))
    plan = map_routing(source, [DomainRules("example.com", COM, import_aliases=True)])
    assert plan.domains["example.com"].aliases == {"spamtrap": ("#",)}
    assert plan.warnings == ()


@pytest.mark.parametrize(("include", "exclude", "present", "absent"), [
    ((), (), {"abuse", "staff"}, {"root"}),
    (("staff", "root"), (), {"staff", "root"}, {"abuse"}),
    (("*",), ("loop*", "web*"), {"abuse"}, {"webmaster", "root"}),
])
def test_include_exclude(include, exclude, present, absent):
    plan = _plan(DomainRules("example.com", COM, import_aliases=True, include=include,
                             exclude=exclude))
    names = set(plan.domains["example.com"].aliases)
    assert present <= names and not absent & names


def test_aliases_not_imported_when_rules_say_no():
    plan = _plan(DomainRules("example.com", COM))
    assert plan.domains["example.com"].aliases == {}


@pytest.mark.parametrize(("name", "lines"), [
    ("info", ("&robert@example.com", "&bob@home.example")),  # info -> Info alias -> sales
    ("sales", ("&robert@example.com", "&bob@home.example")),  # Sales@Example.ORG -> bob
])
def test_virtusertable_addresses(name, lines):
    plan = _plan(DomainRules("example.com", COM), DomainRules("example.org", {"dave": "dave"}))
    assert plan.domains["example.org"].aliases[name] == lines


@pytest.mark.parametrize(("aliases", "vt", "severity", "words"), [
    # sendmail gave postmaster's mail to an admin: on vpopmail it stays in the postmaster
    # mailbox; the plan shows it without -v (a caution), not only as a note
    ("postmaster: root\nroot: alice, carol@remote.example\n", "", "caution",
     "alias 'postmaster' not imported: postmaster stays vpopmail's own account, so mail "
     "to postmaster@example.com stays in that mailbox, where sendmail delivered it to "
     "alice@example.com, carol@remote.example (read it as postmaster@example.com, or "
     "forward that mailbox on the target)"),
    ("", "postmaster@example.com  alice\n", "caution",
     "virtusertable address 'postmaster' not created: postmaster stays vpopmail's own "
     "account, so mail to postmaster@example.com stays in that mailbox, where sendmail "
     "delivered it to alice@example.com"),
    # where sendmail delivered it nowhere (a program): a note
    ('postmaster: "|/usr/bin/ticket"\n', "", "note",
     "alias 'postmaster' not imported: postmaster stays vpopmail's own account"),
    ("postmaster: /dev/null\n", "", "caution", "where sendmail discarded it (/dev/null)"),
])
def test_postmaster_stays_vpopmails_own_and_the_plan_says_where_its_mail_went(
        aliases, vt, severity, words):
    source = SourceRouting(aliases=(parse_aliases(aliases, "/etc/aliases"),),
                           virtusertable=parse_virtusertable(vt, "/etc/vt") if vt else None)
    plan = map_routing(source, [DomainRules("example.com", COM, import_aliases=True)])
    assert "postmaster" not in plan.domains["example.com"].aliases
    found = [f for f in plan.findings if "postmaster stays" in f.message]
    assert [(f.severity, words in f.message) for f in found] == [(severity, True)], found


def test_owner_aliases_are_told_as_qmail_reads_them():
    """sendmail's owner-NAME took the delivery errors of NAME's mail (a note: qmail
    returns them to the sender). qmail-local reads a .qmail-NAME-owner as the owner of
    NAME: its forwards get the sender DOMAIN-NAME-owner@DOMAIN (vpopmail's prefixed
    local part), no address there, so the errors go to the catch-all (a caution)."""
    source = SourceRouting(aliases=(parse_aliases(
        "staff: alice, carol\nowner-staff: alice\nstaff-owner: alice\n"
        "staff-request: alice\nsales-owner: alice\nowner-sales: carol\n",
        "/etc/aliases"),))
    plan = map_routing(source, [DomainRules("example.com", COM, import_aliases=True)])
    assert set(plan.domains["example.com"].aliases) == {
        "staff", "owner-staff", "staff-owner", "staff-request", "sales-owner", "owner-sales"}
    told = [(f.severity, str(f.origin), f.message) for f in plan.findings
            if "owner" in f.message]
    assert told == [
        ("note", "/etc/aliases:2", "alias owner-staff: sendmail sent the delivery errors of "
         "mail for staff@example.com to it; qmail returns them to the sender"),
        ("caution", "/etc/aliases:3", "alias staff-owner: qmail-local makes it the owner of "
         "the alias staff@example.com: mail it forwards for staff gets the envelope sender "
         "example.com-staff-owner@example.com (the local part vpopmail's virtual domain "
         "gives it), which is no mailbox nor alias, so delivery errors for staff's "
         "destinations go to the domain's catch-all: bounce mail for unknown recipients "
         "(sendmail gave NAME-owner no such meaning; rename one of them on the source to "
         "keep the errors going to the sender)")]


def test_virtusertable_postmaster_and_identity_entries_create_nothing():
    plan = _plan(DomainRules("example.com", COM), DomainRules("example.org", {"dave": "dave"}))
    routing = plan.domains["example.org"]
    assert "postmaster" not in routing.aliases and "dave" not in routing.aliases
    assert routing.forwards["dave"] == ("./Maildir/", "&dave@home.example")


@pytest.mark.parametrize(("vt", "rules_catch_all", "expected", "severity"), [
    ("", None, CatchAll("bounce"), "note"),
    ("@example.com error:nouser User unknown", None, CatchAll("bounce"), "note"),
    ("@example.com error:4.2.2:450 Mailbox full", None, CatchAll("bounce"), "warning"),
    ("@example.com bob", None, CatchAll("deliver-to-user", "robert"), None),
    ("@example.com someone@else.example", None,
     CatchAll("forward-to-address", "someone@else.example"), None),
    ("@example.com %1@elsewhere.example", None, CatchAll("bounce"), "warning"),
    ("@example.com bob", CatchAll("delete"), CatchAll("delete"), "note"),
    ("", CatchAll("forward-to-address", "x@y.example"),
     CatchAll("forward-to-address", "x@y.example"), None),
])
def test_catch_all(vt, rules_catch_all, expected, severity):
    # every mailbox has a line of its own, so the catch-all takes no mailbox's mail
    listed = "alice@example.com\talice\ncarol@example.com\tcarol\nrobert@example.com\tbob\n"
    source = SourceRouting(virtusertable=parse_virtusertable(listed + vt,
                                                             "/etc/mail/virtusertable"))
    plan = map_routing(source, [DomainRules("example.com", COM, catch_all=rules_catch_all)])
    assert plan.domains["example.com"].catch_all == expected
    # those lines took NAME+DETAIL@example.com on sendmail too (its virtusertable lookup
    # tries user@domain for user+detail@domain, before @domain), which goes to the
    # catch-all on vpopmail: a caution naming it
    assert [f.severity for f in plan.findings] == [*([severity] if severity else []),
                                                   "caution"]
    assert f"catch-all: {expected.describe()}: tell" in plan.findings[-1].message


def test_percent_one_catch_all_of_declared_alias_domain_is_covered():
    # virtusertable: @old.example  %1@example.com -- the alias domain must be example.com's
    plan = _plan(DomainRules("example.com", COM, alias_domains=("old.example",)),
                 DomainRules("example.org", {"dave": "dave"}))
    assert plan.domains["example.com"].alias_domains == ("old.example",)
    assert not any("old.example" in m for m in _messages(plan))


def test_an_alias_domain_of_another_domain_than_the_catch_all_names_is_a_warning():
    # old.example is declared an alias of example.org, but sendmail sent it to example.com
    plan = _plan()
    assert plan.domains["example.org"].alias_domains == ("old.example",)
    (warning,) = [f for f in plan.warnings if "old.example" in f.message]
    assert warning.origin == Origin("/etc/mail/virtusertable", 9)
    assert "@old.example -> %1@example.com: old.example is an alias domain of example.org" \
        in warning.message


def test_every_entry_of_an_alias_domain_is_checked_whatever_comes_first():
    """A specific entry after the alias domain's own catch-all was silently dropped."""
    vt = ("@alias.example\t%1@example.com\ninfo@alias.example\tbob@remote.example\n"
          "@other.example\t%1@example.com\n")
    for text in (vt, "\n".join(reversed(vt.splitlines())) + "\n"):
        plan = map_routing(
            SourceRouting(virtusertable=parse_virtusertable(text, "/etc/vt")),
            [DomainRules("example.com", {"alice": "alice"},
                         alias_domains=("alias.example",))])
        warned = [f.message for f in plan.warnings]
        assert len(warned) == 2, warned
        assert any("virtusertable info@alias.example -> bob@remote.example: alias.example "
                   "is an alias domain of example.com" in m for m in warned)
        assert any("entries for other.example are not migrated" in m for m in warned)


@pytest.mark.parametrize(("alias", "lines"), [
    (ExplicitAlias("sales", ("robert", "ext@partner.example")),
     ("&robert@example.com", "&ext@partner.example")),
    (ExplicitAlias("team", ("staff",)),
     ("&alice@example.com", "&robert@example.com", "&carol@example.com",
      "&dave@remote.example")),
])
def test_explicit_aliases_use_target_names_and_resolve(alias, lines):
    plan = _plan(DomainRules("example.com", COM, aliases=(alias,)))
    assert plan.domains["example.com"].aliases[alias.name] == lines


def test_spec_aliases_resolve_through_one_another():
    """A spec alias naming another spec alias (``chaina: [chainb]``) was left out with
    "local name 'chainb' resolves to nothing (no alias, no migrated user)", though the
    spec creates chainb; a loop between spec aliases was said the same way."""
    spec = (ExplicitAlias("chaina", ("chainb",), Origin("m.yaml", 3)),
            ExplicitAlias("chainb", ("robert", "ext@partner.example"), Origin("m.yaml", 4)),
            ExplicitAlias("loopa", ("loopb",), Origin("m.yaml", 5)),
            ExplicitAlias("loopb", ("loopa",), Origin("m.yaml", 6)),
            # a spec alias replaces the source's of that name, also for the spec's others
            ExplicitAlias("team", ("sales",), Origin("m.yaml", 7)),
            ExplicitAlias("sales", ("carol",), Origin("m.yaml", 8)))
    plan = _plan(DomainRules("example.com", COM, import_aliases=True, aliases=spec))
    aliases = plan.domains["example.com"].aliases
    assert aliases["chaina"] == aliases["chainb"] == ("&robert@example.com",
                                                      "&ext@partner.example")
    assert aliases["team"] == aliases["sales"] == ("&carol@example.com",)
    assert "loopa" not in aliases and "loopb" not in aliases
    warned = _messages(plan)
    assert not [m for m in warned if "m.yaml" in m and "resolves to nothing" in m], warned
    assert any("m.yaml:6: alias loopa: alias loop loopa -> loopb -> loopa" in m
               for m in warned), warned


@pytest.mark.parametrize(("name", "words"), [
    ("postmaster", "shadow the mailbox"),
    ("alice", "shadow the mailbox"),
    ("default", "catch-all or wildcard"),
    ("list-default", "catch-all or wildcard"),
    ("bad;name", "characters vpopmail rejects"),
    ("-x", "read as an option"),
])
def test_explicit_alias_names_are_validated(name, words):
    alias = ExplicitAlias(name, ("alice",), Origin("mailplan.yaml", 14))
    with pytest.raises(RoutingError, match=rf"^mailplan.yaml:14: .*{words}"):
        _plan(DomainRules("example.com", COM, aliases=(alias,)))


def test_a_one_character_alias_is_one_valias_takes():
    """vadduser refuses a one-character user (vpopmail's USERS_BIG_DIR: its directory
    would be named like a hashed one); valias writes .qmail-x and takes it (valias_insert
    checks the name's characters and length, not a shortest one): ``x: alice`` from the
    aliases file and a spec alias ``j`` are carried over, not refused."""
    source = SourceRouting(aliases=(parse_aliases("x: alice\n", "/etc/aliases"),))
    spec = ExplicitAlias("J", ("carol",), Origin("mailplan.yaml", 14))
    plan = map_routing(source, [DomainRules("example.com", COM, import_aliases=True,
                                            aliases=(spec,))])
    assert plan.domains["example.com"].aliases == {"x": ("&alice@example.com",),
                                                   "j": ("&carol@example.com",)}
    assert plan.warnings == ()


def test_address_in_migrated_domain_that_does_not_exist_warns():
    source = SourceRouting(aliases=(parse_aliases("x1: nobody-here@example.org\n", "/a"),))
    plan = map_routing(source, [DomainRules("example.com", COM, import_aliases=True),
                                DomainRules("example.org", {"dave": "dave"})])
    assert any("nobody-here@example.org is neither a mailbox nor an alias" in str(f)
               for f in plan.warnings)


def test_address_in_migrated_domain_is_renamed():
    source = SourceRouting(aliases=(parse_aliases("x1: bob@example.com\n", "/a"),))
    plan = map_routing(source, [DomainRules("example.com", COM, import_aliases=True)])
    assert plan.domains["example.com"].aliases["x1"] == ("&robert@example.com",)
    assert plan.warnings == ()



def test_a_name_of_the_old_host_is_local_and_a_migrated_domain_keeps_its_users():
    """sendmail's class w: bob@oldbox.example.org is the local bob (renamed robert), as
    sendmail delivered it, not a forward to the old server; without the name it is one.
    A migrated domain in class w keeps its own users (carol@example.org is not the
    example.com carol)."""
    text = "x1: bob@oldbox.example.org\nx2: carol@example.org\n"
    rules = [DomainRules("example.com", COM, import_aliases=True),
             DomainRules("example.org", {"dave": "dave"})]
    classw = frozenset({"localhost", "oldbox.example.org", "example.org"})
    plan = map_routing(SourceRouting(aliases=(parse_aliases(text, "/a"),),
                                     local_hostnames=classw), rules)
    assert plan.domains["example.com"].aliases["x1"] == ("&robert@example.com",)
    assert plan.domains["example.com"].aliases["x2"] == ("&carol@example.org",)
    assert any("carol@example.org is neither a mailbox nor an alias" in str(f)
               for f in plan.warnings)
    plan = map_routing(SourceRouting(aliases=(parse_aliases(text, "/a"),)), rules)
    assert plan.domains["example.com"].aliases["x1"] == ("&bob@oldbox.example.org",)

@pytest.mark.parametrize("catch_all,bounces", [
    (None, True), (CatchAll("deliver-to-user", "dave"), False),
    (CatchAll("forward-to-address", "someone@else.example"), False)])
def test_what_an_alias_reaches_on_vpopmail_is_warned_about_only_when_it_bounces(catch_all,
                                                                                bounces):
    """An alias domain in class w keeps its domain's users (bob@old.example is
    bob@example.org, not the local bob); postmaster is vpopmail's own account, never
    "will bounce"; a name neither mailbox nor alias bounces unless the domain's catch-all
    delivers to a user or forwards."""
    text = "x3: bob@old.example\nx4: postmaster@example.com\nx5: nobody@example.org\n"
    rules = [DomainRules("example.com", COM, import_aliases=True),
             DomainRules("example.org", {"dave": "dave"}, alias_domains=("old.example",),
                         catch_all=catch_all)]
    plan = map_routing(SourceRouting(aliases=(parse_aliases(text, "/a"),),
                                     local_hostnames=frozenset({"old.example"})), rules)
    assert plan.domains["example.com"].aliases["x3"] == ("&bob@example.org",)
    warned = [str(f) for f in plan.warnings if "will bounce" in str(f)]
    assert not any("postmaster" in w for w in warned)
    assert any("nobody@example.org" in w for w in warned) == bounces


def test_a_duplicate_virtusertable_key_is_a_warning_of_the_plan():
    """What reading the virtusertable finds (a key makemap keeps only once) reaches the
    plan's warnings, and so strict mode."""
    vt = parse_virtusertable(b"x@example.com alice\nx@example.com carol\n", "/vt")
    plan = map_routing(SourceRouting(virtusertable=vt),
                       [DomainRules("example.com", COM)])
    assert any("duplicate virtusertable key 'x@example.com'" in str(f) and "/vt:2" in str(f)
               for f in plan.warnings)


def test_ambiguous_local_user_warns():
    source = SourceRouting(aliases=(parse_aliases("x1: sam\n", "/a"),))
    plan = map_routing(source, [
        DomainRules("a.example", {"sam": "sam"}),
        DomainRules("b.example", {"sam": "sam"}),
        DomainRules("c.example", {}, import_aliases=True)])
    assert any("several domains" in str(f) for f in plan.warnings)


def test_strict_turns_warnings_into_one_error_listing_lines():
    with pytest.raises(RoutingError) as caught:
        _plan(strict=True)
    text = str(caught.value)
    assert "strict mode" in text and "/etc/aliases:33" in text and "/etc/aliases:36" in text


def test_strict_passes_with_notes_only():
    source = SourceRouting(aliases=(parse_aliases("postmaster: root\nroot: alice\n"
                                                 "abuse: root\n", "/etc/aliases"),))
    plan = map_routing(source, [DomainRules("example.com", COM, import_aliases=True)],
                       strict=True)
    assert plan.domains["example.com"].aliases == {"abuse": ("&alice@example.com",)}


@pytest.mark.parametrize("alias_domain", ["example.com", "bad_name.example", "nodot"])
def test_alias_domain_validation(alias_domain):
    with pytest.raises(RoutingError, match="alias domain"):
        _plan(DomainRules("example.com", COM, alias_domains=(alias_domain,)))


@pytest.mark.parametrize("value", ["error:nouser 550 No such user", "nobodyhere"])
def test_a_virtusertable_line_without_equivalent_still_wins_over_the_alias(value):
    """sendmail looks virtusertable up first: info@example.com was rejected (or went
    nowhere), never to the aliases file's info. The alias is not created, and the one
    warning says where the mail goes now (the catch-all), not a vague 'will follow'."""
    source = SourceRouting(
        aliases=(parse_aliases("info: alice\n", "/etc/aliases"),),
        virtusertable=parse_virtusertable(f"info@example.com\t{value}\n", "/etc/vt"))
    for policy, words in ((None, "bounce mail for unknown recipients"),
                          (CatchAll("deliver-to-user", "alice"),
                           "deliver mail for unknown recipients to alice")):
        plan = map_routing(source, [DomainRules("example.com", {"alice": "alice"},
                                                import_aliases=True, catch_all=policy)])
        assert "info" not in plan.domains["example.com"].aliases
        warnings = [f for f in plan.warnings if f.origin == Origin("/etc/vt", 1)]
        assert len(warnings) == 1, warnings
        assert warnings[0].message.endswith(
            "the alias 'info' from /etc/aliases:1 is dropped (sendmail looked virtusertable "
            "up first and never reached it), so mail to info@example.com goes to the "
            f"domain's catch-all: {words}")
        assert "will follow the catch-all" not in str(plan.findings)


def test_a_virtusertable_error_for_a_mailbox_says_the_mailbox_gets_the_mail():
    source = SourceRouting(virtusertable=parse_virtusertable(
        "alice@example.com\terror:nouser 550 Gone\n", "/etc/vt"))
    plan = map_routing(source, [DomainRules("example.com", {"alice": "alice"})])
    (warning,) = plan.warnings
    assert "catch-all" not in warning.message
    assert warning.message.endswith("alice is a mailbox on vpopmail, so mail to "
                                    "alice@example.com is delivered to its mailbox, where "
                                    "sendmail did not deliver it")


def test_an_escaped_name_whose_mailbox_has_a_forward_is_a_warning():
    """sendmail: \\bob is bob's mailbox, ~/.forward not applied; vpopmail: &robert@...
    goes through robert's .qmail (the migrated ~/.forward). Said, not silently changed."""
    source = SourceRouting(
        aliases=(parse_aliases("staff: alice, \\bob\nteam: alice, bob\n", "/etc/aliases"),),
        forwards={"bob": parse_forward("bob@home.example\n", "/home/bob/.forward", "bob")})
    plan = map_routing(source, [DomainRules("example.com", COM, import_aliases=True)])
    (warning,) = plan.warnings
    assert warning.origin == Origin("/etc/aliases", 1)
    assert warning.message == (
        "alias staff: \\bob delivered to the mailbox itself on sendmail, without its "
        "~/.forward; on vpopmail &robert@example.com goes through robert's own .qmail "
        "(&bob@home.example), so this mail is delivered as that says")
    # no forward: \bob is just the mailbox, nothing to say
    quiet = map_routing(SourceRouting(aliases=source.aliases),
                        [DomainRules("example.com", COM, import_aliases=True)])
    assert quiet.warnings == ()


def test_a_virtusertable_line_that_becomes_a_mailbox_qmail_reached_by_aliases_warns():
    source = SourceRouting(
        aliases=(parse_aliases("staff: alice, carol\n", "/etc/aliases"),),
        virtusertable=parse_virtusertable("carol@example.com\tcarol@gmail.example\n",
                                          "/etc/vt"))
    plan = map_routing(source, [DomainRules("example.com", COM, import_aliases=True)])
    assert plan.domains["example.com"].forwards["carol"] == ("&carol@gmail.example",)
    (warning,) = plan.warnings
    assert warning.origin == Origin("/etc/vt", 1)
    assert "becomes carol's own .qmail (&carol@gmail.example), which vpopmail applies to " \
           "all mail for carol: mail reaching it through alias staff@example.com follows " \
           "it too" in warning.message
    alone = map_routing(SourceRouting(virtusertable=source.virtusertable),
                        [DomainRules("example.com", COM)])
    assert alone.warnings == ()


def test_a_mixed_case_local_part_at_a_migrated_domain_is_that_name():
    source = SourceRouting(aliases=(parse_aliases("team: Info@example.com\ninfo: alice\n",
                                                 "/etc/aliases"),))
    rules = [DomainRules("example.com", {"alice": "alice"}, import_aliases=True)]
    plan = map_routing(source, rules, strict=True)  # no false "will bounce" warning
    assert plan.domains["example.com"].aliases["team"] == ("&info@example.com",)
    assert plan.warnings == ()


def test_spec_aliases_differing_only_in_case_are_refused():
    rules = DomainRules("example.com", COM, aliases=(ExplicitAlias("Sales", ("alice",)),
                                                     ExplicitAlias("sales", ("robert",))))
    with pytest.raises(RoutingError, match="'sales' in example.com is declared twice"):
        map_routing(SourceRouting(), [rules])


def test_an_alias_line_valias_cannot_keep_is_a_warning_and_no_alias():
    """valias -i drops a line of 160 bytes or more and valias -s shows one of 159 or more
    in pieces (reference: vpalias.c, MAX_ALIAS_LINE): such an alias could never be made
    or read back as planned."""
    far = "a" * 145 + "@partner.example"  # "&" + 161 bytes
    near = "a" * 141 + "@partner.example"  # "&" + 157 bytes: 158, kept
    alias = ExplicitAlias("far", (far,), Origin("mailplan.yaml", 20))
    ok = ExplicitAlias("near", (near,), Origin("mailplan.yaml", 21))
    plan = _plan(DomainRules("example.com", COM, aliases=(alias, ok)))
    assert "far" not in plan.domains["example.com"].aliases
    assert plan.domains["example.com"].aliases["near"] == (f"&{near}",)
    assert any("mailplan.yaml:20" in m and "159" in m for m in _messages(plan)), \
        _messages(plan)


def test_a_virtusertable_catch_all_took_the_mail_of_unlisted_mailboxes_and_aliases():
    """sendmail looks ``@domain`` up before local delivery: with a catch-all, mail for a
    user or alias of the domain without a ``user@domain`` line of its own went to the
    catch-all. On vpopmail it reaches the mailbox or alias: the plan must say so."""
    vt = "alice@example.com\talice\n@example.com\tsomeone@else.example\n"
    source = SourceRouting(aliases=(parse_aliases("helpdesk: carol\n", "/etc/aliases"),),
                           virtusertable=parse_virtusertable(vt, "/etc/vt"))
    plan = map_routing(source, [DomainRules("example.com", COM, import_aliases=True)])
    warnings = [f for f in plan.findings if f.severity == "warning"]
    assert len(warnings) == 1, plan.findings
    assert warnings[0].origin == Origin("/etc/vt", 2)
    message = warnings[0].message
    assert "carol, robert (mailboxes), helpdesk (alias)" in message, message
    assert "alice" not in message  # listed: sendmail delivered it as its line says
    # the catch-all's own mailbox loses nothing: it got that mail before too
    vt = "@example.com\tbob\n"
    plan = map_routing(SourceRouting(virtusertable=parse_virtusertable(vt, "/etc/vt")),
                       [DomainRules("example.com", COM)])
    (warning,) = [f for f in plan.findings if f.severity == "warning"]
    assert "alice, carol (mailboxes)" in warning.message and "robert" not in warning.message


def test_an_alias_naming_its_own_mailbox_without_backslash_keeps_the_forward():
    """``bob: bob, x`` refers to itself: sendmail delivers to the user bob as usual, and
    so through ~bob/.forward (only ``\\bob`` skips it). The mailbox's .qmail keeps the
    forward's lines, and adds the alias's others."""
    forward = parse_forward("\\bob\nbob@home.example\n", "/home/bob/.forward", "bob")
    for text, lines in (
            ("bob: bob, other@x.example\n",
             ("./Maildir/", "&bob@home.example", "&other@x.example")),
            ("bob: bob@example.com, other@x.example\n",
             ("./Maildir/", "&bob@home.example", "&other@x.example")),
            ("bob: \\bob, other@x.example\n", ("./Maildir/", "&other@x.example"))):
        source = SourceRouting(aliases=(parse_aliases(text, "/etc/aliases"),),
                               forwards={"bob": forward})
        plan = map_routing(source, [DomainRules("example.com", {"bob": "bob"},
                                                import_aliases=True)])
        assert plan.domains["example.com"].forwards["bob"] == lines, text
    # a ~/.forward naming its own user delivers to the mailbox
    forward = parse_forward("bob\nbob@home.example\n", "/home/bob/.forward", "bob")
    plan = map_routing(SourceRouting(forwards={"bob": forward}),
                       [DomainRules("example.com", {"bob": "bob"})])
    assert plan.domains["example.com"].forwards["bob"] == ("./Maildir/", "&bob@home.example")


def test_an_address_at_a_declared_alias_domain_resolves_in_its_domain():
    """example.net is declared an alias domain of example.com: bob@example.net is
    bob@example.com there, so the source login bob is the renamed mailbox robert, and an
    address there that is no mailbox nor alias is a warning, as at example.com itself."""
    source = SourceRouting(aliases=(parse_aliases(
        "x1: bob@example.net\nx2: nobody@example.net\nx3: Alice@Example.NET\n", "/a"),))
    plan = map_routing(source, [DomainRules("example.com", COM, import_aliases=True,
                                            alias_domains=("example.net",))])
    aliases = plan.domains["example.com"].aliases
    assert aliases["x1"] == ("&robert@example.com",)
    assert aliases["x3"] == ("&alice@example.com",)
    assert any("nobody@example.com is neither a mailbox nor an alias" in str(f)
               for f in plan.warnings), plan.findings


def test_the_old_address_of_a_renamed_user_of_a_local_domain_is_a_warning():
    """example.com is one of the old host's own names (class w): sendmail delivered
    bob@example.com to the user bob. Migrated as robert, bob@example.com is no mailbox
    on vpopmail: unless an alias keeps it, the plan says where its mail goes now."""
    local = frozenset({"localhost", "example.com"})
    plan = map_routing(SourceRouting(local_hostnames=local), [DomainRules("example.com", COM)])
    (warning,) = plan.warnings
    assert warning.message == (
        "bob@example.com delivered to the user bob on sendmail (example.com is one of the "
        "old host's own names); bob is migrated as robert, and no mailbox or alias bob is "
        "left on vpopmail, so mail to bob@example.com goes to the domain's catch-all: "
        "bounce mail for unknown recipients (declare the alias bob: [robert] in the spec "
        "to keep it)"), warning.message
    # an alias of the old name keeps it; so does a domain sendmail did not deliver locally
    source = SourceRouting(aliases=(parse_aliases("bob: robert@example.com\n", "/a"),),
                           local_hostnames=local)
    assert not map_routing(source, [DomainRules("example.com", COM, import_aliases=True)]
                           ).warnings
    assert not map_routing(SourceRouting(), [DomainRules("example.com", COM)]).warnings


def test_a_loop_through_full_addresses_of_the_domain_is_a_warning():
    """``bb: cc@example.com`` and ``cc: bb@example.com`` loop on vpopmail (each .qmail
    forwards to the other): qmail bounces such mail as looping. Loops of bare names were
    found; loops through addresses of a migrated domain, and through mailboxes' own
    .qmail, were written without a word."""
    text = "aa: aa@example.com, alice\nbb: cc@example.com\ncc: bb@example.com\n"
    forwards = {u: parse_forward(f"\\{u}\n{o}@example.com\n", f"/home/{u}/.forward", u)
                for u, o in (("alice", "carol"), ("carol", "alice"))}
    source = SourceRouting(aliases=(parse_aliases(text, "/etc/aliases"),), forwards=forwards)
    plan = map_routing(source, [DomainRules("example.com", COM, import_aliases=True)])
    loops = sorted(f.message for f in plan.warnings if "loop" in f.message)
    assert loops == [
        "alias loop on vpopmail: alias aa@example.com -> alias aa@example.com; qmail "
        "bounces mail that comes round again as looping",
        "alias loop on vpopmail: alias bb@example.com -> alias cc@example.com -> alias "
        "bb@example.com; qmail bounces mail that comes round again as looping",
        "alias loop on vpopmail: the .qmail of alice@example.com -> the .qmail of "
        "carol@example.com -> the .qmail of alice@example.com; qmail bounces mail that "
        "comes round again as looping"], plan.findings
    origins = {f.origin for f in plan.warnings if "loop" in f.message}
    assert origins == {Origin("/etc/aliases", 1), Origin("/etc/aliases", 2),
                       Origin("/home/alice/.forward", 1)}


def _copies(routing, address: str, seen: frozenset[str] = frozenset()) -> Counter:
    """Who gets a copy of mail to ``address`` on vpopmail: an alias's lines, else the
    mailbox's own .qmail, else its Maildir; ``&x@domain`` lines of the domain followed,
    others counted as they are (qmail delivers every line: it suppresses no duplicate)."""
    local = address.split("@")[0]
    lines = routing.aliases.get(local) or routing.forwards.get(local)
    if lines is None or address in seen:
        return Counter([address])
    out: Counter = Counter()
    for line in lines:
        if line == "./Maildir/":
            out[address] += 1
        elif line.startswith("&") and line.endswith(f"@{routing.domain}"):
            out += _copies(routing, line[1:], seen | {address})
        else:
            out[line.lstrip("&")] += 1
    return out


@pytest.mark.parametrize("text", [
    "bob: staff\nstaff: alice, bob, carol@x.example\n",
    "staff: alice, bob, carol@x.example\nbob: staff\n",
])
def test_an_alias_of_a_mailbox_naming_a_list_that_names_the_mailbox(text):
    """``bob: staff`` with bob on the staff list: sendmail delivers each recipient once.
    Mail to bob: bob's mailbox and the rest of staff; mail to staff: its members, bob in
    his mailbox (sendmail breaks the loop staff -> bob -> staff at bob, a real user). On
    vpopmail bob's .qmail delivers staff's other members already, so staff hands its mail
    to bob's .qmail instead of listing them again (qmail would deliver them twice)."""
    d = "example.com"
    source = SourceRouting(aliases=(parse_aliases(text, "/etc/aliases"),))
    plan = map_routing(source, [DomainRules(d, {"alice": "alice", "bob": "bob"},
                                            import_aliases=True)])
    routing = plan.domains[d]
    once = Counter({f"alice@{d}": 1, f"bob@{d}": 1, "carol@x.example": 1})
    assert _copies(routing, f"bob@{d}") == once
    assert _copies(routing, f"staff@{d}") == once
    assert routing.forwards["bob"] == (f"&alice@{d}", "./Maildir/", "&carol@x.example")
    assert routing.aliases["staff"] == (f"&bob@{d}",)
    assert plan.warnings == ()
    notes = [f.message for f in plan.findings if f.severity == "note"]
    assert f"alias staff@{d}: &alice@{d}, &carol@x.example not listed again: the .qmail of " \
        f"bob@{d}, which it reaches (sendmail broke an alias loop there), delivers them " \
        "already, and qmail would deliver them twice" in notes


@pytest.mark.parametrize("forward", ["staff", "team", "bob, alice", "bob@example.com, alice"])
def test_a_forward_of_a_mailbox_on_a_list_naming_the_list_delivers_once(forward):
    """The same loop through bob's ~/.forward (``staff``, or bob itself: sendmail's
    self_reference breaks either at bob): staff, and team reaching the loop through bob,
    hand alice to bob's .qmail instead of listing her again; carol's ~/.forward naming
    bob does so too. ``\\bob`` in an alias skipped the ~/.forward on sendmail: listed as
    it was (with its warning)."""
    d = "example.com"
    source = SourceRouting(
        aliases=(parse_aliases("staff: bob, alice\nteam: alice, bob\nall: \\bob, alice\n",
                               "/etc/aliases"),),
        forwards={u: parse_forward(text.encode(), f"/home/{u}/.forward", u)
                  for u, text in (("bob", forward), ("carol", "bob, alice"))})
    plan = map_routing(source, [DomainRules(d, {"alice": "alice", "bob": "bob", "carol": "carol"},
                                            import_aliases=True)])
    routing = plan.domains[d]
    once = Counter({f"alice@{d}": 1, f"bob@{d}": 1})
    for rcpt in ("staff", "team", "bob"):
        assert _copies(routing, f"{rcpt}@{d}") == once, rcpt
    assert _copies(routing, f"carol@{d}") == once
    assert routing.aliases["staff"] == routing.aliases["team"] == (f"&bob@{d}",)
    assert routing.forwards["carol"] == (f"&bob@{d}",)
    assert routing.aliases["all"] == (f"&bob@{d}", f"&alice@{d}")
    notes = [f.message for f in plan.findings if f.severity == "note"]
    assert f"alias staff@{d}: &alice@{d} not listed again: the .qmail of bob@{d}, which it " \
        "reaches (sendmail broke a loop through its ~/.forward there), delivers it " \
        "already, and qmail would deliver it twice" in notes
    assert sum("not listed again" in n for n in notes) == 3, notes


@pytest.mark.parametrize(("forward", "virtual"), [
    ("alice, \\bob", None), ("\\bob, alice", None),
    ("staff", "bob@example.com  alice@example.com\n")])
def test_a_forward_outside_a_loop_keeps_every_line_of_the_lists_reaching_it(forward, virtual):
    """bob's ~/.forward ``alice, \\bob`` leads back to no loop: staff keeps listing
    alice (a copy too many on vpopmail, as before: never one lost), and nothing is
    said of lines not listed again. So does a looping ~/.forward that a virtusertable
    line replaced as the mailbox's .qmail."""
    d = "example.com"
    source = SourceRouting(
        aliases=(parse_aliases("staff: bob, alice\n", "/etc/aliases"),),
        forwards={"bob": parse_forward(forward.encode(), "/home/bob/.forward", "bob")},
        virtusertable=virtual and parse_virtusertable(virtual.encode(),
                                                      "/etc/mail/virtusertable"))
    plan = map_routing(source, [DomainRules(d, {"alice": "alice", "bob": "bob"},
                                            import_aliases=True)])
    assert plan.domains[d].aliases["staff"] == (f"&bob@{d}", f"&alice@{d}")
    assert not [f for f in plan.findings if "not listed again" in f.message]


@pytest.mark.parametrize(("text", "rcpt", "want"), [
    # the loop staff -> bob -> staff runs inside bob's alias: broken at bob, the user
    ("team: alice, bob\nbob: staff\nstaff: alice, bob\n", "team", ["alice", "bob"]),
    ("team: alice, bob\nbob: staff\nstaff: alice, bob\n", "staff", ["alice", "bob"]),
    # all -> bob -> staff -> team -> staff: broken at bob, the nearest user back up the
    # expansion (mail to staff itself loops through no user: a warning, as before)
    ("all: bob\nbob: staff\nstaff: team\nteam: staff, alice\n", "all", ["alice", "bob"]),
])
def test_alias_loops_through_a_user_deliver_once_to_each_recipient(text, rcpt, want):
    d = "example.com"
    source = SourceRouting(aliases=(parse_aliases(text, "/etc/aliases"),))
    plan = map_routing(source, [DomainRules(d, {"alice": "alice", "bob": "bob"},
                                            import_aliases=True)])
    assert _copies(plan.domains[d], f"{rcpt}@{d}") == Counter(f"{u}@{d}" for u in want)
    assert not [f for f in plan.warnings if f.message.startswith((f"alias {rcpt}:", "alias bob:"))]


def test_plussed_addresses_sendmail_delivered_are_a_caution_per_domain():
    """sendmail.cf's plussed-users rule delivered name+detail to name; on vpopmail such
    an address is nobody (qmail and vpopmail split extensions at '-'): one caution per
    domain with mailboxes or aliases, saying where that mail goes; none without the
    rule, and none for a domain with neither."""
    rule = Origin("/etc/mail/sendmail.cf", 120)
    aliases = (parse_aliases("info: alice\n", "/etc/aliases"),)
    rules = [DomainRules("example.com", {"alice": "alice"}),
             DomainRules("example.org", {}, import_aliases=True,
                         catch_all=CatchAll("forward-to-address", "ops@example.com")),
             DomainRules("example.net", {})]
    plan = map_routing(SourceRouting(aliases=aliases, plus_detail=rule), rules)
    cautions = [f for f in plan.findings if f.severity == "caution"]
    assert [(f.domain, f.origin) for f in cautions] == [("example.com", rule),
                                                        ("example.org", rule)]
    assert cautions[0].message == (
        "sendmail delivered NAME+DETAIL@example.com to the user or alias NAME (this "
        "plussed-users rule); qmail and vpopmail split an address extension only at '-', "
        "so on vpopmail NAME+DETAIL@example.com is no mailbox nor alias and goes to the "
        "domain's catch-all: bounce mail for unknown recipients (NAME-DETAIL@example.com "
        "reaches the mailbox NAME where vpopmail is built with --enable-qmail-ext): tell "
        "the users who hand out +detail addresses")
    assert "catch-all: forward mail for unknown recipients to ops@example.com" \
        in cautions[1].message
    assert cautions[0] not in plan.warnings  # --strict lets it through
    assert not [f for f in map_routing(SourceRouting(aliases=aliases), rules).findings
                if f.severity == "caution"]


def test_plussed_addresses_a_virtusertable_line_delivered_are_a_caution_without_the_rule():
    """Without the plussed-users rule sendmail still delivered NAME+DETAIL@D by a
    virtusertable line NAME@D (proto.m4 tries user@domain for user+detail@domain in
    ruleset 0, before ruleset 5): on vpopmail that address is nobody and goes to the
    catch-all. One caution per domain with such lines, naming them; none for an
    error: line (sendmail refused those addresses too), a wildcard (a warning of its
    own) or the @D line. With the rule, the rule's caution alone."""
    vt = parse_virtusertable(
        "sales@example.com  carol\nbob@example.com  bob@elsewhere.example\n"
        "gone@example.com  error:nouser User unknown\nlist+*@example.com  alice\n"
        "@example.org  alice@example.com\n", "/etc/mail/virtusertable")
    rules = [DomainRules("example.com", {"alice": "alice", "bob": "bob", "carol": "carol"}),
             DomainRules("example.org", {})]
    plan = map_routing(SourceRouting(virtusertable=vt), rules)
    cautions = [f for f in plan.findings if f.severity == "caution"]
    assert [(f.domain, f.origin) for f in cautions] == [
        ("example.com", Origin("/etc/mail/virtusertable", 1))]
    assert cautions[0].message == (
        "sendmail delivered NAME+DETAIL@example.com by the virtusertable line "
        "NAME@example.com, for NAME bob, sales (its virtusertable lookup tries NAME@DOMAIN "
        "for NAME+DETAIL@DOMAIN, with or without a plussed-users rule); qmail and vpopmail "
        "split an address extension only at '-', so on vpopmail NAME+DETAIL@example.com is "
        "no mailbox nor alias and goes to the domain's catch-all: bounce mail for unknown "
        "recipients: tell the users who hand out +detail addresses")
    rule = Origin("/etc/mail/sendmail.cf", 120)
    ruled = map_routing(SourceRouting(virtusertable=vt, plus_detail=rule), rules)
    assert [(f.domain, f.origin) for f in ruled.findings if f.severity == "caution"] == [
        ("example.com", rule)]
    # with an @D line (kept, or set aside by the spec) sendmail never reached the rule
    # for D: that line took every name+detail@D without a name@D line; the caution is
    # the lines'
    caught = parse_virtusertable(
        "sales@example.com  carol\nbob@example.com  bob@elsewhere.example\n"
        "@example.com  alice\n", "/etc/mail/virtusertable")
    aside = parse_virtusertable("sales@example.com  carol\nbob@example.com  x@y.example\n",
                                "/etc/mail/virtusertable")
    for source in (SourceRouting(virtusertable=caught, plus_detail=rule),
                   SourceRouting(virtusertable=aside, plus_detail=rule,
                                 set_aside_catch_alls=frozenset({"example.com"}))):
        found = [f for f in map_routing(source, rules).findings if f.severity == "caution"]
        assert [(f.domain, f.origin) for f in found] == [
            ("example.com", Origin("/etc/mail/virtusertable", 1))]
        assert "by the virtusertable line NAME@example.com, for NAME bob, sales" \
            in found[0].message


def test_a_plussed_local_name_in_an_alias_goes_where_sendmail_sent_it():
    """With the plussed-users rule, sendmail delivered a local name+detail that is no
    alias as the alias name+*, else as name (alias or user): the alias keeps that
    recipient (a note); without the rule it resolves to nothing, as before."""
    rule = Origin("/etc/mail/sendmail.cf", 120)
    text = ("staff: bob+lists, carol\nsales: staff+foo\ncarol: carol, carol@home.example\n"
            "team: list+x, alice+y+z\nlist+*: alice\nlist+x: bob\nupdates: list+other\n")
    aliases = (parse_aliases(text, "/etc/aliases"),)
    rules = [DomainRules("example.com", {"alice": "alice", "bob": "bob", "carol": "carol"},
                         import_aliases=True)]
    plan = map_routing(SourceRouting(aliases=aliases, plus_detail=rule), rules)
    got = plan.domains["example.com"].aliases
    assert got["staff"] == ("&bob@example.com", "&carol@example.com")
    assert got["sales"] == got["staff"]
    assert got["team"] == ("&bob@example.com", "&alice@example.com")  # list+x: its own
    assert got["updates"] == ("&alice@example.com",)                      # list+*
    assert "note: [example.com] /etc/aliases:1: alias staff: bob+lists is delivered as " \
        "bob, as sendmail's plussed-users rule did (the +detail is not kept on vpopmail)" \
        in _messages(plan, "note")
    assert not [w for w in _messages(plan) if "resolves to nothing" in w]
    # a name read from an :include: file is not echoed (any file's line)
    listed = resolve_includes(parse_aliases("crew: :include:/etc/mail/crew\n", "/etc/aliases"),
                              lambda path: b"bob+Secret=x\n")
    crew = map_routing(SourceRouting(aliases=(listed,), plus_detail=rule), rules)
    assert crew.domains["example.com"].aliases["crew"] == ("&bob@example.com",)
    assert not [n for n in _messages(crew, "note") if "Secret" in n or "secret" in n]
    # the same as an address at one of the old host's own names (class w): the user
    # (renamed or not), or the destinations of a name+* alias on the source (which is no
    # alias on vpopmail); elsewhere left as it is
    own = (parse_aliases("ops: Bob+Lists@Example.COM, carol+x@example.org, list+y@example.com,"
                         " dave+z@example.com\nlist+*: alice\n", "/etc/aliases"),)
    renamed = [DomainRules("example.com", {"alice": "alice", "bob": "robert", "dave": "dave"},
                           import_aliases=True), DomainRules("example.org", {"carol": "carol"})]
    local = frozenset({"example.com", "example.org", "oldhost"})
    ops = map_routing(SourceRouting(aliases=own, plus_detail=rule, local_hostnames=local),
                      renamed)
    assert ops.domains["example.com"].aliases["ops"] == (
        "&robert@example.com", "&carol@example.org", "&alice@example.com",
        "&dave@example.com")
    assert map_routing(SourceRouting(aliases=own, plus_detail=rule), renamed).domains[
        "example.com"].aliases["ops"][0] == "&bob+lists@example.com"  # not class w
    plain = map_routing(SourceRouting(aliases=aliases), rules)
    assert plain.domains["example.com"].aliases["staff"] == ("&carol@example.com",)
    assert [w for w in _messages(plain) if "'bob+lists' resolves to nothing" in w]


def test_a_plussed_address_in_a_virtusertable_only_domain_goes_where_sendmail_sent_it():
    """sendmail looked name+detail@DOMAIN up in virtusertable as name+detail@, name+*@,
    then name@ (whatever the plussed-users rule), also for a domain that is not one of
    the old host's own names but exists through virtusertable lines only: such an
    address maps as in the other domains, to the line's destination, not to a
    name+detail that is nobody on vpopmail."""
    vt = parse_virtusertable(
        "bar@virt.example  bob\nbar+x@virt.example  alice\n"
        "help+*@virt.example  %1%3@desk.example\nhelp@virt.example  carol\n"
        "loop+*@virt.example  loop+again@virt.example\n@example.com  alice\n",
        "/etc/mail/virtusertable")
    aliases = (parse_aliases("x: bar+y@virt.example, help+urgent@virt.example, "
                             "bar+x@virt.example, bob+z@example.com\n"
                             "spin: loop+a@virt.example\n", "/etc/aliases"),)
    rules = [DomainRules("example.com", {"alice": "alice", "bob": "bob", "carol": "carol"},
                         import_aliases=True), DomainRules("virt.example", {})]
    for rule in (None, Origin("/etc/mail/sendmail.cf", 120)):
        plan = map_routing(SourceRouting(aliases=aliases, virtusertable=vt, plus_detail=rule,
                                         local_hostnames=frozenset({"example.com"})), rules)
        got = plan.domains["example.com"].aliases
        assert got["x"] == ("&bar@virt.example",              # the line bar@ (its alias)
                            "&help+urgent@desk.example",      # help+* with the detail put in
                            "&bar+x@virt.example",            # a line of its own
                            "&bob+z@example.com"), rule       # @example.com caught it
        assert plan.domains["virt.example"].aliases["bar"] == ("&bob@example.com",)
        assert "spin" not in got
        warnings = _messages(plan)
        assert not [w for w in warnings if "neither a mailbox nor an alias" in w], warnings
        assert [w for w in warnings if "virtusertable loop" in w and "spin" in w]
        assert ("note: [example.com] /etc/aliases:1: alias x: an address bar+DETAIL@"
                "virt.example is delivered by the line bar@virt.example, as sendmail's "
                "virtusertable lookup did (the +detail is not kept on vpopmail)") \
            in _messages(plan, "note")


def test_a_plussed_address_where_the_catch_all_line_is_set_aside_goes_to_the_catch_all():
    """sendmail looked name+detail@DOMAIN up in virtusertable before it delivered
    locally: with no line for name, the @DOMAIN line took it (proto.m4's "@domain if
    +detail exists"), never the plussed-users rule. Where the spec set that line aside
    (unknown_recipients unset: its own catch-all applies), the address stays
    name+detail@DOMAIN and goes to that catch-all, as every other address the line
    caught; not to the mailbox name, which sendmail never gave it."""
    rule = Origin("/etc/mail/sendmail.cf", 120)
    aliases = (parse_aliases("team: bob+lists@example.com\n", "/etc/aliases"),)
    rules = [DomainRules("example.com", {"alice": "alice", "bob": "bob"}, import_aliases=True)]
    local = frozenset({"example.com"})
    aside = map_routing(SourceRouting(aliases=aliases, plus_detail=rule, local_hostnames=local,
                                      set_aside_catch_alls=local), rules)
    assert aside.domains["example.com"].aliases["team"] == ("&bob+lists@example.com",)
    assert ("warning: [example.com] /etc/aliases:1: alias team: bob+lists@example.com is "
            "neither a mailbox nor an alias on vpopmail; mail to it will bounce") \
        in _messages(aside)
    assert not [n for n in _messages(aside, "note") if "plussed-users rule did" in n]
    # no @DOMAIN line: the plussed-users rule took it, to the mailbox bob
    kept = map_routing(SourceRouting(aliases=aliases, plus_detail=rule,
                                     local_hostnames=local), rules)
    assert kept.domains["example.com"].aliases["team"] == ("&bob@example.com",)


def test_a_name_plus_plus_key_takes_a_non_empty_detail_before_name_plus_star():
    """proto.m4 looks name+detail@D up in virtusertable as name+detail@, then name++@
    when the detail is not empty, name+*@, name@ (cf/README: after the '+', "+" matches
    only a non-empty detail, "*" also an empty one). A name++ key is a wildcard as
    name+* is: no alias (.qmail-sales++ would get mail for sales++ alone), a warning
    that mail to sales+DETAIL@D goes to the catch-all, and an address sales+x@D in an
    alias goes to its destination (%1/%2 put in)."""
    vt = parse_virtusertable(
        "sales++@example.com  carol\nsales+*@example.com  bob\nsales@example.com  alice\n"
        "help++@example.com  %1+%2@desk.example\n", "/etc/mail/virtusertable")
    aliases = (parse_aliases("team: sales+x@example.com\nempty: sales+@example.com\n"
                             "desk: help+urgent@example.com\n", "/etc/aliases"),)
    rules = [DomainRules("example.com", {"alice": "alice", "bob": "bob", "carol": "carol"},
                         import_aliases=True)]
    plan = map_routing(SourceRouting(aliases=aliases, virtusertable=vt), rules)
    got = plan.domains["example.com"].aliases
    assert got["team"] == ("&carol@example.com",)        # sales++ before sales+*
    assert got["empty"] == ("&bob@example.com",)         # empty detail: not sales++
    assert got["desk"] == ("&help+urgent@desk.example",)
    assert "sales++" not in got and "help++" not in got
    assert ("warning: [example.com] /etc/mail/virtusertable:1: virtusertable "
            "sales++@example.com: '+detail' keys have no vpopmail equivalent: qmail-local and "
            "vdelivermail split an address extension only at '-' (a .qmail-NAME-default "
            "catches NAME-DETAIL, not NAME+DETAIL); mail to sales+DETAIL@example.com goes to "
            "the domain's catch-all: bounce mail for unknown recipients") in _messages(plan)
    assert [e.key for e in vt.entries][:2] == ["sales++@example.com", "sales+*@example.com"]


def test_every_users_plus_wildcards_are_looked_up_after_the_users_own_line():
    """proto.m4 looks name+detail@D up as ... name@D, then ++@D (a non-empty detail)
    and +*@D, before @D: cf/README's '+*@foo.org  %1%3@example.com'. Such a line is
    read (it stopped the plan), is no alias on vpopmail (a warning: mail to
    NAME+DETAIL@D goes to the catch-all) and is not the domain's catch-all; an address
    name+detail@D in an alias goes to its destination, %1 and %3 put in."""
    vt = parse_virtusertable(
        "+*@example.com  %1%3@desk.example\nsales@example.com  alice\n"
        "++@example.org  carol\n@example.org  alice\n", "/etc/mail/virtusertable")
    aliases = (parse_aliases("x: bob+help@example.com, sales+x@example.com, "
                             "bob+x@example.org, bob+@example.org\n", "/etc/aliases"),)
    rules = [DomainRules("example.com", {"alice": "alice", "bob": "bob", "carol": "carol"},
                         import_aliases=True), DomainRules("example.org", {})]
    plan = map_routing(SourceRouting(aliases=aliases, virtusertable=vt), rules)
    assert plan.domains["example.com"].aliases["x"] == (
        "&bob+help@desk.example",   # +*@example.com, %1%3 filled in
        "&sales@example.com",       # sales@ (its alias) before +*@
        "&carol@example.com",       # ++@example.org
        "&bob+@example.org")        # an empty detail: not ++@; @example.org's
    assert plan.domains["example.com"].catch_all == CatchAll("bounce")
    assert not plan.domains["example.com"].aliases.keys() - {"x", "sales"}
    assert ("warning: [example.com] /etc/mail/virtusertable:1: virtusertable +*@example.com: "
            "'+detail' keys have no vpopmail equivalent: qmail-local and vdelivermail split "
            "an address extension only at '-' (a .qmail-NAME-default catches NAME-DETAIL, "
            "not NAME+DETAIL); mail to NAME+DETAIL@example.com goes to the domain's "
            "catch-all: bounce mail for unknown recipients") in _messages(plan)


def test_a_plus_wildcard_never_becomes_an_alias():
    """sendmail's ``list+*`` (aliases file or virtusertable key) caught every
    list+DETAIL; qmail and vpopmail split extensions only at '-', so a literal alias
    ``list+*`` would catch nothing: not created, and the plan says where that mail goes
    now (the catch-all). A local list+DETAIL elsewhere still resolves through it."""
    rule = Origin("/etc/mail/sendmail.cf", 120)
    aliases = (parse_aliases("list+*: alice\nupdates: list+news\n", "/etc/aliases"),)
    rules = [DomainRules("example.com", {"alice": "alice", "bob": "bob"}, import_aliases=True,
                         catch_all=CatchAll("deliver-to-user", "bob"))]
    plan = map_routing(SourceRouting(aliases=aliases, plus_detail=rule), rules)
    got = plan.domains["example.com"].aliases
    assert "list+*" not in got
    assert got["updates"] == ("&alice@example.com",)
    assert ("warning: [example.com] /etc/aliases:1: alias 'list+*' is not created: sendmail "
            "delivered every list+DETAIL@example.com that is no alias of its own through it "
            "(its plussed-users rule), but qmail-local and vdelivermail split an address "
            "extension only at '-' (a .qmail-NAME-default catches NAME-DETAIL, not "
            "NAME+DETAIL), so no alias can catch those addresses on vpopmail: mail to "
            "list+DETAIL@example.com goes to the domain's catch-all: deliver mail for unknown "
            "recipients to bob (a local name list+DETAIL in an alias or ~/.forward still "
            "resolves through it, as on sendmail)") in _messages(plan)
    # without the plussed-users rule sendmail used it for list+* alone: a note
    plain = map_routing(SourceRouting(aliases=aliases), rules)
    assert "list+*" not in plain.domains["example.com"].aliases
    assert not [w for w in _messages(plain) if "list+*" in w]
    assert [n for n in _messages(plain, "note") if "alias 'list+*' is not created: "
            "sendmail.cf has no plussed-users rule" in n]
    # the virtusertable key: no alias either, and the warning says where the mail goes
    vt = parse_virtusertable("list+*@example.com  alice\n", "/etc/mail/virtusertable")
    keyed = map_routing(SourceRouting(virtusertable=vt), rules)
    assert not keyed.domains["example.com"].aliases
    assert ("warning: [example.com] /etc/mail/virtusertable:1: virtusertable "
            "list+*@example.com: '+detail' keys have no vpopmail equivalent: qmail-local and "
            "vdelivermail split an address extension only at '-' (a .qmail-NAME-default "
            "catches NAME-DETAIL, not NAME+DETAIL); mail to list+DETAIL@example.com goes to "
            "the domain's catch-all: deliver mail for unknown recipients to bob") \
        in _messages(keyed)
    # declared in the spec: refused, as every name vpopmail cannot carry
    declared = [DomainRules("example.com", {"alice": "alice"},
                            aliases=(ExplicitAlias("list+*", ("alice",)),))]
    with pytest.raises(RoutingError, match=r"alias 'list\+\*' in example.com: '\+\*' is "
                       "sendmail's wildcard for every NAME\\+DETAIL address"):
        map_routing(SourceRouting(), declared)


def test_a_system_alias_named_like_a_migrated_mailbox_routes_that_mailbox():
    """sendmail looked a name up in the aliases before the users: with a user 'backup'
    migrated and 'backup: alice', mail to backup went to alice. The system-alias policy
    must not leave the mailbox getting it on vpopmail: its .qmail says alice."""
    aliases = (parse_aliases("backup: alice\nmanager: alice, m@remote.example\n"
                             "root: alice\n", "/etc/aliases"),)
    rules = [DomainRules("example.com", {"alice": "alice", "backup": "backup",
                                         "manager": "manager"}, import_aliases=True)]
    got = map_routing(SourceRouting(aliases=aliases), rules).domains["example.com"]
    assert got.forwards == {"backup": ("&alice@example.com",),
                            "manager": ("&alice@example.com", "&m@remote.example")}
    assert got.aliases == {}  # root: no mailbox of that name, a system alias


def test_a_name_of_a_user_the_plan_does_not_create_says_so():
    """A user withheld once the target is read (its directory too long) is no mailbox:
    what delivers to it says that user is not created, not that there is no such user."""
    d, o = "example.com", "example.org"
    source = SourceRouting(aliases=(parse_aliases(
        "team: alice, kim\nother: kim@example.com\n", "/etc/aliases"),))
    plan = map_routing(source, [
        DomainRules(d, {"alice": "alice"}, import_aliases=True, withheld={"kim": "kim"},
                    aliases=(ExplicitAlias("staff", ("alice", "kim")),)),
        DomainRules(o, {"bob": "bob"}, aliases=(ExplicitAlias("xx", ("kim@example.com",)),))])
    assert plan.domains[d].aliases["team"] == (f"&alice@{d}",)
    messages = sorted(f.message for f in plan.warnings)
    assert messages == sorted([
        "alias other: kim@example.com is a user the plan does not create (see its "
        "problem); mail to it will bounce",
        "alias xx: kim@example.com is a user the plan does not create (see its "
        "problem); mail to it will bounce",
        "alias staff: 'kim' is the user kim@example.com, which the plan does not create "
        "(see its problem); nothing is delivered to it",
        "alias team: 'kim' is the user kim@example.com, which the plan does not create "
        "(see its problem); nothing is delivered to it"]), messages


def test_no_line_is_left_to_the_qmail_of_a_domain_the_apply_leaves_unwritten():
    """staff@example.com reaches bob@example.net, where sendmail broke the loop staff ->
    bob -> staff: mapped alone, staff leaves alice to bob's .qmail. With example.net
    unwritten (an alias domain of another on the target: no .qmail of its is written),
    staff lists alice itself: a copy too many rather than none."""
    source = SourceRouting(aliases=(parse_aliases("staff: alice, bob\nbob: staff\n",
                                                  "/etc/aliases"),))
    rules = [DomainRules("example.com", {"alice": "alice"}, import_aliases=True),
             DomainRules("example.net", {"bob": "bob"}, import_aliases=True)]
    alone = map_routing(source, rules)
    assert alone.domains["example.com"].aliases["staff"] == ("&bob@example.net",)
    plan = map_routing(source, rules, unwritten={"example.net"})
    assert plan.domains["example.com"].aliases["staff"] == ("&alice@example.com",
                                                            "&bob@example.net")
    assert not [f for f in plan.findings if "not listed again" in f.message]


def test_a_long_chain_of_aliases_through_full_addresses_is_walked_without_recursion():
    """3,000 aliases each forwarding to the next by full address (lists of lists, as a
    large site's aliases file chains them): the loop search walked them recursively and
    the plan died with RecursionError past Python's limit of 1,000 frames. Without a
    loop there is no warning; closing the chain gives one."""
    chain = "".join(f"n{k}: n{k + 1}@example.com\n" for k in range(3000)) + "n3000: alice\n"
    rules = [DomainRules("example.com", COM, import_aliases=True)]
    plan = map_routing(SourceRouting(aliases=(parse_aliases(chain, "/etc/aliases"),)), rules)
    assert not [f for f in plan.warnings if "loop" in f.message]
    looped = chain.replace("n3000: alice\n", "n3000: n0@example.com\n")
    plan = map_routing(SourceRouting(aliases=(parse_aliases(looped, "/etc/aliases"),)), rules)
    loops = [f.message for f in plan.warnings if "loop" in f.message]
    assert len(loops) == 1 and loops[0].startswith(
        "alias loop on vpopmail: alias n0@example.com -> alias n1@example.com -> "), loops
    assert loops[0].count(" -> ") == 3001


def test_an_entry_deeper_than_max_alias_recursion_is_not_carried_over():
    """sendmail refuses an address reached through more aliases than MaxAliasRecursion
    (10 by default), "554 aliasing/forwarding loop broken". A local chain n0 -> n1 ->
    ... -> n12 -> alice reaches n11 11 aliases deep from n0 (and alice 13): that mail
    bounced, so n0's entry is not carried over (and n0, left with nothing, is not
    created), while n3, from which alice is 10 deep, delivers. The resolver followed any
    depth, recursively, and a chain of about 330 killed the plan with RecursionError."""
    rules = [DomainRules("example.com", COM, import_aliases=True)]

    def plan(length: int, depth: int = 10):
        chain = "".join(f"n{k}: n{k + 1}\n" for k in range(length)) + f"n{length}: alice\n"
        return map_routing(SourceRouting(aliases=(parse_aliases(chain, "/etc/aliases"),),
                                         max_alias_recursion=depth), rules)

    got = plan(12)
    aliases = got.domains["example.com"].aliases
    assert [n for n in ("n0", "n1", "n2", "n3", "n12") if n in aliases] == ["n3", "n12"]
    assert aliases["n3"] == ("&alice@example.com",)
    deep = [f for f in got.warnings if "MaxAliasRecursion" in f.message]
    assert [f.message.split(":")[0] for f in deep] == ["alias n0", "alias n1", "alias n2"]
    assert deep[0].message.startswith(
        "alias n0: an entry reached through 'n10' is 11 aliases deep, past sendmail's "
        "MaxAliasRecursion (10): sendmail bounced mail to it (554 aliasing/forwarding "
        "loop broken); it is not carried over")
    assert deep[0].origin == Origin("/etc/aliases", 11)  # n10's line: its entry
    # sendmail.cf's own setting counts; past mailplan's own limit a note says so
    assert "n0" in plan(12, depth=13).domains["example.com"].aliases
    assert "n0" not in plan(12, depth=12).domains["example.com"].aliases
    long = plan(300, depth=5000)
    assert "n201" in long.domains["example.com"].aliases  # alice 100 deep
    assert "n200" not in long.domains["example.com"].aliases
    assert any("sets MaxAliasRecursion to 5000; mailplan follows aliases at most 100 deep"
               in f.message for f in long.findings)
    assert not any("sets MaxAliasRecursion" in f.message  # mailplan's own limit: no note
                   for f in plan(3, depth=100).findings)


@pytest.mark.parametrize(("limit", "delivered"), [(3, True), (2, False)])
def test_each_include_file_is_one_alias_level_as_in_sendmail(limit, delivered):
    """sendmail's include() hands a file's entries on one alias level deeper than its
    ``:include:`` line: ``team: :include:/l0``, /l0 holding ``:include:/l1``, /l1
    holding ``bob`` puts bob 3 levels below team (alias, file, file); mailplan, which
    reads the files into the alias beforehand, counted 1 and carried bob over whatever
    MaxAliasRecursion said."""
    files = {"/l0": b":include:/l1\n", "/l1": b"bob\n"}
    aliases = resolve_includes(parse_aliases("team: :include:/l0, alice\n", "/etc/aliases"),
                               files.get)
    plan = map_routing(SourceRouting(aliases=(aliases,), max_alias_recursion=limit),
                       [DomainRules("example.com", COM, import_aliases=True)])
    lines = plan.domains["example.com"].aliases["team"]
    assert ("&robert@example.com" in lines) is delivered and "&alice@example.com" in lines
    deep = [f.message for f in plan.warnings if "MaxAliasRecursion" in f.message]
    assert deep == ([] if delivered else [
        "alias team: an entry reached through 'team' is 3 aliases deep, past sendmail's "
        "MaxAliasRecursion (2): sendmail bounced mail to it (554 aliasing/forwarding loop "
        "broken); it is not carried over"])


def test_mailboxes_whose_source_routing_the_spec_leaves_out_are_set_aside():
    """A forward mailplan wrote for such a mailbox is not one the source dropped: the
    plan must not undo it as "the source no longer forwards it" (integrate)."""
    aliases = parse_aliases("carol: carol@elsewhere.example\nstaff: alice\n", "/etc/aliases")
    forwards = {"alice": parse_forward("alice@home.example\n", "/home/alice/.forward",
                                       "alice")}
    source = SourceRouting(aliases=(aliases,), forwards=forwards)
    mailboxes = {"alice": "alice", "carol": "carol", "dave": "dave"}

    def aside(**rules) -> frozenset[str]:
        plan = map_routing(source, [DomainRules("example.com", mailboxes, **rules)])
        return plan.domains["example.com"].set_aside

    assert aside(import_aliases=True) == frozenset()
    assert aside(import_aliases=False) == {"carol"}  # its alias is not imported
    assert aside(import_aliases=True, exclude=("carol",)) == {"carol"}
    assert aside(import_aliases=True, include=("staff",)) == {"carol"}
    assert aside(import_aliases=True, import_forwards=False) == set(mailboxes.values())
