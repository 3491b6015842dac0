"""Memory per message: peak RSS of an import of many tiny messages, at two mailbox sizes.

Memory does not grow with message size, but some of it does with the number of messages
in one mailbox: the reader numbers repeated messages (a digest's occurrence counts the
identical messages before it, so it remembers every digest it read) and the writer agent
remembers the identities in each folder it writes (to never make a message visible
twice). This prints, for a spool of ``--messages`` and one of four times as many tiny
messages, the peak RSS of mailplan's reader process and of the writer agent (with its
sync process), for a first import into an empty Maildir and for the same import again
(every message found present), and the growth per message between the two sizes. Each
run is a child process (``getrusage`` of its own); local agent, no SSH:

    python3 benchmarks/many_messages_rss.py                      # 100,000 and 400,000
    python3 benchmarks/many_messages_rss.py --messages 20000
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = """
import sys
sys.path.insert(0, {bench!r})
from pathlib import Path
from mbox_convert import run_mailplan
elapsed, reader, agent, journaled, _cpu = run_mailplan(Path(sys.argv[1]), Path(sys.argv[2]))
print(elapsed, reader, agent, journaled)
"""


def write_spool(path: Path, count: int) -> None:
    """``count`` distinct messages of about 60 bytes each."""
    with open(path, "wb") as fh:
        for i in range(count):
            fh.write(b"From a@x.example Mon Nov  2 10:00:00 2026\nSubject: m%d\n\nbody %d\n\n"
                     % (i, i))


def run(spool: Path, maildir: Path) -> tuple[float, float, float, int]:
    """Seconds, reader and agent peak RSS (MiB), and messages made durable."""
    out = subprocess.run([sys.executable, "-c", CHILD.format(bench=str(REPO / "benchmarks")),
                          str(spool), str(maildir)], capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[0]), int(out[1]) / 1024, int(out[2]) / 1024, int(out[3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000,
                        help="the smaller mailbox (the larger holds four times as many)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mailplan-msgs-"))
    peaks: dict[str, dict[int, tuple[float, float]]] = {"first": {}, "again": {}}
    print(f"{'messages':>9} {'import':6} {'s':>6} {'reader':>10} {'writer':>10}")
    try:
        for count in (args.messages, 4 * args.messages):
            spool = work / f"{count}.mbox"
            write_spool(spool, count)
            for label in ("first", "again"):
                took, reader, agent, durable = run(spool, work / f"Maildir-{count}")
                expected = count if label == "first" else 0
                if durable != expected:
                    raise SystemExit(f"{label} import of {count}: {durable} made durable, "
                                     f"expected {expected}")
                peaks[label][count] = (reader, agent)
                print(f"{count:9d} {label:6} {took:6.1f} {reader:6.1f} MiB {agent:6.1f} MiB")
        small, large = args.messages, 4 * args.messages
        for label, by_count in peaks.items():
            per = [(by_count[large][k] - by_count[small][k]) * 2**20 / (large - small)
                   for k in (0, 1)]
            print(f"growth per message, {label} import: reader {per[0]:.0f} B, "
                  f"writer {per[1]:.0f} B")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
