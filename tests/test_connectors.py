"""Connectors against real processes: the local shell and the test sshd."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from tools import require

from mailplan.connectors.local import LocalConnector
from mailplan.connectors.openssh import OpenSSHStreams
from mailplan.connectors.ssh import OPTION_OPT_IN, SSHConnector
from mailplan.errors import HostError, HostKeyError


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


def _answers_while_reading(conn):
    """Input given in pieces is written while the output is read: ``cat`` answers each
    piece as it comes, and 16 MB each way is far more than the pipes and the SSH
    window hold, so writing it all before reading (as a whole stdin is) would hang."""
    pieces = (bytes([65 + n % 26]) * (1 << 16) for n in range(256))
    got = bytearray()

    def read(proc):
        while chunk := proc.read(1 << 16):
            got.extend(chunk)

    res = conn.run("cat; echo done >&2", stdin=pieces, read=read)
    assert (res.returncode, res.stderr) == (0, b"done\n")
    assert len(got) == 256 << 16
    assert bytes(got[::1 << 16]) == bytes(65 + n % 26 for n in range(256))


def test_local_stdin_in_pieces_is_written_while_the_output_is_read():
    _answers_while_reading(LocalConnector("local"))


def test_ssh_stdin_in_pieces_is_written_while_the_output_is_read(ssh_connector):
    _answers_while_reading(ssh_connector)


def test_stdin_pieces_that_fail_stop_the_command_and_raise():
    """A piece that cannot be made stops the command (no more input reaches it) and
    the error is raised once its output ended."""
    def pieces():
        yield b"first\n"
        raise RuntimeError("cannot make the next piece")

    lines = []
    with pytest.raises(RuntimeError, match="next piece"):
        LocalConnector("local").run("cat; echo all-read", stdin=pieces(),
                                    read=lambda proc: lines.extend(iter(proc.readline, b"")))
    assert lines in ([], [b"first\n"])


def keygen_fingerprint(pubkey: str) -> str:
    """``SHA256:...`` of a public key line, as ``ssh-keygen -lf`` prints it."""
    keygen = require(shutil.which("ssh-keygen"), "ssh-keygen (openssh-client)")
    printed = subprocess.run([keygen, "-lf", "-"], input=pubkey + "\n", capture_output=True,
                             text=True, check=True).stdout.split()[1]
    assert printed.startswith("SHA256:")
    return printed


def test_unknown_host_key_refused(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    conn = SSHConnector("newhost", address="127.0.0.1", port=sshd.port, user=sshd.user,
                        identity_file=str(sshd.client_key), known_hosts=str(empty))
    with pytest.raises(HostKeyError, match="is unknown") as info:
        conn.run("true")
    assert "set accept_new_host_key: true on this host in the spec" in str(info.value)
    # the key offered, as `ssh-keygen -lf` prints it on the server: what the admin
    # compares before trusting it
    assert f"is unknown (it offered ssh-ed25519 {keygen_fingerprint(sshd.host_pubkey)}); " \
        "refusing to connect" in str(info.value), str(info.value)


def test_known_hosts_markers_and_bad_lines_are_read_as_openssh_reads_them(sshd, tmp_path):
    """paramiko's loader raised InvalidHostKey (a traceback) at a @cert-authority or
    @revoked line, or a line it cannot decode. Now those lines are passed over, as
    OpenSSH does, but a @revoked key is never trusted, even where another line lists it,
    nor accepted as new."""
    key = sshd.host_pubkey
    kh = tmp_path / "known_hosts"
    kh.write_text(f"@cert-authority *.example.com {key}\nbroken line\n"
                  f"[127.0.0.1]:{sshd.port}  {key}\n")  # two spaces: OpenSSH reads it too
    conn = SSHConnector("newhost", address="127.0.0.1", port=sshd.port, user=sshd.user,
                        identity_file=str(sshd.client_key), known_hosts=str(kh),
                        stream_transport="paramiko")
    assert conn.run("echo ok").stdout == b"ok\n"
    conn.close()
    kh.write_text(f"@revoked * {key}\n[127.0.0.1]:{sshd.port} {key}\n")
    for accept in (False, True):
        conn = SSHConnector("newhost", address="127.0.0.1", port=sshd.port,
                            user=sshd.user, identity_file=str(sshd.client_key),
                            known_hosts=str(kh), accept_new_host_key=accept)
        with pytest.raises(HostKeyError, match=r"is REVOKED in known_hosts \(it offered "
                           r"ssh-ed25519 SHA256:\S+\); refusing to connect\n  hint: the key "
                           "is on a @revoked line"):
            conn.run("true")
    assert kh.read_text() == f"@revoked * {key}\n[127.0.0.1]:{sshd.port} {key}\n"


def test_a_missing_identity_file_is_said_so_not_taken_for_a_lost_connection(sshd, tmp_path):
    """paramiko's FileNotFoundError for the key was reported as "cannot connect to
    127.0.0.1:PORT: no such file or directory" with a hint about the address, port and
    firewall, and as a ConnectionLost it was retried as a transient failure."""
    from mailplan.errors import ConnectionLost

    missing = tmp_path / "no_such_key"
    conn = SSHConnector("newhost", address="127.0.0.1", port=sshd.port, user=sshd.user,
                        identity_file=str(missing), known_hosts=str(sshd.known_hosts))
    with pytest.raises(HostError) as info:
        conn.run("true")
    assert not isinstance(info.value, ConnectionLost)
    assert str(info.value) == (
        f"host newhost: cannot read the SSH identity file {missing} (identity_file in the "
        "spec): no such file or directory\n  hint: give the private key's path (a relative "
        "one is relative to the spec)")
    conn = SSHConnector("newhost", address="127.0.0.1", port=sshd.port, user=sshd.user,
                        identity_file=str(missing), known_hosts=str(sshd.known_hosts),
                        opt_in=OPTION_OPT_IN)
    with pytest.raises(HostError, match=r"\(--identity\): no such file or directory\n  "
                       "hint: .* relative to this directory"):
        conn.run("true")


def test_an_identity_file_that_is_no_private_key_is_said_so_naming_it(sshd, tmp_path):
    """The public half given as the key (id_ed25519.pub), an empty file, a text: paramiko
    said only "SSH connection to HOST failed: not a valid OPENSSH private key file" (or
    "no lines in OPENSSH private key file"), naming neither the file nor the fix."""
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                   check=True)
    lone = tmp_path / "lone.pub"
    lone.write_bytes(Path(f"{key}.pub").read_bytes())
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("my key is elsewhere\n")
    (tmp_path / "pem.pub").write_text("-----BEGIN PUBLIC KEY-----\nMCow\n-----END PUBLIC "
                                      "KEY-----\n")

    def error(path: Path, opt_in: str | None = None) -> str:
        conn = SSHConnector("newhost", address="127.0.0.1", port=sshd.port, user=sshd.user,
                            identity_file=str(path), known_hosts=str(sshd.known_hosts),
                            **({"opt_in": opt_in} if opt_in else {}))
        with pytest.raises(HostError) as info:
            conn.run("true")
        return str(info.value)

    public = "is a public key (the .pub half of a key pair): mailplan logs in with the " \
        "private key\n  hint: give the private key instead"
    assert error(Path(f"{key}.pub")) == (
        f"host newhost: the SSH identity file {key}.pub (identity_file in the spec) "
        f"{public}: {key}, if that is its other half")
    assert error(lone, OPTION_OPT_IN) == (
        f"host newhost: the SSH identity file {lone} (--identity) {public} (the same name "
        "without .pub)")
    assert error(tmp_path / "pem.pub").endswith(f"{public} (the same name without .pub)")
    private = ("\n  hint: give the private key's path (the file that starts with "
               "'-----BEGIN OPENSSH PRIVATE KEY-----', as ssh-keygen writes it)")
    assert error(tmp_path / "empty") == (
        f"host newhost: the SSH identity file {tmp_path / 'empty'} (identity_file in the "
        f"spec) is empty: it holds no private key{private}")
    assert error(tmp_path / "notes.txt") == (
        f"host newhost: the SSH identity file {tmp_path / 'notes.txt'} (identity_file in "
        f"the spec) holds no private key (no '-----BEGIN ... PRIVATE KEY-----' line)"
        f"{private}")
    # the private key itself gets as far as the login (refused: not authorized there)
    assert "SSH login as " in error(key) and " refused: Authentication failed." in error(key)


@pytest.mark.parametrize("keygen", [["-t", "rsa", "-b", "2048"], ["-t", "ecdsa"],
                                    ["-t", "rsa", "-b", "2048", "-m", "PEM"],
                                    ["-t", "ecdsa", "-m", "PEM"]])
def test_an_rsa_or_ecdsa_key_the_host_refuses_is_said_refused_not_an_invalid_key(
        sshd, tmp_path, keygen):
    """paramiko tries a key file as RSA, ECDSA, then Ed25519 and raises the last error:
    an RSA or ECDSA key the host refused came out as "SSH connection to HOST failed:
    Invalid key" (or "encountered RSA key, expected OPENSSH key" for a PEM one), without
    the login's hint; one with a passphrase the same, not "the private key is
    encrypted". A file no key type reads names the file."""
    key, locked = tmp_path / "key", tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", *keygen, "-N", "", "-f", str(key)], check=True)
    subprocess.run(["ssh-keygen", "-q", *keygen, "-N", "pass phrase", "-f", str(locked)],
                   check=True)

    def error(path: Path) -> str:
        conn = SSHConnector("newhost", address="127.0.0.1", port=sshd.port, user=sshd.user,
                            identity_file=str(path), known_hosts=str(sshd.known_hosts))
        with pytest.raises(HostError) as info:
            conn.run("true")
        return str(info.value)

    assert error(key).startswith(f"host newhost: SSH login as {sshd.user}@127.0.0.1:"
                                 f"{sshd.port} refused: Authentication failed.\n  hint: "
                                 "mailplan logs in with a key only"), error(key)
    assert re.search(r": the private key is encrypted \(.*\)\n  hint: mailplan asks for no "
                     "passphrase", error(locked)), error(locked)
    bad = tmp_path / "bad"
    bad.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE "
                   "KEY-----\n")
    assert error(bad).startswith(f"host newhost: cannot use the SSH identity file {bad} "
                                 "(identity_file in the spec): "), error(bad)
    assert error(bad).endswith("hint: give an Ed25519, ECDSA or RSA private key (paramiko "
                               "reads no other)"), error(bad)


