"""Facts about the target's Maildirs: which messages mailplan already put there.

Read only, at plan and verify time. Every message file mailplan writes is named after
its identity (``..._mp<sha256>_<occurrence>...``, :mod:`mailplan.mail.maildir`), and the
writer agent appends each imported identity to the Maildir's ledger
(``mailplan-ledger``: ``dir TAB sha256 TAB occurrence`` per line), so a message the user
deleted on the new server is not brought back. Three ways to ask, from the most to the
least data carried back:

* :func:`read_maildirs`: every identity of the folders a plan reads, with the flags and
  keywords of their files (one ``find``, then one command that reads the ledgers and the
  folders' ``dovecot-keywords``), for a mailbox read whole;
* :func:`look_up_digests`: only the identities with given digests, filtered on the
  target (awk), with the flags of their files (and the folders'
  ``dovecot-keywords`` where keywords are compared, in the same batch), for the
  messages appended to a mailbox since its checkpoint;
* :func:`read_ledger_counts`: only the ledger's line count per folder and its size,
  counted on the target, for a mailbox unchanged since its checkpoint.

Which folders exist at all (an empty one holds no identity to find) is
:func:`~mailplan.facts.folders_there.missing_folders`: a ``find`` of their directories.

The source side (which mbox files exist, what they hold) is :mod:`mailplan.facts.mailboxes`
and :mod:`mailplan.facts.mailbox_scan`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

from mailplan.connectors.base import Connector
from mailplan.errors import HostError
from mailplan.facts.digest_lookup import lookup_command
from mailplan.facts.ledger_flags import FolderFlags, Recorded, flags_lines
from mailplan.mail.bookkeeping import keyword_letters
from mailplan.mail.maildir import (
    KEYWORDS_FILE,
    SUBSCRIPTION_FILES,
    Identities,
    parse_message_name,
)
from mailplan.mail.writer.proto import FOLDER_MADE
from mailplan.remote import run_batch
from mailplan.remote_files import each_file, tar_command, tar_files
from mailplan.shell import chunks, join
from mailplan.text import is_number

LEDGER = "mailplan-ledger"
PENDING = "mailplan-pending-"  # the agent's record of a batch it is making visible

_FOUND = re.compile(rb"([^\0]*)\0([^\0]*)\0")  # find's "%H\0%f\0" records
#: a ledger line (three fields, an ASCII-numeric occurrence; lines end at \n only): the
#: rule of parse_ledger, of the agent and of the count on the target (_LEDGER_COUNT)
_LEDGER_LINE = re.compile(rb"^([^\t\n]*)\t([^\t\n]*)\t([0-9]+)$", re.M)
#: the same, after its byte offset (as ``grep -b`` and look_up_digests' awk put it)
_OFFSET_LEDGER_LINE = re.compile(rb"^([0-9]+):([^\t\n]*)\t([^\t\n]*)\t([0-9]+)$", re.M)
#: the line a writer appends when it makes a folder (``dir TAB folder``)
_MADE_LINE = re.compile(rb"^([^\t\n]*)\t" + FOLDER_MADE.encode() + rb"$", re.M)


@dataclass
class MaildirFacts:
    """Identities already in one user's Maildir, per folder directory: its message files
    and its import ledger together (one set: a message is usually in both), and how many
    identities the ledger holds."""

    ids: dict[str, Identities] = field(default_factory=dict)
    ledger_count: dict[str, int] = field(default_factory=dict)
    ledger_size: int = 0  # bytes
    #: per folder dir, the Maildir flags of each message file by its identity, and the
    #: folder's keywords (:class:`FolderFlags`): what a plan compares with the source's
    flags: dict[str, FolderFlags] = field(default_factory=dict)

    def known(self, dirname: str) -> Identities:
        """Identities that must not be imported into ``dirname`` again."""
        return self.ids.get(dirname, Identities())


def parse_ledger(data: bytes, *, made: bool = False) -> dict[str, Recorded]:
    """The agent's ledger file: ``dir TAB sha256 TAB occurrence`` per line (a line of
    another shape is skipped), each folder's with the flags its flags lines record
    (``Recorded.recorded``); with ``made``, each folder dir a ``dir TAB folder`` line
    says a writer made is there too (an empty set when no message line names it)."""
    ledger: dict[str, Recorded] = {}
    for m in _LEDGER_LINE.finditer(data):
        ledger.setdefault(m[1].decode("utf-8", "replace"), Recorded()).add(
            (m[2].decode("utf-8", "replace"), int(m[3])))
    for dirname, identity, flags in flags_lines(data):  # (the last one counts)
        ledger.setdefault(dirname, Recorded()).recorded[identity] = flags
    for m in _MADE_LINE.finditer(data) if made else ():
        ledger.setdefault(m[1].decode("utf-8", "replace"), Recorded())
    return ledger


def read_maildirs(conn: Connector, folders: Mapping[str, Collection[str]]
                  ) -> dict[str, MaildirFacts]:
    """What each Maildir holds in the given folder dirs (``""`` = INBOX; missing Maildirs
    and folders read as empty), from its message files and its import ledger; read-only.
    Only the folders a plan reads are listed: a user's archive folders are not, when only
    the INBOX grew."""
    facts = {m: MaildirFacts() for m in folders}
    if not folders:
        return facts

    def add(maildir: str, dirname: str, identity: tuple[str, int]) -> bytes | None:
        return facts[maildir].ids.setdefault(dirname, Identities()).add(identity)

    starts = {f"{m}/{d}/{sub}" if d else f"{m}/{sub}": (m, d)
              for m, dirnames in folders.items() for d in dirnames for sub in ("new", "cur")}
    # streamed, not held: the listing of a big folder is a few times its identities' size
    listing = "\n".join(join(["find", *chunk, "-maxdepth", "1", "-type", "f", "-name",
                               "*_mp*", "-printf", "%H\\0%f\\0"]) + " 2>/dev/null; true"
                         for chunk in chunks(sorted(starts)))
    with conn.shell().stream(listing, shown=f"find (list {len(starts)} Maildir dirs, first "
                                            f"{min(starts)})") as res:
        for start, name in _pairs(res.stdout):
            path = start.decode("utf-8", "surrogateescape")
            owner = starts.get(path)
            parsed = parse_message_name(name.decode("utf-8", "surrogateescape"))
            if owner is not None and parsed is not None:
                # the flags are keyed by the set's own key object, not a copy of it
                ident = add(owner[0], owner[1], parsed.identity) or Identities.key(
                    parsed.identity)
                facts[owner[0]].flags.setdefault(owner[1], FolderFlags())[ident] = \
                    _file_flags(parsed.flags, path.endswith("/cur"))

    # the folders' keywords files, read in the ledgers' command (not through a link)
    named = {(m, d): facts[m].flags.setdefault(d, FolderFlags())
             for m, dirnames in folders.items() for d in dirnames}
    keyword_paths = _keyword_paths(named)

    def read(path: str, contents: IO[bytes]) -> None:
        if path in keyword_paths:  # small: held whole, as read_files holds it
            _set_keywords(named, keyword_paths, {path: contents.read()})
            return
        maildir = path[: -len(LEDGER) - 1]
        counts = facts[maildir].ledger_count
        for line in contents:  # lines end at \n only
            facts[maildir].ledger_size += len(line)
            m = _LEDGER_LINE.match(line)
            if m is None:
                for d, ident, had in flags_lines(line):  # of a folder read: its own
                    if (maildir, d) in named:
                        named[maildir, d].recorded[Identities.key(ident)] = had
                continue
            dirname = m[1].decode("utf-8", "replace")
            counts[dirname] = counts.get(dirname, 0) + 1  # lines, as read_ledger_counts
            if dirname in folders[maildir]:
                add(maildir, dirname, (m[2].decode("utf-8", "replace"), int(m[3])))

    # one command: the ledgers (through a link, as the writer and the counts read them),
    # then the keywords files, which a user may replace, not through one (as verify)
    each_file(conn, [f"{m}/{LEDGER}" for m in folders], read,
              unfollowed=sorted(keyword_paths))
    return facts


def _keyword_paths(folders: Collection[Key]) -> dict[str, Key]:
    """The ``dovecot-keywords`` file of each folder."""
    return {(f"{m}/{d}/{KEYWORDS_FILE}" if d else f"{m}/{KEYWORDS_FILE}"): (m, d)
            for m, d in folders}


def _set_keywords(folders: Mapping[Key, FolderFlags], paths: Mapping[str, Key],
                  files: Mapping[str, bytes | None]) -> None:
    """Each folder's keywords from its ``dovecot-keywords`` as read (``paths``: whose)."""
    for path, data in files.items():
        if data is not None:
            folders[paths[path]].keywords = keyword_letters(
                data.decode("utf-8", "surrogateescape"))


