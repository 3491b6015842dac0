"""The queue lock: one queue command at a time changes a qmail queue directory.

``queue delete --execute`` and ``queue check --repair`` stop qmail-send, change the
queue and start qmail-send again. Two of them at once against one queue (two admins, a
cron job) would not be kept apart: the second could start qmail-send again while the
first still removes or renames files. So each holds this lock, taken by
:func:`queue_locked`, for its whole stop→change→start window: from after its first
(choosing) read, before it stops qmail-send and reads again what it changes, until
qmail-send is started again or left stopped. A second one is refused at once
(:class:`~mailplan.errors.QueueLocked`), naming the holder, before it stops or changes
anything. Commands that only read (stat, list, show, check, a dry-run delete) and flush
(which only signals qmail-send) take no
lock and are never refused; nor do queue commands take the apply lock, or applies this
one (docs/queue.md says why).

* **Where.** ``.mailplan-queue.lock`` directly in the queue directory (its links resolved
  on the host, as ``--queue-dir`` may be one): qmail opens only its own paths there
  and lists no more than its areas, and ``queue check`` looks at nothing else at the top
  of the queue, so the file disturbs neither. The directory is qmailq's, mode 0750: only
  root and qmailq can make or plant the file, and root gives it to the directory's
  owner. Two queues on one machine (test sandboxes) have two locks.
* **How it is held.** By the apply lock's program (:mod:`mailplan.target_lock`), whose
  standard input is the command's connection: it ends, and the kernel releases the
  ``flock``, when the command lets it go, ends, is killed or loses its connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from mailplan.connectors.base import Connector
from mailplan.errors import QueueLocked
from mailplan.target_lock import LockHolder, LockKind, describe, take
from mailplan.text import escape

#: the lock file's name in the queue directory
LOCK_NAME = ".mailplan-queue.lock"

QUEUE_LOCK = LockKind(
    LOCK_NAME, "queue lock", "queue directory", "mailplan's queue lock", "host",
    place_hint="pass --queue-dir with the queue's real path",
    access_hint="mailplan's user on the host must be able to write in the queue directory, "
    "as qmail's own programs must: log in as root, or pass --sudo")


@dataclass(frozen=True, kw_only=True)
class QueueHolder(LockHolder):
    """Who holds a queue lock: one queue command that changes the queue."""

    KIND: ClassVar[str] = "queue"
    #: the command in mailplan's words (``mailplan queue delete --execute``); its other
    #: arguments are left out (a custom control command may carry anything)
    command: str
    #: the queue directory as the command was given it
    queue: str

    @classmethod
    def words(cls, doc: dict[str, Any]) -> list[str]:
        return [f"command {doc.get('command')}", f"queue {doc.get('queue')}"]


@contextmanager
def queue_locked(conn: Connector, queue_dir: str, holder: QueueHolder) -> Iterator[str]:
    """Hold ``queue_dir``'s queue lock on ``conn``'s host for ``holder`` while the block
    runs; yields the lock file's path there. Refused (:class:`QueueLocked`) at once when
    another command holds it. The holder program is ended when the block ends, however
    it ends, and waited for, so the lock is free once the block is left."""
    proc, doc = take(conn, QUEUE_LOCK, queue_dir, holder)
    if "locked" not in doc:
        said = describe(str(doc.get("holder", "")), QueueHolder, "host")
        raise QueueLocked(
            f"another mailplan queue command is changing this queue ({said}); nothing was "
            "changed", host=conn.name, step="take the queue lock",
            hint=f"wait for it to end, then run this command again. Its lock "
            f"({escape(str(doc['busy']))}) is held by a process on the host that ends with "
            "that command's connection, so it is never left behind; see "
            "docs/troubleshooting.md")
    conn.hold(proc)  # a connection aborted meanwhile kills it
    try:
        yield str(doc["locked"])
    finally:
        conn.let_go(proc)
