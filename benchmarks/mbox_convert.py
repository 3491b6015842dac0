"""Conversion alone, side by side: mailplan (reader + local agent) vs Debian's mb2md.

Generates two deterministic spools (mixed sizes ~1 GB / ~22k messages; small ~200 MB /
~46k messages of ~4 KB; ``--scale`` shrinks both), then converts each with mb2md and with
mailplan (every message identified, named by digest, synced once per batch and journaled
from the agent's acknowledgements), printing MB/s, messages/s and peak RSS of each run.

    python3 benchmarks/mbox_convert.py --scale 0.1
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailplan.mail.agent_client import AgentClient, LocalAgent  # noqa: E402
from mailplan.mail.convert import import_mbox  # noqa: E402

WORDS = [b"lorem", b"ipsum", b"dolor", b"sit", b"amet", b"From", b"mail", b"server", b"qmail",
         b"vpopmail", b"migration", b"message", b"\xc3\xa9t\xc3\xa9", b"data"]


def make_spool(path: Path, total_bytes: int, sizes: list[int], seed: int) -> int:
    """Write a deterministic mbox of about ``total_bytes``; return its message count."""
    rng = random.Random(seed)
    line = b" ".join(rng.choice(WORDS) for _ in range(12)) + b"\n"
    count = written = 0
    with open(path, "wb") as fh:
        while written < total_bytes:
            size = rng.choice(sizes)
            day = 1 + count % 28
            status = [b"", b"Status: O\n", b"Status: RO\n", b"Status: RO\nX-Status: A\n"][
                count % 4]
            head = (b"From user%d@example.org  Mon Jan %2d 1%d:%02d:%02d 2001\n"
                    % (count % 97, day, count % 10, count % 60, count % 59)
                    + b"Received: from mx.example.org by mail.example.org\n"
                    + b"Message-ID: <%d@example.org>\nSubject: message %d\n" % (count, count)
                    + status + b"\n")
            body = (line * (max(size - len(head), 0) // len(line) + 1))[:max(size - len(head), 1)]
            if not body.endswith(b"\n"):
                body = body[:-1] + b"\n"
            body = body.replace(b"\nFrom ", b"\n>From ")
            fh.write(head + body + b"\n")
            written += len(head) + len(body) + 1
            count += 1
    return count


def child_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def run_mb2md(spool: Path, out: Path) -> tuple[float, int]:
    t = time.perf_counter()
    subprocess.run(["mb2md", "-s", str(spool), "-d", str(out)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t, child_rss_kb()


def run_mailplan(spool: Path, out: Path) -> tuple[float, int, int, int]:
    journal = 0

    def on_durable(batch: list) -> None:
        nonlocal journal
        journal += len(batch)

    t = time.perf_counter()
    agent = LocalAgent()
    client = AgentClient(agent)
    client.open(str(out))
    with open(spool, "rb") as fh:
        report = import_mbox(client, fh, dirname="", on_durable=on_durable,
                             mtime=spool.stat().st_mtime)
    client.quit()
    _pid, _status, usage = os.wait4(agent.proc.pid, 0)
    agent.proc.returncode = 0
    elapsed = time.perf_counter() - t
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return elapsed, self_rss, usage.ru_maxrss, journal if report.durable == journal else -1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="shrink both profiles")
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep generated files")
    args = ap.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="mailplan-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    profiles = {
        "mixed": (int(1_000_000_000 * args.scale),
                  [800, 2000, 4000, 8000, 20000, 60000, 150000, 100000], 1),
        "small": (int(200_000_000 * args.scale), [3800, 4000, 4200], 2),
    }
    print("peak RSS for mailplan = reader process + agent process")
    print(f"{'profile':8} {'tool':9} {'MB':>8} {'msgs':>7} {'s':>7} {'MB/s':>8} "
          f"{'msgs/s':>8} {'peak RSS':>14}")
    try:
        for name, (size, sizes, seed) in profiles.items():
            spool = work / f"{name}.mbox"
            count = make_spool(spool, size, sizes, seed)
            mb = spool.stat().st_size / 1e6
            os.sync()
            t_mb, rss_mb = run_mb2md(spool, work / f"{name}-mb2md")
            os.sync()
            t_mp, rss_self, rss_agent, journaled = run_mailplan(spool, work / f"{name}-mailplan")
            assert journaled == count, (journaled, count)
            print(f"{name:8} {'mb2md':9} {mb:8.1f} {count:7d} {t_mb:7.2f} {mb / t_mb:8.1f} "
                  f"{count / t_mb:8.0f} {rss_mb / 1024:10.1f} MiB")
            print(f"{name:8} {'mailplan':9} {mb:8.1f} {count:7d} {t_mp:7.2f} {mb / t_mp:8.1f} "
                  f"{count / t_mp:8.0f} {rss_self / 1024:6.1f}+{rss_agent / 1024:.1f} MiB")
            print(f"{name:8} speed-up  {t_mb / t_mp:.2f}x (journaled {journaled} messages)")
            if not args.keep:
                for p in work.glob(f"{name}*"):
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
