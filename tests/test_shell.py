"""Command lines built from quoted parts: a NUL byte never reaches a host."""

from __future__ import annotations

import pytest

from mailplan.errors import MailplanError
from mailplan.secret import MASK, Secret
from mailplan.shell import Cmd, join


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
