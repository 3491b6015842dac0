"""``mailplan init``: write a first, commented spec from what the old server holds.

The survey (:mod:`mailplan.facts.survey`) says which accounts, mailboxes, routing files
and local domains exist; :func:`choose` decides which accounts to migrate and why each
other one is left out (system account, no mailbox, locked or unusable password, an
account the old server refuses by date, a name vpopmail cannot carry);
:func:`render_spec` writes the YAML with those reasons as comments. The result is
validated like any spec before it is written, and it never holds a secret: passwords
come from the source's shadow file at plan time.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mailplan.errors import MailplanError
from mailplan.facts.survey import ALIASES, Survey, SurveyAccount, folder_dir, mbox_file
from mailplan.names import MAX_GECOS, domain_problem, human_size, user_problem
from mailplan.routing.hostnames import clean_names
from mailplan.spec import SCHEMA_DIR, load_spec, mailplan_file
from mailplan.text import escape, has_control, is_control

NOT_DOMAINS = {"localhost", "localhost.localdomain", "localdomain"}
HOST_NAME = re.compile(r"[A-Za-z0-9.\[\]:-]+")  # the schema's source.local_hostnames item


@dataclass(frozen=True)
class Choice:
    """One account and what init does with it."""

    account: SurveyAccount
    name: str  # the mailbox name (lower-cased account name)
    reason: str  # why it is left out; "" when it is migrated
    mailbox: str  # a short description of its mail
    #: a comment: for the spec when the source's full name cannot be the mailbox's
    comment: str | None = None


@dataclass(frozen=True)
class Domains:
    """The primary domain, the ones delivering like it, and names that were skipped."""

    primary: str
    aliases: list[str]
    skipped: list[str]  # "name (origin): why"


def given_domains(given: list[str]) -> list[str]:
    """The ``--domain`` values, lower-cased, without a trailing dot (``example.com.``,
    as sendmail's configuration's names are read) and duplicates; checked (before the
    source is read)."""
    names = [d.lower().rstrip(".") for d in given]
    for raw, name in zip(given, names, strict=True):
        problem = domain_problem(name)
        if problem:
            raise MailplanError(f"--domain {raw}: {problem}")
    return list(dict.fromkeys(names))


def choose_domains(survey: Survey, given: list[str]) -> Domains:
    """``--domain`` values, else the local domains from sendmail's configuration."""
    if given:
        unique = given_domains(given)
        return Domains(unique[0], unique[1:], [])
    found: dict[str, str] = {}
    skipped = []
    for raw, origin in survey.domains:
        name = raw.lower().rstrip(".")
        if name in found:
            continue
        problem = ("a local host name, not a mail domain" if name in NOT_DOMAINS
                   or name.startswith("[") else domain_problem(name))
        if problem:
            skipped.append(f"{raw} ({origin}): {problem}")
            continue
        found[name] = origin
    if not found:
        raise MailplanError(f"no mail domain found in sendmail's configuration on "
                            f"{survey.host}", hint="name it: mailplan init --domain "
                            "example.com ...")
    names = list(found)
    # the primary is the first name that is not a sub-domain of another one
    primary = next((n for n in names if not any(n.endswith("." + o) for o in names)), names[0])
    return Domains(primary, [n for n in names if n != primary], skipped)


def _mailbox(survey: Survey, account: SurveyAccount, folders: str) -> str:
    parts = []
    spool = survey.spools.get(account.name)
    if spool is not None:
        parts.append(f"INBOX {human_size(spool)}")
    mbox = survey.mboxes.get(mbox_file(account, survey.home_root) or "")
    if mbox is not None:
        parts.append(f"~/mbox {human_size(mbox)}")
    files, size = survey.folders.get(folder_dir(account, folders, survey.home_root) or "",
                                     (0, 0))
    if files:
        parts.append(f"{files} folder(s) {human_size(size)}")
    return ", ".join(parts)


def _maildirs(survey: Survey, account: SurveyAccount, folders: str) -> str:
    """What is said of the Maildirs in the account's folders directory: that the import
    does not read them (plan names each as a problem), "" when there are none."""
    found = survey.maildirs.get(folder_dir(account, folders, survey.home_root) or "", [])
    if not found:
        return ""
    return (f"{', '.join(found)} {'is a Maildir' if len(found) == 1 else 'are Maildirs'}, "
            "not imported: a Maildir under the folders directory is no mbox folder (plan "
            "names it)")


