"""Messages and statistics built from a queue dump (pure functions).

A message is whatever has a ``mess`` file; its other files say how far qmail got:
``queued`` (qmail-send preprocessed it into info/local/remote), ``todo`` (qmail-queue
finished, qmail-send has not seen it yet: what qmail-qstat calls "not yet preprocessed";
also when info/local/remote exist too, as qmail-send ignores them while todo/ID exists)
or ``partial`` (a mess file with neither info nor todo: qmail-queue is still writing it or
died while doing so). Files of other areas without a mess file are orphans; they are
the business of :mod:`mailplan.queue.check`. So is a named pipe or a symbolic link named
as a mess file (check's ``wrong-type``): it is no message (:func:`sort_out` lists it), as
qmail-qstat does not count it either (``find -type f``). Which file is whose, and where
qmail looks for it, is :mod:`mailplan.queue.grouping`'s.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from mailplan.queue import formats
from mailplan.queue.dump import Dump, Entry
from mailplan.queue.grouping import Groups, QueueFile, by_id, detect_layout, grouped, queue_files
from mailplan.queue.headerfields import first_fields
from mailplan.queue.layout import Layout

#: The headers a :class:`Message` keeps (the first of each): those list shows and its
#: filters and delete --match look at. Only they are read, and kept, so that a queue of a
#: hundred thousand messages does not hold all their header lines (show prints the mess
#: file's own).
HEADERS = frozenset({"subject", "from", "to", "cc"})
#: What of each mess file a read for list or delete --match asks for (``mess`` of
#: :func:`~mailplan.queue.dump.read_queue`): :data:`HEADERS` only, picked out on the host.
FIELDS = "fields=" + ",".join(sorted(HEADERS))


@dataclass(frozen=True, slots=True)
class Recipient:
    """One envelope recipient and how far its delivery got."""

    address: str
    channel: str  # local, remote, or todo (not yet sorted by qmail-send)
    done: bool

    @property
    def plain(self) -> str:
        """The address without qmail's virtualdomains prefix."""
        return formats.plain_local(self.address) if self.channel == "local" else self.address


@dataclass(frozen=True, slots=True)
class Message:
    """One message in the queue."""

    id: int
    state: str  # queued, todo or partial
    sender: str | None  # envelope sender; "" is <>; None when no envelope is readable
    recipients: tuple[Recipient, ...]
    size: int
    written: int  # mtime of the mess file: when qmail-queue wrote it
    preprocessed: int | None  # mtime of the info file qmail-send reads (None: none)
    headers: tuple[tuple[str, str], ...]  # the first of each of :data:`HEADERS`, capped
    bouncing: bool  # qmail-send is collecting a bounce for it (bounce/ID exists)
    files: tuple[str, ...]
    split_dir: str | None
    mess_file: str  # the mess file the size and the headers are read from
    damaged: tuple[str, ...] = field(default=())
    # "FILE: why": a last record without its NUL, which qmail-send never reads (the
    # message is delivered to the recipients shown, without it)
    skipped: tuple[str, ...] = field(default=())

    @property
    def is_bounce(self) -> bool:
        """A bounce (envelope sender <>) or double bounce (#@[])."""
        return self.sender in formats.BOUNCE_SENDERS

    @property
    def subject(self) -> str:
        """The Subject header, RFC 2047 decoded ("" if there is none)."""
        return formats.decoded(formats.header(list(self.headers), "Subject") or "")

    @property
    def header_from(self) -> str:
        """The From header, RFC 2047 decoded ("" if there is none)."""
        return formats.decoded(formats.header(list(self.headers), "From") or "")

    @property
    def queued(self) -> int:
        """When the message's time in the queue counts from, as qmail counts it: once
        preprocessed, the info file's mtime (qmail-send's birth of the message, which
        the queuelifetime bounce counts from, and the date qmail-qread prints); before
        that, the mess file's (qmail-send writes info/, and so starts that clock, only
        when it preprocesses the message)."""
        if self.state == "queued" and self.preprocessed is not None:
            return self.preprocessed
        return self.written

    def age(self, now: int) -> int:
        """Seconds since the message was queued (:attr:`queued`)."""
        return max(0, now - self.queued)


#: What a file that is not a regular file is, in words.
KIND_NAMES = {"p": "a named pipe", "l": "a symbolic link", "d": "a directory"}


def kind_name(entry: Entry) -> str:
    """``a named pipe``, ``a symbolic link``, ...: what ``entry`` is instead of a regular file."""
    return KIND_NAMES.get(entry.kind, "a special file")


