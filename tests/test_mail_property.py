"""Property test, mbox to Maildir through the writer: every nasty case of issue 3 at once.

Generated mboxes mix the From_ line variants real files have (two spaces after the sender,
an unpadded day, no seconds, zone names or numeric zones before or after the year, senders
with spaces or non-ASCII bytes), CRLF messages, separators without a blank line before
them, a last message without a trailing newline, Status/X-Status bookkeeping in any
header position, correct Solaris Content-Length headers over unquoted From_ lines and
wrong ones, UW-IMAP's pseudo message and the same message twice. Each mbox is imported
by ``import_mbox`` through a real writer agent, and the Maildir must hold every message
exactly once with the bytes, subdirectory, flags and mtime computed here from how the
mbox was made -- never from mailplan's own reader. A second test puts such mboxes in the
spools of twenty users and runs a whole ``mailplan apply`` (slow to shrink on a failure:
each example is an apply).
"""

from __future__ import annotations

import calendar
import io
import os
import time
from pathlib import Path

import migration
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from migration import SourceAccount, install_target, make_source, write_spec

from mailplan.mail.agent_client import AgentClient, LocalAgent
from mailplan.mail.convert import import_mbox
from mailplan.mail.fromline import parse_from_line
from mailplan.mail.maildir import parse_message_name

DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
#: zone as written -> its offset from UTC in seconds (names the stdlib knows)
ZONES = {b"": 0, b"EST": -5 * 3600, b"PDT": -7 * 3600, b"GMT": 0, b"+0130": 5400,
         b"-0500": -5 * 3600, b"+0000": 0}
SENDERS = [b"a@b.example", b"John Q. Smith", b"j\xc3\xb6rg@b\xe9.example", b"MAILER-DAEMON"]
XSTATUS_FLAGS = {"A": "R", "F": "F", "D": "T", "T": "D"}
PSEUDO = (b"Date: Mon, 1 Jan 2001 10:00:00 +0000\nFrom: Mail System Internal Data "
          b"<MAILER-DAEMON@old>\nSubject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n"
          b"X-IMAP: 1234 0000000002\n\nThis text is part of the internal format.\n")

body_line = st.one_of(
    st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")),
    st.sampled_from([b"From here on", b">From quoted", b"From", b"", b"\xff\xfe high",
                     b"From x Mon Jan  1 10:00:00 2001", b"From a  Tue Feb 2 9:15 2002 EST",
                     b"From x Mon Jan  1 10:00:00 2001 trailing words"]))


@st.composite
def from_line(draw) -> tuple[bytes, int]:
    """A From_ line (without its line end) and the arrival time it says."""
    year, mon, day = draw(st.integers(1971, 2037)), draw(st.integers(1, 12)), \
        draw(st.integers(1, 28))
    hh, mm, ss = draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 59))
    seconds = draw(st.booleans())
    zone = draw(st.sampled_from(sorted(ZONES)))
    after = draw(st.booleans())  # the zone after the year, else before it
    wday = DAYS[calendar.weekday(year, mon, day)]
    dayf = draw(st.sampled_from([b"%2d", b"%d"])) % day  # padded or not
    time_ = b"%d:%02d" % (hh, mm) + (b":%02d" % ss if seconds else b"")
    spaces = draw(st.sampled_from([b" ", b"  "]))
    words = [time_, zone, b"%d" % year] if not after else [time_, b"%d" % year, zone]
    line = (b"From " + draw(st.sampled_from(SENDERS)) + spaces + wday.encode() + b" "
            + MONTHS[mon - 1].encode() + b" " + dayf + b" " + b" ".join(w for w in words if w))
    when = calendar.timegm((year, mon, day, hh, mm, ss if seconds else 0)) - ZONES[zone]
    return line, when


@st.composite
def message(draw) -> dict:
    """One message: its parts as made, and what the Maildir must hold of it."""
    line, when = draw(from_line())
    eol = draw(st.sampled_from([b"\n", b"\r\n"]))
    status = draw(st.sampled_from(["", "O", "RO", "R"]))
    xstatus = "".join(draw(st.sets(st.sampled_from("AFDT"))))
    headers = draw(st.lists(st.sampled_from([b"Subject: s", b"From: a@b", b"To: c@d",
                                             b"Message-ID: <m@x>", b"X-Other: 1"]),
                            max_size=4))
    book = ([b"Status: " + status.encode()] if status else []) + \
        ([b"X-Status: " + xstatus.encode()] if xstatus else [])
    at = draw(st.integers(0, len(headers)))
    body = draw(st.lists(body_line, max_size=6))
    flags = "".join(sorted(({"S"} if "R" in status else set())
                           | {XSTATUS_FLAGS[c] for c in xstatus}))
    subdir = "new" if "O" not in status and not flags else "cur"
    return {"sep": line, "when": when, "eol": eol, "headers": headers, "book": book,
            "at": at, "body": body, "flags": flags, "subdir": subdir,
            "cl": draw(st.sampled_from([None, "right", "wrong"])),
            "blank": draw(st.booleans()), "wrong_at": draw(st.integers(1, 1 << 16))}


