"""The queue operations: read-only stat/list/show/check, and delete/repair that change it.

Reading costs one channel (the agent's dump). A change costs: one dump to choose what to
do and to refuse early, one channel holding the queue lock (:mod:`mailplan.queue.lock`)
until qmail-send is started again, one to stop qmail-send (if it runs and the control
method can stop it), a second dump taken with qmail-send stopped (the queue may have
moved meanwhile, and that dump is what the changes are computed from), one channel for
all the changes, and one to start qmail-send again; a final dump for repair's re-check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from mailplan.connectors.base import Connector
from mailplan.errors import HostError, MailplanError
from mailplan.queue import control as ctl
from mailplan.queue.check import STALE_AFTER, Report, check, repair_actions
from mailplan.queue.dump import DEFAULT_QUEUE, Dump, Entry, read_queue
from mailplan.queue.filters import Filter
from mailplan.queue.grouping import Groups, by_id, detect_layout, grouped, queue_files
from mailplan.queue.layout import REMOVE_ORDER
from mailplan.queue.lock import QueueHolder, queue_locked
from mailplan.queue.model import FIELDS, Message, messages
from mailplan.queue.problems import Problem, refuse_young_stale
from mailplan.queue.remote import Outcomes, run_actions


@dataclass(frozen=True)
class Target:
    """Which host queue to work on and how to treat qmail-send there."""

    conn: Connector
    queue_dir: str = DEFAULT_QUEUE
    control: ctl.Control = field(default_factory=ctl.Control)
    given_by: str | None = None  # where queue_dir came from (read_queue's given_by)

    def read(self, *, step: str, only_id: int | None = None, mess: str = "headers") -> Dump:
        """One dump, with the qmail-send status taken in the same channel."""
        return read_queue(self.conn, self.queue_dir, status_command=self.control.status(),
                          only_id=only_id, mess=mess, step=step, given_by=self.given_by)


def running(dump: Dump) -> bool:
    """Whether the status command said qmail-send runs."""
    return dump.status == ctl.RUNNING


def refuse_unknown(target: Target, status: int | None, step: str) -> None:
    """Refuse a change unless the status command (its exit ``status``) said plainly
    "running" or "stopped"."""
    if status in (ctl.RUNNING, ctl.STOPPED):
        return
    ctl.refuse_elsewhere(target.conn.name, target.control, status, step)
    rule = "the status command must exit 0 while qmail-send runs and 1 when it does not"
    method = target.control.method
    hint = (f"{rule} (a missing pgrep exits 127); install procps, or pass --control "
            "svc|systemctl|custom")
    if method == "systemctl":
        hint = (f"is {target.control.unit!r} the systemd unit that runs qmail-send "
                "(`systemctl status` names it; notqmail's is qmail-send)? Pass it with "
                "--unit; or " + hint)
    elif method == "svc":  # not "pass --control svc": it was given
        hint = (f"is {target.control.service!r} the daemontools service directory of "
                "qmail-send, supervised, with svstat and pgrep on the PATH (`svstat "
                "DIR` must say up or down)? Pass it with --service; or --control "
                "systemctl|custom")
    elif method == "custom":
        hint = f"check --status-cmd: {rule}"
    raise ctl.QmailRunning(
        f"cannot tell whether qmail-send runs (the status command exited {status}); "
        "nothing was changed", host=target.conn.name, step=step, hint=hint)


@dataclass(frozen=True)
class Leftover:
    """Files named by an id that is no message (no mess file under it that is a regular
    file), and what :func:`~mailplan.queue.check.check` says of them and of the message
    they belong to."""

    id: int
    files: tuple[str, ...]
    problems: tuple[Problem, ...]
    #: the files named as its mess file that are no regular file (a named pipe, a link)
    odd_mess: tuple[Entry, ...] = ()


def show(target: Target, msg_id: int, *,
         full: bool = False) -> tuple[Message, bytes] | Leftover:
    """One message and its header block (or, with ``full``, the whole message); for an
    id with files but no mess file, those files and check's verdict on them."""
    dump = target.read(step="show message", only_id=msg_id, mess="full" if full else "headers")
    groups = grouped(dump)
    found = [m for m in messages(dump, groups) if m.id == msg_id]
    if not found and msg_id in groups:
        return leftover(target, msg_id)
    if not found:
        raise UnknownMessage([msg_id], target.conn.name)
    # the mess file the message was read from: with a second one (in another split
    # directory, or a named pipe) the first found was not always that one
    return found[0], dump.entries[found[0].mess_file].data


