"""What vpopmail accepts as domain, user and alias names, and quota sizes.

The rules follow the recorded behaviour of real vpopmail 5.6.13
(reference/vpopmail/00-README.md) and are, on purpose, slightly stricter where vpopmail
accepts names that only cause trouble later: a user name containing ``/`` becomes a
sub-directory path, the names ``.`` and ``..`` are the directory itself or its parent (the
user's directory would be the domain's or its parent), a leading ``-`` is read as an option
by every vpopmail tool, and a
domain such as ``.leadingdot.com`` is not a DNS name. Everything vpopmail accepts that
is merely unusual (``$ & * | ! ~ ' ` { }`` in user names) is accepted: commands are built
from quoted parts, so such names are passed literally.
"""

from __future__ import annotations

import re

USER_BYTES = frozenset(
    "!#$&'*+-./0123456789=?ABCDEFGHIJKLMNOPQRSTUVWXYZ^_`abcdefghijklmnopqrstuvwxyz{|}~"
)
#: what vpopmail keeps in a domain's directory, where a user's own directory goes (the
#: first 100 users'): vadduser cannot make a user of one of these names its directory
#: ("User's directory already exists"), which would stop every apply at that user
DOMAIN_FILES = frozenset({"vpasswd", "vpasswd.cdb", ".vpasswd.lock", ".dir-control"})
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")  # fullmatch: "$" takes a "\n"
_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?) ?([kKmMgGtT]?)(i?[bB]?)$")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def domain_problem(name: str) -> str | None:
    """Why ``name`` is not an acceptable domain, or None. Expects it lower-cased."""
    if not 3 <= len(name) <= 96:
        return "a domain name must be 3 to 96 characters long (vpopmail's limit)"
    if "." not in name:
        return "a domain name needs at least one dot"
    labels = name.split(".")
    for label in labels:
        if not _LABEL.fullmatch(label):
            return (f"label {label!r} is not valid: use a-z, 0-9 and '-' (not at either end), "
                    "1 to 63 characters")
    if not 2 <= len(labels[-1]) <= 63:
        return "the last label must be 2 to 63 characters"
    return None


def user_problem(name: str, *, alias: bool = False) -> str | None:
    """Why ``name`` is not an acceptable mailbox (or, ``alias``, alias) name, or None.

    vadduser refuses a one-character user (USERS_BIG_DIR: its directory would be named
    like a hashed one); valias, which writes ``.qmail-NAME``, takes a one-character alias.
    """
    if not name:
        return "an empty name"
    if len(name) < 2 and not alias:
        return "vpopmail rejects one-character user names"
    if len(name) > 64:
        return "vpopmail limits user names to 64 characters"
    bad = sorted({c for c in name if c not in USER_BYTES})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return f"contains characters vpopmail rejects: {shown}"
    if "/" in name:
        return "'/' would make the mailbox a sub-directory path"
    if name in (".", ".."):
        return f"{name!r} names a directory itself or its parent, not a mailbox directory"
    if name.startswith("-"):
        return "a leading '-' is read as an option by vpopmail's tools"
    if not alias and name in DOMAIN_FILES:
        return (f"{name!r} is a file vpopmail keeps in the domain's directory, where the "
                "mailbox's directory would go (vadduser refuses it)")
    if not alias and name.startswith(".qmail-"):
        return (f"a directory {name!r} in the domain's directory would be read by qmail "
                f"as the delivery instructions of {name[7:]!r} (or vadduser refuses it)")
    return None


def parse_size(value: str | int) -> int | None:
    """Bytes for a human size (``500M``, ``1G``, ``2.5 GB``, ``1048576``); None = unlimited.

    Units are binary (k = 1024), as vpopmail's own quota parser reads them.
    """
    if isinstance(value, int):
        return _quota_in_range(value, repr(value))
    text = value.strip()
    if text == "unlimited":
        return None
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"{value!r} is not a size like 500M, 1G or unlimited")
    number, unit, suffix = match.groups()
    if not unit and suffix.lower() not in ("", "b"):
        raise ValueError(f"{value!r} is not a size like 500M, 1G or unlimited")
    return _quota_in_range(int(float(number) * _UNITS[unit.lower()]), repr(value))


#: vpopmail's limits on a comment (gecos) and a clear password, in bytes (vadduser,
#: vmoduser and vpasswd refuse longer ones: "gecos too long (max=64)", "password too long
#: (max=128)")
MAX_GECOS = 64
MAX_CLEAR_PASSWORD = 128
#: the longest password field (a hash) vpopmail stores: vadduser -e and vmoduser -e refuse a
#: longer one (vauth_setpw: "password too long (max=128)")
MAX_HASH = 128

#: the largest quota vpopmail stores as given (it keeps a larger one as this many bytes)
MAX_QUOTA = (1 << 63) - 1


def _quota_in_range(size: int, shown: str) -> int:
    if size <= 0:
        raise ValueError(f"{shown}: a quota must be positive (or unlimited)")
    if size > MAX_QUOTA:
        # not "8E": E is no unit a quota takes (T is the largest)
        raise ValueError(f"{shown}: a quota is at most {MAX_QUOTA} bytes (a byte under "
                         "8388608T), the largest vpopmail stores; use unlimited")
    return size


def quota_field(size: int | None) -> str:
    """The quota as vpopmail stores and reports it: ``NOQUOTA`` or ``<bytes>S``."""
    return "NOQUOTA" if size is None else f"{size}S"


def human_size(size: int | None) -> str:
    """A short human form of a byte count (for plans)."""
    if size is None:
        return "unlimited"
    for unit, factor in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    if size >= 1 << 20:
        return f"{size / (1 << 20):.1f}M"
    return f"{size}B" if size < 1024 else f"{size / 1024:.1f}K"
