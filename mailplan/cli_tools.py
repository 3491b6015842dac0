"""The ``init`` and ``show`` commands: start a spec from the old server, look at records.

Thin like :mod:`mailplan.cli`: each command parses options and calls
:mod:`mailplan.init` or :mod:`mailplan.show`; the main CLI adds them with
``main.add_command``. HOST takes the same forms as ``mailplan queue`` (``local`` or
``ssh://user@host[:port]``), parsed by :func:`mailplan.queue.host.host_entry`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from mailplan.errors import MailplanError
from mailplan.hosts import connect
from mailplan.init import (
    check_out,
    choose,
    choose_domains,
    given_domains,
    render_spec,
    schema_reference,
    write_spec_file,
)
from mailplan.interrupt import stops_at_once
from mailplan.queue.host import HostOptions, host_entry
from mailplan.shell import join
from mailplan.show import load_shown, render


def _examples(*lines: str) -> str:
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)


def _absolute_root(root: str, *, local: bool) -> str:
    """``--root`` as an absolute path: the spec's source paths are written under it and
    must be absolute. A relative one is this directory's on a local source; on an ssh://
    source it would be the login's home there, which the admin cannot mean: refused."""
    if not root or root.startswith("/"):
        return root
    if local:
        return os.path.abspath(root)
    raise MailplanError(f"--root {root}: not an absolute path",
                        hint="give the directory's absolute path on the source host")


def _spec_path(path: str) -> str:
    """An option's file (``--identity``, ``--known-hosts``) as the spec names it: a
    relative path is this directory's, where the spec reads it relative to itself; a
    ``~`` path stays as it is (the spec expands it too)."""
    return path if path.startswith("~") else os.path.abspath(path)


def _as_written(entry: dict[str, str | int | bool]) -> dict[str, str | int | bool]:
    """A hosts: entry as the spec writes it: its key files by :func:`_spec_path`."""
    return {k: _spec_path(str(v)) if k in ("identity_file", "known_hosts") else v
            for k, v in entry.items()}


@click.command(epilog=_examples(
    "mailplan init --source ssh://root@oldmail.example.com -o migration.yaml",
    "mailplan init --source ssh://admin@10.0.0.5:2222 --sudo --domain example.com "
    "--domain example.net --target ssh://admin@newmail.example.com -o migration.yaml",
    "mailplan init --source local --root /mnt/oldmail -o migration.yaml"))
@click.option("--source", "source", required=True, metavar="HOST",
              help="The old sendmail server: local or ssh://user@host[:port].")
@click.option("--target", "target", metavar="HOST", help="The qmail + vpopmail server, "
              "written into the spec (same forms; default: a placeholder to edit).")
@click.option("--domain", "domains", multiple=True, metavar="DOMAIN", help="Mail domain "
              "(repeatable; the first is the primary, the others deliver like it). "
              "Default: the local domains in sendmail's configuration.")
@click.option("-o", "--out", type=click.Path(dir_okay=False), help="Write the spec to FILE "
              "(default: standard output).")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists (never a "
              "state file of mailplan's).")
@click.option("--identity", metavar="FILE", help="SSH private key for ssh:// hosts.")
@click.option("--known-hosts", metavar="FILE",
              help="known_hosts file to check the host keys against.")
@click.option("--accept-new-host-key", is_flag=True,
              help="Trust and remember a host key seen for the first time.")
@click.option("--sudo", is_flag=True, help="Read the source under sudo -n (shadow needs "
              "root).")
@click.option("--root", default="", metavar="DIR", help="Read the source's files under DIR "
              "(a copy or mount of the old server's disk; with --source local, home "
              "directories too, and the spec gets source.root: DIR).")
