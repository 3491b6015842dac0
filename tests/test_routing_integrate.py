"""Routing wired into the core: spec checks, plan order, journal records, plan model."""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace

import jsonschema
import pytest

from mailplan.desired import Catchall, Desired, DesiredDomain, DesiredUser, Password, Problem
from mailplan.errors import SourceDataError, SpecError, StateError
from mailplan.plan import Change, Plan
from mailplan.render import render_plan
from mailplan.routing.aliases import parse_aliases
from mailplan.routing.diff import AddAlias, AddAliasDomain, ChangeAlias, SetForward
from mailplan.routing.facts import ObservedRouting
from mailplan.routing.integrate import _still_on_target, map_spec, merge_changes, to_core
from mailplan.routing.managed import (
    apply_routing_entry,
    effect,
    managed_routing,
    unchanged_routing,
)
from mailplan.routing.mapping import map_routing
from mailplan.routing.model import Include, Origin, RoutingError
from mailplan.routing.rules import DomainRules, SourceRouting
from mailplan.routing.virtusertable import parse_virtusertable
from mailplan.secret import Secret
from mailplan.spec import load_schema, load_spec
from mailplan.state import State

BASE = """\
version: 1
hosts:
  old: {address: old.example.com}
  new: {local: true}
source: {host: old, aliases: /etc/mail/aliases, virtusertable: /etc/mail/virtusertable}
target: {host: new}
domains:
  example.com:
    users:
      - name: alice
    import_aliases: {include: [info, "list-*"], exclude: [list-old]}
    aliases:
      sales: [alice, partner@remote.example]
    alias_domains: [example.net]
  example.org: {}
"""


def write(tmp_path, text):
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_routing_keys_load(tmp_path):
    spec = load_spec(write(tmp_path, BASE))
    body = spec.data["domains"]["example.com"]
    assert body["aliases"] == {"sales": ["alice", "partner@remote.example"]}
    assert spec.data["source"]["virtusertable"] == "/etc/mail/virtusertable"
    listed = BASE.replace("aliases: /etc/mail/aliases,",
                          "aliases: [/etc/mail/aliases, /etc/mail/aliases.local],")
    assert load_spec(write(tmp_path, listed)).data["source"]["aliases"] == [
        "/etc/mail/aliases", "/etc/mail/aliases.local"]


@pytest.mark.parametrize(("old", "new", "where", "words"), [
    ("alias_domains: [example.net]", "alias_domains: [example.org]",
     ":14:21: domains['example.com'].alias_domains[0]", "is a domain of its own"),
    ("alias_domains: [example.net]", "alias_domains: [Example.COM]",
     ":14:21: domains['example.com'].alias_domains[0]", "it is the domain itself"),
    ("alias_domains: [example.net]", "alias_domains: [bad_name.net]",
     ":14:21: domains['example.com'].alias_domains[0]", "label 'bad_name' is not valid"),
    ("  example.org: {}", "  example.org: {alias_domains: [example.net]}",
     ":15:33: domains['example.org'].alias_domains[0]", "already an alias domain of"),
    ("sales: [alice,", "alice: [alice,", ":13:7: domains['example.com'].aliases.alice",
     "would shadow it"),
    ("sales: [alice,", "postmaster: [alice,", ":13:7:", "stays vpopmail's own account"),
    ("sales: [alice,", "default: [alice,", ":13:7:", "as a catch-all or wildcard"),
    ("sales: [alice,", "'list+*': [alice,", ":13:7:",
     "'+*' is sendmail's wildcard for every NAME+DETAIL address"),
    ("sales: [alice,", "sales: ['|/bin/prog',", ":13:15: domains['example.com'].aliases.sales[0]",
     "no programs, files, includes"),
    ("sales: [alice,", "sales: ['a@b@c',", ":13:15:", "not a usable destination"),
    ("sales: [alice, partner@remote.example]", "sales: []", ":13:14:", "should be non-empty"),
    ("sales: [alice, partner@remote.example]",
     "sales: [alice, partner@remote.example]\n      Sales: [bob]",
     ":14:7: domains['example.com'].aliases.Sales",
     "the same alias as 'sales' (alias names are case-insensitive)"),
    ("import_aliases: {include", "import_aliases: {only", ":11:21:",
     "expected true, false or {include"),
    ("virtusertable: /etc/mail/virtusertable}", "virtusertable: mail/vt}", ":5:",
     "does not have the form this key takes"),
    ("aliases: /etc/mail/aliases,", "aliases: /etc/mail/aliases, forward: yes please,", ":5:",
     "expected true or false, got 'yes please'"),
    ("aliases: /etc/mail/aliases,", "aliases: [/etc/mail/aliases, mail/aliases.local],",
     ":5:", "source.aliases: expected an absolute path or a list of absolute paths"),
    ("aliases: /etc/mail/aliases,", "aliases: [],", ":5:", "expected an absolute path"),
])
def test_routing_spec_errors_point_at_the_value(tmp_path, old, new, where, words):
    assert old in BASE
    with pytest.raises(SpecError) as err:
        load_spec(write(tmp_path, BASE.replace(old, new)))
    text = str(err.value)
    assert where in text and words in text, text


def test_every_routing_schema_key_has_title_and_description():
    schema = load_schema("spec-v1.schema.json")
    keys = {**schema["properties"]["source"]["properties"],
            **schema["$defs"]["domain"]["properties"]}
    for name in ("aliases", "virtusertable", "forward", "import_aliases", "alias_domains"):
        assert keys[name].get("title") and keys[name].get("description"), name


def _change(action: str, kind: str, user: str | None = None) -> Change:
    return Change(action, kind, "example.com", user)


def test_routing_changes_run_after_creations_and_before_deletions():
    core = [_change("create", "domain"), _change("create", "user", "alice"),
            _change("update", "catchall"), _change("delete", "user", "old"),
            _change("delete", "domain")]
    routing = [_change("delete", "forward", "alice"), _change("create", "alias", "info"),
               _change("update", "forward", "bob")]
    merged = merge_changes(core, routing)
    assert [(c.action, c.kind) for c in merged] == [
        ("create", "domain"), ("create", "user"), ("update", "catchall"),
        ("create", "alias"), ("update", "forward"), ("delete", "forward"),
        ("delete", "user"), ("delete", "domain")]
    assert merge_changes(core[:2], routing)[-1].action == "delete"


