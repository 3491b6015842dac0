"""sendmail's file-safety rules for the files it reads on a user's behalf: a ~/.forward
and an ``:include:`` list (recipient.c's include(), safefile.c's safefile() and
safedirpath()).

sendmail refuses such a file when it is not a regular file, when it is group- or
world-writable, when a ~/.forward belongs to neither its user nor root, or when a
directory on its path (``/``, ``/home``, ``/home/alice``) is group- or world-writable
("Group writable directory" in its log): the ~/.forward is then passed over, the
``:include:`` bounces. sendmail.cf's ``DontBlameSendmail`` relaxes each rule
(:func:`~mailplan.routing.sendmailcf.dont_blame_sendmail` reads it); :class:`FileSafety`
applies them to what mailplan read (the mode and owner of the very file read, and the
modes of its directories), and :func:`forward_file` picks the forward file sendmail
reads with them, of the candidates :func:`forward_files` names (ForwardPath's entries,
under ``source.root``). Pure.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from mailplan.connectors.base import Connector
from mailplan.facts.root import OutsideRoot, inside
from mailplan.routing.model import Finding
from mailplan.routing.readfiles import FileRead, read_with_modes

_STICKY, _GROUP_WRITE, _WORLD_WRITE = 0o1000, 0o020, 0o002
_OTHERS_READ = 0o044  # read by the file's group or by others


def directories(path: str, root: str = "") -> list[str]:
    """The directories safedirpath walks for a file: its parent and each one above it,
    from ``/`` down; with ``root`` (``source.root``, ``path`` under it), from the root
    down: the directories of the old server's disk, not those of the machine reading
    its copy."""
    parent = posixpath.dirname(posixpath.normpath(path))
    top = root.rstrip("/")
    if not (parent + "/").startswith(top + "/"):
        top = ""  # not under the root: walked from / as without one
    out = [top or "/"]
    for part in parent[len(top):].strip("/").split("/"):
        if part:
            out.append(posixpath.join(out[-1], part))
    return out


@dataclass(frozen=True)
class FileSafety:
    """The rules as sendmail.cf's DontBlameSendmail flags (lower-case) leave them."""

    dont_blame: frozenset[str] = frozenset()

    def _blamed(self, forwarding: bool, what: str) -> bool:
        """Whether the flag ``{Forward|Include}FILE...`` of this kind of file is set."""
        return (("forwardfile" if forwarding else "includefile") + what) in self.dont_blame

    def file_problem(self, read: FileRead, *, forwarding: bool,
                     owners: tuple[int, ...] | None = None) -> str | None:
        """Why sendmail would not read this file itself, or None: not a regular file
        (SFF_REGONLY), world- or group-writable (SFF_NOWWFILES, SFF_NOGWFILES, unless
        DontBlameSendmail WorldWritableForwardFile, ... says otherwise) or, with
        ``owners``, owned by none of them (SFF_MUSTOWN with SFF_ROOTOK), or owned by
        another of them (root) and readable by neither group nor others: sendmail reads
        a ~/.forward as its user (``owners[0]``), who cannot read such a file (root's
        own, hard-linked there where fs.protected_hardlinks is off), and passes it
        over; mailplan, reading as root, would forward the user's mail by it. (A file
        only its group may read is taken: the user may be in the group.)"""
        kind = "forward" if forwarding else "include"
        if read.special:
            return "not a regular file"
        if read.mode is not None and read.mode & _WORLD_WRITE \
                and f"worldwritable{kind}file" not in self.dont_blame:
            return "world-writable"
        if read.mode is not None and read.mode & _GROUP_WRITE \
                and f"groupwritable{kind}file" not in self.dont_blame:
            return "group-writable"
        if owners is not None and read.uid is not None and read.uid not in owners:
            return f"owned by uid {read.uid}, neither its user nor root"
        if owners is not None and read.uid is not None and read.mode is not None \
                and read.uid != owners[0] and not read.mode & _OTHERS_READ:
            return (f"owned by uid {read.uid} with mode {read.mode & 0o7777:o}, so its "
                    "user may not read it (sendmail reads it as the user)")
        return None

    @staticmethod
    def _unsafe_dir(path: str, modes: Mapping[str, int],
                    group_ok: bool) -> tuple[str, str] | None:
        """(directory, "group"|"world") of the first writable directory above ``path``,
        or None (unknown modes count as safe). A sticky one (``/tmp``) counts as safe,
        as with DontBlameSendmail TrustStickyBit: sendmail without it refuses every file
        below /tmp, where no real home or list directory is, but test trees and scratch
        copies may be."""
        for directory in directories(path):
            mode = modes.get(directory)
            if mode is None or mode & _STICKY:
                continue
            if mode & _WORLD_WRITE:
                return directory, "world"
            if mode & _GROUP_WRITE and not group_ok:
                return directory, "group"
        return None

    def dir_problem(self, path: str, modes: Mapping[str, int], *,
                    forwarding: bool) -> str | None:
        """Why sendmail would not read ``path`` for its directories, or None: one of
        them is world-writable, or group-writable (unless GroupWritableDirPathSafe), and
        DontBlameSendmail neither has {Forward|Include}FileInUnsafeDirPath nor, for a
        group-writable one, {Forward|Include}FileInGroupWritableDirPath."""
        if self._blamed(forwarding, "inunsafedirpath"):
            return None
        unsafe = self._unsafe_dir(path, modes, "groupwritabledirpathsafe" in self.dont_blame)
        if unsafe and unsafe[1] == "group" and self._blamed(forwarding,
                                                             "ingroupwritabledirpath"):
            unsafe = self._unsafe_dir(path, modes, True)
        if unsafe is None:
            return None
        directory, who = unsafe
        return f"in a {who}-writable directory ({directory}, mode {modes[directory]:o})"


