"""Exact formulas of the gradients (numstab/functions/backward.py): softmax_backward,
log_softmax_backward (a cotangent v) and cross_entropy_backward (a target index).

With m = max(x), k its first argmax, d = x - m exact, e_j = exp(d_j) (e_k = 1 exactly),
t = sum_{j != k} e_j, S = 1 + t, V = sum(v):

    cross_entropy_backward  e_i / S (i != target), -(sum_{j != target} e_j) / S at the target
    softmax_backward        e_i M_i / S^2, M_i = sum_j (v_i - v_j) e_j
                                = (v_i - v_k) + v_i t - sum_{j != k} v_j e_j
    log_softmax_backward    N_i / S, N_i = v_i S - V e_i, at the argmax N_k = v_k t - (V - v_k)

The first never cancels. M_i and N_i can: where they are exactly 0 is decided
algebraically, the rest by the escalation. The d_j are dyadic rationals, so by the
Lindemann-Weierstrass theorem sum_j c_j exp(d_j) with dyadic c_j is 0 only when, grouping
equal d_j, every group's coefficient sum is 0: for M_i, every group's mean cotangent equals
v_i; for N_i, v_i = 0 and V = 0, or all x equal and v_i = V / n. Every other value is
nonzero, and irrational unless all x are equal (then e_j = 1 and the values are rationals,
exact where representable), so the escalation ends.
"""

from __future__ import annotations

import numpy as np

from ..formats import Format
from ..results import RefData
from .core import from_interval, lib_error, pairwise_sum, recording, strict, tiny, unit_roundoff, working

FUNCTIONS = ("softmax_backward", "log_softmax_backward", "cross_entropy_backward")
#: The fast tiers (:func:`fast_block`) read a -inf entry as an exact zero term: d = x - m = -inf,
#: e = exp(d) = 0, so v_j e_j adds nothing to P and A, nor e_j to t; the bound of exp's argument
#: (max |d|) is taken over the finite entries, and sum(v) over every entry is log_softmax_backward's
#: V (the compacted rows' sum of the kept entries plus R, the dropped ones'). A vector whose masked
#: entries are left in place gets the bounds of its finite entries (at least two of them; the values
#: computed at the -inf entries are not read: the mask layer puts their exact values there).
MASKED = True


def _lib():
    from mpmath import libmp

    return libmp


def _exp_iv(d, wp):
    L = _lib()
    return L.mpf_exp(d, wp, "f"), L.mpf_exp(d, wp, "c")


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


def _whole_exps(x_row, whole, js, wp):
    """(the e_j intervals at the wanted columns js of a piece of a long vector, e = 1 at the
    vector's argmax, and (tlo, thi), its t's bounds): reference.softmax.Whole's m, k and t."""
    L = _lib()
    m = L.from_float(float(whole.m))
    e = {}
    for j in js:
        d = L.mpf_sub(L.from_float(float(x_row[j])), m, 0)  # exact
        e[j] = (L.fone, L.fone) if j == whole.k else _exp_iv(d, wp)
    return e, whole.t(wp - 10)


def enclose_cross_entropy_backward(x_row, target, prec: int, fmt_p: int = 64, js=None, whole=None) -> list:
    """``js``: the elements wanted (default all), in that order. ``whole``
    (reference.softmax.Whole): x_row is a piece of a longer vector (its columns from whole.c0),
    whose m, argmax, n and t are given; the sum of the terms but the target's is then S - e_target
    (or t at the argmax)."""
    L = _lib()
    target = int(target)
    wp = prec + 10
    if whole is not None:
        js = list(range(len(x_row)) if js is None else js)
        tl = target - whole.c0
        e, (tlo, thi) = _whole_exps(x_row, whole, js + ([tl] if 0 <= tl < len(x_row) else []), wp)
        elo = {j: a for j, (a, _b) in e.items()}
        ehi = {j: b for j, (_a, b) in e.items()}
        n = whole.n
        slo, shi = L.mpf_add(L.fone, tlo, wp, "f"), L.mpf_add(L.fone, thi, wp, "c")
        if 0 <= tl < len(x_row) and tl == whole.k:
            olo, ohi = tlo, thi
        elif 0 <= tl < len(x_row):
            olo, ohi = L.mpf_sub(slo, ehi[tl], wp, "f"), L.mpf_sub(shi, elo[tl], wp, "c")
        target = tl  # the target's place in x_row (outside it: no element of js is the target)
    else:
        _, k, d, elo, ehi, tlo, thi = _vector(x_row, wp)
        n = len(d)
        slo, shi = L.mpf_add(L.fone, tlo, wp, "f"), L.mpf_add(L.fone, thi, wp, "c")
        olo = ohi = L.fzero  # the sum of the other terms: exact 1 for the argmax when target != k
        for j in range(len(d)):
            if j != target:
                olo = L.mpf_add(olo, elo[j], wp, "f")
                ohi = L.mpf_add(ohi, ehi[j], wp, "c")
    out = []
    for i in range(n) if js is None else js:
        if i == target:
            lo, hi = _div_iv(olo, ohi, slo, shi, prec)
            lo, hi = L.mpf_neg(hi), L.mpf_neg(lo)
            out.append((lo, hi, lo, hi) if n < 2 else strict(lo, hi, low=L.mpf_neg(L.fone), p=fmt_p))
        else:
            lo, hi = _div_iv(elo[i], ehi[i], slo, shi, prec)
            out.append(strict(lo, hi, high=L.fone, p=fmt_p))
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


