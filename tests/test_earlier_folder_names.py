"""Folders an earlier mailplan version imported under the names it gave them then
(``.inbox.x`` before ``inbox/x`` became ``.INBOX.x``, ``.~old`` before a leading ``~``
became ``\\7e``): a later version goes on importing into them, never a second copy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from migration import (
    SourceAccount,
    Target,
    install_target,
    mailplan,
    make_source,
    unique_domain,
    write_spec,
)

from mailplan.mail.maildir import earlier_dirnames, folder_dirname

# mailplan as it was before both rules: the folder's name as is, in every part
EARLIER = """
import sys
import mailplan.facts.source_mailbox as listing
import mailplan.mail.maildir as maildir
def earlier(folder, names="utf7"):
    return maildir._dirname(folder, names, inbox=False, tilde=False)
maildir.folder_dirname = listing.folder_dirname = earlier
from mailplan.cli import main
main()
"""


def msg(sender: str, day: int, subject: str) -> bytes:
    return (f"From {sender} Mon Nov  {day} 10:00:00 2026\nFrom: {sender}\n"
            f"Subject: {subject}\n\nhello\n\n").encode()


@pytest.mark.parametrize(("folder", "names", "found"), [
    ("inbox/x", "utf7", [".inbox.x"]),
    ("Inbox/x", "utf8", [".Inbox.x"]),
    ("~old", "utf7", [".~old"]),
    ("a/~b", "utf7", [".a.~b"]),
    # both rules: before either, and before the second
    ("inbox/~x", "utf7", [".inbox.~x", ".INBOX.~x"]),
    ("~old", "utf8", []),
    ("INBOX/x", "utf7", []),
    ("Work", "utf7", []),
    ("INBOX", "utf7", []),
])
def test_the_names_earlier_versions_gave_a_folder(folder, names, found):
    assert earlier_dirnames(folder, names) == found
    assert folder_dirname(folder, names) not in found


def _imported_by_an_earlier_version(tmp_path: Path
                                    ) -> tuple[Path, Target, str, Path, Path]:
    """A user whose folders inbox/x, ~old and Work an earlier version imported (its
    folder directories named as it named them): (her folders' directory on the source,
    the target, her address, the spec, her Maildir)."""
    src = make_source(tmp_path / "source", [SourceAccount("ursula", 1000, "Ursula", "UrsPw1")])
    (src / "var/spool/mail/ursula").write_bytes(msg("a@x.example", 2, "inbox"))
    mail = src / "home/ursula/mail"
    (mail / "inbox").mkdir(parents=True)
    (mail / "inbox/x").write_bytes(msg("b@x.example", 2, "inbox-x"))
    (mail / "~old").write_bytes(msg("c@x.example", 2, "old"))
    (mail / "Work").write_bytes(msg("d@x.example", 2, "work"))
    target = install_target(tmp_path / "target")
    domain = unique_domain()
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      domains={domain: {"import": {"uid_min": 1000}}})
    res = subprocess.run([sys.executable, "-c", EARLIER, "apply", str(spec), "--auto-approve"],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    address = f"ursula@{domain}"
    udir = target.tool("vuserinfo", "-d", address).stdout.decode().split("\n")[0]
    root = Path(udir) / "Maildir"
    assert _folders(root) == {".inbox.x": 1, ".~old": 1, ".Work": 1}
    return mail, target, address, spec, root


def _folders(root: Path) -> dict[str, int]:
    """Each folder directory of the Maildir with the number of its messages."""
    return {d.name: sum(1 for sub in ("new", "cur") for _f in (d / sub).iterdir())
            for d in sorted(root.iterdir()) if d.name.startswith(".") and d.is_dir()}


def test_folders_an_earlier_version_named_are_imported_into_not_imported_again(tmp_path):
    """The state records inbox/x and ~old, and their directories under today's names
    are not there while those of the earlier names are: the plan imports into those
    (only the mail appended since), warns naming both directories, and verify compares
    them; the subscription files keep the lines the earlier version wrote. Renamed by
    hand to today's names, the folders are found there: nothing is imported again."""
    mail, _target, address, spec, root = _imported_by_an_earlier_version(tmp_path)
    for name in ("inbox/x", "~old"):
        with (mail / name).open("ab") as fh:
            fh.write(msg("n@x.example", 3, f"new in {name}"))
    plan = mailplan("plan", str(spec), check=True).stdout
    for folder, old, now in (("inbox/x", ".inbox.x", ".INBOX.x"),
                             ("~old", ".~old", ".\\7eold")):
        assert f"+ mailbox {address} {folder}\n      1 message(s)" in plan, plan
        assert (f"{address}: folder {folder}: an earlier mailplan imported it into {old} "
                f"(today's name: {now}), and its mail goes on into {old}") in plan, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert _folders(root) == {".inbox.x": 2, ".~old": 2, ".Work": 1}
    assert sorted((root / "subscriptions").read_text().split()) == ["Work", "inbox.x", "~old"]
    again = mailplan("plan", str(spec), check=True).stdout
    assert "No changes." in again and "goes on into .~old" in again
    doc = json.loads(mailplan("verify", str(spec), "--json").stdout)
    assert {f["folder"]: (f["source"], f["target"], f["ok"]) for f in doc["folders"]} == {
        "INBOX": (1, 1, True), "inbox/x": (2, 2, True), "~old": (2, 2, True),
        "Work": (1, 1, True)}

    # the administrator renames one to today's name (its subscription lines too)
    (root / ".inbox.x").rename(root / ".INBOX.x")
    for name, old, now in (("subscriptions", "inbox.x", "INBOX.x"),
                           ("courierimapsubscribed", "INBOX.inbox.x", "INBOX.INBOX.x")):
        lines = (root / name).read_text().split("\n")
        (root / name).write_text("\n".join(now if line == old else line for line in lines))
    plan = mailplan("plan", str(spec), check=True).stdout
    assert "No changes." in plan and "into .inbox.x" not in plan, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert _folders(root) == {".INBOX.x": 2, ".~old": 2, ".Work": 1}


