"""Peak memory of a plan and of a verify that read every mailbox of many users whole.

A plan reads every mailbox whole into folders already full of mail right after the
cutover when the state file was lost, or when the old server rewrote the spools since
the last run (a mail reader marking a message read rewrites the file): each mailbox is
compared with its folder's identities on the target. A verify always reads every
mailbox and lists every Maildir. Both read the users a group at a time
(``mailplan.mailbox_reads.WHOLE_READ_LEDGER_BYTES``, ``mailplan.verify.GROUP_LEDGER_BYTES``
and ``GROUP_SOURCE_BYTES``); this prints the time and peak RSS of each next to the same
command with those bounds lifted (every user at once), on the same files. Local hosts
(no SSH), into the test stand-in:

    python3 benchmarks/many_users_rss.py                  # 40 users x 10,000 messages
    python3 benchmarks/many_users_rss.py --users 10 --messages 2000
    python3 benchmarks/many_users_rss.py --keywords       # every message with a keyword

``--keywords`` gives every message ``X-Keywords: NonJunk``: the import then also writes
courier-imap's keyword file for each, which verify lists and reads.
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

from migration import (  # noqa: E402
    install_target,
    mailplan,
    source_with_mail,
    unique_domain,
    write_spec,
)

RUN = """
import resource, sys
import mailplan.mailbox_reads, mailplan.verify
from mailplan.cli import main
if {lift}:
    mailplan.mailbox_reads.WHOLE_READ_LEDGER_BYTES = 1 << 62
    mailplan.verify.GROUP_LEDGER_BYTES = mailplan.verify.GROUP_SOURCE_BYTES = 1 << 62
sys.argv = ["mailplan", *{args!r}]
try:
    main()
except SystemExit:
    pass
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def run(args: list[str], *, lift: bool) -> tuple[float, int, str]:
    """Seconds, peak RSS (KiB) and last output line of one mailplan process."""
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", RUN.format(lift=lift, args=args)],
                         capture_output=True, text=True, cwd=REPO, check=True)
    elapsed = time.perf_counter() - start
    return elapsed, int(res.stderr.split()[-1]), res.stdout.strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--messages", type=int, default=10_000, help="per user")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--keywords", action="store_true",
                    help="every message with X-Keywords: NonJunk")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mailplan-replan-"))
    try:
        src = source_with_mail(work / "source", "u", [args.messages] * args.users,
                               "X-Keywords: NonJunk\n" if args.keywords else "")
        target = install_target(work / "target")
        spec = write_spec(work / "m.yaml", source_root=src, target=target,
                          domains={unique_domain(): {"import": {"uid_min": 1000}}})
        start = time.perf_counter()
        mailplan("apply", str(spec), "--auto-approve", "--parallel", "2", check=True,
                 cwd=REPO)
        print(f"{args.users} users x {args.messages} messages imported in "
              f"{time.perf_counter() - start:.1f} s; state file deleted, every mailbox is "
              "read whole")
        (work / "m.state.json").unlink()
        for command in (["plan", str(spec)], ["verify", "--full", str(spec)]):
            for label, lift in (("a group of users at a time", False),
                                ("every user at once", True)):
                elapsed, rss, last = run(command, lift=lift)
                print(f"{command[0] + ',':7} {label:26} {elapsed:6.1f} s  peak RSS "
                      f"{rss / 1024:6.0f} MiB  ({last})")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
