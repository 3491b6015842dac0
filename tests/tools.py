"""The programs the suite runs that a fresh Debian machine lacks until
scripts/install-test-deps.sh installs them. A missing one fails the test that needs it:
a skip would let a run where the script did not install it pass unnoticed."""

from __future__ import annotations

import os

import pytest

INSTALL = "scripts/install-test-deps.sh"


def require(path: str | None, what: str) -> str:
    """``path`` when it is an executable; else fail the calling test, naming ``what``."""
    if not path or not os.access(path, os.X_OK):
        pytest.fail(f"{what} is missing ({path or 'not on the PATH'}): {INSTALL} installs it "
                    "(as root)", pytrace=False)
    return path
