"""The change vocabulary and the plan: what apply will do, and its on-disk form.

A change is one of a small closed set of actions, each printed with its symbol
(``+`` create, ``~`` update, ``-`` delete). The reason attached to a change is for
display only; apply decides what to run from the action and kind. A saved plan holds no
secret: where a change carries one, only a digest is stored, so that applying a saved
plan notices when the password behind it changed.
"""

from __future__ import annotations

import json
import shlex
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema

from mailplan.desired import Problem
from mailplan.errors import MailplanError, StateError
from mailplan.local_read import read_regular
from mailplan.private_files import only_mine, write_private
from mailplan.spec import load_schema, mailplan_file
from mailplan.text import marked

PLAN_VERSION = 1
SYMBOLS = {"create": "+", "update": "~", "delete": "-"}
KINDS = ("domain", "catchall", "user", "password", "lock", "quota", "comment", "mailbox",
         "flags", "subscription", "alias", "forward", "alias_domain")  # the last three: routing
#: the kinds apply carries out through the writer agent, a user at a time (``flags``:
#: Maildir flags a message got on the old server after its import, added on the target;
#: ``subscription``: a folder's missing line added to the Maildir's subscription files)
MAIL_KINDS = ("mailbox", "flags", "subscription")


#: how the reason of a deletion ends: deletions are carried out only by ``apply --prune``
#: (whose plan shows them as applied), or selected by kind with ``--prune-only`` (whose
#: plan says which are selected and which left out: :mod:`mailplan.prune_select`)
PRUNE_NOTE = "(applied only with --prune)"


@dataclass(frozen=True)
class Change:
    """One change to the target."""

    action: str  # create | update | delete
    kind: str  # one of KINDS
    domain: str
    user: str | None = None
    before: str | None = None  # display values; never a secret
    after: str | None = None
    sensitive: bool = False
    fingerprint: str = ""  # digest of the secret inputs, if any
    reason: str = ""
    item: str | None = None  # what inside the address: a mail folder, for "mailbox"

    @property
    def id(self) -> str:
        """Stable identity of the change within a plan (used by the journal)."""
        who = f"{self.user}@{self.domain}" if self.user else self.domain
        return f"{self.action}-{self.kind}:{who}" + (f"/{self.item}" if self.item else "")

    @property
    def symbol(self) -> str:
        """The plan symbol of the action."""
        return SYMBOLS[self.action]

    @property
    def address(self) -> str:
        """``user@domain`` or the domain, then the folder if any (as output shows it:
        :func:`~mailplan.text.marked`)."""
        base = f"{self.user}@{self.domain}" if self.user else self.domain
        return f"{base} {marked(self.item)}" if self.item else base


@dataclass(frozen=True)
class Noop:
    """Something that needs no change, with the reason."""

    domain: str
    user: str | None
    reason: str


@dataclass
class PlanPart:
    """What one part of the plan found (the accounts' diff, routing, mail), before
    :func:`~mailplan.engine.make_plan` joins the parts into a :class:`Plan`: its
    changes, what needs none, and what cannot be migrated."""

    changes: list[Change] = field(default_factory=list)
    noops: list[Noop] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


