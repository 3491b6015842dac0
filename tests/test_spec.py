"""Spec validation: every error names file, line, column and key, and what was expected."""

from __future__ import annotations

import textwrap
import unicodedata

import pytest

from mailplan.errors import SpecError
from mailplan.spec import load_spec
from mailplan.spec_yaml import parse_yaml

BASE = """\
version: 1
hosts:
  old: {address: old.example.com}
  new: {local: true}
source: {host: old}
target: {host: new}
domains:
  example.com:
    default_quota: 1G
    users:
      - name: alice
"""


def write(tmp_path, text):
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_valid_spec_loads(tmp_path):
    spec = load_spec(write(tmp_path, BASE))
    assert spec.data["domains"]["example.com"]["users"][0]["name"] == "alice"


@pytest.mark.parametrize("text, where, message", [
    (BASE + "bogus: 1\n", ":12:1: bogus: ", "unknown key 'bogus'"),
    (BASE + "        quota: lots\n", ":12:16: domains['example.com'].users[0].quota",
     "expected a size like 500M"),
    (BASE + "        colour: red\n", ":12:9: domains['example.com'].users[0].colour",
     "unknown key 'colour'"),
    (BASE.replace("version: 1", "version: 2"), ":1:10: version", "unsupported spec version 2"),
    # YAML 1.1 reads these unquoted as numbers and dates: the error showed "got 83",
    # "got 750", "got datetime.date(2024, 1, 1)"
    (BASE + "      - name: 0123\n", ":12:15: domains['example.com'].users[1].name",
     "expected text, got 0123, which YAML reads as the number 83: quote it ('0123')"),
    (BASE + "        comment: 12:30\n", ":12:18: domains['example.com'].users[0].comment",
     "expected text, got 12:30, which YAML reads as the number 750: quote it ('12:30')"),
    (BASE + "        comment: 2024-01-01\n", ":12:18:", "expected text, got 2024-01-01, "
     "which YAML reads as a date: quote it ('2024-01-01')"),
    # "unsupported spec version '1'; this mailplan reads version 1" before
    (BASE.replace("version: 1", "version: '1'"), ":1:10: version", "the version is the "
     "number 1, not text (write version: 1, without quotes)"),
    (BASE.replace("version: 1", "version: yes"), ":1:10: version", "unsupported spec "
     "version true (YAML reads yes, no, on, off as true or false); this mailplan reads"),
    (BASE.replace("{host: old}", "{host: nowhere}"), ":5:16: source.host",
     "host 'nowhere' is not defined in hosts"),
    (BASE + "      - name: Alice\n", ":12:15: domains['example.com'].users[1].name",
     "two users map to alice@example.com (the other is at line 11"),
    (BASE + "      - name: 'bad user'\n", ":12:15:", "contains characters vpopmail rejects: ' '"),
    (BASE + "      - name: 'a/../b'\n", ":12:15:", "sub-directory"),
    (BASE + "      - name: postmaster\n", ":12:15:", "postmaster is vpopmail's own account"),
    (BASE + "      - name: bob\n        comment: 'a:b'\n", ":13:18:", "cannot contain ':'"),
    # vmoduser -c '' changes nothing: an empty comment never converges
    (BASE + "      - name: bob\n        comment: ''\n", ":13:18:", "should be non-empty"),
    # vpopmail counts bytes: 40 characters, 80 bytes
    (BASE + "      - name: bob\n        comment: " + "ü" * 40 + "\n", ":13:18:",
     "a comment is at most 64 bytes (vpopmail's limit); this one is 80 in UTF-8"),
    # in units the spec takes: it said "(8E)", and 8E is refused ("expected a size like")
    (BASE + "        quota: 9000000T\n", ":12:16:", "a quota is at most 9223372036854775807 "
     "bytes (a byte under 8388608T), the largest vpopmail stores; use unlimited"),
    (BASE.replace("example.com:", "exa_mple.com:"), ":8:3: domains['exa_mple.com']",
     "is not a domain vpopmail can serve"),
    (BASE.replace("example.com:", "nodot:"), ":8:3:", "at least one dot"),
    (BASE + "  Example.COM: {}\n", ":12:3:", "same as 'example.com'"),
    (BASE.replace("new: {local: true}", "new: {local: true, address: x}"), ":4:8: hosts.new",
     "a host is either {local: true} or an SSH host"),
    (BASE.replace("new: {local: true}", "new: {local: true, python: 'python3; id'}"),
     ":4:30: hosts.new.python", "expected a command name like python3 or an absolute path"),
    (BASE.replace("new: {local: true}", "new: {local: true, python: -c}"), ":4:30:",
     "not starting with -"),
    (BASE + "      - name: bob\n        password: {env: A, hash: b}\n", ":13:19:",
     "expected exactly one of env"),
    (BASE + "      - name: bob\n        password: {hash: '$apr1$x$y'}\n", ":13:26: "
     "domains['example.com'].users[1].password.hash", "this hash cannot be used"),
    (BASE + "    postmaster_password: {hash: 'abc'}\n", ":12:33: "
     "domains['example.com'].postmaster_password.hash", "this hash cannot be used"),
    # the postmaster has no source account: validate crashed (KeyError) on source: true
    (BASE + "    postmaster_password: {source: true}\n", ":12:35: "
     "domains['example.com'].postmaster_password.source", "the postmaster has no account on "
     "the source to take a password from"),
    (BASE + "    unknown_recipients: nowhere\n", ":12:25:", "expected bounce, delete"),
    ("version: 1\nhosts: [\n", ":3:1: hosts: malformed YAML", "malformed YAML"),
    ("version: 1 # \x1b[1m\n", ":1:14: version: malformed YAML",
     "character U+001B is not allowed in YAML"),
    (BASE + "      - name: yes\n", ":12:15: domains['example.com'].users[1].name",
     "expected text, got true (YAML reads yes, no, on, off as true or false)"),
    (BASE + "  no: {}\n", ":12:3: domains", "keys must be strings, got false (YAML reads "
     "yes, no, on, off as true or false) (quote it: 'no':)"),
    (BASE.replace("      - name: alice\n", ""), ":10:11: domains['example.com'].users",
     "expected a list, got nothing (an empty value)"),
    (BASE + "      - name: b\x00ob\n", ":12:16: domains['example.com'].users[1].name: ",
     "character U+0000 is not allowed"),
    (BASE + "  example.com: {}\n", ":12:3: domains['example.com']", "duplicate key"),
    # source.root is a directory of this machine: an SSH source cannot have one
    (BASE.replace("{host: old}", "{host: old, root: /mnt/oldmail}"), ":5:27: source.root",
     "source.root is read on this machine: it needs a source host with local: true ('old' "
     "is reached over SSH)"),
    (BASE.replace("{host: old}", "{host: new, root: mnt/oldmail}"), ":5:27: source.root",
     "does not have the form this key takes"),
    ("", ":1:", "the file is empty"),
    ("# version: 1\n\n  # hosts:\n", ":1:", "the file holds no YAML document, only comments"),
    # the last domain taken out to remove it with --prune: what to do instead
    (BASE.split("domains:")[0] + "domains: {}\n", ":7:10: domains", "expected a mapping "
     "of one domain or more (example.com: {...}); to remove the last one on the target, "
     "run vdeldomain there by hand (got {})"),
    ("- 1\n", "m.yaml:1:1", "must be a mapping"),
    # the value as YAML writes it, not as Python's repr ({'forward': 'not an address'})
    (BASE.replace("    default_quota: 1G\n", "    unknown_recipients: {forward: no mail}\n"),
     ":9:25: domains['example.com'].unknown_recipients", "expected bounce, delete, "
     "{forward: address} or {deliver_to: user} (got {forward: no mail})"),
    (BASE + "        quota: [2G]\n", ":12:16: domains['example.com'].users[0].quota",
     "expected a size like 500M, 1G, 2.5G or unlimited (got [2G])"),
    # .nan passes the schema's minimum and maximum: retrying slept time.sleep(nan), a
    # ValueError; a command_timeout past a C int made the host's watchdog kill the shell
    # at once (dash: "Illegal number") and mailplan's own timer thread fail
    # (OverflowError); ssh refuses a ConnectTimeout past it
    (BASE.replace("{local: true}", "{local: true, retry_delay: .nan}"),
     ":4:35: hosts.new.retry_delay", "expected a number, got .nan (not a number)"),
    # YAML 1.1 reads 1e308 (no dot, no sign in the exponent) as text: the error said
    # "expected a number, got '1e308'" and nothing of why
    (BASE.replace("{local: true}", "{local: true, retry_delay: 1e308}"),
     ":4:35: hosts.new.retry_delay", "expected a number, got '1e308', which YAML reads as "
     "text (a number with an exponent needs a dot and the exponent's sign): write "
     "1.0e+308 or the number in plain digits"),
    (BASE.replace("{local: true}", "{local: true, retry_delay: 5E-1}"),
     ":4:35: hosts.new.retry_delay", "got '5E-1', which YAML reads as text (a number with "
     "an exponent needs a dot and the exponent's sign): write 5.0e-1 or the number in"),
    (BASE.replace("{local: true}", "{local: true, retry_delay: '1.0e+1'}"),
     ":4:35: hosts.new.retry_delay", "expected a number, got '1.0e+1', which is text (in "
     "quotes): write it without the quotes"),
    (BASE.replace("{local: true}", "{local: true, command_timeout: 1e3}"),
     ":4:39: hosts.new.command_timeout", "expected a whole number, got '1e3', which YAML "
     "reads as text: write the whole number in plain digits (1000)"),
    (BASE.replace("{local: true}", "{local: true, command_timeout: 99999999999999999999}"),
     ":4:39: hosts.new.command_timeout", "is greater than the maximum of 2147483647"),
    (BASE.replace("{address: old.example.com}", "{address: o, connect_timeout: 2147483648}"),
     ":3:38: hosts.old.connect_timeout", "is greater than the maximum of 2147483647"),
    # two users of one source account: its mail was copied into both, and the aliases
    # naming it silently moved to the last one
    (BASE + "      - name: robert\n        from: alice\n", ":13:15: domains['example.com']"
     ".users[1].from", "users 'alice' (line 11) and 'robert' are both made from source "
     "account 'alice'"),
    (BASE + "      - {name: bob, from: carl}\n      - name: carl\n", ":13:15: "
     "domains['example.com'].users[2].name", "users 'bob' (line 12) and 'carl' are both"),
    # a value an alias repeats is wrong where the alias uses it (line 12), not at its
    # anchor (line 9, where it is fine for default_quota)
    (BASE.replace("1G", "&q 1X").replace("      - name: alice\n", "") + "      - name: bob\n"
     "        quota: *q\n", ":12:16: domains['example.com'].users[0].quota",
     "expected a size like 500M"),
    # merge keys: a merged value is marked where the merge names it; a mapping's own
    # value wins; a second << or a << of a list of names is an error at its line
    (BASE + "      - &a {name: bob, quota: 2G}\n      - <<: *a\n        name: carol\n"
     "        quota: 5X\n", ":15:16: domains['example.com'].users[2].quota",
     "expected a size like 500M"),
    (BASE + "      - &a {name: bob, quota: 5X}\n      - <<: *a\n        name: carol\n",
     ":12:31: domains['example.com'].users[1].quota", "expected a size"),
    (BASE + "      - &a {name: bob, quota: 2G}\n      - <<: *a\n        name: carol\n"
     "        <<: *a\n", ":15:9: domains['example.com'].users[2]",
     "duplicate merge key '<<'"),
    (BASE + "      - <<: [a, b]\n        name: carol\n", ":12:13: domains['example.com']"
     ".users[1]", "a merge key '<<' takes a mapping or a list of mappings"),
    (BASE + "      - &a {name: bob}\n      - <<: *a\n        name: carol\n"
     "        name: dave\n", ":15:9: domains['example.com'].users[2].name",
     "duplicate key 'name'"),
    # ~ is no home here: the folders of home/~/mail were read, none found, none imported
    (BASE.replace("source: {host: old}", "source: {host: old, folders: ~/mail}"),
     ":5:30: source.folders", "expected a directory relative to each user's home (mail, "
     "not ~/mail) or an absolute path with %u for the account (/home/%u/mail) (got '~/mail')"),
])
def test_errors_name_file_line_and_key(tmp_path, text, where, message):
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    text = str(info.value)
    assert text.startswith(str(path)), text
    assert where in text, text
    assert message in text, text


