"""Classify crypt(3) password hashes: which scheme, and can vpopmail verify it?

vpopmail hands the stored hash to the system's crypt(3) (libxcrypt on Debian 12), so it
verifies every scheme libxcrypt knows and nothing else
(reference/vpopmail/05-password-hashes-and-vchkpw.md): DES, BSDi, MD5-crypt, SHA-256,
SHA-512, NetBSD's SHA-1 crypt ($sha1$), bcrypt ($2a$/$2b$/$2y$, and crypt_blowfish's
$2x$), yescrypt, gost-yescrypt, scrypt ($7$), SunMD5 and NT ($3$, its digest in lower
case: libxcrypt compares the one it computes). Apache's $apr1$, bare hex digests, {MD5}
LDAP values, plain text and bcrypt's original $2$ prefix (libxcrypt has no such scheme)
do not authenticate. passlib (libpass) identifies the schemes it implements; yescrypt,
gost-yescrypt, libxcrypt's $7$ scrypt and $2x$ bcrypt, which passlib does not implement,
are recognised by their documented formats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from passlib.context import CryptContext

from mailplan.names import MAX_HASH

# Schemes libxcrypt verifies, by passlib handler name.
_CRYPT = CryptContext(schemes=[
    "sha512_crypt", "sha256_crypt", "sha1_crypt", "md5_crypt", "bcrypt", "bsdi_crypt",
    "sun_md5_crypt", "bsd_nthash", "des_crypt",
])
# Hash formats vpopmail stores but cannot verify (identified only to name them).
_FOREIGN = CryptContext(schemes=["apr_md5_crypt", "ldap_hex_md5", "ldap_md5", "hex_md5",
                                 "hex_sha1", "hex_sha256", "hex_sha512"])
_B64 = r"[./0-9A-Za-z]"
#: an NT hash ($3$, empty salt, the 32 hex digits of its digest) in either case:
#: libxcrypt verifies only the lower-case one (:func:`_refused_by_libxcrypt`)
_NT_HASH = re.compile(r"\$3\$\$[0-9a-fA-F]{32}")
_XCRYPT_ONLY = [
    ("yescrypt", re.compile(rf"^\$y\${_B64}+\${_B64}*\${_B64}{{43}}$")),
    ("gost_yescrypt", re.compile(rf"^\$gy\${_B64}+\${_B64}*\${_B64}{{43}}$")),
    ("scrypt_7", re.compile(rf"^\$7\${_B64}{{11,}}\${_B64}{{43}}$")),
    # crypt_blowfish's $2x$ (its pre-2011 handling of 8-bit passwords), cost 04 to 31,
    # its salt's last character one libxcrypt keeps (:func:`_refused_by_libxcrypt`)
    ("bcrypt_x", re.compile(rf"^\$2x\$(0[4-9]|[12][0-9]|3[01])\${_B64}{{21}}[.Oeu]"
                            rf"{_B64}{{31}}$")),
]
_LABELS = {
    "sha512_crypt": "SHA-512 crypt", "sha256_crypt": "SHA-256 crypt",
    "sha1_crypt": "SHA-1 crypt", "bcrypt_x": "bcrypt",
    "md5_crypt": "MD5 crypt", "bcrypt": "bcrypt", "bsdi_crypt": "BSDi crypt",
    "sun_md5_crypt": "SunMD5", "bsd_nthash": "NT hash", "des_crypt": "DES crypt",
    "yescrypt": "yescrypt", "gost_yescrypt": "gost-yescrypt", "scrypt_7": "scrypt",
    "apr_md5_crypt": "Apache apr1 MD5", "ldap_hex_md5": "LDAP {MD5}",
    "ldap_md5": "LDAP {MD5}", "hex_md5": "bare hex MD5", "hex_sha1": "bare hex SHA-1",
    "hex_sha256": "bare hex SHA-256", "hex_sha512": "bare hex SHA-512",
}


@dataclass(frozen=True)
class HashInfo:
    """What a stored password field is. ``usable`` means vpopmail can verify it."""

    status: str  # "ok", "locked", "empty", "unsupported", "malformed"
    scheme: str | None
    detail: str

    @property
    def usable(self) -> bool:
        """Whether migrating this hash lets the user log in with the old password."""
        return self.status == "ok"


def classify(value: str) -> HashInfo:
    """Classify a shadow password field or a hash from the spec. Never echoes the value."""
    if (closed := _no_password(value)) is not None:
        return closed
    if any(c in value for c in ":\n\0") or value != value.strip():
        return HashInfo("malformed", None, "contains ':', whitespace or control characters")
    if len(value.encode("utf-8", "surrogateescape")) > MAX_HASH:
        return HashInfo("unsupported", None, f"{len(value.encode('utf-8', 'surrogateescape'))} "
                        f"bytes long; vpopmail stores at most {MAX_HASH} (vadduser -e and "
                        "vmoduser -e refuse a longer one)")
    for name, pattern in _XCRYPT_ONLY:
        if pattern.match(value):
            return HashInfo("ok", name, _LABELS[name])
    scheme = _CRYPT.identify(value)
    if refused := _refused_by_libxcrypt(scheme, value):
        return refused
    if scheme is not None and not (scheme == "des_crypt" and value.startswith("$")):
        handler = _CRYPT.handler(scheme)
        try:
            if scheme == "bsd_nthash":  # a prefix wrapper without from_string()
                if not _NT_HASH.fullmatch(value) or value != value.lower():
                    raise ValueError(value[:4])
            elif not handler.from_string(value).checksum:
                raise ValueError("no checksum")
        except (ValueError, TypeError):
            return HashInfo("malformed", scheme, f"looks like {_LABELS[scheme]} but is not "
                            "a well-formed one")
        return HashInfo("ok", scheme, _LABELS[scheme])
    foreign = _FOREIGN.identify(value)
    if foreign is not None:
        return HashInfo("unsupported", foreign, f"{_LABELS[foreign]} hashes cannot be "
                        "verified by vpopmail's crypt(3)")
    if value.startswith("$"):  # its scheme name is not shown: it may be a clear password
        return HashInfo("unsupported", None, "starts with '$' but is no crypt(3) scheme "
                        "vpopmail can verify")
    return HashInfo("malformed", None, "not a crypt(3) hash")


def _no_password(value: str) -> HashInfo | None:
    """An empty field, or one of a locked account: ``!`` or ``*`` before it (``!!``,
    ``*LK*``, ``passwd -l``'s ``!$6$...``), or Solaris' ``NP`` (``passwd -N``: a value
    crypt(3) never returns, so no password logs in)."""
    if value == "":
        return HashInfo("empty", None, "empty password field (no password at all)")
    if value[0] in "!*":
        return HashInfo("locked", None, "account is locked (password field starts with "
                        "'!' or '*')")
    if value == "NP":
        return HashInfo("locked", None, "account has no password to log in with (Solaris' "
                        "'NP', passwd -N)")
    return None


def _refused_by_libxcrypt(scheme: str | None, value: str) -> HashInfo | None:
    """What passlib takes for a hash of a scheme it knows and libxcrypt never verifies:
    bcrypt's original ``$2$`` prefix (libxcrypt has ``$2a$``, ``$2b$``, ``$2x$`` and
    ``$2y$`` only), a bcrypt salt whose last character has padding bits set (as passlib
    before 1.5.3 wrote them: libxcrypt clears them in the hash it computes, which then
    differs from the one stored), and an NT hash written in capitals (libxcrypt compares
    the lower-case digest it computes)."""
    if scheme == "bcrypt" and value.startswith("$2$"):
        return HashInfo("unsupported", scheme, "bcrypt with its original $2$ prefix, which "
                        "vpopmail's crypt(3) (libxcrypt) cannot verify")
    if scheme == "bcrypt" and len(value) == 60 and value[28] not in ".Oeu":
        return HashInfo("unsupported", scheme, "bcrypt whose salt has padding bits set in "
                        "its last character, which vpopmail's crypt(3) (libxcrypt) clears: "
                        "the hash it computes never matches this one")
    if scheme == "bsd_nthash" and _NT_HASH.fullmatch(value) and value != value.lower():
        return HashInfo("unsupported", scheme, "an NT hash written in capitals, which "
                        "vpopmail's crypt(3) (libxcrypt) never matches: it compares the "
                        "lower-case digest it computes")
    return None


def verify(clear: str, stored: str) -> bool | None:
    """Whether ``clear`` matches ``stored``; None when passlib cannot check this scheme.
    A stored value vpopmail cannot verify (:func:`classify`) matches nothing: no password
    logs in with it, whatever passlib would say."""
    if not classify(stored).usable:
        return False
    scheme = _CRYPT.identify(stored)
    if scheme is None:
        return None
    try:
        return bool(_CRYPT.verify(clear, stored))
    except (ValueError, TypeError):
        return None


def make_hash(clear: str) -> str:
    """A SHA-512 crypt hash of ``clear``: what vpopmail itself would store."""
    return str(_CRYPT.handler("sha512_crypt").using(rounds=5000).hash(clear))
