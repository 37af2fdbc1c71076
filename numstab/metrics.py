"""Error figures per output element, and the status words.

Definitions (README, "What the numbers mean"):

* ULP error: |y - r| / ulp_F(r), ulp_F(r) = 2^(max(floor(log2|r|), emin) - p + 1),
  the smallest subnormal for r = 0; 0 when y is the infinity that r rounds to.
* relative error: |y - r| / |r|.
* status, worst first: ``nan`` (y is NaN), ``overflow`` (y is +-inf where r
  rounds to a finite number), ``underflow`` (y is 0 where r rounds to a nonzero
  number, or y is -inf from a log of zero where r is finite; a +inf loss is an
  overflow), ``inaccurate`` (ULP error above the
  tolerance; also any number where the exact value is an infinite limit or NaN,
  whose ULP error is infinite), ``undetermined`` (the reference could not be settled: no figure is
  given), ``ok``.

Reported figures are quantized (3 decimals below 1 ULP, else 3 significant
digits; relative errors below eps_F/1024 are 0) so the exact reference and the
fast bounded one report identical numbers: an element whose bound does not fix
its quantized figures is handed back (``settled`` False) for mpmath, and at the
last tier the runner has the reference decide it exactly (``exact=``). A figure
beyond float64's range is inf here; the runner keeps its digits (a Decimal).
"""

from __future__ import annotations

import numpy as np

from .formats import Format
from .functions import get
from .results import INACCURATE, NAN, OK, OVERFLOW, UNDERFLOW, UNDETERMINED, RefData

DEFAULT_TOLERANCE = 4.0


#: Powers of ten as float64, each correctly rounded (10.0 ** n is not, for n > 22, on every libm).
_P10 = np.array([float(10**i) if i <= 308 else np.inf for i in range(700)])


def _pow10(n) -> np.ndarray:
    """10^n for integral float64 n (clipped to [0, 699]): one table look-up per element."""
    n = np.asarray(n)
    if not n.ndim:
        return _P10.take(int(n), mode="clip")
    # clipped first: take's own mode="clip" costs 6x a plain take
    return _P10.take(np.minimum(np.maximum(n, 0), _P10.size - 1).astype(np.intp))


def _sig3(v: np.ndarray, decimals3: bool = False) -> np.ndarray:
    """Round positive finite values to 3 significant digits, landing on the nearest double;
    ``decimals3``: values below 1 to 3 decimals instead (round(v * 1000) / 1000, the same
    operations as a decade exponent of -1)."""
    with np.errstate(all="ignore"):
        v = np.asarray(v, dtype=np.float64)
        e = np.floor(np.log10(np.where((v > 0) & np.isfinite(v), v, 1.0)))
        if decimals3:
            e = np.where(v < 1, -1.0, e)
        small = e < 2
        if small.all():  # the usual case (figures below 100): one branch
            up = _pow10(2 - e)
            return np.round(v * up) / up
        # below 100 times 10^(2 - e), above divided by 10^(e - 2) (each power exact to 10^22):
        # both branches computed, one kept per element (cheaper than selecting the elements)
        p = _pow10(np.abs(2 - e))
        k = np.where(small, np.round(v * p), np.round(v / p))
        out = np.where(small, k / p, k * p)
        far = (e > 24) & np.isfinite(out) & (v > 0)  # k * 10^(e-2) rounds twice: take the decimal
        if far.any():
            out[far] = [figure_value(int(kk), int(ee)) for kk, ee in zip(k[far], e[far])]
        return out


def figure_value(k: int, e: int) -> float:
    """The float64 the quantizers give for the decimal k * 10^(e - 2) (k an integer, 0 <= k <= 1000).

    ``e`` is the decimal exponent of the 3-significant-digit figure; -1 for the 3-decimal
    ULP figures below 1 (k / 1000). The nearest double (inf beyond float64's range), as the
    quantizers compute it, so an exactly decided figure and a bounded one are the same double.
    """
    if e > 24:
        return float(f"{k}e{e - 2}")
    with np.errstate(all="ignore"):
        if e < 2:
            return float(np.float64(k) / _pow10(np.array([2 - e]))[0])
        return float(np.float64(k) * _pow10(np.array([e - 2]))[0])


