"""The target and source parsers, fed with recorded real outputs."""

from __future__ import annotations

import pytest
from reference import recorded

from mailplan.errors import SourceDataError
from mailplan.facts.source import build_accounts, parse_passwd, parse_shadow
from mailplan.facts.source_lines import skipped_lines, source_notes
from mailplan.facts.vpopmail import (
    DirHashing,
    parse_dir_control,
    parse_vdominfo_nd,
    parse_vuserinfo,
    user_from_fields,
)


def test_vuserinfo_listing_of_small_example():
    code, out = recorded("07-vuserinfo.md", "/home/vpopmail/bin/vuserinfo -D small.example")
    assert code == 0
    users = [user_from_fields(f) for f in parse_vuserinfo(out)]
    assert [u.name for u in users] == ["postmaster", "u1", "u2", "u3"]
    u1, u2, u3 = users[1:]
    assert u1.comment == "User One" and u1.quota == "52428800S"
    assert u1.dir == "/home/vpopmail/domains/small.example/u1"
    assert u2.password.reveal() == "$1$saltsalt$RiZ4O533shs928qfyqLuE/"
    assert u3.quota == "104857600S,1000C"
    assert "saltsalt" not in repr(u2)  # the hash is a Secret


def test_vuserinfo_single_user_with_limits_block():
    code, out = recorded("06-vchkpw.md", "/home/vpopmail/bin/vuserinfo bob@example.com")
    (fields,) = parse_vuserinfo(out)
    user = user_from_fields(fields)
    assert user.flags == 2 and user.comment == "Bob Smith"
    assert fields["limits"] == "pop access closed"


def test_vuserinfo_unicode_gecos():
    code, out = recorded("07-vuserinfo.md", "/home/vpopmail/bin/vuserinfo unicode@example.com")
    (fields,) = parse_vuserinfo(out)
    assert user_from_fields(fields).comment == "Ünïcödé Name"


def test_vdominfo_with_alias_domains():
    code, out = recorded("08-vdominfo.md", "/home/vpopmail/bin/vdominfo -d small.example")
    # -d alone prints the directory and the alias lines; -n -d adds the name first
    real, ddir, aliases = parse_vdominfo_nd("small.example\n" + out)
    assert real == "small.example" and ddir == "/home/vpopmail/domains/small.example"
    assert aliases[0] == "alias-small.example" and "a..b.example" in aliases


def test_vdominfo_unknown_domain_recorded_exit():
    assert recorded("08-vdominfo.md", "/home/vpopmail/bin/vdominfo nosuch.example") == (
        245, "Invalid domain name\n")


PASSWD = b"root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice Smith,,,:/home/alice:/bin/sh\n"
SHADOW = b"root:*:19000:0:99999:7:::\nalice:$6$s$h:19000:0:99999:7:::\n"


def test_passwd_and_shadow_join():
    accounts = build_accounts(parse_passwd(PASSWD, host="h", path="/etc/passwd"),
                              parse_shadow(SHADOW, host="h", path="/etc/shadow"))
    assert accounts["alice"].full_name == "Alice Smith"
    assert accounts["alice"].hash_info.status == "malformed"  # "$6$s$h" is not a real hash
    assert accounts["root"].hash_info.status == "locked"


@pytest.mark.parametrize("data, message, line", [
    (b"alice:x:1000:1000::/home/a\n", "expected 7", 1),
    (PASSWD + b"alice:x:1001:1001::/h:/bin/sh\n", "duplicate entry for 'alice'", 3),
    (b"+::::::\n", "NIS", 1),
    (b"a:x:ten:1::/h:/bin/sh\n", "not numbers", 1),
    # glibc's nss_files reads such a line without its white space, shadow's tools with it
    (b"root:x:0:0::/root:/bin/sh\n bob:x:1:1::/h:/bin/sh\n", "starts with white space", 2),
])
def test_bad_passwd_names_file_and_line(data, message, line):
    with pytest.raises(SourceDataError, match=message) as info:
        parse_passwd(data, host="oldmail", path="/etc/passwd")
    assert str(info.value).startswith(f"oldmail:/etc/passwd:{line}:")


def test_bad_shadow_line_never_echoes_the_hash():
    with pytest.raises(SourceDataError) as info:
        parse_shadow(b"alice:$6$secretsalt$xyz:1:2\n", host="h", path="/etc/shadow")
    assert "secretsalt" not in str(info.value)


COMMENTED = (b"# accounts of oldmail\n\nroot:x:0:0::/root:/bin/sh\n  \t\n"
             b"  #bob:x:1001:1001::/home/bob:/bin/sh\n# Jos\xe9's account, gone\n"
             b"alice:x:1000:1000::/home/alice:/bin/sh\n\r\n")


