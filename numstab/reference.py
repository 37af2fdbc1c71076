"""Exact reference values: mpmath is the authority, a proven float64 bound the fast path.

For a vector x (already rounded to the target format, so exact in float64) with
m = max(x), k its first argmax and t = sum_{i != k} exp(x_i - m):

    logsumexp     L   = m + log1p(t)
    log_softmax_i     = (x_i - m) - log1p(t)      (two non-positive terms)
    softmax_i         = exp(log_softmax_i)
    cross_entropy     = log1p(t) - (x_target - m) (two non-negative terms)

These forms never cancel (except L itself near 0), so one reference per input
vector serves every function and implementation.

Each reference value r is stored as what the metrics need, in float64:
``rounded`` (r rounded to the format), ``ulp`` (ulp_F(r)), the interval
``[dlo, dhi]`` holding (r - rounded) / ulp, and ``[alo, ahi]`` holding |r|.
The mpmath path gives a point (dlo == dhi); the fast float64 path gives an
interval from a rigorous error bound, and ``decided`` is False wherever that
interval does not fix the rounded value: those vectors are recomputed with
mpmath. mpmath is imported only in this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .formats import Format
from .kernels import FUNCTIONS

#: Working precisions tried by the escalation (bits), in order.
START_PREC = 64
MAX_PREC = 1 << 14

TINY = 1e-300  # absolute slack covering float64 underflow of negligible terms


@dataclass
class RefData:
    """Reference for one function over a batch: arrays of shape (B, n) or (B,)."""

    rounded: np.ndarray
    ulp: np.ndarray
    dlo: np.ndarray
    dhi: np.ndarray
    qlo: np.ndarray  # bounds of ulp / |r| (inf for r = 0): relative error = ULP error * q
    qhi: np.ndarray
    decided: np.ndarray  # bool: the interval fixes the rounded value and the ulp
    determined: np.ndarray  # bool: False where mpmath could not settle the value

    def put(self, rows, other: RefData) -> None:
        for f in self.__dataclass_fields__:
            getattr(self, f)[rows] = getattr(other, f)


# ---------------------------------------------------------------- fast path
def fast_supported(fmt: Format) -> bool:
    """float64 bounds decide the rounding only for formats much narrower than float64."""
    return fmt.p <= 24


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


def _from_interval(fmt: Format, v, err, lower=None, upper=None) -> RefData:
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


#: Elements per block of the fast path: big enough for numpy, small enough for the cache.
BLOCK = 1 << 17

#: Working types of the fast tiers: float64, then long double where it is wider (x86: 64-bit
#: significand). Each tier is used only where the previous one left a figure undecided.
FAST_TIERS = (np.dtype(np.float64),) + (
    (np.dtype(np.longdouble),) if np.finfo(np.longdouble).nmant > 52 else ())
MP_TIER = len(FAST_TIERS)  # the tier number of mpmath


def fast_reference(fmt: Format, x: np.ndarray, target: np.ndarray, tier: int = 0) -> dict[str, RefData]:
    """Vectorized reference with a proven error bound, in the working type of ``tier``.

    ``x``: (B, n) float64, exact values of the format. Elements whose bound does
    not decide the rounding have ``decided`` False. Works in blocks of rows so the
    cost stays linear in the number of elements.
    """
    x = np.asarray(x, dtype=np.float64)
    target = np.asarray(target)
    wt = FAST_TIERS[tier]
    rows = max(1, BLOCK // max(1, x.shape[-1]))
    if x.shape[0] <= rows:
        return _fast_block(fmt, x.astype(wt), target)
    parts = [_fast_block(fmt, x[i:i + rows].astype(wt), target[i:i + rows])
             for i in range(0, x.shape[0], rows)]
    return {f: RefData(*(np.concatenate([getattr(p[f], k) for p in parts])
                         for k in RefData.__dataclass_fields__)) for f in parts[0]}


def _fast_block(fmt: Format, x: np.ndarray, target: np.ndarray) -> dict[str, RefData]:
    n = x.shape[-1]
    u = float(np.finfo(x.dtype).eps) / 2  # unit roundoff of the working type
    c_lib = 16 * u  # assumed bound on the library's exp/log1p/expm1 error: 16 ulp
    with np.errstate(all="ignore"):
        m = np.max(x, axis=-1, keepdims=True)
        k = np.argmax(x, axis=-1)[..., None]
        d = x - m  # |error| <= u |d|
        bb = d - x  # TwoSum (Knuth): the exact rounding error of x + (-m)
        d_exact = ((x - (d - bb)) + (-m - bb)) == 0
        ad = np.abs(d)
        e = np.exp(d)  # relative error <= u |d| + c_lib (+ TINY absolute below the type's range)
        np.put_along_axis(e, k, 0.0, axis=-1)
        t = np.sum(e, axis=-1)
        rel_e = np.max(ad, axis=-1) * u * 1.01 + c_lib
        et = t * (rel_e + n * u) * 1.01 + n * TINY
        lp = np.log1p(t)
        elp = et / (1.0 + np.maximum(t - et, 0.0)) + c_lib * lp + TINY
        lp2 = lp[..., None]
        elp2 = elp[..., None]

        # with n >= 2, t > 0 exactly, which gives strict bounds: L > m, log_softmax_i < x_i - m
        # (where that difference is exact), softmax_i < 1, cross_entropy > m - x_target
        strict = n >= 2
        out = {}
        L = m[..., 0] + lp
        out["logsumexp"] = _from_interval(fmt, L, 2 * (elp + u * np.abs(L)),
                                          lower=m[..., 0] if strict else None)
        ls = d - lp2
        els = ad * u + elp2 + u * np.abs(ls)
        out["log_softmax"] = _from_interval(fmt, ls, 2 * els,
                                            upper=np.where(d_exact, d, np.inf) if strict else None)
        sm = np.exp(ls)
        out["softmax"] = _from_interval(fmt, sm, 2 * (sm * (np.expm1(els) * 1.01 + c_lib)),
                                        upper=x.dtype.type(1.0) if strict else None)
        tg = target[..., None]
        dt = np.take_along_axis(d, tg, axis=-1)[..., 0]
        dt_exact = np.take_along_axis(d_exact, tg, axis=-1)[..., 0]
        ce = lp - dt
        out["cross_entropy"] = _from_interval(
            fmt, ce, 2 * (elp + np.abs(dt) * u + u * np.abs(ce)),
            lower=np.where(dt_exact, -dt, -np.inf) if strict else None,
        )
    return out


# ------------------------------------------------------------- mpmath path
def _mp():
    import mpmath  # lazily: importing mpmath costs more than all of numstab

    return mpmath


def _exact_raw(x_row, target: int, prec: int) -> dict[str, list]:
    """All reference values of one vector as raw mpmath tuples at working precision ``prec``.

    Works on mpmath's libmp tuples (sign, man, exp, bc) to skip object overhead:
    the reference settles every element of every vector, so this is the hot loop.
    """
    mpmath = _mp()
    from mpmath.libmp import from_float, mpf_add, mpf_exp, mpf_sub, mpf_sum

    xs = [from_float(float(v)) for v in x_row]  # exact
    k = int(np.argmax(x_row))
    m = xs[k]
    d = [mpf_sub(v, m, 0) for v in xs]  # precision 0: exact
    wp = prec + 10
    t = mpf_sum([mpf_exp(di, wp, "n") for i, di in enumerate(d) if i != k], wp, "n")
    with mpmath.mp.workprec(wp):
        lp = mpmath.log1p(mpmath.mpf(t))._mpf_
    ls = [mpf_sub(di, lp, prec, "n") for di in d]
    return {
        "logsumexp": [mpf_add(m, lp, prec, "n")],
        "log_softmax": ls,
        "softmax": [mpf_exp(v, prec, "n") for v in ls],
        "cross_entropy": [mpf_sub(lp, d[int(target)], prec, "n")],
    }


def exact_values(x_row, target: int, prec: int) -> dict[str, list]:
    """All reference values of one vector as mpf at working precision ``prec``."""
    make = _mp().mp.make_mpf
    return {f: [make(v) for v in vals] for f, vals in _exact_raw(x_row, target, prec).items()}


def round_mpf(fmt: Format, v) -> float:
    """Round an mpf (or a raw mpmath tuple) exactly, from its binary digits, into the format."""
    raw = getattr(v, "_mpf_", v)
    sign, man, exp, bc = raw
    if not man:
        if exp == 0:  # zero
            return -0.0 if sign else 0.0
        from mpmath.libmp import to_float

        return to_float(raw)  # inf or nan
    return fmt.round_exact(bool(sign), int(man), int(exp))


def start_prec(fmt: Format) -> int:
    """First working precision of the escalation for this format: max(64, 2p + 32) bits."""
    return max(START_PREC, 2 * fmt.p + 32)


def escalate(fmt: Format, compute, start: int = START_PREC, max_prec: int = MAX_PREC):
    """Raise the working precision until every value rounded to the format stops changing.

    ``compute(prec)`` returns a flat list of mpf (or raw mpmath tuples). Returns
    (values at the final precision, list of bools: settled) -- a value still
    changing at ``max_prec`` is reported as not settled instead of guessed.
    """
    prec = start
    prev = compute(prec)
    prev_r = [round_mpf(fmt, v) for v in prev]
    while True:
        prec *= 2
        cur = compute(prec)
        cur_r = [round_mpf(fmt, v) for v in cur]
        same = [_same(a, b) for a, b in zip(prev_r, cur_r)]
        if all(same) or prec >= max_prec:
            return cur, same
        prev, prev_r = cur, cur_r


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _point(fmt: Format, v, settled: bool) -> tuple:
    """(rounded, ulp, delta, ulp/|r|, settled) of an mpf or raw tuple, in float64 terms.

    delta = (r - anchor) / ulp exactly rounded, where the anchor is the rounded value,
    or +-max when r rounds to an infinity (an exact value beyond the format's range
    keeps an exact ULP distance to any finite output that way).
    """
    from mpmath.libmp import from_float, mpf_abs, mpf_div, mpf_shift, mpf_sub, to_float

    raw = getattr(v, "_mpf_", v)
    rounded = round_mpf(fmt, raw)
    sign, man, exp, _ = raw
    ue = fmt.ulp_exponent_exact(int(man), int(exp))
    ulp = math.ldexp(1.0, ue)
    anchor = rounded if math.isfinite(rounded) else (-fmt.max if sign else fmt.max)
    delta = to_float(mpf_shift(mpf_sub(raw, from_float(anchor), 0), -ue))
    q = math.inf if not man else to_float(mpf_div(from_float(ulp), mpf_abs(raw), 64, "n"))
    return rounded, ulp, delta, q, settled


def mp_reference(fmt: Format, x: np.ndarray, target: np.ndarray) -> dict[str, RefData]:
    """The authority: per vector, mpmath with precision escalation."""
    x = np.asarray(x, dtype=np.float64)
    B, n = x.shape
    shape = {"softmax": (B, n), "log_softmax": (B, n), "logsumexp": (B,), "cross_entropy": (B,)}
    cols = {f: np.empty(shape[f] + (5,), dtype=np.float64) for f in FUNCTIONS}
    start = start_prec(fmt)
    for b in range(B):
        row, tgt = x[b], int(target[b])

        def compute(prec, row=row, tgt=tgt):
            vals = _exact_raw(row, tgt, prec)
            return [v for f in FUNCTIONS for v in vals[f]]

        vals, settled = escalate(fmt, compute, start=start)
        i = 0
        for f in FUNCTIONS:
            size = n if f in ("softmax", "log_softmax") else 1
            pts = [_point(fmt, vals[i + j], settled[i + j]) for j in range(size)]
            i += size
            cols[f][b] = np.array(pts).reshape(cols[f][b].shape)
    out = {}
    for f in FUNCTIONS:
        c = cols[f]
        rounded, ulp, delta, q, settled = (c[..., j] for j in range(5))
        determined = settled.astype(bool)
        out[f] = RefData(rounded, ulp, delta.copy(), delta.copy(), q, q.copy(),
                         np.ones_like(determined), determined)
    return out


def exact_strings(fmt: Format, x_row, target: int, digits: int = 25) -> dict[str, list]:
    """Decimal strings of the exact values of one vector (``digits`` significant digits)."""
    mpmath = _mp()
    flat_f = [f for f in FUNCTIONS for _ in range(len(x_row) if f in ("softmax", "log_softmax") else 1)]

    def compute(prec):
        vals = exact_values(x_row, target, max(prec, 4 * digits))
        return [v for f in FUNCTIONS for v in vals[f]]

    vals, settled = escalate(fmt, compute, start=start_prec(fmt))
    out = {f: [] for f in FUNCTIONS}
    for f, v, ok in zip(flat_f, vals, settled):
        out[f].append(mpmath.nstr(v, digits, min_fixed=-6, max_fixed=12) if ok else None)
    return out


def verify_rows(fmt: Format, x: np.ndarray, target: np.ndarray, ref: dict, rows) -> list[str]:
    """Recompute the given rows at twice the escalation's final precision; list disagreements.

    Checks the value rounded to the format of every settled element of every
    function, whichever path (fast or mpmath) produced it.
    """
    prec = 4 * start_prec(fmt)
    bad = []
    for b in rows:
        vals = _exact_raw(x[b], int(target[b]), prec)
        for f in FUNCTIONS:
            r = ref[f]
            for j, v in enumerate(vals[f]):
                idx = (b, j) if r.rounded.ndim == 2 else (b,)
                if not r.determined[idx]:
                    continue
                want = round_mpf(fmt, v)
                got = float(r.rounded[idx])
                if not _same(want, got):
                    bad.append(f"{f} of vector {list(map(float, x[b]))[:8]} element {j}: reference "
                               f"{got!r}, at {prec} bits {want!r}")
    return bad


# -------------------------------------------------------------- thresholds
def thresholds(fmt: Format, n: int = 1000) -> dict:
    """Exact limits of exp in the format, computed with mpmath (60 significant digits)."""
    mpmath = _mp()
    with mpmath.mp.workdps(60):
        fmax = mpmath.mpf(fmt.max)
        half_ulp = mpmath.ldexp(1, fmt.emax - fmt.p) if fmt.has_inf else None
        if fmt.has_inf:
            limit = fmax + half_ulp  # the tie rounds to even, 2^(emax+1): overflow
        else:
            # no infinity: the last finite value, plus half its ulp, still rounds to max (tie, even)
            limit = fmax + mpmath.ldexp(1, fmt.emax - fmt.p + 1) / 2
        ovf = mpmath.log(limit)
        # largest representable x with exp(x) < limit (exp(x) == limit is impossible for x != 0)
        cand = fmt.round_exact(False, *_man_exp(ovf))
        if cand >= ovf:
            cand = _pred(fmt, cand)
        unf = mpmath.log(mpmath.mpf(fmt.smallest_subnormal) / 2)
        sub = mpmath.log(mpmath.mpf(fmt.tiny))
        naive_sum = mpmath.log(limit / n)
        return {
            "dtype": fmt.name,
            "p": fmt.p,
            "emin": fmt.emin,
            "emax": fmt.emax,
            "max": fmt.max,
            "tiny": fmt.tiny,
            "smallest_subnormal": fmt.smallest_subnormal,
            "eps": fmt.eps,
            "has_inf": fmt.has_inf,
            "exp_overflow_x": mpmath.nstr(ovf, 30),
            "largest_finite_exp_input": cand,
            "exp_underflow_x": mpmath.nstr(unf, 30),
            "exp_subnormal_x": mpmath.nstr(sub, 30),
            "n": n,
            "naive_sum_overflow_offset": mpmath.nstr(naive_sum, 30),
            "note": fmt.note,
        }


def _man_exp(v):
    _, man, exp, _ = v._mpf_
    return int(man), int(exp)


def _pred(fmt: Format, r: float) -> float:
    """The largest format value below r (r > 0, normal)."""
    u = float(fmt.ulp(r))
    below = r - u / 2  # stepping below a power of two halves the ulp
    return below if float(fmt.ulp(below)) < u else r - u
