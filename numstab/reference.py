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
from fractions import Fraction

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
try:  # quad precision (SLEEF: exp, log1p, expm1 within 1.0 ULP; + - * / within 0.5000000001 ULP)
    from numpy_quaddtype import QuadPrecDType as _QuadPrecDType
    from numpy_quaddtype import QuadPrecision as _QuadPrecision

    QUAD: np.dtype | None = np.dtype(_QuadPrecDType("sleef"))
except ImportError:  # the optional extra numstab[fast] is not installed: mpmath takes over
    QUAD = None


def _is_quad(dt) -> bool:
    return QUAD is not None and np.dtype(dt) == QUAD


#: Working types of the fast tiers for formats of at most 24 bits: float64, then long double
#: where it is wider (x86: 64-bit significand), then quad (numpy-quaddtype, 113 bits) where
#: installed. Each tier is used only for the elements the previous one left undecided.
FAST_TIERS = (np.dtype(np.float64),) + (
    (np.dtype(np.longdouble),) if np.finfo(np.longdouble).nmant > 52 else ()) + (
    (QUAD,) if QUAD is not None else ())
MP_TIER = len(FAST_TIERS)  # the tier number of mpmath for formats of at most 24 bits


def tiers(fmt: Format) -> tuple:
    """The fast tiers' working types for ``fmt``: FAST_TIERS for formats of at most 24 bits; for
    wider ones (float64) only quad decides roundings and figures (long double's 11 extra bits
    leave the 3-decimal ULP figures open)."""
    if fmt.p <= 24:
        return FAST_TIERS
    return (QUAD,) if QUAD is not None and fmt.p <= 64 else ()


def mp_tier(fmt: Format) -> int:
    """The tier number of mpmath for ``fmt`` (after its fast tiers)."""
    return len(tiers(fmt))


def fast_supported(fmt: Format) -> bool:
    """Some fast tier can decide this format's roundings."""
    return bool(tiers(fmt))


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


