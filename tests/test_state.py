"""The state file: versioned, atomic, 0600, journaled, locked."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from mailplan.errors import MailplanError, StateError
from mailplan.plan import Change
from mailplan.private_files import fingerprint_key, write_private
from mailplan.routing.managed import managed_routing
from mailplan.show import state_document
from mailplan.state import State, locked


def checkpoint(offset: object, **more: object) -> dict[str, object]:
    """A mailbox's checkpoint as an import records it (``more`` replaces its fields, a
    None one left out)."""
    return {key: value for key, value in {
        "path": "/var/mail/x", "inode": 7, "offset": offset, "head": "h" * 64,
        "tail": "t" * 64, "count": 1, **more}.items() if value is not None}


def test_new_state_has_lineage_and_is_written_0600(tmp_path):
    path = tmp_path / "s.json"
    state = State.load(path)
    assert not path.exists() and state.serial == 0
    state.begin("plan-1")
    state.record("create-domain:a.example", {"domain": "a.example", "created": True})
    state.record("create-user:x@a.example", {"domain": "a.example", "user": "x",
                                             "created": True})
    state.finish("ok", {})
    for p in (path, state.journal_path.with_name("s.json.lock")):
        if p.exists():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600
    again = State.load(path)
    assert again.lineage == state.lineage and again.serial == 2
    assert again.managed() == ({"a.example"}, {("a.example", "x")})
    assert not state.journal_path.exists()


def test_a_user_added_to_a_domain_that_was_there_does_not_make_it_mailplans(tmp_path):
    # only the domain's own step says mailplan created it (else --prune would delete a
    # domain made by hand, with its other accounts)
    state = State.load(tmp_path / "s.json")
    state.begin("plan-1")
    state.record("create-user:x@old.example", {"domain": "old.example", "user": "x",
                                               "created": True})
    state.finish("ok", {})
    assert State.load(tmp_path / "s.json").managed() == (set(), {("old.example", "x")})


def test_a_deleted_user_or_domain_takes_its_mail_records_with_it(tmp_path):
    """vdeluser and vdeldomain delete the Maildirs: what the state recorded importing
    into them goes too (show counted that mail, and again once the user was made anew).
    A folder name holding the domain's name is no mailbox of that domain."""
    state = State.load(tmp_path / "s.json")
    state.begin("plan-1")
    for key in ("alice@example.com/INBOX", "alice@example.com/Work", "bob@example.com/INBOX",
                "carol@other.example/INBOX", "carol@other.example/x@example.com/y",
                "alice@example.com.au/INBOX"):
        state.record(f"create-mailbox:{key}", {"mailbox": key, "imported": 1, "bytes": 9,
                                               "checkpoint": checkpoint(9)})
    state.record("delete-user:alice@example.com",
                 {"domain": "example.com", "user": "alice", "deleted": True})
    assert sorted(state.mail()) == ["alice@example.com.au/INBOX", "bob@example.com/INBOX",
                                  "carol@other.example/INBOX",
                                  "carol@other.example/x@example.com/y"]
    state.record("delete-domain:example.com", {"domain": "example.com", "deleted": True})
    state.finish("ok", {})
    assert sorted(State.load(tmp_path / "s.json").mail()) == [
        "alice@example.com.au/INBOX", "carol@other.example/INBOX",
        "carol@other.example/x@example.com/y"]


