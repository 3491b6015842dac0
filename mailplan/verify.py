"""``mailplan verify``: proof, before MX is switched, that the target holds what the source has.

Read-only on both hosts, and batched like plan (each remote command costs a channel):
the source's accounts (one batch), the target's domains and users (two), routing (the
same batched reads plan uses), the ``~/.mailboxlist`` of users with folders (one read:
what apply subscribes), the sizes of the import ledgers (one ``find``), then the users a
group at a time (as many as :data:`GROUP_LEDGER_BYTES` of ledgers and
:data:`GROUP_SOURCE_BYTES` of mailboxes: usually all of them at once). Per group, its
source mailboxes are streamed through ONE ``tar`` channel and read by the mbox reader
(ending messages where the imports' reads ended, as their checkpoints record: one batch,
only for mailboxes whose checkpoint records such an end), and on the target one ``find``
over its Maildirs (name, size, mtime) plus one ``tar`` for its ledgers (and one for the
folders' ``dovecot-keywords`` and the Maildirs' subscription files, one for
courier-imap's keyword files, where there are any); its messages are dropped before the
next group is read, so memory follows the largest user, not the message size or the
number of users. Messages are matched by identity (sha256 + occurrence, embedded in the
file names mailplan writes); see :mod:`mailplan.verify_model` for what counts as a
difference. A folder that matched exactly last time is not read again while its source
file and its Maildir are unchanged (:mod:`mailplan.verify_cache`; ``--full`` reads
everything).

The optional live login check runs vpopmail's ``vchkpw`` on the target the way POP and
IMAP servers do (checkpassword protocol on fd 3, reference/vpopmail/06-vchkpw.md); the
password travels on the command's stdin, never in argv, output or the report.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import tzinfo
from pathlib import Path
from typing import Any

from mailplan.connectors.base import Connector, abort_all
from mailplan.desired import build_desired
from mailplan.diff import diff
from mailplan.errors import HostError, MailplanError
from mailplan.facts.checkpoints import Checkpoint, still_valid
from mailplan.facts.mailboxes import SourceMailbox, list_source_mailboxes
from mailplan.facts.maildirs import ledger_sizes
from mailplan.facts.source import read_spec_source
from mailplan.facts.vpopmail import TargetFacts, read_target
from mailplan.hosts import connect
from mailplan.mail.maildir import (
    folder_from_dirname,
    subscription_lines,
    unsubscribed,
)
from mailplan.mail.windows import Windows
from mailplan.mailboxes import mailbox_refs, maildir_of, with_ends
from mailplan.routing.integrate import plan_routing
from mailplan.secret import Secret
from mailplan.shell import chunks_within, join
from mailplan.spec import Spec, folder_names, keeps_passwords
from mailplan.state import State
from mailplan.subscriptions import source_subscriptions, subscribes, unusable_files
from mailplan.text import marked
from mailplan.userdirs import withhold_unmakeable
from mailplan.verify_cache import (
    Proven,
    cache_path,
    key,
    source_digest,
    target_digest,
    zone_id,
)
from mailplan.verify_cache import load as load_proven
from mailplan.verify_cache import save as save_proven
from mailplan.verify_model import (
    FolderCheck,
    Identity,
    Report,
    SourceMessage,
    TargetMessage,
    check_account,
    compare_folder,
)
from mailplan.verify_reads import (
    STEP,
    read_source_mail,
    read_target_mail,
)

#: what verify reads at once: the users of a group whose Maildir ledgers hold this many
#: bytes together (about 50,000 messages, some 70 MB of both sides' messages held) ...
GROUP_LEDGER_BYTES = 4 << 20
#: ... and whose source mailboxes this many (mail not imported yet has no ledger line)
GROUP_SOURCE_BYTES = 256 << 20


def check_login(conn: Connector, vpopmail_dir: str, address: str, password: Secret
                ) -> dict[str, Any]:
    """Authenticate ``address`` through vchkpw on the target; the password goes on stdin."""
    vchkpw = f"{vpopmail_dir.rstrip('/')}/bin/vchkpw"
    res = conn.run(join([vchkpw, "/bin/true"]) + " 3<&0",
                   stdin=address.encode() + b"\0" + password.reveal().encode() + b"\0\0")
    if res.returncode in (0, 3):
        return {"address": address, "ok": res.returncode == 0,
                "detail": "accepted" if res.returncode == 0 else "rejected (vchkpw exit 3)"}
    raise HostError(f"vchkpw exited {res.returncode} while checking {address}",
                    host=conn.name, step=f"{STEP}: login check")


def verify(spec: Spec, state: State, *, login: tuple[str, Secret] | None = None,
           connectors: dict[str, Connector] | None = None, full: bool = False) -> Report:
    """Compare source and target for every user of the spec; change nothing on either
    host. ``full``: read every mailbox even where the last verify's record still holds."""
    src, tgt = spec.data["source"], spec.data["target"]
    conns = connectors or {n: connect(n, spec.data["hosts"][n])
                           for n in sorted({src["host"], tgt["host"]})}
    try:
        return _verify(spec, state, conns, login, full)
    except KeyboardInterrupt:  # stopping at once (mailplan.interrupt): no command waited for
        abort_all(conns.values())
        raise
    finally:
        if connectors is None:
            for conn in conns.values():
                conn.close()


