"""Progress of a long apply: per phase, and messages/bytes, rate and ETA during mail import.

Three reporters share one interface: :class:`LiveReporter` (a rich display that redraws
in place, for terminals), :class:`PlainReporter` (a line per finished step and a status
line every few seconds, for logs and pipes) and :class:`QuietReporter` (nothing; errors
still reach stderr through the CLI). :class:`MailCounter` does the arithmetic (totals
from the plan, done from the journaled batches, rate and ETA) and is pure apart from
the clock it is given. Colours follow NO_COLOR.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from mailplan.names import human_size
from mailplan.plan import MAIL_KINDS, Change
from mailplan.text import escape, escape_lines, marked

INTERVAL_ENV = "MAILPLAN_PROGRESS_INTERVAL"


def user_of(change: Change) -> str:
    """``user@domain`` of a mailbox change."""
    return f"{change.user}@{change.domain}"


@dataclass
class Tally:
    """Messages and bytes: planned and done."""

    messages_total: int = 0
    bytes_total: int = 0
    messages: int = 0
    bytes: int = 0

    def text(self) -> str:
        """``12/300 messages, 1.0 MiB/20.0 MiB (5%)``."""
        pct = f" ({100 * self.bytes // self.bytes_total}%)" if self.bytes_total else ""
        return (f"{self.messages}/{self.messages_total} messages, "
                f"{human_size(self.bytes)}/{human_size(self.bytes_total)}{pct}")


def phase_of(change: Change) -> str:
    """The phase of apply ``change`` belongs to."""
    return "mail import" if change.kind in MAIL_KINDS else "accounts and routing"


def duration(seconds: float) -> str:
    """``1:02:03`` / ``2:03``."""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@dataclass
class MailCounter:
    """Mail import totals, overall and per user, with rate and ETA."""

    clock: Callable[[], float] = time.monotonic
    overall: Tally = field(default_factory=Tally)
    users: dict[str, Tally] = field(default_factory=dict)
    started: float | None = None
    #: per mailbox change: what the plan expected, and what was journaled so far
    boxes: dict[str, Tally] = field(default_factory=dict)
    #: when each user's import began (its rate is measured from there)
    user_started: dict[str, float] = field(default_factory=dict)

    def plan(self, change: Change, messages: int, size: int) -> None:
        """Add one planned mailbox to the totals."""
        user = self.users.setdefault(user_of(change), Tally())
        for tally in (user, self.overall, self.boxes.setdefault(change.id, Tally())):
            tally.messages_total += messages
            tally.bytes_total += size

    def add(self, change: Change, messages: int, size: int) -> None:
        """Count a journaled batch."""
        if self.started is None:
            self.started = self.clock()
        self.start_user(change)
        user = self.users.setdefault(user_of(change), Tally())
        for tally in (user, self.overall, self.boxes.setdefault(change.id, Tally())):
            tally.messages += messages
            tally.bytes += size

    def settle(self, change: Change) -> None:
        """A mailbox finished: its share of the totals becomes what it imported. The
        plan's figures are what it expected: a first import's are counted on the source
        (its size is the mbox's, From_ lines and bookkeeping headers included), and a
        message found on the target meanwhile is not imported again."""
        box = self.boxes.pop(change.id, None)
        if box is None:
            return
        for tally in (self.users.setdefault(user_of(change), Tally()), self.overall):
            tally.messages_total += box.messages - box.messages_total
            tally.bytes_total += box.bytes - box.bytes_total

    def start(self) -> None:
        """The import begins now (rate is measured from here)."""
        if self.started is None:
            self.started = self.clock()

    def start_user(self, change: Change) -> None:
        """The import of the user of ``change`` begins now (unless it already had)."""
        self.user_started.setdefault(user_of(change), self.clock())

    def rate(self, user: str | None = None) -> float:
        """Bytes per second so far, overall or of ``user`` (``user@domain``)."""
        started = self.started if user is None else self.user_started.get(user)
        if started is None:
            return 0.0
        elapsed = self.clock() - started
        done = self.overall.bytes if user is None else self.users.get(user, Tally()).bytes
        return done / elapsed if elapsed > 0 else 0.0

    def eta(self, user: str | None = None) -> float | None:
        """Seconds left at the current rate, overall or of ``user`` (None until
        something was imported)."""
        rate = self.rate(user)
        if rate <= 0:
            return None
        tally = self.overall if user is None else self.users.get(user, Tally())
        return max(0.0, (tally.bytes_total - tally.bytes) / rate)

    def status(self, user: str | None = None, item: str = "") -> str:
        """One line: done/total, rate, ETA (overall: ``mail: ...``; of ``user``:
        ``user@domain ...``, or ``user@domain FOLDER ...`` with ``item``, the folder being
        imported: the figures are the user's all the same)."""
        eta = self.eta(user)
        tally = self.overall if user is None else self.users.get(user, Tally())
        label = "mail:" if user is None else f"{user} {item}" if item else user
        return (f"{label} {tally.text()}, "
                f"{human_size(int(self.rate(user)))}/s, "
                f"ETA {duration(eta) if eta is not None else '?'}")


class Reporter:
    """What apply tells the operator. The base class reports nothing (``--quiet``)."""

    def __init__(self) -> None:
        self.mail = MailCounter()
        # re-entrant: apply's first signal prints its note from the signal handler, in
        # the thread it interrupted, which may be printing (holding it) at that moment
        self.lock = threading.RLock()
        self.pending: dict[str, int] = {}  # user -> mailboxes not finished yet

    def plan_mail(self, change: Change, messages: int, size: int) -> None:
        """A mailbox the apply will import (before the import starts)."""
        self.mail.plan(change, messages, size)
        self.pending[user_of(change)] = self.pending.get(user_of(change), 0) + 1

    def phase(self, name: str, steps: int) -> None:
        """A phase begins: ``accounts and routing`` or ``mail import``."""

    def step_started(self, change: Change) -> None:
        """A step begins (a user's first mailbox starts the user's rate)."""
        if change.kind == "mailbox":
            with self.lock:
                self.mail.start_user(change)

    def step_done(self, change: Change) -> None:
        """A step finished and is journaled (a mailbox's totals are settled)."""
        if change.kind == "mailbox":
            with self.lock:
                self.mail.settle(change)

    def batch(self, change: Change, messages: int, size: int) -> None:
        """A batch of mail was journaled."""
        with self.lock:
            self.mail.add(change, messages, size)

    def note(self, text: str) -> None:
        """A line for the operator (log path, stop requested, ...)."""

    def close(self) -> None:
        """Stop drawing."""


QuietReporter = Reporter


class PlainReporter(Reporter):
    """Lines only: each finished step, and a mail status every ``interval`` seconds."""

    def __init__(self, stream: TextIO, interval: float | None = None) -> None:
        super().__init__()
        self.stream = stream
        self.interval = interval if interval is not None else float(
            os.environ.get(INTERVAL_ENV, "10"))
        self._last = 0.0
        self._current: dict[str, Change] = {}

    def _print(self, text: str) -> None:
        with self.lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    def phase(self, name: str, steps: int) -> None:
        """Print the phase heading."""
        # counts only where messages are to move (a flags update moves none)
        extra = f"; {self.mail.overall.text()}" \
            if name == "mail import" and self.mail.overall.messages_total else ""
        self._print(f"{name}: {steps} step(s){extra}")
        if name == "mail import":
            self.mail.start()
            self._last = time.monotonic()

    def step_done(self, change: Change) -> None:
        """``  + user a@b: done`` (mailboxes with their counts)."""
        super().step_done(change)
        extra = ""
        if change.kind == "mailbox":
            user = self.mail.users.get(user_of(change))
            extra = f" ({user.text()} for this user)" if user else ""
        self._print(f"  {change.symbol} {change.kind} {escape(change.address)}: done{extra}")

    def batch(self, change: Change, messages: int, size: int) -> None:
        """Count it; print the status when the interval has passed."""
        super().batch(change, messages, size)
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            item = marked(change.item) if change.item else ""
            self._print(f"  {self.mail.status()}; "
                        f"{escape(self.mail.status(user_of(change), item))}")

    def note(self, text: str) -> None:
        """Print it."""
        self._print(escape_lines(text))


class LiveReporter(Reporter):
    """A rich progress display redrawn in place: phase, overall mail, active users (each
    with the folder being imported; the figures are the user's). Each row is fitted to
    the terminal's width (:mod:`mailplan.progress_rows`): the user and the ETA stay on it
    however narrow the terminal is."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import Progress

        from mailplan import progress_rows

        self.rows = progress_rows
        self.console = Console(file=stream, no_color=bool(os.environ.get("NO_COLOR")),
                               highlight=False)
        # one column, the whole row: label, bar and details laid out together
        self.progress = Progress(
            progress_rows.RowColumn(lambda: self.console.width, lambda: self.progress.tasks),
            console=self.console, transient=False, refresh_per_second=4)
        self._phase: int | None = None
        self._overall: int | None = None
        self._users: dict[str, int] = {}
        self.progress.start()

    def phase(self, name: str, steps: int) -> None:
        """A bar for the phase (steps), and for mail to import the overall bytes."""
        if self._phase is not None:
            self.progress.update(self._phase, visible=False)
        self._phase = self.progress.add_task(name, total=steps or None, style="bold",
                                             details=self._steps_details(0, steps))
        self._steps = (0, steps)
        if name == "mail import":
            self.mail.start()
            # the overall row only where messages are to move (a flags update moves
            # none: it would read 0/0 messages; the plain heading leaves them out too)
            if self.mail.overall.messages_total:
                self._overall = self.progress.add_task(
                    "all mail", total=self.mail.overall.bytes_total or None,
                    details=self._mail_details(None), keep=2)

    @staticmethod
    def _steps_details(done: int, total: int) -> tuple[str, ...]:
        return f"{done}/{total} steps", f"{done}/{total}"

    def _mail_details(self, who: str | None) -> list[str]:
        """The details of the overall row (``who`` None) or of a user's."""
        tally = self.mail.overall if who is None else self.mail.users.get(who, Tally())
        eta = self.mail.eta(who)
        full = self.mail.status(who)
        return self.rows.mail_details(
            tally.messages, tally.messages_total, tally.bytes, tally.bytes_total,
            rate=int(self.mail.rate(who)), eta=duration(eta) if eta is not None else "?",
            full=full.removeprefix("mail: " if who is None else who + " "))

    def step_started(self, change: Change) -> None:
        """Show the user's bar when its first mailbox starts, naming the folder being
        imported (a user's mailboxes are imported one after the other)."""
        super().step_started(change)
        if change.kind != "mailbox":
            return
        who = user_of(change)
        item = escape(marked(change.item)) if change.item else ""
        with self.lock:
            if who in self._users:
                self.progress.update(self._users[who], item=item)
            else:
                tally = self.mail.users.get(who, Tally())
                self._users[who] = self.progress.add_task(
                    escape(who), total=tally.bytes_total or None, indent="  ",
                    address=True, item=item, keep=2, details=self._mail_details(who))

    def step_done(self, change: Change) -> None:
        """Print the finished step above the bars; advance the phase."""
        super().step_done(change)
        if change.kind == "mailbox" and self._overall is not None:
            self.progress.update(self._overall, total=self.mail.overall.bytes_total or None,
                                 details=self._mail_details(None))
        done, total = self._steps
        self._steps = (done + 1, total)
        if self._phase is not None:
            self.progress.update(self._phase, completed=done + 1,
                                 details=self._steps_details(done + 1, total))
        base = f"{change.user}@{change.domain}" if change.user else change.domain
        line = self.rows.fit_step(f"  {change.symbol} {change.kind} ", escape(base),
                                  escape(marked(change.item)) if change.item else "",
                                  ": done", self.console.width)
        self.progress.console.print(
            line, markup=False, style={"+": "green", "~": "yellow", "-": "red"}.get(
                change.symbol))
        if change.kind == "mailbox":
            who = user_of(change)
            with self.lock:
                self.pending[who] = self.pending.get(who, 1) - 1
                if who in self._users and self.pending[who] <= 0:
                    self.progress.update(self._users[who], visible=False)

    def batch(self, change: Change, messages: int, size: int) -> None:
        """Advance the user's bar and the overall one."""
        super().batch(change, messages, size)
        who = user_of(change)
        tally, overall = self.mail.users[who], self.mail.overall
        if who in self._users:
            self.progress.update(self._users[who], completed=tally.bytes,
                                 details=self._mail_details(who))
        if self._overall is not None:
            self.progress.update(self._overall, completed=overall.bytes,
                                 details=self._mail_details(None))

    def note(self, text: str) -> None:
        """Print above the bars."""
        self.progress.console.print(escape_lines(text), markup=False)

    def close(self) -> None:
        """Draw the last state and stop."""
        self.progress.stop()


def reporter_for(stream: TextIO | None = None, *, quiet: bool = False) -> Reporter:
    """Live on a terminal, plain lines otherwise, nothing with ``quiet``."""
    stream = stream or sys.stdout
    if quiet:
        return QuietReporter()
    if stream.isatty() and os.environ.get("TERM") != "dumb":
        return LiveReporter(stream)
    return PlainReporter(stream)
