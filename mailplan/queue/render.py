"""Text and JSON output of the queue commands (pure: values in, strings out).

Everything that came from the queue (addresses, subjects) goes through
:func:`~mailplan.queue.formats.printable`, so a crafted message cannot send terminal
escape sequences to the admin's screen.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterable, Iterator

from mailplan.queue import control
from mailplan.queue.check import Report
from mailplan.queue.dump import Entry
from mailplan.queue.formats import printable
from mailplan.queue.model import Message, Recipient, Stats, kind_name
from mailplan.queue.ops import Change, Leftover
from mailplan.queue.problems import Problem


def utc(ts: int | None) -> str | None:
    """A timestamp as ``YYYY-MM-DD HH:MM:SS`` UTC."""
    return None if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def duration(seconds: int) -> str:
    """``3d 4h``, ``2h 5m``, ``40s``."""
    days, rest = divmod(max(0, seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def sender_text(sender: str | None) -> str:
    """An envelope sender as qmail-qread shows it: ``<addr>``, ``<>``, ``?`` if unknown."""
    return "?" if sender is None else f"<{printable(sender)}>"


def running_text(status: int | None) -> str:
    """The status command's verdict in words (only its exit 1 means "not running")."""
    said = control.state(status)
    if said == "unknown":
        return f"unknown (status command exit {status})"
    return "not running" if said == "stopped" else said


def send_text(status: int | None, sendmutex: str = "",
              pids: tuple[int, ...] = ()) -> str:
    """Whether qmail-send runs, in words: the status command's verdict
    (:func:`running_text`), unless qmail-send's lock lock/sendmutex says otherwise (see
    :func:`~mailplan.queue.control.lock_note`): then "running" and why."""
    note = control.lock_note(status, sendmutex, pids)
    if note is not None:
        return (f"running: {note}; delete --execute and check --repair refuse while it "
                "is held")
    if sendmutex == "free" and status == control.RUNNING:
        return ("running (the status command says so), but no process seen here holds "
                "its lock lock/sendmutex, as a running qmail-send does")
    return running_text(status)


def stat_text(stats: Stats, now: int, status: int | None, sendmutex: str = "",
              pids: tuple[int, ...] = ()) -> str:
    """``queue stat``: qmail-qstat's two lines, then the rest."""
    oldest = "none" if stats.oldest is None else \
        f"{utc(stats.oldest)} UTC ({duration(now - stats.oldest)} ago)"
    lines = [
        f"messages in queue: {stats.messages}",
        f"messages in queue but not yet preprocessed: {stats.not_preprocessed}",
        f"messages with local recipients: {stats.with_local}",
        f"messages with remote recipients: {stats.with_remote}",
        f"local recipients: {stats.local_pending} pending, {stats.local_done} done",
        f"remote recipients: {stats.remote_pending} pending, {stats.remote_done} done",
        f"bounces (envelope sender <> or #@[]): {stats.bounces}",
        f"messages bouncing now (bounce/): {stats.bouncing}",
        f"half-written messages: {stats.partial}",
        f"oldest message: {oldest}",
        f"total size: {stats.total_bytes} bytes",
        f"qmail-send: {send_text(status, sendmutex, pids)}",
    ]
    if stats.damaged:
        lines.insert(-1, f"damaged messages: {stats.damaged}, with a file qmail cannot use "
                     "or never reads ('mailplan queue list' marks them)")
    if stats.not_messages:
        lines.insert(-1, f"not messages: {stats.not_messages} named pipe(s) or symbolic "
                     "link(s) named as a mess file, left out above ('mailplan queue check' "
                     "reports them: wrong-type)")
    return "\n".join(lines) + "\n"


def stat_json(stats: Stats, now: int, status: int | None, sendmutex: str = "",
              pids: tuple[int, ...] = ()) -> str:
    """``queue stat --json``: ``qmail_send`` is "running" while a process holds
    lock/sendmutex, whatever ``status_command`` (the status command's verdict) says;
    ``qmail_send_note`` says why when the two disagree."""
    data = stats.as_dict()
    data["oldest_age"] = None if stats.oldest is None else now - stats.oldest
    note = control.lock_note(status, sendmutex, pids)
    data["qmail_send"] = "running" if note is not None else running_text(status)
    data["status_command"] = running_text(status)
    data["sendmutex"] = sendmutex or None
    data["sendmutex_pids"] = list(pids)
    data["qmail_send_note"] = note
    return json.dumps(data, indent=2) + "\n"


def recipient_text(r: Recipient) -> str:
    """``local:addr``, ``remote:addr (done)``, ``todo:addr``."""
    return f"{r.channel}:{printable(r.address)}" + (" (done)" if r.done else "")


