"""Pure parsers of what the vpopmail target reports about routing.

Each parser takes recorded command output (see reference/vpopmail/09, 10, 08 and 02) and
returns plain data; the commands themselves are run by the core's fact layer:

- ``valias -s DOMAIN``: ``name@domain -> line`` per line of each .qmail-NAME; exit 255 with
  "No aliases found for domain D" when there are none (also for a domain not in assign);
- ``vdominfo DOMAIN`` / ``vdominfo -d DOMAIN``: ``alias: NAME`` lines list alias domains
  (given an alias domain, vdominfo reports the real one);
- a domain's ``.qmail-default``: one ``| .../vdelivermail '' WHAT`` line -> catch-all policy;
- a mailbox's own ``.qmail`` (its forward): the delivery lines.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from mailplan.routing.model import RoutingError
from mailplan.routing.rules import CatchAll
from mailplan.secret import mask_output

NO_ALIASES = "No aliases found for domain "


@dataclass(frozen=True)
class DomainInfo:
    """The parts of ``vdominfo DOMAIN`` routing needs."""

    domain: str
    directory: str
    alias_domains: tuple[str, ...]


@dataclass(frozen=True)
class ObservedRouting:
    """What the target has for one domain, assembled by the core from the parsers below.

    ``catch_all`` is None when .qmail-default is missing or not a vdelivermail line
    mailplan understands; ``catch_all_text`` keeps its raw content for the plan.
    """

    domain: str
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    forwards: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    alias_domains: tuple[str, ...] = ()
    catch_all: CatchAll | None = None
    catch_all_text: str = ""


def parse_valias_list(stdout: str, exit_code: int) -> dict[str, tuple[str, ...]]:
    """Alias name -> delivery lines from ``valias -s DOMAIN`` (names lower-case, '.' kept)."""
    lines = [line for line in stdout.split("\n") if line]
    if exit_code != 0:
        if lines and lines[-1].startswith(NO_ALIASES):
            return {}
        raise RoutingError(f"valias -s failed (exit {exit_code}): "
                           f"{mask_output(stdout.strip())[:300]!r}")
    out: dict[str, list[str]] = {}
    for line in lines:
        address, sep, delivery = line.partition(" -> ")
        name, at, _domain = address.rpartition("@")
        if not sep or not at or not name:
            raise RoutingError(f"unexpected line in valias -s output: {mask_output(line)!r}")
        out.setdefault(name.lower(), []).append(delivery)
    return {name: tuple(deliveries) for name, deliveries in out.items()}


def parse_alias_domains(stdout: str) -> tuple[str, ...]:
    """Alias domains from the ``alias: NAME`` lines of any single-domain vdominfo form."""
    return tuple(line[len("alias: "):].strip() for line in stdout.split("\n")
                 if line.startswith("alias: "))


def parse_vdominfo(stdout: str) -> DomainInfo:
    """Domain (the real one, also when asked about an alias), directory and alias domains."""
    fields: dict[str, str] = {}
    for line in stdout.split("\n"):
        key, sep, value = line.partition(":")
        if sep and key in ("domain", "dir") and key not in fields:
            fields[key] = value.strip()
    if "domain" not in fields or "dir" not in fields:
        raise RoutingError(f"unexpected vdominfo output: {mask_output(stdout.strip())[:200]!r}")
    return DomainInfo(fields["domain"], fields["dir"], parse_alias_domains(stdout))


def parse_qmail_default(content: str, domain: str) -> CatchAll | None:
    """The catch-all policy of a domain's .qmail-default, or None if not recognised.

    Recognised: ``delete``, ``bounce-no-mailbox``, an address (``user@domain`` of this
    domain is deliver-to-user, as mailplan writes it) and a mailbox path (as
    ``vadddomain -e user`` writes it: ``/home/vpopmail/domains/DOMAIN/user``).
    """
    lines = [line for line in content.split("\n") if line.strip()]
    if len(lines) != 1 or not lines[0].lstrip().startswith("|"):
        return None
    try:
        argv = shlex.split(lines[0].lstrip()[1:])
    except ValueError:
        return None
    if len(argv) != 3 or not argv[0].endswith("/vdelivermail"):
        return None
    what = argv[2]
    if what == "delete":
        return CatchAll("delete")
    if what == "bounce-no-mailbox":
        return CatchAll("bounce")
    if what.startswith("/"):
        parts = what.rstrip("/").split("/")
        if parts[-1] == "Maildir":
            parts.pop()
        return CatchAll("deliver-to-user", parts[-1]) if domain in parts[:-1] else None
    local, at, host = what.rpartition("@")
    if at and local:
        if host.lower() == domain:
            return CatchAll("deliver-to-user", local.lower())
        return CatchAll("forward-to-address", what)
    return None


def parse_dot_qmail(content: str) -> tuple[str, ...]:
    """Delivery lines of a mailbox's own .qmail ('' when the file is missing), each as
    vdelivermail reads it: up to its newline, a carriage return before it kept (part of
    the address or path it delivers to: a CRLF file does not deliver as its text reads)."""
    lines = content.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return tuple(lines)
