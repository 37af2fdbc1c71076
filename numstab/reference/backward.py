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

import functools

import numpy as np

from ..formats import Format
from ..results import RefData
from .core import (
    at,
    diff_exact,
    from_interval,
    is_quad,
    lib_error,
    log_tiny,
    pairwise_sum,
    recording,
    strict,
    tiny,
    unit_roundoff,
    working,
)

FUNCTIONS = ("softmax_backward", "log_softmax_backward", "cross_entropy_backward")
#: The fast tiers (:func:`fast_block`) read a -inf entry as an exact zero term: d = x - m = -inf,
#: e = exp(d) = 0, so v_j e_j adds nothing to P and A, nor e_j to t; the bound of exp's argument
#: (max |d|) is taken over the finite entries, and sum(v) over every entry is log_softmax_backward's
#: V (the compacted rows' sum of the kept entries plus R, the dropped ones'). A vector whose masked
#: entries are left in place gets the bounds of its finite entries (at least two of them; the values
#: computed at the -inf entries are not read: the mask layer puts their exact values there).
MASKED = True


@functools.cache
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


def _whole_exps(x_row, whole, js, wp, tprec=None):
    """(the e_j intervals at the wanted columns js of a piece of a long vector, e = 1 at the
    vector's argmax, and (tlo, thi), its t's bounds good for ``tprec``, default wp - 10):
    reference.softmax.Whole's m, k and t."""
    L = _lib()
    m = L.from_float(float(whole.m))
    e = {}
    for j in js:
        d = L.mpf_sub(L.from_float(float(x_row[j])), m, 0)  # exact
        e[j] = (L.fone, L.fone) if j == whole.k else _exp_iv(d, wp)
    return e, whole.t(wp - 10 if tprec is None else tprec)


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
        if 0 <= tl < len(x_row) and x_row[tl] == -np.inf:  # a masked target: its -1 fixed (masks.py)
            tl = -1
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


def _softmax_grad_iv(vi, vk, elo, ehi, tlo, thi, plo, phi, s2lo, s2hi, wp: int, prec: int) -> tuple:
    """softmax_backward e_i M_i / S^2 enclosed, M_i = (v_i - v_k) + v_i t - P, from the bounds on
    e_i (> 0), t, P and S^2 (raw mpf; v_i, v_k exact)."""
    L = _lib()
    a, b = _mul_scalar_iv(vi, tlo, thi, wp)
    c = L.mpf_sub(vi, vk, 0)
    mlo = L.mpf_sub(L.mpf_add(c, a, wp, "f"), phi, wp, "f")
    mhi = L.mpf_sub(L.mpf_add(c, b, wp, "c"), plo, wp, "c")
    if mlo[0] == 0:
        nlo, nhi = L.mpf_mul(elo, mlo, wp, "f"), L.mpf_mul(ehi, mhi, wp, "c")
    elif mhi[0]:  # M < 0 (or its upper end 0)
        nlo, nhi = L.mpf_mul(ehi, mlo, wp, "f"), L.mpf_mul(elo, mhi, wp, "c")
    else:  # straddles 0: not decided at this precision
        nlo, nhi = L.mpf_mul(ehi, mlo, wp, "f"), L.mpf_mul(ehi, mhi, wp, "c")
    lo, hi = _div_iv(nlo, nhi, s2lo, s2hi, prec)
    return (lo, hi, lo, hi)


