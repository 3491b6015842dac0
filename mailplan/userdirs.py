"""Whether each user the plan creates gets a directory vpopmail can store. Pure.

vpopmail keeps a user's directory in a field of at most 160 bytes (``MAX_PW_DIR`` in
vpopmail.h). ``vadduser`` checks the directory it is about to make, without its slashes
(make_user_dir: "Path exceeds maximum permitted length"); the ``-e HASH`` mailplan
passes is then stored by vauth_setpw, which refuses the whole path past 160 bytes
("dir too long (max=160)") and leaves the account behind with vadduser's temporary
password. The whole path is what counts, then: ``DOMAIN_DIR[/HASH]/USER``, in bytes.

A domain's directory is read from the target (vdominfo); for a domain the plan
creates it is ``VPOPMAIL/domains[/HASH]/DOMAIN``. HASH is the sub-directory vpopmail
hands out to every entry past the 99th of a directory ("0", "1", ... "z", then deeper:
bigdir.c, reference/vpopmail/14-many-users-dir-hashing.md), and users deleted from
one are replaced there first (backfill.c). Where the target's ``.dir-control`` files
tell (:class:`NextDirs`), it is worked out exactly; where they do not, the longest it
can be is counted, so that the plan may withhold a user who would have fitted but
never lets one through that vadduser then refuses.

The directory is also part of the user's line in the domain's ``vpasswd`` file, which
``vuserinfo -D`` reads in pieces of 299 bytes, stopping at a longer line: a user whose
line would be longer is withheld too (:data:`MAX_VPASSWD_LINE`), or every later plan
would stop at its listing.
"""

from __future__ import annotations

from mailplan.desired import Desired, DesiredUser, Problem
from mailplan.facts.vpopmail import HASH_CHARS, DirHashing, TargetFacts
from mailplan.names import quota_field

#: the longest user directory vpopmail stores, in bytes (MAX_PW_DIR)
MAX_PW_DIR = 160
#: entries vpopmail puts in one directory before it moves to the next hashed one
#: (MAX_USERS_PER_LEVEL)
PER_DIR = 100
#: the longest hashed sub-directory, three levels deep (MAX_DIR_LEVELS): how it is
#: shown, and its length, where it cannot be known
LONGEST_HASH = "X/Y/Z"
#: the longest vpasswd line, its line end included, that ``vuserinfo -D`` lists: it
#: reads the file with fgets(line, MAX_BUFF = 300) and stops, exiting 0, at the piece of
#: a longer one (:func:`mailplan.facts.vpopmail.read_target` refuses such a listing)
MAX_VPASSWD_LINE = 299
#: the length of the SHA-512 crypt hash apply makes of a clear password ($6$, a salt of
#: 16, $, a checksum of 86: :func:`mailplan.facts.hashes.make_hash`)
CLEAR_HASH_BYTES = 106


class NextDirs:
    """The hashed sub-directories one directory (a domain's users, or the domains)
    hands out to its next entries, in the order they are added."""

    def __init__(self, hashing: DirHashing | None) -> None:
        self.known = hashing is not None
        self.count = hashing.count if hashing else 0
        self.current = hashing.current if hashing else ""
        self.free = list(hashing.free) if hashing else []

    def peek(self) -> str | None:
        """The sub-directory of the next entry ("" = the directory itself), or None
        where it cannot be known."""
        if not self.known:
            return None
        if self.free:
            return self.free[0]
        if (self.count + 1) % PER_DIR:
            return self.current
        return self._advanced()

    def take(self) -> None:
        """Count the next entry as added (an entry not added takes no place)."""
        if not self.known:
            return
        if self.free:  # backfill.c counts it (unless nothing was counted) and moves on
            self.free.pop(0)
            if self.count:
                self.count += 1
            return
        self.count += 1
        if self.count % PER_DIR == 0:
            advanced = self._advanced()
            self.known = advanced is not None
            self.current = advanced or ""

    def _advanced(self) -> str | None:
        """The sub-directory after the current one while it stays one level deep
        ("" -> "0" -> ... -> "z", vpopmail's default range); None past that (6,200
        entries on): the next level is not followed."""
        if not self.current:
            return HASH_CHARS[0]
        if len(self.current) == 1 and self.current != HASH_CHARS[-1]:
            return HASH_CHARS[HASH_CHARS.index(self.current) + 1]
        return None


