"""What ``mailplan verify`` reads of the mail on both hosts, read-only: the source's
mailboxes through one ``tar`` channel and the mbox reader (:func:`read_source_mail`),
and the target's Maildirs (:func:`read_target_mail`): mailplan's message files by
identity, the ledgers, the folders' keywords as dovecot and courier-imap read them, and
the subscription files. :mod:`mailplan.verify` groups the users and compares.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Sequence
from datetime import tzinfo
from typing import NamedTuple

from mailplan.connectors.base import Connector
from mailplan.errors import HostError
from mailplan.facts.find_errors import whole_listing
from mailplan.facts.maildirs import LEDGER, Recorded, parse_ledger
from mailplan.facts.noatime import tar_read
from mailplan.facts.source_mailbox import SourceMailbox
from mailplan.mail import courierkw
from mailplan.mail.bookkeeping import carried_keywords, keyword_letters
from mailplan.mail.maildir import KEYWORDS_FILE, SUBSCRIPTION_FILES, parse_message_name
from mailplan.mail.mbox import MailboxError, MboxReader, MessageEnd, MessageStart
from mailplan.mail.windows import Windows
from mailplan.remote_files import read_files, tar_members, tar_not_read
from mailplan.shell import join
from mailplan.verify_model import Identity, SourceMessage, TargetMessage

STEP = "verify"


def read_source_mail(conn: Connector, mailboxes: Sequence[SourceMailbox], *, mboxrd: bool,
                     windows: dict[str, Windows] | None = None, zone: tzinfo | None = None,
                     ends: dict[str, tuple[int, ...]] | None = None
                     ) -> tuple[dict[str, dict[Identity, SourceMessage]], dict[str, str]]:
    """Every mailbox's messages, read through one ``tar`` channel (the source is only read).

    Returns messages per mailbox path (each with its number in the file and the offset
    of its From_ line, as the reader found them) and, per path, why it could not be
    verified; ``windows`` (when given) receives per path what was read (size, first and
    last 4 KiB);
    ``ends``: per path, where earlier reads ended (the imports' checkpoints: messages end
    there as they did for the import, :func:`mailplan.mailboxes.with_checkpoints`).
    """
    by_path = {mb.path: mb for mb in mailboxes}
    messages: dict[str, dict[Identity, SourceMessage]] = {}
    errors: dict[str, str] = {}
    if not by_path:
        return messages, errors
    proc = conn.start(f"{tar_read(conn)} --no-recursion --ignore-failed-read --null -T -")
    # tar archives a file that is no longer a regular file (a named pipe swapped in since
    # the listing) without opening it: it is said, not compared as an empty mailbox
    others: dict[str, str] = {}
    try:
        for name, handle in tar_members(proc, by_path, others):
            mb = by_path.get(name)
            if mb is None:
                continue
            found: dict[Identity, SourceMessage] = {}
            seen = Windows(handle)
            if windows is not None:
                windows[mb.path] = seen
            reader = MboxReader(seen, mboxrd=mboxrd, mtime=mb.mtime, zone=zone,
                                path=f"{conn.name}:{mb.path}",
                                ends=(ends or {}).get(mb.path, ()))
            keywords: frozenset[str] = frozenset()
            try:
                for event in reader:
                    if isinstance(event, MessageStart):
                        keywords = carried_keywords(event.keywords)
                    elif isinstance(event, MessageEnd):
                        flags = event.flags if event.subdir == "cur" else ""
                        # where it is: from the reader, which counts and places
                        # each message as it goes (nothing is read twice)
                        found[event.identity] = SourceMessage(
                            event.size, flags, event.arrival, keywords,
                            event.index + 1, event.start, mb.path)
            except MailboxError as exc:
                errors[mb.path] = exc.message
            messages[mb.path] = found
        res = proc.wait()
    except (OSError, tarfile.TarError) as exc:
        proc.kill()
        raise HostError(f"reading {len(by_path)} mailbox(es) with tar failed: {exc}",
                        host=conn.name, step=f"{STEP}: read source mailboxes") from None
    if res.returncode not in (0, 1):
        raise HostError(f"tar exited {res.returncode}: {res.stderr_text[:300]}",
                        host=conn.name, step=f"{STEP}: read source mailboxes",
                        hint="is GNU tar installed on the source?")
    _said_by_tar(by_path, others, res.stderr_text, errors)
    errors.update({path: tar_not_read(path, res.stderr_text) for path in by_path
                   if path not in messages and path not in errors})
    return messages, errors


def _said_by_tar(paths: Iterable[str], others: dict[str, str], stderr: str,
                 errors: dict[str, str]) -> None:
    """Add to ``errors`` why mailboxes of ``paths`` were not read as they were listed:
    one tar found no regular file (``others``: what it is), one tar said changed or
    shrank while it read it (``stderr``)."""
    for path, kind in others.items():
        if path in paths:
            errors[path] = f"it is {kind}, not a regular file (replaced since the listing)"
    for line in stderr.splitlines():
        # GNU tar: "PATH: file changed as we read it" / "PATH: File shrank by N bytes"
        for path in paths:
            if f"{path}: " in line and ("changed as we read" in line or "shrank" in line):
                errors[path] = f"changed while verify read it ({line.split(': ', 1)[-1]})"


_FIND = "%y\\t%T@\\t%s\\t%i\\t%p\\0"
#: the file each server keeps in a folder it opened (its UID list)
SERVED_BY = {"dovecot-uidlist": "dovecot", "courierimapuiddb": "courier"}


def keyword_views(served: set[str]) -> tuple[bool, bool]:
    """Whether a folder's keywords are checked as dovecot reads them (the letters in the
    file names) and as courier-imap does (its own files), given the servers that opened
    it (``served``). The import writes both; each server keeps up only its own: courier
    renames a message whose flags a client changes without dovecot's letters, dovecot
    never writes courier's files. So a folder only one of them opened is checked as that
    one reads it, and a folder none or both opened, both ways."""
    return ("dovecot" in served or "courier" not in served,
            "courier" in served or "dovecot" not in served)


class TargetMail(NamedTuple):
    """What verify reads of a group's Maildirs, per Maildir then folder directory."""

    files: dict[str, dict[str, dict[Identity, list[TargetMessage]]]]
    ledgers: dict[str, dict[str, Recorded]]
    #: each folder's dovecot-keywords, letter -> keyword (folders that have one)
    keywords: dict[str, dict[str, dict[str, str]]]
    #: the folder directories (``""``: the INBOX) that have ``cur/`` and ``new/``
    folders: dict[str, set[str]]
    #: the contents of the Maildir's subscription files (:data:`SUBSCRIPTION_FILES`) that
    #: are there
    subscriptions: dict[str, dict[str, bytes | None]]


