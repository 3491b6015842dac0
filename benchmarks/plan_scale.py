"""Plan and apply at scale: N users in M domains over loopback SSH into the stand-in.

Prints plan time, apply time, the time of a second (no-change) plan, SSH channels opened
per host and peak RSS. Run by hand (as root, after `bash scripts/install-test-deps.sh`):

    python3 benchmarks/plan_scale.py                      # 10,000 users in 100 domains
    python3 benchmarks/plan_scale.py --users 2000 --domains 20 --skip-apply

Target (issue 2): plan under 10 s with at most 10 channels per host.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from migration import SourceAccount, install_target, make_source, ssh_host, write_spec  # noqa: E402
from passlib.hash import md5_crypt  # noqa: E402
from sshd_fixture import start_sshd  # noqa: E402

from mailplan.apply import apply_plan  # noqa: E402
from mailplan.engine import make_plan, state_path_for  # noqa: E402
from mailplan.spec import load_spec  # noqa: E402
from mailplan.state import State, locked  # noqa: E402


def plan_once(spec_path: Path) -> tuple[float, object]:
    spec = load_spec(spec_path)
    start = time.perf_counter()
    planned = make_plan(spec, State.load(state_path_for(spec), fold=False))
    elapsed = time.perf_counter() - start
    return elapsed, planned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--domains", type=int, default=100)
    parser.add_argument("--skip-apply", action="store_true")
    args = parser.parse_args()
    per = args.users // args.domains
    work = Path(tempfile.mkdtemp(prefix="mailplan-bench-"))
    sshd = start_sshd(work / "sshd")
    try:
        # a few distinct hashes, reused: hashing 10,000 passwords is not what we measure
        pool = [md5_crypt.hash(f"pw{i}") for i in range(50)]
        accounts = [SourceAccount(f"u{i:05d}", 10_000 + i, f"User {i}",
                                  raw_hash=pool[i % len(pool)]) for i in range(args.users)]
        source = make_source(work / "source", accounts)
        target = install_target(work / "target")
        domains = {f"bench{d:03d}.example": {"import": {"uid_min": 10_000 + d * per,
                                                        "uid_max": 10_000 + (d + 1) * per - 1}}
                   for d in range(args.domains)}
        spec_path = write_spec(work / "bench.yaml", source_root=source, target=target,
                               domains=domains, source_host=ssh_host(sshd),
                               target_host=ssh_host(sshd))
        print(f"{args.users} users in {args.domains} domains, loopback SSH, stand-in target")
        elapsed, planned = plan_once(spec_path)
        chans = {n: c.channels_opened for n, c in planned.connectors.items()}
        print(f"plan (empty target):   {elapsed:7.2f} s, {len(planned.plan.changes)} changes, "
              f"channels per host {chans}")
        if not args.skip_apply:
            spec = planned.spec
            with locked(state_path_for(spec)):
                state = State.load(state_path_for(spec))
                start = time.perf_counter()
                result = apply_plan(planned, state, prune=False)
                took = time.perf_counter() - start
            chans = {n: c.channels_opened for n, c in planned.connectors.items()}
            print(f"apply:                 {took:7.2f} s, {len(result.done)} changes, "
                  f"{len(result.done) / took:.0f} changes/s, channels per host {chans}")
        planned.close()
        elapsed, again = plan_once(spec_path)
        chans = {n: c.channels_opened for n, c in again.connectors.items()}
        print(f"plan (after apply):    {elapsed:7.2f} s, {len(again.plan.changes)} changes, "
              f"channels per host {chans}")
        again.close()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS (mailplan):   {rss:7.1f} MiB")
    finally:
        sshd.stop()


if __name__ == "__main__":
    main()