def not_messages_note(odd: list[Entry]) -> str:
    """The line under ``queue list`` for files named as a mess file that are not
    regular files (:func:`~mailplan.queue.model.sort_out`), "" without any."""
    if not odd:
        return ""
    return (f"not listed: {len(odd)} file(s) named as a mess file but not a regular file, "
            f"so no message ({printable(odd[0].path)}: {kind_name(odd[0])}); "
            "'mailplan queue check' reports them (wrong-type)\n")


def _list_cells(m: Message) -> tuple[str, ...]:
    """A message's cells in ``queue list``'s columns."""
    subject = printable(m.subject)
    subject = subject if len(subject) <= 40 else subject[:39] + "…"
    state = m.state + (",bouncing" if m.bouncing else "") + (",damaged" if m.damaged else "")
    return (str(m.id), utc(m.queued) or "", str(m.size), state, sender_text(m.sender),
            subject or "-", ", ".join(recipient_text(r) for r in m.recipients) or "-")


_LIST_HEAD = ("ID", "QUEUED (UTC)", "SIZE", "STATE", "SENDER", "SUBJECT", "RECIPIENTS")


def _table(msgs: list[Message]) -> Iterator[str]:
    """The heading and a line per message, in columns as wide as their widest cell (the
    last one ragged): a first pass over the messages measures the cells, the second
    makes them again, a line at a time, so that the lines are never held all at once."""
    widths = [len(cell) for cell in _LIST_HEAD[:6]]
    for m in msgs:
        widths = [max(w, len(c)) for w, c in zip(widths, _list_cells(m)[:6], strict=True)]
    for row in itertools.chain((_LIST_HEAD,), map(_list_cells, msgs)):
        line = "  ".join(c.ljust(w) for c, w in zip(row[:6], widths, strict=True))
        yield (line + "  " + row[6]).rstrip() + "\n"


def list_lines(msgs: list[Message], odd: list[Entry] | None = None) -> Iterator[str]:
    """``queue list``: a line per message, each with its newline and made when it is
    asked for, so that the output of a backlog is written as it goes, never held whole;
    ``odd``: files named as a mess file that are no message
    (:func:`~mailplan.queue.model.sort_out`), noted under it."""
    if not msgs:
        yield "no messages\n"
    else:
        yield from _table(msgs)
        yield f"{len(msgs)} message(s)\n"
    damaged = [m.id for m in msgs if m.damaged]
    if damaged:
        yield (f"{len(damaged)} with a file qmail cannot use or never reads (state "
               "'damaged': the sender or recipients shown may lack what it holds); "
               f"'mailplan queue show' of one (message {damaged[0]}) says which file and "
               "why\n")
    skipping = [m.id for m in msgs if m.skipped]
    if skipping:
        yield (f"{len(skipping)} with a last recipient record qmail-send never reads (no "
               "NUL byte at its end: it delivers to the recipients shown, without it); "
               f"'mailplan queue show' of one (message {skipping[0]}) says which\n")
    if odd:
        yield not_messages_note(odd)


def message_dict(m: Message) -> dict[str, object]:
    """One message for JSON output."""
    return {
        "id": m.id, "state": m.state, "queued": utc(m.queued), "written": utc(m.written),
        "preprocessed": utc(m.preprocessed), "size": m.size, "sender": m.sender,
        "bounce": m.is_bounce, "bouncing": m.bouncing, "from": m.header_from,
        "subject": m.subject,
        "recipients": [{"address": r.address, "plain": r.plain, "channel": r.channel,
                        "done": r.done} for r in m.recipients],
        "files": list(m.files), "damaged": list(m.damaged), "skipped": list(m.skipped),
    }


def list_json(msgs: list[Message]) -> Iterator[str]:
    """``queue list --json``: ASCII, as every JSON mailplan prints (a subject's C1 or bidi
    control characters are ``\\u`` escapes, never sent raw to a terminal). The text of
    ``json.dumps(list, indent=2)``, made a message at a time when it is asked for, as
    :func:`list_lines` makes the table: a backlog's JSON (some 2 kB a message) and its
    objects are never held whole."""
    if not msgs:
        yield "[]\n"
        return
    for n, m in enumerate(msgs):
        # json.dumps escapes every newline inside a string: each one here is its layout
        item = json.dumps(message_dict(m), indent=2).replace("\n", "\n  ")
        yield ("[\n  " if n == 0 else ",\n  ") + item
    yield "\n]\n"


