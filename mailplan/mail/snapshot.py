"""Read a source mailbox up to the size the plan saw, and prove the read was not torn.

The old server keeps working while mailplan reads it: new mail is appended to a spool,
and a mail reader may rewrite it (deleting messages) in place. A plain ``tail -c`` to
the end of the file could then end inside a message being appended, or splice the
start of one version of the file to the rest of another. This stream therefore reads
exactly ``[start, end)`` — ``end`` being the file size the plan listed, so mail that
arrives later is left for the next run — and, when the read reaches its end and
*before* returning end-of-file to the mbox reader (so that the last message is never
finished, sent or journaled first), checks with one more read-only command that:

* all ``end - start`` bytes arrived and the command succeeded (else the connection
  dropped, :class:`~mailplan.errors.ConnectionLost`, or the file shrank);
* the first and the last 4 KiB read are still what the file holds there (a rewrite
  shifts them), and so are all the bytes read since the previous check (and the 4 KiB
  before them): their SHA-1 on the source (``sha1sum``) is that of the bytes read;
* the file ends at ``end`` or continues with a ``From `` separator (possibly after the
  blank line mail.local writes), so ``end`` is a message boundary, not the middle of a
  message being appended.

Any other outcome raises :class:`~mailplan.errors.SourceChanged`: apply stops before the
affected message, and a re-plan (which the retry logic does) reads the mailbox again.
The same check runs before every sync batch of a long read
(:meth:`SnapshotStream.checkpoint`), so no batch holding a message spliced from two
versions of a rewritten file is ever made visible. The windows alone would not prove
that: a mail reader (c-client, mutt) rewrites the file in place from the first message
it deleted or changed the flags of, faster than mailplan reads it, so it may overtake
the read inside a batch; the read then holds the old file up to that point and the new
one after it (one message spliced from two), while both windows are the new file's once
the rewrite is done. The bytes between are compared too, by their digest, each byte once (the source
hashes them again, mostly from its page cache); an append leaves them as they were. The
digest is SHA-1, not the SHA-256 of identities and windows: it guards against a race,
not an adversary, and it costs the old server less: the checks of a 300 MB read took
1.4-1.7 s of the source's CPU with ``sha1sum``, 2.2-2.3 s with ``sha256sum`` (coreutils
9.1, no SHA instructions used; the read itself 0.2 s).
A file nothing wrote to since the read began needs no digest: apply's listing of the
mailboxes (its re-plan's, which precedes the read) printed each file's ctime (no
program can set a ctime back, unlike an mtime), and a check that finds it unchanged
skips the digest: unchanged since the listing is unchanged since the read began. A
ctime less than :data:`CTIME_SETTLED` seconds old by the source's clock at the listing
is not trusted (a write within one tick of the kernel's coarse clock would leave it as
it was). A mailbox not from a listing (made by hand) has its ctime read by one more
command before the read starts. The ctime is compared as ``find -printf %C@`` prints it
(seconds and nanoseconds) both times. So only a mailbox written to since it was listed,
a spool taking deliveries, costs the old server a second pass over its bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable

from mailplan.connectors.base import CommandResult, Connector
from mailplan.errors import ConnectionLost, SourceChanged, StepFailed
from mailplan.facts.noatime import read_tools
from mailplan.facts.source_mailbox import ctime_settled
from mailplan.mail.windows import (
    NOT_A_FILE,
    NOT_LISTED,
    OPENED,
    PEEK,
    WINDOW,
    Windows,
    digest,
    grown_head,
    guarded,
    past_line_ends,
    regular_only,
    slice_command,
)
from mailplan.shell import join

#: how ``sha1sum`` prints the digest of its standard input
_HASH_LINE = re.compile(rb"([0-9a-f]{40})  -\n")
#: what a check prints instead when the file's ctime is still the one it had before the
#: read began: nothing has written to it since, so the bytes read are the file's
_UNCHANGED = b"unchanged\n"
#: prints the opened file's ctime as the listing's find printed it (``%C@``, see
#: :data:`mailplan.facts.mailboxes._FILE_FORMAT`): equal text, unchanged ctime, to the
#: nanosecond (a file changed less than CTIME_SETTLED seconds before it was listed, by the
#: source's clock, is hashed at every check all the same: a write within the same tick of
#: the kernel's coarse clock would leave its ctime as it was)
_CTIME = f"LC_ALL=C find -H {OPENED} -maxdepth 0 -printf %C@"


class SnapshotStream:
    """A readable ``[start, end)`` of ``path`` on ``conn``; see the module docstring."""

    def __init__(self, conn: Connector, path: str, start: int, end: int, *, step: str,
                 noatime: bool | None = None,
                 run: Callable[[str], CommandResult] | None = None,
                 prior: tuple[str, str] | None = None, prior_at: int | None = None,
                 ident: tuple[int, int] | None = None,
                 ctime: tuple[str, bool] | None = None) -> None:
        """``noatime``: read with GNU dd, leaving the file's access time (None: as the
        host allows, :func:`mailplan.facts.noatime.read_tools`). ``prior``: for a read
        from a checkpoint, its digests of the file's first window and of the window
        before ``start``; every check also proves the file still holds them, so a
        mailbox rewritten after the plan looked (a message before ``start`` deleted) is
        never read from an offset that no longer means what the checkpoint says.
        ``prior_at``: where that checkpoint is, when not at ``start`` (a whole read
        that ends messages where the reads before it ended, as the checkpoint records:
        those offsets mean that only in the file it describes). ``ident``: the device
        and inode the listing found; every command then reads the file it opened only
        if it is that one (:func:`mailplan.mail.windows.guarded`). ``ctime``: with
        ``ident``, the file's ctime as the listing printed it and whether it was settled
        then (:attr:`~mailplan.facts.source_mailbox.SourceMailbox.listed_ctime`); None:
        read here, by one more command, before the read starts."""
        self.conn, self.path, self.start, self.end, self.step = conn, path, start, end, step
        self.prior_at = start if prior_at is None else prior_at
        self.prior = prior if self.prior_at else None
        self.ident = ident
        #: runs the read-only checks (default: a command of their own on ``conn``; apply
        #: passes a long-lived source shell, so a check costs no shell start-up)
        self._run = run or conn.run
        self._noatime = read_tools(conn).dd if noatime is None else noatime
        #: the file's ctime (as _CTIME prints it) before the read began, when it had not
        #: changed for CTIME_SETTLED seconds: a check that finds it still so skips the
        #: digest (a read by name, a plan's, has none)
        self._ctime = None if not ident else self._settled_ctime() if ctime is None \
            else ctime[0] if ctime[1] else None
        self._proc = conn.start_stream(self._reading(self._slice(start, end - start)))
        self._proc.close_stdin()
        self.seen = Windows(self._proc)  #: the size and the first and last 4 KiB read
        #: where the bytes not yet proven by a check start (the 4 KiB before the last
        #: check's position), and their running digest
        self._region_from = start
        self._region = hashlib.sha1()
        self._result: CommandResult | None = None
        self._ended = False  # the process was waited for or killed

    def read(self, size: int = 65536) -> bytes:
        """Up to ``size`` bytes; ``b''`` only once the read is proven whole."""
        if self._result is not None:
            return b""
        try:
            chunk = self.seen.read(size)
        except OSError as exc:
            raise ConnectionLost(f"connection lost while reading {self.path}: {exc}",
                                 host=self.conn.name, step=self.step) from None
        if chunk:
            self._region.update(chunk)
            return chunk
        self._finish()
        return b""

    def _finish(self) -> None:
        self._ended = True
        try:
            res = self._proc.wait()
        except OSError as exc:
            raise ConnectionLost(f"connection lost while reading {self.path}: {exc}",
                                 host=self.conn.name, step=self.step) from None
        want, count = self.end - self.start, self.seen.size
        if res.returncode == NOT_LISTED:
            raise SourceChanged(f"{self.path} is no longer the file the plan listed (it "
                                "was replaced, or made a link)", host=self.conn.name,
                                step=self.step, hint="run apply again: the mailboxes are "
                                "listed afresh")
        if res.returncode == NOT_A_FILE:
            raise SourceChanged(f"{self.path} is no longer a regular file (it was replaced "
                                "since the plan listed it)", host=self.conn.name,
                                step=self.step, hint="run apply again: the mailboxes are "
                                "listed afresh")
        if res.returncode != 0 and count < want:
            raise ConnectionLost(f"reading {self.path} stopped after {count} of {want} "
                                 f"bytes (exit {res.returncode})", host=self.conn.name,
                                 step=self.step)
        if count != want:
            # emptied or cut before the read began (a mail reader on the old server
            # between the plan and this read): the part imported earlier changed, which
            # is what to say, not that the file shrank under the read
            self.check_prior()
            raise SourceChanged(f"{self.path} shrank while it was read ({count} of "
                                f"{want} bytes)", host=self.conn.name, step=self.step,
                                hint="run apply again: the mailbox is read afresh")
        after = past_line_ends(self._check_windows(self._window(), self._region_taken(),
                                                   f"; {self._slice(self.end, PEEK)}"))
        # what may follow a boundary: nothing yet, the line ends before the next From_
        # line (LF or CRLF, maybe still arriving), or that From_ line
        if after not in (b"", b"\r") and not after.startswith(b"From "):
            raise SourceChanged(f"a message was being appended to {self.path} while it was "
                                "read", host=self.conn.name, step=self.step,
                                hint="run apply again: the new mail is read then")
        self._result = res

    def checkpoint(self) -> Callable[[], None] | None:
        """The check to pass before the messages read so far may become visible (a sync
        batch): the file must still hold the first and the latest 4 KiB read so far
        where they were read. A reader that rewrites the spool in place (deleting
        messages) shifts them, so a message spliced from two versions of the file is
        never made durable; the check raises :class:`~mailplan.errors.SourceChanged` and
        a re-plan reads the mailbox again. The windows are taken now, so the check may
        run on another thread while the read goes on (it then covers at least the
        messages read so far)."""
        if not self.seen.size or self._result is not None:
            return None
        window, region = self._window(), self._region_taken()

        def check() -> None:
            self._check_windows(window, region)
        return check

    def _settled_ctime(self) -> str | None:
        """The file's ctime as _CTIME prints it, read before the read starts (for a
        mailbox not from a listing), when the source's clock (``date +%s``) is
        CTIME_SETTLED seconds past it or more; None otherwise, or when the command failed
        or printed something else (every check then hashes the bytes read; the read says
        what went wrong)."""
        res = self._run(self._reading(f"{_CTIME}; echo; date +%s"))
        text, _, clock = res.stdout.decode("ascii", "replace").partition("\n")
        return text if ctime_settled(text, clock) and res.returncode == 0 else None

    def _region_taken(self) -> tuple[int, int, str]:
        """Where the bytes read since the last check start, where they end, and their
        digest; the next region starts with the tail window read so far, so a splice
        exactly at a check's position is inside the next one."""
        pos = self.start + self.seen.size
        region = (self._region_from, pos, self._region.hexdigest())
        tail = self.seen.tail
        self._region_from, self._region = pos - len(tail), hashlib.sha1(tail)
        return region

    def checkpoint_digests(self, head: str, before: bytes = b"") -> tuple[str, str] | None:
        """The checkpoint of the whole read, from the bytes it read (never from a second
        look at a file that may have changed since): sha256 of the file's first 4 KiB
        (from ``head``, the earlier checkpoint's, and ``before``, the file's bytes before
        it when it was under 4 KiB: :func:`~mailplan.mail.windows.grown_head`) and of the
        4 KiB before ``end``. A read shorter than that which started after a checkpoint
        takes the bytes before it from the file; had they changed meanwhile, the next
        plan finds the window different and reads the whole mailbox. None until the read
        is proven whole, or when those bytes cannot be read."""
        if self._result is None:
            return None
        head = grown_head(head, before, self.seen.head) if self.start \
            else digest(self.seen.head)
        tail, want = self.seen.tail, min(WINDOW, self.end)
        if len(tail) < want:
            res = self._run(self._reading(self._slice(self.end - want, want - len(tail))))
            if res.returncode != 0 or len(res.stdout) != want - len(tail):
                return None
            tail = res.stdout + tail
        return head, digest(tail)

    def _slice(self, start: int, length: int) -> str:
        """A byte range of the file (run inside ``_reading``)."""
        return slice_command(OPENED if self.ident else self.path, start, length,
                             noatime=self._noatime)

    def _reading(self, body: str) -> str:
        """``body`` run on the file the listing found only (with ``ident``); without
        it, on a regular file only (a named pipe's open would wait for ever)."""
        return guarded(self.path, self.ident, body) if self.ident \
            else regular_only(self.path, body)

    def _window(self) -> tuple[int, bytes, bytes]:
        """Where the read is, and the first and the latest 4 KiB read."""
        return self.start + self.seen.size, self.seen.head, self.seen.tail

    def _check_windows(self, window: tuple[int, bytes, bytes], region: tuple[int, int, str],
                       extra: str = "") -> bytes:
        """Compare the head and the tail window ending at ``pos`` and the bytes of
        ``region`` (by their digest) with the file (and the checkpoint's windows, with
        ``prior``); return the output of ``extra`` (more commands run in the same
        channel)."""
        pos, head, tail = window
        begin, stop, want = region
        before, width = self._prior_command()
        hashing = f"{self._slice(begin, stop - begin)} | sha1sum"
        if self._ctime is not None:  # nothing wrote to the file since the read began
            hashing = (f"if [ \"$({_CTIME})\" = {join([self._ctime])} ]; then "
                       f"echo {_UNCHANGED.decode().strip()}; else {hashing}; fi")
        check = self._run(self._reading(f"{before}{self._slice(self.start, len(head))}; "
                                        f"{self._slice(pos - len(tail), len(tail))}; "
                                        f"{hashing}{extra}"))
        out = self._prior_held(check, width)
        got_head, got_tail = out[:len(head)], out[len(head):len(head) + len(tail)]
        if out.startswith(_UNCHANGED, len(head) + len(tail)) and check.returncode == 0 \
                and (got_head, got_tail) == (head, tail):
            return out[len(head) + len(tail) + len(_UNCHANGED):]
        hashed = _HASH_LINE.match(out, len(head) + len(tail))
        if hashed is None and (got_head, got_tail) == (head, tail):
            # the file held both windows, so sha1sum had bytes to hash: it did not run
            raise StepFailed(f"checking what was read of {self.path} failed on the source "
                             f"(sha1sum of coreutils): {check.stderr_text[:300]}",
                             host=self.conn.name, step=self.step)
        if check.returncode != 0 or got_head != head or got_tail != tail \
                or hashed is None or hashed[1].decode() != want:
            raise SourceChanged(f"{self.path} was rewritten while it was read",
                                host=self.conn.name, step=self.step,
                                hint="run apply again: the mailbox is read afresh")
        return out[hashed.end():]

    def check_prior(self) -> None:
        """Raise :class:`~mailplan.errors.SourceChanged` when the file no longer holds
        the checkpoint's windows (``prior``): what the read found (not an mbox where the
        checkpoint's offset should start a message, say) is then the rewrite's doing."""
        before, width = self._prior_command()
        if width:
            self._prior_held(self._run(self._reading(before)), width)

    def _prior_command(self) -> tuple[str, int]:
        """Commands printing the checkpoint's two windows, and their width (0: none)."""
        width = min(WINDOW, self.prior_at) if self.prior else 0
        if not width:
            return "", 0
        return f"{self._slice(0, width)}; {self._slice(self.prior_at - width, width)}; ", width

    def _prior_held(self, check: CommandResult, width: int) -> bytes:
        """The output after the checkpoint's windows, once they are proven unchanged."""
        out = check.stdout
        if width and (check.returncode != 0 or (digest(out[:width]),
                                                digest(out[width:2 * width])) != self.prior):
            raise SourceChanged(f"{self.path} was rewritten since the plan read it (the "
                                "part imported earlier changed)", host=self.conn.name,
                                step=self.step, hint="run apply again: the mailbox is read "
                                "afresh")
        return out[2 * width:]

    def wait(self) -> CommandResult:
        """The read command's result (after end-of-file)."""
        if self._result is None:
            if not self._ended:
                self.kill()
            return CommandResult(1, b"", b"read not finished")
        return self._result

    def kill(self) -> None:
        """Abandon the read."""
        self._ended = True
        self._proc.kill()

    def close(self) -> None:
        """End the read if it has not ended (an import that failed elsewhere): the
        process is stopped, and the apply log says so."""
        if not self._ended:
            with contextlib.suppress(OSError):  # the error that ended the import counts
                self.kill()

