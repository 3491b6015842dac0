"""Build qmail queue trees for the tests, from the recorded notqmail queue or by hand.

:func:`reference_queue` rebuilds the snapshot of ``reference/qmail-queue`` (the state at the
end of 02-preprocessed-state.md: 30 preprocessed messages and 2 in todo/) from the
transcripts themselves: directory modes and owners from the recorded ``ls -la``, file
modes, owners and sizes from the recorded ``find -printf``, senders and recipients from
the recorded qmail-qread, headers from qmHandle -l, the qp numbers from qmail-send's log,
and the exact bytes where ``od -c``/``head`` recorded them. Message bodies are filled up
to the recorded sizes. The file names are the recorded ids, so, like the README's
``tar -x`` restore, names do not match inodes.

:class:`QueueBuilder` makes fresh queues the way qmail-queue does: the mess file is
named by its own inode, in split directory inode mod 23.
"""

from __future__ import annotations

import calendar
import os
import re
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from reference import reference_dir

from mailplan.queue.lock import LOCK_NAME

QUEUE = "/var/qmail/queue/"
SPLIT = 23


@cache
def transcript(name: str) -> str:
    """One qmail-queue transcript file."""
    return (reference_dir() / "qmail-queue" / name).read_text(encoding="utf-8")


def recorded(name: str, command: str, occurrence: int = 0) -> str:
    """The stdout recorded for ``command`` (its ``occurrence``-th run) in ``name``."""
    text = transcript(name)
    starts = [m.end() for m in re.finditer(r"```console\n# " + re.escape(command) + r"\n```",
                                           text)]
    if occurrence < 0:
        occurrence += len(starts)
    rest = text[starts[occurrence]:]
    block = rest[: rest.find("\n- stderr")]
    if "- stdout: (empty)" in block:
        return ""
    out = re.search(r"- stdout \((\d+) bytes.*?\n```text\n(.*?)\n```", block, re.S)
    body = out.group(2) + "\n"
    assert len(body.encode()) == int(out.group(1)), (command, len(body), out.group(1))
    return body


def od_bytes(od_text: str) -> bytes:
    """The bytes an ``od -c`` listing shows."""
    out = bytearray()
    escapes = {"\\0": 0, "\\n": 10, "\\t": 9, "\\r": 13, "\\a": 7, "\\b": 8, "\\f": 12,
               "\\v": 11}
    for line in od_text.splitlines():
        if not re.match(r"^[0-7]{7} ", line):
            continue
        cells = line[7:]
        for i in range(0, len(cells), 4):
            cell = cells[i:i + 4]
            token = cell.strip()
            if token == "":
                out.append(32)
            elif token in escapes:
                out.append(escapes[token])
            elif re.fullmatch(r"[0-7]{3}", token):
                out.append(int(token, 8))
            else:
                out += token.encode()
    return bytes(out)


def od_block(name: str, command: str, path: str) -> bytes:
    """The bytes of ``path`` in an output listing ``== path`` (or ``path``) then od -c."""
    text = recorded(name, command)
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip("= ") == path)
    body = []
    for line in lines[start + 1:]:
        if not re.match(r"^[0-7]{7}", line):
            break
        body.append(line)
    return od_bytes("\n".join(body))


@dataclass
class QreadEntry:
    """One message as qmail-qread printed it."""

    date: str
    id: int
    size: int
    sender: str
    recipients: list[tuple[str, str]] = field(default_factory=list)  # (channel, address)


def parse_qread(text: str) -> list[QreadEntry]:
    """qmail-qread's output, in its order."""
    out: list[QreadEntry] = []
    for line in text.splitlines():
        head = re.match(r"^(\d+ \w+ \d+ [\d:]+) GMT  #(\d+)  (\d+)  <(.*)> $", line)
        if head:
            out.append(QreadEntry(head.group(1), int(head.group(2)), int(head.group(3)),
                                  head.group(4)))
        else:
            channel, address = line.strip("\t").split("\t")
            out[-1].recipients.append((channel, address))
    return out