def quantize(v) -> np.ndarray:
    """3 decimals below 1, else 3 significant digits (inf and NaN stay). Monotone."""
    v = np.asarray(v, dtype=np.float64)
    with np.errstate(all="ignore"):
        sig = ~(v < 1) & np.isfinite(v)  # 3 significant digits only where they are the figure
        if sig.any():  # both kinds in one pass (no element selection): 3 decimals below 1
            out = _sig3(v, decimals3=True)
        else:
            out = np.asarray(np.round(v * 1000) / 1000)
    return np.where(np.isfinite(v), out, v)


def quantize_rel(v, fmt: Format) -> np.ndarray:
    """3 significant digits; below eps_F/1024 (noise of the reference itself) it is 0."""
    v = np.asarray(v, dtype=np.float64)
    fin = np.isfinite(v)
    sig = ~(v < fmt.eps / 1024) & fin
    if sig.all():
        return _sig3(v)
    if not sig.any():
        return np.where(fin, 0.0, v)
    return np.where(sig, _sig3(v), np.where(fin, 0.0, v))  # every element through _sig3: no selection


#: :func:`_settle_pair` takes figures below this (a figure's decade above 24 is rounded twice by
#: k * 10^(e - 2): _sig3 takes its decimal instead)
_PAIR_MAX = 1e24


def _settle_pair(lo, hi, q, vmin: float):
    """(q(hi), q(lo) == q(hi)) for q = :func:`quantize` or quantize_rel on finite ends with
    0 <= lo and hi < 10^24, computed as _sig3 computes q: the decade e = floor(log10(v)) (-1
    below 1 for the ULP figures; ``vmin``: the value below which e no longer matters, 0.1 for
    those, the 0 floor of the relative ones), then round(v * 10^(2 - e)) / 10^(2 - e) below 100,
    round(v / 10^(e - 2)) * 10^(e - 2) above. Ends in one decade share their scale, so
    q(lo) == q(hi) is the equality of the rounded integers k (k -> q is one-to-one for the
    k <= 1000 of three digits); ends in different decades (they may still round to one figure,
    9.9996 and 10.004) are compared through q itself. A third of the passes of q twice."""
    e_hi = np.floor(np.log10(np.maximum(hi, vmin)))
    # lo's decade (lo <= hi) is hi's where lo = hi, where both are below vmin, or where
    # max(lo, vmin) * 10^(2 - e_hi) >= 100; within 2^-30 of that boundary (log10's own error, the
    # product's rounding) it counts as another decade, whose figure q itself gives below: a product
    # and a comparison instead of lo's own log10 (10^(2 - e_hi) is exact: every floor vmin is above
    # 10^-20)
    lo_v = np.maximum(lo, vmin)
    small = e_hi < 2
    if small.all():  # the usual figures, below 100: one branch
        up = _P10.take((2 - e_hi).astype(np.intp))
        k_hi = np.rint(hi * up)
        same = np.rint(lo * up) == k_hi
        q_hi = np.divide(k_hi, up, out=k_hi)
        other = (lo_v * up < 100 * (1 + 2.0**-30)) & (hi > vmin) & (lo != hi)
    else:  # both branches computed, one kept per element (as _sig3 does)
        p = _P10.take(np.abs(2 - e_hi).astype(np.intp))
        k_hi = np.where(small, np.rint(hi * p), np.rint(hi / p))
        same = np.where(small, np.rint(lo * p), np.rint(lo / p)) == k_hi
        q_hi = np.where(small, k_hi / p, k_hi * p)
        other = (np.where(small, lo_v * p, lo_v / p) < 100 * (1 + 2.0**-30)) & (hi > vmin) & (lo != hi)
    same &= ~other
    if other.any():
        same[other] = q(lo[other]) == q_hi[other]
    return q_hi, same


def _pair(lo, hi, q, vmin: float):
    """(q(hi), q(lo) == q(hi)) for the quantizer q: by :func:`_settle_pair` where every end is
    finite, >= 0 and below 10^24, else by q on each end."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    with np.errstate(all="ignore"):
        if hi.size and np.max(hi) < _PAIR_MAX and np.min(lo) >= 0:
            return _settle_pair(lo, hi, q, vmin)
        q_hi = q(hi)
        return q_hi, q(lo) == q_hi


def quantize_pair(lo, hi):
    """(quantize(hi), quantize(lo) == quantize(hi)), bit for bit, for lo <= hi: the ULP figures of
    a bound's two ends."""
    return _pair(lo, hi, quantize, 0.1)


