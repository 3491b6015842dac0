"""Aliases, ~/.forward and alias domains: plan / apply / plan again over the real sshd.

The source is a directory tree read over the test sshd (aliases file with an
``:include:``, virtusertable, users' ~/.forward under homes inside the tree); the
target is the vpopmail stand-in (or a real vpopmail, see tests/migration.py). After
apply, what vpopmail reports (``valias -s``, ``vdominfo``) and the .qmail files that
decide where mail goes are read back directly, not through mailplan.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from migration import (
    REAL_VPOPMAIL,
    SourceAccount,
    Target,
    install_target,
    mailplan,
    make_source,
    ssh_host,
    unique_domain,
    write_spec,
)

ACCOUNTS = [SourceAccount("alice", 1000, "Alice", "AlicePw1"),
            SourceAccount("bob", 1001, "Bob", "BobPw1"),
            SourceAccount("carol", 1002, "Carol", "CarolPw1"),
            SourceAccount("dave", 1003, "Dave", "DavePw1")]


@pytest.fixture
def target(tmp_path):
    t = install_target(tmp_path / "target")
    yield t
    if REAL_VPOPMAIL:
        for domain in t.created_domains:
            t.tool("vdeldomain", domain)


def line_of(path: Path, text: str) -> int:
    """1-based number of the line of ``path`` that contains ``text``."""
    for number, line in enumerate(path.read_text().split("\n"), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


class World:
    """A source tree with routing files, a target, a domain and an alias domain."""

    def __init__(self, tmp_path: Path, target: Target, sshd: object) -> None:
        self.tmp, self.target, self.sshd = tmp_path, target, sshd
        self.domain, self.alias_domain = unique_domain("r"), unique_domain("ra")
        self.root = make_source(tmp_path / "source", ACCOUNTS)
        passwd = self.root / "etc/passwd"
        passwd.write_text(passwd.read_text().replace(":/home/", f":{self.root}/home/"))
        d = self.domain
        (self.root / "etc/mail").mkdir()
        self.team = self.root / "etc/mail/team"
        self.team.write_text("# the team\nalice\ncarol\n")
        self.aliases = self.root / "etc/aliases"
        self.aliases.write_text(
            "# Basic system aliases\n"
            "MAILER-DAEMON:\tpostmaster\n"
            "postmaster:\troot\n"
            "root:\t\talice\n"
            "abuse:\t\troot\n"
            "webmaster:\talice, bob\n"
            "staff:\t\talice,\n"
            "\t\t\\bob,\n"
            f"\t\tcarol@{d.upper()}\n"
            f"team:\t\t:include:{self.team}\n"
            'vacation:\t"|/usr/bin/vacation alice"\n'
            "ghost:\t\tnosuchuser\n")
        self.virtusertable = self.root / "etc/mail/virtusertable"
        self.virtusertable.write_text(f"info@{d}\talice\n@{d}\t\tbob\n")
        for user, text in (("alice", "\\alice, alice@home.example\n"),
                           ("carol", "carol@elsewhere.example\n"),
                           ("dave", '"|/usr/bin/procmail -f-"\n')):
            home = self.root / "home" / user
            home.mkdir(parents=True, exist_ok=True)
            (home / ".forward").write_text(text)
        self.spec = tmp_path / "routing.yaml"

    def write(self, **domain: object) -> Path:
        body = {"import": {"uid_min": 1000, "exclude": ["bob"]},
                "users": [{"name": "robert", "from": "bob"}],
                "import_aliases": {"exclude": ["ghost"]},
                "aliases": {"sales": ["alice", "partner@remote.example"]},
                "alias_domains": [self.alias_domain]}
        body.update(domain)
        write_spec(self.spec, source_root=self.root, target=self.target,
                   domains={self.domain: body}, source_host=ssh_host(self.sshd),
                   target_host=ssh_host(self.sshd))
        data = yaml.safe_load(self.spec.read_text())
        data["source"]["aliases"] = str(self.aliases)
        data["source"]["virtusertable"] = str(self.virtusertable)
        self.spec.write_text(yaml.safe_dump(data, sort_keys=False))
        return self.spec

    def domain_dir(self) -> Path:
        res = self.target.tool("vdominfo", "-d", self.domain)
        return Path(res.stdout.decode().split("\n")[0])

    def user_dir(self, user: str) -> Path:
        res = self.target.tool("vuserinfo", "-d", f"{user}@{self.domain}")
        assert res.returncode == 0, res.stdout
        return Path(res.stdout.decode().strip())

    def valias(self) -> dict[str, list[str]]:
        res = self.target.tool("valias", "-s", self.domain)
        out: dict[str, list[str]] = {}
        for line in res.stdout.decode().split("\n"):
            if " -> " in line:
                address, _, dest = line.partition(" -> ")
                out.setdefault(address, []).append(dest)
        return out


@pytest.fixture
def world(tmp_path, target, sshd):
    return World(tmp_path, target, sshd)


@pytest.mark.ssh
def test_apply_routes_mail_like_sendmail_and_plan_again_is_empty(world):
    d, spec = world.domain, world.write()
    first = mailplan("plan", str(spec), "--detailed-exitcode")
    assert first.returncode == 2, first.stderr
    out = first.stdout
    aliases_at = f"{world.aliases}:"
    assert f"+ alias abuse@{d}\n      &alice@{d} (from {aliases_at}" \
        f"{line_of(world.aliases, 'abuse:')})" in out
    assert f"+ alias_domain {world.alias_domain}\n      alias of {d}" in out
    assert f"+ forward alice@{d}\n      ./Maildir/, &alice@home.example" in out
    # the routing steps come after the domain and its mailboxes exist
    assert out.index(f"+ user robert@{d}") < out.index(f"+ alias abuse@{d}")
    # warnings: each names the source file and line
    forward = world.root / "home/dave/.forward"
    assert (f"{world.aliases}:{line_of(world.aliases, 'vacation')}: alias vacation: "
            "program delivery '|/usr/bin/vacation alice' has no safe vpopmail equivalent"
            in out)
    assert f"{forward}:1: ~dave/.forward: program delivery" in out
    assert (f"{world.virtusertable}:2: virtusertable @{d} -> bob: the spec sets no "
            f"unknown_recipients for {d}, so unknown recipients bounce; to keep this "
            "catch-all set 'unknown_recipients: {deliver_to: robert}' in the spec") in out
    assert "ghost" not in out  # excluded by the spec
    # no postmaster user or alias is planned (the domain's own line names its login)
    assert [line for line in out.split("Problems")[0].splitlines() if "postmaster@" in line
            and f"nobody can log in as postmaster@{d}" not in line] == []

    applied = mailplan("apply", str(spec), "--auto-approve", check=True)
    assert "Apply complete" in applied.stdout

    # what vpopmail itself reports
    assert world.valias() == {
        f"abuse@{d}": [f"&alice@{d}"],
        f"info@{d}": [f"&alice@{d}"],
        f"sales@{d}": [f"&alice@{d}", "&partner@remote.example"],
        f"staff@{d}": [f"&alice@{d}", f"&robert@{d}", f"&carol@{d}"],
        f"team@{d}": [f"&alice@{d}", f"&carol@{d}"],
        f"webmaster@{d}": [f"&alice@{d}", f"&robert@{d}"],
    }
    info = world.target.tool("vdominfo", world.alias_domain).stdout.decode()
    assert info.startswith(f"domain: {d}\n") and f"alias: {world.alias_domain}" in info
    # where mail goes: the .qmail files qmail-local / vdelivermail read
    ddir = world.domain_dir()
    assert (ddir / ".qmail-staff").read_text() == f"&alice@{d}\n&robert@{d}\n&carol@{d}\n"
    assert not (ddir / ".qmail-root").exists() and not (ddir / ".qmail-postmaster").exists()
    assert not (ddir / ".qmail-mailer-daemon").exists()
    assert (world.user_dir("alice") / ".qmail").read_text() == \
        "./Maildir/\n&alice@home.example\n"  # \alice: keeps a local copy
    assert (world.user_dir("carol") / ".qmail").read_text() == "&carol@elsewhere.example\n"
    assert not (world.user_dir("dave") / ".qmail").exists()
    assert (ddir / ".qmail-default").read_text().endswith("bounce-no-mailbox\n")  # the core's

    again = mailplan("plan", str(spec), "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes." in again.stdout
    state = json.loads((world.tmp / "routing.state.json").read_text())
    assert set(state["managed"]) == {d}  # the alias domain is not a managed domain
    assert set(state["routing"][d]["alias"]) == {"abuse", "info", "sales", "staff", "team",
                                                 "webmaster"}
    assert set(state["routing"][d]["forward"]) == {"alice", "carol"}


@pytest.mark.ssh
def test_strict_fails_the_plan_and_changes_nothing(world):
    spec = world.write()
    res = mailplan("plan", str(spec), "--strict")
    assert res.returncode == 1
    assert "routing entries have no safe vpopmail equivalent (--strict)" in res.stderr
    assert f"{world.aliases}:{line_of(world.aliases, 'vacation')}" in res.stderr
    res = mailplan("apply", str(spec), "--auto-approve", "--strict")
    assert res.returncode == 1 and "--strict" in res.stderr
    assert world.target.tool("vdominfo", world.domain).returncode != 0  # nothing created
    # with the warnings dealt with in the spec, strict passes
    world.virtusertable.write_text(f"info@{world.domain}\talice\n")
    (world.root / "home/dave/.forward").write_text("dave@elsewhere.example\n")
    spec = world.write(import_aliases={"exclude": ["ghost", "vacation"]})
    ok = mailplan("apply", str(spec), "--auto-approve", "--strict")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert (world.user_dir("dave") / ".qmail").read_text() == "&dave@elsewhere.example\n"


@pytest.mark.ssh
def test_drift_is_repaired_and_prune_removes_only_what_mailplan_created(world):
    d, spec = world.domain, world.write()
    mailplan("apply", str(spec), "--auto-approve", check=True)
    t = world.target
    # by hand: one alias changed, one alias added, carol's .forward changed on the source
    assert t.tool("valias", "-d", f"abuse@{d}").returncode == 0
    assert t.tool("valias", "-i", "intruder@x.example", f"abuse@{d}").returncode == 0
    assert t.tool("valias", "-i", "someone@x.example", f"handmade@{d}").returncode == 0
    (world.root / "home/carol/.forward").write_text("\\carol\ncarol@new.example\n")
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"~ alias abuse@{d}: intruder@x.example -> &alice@{d} (from " in plan
    assert f"~ forward carol@{d}: &carol@elsewhere.example -> ./Maildir/, " \
        "&carol@new.example (from" in plan
    assert "handmade" not in plan  # not ours, not in the spec: left alone
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert world.valias()[f"abuse@{d}"] == [f"&alice@{d}"]
    assert (world.user_dir("carol") / ".qmail").read_text() == \
        "./Maildir/\n&carol@new.example\n"

    # the spec drops the explicit alias and stops importing 'team'
    spec = world.write(aliases={}, import_aliases={"exclude": ["ghost", "team"]})
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"- alias sales@{d}" in plan and f"- alias team@{d}" in plan
    assert "--prune" in plan and "- alias handmade" not in plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert f"sales@{d}" in world.valias()  # not without --prune
    mailplan("apply", str(spec), "--auto-approve", "--prune", check=True)
    left = world.valias()
    assert f"sales@{d}" not in left and f"team@{d}" not in left
    assert left[f"handmade@{d}"] == ["someone@x.example"]
    assert not (world.domain_dir() / ".qmail-sales").exists()
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout

    # a forward mailplan wrote whose ~/.forward is gone from the source, its mailbox
    # still migrated: removed by a plain apply (the old server delivers carol's mail to
    # her now, so must the new one: no --prune for that, and no mail is deleted)
    (world.root / "home/carol/.forward").unlink()
    plan = mailplan("plan", str(spec), check=True).stdout
    assert (f"~ forward carol@{d}: ./Maildir/, &carol@new.example -> its own Maildir (no "
            "forward: the source no longer forwards it)") in plan, plan
    assert f"- forward carol@{d}" not in plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert not (world.user_dir("carol") / ".qmail").exists()
    assert (world.user_dir("alice") / ".qmail").exists()
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


@pytest.mark.ssh
def test_a_forward_the_spec_stops_carrying_is_removed_only_with_prune(world):
    """carol's ~/.forward was migrated; then the spec sets source.forward: false. The
    source still forwards her mail: the plan must not remove her .qmail on a plain apply
    saying "the source no longer forwards it", but list it as mailplan's deletion, for
    --prune (as the aliases import_aliases: false leaves)."""
    d, spec = world.domain, world.write()
    mailplan("apply", str(spec), "--auto-approve", check=True)
    qmail = world.user_dir("carol") / ".qmail"
    assert qmail.read_text() == "&carol@elsewhere.example\n"
    data = yaml.safe_load(spec.read_text())
    data["source"]["forward"] = False
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    plan = mailplan("plan", str(spec), check=True).stdout
    assert "no longer forwards it" not in plan, plan
    assert (f"- forward carol@{d}\n      created by mailplan; the spec no longer carries "
            "this mailbox's routing from the source (source.forward is false, or the alias "
            "of its name is not imported) (applied only with --prune)") in plan, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert qmail.read_text() == "&carol@elsewhere.example\n"
    mailplan("apply", str(spec), "--auto-approve", "--prune", check=True)
    assert not qmail.exists()
    assert f"forward carol@{d}" not in mailplan("plan", str(spec), check=True).stdout


@pytest.mark.ssh
def test_a_qmail_written_by_hand_where_mailplan_made_the_user_anew_is_never_pruned(world):
    """mailplan wrote carol's .qmail; an admin deleted carol (vdeluser takes the .qmail
    with her directory) and mailplan made her again, her ~/.forward gone meanwhile. A
    .qmail an admin writes for her then is not mailplan's: --prune leaves it (it
    removed it, the state's record of the first .qmail still naming carol)."""
    d, spec = world.domain, world.write()
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert (world.user_dir("carol") / ".qmail").exists()
    (world.root / "home/carol/.forward").unlink()
    assert world.target.tool("vdeluser", f"carol@{d}").returncode == 0
    mailplan("apply", str(spec), "--auto-approve", check=True)
    by_hand = world.user_dir("carol") / ".qmail"
    assert not by_hand.exists()
    by_hand.write_text("&carol@hand.example\n")
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"forward carol@{d}" not in plan, plan
    mailplan("apply", str(spec), "--auto-approve", "--prune", check=True)
    assert by_hand.read_text() == "&carol@hand.example\n"


