"""What ``mailplan init`` reads from the old sendmail host, in two batched reads.

The first batch reads passwd and shadow, lists the spool directories with one ``find``,
checks which routing files exist and reads sendmail's local domains
(``local-host-names``, ``sendmail.cw`` and the ``Cw``/``Fw`` lines of ``sendmail.cf``)
and the host's names (``hostname``, ``hosts``).
The second lists the mail folders of the candidate accounts (one ``find`` over their
folder directories, one over those that are the home directory itself, whose hidden
files are configuration) and any ``Fw`` file not read yet. Programs' own files there
(dovecot's ``.imap/`` index, ``.DS_Store``: :mod:`mailplan.facts.droppings`) are not
counted as folders when their first bytes, read in one more batch, are no From_ line;
nor are the files of a Maildir there, which the import does not read either
(:func:`~mailplan.facts.folder_kinds.maildirs` tells one, from the directories named
cur, new or tmp listed with the files): the survey names it instead.
Everything here only reads: each fact is a command plus a pure parser. Shadow password
fields stay :class:`Secret` values; only their classification (locked, unsupported,
...) leaves this module.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from mailplan.connectors.base import CommandResult, Connector
from mailplan.errors import HostError
from mailplan.facts.droppings import dropping, not_mail
from mailplan.facts.folder_kinds import maildirs
from mailplan.facts.hashes import HashInfo, classify
from mailplan.facts.links import followed, resolve
from mailplan.facts.root import OutsideRoot, inside
from mailplan.facts.source import parse_passwd, parse_shadow, password_field, today_number
from mailplan.facts.source_lines import source_notes
from mailplan.remote import run_batch
from mailplan.routing.hostnames import host_names
from mailplan.routing.sendmailcf import parse_alias_files
from mailplan.shell import join
from mailplan.text import is_number

SPOOL_DIRS = ("/var/spool/mail", "/var/mail")
ALIASES = ("/etc/aliases", "/etc/mail/aliases")
VIRTUSERTABLE = "/etc/mail/virtusertable"
LOCAL_HOST_NAMES = "/etc/mail/local-host-names"
SENDMAIL_CW = "/etc/mail/sendmail.cw"
SENDMAIL_CF = "/etc/mail/sendmail.cf"


@dataclass(frozen=True)
class SurveyAccount:
    """One passwd entry with what init needs to judge it (never its hash)."""

    name: str
    uid: int
    gecos: str
    home: str
    shell: str
    password: HashInfo | None  # None: no shadow entry, or shadow unreadable
    #: why the old server refuses its logins by date (shadow's expiry dates), or None
    expired: str | None = None


@dataclass
class Survey:
    """Everything init learned about the source."""

    host: str
    root: str
    passwd_path: str
    shadow_path: str
    accounts: list[SurveyAccount]
    shadow_readable: bool
    shadow_error: str = ""
    spool_dir: str = SPOOL_DIRS[0]
    spools: dict[str, int] = field(default_factory=dict)  # account -> spool bytes
    folders: dict[str, tuple[int, int]] = field(default_factory=dict)  # home -> files, bytes
    #: folders directory -> the Maildirs in it, which are not imported (nor counted)
    maildirs: dict[str, list[str]] = field(default_factory=dict)
    #: ~/mbox -> bytes (:func:`mbox_file`): UW-IMAP's INBOX once it exists, imported with it
    mboxes: dict[str, int] = field(default_factory=dict)
    aliases: str | None = None  # the first default aliases file there is
    #: sendmail.cf's AliasFile files that exist (root-prefixed), in lookup order
    alias_files: list[str] = field(default_factory=list)
    #: what sendmail.cf's AliasFile names that init cannot list: (spec, why)
    alias_left: list[tuple[str, str]] = field(default_factory=list)
    #: sendmail.cf's AliasFile files that do not exist (root-prefixed), in lookup order
    alias_missing: list[str] = field(default_factory=list)
    virtusertable: str | None = None
    domains: list[tuple[str, str]] = field(default_factory=list)  # (name, where found)
    #: the files sendmail.cf's Fw lines name, as the old server names them (not prefixed)
    fw_named: list[str] = field(default_factory=list)
    #: the host's own names from the hostname and hosts files (root-prefixed /etc)
    host_names: frozenset[str] = frozenset()
    #: the root the homes passwd names are read under: the root of a local source
    #: (``source.root`` in the spec init writes), "" otherwise (read as named)
    home_root: str = ""
    #: how passwd and shadow were read where a line is not a whole account line, as the
    #: plan notes it (:func:`~mailplan.facts.source_lines.source_notes`)
    notes: list[str] = field(default_factory=list)


def parse_local_names(text: str, origin: str) -> list[tuple[str, str]]:
    """local-host-names / sendmail.cw: one name per line, ``#`` comments."""
    out = []
    for line in text.splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            out.extend((word, origin) for word in name.split())
    return out


