"""plan_mail with no mailbox to read: no migrated user's mail (``import_mail: false``)."""

from __future__ import annotations

from mailplan.connectors.local import LocalConnector
from mailplan.desired import Catchall, Desired, DesiredDomain, DesiredUser
from mailplan.facts.source import SourceFacts
from mailplan.facts.vpopmail import TargetFacts
from mailplan.mailboxes import plan_mail


class Watched(LocalConnector):
    """This machine, noting each stream set up and each command started."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.used: list[str] = []

    def prepare_streams(self) -> None:
        self.used.append("prepare_streams")

    def start(self, command: str):  # a Process, as the base's
        self.used.append(command)
        return super().start(command)


def test_a_plan_with_no_mail_to_import_touches_neither_host():
    """A domain whose mail is not imported gives no mailbox to read: the plan has no
    changes and reads nothing on either host (no stream set up, no command run)."""
    user = DesiredUser("u", "d.example", "u", "x", None, "")  # type: ignore[arg-type]
    desired = Desired({"d.example": DesiredDomain("d.example", None, Catchall("bounce"),
                                                  {"u": user}, import_mail=False)}, [])
    source, target = Watched("old"), Watched("new")
    spec = {"source": {"spool": "/nonexistent/spool"}, "target": {}}
    out = plan_mail(spec, source, target, desired,
                    SourceFacts("old", "/etc/passwd", "/etc/shadow", {}), TargetFacts("new"), {})
    assert (out.changes, out.jobs, out.problems, out.warnings) == ([], {}, [], [])
    assert (source.used, target.used) == ([], [])
    assert [(n.domain, n.user, n.reason) for n in out.noops] == [
        ("d.example", None, "mail is not imported: import_mail is false in the spec")]