def test_a_user_or_domain_made_anew_forgets_the_mail_of_the_maildir_deleted_by_hand(
        tmp_path):
    """A user or domain mailplan creates has a new Maildir (vadduser refuses a directory
    holding files): what the state recorded under its name was imported into one deleted
    outside mailplan (vdeluser by hand), and goes (show counted it with the new import).
    Other users' and domains' records stay."""
    state = State.load(tmp_path / "s.json")
    state.begin("plan-1")
    for key in ("bob@example.com/INBOX", "bob@example.com/Sent", "ann@example.com/INBOX",
                "bob@other.example/INBOX", "carl@gone.example/INBOX"):
        state.record(f"create-mailbox:{key}", {"mailbox": key, "imported": 1, "bytes": 9,
                                               "checkpoint": checkpoint(9)})
    state.record("create-user:bob@example.com",
                 {"domain": "example.com", "user": "bob", "created": True})
    assert sorted(state.mail()) == ["ann@example.com/INBOX", "bob@other.example/INBOX",
                                  "carl@gone.example/INBOX"]
    state.record("create-domain:gone.example", {"domain": "gone.example", "created": True})
    state.record("create-mailbox:bob@example.com/INBOX",
                 {"mailbox": "bob@example.com/INBOX", "imported": 1, "bytes": 9})
    state.finish("ok", {})
    mail = State.load(tmp_path / "s.json").mail()
    assert sorted(mail) == ["ann@example.com/INBOX", "bob@example.com/INBOX",
                            "bob@other.example/INBOX"]
    assert mail["bob@example.com/INBOX"] == {"imported": 1, "bytes": 9}


def test_journal_of_a_killed_run_is_folded_in(tmp_path):
    path = tmp_path / "s.json"
    code = f"""
import os
from mailplan.state import State
s = State.load(__import__("pathlib").Path({str(path)!r}))
s.begin("p")
s.record("create-domain:a.example", {{"domain": "a.example", "created": True}})
os.write(s._journal, b'{{"id": "half')  # killed in the middle of writing the next line
os._exit(9)
"""
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    state = State.load(path)
    assert state.serial == 1 and state.managed()[0] == {"a.example"}
    assert state.data["history"][-1]["result"] == "interrupted"
    assert not state.journal_path.exists()


def test_plan_reads_the_journal_without_writing(tmp_path):
    path = tmp_path / "s.json"
    s = State.load(path)
    s.begin("p")
    s.record("create-domain:a.example", {"domain": "a.example", "created": True})
    before = path.read_bytes()
    view = State.load(path, fold=False)
    assert view.managed()[0] == {"a.example"}
    assert path.read_bytes() == before and s.journal_path.exists()


