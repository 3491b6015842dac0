"""Selective pruning: ``--prune-only KIND`` chooses which of the plan's deletions apply
carries out, where ``--prune`` carries out every one.

The kinds are those mailplan deletes (:data:`PRUNABLE`): ``alias`` (valias -d),
``forward`` (a mailbox's .qmail mailplan wrote from a ~/.forward), ``user`` (vdeluser:
the Maildir, mail included) and ``domain`` (vdeldomain: every user of the domain and
their mail). Alias domains are only ever added, so there is none to select. The
dependencies, decided here and said in the plan:

- ``domain`` is refused without ``user``: a domain's deletion deletes its users and
  their mail, which only ``user`` selects;
- the deletion of a forward of a user whose deletion is selected goes with it
  (vdeluser removes the user's directory, the .qmail in it): it is applied too, and
  its reason says why.

:func:`select_deletions` keeps the selected deletions in the plan's changes, rewrites
their reason's "(applied only with --prune)" to say they are selected, and moves every
other deletion to :attr:`~mailplan.plan.Plan.left_out`, with a reason saying how to
select it. A saved plan records the selection (``prune_only``), and apply makes its
fresh plan with the same one, so the change-by-change comparison of
:func:`~mailplan.engine.check_saved` covers it: a plan saved with one selection is
never applied as another (:func:`saved_selection` refuses the options that would, and a
file whose deletions are not those its recorded selection selects).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from mailplan.errors import MailplanError, StalePlanError
from mailplan.plan import PRUNE_NOTE, Change, Plan
from mailplan.text import escape

#: the kinds of change mailplan deletes, in the order a plan runs their deletions
PRUNABLE = ("alias", "forward", "user", "domain")
#: the option's name, as its errors and notes give it
OPTION = "--prune-only"


def parse_kinds(values: Iterable[str]) -> tuple[str, ...] | None:
    """The kinds given to ``--prune-only`` (repeated, comma-separated, ``-`` or ``_``
    alike), in :data:`PRUNABLE` order; None when none was given. Raises ``ValueError``
    with the message for the option's error."""
    given: set[str] = set()
    for value in values:
        for raw in value.split(","):
            kind = raw.strip().lower().replace("-", "_")
            if not kind:
                raise ValueError(f"{value!r}: an empty kind; give KIND, KIND,KIND or the "
                                 f"option again, KIND one of {', '.join(PRUNABLE)}")
            if kind == "alias_domain":
                raise ValueError(f"{raw.strip()!r}: mailplan never deletes an alias domain "
                                 "(vdeldomain of its real domain removes it with that "
                                 f"domain), so there is none to select; choose from "
                                 f"{', '.join(PRUNABLE)}")
            if kind not in PRUNABLE:
                raise ValueError(f"{raw.strip()!r} is not a kind of deletion; choose from "
                                 f"{', '.join(PRUNABLE)} (comma-separated, or the option "
                                 "repeated)")
            given.add(kind)
    if not given:
        return None
    if "domain" in given and "user" not in given:
        raise ValueError("'domain' needs 'user' too: vdeldomain deletes a domain with every "
                         f"user in it and their mail; give {OPTION} user,domain to delete "
                         "domains")
    return tuple(k for k in PRUNABLE if k in given)


def shown(kinds: Iterable[str]) -> str:
    """The selection as the option takes it: ``--prune-only alias,forward``."""
    return f"{OPTION} {','.join(kinds)}"


def _noted(change: Change, note: str) -> Change:
    """``change`` with its reason's "(applied only with --prune)" replaced by ``note``."""
    reason = (change.reason.replace(PRUNE_NOTE, note) if PRUNE_NOTE in change.reason
              else f"{change.reason} {note}".strip())
    return replace(change, reason=reason)


def needed(kinds: Iterable[str]) -> str:
    """The selection that applies deletions of ``kinds``: those kinds, with ``user`` for
    a domain (which needs it), as the option takes them (``user,domain``)."""
    wanted = set(kinds)
    if "domain" in wanted:
        wanted.add("user")
    return ",".join(k for k in PRUNABLE if k in wanted)


def left_out_note(kind: str, kinds: tuple[str, ...]) -> str:
    """How a deletion not selected ends its reason: what would apply it."""
    return (f"(left out: {kind} is not selected by {shown(kinds)}; {OPTION} "
            f"{needed([kind])}, or --prune, applies it)")


