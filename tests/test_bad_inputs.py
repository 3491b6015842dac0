"""The bad input corpus: every case in tests/data/bad/cases.yaml, with its exact error.

A case is a spec (``specs/``), optionally source files put in place of a good source
tree's (``files``: source path -> corpus file), fake vpopmail tools standing in for the
target's (``tools``: tool -> corpus script) or a vpopmail directory (``vpopmail``). Each
runs ``mailplan COMMAND SPEC``, must exit 1 with exactly ``Error: <error>`` on stderr
(placeholders: @SPEC@, @SRC@, @VPOP@), must name where the problem is, and must leave the
target tree byte for byte unchanged. ``MAILPLAN_BAD_RECORD=1`` rewrites the expected
texts from what mailplan prints (review the diff before committing it).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from migration import (
    SourceAccount,
    install_target,
    mailplan,
    make_source,
    tree_digest,
    write_spec,
)

CORPUS = Path(__file__).parent / "data/bad"
CASES = yaml.safe_load((CORPUS / "cases.yaml").read_text())
RECORD = os.environ.get("MAILPLAN_BAD_RECORD") == "1"
_recorded: dict[str, str] = {}


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    return install_target(tmp_path_factory.mktemp("bad-target"))


def test_corpus_is_large_and_every_case_has_its_files():
    assert len(CASES) >= 40
    assert len({c["name"] for c in CASES}) == len(CASES)
    for case in CASES:
        assert (CORPUS / case["spec"]).is_file(), case["name"]
        for rel in [*case.get("files", {}).values(), *case.get("tools", {}).values()]:
            assert (CORPUS / rel).is_file(), (case["name"], rel)
        assert case["error"] and case["error"] != "?", case["name"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bad_input(case, tmp_path, target):
    src = make_source(tmp_path / "src", [SourceAccount("ann", 1000, "Ann", "AnnPw1")])
    (src / "etc/aliases").write_text("postmaster: root\nsales: ann\n")
    for rel, corpus_file in case.get("files", {}).items():
        shutil.copyfile(CORPUS / corpus_file, src / rel)
    vpop = case.get("vpopmail", target.vpopmail_dir)
    if "tools" in case:
        vpop = str(tmp_path / "fakevpop")
        (tmp_path / "fakevpop/bin").mkdir(parents=True)
        for tool in Path(target.vpopmail_dir, "bin").iterdir():
            os.symlink(tool, tmp_path / "fakevpop/bin" / tool.name)
        for tool, script in case["tools"].items():
            fake = tmp_path / "fakevpop/bin" / tool
            fake.unlink()
            shutil.copyfile(CORPUS / script, fake)
            fake.chmod(0o755)
    subst = {"@SRC@": str(src), "@VPOP@": vpop, "@QMAIL@": target.qmail_dir}
    text = (CORPUS / case["spec"]).read_text()
    for key, value in subst.items():
        text = text.replace(key, value)
    spec = tmp_path / "m.yaml"
    spec.write_text(text)
    subst["@SPEC@"] = str(spec)
    before = tree_digest(Path(target.vpopmail_dir).parent.parent)
    res = mailplan(case["command"], str(spec))
    assert tree_digest(Path(target.vpopmail_dir).parent.parent) == before, "target changed"
    assert res.returncode == 1, res.stdout + res.stderr
    actual = res.stderr.rstrip("\n")
    for key in ("@SPEC@", "@SRC@", "@VPOP@"):
        actual = actual.replace(subst[key], key)
    assert "Traceback" not in actual
    if RECORD:
        _recorded[case["name"]] = actual.removeprefix("Error: ")
        return
    assert actual == "Error: " + case["error"]
    # every error says where: the spec file, a source file, or a host
    assert any(where in actual for where in ("@SPEC@", "@SRC@", "host ")), actual


def teardown_module() -> None:
    if RECORD and _recorded:
        for case in CASES:
            if case["name"] in _recorded:
                case["error"] = _recorded[case["name"]]
        (CORPUS / "cases.yaml").write_text(yaml.safe_dump(CASES, sort_keys=False, width=200,
                                                          allow_unicode=True))


MSG = b"From a@x.example Mon Nov  2 10:00:00 2026\nFrom: a@x.example\nSubject: s\n\nhi\n\n"


def test_a_folder_name_that_is_not_utf8_is_a_listed_problem(tmp_path):
    src = make_source(tmp_path / "src", [SourceAccount("ann", 1000, "Ann", "AnnPw1"),
                                         SourceAccount("bob", 1001, "Bob", "BobPw1")])
    mail = src / "home/ann/mail"
    mail.mkdir()
    (mail / "Good").write_bytes(MSG)
    with open(os.fsencode(mail) + b"/latin\xe9\xff", "wb") as f:
        f.write(MSG)
    target = install_target(tmp_path / "target")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={"example.com": {"import": {"uid_min": 1000}}})
    res = mailplan("plan", str(spec))
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert (f"! ann@example.com: {mail}/latin\\xe9\\xff: folder name 'latin\\xe9\\xff' is not "
            "UTF-8 text") in res.stdout
    assert "+ mailbox ann@example.com Good" in res.stdout
    assert "+ user bob@example.com" in res.stdout


def test_hostile_source_data_is_listed_escaped_and_apply_goes_on(tmp_path):
    """'..' as a login, a NUL in a gecos and in a ~/.forward, a newline and an escape
    sequence in folder names: plan lists each (escaped, with file:line), apply makes the
    rest and never shows a traceback."""
    src = make_source(tmp_path / "src", [SourceAccount("ann", 1000, "Ann", "AnnPw1"),
                                         SourceAccount("bob", 1001, "Bob", "BobPw1"),
                                         SourceAccount("..", 1002, "Dots", "DotPw1")])
    passwd = src / "etc/passwd"
    passwd.write_text(passwd.read_text().replace(":Bob:", ":B\0ob:"))
    (src / "home/ann/.forward").write_bytes(b"keep@remote.example, foo\0bar@remote.example\n")
    mail = src / "home/ann/mail"
    mail.mkdir()
    for name in ("Good", "new\nline", "esc\x1b[2Jape"):
        (mail / name).write_bytes(MSG)
    target = install_target(tmp_path / "target")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={"example.com": {"import": {"uid_min": 1000}}})
    plan = mailplan("plan", str(spec))
    assert plan.returncode == 0, plan.stderr
    assert not any(c in plan.stdout for c in "\0\x1b"), plan.stdout
    assert "+ user ..@example.com" not in plan.stdout
    assert f"{mail}/new\\nline: folder name" in plan.stdout
    assert f"{mail}/esc\\x1b[2Jape: folder name" in plan.stdout
    assert f"{src}/etc/passwd:4: the full name (gecos) of source account 'bob'" in plan.stdout
    assert (f"{src}/home/ann/.forward:1: ~ann/.forward: 'foo\\x00bar@remote.example' "
            "contains a control character") in plan.stdout
    applied = mailplan("apply", str(spec), "--auto-approve")
    # exit 3: what it lists is not migrated, all else is
    assert applied.returncode == 3 and "Traceback" not in applied.stderr, applied.stderr
    assert not any(c in applied.stdout for c in "\0\x1b"), applied.stdout
    udir = target.tool("vuserinfo", "-d", "ann@example.com").stdout.decode().split("\n")[0]
    assert Path(udir, "Maildir/.Good").is_dir()
    assert Path(udir, ".qmail").read_text() == "&keep@remote.example\n"


def test_comment_and_empty_lines_and_old_shadow_lines_are_read_as_the_old_server_reads_them(
        tmp_path):
    """A comment header, empty lines, a commented-out account, a shadow line in the old
    5-field form and one missing its reserved last field: plan migrates what the old
    server's logins see (the commented-out account is none) and notes the lines skipped
    with file and line; apply migrates the old-form line's password."""
    src = make_source(tmp_path / "src", [SourceAccount("ann", 1000, "Ann", "AnnPw1"),
                                         SourceAccount("bob", 1001, "Bob", "BobPw1")])
    passwd, shadow = src / "etc/passwd", src / "etc/shadow"
    passwd.write_text("# oldmail accounts\n\n" + passwd.read_text()
                      + f"#carl:x:1002:1002:Carl:{src}/home/ann:/bin/sh\n")
    (src / "var/spool/mail/ann").write_bytes(MSG)
    lines = shadow.read_text().splitlines()
    ann, bob = lines[2].split(":"), lines[3].split(":")
    shadow.write_text("\n".join([*lines[:2], "", ":".join(ann[:5]), "  # bob next",
                                 ":".join([*bob[:7], "30000"])]) + "\n")
    target = install_target(tmp_path / "target")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={"example.com": {"import": {"uid_min": 1000}}})
    plan = mailplan("plan", "-v", str(spec))
    assert plan.returncode == 0 and "Traceback" not in plan.stderr, plan.stderr
    assert "+ user ann@example.com" in plan.stdout and "+ user bob@example.com" in plan.stdout
    assert "carl" not in plan.stdout and "Problems" not in plan.stdout, plan.stdout
    assert (f"  = oldmail: note: {passwd} lines 1, 7 (comments), 2 (empty): skipped, as "
            "the old server's C library skips them (glibc's nss_files: no account is "
            "there)") in plan.stdout, plan.stdout
    assert f"  = oldmail: note: {shadow} lines 3 (empty), 5 (a comment): skipped" \
        in plan.stdout
    assert (f"  = oldmail: note: {shadow} line 4 ('ann'): 5 fields, shadow's old form: its "
            "warning, inactivity and expiry fields are read as empty") in plan.stdout
    assert f"  = oldmail: note: {shadow} line 6 ('bob'): 8 fields: its last" in plan.stdout
    assert "$6$" not in plan.stdout + plan.stderr
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert target.login_ok("ann@example.com", "AnnPw1")
    assert target.login_ok("bob@example.com", "BobPw1")