def _tiny(dt) -> object:
    """Absolute slack covering the underflow of negligible terms in the working type."""
    if _is_quad(dt):
        return _QuadPrecision(2) ** -16300  # quad's normal range ends at 2^-16382
    return np.dtype(dt).type(TINY)


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
    rounded outward into float64. Quad intervals are decided in quad (:func:`_from_quad`).
    """
    if _is_quad(v.dtype):
        return _from_quad(fmt, v, err, lower, upper)
    wide = v.dtype != np.float64
    with np.errstate(all="ignore"):
        err = err * (1 + 2.0**-40) + _tiny(v.dtype)
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


def _from_quad(fmt: Format, v, err, lower=None, upper=None) -> RefData:
    """:func:`_from_interval` for quad intervals, decided in quad for any format up to 53 bits.

    A candidate c (the format's rounding of a float64 near |v|, or its neighbour on the side
    of the interval) is checked exactly: with D = (|r| - c) / ulp(c) (exact in quad: c and the
    ends are within a few ulp_F of each other), |r| rounds to c when -1/2 < D < 1/2 (-1/4
    below a power of two, where the spacing halves), and r's ulp is ulp(c) -- or half of it
    for an |r| wholly below a power of two c. quad's conversions to float64 are not correctly
    rounded, so nothing relies on them: the float64 bounds are moved outward after each one.
    """
    with np.errstate(all="ignore"):
        q = v.dtype
        wq = np.abs(v) * 2.0**-110  # covers the rounding of v -+ err (quad: 2^-113 relative)
        err = err * (1 + 2.0**-40) + wq + _tiny(q)
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
        mid = ((lo + hi) * 0.5).astype(np.float64)
        neg = np.signbit(mid)
        alo, ahi = np.where(neg, -hi, lo), np.where(neg, -lo, hi)  # |r| lies in [alo, ahi]
        s_lo, s_hi = np.where(neg, strict_hi, strict_lo), np.where(neg, strict_lo, strict_hi)
        a64 = np.abs(mid)
        c, _ = fmt.round_ulp(a64)
        ok = np.isfinite(c) & (lo <= hi)
        c = np.where(ok, c, 0.0)

        def check(c):
            uc = fmt.ulp(c)
            cq, ucq = c.astype(q), uc.astype(q)
            DL, DH = (alo - cq) / ucq, (ahi - cq) / ucq
            dl, dh = _down(DL), _up(DH)
            pow2 = (c > fmt.tiny) & (np.frexp(c)[0] == 0.5)
            edge = np.where(pow2, -0.25, -0.5)
            # decided on the exact quad values (their float64 bounds may sit on the edges)
            rounds = ((DL > edge) | ((DL == edge) & s_lo)) & ((DH < 0.5) | ((DH == 0.5) & s_hi))
            below = (DH < 0) | ((DH == 0) & s_hi)
            half = pow2 & below
            decided = rounds & (~pow2 | (DL >= 0) | below)
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
        # ulp / |r| with |r| in [max(alo, 0), ahi] (an interval holding 0 leaves qhi infinite)
        uq = ulp.astype(q)
        pos_hi, pos_lo = ahi > 0, alo > 0
        qlo = np.where(pos_hi, _down(uq / np.where(pos_hi, ahi, 1.0)), np.inf)
        qhi = np.where(pos_lo, _up(uq / np.where(pos_lo, alo, 1.0)), np.inf)
    return RefData(rounded, ulp, dlo, dhi, qlo, qhi, decided, np.ones_like(decided))


#: Elements per block of the fast path: big enough for numpy, small enough for the cache.
BLOCK = 1 << 17


def fast_reference(fmt: Format, x: np.ndarray, target: np.ndarray, tier: int = 0,
                   functions=None) -> dict[str, RefData]:
    """Vectorized reference with a proven error bound, in the working type of ``tier``.

    ``x``: (B, n) float64, exact values of the format. Elements whose bound does
    not decide the rounding have ``decided`` False. Works in blocks of rows so the
    cost stays linear in the number of elements.
    """
    x = np.asarray(x, dtype=np.float64)
    target = np.asarray(target)
    wt = tiers(fmt)[tier]
    rows = max(1, BLOCK // max(1, x.shape[-1]))
    if x.shape[0] <= rows:
        return _fast_block(fmt, x, target, wt, functions)
    parts = [_fast_block(fmt, x[i:i + rows], target[i:i + rows], wt, functions)
             for i in range(0, x.shape[0], rows)]
    return {f: RefData(*(np.concatenate([getattr(p[f], k) for p in parts])
                         for k in RefData.__dataclass_fields__)) for f in parts[0]}


def _pairwise_sum(e: np.ndarray) -> tuple[np.ndarray, int]:
    """Sum along the last axis by halving: (sums, depth). Every term meets at most ``depth`` =
    ceil(log2 n) roundings, so for non-negative terms |error| <= ((1 + u)^depth - 1) * sum."""
    depth = 0
    while e.shape[-1] > 1:
        if e.shape[-1] % 2:
            e = np.concatenate([e, np.zeros(e.shape[:-1] + (1,), dtype=e.dtype)], axis=-1)
        e = e[..., 0::2] + e[..., 1::2]
        depth += 1
    return e[..., 0], depth


def _diff_exact(x: np.ndarray, m: np.ndarray, wt) -> tuple[np.ndarray, np.ndarray]:
    """(d = x - m in the working type, d exact). float64 and long double round correctly, so
    TwoSum (Knuth) gives the exact rounding error; for quad the difference of two float64 is
    exact when their exponents are at most 59 apart (113 bits hold it)."""
    if _is_quad(wt):
        d = x.astype(wt) - m.astype(wt)
        ex, em = np.frexp(x)[1], np.frexp(m)[1]
        return d, (x == 0) | (m == 0) | (np.abs(ex - em) <= 59)
    xw, mw = x.astype(wt), m.astype(wt)
    d = xw - mw
    bb = d - xw
    return d, ((xw - (d - bb)) + (-mw - bb)) == 0


class _Rows:
    """A batch's row quantities in one working type, shared by all the row's elements.

    m = max (float64, exact), k its first argmax, t = sum_{i != k} exp(x_i - m) and
    lp = log1p(t) in the working type with rigorous bounds et, elp on their errors.
    """

    def __init__(self, x: np.ndarray, wt):
        wt = np.dtype(wt)
        self.wt = wt
        n = x.shape[-1]
        self.u = u = 2.0**-113 if _is_quad(wt) else float(np.finfo(wt).eps) / 2
        # bound on the library's exp/log1p/expm1 relative error: 16 ulp for numpy's float64 and
        # long double (libm); SLEEF documents 1.0 ULP for its quad functions: 4 taken
        self.c_lib = (4 if _is_quad(wt) else 16) * u
        tiny = _tiny(wt)
        with np.errstate(all="ignore"):
            self.m = np.max(x, axis=-1)
            self.k = np.argmax(x, axis=-1)
            d, d_exact = _diff_exact(x, self.m[..., None], wt)
            e = np.exp(d)  # relative error <= c_lib (+ u |d| where d was rounded, + tiny absolute)
            np.put_along_axis(e, self.k[..., None], 0, axis=-1)
            t, depth = _pairwise_sum(e)
            rounded_d = np.where(d_exact, 0.0, np.abs(x - self.m[..., None]))
            rel_e = np.max(rounded_d, axis=-1) * (u * 1.01) + self.c_lib
            self.t = t
            self.et = t * ((rel_e + depth * u) * 1.01) + n * tiny
            lp = np.log1p(t)
            self.lp = lp
            self.elp = self.et / (1.0 + np.maximum(t - self.et, 0)) + self.c_lib * lp + tiny

    _ARRAYS = ("m", "k", "t", "et", "lp", "elp")

    @classmethod
    def empty(cls, B: int, like: _Rows) -> _Rows:
        """Room for B rows of the working type of ``like``."""
        r = cls.__new__(cls)
        r.wt, r.u, r.c_lib = like.wt, like.u, like.c_lib
        for a in cls._ARRAYS:
            setattr(r, a, np.zeros(B, dtype=getattr(like, a).dtype))
        return r

    def put(self, rows, other: _Rows) -> None:
        for a in self._ARRAYS:
            getattr(self, a)[rows] = getattr(other, a)


def _fast_values(fmt: Format, rows: _Rows, n: int, d, d_exact, ri, functions, target=None) -> dict:
    """RefData of ``functions`` for elements (d = x - m, d_exact) of rows ``ri`` (arrays
    broadcast together), from the shared row quantities. Per-vector functions (logsumexp,
    cross_entropy) take ri as the rows themselves and ignore d; n is the vectors' length."""
    u, c_lib = rows.u, rows.c_lib
    lp, elp, m = rows.lp[ri], rows.elp[ri], rows.m[ri]
    n_ok = n >= 2
    out = {}
    with np.errstate(all="ignore"):
        if "logsumexp" in functions:
            L = m.astype(rows.wt) + lp
            out["logsumexp"] = _from_interval(fmt, L, 2 * (elp + u * np.abs(L)), lower=m if n_ok else None)
        if "cross_entropy" in functions:
            dt, dt_exact = target
            ce = lp - dt
            out["cross_entropy"] = _from_interval(
                fmt, ce, 2 * (elp + np.abs(dt) * u + u * np.abs(ce)),
                lower=np.where(dt_exact, -dt, -np.inf).astype(rows.wt) if n_ok else None)
        if "log_softmax" in functions or "softmax" in functions:
            ad = np.where(d_exact, 0, np.abs(d))
            ls = d - lp
            els = ad * u + elp + u * np.abs(ls)
            if "log_softmax" in functions:
                out["log_softmax"] = _from_interval(
                    fmt, ls, 2 * els, upper=np.where(d_exact, d, np.inf).astype(rows.wt) if n_ok else None)
            if "softmax" in functions:
                sm = np.exp(ls)
                out["softmax"] = _from_interval(fmt, sm, 2 * (sm * (np.expm1(els) * 1.01 + c_lib)),
                                                upper=rows.wt.type(1.0) if n_ok else None)
    return out