@pytest.mark.ssh
def test_prune_leaves_an_alias_or_forward_changed_on_the_target_since(world):
    """mailplan wrote carol's .qmail and the alias sales; then carol set a vacation on
    the new server (her .qmail rewritten) and an admin added a line to sales. Once the
    source and spec no longer want them, they are not what mailplan wrote: --prune
    leaves both (plan -v says why), and still removes team, unchanged since."""
    d, spec = world.domain, world.write()
    mailplan("apply", str(spec), "--auto-approve", check=True)
    qmail = world.user_dir("carol") / ".qmail"
    vacation = "| /home/vpopmail/bin/autorespond 86400 3 message .\n./Maildir/\n"
    qmail.write_text(vacation)
    assert world.target.tool("valias", "-i", "boss@x.example", f"sales@{d}").returncode == 0
    (world.root / "home/carol/.forward").unlink()
    spec = world.write(aliases={}, import_aliases={"exclude": ["ghost", "team"]})
    plan = mailplan("plan", str(spec), "-v", check=True).stdout
    assert f"- alias team@{d}" in plan
    assert f"- alias sales@{d}" not in plan and f"- forward carol@{d}" not in plan, plan
    assert "alias created by mailplan, not wanted by the spec any more, but changed on " \
        "the target since mailplan wrote it (&alice@" in plan
    assert "forward created by mailplan, not wanted by the spec any more, but changed " \
        "on the target since mailplan wrote it (| /home/vpopmail/bin/autorespond" in plan
    mailplan("apply", str(spec), "--auto-approve", "--prune", check=True)
    assert qmail.read_text() == vacation
    left = world.valias()
    assert left[f"sales@{d}"][-1] == "boss@x.example" and f"team@{d}" not in left
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


