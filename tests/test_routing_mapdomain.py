"""Pin branches of the per-domain mapping (:mod:`mailplan.routing.mapdomain`,
:mod:`mailplan.routing.catchall`) that the table tests of test_routing_mapping.py do not
reach: what each says and maps, as it is."""

from __future__ import annotations

import pytest

from mailplan.routing.aliases import parse_aliases, resolve_includes
from mailplan.routing.mapping import map_routing
from mailplan.routing.model import Origin, RoutingError
from mailplan.routing.rules import CatchAll, DomainRules, ExplicitAlias, SourceRouting
from mailplan.routing.virtusertable import parse_virtusertable

COM = {"alice": "alice", "bob": "robert", "carol": "carol"}


def _told(plan) -> list[tuple[str, str, str]]:
    return [(f.severity, str(f.origin), f.message) for f in plan.findings]


def test_an_entry_resolving_to_nothing_without_a_warning_of_its_own_gets_one():
    """An :include: of a file with no address resolves to nothing and says nothing: the
    entry gets a warning of its own saying where its mail goes."""
    aliases = resolve_includes(parse_aliases(
        "team: :include:/etc/mail/empty\ncarol: :include:/etc/mail/empty\n", "/etc/aliases"),
        lambda _path: b"# nobody yet\n")
    plan = map_routing(SourceRouting(aliases=(aliases,)),
                       [DomainRules("example.com", COM, import_aliases=True)])
    routing = plan.domains["example.com"]
    assert (routing.aliases, routing.forwards, routing.origins) == ({}, {}, {})
    assert _told(plan)[:2] == [
        ("warning", "/etc/aliases:1", "alias 'team' resolves to nothing; no alias 'team' is "
         "created, so mail to team@example.com goes to the domain's catch-all: bounce mail "
         "for unknown recipients"),
        ("warning", "/etc/aliases:2", "alias 'carol' resolves to nothing; carol is a mailbox "
         "on vpopmail, so mail to carol@example.com is delivered to its mailbox, where "
         "sendmail did not deliver it")]


def test_virtusertable_substitutions_and_a_spec_alias_replacing_an_imported_one():
    """``%1`` in a ``user@domain`` line is that user; any other substitution has no
    equivalent. The spec's alias replaces the one imported, with a note naming its line."""
    vt = ("info@example.com\t%1@x.example\nhelp@example.com\t%1@x.example\n"
          "sales@example.com\t%2@x.example\n")
    source = SourceRouting(virtusertable=parse_virtusertable(vt, "/etc/vt"))
    spec = ExplicitAlias("Info", ("robert",), Origin("mailplan.yaml", 7))
    plan = map_routing(source, [DomainRules("example.com", COM, aliases=(spec,))])
    routing = plan.domains["example.com"]
    assert routing.aliases == {"info": ("&robert@example.com",),
                               "help": ("&help@x.example",)}
    assert routing.origins == {"info": Origin("mailplan.yaml", 7),
                               "help": Origin("/etc/vt", 2)}
    assert _told(plan)[:2] == [
        ("warning", "/etc/vt:3", "virtusertable sales@example.com: %2@x.example uses a "
         "substitution with no equivalent here"),
        ("note", "mailplan.yaml:7", "alias 'info' from the spec replaces the one imported "
         "from /etc/vt:1")]


def test_a_spec_alias_replacing_an_imported_one_drops_its_broken_loops():
    """The imported ``staff`` hands its mail to bob's .qmail (a loop broken at bob), so it
    does not list alice again; the spec's ``staff`` replacing it lists what it says."""
    d = "example.com"
    source = SourceRouting(aliases=(parse_aliases("staff: alice, bob\nbob: staff\n",
                                                  "/etc/aliases"),))
    mailboxes = {"alice": "alice", "bob": "bob"}
    imported = map_routing(source, [DomainRules(d, mailboxes, import_aliases=True)])
    assert imported.domains[d].aliases["staff"] == (f"&bob@{d}",)
    spec = ExplicitAlias("staff", ("alice", f"bob@{d}"), Origin("mailplan.yaml", 3))
    plan = map_routing(source, [DomainRules(d, mailboxes, import_aliases=True,
                                            aliases=(spec,))])
    assert plan.domains[d].aliases["staff"] == (f"&alice@{d}", f"&bob@{d}")
    assert plan.domains[d].forwards["bob"] == (f"&alice@{d}", "./Maildir/")
    assert not any("not listed again" in f.message for f in plan.findings), plan.findings


