"""Conversion alone, side by side: mailplan (reader + local agent) vs Debian's mb2md.

Generates two deterministic spools (mixed sizes ~1 GB / ~22k messages; small ~200 MB /
~46k messages of ~4 KB; ``--scale`` shrinks both; on request a third, ``keywords``: the
small one with ``X-Keywords: NonJunk`` in every message, as Thunderbird's junk controls
leave it on UW-IMAP, which mailplan also writes for courier-imap as a file per message),
then converts each with mb2md and with
mailplan (every message identified, named by digest, synced once per batch and journaled
from the agent's acknowledgements), printing MB/s, messages/s and peak RSS of each run.

Each tool runs ``--rounds`` times per profile, alternating which goes first, and the
medians are compared (single runs on a shared VM disk vary by 30% and more). After each
run a ``sync`` is timed apart: mb2md leaves its files to the kernel's writeback, mailplan
has made its own durable before it ends. The speed-up is against mb2md alone; the one
against mb2md followed by that sync is printed beside it. Each round's own ratio (its two
runs are seconds apart, in one state of the machine) is printed too, with their median.

    python3 benchmarks/mbox_convert.py --scale 0.1
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
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


def make_spool(path: Path, total_bytes: int, sizes: list[int], seed: int,
               keywords: bytes = b"") -> int:
    """Write a deterministic mbox of about ``total_bytes``; return its message count.
    ``keywords``: an X-Keywords value for every message."""
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
                    + status + (b"X-Keywords: %s\n" % keywords if keywords else b"")
                    + b"\n")
            body = (line * (max(size - len(head), 0) // len(line) + 1))[:max(size - len(head), 1)]
            if not body.endswith(b"\n"):
                body = body[:-1] + b"\n"
            body = body.replace(b"\nFrom ", b"\n>From ")
            fh.write(head + body + b"\n")
            written += len(head) + len(body) + 1
            count += 1
    return count


def filesystem_note(path: Path) -> str:
    """A warning when ``path`` is on an ext4 without a journal, where file creation is
    slowed for minutes after many deletions: ext4 then skips every inode freed in the
    last 60 s (360 s while its inode table block is dirty) and re-checks each of them
    for every new file (``recently_deleted`` in fs/ext4/ialloc.c). Measured here: a file
    creation costs 10-20 us normally and 100-250 us right after a large ``rm -rf``."""
    dev = path.stat().st_dev
    try:
        uevent = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/uevent").read_text()
        name = next(line[8:] for line in uevent.splitlines() if line.startswith("DEVNAME="))
        journal = Path(f"/sys/fs/ext4/{name}/journal_task").read_text().strip()
    except (OSError, StopIteration):
        return ""
    if journal != "<none>":
        return ""
    return (f"note: {path} is on an ext4 without a journal ({name}): file creation is "
            "slow for up to 6 minutes after many files are deleted (ext4 skips recently "
            "freed inodes). Figures are comparable only when nothing was deleted on this "
            "filesystem in the last 6 minutes; this benchmark deletes its outputs only at "
            "the end.")


def run_mb2md(spool: Path, out: Path) -> tuple[float, int, float]:
    """Seconds, peak RSS (KiB) and CPU seconds (user + system) of one ``mb2md`` run,
    measured by ``/usr/bin/time`` (a small C parent: wait4 from here would report this
    Python process's RSS at fork)."""
    t = time.perf_counter()
    res = subprocess.run(["/usr/bin/time", "-f", "RSS=%M CPU=%U %S", "mb2md", "-s",
                          str(spool), "-d", str(out)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, check=True)
    elapsed = time.perf_counter() - t
    last = [x.split() for x in res.stderr.decode(errors="replace").splitlines()
            if x.startswith("RSS=")][-1]
    return elapsed, int(last[0][4:]), float(last[1][4:]) + float(last[2])


def time_rss(err: bytes) -> int:
    """The last ``RSS=<KiB>`` line ``/usr/bin/time -f RSS=%M`` printed (0: none)."""
    found = [int(x[4:]) for x in err.decode(errors="replace").splitlines()
             if x.startswith("RSS=")]
    return found[-1] if found else 0


def run_mailplan(spool: Path, out: Path) -> tuple[float, int, int, int, float]:
    """Seconds, peak RSS (KiB) of the reader and of the agent, messages journaled, and
    CPU seconds (user + system) of the reader, the agent and its sync process.

    The agent runs under ``/usr/bin/time``, which reports its peak RSS (with its sync
    process's): ``wait4`` from here would count the RSS this process had when it forked
    the agent, since the kernel keeps a process's peak across ``exec``."""
    journal = 0

    def on_durable(batch: list) -> None:
        nonlocal journal
        journal += len(batch)

    t = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_SELF)
    agent = LocalAgent(wrapper=("/usr/bin/time", "-f", "RSS=%M"))
    client = AgentClient(agent)
    client.open(str(out))
    with open(spool, "rb") as fh:
        report = import_mbox(client, fh, dirname="", on_durable=on_durable,
                             mtime=spool.stat().st_mtime)
    client.quit()
    _pid, _status, usage = os.wait4(agent.proc.pid, 0)
    agent.proc.returncode = 0
    elapsed = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
           + usage.ru_utime + usage.ru_stime)  # time's: the agent and its sync process
    assert agent.proc.stderr is not None
    rss_agent = time_rss(agent.proc.stderr.read())
    return (elapsed, after.ru_maxrss, rss_agent,
            journal if report.durable == journal else -1, cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="shrink both profiles")
    ap.add_argument("--rounds", type=int, default=3,
                    help="runs of each tool, alternating which goes first (default 3)")
    ap.add_argument("--profiles", default="mixed,small",
                    help="comma-separated: mixed, small, keywords")
    ap.add_argument("--dir", default=None, help="work directory, whose spools later runs reuse "
                    "(default: a temp dir, removed at the end)")
    ap.add_argument("--keep", action="store_true", help="keep this run's converted Maildirs "
                    "(in an outputs-* directory of the work directory)")
    args = ap.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="mailplan-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    # this run's outputs, apart from an earlier run's kept in the same --dir (whose
    # Maildirs would already hold every message); the spools are shared
    outputs = Path(tempfile.mkdtemp(prefix="outputs-", dir=work))
    profiles = {
        "mixed": (int(1_000_000_000 * args.scale),
                  [800, 2000, 4000, 8000, 20000, 60000, 150000, 100000], 1, b""),
        "small": (int(200_000_000 * args.scale), [3800, 4000, 4200], 2, b""),
        "keywords": (int(200_000_000 * args.scale), [3800, 4000, 4200], 2, b"NonJunk"),
    }
    if note := filesystem_note(work):
        print(note)
    print(f"{args.rounds} rounds per tool, alternating which runs first; the median is "
          "compared. Outputs are deleted only at the end: ext4 slows down file creation "
          "right after many deletions, which would favour whichever tool runs later.")
    print("peak RSS for mailplan = reader process + agent process")
    print("CPU s = user + system seconds of the tool's processes (median); the kernel's "
          "writeback of what they wrote is not in it")
    print("sync s = how long a sync right after the tool took (median): the writeback of "
          "what it left in the page cache; not in its time or speed-up")
    print(f"{'profile':8} {'tool':9} {'MB':>8} {'msgs':>7} {'median s':>9} {'MB/s':>8} "
          f"{'msgs/s':>8} {'CPU s':>6} {'sync s':>6} {'peak RSS':>14}  all runs (s)")
    try:
        spools = {name: (work / f"{name}.mbox",
                         make_spool(work / f"{name}.mbox", size, sizes, seed, keywords))
                  for name, (size, sizes, seed, keywords) in profiles.items()
                  if name in args.profiles.split(",")}
        for name, (spool, count) in spools.items():
            mb = spool.stat().st_size / 1e6
            times: dict[str, list[float]] = {"mb2md": [], "mailplan": []}
            cpus: dict[str, list[float]] = {"mb2md": [], "mailplan": []}
            flushes: dict[str, list[float]] = {"mb2md": [], "mailplan": []}
            rss: dict[str, str] = {}
            for rnd in range(args.rounds):
                order = ["mb2md", "mailplan"] if rnd % 2 == 0 else ["mailplan", "mb2md"]
                for tool in order:
                    out = outputs / f"{name}-{tool}-{rnd}"
                    os.sync()
                    if tool == "mb2md":
                        t, kb, cpu = run_mb2md(spool, out)
                        rss[tool] = f"{kb / 1024:10.1f} MiB"
                    else:
                        t, kb_self, kb_agent, journaled, cpu = run_mailplan(spool, out)
                        assert journaled == count, (journaled, count)
                        rss[tool] = f"{kb_self / 1024:6.1f}+{kb_agent / 1024:.1f} MiB"
                    times[tool].append(t)
                    cpus[tool].append(cpu)
                    # what the tool left unwritten: mb2md's files are durable only once
                    # the kernel writes them back; mailplan's were synced before it ended
                    t = time.perf_counter()
                    os.sync()
                    flushes[tool].append(time.perf_counter() - t)
            med = {tool: statistics.median(ts) for tool, ts in times.items()}
            for tool in ("mb2md", "mailplan"):
                runs = " ".join(f"{t:.2f}" for t in times[tool])
                print(f"{name:8} {tool:9} {mb:8.1f} {count:7d} {med[tool]:9.2f} "
                      f"{mb / med[tool]:8.1f} {count / med[tool]:8.0f} "
                      f"{statistics.median(cpus[tool]):6.2f} "
                      f"{statistics.median(flushes[tool]):6.2f} {rss[tool]:>14}  {runs}")
            durable = med["mb2md"] + statistics.median(flushes["mb2md"])
            print(f"{name:8} speed-up  {med['mb2md'] / med['mailplan']:.2f}x "
                  f"(mailplan journaled all {count} messages in every run; against mb2md "
                  f"followed by a sync, whose files are then as durable: "
                  f"{durable / med['mailplan']:.2f}x)")
            # each round's two runs are seconds apart, in the same state of the machine:
            # their ratio moves less than the ratio of medians taken across rounds
            rounds = [m / p for m, p in zip(times["mb2md"], times["mailplan"], strict=True)]
            print(f"{name:8} per round {' '.join(f'{r:.2f}x' for r in rounds)} "
                  f"(median {statistics.median(rounds):.2f}x)")
    finally:
        if not args.keep:
            shutil.rmtree(work if not args.dir else outputs, ignore_errors=True)


if __name__ == "__main__":
    main()
