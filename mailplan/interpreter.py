"""Starting mailplan's stdlib-only programs (the Maildir writer, the qmail queue reader)
with a host's Python, so that a missing or too old interpreter is reported as such.

Each host names its interpreter (``python`` in the spec, default ``python3``: a command
on the login's PATH or a path). The shell line :func:`launch` builds checks that it
exists, then ``exec``\\ s it with ``-I -S`` (no environment variables, no site packages:
the programs import the standard library only) and a bootstrap that checks the version
before it compiles the program it was given; the program source never passes through a
Python that cannot compile it. Both checks write one line starting with
:data:`ERROR_PREFIX` on stderr, which the callers turn into a clear error with a hint
instead of a lost connection (which would be retried). :func:`check` asks the same of a
host at plan time.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from mailplan.connectors.base import Connector
from mailplan.errors import HostError
from mailplan.shell import join

# The programs need nothing but the standard library: ``-S`` skips the site module and
# the ``.pth`` files of every installed package (60 ms of a 90 ms start where an editable
# install and certifi have theirs), ``-I`` keeps PYTHONPATH and the current directory
# (the login's, with ``-c``) from putting other modules before the standard library's in
# a process that may run as root.
FLAGS = ("-I", "-S")
#: the oldest Python the programs run on (checked with vermin in the tests)
MIN_VERSION = (3, 7)
#: how every line the programs (and these checks) write on stderr before exiting begins
ERROR_PREFIX = "mailplan agent: "
#: the exit code when the interpreter is not there (the shell's own for "not found")
MISSING = 127
_WANTED = f"Python {MIN_VERSION[0]}.{MIN_VERSION[1]} or newer"
_OK = "mailplan-python-ok"


def guard(program: str) -> str:
    """Python source, valid from Python 2.6 on, that stops with :data:`ERROR_PREFIX` and
    exit 1 on an interpreter older than :data:`MIN_VERSION`; and, on a host whose locale
    does not name files in UTF-8 (a login's Latin-1 ``LANG``), starts the same command
    again in Python's UTF-8 mode (``-X utf8``, read back from ``/proc/self/cmdline``):
    the programs name files in UTF-8, as mailplan reads them (folder names with
    ``target.folder_names: utf8``)."""
    text = f"{ERROR_PREFIX}%s is Python %d.%d; {program} needs {_WANTED}\n"
    return ("import sys\n"
            f"if sys.version_info < {MIN_VERSION!r}:\n"
            f"    sys.stderr.write({text!r} % (sys.executable or 'python',"
            " sys.version_info[0], sys.version_info[1]))\n"
            "    sys.exit(1)\n"
            "if not getattr(sys.flags, 'utf8_mode', 1) and "
            "sys.getfilesystemencoding().lower().replace('-', '') != 'utf8':\n"
            "    import os\n"
            "    try:\n"
            "        argv = open('/proc/self/cmdline', 'rb').read().split(b'\\0')[1:-1]\n"
            "    except (IOError, OSError):\n"
            "        argv = None\n"
            "    if argv and sys.executable:\n"
            "        os.execv(sys.executable, [sys.executable.encode(), b'-X', b'utf8'] + argv)\n")


def launch(python: str, code: str, args: Sequence[str] = (), *, program: str,
           drain: bool = False, before: str = "", raw_args: str = "") -> str:
    """The shell line that runs ``code`` (after :func:`guard`) with ``python -I -S -c``
    and ``args``; ``before`` is shell text run first, ``raw_args`` shell text appended
    unquoted (the caller's own expansions). ``drain``: when the interpreter is missing,
    read stdin to its end before exiting, so a sender writing it all does not fail on a
    closed pipe first."""
    exe = shlex.quote(python)
    missing = shlex.quote(f"{ERROR_PREFIX}{python} not found on this host; {program} "
                          f"needs {_WANTED}")
    eat = "while read -r _; do :; done; " if drain else ""
    tail = f" {raw_args}" if raw_args else ""
    return (f"command -v {exe} >/dev/null 2>&1 || {{ echo {missing} >&2; {eat}exit {MISSING}; }}\n"
            f"{before}exec {exe} {' '.join(FLAGS)} -c {shlex.quote(guard(program) + code)}"
            f"{(' ' + join(args)) if args else ''}{tail}")


def complaint(stderr: str) -> str | None:
    """The line a program or its checks wrote before exiting, without the prefix."""
    for line in stderr.splitlines():
        if line.startswith(ERROR_PREFIX):
            return line[len(ERROR_PREFIX):]
    return None


def about_interpreter(said: str) -> bool:
    """Whether a program's last words (:func:`complaint`) are these checks' own."""
    return said.endswith(f"needs {_WANTED}")


def hint(conn: Connector) -> str:
    """What to do about a missing or too old interpreter on ``conn``."""
    return (f"install {_WANTED} on {conn.name}, or set hosts.{conn.name}.python in the spec "
            f"to one it has (now: {conn.python}); see docs/troubleshooting.md")


def check(conn: Connector, program: str, *, step: str) -> None:
    """Fail with a clear :class:`HostError` unless ``conn``'s interpreter can run
    ``program`` (one command in the host's shell; the interpreter starts once)."""
    res = conn.shell().run(launch(conn.python, f"sys.stdout.write({_OK!r})", program=program))
    if res.returncode == 0 and res.stdout.decode("utf-8", "replace") == _OK:
        return
    said = complaint(res.stderr_text)
    raise HostError(said or f"{conn.python} does not run on this host (exit "
                    f"{res.returncode}): {res.stderr_text[:200] or 'no message'}",
                    host=conn.name, step=step, hint=hint(conn))