@pytest.mark.parametrize("content, message", [
    ('{"format_version": 99, "lineage": "x", "serial": 1, "managed": {}, "history": []}',
     "state format version 99, but this mailplan reads version 1"),
    ('{"format_version": 1, "lin', "unreadable or corrupt"),
    ('[]', "not a mailplan state file"),
    # another JSON file given as --state: not "use the mailplan version that wrote it"
    ('{}', r"not a mailplan state file \(it has no format_version\)"),
    # the right keys holding the wrong things (a hand edit, another tool's file)
    ('{"format_version": 1, "lineage": "x", "serial": "abc", "managed": {}, "history": []}',
     "the state file's 'serial' does not hold a whole number"),
    ('{"format_version": 1, "lineage": "x", "serial": 0, "managed": [], "history": []}',
     "the state file's 'managed' does not hold domains, each with its users"),
    ('{"format_version": 1, "lineage": "x", "serial": 0, "managed": {"a.example": {}}, '
     '"history": []}', "the state file's 'managed' does not hold domains"),
    ('{"format_version": 1, "lineage": "x", "serial": 0, "managed": {}, "history": {}}',
     "the state file's 'history' does not hold a list"),
    ('{"format_version": 1, "lineage": "x", "serial": 0, "managed": {}, "history": [], '
     '"mail": []}', "the state file's 'mail' does not hold mailboxes"),
    # ... and one level down (show and apply read them as such)
    ('{"format_version": 1, "lineage": "x", "serial": 0, "managed": {}, "history": ["x"]}',
     "the state file's 'history' does not hold a list of applies"),
    ('{"format_version": 1, "lineage": "x", "serial": 0, "managed": {}, "history": [], '
     '"mail": {"a@b/INBOX": [1]}}', "the state file's 'mail' does not hold mailboxes"),
    ('{"format_version": 1, "lineage": "x", "serial": 0, "managed": {}, "history": [], '
     '"mail": {"a@b/INBOX": {"imported": "x", "bytes": 1}}}',
     "the state file's 'mail' does not hold mailboxes"),
    ('{"format_version": 1, "lineage": "x", "serial": 0, "managed": {}, "history": [], '
     '"mail": {"a@b/INBOX": {"imported": 1, "bytes": 1, "found": "x"}}}',
     "the state file's 'mail' does not hold mailboxes"),
    ('{"format_version": 1, "lineage": "x", "serial": 0, "managed": {}, "history": [], '
     '"routing": {"a.example": ["x"]}}', "the state file's 'routing' does not hold domains"),
    ('{"format_version": 1, "lineage": "x", "serial": 0, "managed": {}, "history": [], '
     '"routing": {"a.example": {"alias": ["x", 1]}}}',
     "the state file's 'routing' does not hold domains"),
    ('{"format_version": 1, "lineage": "x", "serial": 0, "managed": {}, "history": [], '
     '"intents": {"create-domain:a": "x"}}', "the state file's 'intents' does not hold steps"),
    # one level down: these would otherwise end plan or apply in a traceback
    ('{"format_version": 1, "lineage": "x", "serial": 0, "managed": {}, "history": [1]}',
     "the state file's 'history' does not hold a list of applies"),
    ('{"format_version": 1, "lineage": "x", "serial": 0, "managed": {}, "history": [], '
     '"mail": {"x@a.example/INBOX": 3}}', "the state file's 'mail' does not hold mailboxes"),
    ('{"format_version": 1, "lineage": "x", "serial": 0, "managed": {}, "history": [], '
     '"routing": {"a.example": []}}', "the state file's 'routing' does not hold domains"),
    ('{"format_version": 1, "lineage": "x", "serial": 0, "managed": {}, "history": [], '
     '"routing": {"a.example": {"alias": ["info"]}}}',
     "the state file's 'routing' does not hold domains"),
    ('{"format_version": 1, "lineage": "x", "serial": 0, "managed": {}, "history": [], '
     '"intents": {"create-user:x@a.example": {"user": "x"}}}',
     "the state file's 'intents' does not hold steps"),
    # a checkpoint's offsets: read as numbers, a wrong "ends" would silently cost the
    # record of where reads ended (a message imported twice)
    *[(json.dumps({"format_version": 1, "lineage": "x", "serial": 0, "managed": {},
                   "history": [], "mail": {"x@a.example/INBOX": {"checkpoint": checkpoint(
                       offset, ends=ends)}}}),
       "the state file's 'mail' does not hold mailboxes")
      for offset, ends in (("99", []), (99, "50"), (99, [True]), (99, [0]), (99, [100]),
                           (99, ["50"]), (99, [50.0]), (-1, []))],
    # the rest of what the plan reads of a checkpoint (it ended in a traceback)
    *[(json.dumps({"format_version": 1, "lineage": "x", "serial": 0, "managed": {},
                   "history": [], "mail": {"x@a.example/INBOX": {"checkpoint": checkpoint(
                       None if field == "offset" else 99,
                       **({} if field == "offset" else {field: wrong}))}}}),
       "the state file's 'mail' does not hold mailboxes")
      for field, wrong in (("path", None), ("path", 3), ("inode", None), ("inode", "7"),
                           ("head", None), ("head", []), ("tail", None), ("tail", 1),
                           ("offset", None), ("count", "x"), ("count", -1),
                           ("count", 1.5))],
])
def test_bad_state_refused_with_recovery_advice(tmp_path, content, message):
    path = tmp_path / "s.json"
    path.write_text(content)
    with pytest.raises(StateError, match=message) as info:
        State.load(path)
    if "corrupt" in message or "format_version" in message:
        assert "the target itself is enough to rebuild" in str(info.value)


def test_second_apply_is_refused_naming_the_holder(tmp_path):
    path = tmp_path / "s.json"
    with locked(path):
        code = ("from pathlib import Path\nfrom mailplan.state import locked\n"
                f"with locked(Path({str(path)!r})): pass")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert res.returncode != 0
        assert f"pid {os.getpid()}" in res.stderr and "locked by another mailplan" in res.stderr
    with locked(path):  # released
        pass


