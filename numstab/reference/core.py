"""Building blocks of the reference's rigorous bounds, shared by the formula modules.

* :func:`from_interval`: the reference record (results.RefData) of values known to lie in
  [v - err, v + err] (the fast float64 / long double / quad tiers);
* the working types' constants (:func:`unit_roundoff`, :func:`lib_error`, :func:`tiny`),
  :func:`pairwise_sum` (a sum with a log2(n) error bound) and :func:`diff_exact`;
* :func:`strict`, :func:`log1p_down`, :func:`log1p_up`, :func:`mag`: pieces of the mpmath
  enclosures (raw mpf tuples, directed rounding).

mpmath is imported lazily, and only in the reference layer.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import numpy as np

from ..formats import Format
from ..results import RefData

TINY = 1e-300  # absolute slack covering float64 underflow of negligible terms

_QUAD: list = []


def quad():
    """numpy-quaddtype's quad precision dtype (SLEEF backend), or None where the optional extra
    ``numstab[fast]`` is not installed. Imported on first use (it costs ~80 ms)."""
    if not _QUAD:
        try:
            from numpy_quaddtype import QuadPrecDType

            _QUAD.append(np.dtype(QuadPrecDType("sleef")))
        except ImportError:
            _QUAD.append(None)
    return _QUAD[0]


def is_quad(dt) -> bool:
    q = quad() if np.dtype(dt).kind not in "fiub" else None
    return q is not None and np.dtype(dt) == q


def unit_roundoff(dt) -> float:
    """u of the working type: 2^-53 float64, 2^-64 x86 long double, 2^-113 quad."""
    return 2.0**-113 if is_quad(dt) else float(np.finfo(dt).eps) / 2


def lib_error(dt) -> float:
    """Assumed bound on the relative error of exp, log1p and expm1 in the working type: 16 ulp
    for numpy's float64 and long double (libm); SLEEF documents 1.0 ULP for its quad
    functions (Sleef_expq1_u10, ...; + - * / within 0.5000000001 ULP): 4 ulp taken."""
    return (4 if is_quad(dt) else 16) * unit_roundoff(dt)


def tiny(dt):
    """Absolute slack covering the underflow of negligible terms in the working type."""
    if is_quad(dt):
        from numpy_quaddtype import QuadPrecision

        return QuadPrecision(2) ** -16300  # quad's normal range ends at 2^-16382
    return np.dtype(dt).type(TINY)


def log_tiny(dt) -> float:
    """A float64 L with exp(L) <= tiny(dt) / e^2: a value known to lie below exp(L) is within
    tiny(dt) of 0 (and of any rounding of its exp), the absolute slack every fast bound carries."""
    import math

    return (-16300 * math.log(2) if is_quad(dt) else math.log(TINY)) - 2.0


def working(x: np.ndarray, fmt: Format | None = None) -> np.ndarray:
    """x in a working type the families' fast bounds are proven for (their bounds are written in
    unit_roundoff, lib_error and tiny of x's type): IEEE binary types (float64, x86 long double)
    as they are; quad (numpy-quaddtype) for a target wider than float32 (float64: long double
    cannot settle its figures, so every element would go to mpmath); for narrower targets a quad
    tier computes in long double, which decides as much (quad's ends go through float64 pairs,
    which cannot tell 1 - 3.6e-33 from 1)."""
    if x.dtype in (np.dtype(np.float64), np.dtype(np.longdouble)):
        return x
    if is_quad(x.dtype) and fmt is not None and fmt.p > 24:
        return x
    return np.asarray(x, dtype=np.float64).astype(np.longdouble)  # format values: exact


def pairwise_sum(e: np.ndarray) -> tuple[np.ndarray, int]:
    """Sum along the last axis by halving: (sums, depth). Every term meets at most ``depth`` =
    ceil(log2 n) roundings, so for non-negative terms |error| <= ((1 + u)^depth - 1) * sum
    (numpy's own sum is pairwise too, but its blocking is an implementation detail)."""
    depth = 0
    while e.shape[-1] > 1:
        if e.shape[-1] % 2:
            e = np.concatenate([e, np.zeros(e.shape[:-1] + (1,), dtype=e.dtype)], axis=-1)
        e = e[..., 0::2] + e[..., 1::2]
        depth += 1
    return e[..., 0], depth


def diff_exact(x: np.ndarray, m: np.ndarray, wt, mw=None) -> tuple[np.ndarray, np.ndarray]:
    """(d = x - m in the working type, d exact), x and m float64 (``mw``: m already converted to
    wt, e.g. a row's maximum converted once for all its elements). float64 and long double round
    correctly, so TwoSum (Knuth) gives the exact rounding error; the difference of two float64
    is exact in quad when their exponents are at most 59 apart (113 bits hold it). A -inf entry
    (a mask left in place, finite m) has d = -inf exactly."""
    if is_quad(wt):
        # in float64 first: where TwoSum finds x - m exact there (the usual case), its quad
        # conversion is the exact difference, one quad conversion instead of two and a subtraction
        with np.errstate(all="ignore"):
            d64 = x - m
            bb = d64 - x
            ok64 = (((x - (d64 - bb)) + (-m - bb)) == 0) & np.isfinite(d64)
            if not ok64.all():
                ok64 = ok64 | (x == -np.inf)
        if ok64.all():
            return d64.astype(wt), ok64
        d = x.astype(wt) - (m.astype(wt) if mw is None else mw)
        ex, em = np.frexp(x)[1], np.frexp(m)[1]
        return d, (x == 0) | (m == 0) | (np.abs(ex - em) <= 59) | (x == -np.inf)
    xw, mw = x.astype(wt), (m.astype(wt) if mw is None else mw)
    with np.errstate(all="ignore"):
        d = xw - mw
        bb = d - xw
        ex = ((xw - (d - bb)) + (-mw - bb)) == 0
        return d, ex if ex.all() else ex | (xw == -np.inf)


def rows_exact(fmt: Format | None, x: np.ndarray, m: np.ndarray, wt) -> np.ndarray | None:
    """Per row of x (float64 values of ``fmt``, (B, n)), whether every x_i - m (m: (B,), a value of
    ``fmt`` too) is exact in the working type wt (float64 or long double) by the row's range alone:
    every value of fmt at least lo in magnitude (lo: the row's smallest nonzero |x_i| or |m|) is a
    multiple of q = ulp_fmt(lo), and |x_i - m| <= 2 hi (hi: the largest), so x_i - m is an integer
    multiple of q at most 2 hi / q <= 2^p(wt), which wt holds exactly. Three passes (|x|, its
    max and min) instead of TwoSum's seven; None where it does not apply (no format, quad)."""
    if fmt is None or is_quad(wt):
        return None
    with np.errstate(all="ignore"):
        a = np.abs(x)
        am = np.abs(m)
        hi = np.maximum(a.max(axis=-1), am)
        lo = a.min(axis=-1)
        if not (lo > 0).all():  # zeros (x - m = -m exactly) leave the smallest nonzero magnitude
            lo = np.where(a > 0, a, np.inf).min(axis=-1)
        lo = np.minimum(lo, np.where(am > 0, am, np.inf))
        q = fmt.round_ulp(np.where(np.isfinite(lo), lo, 1.0))[1]
        bits = np.finfo(wt).nmant + 1
        return (2 * hi / q <= 2.0**bits) & np.isfinite(hi)


def at(a: np.ndarray, bi, ji) -> np.ndarray:
    """a[bi, ji] of a 2-D array: one take of the flat indices where a is C-contiguous (a fifth of
    the time of numpy's two-index gather on a chunk of elements), else the gather."""
    a = np.asarray(a)
    if a.ndim == 2 and a.flags.c_contiguous:
        return a.ravel().take(np.asarray(bi) * a.shape[1] + ji)
    return a[bi, ji]


def step_up(a) -> np.ndarray:
    """``np.nextafter(a, +inf)`` for float64 a, bit for bit, as an integer step of the bit pattern:
    +1 for a >= +0, -1 for a < 0 (a smaller magnitude); -0.0 and +0.0 go to the smallest subnormal,
    +inf and NaN stay (-inf goes to -max by the step). About 20x faster than numpy's nextafter,
    which calls libm once an element."""
    a = np.asarray(a, dtype=np.float64)
    b = (a if a.flags.c_contiguous else a.copy()).view(np.int64)
    with np.errstate(all="ignore"):
        r = ((b + 1) - (b < 0) * 2).view(np.float64)  # -0.0 wraps round: replaced below
    special = (a == 0) | ~np.isfinite(a)
    if special.any():
        r = np.where(a == 0, 5e-324, np.where((a == np.inf) | np.isnan(a), a, r))
    return r


def step_down(a) -> np.ndarray:
    """``np.nextafter(a, -inf)`` for float64 a, bit for bit (:func:`step_up` mirrored)."""
    return -step_up(-np.asarray(a, dtype=np.float64))


def up64(v: np.ndarray) -> np.ndarray:
    """A float64 upper bound of v >= 0 held in quad: numpy-quaddtype's conversion to float64 is
    not correctly rounded (within a few ulp), so it is moved up by 2^-47 relative and 2^-1060
    absolute (values below float64's normal range)."""
    return v.astype(np.float64) * (1 + 2.0**-47) + 2.0**-1060


def _down(v: np.ndarray) -> np.ndarray:
    """float64 <= v (v in a wider float type): outward rounding of a lower bound."""
    r = v.astype(np.float64)
    return np.where(r > v, step_down(r), r)


def _up(v: np.ndarray) -> np.ndarray:
    r = v.astype(np.float64)
    return np.where(r < v, step_up(r), r)


def _ends(closed, limit, x, strict):
    """(rounding, ulp) at the ends x: closed(x), or the one-sided limit where r != x strictly."""
    r, u = closed(x)
    if strict.any():
        r, u = r.copy(), u.copy()
        r[strict], u[strict] = limit(x[strict])
    return r, u


#: Where :func:`intervals` collects the intervals the families' fast bounds give.
_RECORD: list = []


@contextlib.contextmanager
def intervals():
    """Within the block, :func:`from_interval` records each interval (v, err, lower, upper) in the
    list yielded, in call order (one call per function, in the order of the family's result),
    and returns a placeholder RefData (nothing decided) instead of deciding the interval for a
    format: the intervals themselves serve :func:`numstab.reference.exact_strings`."""
    got: list = []
    _RECORD.append(got)
    try:
        yield got
    finally:
        _RECORD.pop()


#: Elements whose bounds a family computes at a time (:func:`by_chunks`): its few dozen temporaries
#: then stay in the cache and are reused, instead of being allocated (and faulted in) batch-sized --
#: about 2x faster on rows of real logits (32k-128k elements)
ELEMENT_CHUNK = 1 << 15


def by_chunks(compute, bi, ji=None) -> RefData:
    """``compute(bi, ji)`` (a RefData over the elements (bi, ji), every value computed from its own
    element and its row's shared quantities) in pieces of ELEMENT_CHUNK elements, joined: the same
    values as one call. Not split while :func:`intervals` records (one interval per function)."""
    bi = np.asarray(bi)
    if bi.size <= ELEMENT_CHUNK or _RECORD:
        return compute(bi, ji)
    parts = [compute(bi[i:i + ELEMENT_CHUNK], None if ji is None else ji[i:i + ELEMENT_CHUNK])
             for i in range(0, bi.size, ELEMENT_CHUNK)]
    return RefData(*(np.concatenate([np.broadcast_to(getattr(r, k), r.rounded.shape) for r in parts])
                     for k in RefData.__dataclass_fields__))


def recording() -> bool:
    """Whether :func:`intervals` is recording (a family then gives every value as an interval)."""
    return bool(_RECORD)


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
    rounded outward into float64. Quad intervals are decided in quad (:func:`_from_quad`).
    """
    if _RECORD:
        _RECORD[-1].append((v, err, lower, upper))
        nan = np.full(np.shape(v), np.nan)
        no = np.zeros(np.shape(v), dtype=bool)
        return RefData(nan, nan, nan, nan, nan, nan, no, no)
    if is_quad(v.dtype):
        return _from_quad(fmt, v, err, lower, upper)
    wide = v.dtype != np.float64
    with np.errstate(all="ignore"):
        if wide:
            err = err * (1 + 2.0**-40) + TINY
            # v -+ err round to nearest: one step outward covers that rounding (an interval
            # [1/8 - 2^-60, 1/8 + 2^-60] must not collapse onto 1/8 and its binade)
            lo, hi = step_down(v - err), step_up(v + err)
        else:
            # v -+ err round to nearest, within 2^-53 (|v| + err) (+ 2^-1075 below the normal range,
            # which TINY covers): 2^-52 |v| more in err covers that rounding, with the 2^-40 relative
            # covering err's own roundings, in three passes instead of two steps of the bits (an
            # interval [1/8 - 2^-60, 1/8 + 2^-60] then never collapses onto 1/8 and its binade)
            err = (err + np.abs(v) * 2.0**-52) * (1 + 2.0**-40) + TINY
            lo, hi = v - err, v + err
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


def quad_ends(v, err, lower=None, upper=None) -> tuple:
    """(lo, hi, strict_lo, strict_hi): quad ends holding r in [v - err, v + err] (v, err in quad),
    moved out by the roundings of v -+ err (quad's + and - are within 0.5000000001 ulp), then cut
    to the strict bounds lower < r < upper; ``strict_*`` where an end is such a bound."""
    q = v.dtype
    err = err * (1 + 2.0**-40) + np.abs(v) * 2.0**-110 + tiny(q)  # + the rounding of v -+ err
    lo, hi = v - err, v + err
    strict_lo = np.zeros(lo.shape, dtype=bool)
    strict_hi = np.zeros(hi.shape, dtype=bool)
    if lower is not None:
        lower = np.broadcast_to(np.asarray(lower).astype(q), lo.shape)
        strict_lo = lo <= lower
        lo = np.where(strict_lo, lower, lo)
    if upper is not None:
        upper = np.broadcast_to(np.asarray(upper).astype(q), hi.shape)
        strict_hi = hi >= upper
        hi = np.where(strict_hi, upper, hi)
    return lo, hi, strict_lo, strict_hi


class Affine(NamedTuple):
    """An error bound ``a + b |v|`` of an interval's centre v (a quad array): ``a`` and ``b``
    float64 upper bounds (numbers or arrays broadcasting to v). The fast tiers' quad bounds have
    this form; a bound only needs to be an upper bound, so float64 holds it as well as quad does,
    and :func:`_from_quad` then never forms the interval's ends in quad (each quad operation costs
    about 30 ns an element, a float64 one about 1)."""

    a: object
    b: object

    def quad(self, v):
        """The bound as a quad array at v (rounded to nearest: quad_ends' 1 + 2^-40 covers it)."""
        q = v.dtype
        a = np.asarray(self.a, dtype=np.float64).astype(q)
        return a + np.asarray(self.b, dtype=np.float64).astype(q) * np.abs(v)


def quad_err(v, err, pick=None):
    """``err`` as a quad array at v: an :class:`Affine` bound evaluated there, a quad array as it
    is. ``pick``: takes v's elements out of an array of the whole interval's shape (v is then
    those elements alone), applied to ``err`` or to the Affine's ``a`` and ``b``."""
    if pick is None:
        return err.quad(v) if isinstance(err, Affine) else err
    return Affine(pick(err.a), pick(err.b)).quad(v) if isinstance(err, Affine) else pick(err)


def _split(e, up: bool):
    """(h, l): a quad end e as h = float64(e) (within half an ulp, checked) and l a float64 bound
    of the remainder e - h (exact in quad), moved outward by |h| 2^-103 + 2^-1074 unless the
    remainder is 0 (its conversion is within one ulp of it: 2^-105 |h|)."""
    h = e.astype(np.float64)
    rq = e - h
    r = rq.astype(np.float64)
    nz = rq != 0
    pad = np.abs(h) * 2.0**-103 + 2.0**-1074
    return h, np.where(nz, r + pad if up else r - pad, 0.0)


#: A pair end nearer than this (relative) to a strict bound is cut in quad (quad_ends)
_NEAR = 2.0**-48


def _pair_ends(v, err, lower, upper):
    """The ends of [v - err, v + err] cut to lower < r < upper as float64 pairs:
    (lo_h, lo_l, hi_h, hi_l, strict_lo, strict_hi, ok, ends) with lo = lo_h + lo_l <= r <= hi_h + hi_l
    (real sums), ``ok`` where lo <= hi, and ``ends(mask)`` the quad ends (lo, hi) of the elements
    in mask (core.quad_ends).

    With an :class:`Affine` ``err`` the common element is done in float64 alone: v = vh + vr
    (vh = float64(v), within half an ulp, so |vr| <= 2^-53 |vh|; vr exact in quad, vl its float64
    conversion within 2^-105 |vh|), E >= a + b |v| (|v| <= |vh| (1 + 2^-52); every float64 rounding
    covered by the two factors 1 + 2^-44), and the ends vh + ((vl -+ pad) -+ E) with pad =
    |vh| 2^-102 + 2^-1074, which covers vl's conversion and the two roundings of the low parts
    (each within 2^-53 of a part at most 2^-52 |vh| + E). The ends a quad computation would give
    are inside these, so every decision taken on them holds. Elements outside float64's normal
    range, with an infinite or wide bound, or whose ends come near a strict bound are done in quad
    as a quad ``err`` is (quad_ends, then split)."""
    shape = v.shape

    def pick(a, mask):
        return None if a is None else np.broadcast_to(np.asarray(a), shape)[mask]

    def ends(mask):
        if mask is Ellipsis:
            return quad_ends(v, quad_err(v, err), lower, upper)
        vm = v[mask]
        return quad_ends(vm, quad_err(vm, err, lambda a: pick(a, mask)), pick(lower, mask), pick(upper, mask))

    strict_lo = np.zeros(shape, dtype=bool)
    strict_hi = np.zeros(shape, dtype=bool)
    ok = np.ones(shape, dtype=bool)
    if isinstance(err, Affine):
        vh = v.astype(np.float64)
        vl = (v - vh).astype(np.float64)
        av = np.abs(vh)
        a = np.broadcast_to(np.asarray(err.a, dtype=np.float64), shape)
        b = np.broadcast_to(np.asarray(err.b, dtype=np.float64), shape)
        E = (a + b * (av * (1 + 2.0**-44))) * (1 + 2.0**-44)
        pad = av * 2.0**-102 + 2.0**-1074
        lo_h, hi_h = vh, vh.copy()
        lo_l, hi_l = (vl - pad) - E, (vl + pad) + E
        slow = ~np.isfinite(E) | ~(av >= 2.0**-960) | (av > 2.0**1000) | ~(E <= av * 2.0**-30)
        for bound, side in ((lower, 1.0), (upper, -1.0)):
            if bound is not None:
                b64 = np.broadcast_to(np.asarray(bound).astype(np.float64), shape)  # converted, then spread
                near = (E + (av + np.where(np.isfinite(b64), np.abs(b64), 0.0)) * _NEAR)
                slow |= side * (vh - b64) <= near
        if not slow.any():
            return lo_h, lo_l, hi_h, hi_l, strict_lo, strict_hi, ok, ends
        key = Ellipsis if slow.all() else slow
    else:
        lo_h, lo_l, hi_h, hi_l = (np.empty(shape) for _ in range(4))
        key = Ellipsis
    lo, hi, s_lo, s_hi = ends(key)
    ok[key] = lo <= hi
    strict_lo[key], strict_hi[key] = s_lo, s_hi
    lo_h[key], lo_l[key] = _split(lo, False)
    hi_h[key], hi_l[key] = _split(hi, True)
    return lo_h, lo_l, hi_h, hi_l, strict_lo, strict_hi, ok, ends


def _from_quad(fmt: Format, v, err, lower=None, upper=None) -> RefData:
    """:func:`from_interval` for quad intervals, decided in float64 pairs for any format up to 53 bits.

    Each end e of [v - err, v + err] (cut to the strict bounds) is held as e = h + l, h and l
    float64 with l a bound of the rest (:func:`_pair_ends`: from the quad ends, or in float64 alone
    for an :class:`Affine` ``err``). A candidate c (the format's rounding of
    the float64 midpoint, or its neighbour on the interval's side) is then checked: with
    D = (|r| - c) / ulp(c) = ((h - c) + l) / ulp(c) -- h - c exact (Sterbenz) wherever the
    decision can go either way -- |r| rounds to c when -1/2 < D < 1/2 (-1/4 below a power of
    two, where the spacing halves), and r's ulp is ulp(c), or half of it for an |r| wholly
    below a power of two c. Where l is not 0, D is one float64 rounding away from the truth,
    so the comparisons with -+1/2 (-1/4) are redone in quad within 2^-50 of them; its sign
    is exact.
    """
    with np.errstate(all="ignore"):
        q = v.dtype
        lo_h, lo_l, hi_h, hi_l, strict_lo, strict_hi, ok, ends = _pair_ends(v, err, lower, upper)
        mid = lo_h * 0.5 + hi_h * 0.5
        neg = np.signbit(mid)
        # |r| lies in [ah + al, bh + bl]
        ah, al = np.where(neg, -hi_h, lo_h), np.where(neg, -hi_l, lo_l)
        bh, bl = np.where(neg, -lo_h, hi_h), np.where(neg, -lo_l, hi_l)
        s_lo, s_hi = np.where(neg, strict_hi, strict_lo), np.where(neg, strict_lo, strict_hi)
        a64 = np.abs(mid)
        c, _ = fmt.round_ulp(a64)
        ok &= np.isfinite(c) & np.isfinite(ah) & np.isfinite(bh)
        c = np.where(ok, c, 0.0)
        eps = 2.0**-50

        def check(c):
            uc = fmt.ulp(c)
            DL = ((ah - c) + al) / uc
            DH = ((bh - c) + bl) / uc
            xl, xh = al == 0, bl == 0  # D exact there
            pow2 = (c > fmt.tiny) & (np.frexp(c)[0] == 0.5)
            edge = np.where(pow2, -0.25, -0.5)
            rl = np.where(xl, (DL > edge) | ((DL == edge) & s_lo), DL > edge + eps)
            rh = np.where(xh, (DH < 0.5) | ((DH == 0.5) & s_hi), DH < 0.5 - eps)
            amb = (~xl & (np.abs(DL - edge) <= eps)) | (~xh & (np.abs(DH - 0.5) <= eps))
            if amb.any():  # within 2^-50 of an edge: exactly, in quad (the float64 pair cannot tell)
                lo, hi = ends(amb)[:2]
                aq = np.where(neg[amb], -hi, lo)
                bq = np.where(neg[amb], -lo, hi)
                cq, uq = c[amb].astype(q), uc[amb].astype(q)
                dlq, dhq = (aq - cq) / uq, (bq - cq) / uq
                rl[amb] = (dlq > edge[amb]) | ((dlq == edge[amb]) & s_lo[amb])
                rh[amb] = (dhq < 0.5) | ((dhq == 0.5) & s_hi[amb])
            rounds = rl & rh
            # the sign of D is exact: h - c is, and rounding (h - c) + l keeps the sign of the sum
            below = (DH < 0) | ((DH == 0) & s_hi)
            above = DL >= 0
            half = pow2 & below
            decided = rounds & (~pow2 | above | below)
            dl = np.where(xl, DL, step_down(DL))
            dh = np.where(xh, DH, step_up(DH))
            scale = np.where(half, 2.0, 1.0)
            return decided, np.where(half, uc * 0.5, uc), dl * scale, dh * scale

        dec, ulp, dl, dh = check(c)
        if not dec.all():  # a midpoint-straddling float64 guess: the neighbour on the interval's side
            uc = fmt.ulp(c)
            pow2 = (c > fmt.tiny) & (np.frexp(c)[0] == 0.5)
            c2 = np.where(a64 < c, c - np.where(pow2, uc * 0.5, uc), c + uc)
            ok2 = ~dec & (c > 0) & (c2 <= fmt.max)
            if ok2.any():
                d2, u2, l2, h2 = check(np.where(ok2, c2, c))
                take = ok2 & d2
                c = np.where(take, c2, c)
                dec, ulp = dec | take, np.where(take, u2, ulp)
                dl, dh = np.where(take, l2, dl), np.where(take, h2, dh)
        decided = ok & dec
        rounded = np.where(decided, np.where(neg, -c, c), np.nan)
        dlo, dhi = np.where(neg, -dh, dl), np.where(neg, -dl, dh)
        # ulp / |r| with |r| in [max(ah + al, 0), bh + bl] (an interval holding 0 leaves qhi infinite)
        amin = step_down(ah + al)
        amax = step_up(bh + bl)
        qlo = np.where(amax > 0, np.nextafter(ulp / np.where(amax > 0, amax, 1.0), 0), np.inf)
        qhi = np.where(amin > 0, step_up(ulp / np.where(amin > 0, amin, 1.0)), np.inf)
        out = RefData(rounded, ulp, dlo, dhi, qlo, qhi, decided, np.ones_like(decided))
        _round_to_zero(fmt, v, ends, out)
    return out


def _out64(x, up: bool) -> np.ndarray:
    """A float64 bound of the quad values x outward (up: >= x; else <= x): numpy-quaddtype's
    conversion is within a few ulp, covered as :func:`up64` covers it, by 2^-47 relative and
    2^-1060 absolute (values below float64's normal range); a value beyond float64's range is
    +-inf either way, as the reference writes such a ratio."""
    h = x.astype(np.float64)
    pad = np.where(np.isfinite(h), np.abs(h) * 2.0**-47 + 2.0**-1060, 0.0)
    return h + pad if up else h - pad


def _round_to_zero(fmt: Format, v, ends, out: RefData) -> None:
    """Decide, in ``out``, the intervals whose quad ends both lie within half the format's smallest
    subnormal s of 0: every r there rounds to 0 (|r| < s / 2, or the tie s / 2, which goes to the
    even 0) and its ulp is s. The float64 pairs cannot tell them from 0 (their low parts are padded
    by 2^-1074), the quad ends can: the softmax of a -1e9 mask, exp(-1e9) ~ 10^-434294482 (0 in
    quad, its ends within quad's smallest normal of it). (r - 0) / s and s / |r| are bounded
    outward in float64 (s / |r| beyond float64's range is inf, as the mpmath tier writes it)."""
    s = 2.0 ** (fmt.emin - fmt.p + 1)
    cand = ~out.decided
    if not cand.any():  # the usual case: no quad conversion of every element (about 24 ns each)
        return
    cand[cand] = np.abs(v[cand].astype(np.float64)) <= s
    if not cand.any():
        return
    q = v.dtype
    lo, hi = ends(cand)[:2]
    sq = np.asarray(s).astype(q)
    half = sq / 2
    z = (np.abs(lo) <= half) & (np.abs(hi) <= half) & (lo <= hi)
    if not z.any():
        return
    idx = tuple(i[z] for i in np.nonzero(cand))
    lo, hi = lo[z], hi[z]
    amax = np.maximum(np.abs(lo), np.abs(hi))
    span = (lo <= 0) & (hi >= 0)
    amin = np.where(span, np.asarray(0.0).astype(q), np.minimum(np.abs(lo), np.abs(hi)))
    with np.errstate(all="ignore"):
        out.rounded[idx] = np.copysign(0.0, v[idx].astype(np.float64))
        out.ulp[idx] = s
        out.dlo[idx], out.dhi[idx] = _out64(lo / sq, False), _out64(hi / sq, True)
        out.qlo[idx] = np.where(amax > 0, _out64(sq / np.where(amax > 0, amax, sq), False), np.inf)
        out.qhi[idx] = np.where(amin > 0, _out64(sq / np.where(amin > 0, amin, sq), True), np.inf)
        out.decided[idx] = True


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
