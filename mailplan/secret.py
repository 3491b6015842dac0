"""Values that must never be printed: clear passwords and password hashes.

A :class:`Secret` compares and hashes by value but renders as ``(sensitive)`` in
``str``, ``repr`` and f-strings, so a secret that slips into a message, a log line or
an exception text shows up masked. Code that really needs the value calls
:meth:`Secret.reveal` at the one place it is sent to a host.
"""

from __future__ import annotations

import hashlib
import hmac
import re

MASK = "(sensitive)"

_PASSWD_LINE = re.compile(r"(?im)^([ \t]*(?:clear[ \t]+)?passwd[ \t]*:).*$")
_CRYPT = re.compile(r"\$(?:1|2[abxy]?|3|5|6|7|y|gy|md5|sha1|apr1)[$,][^\s:'\"]*")
# the password field of a shadow (or an old passwd) line, whatever its scheme: DES and
# BSDi hashes have no ``$`` for _CRYPT to see ("alice:abJnggxhB/yWI:19000:..."); the
# placeholders x, * and ! stay readable
_SHADOW_FIELD = re.compile(r"(?m)^([^:\s]+:)(?!(?:x|\*|!|!!):)[^:\n]+(?=:\d*:)")


def mask_output(text: str) -> str:
    """Output of a remote command made fit for a message or a log: the values of
    vuserinfo's ``passwd:`` and ``clear passwd:`` lines, the password field of anything
    shaped like a shadow or passwd line, and anything that looks like a crypt hash
    (``$6$...``), read ``(sensitive)``. Mask before cutting the text short."""
    text = _SHADOW_FIELD.sub(rf"\1{MASK}", _PASSWD_LINE.sub(rf"\1 {MASK}", text))
    return _CRYPT.sub(MASK, text)


class Secret:
    """An opaque string value; see the module docstring."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The clear value, for the single place that transmits it."""
        return self._value

    def fingerprint(self, key: bytes) -> str:
        """A short keyed digest (HMAC-SHA256), to detect changes in saved plans without
        storing the value. ``key`` is kept apart from the plan (see
        :func:`mailplan.private_files.fingerprint_key`): a plain digest in a plan file would let
        anyone holding the file test guesses of a clear password offline."""
        return hmac.new(key, self._value.encode(), hashlib.sha256).hexdigest()[:16]

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)
