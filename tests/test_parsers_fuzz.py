"""Fuzz tests: every parser of bytes that come from a host (source files, program
output, the queue agent's dump) answers arbitrary input with a result or with its own
clear error, never with an unrelated exception (IndexError, UnicodeDecodeError, ...).

Inputs are drawn from each format's own tokens mixed with arbitrary bytes, so they
reach deep into the parsers rather than failing at the first byte.
"""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailplan.errors import MailplanError
from mailplan.facts.source import parse_passwd, parse_shadow
from mailplan.facts.survey import parse_find, parse_local_names, parse_sendmail_cf
from mailplan.facts.vpopmail import parse_vdominfo_nd, parse_vuserinfo
from mailplan.queue.dump import parse_dump
from mailplan.queue.formats import FormatError, parse_envelope, parse_info, parse_recipients
from mailplan.routing.aliases import parse_aliases, parse_include
from mailplan.routing.facts import (
    parse_alias_domains,
    parse_dot_qmail,
    parse_qmail_default,
    parse_valias_list,
    parse_vdominfo,
)
from mailplan.routing.forward import parse_forward
from mailplan.routing.sendmailcf import max_alias_recursion, parse_alias_files, plus_detail_rule
from mailplan.routing.virtusertable import parse_virtusertable
from mailplan.text import has_control

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def doc(tokens: list[bytes]) -> st.SearchStrategy[bytes]:
    """Documents made of a format's tokens, separators and arbitrary bytes."""
    return st.lists(st.one_of(st.sampled_from(tokens + [b"\n", b" ", b"\t", b":", b"\0",
                                                         b"\r\n", b"\\\n", b"#", b","]),
                              st.binary(max_size=8)), max_size=40).map(b"".join)


def text(tokens: list[bytes]) -> st.SearchStrategy[str]:
    return doc(tokens).map(lambda b: b.decode("utf-8", "replace"))


@FUZZ
@given(doc([b"root:x:0:0:root:/root:/bin/bash", b"alice", b"x", b"1000", b"/home/a", b"+",
            b"-", b"::::", b"\xc3\xa9", b"$6$salt$hash", b"!", b"*"]))
def test_passwd_and_shadow(data):
    for parse in (parse_passwd, parse_shadow):
        try:
            parse(data, host="old", path="/etc/x")
        except MailplanError as exc:
            assert "/etc/x" in str(exc)


@FUZZ
@given(doc([b"postmaster: root", b"alice:", b"\"quoted name\": x", b":include:/etc/l",
            b"|/usr/bin/prog", b"/var/mail/file", b"\"|quoted prog\"", b"a@b.example",
            b"error:5.1.1 no", b"  continued", b"\\alice", b"owner-list: x"]))
def test_aliases_include_and_forward(data):
    for parse in (lambda d: parse_aliases(d, "/etc/aliases"),
                  lambda d: parse_include(d, "/etc/aliases"),
                  lambda d: parse_forward(d, "/etc/aliases", "alice")):
        try:
            parse(data)
        except MailplanError as exc:
            assert "/etc/aliases" in str(exc)


@FUZZ
@given(doc([b"alice@a.example", b"@a.example", b"bob", b"%1", b"+*@a.example",
            b"error:nouser 550 No such user", b"a@b.example c@d.example", b"bob@x"]))
def test_virtusertable(data):
    try:
        parse_virtusertable(data, "/etc/mail/virtusertable")
    except MailplanError as exc:
        assert "virtusertable" in str(exc)


@FUZZ
@given(text([b"Cw", b"Fw", b"Fw/etc/mail/local-host-names", b"Cwa.example b.example",
             b"Fw-o /etc/mail/x", b"Fw|/bin/prog", b"host.example", b"DMx"]))
def test_class_w_sources(data):
    parse_local_names(data, "/etc/mail/local-host-names")
    parse_sendmail_cf(data, "/etc/mail/sendmail.cf")


@FUZZ
@given(text([b"O AliasFile=", b"OA", b"o aliasfile = ", b"/etc/mail/aliases", b",", b":",
             b"hash:", b"nis:mail.aliases", b"-o ", b"-k ", b'"', b"ldap:-v x", b"\t",
             b"R$+ + $*\t\t$#local $@ + $2 $: $1 + *", b"R< > $+ + *\t$#local", b"S5",
             b" # c, /etc/x", b"\\#", b"$#", b"\n\t", b"\0", b"O MaxAliasRecursion=",
             b"12", b"-3", b" "]))
def test_sendmail_cf_alias_files_and_plus_rule(data):
    for db in parse_alias_files(data, "/etc/mail/sendmail.cf"):
        assert db.readable == (db.path is not None and db.path.startswith("/")
                               and not has_control(db.path))
    plus_detail_rule(data, "/etc/mail/sendmail.cf")
    assert max_alias_recursion(data) >= 0


@FUZZ
@given(doc([b"/home/a", b"mail/x", b"123", b"abc", b"\0\0"]))
def test_find_output(data):
    parse_find(data)


@FUZZ
@given(text([b"name: alice", b"passwd: x", b"uid: 89", b"gid: 89", b"gecos: A",
             b"dir: /home/vpopmail/domains/a/alice", b"quota: NOQUOTA", b"usage: 0%",
             b"clear passwd: x", b"flags: 0", b"last auth: Never", b"", b"domain: a.example",
             b"a.example", b"/home/vpopmail/domains/a.example", b"alias: b.example"]))
