"""The sandbox demo: a whole migration on this machine, no servers needed.

It builds a fake old sendmail host (passwd, shadow, mail spools, /etc/aliases) and a
vpopmail target (the test stand-in from tests/standin, which reproduces real vpopmail's
recorded behaviour) under ./sandbox-demo, writes a spec with local connections that
imports the aliases, and runs validate, plan, apply, and plan again (which shows no
changes). Finally it checks that a migrated user logs in with the old password through
the target's vchkpw.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests"))

from migration import SourceAccount, install_standin, make_source, write_spec  # noqa: E402

ACCOUNTS = [
    SourceAccount("alice", 1000, "Alice Liddell,,,", "Wonderland1"),
    SourceAccount("bob", 1001, "Bob Dobbs", "slack-2026"),
    SourceAccount("carol", 1002, "Carol Danvers", "marvel!"),
    SourceAccount("mallory", 1003, "Former employee", raw_hash="!$6$locked$x"),
]

SPOOL = {
    "alice": b"From bob@example.org Mon Nov  2 10:00:00 2026\nFrom: bob@example.org\n"
             b"Subject: hello\n\nHi Alice!\n\n",
}

#: the old server's /etc/aliases, as years of sendmail left it: the system aliases end at
#: root, whose mail alice reads; role addresses, a list, a user gone elsewhere and a pipe
ALIASES = """\
# Basic system aliases -- these MUST be present.
MAILER-DAEMON:\tpostmaster
postmaster:\troot

# General redirections for pseudo accounts.
bin:\t\troot
daemon:\troot
nobody:\t\troot

# Well-known aliases.
abuse:\t\troot
webmaster:\troot

# Person who should get root's mail
root:\t\talice

# Local lists and role addresses.
staff:\t\talice, bob,
\t\tpat@contractor.example
sales:\t\tbob
dave:\t\tdave.jones@newjob.example
fax:\t\t"|/usr/local/bin/mail2fax"
"""


def run(*args: str, expect: tuple[int, ...] = (0,)) -> None:
    print(f"\n$ mailplan {' '.join(args)}", flush=True)
    res = subprocess.run([sys.executable, "-m", "mailplan", *args], cwd=WORK, check=False)
    if res.returncode not in expect:
        sys.exit(f"demo failed: mailplan {' '.join(args)} exited {res.returncode}")


WORK = Path(os.environ.get("MAILPLAN_SANDBOX", Path.cwd() / "sandbox-demo")).resolve()


def main() -> None:
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    source = make_source(WORK / "oldmail", ACCOUNTS)
    for user, data in SPOOL.items():
        (source / "var/spool/mail" / user).write_bytes(data)
    (source / "etc/aliases").write_text(ALIASES)
    target = install_standin(WORK / "newmail")
    spec = write_spec(WORK / "migration.yaml", source_root=source, target=target,
                      source={"aliases": str(source / "etc/aliases")}, domains={
        "example.com": {
            "postmaster_password": {"file": "postmaster.pw"},
            "default_quota": "1G",
            "unknown_recipients": "bounce",
            "import": {"uid_min": 1000, "uid_max": 59999},
            "users": [{"name": "robert", "from": "bob", "quota": "2G"}],
            "import_aliases": True,
        }})
    # a secret file beside the spec, readable by its owner only (as a real one would
    # be): the sandbox's spec works again later, in a shell of its own
    fd = os.open(WORK / "postmaster.pw", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("Postmaster-Demo-1\n")
    print(f"Sandbox in {WORK}; spec: {spec.name}")
    print(spec.read_text())
    run("validate", spec.name)
    run("plan", spec.name)
    # exit 3: all done but the plan's problems (mallory's locked account, the fax alias)
    run("apply", spec.name, "--auto-approve", expect=(3,))
    run("plan", spec.name, "--detailed-exitcode")
    ok = target.login_ok("alice@example.com", "Wonderland1")
    print(f"\nalice@example.com logs in on the target with her old password: {ok}")
    if not ok:
        sys.exit("demo failed: the migrated password does not authenticate")
    print(f"\nThe sandbox stays in {WORK}: there, `mailplan plan {spec.name}`, `apply`, "
          "`verify` and `show` work on it (its stand-in target has no qmail queue for "
          "`mailplan queue`; `apply` exits 3 while the spec's import rule takes mallory, "
          "whose locked account is not migrated, and the source has its fax alias, which "
          "has no safe equivalent; `verify` exits 3 for mallory, and lists the fax alias "
          "as explained); mail appended to oldmail/var/spool/mail/alice is "
          "what the next apply moves, and an alias added to oldmail/etc/aliases what it "
          "creates.")


if __name__ == "__main__":
    main()
