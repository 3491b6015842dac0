"""Facts about the source's mailboxes (read only): which mbox files it has.

One ``find`` lists every spool file and every folder file of the migrated users
(:func:`list_source_mailboxes`), with notes on the files not imported (a symbolic link,
a spool, ~/mbox or folder entry that is not a file, what find could not see:
:mod:`mailplan.facts.listing_notes`) and on those merged into the
INBOX (~/mbox, a folder file named INBOX); :func:`named` names each folder's directory
in the target's encoding. What each mailbox holds is read by
:mod:`mailplan.facts.mailbox_scan`; whether an earlier apply's checkpoint still holds,
by :mod:`mailplan.facts.checkpoints`. The mailbox and the user's places
(:class:`SourceMailbox`, :class:`MailboxRef`) are in :mod:`mailplan.facts.source_mailbox`.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from mailplan.connectors.base import Connector
from mailplan.facts.droppings import lock_links, not_mail
from mailplan.facts.find_errors import find_messages
from mailplan.facts.folder_kinds import named_droppings, passed_over
from mailplan.facts.listing_notes import FILE_TYPES, link_notes, not_a_file, unseen_notes
from mailplan.facts.notes import (
    DOT_LOCK_NOTE,
    HOME_INBOX_NOTE,
    HOME_MBOX_NOTE,
    INBOX_FILE_NOTE,
    MISSING_SPOOL_NOTE,
    NO_FOLDERS_DIR_NOTE,
    NO_SPOOL_DIR_NOTE,
    SHUT_DIR_NOTE,
    MailboxNote,
)
from mailplan.facts.source_mailbox import (
    SETTLED_AFTER,
    MailboxRef,
    SourceMailbox,
    ctime_settled,
)
from mailplan.mail.maildir import FolderNameError, is_inbox, source_folder
from mailplan.remote import run_batch
from mailplan.shell import chunks, join
from mailplan.text import escape

#: a dot-lock is smaller than this (empty, or a process id): no From_ line fits in it
DOT_LOCK_SIZE = 23
#: find's record of a file (size, mtime, ctime, inode, device, owner, link count, path),
#: and of a symbolic link (its path, then where it points, in two NUL-ended fields:
#: either may hold a tab); the first letter tells them apart. The ctime is kept as find
#: prints it: apply's checks compare it with what the same find prints then
#: (:class:`mailplan.mail.snapshot.SnapshotStream`)
_FILE_FORMAT = "f%s\\t%T@\\t%C@\\t%i\\t%D\\t%U\\t%n\\t%p\\0"
_LINK_FORMAT = "l%p\\0%l\\0"
#: find's record of a spool that is neither (a directory, a fifo...): its type letter
_OTHER_FORMAT = "o%y%p\\0"
#: each of the directories {dirs} that ``test -d`` does not find: ``m`` and its path when
#: it is not there, ``p``, its path, the nearest directory above it that is there and the
#: login when that one is one the login may not search (a permission: test -d is false
#: for what is below it, there or not; root may search every directory)
_NO_DIR = ('for d in {dirs}; do test -d "$d" && continue; p=$d; while test "$p" != / && '
           '! test -e "$p"; do p=${{p%/*}}; p=${{p:-/}}; done; if test -d "$p" && ! test -x '
           '"$p"; then u=${{u:-$(id -un 2>/dev/null || id -u)}}; printf \'p%s\\0%s\\0%s\\0\' '
           '"$d" "$p" "$u"; else printf \'m%s\\0\' "$d"; fi; done; true')


def named(listed: tuple[list[SourceMailbox], list[MailboxNote]], names: str
          ) -> tuple[list[SourceMailbox], list[MailboxNote]]:
    """What :func:`list_source_mailboxes` gave, each mailbox's folder directory named in
    the target's encoding ``names`` (``target.folder_names``). A folder whose directory
    name would be too long in it, and a second file of a user that names the same
    folder (``Entw&APw-rfe`` beside a file named ``Entwürfe``: UW-imapd's modified UTF-7
    name is decoded; ``inbox/x`` beside ``INBOX/x``), join the notes as problems and are
    not imported."""
    mailboxes, notes = listed
    out = []
    seen: dict[tuple[str, str, str], tuple[str, str]] = {}
    for mb in mailboxes:
        mb = replace(mb, names=names)
        try:
            mb.dirname  # noqa: B018 -- refused here rather than at apply
        except FolderNameError as exc:
            notes.append(MailboxNote(mb.domain, mb.user, "problem", mb.path,
                                     f"{escape(mb.path)}: {exc.message}; not imported",
                                     mb.folder))
            continue
        # one directory, one folder (inbox/x and INBOX/x are both .INBOX.x); the INBOX's
        # files (spool, ~/mbox, a folder file INBOX) are told apart by name
        other, folder = seen.setdefault((mb.domain, mb.user, mb.dirname or mb.name),
                                        (mb.path, mb.name))
        if other != mb.path:
            notes.append(MailboxNote(mb.domain, mb.user, "problem", mb.path,
                                     f"{escape(mb.path)} names the same folder "
                                     f"'{escape(folder)}' as {escape(other)}; not imported "
                                     "(rename one of them on the source)", mb.folder))
            continue
        out.append(mb)
    return out, notes


def _parse_find(data: bytes) -> tuple[list[tuple[int, float, str, int, int, int, int, str]],
                                      list[tuple[str, str]], dict[str, str]]:
    """The files (size, mtime, ctime as printed, inode, device, owner, links, path), the
    symbolic links (path, where it points) and the paths of other types (path: find's
    type letter) of ``find``'s records (``_FILE_FORMAT``, ``_LINK_FORMAT``,
    ``_OTHER_FORMAT``)."""
    files, links, others = [], [], {}
    fields = iter(data.split(b"\0"))
    for record in fields:
        if record[:1] == b"f":
            size, mtime, ctime, inode, device, owner, nlink, path = record[1:].split(b"\t", 7)
            files.append((int(size), float(mtime), ctime.decode("ascii", "replace"), int(inode),
                          int(device), int(owner), int(nlink),
                          path.decode("utf-8", "surrogateescape")))
        elif record[:1] == b"l":
            links.append((record[1:].decode("utf-8", "surrogateescape"),
                          next(fields, b"").decode("utf-8", "surrogateescape")))
        elif record[:1] == b"o":
            others[record[2:].decode("utf-8", "surrogateescape")] = chr(record[1])
    return files, links, others


def _parse_no_dir(data: bytes) -> tuple[set[str], dict[str, tuple[str, str]]]:
    """The directories :data:`_NO_DIR` found missing, and those the login may not reach
    (directory -> the one above it the login may not search, and the login)."""
    missing, shut = set(), {}
    fields = iter(data.decode("utf-8", "surrogateescape").split("\0"))
    for record in fields:
        if record[:1] == "m":
            missing.add(record[1:])
        elif record[:1] == "p":
            shut[record[1:]] = (next(fields, ""), next(fields, ""))
    return missing, shut


def list_source_mailboxes(conn: Connector, refs: Sequence[MailboxRef], names: str = "utf7"
                          ) -> tuple[list[SourceMailbox], list[MailboxNote]]:
    """Every spool and folder file of ``refs`` (one batch), their folders named in the
    target's encoding ``names`` (:func:`named`); plus notes on files not imported
    (problems), on files merged into the INBOX and on a missing spool (info)."""
    if not refs:
        return [], []
    found = _find(conn, refs)
    mailboxes: list[SourceMailbox] = []
    notes: list[MailboxNote] = []
    for ref in refs:
        # a spec-given folders directory the login may not reach: said by _folders
        notes += unseen_notes(ref, {start: said for start, said in found.unseen.items()
                                    if not (start in found.shut_dirs and ref.folders_given
                                            and start == (ref.folders.rstrip("/") or "/"))})
        for part in (_inbox(ref, found), _folders(ref, found)):
            mailboxes += part[0]
            notes += part[1]
        notes += link_notes(ref, found.linked, found.not_mail)
    return named((mailboxes, notes), names)


@dataclass
class _Found:
    """What one batch of ``find`` saw of the users' spools, ~/mbox files and folders."""

    #: regular files: path -> (size, mtime, inode, device, owner's uid, link count)
    files: dict[str, tuple[int, float, int, int, int, int]]
    linked: dict[str, str]  # symbolic links, never followed: path -> where it points
    #: spool, ~/mbox and folder paths that are neither file nor link (nor, below a
    #: folders directory, a directory): path -> find's type letter
    other: dict[str, str]
    missing_dirs: set[str]  # the spools' (and spec-given folders') directories not there
    unseen: dict[str, list[tuple[str, bool]]]  # spool or folder dir -> find's words
    now: float  # the source's clock, as the mtimes are
    as_root: bool = True  # read as root, whom no file's mode keeps out
    #: the files' ctimes as find printed them (path -> text); ``now`` is the source's
    #: clock (not the local one, where date has no %s): only then may a ctime be settled
    ctimes: dict[str, str] = field(default_factory=dict)
    source_clock: bool = True
    not_mail: set[str] = field(default_factory=set)  # programs' files, emacs's lock links
    #: of those directories, the ones the login may not reach: directory -> (the one above
    #: it the login may not search, the login's name)
    shut_dirs: dict[str, tuple[str, str]] = field(default_factory=dict)

    def mailbox(self, ref: MailboxRef, folder: str, path: str, **kw: bool) -> SourceMailbox:
        """The file at ``path`` (one of ``files``) as ``ref``'s mailbox ``folder``."""
        size, mtime, inode, device, _owner, _links = self.files[path]
        settled = self.now - mtime >= SETTLED_AFTER
        # a writer's dot-lock (a spool's and ~/mbox's listed after the file: a lock taken
        # since is a delivery that had not written yet when the size was listed); one
        # SETTLED_AFTER old is taken for stale (its writer died) and holds nothing back
        lock = self.files.get(path + ".lock")
        locked = not settled and lock is not None and lock[0] < DOT_LOCK_SIZE \
            and self.now - lock[1] < SETTLED_AFTER
        # the ctime, and whether nothing could write to the file since without changing it
        # (the source's clock, read before find looked, CTIME_SETTLED seconds past it)
        ctime = self.ctimes.get(path, "")
        aged = ctime_settled(ctime, self.now)
        return SourceMailbox(ref.domain, ref.user, folder, path, size, mtime, inode,
                             settled, device=device, locked=locked,
                             ctime="" if aged is None else ctime,
                             ctime_settled=bool(aged and self.source_clock), **kw)

    def add(self, out: tuple[list[SourceMailbox], list[MailboxNote]], ref: MailboxRef,
            folder: str, path: str, **kw: bool) -> bool:
        """Add the file at ``path`` to ``out`` as ``ref``'s mailbox ``folder`` (True), or,
        when it is neither the account's nor root's, a problem (False): read as root,
        another user's mail would go to this mailbox (a hard link to their spool, which
        any user may make where the kernel's ``fs.protected_hardlinks`` is off; their
        own mail reader could not have opened it). A file of root's is the user's only
        with a single link (put there by root): one with more is a hard link to a file of
        root's (root's own spool, say), which the user could make but not read."""
        owner, nlink = self.files[path][4:]
        if not self.as_root or ref.uid is None or owner == ref.uid or (
                owner == 0 and nlink == 1) or (path == ref.spool and ref.spool_given):
            out[0].append(self.mailbox(ref, folder, path, **kw))
            return True
        whose = (f"is a hard link ({nlink} links) to a file of root's, not of "
                 f"{escape(ref.account)}'s (uid {ref.uid}): nothing is imported from it "
                 "(root's mail, say, linked there where the kernel's fs.protected_hardlinks "
                 "is off" if owner == 0 else
                 f"belongs to uid {owner}, not to {escape(ref.account)} (uid {ref.uid}) nor "
                 "root: nothing is imported from it (another account's mail, or a hard link "
                 "to it")
        out[1].append(MailboxNote(ref.domain, ref.user, "problem", path, (
            f"{escape(path)} {whose}; if it is this user's, chown it to them on the old "
            "server)"), folder))
        return False