def leftover(target: Target, msg_id: int) -> Leftover:
    """The files named ``msg_id`` and the problems check finds with the group they belong
    to (an orphan, or the files of a message whose mess file has inode ``msg_id``): the
    whole queue is read and checked, as that group may reach beyond the id's name."""
    dump, report = check_queue(target)
    files = queue_files(dump)
    named = [qf for qf in files if qf.msg_id == msg_id]
    if not named:
        raise UnknownMessage([msg_id], target.conn.name)
    group = next((areas for areas in by_id(files).values()
                  if any(named[0] in qfs for qfs in areas.values())), {})
    paths = {qf.entry.path for qfs in group.values() for qf in qfs}
    ids = {str(qf.msg_id) for qfs in group.values() for qf in qfs}
    odd = [qf.entry for qf in named if qf.area == "mess" and qf.entry.kind != "f"]
    return Leftover(msg_id, tuple(sorted(qf.entry.path for qf in named)),
                    tuple(p for p in report.problems if p.path in paths | ids),
                    tuple(sorted(odd, key=lambda e: e.path)))


class UnknownMessage(HostError):
    """An id the user named is not in the queue."""

    def __init__(self, ids: list[int], host: str) -> None:
        listed = ", ".join(str(i) for i in ids)
        super().__init__(f"no message {listed} in the queue; nothing was changed", host=host,
                         hint="list the queue with `mailplan queue list` to see the ids")


@dataclass(frozen=True)
class Selection:
    """What ``delete`` removes: messages by id and/or those passing a filter.

    A filter never takes a partial message (a mess file without info or todo) unless
    ``include_partial``: qmail-queue may still be writing it, and if its mess file goes
    before qmail-queue creates intd/, it still links todo/ and reports success, leaving
    an accepted message as a todo/ file without mess. An id names a message whatever
    its state.
    """

    ids: tuple[int, ...] = ()
    filter: Filter | None = None
    include_partial: bool = False

    def __post_init__(self) -> None:
        if not self.ids and self.filter is None:
            raise MailplanError("say which messages to delete: ids, --match, --bounces, "
                                "--older-than or --newer-than")

    @property
    def mess(self) -> str:
        """What of each mess file a read for choosing needs (``mess`` of
        :func:`~mailplan.queue.dump.read_queue`): the header fields it looks at
        (:data:`~mailplan.queue.model.FIELDS`) only when the filter matches on headers
        (``--match``), else nothing."""
        return FIELDS if self.filter is not None and self.filter.needs_headers else "none"

    def taken(self, dump: Dump, groups: Groups) -> list[Message]:
        """The messages the filter takes, partial ones too (none without a filter);
        ``groups``: :func:`~mailplan.queue.grouping.grouped` of ``dump``."""
        if self.filter is None:
            return []
        return self.filter.select(messages(dump, groups), dump.now)

    def files(self, groups: Groups, host: str, *, strict: bool,
              taken: Iterable[Message] = ()) -> dict[int, list[str]]:
        """The files of every chosen message (every area), by id, each message's in the
        order they are removed (:data:`~mailplan.queue.layout.REMOVE_ORDER`); ``groups``:
        the message files of a read (:func:`~mailplan.queue.grouping.grouped`),
        ``taken``: what :meth:`taken` said of that read."""
        unknown = [i for i in self.ids if i not in groups]
        if unknown and strict:
            raise UnknownMessage(unknown, host)
        chosen = {i for i in self.ids if i in groups}
        chosen |= {m.id for m in taken if m.state != "partial" or self.include_partial}
        return {i: [qf.entry.path for area in REMOVE_ORDER
                    for qf in sorted(groups[i].get(area, []), key=lambda qf: qf.entry.path)]
                for i in sorted(chosen)}

    def partial_left_out(self, taken: list[Message]) -> list[int]:
        """The partial messages of ``taken`` (see :meth:`taken`) that :meth:`files`
        leaves out."""
        if self.include_partial:
            return []
        return sorted(m.id for m in taken if m.state == "partial" and m.id not in self.ids)


def delete_actions(dump: Dump, files: dict[int, list[str]]) -> Iterator[dict[str, object]]:
    """The agent actions removing ``files`` (by id, each in :data:`REMOVE_ORDER`), one at
    a time, made as they are sent: a spam backlog's are hundreds of thousands.

    One message's removals are a batch: after one fails (a file that is already gone
    does not count), the rest of that message's are skipped, so its mess file is never
    removed while a todo, info, local, remote or bounce file of it stays behind.
    """
    for i, paths in files.items():
        for p in paths:
            yield {"op": "remove", "path": p, "ino": dump.entries[p].inode,
                   "batch": f"delete {i}"}


