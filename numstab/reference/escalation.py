"""The reference's tiers and their escalation: fast float64, long double where it is wider,
then mpmath per vector. Every row ends at the first tier whose bound decides its values.

The interface is three calls on a batch (``args``: its extra arguments, functions.as_args):
:func:`compute_reference` (the reference of every needed function, and the tier of each
row), :func:`bump` (recompute some rows one tier up) and :func:`decide` (bump until every
value is decided or at the last tier).
"""

from __future__ import annotations

import numpy as np

from ..formats import Format
from ..functions import take_args
from . import MP_TIER, fast_reference, fast_supported, mp_reference


def tier_reference(fmt: Format, x: np.ndarray, args, tier: int, functions=None, specials=None):
    """The reference of one tier; vectors holding -inf, +inf or NaN go through the mask layer
    (numstab.masks: the limit values around the reference of the finite part)."""
    from .. import masks

    if tier == MP_TIER:
        compute = lambda f, xs, a: mp_reference(f, xs, a, functions)  # noqa: E731
    else:
        compute = lambda f, xs, a: fast_reference(f, xs, a, tier=tier, functions=functions)  # noqa: E731
    return masks.reference(compute, fmt, x, args, specials, functions)


def compute_reference(fmt: Format, x: np.ndarray, args, mode: str = "auto", functions=None, specials=None):
    """Reference for ``functions`` (names; default every one the extra arguments ``args``
    allow) and the rest of their families; returns (dict of RefData, tier per row).

    Tiers: 0 = float64 fast path, then long double (where wider), then MP_TIER =
    mpmath. Every row ends at the first tier whose bound decides its rounding.
    ``specials`` (masks.Specials): how -inf (masks), +inf and NaN inputs are read.
    """
    B = x.shape[0]
    if mode == "mpmath" or not fast_supported(fmt):
        return tier_reference(fmt, x, args, MP_TIER, functions, specials), np.full(B, MP_TIER, dtype=np.int8)
    ref = tier_reference(fmt, x, args, 0, functions, specials)
    tier = np.zeros(B, dtype=np.int8)
    decide(fmt, x, args, ref, tier, specials)
    return ref, tier


def undecided(ref) -> np.ndarray:
    bad = None
    for r in ref.values():
        dec = r.decided.reshape(r.decided.shape[0], -1).all(axis=1)
        bad = ~dec if bad is None else bad | ~dec
    return bad


def bump(fmt, x, args, ref, tier, rows_mask, specials=None) -> bool:
    """Recompute the given rows one tier up; False when none could move."""
    rows = np.nonzero(rows_mask & (tier < MP_TIER))[0]
    if not rows.size:
        return False
    for t in np.unique(tier[rows]):
        sel = rows[tier[rows] == t]
        nxt = int(t) + 1
        new = tier_reference(fmt, x[sel], take_args(args, sel), nxt, list(ref), specials)
        for f in ref:
            ref[f].put(sel, new[f])
        tier[sel] = nxt
    return True


def decide(fmt, x, args, ref, tier, specials=None) -> None:
    while bump(fmt, x, args, ref, tier, undecided(ref), specials):
        pass