def test_unknown_host_key_hint_of_a_connection_string_names_the_option(sshd, tmp_path):
    # queue and init take ssh://... on the command line: there is no spec to edit
    from mailplan.queue.host import HostOptions, connect_host

    empty = tmp_path / "known_hosts"
    empty.write_text("")
    options = HostOptions(identity=str(sshd.client_key), known_hosts=str(empty))
    conn = connect_host(f"ssh://{sshd.user}@127.0.0.1:{sshd.port}", options)
    with pytest.raises(HostKeyError,
                       match=r"is unknown \(it offered ssh-ed25519 SHA256:\S+\); refusing") as info:
        conn.run("true")
    assert "run again with --accept-new-host-key" in str(info.value)
    assert "in the spec" not in str(info.value)


def test_accept_new_host_key_opt_in_saves_key(sshd, tmp_path):
    kh = tmp_path / "known_hosts"
    conn = SSHConnector("newhost", address="127.0.0.1", port=sshd.port, user=sshd.user,
                        identity_file=str(sshd.client_key), known_hosts=str(kh),
                        accept_new_host_key=True)
    assert conn.run("echo hi").stdout == b"hi\n"
    conn.close()
    assert sshd.host_pubkey.split()[1] in kh.read_text()


def test_accept_new_host_key_makes_a_missing_ssh_directory_private(sshd, tmp_path):
    """A first-seen key saved where ~/.ssh did not exist yet made it 0755 (the umask's),
    where ssh makes it 0700."""
    kh = tmp_path / "home/.ssh/known_hosts"
    conn = SSHConnector("newhost", address="127.0.0.1", port=sshd.port, user=sshd.user,
                        identity_file=str(sshd.client_key), known_hosts=str(kh),
                        accept_new_host_key=True)
    assert conn.run("true").returncode == 0
    conn.close()
    assert kh.parent.stat().st_mode & 0o777 == 0o700
    assert sshd.host_pubkey.split()[1] in kh.read_text()


