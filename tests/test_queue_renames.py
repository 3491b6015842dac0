"""Renames the check refuses, on a real queue tree (:class:`queue_builder.QueueBuilder`):
a message whose name is held by a file that is not itself to be renamed
(:mod:`mailplan.queue.renames`: the check says which names exist and blames no other
message; swapped names and chains are tests/test_queue_review.py's), and a cut-off
repair's file whose message is nowhere to be seen (left for a human, never removed)."""

from __future__ import annotations

import os
import shutil

from queue_builder import QueueBuilder

from mailplan.connectors.local import LocalConnector
from mailplan.queue.check import check, repair_actions
from mailplan.queue.dump import read_queue
from mailplan.queue.grouping import detect_layout


def test_a_name_held_by_a_message_in_place_is_refused_without_blaming_it(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    held = q.add("a@example.net", remote=("x@remote.example",))
    # a second name for the message's files, as a restore of hard-linked files can make:
    # renamed to the inode of its mess file, it would land on the files already there
    other = 999_999_937
    os.link(q.path("mess", held), q.path("mess", other))
    shutil.copy2(q.path("info", held), q.path("info", other))
    dump = read_queue(LocalConnector("l"), str(q.queue), mess="none")
    report = check(dump, detect_layout(dump))
    said = {p.path: p for p in report.problems}
    refused = said[f"mess/{other % 23}/{other}"]
    assert refused.code == "inode-mismatch" and not refused.repairable
    assert refused.message == (
        f"message {other}: its mess file has inode {held} (restored from a backup?); "
        f"rename it to {held}; cannot: info/{held % 23}/{held}, mess/{held % 23}/{held} "
        "already exist")
    assert not [a for a in repair_actions(report) if a["op"] == "rename"]


def test_a_cut_off_repair_s_file_without_its_mess_file_is_left_for_a_human(tmp_path):
    q = QueueBuilder(tmp_path / "qmail")
    kept = q.add("a@example.net", remote=("x@remote.example",))
    old, new = 999_999_937, 999_999_938  # no mess file has either inode
    leftover = f"info/{new % 23}/.mailplan-{old}-{new}"
    shutil.copy2(q.path("info", kept), q.queue / leftover)
    dump = read_queue(LocalConnector("l"), str(q.queue), mess="none")
    report = check(dump, detect_layout(dump))
    orphans = [p for p in report.problems if p.code == "orphan"]
    assert [(p.path, p.message, p.repairable) for p in orphans] == [
        (str(old), f"files of a cut-off repair, without a mess file: {leftover}; look for "
         "the message's mess file by hand", False)]
    assert not [a for a in repair_actions(report)
                if a.get("path") == leftover and a["op"] in ("remove", "rename")]