def test_state_file_is_json_with_format_version(tmp_path):
    path = tmp_path / "s.json"
    s = State.load(path)
    s.begin("p")
    s.finish("ok", {})
    data = json.loads(path.read_text())
    assert data["format_version"] == 1 and data["history"][0]["result"] == "ok"


def test_private_files_are_never_written_through_what_lies_beside_them(tmp_path):
    """Plan files, state files, journals and locks: a file or symbolic link someone left
    under a temp name beside them (``p.json.tmp`` was the plan's fixed temp name) is
    neither written through nor lends its mode; an existing journal or log that had
    another mode is made 0600; a journal that is a symbolic link is refused."""
    from mailplan.plan import Plan
    from mailplan.private_files import open_private_append

    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    for name in ("p.json", "s.json"):
        (tmp_path / f"{name}.tmp").symlink_to(victim)
        loose = tmp_path / f".{name}.{os.getpid()}.tmp"
        loose.write_text("")
        loose.chmod(0o644)
    Plan(spec_path="m.yaml", spec_digest="0" * 64, lineage=None, serial=0,
         target_digest="0" * 64, changes=[]).save(tmp_path / "p.json")
    write_private(tmp_path / "s.json", "{}\n")
    assert victim.read_text() == "untouched\n"
    for name in ("p.json", "s.json"):
        path = tmp_path / name
        assert not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir() if ".tmp" in p.name) == sorted(
        [f".p.json.{os.getpid()}.tmp", f".s.json.{os.getpid()}.tmp", "p.json.tmp",
         "s.json.tmp"])  # nothing of its own left behind
    journal = tmp_path / "j"
    journal.write_text("")
    journal.chmod(0o644)
    os.close(open_private_append(journal))
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    (tmp_path / "link").symlink_to(victim)
    with pytest.raises(OSError):
        open_private_append(tmp_path / "link")
    assert victim.read_text() == "untouched\n"


def test_a_state_or_plan_in_a_missing_directory_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere" / "s.json"
    with pytest.raises(StateError, match="cannot open the state's lock file .*: No such file"
                       ) as info, locked(missing):
        pass
    assert "must exist and be writable" in str(info.value)
    with pytest.raises(MailplanError, match=f"cannot write {missing}: No such file"):
        write_private(missing, "{}")


def test_a_state_reached_through_a_link_shares_its_lock_and_stays_one_file(tmp_path):
    # two admins, one through a symbolic link: the second apply must be refused, and a
    # save must replace the file, not the link
    from mailplan.engine import state_path_for
    from mailplan.spec import load_spec

    (tmp_path / "shared").mkdir()
    (tmp_path / "admin2").mkdir()
    os.symlink(tmp_path / "shared/m.state.json", tmp_path / "admin2/m.state.json")
    spec_file = tmp_path / "admin2/m.yaml"
    spec_file.write_text("version: 1\nhosts: {h: {local: true}}\nsource: {host: h}\n"
                         "target: {host: h}\ndomains: {example.com: {}}\n")
    spec = load_spec(spec_file)
    real = (tmp_path / "shared/m.state.json").resolve()
    assert state_path_for(spec) == real  # the default beside the spec, a link there
    assert state_path_for(spec, tmp_path / "admin2/m.state.json") == real
    with locked(state_path_for(spec, tmp_path / "shared/m.state.json")), \
            pytest.raises(StateError, match="is locked by another mailplan apply"), \
            locked(state_path_for(spec)):
        pass
    state = State.load(state_path_for(spec))
    state.begin("p")
    state.finish("ok", {})
    assert (tmp_path / "admin2/m.state.json").is_symlink() and real.is_file()


def test_a_journal_write_cut_short_by_a_full_disk_leaves_whole_lines(tmp_path, monkeypatch):
    import errno

    from mailplan import state as state_mod

    path = tmp_path / "s.json"
    s = State.load(path)
    s.begin("p")
    s.record("create-domain:a.example", {"domain": "a.example", "created": True})
    real = state_mod.write_all

    def half_then_full(fd, data):  # the disk took part of the line, then nothing
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(state_mod, "write_all", half_then_full)
    with pytest.raises(StateError, match="cannot write the journal .*No space left") as info:
        s.record("create-user:x@a.example", {"domain": "a.example", "user": "x",
                                              "created": True})
    assert "the next plan finds it there" in str(info.value)
    monkeypatch.setattr(state_mod, "write_all", real)  # space again
    s.record("create-user:y@a.example", {"domain": "a.example", "user": "y", "created": True})
    lines = s.journal_path.read_bytes().splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["create-domain:a.example",
                                                      "create-user:y@a.example"]
    assert State.load(path, fold=False).managed() == (
        {"a.example"}, {("a.example", "y")})


