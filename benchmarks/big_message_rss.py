"""Memory stays flat: import a spool holding one huge message, over loopback SSH.

Builds a spool of ``--spool-mb`` MB whose middle message alone is ``--message-mb`` MB
(defaults 2048 and 500, as in issue 3), migrates it with ``mailplan apply`` in a child
process against the vpopmail stand-in, and prints the child's peak RSS next to the
sizes, plus the plan's and apply's wall time. Run by hand, as root:

    python3 benchmarks/big_message_rss.py --spool-mb 600 --message-mb 200
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from migration import SourceAccount, install_target, make_source, ssh_host, write_spec  # noqa: E402
from sshd_fixture import start_sshd  # noqa: E402

LINE = b"x" * 999 + b"\n"


def write_spool(path: Path, total_mb: int, big_mb: int) -> int:
    """~50 KB messages around one big one in the middle; returns the number of messages."""
    count = 0
    body = LINE * 50
    with open(path, "wb") as fh:
        small = (total_mb - big_mb) * 1024 // 50
        for part in range(2):
            for i in range(small // 2):
                fh.write(f"From a{i}@x.example Mon Nov  2 10:00:00 2026\nSubject: s{part}-{i}"
                         f"\n\n".encode() + body + b"\n")
                count += 1
            if part == 0:
                fh.write(b"From big@x.example Tue Nov  3 10:00:00 2026\nSubject: big\n\n")
                for _ in range(big_mb * 1024):
                    fh.write(LINE)
                fh.write(b"\n")
                count += 1
    return count


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child command (its own rusage)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[2:4]} exited {proc.returncode}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spool-mb", type=int, default=2048)
    parser.add_argument("--message-mb", type=int, default=500)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mailplan-rss-"))
    sshd = start_sshd(work / "sshd")
    try:
        src = make_source(work / "source", [SourceAccount("big", 1000, "Big", "pw")])
        spool = src / "var/spool/mail/big"
        count = write_spool(spool, args.spool_mb, args.message_mb)
        target = install_target(work / "target")
        spec = write_spec(work / "m.yaml", source_root=src, target=target,
                          source_host=ssh_host(sshd), target_host=ssh_host(sshd),
                          domains={"big.example": {"import": {"uid_min": 1000}}})
        size = os.path.getsize(spool) / 2**20
        print(f"spool {size:.0f} MiB, {count} messages, largest {args.message_mb} MiB")
        took, rss = run([sys.executable, "-m", "mailplan", "plan", str(spec)])
        print(f"plan:  {took:7.1f} s, peak RSS {rss:6.1f} MiB")
        took, rss = run([sys.executable, "-m", "mailplan", "apply", str(spec),
                         "--auto-approve"])
        print(f"apply: {took:7.1f} s, peak RSS {rss:6.1f} MiB ({size / took:.0f} MiB/s)")
    finally:
        sshd.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
