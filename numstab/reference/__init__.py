"""Exact reference values: mpmath is the authority, a proven float64 bound the fast path.

Each function's record (numstab.functions) names its formula module here,
``numstab/reference/<name>.py``, which computes every function of its family at once:

* ``FUNCTIONS``: the names it computes;
* ``fast_block(fmt, x, args) -> {name: RefData}``: x (B, n) in the working type of a fast
  tier (float64, then long double); each value with a proven error bound, through
  :func:`core.from_interval`, which marks ``decided`` False where the bound does not fix
  the rounded value;
* ``enclose(x_row, args_row, prec, fmt_p) -> {name: [(lo, hi, lo_dec, hi_dec), ...]}``:
  rigorous enclosures of every value of one vector as raw mpf (mpmath directed
  rounding), one per output element (one for a per-vector output), shrinking as
  ``prec`` grows (see softmax.py's ``enclose``);
* optionally ``exact_raw(x_row, args_row, prec)``: nearest values without a bound.

``args``: the batch's extra arguments, ``{kind: array}`` (functions.as_args); ``args_row``
one vector's. This package owns the tiers and their escalation (``escalation.py``: the
driver, compute_reference / bump / decide): fast float64, long
double where wider, then mpmath per vector with precision doubling.

Each reference value r is stored as what the metrics need, in float64
(results.RefData): ``rounded`` (r rounded to the format), ``ulp`` (ulp_F(r)), the
interval ``[dlo, dhi]`` holding (r - rounded) / ulp, and ``[qlo, qhi]`` holding
ulp / |r|. The mpmath path gives a point (dlo == dhi); the fast path an interval
from a rigorous error bound, and ``decided`` is False wherever that interval does
not fix the rounded value: those vectors are recomputed a tier up. mpmath is
imported only in this package.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
from fractions import Fraction

import numpy as np

from .. import functions as _functions
from ..formats import Format
from ..results import RefData, big_figure, decimal_text
from .core import TINY, _mp, from_interval, mag, quad, strict  # noqa: F401  (the formula modules' tools)

_mag = mag
_from_interval = from_interval

#: Working precisions tried by the escalation (bits), in order.
START_PREC = 64
MAX_PREC = 1 << 14


def family(name: str):
    """The formula module ``numstab.reference.<name>``."""
    return importlib.import_module(f"{__name__}.{name}")


def families(functions=None, args=None) -> list:
    """The formula modules that compute ``functions`` (names; default: every registered
    function whose extra argument ``args`` holds), in registry order, each once."""
    have = _functions.as_args(args)
    if functions is None:
        functions = [f.name for f in _functions.FUNCTIONS.values() if f.takes is None or f.takes in have]
    out = [family(m) for m in dict.fromkeys(_functions.get(f).reference for f in functions)]
    if "scale" in have:
        _check_scaled(out, functions)
    return out


def _check_scaled(fams, functions=None) -> None:
    """A temperature (the ``scale`` argument) needs families that compute f(x / T) exactly; the
    first of ``functions`` (names; default the families' own) whose family does not is named."""
    unscaled = {f for fam in fams if not getattr(fam, "SCALED", False) for f in fam.FUNCTIONS}
    names = [_functions.get(f).name for f in functions or [f for fam in fams for f in fam.FUNCTIONS]]
    bad = [f for f in names if f in unscaled]
    if bad:
        from ..errors import UsageError

        raise UsageError(f"--temperature applies to {', '.join(temperature_functions())}, not {bad[0]}")


def check_temperature(function: str, temperatures) -> None:
    """Refuse, before any work, a temperature other than 1 for a function whose exact value at
    x / T the reference does not compute (whatever the inputs: a row that a NaN fixes never asks)."""
    if any(t is not None and t != 1 for t in temperatures or ()):
        families([function], {"scale": 1.0})  # (refused there, as the reference would refuse it)


def temperature_functions() -> list:
    """The functions whose exact value at x / T (a temperature) the reference computes."""
    return [f for f, rec in _functions.FUNCTIONS.items() if getattr(family(rec.reference), "SCALED", False)]


def _as_row_args(args_row) -> dict:
    """One vector's extra arguments as a dict; a bare index is a target."""
    if isinstance(args_row, (int, np.integer)):
        return {"target": args_row}
    return _functions.as_args(args_row)


def row_args(args, b: int) -> dict:
    """One vector's extra arguments."""
    return {k: v[b] for k, v in _functions.as_args(args).items()}


def enclose(x_row, args_row, prec: int, fmt_p: int = 64, fams=None, wanted=None,
            whole=None) -> dict[str, list]:
    """Every value of one vector's families (default: all that its arguments allow), enclosed;
    with ``wanted`` ({function: element indices}) only those elements of those functions (a
    family whose ``enclose`` takes no ``wanted`` encloses everything, and the elements are
    picked out here). ``whole``: x_row is a piece of a longer vector (softmax.Whole), the
    elements enclosed as that vector's (with ``wanted``; a family that cannot is refused)."""
    args_row = _as_row_args(args_row)
    if fams and "scale" in args_row:
        _check_scaled(fams)
    out = {}
    for fam in fams or families(args=args_row):
        if wanted is None:
            out.update(fam.enclose(x_row, args_row, prec, fmt_p))
            continue
        mine = {f: js for f, js in wanted.items() if f in fam.FUNCTIONS}
        if not mine:
            continue
        if whole is not None:
            if "whole" not in inspect.signature(fam.enclose).parameters:
                raise ValueError(f"{fam.__name__}: no enclosure of a piece of a vector")
            out.update(fam.enclose(x_row, args_row, prec, fmt_p, wanted=mine, whole=whole))
        elif "wanted" in inspect.signature(fam.enclose).parameters:
            out.update(fam.enclose(x_row, args_row, prec, fmt_p, wanted=mine))
        else:
            vals = fam.enclose(x_row, args_row, prec, fmt_p)
            out.update({f: [vals[f][j] for j in js] for f, js in mine.items()})
    return out


# ---------------------------------------------------------------- fast path
#: Elements per block of the fast path: big enough for numpy, small enough for the cache.
BLOCK = 1 << 17


def _narrow_tiers() -> tuple:
    """Working types of the fast tiers for formats of at most 24 bits: float64, then long double
    where it is wider (x86: 64-bit significand), then quad (numpy-quaddtype, 113 bits) where
    the optional extra is installed. Each tier is used only for the elements the one before
    left undecided."""
    q = quad()
    return (np.dtype(np.float64),) + (
        (np.dtype(np.longdouble),) if np.finfo(np.longdouble).nmant > 52 else ()) + (
        (q,) if q is not None else ())


def tiers(fmt: Format) -> tuple:
    """The fast tiers' working types for ``fmt``: those of :func:`_narrow_tiers` for formats of
    at most 24 bits; for wider ones (float64) only quad decides roundings and 3-decimal ULP
    figures (long double's 11 extra bits leave most of them open)."""
    if fmt.p <= 24:
        return _narrow_tiers()
    q = quad()
    return (q,) if q is not None and fmt.p <= 53 else ()


def mp_tier(fmt: Format) -> int:
    """The tier number of mpmath for ``fmt`` (after its fast tiers)."""
    return len(tiers(fmt))


def fast_supported(fmt: Format) -> bool:
    """Some fast tier can decide this format's roundings (float64 needs the quad tier)."""
    return bool(tiers(fmt))


def __getattr__(name):  # FAST_TIERS, MP_TIER and QUAD without importing quad at start-up
    if name == "FAST_TIERS":
        return _narrow_tiers()
    if name == "MP_TIER":
        return len(_narrow_tiers())
    if name == "QUAD":
        return quad()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def masked_functions() -> frozenset:
    """The functions whose fast tiers read a -inf entry as an exact zero term (their family sets
    ``MASKED``): masks.reference gives their masked rows whole instead of compacted (``whole_rows``)."""
    return frozenset(f.name for f in _functions.FUNCTIONS.values()
                     if getattr(family(f.reference), "MASKED", False))


def fast_reference(fmt: Format, x: np.ndarray, target, tier: int = 0, functions=None) -> dict[str, RefData]:
    """Vectorized reference with a proven error bound, in the working type of ``tier``
    (an index into :func:`tiers`).

    ``target``: the batch's extra arguments (functions.as_args: a bare array is the target
    indices); ``functions``: the names needed (default: all the arguments allow).

    ``x``: (B, n) float64, exact values of the format. Elements whose bound does
    not decide the rounding have ``decided`` False. Works in blocks of rows so the
    cost stays linear in the number of elements.
    """
    x = np.asarray(x, dtype=np.float64)
    args = _functions.as_args(target)
    fams = families(functions, args)
    wt = tiers(fmt)[tier]
    rows = max(1, BLOCK // max(1, x.shape[-1]))

    def block(sel):
        out = {}
        for fam in fams:
            out.update(fam.fast_block(fmt, x[sel].astype(wt), _functions.take_args(args, sel)))
        return out

    if x.shape[0] <= rows:
        return block(slice(None))
    parts = [block(slice(i, i + rows)) for i in range(0, x.shape[0], rows)]
    return {f: RefData(*(np.concatenate([getattr(p[f], k) for p in parts])
                         for k in RefData.__dataclass_fields__)) for f in parts[0]}


def exact_values(x_row, target, prec: int) -> dict[str, list]:
    """All reference values of one vector as mpf at working precision ``prec`` (nearest, no bound)."""
    make = _mp().mp.make_mpf
    args_row = _as_row_args(target)
    out = {}
    for fam in families(args=args_row):
        if hasattr(fam, "exact_raw"):
            raw = fam.exact_raw(x_row, args_row, prec)
        else:  # a family without nearest values: the lower ends of its enclosures
            raw = {f: [iv[0] for iv in vals] for f, vals in fam.enclose(x_row, args_row, prec).items()}
        out.update({f: [make(v) for v in vals] for f, vals in raw.items()})
    return out


def _flat_enclose(fmt: Format, x_row, args_row, prec: int, fams=None) -> list:
    vals = enclose(x_row, args_row, prec, fmt.p, fams)
    return [v for f in vals for v in vals[f]]


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


def mp_reference(fmt: Format, x: np.ndarray, target, functions=None) -> dict[str, RefData]:
    """The authority: per vector, rigorous mpmath enclosures with precision escalation.

    ``target``: the batch's extra arguments (as :func:`fast_reference`)."""
    x = np.asarray(x, dtype=np.float64)
    B, n = x.shape
    args = _functions.as_args(target)
    fams = families(functions, args)
    cols: dict = {}
    start = start_prec(fmt)
    done = lambda iv: _decided(fmt, iv)  # noqa: E731
    for b in range(B):
        row, ra = x[b], row_args(args, b)
        vals = enclose(row, ra, start, fmt.p, fams)  # the names and sizes of the outputs
        flat, settled = escalate(fmt, lambda prec, row=row, ra=ra: _flat_enclose(fmt, row, ra, prec, fams),
                                 start=start, done=done)
        i = 0
        for f, v in vals.items():
            size = len(v)
            if f not in cols:
                cols[f] = np.empty(_functions.get(f).output_shape((B, n)) + (7,), dtype=np.float64)
            pts = [_interval_point(fmt, flat[i + j], settled[i + j]) for j in range(size)]
            i += size
            cols[f][b] = np.array(pts).reshape(cols[f][b].shape)
    out = {}
    for f, c in cols.items():
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


def _int_decimal_cell(raw, digits: int) -> tuple[int, int]:
    """:func:`_decimal_cell` of the raw mpf ``raw`` > 0 in plain integers (no Fractions: several
    times faster, the same cell: both are exact). v = man * 2^exp = A / B."""
    _, man, exp, bc = raw
    if not man:  # 0, an infinity or NaN: no decade to find (the search below would not end)
        raise ValueError(f"no decimal cell of the special value {raw!r}")
    A = int(man) << max(exp, 0)
    B = 1 << max(-exp, 0)

    def at_least(q):  # v >= 10^q
        return A * 10 ** max(-q, 0) >= B * 10 ** max(q, 0)

    e = math.floor((bc + exp - 1) * 0.30102999566398) - 1
    while at_least(e + 1):
        e += 1
    while not at_least(e):
        e -= 1
    sc = e - digits + 1
    num, den = A * 10 ** max(-sc, 0), B * 10 ** max(sc, 0)
    k, r = divmod(num, den)
    if 2 * r > den or (2 * r == den and k & 1):  # to nearest, ties to even
        k += 1
    if k == 10**digits:
        k, e = 10 ** (digits - 1), e + 1
    return k, e


def _cell(lo, hi, digits: int, prec: int):
    """The common decimal cell of the raw mpf interval [lo, hi] (0 < lo <= hi), or None."""
    if max(abs(_mag(lo)), abs(_mag(hi))) < _FRACTION_BITS:
        a = _int_decimal_cell(lo, digits)
        return a if (lo == hi or a == _int_decimal_cell(hi, digits)) else None
    if (_mag(lo) > 0) != (_mag(hi) > 0):
        return None
    return _iv_decimal_cell(lo, hi, digits, prec)


def _figure(fmt: Format, lo, hi, relative: bool, prec: int):
    """The quantized figure (metrics.quantize / quantize_rel) shared by every value of [lo, hi].

    lo, hi: raw mpf bounds (0 <= lo <= hi) of an exact ULP or relative error. Returns a
    float, a Decimal where the figure is beyond float64's range, or None where the
    bounds straddle a quantization step. Steps are decided exactly (rationals).
    """
    from mpmath.libmp import fone, from_float, fzero, mpf_cmp, mpf_mul

    from ..metrics import figure_value

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
    return v if math.isfinite(v) else big_figure(c[0], c[1])


def _error_bounds(fmt: Format, iv, y: float, prec: int):
    """Raw mpf bounds of the exact ULP error |y - r| / ulp and relative error |y - r| / |r|,
    r in the enclosure iv (decided: one ulp). The relative bounds are None where |r| may
    be 0; r = 0 exactly gives the infinite relative error of a nonzero y."""
    from mpmath.libmp import finf, from_float, fzero, mpf_abs, mpf_cmp, mpf_div, mpf_shift, mpf_sub

    lo, hi = iv[0], iv[1]
    if len(iv) >= 4 and (iv[2] != lo or iv[3] != hi):
        # an end cut at a strict bound B (core.strict): r lies strictly on one side of B, and
        # between B and the decision point (2^(mag(B) - p - 64) inside) there is no step of a
        # quantized figure (they are >= 2^(mag(B) - p - 20) apart in r: 3 digits of an error of
        # at least eps_F/1024 relative), so the figures over [decision point, B) are those at
        # the decision point: a value astronomically close to B (B - exp(-65498)) is decided
        lo, hi = iv[2], iv[3]
        if mpf_cmp(lo, hi) > 0:  # the whole enclosure lies between a decision point and its bound
            lo = hi = iv[3] if iv[3] != iv[1] else iv[2]  # the cut end's decision point
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


def _sig3_exact(v: Fraction):
    """3 significant digits of v > 0, ties to even (as metrics.quantize): a float, or a Decimal
    beyond float64's range."""
    from ..metrics import figure_value

    e = math.floor(math.log10(v.numerator) - math.log10(v.denominator))  # within 1 of the truth
    while Fraction(10) ** e > v:
        e -= 1
    while Fraction(10) ** (e + 1) <= v:
        e += 1
    k = round(v / Fraction(10) ** (e - 2))  # Fraction rounds half to even
    if k == 1000:
        k, e = 100, e + 1
    f = figure_value(k, e)
    return f if math.isfinite(f) else big_figure(k, e)


def rational_figures(fmt: Format, r: Fraction, y: float) -> tuple:
    """(ULP figure, relative figure) of a finite output y against an exact rational r, exactly."""
    from ..metrics import figure_value

    d = abs(Fraction(y) - r)
    a = abs(r)
    if a:
        e = a.numerator.bit_length() - a.denominator.bit_length()
        if Fraction(2) ** e > a:
            e -= 1
        ue = max(e, fmt.emin) - fmt.p + 1
    else:
        ue = fmt.emin - fmt.p + 1
    u = d / Fraction(2) ** ue
    ulp_fig = figure_value(round(u * 1000), -1) if u < 1 else _sig3_exact(u)
    if not a:
        return ulp_fig, (math.inf if d else 0.0)
    rel = d / a
    rel_fig = 0.0 if rel < Fraction(fmt.eps) / 1024 else _sig3_exact(rel)
    return ulp_fig, rel_fig


def exact_figures(fmt: Format, x_row, target, function: str, items, max_prec: int = MAX_PREC,
                  start: int | None = None, whole=None):
    """Quantized (ULP, relative) figures of outputs, decided exactly: for each (j, y) of
    ``items`` (element j of ``function`` on the vector, y its finite output) the pair of
    figures of :func:`metrics.element_metrics` computed from the exact reference: the
    enclosure is refined until both ends of each error give one figure. A figure is a
    float, or a Decimal where it is beyond float64's range (inf as a float). None for an
    item the precision limit could not decide (it is never guessed). ``whole``: x_row is a piece
    of a longer vector (:func:`enclose`).
    """
    out: list = [None] * len(items)
    fams = families([function])
    todo = list(range(len(items)))
    rat = {}
    for fam in fams if whole is None else ():  # a piece: no rational values of the piece alone
        if hasattr(fam, "rational"):
            rat.update(fam.rational(x_row, _as_row_args(target)))
    if function in rat:  # rational exact values: figures decided exactly (ties included)
        left = []
        for i in todo:
            j, y = items[i]
            r = rat[function][j]
            if r is None or not math.isfinite(y):
                left.append(i)
            else:
                out[i] = rational_figures(fmt, r, y)
        todo = left
    prec = start or start_prec(fmt)
    while todo and prec <= max_prec:
        js = sorted({items[i][0] for i in todo})
        pos = {j: q for q, j in enumerate(js)}
        vals = enclose(x_row, target, prec, fmt.p, fams, wanted={function: js}, whole=whole)[function]
        left = []
        seen: dict = {}  # (enclosure, output) -> figures: a row's repeated values (a mask's entries) once
        for i in todo:
            j, y = items[i]
            iv = vals[pos[j]]
            key = (tuple(iv), float(y))
            if key not in seen:
                seen[key] = _exact_pair(fmt, iv, float(y), prec)
            if seen[key] is None:
                left.append(i)
            else:
                out[i] = seen[key]
        todo = left
        prec *= 2
    return out


def _exact_pair(fmt: Format, iv, y: float, prec: int):
    """The (ULP, relative) figures of the output y against the enclosure iv, or None where iv does
    not decide them yet (:func:`exact_figures`)."""
    if not _decided(fmt, iv):
        return None
    ub, rb = _error_bounds(fmt, iv, y, prec)
    u = _figure(fmt, *ub, False, prec)
    if rb is not None and rb[0][1] == 0 and rb[0][2] != 0:  # infinite: r = 0, y != 0
        r = math.inf
    else:
        r = None if rb is None else _figure(fmt, *rb, True, prec)
    return None if u is None or r is None else (u, r)


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
    return None if c is None else decimal_text(*c, digits, sign)


def exact_strings(fmt: Format, x_row, target, digits: int = 25, functions=None,
                  elements=None, whole=None) -> dict[str, list]:
    """Decimal strings of the exact values of one vector (``digits`` significant digits, every
    one of them right: the enclosure is refined until its two ends give the same string;
    None where the precision limit is reached first). ``target``: the vector's extra
    arguments (an int: its target index); ``functions``: the names needed (default all);
    ``elements``: the indices wanted of the per-element functions (default all; the others
    are None). ``whole``: x_row is a piece of a longer vector (:func:`enclose`; ``functions``
    and ``elements`` given)."""
    if whole is not None:
        return _mp_strings(fmt, x_row, target, digits, functions, elements, whole)
    if functions is not None and QUAD_STRINGS_MIN <= len(x_row) <= QUAD_STRINGS_MAX:
        fast = _quad_strings(fmt, x_row, target, digits, functions, elements)
        if fast is not None:
            return fast
    return _mp_strings(fmt, x_row, target, digits, functions, elements)


def _mp_strings(fmt: Format, x_row, target, digits: int = 25, functions=None, elements=None,
                whole=None) -> dict:
    """:func:`exact_strings` from mpmath's enclosures (a long vector's row sum from the quad tier
    where the family has ``row_sum``)."""
    fams = families(functions) if functions is not None else None
    if len(x_row) >= 2 and whole is None:
        shared = _shared_strings(fmt, x_row, target, digits, functions, elements)
        if shared is not None:
            return shared
    wanted = None
    if elements is not None:
        names = {f: [None] * (1 if _functions.get(f).per_vector else len(x_row))
                 for fam in (fams or families(args=_functions.as_args(target) if not isinstance(
                     target, (int, np.integer)) else {"target": target}))
                 for f in fam.FUNCTIONS if functions is None or f in functions}
        wanted = {f: ([0] if len(v) == 1 and _functions.get(f).per_vector else sorted(set(elements)))
                  for f, v in names.items()}
        flat_f = [(f, j) for f, js in wanted.items() for j in js]
    else:
        names = enclose(x_row, target, 8, fmt.p, fams)
        flat_f = [(f, j) for f, v in names.items() for j in range(len(v))]
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
        if wanted is None:
            flat = _flat_enclose(fmt, x_row, target, prec, fams)
        else:
            vals = enclose(x_row, target, prec, fmt.p, fams, wanted=wanted, whole=whole)
            flat = [v for f in wanted for v in vals[f]]
        return [(i, iv, prec) for i, iv in enumerate(flat)]

    escalate(fmt, compute, start=start, done=done)
    out = {f: [None] * len(v) for f, v in names.items()}
    for i, (f, j) in enumerate(flat_f):
        out[f][j] = strings.get(i)
    return out


#: Vectors from this long (and up to QUAD_STRINGS_MAX, about 20 quad temporaries an element) get
#: their exact strings from the quad tier's intervals first (:func:`_quad_strings`): mpmath
#: encloses every element at 30-180 us (a gradient: every value of its family), quad ~5 us.
QUAD_STRINGS_MIN = 32
QUAD_STRINGS_MAX = 1 << 22


def _quad_strings(fmt: Format, x_row, target, digits: int, functions, elements):
    """:func:`exact_strings` from the quad tier: each family's ``fast_block`` on the vector in quad
    (numpy-quaddtype), whose intervals (core.intervals: value, proven error bound, strict bounds)
    are about 2^-100 wide, usually enough to fix ``digits`` digits. Every element whose interval
    does not fix them (its two ends give different strings, a value at or beyond float64's range,
    an exact zero) goes to :func:`_mp_strings`, alone. None where numpy-quaddtype is missing."""
    from ..formats import get_format
    from .core import intervals, quad

    q = quad()
    if q is None:
        return None
    args_row = _as_row_args(target)
    fams = families(functions)
    if "scale" in args_row:
        _check_scaled(fams)
    n = len(x_row)
    x = np.asarray(x_row, dtype=np.float64)[None, :].astype(q)
    args = {k: np.asarray(v)[None, ...] for k, v in args_row.items()}
    # a format wider than float32: the families keep the quad working type (core.working); the
    # format itself plays no part in the intervals
    wide = get_format("float64")
    js_all = list(range(n)) if elements is None else sorted({int(j) for j in elements})
    out: dict = {}
    for fam in fams:
        mine = [f for f in fam.FUNCTIONS if f in functions]
        if not mine:
            continue
        with intervals() as got, np.errstate(all="ignore"):
            takes = "functions" in inspect.signature(fam.fast_block).parameters
            res = fam.fast_block(wide, x, args, functions=mine) if takes else fam.fast_block(wide, x, args)
        if len(got) != len(res):
            return None
        for f, (v, err, lower, upper) in zip(res, got):
            if f not in mine:
                continue
            one = _functions.get(f).per_vector
            js = [0] if one else js_all
            row: list = [None] * (1 if one else n)
            strings = _interval_strings(q, v, err, lower, upper, js, digits)
            left = [j for j, st in zip(js, strings) if st is None]
            for j, st in zip(js, strings):
                row[j] = st
            if left:
                slow = _mp_strings(fmt, x_row, target, digits, [f], None if one else left)[f]
                for j in left:
                    row[j] = slow[j]
            out[f] = row
    return out


def _interval_strings(q, v, err, lower, upper, js, digits: int) -> list:
    """The ``digits``-digit decimal of every value of r in [v - err, v + err] (cut to the strict
    bounds lower < r < upper, which stand closed here) at the flat positions ``js``, or None where
    the two ends give different strings. The ends are quad values, written exactly as three
    float64 parts (checked: nothing left over, every part normal) and summed in Decimal rounded
    outward, so each string is that of a closed interval holding r."""
    import decimal

    from .core import quad_ends, quad_err

    shape = np.shape(v)
    idx = np.asarray(js, dtype=np.int64)

    def pick(a):  # the wanted elements (quad_ends converts the strict bounds to quad)
        return None if a is None else np.broadcast_to(np.asarray(a), shape).reshape(-1)[idx]

    with np.errstate(all="ignore"):
        vq = pick(v).astype(q)
        lo, hi, _, _ = quad_ends(vq, quad_err(vq, err, pick), pick(lower), pick(upper))

        def parts(e):
            h1 = e.astype(np.float64)
            r1 = e - h1
            h2 = r1.astype(np.float64)
            r2 = r1 - h2
            h3 = r2.astype(np.float64)
            ok = ((r2 - h3) == 0) & (np.abs(h1) >= 2.0**-900) & (np.abs(h1) <= 2.0**900)
            return h1, h2, h3, ok & np.isfinite(h1) & np.isfinite(h2) & np.isfinite(h3)

        lp, hp = parts(lo), parts(hi)
        ok = lp[3] & hp[3] & (lo <= hi)
    floor = decimal.Context(prec=2 * digits + 10, rounding=decimal.ROUND_FLOOR)
    ceil = decimal.Context(prec=2 * digits + 10, rounding=decimal.ROUND_CEILING)
    D = decimal.Decimal

    def cell(a):
        e = a.adjusted()
        k = int(a.scaleb(digits - 1 - e, floor).to_integral_value(rounding=decimal.ROUND_HALF_EVEN))
        return (10 ** (digits - 1), e + 1) if k == 10**digits else (k, e)

    out: list = []
    for i in range(idx.size):
        if not ok[i]:
            out.append(None)
            continue
        a = floor.add(floor.add(D(float(lp[0][i])), D(float(lp[1][i]))), D(float(lp[2][i])))
        b = ceil.add(ceil.add(D(float(hp[0][i])), D(float(hp[1][i]))), D(float(hp[2][i])))
        if a > 0:
            sign, a, b = False, a, b
        elif b < 0:
            sign, a, b = True, b.copy_negate(), a.copy_negate()  # exact (unary minus rounds to the context)
        else:
            out.append(None)
            continue
        ca = cell(a)
        out.append(decimal_text(*ca, digits, sign) if ca == cell(b) else None)
    return out


def _shared_strings(fmt: Format, x_row, target, digits: int, functions, elements):
    """:func:`exact_strings` of (some) elements of a long vector from its shared row quantity:
    the family's ``row_sum`` (the softmax family's t, from the quad tier in one vectorized pass)
    bounds what mpmath would otherwise sum one exp per distinct value, and only the wanted
    elements are then enclosed. None (the caller's path) for a short vector, a family without
    ``row_sum``, no quad tier, or a string those bounds leave undecided (every digit right or
    none: the strings are the caller's)."""
    if functions is None:
        return None
    args_row = _as_row_args(target)
    fams = families(functions)
    if any(not hasattr(fam, "row_sum") or len(x_row) < getattr(fam, "ROW_SUM_MIN", 1 << 62)
           for fam in fams):
        return None
    if "scale" in args_row:
        _check_scaled(fams)
    prec = max(start_prec(fmt), 4 * digits)
    js_all = range(len(x_row)) if elements is None else sorted(set(elements))
    out: dict = {}
    for fam in fams:
        t = fam.row_sum(x_row, args_row, prec + 10)
        if t is None:
            return None
        cache: dict = {}  # the exps of the values seen, shared by the batches
        for f in (f for f in fam.FUNCTIONS if f in functions):
            one = _functions.get(f).per_vector
            js = [0] if one else js_all
            row = [None] * (1 if one else len(x_row))
            for i in range(0, len(js), _SHARED_BATCH):  # a batch of enclosures at a time: bounded memory
                part = list(js[i:i + _SHARED_BATCH])
                vals = fam.enclose(x_row, args_row, prec, fmt.p, wanted={f: part}, t=t, cache=cache)[f]
                for j, iv in zip(part, vals):
                    row[j] = _string(iv, digits, prec)
                    if row[j] is None:
                        return None
            out[f] = row
    return out


#: Elements enclosed at a time by :func:`_shared_strings`.
_SHARED_BATCH = 4096


def _verified_row(x_row, ra: dict, specials, function=None):
    """(the finite vector the reference computed, its arguments, the original position of each of
    its elements) of one row: the row itself, or for a row with -inf, +inf or NaN entries the
    compacted vector the mask layer gave ``function`` (None when every value is a fixed limit)."""
    if np.isfinite(x_row).all():
        return x_row, ra, np.arange(x_row.size)
    from .. import masks

    return masks.compact(function, x_row, ra, specials or masks.DEFAULT)


def verify_rows(fmt: Format, x: np.ndarray, target: np.ndarray, ref: dict, rows, outcomes=(),
                specials=None) -> list[str]:
    """Recompute the given rows at twice the escalation's final precision; list disagreements.

    A row with -inf, +inf or NaN entries is checked through the mask layer: its compacted finite
    vector is recomputed (``specials``, masks.Specials, as the reference read it) and compared at
    the positions it came from; the limit values around it (0, -inf, +inf, NaN) are exact points
    and are not recomputed.

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
    args = _functions.as_args(target)
    for b in rows:
        x_row = np.asarray(x[b], dtype=np.float64)
        # a finite row is one vector for every function; a row with non-finite entries is
        # compacted per function (masks.compact: element-wise functions keep their finite
        # elements, the others what the row's plan keeps)
        groups = ([(list(ref), _verified_row(x_row, row_args(args, b), specials))]
                  if np.isfinite(x_row).all() else
                  [([f], _verified_row(x_row, row_args(args, b), specials, f)) for f in ref])
        for names, got in groups:
            if got is not None:
                bad += _verify_vector(fmt, b, x[b], got, ref, names, outcomes)
    return bad


def _verify_vector(fmt: Format, b: int, x_b, got, ref: dict, names, outcomes) -> list[str]:
    """verify_rows for one vector (row b, or the compacted part ``got`` of it) and ``names``."""
    bad = []
    xr, ra, cols = got
    fams = families(names)
    prec = 2 * _final_prec(fmt, xr, ra, fams)
    vals = enclose(xr, ra, prec, fmt.p, fams)
    where_v = f"vector {list(map(float, x_b))[:8]}"
    for f, enclosures in vals.items():
        r = ref.get(f)
        if r is None or f not in names:
            continue
        for j, iv in enumerate(enclosures):
            idx = (b, int(cols[j])) if r.rounded.ndim == 2 else (b,)
            if not r.determined[idx] or np.isinf(r.ulp[idx]):  # an exact limit: not computed
                continue
            rounded, ulp, dlo, dhi, qlo, qhi, ok = _interval_point(fmt, iv, _decided(fmt, iv))
            got = (float(r.rounded[idx]), float(r.ulp[idx]))
            where = f"{f} of {where_v} element {int(cols[j])}"
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
        if o.y is None or f not in names:
            continue
        pos = {int(c): k for k, c in enumerate(cols)}  # original position -> compacted one
        idxs = [(b, int(c)) for c in cols] if o.y.ndim == 2 else [(b,)]
        keep = [i for i in idxs if ref[f].determined[i] and np.isfinite(o.y[i])
                and not np.isinf(ref[f].ulp[i])]
        items = [(pos[i[-1]] if len(i) == 2 else 0, float(o.y[i])) for i in keep]
        figs = exact_figures(fmt, xr, ra, f, items, start=prec) if items else []
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


def _final_prec(fmt: Format, x_row, args_row, fams=None) -> int:
    """The precision at which the escalation decides every value of the vector."""
    prec = start_prec(fmt)
    while prec < MAX_PREC and not all(_decided(fmt, iv) for iv in _flat_enclose(fmt, x_row, args_row, prec,
                                                                                 fams)):
        prec *= 2
    return prec


# -------------------------------------------------------------- thresholds
def thresholds(fmt: Format, n: int = 1000) -> dict:
    """Exact limits of exp in the format, computed with mpmath (60 significant digits), once
    per process for each (format, n)."""
    return dict(_thresholds(fmt, n))


@functools.lru_cache(maxsize=64)
def _thresholds(fmt: Format, n: int) -> dict:
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

