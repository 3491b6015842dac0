"""Queue file parsers against the bytes recorded (od -c) from a real notqmail queue."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from queue_builder import od_block, od_bytes, recorded

from mailplan.queue import formats, headerfields
from mailplan.queue.dump import DumpFormatError, parse_dump
from mailplan.queue.headerfields import first_fields, unfolded

T01 = "01-inject-and-todo-state.md"
T02 = "02-preprocessed-state.md"


def od_file(name: str, command: str) -> bytes:
    return od_bytes(recorded(name, command))


def find_od(cmd_id: str, path: str) -> bytes:
    command = (f"for d in info local remote; do f=$(find /var/qmail/queue/$d -name {cmd_id}); "
               '[ -n "$f" ] && { echo "== $f"; od -c $f; }; done')
    return od_block(T02, command, path)


def test_od_reader_gives_the_recorded_lengths():
    data = od_file(T01, "od -c /var/qmail/queue/todo/1474861")
    assert len(data) == 0o71 == 57  # od's last offset, and ls -la's size of todo/1474861


def test_todo_envelope():
    env = formats.parse_envelope(od_file(T01, "od -c /var/qmail/queue/todo/1474861"))
    assert env == formats.Envelope(0, 32421, "sender1@remote.example.net", ("alice@example.com",))


def test_todo_envelope_with_empty_sender():
    env = formats.parse_envelope(od_file(T01, "od -c /var/qmail/queue/todo/1475301"))
    assert env.sender == ""
    assert env.recipients == ("original-sender@remote.example.net",)
    assert env.pid == 32610


def test_info_file():
    data = od_block(T02, "f=$(find /var/qmail/queue/info -name 1475269); echo $f; od -c $f",
                    "/var/qmail/queue/info/3/1475269")
    assert formats.parse_info(data) == "sender6@remote.example.net"


def test_local_file_keeps_the_virtualdomains_prefix():
    data = od_block(T02, "f=$(find /var/qmail/queue/local -name 1475269); echo $f; od -c $f",
                    "/var/qmail/queue/local/3/1475269")
    assert formats.parse_recipients(data) == [("bulk.example-user250@bulk.example", False)]
    assert formats.plain_local("bulk.example-user250@bulk.example") == "user250@bulk.example"


def test_remote_file_with_two_recipients():
    command = ("f=$(find /var/qmail/queue/remote -name 1475297); echo $f; od -c $f; "
               "f=$(find /var/qmail/queue/info -name 1475297); echo $f; od -c $f")
    remote = od_block(T02, command, "/var/qmail/queue/remote/8/1475297")
    assert formats.parse_recipients(remote) == [("postmaster@localhost.localhost", False),
                                                ("root@localhost.localhost", False)]
    info = od_block(T02, command, "/var/qmail/queue/info/8/1475297")
    assert formats.parse_info(info) == "sender10@remote.example.net"


def test_newsletter_local_and_remote():
    command = ("for d in info local remote mess; do f=$(find /var/qmail/queue/$d -name 1475299); "
               'echo "== $f"; [ $d = mess ] && head -5 $f || od -c $f; done')
    local = formats.parse_recipients(od_block(T02, command, "/var/qmail/queue/local/10/1475299"))
    remote = formats.parse_recipients(
        od_block(T02, command, "/var/qmail/queue/remote/10/1475299"))
    assert len(local) == len(remote) == 6
    assert local[0] == ("example.com-alice@example.com", False)
    assert remote[-1] == ("a6@remote3.example.com", False)
    assert formats.parse_info(od_block(T02, command, "/var/qmail/queue/info/10/1475299")) == \
        "news@remote.example.net"


def test_bounce_and_double_bounce_senders():
    assert find_od("1475301", "/var/qmail/queue/info/12/1475301") == b"F\0"
    assert formats.parse_info(find_od("1475301", "/var/qmail/queue/info/12/1475301")) == ""
    assert formats.parse_info(find_od("1475305", "/var/qmail/queue/info/16/1475305")) == "#@[]"
    assert formats.parse_recipients(find_od("1475305", "/var/qmail/queue/local/16/1475305")) \
        == [("postmaster@localhost", False)]
    assert {"", "#@[]"} == formats.BOUNCE_SENDERS


def test_done_recipients():
    data = b"Texample.com-alice@example.com\0Dexample.com-bob@example.com\0"
    assert formats.parse_recipients(data) == [("example.com-alice@example.com", False),
                                              ("example.com-bob@example.com", True)]


def test_mess_headers_as_recorded():
    text = recorded(T01, "M=$(find /var/qmail/queue/mess -name 1474861); head -12 $M")
    headers = list(unfolded(text.encode()))
    assert headers[0] == ("Received", "(qmail 32421 invoked by uid 0); 28 Nov 2026 15:46:34 -0000")
    assert formats.header(headers, "subject") == "local 1: to alice"
    assert formats.header(headers, "From") == "Sender One <sender1@remote.example.net>"
    assert "Hello" not in " ".join(v for _, v in headers)  # the body is not a header


def test_encoded_words_are_decoded():
    assert formats.decoded("=?UTF-8?Q?Gr=C3=BC=C3=9Fe?=") == "Grüße"
    assert formats.decoded("=?UTF-8?B?SsO8cmdlbg==?= <juergen@remote.example.net>") == \
        "Jürgen <juergen@remote.example.net>"
    assert formats.decoded("=?bogus?Q?x?=") == "=?bogus?Q?x?="


def test_folded_header():
    headers = list(unfolded(b"Subject: a\n  b\nFrom: x\n\nbody: no\n"))
    assert headers == [("Subject", "a b"), ("From", "x")]


def test_only_some_headers():
    # a folded line of a header left out stays with it, even one that looks like a header
    block = (b"Received: from a\n\tSubject: not one\nSUBJECT: a\n  b\nX-Report: c\n"
             b"\tFrom: neither\nFrom: x\n\nTo: body\n")
    assert first_fields(block, frozenset({"subject", "from", "to"})) == \
        [("SUBJECT", "a b"), ("From", "x")]
    assert len(list(unfolded(block))) == 4


def test_first_fields_keep_the_first_of_each_and_cap_it():
    block = (b"Received: x\nsubject: one\n\ttwo\nSubject: second\nTo: " + b"a" * 5000 +
             b"\nnot a header line\n and its continuation\nFrom: f\n\nCc: body\n")
    fields = headerfields.first_fields(block, frozenset({"subject", "from", "to", "cc"}))
    to = "a" * (headerfields.FIELD_LIMIT - len(headerfields.CUT)) + headerfields.CUT
    assert fields == [("subject", "one two"), ("To", to), ("From", "f")]
    assert len(to) == headerfields.FIELD_LIMIT


@pytest.mark.parametrize("breaker", ["\x0c", "\x0b", "\x1c", "\x85", "\u2028"])
def test_only_a_newline_ends_a_header_line(breaker):
    """str.splitlines cut a header at a form feed, NEL, U+2028...: a Subject carrying one
    forged the From list shows and delete --match from looks at, and two of them made an
    empty line that hid every header after it."""
    names = frozenset({"subject", "from", "to"})
    forged = (f"Subject: hi{breaker}From: ceo@company.example\nFrom: spam@bad.example\n"
              "To: a@example.com\n\nbody").encode()
    assert headerfields.first_fields(forged, names) == [
        ("Subject", f"hi{breaker}From: ceo@company.example"), ("From", "spam@bad.example"),
        ("To", "a@example.com")]
    hiding = f"Subject: hi{breaker}{breaker}x\nFrom: spam@bad.example\n\n".encode()
    assert ("From", "spam@bad.example") in headerfields.first_fields(hiding, names)
    # CRLF lines, and the empty line that ends the block, as before
    crlf = b"Subject: a\r\n b\r\nFrom: f\r\n\r\nTo: body\r\n"
    assert headerfields.first_fields(crlf, names) == [("Subject", "a b"), ("From", "f")]


def _old_parse_headers(block: bytes, only: frozenset[str]) -> list[tuple[str, str]]:
    """formats.parse_headers as it was before the agent picked the fields out (the
    semantics list and the filters were written against), its lines ended by LF only
    (see test_only_a_newline_ends_a_header_line)."""
    headers: list[tuple[str, str]] = []
    kept = None
    for line in block.decode("utf-8", "backslashreplace").split("\n"):
        line = line.removesuffix("\r")
        if not line:
            break
        if line[0] in " \t" and kept is not None:
            if kept:
                name, value = headers[-1]
                headers[-1] = (name, f"{value} {line.strip()}")
        elif ":" in line:
            name, _, value = line.partition(":")
            kept = only is None or name.strip().lower() in only
            if kept:
                headers.append((name.strip(), value.strip()))
    return headers


HEADER_TOKENS = [b"Subject:", b"sUBJECT :", b" Subject: x", b"From:", b"To:", b"Cc:", b"X-A:",
                 b"=?UTF-8?Q?Gr=C3=BC=C3=9Fe?=", b"\xff\xfe", b"\xc3\xbc", b"\r", b"\r\n",
                 b"\x0c", b"\x1c", b"\xc2\x85", b"\xe2\x80\xa8", b"x" * 700]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(HEADER_TOKENS + [b"\n", b" ", b"\t", b":"]),
                          st.binary(max_size=5)), max_size=40).map(b"".join))
def test_fields_sent_by_the_agent_read_as_the_whole_block(block):
    """The fields the agent sends (headerfields.fields_block) give mailplan what the
    whole header block gave it: the first Subject, From, To and Cc as parse_headers read
    them (raw: RFC 2047 decoding is left to mailplan), only without spaces at their ends
    and cut past FIELD_LIMIT."""
    names = frozenset({"subject", "from", "to", "cc"})
    whole = _old_parse_headers(block, names)
    fields = headerfields.first_fields(block, names)
    sent = headerfields.first_fields(headerfields.fields_block(fields), names)
    assert sent == fields
    for name in ("Subject", "From", "To", "Cc"):
        before, after = formats.header(whole, name), formats.header(sent, name)
        assert after == (None if before is None else headerfields.capped(before.strip()))


@pytest.mark.parametrize("parser,data", [
    (formats.parse_info, b"Fsender"),  # no NUL
    (formats.parse_info, b"Xsender\0"),
    (formats.parse_info, b"\0Fb\0"),
    (formats.parse_recipients, b"Xbob@example.com\0"),
    (formats.parse_recipients, b"Ta@example.com\0Xbob@example.com\0Tc@example.com\0"),
    (formats.parse_envelope, b"u0\0p1\0Tbob@example.com\0"),  # no sender
    (formats.parse_envelope, b"u0\0p1\0Fa\0Qx\0"),
])
def test_malformed_files_are_refused(parser, data):
    with pytest.raises(formats.FormatError):
        parser(data)


def test_printable_strips_terminal_escapes():
    assert formats.printable("ok\x1b[31mred\x07") == "ok_[31mred_"


def test_plain_local_leaves_other_addresses():
    assert formats.plain_local("alias-postmaster@localhost") == "alias-postmaster@localhost"
    assert formats.plain_local("friend@remote.example.net") == "friend@remote.example.net"
    assert formats.plain_local("example.com-UPPERCASE@EXAMPLE.COM") == "UPPERCASE@EXAMPLE.COM"


def test_dump_parser():
    body = b"Fa@b\0"
    record = b"E f 600 7 1 99 1 5 1000 1000000000123 qmails qmail 9 5 1500\ninfo/3/99" + body
    dump = parse_dump(b"H 1 1 1 0 2000\nU qmails 7\nG qmail 1\n" + record, "/q")
    entry = dump.entries["info/3/99"]
    assert (entry.mode, entry.owner, entry.inode, entry.data) == (0o600, "qmails", 99, body)
    assert (entry.mtime, entry.atime, entry.touched) == (1000, 1500, 1500)
    assert dump.status == 0 and dump.now == 2000 and dump.users == {"qmails": 7}


@pytest.mark.parametrize("data", [
    b"",
    b"hello\n",
    b"H 1 1 1 - 2000\nE f 600 7 1 99 1 5 1000 1000 qmails qmail 10 50 1000\ninfo/3/99Fa@b\0",
    b"H 1 1 1 - 2000\nX what\n",
])
def test_dump_parser_refuses_garbage(data):
    with pytest.raises(DumpFormatError):
        parse_dump(data, "/q")
