"""The helper the kill tests share (migration.kill_apply_when) watches a running apply's
journal, which the apply removes as it ends: an apply that ends before the journal is
ready is waited for, not a failure of the test that started it."""

from __future__ import annotations

import json
import time
from pathlib import Path

from migration import (
    SourceAccount,
    install_target,
    kill_apply_when,
    make_source,
    unique_domain,
    write_spec,
)


def test_an_apply_that_ends_while_its_journal_is_read_is_waited_for(tmp_path, monkeypatch):
    src = make_source(tmp_path / "source", [SourceAccount("ann", 1001, "Ann", "AnnPw1!q")])
    spec = write_spec(tmp_path / "m.yaml", source_root=src,
                      target=install_target(tmp_path / "target"),
                      domains={unique_domain("kill"): {"import": {"uid_min": 1000}}})
    read = Path.read_bytes

    def slow_read(path: Path) -> bytes:
        if path.name == "m.state.json.journal":
            time.sleep(0.3)  # the apply ends (and removes it) between a look and the read
        return read(path)

    monkeypatch.setattr(Path, "read_bytes", slow_read)
    kill_apply_when(spec, lambda journal: False)
    monkeypatch.undo()
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert [run["result"] for run in state["history"]] == ["ok"]  # ended, never killed