def test_core_changes_from_routing_changes():
    origins = {"info": Origin("/etc/aliases", 7)}
    add = to_core(AddAlias("example.com", "info", ("&alice@example.com",)), origins)
    assert (add.id, add.symbol, add.after) == (
        "create-alias:info@example.com", "+", "&alice@example.com (from /etc/aliases:7)")
    change = to_core(ChangeAlias("example.com", "info", ("&a@x.example",), ("b@y.example",)),
                     {})
    assert (change.id, change.before, change.after) == (
        "update-alias:info@example.com", "b@y.example", "&a@x.example")
    fwd = to_core(SetForward("example.com", "alice", ("./Maildir/",), ("&x@y.example",)), {})
    assert fwd.id == "update-forward:alice@example.com"
    dom = to_core(AddAliasDomain("example.com", "example.net"), {})
    assert (dom.id, dom.after) == ("create-alias_domain:example.net",
                                   "alias of example.com (vaddaliasdomain)")
    plan = Plan("s", "0" * 64, None, 0, "0" * 64, [add, change, fwd, dom])
    jsonschema.validate(plan.to_dict(), load_schema("plan-v1.schema.json"))
    text = render_plan(plan, target="newmail")
    assert "  ~ alias info@example.com: b@y.example -> &a@x.example\n" in text
    assert "  + alias_domain example.net\n      alias of example.com" in text


def test_routing_journal_entries_never_mark_domains_or_users(tmp_path):
    state = State.load(tmp_path / "s.json")
    state.begin("p1")
    state.record("create-alias:info@example.com",
                 {"domain": "example.com", "routing": "alias", "name": "info", "created": True})
    state.record("create-forward:alice@example.com", {"domain": "example.com",
                 "routing": "forward", "name": "alice", "created": True})
    state.finish("ok", {})
    state = State.load(tmp_path / "s.json")
    assert state.managed() == (set(), set())  # the domain was not created by mailplan
    assert state.data["routing"]["example.com"]["alias"].keys() == {"info"}
    state.begin("p2")
    state.record("delete-alias:info@example.com", {"domain": "example.com",
                 "routing": "alias", "name": "info", "deleted": True})
    state.record("delete-user:alice@example.com",
                 {"domain": "example.com", "user": "alice", "deleted": True})
    state.finish("ok", {})
    assert state.data["routing"]["example.com"] == {"alias": {}, "forward": {}}
    state.begin("p3")
    state.record("create-domain:example.com", {"domain": "example.com", "created": True})
    state.record("delete-domain:example.com", {"domain": "example.com", "deleted": True})
    state.finish("ok", {})
    assert "example.com" not in state.data["routing"]


def test_a_user_mailplan_makes_anew_has_no_forward_of_mailplans(tmp_path):
    """vdeluser by hand took the .qmail mailplan wrote with the user's directory; once
    mailplan makes the user again, a .qmail there is not its own: --prune would have
    removed one an admin wrote since. Other users' and domains' forwards stay."""
    state = State.load(tmp_path / "s.json")
    state.begin("p1")
    for domain, user in (("example.com", "alice"), ("example.com", "bob"),
                         ("other.example", "alice")):
        state.record(f"create-forward:{user}@{domain}", {"domain": domain,
                     "routing": "forward", "name": user, "created": True})
    state.record("create-alias:alice@example.com", {"domain": "example.com",
                 "routing": "alias", "name": "info", "created": True})
    state.record("create-user:alice@example.com",
                 {"domain": "example.com", "user": "alice", "created": True})
    state.finish("ok", {})
    state = State.load(tmp_path / "s.json")
    assert managed_routing(state.data, "example.com", "forward") == {"bob"}
    assert managed_routing(state.data, "example.com", "alias") == {"info"}
    assert managed_routing(state.data, "other.example", "forward") == {"alice"}


def test_a_damaged_routing_journal_line_is_refused(tmp_path):
    path = tmp_path / "s.json"
    State.load(path).save()
    journal = tmp_path / "s.json.journal"
    journal.write_text(json.dumps({"id": "x", "domain": "example.com", "routing": "alias"})
                       + "\n")
    with pytest.raises(StateError, match="s.json.journal:1: corrupt journal line"):
        State.load(path)


def _desired(*domains: tuple[str, str]) -> Desired:
    pw = Password("hash", Secret("$6$x$y"), "shadow")
    out = {}
    for name, policy in domains:
        users = {u: DesiredUser(u, name, u, pw, None, u) for u in ("alice", "bob")}
        out[name] = DesiredDomain(name, None, Catchall(policy), users)
    return Desired(out, [])


def test_virtusertable_catch_all_without_spec_setting_is_a_warning(tmp_path):
    text = BASE.replace("  example.org: {}", "  example.org:\n    unknown_recipients: delete")
    spec = load_spec(write(tmp_path, text))
    # (every other mailbox and alias has a line of its own: the catch-alls take
    # none of their mail)
    vt = parse_virtusertable("@example.com\tbob\n@example.org\talice\nalice@example.com\t"
                             "alice\ninfo@example.com\tinfo\nbob@example.org\tbob\n",
                             "/etc/mail/vt")
    plan = map_spec(spec, _desired(("example.com", "bounce"), ("example.org", "delete")),
                    SourceRouting(aliases=(parse_aliases("info: alice\n", "/etc/aliases"),),
                                  virtusertable=vt))
    warnings = [str(f) for f in plan.warnings]
    assert warnings == [
        "warning: [example.com] /etc/mail/vt:1: virtusertable @example.com -> bob: the spec "
        "sets no unknown_recipients for example.com, so unknown recipients bounce; to keep "
        "this catch-all set 'unknown_recipients: {deliver_to: bob}' in the spec"]
    # the core's catch-all is what the routing layer maps with, never virtusertable's
    assert plan.domains["example.com"].catch_all.kind == "bounce"
    assert plan.domains["example.org"].catch_all.kind == "delete"
    notes = [str(f) for f in plan.findings if f.severity == "note"]
    assert any("catch-all from the spec (delete mail for unknown recipients) replaces "
               "virtusertable @example.org" in n for n in notes)
    assert plan.domains["example.com"].aliases["info"] == ("&alice@example.com",)
    assert plan.domains["example.com"].alias_domains == ("example.net",)


