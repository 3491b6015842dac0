"""The plan's shared read: the mailboxes read whole (first imports, rewritten spools) go
through one ``tar`` stream; a mailbox that changes while tar reads it (mail delivered to
it, a mail reader's rewrite) is read again by itself, and only it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailplan.connectors.local import LocalConnector
from mailplan.facts import mailbox_scan
from mailplan.facts.mailbox_scan import _read_again, scan_mailboxes
from mailplan.facts.mailboxes import SourceMailbox


def message(i: int, size: int = 0) -> bytes:
    return (b"From a@x.example Mon Nov  2 10:00:00 2026\nSubject: m%d\n\n" % i
            + b"x" * size + b"\n\n")


def listed(path: Path, data: bytes) -> SourceMailbox:
    path.write_bytes(data)
    st = path.stat()
    return SourceMailbox("d.example", path.name, "INBOX", str(path), st.st_size,
                         st.st_mtime, st.st_ino, settled=True)


def counted(conn: LocalConnector, streams: list[str], monkeypatch: pytest.MonkeyPatch
            ) -> None:
    """Have ``conn`` add the command of each stream it starts to ``streams``."""
    start_stream = conn.start_stream

    def counting(command: str, **kw: object) -> object:
        streams.append(command)
        return start_stream(command, **kw)  # type: ignore[arg-type]
    monkeypatch.setattr(conn, "start_stream", counting)


def sudo_that_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``sudo`` first on PATH that says what sudo says on a host whose own name does
    not resolve (exit 0, the command run), then runs the command."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sudo").write_text(
        "#!/bin/sh\necho 'sudo: unable to resolve host old: Name or service not known' >&2\n"
        'test "$1" = -n && shift\nexec "$@"\n')
    (bin_dir / "sudo").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")


@pytest.mark.parametrize(("name", "sudo"), [(b"busy", False), (b"b\xe9sy", False),
                                            (b"b$6$salt$x", False), (b"busy", True)],
                         ids=["ascii", "latin-1", "secret-shaped", "sudo-warns"])
def test_a_mailbox_that_grows_while_tar_reads_it_is_read_again_alone(tmp_path, monkeypatch,
                                                                     name, sudo):
    """Mail delivered to one spool while the shared tar read it (tar: "file changed as
    we read it", exit 1) threw the whole read away: every mailbox read whole was read
    again one by one (during a cutover, one busy spool doubled the plan's reads). Only
    the one tar names is read again; also when its name is not UTF-8 (a Latin-1 folder
    name) or has a part shaped like a crypt hash, which tar's warning gives as it is,
    and when sudo (``sudo: true``) says something of its own on stderr."""
    if sudo:
        sudo_that_warns(tmp_path, monkeypatch)
    big = listed(Path(os.fsdecode(os.fsencode(tmp_path) + b"/" + name)),
                 b"".join(message(i, 2000) for i in range(4000)))
    quiet = [listed(tmp_path / name, message(1) + message(2)) for name in ("a", "b")]
    conn, streams = LocalConnector("old", sudo=sudo), []
    counted(conn, streams, monkeypatch)
    scan_stream = mailbox_scan._scan_stream

    def delivered_during(stream: object, mb: SourceMailbox, *args: object) -> object:
        if mb is big and len(streams) == 1:  # tar is still reading it: 8 MB, not yet
            with open(mb.path, "ab") as fh:  # through the pipe
                fh.write(message(9))
        return scan_stream(stream, mb, *args)  # type: ignore[arg-type]
    monkeypatch.setattr(mailbox_scan, "_scan_stream", delivered_during)
    scans = scan_mailboxes(conn, [(mb, 0, set()) for mb in (big, *quiet)], mboxrd=False)
    assert [s.error for s in scans] == [None] * 3
    assert [s.total for s in scans] == [4000, 2, 2]  # the busy one as listed
    assert len(streams) == 2 and "tar" in streams[0] and big.path in streams[1], streams


def test_a_line_sudo_writes_does_not_throw_the_shared_read_away(tmp_path, monkeypatch):
    """sudo's own warning on stderr (the source's name not in its /etc/hosts), tar's exit
    0: every mailbox was read again one by one, as if tar had named one it could not
    trust. Nothing changed: the shared read alone."""
    sudo_that_warns(tmp_path, monkeypatch)
    boxes = [listed(tmp_path / name, message(1) + message(2)) for name in ("a", "b")]
    conn, streams = LocalConnector("old", sudo=True), []
    counted(conn, streams, monkeypatch)
    scans = scan_mailboxes(conn, [(mb, 0, set()) for mb in boxes], mboxrd=False)
    assert [(s.error, s.total) for s in scans] == [(None, 2)] * 2
    assert len(streams) == 1, streams


@pytest.mark.parametrize(("status", "stderr", "again"), [
    (0, "", set()),
    (1, "tar: /s/a: file changed as we read it", {"/s/a"}),
    (1, "tar: /s/a: File shrank by 10 bytes; padding with zeros\n"
        "tar: /s/b: file changed as we read it", {"/s/a", "/s/b"}),
    (1, "tar: /s/a: file changed as we read it\ntar: /s/c: file changed as we read it",
     None),  # a name not read: not trusted
    (1, "", None),  # a failure no line names
    (1, "tar: something else entirely", None),
    (0, "sudo: unable to resolve host old: Name or service not known\n", set()),
    (1, "sudo: unable to resolve host old: Name or service not known\n"
        "tar: /s/a: file changed as we read it\n", {"/s/a"}),
    (2, "tar: /s/a: Cannot open: Permission denied\n"
        "tar: Exiting with failure status due to previous errors", None),
])
def test_which_mailboxes_tars_warnings_name(status, stderr, again):
    assert _read_again(status, stderr, {"/s/a", "/s/b"}) == again


@pytest.mark.parametrize(("stderr", "again"), [
    # a name with a carriage return is one line of tar's: that mailbox, not /s/a
    ("tar: /s/a: file changed as we read it\rX: file changed as we read it",
     {"/s/a: file changed as we read it\rX"}),
    # with a line end in a name, a line not starting "tar: " may be the rest of a warning
    ("tar: /s/a: file changed as we read it\nX: file changed as we read it", None),
])
def test_a_name_that_holds_a_line_break_is_not_taken_for_another(stderr, again):
    names = {"/s/a", "/s/a: file changed as we read it\rX",
             "/s/a: file changed as we read it\nX"}
    assert _read_again(1, stderr, names) == again


def test_the_tar_warning_for_a_changed_file_is_what_gnu_tar_says(tmp_path):
    """The wording :func:`_read_again` reads, from GNU tar itself (LC_ALL=C)."""
    import subprocess

    path = tmp_path / "a: b"  # a name with ": " in it
    path.write_bytes(os.urandom(8 << 20))
    tar = subprocess.Popen(["tar", "-cPf", "-", "--no-recursion", "--quoting-style=literal",
                            str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env={**os.environ, "LC_ALL": "C"})
    assert tar.stdout is not None
    tar.stdout.read(65536)
    with open(path, "ab") as fh:
        fh.write(b"more")
    tar.stdout.read()
    stderr = tar.stderr.read().decode() if tar.stderr else ""
    assert (tar.wait(), _read_again(1, stderr.strip(), {str(path)})) == (1, {str(path)})