def _find_command(maildirs: Sequence[str]) -> str:
    """The listing of the Maildirs: mailplan's message files, each folder's
    dovecot-keywords and UID lists, and courier's keyword directories with what is in
    them (its update files are named after the messages, ``*_mp*``, and its ``:list``),
    the folders' ``cur/`` and ``new/`` (a folder with neither is not there), and the
    subscription files."""
    names = [a for n in ("*_mp*", KEYWORDS_FILE, courierkw.LIST, *SERVED_BY,
                         *SUBSCRIPTION_FILES)
             for a in ("-o", "-name", n)][1:]
    # a subscription file's name on something apply cannot write (a directory, a pipe)
    # is listed too: verify says why the folder is not subscribed
    unusable = [a for n in SUBSCRIPTION_FILES for a in ("-o", "-name", n)][1:]
    return join(["LC_ALL=C", "find", *sorted(maildirs), "-mindepth", "1", "-maxdepth", "3",
                 "(", "-type", "f", "(", *names, ")",
                 "-o", "-type", "d", "(", "-name", courierkw.DIRECTORY, "-o", "-name", "cur",
                 "-o", "-name", "new", ")",
                 "-o", "!", "-type", "f", "!", "-type", "l", "(", *unusable, ")", ")",
                 "-printf", _FIND]
                ) + "; true"