def left_out_text(skipped: list[Change], selection: tuple[str, ...] | None) -> str:
    """What apply says of the deletions it left out (``selection``: its --prune-only)."""
    # --prune is no mere switch: say what it deletes, mail included
    mail = (", deleting the Maildirs of the users and domains among them, mail "
            "included" if any(c.kind in ("user", "domain") for c in skipped) else "")
    if selection is None:
        return (f"{len(skipped)} deletion(s) left out (the plan's '-' lines): "
                f"--prune applies them{mail}.")
    return (f"{len(skipped)} deletion(s) left out (not selected by {shown(selection)}): "
            f"{OPTION} {needed(c.kind for c in skipped)}, or --prune, applies them{mail}.")


def select_deletions(plan: Plan, kinds: tuple[str, ...] | None) -> None:
    """Keep in ``plan`` only the deletions ``kinds`` selects (and the forwards that go
    with a selected user's deletion); move the others to ``plan.left_out``; record the
    selection. ``kinds`` None: the plan is left as it is (every deletion in it, applied
    with ``--prune`` only)."""
    if kinds is None:
        return
    users_gone = _users_gone(plan.changes, kinds)
    kept: list[Change] = []
    left: list[Change] = []
    for change in plan.changes:
        if change.action != "delete":
            kept.append(change)
        elif change.kind in kinds:
            kept.append(_noted(change, f"(applied: selected with {shown(kinds)})"))
        elif _with_user(change, users_gone):
            kept.append(_noted(change, "(applied with the user's deletion, selected with "
                               f"{shown(kinds)}: vdeluser removes the user's directory, "
                               "this .qmail in it)"))
        else:
            left.append(_noted(change, left_out_note(change.kind, kinds)))
    plan.changes = kept
    plan.left_out = left
    plan.prune_only = kinds


def _users_gone(changes: list[Change], kinds: tuple[str, ...]) -> set[tuple[str, str | None]]:
    """The users whose deletion ``kinds`` selects."""
    return {(c.domain, c.user) for c in changes
            if c.action == "delete" and c.kind == "user" and "user" in kinds}


def _with_user(change: Change, users_gone: set[tuple[str, str | None]]) -> bool:
    """Whether ``change`` deletes the forward of a user whose deletion is selected."""
    return change.kind == "forward" and (change.domain, change.user) in users_gone


def _not_as_selected(saved: Plan) -> Change | None:
    """A deletion of the saved plan that its selection puts on the other side (a file
    changed since it was saved), if any."""
    if saved.prune_only is None:
        return next(iter(saved.left_out), None)
    users_gone = _users_gone(saved.changes, saved.prune_only)
    for change in saved.changes:
        if change.action == "delete" and change.kind not in saved.prune_only \
                and not _with_user(change, users_gone):
            return change
    return next((c for c in saved.left_out if c.kind in saved.prune_only), None)


def saved_selection(saved: Plan, *, prune: bool, kinds: tuple[str, ...] | None
                    ) -> tuple[str, ...] | None:
    """The selection to apply a saved plan with: the one it was saved with. Refuses
    ``--prune`` or another ``--prune-only`` on a plan saved with a selection, and
    ``--prune-only`` on one saved without (whose deletions were reviewed as "applied only
    with --prune"). Refuses a plan whose deletions are not those its selection selects
    (its file was changed since it was saved)."""
    odd = _not_as_selected(saved)
    if odd is not None:
        how = "without --prune-only" if saved.prune_only is None else \
            f"with {shown(saved.prune_only)}"
        raise StalePlanError(f"this plan's deletions are not those of a plan saved {how} "
                             f"({odd.symbol} {odd.kind} {escape(odd.address)}): the file was "
                             "changed since it was saved", hint="run `mailplan plan` again "
                             "and review the new plan")
    if saved.prune_only is None:
        if kinds is not None:
            raise MailplanError(f"this plan was saved without {OPTION}: {shown(kinds)} "
                                "would apply only some of the deletions it holds",
                                hint=f"save a plan with them selected (`mailplan plan SPEC "
                                f"{shown(kinds)} -o FILE`) and apply that; or apply this one "
                                "without its deletions, or with all of them (--prune)")
        return None
    if prune or (kinds is not None and kinds != saved.prune_only):
        asked = "--prune" if prune else shown(kinds or ())
        raise MailplanError(f"this plan was saved with {shown(saved.prune_only)}: it is "
                            f"applied with the deletions it holds, not as {asked} asks",
                            hint="apply it as saved, without --prune or " + OPTION +
                            "; for other deletions, plan again with the selection you want")
    return saved.prune_only
