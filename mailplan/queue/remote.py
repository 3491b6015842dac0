"""Run the queue agent (:mod:`mailplan.queue.agent`) on a host over one channel.

The command line is fixed and fully quoted: an optional qmail-send status command whose
exit code is handed to the agent, then the host's Python (``python`` in the spec; a
missing or too old one is reported as such, :mod:`mailplan.interpreter`) with a two-line
bootstrap that reads exactly the agent's source from stdin and runs it: the source of
:mod:`mailplan.queue.headerfields`, then the agent's, each compiled on its own and run
in one namespace. Everything after the source on stdin (the JSON actions of ``apply``)
is the agent's input.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from importlib import resources

from mailplan import interpreter
from mailplan.connectors.base import DEFAULT_PYTHON, CommandResult, Connector, Process
from mailplan.errors import HostError
from mailplan.shell import join

_BOOT = ("for n in sys.argv[1].split(','):"
         "exec(compile(sys.stdin.buffer.read(int(n)),'mailplan-queue-agent','exec'))")
#: The modules the agent is made of, in the order the host runs them.
PARTS = ("headerfields.py", "agent.py")
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
              payload: bytes = b"", status_command: str | None = None, step: str,
              read: Callable[[Process], None] | None = None) -> CommandResult:
    """Run the agent and fail with a clear message when it could not run at all.

    ``read``: reads the agent's stdout as it arrives (``read`` of
    :meth:`~mailplan.connectors.base.Connector.run`); whether the agent printed
    anything at all is then for it to tell (:func:`agent_failed`)."""
    command = agent_command(mode, queue_dir, extra, status_command, conn.python)
    result = conn.run(command, stdin=agent_source() + payload, read=read)
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


def run_actions(conn: Connector, queue_dir: str, actions: list[dict[str, object]],
                *, step: str, status_command: str | None = None) -> list[dict[str, object]]:
    """Carry out ``actions`` on the host in one channel; one outcome per action.

    With ``status_command`` (qmail-send's), it runs first in the same channel and
    nothing is changed unless it says qmail-send is stopped (exit 1)."""
    if not actions:
        return []
    payload = json.dumps(actions).encode()
    result = run_agent(conn, "apply", queue_dir, payload=payload,
                       status_command=status_command, step=step)
    outcomes = [json.loads(line) for line in result.stdout.decode().splitlines() if line]
    if len(outcomes) != len(actions):
        raise HostError(f"the queue agent reported {len(outcomes)} outcomes for "
                        f"{len(actions)} actions: {result.stderr_text}", host=conn.name,
                        step=step)
    return outcomes