def _log_softmax_grad_iv(vi, V, at_k: bool, elo, ehi, tlo, thi, slo, shi, wp: int, prec: int, fmt_p: int,
                         between: bool) -> tuple:
    """log_softmax_backward N_i / S enclosed: N_i = v_i S - V e_i, at the argmax N_k = v_k t - (V - v_k)
    (raw mpf bounds; v_i and V exact). ``between`` (n >= 2, V != 0): g_i = v_i - s_i V with
    0 < s_i < 1 lies strictly between v_i and v_i - V, which settles a g_i astronomically close to
    either (a dominant logit: s_i = 1 - e^-20000)."""
    L = _lib()
    if at_k:
        a, b = _mul_scalar_iv(vi, tlo, thi, wp)
        r = L.mpf_sub(V, vi, 0)
        nlo, nhi = L.mpf_sub(a, r, wp, "f"), L.mpf_sub(b, r, wp, "c")
    else:
        a, b = _mul_scalar_iv(vi, slo, shi, wp)
        c, e = _mul_scalar_iv(V, elo, ehi, wp)
        nlo, nhi = L.mpf_sub(a, e, wp, "f"), L.mpf_sub(b, c, wp, "c")
    lo, hi = _div_iv(nlo, nhi, slo, shi, prec)
    if not between:
        return (lo, hi, lo, hi)
    a, b = vi, L.mpf_sub(vi, V, 0)  # exact
    if L.mpf_cmp(a, b) > 0:
        a, b = b, a
    return strict(lo, hi, low=a, high=b, p=fmt_p)


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
        out.append(_softmax_grad_iv(vs[i], vs[k], elo[i], ehi[i], tlo, thi, plo, phi, s2lo, s2hi, wp, prec))
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
        out.append(_log_softmax_grad_iv(vs[i], V, i == k, elo[i], ehi[i], tlo, thi, slo, shi, wp, prec, fmt_p,
                                        n >= 2 and bool(V[1])))
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
    ``whole`` (reference.softmax.Whole): x_row is a piece of a longer vector (with ``wanted``);
    the gradients with a cotangent read the vector's own sums from ``whole.cot``
    (:class:`WholeCotangent`), the piece's cotangent from ``args_row``."""
    if whole is not None:
        out = {}
        for f, js in wanted.items():
            if f == "cross_entropy_backward":
                out[f] = enclose_cross_entropy_backward(x_row, int(np.ravel(args_row["target"])[0]), prec,
                                                        fmt_p, list(js), whole)
            else:
                out[f] = _enclose_piece(f, x_row, args_row["cotangent"], prec, fmt_p, list(js), whole)
        return out
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
            out["softmax_backward"] = from_interval(
                fmt, *_softmax_grad(v, vk, e, rel_e, t, et, S, eS, P, eP, A, u, TINY))
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
            out["log_softmax_backward"] = from_interval(
                fmt, *_log_softmax_grad(v, vk, mask_k, e, rel_e, t, et, S, eS, V, eV, R, eR, u, TINY))
    if not recording():  # the exact strings keep their intervals
        _exact_rows(fmt, out, args, x)
    return out


def fast_elements(fmt: Format, rows: dict, x, args: dict, wt, f: str, bi, ji=None) -> RefData:
    """softmax_backward and log_softmax_backward: :func:`_cot_elements`. cross_entropy_backward at the
    elements (bi, ji) of a piece of a long vector (numstab.vector)
    from the vector's row quantities (reference.softmax.piece_rows: m, t and its bound et, n, the
    target's input xt; ``c0`` the piece's first column), bounded as :func:`fast_block` bounds it:
    e_i / S, and at the target -(S - e_target) / S (t at the vector's maximum, whichever of its
    ties the target is: e_target = 1 is then the argmax's own term)."""
    if f != "cross_entropy_backward":  # (the gradients with a cotangent)
        return _cot_elements(fmt, rows, x, args, wt, f, bi, ji)
    wt = working(np.zeros(1, dtype=wt), fmt).dtype
    u, c_lib, TINY = unit_roundoff(wt), lib_error(wt), tiny(wt)
    with np.errstate(all="ignore"):
        m = np.asarray(rows["m"]).astype(wt)[bi]
        t = np.asarray(rows["t"]).astype(wt)[bi]
        et = np.asarray(rows["et"], dtype=np.float64)[bi].astype(wt) * 1.01 + u * t  # (converted)
        n = int(rows["n"])
        d = at(np.asarray(x, dtype=np.float64), bi, ji).astype(wt) - m
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


# ------------------------------------------------------- a piece of a long vector
# softmax_backward and log_softmax_backward of a long vector evaluated in pieces (numstab.vector):
# beyond softmax's row quantities (m, k, t: reference.softmax.piece_rows), the cotangent's sums over
# the whole vector -- P = sum_{j != k} v_j e_j and its magnitude A = sum_{j != k} |v_j| e_j, V = sum v,
# R = V - v_k = sum_{j != k} v_j, v_k -- with proven bounds at each fast tier (:func:`piece_rows`);
# for mpmath (:class:`WholeCotangent`) V exactly, P from the last fast tier's bound, or exactly from
# the vector's distinct values (one exp each, as softmax's t), and the exact zeros of M_i decided from
# the vector's groups of equal x.

