"""Folders an earlier mailplan version imported under a directory name they no longer get.

Two rules of :func:`~mailplan.mail.maildir.folder_dirname` changed: a folder under
``inbox`` (any case but ``INBOX``) is written under ``.INBOX`` (``inbox/x`` ->
``.INBOX.x``, was ``.inbox.x``), and with ``utf7`` names a ``~`` that begins a level is
written ``\\7e`` (``~name`` -> ``.\\7ename``, was ``.~name``). On a target an earlier
version filled, such a folder's mail is in the directory of the old name
(:func:`~mailplan.mail.maildir.earlier_dirnames`): imported into today's, all of it would
be imported a second time. So a folder whose directory under today's name is not on the
target, while one under an earlier name is, goes on being imported into that one
(:attr:`~mailplan.facts.source_mailbox.SourceMailbox.written`) when the state records the
folder (an earlier apply imported it, or made it) or, without that record (a state file
lost), when that directory holds a message file mailplan named or the Maildir's ledger
names it (a message the user deleted since is in the ledger still): mail an earlier
version imported there. An empty directory the ledger does not name holds no mail to
import twice, and may be anyone's: the folder is then imported under today's name.
The plan warns, naming both: dovecot cannot open it there (the reason for the new
names), and mailplan moves no mail. Once the administrator renamed the directory (and
its subscription lines), the folder is found under today's name and imported there: the
names of the message files say which messages it holds, and the ledger's lines under
the earlier name which ones the user deleted, so a message deleted before the rename
is not imported again. The ledger is not rewritten: a folder whose directory under an
earlier name is not there is given that name
(:attr:`~mailplan.facts.source_mailbox.SourceMailbox.ledger_also`), whose lines every
reader of the ledger (the plan's, the writer's) takes as its directory's own. A folder
found under both names is imported under today's; the plan warns that the other holds
mail an earlier version imported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from mailplan.connectors.base import Connector
from mailplan.desired import Problem
from mailplan.facts.folders_there import missing_folders
from mailplan.facts.maildirs import read_maildirs
from mailplan.facts.source_mailbox import SourceMailbox
from mailplan.mail.maildir import earlier_dirnames
from mailplan.text import marked


def earlier_folders(conn: Connector, mailboxes: Sequence[SourceMailbox],
                    where: Mapping[str, str], state_mail: Mapping[str, Any]
                    ) -> tuple[list[SourceMailbox], list[Problem]]:
    """``mailboxes``, those whose folder an earlier version imported under another name
    given that directory (see above), and the warnings to give. ``where``: by mailbox
    key, its user's Maildir on the target ("" while there is none); ``state_mail``: the
    state's mailbox records. Read on the target only for folders with an earlier name:
    one ``find`` batch, and before it, for those the state does not record, a read of
    those directories and of their Maildirs' ledgers."""
    earlier: dict[str, list[str]] = {}
    for mb in mailboxes:
        if mb.dirname and where.get(mb.key) \
                and (names := earlier_dirnames(mb.folder, mb.names)):
            earlier[mb.key] = names
    # a folder the state does not record: only the earlier names that hold its mail
    unrecorded = {mb.key: (where[mb.key], earlier[mb.key]) for mb in mailboxes
                  if mb.key in earlier and mb.key not in state_mail}
    for key, names in zip(unrecorded, _holding_mail(conn, unrecorded.values()),
                          strict=True):
        if names:
            earlier[key] = names
        else:
            del earlier[key]
    if not earlier:
        return list(mailboxes), []
    wanted: dict[str, set[str]] = {}
    for mb in mailboxes:
        if mb.key in earlier:
            wanted.setdefault(where[mb.key], set()).update([mb.dirname, *earlier[mb.key]])
    gone = missing_folders(conn, wanted)
    out, warnings = [], []
    for mb in mailboxes:
        root = where.get(mb.key, "")
        found = [d for d in earlier.get(mb.key, ()) if (root, d) not in gone]
        if found:
            now = mb.dirname
            if (root, now) in gone:  # the latest version's earlier name: it has them all
                mb = replace(mb, written=found[-1])
            warnings.append(Problem(mb.domain, mb.user, _warning(mb, root, now, found)))
        if mb.written is None and (renamed := tuple(
                d for d in earlier.get(mb.key, ()) if (root, d) in gone)):
            mb = replace(mb, ledger_also=renamed)  # the ledger's lines of a renamed one
        out.append(mb)
    return out, warnings


def _holding_mail(conn: Connector, folders: Iterable[tuple[str, list[str]]]
                  ) -> list[list[str]]:
    """Of each ``(Maildir, earlier names)``, the names whose directory holds a message
    file mailplan named or that the Maildir's ledger names: mail an earlier version
    imported there (one read of those directories and of the ledgers)."""
    folders = list(folders)
    if not folders:
        return []
    wanted: dict[str, set[str]] = {}
    for root, names in folders:
        wanted.setdefault(root, set()).update(names)
    held = read_maildirs(conn, wanted)
    return [[d for d in names if held[root].known(d)] for root, names in folders]


def _warning(mb: SourceMailbox, root: str, now: str, found: list[str]) -> str:
    old = " and ".join(marked(d) for d in found)
    if mb.written is not None:
        return (f"folder {marked(mb.folder)}: an earlier mailplan imported it into {old} "
                f"(today's name: {marked(now)}), and its mail goes on into "
                f"{marked(mb.written)}, so none is imported twice (dovecot cannot open "
                f"it under that name). To move it, rename {marked(mb.written)} to "
                f"{marked(now)} in {root} and its lines in subscriptions and "
                "courierimapsubscribed (mailplan moves no mail)")
    return (f"folder {marked(mb.folder)}: imported into {marked(now)} (today's name); "
            f"{old} in {root} holds the mail an earlier mailplan imported from it under "
            "the name it gave it then (the same messages, if both versions imported "
            "them): merge or remove that directory by hand (mailplan moves no mail)")
