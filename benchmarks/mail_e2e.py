"""Mail import end to end over SSH on loopback: mailplan vs ``scp`` + ``mb2md``, side by side.

For each profile (``mixed``: ~1 GB of mixed sizes, ~22k messages; ``small``: ~200 MB of
~46k messages of ~4 KB; both generated deterministically by ``mbox_convert.make_spool``,
``--scale`` shrinks them) this one run measures, on the same files:

* conversion alone, no SSH: Debian's ``mb2md`` vs mailplan's reader + a local agent;
* the manual pipeline of the old guides: ``scp`` of the spool to the target directory,
  then ``mb2md -s FILE -d DIR`` run there over ``ssh``;
* mailplan end to end: ``mailplan apply`` in-process (``make_plan`` + ``apply_plan``) from a
  source tree read over SSH into the vpopmail stand-in reached over SSH (the plan of this
  first import counts the spool's From_ lines on the source and reads its first 64 KiB;
  apply streams the spool through one source channel into the writer agent on one
  target channel);
* the raw ceilings of the transports: paramiko streaming ``cat FILE`` into /dev/null,
  paramiko writing the file into ``cat > /dev/null``, paramiko relaying source ``cat`` into
  target ``cat > /dev/null`` (mailplan's own data path without parsing or writing),
  OpenSSH ``cat FILE | ssh target 'cat > /dev/null'``, and for the small profile
  ``tar -cf - DIR | ssh target 'tar -xf -'`` of the Maildir mb2md made;
* re-plans: of the unchanged spool, and of the spool grown by 1% (then the apply of that
  1%): wall time and bytes read from the source host (counted on every channel by
  wrapping the source connector);
* peak RSS of every run: each in-process run is a child process (``getrusage`` self),
  external commands are measured by ``wait4`` or ``/usr/bin/time`` on the target side, and
  the writer agent (a grandchild of sshd) by sampling its ``VmHWM`` in /proc;
* where the CPU time goes, in the manual pipeline and in mailplan's first import: the
  CPU seconds of each kind of process (writer, mailplan, sshd, SSH clients, mb2md, the
  kernel's workers, which write dirty pages back) and how busy both CPUs were, sampled
  from /proc.

Both hosts are one real OpenSSH sshd on 127.0.0.1 (``tests/sshd_fixture.py``), so the
source and target sides, sshd's crypto and the tools all share this machine's CPUs; the
load average before each profile is printed. Files are read from the page cache (nothing
drops caches). Run as root after ``bash scripts/install-test-deps.sh`` (openssh-server,
mb2md, paramiko/fabric):

    python3 benchmarks/mail_e2e.py                       # full size: ~1 GB + ~200 MB
    python3 benchmarks/mail_e2e.py --scale 0.25          # quarter size
    python3 benchmarks/mail_e2e.py --profiles small --scale 0.5 --keep --dir /tmp/b

The spec's hosts run the writer with ``python3`` from the SSH login's PATH, or with
``MAILPLAN_TEST_PYTHON`` when it is set (``python:`` in the spec, as in the tests):

    MAILPLAN_TEST_PYTHON=/usr/bin/python3 python3 benchmarks/mail_e2e.py --profiles small
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CODE = os.environ.get("MAILPLAN_E2E_CODE")  # --code: the mailplan tree under test
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

if CODE:
    sys.path.insert(0, CODE)
# bind the tree under test before mbox_convert (which imports mailplan) puts REPO first
MAILPLAN = importlib.import_module("mailplan")
from mbox_convert import filesystem_note, make_spool, time_rss  # noqa: E402

from mailplan.connectors.base import CommandResult, Connector, Process  # noqa: E402

PROFILES: dict[str, tuple[int, list[int], int]] = {
    "mixed": (1_000_000_000, [800, 2000, 4000, 8000, 20000, 60000, 150000, 100000], 1),
    "small": (200_000_000, [3800, 4000, 4200], 2),
}
AGENT_MARK = "Target-side Maildir writer"
CHUNK = 1 << 20
USER, DOMAIN = "u1", "bench.example"


# -- byte counting ---------------------------------------------------------------------
class CountingProcess(Process):
    """A connector process that counts the bytes it hands out and takes in."""

    def __init__(self, inner: Process, owner: CountingConnector) -> None:
        self.inner, self.owner = inner, owner

    def write(self, data: bytes) -> None:
        self.owner.bytes_written += len(data)
        self.inner.write(data)

    def close_stdin(self) -> None:
        self.inner.close_stdin()

    def read(self, size: int = 65536) -> bytes:
        data = self.inner.read(size)
        self.owner.bytes_read += len(data)
        return data

    def readline(self) -> bytes:
        data = self.inner.readline()
        self.owner.bytes_read += len(data)
        return data

    def wait(self) -> CommandResult:
        res = self.inner.wait()
        self.owner.bytes_read += len(res.stdout)
        return res

    def kill(self) -> None:
        self.inner.kill()


class CountingConnector(Connector):
    """Wraps a real connector; counts stdout bytes read from (and stdin sent to) the host."""

    def __init__(self, inner: Connector) -> None:
        super().__init__(inner.name)
        self.inner = inner
        self.bytes_read = 0
        self.bytes_written = 0

    def start(self, command: str) -> Process:
        self.channels_opened += 1
        return CountingProcess(self.inner.start(command), self)

    def start_stream(self, command: str, *, display: str | None = None) -> Process:
        self.channels_opened += 1
        return CountingProcess(self.inner.start_stream(command, display=display), self)

    def prepare_streams(self) -> None:
        # as mailplan calls it on a real connector: the stream path is set up during the
        # plan's first commands (without this, the benchmark's apply waited for it)
        self.inner.prepare_streams()

    @property
    def stream_transport(self) -> str:
        return str(getattr(self.inner, "stream_transport", "local"))

    def close(self) -> None:
        super().close()
        self.inner.close()


# -- children: every in-process run gets its own process, so its peak RSS is its own -----
def _self_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child_apply(spec_path: str, do_apply: bool) -> dict[str, Any]:
    """``mailplan apply --auto-approve`` (or only ``plan``) in-process; time and bytes."""
    from mailplan.apply import apply_plan
    from mailplan.engine import make_plan, state_path_for
    from mailplan.hosts import connect
    from mailplan.spec import load_spec
    from mailplan.state import State, locked

    spec = load_spec(Path(spec_path))
    names = sorted({spec.data["source"]["host"], spec.data["target"]["host"]})
    conns: dict[str, Connector] = {n: CountingConnector(connect(n, spec.data["hosts"][n]))
                                   for n in names}
    source = conns[spec.data["source"]["host"]]
    assert isinstance(source, CountingConnector)
    out: dict[str, Any] = {}
    path = state_path_for(spec)
    with locked(path):
        state = State.load(path)
        t = time.perf_counter()
        planned = make_plan(spec, state, conns)
        out["plan_s"] = time.perf_counter() - t
        out["plan_read"] = source.bytes_read
        out["changes"] = len(planned.plan.changes)
        out["mailbox_changes"] = [c.after for c in planned.plan.changes if c.kind == "mailbox"]
        if do_apply:
            t = time.perf_counter()
            result = apply_plan(planned, state, prune=False)
            out["apply_s"] = time.perf_counter() - t
            out["apply_read"] = source.bytes_read - out["plan_read"]
            out["done"] = len(result.done)
        out["transport"] = source.stream_transport
        planned.close()
    out["rss_kb"] = _self_rss_kb()
    return out


def child_convert(spool: str, dest: str) -> dict[str, Any]:
    """mailplan's conversion alone (reader + local agent), as ``mbox_convert`` runs it."""
    from mbox_convert import run_mailplan

    elapsed, rss_self, rss_agent, journaled, _cpu = run_mailplan(Path(spool), Path(dest))
    return {"s": elapsed, "rss_kb": rss_self, "agent_rss_kb": rss_agent, "journaled": journaled}


