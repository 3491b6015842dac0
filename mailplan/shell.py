"""Shell command lines built from quoted parts, with secrets masked for display.

No code in mailplan formats untrusted text into a shell line. A :class:`Cmd` holds its
argv as separate parts; :meth:`Cmd.render` quotes every part with :func:`shlex.quote`
and :meth:`Cmd.display` does the same but shows :class:`~mailplan.secret.Secret`
parts as ``(sensitive)``. Secrets that a program reads from standard input (vadddomain's
postmaster password) are fed by the shell builtin ``printf``, so they never appear in a
process's argv on the remote host.

sshd hands a command line to the login shell of the account mailplan logs in as. Every
line mailplan builds is for ``/bin/sh``; bash, dash, ksh and zsh read it alike, but csh,
tcsh and fish do not (``2>/dev/null``, ``{ ...; }``, a newline inside quotes), so a
line sent through sshd travels as :func:`portable` makes it.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from mailplan.errors import UnsafeArgument
from mailplan.secret import MASK, Secret

Part = str | Secret
T = TypeVar("T")


def _quote(part: Part, reveal: bool) -> str:
    if isinstance(part, Secret):
        if "\0" in part.reveal():
            raise UnsafeArgument("a secret holds a NUL byte, which cannot be passed in a "
                                 "command argument")
        return shlex.quote(part.reveal()) if reveal else MASK
    if "\0" in part:
        raise UnsafeArgument("a NUL byte cannot be passed in a command argument; the "
                             "command was not run")
    return shlex.quote(part)


@dataclass(frozen=True)
class Cmd:
    """One program invocation: argv parts plus optional lines piped to its stdin."""

    argv: tuple[Part, ...]
    stdin_lines: tuple[Part, ...] = field(default=())

    @classmethod
    def of(cls, *argv: Part, stdin_lines: Sequence[Part] = ()) -> Cmd:
        """Build a command from its parts."""
        return cls(tuple(argv), tuple(stdin_lines))

    def _text(self, reveal: bool) -> str:
        line = " ".join(_quote(p, reveal) for p in self.argv)
        if self.stdin_lines:
            feed = " ".join(_quote(p, reveal) for p in self.stdin_lines)
            return f"printf '%s\\n' {feed} | {line}"
        return f"{line} </dev/null"

    def render(self) -> str:
        """The shell text to execute (contains secrets: send it, never print it)."""
        return self._text(reveal=True)

    def display(self) -> str:
        """The shell text with secrets masked, for logs and messages."""
        return self._text(reveal=False)

    def has_secret(self) -> bool:
        """Whether any part of the command is a secret."""
        return any(isinstance(p, Secret) for p in (*self.argv, *self.stdin_lines))


def join(parts: Iterable[str]) -> str:
    """Quote plain string parts into one command line."""
    return " ".join(_quote(p, True) for p in parts)


def dot_qmail_program(argv: Iterable[str]) -> str:
    """A ``.qmail`` program delivery line (without its newline). qmail-local runs what
    follows ``|`` with ``/bin/sh -c``, so every part is quoted: a plain address or path
    comes out as vpopmail writes it (``| /home/vpopmail/bin/vdelivermail '' delete``),
    anything else cannot run as shell code at delivery."""
    return "| " + join(argv)


#: paths per command line when a list of paths is spread over several commands: the
#: argv stays far below ARG_MAX whatever the paths
PATHS_PER_COMMAND = 500


def chunks(items: Sequence[T], n: int = PATHS_PER_COMMAND) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``n``."""
    for i in range(0, len(items), n):
        yield items[i:i + n]


def chunks_within(items: Iterable[T], weigh: Callable[[T], Sequence[int]],
                  limits: Sequence[int]) -> list[list[T]]:
    """``items`` in consecutive groups whose weights (``weigh`` gives one per limit) add
    up to at most ``limits``; an item past a limit is a group alone."""
    groups: list[list[T]] = []
    held = [0] * len(limits)
    for item in items:
        weights = weigh(item)
        if not groups or any(h + w > lim for h, w, lim in zip(held, weights, limits,
                                                                strict=True)):
            groups.append([])
            held = [0] * len(limits)
        groups[-1].append(item)
        held = [h + w for h, w in zip(held, weights, strict=True)]
    return groups


#: bytes a command keeps as they are in :func:`portable` form: none is special inside
#: single quotes to csh, tcsh or fish, nor inside double quotes to sh, nor in a
#: ``printf`` format
_AS_IS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                   b" -_./,:;=+@#&|<>(){}[]*?~")
#: shorter forms for common bytes: ``printf``'s own escapes and ``%%``, and the three
#: that sh's double quotes take with a backslash (each backslash followed by a letter
#: or a character that csh and fish leave as it is, never by another backslash)
_SHORT = {ord("\n"): "\\n", ord("\t"): "\\t", ord("%"): "%%", ord('"'): '\\"',
          ord("`"): "\\`", ord("$"): "\\$"}
_FORMS = tuple(chr(b) if b in _AS_IS else _SHORT.get(b, f"\\{b:03o}") for b in range(256))


def portable(command: str) -> str:
    """``command`` (a ``/bin/sh`` line) as a line that every login shell, csh, tcsh and
    fish included, hands to ``/bin/sh`` unchanged: inside single quotes, as the format
    of ``/bin/sh``'s own ``printf``, every byte but the plain ones of :data:`_AS_IS`
    escaped (:data:`_SHORT`, else a three-digit octal escape: a quote, ``!``, a
    backslash, a byte past ASCII). Nothing outside ``/bin/sh`` runs first (a host's
    PATH need hold no tool for it), and the command's standard input, output and exit
    status stay its own. The writer's line, its source in it, grows by about a tenth
    (tests/test_interpreter.py keeps it within one argument of a Linux exec)."""
    data = command.encode("utf-8", "surrogateescape")
    return f"/bin/sh -c 'eval \"$(printf \"{''.join(_FORMS[b] for b in data)}\")\"'"