def test_empty_and_comment_lines_are_skipped_as_the_c_library_skips_them():
    # glibc's __nss_readline (nss_files: getpwnam, getspnam) skips a line that is empty
    # or a comment after its leading white space, whatever its bytes: no account is there
    passwd = parse_passwd(COMMENTED, host="h", path="/etc/passwd")
    assert {name: line for name, (line, _f) in passwd.items()} == {"root": 3, "alice": 7}
    assert skipped_lines(COMMENTED) == [(1, "a comment"), (2, "empty"), (4, "empty"),
                                        (5, "a comment"), (6, "a comment"), (8, "empty")]
    shadow = COMMENTED.replace(b"x:0:0::/root:/bin/sh", b"*:19000:0:99999:7:::").replace(
        b"x:1000:1000::/home/alice:/bin/sh", b"$6$s$h:19000:0:99999:7:::")
    entries = parse_shadow(shadow, host="h", path="/etc/shadow")
    assert [(n, e.line) for n, e in entries.items()] == [("root", 3), ("alice", 7)]


@pytest.mark.parametrize("fields, found, expires", [
    ("19000:0:99999:7::1:", 9, 1),
    ("19000:0:99999:7::1", 8, 1),  # the reserved flag field missing: read as empty
    ("19000:0:99999", 5, None),  # shadow's old form: warn, inactive, expiry, flag empty
    ("19000:0:99999:", 6, None),  # the old form with its ':' (glibc and shadow read it so)
])
def test_shadow_lines_missing_trailing_fields_read_them_as_empty(fields, found, expires):
    entry = parse_shadow(f"a:$6$x$y:{fields}\n".encode(), host="h", path="/etc/shadow")["a"]
    assert (entry.password, entry.changed, entry.max_days, entry.found) == (
        "$6$x$y", 19000, 99999, found)
    assert (entry.inactive, entry.expires) == (None, expires)


@pytest.mark.parametrize("fields, found", [
    ("19000:0:99999:7:30", 7),  # glibc and shadow's tools both reject a 7-field line
    ("19000:0:99999:7:30:", 8),  # 8 fields, the expiry empty: rejected too
    ("19000:0:99999:7", 6),  # the old form has no warning field
    ("19000:0:", 5),  # the old form needs its maximum
    ("19000:0", 4),
    ("19000:0:99999:7::::", 10),
])
def test_a_shadow_line_the_c_library_rejects_stays_an_error(fields, found):
    with pytest.raises(SourceDataError, match=f"found {found}$") as info:
        parse_shadow(b"root:*:1:0:99999:7:::\n" + f"a:$6$salt$secret:{fields}\n".encode(),
                     host="h", path="/etc/shadow")
    assert str(info.value).startswith("h:/etc/shadow:2:")
    assert "secret" not in str(info.value)


def test_skipped_and_short_lines_are_plan_notes_naming_file_and_lines():
    shadow = b"# x\nroot:*:19000:0:99999:7:::\n\n\na:$6$x$y:19000:0:99999\nb:*:1:0:9:7::5\n"
    notes = source_notes("/etc/passwd", COMMENTED, "/etc/shadow", shadow,
                         parse_shadow(shadow, host="h", path="/etc/shadow"))
    assert notes == [
        "/etc/passwd lines 1, 5-6 (comments), 2, 4, 8 (empty): skipped, as the old "
        "server's C library skips them (glibc's nss_files: no account is there)",
        "/etc/shadow lines 1 (a comment), 3-4 (empty): skipped, as the old server's C "
        "library skips them (glibc's nss_files: no account is there)",
        "/etc/shadow line 5 ('a'): 5 fields, shadow's old form: its warning, inactivity "
        "and expiry fields are read as empty, as the C library reads them",
        "/etc/shadow line 6 ('b'): 8 fields: its last (reserved) field is read as empty, "
        "as the C library reads it"]
    assert source_notes("/etc/passwd", b"root:x:0:0::/root:/bin/sh\n", "/etc/shadow",
                        b"", {}) == []


def test_a_full_name_not_utf8_is_read_as_latin1_anything_else_is_refused():
    # an old server's full names in its 8-bit locale: one must not stop the migration
    data = PASSWD + b"jose:x:1002:1002:Jos\xe9 Garc\xeda:/home/jose:/bin/sh\n"
    assert parse_passwd(data, host="h", path="/etc/passwd")["jose"][1][4] == "José García"
    # a home directory is sent back to the host: read as Latin-1 and written back as
    # UTF-8 it would name another path (its ~/.forward unread, silently)
    for bad in (b"jose:x:1002:1002:Jose:/home/jos\xe9:/bin/sh\n",
                b"jos\xe9:x:1002:1002:Jose:/home/jose:/bin/sh\n"):
        with pytest.raises(SourceDataError, match="not UTF-8 text .outside the full name."
                           ) as info:
            parse_passwd(PASSWD + bad, host="h", path="/etc/passwd")
        assert str(info.value).startswith("h:/etc/passwd:3:")
    with pytest.raises(SourceDataError, match="h:/etc/shadow:1: not UTF-8 text$"):
        parse_shadow(b"a:$6$\xe9:1:0:99999:7:::\n", host="h", path="/etc/shadow")


