"""The one exception root of mailplan and its context-carrying subclasses.

Library code raises these; only the CLI turns them into a message and an exit code.
Every message says what is wrong, where (file and line, or host and step), and what to
do next. Secrets never go into an exception: callers pass names, not values.
"""

from __future__ import annotations

#: the hint of a source file mailplan may not read
READ_ACCESS_HINT = ("mailplan's user on that host (the SSH login, or who runs mailplan for a "
                    "local host) needs read access: root, or sudo: true on the host")


class MailplanError(Exception):
    """Root of every error mailplan reports to a user."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class SpecError(MailplanError):
    """The migration spec is malformed or inconsistent."""

    def __init__(
        self,
        message: str,
        *,
        file: str,
        line: int | None = None,
        column: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = file
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        text = f"{where}: {message}" if key is None else f"{where}: {key}: {message}"
        super().__init__(text, hint=hint)
        self.file, self.line, self.column, self.key = file, line, column, key


class SourceDataError(MailplanError):
    """A file read from the source host (passwd, shadow, mbox, aliases) is malformed."""

    def __init__(self, message: str, *, host: str, path: str, line: int | None = None) -> None:
        where = f"{host}:{path}" + (f":{line}" if line is not None else "")
        super().__init__(f"{where}: {message}")
        self.host, self.path, self.line = host, path, line


class HostError(MailplanError):
    """A host could not be reached, refused us, or answered something we cannot use."""

    def __init__(self, message: str, *, host: str, step: str | None = None,
                 hint: str | None = None) -> None:
        where = f"host {host}" + (f", step {step}" if step else "")
        super().__init__(f"{where}: {message}", hint=hint)
        self.host, self.step = host, step


class ConnectionLost(HostError):
    """The connection to a host broke or could not be made: worth a bounded retry."""


class SourceChanged(HostError):
    """A source mailbox changed while it was being read: re-plan and read it again."""


class HostKeyError(HostError):
    """The SSH host key is unknown or changed, and the user did not opt in."""


class CommandTimeout(HostError):
    """A remote command did not finish within its host's ``command_timeout``: mailplan
    stopped it on the host and gave up (not retried: a hung tool would hang again)."""

    def __init__(self, command: str, seconds: int, *, host: str,
                 step: str | None = None) -> None:
        super().__init__(
            f"{command} did not finish within {seconds} s; mailplan stopped it on the host",
            host=host, step=step,
            hint="find out what blocks it on the host (a lock, a hung NFS mount, a full "
            "disk); if it is only slow, raise command_timeout for this host in the spec. "
            "Then run apply again: finished steps are recorded and not repeated")
        self.command, self.seconds = command, seconds

    def at(self, step: str) -> CommandTimeout:
        """The same timeout, naming the step it happened in."""
        return CommandTimeout(self.command, self.seconds, host=self.host, step=step)


class TargetLocked(HostError):
    """Another apply holds the target's apply lock (:mod:`mailplan.target_lock`): this
    one stops before it changes anything (not retried: that apply may run for hours)."""


class QueueLocked(HostError):
    """Another queue command that changes the queue holds its queue lock
    (:mod:`mailplan.queue.lock`): this one stops before it stops qmail-send or changes
    anything."""


class StepFailed(HostError):
    """A change was attempted on the target and did not take effect."""

    #: the step's object may be on the target all the same, made by the step (a domain
    #: vadddomain began, a user vadduser made whose quota did not take): its claim is
    #: kept, and the next apply records it as mailplan's if it finds it there
    made = False


class MailboxRefused(StepFailed):
    """The target's writer refused one mailbox (its Maildir or folder is another owner's,
    or of a mode its owner may not write: restored by hand as root): that mailbox fails,
    and the apply goes on with the others (:class:`MailboxesRefused` at its end)."""

    def __init__(self, message: str, *, host: str, step: str | None = None) -> None:
        super().__init__(message, host=host, step=step)
        self.reason = message  # without the host and step, for MailboxesRefused's list


class MailboxesRefused(StepFailed):
    """The mailboxes an apply could not import for :class:`MailboxRefused`'s reasons,
    said once the others are done; ``failures``: change id -> that mailbox's error."""

    def __init__(self, refused: list[tuple[str, str, MailboxRefused]], *, host: str) -> None:
        lines = "\n".join(f"  {address}: {exc.reason}" for _id, address, exc in refused)
        super().__init__(f"{len(refused)} mailbox(es) not imported (the apply went on with "
                         f"the others):\n{lines}", host=host)
        self.failures = {change_id: exc for change_id, _a, exc in refused}


class StateError(MailplanError):
    """The state file is locked, corrupt, of an unknown version, or does not match."""


class StalePlanError(MailplanError):
    """A saved plan no longer matches the state file or the target."""


class UnsafeArgument(MailplanError, ValueError):
    """A command argument holds a NUL byte, which no program can receive.

    Names, addresses and comments are checked when the plan is made; this is the last
    guard, so that such text never reaches a host (nor a traceback the user). The
    argument itself is never shown: it may be a secret.
    """
