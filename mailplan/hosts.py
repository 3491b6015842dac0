"""Turn the spec's host entries into connectors."""

from __future__ import annotations

from typing import Any

from mailplan.connectors.base import DEFAULT_COMMAND_TIMEOUT, DEFAULT_PYTHON, Connector
from mailplan.connectors.local import LocalConnector


def connect(name: str, entry: dict[str, Any], *, from_option: bool = False) -> Connector:
    """A connector for one ``hosts:`` entry (nothing is contacted until first use);
    ``from_option``: made from a command's connection string, not the spec (an unknown
    host key's hint then names the command's option)."""
    python = str(entry.get("python", DEFAULT_PYTHON))
    timeout = int(entry.get("command_timeout", DEFAULT_COMMAND_TIMEOUT))
    if entry.get("local"):
        return LocalConnector(name, sudo=bool(entry.get("sudo", False)), python=python,
                              command_timeout=timeout)
    from mailplan.connectors.ssh import OPTION_OPT_IN, SPEC_OPT_IN, SSHConnector

    return SSHConnector(
        name,
        address=entry["address"],
        user=entry.get("user"),
        port=entry.get("port"),
        identity_file=entry.get("identity_file"),
        known_hosts=entry.get("known_hosts"),
        accept_new_host_key=bool(entry.get("accept_new_host_key", False)),
        connect_timeout=int(entry.get("connect_timeout", 15)),
        sudo=bool(entry.get("sudo", False)),
        stream_transport=str(entry.get("stream_transport", "auto")),
        python=python,
        opt_in=OPTION_OPT_IN if from_option else SPEC_OPT_IN,
        command_timeout=timeout,
    )