def parse_qmhandle(text: str) -> list[dict[str, str]]:
    """The message blocks of qmHandle -l/-L/-R (id, split, then the header lines)."""
    blocks = []
    for chunk in text.split("\n\n"):
        lines = chunk.splitlines()
        head = re.match(r"^(\d+) \((\d+), (\d+)/(\d+)\)$", lines[0]) if lines else None
        if not head:
            continue
        block = {"id": head.group(1), "split": head.group(2)}
        for line in lines[1:]:
            key, _, value = line.strip().partition(": ")
            block[key.rstrip(":")] = value
        blocks.append(block)
    return blocks


def parse_ls(text: str) -> dict[str, tuple[str, str, str]]:
    """Paths (relative to the queue) -> (mode string, owner, group) from ``ls -la``."""
    out: dict[str, tuple[str, str, str]] = {}
    current = ""
    for line in text.splitlines():
        if line.endswith(":") and not line.startswith(("d", "-", "p")):
            current = line[:-1].removeprefix(QUEUE).rstrip("/").removeprefix(QUEUE[:-1])
            continue
        fields = line.split()
        if len(fields) < 9 or fields[0][0] not in "d-p":
            continue
        name = fields[-1]
        if name == "..":
            continue
        path = current if name == "." else f"{current}/{name}".lstrip("/")
        out[path] = (fields[0], fields[2], fields[3])
    return out


def mode_bits(text: str) -> int:
    """``drwxr-x---`` -> 0o750."""
    bits = 0
    for i, ch in enumerate(text[1:10]):
        if ch != "-":
            bits |= 1 << (8 - i)
    return bits


def directory_table() -> dict[str, tuple[int, str, str]]:
    """Every recorded directory of the queue: path -> (mode, owner, group)."""
    seen: dict[str, tuple[str, str, str]] = {}
    seen.update(parse_ls(recorded("01-inject-and-todo-state.md",
                                  "ls -la /var/qmail/queue/todo /var/qmail/queue/intd "
                                  "/var/qmail/queue/info /var/qmail/queue/local "
                                  "/var/qmail/queue/remote /var/qmail/queue/bounce "
                                  "/var/qmail/queue/pid /var/qmail/queue/lock")))
    mess = recorded("01-inject-and-todo-state.md", "cd /var/qmail/queue && for d in mess/*; "
                    "do n=$(ls $d | wc -l); [ $n -gt 0 ] && echo \"$d: $n\"; done; echo; "
                    "ls -la mess/*/ | head -40")
    seen.update(parse_ls(mess.split("\n\n", 1)[1]))
    seen.update(parse_ls(recorded("02-preprocessed-state.md",
                                  "ls -la /var/qmail/queue/ /var/qmail/queue/todo "
                                  "/var/qmail/queue/intd /var/qmail/queue/bounce "
                                  "/var/qmail/queue/pid /var/qmail/queue/lock")))
    dirs = {p: (mode_bits(m), o, g) for p, (m, o, g) in seen.items() if m.startswith("d")}
    for area in ("mess", "info", "local", "remote"):
        subs = {v for p, v in dirs.items() if p.startswith(area + "/")}
        assert len(subs) == 1, (area, subs)  # every recorded split dir alike
        for n in range(SPLIT):
            dirs.setdefault(f"{area}/{n}", next(iter(subs)))
    return dirs


def file_table() -> dict[str, tuple[int, str, str, int]]:
    """Recorded files of the preprocessed state: path -> (mode, owner, group, size)."""
    text = recorded("02-preprocessed-state.md",
                    "find /var/qmail/queue -type f -printf '%M %u:%g %8s %p\\n' | sort -k4")
    out = {}
    for line in text.splitlines():
        mode, owners, size, path = line.split()
        owner, group = owners.split(":")
        out[path.removeprefix(QUEUE)] = (mode_bits(mode), owner, group, int(size))
    return out


def gmt(text: str) -> int:
    """``28 Nov 2026 15:46:43`` (UTC) as a timestamp."""
    return calendar.timegm(time.strptime(text, "%d %b %Y %H:%M:%S"))


def qp_numbers() -> dict[int, int]:
    """id -> qp (the pid of qmail-queue, in the Received line) from qmail-send's log."""
    text = transcript("02-preprocessed-state.md")
    return {int(m.group(1)): int(m.group(2))
            for m in re.finditer(r"info msg (\d+): bytes \d+ from <.*?> qp (\d+)", text)}