def test_a_folder_under_both_names_is_imported_under_todays(tmp_path):
    """Both directories there (a copy made by hand, or a version that imported it again
    under today's name): today's is imported into, nothing twice, and the plan warns
    about the other, which mailplan leaves as it is."""
    mail, _target, address, spec, root = _imported_by_an_earlier_version(tmp_path)
    subprocess.run(["cp", "-a", str(root / ".~old"), str(root / ".\\7eold")], check=True)
    with (mail / "~old").open("ab") as fh:
        fh.write(msg("n@x.example", 3, "new"))
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"+ mailbox {address} ~old\n      1 message(s)" in plan, plan
    assert (f"{address}: folder ~old: imported into .\\7eold (today's name); .~old in "
            f"{root} holds the mail an earlier mailplan imported") in plan, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert _folders(root) == {".\\7eold": 2, ".inbox.x": 1, ".~old": 1, ".Work": 1}


def test_a_lost_state_file_still_finds_the_folders_an_earlier_version_named(tmp_path):
    """The state file deleted: the Maildir's ledger names the directories the earlier
    version imported into, so the folders go on into them as with the state's record,
    nothing imported a second time under today's name (only the mail appended since)."""
    mail, _target, address, spec, root = _imported_by_an_earlier_version(tmp_path)
    spec.with_name(spec.stem + ".state.json").unlink()
    with (mail / "~old").open("ab") as fh:
        fh.write(msg("n@x.example", 3, "new"))
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"+ mailbox {address} ~old\n      1 message(s)" in plan, plan
    assert f"+ mailbox {address} inbox/x" not in plan, plan
    for folder, old, now in (("inbox/x", ".inbox.x", ".INBOX.x"),
                             ("~old", ".~old", ".\\7eold")):
        assert (f"{address}: folder {folder}: an earlier mailplan imported it into {old} "
                f"(today's name: {now}), and its mail goes on into {old}") in plan, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert _folders(root) == {".inbox.x": 1, ".~old": 2, ".Work": 1}
    assert sorted((root / "subscriptions").read_text().split()) == ["Work", "inbox.x", "~old"]
    assert "No changes." in mailplan("plan", str(spec), check=True).stdout
    # verify, without the state's record either, compares the directories that hold it
    spec.with_name(spec.stem + ".state.json").unlink()
    doc = json.loads(mailplan("verify", str(spec), "--json").stdout)
    assert {f["folder"]: (f["source"], f["target"], f["ok"]) for f in doc["folders"]} == {
        "INBOX": (1, 1, True), "inbox/x": (1, 1, True), "~old": (2, 2, True),
        "Work": (1, 1, True)}


