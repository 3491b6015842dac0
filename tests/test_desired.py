"""Spec + source accounts -> desired state (pure, no hosts)."""

from __future__ import annotations

import os
import textwrap

import pytest
from migration import mailplan

from mailplan.desired import LOCKED, Desired, build_desired
from mailplan.errors import SpecError
from mailplan.facts.source import SourceFacts, build_accounts, parse_passwd, parse_shadow
from mailplan.spec import load_spec

H = "$1$saltsalt$RiZ4O533shs928qfyqLuE/"


def source(passwd_lines, shadow_lines):
    p = parse_passwd(("\n".join(passwd_lines) + "\n").encode(), host="old", path="/etc/passwd")
    s = parse_shadow(("\n".join(shadow_lines) + "\n").encode(), host="old", path="/etc/shadow")
    return SourceFacts("old", "/etc/passwd", "/etc/shadow", build_accounts(p, s))


SRC = source(
    ["root:x:0:0:root:/root:/bin/sh", "alice:x:1000:1000:Alice A,,,:/home/alice:/bin/sh",
     "bob:x:1001:1001:Bob B:/home/bob:/bin/sh", "Carl:x:1002:1002::/home/Carl:/bin/sh",
     "carl:x:1003:1003::/home/carl:/bin/sh", "dave:x:1004:1004::/home/dave:/bin/sh",
     "eve:x:1005:1005::/home/eve:/bin/sh"],
    ["root:*:1:0:99999:7:::", f"alice:{H}:1:0:99999:7:::", f"bob:{H}:1:0:99999:7:::",
     f"Carl:{H}:1:0:99999:7:::", f"carl:{H}:1:0:99999:7:::", "dave:!!:1:0:99999:7:::"])


def locked(desired: Desired) -> dict[str, str]:
    """The users the old server locks out (migrated where the target has them, and
    locked there), each with why: its locked password's origin."""
    return {n: u.password.origin for n, u in desired.domains["example.com"].users.items()
            if u.password.kind == LOCKED}


def spec(tmp_path, domain_body):
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        hosts: {old: {local: true}, new: {local: true}}
        source: {host: old}
        target: {host: new}
        domains:
          example.com:
        """) + textwrap.indent(domain_body, "    "))
    return load_spec(path)


def test_rename_is_not_imported_twice_and_defaults_apply(tmp_path):
    s = spec(tmp_path, "default_quota: 1G\nimport: {exclude: [eve]}\n"
             "users: [{name: robert, from: bob, comment: Rob}]\n")
    desired = build_desired(s, SRC)
    users = desired.domains["example.com"].users
    assert sorted(users) == ["alice", "carl", "dave", "robert"]
    assert users["robert"].source == "bob" and users["robert"].comment == "Rob"
    assert users["alice"].comment == "Alice A" and users["alice"].quota == 1 << 30
    # dave is locked on the old server: migrated where the target has him, and locked
    assert locked(desired) == {"dave": "source account 'dave' is locked (shadow line 6)"}
    problems = {p.user: p.message for p in desired.problems}
    assert "source account 'carl' is also 'carl' once lower-cased, and is migrated as " \
        "'carl'" in problems["Carl"] and "dave" not in problems
    assert users["carl"].source == "carl"
    desired.lock_out(set())  # a target without him: never created, a problem
    assert "dave" not in desired.domains["example.com"].users
    assert "locked" in {p.user: p.message for p in desired.problems}["dave"]


def test_the_desired_state_knows_the_source_accounts_lower_cased(tmp_path):
    """What lets the plan say that a user it created and no longer migrates has left the
    old server's passwd (mailplan.diff), rather than that the spec dropped it."""
    desired = build_desired(spec(tmp_path, "import: {exclude: [eve]}\n"), SRC)
    assert desired.source_accounts == frozenset(
        {"root", "alice", "bob", "carl", "dave", "eve"})


