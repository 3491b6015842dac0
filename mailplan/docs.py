"""Generate ``docs/spec-reference.md`` from the spec's JSON Schema, so it cannot drift.

``python3 -m mailplan.docs`` rewrites the file; ``python3 -m mailplan.docs --check``
exits 1 when the committed file differs from what the schema gives (the test suite runs
the same comparison). :func:`undocumented` lists every key of the schema that lacks a
title or a description; the generator refuses to run while there is one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mailplan.spec import load_schema

SCHEMA = "spec-v1.schema.json"
REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "docs" / "spec-reference.md"
COMBINATORS = ("oneOf", "anyOf", "allOf", "not")


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return schema["$defs"][ref.split("/")[-1]]
    return node


def _documented(schema: dict[str, Any], node: dict[str, Any]) -> bool:
    target = _resolve(schema, node)
    return all(node.get(k) or target.get(k) for k in ("title", "description"))


def _keys(schema: dict[str, Any], node: Any, path: str,
          known: frozenset[str] = frozenset()) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(path, schema, required) of every key below ``node``; combinator branches only add keys
    their parent does not already document (the rest are constraints on those keys)."""
    if not isinstance(node, dict):
        return
    props = node.get("properties", {})
    for name, sub in props.items():
        if name not in known:
            yield f"{path}.{name}" if path else name, sub, name in node.get("required", [])
        yield from _keys(schema, sub, f"{path}.{name}" if path else name)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        yield f"{path}.<name>", extra, False
        yield from _keys(schema, extra, f"{path}.<name>")
    if isinstance(node.get("items"), dict):
        yield from _keys(schema, node["items"], f"{path}[]")
    inherited = known | frozenset(props)
    for word in COMBINATORS:
        branches = node.get(word, [])
        for branch in branches if isinstance(branches, list) else [branches]:
            yield from _keys(schema, branch, path, inherited)


def all_keys(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any], bool]]:
    """Every key of the spec (top level and each ``$defs`` entry), with required."""
    out = list(_keys(schema, schema, ""))
    for name, node in schema.get("$defs", {}).items():
        out.append((f"$defs.{name}", node, False))
        out += list(_keys(schema, node, f"$defs.{name}"))
    return out


def undocumented(schema: dict[str, Any]) -> list[str]:
    """Paths of keys without a title or a description."""
    missing = [] if schema.get("$id") else ["$id"]
    return missing + [path for path, node, _ in all_keys(schema)
                      if not _documented(schema, node)]


def _type(schema: dict[str, Any], node: dict[str, Any]) -> str:
    if "$ref" in node:
        name = node["$ref"].split("/")[-1]
        return f"[{_resolve(schema, node)['title']}](#{_anchor('$defs.' + name)})"
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "enum" in node:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    if "oneOf" in node:
        return " or ".join(_type(schema, b) for b in node["oneOf"])
    kind = node.get("type", "any")
    if kind == "array" and isinstance(node.get("items"), dict):
        return f"list of {_type(schema, node['items'])}"
    if kind == "object" and node.get("properties") and len(node["properties"]) == 1:
        (only,) = node["properties"]
        return f"`{{{only}: ...}}`"
    return str(kind)


def _anchor(path: str) -> str:
    return "".join(c for c in path.lower().replace(".", "-") if c.isalnum() or c in "-_")


def _section(schema: dict[str, Any], path: str, node: dict[str, Any],
             required: bool) -> list[str]:
    target = _resolve(schema, node)
    title = node.get("title") or target.get("title")
    description = node.get("description") or target.get("description")
    facts = [f"type: {_type(schema, node)}"]
    for word in ("default", "pattern", "minimum", "maximum", "minLength", "maxLength"):
        if word in node:
            facts.append(f"{word}: `{json.dumps(node[word])}`")
    if required:
        facts.append("**required**")
    return [f'<a id="{_anchor(path)}"></a>', f"### `{path}`", "", f"**{title}.** {description}",
            "", "; ".join(facts), ""]


def generate() -> str:
    """The Markdown reference."""
    schema = load_schema(SCHEMA)
    missing = undocumented(schema)
    if missing:
        raise SystemExit("undocumented schema keys: " + ", ".join(missing))
    out = ["# Spec reference", "",
           "<!-- Generated from schemas/spec-v1.schema.json by `python3 -m mailplan.docs`;",
           "     do not edit by hand (a test fails when this file and the schema differ). -->",
           "", f"**{schema['title']}.** {schema['description']}", "",
           f"Schema `$id`: `{schema['$id']}`. Editors that speak the YAML language server "
           "complete and check a spec whose first line is", "",
           "```yaml", "# yaml-language-server: $schema=./schemas/spec-v1.schema.json", "```",
           "", "(the path relative to the spec, here one at the top of a mailplan checkout; "
           "`mailplan init` writes that only when the schema lies in the spec's own "
           "directory tree, else the installed schema's absolute path).",
           "", "## Keys", ""]
    defs = []
    for path, node, required in all_keys(schema):
        if not path.startswith("$defs."):
            out += _section(schema, path, node, required)
        elif "." in path.removeprefix("$defs."):
            defs += _section(schema, path, node, required)
        else:
            defs += [f'<a id="{_anchor(path)}"></a>', f"### {node['title']} (`{path}`)", "",
                     node["description"], ""]
    return "\n".join(out + ["## Shared definitions", ""] + defs).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) docs/spec-reference.md."""
    parser = argparse.ArgumentParser(prog="python3 -m mailplan.docs", description=__doc__)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the file differs from the schema")
    parser.add_argument("-o", "--out", type=Path, default=REFERENCE)
    args = parser.parse_args(argv)
    if args.out == REFERENCE and not (REPO / "pyproject.toml").is_file():
        # an installed mailplan (site-packages): there is no docs/ of the checkout to
        # write or compare, and a docs/ made there would be a stray package directory
        print(f"python3 -m mailplan.docs: {REPO} is no checkout of mailplan (this mailplan "
              "is installed there): run it in the checkout's top directory, or give -o FILE",
              file=sys.stderr)
        return 2
    text = generate()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run python3 -m mailplan.docs", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
