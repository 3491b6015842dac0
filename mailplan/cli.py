"""The ``mailplan`` command line: parse options, call the library, report errors.

Each command calls one function of :mod:`mailplan.engine` or :mod:`mailplan.apply`; a
:class:`~mailplan.errors.MailplanError` becomes ``Error: ...`` on stderr and exit 1.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
from pathlib import Path
from typing import Any, TextIO

import click

from mailplan import __version__
from mailplan.apply import record_settled
from mailplan.engine import (
    STATE_HELP,
    Planned,
    check_saved,
    load_for_apply,
    make_plan,
    refuse_applied,
    refuse_other_state,
    saved_rescan,
    state_path_for,
)
from mailplan.errors import MailplanError
from mailplan.interrupt import (
    SignalStop,
    Stopped,
    exit_status,
    like_ctrl_c,
    signal_name,
    stops_at_once,
)
from mailplan.output import error_line
from mailplan.passwords import unresolved_passwords
from mailplan.plan import Plan
from mailplan.prune_select import PRUNABLE, parse_kinds, saved_selection, shown
from mailplan.render import render_plan, use_colour
from mailplan.retry import apply_with_retries
from mailplan.shell import join
from mailplan.spec import Spec, load_spec, mailplan_file
from mailplan.state import State, locked
from mailplan.target_lock import Holder
from mailplan.text import escape_lines
from mailplan.watch import EXIT_NOT_MIGRATED, ApplyWatch, Cancelled

EXAMPLES = {
    "validate": "Example:\n\n\b\n  mailplan validate migration.yaml",
    "plan": "Examples:\n\n\b\n  mailplan plan migration.yaml\n  mailplan plan migration.yaml "
            "-o plan.json\n  mailplan plan migration.yaml --json --detailed-exitcode\n"
            "  mailplan plan migration.yaml --prune-only alias,forward -o plan.json\n"
            "  mailplan plan migration.yaml --rescan",
    "apply": "Examples:\n\n\b\n  mailplan apply plan.json\n  mailplan apply migration.yaml\n"
             "  mailplan apply migration.yaml --auto-approve --prune\n"
             "  mailplan apply migration.yaml --prune-only alias\n"
             "  mailplan apply migration.yaml --rescan",
}


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            with like_ctrl_c():  # SIGTERM and SIGHUP too, where no command stops on them
                return super().invoke(ctx)
        except MailplanError as exc:
            error_line(f"Error: {escape_lines(str(exc))}")  # stderr may be gone
            sys.exit(exc.exit_code)
        except KeyboardInterrupt as exc:  # a signal where no command stops on it
            # (validate, show, queue): the README's 128 + signal (130 for Ctrl-C), not
            # click's "Aborted!" and exit 1; a note says what a queue change did then
            signum = getattr(exc, "signum", signal.SIGINT)
            command = getattr(exc, "command", ctx.invoked_subcommand)
            notes = "".join(f"; {escape_lines(note)}" for note in getattr(exc, "__notes__", ()))
            error_line(f"Error: {command} interrupted ({signal_name(signum)}){notes}")
            sys.exit(exit_status(signum))


@click.group(cls=_Group, epilog="Example:\n\n\b\n  mailplan validate migration.yaml && "
             "mailplan plan migration.yaml")
@click.version_option(__version__, prog_name="mailplan")
def main() -> None:
    """Plan and apply a sendmail -> qmail/vpopmail migration described in a YAML spec."""


def _state(spec: Spec, override: str | None) -> Path:
    return state_path_for(spec, override)


def _prune_kinds(ctx: click.Context, param: click.Parameter,
                 values: tuple[str, ...]) -> tuple[str, ...] | None:
    """--prune-only's kinds (None: not given); a bad one is the option's usage error."""
    try:
        return parse_kinds(values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


#: --rescan, of plan and apply (its help: what it is for, and what it costs)
_rescan = click.option("--rescan", is_flag=True, help="Read every mailbox whole, trusting "
                       "no checkpoint, so that flags and keywords set on the old server "
                       "since the import (rewritten in place) are carried over; slower: "
                       "without it only what was appended since is read. Use it once, for "
                       "the final sync, when users no longer use the old server.")


def _prune_only(help_text: str) -> Any:
    return click.option("--prune-only", "prune_only", multiple=True, metavar="KIND",
                        callback=_prune_kinds, help=help_text,
                        shell_complete=lambda ctx, param, text: [
                            k for k in PRUNABLE if k.startswith(text)])


@main.command(epilog=EXAMPLES["validate"])
@click.argument("spec", type=click.Path(dir_okay=False))
def validate(spec: str) -> None:
    """Check a spec against the schema and vpopmail's rules (no network)."""
    loaded = load_spec(spec)
    n = sum(len((d or {}).get("users", [])) for d in loaded.data["domains"].values())
    click.echo(f"{spec}: valid (spec version 1, {len(loaded.data['domains'])} domain(s), "
               f"{n} explicit user(s))")
    for exc in unresolved_passwords(loaded):  # secrets this machine lacks: not the spec's
        click.echo(f"note: {escape_lines(str(exc))}\n  the spec is valid; plan and apply "
                   "need this on the machine they run on", err=True)