@pytest.mark.ssh
def test_a_dot_qmail_saved_with_crlf_is_rewritten(world):
    """vdelivermail keeps a carriage return in the line it delivers to: a .qmail saved
    with CRLF line ends does not forward as its text reads, so it is no match."""
    d, spec = world.domain, world.write()
    mailplan("apply", str(spec), "--auto-approve", check=True)
    qmail = world.user_dir("alice") / ".qmail"
    qmail.write_bytes(qmail.read_bytes().replace(b"\n", b"\r\n"))
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"~ forward alice@{d}: ./Maildir/\\r, &alice@home.example\\r -> ./Maildir/, " \
        "&alice@home.example (from" in plan, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert qmail.read_bytes() == b"./Maildir/\n&alice@home.example\n"
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


@pytest.mark.ssh
def test_saved_plan_goes_stale_when_a_forward_changes(world):
    spec = world.write()
    saved = world.tmp / "p.json"
    mailplan("plan", str(spec), "-o", str(saved), check=True)
    doc = json.loads(saved.read_text())
    kinds = {c["kind"] for c in doc["changes"]}
    assert {"alias", "forward", "alias_domain"} <= kinds
    (world.root / "home/alice/.forward").write_text("alice@other.example\n")
    stale = mailplan("apply", str(saved))
    assert stale.returncode == 1 and "changed since this plan was saved" in stale.stderr
    mailplan("plan", str(spec), "-o", str(saved), check=True)
    done = mailplan("apply", str(saved), check=True)
    assert "Apply complete" in done.stdout
    assert (world.user_dir("alice") / ".qmail").read_text() == "&alice@other.example\n"