def test_a_catch_all_to_a_withheld_user_maps_as_the_domains_catch_all_left_alone(tmp_path):
    """A user withheld once the target is read (its directory too long: userdirs) is no
    mailbox; the core leaves an existing domain's catch-all to it as it is. Routing
    maps with that, and does not refuse the plan as a spec naming no mailbox."""
    spec = load_spec(write(tmp_path, BASE))
    desired = _desired(("example.com", "bounce"), ("example.org", "bounce"))
    com = desired.domains["example.com"]
    com.users["carol"] = replace(com.users["alice"], name="carol", source="carol")
    com.catchall = Catchall("deliver_to", "carol")
    desired.withhold([Problem("example.com", "carol", "its directory would be too long")])
    plan = map_spec(spec, desired, SourceRouting(
        aliases=(parse_aliases("team: alice, nobody\n", "/etc/aliases"),)))
    caught = plan.domains["example.com"].catch_all
    assert caught.kind == "kept"
    assert caught.describe() == "leave mail for unknown recipients to the catch-all the " \
        "domain has (not changed)"
    # a name of the spec that is no mailbox at all is still the spec's mistake
    com.catchall = Catchall("deliver_to", "nobody")
    with pytest.raises(RoutingError, match="'nobody' is not a mailbox of the domain"):
        map_spec(spec, desired, SourceRouting())


def test_an_unused_default_aliases_file_that_cannot_be_parsed_is_a_warning(tmp_path,
                                                                           monkeypatch):
    from mailplan.connectors.local import LocalConnector
    from mailplan.facts.source import SourceFacts
    from mailplan.routing import source as routing_source

    reads = {"/etc/aliases": routing_source.FileRead(True, b"# ok\nno colon here\n"),
             "/etc/mail/aliases": routing_source.FileRead(False, b"")}
    monkeypatch.setattr(routing_source, "_read_files", lambda conn, paths, **kw: reads)
    text = BASE.replace(" aliases: /etc/mail/aliases, virtusertable: /etc/mail/virtusertable",
                        " forward: false")
    spec = load_spec(write(tmp_path, text))
    conn = LocalConnector("oldmail")
    source = SourceFacts("oldmail", "/etc/passwd", "/etc/shadow", {})
    findings: list = []
    got = routing_source.read_source_routing(conn, spec, source, _desired(), need_aliases=False,
                                             findings=findings)
    assert got.aliases == ()
    # (and the note that no host name of the old server was found: none is read here)
    assert [str(f) for f in findings if f.severity != "note"] == [
        "warning: oldmail:/etc/aliases:2: missing ':' between alias name and targets; "
        "local names are resolved without the aliases file (no domain imports it)"]
    with pytest.raises(SourceDataError, match="oldmail:/etc/aliases:2: missing"):
        routing_source.read_source_routing(conn, spec, source, _desired(), need_aliases=True,
                                           findings=[])


def test_many_files_are_read_exactly_with_a_few_commands(tmp_path, monkeypatch):
    from mailplan.connectors.local import LocalConnector
    from mailplan.routing import readfiles

    monkeypatch.setattr(readfiles, "CHUNK_BYTES", 3 * len(str(tmp_path / "no-newline")))
    contents = {"plain": b"alice@x.example\n", "no-newline": b"\\bob, bob@y.example",
                "empty": b"", "binary": bytes(range(256)), "forged": b"\n@@abc 1 0\n@@",
                "odd $(name) 'q'": b"x\n"}
    paths = []
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    (tmp_path / "dir").mkdir()
    paths += [str(tmp_path / "missing"), str(tmp_path / "dir")]
    request = readfiles.read_request(paths + paths[:2])
    assert len(request.commands) >= 3  # 8 distinct files, about 3 per command
    conn = LocalConnector("oldmail")
    got, others = readfiles.run_reads(conn, request, ["echo small"])
    # each command is a batch of its own (bounded output), all in the one shared shell
    assert conn.channels_opened == 1 and others[0].stdout == b"small\n"
    for name, data in contents.items():
        assert got[str(tmp_path / name)] == readfiles.FileRead(True, data), name
    assert got[str(tmp_path / "missing")] == readfiles.FileRead(False, None)
    assert got[str(tmp_path / "dir")] == readfiles.FileRead(True, None)


def test_a_forward_swapped_for_a_link_while_it_is_read_is_never_read_through(tmp_path):
    """``follow=False`` (a user's ~/.forward, read as root): a link is reported, not
    read, and so is a file swapped for one between the look and the open (the open
    follows it). A user flipping ~/.forward between a file and a link to a root-only
    file as fast as possible never gets that file read (before: 67 reads in 300)."""
    import os
    import threading

    from mailplan.connectors.local import LocalConnector
    from mailplan.routing import readfiles

    secret = tmp_path / "root-only"
    secret.write_text("ROOT-ONLY-CONTENT\n")
    os.chmod(secret, 0o600)
    fwd, reg = tmp_path / ".forward", tmp_path / "reg"
    reg.write_text("bob@example.org\n")
    stop = threading.Event()

    def swapper() -> None:
        while not stop.is_set():
            os.link(reg, tmp_path / "t1")
            os.rename(tmp_path / "t1", fwd)
            os.symlink(secret, tmp_path / "t2")
            os.rename(tmp_path / "t2", fwd)

    worker = threading.Thread(target=swapper, daemon=True)
    worker.start()
    conn = LocalConnector("oldmail")
    seen = set()
    try:
        for _ in range(150):
            files, _ = readfiles.run_reads(conn, readfiles.read_request([str(fwd)],
                                                                        follow=False))
            got = files[str(fwd)]
            assert got.data is None or b"ROOT-ONLY" not in got.data
            seen.add("link" if got.link else got.data)
    finally:
        stop.set()
        worker.join(10)
        conn.close()
    assert "link" in seen and b"bob@example.org\n" in seen  # both states were met
    fwd.unlink()
    fwd.write_text("alice@example.org\n")
    os.chmod(fwd, 0o644)
    (tmp_path / "linked").symlink_to(reg)
    files, _ = readfiles.run_reads(LocalConnector("oldmail"), readfiles.read_request(
        [str(fwd), str(tmp_path / "linked"), str(tmp_path / "missing")], follow=False))
    assert files[str(fwd)] == readfiles.FileRead(True, b"alice@example.org\n", mode=0o644,
                                                 uid=os.getuid())
    assert files[str(tmp_path / "linked")].link
    assert files[str(tmp_path / "missing")] == readfiles.FileRead(False, None)


