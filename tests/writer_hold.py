"""Hold a mail import at a chosen sync of the Maildir writer: a fault lands there, not
after a sleep.

:func:`writer_hold` makes a wrapper to name as a target host's ``python``. It runs
every program as the real interpreter would; while the hold is armed
(:meth:`WriterHold.arm`), a writer agent's input passes through this module, run as a
relay, which forwards the frames as they come. At the armed agent's ``at``-th sync
request (an ``S`` frame) the first relay to get there claims the hold (one per arming)
and holds that frame and all input after it: it is forwarded once the test releases the
hold (:meth:`WriterHold.release`), and dropped if the input ends first (mailplan killed,
or its connection cut). A sync is asked for only once the syncs before it were
acknowledged and journaled (:mod:`mailplan.mail.convert`), so while held, the batches
before are durable and journaled and nothing after them is visible on the target.

The relay needs the standard library and the writer's frame layout only.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __name__ == "__main__":  # run as the relay: this checkout's frame layout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailplan.mail.writer.proto import AGENT_MARK, HEADER, write_all  # noqa: E402

CHUNK = 1 << 16


@dataclass(frozen=True)
class WriterHold:
    """The wrapper (``python``) and the files the relays and the test share."""

    python: Path
    armed: Path  #: holds the sync number to stop at; a relay's claim renames it ``held``
    held: Path  #: there while a relay holds a sync; removing it releases the hold

    def arm(self, at: int) -> None:
        """Hold the ``at``-th sync request of the next writer agent that asks for that
        many (counting each agent's own from 1)."""
        self.armed.write_text(str(at))

    def wait(self, proc: subprocess.Popen, timeout: float = 120) -> None:
        """Return once a relay holds a sync; fail when ``proc`` (the apply) ended or
        ``timeout`` (a bound for a hang, not a pace) passed first."""
        deadline = time.monotonic() + timeout
        while not self.held.exists():
            if proc.poll() is not None:
                raise AssertionError(f"apply exited {proc.returncode} before the writer "
                                     "asked for the sync to hold")
            if time.monotonic() > deadline:
                raise AssertionError(f"no sync to hold within {timeout} s")
            time.sleep(0.005)

    def release(self) -> None:
        """Let the held sync (and what came after it) through."""
        self.held.unlink()


def writer_hold(directory: Path) -> WriterHold:
    """A hold whose wrapper and files live in ``directory``. The wrapper runs the
    programs with the Python the tests give them (MAILPLAN_TEST_PYTHON, else this one);
    the relay runs with this one."""
    from migration import TEST_PYTHON  # not in the relay: it needs the frame layout only

    python = TEST_PYTHON or sys.executable
    hold = WriterHold(directory / "python", directory / "hold-armed", directory / "hold-held")
    mark = AGENT_MARK.decode()
    hold.python.write_text(
        "#!/bin/sh\n"
        f'if [ -e "{hold.armed}" ]; then case "$*" in *"{mark}"*)\n'
        f'    "{sys.executable}" "{Path(__file__).resolve()}" "{hold.armed}" "{hold.held}" '
        f'| "{python}" "$@"; exit $?;;\nesac; fi\n'
        f'exec "{python}" "$@"\n')
    hold.python.chmod(0o755)
    return hold


def relay(armed: Path, held: Path) -> None:
    """Copy standard input to standard output, frame by frame, holding at the armed sync
    (see the module docstring)."""
    try:
        at = int(armed.read_text())
    except (FileNotFoundError, ValueError):
        at = 0  # disarmed (claimed) meanwhile: copy only
    buf, syncs = bytearray(), 0
    while at:
        pos = 0
        while len(buf) - pos >= HEADER.size:
            kind, length = HEADER.unpack_from(buf, pos)
            end = pos + HEADER.size + length
            if end > len(buf):
                break
            if kind == b"S":
                syncs += 1
                if syncs == at:
                    at = 0  # held here, or by another relay: copy only from here on
                    if _claim(armed, held):
                        write_all(1, buf[:pos])
                        del buf[:pos]
                        if not _held(buf, held):
                            return  # the sender is gone: the held sync goes nowhere
                    break
            pos = end
        if not at:
            break
        write_all(1, buf[:pos])
        del buf[:pos]
        chunk = os.read(0, CHUNK)
        if not chunk:
            break  # what is left of a frame goes to the agent, as it would unrelayed
        buf += chunk
    write_all(1, buf)
    while chunk := os.read(0, CHUNK):
        write_all(1, chunk)


def _claim(armed: Path, held: Path) -> bool:
    """Take the hold (one relay per arming)."""
    try:
        armed.rename(held)
    except FileNotFoundError:
        return False
    return True


def _held(buf: bytearray, held: Path) -> bool:
    """Read on into ``buf`` (without forwarding) until the hold is released (True) or the
    input ends (False)."""
    while held.exists():
        if select.select([0], [], [], 0.01)[0]:
            chunk = os.read(0, CHUNK)
            if not chunk:
                return False
            buf += chunk
    return True


if __name__ == "__main__":
    relay(Path(sys.argv[1]), Path(sys.argv[2]))