@pytest.mark.parametrize(("old", "new", "where"), [
    # a key indented one space less than its neighbours (meant for alice's entry): in
    # users, not in alice's entry, whose keys begin one column right of it
    ("      - name: alice\n", "      - name: alice\n       quota: 2G\n",
     ":12:8: domains['example.com'].users: malformed YAML: expected <block end>"),
    # a key indented less than its domain's keys, more than the domains
    ("    users:\n", "   users:\n",
     ":10:4: domains: malformed YAML: expected <block end>"),
    # a value holding ': ' (unquoted), and a value run on into a line indented deeper
    ("{host: new}", "\n  host: new: x",
     ":7:12: target.host: malformed YAML: mapping values are not allowed here"),
    ("    default_quota: 1G\n", "    default_quota: 1G\n      users: []\n",
     ":10:12: domains['example.com'].default_quota: malformed YAML: mapping values"),
    # a missing comma in a flow list, a quote left open, a list left open
    ("      - name: alice\n", "      - {name: alice, quota: 1G}\n      - {name: bob quota: 2G}\n",
     ":12:25: domains['example.com'].users[1].name: malformed YAML: expected ',' or '}'"),
    ("      - name: alice\n", '      - name: "alice\n        quota: 1G\n',
     ":13:1: domains['example.com'].users[0].name: malformed YAML: found unexpected end"),
    ("{host: old}", "{host: old, aliases: [/etc/aliases}",
     ":5:43: source.aliases: malformed YAML: expected ',' or ']', but got '}'"),
    # a block scalar followed by a line indented between its text and its key's
    ("{host: new}", "\n  note: |\n    text\n   host: new",
     ":9:4: target: malformed YAML: expected <block end>"),
    # an undefined alias (the composer's error), a line that is not at the top level
    ("    default_quota: 1G\n", "    default_quota: *q\n",
     ":9:20: domains['example.com'].default_quota: malformed YAML: found undefined alias"),
    ("version: 1\n", "version: 1\n bogus: 1\n",
     ":2:7: version: malformed YAML: mapping values are not allowed here"),
], ids=["dedented-key", "dedented-domain-key", "colon-in-value", "run-on-value", "flow-comma",
        "open-quote", "open-list", "after-block-scalar", "undefined-alias", "indented-top-level"])
