"""Print a plan the way terraform does: one line per change, symbols, a summary.

Secrets never reach this module: changes carry display values only, and sensitive
ones print ``(sensitive)``. Every text that can come from the source, the target or the
spec (names, folder paths, messages) is escaped (:func:`mailplan.text.escape`): a newline
or a terminal escape sequence in a folder name prints as ``\\n`` or ``\\x1b``. Colour is
used on terminals unless NO_COLOR is set or TERM is ``dumb`` (as apply's progress).
"""

from __future__ import annotations

import os
from typing import TextIO

from mailplan.desired import Problem
from mailplan.plan import PRUNE_NOTE, Change, Plan
from mailplan.prune_select import shown
from mailplan.text import escape

_COLOURS = {"+": "32", "~": "33", "-": "31", "!": "35"}


def use_colour(stream: TextIO) -> bool:
    """Colour only on a terminal that shows it (TERM is not ``dumb``: Emacs' shell
    buffer, a serial console, where apply's progress is plain lines too) and only when
    NO_COLOR is not set."""
    return (stream.isatty() and os.environ.get("TERM") != "dumb"
            and not os.environ.get("NO_COLOR"))


def _paint(symbol: str, text: str, colour: bool) -> str:
    return f"\033[{_COLOURS[symbol]}m{text}\033[0m" if colour else text


def change_line(change: Change) -> str:
    """The headline of one change."""
    if change.action == "update" and change.kind in ("password", "lock", "quota", "comment",
                                                     "catchall", "alias", "forward"):
        before = "(sensitive)" if change.sensitive else escape(str(change.before))
        after = "(sensitive)" if change.sensitive else escape(str(change.after))
        return f"{change.symbol} {change.kind} {escape(change.address)}: {before} -> {after}"
    if change.kind == "flags":  # "~ flags a@b INBOX: 12 message(s) gain flags (S 10, R 2)"
        return f"{change.symbol} {change.kind} {escape(change.address)}: {change.after}"
    return f"{change.symbol} {change.kind} {escape(change.address)}"


def problem_line(p: Problem) -> str:
    """``user@domain: message`` (or ``domain: message``) of a problem or warning,
    escaped for a terminal or a log."""
    return escape(f"{p.user}@{p.domain}" if p.user else p.domain) + f": {escape(p.message)}"


def render_plan(plan: Plan, *, target: str, colour: bool = False, verbose: bool = False,
                prune: bool = False) -> str:
    """The whole plan as text; ``prune``: shown by an apply given ``--prune``, which
    carries out its deletions. A plan made with ``--prune-only`` says which deletions
    it selected (their reasons do) and lists those it left out, unpainted: none of them
    is applied."""
    sections = (_changes(plan, target, colour, prune), _left_out(plan),
                *_problems(plan, colour), _left_alone(plan),
                _unchanged(plan) if verbose else [])
    out = [line for section in sections if section for line in (*section, "")]
    out.append(_summary(plan, prune))
    return "\n".join(out) + "\n"


def _changes(plan: Plan, target: str, colour: bool, prune: bool) -> list[str]:
    """Each change's headline, and under it what it creates or why it is made."""
    if not plan.changes:
        return []
    out = [f"mailplan will make these changes on {escape(target)}:", ""]
    for change in plan.changes:
        out.append("  " + _paint(change.symbol, change_line(change), colour))
        detail = change.after if change.action == "create" else change.reason
        if detail and prune and change.action == "delete":
            detail = str(detail).replace(PRUNE_NOTE, "(applied: --prune was given)")
        if detail and change.action != "update":
            out.append(f"      {escape(str(detail))}")
        elif change.reason and change.kind in ("password", "lock"):
            out.append(f"      {escape(change.reason)}")
    return out


def _left_out(plan: Plan) -> list[str]:
    """The deletions a ``--prune-only`` plan did not select, unpainted."""
    if not plan.left_out:
        return []
    out = [f"Deletions left out ({len(plan.left_out)}, not selected by "
           f"{shown(plan.prune_only or ())}; not applied):"]
    for change in plan.left_out:
        out.append(f"  {change_line(change)}")
        if change.reason:
            out.append(f"      {escape(change.reason)}")
    return out


def _problems(plan: Plan, colour: bool) -> list[list[str]]:
    """The problems (not migrated), then the warnings (migrated all the same)."""
    return [[title, *("  " + _paint("!", f"! {problem_line(p)}", colour) for p in listed)]
            for title, listed in (
                ("Problems (these are not migrated):", plan.problems),
                ("Warnings (migrated all the same; look at them):", plan.warnings))
            if listed]


def _left_alone(plan: Plan) -> list[str]:
    """Accounts on the target that neither the spec nor mailplan made."""
    if not plan.left_alone:
        return []
    return [f"Left alone ({len(plan.left_alone)} on the target, not in the spec, "
            "not created by mailplan):",
            *(f"  = {escape(f'{n.user}@{n.domain}')}" for n in plan.left_alone)]


def _unchanged(plan: Plan) -> list[str]:
    """What needs nothing done, and why (shown with ``verbose``)."""
    if not plan.noops:
        return []
    return ["Unchanged:", *(
        f"  = {escape(f'{n.user}@{n.domain}' if n.user else n.domain)}: {escape(n.reason)}"
        for n in plan.noops)]


def _summary(plan: Plan, prune: bool) -> str:
    """The last line: the counts, whether deletions are applied, and how the mailboxes
    were read where ``--rescan`` read them whole."""
    line = _counts(plan, prune)
    if plan.rescan:
        line += (" Every mailbox was read whole (--rescan): flags set on the old server "
                 "since the import are included.")
    return line


def _counts(plan: Plan, prune: bool) -> str:
    counts = plan.counts()
    if plan.changes:
        line = (f"Plan: {counts['create']} to create, {counts['update']} to change, "
                f"{counts['delete']} to destroy.")
        if plan.prune_only is not None:
            line += (f" Deletions: only those selected with {shown(plan.prune_only)} are "
                     "applied" + (f"; {len(plan.left_out)} more left out (listed above)."
                                  if plan.left_out else "."))
        elif counts["delete"]:
            line += (" Deletions are applied: --prune was given." if prune
                     else " Deletions are applied only with --prune.")
        return line
    if plan.left_out:
        return (f"No changes selected: the plan's {len(plan.left_out)} deletion(s) are "
                f"left out (not selected by {shown(plan.prune_only or ())}).")
    return f"No changes. The target matches the spec ({len(plan.noops)} items checked)."