def test_a_lost_state_file_and_mail_known_by_the_ledger_or_the_files_alone(tmp_path):
    """Without the state's record, either sign of the earlier import is enough: the
    ledger line of a message the user deleted since (.inbox.x: no file left), or the
    message file whose ledger line a killed writer never wrote (.~old): neither
    folder's mail is imported again under today's name, nor the deleted message."""
    _mail, _target, address, spec, root = _imported_by_an_earlier_version(tmp_path)
    spec.with_name(spec.stem + ".state.json").unlink()
    for sub in ("new", "cur"):
        for f in (root / ".inbox.x" / sub).iterdir():
            f.unlink()
    ledger = root / "mailplan-ledger"
    lines = ledger.read_text().splitlines(keepends=True)
    # its message's line (not the writer's ".~old TAB folder": the folder was made)
    ledger.write_text("".join(x for x in lines if not x.startswith(".~old\t")
                              or x.endswith("\tfolder\n")))
    assert len(ledger.read_text().splitlines()) == len(lines) - 1
    plan = mailplan("plan", str(spec), check=True).stdout
    assert "No changes." in plan, plan
    for folder, old in (("inbox/x", ".inbox.x"), ("~old", ".~old")):
        assert (f"{address}: folder {folder}: an earlier mailplan imported it into {old} "
                f"(today's name: ") in plan, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert _folders(root) == {".inbox.x": 0, ".~old": 1, ".Work": 1}


def test_a_lost_state_file_and_a_directory_the_ledger_does_not_name(tmp_path):
    """Without the state's record, a directory under an earlier name that the ledger
    does not name and that holds no message (made by hand, say) is no sign that
    mailplan imported the folder there: the folder is imported under today's name."""
    mail, _target, address, spec, root = _imported_by_an_earlier_version(tmp_path)
    spec.with_name(spec.stem + ".state.json").unlink()
    (mail / "inbox/y").write_bytes(msg("y@x.example", 2, "inbox-y"))
    for sub in ("new", "cur", "tmp"):
        (root / ".inbox.y" / sub).mkdir(parents=True)
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"+ mailbox {address} inbox/y\n      1 message(s)" in plan, plan
    assert "folder inbox/y" not in plan and ".inbox.y" not in plan, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert _folders(root) == {".INBOX.y": 1, ".inbox.x": 1, ".inbox.y": 0, ".~old": 1,
                              ".Work": 1}



def _rename(root: Path, old: str, new: str) -> None:
    """Rename a folder's directory to today's name as README says, its subscription
    lines too (nothing else: its ledger lines stay under the earlier name)."""
    (root / old).rename(root / new)
    for name, prefix in (("subscriptions", ""), ("courierimapsubscribed", "INBOX.")):
        lines = (root / name).read_text().split("\n")
        (root / name).write_text("\n".join(prefix + new[1:] if line == prefix + old[1:]
                                           else line for line in lines))


@pytest.mark.parametrize("state", [True, False])
def test_a_message_deleted_before_the_rename_is_not_brought_back(tmp_path, state):
    """The user deleted the messages of .inbox.x and .~old, then the administrator
    renamed the directories to today's names as README says: their ledger lines under
    the earlier names count for them, so no plan brings the messages back, with or
    without the state's record, nor reads the folders whole (the ledger still counts
    what the checkpoint does); mail appended since is imported, once."""
    mail, _target, address, spec, root = _imported_by_an_earlier_version(tmp_path)
    for old in (".inbox.x", ".~old"):
        for sub in ("new", "cur"):
            for f in (root / old / sub).iterdir():
                f.unlink()
    before = (root / "mailplan-ledger").read_bytes()
    _rename(root, ".inbox.x", ".INBOX.x")
    _rename(root, ".~old", ".\\7eold")
    if not state:
        spec.with_name(spec.stem + ".state.json").unlink()
    for args in ((), ("--rescan",)):
        plan = mailplan("plan", str(spec), *args, check=True).stdout
        assert "No changes." in plan and "an earlier mailplan" not in plan, plan
    with (mail / "inbox/x").open("ab") as fh:
        fh.write(msg("n@x.example", 3, "new in inbox/x"))
    plan = mailplan("plan", str(spec), check=True).stdout
    assert f"+ mailbox {address} inbox/x\n      1 message(s)" in plan, plan
    assert "~old" not in plan, plan
    # with the state's record, from its checkpoint: the ledger counts what it does
    assert ("INBOX/x (read from byte 85: unchanged before)" in plan) == state, plan
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert _folders(root) == {".INBOX.x": 1, ".\\7eold": 0, ".Work": 1}
    assert (root / "mailplan-ledger").read_bytes().startswith(before)
    assert "No changes." in mailplan("plan", str(spec), "--rescan", check=True).stdout