def parse_sendmail_cf(text: str, origin: str) -> tuple[list[tuple[str, str]], list[str]]:
    """``Cw`` names and the files of ``Fw`` lines of a sendmail.cf (other lines, such
    as ``O AliasFile=``, are skipped)."""
    names: list[tuple[str, str]] = []
    files: list[str] = []
    for line in text.splitlines():
        if line.startswith("Cw"):
            names.extend((word, f"{origin} (Cw)") for word in line[2:].split())
        elif line.startswith("Fw"):
            words = line[2:].split()
            if words and words[0] == "-o":
                words = words[1:]
            if words and words[0].startswith("/"):
                files.append(words[0])
    return names, files


def parse_find(data: bytes) -> list[tuple[str, str, int]]:
    """``find -printf '%H\\0%P\\0%s\\0'`` output: (start point, relative path, size).

    NUL-separated, so any file name (tabs, newlines) reads back exactly."""
    fields = data.decode("utf-8", "surrogateescape").split("\0")
    out = []
    for i in range(0, len(fields) - 2, 3):
        if is_number(fields[i + 2]):
            out.append((fields[i], fields[i + 1], int(fields[i + 2])))
    return out


def parse_find_dirs(data: bytes) -> list[tuple[str, str]]:
    """The directories of ``find``'s output (``_find(..., dirs=True)``: ``d`` in the size's
    place): (start point, relative path)."""
    fields = data.decode("utf-8", "surrogateescape").split("\0")
    return [(fields[i], fields[i + 1]) for i in range(0, len(fields) - 2, 3)
            if fields[i + 2] == "d"]


def _find(starts: list[str], *, depth: str | None = None, follow_starts: bool = False,
          hidden: bool = False, dirs: bool = False) -> str:
    # Hidden files are skipped but with ``hidden`` (folders directories other than the
    # home directory: the import takes hidden folder files there, as UW-IMAP lists
    # them; a spool directory's hidden files are no spools). No link below a start
    # point is followed (init reads as root: a user's ~/mail/x -> / would have it walk
    # the whole disk, and count another's spool as that user's), nor a start point that
    # is a link unless ``follow_starts`` (/var/spool/mail -> ../mail): as the import.
    # With ``dirs``, the directories named cur, new or tmp too (a Maildir's: parse_find
    # skips them, parse_find_dirs reads them).
    args = ["find", *(["-H"] if follow_starts else []), *starts]
    if depth:
        args += ["-maxdepth", depth]
    skip = "" if hidden else " -name '.?*' -prune -o"
    also = (" -o -type d \\( -name cur -o -name new -o -name tmp \\) -printf "
            "'%H\\0%P\\0d\\0'" if dirs else "")
    return (join(args) + skip + " -type f -printf '%H\\0%P\\0%s\\0'" + also
            + " 2>/dev/null; true")


def _exists(paths: list[str]) -> str:
    return "for f in " + join(paths) + '; do test -f "$f" && printf \'%s\\n\' "$f"; done; true'


def _bytes(res: CommandResult) -> bytes:
    # find exits non-zero when one start point is missing; the others are still listed
    return res.stdout


def _text(res: CommandResult) -> str:
    return res.stdout.decode("utf-8", "replace") if res.returncode == 0 else ""


