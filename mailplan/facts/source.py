"""Facts about the old sendmail host: its accounts from passwd and shadow.

The source is only ever read: the one command sent is a batch of ``cat`` calls on one
channel. The files are read as the old server's C library reads them (glibc's nss_files,
behind getpwnam and getspnam, which PAM's pam_unix and login(1) ask): a line that is
empty or a comment (``#``) after its leading white space holds no account and is
skipped (:mod:`mailplan.facts.source_lines`, which the plan notes), and a shadow
line missing trailing fields, as older systems wrote them, has them empty. Otherwise the
parsers are strict: a line the C library would reject too (and so skip: the account
would be missing), or read otherwise than the shadow tools that edit the file (a line
starting with white space), is an error naming host, file and line, never skipped
silently. NIS compatibility lines (``+``/``-``) are reported as errors too, since the
accounts they stand for are not in the file.
"""

from __future__ import annotations

import contextlib
import io
import posixpath
import time
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any, NamedTuple

from mailplan.connectors.base import CommandResult, Connector
from mailplan.errors import READ_ACCESS_HINT, HostError, SourceDataError
from mailplan.facts.hashes import HashInfo, classify
from mailplan.facts.links import followed, resolve
from mailplan.facts.root import OutsideRoot, inside, root_of, spec_file
from mailplan.facts.source_lines import lines as _lines
from mailplan.facts.source_lines import source_notes
from mailplan.remote import run_batch
from mailplan.secret import Secret
from mailplan.shell import join
from mailplan.spec import zone_named
from mailplan.text import is_number


@dataclass(frozen=True)
class Account:
    """One source account: passwd fields plus its shadow password field."""

    name: str
    uid: int
    gid: int
    gecos: str
    home: str
    shell: str
    password: Secret | None  # None when the account has no shadow entry
    hash_info: HashInfo | None
    line: int
    shadow_line: int | None = None  # the line of its shadow entry, when it has one
    #: why the old server refuses this account's logins by date (shadow's account
    #: expiry, or a password expired past its inactivity period), as of the plan's day
    expired: str | None = None
    #: where its password field is (:func:`password_field`): "shadow line 5", or "passwd
    #: line 3" when passwd's own field is not ``x``
    password_at: str | None = None

    @property
    def full_name(self) -> str:
        """The first comma-separated gecos field (the person's name)."""
        return self.gecos.split(",", 1)[0].strip()


@dataclass(frozen=True)
class SourceFacts:
    """All accounts of the source, keyed by name, and the source's time zone."""

    host: str
    passwd_path: str
    shadow_path: str
    accounts: dict[str, Account]
    #: where dates without a zone in its mailboxes are read (None: UTC), and whence
    zone: tzinfo | None = None
    zone_origin: str = "UTC: no time zone given"
    #: ``source.root``: where this machine reads the old server's files ("" for none)
    root: str = ""
    #: under ``source.root``, each home directory (as :func:`inside` puts it there) with
    #: the copy's symbolic links in it followed inside the root, or why it cannot be
    #: (:mod:`mailplan.facts.links`)
    real_homes: Mapping[str, str | OutsideRoot] = field(default_factory=dict)
    #: how passwd and shadow were read where a line is not a whole account line (lines
    #: skipped, shadow fields missing): the plan's notes (:func:`source_notes`)
    notes: tuple[str, ...] = ()

    def home(self, account: Account) -> str:
        """The account's home directory as this machine reads it, without a final
        slash: under ``source.root`` (:mod:`mailplan.facts.root`), its links followed
        there, else as passwd names it. One that would leave the root is an error
        naming its passwd line."""
        try:
            home = inside(self.root, account.home)
            real = self.real_homes.get(home, home)
            if isinstance(real, OutsideRoot):
                raise real
            return real.rstrip("/")
        except OutsideRoot as exc:
            raise SourceDataError(f"the home directory of {account.name!r}: {exc}",
                                  host=self.host, path=self.passwd_path,
                                  line=account.line) from None


class ShadowEntry(NamedTuple):
    """One shadow line: where it is, its password field, and its dates (days since
    1970; None where the field is empty)."""

    line: int
    password: str
    changed: int | None
    max_days: int | None
    inactive: int | None
    expires: int | None
    #: how many fields the line has: 9, or 8 (the reserved last one missing) or 5 or 6
    #: (shadow's old form, without warning, inactivity, expiry and flag), read as empty
    found: int = 9

    def expired(self, today: int) -> str | None:
        """Why login(1) refuses this account on ``today`` (a day number), as shadow's
        ``isexpired`` decides, or None."""
        if self.expires is not None and self.expires > 0 and today >= self.expires:
            return f"the account expired on {_day(self.expires)} (shadow's expiry date)"
        if (self.changed is not None and self.changed > 0 and self.max_days is not None
                and self.inactive is not None and self.max_days >= 0 and self.inactive >= 0):
            ended = self.changed + self.max_days
            if today >= ended + self.inactive:
                return (f"its password expired on {_day(ended)} and the account is inactive "
                        f"since {_day(ended + self.inactive)}")
        return None


