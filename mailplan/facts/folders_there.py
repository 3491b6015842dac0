"""Which folders are there on the target: a ``find`` of their ``cur/`` and ``new/``
directories, nothing listed inside (read-only).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from mailplan.connectors.base import Connector
from mailplan.remote import run_batch
from mailplan.shell import chunks, join

#: what makes a folder directory one an IMAP server opens (tmp/ it makes itself)
_FOLDER_PARTS = ("cur", "new")


def missing_folders(conn: Connector, wanted: Mapping[str, Collection[str]]
                    ) -> set[tuple[str, str]]:
    """The ``(Maildir, folder dir)`` pairs of ``wanted`` (folder dirs per Maildir, never
    ``""``) whose folder is not there: no ``cur/`` and ``new/`` directories in it (one
    batch of ``find -maxdepth 0``: nothing inside a folder is listed; read-only). For the
    mailboxes with nothing to import, whose folder the plan still creates when missing
    (an empty folder on the source holds no message that would create it), and those
    with mail to import whose folder an earlier run made (the plan says it is made
    again)."""
    paths = {f"{m}/{d}/{part}": (m, d) for m, dirnames in wanted.items() for d in dirnames
             for part in _FOLDER_PARTS}
    seen: dict[tuple[str, str], int] = {}
    cmds = [join(["find", *chunk, "-maxdepth", "0", "-type", "d", "-printf", "%p\\0"])
            + " 2>/dev/null; true" for chunk in chunks(sorted(paths))]
    for res in run_batch(conn, cmds):
        for path in res.stdout.split(b"\0"):
            owner = paths.get(path.decode("utf-8", "surrogateescape"))
            if owner is not None:
                seen[owner] = seen.get(owner, 0) + 1
    return {owner for owner in set(paths.values())
            if seen.get(owner, 0) < len(_FOLDER_PARTS)}