def fit_comment(account: SurveyAccount) -> str | None:
    """A ``comment:`` for an account whose full name (gecos) holds a control character,
    which plan refuses as the mailbox's comment: the name without them (each run of them
    a space), cut to vpopmail's 64 bytes; None when the full name is fine."""
    full = account.gecos.split(",", 1)[0].strip()
    if not has_control(full):
        return None
    text = " ".join("".join(" " if is_control(c) else c for c in full).split())
    return text.encode()[:MAX_GECOS].decode("utf-8", "ignore").strip() or account.name


def choose(survey: Survey, *, uid_min: int = 1000, uid_max: int = 59999,
           folders: str = "mail") -> list[Choice]:
    """Every account of the source, in passwd order, migrated or with the reason why not."""
    out = []
    taken: dict[str, str] = {}
    for account in survey.accounts:
        name = account.name.lower()
        mailbox, maildir = _mailbox(survey, account, folders), _maildirs(survey, account,
                                                                          folders)
        reason = ""
        if not uid_min <= account.uid <= uid_max:
            reason = f"system account (uid {account.uid} outside {uid_min}-{uid_max})"
        elif not mailbox:
            reason = "no mailbox (no spool file, no ~/mbox, no mail folders" + (
                f"; {maildir})" if maildir else ")")
        elif survey.shadow_readable and account.password is None:
            reason = "no entry in the shadow file"
        elif account.password is not None and not account.password.usable:
            reason = account.password.detail
        elif account.expired:  # plan refuses its hash: it would let the account in again
            reason = (f"cannot log in on the old server: {account.expired} (to migrate it, "
                      "give it a password: in the spec)")
        elif problem := user_problem(name):
            reason = f"not a name vpopmail accepts: {problem}"
        elif name in taken or name == "postmaster":
            reason = (f"same mailbox name as account {taken[name]!r} once lower-cased"
                      if name in taken else "postmaster is vpopmail's own account")
        if not reason:
            taken[name] = account.name
        out.append(Choice(account, name, reason, "; ".join(filter(None, (mailbox, maildir))),
                          None if reason else fit_comment(account)))
    return out


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=1 << 16)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _comment(text: str) -> str:
    """``text`` fit for a YAML comment: one line (a ``\\r`` ends a line in YAML too), its
    control characters escaped."""
    return escape(text.replace("\n", " ").replace("\r", " "))


def _aliases_lines(survey: Survey) -> list[str]:
    """``source.aliases`` and its comments. Under ``--root`` a path under the root is
    written even when no file is there (sendmail.cf's AliasFile, else /etc/aliases), so
    that plan warns while such a file is missing (left out: it reads none without a
    word). Over SSH (no ``source.root`` in the spec) it also keeps plan from reading
    the defaults outside the root."""
    root = survey.root.rstrip("/")
    missing = ["  # plan warns while none is where this names it; one put there is read (set",
               "  # import_aliases: true under the domain to migrate its aliases)"]
    written: list[str] = []
    if survey.alias_files:
        out = ["  aliases:                # sendmail.cf's AliasFile, in the order sendmail "
               "reads them"]
        written = survey.alias_files
    elif root and survey.alias_missing:
        written = survey.alias_missing
        out = ["  # sendmail.cf's AliasFile names no file there is", *missing, "  aliases:"]
    elif survey.alias_left:
        out = ["  # no aliases file of sendmail.cf's AliasFile to read"]
    elif survey.aliases:
        out = [f"  aliases: {_scalar(survey.aliases)}"]
    else:
        looked = ", ".join(root + p for p in ALIASES)
        out = [f"  # no aliases file found ({_comment(looked)})"]
        if root:
            out += [*missing, f"  aliases: {_scalar(root + ALIASES[0])}"]
    out += [f"    - {_scalar(p)}" for p in written]
    out += [f"  # not read: AliasFile {_comment(spec)}: {why}"
            for spec, why in survey.alias_left if spec not in written]
    return out


