"""A spec, saved plan or state file named on the command line that is no regular file
(a named pipe, a device, a directory), or a spec too large to be one, is refused at once
naming the file and what it is: a named pipe made validate, plan, apply and show wait
forever for a writer, and a spec of 300 MB was read for over a minute."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mailplan.errors import SpecError
from mailplan.local_read import SPEC_LIMIT
from mailplan.spec import load_spec


def run(*args: str) -> subprocess.CompletedProcess[str]:
    # the timeout: without the fix, each of these waited for a writer forever
    return subprocess.run([sys.executable, "-m", "mailplan", *args], capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.parametrize("command, name, said", [
    (("validate",), "m.yaml", "cannot read the spec"),
    (("plan",), "m.yaml", "cannot read the spec"),
    (("apply", "--auto-approve"), "m.yaml", "cannot read the spec"),
    (("apply", "--auto-approve"), "plan.json", "cannot read the saved plan"),
    (("show",), "m.state.json", "cannot read it"),
    (("show",), "m.yaml", "cannot read the spec"),
])
def test_a_named_pipe_is_refused_at_once(tmp_path, command, name, said):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    res = run(*command, str(fifo))
    assert res.returncode == 1, res.stderr
    assert f"Error: {fifo}: {said}: it is a named pipe (FIFO), not a regular file" \
        in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("where, kind", [("/dev/null", "a character device"),
                                         (None, "a directory")])
def test_a_spec_that_is_a_device_or_directory_is_said_so(tmp_path, where, kind):
    path = where or str(tmp_path)
    with pytest.raises(SpecError, match=f"^{path}: cannot read the spec: it is {kind}, not "
                       "a regular file\n  hint: give the spec file itself"):
        load_spec(path)


def test_a_spec_past_the_limit_is_refused_naming_its_size_and_the_limit(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_bytes(b"# " + b"x" * SPEC_LIMIT + b"\n")
    with pytest.raises(SpecError, match=f"^{path}: cannot read the spec: it is 8.0 MB, "
                       "more than the 8.0 MB a spec may be\n  hint: "):
        load_spec(path)
    path.write_bytes(b"#" * (SPEC_LIMIT // 2 * 3))
    with pytest.raises(SpecError, match="it is 12.0 MB, more than the 8.0 MB a spec may be"):
        load_spec(path)


def test_a_state_file_that_is_a_named_pipe_is_no_damaged_file(tmp_path):
    """(in a process of its own: without the fix it waited forever)"""
    fifo = tmp_path / "m.state.json"
    os.mkfifo(fifo)
    res = subprocess.run([sys.executable, "-c", "import sys\nfrom pathlib import Path\n"
                          "from mailplan.state import State\n"
                          "try:\n    State.load(Path(sys.argv[1]), fold=False)\n"
                          "except Exception as exc:\n    print(type(exc).__name__, exc)",
                          str(fifo)], capture_output=True, text=True, timeout=60,
                         check=False)
    assert res.stdout == (f"StateError {fifo}: cannot read the state file: it is a named "
                          "pipe (FIFO), not a regular file\n"), res.stdout + res.stderr
