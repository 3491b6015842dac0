"""A spool as Debian's mail.local writes it, read back message for message.

The bytes below are what Debian's mail.local (sendmail-bin 8.17.1.9-2+deb12u2) appended
to a spool for three deliveries (``printf ... | mail.local -f SENDER USER``): it adds a
``Content-Length:`` header and leaves ``From `` lines in the body unquoted (Debian builds
it with content-length support), and it ends each message with a blank line. The first
message's body holds a line that looks like a separator; its Content-Length agrees with
the file, so it stays inside the message. Each message must come back as delivered,
``Content-Length`` and ``Status`` removed (they become Maildir state).
"""

from __future__ import annotations

import io

from mailplan.mail.mbox import read_mbox

DELIVERED = [
    b"Subject: one\n\nhello\nFrom bob Mon Dec  7 00:50:39 2026\nbody line\n",
    b"Subject: two\nStatus: RO\n\nsecond\n\n\n",
    b"Subject: three\n\nthird\n",
]
SPOOL = (b"From alice@example.org Mon Dec  7 00:50:45 2026\n"
         b"Subject: one\nContent-Length: 50\n\n"
         b"hello\nFrom bob Mon Dec  7 00:50:39 2026\nbody line\n\n"
         b"From bob Mon Dec  7 00:50:45 2026\n"
         b"Subject: two\nStatus: RO\nContent-Length: 9\n\nsecond\n\n\n\n"
         b"From carol Mon Dec  7 00:50:45 2026\n"
         b"Subject: three\nContent-Length: 6\n\nthird\n\n")


def test_a_debian_mail_local_spool_gives_back_each_delivered_message():
    messages, summary = read_mbox(io.BytesIO(SPOOL))
    assert [body for _end, body in messages] == [
        DELIVERED[0], b"Subject: two\n\nsecond\n\n\n", DELIVERED[2]]
    assert [(end.subdir, end.flags) for end, _body in messages] == [
        ("new", ""), ("cur", "S"), ("new", "")]
    assert summary.messages == 3


def test_a_wrong_content_length_there_splits_at_the_separator_instead():
    # a hand-edited message (its Content-Length no longer agrees): the lookalike line
    # is then a separator, as in any mboxo file, and no byte is lost
    spool = SPOOL.replace(b"Content-Length: 50", b"Content-Length: 49")
    messages, _summary = read_mbox(io.BytesIO(spool))
    assert [body for _end, body in messages] == [
        b"Subject: one\n\nhello\n", b"body line\n", b"Subject: two\n\nsecond\n\n\n",
        DELIVERED[2]]
