"""Building blocks of the reference's rigorous bounds, shared by the formula modules.

* :func:`from_interval`: the reference record (results.RefData) of values known to lie in
  [v - err, v + err] (the fast float64 / long double tiers);
* :func:`strict`, :func:`log1p_down`, :func:`log1p_up`, :func:`mag`: pieces of the mpmath
  enclosures (raw mpf tuples, directed rounding).

mpmath is imported lazily, and only in the reference layer.
"""

from __future__ import annotations

import numpy as np

from ..formats import Format
from ..results import RefData

TINY = 1e-300  # absolute slack covering float64 underflow of negligible terms


def _down(v: np.ndarray) -> np.ndarray:
    """float64 <= v (v in a wider float type): outward rounding of a lower bound."""
    r = v.astype(np.float64)
    return np.where(r > v, np.nextafter(r, -np.inf), r)


def _up(v: np.ndarray) -> np.ndarray:
    r = v.astype(np.float64)
    return np.where(r < v, np.nextafter(r, np.inf), r)


def _ends(closed, limit, x, strict):
    """(rounding, ulp) at the ends x: closed(x), or the one-sided limit where r != x strictly."""
    r, u = closed(x)
    if strict.any():
        r, u = r.copy(), u.copy()
        r[strict], u[strict] = limit(x[strict])
    return r, u


def from_interval(fmt: Format, v, err, lower=None, upper=None) -> RefData:
    """RefData from r in [v - err, v + err], cut to the strict bounds lower < r < upper.

    Rounding is monotone and the ulp is constant on a binade, so the interval decides
    r's rounded value and ulp when its two ends agree. An end cut at a strict bound
    B stands for "just below B" (or above), whose rounding and ulp the format gives
    exactly (Format.round_ulp_below): B may be a midpoint of the format or a power
    of two. (r - rounded) / ulp is computed exactly in the working type: the two are
    within one ulp_F of each other (Sterbenz) and ulp is a power of two. With a wider
    working type (long double) the ends are rounded outward to float64 for the
    decision -- an end that moved stands for "just inside it" -- and the deltas are
    rounded outward into float64.
    """
    wide = v.dtype != np.float64
    with np.errstate(all="ignore"):
        err = err * (1 + 2.0**-40) + TINY
        # v -+ err round to nearest: one step outward covers that rounding (an interval
        # [1/8 - 2^-60, 1/8 + 2^-60] must not collapse onto 1/8 and its binade)
        lo, hi = np.nextafter(v - err, -np.inf), np.nextafter(v + err, np.inf)
        strict_lo = np.zeros(lo.shape, dtype=bool)
        strict_hi = np.zeros(hi.shape, dtype=bool)
        if lower is not None:
            lo = np.maximum(lo, lower)
            strict_lo = lo <= lower
        if upper is not None:
            hi = np.minimum(hi, upper)
            strict_hi = hi >= upper
        a, b = (_down(lo), _up(hi)) if wide else (lo, hi)
        if wide:  # an inexact conversion leaves r strictly inside the float64 ends
            strict_lo |= a < lo
            strict_hi |= b > hi
        rlo, ulo = _ends(fmt.round_ulp, fmt.round_ulp_above, a, strict_lo)
        rhi, uhi = _ends(fmt.round_ulp, fmt.round_ulp_below, b, strict_hi)
        decided = (rlo == rhi) & (ulo == uhi) & np.isfinite(rlo) & (lo <= hi)
        rounded = np.where(decided, rlo, np.nan)
        dlo = (lo - rounded) / ulo
        dhi = (hi - rounded) / ulo
        alo = np.minimum(np.abs(lo), np.abs(hi))
        alo[(lo <= 0) & (hi >= 0)] = 0.0
        qlo = ulo / np.maximum(np.abs(lo), np.abs(hi))
        qhi = ulo / alo
        if wide:
            dlo, dhi, qlo, qhi = _down(dlo), _up(dhi), _down(qlo), _up(qhi)
    return RefData(rounded, ulo, dlo, dhi, qlo, qhi, decided, np.ones_like(decided))


def _mp():
    import mpmath  # lazily: importing mpmath costs more than all of numstab

    return mpmath

def mag(v) -> int:
    """floor(log2 |v|) + 1 of a nonzero raw mpf."""
    return int(v[2]) + int(v[3])


def log1p_down(t, wp: int):
    """A lower bound of log1p(t) for a raw mpf t >= 0, relative error about 2^-wp."""
    from mpmath.libmp import fone, fzero, mpf_add, mpf_log, mpf_mul, mpf_shift, mpf_sub

    if not t[1]:
        return fzero
    mt = mag(t)
    if mt < -wp - 2:  # log1p(t) >= t - t^2/2 for t >= 0
        return mpf_sub(t, mpf_shift(mpf_mul(t, t, wp, "c"), -1), wp, "f")
    return mpf_log(mpf_add(fone, t, wp + max(0, -mt) + 10, "f"), wp, "f")


def log1p_up(t, wp: int):
    """An upper bound of log1p(t) for a raw mpf t >= 0: t itself when t is tiny (log1p(t) <= t)."""
    from mpmath.libmp import fone, fzero, mpf_add, mpf_log

    if not t[1]:
        return fzero
    mt = mag(t)
    if mt < -wp - 2:

        return t
    return mpf_log(mpf_add(fone, t, wp + max(0, -mt) + 10, "c"), wp, "c")

def strict(lo, hi, low=None, high=None, p: int = 64) -> tuple:
    """(lo, hi, lo_dec, hi_dec): an enclosure cut to a strict bound low < r (or r < high).

    When the rounded end reaches the bound B, the end becomes B (still a closed bound, for
    the figures) and its decision point -- where the rounding and the ulp are read --
    becomes B moved inward by 2^(mag(B) - p - 64): every real strictly between that point
    and B rounds, and has its ulp, like the one-sided limit at B (format boundaries near B
    are 2^(mag(B) - p - 2) apart at the finest). This settles values astronomically close
    to B (t = exp(-1e38)) that no working precision can separate from B.
    """
    from mpmath.libmp import mpf_cmp, mpf_shift, mpf_sub

    lo_dec, hi_dec = lo, hi
    if high is not None and high[1] and mpf_cmp(hi, high) >= 0:
        hi = high
        hi_dec = mpf_sub(high, mpf_shift((0, 1, 0, 1), mag(high) - p - 64), 0)
    if low is not None and low[1] and mpf_cmp(lo, low) <= 0:
        lo = low
        lo_dec = mpf_sub(low, mpf_shift((1, 1, 0, 1), mag(low) - p - 64), 0)
    return lo, hi, lo_dec, hi_dec
