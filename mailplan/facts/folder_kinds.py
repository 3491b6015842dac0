"""Entries of a folders directory that are no mbox folder files
(:mod:`mailplan.facts.mailboxes` lists the rest as folders).

- Hidden files are folders like any other: UW-IMAP lists them (c-client's hideDotFiles
  is off by default, env_unix.c), so ``~/mail/.old`` is a folder ``.old`` there and its
  mail is imported (the target's directory ``.\\2eold``: :mod:`mailplan.mail.maildir`).
  Not when the folders directory is the home directory itself: its hidden files are
  configuration (``.profile``, ``.pinerc``), left out.
- A directory holding ``.mixmeta`` is a folder in UW-IMAP's mix format: its ``.mix``
  files (which c-client hides in it) are one problem naming the directory.
- A Maildir (``cur``, ``new`` and ``tmp`` directories: its message files, Maildir++
  folders and index files below it) is one problem naming it, not one per message file;
  so is one copied without one of them (two of the three; a ``cur`` or ``new`` alone
  holding a file named as Maildir names its messages, ``TIME.UNIQUE.HOST``).
- Programs' own files (dovecot's ``.imap/`` index, ``.DS_Store``, an editor's swap
  file) that do not start with ``From ``, and emacs's lock links (``.#NAME``, pointing
  at nothing): left out, with one ``info`` note naming them
  (:mod:`mailplan.facts.droppings`).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Set
from typing import TYPE_CHECKING

from mailplan.facts.droppings import INDEX_DIR, dropping, dropping_note
from mailplan.facts.notes import MAILDIR_NOTE, MIX_NOTE, MailboxNote
from mailplan.mail.maildir import source_folder
from mailplan.text import escape

if TYPE_CHECKING:
    from mailplan.facts.source_mailbox import MailboxRef

#: how Maildir names a message file (TIME.UNIQUE.HOST, then :2,FLAGS in cur/)
_MESSAGE_NAME = re.compile(r"[0-9]{9,}\.[^./]+\.[^/]+")
#: what a Maildir note says it has, by the set of its directories there
_HAS = {3: "cur, new and tmp directories", 2: "{} directories; its {} is missing",
        1: "a {} directory of Maildir message files; its {} are missing"}


def hidden_config(ref: MailboxRef, rel: str) -> bool:
    """Whether ``rel`` (a path below ``ref``'s folders directory) is left out as a hidden
    file of the home directory: the folders directory is the home directory itself."""
    return bool(ref.home) and posixpath.normpath(ref.folders) == posixpath.normpath(
        ref.home) and any(part.startswith(".") for part in rel.split("/"))


def named_droppings(refs: Iterable[MailboxRef], files: Iterable[str]) -> list[str]:
    """Of ``files`` (paths listed), those below a folders directory of ``refs`` named as
    programs name their own files (:func:`.droppings.dropping`), but a home directory's
    hidden files (left out already)."""
    # (by their own names first: a listing holds many users' files, few of these)
    files = [p for p in files if f"/{INDEX_DIR}/" in p or dropping(posixpath.basename(p))]
    out = set()
    for ref in refs:
        prefix = ref.folders.rstrip("/") + "/"
        out |= {p for p in files if p.startswith(prefix) and dropping(p[len(prefix):])
                and not hidden_config(ref, p[len(prefix):])}
    return sorted(out)


def _maildir(parent: str, dirs: Set[str], paths: Iterable[str]) -> str | None:
    """What a Maildir note says ``parent`` has (:data:`_HAS`), or None when it is no
    Maildir: two of cur, new and tmp, or one of cur and new holding a message file."""
    there = [sub for sub in ("cur", "new", "tmp") if f"{parent}/{sub}" in dirs]
    gone = " and ".join(sub for sub in ("cur", "new", "tmp") if sub not in there)
    if len(there) == 1 and not (there[0] != "tmp" and any(
            posixpath.dirname(p) == f"{parent}/{there[0]}"
            and _MESSAGE_NAME.fullmatch(posixpath.basename(p)) for p in paths)):
        return None
    return _HAS[len(there)].format(" and ".join(there), gone)


def maildirs(dirs: Set[str], paths: Iterable[str]) -> dict[str, str]:
    """The Maildirs among the directories listed below a folders directory (``dirs``:
    those named cur, new or tmp; ``paths``: the files), each with what it has there
    (:data:`_HAS`); none inside another. The import reads no file below one; the
    survey of ``mailplan init`` counts none as a folder."""
    paths = list(paths)
    found: dict[str, str] = {}
    for parent in sorted({posixpath.dirname(d) for d in dirs}):
        if not any(parent.startswith(m + "/") for m in found) and (
                has := _maildir(parent, dirs, paths)):
            found[parent] = has
    return found


def passed_over(ref: MailboxRef, paths: Iterable[str], dirs: Set[str],
                not_mail: Set[str] = frozenset()) -> tuple[set[str], list[MailboxNote]]:
    """Of ``paths`` (the entries ``find`` listed below ``ref``'s folders directory, none
    a directory), those that are no folder files; with the problems naming the mix
    folders and Maildirs among them, and the note on programs' own files. ``dirs``: the
    directories named cur, new or tmp listed there; ``not_mail``: the files read that do
    not start with ``From `` (:func:`.droppings.not_mail`), and emacs's lock links
    (:func:`.droppings.lock_links`), which the note names with them."""
    prefix = ref.folders.rstrip("/") + "/"
    root = prefix[:-1] or "/"
    paths = [p for p in {*paths, *not_mail} if p.startswith(prefix)]
    dirs = {d for d in dirs if not hidden_config(ref, d[len(prefix):])}
    found = maildirs(dirs, paths)
    skipped = {p for p in paths if hidden_config(ref, p[len(prefix):])
               or any(p.startswith(m + "/") for m in found)}
    mixes = {posixpath.dirname(p) for p in paths
             if p not in skipped and posixpath.basename(p) == ".mixmeta"}
    skipped |= {p for p in paths if posixpath.dirname(p) in mixes
                and posixpath.basename(p).startswith(".mix")}
    left = {p for p in paths if p in not_mail and p not in skipped
            and dropping(p[len(prefix):])}
    skipped |= left
    notes = [note] if (note := dropping_note(ref, left)) else []
    for where, what in sorted([*((m, MIX_NOTE) for m in mixes),
                               *((m, MAILDIR_NOTE.replace("{has}", has))
                                 for m, has in found.items())]):
        rel = where[len(prefix):] if where != root else ""
        count = sum(posixpath.basename(posixpath.dirname(p)) in ("cur", "new")
                    for p in paths if p.startswith(where + "/"))
        notes.append(MailboxNote(ref.domain, ref.user, "problem", where, f"{escape(where)} "
                                 + what.format(count=count, address=f"{ref.user}@{ref.domain}"),
                                 (source_folder(rel) if ref.decode_names else rel) or None))
    return skipped, notes