def test_accept_new_host_key_makes_a_known_hosts_file_no_one_else_may_write(sshd, tmp_path):
    """A first-seen key saved where the known_hosts file did not exist yet made it with
    the umask's mode: 0666 under umask 000, where any local user could then add a key
    of their own for the target (and read its traffic). It is made 0644 whatever the
    umask; an existing file keeps its mode."""
    kh = tmp_path / "known_hosts"
    old = os.umask(0)
    try:
        conn = SSHConnector("newhost", address="127.0.0.1", port=sshd.port, user=sshd.user,
                            identity_file=str(sshd.client_key), known_hosts=str(kh),
                            accept_new_host_key=True)
        assert conn.run("true").returncode == 0
        conn.close()
    finally:
        os.umask(old)
    assert kh.stat().st_mode & 0o777 == 0o644
    assert sshd.host_pubkey.split()[1] in kh.read_text()


def test_changed_host_key_refused_even_with_opt_in(sshd, tmp_path):
    kh = tmp_path / "known_hosts"
    other = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")
    kh.write_text(f"[127.0.0.1]:{sshd.port} {other}\n")
    conn = SSHConnector("h", address="127.0.0.1", port=sshd.port, user=sshd.user,
                        identity_file=str(sshd.client_key), known_hosts=str(kh),
                        accept_new_host_key=True)
    with pytest.raises(HostKeyError, match="CHANGED") as info:
        conn.run("true")
    # the key offered, as OpenSSH prints it: what the admin compares with `ssh-keygen -lf`
    # on the server (docs/troubleshooting.md), not paramiko's MD5 hex digits
    printed = keygen_fingerprint(sshd.host_pubkey)
    assert f"(got ssh-ed25519 {printed}); refusing" in str(info.value), str(info.value)