def _spec_and_saved_plan(tmp_path: Path) -> tuple[Path, Path]:
    """A spec migrating one account, and a plan of it saved as ``p.json``."""
    src = make_source(tmp_path / "src", [SourceAccount("ann", 1000, "Ann", "AnnPw1")])
    target = install_target(tmp_path / "target")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={"example.com": {"import": {"uid_min": 1000}}})
    saved = tmp_path / "p.json"
    mailplan("plan", str(spec), "-o", str(saved), check=True)
    return spec, saved


def test_a_plan_or_state_file_given_for_the_spec_is_named_as_such(tmp_path):
    """A saved plan or a state file passed where the spec goes (plan, validate, verify)
    or a state file passed to apply: the error says which file it is and what to give,
    where it named an unknown key ('changes', 'current_apply') or the plan's schema."""
    spec, saved = _spec_and_saved_plan(tmp_path)
    mailplan("apply", str(saved), check=True)
    state = tmp_path / "m.state.json"
    for command, path, what in (("plan", state, "a state file"), ("validate", saved,
                                                                 "a saved plan"),
                                ("verify", saved, "a saved plan")):
        res = mailplan(command, str(path))
        assert res.returncode == 1 and "Traceback" not in res.stderr
        assert res.stderr.startswith(f"Error: {path}: this is {what} of mailplan's, not a "
                                     "spec\n  hint: give the spec (migration.yaml)"), res.stderr
    res = mailplan("apply", str(state))
    assert res.returncode == 1 and res.stderr == (
        f"Error: {state}: this is a state file of mailplan's, not a saved plan\n"
        "  hint: apply takes the spec, or a plan saved with `mailplan plan SPEC -o "
        "PLAN.json`\n")