def build(msgs: list[dict], no_final_newline: bool, pseudo: bool
          ) -> tuple[bytes, list[tuple[str, str | None, bytes, int]]]:
    """The mbox, and per message (subdir, flags or None in new/, stored bytes, mtime)."""
    data = b"From MAILER-DAEMON Mon Jan  1 10:00:00 2001\n" + PSEUDO + b"\n" if pseudo else b""
    want = []
    for i, m in enumerate(msgs):
        eol, last = m["eol"], i == len(msgs) - 1
        body = list(m["body"])
        if last and no_final_newline:
            body.append(b"end")  # the file's last line has bytes, and no line end
        if m["cl"] != "right":  # read by its separators: mail.local quotes From_ lines
            body = [b">" + ln if parse_from_line(ln) else ln for ln in body]
        body_bytes = b"".join(ln + eol for ln in body)
        if last and no_final_newline:
            body_bytes = body_bytes[:-len(eol)]
        kept = b"".join(h + eol for h in m["headers"])
        head = m["headers"][:m["at"]] + m["book"] + m["headers"][m["at"]:]
        cl = b""
        if m["cl"] == "right":
            cl = b"Content-Length: %d" % len(body_bytes)
        elif m["cl"] == "wrong":
            # a length ending inside a line of this body: never consistent with the file
            inside = [n for n in range(1, len(body_bytes)) if body_bytes[n - 1:n] != b"\n"]
            if inside:
                cl = b"Content-Length: %d" % inside[m["wrong_at"] % len(inside)]
        if cl:
            head = head + [cl]
        stored = kept + eol + body_bytes
        data += m["sep"] + eol + b"".join(h + eol for h in head) + eol + body_bytes
        # the blank framing line: written unless the message is the file's last without
        # a line end; always after a message whose last line is empty (the one mboxo
        # ambiguity: without it that line would be taken as framing)
        ends_empty = stored.endswith(eol + eol) or stored == eol
        if not (last and no_final_newline) and (m["blank"] or ends_empty):
            data += eol
        want.append((m["subdir"], None if m["subdir"] == "new" else m["flags"], stored,
                     m["when"]))
    return data, want


def maildir_messages(root: Path) -> list[tuple[str, str | None, bytes, int]]:
    out = []
    for sub in ("new", "cur"):
        for p in (root / sub).iterdir():
            parsed = parse_message_name(p.name)
            assert parsed is not None, p.name
            data = p.read_bytes()
            assert parsed.size == len(data) and p.name.split(":2,")[0].endswith(
                f",S={len(data)}"), p.name
            out.append((sub, parsed.flags, data, int(p.stat().st_mtime)))
    assert not os.listdir(root / "tmp")
    return out


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(msgs=st.lists(message(), max_size=7), no_final_newline=st.booleans(),
       pseudo=st.booleans(), repeat=st.lists(st.integers(0, 6), max_size=2))
def test_every_message_arrives_once_with_its_bytes_flags_and_date(tmp_path_factory, msgs,
                                                                   no_final_newline, pseudo,
                                                                   repeat):
    for i in repeat:  # the same message twice in an mbox is two messages
        if msgs and i < len(msgs):
            msgs.append(msgs[i])
    data, want = build(msgs, no_final_newline, pseudo)
    root = tmp_path_factory.mktemp("prop") / "Maildir"
    client = AgentClient(LocalAgent())
    try:
        client.open(str(root))
        report = import_mbox(client, io.BytesIO(data), dirname="", mtime=7.0)
        client.quit()
    finally:
        client.pipe.kill()
    assert report.summary.skipped_internal == int(pseudo)
    assert report.durable == len(want)
    assert sorted(maildir_messages(root)) == sorted(want), data


@settings(max_examples=2, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(spools=st.lists(st.tuples(st.lists(message(), max_size=6), st.booleans(),
                                 st.booleans()), min_size=20, max_size=20))
def test_a_whole_apply_of_generated_spools_gives_each_message_once_as_made(
        tmp_path_factory, spools):
    """The same through ``mailplan apply`` (the plan's count on the source, the reads
    through a pipe, the writer as vpopmail): twenty users with a generated spool each,
    settled (not written for an hour, so a last message without a line end is final);
    then a second plan finds nothing to do."""
    work = tmp_path_factory.mktemp("apply")
    os.chmod(work, 0o755)
    built = [build(msgs, no_final_newline, pseudo)
             for msgs, no_final_newline, pseudo in spools]
    src = make_source(work / "source", [SourceAccount(f"u{i:02d}", 1000 + i, f"U {i}", "Pw-1")
                                        for i in range(len(built))])
    settled = time.time() - 3600
    for i, (data, _want) in enumerate(built):
        path = src / "var/spool/mail" / f"u{i:02d}"
        path.write_bytes(data)
        os.utime(path, (settled, settled))
    target = install_target(work / "target")
    domain = migration.unique_domain("prop")
    spec = write_spec(work / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    migration.mailplan("apply", str(spec), "--auto-approve", check=True)
    for i, (data, want) in enumerate(built):
        home = target.tool("vuserinfo", "-d", f"u{i:02d}@{domain}").stdout.decode()
        assert sorted(maildir_messages(Path(home.split("\n")[0]) / "Maildir")) == \
            sorted(want), data
    assert "No changes." in migration.mailplan("plan", str(spec), check=True).stdout