def _stream_bytes(proc) -> int:
    total = 0
    while chunk := proc.read(1 << 16):
        total += len(chunk)
    return total


def _sessions(sshd) -> set[str]:
    return set(subprocess.run(["pgrep", "-P", str(sshd.process.pid)], capture_output=True,
                              text=True, check=False).stdout.split())


def test_ssh_streams_go_through_openssh_multiplexed(sshd):
    before = _sessions(sshd)
    conn = SSHConnector("host", address="127.0.0.1", port=sshd.port, user=sshd.user,
                        identity_file=str(sshd.client_key), known_hosts=str(sshd.known_hosts))
    seen: list[tuple[str, int, str]] = []
    conn.observer = lambda cmd, res, secs, note: seen.append(
        (cmd, None if res is None else res.returncode, note))
    procs = [conn.start_stream(f"head -c {n} /dev/zero; echo oops >&2; exit 3")
             for n in (5_000_000, 7)]
    assert conn.stream_transport == "openssh"
    assert [(r, n) for c, r, n in seen if "OpenSSH client log in" in c] == [
        (0, "mail streams: openssh")]  # the apply log says which transport streams use
    assert [(c, r, n) for c, r, n in seen if c.startswith("head")] == [
        (f"head -c {n} /dev/zero; echo oops >&2; exit 3", None, "stream over OpenSSH")
        for n in (5_000_000, 7)]
    assert [_stream_bytes(p) for p in procs] == [5_000_000, 7]
    assert [(r.returncode, r.stderr) for r in (p.wait() for p in procs)] == [(3, b"oops\n")] * 2
    assert [(r, n) for c, r, n in seen if c.startswith("head") and r is not None] == [
        (3, "stream: 5000000 B out, 0 B in"), (3, "stream: 7 B out, 0 B in")]
    # stdin reaches the remote command; the master serves every stream on one connection
    proc = conn.start_stream("wc -c")
    proc.write(b"x" * 3_000_000)
    proc.close_stdin()
    assert proc.wait().stdout.strip() == b"3000000"
    assert len(_sessions(sshd) - before) == 2  # Fabric's connection and one OpenSSH master
    socket_dir = conn._streams._dir  # type: ignore[union-attr]
    conn.close()
    assert not os.path.exists(socket_dir)


def test_ssh_stream_reports_a_lost_connection_as_oserror(sshd):
    conn = SSHConnector("host", address="127.0.0.1", port=sshd.port, user=sshd.user,
                        identity_file=str(sshd.client_key), known_hosts=str(sshd.known_hosts))
    proc = conn.start_stream("echo running; exec sleep 30")
    assert conn.stream_transport == "openssh"
    # wait until the command runs on the server: killed earlier, the ssh client would
    # quietly open a fresh connection for it (a race, not the drop under test)
    assert proc.readline() == b"running\n"
    sshd.kill_sessions()
    with pytest.raises(OSError, match="SSH connection lost"):
        proc.wait()
    # the next stream starts a new master (Fabric's own connection needs its retry logic)
    assert _stream_bytes(conn.start_stream("echo back")) == 5
    conn.close()


