"""Apply of one routing change (alias, forward, alias domain) on the target.

:func:`execute_routing` carries out a change planned by :mod:`mailplan.routing.integrate`
through ``valias``, ``vaddaliasdomain`` and the pure layer's write script, then reads the
result back (vpopmail exits 0 on failures) and returns the journal effect
(:mod:`mailplan.routing.managed`), so ``--prune`` only removes what mailplan created.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mailplan.connectors.base import CommandResult
from mailplan.errors import StepFailed
from mailplan.plan import Change
from mailplan.routing.commands import commands_for
from mailplan.routing.diff import (
    AddAlias,
    AddAliasDomain,
    ChangeAlias,
    RemoveAlias,
    RemoveForward,
    SetForward,
    same_lines,
)
from mailplan.routing.facts import parse_dot_qmail, parse_valias_list
from mailplan.routing.managed import effect
from mailplan.routing.model import RoutingError
from mailplan.secret import mask_output
from mailplan.shell import Cmd

if TYPE_CHECKING:
    from mailplan.commands import Context
    from mailplan.remote import ShellSession


def vpopmail_tool(vpop: str, name: str) -> str:
    """The path of one of vpopmail's programs."""
    return f"{vpop.rstrip('/')}/bin/{name}"


def show_lines(lines: tuple[str, ...]) -> str:
    """Destinations or .qmail lines as the plan and the errors show them."""
    return ", ".join(lines) if lines else "(nothing)"


class _Step:
    """Runs and verifies the commands of one routing change."""

    def __init__(self, session: ShellSession, ctx: Context, change: Change) -> None:
        self.session, self.ctx, self.change = session, ctx, change

    def fail(self, message: str) -> StepFailed:
        return StepFailed(message, host=self.ctx.host,
                          step=f"{self.change.symbol} {self.change.kind} {self.change.address}")

    def run(self, argv: Sequence[str], *, quiet: bool = True) -> CommandResult:
        """Run one command; exit status and (for quiet tools) any stdout mean failure."""
        res = self.session.run(Cmd.of(*argv).render())
        out = res.stdout.decode("utf-8", "replace").strip()
        if res.returncode != 0 or (quiet and out):
            words = mask_output(out or res.stderr_text.strip() or "no output").split("\n")[0]
            words = words[:300]
            program = argv[0].rsplit("/", 1)[-1]
            if program == "sh":
                program = "writing the file"
            raise self.fail(f"{program} failed (exit {res.returncode}): {words}")
        return res

    def alias_lines(self, address: str) -> tuple[str, ...] | None:
        res = self.session.run(Cmd.of(vpopmail_tool(self.ctx.vpopmail_dir, "valias"), "-s",
                                      address).render())
        text = res.stdout.decode("utf-8", "replace")
        if res.returncode != 0:
            if "No aliases" in text:
                return None
            raise self.fail(f"valias -s {address} failed (exit {res.returncode}): "
                            f"{text.strip()[:300]}")
        try:
            return next(iter(parse_valias_list(text, 0).values()), None)
        except RoutingError as exc:
            raise self.fail(exc.message) from None

    def dot_qmail(self, address: str) -> tuple[str, ...] | None:
        res = self.run([vpopmail_tool(self.ctx.vpopmail_dir, "vuserinfo"), "-d", address],
                       quiet=False)
        path = res.stdout.decode("utf-8", "replace").split("\n", 1)[0].rstrip("/") + "/.qmail"
        if self.session.run(Cmd.of("test", "-e", path).render()).returncode != 0:
            return None
        content = self.run(["cat", "--", path], quiet=False).stdout.decode("utf-8", "replace")
        return parse_dot_qmail(content)


def routing_claim(ctx: Context, change: Change) -> dict[str, Any] | None:
    """What a routing step that creates something will record once done (its effect),
    or None: the apply journals it before the step runs (``State.intend``)."""
    actions = getattr(ctx.desired, "routing", None)
    action = actions.get(change.id) if isinstance(actions, dict) else None
    if isinstance(action, AddAlias):
        return effect("alias", action.domain, action.name, created=True)
    if isinstance(action, SetForward) and action.current is None:
        return effect("forward", action.domain, action.mailbox, created=True)
    if isinstance(action, AddAliasDomain):
        return effect("alias_domain", action.domain, action.alias_domain, created=True)
    return None


def execute_routing(session: ShellSession, ctx: Context, change: Change) -> dict[str, Any]:
    """Carry out one routing change, read it back, and return its journal effect."""
    actions = getattr(ctx.desired, "routing", None)
    action = actions.get(change.id) if isinstance(actions, dict) else None
    step = _Step(session, ctx, change)
    if action is None:
        raise step.fail("internal: no routing action planned for this change")
    for argv in commands_for(action, ctx.vpopmail_dir.rstrip("/")):
        step.run(argv)
    if isinstance(action, AddAlias | ChangeAlias | RemoveAlias):
        address = f"{action.name}@{action.domain}"
        got = step.alias_lines(address)
        if isinstance(action, RemoveAlias):
            if got is not None:
                raise step.fail(f"valias -d reported success but {address} still exists")
            return effect("alias", action.domain, action.name, deleted=True)
        if got is None or not same_lines(action.destinations, got):
            raise step.fail(f"valias reported success but {address} delivers to "
                            f"{show_lines(got or ())}, not {show_lines(action.destinations)}")
        return effect("alias", action.domain, action.name,
                      created=isinstance(action, AddAlias), lines=got)
    if isinstance(action, SetForward | RemoveForward):
        address = f"{action.mailbox}@{action.domain}"
        got = step.dot_qmail(address)
        if isinstance(action, RemoveForward):
            if got is not None:
                raise step.fail(f"the .qmail of {address} is still there after removing it")
            return effect("forward", action.domain, action.mailbox, deleted=True)
        if got is None or not same_lines(action.lines, got):
            raise step.fail(f"the .qmail of {address} holds {show_lines(got or ())}, not "
                            f"{show_lines(action.lines)}")
        return effect("forward", action.domain, action.mailbox,
                      created=action.current is None, lines=got)
    assert isinstance(action, AddAliasDomain)
    res = session.run(Cmd.of(vpopmail_tool(ctx.vpopmail_dir, "vdominfo"), "-n", "-d",
                             action.alias_domain).render())
    real = res.stdout.decode("utf-8", "replace").split("\n", 1)[0].strip()
    if res.returncode != 0 or real != action.domain:
        raise step.fail(f"vaddaliasdomain reported success but vdominfo says "
                        f"{action.alias_domain} is {real or 'unknown'!r}, not an alias of "
                        f"{action.domain}")
    return effect("alias_domain", action.domain, action.alias_domain, created=True)
