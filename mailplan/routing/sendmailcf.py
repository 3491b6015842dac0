"""What mailplan reads of sendmail.cf: its options (:func:`option_values`), its alias
databases, its +detail rule and its ForwardPath.

**Alias databases** (:func:`parse_alias_files`): the ``AliasFile`` option.

sendmail.cf names them with ``O AliasFile=SPEC,SPEC,...`` (or the old one-letter form
``OA SPEC,...``; an empty value is the file ``aliases``, relative); each such line adds its
databases after those of the lines before it. A ``#`` after the start of a line begins a
comment there (readcf's translate_dollars), unless written ``$#`` or ``\\#``.
A SPEC is ``[class:][-flags ]file`` (sendmail's setalias and map_parseargs): without a
class the map is ``implicit``, which reads ``file.db`` (or ``file.dir``, or the text
file itself) built by newaliases from the text ``file``. sendmail looks a name up in the
databases in this order and uses the first that has it.

mailplan reads the text files newaliases builds the databases from, so only the classes
backed by such a file count (:data:`FILE_CLASSES`); the others (``nis:mail.aliases``,
``ldap:...``, ``switch:...``) are returned with ``path`` None for the plan to warn
about.

**+detail** (:func:`plus_detail_rule`): the rules cf/m4/proto.m4 writes into ruleset 5
(localaddr) unless _PRESERVE_LOCAL_PLUS_DETAIL_ is set, "deal with plussed users so
aliases work nicely": ``R$+ + *  $#local $@ $&h $: $1`` and ``R$+ + $*  $#local $@ + $2
$: $1 + *`` deliver ``user+detail`` to ``user`` (after looking up the alias
``user+*``).

**ForwardPath** (:func:`forward_path`): the forward files sendmail looks for in a
user's home directory, in order (``O ForwardPath=`` or ``OJ``; by default
:data:`DEFAULT_FORWARD_PATH`, ``~/.forward.HOST`` before ``~/.forward``).

**MaxAliasRecursion** (:func:`max_alias_recursion`): how deep sendmail follows aliases
before it bounces an address.

**DontBlameSendmail** (:func:`dont_blame_sendmail`): the file-safety rules sendmail.cf
relaxes, for :mod:`~mailplan.routing.filesafety`.

Pure: the caller reads sendmail.cf through the source connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailplan.routing.model import Finding, Origin
from mailplan.text import has_control

#: map classes whose database newaliases builds from a text aliases file (``stab``
#: reads the text file itself)
FILE_CLASSES = frozenset({"implicit", "hash", "btree", "dbm", "cdb", "stab"})
#: ``O NAME=VALUE`` (setoption: one blank after the O, blanks around the '=') or the old
#: one-letter form ``OXVALUE``
_OPTION = re.compile(r"^O(?: ([^ =][^=]*?) *(?:= *(.*))?|([^ ])(.*))$", re.S)


@dataclass(frozen=True)
class AliasDatabase:
    """One alias database sendmail.cf names, in lookup order."""

    spec: str  # as written in sendmail.cf
    kind: str  # the map class: implicit, hash, nis, ldap, ...
    path: str | None  # the text aliases file mailplan reads; None: not file-backed
    optional: bool  # ``-o``: sendmail goes on without it when it cannot be opened
    origin: Origin  # the sendmail.cf line

    @property
    def readable(self) -> bool:
        """Whether mailplan can read it: a file-backed class with an absolute path that a
        command can be given (no control character)."""
        return self.why_not_read is None

    @property
    def why_not_read(self) -> str | None:
        """Why mailplan cannot read it, or None."""
        if self.path is None:
            return f"a {self.kind} database, not a file"
        if not self.path.startswith("/"):
            return "not an absolute path"
        if has_control(self.path):
            return "a path with a control character"
        return None


def _uncommented(line: str, *, first: bool) -> str:
    """One physical line without its comment, as readcf's translate_dollars cuts it: from
    a '#' that is not the folded line's first character (``first``: this line starts it)
    nor the name of a macro (``$#``), with the blanks before it; ``\\#`` is a '#'."""
    out: list[str] = []
    i = 0
    while i < len(line):
        c = line[i]
        if c == "$" and i + 1 < len(line):
            out.append(line[i:i + 2] if line[i + 1] != "$" else "$")
            i += 2
            continue
        if c == "#" and (out or not first):
            if out and out[-1] == "\\":
                out[-1] = "#"
                i += 1
                continue
            return "".join(out).rstrip()
        out.append(c)
        i += 1
    return "".join(out)


def _folded(text: str) -> list[tuple[int, str]]:
    """sendmail.cf's lines with their numbers, without comments: a line that starts with
    a blank continues the one before it (readcf's fgetfolded); ``#`` lines are comments,
    and so is the rest of a line from a later ``#`` (:func:`_uncommented`)."""
    out: list[tuple[int, str]] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if line[:1] in (" ", "\t") and out and not out[-1][1].startswith("#"):
            rest = _uncommented(line, first=False).strip()
            out[-1] = (out[-1][0], out[-1][1] + " " + rest if rest else out[-1][1])
        elif line[:1] not in (" ", "\t"):
            out.append((number, line if line.startswith("#") else
                        _uncommented(line, first=True).rstrip()))
    return [(n, line) for n, line in out if line and not line.startswith("#")]


def _split_specs(value: str) -> list[tuple[str, str]]:
    """(class, rest) of each spec of an AliasFile value, as sendmail's setalias splits
    it: the class is the text before a ':' met before any of `` ,/``; a spec ends at a
    comma outside double quotes (ldap specs quote theirs)."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(value):
        while pos < len(value) and value[pos].isspace():
            pos += 1
        if pos >= len(value):
            break
        start = pos
        stop = next((i for i in range(pos, len(value)) if value[i] in " ,/:"), None)
        kind = "implicit"
        if stop is not None and value[stop] == ":":
            kind, start = value[pos:stop], stop + 1
        end = len(value)
        if stop is not None:
            quoted = False
            for i in range(stop if kind == "implicit" else start, len(value)):
                if value[i] == '"':
                    quoted = not quoted
                elif value[i] == "," and not quoted:
                    end = i
                    break
        out.append((kind, value[start:end]))
        pos = end + 1
    return out


def _file_of(args: str) -> tuple[str | None, bool]:
    """The file and the ``-o`` flag of map arguments, as map_parseargs reads them:
    flags first (``-k`` and ``-v`` take the next word), then the file name."""
    words = args.split()
    optional = False
    i = 0
    while i < len(words) and words[i].startswith("-"):
        flag = words[i][1:2]
        optional = optional or flag == "o"
        i += 2 if flag in ("k", "v") and len(words[i]) == 2 else 1
    return (words[i] if i < len(words) else None), optional


def option_values(cf: str, name: str, letter: str, shortest: int) -> list[tuple[int, str]]:
    """(line number, value) of each setting of the option ``name`` in sendmail.cf, in
    order: ``O NAME=VALUE``, with the name shortened to no less than ``shortest``
    characters (while it names one option: ``AliasF``, as "Alias" is AliasWait too) and
    in any case, or the old one-letter form ``O`` + ``letter`` + value."""
    out: list[tuple[int, str]] = []
    for number, line in _folded(cf):
        match = _OPTION.match(line)
        if not match:
            continue
        long_name, value, short, short_value = match.groups()
        if long_name is not None:
            if len(long_name) >= shortest and name.lower().startswith(long_name.lower()):
                out.append((number, value or ""))
        elif short == letter:
            out.append((number, short_value))
    return out


def parse_alias_files(cf: str, path: str) -> list[AliasDatabase]:
    """Every alias database sendmail.cf names, in lookup order (empty: it names none)."""
    out: list[AliasDatabase] = []
    for number, value in option_values(cf, "AliasFile", "A", 6):
        # an empty value is sendmail's default, the file "aliases" (conf.c)
        for kind, rest in _split_specs(value.strip(" ") or "aliases"):
            spec = rest.strip() if kind == "implicit" else f"{kind}:{rest.strip()}"
            file, optional = _file_of(rest)
            backed = kind.lower() in FILE_CLASSES
            out.append(AliasDatabase(spec, kind.lower(), file if backed else None, optional,
                                     Origin(path, number)))
    return out


_PLUSSED = re.compile(r"^R(?:<\s*>\s*)?\$\+\s*\+\s*(?:\$\*|\*)\t+\S*\s*"
                      r"\$#(?!(?:error|discard)\b)")


def plus_detail_rule(cf: str, path: str) -> Origin | None:
    """The line of sendmail.cf's rule that delivers ``user+detail`` locally (to the user
    or alias ``user``), or None when it has none: a rewrite rule whose left side is
    ``$+ + $*`` (or ``$+ + *``) and whose right side picks a mailer (``$#``) that delivers
    (not ``$#error`` nor ``$#discard``, which refuse or drop such addresses)."""
    for number, line in _folded(cf):
        if _PLUSSED.match(line):
            return Origin(path, number)
    return None


#: sendmail's ForwardPath when sendmail.cf does not set one (its cf/m4/proto.m4)
DEFAULT_FORWARD_PATH = "$z/.forward.$w:$z/.forward"


def forward_path(cf: str, origin: str, short_name: str | None,
                 findings: list[Finding]) -> list[str]:
    """The forward files sendmail looks for, in order, as templates of ``$z`` (the
    home directory) and ``$u`` (the login): sendmail.cf's ForwardPath (``O ForwardPath=``
    or the old ``OJ``), else :data:`DEFAULT_FORWARD_PATH`, with ``$w`` (the host's short
    name) filled in. An entry with another macro, or ``$w`` where the host name is not
    known, is left out with a note; ``$z/.forward`` is read whatever it says."""
    found = option_values(cf, "ForwardPath", "J", len("ForwardPath"))
    value = found[-1][1].strip() if found else None
    out: list[str] = []
    for entry in (value or DEFAULT_FORWARD_PATH).split(":"):
        if short_name is not None:
            entry = entry.replace("$w", short_name)
        if not entry or re.search(r"\$[^zu]", entry) or not entry.startswith("$z/"):
            if value is not None:  # the default's $w without a host name: left quietly
                findings.append(Finding("note", f"{origin}: ForwardPath entry {entry!r} is "
                                        "not looked at: mailplan reads forward files in "
                                        "users' home directories, named with $z, $u and $w "
                                        "(the host name, from /etc/hostname)"))
            continue
        out.append(entry)
    return out or ["$z/.forward"]


#: sendmail's MaxAliasRecursion when sendmail.cf does not set it (conf.c)
DEFAULT_MAX_ALIAS_RECURSION = 10


def max_alias_recursion(cf: str) -> int:
    """sendmail.cf's MaxAliasRecursion (``O MaxAliasRecursion=N``, the last setting;
    :data:`DEFAULT_MAX_ALIAS_RECURSION` without one). sendmail refuses an address reached
    through more aliases than that, "554 aliasing/forwarding loop broken (N aliases deep;
    M max)" (recipient.c); setoption reads the value with atoi: its leading digits, 0
    without any."""
    found = option_values(cf, "MaxAliasRecursion", "", len("MaxAl"))
    if not found:
        return DEFAULT_MAX_ALIAS_RECURSION
    digits = re.match(r"\s*\+?(\d+)", found[-1][1])
    return int(digits[1]) if digits else 0


def dont_blame_sendmail(cf: str) -> frozenset[str]:
    """The DontBlameSendmail flags sendmail.cf sets, lower-case (``O
    DontBlameSendmail=GroupWritableDirPathSafe, ForwardFileInUnsafeDirPath``; names are
    case-insensitive and separated by commas or blanks). As readcf's setoption, each
    line adds its flags, and ``safe`` (the default) clears those before it."""
    flags: set[str] = set()
    for _number, value in option_values(cf, "DontBlameSendmail", "", len("DontB")):
        for word in re.split(r"[\s,]+", value.lower()):
            if word == "safe":
                flags.clear()
            elif word:
                flags.add(word)
    return frozenset(flags)
