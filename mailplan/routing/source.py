"""What the source has for routing: aliases, virtusertable, users' ~/.forward files.

:func:`read_source_routing` reads it in a few batches for
:func:`mailplan.routing.integrate.plan_routing`: sendmail.cf (AliasFile, ForwardPath,
+detail rule) and the host's own names (sendmail's class w); the aliases files (the
spec's, else AliasFile's, else the first default there is) with their ``:include:``
files; virtusertable; each migrated user's forward file. Users' files and ``:include:``
files are read without following links, and left out with a warning where sendmail would
refuse them. Parse errors name the host, file and line. Read only. The files are parsed
by :mod:`~mailplan.routing.sendmailcf`, :mod:`~mailplan.routing.hostnames` (class w),
:mod:`~mailplan.routing.aliases` (its ``:include:`` files read by
:mod:`~mailplan.routing.includes`), :mod:`~mailplan.routing.virtusertable` and
:mod:`~mailplan.routing.forward`. Under ``source.root`` each file is read where the
copy's links lead inside it (:mod:`~mailplan.facts.links`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from mailplan.connectors.base import Connector
from mailplan.errors import READ_ACCESS_HINT, HostError, SourceDataError
from mailplan.facts.links import followed, resolve
from mailplan.facts.root import OutsideRoot, inside, spec_file
from mailplan.facts.survey import parse_local_names, parse_sendmail_cf
from mailplan.routing.aliases import AliasFile, parse_aliases
from mailplan.routing.filesafety import (
    FileSafety,
    forward_file,
    forward_files,
    read_guarded,
)
from mailplan.routing.forward import ForwardFile, parse_forward
from mailplan.routing.hostnames import class_w_files, clean_names, host_names, short_name
from mailplan.routing.includes import host_error, read_includes
from mailplan.routing.model import Finding, Origin, RoutingError
from mailplan.routing.readfiles import FileRead, read_request, run_reads
from mailplan.routing.rules import SourceRouting
from mailplan.routing.sendmailcf import (
    AliasDatabase,
    dont_blame_sendmail,
    forward_path,
    max_alias_recursion,
    parse_alias_files,
    plus_detail_rule,
)
from mailplan.routing.virtusertable import parse_virtusertable

if TYPE_CHECKING:
    from mailplan.desired import Desired
    from mailplan.facts.source import SourceFacts
    from mailplan.spec import Spec

DEFAULT_ALIASES = ("/etc/aliases", "/etc/mail/aliases")


def _read_files(conn: Connector, paths: Sequence[str], *, follow: bool = True,
                root: str = "") -> dict[str, FileRead]:
    """Read several source files in one batch (a few commands, not one per file); with
    ``root``, each where the copy's links lead inside it
    (:func:`~mailplan.facts.links.followed`)."""
    real = followed(conn, root, paths)
    reads = run_reads(conn, read_request([real[p] for p in paths], follow=follow))[0]
    return {p: reads[real[p]] for p in paths}


def _unreadable(host: str, path: str, what: str) -> HostError:
    return HostError(f"cannot read {what} {path}", host=host, step="read source routing",
                     hint=READ_ACCESS_HINT)


def read_source_routing(conn: Connector, spec: Spec, source: SourceFacts,
                        desired: Desired, *, need_aliases: bool,
                        findings: list[Finding]) -> SourceRouting:
    """The source's aliases, virtusertable and migrated users' ~/.forward files.

    An aliases file nobody asked for (default path, no domain imports aliases) that
    cannot be read or parsed is a warning appended to ``findings``, not an error: it is
    then only missing for resolving local names.
    """
    src = spec.data["source"]
    root = source.root  # source.root: the old server's paths are read under it
    given = _given_alias_files(src)
    defaults = [inside(root, p) for p in DEFAULT_ALIASES]
    alias_paths = given if given is not None else defaults
    virtual = src.get("virtusertable")
    user_homes: dict[str, str] = {}  # as passwd names them
    real_homes: dict[str, str] = {}  # where this machine reads them
    uids: dict[str, int] = {}
    if src.get("forward", True):
        for domain in desired.domains.values():
            logins = [user.source or "" for user in domain.users.values()]
            for login in [*logins, *domain.kept.values()]:
                account = source.accounts.get(login)
                if account is not None and account.home.startswith("/"):
                    # under source.root, its links followed there; one that leaves it
                    # is refused
                    real_homes[account.name] = source.home(account)
                    user_homes[account.name] = account.home.rstrip("/")
                    uids[account.name] = account.uid
    named = src.get("local_hostnames")
    etc = posixpath.dirname(spec_file(src, "passwd"))  # the source's /etc
    sendmail_dir = src.get("sendmail_dir", f"{etc}/mail")
    config = [] if named is not None else class_w_files(sendmail_dir, etc)
    cf_path, hostname_path = f"{sendmail_dir.rstrip('/')}/sendmail.cf", f"{etc}/hostname"
    # ForwardPath (sendmail.cf) and $w (the host name) say which forward file is read
    forward_config = [p for p in (cf_path, hostname_path) if user_homes and p not in config]
    # sendmail.cf's AliasFile says which aliases files sendmail reads (unless the spec
    # does), and its rules whether it delivers user+detail to user
    alias_config = [cf_path]
    reads = _read_files(conn, [*alias_paths, *([virtual] if virtual else []), *config,
                               *forward_config, *alias_config], root=root)
    templates = forward_path(_text(reads, cf_path), cf_path, short_name(
        _text(reads, hostname_path)), findings) if user_homes else []
    listed = {login: forward_files(templates, home, login, root, findings)
              for login, home in user_homes.items()}
    # under source.root, where the copy's links lead: all users' files looked up at once
    real = resolve(conn, root, [p for paths in listed.values() for p in paths], last=False)
    candidates = {login: _forward_files(real, paths, login, findings)
                  for login, paths in listed.items()}
    # users' own files: a symbolic link is not followed (sendmail reads ~/.forward as
    # the user; mailplan reads as root and would read whatever the link names). sendmail
    # refuses a forward file in a group- or world-writable directory too: the modes come
    # with the read (the candidates depend on sendmail.cf, read above, so not before)
    forward_reads, modes = read_guarded(
        conn, sorted({p for ps in candidates.values() for p in ps}), root)
    reads.update(forward_reads)
    safety = FileSafety(dont_blame_sendmail(_text(reads, cf_path)))
    host = conn.name
    homes = {}
    for login, paths in candidates.items():
        def refusal(path: str, read: FileRead, uid: int = uids[login]) -> str | None:
            return (safety.dir_problem(path, modes, forwarding=True)
                    or safety.file_problem(read, forwarding=True, owners=(uid, 0)))

        path = forward_file(login, paths, reads, real_homes[login], refusal, findings)
        if path and reads[path].data is None:
            raise _unreadable(host, path, f"the ~/.forward of {login}")
        if path:
            homes[login] = path
    aliases = _read_alias_files(conn, reads, given, cf_path, imported=need_aliases,
                                findings=findings, root=root)
    table = None
    if virtual:
        if not reads[virtual].exists or reads[virtual].data is None:
            raise _unreadable(host, virtual, "the virtusertable")
        try:
            table = parse_virtusertable(reads[virtual].data or b"", virtual)
        except RoutingError as exc:
            raise host_error(exc, host) from None
    forwards: dict[str, ForwardFile] = {}
    for login, path in homes.items():
        forwards[login] = parse_forward(reads[path].data or b"", path, login)
        findings.extend(Finding("warning", f"~{login}/.forward: an entry that is not an "
                                "address (its text is not shown) is not migrated; sendmail "
                                "could not deliver to it either", origin)
                        for origin in forwards[login].bad)
    own = (clean_names(named) if named is not None
           else _read_class_w(conn, reads, config, root, findings)) - {"localhost"}
    if own:
        where = ("source.local_hostnames in the spec" if named is not None else
                 f"{sendmail_dir} and the host name")
        findings.append(Finding("note", "an address at one of the old host's own names "
                                f"(sendmail's class w, from {where}) is a local name: "
                                + ", ".join(sorted(own))))
    elif named is None:
        findings.append(Finding("note", "no host name of the old server was found (sendmail's "
                                f"class w: none in {sendmail_dir}'s local-host-names, "
                                f"sendmail.cw or sendmail.cf, nor in {hostname_path}): an "
                                "address at its own name (bob@oldmail.example.com in a "
                                "~/.forward or an alias) is taken for a remote one; list "
                                "its names in source.local_hostnames"))
    return SourceRouting(aliases=aliases, forwards=forwards, virtusertable=table,
                         plus_detail=plus_detail_rule(_text(reads, cf_path), cf_path),
                         max_alias_recursion=max_alias_recursion(_text(reads, cf_path)),
                         local_hostnames=own | {"localhost"})


def _forward_files(real: Mapping[str, str | OutsideRoot], paths: list[str], login: str,
                   findings: list[Finding]) -> list[str]:
    """``paths`` (forward files under ``root``) where this machine reads them (``real``:
    :func:`~mailplan.facts.links.resolve`'s answer, the copy's links above each followed
    inside the root; one at the file itself is left for the read to refuse); one whose
    links loop is not read (a caution)."""
    out = []
    for path in dict.fromkeys(paths):
        got = real[path]
        if isinstance(got, OutsideRoot):
            findings.append(Finding("caution", f"the forward file of {login} {got}"))
        else:
            out.append(got)
    return out


def _given_alias_files(src: dict[str, Any]) -> list[str] | None:
    """``source.aliases`` as a list of paths (one path or a list; duplicates once), or
    None when the spec does not set it."""
    given = src.get("aliases")
    if given is None:
        return None
    return list(dict.fromkeys([given] if isinstance(given, str) else given))


def _alias_file_choice(reads: dict[str, FileRead], given: list[str] | None, cf_path: str,
                       findings: list[Finding], root: str
                       ) -> tuple[list[AliasDatabase], str | None]:
    """The aliases files to read, in sendmail's lookup order, and where that list comes
    from: the spec, sendmail.cf's AliasFile (its paths under ``root``), else (None) the
    first default file there is (under ``root``). Alias databases sendmail.cf names that
    are not files (nis:, ldap:, ...), or whose path would leave the root, are
    cautions."""
    if given is not None:
        return [AliasDatabase(p, "implicit", p, False, Origin(p, 0)) for p in given], \
            "source.aliases in the spec"
    cf = reads.get(cf_path)
    named = parse_alias_files(_text(reads, cf_path), cf_path) if cf is not None else []
    if not named:
        found = [p for p in (inside(root, d) for d in DEFAULT_ALIASES) if reads[p].exists]
        return [AliasDatabase(p, "implicit", p, False, Origin(p, 0)) for p in found[:1]], None
    out: list[AliasDatabase] = []
    for db in named:
        if db.kind == "null":
            continue  # sendmail's empty database: it never finds a name
        if db.readable and db.path is not None:
            try:
                db = replace(db, path=inside(root, db.path))
            except OutsideRoot as exc:
                findings.append(Finding("caution", f"AliasFile {db.spec}: {exc}; the "
                                        "aliases sendmail finds there are not migrated",
                                        db.origin))
                continue
        if not db.readable:
            what = (f"a {db.kind} database, not a file mailplan can read" if db.path is None
                    else "not an absolute path, so mailplan cannot tell which file it is"
                    if not db.path.startswith("/") else f"{db.why_not_read}, not read")
            findings.append(Finding(
                "caution", f"AliasFile {db.spec}: {what}; the aliases sendmail finds there "
                "are not migrated (put them in a text aliases file and list every file to "
                "read in source.aliases, or declare them in the spec)", db.origin))
        elif db.path not in {d.path for d in out}:
            out.append(db)
    return out, f"AliasFile in {cf_path}"


def _read_alias_files(conn: Connector, reads: dict[str, FileRead], given: list[str] | None,
                      cf_path: str, *, imported: bool, findings: list[Finding],
                      root: str) -> tuple[AliasFile, ...]:
    """Read and parse the aliases files sendmail reads (with their :include: files), in
    lookup order. Where neither the spec names them nor a domain imports aliases (not
    relied on) a file that is missing, cannot be read or cannot be parsed is left out
    (the last two with a warning); otherwise it stops the plan. A file source.aliases
    names that does not exist, while no domain imports aliases, is a caution (the plan's
    warnings): ``init --root`` writes where sendmail keeps it even when it is not there."""
    host = conn.name
    relied = given is not None or imported
    chosen, source = _alias_file_choice(reads, given, cf_path, findings, root)
    if source is None:
        cf = reads.get(cf_path)
        why = ("there is no" if cf is None or not cf.exists else "could not read"
               if cf.data is None else "no AliasFile in")
        defaults = [inside(root, p) for p in DEFAULT_ALIASES]
        source = f"the first of {' and '.join(defaults)} there is ({why} {cf_path})"
        if not chosen and relied:
            raise HostError(f"neither {' nor '.join(defaults)} exists", host=host,
                            step="read source routing",
                            hint="set source.aliases in the spec to where sendmail's "
                            "AliasFile is")
    missing = [d.path for d in chosen if d.path is not None and d.path not in reads]
    if missing:
        reads = {**reads, **_read_files(conn, missing, root=root)}
    files: list[AliasFile] = []
    for db in chosen:
        path = db.path or ""
        if not reads[path].exists:
            if db.optional:
                findings.append(Finding("note", f"the aliases file {path} (AliasFile "
                                        f"{db.spec}, optional) does not exist", db.origin))
            elif given is not None and not imported:
                findings.append(Finding("caution", f"no aliases file at {path} "
                                        "(source.aliases): no aliases are read from it, "
                                        "so local names resolve without them"))
            elif relied:
                named = "" if given is not None else f" (AliasFile in {db.origin})"
                raise HostError(f"the aliases file {path} does not exist{named}", host=host,
                                step="read source routing",
                                hint="set source.aliases in the spec to where sendmail's "
                                "AliasFile is")
            continue
        try:
            if reads[path].data is None:
                raise _unreadable(host, path, "the aliases file")
            try:
                parsed = parse_aliases(reads[path].data or b"", path)
            except RoutingError as exc:
                raise host_error(exc, host) from None
            files.append(read_includes(conn, parsed, root, safety=FileSafety(
                dont_blame_sendmail(_text(reads, cf_path)))))
        except (HostError, SourceDataError, RoutingError) as exc:
            if relied:
                raise
            findings.append(Finding("warning", f"{exc.message}; local names are resolved "
                                    "without the aliases file (no domain imports it)"))
    if files:
        order = (" (sendmail looks a name up in them in this order and uses the first that "
                 "has it)" if len(files) > 1 else "")
        findings.append(Finding("note", f"aliases are read from "
                                f"{', '.join(f.path for f in files)}: {source}{order}"))
    return tuple(files)


def _text(reads: dict[str, FileRead], path: str) -> str:
    read = reads.get(path)
    data = read.data if read is not None and read.exists else None
    return (data or b"").decode("utf-8", "replace")


def _read_class_w(conn: Connector, reads: dict[str, FileRead], config: list[str],
                  root: str, findings: list[Finding]) -> frozenset[str]:
    """Class w from what ``class_w_files`` read (missing files are fine); files named by
    Fw lines (under ``root``; one that would leave it is a caution) and not read yet are
    read in one more batch."""
    def text(path: str) -> str:
        return _text(reads, path)

    lhn, cw, cf, hostname, hosts = config
    names = [n for n, _o in parse_local_names(text(lhn), lhn) + parse_local_names(text(cw), cw)]
    cf_names, named_files = parse_sendmail_cf(text(cf), cf)
    names += [n for n, _o in cf_names]
    fw_files = []
    for path in named_files:
        try:
            fw_files.append(inside(root, path))
        except OutsideRoot as exc:
            findings.append(Finding("caution", f"{cf}: the Fw file {exc}; the names in it "
                                    "are not local names"))
    extra = [f for f in fw_files if f not in reads]
    if extra:
        reads = {**reads, **_read_files(conn, extra, root=root)}
    for path in fw_files:
        names += [n for n, _o in parse_local_names(text(path), path)]
    return clean_names(names) | host_names(text(hostname), text(hosts))