def _path(*parts: str | None) -> tuple[str, int]:
    """The path of ``parts`` (an empty one left out, an unknown one, None, shown and
    counted as the longest hashed sub-directory) and its length in UTF-8 bytes."""
    shown = "/".join(LONGEST_HASH if p is None else p for p in parts if p != "")
    return shown, len(shown.encode("utf-8", "surrogateescape"))


def _problem(user: DesiredUser, shown: str, size: int, exact: bool) -> Problem:
    size_text = f"would be {size} bytes long" if exact else (
        f"could be up to {size} bytes long ({LONGEST_HASH} stands for the hashed "
        "sub-directory vpopmail may choose, which the target's .dir-control does not tell)")
    hint = (f"list it in the spec with a shorter name: name: NEW, from: {user.source}"
            if user.source else "give it a shorter name in the spec")
    return Problem(user.domain, user.name, (
        f"its directory {shown} {size_text}; vpopmail stores at most {MAX_PW_DIR} bytes "
        f"(MAX_PW_DIR) and vadduser would fail; not created ({hint})"))


def vpasswd_line_bytes(user: DesiredUser, user_dir: int) -> int:
    """The length of the vpasswd line vadduser writes for ``user`` (its directory
    ``user_dir`` bytes long), line end included: ``NAME:HASH:1:0:COMMENT:DIR:QUOTA``."""
    hashed = CLEAR_HASH_BYTES if user.password.kind == "clear" else \
        len(user.password.value.reveal().encode("utf-8", "surrogateescape"))
    return sum(len(part.encode("utf-8", "surrogateescape")) for part in (
        user.name, "1", "0", user.comment, quota_field(user.quota))) + hashed + user_dir + 7


def _line_problem(user: DesiredUser, size: int, exact: bool) -> Problem:
    may = "would" if exact else "could"
    return Problem(user.domain, user.name, (
        f"its vpasswd line (name, hash, comment, directory and quota) {may} be {size} "
        "bytes long; vuserinfo -D lists no user past a line longer than "
        f"{MAX_VPASSWD_LINE} bytes, so every later plan would stop at it; not created "
        "(give it a shorter comment: in the spec)"))


def withhold_unmakeable(desired: Desired, target: TargetFacts, vpopmail_dir: str) -> None:
    """Leave out of ``desired`` the users the target cannot be given, before anything
    reads its users (plan and verify alike): a locked account the target lacks
    (:meth:`Desired.lock_out`: never created), then those whose directory vpopmail would
    refuse (:func:`dir_problems`; :meth:`Desired.withhold`: a new domain's catch-all to
    one of them bounces)."""
    desired.lock_out(target.users())
    created = set(desired.domains) - set(target.domains) - set(target.alias_of)
    desired.withhold(dir_problems(desired, target, vpopmail_dir), created)


def dir_problems(desired: Desired, target: TargetFacts, vpopmail_dir: str) -> list[Problem]:
    """A problem for each user the plan would create whose directory would be longer
    than vpopmail stores, or whose vpasswd line longer than vuserinfo -D lists. Users
    are counted in the order apply adds them (each new domain, then its users, by
    name); one with a problem is not added, and takes no place in its domain's
    hashing."""
    problems: list[Problem] = []
    domains = NextDirs(target.domain_hashing)
    root = f"{vpopmail_dir.rstrip('/')}/domains"
    for name in sorted(desired.domains):
        if name in target.alias_of:  # not created: the plan says why
            continue
        have = target.domains.get(name)
        if have is None:
            sub = domains.peek()
            domains.take()
            parts: tuple[str | None, ...] = (root, sub, name)
            users = NextDirs(DirHashing(1, ""))  # vadddomain made postmaster, the first
        else:
            parts, users = (have.dir.rstrip("/"),), NextDirs(have.hashing)
        for uname, user in sorted(desired.domains[name].users.items()):
            if have is not None and uname in have.users:
                continue
            hashed = users.peek()
            shown, size = _path(*parts, hashed, uname)
            exact = None not in (*parts, hashed)
            if size > MAX_PW_DIR:
                problems.append(_problem(user, shown, size, exact))
            elif (line := vpasswd_line_bytes(user, size)) > MAX_VPASSWD_LINE:
                problems.append(_line_problem(user, line, exact))
            else:
                users.take()
    return problems