def _verify(spec: Spec, state: State, conns: dict[str, Connector],
            login: tuple[str, Secret] | None, full: bool) -> Report:
    src, tgt = spec.data["source"], spec.data["target"]
    source_conn, target_conn = conns[src["host"]], conns[tgt["host"]]
    vpop = tgt.get("vpopmail_dir", "/home/vpopmail")
    source = read_spec_source(source_conn, src)
    desired = build_desired(spec, source)
    target = read_target(target_conn, vpop, set(desired.domains))
    withhold_unmakeable(desired, target, vpop)  # never created: unmigrated
    report = Report(target_conn.name)
    for problem in desired.problems:
        who = f"{problem.user}@{problem.domain}" if problem.user else problem.domain
        report.unmigrated.append(f"{who}: {problem.message}")
    for dname, dom in sorted(desired.domains.items()):
        have = target.domains.get(dname)
        for uname, user in sorted(dom.users.items()):
            report.accounts.append(check_account(user, have.users.get(uname) if have else None,
                                                 keep=keeps_passwords(spec.data)))
    # with the state's records: a user mailplan created that is no longer migrated (its
    # account removed on the old server, or left out of the spec) still takes mail here;
    # said, not a failure (a locked account left out takes mail on both servers)
    core = diff(desired, target, vpop, state.view(), keep_passwords=keeps_passwords(spec.data))
    report.routing += [f"{c.symbol} {c.kind} {c.address}" for c in core.changes
                       if c.kind in ("catchall", "domain")
                       or (c.kind == "password" and c.user == "postmaster")]
    report.explained += [f"{c.address}: on the target, {c.reason}; it still takes mail here"
                         for c in core.changes if c.kind == "user" and c.action == "delete"]
    routing = plan_routing(spec, source_conn, target_conn, source, desired, target, state)
    report.routing += [f"{c.symbol} {c.kind} {c.address}" for c in routing.changes]
    # routing of the old server the plan has no safe equivalent for (a pipe to a
    # program, a loop, an unsafe ~/.forward, ...): the plan's problems, said here as
    # they change where that mail goes after the MX switch; not failures, since a
    # replacement made by hand on the target does not make them go away
    report.explained += [f"{f'{p.user}@' if p.user else ''}{p.domain}: routing problem: "
                         f"{p.message}" for p in routing.problems]
    _verify_mail(spec, desired, source, target, source_conn, target_conn, report,
                 cache_path(state.path), full, state.mail())
    if login is not None:
        report.login = check_login(target_conn, vpop, login[0], login[1])
    return report


