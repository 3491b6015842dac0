"""The command that looks up given message digests in one Maildir folder on the target,
for :func:`mailplan.facts.maildirs.look_up_digests` (which parses what it prints).

One listing of the folder's new/ and cur/ and one read of its ledger, however many
digests are asked about, each filtered there so that what comes back follows the
digests, not the folder's size. The digests go to the filters on a pipe, printed by a
shell function the command defines (sent once for both), not as arguments: arguments
would be cut into commands that each list the folder and read the ledger again, which
is quadratic on a resume (138,000 digests asked about in a folder of 102,000 files took
35 s so). The filters are awk programs, a hash look-up per record: ``grep -F`` builds an
automaton of its patterns (12 s and 1.4 GB of memory for 240,000 digests).
"""

from __future__ import annotations

from collections.abc import Sequence

from mailplan.errors import UnsafeArgument
from mailplan.mail.maildir import DIGEST_RE
from mailplan.shell import chunks, join

#: digests per ``printf`` (65 kB of arguments, for a shell where it is no builtin)
DIGESTS_PER_PRINTF = 1000
#: awk programs that read the digests (one a line, then an empty line: no digest is
#: empty, nor is a listed name, "new/NAME") as keys, then print each record after them
#: whose digest is one of them. A message name's digest follows its first ``_mp``; a
#: ledger line's is its second field, printed after the line's byte offset in the
#: ledger as ``grep -b`` prints it
_KEYS = '!d { if ($0 == "") d = 1; else w[$0]; next } '
_NAME_WANTED = _KEYS + '(i = index($0, "_mp")) && (substr($0, i + 3, 64) in w)'
_LINE_WANTED = _KEYS + '$2 in w { printf "%.0f:%s\\n", o, $0 } { o += length($0) + 1 }'
#: what the command says on a host without awk
NO_AWK = "awk is not on this host's PATH: cannot look up which messages are there"
#: NUL-terminated names <-> lines (a newline in a name becomes a NUL for awk, and back)
_SWAP = r"tr '\n\000' '\000\n'"


def lookup_command(folder: str, ledger: str, digests: Sequence[str]) -> str:
    """The shell command that prints the names in ``folder``'s new/ and cur/ holding one
    of ``digests`` (each after its subdir, ``cur/NAME``: flags count in cur/ only; each
    ended by a NUL), then the lines of the ``ledger`` file holding one, each after its
    byte offset and ``:``. A digest that is not a sha256 in hex is refused
    (:class:`UnsafeArgument`): the digests are written into the shell text."""
    for sha in digests:
        # unquoted in the command: a sha256 in hex and nothing else can go there (the
        # digests come from a scan of the source's mail)
        if not DIGEST_RE.fullmatch(sha):
            raise UnsafeArgument("a message digest to look up in a Maildir is not a "
                                 "sha256 in hex; no command was run")
    listing = "; ".join(join(["find", f"{folder}/{sub}", "-maxdepth", "1", "-type", "f",
                              "-name", "*_mp*", "-printf", f"{sub}/%f\\0"])
                        for sub in ("new", "cur"))
    feed = "; ".join("printf '%s\\n' " + " ".join(chunk)
                     for chunk in chunks(digests, DIGESTS_PER_PRINTF))
    # each awk reads one stream: the digests, an empty line, the names or the ledger;
    # without awk nothing would be found and every message would look not imported yet,
    # so the command fails instead (in the caller's shell: no exit)
    return ("if command -v awk >/dev/null 2>&1; then\n"
            "digests() { " + feed + "; echo; }\n"
            "{ digests; { " + listing + "; } 2>/dev/null | " + _SWAP + "; } | "
            + join(["LC_ALL=C", "awk", _NAME_WANTED]) + " | " + _SWAP + "\n"
            "{ digests; " + join(["cat", "--", ledger]) + " 2>/dev/null; } | "
            + join(["LC_ALL=C", "awk", "-F", "\t", _LINE_WANTED]) + "; true\n"
            "else " + join(["echo", NO_AWK]) + " >&2; false; fi")
