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
working type of x; ``enclose(x_row, args_row, prec, fmt_p)`` rigorous mpmath enclosures;
``exact_raw(x_row, args_row, prec)`` (optional) nearest values without a bound.
"""

from __future__ import annotations

import numpy as np

from ..formats import Format
from ..results import RefData
from .core import TINY, _mp, from_interval, log1p_down, log1p_up, strict

FUNCTIONS = ("softmax", "log_softmax", "logsumexp", "cross_entropy")


def _target(args):
    t = args.get("target") if args else None
    return None if t is None else np.asarray(t)


def fast_block(fmt: Format, x: np.ndarray, args: dict) -> dict[str, RefData]:
    """Every value of the family over the batch x (B, n) in a working type, with a proven bound."""
    target = _target(args)
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
        two = n >= 2
        out = {}
        L = m[..., 0] + lp
        out["logsumexp"] = from_interval(fmt, L, 2 * (elp + u * np.abs(L)),
                                          lower=m[..., 0] if two else None)
        ls = d - lp2
        els = ad * u + elp2 + u * np.abs(ls)
        out["log_softmax"] = from_interval(fmt, ls, 2 * els,
                                            upper=np.where(d_exact, d, np.inf) if two else None)
        sm = np.exp(ls)
        out["softmax"] = from_interval(fmt, sm, 2 * (sm * (np.expm1(els) * 1.01 + c_lib)),
                                        upper=x.dtype.type(1.0) if two else None)
        if target is None:
            return out
        tg = target[..., None]
        dt = np.take_along_axis(d, tg, axis=-1)[..., 0]
        dt_exact = np.take_along_axis(d_exact, tg, axis=-1)[..., 0]
        ce = lp - dt
        out["cross_entropy"] = from_interval(
            fmt, ce, 2 * (elp + np.abs(dt) * u + u * np.abs(ce)),
            lower=np.where(dt_exact, -dt, -np.inf) if two else None,
        )
    return out


def exact_raw(x_row, args_row: dict, prec: int) -> dict[str, list]:
    """All reference values of one vector as raw mpmath tuples, rounded to nearest at ``prec``.

    An approximation (no error bound): the figures use :func:`enclose`, which
    brackets every value rigorously. Kept for exploration and tests.
    """
    target = _target(args_row)
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
    out = {
        "softmax": [mpf_exp(v, prec, "n") for v in ls],
        "log_softmax": ls,
        "logsumexp": [mpf_add(m, lp, prec, "n")],
    }
    if target is not None:
        out["cross_entropy"] = [mpf_sub(lp, d[int(target)], prec, "n")]
    return out


def enclose(x_row, args_row: dict, prec: int, fmt_p: int = 64) -> dict[str, list]:
    """Rigorous enclosures of every reference value of one vector: raw mpf (lo, hi, lo_dec,
    hi_dec), lo <= r <= hi, the rounding and ulp read at lo_dec and hi_dec (see :func:`strict`;
    ``fmt_p`` the target format's precision).

    With d_i = x_i - m exact and e_i = exp(d_i), S = 1 + t: every step rounds
    outward (mpmath's directed rounding, the way its own interval arithmetic
    does), sums are pairwise ``mpf_add`` (``mpf_sum`` drops far-away terms even
    when rounding up). softmax_i = e_i / S; with all elements equal the exps are
    exactly 1 and the enclosure is a point where 1/n is exact (n a power of two),
    the only rational softmax values (Lindemann-Weierstrass). log_softmax of n = 1
    is the point 0; every other value is irrational and its enclosure shrinks
    about like 2^-prec (relative), so the escalation always ends. x_i - m may need
    many more bits than ``prec`` (x = [1e38, 0.25]); exp of an exact d keeps its
    relative accuracy whatever |d|.
    """
    from mpmath.libmp import fone, from_float, fzero, mpf_add, mpf_div, mpf_exp, mpf_neg, mpf_sub

    xs = [from_float(float(v)) for v in x_row]  # exact
    k = int(np.argmax(x_row))
    m = xs[k]
    d = [mpf_sub(v, m, 0) for v in xs]  # precision 0: exact
    wp = prec + 10
    elo, ehi = [], []
    tlo = thi = fzero
    for i, di in enumerate(d):
        if i == k:
            elo.append(fone)
            ehi.append(fone)
            continue
        a, b = mpf_exp(di, wp, "f"), mpf_exp(di, wp, "c")
        elo.append(a)
        ehi.append(b)
        tlo = mpf_add(tlo, a, wp, "f")
        thi = mpf_add(thi, b, wp, "c")
    lplo, lphi = log1p_down(tlo, wp), log1p_up(thi, wp)
    slo, shi = mpf_add(fone, tlo, wp, "f"), mpf_add(fone, thi, wp, "c")
    target = _target(args_row)
    dt = None if target is None else d[int(target)]
    out = {
        "softmax": [(mpf_div(a, shi, prec, "f"), mpf_div(b, slo, prec, "c")) for a, b in zip(elo, ehi)],
        "log_softmax": [(mpf_sub(di, lphi, prec, "f"), mpf_sub(di, lplo, prec, "c")) for di in d],
        "logsumexp": [(mpf_add(m, lplo, prec, "f"), mpf_add(m, lphi, prec, "c"))],
    }
    if dt is not None:
        out["cross_entropy"] = [(mpf_sub(lplo, dt, prec, "f"), mpf_sub(lphi, dt, prec, "c"))]
    if len(d) < 2:
        return {f: [(lo, hi, lo, hi) for lo, hi in v] for f, v in out.items()}
    # t > 0 exactly: L > m, log_softmax_i < d_i, softmax_i < 1, cross_entropy > -d_target
    res = {
        "softmax": [strict(lo, hi, high=fone, p=fmt_p) for lo, hi in out["softmax"]],
        "log_softmax": [strict(lo, hi, high=di, p=fmt_p) for (lo, hi), di in zip(out["log_softmax"], d)],
        "logsumexp": [strict(*out["logsumexp"][0], low=m, p=fmt_p)],
    }
    if dt is not None:
        res["cross_entropy"] = [strict(*out["cross_entropy"][0], low=mpf_neg(dt), p=fmt_p)]
    return res
