"""The ``queue`` click group: stat, list, show, delete, check and flush a host's qmail queue.

Each command parses options, calls one function of :mod:`mailplan.queue.ops` and prints
through :mod:`mailplan.queue.render`. The group is complete on its own (tests drive it
with click's CliRunner); the main CLI adds it with ``main.add_command(queue)``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import click

from mailplan.errors import MailplanError
from mailplan.output import error_line
from mailplan.queue import control as ctl
from mailplan.queue import flush as flushing
from mailplan.queue import ops, render
from mailplan.queue.check import STALE_AFTER
from mailplan.queue.control import METHODS, Control
from mailplan.queue.dump import DEFAULT_QUEUE, GIVEN_BY_OPTION, GIVEN_BY_SPEC
from mailplan.queue.filters import Filter, Pattern, match_filter, parse_age
from mailplan.queue.formats import printable
from mailplan.queue.host import HostOptions, connect_host, refuse_source, spec_queue_dir
from mailplan.queue.model import FIELDS, sort_out, stats
from mailplan.queue.showing import show_full
from mailplan.text import escape_lines

PROBLEMS_EXIT = 2


class _QueueGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MailplanError as exc:
            # as the main CLI's: an error may quote what a host said (escape sequences)
            error_line(f"Error: {escape_lines(str(exc))}")  # stderr may be gone
            sys.exit(exc.exit_code)
        except KeyboardInterrupt as exc:  # a signal: the main CLI says it, naming this
            exc.command = f"queue {ctx.invoked_subcommand}"  # type: ignore[attr-defined]
            raise


def _examples(*lines: str) -> str:
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)


def host_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """HOST and the options that say how to reach it and where its queue is."""
    options = [
        click.argument("host"),
        click.option("--identity", metavar="FILE", help="SSH private key for ssh:// hosts."),
        click.option("--known-hosts", metavar="FILE",
                     help="known_hosts file to check the host key against."),
        click.option("--accept-new-host-key", is_flag=True,
                     help="Trust and remember a host key seen for the first time."),
        click.option("--sudo", is_flag=True, help="Run the commands under sudo -n."),
        click.option("--spec", metavar="FILE",
                     help="Read HOST as a host name of this migration spec."),
        click.option("--queue-dir", help=f"The qmail queue directory on the host [default: "
                     f"the spec target's qmail_dir/queue, else {DEFAULT_QUEUE}]."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def control_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """How qmail-send is found running, stopped and started."""
    options = [
        click.option("--control", type=click.Choice(METHODS), default="process",
                     show_default=True,
                     help="How to stop/start qmail-send: process only detects it (pgrep) "
                     "and refuses while it runs; svc, systemctl or custom stop and restart it."),
        click.option("--service", default="/service/qmail-send", show_default=True,
                     help="Service directory for --control svc."),
        click.option("--unit", default="qmail", show_default=True,
                     help="systemd unit for --control systemctl."),
        click.option("--status-cmd", help="custom: shell command exiting 0 while qmail-send "
                     "runs."),
        click.option("--stop-cmd", help="custom: shell command stopping qmail-send."),
        click.option("--start-cmd", help="custom: shell command starting qmail-send."),
        click.option("--stop-timeout", type=click.IntRange(1, 3600), default=30,
                     show_default=True, metavar="SECONDS",
                     help="How long to wait for qmail-send to stop before giving up (it "
                     "is started again either way)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def age_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--older-than and --newer-than, of list and delete."""
    options = [
        click.option("--older-than", metavar="AGE",
                     help="Queued longer ago than AGE (30m, 2h, 3d), by qmail-send's clock: "
                     "from its info file once preprocessed (the date qmail-qread prints), "
                     "else from its mess file."),
        click.option("--newer-than", metavar="AGE",
                     help="Queued within AGE (as --older-than)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _ages(older_than: str | None, newer_than: str | None) -> dict[str, int]:
    """The age conditions of a :class:`Filter` (those given) from the options' text."""
    ages = {"older_than": older_than, "newer_than": newer_than}
    return {name: parse_age(text) for name, text in ages.items() if text is not None}


def _target(kw: dict[str, Any], writes: str | None = None, *,
            flush: bool = False) -> ops.Target:
    """The host and queue a command works on; ``writes``: what it changes there (refused
    on the spec's source host); ``flush``: for ``queue flush``, whose control method
    signals qmail-send and never stops or starts it."""
    host = kw.pop("host")
    options = HostOptions(
        identity=kw.pop("identity"), known_hosts=kw.pop("known_hosts"),
        accept_new_host_key=kw.pop("accept_new_host_key"), sudo=kw.pop("sudo"),
        spec=kw.pop("spec"))
    if writes:
        refuse_source(host, options, writes)
    conn = connect_host(host, options)
    queue_dir, given_by = kw.pop("queue_dir"), GIVEN_BY_OPTION
    if not queue_dir:
        queue_dir, given_by = spec_queue_dir(host, options), GIVEN_BY_SPEC
    if not queue_dir:
        queue_dir, given_by = DEFAULT_QUEUE, None
    control = Control()
    if "control" in kw:
        control = Control(method=kw.pop("control"), service=kw.pop("service"),
                          unit=kw.pop("unit"), status_cmd=kw.pop("status_cmd"),
                          stop_cmd=kw.pop("stop_cmd", None), start_cmd=kw.pop("start_cmd", None),
                          timeout=kw.pop("stop_timeout", 30),
                          flush_cmd=kw.pop("flush_cmd", None), flush_only=flush)
    return ops.Target(conn, queue_dir, control, given_by)


@click.group(cls=_QueueGroup, epilog=_examples(
    "mailplan queue stat ssh://root@mx1.example.com",
    "mailplan queue list local --bounces --older-than 2d",
    "mailplan queue check ssh://root@mx1.example.com --repair --control svc",
    "mailplan queue flush ssh://root@mx1.example.com --control svc"))
def queue() -> None:
    """Inspect, clean and repair the qmail queue of a host.

    HOST is `local`, `ssh://user@host[:port]`, or with --spec a host name of the
    spec or its role (`target`, `source`).
    """


@queue.command(epilog=_examples("mailplan queue stat ssh://root@mx1.example.com",
                                "mailplan queue stat local --json"))
@host_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stat(as_json: bool, **kw: Any) -> None:
    """Count messages (as qmail-qstat), recipients, bounces, age and bytes."""
    target = _target(kw)
    dump = target.read(step="read queue", mess="none")
    numbers = stats(dump)
    out = render.stat_json if as_json else render.stat_text
    click.echo(out(numbers, dump.now, dump.status, dump.sendmutex, dump.sendmutex_pids),
               nl=False)


@queue.command(name="list", epilog=_examples(
    "mailplan queue list ssh://root@mx1.example.com",
    "mailplan queue list local --sender alice@example.com --older-than 1d",
    "mailplan queue list local --subject '^failure notice' --regex --json"))
@host_options
@click.option("--sender", metavar="PATTERN", help="Envelope sender contains PATTERN.")
@click.option("--recipient", metavar="PATTERN", help="A recipient contains PATTERN.")
@click.option("--subject", metavar="PATTERN", help="Subject contains PATTERN.")
@click.option("--regex", is_flag=True, help="Read the patterns as regular expressions.")
@age_options
@click.option("--bounces", is_flag=True, help="Only bounces (envelope sender <> or #@[]).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(sender: str | None, recipient: str | None, subject: str | None, regex: bool,
          older_than: str | None, newer_than: str | None, bounces: bool, as_json: bool,
          **kw: Any) -> None:
    """One line per message: id, date, size, sender, subject, recipients and their state."""
    def pat(text: str | None) -> Pattern | None:
        return None if text is None else Pattern(text, regex)

    chosen = Filter(sender=pat(sender), recipient=pat(recipient), subject=pat(subject),
                    bounces=bounces, **_ages(older_than, newer_than))
    target = _target(kw)
    dump = target.read(step="read queue", mess=FIELDS)
    msgs, odd = sort_out(dump)
    found = chosen.select(msgs, dump.now)
    if as_json:
        for piece in render.list_json(found):  # nor is its JSON
            click.echo(piece, nl=False)
        return
    for line in render.list_lines(found, odd):  # a backlog's text is never held whole
        click.echo(line, nl=False)


@queue.command(epilog=_examples("mailplan queue show local 1475289",
                                "mailplan queue show ssh://root@mx1.example.com 1475289 --full"))
@host_options
@click.argument("msg_id", metavar="ID", type=int)
@click.option("--full", is_flag=True, help="The whole message, not only its headers.")
def show(msg_id: int, full: bool, **kw: Any) -> None:
    """Show a message's envelope and headers (all of it with --full)."""
    if full:  # the text as it arrives: a message of any size is never held whole
        left = show_full(_target(kw), msg_id, lambda m: click.echo(render.show_head(m),
                                                                   nl=False),
                         lambda text: click.echo(text, nl=False))
        if left is not None:
            click.echo(render.leftover_text(left), nl=False)
        return
    shown = ops.show(_target(kw), msg_id)
    if isinstance(shown, ops.Leftover):
        click.echo(render.leftover_text(shown), nl=False)
    else:
        click.echo(render.show_text(*shown), nl=False)


@queue.command(epilog=_examples(
    "mailplan queue delete local 1475289 1475291",
    "mailplan queue delete ssh://root@mx1.example.com --bounces --control svc --execute",
    "mailplan queue delete local --match subject 'failure notice' --execute",
    "mailplan queue delete local --bounces --older-than 3d --execute"))
@host_options
@click.argument("ids", metavar="[ID]...", nargs=-1, type=int)
@click.option("--match", nargs=2, metavar="FIELD PATTERN",
              help="Messages whose FIELD (from, to or subject) contains PATTERN.")
@click.option("--regex", is_flag=True, help="Read PATTERN as a regular expression.")
@click.option("--bounces", is_flag=True, help="All bounces (envelope sender <> or #@[]).")
@age_options
@click.option("--include-partial", is_flag=True,
              help="Let --match, --bounces and the ages take half-written (partial) "
              "messages too; qmail-queue may still be writing them.")
@click.option("--execute", is_flag=True,
              help="Really delete; without it, only show what would be removed.")
@control_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def delete(ids: tuple[int, ...], match: tuple[str, str] | None, regex: bool, bounces: bool,
           older_than: str | None, newer_than: str | None, include_partial: bool,
           execute: bool, as_json: bool, **kw: Any) -> None:
    """Remove messages and every file they have (mess, info, local, remote, todo, intd,
    bounce), with qmail-send stopped. A dry run unless --execute is given. --match,
    --bounces, --older-than and --newer-than choose the messages that meet every one
    given, IDs are deleted besides them; the filters leave out partial (half-written)
    messages unless --include-partial."""
    chosen: Filter | None = None
    if match:
        chosen = match_filter(match[0].lower(), match[1], regex)
    ages = _ages(older_than, newer_than)
    if bounces or ages:
        chosen = replace(chosen or Filter(), bounces=bounces, **ages)
    change = ops.delete(_target(kw, "delete queue messages" if execute else None),
                        ops.Selection(ids, chosen, include_partial), execute=execute)
    out = render.delete_json if as_json else render.delete_text
    click.echo(out(change), nl=False)
    if change.failed:
        sys.exit(1)


@queue.command(epilog=_examples(
    "mailplan queue check ssh://root@mx1.example.com",
    "mailplan queue check local --repair --control systemctl --unit qmail",
    "mailplan queue check local --split 101 --json"))
@host_options
@click.option("--repair", is_flag=True,
              help="Fix what can be fixed, with qmail-send stopped, then check again.")
@click.option("--split", type=click.IntRange(1, 1000), default=None,
              help="conf-split qmail was built with [default: the tree's, the count most of "
              "its mess/, info/, local/ and remote/ agree on; 23 for a tree without any].")
@click.option("--stale-after", metavar="AGE", default=f"{STALE_AFTER}s", show_default=True,
              help="Age after which a half-written message or a pid/ file counts as "
              "abandoned (36 h, qmail-send's limit), from the later of its modification "
              "and access times; --repair refuses less than 24h (qmail-queue's lifetime).")
@control_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def check(repair: bool, split: int | None, stale_after: str, as_json: bool, **kw: Any) -> None:
    """Verify the queue like queue_repair.py: tree vs split count, owners, groups and
    modes, names vs inodes, orphans, half-written messages. Exit 2 if problems remain."""
    target = _target(kw, "repair the queue" if repair else None)
    stale = parse_age(stale_after)
    if repair:
        change = ops.repair(target, split=split, stale_after=stale)
        before, after = change.before, change.after
        assert before is not None and after is not None
    else:
        dump, before = ops.check_queue(target, split=split, stale_after=stale)
        after, change = before, None
        note = ctl.lock_note(dump.status, dump.sendmutex, dump.sendmutex_pids)
        # as a dry run of delete: --repair would refuse
        held = [f"{note}: --repair will refuse while it is held"] \
            if note and any(p.repairable for p in before.problems) else []
        del dump
    if as_json:
        import json

        data: dict[str, Any] = {"problems": render.report_dict(before)}
        if change is not None:
            data.update(repaired=change.executed, failed=change.failed,
                        warnings=change.warnings, after=render.report_dict(after))
        elif held:
            data["warnings"] = held
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(render.report_text(before), nl=False)
        if change is None:
            click.echo("".join(f"warning: {printable(w)}\n" for w in held), nl=False)
        if change is not None and change.executed:
            click.echo("\nrepaired" + (" (qmail-send was stopped and started again)"
                                       if change.stopped else "") + "; check now says:")
            click.echo("".join(f"FAILED: {printable(f)}\n" for f in change.failed),
                       nl=False)
            click.echo(render.report_text(after), nl=False)
            click.echo("".join(f"warning: {printable(w)}\n" for w in change.warnings),
                       nl=False)
    if after.problems:
        sys.exit(PROBLEMS_EXIT)


@queue.command(epilog=_examples(
    "mailplan queue flush ssh://root@mx1.example.com",
    "mailplan queue flush local --control svc --service /service/qmail-send",
    "mailplan queue flush local --control custom --status-cmd 'pgrep -x qmail-send' "
    "--flush-cmd 'pkill -ALRM -x qmail-send'"))
@host_options
@click.option("--control", type=click.Choice(METHODS), default="process", show_default=True,
              help="How to find qmail-send and signal it: process (pgrep/pkill -x "
              "qmail-send), svc (svc -a), systemctl (systemctl kill) or custom.")
@click.option("--service", default="/service/qmail-send", show_default=True,
              help="Service directory for --control svc.")
@click.option("--unit", default="qmail", show_default=True,
              help="systemd unit for --control systemctl.")
@click.option("--status-cmd", help="custom: shell command exiting 0 while qmail-send runs.")
@click.option("--flush-cmd", help="custom: shell command sending qmail-send SIGALRM.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def flush(as_json: bool, **kw: Any) -> None:
    """Make a running qmail-send retry every queued delivery now (SIGALRM, qmHandle -a).
    Changes nothing in the queue and takes no lock; refused unless qmail-send runs."""
    done = flushing.flush(_target(kw, "signal qmail-send", flush=True))
    out = flushing.flush_json if as_json else flushing.flush_text
    click.echo(out(done), nl=False)
