"""Documentation cannot drift: the spec reference is generated, every schema key and every
CLI command is documented, the examples validate, shell completion is produced."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner
from conftest import repo_root

from mailplan import docs
from mailplan.cli import main
from mailplan.spec import load_schema, load_spec

ROOT = repo_root()


def test_spec_reference_is_generated_from_the_schema():
    committed = (ROOT / "docs/spec-reference.md").read_text(encoding="utf-8")
    assert committed == docs.generate(), "run: python3 -m mailplan.docs"
    assert docs.main(["--check"]) == 0


def test_check_fails_on_a_stale_reference(tmp_path, capsys):
    stale = tmp_path / "ref.md"
    stale.write_text(docs.generate().replace("Spec format version", "Spec version"))
    assert docs.main(["--check", "-o", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err


def test_every_schema_key_has_a_title_and_a_description():
    schema = load_schema("spec-v1.schema.json")
    assert schema["$id"].endswith("/spec-v1.schema.json")
    assert docs.undocumented(schema) == []
    paths = {path for path, _node, _req in docs.all_keys(schema)}
    assert {"source.virtusertable", "$defs.user.quota", "$defs.host.connect_timeout",
            "domains.<name>", "$defs.domain.aliases.<name>"} <= paths


def test_the_walker_finds_keys_without_documentation():
    schema = {"$id": "x", "properties": {
        "a": {"title": "A", "description": "a", "properties": {"b": {"title": "B"}}},
        "c": {"$ref": "#/$defs/d"}, "e": {"oneOf": [{"properties": {"f": {}}}]}},
        "$defs": {"d": {"title": "D", "description": "d", "additionalProperties": {}}}}
    assert docs.undocumented(schema) == ["a.b", "e", "e.f", "$defs.d.<name>"]
    assert docs.undocumented({"properties": {}}) == ["$id"]


EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def test_there_are_examples():
    assert ROOT / "examples/migration.yaml" in EXAMPLES


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_carry_the_schema_comment_and_validate(example):
    first = example.read_text(encoding="utf-8").splitlines()[0]
    match = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
    assert match, first
    assert (example.parent / match.group(1)).resolve() == (
        ROOT / "schemas/spec-v1.schema.json").resolve()
    load_spec(example)


def commands(group: click.Group, prefix: str = "mailplan") -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = [(prefix, group)]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            out += commands(command, f"{prefix} {name}")
        else:
            out.append((f"{prefix} {name}", command))
    return out


def test_the_command_walk_includes_subgroups():
    names = [name for name, _ in commands(main)]
    assert {"mailplan init", "mailplan show", "mailplan apply", "mailplan queue",
            "mailplan queue stat"} <= set(names)


@pytest.mark.parametrize(("name", "command"), commands(main), ids=lambda v: str(v))
def test_every_command_has_help_and_an_example(name, command):
    assert (command.help or "").strip(), f"{name} has no help text"
    assert "mailplan" in (command.epilog or "") and "Example" in command.epilog, (
        f"{name} has no example in its epilog")
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{name} {param.opts[0]} has no help"
    res = CliRunner().invoke(main, [*name.split()[1:], "--help"], prog_name="mailplan")
    assert res.exit_code == 0 and "Example" in res.output


@pytest.mark.parametrize(("shell", "marker"), [("bash", "complete -o nosort -F"),
                                               ("zsh", "#compdef mailplan")])
def test_completion_scripts_are_produced(shell, marker):
    res = CliRunner().invoke(main, [], prog_name="mailplan",
                             env={"_MAILPLAN_COMPLETE": f"{shell}_source"})
    assert res.exit_code == 0 and marker in res.output


def test_completion_completes_commands_and_subcommands():
    def complete(words: str, cword: int) -> str:
        return CliRunner().invoke(main, [], prog_name="mailplan", env={
            "_MAILPLAN_COMPLETE": "bash_complete", "COMP_WORDS": words,
            "COMP_CWORD": str(cword)}).output

    assert "plain,init" in complete("mailplan in", 1)
    assert "plain,stat" in complete("mailplan queue st", 2)


def test_docs_exist_and_cover_what_operators_hit():
    runbook = (ROOT / "docs/runbook.md").read_text(encoding="utf-8").lower()
    for topic in ("prerequisites", "first sync", "ttl", "cutover", "final sync", "mx",
                  "verify", "rollback"):
        assert topic in runbook, topic
    trouble = (ROOT / "docs/troubleshooting.md").read_text(encoding="utf-8").lower()
    for topic in ("host key", "unsupported", "quota", "not an mbox", "locked"):
        assert topic in trouble, topic
    completion = (ROOT / "docs/completion.md").read_text(encoding="utf-8")
    assert "_MAILPLAN_COMPLETE=bash_source" in completion
    assert "_MAILPLAN_COMPLETE=zsh_source" in completion


def test_readme_links_the_docs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for doc in ("docs/runbook.md", "docs/spec-reference.md", "docs/troubleshooting.md",
                "docs/performance.md"):
        assert doc in readme and (ROOT / doc).exists()




def test_an_installed_mailplan_neither_writes_nor_checks_a_reference_beside_itself(
        tmp_path, monkeypatch, capsys):
    """Installed in site-packages there is no checkout's docs/: --check said the file
    there was out of date, and without it a docs/ was made inside site-packages."""
    monkeypatch.setattr(docs, "REPO", tmp_path)
    monkeypatch.setattr(docs, "REFERENCE", tmp_path / "docs" / "spec-reference.md")
    assert docs.main(["--check"]) == 2
    assert docs.main([]) == 2
    assert not (tmp_path / "docs").exists()
    assert "is no checkout of mailplan" in capsys.readouterr().err
    out = tmp_path / "ref.md"
    assert docs.main(["-o", str(out)]) == 0 and docs.main(["--check", "-o", str(out)]) == 0


@pytest.mark.parametrize("name", ["plan", "apply", "verify"])
def test_the_help_of_each_command_a_signal_stops_names_its_exit_statuses(name):
    """README and runbook give 130, 143 and 129 for every command alike; --help of plan
    and apply named none."""
    res = CliRunner().invoke(main, [name, "--help"], terminal_width=200)
    assert res.exit_code == 0
    assert "130, 143" in " ".join(res.output.split()), res.output