def _day(number: int) -> str:
    return (datetime(1970, 1, 1) + timedelta(days=number)).date().isoformat()


def today_number() -> int:
    """Today as shadow counts days (since 1970-01-01, UTC)."""
    return int(time.time() // 86400)


def parse_passwd(data: bytes, *, host: str, path: str) -> dict[str, tuple[int, list[str]]]:
    """passwd bytes to ``name -> (line, fields)``; strict."""
    entries: dict[str, tuple[int, list[str]]] = {}
    for number, line in _lines(data, host, path, gecos=4):
        if line[0] in "+-":
            raise SourceDataError("NIS compatibility entry: its accounts are not in this file",
                                  host=host, path=path, line=number)
        fields = line.split(":")
        if len(fields) != 7:
            raise SourceDataError(f"expected 7 ':'-separated fields, found {len(fields)}",
                                  host=host, path=path, line=number)
        name = fields[0]
        if not name:
            raise SourceDataError("empty user name", host=host, path=path, line=number)
        if not (is_number(fields[2]) and is_number(fields[3])):
            raise SourceDataError(f"uid/gid of {name!r} are not numbers", host=host,
                                  path=path, line=number)
        if any(ord(c) < 32 or ord(c) == 127 for c in fields[5]):
            raise SourceDataError(f"the home directory of {name!r} contains a control "
                                  "character", host=host, path=path, line=number)
        if name in entries:
            raise SourceDataError(f"duplicate entry for {name!r} (first at line "
                                  f"{entries[name][0]})", host=host, path=path, line=number)
        entries[name] = (number, fields)
    return entries


def parse_shadow(data: bytes, *, host: str, path: str) -> dict[str, ShadowEntry]:
    """shadow bytes to ``name -> entry``; strict, never echoes a hash. A line missing
    trailing fields has them empty where glibc's parser (shadow/sgetspent_r.c, behind
    getspnam, and the sgetspent shadow's tools use on glibc systems) reads it so: 8
    fields whose last is not empty (the reserved flag field missing), or shadow's old
    form, 5 fields whose last is not empty, or 6 whose last is. Other counts glibc
    rejects (the account would have no shadow entry there): an error."""
    entries: dict[str, ShadowEntry] = {}
    for number, line in _lines(data, host, path):
        fields = line.split(":")
        found = len(fields)
        if found == 8 and fields[7] or found == 5 and fields[4] or found == 6 and \
                not fields[5]:
            fields = fields[:5] + [""] * 4 if found < 8 else [*fields, ""]
        if len(fields) != 9:
            raise SourceDataError("expected 9 ':'-separated fields (or 8, or the old form's "
                                  f"5), found {found}", host=host, path=path, line=number)
        name = fields[0]
        if not name:
            raise SourceDataError("empty user name", host=host, path=path, line=number)
        if name in entries:
            raise SourceDataError(f"duplicate entry for {name!r} (first at line "
                                  f"{entries[name][0]})", host=host, path=path, line=number)
        if not all(f == "" or _number(f) for f in fields[2:]):
            # glibc's parser rejects the line (the account has no shadow entry there)
            crlf = " (a CR at its end: the file has DOS line ends)" \
                if fields[8].endswith("\r") else ""
            raise SourceDataError(f"the number fields of {name!r} (3 to 9) are not all "
                                  f"numbers or empty{crlf}", host=host, path=path,
                                  line=number)
        dates = [int(f) if f else None for f in (fields[2], fields[4], fields[6], fields[7])]
        entries[name] = ShadowEntry(number, fields[1], *dates, found=found)
    return entries


def _number(field: str) -> bool:
    """A shadow day field: digits, or -1 (what some tools write for "none")."""
    return is_number(field) or field == "-1"


def password_field(name: str, line: int, fields: list[str], entry: ShadowEntry | None
                   ) -> tuple[str, str] | None:
    """The password field the old server checks for an account, and where it is (None:
    none, passwd's ``x`` and no shadow entry). passwd's own field is it unless it is
    ``x`` (or SunOS's ``##NAME``), or empty: PAM's pam_unix, and login(1) without PAM,
    read the shadow entry only then, so a ``*`` or ``!`` there (an account locked by
    editing passwd) or a hash there is what they check, whatever shadow holds."""
    own = fields[1]
    if own in ("", "x", f"##{name}"):
        return (entry.password, f"shadow line {entry.line}") if entry else None
    return own, f"passwd line {line}"


def build_accounts(passwd: dict[str, tuple[int, list[str]]],
                   shadow: dict[str, ShadowEntry], today: int | None = None
                   ) -> dict[str, Account]:
    """Join passwd and shadow entries into accounts (expiry judged on ``today``, a
    shadow day number; default: today)."""
    day = today_number() if today is None else today
    accounts = {}
    for name, (line, f) in passwd.items():
        entry = shadow.get(name)
        found = password_field(name, line, f, entry)
        accounts[name] = Account(name, int(f[2]), int(f[3]), f[4], f[5], f[6],
                                 Secret(found[0]) if found else None,
                                 classify(found[0]) if found else None,
                                 line, entry.line if entry else None,
                                 entry.expired(day) if entry else None,
                                 found[1] if found else None)
    return accounts


def read_spec_source(conn: Connector, src: dict[str, Any]) -> SourceFacts:
    """:func:`read_source` with the paths of the spec's ``source`` section."""
    return read_source(conn, spec_file(src, "passwd"), spec_file(src, "shadow"),
                       src.get("timezone"), root=root_of(src))


def read_source(conn: Connector, passwd_path: str, shadow_path: str,
                timezone: str | None = None, *, root: str = "") -> SourceFacts:
    """Read passwd and shadow from the source in one channel, and its time zone:
    ``timezone`` (an IANA name, the spec's) or the ``localtime`` file next to the passwd
    file (a TZif file, as /etc/localtime is; no such file: UTC). ``root``: the spec's
    ``source.root``, under which the homes passwd names are read; under it, these files
    and the homes are read where the copy's links lead inside it (the copy's
    /etc/localtime -> /usr/share/zoneinfo/... is the copy's zone file, not this
    machine's: :mod:`mailplan.facts.links`)."""
    localtime = posixpath.join(posixpath.dirname(passwd_path), "localtime")
    real = followed(conn, root, [passwd_path, shadow_path, localtime])
    # cat's messages in the C locale: a wrong path is told from a file it may not read
    results = run_batch(conn, [join(["LC_ALL=C", "cat", "--", real[passwd_path]]),
                               join(["LC_ALL=C", "cat", "--", real[shadow_path]]),
                               *([] if timezone else [join(["cat", "--", real[localtime]])])])
    for key, path, res in zip(("passwd", "shadow"), (passwd_path, shadow_path), results[:2],
                              strict=True):
        if res.returncode != 0:
            why = res.stderr_text[:300] or f"exit {res.returncode}"
            wrong = why.endswith((": No such file or directory", ": Is a directory"))
            raise HostError(f"cannot read {path}: {why}",
                            host=conn.name, step="read source accounts",
                            hint=f"check source.{key} in the spec (and source.root): it "
                            f"names no file on {conn.name}" if wrong and root else
                            f"check source.{key} in the spec: it names no file on "
                            f"{conn.name}" if wrong else READ_ACCESS_HINT)
    passwd = parse_passwd(results[0].stdout, host=conn.name, path=passwd_path)
    shadow = parse_shadow(results[1].stdout, host=conn.name, path=shadow_path)
    zone, origin = (zone_named(timezone), f"{timezone}, from the spec") if timezone else \
        _zone_file(results[2], localtime if real[localtime] == localtime
                   else f"{localtime} (read at {real[localtime]})", conn.name)
    accounts = build_accounts(passwd, shadow)
    notes = source_notes(passwd_path, results[0].stdout, shadow_path, results[1].stdout,
                         shadow)
    return SourceFacts(conn.name, passwd_path, shadow_path, accounts, zone, origin, root,
                       _real_homes(conn, root, accounts.values()), tuple(notes))


def _real_homes(conn: Connector, root: str, accounts: Iterable[Account]
                ) -> dict[str, str | OutsideRoot]:
    """Under ``root``, each home directory passwd names (one that leaves the root is
    left out: :meth:`SourceFacts.home` refuses it) with its links followed there."""
    if not root:
        return {}
    homes = []
    for account in accounts:
        with contextlib.suppress(OutsideRoot):
            homes.append(inside(root, account.home))
    return resolve(conn, root, homes)


def _zone_file(res: CommandResult, path: str, host: str) -> tuple[tzinfo | None, str]:
    """The source's time zone from its TZif file, or None (UTC) when it has none."""
    if res.returncode != 0:
        return None, f"UTC: {path} was not found on {host}"
    try:
        zone = zoneinfo.ZoneInfo.from_file(io.BytesIO(res.stdout))
    except (ValueError, OSError) as exc:
        raise SourceDataError(f"not a time zone file ({exc}); set source.timezone in the "
                              "spec", host=host, path=path) from None
    now = datetime.now(zone).tzname() or "?"
    return zone, f"{path} on {host} (now {now})"
