"""mailplan init: awkward source trees give specs that validate, hold no secret, and plan
exactly what the source contains."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from migration import SourceAccount, install_target, mailplan, make_source

from mailplan.errors import MailplanError
from mailplan.facts.survey import Survey, parse_find, parse_local_names, parse_sendmail_cf
from mailplan.init import choose_domains, schema_reference, write_spec_file
from mailplan.spec import SCHEMA_DIR, load_spec

MBOX = b"From a@x.example Mon Nov  2 10:00:00 2026\nSubject: hi\n\nhello\n\n"  # mail.local's end
APR1 = "$apr1$abcdefgh$0123456789abcdefghijkl"
WHILE_MISSING = ("  # plan warns while none is where this names it; one put there is read "
                 "(set\n  # import_aliases: true under the domain to migrate its aliases)\n")
ALIAS_DOMAINS = ["example.net", "extra.example", "mail.example.com"]


def test_sendmail_config_parsers():
    assert parse_local_names("# names\nexample.com\n\n  mail.example.com # mx\n", "lhn") == [
        ("example.com", "lhn"), ("mail.example.com", "lhn")]
    names, files = parse_sendmail_cf("Cwlocalhost example.org\nCw other.example\n"
                                     "Fw-o /etc/mail/local-host-names\nFw/etc/extra %[^#]\n"
                                     "DSsmarthost\n", "cf")
    assert names == [("localhost", "cf (Cw)"), ("example.org", "cf (Cw)"),
                     ("other.example", "cf (Cw)")]
    assert files == ["/etc/mail/local-host-names", "/etc/extra"]
    assert parse_find(b"/s\0alice\x0012\0/s\0we\tird\nname\x003\0/s\0cut") == [
        ("/s", "alice", 12), ("/s", "we\tird\nname", 3)]


@pytest.mark.parametrize(("found", "given", "primary", "aliases"), [
    (["mail.example.com", "example.com", "example.net"], [], "example.com",
     ["mail.example.com", "example.net"]),
    (["localhost", "Example.COM.", "[192.0.2.1]", "example.com"], [], "example.com", []),
    (["example.com"], ["b.example", "A.example", "b.example"], "b.example", ["a.example"]),
    # a --domain written with the root's dot, as sendmail's configuration's names are read
    ([], ["Example.COM.", "example.net", "example.com"], "example.com", ["example.net"]),
])
def test_choose_domains(found, given, primary, aliases):
    survey = Survey("h", "", "/etc/passwd", "/etc/shadow", [], True,
                    domains=[(n, "lhn") for n in found])
    chosen = choose_domains(survey, given)
    assert (chosen.primary, chosen.aliases) == (primary, aliases)


def test_no_domain_is_an_error_naming_the_fix():
    survey = Survey("h", "", "/etc/passwd", "/etc/shadow", [], True,
                    domains=[("localhost", "lhn")])
    with pytest.raises(Exception, match="--domain"):
        choose_domains(survey, [])


def awkward_source(root):
    accounts = [SourceAccount("alice", 1000, "Alice Liddell,Room 1", "pw-alice"),
                SourceAccount("Bob", 1001, "Bob", "pw-bob"),
                SourceAccount("carol", 1002, "Carol", raw_hash="!$6$salt$lockedhashvalue"),
                SourceAccount("dave", 1003, "Dave, no mail", "pw-dave"),
                SourceAccount("erin", 1004, "Erin", raw_hash=APR1),
                SourceAccount("frank", 1005, "Frank", "pw-frank", in_shadow=False),
                SourceAccount("x", 1006, "One letter", "pw-x"),
                SourceAccount("gina", 1007, "Gina", "pw-gina"),
                SourceAccount("henry", 70000, "High uid", "pw-henry"),
                SourceAccount("o'neil", 1008, "Shaun O'Neil", "pw-oneil"),
                SourceAccount("Ivan", 1009, "Ivan", "pw-ivan1"),
                SourceAccount("ivan", 1010, "ivan", "pw-ivan2")]
    src = make_source(root, accounts)
    spool = src / "var/spool/mail"
    for name in ("alice", "Bob", "carol", "erin", "frank", "x", "henry", "o'neil", "Ivan",
                 "ivan"):
        (spool / name).write_bytes(MBOX)
    (spool / ".hidden").write_bytes(MBOX)
    (spool / "nobody-here").write_bytes(b"")  # a spool with no account: ignored
    (src / "home/gina/mail").mkdir(parents=True)
    (src / "home/gina/mail/Work").write_bytes(MBOX)
    (src / "etc/mail").mkdir()
    (src / "etc/mail/local-host-names").write_text(
        "# sendmail local names\nlocalhost\nmail.example.com\nexample.com\n")
    (src / "etc/mail/sendmail.cf").write_text("Cwlocalhost example.net\nFw-o /etc/extra\n")
    (src / "etc/extra").write_text("extra.example\n")
    (src / "etc/aliases").write_text("root: alice\ninfo: alice, bob\n")
    (src / "etc/mail/virtusertable").write_text("sales@example.com alice\n")
    return src, accounts


def test_schema_reference_is_relative_only_inside_the_spec_s_tree(tmp_path):
    """The $schema= comment was relative to the spec wherever the schema was (through a
    virtualenv's site-packages: ../../venv/lib/python3.11/site-packages/...), which broke
    editor checking once the spec was moved or committed. Now: ./ relative in the spec's
    own tree (a mailplan checkout, as the README shows), else absolute."""
    checkout = tmp_path / "checkout"
    (checkout / "schemas").mkdir(parents=True)
    schema = checkout / "schemas" / "spec-v1.schema.json"
    schema.write_text("{}")
    assert schema_reference(checkout / "m.yaml", schema) == "./schemas/spec-v1.schema.json"
    assert schema_reference(tmp_path / "m.yaml", schema) == \
        "./checkout/schemas/spec-v1.schema.json"
    assert schema_reference(tmp_path / "elsewhere" / "m.yaml", schema) == str(schema)
    assert schema_reference(None, schema) == str(schema)
    venv = tmp_path / "venv/lib/python3.11/site-packages/mailplan/schemas"
    venv.mkdir(parents=True)
    (venv / "spec-v1.schema.json").write_text("{}")
    for out in (tmp_path / "m.yaml", tmp_path / "specs" / "m.yaml"):
        assert schema_reference(out, venv / "spec-v1.schema.json") == \
            str(venv / "spec-v1.schema.json")


def test_init_awkward_tree_validates_holds_no_secret_and_plans_what_is_there(tmp_path):
    src, accounts = awkward_source(tmp_path / "old")
    out = tmp_path / "migration.yaml"
    res = mailplan("init", "--source", "local", "--root", str(src), "-o", str(out), check=True)
    assert "5 account(s) to migrate, 9 left out" in res.stderr
    text = out.read_text()
    assert text.startswith("# yaml-language-server: $schema=")
    schema = text.splitlines()[0].split("=", 1)[1]
    # not in the spec's tree: the installed schema's absolute path (before, a path
    # relative to the spec that broke once the spec was moved or committed)
    assert schema == str((SCHEMA_DIR / "spec-v1.schema.json").resolve())
    assert (out.parent / schema).resolve().name == "spec-v1.schema.json"
    assert (out.parent / schema).resolve().exists()
    for account in accounts:
        if account.in_shadow:
            assert account.hash() not in text
    assert "$6$" not in text and "$apr1$" not in text and "pw-" not in text
    load_spec(out)  # validates
    assert mailplan("validate", str(out)).returncode == 0
    data = yaml.safe_load(text)
    body = data["domains"]["example.com"]
    assert [(u["name"], u.get("from")) for u in body["users"]] == [
        ("alice", None), ("bob", "Bob"), ("gina", None), ("o'neil", None), ("ivan", "Ivan")]
    assert body["alias_domains"] == ["mail.example.com", "example.net", "extra.example"]
    assert body["import_aliases"] is True
    assert data["source"]["virtusertable"] == f"{src}/etc/mail/virtusertable"
    assert data["source"]["aliases"] == f"{src}/etc/aliases"
    reasons = {line.split(": ", 1)[0].strip("# "): line.split(": ", 1)[1]
               for line in text.splitlines() if line.startswith("    #   ")}
    assert reasons["carol"].startswith("account is locked")
    assert reasons["dave"] == "no mailbox (no spool file, no ~/mbox, no mail folders)"
    assert "Apache apr1" in reasons["erin"]
    assert reasons["frank"] == "no entry in the shadow file"
    assert reasons["x"].startswith("not a name vpopmail accepts")
    assert reasons["henry"].startswith("system account (uid 70000")
    assert reasons["root"].startswith("system account (uid 0")
    assert reasons["ivan"] == "same mailbox name as account 'Ivan' once lower-cased"
    assert "  # not a domain: localhost" in text
    # the target's Python is named in a comment that is a valid entry once uncommented
    (line,) = [ln for ln in text.splitlines() if ln.startswith("    # python: ")]
    uncommented = out.parent / "uncommented.yaml"
    uncommented.write_text(text.replace(line, "    python: /usr/bin/python3"))
    assert load_spec(uncommented).data["hosts"]["newmail"]["python"] == "/usr/bin/python3"
    assert "sudo" not in data["hosts"]["newmail"]  # the placeholder target logs in as root


def test_init_lists_the_aliases_files_of_sendmail_cfs_alias_file_option(tmp_path):
    """sendmail.cf's AliasFile lines name the files sendmail reads: init lists those
    that exist, in order, and says in a comment why any other one is not read (a
    database that is no file, a missing file); /etc/aliases beside them is not named."""
    src, _ = awkward_source(tmp_path / "old")
    (src / "etc/mail/aliases.local").write_text("sales: alice\n")
    (src / "etc/mail/sendmail.cf").write_text(
        "Cwlocalhost example.net\nO AliasFile=/etc/mail/aliases.local,nis:mail.aliases\n"
        "OA/etc/mail/gone\n")
    out = tmp_path / "migration.yaml"
    mailplan("init", "--source", "local", "--root", str(src), "-o", str(out), check=True)
    text = out.read_text()
    data = yaml.safe_load(text)
    assert data["source"]["aliases"] == [f"{src}/etc/mail/aliases.local"]
    assert data["domains"]["example.com"]["import_aliases"] is True
    assert "  # not read: AliasFile nis:mail.aliases: a nis database, not a file\n" in text
    assert f"  # not read: AliasFile {src}/etc/mail/gone: does not exist\n" in text
    (src / "etc/mail/sendmail.cf").write_text("O AliasFile=ldap:-k uid=%0 -v mail\n")
    mailplan("init", "--source", "local", "--root", str(src), "-o", str(out), "--force",
             check=True)
    data = yaml.safe_load(out.read_text())
    assert "aliases" not in data["source"]  # sendmail reads no aliases file
    assert "import_aliases" not in data["domains"]["example.com"]


def test_init_reads_sendmail_cfs_alias_file_line_as_plan_does(tmp_path):
    """A value continued on the next line (a line starting with a blank), a shortened
    option name and a comment: init lists the files plan reads, no more, no fewer."""
    src, _ = awkward_source(tmp_path / "old")
    for name in ("aliases.local", "aliases.more", "aliases.old", "aliases"):
        (src / "etc/mail" / name).write_text("sales: alice\n")
    (src / "etc/mail/sendmail.cf").write_text(
        "O AliasFile=/etc/mail/aliases.local,\n\t/etc/mail/aliases.more  # not /etc/aliases,"
        " /etc/mail/aliases.old\nO AliasF=/etc/mail/aliases\n")
    out = tmp_path / "migration.yaml"
    mailplan("init", "--source", "local", "--root", str(src), "-o", str(out), check=True)
    data = yaml.safe_load(out.read_text())
    assert data["source"]["aliases"] == [f"{src}/etc/mail/{n}" for n in (
        "aliases.local", "aliases.more", "aliases")]


def _runnable(tmp_path, data):
    """The spec ``data`` pointed at a stand-in target on this machine, written to a file."""
    target = install_target(tmp_path / "target")
    data["hosts"]["newmail"] = {"local": True}
    data["target"].update(vpopmail_dir=target.vpopmail_dir, qmail_dir=target.qmail_dir)
    runnable = tmp_path / "run.yaml"
    runnable.write_text(yaml.safe_dump(data, sort_keys=False))
    return runnable


def test_init_with_a_root_names_the_aliases_file_under_it_even_when_there_is_none(tmp_path):
    """Without source.aliases plan reads sendmail.cf's AliasFile paths, else /etc/aliases,
    as they are named: for a copy under --root, the files of the admin's own machine. So
    init writes where sendmail keeps the file under the root, saying it is not there;
    plan warns while it is missing and reads it once it is there."""
    src = make_source(tmp_path / "old", [SourceAccount("zoe", 1500, "Zoe", "pw")])
    (src / "var/spool/mail/zoe").write_bytes(MBOX)
    out = tmp_path / "migration.yaml"
    init = ["init", "--source", "local", "--root", str(src), "--domain", "zoe.example",
            "--uid-min", "1500", "-o", str(out), "--force"]
    mailplan(*init, check=True)
    text = out.read_text()
    assert (f"  # no aliases file found ({src}/etc/aliases, {src}/etc/mail/aliases)\n"
            f"{WHILE_MISSING}  aliases: {src}/etc/aliases\n") in text, text
    data = yaml.safe_load(text)
    assert "import_aliases" not in data["domains"]["zoe.example"]
    runnable = _runnable(tmp_path, data)
    res = mailplan("plan", str(runnable), check=True)
    assert (f"no aliases file at {src}/etc/aliases (source.aliases): no aliases are read "
            "from it") in res.stdout + res.stderr, res.stdout + res.stderr
    (src / "etc/aliases").write_text("staff: zoe\n")
    res = mailplan("plan", "-v", str(runnable), check=True)
    assert f"aliases are read from {src}/etc/aliases: source.aliases in the spec" in res.stdout
    assert "no aliases file at" not in res.stdout + res.stderr
    # sendmail.cf's AliasFile names a file the copy lacks: that file, under the root
    (src / "etc/aliases").unlink()
    (src / "etc/mail").mkdir()
    (src / "etc/mail/sendmail.cf").write_text("O AliasFile=/etc/mail/aliases,nis:aliases\n")
    mailplan(*init, check=True)
    text = out.read_text()
    assert (f"  # sendmail.cf's AliasFile names no file there is\n{WHILE_MISSING}"
            f"  aliases:\n    - {src}/etc/mail/aliases\n"
            "  # not read: AliasFile nis:aliases: a nis database, not a file\n") in text, text
    load_spec(out)


def _ssh_source(sshd):
    return ["--source", f"ssh://{sshd.user}@127.0.0.1:{sshd.port}", "--identity",
            str(sshd.client_key), "--known-hosts", str(sshd.known_hosts)]


def test_init_with_a_local_root_writes_it_and_reads_the_homes_under_it(tmp_path):
    """A copy's passwd names homes as on the old server (/home/zed, not on this
    machine): init counts the folders of the copy's /home/zed and writes source.root,
    so that plan reads that home's ~/.forward and folders in the copy too."""
    assert not os.path.lexists("/home/zed"), "the test needs no /home/zed on this machine"
    src = make_source(tmp_path / "old", [SourceAccount("zoe", 1500, "Zoe", "pw")])
    (src / "var/spool/mail/zoe").write_bytes(MBOX)
    passwd = src / "etc/passwd"
    passwd.write_text(passwd.read_text() + "zed:x:1501:1501:Zed:/home/zed:/bin/sh\n")
    shadow = src / "etc/shadow"
    shadow.write_text(shadow.read_text() + "zed:" + SourceAccount("zed", 1501, "", "pw").hash()
                      + ":19000:0:99999:7:::\n")
    (src / "home/zed/mail").mkdir(parents=True)
    (src / "home/zed/mail/Work").write_bytes(MBOX)  # zed's only mail: in the copy's home
    (src / "home/zed/.forward").write_text("zed@elsewhere.example\n")
    out = tmp_path / "migration.yaml"
    mailplan("init", "--source", "local", "--root", str(src), "--domain", "zoe.example",
             "--uid-min", "1500", "-o", str(out), check=True)
    text = out.read_text()
    assert (f"source:\n  host: oldmail\n  root: {src}  # a copy of the old server's disk: "
            "the paths its files name are read under it\n") in text, text
    assert "NOTE" not in text
    assert "      - name: zed  # uid 1501; 1 folder(s) 62B\n" in text, text
    res = mailplan("plan", str(_runnable(tmp_path, yaml.safe_load(text))), check=True)
    assert "+ mailbox zed@zoe.example Work\n" in res.stdout, res.stdout
    assert ("+ forward zed@zoe.example\n      &zed@elsewhere.example (from "
            f"{src}/home/zed/.forward:1)") in res.stdout, res.stdout