def _verify_mail(spec: Spec, desired: Any, source: Any, target: TargetFacts,
                 source_conn: Connector, target_conn: Connector, report: Report,
                 record: Path, full: bool, state_mail: dict[str, Any] | None = None) -> None:
    """``state_mail``: the state's mailboxes (State.mail): the folders an apply made, and
    the checkpoints' record of where the imports' reads ended."""
    refs = mailbox_refs(spec.data, desired, source, source_conn)
    names = folder_names(spec.data)
    mailboxes, notes = list_source_mailboxes(source_conn, refs, names)
    state_mail = state_mail or {}
    # every kind only explains a difference, but what the source login could not see:
    # verify cannot say that mail is on the target
    report.explained += [str(note) for note in notes if not note.unseen]
    report.unmigrated += [str(note) for note in notes if note.unseen]
    mboxrd = bool(spec.data["source"].get("mboxrd", False))
    maildirs: dict[tuple[str, str], str] = {}
    for ref in refs:
        tdom = target.domains.get(ref.domain)
        tuser = tdom.users.get(ref.user) if tdom else None
        if tuser is not None:
            maildirs[(ref.domain, ref.user)] = maildir_of(tuser.dir)
    by_user: dict[tuple[str, str], list[SourceMailbox]] = {}
    for mb in mailboxes:
        by_user.setdefault((mb.domain, mb.user), []).append(mb)
    old = {} if full else load_proven(record)  # the folders proven last time
    # what apply subscribes: one read for all users that have folders (the INBOX is in
    # no subscription file)
    foldered = {(mb.domain, mb.user) for mb in mailboxes if mb.dirname}
    subscribed = source_subscriptions(
        source_conn, [r for r in refs if (r.domain, r.user) in foldered], source)
    proven: dict[str, Proven] = {}
    # the users a group at a time, each group's messages dropped before the next
    sizes = ledger_sizes(target_conn, sorted(set(maildirs.values())))
    for group in _user_groups(refs, maildirs, by_user, sizes):
        _verify_group(group, maildirs, by_user, source_conn, target_conn, mboxrd, old,
                      report, proven, source.zone, names, state_mail, subscribed)
    save_proven(record, proven)


def _user_groups(refs: Sequence[Any], maildirs: dict[tuple[str, str], str],
                 by_user: dict[tuple[str, str], list[SourceMailbox]],
                 ledger_bytes: dict[str, int]) -> list[list[Any]]:
    """The users (``refs``, in order) in consecutive groups whose Maildir ledgers hold
    at most :data:`GROUP_LEDGER_BYTES` and whose source mailboxes at most
    :data:`GROUP_SOURCE_BYTES` together: verify holds one group's messages at a time
    (both sides' identities, sizes, flags and dates, and the source's message numbers and
    offsets), so its memory follows the largest user, not the number of users. A user
    past either bound is a group alone."""
    def weigh(ref: Any) -> tuple[int, int]:
        key_ = (ref.domain, ref.user)
        return (ledger_bytes.get(maildirs.get(key_, ""), 0),
                sum(mb.size for mb in by_user.get(key_, [])))

    return chunks_within(refs, weigh, (GROUP_LEDGER_BYTES, GROUP_SOURCE_BYTES))


