"""Join the writer's modules into the one program that is sent to the target.

The writer (:mod:`mailplan.mail.writer`, where its protocol is) is run on the target as a
single script, its source passed to the host's Python as one argument
(:func:`mailplan.mail.agent_client.agent_command`). In the repository it is the modules
:data:`PARTS` names, each importing what it uses of the parts before it
(``from mailplan.mail.writer.proto import send``), so that they also work imported in this
process. :func:`agent_source` puts them one after the other, in that order, without those
imports (what they name is defined earlier in the script), without their ``from
__future__`` lines (one ``from __future__ import annotations`` heads the script instead, as
its first statement) and without their docstrings but the protocol's (the size of the
command line: :func:`_docstring_lines`). The lines to leave out are found with :mod:`ast`,
not by pattern.
This module is not part of the program.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: the writer's modules, each after those it imports from
PARTS = ("__init__", "proto", "fs", "base", "quota", "ledger", "tmpfiles", "syncer", "keywords",
         "flags", "core")
FUTURE = "from __future__ import annotations\n"


def part_path(name: str) -> Path:
    """The file of part ``name`` of :data:`PARTS`."""
    return HERE / f"{name}.py"


@functools.cache  # an lru_cache: the parts are read and joined once
def agent_source() -> str:
    """The writer's source as it is sent to the target: one script of every part."""
    parts = [FUTURE]
    for name in PARTS:
        parts.append(f"\n\n# -- {name} " + "-" * (84 - len(name)) + "\n")
        parts.append(_program_text(name))
    return "".join(parts)


def _program_text(name: str) -> str:
    """Part ``name``'s source without its ``from __future__`` imports, its imports of
    the other parts and its docstrings (:func:`_docstring_lines`)."""
    path = part_path(name)
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text, filename=str(path))
    lines = text.splitlines(keepends=True)
    dropped: set[int] = set()
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if _left_out(node, f"{path}:{getattr(node, 'lineno', 0)}"):
            if id(node) not in top:  # it would stay in the script, importing mailplan
                raise ValueError(f"{path}:{node.lineno}: the writer imports from mailplan or "
                                 "__future__ only at the top of a module")
            dropped.update(range(node.lineno, node.end_lineno + 1))
        elif name != "__init__" or not isinstance(node, ast.Module):
            dropped |= _docstring_lines(node, lines)
    return "".join(line for number, line in enumerate(lines, 1) if number not in dropped)


def _docstring_lines(node: ast.AST, lines: list[str]) -> set[int]:
    """The lines of ``node``'s docstring, when it has one on lines of its own and a
    statement after it: the script leaves them out. The sudo command line that carries
    the script to the target must stay well under Linux's 128 KiB for one argument
    (``test_interpreter``), and the documentation is read here, not there. The
    package's own docstring (the protocol) stays: it opens the program, and
    ``_is_agent`` recognizes a writer by it (``AGENT_MARK``)."""
    body = getattr(node, "body", None)
    if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                             ast.AsyncFunctionDef)) or not body or len(body) < 2:
        return set()
    first = body[0]
    if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)) or first.end_lineno is None:
        return set()
    start, end = first.lineno, first.end_lineno
    if lines[start - 1][:first.col_offset].strip() or \
            lines[end - 1][first.end_col_offset or 0:].strip():
        return set()  # shares a line with other code
    return set(range(start, end + 1))


def _left_out(node: ast.AST, where: str) -> bool:
    """Whether ``node`` is an import the script leaves out; one whose names the script
    would not define (an ``import mailplan...``, a name imported ``as`` another, a
    relative import) is refused."""
    if isinstance(node, ast.Import) and any(_is_mailplan(a.name) for a in node.names):
        raise ValueError(f"{where}: the writer imports its parts' names with "
                         "``from mailplan.mail.writer.PART import NAME``")
    if not isinstance(node, ast.ImportFrom):
        return False
    if node.module == "__future__":
        return True
    if node.level or _is_mailplan(node.module or ""):
        if node.level or any(a.asname not in (None, a.name) for a in node.names):
            raise ValueError(f"{where}: the writer imports its parts' names with "
                             "``from mailplan.mail.writer.PART import NAME``")
        return True
    return False


def _is_mailplan(module: str) -> bool:
    return module == "mailplan" or module.startswith("mailplan.")
