"""Run the queue agent (:mod:`mailplan.queue.agent`) on a host over one channel.

The command line is fixed and fully quoted: an optional qmail-send status command whose
exit code is handed to the agent, then the host's Python (``python`` in the spec; a
missing or too old one is reported as such, :mod:`mailplan.interpreter`) with a two-line
bootstrap that reads exactly the agent's source from stdin and runs it: the source of
:mod:`mailplan.queue.headerfields`, then :mod:`mailplan.queue.actions` (apply mode),
then the agent's, each compiled on its own and run in one namespace. Everything after
the source on stdin (the actions of ``apply``) is the agent's input.

The actions of a change go one JSON object a line, written while they are made and
while the agent answers with one line per action, which is parsed as it arrives and
kept as a count and the failed ones (:class:`Outcomes`): a delete of a spam backlog of
a hundred thousand messages is some 300,000 actions, which mailplan held three times
over (the actions, their JSON, the agent's answers) when they went whole.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cache
from importlib import resources

from mailplan import interpreter
from mailplan.connectors.base import DEFAULT_PYTHON, CommandResult, Connector, Process
from mailplan.errors import HostError
from mailplan.shell import join

_BOOT = ("for n in sys.argv[1].split(','):"
         "exec(compile(sys.stdin.buffer.read(int(n)),'mailplan-queue-agent','exec'))")
#: The modules the agent is made of, in the order the host runs them.
PARTS = ("headerfields.py", "actions.py", "agent.py")
PROGRAM = "mailplan's qmail queue reader"


@cache
def agent_parts() -> tuple[bytes, ...]:
    """The sources of :data:`PARTS`, as sent to hosts."""
    return tuple(resources.files("mailplan.queue").joinpath(name).read_bytes()
                 for name in PARTS)


def agent_source() -> bytes:
    """The agent program as sent to hosts (its parts one after the other)."""
    return b"".join(agent_parts())


def agent_command(mode: str, queue_dir: str, extra: tuple[str, ...] = (),
                  status_command: str | None = None,
                  python: str = DEFAULT_PYTHON) -> str:
    """The shell line running the agent with ``python`` (its source comes on stdin).

    The agent gets ``mode queue_dir STATUS *extra``, STATUS being the exit code of
    ``status_command`` run just before (``-`` when there is none).
    """
    sizes = ",".join(str(len(part)) for part in agent_parts())
    status = "st=-"
    if status_command:
        status = f"( {status_command}\n) </dev/null >/dev/null 2>&1; st=$?"
    # "$st" is the only unquoted expansion: the status command's exit code. Without the
    # interpreter, stdin is drained first so the sender does not die of a broken pipe.
    return interpreter.launch(python, _BOOT, [sizes, mode, queue_dir],
                              program=PROGRAM, drain=True, before=status + "\n",
                              raw_args=f'"$st" {join(extra)}'.rstrip())


def run_agent(conn: Connector, mode: str, queue_dir: str, extra: tuple[str, ...] = (), *,
              payload: bytes | Iterable[bytes] = b"", status_command: str | None = None,
              step: str, read: Callable[[Process], None] | None = None) -> CommandResult:
    """Run the agent and fail with a clear message when it could not run at all.

    ``read``: reads the agent's stdout as it arrives (``read`` of
    :meth:`~mailplan.connectors.base.Connector.run`); whether the agent printed
    anything at all is then for it to tell (:func:`agent_failed`). ``payload`` in
    pieces (with ``read`` only) is written as they are made."""
    command = agent_command(mode, queue_dir, extra, status_command, conn.python)
    stdin = agent_source() + payload if isinstance(payload, bytes) else \
        itertools.chain((agent_source(),), payload)
    result = conn.run(command, stdin=stdin, read=read)
    said = interpreter.complaint(result.stderr_text)
    if result.returncode != 0 and said is not None and interpreter.about_interpreter(said):
        raise HostError(said, host=conn.name, step=step, hint=interpreter.hint(conn))
    if read is None and result.stdout == b"" and result.returncode != 0:
        raise agent_failed(conn, result, step)
    return result


def agent_failed(conn: Connector, result: CommandResult, step: str) -> HostError:
    """The error for an agent that printed nothing and failed."""
    return HostError(f"the queue agent failed (exit {result.returncode}): "
                     f"{result.stderr_text or 'no message'}", host=conn.name, step=step)


class Outcomes(Sequence[dict[str, object]]):
    """The agent's outcome of each action, in order (``{"i": index, "ok": True}``, or
    with ``ok`` false an ``error`` and, for a file already gone, ``gone``), kept as
    a count and the failed ones only: a successful action costs nothing here."""

    def __init__(self) -> None:
        self.taken = 0
        #: the outcomes that are not ``ok``, by the index of their action
        self.failed: dict[int, dict[str, object]] = {}
        #: the first line that is no outcome of the next action (the agent broke)
        self.garbled: bytes | None = None

    def take(self, line: bytes) -> None:
        """One line of the agent's answer: the outcome of the next action."""
        if self.garbled is not None:
            return
        try:
            outcome = json.loads(line)
            if outcome["i"] != self.taken or outcome["ok"] not in (True, False):
                raise ValueError("not the next action's outcome")
        except (ValueError, KeyError, TypeError):
            self.garbled = line[:200]
            return
        if outcome["ok"] is False:
            self.failed[self.taken] = outcome
        self.taken += 1

    def __len__(self) -> int:
        return self.taken

    def __getitem__(self, index: int) -> dict[str, object]:  # type: ignore[override]
        if index < 0:
            index += self.taken
        if not 0 <= index < self.taken:
            raise IndexError(index)
        return self.failed.get(index) or {"i": index, "ok": True}


