"""Hash classification against what real vpopmail accepted (05-password-hashes...)."""

from __future__ import annotations

import re

import pytest
from reference import reference_dir

from mailplan.facts.hashes import classify, make_hash, verify


def _recorded_schemes() -> list[tuple[str, str, bool]]:
    text = (reference_dir() / "vpopmail" / "05-password-hashes-and-vchkpw.md").read_text()
    cases = []
    for section in text.split("\n## Scheme: ")[1:]:
        name = section.split(" ", 1)[0]
        value = re.search(r"vadduser -e '([^']*)' ", section).group(1)
        login = re.search(r"HashPass123\\0\\0' \| \S+ /bin/true 3<&0\n```\n- exit code: (\d+)",
                          section)
        cases.append((name, value, login.group(1) == "0"))
    return cases


CASES = _recorded_schemes()


def test_every_recorded_scheme_is_covered():
    assert len(CASES) == 19


@pytest.mark.parametrize("name, value, authenticates", CASES, ids=[c[0] for c in CASES])
def test_usable_exactly_when_real_vpopmail_authenticated(name, value, authenticates):
    info = classify(value)
    assert info.usable is authenticates, info
    assert len(value) < 3 or value not in info.detail  # never echo a real hash


@pytest.mark.parametrize("name, value, authenticates", [c for c in CASES if c[2]],
                         ids=[c[0] for c in CASES if c[2]])
def test_passlib_verifies_the_recorded_password_where_it_can(name, value, authenticates):
    assert verify("HashPass123", value) in (True, None)
    assert verify("WrongPass9", value) in (False, None)


@pytest.mark.parametrize("value, status", [
    ("", "empty"), ("!!", "locked"), ("!$6$abc$def", "locked"), ("*LK*", "locked"),
    ("NP", "locked"),  # Solaris' passwd -N, not a DES hash gone wrong
    ("$6$x$y", "malformed"), ("$1$$", "malformed"), ("ab:cd", "malformed"),
    ("$9$whatever", "unsupported"),
])
def test_problem_fields(value, status):
    assert classify(value).status == status


def test_make_hash_is_sha512_and_verifies():
    h = make_hash("p@ss w:rd$!;x")
    assert h.startswith("$6$") and verify("p@ss w:rd$!;x", h) is True


@pytest.mark.parametrize("value", ["$Tr0ub4dor&3", "$Tr0ub4dor&3$x", "$9$Sekr1t", "!Sekr1t",
                                   "*Sekr1t", "Sekr1t Pw", "Sekr1tPlain", "$6$Sekr1t",
                                   "$apr1$Sekr1t$abc", "Sekr1t\0x", "$1$$Sekr1t"])
def test_no_part_of_a_shadow_field_is_echoed(value):
    detail = classify(value).detail
    assert "Sekr1t" not in detail and "Tr0ub" not in detail, (value, detail)


# libxcrypt's own output for crypt("pw", "$y$j9T$" + 80 * "a"): a valid yescrypt hash of
# 131 bytes. vpopmail's vauth_setpw() refuses a password field over MAX_PW_PASS (128):
# vadduser -e leaves the user with its temporary password ("Error in vauth_setpw()") and
# vmoduser -e says "password too long (max=128)".
LONG_YESCRYPT = "$y$j9T$" + "a" * 80 + "$1svCCQ3GpogI2gNp16ChE/3S.WJi.WLA.2dnBWIS3z1"


def test_a_hash_longer_than_vpopmail_stores_is_not_usable():
    assert len(LONG_YESCRYPT) == 131
    info = classify(LONG_YESCRYPT)
    assert not info.usable and "128" in info.detail, info
    assert classify(LONG_YESCRYPT[:7] + LONG_YESCRYPT[10:]).usable  # 128 bytes: fine


# Hashes of "HashPass123" as crypt(3) on Debian 12 (libxcrypt 4.4.33, the reference
# server's) writes them or refuses them: (value, whether crypt("HashPass123", value)
# gives the value back, i.e. vchkpw lets the user in).
_BCRYPT = "$2b$05$abcdefghijklmnopqrstuum6FNa150ybBpofzWRdL2wYxVBNQ1LEu"
LIBXCRYPT = [
    ("sha1crypt", "$sha1$4000$abcdefgh$W56oRXBm9dCLSx4xj93gPx1vETFy", True),  # NetBSD's
    ("bcrypt2x", "$2x$" + _BCRYPT[4:], True),  # crypt_blowfish's 8-bit compatible prefix
    ("bcrypt2", "$2$" + _BCRYPT[4:], False),  # libxcrypt returns "*0": no such scheme
    ("bcrypt-salt-padding", _BCRYPT[:28] + "v" + _BCRYPT[29:], False),  # "u" once computed
    ("bcrypt2x-salt-padding", "$2x$" + _BCRYPT[4:28] + "w" + _BCRYPT[29:], False),
    ("nthash", "$3$$fc70066021968ff79a69872345628e64", True),
    ("nthash-capitals", "$3$$FC70066021968FF79A69872345628E64", False),
]


@pytest.mark.parametrize("name, value, authenticates", LIBXCRYPT,
                         ids=[c[0] for c in LIBXCRYPT])
def test_usable_exactly_when_libxcrypt_verifies_it(name, value, authenticates):
    info = classify(value)
    assert info.usable is authenticates, info
    assert value[5:] not in info.detail
    # and a clear password is never taken to match a hash vpopmail cannot verify
    assert verify("HashPass123", value) in ((True, None) if authenticates else (False,))