def test_init_offers_the_postmaster_password_a_new_domain_otherwise_gets_at_random(tmp_path):
    """Without postmaster_password vadddomain's random password is never shown: the
    spec init writes names the key, commented out, and says what leaving it out means;
    uncommented it validates."""
    src = make_source(tmp_path / "old", [SourceAccount("zoe", 1500, "Zoe", "pw")])
    (src / "var/spool/mail/zoe").write_bytes(MBOX)
    out = tmp_path / "migration.yaml"
    mailplan("init", "--source", "local", "--root", str(src), "--domain", "zoe.example",
             "--uid-min", "1500", "-o", str(out), check=True)
    text = out.read_text()
    line = ("    # postmaster_password: {env: PM_PASSWORD}  # unless set: a random one, never "
            "shown, and no postmaster login\n")
    assert line in text, text
    out.write_text(text.replace(line, "    postmaster_password: {env: PM_PASSWORD}\n"))
    res = mailplan("validate", str(out), env={"PM_PASSWORD": "Pm-Secret-1"}, check=True)
    assert "valid" in res.stdout, res.stdout


def test_init_over_ssh_says_when_passwd_names_homes_outside_the_root(tmp_path, sshd):
    """An ssh:// source cannot have source.root: plan reads the homes passwd names
    there, outside the root; the spec says so, with the way to read the copy's folders.
    Homes inside the root, or only system accounts outside: no note."""
    src = make_source(tmp_path / "old", [SourceAccount("zoe", 1500, "Zoe", "pw")])
    (src / "var/spool/mail/zoe").write_bytes(MBOX)
    init = ["init", *_ssh_source(sshd), "--root", str(src), "--domain", "zoe.example",
            "--uid-min", "1500"]
    first = mailplan(*init, check=True).stdout
    assert "NOTE: home directories" not in first
    assert "root" not in yaml.safe_load(first)["source"]
    passwd = src / "etc/passwd"
    passwd.write_text(passwd.read_text() + "zed:x:1501:1501:Zed:/nowhere/zed:/bin/sh\n")
    text = mailplan(*init, check=True).stdout
    assert ("  # NOTE: home directories are read as passwd names them, not under --root "
            "(e.g. /nowhere/zed):\n") in text, text
    assert f"  # account (e.g. {src}/home/%u/mail); the copy's ~/.forward files" in text
    assert "NOTE: home directories" not in mailplan(*init[:-1], "1502", check=True).stdout