def read_target_mail(conn: Connector, maildirs: Sequence[str]) -> TargetMail:
    """mailplan-written files per Maildir and folder, each Maildir's ledger, the
    folders' keywords as dovecot and courier-imap read them and the subscription files
    (2 channels; a third where a folder has a dovecot-keywords or a Maildir a
    subscription file, which are read together, and one where a folder has courier
    keyword files): one listing of the Maildirs (:class:`_Listing` notes what each of
    its records is), then the files it names (:func:`_target_mail`)."""
    if not maildirs:
        return TargetMail({}, {}, {}, {}, {})
    # a directory verify may not read hides its messages: not "deleted by the user"
    out = whole_listing(conn, _find_command(maildirs), maildirs, f"{STEP}: list the Maildirs")
    listing = _Listing(maildirs)
    for record in out.split(b"\0"):
        if record:
            listing.add(record)
    return _target_mail(conn, maildirs, listing)


#: a message file as the listing shows it: (Maildir, folder directory, identity, the
#: fields of its TargetMessage before the keywords, its keyword letters); the message is
#: made once the keywords are known
_Found = tuple[str, str, Identity, tuple[int, int, str, float, str], str]


class _Listing:
    """What the listing of the Maildirs (:func:`_find_command`) shows, record by record:
    a subscription file (or its name on something apply cannot write), a folder's
    ``cur/`` or ``new/``, courier's keyword directories and files (:class:`_CourierFiles`),
    a folder's dovecot-keywords and UID lists, and mailplan's message files. Entries of
    none of the Maildirs, and files not the INBOX's or a folder's, are left out."""

    def __init__(self, maildirs: Iterable[str]) -> None:
        self.maildirs = set(maildirs)
        self.found: list[_Found] = []
        self.keyword_files: dict[tuple[str, str], str] = {}  # (Maildir, folder) -> path
        self.subscription_files: dict[tuple[str, str], str] = {}  # (Maildir, name) -> path
        #: (Maildir, file name) -> what is there instead of a file
        self.unusable: dict[tuple[str, str], bytes] = {}
        #: (Maildir, folder) -> the servers that opened it
        self.served: dict[tuple[str, str], set[str]] = {}
        self.parts_seen: dict[tuple[str, str], set[str]] = {}  # (Maildir, folder) -> cur, new
        self.courier = _CourierFiles()

    def add(self, record: bytes) -> None:
        """Note one record of the listing (its fields as ``_FIND`` prints them)."""
        kind, mtime, size, inode, raw = record.split(b"\t", 4)
        path = raw.decode("utf-8", "surrogateescape")
        parts = path.split("/")
        root = next((r for r in ("/".join(parts[:-cut]) for cut in (1, 2, 3))
                     if r in self.maildirs), None)
        if root is None:
            return
        rel = parts[len(root.split("/")):]
        if len(rel) == 1 and rel[0] in SUBSCRIPTION_FILES and kind != b"f":
            # no file apply can write: what it is, as the plan reads it (``!NAME``)
            self.unusable[(root, rel[0])] = b"directory" if kind == b"d" else b"special"
        elif kind == b"d":
            self._directory(root, rel)
        elif not self.courier.entry(root, rel, int(inode)):
            self._file(root, rel, path, size, mtime)

    def _directory(self, root: str, rel: list[str]) -> None:
        """A ``cur``, ``new`` or ``courierimapkeywords`` directory."""
        where = _in_folder(root, rel)
        if rel[-1] in ("cur", "new") and where is not None:
            self.parts_seen.setdefault(where, set()).add(rel[-1])
        self.courier.folder(root, rel)

    def _file(self, root: str, rel: list[str], path: str, size: bytes, mtime: bytes
              ) -> None:
        """Anything else but a directory (``size`` and ``mtime`` as listed)."""
        if len(rel) == 1 and rel[0] in SUBSCRIPTION_FILES:
            self.subscription_files[(root, rel[0])] = path
        elif rel[-1] in SERVED_BY or rel[-1] == KEYWORDS_FILE:
            self._folder_file(root, rel, path)
        elif len(rel) >= 2:
            self._message(root, rel, path, size, mtime)

    def _folder_file(self, root: str, rel: list[str], path: str) -> None:
        """A dovecot-keywords or a server's UID list."""
        where = _in_folder(root, rel)
        if where is None:  # not the INBOX's or a folder's
            return
        if rel[-1] == KEYWORDS_FILE:
            self.keyword_files[where] = path
        else:
            self.served.setdefault(where, set()).add(SERVED_BY[rel[-1]])

    def _message(self, root: str, rel: list[str], path: str, size: bytes, mtime: bytes
                 ) -> None:
        """A file below the INBOX or a folder: a message when mailplan named it and it
        is in ``cur/`` or ``new/``."""
        dirname, sub, name = ("", rel[0], rel[1]) if len(rel) == 2 else tuple(rel)
        parsed = parse_message_name(name)
        if parsed is None or sub not in ("new", "cur"):
            return
        # system flags are capitals; the letters a-z are keywords, named by the
        # folder's dovecot-keywords (read by _target_mail)
        info = parsed.flags or ""
        flags = "".join(c for c in info if not c.islower())
        self.found.append((root, dirname, parsed.identity,
                           (parsed.size, int(size), flags, float(mtime), path),
                           "".join(c for c in info if c.islower())))


