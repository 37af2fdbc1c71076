"""Exact references of the losses and gradients: rigorous mpmath enclosures.

Same contract as :func:`numstab.reference._enclose`: for one vector x (exact format
values in float64) and its second input, every output value as a raw mpf tuple
(lo, hi, lo_dec, hi_dec) with lo <= r <= hi, every mpmath operation rounded outward
(directed rounding), the rounding and the ulp read at lo_dec and hi_dec
(:func:`numstab.reference._strict` settles values astronomically close to a strict
bound). The escalation of :mod:`numstab.reference` doubles the working precision until
every value is decided.

Exact forms (m = max(x), k its first argmax, d = x - m exact, e_j = exp(d_j),
t = sum_{j != k} e_j, S = 1 + t, lp = log1p(t); for the elementwise family
a = exp(-|x|), L = log1p(a)):

    sigmoid              1 / (1 + a) for x >= 0, a / (1 + a) below (exactly 1/2 at 0)
    log_sigmoid          min(x, 0) - L                          (< min(x, 0))
    softplus             max(x, 0) + L                          (> max(x, 0))
    binary_cross_entropy (max(x, 0) - x z) + L, z the target   (> max(x, 0) - x z >= 0)
    smoothed_cross_entropy  lp - (1 - eps) d_t - (eps / n) sum(d)   (three terms >= 0)
    cross_entropy_backward  e_i / S (i != target), -(sum_{j != target} e_j) / S at the target
    softmax_backward     e_i M_i / S^2, M_i = sum_j (v_i - v_j) e_j
                             = (v_i - v_k) + v_i t - sum_{j != k} v_j e_j
    log_softmax_backward N_i / S, N_i = v_i S - V e_i (V = sum(v)),
                             at the argmax N_k = v_k t - (V - v_k)

Nothing cancels in the first six (sums of terms of one sign). M_i and N_i can cancel;
where they are exactly 0 is decided algebraically, the rest by escalation:
d_j are distinct-or-equal dyadic rationals, so by the Lindemann-Weierstrass theorem a
combination sum_j c_j exp(d_j) with dyadic c_j is 0 only when, grouping equal d_j, every
group's coefficient sum is 0. For M_i that means every group's mean cotangent equals v_i;
for N_i: v_i = 0 and V = 0, or all x equal and v_i = V / n. Every nonzero value is
irrational except sigmoid(0) = 1/2 and the softmax-like quotients of equal inputs
(e_j = 1: rational, exact when representable), so the escalation always ends.
"""

from __future__ import annotations

import numpy as np

from .reference import _log1p_down, _log1p_up, _strict


def _lib():
    from mpmath import libmp

    return libmp


def _exp_iv(d, wp):
    L = _lib()
    return L.mpf_exp(d, wp, "f"), L.mpf_exp(d, wp, "c")


def _neg_abs(x):
    L = _lib()
    return L.mpf_neg(L.mpf_abs(x))


# ------------------------------------------------------------ elementwise family
def _softplus_core(xv, wp):
    """(x exact, [L lo, L hi]) with L = log1p(exp(-|x|)) > 0."""
    L = _lib()
    x = L.from_float(float(xv))
    a_lo, a_hi = _exp_iv(_neg_abs(x), wp)
    return x, a_lo, a_hi, _log1p_down(a_lo, wp), _log1p_up(a_hi, wp)


def enclose_sigmoid(x_row, extra, prec: int, fmt_p: int = 64) -> list:
    L = _lib()
    wp = prec + 10
    out = []
    for xv in x_row:
        x = L.from_float(float(xv))
        a_lo, a_hi = _exp_iv(_neg_abs(x), wp)
        if not x[1]:  # x = 0: exactly 1/2
            h = L.mpf_shift(L.fone, -1)
            out.append((h, h, h, h))
            continue
        if x[0] == 0:  # x > 0: 1 / (1 + a), decreasing in a
            lo = L.mpf_div(L.fone, L.mpf_add(L.fone, a_hi, wp, "c"), prec, "f")
            hi = L.mpf_div(L.fone, L.mpf_add(L.fone, a_lo, wp, "f"), prec, "c")
        else:  # a / (1 + a), increasing in a
            lo = L.mpf_div(a_lo, L.mpf_add(L.fone, a_lo, wp, "c"), prec, "f")
            hi = L.mpf_div(a_hi, L.mpf_add(L.fone, a_hi, wp, "f"), prec, "c")
        out.append(_strict(lo, hi, high=L.fone, p=fmt_p))
    return out