def test_big_reads_do_not_deadlock_the_batch(tmp_path):
    import threading

    from mailplan.connectors.local import LocalConnector
    from mailplan.routing import readfiles

    # ~400 KiB of paths and ~1 MiB of output: both far beyond a pipe's buffer
    home = tmp_path / ("h" * 60)
    home.mkdir()
    (home / ".forward").write_bytes(b"x" * 200 + b"\n")
    # one file, 5000 distinct spellings of its path
    paths = [f"{home}/{'./' * (i % 50)}{'/' * (i // 50)}.forward" for i in range(5000)]
    request = readfiles.read_request(paths)
    assert sum(len(p) for p in request.paths) > 300_000
    done: dict = {}
    worker = threading.Thread(target=lambda: done.update(result=readfiles.run_reads(
        LocalConnector("oldmail"), request, ["echo after"])), daemon=True)
    worker.start()
    worker.join(120)
    assert not worker.is_alive(), "the batch deadlocked"
    files, others = done["result"]
    assert len(files) == len(request.paths) and others[0].stdout == b"after\n"
    assert all(f.data == b"x" * 200 + b"\n" for f in files.values())


def test_the_old_hosts_names_are_read_from_sendmails_files_or_taken_from_the_spec(
        tmp_path, monkeypatch):
    """Class w comes from local-host-names, sendmail.cw, the Cw lines of sendmail.cf and
    the files its Fw lines name (read in a second batch), and the host's own names (its
    hostname file and the hosts line naming it, next to the source's passwd); a source
    tree without them has only localhost. ``source.local_hostnames`` in the spec replaces
    all of that, and then none of those files is read. ``plan -v`` notes the names."""
    from mailplan.connectors.local import LocalConnector
    from mailplan.facts.source import SourceFacts
    from mailplan.routing import source as routing_source

    etc = tmp_path / "etc"
    (etc / "mail").mkdir(parents=True)
    (etc / "mail/local-host-names").write_text("# names\nOldBox.Example.ORG.\nlists.example.com\n")
    (etc / "mail/sendmail.cf").write_text(f"Cwmx1 mx2\nFw-o {tmp_path}/more %[^\\#]\nDj$w.x\n")
    (tmp_path / "more").write_text("third.example\n")
    (etc / "hostname").write_text("oldbox\n")
    (etc / "hosts").write_text("127.0.0.1 localhost\n10.1.2.3 oldbox.corp.example "
                               "oldbox mailhub # the mail server\n10.1.2.4 other\n")
    (tmp_path / "aliases").write_text("postmaster: root\n")
    asked: list[str] = []
    real = routing_source._read_files
    monkeypatch.setattr(routing_source, "_read_files",
                        lambda conn, paths, **kw: asked.extend(paths) or real(conn, paths,
                                                                              **kw))
    source_line = ("source: {host: old, aliases: /etc/mail/aliases, "
                   "virtusertable: /etc/mail/virtusertable}")
    conn = LocalConnector("oldmail")
    facts = SourceFacts("oldmail", "/etc/passwd", "/etc/shadow", {})
    for extra, want in [
        (f"passwd: {etc}/passwd", {"localhost", "oldbox.example.org", "lists.example.com",
                                   "mx1", "mx2", "third.example", "oldbox",
                                   "oldbox.corp.example", "mailhub"}),
        (f"passwd: {tmp_path}/bare/passwd", {"localhost"}),
        ("local_hostnames: [Mail.Example.NET]", {"localhost", "mail.example.net"}),
    ]:
        asked.clear()
        text = BASE.replace(source_line, "source: {host: old, aliases: "
                            f"{tmp_path}/aliases, forward: false, {extra}}}")
        spec = load_spec(write(tmp_path, text))
        findings: list = []
        got = routing_source.read_source_routing(conn, spec, facts, _desired(), need_aliases=True,
                                                 findings=findings)
        assert got.local_hostnames == want
        names = ", ".join(sorted(want - {"localhost"}))
        named = [f.message for f in findings if "class w" in f.message]
        if names:
            assert [m.endswith(names) for m in named] == [True]
        else:  # none found: a note says so (before, nothing did)
            assert named == ["no host name of the old server was found (sendmail's class w: "
                             f"none in {tmp_path}/bare/mail's local-host-names, sendmail.cw or "
                             f"sendmail.cf, nor in {tmp_path}/bare/hostname): an address at "
                             "its own name (bob@oldmail.example.com in a ~/.forward or an "
                             "alias) is taken for a remote one; list its names in "
                             "source.local_hostnames"]
    # the spec's names: no file of class w is read (sendmail.cf is, for its +detail rule)
    assert asked == [f"{tmp_path}/aliases", "/etc/mail/sendmail.cf"]


def test_an_old_login_caught_by_a_virtusertable_catch_all_is_not_said_to_reach_its_user(
        tmp_path):
    """With ``@example.com`` in virtusertable, sendmail sent bob@example.com to that line,
    not to the user bob: the spec leaving unknown_recipients unset (the line is then left
    out of the mapping) must not make the plan say bob got it."""
    spec = load_spec(write(tmp_path, BASE))
    pw = Password("hash", Secret("$6$x$y"), "shadow")
    users = {"robert": DesiredUser("robert", "example.com", "bob", pw, None, "Bob")}
    desired = Desired({"example.com": DesiredDomain("example.com", None, Catchall("bounce"),
                                                    users)}, [])
    vt = parse_virtusertable("@example.com\tbob\n", "/etc/mail/vt")
    plan = map_spec(spec, desired, SourceRouting(
        virtusertable=vt, local_hostnames=frozenset({"localhost", "example.com"})))
    assert not [f for f in plan.findings if "delivered to the user bob" in f.message], \
        plan.findings
    assert any("unknown_recipients: {deliver_to: robert}" in f.message for f in plan.warnings)