def survey_source(conn: Connector, *, root: str = "", uid_min: int = 1000,
                  uid_max: int = 59999, folders: str = "mail",
                  homes_under_root: bool = False) -> Survey:
    """Read the source in two batches (three with programs' own files among the
    folders); ``root`` prefixes every system path read, and
    the home directories passwd names too with ``homes_under_root`` (a local source,
    whose spec then has ``source.root``). Each is read where the copy's symbolic links
    lead inside the root (:mod:`mailplan.facts.links`), and named as the root puts it.
    """
    def at(path: str) -> str:
        return root.rstrip("/") + path

    passwd, shadow = at("/etc/passwd"), at("/etc/shadow")
    spools = [at(d) for d in SPOOL_DIRS]
    real = followed(conn, root.rstrip("/"), [at(p) for p in (
        "/etc/passwd", "/etc/shadow", *SPOOL_DIRS, *ALIASES, VIRTUSERTABLE, LOCAL_HOST_NAMES,
        SENDMAIL_CW, SENDMAIL_CF, "/etc/hostname", "/etc/hosts")])

    def read_at(path: str) -> str:
        return real[at(path)]

    first = run_batch(conn, [
        # its message tells a wrong --root apart
        join(["LC_ALL=C", "cat", "--", read_at("/etc/passwd")]),
        join(["cat", "--", read_at("/etc/shadow")]),
        "for d in " + join(real[d] for d in spools)
        + '; do test -d "$d" && printf \'%s\\n\' "$d"; done; true',
        _find([real[d] for d in spools], depth="1", follow_starts=True),
        _exists([read_at(p) for p in (*ALIASES, VIRTUSERTABLE)]),
        join(["cat", "--", read_at(LOCAL_HOST_NAMES)]),
        join(["cat", "--", read_at(SENDMAIL_CW)]),
        # whole: an option's value may go on over the next lines (sendmail.cf folding)
        join(["cat", "--", read_at(SENDMAIL_CF)]),
        join(["cat", "--", read_at("/etc/hostname")]),
        join(["cat", "--", read_at("/etc/hosts")]),
    ])
    if first[0].returncode != 0:
        why = first[0].stderr_text[:300] or f"exit status {first[0].returncode}"
        missing = why.endswith((": No such file or directory", ": Is a directory"))
        raise HostError(f"cannot read {passwd}: {why}", host=conn.name,
                        step="survey the source",
                        hint=(f"check --root: {root} holds no etc/passwd" if root
                              else "is this the old sendmail server?") if missing
                        else "read it as root: log in as root, or add --sudo")
    entries = parse_passwd(first[0].stdout, host=conn.name, path=passwd)
    shadow_ok = first[1].returncode == 0
    hashes = parse_shadow(first[1].stdout, host=conn.name, path=shadow) if shadow_ok else {}
    accounts = []
    today = today_number()
    for name, (line, f) in entries.items():
        entry = hashes.get(name)
        found = password_field(name, line, f, entry)
        accounts.append(SurveyAccount(name, int(f[2]), f[4], f[5], f[6],
                                      classify(found[0]) if found else None,
                                      entry.expired(today) if entry else None))
    survey = Survey(conn.name, root, passwd, shadow, accounts, shadow_ok,
                    "" if shadow_ok else first[1].stderr_text[:300] or "not readable",
                    home_root=root.rstrip("/") if homes_under_root else "",
                    notes=source_notes(passwd, first[0].stdout, shadow,
                                       first[1].stdout if shadow_ok else b"", hashes))
    there = set(_text(first[2]).split())
    present_spools = [d for d in spools if real[d] in there]
    survey.spool_dir = present_spools[0] if present_spools else spools[0]
    for start, rel, size in parse_find(_bytes(first[3])):
        if start.rstrip("/") == real.get(survey.spool_dir, "").rstrip("/") \
                and "/" not in rel:
            survey.spools[rel] = size
    found = set(_text(first[4]).split("\n"))
    survey.aliases = next((at(p) for p in ALIASES if read_at(p) in found), None)
    survey.virtusertable = at(VIRTUSERTABLE) if read_at(VIRTUSERTABLE) in found else None
    survey.domains += parse_local_names(_text(first[5]), LOCAL_HOST_NAMES)
    survey.domains += parse_local_names(_text(first[6]), SENDMAIL_CW)
    cw, fw_files = parse_sendmail_cf(_text(first[7]), SENDMAIL_CF)
    survey.domains += cw
    survey.fw_named = fw_files
    survey.host_names = host_names(_text(first[8]), _text(first[9]))
    extra = [at(p) for p in fw_files if p not in (LOCAL_HOST_NAMES, SENDMAIL_CW)]
    named: list[str] = []
    for db in parse_alias_files(_text(first[7]), SENDMAIL_CF):
        if db.readable and db.path is not None:
            named.append(at(db.path))
        elif db.kind != "null":
            survey.alias_left.append((db.spec, db.why_not_read or ""))
    _second_batch(conn, survey, extra, uid_min, uid_max, folders,
                  list(dict.fromkeys(named)))
    return survey


def folder_dir(account: SurveyAccount, folders: str, home_root: str = "") -> str | None:
    """Where the account's mail folders are (as the mailbox import finds them), a
    relative ``folders`` in its home under ``home_root``; None when its home is not
    absolute or leaves the root (:func:`~mailplan.facts.root.inside`)."""
    if not account.home.startswith("/"):
        return None
    if folders.startswith("/"):
        return folders.replace("%u", account.name)
    try:
        return f"{inside(home_root, account.home).rstrip('/')}/{folders}"
    except OutsideRoot:
        return None


def mbox_file(account: SurveyAccount, home_root: str = "") -> str | None:
    """The account's ``~/mbox`` (its home under ``home_root``), which the import reads
    into the INBOX; None when its home is not absolute or leaves the root."""
    if not account.home.startswith("/"):
        return None
    try:
        return f"{inside(home_root, account.home).rstrip('/')}/mbox"
    except OutsideRoot:
        return None