def _find(conn: Connector, refs: Sequence[MailboxRef]) -> _Found:
    """List every spool and folder file of ``refs`` in one batch of commands."""
    # ~/mbox, and ~/INBOX (c-client's INBOX in another format: said, not read)
    mboxes = {p for r in refs if r.home_mbox for p in (r.home_mbox, r.home_mbox[:-4] + "INBOX")}
    # and beside the spool and ~/mbox, their dot-locks (NAME.lock): sorted, each comes
    # after its file, whose size and mtime are then listed first (:meth:`_Found.mailbox`)
    mailboxes = {r.spool for r in refs} | {r.home_mbox for r in refs if r.home_mbox}
    spools = sorted({r.spool for r in refs} | mboxes | {p + ".lock" for p in mailboxes})
    # without a trailing slash: find would follow a folders directory that is a
    # symbolic link (a user's ~/mail -> /var/spool/mail: everyone's spools as folders)
    roots = sorted({r.folders.rstrip("/") or "/" for r in refs})
    # find's messages in the C locale: a missing file or folder directory is no error (an
    # empty INBOX, no folders); one it may not see or list is (read as a user who may
    # not read another's ~/mail, it would look empty: mail left behind without a word)
    # The symbolic links there, never followed, are listed by the same walk and named in
    # the plan: mail behind one (a folders directory moved to another disk and linked
    # back) is not imported.
    spool_chunks, root_chunks = list(chunks(spools)), list(chunks(roots))
    what = ["(", "-type", "f", "-printf", _FILE_FORMAT, ")", "-o",
            "(", "-type", "l", "-printf", _LINK_FORMAT, ")"]
    # a spool or ~/mbox of another type (a directory: a Maildir in the spool's place; a
    # named pipe) is said too, and so is a folder entry that is neither a file nor a
    # directory (a directory there is a parent of folders)
    cmds = [join(["LC_ALL=C", "find", *chunk, "-maxdepth", "0", *what, "-o", "-printf",
                  _OTHER_FORMAT]) + "; true" for chunk in spool_chunks]
    # (and a directory named cur, new or tmp: of a Maildir there, said once)
    cmds += [join(["LC_ALL=C", "find", *chunk, *what, "-o", "!", "-type", "d", "-printf",
                   _OTHER_FORMAT, "-o", "(", "-name", "cur", "-o", "-name", "new", "-o", "-name",
                   "tmp", ")", "-printf", _OTHER_FORMAT]) + "; true" for chunk in root_chunks]
    # the spools' directories (and spec-given folders') not there (test -d follows a link)
    dirs = sorted({posixpath.dirname(r.spool) or "/" for r in refs}
                  | {r.folders.rstrip("/") or "/" for r in refs if r.folders_given})
    results = run_batch(conn, ["date +%s", "id -u", _NO_DIR.format(dirs=join(dirs)), *cmds])
    clock = results[0].stdout.strip()
    clocked = results[0].returncode == 0 and clock.isdigit()
    missing, shut = _parse_no_dir(results[2].stdout)
    found = _Found(
        files={}, linked={}, other={}, unseen={}, missing_dirs=missing, shut_dirs=shut,
        # the source's clock, as the mtimes are (the local one where date has no %s)
        now=int(clock) if clocked else time.time(), source_clock=clocked,
        as_root=results[1].stdout.strip() in (b"0", b""))  # not known: as if root
    for res, chunk in zip(results[3:], [*spool_chunks, *root_chunks], strict=True):
        files, links, others = _parse_find(res.stdout)
        for size, mtime, ctime, inode, device, owner, nlink, path in files:
            found.files[path] = (size, mtime, inode, device, owner, nlink)
            found.ctimes[path] = ctime
        found.linked.update(links)
        found.other.update(others)
        for start, said, exact in find_messages(res.stderr, chunk):
            found.unseen.setdefault(start, []).append((said, exact))
    found.not_mail = not_mail(conn, named_droppings(refs, found.files)) | lock_links(
        found.linked, found.files, found.other)
    return found