@pytest.mark.ssh
def test_odd_names_are_passed_literally(world, tmp_path):
    canary = tmp_path / "canary"
    odd = "o$&*|!~'`x"
    dest = f"x`touch${{IFS}}{canary}`$HOME@remote.example"
    spec = world.write(aliases={odd: [dest, "alice"]})
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert not canary.exists()
    assert world.valias()[f"{odd}@{world.domain}"] == [f"&{dest}", f"&alice@{world.domain}"]
    alias_file = world.domain_dir() / ".qmail-o$&*|!~'`x"
    assert alias_file.read_text() == f"&{dest}\n&alice@{world.domain}\n"
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


@pytest.mark.ssh
def test_spec_errors_and_unreadable_sources_name_their_place(world):
    spec = world.write(alias_domains=[world.domain])
    res = mailplan("validate", str(spec))
    assert res.returncode == 1 and "alias_domains[0]: alias domain" in res.stderr
    assert "it is the domain itself" in res.stderr
    spec = world.write(aliases={"postmaster": ["alice"]})
    res = mailplan("validate", str(spec))
    assert res.returncode == 1 and re.search(r"routing\.yaml:\d+:\d+: .*postmaster", res.stderr)
    spec = world.write(aliases={"x1": ["|/bin/prog"]})
    res = mailplan("validate", str(spec))
    assert res.returncode == 1 and "no programs, files" in res.stderr
    spec = world.write()
    dave = world.root / "home/dave/.forward"
    dave.unlink()
    dave.mkdir()  # a directory: sendmail reads only a regular file (SFF_REGONLY)
    res = mailplan("plan", str(spec))
    assert res.returncode == 0, res.stderr
    assert (f"the ~/.forward of dave ({dave}) is not a regular file: sendmail ignores such "
            "a file, so it is not migrated (mail stays in dave's mailbox)") in res.stdout
    dave.rmdir()
    world.aliases.write_text(world.aliases.read_text() + "\n  stray continuation\n")
    res = mailplan("plan", str(spec))
    assert res.returncode == 1
    assert f"oldmail:{world.aliases}:{len(world.aliases.read_text().splitlines())}:" \
        in res.stderr
    world.aliases.unlink()
    res = mailplan("plan", str(spec))
    assert res.returncode == 1 and "host oldmail" in res.stderr
    assert f"the aliases file {world.aliases} does not exist" in res.stderr