def enclose_softmax_backward(x_row, v_row, prec: int, fmt_p: int = 64, js=None) -> list:
    """v_row: the cotangent (exact format values, one per element); ``js``: the elements wanted."""
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
    for i in range(len(d)) if js is None else js:
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


def enclose_log_softmax_backward(x_row, v_row, prec: int, fmt_p: int = 64, v_rest=None, js=None) -> list:
    """``v_rest``: cotangents of entries dropped from x (masked: s = 0 there) that still count
    in V = sum(v); ``js``: the elements wanted."""
    L = _lib()
    wp = prec + 10
    _, k, d, elo, ehi, tlo, thi = _vector(x_row, wp)
    n = len(d)
    vf = [float(v) for v in np.broadcast_to(np.asarray(v_row, dtype=np.float64), np.shape(x_row))]
    vs = [L.from_float(v) for v in vf]
    from fractions import Fraction

    rest = [float(v) for v in np.ravel(np.asarray(v_rest, dtype=np.float64))] if v_rest is not None else []
    V = L.fzero
    for v in vs + [L.from_float(r) for r in rest]:
        V = L.mpf_add(V, v, 0)  # exact
    Vq = sum((Fraction(v) for v in vf + rest), Fraction(0))
    all_equal = all(di == d[0] for di in d)
    slo, shi = L.mpf_add(L.fone, tlo, wp, "f"), L.mpf_add(L.fone, thi, wp, "c")
    out = []
    for i in range(n) if js is None else js:
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
        if n < 2 or not V[1]:
            out.append((lo, hi, lo, hi))
            continue
        # g_i = v_i - s_i V with 0 < s_i < 1 (n >= 2, finite x): strictly between v_i and v_i - V,
        # which settles a g_i astronomically close to either (a dominant logit: s_i = 1 - e^-20000)
        a, b = vs[i], L.mpf_sub(vs[i], V, 0)  # exact
        if L.mpf_cmp(a, b) > 0:
            a, b = b, a
        out.append(strict(lo, hi, low=a, high=b, p=fmt_p))
    return out


def rational(x_row, args_row: dict) -> dict[str, list]:
    """The gradients that are rational, exactly (Fraction per element): with V = sum(v) = 0,
    log_softmax_backward = v (the softmax term vanishes whatever x); with every x equal (s = 1/n),
    softmax_backward = (v_i - V/n) / n, log_softmax_backward = v_i - V/n and
    cross_entropy_backward = 1/n - [i = target]. Their enclosures are points (or, for
    non-dyadic rationals, intervals that never contain a rounding boundary) and their figures
    are decided exactly, ties included."""
    from fractions import Fraction

    x = np.asarray(x_row, dtype=np.float64)
    if not np.isfinite(x).all() or x.size == 0:
        return {}
    n = x.size
    equal = bool((x == x[0]).all())
    out: dict = {}
    v = args_row.get("cotangent") if args_row else None
    if v is not None:
        vq = [Fraction(float(a)) for a in np.broadcast_to(np.asarray(v, dtype=np.float64), x.shape)]
        rest = args_row.get("cotangent_rest")
        rest = [] if rest is None else np.ravel(np.asarray(rest, dtype=np.float64))
        rq = [Fraction(float(a)) for a in rest]
        V = sum(vq + rq, Fraction(0))  # log_softmax_backward's sum(v): dropped entries count
        if V == 0:
            out["log_softmax_backward"] = vq
        if equal:
            out["log_softmax_backward"] = [a - V / n for a in vq]
            mean = sum(vq, Fraction(0)) / n  # s.v: only the entries that stay (s = 0 elsewhere)
            out["softmax_backward"] = [(a - mean) / n for a in vq]
    t = args_row.get("target") if args_row else None
    if t is not None and equal:  # a target >= n: none (it dropped out of a masked vector)
        out["cross_entropy_backward"] = [Fraction(1, n) - (1 if i == int(t) else 0) for i in range(n)]
    return out


