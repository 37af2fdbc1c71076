"""The thresholds command: the exact limits of exp in each format."""

from __future__ import annotations

from ..errors import UsageError
from ..formats import get_format

THRESHOLDS_SCHEMA = "numstab.thresholds/2"  # /2: the binary family's two limits joined /1's fields


def run_thresholds(dtypes=None, n: int = 1000) -> dict:
    """The thresholds job: exact limits of exp in each format, and where the naive binary family
    (sigmoid, softplus, BCE from probabilities) loses every digit."""
    from ..formats import FORMATS
    from ..reference import family, thresholds

    if n < 1:
        raise UsageError("--n must be at least 1")
    fmts = [get_format(d) for d in (dtypes or FORMATS)]
    binary = family("sigmoid").thresholds
    return {"schema": THRESHOLDS_SCHEMA, "formats": [{**thresholds(f, n), **binary(f)} for f in fmts]}
