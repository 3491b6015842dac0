"""Watching one apply: the log file, the progress display and a clean Ctrl-C.

:class:`ApplyWatch` is what ``mailplan apply`` wraps around planning and applying. It
opens the apply log (path printed at the start and the end), puts its observer on every
connection so each remote command is logged, feeds the progress reporter from
``apply_plan``'s ``on_step``, ``on_mail`` and ``on_note`` callbacks, and counts the
summary.

Ctrl-C: until the first change, the run stops at once (:mod:`mailplan.interrupt`):
nothing was changed, and the log says so. From then on the first SIGINT only asks to
stop. The running step finishes (a mailbox import stops after its current batch is
durable and journaled), then :class:`StopRequested` (a ``KeyboardInterrupt``, so
:mod:`mailplan.apply` records the apply as interrupted) ends the run and the operator is
told what was done and how to resume. A second Ctrl-C stops at once: the connections
are ended, and with them the remote commands, a hung one included; the journal still
holds every finished step.

SIGTERM (a shutdown, ``kill``, a supervisor) and SIGHUP (the terminal or SSH session went
away) ask to stop as the first Ctrl-C does, a SIGTERM after that stops at once (SIGHUP's
/dev/null and ``nohup``: :mod:`mailplan.interrupt`). Standard output or error going away
(``apply ... 2>&1 | head``: :mod:`mailplan.output`) stops at the next safe point too, the
log saying why. The exit status is 130 after Ctrl-C, 128 + the signal's number after
SIGTERM (143) or SIGHUP (129), 1 after an output went away. The summary of a run that
ended so (:mod:`mailplan.apply_end`) counts the steps begun as not finished, except a
mailbox the writer refused before the stop (told to :meth:`ApplyWatch.on_refused` as it
happens, also in an attempt a retry followed): failed, with its refusal, which the
closing error names too.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from mailplan.apply_end import Cancelled, Refusals, outcome
from mailplan.applylog import ApplyLog, Summary, default_log_path, set_back_text
from mailplan.connectors.base import Connector
from mailplan.errors import MailboxRefused, MailplanError, StalePlanError
from mailplan.hosts import connect
from mailplan.interrupt import Interrupted, SignalStop, by_signal, signal_name
from mailplan.output import GuardedOutput, first_lost
from mailplan.plan import Change, Plan
from mailplan.progress import Reporter, phase_of, reporter_for
from mailplan.prune_select import left_out_text, shown
from mailplan.render import problem_line
from mailplan.spec import Spec
from mailplan.target_lock import Holder, lock_target
from mailplan.text import escape

if TYPE_CHECKING:
    from mailplan.apply import ApplyResult
    from mailplan.engine import Planned


class StopRequested(KeyboardInterrupt):
    """Ctrl-C was pressed; raised at the next safe point."""


#: apply's exit status when all it could do is done but the plan has problems (as verify's)
EXIT_NOT_MIGRATED = 3


class ApplyWatch:
    """Log, progress and Ctrl-C handling around one apply (a context manager)."""

    def __init__(self, state_path: Path, *, resume: str, signals: SignalStop,
                 log_path: Path | None = None, quiet: bool = False,
                 stream: TextIO | None = None, errors: TextIO | None = None) -> None:
        self.state_path = state_path
        #: the command's signal handlers: they stop at once until :meth:`begin`
        self.signals = signals
        self.resume = resume
        #: writes never raise: stdout or stderr going away stops the apply (:meth:`_lost`)
        self.stream = GuardedOutput(stream or sys.stdout, lambda why: self._lost("output", why))
        self.errors = GuardedOutput(errors or sys.stderr, lambda why: self._lost("error", why))
        self.quiet = quiet
        self.log = ApplyLog(log_path, make_dir=False) if log_path is not None \
            else ApplyLog(default_log_path(state_path))
        self.reporter: Reporter = Reporter()
        self.summary = Summary()
        self.refusals = Refusals()  # the mailboxes the writer refused (on_refused)
        self.connectors: list[Connector] = []
        self.stop = False
        self._began = False
        self._detached: list[Reporter] = []
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._running: dict[str, Change] = {}
        self._planned = 0
        self._phase: str | None = None
        self._todo_counts: dict[str, int] = {}
        #: the plan's --prune-only, and the deletions it left out (:meth:`planned`)
        self._selection: tuple[str, ...] | None = None
        self._left_out: list[Change] = []
        self._set_back = ""  # what --quiet says of the passwords the plan sets back
        self._echo(f"Logging this apply to {self.log.path}")

    def _echo(self, text: str) -> None:
        if not self.quiet:
            self.stream.write(text + "\n")
            self.stream.flush()

    def __enter__(self) -> ApplyWatch:
        self.signals.on_hangup(self._terminal_gone)
        return self

    def connect(self, spec: Spec, holder: Holder | None = None) -> dict[str, Connector]:
        """The spec's source and target connections, each logging to this apply's log;
        with ``holder``, the target's apply lock taken for it on the target's connection
        (held until that connection closes: :mod:`mailplan.target_lock`; one taken over
        from an abandoned holder is said)."""
        names = sorted({spec.data["source"]["host"], spec.data["target"]["host"]})
        out = {}
        for name in names:
            conn = connect(name, spec.data["hosts"][name])
            conn.observer = self.log.observer(name)
            self.connectors.append(conn)
            out[name] = conn
        self.log.header(spec=spec.path.resolve(), state=self.state_path.resolve(),
                        source=spec.data["source"]["host"],
                        target=spec.data["target"]["host"])
        if holder is not None:
            target = spec.data["target"]
            path, pid = lock_target(out[target["host"]],
                                    target.get("vpopmail_dir", "/home/vpopmail"), holder,
                                    notice=self._notice)
            self.log.write(f"apply lock taken on {target['host']}: {escape(path)} (held by "
                           f"pid {pid} there until this apply ends)")
        return out

    def _notice(self, text: str) -> None:
        """Say (and log) one line (a lock taken over, a retry's reconnect: nothing secret
        in it, escaped); during the apply above the progress display."""
        line = text[:1].upper() + text[1:] + "."
        self.log.write(line)
        if self._began:
            self.reporter.note(line)
        else:
            self._echo(line)

    def planned(self, plan: Plan) -> None:
        """The plan's problems (not migrated) in the log and summary (a retry's re-plan's
        replace them), its warnings in the log; its --prune-only selection, left-out."""
        self.summary.not_migrated = len(plan.problems)
        self._selection, self._left_out = plan.prune_only, list(plan.left_out)
        self._set_back = set_back_text(plan, self.log.path)
        if plan.prune_only is not None:
            self.summary.skipped_why = f"deletions not selected by {shown(plan.prune_only)}"
        for listed, what in ((plan.problems, "problem(s), not migrated"),
                             (plan.warnings, "warning(s), migrated all the same")):
            if listed:
                self.log.write(f"plan {escape(plan.plan_id)}: {len(listed)} {what}:")
            for p in listed:
                self.log.write(f"  ! {problem_line(p)}")

    def begin(self, planned: Planned, todo: list[Change], target: str) -> None:
        """Start applying: reporter, totals; a signal now stops at the next safe point."""
        if self.stream.lost:  # the plan was printed to nobody: nothing is changed
            raise MailplanError(f"standard output was closed ({self.stream.lost}) before "
                                "the first change: nothing was changed", hint="run apply "
                                "again with its output to a terminal or a file, or -q")
        self._began = True
        self._planned = len(todo)
        for change in todo:
            phase = phase_of(change)
            self._todo_counts[phase] = self._todo_counts.get(phase, 0) + 1
        self.log.write(f"plan {planned.plan.plan_id}: {len(todo)} change(s) to apply")
        self._echo(f"Applying {len(todo)} change(s) to {target}; state: {self.state_path}")
        self._gone(len(planned.gone))
        self.reporter = reporter_for(self.stream, quiet=self.quiet)
        for change in todo:
            job = planned.mail_jobs.get(change.id)
            if change.kind == "mailbox" and job is not None:
                self.reporter.plan_mail(change, job.count, job.size)
        self.signals.at_safe_points(self._stop_requested, self._stop_now)

    def _stop_requested(self, signum: int) -> None:
        """From the signal handler: the first signal of the apply."""
        self.stop = True
        self._log_later(f"{signal_name(signum)}: stopping at the next safe point")
        again = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        self.reporter.note(f"Stopping after the current step ({again} again to stop at "
                           "once; finished steps stay recorded)...")

    def _lost(self, name: str, reason: str) -> None:
        """From any write to stdout or stderr (a signal handler's included): stop at the
        next safe point; the log, and the error on stderr if it is there, say why."""
        self.stop = True
        self._log_later(f"standard {name} closed ({reason}): stopping at the next safe point")

    def _stop_now(self, signum: int) -> None:
        """From the signal handler: SIGINT or SIGTERM again."""
        self._log_later(f"{signal_name(signum)} again: stopping at once")

    def _log_later(self, text: str) -> None:
        """From a signal handler (which may hold the log's lock): logged at the next safe point."""
        self._pending.append(f"{text} (at {time.strftime('%H:%M:%S')})")

    def _flush_pending(self) -> None:
        while self._pending:
            self.log.write(self._pending.pop(0))

    def _terminal_gone(self) -> None:
        """After SIGHUP: write nothing more to the terminal (the log still gets it all)."""
        if self.quiet and self._detached:
            return
        self.quiet = True  # the output points at /dev/null now (SignalStop)
        # the old reporter may be mid-draw: it is closed (into /dev/null) at the end
        self._detached.append(self.reporter)
        self.reporter = Reporter()

    def _check(self) -> None:
        self._flush_pending()
        if self.stop:
            raise StopRequested

    def pause(self, seconds: float) -> None:
        """A retry's wait (nothing in flight: a safe point), ended by a stop request."""
        end = time.monotonic() + seconds
        while not self.stop and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))  # a signal's handler runs within this
        self._check()

    def on_step(self, change: Change, phase: str) -> None:
        """``apply_plan``'s per step callback."""
        if phase == "start":
            self._check()
            phase_name = phase_of(change)
            with self._lock:
                first = phase_name != self._phase
                self._phase = phase_name
                self._running[change.id] = change
            if first:
                self.reporter.phase(phase_name, self._todo_counts.get(phase_name, 0))
            self.log.write(f"step start: {change.symbol} {change.kind} "
                           f"{escape(change.address)}")
            self.reporter.step_started(change)
        elif phase == "done":
            self.refusals.done(change.id)  # refused by an attempt a retry followed
            with self._lock:
                self._running.pop(change.id, None)
                self.summary.count(change)
            self.log.write(f"step done: {change.symbol} {change.kind} "
                           f"{escape(change.address)}")
            self.reporter.step_done(change)

    def on_note(self, change: Change, text: str) -> None:
        """``apply_plan``'s callback for what a finished step says for the operator."""
        # its keywords come from a message's header, which a sender may have written
        line = f"{change.symbol} {change.kind} {escape(change.address)}: {escape(text)}"
        with self._lock:
            self.summary.noted += 1
        self.log.write(f"step note: ! {line}")
        self.reporter.note(f"  ! {line}")

    def on_refused(self, change: Change, exc: MailboxRefused) -> None:
        """``apply_plan``'s callback for a mailbox the writer refused (the apply goes on)."""
        self.refusals.add(change, exc)
        self.log.write(f"step refused: {change.symbol} {change.kind} "
                       f"{escape(change.address)}: {escape(exc.reason)}")

    def on_mail(self, change: Change, messages: int, size: int) -> None:
        """``apply_plan``'s per durable mail batch callback (a safe point)."""
        with self._lock:
            self.summary.imported_messages += messages
            self.summary.imported_bytes += size
        self.log.write(f"mail: {messages} message(s), {size} bytes durable and journaled "
                       f"in {escape(change.address)}")
        self.reporter.batch(change, messages, size)
        self._check()

    def _gone(self, count: int) -> None:
        """Say (and log) that the apply drops the records of ``count`` objects removed by
        hand (:mod:`mailplan.records`)."""
        if count:
            text = (f"Dropping mailplan's records of {count} object(s) removed by hand "
                    "(state only; plan -v names them): --prune leaves alone what is made "
                    "again under those names.")
            self.log.write(text)
            self._echo(text)

    def nothing(self, settled: int = 0, skipped: int = 0, gone: int = 0) -> None:
        """Nothing to apply (``settled``: checkpoints recorded in the state only;
        ``skipped``: deletions left out, without --prune; ``gone``: records dropped)."""
        self.summary.result = "nothing to apply"
        self.summary.skipped = skipped
        why = "without --prune" if self._selection is None else \
            f"(not selected by {shown(self._selection)})"
        self._echo("Nothing to apply." if not skipped else
                   f"Nothing to apply: the plan's {skipped} deletion(s) are left out {why}.")
        if settled:
            self._echo(f"Recorded that {settled} mailbox(es) are complete on the target "
                       "(state only): later plans read only the mail that arrives after.")
        self._gone(gone)
        self._not_migrated()

    def _not_migrated(self) -> None:
        """Say, last, that the plan's problems stay (apply exits so); with --quiet on
        stderr, which cron mails."""
        if self.summary.not_migrated:
            where = f"in the log {self.log.path}" if self.quiet else "with it, and in the log"
            text = (f"Not migrated: {self.summary.not_migrated} problem(s) of the plan (listed "
                    f"{where}); exit status {EXIT_NOT_MIGRATED}.")
            if self.quiet:
                self.errors.write(text + "\n")
            else:
                self._echo(text)

    def finish(self, result: ApplyResult) -> None:
        """The apply completed."""
        self.reporter.close()
        skipped = result.skipped_deletes or self._left_out
        self.summary.skipped = len(skipped)
        self._echo(f"Apply complete: {len(result.done)} change(s) made.")
        if self.quiet and self._set_back:  # users' own passwords undone: cron mails it
            self.errors.write(self._set_back)
        if skipped:
            self._echo(left_out_text(skipped, self._selection))
        self._not_migrated()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._close_all()
        done = (self.summary.created + self.summary.changed + self.summary.deleted
                + self.summary.mailboxes)
        interrupted = exc is not None and isinstance(exc, KeyboardInterrupt)
        # not confirmed, a saved plan that no longer applies, or stopped or failed before
        # the first change (a spec's secret not set, a host not reached): nothing was
        # started, and the error says so (a summary of "failed" steps, or a command to
        # resume, would only mislead)
        not_started = isinstance(exc, (Cancelled, StalePlanError)) or \
            (exc is not None and not self._began)
        if exc is not None:
            outcome(self.summary, exc, planned=self._planned, done=done,
                    running=list(self._running.values()), interrupted=interrupted,
                    not_started=not_started, signum=self._stopped_by(),
                    refused=self.refusals.failures())
        self._flush_pending()
        self.log.summary(self.summary)
        if exc is not None and not not_started:
            self.log.write(f"resume with: {self.resume}")
        self.log.close()
        if exc is not None and not not_started:
            self._echo("Summary:\n" + "\n".join(f"  {line}" for line in self.summary.lines()))
            if isinstance(exc, MailplanError) and not interrupted:  # a failed step
                self.refusals.name_in(exc)
                exc.hint = (f"{exc.hint}; then " if exc.hint else "fix the cause, then ") + \
                    f"resume with: {self.resume}"
        self._echo(f"Log: {self.log.path}" + (
            f" (incomplete: it could not be written past a point: {self.log.failed})"
            if self.log.failed else ""))
        lost = first_lost(output=self.stream, error=self.errors)
        refused = self.refusals.text()  # met before the stop
        if interrupted and self._began and self.signals.signum is None and lost:
            raise MailplanError(f"apply stopped after {done} of {self._planned} change(s): "
                                f"its {lost}; everything finished is recorded in "
                                f"{self.state_path}{refused}",
                                hint=f"resume with: {self.resume}") from None
        if interrupted and self._began:
            raise Interrupted(f"apply interrupted{by_signal(self._stopped_by())} after "
                              f"{done} of {self._planned} change(s); everything finished is "
                              f"recorded in {self.state_path}{refused}",
                              signum=self._stopped_by(),
                              hint=f"resume with: {self.resume}") from None
        # interrupted before the first change, the KeyboardInterrupt goes on: the command
        # says that nothing was changed (interrupt.stops_at_once)

    def _close_all(self) -> None:
        """Close the progress reporters and the connections (aborted when stopping at
        once), whatever ended the apply."""
        for reporter in (*self._detached, self.reporter):
            with contextlib.suppress(OSError):
                reporter.close()
        for conn in self.connectors:
            conn.observer = None
            # make_plan leaves connections it was given open on errors; stopping at
            # once waits for none of their commands
            if self.signals.at_once:
                conn.abort()
            else:
                conn.close()

    def _stopped_by(self) -> int:
        """The signal that first asked to stop (a KeyboardInterrupt without one: SIGINT)."""
        return self.signals.signum or signal.SIGINT
