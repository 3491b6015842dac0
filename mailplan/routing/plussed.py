"""sendmail's ``+*`` wildcards (``list+*`` in an aliases file, ``list+*@domain`` in
virtusertable, and its ``list++@domain`` for a non-empty DETAIL), which caught every
``list+DETAIL`` address, on vpopmail.

qmail-local looks for ``.qmail-EXT`` and then for ``.qmail-PREFIX-default`` at each
``-`` of the extension, and vdelivermail (``--enable-qmail-ext``) strips an extension at
``-`` only: nothing on qmail or vpopmail splits an address at ``+``. So ``list+DETAIL``
can be caught by no alias (``.qmail-list-default`` catches ``list-DETAIL``, another
address), and a literal ``.qmail-list+*`` would get mail for ``list+*`` alone: such a
wildcard is never made an alias. Where sendmail used it (its plussed-users rule, or a
virtusertable key), the plan warns that mail for ``list+DETAIL`` now goes to the
domain's catch-all; local names ``list+DETAIL`` in aliases and ~/.forward files still
resolve through it (:meth:`mailplan.routing.resolve.Resolver._plussed`). A plain
virtusertable line ``name@domain`` took ``name+DETAIL@domain`` too, whatever the
plussed-users rule: :func:`virtual_detail_caution` says where that mail goes now. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable

from mailplan.routing.model import ErrorCode, Finding, Origin
from mailplan.routing.rules import CatchAll
from mailplan.routing.virtusertable import VirtualEntry

WILDCARD = "+*"
#: why qmail has no equivalent, as the findings say it
NO_PLUS = ("qmail-local and vdelivermail split an address extension only at '-' (a "
           ".qmail-NAME-default catches NAME-DETAIL, not NAME+DETAIL)")


def wildcard_problem(name: str) -> str | None:
    """Why ``name`` cannot be an alias because it is a ``+*`` wildcard, or None."""
    if not name.endswith(WILDCARD):
        return None
    return (f"'{WILDCARD}' is sendmail's wildcard for every NAME+DETAIL address, and "
            f"{NO_PLUS}: .qmail-{name} would get mail for the address {name} alone")


def wildcard_alias(name: str, origin: Origin | None, domain: str, *, plus_detail: bool,
                   catch_all: CatchAll) -> Finding:
    """The finding for an aliases-file entry ``NAME+*``, which is not created: a warning
    where sendmail.cf's plussed-users rule made it catch every ``NAME+DETAIL`` (that mail
    goes to the catch-all now), a note where it did not (sendmail used it for no other
    address than ``NAME+*`` itself)."""
    base = name[:-len(WILDCARD)]
    if not plus_detail:
        return Finding("note", f"alias {name!r} is not created: sendmail.cf has no "
                       "plussed-users rule, so sendmail delivered no address but "
                       f"{name} itself through it", origin, domain)
    return Finding(
        "warning", f"alias {name!r} is not created: sendmail delivered every "
        f"{base}+DETAIL@{domain} that is no alias of its own through it (its plussed-users "
        f"rule), but {NO_PLUS}, so no alias can catch those addresses on vpopmail: mail to "
        f"{base}+DETAIL@{domain} goes to the domain's catch-all: {catch_all.describe()} "
        f"(a local name {base}+DETAIL in an alias or ~/.forward still resolves through "
        "it, as on sendmail)", origin, domain)


def virtual_detail_caution(domain: str, entries: Iterable[VirtualEntry],
                           catch_all: CatchAll) -> Finding | None:
    """The caution for ``domain``'s virtusertable lines ``NAME@domain`` without a
    plussed-users rule, or None when it has none: proto.m4's virtuser rules (ruleset 0,
    before ruleset 5) look ``NAME+DETAIL@domain`` up as ``NAME++@``, ``NAME+*@``, then
    ``NAME@``, so sendmail delivered it by that line; on vpopmail it goes to the
    catch-all. Not for an ``error:`` line (sendmail refused those addresses too), a
    wildcard (its own warning) or the ``@domain`` line."""
    lines = sorted((e for e in entries if e.domain == domain and e.local is not None
                    and not e.any_detail and not isinstance(e.target, ErrorCode)),
                   key=lambda e: e.origin.line)
    if not lines:
        return None
    names = sorted(e.local or "" for e in lines)
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return Finding(
        "caution", f"sendmail delivered NAME+DETAIL@{domain} by the virtusertable line "
        f"NAME@{domain}, for NAME {shown} (its virtusertable lookup tries NAME@DOMAIN for "
        "NAME+DETAIL@DOMAIN, with or without a plussed-users rule); qmail and vpopmail split "
        f"an address extension only at '-', so on vpopmail NAME+DETAIL@{domain} is no "
        f"mailbox nor alias and goes to the domain's catch-all: {catch_all.describe()}: tell "
        "the users who hand out +detail addresses", lines[0].origin, domain)
