"""Peak memory and time of ``mailplan queue list`` on a big queue (a spam backlog).

Builds a queue of ``--messages`` preprocessed messages whose header blocks are about
``--header-kb`` kB each (To, Cc and lines of spam reports, as spam carries them),
the way qmail-queue names them (tests/queue_builder.py), then runs ``mailplan queue list
local`` on it in a fresh process and prints its time, its peak RSS and the agent's
(the program mailplan runs on the host, here a child process):

    python3 benchmarks/queue_list_rss.py                       # 20,000 x 4 kB
    python3 benchmarks/queue_list_rss.py --messages 5000 --header-kb 16
    python3 benchmarks/queue_list_rss.py --subject 'offer 7$'  # list --subject ... --regex
    python3 benchmarks/queue_list_rss.py --work /tmp/q         # keep the queue, for a rerun

Run as root (the queue's files belong to qmail's users, as on a mail host).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from queue_builder import QueueBuilder  # noqa: E402

RUN = """
import resource, sys
from mailplan.cli import main
sys.argv = ["mailplan", *{args!r}]
try:
    main()
except SystemExit:
    pass
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
"""


def spam_block(n: int, kb: int) -> str:
    """A From header, then To and Cc, then filler headers up to about ``kb`` kB."""
    lines = [f"Spammer {n} <s{n}@spam.example>", "To: victim@example.com",
             "Cc: other@example.com"]
    size = 0
    hop = 0
    while size < kb * 1024:
        line = (f"X-Spam-Report-{hop}: score=12.{hop} tests=BAYES_99,HTML_MESSAGE,URIBL\n"
                f"\tcontinued for hop {hop} with more words " + "z" * 40)
        lines.append(line)
        size += len(line) + 1
        hop += 1
    return "\n".join(lines)


def build(queue: Path, messages: int, kb: int) -> QueueBuilder:
    q = QueueBuilder(queue)
    for n in range(messages):
        q.add(f"s{n}@spam.example", remote=(f"victim{n % 97}@remote.example",),
              subject=f"offer {n}", sender_header=spam_block(n, kb), age=3600)
    return q


def ready(root: Path) -> QueueBuilder | None:
    """The queue built under ``root`` by an earlier run, if there is one."""
    if not (root / "queue").is_dir():
        return None
    q = QueueBuilder.__new__(QueueBuilder)
    q.queue = root / "queue"
    return q


def run(args: list[str]) -> tuple[float, int, int, int]:
    """Seconds, peak RSS of mailplan and of its children (KiB), and output lines."""
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", RUN.format(args=args)], capture_output=True,
                         text=True, cwd=REPO, check=True)
    elapsed = time.perf_counter() - start
    own, children = res.stderr.split()[-2:]
    return elapsed, int(own), int(children), len(res.stdout.splitlines())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--header-kb", type=int, default=4)
    ap.add_argument("--subject", help="also run list --subject PATTERN --regex")
    ap.add_argument("--work", type=Path, help="work in this directory and keep it; a queue "
                    "built there before is used again (to compare two versions of mailplan)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="mailplan-queue-rss-"))
    try:
        started = time.perf_counter()
        built = work / f"qmail-{args.messages}x{args.header_kb}k"
        q = ready(built) or build(built, args.messages, args.header_kb)
        print(f"queue: {args.messages} messages, {args.header_kb} kB headers "
              f"(ready in {time.perf_counter() - started:.0f} s)")
        runs = [["queue", "list", "local", "--queue-dir", str(q.queue)]]
        if args.subject:
            runs.append([*runs[0], "--subject", args.subject, "--regex"])
        empty = ready(work / "empty") or QueueBuilder(work / "empty")
        base = run(["queue", "list", "local", "--queue-dir", str(empty.queue)])[1]
        print(f"list of an empty queue: peak RSS {base / 1024:.0f} MiB")
        for argv in runs:
            elapsed, own, children, lines = run(argv)
            print(f"{' '.join(argv[:2] + argv[5:])}: {elapsed:.1f} s, peak RSS "
                  f"{own / 1024:.0f} MiB (agent {children / 1024:.0f} MiB), {lines} lines; "
                  f"{(own - base) / args.messages:.1f} KiB per message above the empty queue's")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