def quantize_rel_pair(lo, hi, fmt: Format):
    """(quantize_rel(hi), quantize_rel(lo) == quantize_rel(hi)), bit for bit, for lo <= hi: a
    figure below eps_F/1024 is 0, and equals only another 0 (what quantize_rel gives those ends
    already; :func:`_settle_pair`'s scale of them is replaced)."""
    floor = fmt.eps / 1024
    q_hi, same = _pair(lo, hi, lambda v: quantize_rel(v, fmt), floor)
    with np.errstate(invalid="ignore"):
        z_lo, z_hi = np.asarray(lo) < floor, np.asarray(hi) < floor
    if z_lo.any() or z_hi.any():
        q_hi = np.where(z_hi, 0.0, q_hi)
        same = np.where(z_lo | z_hi, z_lo & z_hi, same)
    return q_hi, same


def _log_of_zero(function: str, y: np.ndarray) -> np.ndarray:
    """-inf from log(0) is an underflow; +inf (cross-entropy's -log(0) too) is an overflow."""
    if get(function).log_of_zero == -np.inf:
        return y == -np.inf
    return np.zeros(y.shape, dtype=bool)


#: element_metrics works through this many elements at a time: its twenty-odd temporaries then
#: stay in the cache and are reused, instead of being allocated (and faulted in) batch-sized
CHUNK = 1 << 15


def element_metrics(fmt: Format, function: str, y, ref: RefData, tolerance: float, exact=None):
    """Quantized ULP error, relative error, status code and `settled` per element
    (:func:`_element_metrics` on chunks of CHUNK elements: every figure is element-wise)."""
    y = np.asarray(y, dtype=np.float64)
    if y.size <= CHUNK:
        return _element_metrics(fmt, function, y, ref, tolerance, exact)
    shape = y.shape
    flat = [np.ravel(np.asarray(getattr(ref, k))) for k in RefData.__dataclass_fields__]
    ex = None if exact is None else [np.ravel(np.broadcast_to(np.asarray(v), shape)) for v in exact]
    y = y.ravel()
    uq, rq = np.empty(y.size), np.empty(y.size)
    status, settled = np.empty(y.size, dtype=np.int8), np.empty(y.size, dtype=bool)
    for i in range(0, y.size, CHUNK):
        c = slice(i, i + CHUNK)
        uq[c], rq[c], status[c], settled[c] = _element_metrics(
            fmt, function, y[c], RefData(*(a[c] for a in flat)), tolerance,
            None if ex is None else [a[c] for a in ex])
    return uq.reshape(shape), rq.reshape(shape), status.reshape(shape), settled.reshape(shape)