def _file_flags(info: str | None, in_cur: bool) -> str:
    """The Maildir flags of a message file: what follows ``:2,`` in one in cur/ (flags,
    then keyword letters), "" in new/; one string per combination, shared by the files
    that have it."""
    return sys.intern(info or "" if in_cur else "")


def _pairs(stream: IO[bytes]) -> Iterator[tuple[bytes, bytes]]:
    """``find -printf '%H\\0%f\\0'`` records as they arrive on ``stream``."""
    rest = b""
    while chunk := stream.read(1 << 16):
        data, end = rest + chunk, 0
        for m in _FOUND.finditer(data):
            yield m[1], m[2]
            end = m.end()
        rest = data[end:]


Key = tuple[str, str]  # (Maildir, folder dir)


def look_up_digests(conn: Connector, wanted: Mapping[Key, Collection[str]],
                    before: Mapping[Key, int | None] | None = None,
                    flags: dict[Key, FolderFlags] | None = None,
                    keywords: Collection[Key] = (),
                    also: Mapping[Key, Collection[str]] | None = None
                    ) -> tuple[dict[Key, set[tuple[str, int]]], dict[Key, set[tuple[str, int]]]]:
    """The identities with the given digests that each (Maildir, folder dir) holds, in
    its message files or its ledger, and those of them in ledger lines before byte
    ``before[key]`` of the ledger (all of its lines when that is None); read-only.
    Filtered on the target (by awk), so what comes back follows the digests asked
    about, not the size of the folder: a plan asks only about the messages appended to
    a mailbox since its checkpoint. Each folder costs one command, one listing of its
    new/ and cur/ and one read of its ledger, however many digests are asked about
    (:mod:`mailplan.facts.digest_lookup`; a digest that is not a sha256 in hex is
    refused). ``flags``, when given, gets the Maildir flags of each message file found,
    by identity key (as :attr:`MaildirFacts.flags`), and for the keys of ``keywords``
    (folders where messages with IMAP keywords are looked up) what the keyword letters
    name, read from their ``dovecot-keywords`` as :func:`read_maildirs` reads it, by one
    more command in the same batch (no round trip of its own; none where no key is
    given). ``also``: by key, other folder dirs whose ledger lines count for it."""
    found: dict[Key, set[tuple[str, int]]] = {key: set() for key in wanted}
    early: dict[Key, set[tuple[str, int]]] = {key: set() for key in wanted}
    asked = {key: set(digests) for key, digests in wanted.items() if digests}
    jobs = [((m, d), lookup_command(f"{m}/{d}" if d else m, f"{m}/{LEDGER}", sorted(digests)))
            for (m, d), digests in asked.items()]
    named = {key: flags.setdefault(key, FolderFlags()) for key in keywords} \
        if flags is not None else {}
    paths = _keyword_paths(named)
    results = run_batch(conn, [cmd for _k, cmd in jobs]
                        + ([tar_command(sorted(paths), follow=False)] if paths else []))
    if paths:
        _set_keywords(named, paths, tar_files(conn, sorted(paths), results.pop()))
    for (key, _cmd), res in zip(jobs, results, strict=True):
        if res.returncode != 0:  # no awk there (else the command cannot fail)
            raise HostError(res.stderr_text or f"exit {res.returncode}", host=conn.name,
                            step=f"look up messages in {key[0]}")
        # what parses as an identity asked about, whatever awk let through
        names, _, ledger = res.stdout.rpartition(b"\0")
        for path in names.split(b"\0") if names else []:
            where, _, name = path.decode("utf-8", "surrogateescape").rpartition("/")
            parsed = parse_message_name(name)
            if parsed is not None and parsed.digest in asked[key]:
                found[key].add(parsed.identity)
                if flags is not None:
                    flags.setdefault(key, FolderFlags())[Identities.key(parsed.identity)] = \
                        _file_flags(parsed.flags, where == "cur")
        limit, dirs = (before or {}).get(key), {key[1], *(also or {}).get(key, ())}
        for m in _OFFSET_LEDGER_LINE.finditer(ledger):
            digest = m[3].decode("utf-8", "replace")
            if m[2].decode("utf-8", "replace") in dirs and digest in asked[key]:
                identity = (digest, int(m[4]))
                found[key].add(identity)
                if limit is None or int(m[1]) < limit:
                    early[key].add(identity)
        for d, ident, recorded in flags_lines(ledger, offset=True) if flags is not None \
                else ():
            if d == key[1]:  # (the last one counts)
                flags.setdefault(key, FolderFlags()).recorded[Identities.key(ident)] = recorded
    return found, early