def _class_w_lines(survey: Survey) -> list[str]:
    """``source.local_hostnames`` under an ssh:// source's ``--root`` when sendmail.cf
    has Fw lines: without ``source.root`` (a local source's) plan reads the files they
    name as named, outside the root, so init writes the names it read under the root
    (with the host's own names, as plan adds them). Nothing otherwise: plan's default
    reads under the root then."""
    root = survey.root.rstrip("/")
    if not root or survey.home_root or not survey.fw_named:
        return []
    names = sorted((clean_names(n for n, _o in survey.domains) | survey.host_names)
                   - {"localhost"})
    good = [n for n in names if HOST_NAME.fullmatch(n)]
    named = ", ".join(survey.fw_named)
    return ["  # sendmail's class w as read under --root: sendmail.cf's Fw lines name "
            f"{_comment(named)},",
            "  # which plan would read outside the copy (update this list if the copy "
            "changes)",
            f"  local_hostnames: {_scalar(good)}"] + [
        f"  # left out of local_hostnames (not a name the spec takes): {_comment(n)}"
        for n in names if n not in good]


def _root_lines(survey: Survey, accounts: list[SurveyAccount]) -> list[str]:
    """``source.root`` for a local source's ``--root``: plan then reads the homes passwd
    names (and the other paths in the copy's files) under it, as init did. An ssh://
    source has no ``source.root``: comments for a ``--root`` whose passwd names home
    directories outside it, where init looked for mail folders and plan reads the
    ~/.forward files and mail folders (``folders`` can name the copy's)."""
    root = survey.root.rstrip("/")
    if survey.home_root:
        return [f"  root: {_scalar(survey.home_root)}  # a copy of the old server's disk: "
                "the paths its files name are read under it"]
    outside = [a for a in accounts if root and not a.home.startswith(root + "/")]
    if not outside:
        return []
    return [f"  # NOTE: home directories are read as passwd names them, not under --root "
            f"(e.g. {_comment(outside[0].home)}):",
            "  # init looked for mail folders there, and plan reads ~/.forward files and "
            "folders there,",
            "  # outside the copy. For the copy's folders set folders: to their path with "
            "%u for the",
            f"  # account (e.g. {_comment(root)}/home/%u/mail); the copy's ~/.forward files "
            "are not read:",
            "  # check them by hand, and set forward: false"]


def render_spec(survey: Survey, host_entry: dict[str, Any], target_entry: dict[str, Any],
                domains: Domains, choices: list[Choice], *, schema_ref: str,
                uid_min: int = 1000, uid_max: int = 59999, folders: str = "mail") -> str:
    """The commented YAML spec; ``folders``: where init looked for the mail folders
    (``source.folders``, written unless it is the default)."""
    out = [f"# yaml-language-server: $schema={schema_ref}",
           f"# Written by `mailplan init` from {survey.host}. Review it, then run",
           "#   mailplan validate THIS_FILE && mailplan plan THIS_FILE",
           "# It holds no secret: users keep their passwords (the crypt hashes are read",
           "# from the source's shadow file when you plan, never written here).",
           "version: 1", "hosts:", "  oldmail:                # the sendmail server (only read)"]
    out += [f"    {k}: {_scalar(v)}" for k, v in host_entry.items()]
    out.append("  newmail:                # the qmail + vpopmail server: check these")
    out += [f"    {k}: {_scalar(v)}" for k, v in target_entry.items()]
    if target_entry.get("user") not in (None, "root") and "sudo" not in target_entry:
        out.append(f"    sudo: true            # {_comment(str(target_entry['user']))} is not "
                   "root: vpopmail's tools run through sudo -n")
    out.append("    # python: python3       # the Python (3.7+) for mailplan's writer, apply "
               "lock, queue reader and lock")
    out += ["source:", "  host: oldmail"]
    out += _root_lines(survey, [c.account for c in choices
                                if uid_min <= c.account.uid <= uid_max])
    out += [f"  passwd: {_scalar(survey.passwd_path)}",
            f"  shadow: {_scalar(survey.shadow_path)}"]
    if not survey.shadow_readable:
        out.append(f"  # WARNING: {survey.shadow_path} was not readable "
                   f"({_comment(survey.shadow_error)}); plan needs it: log in as root or "
                   "set sudo: true")
    out += [f"  # note: {_comment(note)}" for note in survey.notes]
    out.append(f"  spool: {_scalar(survey.spool_dir)}")
    if folders != "mail":
        out.append(f"  folders: {_scalar(folders)}")
    out += _aliases_lines(survey)
    if survey.virtusertable:
        out.append(f"  virtusertable: {_scalar(survey.virtusertable)}")
    out += _class_w_lines(survey)
    out += ["target:", "  host: newmail", "  vpopmail_dir: /home/vpopmail",
            "  qmail_dir: /var/qmail", "domains:"]
    for skipped in domains.skipped:
        out.append(f"  # not a domain: {_comment(skipped)}")
    out.append(f"  {_scalar(domains.primary)}:")
    out.append("    # default_quota: 1G      # unlimited unless set")
    out.append("    # postmaster_password: {env: PM_PASSWORD}  # unless set: a random one, never "
               "shown, and no postmaster login")
    out.append("    unknown_recipients: bounce")
    if survey.alias_files or (survey.aliases and not survey.alias_left):
        out.append("    import_aliases: true  # system aliases (root, bin, ...) stay out")
    if domains.aliases:
        out.append("    alias_domains:        # also local on the old server: deliver alike")
        out += [f"      - {_scalar(d)}" for d in domains.aliases]
    migrated = [c for c in choices if not c.reason]
    left = [c for c in choices if c.reason]
    out.append(f"    # {len(migrated)} account(s) to migrate (uid {uid_min}-{uid_max}, "
               "with mail); each keeps its password from shadow")
    if migrated:
        out.append("    users:")
    for c in migrated:
        out.append(f"      - name: {_scalar(c.name)}"
                   + (f"\n        from: {_scalar(c.account.name)}"
                      if c.name != c.account.name else "")
                   + f"  # uid {c.account.uid}; {_comment(c.mailbox)}"
                   + (f"\n        comment: {_scalar(c.comment)}  # the full name on the "
                      "source holds a control character" if c.comment else ""))
    if left:
        out.append(f"    # {len(left)} account(s) left out (add one under users: to "
                   "migrate it anyway):")
        out += [f"    #   {_comment(c.account.name)}: {_comment(c.reason)}" for c in left]
    return "\n".join(out) + "\n"