class _DetailedExitCode(click.Command):
    """plan: under --detailed-exitcode 2 means "changes pending", so a usage error (an
    unknown option, a bad -o) exits 1 there, as every other error does."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        given = list(args)  # parsing consumes the list
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            if "--detailed-exitcode" in given:
                exc.exit_code = 1
            raise

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            if ctx.params.get("detailed_exitcode"):
                exc.exit_code = 1
            raise


@main.command(cls=_DetailedExitCode, epilog=EXAMPLES["plan"])
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-o", "--out", type=click.Path(dir_okay=False), help="Save the plan to FILE "
              "(JSON; its name ends in .json) for `mailplan apply FILE`.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON "
              "(schemas/plan-v1.schema.json).")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 with no changes, 2 with "
              "changes pending, 1 on error.")
@click.option("--state", help=STATE_HELP)
@click.option("-v", "--verbose", is_flag=True, help="Also list what needs no change, and why.")
@click.option("--strict", is_flag=True, help="Fail when an alias, ~/.forward or "
              "virtusertable entry has no safe vpopmail equivalent (a routing warning).")
@_prune_only("Hold only the deletions of kind KIND: alias, forward, user (its Maildir, mail "
             "included; its forward goes with it), domain (needs user); repeat or "
             "comma-separate. The others are listed as left out. `apply FILE` applies a "
             "plan saved with it, those deletions included, without --prune.")
@_rescan
def plan(spec: str, out: str | None, as_json: bool, detailed_exitcode: bool,
         state: str | None, verbose: bool, strict: bool,
         prune_only: tuple[str, ...] | None, rescan: bool) -> None:
    """Read both servers and show what apply would change. Changes nothing.

    Ctrl-C, SIGTERM or SIGHUP stops it at once, the commands it runs on the hosts
    with it (exit 130, 143, 129).
    """
    if out and Path(out).suffix != ".json":
        # apply and show take a name ending in .json for a saved plan, anything else
        # for a spec: said before the hosts are read, not after
        raise click.BadParameter(f"{out}: a saved plan's name ends in .json (`mailplan "
                                 "apply` reads any other file as a spec)",
                                 param_hint="'-o' / '--out'")
    if out and not Path(out).parent.is_dir():
        raise click.BadParameter(f"{out}: {Path(out).parent} is not a directory",
                                 param_hint="'-o' / '--out'")
    loaded = load_spec(spec)
    if out:
        _refuse_out_over(Path(out), loaded, _state(loaded, state))
    with stops_at_once("plan", "while reading the hosts"):
        planned = make_plan(loaded, State.load(_state(loaded, state), fold=False),
                            strict=strict, prune_only=prune_only, rescan=rescan)
        planned.close()
    if out:
        planned.plan.save(Path(out))
    if as_json:
        click.echo(json.dumps(planned.plan.to_dict(), indent=2, sort_keys=True))
    else:
        target = loaded.data["target"]["host"]
        click.echo(render_plan(planned.plan, target=target, colour=use_colour(sys.stdout),
                               verbose=verbose), nl=False)
        if out:
            click.echo(_saved_note(out, state, planned.plan))
    if detailed_exitcode and (planned.plan.changes or planned.plan.left_out):
        sys.exit(2)


def _refuse_out_over(out: Path, spec: Spec, state: Path) -> None:
    """plan -o never replaces the spec, its state file or another state file of
    mailplan's (one tab completion away: migration.state.json beside migration.yaml):
    what mailplan made, recorded nowhere else, would be lost (--prune's safety, the
    mailbox checkpoints); said before the hosts are read."""
    where = out.resolve()
    what = ("the state file of this spec" if where == state else "the spec itself"
            if where == spec.path.resolve() else None)
    if what is None and where.is_file():
        try:
            what = "a state file of mailplan's" if mailplan_file(
                json.loads(where.read_bytes())) == "a state file" else None
        except (OSError, ValueError):
            what = None  # not a state file: replaced, as any other file
    if what is not None:
        raise click.BadParameter(f"{out}: that is {what}; a saved plan there would replace "
                                 "it (choose another name, such as plan.json)",
                                 param_hint="'-o' / '--out'")


def _saved_note(out: str, state: str | None, saved: Plan) -> str:
    """How to apply a saved plan: the command that leaves its deletions out first (as
    apply does without --prune), so that a copied command never deletes mail unasked;
    a plan saved with --prune-only holds only the deletions selected, which its apply
    carries out (said, with the mail they delete)."""
    def cmd(*opts: str) -> str:
        return "mailplan apply " + join([*opts, out, *(["--state", state] if state else [])])
    deletes = [c for c in saved.changes if c.action == "delete"]
    deletions = len(deletes)
    mail = ", mail included" if any(c.kind in ("user", "domain") for c in deletes) else ""
    if saved.prune_only is not None:
        left = f"; {len(saved.left_out)} left out" if saved.left_out else ""
        return (f"Saved the plan to {out}. Apply exactly this plan, its {deletions} "
                f"deletion(s) selected with {shown(saved.prune_only)} included{mail}"
                f"{left}, with: {cmd()}")
    if not deletions:
        return f"Saved the plan to {out}. Apply exactly this plan with: {cmd()}"
    return (f"Saved the plan to {out}. Apply it with: {cmd()} (its {deletions} deletion(s) "
            f"left out); with them{mail}: {cmd('--prune')}")


@main.command(epilog=EXAMPLES["apply"])
@click.argument("spec_or_plan", type=click.Path(dir_okay=False))
@click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation.")
@click.option("--prune", is_flag=True, help="Also delete what mailplan created (domains, users, "
              "aliases, forwards) that the spec no longer wants: every deletion of the plan.")
@_prune_only("Apply only the deletions of kind KIND (--prune applies all): alias, forward, "
             "user (its Maildir, mail included; its forward goes with it), domain (needs "
             "user); repeat or comma-separate. The plan lists the others as left out. A "
             "plan saved with it is applied with its selection, without the option.")
@click.option("--state", help=STATE_HELP)
@click.option("--strict", is_flag=True, help="Fail when an alias, ~/.forward or "
              "virtusertable entry has no safe vpopmail equivalent (a routing warning).")
@click.option("--parallel", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Import the mail of N users at a time.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors (needs "
              "--auto-approve or a saved plan).")
@click.option("--log", "log_file", type=click.Path(dir_okay=False), help="Write the apply "
              "log to FILE, in an existing directory; an earlier apply log is appended "
              "to (another file is refused); made 0600 [default: "
              "STATE.logs/apply-TIMESTAMP.log].")
@_rescan
def apply(spec_or_plan: str, auto_approve: bool, prune: bool,
          prune_only: tuple[str, ...] | None, state: str | None, strict: bool,
          parallel: int, quiet: bool, log_file: str | None, rescan: bool) -> None:
    """Carry out a saved plan, or plan a spec, confirm, and carry it out.

    Shows progress (a live display on a terminal, status lines otherwise) and logs
    every remote command, the plan's problems (what is not migrated) and a summary to
    a file. Ctrl-C, SIGTERM or SIGHUP stops after the current step (before the
    first change: at once), a second Ctrl-C or SIGTERM at once; run the same command
    again to resume. Exits 0 when all is done, 3 when all it could do is done but the
    plan has problems (something the spec asks for is not migrated), 1 on an error,
    130, 143 or 129 when Ctrl-C, SIGTERM or SIGHUP stopped it.
    """
    if prune and prune_only is not None:
        raise click.UsageError("--prune and --prune-only exclude each other: --prune applies "
                               "every deletion, --prune-only those of the kinds it names")
    loaded, saved = load_for_apply(Path(spec_or_plan))
    kinds = prune_only if saved is None else saved_selection(saved, prune=prune,
                                                             kinds=prune_only)
    deletes = prune or kinds is not None  # the plan holds only the selected ones
    rescan = saved_rescan(saved, rescan)  # a saved plan is planned again as it was
    if quiet and saved is None and not auto_approve:
        raise MailplanError("--quiet shows no plan to confirm", hint="add --auto-approve, "
                            "or save the plan with plan -o FILE and run apply -q FILE")
    state_path = _state(loaded, state)
    target = loaded.data["target"]["host"]
    # a state file mailplan cannot use (a saved plan given as --state, a damaged one) is
    # said before its lock or log is made, and a saved plan's checks before any host is read
    before = State.load(state_path, fold=False)
    before.refuse_other_spec(loaded.path)
    if saved is not None:
        refuse_other_state(saved, before)
        refuse_applied(saved, before)
    # the options that change what is done (and --parallel, how): the same command
    resume = "mailplan apply " + join([spec_or_plan, *(["--prune"] if prune else []),
                                       *(["--prune-only", ",".join(prune_only)]
                                         if prune_only else []),
                                       *(["--state", state] if state else []),
                                       *(["--strict"] if strict else []),
                                       *(["--rescan"] if rescan else []),
                                       *(["--parallel", str(parallel)] if parallel > 1
                                         else [])])
    with stops_at_once("apply", "before the first change") as signals, locked(state_path), \
            ApplyWatch(state_path, resume=resume, quiet=quiet, signals=signals,
                       log_path=Path(log_file) if log_file else None) as watch:
        # the target's apply lock first: no other apply, of any spec or state, changes
        # the target from before it is read until this apply ends (a retry's reconnect
        # takes it again)
        holder = Holder.of(state_path, loaded.path.resolve())
        connectors = watch.connect(loaded, holder)
        current = State.load(state_path)
        current.claim(loaded.path)
        planned = make_plan(loaded, current, strict=strict, connectors=connectors,
                            prune_only=kinds, rescan=rescan)
        try:
            if saved is not None:
                check_saved(saved, planned.plan, current)
            watch.planned(planned.plan)
            todo = [c for c in planned.plan.changes if deletes or c.action != "delete"]
            if saved is None and not quiet:
                click.echo(render_plan(planned.plan, target=target,
                                       colour=use_colour(sys.stdout), prune=prune),
                           nl=False, file=watch.stream)
            if not todo:
                watch.nothing(record_settled(planned, current), gone=len(planned.gone),
                              skipped=len(planned.plan.changes) + len(planned.plan.left_out))
            else:
                if saved is None and not auto_approve:
                    _confirm(signals)
                watch.begin(planned, todo, target)

                def replan(st: State) -> Planned:
                    # the re-plan is what is carried out from here: its problems are
                    # those the apply ends with (the summary's line, the exit status)
                    again = make_plan(loaded, st, strict=strict,
                                      connectors=watch.connect(loaded, holder),
                                      prune_only=kinds, rescan=rescan)
                    watch.planned(again.plan)
                    return again

                watch.finish(apply_with_retries(  # reconnect + re-plan on a dropped connection
                    planned, current, saved=saved, prune=deletes, parallel=parallel,
                    on_step=watch.on_step, on_mail=watch.on_mail, on_note=watch.on_note,
                    on_refused=watch.on_refused,
                    on_retry=functools.partial(_retrying, watch.errors), replan=replan,
                    sleep=watch.pause))
        finally:
            planned.close()
    if watch.summary.not_migrated:  # done, but not all the spec asks for: no exit 0 for that
        sys.exit(EXIT_NOT_MIGRATED)


def _retrying(errors: TextIO, exc: MailplanError, attempt: int, wait: float) -> None:
    """Warn of a retry, on apply's stderr (its going away stops the apply: ApplyWatch):
    the error without its hint (``run apply again``: the retry is what it asks for)."""
    click.echo(f"Warning: {escape_lines(exc.message)}\n  reconnecting and planning again in "
               f"{wait:g}s (retry {attempt})", file=errors)


def _confirm(signals: SignalStop) -> None:
    if not sys.stdin.isatty():
        raise Cancelled("refusing to apply without confirmation: stdin is not a terminal",
                        hint="review the plan, then use --auto-approve, or save it with plan "
                        "-o FILE and run apply FILE")
    try:
        answer = click.prompt("Do you want to perform these actions? Only 'yes' will be "
                              "accepted", default="", show_default=False)
    except click.Abort:  # click's answer to Ctrl-C (our Stopped) and to end of input
        click.echo()  # end the question's line: what follows starts a line of its own
        if signals.signum is not None:
            raise Stopped(signals.signum) from None
        raise Cancelled("apply cancelled: nothing was changed") from None
    if answer != "yes":
        raise Cancelled("apply cancelled: nothing was changed")


def _register_subcommands() -> None:
    from mailplan.cli_tools import init, show
    from mailplan.queue.cli import queue
    from mailplan.verify_cli import verify_command

    main.add_command(queue)
    main.add_command(init)
    main.add_command(show)
    main.add_command(verify_command, name="verify")


_register_subcommands()