def _target_mail(conn: Connector, maildirs: Sequence[str], listing: _Listing
                 ) -> TargetMail:
    """Read the files ``listing`` names (the folders' dovecot-keywords and the
    subscription files together, the courier keyword files of the folders whose courier
    view is checked, then the ledgers) and make the TargetMail."""
    texts: dict[str, bytes | None] = {}
    if listing.keyword_files or listing.subscription_files:  # files a user may replace:
        # not read through a symbolic link
        texts = read_files(conn, sorted({*listing.keyword_files.values(),
                                         *listing.subscription_files.values()}),
                           follow=False)
    names = {where: keyword_letters((texts.get(path) or b"").decode("utf-8",
                                                                    "surrogateescape"))
             for where, path in listing.keyword_files.items()}
    listing.courier.read(conn, [w for w in listing.courier.entries
                                if keyword_views(listing.served.get(w, set()))[1]])
    files = _messages(maildirs, listing, names)
    keywords: dict[str, dict[str, dict[str, str]]] = {}
    for (root, dirname), named in names.items():
        keywords.setdefault(root, {})[dirname] = named
    ledgers = {}
    for path, data in read_files(conn, [f"{m}/{LEDGER}" for m in maildirs]).items():
        ledgers[path[: -len(LEDGER) - 1]] = parse_ledger(data or b"", made=True)
    folders: dict[str, set[str]] = {m: set() for m in maildirs}
    for (root, dirname), parts in listing.parts_seen.items():
        if len(parts) == 2:
            folders[root].add(dirname)
    return TargetMail(files, ledgers, keywords, folders, _subscriptions(maildirs, listing,
                                                                        texts))


def _messages(maildirs: Sequence[str], listing: _Listing,
              names: dict[tuple[str, str], dict[str, str]]
              ) -> dict[str, dict[str, dict[Identity, list[TargetMessage]]]]:
    """The message files ``listing`` found, per Maildir, folder and identity, with their
    keywords as dovecot reads them (``names``: per folder, its dovecot-keywords) and as
    courier-imap does, each where that view is checked (:func:`keyword_views`)."""
    files: dict[str, dict[str, dict[Identity, list[TargetMessage]]]] = {m: {} for m in maildirs}
    none: frozenset[str] = frozenset()
    for root, dirname, ident, fields, letters in listing.found:
        dovecot, courier_view = keyword_views(listing.served.get((root, dirname), set()))
        named = names.get((root, dirname), {})
        msg = TargetMessage(*fields, keywords=frozenset(named[c] for c in letters if c in named)
                            if letters else none, dovecot=dovecot,
                            courier=listing.courier.keywords(root, dirname, fields[4])
                            if courier_view else None)
        files[root].setdefault(dirname, {}).setdefault(ident, []).append(msg)
    return files


