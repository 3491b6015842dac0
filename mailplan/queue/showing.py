"""``queue show --full``: the message's text in pieces as they arrive, never whole.

The envelope and headers come from one dump of the message's files (as ``show``); its
mess file then comes through the agent's ``cat`` mode (:mod:`mailplan.queue.agent`),
written out a piece at a time, so that showing a message of hundreds of MB (qmail
accepts any size unless ``control/databytes`` limits it) costs a piece's worth of memory
on both sides, not five times the message.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable

from mailplan.connectors.base import Process
from mailplan.errors import HostError
from mailplan.queue import ops
from mailplan.queue.formats import printable
from mailplan.queue.model import Message, messages
from mailplan.queue.remote import run_agent


class BodyText:
    """A message's bytes as ``show`` prints them (UTF-8, undecodable bytes as backslash
    escapes, control characters ``_`` but the newlines, and a newline at the end), made
    a piece at a time: the same text as :func:`~mailplan.queue.render.show_text` makes of
    the bytes whole."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("backslashreplace")
        self._last = ""

    def piece(self, data: bytes, *, final: bool = False) -> str:
        """The text of the next bytes (an undecoded tail waits for the next piece)."""
        text = self._decoder.decode(data, final)
        out = "\n".join(printable(part) for part in text.split("\n"))
        self._last = out[-1:] or self._last
        return out

    def end(self) -> str:
        """The text left once every piece is in, with the final newline."""
        out = self.piece(b"", final=True)
        return out + ("" if self._last == "\n" else "\n")


def show_full(target: ops.Target, msg_id: int, head: Callable[[Message], None],
              write: Callable[[str], None]) -> ops.Leftover | None:
    """Show message ``msg_id`` whole: ``head`` gets the message (its envelope is printed
    first), ``write`` its text in pieces. An id with files but no message: the
    :class:`~mailplan.queue.ops.Leftover` to print instead (nothing was written); an id
    with no file at all: :class:`~mailplan.queue.ops.UnknownMessage`."""
    dump = target.read(step="show message", only_id=msg_id)
    found = [m for m in messages(dump) if m.id == msg_id]
    if not found:
        return ops.leftover(target, msg_id)
    message = found[0]
    inode = dump.entries[message.mess_file].inode
    del dump
    head(message)
    text = BodyText()

    def read(proc: Process) -> None:
        for chunk in iter(lambda: proc.read(1 << 16), b""):
            write(text.piece(chunk))

    result = run_agent(target.conn, "cat", target.queue_dir,
                       (message.mess_file, str(inode)), step="show message", read=read)
    if result.returncode != 0:
        raise HostError(f"cannot show {printable(message.mess_file)}: "
                        f"{printable(result.stderr_text.strip()) or 'no message'}",
                        host=target.conn.name, step="show message")
    write(text.end())
    return None