def show_text(m: Message, data: bytes) -> str:
    """``queue show``: the envelope, then the message (headers or all of it)."""
    body = data.decode("utf-8", "backslashreplace")
    kept = "\n".join(printable(line) for line in body.split("\n"))
    return show_head(m) + kept + ("" if kept.endswith("\n") else "\n")


def show_head(m: Message) -> str:
    """What ``queue show`` prints before the message: its envelope and an empty line."""
    lines = [f"message {m.id} ({m.state}), {m.size} bytes, queued {utc(m.queued)} UTC",
             f"envelope sender: {sender_text(m.sender)}"]
    lines += [f"recipient: {recipient_text(r)}" for r in m.recipients]
    lines += [f"files: {printable(', '.join(m.files))}"]
    # a file qmail cannot use: its recipients (or sender) are missing above
    lines += [f"damaged: {printable(d)}" for d in m.damaged]
    # a last record qmail-send never reads: it delivers to the recipients above only
    lines += [f"skipped: {printable(s)}" for s in m.skipped] + [""]
    return "\n".join(lines) + "\n"


def leftover_text(left: Leftover) -> str:
    """``queue show`` of an id with files but no mess file (or only one that is no
    regular file: what it is instead)."""
    odd = "".join(f"; {printable(e.path)}: {kind_name(e)}" for e in left.odd_mess)
    why = f"no regular mess file under that id{odd}" if odd else "no mess file under that id"
    lines = [f"no message {left.id} ({why}); its files: {printable(', '.join(left.files))}"]
    lines += [f"check: {line}" for line in report_lines(left.problems)]
    return "\n".join(lines) + "\n"


def delete_text(change: Change) -> str:
    """``queue delete``: what was (or would be) removed."""
    verb = "removed" if change.executed else "would remove"
    lines = []
    for msg_id, files in change.removed.items():
        lines.append(f"{verb} message {msg_id}: {printable(', '.join(files)) or 'nothing'}")
    lines += [f"message {i} vanished: it left the queue (or its id now names another "
              "message) before it could be deleted; not deleted" for i in change.vanished]
    lines += [f"FAILED: {printable(f)}" for f in change.failed]
    if change.partial_left_out:
        ids = ", ".join(str(i) for i in change.partial_left_out)
        lines.append(f"{len(change.partial_left_out)} partial message(s) matched but were "
                     f"not selected ({ids}): qmail-queue may still be writing them; name "
                     "them by id or add --include-partial to delete them")
    if not change.removed and not change.vanished:
        lines.append("no message selected; nothing to delete" if change.partial_left_out
                     else "no message matched; nothing to delete")
    elif not change.removed:
        lines.append("nothing was deleted")
    elif not change.executed:
        lines.append(f"dry run: {len(change.removed)} message(s); add --execute to delete")
    elif change.stopped:
        lines.append("qmail-send was stopped for this and started again")
    lines += [f"warning: {printable(w)}" for w in change.warnings]
    return "\n".join(lines) + "\n"


def delete_json(change: Change) -> str:
    """``queue delete --json``. The files go under ``would_remove`` in a dry run and
    under ``removed`` only with --execute, so that no script takes a dry run's list for
    files that are gone."""
    files = "would_remove" if change.dry_run else "removed"
    return json.dumps({"executed": change.executed, "dry_run": change.dry_run,
                       files: change.removed, "failed": change.failed,
                       "vanished": change.vanished,
                       "partial_left_out": change.partial_left_out,
                       "warnings": change.warnings}, indent=2) + "\n"


def report_lines(problems: Iterable[Problem]) -> list[str]:
    """One line per problem, as ``queue check`` prints them."""
    return [f"{p.code}: {printable(p.path)}: {printable(p.message)}"
            + ("" if p.repairable else " [not repairable]") for p in problems]


def report_text(report: Report) -> str:
    """``queue check``: one line per problem."""
    lines = report_lines(report.problems)
    lines += [f"note: {printable(n)}" for n in report.notes]
    fixable = sum(1 for p in report.problems if p.repairable)
    lines.append(f"{len(report.problems)} problem(s), {fixable} repairable with --repair"
                 if report.problems else
                 f"queue is healthy (split {report.layout.split}"
                 f"{', big-todo' if report.layout.big_todo else ''})")
    return "\n".join(lines) + "\n"


def report_dict(report: Report) -> dict[str, object]:
    """A check report for JSON."""
    return {"split": report.layout.split, "big_todo": report.layout.big_todo,
            "problems": [{"code": p.code, "path": p.path, "message": p.message,
                          "repairable": p.repairable} for p in report.problems],
            "notes": report.notes}
