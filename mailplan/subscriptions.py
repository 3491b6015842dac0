"""Subscriptions: which folders apply subscribes, and the plan's changes that add a
line missing on the target.

Apply subscribes a folder (courier-imap's ``courierimapsubscribed`` and dovecot's
``subscriptions`` in the Maildir, :func:`~mailplan.mail.maildir.subscription_lines`) as
the source did: every folder its user's ``~/.mailboxlist`` lists, or every folder when
there is none (:func:`subscribes`, :func:`source_subscriptions`). A mailbox import or a
folder's creation writes the line with it; a folder with nothing to import whose line
is missing from either file (the list gained it after the import, a file was deleted or
lost the line) gets a ``subscription`` change of its own (:func:`subscription_changes`),
so that what ``mailplan verify`` fails on, apply fixes. The files are read with the
ledger counts every plan takes (:func:`~mailplan.facts.maildirs.read_ledger_counts`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Collection, Iterable, Mapping

from mailplan.connectors.base import Connector
from mailplan.facts.folders_there import missing_folders
from mailplan.facts.links import resolve
from mailplan.facts.root import OutsideRoot
from mailplan.facts.source import SourceFacts
from mailplan.facts.source_mailbox import MailboxRef, SourceMailbox
from mailplan.mail.maildir import (
    SUBSCRIPTION_FILES,
    source_folder,
    subscribed_names,
)
from mailplan.plan import Change
from mailplan.remote_files import read_files


def subscribed_text(subs: set[str] | None, subscribe: bool) -> str:
    """How a folder the plan creates is subscribed, for its change line."""
    if not subscribe:
        return ""
    if subs is None:
        return ", subscribed (the source has no ~/.mailboxlist: every folder is)"
    return ", subscribed as on the source"


def subscribes(mb: SourceMailbox, subs: set[str] | None) -> bool:
    """Whether apply subscribes the folder ``mb`` becomes: the INBOX, and every folder
    when its user has no ``~/.mailboxlist`` (``subs`` None), else those it lists (also
    used by verify)."""
    return mb.folder == "INBOX" or subs is None or mb.folder in subs


def source_subscriptions(conn: Connector, refs: list[MailboxRef], source: SourceFacts,
                         unread: dict[tuple[str, str], str] | None = None
                         ) -> dict[tuple[str, str], set[str] | None]:
    """Folders each user subscribed to (``~/.mailboxlist``), None when there is no list.
    Its entries name folder files as c-client does: relative to the home directory
    (``mail/Work``, ``Mail/Lists/python`` with ``source.folders: Mail``), with ``~/``, or
    absolute (the old server's path: under ``source.root`` when the spec has one); the
    folder is the part below the folders directory, and an entry outside it (the INBOX,
    another directory) subscribes nothing mailplan imports.

    A ``~/.mailboxlist`` that is no regular file is not read (a symbolic link is not
    followed: the user could point it at any file, read here as root) and counts as no
    list; ``unread`` gets, for each such user, the sentence that says so."""
    paths, prefixes = {}, {}
    refs_by = {(ref.domain, ref.user): ref for ref in refs}
    for ref in refs:
        account = source.accounts.get(ref.account)
        if account is not None:
            home = source.home(account)  # under source.root, as ref.folders is
            paths[(ref.domain, ref.user)] = f"{home}/.mailboxlist"
            # "." and "./mail" (source.folders) name the home directory and mail/
            folders = posixpath.normpath(ref.folders)
            below = [folders + "/"]
            if folders == home:  # folders in the home directory itself
                below += ["~/", ""]
            elif folders.startswith(home + "/"):
                rel = folders[len(home) + 1:] + "/"
                below += [rel, "~/" + rel]
            prefixes[(ref.domain, ref.user)] = below
    others: dict[str, str] = {}
    data = read_files(conn, sorted(set(paths.values())), follow=False,
                      others=others) if paths else {}
    # a line is a name as c-client wrote it (sm_subscribe), up to its line end only: a
    # space at either end is part of the name ('Sent ' is another folder than Sent)
    lists = {key: [line.removesuffix("\r") for line in raw.decode("utf-8", "replace")
                   .split("\n")]
             for key, path in paths.items() if (raw := data.get(path)) is not None}
    # an absolute entry is the old server's path: the copy's, its links followed as
    # the folders directory's were (mailplan.facts.links)
    real = resolve(conn, source.root, [source.root + line for lines in lists.values()
                                       for line in lines if line.startswith("/")],
                   last=False) if source.root else {}
    out: dict[tuple[str, str], set[str] | None] = {}
    for key, path in paths.items():
        if key not in lists:
            out[key] = None
            if path in others and unread is not None:
                unread[key] = (f"{path} on the source is {others[path]}, not a file: "
                               "not read (a link is not followed), so every folder is "
                               "subscribed, as for a user without one")
            continue
        names = set()
        for line in lists[key]:
            if source.root and line.startswith("/"):
                got = real[source.root + line]
                if isinstance(got, OutsideRoot):
                    continue  # links that loop: no folder mailplan imports
                line = got
            for prefix in prefixes[key]:
                if line.startswith(prefix) and line[len(prefix):]:
                    # as UW-imapd's file names: modified UTF-7 where a client made it
                    name = line[len(prefix):].rstrip("/")
                    names.add(source_folder(name) if refs_by[key].decode_names else name)
                    break
        out[key] = names
    return out


def unusable_files(files: Mapping[str, bytes | None]) -> list[str]:
    """What keeps apply from writing a Maildir's subscription files (``files``: those
    :func:`~mailplan.facts.maildirs.read_ledger_counts` read there): each one that is a
    directory or another special file, said as ``NAME is a directory``. Apply refuses to
    write there (the writer's ``subscribe``), so a plan subscribes nothing in that
    Maildir and says why (:func:`unusable_problem`)."""
    kinds = {b"directory": "a directory", b"special": "not a regular file"}
    return [f"{name} is {kinds.get(files.get('!' + name) or b'', 'not a regular file')}"
            for name in SUBSCRIPTION_FILES if ("!" + name) in files]


def unusable_problem(maildir: str, unusable: list[str]) -> str:
    """The plan's problem for a Maildir whose subscription files apply cannot write."""
    return (f"folders are not subscribed: in {maildir} on the target "
            f"{' and '.join(unusable)}, where no IMAP server keeps subscriptions (move it "
            "away, then plan again); the mail is imported all the same")


def subscription_changes(target_conn: Connector, mailboxes: Iterable[SourceMailbox],
                         where: Mapping[str, str],
                         subscribed: Mapping[tuple[str, str], set[str] | None],
                         files: Mapping[str, Mapping[str, bytes | None]],
                         covered: Collection[tuple[str, str, str]]
                         ) -> list[tuple[Change, SourceMailbox]]:
    """A ``subscription`` change for each folder apply subscribes whose line is missing
    from a subscription file of its user's Maildir (``where``: each mailbox's Maildir,
    ``""`` while there is none; ``files``: the files there, by Maildir), unless a
    change of the plan writes it already (``covered``: domain, user and folder dir of
    the imports and creations that subscribe). A folder not on the target is left out:
    the plan creates it when it never was there, and one the user deleted stays deleted
    (one batch of ``find``, only when a line is missing)."""
    gaps: dict[tuple[str, str, str], tuple[SourceMailbox, list[str]]] = {}
    held: dict[str, dict[str, set[str]]] = {}  # each Maildir's files, parsed once
    for mb in mailboxes:
        folder = (mb.domain, mb.user, mb.dirname)
        subs = subscribed.get((mb.domain, mb.user))
        if not mb.dirname or not where.get(mb.key) or folder in covered or folder in gaps \
                or not subscribes(mb, subs):
            continue
        root = where[mb.key]
        if root not in held:
            held[root] = {name: subscribed_names(files.get(root, {}).get(name))
                          for name in SUBSCRIPTION_FILES}
        lacking = [name for name, lines in mb.subscription.items()
                   if set(lines) - held[root][name]]
        if lacking:
            gaps[folder] = (mb, lacking)
    if not gaps:
        return []
    wanted: dict[str, set[str]] = {}
    for mb, _lacking in gaps.values():
        wanted.setdefault(where[mb.key], set()).add(mb.dirname)
    gone = missing_folders(target_conn, wanted)
    out = []
    for mb, lacking in gaps.values():
        if (where[mb.key], mb.dirname) in gone:
            continue
        why = " (listed in the source's ~/.mailboxlist)" \
            if subscribed.get((mb.domain, mb.user)) is not None \
            else " (the source has no ~/.mailboxlist: every folder is subscribed)"
        out.append((Change("create", "subscription", mb.domain, mb.user, item=mb.name,
                           after=f"add the folder's line to {' and '.join(lacking)}{why}"),
                    mb))
    return out