def _inbox(ref: MailboxRef, found: _Found) -> tuple[list[SourceMailbox], list[MailboxNote]]:
    """``ref``'s INBOX: its spool, and its ~/mbox when it has one (merged into it); a
    note when the spool is not a file, is missing, or its very directory is."""
    mailboxes, notes = [], []
    mbox = ref.home_mbox
    spool, where = ref.spool, escape(posixpath.dirname(ref.spool) or "/")
    if spool in found.files:
        found.add((mailboxes, notes), ref, "INBOX", spool)
    elif spool in found.other:
        notes.append(not_a_file(ref, spool, found.other[spool], "INBOX: ", "the spool", "INBOX"))
    elif spool in found.linked or spool in found.unseen:
        pass  # a link, or a spool find could not see, has its own note
    elif (posixpath.dirname(spool) or "/") in found.missing_dirs:
        notes.append(MailboxNote(ref.domain, ref.user, "problem", spool,
                                 f"INBOX: {escape(spool)} " + NO_SPOOL_DIR_NOTE.format(
                                     dir=where, key=ref.spool_key), "INBOX", wrong_path=True))
    else:
        # said, as an empty spool is, so that every user's INBOX is accounted for
        notes.append(MailboxNote(ref.domain, ref.user, "info", spool,
                                 f"INBOX: {escape(spool)} {MISSING_SPOOL_NOTE}"
                                 + ("; the INBOX's mail is in ~/mbox" if mbox in found.files
                                    else " (a missing spool is an empty INBOX)"), "INBOX"))
    if mbox is not None and mbox in found.files and mbox != spool and found.add(
            (mailboxes, notes), ref, "INBOX", mbox, folder_file=True, home_mbox=True):
        notes.append(MailboxNote(ref.domain, ref.user, "info", mbox,
                                 f"{escape(mbox)} {HOME_MBOX_NOTE}", "INBOX"))
    elif mbox is not None and mbox in found.other and mbox != spool:
        notes.append(not_a_file(ref, mbox, found.other[mbox], "INBOX: ", "~/mbox, INBOX mail",
                                "INBOX"))
    inbox, prefix = (mbox[:-4] + "INBOX" if mbox else None), ref.folders.rstrip("/") + "/"
    if inbox and inbox != spool and not inbox.startswith(prefix) and (
            found.files.get(inbox, (0,))[0] or inbox in found.other):  # an empty file: none
        notes.append(MailboxNote(ref.domain, ref.user, "problem", inbox,
                                 f"{escape(inbox)} {HOME_INBOX_NOTE}", "INBOX"))
    return mailboxes, notes