def test_a_state_save_on_a_full_disk_is_a_clear_error_and_keeps_the_old_file(
        tmp_path, monkeypatch):
    import errno

    from mailplan import private_files

    path = tmp_path / "s.json"
    write_private(path, "old\n")

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(private_files, "write_all", full)
    with pytest.raises(MailplanError, match=f"cannot write {path}: No space left") as info:
        write_private(path, "new\n")
    assert "free space" in str(info.value)
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "s.json"]


def test_an_intent_is_kept_until_its_record_or_its_drop_and_claims_nothing_by_itself(
        tmp_path):
    path = tmp_path / "s.json"
    s = State.load(path)
    s.begin("p")
    s.intend("create-domain:b.example", {"domain": "b.example", "created": True})
    s.intend("create-user:x@a.example", {"domain": "a.example", "user": "x", "created": True})
    s.intend("create-alias:info@a.example", {"domain": "a.example", "routing": "alias",
                                             "name": "info", "created": True})
    serial = s.serial  # an intent is not a step done
    # killed here: the next load folds the journal, intents included
    again = State.load(path)
    assert set(again.intents()) == {"create-domain:b.example", "create-user:x@a.example",
                                    "create-alias:info@a.example"}
    # nothing counts as mailplan's until an apply found it there (apply.settle_intents)
    assert again.managed() == (set(), set()) and again.serial == serial
    assert managed_routing(again.data, "a.example", "alias") == frozenset()
    assert again.view().pending == {"b.example"}  # its postmaster password: not known set
    again.begin("q")
    again.drop_intent("create-alias:info@a.example")
    again.drop_intent("create-domain:b.example")
    again.record("create-user:x@a.example", {"domain": "a.example", "user": "x",
                                             "created": True, "adopted": True})
    again.finish("ok", {})
    final = State.load(path)
    assert final.intents() == {} and final.managed() == (set(), {("a.example", "x")})
    # found after a cut: its password may be vadduser's random one until one is set
    assert final.view().users_unset == {("a.example", "x")}
    final.begin("r")
    final.record("update-password:x@a.example", {"domain": "a.example", "user": "x",
                                                 "password_set": True})
    final.finish("ok", {})
    assert State.load(path).view().users_unset == frozenset()


def test_a_user_whose_creation_is_pending_has_no_password_known_set(tmp_path):
    s = State.load(tmp_path / "s.json")
    s.begin("p")
    s.intend("create-user:x@a.example", {"domain": "a.example", "user": "x", "created": True})
    assert State.load(tmp_path / "s.json").view().users_unset == {("a.example", "x")}


