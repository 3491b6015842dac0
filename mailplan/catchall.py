"""A domain's catch-all (``unknown_recipients``) as vpopmail keeps it: the
``.qmail-default`` line mailplan writes for a policy (:func:`catchall_line`, the forms
vadddomain and vpopmail's own tools write), and the plan's words for the one a target
has (:func:`describe_catchall`). Pure: no I/O."""

from __future__ import annotations

from mailplan.desired import Catchall
from mailplan.shell import dot_qmail_program


def catchall_line(catchall: Catchall, vpopmail_dir: str, user_dir: str | None) -> str | None:
    """The .qmail-default content for a policy (None if the target user is not there yet)."""
    arg = {"bounce": "bounce-no-mailbox", "delete": "delete", "forward": catchall.target,
           "deliver_to": user_dir}[catchall.kind]
    if arg is None:
        return None
    return dot_qmail_program([f"{vpopmail_dir.rstrip('/')}/bin/vdelivermail", "", arg]) + "\n"



def describe_catchall(content: str | None, vpopmail_dir: str) -> str:
    """The plan's words for a .qmail-default; one that does what its last word says
    but is not the line mailplan writes (another vdelivermail's path, more lines) is
    shown as it is, or the plan would read ``bounce -> bounce``."""
    if content is None:
        return "no .qmail-default"
    line = content.strip()
    for kind, word in (("bounce", "bounce-no-mailbox"), ("delete", "delete")):
        if line.endswith(f"'' {word}"):
            if content == catchall_line(Catchall(kind), vpopmail_dir, None):
                return Catchall(kind).describe()
            shown = line if len(line) <= 200 else line[:200] + "..."
            return f"{Catchall(kind).describe()}, written as {shown!r}"
    return f"custom: {line[:80]}"