def identities(groups: Groups, ids: Iterable[int]) -> dict[int, tuple[int, int, int] | None]:
    """(inode, ctime, size) of each message's mess file (None: it has none), so that a
    message read twice is known to be the same one: an id is an inode number, and a
    freed inode goes to the next message qmail-queue writes. ``groups``: the message
    files of one read (:func:`~mailplan.queue.grouping.grouped`)."""
    out: dict[int, tuple[int, int, int] | None] = {}
    for i in ids:
        mess = groups[i].get("mess") if i in groups else None
        out[i] = None if not mess else (mess[0].entry.inode, mess[0].entry.ctime,
                                        mess[0].entry.size)
    return out


@dataclass
class Change:
    """What a delete or repair did (or, in a dry run, would do)."""

    executed: bool
    was_running: bool
    stopped: bool = False
    # files by message id: removed, or in a dry run (see dry_run) those it would remove
    removed: dict[int, list[str]] = field(default_factory=dict)
    dry_run: bool = False  # delete without --execute: nothing was to be changed
    failed: list[str] = field(default_factory=list)
    vanished: list[int] = field(default_factory=list)
    partial_left_out: list[int] = field(default_factory=list)  # delete: see Selection
    warnings: list[str] = field(default_factory=list)
    before: Report | None = None
    after: Report | None = None


def _changing(target: Target, status: int | None, work: Callable[[Dump], Change],
              command: str) -> Change:
    """Run ``work(dump)`` with qmail-send stopped; start it again if we stopped it; all
    of it holding the queue lock for ``command`` (``mailplan queue ...``: refused at once
    while another holds it). ``status``: what the status command said in the first read
    (the caller need not keep that read: ``work`` gets a new one). ``dump`` carries no
    message text: delete and repair work from names and inodes.

    Once the stop command was issued, qmail-send is started again whatever happens next
    (a stop that failed or timed out included: ``svc -d`` stays in force); if that start
    fails, the error or the change's warnings say that qmail-send is left stopped.
    """
    refuse_unknown(target, status, "read queue")
    was_running = status == ctl.RUNNING
    if was_running:
        ctl.can_stop(target.conn, target.control)
    with queue_locked(target.conn, target.queue_dir,
                      QueueHolder(command=command, queue=target.queue_dir)):
        try:
            if was_running:
                ctl.stop_and_wait(target.conn, target.control)
            second = target.read(step="re-read queue with qmail-send stopped", mess="none")
            if running(second):
                raise ctl.QmailRunning("qmail-send is running again; nothing was changed",
                                       host=target.conn.name, step="re-read queue")
            refuse_unknown(target, second.status, "re-read queue")
            change = work(second)
        except BaseException as exc:
            if was_running:
                _tell(exc, _start_again(target) or "qmail-send was started again")
            raise
        warning = _start_again(target) if was_running else None
    change.was_running = change.stopped = was_running
    if warning:
        change.warnings.append(warning)
    return change


def _start_again(target: Target) -> str | None:
    """Start qmail-send after mailplan stopped it; a loud warning if that failed."""
    try:
        failed = ctl.start(target.conn, target.control)
    except MailplanError as exc:
        failed = f"starting qmail-send via {target.control.describe()} failed: {exc}"
    return None if failed is None else f"qmail-send IS LEFT STOPPED: {failed}"


def _tell(exc: BaseException, what: str) -> None:
    """Add ``what`` happened to qmail-send to an error on its way to the user."""
    if isinstance(exc, MailplanError):
        exc.message = f"{exc.message}; {what}"
        exc.args = (exc.message,)
    else:
        exc.add_note(what)


