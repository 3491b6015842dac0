"""Lines an entry need not list again: its mail reaches a mailbox whose own .qmail delivers
them already, where sendmail broke a loop at that mailbox.

sendmail delivers each recipient of a message once. qmail suppresses no duplicate: an
entry (an alias, or a mailbox's .qmail) whose line ``&bob@domain`` runs bob's own
.qmail, and which also lists a line that .qmail delivers, delivers that line twice.
Where sendmail's expansion of the entry went through a loop broken at bob (its
self_reference in recipient.c), the entry's mail reached bob and everything bob's
alias or ~/.forward delivers; mapped, those are bob's .qmail lines, so the entry does
not list them again. Two kinds of loop:

- an alias loop broken at a user while resolving the entry itself (``staff: bob,
  alice`` with ``bob: staff``): :attr:`Handoffs.broken`;
- a ~/.forward that leads back to its own user (bob's ``~/.forward`` says ``staff``,
  or ``bob``): every entry naming bob (not ``\\bob``, which skipped the ~/.forward)
  reaches that loop: :attr:`Handoffs.reached` and :attr:`Handoffs.looping`.

Outside a loop nothing is dropped (``alice, \\bob`` in bob's ~/.forward): a copy too
many is better than a copy lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field, replace

from mailplan.routing.model import Finding
from mailplan.routing.resolve import OWN_MAILDIR
from mailplan.routing.rules import DomainRouting

Entry = tuple[str, str]  # (domain, name): an alias, or a mailbox's .qmail
Mailbox = tuple[str, str]  # (domain, mailbox)


@dataclass
class Handoffs:
    """What the mapping of every domain learnt of its entries' loops."""

    #: entry -> the mailboxes where its own alias loops were broken
    broken: dict[Entry, set[Mailbox]] = field(default_factory=dict)
    #: entry -> the mailboxes it names (through their .qmail: not ``\\user``)
    reached: dict[Entry, set[Mailbox]] = field(default_factory=dict)
    #: mailboxes whose .qmail is their ~/.forward, leading back to the mailbox itself
    looping: set[Mailbox] = field(default_factory=set)

    def record(self, entry: Entry, broken: Iterable[Mailbox],
               reached: Iterable[Mailbox]) -> None:
        """What the resolution of ``entry`` (as mapped now) broke and reached; what an
        earlier mapping of the same name recorded is forgotten."""
        for table, found in ((self.broken, set(broken)), (self.reached, set(reached))):
            table.pop(entry, None)
            if found:
                table[entry] = found

    def through(self, entry: Entry) -> dict[Mailbox, str]:
        """The mailboxes ``entry`` hands its mail to where sendmail broke a loop, each
        with the loop's kind (as a note says it)."""
        out = {m: "a loop through its ~/.forward"
               for m in self.reached.get(entry, set()) & self.looping}
        out.update((m, "an alias loop") for m in self.broken.get(entry, ()))
        return out


def handed_to_mailboxes(result: dict[str, DomainRouting], handoffs: Handoffs,
                        unwritten: Set[str]) -> list[Finding]:
    """Drop the lines an entry's loops deliver already (:class:`Handoffs`).

    ``staff: alice, bob`` with ``bob: staff``: sendmail delivers mail for staff to alice
    and to bob (the loop broken at bob) once each. On vpopmail staff's line
    ``&bob@domain`` runs bob's own .qmail, which is bob's alias and delivers to alice
    too; qmail suppresses no duplicate, so staff does not list alice again. The same
    with bob's ~/.forward saying ``staff``. Only lines of such a mailbox's .qmail are
    dropped (what it delivers), never the mailbox itself; none for a mailbox of an
    ``unwritten`` domain, whose .qmail the apply does not write (a copy too many is
    better than a copy lost)."""
    out: list[Finding] = []
    for domain, name in sorted({*handoffs.broken, *handoffs.reached}):
        mailboxes = handoffs.through((domain, name))
        routing = result[domain]
        table = dict(routing.aliases if name in routing.aliases else routing.forwards)
        lines = table.get(name)
        if lines is None or not mailboxes:
            continue
        kept = {f"&{mailbox}@{where}" for where, mailbox in mailboxes}
        delivered: dict[str, Mailbox] = {}  # line -> the mailbox whose .qmail delivers it
        for where, mailbox in sorted(mailboxes):
            own = result[where].forwards.get(mailbox, ()) \
                if where in result and where not in unwritten else ()
            if f"&{mailbox}@{where}" in lines and (where, mailbox) != (domain, name):
                for line in own:
                    if line != OWN_MAILDIR and line not in kept:
                        delivered.setdefault(line, (where, mailbox))
        dropped = [line for line in lines if line in delivered]
        if not dropped:
            continue
        out.append(_dropped(result, (domain, name), table, dropped, delivered, mailboxes))
    return out


def _dropped(result: dict[str, DomainRouting], entry: Entry, table: dict[str, tuple[str, ...]],
             dropped: list[str], delivered: Mapping[str, Mailbox],
             mailboxes: Mapping[Mailbox, str]) -> Finding:
    """Drop ``dropped`` from ``entry``'s lines in ``result``: the note saying so."""
    domain, name = entry
    routing = result[domain]
    table[name] = tuple(line for line in table[name] if line not in delivered)
    what = "alias" if name in routing.aliases else "the .qmail of"
    result[domain] = replace(routing, **{"aliases" if what == "alias" else "forwards": table})
    via = sorted({delivered[line] for line in dropped}, key=lambda m: (m[1], m[0]))
    loops = sorted({mailboxes[m] for m in via})
    them = "them" if len(dropped) > 1 else "it"
    return Finding(
        "note", f"{what} {name}@{domain}: {', '.join(dropped)} not listed again: the "
        f".qmail of {', '.join(f'{m}@{d}' for d, m in via)}, which it reaches (sendmail broke "
        f"{' and '.join(loops)} there), delivers {them} already, and qmail would deliver "
        f"{them} twice", routing.origins.get(name), domain)