@pytest.mark.parametrize(("owner", "mode", "wrong", "fix"), [
    (65534, 0o600, "it belongs to nobody, not to root who runs mailplan",
     "`chown root {file}` and `chmod 600 {file}`"),
    (0, 0o620, "its mode is 0620: group or others may write it", "`chmod 600 {file}`"),
    (0, 0o602, "its mode is 0602: group or others may write it", "`chmod 600 {file}`"),
], ids=["owner", "group-write", "others-write"])
def test_a_saved_plan_another_user_owns_or_others_may_write_is_refused(tmp_path, owner, mode,
                                                                       wrong, fix):
    """``apply p.json`` takes from the plan file the spec it plans again and the
    deletions ``--prune-only`` selected: whoever could write the file could have apply
    delete what was never selected. Like the state file, a plan file another user owns,
    or one group or others may write, is refused before anything is read or written,
    naming it, what is wrong and what to do; one mailplan saved (0600) is applied, and so
    is one others may only read."""
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    spec, saved = _spec_and_saved_plan(tmp_path)
    files = sorted(tmp_path.iterdir())
    os.chown(saved, owner, -1)
    saved.chmod(mode)
    res = mailplan("apply", str(saved))
    assert res.returncode == 1 and res.stderr == (
        f"Error: {saved}: refusing the saved plan: {wrong} (what it records decides what "
        "apply does: the spec it plans again, the deletions --prune-only selected)\n"
        f"  hint: if you made it, {fix.format(file=saved)}; if not, remove it, then save "
        f"the plan again (`mailplan plan SPEC -o {saved}`) and review it\n"), res.stderr
    assert sorted(tmp_path.iterdir()) == files  # no state, no log: nothing done
    os.chown(saved, 0, -1)
    saved.chmod(0o644)
    res = mailplan("apply", str(saved), check=True)
    assert "Apply complete" in res.stdout, res.stdout


