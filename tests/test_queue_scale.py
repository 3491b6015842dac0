"""A big queue (a spam backlog of a hundred thousand messages after an outage): what a
read carries grows with the number of messages only, not with the size of their header
blocks.
"""

from __future__ import annotations

import json

from click.testing import CliRunner
from queue_builder import QueueBuilder

from mailplan.connectors.local import LocalConnector
from mailplan.queue import model
from mailplan.queue.cli import queue as queue_cli
from mailplan.queue.dump import read_queue
from mailplan.queue.headerfields import CUT, FIELD_LIMIT


def run(q: QueueBuilder, command: str, *args: str):
    return CliRunner().invoke(queue_cli, [command, "local", "--queue-dir", str(q.queue), *args])


# -- list and delete --match read the fields they use, not the header block -------------------

def test_list_reads_only_the_header_fields_it_uses(tmp_path):
    """The agent sent each message's whole header block (up to 64 kB) for list and
    delete --match, which look at the first Subject, From, To and Cc only; now it picks
    those out (unfolded, raw, each cut at FIELD_LIMIT characters) and show still
    prints the whole block of the one message it reads."""
    q = QueueBuilder(tmp_path / "qmail")
    many = ", ".join(f"reader{i}@list.example" for i in range(80))
    headers = ("=?UTF-8?Q?J=C3=BCrgen?= <j@spam.example>\n"
               f"To: {many[:500]}\n {many[500:]}\n"
               "Cc: first@example.com\nCc: second@example.com\n"
               + "".join(f"X-Spam-Report-{i}: " + "z" * 70 + "\n" for i in range(60))
               + "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\n\tfrom far")
    msg = q.add("spam@spam.example", remote=("x@remote.example",),
                subject="a second subject", sender_header=headers)
    dump = read_queue(LocalConnector("l"), str(q.queue), mess=model.FIELDS)
    [mess] = [e for e in dump.entries.values() if e.parts[:1] == ("mess",) and e.kind == "f"]
    to = f"{many[:500]} {many[500:]}"[:FIELD_LIMIT - len(CUT)] + CUT
    assert mess.data == ("From: =?UTF-8?Q?J=C3=BCrgen?= <j@spam.example>\n"
                         f"To: {to}\nCc: first@example.com\n"
                         "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= from far\n").encode()
    assert mess.size > 5000

    [shown] = json.loads(run(q, "list", "--json").output)
    assert (shown["id"], shown["subject"], shown["from"]) == \
        (msg, "Grüße from far", "Jürgen <j@spam.example>")
    assert json.loads(run(q, "list", "--subject", "ße from", "--json").output) == [shown]
    assert json.loads(run(q, "list", "--subject", "second", "--json").output) == []
    deleted = run(q, "delete", "--match", "to", "reader7@list.example", "--json")
    assert list(json.loads(deleted.output)["would_remove"]) == [str(msg)]
    # an address past the cut is not seen (the envelope recipients always are)
    assert json.loads(run(q, "delete", "--match", "to", "reader79@", "--json").output)[
        "would_remove"] == {}
    full = run(q, "show", str(msg)).output
    assert "X-Spam-Report-59: " in full and " reader79@list.example" in full
    assert "Subject: a second subject" in full
