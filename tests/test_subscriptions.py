"""The plan's subscription changes: which folders get one (mailplan.subscriptions)."""

from __future__ import annotations

import pytest

from mailplan import subscriptions as subs_mod
from mailplan.connectors.local import LocalConnector
from mailplan.facts.mailboxes import SourceMailbox
from mailplan.subscriptions import subscription_changes


def box(folder: str, user: str = "alice") -> SourceMailbox:
    return SourceMailbox("d.example", user, folder, f"/src/{user}/{folder}", 10, 0.0, 1)


@pytest.fixture
def maildir(tmp_path):
    root = tmp_path / "alice" / "Maildir"
    for folder in (".Work", ".Lists.py", ".Other", ".Deleted"):
        for part in ("cur", "new"):
            (root / folder / part).mkdir(parents=True)
    return root


def changes(maildir, files, subscribed=None, covered=(),
            boxes=("INBOX", "Work", "Lists/py", "Other")):
    mailboxes = [box(f) for f in boxes]
    where = {mb.key: str(maildir) for mb in mailboxes}
    found = subscription_changes(LocalConnector("here"), mailboxes, where,
                                 {("d.example", "alice"): subscribed},
                                 {str(maildir): files}, covered)
    return {(c.item, c.after) for c, _mb in found}


NO_LIST = " (the source has no ~/.mailboxlist: every folder is subscribed)"


def test_a_folder_lacking_its_line_in_either_file_gets_a_change(maildir):
    # the INBOX is in no file; dovecot's version 2 form counts as the line
    files = {"courierimapsubscribed": b"INBOX.Work\nINBOX.Lists.py\nINBOX.Mine\n",
             "subscriptions": b"V\t2\n\nWork\nLists\tpy\n"}
    assert changes(maildir, files) == {
        ("Other", "add the folder's line to courierimapsubscribed and subscriptions"
         + NO_LIST)}
    files["subscriptions"] = b"Lists.py\nOther\n"
    assert changes(maildir, files) == {
        ("Work", "add the folder's line to subscriptions" + NO_LIST),
        ("Other", "add the folder's line to courierimapsubscribed" + NO_LIST)}


def test_only_what_apply_subscribes_and_no_change_writes(maildir):
    # with a ~/.mailboxlist only the folders it lists; an import or a creation of the
    # folder writes its line already (covered)
    assert changes(maildir, {}, subscribed={"Work", "Other"}) == {
        (f, "add the folder's line to courierimapsubscribed and subscriptions (listed in "
            "the source's ~/.mailboxlist)") for f in ("Work", "Other")}
    assert changes(maildir, {}, subscribed={"Work", "Other"},
                   covered={("d.example", "alice", ".Other")}) == {
        ("Work", "add the folder's line to courierimapsubscribed and subscriptions (listed "
                 "in the source's ~/.mailboxlist)")}


def test_a_folder_not_on_the_target_gets_none_and_nothing_is_asked_without_a_gap(
        maildir, monkeypatch):
    # one the user deleted stays deleted (the plan creates one that never was there)
    for part in ("cur", "new"):
        (maildir / ".Deleted" / part).rmdir()
    asked = []
    real = subs_mod.missing_folders

    def counting(conn, wanted):  # type: ignore[no-untyped-def]
        asked.append(wanted)
        return real(conn, wanted)

    monkeypatch.setattr(subs_mod, "missing_folders", counting)
    assert changes(maildir, {}, boxes=("Deleted", "Work")) == {
        ("Work", "add the folder's line to courierimapsubscribed and subscriptions"
         + NO_LIST)}
    assert asked == [{str(maildir): {".Deleted", ".Work"}}]
    full = {"courierimapsubscribed": b"INBOX.Work\n", "subscriptions": b"Work\n"}
    assert changes(maildir, full, boxes=("INBOX", "Work")) == set()
    assert len(asked) == 1  # no gap: no command
