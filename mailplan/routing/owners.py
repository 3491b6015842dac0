"""Owner aliases: ``owner-NAME`` meant one thing to sendmail, ``NAME-owner`` means
another to qmail-local. :func:`owner_findings` says so for a domain's mapped aliases
(called by :mod:`mailplan.routing.mapdomain`). Pure.
"""

from __future__ import annotations

from mailplan.routing.model import Finding, Origin
from mailplan.routing.resolve import Resolver
from mailplan.routing.rules import CatchAll


def owner_findings(domain: str, aliases: dict[str, tuple[str, ...]],
                    origins: dict[str, Origin], resolver: Resolver,
                    catch_all: CatchAll) -> None:
    """Owner aliases mean one thing to sendmail and another to qmail-local.

    sendmail sends the delivery errors of mail it expands for the alias NAME to
    ``owner-NAME``; qmail returns them to the sender (a note). qmail-local, forwarding
    mail for NAME, makes ``NAME-owner`` the envelope sender when ``.qmail-NAME-owner``
    exists, with the local part it was given: vpopmail's ``DOMAIN-NAME`` (qmail-send's
    virtualdomains prefix), so the sender is ``DOMAIN-NAME-owner@DOMAIN``, which is no
    address on vpopmail: those errors go to the domain's catch-all (a caution)."""
    for name in sorted(aliases):
        if name.startswith("owner-") and name[len("owner-"):] in aliases:
            listed = name[len("owner-"):]
            resolver.note(f"alias {name}: sendmail sent the delivery errors of mail for "
                          f"{listed}@{domain} to it; qmail returns them to the sender",
                          origins.get(name))
        if name.endswith("-owner") and name[:-len("-owner")] in aliases:
            listed = name[:-len("-owner")]
            resolver.findings.append(Finding(
                "caution", f"alias {name}: qmail-local makes it the owner of the alias "
                f"{listed}@{domain}: mail it forwards for {listed} gets the envelope sender "
                f"{domain}-{name}@{domain} (the local part vpopmail's virtual domain gives "
                "it), which is no mailbox nor alias, so delivery errors for "
                f"{listed}'s destinations go to the domain's catch-all: "
                f"{catch_all.describe()} (sendmail gave NAME-owner no such meaning; rename "
                "one of them on the source to keep the errors going to the sender)",
                origins.get(name), domain))
