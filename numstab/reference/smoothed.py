"""Exact formula of label-smoothed cross-entropy (numstab/functions/smoothed.py).

With m = max(x), k its first argmax, d = x - m exact, t = sum_{j != k} exp(d_j),
lp = log1p(t) and epsilon the smoothing (an exact format value in [0, 1]):

    smoothed_cross_entropy = -sum_i q_i log_softmax_i, q = (1 - eps) onehot(target) + eps / n
                           = lp - (1 - eps) d_target - (eps / n) sum(d)

three non-negative terms (d <= 0), so nothing cancels; (1 - eps) d_target and sum(d) are
exact in mpmath. lp is irrational for n >= 2 (and 0 for n = 1, where the loss is exactly 0).
The argument is the batch's ``smoothing``: a record of ``target`` and ``epsilon`` per vector.
"""

from __future__ import annotations

import numpy as np

from ..formats import Format
from ..results import RefData
from .backward import _depth, _fast_parts, _lib, _sum, _vector
from .core import from_interval, log1p_down, log1p_up, strict, tiny, working

FUNCTIONS = ("smoothed_cross_entropy",)


def enclose_smoothed_cross_entropy(x_row, extra, prec: int, fmt_p: int = 64) -> list:
    """extra: (target, epsilon), epsilon an exact format value in [0, 1]."""
    L = _lib()
    target, eps = int(extra[0]), L.from_float(float(extra[1]))
    wp = prec + 10
    _, _, d, _, _, tlo, thi = _vector(x_row, wp)
    lp_lo, lp_hi = log1p_down(tlo, wp), log1p_up(thi, wp)
    n = L.from_int(len(d))
    D = L.fzero
    for di in d:
        D = L.mpf_add(D, di, 0)  # exact
    q = L.mpf_mul(eps, D, 0)  # <= 0, exact
    c1 = L.mpf_neg(L.mpf_mul(L.mpf_sub(L.fone, eps, 0), d[target], 0))  # -(1 - eps) d_t >= 0, exact
    c_lo = L.mpf_sub(c1, L.mpf_div(q, n, wp, "c"), wp, "f")
    c_hi = L.mpf_sub(c1, L.mpf_div(q, n, wp, "f"), wp, "c")
    lo, hi = L.mpf_add(lp_lo, c_lo, prec, "f"), L.mpf_add(lp_hi, c_hi, prec, "c")
    if len(d) < 2 or c_lo != c_hi:
        return [(lo, hi, lo, hi)]
    return [strict(lo, hi, low=c_lo, p=fmt_p)]  # lp > 0: the loss exceeds the exact c


def enclose(x_row, args_row: dict, prec: int, fmt_p: int = 64) -> dict[str, list]:
    s = args_row.get("smoothing") if args_row else None
    if s is None:
        return {}
    extra = (s["target"], s["epsilon"])
    return {"smoothed_cross_entropy": enclose_smoothed_cross_entropy(x_row, extra, prec, fmt_p)}


# ------------------------------------------------------------------ fast path
def fast_block(fmt: Format, x: np.ndarray, args: dict) -> dict[str, RefData]:
    """smoothed_cross_entropy = lp - (1 - eps) d_t - (eps / n) sum(d), a proven bound."""
    x = working(x, fmt)
    TINY = tiny(x.dtype)
    s = args.get("smoothing") if args else None
    if s is None:
        return {}
    target, eps = np.asarray(s["target"]), np.asarray(s["epsilon"], dtype=np.float64)
    with np.errstate(all="ignore"):
        n, u, c_lib, k, d, e, rel_e, t = _fast_parts(x)
        et = t * (rel_e + _depth(n) * u) * 1.01 + n * TINY  # t summed by halving (backward._sum)
        lp = np.log1p(t)
        elp = et / (1.0 + np.maximum(t - et, 0.0)) + c_lib * lp + TINY
        eps = np.broadcast_to(np.asarray(eps, dtype=x.dtype).reshape(-1, 1), lp.shape)
        dt = np.take_along_axis(d, np.asarray(target)[..., None], axis=-1)
        w = 1 - eps
        c1 = -(w * dt)
        e1 = np.abs(c1) * 4 * u
        D = _sum(d)  # by halving: each d_i (rounded once) meets ceil(log2 n) more roundings
        eD = np.sum(np.abs(d), axis=-1, keepdims=True) * (_depth(n) + 1) * u * 1.01
        c2 = -(eps / n) * D
        e2 = (eps / n) * (eD + 3 * u * np.abs(D))
        r = lp + (c1 + c2)
        err = (elp + e1 + e2 + 2 * u * (lp + np.abs(c1) + np.abs(c2))) * 1.05
        res = from_interval(fmt, r[..., 0], 2 * err[..., 0])
    return {"smoothed_cross_entropy": res}