def test_a_saved_plan_given_as_state_is_named_as_such(tmp_path):
    """A saved plan passed as ``--state`` (plan, apply, verify) is said to be a plan
    file, with what to give instead, where it was taken for a damaged state file ("move
    the damaged file aside"); nothing is written, the plan left as it was."""
    spec, saved = _spec_and_saved_plan(tmp_path)
    before, files = saved.read_bytes(), sorted(tmp_path.iterdir())
    for command in (["plan", str(spec)], ["apply", str(spec), "--auto-approve"],
                    ["verify", str(spec)]):
        res = mailplan(*command, "--state", str(saved))
        assert res.returncode == 1 and res.stderr.startswith(
            f"Error: {saved}: this is a saved plan of mailplan's (a plan file), not a state "
            "file\n  hint: "), res.stderr
        assert "damaged" not in res.stderr and "mailplan apply PLAN.json" in res.stderr
    assert saved.read_bytes() == before and sorted(tmp_path.iterdir()) == files


def test_the_spec_given_as_its_own_state_file_is_named_as_such(tmp_path):
    """`--state migration.yaml` (or a spec whose state: names itself) was read as a
    damaged state file, whose hint says to move it aside: the spec. Now each command
    says it is the spec, and what to give instead; nothing is written."""
    spec, _ = _spec_and_saved_plan(tmp_path)
    before, files = spec.read_bytes(), sorted(tmp_path.iterdir())
    for command in (["plan", str(spec)], ["apply", str(spec), "--auto-approve"],
                    ["verify", str(spec)], ["show", str(spec)]):
        res = mailplan(*command, "--state", str(spec))
        assert res.returncode == 1 and res.stderr == (
            f"Error: {spec}: that is the spec itself, not a state file\n  hint: leave "
            "--state out for the spec's own state file (its state:, else SPEC.state.json "
            "beside it)\n"), res.stderr
    itself = spec.with_name("itself.yaml")
    itself.write_text(before.decode() + f"state: {itself.name}\n")
    res = mailplan("plan", str(itself))
    assert res.returncode == 1 and "that is the spec itself" in res.stderr, res.stderr
    assert "set state: in the spec to another file" in res.stderr
    itself.unlink()
    assert spec.read_bytes() == before and sorted(tmp_path.iterdir()) == files