def _rational_iv(q, prec: int) -> tuple:
    L = _lib()
    lo = L.from_rational(q.numerator, q.denominator, prec, "f")
    hi = L.from_rational(q.numerator, q.denominator, prec, "c")
    return (lo, hi, lo, hi)


def enclose(x_row, args_row: dict, prec: int, fmt_p: int = 64, wanted=None, whole=None) -> dict[str, list]:
    """Every gradient the arguments allow, or with ``wanted`` ({function: element indices}) only
    those elements of those functions (the row's sums are still taken over every element).
    ``whole`` (reference.softmax.Whole): x_row is a piece of a longer vector -- only
    cross_entropy_backward is enclosed so (the others need the cotangent of the whole vector)."""
    if whole is not None:
        if set(wanted) - {"cross_entropy_backward"}:
            raise ValueError("backward: only cross_entropy_backward of a piece of a vector")
        return {"cross_entropy_backward": enclose_cross_entropy_backward(
            x_row, int(np.ravel(args_row["target"])[0]), prec, fmt_p, list(wanted["cross_entropy_backward"]),
            whole)}
    out = _enclose(x_row, args_row, prec, fmt_p, wanted)
    for f, qs in rational(x_row, args_row).items():
        if f in out:
            js = range(len(qs)) if wanted is None else wanted[f]
            out[f] = [_rational_iv(qs[j], prec + 10) for j in js]
    return out


def _enclose(x_row, args_row: dict, prec: int, fmt_p: int = 64, wanted=None) -> dict[str, list]:
    out = {}

    def want(f):
        return wanted is None or f in wanted

    def js(f):
        return None if wanted is None else list(wanted[f])

    v = args_row.get("cotangent") if args_row else None
    if v is not None:
        if want("softmax_backward"):
            out["softmax_backward"] = enclose_softmax_backward(x_row, v, prec, fmt_p,
                                                               js=js("softmax_backward"))
        if want("log_softmax_backward"):
            out["log_softmax_backward"] = enclose_log_softmax_backward(
                x_row, v, prec, fmt_p, args_row.get("cotangent_rest"), js=js("log_softmax_backward"))
    t = args_row.get("target") if args_row else None
    if t is not None and want("cross_entropy_backward"):
        out["cross_entropy_backward"] = enclose_cross_entropy_backward(x_row, int(t), prec, fmt_p,
                                                                       js=js("cross_entropy_backward"))
    return out


# ------------------------------------------------------------------ fast path
def _fast_parts(x):
    """Shared pieces of the softmax-based fast bounds, in the working type of x (B, n):
    k, d = x - m, e = exp(d) with e_k = 1 exactly, t = sum_{j != k} e_j, and their bounds."""
    n = x.shape[-1]
    u, c_lib = unit_roundoff(x.dtype), lib_error(x.dtype)
    m = np.max(x, axis=-1, keepdims=True)
    k = np.argmax(x, axis=-1)[..., None]
    d = x - m
    e = np.exp(d)
    np.put_along_axis(e, k, 1.0, axis=-1)  # exp(0) = 1 exactly
    ad = np.abs(d)
    masked = x == -np.inf
    if masked.any():  # masked entries (MASKED): e = 0 exactly, no argument to bound
        ad = np.where(masked, 0, ad)
    rel_e = (np.max(ad, axis=-1, keepdims=True) * u * 1.01 + c_lib)  # per-row bound
    t = _sum(np.where(np.arange(n) == k, 0.0, e))
    return n, u, c_lib, k, d, e, rel_e, t


def _depth(n: int) -> int:
    """ceil(log2 n): the halvings core.pairwise_sum makes on n terms (0 for n <= 1)."""
    return max(int(n) - 1, 0).bit_length()


def _sum(a: np.ndarray) -> np.ndarray:
    """Sum along the last axis (kept, length 1) by halving (core.pairwise_sum): every term meets
    at most _depth(n) = ceil(log2 n) roundings, so the error is at most
    gamma_depth * sum |a_i| <= 1.01 depth u sum |a_i| -- not n u, which made the bounds of a
    long vector (300,000 values: 1.6e-14 relative in long double) leave elements to mpmath,
    and mpmath then sums the whole row."""
    if a.shape[-1] == 0:
        return np.zeros(a.shape[:-1] + (1,), dtype=a.dtype)
    return pairwise_sum(a)[0][..., None]