def test_an_account_whose_name_a_rename_takes_is_a_listed_problem(tmp_path):
    """alice is migrated under bob's name: the source account bob, which the import rule
    matches, cannot also be bob@ and must not vanish from the plan silently. An account
    that is itself the source of a user (renamed or not) is covered by that user."""
    s = spec(tmp_path, "import: {exclude: [eve, carl, Carl, dave]}\n"
             "users: [{name: bob, from: alice}]\n")
    desired = build_desired(s, SRC)
    assert sorted(desired.domains["example.com"].users) == ["bob"]
    assert desired.domains["example.com"].users["bob"].source == "alice"
    (problem,) = desired.problems
    assert problem.user == "bob" and "is not migrated: the spec's user 'bob' is made from " \
        "source account 'alice'" in problem.message and "from: bob" in problem.message
    s = spec(tmp_path, "import: {exclude: [eve, carl, Carl, dave]}\n"
             "users: [{name: bob, from: alice}, {name: robert, from: bob}]\n")
    desired = build_desired(s, SRC)
    assert sorted(desired.domains["example.com"].users) == ["bob", "robert"]
    assert desired.problems == []


def test_explicit_user_missing_on_source(tmp_path):
    s = spec(tmp_path, "users: [{name: zed}]\n")
    with pytest.raises(SpecError, match="there is no account 'zed' on the source"):
        build_desired(s, SRC)


def test_a_rename_from_a_missing_account_points_at_from(tmp_path):
    # the spec's error names the key that is wrong: from, not the new name
    s = spec(tmp_path, "users:\n  - name: zed\n    from: nosuch\n")
    with pytest.raises(SpecError, match="there is no account 'nosuch' on the source") as err:
        build_desired(s, SRC)
    assert err.value.key.endswith("users[0].from") and err.value.line == 9, err.value


def test_every_missing_account_is_named_in_one_error(tmp_path):
    # an admin mends them all before the next run, not one per run; a user with a
    # password of its own needs no account
    s = spec(tmp_path, "users:\n  - name: zed\n  - name: ann\n    from: nosuch\n"
             "  - name: pat\n    password: {env: PAT_PW}\n  - name: carl\n")
    with pytest.raises(SpecError) as err:
        build_desired(s, SRC)
    assert err.value.key.endswith("users[0].name") and err.value.line == 8, err.value
    assert "there is no account 'zed' on the source" in str(err.value)
    assert "(old:/etc/passwd); nor 'nosuch' (line 10)\n  hint:" in str(err.value), err.value