@dataclass
class Plan:
    """The result of ``mailplan plan``."""

    spec_path: str
    spec_digest: str
    lineage: str | None
    serial: int
    target_digest: str
    changes: list[Change]
    noops: list[Noop] = field(default_factory=list)
    left_alone: list[Noop] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    #: migrated all the same, but the administrator should look (a mailbox over quota, an
    #: mbox message whose Content-Length could not be checked)
    warnings: list[Problem] = field(default_factory=list)
    #: the spec's target host, named by ``mailplan show`` (None: a plan saved before it
    #: was recorded)
    target_host: str | None = None
    #: the kinds of deletion selected with ``--prune-only`` (:mod:`mailplan.prune_select`):
    #: ``changes`` holds only those deletions, applied without ``--prune``; None: no
    #: selection, every deletion in ``changes``, applied only with ``--prune``
    prune_only: tuple[str, ...] | None = None
    #: the deletions a selection left out (not applied), for the plan to list
    left_out: list[Change] = field(default_factory=list)
    #: planned with ``--rescan``: every mailbox read whole, no checkpoint trusted (so
    #: flags set on the old server in place since the import are found); ``apply FILE``
    #: plans again the same way
    rescan: bool = False
    plan_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def counts(self) -> dict[str, int]:
        """How many changes of each action."""
        out = {"create": 0, "update": 0, "delete": 0}
        for change in self.changes:
            out[change.action] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (valid against schemas/plan-v1.schema.json)."""
        return {
            "format_version": PLAN_VERSION,
            "plan_id": self.plan_id,
            "created_at": self.created_at,
            "spec": {"path": self.spec_path, "sha256": self.spec_digest},
            "state": {"lineage": self.lineage, "serial": self.serial},
            "target_sha256": self.target_digest,
            **({"target_host": self.target_host} if self.target_host is not None else {}),
            "summary": self.counts(),
            "changes": [_change_doc(c) for c in self.changes],
            **({"prune_only": list(self.prune_only),
                "left_out": [_change_doc(c) for c in self.left_out]}
               if self.prune_only is not None else {}),
            **({"rescan": True} if self.rescan else {}),
            "noops": [asdict(n) for n in self.noops],
            "left_alone": [asdict(n) for n in self.left_alone],
            "problems": [_problem_doc(p) for p in self.problems],
            "warnings": [_problem_doc(w) for w in self.warnings],
        }

    def save(self, path: Path) -> None:
        """Write the plan as JSON, mode 0600 (it names every account)."""
        write_private(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> Plan:
        """Read a saved plan to apply it; refuse other format versions, invalid documents,
        and a file another user owns or group or others may write (what it records
        decides what apply does: the spec planned again, the ``--prune-only`` selection)."""
        mine = only_mine(path, "the saved plan", "what it records decides what apply does: "
                         "the spec it plans again, the deletions --prune-only selected",
                         "remove it, then save the plan again (`mailplan plan SPEC -o "
                         f"{shlex.quote(str(path))}`) and review it")
        try:
            data = json.loads(read_regular(path, check=mine).decode("utf-8"))
        except (OSError, ValueError) as exc:
            raise MailplanError(f"{path}: cannot read the saved plan: {exc}") from None
        return cls.from_dict(data, path)

    @classmethod
    def from_dict(cls, data: Any, path: Path | str) -> Plan:
        """A saved plan from its JSON document as read from ``path`` (named in errors),
        refused as :meth:`load` refuses it: for a reader that has read the file already
        (``mailplan show``), or holds what :meth:`to_dict` gave."""
        version = data.get("format_version") if isinstance(data, dict) else None
        if mailplan_file(data) == "a state file":
            raise StateError(f"{path}: this is a state file of mailplan's, not a saved plan",
                             hint="apply takes the spec, or a plan saved with `mailplan plan "
                             "SPEC -o PLAN.json`")
        if version != PLAN_VERSION:
            raise StateError(f"{path}: plan format version {version!r}; this mailplan "
                             f"reads version {PLAN_VERSION}")
        try:
            jsonschema.validate(data, load_schema("plan-v1.schema.json"))
        except jsonschema.ValidationError as exc:
            raise StateError(f"{path}: not a valid plan file: {exc.message}") from None
        fields = {f for f in Change.__dataclass_fields__}
        selected = data.get("prune_only")
        return cls(
            spec_path=data["spec"]["path"], spec_digest=data["spec"]["sha256"],
            lineage=data["state"]["lineage"], serial=data["state"]["serial"],
            target_digest=data["target_sha256"], target_host=data.get("target_host"),
            changes=[Change(**{k: v for k, v in c.items() if k in fields})
                     for c in data["changes"]],
            noops=[Noop(**n) for n in data["noops"]],
            left_alone=[Noop(**n) for n in data["left_alone"]],
            problems=[Problem(**p) for p in data["problems"]],
            warnings=[Problem(**w) for w in data.get("warnings", [])],
            prune_only=tuple(selected) if selected is not None else None,
            left_out=[Change(**{k: v for k, v in c.items() if k in fields})
                      for c in data.get("left_out", [])],
            rescan=bool(data.get("rescan", False)),
            plan_id=data["plan_id"], created_at=data["created_at"],
        )


def _problem_doc(problem: Problem) -> dict[str, Any]:
    """One problem or warning as the plan's JSON holds it (its kind only where it has
    one: the documents of earlier versions are unchanged)."""
    doc = asdict(problem)
    return doc if problem.kind is not None else {k: v for k, v in doc.items() if k != "kind"}


def _change_doc(change: Change) -> dict[str, Any]:
    """One change as the plan's JSON holds it."""
    return {"id": change.id, "symbol": change.symbol, **asdict(change)}

