"""Exact formulas of the softmax family (numstab/functions/softmax.py): one enclosure per
vector gives softmax, log_softmax, logsumexp and cross_entropy at once.

For a vector x (already rounded to the target format, so exact in float64) with
m = max(x), k its first argmax and t = sum_{i != k} exp(x_i - m):

    logsumexp     L   = m + log1p(t)
    log_softmax_i     = (x_i - m) - log1p(t)      (two non-positive terms)
    softmax_i         = exp(log_softmax_i)
    cross_entropy     = log1p(t) - (x_target - m) (two non-negative terms)

These forms never cancel (except L itself near 0), so one reference per input
vector serves every function and implementation. cross_entropy is computed only
when the batch's arguments hold a ``target``.

The contract of a formula module (numstab/reference/__init__.py reads it):
``FUNCTIONS`` the names it computes; ``fast_block(fmt, x, args)`` a proven bound in the
working type of x; ``enclose(x_row, args_row, prec, fmt_p, wanted=None)`` rigorous mpmath
enclosures; ``exact_raw(x_row, args_row, prec)`` (optional) nearest values without a bound;
and, for per-element escalation, ``fast_rows`` (a row's shared quantities in a working type)
and ``fast_elements`` (some elements' values from them).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..formats import Format
from ..results import RefData
from .core import (
    TINY,
    Affine,
    _mp,
    at,
    by_chunks,
    diff_exact,
    from_interval,
    is_quad,
    lib_error,
    log1p_down,
    log1p_up,
    log_tiny,
    pairwise_sum,
    recording,
    rows_exact,
    strict,
    tiny,
    unit_roundoff,
    up64,
)

FUNCTIONS = ("softmax", "log_softmax", "logsumexp", "cross_entropy")
#: This family computes f(x / T) with the exact quotient when the arguments hold ``scale`` (T, one
#: float64 per vector: a temperature held in the format), see :func:`enclose`.
SCALED = True
#: The fast tiers (:func:`fast_block`) read a -inf entry as an exact zero term of the sum: its
#: d = x - m is -inf exactly (core.diff_exact) and exp(d) = 0, so a vector whose masked entries are
#: left in place as -inf gets the bounds of its finite entries alone (at least two of them; the
#: values computed at the -inf entries are not read: the mask layer puts their limits there).
MASKED = True


def _target(args):
    t = args.get("target") if args else None
    return None if t is None else np.asarray(t)


def _scale(args):
    """The temperature T of each vector (``scale`` argument), or None (the plain function)."""
    s = args.get("scale") if args else None
    return None if s is None else np.asarray(s, dtype=np.float64)


def _over(d, d_exact, s, wt, u):
    """(d / s in the working type, its error bound) for d = x - m (``d_exact``: no rounding in it):
    the division rounds once (u |q|) and a rounded d carries its own u |d| / s (<= 1.01 u |q|)."""
    if s is None:
        return d, np.where(d_exact, 0, np.abs(d)) * u
    q = d / np.asarray(s).astype(wt)
    return q, np.abs(q) * (u * np.where(d_exact, 1.0, 2.02))


def fast_rows(fmt: Format, x: np.ndarray, args: dict, wt, keep: bool = False, m=None, k=None) -> dict:
    """The row quantities of the rows x (float64, (B, n)) in the working type wt, shared by
    every element of a row: m = max (exact), t = sum_{i != k} exp(x_i - m) (pairwise, error
    bound ``et``) and lp = log1p(t) (error bound ``elp``), arrays along the rows.

    ``keep`` (quad, unscaled, every d exact): also the elements' ``d`` = x - m and ``e`` = exp(d)
    (0 at the argmax ``k``), which :func:`fast_elements` then reads instead of computing them
    again (each quad operation costs about 30 ns an element).

    ``m``, ``k`` given (a piece of a long vector, :func:`piece_rows`): the vectors' maxima and the
    column of their first argmax in x, -1 where it lies outside x (no term left out here)."""
    n = x.shape[-1]
    u, c_lib, tny = unit_roundoff(wt), lib_error(wt), tiny(wt)
    sc = _scale(args)
    with np.errstate(all="ignore"):
        if m is None:
            m = np.max(x, axis=-1)
            k = np.argmax(x, axis=-1)
        dx = rows_exact(fmt, x, m, wt)  # (the usual rows: every d exact by their range alone)
        if dx is not None and dx.all():
            d, d_exact = x.astype(wt, copy=False) - m[..., None].astype(wt), np.ones(x.shape, dtype=bool)
        else:
            d, d_exact = diff_exact(x, m[..., None], wt)
        plain = sc is None and d_exact.all()
        if plain:  # every d exact (the usual case): no error in any d
            rel_e = np.full(m.shape, c_lib)  # = max(0) * 1.01 + c_lib, without the zeros
        else:
            d, err_d = _over(d, d_exact, None if sc is None else sc[..., None], wt, u)  # (x - m) / T
            # a term whose exp lies below the working type's range even with d's error (a -3.4e38
            # mask, whose d carries an absolute error of 1e22) is within tny of its exp: the n * tny
            # of et covers it, and its error is left out of the relative one, which it would ruin
            live = (d + err_d) > log_tiny(wt)
            rel_e = np.max(np.where(live, err_d.astype(np.float64), 0.0), axis=-1) * 1.01 + c_lib
        split = _split_sum(fmt, x, m, k, d, wt) if plain else None
        if split is not None:
            t, et = split
        else:
            e = np.exp(d)  # relative error <= c_lib (+ the error of d, + tiny absolute)
            _drop_argmax(e, k)
            t, depth = pairwise_sum(e)
            et = t * ((rel_e + depth * u) * 1.01) + n * tny
        lp = np.log1p(t)
        elp = et / (1.0 + np.maximum(t - et, 0)) + c_lib * lp + tny
    out = {"m": m, "lp": lp, "elp": elp, "t": t, "et": et}
    if dx is not None:
        out["dx"] = dx
    if keep and plain and is_quad(wt):
        out.update(d=d, e=e, k=k)
    return out


def _drop_argmax(e, k) -> None:
    """The term of each row's argmax k set to 0, in place (k = -1: a piece without its vector's
    argmax leaves none of its terms out)."""
    if np.all(k >= 0):
        np.put_along_axis(e, k[..., None], 0, axis=-1)
    else:
        b = np.nonzero(k >= 0)[0]
        e[b, k[b]] = 0


#: Rows at least this long have their long double sum split (:func:`_split_sum`)
SPLIT_MIN = 1024
#: ... at this term (exp(d) below it: summed in float64), where the small terms add up to at most
#: SPLIT_SHARE (of a sum 1 + t >= 1)
SPLIT_TERM, SPLIT_SHARE = 2.0**-20, 2.0**-12


def _split_sum(fmt, x, m, k, d, wt):
    """(t, et) of :func:`fast_rows` in long double (wt; every d = x - m exact) with the terms below
    SPLIT_TERM summed in float64: long double's exp costs about 50 ns an element, float64's 1, and
    a row of real logits holds a few large terms and thousands of small ones. Where the small ones
    add up to at most SPLIT_SHARE, their float64 error (c_lib + depth u of float64: 2^-48 of them)
    is within 2^-60 of the sum 1 + t, long double's own order.

    The bound, each part as fast_rows bounds a sum of exps of exact arguments: the large terms'
    long double sum tb within tb (c_lib + depth u) 1.01 (long double's constants) + n tny; the small
    ones' float64 sum ts within ts (c_lib + depth u) 1.01 (float64's) + n TINY (a flushed exp);
    their long double sum t = tb + ts within u t 1.01 more. Which part a term goes to is read off
    its float64 exp, any split being as rigorous. None where it does not apply: a format-less or
    short row, not long double, x - m not exact in float64, no small term, or too much of the sum
    in small terms (a bound that would widen)."""
    if fmt is None or np.dtype(wt) != np.dtype(np.longdouble) or x.shape[-1] < SPLIT_MIN:
        return None
    if np.finfo(np.longdouble).nmant <= 52:  # (a long double that is float64: nothing to save)
        return None
    dx64 = rows_exact(fmt, x, m, np.float64)
    if dx64 is None or not dx64.all():
        return None
    e64 = np.exp(x - m[..., None])  # exact arguments
    _drop_argmax(e64, k)
    small = e64 < SPLIT_TERM
    if not (small & (e64 > 0)).any():  # (every term large, but the argmax's 0: the whole long double sum)
        return None
    ts, depth_s = pairwise_sum(np.where(small, e64, 0.0))
    if not np.all(ts <= SPLIT_SHARE):
        return None
    big = np.nonzero(~small)
    eb = np.zeros(x.shape, dtype=wt)
    eb[big] = np.exp(d[big])  # (the argmax's 0 is small: left out)
    tb, depth_b = pairwise_sum(eb)
    u, c, u64, c64 = unit_roundoff(wt), lib_error(wt), unit_roundoff(np.float64), lib_error(np.float64)
    n = x.shape[-1]
    t = tb + ts.astype(wt)
    es = (ts * ((c64 + depth_s * u64) * 1.01) + n * TINY).astype(wt)
    et = tb * ((c + depth_b * u) * 1.01) + es + t * (u * 1.01) + n * tiny(wt)
    return t, et


def piece_max(pieces) -> tuple:
    """(the maximum m, the column k of its first occurrence) of one long vector read a piece at a
    time (``pieces()`` as :func:`piece_rows` reads them): np.max and np.argmax of the whole vector
    (a NaN first)."""
    m, k = -np.inf, -1
    for c0, xp in pieces():
        j = int(np.argmax(xp[0]))
        v = float(xp[0, j])
        if k < 0 or (not np.isnan(m) and (np.isnan(v) or v > m)):
            m, k = v, c0 + j
    return m, k


def piece_rows(fmt: Format, pieces, args: dict, wt, top: tuple | None = None) -> dict:
    """:func:`fast_rows` of one long vector read a piece at a time: ``pieces()`` yields its
    pieces in order, (c0, float64 array (1, w)). Two passes: the maximum m and its first index
    k, then each piece's t_j and bound et_j with that m and k (:func:`fast_rows`), summed pairwise
    in the working type: |t - sum t_j| <= sum et_j, and the sum's own roundings, at most depth2 of
    them on every t_j >= 0, add ((1 + u)^depth2 - 1) sum t_j <= 1.02 depth2 u t (the last factor
    1.01 covers the roundings of the bound itself). Memory: one piece. ``top``: (m, k) when
    known (:func:`piece_max`), which saves the first pass."""
    m, k = top if top is not None else piece_max(pieces)
    ts, ets, n = [], [], 0
    M = np.array([m])
    tg = _target(args)
    xt = None
    for c0, xp in pieces():
        w = xp.shape[-1]
        if tg is not None and c0 <= int(np.ravel(tg)[0]) < c0 + w:
            xt = xp[:, int(np.ravel(tg)[0]) - c0]
        r = fast_rows(fmt, xp, args, wt, m=M, k=np.array([k - c0 if c0 <= k < c0 + w else -1]))
        ts.append(r["t"])
        ets.append(r["et"])
        n += w
    u, c_lib, tny = unit_roundoff(wt), lib_error(wt), tiny(wt)
    with np.errstate(all="ignore"):
        t, depth = pairwise_sum(np.stack(ts, axis=-1))
        se, _ = pairwise_sum(np.stack(ets, axis=-1))
        et = (se * (1 + 4 * depth * u) + t * (depth * u * 1.02)) * 1.01
        lp = np.log1p(t)
        elp = et / (1.0 + np.maximum(t - et, 0)) + c_lib * lp + tny
    out = {"m": M, "lp": lp, "elp": elp, "t": t, "et": et, "n": n}
    if xt is not None:
        out["xt"] = xt
    return out


def fast_bounds(rows: dict, wt, prec: int, any_prec: bool = False):
    """Bounds (tlo, thi) (raw mpf, rounded outward at ``prec``) on t from a fast tier's row
    quantities of one vector (``t`` and its bound ``et`` in the working type wt, converted exactly),
    for :class:`Whole` -- or None where wt is less precise than ``prec`` bits (mpmath then needs a
    narrower interval than this tier's; ``any_prec``: whatever ``prec``) or a value does not
    convert."""
    from mpmath.libmp import fzero, mpf_add, mpf_sub

    bits = 113 if is_quad(wt) else np.finfo(wt).nmant + 1
    if bits < prec and not any_prec:
        return None
    t, et = _exact_mpf(rows["t"][0]), _exact_mpf(rows["et"][0])
    if t is None or et is None:
        return None
    lo = mpf_sub(t, et, prec, "f")
    return (lo if lo[0] == 0 else fzero), mpf_add(t, et, prec, "c")


def _exact_mpf(v):
    """A finite value of a working type (float64, long double, quad) as a raw mpf, exactly; None
    if it is not finite."""
    from mpmath.libmp import from_man_exp

    if is_quad(np.asarray(v).dtype):
        return _quad_mpf(v)
    if not np.isfinite(v):
        return None
    num, den = v.as_integer_ratio()
    return from_man_exp(num, -(den.bit_length() - 1))


#: Rows at least this long get their sum t from the quad tier for exact strings (:func:`row_sum`):
#: below it mpmath's sum (one exp per distinct value) costs little.
ROW_SUM_MIN = 4096


def row_sum(x_row, args_row: dict, prec: int):
    """Rigorous bounds (raw mpf tlo <= t <= thi) on t = sum_{i != k} exp((x_i - m) / T) of one
    vector, from the quad tier's :func:`fast_rows` (one vectorized pass, its proven error bound
    ``et``) instead of one mpmath exp per distinct value; for :func:`enclose`'s ``t``. None where
    numpy-quaddtype is not installed or the quad values do not carry over to mpmath exactly (then
    mpmath sums the row itself). The bounds are about 2^-105 apart (relative): enough for 25 digits
    of every value of the family, not for every rounding decision of a float64 format."""
    from .core import quad

    q = quad()
    if q is None:
        return None
    x = np.asarray(x_row, dtype=np.float64)[None, :]
    sc = _scale(args_row)
    args = {} if sc is None else {"scale": np.atleast_1d(sc).astype(np.float64)}
    with np.errstate(all="ignore"):
        r = fast_rows(None, x, args, q)
    return fast_bounds(r, q, prec, any_prec=True)


def _quad_mpf(v):
    """A finite quad value as a raw mpf, exactly (three float64 parts, checked), else None. A value
    beyond float64's range (a bound holding quad's tiny, 2^-16382) is first scaled by powers of
    two into it (exact), and the mpf scaled back."""
    from mpmath.libmp import from_float, mpf_add, mpf_shift

    if not np.isfinite(v):
        return None
    q, shift, rest = type(v), 0, v
    while rest != 0 and abs(rest) < q(2.0**-900):
        rest, shift = rest * q(2.0**900), shift - 900
    while abs(rest) > q(2.0**900):
        rest, shift = rest * q(2.0**-900), shift + 900
    parts = []
    for _ in range(3):
        h = float(np.float64(rest))
        parts.append(h)
        rest = rest - q(h)
    if rest != 0:
        return None
    out = from_float(parts[0])
    for h in parts[1:]:
        out = mpf_add(out, from_float(h), 0)  # precision 0: exact
    return mpf_shift(out, shift)


def fast_elements(fmt: Format, rows: dict, x: np.ndarray, args: dict, wt, function: str, bi, ji=None):
    """RefData of ``function`` at the elements (bi, ji) of the batch x (float64; ji None for a
    per-vector function: its rows bi), from the rows' shared quantities (:func:`fast_rows`); a
    few thousand elements at a time (core.by_chunks)."""
    return by_chunks(lambda b, j: _fast_elements(fmt, rows, x, args, wt, function, b, j), bi, ji)


def _fast_elements(fmt: Format, rows: dict, x: np.ndarray, args: dict, wt, function: str, bi, ji=None):
    n = rows.get("n", x.shape[-1])  # a piece of a long vector (piece_rows): the vector's length
    u, c_lib = unit_roundoff(wt), lib_error(wt)
    wt = np.dtype(wt)
    lp, elp, m = rows["lp"][bi], rows["elp"][bi], rows["m"][bi]
    sc = _scale(args)
    sc = None if sc is None else sc[bi]
    if n == 1:  # exact: softmax 1, log_softmax and cross_entropy 0, logsumexp x (unscaled) -- a row
        # whose other entries are masked, whose 1 no interval settles (a power of two, no strict bound)
        exact = {"softmax": 1.0, "log_softmax": 0.0, "cross_entropy": 0.0}.get(function)
        if exact is None and sc is None:
            exact = x[bi, 0]
        if exact is not None and not recording():  # the exact strings keep their intervals
            from ..masks import exact_ref

            return exact_ref(fmt, np.broadcast_to(exact, np.shape(bi)))
    # with n >= 2, t > 0 exactly, which gives strict bounds: L > m, log_softmax_i < x_i - m
    # (where that difference is exact), softmax_i < 1, cross_entropy > m - x_target; with a
    # temperature the bounds m / T, (x_i - m) / T are not working-type values: only softmax < 1
    two = n >= 2
    strict = two and sc is None
    with np.errstate(all="ignore"):
        if function == "logsumexp":
            mw, em = _over(m.astype(wt), np.ones(m.shape, dtype=bool), sc, wt, u)
            L = mw + lp
            return from_interval(fmt, L, 2 * (elp + em + u * np.abs(L)), lower=m if strict else None)
        if function == "cross_entropy":
            if "xt" in rows:  # a piece of a long vector (piece_rows): its target's input
                xt = rows["xt"][bi]
            else:
                xt = x[bi, np.asarray(_target(args))[bi].astype(np.int64)]
            dt, dt_exact = diff_exact(xt, m, wt)
            dt, edt = _over(dt, dt_exact, sc, wt, u)
            edt = 0 if sc is None else edt  # unscaled: the |dt| u below covers a rounded dt
            ce = lp - dt
            return from_interval(fmt, ce, 2 * (elp + edt + np.abs(dt) * u + u * np.abs(ce)),
                                 lower=np.where(dt_exact, -dt, -np.inf).astype(wt) if strict else None)
        # each row's maximum converted to the working type once, not once per element
        xe = at(x, bi, ji)
        if "d" in rows:  # fast_rows kept them (quad, every d exact)
            d, d_exact = at(rows["d"], bi, ji), np.ones(np.shape(bi), dtype=bool)
            if function == "softmax":
                return _quad_softmax(fmt, rows, bi, ji, two)
        elif "dx" in rows and rows["dx"][bi].all():  # fast_rows found every d of these rows exact
            d = xe.astype(wt, copy=False) - rows["m"].astype(wt)[bi]
            d_exact = np.ones(np.shape(bi), dtype=bool)
        else:
            d, d_exact = diff_exact(xe, m, wt, mw=rows["m"].astype(wt)[bi])
        ls = d - lp
        plain = sc is None and d_exact.all()
        if is_quad(wt):
            return _quad_elements(fmt, function, xe, m, d, d_exact, ls, rows, bi, sc, plain, strict, two)
        if plain:  # ed = 0: 0 + elp is elp, the same sum
            els = elp + u * np.abs(ls)
        else:
            d, ed = _over(d, d_exact, sc, wt, u)
            ls = d - lp
            els = ed + elp + u * np.abs(ls)
        if function == "log_softmax":
            upper = np.where(d_exact, d, np.inf).astype(wt) if strict else None
            return from_interval(fmt, ls, 2 * els, upper=upper)
        sm = np.exp(ls)
        err = 2 * (sm * (np.expm1(els) * 1.01 + c_lib))
        if not plain:  # below the range whatever ls's error: [-tny, tny] (from_interval's TINY)
            sm, err = _gone(ls + els, wt, sm, err)
        return from_interval(fmt, sm, err, upper=wt.type(1.0) if two else None)


def _gone(top, wt, v, err):
    """(v, err) with 0, 0 where ``top`` (an upper bound of the exact value's log) is below log_tiny:
    the exact value is then within the working type's tny of 0, which every interval's absolute
    slack covers (from_interval's TINY, quad_ends' tiny(q)). A softmax of a huge finite mask
    (-3.4e38: d's error of 1e22 makes expm1 of it infinite) is decided as 0 instead of sent up."""
    gone = top < log_tiny(wt)
    if not np.any(gone):
        return v, err
    return np.where(gone, wt.type(0), v), np.where(gone, 0.0, err)


def _quad_softmax(fmt, rows, bi, ji, two):
    """softmax_i = e_i * g from the row quantities fast_rows kept: e_i = exp(d_i) (1 at the argmax,
    exactly), g = exp(-lp), one quad product an element instead of exp(d_i - lp).

    With e_i within c_lib of exp(d_i) (d_i exact), g within c_lib of exp(-lp), |lp - log1p(t)| <=
    elp and the product rounded (u): softmax_i (1 + rho) with 1 + |rho| <= (1 + c_lib)^2 (1 + u)
    e^elp <= e^(elp + 2 c_lib + u), so |rho| <= expm1(elp + 2 c_lib + u), a float64 bound per row
    (the 1.01 and 1 + 2^-45 cover expm1's and the float64 roundings, as in _quad_elements)."""
    wt = rows["lp"].dtype
    u, c_lib = unit_roundoff(wt), lib_error(wt)
    e = at(rows["e"], bi, ji)
    e = np.where(ji == rows["k"][bi], wt.type(1.0), e)
    g = np.exp(-rows["lp"])
    f = (np.expm1((up64(rows["elp"]) + 2 * c_lib + u) * (1 + 2.0**-50)) * 1.01) * (1 + 2.0**-45)
    return from_interval(fmt, e * g[bi], Affine(0.0, 2 * f[bi]), upper=wt.type(1.0) if two else None)


def _quad_elements(fmt, function, xe, m, d, d_exact, ls, rows, bi, sc, plain, strict, two):
    """fast_elements' softmax and log_softmax in quad, their error bounds held in float64
    (core.Affine): the bounds of the long double and float64 tiers, each term bounded above.

    log_softmax_i = ls = d - lp has |error| <= elp + ed + u |ls| (ed: d's own error, 0 where d
    is exact); softmax_i = exp(ls) has relative error <= expm1(that) * 1.01 + c_lib. Unscaled and
    with every d exact, |ls| = (m - x_i) + lp exactly (d <= 0 <= lp), bounded in float64 without
    reading the quad ls; otherwise |ls| and ed are read from quad (up64)."""
    wt = ls.dtype
    u, c_lib = unit_roundoff(wt), lib_error(wt)
    up = 1 + 2.0**-50  # covers the float64 roundings of each bound below (a few, each 2^-53)
    elp64 = up64(rows["elp"])[bi]  # a row's bounds read once, not once per element
    if plain:
        ed64 = 0.0
        als = ((m - xe) * up + up64(rows["lp"])[bi]) * up  # m - x_i: float64 values, rounded once
    else:
        d, ed = _over(d, d_exact, sc, wt, u)
        ls = d - rows["lp"][bi]
        ed64, als = up64(ed), up64(np.abs(ls))
    if function == "log_softmax":
        upper = np.where(d_exact, d, np.inf).astype(wt) if strict else None
        return from_interval(fmt, ls, Affine(2 * (elp64 + ed64) * up, 2 * u * up), upper=upper)
    els = (elp64 + ed64 + u * als) * up
    # the relative factor expm1(els) * 1.01 + c_lib is a tiny number: bounded above in float64
    # (els ~ 2^-100; libm's expm1 within 16 ulp, three roundings: 2^-45 covers them), not in
    # quad, whose expm1 costs six quad multiplications
    f = (np.expm1(els) * 1.01 + c_lib) * (1 + 2.0**-45)
    v = np.exp(ls)
    if not plain:  # ls <= -(a lower bound of |ls|): als is an upper one, moved down by 2^-40 and 1;
        # als infinite (|ls| within 2^-47 of float64's max, a -1.8e308 mask): ls + els <= -(1 - u) |ls|
        # + elp + ed, far below log_tiny while elp + ed stays below 2^1000
        top = els - (als * (1 - 2.0**-40) - 1.0)
        top = np.where(np.isinf(als) & (elp64 + ed64 < 2.0**1000), -np.inf, top)
        v, f = _gone(top, wt, v, f)
    return from_interval(fmt, v, Affine(0.0, 2 * f), upper=wt.type(1.0) if two else None)


def fast_block(fmt: Format, x: np.ndarray, args: dict, functions=None) -> dict[str, RefData]:
    """Every value of the family (or of ``functions``) over the batch x (B, n) in a working type
    (x's dtype), with a proven bound."""
    wt = x.dtype
    x = x.astype(np.float64)  # exact: the values come from float64
    rows = fast_rows(fmt, x, args, wt, keep=True)
    B, n = x.shape
    names = [f for f in FUNCTIONS if (functions is None or f in functions)
             and (f != "cross_entropy" or _target(args) is not None)]
    out = {}
    whole = not (x == -np.inf).any()
    # -inf entries (MASKED): their limits exactly (softmax 0, log_softmax -inf), the others computed
    bi, ji = (np.repeat(np.arange(B), n), np.tile(np.arange(n), B)) if whole else np.nonzero(x != -np.inf)
    for f in names:
        if f in ("softmax", "log_softmax"):
            r = fast_elements(fmt, rows, x, args, wt, f, bi, ji)
            if whole:
                out[f] = RefData(*(getattr(r, k).reshape(B, n) for k in RefData.__dataclass_fields__))
                continue
            from ..masks import exact_ref

            out[f] = exact_ref(fmt, np.full((B, n), 0.0 if f == "softmax" else -np.inf))
            out[f].put((bi, ji), r)
        else:
            out[f] = fast_elements(fmt, rows, x, args, wt, f, np.arange(B))
    return out


def rational(x_row, args_row: dict) -> dict[str, list]:
    """The values of the family that are rational, exactly (Fraction per element; None where
    irrational). Only softmax of a vector whose finite entries are all equal is: 1/k on its k
    finite entries, 0 on its -inf ones (Lindemann-Weierstrass: every other value of the family
    involves exp or log of a nonzero algebraic number, except the points the enclosures already
    give: log_softmax of one finite entry is 0, logsumexp of it is the entry). A rational value
    can make an error figure an exact tie of the quantization, which no enclosure decides."""
    x = np.asarray(x_row, dtype=np.float64)
    fin = np.isfinite(x)
    if not fin.any() or np.isnan(x).any() or np.isposinf(x).any() or not (x[fin] == x[fin][0]).all():
        return {}
    k = int(fin.sum())
    out = {"softmax": [Fraction(1, k) if f else Fraction(0) for f in fin]}
    sc = _scale(args_row)
    if sc is not None and x.size == 1:  # logsumexp of one entry: x / T, a rational (not always dyadic)
        out["logsumexp"] = [Fraction(float(x[0])) / Fraction(float(sc))]
    return out


def exact_raw(x_row, args_row: dict, prec: int) -> dict[str, list]:
    """All reference values of one vector as raw mpmath tuples, rounded to nearest at ``prec``.

    An approximation (no error bound): the figures use :func:`enclose`, which
    brackets every value rigorously. Kept for exploration and tests.
    """
    target = _target(args_row)
    mpmath = _mp()
    from mpmath.libmp import from_float, mpf_add, mpf_div, mpf_exp, mpf_sub, mpf_sum

    xs = [from_float(float(v)) for v in x_row]  # exact
    k = int(np.argmax(x_row))
    m = xs[k]
    d = [mpf_sub(v, m, 0) for v in xs]  # precision 0: exact
    wp = prec + 10
    sc = _scale(args_row)
    if sc is not None:  # x / T: the quotients at the working precision
        S = from_float(float(sc))
        m = mpf_div(m, S, wp, "n")
        d = [mpf_div(v, S, wp, "n") for v in d]
    t = mpf_sum([mpf_exp(di, wp, "n") for i, di in enumerate(d) if i != k], wp, "n")
    with mpmath.mp.workprec(wp):
        lp = mpmath.log1p(mpmath.mpf(t))._mpf_
    ls = [mpf_sub(di, lp, prec, "n") for di in d]
    out = {
        "softmax": [mpf_exp(v, prec, "n") for v in ls],
        "log_softmax": ls,
        "logsumexp": [mpf_add(m, lp, prec, "n")],
    }
    if target is not None:
        out["cross_entropy"] = [mpf_sub(lp, d[int(target)], prec, "n")]
    return out


@dataclass(frozen=True)
class Whole:
    """The vector a piece of columns belongs to (a long vector evaluated in pieces): its maximum
    ``m`` (a float64), the column ``k`` of its first argmax in the piece (-1 where it lies outside),
    its length ``n`` and ``t(prec)``, bounds (tlo, thi) on its sum t (raw mpf) good for working
    precision ``prec``. :func:`enclose` then encloses the piece's elements as elements of that
    vector."""

    m: float
    k: int
    n: int
    t: object
    xt: float | None = None  # the target's input (cross-entropy)
    d_sum: object = None  # () -> sum(x - m) over the vector, exact (raw mpf: label smoothing)
    c0: int = 0  # the vector's column of x_row's first entry (a target's place in it)
    cot: object = None  # the gradients' cotangent over the vector (reference.backward.WholeCotangent)


def exp_sum(values, counts, m, prec: int, scale=None, cache: dict | None = None) -> tuple:
    """Bounds (tlo, thi) (raw mpf, rounded outward at ``prec`` + 10 bits) on sum_v count_v exp((v - m) / T)
    over distinct values v with their counts (the maximum's own term counted out by the caller), each
    exp once; ``cache`` (kept between calls at the same precision): {v: ((d_lo, d_hi), exp lo, exp hi)}."""
    from mpmath.libmp import from_float, from_int, fzero, mpf_add, mpf_mul

    wp = prec + 10
    # (without a cache nothing is kept: the values are distinct, and a long vector's exps held
    # whole took about 900 bytes per value, 3.5 GB for 4 M float64 values)
    exp_of = _exp_of(from_float(float(m)) if not isinstance(m, tuple) else m, wp, scale, cache)
    tlo = thi = fzero
    for v, c in zip(np.asarray(values).tolist(), np.asarray(counts).tolist()):
        if c:
            _, a, b = exp_of(v)
            if c > 1:
                a, b = mpf_mul(a, from_int(c), wp, "f"), mpf_mul(b, from_int(c), wp, "c")
            tlo = mpf_add(tlo, a, wp, "f")
            thi = mpf_add(thi, b, wp, "c")
    return tlo, thi


def _exp_of(m, wp: int, scale, exps: dict | None):
    """v -> ((lower, upper) bounds of (v - m) / T, exp of the lower rounded down, of the upper up);
    memoized in ``exps`` (None: nothing kept)."""
    from mpmath.libmp import from_float, mpf_div, mpf_exp, mpf_sub

    S = None if scale is None else from_float(float(scale))

    def exp_of(v):
        hit = None if exps is None else exps.get(v)
        if hit is None:
            d = mpf_sub(from_float(v), m, 0)  # x - m exact (precision 0), then / T outward
            dv = (d, d) if S is None else (mpf_div(d, S, wp, "f"), mpf_div(d, S, wp, "c"))
            hit = (dv, mpf_exp(dv[0], wp, "f"), mpf_exp(dv[1], wp, "c"))
            if exps is not None:
                exps[v] = hit
        return hit

    return exp_of


def enclose(x_row, args_row: dict, prec: int, fmt_p: int = 64, wanted=None, t=None,
            cache: dict | None = None, whole: Whole | None = None) -> dict[str, list]:
    """Rigorous enclosures of every reference value of one vector: raw mpf (lo, hi, lo_dec,
    hi_dec), lo <= r <= hi, the rounding and ulp read at lo_dec and hi_dec (see :func:`strict`;
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
    (the product rounded outward too). ``t``: given bounds (tlo, thi) on t (:func:`row_sum`);
    then only the wanted elements' exps are computed; ``cache``: a dict kept between calls on the
    same vector at the same ``prec`` (the exps of the values seen so far). ``whole``
    (:class:`Whole`): x_row is a piece of a longer vector, whose m, argmax, n and t are given.
    """
    from mpmath.libmp import (
        fone,
        from_float,
        fzero,
        mpf_add,
        mpf_div,
        mpf_neg,
        mpf_pos,
        mpf_sub,
    )

    x_row = np.asarray(x_row, dtype=np.float64)
    if whole is not None:
        n, k, m = whole.n, whole.k, from_float(float(whole.m))
        t = whole.t(prec)
    else:
        n = len(x_row)
        k = int(np.argmax(x_row))
        m = from_float(float(x_row[k]))  # exact
    wp = prec + 10
    sc = _scale(args_row)
    S = None if sc is None else from_float(float(sc))

    def over(v):
        """(lower, upper) bounds of v / T (v exact; v itself without a temperature)."""
        return (v, v) if S is None else (mpf_div(v, S, wp, "f"), mpf_div(v, S, wp, "c"))

    def bound(v, rnd):
        """A strict bound for :func:`strict` on 53 bits (rounded outward): within 2^(mag - p - 64)
        below (or above) it no format boundary lies, as :func:`strict` requires."""
        return v if S is None else mpf_pos(v, 53, rnd)

    exps = {} if cache is None else cache
    exp_of = _exp_of(m, wp, sc, exps)

    if t is not None:
        tlo, thi = t
    else:
        vals, inv, counts = np.unique(x_row, return_inverse=True, return_counts=True)
        counts[inv[k]] -= 1  # the max itself is outside t
        tlo, thi = exp_sum(vals, counts, m, prec, sc, exps)
    lplo, lphi = log1p_down(tlo, wp), log1p_up(thi, wp)
    slo, shi = mpf_add(fone, tlo, wp, "f"), mpf_add(fone, thi, wp, "c")
    target = _target(args_row)
    names = [f for f in FUNCTIONS if f != "cross_entropy" or target is not None]
    want = {f: (list(range(n)) if f in ("softmax", "log_softmax") else [0]) for f in names} \
        if wanted is None else wanted

    def elem(j):
        return ((fzero, fzero), fone, fone) if j == k else exp_of(float(x_row[j]))

    # t > 0 exactly: L > m, log_softmax_i < d_i, softmax_i < 1, cross_entropy > -d_target; with a
    # temperature the strict bounds are the outer ends of m / T and d_i / T (still strict)
    two = n >= 2
    out = {}
    for f, js in want.items():
        if f == "logsumexp":
            ml, mh = over(m)
            iv = (mpf_add(ml, lplo, prec, "f"), mpf_add(mh, lphi, prec, "c"))
            out[f] = [strict(*iv, low=bound(ml, "f"), p=fmt_p) if two else iv + iv]
        elif f == "cross_entropy":
            xt = whole.xt if whole is not None else x_row[int(target)]
            dl, dh = over(mpf_sub(from_float(float(xt)), m, 0))
            iv = (mpf_sub(lplo, dh, prec, "f"), mpf_sub(lphi, dl, prec, "c"))
            out[f] = [strict(*iv, low=bound(mpf_neg(dh), "f"), p=fmt_p) if two else iv + iv]
        elif f == "log_softmax":
            res = []
            for j in js:
                dl, dh = elem(j)[0]
                iv = (mpf_sub(dl, lphi, prec, "f"), mpf_sub(dh, lplo, prec, "c"))
                res.append(strict(*iv, high=bound(dh, "c"), p=fmt_p) if two else iv + iv)
            out[f] = res
        elif f == "softmax":
            res = []
            for j in js:
                _, a, b = elem(j)
                iv = (mpf_div(a, shi, prec, "f"), mpf_div(b, slo, prec, "c"))
                res.append(strict(*iv, high=fone, p=fmt_p) if two else iv + iv)
            out[f] = res
    return out