def test_init_with_a_root_reads_the_files_of_fw_lines_under_it(tmp_path, sshd):
    """sendmail.cf's Fw lines name files as the old server has them (/etc/extra). With a
    local source plan reads them under source.root, so init writes no class w; over SSH
    (no source.root) plan would read them outside the root, so init writes the class w it
    read under --root, the host's names from the copy's hostname and hosts files
    included."""
    src, _ = awkward_source(tmp_path / "old")  # sendmail.cf: Fw-o /etc/extra
    (src / "etc/hostname").write_text("oldmail.example.org\n")
    (src / "etc/hosts").write_text("192.0.2.7 oldmail.example.org oldmail bad_name\n")
    out = tmp_path / "migration.yaml"
    mailplan("init", "--source", "local", "--root", str(src), "-o", str(out), check=True)
    text = out.read_text()
    assert "local_hostnames" not in text and "class w" not in text
    names = ["example.com", "example.net", "extra.example", "mail.example.com", "oldmail",
             "oldmail.example.org"]
    res = mailplan("plan", "-v", str(_runnable(tmp_path, yaml.safe_load(text))), check=True)
    assert (f"(sendmail's class w, from {src}/etc/mail and the host name) is a local name: "
            + ", ".join(sorted([*names, "bad_name"]))) in res.stdout, res.stdout
    text = mailplan("init", *_ssh_source(sshd), "--root", str(src), check=True).stdout
    assert ("  # sendmail's class w as read under --root: sendmail.cf's Fw lines name "
            "/etc/extra,\n") in text, text
    assert "  # left out of local_hostnames (not a name the spec takes): bad_name\n" in text
    data = yaml.safe_load(text)
    assert data["source"]["local_hostnames"] == names
    # no Fw line: plan's default reads the copy's files, and init writes no list
    (src / "etc/mail/sendmail.cf").write_text("Cwlocalhost example.net\n")
    text = mailplan("init", *_ssh_source(sshd), "--root", str(src), check=True).stdout
    assert "local_hostnames" not in text


