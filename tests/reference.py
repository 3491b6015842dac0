"""Look up recorded outputs in the vpopmail transcripts (../shared/reference).

The transcripts are the ground truth the parsers are tested against. The folder is
found through MAILPLAN_REFERENCE or beside the checkout; a missing folder fails the
tests that need it (it is part of the project's test data).
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path


def reference_dir() -> Path:
    """Where the recorded transcripts are."""
    env = os.environ.get("MAILPLAN_REFERENCE")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "reference"
    if not path.is_dir():
        raise FileNotFoundError(f"reference transcripts not found at {path}; set "
                                "MAILPLAN_REFERENCE")
    return path


@cache
def _text(name: str) -> str:
    return (reference_dir() / "vpopmail" / name).read_text(encoding="utf-8")


def recorded(name: str, command: str, occurrence: int = 0) -> tuple[int, str]:
    """(exit code, stdout) recorded for ``command`` in transcript ``name``."""
    text = _text(name)
    starts = [m.end() for m in re.finditer(r"```console\n# " + re.escape(command) + r"\n```",
                                           text)]
    if len(starts) <= occurrence:
        raise KeyError(f"{command!r} not in {name}")
    rest = text[starts[occurrence]:]
    code = int(re.search(r"- exit code: (\d+)", rest).group(1))
    block = rest[: rest.find("\n- stderr")]
    if "- stdout: (empty)" in block:
        return code, ""
    out = re.search(r"- stdout \((\d+) bytes.*?\n```text\n(.*?)\n```", block, re.S)
    body = out.group(2) + "\n"
    assert len(body.encode()) == int(out.group(1)), (command, len(body), out.group(1))
    return code, body
