"""The writer on a target's Maildir as users and other programs leave it: odd files
where the writer reads, counts or writes."""

from __future__ import annotations

import functools
import io

from migration import TEST_PYTHON

from mailplan.mail.agent_client import AgentClient, LocalAgent
from mailplan.mail.convert import import_mbox

if TEST_PYTHON:  # the agent under another Python (tests/migration.py)
    LocalAgent = functools.partial(LocalAgent, TEST_PYTHON)  # type: ignore[misc]

MBOX = b"".join(b"From a@example.org Mon Jan  1 10:00:00 2001\nSubject: %d\n\nbody\n\n" % i
                for i in range(3))


def test_the_quota_recount_keeps_a_definition_line_that_is_not_ascii(tmp_path):
    """The recount at the end of each import keeps maildirsize's first line (the quota)
    as it is: one with a byte that is not ASCII (a file damaged by a crash) stopped every
    import with ``UnicodeDecodeError: 'ascii' codec can't decode byte 0xff``, naming no
    file, after its messages were in."""
    root = tmp_path / "Maildir"
    root.mkdir()
    (root / "maildirsize").write_bytes(b"10485760S\xff\n0 0\n")
    client = AgentClient(LocalAgent())
    try:
        client.open(str(root))
        import_mbox(client, io.BytesIO(MBOX), dirname="")
        counted = client.refresh_quota()
        client.quit()
    finally:
        client.pipe.kill()
    assert counted["messages"] == 3
    assert (root / "maildirsize").read_bytes() == b"10485760S\xff\n%d 3\n" % counted["bytes"]