#: The two messages injected last (02, "Final snapshot state"): id, sender, recipient, and
#: a pid whose digits give the todo/ sizes recorded by ``ls -la`` (52 and 60 bytes).
LATE = [(1475251, "late1@remote.example.net", "bob@example.com", 4711, "late 1"),
        (1475353, "alice@example.com", "late-friend@remote.example.net", 32801, "late 2")]
LATE_TIME = gmt("28 Nov 2026 15:47:10")


def _chown(path: Path, owner: str, group: str) -> None:
    import grp
    import pwd

    os.lchown(path, pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid)


def _put(path: Path, data: bytes, mode: int, owner: str, group: str, mtime: int) -> None:
    path.write_bytes(data)
    os.chmod(path, mode)
    _chown(path, owner, group)
    os.utime(path, (mtime, mtime))


def _mess_bytes(msg_id: int, size: int, qp: int, block: dict[str, str], sent: str) -> bytes:
    if msg_id == 1474861:  # recorded whole by `head -12`
        return recorded("01-inject-and-todo-state.md",
                        "M=$(find /var/qmail/queue/mess -name 1474861); head -12 $M").encode()
    lines = [f"Received: (qmail {qp} invoked by uid 0); {sent} -0000"]
    if "Date" in block:
        lines.append(f"Date: {block['Date']}")
        lines.append(f"Message-ID: <20261128154634.{qp - 1}.qmail@localhost>")
    if "Cc" in block:
        lines.append(f"Cc: {block['Cc']}")
    lines += [f"From: {block['From']}", f"Subject: {block['Subject']}", "MIME-Version: 1.0",
              "Content-Type: text/plain; charset=us-ascii", "", ""]
    head = "\n".join(lines).encode()
    assert len(head) < size, (msg_id, len(head), size)
    filler = (b"x" * 75 + b"\n") * (size // 76 + 1)
    return head + filler[: size - len(head) - 1] + b"\n"


def reference_queue(root: Path) -> Path:
    """Build the recorded snapshot queue under ``root``; returns the queue directory."""
    queue = root / "queue"
    for path, (mode, owner, group) in sorted(directory_table().items(), key=lambda i: i[0]):
        target = queue / path if path else queue
        target.mkdir(parents=True, exist_ok=True)
        os.chmod(target, mode)
        _chown(target, owner, group)
    qread = {e.id: e for e in parse_qread(recorded("02-preprocessed-state.md",
                                                   "/var/qmail/bin/qmail-qread", -1))}
    handle = {int(b["id"]): b for b in parse_qmhandle(recorded("03-qmhandle.md",
                                                                "/opt/ref/qmhandle/qmHandle -l"))}
    qps = qp_numbers()
    sent = "28 Nov 2026 15:46:34"
    for path, (mode, owner, group, size) in file_table().items():
        area, name = path.split("/")[0], path.split("/")[-1]
        target = queue / path
        if area == "lock":
            data = b"\0" * size
            mtime = gmt(sent)
        elif area == "mess":
            msg_id = int(name)
            data = _mess_bytes(msg_id, size, qps[msg_id], handle[msg_id], sent)
            mtime = gmt(sent)
        else:
            entry = qread[int(name)]
            if area == "info":
                data = b"F" + entry.sender.encode() + b"\0"
            else:
                data = b"".join(b"T" + a.encode() + b"\0" for c, a in entry.recipients
                                if c == area)
            mtime = gmt(entry.date)
        assert len(data) == size, (path, len(data), size)
        _put(target, data, mode, owner, group, mtime)
    trigger = queue / "lock" / "trigger"
    os.mkfifo(trigger)
    os.chmod(trigger, 0o622)
    _chown(trigger, "qmails", "qmail")
    todo_sizes = {p: v for p, v in parse_ls(recorded("02-preprocessed-state.md",
                                                      "ls -la /var/qmail/queue/todo "
                                                      "/var/qmail/queue/intd", -1)).items()}
    for msg_id, sender, rcpt, pid, subject in LATE:
        mess = (f"Received: (qmail {pid} invoked by uid 0); 28 Nov 2026 15:47:10 -0000\n"
                f"From: {sender}\nTo: {rcpt}\nSubject: {subject}\n\nlate\n").encode()
        _put(queue / "mess" / str(msg_id % SPLIT) / str(msg_id), mess, 0o644, "qmailq", "root",
             LATE_TIME)
        envelope = f"u0\0p{pid}\0F{sender}\0T{rcpt}\0".encode()
        todo = queue / "todo" / str(msg_id)
        _put(todo, envelope, 0o644, "qmailq", "root", LATE_TIME)
        os.link(todo, queue / "intd" / str(msg_id))
        assert todo_sizes[f"todo/{msg_id}"][0] == "-rw-r--r--"
    return queue


class QueueBuilder:
    """An empty, correct queue tree; messages added the way qmail-queue adds them."""

    def __init__(self, root: Path) -> None:
        self.queue = root / "queue"
        for path, (mode, owner, group) in sorted(directory_table().items()):
            target = self.queue / path if path else self.queue
            target.mkdir(parents=True, exist_ok=True)
            os.chmod(target, mode)
            _chown(target, owner, group)
        for name, mode, owner, size in (("sendmutex", 0o600, "qmails", 0),
                                        ("tcpto", 0o644, "qmailr", 1024)):
            _put(self.queue / "lock" / name, b"\0" * size, mode, owner, "qmail",
                 int(time.time()))
        os.mkfifo(self.queue / "lock" / "trigger")
        os.chmod(self.queue / "lock" / "trigger", 0o622)
        _chown(self.queue / "lock" / "trigger", "qmails", "qmail")

    def add(self, sender: str, local: tuple[str, ...] = (), remote: tuple[str, ...] = (),
            *, subject: str = "test", preprocessed: bool = True, todo: bool = True,
            body: str = "hello\n", age: int = 60, sender_header: str | None = None) -> int:
        """Queue one message; its id is the inode of its mess file, as qmail-queue does.

        ``preprocessed`` writes info/local/remote (qmail-send's work); otherwise the
        envelope goes to intd/ and, with ``todo``, is linked into todo/. With neither,
        the message is half-written: a mess file only.
        """
        now = int(time.time()) - age
        tmp = self.queue / "pid" / f"{os.getpid()}.{time.monotonic_ns()}"
        text = (f"Received: (qmail 4242 invoked by uid 0); now\nFrom: "
                f"{sender_header or sender}\nSubject: {subject}\n\n{body}")
        _put(tmp, text.encode(), 0o644, "qmailq", "root", now)
        msg_id = tmp.stat().st_ino
        os.rename(tmp, self.queue / "mess" / str(msg_id % SPLIT) / str(msg_id))
        rcpts = (*local, *remote)
        if preprocessed:
            split = str(msg_id % SPLIT)
            _put(self.queue / "info" / split / str(msg_id), f"F{sender}\0".encode(), 0o600,
                 "qmails", "qmail", now)
            for area, addrs in (("local", local), ("remote", remote)):
                if addrs:
                    data = "".join(f"T{a}\0" for a in addrs).encode()
                    _put(self.queue / area / split / str(msg_id), data, 0o600, "qmails",
                         "qmail", now)
        elif todo or rcpts:
            envelope = f"u0\0p4242\0F{sender}\0" + "".join(f"T{a}\0" for a in rcpts)
            intd = self.queue / "intd" / str(msg_id)
            _put(intd, envelope.encode(), 0o644, "qmailq", "root", now)
            if todo:
                os.link(intd, self.queue / "todo" / str(msg_id))
        return msg_id

    def path(self, area: str, msg_id: int) -> Path:
        """Where qmail keeps the ``area`` file of ``msg_id``."""
        if area in ("todo", "intd", "bounce"):
            return self.queue / area / str(msg_id)
        return self.queue / area / str(msg_id % SPLIT) / str(msg_id)

    def files(self) -> list[str]:
        """Every file under the queue, relative, sorted; but mailplan's queue lock
        (:mod:`mailplan.queue.lock`), which its first changing command makes at the top
        of the queue and which holds no mail (tests/test_queue_lock.py looks at it)."""
        return sorted(str(p.relative_to(self.queue)) for p in self.queue.rglob("*")
                      if not p.is_dir() and p.relative_to(self.queue) != Path(LOCK_NAME))
