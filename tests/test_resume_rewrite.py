"""A spool rewritten on the old server after the plan read it from its checkpoint.

The plan checks that the bytes before the checkpoint are unchanged and reads only what
was appended; apply reads that part later (after the confirmation prompt, or after the
users before this one). Should the old server rewrite the spool in between (a mail
reader deleting a message), the checkpoint's offset no longer means "what was imported
ends here": apply must notice, stop with SourceChanged (which the retry re-plans), and
the re-plan reads the whole mailbox, so no message is skipped."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from migration import SourceAccount, install_target, make_source, unique_domain, write_spec

from mailplan.apply import apply_plan
from mailplan.connectors.local import LocalConnector
from mailplan.engine import make_plan, state_path_for
from mailplan.errors import SourceChanged
from mailplan.spec import load_spec
from mailplan.state import State, locked


def message(i: int, body: str = "") -> bytes:
    """Messages of one length (as cron or monitoring mail often is), unless ``body``."""
    return (f"From s{i}@x.example Mon Nov  2 10:00:00 2026\nFrom: s{i}@x.example\n"
            f"Subject: m{i}\n\n{body or f'hello {i}'}\n\n").encode()


def run(spec_path: Path, between=lambda: None) -> None:
    """A plan, ``between()``, then the apply of that plan."""
    spec = load_spec(spec_path)
    path = state_path_for(spec)
    with locked(path):
        state = State.load(path)
        planned = make_plan(spec, state, {"oldmail": LocalConnector("oldmail"),
                                          "newmail": LocalConnector("newmail")})
        between()
        try:
            apply_plan(planned, state, prune=False)
        finally:
            planned.close()


def subjects(target, address: str) -> list[str]:
    home = target.tool("vuserinfo", "-d", address).stdout.decode().split("\n")[0]
    return sorted(re.search(rb"Subject: (\S+)", f.read_bytes())[1].decode()
                  for f in Path(home, "Maildir").rglob("*")
                  if f.is_file() and f.parent.name in ("new", "cur"))


@pytest.mark.parametrize("shift", ["aligned", "mid-message"])
def test_a_spool_rewritten_after_the_plan_is_read_again_whole(tmp_path, shift):
    """``aligned``: the deleted message, the first appended one and the next delivery
    have one length, so the old offset falls on a message of the rewritten file (the
    read would skip m71 for good); ``mid-message``: it falls inside one (the read would
    start with bytes that are not a From_ line)."""
    old = [message(i) for i in range(10, 70)]
    old.append(message(70) if shift == "aligned" else message(70, "a longer last one"))
    src = make_source(tmp_path / "source", [SourceAccount("ursula", 1000, "Ursula", "pw")])
    spool = src / "var/spool/mail/ursula"
    spool.write_bytes(b"".join(old))
    target = install_target(tmp_path / "target")
    domain = unique_domain("rewrite")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    run(spec)
    with spool.open("ab") as fh:  # new mail
        fh.write(message(71) + message(72))

    last = 73 if shift == "aligned" else 74  # as long as the plan saw it, or longer

    def old_server_meanwhile() -> None:  # m70 deleted in place, then new mail delivered
        spool.write_bytes(b"".join(old[:-1]) + b"".join(message(i) for i in range(71, last + 1)))

    with pytest.raises(SourceChanged, match="rewritten since the plan read it"):
        run(spec, old_server_meanwhile)
    run(spec)  # what apply's retry does: a re-plan, which reads the spool whole
    want = sorted(f"m{i}" for i in range(10, last + 1))
    assert subjects(target, f"ursula@{domain}") == want
    run(spec)
    assert subjects(target, f"ursula@{domain}") == want


def test_a_spool_emptied_by_the_users_mail_reader_between_plan_and_apply(tmp_path):
    """The user's mail reader on the old server empties the spool (pine moving read mail
    to ~/mbox, an expunge of everything: the file cut to zero) after the plan read the
    message appended since the checkpoint, and a new delivery follows before apply
    reads. apply's read from the checkpoint gets nothing: the error says that the part
    imported earlier changed (what happened, and why apply's retry reads the spool
    whole), not that the file "shrank while it was read". The re-plan imports the new
    message alone: nothing imported twice, the message deleted on the old server before
    any import of it is not brought in. Then the spool emptied again between two runs,
    and new mail: only that is imported."""
    src = make_source(tmp_path / "source", [SourceAccount("ursula", 1000, "Ursula", "pw")])
    spool = src / "var/spool/mail/ursula"
    spool.write_bytes(b"".join(message(i) for i in range(10, 20)))
    target = install_target(tmp_path / "target")
    domain = unique_domain("emptied")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    run(spec)
    with spool.open("ab") as fh:
        fh.write(message(20))  # the plan reads it from the checkpoint

    def emptied_then_delivered() -> None:
        with spool.open("r+b") as fh:
            fh.truncate(0)
        with spool.open("ab") as fh:
            fh.write(message(21))

    with pytest.raises(SourceChanged, match="rewritten since the plan read it"):
        run(spec, emptied_then_delivered)
    run(spec)  # apply's retry: a re-plan, which reads the spool whole
    old = [f"m{i}" for i in range(10, 20)]
    assert subjects(target, f"ursula@{domain}") == sorted([*old, "m21"])
    with spool.open("r+b") as fh:  # emptied between two runs, then new mail
        fh.truncate(0)
    run(spec)
    with spool.open("ab") as fh:
        fh.write(message(22))
    run(spec)
    run(spec)
    assert subjects(target, f"ursula@{domain}") == sorted([*old, "m21", "m22"])


def test_a_from_line_being_written_after_the_checkpoint_is_left_for_the_next_run(tmp_path):
    """A delivery caught writing its From_ line right after where the last run stopped:
    the read from the checkpoint holds only part of that line. That is no reason to call
    the spool unreadable: nothing is new yet, and once the message is whole it goes in."""
    src = make_source(tmp_path / "source", [SourceAccount("ursula", 1000, "Ursula", "pw")])
    spool = src / "var/spool/mail/ursula"
    spool.write_bytes(message(10))
    target = install_target(tmp_path / "target")
    domain = unique_domain("partial")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    run(spec)
    for cut in (3, 20):  # "Fro", and "From s11@x.example M"
        spool.write_bytes(message(10) + message(11)[:cut])
        loaded = load_spec(spec)
        planned = make_plan(loaded, State.load(state_path_for(loaded)),
                            {"oldmail": LocalConnector("oldmail"),
                             "newmail": LocalConnector("newmail")})
        planned.close()
        assert not planned.plan.problems, planned.plan.problems
        assert not [c for c in planned.plan.changes if c.kind == "mailbox"]
    spool.write_bytes(message(10) + message(11))
    run(spec)
    assert subjects(target, f"ursula@{domain}") == ["m10", "m11"]


def test_a_solaris_delivery_being_written_is_never_cut_at_a_from_line_in_its_body(tmp_path):
    """Solaris mail.local writes Content-Length and does not quote From_ lines in the
    body. Read while such a message is being written, its length reaches past the end
    of what was read, so it is read by the separators, and a From_ line in its body
    would cut it in two (the part before imported as a message, the rest later as
    another). It is left for the next run, which honours the length: one message."""
    body = (b"see the archive below\n\nFrom c@y.example Sun Nov  1 09:00:00 2026\n"
            b"Subject: archived\n\nold text\n")
    solaris = (b"From b@x.example Mon Nov  2 11:00:00 2026\nFrom: b\nSubject: m2\n"
               + b"Content-Length: %d\n\n" % len(body) + body + b"\n")
    src = make_source(tmp_path / "source", [SourceAccount("ursula", 1000, "Ursula", "pw")])
    spool = src / "var/spool/mail/ursula"
    cut = solaris.index(b"Subject: archived")  # the writer is past the From_ line in the body
    spool.write_bytes(message(10) + solaris[:cut])  # modified now: not settled
    target = install_target(tmp_path / "target")
    domain = unique_domain("solaris")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    run(spec)
    assert subjects(target, f"ursula@{domain}") == ["m10"]
    spool.write_bytes(message(10) + solaris)
    os.utime(spool, (1e9, 1e9))  # settled
    run(spec)
    home = target.tool("vuserinfo", "-d", f"ursula@{domain}").stdout.decode().split("\n")[0]
    stored = sorted(f.read_bytes() for f in Path(home, "Maildir").rglob("*")
                    if f.is_file() and f.parent.name in ("new", "cur"))
    assert stored == sorted([b"From: s10@x.example\nSubject: m10\n\nhello 10\n",
                             b"From: b\nSubject: m2\n\n" + body])


def test_a_whole_read_ending_messages_where_earlier_reads_ended_is_proven_unrewritten(
        tmp_path):
    """A whole read given a checkpoint's record of where earlier reads ended (a spool
    beside ~/mbox, a copy of an earlier message appended after a settled last message
    without a final newline) ends a message at those offsets: they mean that only while
    the file holds what the checkpoint describes. The old server rewrites the spool
    between the plan and apply's read (two messages deleted, new mail delivered):
    apply must stop with SourceChanged, as a read from the checkpoint does, not cut a
    message of the rewritten file there and fail on the rest as not an mbox; the re-plan
    reads it whole without those offsets, and nothing imported is cut short."""
    first = message(10)
    long = message(11, "y" * 600)
    m1 = b"From s@x.example Mon Nov  2 11:00:00 2026\nFrom: s\nSubject: m1\n\nbody"
    src = make_source(tmp_path / "source", [SourceAccount("ursula", 1000, "Ursula", "pw")])
    spool = src / "var/spool/mail/ursula"
    spool.write_bytes(first + long + m1)
    os.utime(spool, (1e9, 1e9))  # settled: m1 is taken as it is
    (src / "home/ursula/mbox").write_bytes(message(12))
    target = install_target(tmp_path / "target")
    domain = unique_domain("ends")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    run(spec)
    assert subjects(target, f"ursula@{domain}") == ["m1", "m10", "m11", "m12"]
    with spool.open("ab") as fh:  # a copy of m11: the spool is read whole, with the end
        fh.write(b"\n" + long)

    # as long as m10 and m11: the size the plan listed ends at a message boundary again
    m13 = message(13, "z" * (len(first + long) - len(message(13, "z")) + 1))
    assert len(m13) == len(first + long)

    def old_server_meanwhile() -> None:  # m10 and m11 deleted in place, new mail delivered
        spool.write_bytes(m1 + b"\n" + long + m13)

    with pytest.raises(SourceChanged, match="rewritten since the plan read it"):
        run(spec, old_server_meanwhile)
    run(spec)
    home = target.tool("vuserinfo", "-d", f"ursula@{domain}").stdout.decode().split("\n")[0]
    for f in Path(home, "Maildir").rglob("*"):
        if f.is_file() and f.parent.name in ("new", "cur") and b"Subject: m11" in f.read_bytes():
            assert f.read_bytes().endswith(b"y" * 600 + b"\n"), f.read_bytes()[-80:]
    # m1 is read with the line end the append put after it: the rewrite took the record
    # of where it ended (README: only a whole read without that record imports it again)
    assert subjects(target, f"ursula@{domain}") == ["m1", "m1", "m10", "m11", "m12", "m13"]


def test_a_rewrite_that_keeps_the_size_of_a_mailbox_nothing_was_appended_to_is_read_whole(
        tmp_path):
    """A mail reader on the old server marks one message read and another unread in one
    session (mutt: ``Status: O`` -> ``RO``, ``RO`` -> ``O``) and rewrites the file in
    place: its size stays, and so do the first and last 4 KiB when both messages are in
    the middle. The flag the old server set must still reach the new one (the plan's
    ``~ flags``, as verify's "flags lost" says), not "No changes." for ever."""
    def marked(i: int, status: str) -> bytes:
        return (f"From s{i}@x.example Mon Nov  2 10:00:00 2026\nFrom: s{i}@x.example\n"
                f"Subject: m{i}\nStatus: {status}\n\n" + "body line\n" * 50 + "\n").encode()

    src = make_source(tmp_path / "source", [SourceAccount("ursula", 1000, "Ursula", "pw")])
    spool = src / "var/spool/mail/ursula"
    before = {i: "RO" if i == 20 else "O" for i in range(40)}
    spool.write_bytes(b"".join(marked(i, s) for i, s in before.items()))
    target = install_target(tmp_path / "target")
    domain = unique_domain("samesize")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    run(spec)
    size, mtime = spool.stat().st_size, spool.stat().st_mtime
    after = {**before, 20: "O", 21: "RO"}
    with spool.open("r+b") as fh:  # rewritten in place, as mutt syncs a mailbox
        fh.write(b"".join(marked(i, s) for i, s in after.items()))
    os.utime(spool, (mtime + 60, mtime + 60))
    assert spool.stat().st_size == size

    def plan() -> list[str]:
        loaded = load_spec(spec)
        planned = make_plan(loaded, State.load(state_path_for(loaded)),
                            {"oldmail": LocalConnector("oldmail"),
                             "newmail": LocalConnector("newmail")})
        planned.close()
        return [f"{c.kind} {c.after}" for c in planned.plan.changes]

    # m21 read, m20 marked unread: m20's loss is recorded (its file keeps \Seen)
    assert plan() == ["flags 1 message(s) gain flags (S 1); 1 message(s) lost flags on the "
                      "old server since mailplan recorded them: recorded again (files "
                      "unchanged)"]
    run(spec)
    home = target.tool("vuserinfo", "-d", f"ursula@{domain}").stdout.decode().split("\n")[0]
    seen = sorted(re.search(rb"Subject: (\S+)", f.read_bytes())[1].decode()
                  for f in Path(home, "Maildir").rglob("*")
                  if f.is_file() and f.parent.name == "cur" and f.name.endswith(":2,S"))
    assert seen == ["m20", "m21"]  # m20's S stays: a flag is never removed
    assert plan() == []  # the mailbox is recorded complete again, with its new time
