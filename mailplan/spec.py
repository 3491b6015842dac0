"""Read a migration spec: YAML with line numbers, validated against schemas/.

Every error names the file, line and column, the key path and what was expected, and
is raised before any host is contacted. Semantic checks that need no network (host
references, vpopmail name rules, duplicate addresses) run here too; checks that need the
source's accounts run when the desired state is built.
"""

from __future__ import annotations

import json
import os
import zoneinfo
from dataclasses import dataclass, field
from datetime import tzinfo
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from mailplan.errors import SpecError
from mailplan.names import MAX_GECOS, domain_problem, parse_size, user_problem
from mailplan.spec_schema_errors import schema_error, secret_path
from mailplan.spec_yaml import JsonPath, key_path, parse_yaml, spec_text
from mailplan.text import has_control

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
SPEC_VERSION = 1


@cache
def load_schema(name: str) -> dict[str, Any]:
    """One of the JSON Schemas shipped in schemas/."""
    return json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))


@dataclass
class Spec:
    """A loaded, validated spec: plain data plus where each value stood in the file."""

    path: Path
    data: dict[str, Any]
    marks: dict[JsonPath, tuple[int, int]] = field(repr=False)

    key_marks: dict[JsonPath, tuple[int, int]] = field(default_factory=dict, repr=False)
    #: plain scalars YAML did not read as text, as written (0123, 12:30, 2024-01-01)
    written: dict[JsonPath, str] = field(default_factory=dict, repr=False)
    #: the sha256 (hex) of the bytes parsed: the plan's ``spec.sha256``
    digest: str = field(default="", repr=False)

    def error(self, message: str, path: JsonPath, *, hint: str | None = None,
              at_key: bool = False) -> SpecError:
        """A SpecError pointing at the value of ``path`` (or at its key, ``at_key``)."""
        line, col = self.mark(path, at_key=at_key)
        return SpecError(message, file=str(self.path), line=line, column=col,
                         key=key_path(path), hint=hint)

    def mark(self, path: JsonPath, *, at_key: bool = False) -> tuple[int | None, int | None]:
        """Line and column of the value of ``path`` (or of its key), or of the nearest
        enclosing one the YAML marks hold."""
        probe = tuple(path)
        marks = self.key_marks if at_key and probe in self.key_marks else self.marks
        while probe and probe not in marks:
            probe = probe[:-1]
        return marks.get(probe, (None, None))

    def resolve(self, relative: str) -> Path:
        """A path from the spec, relative to the spec's directory."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else self.path.parent / p


def mailplan_file(data: object) -> str | None:
    """What a document mailplan wrote is, to say so where another file was expected:
    ``"a saved plan"``, ``"a state file"``, or None (not one of mailplan's)."""
    if not isinstance(data, dict) or "format_version" not in data:
        return None
    return "a saved plan" if "plan_id" in data else "a state file" if "lineage" in data \
        else None


def load_spec(path: str | Path) -> Spec:
    """Read, parse and validate a spec file; raise SpecError on the first problem."""
    file = Path(path)
    text, digest = spec_text(file)
    data, marks, key_marks, written = parse_yaml(text, str(file))
    spec = Spec(file, data, marks, key_marks, written, digest)
    if not isinstance(data, dict):
        raise spec.error("the spec must be a mapping of keys (version, hosts, ...)", ())
    if "version" not in data and (what := mailplan_file(data)):
        # a file mailplan wrote, given where the spec goes
        raise SpecError(f"this is {what} of mailplan's, not a spec", file=str(file),
                        hint="give the spec (migration.yaml); a saved plan is applied "
                        "with `mailplan apply PLAN.json` and shown, as a state file "
                        "is, with `mailplan show FILE`")
    validator = jsonschema.Draft202012Validator(load_schema("spec-v1.schema.json"))
    errors = list(validator.iter_errors(data))
    if errors:
        message, where, at_key = schema_error(errors, spec.written)
        raise spec.error(message, where, at_key=at_key)
    _check_semantics(spec)
    _host_files(spec)
    return spec


def _host_files(spec: Spec) -> None:
    """A host's ``identity_file`` and ``known_hosts`` as absolute paths: a relative one
    is relative to the spec file (as a password ``file:`` and ``state`` are), not to the
    directory mailplan happens to run in."""
    for entry in spec.data["hosts"].values():
        for key in ("identity_file", "known_hosts"):
            if key in entry:
                entry[key] = os.path.abspath(spec.resolve(entry[key]))


def _control_characters(spec: Spec, value: object, where: JsonPath) -> None:
    """Paths, names and addresses never hold NUL or other control characters; a number
    is never YAML's ``.nan`` (which passes every minimum and maximum)."""
    if isinstance(value, dict):
        for key, item in value.items():
            _control_characters(spec, key, where)
            _control_characters(spec, item, (*where, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _control_characters(spec, item, (*where, i))
    elif isinstance(value, float) and value != value:
        raise spec.error("expected a number, got .nan (not a number)", where)
    elif isinstance(value, str) and has_control(value) \
            and not (where and where[-1] == "comment"):
        shown = "the value (not shown)" if secret_path(where) else repr(value)
        raise spec.error(f"{shown} contains a control character (NUL, newline, ...)", where)


def keeps_passwords(data: dict[str, Any]) -> bool:
    """``target.passwords: create_only``: passwords are set only when mailplan creates a
    user or domain, never changed afterwards."""
    return bool(data["target"].get("passwords") == "create_only")


def folder_names(data: dict[str, Any]) -> str:
    """``target.folder_names``: how the target's IMAP server names folder directories on
    disk (``utf7``: modified UTF-7, dovecot and courier-imap before 5; ``utf8``:
    courier-imap 5 and later; see :mod:`mailplan.mail.maildir`)."""
    return str(data["target"].get("folder_names", "utf7"))


def zone_named(name: str) -> tzinfo:
    """The IANA time zone ``name`` (from this machine's time zone database); ValueError
    when there is none of that name."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone this machine knows (an IANA name "
                         "such as Europe/Berlin; Debian's tzdata package has them)") from None


def _check_semantics(spec: Spec) -> None:
    data = spec.data
    _control_characters(spec, {k: v for k, v in data.items() if k != "domains"}, ())
    for role in ("source", "target"):
        name = data[role]["host"]
        if name not in data["hosts"]:
            known = ", ".join(sorted(data["hosts"]))
            raise spec.error(f"host {name!r} is not defined in hosts (defined: {known})",
                             (role, "host"))
    if "root" in data["source"] and not data["hosts"][data["source"]["host"]].get("local"):
        raise spec.error("source.root is read on this machine: it needs a source host "
                         f"with local: true ({data['source']['host']!r} is reached over "
                         "SSH)", ("source", "root"),
                         hint="mount or copy the old server's disk here and read it with "
                         "a local host, or leave root out")
    if "timezone" in data["source"]:
        try:
            zone_named(data["source"]["timezone"])
        except ValueError as exc:
            raise spec.error(str(exc), ("source", "timezone")) from None
    seen_domains: dict[str, str] = {}
    for domain, body in data["domains"].items():
        lowered = domain.lower()
        problem = domain_problem(lowered)
        if problem:
            raise spec.error(f"{domain!r} is not a domain vpopmail can serve: {problem}",
                             ("domains", domain), at_key=True)
        if lowered in seen_domains:
            raise spec.error(f"domain {domain!r} is the same as {seen_domains[lowered]!r} "
                             "(domain names are case-insensitive)", ("domains", domain),
                             at_key=True)
        seen_domains[lowered] = domain
        _check_domain(spec, domain, body or {})
    from mailplan.routing.config import check_routing_spec  # routing keys (issue 4)

    check_routing_spec(spec)


def _check_hash(spec: Spec, ref: Any, where: JsonPath) -> None:
    """A ``hash:`` reference is one vpopmail's crypt(3) can verify (checked here, so that
    ``validate`` says so, not only ``plan``); the message never shows the hash."""
    if isinstance(ref, dict) and "source" in ref and where[-1] == "postmaster_password":
        raise spec.error("the postmaster has no account on the source to take a password "
                         "from (source: true is for users)", (*where, "source"),
                         hint="give the postmaster's password as env, file or hash")
    if isinstance(ref, dict) and "hash" in ref:
        from mailplan.facts.hashes import classify

        info = classify(ref["hash"])
        if not info.usable:
            raise spec.error(f"this hash cannot be used: {info.detail}", (*where, "hash"))


def _check_domain(spec: Spec, domain: str, body: dict[str, Any]) -> None:
    """What the schema cannot say of one domain: usable hashes, readable quotas, user
    names vpopmail accepts and that differ in more than case, storable comments."""
    _check_hash(spec, body.get("postmaster_password"), ("domains", domain,
                                                         "postmaster_password"))
    if "default_quota" in body:
        _check_size(spec, body["default_quota"], ("domains", domain, "default_quota"))
    seen: dict[str, int] = {}
    made_from: dict[str, int] = {}
    for i, user in enumerate(body.get("users", [])):
        _check_user(spec, domain, i, user, seen)
        _check_source_once(spec, domain, i, user, made_from)
    _control_characters(spec, body, ("domains", domain))  # aliases, catch-all, ...
    imp = body.get("import")
    if imp and imp.get("uid_min", 1000) > imp.get("uid_max", 59999):
        raise spec.error("uid_min is larger than uid_max", ("domains", domain, "import"))
    target = body.get("unknown_recipients")
    if isinstance(target, dict) and "deliver_to" in target:
        problem = user_problem(target["deliver_to"].lower())
        if problem:
            raise spec.error(f"not a valid user name: {problem}",
                             ("domains", domain, "unknown_recipients", "deliver_to"))


def _check_source_once(spec: Spec, domain: str, index: int, user: dict[str, Any],
                       made_from: dict[str, int]) -> None:
    """No two users of a domain are made from one source account (``made_from``: the
    accounts so far and the index of their user): its mail would be copied into both,
    while its aliases and ~/.forward lead to one of them only."""
    users = ("domains", domain, "users")
    account = user.get("from", user["name"])
    if account in made_from:
        other = spec.data["domains"][domain]["users"][made_from[account]]["name"]
        line = spec.mark((*users, made_from[account]))[0]
        raise spec.error(
            f"users {other!r} (line {line}) and {user['name']!r} are both made from source "
            f"account {account!r}: its mail would be copied into both, and the aliases and "
            "~/.forward that name it would lead to one of them only",
            (*users, index, "from" if "from" in user else "name"),
            hint=f"migrate it once; another address for it is an alias: aliases: "
            f"{{{user['name']}: [{other}]}}")
    made_from[account] = index


def _check_size(spec: Spec, value: Any, where: JsonPath) -> None:
    """A quota the spec gives is one :func:`parse_size` reads."""
    try:
        parse_size(value)
    except ValueError as exc:
        raise spec.error(str(exc), where) from None


def _check_user(spec: Spec, domain: str, index: int, user: dict[str, Any],
                seen: dict[str, int]) -> None:
    """One user of a domain: a name vpopmail accepts, not postmaster's, not another
    user's of the domain (``seen``: the names so far, lower case, and their index), and
    a hash, quota and comment vpopmail can store."""
    where = ("domains", domain, "users", index)
    name = user["name"]
    problem = user_problem(name.lower())
    if problem:
        raise spec.error(f"user name {name!r} is not acceptable: {problem}", (*where, "name"))
    if name.lower() == "postmaster":
        raise spec.error("postmaster is vpopmail's own account, created with the domain; "
                         "set its password with postmaster_password", (*where, "name"))
    if name.lower() in seen:
        first = spec.marks.get(("domains", domain, "users", seen[name.lower()]), (0, 0))[0]
        raise spec.error(f"two users map to {name.lower()}@{domain.lower()} (the other is "
                         f"at line {first}; names are case-insensitive)", (*where, "name"))
    seen[name.lower()] = index
    _control_characters(spec, user, where)  # spool and folders paths, ...
    _check_hash(spec, user.get("password"), (*where, "password"))
    if "quota" in user:
        _check_size(spec, user["quota"], (*where, "quota"))
    comment = user.get("comment")
    if comment is not None and (":" in comment or has_control(comment)):
        raise spec.error("a comment cannot contain ':', a newline or another control "
                         "character (vpopmail stores it in a colon-separated line)",
                         (*where, "comment"))
    if comment is not None and len(comment.encode()) > MAX_GECOS:
        raise spec.error(f"a comment is at most {MAX_GECOS} bytes (vpopmail's limit); "
                         f"this one is {len(comment.encode())} in UTF-8", (*where, "comment"))