@pytest.mark.parametrize(("cf", "hostname", "read", "noted"), [
    # sendmail's default ForwardPath: ~/.forward.$w ($w: the host's short name) first
    (None, "oldbox.corp.example\n", ".forward.oldbox", True),
    ("O ForwardPath=$z/.forward\n", "oldbox\n", ".forward", False),
    ("OJ$z/.forward.$w:$z/.forward\n", "oldbox\n", ".forward.oldbox", True),
    # no host name to fill $w in: the default's first entry cannot be looked for
    (None, None, ".forward", False),
])
def test_the_forward_file_is_the_first_of_sendmails_forward_path(tmp_path, cf, hostname,
                                                                  read, noted):
    """sendmail reads ~/.forward.HOST before ~/.forward (its default ForwardPath,
    $z/.forward.$w:$z/.forward, or sendmail.cf's): a user's ~/.forward.oldbox is what
    sendmail obeyed, and ~/.forward beside it was never read."""
    import os

    from mailplan.connectors.local import LocalConnector
    from mailplan.facts.source import Account, SourceFacts
    from mailplan.routing import source as routing_source

    etc = tmp_path / "etc"
    (etc / "mail").mkdir(parents=True)
    if cf is not None:
        (etc / "mail/sendmail.cf").write_text(cf)
    if hostname is not None:
        (etc / "hostname").write_text(hostname)
    home = tmp_path / "home/bob"
    home.mkdir(parents=True)
    (home / ".forward").write_text("alice@example.org\n")
    (home / ".forward.oldbox").write_text("carol@example.org\n")
    for name in (".forward", ".forward.oldbox"):
        os.chmod(home / name, 0o644)
    text = BASE.replace("source: {host: old, aliases: /etc/mail/aliases, "
                        "virtusertable: /etc/mail/virtusertable}",
                        f"source: {{host: old, passwd: {etc}/passwd, "
                        f"aliases: {tmp_path}/aliases}}")
    (tmp_path / "aliases").write_text("postmaster: root\n")
    spec = load_spec(write(tmp_path, text))
    bob = Account("bob", os.getuid(), os.getgid(), "Bob", str(home), "/bin/sh", None, None, 1)
    facts = SourceFacts("oldmail", f"{etc}/passwd", f"{etc}/shadow", {"bob": bob})
    findings: list = []
    got = routing_source.read_source_routing(LocalConnector("oldmail"), spec, facts,
                                             _desired(("example.com", "bounce")),
                                             need_aliases=True, findings=findings)
    assert got.forwards["bob"].path == f"{home}/{read}"
    assert [str(t) for t in got.forwards["bob"].targets] == [
        "carol@example.org" if read.endswith("oldbox") else "alice@example.org"]
    notes = [f.message for f in findings if "forward file is" in f.message]
    assert notes == ([f"bob's forward file is {home}/.forward.oldbox, the first of "
                      f"sendmail's ForwardPath that is there (its {home}/.forward is not "
                      "read, as by sendmail)"] if noted else [])


def _alias_world(tmp_path, cf: str | None, files: dict[str, str]):
    """A source tree with sendmail.cf (``@ETC@`` stands for its etc) and aliases files."""
    etc = tmp_path / "etc"
    (etc / "mail").mkdir(parents=True, exist_ok=True)
    if cf is not None:
        (etc / "mail/sendmail.cf").write_text(cf.replace("@ETC@", str(etc)))
    for name, text in files.items():
        (etc / name).write_text(text)
    return etc


def _read_aliases(tmp_path, etc, *, aliases: str = "", need: bool = True):
    from mailplan.connectors.local import LocalConnector
    from mailplan.facts.source import SourceFacts
    from mailplan.routing import source as routing_source

    source_line = ("source: {host: old, aliases: /etc/mail/aliases, "
                   "virtusertable: /etc/mail/virtusertable}")
    text = BASE.replace(source_line, f"source: {{host: old, passwd: {etc}/passwd, "
                        f"forward: false, local_hostnames: []{aliases}}}")
    spec = load_spec(write(tmp_path, text))
    findings: list = []
    facts = SourceFacts("oldmail", "/etc/passwd", "/etc/shadow", {})
    got = routing_source.read_source_routing(LocalConnector("oldmail"), spec, facts,
                                             _desired(), need_aliases=need, findings=findings)
    return got, findings


def test_every_aliases_file_of_sendmail_cfs_alias_file_option_is_read_in_order(tmp_path):
    """sendmail.cf's AliasFile lines name the files sendmail reads (each line adds to the
    ones before): all are read, a name is taken from the first that has it, a database
    that is no file (nis:) is a caution (the plan's warnings), a missing optional one
    (-o) a note; the plan says which files were read."""
    from mailplan.routing.mapping import map_routing
    from mailplan.routing.rules import DomainRules

    etc = _alias_world(tmp_path, "O AliasFile=@ETC@/mail/aliases,hash:@ETC@/mail/aliases.local"
                       "\nO AliasFile=nis:mail.aliases, hash:-o @ETC@/mail/gone\n",
                       {"mail/aliases": "staff: alice\ninfo: alice\n",
                        "mail/aliases.local": "staff: bob\nsales: bob\n"})
    got, findings = _read_aliases(tmp_path, etc)
    assert [f.path for f in got.aliases] == [f"{etc}/mail/aliases", f"{etc}/mail/aliases.local"]
    cf = f"{etc}/mail/sendmail.cf"
    assert [(f.severity, str(f.origin)) for f in findings if f.severity != "note"] == [
        ("caution", f"{cf}:2")]
    assert "AliasFile nis:mail.aliases: a nis database, not a file mailplan can read; the " \
        "aliases sendmail finds there are not migrated" in findings[0].message
    notes = [f.message for f in findings if f.severity == "note"]
    assert f"the aliases file {etc}/mail/gone (AliasFile hash:-o {etc}/mail/gone, optional) " \
        "does not exist" in notes
    assert (f"aliases are read from {etc}/mail/aliases, {etc}/mail/aliases.local: AliasFile in "
            f"{cf} (sendmail looks a name up in them in this order and uses the first that "
            "has it)") in notes
    plan = map_routing(got, [DomainRules("example.com", {"alice": "alice", "bob": "bob"},
                                         import_aliases=True)])
    assert dict(plan.domains["example.com"].aliases) == {
        "staff": ("&alice@example.com",), "info": ("&alice@example.com",),
        "sales": ("&bob@example.com",)}
    assert any(f.message.startswith("alias 'staff' is not used: sendmail finds it first in "
                                    f"{etc}/mail/aliases:1") for f in plan.findings)


def test_a_comment_on_sendmail_cfs_alias_file_line_names_no_file_to_read(tmp_path):
    """sendmail reads a '#' after the start of a line as a comment (readcf): a file named
    there is no aliases file of sendmail's, and its aliases must not be migrated; a path
    no command can be given (a NUL) is a caution, not a failed plan."""
    etc = _alias_world(tmp_path, "O AliasFile=@ETC@/mail/aliases  # was @ETC@/aliases, "
                       "@ETC@/mail/old\nO AliasFile=/etc/mail/a\0b\n",
                       {"mail/aliases": "staff: alice\n", "mail/old": "staff: bob\nold: bob\n"})
    got, findings = _read_aliases(tmp_path, etc)
    assert [f.path for f in got.aliases] == [f"{etc}/mail/aliases"]
    cautions = [f.message for f in findings if f.severity == "caution"]
    assert cautions == ["AliasFile /etc/mail/a\0b: a path with a control character, not read; "
                        "the aliases sendmail finds there are not migrated (put them in a text "
                        "aliases file and list every file to read in source.aliases, or declare "
                        "them in the spec)"]