def child_paramiko(host: dict[str, Any], mode: str, path: str,
                   target: dict[str, Any] | None = None) -> dict[str, Any]:
    """Ceilings through mailplan's SSH connector: read, write, or relay a file over
    paramiko channels; ``stream-relay`` relays over the connector's stream path (the
    OpenSSH client when it can log in), which is what mailplan's mail streams use."""
    from mailplan.hosts import connect

    conn = connect("a", host)
    other = connect("b", target or host)
    conn.run("true")
    other.run("true")  # connect and authenticate before the clock starts
    moved = 0
    if mode == "stream-relay":
        conn.start_stream("true").wait()
        other.start_stream("true").wait()  # the OpenSSH masters too
    t = time.perf_counter()
    if mode == "read":
        proc = conn.start(f"cat {path}")
        while chunk := proc.read(CHUNK):
            moved += len(chunk)
        proc.wait()
    elif mode == "write":
        sink = other.start("cat > /dev/null")
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                sink.write(chunk)
                moved += len(chunk)
        sink.close_stdin()
        sink.wait()
    else:  # relay
        start = {"relay": lambda c, cmd: c.start(cmd),
                 "stream-relay": lambda c, cmd: c.start_stream(cmd)}[mode]
        proc, sink = start(conn, f"cat {path}"), start(other, "cat > /dev/null")
        while chunk := proc.read(CHUNK):
            sink.write(chunk)
            moved += len(chunk)
        proc.wait()
        sink.close_stdin()
        sink.wait()
    elapsed = time.perf_counter() - t
    conn.close()
    other.close()
    return {"s": elapsed, "bytes": moved, "rss_kb": _self_rss_kb()}