def test_a_yaml_syntax_error_names_the_key_it_is_in(tmp_path, old, new, where):
    """PyYAML's syntax errors (a bad indent, "mapping values are not allowed here", a
    quote left open) named the file, line and column but no key: the key path open at
    the error, as YAML read the text before it, is named too."""
    assert old in BASE
    path = write(tmp_path, BASE.replace(old, new, 1))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}{where}"), str(info.value)


def test_a_yaml_syntax_errors_key_path_counts_lines_as_yaml_does_and_has_a_depth_limit():
    """Lines ended by CR alone (YAML reads CR as a line break) find the same key as
    with LF; a path through more collections than a spec may nest (64) is not named
    (the error still is, with its place); an error before any document names none."""
    for text in ("version: 1\ntarget:\n  host: new: x\n",
                 "version: 1\rtarget:\r  host: new: x\r",
                 "version: 1\r\ntarget:\r\n  host: new: x\r\n"):
        with pytest.raises(SpecError) as info:
            parse_yaml(text, "m.yaml")
        assert str(info.value) == ("m.yaml:3:12: target.host: malformed YAML: mapping "
                                   "values are not allowed here"), repr(text)
    with pytest.raises(SpecError) as info:
        parse_yaml("a: " + "[" * 70 + "\x07", "m.yaml")
    assert str(info.value).startswith("m.yaml:1:74: malformed YAML: character U+0007")
    with pytest.raises(SpecError) as info:
        parse_yaml("hello\nworld: 1\n", "m.yaml")
    assert str(info.value).startswith("m.yaml:2:6: malformed YAML: mapping values")


