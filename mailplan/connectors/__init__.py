"""Connections to the hosts of a migration: SSH (through Fabric) or this machine.

Everything above this package talks to a host through the :class:`Connector` interface:
start a shell command, stream bytes to its stdin, stream its stdout, learn its exit
status. :mod:`mailplan.connectors.ssh` is the only module that imports Fabric.
"""

from __future__ import annotations

from mailplan.connectors.base import CommandResult, Connector, Process

__all__ = ["CommandResult", "Connector", "Process"]