def enclose_log_sigmoid(x_row, extra, prec: int, fmt_p: int = 64) -> list:
    L = _lib()
    wp = prec + 10
    out = []
    for xv in x_row:
        x, _, _, l_lo, l_hi = _softplus_core(xv, wp)
        b = x if x[0] else L.fzero  # min(x, 0)
        lo, hi = L.mpf_sub(b, l_hi, prec, "f"), L.mpf_sub(b, l_lo, prec, "c")
        out.append(_strict(lo, hi, high=b, p=fmt_p))
    return out


def enclose_softplus(x_row, extra, prec: int, fmt_p: int = 64) -> list:
    L = _lib()
    wp = prec + 10
    out = []
    for xv in x_row:
        x, _, _, l_lo, l_hi = _softplus_core(xv, wp)
        b = L.fzero if x[0] else x  # max(x, 0)
        lo, hi = L.mpf_add(b, l_lo, prec, "f"), L.mpf_add(b, l_hi, prec, "c")
        out.append(_strict(lo, hi, low=b, p=fmt_p))
    return out


def enclose_binary_cross_entropy(x_row, z_row, prec: int, fmt_p: int = 64) -> list:
    """z_row: the targets, one per element (exact format values in [0, 1])."""
    L = _lib()
    wp = prec + 10
    z_row = np.broadcast_to(np.asarray(z_row, dtype=np.float64), np.shape(x_row))
    out = []
    for xv, zv in zip(x_row, z_row):
        x, _, _, l_lo, l_hi = _softplus_core(xv, wp)
        z = L.from_float(float(zv))
        b = L.mpf_sub(L.fzero if x[0] else x, L.mpf_mul(x, z, 0), 0)  # max(x, 0) - x z, exact, >= 0
        lo, hi = L.mpf_add(b, l_lo, prec, "f"), L.mpf_add(b, l_hi, prec, "c")
        out.append(_strict(lo, hi, low=b, p=fmt_p))
    return out


# --------------------------------------------------------- softmax-based parts
def _vector(x_row, wp):
    """x exact, k (first argmax), d = x - m exact, exp intervals (e_k = 1 exactly), t interval."""
    L = _lib()
    xs = [L.from_float(float(v)) for v in x_row]
    k = int(np.argmax(x_row))
    d = [L.mpf_sub(v, xs[k], 0) for v in xs]
    elo, ehi = [], []
    tlo = thi = L.fzero
    for i, di in enumerate(d):
        if i == k:
            elo.append(L.fone)
            ehi.append(L.fone)
            continue
        a, b = _exp_iv(di, wp)
        elo.append(a)
        ehi.append(b)
        tlo = L.mpf_add(tlo, a, wp, "f")
        thi = L.mpf_add(thi, b, wp, "c")
    return xs, k, d, elo, ehi, tlo, thi


def enclose_smoothed_cross_entropy(x_row, extra, prec: int, fmt_p: int = 64) -> list:
    """extra: (target, epsilon), epsilon an exact format value in [0, 1]."""
    L = _lib()
    target, eps = int(extra[0]), L.from_float(float(extra[1]))
    wp = prec + 10
    _, _, d, _, _, tlo, thi = _vector(x_row, wp)
    lp_lo, lp_hi = _log1p_down(tlo, wp), _log1p_up(thi, wp)
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
    return [_strict(lo, hi, low=c_lo, p=fmt_p)]  # lp > 0: the loss exceeds the exact c


def _div_iv(nlo, nhi, dlo, dhi, prec):
    """[nlo, nhi] / [dlo, dhi] with 0 < dlo <= dhi, rounded outward."""
    L = _lib()
    lo = L.mpf_div(nlo, dhi if nlo[0] == 0 else dlo, prec, "f")
    hi = L.mpf_div(nhi, dlo if nhi[0] == 0 else dhi, prec, "c")
    return lo, hi