@pytest.mark.parametrize("reference", [
    "{hash: '$6$saltsalt$SECRETHASH0123', env: PM}",
    "{hash: ['$6$saltsalt$SECRETHASH0123']}",
    "{hash: {x: '$6$saltsalt$SECRETHASH0123'}}",
    "\"$6$saltsalt$SECRETHASH0123\"",
    "{hash: \"$6$saltsalt$SECRETHASH0123\\u0001\"}",
    "{hash: '!$6$saltsalt$SECRETHASH0123'}",
    "{hash: 'SECRETHASH0123'}",
])
def test_errors_never_show_a_password_hash(tmp_path, reference):
    """jsonschema's messages quote the value they reject: under a password reference the
    value is left out, whatever the check that failed."""
    for key in ("postmaster_password", "users: [{name: bob, password"):
        close = "}]" if key.startswith("users") else ""
        path = write(tmp_path, BASE.split("    users:")[0] + f"    {key}: {reference}{close}\n")
        with pytest.raises(SpecError) as info:
            load_spec(path)
        assert "SECRETHASH" not in str(info.value), str(info.value)
        assert "password" in str(info.value)


def test_a_tab_in_the_indentation_says_to_use_spaces(tmp_path):
    """PyYAML's "found character '\\t' that cannot start any token" alone did not say
    that YAML indents with spaces only."""
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, BASE + "\tbogus: 1\n"))
    assert str(info.value).endswith(":12:1: domains['example.com'].users[0]: malformed YAML: "
                                    "found character '\\t' that "
                                    "cannot start any token\n  hint: YAML indents and "
                                    "separates with spaces: replace the tab with spaces")