#: Distinct values of x per pass of the exact groups of one long vector's cotangent
#: (:class:`WholeCotangent`): the memory of their exact sums (a raw mpf each) whatever the length.
#: (2^18: about 150 MB of exact sums a batch; 2^20 took a 4 M float32 vector's exact pass to 1.0 GB
#: peak, 2^18 to 583 MB, in the same time -- a pass over the vector is cheap beside the exps)
GROUP_BATCH = 1 << 18


def piece_rows(fmt: Format, pieces, wt, m: float, k: int) -> dict:
    """The cotangent's row quantities of one long vector in the working type wt, read a piece at a
    time (``pieces()`` yields (c0, x (1, w) float64, v (1, w) float64, its cotangent there)), with m
    and k (its maximum and the column of its first argmax: reference.softmax.piece_max):

    * P = sum_{j != k} v_j e_j (e_j = exp(x_j - m)), its bound eP and A = sum_{j != k} |v_j e_j|
      (a magnitude: bounds |P| and the roundings of the sums over P's terms); each term carries exp's
      error (lib_error, and x_j - m's where it rounds), the product's rounding and tiny(wt) for an
      exp or a product below the range; each piece is summed pairwise (depth1 roundings at most),
      then the pieces' sums pairwise (depth2): |error| <= sum of the pieces' bounds (1 + 4 depth2 u)
      + 1.02 depth2 u A;
    * V = sum v and R = sum_{j != k} v_j (exact terms, each meeting at most depth1 + depth2
      roundings: 1.02 (depth1 + depth2) u sum |v|), v_k exactly;
    * whether every v is equal (``vconst``: softmax_backward is 0 exactly), every v 0 (``vzero``),
      every x equal (``xequal``: the gradients are rationals)."""
    u, c_lib, tny = unit_roundoff(wt), lib_error(wt), tiny(wt)
    M = np.array([[float(m)]])
    Ps, As, ePs, Vs, aVs, Rs, aRs = [], [], [], [], [], [], []
    vk, vmin, vmax, xmin, dep1, small = 0.0, np.inf, -np.inf, np.inf, 0, 0.0
    with np.errstate(all="ignore"):
        for c0, xp, vp in pieces():
            w = xp.shape[-1]
            d, d_exact = diff_exact(xp, M, wt)
            err_d = np.where(d_exact, 0.0, np.abs(d.astype(np.float64)) * (u * 1.01))
            live = (d.astype(np.float64) + err_d) > log_tiny(wt)
            rel_e = np.where(live, err_d, 0.0) * 1.01 + c_lib
            e = np.exp(d)
            vw = vp.astype(wt)  # format values: exact
            vr = vw
            if c0 <= k < c0 + w:
                e[0, k - c0] = 0
                vk = float(vp[0, k - c0])
                vr = vw.copy()
                vr[0, k - c0] = 0
            ve = vw * e
            ave = np.abs(ve.astype(np.float64))
            p, dep = pairwise_sum(ve)
            dep1 = max(dep1, dep)
            a = float(np.sum(ave))
            av = np.abs(vp)
            own = float(np.sum(ave * (rel_e + u)))
            small += w * (float(np.max(av)) + 1.0)  # terms of at most tiny(wt) each (in wt: quad's)
            Ps.append(p)
            As.append(a * 1.02)
            ePs.append(own)
            Vs.append(pairwise_sum(vw)[0])
            Rs.append(pairwise_sum(vr)[0])
            aVs.append(float(np.sum(av)))
            aRs.append(float(np.sum(np.abs(vr.astype(np.float64)))))
            vmin, vmax = min(vmin, float(np.min(vp))), max(vmax, float(np.max(vp)))
            xmin = min(xmin, float(np.min(xp)))
        P, dep2 = pairwise_sum(np.stack(Ps, axis=-1))
        A = float(np.sum(As)) * 1.02
        eP = ((float(np.sum(ePs)) + A * dep1 * u * 1.02) * (1 + 4 * dep2 * u) + A * dep2 * u * 1.02) * 1.01
        V, _ = pairwise_sum(np.stack(Vs, axis=-1))
        R, _ = pairwise_sum(np.stack(Rs, axis=-1))
        depth = (dep1 + dep2) * u * 1.02
        eV, eR = float(np.sum(aVs)) * depth * 1.01, float(np.sum(aRs)) * depth * 1.01
        eP = np.array([eP]).astype(wt) + tny * (small * (1 + 4 * dep2 * u) * 1.01)
    return {"P": P, "A": np.array([A]), "eP": eP, "V": V, "eV": np.array([eV]), "R": R,
            "eR": np.array([eR]), "vk": np.array([vk]), "k": k, "vconst": vmin == vmax,
            "vzero": vmin == vmax == 0, "xequal": xmin == m, "xmin": xmin}