@pytest.mark.ssh
def test_existing_mailboxes_and_domains_are_not_shadowed(world):
    d, t = world.domain, world.target
    # on the target already, made by hand: the domain with a mailbox 'info', and the
    # would-be alias domain as a real domain of its own
    assert t.tool("vadddomain", d, "Pm-pass1").returncode == 0
    assert t.tool("vadduser", f"info@{d}", "Info-pass1").returncode == 0
    assert t.tool("vadddomain", world.alias_domain, "Pm-pass2").returncode == 0
    world.target.created_domains.append(world.alias_domain)
    spec = world.write()
    plan = mailplan("plan", str(spec), check=True).stdout
    vt = f"{world.virtusertable}:1"
    assert (f"{vt}: alias 'info' would shadow the existing mailbox info@{d} on the target; "
            "not created") in plan
    assert (f"alias domain {world.alias_domain} is already a domain of its own on the "
            "target; not changed") in plan
    assert f"+ alias info@{d}" not in plan and "+ alias_domain" not in plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert f"info@{d}" not in world.valias()
    assert not (world.domain_dir() / ".qmail-info").exists()
    assert t.tool("vdominfo", "-n", "-d", world.alias_domain).stdout.decode().startswith(
        f"{world.alias_domain}\n")
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout


@pytest.mark.ssh
def test_a_step_vpopmail_fails_silently_stops_the_apply(world):
    if REAL_VPOPMAIL:
        pytest.skip("replaces a vpopmail program by a failing one")
    d, spec = world.domain, world.write()
    valias = Path(world.target.vpopmail_dir, "bin/valias")
    real = valias.parent / "real" / "valias"  # same base name: the tool is chosen by it
    real.parent.mkdir()
    valias.rename(real)
    # vpopmail's habit: a message on stdout and exit 0, here for one alias only
    valias.write_text("#!/bin/sh\ncase \"$*\" in *staff@*) echo 'invalid domain, not in "
                      f"qmail assign file'; exit 0;; esac\nexec '{real}' \"$@\"\n")
    valias.chmod(0o755)
    res = mailplan("apply", str(spec), "--auto-approve")
    assert res.returncode == 1
    assert (f"host newmail, step + alias staff@{d}: valias failed (exit 0): invalid domain, "
            "not in qmail assign file") in res.stderr
    state = json.loads((world.tmp / "routing.state.json").read_text())
    assert state["history"][-1]["result"] == "failed"
    assert set(state["routing"][d]["alias"]) == {"abuse", "info", "sales"}  # done before it
    real.rename(valias)
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout
    assert world.valias()[f"staff@{d}"] == [f"&alice@{d}", f"&robert@{d}", f"&carol@{d}"]


