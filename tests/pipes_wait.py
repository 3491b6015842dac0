"""A test's read that must not wait on a named pipe (opening one waits for a writer)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def at_once(read: Callable[[], Any], pipes: list[Path]) -> Any:
    """What ``read`` returns (or raises), failing the test if it waits on a pipe."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(read())
        except BaseException as exc:  # noqa: BLE001 -- handed to the test's thread
            outcome.append(exc)

    reader = threading.Thread(target=run, daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():  # let the stuck opens go, so that the test ends
        for pipe in pipes:
            with contextlib.suppress(OSError):
                os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(10)
        pytest.fail("the read waited on the named pipe")
    return outcome[0]