def test_the_specs_aliases_files_replace_sendmail_cfs_and_keep_their_order(tmp_path):
    etc = _alias_world(tmp_path, "O AliasFile=@ETC@/mail/aliases\n",
                       {"mail/aliases": "staff: alice\n", "local": "staff: bob\n"})
    got, findings = _read_aliases(tmp_path, etc,
                                  aliases=f", aliases: [{etc}/local, {etc}/mail/aliases]")
    assert [f.path for f in got.aliases] == [f"{etc}/local", f"{etc}/mail/aliases"]
    assert [f.message for f in findings] == [
        f"aliases are read from {etc}/local, {etc}/mail/aliases: source.aliases in the spec "
        "(sendmail looks a name up in them in this order and uses the first that has it)"]
    got, findings = _read_aliases(tmp_path, etc, aliases=f", aliases: {etc}/local")
    assert [f.path for f in got.aliases] == [f"{etc}/local"]
    assert findings[0].message == f"aliases are read from {etc}/local: source.aliases in the spec"


@pytest.mark.parametrize(("cf", "why"), [
    (None, "there is no @ETC@/mail/sendmail.cf"),
    ("Cwmail.example.com\n", "no AliasFile in @ETC@/mail/sendmail.cf"),
])
def test_without_an_alias_file_option_the_first_default_aliases_file_is_read(
        tmp_path, monkeypatch, cf, why):
    from mailplan.routing import source as routing_source

    etc = _alias_world(tmp_path, cf, {"mail/aliases": "staff: bob\n"})
    defaults = (f"{etc}/aliases", f"{etc}/mail/aliases")  # /etc/aliases, /etc/mail/aliases
    monkeypatch.setattr(routing_source, "DEFAULT_ALIASES", defaults)
    got, findings = _read_aliases(tmp_path, etc)
    assert [f.path for f in got.aliases] == [defaults[1]]
    assert [f.message for f in findings] == [
        f"aliases are read from {defaults[1]}: the first of {defaults[0]} and {defaults[1]} "
        f"there is ({why.replace('@ETC@', str(etc))})"]
    (etc / "aliases").write_text("staff: alice\n")
    got, _ = _read_aliases(tmp_path, etc)
    assert [f.path for f in got.aliases] == [defaults[0]]


def test_a_missing_aliases_file_sendmail_cf_names_stops_a_plan_that_needs_aliases(tmp_path):
    from mailplan.errors import HostError

    etc = _alias_world(tmp_path, "O AliasFile=@ETC@/mail/aliases,@ETC@/mail/missing\n",
                       {"mail/aliases": "staff: alice\n"})
    with pytest.raises(HostError) as err:
        _read_aliases(tmp_path, etc)
    assert (f"the aliases file {etc}/mail/missing does not exist (AliasFile in "
            f"{etc}/mail/sendmail.cf:1)") in str(err.value)
    got, _ = _read_aliases(tmp_path, etc, need=False)  # nothing imported: left out quietly
    assert [f.path for f in got.aliases] == [f"{etc}/mail/aliases"]


def test_a_missing_aliases_file_the_spec_names_is_a_caution_unless_a_domain_imports_it(
        tmp_path):
    """``init --root`` writes where sendmail keeps the aliases file even when the copy
    has none (left out, plan would read the admin's own /etc/aliases): while no domain
    imports aliases that is one of the plan's warnings naming the file, not an error;
    a domain importing them still stops the plan."""
    from mailplan.errors import HostError

    etc = _alias_world(tmp_path, None, {})
    got, findings = _read_aliases(tmp_path, etc, aliases=f", aliases: {etc}/aliases",
                                  need=False)
    assert got.aliases == ()
    assert [(f.severity, f.message) for f in findings] == [
        ("caution", f"no aliases file at {etc}/aliases (source.aliases): no aliases are "
         "read from it, so local names resolve without them")]
    with pytest.raises(HostError, match=f"the aliases file {etc}/aliases does not exist"):
        _read_aliases(tmp_path, etc, aliases=f", aliases: {etc}/aliases")
    (etc / "aliases").write_text("staff: alice\n")  # once it is there, it is read
    got, _ = _read_aliases(tmp_path, etc, aliases=f", aliases: {etc}/aliases", need=False)
    assert [f.path for f in got.aliases] == [f"{etc}/aliases"]


def test_cautions_are_the_plans_warnings_and_strict_lets_them_through():
    from mailplan.routing.integrate import RoutingOutcome, report_findings
    from mailplan.routing.model import Finding

    out = RoutingOutcome()
    report_findings([Finding("caution", "a nis database", Origin("/etc/mail/sendmail.cf", 9)),
                     Finding("warning", "no equivalent", None, "example.com"),
                     Finding("note", "read from x")], "oldmail", out)
    assert [(p.domain, p.message) for p in out.cautions] == [
        ("oldmail", "/etc/mail/sendmail.cf:9: a nis database")]
    assert [(p.domain, p.message) for p in out.problems] == [("example.com", "no equivalent")]
    assert out.warnings == ["warning: [example.com] no equivalent"]
    assert [n.reason for n in out.noops] == ["note: read from x"]


def test_sendmail_cfs_plussed_users_rule_is_read_whatever_the_spec_names(tmp_path):
    etc = _alias_world(tmp_path, "O AliasFile=@ETC@/mail/aliases\nS5\n"
                       "R$+ + $*\t\t$#local $@ + $2 $: $1 + *\n",
                       {"mail/aliases": "staff: alice\n", "local": "staff: bob\n"})
    got, _ = _read_aliases(tmp_path, etc, aliases=f", aliases: {etc}/local")
    assert got.plus_detail == Origin(f"{etc}/mail/sendmail.cf", 3)
    (etc / "mail/sendmail.cf").write_text("O AliasFile=/etc/mail/aliases\n")
    got, _ = _read_aliases(tmp_path, etc, aliases=f", aliases: {etc}/local")
    assert got.plus_detail is None