def test_ssh_streams_fall_back_to_paramiko_or_fail_as_configured(sshd, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no ssh client on PATH
    args = {"address": "127.0.0.1", "port": sshd.port, "user": sshd.user,
            "identity_file": str(sshd.client_key), "known_hosts": str(sshd.known_hosts)}
    auto = SSHConnector("host", **args)
    assert _stream_bytes(auto.start_stream("head -c 1000 /dev/zero")) == 1000
    assert auto.stream_transport == "paramiko (no ssh client installed)"
    auto.close()
    strict = SSHConnector("host", stream_transport="openssh", **args)
    with pytest.raises(HostError, match="stream_transport is openssh but no ssh client"):
        strict.start_stream("true")
    strict.close()
    # probed in the background beforehand: the first stream raises what the probe found
    early = SSHConnector("host", stream_transport="openssh", **args)
    early.prepare_streams()
    with pytest.raises(HostError, match="stream_transport is openssh but no ssh client"):
        early.start_stream("true")
    early.close()


def test_prepare_streams_probes_openssh_in_the_background(sshd):
    conn = SSHConnector("host", address="127.0.0.1", port=sshd.port, user=sshd.user,
                        identity_file=str(sshd.client_key), known_hosts=str(sshd.known_hosts))
    seen: list[str] = []
    conn.observer = lambda cmd, res, secs, note: seen.append(cmd)
    conn.prepare_streams()
    assert conn.run("echo meanwhile").stdout == b"meanwhile\n"  # commands go on meanwhile
    conn._preparing.join(30)  # type: ignore[union-attr]
    assert conn.stream_transport == "openssh"  # decided before any stream started
    assert [c for c in seen if "OpenSSH client log in" in c] != []
    assert _stream_bytes(conn.start_stream("head -c 10 /dev/zero")) == 10
    assert len([c for c in seen if "OpenSSH client log in" in c]) == 1  # probed once
    conn.close()


def test_openssh_streams_check_host_keys_like_fabric(sshd, tmp_path):
    # the key Fabric trusts is in the spec's known_hosts file only; ssh must use that file
    # and nothing else: with another key for the host there, it refuses to log in
    other = tmp_path / "known_hosts"
    other.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 "
                     "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
    streams = OpenSSHStreams(address="127.0.0.1", user=sshd.user, port=sshd.port,
                             identity_file=str(sshd.client_key), known_hosts=[str(other)],
                             connect_timeout=10)
    why = streams.probe()
    streams.close()
    assert why is not None and "could not log in" in why
    good = OpenSSHStreams(address="127.0.0.1", user=sshd.user, port=sshd.port,
                          identity_file=str(sshd.client_key), known_hosts=[str(sshd.known_hosts)],
                          connect_timeout=10)
    assert good.probe() is None
    good.close()


def test_socket_dirs_left_by_a_killed_mailplan_are_swept(sshd, monkeypatch):
    """``kill -9`` skips the clean-up; the next mailplan removes a directory whose process
    and master are gone, and leaves those of running processes and live masters alone."""
    # a short directory: the master's socket path must fit a sockaddr_un (108 bytes)
    tmp_path = Path(tempfile.mkdtemp(prefix="mp-sweep-"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"mailplan-ssh-{dead.pid}-abc"
    running = tmp_path / f"mailplan-ssh-{os.getpid()}-def"
    master = tmp_path / f"mailplan-ssh-{dead.pid}-ghi"
    other = tmp_path / "mailplan-ssh-notapid"
    for path in (stale, running, master, other):
        path.mkdir()
    (master / "master").write_text("")  # stands for a master still listening
    streams = OpenSSHStreams(address="127.0.0.1", user=sshd.user, port=sshd.port,
                             identity_file=str(sshd.client_key),
                             known_hosts=[str(sshd.known_hosts)], connect_timeout=10)
    assert streams.probe() is None
    mine = [p for p in tmp_path.iterdir() if (p / "master").is_socket()]
    assert len(mine) == 1 and mine[0].name.startswith(f"mailplan-ssh-{os.getpid()}-")
    assert not stale.exists() and running.exists() and master.exists() and other.exists()
    streams.close()
    assert not mine[0].exists()
    shutil.rmtree(tmp_path)


def _recorder(conn) -> list[tuple[str, int | None, bytes, float, str]]:
    seen: list[tuple[str, int | None, bytes, float, str]] = []
    conn.observer = lambda cmd, res, secs, note: seen.append(
        (cmd, None if res is None else res.returncode, b"" if res is None else res.stderr,
         secs, note))
    return seen


def test_run_is_logged_with_duration_and_result_never_its_stdin():
    conn = LocalConnector("here")
    seen = _recorder(conn)
    res = conn.run("cat >/dev/null; sleep 0.05; echo bad >&2; exit 5", stdin=b"hunter2\n")
    assert res.returncode == 5
    ((cmd, code, err, secs, note),) = seen
    assert (cmd, code, err, note) == (
        "cat >/dev/null; sleep 0.05; echo bad >&2; exit 5", 5, b"bad\n", "")
    assert secs >= 0.05


def test_a_stream_end_is_logged_once_even_if_killed_after_it_ended():
    conn = LocalConnector("here")
    seen = _recorder(conn)
    proc = conn.start_stream("printf abc", display="the stream")
    assert proc.read() == b"abc"
    assert proc.wait().returncode == 0
    proc.kill()  # what an error path does to a stream that may still run
    assert [(c, r, n) for c, r, _e, _s, n in seen] == [
        ("the stream", None, "stream over a local pipe"),
        ("the stream", 0, "stream: 3 B out, 0 B in")]
    stopped = conn.start_stream("sleep 30")
    stopped.kill()
    stopped.kill()
    assert [(r, e, n) for c, r, e, _s, n in seen if c == "sleep 30"] == [
        (None, b"", "stream over a local pipe"),
        (-1, b"stopped by mailplan", "stream: 0 B out, 0 B in, stopped")]


def test_commands_that_cannot_start_are_logged_with_the_error(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    conn = SSHConnector("newhost", address="127.0.0.1", port=sshd.port, user=sshd.user,
                        identity_file=str(sshd.client_key), known_hosts=str(empty))
    seen = _recorder(conn)
    with pytest.raises(HostKeyError):
        conn.run("true")
    with pytest.raises(HostKeyError):
        conn.start_stream("head -c 10 /dev/zero", display="the source read")
    assert [(c, r, n) for c, r, _e, _s, n in seen] == [
        ("true", -1, "could not start"), ("the source read", -1, "stream could not start")]
    assert all(re.search(rb"is unknown \(it offered ssh-ed25519 SHA256:\S+\); refusing", e)
               for _c, _r, e, _s, _n in seen)


def test_local_streams_are_read_through_a_large_pipe():
    """Stream output arrives in reads of up to 1 MiB (the mbox reader copies its buffer
    per read); where Linux refuses the size, the default pipe still works."""
    import fcntl

    from mailplan.connectors.local import PIPE_SIZE

    proc = LocalConnector("here").start_stream("head -c 3000000 /dev/zero")
    size = fcntl.fcntl(proc._stdout.fileno(), fcntl.F_GETPIPE_SZ)  # type: ignore[attr-defined]
    if int(Path("/proc/sys/fs/pipe-max-size").read_text()) >= PIPE_SIZE:
        assert size == PIPE_SIZE
    assert _stream_bytes(proc) == 3_000_000


def test_a_host_named_in_ssh_config_is_named_as_reached(sshd, tmp_path, monkeypatch):
    """A spec address that ~/.ssh/config maps to a HostName and Port was named
    "oldhost:22" in errors, and its unknown key called "a ProxyJump hop to oldhost:22":
    the host and port Fabric connects to are named, with the spec's name."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh/config").write_text(
        f"Host oldhost\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  IdentityFile {sshd.client_key}\n")
    conn = SSHConnector("oldmail", address="oldhost", stream_transport="paramiko")
    with pytest.raises(HostKeyError) as info:
        conn.run("true")
    assert str(info.value).startswith(
        f"host oldmail: the SSH host key of 127.0.0.1:{sshd.port} (oldhost in ~/.ssh/config) "
        "is unknown (it offered ssh-ed25519 SHA256:"), str(info.value)
    conn = SSHConnector("oldmail", address="oldhost", known_hosts=str(sshd.known_hosts),
                        stream_transport="paramiko")
    assert conn.run("echo ok").stdout == b"ok\n"
    conn.close()


def test_a_proxyjump_hops_unknown_host_key_is_refused_too(sshd, tmp_path, monkeypatch):
    """A ProxyJump in ~/.ssh/config makes Fabric connect through a hop with a client of
    its own, which accepted any key: the hop's key is checked like the host's."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh/config").write_text(
        f"Host 127.0.0.1\n  ProxyJump {sshd.user}@localhost:{sshd.port}\n"
        f"Host localhost\n  IdentityFile {sshd.client_key}\n")
    conn = SSHConnector("viajump", address="127.0.0.1", port=sshd.port, user=sshd.user,
                        identity_file=str(sshd.client_key), known_hosts=str(sshd.known_hosts))
    with pytest.raises(HostKeyError, match=r"\[localhost\]:\d+ \(a ProxyJump hop to "
                       r"127.0.0.1:\d+\) is unknown \(it offered ssh-ed25519 SHA256:\S+\); "
                       r"refusing"):
        conn.run("true")
    conn.close()
    # with the hop's key known, the same connection works
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd.known_hosts.read_text()
                  + f"[localhost]:{sshd.port} {sshd.host_pubkey}\n")
    conn = SSHConnector("viajump", address="127.0.0.1", port=sshd.port, user=sshd.user,
                        identity_file=str(sshd.client_key), known_hosts=str(kh))
    assert conn.run("echo through").stdout == b"through\n"
    conn.close()


def test_a_refused_connection_says_why_in_words_with_a_hint():
    """paramiko reports "[Errno None] Unable to connect to port N on ..." around the real
    reasons: the error says "connection refused", and what to check."""
    import socket

    from mailplan.errors import ConnectionLost

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    conn = SSHConnector("old", address="127.0.0.1", port=port, user="root")
    with pytest.raises(ConnectionLost) as info:
        conn.run("true")
    text = str(info.value)
    assert f"cannot connect to 127.0.0.1:{port}: connection refused" in text, text
    assert "Errno" not in text and "hint: check the host's address and port in the spec" in text
    # init and queue take a connection string, no spec: the hint names it
    conn = SSHConnector("old", address="127.0.0.1", port=port, user="root",
                        opt_in=OPTION_OPT_IN)
    with pytest.raises(ConnectionLost) as info:
        conn.run("true")
    assert "hint: check the host's address and port in the connection string (ssh://" \
        in str(info.value) and "spec" not in str(info.value)


def test_ssh_control_connection_sends_keepalives(ssh_connector, monkeypatch):
    """An idle control connection (a long step running on the host) sends SSH
    keepalives, like ServerAliveInterval on the OpenSSH streams, and has TCP keepalive
    on: a NAT does not drop it, and a dead peer is noticed instead of waited on."""
    import socket

    import mailplan.connectors.ssh as ssh_module

    monkeypatch.setattr(ssh_module, "KEEPALIVE_SECONDS", 1)
    transport = ssh_connector._transport()
    sent: list[str] = []
    original = transport.global_request

    def recording(kind, data=None, wait=True):
        sent.append(kind)
        return original(kind, data, wait)

    monkeypatch.setattr(transport, "global_request", recording)
    deadline = time.monotonic() + 10  # 1 s apart; 15 s (the default) would not be seen
    while "keepalive@lag.net" not in sent and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "keepalive@lag.net" in sent
    assert transport.sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
    assert ssh_connector.run("echo alive").stdout == b"alive\n"


def test_a_refused_login_names_the_login_and_what_to_check(sshd, tmp_path):
    """A key the host does not authorize gave "SSH connection to 127.0.0.1:PORT failed:
    Authentication failed." with no hint (which user? which key? a password?), and an
    encrypted key "failed: Private key file is encrypted"; each now says what to do."""
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
                   check=True)
    conn = SSHConnector("oldmail", address="127.0.0.1", port=sshd.port, user=sshd.user,
                        identity_file=str(stranger), known_hosts=str(sshd.known_hosts))
    with pytest.raises(HostError) as info:
        conn.run("true")
    assert str(info.value).startswith(
        f"host oldmail: SSH login as {sshd.user}@127.0.0.1:{sshd.port} refused: "
        "Authentication failed.\n  hint: mailplan logs in with a key only (identity_file, "
        "ssh-agent, ~/.ssh/id_*), never a password: check user and identity_file of this "
        "host in the spec, and that the key's public half is in that user's "
        "~/.ssh/authorized_keys"), info.value
    conn = SSHConnector("oldmail", address="127.0.0.1", port=sshd.port, user=sshd.user,
                        identity_file=str(stranger), known_hosts=str(sshd.known_hosts),
                        opt_in=OPTION_OPT_IN)
    with pytest.raises(HostError, match=r"check the user in ssh://user@host and --identity"):
        conn.run("true")
    locked = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "a passphrase", "-f",
                    str(locked)], check=True)
    conn = SSHConnector("oldmail", address="127.0.0.1", port=sshd.port, user=sshd.user,
                        identity_file=str(locked), known_hosts=str(sshd.known_hosts))
    with pytest.raises(HostError, match=r"the private key is encrypted .*\n  hint: mailplan "
                       r"asks for no passphrase: load the key into ssh-agent \(ssh-add KEY\)"):
        conn.run("true")