def _cot_elements(fmt: Format, rows: dict, x, args: dict, wt, f: str, bi, ji) -> RefData:
    """softmax_backward or log_softmax_backward at the elements (bi, ji) of a piece of a long vector
    (``c0`` its first column) from the vector's row quantities (reference.softmax.piece_rows and
    :func:`piece_rows`, in the tier's type, converted to the working type here: each conversion's
    rounding added to the bound), bounded as :func:`fast_block` bounds the whole vector's."""
    from ..masks import exact_ref

    if rows["vconst"] and (f == "softmax_backward" or rows["vzero"]):
        # v constant: M_i = sum_j (v_i - v_j) e_j = 0; v = 0: log_softmax_backward = v - s sum(v) = 0
        return exact_ref(fmt, np.zeros(np.shape(bi)))
    wt = working(np.zeros(1, dtype=wt), fmt).dtype
    u, c_lib, TINY = unit_roundoff(wt), lib_error(wt), tiny(wt)

    def conv(key, err=None):  # a row quantity in wt, and its bound with the conversion's rounding
        v = np.asarray(rows[key]).astype(wt)[bi]
        if err is None:
            return v
        e = np.asarray(rows[err])
        return v, (e.astype(wt)[bi] * 1.01 if e.dtype == wt else e.astype(np.float64)[bi].astype(wt) * 1.02
                   + TINY) + u * np.abs(v)

    with np.errstate(all="ignore"):
        t, et = conv("t", "et")
        m = np.asarray(rows["m"], dtype=np.float64)[bi]
        xi = at(np.asarray(x, dtype=np.float64), bi, ji)
        d, d_exact = diff_exact(xi, m, wt)
        rel_e = np.where(d_exact, 0.0, np.abs(d) * u) * 1.01 + c_lib
        e = np.exp(d)
        v = at(np.asarray(args["cotangent"], dtype=np.float64), bi, ji).astype(wt)
        vk = np.asarray(rows["vk"], dtype=np.float64)[bi].astype(wt)
        S = 1 + t
        eS = et + u * S
        if f == "softmax_backward":  # g_i = e_i M_i / S^2, M_i = (v_i - v_k) + v_i t - P
            P, eP = conv("P", "eP")
            A = conv("A")
            return from_interval(fmt, *_softmax_grad(v, vk, e, rel_e, t, et, S, eS, P, eP, A, u, TINY))
        # log_softmax_backward: N_i = v_i S - V e_i, at the argmax N_k = v_k t - R
        V, eV = conv("V", "eV")
        R, eR = conv("R", "eR")
        at_k = (np.asarray(ji) + int(rows["c0"])) == int(rows["k"])
        return from_interval(fmt, *_log_softmax_grad(v, vk, at_k, e, rel_e, t, et, S, eS, V, eV, R, eR, u,
                                                      TINY))


def _softmax_grad(v, vk, e, rel_e, t, et, S, eS, P, eP, A, u, TINY) -> tuple:
    """softmax_backward g_i = e_i M_i / S^2, M_i = (v_i - v_k) + v_i t - P, and the half-width of
    its interval (2 err), in the working type: e_i (relative error rel_e), t (et), S = 1 + t (eS), P
    (eP) and A >= |P| (the magnitude its sum's roundings act on) with their bounds."""
    av = np.abs(v)
    c = v - vk
    vt = v * t
    M = (c + vt) - P
    eM = (u * np.abs(c) + av * et + u * np.abs(vt) + eP + 2 * u * (np.abs(c) + np.abs(vt) + A)) * 1.01
    S2 = S * S
    g = e * M / S2
    err = (np.abs(g) * (rel_e + 2 * eS / S + 4 * u) + (e + TINY) * eM / S2
           + TINY * np.abs(M) / S2) * 1.05 + TINY
    return g, 2 * err


