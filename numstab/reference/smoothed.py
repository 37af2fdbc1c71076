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
from .core import from_interval, log1p_down, log1p_up, pairwise_sum, strict, tiny, unit_roundoff, working

FUNCTIONS = ("smoothed_cross_entropy",)


def enclose_smoothed_cross_entropy(x_row, extra, prec: int, fmt_p: int = 64, whole=None) -> list:
    """extra: (target, epsilon), epsilon an exact format value in [0, 1]. ``whole``
    (reference.softmax.Whole, with its ``d_sum``): x_row is a piece of a longer vector, whose n,
    t, sum(d) and target input are given."""
    L = _lib()
    target, eps = int(extra[0]), L.from_float(float(extra[1]))
    wp = prec + 10
    if whole is None:
        _, _, d, _, _, tlo, thi = _vector(x_row, wp)
        n, dt = len(d), d[target]
        D = L.fzero
        for di in d:
            D = L.mpf_add(D, di, 0)  # exact
    else:
        (tlo, thi), n, D = whole.t(prec), whole.n, whole.d_sum()
        dt = L.mpf_sub(L.from_float(float(whole.xt)), L.from_float(float(whole.m)), 0)  # exact
    lp_lo, lp_hi = log1p_down(tlo, wp), log1p_up(thi, wp)
    q = L.mpf_mul(eps, D, 0)  # <= 0, exact
    c1 = L.mpf_neg(L.mpf_mul(L.mpf_sub(L.fone, eps, 0), dt, 0))  # -(1 - eps) d_t >= 0, exact
    c_lo = L.mpf_sub(c1, L.mpf_div(q, L.from_int(n), wp, "c"), wp, "f")
    c_hi = L.mpf_sub(c1, L.mpf_div(q, L.from_int(n), wp, "f"), wp, "c")
    lo, hi = L.mpf_add(lp_lo, c_lo, prec, "f"), L.mpf_add(lp_hi, c_hi, prec, "c")
    if n < 2 or c_lo != c_hi:
        return [(lo, hi, lo, hi)]
    return [strict(lo, hi, low=c_lo, p=fmt_p)]  # lp > 0: the loss exceeds the exact c


def enclose(x_row, args_row: dict, prec: int, fmt_p: int = 64, wanted=None, whole=None) -> dict[str, list]:
    s = args_row.get("smoothing") if args_row else None
    if s is None:
        return {}
    extra = (s["target"], s["epsilon"])
    return {"smoothed_cross_entropy": enclose_smoothed_cross_entropy(x_row, extra, prec, fmt_p, whole)}


# ------------------------------------------------------------ a long vector in pieces
def exact_d_sum(values, counts, m: float):
    """sum_v count_v (v - m) over distinct values v with their counts, exactly (raw mpf)."""
    L = _lib()
    M, total = L.from_float(float(m)), L.fzero
    for v, c in zip(np.asarray(values).tolist(), np.asarray(counts).tolist()):
        total = L.mpf_add(total, L.mpf_mul(L.mpf_sub(L.from_float(v), M, 0), L.from_int(c), 0), 0)
    return total


def piece_rows(fmt: Format, pieces, args: dict, wt, m: float) -> dict:
    """The smoothing's row quantities of one long vector read a piece at a time (``pieces()`` as
    softmax.piece_rows reads them; m its maximum), in the working type of wt: D = sum(d), d = x - m,
    with its bound ``eD`` -- each d rounded once, then summed by halving within each piece and
    across the pieces, so every |d_i| meets at most depth(w) + depth(P) + 1 roundings (w the widest
    piece, P the pieces) -- and ``dt``, d at the target (rounded once; :func:`fast_elements`'
    4 u |c1| covers it)."""
    wt = working(np.zeros(1, dtype=wt), fmt).dtype
    u = unit_roundoff(wt)
    tg = int(np.ravel(args["smoothing"]["target"])[0])
    M = np.array([[m]]).astype(wt)
    Ds, A, dt, widest = [], 0.0, None, 1
    with np.errstate(all="ignore"):
        for c0, xp in pieces():
            d = xp.astype(wt) - M
            Ds.append(_sum(d)[..., 0])
            A += float(np.sum(np.abs(d.astype(np.float64))))
            if c0 <= tg < c0 + xp.shape[-1]:
                dt = d[:, tg - c0]
            widest = max(widest, xp.shape[-1])
        D, _ = pairwise_sum(np.stack(Ds, axis=-1))
    eD = np.array([A * (_depth(widest) + _depth(len(Ds)) + 1) * u * 1.01])
    return {"D": D, "eD": eD, "dt": dt}


def fast_elements(fmt: Format, rows: dict, x, args: dict, wt, f: str, bi, ji=None) -> RefData:
    """smoothed_cross_entropy of the vectors ``bi`` from their row quantities (a piece of a long
    vector, numstab.vector: reference.softmax.piece_rows' lp and its bound, :func:`piece_rows`' D,
    eD and dt, n), bounded as :func:`fast_block` bounds it."""
    wt = working(np.zeros(1, dtype=wt), fmt).dtype
    u, TINY = unit_roundoff(wt), tiny(wt)
    s = args["smoothing"]
    with np.errstate(all="ignore"):
        lp, elp = rows["lp"][bi].astype(wt), rows["elp"][bi].astype(wt)
        D, eD, dt = rows["D"][bi].astype(wt), rows["eD"][bi], rows["dt"][bi].astype(wt)
        eps = np.asarray(s["epsilon"], dtype=np.float64)[bi].astype(wt)
        r, err = _loss(lp, elp, D, eD, dt, eps, rows["n"], u)
        return from_interval(fmt, r, 2 * (err + TINY))


def _loss(lp, elp, D, eD, dt, eps, n: int, u):
    """(lp - (1 - eps) dt - (eps / n) D, its error bound) from lp, D = sum(d) and dt = d_target
    with their bounds elp, eD (dt rounded once at most), in the working type of unit roundoff u."""
    w = 1 - eps
    c1 = -(w * dt)
    e1 = np.abs(c1) * 4 * u
    none = eps == 0  # no smoothing term (a long vector's D is -inf where an entry is masked)
    c2 = np.where(none, 0.0, -(eps / n) * D).astype(lp.dtype)
    e2 = np.where(none, 0.0, (eps / n) * (eD + 3 * u * np.abs(D)))
    r = lp + (c1 + c2)
    return r, (elp + e1 + e2 + 2 * u * (lp + np.abs(c1) + np.abs(c2))) * 1.05


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
        D = _sum(d)  # by halving: each d_i (rounded once) meets ceil(log2 n) more roundings
        eD = np.sum(np.abs(d), axis=-1, keepdims=True) * (_depth(n) + 1) * u * 1.01
        r, err = _loss(lp, elp, D, eD, dt, eps, n, u)
        res = from_interval(fmt, r[..., 0], 2 * err[..., 0])
    return {"smoothed_cross_entropy": res}
