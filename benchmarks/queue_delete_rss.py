"""Peak memory and time of ``mailplan queue delete --execute`` on a big queue.

Builds a queue of ``--messages`` preprocessed messages (a mess, an info and a remote
file each, header blocks of about ``--header-kb`` kB: the spam backlog of
``queue_list_rss.py``), then, in a fresh process each, runs ``mailplan queue delete
local --match subject offer`` as a dry run and with ``--execute`` (qmail-send counts
as stopped: a custom status command exiting 1), and prints the time, the peak RSS of
mailplan and of the agent (the program it runs on the host, here a child process):

    python3 benchmarks/queue_delete_rss.py                     # 20,000 x 1 kB
    python3 benchmarks/queue_delete_rss.py --messages 100000

The dry run reads the queue as the delete does and stops before the second read; what
the execute costs above it is the second read (no message text) and the channel that
removes the files. The agent's figure is at least mailplan's own peak up to when it
started it (Linux carries a process's high-water mark over ``exec``). Run as root (the
queue's files belong to qmail's users).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from queue_list_rss import build, run  # noqa: E402

STOPPED = ["--control", "custom", "--status-cmd", "exit 1", "--stop-cmd", "true",
           "--start-cmd", "true"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--header-kb", type=int, default=1)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mailplan-queue-delete-"))
    try:
        started = time.perf_counter()
        q = build(work / "qmail", args.messages, args.header_kb)
        print(f"queue: {args.messages} messages, {args.header_kb} kB headers "
              f"(built in {time.perf_counter() - started:.0f} s)")
        argv = ["queue", "delete", "local", "--queue-dir", str(q.queue), "--match",
                "subject", "offer", *STOPPED]
        for name, extra in (("dry run", []), ("--execute", ["--execute"])):
            elapsed, own, children, lines = run([*argv, *extra])
            print(f"delete {name}: {elapsed:.1f} s, peak RSS {own / 1024:.0f} MiB "
                  f"(agent {children / 1024:.0f} MiB), {lines} lines")
        left = sum(1 for p in (q.queue / "mess").rglob("*") if p.is_file())
        print(f"mess files left: {left}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