def test_init_with_a_target_user_not_root_writes_sudo(tmp_path):
    src, _accounts = awkward_source(tmp_path / "old")
    out = tmp_path / "migration.yaml"
    mailplan("init", "--source", "local", "--root", str(src), "-o", str(out),
             "--target", "ssh://admin@newmail.example.com", check=True)
    data = yaml.safe_load(out.read_text())
    assert data["hosts"]["newmail"] == {"address": "newmail.example.com", "user": "admin",
                                        "sudo": True}
    load_spec(out)  # validates

    # point the spec at the stand-in target and plan: exactly the source's content
    runnable = _runnable(tmp_path, data)
    planned = json.loads(mailplan("plan", str(runnable), "--json", check=True).stdout)
    changes = {(c["kind"], c["user"], c["item"]) for c in planned["changes"]
               if c["kind"] in ("user", "mailbox")}
    assert changes == {("user", u, None) for u in ("alice", "bob", "gina", "o'neil", "ivan")} | {
        ("mailbox", "alice", "INBOX"), ("mailbox", "bob", "INBOX"), ("mailbox", "gina", "Work"),
        ("mailbox", "o'neil", "INBOX"), ("mailbox", "ivan", "INBOX")}
    kinds = {(c["kind"], c["user"] or c["domain"]) for c in planned["changes"]}
    assert ("alias", "info") in kinds and ("alias", "sales") in kinds
    assert ("alias", "root") not in kinds
    assert sorted(c["domain"] for c in planned["changes"]
                  if c["kind"] == "alias_domain") == ALIAS_DOMAINS
    assert not [p for p in planned["problems"]
                if p["user"] in ("alice", "bob", "gina", "o'neil", "ivan")
                and "cannot" in p["message"]]


def test_init_reads_var_mail_and_says_when_shadow_is_unreadable(tmp_path):
    src = make_source(tmp_path / "old", [SourceAccount("zoe", 1500, "Zoe", "pw")])
    (src / "var/spool/mail").rmdir()
    (src / "var/mail").mkdir()
    (src / "var/mail/zoe").write_bytes(MBOX)
    os.chmod(src / "etc/shadow", 0)
    res = mailplan("init", "--source", "local", "--root", str(src), "--domain", "zoe.example",
                   "--uid-min", "1500")
    os.chmod(src / "etc/shadow", 0o640)
    if os.geteuid() == 0:  # root reads a 0000 file: the warning cannot appear
        assert "WARNING" not in res.stdout
    else:
        assert "was not readable" in res.stdout
    data = yaml.safe_load(res.stdout)
    assert data["source"]["spool"] == f"{src}/var/mail"
    assert [u["name"] for u in data["domains"]["zoe.example"]["users"]] == ["zoe"]
    # the files init looked for, under --root (not the admin's own /etc/aliases)
    assert f"  # no aliases file found ({src}/etc/aliases, {src}/etc/mail/aliases)\n" \
        in res.stdout, res.stdout


def test_init_comments_stay_comments_whatever_the_passwd_names(tmp_path):
    accounts = [SourceAccount("zoe", 1500, "Zoe", "pw"),
                SourceAccount("ev\rbad", 1501, "Evil", "pw"),
                SourceAccount("esc\x1b[2J", 1502, "Esc", "pw")]
    src = make_source(tmp_path / "old", accounts)
    passwd = src / "etc/passwd"
    for a in accounts:
        (src / "var/spool/mail" / a.name).write_bytes(MBOX)
        passwd.write_bytes(passwd.read_bytes().replace(f"/home/{a.name}:".encode(),
                                                       b"/home/zoe:"))
    res = mailplan("init", "--source", "local", "--root", str(src), "--domain", "zoe.example",
                   "--uid-min", "1500", check=True)
    assert "\r" not in res.stdout and "\x1b" not in res.stdout
    data = yaml.safe_load(res.stdout)
    assert set(data) == {"version", "hosts", "source", "target", "domains"}
    assert [u["name"] for u in data["domains"]["zoe.example"]["users"]] == ["zoe"]
    assert "#   esc\\x1b[2J: not a name vpopmail accepts" in res.stdout


def test_init_judges_an_account_by_passwds_own_password_field(tmp_path):
    """Locked by editing passwd (``*``): init leaves it out, as plan would lock it; a
    hash in passwd without a shadow entry is its password: init migrates it."""
    accounts = [SourceAccount("zoe", 1500, "Zoe", "pw"), SourceAccount("yan", 1501, "Yan", "pw"),
                SourceAccount("xia", 1502, "Xia", "pw", in_shadow=False)]
    src = make_source(tmp_path / "old", accounts)
    for a in accounts:
        (src / "var/spool/mail" / a.name).write_bytes(MBOX)
    passwd = src / "etc/passwd"
    passwd.write_text(passwd.read_text().replace("yan:x:", "yan:*:")
                      .replace("xia:x:", "xia:abJnggxhB/yWI:"))
    res = mailplan("init", "--source", "local", "--root", str(src), "--domain", "zoe.example",
                   "--uid-min", "1500", check=True)
    data = yaml.safe_load(res.stdout)
    assert [u["name"] for u in data["domains"]["zoe.example"]["users"]] == ["zoe", "xia"]
    assert "#   yan: account is locked" in res.stdout, res.stdout
    assert "abJnggxhB" not in res.stdout


def test_init_reads_passwd_and_shadow_as_the_old_server_does(tmp_path):
    """Comment and empty lines skipped (a commented-out account is none), a shadow line
    in the old 5-field form read with its password, as plan reads them."""
    accounts = [SourceAccount("zoe", 1500, "Zoe", "pw"), SourceAccount("yan", 1501, "Yan", "pw")]
    src = make_source(tmp_path / "old", accounts)
    for a in accounts:
        (src / "var/spool/mail" / a.name).write_bytes(MBOX)
    passwd, shadow = src / "etc/passwd", src / "etc/shadow"
    passwd.write_text("# accounts\n\n" + passwd.read_text().replace("yan:x:", "#yan:x:"))
    shadow.write_text("\n" + shadow.read_text().replace(":19000:0:99999:7:::\nyan",
                                                         ":19000:0:99999\n#yan"))
    res = mailplan("init", "--source", "local", "--root", str(src), "--domain", "zoe.example",
                   "--uid-min", "1500", check=True)
    data = yaml.safe_load(res.stdout)
    assert [u["name"] for u in data["domains"]["zoe.example"]["users"]] == ["zoe"]
    assert "yan" not in res.stdout and "zoe: " not in res.stdout, res.stdout
    assert (f"  # note: {passwd} lines 1, 6 (comments), 2 (empty): skipped, as the old "
            "server's C library skips them") in res.stdout, res.stdout
    assert f"  # note: {shadow} lines 1 (empty), 5 (a comment): skipped" in res.stdout
    assert f"  # note: {shadow} line 4 ('zoe'): 5 fields, shadow's old form" in res.stdout