# per ledger file: "INDEX TAB dir TAB lines" for each folder dir, counting the lines
# parse_ledger keeps (three fields, a numeric occurrence), "INDEX TAB dir TAB folder" for
# each folder dir a writer made, then "INDEX TAB / TAB bytes"
_LEDGER_COUNT = ("{ awk -F '\\t' -v i=\"$i\" 'NF == 3 && $3 ~ /^[0-9]+$/ {n[$1]++} "
                 f"NF == 2 && $2 == \"{FOLDER_MADE}\" {{m[$1] = 1}} "
                 "END {for (d in n) printf \"%d\\t%s\\t%d\\n\", i, d, n[d]; "
                 f"for (d in m) printf \"%d\\t%s\\t{FOLDER_MADE}\\n\", i, d}}' \"$f\"; "
                 "printf '%d\\t/\\t%d\\n' \"$i\" \"$(($(wc -c < \"$f\")))\"; }")
#: the key of a ledger's size in bytes among read_ledger_counts' folder dirs (no folder
#: dir holds a "/")
LEDGER_BYTES = "/"
#: the key, with the value 1, of a Maildir holding the record a writer stopped between
#: making a batch visible and writing its ledger lines left (``mailplan-pending-PID``:
#: the next writer to open the Maildir appends those lines)
PENDING_KEY = "//"
# per Maildir: "INDEX TAB // TAB 1" when it holds a pending record (a shell glob: the
# Maildir's own directory is read, no process is started)
_PENDING_LOOK = (f'for p in "${{f%/*}}"/{PENDING}*; do [ -e "$p" ] && '
                 "printf '%d\\t//\\t1\\n' \"$i\"; break; done")


