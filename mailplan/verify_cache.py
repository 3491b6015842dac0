"""What the last ``verify`` proved, so the next one does not re-read unchanged mailboxes.

``verify`` must be cheap to re-run (an admin runs it again and again before switching
MX). Reading every source mailbox in full each time is what makes it expensive, so for
every folder that matched exactly, verify records in ``STATE.verified`` (next to the
state file, mode 0600; verify changes nothing on either host):

* the source mailbox as it was read: path, inode, size, mtime and sha256 digests of the
  first and the last 4 KiB *of the bytes verify read* (so a file changed after the read
  is not mistaken for the one verified; the mtime catches a rewrite in place that keeps
  the size and both windows, as UW-IMAP's flag updates in the middle of a spool do);
* ``count`` and a digest of the folder's messages as the comparison saw them: identity
  (sha256 of the stored bytes + occurrence), size, Maildir flags, IMAP keywords and
  arrival second. Not where the messages are in the source file (verify shows that with
  a finding about a message, and a folder is recorded only when it had none): a record
  written before verify showed positions is as good as one written since.

Records are keyed by folder, source file, mbox flavour and the source's time zone (dates
without a zone are read in it). The next verify checks those windows with one batched
command (like the plan's checkpoints, :func:`mailplan.facts.checkpoints.still_valid`) and
computes the same digest from the target's file names (identity, ``,S=`` size, flags and
keyword letters named by the folder's dovecot-keywords, or courier-imap's keywords where
only courier opened the folder, and those too where both are checked and differ) and
mtimes, which it lists anyway. When the source is unchanged and the target's digest is
the recorded one, the folder is exactly as proven before and is not read again; any
difference (a message deleted, a flag or date changed, a truncated file, a grown spool)
sends that mailbox through the full comparison. ``verify --full`` ignores the record.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, tzinfo
from pathlib import Path

from mailplan.private_files import write_private
from mailplan.verify_model import Identity, SourceMessage, TargetMessage

VERSION = 2


@dataclass(frozen=True)
class Proven:
    """One folder verify found identical on both sides, and the source it read."""

    path: str
    inode: int
    size: int
    mtime: float
    head: str
    tail: str
    count: int
    digest: str


def cache_path(state_path: Path) -> Path:
    """Where verify keeps its record: next to the state file."""
    return state_path.with_name(state_path.name + ".verified")


def key(domain: str, user: str, dirname: str, path: str, mboxrd: bool, zone: str = "UTC"
        ) -> str:
    """The record's key for one folder read from one source file, in the source's time
    zone ``zone`` (:func:`zone_id`: dates without a zone are read in it)."""
    return "\t".join((domain, user, dirname, path, "mboxrd" if mboxrd else "mboxo", zone))


def zone_id(zone: tzinfo | None) -> str:
    """What names the source's time zone in the record's keys: its IANA name, or for a
    zone read from the source's TZif file (which has none) a digest of its UTC offsets
    and names, a day apart from 1970 to 2038 (a changed zone: everything is read again)."""
    if zone is None:
        return "UTC"
    name = getattr(zone, "key", None)
    if name:
        return str(name)
    h = hashlib.sha256()
    for day in range(0, 1 << 31, 86400):
        moment = datetime.fromtimestamp(day, zone)
        h.update(f"{moment.utcoffset()}{moment.tzname()};".encode())
    return "tzif:" + h.hexdigest()[:16]


def load(path: Path) -> dict[str, Proven]:
    """The record of the last verify (empty when missing or unreadable: then verify
    simply reads everything)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("version") != VERSION:
            return {}
        return {k: Proven(**v) for k, v in doc["folders"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def save(path: Path, proven: dict[str, Proven]) -> None:
    """Write the record atomically, mode 0600."""
    doc = {"version": VERSION, "folders": {k: asdict(v) for k, v in sorted(proven.items())}}
    with contextlib.suppress(OSError):  # a read-only directory: the next verify reads all
        write_private(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")


def _digest(rows: Iterable[str]) -> str:
    h = hashlib.sha256()
    for row in sorted(rows):
        h.update(row.encode() + b"\n")
    return h.hexdigest()


def source_digest(messages: dict[Identity, SourceMessage]) -> str | None:
    """The folder's messages as the source has them (None: a date is unknown, so the
    comparison cannot be reproduced from the target alone)."""
    if any(m.arrival is None for m in messages.values()):
        return None
    return _digest(f"{d}:{o}:{m.size}:{''.join(sorted(m.flags))}:{int(m.arrival or 0)}"
                   f":{' '.join(sorted(m.keywords))}" for (d, o), m in messages.items())


def target_digest(files: dict[Identity, list[TargetMessage]]) -> str | None:
    """The same digest from the target's files (None: a file is stored twice or its size
    disagrees with its name, which only the full comparison reports properly)."""
    rows = []
    for (d, o), found in files.items():
        if len(found) != 1 or found[0].file_size != found[0].name_size:
            return None
        m = found[0]
        # the keywords as checked (dovecot's, else courier-imap's); courier-imap's as
        # well where both are checked and differ: the source's digest has one set, so
        # such a folder is compared in full again
        kw = m.keywords if m.dovecot or m.courier is None else m.courier
        rows.append(f"{d}:{o}:{m.name_size}:{''.join(sorted(m.flags))}:{int(m.mtime)}"
                    f":{' '.join(sorted(kw))}"
                    + (f":courier:{' '.join(sorted(m.courier))}"
                       if m.courier is not None and m.courier != kw else ""))
    return _digest(rows)