def test_sendmail_cfs_max_alias_recursion_is_read_with_the_aliases(tmp_path):
    """The source's sendmail.cf says how deep sendmail followed aliases; without the
    option, sendmail's default (10)."""
    etc = _alias_world(tmp_path, "O AliasFile=@ETC@/mail/aliases\nO MaxAliasRecursion=4\n",
                       {"mail/aliases": "staff: alice\n"})
    got, _ = _read_aliases(tmp_path, etc)
    assert got.max_alias_recursion == 4
    (etc / "mail/sendmail.cf").write_text(f"O AliasFile={etc}/mail/aliases\n")
    got, _ = _read_aliases(tmp_path, etc)
    assert got.max_alias_recursion == 10


@pytest.mark.parametrize("value", ['"|id"@remote.example', '".x"@remote.example',
                                   '"#x"@remote.example'])
def test_a_virtusertable_catch_all_vdelivermail_would_misread_is_a_bounce(tmp_path, value):
    """vdelivermail reads its argument's first character: | runs a program, / . a path,
    # a comment. A quoted local part sendmail took as an address is never suggested as
    the domain's forward (the spec refuses such an address too)."""
    spec = load_spec(write(tmp_path, BASE))
    pw = Password("hash", Secret("$6$x$y"), "shadow")
    users = {"robert": DesiredUser("robert", "example.com", "bob", pw, None, "Bob")}
    desired = Desired({"example.com": DesiredDomain("example.com", None, Catchall("bounce"),
                                                    users)}, [])
    vt = parse_virtusertable(f"@example.com\t{value}\n", "/etc/mail/vt")
    plan = map_spec(spec, desired, SourceRouting(
        virtusertable=vt, local_hostnames=frozenset({"localhost", "example.com"})))
    messages = [f.message for f in plan.warnings]
    assert any("which vdelivermail reads as a program, a path or a comment" in m
               for m in messages), messages
    assert not any("{forward:" in m for m in messages), messages


def test_a_plan_asks_directory_modes_with_the_reads_not_in_commands_of_their_own(tmp_path):
    """The modes of the directories sendmail's safedirpath() walks for users' ~/.forward
    and :include: files come with the files' read: each remote command costs a process
    start over SSH (about 85 ms). Here: sendmail.cf, the aliases file and the hostname in
    one, the candidate ~/.forward files in a second (ForwardPath, in sendmail.cf, says
    which), and the :include: file in a third; before, the modes were two commands more.
    The file-safety rules still see them: the list in a group-writable directory is
    refused, carol's ~/.forward is not."""
    import os

    from mailplan.connectors.local import LocalConnector
    from mailplan.facts.source import Account, SourceFacts
    from mailplan.routing import source as routing_source

    etc, home, lists = tmp_path / "etc", tmp_path / "home/carol", tmp_path / "lists"
    for d in (etc / "mail", home, lists):
        d.mkdir(parents=True)
    (etc / "hostname").write_text("oldmail\n")
    (etc / "mail/sendmail.cf").write_text("O ForwardPath=$z/.forward.$w:$z/.forward\n")
    (home / ".forward").write_text("carol@elsewhere.example\n")
    os.chmod(home / ".forward", 0o644)
    os.chmod(home, 0o755)
    (lists / "team").write_text("carol@remote.example\n")
    os.chmod(lists / "team", 0o644)
    os.chmod(lists, 0o775)
    (tmp_path / "aliases").write_text(f"team: :include:{lists}/team, carol\n")
    spec = load_spec(write(tmp_path, f"""\
        version: 1
        hosts:
          old: {{local: true}}
          new: {{local: true}}
        source: {{host: old, aliases: {tmp_path}/aliases, passwd: {etc}/passwd,
                  local_hostnames: [oldmail.example]}}
        target: {{host: new}}
        domains:
          example.com: {{}}
        """))
    pw = Password("hash", Secret("$6$x$y"), "shadow")
    desired = Desired({"example.com": DesiredDomain(
        "example.com", None, Catchall("bounce"),
        {"carol": DesiredUser("carol", "example.com", "carol", pw, None, "carol")})}, [])
    account = Account("carol", os.getuid(), os.getgid(), "Carol", str(home), "/bin/sh",
                      None, None, 1)
    facts = SourceFacts("oldmail", "/etc/passwd", "/etc/shadow", {"carol": account})
    conn = LocalConnector("oldmail")
    commands: list[str] = []
    conn.observer = lambda shown, result, seconds, note: commands.append(shown)
    findings: list = []
    got = routing_source.read_source_routing(conn, spec, facts, desired, need_aliases=True,
                                             findings=findings)
    conn.close()
    assert len(commands) == 3, commands
    assert [str(t) for t in got.forwards["carol"].targets] == ["carol@elsewhere.example"]
    (include,) = [t for t in got.aliases[0].entries[0].targets if isinstance(t, Include)]
    assert (include.problem or "").startswith(
        f"it is in a group-writable directory ({lists}, mode 775)"), include


def test_directory_modes_come_with_the_reads_across_chunks(tmp_path, monkeypatch):
    """read_with_modes splits files and directories in runs as one list: each command
    reads its files, then asks its directories' modes (through links; one that does not
    exist is left out), and every answer lands on its own name."""
    import os

    from mailplan.connectors.local import LocalConnector
    from mailplan.routing import readfiles

    monkeypatch.setattr(readfiles, "CHUNK_BYTES", 2 * len(str(tmp_path / "d 2\nx")) + 4)
    dirs = {"d1": 0o755, "d 2\nx": 0o1777, "d3": 0o2775}
    for name, mode in dirs.items():
        (tmp_path / name).mkdir()
        os.chmod(tmp_path / name, mode)
        (tmp_path / name / "f").write_text(name)
        os.chmod(tmp_path / name / "f", 0o644)
    (tmp_path / "link").symlink_to(tmp_path / "d3")
    files = [str(tmp_path / name / "f") for name in dirs]
    asked = [*(str(tmp_path / name) for name in dirs), str(tmp_path / "link"),
             str(tmp_path / "gone"), files[0]]
    request = readfiles.read_request(files, follow=False, dirs=asked)
    assert len(request.commands) >= 3 and any(c and d for c, d in zip(
        request.chunks, request.dir_chunks, strict=True))
    got, modes = readfiles.read_with_modes(LocalConnector("oldmail"), files, asked,
                                           follow=False)
    assert {p: r.data for p, r in got.items()} == {
        str(tmp_path / name / "f"): name.encode() for name in dirs}
    assert modes == {**{str(tmp_path / name): mode for name, mode in dirs.items()},
                     str(tmp_path / "link"): 0o2775, files[0]: 0o644}