def test_plan_out_in_a_missing_directory_is_refused_before_the_hosts_are_read(tmp_path):
    """``plan -o`` into a directory that does not exist is said at once (exit 2, as for
    a name not ending in .json), not after reading both servers; here the target is
    down, so a read would have failed on it first."""
    src = make_source(tmp_path / "src", [SourceAccount("ann", 1000, "Ann", "AnnPw1")])
    target = install_target(tmp_path / "target")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={"example.com": {"import": {"uid_min": 1000}}})
    text = spec.read_text()
    spec.write_text(text.replace("  newmail:\n    local: true\n",
                                 "  newmail:\n    address: 127.0.0.1\n    port: 9\n"))
    assert spec.read_text() != text
    out = tmp_path / "nowhere" / "p.json"
    res = mailplan("plan", str(spec), "-o", str(out))
    assert res.returncode == 2 and res.stdout == "", res.stderr
    assert f"{out}: {tmp_path}/nowhere is not a directory" in res.stderr


def test_plan_out_never_replaces_a_state_file(tmp_path):
    """``plan -o`` onto the spec's state file (one tab completion away from the spec), a
    link to it, or another state file of mailplan's is refused at once (exit 2): the
    plan replaced the record of what mailplan made (--prune's safety, the mailbox
    checkpoints), and every later run stopped at the damaged state. A saved plan is
    replaced by a new one as before."""
    src = make_source(tmp_path / "src", [SourceAccount("ann", 1000, "Ann", "AnnPw1")])
    target = install_target(tmp_path / "target")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={"example.com": {"import": {"uid_min": 1000}}})
    mailplan("apply", str(spec), "--auto-approve", check=True)
    state = tmp_path / "m.state.json"
    before = state.read_bytes()
    other = tmp_path / "other.json"
    other.write_bytes(before)
    (tmp_path / "link.json").symlink_to(state)
    for out, what in ((state, "the state file of this spec"),
                      (tmp_path / "link.json", "the state file of this spec"),
                      (other, "a state file of mailplan's")):
        res = mailplan("plan", str(spec), "-o", str(out))
        assert res.returncode == 2 and res.stdout == "", res.stderr
        assert f"{out}: that is {what}; a saved plan there would replace it" in res.stderr
    assert state.read_bytes() == before and other.read_bytes() == before
    saved = tmp_path / "p.json"
    for _ in range(2):
        assert "Saved the plan to" in mailplan("plan", str(spec), "-o", str(saved),
                                               check=True).stdout
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


def test_a_plan_saved_with_state_is_applied_with_it(tmp_path):
    """``plan --state S -o p.json`` says to apply it with ``--state S``; ``apply p.json``
    without it is refused before anything is logged or read, saying so, where it read
    both hosts and then said the plan was stale ("run `mailplan plan` again")."""
    src = make_source(tmp_path / "src", [SourceAccount("ann", 1000, "Ann", "AnnPw1")])
    target = install_target(tmp_path / "target")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={"example.com": {"import": {"uid_min": 1000}}})
    state, saved = tmp_path / "other.state.json", tmp_path / "p.json"
    mailplan("apply", str(spec), "--state", str(state), "--auto-approve", check=True)
    (src / "var/spool/mail/ann").write_bytes(b"From a@b.example Mon Nov  2 10:00:00 2026\n"
                                             b"Subject: hi\n\nHi\n\n")
    res = mailplan("plan", str(spec), "--state", str(state), "-o", str(saved), check=True)
    assert f"mailplan apply {saved} --state {state}\n" in res.stdout, res.stdout
    spaced = tmp_path / "for tonight.json"  # said so that pasting it works
    res = mailplan("plan", str(spec), "--state", str(state), "-o", str(spaced), check=True)
    assert f"mailplan apply '{spaced}' --state {state}\n" in res.stdout, res.stdout
    res = mailplan("apply", str(saved))
    assert res.returncode == 1 and res.stderr.startswith(
        f"Error: this plan was made against another state file than {tmp_path}/"
        "m.state.json ("), res.stderr
    assert "`mailplan apply PLAN --state FILE`" in res.stderr
    assert not (tmp_path / "m.state.json.logs").exists()
    mailplan("apply", str(saved), "--state", str(state), check=True)