def ledger_sizes(conn: Connector, maildirs: Sequence[str]) -> dict[str, int]:
    """Each Maildir's ledger size in bytes (one batch: a ``find`` of the ledger files,
    nothing read; a Maildir without one is left out). The ledger lists every message
    imported, so its size tells how many identities reading the Maildir would bring."""
    sizes: dict[str, int] = {}
    cmds = [join(["find", *[f"{m}/{LEDGER}" for m in chunk], "-maxdepth", "0", "-type", "f",
                  "-printf", "%s\\t%p\\0"]) + " 2>/dev/null; true"
            for chunk in chunks(sorted(maildirs))]
    for res in run_batch(conn, cmds):
        for record in res.stdout.split(b"\0"):
            size, _, path = record.decode("utf-8", "surrogateescape").partition("\t")
            if is_number(size) and path.endswith(f"/{LEDGER}"):
                sizes[path[: -len(LEDGER) - 1]] = int(size)
    return sizes


# per Maildir: "INDEX TAB /FILE TAB LINE" for each line of its subscription files
# (SUBSCRIPTION_FILES; one a user replaced by a symbolic link is not read, as verify
# reads none), one awk for both, none where there is neither; "INDEX TAB !FILE TAB KIND"
# for one that is neither a regular file nor a link (a directory, a named pipe: apply
# cannot write there), with test(1) only
_SUBSCRIPTIONS_READ = (
    "for n in " + " ".join(SUBSCRIPTION_FILES) + "; do s=\"${f%/*}/$n\"; "
    "[ -h \"$s\" ] || [ ! -e \"$s\" ] || [ -f \"$s\" ] || { [ -d \"$s\" ] && "
    "printf '%d\\t!%s\\tdirectory\\n' \"$i\" \"$n\" || "
    "printf '%d\\t!%s\\tspecial\\n' \"$i\" \"$n\"; }; done; "
    "s1=\"${f%/*}/" + SUBSCRIPTION_FILES[0] + "\"; s2=\"${f%/*}/" + SUBSCRIPTION_FILES[1]
    + "\"; { [ -f \"$s1\" ] && [ ! -h \"$s1\" ]; } || s1=/dev/null; "
    "{ [ -f \"$s2\" ] && [ ! -h \"$s2\" ]; } || s2=/dev/null; "
    "[ \"$s1$s2\" = /dev/null/dev/null ] || awk -v i=\"$i\" "
    "'FILENAME != \"/dev/null\" {n = FILENAME; sub(/.*\\//, \"\", n); "
    "printf \"%d\\t/%s\\t%s\\n\", i, n, $0}' \"$s1\" \"$s2\"")


