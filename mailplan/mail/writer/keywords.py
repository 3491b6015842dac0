"""IMAP keywords and subscriptions: dovecot's ``dovecot-keywords`` letters, courier's
keyword files, and the subscription files of both servers.

Part of the writer program (:mod:`mailplan.mail.writer`, which has the protocol):
stdlib only, Python 3.7, joined with the other parts into one script
(:mod:`mailplan.mail.writer.bundle`).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator

from mailplan.mail.writer.base import AgentBase
from mailplan.mail.writer.proto import (
    COURIER_KEYWORDS,
    COURIER_UIDS,
    CREATE,
    DIR_FLAGS,
    AgentError,
    write_all,
)

TYPE_CHECKING = False  # typing is not imported to run: it costs the agent's start 5 ms
if TYPE_CHECKING:  # annotations only
    from typing import Any


class KeywordsMixin(AgentBase):
    """Keywords (``K``, and courier's files at each sync) and subscriptions (``U``)."""

    def keywords(self, req: dict[str, Any]) -> dict[str, Any]:
        """``K``: the letters IMAP keywords have in folder ``dir``, by dovecot's
        ``dovecot-keywords`` (``N name`` lines; keyword N is the letter ``a`` + N among a
        file name's flags), adding those missing (26 at most; its lines are never
        dropped or renumbered). A keyword that finds no letter is left out."""
        if self.root is None:
            raise AgentError("keywords before open")
        folder = self._folder_path(req["dir"])
        lines, letters = _dovecot_keywords(folder)
        slots = {}
        for letter, name in letters.items():
            slots.setdefault(name, ord(letter) - 97)
        added = []
        for name in req["keywords"]:
            # a number is taken by its first line, whatever keyword it names
            free = [i for i in range(26) if chr(97 + i) not in letters]
            if name not in slots and free:
                letters[chr(97 + free[0])] = name
                slots[name] = free[0]
                added.append(f"{free[0]} {name}")
        if added:
            self._replace(os.path.join(folder, "dovecot-keywords"),
                          "".join(x + "\n" for x in lines + added))
        return {"letters": {k: chr(97 + slots[k]) for k in req["keywords"] if k in slots}}

    def _courier_keywords(self, dirname: str, name: str) -> None:
        """Write the IMAP keywords of message ``name`` for courier: a file named after
        the message (up to ``:``) in the folder's ``courierimapkeywords/``, a keyword per
        line, which courier-imap reads as a keyword update for that message.

        Courier reads such a file only for a message in its folder, so the file is
        written whole before its message is linked: it may be created under its own
        name. Messages of a batch with the same keywords share one file (hard links to
        it, as many as the filesystem allows): a link costs a third of a new file and no
        writeback (measured on ext4, 50,000 files: 0.85 s of CPU against 2.3 s, and 0.01
        s of sync against 0.56 s); courier never writes into these files, it only reads,
        renames and removes them. A writer killed before the link leaves a file for a
        message that never appears (courier removes it after 15 minutes; the next run
        writes it again for the message's new name). A file already there is kept. It
        is made durable with the batch."""
        data = self._courier_text(dirname, name.rpartition(":2,")[2])
        if not data:
            return
        kw_fd = self._courier_dir(dirname)
        base = name.partition(":")[0]
        shared = self.courier_shared.get((dirname, data))
        if shared is not None:
            try:
                os.link(shared, base, src_dir_fd=kw_fd, dst_dir_fd=kw_fd)
            except FileExistsError:
                return
            except OSError:  # gone (courier took it), or its links are at the limit
                pass
            else:
                self.courier_files.append((dirname, base))
                return
        try:
            fd = os.open(base, CREATE, 0o600, dir_fd=kw_fd)
        except FileExistsError:
            return
        try:
            write_all(fd, data)
            self._own(fd)
        finally:
            os.close(fd)
        self.courier_shared[(dirname, data)] = base
        self.courier_files.append((dirname, base))

    def _courier_dir(self, dirname: str) -> int:
        """A descriptor of the folder's ``courierimapkeywords/`` (made when missing),
        kept for the session; never opened through a link: files go where the folder is."""
        kw_fd = self.dir_fds.get((dirname, COURIER_KEYWORDS))
        if kw_fd is None:
            path = os.path.join(self._folder_path(dirname), COURIER_KEYWORDS)
            self._mkdir(path)
            kw_fd = self.dir_fds[(dirname, COURIER_KEYWORDS)] = os.open(
                path, DIR_FLAGS | getattr(os, "O_NOFOLLOW", 0))
        return kw_fd

    def _courier_update(self, dirname: str, name: str) -> bool:
        """After ``G`` gave message ``name`` (its new name) keyword letters: write all
        its keywords for courier, as courier writes a client's keyword change, a file
        named after the message (up to ``:``) in ``courierimapkeywords/``, written under
        a ``.tmp.`` name (courier reads none) and renamed over an update of an earlier
        run courier has not read yet. Not in a folder courier-imap has opened (its
        ``courierimapuiddb`` is there): courier keeps its own keywords there, which its
        user may have changed on the new server, and an update replaces them. Return
        whether a file was written (the caller syncs the directory)."""
        if os.path.lexists(os.path.join(self._folder_path(dirname), COURIER_UIDS)):
            return False
        data = self._courier_text(dirname, name.rpartition(":2,")[2])
        if not data:
            return False
        kw_fd = self._courier_dir(dirname)
        self.seq += 1
        tmp = f".tmp.mailplan-{self.pid}-{self.seq}"
        fd = os.open(tmp, CREATE, 0o600, dir_fd=kw_fd)
        try:
            write_all(fd, data)
            self._own(fd)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name.partition(":")[0], src_dir_fd=kw_fd, dst_dir_fd=kw_fd)
        return True

    def _courier_paths(self) -> Iterator[str]:
        """The keyword directories and files the batch wrote (for fsync where there is
        no syncfs: otherwise never asked for)."""
        for dirname in sorted({d for d, _b in self.courier_files}):
            yield os.path.join(self._folder_path(dirname), COURIER_KEYWORDS)
        for dirname, base in self.courier_files:
            yield os.path.join(self._folder_path(dirname), COURIER_KEYWORDS, base)

    def _courier_text(self, dirname: str, flags: str) -> bytes:
        """The keyword file's text for a message with these flags in folder ``dirname``
        (empty when none of its keyword letters is named): a keyword per line, by the
        folder's dovecot-keywords (read once per flags string: a folder has a few);
        kept for the next message with the same flags once every letter is named."""
        data = self.courier_texts.get((self.root, dirname, flags))
        if data is not None:
            return data
        names = _dovecot_keywords(self._folder_path(dirname))[1]
        letters = [c for c in flags if "a" <= c <= "z"]
        data = "".join(names[c] + "\n" for c in letters if c in names).encode(
            "utf-8", "surrogateescape")
        if all(c in names for c in letters):
            self.courier_texts[(self.root, dirname, flags)] = data
        return data

    def subscribe(self, req: dict[str, Any]) -> dict[str, Any]:
        added = 0
        for fname, lines in req["files"].items():
            if fname not in ("courierimapsubscribed", "subscriptions"):
                raise AgentError(f"not a subscription file: {fname!r}")
            path = os.path.join(self.root, fname)
            old = _user_file_lines(path, "the subscription file", "no folder can be "
                                   "subscribed there")
            if fname == "subscriptions" and old[:2] == list(_DOVECOT_V2):
                # dovecot keeps its file in the form it finds: in its version 2 a name's
                # levels are separated by tabs (and escaped), and UNSUBSCRIBE removes
                # only a line of that form
                lines = ["\t".join(_tab_escaped(level) for level in ln.split("."))
                         for ln in lines]
            new = [ln for ln in lines if ln not in old]
            if new:
                self._replace(path, "".join(x + "\n" for x in old + new))
                added += len(new)
        return {"added": added}