def _log_softmax_grad(v, vk, at_k, e, rel_e, t, et, S, eS, V, eV, R, eR, u, TINY) -> tuple:
    """log_softmax_backward N_i / S, N_i = v_i S - V e_i and at the argmax (``at_k``)
    N_k = v_k t - R (R = V - v_k), and the half-width of its interval, as :func:`_softmax_grad`."""
    av = np.abs(v)
    vS, Ve = v * S, V * e
    N = vS - Ve
    eN = (av * eS + u * np.abs(vS) + np.abs(V) * (e * rel_e + TINY) + eV * (e + TINY) + u * np.abs(Ve)
          + u * np.abs(N))
    Nk = vk * t - R
    eNk = np.abs(vk) * et + u * np.abs(vk * t) + eR + u * np.abs(Nk)
    N = np.where(at_k, Nk, N)
    eN = np.where(at_k, eNk, eN)
    g = N / S
    return g, 2 * (((eN + np.abs(N) * eS / S) / S + u * np.abs(g)) * 1.05 + TINY)


def _binned_sums(v: np.ndarray, group: np.ndarray):
    """The values v (float64, 1-D) summed exactly per (group, binary exponent): yields (group, e, s)
    with the sum s 2^(e - 53), s an integer. Each value is mant 2^e with an integer mant of 53 bits
    (np.frexp), split in 27 and 26 bits whose sums per key are exact in float64 (np.bincount) a
    million terms at a time."""
    for s in range(0, v.size, 1 << 20):
        vb, gb = v[s: s + (1 << 20)], group[s: s + (1 << 20)]
        nz = vb != 0
        mant, ex = np.frexp(vb[nz])
        mi = (mant * 2.0**53).astype(np.int64)
        key = gb[nz].astype(np.int64) * 4096 + (ex.astype(np.int64) + 2100)
        uk, kinv = np.unique(key, return_inverse=True)
        hs = np.bincount(kinv, weights=mi >> 26)
        ls = np.bincount(kinv, weights=mi & ((1 << 26) - 1))
        for kk, h, lo in zip(uk.tolist(), hs.tolist(), ls.tolist()):
            yield kk // 4096, kk % 4096 - 2100, (int(h) << 26) + int(lo)


def exact_total(values) -> tuple[int, int]:
    """The sum of float64 arrays ``values`` (an iterable), exactly: (man, exp), the sum = man 2^exp
    (:func:`_binned_sums`, one group; the exponents' sums then added as integers)."""
    acc: dict = {}
    for a in values:
        a = np.ravel(np.asarray(a, dtype=np.float64))
        for _g, e, s in _binned_sums(a, np.zeros(a.size, dtype=np.int64)):
            acc[e] = acc.get(e, 0) + s
    if not acc:
        return 0, 0
    base = min(acc) - 53
    return sum(v << (e - 53 - base) for e, v in acc.items()), base


def _group_sums(pieces, lo: float, hi: float) -> dict:
    """{x: (count, the sum of v over the entries equal to x, exactly, a raw mpf)} for the x of one long
    vector in [lo, hi] (``pieces()`` as :func:`piece_rows` reads them), from one pass over it
    (:func:`_binned_sums` per (x, exponent), each sum then added exactly)."""
    L = _lib()
    groups: dict = {}
    for _c0, xp, vp in pieces():
        x, v = xp[0], vp[0]
        sel = (x >= lo) & (x <= hi)
        if not sel.any():
            continue
        xs, inv, cnt = np.unique(x[sel], return_inverse=True, return_counts=True)
        for xv, c in zip(xs.tolist(), cnt.tolist()):
            g = groups.get(xv)
            groups[xv] = (c, L.fzero) if g is None else (g[0] + c, g[1])
        for gi, e, s in _binned_sums(v[sel], inv):
            xv = xs[gi].item()
            c, tot = groups[xv]
            groups[xv] = (c, L.mpf_add(tot, L.from_man_exp(s, e - 53), 0))  # precision 0: exact
    return groups


