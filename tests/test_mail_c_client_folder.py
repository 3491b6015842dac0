"""A folder as UW-IMAP's c-client writes it, read back message for message.

The bytes below are what Debian's uw-mailutils 2007f (``mailutil copy SRC mail/dst`` as
an ordinary user) wrote when it copied three messages into a new folder: the folder's
internal-data pseudo message first, then each message with ``Status``, ``X-Status``,
``X-Keywords`` (blank-padded) and ``X-UID`` headers, the body's ``From `` line quoted
(``>From``). The source's flags were: seen and answered; flagged, deleted and draft
(not seen); never seen. c-client wrote the first as ``Status: R`` without ``O`` (a copy
is recent in its new folder): it is seen all the same, so it goes to cur/ with its
flags; only the third, with no flag at all, is new.

``KEYWORDS`` is a folder whose flags and keywords c-client itself set (a small program
calling ``mail_flag`` on the file above, before it had the pseudo message): c-client
keeps the folder's keyword list and UID state in the first message's ``X-IMAPbase``,
and each message's keywords in its blank-padded ``X-Keywords``.
"""

from __future__ import annotations

import io

from mailplan.mail.mbox import MboxReader, MessageStart, read_mbox

FOLDER = b"".join([
    b'From MAILER-DAEMON Mon Dec  7 00:51:49 2026\n'
    b'Date: 07 Dec 2026 00:51:49 +0000\n'
    b'From: Mail System Internal Data <MAILER-DAEMON@vm>\n'
    b"Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n"
    b'Message-ID: <1796604709@vm>\n'
    b'X-IMAP: 1796604709 0000000003\n'
    b'Status: RO\n'
    b'\n'
    b'This text is part of the internal format of your mail folder, and is not\n'
    b'a real message.  It is created automatically by the mail system software.\n'
    b'If deleted, important folder data will be lost, and it will be re-created\n'
    b'with the data reset to initial values.\n'
    b'\n'
    b'From nobody@vm Mon Jan  1 10:00:00 2001 +0000\n'
    b'Subject: seen and answered\n'
    b'Status: R\n'
    b'X-Status: A\n'
    b'X-Keywords:                 \n'
    b'X-UID: 1\n'
    b'\n'
    b'body one\n'
    b'\n'
    b'From nobody@vm Mon Jan  1 11:00:00 2001 +0000\n'
    b'Subject: flagged, deleted, draft\n'
    b'Status: \n'
    b'X-Status: DFT\n'
    b'X-Keywords:                \n'
    b'X-UID: 2\n'
    b'\n'
    b'body two\n'
    b'\n'
    b'From nobody@vm Mon Jan  1 12:00:00 2001 +0000\n'
    b'Subject: never seen\n'
    b'Status: \n'
    b'X-Status: \n'
    b'X-Keywords:                   \n'
    b'X-UID: 3\n'
    b'\n'
    b'body three\n'
    b'>From within\n'
    b'\n'
])


def test_a_c_client_folder_gives_back_each_message_with_its_flags():
    messages, summary = read_mbox(io.BytesIO(FOLDER))
    assert summary.skipped_internal == 1
    assert [(end.subdir, end.flags, body) for end, body in messages] == [
        ("cur", "RS", b"Subject: seen and answered\n\nbody one\n"),
        ("cur", "DFT", b"Subject: flagged, deleted, draft\n\nbody two\n"),
        ("new", "", b"Subject: never seen\n\nbody three\n>From within\n"),
    ]
    # the From_ lines' dates (zone after the year) are the arrival times
    assert [end.arrival for end, _body in messages] == [978343200, 978346800, 978350400]


KEYWORDS = b"".join([
    b'From alice@example.org Mon Jan  1 10:00:00 2001\n'
    b'Subject: seen and answered\n'
    b'X-IMAPbase: 1796604762 3 $Label1 NonJunk Work\n'
    b'Status: RO\n'
    b'X-Status: A\n'
    b'X-Keywords: $Label1 NonJunk\n'
    b'X-UID: 1\n'
    b'\n'
    b'body one\n'
    b'\n'
    b'From bob@example.org Mon Jan  1 11:00:00 2001\n'
    b'Subject: flagged, deleted, draft\n'
    b'Status: RO\n'
    b'X-Status: DFT\n'
    b'X-Keywords: Work         \n'
    b'X-UID: 2\n'
    b'\n'
    b'body two\n'
    b'\n'
    b'From carol@example.org Mon Jan  1 12:00:00 2001\n'
    b'Subject: never seen\n'
    b'Status: O\n'
    b'X-Status: A\n'
    b'X-Keywords:                 \n'
    b'X-UID: 3\n'
    b'\n'
    b'body three\n'
    b'From within\n'
    b'\n'
])


def test_keywords_c_client_set_are_read_with_the_flags():
    messages, summary = read_mbox(io.BytesIO(KEYWORDS))
    assert summary.skipped_internal == 0
    assert [(end.subdir, end.flags, body) for end, body in messages] == [
        ("cur", "RS", b"Subject: seen and answered\n\nbody one\n"),
        ("cur", "DFST", b"Subject: flagged, deleted, draft\n\nbody two\n"),
        ("cur", "R", b"Subject: never seen\n\nbody three\nFrom within\n"),
    ]
    starts = [event for event in MboxReader(io.BytesIO(KEYWORDS))
              if isinstance(event, MessageStart)]
    assert [start.keywords for start in starts] == [("$Label1", "NonJunk"), ("Work",), ()]
