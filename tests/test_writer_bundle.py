"""The writer as it is sent: its parts (mailplan.mail.writer) joined into one script that
means what the parts mean imported one by one."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
from migration import TEST_PYTHON

from mailplan import interpreter
from mailplan.mail import agent
from mailplan.mail.agent_client import agent_source
from mailplan.mail.writer import bundle
from mailplan.mail.writer.bundle import PARTS, part_path
from mailplan.mail.writer.proto import AGENT_MARK

WRITER = "mailplan.mail.writer."


def _tree(name: str) -> ast.Module:
    return ast.parse(part_path(name).read_text())


def _defined(tree: ast.Module) -> set[str]:
    """The names a module's own top-level statements define (not those it imports)."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return names - {"TYPE_CHECKING"}  # the same False in every part


def _imported(tree: ast.Module) -> dict[str, str]:
    """Name -> what it is bound to, of a module's top-level imports not of mailplan."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            out.update({a.asname or a.name.partition(".")[0]: a.name for a in node.names})
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__" \
                and not node.module.startswith("mailplan"):
            out.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
    return out


def test_the_script_is_headed_by_its_one_future_import_and_made_once():
    source = agent_source()
    tree = ast.parse(source)
    first = tree.body[0]
    assert isinstance(first, ast.ImportFrom) and first.module == "__future__"
    assert [a.name for a in first.names] == ["annotations"]
    assert sum(isinstance(n, ast.ImportFrom) and n.module == "__future__"
               for n in ast.walk(tree)) == 1
    # an agent is told by its command line: the protocol's first line is in the script
    assert b"Target-side Maildir writer: a self-contained" in source.encode()
    assert agent_source() is source  # joined once per process


def test_each_part_imports_only_names_an_earlier_part_defines():
    """What a part imports of mailplan is a name an earlier part defines itself, under the
    same name: in the script, where those imports are left out, it is defined before it is
    used."""
    for i, name in enumerate(PARTS):
        for node in ast.walk(_tree(name)):
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("mailplan") for a in node.names), name
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith(
                    "mailplan"):
                continue
            source = node.module.removeprefix(WRITER)
            assert source in PARTS[:i], f"{name} imports from {node.module}"
            for alias in node.names:
                assert alias.asname is None, f"{name} imports {alias.name} as {alias.asname}"
                assert alias.name in _defined(_tree(source)), f"{name}: {alias.name}"


def test_no_two_parts_bind_one_name_to_different_things():
    """The parts share one namespace in the script: a name one defines is defined by no
    other part, nor imported by one; a name several import is the same thing in each."""
    owner: dict[str, str] = {}
    imports: dict[str, str] = {}
    for name in PARTS:
        tree = _tree(name)
        for defined in _defined(tree):
            assert defined not in owner, f"{defined} in {owner[defined]} and {name}"
            owner[defined] = name
        for bound, what in _imported(tree).items():
            assert imports.setdefault(bound, what) == what, (name, bound, what)
    assert not set(owner) & set(imports), set(owner) & set(imports)


def test_the_script_defines_what_mailplan_uses_of_the_writer():
    """The script run as a module (not ``__main__``: it does not serve) defines every name
    the parts define, the names mailplan imports from the writer among them."""
    namespace = {"__name__": "mailplan_writer_script"}
    exec(compile(agent_source(), "mailplan-agent", "exec"), namespace)
    for name in PARTS:
        assert _defined(_tree(name)) <= set(namespace), name
    for name in agent.__all__:
        ours, theirs = namespace[name], getattr(agent, name)
        assert type(ours) is type(theirs), name
        assert getattr(ours, "__qualname__", None) == getattr(theirs, "__qualname__", None)
    assert namespace["NAME_RE"].pattern == agent.NAME_RE.pattern
    assert [c.__name__ for c in namespace["Agent"].__mro__] == [
        c.__name__ for c in agent.Agent.__mro__]


def test_the_script_serves_under_the_targets_flags():
    """Run as the target runs it (isolated, without site), it answers a ``Q``."""
    python = TEST_PYTHON or sys.executable
    done = subprocess.run([python, *interpreter.FLAGS, "-c", agent_source()],
                          input=b"Q\0\0\0\0", capture_output=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b'R\0\0\0\x1e{"durable": [], "present": []}'


@pytest.mark.parametrize("line", [
    "import mailplan.mail.writer.proto",
    "from mailplan.mail.writer.proto import send as reply",
    "from .proto import send",
    "def f():\n    from mailplan.mail.writer.proto import send",
])
def test_an_import_the_script_would_not_define_is_refused(tmp_path, monkeypatch, line):
    """An import whose name the script would lack (or that would stay in it, importing
    mailplan on the target) stops the join with the file and line."""
    (tmp_path / "part.py").write_text(f'"""A part."""\n\n{line}\n')
    monkeypatch.setattr(bundle, "HERE", tmp_path)
    with pytest.raises(ValueError, match=r"part\.py:[34]"):
        bundle._program_text("part")


def test_a_parts_imports_of_mailplan_are_left_out_whole(tmp_path, monkeypatch):
    (tmp_path / "part.py").write_text(
        '"""A part."""\n\nfrom __future__ import annotations\n\nimport os\n'
        "from mailplan.mail.writer.proto import (\n    HEADER,\n    send,\n)\n\nX = 1\n")
    monkeypatch.setattr(bundle, "HERE", tmp_path)
    assert bundle._program_text("part") == '\n\nimport os\n\nX = 1\n'


def test_the_script_carries_the_protocol_but_no_other_docstring(tmp_path, monkeypatch):
    """Docstrings stay in the repository: the command line that carries the script
    must stay well under Linux's limit for one argument (test_interpreter). The
    protocol opens the script (a writer is recognized by it: AGENT_MARK)."""
    tree = ast.parse(agent_source())
    assert ast.get_docstring(tree) is None  # the future import comes first
    first = tree.body[1]
    assert isinstance(first, ast.Expr) and first.value.value.startswith(  # type: ignore[attr-defined]
        AGENT_MARK.decode())
    documented = [node.name for node in ast.walk(tree)
                  if isinstance(node, (ast.FunctionDef, ast.ClassDef))
                  and ast.get_docstring(node) is not None and len(node.body) > 1]
    assert documented == []
    # one that is a body's only statement, or shares a line with code, stays
    (tmp_path / "part.py").write_text(
        '"""Part."""\nX = 1\n\n\ndef f():\n    """Only this."""\n\n\n'
        'def g(): """Inline."""; return 1\n\n\nclass C:\n    """Doc."""\n\n    y = 2\n')
    monkeypatch.setattr(bundle, "HERE", tmp_path)
    assert bundle._program_text("part") == (
        'X = 1\n\n\ndef f():\n    """Only this."""\n\n\n'
        'def g(): """Inline."""; return 1\n\n\nclass C:\n\n    y = 2\n')