def _mul_scalar_iv(c, lo, hi, wp):
    """c [lo, hi] for an exact c, rounded outward."""
    L = _lib()
    if c[0]:
        lo, hi = hi, lo
    return L.mpf_mul(c, lo, wp, "f"), L.mpf_mul(c, hi, wp, "c")


def enclose_cross_entropy_backward(x_row, target, prec: int, fmt_p: int = 64) -> list:
    L = _lib()
    target = int(target)
    wp = prec + 10
    _, k, d, elo, ehi, tlo, thi = _vector(x_row, wp)
    slo, shi = L.mpf_add(L.fone, tlo, wp, "f"), L.mpf_add(L.fone, thi, wp, "c")
    olo = ohi = L.fzero  # the sum of the other terms: exact 1 for the argmax when target != k
    for j in range(len(d)):
        if j != target:
            olo = L.mpf_add(olo, elo[j], wp, "f")
            ohi = L.mpf_add(ohi, ehi[j], wp, "c")
    out = []
    for i in range(len(d)):
        if i == target:
            lo, hi = _div_iv(olo, ohi, slo, shi, prec)
            lo, hi = L.mpf_neg(hi), L.mpf_neg(lo)
            out.append((lo, hi, lo, hi) if len(d) < 2 else _strict(lo, hi, low=L.mpf_neg(L.fone), p=fmt_p))
        else:
            lo, hi = _div_iv(elo[i], ehi[i], slo, shi, prec)
            out.append(_strict(lo, hi, high=L.fone, p=fmt_p))
    return out


def _groups_equal_mean(d, vs):
    """The common mean cotangent of the groups of equal d, or None where the means differ."""
    from fractions import Fraction

    sums: dict = {}
    for di, v in zip(d, vs):
        s, c = sums.get(di, (Fraction(0), 0))
        sums[di] = (s + Fraction(v), c + 1)
    means = {s / c for s, c in sums.values()}
    return means.pop() if len(means) == 1 else None


def enclose_softmax_backward(x_row, v_row, prec: int, fmt_p: int = 64) -> list:
    """v_row: the cotangent (exact format values, one per element)."""
    L = _lib()
    wp = prec + 10
    _, k, d, elo, ehi, tlo, thi = _vector(x_row, wp)
    vf = [float(v) for v in np.broadcast_to(np.asarray(v_row, dtype=np.float64), np.shape(x_row))]
    vs = [L.from_float(v) for v in vf]
    mean = _groups_equal_mean(d, vf)
    slo, shi = L.mpf_add(L.fone, tlo, wp, "f"), L.mpf_add(L.fone, thi, wp, "c")
    s2lo, s2hi = L.mpf_mul(slo, slo, wp, "f"), L.mpf_mul(shi, shi, wp, "c")
    plo = phi = L.fzero  # P = sum_{j != k} v_j e_j
    for j in range(len(d)):
        if j != k:
            a, b = _mul_scalar_iv(vs[j], elo[j], ehi[j], wp)
            plo, phi = L.mpf_add(plo, a, wp, "f"), L.mpf_add(phi, b, wp, "c")
    out = []
    for i in range(len(d)):
        if mean is not None and vf[i] == mean:
            out.append((L.fzero,) * 4)
            continue
        # M_i = (v_i - v_k) + v_i t - P
        a, b = _mul_scalar_iv(vs[i], tlo, thi, wp)
        c = L.mpf_sub(vs[i], vs[k], 0)
        mlo = L.mpf_sub(L.mpf_add(c, a, wp, "f"), phi, wp, "f")
        mhi = L.mpf_sub(L.mpf_add(c, b, wp, "c"), plo, wp, "c")
        # e_i M_i: e_i > 0
        if mlo[0] == 0:
            nlo, nhi = L.mpf_mul(elo[i], mlo, wp, "f"), L.mpf_mul(ehi[i], mhi, wp, "c")
        elif mhi[0]:  # M < 0 (or its upper end 0)
            nlo, nhi = L.mpf_mul(ehi[i], mlo, wp, "f"), L.mpf_mul(elo[i], mhi, wp, "c")
        else:  # straddles 0: not decided at this precision
            nlo, nhi = L.mpf_mul(ehi[i], mlo, wp, "f"), L.mpf_mul(ehi[i], mhi, wp, "c")
        lo, hi = _div_iv(nlo, nhi, s2lo, s2hi, prec)
        out.append((lo, hi, lo, hi))
    return out


