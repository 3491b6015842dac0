"""Shared pytest fixtures: the real test sshd and SSH connectors to it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from migration import TEST_PYTHON
from sshd_fixture import Sshd, login_shell_user, start_sshd
from tools import require

from mailplan.connectors.base import DEFAULT_PYTHON, Connector
from mailplan.connectors.ssh import SSHConnector

# CI runs property tests with a fixed seed so that a landing is reproducible; by hand
# they explore new examples on every run. No deadline in either: speed is measured in
# benchmarks/, and a slow example on a loaded machine is not a failure.
settings.register_profile("mailplan", derandomize=bool(os.environ.get("CI")), deadline=None)
settings.load_profile("mailplan")


def pytest_configure(config: pytest.Config) -> None:
    """The programs the tests start import this checkout's mailplan. Each session works
    in a base directory of its own (unless --basetemp names one).
    The writer switches to vpopmail, which must reach the stand-in's Maildirs, so the
    stand-in makes their temp ancestors searchable (tests/standin/install.py); pytest's
    shared /tmp/pytest-of-USER is made private again by every session that starts, which
    would cut off the writers of a session still running."""
    # the CLI the tests run (python -m mailplan) is this checkout's too, not an installed
    # mailplan (an editable install of another checkout, or of one that is gone)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(repo_root()), *filter(None, [os.environ.get("PYTHONPATH")])])
    if config.option.basetemp is None:
        base = tempfile.mkdtemp(prefix="mailplan-tests-")
        config.option.basetemp = base
        config.stash[_OWN_BASETEMP] = base


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the session's own base directory (kept with MAILPLAN_KEEP_TEST_FILES=1)."""
    base = config.stash.get(_OWN_BASETEMP, None)
    if base and not os.environ.get("MAILPLAN_KEEP_TEST_FILES"):
        shutil.rmtree(base, ignore_errors=True)


_OWN_BASETEMP = pytest.StashKey[str]()


@pytest.fixture(autouse=True)
def _programs_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every connector a test makes runs the programs with MAILPLAN_TEST_PYTHON, when
    it is set (unless the test names another interpreter than python3)."""
    if TEST_PYTHON:
        init = Connector.__init__

        def with_python(self: Connector, *args: object, **kwargs: object) -> None:
            if kwargs.get("python", DEFAULT_PYTHON) == DEFAULT_PYTHON:
                kwargs["python"] = TEST_PYTHON
            init(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Connector, "__init__", with_python)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """One OpenSSH daemon for the whole session."""
    daemon = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield daemon
    daemon.stop()


@pytest.fixture
def ssh_connector(sshd: Sshd) -> Iterator[SSHConnector]:
    """An SSH connector to the test daemon, trusting its host key via known_hosts."""
    conn = SSHConnector("testhost", address="127.0.0.1", port=sshd.port, user=sshd.user,
                        identity_file=str(sshd.client_key), known_hosts=str(sshd.known_hosts))
    yield conn
    conn.close()


@pytest.fixture
def sudo_connector(sshd: Sshd) -> Iterator[SSHConnector]:
    """An SSH connector to the test daemon whose commands run under ``sudo -n`` (a host
    with ``sudo: true``; the test user may use sudo without a password: root is)."""
    require(shutil.which("sudo"), "sudo")
    conn = SSHConnector("testhost", address="127.0.0.1", port=sshd.port, user=sshd.user,
                        identity_file=str(sshd.client_key), known_hosts=str(sshd.known_hosts),
                        sudo=True)
    yield conn
    conn.close()


def login_shell_connector(sshd: Sshd, shell: str, *, sudo: bool = True) -> SSHConnector:
    """An SSH connector to the test daemon as the test account whose login shell is
    ``shell`` (tcsh or fish: neither reads sh command lines), under ``sudo -n`` unless
    told otherwise."""
    return SSHConnector("testhost", address="127.0.0.1", port=sshd.port,
                        user=login_shell_user(sshd, shell), identity_file=str(sshd.client_key),
                        known_hosts=str(sshd.known_hosts), sudo=sudo)


def repo_root() -> Path:
    """The checkout's top directory."""
    return Path(__file__).resolve().parent.parent