@pytest.mark.parametrize("fields, expired", [
    ("19000:0:99999:7::1:", "the account expired on 1970-01-02"),
    ("19000:0:99999:7:::", None),
    ("19000:0:99999:7::20001:", None),  # expires in the future (today is day 20000)
    ("19000:0:99999:7::20000:", "the account expired on 2024-10-04"),  # from that day
    ("19000:0:900:7:30::", "its password expired on 2024-06-26 and the account is inactive "
     "since 2024-07-26"),
    ("19000:0:900:7:100::", "its password expired on 2024-06-26"),  # inactive from today
    ("19000:0:900:7:101::", None),
    ("18000:0:900:7:100::", "its password expired on 2021-09-30"),
    ("18000:0:900:7:::", None),  # expired password, no inactivity limit: must change it
    ("0:0:90:7:0::", None),  # 0: must change at next login, not locked out
    ("19000:0:-1:-1:-1:-1:", None),
    ("-1:0:90:7:7::", None),  # no last change date: the inactivity rule does not apply
])
def test_shadow_expiry_as_login_judges_it(fields, expired):
    entry = parse_shadow(f"a:$6$x$y:{fields}\n".encode(), host="h", path="/etc/shadow")["a"]
    why = entry.expired(20000)
    assert (why is None) if expired is None else why.startswith(expired), why


@pytest.mark.parametrize(("line", "crlf"), [
    (b"a:$6$x$y:soon:0:99999:7:::", False),  # a date
    (b"a:$6$x$y:19000:x:99999:7:::", False),  # the minimum age
    (b"a:$6$x$y:19000:0:99999:seven:::", False),  # the warning days
    (b"a:$6$x$y:19000:0:99999:7:::flag", False),  # the reserved flag field
    # DOS line ends: glibc's parser rejects every line (its last field ends in a CR)
    (b"a:$6$x$y:19000:0:99999:7:::\r", True),
])
def test_a_shadow_line_glibc_rejects_for_its_numbers_names_the_line(line, crlf):
    """glibc's sgetspent_r reads fields 3 to 9 as numbers (or empty) and rejects a line
    where one is not: the account has no shadow entry on the old server, so its hash is
    not migrated as if it had (the line is an error, as other lines glibc rejects)."""
    with pytest.raises(SourceDataError, match="number fields of 'a' \\(3 to 9\\)") as info:
        parse_shadow(b"b:$6$x$y:19000:0:99999:7:::\n" + line + b"\n", host="h",
                     path="/etc/shadow")
    assert str(info.value).startswith("h:/etc/shadow:2:")
    assert ("DOS line ends" in str(info.value)) == crlf
    assert "$6$" not in str(info.value)


@pytest.mark.parametrize(("text", "free", "expected"), [
    ("", "", DirHashing(0, "")),  # no file: vpopmail starts afresh
    ("1\n0\n3\n0 0 0\n61 61 61\n0 2 4\n0 0 0\n\n", "", DirHashing(1, "")),
    ("350\n0\n3\n0 0 0\n61 61 61\n0 2 2\n2 0 0\n2\n", "0\n# note\n\n1\n",
     DirHashing(350, "2", ("0", "1"))),
    # backfill.c refuses a last line without its line end: never handed out
    ("2\n0\n3\n0 0 0\n61 61 61\n0 2 4\n0 0 0\n\n", "0\n1", DirHashing(2, "", ("0",))),
])
def test_dir_control_files_are_parsed(text, free, expected):
    # the second: 14-many-users-dir-hashing.md's bulk.example after vadddomain; the
    # third: after vdeluser user150, whose 0/ is handed out again (.dir_control_free)
    assert parse_dir_control(text, free) == expected


@pytest.mark.parametrize("text", ["x\n0\n", "1\n0\n3\n0 0 0\n61 61 61\n0 2 4\n0 0 0\n../x\n"])
def test_an_unexpected_dir_control_file_is_refused(text):
    with pytest.raises(ValueError):
        parse_dir_control(text)


@pytest.mark.parametrize("free", [
    # backfill.c takes "1 " (blanks before a comment stay) and then finds no line that
    # starts with it to remove: no user gets it, nor any freed directory after it
    "  1 # x\n0\n",
    "0 # freed\n", "0\r\n", "../x\n",
])
def test_a_dir_control_free_file_vpopmail_did_not_write_is_refused(free):
    # mailplan then counts the longest hashed sub-directory: never one vadduser refuses
    with pytest.raises(ValueError):
        parse_dir_control("2\n0\n3\n0 0 0\n61 61 61\n0 2 4\n0 0 0\n\n", free)
