"""A real Dovecot IMAP server for the test suite, on 127.0.0.1 over Maildirs we wrote.

Debian's ``/usr/sbin/dovecot`` is started in the foreground from a configuration written
into a temp directory (no system config, no system service): IMAP only, no TLS, clear-text
logins allowed on loopback, a passwd-file passdb with ``{CRYPT}`` SHA-512 hashes made here
from the users' clear passwords, and a static userdb whose home is the directory holding
each user's ``Maildir`` (``home_root/<user>/Maildir``). Mail files must belong to ``uid``.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tools import require

DOVECOT = "/usr/sbin/dovecot"


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sha512_crypt(password: str) -> str:
    """A ``$6$`` hash of ``password`` (via openssl, the way an admin would make one)."""
    out = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password.encode(),
                         capture_output=True, check=True)
    return out.stdout.decode().strip()


@dataclass
class Dovecot:
    """A running test dovecot: where it listens and where its users' homes are."""

    port: int
    home_root: Path
    workdir: Path
    process: subprocess.Popen[bytes]

    def maildir(self, user: str) -> Path:
        """The Maildir dovecot serves for ``user``."""
        return self.home_root / user / "Maildir"

    def log(self) -> str:
        """Dovecot's log so far (for failure messages)."""
        path = self.workdir / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop the server and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_dovecot(workdir: Path, users: dict[str, str], *, uid: int, gid: int,
                  listescape: bool = False, accounts: list[str] | None = None) -> Dovecot:
    """Start dovecot for ``users`` (name -> clear password); mail owned by uid:gid.

    ``accounts`` replaces both: ready passwd-file lines
    (``user:{CRYPT}hash:uid:gid::home::``) used as passdb and userdb, e.g. built from
    vpopmail's vpasswd files after a migration.
    """
    require(DOVECOT, "dovecot (Debian's dovecot-imapd)")
    workdir.mkdir(parents=True, exist_ok=True)
    home_root = workdir / "homes"
    home_root.mkdir(exist_ok=True)
    (workdir / "run").mkdir(exist_ok=True)
    (workdir / "state").mkdir(exist_ok=True)
    passwd = workdir / "passwd"
    if accounts is not None:
        passwd.write_text("".join(line + "\n" for line in accounts))
    else:
        passwd.write_text("".join(f"{u}:{{CRYPT}}{sha512_crypt(p)}\n"
                                  for u, p in users.items()))
    port = free_port()
    version = subprocess.run([DOVECOT, "--version"], capture_output=True, text=True,
                             check=True).stdout.split()[0]
    if version.startswith(("2.2.", "2.3.")):
        conf_text = _config_23(workdir, home_root, passwd, port, uid=uid, gid=gid,
                               listescape=listescape, static=accounts is None)
    else:
        conf_text = _config_24(workdir, home_root, passwd, port, uid=uid, gid=gid,
                               listescape=listescape, static=accounts is None)
    conf = workdir / "dovecot.conf"
    conf.write_text(conf_text)
    proc = subprocess.Popen([DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    daemon = Dovecot(port=port, home_root=home_root, workdir=workdir, process=proc)
    deadline = time.monotonic() + 30  # a bound for a hang: a loaded machine is slow
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"dovecot exited: {out}\n{daemon.log()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                if s.recv(100).startswith(b"* OK"):
                    return daemon
        except OSError:
            time.sleep(0.1)
    daemon.stop()
    raise RuntimeError(f"dovecot did not answer on port {port}\n{daemon.log()}")


def _common(workdir: Path) -> str:
    """The settings both dovecot versions write alike: where it keeps its files, and
    IMAP on 127.0.0.1 without TLS."""
    return (f"base_dir = {workdir}/run\nstate_dir = {workdir}/state\n"
            f"log_path = {workdir}/dovecot.log\nprotocols = imap\nlisten = 127.0.0.1\n"
            "ssl = no")


def _config_23(workdir: Path, home_root: Path, passwd: Path, port: int, *, uid: int,
               gid: int, listescape: bool, static: bool) -> str:
    """The configuration in dovecot 2.3's syntax (Debian 12)."""
    userdb = (f"driver = static\n  args = uid={uid} gid={gid} home={home_root}/%u" if static
              else f"driver = passwd-file\n  args = {passwd}")
    plugins = "mail_plugins = $mail_plugins listescape\n" if listescape else ""
    sep = "/" if listescape else "."
    return f"""
{_common(workdir)}
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir:LAYOUT=maildir++
{plugins}namespace inbox {{
  inbox = yes
  separator = {sep}
}}
passdb {{
  driver = passwd-file
  args = scheme=CRYPT {passwd}
}}
userdb {{
  {userdb}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""


def _config_24(workdir: Path, home_root: Path, passwd: Path, port: int, *, uid: int,
               gid: int, listescape: bool, static: bool) -> str:
    """The same configuration in dovecot 2.4's syntax (Debian 13), which refuses 2.3's;
    with weak schemes allowed, as 2.3 did: sendmail hosts' MD5-crypt hashes are migrated."""
    if listescape:
        raise RuntimeError("dovecot 2.4 has no listescape plugin")
    userdb = (f"userdb static {{\n  fields {{\n    uid = {uid}\n    gid = {gid}\n"
              f"    home = {home_root}/%{{user}}\n  }}\n}}" if static
              else f"userdb passwd-file {{\n  passwd_file_path = {passwd}\n}}")
    return f"""dovecot_config_version = 2.4.0
dovecot_storage_version = 2.4.0
{_common(workdir)}
auth_allow_cleartext = yes
auth_allow_weak_schemes = yes
auth_mechanisms = plain login
first_valid_uid = 1
first_valid_gid = 1
mail_driver = maildir
mail_path = ~/Maildir
mailbox_list_layout = maildir++
namespace inbox {{
  inbox = yes
  separator = .
}}
passdb passwd-file {{
  passwd_file_path = {passwd}
}}
{userdb}
service imap-login {{
  inet_listener imap {{
    listen = 127.0.0.1
    port = {port}
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
"""
