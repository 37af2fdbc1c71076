"""Errors numstab raises on purpose.

Every error a user can cause (bad option, bad file, bad callable) is a
:class:`UsageError`; the CLI prints its message on one line and exits 2.
"""

from __future__ import annotations

import difflib


class NumstabError(Exception):
    """Base class of numstab's own errors."""


class UsageError(NumstabError):
    """Bad usage or bad input: one clear line for the user, exit code 2."""

    exit_code = 2


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C (workers stopped, temp files removed).

    Not a KeyboardInterrupt, which click turns into a bare "Aborted" after a blank line."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def unknown_name(kind: str, name: str, choices) -> UsageError:
    """A UsageError for an unknown name, suggesting the closest valid one."""
    choices = list(choices)
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return UsageError(f"unknown {kind} {name!r}{hint} (choose from: {', '.join(choices)})")


class CallableError(NumstabError):
    """A user implementation raised, or returned the wrong shape or dtype."""


class ReferenceMismatch(NumstabError):
    """--verify found a reference value that changes at twice the precision."""
