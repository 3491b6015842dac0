"""``mailplan show``: what the state file records, or what a saved plan holds.

Given a spec, the state is the spec's state file and the target host is named; given a
state file or a saved plan (JSON), that file is read. The state is shown as what
mailplan manages (domains, users, aliases, forwards, alias domains it created), the last
applies and the per-mailbox import counts; a plan as its changes and problems. Reading
only: nothing is contacted, no lock is taken, a pending journal is read, not folded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mailplan.errors import MailplanError, StateError
from mailplan.local_read import NotAFile, read_regular
from mailplan.names import human_size
from mailplan.plan import Plan
from mailplan.render import render_plan
from mailplan.shell import join
from mailplan.spec import mailplan_file
from mailplan.state import UNREAD, State
from mailplan.text import escape, marked

LABELS = {"alias": "aliases", "forward": "forwards", "alias_domain": "alias domains"}


def load_shown(path: Path, *, state_override: Path | None = None) -> dict[str, Any]:
    """The document ``show`` prints: ``{"kind": "state"|"plan", ...}``."""
    if not path.exists():
        raise MailplanError(f"{path}: no such file",
                            hint="give a spec, a state file (*.state.json) or a saved plan")
    if path.suffix != ".json":
        from mailplan.engine import state_path_for
        from mailplan.spec import load_spec

        spec = load_spec(path)
        state_path = state_path_for(spec, state_override)
        return state_document(state_path, target=spec.data["target"]["host"],
                              source=spec.data["source"]["host"], spec_path=spec.path)
    try:
        raw = json.loads(read_regular(path).decode("utf-8"))
    except NotAFile as exc:
        raise MailplanError(f"{path}: cannot read it: {exc}") from None
    except (OSError, ValueError) as exc:
        raise MailplanError(f"{path}: not readable as JSON ({exc})") from None
    if isinstance(raw, dict) and "plan_id" in raw and ("changes" in raw
                                                     or mailplan_file(raw) == "a saved plan"):
        # (a damaged one: said as apply says it, not as a state file given to --state)
        # read once: the document goes on to render, not the file's name
        return {"kind": "plan", "path": str(path), "plan": Plan.from_dict(raw, path).to_dict()}
    if mailplan_file(raw) is None and not path.name.endswith(".state.json"):
        # some other JSON (a wrong tab completion): no "damaged state file" to move aside
        raise MailplanError(f"{path}: neither a state file nor a saved plan of mailplan's",
                            hint="give a spec, a state file (*.state.json) or a saved plan "
                            "(mailplan plan SPEC -o PLAN.json)")
    return state_document(path, raw=raw)  # the file is not read a second time


def state_document(path: Path, *, target: str | None = None, source: str | None = None,
                   raw: Any = UNREAD, spec_path: Path | None = None) -> dict[str, Any]:
    """The state as ``show`` reports it; ``raw``: the state file's JSON, already read.
    Shown as the state of the spec at ``spec_path``, a state file of another spec is
    refused as plan, apply and verify refuse it (what it records is not this spec's)."""
    if raw is UNREAD and not path.exists():
        return {"kind": "state", "path": str(path), "exists": False, "target": target,
                "source": source, "managed": {}, "mail": {}, "history": []}
    state = State.load(path, fold=False, data=raw)
    if spec_path is not None:
        try:
            state.refuse_other_spec(spec_path)
        except StateError as exc:
            exc.hint = f"to look at that state file itself: mailplan show {join([str(path)])}; " \
                f"{exc.hint}"
            raise
    data = state.data
    managed: dict[str, Any] = {}
    for domain, body in sorted(data.get("managed", {}).items()):
        managed[domain] = {"created": body.get("created"), "users": sorted(body["users"])}
    for domain, kinds in sorted(data.get("routing", {}).items()):
        entry = managed.setdefault(domain, {"created": None, "users": []})
        for kind, names in kinds.items():
            entry[kind] = sorted(names)
    mail: dict[str, Any] = {}
    for key, box in sorted(data.get("mail", {}).items()):
        user, _, folder = key.partition("/")
        checkpoint = box.get("checkpoint") or {}
        imported = box.get("imported", 0)
        mail.setdefault(user, {})[folder or "INBOX"] = {
            "imported": imported, "bytes": box.get("bytes", 0),
            "complete_through_byte": checkpoint.get("offset"),
            # messages through the checkpoint that an apply found on the target and did
            # not import itself: a run killed before it journaled what its writer had
            # made durable, a state file made anew, a copy held in a second file (the
            # most any checkpoint counted: State keeps it when the source deletes mail)
            "found_on_target": max(0, int(box.get("found", 0)),
                                   int(checkpoint.get("count", 0)) - imported)}
    history = data.get("history", [])
    return {"kind": "state", "path": str(path), "exists": True, "target": target,
            "source": source, "lineage": state.lineage, "serial": state.serial,
            # as recorded: the path from the state file's directory (State.claim)
            "spec_path": data.get("spec_path"),
            "managed": managed, "mail": mail, "history": history,
            "last_apply": history[-1] if history else None}


def render_state(doc: dict[str, Any]) -> str:
    """The state document as text."""
    where = f" on {doc['target']}" if doc.get("target") else ""
    if not doc["exists"]:
        return (f"No state yet at {doc['path']}: nothing has been applied{where}.\n")
    out = [f"State {doc['path']} (lineage {doc['lineage']}, serial {doc['serial']})",
           f"For the spec {doc['spec_path']} (from the state file's directory)"
           if doc.get("spec_path") is not None else
           "For no spec yet (the next apply records its own)", ""]
    out.append(f"Managed by mailplan{where}:" if doc["managed"] else
               f"mailplan manages nothing{where} yet.")
    for domain, body in doc["managed"].items():
        created = f" (created {body['created']})" if body.get("created") else ""
        out.append(f"  {domain}{created}")
        if body["users"]:
            out.append(f"    users ({len(body['users'])}): {', '.join(body['users'])}")
        for kind, label in LABELS.items():
            if body.get(kind):
                out.append(f"    {label} ({len(body[kind])}): {', '.join(body[kind])}")
    last = doc["last_apply"]
    out.append("")
    if last:
        done = (f", {last['changes_done']} of {last.get('changes_planned', '?')} change(s)"
                if "changes_done" in last else "")
        out.append(f"Last apply: {last.get('result')}, started {last.get('started')}, "
                   f"finished {last.get('finished') or '-'}{done} "
                   f"({len(doc['history'])} apply(s) recorded)")
    else:
        out.append("No apply recorded.")
    if doc["mail"]:
        # the Maildir files' sizes: a plan and apply's progress count the mbox's bytes
        # (From_ lines and bookkeeping headers included), so these are fewer
        out += ["", "Mail imported (messages; bytes as stored in the Maildirs, without the "
                    "mbox's From_ lines and bookkeeping headers):"]
        for user, folders in doc["mail"].items():
            total = sum(f["imported"] for f in folders.values())
            size = sum(f["bytes"] for f in folders.values())
            parts = ", ".join(f"{marked(name)} {f['imported']}" for name, f in folders.items())
            found = {name: f["found_on_target"] for name, f in folders.items()
                     if f.get("found_on_target")}
            more = f"; {sum(found.values())} more found already on the target (" + ", ".join(
                f"{marked(name)} {n}" for name, n in found.items()) + ")" if found else ""
            out.append(f"  {user}: {total} message(s), {human_size(size)} ({parts}){more}")
    return "\n".join(escape(line) for line in out) + "\n"


def render(doc: dict[str, Any]) -> str:
    """A state or a plan document as text."""
    if doc["kind"] == "state":
        return render_state(doc)
    plan = doc["plan"]
    # the id, date and spec path are the file's text: a hand-edited plan may hold anything
    head = escape(f"Saved plan {doc['path']} (id {plan['plan_id']}, made {plan['created_at']}"
                  f", for {plan['spec']['path']}, state serial {plan['state']['serial']})")
    saved = Plan.from_dict(plan, doc["path"])
    return head + "\n\n" + render_plan(saved, target=saved.target_host or "the target")