def _second_batch(conn: Connector, survey: Survey, fw_files: list[str], uid_min: int,
                  uid_max: int, folders: str, alias_files: list[str]) -> None:
    """The folders of the candidate accounts, the AliasFile files sendmail.cf names and
    its Fw files: each read where the copy's links lead inside the root, the folder
    directories but for their last component (a link there is not followed, as by the
    import); one whose links loop is left out."""
    root = survey.root.rstrip("/")
    dirs = sorted({d for a in survey.accounts if uid_min <= a.uid <= uid_max
                   and (d := folder_dir(a, folders, survey.home_root)) is not None})
    real_dirs: dict[str, list[str]] = {}  # a directory read -> the names it has here
    for d, got in resolve(conn, root, dirs, last=False).items():
        if not isinstance(got, OutsideRoot):
            real_dirs.setdefault(got, []).append(d)
    # each ~/mbox where the copy's links lead, but a link at mbox itself (not read)
    mboxes = sorted({m for a in survey.accounts if uid_min <= a.uid <= uid_max
                     and (m := mbox_file(a, survey.home_root)) is not None})
    real_mboxes: dict[str, list[str]] = {}
    for m, got in resolve(conn, root, mboxes, last=False).items():
        if not isinstance(got, OutsideRoot):
            real_mboxes.setdefault(got, []).append(m)
    real = followed(conn, root, [*alias_files, *fw_files])
    # a folders directory that is its account's home: its hidden files are configuration
    # (the import leaves them out, :func:`~mailplan.facts.folder_kinds.hidden_config`)
    homes = {d for a in survey.accounts if uid_min <= a.uid <= uid_max
             and (d := folder_dir(a, folders, survey.home_root)) is not None
             and _is_home(d, a, survey.home_root)}
    at_home = sorted(r for r, names in real_dirs.items() if set(names) & homes)
    elsewhere = sorted(set(real_dirs) - set(at_home))
    commands = [_find(elsewhere, hidden=True, dirs=True) if elsewhere else "true",
                _find(at_home, dirs=True) if at_home else "true",
                _exists([real[p] for p in alias_files]) if alias_files else "true"]
    commands += [join(["cat", "--", real[f]]) for f in fw_files]
    commands.append(_find(sorted(real_mboxes), depth="0") if real_mboxes else "true")
    results = run_batch(conn, commands)
    for start, _rel, size in parse_find(_bytes(results[-1])):
        for name in real_mboxes.get(start, [start]):
            survey.mboxes[name] = size
    listed = _bytes(results[0]) + _bytes(results[1])
    _count_folders(conn, survey, real_dirs, parse_find(listed), parse_find_dirs(listed))
    there = set(_text(results[2]).split("\n"))
    survey.alias_files = [p for p in alias_files if real[p] in there]
    survey.alias_missing = [p for p in alias_files if real[p] not in there]
    survey.alias_left += [(p, "does not exist") for p in survey.alias_missing]
    for path, res in zip(fw_files, results[3:-1], strict=True):
        survey.domains += parse_local_names(_text(res), f"{path} (Fw in sendmail.cf)")


def _is_home(folder_dir: str, account: SurveyAccount, home_root: str) -> bool:
    """Whether ``folder_dir`` is the account's home directory (under ``home_root``),
    however written (``.``, ``./``, ``/home/%u``), as the import compares them."""
    try:
        home = inside(home_root, account.home)
    except OutsideRoot:
        return False
    return posixpath.normpath(folder_dir) == posixpath.normpath(home)


def _count_folders(conn: Connector, survey: Survey, real_dirs: dict[str, list[str]],
                   found: list[tuple[str, str, int]], dirs: list[tuple[str, str]]) -> None:
    """Count the folder files ``find`` listed (start point, path below it, size) for
    each folders directory naming that start point; as the import, not programs' own
    files there that do not start with ``From `` (:mod:`mailplan.facts.droppings`), nor
    the files of a Maildir there (``dirs``: the directories named cur, new or tmp
    listed), which ``survey.maildirs`` names instead."""
    named = [f"{start.rstrip('/')}/{rel}" for start, rel, _size in found if dropping(rel)]
    left = not_mail(conn, named)
    inside: list[str] = []
    for start in sorted({start for start, _rel in dirs}):
        base = start.rstrip("/")
        boxes = sorted(maildirs({f"{base}/{rel}" for s, rel in dirs if s == start},
                                [f"{base}/{rel}" for s, rel, _size in found if s == start]))
        inside += boxes
        for name in real_dirs.get(start, [start]) if boxes else []:
            survey.maildirs[name] = [name.rstrip("/") + box[len(base):] for box in boxes]
    for start, rel, size in found:
        path = f"{start.rstrip('/')}/{rel}"
        if path in left or any(path.startswith(box + "/") for box in inside):
            continue
        for name in real_dirs.get(start, [start]):
            files, total = survey.folders.get(name, (0, 0))
            survey.folders[name] = (files + 1, total + size)