def test_a_port_where_no_sshd_answers_fails_in_connect_timeout_without_a_traceback(
        tmp_path):
    """A host that takes the TCP connection and never speaks SSH (a hung sshd, the port
    of another service): paramiko's thread printed its traceback ("Exception (client):
    Error reading SSH protocol banner") on stderr, mailplan then said "failed: No
    existing session", and the spec's connect_timeout did not bound the wait (paramiko's
    15 s banner wait did)."""
    import contextlib
    import socket
    import threading

    from migration import (
        SourceAccount,
        install_target,
        mailplan,
        make_source,
        unique_domain,
        write_spec,
    )

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    held: list[socket.socket] = []
    accepted: list[float] = []

    def hold() -> None:  # take each connection, say nothing
        with contextlib.suppress(OSError):  # the listener closed: the test is over
            while True:
                held.append(silent.accept()[0])
                accepted.append(time.monotonic())

    threading.Thread(target=hold, daemon=True).start()
    try:
        src = make_source(tmp_path / "source", [SourceAccount("ann", 1000, "Ann", "pw")])
        spec = write_spec(tmp_path / "m.yaml", source_root=src,
                          target=install_target(tmp_path / "target"),
                          domains={unique_domain(): {"import": {"uid_min": 1000}}},
                          source_host={"address": "127.0.0.1",
                                       "port": silent.getsockname()[1],
                                       "connect_timeout": 2})
        res = mailplan("plan", str(spec))
        ended = time.monotonic()
    finally:
        silent.close()
        for conn in held:
            conn.close()
    assert res.returncode == 1
    assert "Traceback" not in res.stderr and "Exception" not in res.stderr, res.stderr
    assert re.fullmatch(
        r"Error: host oldmail: SSH connection to 127\.0\.0\.1:\d+ failed: the host accepted "
        r"the connection but no SSH server answered on it \((Error reading SSH protocol "
        r"banner|No existing session)[^\n]*\)\n  hint: check that the port is sshd's, .*\n",
        res.stderr), res.stderr
    # timed from the connection on, not from mailplan's start: the start-up (Python and
    # its imports, the spec) is no part of the wait, and a loaded machine makes it long
    assert accepted, "mailplan never connected"
    took = ended - accepted[0]
    assert took < 12, took  # 2 s, not paramiko's 15