def fast_block(fmt: Format, x: np.ndarray, args: dict) -> dict[str, RefData]:
    """softmax_backward and log_softmax_backward (args hold a ``cotangent``) and
    cross_entropy_backward (a ``target``) with proven bounds; where a value cancels beyond the
    bound's reach the interval leaves it undecided and mpmath settles it."""
    x = working(x, fmt)
    TINY = tiny(x.dtype)
    out = {}
    with np.errstate(all="ignore"):
        n, u, c_lib, k, d, e, rel_e, t = _fast_parts(x)
        dep = _depth(n)  # the roundings a term meets in a pairwise _sum of n terms
        rel = (rel_e + dep * u) * 1.01  # relative bound of any _sum of e's (terms of one sign)
        et = t * rel + n * TINY
        S = 1 + t
        eS = et + u * S
        target = args.get("target") if args else None
        if target is not None:
            tg = np.asarray(target)[..., None]  # >= n: no target (it dropped out of a masked vector)
            hit = np.arange(n) == tg
            g = e / S
            err = g * (rel_e + eS / S + u) * 1.01 + TINY
            others = _sum(np.where(hit, 0.0, e))
            gt = -others / S
            errt = np.abs(gt) * (2 * rel + 2 * u + eS / S) * 1.01 + n * TINY
            g = np.where(hit, gt, g)
            err = np.where(hit, errt, err)
            # s_i < 1 strictly beside another entry; -s_target's complement > -1 likewise
            upper = np.where(hit, np.inf, 1.0 if n >= 2 else np.inf).astype(x.dtype)
            lower = np.where(hit, -1.0 if n >= 2 else -np.inf, -np.inf).astype(x.dtype)
            out["cross_entropy_backward"] = from_interval(fmt, g, 2 * err, lower=lower, upper=upper)
        v = args.get("cotangent") if args else None
        if v is not None:
            v = np.broadcast_to(np.asarray(v, dtype=x.dtype), x.shape)
            mask_k = np.arange(n) == k
            vk = np.take_along_axis(v, k, axis=-1)
            av = np.abs(v)
            # softmax_backward: g_i = e_i M_i / S^2, M_i = (v_i - v_k) + v_i t - P
            ve = np.where(mask_k, 0.0, v * e)
            P = _sum(ve)
            A = np.sum(np.where(mask_k, 0.0, av * e), axis=-1, keepdims=True)  # a magnitude
            eP = A * (rel_e + u + dep * u) * 1.01 + n * TINY * np.max(av, axis=-1, keepdims=True)
            c = v - vk
            vt = v * t
            M = (c + vt) - P
            eM = (u * np.abs(c) + av * et + u * np.abs(vt) + eP + 2 * u * (np.abs(c) + np.abs(vt) + A)) * 1.01
            S2 = S * S
            g = e * M / S2
            err = (np.abs(g) * (rel_e + 2 * eS / S + 4 * u) + (e + TINY) * eM / S2
                   + TINY * np.abs(M) / S2) * 1.05 + TINY
            out["softmax_backward"] = from_interval(fmt, g, 2 * err)
            # log_softmax_backward: N_i = v_i S - V e_i, at the argmax N_k = v_k t - (V - v_k)
            rest = args.get("cotangent_rest")  # dropped entries' cotangents: they count in sum(v)
            rest = np.zeros(x.shape[:-1] + (1,), dtype=x.dtype) if rest is None else \
                np.asarray(rest, dtype=x.dtype)
            # sum(v) and sum(rest) by halving, then one addition: max(depths) + 1 roundings a term
            dr = (max(dep, _depth(rest.shape[-1])) + 1) * 1.01
            ar = np.sum(np.abs(rest), axis=-1, keepdims=True)  # magnitudes
            rs = _sum(rest)
            sv = _sum(v)
            V = sv + rs
            eV = dr * u * (np.sum(av, axis=-1, keepdims=True) + ar)
            sr = _sum(np.where(mask_k, 0.0, v))
            R = sr + rs
            eR = dr * u * (np.sum(np.where(mask_k, 0.0, av), axis=-1, keepdims=True) + ar)
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
    if not recording():  # the exact strings keep their intervals
        _exact_rows(fmt, out, args, x)
    return out


