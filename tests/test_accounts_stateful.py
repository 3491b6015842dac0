"""A stateful property test of mailplan's promise for accounts and routing, run days
before cutover: ``apply`` again and again while the old server changes (accounts added,
removed, locked; ``passwd`` and ``chfn`` run; /etc/aliases and ~/.forward files
edited), the spec changes (quotas, excluded accounts, ``passwords: create_only``) and
the target is touched by hand (vdeluser, vadduser, vpasswd, vsetuserquota, valias,
.qmail files edited, removed or written), with applies killed part way and the state
file lost in between.

The expected target is modelled from README's sections "The spec", "Aliases and
forwards" and "How apply stays safe", not from the code:

- every account the spec migrates (the import rule's uid range less its excludes, and
  its ``users:``) is a mailbox with the quota in bytes (``default_quota`` or its own),
  the full name as its comment, and the password of its shadow hash: the user logs in
  with the password the old server has; with ``passwords: create_only`` a user that
  exists keeps the password it has, one mailplan creates (again) gets the source's;
- a locked account is a problem, never created; once migrated, it stays migrated
  (quota, comment, forward, alias lines to it) and is locked: its password no longer
  logs in (with ``passwords: create_only`` it still does), until the old server
  unlocks it;
- an alias of /etc/aliases is the domain's ``.qmail-NAME``, a ``&`` line per destination
  (a migrated user, an address), in order, a name that resolves to nothing left out;
  an alias left with no destination is not created;
- a ~/.forward is the mailbox's own ``.qmail`` (``\\user`` or the user's own name:
  ``./Maildir/``); one that would say only ``./Maildir/`` (or nothing) is not written;
- what mailplan did not create (a user, an alias, a .qmail made by hand, or one
  created before the state file was lost) is never deleted; what it created and the
  spec no longer wants is deleted only with ``--prune``, and until then a plan lists
  it. Only one thing is left open: a user or alias mailplan made, removed by hand and
  made again by hand, may be taken for mailplan's (its state file is not told);
- after each apply a plan has nothing to create or change (``No changes.`` when nothing
  is left to prune), and no password or hash is in any output, log or state file.

Kept small (four accounts, three aliases, few examples: about a minute here;
``MAILPLAN_ACCOUNTS_STATEFUL_EXAMPLES`` asks for more, to search longer by hand). Run by
CI with the fixed seed of conftest's profile (``derandomize`` when ``CI`` is set); the
point an apply is killed at follows the machine's speed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)
from migration import (
    SourceAccount,
    install_target,
    kill_apply_when,
    mailplan,
    make_source,
    unique_domain,
    write_spec,
)
from stateful_apply import AppliedAgain

ACCOUNTS = ("ann", "ben", "cas", "dot")
UID = {name: 1001 + i for i, name in enumerate(ACCOUNTS)}
ALIASES = ("sales", "team", "help")
ADDRESSES = ("x@remote.example", "y@far.example")
GHOST = "gus"  # never an account on the source
HAND = "&hand@hand.example"  # what an edit by hand writes
#: README: quotas in bytes, binary units
QUOTAS = {"unlimited": "NOQUOTA", "500M": f"{500 << 20}S", "1G": f"{1 << 30}S",
          "2.5G": f"{5 << 29}S"}
MAILDIR = "./Maildir/"
GECOS = st.sampled_from(["", "Someone", "A. Person"])
PICK = st.integers(0, 9)
#: the destinations of an alias in /etc/aliases
ALIAS = st.lists(st.sampled_from(ACCOUNTS + ADDRESSES + (GHOST,)), min_size=1, max_size=3,
                 unique=True)
#: what a ~/.forward says (``\\self``: ``\\NAME``, ``self``: ``NAME``)
FORWARD = st.lists(st.sampled_from(("\\self", "self", *ADDRESSES, GHOST)), min_size=1,
                   max_size=3, unique=True)
#: a change on the old server: (method, arguments)
OLD_SERVER = st.one_of(
    st.tuples(st.just("account_of"), st.sampled_from(ACCOUNTS), GECOS),
    st.tuples(st.just("passwd"), PICK),
    st.tuples(st.just("lock"), PICK),
    st.tuples(st.just("chfn"), PICK, GECOS),
    st.tuples(st.just("alias"), st.sampled_from(ALIASES), st.none() | ALIAS),
    st.tuples(st.just("forward"), st.sampled_from(ACCOUNTS), st.none() | FORWARD))
#: a change of the spec
SPEC = st.one_of(
    st.tuples(st.just("quota_of"), st.none() | st.sampled_from(ACCOUNTS),
              st.none() | st.sampled_from(sorted(QUOTAS))),
    st.tuples(st.just("excluded"), st.sampled_from(ACCOUNTS), st.booleans()),
    st.tuples(st.just("create_only_passwords"), st.booleans()))
#: a change on the target by hand
BY_HAND = st.one_of(
    st.tuples(st.just("vdeluser"), PICK),
    st.tuples(st.just("vadduser"), st.sampled_from(ACCOUNTS + ("intruder",))),
    st.tuples(st.just("vpasswd"), PICK),
    st.tuples(st.just("vsetuserquota"), PICK),
    st.tuples(st.just("valias"), st.sampled_from(ALIASES + ("handmade",))),
    st.tuples(st.just("edit_qmail"), PICK),
    st.tuples(st.just("remove_qmail"), PICK),
    st.tuples(st.just("write_qmail"), PICK),
    st.tuples(st.just("delete_state_file")))


@dataclass(frozen=True)
class Account:
    """A source account: its clear password (for logins), its shadow hash, its gecos."""

    password: str
    hash: str
    gecos: str
    locked: bool = False  # passwd -l: the hash behind a '!'

    def comment(self, name: str) -> str:
        return self.gecos or name


@dataclass
class Mailbox:
    """A user on the target as the model holds it: the password that logs in, and for
    a migrated user its quota and comment (None: not checked, a user made by hand)."""

    password: str
    quota: str | None = None
    comment: str | None = None
    locked: bool = False  # its password no longer logs in (a '!' before its hash)


@dataclass
class Made:
    """What mailplan made of one kind (user, alias, forward), as far as its state file
    can know: ``ours`` are there; ``gone`` were removed by hand, which mailplan learns
    only from its next plan (its record names them until an apply drops it); ``maybe``
    were made again by hand while gone and before an apply, which mailplan cannot tell
    from its own: --prune may delete them or leave them."""

    ours: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)
    maybe: set[str] = field(default_factory=set)

    def created(self, name: str) -> None:
        self.forget(name)
        self.ours.add(name)

    def forget(self, name: str | None = None) -> None:
        """NAME deleted by mailplan (or made anew), or (None) the state file lost."""
        for names in (self.ours, self.gone, self.maybe):
            if name is None:
                names.clear()
            else:
                names.discard(name)

    def removed_by_hand(self, name: str) -> None:
        if name in self.ours | self.maybe:
            self.forget(name)
            self.gone.add(name)

    def made_by_hand(self, name: str) -> None:
        if name in self.gone:
            self.forget(name)
            self.maybe.add(name)


class Accounts(AppliedAgain):
    """One domain migrated with local connections into the vpopmail stand-in."""

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        self.serial = 0  # makes each password new

    def secret(self, name: str) -> str:
        """A new password (the check looks for each in mailplan's output)."""
        self.serial += 1
        password = f"Pw{name}{self.serial}!q"
        self.secrets.add(password)
        return password

    def account(self, name: str, gecos: str) -> Account:
        password = self.secret(name)
        account = Account(password, SourceAccount(name, 0, password=password).hash(), gecos)
        self.secrets.add(account.hash)
        return account

    @initialize(names=st.sets(st.sampled_from(ACCOUNTS), min_size=1),
                aliases=st.dictionaries(st.sampled_from(ALIASES), ALIAS, max_size=2),
                forwards=st.dictionaries(st.sampled_from(ACCOUNTS), FORWARD, max_size=2))
    def setup(self, names: set[str], aliases: dict[str, list[str]],
              forwards: dict[str, list[str]]) -> None:
        self.make_work()
        self.root = self.work / "source"
        self.target = install_target(self.work / "target")
        self.domain = unique_domain("acc")
        self.secrets: set[str] = set()
        # the old server
        self.accounts = {n: self.account(n, n.capitalize()) for n in sorted(names)}
        self.aliases = {a: tuple(d) for a, d in aliases.items()}
        self.forwards = {u: tuple(to) for u, to in forwards.items()}
        # the spec
        self.default_quota = "1G"
        self.quota: dict[str, str] = {}  # users: entries
        self.exclude: set[str] = set()
        self.create_only = False
        # the target: what is there, what mailplan created (as its state file knows)
        self.users: dict[str, Mailbox] = {}
        self.alias_files: dict[str, tuple[str, ...]] = {}
        self.qmail: dict[str, tuple[str, ...]] = {}  # a mailbox's own .qmail
        self.made = {"user": Made(), "alias": Made(), "forward": Made()}
        self.write_source()
        self.write_spec()

    def final_apply(self) -> None:
        self.apply(False, None)

    # -- the old server and the spec -------------------------------------------------

    def write_source(self) -> None:
        make_source(self.root, [
            SourceAccount(n, UID[n], a.gecos, raw_hash="!" * a.locked + a.hash)
            for n, a in self.accounts.items()])
        (self.root / "etc/aliases").write_text("# aliases\n" + "".join(
            f"{name}: {', '.join(dests)}\n" for name, dests in sorted(self.aliases.items())))
        for name in ACCOUNTS:
            forward = self.root / "home" / name / ".forward"
            if name in self.forwards:
                words = {"\\self": f"\\{name}", "self": name}
                forward.parent.mkdir(parents=True, exist_ok=True)
                forward.write_text(", ".join(words.get(t, t) for t in self.forwards[name])
                                   + "\n")
            else:
                forward.unlink(missing_ok=True)
        self.changed = True

    def write_spec(self) -> None:
        domain: dict[str, object] = {"default_quota": self.default_quota,
                                     "import": {"uid_min": 1000,
                                                "exclude": sorted(self.exclude)},
                                     "import_aliases": True}
        if self.quota:
            domain["users"] = [{"name": n, "quota": q} for n, q in sorted(self.quota.items())]
        self.spec = write_spec(self.work / "m.yaml", source_root=self.root,
                               target=self.target, domains={self.domain: domain})
        data = yaml.safe_load(self.spec.read_text())
        data["source"]["aliases"] = str(self.root / "etc/aliases")
        if self.create_only:
            data["target"]["passwords"] = "create_only"
        self.spec.write_text(yaml.safe_dump(data, sort_keys=False))
        self.changed = True

    @rule(change=OLD_SERVER)
    def old_server(self, change: tuple) -> None:
        """Something changes on the old server (see the methods each change names)."""
        getattr(self, change[0])(*change[1:])
        self.write_source()

    def account_of(self, name: str, gecos: str) -> None:
        """useradd, or userdel (the admin then drops its users: entry from the spec
        too: a spec naming an account the source lacks is refused)."""
        if name not in self.accounts:
            self.accounts[name] = self.account(name, gecos)
        else:
            del self.accounts[name]
            if self.quota.pop(name, None) is not None:
                self.write_spec()

    def pick_account(self, pick: int) -> str | None:
        return sorted(self.accounts)[pick % len(self.accounts)] if self.accounts else None

    def passwd(self, pick: int) -> None:
        if name := self.pick_account(pick):
            self.accounts[name] = self.account(name, self.accounts[name].gecos)

    def lock(self, pick: int) -> None:
        """passwd -l, or -u."""
        if name := self.pick_account(pick):
            account = self.accounts[name]
            self.accounts[name] = replace(account, locked=not account.locked)

    def chfn(self, pick: int, gecos: str) -> None:
        if name := self.pick_account(pick):
            self.accounts[name] = replace(self.accounts[name], gecos=gecos)

    def alias(self, name: str, dests: list[str] | None) -> None:
        """An alias of /etc/aliases added, changed or (None) removed."""
        if dests is None:
            self.aliases.pop(name, None)
        else:
            self.aliases[name] = tuple(dests)

    def forward(self, name: str, to: list[str] | None) -> None:
        """A ~/.forward written, changed or (None) removed."""
        if to is None:
            self.forwards.pop(name, None)
        else:
            self.forwards[name] = tuple(to)

    @rule(change=SPEC)
    def spec_change(self, change: tuple) -> None:
        """The admin edits the spec (see the methods each change names)."""
        getattr(self, change[0])(*change[1:])
        self.write_spec()

    def quota_of(self, who: str | None, quota: str | None) -> None:
        """The domain's default_quota (WHO None), or a user's own quota (a users: entry,
        for an account the source has; QUOTA None drops the entry)."""
        if who is None:
            self.default_quota = quota or "1G"
        elif quota is None:
            self.quota.pop(who, None)
        elif who in self.accounts:
            self.quota[who] = quota

    def excluded(self, name: str, excluded: bool) -> None:
        """The import rule's exclude list (an account with a users: entry is migrated
        all the same)."""
        (self.exclude.add if excluded else self.exclude.discard)(name)

    def create_only_passwords(self, on: bool) -> None:
        self.create_only = on

    # -- the target, by hand -----------------------------------------------------------

    @precondition(lambda self: self.applies)  # the domain is there
    @rule(change=BY_HAND)
    def by_hand(self, change: tuple) -> None:
        """An admin changes the target (see the methods each change names)."""
        getattr(self, change[0])(*change[1:])

    def tool(self, name: str, *args: str) -> None:
        res = self.target.tool(name, *args)
        assert res.returncode == 0, (name, args, res.stdout, res.stderr)
        self.changed = True

    def address(self, user: str) -> str:
        return f"{user}@{self.domain}"

    def pick_user(self, pick: int) -> str | None:
        return sorted(self.users)[pick % len(self.users)] if self.users else None

    def vdeluser(self, pick: int) -> None:
        """Whoever makes a mailbox of that name next made it."""
        if name := self.pick_user(pick):
            self.tool("vdeluser", self.address(name))
            del self.users[name]
            if self.qmail.pop(name, None) is not None:
                self.made["forward"].removed_by_hand(name)
            self.made["user"].removed_by_hand(name)

    def vadduser(self, name: str) -> None:
        """A mailbox made by hand (when there is none of that name)."""
        if name not in self.users:
            password = self.secret(name)
            self.tool("vadduser", self.address(name), password)
            self.users[name] = Mailbox(password)
            self.made["user"].made_by_hand(name)

    def vpasswd(self, pick: int) -> None:
        if name := self.pick_user(pick):
            password = self.secret(name)
            self.tool("vpasswd", self.address(name), password)
            self.users[name].password = password
            self.users[name].locked = False

    def vsetuserquota(self, pick: int) -> None:
        if name := self.pick_user(pick):
            self.tool("vsetuserquota", self.address(name), "5M")
            if self.users[name].quota is not None:
                self.users[name].quota = f"{5 << 20}S"

    def valias(self, name: str) -> None:
        """A line added to an alias, or an alias made."""
        self.serial += 1
        line = f"hand{self.serial}@hand.example"
        self.tool("valias", "-i", line, self.address(name))
        if name not in self.alias_files:
            self.made["alias"].made_by_hand(name)
        self.alias_files[name] = (*self.alias_files.get(name, ()), line)

    def qmail_file(self, pick: int) -> tuple[str, str, Path] | None:
        """(kind, name, path) of an alias's .qmail-NAME or a mailbox's .qmail."""
        files = sorted([("alias", a) for a in self.alias_files]
                       + [("forward", u) for u in self.qmail])
        if not files:
            return None
        kind, name = files[pick % len(files)]
        return kind, name, self.domain_dir() / f".qmail-{name}" if kind == "alias" else \
            self.user_dir(name) / ".qmail"

    def edit_qmail(self, pick: int) -> None:
        """An alias's .qmail-NAME or a mailbox's .qmail rewritten."""
        if found := self.qmail_file(pick):
            kind, name, path = found
            path.write_text(HAND + "\n")
            (self.alias_files if kind == "alias" else self.qmail)[name] = (HAND,)
            self.changed = True

    def remove_qmail(self, pick: int) -> None:
        """An alias deleted (valias -d), or a mailbox's .qmail."""
        if found := self.qmail_file(pick):
            kind, name, path = found
            if kind == "alias":
                self.tool("valias", "-d", self.address(name))
                del self.alias_files[name]
            else:
                path.unlink()
                del self.qmail[name]
            self.made[kind].removed_by_hand(name)
            self.changed = True

    def write_qmail(self, pick: int) -> None:
        """A .qmail written for a mailbox that has none."""
        free = sorted(set(self.users) - set(self.qmail))
        if free:
            name = free[pick % len(free)]
            path = self.user_dir(name) / ".qmail"
            path.write_text(HAND + "\n")
            os.chmod(path, 0o600)
            self.qmail[name] = (HAND,)
            self.made["forward"].made_by_hand(name)
            self.changed = True

    def delete_state_file(self) -> None:
        """The state file is lost: mailplan forgets what it created."""
        self.spec.with_name("m.state.json").unlink(missing_ok=True)
        for made in self.made.values():
            made.forget()
        self.changed = True

    # -- mailplan ------------------------------------------------------------------

    def named(self) -> dict[str, Account]:
        """The accounts the spec names."""
        return {n: a for n, a in self.accounts.items()
                if n in self.quota or n not in self.exclude}

    def migrated(self) -> dict[str, Account]:
        """What the spec migrates: a locked account only where the target has its
        mailbox (never created: a problem), and there it is locked."""
        return {n: a for n, a in self.named().items() if not a.locked or n in self.users}

    def lines(self, targets: tuple[str, ...]) -> tuple[str, ...]:
        """The .qmail lines of an alias's or a forward's TARGETS."""
        migrated = self.migrated()
        out: list[str] = []
        for t in targets:
            if t in ("\\self", "self"):
                line = MAILDIR
            elif "@" in t:
                line = f"&{t}"
            elif t in migrated:
                line = f"&{t}@{self.domain}"
            else:
                continue
            if line not in out:
                out.append(line)
        return tuple(out)

    def wanted_aliases(self) -> dict[str, tuple[str, ...]]:
        return {a: lines for a, d in self.aliases.items() if (lines := self.lines(d))}

    def wanted_forwards(self) -> dict[str, tuple[str, ...]]:
        migrated = self.migrated()
        return {u: lines for u, t in self.forwards.items()
                if u in migrated and (lines := self.lines(t)) not in ((), (MAILDIR,))}

    @rule(prune=st.booleans(), kill=st.none() | st.integers(1, 12))
    def apply(self, prune: bool, kill: int | None) -> None:
        """``mailplan apply`` (with ``--prune``); with KILL, kill -9 first once the
        journal holds KILL lines (or when the apply ends first), then apply again."""
        args = ("--prune",) if prune else ()
        if kill is not None:
            kill_apply_when(self.spec, lambda journal: journal.count(b"\n") >= kill,
                            args=args)
        self.check_output(mailplan("apply", str(self.spec), "--auto-approve", *args,
                                   check=True))
        self.applied(prune)

    def applied(self, prune: bool) -> None:
        """Bring the model to what the apply must have done, then compare."""
        self.applies += 1
        self.changed = False
        migrated = self.migrated()
        made = self.made
        for kind in made.values():  # gone when the apply's plan looked: records dropped
            kind.gone.clear()
        for name, account in migrated.items():
            quota = QUOTAS[self.quota.get(name, self.default_quota)]
            have = self.users.get(name)
            if have is None:  # created: the source's password, a new directory
                self.users[name] = Mailbox(account.password)
                made["user"].created(name)
                made["forward"].forget(name)
            elif not self.create_only:
                have.password, have.locked = account.password, account.locked
            self.users[name].quota, self.users[name].comment = quota, account.comment(name)
        wanted, forwards = self.wanted_aliases(), self.wanted_forwards()
        for name, lines in wanted.items():
            if name not in self.alias_files:
                made["alias"].created(name)
            self.alias_files[name] = lines
        for name, lines in forwards.items():
            if name not in self.qmail:
                made["forward"].created(name)
            self.qmail[name] = lines
        if prune:
            self.pruned()
        self.check_target()
        self.check_plan()

    def pending(self) -> dict[str, tuple[set[str], set[str]]]:
        """Per kind, what mailplan made, is there and no longer wanted: (those it must
        delete with --prune, those it may: made again by hand while gone)."""
        there = {"user": set(self.users), "alias": set(self.alias_files),
                 "forward": set(self.qmail)}
        kept = {"user": set(self.named()), "alias": set(self.wanted_aliases()),
                "forward": set(self.wanted_forwards())}
        return {kind: (made.ours & there[kind] - kept[kind],
                       made.maybe & there[kind] - kept[kind])
                for kind, made in self.made.items()}

    def pruned(self) -> None:
        """What --prune deleted: what mailplan made and no longer wants, and perhaps
        what was made again by hand while gone (the target says which)."""
        users = set(self.vpasswd_lines())
        for kind, (must, may) in self.pending().items():
            for name in sorted(must | may):
                if kind == "user":
                    gone = name not in users
                elif kind == "alias":
                    gone = not (self.domain_dir() / f".qmail-{name}").exists()
                else:
                    gone = name not in users or not (self.user_dir(name) / ".qmail").exists()
                if name in must or gone:
                    self.made[kind].forget(name)
                    if kind == "user":
                        self.users.pop(name, None)
                        self.qmail.pop(name, None)
                        self.made["forward"].forget(name)
                    else:
                        (self.alias_files if kind == "alias" else self.qmail).pop(name, None)

    # -- the checks ---------------------------------------------------------------

    def domain_dir(self) -> Path:
        res = self.target.tool("vdominfo", "-d", self.domain)
        return Path(res.stdout.decode().split("\n")[0])

    def vpasswd_lines(self) -> dict[str, list[str]]:
        lines = (self.domain_dir() / "vpasswd").read_text().splitlines()
        return {f[0]: f for f in (line.split(":") for line in lines)}

    def user_dir(self, name: str) -> Path:
        return Path(self.vpasswd_lines()[name][5])

    def check_target(self) -> None:
        """The target holds what the model says, and the users log in with it."""
        entries = self.vpasswd_lines()
        assert set(entries) - {"postmaster"} == set(self.users), (sorted(entries),
                                                                  sorted(self.users))
        for name, want in self.users.items():
            _name, hashed, _uid, _gid, gecos, udir, quota = entries[name][:7]
            self.secrets.add(hashed)
            assert self.target.login_ok(self.address(name), want.password) != want.locked, name
            assert hashed.startswith("!") or not want.locked, name
            if want.quota is not None:
                assert (quota, gecos) == (want.quota, want.comment), (name, quota, gecos)
            dot_qmail = Path(udir) / ".qmail"
            assert (tuple(dot_qmail.read_text().splitlines()) if dot_qmail.exists() else None) \
                == self.qmail.get(name), (name, self.qmail.get(name))
        ddir = self.domain_dir()
        files = {p.name[len(".qmail-"):]: tuple(p.read_text().splitlines())
                 for p in ddir.glob(".qmail-*") if p.name != ".qmail-default"}
        assert files == self.alias_files, (files, self.alias_files)

    def check_plan(self) -> None:
        """A plan right after has nothing to create or change; what it would delete is
        what mailplan made and no longer wants (``No changes.`` when that is nothing)."""
        plan = mailplan("plan", str(self.spec))
        self.check_output(plan)
        assert plan.returncode == 0, plan.stdout + plan.stderr
        listed = {line.strip() for line in plan.stdout.splitlines()
                  if line.startswith(("  + ", "  ~ ", "  - "))}
        pending = self.pending()
        must = {f"- {kind} {name}@{self.domain}"
                for kind, (names, _may) in pending.items() for name in names}
        may = {f"- {kind} {name}@{self.domain}"
               for kind, (_must, names) in pending.items() for name in names}
        assert must <= listed <= must | may, plan.stdout
        if not listed:
            assert "No changes." in plan.stdout, plan.stdout

    def check_output(self, res: object) -> None:
        """No password or hash in what mailplan printed, logged or recorded."""
        texts = [res.stdout, res.stderr]  # type: ignore[attr-defined]
        state = self.spec.with_name("m.state.json")
        for path in [state, *state.with_name(state.name + ".logs").glob("*")]:
            if path.is_file():
                texts.append(path.read_text(errors="replace"))
        for secret in self.secrets:
            for text in texts:
                assert secret not in text, "a secret in mailplan's output"


def test_applies_while_accounts_and_routing_change_converge_to_the_readme(tmp_path):
    # MAILPLAN_ACCOUNTS_STATEFUL_EXAMPLES: more examples, for a longer search by hand
    examples = int(os.environ.get("MAILPLAN_ACCOUNTS_STATEFUL_EXAMPLES", "15"))
    run_state_machine_as_test(lambda: Accounts(tmp_path), settings=settings(
        max_examples=examples, stateful_step_count=12, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))