def enclose_log_softmax_backward(x_row, v_row, prec: int, fmt_p: int = 64) -> list:
    L = _lib()
    wp = prec + 10
    _, k, d, elo, ehi, tlo, thi = _vector(x_row, wp)
    n = len(d)
    vf = [float(v) for v in np.broadcast_to(np.asarray(v_row, dtype=np.float64), np.shape(x_row))]
    vs = [L.from_float(v) for v in vf]
    V = L.fzero
    for v in vs:
        V = L.mpf_add(V, v, 0)  # exact
    from fractions import Fraction

    Vq = sum((Fraction(v) for v in vf), Fraction(0))
    all_equal = all(di == d[0] for di in d)
    slo, shi = L.mpf_add(L.fone, tlo, wp, "f"), L.mpf_add(L.fone, thi, wp, "c")
    out = []
    for i in range(n):
        if (vf[i] == 0 and Vq == 0) or (all_equal and Fraction(vf[i]) * n == Vq):
            out.append((L.fzero,) * 4)
            continue
        if i == k:  # N_k = v_k t - (V - v_k)
            a, b = _mul_scalar_iv(vs[k], tlo, thi, wp)
            r = L.mpf_sub(V, vs[k], 0)
            nlo, nhi = L.mpf_sub(a, r, wp, "f"), L.mpf_sub(b, r, wp, "c")
        else:  # N_i = v_i S - V e_i
            a, b = _mul_scalar_iv(vs[i], slo, shi, wp)
            c, e = _mul_scalar_iv(V, elo[i], ehi[i], wp)
            nlo, nhi = L.mpf_sub(a, e, wp, "f"), L.mpf_sub(b, c, wp, "c")
        lo, hi = _div_iv(nlo, nhi, slo, shi, prec)
        out.append((lo, hi, lo, hi))
    return out


ENCLOSURES = {
    "sigmoid": enclose_sigmoid,
    "log_sigmoid": enclose_log_sigmoid,
    "softplus": enclose_softplus,
    "binary_cross_entropy": enclose_binary_cross_entropy,
    "smoothed_cross_entropy": enclose_smoothed_cross_entropy,
    "cross_entropy_backward": enclose_cross_entropy_backward,
    "softmax_backward": enclose_softmax_backward,
    "log_softmax_backward": enclose_log_softmax_backward,
}


# ------------------------------------------------------------------ fast path
def fast_sigmoid_family(fmt, x: np.ndarray, args: dict, from_interval, TINY) -> dict:
    """sigmoid, log_sigmoid, softplus (and binary_cross_entropy when args hold a ``label``) over
    the batch x (B, n) in a working type, each with a proven bound (c_lib = 16 ulp for the
    library's exp and log1p, as the softmax family assumes)."""
    u = float(np.finfo(x.dtype).eps) / 2
    c_lib = 16 * u
    out = {}
    with np.errstate(all="ignore"):
        a = np.exp(-np.abs(x))  # relative error <= c_lib (x exact), TINY absolute below the range
        L = np.log1p(a)
        eL = (c_lib * a * 1.01 + c_lib * L) * 1.01 + TINY
        pos = x >= 0
        zero = x * 0
        b_hi = np.maximum(x, zero)
        b_lo = np.minimum(x, zero)
        sp = b_hi + L
        out["softplus"] = from_interval(fmt, sp, 2 * (eL + u * np.abs(sp)), lower=b_hi)
        ls = b_lo - L
        out["log_sigmoid"] = from_interval(fmt, ls, 2 * (eL + u * np.abs(ls)),
                                           upper=np.where(x < 0, x, np.inf))
        s = np.where(pos, 1 / (1 + a), a / (1 + a))
        out["sigmoid"] = from_interval(fmt, s, 2 * ((2 * c_lib + 4 * u) * s + TINY),
                                       upper=x.dtype.type(1.0))
        z = args.get("label") if args else None
        if z is not None:
            z = np.asarray(z, dtype=x.dtype)
            z = z[..., None] if z.ndim == x.ndim - 1 else z
            xz = x * z  # exact: two format values of p <= 24 bits, far from the working type's limits
            b = b_hi - xz
            bb = b - b_hi  # TwoSum: is max(x, 0) - x z exact?
            b_exact = ((b_hi - (b - bb)) + (-xz - bb)) == 0
            r = b + L
            out["binary_cross_entropy"] = from_interval(
                fmt, r, 2 * (eL + u * np.abs(b) + u * np.abs(r)), lower=np.where(b_exact, b, -np.inf))
    return out