def fast_elements(fmt: Format, rows: dict, x, args: dict, wt, f: str, bi, ji=None) -> RefData:
    """cross_entropy_backward at the elements (bi, ji) of a piece of a long vector (numstab.vector)
    from the vector's row quantities (reference.softmax.piece_rows: m, t and its bound et, n, the
    target's input xt; ``c0`` the piece's first column), bounded as :func:`fast_block` bounds it:
    e_i / S, and at the target -(S - e_target) / S (t at the vector's maximum, whichever of its
    ties the target is: e_target = 1 is then the argmax's own term)."""
    if f != "cross_entropy_backward":
        raise ValueError(f"{f}: no row quantities of a piece of a vector")
    wt = working(np.zeros(1, dtype=wt), fmt).dtype
    u, c_lib, TINY = unit_roundoff(wt), lib_error(wt), tiny(wt)
    with np.errstate(all="ignore"):
        m = np.asarray(rows["m"]).astype(wt)[bi]
        t = np.asarray(rows["t"]).astype(wt)[bi]
        et = np.asarray(rows["et"], dtype=np.float64)[bi].astype(wt) * 1.01 + u * t  # (converted)
        n = int(rows["n"])
        d = np.asarray(x, dtype=np.float64)[bi, ji].astype(wt) - m
        e = np.exp(d)
        rel_e = np.abs(d) * u * 1.01 + c_lib
        S = 1 + t
        eS = et + u * S
        g = e / S
        err = g * (rel_e + eS / S + u) * 1.01 + TINY
        hit = (np.asarray(ji) + int(rows["c0"])) == int(np.ravel(args["target"])[0])
        if hit.any():
            xt = np.asarray(rows["xt"], dtype=np.float64)[bi].astype(wt)
            dt = xt - m
            e_t = np.exp(dt)
            top = xt == m
            O = np.where(top, t, 1 + (t - e_t))
            eO = np.where(top, et, (et + e_t * (np.abs(dt) * u * 1.01 + c_lib) + u * (t + 1 + e_t)) * 1.01)
            gt = -O / S
            errt = (eO / S + np.abs(gt) * (eS / S + u)) * 1.05 + TINY
            g, err = np.where(hit, gt, g), np.where(hit, errt, err)
        upper = np.where(hit, np.inf, 1.0 if n >= 2 else np.inf).astype(wt)
        lower = np.where(hit, -1.0 if n >= 2 else -np.inf, -np.inf).astype(wt)
        return from_interval(fmt, g, 2 * err, lower=lower, upper=upper)


def _exact_rows(fmt: Format, out: dict, args: dict, x) -> None:
    """The rows whose values are exact numbers, put in ``out`` as such: the intervals around an
    exact 0 leave its relative figure open, which sent the row to mpmath. A vector of one entry (a
    causal mask's first row) has softmax 1, so softmax_backward = 1 (v - 1 v) = 0 and
    cross_entropy_backward = 1 - 1 = 0 at the target, 1 without one (its target dropped out); a
    cotangent of zeros at the entries kept has softmax_backward = s (0 - 0) = 0. log_softmax_backward
    = v - s (sum v + R) is 0 in both cases where the dropped entries' cotangents R are all 0 (or
    none): those compacted away (``cotangent_rest``) and those left in place as -inf (MASKED)."""
    from ..masks import exact_ref

    B, n = shape = x.shape
    args = args or {}
    v, rest = args.get("cotangent"), args.get("cotangent_rest")
    one = n == 1
    kept_zero = dropped_zero = np.zeros(B, dtype=bool)
    if v is not None:  # (a masked entry left in place, MASKED, is a dropped one)
        v0, masked = np.broadcast_to(np.asarray(v), shape) == 0, x == -np.inf
        kept_zero, dropped_zero = (v0 | masked).all(axis=1), (v0 | ~masked).all(axis=1)
    if rest is not None:
        dropped_zero = dropped_zero & (np.asarray(rest) == 0).reshape(B, -1).all(axis=1)
    elif v is None:
        dropped_zero = np.ones(B, dtype=bool)
    rows_of = {"softmax_backward": kept_zero | one, "log_softmax_backward": (kept_zero | one) & dropped_zero}
    for f, rows in rows_of.items():
        if f in out and rows.any():
            out[f].put(rows, exact_ref(fmt, np.zeros((int(rows.sum()), n))))
    if one and "cross_entropy_backward" in out:
        tg = np.asarray(args["target"]).reshape(B, 1)
        out["cross_entropy_backward"] = exact_ref(fmt, np.where(tg == 0, 0.0, 1.0))