@pytest.mark.ssh
def test_a_forward_linked_to_another_file_is_not_read(world, tmp_path):
    """mailplan reads users' files as root; sendmail reads a ~/.forward as its user. A
    ~/.forward that is a symbolic link (here to a shadow file) is not read: a warning
    names it, and nothing of the file it points at reaches the plan, its JSON or show.
    A ~/.mailboxlist linked the same way is not read either."""
    secret = "$6$Xk3Lq9$zzSecretHashValueForTheTest"
    shadow = tmp_path / "shadow-copy"
    shadow.write_text(f"alice:{secret}:19000:0:99999:7:::\nroot:{secret}2:19000::::::\n")
    forward = world.root / "home/carol/.forward"
    forward.unlink()
    forward.symlink_to(shadow)
    (world.root / "home/alice/.mailboxlist").symlink_to(shadow)
    spec = world.write()
    saved = tmp_path / "p.json"
    res = mailplan("plan", str(spec), "-v", "-o", str(saved), check=True)
    assert f"the ~/.forward of carol ({forward}) is a symbolic link: not read" in res.stdout
    shown = mailplan("show", str(saved), check=True).stdout
    for text in (res.stdout, res.stderr, saved.read_text(), shown):
        assert "zzsecret" not in text.lower() and "19000" not in text


@pytest.mark.ssh
def test_a_changed_alias_never_stops_existing_when_vpopmail_fails(world):
    """A changed alias used to be deleted (valias -d) and re-inserted line by line: an
    insert failing in between left the address bouncing. It is now replaced whole, so a
    valias that refuses every insert changes nothing, and the result reads back with
    valias and as the file valias itself would have written."""
    if REAL_VPOPMAIL:
        pytest.skip("replaces a vpopmail program")
    d, spec = world.domain, world.write()
    mailplan("apply", str(spec), "--auto-approve", check=True)
    t = world.target
    before = world.valias()[f"abuse@{d}"]
    assert t.tool("valias", "-d", f"abuse@{d}").returncode == 0
    assert t.tool("valias", "-i", "admin@x.example", f"abuse@{d}").returncode == 0
    valias = Path(t.vpopmail_dir, "bin/valias")
    real = valias.parent / "real" / "valias"
    real.parent.mkdir()
    valias.rename(real)
    valias.write_text("#!/bin/sh\ncase \"$1\" in -i|-d) echo 'Error: disk full' >&2; "
                      "exit 255;; esac\nexec '" + str(real) + "' \"$@\"\n")
    valias.chmod(0o755)
    try:
        mailplan("apply", str(spec), "--auto-approve", check=True)
    finally:
        real.rename(valias)
    assert world.valias()[f"abuse@{d}"] == before
    domain_dir = Path(t.tool("vdominfo", "-d", d).stdout.decode().split("\n", 1)[0])
    qmail = domain_dir / ".qmail-abuse"
    assert qmail.read_text() == "".join(f"{line}\n" for line in before)
    assert oct(qmail.stat().st_mode & 0o777) == "0o600"
    assert qmail.stat().st_uid == domain_dir.stat().st_uid
    assert "No changes." in mailplan("plan", str(spec)).stdout


@pytest.mark.ssh
def test_an_alias_on_the_target_that_shadows_a_migrated_mailbox_is_a_warning(world):
    """qmail-local reads a domain's .qmail-NAME before vdelivermail looks for a mailbox:
    an alias already on the target named like a mailbox the spec migrates takes all of
    its mail. An alias mailplan made before the user was migrated is only removed with
    --prune, one made by hand never: the plan must say the mailbox gets no mail."""
    d = world.domain
    # first run: carol is not migrated, an alias carol is declared in the spec instead
    spec = world.write(**{"import": {"uid_min": 1000, "exclude": ["bob", "carol"]},
                          "aliases": {"carol": ["alice"]}})
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert world.valias()[f"carol@{d}"] == [f"&alice@{d}"]
    # by hand: an alias named like dave's mailbox
    assert world.target.tool("valias", "-i", "x@remote.example", f"dave@{d}").returncode == 0
    spec = world.write(aliases={})  # carol is migrated now
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"+ user carol@{d}" in plan
    assert (f"alias carol@{d} on the target has the name of the mailbox carol: qmail-local "
            "reads .qmail-carol first, so the mailbox gets none of its mail while it "
            "exists; apply --prune or --prune-only alias removes it (mailplan made it)") \
        in plan, plan
    assert (f"alias dave@{d} on the target has the name of the mailbox dave: qmail-local "
            "reads .qmail-dave first, so the mailbox gets none of its mail while it "
            "exists; mailplan did not make it and leaves it alone: remove it by hand "
            f"(valias -d dave@{d})") in plan, plan
    mailplan("apply", str(spec), "--auto-approve", "--prune-only", "alias", check=True)
    assert f"carol@{d}" not in world.valias()
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"alias carol@{d}" not in plan and f"alias dave@{d} on the target" in plan