def _verify_group(refs: list[Any], maildirs: dict[tuple[str, str], str],
                  by_user: dict[tuple[str, str], list[SourceMailbox]], source_conn: Connector,
                  target_conn: Connector, mboxrd: bool, old: dict[str, Proven],
                  report: Report, proven: dict[str, Proven], zone: tzinfo | None,
                  names: str = "utf7", state_mail: dict[str, Any] | None = None,
                  subscribed: dict[tuple[str, str], set[str] | None] | None = None) -> None:
    """Compare the mail of a group of users: the target's listing and ledgers of their
    Maildirs (two channels), their source mailboxes through one ``tar`` channel.
    ``state_mail``: the state's mailboxes: those an apply made (one whose folder the user
    deleted on the target since is not missing), and their checkpoints' record of where
    the imports' reads ended (:func:`read_source_mail`'s ``ends``); ``subscribed``: the
    folders each user's ``~/.mailboxlist`` lists (None: there is none), which apply
    subscribes (:func:`mailplan.subscriptions.subscribes`)."""
    state_mail = state_mail or {}
    subscribed = subscribed or {}
    files, ledgers, keywords, there, subscriptions = read_target_mail(target_conn, sorted(
        {maildirs[(r.domain, r.user)] for r in refs if (r.domain, r.user) in maildirs}))
    mailboxes = [mb for r in refs for mb in by_user.get((r.domain, r.user), [])]

    zone_name = zone_id(zone)

    def folder_key(mb: SourceMailbox) -> str:
        return key(mb.domain, mb.user, mb.dirname, mb.path, mboxrd, zone_name)

    def has_folder(mb: SourceMailbox) -> bool:
        root = maildirs.get((mb.domain, mb.user))
        return root is not None and mb.dirname in there.get(root, set())

    def subscription_gaps(mb: SourceMailbox) -> tuple[list[str], list[str]]:
        # a folder on the target that apply subscribes: each file lacking its line (a
        # folder not there fails already, or the user deleted it), and what keeps apply
        # from writing them (a directory where a file belongs: the plan says so too)
        root = maildirs.get((mb.domain, mb.user))
        if root is None or not mb.dirname or not has_folder(mb) \
                or not subscribes(mb, subscribed.get((mb.domain, mb.user))):
            return [], []
        found = subscriptions.get(root, {})
        gaps = unsubscribed(subscription_lines([mb.folder], mb.names), found)
        return gaps, unusable_files(found) if gaps else []

    def target_files(mb: SourceMailbox) -> dict[Identity, list[TargetMessage]]:
        root = maildirs.get((mb.domain, mb.user))
        return files.get(root, {}).get(mb.dirname, {}) if root else {}

    # folders proven identical last time: unchanged source (size and mtime as listed, one
    # batched window check) and the same digest from the target's listing -> not read
    # again; a folder fed by more than one file (the spool, ~/mbox, a folder file named
    # INBOX) is read whole
    feeds = Counter((mb.domain, mb.user, mb.dirname) for mb in mailboxes)
    pairs = [(mb, old[folder_key(mb)]) for mb in mailboxes if folder_key(mb) in old
             and (old[folder_key(mb)].size, old[folder_key(mb)].mtime) == (mb.size, mb.mtime)
             and feeds[(mb.domain, mb.user, mb.dirname)] == 1 and has_folder(mb)]
    # checked in the same batch: the checkpoints that say where the imports' reads ended
    ended = with_ends(mailboxes, state_mail)
    valid = still_valid(source_conn, [*ended, *[
        (mb, Checkpoint(p.path, p.inode, p.size, p.head, p.tail)) for mb, p in pairs]])
    ends = {mb.path: cp.ends for (mb, cp), ok in zip(ended, valid[:len(ended)], strict=True)
            if ok}
    reused = {mb.path: p for (mb, p), ok in zip(pairs, valid[len(ended):], strict=True)
              if ok and target_digest(target_files(mb)) == p.digest}
    windows: dict[str, Windows] = {}
    messages, errors = read_source_mail(source_conn,
                                        [mb for mb in mailboxes if mb.path not in reused],
                                        mboxrd=mboxrd, windows=windows, zone=zone,
                                        ends=ends)
    for ref in refs:
        key_ = (ref.domain, ref.user)
        root = maildirs.get(key_)
        tfolders = files.get(root, {}) if root else {}
        ledger = ledgers.get(root, {}) if root else {}
        named = keywords.get(root, {}) if root else {}
        groups: dict[str, list[SourceMailbox]] = {}
        for mb in sorted(by_user.get(key_, []), key=lambda m: (m.dirname, m.path)):
            groups.setdefault(mb.dirname, []).append(mb)  # the INBOX may have several
        seen = set(groups)
        for group in groups.values():
            mb = group[0]
            check = FolderCheck(ref.domain, ref.user, mb.folder)
            if mb.path in reused:  # (only a folder fed by one file is reused: see pairs)
                proof = reused[mb.path]
                check.source = check.target = proof.count
                check.reused = True
                check.unsubscribed, check.unsubscribable = subscription_gaps(mb)
                proven[folder_key(mb)] = proof
                report.folders.append(check)
                continue
            failed = [(m, errors[m.path]) for m in group if m.path in errors]
            unreadable = [(m, e) for m, e in failed if not e.startswith("changed while")]
            if unreadable:
                m, err = unreadable[0]
                check.error = err
                report.explained.append(f"{ref.user}@{ref.domain}: {marked(m.folder)} "
                                        f"({m.path}) is not readable as mail: {err}")
                continue
            if failed:
                check.changed_during_read = failed[0][1]
            if mb.dirname and not has_folder(mb):  # (a missing user's account fails)
                if any(m.key in state_mail for m in group):
                    check.folder_deleted_on_target = True
                else:
                    check.folder_missing = True
            # the files feeding one folder are compared together: a message held
            # identically in two of them is imported once (one identity)
            source_msgs: dict[Identity, SourceMessage] = {}
            for m in reversed(group):
                source_msgs.update(messages.get(m.path, {}))
            result = compare_folder(check, source_msgs, tfolders.get(mb.dirname, {}),
                                    ledger.get(mb.dirname, set()),
                                    named.get(mb.dirname, frozenset()))
            report.folders.append(result)
            proof = _proof(mb, result, source_msgs, windows.get(mb.path)) \
                if len(group) == 1 else None
            if proof is not None:
                proven[folder_key(mb)] = proof
            # after the proof, which is of the messages only
            result.unsubscribed, result.unsubscribable = subscription_gaps(mb)
        for dirname in sorted((set(tfolders) | set(ledger)) - seen):
            check = FolderCheck(ref.domain, ref.user, _folder_name(dirname, names))
            report.folders.append(compare_folder(check, {}, tfolders.get(dirname, {}),
                                                 ledger.get(dirname, set())))