def test_a_known_hosts_file_that_cannot_be_used_is_said_so_naming_it(sshd, tmp_path):
    """A known_hosts that is a directory ended mailplan with a traceback
    (IsADirectoryError), and one accept_new_host_key could not save the new key to was
    reported as "cannot connect to 127.0.0.1:PORT: file exists" with a hint about the
    address, port and firewall (and, a ConnectionLost, retried). Both now name the file."""
    from mailplan.errors import ConnectionLost

    with pytest.raises(HostError, match=f"host newhost: cannot read the known_hosts file "
                       f"{tmp_path}: is a directory\n  hint: mailplan reads "
                       "~/.ssh/known_hosts and the host's own known_hosts file"):
        SSHConnector("newhost", address="127.0.0.1", port=sshd.port, user=sshd.user,
                     identity_file=str(sshd.client_key), known_hosts=str(tmp_path))
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    conn = SSHConnector("newhost", address="127.0.0.1", port=sshd.port, user=sshd.user,
                        identity_file=str(sshd.client_key),
                        known_hosts=str(blocker / "known_hosts"), accept_new_host_key=True)
    with pytest.raises(HostError, match="host newhost: cannot save the new SSH host key to "
                       f"the known_hosts file {blocker}/known_hosts \\(accept_new_host_key"
                       f"\\): {blocker}: file exists\n  hint: known_hosts must name a "
                       "file mailplan can write") as info:
        conn.run("true")
    assert not isinstance(info.value, ConnectionLost)
    conn.close()


def test_init_names_its_option_where_a_new_host_key_cannot_be_saved(sshd, tmp_path):
    """init and queue (a host given as ssh://..., opt_in=OPTION_OPT_IN) trust a new key
    by --accept-new-host-key: where it could not be saved, the message named the spec's
    key "(accept_new_host_key)", which neither command takes."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    conn = SSHConnector("newhost", address="127.0.0.1", port=sshd.port, user=sshd.user,
                        identity_file=str(sshd.client_key), opt_in=OPTION_OPT_IN,
                        known_hosts=str(blocker / "known_hosts"), accept_new_host_key=True)
    with pytest.raises(HostError, match="host newhost: cannot save the new SSH host key to "
                       f"the known_hosts file {blocker}/known_hosts \\(--accept-new-host-"
                       f"key\\): {blocker}: file exists\n"):
        conn.run("true")
    conn.close()
