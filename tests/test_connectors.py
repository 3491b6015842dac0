"""Connectors against real processes: the local shell and the test sshd."""

from __future__ import annotations

import pytest

from mailplan.connectors.local import LocalConnector
from mailplan.connectors.ssh import SSHConnector
from mailplan.errors import HostKeyError


def _roundtrip(conn):
    res = conn.run("cat; printf 'err' >&2; exit 7", stdin=b"a\0b\n" * 1000)
    assert res.returncode == 7
    assert res.stdout == b"a\0b\n" * 1000
    assert res.stderr == b"err"


def test_local_roundtrip():
    _roundtrip(LocalConnector("local"))


def test_ssh_roundtrip(ssh_connector):
    _roundtrip(ssh_connector)
    assert ssh_connector.channels_opened == 1


def test_ssh_streams_large_output(ssh_connector):
    proc = ssh_connector.start("head -c 20000000 /dev/zero")
    total = 0
    while chunk := proc.read(1 << 16):
        total += len(chunk)
    assert total == 20_000_000
    assert proc.wait().returncode == 0


def test_unknown_host_key_refused(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    conn = SSHConnector("newhost", address="127.0.0.1", port=sshd.port, user=sshd.user,
                        identity_file=str(sshd.client_key), known_hosts=str(empty))
    with pytest.raises(HostKeyError, match="unknown; refusing") as info:
        conn.run("true")
    assert "accept_new_host_key" in str(info.value)


def test_accept_new_host_key_opt_in_saves_key(sshd, tmp_path):
    kh = tmp_path / "known_hosts"
    conn = SSHConnector("newhost", address="127.0.0.1", port=sshd.port, user=sshd.user,
                        identity_file=str(sshd.client_key), known_hosts=str(kh),
                        accept_new_host_key=True)
    assert conn.run("echo hi").stdout == b"hi\n"
    conn.close()
    assert sshd.host_pubkey.split()[1] in kh.read_text()


def test_changed_host_key_refused_even_with_opt_in(sshd, tmp_path):
    kh = tmp_path / "known_hosts"
    other = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")
    kh.write_text(f"[127.0.0.1]:{sshd.port} {other}\n")
    conn = SSHConnector("h", address="127.0.0.1", port=sshd.port, user=sshd.user,
                        identity_file=str(sshd.client_key), known_hosts=str(kh),
                        accept_new_host_key=True)
    with pytest.raises(HostKeyError, match="CHANGED"):
        conn.run("true")
