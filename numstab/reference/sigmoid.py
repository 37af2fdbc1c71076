"""Exact formulas of the binary family (numstab/functions/sigmoid.py): sigmoid, log_sigmoid,
softplus and binary_cross_entropy, elementwise.

With a = exp(-|x|) (in (0, 1], never overflowing) and L = log1p(a) > 0:

    sigmoid              1 / (1 + a) for x >= 0, a / (1 + a) below (exactly 1/2 at 0)
    log_sigmoid          min(x, 0) - L                          (< min(x, 0))
    softplus             max(x, 0) + L                          (> max(x, 0))
    binary_cross_entropy (max(x, 0) - x z) + L, z the label     (> max(x, 0) - x z >= 0)

Nothing cancels (sums of terms of one sign; max(x, 0) - x z is exact in mpmath), every
value but sigmoid(0) = 1/2 is irrational (Lindemann-Weierstrass), so the escalation ends.
The module contract is numstab/reference/__init__.py's: ``FUNCTIONS``, ``fast_block``
(a proven float64 bound: 16 ulp for the library's exp and log1p, as softmax.py assumes)
and ``enclose`` (mpmath, every operation rounded outward); ``thresholds`` adds the
family's exact limits to ``numstab thresholds``.
"""

from __future__ import annotations

import numpy as np

from ..formats import Format
from ..results import RefData
from .core import (
    from_interval,
    is_quad,
    lib_error,
    log1p_down,
    log1p_up,
    strict,
    tiny,
    unit_roundoff,
    working,
)

FUNCTIONS = ("sigmoid", "log_sigmoid", "softplus", "binary_cross_entropy")


def _lib():
    from mpmath import libmp

    return libmp


def _exp_iv(d, wp):
    L = _lib()
    return L.mpf_exp(d, wp, "f"), L.mpf_exp(d, wp, "c")


def _neg_abs(x):
    L = _lib()
    return L.mpf_neg(L.mpf_abs(x))


def _softplus_core(xv, wp):
    """(x exact, [L lo, L hi]) with L = log1p(exp(-|x|)) > 0."""
    L = _lib()
    x = L.from_float(float(xv))
    a_lo, a_hi = _exp_iv(_neg_abs(x), wp)
    return x, a_lo, a_hi, log1p_down(a_lo, wp), log1p_up(a_hi, wp)


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
        out.append(strict(lo, hi, high=L.fone, p=fmt_p))
    return out


def enclose_log_sigmoid(x_row, extra, prec: int, fmt_p: int = 64) -> list:
    L = _lib()
    wp = prec + 10
    out = []
    for xv in x_row:
        x, _, _, l_lo, l_hi = _softplus_core(xv, wp)
        b = x if x[0] else L.fzero  # min(x, 0)
        lo, hi = L.mpf_sub(b, l_hi, prec, "f"), L.mpf_sub(b, l_lo, prec, "c")
        out.append(strict(lo, hi, high=b, p=fmt_p))
    return out


def enclose_softplus(x_row, extra, prec: int, fmt_p: int = 64) -> list:
    L = _lib()
    wp = prec + 10
    out = []
    for xv in x_row:
        x, _, _, l_lo, l_hi = _softplus_core(xv, wp)
        b = L.fzero if x[0] else x  # max(x, 0)
        lo, hi = L.mpf_add(b, l_lo, prec, "f"), L.mpf_add(b, l_hi, prec, "c")
        out.append(strict(lo, hi, low=b, p=fmt_p))
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
        out.append(strict(lo, hi, low=b, p=fmt_p))
    return out



def _labels(args_row, n):
    z = args_row.get("label") if args_row else None
    return None if z is None else np.broadcast_to(np.asarray(z, dtype=np.float64), (n,))


_ENCLOSE = {"sigmoid": enclose_sigmoid, "log_sigmoid": enclose_log_sigmoid, "softplus": enclose_softplus,
            "binary_cross_entropy": enclose_binary_cross_entropy}


def enclose(x_row, args_row: dict, prec: int, fmt_p: int = 64, wanted=None) -> dict[str, list]:
    """Every function of the family at every element of x_row (binary_cross_entropy where
    args_row holds a label); with ``wanted`` ({function: element indices}) only those: the
    family is elementwise, so an open element is enclosed alone, not with its row."""
    z = _labels(args_row, len(x_row))
    if wanted is None:
        wanted = {f: None for f in FUNCTIONS if f != "binary_cross_entropy" or z is not None}
    out = {}
    for f, js in wanted.items():
        if js is None:
            out[f] = _ENCLOSE[f](x_row, z, prec, fmt_p)
            continue
        idx = np.asarray(js, dtype=np.intp)
        out[f] = _ENCLOSE[f](np.asarray(x_row)[idx], None if z is None else z[idx], prec, fmt_p)
    return out


# ------------------------------------------------------------------ fast path
def fast_block(fmt: Format, x: np.ndarray, args: dict) -> dict[str, RefData]:
    """sigmoid, log_sigmoid, softplus (and binary_cross_entropy when args hold a ``label``) over
    the batch x (B, n) in a working type, each with a proven bound (core.lib_error for the
    library's exp and log1p, as the softmax family assumes). The quad tier computes in quad
    (float64 targets: long double could not decide their figures, so every element went to
    mpmath), except where a label's TwoSum would rely on correctly rounded subtraction."""
    x = working(x, fmt)
    wt = x.dtype
    quad = is_quad(wt)
    u, c_lib, TINY = unit_roundoff(wt), lib_error(wt), tiny(wt)
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
                                           upper=np.where(x < 0, x, np.inf).astype(wt))
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
            # quad's + and - are within 0.5000000001 ulp, not correctly rounded: no TwoSum there,
            # so no strict bound (an element it would have decided goes to mpmath)
            lower = None if quad else np.where(b_exact, b, -np.inf)
            out["binary_cross_entropy"] = from_interval(
                fmt, r, 2 * (eL + u * np.abs(b) + u * np.abs(r)), lower=lower)
    return out



# ------------------------------------------------------------------ thresholds
def thresholds(fmt: Format) -> dict:
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
