"""Command lines built from quoted parts (a NUL byte never reaches a host), and remote
output masked before it is shown (no password hash in a message)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from tools import require

from mailplan.errors import MailplanError
from mailplan.routing.facts import parse_valias_list
from mailplan.routing.model import RoutingError
from mailplan.secret import MASK, Secret, mask_output
from mailplan.shell import Cmd, join, portable


def test_parts_are_quoted_and_secrets_masked():
    cmd = Cmd.of("vadduser", "a b", Secret("pw'1"))
    assert cmd.render() == "vadduser 'a b' 'pw'\"'\"'1' </dev/null"
    assert cmd.display() == f"vadduser 'a b' {MASK} </dev/null"


@pytest.mark.parametrize("part", ["foo\0bar", Secret("Zq\0Xy7")])
def test_a_nul_byte_is_a_mailplan_error_that_shows_no_secret(part):
    with pytest.raises(MailplanError, match="NUL byte") as info:
        Cmd.of("valias", "-i", part, "x@example.com").render()
    assert "Xy7" not in str(info.value) and "foo" not in str(info.value)
    with pytest.raises(MailplanError):
        join(["cat", "--", "a\0b"])


def test_remote_output_is_masked_before_it_reaches_a_message():
    text = ("name:   ann\npasswd: $6$SaltSalt$Zz9Hash\nclear passwd: Hunter2\n"
            "  Passwd:  DESabcdefghi\nError: no $1$ab$Cd9: x, $2b$10$Ee9 or $md5,rounds=9$Ff9$")
    shown = mask_output(text)
    for secret in ("Zz9Hash", "Hunter2", "DESabcdefghi", "Cd9", "Ee9", "Ff9"):
        assert secret not in shown
    assert shown.startswith("name:   ann\npasswd: (sensitive)\nclear passwd: (sensitive)\n")
    assert "Error: no (sensitive): x, (sensitive) or (sensitive)" in shown
    assert mask_output("vuserinfo: out of memory; user a$b") == "vuserinfo: out of memory; user a$b"


def test_shadow_and_passwd_lines_are_masked_whatever_the_hash_scheme():
    """DES (13 characters) and BSDi (``_`` and 19) hashes have no ``$``: a shadow line
    quoted by a broken read (a shell that died while reading /etc/shadow) must not show
    them either. Placeholders, other fields and text with colons stay as they are."""
    text = ("alice:abJnggxhB/yWI:19000:0:99999:7:::\neve:_J9..rasm1BJxpAA2bo:19000::::::\n"
            "bob:x:1000:1000:Bob:/home/bob:/bin/sh\ncarol:!!:19000::::::\ndan:*:1:\n"
            "old:abJnggxhB/yWI:1001:1001:Old passwd:/home/old:/bin/sh\n"
            "Subject: lunch: at 12:30:00\n")
    assert mask_output(text) == (
        "alice:(sensitive):19000:0:99999:7:::\neve:(sensitive):19000::::::\n"
        "bob:x:1000:1000:Bob:/home/bob:/bin/sh\ncarol:!!:19000::::::\ndan:*:1:\n"
        "old:(sensitive):1001:1001:Old passwd:/home/old:/bin/sh\n"
        "Subject: lunch: at 12:30:00\n")


def test_a_failing_valias_never_echoes_a_hash():
    with pytest.raises(RoutingError) as info:
        parse_valias_list("oops\npasswd: $6$SaltSalt$Zz9Hash\n", 1)
    assert "Zz9Hash" not in str(info.value) and "(sensitive)" in str(info.value)


#: every byte a command can hold (a NUL cannot be in one): quotes, ``!``, newlines,
#: backslashes and bytes past ASCII (a Latin-1 path read with surrogateescape)
EVERY_BYTE = "".join(chr(b) if b < 128 else chr(0xDC00 + b) for b in range(1, 256))


@pytest.mark.parametrize("shell", ["sh", "csh", "tcsh", "fish", "bash", "zsh"])
def test_the_portable_form_reaches_sh_as_written_from_any_login_shell(shell, tmp_path):
    """sshd runs ``LOGIN-SHELL -c LINE``: every byte arrives, and the command's stdin and
    exit status are its own, on a host whose PATH holds nothing (a form that needed
    base64 and gzip ran nothing on a host without them: plan called a mailbox 'not
    readable as mail' and apply said the writer 'ended without replying')."""
    path = shutil.which(shell)
    require(path, shell)
    command = f"printf '%s' {join([EVERY_BYTE])}; IFS= read -r x; printf '|%s' \"$x\"; exit 141"
    res = subprocess.run([path, "-c", portable(command)], input=b"in\xff\n",
                         capture_output=True, cwd=tmp_path, check=False,
                         env={"PATH": str(tmp_path), "HOME": str(tmp_path),
                              "LANG": os.environ.get("LANG", "C.UTF-8")})
    expected = EVERY_BYTE.encode("utf-8", "surrogateescape") + b"|in\xff"
    assert (res.returncode, res.stdout, res.stderr) == (141, expected, b"")