def test_an_apply_adopts_only_the_intents_whose_object_it_found(tmp_path):
    # an alias whose valias -i never ran (or failed) must not become mailplan's because
    # its domain exists: one made by hand later would be pruned
    from mailplan.apply import settle_intents
    from mailplan.engine import Planned
    from mailplan.facts.vpopmail import TargetDomain, TargetFacts
    from mailplan.plan import Plan
    from mailplan.routing.facts import ObservedRouting
    from mailplan.routing.target import TargetRouting

    s = State.load(tmp_path / "s.json")
    s.begin("p")
    claims = {
        "create-alias:info@a.example": {"domain": "a.example", "routing": "alias",
                                        "name": "info", "created": True},
        "create-alias:sales@a.example": {"domain": "a.example", "routing": "alias",
                                         "name": "sales", "created": True},
        "create-user:x@a.example": {"domain": "a.example", "user": "x", "created": True},
        "create-user:y@a.example": {"domain": "a.example", "user": "y", "created": True},
        "create-alias_domain:a.example": {"domain": "a.example", "routing": "alias_domain",
                                          "name": "b.example", "created": True}}
    for change_id, claim in claims.items():
        s.intend(change_id, claim)
    s.finish("interrupted", {})
    state = State.load(tmp_path / "s.json")
    facts = TargetFacts("new")
    facts.domains["a.example"] = TargetDomain("a.example", "/d", (), {"x": None, "y": None})
    seen = TargetRouting({"a.example": ObservedRouting("a.example", aliases={
        "info": ("&x@a.example",)})}, {"b.example": None})
    again = Change("create", "user", "a.example", "y")  # planned again: y is not there
    planned = Planned(None, Plan("m.yaml", "d", None, 0, "t", [again]), None,  # type: ignore[arg-type]
                      facts, routing_seen=seen)
    state.begin("q")
    settle_intents(planned, state)
    state.finish("ok", {})
    final = State.load(tmp_path / "s.json")
    assert final.intents() == {}
    assert final.managed() == (set(), {("a.example", "x")})
    assert managed_routing(final.data, "a.example", "alias") == {"info"}
    assert managed_routing(final.data, "a.example", "alias_domain") == frozenset()


def test_an_apply_drops_the_records_of_what_the_plan_found_gone_and_only_those(tmp_path):
    # removed by hand: a user, an alias, a forward, an alias domain, and a whole domain
    # (its users' and aliases' records go with it); kept: what is there, and what the
    # plan did not read (a domain not looked at, routing of a domain not observed)
    from mailplan.apply import settle_intents
    from mailplan.engine import Planned
    from mailplan.facts.vpopmail import TargetDomain, TargetFacts
    from mailplan.plan import Plan
    from mailplan.records import gone_noops, gone_records
    from mailplan.routing.facts import ObservedRouting
    from mailplan.routing.managed import effect
    from mailplan.routing.target import TargetRouting

    s = State.load(tmp_path / "s.json")
    s.begin("p")
    for domain in ("a.example", "b.example", "c.example"):
        s.record(f"create-domain:{domain}", {"domain": domain, "created": True})
        for user in ("x", "y"):
            s.record(f"create-user:{user}@{domain}", {"domain": domain, "user": user,
                                                     "created": True})
        for kind, name in (("alias", "info"), ("alias", "sales"), ("forward", "x"),
                           ("forward", "y"), ("alias_domain", "a.test"),
                           ("alias_domain", "b.test")):
            s.record(f"create-{kind}:{name}@{domain}", effect(kind, domain, name,
                                                              created=True))
    s.finish("ok", {})
    state = State.load(tmp_path / "s.json")
    facts = TargetFacts("new", looked_at=frozenset({"a.example", "b.example"}))
    facts.domains["a.example"] = TargetDomain("a.example", "/d", (), {"x": None})
    # b.example was looked at and is not there; c.example was not looked at
    seen = TargetRouting({"a.example": ObservedRouting("a.example", aliases={
        "info": ("&x@a.example",)}, forwards={"x": ("&z@b.example",)})},
        {"a.test": "a.example", "b.test": None})
    gone = gone_records(state.data, facts, seen)
    assert gone == [{"domain": "a.example", "user": "y"},
                    {"domain": "a.example", "routing": "alias", "name": "sales"},
                    {"domain": "a.example", "routing": "alias_domain", "name": "b.test"},
                    {"domain": "a.example", "routing": "forward", "name": "y"},
                    {"domain": "b.example"}]
    assert [(n.domain, n.user) for n in gone_noops(gone)] == [
        ("a.example", "y"), ("a.example", "sales"), ("a.example", "b.test"),
        ("a.example", "y"), ("b.example", None)]
    assert gone_noops(gone)[1].reason.startswith("alias created by mailplan, not on the "
                                                 "target any more (removed by hand)")
    planned = Planned(None, Plan("m.yaml", "d", None, 0, "t", []), None,  # type: ignore[arg-type]
                      facts, routing_seen=seen, gone=gone)
    state.begin("q")
    settle_intents(planned, state)
    state.finish("ok", {})
    final = State.load(tmp_path / "s.json")
    assert final.managed() == ({"a.example", "c.example"}, {
        ("a.example", "x"), ("c.example", "x"), ("c.example", "y")})
    assert managed_routing(final.data, "a.example", "alias") == {"info"}
    assert managed_routing(final.data, "a.example", "forward") == {"x"}
    assert managed_routing(final.data, "a.example", "alias_domain") == {"a.test"}
    assert managed_routing(final.data, "b.example", "alias") == frozenset()
    assert managed_routing(final.data, "c.example", "alias") == {"info", "sales"}
    # the plan after finds nothing more gone
    assert gone_records(final.data, facts, seen) == []


