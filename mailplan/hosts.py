"""Turn the spec's host entries into connectors."""

from __future__ import annotations

from typing import Any

from mailplan.connectors.base import DEFAULT_PYTHON, Connector
from mailplan.connectors.local import LocalConnector


def connect(name: str, entry: dict[str, Any]) -> Connector:
    """A connector for one ``hosts:`` entry (nothing is contacted until first use)."""
    python = str(entry.get("python", DEFAULT_PYTHON))
    if entry.get("local"):
        return LocalConnector(name, sudo=bool(entry.get("sudo", False)), python=python)
    from mailplan.connectors.ssh import SSHConnector

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
    )