def _fast_parts(x):
    """Shared pieces of the softmax-based fast bounds, in the working type of x (B, n):
    k, d = x - m, e = exp(d) with e_k = 1 exactly, t = sum_{j != k} e_j, and their bounds."""
    n = x.shape[-1]
    u = float(np.finfo(x.dtype).eps) / 2
    c_lib = 16 * u
    m = np.max(x, axis=-1, keepdims=True)
    k = np.argmax(x, axis=-1)[..., None]
    d = x - m
    e = np.exp(d)
    np.put_along_axis(e, k, 1.0, axis=-1)  # exp(0) = 1 exactly
    rel_e = (np.max(np.abs(d), axis=-1, keepdims=True) * u * 1.01 + c_lib)  # per-row bound
    t = np.sum(np.where(np.arange(n) == k, 0.0, e), axis=-1, keepdims=True)
    return n, u, c_lib, k, d, e, rel_e, t


def fast_backward_family(fmt, x: np.ndarray, args: dict, from_interval, TINY) -> dict:
    """softmax_backward and log_softmax_backward (args hold a ``cotangent``) and
    cross_entropy_backward (a ``target``) with proven bounds; where a value cancels beyond the
    bound's reach the interval leaves it undecided and mpmath settles it."""
    out = {}
    with np.errstate(all="ignore"):
        n, u, c_lib, k, d, e, rel_e, t = _fast_parts(x)
        rel = (rel_e + n * u) * 1.01  # relative bound of any sum of e's (terms of one sign)
        et = t * rel + n * TINY
        S = 1 + t
        eS = et + u * S
        target = args.get("target") if args else None
        if target is not None:
            tg = np.asarray(target)[..., None]
            g = e / S
            err = g * (rel_e + eS / S + u) * 1.01 + TINY
            others = np.sum(np.where(np.arange(n) == tg, 0.0, e), axis=-1, keepdims=True)
            gt = -others / S
            errt = np.abs(gt) * (2 * rel + 2 * u + eS / S) * 1.01 + n * TINY
            g = g.copy()
            np.put_along_axis(g, tg, gt, axis=-1)
            np.put_along_axis(err, tg, errt, axis=-1)
            upper = np.ones_like(g)
            np.put_along_axis(upper, tg, np.inf, axis=-1)
            lower = np.full_like(g, -np.inf)
            np.put_along_axis(lower, tg, -1.0 if n >= 2 else -np.inf, axis=-1)
            out["cross_entropy_backward"] = from_interval(fmt, g, 2 * err, lower=lower,
                                                          upper=upper if n >= 2 else None)
        v = args.get("cotangent") if args else None
        if v is not None:
            v = np.broadcast_to(np.asarray(v, dtype=x.dtype), x.shape)
            mask_k = np.arange(n) == k
            vk = np.take_along_axis(v, k, axis=-1)
            av = np.abs(v)
            # softmax_backward: g_i = e_i M_i / S^2, M_i = (v_i - v_k) + v_i t - P
            ve = np.where(mask_k, 0.0, v * e)
            P = np.sum(ve, axis=-1, keepdims=True)
            A = np.sum(np.where(mask_k, 0.0, av * e), axis=-1, keepdims=True)
            eP = A * (rel_e + u + n * u) * 1.01 + n * TINY * np.max(av, axis=-1, keepdims=True)
            c = v - vk
            vt = v * t
            M = (c + vt) - P
            eM = (u * np.abs(c) + av * et + u * np.abs(vt) + eP + 2 * u * (np.abs(c) + np.abs(vt) + A)) * 1.01
            S2 = S * S
            g = e * M / S2
            err = (np.abs(g) * (rel_e + 2 * eS / S + 4 * u) + (e + TINY) * eM / S2 + TINY * np.abs(M) / S2) * 1.05 + TINY
            out["softmax_backward"] = from_interval(fmt, g, 2 * err)
            # log_softmax_backward: N_i = v_i S - V e_i, at the argmax N_k = v_k t - (V - v_k)
            V = np.sum(v, axis=-1, keepdims=True)
            eV = n * u * np.sum(av, axis=-1, keepdims=True)
            R = np.sum(np.where(mask_k, 0.0, v), axis=-1, keepdims=True)
            eR = n * u * np.sum(np.where(mask_k, 0.0, av), axis=-1, keepdims=True)
            vS, Ve = v * S, V * e
            N = vS - Ve
            eN = (av * eS + u * np.abs(vS) + np.abs(V) * (e * rel_e + TINY) + eV * (e + TINY) + u * np.abs(Ve)
                  + u * np.abs(N))
            Nk = vk * t - R
            eNk = np.abs(vk) * et + u * np.abs(vk * t) + eR + u * np.abs(Nk)
            N = np.where(mask_k, Nk, N)
            eN = np.where(mask_k, eNk, eN)
            g = N / S
            err = ((eN + np.abs(N) * eS / S) / S + u * np.abs(g)) * 1.05 + TINY
            out["log_softmax_backward"] = from_interval(fmt, g, 2 * err)
    return out