@pytest.mark.ssh
def test_a_shadowing_alias_mailplan_made_and_an_admin_changed_says_so(world):
    """An alias mailplan made, changed on the target by hand since, that shadows a
    mailbox the spec now migrates: --prune leaves it alone (not mailplan's lines now),
    and the warning says mailplan made it and it was changed, not that mailplan did
    not make it."""
    d = world.domain
    spec = world.write(**{"import": {"uid_min": 1000, "exclude": ["bob", "carol", "dave"]},
                          "aliases": {"carol": ["alice"], "dave": ["alice"]}})
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert world.valias()[f"dave@{d}"] == [f"&alice@{d}"]
    # by hand: a line added to the alias dave mailplan wrote
    assert world.target.tool("valias", "-i", "x@remote.example", f"dave@{d}").returncode == 0
    spec = world.write(aliases={})  # carol and dave are migrated now
    plan = mailplan("plan", str(spec), check=True).stdout
    assert (f"alias dave@{d} on the target has the name of the mailbox dave: qmail-local "
            "reads .qmail-dave first, so the mailbox gets none of its mail while it "
            "exists; mailplan made it, but it was changed on the target since mailplan "
            "wrote it, so --prune leaves it alone (not mailplan's lines now): remove it by "
            f"hand (valias -d dave@{d}) once its new lines are no longer wanted") in plan, plan
    assert "mailplan did not make it" not in plan, plan
    assert "removes it (mailplan made it)" in plan  # carol's, unchanged
    mailplan("apply", str(spec), "--auto-approve", "--prune", check=True)
    assert f"carol@{d}" not in world.valias()
    assert world.valias()[f"dave@{d}"] == [f"&alice@{d}", "x@remote.example"]
    assert "mailplan made it, but it was changed" in mailplan("plan", str(spec),
                                                              check=True).stdout


@pytest.mark.ssh
def test_every_alias_file_sendmail_cf_names_is_read_and_the_plan_says_which(world):
    """Without source.aliases the plan reads the aliases files of sendmail.cf's AliasFile
    lines, in order (the first that has a name wins); a database that is no file (nis:)
    is among the plan's warnings, not its problems; ``plan -v`` names the files read."""
    d = world.domain
    local = world.root / "etc/mail/aliases.local"
    local.write_text("staff:\t\tbob\nextra:\t\talice\n")
    cf = world.root / "etc/mail/sendmail.cf"
    cf.write_text(f"O AliasFile={world.aliases},nis:mail.aliases\nO AliasFile=hash:{local}\n"
                  "S5\nR$+ + *\t\t\t$#local $@ $&h $: $1\n")
    # no @DOMAIN line: with one, sendmail's virtusertable lookup took every NAME+DETAIL@
    # before local delivery and the plussed-users rule never applied to the domain
    world.virtusertable.write_text(f"info@{d}\talice\n")
    spec = world.write()
    data = yaml.safe_load(spec.read_text())
    del data["source"]["aliases"]
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    res = mailplan("plan", "-v", str(spec))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert f"+ alias extra@{d}\n      &alice@{d} (from {local}:2)" in out
    assert f"+ alias staff@{d}\n      &alice@{d}" in out  # /etc/aliases' staff, not bob
    warnings = out.split("Warnings (migrated all the same; look at them):\n", 1)[1]
    assert f"{cf}:1: AliasFile nis:mail.aliases: a nis database, not a file mailplan can " \
        "read" in warnings.split("\n\n", 1)[0]
    assert "nis:mail.aliases" not in out.split("Warnings (", 1)[0]  # not a problem
    assert f"! {d}: {cf}:4: sendmail delivered NAME+DETAIL@{d} to the user or alias NAME" \
        in warnings
    assert f"note: aliases are read from {world.aliases}, {local}: AliasFile in {cf} " \
        "(sendmail looks a name up in them in this order" in out
    assert f"note: {local}:1: alias 'staff' is not used: sendmail finds it first in " \
        f"{world.aliases}:7" in out