def _regular(qf: QueueFile | None) -> bool:
    return qf is not None and qf.entry.kind == "f"


def _places(area: str, msg_id: int, layout: Layout) -> tuple[str, ...]:
    """Where qmail opens the ``area`` file of message ``msg_id``: for todo/ and intd/
    both ``todo/ID`` and ``todo/N/ID``, as whether qmail was built with big-todo is
    check's to tell (and to doubt: ``split-mismatch``), not list's."""
    if area in ("todo", "intd"):
        return (f"{area}/{msg_id}", f"{area}/{msg_id % layout.split}/{msg_id}")
    return (layout.path(area, msg_id),)


def _where_qmail_reads(msg_id: int, areas: dict[str, list[QueueFile]],
                       layout: Layout) -> tuple[dict[str, list[QueueFile]], list[str]]:
    """Each area's files with the one qmail reads first (the one where it opens it,
    :func:`_places`; it opens no other), and why each file qmail never reads is no part of the
    message for qmail: not a regular file (check: ``wrong-type``), a second file of
    its area (``duplicate``), or one where qmail does not look (a wrong split
    directory, a repair's temporary name: ``misplaced``, ``unfinished-repair``)."""
    ordered: dict[str, list[QueueFile]] = {}
    notes: list[str] = []
    for area, qfs in areas.items():
        places = _places(area, msg_id, layout)
        ordered[area] = sorted(qfs, key=lambda qf: qf.entry.path not in places)
        first = ordered[area][0].entry.path
        for qf in ordered[area]:
            if not _regular(qf):
                # a file check calls wrong-type: the dump carries none of its bytes, nor
                # would qmail-send read a named pipe's (O_NDELAY: no writer, no data)
                notes.append(f"{qf.entry.path}: {kind_name(qf.entry)}, not a regular file: "
                             "not read (check reports it as wrong-type)")
            elif qf.entry.path != first and first in places:
                notes.append(f"{qf.entry.path}: a second {area} file of message {msg_id}: "
                             f"qmail reads only {first} (check reports a duplicate)")
            elif qf.entry.path not in places:
                notes.append(f"{qf.entry.path}: not where qmail looks for it "
                             f"({layout.path(area, msg_id)}): qmail never reads it "
                             "('mailplan queue check' says why)")
    return ordered, notes


def _message(msg_id: int, areas: dict[str, list[QueueFile]], layout: Layout) -> Message:
    areas, damaged = _where_qmail_reads(msg_id, areas, layout)
    mess = next(qf for qf in areas["mess"] if _regular(qf))
    read: list[QueueFile] = []  # the files qmail-send reads recipients from
    sender: str | None = None
    recipients: list[Recipient] = []
    info = [qf for qf in areas.get("info", [])[:1] if _regular(qf)]
    envelope_file = (areas.get("todo") or areas.get("intd") or [None])[0]
    # While todo/ID exists qmail-send ignores info/local/remote (it may have died while
    # writing them, and redoes them from todo), so todo's envelope is the one that counts.
    if areas.get("info") and not areas.get("todo"):
        try:
            if info:
                sender = formats.parse_info(info[0].entry.data)
        except formats.FormatError as exc:
            damaged.append(f"{info[0].entry.path}: {exc}")
        for channel in ("local", "remote"):
            for qf in filter(_regular, areas.get(channel, [])[:1]):
                # the recipients qmail-send reads, up to a record it stops at
                rcpts, stop = formats.read_recipients(qf.entry.data)
                recipients += [Recipient(a, channel, d) for a, d in rcpts]
                if stop is None:
                    read.append(qf)
                else:
                    damaged.append(f"{qf.entry.path}: {stop} (qmail-send stops there: "
                                   "never delivers to the recipients after it)")
        state = "queued"
    elif envelope_file is not None:
        try:
            if _regular(envelope_file):
                env = formats.parse_envelope(envelope_file.entry.data)
                sender = env.sender
                recipients = [Recipient(a, "todo", False) for a in env.recipients]
        except formats.FormatError as exc:
            # intd/ alone: qmail-queue is still writing it (or died doing so), which
            # is what "partial" says; qmail never reads it as it stands
            if areas.get("todo"):
                damaged.append(f"{envelope_file.entry.path}: {exc}")
        state = "todo" if areas.get("todo") else "partial"
        read += filter(_regular, areas.get("todo", [])[:1])
    else:
        state = "partial"
    files = tuple(sorted(qf.entry.path for qfs in areas.values() for qf in qfs))
    skipped = [f"{qf.entry.path}: {note}" for qf in read
               if (note := formats.unread_record(qf.entry.data))]
    return Message(
        id=msg_id, state=state, sender=sender, recipients=tuple(recipients),
        size=mess.entry.size, written=mess.entry.mtime,
        preprocessed=info[0].entry.mtime if info else None,
        headers=tuple(first_fields(mess.entry.data, HEADERS)),
        bouncing=bool(areas.get("bounce")), files=files, split_dir=mess.split_dir,
        mess_file=mess.entry.path, damaged=tuple(damaged), skipped=tuple(skipped))


