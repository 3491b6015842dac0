"""The target-side Maildir writer in this process: the names mailplan and its tests use.

The writer is the program of :mod:`mailplan.mail.writer` (its protocol is described there),
run on the target as one script (:mod:`mailplan.mail.writer.bundle`). Imported here, its
parts are ordinary modules; this module names what is used of them, from where they are.
"""

from __future__ import annotations

from mailplan.mail.writer.core import Agent, main, serve
from mailplan.mail.writer.fs import pid_alive
from mailplan.mail.writer.proto import NAME_RE, AgentError

__all__ = ["NAME_RE", "Agent", "AgentError", "main", "pid_alive", "serve"]