def _folders(ref: MailboxRef, found: _Found
             ) -> tuple[list[SourceMailbox], list[MailboxNote]]:
    """``ref``'s folder files (hidden ones too, as UW-IMAP lists them; a mix folder, a
    Maildir and a home directory's hidden files are not: :mod:`.folder_kinds`); a
    folder file named INBOX is merged into the INBOX, with a note; a folders directory
    that is not a directory, and a folder entry that is neither a file nor a directory
    (a named pipe), are problems."""
    mailboxes, notes = [], []
    mbox = ref.home_mbox
    prefix = ref.folders.rstrip("/") + "/"
    if (root := prefix[:-1] or "/") in found.files and root not in (ref.spool, mbox):
        notes.append(MailboxNote(ref.domain, ref.user, "problem", root, f"{escape(root)} (the "
                                 "folders directory) is a file, not a directory: no mail in it is "
                                 "imported (move it into a directory of that name to import it)"))
    elif found.other.get(root, "d") != "d" and root not in (ref.spool, mbox):
        kind = FILE_TYPES.get(found.other[root], "not a regular file")
        notes.append(MailboxNote(ref.domain, ref.user, "problem", root, f"{escape(root)} (the "
                                 f"folders directory) is {kind}, not a directory: no mail in "
                                 "it is imported"))
    elif ref.folders_given and root in found.shut_dirs:
        parent, login = found.shut_dirs[root]
        notes.append(MailboxNote(ref.domain, ref.user, "problem", root, f"{escape(root)} (the "
                                 f"folders directory, {ref.spec_key('folders')} in the spec) "
                                 f"cannot be read by {escape(login)} (permission: "
                                 f"{escape(parent)} may not be searched by it, whether the "
                                 f"directory is there or not); {SHUT_DIR_NOTE}", unseen=True))
    elif ref.folders_given and root in found.missing_dirs:
        notes.append(MailboxNote(ref.domain, ref.user, "problem", root, f"{escape(root)} (the "
                                 f"folders directory, {ref.spec_key('folders')} in "
                                 f"the spec) {NO_FOLDERS_DIR_NOTE}", wrong_path=True))
    paths = [p for p in [*found.files, *found.other] if p.startswith(prefix)
             and posixpath.normpath(p) != mbox and not (p == ref.spool and p in found.other)]
    dirs = {p for p in paths if found.other.get(p) == "d"}
    skipped, said = passed_over(ref, set(paths) - dirs, dirs, found.not_mail)
    notes += said
    for path in sorted(set(paths) - dirs - skipped):
        rel = path[len(prefix):]
        if ref.decode_names:  # UW-imapd's modified UTF-7 names
            rel = source_folder(rel)
        if path in found.other:
            notes.append(not_a_file(ref, path, found.other[path], "", "a folder", rel))
        elif path.endswith(".lock") and path[:-5] in found.files \
                and found.files[path][0] < DOT_LOCK_SIZE:
            notes.append(MailboxNote(ref.domain, ref.user, "info", path,
                                     f"{escape(path)} {DOT_LOCK_NOTE}"))
        elif found.add((mailboxes, notes), ref, rel, path, folder_file=True) and is_inbox(rel):
            notes.append(MailboxNote(ref.domain, ref.user, "info", path,
                                     f"{escape(path)} {INBOX_FILE_NOTE}", "INBOX"))
    return mailboxes, notes
