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
would stop at its listing. :func:`vpasswd_line_length` counts such a line, for a new
user here and for the changes to an existing one in :mod:`mailplan.diff`
(:class:`LineBound`) and :func:`mailplan.commands.lock_user`.
"""

from __future__ import annotations

from mailplan.desired import Desired, DesiredUser, Password, Problem
from mailplan.facts.vpopmail import HASH_CHARS, DirHashing, TargetFacts, TargetUser
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


def hash_bytes(password: Password) -> int:
    """The length of the hash apply stores for ``password`` (a clear one's SHA-512 crypt
    hash is made at apply: :data:`CLEAR_HASH_BYTES`)."""
    return CLEAR_HASH_BYTES if password.kind == "clear" else _size(password.value.reveal())


def _size(text: str | int) -> int:
    """The length of ``text`` in UTF-8 bytes (an int: a length already)."""
    return text if isinstance(text, int) else len(text.encode("utf-8", "surrogateescape"))


def vpasswd_line_length(name: str, hashed: str | int, gecos: str | int,
                        user_dir: str | int, quota: str | int, flags: int = 0) -> int:
    """The length of a user's line in its domain's vpasswd file, line end included:
    ``NAME:HASH:1:FLAGS:GECOS:DIR:QUOTA`` (vpopmail keeps the flags in the gid field).
    Each field is its text, or its length in bytes where only that is known (the hash
    of a clear password, a directory whose hashed part is not known)."""
    return sum(map(_size, (name, hashed, "1", str(flags), gecos, user_dir, quota))) + 7


class LineBound:
    """How long a user of the target's vpasswd line may get while its changes (each a
    step of its own, run in the order taken; apply stops at one that fails, and a kill
    anywhere) are applied: each field counted at the longest of what is stored and what
    a change taken writes, but at its new length where the change shortens it and no
    change taken before lengthens any (it is done before they run: the line only got
    shorter until then)."""

    def __init__(self, stored: TargetUser) -> None:
        self.name, self.flags = stored.name, stored.flags
        self.longest = {"hashed": _size(stored.password.reveal()),
                        "gecos": _size(stored.comment), "user_dir": _size(stored.dir),
                        "quota": _size(stored.quota)}
        self.grown = False

    def take(self, field: str, value: str | int) -> int:
        """The longest the line gets with ``field`` changed to ``value`` too; the change
        is taken (counted in later ones) only where that is at most
        :data:`MAX_VPASSWD_LINE`."""
        longest, size = dict(self.longest), _size(value)
        grows = size > longest[field]
        longest[field] = size if not (grows or self.grown) else max(longest[field], size)
        line = vpasswd_line_length(self.name, flags=self.flags, **longest)
        if line <= MAX_VPASSWD_LINE:
            self.longest, self.grown = longest, self.grown or grows
        return line


#: what a line past :data:`MAX_VPASSWD_LINE` does, said by each problem it causes
LISTING_STOPS = (f"vuserinfo -D lists no user past a line longer than {MAX_VPASSWD_LINE} "
                 "bytes, so every later plan would stop at it")


def _line_problem(user: DesiredUser, size: int, exact: bool) -> Problem:
    may = "would" if exact else "could"
    return Problem(user.domain, user.name, (
        f"its vpasswd line (name, hash, comment, directory and quota) {may} be {size} "
        f"bytes long; {LISTING_STOPS}; not created (give it a shorter comment: in the "
        "spec)"))


def withhold_unmakeable(desired: Desired, target: TargetFacts, vpopmail_dir: str) -> None:
    """Leave out of ``desired`` the users the target cannot be given, before anything
    reads its users (plan and verify alike): a locked account the target lacks
    (:meth:`Desired.lock_out`: never created), those held back by a problem of their
    source account kept for routing where the target has them (:meth:`Desired.keep_held`),
    then those whose directory vpopmail would
    refuse (:func:`dir_problems`; :meth:`Desired.withhold`: a new domain's catch-all to
    one of them bounces)."""
    desired.lock_out(target.users())
    desired.keep_held(target.users())
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
            elif (line := vpasswd_line_length(
                    user.name, hash_bytes(user.password), user.comment, size,
                    quota_field(user.quota))) > MAX_VPASSWD_LINE:
                problems.append(_line_problem(user, line, exact))
            else:
                users.take()
    return problems
