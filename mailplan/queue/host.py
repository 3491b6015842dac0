"""Which host a queue command works on: ``local``, ``ssh://user@host:port``, or a spec name.

The connection string form needs no spec, for admins watching a server after cutover;
with ``--spec`` the name is looked up in the spec's ``hosts:`` and connected exactly as
``mailplan plan``/``apply`` connect to it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from mailplan.connectors.base import Connector
from mailplan.connectors.local import LocalConnector
from mailplan.errors import MailplanError
from mailplan.shell import join

#: ``[user@]host[:port]`` of a connection string, the host a name or ``[IPv6]``
_NETLOC = re.compile(r"(?:[^@]*@)?(?:\[[^\]]*\]|[^\[\]:]+)(?::\d*)?")


@dataclass(frozen=True)
class HostOptions:
    """The connection options given next to a connection string."""

    identity: str | None = None
    known_hosts: str | None = None
    accept_new_host_key: bool = False
    sudo: bool = False
    spec: str | None = None


def _spec_host(host: str, spec_file: str) -> tuple[str, dict[str, Any], str | None]:
    """(name, hosts entry, queue dir from the spec's qmail_dir if HOST is the target)."""
    from mailplan.spec import load_spec

    data = load_spec(spec_file).data
    roles = {role: data[role]["host"] for role in ("source", "target")
             if isinstance(data.get(role), dict) and "host" in data[role]}
    name = roles.get(host, host)
    if name not in data["hosts"]:
        raise MailplanError(f"host {host!r} is not in {spec_file} (hosts: "
                            f"{', '.join(sorted(data['hosts']))}; or say source or target)")
    queue_dir = None
    if name == roles.get("target") and data["target"].get("qmail_dir"):
        queue_dir = data["target"]["qmail_dir"].rstrip("/") + "/queue"
    return name, data["hosts"][name], queue_dir


def spec_queue_dir(host: str, options: HostOptions) -> str | None:
    """The queue directory the spec implies for ``host`` (its target's qmail_dir/queue)."""
    return _spec_host(host, options.spec)[2] if options.spec else None


def refuse_source(host: str, options: HostOptions, doing: str) -> None:
    """Refuse ``doing`` (a command that writes) on the spec's source host: mailplan only
    ever reads the old server. A host that is also the spec's target is the target."""
    if not options.spec:
        return
    from mailplan.spec import load_spec

    data = load_spec(options.spec).data
    name = _spec_host(host, options.spec)[0]
    roles = {role: data[role].get("host") for role in ("source", "target")
             if isinstance(data.get(role), dict)}
    if name == roles.get("source") and name != roles.get("target"):
        raise MailplanError(f"{host!r} is {options.spec}'s source host {name!r}: mailplan "
                            f"never writes to the source, so it does not {doing} there",
                            hint="run it without --spec and a connection string if this "
                            "host's qmail queue really is to be changed")


def connect_host(host: str, options: HostOptions) -> Connector:
    """A connector for ``host`` (nothing is contacted until the first command).

    With a spec, HOST is a name from its ``hosts:`` or the role ``source``/``target``.
    """
    if options.spec:
        from mailplan.hosts import connect

        given = [flag for flag, value in (
            ("--identity", options.identity), ("--known-hosts", options.known_hosts),
            ("--accept-new-host-key", options.accept_new_host_key),
            ("--sudo", options.sudo)) if value]
        if given:
            raise MailplanError(f"{', '.join(given)}: not used with --spec, whose hosts "
                                f"entry says how {host!r} is reached",
                                hint="set it in the spec's hosts: entry (identity_file, "
                                "known_hosts, accept_new_host_key, sudo), or give a "
                                "connection string (ssh://user@host) instead of --spec")
        name, entry, _ = _spec_host(host, options.spec)
        return connect(name, entry)
    if host == "local":
        return LocalConnector("local", sudo=options.sudo)
    if host.startswith("ssh://"):
        entry = host_entry(host, options)
        from mailplan.connectors.ssh import OPTION_OPT_IN, SSHConnector

        return SSHConnector(entry["address"], address=entry["address"],
                            user=entry.get("user"), port=entry.get("port"),
                            identity_file=options.identity,
                            known_hosts=options.known_hosts,
                            accept_new_host_key=options.accept_new_host_key,
                            sudo=options.sudo, opt_in=OPTION_OPT_IN)
    hint = "give `local`, `ssh://user@host[:port]`, or a host name of the spec named with --spec"
    if host.endswith((".yaml", ".yml")):  # the spec given where the host goes
        hint = f"for the spec's target: target --spec {join([host])}; or {hint}"
    raise MailplanError(f"unknown host {host!r}", hint=hint)


def _login(host: str, user: str | None) -> str | None:
    """The login name of connection string ``host`` from its raw ``user`` part,
    percent-decoded (UTF-8) as OpenSSH decodes an ssh:// URI's user
    (``ssh://j%C3%BCrgen@host`` logs in as ``jürgen``). A name no login can have
    (control characters, whitespace, ``@``, ``:``, ``/``) or bytes that are no UTF-8
    are refused: they are no user's, and would go to the host or into a spec as given."""
    if not user:
        return user
    try:
        name: str | None = unquote(user, errors="strict")
    except UnicodeDecodeError:
        name = None
    if name is None or any(c in "@:/" or c.isspace() or unicodedata.category(c) == "Cc"
                           for c in name):
        raise MailplanError(f"cannot read the connection string {host!r}: the user name "
                            "holds a character no login name has",
                            hint="write local, ssh://user@host or ssh://user@host:2222")
    return name


def host_entry(host: str, options: HostOptions) -> dict[str, Any]:
    """A spec ``hosts:`` entry for a connection string (``local`` or ``ssh://...``)."""
    if host == "local":
        return {"local": True, **({"sudo": True} if options.sudo else {})}
    try:
        parts = urlsplit(host)
        port = parts.port
    except ValueError:  # a port out of range, or an unclosed [ of an IPv6 address
        parts, port = urlsplit(""), -1
    # urlsplit reads "?x", "#x" and text after "[::1]" as no part of the address: a
    # string carrying them is not what the user meant to connect to; nor is port 0
    if (parts.scheme != "ssh" or not parts.hostname or port in (-1, 0)
            or parts.path not in ("", "/") or parts.password or "?" in host or "#" in host
            or not _NETLOC.fullmatch(parts.netloc)):
        raise MailplanError(f"cannot read the connection string {host!r}",
                            hint="write local, ssh://user@host or ssh://user@host:2222")
    entry: dict[str, Any] = {"address": parts.hostname}
    optional = {"user": _login(host, parts.username), "port": port,
                "identity_file": options.identity, "known_hosts": options.known_hosts}
    entry.update({k: v for k, v in optional.items() if v})
    if options.accept_new_host_key:
        entry["accept_new_host_key"] = True
    if options.sudo:
        entry["sudo"] = True
    return entry
