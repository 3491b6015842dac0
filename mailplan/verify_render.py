"""Text form of a verification report: a table per section, then the verdict.

Never shows a password or a hash: accounts say ``identical`` or ``DIFFERENT``. A finding
about a message the source has says where it is there (its number and From_ line offset
in the source file, and its arrival time), each on a line of its own.
"""

from __future__ import annotations

from mailplan.text import escape, marked
from mailplan.verify_model import AccountCheck, FolderCheck, Report, SourcePosition, identity_of

_LIMIT = 5  # messages listed per kind of difference; the counts are always complete


def _account_line(a: AccountCheck) -> str:
    if not a.present:
        return f"  FAIL  {a.user}@{a.domain}: missing on the target"
    notes = []
    notes.append({"identical": "password identical",
                  # create_only: which side changed it cannot be told, as plan says
                  "kept": "password differs from the spec's; kept "
                          "(target.passwords: create_only)",
                  "locked": "password locked, as on the old server",
                  "not locked": "password NOT LOCKED: the old server locks the account "
                                "out, its password here still lets it in (`mailplan apply` "
                                "locks it, unless target.passwords is create_only)"}.get(
                      a.password, "password DIFFERENT"))
    notes.append(f"quota {a.quota[1]}" if a.quota[0] == a.quota[1]
                 else f"quota {a.quota[1]} (spec: {a.quota[0]})")
    notes.append(f"comment {a.comment[1]!r}" if a.comment[0] == a.comment[1]
                 else f"comment {a.comment[1]!r} (spec: {a.comment[0]!r})")
    return f"  {'ok  ' if a.ok else 'FAIL'}  {a.user}@{a.domain}: {', '.join(notes)}"


def _where(p: SourcePosition) -> str:
    """Where the source has a message, for an administrator to find it on the old server."""
    arrival = f", arrival {p.arrival_utc}" if p.arrival_utc else ""
    return (f"on the source: message {p.message}, From_ line at byte {p.offset} of "
            f"{p.path}{arrival}")


def _listed(label: str, items: list[str], f: FolderCheck) -> list[str]:
    """The first :data:`_LIMIT` findings of one kind: on the label's line, or where one
    names a message the source has, one a line with where it is there."""
    shown = items[:_LIMIT]
    more = f"... ({len(items)} in all)" if len(items) > _LIMIT else ""
    placed = [(item, f.on_source.get(identity_of(item))) for item in shown]
    if not any(p for _, p in placed):
        return [f"          {label}: {', '.join(shown)}" + (f", {more}" if more else "")]
    return ([f"          {label}:"]
            + [f"            {item}" + (f" ({_where(p)})" if p else "") for item, p in placed]
            + ([f"            {more}"] if more else []))


#: what carries a lost flag over: the next plan's ``~ flags`` sees one set on the old
#: server where it reads the spool whole; one set in place since the import, in a spool
#: read from its checkpoint, only ``--rescan`` does, and so for one the user removed on
#: the new server from a message whose source did not change, imported by a version that
#: recorded no flags (the ledger's flags lines: no plan proposes it)
_FLAGS_LOST_FIX = ("          (`mailplan apply SPEC` adds them as `~ flags` where its plan "
                   "reads that mailbox whole; where the plan shows no `~ flags`, only "
                   "`mailplan apply --rescan SPEC` does: a flag set on the old server in "
                   "place since the import, or one the user removed on the new server "
                   "from a message an earlier mailplan imported, which verify cannot tell "
                   "apart)")


