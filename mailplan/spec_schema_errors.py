"""How a spec's schema errors are said: the first of jsonschema's errors, in words.

jsonschema names the check that failed ("'x' is not of type 'integer'"); an
administrator needs what the key takes, in words (:data:`_FRIENDLY` for the keys whose
schema says it badly), what YAML made of the value written (``0123``, ``yes``), and
never a password hash in the text. :func:`schema_error` picks the error to show
(an unknown or missing key before what is inside it) and words it. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jsonschema

from mailplan.spec_yaml import JsonPath, exponent_as_text, yaml_flow, yaml_words

_FRIENDLY = [
    (re.compile(r"(default_quota|quota)$"), "expected a size like 500M, 1G, 2.5G or unlimited"),
    (re.compile(r"unknown_recipients$"),
     "expected bounce, delete, {forward: address} or {deliver_to: user}"),
    (re.compile(r"^hosts\.[^.]+$"),
     "a host is either {local: true} or an SSH host with address: (either may have sudo, "
     "python, retries, retry_delay, command_timeout; an SSH host also user, port, "
     "identity_file, known_hosts, accept_new_host_key, connect_timeout, stream_transport)"),
    (re.compile(r"password$"), "expected exactly one of env: VAR, file: PATH, hash: CRYPT, "
     "source: true"),
    (re.compile(r"import_aliases$"), "expected true, false or {include: [...], exclude: [...]}"),
    (re.compile(r"^source\.folders$"), "expected a directory relative to each user's home "
     "(mail, not ~/mail) or an absolute path with %u for the account (/home/%u/mail)"),
    (re.compile(r"^source\.aliases$"), "expected an absolute path or a list of absolute "
     "paths (sendmail's aliases files, in the order it reads them)"),
    (re.compile(r"^domains$"), "expected a mapping of one domain or more (example.com: "
     "{...}); to remove the last one on the target, run vdeldomain there by hand"),
    (re.compile(r"^hosts\.[^.]+\.python$"), "expected a command name like python3 or an "
     "absolute path like /usr/bin/python3 (letters, digits and _ . / + -, not starting with -)"),
]


def secret_path(path: JsonPath) -> bool:
    """Whether ``path`` leads into a password reference, whose ``hash:`` is a secret."""
    return any(isinstance(p, str) and p.endswith("password") for p in path)


def _schema_message(err: jsonschema.ValidationError,
                    written: dict[JsonPath, str]) -> tuple[str, JsonPath, bool]:
    path: JsonPath = tuple(err.absolute_path)
    dotted = ".".join(str(p) for p in path)
    if secret_path(path):  # jsonschema's messages quote the value: a hash is never shown
        for pattern, text in _FRIENDLY:
            if pattern.search(dotted):
                return text, path, False
        if err.validator == "type":
            return (f"{_expected(err)} here (the value is not shown: it may be a password "
                    "hash)", path, False)
        return (f"not a valid password reference here ({err.validator} check of the "
                "schema; the value is not shown)", path, False)
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        allowed = ", ".join(sorted(err.schema.get("properties", {})))
        return (f"unknown key {extra[0]!r} (allowed here: {allowed})", (*path, extra[0]),
                True)
    if err.validator == "required":
        return f"missing required key: {err.message.split(' is ')[0]}", path, False
    for pattern, text in _FRIENDLY:
        if err.validator in ("oneOf", "anyOf", "maxProperties", "minProperties",
                             "pattern", "type") and pattern.search(dotted):
            return f"{text} (got {yaml_flow(err.instance)})", path, False
    if err.validator == "type":
        text = written.get(path)
        if text is not None and "string" in err.schema["type"] \
                and not isinstance(err.instance, bool):  # yes/no: yaml_words says so
            return (f"{_expected(err)}, got {text}, which YAML reads as "
                    f"{_read_as(err.instance)}: quote it ('{text}')", path, False)
        how = exponent_as_text(err.instance, err.schema["type"])  # 1e308
        return (f"{_expected(err)}, got {yaml_words(err.instance)}"
                + (f", {how}" if how else ""), path, False)
    if err.validator == "pattern":
        return (f"{yaml_words(err.instance)} does not have the form this key takes "
                f"(the pattern {err.schema['pattern']})", path, False)
    if err.validator == "const" and path == ("version",):
        got = err.instance
        if isinstance(got, str) and got.strip() == "1":
            return ("the version is the number 1, not text (write version: 1, without "
                    "quotes)", path, False)
        shown = got if isinstance(got, int | float) and not isinstance(got, bool) \
            else yaml_words(got)
        return (f"unsupported spec version {shown}; this mailplan reads version 1",
                path, False)
    return err.message, path, False


def _read_as(value: object) -> str:
    """What YAML made of an unquoted value: ``the number 83``, ``a date``."""
    if isinstance(value, int | float):
        return f"the number {value}"
    return "a date" if hasattr(value, "year") else yaml_words(value)


_TYPE_WORDS = {"string": "text", "boolean": "true or false", "array": "a list",
               "object": "a mapping of keys", "integer": "a whole number",
               "number": "a number", "null": "nothing"}


def _expected(err: jsonschema.ValidationError) -> str:
    """What a ``type`` check wanted, in words."""
    wanted = err.schema["type"]
    if isinstance(wanted, list):
        return "expected " + " or ".join(_TYPE_WORDS.get(w, w) for w in wanted)
    return f"expected {_TYPE_WORDS.get(wanted, wanted)}"


_PRIORITY = {"additionalProperties": 0, "required": 1, "maxProperties": 2, "minProperties": 2,
             "oneOf": 3}


def schema_error(errors: Sequence[jsonschema.ValidationError],
                 written: dict[JsonPath, str]) -> tuple[str, JsonPath, bool]:
    """The error of ``errors`` (not empty) to show, worded: its message, the path it is
    at, and whether it is said at the key (an unknown key) rather than its value."""
    first = min(errors, key=lambda e: (_PRIORITY.get(str(e.validator), 9),
                                       -len(e.absolute_path), list(map(str, e.absolute_path))))
    return _schema_message(first, written)
