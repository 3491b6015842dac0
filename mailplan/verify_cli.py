"""The ``mailplan verify`` command: options in, one library call, the report out.

Registered on the main group by :mod:`mailplan.cli`. Exit 0 when everything matches,
3 when something differs, 1 on an error (like every other command).
"""

from __future__ import annotations

import json
import sys

import click

from mailplan.engine import STATE_HELP, state_path_for
from mailplan.errors import MailplanError
from mailplan.interrupt import stops_at_once
from mailplan.names import domain_problem, user_problem
from mailplan.spec import load_spec
from mailplan.state import State
from mailplan.text import escape
from mailplan.verify import password_from_env, verify
from mailplan.verify_render import render_report

EXIT_DIFFERENT = 3
EXAMPLE = ("Examples:\n\n\b\n  mailplan verify migration.yaml\n  mailplan verify "
           "migration.yaml --json > proof.json\n  TEST_PW=... mailplan verify migration.yaml "
           "--check-login test@example.com --password-env TEST_PW")


@click.command(epilog=EXAMPLE)
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--state", help=STATE_HELP)
@click.option("--check-login", metavar="ADDRESS", help="Also log in as ADDRESS on the target "
              "through vchkpw (needs --password-env).")
@click.option("--password-env", metavar="VAR", help="Environment variable holding the "
              "password for --check-login (never given on the command line).")
@click.option("--full", is_flag=True, help="Read every source mailbox, also those the last "
              "verify proved identical and that have not changed since.")
def verify_command(spec: str, as_json: bool, state: str | None, check_login: str | None,
                   password_env: str | None, full: bool) -> None:
    """Compare source and target user by user and message by message. Changes nothing.

    Exits 0 when accounts, mailboxes (by message identity, size, flags and date, and
    their subscriptions) and routing all match, 3 when something differs, 1 on an
    error. Ctrl-C, SIGTERM or SIGHUP stops it at once (130, 143, 129).
    """
    if bool(check_login) != bool(password_env):
        raise MailplanError("--check-login and --password-env go together",
                            hint="mailplan verify SPEC --check-login USER@DOMAIN "
                            "--password-env VAR")
    if check_login and (why := _address_problem(check_login)):
        raise MailplanError(f"--check-login {escape(check_login)}: not an address "
                            f"(USER@DOMAIN): {why}", hint="give the user's address with its "
                            "domain, as mail reaches it (vchkpw would look a bare name up in "
                            "vpopmail's default domain, if it has one)")
    login = (check_login, password_from_env(password_env)) \
        if check_login and password_env else None
    loaded = load_spec(spec)
    state_path = state_path_for(loaded, state)
    with stops_at_once("verify", "while reading the hosts"):
        current = State.load(state_path, fold=False)
        current.refuse_other_spec(loaded.path)
        report = verify(loaded, current, login=login, full=full)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        click.echo(render_report(report), nl=False)
    if not report.ok:
        sys.exit(EXIT_DIFFERENT)


def _address_problem(text: str) -> str | None:
    """Why ``text`` is no address vpopmail could hold (a user, ``@``, a domain, by the
    rules the spec's names follow), or None."""
    user, at, domain = text.lower().rpartition("@")
    if not at:
        return "it has no @DOMAIN"
    return user_problem(user) or domain_problem(domain)