def child_where() -> dict[str, Any]:
    """Which mailplan tree the children import."""
    return {"code": str(Path(MAILPLAN.__file__ or "").parent.parent)}


def run_child(kind: str, *args: Any) -> dict[str, Any]:
    """Run ``kind`` in a fresh interpreter; return its JSON result."""
    res = subprocess.run([sys.executable, __file__, "--child", kind, json.dumps(args)],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"child {kind} failed:\n{res.stdout}\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# -- external commands ----------------------------------------------------------------
def timed(argv: list[str]) -> tuple[float, int, bytes]:
    """Run argv under ``/usr/bin/time`` (a small C parent, so the RSS is not the RSS of this
    Python process before exec); wall seconds, peak RSS in KiB (the largest process of
    its tree), stderr."""
    t = time.perf_counter()
    res = subprocess.run(["/usr/bin/time", "-f", "RSS=%M", *argv], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - t
    if res.returncode != 0:
        raise RuntimeError(f"{argv} exited {res.returncode}: "
                           f"{res.stderr.decode(errors='replace')}")
    return elapsed, time_rss(res.stderr), res.stderr


class ProcessWatch:
    """Samples, from /proc, the peak RSS (VmHWM) of writer agents (sshd's grandchildren)
    and the CPU seconds every process used while it ran, by kind (:func:`cpu_kind`), with
    how busy the machine's CPUs were. A process that ends between two samples loses the
    CPU time it used since the last one (at most ``interval`` seconds' worth)."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak_kb = 0
        self.cpu: dict[str, float] = {}  # kind -> CPU seconds while watched
        self.busy = 0.0  # share of all CPUs' time not idle while watched
        #: pid -> [kind, CPU ticks when first seen (0: started while watched), at the last
        #: sample]; a pid used again by a new process first moves to ``_ended``
        self._procs: dict[int, list[Any]] = {}
        self._ended: list[list[Any]] = []
        self._stat = (0, 0)  # all CPUs' busy and total ticks when the watch began
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> ProcessWatch:
        self._stat = _cpu_stat()
        self._sample(first=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        busy, total = (b - a for a, b in zip(self._stat, _cpu_stat(), strict=True))
        self.busy = busy / total if total else 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for kind, start, last in [*self._procs.values(), *self._ended]:
            self.cpu[kind] = self.cpu.get(kind, 0.0) + (last - start) / tick

    def summary(self) -> str:
        """The CPU seconds by kind, largest first, and how busy the CPUs were."""
        kinds = ", ".join(f"{kind} {s:.2f}" for kind, s in
                          sorted(self.cpu.items(), key=lambda kv: -kv[1]) if s >= 0.01)
        return f"CPU s: {kinds}; all CPUs {self.busy:.0%} busy"

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self, *, first: bool = False) -> None:
        me = os.getpid()
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            pid = int(entry)
            try:
                with open(f"/proc/{pid}/stat", "rb") as fh:
                    stat = fh.read()
                fields = stat[stat.rfind(b")") + 2:].split()
                ticks = int(fields[11]) + int(fields[12])  # utime + stime
                proc = self._procs.get(pid)
                if proc is not None and ticks < proc[2]:  # the pid was reused
                    self._ended.append(self._procs.pop(pid))
                    proc = None
                if proc is None:
                    with open(f"/proc/{pid}/cmdline", "rb") as fh:
                        cmdline = fh.read(4096)
                    comm = stat[stat.find(b"(") + 1:stat.rfind(b")")].decode(errors="replace")
                    # a process started while watched counts from its start
                    proc = self._procs[pid] = [cpu_kind(comm, cmdline), ticks if first else 0, 0]
                proc[2] = ticks
                if proc[0] == "writer":
                    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
                        for line in fh:
                            if line.startswith("VmHWM:"):
                                self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            except (OSError, ValueError, IndexError):
                continue


def cpu_kind(comm: str, cmdline: bytes) -> str:
    """What a process is, for :class:`ProcessWatch`'s CPU seconds."""
    if AGENT_MARK.encode() in cmdline:
        return "writer"  # the agent and its sync process
    if b"--child" in cmdline and Path(__file__).name.encode() in cmdline:
        return "mailplan"
    if comm == "perl" or b"mb2md" in cmdline:
        return "mb2md"
    if comm.startswith("sshd"):
        return "sshd"
    if comm in ("ssh", "scp"):
        return "ssh/scp client"
    if comm.startswith("kworker"):
        return "kernel workers"
    return "other"


def _cpu_stat() -> tuple[int, int]:
    """All CPUs' busy and total ticks so far (/proc/stat)."""
    with open("/proc/stat", encoding="ascii") as fh:
        ticks = [int(x) for x in fh.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return sum(ticks) - idle, sum(ticks)


# -- one profile ----------------------------------------------------------------------
Row = tuple[str, float, int, int, str, str]  # label, seconds, bytes, messages, read, rss


def mib(kb: int) -> str:
    return f"{kb / 1024:.0f} MiB"


def count_files(root: Path) -> int:
    return sum(len(files) for _d, _s, files in os.walk(root)
               if Path(_d).name in ("new", "cur"))


def bench_profile(name: str, work: Path, scale: float, sshd: Any, log: Callable[[str], None]
                  ) -> list[Row]:
    from migration import SourceAccount, install_target, make_source, ssh_host, write_spec

    size, sizes, seed = PROFILES[name]
    base = work / name
    src = make_source(base / "source", [SourceAccount(USER, 1000, "Bench", password="pw")])
    spool = src / "var/spool/mail" / USER
    count = make_spool(spool, int(size * scale), sizes, seed)
    nbytes = spool.stat().st_size
    host = ssh_host(sshd)
    ssh = ["ssh", "-p", str(sshd.port), "-i", str(sshd.client_key), "-o", "BatchMode=yes",
           "-o", f"UserKnownHostsFile={sshd.known_hosts}", "-o", "StrictHostKeyChecking=yes",
           "-o", "LogLevel=ERROR", f"{sshd.user}@127.0.0.1"]
    log(f"\n== {name}: {nbytes / 1e6:.1f} MB, {count} messages; load average before: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows: list[Row] = []

    def row(label: str, s: float, b: int, m: int, read: str = "", rss: str = "") -> None:
        rows.append((label, s, b, m, read, rss))
        log(fmt(rows[-1]))

    # conversion alone
    os.sync()
    s, rss, _ = timed(["mb2md", "-s", str(spool), "-d", str(base / "conv-mb2md")])
    row("convert  mb2md (local, no SSH)", s, nbytes, count, "", mib(rss))
    os.sync()
    r = run_child("convert", str(spool), str(base / "conv-mailplan"))
    assert r["journaled"] == count, r
    row("convert  mailplan (local agent)", r["s"], nbytes, count, "",
        f"{mib(r['rss_kb'])} + agent {mib(r['agent_rss_kb'])}")
    # outputs are deleted only when the profile is done: ext4 creates files more slowly
    # right after many deletions, which would handicap whichever run comes next

    # the manual pipeline: scp, then mb2md on the target
    manual = base / "manual"
    manual.mkdir()
    os.sync()
    with ProcessWatch() as watch_manual:  # CPU seconds of both steps
        s_scp, rss_scp, _ = timed(["scp", "-q", "-P", str(sshd.port), "-i", str(sshd.client_key),
                                   "-o", "BatchMode=yes", "-o",
                                   f"UserKnownHostsFile={sshd.known_hosts}",
                                   str(spool), f"{sshd.user}@127.0.0.1:{manual}/{USER}"])
        row("manual   scp spool -> target", s_scp, nbytes, count, "", f"{mib(rss_scp)} (scp)")
        s_mb, _rss, err = timed([*ssh, f"/usr/bin/time -f RSS=%M mb2md -s {manual}/{USER} "
                                 f"-d {manual}/Maildir"])
        assert count_files(manual / "Maildir") == count
        row("manual   ssh target mb2md", s_mb, nbytes, count, "", f"{mib(time_rss(err))} (mb2md)")
    manual_total = s_scp + s_mb
    row("manual   TOTAL scp + mb2md", manual_total, nbytes, count, "",
        f"{mib(max(rss_scp, time_rss(err)))}")
    log(f"   {watch_manual.summary()}")

    # mailplan end to end
    target = install_target(base / "target")
    spec = write_spec(base / "bench.yaml", source_root=src, target=target,
                      domains={DOMAIN: {"import": {"uid_min": 1000}}},
                      source_host=host, target_host=host)
    os.sync()
    with ProcessWatch() as watch:
        r = run_child("apply", str(spec), True)
    udir = subprocess.run([f"{target.vpopmail_dir}/bin/vuserinfo", "-d", f"{USER}@{DOMAIN}"],
                          capture_output=True, text=True, check=True).stdout.split("\n")[0]
    got = count_files(Path(udir) / "Maildir")
    assert got == count, (got, count, r)
    row("mailplan plan (counts on the source)", r["plan_s"], nbytes, count, human(r["plan_read"]))
    row(f"mailplan apply (streams: {r['transport'].split(' (')[0]})", r["apply_s"], nbytes, count,
        human(r["apply_read"]))
    e2e = r["plan_s"] + r["apply_s"]
    row("mailplan TOTAL apply SPEC", e2e, nbytes, count, human(r["plan_read"] + r["apply_read"]),
        f"{mib(r['rss_kb'])} + agent {mib(watch.peak_kb)}")
    log(f"   -> end to end: mailplan {e2e:.2f} s vs scp+mb2md {manual_total:.2f} s: "
        f"{manual_total / e2e:.2f}x ({'faster' if e2e < manual_total else 'SLOWER'}); "
        f"apply alone {manual_total / r['apply_s']:.2f}x")
    log(f"   {watch.summary()}")

    # re-plans
    r = run_child("apply", str(spec), False)
    assert r["changes"] == 0, r
    row(f"re-plan unchanged spool ({human(nbytes)})", r["plan_s"], 0, 0, human(r["plan_read"]),
        mib(r["rss_kb"]))
    extra = base / "extra.mbox"
    grown = make_spool(extra, max(int(nbytes * 0.01), 1), sizes, seed + 100)
    with open(spool, "ab") as out, open(extra, "rb") as fh:
        shutil.copyfileobj(fh, out)
    added = extra.stat().st_size
    r = run_child("apply", str(spec), False)
    row(f"re-plan grown by 1% (+{human(added)})", r["plan_s"], 0, 0,
        human(r["plan_read"]), mib(r["rss_kb"]))
    with ProcessWatch() as watch:
        r = run_child("apply", str(spec), True)
    assert count_files(Path(udir) / "Maildir") == count + grown
    row("apply grown 1% (plan + apply)", r["plan_s"] + r["apply_s"], added, grown,
        human(r["plan_read"] + r["apply_read"]), f"{mib(r['rss_kb'])} + agent "
        f"{mib(watch.peak_kb)}")
    extra.unlink()
    with open(spool, "r+b") as fh:
        fh.truncate(nbytes)

    # raw ceilings of the transports, on the same file
    for mode, label in (("read", "paramiko cat FILE -> /dev/null"),
                        ("write", "paramiko FILE -> cat >/dev/null"),
                        ("relay", "paramiko relay src cat -> tgt cat"),
                        ("stream-relay", "stream relay src cat -> tgt cat")):
        r = run_child("paramiko", host, mode, str(spool), host)
        row(f"ceiling  {label}", r["s"], r["bytes"], count, "", mib(r["rss_kb"]))
    s, rss, _ = timed(["bash", "-o", "pipefail", "-c",
                       f"cat {spool} | {' '.join(ssh)} 'cat > /dev/null'"])
    row("ceiling  openssh cat | ssh cat>/dev/null", s, nbytes, count, "", mib(rss))
    if name == "small":
        tdir = base / "tar-copy"
        tdir.mkdir()
        s, rss, _ = timed(["bash", "-o", "pipefail", "-c",
                           f"tar -C {manual}/Maildir -cf - . | {' '.join(ssh)} "
                           f"'tar -C {tdir} -xf -'"])
        assert count_files(tdir) == count
        row("ceiling  tar -c Maildir | ssh tar -x", s, nbytes, count, "", mib(rss))
    return rows


def human(n: int) -> str:
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


HEAD = f"{'run':42} {'s':>8} {'MB/s':>8} {'msgs/s':>8} {'src read':>10}  peak RSS"


def fmt(r: Row) -> str:
    label, s, b, m, read, rss = r
    rate = f"{b / 1e6 / s:8.1f}" if b and s else f"{'':8}"
    mps = f"{m / s:8.0f}" if m and s else f"{'':8}"
    return f"{label:42} {s:8.2f} {rate} {mps} {read:>10}  {rss}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="shrink both profiles")
    ap.add_argument("--profiles", default="mixed,small", help="comma-separated")
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--code", help="import mailplan (and send its agent) from this tree, "
                    "e.g. an older `git archive` export, to compare versions")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("args", nargs="?", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        fn = {"apply": child_apply, "convert": child_convert, "paramiko": child_paramiko,
              "where": child_where}
        print(json.dumps(fn[args.child](*json.loads(args.args))))
        return
    if args.code:
        os.environ["MAILPLAN_E2E_CODE"] = str(Path(args.code).resolve())
    from sshd_fixture import start_sshd

    work = Path(args.dir or tempfile.mkdtemp(prefix="mailplan-e2e-"))
    if args.dir and work.is_dir() and any(work.iterdir()):
        # an earlier run's target would already hold every message: nothing to import
        sys.exit(f"mail_e2e: {work} is not empty (files kept by an earlier run?): give a "
                 "new or empty --dir")
    work.mkdir(parents=True, exist_ok=True)
    sshd = start_sshd(work / "sshd")
    code = run_child("where")["code"]
    python = os.environ.get("MAILPLAN_TEST_PYTHON") or "python3 on the login's PATH"
    print(f"mail_e2e: scale {args.scale}, {os.cpu_count()} CPUs, work dir {work}, mailplan "
          f"from {code}, writer run by {python}; rates are of the spool's bytes and messages")
    if note := filesystem_note(work):
        print(note)
    print(HEAD)
    results: dict[str, list[Row]] = {}
    try:
        for name in args.profiles.split(","):
            results[name] = bench_profile(name, work, args.scale, sshd,
                                          lambda line: print(line, flush=True))
    finally:
        sshd.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print("\nsummary")
    print(HEAD)
    for name, rows in results.items():
        print(f"-- {name}")
        for r in rows:
            print(fmt(r))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