def _forward_look_ups(tmp_path, users: int) -> list[str]:
    """The link look-ups (``find -maxdepth 0``) of a routing read under source.root with
    ``users`` users, each with a ~/.forward behind the copy's link home -> /export."""
    import os

    from mailplan.connectors.local import LocalConnector
    from mailplan.facts.source import Account, SourceFacts
    from mailplan.routing import source as routing_source

    tmp_path.mkdir()
    copy = tmp_path / "copy"
    (copy / "etc/mail").mkdir(parents=True)
    (copy / "etc/mail/sendmail.cf").write_text("O ForwardPath=$z/.forward\n")
    (copy / "etc/hostname").write_text("oldmail\n")
    (copy / "etc/aliases").write_text("postmaster: root\n")
    (copy / "export").mkdir()
    (copy / "home").symlink_to("/export")  # the old server's link: the copy's /export
    names = [f"u{i}" for i in range(users)]
    accounts, wanted = {}, {}
    for i, name in enumerate(names):
        home = copy / "export" / name
        home.mkdir(mode=0o755)
        (home / ".forward").write_text(f"{name}@elsewhere.example\n")
        os.chmod(home / ".forward", 0o644)
        accounts[name] = Account(name, os.getuid(), os.getgid(), name, f"/home/{name}",
                                 "/bin/sh", None, None, i + 1)
        wanted[name] = DesiredUser(name, "example.com", name,
                                   Password("hash", Secret("$6$x$y"), "shadow"), None, name)
    spec = load_spec(write(tmp_path, f"""\
        version: 1
        hosts:
          old: {{local: true}}
          new: {{local: true}}
        source: {{host: old, root: {copy}, local_hostnames: [oldmail.example]}}
        target: {{host: new}}
        domains:
          example.com: {{}}
        """))
    desired = Desired({"example.com": DesiredDomain("example.com", None, Catchall("bounce"),
                                                    wanted)}, [])
    facts = SourceFacts("oldmail", "/etc/passwd", "/etc/shadow", accounts, root=str(copy))
    conn = LocalConnector("oldmail")
    commands: list[str] = []
    conn.observer = lambda shown, result, seconds, note: commands.append(shown)
    got = routing_source.read_source_routing(conn, spec, facts, desired, need_aliases=True,
                                             findings=[])
    conn.close()
    for name in names:
        assert [str(t) for t in got.forwards[name].targets] == [f"{name}@elsewhere.example"]
    return [c for c in commands if c.startswith("find ") and "-maxdepth 0" in c]


def test_under_a_root_the_forward_files_links_are_looked_up_once_for_all_users(tmp_path):
    """Under source.root every candidate ~/.forward is resolved inside the copy
    (mailplan.facts.links): for all users together, not once per user (each a command; a
    plan of a thousand users would start a thousand). As many look-ups for four users as
    for one, and each user's ~/.forward read where the copy's link leads."""
    one = _forward_look_ups(tmp_path / "one", 1)
    assert one
    assert len(_forward_look_ups(tmp_path / "four", 4)) == len(one)


def test_prune_candidates_are_only_what_still_holds_the_lines_mailplan_wrote():
    data: dict = {}
    for entry in (effect("alias", "d.example", "sales", created=True,
                         lines=("&alice@d.example",)),
                  effect("alias", "d.example", "team", created=True, lines=("&bob@X.example",)),
                  effect("forward", "d.example", "carol", created=True, lines=("&c@x.example",)),
                  {"domain": "d.example", "routing": "alias", "name": "old", "created": True},
                  # a change mailplan made to its own alias: the new lines are the ones
                  effect("alias", "d.example", "team", lines=("&carol@d.example",)),
                  # a change to an alias mailplan did not make: no record appears
                  effect("alias", "d.example", "other", lines=("&x@y.example",))):
        assert apply_routing_entry(data, {**entry, "at": "t"})
    assert managed_routing(data, "d.example", "alias") == {"sales", "team", "old"}
    observed = {"sales": ("&alice@d.example", "boss@x.example"),  # changed by hand
                "team": ("carol@D.EXAMPLE",), "old": ("&z@y.example",)}
    assert unchanged_routing(data, "d.example", "alias", observed) == {"team", "old"}
    assert unchanged_routing(data, "d.example", "forward", {"carol": ("&c@x.example",)}) \
        == {"carol"}
    assert unchanged_routing(data, "d.example", "forward",
                             {"carol": ("| autorespond", "./Maildir/")}) == frozenset()


def test_an_entry_left_without_an_alias_says_where_mail_goes_while_the_target_has_one():
    """The mapping says mail for sales (now a pipe on the source) goes to the catch-all;
    while the target still has an alias sales, mail goes there (mailplan's: until
    --prune removes it; one it did not make: for good). A name the target has no alias
    of keeps the mapping's words."""
    source = SourceRouting(aliases=(parse_aliases(
        'sales: "|/usr/bin/foo"\nfax: "|/usr/bin/fax"\nold: "|/usr/bin/old"\n',
        "/etc/aliases"),))
    rules = DomainRules("d.example", {"alice": "alice"}, import_aliases=True)
    plan = map_routing(source, [rules])
    want = plan.domains["d.example"]
    observed = ObservedRouting("d.example", {"sales": ("&alice@d.example",),
                                             "fax": ("fax@x.example",)})
    findings = _still_on_target(list(plan.findings), want, observed, frozenset({"sales"}))
    got = {f.message.split(":")[0]: f.message for f in findings if f.severity == "warning"}
    # said by the finding's own field, built into its text, never by rewriting the text
    left = {f.left_out.name: f.left_out for f in findings if f.left_out}
    assert (left["sales"].alias, left["sales"].ours) == ("&alice@d.example", True)
    assert (left["fax"].alias, left["fax"].ours) == ("fax@x.example", False)
    assert left["old"].alias is None
    tail = "goes to the domain's catch-all: bounce mail for unknown recipients"
    assert got["alias sales"].endswith(
        f"so mail to sales@d.example {tail} once the alias sales@d.example the target has "
        "now (&alice@d.example) is gone: apply --prune removes it (mailplan made it); until "
        "then mail to it still goes there"), got
    assert got["alias fax"].endswith(
        f"so mail to fax@d.example {tail} once the alias fax@d.example the target has now "
        "(fax@x.example) is gone: mailplan did not make it, or it was changed since "
        "mailplan wrote it, and leaves it; until then mail to it still goes there"), got
    assert got["alias old"].endswith(f"so mail to old@d.example {tail}"), got
