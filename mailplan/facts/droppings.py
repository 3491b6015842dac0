"""Files programs leave in a folders directory that hold no mail (dovecot's index
directory ``.imap/``, macOS Finder's ``.DS_Store``, an editor's swap file): left out of
the import, and said once per user as an ``info`` note (``plan -v``, verify), with their
number, never in silence.

A file is left out so only when both its name is one of those below
(:func:`dropping`) and its first bytes are not a From_ line's ``From `` (read on the
source, :func:`not_mail`): a file that starts with ``From `` is mail whatever its name
(``Sent~``, an editor's copy of a folder, is imported as the folder ``Sent~``), and one
that cannot be read stays a folder, whose read says why. Any other file that is no mbox
stays a problem of the plan.

emacs's lock file (``.#NAME`` beside the file it edits) is a symbolic link pointing at
nothing: its target is text, ``USER@HOST.PID:BOOT_TIME``. One named so whose target is
that text, naming no entry beside it, is left out with the others
(:func:`lock_links`), never followed; any other symbolic link stays a problem
(:func:`~mailplan.facts.listing_notes.link_notes`). Where links cannot be made emacs
writes that text in a file ``.#NAME``, which is left out as the files above are.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Container, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from mailplan.connectors.base import Connector
from mailplan.facts.notes import MailboxNote
from mailplan.remote import run_batch
from mailplan.shell import chunks, join
from mailplan.text import escape

if TYPE_CHECKING:
    from mailplan.facts.source_mailbox import MailboxRef

#: (whose, a file name's pattern): the names programs give their own files
_NAMES = (
    ("dovecot's", re.compile(r"\.subscriptions|dovecot\.(index|list\.index|mailbox\.log)"
                             r"(\..+)?|dovecot-(uidlist|uidvalidity|keywords)(\..+)?")),
    ("UW-IMAP's subscription list", re.compile(r"\.mailboxlist")),
    ("MH's", re.compile(r"\.mh_sequences|\.xmhcache")),
    ("macOS Finder's", re.compile(r"\.DS_Store|\._.+")),
    # vim's swap files (.NAME.swp, .swo ...), a backup (NAME~), emacs's auto-save (#NAME#)
    # and lock (.#NAME: a link, :func:`lock_links`, or a file where links cannot be made)
    ("an editor's", re.compile(r"\..+\.sw[a-p]|.+~|#.+#|\.#.+")),
)
#: what emacs's lock file points at (filelock.c): USER@HOST.PID, then :BOOT_TIME where
#: emacs knows the boot time
_LOCK_TEXT = re.compile(r"[^@/]+@[^/]+\.[0-9]+(:[0-9]+)?")
#: dovecot's index directory for mbox folders (mail_location mbox:~/mail: its files are
#: ~/mail/.imap/FOLDER/dovecot.index*), named once with its number of files
INDEX_DIR = ".imap"
#: names listed in a note before "and N more"
_SHOWN = 3


def dropping(rel: str) -> str | None:
    """Whose file ``rel`` (a path below a folders directory) is by its name, or None
    for a name no program gives its own files."""
    if rel.split("/", 1)[0] == INDEX_DIR and "/" in rel:
        return "dovecot's index"
    name = posixpath.basename(rel)
    return next((whose for whose, pattern in _NAMES if pattern.fullmatch(name)), None)


def lock_links(linked: Mapping[str, str], *listed: Container[str]) -> set[str]:
    """Of the symbolic links ``linked`` (path -> where it points, as listed; never
    followed), emacs's lock files: named ``.#NAME``, pointing at emacs's lock text
    (:data:`_LOCK_TEXT`, which has no ``/``), and so at nothing, as the listing shows: no
    path of ``linked`` nor of ``listed`` (the other entries listed) is the one it
    names beside it."""
    out = set()
    for path, dest in linked.items():
        name, there = posixpath.basename(path), posixpath.join(posixpath.dirname(path), dest)
        if name.startswith(".#") and len(name) > 2 and _LOCK_TEXT.fullmatch(dest) and \
                not any(there in names for names in (linked, *listed)):
            out.add(path)
    return out


def not_mail(conn: Connector, paths: Sequence[str]) -> set[str]:
    """Of ``paths`` (files listed on the source), those that are regular files, readable,
    and do not start with ``From ``: their first 5 bytes read by one ``head`` per
    :data:`~mailplan.shell.PATHS_PER_COMMAND` files (a dovecot index holds thousands;
    one ``dd`` each took 7 ms a file), which may set their access times (these are no
    mailboxes: a program's file, or a folder named as one, such as ``Sent~``). One
    batch; none when ``paths`` is empty."""
    out: set[str] = set()
    commands = [join(["find", *chunk, "-maxdepth", "0", "-type", "f", "-exec", "head",
                      "-v", "-c", "5", "--", "{}", "+"]) + " 2>/dev/null; true"
                for chunk in chunks(paths)]
    for chunk, res in zip(chunks(paths), run_batch(conn, commands) if paths else [],
                          strict=True):
        out |= _heads(res.stdout, list(chunk))
    return out


def _heads(out: bytes, paths: list[str]) -> set[str]:
    """Of ``paths``, those whose part of ``head -v -c 5``'s output ``out`` (a header
    ``==> PATH <==`` then at most 5 bytes, each header after the first preceded by a
    newline; a file head could not read has none) does not start with ``From ``. Where
    the output cannot be read so, the rest is left out of the answer (read as folders)."""
    names = [p.encode("utf-8", "surrogateescape") for p in paths]
    found: set[str] = set()
    pos, nxt = 0, 0
    while pos < len(out):
        lead = b"\n" if pos else b""
        at = next((j for j in range(nxt, len(names))
                   if out.startswith(lead + b"==> " + names[j] + b" <==\n", pos)), None)
        if at is None:
            break
        pos += len(lead) + len(names[at]) + 9
        nxt = at + 1
        if out.startswith(b"From ", pos):  # mail: a folder
            pos += 5
            continue
        # where the next header starts (one of the next 8 files': head skips one it
        # cannot read), after at most 5 bytes
        ends = [pos + k for k in range(6) if pos + k == len(out) or any(
            out.startswith(b"\n==> " + name + b" <==\n", pos + k)
            for name in names[nxt:nxt + 8])]
        if not ends:
            break
        found.add(paths[at])
        pos = ends[0]
    return found


def dropping_note(ref: MailboxRef, paths: Iterable[str]) -> MailboxNote | None:
    """The one note on ``ref``'s files left out as programs' own (``paths``, below its
    folders directory), grouped by whose they are; None when there are none."""
    root = ref.folders.rstrip("/") or "/"
    rels = sorted(p[len(root) + 1:] for p in paths)
    if not rels:
        return None
    groups: dict[str, list[str]] = {}
    for rel in rels:
        groups.setdefault(dropping(rel) or "", []).append(rel)
    said = []
    for whose, names in groups.items():
        if whose == "dovecot's index":
            said.append(f"dovecot's index {INDEX_DIR}/ ({len(names)} files)")
            continue
        more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
        said.append(f"{whose} {', '.join(escape(n) for n in names[:_SHOWN])}{more}")
    return MailboxNote(ref.domain, ref.user, "info", root,
                       f"{escape(root)}: {len(rels)} file(s) left out, programs' own files "
                       f"that hold no mail (named so, none starts with a From_ line): "
                       + "; ".join(said))
