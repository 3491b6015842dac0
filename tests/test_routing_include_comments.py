"""``#@#`` comments in ~/.forward and :include: files, read as sendmail reads them.

sendmail's include() ends a line at a ``#@#`` that follows a blank and ends the line or
precedes a blank. What Debian's sendmail 8.17.1.9 delivered to (``sendmail -bv`` on an
alias ``list: :include:FILE`` holding the lines below): alice, bob, carol, dave and
fred; ``eve #comment`` and ``x#@# y`` went to local users of those odd names (which do
not exist: such an entry bounced), so mailplan leaves them out as no address.
"""

from __future__ import annotations

import pytest

from mailplan.routing.aliases import parse_include, parse_listed
from mailplan.routing.forward import parse_forward
from mailplan.routing.model import Origin, RoutingError

MEASURED = (b"alice, bob #@# a comment\ncarol #@#\ndave, #@# x\neve #comment\nx#@# y\n"
            b" #@# only\nfred\t#@#\tz\n")


def test_what_follows_a_hash_at_hash_is_a_comment_as_sendmail_reads_it():
    bad: list[Origin] = []
    got = [str(t) for t in parse_include(MEASURED, "/etc/mail/list", bad)]
    assert got == ["alice", "bob", "carol", "dave", "fred"]
    assert [o.line for o in bad] == [4, 5]


def test_a_forward_keeps_the_address_before_its_comment():
    forward = parse_forward(b"bob@home.example #@# my home address\n", "/home/bob/.forward",
                            "bob")
    assert [str(t) for t in forward.targets] == ["bob@home.example"]
    assert forward.bad == ()


def test_an_include_file_with_such_comments_is_read_not_refused():
    assert [str(t) for t in parse_listed(b"alice #@# team lead\nbob\n", "/etc/mail/team")] \
        == ["alice", "bob"]
    # a hash without its blank before is no comment: still refused in an :include: file
    with pytest.raises(RoutingError, match="^/etc/mail/team:1: not an address list"):
        parse_listed(b"alice#@# team lead\n", "/etc/mail/team")