@pytest.mark.parametrize("char", ["\u2028", "\x85", "\u2029"])
def test_a_line_break_only_yaml_sees_is_an_error_at_its_place(tmp_path, char):
    """YAML 1.1 reads U+0085, U+2028 and U+2029 as line breaks, in a comment too: text
    after one (pasted into a comment) was parsed as YAML, and every line number after it
    was one more than an editor shows ("m.yaml:3:1: malformed YAML: could not find
    expected ':'" for a comment on line 1)."""
    path = write(tmp_path, BASE.replace("version: 1\n", f"version: 1  # see{char}the wiki\n"))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == (
        f"{path}:1:18: character U+{ord(char):04X} ({unicodedata.name(char, 'NEXT LINE')}) "
        "is read as a line break in YAML (also in a comment), though an editor shows none "
        f"there\n  hint: remove it (in a double-quoted value write it as \\u{ord(char):04x})")
    # written as an escape, it is a character of the value (which the checks then judge)
    path = write(tmp_path, BASE + '        comment: "a\\u2028b"\n')
    assert load_spec(path).data["domains"]["example.com"]["users"][0]["comment"] == "a\u2028b"


@pytest.mark.parametrize("line, where", [
    ("\u00a0     - name: bob\n", "line 12, column 1 holds U+00A0 (NO-BREAK SPACE)"),
    ("      - name:\u00a0bob\n", "line 12, column 14 holds U+00A0 (NO-BREAK SPACE)"),
    ("      -\u3000name: bob\n", "line 12, column 8 holds U+3000 (IDEOGRAPHIC SPACE)"),
])
def test_a_space_yaml_does_not_read_as_one_is_named_in_the_hint(tmp_path, line, where):
    """A no-break space (text pasted from a web page) gave PyYAML's "mapping values are
    not allowed here" alone, for a line that looks right in an editor."""
    path = write(tmp_path, BASE + line + "        quota: 1G\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert "malformed YAML" in str(info.value)
    assert str(info.value).endswith(f"hint: {where}, which YAML does not read as a space: "
                                    "replace it with a plain space"), str(info.value)


def test_a_byte_order_mark_is_no_unusual_space(tmp_path):
    """A spec saved with a BOM reads as without one; an error on its first line names
    no U+FEFF."""
    path = tmp_path / "m.yaml"
    path.write_text("\ufeffversion: 1\nhosts: x: y\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert "U+FEFF" not in str(info.value)
    path.write_text("\ufeff" + BASE)
    assert load_spec(path).data["version"] == 1


def test_a_spec_not_in_utf8_names_the_line_and_column(tmp_path):
    """A Latin-1 byte in a spec was "not UTF-8 text (byte 208)", naming no line."""
    path = tmp_path / "m.yaml"
    path.write_bytes((BASE + "        comment: Ren\xe9\n").encode("latin-1"))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == (f"{path}:12:21: the spec is not UTF-8 text: byte 0xE9 (at "
                               f"byte {len(BASE) + 20} of the file; save it as UTF-8)")


def test_one_source_account_may_be_a_user_of_several_domains(tmp_path):
    """Refused within a domain, one account may still be a user of each domain."""
    spec = load_spec(write(tmp_path, BASE + "  example.org:\n    users:\n"
                           "      - {name: al, from: alice}\n"))
    assert spec.data["domains"]["example.org"]["users"] == [{"name": "al", "from": "alice"}]


def test_merge_keys_add_what_a_mapping_does_not_set(tmp_path):
    """``<<: *defaults`` (YAML's merge key) was refused as "could not determine a
    constructor for the tag 'tag:yaml.org,2002:merge'", naming no key: its keys now
    fill in what the mapping leaves out (the first of a list of them wins), and an error
    in a merged value names the line of the ``<<``."""
    spec = load_spec(write(tmp_path, BASE.replace("    default_quota: 1G\n", "") + """\
      - &big {name: bob, quota: 2G, comment: Bob}
      - &small {name: small, quota: 1M, comment: Small}
      - <<: [*big, *small]
        name: carol
        comment: Carol
      - {<<: *small, name: dave}
      - {<<: {quota: 3G}, name: eve}
"""))
    users = spec.data["domains"]["example.com"]["users"]
    assert users[3] == {"name": "carol", "comment": "Carol", "quota": "2G"}
    assert users[4] == {"name": "dave", "quota": "1M", "comment": "Small"}
    assert users[5] == {"name": "eve", "quota": "3G"}
    assert spec.mark(("domains", "example.com", "users", 3, "quota")) == (13, 14)  # *big
    assert spec.mark(("domains", "example.com", "users", 3, "name")) == (14, 15)
    assert spec.mark(("domains", "example.com", "users", 4, "quota")) == (16, 14)  # *small
    assert spec.mark(("domains", "example.com", "users", 5, "quota")) == (17, 22)


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="cannot read the spec"):
        load_spec(tmp_path / "nope.yaml")


def test_the_specs_digest_is_of_the_bytes_parsed_not_of_a_later_read(tmp_path, monkeypatch):
    """The plan's ``spec.sha256`` was a second read of the file after load_spec: a file
    replaced in between gave the digest of bytes never validated (and the work twice)."""
    import hashlib
    from pathlib import Path

    path = write(tmp_path, BASE)
    parsed = path.read_bytes()
    spec = load_spec(path)
    path.write_text(textwrap.dedent(BASE).replace("alice", "mallory"))
    assert spec.digest == hashlib.sha256(parsed).hexdigest()
    reads = []
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or b"")
    assert load_spec(path).digest == hashlib.sha256(path.read_text().encode()).hexdigest()
    assert reads == []  # read once, through local_read (a FIFO or device refused)
