"""Which host a queue command works on: ``local``, ``ssh://user@host:port``, or a spec name.

The connection string form needs no spec, for admins watching a server after cutover;
with ``--spec`` the name is looked up in the spec's ``hosts:`` and connected exactly as
``mailplan plan``/``apply`` connect to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from mailplan.connectors.base import Connector
from mailplan.connectors.local import LocalConnector
from mailplan.errors import MailplanError


@dataclass(frozen=True)
class HostOptions:
    """The connection options given next to a connection string."""

    identity: str | None = None
    known_hosts: str | None = None
    accept_new_host_key: bool = False
    sudo: bool = False
    spec: str | None = None


def connect_host(host: str, options: HostOptions) -> Connector:
    """A connector for ``host`` (nothing is contacted until the first command)."""
    if options.spec:
        from mailplan.hosts import connect
        from mailplan.spec import load_spec

        hosts = load_spec(options.spec).data["hosts"]
        if host not in hosts:
            raise MailplanError(f"host {host!r} is not in {options.spec} (hosts: "
                                f"{', '.join(sorted(hosts))})")
        return connect(host, hosts[host])
    if host == "local":
        return LocalConnector("local", sudo=options.sudo)
    if host.startswith("ssh://"):
        parts = urlsplit(host)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if not parts.hostname or port == -1 or parts.path not in ("", "/") or parts.password:
            raise MailplanError(f"cannot read the connection string {host!r}",
                                hint="write ssh://user@host or ssh://user@host:2222")
        from mailplan.connectors.ssh import SSHConnector

        return SSHConnector(parts.hostname, address=parts.hostname, user=parts.username,
                            port=port, identity_file=options.identity,
                            known_hosts=options.known_hosts,
                            accept_new_host_key=options.accept_new_host_key,
                            sudo=options.sudo)
    raise MailplanError(f"unknown host {host!r}",
                        hint="give `local`, `ssh://user@host[:port]`, or a host name of the "
                        "spec named with --spec")