class WholeCotangent:
    """What softmax_backward and log_softmax_backward of a long vector's piece need of the whole
    vector's cotangent for mpmath (the ``cot`` of reference.softmax.Whole): v_k, V = sum v exactly
    (:func:`exact_total`), whether every v (or x) is equal, bounds on P = sum_{j != k} v_j e_j at a
    working precision -- the last fast tier's (``fast()``: its rows and type) where its type is that
    precise, else exactly from the vector's groups of equal x (:meth:`_exact`) -- and whether
    M_i = sum_j (v_i - v_j) e_j is exactly 0 (Lindemann-Weierstrass, as :func:`enclose_softmax_backward`:
    every group's mean cotangent equals v_i; only then is n v_i = V, checked first).

    ``pieces()`` yields (c0, x, v) of the vector; ``distinct()``: its distinct x values (sorted),
    which the exact passes take a batch of :data:`GROUP_BATCH` at a time (memory: one batch's groups,
    whatever the vector's length); ``t_exact``: where the exact pass leaves its bounds on t at each
    precision (the same exps: reference.softmax.Whole's t reads them); ``rows``: a tier's
    :func:`piece_rows` of the vector (v_k, whether every v or every x is equal)."""

    def __init__(self, pieces, m: float, k: int, n: int, fast, distinct, t_exact: dict, rows: dict):
        self.pieces, self.m, self.k, self.n, self.fast = pieces, float(m), int(k), int(n), fast
        self.distinct, self.t_exact = distinct, t_exact
        self._V = self._kept = None
        self._p: dict = {}
        self._zero: dict = {}
        self.vk = float(np.asarray(rows["vk"])[0])
        self.const, self.x_equal = bool(rows["vconst"]), bool(rows["xequal"])
        self.all_finite = bool(np.isfinite(np.asarray(rows.get("xmin", 0.0))).all())

    @property
    def V(self):
        """sum v, exactly, as a Fraction."""
        from fractions import Fraction

        if self._V is None:
            man, ex = exact_total(vp for _c0, _xp, vp in self.pieces())
            self._V = Fraction(man) * Fraction(2) ** ex
        return self._V

    @property
    def kept(self) -> tuple:
        """(the number of finite entries, the sum of v over them exactly, a Fraction): a masked
        entry (-inf, s = 0 there) is no term of M_i."""
        from fractions import Fraction

        if self._kept is None:
            count = [0]

            def vs():
                for _c0, xp, vp in self.pieces():
                    fin = np.isfinite(xp)
                    count[0] += int(np.count_nonzero(fin))
                    yield vp[fin]

            man, ex = exact_total(vs())
            self._kept = (count[0], Fraction(man) * Fraction(2) ** ex)
        return self._kept

    def _batches(self):
        vals = np.asarray(self.distinct())
        for b in range(0, vals.size, GROUP_BATCH):
            yield _group_sums(self.pieces, float(vals[b]), float(vals[min(vals.size, b + GROUP_BATCH) - 1]))

    def m_is_zero(self, vi: float) -> bool:
        """Whether M_i = 0 exactly for the cotangent value vi."""
        from fractions import Fraction

        if self.const:
            return True
        q = Fraction(vi)
        n, V = (self.n, self.V) if self.all_finite else self.kept
        if q * n != V:
            return False
        if q not in self._zero:
            L = _lib()
            vm = L.from_float(float(vi))
            self._zero[q] = all(L.mpf_eq(L.mpf_mul(vm, L.from_int(c), 0), tot)
                                for groups in self._batches() for c, tot in groups.values())
        return self._zero[q]

    def p(self, prec: int) -> tuple:
        """Bounds (plo, phi) (raw mpf, outward at prec + 10 bits) on P."""
        if prec not in self._p:
            from .softmax import _exact_mpf

            L = _lib()
            out = None
            fast = self.fast()
            if fast is not None:
                rows, wt = fast
                bits = 113 if is_quad(wt) else np.finfo(wt).nmant + 1
                P, eP = _exact_mpf(np.asarray(rows["P"])[0]), _exact_mpf(np.asarray(rows["eP"])[0])
                if P is not None and eP is not None and bits >= prec:
                    out = L.mpf_sub(P, eP, prec + 10, "f"), L.mpf_add(P, eP, prec + 10, "c")
            self._p[prec] = out or self._exact(prec)
        return self._p[prec]

    def _exact(self, prec: int) -> tuple:
        """P's bounds from the groups of equal x, one exp each, and t's from the same exps (into
        ``t_exact``): t = sum_g count_g e_g less the argmax's own 1, P = sum_g (sum of v over g) e_g
        less v_k."""
        L = _lib()
        wp = prec + 10
        m = L.from_float(self.m)
        plo = phi = tlo = thi = L.fzero
        for groups in self._batches():
            for xv, (c, tot) in groups.items():
                if xv == self.m:  # e = 1, the argmax's own term left out (exactly)
                    a = b = L.fone
                    c, tot = c - 1, L.mpf_sub(tot, L.from_float(self.vk), 0)
                else:  # exp rounded down at wp bits, and the next number of wp bits above it
                    a = L.mpf_exp(L.mpf_sub(L.from_float(xv), m, 0), wp, "f")
                    b = L.mpf_add(a, L.from_man_exp(1, a[2] + a[3] - wp), 0)
                cm = L.from_int(c)
                tlo, thi = L.mpf_add(tlo, L.mpf_mul(a, cm, wp, "f"), wp, "f"), \
                    L.mpf_add(thi, L.mpf_mul(b, cm, wp, "c"), wp, "c")
                if tot[1]:
                    lo, hi = _mul_scalar_iv(tot, a, b, wp)
                    plo, phi = L.mpf_add(plo, lo, wp, "f"), L.mpf_add(phi, hi, wp, "c")
        self.t_exact.setdefault(prec, (tlo if tlo[0] == 0 else L.fzero, thi))
        return plo, phi


