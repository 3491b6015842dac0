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
number of users (:mod:`mailplan.verify_group` compares a group). Messages are matched
by identity (sha256 + occurrence, embedded in the file names mailplan writes); see
:mod:`mailplan.verify_model` for what counts as a difference. A folder that matched
exactly last time is not read again while its source file and its Maildir are unchanged
(:mod:`mailplan.verify_cache`; ``--full`` reads everything).

The optional live login check runs vpopmail's ``vchkpw`` on the target the way POP and
IMAP servers do (checkpassword protocol on fd 3, reference/vpopmail/06-vchkpw.md); the
password travels on the command's stdin, never in argv, output or the report.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import tzinfo
from pathlib import Path
from typing import Any

from mailplan.connectors.base import Connector, abort_all
from mailplan.desired import build_desired
from mailplan.diff import diff
from mailplan.earlier_folders import earlier_folders
from mailplan.errors import HostError, MailplanError
from mailplan.facts.mailboxes import SourceMailbox, list_source_mailboxes
from mailplan.facts.maildirs import ledger_sizes
from mailplan.facts.source import read_spec_source
from mailplan.facts.vpopmail import TargetFacts, read_target
from mailplan.hosts import connect
from mailplan.mailboxes import mailbox_refs, maildir_of
from mailplan.routing.integrate import plan_routing
from mailplan.secret import Secret
from mailplan.shell import chunks_within, join
from mailplan.spec import Spec, folder_names, keeps_passwords
from mailplan.state import State
from mailplan.subscriptions import source_subscriptions
from mailplan.userdirs import withhold_unmakeable
from mailplan.verify_cache import Proven, cache_path
from mailplan.verify_cache import load as load_proven
from mailplan.verify_cache import save as save_proven
from mailplan.verify_group import GroupCheck
from mailplan.verify_model import Report, check_account
from mailplan.verify_reads import STEP, read_target_mail

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
    # every kind only explains a difference, but what the source login could not see
    # (verify cannot say that mail is on the target) and a path the spec names that the
    # source does not have (a typo in folders: leaves every folder behind)
    report.explained += [str(note) for note in notes if not (note.unseen or note.wrong_path)]
    report.unmigrated += [str(note) for note in notes if note.unseen or note.wrong_path]
    mboxrd = bool(spec.data["source"].get("mboxrd", False))
    maildirs: dict[tuple[str, str], str] = {}
    for ref in refs:
        tdom = target.domains.get(ref.domain)
        tuser = tdom.users.get(ref.user) if tdom else None
        if tuser is not None:
            maildirs[(ref.domain, ref.user)] = maildir_of(tuser.dir)
    # a folder an earlier version imported under a name it no longer gets is that one
    mailboxes, renamed = earlier_folders(
        target_conn, mailboxes,
        {mb.key: maildirs.get((mb.domain, mb.user), "") for mb in mailboxes}, state_mail)
    report.explained += [f"{p.user}@{p.domain}: {p.message}" for p in renamed]
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
    Maildirs (two channels), read here (the tests count these reads by this module's
    ``read_target_mail``), then their source mailboxes through one ``tar`` channel
    (:class:`~mailplan.verify_group.GroupCheck`, which says what ``state_mail`` and
    ``subscribed`` are)."""
    target = read_target_mail(target_conn, sorted(
        {maildirs[(r.domain, r.user)] for r in refs if (r.domain, r.user) in maildirs}))
    group = GroupCheck(refs, maildirs, by_user, target, mboxrd=mboxrd, zone=zone,
                       names=names, state_mail=state_mail or {}, subscribed=subscribed or {})
    group.read_source(source_conn, old)
    group.compare(report, proven)


def password_from_env(var: str) -> Secret:
    """The login check's password, from an environment variable (never an argument)."""
    value = os.environ.get(var)
    if not value:
        raise MailplanError(f"environment variable {var} is not set or empty",
                            hint=f"export {var}=... (the password of the test account)")
    try:  # checked before the hosts are read: it was a traceback at the very end
        value.encode()
    except UnicodeEncodeError:  # a byte that is not UTF-8, kept as a surrogate
        raise MailplanError(f"environment variable {var} is not UTF-8 text",
                            hint="mailplan sets and checks passwords as UTF-8") from None
    return Secret(value)