def fast_smoothed(fmt, x: np.ndarray, args: dict, from_interval, TINY) -> dict:
    """smoothed_cross_entropy = lp - (1 - eps) d_t - (eps / n) sum(d), a proven bound."""
    target, eps = args.get("target"), args.get("epsilon")
    if target is None or eps is None:
        return {}
    with np.errstate(all="ignore"):
        n, u, c_lib, k, d, e, rel_e, t = _fast_parts(x)
        et = t * (rel_e + n * u) * 1.01 + n * TINY
        lp = np.log1p(t)
        elp = et / (1.0 + np.maximum(t - et, 0.0)) + c_lib * lp + TINY
        eps = np.broadcast_to(np.asarray(eps, dtype=x.dtype).reshape(-1, 1), lp.shape)
        dt = np.take_along_axis(d, np.asarray(target)[..., None], axis=-1)
        w = 1 - eps
        c1 = -(w * dt)
        e1 = np.abs(c1) * 4 * u
        D = np.sum(d, axis=-1, keepdims=True)
        eD = np.sum(np.abs(d), axis=-1, keepdims=True) * (n + 1) * u * 1.01
        c2 = -(eps / n) * D
        e2 = (eps / n) * (eD + 3 * u * np.abs(D))
        r = lp + (c1 + c2)
        err = (elp + e1 + e2 + 2 * u * (lp + np.abs(c1) + np.abs(c2))) * 1.05
        res = from_interval(fmt, r[..., 0], 2 * err[..., 0])
    return {"smoothed_cross_entropy": res}


# ------------------------------------------------------------------ thresholds
def binary_thresholds(fmt) -> dict:
    """Where the naive binary family loses everything, exactly (mpmath, 30 digits).

    ``sigmoid_rounds_to_1_x`` = ln(2^(p+1) - 1): at and above it 1 / (1 + exp(-x)) rounds to 1
    (it reaches 1 - 2^-(p+1), the midpoint below 1, which ties to the even 1), so 1 - sigmoid(x)
    and log(1 - sigmoid(x)) (BCE from probabilities) lose every digit;
    ``one_plus_exp_absorbed_x`` = -p ln 2: at and below it 1 + exp(x) rounds to 1 (exp(x) <=
    2^-p, half an ulp of 1, ties to even), so log(1 + exp(x)) -- naive softplus, naive BCE from
    logits -- returns 0 where the exact value is exp(x) (the log1p form keeps it).
    """
    import mpmath

    with mpmath.mp.workdps(60):
        s1 = mpmath.log(mpmath.mpf(2) ** (fmt.p + 1) - 1)
        ab = -fmt.p * mpmath.log(2)
        return {"sigmoid_rounds_to_1_x": mpmath.nstr(s1, 30), "one_plus_exp_absorbed_x": mpmath.nstr(ab, 30)}