def schema_reference(out: Path | None, schema: Path | None = None) -> str:
    """The schema path for the yaml-language-server comment of the spec ``out``.

    Relative (``./schemas/spec-v1.schema.json`` for a spec at the top of a mailplan
    checkout) only when the schema lies in the spec's own directory tree, outside an
    installed package; else the installed schema's absolute path. A path relative to a
    virtualenv's site-packages broke editor checking once the spec was moved or committed.
    """
    schema = (schema or SCHEMA_DIR / "spec-v1.schema.json").resolve()
    if out is None:
        return str(schema)
    base = out.resolve().parent
    if not schema.is_relative_to(base):
        return str(schema)
    relative = schema.relative_to(base)
    if {"site-packages", "dist-packages"} & set(relative.parts):
        return str(schema)
    return f"./{relative.as_posix()}"


def _is_state_file(path: Path) -> bool:
    try:
        return path.is_file() and mailplan_file(json.loads(path.read_bytes())) == \
            "a state file"
    except (OSError, ValueError):
        return False  # not JSON: a spec, any other file


def check_out(out: Path, *, force: bool) -> None:
    """Refuse an ``out`` that exists (without ``force``) or whose directory does not:
    said before the source is read, and again when the spec is written."""
    if out.exists() and not force:
        raise MailplanError(f"{out} already exists", hint="choose another -o, or --force")
    if _is_state_file(out):  # --force or not: as plan -o, never over mailplan's record
        raise MailplanError(f"{out} is a state file of mailplan's; a spec written there "
                            "would replace the record of what mailplan made (--prune's "
                            "safety, the mailbox checkpoints)",
                            hint="choose another -o, such as migration.yaml")
    if not out.parent.is_dir():
        raise MailplanError(f"cannot write {out}: {out.parent} is not a directory",
                            hint="give -o a file in an existing directory")


def write_spec_file(text: str, out: Path, *, force: bool) -> None:
    """Validate ``text`` as a spec, then write it to ``out`` (refusing to overwrite).
    The temp file beside ``out`` is made by ``mkstemp`` (an unpredictable name, created
    exclusively): a symbolic link planted under a guessable name in a shared directory
    is never written through. It gets the mode a new file gets (the umask's)."""
    check_out(out, force=force)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as exc:
        raise MailplanError(f"cannot write {out}: {exc.strerror}",
                            hint=f"the directory {out.parent} must be writable") from None
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fh.fileno(), 0o666 & ~umask)
            fh.write(text)
        try:
            load_spec(tmp)
        except MailplanError as exc:
            raise MailplanError(
                f"internal: the generated spec does not validate: {exc}") from None
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