def test_a_spec_catch_all_forwarding_to_no_full_address_is_refused():
    rules = DomainRules("example.com", COM, origin=Origin("mailplan.yaml", 2),
                        catch_all=CatchAll("forward-to-address", "alice"))
    with pytest.raises(RoutingError, match="catch-all of example.com: forward needs a full "
                                           "address, not 'alice'") as raised:
        map_routing(SourceRouting(), [rules])
    assert raised.value.origin == Origin("mailplan.yaml", 2)


def test_a_virtusertable_catch_all_to_several_destinations_bounces():
    vt = ("alice@example.com\talice\ncarol@example.com\tcarol\nrobert@example.com\tbob\n"
          "@example.com\tstaff\n")
    source = SourceRouting(aliases=(parse_aliases("staff: alice, carol\n", "/etc/aliases"),),
                           virtusertable=parse_virtusertable(vt, "/etc/vt"))
    plan = map_routing(source, [DomainRules("example.com", COM)])
    assert plan.domains["example.com"].catch_all == CatchAll("bounce")
    assert _told(plan) == [
        ("warning", "/etc/vt:4", "virtusertable @example.com: the catch-all expands to 2 "
         "destinations; vdelivermail forwards to one address. Unknown recipients bounce "
         "instead"),
        # the mailboxes' lines took NAME+DETAIL@example.com on sendmail, not vpopmail
        ("caution", "/etc/vt:1", "sendmail delivered NAME+DETAIL@example.com by the "
         "virtusertable line NAME@example.com, for NAME alice, carol, robert (its "
         "virtusertable lookup tries NAME@DOMAIN for NAME+DETAIL@DOMAIN, with or without a "
         "plussed-users rule); qmail and vpopmail split an address extension only at '-', "
         "so on vpopmail NAME+DETAIL@example.com is no mailbox nor alias and goes to the "
         "domain's catch-all: bounce mail for unknown recipients: tell the users who hand "
         "out +detail addresses")]


@pytest.mark.parametrize(("aliases", "vt", "went", "mailboxes"), [
    ("robert: carol\n", "", "carol@example.com", COM),
    ("robert: bob, carol@remote.example\n", "", "robert's mailbox, carol@remote.example",
     COM),
    ("", "robert@example.com\tcarol\n", "carol@example.com", COM),
    # the source's own robert is migrated as bert: the alias was never bob's either
    ("robert: carol\n", "", "carol@example.com", {**COM, "robert": "bert"}),
])
def test_a_source_alias_named_like_a_renamed_users_new_name_is_not_its_qmail(
        aliases, vt, went, mailboxes):
    """bob is migrated as robert, and the source has an alias (or virtusertable line)
    ``robert``: on sendmail it took only mail for robert@, never bob's. As the mailbox's
    own .qmail it would take all of the mailbox's mail (bob's, and what ``staff``
    delivers to bob): not carried over, with a warning; the mailbox keeps its mail."""
    source = SourceRouting(
        aliases=(parse_aliases(aliases + "staff: alice, bob\n", "/etc/aliases"),),
        virtusertable=parse_virtusertable(vt, "/etc/vt") if vt else None)
    plan = map_routing(source, [DomainRules("example.com", mailboxes, import_aliases=True)])
    routing = plan.domains["example.com"]
    assert routing.forwards == {}
    assert routing.aliases == {"staff": ("&alice@example.com", "&robert@example.com")}
    what, origin = ("virtusertable address", "/etc/vt:1") if vt else ("alias", "/etc/aliases:1")
    assert [(s, o, m) for s, o, m in _told(plan) if s == "warning"] == [
        ("warning", origin, f"{what} 'robert' is not carried over: robert is the mailbox "
         "bob is migrated as, and as its .qmail it would take all of that mailbox's mail "
         "(bob's own), where sendmail gave it only mail for robert; mail to "
         f"robert@example.com now stays in that mailbox, where sendmail delivered it to "
         f"{went} (forward the mailbox on the target if that is wanted)")]



def test_a_login_migrated_under_its_name_in_lower_case_is_no_rename():
    """Bob migrated as bob is no rename (sendmail looks local names up case-blind): the
    alias ``bob`` took all of Bob's mail on sendmail and becomes the mailbox's .qmail."""
    source = SourceRouting(aliases=(parse_aliases("bob: carol\n", "/etc/aliases"),))
    mailboxes = {"alice": "alice", "Bob": "bob", "carol": "carol"}
    plan = map_routing(source, [DomainRules("example.com", mailboxes, import_aliases=True)])
    assert plan.domains["example.com"].forwards == {"bob": ("&carol@example.com",)}
    assert plan.warnings == ()
