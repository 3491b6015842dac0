"""Run the queue agent (:mod:`mailplan.queue.agent`) on a host over one channel.

The command line is fixed and fully quoted: a check that ``python3`` exists, an optional
qmail-send status command whose exit code is handed to the agent, and ``python3 -c``
with a two-line bootstrap that reads exactly the agent's source from stdin and runs it.
Everything after the source on stdin (the JSON actions of ``apply``) is the agent's input.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from mailplan.connectors.base import CommandResult, Connector
from mailplan.errors import HostError
from mailplan.shell import join

_BOOT = ("import sys;exec(compile(sys.stdin.buffer.read(int(sys.argv[1])),"
         "'mailplan-queue-agent','exec'))")
_NO_PYTHON = 127


@cache
def agent_source() -> bytes:
    """The agent program as sent to hosts."""
    return resources.files("mailplan.queue").joinpath("agent.py").read_bytes()


def agent_command(mode: str, queue_dir: str, extra: tuple[str, ...] = (),
                  status_command: str | None = None) -> str:
    """The shell line running the agent (its source comes on stdin).

    The agent gets ``mode queue_dir STATUS *extra``, STATUS being the exit code of
    ``status_command`` run just before (``-`` when there is none).
    """
    source = agent_source()
    # Without python3, drain stdin first so the sender does not die of a broken pipe.
    probe = ("command -v python3 >/dev/null 2>&1 || { echo 'python3 not found' >&2; "
             f"while read -r _; do :; done; exit {_NO_PYTHON}; }}; ")
    status = "st=-"
    if status_command:
        status = f"( {status_command}\n) </dev/null >/dev/null 2>&1; st=$?"
    head = join(["python3", "-c", _BOOT, str(len(source)), mode, queue_dir])
    # "$st" is the only unquoted expansion: the status command's exit code.
    return f'{probe}{status}\n{head} "$st" {join(extra)}'.rstrip()


def run_agent(conn: Connector, mode: str, queue_dir: str, extra: tuple[str, ...] = (), *,
              payload: bytes = b"", status_command: str | None = None,
              step: str) -> CommandResult:
    """Run the agent and fail with a clear message when it could not run at all."""
    command = agent_command(mode, queue_dir, extra, status_command)
    result = conn.run(command, stdin=agent_source() + payload)
    if result.returncode == _NO_PYTHON and b"python3 not found" in result.stderr:
        raise HostError("python3 is not installed, and mailplan reads the qmail queue with a "
                        "small python3 program", host=conn.name, step=step,
                        hint="install python3 on the host (apt-get install python3-minimal)")
    if result.stdout == b"" and result.returncode != 0:
        raise HostError(f"the queue agent failed (exit {result.returncode}): "
                        f"{result.stderr_text or 'no message'}", host=conn.name, step=step)
    return result


def run_actions(conn: Connector, queue_dir: str, actions: list[dict[str, object]],
                *, step: str) -> list[dict[str, object]]:
    """Carry out ``actions`` on the host in one channel; one outcome per action."""
    if not actions:
        return []
    payload = json.dumps(actions).encode()
    result = run_agent(conn, "apply", queue_dir, payload=payload, step=step)
    outcomes = [json.loads(line) for line in result.stdout.decode().splitlines() if line]
    if len(outcomes) != len(actions):
        raise HostError(f"the queue agent reported {len(outcomes)} outcomes for "
                        f"{len(actions)} actions: {result.stderr_text}", host=conn.name,
                        step=step)
    return outcomes