def forward_file(login: str, paths: Sequence[str], reads: Mapping[str, FileRead], home: str,
                 refusal: Callable[[str, FileRead], str | None],
                 findings: list[Finding]) -> str | None:
    """The forward file of ``login`` that sendmail reads (``paths``: its ForwardPath in
    ``home``), or None. As sendmail's forward(): the first that is there, passing over
    (with a warning) one it refuses (``refusal`` says why: :class:`FileSafety`). A
    symbolic link ends the search unread (mailplan does not follow links in users'
    files; sendmail, reading as the user, may have). A file chosen may be one mailplan
    could not read (``data`` None): the caller says so."""
    refused: list[tuple[str, str]] = []
    chosen = None
    for path in paths:
        read = reads[path]
        if read.link:
            findings.append(Finding("warning", f"the ~/.forward of {login} ({path}) is a "
                                    "symbolic link: not read, so not migrated (mailplan does "
                                    "not follow links in users' files); copy what it "
                                    "should say into a file there, or into the spec"))
            break
        if not read.exists:
            continue
        why = refusal(path, read) if read.special or read.data is not None else None
        if why:
            refused.append((path, why))
            continue
        chosen = path
        break
    for path, why in refused:
        then = (f"sendmail reads {chosen} instead" if chosen
                else f"mail stays in {login}'s mailbox")
        findings.append(Finding("warning", f"the ~/.forward of {login} ({path}) is {why}: "
                                f"sendmail ignores such a file, so it is not migrated ({then}); "
                                "fix it on the source if it should apply"))
    if chosen and chosen != f"{home}/.forward":
        later = [p for p in paths[paths.index(chosen) + 1:] if reads[p].exists or reads[p].link]
        findings.append(Finding("note", f"{login}'s forward file is {chosen}, the first of "
                                "sendmail's ForwardPath that is there" + (
                                    " and that sendmail reads" if refused else "") + (
                                    f" (its {', '.join(later)} is not read, as by sendmail)"
                                    if later else "")))
    return chosen


def forward_files(templates: list[str], home: str, login: str, root: str,
                  findings: list[Finding]) -> list[str]:
    """Where this machine reads the forward files of ``templates`` (ForwardPath's, with
    ``$z``, ``$u``) for the user of ``home`` (as passwd names it): under ``root``. One
    that would leave the root is not read (a caution: one of the plan's warnings)."""
    out = []
    for template in templates:
        path = template.replace("$z", home).replace("$u", login)
        try:
            out.append(inside(root, path))
        except OutsideRoot as exc:
            findings.append(Finding("caution", f"the forward file of {login} (ForwardPath "
                                    f"entry {template!r}) {exc}"))
    return out


def read_guarded(conn: Connector, paths: Sequence[str], root: str
                 ) -> tuple[dict[str, FileRead], dict[str, int]]:
    """Read files sendmail reads only when they are safe (users' ~/.forward, :include:)
    without following links, and, in the same commands, the modes of the directories
    its safedirpath() walks for them (those of every path: known before the read)."""
    return read_with_modes(conn, paths, [d for p in paths for d in directories(p, root)],
                           follow=False)