def _dovecot_keywords(folder: str) -> tuple[list[str], dict[str, str]]:
    """A folder's ``dovecot-keywords``: its lines, and ``{letter: keyword}`` (``N name``
    lines, keyword N is the letter ``a`` + N; another line is skipped, the first of two
    lines for one number counts), the rule of mailplan's ``bookkeeping.keyword_letters``,
    which verify reads the file with (this program imports nothing from mailplan). A
    symbolic link is not read, as plan and verify read none (``_user_file_lines``)."""
    lines = _user_file_lines(os.path.join(folder, "dovecot-keywords"), "the keywords file",
                             "no IMAP keyword can be given a letter there")
    letters: dict[str, str] = {}
    for line in lines:
        number, _, name = line.partition(" ")
        if number.isascii() and number.isdigit() and int(number) < 26 and name:
            letters.setdefault(chr(97 + int(number)), name)
    return lines, letters


#: the first two lines of dovecot's version 2 subscription file
_DOVECOT_V2 = ("V\t2", "")


def _user_file_lines(path: str, what: str, consequence: str) -> list[str]:
    """The lines of a file in the Maildir that its user or IMAP server may replace (a
    subscription file, ``dovecot-keywords``); none when it is missing. Not read through
    a symbolic link (as plan and verify read none): one is replaced by a file of the
    lines written here, its target left alone; nor waited on (a named pipe of that name
    would hold the open forever). One that is no regular file (a directory, a named
    pipe) is an error that says so (``what`` it is, and the ``consequence``): it is not
    replaced, and no IMAP server keeps anything in it either."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return []
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        return []
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise AgentError(f"{what} {path} is {kind}: {consequence} (move it away, then "
                         "apply again)")
    with open(fd, encoding="utf-8", errors="surrogateescape") as fh:
        return fh.read().splitlines()


def _tab_escaped(text: str) -> str:
    """A name's level as dovecot's version 2 subscription file writes it (its
    ``str_append_tabescaped``)."""
    return (text.replace("\x01", "\x011").replace("\t", "\x01t").replace("\r", "\x01r")
            .replace("\n", "\x01n"))