def sort_out(dump: Dump, groups: Groups | None = None) -> tuple[list[Message], list[Entry]]:
    """Every message (everything with a mess file that is a regular file), oldest first,
    and the files named as a mess file that are not regular files (a named pipe, a
    symbolic link) of ids without a regular one: no message, left out of :func:`stats`
    too, as check reports them (``wrong-type``) and touches nothing of their id.
    qmail-qstat does not count them (``find -type f``). ``groups``: :func:`grouped`
    of ``dump``, if worked out already."""
    layout = detect_layout(dump)
    found: list[Message] = []
    odd: list[Entry] = []
    for msg_id, areas in (grouped(dump) if groups is None else groups).items():
        mess = areas.get("mess", [])
        if any(map(_regular, mess)):
            found.append(_message(msg_id, areas, layout))
        else:
            odd += (qf.entry for qf in mess)
    return (sorted(found, key=lambda m: (m.queued, m.id)),
            sorted(odd, key=lambda e: e.path))


def messages(dump: Dump, groups: Groups | None = None) -> list[Message]:
    """Every message, oldest first (:func:`sort_out`)."""
    return sort_out(dump, groups)[0]


@dataclass(frozen=True)
class Stats:
    """The numbers of ``mailplan queue stat``."""

    messages: int  # regular files in mess/ (qmail-qstat's "messages in queue")
    not_preprocessed: int  # regular files in todo/ (qmail-qstat's second line)
    with_local: int  # files in local/ (qmHandle's "Messages with local recipients")
    with_remote: int  # files in remote/
    local_pending: int
    local_done: int
    remote_pending: int
    remote_done: int
    bounces: int  # messages with envelope sender <> or #@[]
    bouncing: int  # files in bounce/ (qmHandle's "Messages with bounces")
    partial: int
    oldest: int | None  # queued time of the oldest message
    total_bytes: int
    not_messages: int  # a named pipe or symlink named as a mess file: in none of the above
    damaged: int  # messages with a file qmail cannot use or never reads (list marks them)

    def as_dict(self) -> dict[str, int | None]:
        """The numbers by name, for JSON."""
        return dict(self.__dict__)


def qstat_count(dump: Dump, area: str) -> int:
    """What qmail-qstat counts in ``mess`` or ``todo``: regular files at any depth, as
    its ``find QMAIL/queue/mess/* -type f`` and ``find QMAIL/queue/todo -type f`` (find
    neither follows nor counts a symbolic link, a named pipe or a directory); the shell's
    ``mess/*`` leaves out what sits right in mess/ under a name starting with a dot."""
    return sum(1 for e in dump.entries.values()
               if e.kind == "f" and len(e.parts) >= 2 and e.parts[0] == area
               and not (area == "mess" and e.parts[1].startswith(".")))


def stats(dump: Dump) -> Stats:
    """Count the queue the way qmail-qstat and qmHandle -s do, plus recipients and bytes."""
    count: dict[str, int] = defaultdict(int)
    files = queue_files(dump)
    for qf in files:
        count[qf.area] += 1
    msgs, odd = sort_out(dump, by_id(files))
    rcpts = [r for m in msgs for r in m.recipients]

    def tally(channel: str, done: bool) -> int:
        return sum(1 for r in rcpts if r.channel == channel and r.done == done)

    return Stats(
        messages=qstat_count(dump, "mess"), not_preprocessed=qstat_count(dump, "todo"),
        with_local=count["local"],
        with_remote=count["remote"], local_pending=tally("local", False),
        local_done=tally("local", True), remote_pending=tally("remote", False),
        remote_done=tally("remote", True), bounces=sum(1 for m in msgs if m.is_bounce),
        bouncing=count["bounce"], partial=sum(1 for m in msgs if m.state == "partial"),
        oldest=min((m.queued for m in msgs), default=None),
        total_bytes=sum(m.size for m in msgs), not_messages=len(odd),
        damaged=sum(1 for m in msgs if m.damaged))