def test_a_journal_already_folded_is_not_folded_twice(tmp_path):
    # killed after finish() replaced the state (journal folded in) and before it removed
    # the journal: the next load must not count the run's steps a second time, nor add
    # an "interrupted" run that never was (a saved plan's resume checks the last run)
    path = tmp_path / "s.json"
    s = State.load(path)
    s.begin("p")
    s.record("mailbox:x@a.example/INBOX", {"mailbox": "x@a.example/INBOX", "imported": 3,
                                           "bytes": 300})
    s.finish("interrupted", {})
    kept = s.journal_path.with_name("kept")
    State.load(path).begin("p")  # a resume of that plan, killed before its first step
    killed = s.journal_path.read_bytes()
    State.load(path)  # folds that journal in... and is killed before removing it
    s.journal_path.write_bytes(killed)
    again = State.load(path)
    again.begin("p")
    again.record("mailbox:x@a.example/INBOX", {"mailbox": "x@a.example/INBOX",
                                               "imported": 2, "bytes": 200})
    os.link(again.journal_path, kept)
    again.finish("interrupted", {})
    os.rename(kept, again.journal_path)  # as if the unlink never happened
    final = State.load(path)
    assert final.mail()["x@a.example/INBOX"]["imported"] == 5
    assert final.serial == 2
    assert [h["result"] for h in final.data["history"]] == ["interrupted"] * 3
    assert [h["plan_id"] for h in final.data["history"]] == ["p"] * 3


