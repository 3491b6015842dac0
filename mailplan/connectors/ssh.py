"""SSH connections through Fabric, with host keys checked.

Fabric's :class:`fabric.Connection` reads ``~/.ssh/config``, uses ssh-agent and the
configured identities, and wraps a paramiko client. Fabric installs paramiko's
``AutoAddPolicy``, which silently trusts any host key; mailplan replaces it with a
``RejectPolicy`` (one that names the key offered) and loads ``~/.ssh/known_hosts`` (plus
any file the spec names), so an unknown or changed key is refused. ``accept_new_host_key``
opts in to trusting a key seen for the first time (like OpenSSH's
``StrictHostKeyChecking=accept-new``); the key is then saved to the known-hosts file. A
changed key is always refused.

Commands run on fresh channels of the one transport; stdout is streamed, so mail of
any size passes through with constant memory. Bulk streams (mailbox reads, the writer
agent) go through the OpenSSH client when it can log in the same way, because paramiko
is the bottleneck there (see :mod:`mailplan.connectors.openssh`; ``stream_transport``).

sshd runs every command through the login shell of the account, which may be csh,
tcsh or fish: commands go in :func:`mailplan.shell.portable` form, which each of them
hands to ``/bin/sh`` as it is.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import paramiko
from fabric import Config, Connection

from mailplan.connectors import known_hosts as known_hosts_file
from mailplan.connectors.base import (
    DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_PYTHON,
    CommandResult,
    Connector,
    Process,
)
from mailplan.connectors.identity import check_identity, masked
from mailplan.connectors.known_hosts import (
    AcceptNewPolicy,
    RejectPolicy,
    UnknownKey,
    sha256_fingerprint,
)
from mailplan.connectors.openssh import OpenSSHStreams
from mailplan.errors import ConnectionLost, HostError, HostKeyError
from mailplan.shell import portable

# paramiko's thread logs the failures it raises to us (a traceback for a missing SSH
# banner): with no handler, Python prints them on stderr beside mailplan's own message
logging.getLogger("paramiko").addHandler(logging.NullHandler())

STREAM_TRANSPORTS = ("auto", "openssh", "paramiko")


class _ChannelOutput(io.RawIOBase):
    """A channel's stdout as a raw stream: each read returns what has arrived (paramiko's
    own ``makefile`` waits until the whole size asked for is there)."""

    def __init__(self, channel: paramiko.Channel) -> None:
        self._chan = channel

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._chan.recv(len(buffer))
        buffer[:len(data)] = data
        return len(data)


class SSHProcess(Process):
    """One SSH session channel running one command."""

    def __init__(self, channel: paramiko.Channel) -> None:
        self._chan = channel
        self._out = io.BufferedReader(_ChannelOutput(channel), 1 << 16)

    def write(self, data: bytes) -> None:
        try:
            self._chan.sendall(data)
        except (EOFError, paramiko.SSHException) as exc:  # paramiko's "transport is gone"
            raise OSError(f"SSH connection lost ({type(exc).__name__}: {exc})") from exc

    def close_stdin(self) -> None:
        if not self._chan.closed:
            with contextlib.suppress(EOFError, paramiko.SSHException, OSError):
                self._chan.shutdown_write()  # on a dead transport: nothing left to close

    def read(self, size: int = 65536) -> bytes:
        return self._out.read1(size) if size else b""

    def readline(self) -> bytes:
        return self._out.readline()

    def wait(self) -> CommandResult:
        self.close_stdin()
        rest = self._out.read()
        code = self._chan.recv_exit_status()
        err = b""
        while True:
            chunk = self._chan.recv_stderr(65536)
            if not chunk:
                break
            err += chunk
        self._chan.close()
        return CommandResult(code, rest, err)

    def kill(self) -> None:
        self._chan.close()


#: how to trust a first-seen host key, for a host of the spec (``opt_in``); the commands
#: that take a connection string instead (``init``, ``queue``) say their option
SPEC_OPT_IN = "set accept_new_host_key: true on this host in the spec"
OPTION_OPT_IN = "run again with --accept-new-host-key"
#: paramiko's words (by a race of its thread) when no SSH banner came in time
NO_SSH_SERVER = ("Error reading SSH protocol banner", "No existing session")

class SSHConnector(Connector):
    """A host reached over SSH; see the module docstring for host-key handling."""

    def __init__(
        self,
        name: str,
        *,
        address: str,
        user: str | None = None,
        port: int | None = None,
        identity_file: str | None = None,
        known_hosts: str | None = None,
        accept_new_host_key: bool = False,
        connect_timeout: int = 15,
        sudo: bool = False,
        stream_transport: str = "auto",
        python: str = DEFAULT_PYTHON,
        opt_in: str = SPEC_OPT_IN,
        command_timeout: int | None = DEFAULT_COMMAND_TIMEOUT,
    ) -> None:
        super().__init__(name, sudo=sudo, python=python, command_timeout=command_timeout)
        self._opt_in = opt_in
        if stream_transport not in STREAM_TRANSPORTS:
            raise ValueError(f"stream_transport must be one of {STREAM_TRANSPORTS}")
        # connect_timeout bounds the wait for the SSH banner too (as OpenSSH's does)
        kwargs: dict[str, object] = {"allow_agent": True, "banner_timeout": connect_timeout}
        if identity_file:
            kwargs["key_filename"] = [os.path.expanduser(identity_file)]
        self._conn = Connection(
            host=address, user=user, port=port, config=Config(),
            connect_kwargs=kwargs, connect_timeout=connect_timeout,
        )
        default_known = Path(os.path.expanduser("~/.ssh/known_hosts"))
        self._known_hosts = Path(os.path.expanduser(known_hosts)) if known_hosts else default_known
        # the host and every ProxyJump hop before it (Fabric makes each hop a Connection
        # of its own, whose client would accept any key)
        hop: object = self._conn
        while isinstance(hop, Connection):
            client = hop.client
            revoked = known_hosts_file.load(client.get_host_keys(), dict.fromkeys(
                (default_known, self._known_hosts)), name)
            client.set_missing_host_key_policy(
                AcceptNewPolicy(self._known_hosts, revoked, name, "accept_new_host_key"
                                if opt_in == SPEC_OPT_IN else "--accept-new-host-key")
                if accept_new_host_key else RejectPolicy(revoked))
            hop = hop.gateway
        # where Fabric connects: ~/.ssh/config's HostName and Port apply (the
        # known_hosts name is made of them)
        self._host_port = (str(self._conn.host), int(self._conn.port))
        self._address = ":".join(map(str, self._host_port)) + (
            f" ({address} in ~/.ssh/config)" if self._conn.host != address else "")
        self._kept_alive: paramiko.Transport | None = None
        self._stream_mode = stream_transport
        self._streams: OpenSSHStreams | None = None
        self._streams_checked = stream_transport == "paramiko"
        self._streams_lock = threading.Lock()
        self._preparing: threading.Thread | None = None
        self._prepare_error: Exception | None = None
        self._streams_args = {"address": address, "user": user, "port": port,
                              "identity_file": identity_file, "connect_timeout": connect_timeout}
        #: how streams travel: "openssh", or "paramiko" with the reason
        self.stream_transport = "paramiko" if stream_transport == "paramiko" else "undecided"

    def _known_name(self) -> str:
        """This host as known_hosts names it (``[host]:port`` off port 22)."""
        host, port = self._host_port
        return host if port == 22 else f"[{host}]:{port}"

    def _transport(self) -> paramiko.Transport:
        if not self._conn.is_connected:
            if self._streams_args["identity_file"]:  # missing, or no private key: said
                check_identity(os.path.expanduser(str(self._streams_args["identity_file"])),
                               host=self.name, spec=self._opt_in == SPEC_OPT_IN)
            try:
                self._conn.open()
            except paramiko.BadHostKeyException as exc:
                raise HostKeyError(
                    f"the SSH host key of {self._address} has CHANGED (got "
                    f"{exc.key.get_name()} {sha256_fingerprint(exc.key)}); refusing to "
                    "connect", host=self.name,
                    hint="if the server was really reinstalled (compare with `ssh-keygen "
                    "-lf` of its host key there), remove its old key from "
                    f"{self._known_hosts} and connect again",
                ) from None
            except UnknownKey as exc:  # every hop's policy is RejectPolicy or accept-new
                which = self._address if exc.hostname in ("", self._known_name()) else (
                    f"{exc.hostname} (a ProxyJump hop to {self._address})")
                raise HostKeyError(
                    f"the SSH host key of {which} is "
                    f"{'REVOKED in known_hosts' if exc.revoked else 'unknown'} (it offered "
                    f"{exc.offered}); refusing to connect", host=self.name,
                    hint="the key is on a @revoked line: the server needs a new host key"
                    if exc.revoked else f"add the key to {self._known_hosts} (ssh-keyscan, "
                    f"then check its fingerprint), or {self._opt_in}",
                ) from None
            except paramiko.SSHException as exc:
                raise self._failed(exc) from None
            except OSError as exc:
                where = "in the spec" if self._opt_in == SPEC_OPT_IN else \
                    "in the connection string (ssh://user@host:port)"
                raise ConnectionLost(f"cannot connect to {self._address}: {_why(exc)}",
                                     host=self.name, hint="check the host's address and port "
                                     f"{where}, that its sshd runs, and that no firewall "
                                     "is in the way") from None
        transport = self._conn.transport
        assert transport is not None
        if transport is not self._kept_alive:
            _keep_alive(transport)
            self._kept_alive = transport
        return transport

    def _failed(self, exc: paramiko.SSHException) -> HostError:
        """paramiko's failure to log in, in words with what to check ("Authentication
        failed." names no login or key; a port with no sshd: "No existing session")."""
        login, spec = f"{self._conn.user}@{self._address}", self._opt_in == SPEC_OPT_IN
        key = os.path.expanduser(str(self._streams_args["identity_file"] or ""))
        if key and (real := masked(key, exc)) is not exc:  # what the last key type hid
            if not isinstance(real, paramiko.AuthenticationException):
                return HostError(f"cannot use the SSH identity file {key} ("
                                 f"{'identity_file in the spec' if spec else '--identity'}"
                                 f"): {real}", host=self.name, hint="give an Ed25519, "
                                 "ECDSA or RSA private key (paramiko reads no other)")
            exc = real
        if isinstance(exc, paramiko.PasswordRequiredException):
            return HostError(f"SSH login as {login}: the private key is encrypted ({exc})",
                             host=self.name, hint="mailplan asks for no passphrase: load "
                             "the key into ssh-agent (ssh-add KEY) and run again")
        if isinstance(exc, paramiko.AuthenticationException):
            where = ("user and identity_file of this host in the spec" if spec else
                     "the user in ssh://user@host and --identity")
            return HostError(f"SSH login as {login} refused: {exc}", host=self.name,
                             hint="mailplan logs in with a key only (identity_file, "
                             f"ssh-agent, ~/.ssh/id_*), never a password: check {where}, "
                             "and that the key's public half is in that user's "
                             "~/.ssh/authorized_keys on the host (`ssh USER@HOST true` "
                             "with the same key must log in)")
        if str(exc).startswith(NO_SSH_SERVER):
            return HostError(f"SSH connection to {self._address} failed: the host accepted "
                             f"the connection but no SSH server answered on it ({exc})",
                             host=self.name, hint="check that the port is sshd's, that "
                             "sshd runs there and accepts this machine (MaxStartups, "
                             "/etc/hosts.deny), and that nothing in between holds or drops "
                             "the connection")
        return HostError(f"SSH connection to {self._address} failed: {exc}", host=self.name)

    def wrap(self, command: str) -> str:
        """The command as sent: under sudo when asked, then in :func:`portable` form, so
        that whatever the login shell sshd runs it with (csh, tcsh and fish read sh
        lines otherwise), ``/bin/sh`` reads it as written. The session shell's own start
        line reads alike in all of them and is sent as it is (it shows in ``ps``)."""
        from mailplan.remote import SHELL  # remote builds on the connectors

        line = super().wrap(command)
        return line if command == SHELL else portable(line)

    def start(self, command: str) -> Process:
        transport = self._transport()
        try:
            channel = transport.open_session()
            self.channels_opened += 1
            channel.exec_command(self.wrap(command))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectionLost(f"cannot open an SSH channel: {exc}", host=self.name) from None
        return self._track(SSHProcess(channel))

    def prepare_streams(self) -> None:
        """Probe the OpenSSH stream path on a thread (its ssh login takes as long as a
        command or two); the first stream waits for it."""
        if not self._streams_checked and self._preparing is None:
            self._transport()  # connected (and the host key checked) in this thread
            self._preparing = threading.Thread(target=self._prepare, daemon=True,
                                               name=f"mailplan-ssh-probe-{self.name}")
            self._preparing.start()

    def _prepare(self) -> None:
        try:
            self._open_streams()
        except Exception as exc:  # noqa: BLE001 - the first stream raises it again
            self._prepare_error = exc

    def _open_streams(self) -> OpenSSHStreams | None:
        """The OpenSSH stream path, probed once (after Fabric has checked the host key);
        parallel mail workers wait for the probe instead of racing past it."""
        with self._streams_lock:
            if self._prepare_error is not None:  # the background probe failed: say why now
                exc, self._prepare_error = self._prepare_error, None
                self._streams_checked = False
                raise exc
            return self._probe_streams()

    def _probe_streams(self) -> OpenSSHStreams | None:
        if not self._streams_checked:
            self._streams_checked = True
            self._transport()  # host key verified (and saved, if accepted) by Fabric first
            # the files Fabric trusts, read now: accept_new_host_key may just have written one
            files = (self._known_hosts, Path(os.path.expanduser("~/.ssh/known_hosts")))
            known = list(dict.fromkeys(str(p) for p in files if p.exists()))
            streams = OpenSSHStreams(known_hosts=known, **self._streams_args)  # type: ignore[arg-type]
            started = time.monotonic()
            why_not = streams.probe()
            if self.observer is not None:
                self.observer("ssh -o BatchMode=yes ... -N (can the OpenSSH client log in?)",
                              CommandResult(0 if why_not is None else 1, b"",
                                            (why_not or "").encode()),
                              time.monotonic() - started,
                              "mail streams: " + ("openssh" if why_not is None else "paramiko"))
            if why_not is None:
                self._streams, self.stream_transport = streams, "openssh"
            else:
                streams.close()
                if self._stream_mode == "openssh":
                    raise HostError(f"stream_transport is openssh but {why_not}",
                                    host=self.name,
                                    hint="let ssh log in with a key and the same known_hosts "
                                    "file, or set stream_transport: auto")
                self.stream_transport = f"paramiko ({why_not})"
        return self._streams

    def stream_path(self) -> str:
        return "OpenSSH" if self._streams is not None else "Fabric (paramiko)"

    def _start_stream(self, command: str) -> Process:
        streams = self._open_streams()
        if streams is None:
            return self.start(command)
        try:
            proc = streams.start(self.wrap(command))
        except OSError as exc:
            raise ConnectionLost(f"cannot start ssh: {exc}", host=self.name) from None
        self.channels_opened += 1
        return self._track(proc)

    def close(self) -> None:
        super().close()
        if self._preparing is not None and not self.aborted:
            # after abort() it is left to end by itself (a daemon thread; the master it
            # may start stops at exit or after ControlPersist)
            self._preparing.join()
        self._preparing = None
        if self._streams is not None:
            self._streams.close()
            self._streams = None
        self._conn.close()


#: seconds between keepalives on an idle control connection (as ServerAliveInterval on
#: the OpenSSH streams)
KEEPALIVE_SECONDS = 15


def _keep_alive(transport: paramiko.Transport) -> None:
    """Keep an idle control connection alive and notice when it is gone: an SSH
    keepalive every :data:`KEEPALIVE_SECONDS` (a NAT or firewall does not drop the
    connection while a long step runs, and a dead peer fails the writes, so the
    transport closes instead of waiting forever), plus TCP keepalives."""
    transport.set_keepalive(KEEPALIVE_SECONDS)
    sock = transport.sock
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # type: ignore[union-attr]
        for name, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4)):
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)  # type: ignore[union-attr]


def _why(exc: OSError) -> str:
    """Why a connection failed, in words (paramiko's NoValidConnectionsError says
    "[Errno None] Unable to connect to port 22 on ..." around the real reasons)."""
    errors = getattr(exc, "errors", None)
    if isinstance(errors, dict) and errors:
        return "; ".join(sorted({str(e.strerror or e).lower() for e in errors.values()}))
    return exc.strerror.lower() if exc.strerror else str(exc)