def _enclose_piece(f: str, x_row, v_row, prec: int, fmt_p: int, js: list, whole) -> list:
    """softmax_backward or log_softmax_backward at the elements js of x_row, a piece of a long
    vector (``whole``: reference.softmax.Whole, its ``cot`` a :class:`WholeCotangent`), v_row the
    piece's cotangent: the formulas of :func:`enclose_softmax_backward` and
    :func:`enclose_log_softmax_backward` with the vector's t, P, V and v_k; the rational values of
    :func:`rational` (every x equal; V = 0) exactly."""
    from fractions import Fraction

    L = _lib()
    wp = prec + 10
    cot, n = whole.cot, whole.n
    vf = np.ravel(np.asarray(v_row, dtype=np.float64))
    out = []
    if f == "log_softmax_backward" and not cot.all_finite and cot.kept[0] == 1:
        # one entry left (the others masked): s_k = 1 there, the value v_k - V exactly (V over every
        # entry); the masked entries' values are fixed (masks.vector_limits)
        return [_rational_iv(Fraction(float(vf[i])) - cot.V, wp) for i in js]
    if cot.x_equal or (f == "log_softmax_backward" and cot.V == 0):
        V = cot.V
        for i in js:
            q = Fraction(float(vf[i]))
            if f == "softmax_backward":
                out.append(_rational_iv((q - V / n) / n, wp))
            else:
                out.append(_rational_iv(q - V / n if cot.x_equal else q, wp))
        return out
    # the vector's sums good for the working precision wp, not only prec: M_i and N_i cancel, and
    # the quad tier's bounds (113 bits) are not rounded to prec where it holds them
    if f == "softmax_backward":
        plo, phi = cot.p(wp)  # (first: an exact pass leaves t's bounds at this precision too)
    e, (tlo, thi) = _whole_exps(x_row, whole, js, wp, wp)
    slo, shi = L.mpf_add(L.fone, tlo, wp, "f"), L.mpf_add(L.fone, thi, wp, "c")
    if f == "softmax_backward":
        vk = L.from_float(cot.vk)
        s2lo, s2hi = L.mpf_mul(slo, slo, wp, "f"), L.mpf_mul(shi, shi, wp, "c")
        for i in js:
            if cot.m_is_zero(float(vf[i])):
                out.append((L.fzero,) * 4)
                continue
            out.append(_softmax_grad_iv(L.from_float(float(vf[i])), vk, *e[i], tlo, thi, plo, phi, s2lo, s2hi,
                                        wp, prec))
        return out
    V = cot.V
    Vm = L.from_man_exp(V.numerator, -(V.denominator.bit_length() - 1))  # a dyadic: exact
    for i in js:  # (n >= 2 and V != 0 here: strictly between v_i and v_i - V)
        out.append(_log_softmax_grad_iv(L.from_float(float(vf[i])), Vm, i == whole.k, *e[i], tlo, thi, slo,
                                        shi, wp, prec, fmt_p, True))
    return out
