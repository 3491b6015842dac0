"""Reading mailboxes on the source without changing their access times.

Reading a file updates its access time; with the usual ``relatime`` mount option it does
so exactly when the file was modified since it was last read, which for a spool means:
when it holds new mail. Mail programs on the old server take an access time older than
the modification time to mean "new mail" (mutt's and pine's mailbox lists, the shell's
"You have new mail", biff), so every plan that read a spool would quietly clear that
for its user, days before the cutover. Where the source allows it, mailplan therefore
opens mailboxes with ``O_NOATIME``:

* byte ranges (a snapshot read, a checkpoint's windows, a first plan's count) with GNU
  dd: ``iflag=noatime,skip_bytes,count_bytes`` and ``status=none`` (coreutils 8.20 or
  later); one process where ``tail | head`` took two;
* whole mailboxes (a full re-read, verify) with GNU tar's ``--atime-preserve=system``.

The kernel allows ``O_NOATIME`` only to the file's owner and to root, so both are used
only when the commands run as root (as mailplan's reads of /etc/shadow need anyway).
Elsewhere the reads are ``head``, ``tail`` and ``tar`` as before, and access times
change as they always did. One probe command per connection tells, cached for the
connection's life.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

from mailplan.connectors.base import Connector
from mailplan.remote import run_batch


@dataclass(frozen=True)
class ReadTools:
    """Whether byte ranges (``dd``) and whole files (``tar``) can be read with
    ``O_NOATIME`` on a host."""

    dd: bool = False
    tar: bool = False


#: prints "dd" and "tar" for the tools that take the options, then the effective uid
PROBE = ("dd if=/dev/null iflag=noatime,skip_bytes,count_bytes count=0 status=none "
         "2>/dev/null && echo dd; "
         "tar --atime-preserve=system -cf /dev/null -T /dev/null 2>/dev/null && echo tar; "
         "id -u")

_CACHE: weakref.WeakKeyDictionary[Connector, ReadTools] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def parse_probe(out: bytes) -> ReadTools:
    """What :data:`PROBE` printed, as :class:`ReadTools` (nothing unless the uid is 0)."""
    lines = out.decode("ascii", "replace").split()
    if not lines or lines[-1] != "0":
        return ReadTools()
    return ReadTools(dd="dd" in lines[:-1], tar="tar" in lines[:-1])


def read_tools(conn: Connector) -> ReadTools:
    """The host's :class:`ReadTools`, probed once per connection (one command in its
    shared shell); a probe that fails reads as "neither"."""
    with _LOCK:
        tools = _CACHE.get(conn)
    if tools is None:
        (res,) = run_batch(conn, [PROBE])
        tools = parse_probe(res.stdout) if res.returncode == 0 else ReadTools()
        with _LOCK:
            _CACHE[conn] = tools
    return tools


def tar_read(conn: Connector) -> str:
    """The start of a ``tar`` command that writes an archive of the files it reads to
    stdout, leaving their access times where the host allows it."""
    return "tar --atime-preserve=system -cPf -" if read_tools(conn).tar else "tar -cPf -"
