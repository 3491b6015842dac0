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
  folders and index files below it) is one problem naming it, not one per message file.
- Programs' own files (dovecot's ``.imap/`` index, ``.DS_Store``, an editor's swap
  file) that do not start with ``From ``: left out, with one ``info`` note naming them
  (:mod:`mailplan.facts.droppings`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Set
from typing import TYPE_CHECKING

from mailplan.facts.droppings import dropping, dropping_note
from mailplan.facts.notes import MAILDIR_NOTE, MIX_NOTE, MailboxNote
from mailplan.mail.maildir import source_folder
from mailplan.text import escape

if TYPE_CHECKING:
    from mailplan.facts.mailboxes import MailboxRef


def hidden_config(ref: MailboxRef, rel: str) -> bool:
    """Whether ``rel`` (a path below ``ref``'s folders directory) is left out as a hidden
    file of the home directory: the folders directory is the home directory itself."""
    return bool(ref.home) and posixpath.normpath(ref.folders) == posixpath.normpath(
        ref.home) and any(part.startswith(".") for part in rel.split("/"))


def named_droppings(refs: Iterable[MailboxRef], files: Iterable[str]) -> list[str]:
    """Of ``files`` (paths listed), those below a folders directory of ``refs`` named as
    programs name their own files (:func:`.droppings.dropping`), but a home directory's
    hidden files (left out already)."""
    files = list(files)
    out = set()
    for ref in refs:
        prefix = ref.folders.rstrip("/") + "/"
        out |= {p for p in files if p.startswith(prefix) and dropping(p[len(prefix):])
                and not hidden_config(ref, p[len(prefix):])}
    return sorted(out)


def passed_over(ref: MailboxRef, paths: Iterable[str], dirs: Set[str],
                not_mail: Set[str] = frozenset()) -> tuple[set[str], list[MailboxNote]]:
    """Of ``paths`` (the entries ``find`` listed below ``ref``'s folders directory, none
    a directory), those that are no folder files; with the problems naming the mix
    folders and Maildirs among them, and the note on programs' own files. ``dirs``: the
    directories named cur, new or tmp listed there; ``not_mail``: the files read that do
    not start with ``From `` (:func:`.droppings.not_mail`)."""
    prefix = ref.folders.rstrip("/") + "/"
    root = prefix[:-1] or "/"
    paths = [p for p in paths if p.startswith(prefix)]
    dirs = {d for d in dirs if not hidden_config(ref, d[len(prefix):])}
    maildirs: list[str] = []
    for parent in sorted({posixpath.dirname(d) for d in dirs}):
        if all(f"{parent}/{sub}" in dirs for sub in ("cur", "new", "tmp")) and not any(
                parent.startswith(m + "/") for m in maildirs):
            maildirs.append(parent)
    skipped = {p for p in paths if hidden_config(ref, p[len(prefix):])
               or any(p.startswith(m + "/") for m in maildirs)}
    mixes = {posixpath.dirname(p) for p in paths
             if p not in skipped and posixpath.basename(p) == ".mixmeta"}
    skipped |= {p for p in paths if posixpath.dirname(p) in mixes
                and posixpath.basename(p).startswith(".mix")}
    left = {p for p in paths if p in not_mail and p not in skipped
            and dropping(p[len(prefix):])}
    skipped |= left
    notes = [note] if (note := dropping_note(ref, left)) else []
    for where, what in sorted([*((m, MIX_NOTE) for m in mixes),
                               *((m, MAILDIR_NOTE) for m in maildirs)]):
        rel = where[len(prefix):] if where != root else ""
        count = sum(posixpath.basename(posixpath.dirname(p)) in ("cur", "new")
                    for p in paths if p.startswith(where + "/"))
        notes.append(MailboxNote(ref.domain, ref.user, "problem", where, f"{escape(where)} "
                                 + what.format(count=count, address=f"{ref.user}@{ref.domain}"),
                                 (source_folder(rel) if ref.decode_names else rel) or None))
    return skipped, notes