def test_vpopmail_program_output(data):
    for parse in (parse_vuserinfo, parse_vdominfo_nd):
        # read_target turns a ValueError into a HostError naming the host and command
        with contextlib.suppress(ValueError):
            parse(data)


@FUZZ
@given(text([b"alice@a.example -> bob@b.example", b"alice -> &bob", b"a.example",
             b"domain: a.example", b"uid: 89", b"gid: 89", b"dir: /d", b"| /bin/vdelivermail",
             b"'' bounce-no-mailbox", b"delete", b"&alice", b"./Maildir/", b"#comment"]),
       st.integers(min_value=0, max_value=2))
def test_vpopmail_routing_output(data, code):
    for parse in (lambda: parse_valias_list(data, code), lambda: parse_vdominfo(data)):
        with contextlib.suppress(MailplanError):
            parse()
    parse_alias_domains(data)
    parse_qmail_default(data, "a.example")
    parse_dot_qmail(data)


@FUZZ
@given(doc([b"Fsender@a.example\0", b"Trcpt@b.example\0", b"Dx@y\0", b"u1000\0", b"p123\0",
            b"F\0", b"\0\0"]))
def test_queue_files(data):
    for parse in (parse_envelope, parse_info, parse_recipients):
        with contextlib.suppress(FormatError):
            parse(data)


field_st = st.sampled_from([b"1", b"0", b"-", b"644", b"201", b"x", b"-5", b"8x", b"", b"f",
                            b"qmailq", b"99999999999999999999"])


def record_st(kind: bytes, fields: int) -> st.SearchStrategy[bytes]:
    return st.tuples(st.lists(field_st, min_size=fields - 2, max_size=fields + 1),
                     st.binary(max_size=12)).map(
        lambda t: kind + b" " + b" ".join(t[0]) + b"\n" + (t[1] if kind == b"E" else b""))


@FUZZ
@given(st.tuples(record_st(b"H", 6), st.lists(st.one_of(
    record_st(b"U", 3), record_st(b"G", 3), record_st(b"E", 13), st.binary(max_size=6)),
    max_size=6)).map(lambda t: t[0] + b"".join(t[1])))
def test_queue_dump(data):
    """The queue agent's dump, mangled field by field (a record of the right shape with
    a number that is not one, a negative length, a truncated record)."""
    with contextlib.suppress(MailplanError):
        parse_dump(data, "/var/qmail/queue")


# -- the migration spec ---------------------------------------------------------------
ODD_VALUES = [None, "", 0, -1, 10**30, 1.5, True, [], {}, "x" * 300, "../..", "a b",
              "ünï", "\x07", {"env": 5}, {"file": ""}, {"env": "MAILPLAN_FUZZ_UNSET"},
              ["list-*", 3], {"uid_min": "a"}, "1Q", "-5M", "bounce"]


def _paths(node: object, at: tuple = ()) -> list[tuple]:
    """Every key path into a YAML tree (mappings and lists)."""
    out = [at]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, at + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, at + (i,))
    return out


def _mutated(tree: object, path: tuple, value: object, delete: bool) -> object:
    import copy

    tree = copy.deepcopy(tree)
    if not path:
        return value
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return tree


def test_a_mangled_spec_is_refused_with_its_file_or_accepted(tmp_path, monkeypatch):
    """The example spec with each of its nodes in turn replaced by each odd value, or
    deleted: loading it and building the desired state from a source either works or
    raises the spec's own error naming the file (never a KeyError or TypeError from
    deep inside). Exhaustive: about 1,000 specs."""
    from pathlib import Path

    import yaml

    from mailplan.desired import build_desired
    from mailplan.facts.source import SourceFacts, build_accounts
    from mailplan.spec import load_spec

    monkeypatch.setenv("EXAMPLE_PM_PASSWORD", "Fuzz-pw-1")  # the example's secret
    monkeypatch.delenv("MAILPLAN_FUZZ_UNSET", raising=False)
    example = yaml.safe_load(
        (Path(__file__).parent.parent / "examples/migration.yaml").read_text())
    passwd = parse_passwd(b"root:x:0:0::/root:/bin/sh\nbob:x:1000:1000:B:/home/bob:/bin/sh\n",
                          host="old", path="/etc/passwd")
    shadow = parse_shadow(b"root:*:1:0:99999:7:::\nbob:$1$s$h:1:0:99999:7:::\n",
                          host="old", path="/etc/shadow")
    source = SourceFacts("old", "/etc/passwd", "/etc/shadow", build_accounts(passwd, shadow))
    spec_file = tmp_path / "fuzz.yaml"
    outcomes = {"accepted": 0, "refused": 0}
    for path in _paths(example):
        for value, delete in [(v, False) for v in ODD_VALUES] + [(None, True)] * bool(path):
            spec_file.write_text(yaml.safe_dump(_mutated(example, path, value, delete)))
            try:
                build_desired(load_spec(spec_file), source)
                outcomes["accepted"] += 1
            except MailplanError as exc:
                assert "fuzz.yaml" in str(exc), (path, value, delete, str(exc))
                outcomes["refused"] += 1
    # (a control character in a comment or an exclude pattern is refused since the spec
    # checks every string of a domain, and an empty comment or a quota past what
    # vpopmail stores since vpopmail's own limits are checked: 97 are accepted)
    assert outcomes["accepted"] >= 90 and outcomes["refused"] > 100, outcomes