def _element_metrics(fmt: Format, function: str, y, ref: RefData, tolerance: float, exact=None):
    """Quantized ULP error, relative error, status code and `settled` per element.

    The figures come from float64 bounds on the exact errors, widened past float64's own
    rounding (so neither end can sit on a quantization step by accident); an element whose
    two ends quantize differently, or whose bound is beyond float64's range for a finite
    output, is not settled. ``exact``: optional (mask, ULP figures, relative figures), the
    quantized figures the reference decided exactly (``reference.exact_figures``) for the
    elements in mask; they replace the bounds there.
    """
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(all="ignore"):
        ulp = ref.ulp
        # the usual chunk: every output, exact value and ulp finite, every value determined, nothing
        # decided exactly -- then no element is NaN, infinite, undetermined or special, and the
        # branches for those are skipped (a sum is finite only if every term is: a cheap test,
        # which an overflowing sum of finite terms merely sends down the general path)
        plain = (exact is None and bool(ref.determined.all())
                 and bool(np.isfinite(np.sum(y) + np.sum(ref.rounded) + np.sum(ulp))))
        # delta is measured from the rounded value, or from +-max where r rounds to +-inf
        anchor = ref.rounded if plain else np.where(np.isfinite(ref.rounded), ref.rounded,
                                                    np.copysign(fmt.max, ref.rounded))
        k = (y - anchor) / ulp
        a, b = k - ref.dhi, k - ref.dlo  # (y - r)/ulp lies in [a, b]
        if plain:  # a <= b, all finite: the same two figures in fewer passes
            flo = np.maximum(np.maximum(a, -b), 0.0)
            fhi = np.maximum(-a, b)
        else:
            flo = np.where((a <= 0) & (b >= 0), 0.0, np.minimum(np.abs(a), np.abs(b)))
            fhi = np.maximum(np.abs(a), np.abs(b))
        zero = (k == 0) & (ref.dlo == 0) & (ref.dhi == 0)  # y is the exact value: no error at all
        # (flo is 0 already where zero: a = b = 0). The absolute 2^-50 covers the rounding of k - d
        # where the two nearly cancel; y at the rounded value (k = 0) makes a = -dhi and b = -dlo
        # exactly, so a tiny error (the loss of exp(-1136) output as 0: 2e-171 ULP) is settled
        # by its bounds, not sent to mpmath for want of an absolute 2^-50
        pad = np.where(k == 0, 0.0, 2.0**-50)
        flo = np.maximum(flo * (1 - 2.0**-50) - pad, 0.0)
        fhi = np.where(zero, 0.0, fhi * (1 + 2.0**-50) + pad)
        rlo = np.where(flo <= 0, 0.0, flo * ref.qlo * (1 - 2.0**-50))
        rhi = np.where(fhi == 0, 0.0, fhi * ref.qhi * (1 + 2.0**-50))
        # (the tests of zeros below are skipped where no output, or no exact value, rounds to 0)
        y_zero, r_zero = (y == 0), (ref.rounded == 0)
        any_y0, any_r0 = bool(y_zero.any()), bool(r_zero.any())
        if any_r0:
            r_zero &= (ref.dlo == 0) & (ref.dhi == 0)
        if get(function).nonzero and any_y0:
            # y = 0 against an exact value known to be nonzero: |0 - r| / |r| = 1 exactly, however
            # far below float64's range r lies (the softmax of a -1e9 mask, exp(-1e9) ~ 10^-434294482,
            # where ulp / |r| is infinite in float64 and the bounds alone give no ratio)
            one = y_zero & ~r_zero
            rlo, rhi = np.where(one, 1.0, rlo), np.where(one, 1.0, rhi)
        # a bound beyond float64 for a finite error (r = 0 exactly makes a true infinite relative
        # error; a nonzero r far below float64's range makes ulp / |r| infinite in float64 too, so
        # r = 0 is told by its point enclosure [0, 0], not by q); fhi, rhi >= 0: their sum is
        # finite where both are
        beyond = ~np.isfinite(fhi) | (~np.isfinite(rhi) & ~r_zero) if any_r0 else ~np.isfinite(fhi + rhi)
        uhi, u_same = quantize_pair(flo, fhi)
        qrhi, r_same = quantize_rel_pair(rlo, rhi, fmt)
        if plain:
            status = np.full(y.shape, OK, dtype=np.int8)
            status[uhi > tolerance] = INACCURATE
            if any_y0:
                status[y_zero & (ref.rounded != 0)] = UNDERFLOW
            return uhi, qrhi, status, u_same & r_same & ~beyond

        nan = np.isnan(y)
        inf = np.isinf(y)
        exact_inf = inf & (y == ref.rounded)
        bad = nan | (inf & ~exact_inf)
        settled = bad | exact_inf | (u_same & r_same & ~beyond)
        if exact is not None:
            m, eu, er = (np.asarray(v) for v in exact)
            uhi, qrhi = np.where(m, eu, uhi), np.where(m, er, qrhi)
            settled = settled | m
        uq = np.where(bad, np.inf, np.where(exact_inf, 0.0, uhi))
        rq = np.where(bad, np.inf, np.where(exact_inf, 0.0, qrhi))

        status = np.full(y.shape, OK, dtype=np.int8)
        status[uq > tolerance] = INACCURATE
        status[(y == 0) & (ref.rounded != 0)] = UNDERFLOW
        lz = _log_of_zero(function, y) & ~exact_inf
        status[inf & ~exact_inf & ~lz] = OVERFLOW
        status[inf & ~exact_inf & lz] = UNDERFLOW
        status[nan] = NAN
        und = ~ref.determined.astype(bool)
        status[und & ~nan & ~inf] = UNDETERMINED
        uq = np.where(und & ~bad, np.nan, uq)
        rq = np.where(und & ~bad, np.nan, rq)
        # an exact value that is itself +-inf or NaN (masks.py: a limit, or a NaN input) is
        # stored with ulp = +inf: only that very value is right, anything else is infinitely far
        special = np.isinf(ulp)
        if special.any():
            same = (y == ref.rounded) | (nan & np.isnan(ref.rounded))
            uq = np.where(special, np.where(same, 0.0, np.inf), uq)
            rq = np.where(special, np.where(same, 0.0, np.inf), rq)
            status[special] = np.where(same, OK, np.where(nan, NAN, INACCURATE))[special]
            settled = settled | special
    return uq, rq, status, settled | und