def test_init_over_ssh_writes_the_host_entry(tmp_path, sshd):
    src, _ = awkward_source(tmp_path / "old")
    out = tmp_path / "m.yaml"
    mailplan("init", "--source", f"ssh://{sshd.user}@127.0.0.1:{sshd.port}", "--identity",
             str(sshd.client_key), "--known-hosts", str(sshd.known_hosts), "--root", str(src),
             "--domain", "example.org", "-o", str(out), check=True)
    data = load_spec(out).data
    assert data["hosts"]["oldmail"] == {"address": "127.0.0.1", "user": sshd.user,
                                        "port": sshd.port,
                                        "identity_file": str(sshd.client_key),
                                        "known_hosts": str(sshd.known_hosts)}
    assert len(data["domains"]["example.org"]["users"]) == 5
    again = mailplan("init", "--source", "local", "--root", str(src), "-o", str(out))
    assert again.returncode == 1 and "already exists" in again.stderr


def test_host_files_are_relative_to_the_spec_wherever_plan_runs(tmp_path, sshd):
    """``--identity`` and ``--known-hosts`` relative to the directory init runs in were
    written as given, and the spec's identity_file and known_hosts were read relative to
    the directory plan ran in: from anywhere else the key was missing and the host key
    "unknown". init now writes them absolute, and the spec reads a relative one relative
    to itself (as a password file:), from whichever directory plan runs in."""
    src = make_source(tmp_path / "old", [SourceAccount("zoe", 1500, "Zoe", "pw")])
    (src / "var/spool/mail/zoe").write_bytes(MBOX)
    keys = tmp_path / "keys"
    keys.mkdir()
    for f in (sshd.client_key, sshd.known_hosts):
        (keys / f.name).write_bytes(f.read_bytes())
        (keys / f.name).chmod(0o600)
    (tmp_path / "specs").mkdir()
    out = tmp_path / "specs/m.yaml"
    mailplan("init", "--source", f"ssh://{sshd.user}@127.0.0.1:{sshd.port}", "--identity",
             sshd.client_key.name, "--known-hosts", sshd.known_hosts.name, "--root",
             str(src), "--domain", "zoe.example", "--uid-min", "1500", "-o", str(out),
             cwd=keys, check=True)
    data = yaml.safe_load(out.read_text())
    assert data["hosts"]["oldmail"]["identity_file"] == str(keys / sshd.client_key.name)
    assert data["hosts"]["oldmail"]["known_hosts"] == str(keys / sshd.known_hosts.name)
    runnable = _runnable(tmp_path / "specs", data)
    res = mailplan("plan", str(runnable), cwd=tmp_path / "old", check=True)
    assert "+ user zoe@zoe.example" in res.stdout, res.stdout
    # written relative to the spec, they are read there, not in the current directory
    data["hosts"]["oldmail"].update(identity_file="../keys/" + sshd.client_key.name,
                                    known_hosts="../keys/" + sshd.known_hosts.name)
    runnable.write_text(yaml.safe_dump(data, sort_keys=False))
    assert load_spec(runnable).data["hosts"]["oldmail"]["known_hosts"] == str(
        keys / sshd.known_hosts.name)
    res = mailplan("plan", str(runnable), cwd=tmp_path, check=True)  # ../keys: not here
    assert "+ user zoe@zoe.example" in res.stdout, res.stdout


def test_init_migrates_an_account_whose_mail_is_in_its_mbox(tmp_path, sshd):
    """Once ~/mbox exists UW-IMAP keeps the INBOX there (c-client moves the spool's mail
    into it), and plan imports it; init looked at the spool and the folders only, and
    left such an account out as "no mailbox". A link at ~/mbox is not read (as by the
    import), nor another account's file through it."""
    src = make_source(tmp_path / "old", [SourceAccount("zoe", 1500, "Zoe", "pw"),
                                         SourceAccount("zed", 1501, "Zed", "pw"),
                                         SourceAccount("eve", 1502, "Eve", "pw")])
    (src / "home/zoe").mkdir(parents=True, exist_ok=True)
    (src / "home/zoe/mbox").write_bytes(MBOX)  # no spool, no folders: only ~/mbox
    (src / "home/eve").mkdir(parents=True, exist_ok=True)
    (src / "home/eve/mbox").symlink_to(src / "home/zoe/mbox")
    out = tmp_path / "m.yaml"
    mailplan("init", "--source", "local", "--root", str(src), "--domain", "zoe.example",
             "--uid-min", "1500", "-o", str(out), check=True)
    text = out.read_text()
    assert "      - name: zoe  # uid 1500; ~/mbox 62B\n" in text, text
    assert "#   zed: no mailbox (no spool file, no ~/mbox, no mail folders)" in text, text
    assert "#   eve: no mailbox (no spool file, no ~/mbox, no mail folders)" in text, text
    res = mailplan("plan", str(_runnable(tmp_path, yaml.safe_load(text))), check=True)
    assert "+ mailbox zoe@zoe.example INBOX (~/mbox)\n" in res.stdout, res.stdout
    over_ssh = mailplan("init", *_ssh_source(sshd), "--root", str(src), "--domain",
                        "zoe.example", "--uid-min", "1500", check=True).stdout
    zoe = next(line for line in over_ssh.splitlines() if "- name: zoe" in line)
    assert zoe.endswith("; ~/mbox 62B"), over_ssh


def test_init_without_a_domain_names_the_machine_it_read(tmp_path):
    """A local source is this machine (its copy under --root), not the spec's host name
    for it, which the admin has not seen yet; the spec's first line says so too."""
    src = make_source(tmp_path / "old", [SourceAccount("zoe", 1500, "Zoe", "pw")])
    res = mailplan("init", "--source", "local", "--root", str(src))
    assert res.returncode == 1 and res.stderr.splitlines() == [
        f"Error: no mail domain found in sendmail's configuration on this machine ({src})",
        "  hint: name it: mailplan init --domain example.com ..."], res.stderr
    res = mailplan("init", "--source", "local", "--root", str(src), "--domain", "z.example",
                   check=True)
    assert f"\n# Written by `mailplan init` from this machine ({src}). Review" in res.stdout, \
        res.stdout[:300]


def test_init_with_a_wrong_root_says_to_check_it(tmp_path):
    """The error names the file and ends with find's reason, not an exit status glued
    to it ("No such file or directory 1"), and the hint names --root."""
    res = mailplan("init", "--source", "local", "--root", str(tmp_path / "nowhere"),
                   "--domain", "example.com")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.splitlines() == [
        f"Error: host this machine ({tmp_path}/nowhere), step survey the source: cannot "
        f"read {tmp_path}/nowhere/etc/"
        f"passwd: cat: {tmp_path}/nowhere/etc/passwd: No such file or directory",
        f"  hint: check --root: {tmp_path}/nowhere holds no etc/passwd"]
    # a directory where etc/passwd belongs is no passwd file either (not a matter of
    # reading it as root)
    (tmp_path / "odd/etc/passwd").mkdir(parents=True)
    res = mailplan("init", "--source", "local", "--root", str(tmp_path / "odd"),
                   "--domain", "example.com")
    assert res.returncode == 1 and res.stderr.splitlines()[-1] == (
        f"  hint: check --root: {tmp_path}/odd holds no etc/passwd"), res.stderr


