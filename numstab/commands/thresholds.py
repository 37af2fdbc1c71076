"""The thresholds command: the exact limits of exp in each format."""

from __future__ import annotations

from ..errors import UsageError
from ..formats import get_format


def run_thresholds(dtypes=None, n: int = 1000) -> dict:
    """The thresholds job: exact exp limits of each format."""
    from ..formats import FORMATS
    from ..reference import thresholds

    if n < 1:
        raise UsageError("--n must be at least 1")
    fmts = [get_format(d) for d in (dtypes or FORMATS)]
    return {"schema": "numstab.thresholds/1", "formats": [thresholds(f, n) for f in fmts]}