def _proof(mb: SourceMailbox, check: FolderCheck, messages: dict[Identity, SourceMessage],
           seen: Windows | None) -> Proven | None:
    """What to remember of a folder that matched exactly (None: nothing to remember)."""
    if seen is None or seen.size != mb.size or not check.ok or check.error or (
            check.deleted_on_target or check.gone_from_source or check.flags_added_on_target
            or check.keywords_not_carried):
        return None
    digest = source_digest(messages)
    if digest is None:
        return None
    head, tail = seen.digests()
    return Proven(mb.path, mb.inode, mb.size, mb.mtime, head, tail, len(messages), digest)


def _folder_name(dirname: str, names: str) -> str:
    try:
        return folder_from_dirname(dirname, names)
    except MailplanError:
        return dirname


def password_from_env(var: str) -> Secret:
    """The login check's password, from an environment variable (never an argument)."""
    value = os.environ.get(var)
    if not value:
        raise MailplanError(f"environment variable {var} is not set or empty",
                            hint=f"export {var}=... (the password of the test account)")
    return Secret(value)


def iter_failures(report: Report) -> Iterator[str]:
    """One line per failing item (for the summary)."""
    for a in report.accounts:
        if not a.ok:
            yield f"account {a.user}@{a.domain}"
    for f in report.folders:
        if not f.ok:
            yield f"folder {f.user}@{f.domain} {marked(f.folder)}"
    for r in report.routing:
        yield f"routing {r}"
    if report.login is not None and not report.login["ok"]:
        yield f"login {report.login['address']}"