def test_a_plan_stopped_while_making_the_key_leaves_none(tmp_path, monkeypatch):
    """The saved plans' fingerprint key is written whole, then linked into place: a plan
    stopped while writing it (Ctrl-C, a kill) leaves no key, never an empty one that
    every later plan would refuse; the next plan makes it."""
    import mailplan.private_files

    def cut(fd: int, data: bytes) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(mailplan.private_files, "write_all", cut)
    with pytest.raises(KeyboardInterrupt):
        fingerprint_key(tmp_path / "s.json")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    key = fingerprint_key(tmp_path / "s.json")
    assert len(key) == 32 and fingerprint_key(tmp_path / "s.json") == key
    assert stat.S_IMODE((tmp_path / "s.json.key").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["s.json.key"]



def test_a_key_that_cannot_be_made_says_where_not_remove_it(tmp_path):
    """A state beside which the key cannot be made (a mistyped --state, in a directory
    that does not exist) is said as such, not as a key to remove."""
    with pytest.raises(StateError) as caught:
        fingerprint_key(tmp_path / "missing" / "s.json")
    assert "cannot create the plan fingerprint key" in str(caught.value)
    assert caught.value.hint == (f"the directory {tmp_path / 'missing'} must exist and be "
                                 "writable (or choose another --state)")


@pytest.mark.parametrize(("owner", "mode", "wrong", "fix"), [
    (65534, 0o600, "it belongs to nobody, not to root who runs mailplan",
     "if you made it, `chown root {key}` and `chmod 600 {key}`; if not, "),
    (0, 0o640, "its mode is 0640: group or others may read or write it",
     "if you made it, `chmod 600 {key}`; if not, "),
    (0, 0o602, "its mode is 0602: group or others may read or write it",
     "if you made it, `chmod 600 {key}`; if not, "),
], ids=["owner", "group-read", "others-write"])
def test_a_key_another_user_owns_or_others_may_read_is_refused_as_ssh_does(
        tmp_path, owner, mode, wrong, fix):
    """The fingerprint key was used whatever its owner and mode: a state kept in a
    directory others can write to could be given a planted key (one its planter knows:
    the saved plan's fingerprints then test password guesses), and a key others may read
    gives the same. As OpenSSH does for a private key, it is refused, saying what is
    wrong and how to mend it; a new key is still made 0600 and taken."""
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    key = tmp_path / "my state" / "s.json.key"
    key.parent.mkdir()
    assert len(fingerprint_key(key.parent / "s.json")) == 32  # made 0600: taken
    os.chown(key, owner, -1)
    key.chmod(mode)
    with pytest.raises(StateError) as caught:
        fingerprint_key(key.parent / "s.json")
    assert str(caught.value).startswith(f"{key}: refusing the plan fingerprint key: {wrong}")
    assert caught.value.hint == fix.format(key=f"'{key}'") + (
        "remove it (a new one is made by the next plan; plans saved with the old one are "
        "then refused as stale)")
    key.unlink()
    os.mkfifo(key, 0o600)  # not waited on: refused at once
    with pytest.raises(StateError, match="it is not a regular file"):
        fingerprint_key(key.parent / "s.json")


@pytest.mark.parametrize(("name", "owner", "mode", "wrong", "fix"), [
    ("s.json", 65534, 0o600, "it belongs to nobody, not to root who runs mailplan",
     "`chown root {file}` and `chmod 600 {file}`"),
    ("s.json", 0, 0o620, "its mode is 0620: group or others may write it",
     "`chmod 600 {file}`"),
    ("s.json.journal", 0, 0o602, "its mode is 0602: group or others may write it",
     "`chmod 600 {file}`"),
    ("s.json.journal", 65534, 0o600, "it belongs to nobody, not to root who runs mailplan",
     "`chown root {file}` and `chmod 600 {file}`"),
], ids=["state-owner", "state-group-write", "journal-others-write", "journal-owner"])
def test_a_state_another_user_owns_or_others_may_write_is_refused(
        tmp_path, name, owner, mode, wrong, fix):
    """The state and its journal were read whatever their owner and mode, yet what they
    record decides what --prune deletes: whoever could write them could have it run
    vdeluser or vdeldomain on users mailplan never made. As the fingerprint key (and
    OpenSSH's keys) they are refused when another user owns them or group or others may
    write them, saying what is wrong and how to mend it, by plan (no fold) as by apply;
    one mailplan made (0600) is taken, and so is one others may only read."""
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    path = tmp_path / "my state" / "s.json"
    path.parent.mkdir()
    state = State.load(path)
    state.begin("p")
    state.record("create-domain:a.example", {"domain": "a.example", "created": True})
    state.finish("complete", {})  # the state written as mailplan writes it
    state = State.load(path)
    state.begin("p2")  # a journal, as a killed apply leaves it
    state.record("create-domain:b.example", {"domain": "b.example", "created": True})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert State.load(path, fold=False).managed()[0] == {"a.example", "b.example"}
    for each in (path, state.journal_path):
        each.chmod(0o644)  # reading is harmless: it holds no secret
    assert State.load(path, fold=False).managed()[0] == {"a.example", "b.example"}
    file = path.parent / name
    os.chown(file, owner, -1)
    file.chmod(mode)
    for fold in (False, True):
        with pytest.raises(StateError) as caught:
            State.load(path, fold=fold)
        what = "the state file" if name == "s.json" else "the state's journal"
        assert caught.value.message == (f"{file}: refusing {what}: {wrong} (what it records "
                                     "decides what --prune deletes)")
        assert caught.value.hint == ("if you made it, " + fix.format(file=f"'{file}'")
                                     + f"; if not, look at what it records (`mailplan show "
                                     f"'{path}'`) before you trust it")
    assert state.journal_path.exists()  # nothing folded, nothing written
    shown = state_document(path, raw=json.loads(path.read_text()))  # show: read only
    assert sorted(shown["managed"]) == ["a.example", "b.example"], shown