def test_validate_mentions_secrets_this_machine_lacks_and_passes(tmp_path, monkeypatch):
    # validate checks the spec (it may run where the secrets are not: CI); what plan
    # would refuse here is said as a note, never the secret itself
    (tmp_path / "ok.pw").write_text("Secret-ok-1\n")
    (tmp_path / "crlf.pw").write_text("Secret-crlf-1\r\n")
    s = spec(tmp_path, "postmaster_password: {env: NOPE_UNSET_PW}\n"
             "users:\n  - name: alice\n    password: {file: crlf.pw}\n"
             "  - name: bob\n    password: {file: ok.pw}\n"
             "  - name: carl\n    password: {file: missing.pw}\n")
    env = {k: v for k, v in os.environ.items() if k != "NOPE_UNSET_PW"}
    monkeypatch.delenv("NOPE_UNSET_PW", raising=False)
    res = mailplan("validate", str(s.path), env=env)
    assert res.returncode == 0, res.stderr
    assert "m.yaml: valid (spec version 1, 1 domain(s), 3 explicit user(s))" in res.stdout
    notes = [line for line in res.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 3, res.stderr
    assert "postmaster_password.env: environment variable NOPE_UNSET_PW is not set" in notes[0]
    assert "users[0].password.file: the first line of password file" in notes[1]
    assert "control character" in notes[1] and "cannot read password file" in notes[2]
    assert "Secret-" not in res.stdout + res.stderr
    assert res.stderr.count("the spec is valid; plan and apply need this") == 3


def test_explicit_user_missing_from_shadow_names_its_spec_line(tmp_path):
    """A user of the spec whose source account has no shadow entry is a spec error at
    that user's line (its from:, else its name), saying the shadow file lacks the
    account: the spec's line is what the admin mends (a password, another account)."""
    s = spec(tmp_path, "users: [{name: eve}]\n")
    with pytest.raises(SpecError) as info:
        build_desired(s, SRC)
    assert (info.value.file, info.value.line) == (str(s.path), 7)
    assert "no entry in the shadow file (old:/etc/shadow)" in str(info.value)
    s = spec(tmp_path, "users:\n  - name: bob\n  - name: evelyn\n    from: eve\n")
    with pytest.raises(SpecError) as info:
        build_desired(s, SRC)
    assert (info.value.file, info.value.line) == (str(s.path), 10), str(info.value)
    assert str(info.value).startswith(f"{s.path}:10:") and "'eve' (passwd line 7)" in str(
        info.value) and "give the user a password" in str(info.value)


def test_password_from_env_must_be_set(tmp_path, monkeypatch):
    monkeypatch.delenv("NOPE_PW", raising=False)
    s = spec(tmp_path, "postmaster_password: {env: NOPE_PW}\n")
    with pytest.raises(SpecError, match="NOPE_PW is not set"):
        build_desired(s, SRC)


@pytest.mark.parametrize(("value", "words"), [
    ("Sekr1t" * 22, "is 132 bytes long; vpopmail takes at most 128"),
    ("Sekr1t\n", "holds a control character"),
    # a byte that is not UTF-8 (os.environ keeps it as a surrogate): was a traceback
    # (UnicodeEncodeError naming the byte and its place in the password)
    (b"Sekr1t\xff".decode("utf-8", "surrogateescape"), "is not UTF-8 text"),
])
def test_a_password_vpopmail_would_not_take_is_refused_without_quoting_it(
        tmp_path, monkeypatch, value, words):
    monkeypatch.setenv("LONG_PW", value)
    s = spec(tmp_path, "users: [{name: zed, password: {env: LONG_PW}}]\n")
    with pytest.raises(SpecError, match=words) as info:
        build_desired(s, SRC)
    assert "Sekr1t" not in str(info.value) and "environment variable LONG_PW" in str(info.value)
    assert "\\udcff" not in str(info.value) and "0xff" not in str(info.value)
    monkeypatch.setenv("LONG_PW", "é" * 64)  # 128 bytes: vpopmail's own limit, taken
    assert build_desired(s, SRC).domains["example.com"].users["zed"].password.kind == "clear"


def test_a_long_full_name_is_cut_to_vpopmails_64_bytes_on_a_character(tmp_path):
    src = source(["jose:x:1000:1000:" + "José " * 15 + ":/h:/bin/sh"],
                 [f"jose:{H}:19000:0:99999:7:::"])
    comment = build_desired(spec(tmp_path, "import: {}\n"), src
                            ).domains["example.com"].users["jose"].comment
    assert len(comment.encode()) == 63 and ("José " * 15).startswith(comment)


def test_password_file_is_read_and_kept_secret(tmp_path):
    (tmp_path / "pw").write_text("s3cret\nignored\n")
    s = spec(tmp_path, "users: [{name: zed, password: {file: pw}}]\n")
    user = build_desired(s, SRC).domains["example.com"].users["zed"]
    assert user.password.kind == "clear" and user.password.value.reveal() == "s3cret"
    assert "s3cret" not in repr(user)


def test_dot_and_dotdot_source_accounts_are_listed_problems(tmp_path):
    src = source(["..:x:1000:1000::/home/dd:/bin/sh", "alice:x:1001:1001::/home/a:/bin/sh"],
                 [f"..:{H}:1:0:99999:7:::", f"alice:{H}:1:0:99999:7:::"])
    desired = build_desired(spec(tmp_path, "import: {uid_min: 1000}\n"), src)
    assert sorted(desired.domains["example.com"].users) == ["alice"]
    problems = {p.user: p.message for p in desired.problems}
    assert "names a directory itself or its parent" in problems[".."]


@pytest.mark.parametrize("gecos", ["B\0ob", "Bob\x1b[31mRED\x07", "Bo\rb"])
def test_control_characters_in_gecos_are_a_listed_problem(tmp_path, gecos):
    src = source([f"bob:x:1000:1000:{gecos},,,:/home/bob:/bin/sh",
                  "alice:x:1001:1001:Alice:/home/a:/bin/sh"],
                 [f"bob:{H}:1:0:99999:7:::", f"alice:{H}:1:0:99999:7:::"])
    desired = build_desired(spec(tmp_path, "import: {uid_min: 1000}\n"), src)
    assert sorted(desired.domains["example.com"].users) == ["alice"]
    problems = {p.user: p.message for p in desired.problems}
    assert problems["bob"].startswith("old:/etc/passwd:1: the full name (gecos) of source "
                                      "account 'bob' contains a control character")
    assert gecos not in problems["bob"]
    # a comment from the spec replaces the gecos: then the account is migrated
    desired = build_desired(spec(tmp_path, "users: [{name: bob, comment: Bob}]\n"), src)
    assert desired.domains["example.com"].users["bob"].comment == "Bob"
    desired = build_desired(spec(tmp_path, "users: [{name: bob}]\n"), src)
    assert "bob" not in desired.domains["example.com"].users
    assert [p.user for p in desired.problems] == ["bob"]
    assert locked(desired) == {}  # he may still log in there


def test_an_unusable_shadow_field_names_its_line_and_never_its_value(tmp_path):
    src = source(["bob:x:1000:1000::/home/bob:/bin/sh"],
                 ["root:*:1:0:99999:7:::", "bob:$Tr0ub4dor&3:1:0:99999:7:::"])
    desired = build_desired(spec(tmp_path, "import: {uid_min: 1000}\n"), src)
    (problem,) = desired.problems
    assert problem.message.startswith("password of source account 'bob' cannot be migrated "
                                      "(shadow line 2): starts with '$' but is no crypt(3)")
    assert "Tr0ub" not in problem.message


@pytest.mark.parametrize(("content", "words"), [
    (b"Sekr1t" * 1000, "is larger than 4096 bytes"),
    (b"Sekr1t\xff\n", "is not UTF-8 text"),
    (b"Sekr1t\r\n", "holds a control character"),
])
def test_a_bad_password_file_is_refused_without_quoting_it(tmp_path, content, words):
    (tmp_path / "pw").write_bytes(content)
    s = spec(tmp_path, "users: [{name: zed, password: {file: pw}}]\n")
    with pytest.raises(SpecError, match=words) as info:
        build_desired(s, SRC)
    assert "Sekr1t" not in str(info.value) and "0xff" not in str(info.value)
    assert ":1:" in str(info.value) or "users[0].password.file" in str(info.value)


def test_a_password_file_is_read_with_a_limit(tmp_path):
    s = spec(tmp_path, "users: [{name: zed, password: {file: /dev/zero}}]\n")
    with pytest.raises(SpecError, match="is larger than 4096 bytes"):
        build_desired(s, SRC)


def test_an_account_the_old_server_no_longer_lets_in_is_a_problem(tmp_path):
    # migrated with its hash, an expired account would log in again on the new server
    src = source(["fired:x:1000:1000::/home/fired:/bin/sh", "kept:x:1001:1001::/h:/bin/sh"],
                 [f"fired:{H}:19000:0:99999:7::19500:", f"kept:{H}:19000:0:99999:7:::"])
    desired = build_desired(spec(tmp_path, "import: {}\n"), src)
    assert locked(desired) == {"fired": (
        "source account 'fired' cannot log in on the old server (shadow line 1): the "
        "account expired on 2023-05-23 (shadow's expiry date)")}
    assert desired.problems == []  # a problem only where the target lacks him:
    desired.lock_out(set())
    assert sorted(desired.domains["example.com"].users) == ["kept"]
    (problem,) = desired.problems
    assert problem.user == "fired" and "shadow line 1" in problem.message
    assert "the account expired on 2023-05-23" in problem.message and H not in problem.message
    (tmp_path / "pw").write_text("Sekr1t\n")
    given = build_desired(spec(tmp_path, "users: [{name: fired, password: {file: pw}}]\n"),
                          src)  # the admin's choice: migrated with the spec's password
    assert "fired" in given.domains["example.com"].users and not given.problems
    assert locked(given) == {}  # the spec's password: never locked


@pytest.mark.parametrize(("users", "as_user"), [
    ("[{name: carl}]", "carl"),
    ("[{name: charles, from: carl}]", "charles"),
])
def test_an_account_the_same_once_lower_cased_as_a_users_source_is_a_problem(
        tmp_path, users, as_user):
    # Carl and carl: the spec makes a user of carl; Carl, which the rule takes, is not
    # migrated, and must not vanish from the plan silently
    desired = build_desired(spec(tmp_path, f"import: {{exclude: [eve]}}\nusers: {users}\n"),
                            SRC)
    assert "Carl" not in desired.domains["example.com"].users
    problems = {p.user: p.message for p in desired.problems}
    assert problems["Carl"].startswith("source account 'Carl' is not migrated: vpopmail "
                                       f"names are lower-case, and the spec migrates source "
                                       f"account 'carl' (as user '{as_user}')")


def test_an_account_locked_keeps_its_lower_cased_name_from_the_other_one(tmp_path):
    """carl is migrated as carl (Carl, the same once lower-cased, a problem), then locked
    on the old server: carl's mailbox, carl's mail in it, must not pass to the other
    account Carl with its password; it is locked as carl's."""
    src = source(["Carl:x:1002:1002::/home/Carl:/bin/sh", "carl:x:1003:1003::/h:/bin/sh"],
                 [f"Carl:{H}:1:0:99999:7:::", f"carl:!{H}:1:0:99999:7:::"])
    desired = build_desired(spec(tmp_path, "import: {}\n"), src)
    assert locked(desired) == {"carl": "source account 'carl' is locked (shadow line 2)"}
    assert desired.domains["example.com"].users["carl"].source == "carl"
    (other,) = (p.message for p in desired.problems)
    assert "source account 'carl' is also 'carl' once lower-cased" in other
    desired.lock_out(set())  # a target without carl: neither is made carl
    assert desired.domains["example.com"].users == {}
    assert "source account 'carl' cannot be migrated" in desired.problems[-1].message


@pytest.mark.parametrize(("accounts", "winner"), [
    # sendmail lower-cases a local address (its local mailer has no F=u): carol@ went
    # to carol, whichever was made first; a Carol added later never takes carol over
    ([("carol", 1010), ("Carol", 1020)], "carol"),
    ([("carol", 1020), ("Carol", 1010)], "carol"),
    # neither has the name: the lower uid (most often the older account)
    ([("CAROL", 1020), ("Carol", 1010)], "Carol"),
    ([("Carol", 1020), ("CAROL", 1010)], "CAROL"),
])
def test_of_two_accounts_one_name_once_lower_cased_the_one_sendmail_delivered_to_wins(
        tmp_path, accounts, winner):
    """Which of two source accounts with the same name once lower-cased is migrated as
    that user does not hang on their names' order: an account added on the old server
    after carol was migrated (Carol) took carol's password and had its mail merged into
    carol's mailbox, as 'C' sorts before 'c'. The problem names both accounts."""
    src = source([f"{n}:x:{u}:{u}::/home/{n}:/bin/sh" for n, u in accounts],
                 [f"{n}:{H}:1:0:99999:7:::" for n, _u in accounts])
    desired = build_desired(spec(tmp_path, "import: {}\n"), src)
    assert desired.domains["example.com"].users["carol"].source == winner
    (loser,) = {n for n, _u in accounts} - {winner}
    (problem,) = desired.problems
    assert problem.user == loser
    assert f"source account {winner!r} is also 'carol' once lower-cased, and is migrated " \
        "as 'carol'" in problem.message


@pytest.mark.parametrize("name", ["robert", "Robert"])
def test_a_renamed_user_whose_account_is_locked_is_recorded_under_its_new_name(tmp_path, name):
    """dave (locked: '!!') migrated as robert: the target has robert, so robert is what
    the plan locks (user names lower-cased, as vpopmail's are)."""
    desired = build_desired(spec(tmp_path, f"users: [{{name: {name}, from: dave}}]\n"), SRC)
    assert locked(desired) == {"robert": "source account 'dave' is locked (shadow line 6)"}
    desired.lock_out(set())
    assert desired.domains["example.com"].users == {}
    assert [p.user for p in desired.problems] == ["robert"]


def test_passwds_own_password_field_is_the_one_the_old_server_checks(tmp_path):
    """pam_unix (and login without PAM) read the shadow entry only for passwd's ``x``
    (or an empty field): an account locked by editing its passwd field (``*``, ``!``)
    is locked whatever hash shadow holds, and a hash in passwd is its password, with a
    shadow entry or without one. Such a field is named by its passwd line, never shown."""
    des = "abJnggxhB/yWI"
    src = source(["ann:*:1000:1000::/h/ann:/bin/sh", "ben:!:1001:1001::/h/ben:/bin/sh",
                  f"cas:{des}:1002:1002::/h/cas:/bin/sh", f"dot:{des}:1003:1003::/h/dot:/bin/sh",
                  "eli::1004:1004::/h/eli:/bin/sh", "fay:x:1005:1005::/h/fay:/bin/sh"],
                 [f"ann:{H}:1:0:99999:7:::", f"ben:{H}:1:0:99999:7:::",
                  f"cas:{H}:1:0:99999:7:::", f"eli:{H}:1:0:99999:7:::",
                  f"fay:{H}:1:0:99999:7:::"])
    desired = build_desired(spec(tmp_path, "import: {}\n"), src)
    assert locked(desired) == {"ann": "source account 'ann' is locked (passwd line 1)",
                               "ben": "source account 'ben' is locked (passwd line 2)"}
    users = desired.domains["example.com"].users
    assert {n: (u.password.value.reveal(), u.password.origin) for n, u in users.items()
            if n not in ("ann", "ben")} == {
        "cas": (des, "passwd (DES crypt)"), "dot": (des, "passwd (DES crypt)"),
        "eli": (H, "shadow (MD5 crypt)"), "fay": (H, "shadow (MD5 crypt)")}
    desired.lock_out(set())  # a target without them: the locked ones are not created
    assert sorted(desired.domains["example.com"].users) == ["cas", "dot", "eli", "fay"]
    assert desired.problems[0].message.startswith(
        "password of source account 'ann' cannot be migrated (passwd line 1): account is "
        "locked")


def test_an_unusable_password_in_passwds_own_field_names_its_line_not_its_value(tmp_path):
    src = source(["bob:Tr0ub4dor:1000:1000::/home/bob:/bin/sh"], ["root:*:1:0:99999:7:::"])
    desired = build_desired(spec(tmp_path, "import: {uid_min: 1000}\n"), src)
    (problem,) = desired.problems
    assert problem.message.startswith("password of source account 'bob' cannot be migrated "
                                      "(passwd line 1): not a crypt(3) hash")
    assert "Tr0ub" not in problem.message


@pytest.mark.parametrize("name", ["vpasswd", "vpasswd.cdb", ".dir-control", ".qmail-default",
                                  ".qmail-sales"])
def test_an_account_named_like_a_file_of_the_domain_directory_is_a_problem(tmp_path, name):
    """vadduser makes the first 100 users' directories in the domain's directory, beside
    vpasswd, vpasswd.cdb, .dir-control and the .qmail-NAME files: a user of such a name
    failed at apply, and stopped every apply there; a .qmail-X directory would be taken
    by qmail for X's delivery instructions. Now a listed problem, and the rest goes on."""
    src = source([f"{name}:x:1000:1000::/home/v:/bin/sh", "alice:x:1001:1001::/home/a:/bin/sh"],
                 [f"{name}:{H}:1:0:99999:7:::", f"alice:{H}:1:0:99999:7:::"])
    desired = build_desired(spec(tmp_path, "import: {uid_min: 1000}\n"), src)
    assert sorted(desired.domains["example.com"].users) == ["alice"]
    (problem,) = desired.problems
    assert problem.user == name and "source account name cannot be a vpopmail user" in \
        problem.message and "domain's directory" in problem.message
    with pytest.raises(SpecError, match="domain's directory"):
        spec(tmp_path, f"users: [{{name: '{name}', password: {{hash: '{H}'}}}}]\n")


def test_a_source_account_named_postmaster_is_a_listed_problem_not_left_out_silently(tmp_path):
    """postmaster is vpopmail's own account (vadddomain makes it): an account of that
    name the import rule takes is not migrated, and the plan says so (its spool's mail
    would otherwise stay behind unmentioned); a user of another name migrates it."""
    src = source(["Postmaster:x:1000:1000::/home/pm:/bin/sh", "alice:x:1001:1001::/h/a:/bin/sh"],
                 [f"Postmaster:{H}:1:0:99999:7:::", f"alice:{H}:1:0:99999:7:::"])
    desired = build_desired(spec(tmp_path, "import: {}\n"), src)
    assert sorted(desired.domains["example.com"].users) == ["alice"]
    (problem,) = desired.problems
    assert problem.user == "Postmaster" and problem.message.startswith(
        "source account 'Postmaster' is not migrated: postmaster is vpopmail's own account")
    desired = build_desired(spec(tmp_path, "import: {}\nusers: [{name: pm, from: Postmaster}]\n"),
                            src)
    assert sorted(desired.domains["example.com"].users) == ["alice", "pm"]
    assert desired.problems == []