def _details(f: FolderCheck) -> list[str]:
    lines = []
    for label, items in (("missing on the target", f.missing), ("extra", f.extra),
                         ("content differs", f.content), ("flags lost", f.flags),
                         ("date differs", f.dates),
                         ("deleted by the user on the target (not a failure)",
                          f.deleted_on_target),
                         ("no longer on the source (not a failure)", f.gone_from_source),
                         ("moved or copied here by the user on the target from another folder (not "
                          "a failure)", f.moved_on_target),
                         ("moved by the user on the target to another folder (not a "
                          "failure)", f.moved_away),
                         ("flags added on the target (not a failure)",
                          f.flags_added_on_target),
                         ("flags removed on the target by the user (not a failure)",
                          f.flags_removed_on_target),
                         ("keywords the folder had no letter left for (dovecot keeps 26; "
                          "not a failure)", f.keywords_not_carried)):
        if items:
            lines += _listed(label, items, f)
        if items and label == "flags lost":
            lines.append(_FLAGS_LOST_FIX)
    if f.folder_missing:
        lines.append("          folder missing on the target (`mailplan apply` creates it)")
    if f.unsubscribed:
        fix = ("`mailplan apply` subscribes it" if not f.unsubscribable else
               f"{' and '.join(f.unsubscribable)}, where no IMAP server keeps subscriptions: "
               "move it away, then apply")
        lines.append(f"          not subscribed in {', '.join(f.unsubscribed)} (a client "
                     f"that lists subscribed folders only will not show it; {fix})")
    if f.folder_deleted_on_target and f.missing:
        # as the plan says it: the new mail is imported, which makes the folder again
        lines.append("          folder deleted by the user on the target after mailplan "
                     "imported into it (not a failure); `mailplan apply` makes it again "
                     f"with only the {len(f.missing)} message(s) missing (those deleted "
                     "are not brought back)")
    elif f.folder_deleted_on_target:
        lines.append("          folder deleted by the user on the target (not a failure)")
    if f.changed_during_read:
        lines.append(f"          source mailbox {f.changed_during_read}; run verify again")
    return lines


def render_report(report: Report) -> str:
    """The report as text (ends with a newline)."""
    out = [f"Accounts on {report.target_host}:"]
    out += [_account_line(a) for a in report.accounts] or ["  (no users in the spec)"]
    out.append("")
    out.append("Mailboxes (messages):")
    header = (f"  {'':4}  {'folder':<40} {'source':>6} {'target':>6} {'missing':>7} "
              f"{'extra':>5} {'content':>7} {'flags':>5} {'dates':>5} {'deleted':>7}")
    out.append(header)
    for f in report.folders:
        name = f"{f.user}@{f.domain} {marked(f.folder)}"
        out.append(f"  {'ok  ' if f.ok else 'FAIL'}  {name:<40} {f.source:>6} {f.target:>6} "
                   f"{len(f.missing):>7} {len(f.extra):>5} {len(f.content):>7} "
                   f"{len(f.flags):>5} {len(f.dates):>5} {len(f.deleted_on_target):>7}")
        out += _details(f)
    if not report.folders:
        out.append("  (no mailboxes)")
    reused = sum(f.reused for f in report.folders)
    if reused:
        out.append(f"  ({reused} folder(s) exactly as the last verify proved them: source "
                   "file and Maildir unchanged, not read again; --full re-reads them)")
    out.append("")
    if report.routing:
        out.append("Domains and routing not as specified (run `mailplan plan` to see the "
                   "changes):")
        out += [f"  FAIL  {r}" for r in report.routing]
    else:
        out.append("Routing: domains, catch-alls, aliases and forwards as specified.")
    if report.unmigrated:
        out.append("")
        out.append("Not migrated (the plan's problems: leave each out of the spec, say "
                   "in it how to migrate it, correct the path it names, or let mailplan "
                   "read it):")
        out += [f"  FAIL  {e}" for e in report.unmigrated]
    if report.login is not None:
        mark = "ok  " if report.login["ok"] else "FAIL"
        out.append("")  # a section of its own, not a line of the list above
        out.append(f"Login check: {mark}  {report.login['address']}: {report.login['detail']}")
    if report.explained:
        out.append("")
        out.append("Explained (not failures; the plan lists them too, some only with -v):")
        out += [f"  ! {e}" for e in report.explained]
    out.append("")
    if report.ok:
        out.append("Verified: the target matches the source and the spec.")
    else:
        failing = (sum(not a.ok for a in report.accounts) + sum(not f.ok for f in report.folders)
                   + len(report.routing) + len(report.unmigrated)
                   + (report.login is not None and not report.login["ok"]))
        out.append(f"NOT verified: {failing} item(s) marked FAIL above.")
    return "\n".join(escape(line) for line in out) + "\n"
