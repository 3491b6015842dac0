"""Memory does not grow with message size: a whole ``mailplan apply`` (its reads of the
source, the parse, and the writer with its sync process, all children it waits for)
imports a spool holding one 200 MiB message with about the peak RSS of one holding a
16 MiB message. ``benchmarks/big_message_rss.py`` measures the issue's 2 GB / 500 MB
case over SSH; this keeps a regression from passing the test suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from migration import SourceAccount, install_target, make_source, unique_domain, write_spec

LINE = b"y" * 99 + b"\n"
SMALL = b"From a@x.example Mon Nov  2 10:00:00 2026\nSubject: small\n\nhello\n\n"


def apply_peak_rss(tmp_path: Path, message_mib: int) -> tuple[int, list[int]]:
    """Peak RSS (KiB) of an apply importing a spool with one ``message_mib`` message
    between two small ones, and the sizes of the files it wrote."""
    src = make_source(tmp_path / "source", [SourceAccount("big", 1000, "Big", "BigPw1")])
    with open(src / "var/spool/mail/big", "wb") as fh:
        fh.write(SMALL + b"From b@x.example Tue Nov  3 10:00:00 2026\nSubject: big\n\n")
        chunk = LINE * 10486  # ~1 MiB
        for _ in range(message_mib):
            fh.write(chunk)
        fh.write(b"\n" + SMALL)
    target = install_target(tmp_path / "target")
    domain = unique_domain("rss")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    proc = subprocess.Popen([sys.executable, "-m", "mailplan", "apply", str(spec),
                             "--auto-approve"], stdout=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    home = target.tool("vuserinfo", "-d", f"big@{domain}").stdout.decode().split("\n")[0]
    sizes = sorted(f.stat().st_size for f in Path(home, "Maildir").glob("*/*")
                   if f.parent.name in ("new", "cur"))
    return usage.ru_maxrss, sizes


@pytest.mark.slow
def test_a_200_mib_message_imports_with_the_memory_of_a_16_mib_one(tmp_path):
    small_rss, small_sizes = apply_peak_rss(tmp_path / "small", 16)
    big_rss, big_sizes = apply_peak_rss(tmp_path / "big", 200)
    body = len(LINE) * 10486
    assert small_sizes[-1] == len(b"Subject: big\n\n") + 16 * body
    assert big_sizes[-1] == len(b"Subject: big\n\n") + 200 * body and len(big_sizes) == 3
    # 184 MiB more of one message: the peak may differ by noise, not by the message
    assert big_rss - small_rss < 32 * 1024, (small_rss, big_rss)