def delete(target: Target, selection: Selection, *, execute: bool) -> Change:
    """Remove every file of the chosen messages; a dry run unless ``execute``."""
    first = target.read(step="read queue", mess=selection.mess)
    groups = grouped(first)  # once per read: choosing, the files and identities share it
    taken = selection.taken(first, groups)
    planned = selection.files(groups, target.conn.name, strict=True, taken=taken)
    left_out = selection.partial_left_out(taken)
    if not execute or not planned:
        change = Change(executed=False, was_running=running(first), removed=planned,
                        partial_left_out=left_out, dry_run=not execute)
        if planned and change.was_running:
            change.warnings.append(_running_note(target.control))
        elif planned and first.status != ctl.STOPPED:
            change.warnings.append(ctl.refusal_note(target.control, first.status))
        note = ctl.lock_note(first.status, first.sendmutex, first.sendmutex_pids)
        if planned and note is not None:
            change.warnings.append(f"{note}: --execute will refuse while it is held")
        return change

    seen = identities(groups, planned)
    status = first.status
    # what is left of the first read: a spam backlog's is tens of MB, and the second
    # read (with qmail-send stopped) takes its place
    del first, groups, taken

    def work(dump: Dump) -> Change:
        # Only what was chosen in the first read, and only if it is still the same
        # message: a message delivered meanwhile may have left its id to a new one.
        # The same mess file (inode, change time, size) has the same headers: this read
        # needs none of them.
        groups = grouped(dump)
        now = Selection(tuple(planned)).files(groups, target.conn.name, strict=False)
        same = identities(groups, [i for i in now if i in planned])
        now = {i: files for i, files in now.items() if i in same and same[i] == seen[i]}
        change = Change(executed=True, was_running=False, partial_left_out=left_out)
        change.vanished = [i for i in planned if i not in now]
        paths = [p for files in now.values() for p in files]
        del groups, same
        outcomes = ctl_apply(target, delete_actions(dump, now), "delete")
        failed = {paths[i]: o for i, o in outcomes.failed.items()}
        change.failed = [f"{p}: {o.get('error')}" for p, o in failed.items()
                         if not o.get("gone")]
        change.removed = {i: [p for p in files if p not in failed] if failed else files
                          for i, files in now.items()}
        return change

    return _changing(target, status, work, "mailplan queue delete --execute")


def _running_note(control: ctl.Control) -> str:
    if control.stop() is None:
        return ("qmail-send is running and --control process cannot stop it: --execute "
                "will refuse; stop it first or pass --control svc|systemctl|custom")
    return f"qmail-send is running: --execute stops it via {control.describe()} and " \
        "starts it again"


def ctl_apply(target: Target, actions: Iterable[dict[str, object]],
              step: str) -> Outcomes:
    """Carry out agent actions on the target's queue, only if qmail-send is still
    stopped then (the status is taken again in the same channel)."""
    return run_actions(target.conn, target.queue_dir, actions, step=step,
                       status_command=target.control.status())


def check_queue(target: Target, *, split: int | None = None,
                stale_after: int = STALE_AFTER) -> tuple[Dump, Report]:
    """Read the queue and check it (``split``: conf-split, None to read it from the tree)."""
    dump = target.read(step="read queue", mess="none")
    return dump, check(dump, detect_layout(dump, split), stale_after=stale_after)


def repair(target: Target, *, split: int | None = None,
           stale_after: int = STALE_AFTER) -> Change:
    """Check, fix every repairable problem with qmail-send stopped, and check again
    (refused, before the host is contacted, with ``stale_after`` under 24 h)."""
    refuse_young_stale(stale_after)
    first, before = check_queue(target, split=split, stale_after=stale_after)
    mismatch = [p for p in before.problems if p.code == "split-mismatch"]
    if mismatch:
        where = mismatch[0].path.split("/", 1)[0]
        if where in ("todo", "intd"):
            raise MailplanError(f"host {target.conn.name}: cannot tell whether todo/ and "
                                f"intd/ are split (big-todo): {mismatch[0].path}: "
                                f"{mismatch[0].message}; refusing to repair",
                                hint="make todo/ and intd/ one or the other by hand, then "
                                "run check again")
        raise MailplanError(f"host {target.conn.name}: the queue's split directories do not "
                            f"match split {before.layout.split} ({mismatch[0].path}: "
                            f"{mismatch[0].message}); refusing to repair",
                            hint="pass --split with the conf-split qmail was built with")
    if not any(p.repairable for p in before.problems):
        return Change(executed=False, was_running=running(first), before=before,
                      after=before)

    def work(dump: Dump) -> Change:
        report = check(dump, detect_layout(dump, split), stale_after=stale_after)
        actions = repair_actions(report)
        outcomes = ctl_apply(target, actions, "repair")
        change = Change(executed=True, was_running=False, before=report)
        change.failed = [f"{actions[i]['op']} {actions[i]['path']}: {o.get('error')}"
                         for i, o in outcomes.failed.items()]
        return change

    status = first.status
    del first, before  # the second read, with qmail-send stopped, takes their place
    change = _changing(target, status, work, "mailplan queue check --repair")
    _, change.after = check_queue(target, split=split, stale_after=stale_after)
    return change