def _fast_block(fmt: Format, x: np.ndarray, target: np.ndarray, wt=None, functions=None) -> dict:
    """Every element of the rows x (float64, values of the format) in the working type wt."""
    x = np.asarray(x)
    wt = x.dtype if wt is None else wt
    x = x.astype(np.float64)
    functions = FUNCTIONS if functions is None else functions
    rows = _Rows(x, wt)
    B = x.shape[0]
    ri = np.arange(B)
    out = {}
    if any(f in functions for f in ("softmax", "log_softmax")):
        d, d_exact = _diff_exact(x, rows.m[:, None], rows.wt)
        out.update(_fast_values(fmt, rows, x.shape[-1], d, d_exact, ri[:, None],
                                [f for f in functions if f in ("softmax", "log_softmax")]))
    scal = [f for f in functions if f in ("logsumexp", "cross_entropy")]
    if scal:
        tg = np.asarray(target).astype(np.int64)
        xt = np.take_along_axis(x, tg[:, None], axis=-1)[:, 0]
        dt, dt_exact = _diff_exact(xt, rows.m, rows.wt)
        res = _fast_values(fmt, rows, x.shape[-1], None, None, ri, scal, target=(dt, dt_exact))
        out.update(res)
    return {f: out[f] for f in FUNCTIONS if f in out}


# ------------------------------------------------------- per-element escalation
def _empty_ref(shape) -> RefData:
    nan = lambda: np.full(shape, np.nan)  # noqa: E731
    return RefData(nan(), nan(), nan(), nan(), nan(), nan(), np.zeros(shape, dtype=bool),
                   np.ones(shape, dtype=bool))


def _shape(f: str, B: int, n: int) -> tuple:
    return (B, n) if f in ("softmax", "log_softmax") else (B,)