class _Lines:
    """The actions as the agent reads them: JSON lines written in pieces of about 64 kB
    while they are made, then the end mark with their count (without it the agent
    leaves out the last message's batch, whose actions may not all have arrived)."""

    def __init__(self, actions: Iterable[dict[str, object]]) -> None:
        self._actions = actions
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        piece: list[str] = []
        size = 0
        for action in self._actions:
            line = json.dumps(action) + "\n"
            piece.append(line)
            size += len(line)
            self.sent += 1
            if size >= 1 << 16:
                yield "".join(piece).encode()
                piece, size = [], 0
        piece.append(json.dumps({"end": self.sent}) + "\n")
        yield "".join(piece).encode()


def run_actions(conn: Connector, queue_dir: str, actions: Iterable[dict[str, object]],
                *, step: str, status_command: str | None = None) -> Outcomes:
    """Carry out ``actions`` on the host in one channel; one outcome per action.

    With ``status_command`` (qmail-send's), it runs first in the same channel and
    nothing is changed unless it says qmail-send is stopped (exit 1). The actions are
    sent as they are made and the outcomes read as they arrive (see the module's
    docstring)."""
    outcomes = Outcomes()
    actions = iter(actions)
    first = next(actions, None)
    if first is None:
        return outcomes
    lines = _Lines(itertools.chain((first,), actions))

    def read(proc: Process) -> None:
        for line in iter(proc.readline, b""):
            outcomes.take(line)

    result = run_agent(conn, "apply", queue_dir, payload=lines, status_command=status_command,
                       step=step, read=read)
    if outcomes.taken == 0 and outcomes.garbled is None and result.returncode != 0:
        raise agent_failed(conn, result, step)  # refused (qmail-send runs), or broke
    if outcomes.garbled is not None or outcomes.taken != lines.sent:
        said = "" if outcomes.garbled is None else \
            f" (then {outcomes.garbled.decode('utf-8', 'replace')!r})"
        raise HostError(f"the queue agent reported {outcomes.taken} outcomes for "
                        f"{lines.sent} actions{said}: {result.stderr_text}", host=conn.name,
                        step=step)
    return outcomes
