"""Problems of the source's mailbox listing (:mod:`mailplan.facts.mailboxes`): the paths
of a user's mail that are not imported as listed. A spool, ``~/mbox`` or folder entry
that is neither a file nor a link (:func:`not_a_file`), a symbolic link among them
(:func:`link_notes`: never followed) and a place ``find`` could not see
(:func:`unseen_notes`) are each named, never passed over as no mail."""

from __future__ import annotations

import posixpath
from collections.abc import Set
from typing import TYPE_CHECKING

from mailplan.facts.folder_kinds import hidden_config
from mailplan.facts.notes import MailboxNote
from mailplan.text import escape

if TYPE_CHECKING:
    from mailplan.facts.source_mailbox import MailboxRef

#: what find's ``%y`` letters name
FILE_TYPES = {"d": "a directory", "p": "a named pipe", "s": "a socket",
               "b": "a block device", "c": "a character device"}


def not_a_file(ref: MailboxRef, path: str, letter: str, lead: str, what: str, folder: str
               ) -> MailboxNote:
    """The problem of ``ref``'s mailbox ``path`` (``what`` it is for the user: the
    spool, ~/mbox, a folder) that ``find`` found neither a file nor a link: a directory,
    a named pipe, a socket, a device: find's type ``letter``. Nothing is read from it."""
    kind = FILE_TYPES.get(letter, "not a regular file")
    return MailboxNote(ref.domain, ref.user, "problem", path,
                       f"{lead}{escape(path)} ({what}) is {kind}, not an mbox file: nothing "
                       "is imported from it (mail kept there is left on the old server)",
                       folder)


def unseen_notes(ref: MailboxRef, unseen: dict[str, list[tuple[str, bool]]]
                  ) -> list[MailboxNote]:
    """Problems of a user's spool, ~/mbox or folder directory that ``find`` could not
    see whole."""
    notes = []
    mbox = ref.home_mbox or ""
    for start, what, folder in ((ref.spool, "mail there is", "INBOX"),
                                (mbox, "mail there is", "INBOX"),
                                (ref.folders.rstrip("/") or "/", "folders there are", None)):
        said = unseen.get(start) if start else None
        if not said:
            continue
        line, exact = said[0]
        more = f" (and {len(said) - 1} more)" if len(said) > 1 else ""
        effect = (f"{what} not imported" if exact else
                  f"listing {escape(start)}: {what} perhaps not all imported")
        notes.append(MailboxNote(
            ref.domain, ref.user, "problem", start,
            f"{escape(line)}{more}: {effect}; mailplan must be able to read it (log in to "
            "the source as root, or set sudo: true)", folder, unseen=True))
    return notes


def link_notes(ref: MailboxRef, linked: dict[str, str], droppings: Set[str] = frozenset()
               ) -> list[MailboxNote]:
    """A problem for each of the user's spool and folder paths that is a symbolic link
    (not followed: mailplan reads as root), a home directory's hidden ones left out as its
    hidden files are (:func:`.folder_kinds.hidden_config`), and emacs's lock links among
    ``droppings`` as programs' own files are (:func:`.droppings.lock_links`: one note
    names them with those);
    an ``info`` note for a link to the user's own spool (``~/mail/INBOX`` made so for
    pine), whose mail is imported from the spool."""
    notes = []
    root = ref.folders.rstrip("/") or "/"
    mbox = ref.home_mbox
    for path in sorted(linked):
        rel = path[len(root) + 1:] if path.startswith(root + "/") else ""
        if path not in (ref.spool, root, mbox) and not rel:
            continue  # another user's
        if hidden_config(ref, rel) or (rel and path in droppings):
            continue
        dest = posixpath.normpath(posixpath.join(posixpath.dirname(path), linked[path]))
        if path != ref.spool and dest == posixpath.normpath(ref.spool):
            notes.append(MailboxNote(ref.domain, ref.user, "info", path,
                                     f"{escape(path)} is a symbolic link to the spool, "
                                     "whose mail is imported into the INBOX", "INBOX"))
            continue
        what = "the folders directory" if path == root else "the spool" if path == ref.spool \
            else "~/mbox, INBOX mail" if path == mbox else "a folder"
        notes.append(MailboxNote(ref.domain, ref.user, "problem", path,
                                 f"{escape(path)} ({what}) is a symbolic link: not followed "
                                 "(mailplan reads the source as root), so no mail behind it "
                                 "is imported (if it is this user's, replace the link with "
                                 "what it points to)", rel or None))
    return notes