def test_init_refuses_an_unwritable_out_before_reading_the_source(tmp_path):
    """-o in a directory that does not exist, or naming a spec that exists, is refused
    before the source is read (a --root that holds nothing is never looked at), with a
    sentence, not a traceback from the temp file beside it."""
    (tmp_path / "m.yaml").write_text("mine\n")
    for out, said in ((tmp_path / "nowhere/m.yaml",
                       f"Error: cannot write {tmp_path}/nowhere/m.yaml: {tmp_path}/nowhere "
                       "is not a directory"),
                      (tmp_path / "m.yaml", f"Error: {tmp_path}/m.yaml already exists")):
        res = mailplan("init", "--source", "local", "--root", str(tmp_path / "empty"),
                       "--domain", "example.com", "-o", str(out))
        assert res.returncode == 1 and res.stderr.splitlines()[0] == said, res.stderr
    assert (tmp_path / "m.yaml").read_text() == "mine\n"
    src = make_source(tmp_path / "src", [SourceAccount("ann", 1000, "Ann", "pw")])
    out = tmp_path / "my spec.yaml"  # the next commands, quoted to be pasted
    res = mailplan("init", "--source", "local", "--root", str(src), "--domain",
                   "example.com", "-o", str(out), check=True)
    assert res.stderr.endswith(f"Next: mailplan validate '{out}' && mailplan plan "
                               f"'{out}'\n"), res.stderr


def test_a_spec_in_a_directory_it_cannot_write_is_an_error(tmp_path, monkeypatch):
    """A directory the login may not write (root may: its refusal is played) is an
    error naming it, not a traceback."""
    import mailplan.init

    def refused(**kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(mailplan.init.tempfile, "mkstemp", refused)
    with pytest.raises(MailplanError) as caught:
        write_spec_file("version: 1\n", tmp_path / "m.yaml", force=False)
    assert str(caught.value) == (f"cannot write {tmp_path}/m.yaml: Permission denied\n"
                                 f"  hint: the directory {tmp_path} must be writable")


@pytest.mark.parametrize("args, said", [
    # every account was left out as "system account (uid 1000 outside 5000-10)"
    (["--uid-min", "5000", "--uid-max", "10"],
     "Error: Invalid value for '--uid-min': 5000 is above --uid-max 10"),
    (["--uid-min", "-1"], "Error: Invalid value for '--uid-min': -1 is not in the range x>=0."),
    # said only once the source had been read (over SSH: after a connection timeout)
    (["--domain", "example.com", "--domain", "bad_name"],
     "Error: --domain bad_name: a domain name needs at least one dot"),
])
def test_init_refuses_a_bad_option_before_reading_the_source(tmp_path, args, said):
    res = mailplan("init", "--source", "local", "--root", str(tmp_path / "nothing-here"),
                   *args, "-o", str(tmp_path / "m.yaml"))
    assert res.returncode in (1, 2) and said in res.stderr.splitlines(), res.stderr
    assert "passwd" not in res.stderr  # the root (no etc/passwd) was not read
    assert not (tmp_path / "m.yaml").exists()


@pytest.mark.parametrize("option", ["--source", "--target"])
@pytest.mark.parametrize("host", ["ftp://old", "ssh://a%0Aroot@old"])
def test_init_refuses_a_bad_host_string(tmp_path, option, host):
    """A percent-decoded user name with a control character too (a newline here), of
    the source or the target: it would go into the spec's hosts: entry."""
    hosts = {"--source": "local", "--target": "ssh://root@new", option: host}
    res = mailplan("init", *(a for item in hosts.items() for a in item),
                   "-o", str(tmp_path / "m.yaml"))
    assert res.returncode == 1 and "cannot read the connection string" in res.stderr
    assert not (tmp_path / "m.yaml").exists()


def test_the_spec_file_is_written_through_a_fresh_temp_file(tmp_path):
    """The temp file beside ``-o`` has an unpredictable name, created exclusively: a link
    planted under the name an earlier version used (``.NAME.PID.tmp``) is not written
    through, nothing is left beside the spec, and the spec gets the umask's mode."""
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    out = tmp_path / "migration.yaml"
    (tmp_path / f".{out.name}.{os.getpid()}.tmp").symlink_to(victim)
    text = ("version: 1\nhosts: {old: {local: true}, new: {local: true}}\n"
            "source: {host: old}\ntarget: {host: new}\n"
            "domains:\n  example.com:\n    default_quota: 1G\n")
    old = os.umask(0o027)
    try:
        write_spec_file(text, out, force=False)
    finally:
        os.umask(old)
    assert victim.read_text() == "untouched\n"
    assert out.read_text() == text and out.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f".{out.name}.{os.getpid()}.tmp", "migration.yaml", "victim"]
    with pytest.raises(MailplanError, match="already exists"):
        write_spec_file(text, out, force=False)
    with pytest.raises(MailplanError, match="does not validate"):
        write_spec_file("version: 2\n", out, force=True)
    assert out.read_text() == text and len(list(tmp_path.iterdir())) == 3


def test_init_follows_no_link_a_user_planted(tmp_path):
    # init reads as root, like the import: a link in a user's folders (or the folders
    # directory itself a link) is not the user's mail and is not walked (a link to /
    # would have had root walk the whole disk); the import ignores them alike
    accounts = [SourceAccount("alice", 1500, "Alice", "pw"),
                SourceAccount("mallory", 1501, "Mallory", "pw"),
                SourceAccount("trudy", 1502, "Trudy", "pw")]
    src = make_source(tmp_path / "old", accounts)
    (src / "var/spool/mail/alice").write_bytes(MBOX)
    (src / "home/mallory/mail").mkdir(parents=True)
    (src / "home/mallory/mail/stolen").symlink_to(src / "var/spool/mail/alice")
    (src / "home/mallory/mail/everything").symlink_to(src)
    (src / "home/trudy").mkdir(parents=True, exist_ok=True)
    (src / "home/trudy/mail").symlink_to(src / "var/spool/mail")
    res = mailplan("init", "--source", "local", "--root", str(src), "--domain", "a.example",
                   "--uid-min", "1500", check=True)
    data = yaml.safe_load(res.stdout)
    assert [u["name"] for u in data["domains"]["a.example"]["users"]] == ["alice"]
    assert "#   mallory: no mailbox (no spool file, no ~/mbox, no mail folders)" in res.stdout
    assert "#   trudy: no mailbox (no spool file, no ~/mbox, no mail folders)" in res.stdout


def plan_of_init_spec(tmp_path, text: str) -> dict:
    """The JSON plan of an init spec pointed at the stand-in target."""
    data = yaml.safe_load(text)
    target = install_target(tmp_path / "target")
    data["hosts"]["newmail"] = {"local": True}
    data["target"].update(vpopmail_dir=target.vpopmail_dir, qmail_dir=target.qmail_dir)
    runnable = tmp_path / "run.yaml"
    runnable.write_text(yaml.safe_dump(data, sort_keys=False))
    return json.loads(mailplan("plan", str(runnable), "--json", check=True).stdout)