def read_ledger_counts(conn: Connector, maildirs: Sequence[str],
                       subscriptions: dict[str, dict[str, bytes]] | None = None,
                       made: dict[str, set[str]] | None = None
                       ) -> dict[str, dict[str, int]]:
    """How many messages each Maildir's ledger records per folder dir, counted on the
    target (one batch; a few bytes per folder come back), its size in bytes (under
    :data:`LEDGER_BYTES`) and whether a pending record is there (:data:`PENDING_KEY`).
    For a mailbox unchanged since its checkpoint the plan needs only this, not the
    Maildir's identities, so a re-plan does not list every message file of every user.
    A missing ledger counts nothing. ``subscriptions``, when given, gets the contents
    of each Maildir's subscription files (:data:`SUBSCRIPTION_FILES`) that are there,
    read in the same batch: what the plan compares with the lines apply writes; one of
    those names that is a directory or another special file (not a symbolic link, which
    apply replaces) is under ``!NAME`` instead, with ``directory`` or ``special``.
    ``made``, when given, gets by Maildir the folder dirs its ledger records a writer made
    (``dir TAB folder`` lines), read in the same awk."""
    counts: dict[str, dict[str, int]] = {m: {} for m in maildirs}
    if not maildirs:
        return counts
    groups = list(chunks(sorted(maildirs)))
    cmds = ["i=0; for f in " + join([f"{m}/{LEDGER}" for m in chunk])
            + '; do i=$((i+1)); [ -f "$f" ] && ' + _LEDGER_COUNT + "; " + _PENDING_LOOK
            + ("; " + _SUBSCRIPTIONS_READ if subscriptions is not None else "")
            + "; done; true"
            for chunk in groups]
    for chunk, res in zip(groups, run_batch(conn, cmds), strict=True):
        for raw in res.stdout.split(b"\n"):
            index, _, rest = raw.partition(b"\t")
            if not is_number(index.decode("ascii", "replace")) \
                    or not 0 < int(index) <= len(chunk):
                continue
            maildir = chunk[int(index) - 1]
            # a subscription file's line may hold tabs (dovecot's version 2 form)
            fname, _, text = rest.partition(b"\t")
            if subscriptions is not None and fname[1:].decode("ascii", "replace") \
                    in SUBSCRIPTION_FILES and fname[:1] in (b"/", b"!"):
                files = subscriptions.setdefault(maildir, {})
                if fname.startswith(b"!"):  # no file apply can write: what it is instead
                    files[fname.decode("ascii")] = text
                    continue
                key = fname[1:].decode("ascii")
                files[key] = files.get(key, b"") + text + b"\n"
                continue
            dirname, _, lines = rest.decode("utf-8", "replace").rpartition("\t")
            if lines == FOLDER_MADE:
                if made is not None:
                    made.setdefault(maildir, set()).add(dirname)
            elif is_number(lines):
                counts[maildir][dirname] = int(lines)
    return counts
