"""Stopping and starting qmail-send around changes to its queue.

qmail-send keeps the queue's state in memory; deleting or renaming files under it
makes it loop on missing files. So changes happen only while it is stopped. A
:class:`Control` says how to ask whether it runs and how to stop and start it:

* ``process`` (default): only looks for a ``qmail-send`` process (``pgrep -x``); it
  cannot stop anything, so changes are refused while qmail-send runs;
* ``svc``: daemontools (``svc -d``/``svc -u`` on a service directory, ``svstat``);
* ``systemctl``: a systemd unit (``systemctl stop``/``start``/``is-active``);
* ``custom``: the operator's own status, stop and start commands (status exit code 0
  means running), run through ``/bin/sh`` as given.

With svc and systemctl a ``qmail-send`` process seen by pgrep also counts as running, so
a qmail started some other way is never edited under.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailplan.connectors.base import Connector
from mailplan.errors import HostError, MailplanError
from mailplan.shell import join

METHODS = ("process", "svc", "systemctl", "custom")
_PGREP = "pgrep -x qmail-send >/dev/null"


class QmailRunning(HostError):
    """qmail-send runs and mailplan was not told how to stop it (or it did not stop)."""


@dataclass(frozen=True)
class Control:
    """How to find out whether qmail-send runs, and how to stop and start it."""

    method: str = "process"
    service: str = "/service/qmail-send"
    unit: str = "qmail"
    status_cmd: str | None = None
    stop_cmd: str | None = None
    start_cmd: str | None = None
    timeout: float = 30.0  # how long to wait for qmail-send to stop

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise MailplanError(f"unknown qmail-send control method {self.method!r}",
                                hint=f"use one of {', '.join(METHODS)}")
        if self.method == "custom" and not (self.status_cmd and self.stop_cmd
                                            and self.start_cmd):
            raise MailplanError("the custom control method needs --status-cmd, --stop-cmd "
                                "and --start-cmd",
                                hint="status exits 0 while qmail-send runs, e.g. "
                                "--status-cmd 'pgrep -x qmail-send'")

    def status(self) -> str:
        """Shell text exiting 0 while qmail-send runs."""
        if self.method == "svc":
            return f"{join(['svstat', self.service])} | grep -q ': up ' || {_PGREP}"
        if self.method == "systemctl":
            return f"{join(['systemctl', 'is-active', '--quiet', self.unit])} || {_PGREP}"
        if self.method == "custom":
            assert self.status_cmd is not None
            return self.status_cmd
        return _PGREP

    def stop(self) -> str | None:
        """Shell text stopping qmail-send, None if this method cannot."""
        if self.method == "svc":
            return join(["svc", "-d", self.service])
        if self.method == "systemctl":
            return join(["systemctl", "stop", self.unit])
        return self.stop_cmd if self.method == "custom" else None

    def start(self) -> str | None:
        """Shell text starting qmail-send again, None if this method cannot."""
        if self.method == "svc":
            return join(["svc", "-u", self.service])
        if self.method == "systemctl":
            return join(["systemctl", "start", self.unit])
        return self.start_cmd if self.method == "custom" else None

    def describe(self) -> str:
        """The method in words, for messages."""
        return {"process": "pgrep -x qmail-send (cannot stop it)",
                "svc": f"daemontools service {self.service}",
                "systemctl": f"systemd unit {self.unit}",
                "custom": "the custom commands"}[self.method]


def stop_and_wait(conn: Connector, control: Control) -> None:
    """Stop qmail-send and wait until the status says it is gone (one channel)."""
    timeout = control.timeout
    stop = control.stop()
    if stop is None:
        raise QmailRunning("qmail-send is running and the control method 'process' cannot "
                           "stop it; nothing was changed", host=conn.name, step="stop qmail-send",
                           hint="stop qmail-send yourself, or pass --control svc|systemctl|"
                           "custom so mailplan stops and restarts it")
    tries = max(1, int(timeout / 0.5))
    script = (f"( {stop}\n) </dev/null >/dev/null 2>&1 || exit 3\n"
              f"i=0; while ( {control.status()}\n) </dev/null >/dev/null 2>&1; do\n"
              f"  i=$((i+1)); [ $i -ge {tries} ] && exit 4; sleep 0.5\ndone\n")
    result = conn.run(script)
    if result.returncode == 3:
        raise HostError(f"stopping qmail-send via {control.describe()} failed; nothing was "
                        "changed", host=conn.name, step="stop qmail-send",
                        hint="run the stop command by hand to see its error")
    if result.returncode != 0:
        raise QmailRunning(f"qmail-send still runs {timeout:.0f} s after stopping it via "
                           f"{control.describe()}; nothing was changed", host=conn.name,
                           step="stop qmail-send")


def start(conn: Connector, control: Control) -> str | None:
    """Start qmail-send again; returns a warning instead of raising (the change is done)."""
    command = control.start()
    if command is None:
        return None
    # Output goes to a file: a start command that leaves a daemon holding our stdout
    # open would otherwise keep the channel from ever ending.
    result = conn.run(f'f=$(mktemp) || exit 1\n( {command}\n) </dev/null >"$f" 2>&1; rc=$?\n'
                      'head -c 2000 "$f" >&2; rm -f "$f"; exit $rc')
    if result.returncode != 0:
        return (f"starting qmail-send via {control.describe()} failed (exit "
                f"{result.returncode}): {result.stderr_text}; start it by hand")
    return None