def test_init_leaves_out_an_account_the_old_server_refuses_by_date(tmp_path):
    # plan refuses to migrate an expired account's hash (it would let the account in
    # again): init leaves it out with that reason instead of listing it to migrate
    accounts = [SourceAccount("alice", 1500, "Alice", "pw-a"),
                SourceAccount("gone", 1501, "Gone", "pw-g"),
                SourceAccount("idle", 1502, "Idle", "pw-i")]
    src = make_source(tmp_path / "old", accounts)
    shadow = src / "etc/shadow"
    lines = []
    for line in shadow.read_text().splitlines():
        f = line.split(":")
        if f[0] == "gone":
            f[7] = "100"  # account expiry date: 1970-04-11
        elif f[0] == "idle":
            f[2], f[4], f[6] = "100", "30", "7"  # password expired long past inactivity
        lines.append(":".join(f))
    shadow.write_text("\n".join(lines) + "\n")
    for a in accounts:
        (src / "var/spool/mail" / a.name).write_bytes(MBOX)
    res = mailplan("init", "--source", "local", "--root", str(src), "--domain", "a.example",
                   "--uid-min", "1500", check=True)
    assert [u["name"] for u in yaml.safe_load(res.stdout)["domains"]["a.example"]["users"]
            ] == ["alice"]
    assert ("#   gone: cannot log in on the old server: the account expired on 1970-04-11 "
            "(shadow's expiry date)") in res.stdout
    assert "#   idle: cannot log in on the old server: its password expired" in res.stdout
    planned = plan_of_init_spec(tmp_path, res.stdout)
    assert planned["problems"] == []
    assert {c["user"] for c in planned["changes"] if c["kind"] == "user"} == {"alice"}


def test_init_gives_a_comment_to_an_account_whose_full_name_plan_refuses(tmp_path):
    # a full name (gecos) with a control character cannot be the mailbox's comment: plan
    # would refuse the account unless the spec gives it one, so init writes one
    accounts = [SourceAccount("alice", 1500, "Alice", "pw-a"),
                SourceAccount("bell", 1501, "Ring\x07 the\x01\x02Bell,Room 2", "pw-b"),
                SourceAccount("nul", 1502, "\x1b\x7f", "pw-n")]
    src = make_source(tmp_path / "old", accounts)
    for a in accounts:
        (src / "var/spool/mail" / a.name).write_bytes(MBOX)
    out = tmp_path / "m.yaml"
    mailplan("init", "--source", "local", "--root", str(src), "--domain", "a.example",
             "--uid-min", "1500", "-o", str(out), check=True)
    text = out.read_text()
    assert "\x07" not in text and "\x1b" not in text
    users = yaml.safe_load(text)["domains"]["a.example"]["users"]
    assert users == [{"name": "alice"}, {"name": "bell", "comment": "Ring the Bell"},
                     {"name": "nul", "comment": "nul"}]
    planned = plan_of_init_spec(tmp_path, text)
    assert planned["problems"] == []
    assert {c["user"] for c in planned["changes"] if c["kind"] == "user"} == {
        "alice", "bell", "nul"}