def _subscriptions(maildirs: Sequence[str], listing: _Listing,
                   texts: dict[str, bytes | None]) -> dict[str, dict[str, bytes | None]]:
    """Per Maildir, the contents of its subscription files (``texts``: as read; None:
    not read) and, as ``!NAME``, what is there instead of a file apply can write."""
    subscriptions: dict[str, dict[str, bytes | None]] = {m: {} for m in maildirs}
    for (root, fname), path in listing.subscription_files.items():
        subscriptions[root][fname] = texts.get(path)
    for (root, fname), kind in listing.unusable.items():
        subscriptions[root]["!" + fname] = kind
    return subscriptions


def _in_folder(root: str, rel: list[str]) -> tuple[str, str] | None:
    """``(Maildir, folder directory)`` of the entry ``rel`` (its path below ``root``)
    when it sits directly in the INBOX or in a folder (``.Name``), else None."""
    return (root, rel[0]) if len(rel) == 2 else (root, "") if len(rel) == 1 else None


class _CourierFiles:
    """The folders' ``courierimapkeywords/`` as the listing shows them, then the files
    courier would read there (:mod:`mailplan.mail.courierkw`): each folder's ``:list``
    and the newest update of each message, read and parsed once per inode (mailplan's
    import links one file for every message of a batch with the same keywords). A
    folder without the directory has no courier view (courier makes it when it first
    opens the folder: where it is missing, courier-imap is not what serves the folder,
    or it never did). Per update file it keeps a name and an inode number, not a path."""

    def __init__(self) -> None:
        #: per folder, the entries listed: name -> inode, until ``read``
        self.entries: dict[tuple[str, str], dict[str, int]] = {}
        #: per folder, message name -> inode of its newest update (after ``read``)
        self.updates: dict[tuple[str, str], dict[str, int]] = {}
        self.words: dict[int, frozenset[str]] = {}  # an update's keywords, by inode
        self.listed: dict[tuple[str, str], dict[str, frozenset[str]]] = {}

    def folder(self, root: str, rel: list[str]) -> None:
        """A ``courierimapkeywords`` directory (the INBOX's or a folder's)."""
        where = _in_folder(root, rel)
        if rel[-1] == courierkw.DIRECTORY and where is not None:
            self.entries.setdefault(where, {})

    def entry(self, root: str, rel: list[str], inode: int) -> bool:
        """Note a file inside a ``courierimapkeywords`` directory (True: it is one)."""
        where = _in_folder(root, rel[:-1])
        if len(rel) < 2 or rel[-2] != courierkw.DIRECTORY or where is None:
            return False
        self.entries.setdefault(where, {})[rel[-1]] = inode
        return True

    def read(self, conn: Connector, folders: Iterable[tuple[str, str]]) -> None:
        """Read the ``:list`` and newest updates of ``folders`` (those whose courier view
        is checked; one channel for all); the others have none from now on."""
        paths: dict[int, str] = {}  # one path per inode wanted
        lists: dict[tuple[str, str], int] = {}
        for where in folders:
            root, dirname = where
            entries = self.entries[where]
            base = "/".join(p for p in (root, dirname, courierkw.DIRECTORY) if p)
            newest = courierkw.newest_updates(entries)
            self.updates[where] = {name: entries[e] for name, e in newest.items()}
            for e in newest.values():
                paths.setdefault(entries[e], f"{base}/{e}")
            if courierkw.LIST in entries:
                lists[where] = entries[courierkw.LIST]
                paths.setdefault(lists[where], f"{base}/{courierkw.LIST}")
        self.entries = {}
        if not paths:
            return
        texts = read_files(conn, sorted(paths.values()), follow=False)
        listed = set(lists.values())
        self.words = {inode: courierkw.parse_update(texts.get(path) or b"")
                      for inode, path in paths.items() if inode not in listed}
        self.listed = {where: courierkw.parse_list(texts.get(paths[inode]) or b"")
                       for where, inode in lists.items()}

    def keywords(self, root: str, dirname: str, path: str) -> frozenset[str] | None:
        """The keywords courier-imap shows for the message at ``path`` (None: the folder
        has no ``courierimapkeywords``)."""
        updates = self.updates.get((root, dirname))
        if updates is None:
            return None
        return courierkw.keywords_of(path.rsplit("/", 1)[-1], updates, self.words,
                                     self.listed.get((root, dirname), {}))
