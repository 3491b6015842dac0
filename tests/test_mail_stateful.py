"""A stateful property test of mailplan's promise for mail, run days before cutover:
``apply`` again and again while the old server's mailboxes change (deliveries, a mail
reader's rewrites, deletions, c-client moving the spool into ~/mbox, saves into folders,
the time that settles a mailbox), with messages deleted on the target, applies killed
part way and the state file lost in between.

The expected target is modelled from README's "Mailboxes" section, not from the code:

- the stored bytes of a message are its header without the bookkeeping headers (Status,
  X-Status, X-Keywords, X-UID, X-IMAP, X-IMAPbase, Content-Length) and its body, without
  the blank line that frames it in the mbox;
- its identity is (sha256 of those bytes, occurrence), the occurrence counted per
  mailbox file (the spool and ~/mbox both feed the INBOX and each number their copies
  from 0: a message held identically in both is imported once);
- every identity an apply finds on the source is on the target once, for good: a
  message deleted on the old server stays, one the user deleted on the target never
  comes back (the ledger remembers it, with or without the state file);
- a spool whose last message lacks its framing blank line may still be being written:
  that message waits for the next run unless the mailbox is settled (untouched for 5
  minutes);
- UW-IMAP's pseudo message at the top of ~/mbox or a folder is skipped;
- a message's flags on the target are the union of those the source gave it (Status R
  -> S, X-Status A -> R, F -> F): never fewer than its copies have now, never one no
  copy had when an apply read it (or a mail client on the new server set);
- a folder file is a Maildir++ folder (``Lists/Python`` -> ``.Lists.Python``), made
  even with nothing to import;
- after each apply a plan says "No changes." and no Maildir's ``tmp/`` holds a file.

Kept small (a few messages of ~100 bytes, so a mailbox fits in the 4 KiB windows a
checkpoint compares) and few examples (about a minute here; ``MAILPLAN_STATEFUL_EXAMPLES``
asks for more, to search longer by hand). Run by CI with
the fixed seed of conftest's profile (``derandomize`` when ``CI`` is set); the point an
apply is killed at follows the machine's speed, so a run explores slightly different
interleavings, which the promise holds for all the same.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)
from migration import kill_apply_when, mailplan
from stateful_apply import AppliedAgain
from test_integration_mail import maildir, one_user, settle

from mailplan.mail.maildir import parse_message_name

#: UW-IMAP's pseudo message, which c-client writes first into a mailbox file it made
PSEUDO = (b"From MAILER-DAEMON Fri Nov  6 00:00:00 2026\nDate: 06 Nov 2026\n"
          b"From: Mail System Internal Data <MAILER-DAEMON@old>\n"
          b"Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n"
          b"X-IMAP: 1234 0000000002\n\nThis text is part of the internal format.\n\n")
FOLDERS = ("Work", "Lists/Python")
INBOX = "INBOX"


@dataclass(frozen=True)
class Mail:
    """A message as delivered: what the target must store is :meth:`stored`."""

    sender: str
    date: str
    subject: str
    body: str  # ends with a line end, its last line not empty

    def stored(self) -> bytes:
        return f"From: {self.sender}\nSubject: {self.subject}\n\n{self.body}".encode()


@dataclass(frozen=True)
class Copy:
    """One message in one mbox file: its bookkeeping headers and whether the blank line
    that ends a finished delivery follows it."""

    mail: Mail
    status: str = ""  # Status: "", "O", "RO"
    xstatus: str | None = None  # X-Status: None (no header), "", "A", "F", "AF"
    uid: int | None = None  # c-client's X-Keywords and X-UID headers
    framed: bool = True

    def raw(self) -> bytes:
        m = self.mail
        marks = f"Status: {self.status}\n" if self.status else ""
        if self.xstatus is not None:
            marks += f"X-Status: {self.xstatus}\n"
        if self.uid is not None:
            marks += f"X-Keywords: \nX-UID: {self.uid}\n"
        text = (f"From {m.sender} {m.date}\nFrom: {m.sender}\nSubject: {m.subject}\n{marks}\n"
                f"{m.body}" + ("\n" if self.framed else ""))
        return text.encode()

    def flags(self) -> set[str]:
        xs = self.xstatus or ""
        return ({"S"} if "R" in self.status else set()) | ({"R"} if "A" in xs else set()) \
            | ({"F"} if "F" in xs else set())


@dataclass
class Box:
    """A source mailbox file as the model holds it."""

    path: Path
    folder: str  # the target folder it feeds
    copies: list[Copy]
    pseudo: bool = False
    settled: bool = False

    def data(self) -> bytes:
        return (PSEUDO if self.pseudo else b"") + b"".join(c.raw() for c in self.copies)

    def read(self) -> list[tuple[tuple[str, int], Copy]]:
        """The identities an apply imports from this file now, with their copies."""
        copies = self.copies
        if copies and not copies[-1].framed and not self.settled:
            copies = copies[:-1]  # perhaps still being written: left for the next run
        seen: Counter[bytes] = Counter()
        out = []
        for c in copies:
            body = c.mail.stored()
            out.append(((hashlib.sha256(body).hexdigest(), seen[body]), c))
            seen[body] += 1
        return out


mails = st.builds(
    Mail,
    sender=st.sampled_from(["a@x.example", "b@y.example"]),
    date=st.sampled_from(["Mon Nov  2 10:00:00 2026", "Tue Nov  3 11:30:05 2026"]),
    subject=st.sampled_from(["hello", "From the start", "report"]),
    body=st.sampled_from(["hello\n", "line\n>From the archive\n", "From here on, no date\n"]))
#: how a mail reader leaves a message: (Status, X-Status)
marks = st.sampled_from([("", None), ("O", None), ("RO", None), ("RO", "A"), ("O", "F"),
                         ("RO", "AF"), ("RO", "")])


class Migration(AppliedAgain):
    """One user, ursula, migrated with local connections into the vpopmail stand-in."""

    @initialize(first=st.lists(mails, min_size=1, max_size=4))
    def setup(self, first: list[Mail]) -> None:
        self.make_work()
        spool, self.target, domain, self.spec = one_user(self.work, b"")
        self.address = f"ursula@{domain}"
        self.home = spool.parent.parent.parent.parent / "home/ursula"
        self.boxes: dict[str, Box] = {"spool": Box(spool, INBOX, [Copy(m) for m in first])}
        self.write("spool", "replace")
        self.delivered = list(first)
        self.uid = 0
        # the model of the target: what applies found, what the user deleted there
        self.seen: dict[str, set[tuple[str, int]]] = {INBOX: set()}
        self.ever_flags: dict[tuple[str, str, int], set[str]] = {}
        self.deleted: dict[str, set[tuple[str, int]]] = {INBOX: set()}
        self.stored: dict[str, bytes] = {}

    def final_apply(self) -> None:
        self.apply(None)

    # -- the old server ------------------------------------------------------------

    def write(self, key: str, how: str, appended: bytes = b"") -> None:
        """Bring the file of box KEY to the model: append, rewrite in place (a mail
        reader, c-client), or replace with a new file (a new inode)."""
        box = self.boxes[key]
        box.path.parent.mkdir(parents=True, exist_ok=True)
        if how == "append":
            with box.path.open("ab") as fh:
                fh.write(appended)
        elif how == "in place" and box.path.exists():
            with box.path.open("r+b") as fh:
                fh.write(box.data())
                fh.truncate()
        else:
            scratch = self.work / "scratch"
            scratch.write_bytes(box.data())
            os.replace(scratch, box.path)
        assert box.path.read_bytes() == box.data()
        box.settled = False
        self.changed = True

    @rule(new=st.lists(st.tuples(mails, st.integers(0, 9)), min_size=1, max_size=3),
          framed=st.booleans())
    def deliver(self, new: list[tuple[Mail, int]], framed: bool) -> None:
        """mail.local appends to the spool (each a message delivered before, when its
        number picks one); the last perhaps without the blank line at its end, as a
        delivery still being written (or a writer that is not mail.local) leaves it."""
        copies = []
        for i, (mail, dup) in enumerate(new):
            if dup < len(self.delivered):
                mail = self.delivered[dup]
            self.delivered.append(mail)
            copies.append(Copy(mail, framed=framed or i < len(new) - 1))
        self.boxes["spool"].copies.extend(copies)
        self.write("spool", "append", b"".join(c.raw() for c in copies))

    def nonempty(self) -> list[str]:
        return sorted(k for k, b in self.boxes.items() if b.copies)

    @precondition(lambda self: self.nonempty())
    @rule(pick=st.integers(0, 9), how=st.lists(marks, min_size=1, max_size=4),
          in_place=st.booleans())
    def read_mail(self, pick: int, how: list[tuple[str, str | None]], in_place: bool) -> None:
        """A mail reader on the old server rewrites a mailbox with the flags the user set
        (or took away), every message framed."""
        key = self.nonempty()[pick % len(self.nonempty())]
        box = self.boxes[key]
        box.copies = [replace(c, status=how[i % len(how)][0], xstatus=how[i % len(how)][1],
                              framed=True) for i, c in enumerate(box.copies)]
        self.write(key, "in place" if in_place else "replace")

    @precondition(lambda self: self.nonempty())
    @rule(pick=st.integers(0, 9), index=st.integers(0, 9), in_place=st.booleans())
    def delete_on_source(self, pick: int, index: int, in_place: bool) -> None:
        """The user deletes a message on the old server: the mailbox is rewritten."""
        key = self.nonempty()[pick % len(self.nonempty())]
        box = self.boxes[key]
        del box.copies[index % len(box.copies)]
        box.copies = [replace(c, framed=True) for c in box.copies]
        self.write(key, "in place" if in_place else "replace")

    def next_uid(self) -> int:
        self.uid += 1
        return self.uid

    @precondition(lambda self: self.boxes["spool"].copies)
    @rule(pseudo=st.booleans())
    def move_to_home_mbox(self, pseudo: bool) -> None:
        """c-client opens the INBOX of a user with ~/mbox: the spool's mail is appended
        there, read, with its bookkeeping headers, and the spool emptied in place."""
        spool = self.boxes["spool"]
        moved = [Copy(c.mail, "RO", c.xstatus or "", self.next_uid()) for c in spool.copies]
        if "mbox" not in self.boxes:
            self.boxes["mbox"] = Box(self.home / "mbox", INBOX, moved, pseudo=pseudo)
            self.write("mbox", "replace")
        else:
            self.boxes["mbox"].copies.extend(moved)
            self.write("mbox", "append", b"".join(c.raw() for c in moved))
        spool.copies = []
        self.write("spool", "in place")

    @rule(folder=st.sampled_from(FOLDERS), mail=mails, pick=st.integers(0, 19),
          pseudo=st.booleans())
    def save_to_folder(self, folder: str, mail: Mail, pick: int, pseudo: bool) -> None:
        """The user saves a message (one delivered earlier, when ``pick`` names one) into
        a folder file under ~/mail, made by the save when it is new."""
        if pick < len(self.delivered):
            mail = self.delivered[pick]
        copy = Copy(mail, "RO", "", self.next_uid())
        if folder not in self.boxes:
            self.boxes[folder] = Box(self.home / "mail" / folder, folder, [copy], pseudo=pseudo)
            self.write(folder, "replace")
        else:
            self.boxes[folder].copies.append(copy)
            self.write(folder, "append", copy.raw())

    @rule()
    def time_passes(self) -> None:
        """Five minutes and more without a write: every mailbox is settled."""
        for box in self.boxes.values():
            settle(box.path)
            box.settled = True
        self.changed = True

    # -- the new server and the operator ---------------------------------------------

    def target_files(self) -> list[tuple[str, str, int, Path]]:
        """(folder, digest, occurrence, path) of every message on the target, in the
        order of their identities (file names hold times and process ids)."""
        out = []
        if not self.applies:  # no user yet
            return out
        root = maildir(self.target, self.address)
        for folder in sorted(self.seen):
            where = root if folder == INBOX else root / ("." + folder.replace("/", "."))
            for sub in ("new", "cur"):
                for f in (where / sub).iterdir():
                    name = parse_message_name(f.name)
                    assert name is not None, f"not a file mailplan wrote: {f}"
                    out.append((folder, name.digest, name.occurrence, f))
        return sorted(out)

    @precondition(lambda self: any(self.seen[f] - self.deleted[f] for f in self.seen))
    @rule(pick=st.integers(0, 19))
    def delete_on_target(self, pick: int) -> None:
        """The user deletes a message on the new server (an IMAP expunge)."""
        files = self.target_files()
        folder, digest, occurrence, path = files[pick % len(files)]
        path.unlink()
        self.deleted[folder].add((digest, occurrence))
        self.changed = True

    @precondition(lambda self: self.applies)
    @rule(pick=st.integers(0, 19), seen=st.booleans())
    def read_on_target(self, pick: int, seen: bool) -> None:
        """A mail client on the new server opens a folder: a message in new/ moves to cur/,
        perhaps read (\\Seen) there."""
        fresh = [f for f in self.target_files() if f[3].parent.name == "new"]
        if not fresh:
            return
        folder, digest, occurrence, path = fresh[pick % len(fresh)]
        path.rename(path.parent.parent / "cur" / (path.name + (":2,S" if seen else ":2,")))
        if seen:
            self.ever_flags[(folder, digest, occurrence)].add("S")
        self.changed = True

    @rule()
    def delete_state_file(self) -> None:
        self.spec.with_name("m.state.json").unlink(missing_ok=True)
        self.changed = True

    @rule(kill=st.none() | st.tuples(st.sampled_from([b"\n", b'"imported"', b'"checkpoint"']),
                                      st.integers(1, 3)))
    def apply(self, kill: tuple[bytes, int] | None) -> None:
        """``mailplan apply``; with KILL = (MARKER, COUNT), kill -9 first once the journal
        holds COUNT MARKERs (lines, batches imported, mailboxes done), or when the apply
        ends first, then apply again. The first apply is killed in its mail steps only:
        this test is about mail (kills among the account steps are test_faults')."""
        if kill is not None:
            marker, count = kill
            if not self.applies:  # mail steps only: after the account's
                marker = b'"mailbox"'
            kill_apply_when(self.spec, lambda journal: journal.count(marker) >= count)
        mailplan("apply", str(self.spec), "--auto-approve", check=True)
        self.applied()

    def applied(self) -> None:
        """Add what the apply found to the model, then compare the target with it."""
        self.applies += 1
        self.changed = False
        source: dict[tuple[str, str, int], set[str]] = {}
        for box in self.boxes.values():
            self.seen.setdefault(box.folder, set())
            self.deleted.setdefault(box.folder, set())
            for (digest, occurrence), copy in box.read():
                self.seen[box.folder].add((digest, occurrence))
                self.stored[digest] = copy.mail.stored()
                key = (box.folder, digest, occurrence)
                source.setdefault(key, set()).update(copy.flags())
                self.ever_flags.setdefault(key, set()).update(copy.flags())
        files = self.target_files()
        on_target = Counter((folder, digest, occ) for folder, digest, occ, _p in files)
        expected = {(f, *i) for f, ids in self.seen.items() for i in ids - self.deleted[f]}
        assert set(on_target) == expected, (sorted(set(on_target) - expected),
                                            sorted(expected - set(on_target)))
        assert [k for k, n in on_target.items() if n > 1] == []
        for folder, digest, occurrence, path in files:
            assert path.read_bytes() == self.stored[digest], path
            flags = set(parse_message_name(path.name).flags or "")  # type: ignore[union-attr]
            key = (folder, digest, occurrence)
            assert source.get(key, set()) <= flags <= self.ever_flags[key], (
                path.name, source.get(key), self.ever_flags[key])
        root = maildir(self.target, self.address)
        folders = {p.name for p in root.iterdir() if p.name.startswith(".") and p.is_dir()}
        assert folders == {"." + f.replace("/", ".") for f in self.seen if f != INBOX}
        assert [p for p in root.glob("**/tmp/*")] == []
        again = mailplan("plan", str(self.spec), "--detailed-exitcode")
        assert again.returncode == 0 and "No changes." in again.stdout, again.stdout


def test_applies_while_the_old_server_changes_import_each_message_once(tmp_path):
    # MAILPLAN_STATEFUL_EXAMPLES: more examples, for a longer search by hand
    examples = int(os.environ.get("MAILPLAN_STATEFUL_EXAMPLES", "20"))
    run_state_machine_as_test(lambda: Migration(tmp_path), settings=settings(
        max_examples=examples, stateful_step_count=15, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))
