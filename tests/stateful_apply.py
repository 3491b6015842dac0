"""What the stateful tests of ``apply`` share (test_mail_stateful, test_accounts_stateful):
a machine that works in a directory of its own under a base directory, applies again and
again, and ends every example with one more apply and its checks."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from hypothesis.stateful import RuleBasedStateMachine


class AppliedAgain(RuleBasedStateMachine):
    """The subclass makes ``self.work`` with :meth:`make_work` in its ``@initialize``,
    counts ``self.applies``, sets ``self.changed`` when a step changes something an
    apply would see, and gives :meth:`final_apply`."""

    def __init__(self, base: Path) -> None:
        super().__init__()
        self.base = base
        self.applies = 0
        self.changed = False  # since the last apply

    def make_work(self) -> Path:
        """The example's own directory (removed by :meth:`teardown`)."""
        self.work = Path(tempfile.mkdtemp(dir=self.base))
        return self.work

    def final_apply(self) -> None:
        """A plain apply, with the checks the subclass makes after each."""
        raise NotImplementedError

    def teardown(self) -> None:
        """Every example ends with an apply and its checks (unless a step failed: the
        exception being raised is the example's result)."""
        if not hasattr(self, "work"):
            return
        try:
            if sys.exc_info()[0] is None and (self.changed or not self.applies):
                self.final_apply()
        finally:
            shutil.rmtree(self.work, ignore_errors=True)
