"""Where the conversion's CPU goes per message: reader, writer, and repeatable counts.

Converts the small profile of ``mbox_convert.py`` (``--scale`` of its 200 MB; 0.2 is
about 10,000 messages of about 4 KB) once with mailplan's reader and a local writer,
recording the frames the writer gets, and prints the CPU seconds of each side per
message. Then, each ``--rounds`` times:

- the reader alone (events only) and with naming and framing (``import_mbox`` into a
  client that discards its frames): the reader's process without the pipe and writer;
- the writer (with its sync process) replaying the recorded frames into a new Maildir,
  without the reader beside it on the CPUs.

``--wrap`` runs the replayed writer under a command, for counts that do not move with
the machine's load: ``--wrap "valgrind --tool=callgrind --callgrind-out-file=cg.%p"``
(instructions of the writer and, in a second file, its sync process; the sync
process's file also counts what the writer did before it forked), or ``--wrap "strace
-c -f"`` (system calls per message). CPU seconds on a shared VM vary by 20% and more
between runs; the counts do not.

    python3 benchmarks/per_message.py --dir /tmp/pm --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mbox_convert import make_spool  # noqa: E402

from mailplan.interpreter import FLAGS  # noqa: E402
from mailplan.mail.agent_client import AgentClient, LocalAgent  # noqa: E402
from mailplan.mail.convert import import_mbox  # noqa: E402
from mailplan.mail.mbox import MboxReader  # noqa: E402
from mailplan.mail.writer.bundle import agent_source  # noqa: E402

FRAME = struct.Struct(">cI")


class Recording:
    """A writer's pipe that keeps a copy of every byte sent to it."""

    def __init__(self, agent: LocalAgent, copy: Path) -> None:
        self.agent, self.copy = agent, copy.open("wb")

    def write(self, data: bytes) -> None:
        self.copy.write(data)
        self.agent.write(data)

    def read(self, size: int = 65536) -> bytes:
        return self.agent.read(size)

    def readline(self) -> bytes:
        return self.agent.readline()

    def close_stdin(self) -> None:
        self.copy.close()
        self.agent.close_stdin()


class Discard:
    """A pipe that takes frames and never replies."""

    def write(self, data: bytes) -> None:
        pass


class Unsynced(AgentClient):
    """A client whose syncs are never asked for (its pipe never replies)."""

    def sync_async(self, through: int | None = None) -> None:
        pass


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def convert(spool: Path, out: Path, frames: Path) -> tuple[float, float, int]:
    """One import with a local writer: CPU seconds of this process and of the writer
    (with its sync process), and the messages made durable; the frames go to ``frames``."""
    before = cpu_self()
    agent = LocalAgent()
    client = AgentClient(Recording(agent, frames))
    client.open(str(out))
    with spool.open("rb") as fh:
        report = import_mbox(client, fh, dirname="", mtime=spool.stat().st_mtime)
    client.quit()
    _pid, _status, usage = os.wait4(agent.proc.pid, 0)
    agent.proc.returncode = 0
    return cpu_self() - before, usage.ru_utime + usage.ru_stime, report.durable


def reader_only(spool: Path, framing: bool) -> float:
    """CPU seconds of the reader alone, or with naming and framing into a discarding client."""
    before = cpu_self()
    with spool.open("rb") as fh:
        if framing:
            client = Unsynced(Discard())  # type: ignore[arg-type]
            import_mbox(client, fh, dirname="", mtime=0.0, batch_messages=1 << 40)
        else:
            for _event in MboxReader(fh, mtime=0.0):
                pass
    return cpu_self() - before


def replay(frames: Path, out: Path, wrap: list[str]) -> float:
    """Run a writer on the recorded frames, its ``O`` pointed at the new Maildir ``out``:
    CPU seconds of the writer and its sync process (and of ``wrap``, when given)."""
    data = frames.read_bytes()
    kind, length = FRAME.unpack_from(data)
    if kind != b"O":
        raise SystemExit(f"{frames}: the recording does not start with an open")
    request = json.loads(data[5:5 + length])
    request["root"] = str(out)
    head = json.dumps(request).encode()
    with tempfile.TemporaryFile() as stdin:
        stdin.write(FRAME.pack(b"O", len(head)) + head + data[5 + length:])
        stdin.seek(0)
        proc = subprocess.Popen([*wrap, sys.executable, *FLAGS, "-c", agent_source()],
                                stdin=stdin, stdout=subprocess.DEVNULL)
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"the replayed writer exited with {proc.returncode}")
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True, help="work directory (the spool is reused; "
                    "the Maildirs made stay there: delete them when no benchmark runs)")
    ap.add_argument("--scale", type=float, default=0.2, help="of the 200 MB small profile")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--wrap", default="", help="a command the replayed writer runs under")
    args = ap.parse_args()
    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    spool = work / f"small-{args.scale}.mbox"
    if not spool.exists():
        make_spool(spool, int(200_000_000 * args.scale), [3800, 4000, 4200], 2)
    outputs = Path(tempfile.mkdtemp(prefix="per-message-", dir=work))
    frames = outputs / "frames"
    mine, writer, count = convert(spool, outputs / "import", frames)
    us = 1e6 / count
    print(f"{count} messages; one import: mailplan's process {mine * us:.1f} us/message, "
          f"the writer and its sync process {writer * us:.1f} us/message")
    rounds: dict[str, list[float]] = {"reader alone": [], "reader, naming and framing": [],
                                      "writer replayed": []}
    for rnd in range(args.rounds):
        rounds["reader alone"].append(reader_only(spool, framing=False))
        rounds["reader, naming and framing"].append(reader_only(spool, framing=True))
        rounds["writer replayed"].append(replay(frames, outputs / f"replay-{rnd}",
                                                shlex.split(args.wrap)))
    for what, cpus in rounds.items():
        runs = " ".join(f"{c * us:.1f}" for c in cpus)
        print(f"{what:28} {statistics.median(cpus) * us:6.1f} us/message CPU "
              f"(median; runs {runs})")


if __name__ == "__main__":
    main()
