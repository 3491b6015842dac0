"""``source.mboxrd`` changed after an import: the plan warns, naming the folders.

Read in the other mode, a message holding a ``>From`` line has other bytes, so another
identity: a whole read of its mailbox (the old server rewrote it, ``--rescan``) imports
it again beside the copy already there (found by running it: two copies of each such
message on the target, verify passing). The state records the mode each mailbox's mail
was imported in; a plan in the other mode says so under its warnings.
"""

from __future__ import annotations

import json
import os

import yaml
from migration import SourceAccount, install_target, mailplan, make_source, write_spec

QUOTED = (b"From a@x.example Mon Jan  1 10:00:00 2001\nSubject: one\n\nx\n>From here\n\n"
          b"From a@x.example Mon Jan  1 11:00:00 2001\nSubject: two\n\ny\n\n")


def test_a_changed_mboxrd_mode_is_a_warning_of_the_plan(tmp_path):
    src = make_source(tmp_path / "source", [SourceAccount("rd", 1000, "Rd", "pw")])
    (src / "home/rd/mail").mkdir()
    for path in (src / "var/spool/mail/rd", src / "home/rd/mail/Sent "):
        path.write_bytes(QUOTED)
        os.utime(path, (1e9, 1e9))
    target = install_target(tmp_path / "target")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={"rd.example": {"import": {"uid_min": 1000}}})
    mailplan("apply", str(spec), "--auto-approve", check=True)
    state = json.loads((tmp_path / "m.state.json").read_text())
    assert [box["mboxrd"] for box in state["mail"].values()] == [False, False]
    data = yaml.safe_load(spec.read_text())
    data["source"]["mboxrd"] = True
    spec.write_text(yaml.safe_dump(data))
    out = mailplan("plan", str(spec), check=True).stdout
    assert ("! rd@rd.example: INBOX, 'Sent ': imported with source.mboxrd: false, the "
            "spec now says true: a message holding a >From line is read as another "
            "message") in " ".join(out.split()), out
    data["source"]["mboxrd"] = False  # back: as imported, nothing to say
    spec.write_text(yaml.safe_dump(data))
    out = mailplan("plan", str(spec), check=True).stdout
    assert "mboxrd" not in out and "No changes." in out, out