def test_a_list_relies_on_no_qmail_the_apply_leaves_unwritten(tmp_path, target):
    """staff reaches bob, a mailbox of the second domain, where sendmail broke the loop
    staff -> bob -> staff. Mapped alone, staff would hand its mail to bob's .qmail, which
    delivers to alice too, rather than list her again. But that domain is an alias domain
    of another on the target, so the apply writes no .qmail there: staff lists alice."""
    first, second, real = unique_domain("rl"), unique_domain("rm"), unique_domain("rn")
    assert target.tool("vadddomain", real, "Pm-pass1").returncode == 0
    target.created_domains.append(real)
    assert target.tool("vaddaliasdomain", real, second).returncode == 0
    root = make_source(tmp_path / "source", ACCOUNTS)
    aliases = root / "etc/aliases"
    aliases.write_text("staff:\talice, bob\nbob:\tstaff\n")
    spec = write_spec(tmp_path / "spec.yaml", source_root=root, target=target, domains={
        first: {"import": {"include": ["alice"]}, "import_aliases": True},
        second: {"import": {"include": ["bob"]}, "import_aliases": True}})
    data = yaml.safe_load(spec.read_text())
    data["source"]["aliases"] = str(aliases)
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    out = mailplan("plan", str(spec), check=True).stdout
    assert f"+ alias staff@{first}\n      &alice@{first}, &bob@{second} (from {aliases}:1)" \
        in out, out
    assert f"{second}: exists on the target as an alias of {real}; not touched" in out
    assert "not listed again" not in out
    mailplan("apply", str(spec), "--auto-approve", check=True)
    res = target.tool("valias", "-s", first)
    assert f"staff@{first} -> &alice@{first}\nstaff@{first} -> &bob@{second}\n" \
        in res.stdout.decode(), res.stdout


@pytest.mark.ssh
def test_a_migrated_user_held_back_by_a_source_problem_keeps_its_routing(world):
    """alice, migrated, then given no password on the old server (``passwd -d``: her
    shadow field emptied): the plan holds her back (a problem) and leaves her account as
    it is. The aliases that name her, the catch-all line naming her and her ~/.forward
    went on as if she were gone: ``~ alias`` changes taking her out of staff and
    webmaster, ``- alias`` deletions (root, abuse, info: applied by --prune, after which
    that mail bounced) and ``- forward``, while the old server still delivers to her.
    They stay as they were."""
    d, spec = world.domain, world.write()
    mailplan("apply", str(spec), "--auto-approve", check=True)
    before = world.valias()
    qmail = (world.user_dir("alice") / ".qmail").read_text()
    shadow = world.root / "etc/shadow"
    shadow.write_text(re.sub(r"(?m)^alice:[^:]*:", "alice::", shadow.read_text()))
    res = mailplan("plan", str(spec), "--detailed-exitcode")
    assert res.returncode == 0, res.stdout + res.stderr  # no changes
    problems = res.stdout.partition("Problems (these are not migrated):\n")[2]
    assert f"! alice@{d}: " in problems, res.stdout
    assert "alias" not in res.stdout.partition("Problems")[0], res.stdout
    res = mailplan("apply", str(spec), "--auto-approve", "--prune")
    assert res.returncode == 3 and "Nothing to apply" in res.stdout, res.stdout + res.stderr
    assert world.valias() == before
    assert (world.user_dir("alice") / ".qmail").read_text() == qmail


def test_plan_v_says_when_no_host_name_of_the_old_server_was_found(tmp_path, target):
    """A source with no class w (no sendmail files, no /etc/hostname: the sandbox's) left
    plan -v silent, while the runbook tells the admin to check the names plan -v lists:
    it says none were found and to list them in source.local_hostnames."""
    src = make_source(tmp_path / "source", ACCOUNTS[:1])
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={unique_domain("h"): {"import": {"uid_min": 1000}}})
    verbose = " ".join(mailplan("plan", str(spec), "-v", check=True).stdout.split())
    assert ("no host name of the old server was found (sendmail's class w: none in "
            f"{src}/etc/mail's local-host-names, sendmail.cw or sendmail.cf, nor in "
            f"{src}/etc/hostname)") in verbose, verbose
    assert "list its names in source.local_hostnames" in verbose
    assert "no host name" not in mailplan("plan", str(spec), check=True).stdout
    (src / "etc/hostname").write_text("oldmail.example.com\n")
    verbose = " ".join(mailplan("plan", str(spec), "-v", check=True).stdout.split())
    assert "no host name" not in verbose
    assert "is a local name: oldmail, oldmail.example.com" in verbose, verbose