def test_init_with_a_relative_root_writes_absolute_paths(tmp_path):
    """``--root`` relative to the current directory (a local source): the spec's source
    paths must be absolute, so they are written under the directory's absolute path
    (before, init stopped with "internal: the generated spec does not validate")."""
    src, _ = awkward_source(tmp_path / "old")
    res = mailplan("init", "--source", "local", "--root", "old", "--domain", "example.org",
                   "-o", "m.yaml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    data = load_spec(tmp_path / "m.yaml").data
    assert data["source"]["passwd"] == f"{src}/etc/passwd"
    assert data["source"]["spool"].startswith(f"{src}/")
    # on an ssh:// source a relative path would be the login's home there: refused
    res = mailplan("init", "--source", "ssh://root@192.0.2.1", "--root", "old",
                   "--domain", "example.org", cwd=tmp_path)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith("Error: --root old: not an absolute path\n"), res.stderr


@pytest.mark.parametrize("signum", [2, 15])  # SIGINT, SIGTERM
def test_a_signal_while_init_reads_the_source_stops_it_as_plan_stops(tmp_path, signum):
    """Ctrl-C while init read the old server ended in click's "Aborted!" and exit 1, and
    SIGTERM killed it without a word; now it says that nothing was changed and exits
    with the signal's status, the command it ran gone (README: 130, 143 or 129)."""
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "old"
    (root / "etc").mkdir(parents=True)
    passwd = root / "etc/passwd"
    os.mkfifo(passwd)  # nothing writes to it: the survey's read waits there
    out = tmp_path / "m.yaml"
    proc = subprocess.Popen([sys.executable, "-m", "mailplan", "init", "--source", "local",
                             "--root", str(root), "--domain", "example.com", "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def reading() -> bool:
        return subprocess.run(["pgrep", "-f", str(passwd)], capture_output=True,
                              check=False).returncode == 0

    deadline = time.monotonic() + 60
    while not reading() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reading(), proc.communicate()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    by = "" if signum == signal.SIGINT else " by SIGTERM"
    assert proc.returncode == 128 + signum, err
    assert err == f"Error: init interrupted{by} while reading the source: nothing was " \
        "changed\n"
    assert not out.exists() and list(tmp_path.glob(".m.yaml.*")) == []
    deadline = time.monotonic() + 10
    while reading() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not reading()  # the read it started is gone with it


def test_init_never_writes_over_a_state_file_even_with_force(tmp_path):
    """`init -o migration.state.json --force` (the state beside the spec, one tab
    completion from it) replaced the state file with the spec: the record of what
    mailplan made, which --prune trusts, was lost. Refused as plan -o refuses it; --force
    still replaces a spec."""
    from mailplan.state import State

    src = make_source(tmp_path / "src", [SourceAccount("ann", 1000, "Ann", "pw")])
    state = tmp_path / "m.state.json"
    State.load(state).save()
    before = state.read_bytes()
    res = mailplan("init", "--source", "local", "--root", str(src), "--domain",
                   "example.com", "-o", str(state), "--force")
    assert res.returncode == 1, res.stderr
    assert res.stderr.startswith(f"Error: {state} is a state file of mailplan's; a spec "
                                 "written there would replace the record"), res.stderr
    assert state.read_bytes() == before
    spec = tmp_path / "m.yaml"
    spec.write_text("old\n")
    mailplan("init", "--source", "local", "--root", str(src), "--domain", "example.com",
             "-o", str(spec), "--force", check=True)
    assert load_spec(spec).data["domains"]


def test_init_counts_hidden_folder_files_as_the_import_takes_them(tmp_path):
    """A user whose only mail is in ~/mail/.old (a folder UW-IMAP lists: c-client's
    hideDotFiles is off by default) has a mailbox, as the import takes that file; with
    folders: "." (the home directory) its hidden files are configuration, no mail."""
    from mailplan.connectors.local import LocalConnector
    from mailplan.facts.survey import survey_source
    from mailplan.init import choose

    src = make_source(tmp_path / "old", [SourceAccount("bob", 1000, "Bob", "pw-bob"),
                                         SourceAccount("carol", 1001, "Carol", "pw-carol")])
    (src / "home/bob/mail").mkdir()
    (src / "home/bob/mail/.old").write_bytes(MBOX)
    (src / "home/carol/.profile").write_bytes(b"PATH=/bin\n")
    conn = LocalConnector("oldmail")
    for folders, want in (("mail", {"bob": "", "carol": "no mailbox"}),
                          (".", {"bob": "no mailbox", "carol": "no mailbox"})):
        survey = survey_source(conn, root=str(src), folders=folders)
        got = {c.account.name: c.reason.split(" (")[0]
               for c in choose(survey, folders=folders) if c.account.uid >= 1000}
        assert got == want, folders


@pytest.mark.parametrize("folders", [".", "./", "mail/..", "{home}/%u", "{home}/%u/"])
def test_init_keeps_hidden_files_out_wherever_folders_names_the_home(tmp_path, folders):
    """Only folders: "." was taken for the home directory: written otherwise ("./",
    "mail/..", an absolute /home/%u, as the schema allows), its hidden files
    (configuration) were counted as folders, as the import does not take them, and a
    user with none but a .profile was migrated as one with mail."""
    from mailplan.connectors.local import LocalConnector
    from mailplan.facts.survey import survey_source
    from mailplan.init import choose

    src = make_source(tmp_path / "old", [SourceAccount("bob", 1000, "Bob", "pw-bob"),
                                         SourceAccount("carol", 1001, "Carol", "pw-carol")])
    (src / "home/bob/Sent").write_bytes(MBOX)
    (src / "home/bob/.pinerc").write_bytes(MBOX)
    (src / "home/carol/.profile").write_bytes(b"PATH=/bin\n")
    (src / "home/carol/.cache").mkdir()
    (src / "home/carol/.cache/x").write_bytes(MBOX)
    folders = folders.format(home=src / "home")
    survey = survey_source(LocalConnector("oldmail"), root=str(src), folders=folders)
    got = {c.account.name: c.reason.split(" (")[0]
           for c in choose(survey, folders=folders) if c.account.uid >= 1000}
    assert got == {"bob": "", "carol": "no mailbox"}, survey.folders
    assert [n for n, _ in survey.folders.values()] == [1], survey.folders


def test_init_counts_no_program_file_as_a_folder(tmp_path):
    """As the import leaves them out (dovecot's .imap/ index, .DS_Store, an editor's
    swap file, none starting with From_), init counts none of them: a user with only
    those has no mailbox; one whose editor's backup is mail has one."""
    from mailplan.connectors.local import LocalConnector
    from mailplan.facts.survey import survey_source
    from mailplan.init import choose

    src = make_source(tmp_path / "old", [SourceAccount("bob", 1000, "Bob", "pw-bob"),
                                         SourceAccount("carol", 1001, "Carol", "pw-carol")])
    for user in ("bob", "carol"):
        mail = src / "home" / user / "mail"
        (mail / ".imap/INBOX").mkdir(parents=True)
        (mail / ".imap/INBOX/dovecot.index").write_bytes(b"\x01\x02\x00\x00")
        (mail / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
        (mail / ".subscriptions").write_bytes(b"")
    (src / "home/bob/mail/Sent~").write_bytes(MBOX)
    survey = survey_source(LocalConnector("oldmail"), root=str(src))
    got = {c.account.name: c.reason.split(" (")[0]
           for c in choose(survey) if c.account.uid >= 1000}
    assert got == {"bob": "", "carol": "no mailbox"}, survey.folders
    assert survey.folders[f"{src}/home/bob/mail"] == (1, len(MBOX))


def test_init_looks_for_folders_where_folders_says_and_writes_it(tmp_path):
    """init looked in ~/mail whatever the server used: with UW-IMAP's folders in the
    home directory (no Pine), a user whose mail is all in folders was left out as 'no
    mailbox'. --folders names the place: init counts the folders there (not the home's
    hidden files), writes source.folders, and plan imports them; a ~ is refused, as the
    spec refuses it."""
    src = make_source(tmp_path / "old", [SourceAccount("carol", 1500, "Carol", "pw"),
                                         SourceAccount("dave", 1501, "Dave", "pw")])
    (src / "home/carol/Sent").write_bytes(MBOX)
    for user in ("carol", "dave"):
        (src / "home" / user / ".profile").write_bytes(b"PATH=/bin\n")
    out = tmp_path / "m.yaml"
    mailplan("init", "--source", "local", "--root", str(src), "--domain", "c.example",
             "--uid-min", "1500", "--folders", ".", "-o", str(out), check=True)
    text = out.read_text()
    assert "      - name: carol  # uid 1500; 1 folder(s) 62B\n" in text, text
    assert "#   dave: no mailbox (no spool file, no ~/mbox, no mail folders)" in text, text
    data = yaml.safe_load(text)
    assert data["source"]["folders"] == "."
    res = mailplan("plan", str(_runnable(tmp_path, data)), check=True)
    assert "+ mailbox carol@c.example Sent\n" in res.stdout, res.stdout
    default = mailplan("init", "--source", "local", "--root", str(src), "--domain",
                       "c.example", "--uid-min", "1500", check=True).stdout
    assert "#   carol: no mailbox" in default and "folders:" not in default, default
    res = mailplan("init", "--source", "local", "--root", str(src), "--domain", "c.example",
                   "--folders", "~/mail")
    assert res.returncode == 2 and "'--folders': give a directory relative to each " \
        "user's home (mail, not ~/mail)" in res.stderr, res.stderr


def test_init_counts_a_maildir_under_mail_as_plan_does_not_as_folders(tmp_path):
    """A Maildir under ~/mail (its message files, a Maildir++ folder's, dovecot's files)
    was counted as folders: a user with only a Maildir there was listed to migrate, and
    plan then reported the Maildir as a problem. As plan, init counts none of its files
    (carol has no mailbox, and the comment says why); a user with mbox folders beside
    one is migrated, its comment naming the Maildir too."""
    src = make_source(tmp_path / "old", [SourceAccount("bob", 1500, "Bob", "pw"),
                                         SourceAccount("carol", 1501, "Carol", "pw")])
    for user in ("bob", "carol"):
        box = src / "home" / user / "mail/Maildir"
        for sub in ("cur", "new", "tmp", ".Work/cur", ".Work/new", ".Work/tmp"):
            (box / sub).mkdir(parents=True)
        (box / "cur/1700000000.M1P1.oldhost:2,S").write_bytes(b"Subject: x\n\nx\n")
        (box / ".Work/new/1700000001.M2P1.oldhost").write_bytes(b"Subject: y\n\ny\n")
        (box / "dovecot-uidlist").write_bytes(b"3 V1 N4\n")
    (src / "home/bob/mail/Sent").write_bytes(MBOX)
    out = tmp_path / "m.yaml"
    mailplan("init", "--source", "local", "--root", str(src), "--domain", "c.example",
             "--uid-min", "1500", "-o", str(out), check=True)
    text = out.read_text()
    said = ("is a Maildir, not imported: a Maildir under the folders directory is no mbox "
            "folder (plan names it)")
    assert f"      - name: bob  # uid 1500; 1 folder(s) {len(MBOX)}B; " \
        f"{src}/home/bob/mail/Maildir {said}\n" in text, text
    assert f"#   carol: no mailbox (no spool file, no ~/mbox, no mail folders; " \
        f"{src}/home/carol/mail/Maildir {said})\n" in text, text
    assert "name: carol" not in text, text
    res = mailplan("plan", str(_runnable(tmp_path, yaml.safe_load(text))))
    assert "+ mailbox bob@c.example Sent\n" in res.stdout, res.stdout
    assert f"{src}/home/bob/mail/Maildir is a Maildir" in res.stdout, res.stdout