@pytest.mark.parametrize("args", [["--bogus"], ["-o", "tonight.plan"], []])
def test_a_usage_error_under_detailed_exitcode_exits_1_not_changes_pending(tmp_path, args):
    """``plan --detailed-exitcode`` exits 2 for "changes pending": a mistyped option, a
    bad -o or a missing spec is an error there (1), never "changes pending"; without
    --detailed-exitcode, click's usual 2."""
    from click.testing import CliRunner

    from mailplan.cli import main

    spec = [] if not args else [str(tmp_path / "m.yaml")]
    res = CliRunner().invoke(main, ["plan", *spec, "--detailed-exitcode", *args])
    assert res.exit_code == 1, res.output
    assert "Error: " in res.output
    res = CliRunner().invoke(main, ["plan", *spec, *args])
    assert res.exit_code == 2, res.output


def test_a_state_file_belongs_to_the_spec_that_applied_it(tmp_path):
    """Two specs sharing one state file (``--state``, or the same ``state:``) saw what
    the other made as theirs to prune. The first apply records its spec; plan, apply
    (--prune too) and verify of another spec are refused, nothing read or written. A
    state file from before the record is adopted by the next apply of its spec."""
    src = make_source(tmp_path / "src", [SourceAccount("ann", 1000, "Ann", "AnnPw1")])
    target = install_target(tmp_path / "target")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={"example.com": {"import": {"uid_min": 1000}}})
    other = write_spec(tmp_path / "other.yaml", source_root=src, target=target,
                       domains={"other.example": {"import": {"uid_min": 1000}}})
    state = tmp_path / "m.state.json"
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert json.loads(state.read_text())["spec_path"] == "m.yaml"
    before, on_target = state.read_bytes(), tree_digest(Path(target.vpopmail_dir))
    for command in (["plan", str(other)], ["apply", str(other), "--prune", "--auto-approve"],
                    ["verify", str(other)]):
        res = mailplan(*command, "--state", str(state))
        assert res.returncode == 1 and res.stderr.startswith(
            f"Error: {state}: this state file belongs to the spec m.yaml, not to other.yaml "
            "(paths from the state file's directory): what that spec made would be taken "
            "for this one's (--prune would delete it); nothing was read or changed\n"
            "  hint: give each spec a state file of its own"), res.stderr
    assert state.read_bytes() == before
    assert tree_digest(Path(target.vpopmail_dir)) == on_target
    assert not (tmp_path / "m.state.json.logs").exists() or len(list(
        (tmp_path / "m.state.json.logs").iterdir())) == 1  # the first apply's log alone
    # a state file written before the record: its spec's next apply (nothing to do) adopts it
    doc = json.loads(before)
    del doc["spec_path"]
    state.write_text(json.dumps(doc))
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert json.loads(state.read_text())["spec_path"] == "m.yaml"
    assert mailplan("plan", str(other), "--state", str(state)).returncode == 1


def test_a_spec_moved_with_its_state_file_keeps_it(tmp_path):
    """The state file records its spec's path from its own directory: the two moved
    together (another checkout of the spec's repository, a renamed directory) still go
    together, and a state file moved away from its spec still refuses another spec."""
    src = make_source(tmp_path / "src", [SourceAccount("ann", 1000, "Ann", "AnnPw1")])
    target = install_target(tmp_path / "target")
    (tmp_path / "a").mkdir()
    spec = write_spec(tmp_path / "a" / "m.yaml", source_root=src, target=target,
                      domains={"example.com": {"import": {"uid_min": 1000}}})
    mailplan("apply", str(spec), "--auto-approve", check=True)
    (tmp_path / "a").rename(tmp_path / "b")
    moved = tmp_path / "b" / "m.yaml"
    assert "No changes." in mailplan("plan", str(moved), check=True).stdout
    assert json.loads((tmp_path / "b" / "m.state.json").read_text())["spec_path"] == "m.yaml"
    other = write_spec(tmp_path / "b" / "other.yaml", source_root=src, target=target,
                       domains={"other.example": {"import": {"uid_min": 1000}}})
    res = mailplan("plan", str(other), "--state", str(tmp_path / "b" / "m.state.json"))
    assert res.returncode == 1
    assert "belongs to the spec m.yaml, not to other.yaml" in res.stderr