@click.option("--uid-min", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Accounts with a smaller uid are system accounts.")
@click.option("--uid-max", type=click.IntRange(min=0), default=59999, show_default=True,
              help="Accounts with a larger uid are system accounts.")
@click.option("--folders", default="mail", show_default=True, metavar="DIR",
              help="Where the users' mail folders are: relative to each home ('.' for the "
              "home itself, UW-IMAP's default without Pine) or absolute with %u for the "
              "account; looked in, and written to the spec as source.folders.")
def init(source: str, target: str | None, domains: tuple[str, ...], out: str | None,
         force: bool, identity: str | None, known_hosts: str | None,
         accept_new_host_key: bool, sudo: bool, root: str, uid_min: int,
         uid_max: int, folders: str) -> None:
    """Read the old server and write a first, commented spec that validates.

    Reads passwd, whether shadow is readable and which accounts are locked, have a
    hash vpopmail cannot use or are refused by their expiry dates (no hash is ever
    written), spool, ~/mbox and folder sizes, the aliases file, virtusertable and sendmail's
    local domains, in two batched reads (a third reads the first bytes of the
    files under ~/mail named as programs' own, such as dovecot's .imap/ index). Lists
    the accounts to migrate (with a comment: where the full name holds a control
    character) and, as comments, why each other one is left out.
    """
    from mailplan.facts.survey import survey_source

    if uid_min > uid_max:  # every account would be left out as a system account
        raise click.BadParameter(f"{uid_min} is above --uid-max {uid_max}",
                                 param_hint="'--uid-min'")
    given_domains(list(domains))  # a bad --domain is said before the source is read
    if not folders or folders.startswith("~"):  # as the spec's schema refuses it
        raise click.BadParameter("give a directory relative to each user's home (mail, not "
                                 "~/mail) or an absolute path with %u for the account",
                                 param_hint="'--folders'")
    options = HostOptions(identity=identity, known_hosts=known_hosts,
                          accept_new_host_key=accept_new_host_key, sudo=sudo)
    entry = host_entry(source, options)
    root = _absolute_root(root, local=bool(entry.get("local")))
    target_entry = host_entry(target, HostOptions(
        identity=identity, known_hosts=known_hosts,
        accept_new_host_key=accept_new_host_key)) if target else {
        "address": "newmail.example.com", "user": "root"}
    # the spec reads a relative path as relative to itself, the options as given here
    written, target_entry = _as_written(entry), _as_written(target_entry)
    path = Path(out) if out else None
    if path is not None:
        check_out(path, force=force)
    # what errors and the spec's first line call the old server: the spec's host name
    # means nothing yet, and a local source is this machine (its copy under --root)
    name = (f"this machine ({root})" if root else "this machine") if entry.get("local") \
        else source.removeprefix("ssh://")
    # a signal stops it at once, as plan's reads (it was click's "Aborted!", exit 1)
    with stops_at_once("init", "while reading the source"), \
            connect(name, entry, from_option=True) as conn:
        survey = survey_source(conn, root=root, uid_min=uid_min, uid_max=uid_max,
                               folders=folders, homes_under_root=bool(entry.get("local")))
    chosen = choose(survey, uid_min=uid_min, uid_max=uid_max, folders=folders)
    text = render_spec(survey, written, target_entry, choose_domains(survey, list(domains)),
                       chosen, schema_ref=schema_reference(path), uid_min=uid_min,
                       uid_max=uid_max, folders=folders)
    if path is None:
        click.echo(text, nl=False)
        return
    write_spec_file(text, path, force=force)
    migrated = sum(1 for c in chosen if not c.reason)
    click.echo(f"Wrote {path}: {migrated} account(s) to migrate, "
               f"{len(chosen) - migrated} left out (see the comments). "
               f"Next: mailplan validate {join([str(path)])} && mailplan plan "
               f"{join([str(path)])}", err=True)


@click.command(epilog=_examples("mailplan show migration.yaml",
                                "mailplan show migration.state.json --json",
                                "mailplan show plan.json"))
@click.argument("file", default="migration.yaml", metavar="[SPEC|STATE|PLAN.json]",
                type=click.Path(dir_okay=False))
@click.option("--state", help="State file to show for SPEC (default: from the spec).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(file: str, state: str | None, as_json: bool) -> None:
    """Show the state (what mailplan manages, last apply, mail imported per user) or a
    saved plan. Reads local files only. Without an argument: migration.yaml's state."""
    doc = load_shown(Path(file), state_override=Path(state) if state else None)
    if as_json:
        json.dump(doc, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        click.echo(render(doc), nl=False)