class Escalation:
    """The reference of a batch, decided element by element through the tiers.

    The first tier computes every element of every row (``x``: (B, n) float64 values of the
    format) in float64 (or quad for float64 targets). An element whose bound does not decide
    its rounding -- or whose figures the caller could not settle (:meth:`bump`) -- goes one
    tier up alone: the row's quantities (max, sum, log1p of the sum) are computed once per
    tier for the rows that need them and shared by the row's elements; at the last tier
    mpmath encloses only the elements still open (its row sum is still over the whole row).
    ``mode="mpmath"`` sends every element to mpmath. ``ref``: {function: RefData};
    ``level``: {function: the tier of each element}; :meth:`stats` counts them.
    """

    def __init__(self, fmt: Format, x, target, functions=None, mode: str = "auto"):
        self.fmt = fmt
        self.x = np.asarray(x, dtype=np.float64)
        self.target = np.asarray(target).astype(np.int64)
        B, n = self.x.shape
        self.functions = tuple(f for f in FUNCTIONS if functions is None or f in functions)
        self.tiers = tiers(fmt) if mode != "mpmath" else ()
        self.mp = len(self.tiers)
        self.ref = {f: _empty_ref(_shape(f, B, n)) for f in self.functions}
        self.level = {f: np.zeros(_shape(f, B, n), dtype=np.int8) for f in self.functions}
        self._rows: dict = {}  # tier -> (rows computed (B,) bool, _Rows over the whole batch)
        self.mp_rows = 0  # rows whose sum mpmath computed
        if self.mp == 0:
            self._mpmath({f: np.ones(self.level[f].shape, dtype=bool) for f in self.functions})
        else:
            step = max(1, BLOCK // max(1, n))
            for i in range(0, B, step):
                part = _fast_block(fmt, self.x[i:i + step], self.target[i:i + step], self.tiers[0],
                                   self.functions)
                for f in self.functions:
                    self.ref[f].put(slice(i, i + step), part[f])
        self.decide()

    def undecided(self) -> dict:
        return {f: ~r.decided for f, r in self.ref.items()}

    def decide(self) -> None:
        """Raise every undecided element until its tier decides it (or mpmath's limit)."""
        while self.bump(self.undecided()):
            pass

    def bump(self, masks: dict) -> bool:
        """Recompute the masked elements ({function: bool array}) one tier up; False when
        none could move (all at the last tier)."""
        moved = False
        for t in range(self.mp):
            sel = {f: m & (self.level[f] == t) for f, m in masks.items() if f in self.ref}
            sel = {f: m for f, m in sel.items() if m.any()}
            if not sel:
                continue
            moved = True
            if t + 1 < self.mp:
                self._fast(t + 1, sel)
            else:
                self._mpmath(sel)
            for f, m in sel.items():
                self.level[f][m] = t + 1
        return moved

    def _rows_at(self, t: int, need: np.ndarray) -> _Rows:
        B = self.x.shape[0]
        have, rows = self._rows.get(t, (np.zeros(B, dtype=bool), None))
        todo = np.nonzero(need & ~have)[0]
        if todo.size:
            new = _Rows(self.x[todo], self.tiers[t])
            if rows is None:
                rows = _Rows.empty(B, new)
            rows.put(todo, new)
            have = have.copy()
            have[todo] = True
            self._rows[t] = (have, rows)
        return rows

    def _fast(self, t: int, sel: dict) -> None:
        B, n = self.x.shape
        need = np.zeros(B, dtype=bool)
        for m in sel.values():
            need |= m if m.ndim == 1 else m.any(axis=-1)
        rows = self._rows_at(t, need)
        for f, m in sel.items():
            if m.ndim == 2:
                bi, ji = np.nonzero(m)
                d, d_exact = _diff_exact(self.x[bi, ji], rows.m[bi], rows.wt)
                new = _fast_values(self.fmt, rows, n, d, d_exact, bi, (f,))[f]
                self.ref[f].put((bi, ji), new)
            else:
                bi = np.nonzero(m)[0]
                dt, dt_exact = _diff_exact(self.x[bi, self.target[bi]], rows.m[bi], rows.wt)
                new = _fast_values(self.fmt, rows, n, None, None, bi, (f,), target=(dt, dt_exact))[f]
                self.ref[f].put(bi, new)

    def _mpmath(self, sel: dict) -> None:
        fmt = self.fmt
        rows = set()
        for m in sel.values():
            rows.update(np.nonzero(m if m.ndim == 1 else m.any(axis=-1))[0].tolist())
        start = start_prec(fmt)
        for b in sorted(rows):
            wanted = {f: (np.nonzero(m[b])[0].tolist() if m.ndim == 2 else [0])
                      for f, m in sel.items() if m[b].any()}
            row, tgt = self.x[b], int(self.target[b])
            flat_f = [(f, j) for f, js in wanted.items() for j in js]

            def compute(prec, row=row, tgt=tgt, wanted=wanted):
                vals = _enclose(row, tgt, prec, fmt.p, wanted)
                return [v for f in wanted for v in vals[f]]

            vals, settled = escalate(fmt, compute, start=start, done=lambda iv: _decided(fmt, iv))
            self.mp_rows += 1
            for (f, j), iv, ok in zip(flat_f, vals, settled):
                idx = (b, j) if sel[f].ndim == 2 else b
                rounded, ulp, dlo, dhi, qlo, qhi, _ = _interval_point(fmt, iv, ok)
                r = self.ref[f]
                r.rounded[idx], r.ulp[idx], r.dlo[idx], r.dhi[idx] = rounded, ulp, dlo, dhi
                r.qlo[idx], r.qhi[idx] = qlo, qhi
                r.decided[idx], r.determined[idx] = True, bool(ok)

    def stats(self) -> dict:
        """{"elements": per tier (the last is mpmath), "mpmath_rows": rows mpmath summed}."""
        counts = np.zeros(self.mp + 1, dtype=np.int64)
        for lv in self.level.values():
            counts += np.bincount(lv.ravel(), minlength=self.mp + 1)
        return {"elements": counts.tolist(), "mpmath_rows": self.mp_rows}


# ------------------------------------------------------------- mpmath path
def _mp():
    import mpmath  # lazily: importing mpmath costs more than all of numstab

    return mpmath


def _exact_raw(x_row, target: int, prec: int) -> dict[str, list]:
    """All reference values of one vector as raw mpmath tuples, rounded to nearest at ``prec``.

    An approximation (no error bound): the figures use :func:`_enclose`, which
    brackets every value rigorously. Kept for exploration and tests.
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
    """All reference values of one vector as mpf at working precision ``prec`` (nearest, no bound)."""
    make = _mp().mp.make_mpf
    return {f: [make(v) for v in vals] for f, vals in _exact_raw(x_row, target, prec).items()}


def _mag(v) -> int:
    """floor(log2 |v|) + 1 of a nonzero raw mpf."""
    return int(v[2]) + int(v[3])


def _log1p_down(t, wp: int):
    """A lower bound of log1p(t) for a raw mpf t >= 0, relative error about 2^-wp."""
    from mpmath.libmp import fone, fzero, mpf_add, mpf_log, mpf_mul, mpf_shift, mpf_sub

    if not t[1]:
        return fzero
    mag = _mag(t)
    if mag < -wp - 2:  # log1p(t) >= t - t^2/2 for t >= 0
        return mpf_sub(t, mpf_shift(mpf_mul(t, t, wp, "c"), -1), wp, "f")
    return mpf_log(mpf_add(fone, t, wp + max(0, -mag) + 10, "f"), wp, "f")


def _log1p_up(t, wp: int):
    """An upper bound of log1p(t) for a raw mpf t >= 0: t itself when t is tiny (log1p(t) <= t)."""
    from mpmath.libmp import fone, fzero, mpf_add, mpf_log

    if not t[1]:
        return fzero
    mag = _mag(t)
    if mag < -wp - 2:
        return t
    return mpf_log(mpf_add(fone, t, wp + max(0, -mag) + 10, "c"), wp, "c")


def _enclose(x_row, target: int, prec: int, fmt_p: int = 64, wanted=None) -> dict[str, list]:
    """Rigorous enclosures of every reference value of one vector: raw mpf (lo, hi, lo_dec,
    hi_dec), lo <= r <= hi, the rounding and ulp read at lo_dec and hi_dec (see :func:`_strict`;
    ``fmt_p`` the target format's precision). ``wanted``: {function: element indices} to
    enclose only those (0 for a per-vector function; the lists come back in that order);
    None for every value of every function.

    With d_i = x_i - m exact and e_i = exp(d_i), S = 1 + t: every step rounds
    outward (mpmath's directed rounding, the way its own interval arithmetic
    does), sums are pairwise ``mpf_add`` (``mpf_sum`` drops far-away terms even
    when rounding up). softmax_i = e_i / S; with all elements equal the exps are
    exactly 1 and the enclosure is a point where 1/n is exact (n a power of two),
    the only rational softmax values (Lindemann-Weierstrass). log_softmax of n = 1
    is the point 0; every other value is irrational and its enclosure shrinks
    about like 2^-prec (relative), so the escalation always ends. x_i - m may need
    many more bits than ``prec`` (x = [1e38, 0.25]); exp of an exact d keeps its
    relative accuracy whatever |d|. Equal inputs share one exp: t adds count * exp(d)
    (the product rounded outward too).
    """
    from mpmath.libmp import (
        fone,
        from_float,
        from_int,
        fzero,
        mpf_add,
        mpf_div,
        mpf_exp,
        mpf_mul,
        mpf_neg,
        mpf_sub,
    )

    x_row = np.asarray(x_row, dtype=np.float64)
    n = len(x_row)
    k = int(np.argmax(x_row))
    m = from_float(float(x_row[k]))  # exact
    wp = prec + 10
    vals, inv, counts = np.unique(x_row, return_inverse=True, return_counts=True)
    counts[inv[k]] -= 1  # the max itself is outside t
    exps = {}
    tlo = thi = fzero
    for v, c in zip(vals.tolist(), counts.tolist()):
        dv = mpf_sub(from_float(v), m, 0)  # precision 0: exact
        a, b = mpf_exp(dv, wp, "f"), mpf_exp(dv, wp, "c")
        exps[v] = (dv, a, b)
        if c:
            if c > 1:
                a, b = mpf_mul(a, from_int(c), wp, "f"), mpf_mul(b, from_int(c), wp, "c")
            tlo = mpf_add(tlo, a, wp, "f")
            thi = mpf_add(thi, b, wp, "c")
    lplo, lphi = _log1p_down(tlo, wp), _log1p_up(thi, wp)
    slo, shi = mpf_add(fone, tlo, wp, "f"), mpf_add(fone, thi, wp, "c")
    all_j = range(n)
    want = {f: (list(all_j) if f in ("softmax", "log_softmax") else [0]) for f in FUNCTIONS} \
        if wanted is None else wanted

    def elem(j):
        if j == k:
            return fzero, fone, fone
        return exps[float(x_row[j])]

    dt = mpf_sub(from_float(float(x_row[int(target)])), m, 0)
    strict = n >= 2  # t > 0 exactly: L > m, log_softmax_i < d_i, softmax_i < 1, cross_entropy > -d_target
    out = {}
    for f, js in want.items():
        if f == "logsumexp":
            iv = (mpf_add(m, lplo, prec, "f"), mpf_add(m, lphi, prec, "c"))
            out[f] = [_strict(*iv, low=m, p=fmt_p) if strict else iv + iv]
        elif f == "cross_entropy":
            iv = (mpf_sub(lplo, dt, prec, "f"), mpf_sub(lphi, dt, prec, "c"))
            out[f] = [_strict(*iv, low=mpf_neg(dt), p=fmt_p) if strict else iv + iv]
        elif f == "log_softmax":
            res = []
            for j in js:
                di = elem(j)[0]
                iv = (mpf_sub(di, lphi, prec, "f"), mpf_sub(di, lplo, prec, "c"))
                res.append(_strict(*iv, high=di, p=fmt_p) if strict else iv + iv)
            out[f] = res
        elif f == "softmax":
            res = []
            for j in js:
                _, a, b = elem(j)
                iv = (mpf_div(a, shi, prec, "f"), mpf_div(b, slo, prec, "c"))
                res.append(_strict(*iv, high=fone, p=fmt_p) if strict else iv + iv)
            out[f] = res
    return out


def _strict(lo, hi, low=None, high=None, p: int = 64) -> tuple:
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
        hi_dec = mpf_sub(high, mpf_shift((0, 1, 0, 1), _mag(high) - p - 64), 0)
    if low is not None and low[1] and mpf_cmp(lo, low) <= 0:
        lo = low
        lo_dec = mpf_sub(low, mpf_shift((1, 1, 0, 1), _mag(low) - p - 64), 0)
    return lo, hi, lo_dec, hi_dec


def _flat_enclose(fmt: Format, x_row, target: int, prec: int) -> list:
    vals = _enclose(x_row, target, prec, fmt.p)
    return [v for f in FUNCTIONS for v in vals[f]]


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


def _ulp_exp(fmt: Format, raw) -> int:
    return fmt.ulp_exponent_exact(int(raw[1]), int(raw[2]))


def _decided(fmt: Format, iv) -> bool:
    """The enclosure fixes the rounded value and the ulp (the binade of the exact value)."""
    lo, hi = iv[2], iv[3]
    return _same(round_mpf(fmt, lo), round_mpf(fmt, hi)) and _ulp_exp(fmt, lo) == _ulp_exp(fmt, hi)


def start_prec(fmt: Format) -> int:
    """First working precision of the escalation for this format: max(64, 2p + 32) bits."""
    return max(START_PREC, 2 * fmt.p + 32)


def escalate(fmt: Format, compute, start: int = START_PREC, max_prec: int = MAX_PREC, done=None):
    """Raise the working precision until every value is decided.

    ``compute(prec)`` returns a flat list. By default its items are mpf (or raw
    tuples) and a value counts as decided once its rounding to the format stops
    changing between two precisions (a heuristic kept for exploration); with
    ``done(item) -> bool`` (rigorous enclosures) an item is decided when ``done``
    says so, and the first precision already counts. Returns (values at the final
    precision, list of bools: settled) -- a value not decided at ``max_prec`` is
    reported as not settled instead of guessed.
    """
    prec = start
    if done is not None:
        while True:
            cur = compute(prec)
            ok = [done(v) for v in cur]
            if all(ok) or prec >= max_prec:
                return cur, ok
            prec *= 2
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


def _to_float_out(raw, up: bool) -> float:
    """The nearest float64 on the outer side of a raw mpf (to_float's own directed rounding
    is not outward in the subnormal range)."""
    from mpmath.libmp import from_float, mpf_cmp, to_float

    f = to_float(raw, rnd="c" if up else "f")
    if math.isfinite(f):
        c = mpf_cmp(from_float(f), raw)
        if up and c < 0:
            f = math.nextafter(f, math.inf)
        elif not up and c > 0:
            f = math.nextafter(f, -math.inf)
    return f


def _interval_point(fmt: Format, iv, settled: bool) -> tuple:
    """(rounded, ulp, dlo, dhi, qlo, qhi, settled) of an enclosure, in float64 terms.

    [dlo, dhi] holds (r - anchor) / ulp, rounded outward, where the anchor is the rounded
    value, or +-max when r rounds to an infinity (an exact value beyond the format's range
    keeps an exact ULP distance to any finite output that way); [qlo, qhi] holds ulp / |r|.
    An enclosure that is not decided is described by its lower end (``settled`` False).
    """
    from mpmath.libmp import from_float, fzero, mpf_abs, mpf_cmp, mpf_div, mpf_shift, mpf_sub

    lo, hi = iv[0], iv[1]
    rounded = round_mpf(fmt, iv[2])
    ue = _ulp_exp(fmt, iv[2])
    ulp = math.ldexp(1.0, ue)
    anchor = from_float(rounded if math.isfinite(rounded) else (-fmt.max if lo[0] else fmt.max))
    dlo = _to_float_out(mpf_shift(mpf_sub(lo, anchor, 64, "f"), -ue), False)
    dhi = _to_float_out(mpf_shift(mpf_sub(hi, anchor, 64, "c"), -ue), True)
    if mpf_cmp(lo, fzero) > 0:
        alo, ahi = lo, hi
    elif mpf_cmp(hi, fzero) < 0:
        alo, ahi = mpf_abs(hi), mpf_abs(lo)
    else:  # the enclosure holds 0
        a, b = mpf_abs(lo), mpf_abs(hi)
        alo, ahi = fzero, (a if mpf_cmp(a, b) >= 0 else b)
    fu = from_float(ulp)
    qlo = math.inf if not ahi[1] else _to_float_out(mpf_div(fu, ahi, 64, "f"), False)
    qhi = math.inf if not alo[1] else _to_float_out(mpf_div(fu, alo, 64, "c"), True)
    return rounded, ulp, dlo, dhi, qlo, qhi, settled


def mp_reference(fmt: Format, x: np.ndarray, target: np.ndarray) -> dict[str, RefData]:
    """The authority: per vector, rigorous mpmath enclosures with precision escalation."""
    x = np.asarray(x, dtype=np.float64)
    B, n = x.shape
    shape = {"softmax": (B, n), "log_softmax": (B, n), "logsumexp": (B,), "cross_entropy": (B,)}
    cols = {f: np.empty(shape[f] + (7,), dtype=np.float64) for f in FUNCTIONS}
    start = start_prec(fmt)
    done = lambda iv: _decided(fmt, iv)  # noqa: E731
    for b in range(B):
        row, tgt = x[b], int(target[b])
        vals, settled = escalate(fmt, lambda prec, row=row, tgt=tgt: _flat_enclose(fmt, row, tgt, prec),
                                 start=start, done=done)
        i = 0
        for f in FUNCTIONS:
            size = n if f in ("softmax", "log_softmax") else 1
            pts = [_interval_point(fmt, vals[i + j], settled[i + j]) for j in range(size)]
            i += size
            cols[f][b] = np.array(pts).reshape(cols[f][b].shape)
    out = {}
    for f in FUNCTIONS:
        c = cols[f]
        rounded, ulp, dlo, dhi, qlo, qhi, settled = (c[..., j].copy() for j in range(7))
        determined = settled.astype(bool)
        out[f] = RefData(rounded, ulp, dlo, dhi, qlo, qhi, np.ones_like(determined), determined)
    return out


def _decimal_cell(v: Fraction, digits: int) -> tuple[int, int]:
    """(k, e) with k * 10^(e - digits + 1) the value v > 0 rounded to ``digits`` significant
    digits (to nearest, ties to even), e = floor(log10 v) -- of the rounded value."""
    e = math.floor((v.numerator.bit_length() - v.denominator.bit_length()) * 0.30102999566398) - 1
    while Fraction(10) ** (e + 1) <= v:
        e += 1
    while Fraction(10) ** e > v:
        e -= 1
    k = round(v / Fraction(10) ** (e - digits + 1))
    if k == 10**digits:
        k, e = 10 ** (digits - 1), e + 1
    return k, e


#: Beyond this many bits of binary exponent a value goes through mpmath's interval logs
#: instead of exact rationals.
_FRACTION_BITS = 1 << 14


def _frac(raw) -> Fraction:
    sign, man, exp, _ = raw
    v = Fraction(int(man)) * Fraction(2) ** int(exp)
    return -v if sign else v


def _iv_decimal_cell(lo, hi, digits: int, prec: int):
    """(k, e) as :func:`_decimal_cell` for every value of [lo, hi] (raw mpf, > 0, astronomic
    exponents), from mpmath's interval logarithms; None where the interval straddles a cell."""
    from mpmath.libmp import from_int, mpf_abs, mpf_cmp, mpf_sub, to_int

    mpmath = _mp()
    iv = mpmath.iv
    bits = max(abs(_mag(lo)), abs(_mag(hi))).bit_length()
    saved = iv.prec
    half = (0, 1, -1, 1)
    try:
        iv.prec = prec + bits + 32
        v = iv.mpf((mpmath.mp.make_mpf(lo), mpmath.mp.make_mpf(hi)))  # exact ends
        L = iv.log(v) / iv.log(10)
        e_lo, e_hi = (to_int(end, "f") for end in L._mpi_)
        if e_lo != e_hi:
            return None
        sa, sb = (iv.exp((L - e_lo + digits - 1) * iv.log(10)))._mpi_
        k_lo, k_hi = to_int(sa, "n"), to_int(sb, "n")
        if k_lo != k_hi or any(mpf_cmp(mpf_abs(mpf_sub(end, from_int(k_lo), 0)), half) >= 0
                               for end in (sa, sb)):
            return None
    finally:
        iv.prec = saved
    if k_lo == 10**digits:
        k_lo, e_lo = 10 ** (digits - 1), e_lo + 1
    return k_lo, e_lo


def _cell(lo, hi, digits: int, prec: int):
    """The common decimal cell of the raw mpf interval [lo, hi] (0 < lo <= hi), or None."""
    if max(abs(_mag(lo)), abs(_mag(hi))) < _FRACTION_BITS:
        a = _decimal_cell(_frac(lo), digits)
        return a if (lo == hi or a == _decimal_cell(_frac(hi), digits)) else None
    if (_mag(lo) > 0) != (_mag(hi) > 0):
        return None
    return _iv_decimal_cell(lo, hi, digits, prec)


def _figure(fmt: Format, lo, hi, relative: bool, prec: int):
    """The quantized figure (metrics.quantize / quantize_rel) shared by every value of [lo, hi].

    lo, hi: raw mpf bounds (0 <= lo <= hi) of an exact ULP or relative error. Returns a
    float, a Decimal where the figure is beyond float64's range, or None where the
    bounds straddle a quantization step. Steps are decided exactly (rationals).
    """
    from decimal import Decimal

    from mpmath.libmp import fone, from_float, fzero, mpf_cmp, mpf_mul

    from .metrics import figure_value

    if not hi[1] or _mag(hi) < -70:  # below 2^-70: 0 as ULP figure (< 0.0005) and as relative one
        return 0.0
    if lo[1] and _mag(lo) < -70:
        lo = fzero
    if relative:
        small = from_float(fmt.eps / 1024)
        below = mpf_cmp(hi, small) < 0
        if below or mpf_cmp(lo, small) < 0:
            return 0.0 if below else None
    else:
        below = mpf_cmp(hi, fone) < 0
        if below or mpf_cmp(lo, fone) < 0:
            if not below:
                return None
            a = round(_frac(mpf_mul(lo, from_float(1000.0))))
            b = round(_frac(mpf_mul(hi, from_float(1000.0)))) if hi != lo else a
            return figure_value(a, -1) if a == b else None
    if not lo[1]:
        return None
    c = _cell(lo, hi, 3, prec)
    if c is None:
        return None
    v = figure_value(*c)
    return v if math.isfinite(v) else Decimal(c[0]).scaleb(c[1] - 2)


def _error_bounds(fmt: Format, iv, y: float, prec: int):
    """Raw mpf bounds of the exact ULP error |y - r| / ulp and relative error |y - r| / |r|,
    r in the enclosure iv (decided: one ulp). The relative bounds are None where |r| may
    be 0; r = 0 exactly gives the infinite relative error of a nonzero y."""
    from mpmath.libmp import finf, from_float, fzero, mpf_abs, mpf_cmp, mpf_div, mpf_shift, mpf_sub

    lo, hi = iv[0], iv[1]
    yf = from_float(y)
    wp = prec + 64
    if lo == hi and max(abs(_mag(lo)), abs(_mag(yf))) < _FRACTION_BITS:
        a = b = mpf_sub(yf, lo, 0)  # exact
    else:
        a, b = mpf_sub(yf, hi, wp, "f"), mpf_sub(yf, lo, wp, "c")
    if mpf_cmp(a, fzero) >= 0:
        dlo, dhi = a, b
    elif mpf_cmp(b, fzero) <= 0:
        dlo, dhi = mpf_abs(b), mpf_abs(a)
    else:
        a, b = mpf_abs(a), mpf_abs(b)
        dlo, dhi = fzero, (a if mpf_cmp(a, b) >= 0 else b)
    ue = _ulp_exp(fmt, iv[2])
    ulp_b = (mpf_shift(dlo, -ue), mpf_shift(dhi, -ue))
    if not lo[1] and not hi[1]:  # r = 0
        return ulp_b, (fzero, fzero) if not dhi[1] else (finf, finf)
    if mpf_cmp(lo, fzero) > 0:
        alo, ahi = lo, hi
    elif mpf_cmp(hi, fzero) < 0:
        alo, ahi = mpf_abs(hi), mpf_abs(lo)
    else:
        return ulp_b, None
    if lo == hi and dlo == dhi:  # exact: the quotient as a rational, rounded outward to wp bits
        q = _frac(dlo) / _frac(alo) if max(abs(_mag(alo)), abs(_mag(dlo) if dlo[1] else 0)) \
            < _FRACTION_BITS else None
        if q is not None and q.denominator & (q.denominator - 1) == 0:  # dyadic: exact
            from mpmath.libmp import from_man_exp

            e = q.denominator.bit_length() - 1
            p = from_man_exp(q.numerator, -e)
            return ulp_b, (p, p)
    return ulp_b, (mpf_div(dlo, ahi, wp, "f"), mpf_div(dhi, alo, wp, "c"))


def exact_figures(fmt: Format, x_row, target: int, function: str, items, max_prec: int = MAX_PREC,
                  start: int | None = None):
    """Quantized (ULP, relative) figures of outputs, decided exactly: for each (j, y) of
    ``items`` (element j of ``function`` on the vector, y its finite output) the pair of
    figures of :func:`metrics.element_metrics` computed from the exact reference: the
    enclosure is refined until both ends of each error give one figure. A figure is a
    float, or a Decimal where it is beyond float64's range (inf as a float). None for an
    item the precision limit could not decide (it is never guessed).
    """
    out: list = [None] * len(items)
    todo = list(range(len(items)))
    prec = start or start_prec(fmt)
    while todo and prec <= max_prec:
        js = sorted({items[i][0] for i in todo})
        pos = {j: q for q, j in enumerate(js)}
        vals = _enclose(x_row, target, prec, fmt.p, {function: js})[function]
        left = []
        for i in todo:
            j, y = items[i]
            iv = vals[pos[j]]
            if not _decided(fmt, iv):
                left.append(i)
                continue
            ub, rb = _error_bounds(fmt, iv, float(y), prec)
            u = _figure(fmt, *ub, False, prec)
            if rb is not None and rb[0][1] == 0 and rb[0][2] != 0:  # infinite: r = 0, y != 0
                r = math.inf
            else:
                r = None if rb is None else _figure(fmt, *rb, True, prec)
            if u is None or r is None:
                left.append(i)
            else:
                out[i] = (u, r)
        todo = left
        prec *= 2
    return out


def _decimal_text(k: int, e: int, digits: int, sign: bool) -> str:
    """mpmath.nstr's layout (min_fixed=-6, max_fixed=12, trailing zeros stripped) of
    k * 10^(e - digits + 1)."""
    ds = str(k)
    if -6 < e < 12:
        if e < 0:
            ds, split = "0" * -e + ds, 1
        else:
            split = e + 1
            if split > digits:
                ds += "0" * (split - digits)
        exponent = 0
    else:
        split, exponent = 1, e
    ds = (ds[:split] + "." + ds[split:]).rstrip("0")
    if ds.endswith("."):
        ds += "0"
    s = ("-" if sign else "") + ds
    if exponent == 0:
        return s
    return s + ("e+" if exponent > 0 else "e") + str(exponent)


def _string(iv, digits: int, prec: int):
    """The ``digits``-digit decimal of every value in the enclosure, or None (not decided yet)."""
    from mpmath.libmp import fzero, mpf_abs, mpf_cmp

    lo, hi = iv[0], iv[1]
    if not lo[1] and not hi[1]:
        return "0.0"
    if mpf_cmp(lo, fzero) > 0:
        sign, a, b = False, lo, hi
    elif mpf_cmp(hi, fzero) < 0:
        sign, a, b = True, mpf_abs(hi), mpf_abs(lo)
    else:
        return None
    c = _cell(a, b, digits, prec)
    return None if c is None else _decimal_text(*c, digits, sign)


def exact_strings(fmt: Format, x_row, target: int, digits: int = 25) -> dict[str, list]:
    """Decimal strings of the exact values of one vector (``digits`` significant digits, every
    one of them right: the enclosure is refined until its two ends give the same string;
    None where the precision limit is reached first)."""
    flat_f = [f for f in FUNCTIONS for _ in range(len(x_row) if f in ("softmax", "log_softmax") else 1)]
    start = max(start_prec(fmt), 4 * digits)
    strings: dict = {}

    def done(item):
        i, iv, prec = item
        if i not in strings:
            s = _string(iv, digits, prec)
            if s is not None:
                strings[i] = s
        return i in strings

    def compute(prec):
        return [(i, iv, prec) for i, iv in enumerate(_flat_enclose(fmt, x_row, target, prec))]

    escalate(fmt, compute, start=start, done=done)
    out = {f: [] for f in FUNCTIONS}
    for i, f in enumerate(flat_f):
        out[f].append(strings.get(i))
    return out


def verify_rows(fmt: Format, x: np.ndarray, target: np.ndarray, ref: dict, rows, outcomes=()) -> list[str]:
    """Recompute the given rows at twice the escalation's final precision; list disagreements.

    For every determined element of every function, whichever path (fast or mpmath)
    produced it: the enclosure at that precision must be decided and give the same
    rounded value and the same ulp, and its bounds on (r - rounded) / ulp and on
    ulp / |r| must meet the reference's. With ``outcomes`` (objects with ``impl.function``,
    ``y``, ``ulp``, ``rel``, ``status`` and ``figure(kind, index)``, as runner.ImplOutcome),
    the quantized ULP and relative figures of every finite output of those rows are
    recomputed exactly from that precision and must be the reported ones (so the status,
    which follows from them and the rounded value, agrees too).
    """
    bad = []
    for b in rows:
        prec = 2 * _final_prec(fmt, x[b], int(target[b]))
        vals = _enclose(x[b], int(target[b]), prec, fmt.p)
        where_v = f"vector {list(map(float, x[b]))[:8]}"
        for f in FUNCTIONS:
            if f not in ref:
                continue
            r = ref[f]
            for j, iv in enumerate(vals[f]):
                idx = (b, j) if r.rounded.ndim == 2 else (b,)
                if not r.determined[idx]:
                    continue
                rounded, ulp, dlo, dhi, qlo, qhi, ok = _interval_point(fmt, iv, _decided(fmt, iv))
                got = (float(r.rounded[idx]), float(r.ulp[idx]))
                where = f"{f} of {where_v} element {j}"
                if not ok:
                    bad.append(f"{where}: not decided at {prec} bits")
                elif not _same(rounded, got[0]) or ulp != got[1]:
                    bad.append(f"{where}: reference {got[0]!r} (ulp {got[1]!r}), at {prec} bits "
                               f"{rounded!r} (ulp {ulp!r})")
                elif not (float(r.dlo[idx]) <= dhi and dlo <= float(r.dhi[idx])
                          and float(r.qlo[idx]) <= qhi and qlo <= float(r.qhi[idx])):
                    bad.append(f"{where}: reference bounds [{float(r.dlo[idx])!r}, "
                               f"{float(r.dhi[idx])!r}] ULP miss [{dlo!r}, {dhi!r}] at {prec} bits")
        for o in outcomes:
            f = o.impl.function
            if o.y is None:
                continue
            yb = np.atleast_1d(o.y[b])
            idxs = [(b, j) if o.y.ndim == 2 else (b,) for j in range(yb.size)]
            keep = [i for i in idxs if ref[f].determined[i] and np.isfinite(o.y[i])]
            items = [(i[-1] if len(i) == 2 else 0, float(o.y[i])) for i in keep]
            figs = exact_figures(fmt, x[b], int(target[b]), f, items, start=prec) if items else []
            for i, fig in zip(keep, figs):
                have = (o.figure("ulp", i), o.figure("rel", i))
                if fig is None or any(not _same_figure(a, w) for a, w in zip(have, fig)):
                    bad.append(f"{o.impl.key} on {where_v} element {i[-1]}: figures (ULP, relative) "
                               f"{have}, at {prec} bits {fig}")
    return bad


def _same_figure(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return _same(a, b)
    return str(a) == str(b)


def _final_prec(fmt: Format, x_row, target: int) -> int:
    """The precision at which the escalation decides every value of the vector."""
    prec = start_prec(fmt)
    while prec < MAX_PREC and not all(_decided(fmt, iv) for iv in _flat_enclose(fmt, x_row, target, prec)):
        prec *= 2
    return prec


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
