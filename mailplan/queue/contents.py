"""Judge a message's envelope files as qmail-send reads them (pure; a part of
:func:`mailplan.queue.check.check`).

``malformed``: a file qmail-send cannot use at all (an info/ file not beginning with
``F<sender>``, a todo/ envelope with a record it stops at), or a local/ or remote/ file
it stops reading part-way. ``unread-record``: a last record without its NUL byte, which
qmail-send takes for the end of the file. The advice never has a message deleted while
qmail-send would still deliver it to someone.
"""

from __future__ import annotations

from mailplan.queue import formats
from mailplan.queue.grouping import QueueFile
from mailplan.queue.problems import Problem, Report

DELETE = "delete the message (mailplan queue delete) after looking at it"


def _stopped(qf: QueueFile, stop: formats.FormatError, pending: int) -> Problem:
    """A local/ or remote/ file qmail-send stops reading at ``stop``.

    pass_dochan stops without reaching the end of the file, so job_close never removes
    it and messdone never runs: the message is never finished, and injectbounce, which
    messdone calls, never sends the bounce for the recipients that failed permanently.
    """
    bounce = f"bounce/{qf.msg_id}"
    said = f"{stop}; qmail-send stops reading the file there at every pass ('unknown " \
        "record type'): it never delivers to the recipients after it, nor finishes the " \
        "message, so it never sends a bounce either, not even for the recipients before " \
        f"that record that fail permanently (their failure reports collect in {bounce}, " \
        "and deleting the message deletes them)"
    mend = ("mend the file by hand (with qmail-send stopped, remove that record: qmail-send "
            "then finishes the message and sends the bounce)")
    if pending:
        said += (f"; it still delivers to its {pending} pending recipient(s) before that "
                 "record and in the message's other files: once those are done (mailplan "
                 f"queue show), {mend}, or delete the message (mailplan queue delete)")
    else:
        said += f": {mend}, or {DELETE}"
    return Problem("malformed", qf.entry.path, said)


def _unread(qf: QueueFile, note: str, pending: int) -> Problem:
    """A last record without its NUL in a todo/, local/ or remote/ file."""
    then = (f"qmail-send delivers the message to its {pending} other pending "
            "recipient(s)" if pending else
            "qmail-send finishes the message without it (no other recipient is pending)")
    return Problem("unread-record", qf.entry.path,
                   f"{note}; {then}: do not delete the message for it; send that recipient "
                   "a copy by hand (mailplan queue show --full) if it should have one")


def check_contents(areas: dict[str, list[QueueFile]], report: Report) -> None:
    """Add the problems of the envelope files of one message (with its mess file)."""
    if areas.get("todo"):
        # qmail-send died preprocessing it: it rewrites info/local/remote from todo/
        files = [("todo", qf) for qf in areas["todo"]]
    else:
        files = [(area, qf) for area in ("info", "local", "remote")
                 for qf in areas.get(area, [])]
    pending = 0  # recipients qmail-send reads and has yet to deliver to
    stops: list[tuple[QueueFile, formats.FormatError]] = []
    unread: list[tuple[QueueFile, str]] = []
    for area, qf in files:
        data = qf.entry.data
        try:
            if area == "info":
                formats.parse_info(data)
                continue
            if area == "todo":
                pending += len(formats.parse_envelope(data).recipients)
            else:
                rcpts, stop = formats.read_recipients(data)
                pending += sum(1 for _, done in rcpts if not done)
                if stop is not None:
                    stops.append((qf, stop))
                    continue
        except formats.FormatError as exc:
            report.problems.append(Problem("malformed", qf.entry.path,
                                           f"{exc}; qmail cannot use it: {DELETE}"))
            continue
        note = formats.unread_record(data)
        if note:
            unread.append((qf, note))
    report.problems += [_stopped(qf, stop, pending) for qf, stop in stops]
    report.problems += [_unread(qf, note, pending) for qf, note in unread]
