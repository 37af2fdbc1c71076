"""Floating-point formats as data, and correct rounding into them.

A :class:`Format` is described by its precision ``p`` (significand bits,
implicit bit included), its exponent range ``emin..emax`` and whether it has
infinities. Everything else (max, tiny, eps, ULPs, rounding) is derived from
those numbers, so a new format is one line in :data:`FORMATS`.

Rounding from float64 is done here, not by ``astype``: ml_dtypes converts
float64 -> bfloat16 through float32, which double-rounds some values (see
``tests/test_formats.py`` for one). :func:`Format.round` rounds to nearest,
ties to even, with gradual underflow and overflow to inf (NaN for formats
without infinities, as ml_dtypes does for float8_e4m3fn).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import unknown_name


def _binade(x: np.ndarray) -> np.ndarray:
    """floor(log2|x|) of float64 x from its exponent bits: exact for normal x, -1023 for 0 and
    subnormals, -1 for infinities and NaN (frexp's exponent 0, less 1). Where the result is then
    raised to a format's emin, as round_ulp does, it is frexp(x)[1] - 1 for every x (a subnormal's
    true binade is below every emin but float64's, whose ulps take frexp's path). Integer passes
    instead of frexp."""
    x = np.asarray(x, dtype=np.float64)
    e = ((x if x.flags.c_contiguous else x.copy()).view(np.int64) >> 52) & 0x7FF
    special = e == 0x7FF
    e -= 1023
    if special.any():
        e[special] = -1
    return e


def _pow2(k: np.ndarray) -> np.ndarray:
    """2.0**k for integer k in float64's normal range (-1022..1023), exactly, from the bits."""
    return ((np.asarray(k, dtype=np.int64) + 1023) << 52).view(np.float64)


@dataclass(frozen=True)
class Format:
    name: str
    p: int  # significand bits, implicit bit included
    emin: int
    emax: int
    has_inf: bool = True
    max_significand: int | None = None  # integer significand of the largest finite value
    note: str = ""
    _dtype_name: str = field(default="", repr=False)

    # ----- derived constants (exact in float64 for every format here) -----
    @property
    def max(self) -> float:
        sig = self.max_significand if self.max_significand is not None else 2**self.p - 1
        return math.ldexp(sig, self.emax - self.p + 1)

    @property
    def tiny(self) -> float:
        """Smallest positive normal number."""
        return math.ldexp(1.0, self.emin)

    @property
    def smallest_subnormal(self) -> float:
        return math.ldexp(1.0, self.emin - self.p + 1)

    @property
    def eps(self) -> float:
        """Distance from 1 to the next larger number, 2^(1-p)."""
        return math.ldexp(1.0, 1 - self.p)

    @property
    def unit_roundoff(self) -> float:
        return math.ldexp(1.0, -self.p)

    @property
    def overflow_value(self) -> float:
        """What a too-large result becomes in this format."""
        return math.inf if self.has_inf else math.nan

    @property
    def dtype(self) -> np.dtype:
        if self._dtype_name in ("float16", "float32", "float64"):
            return np.dtype(self._dtype_name)
        import ml_dtypes  # imported lazily: only the non-native formats need it

        return np.dtype(getattr(ml_dtypes, self._dtype_name))

    # ----- rounding and ULPs, vectorized over float64 arrays -----
    def round(self, x) -> np.ndarray:
        """Round float64 values correctly (nearest, ties to even) into this format.

        Returns float64 values that are exactly representable in the format
        (or +-inf / NaN on overflow).
        """
        return self.round_ulp(x)[0]

    def round_ulp(self, x) -> tuple[np.ndarray, np.ndarray]:
        """(round(x), ulp(x)) sharing one frexp: the fast reference's hot path.

        ulp is the quantum of x's binade (2^(max(floor(log2|x|), emin) - p + 1)); x / ulp
        is exact (a power-of-two scaling), rint rounds it to nearest even, and results
        beyond max overflow.
        """
        x = np.asarray(x, dtype=np.float64)
        with np.errstate(all="ignore"):
            if self.emin - self.p + 1 >= -1022:  # every ulp a normal float64: built from its bits
                u = _pow2(np.maximum(_binade(x), self.emin) - (self.p - 1))
            else:
                _, e = np.frexp(x)
                e = np.where(x == 0, self.emin + 1, e)  # ulp(0) is the smallest subnormal
                u = np.ldexp(1.0, np.maximum(e - 1, self.emin) - (self.p - 1))
            if self.p == 53 and self.emin == -1022:
                y = x.copy()
            else:
                y = np.rint(x / u) * u
                big = np.abs(y) > self.max
                if big.any():
                    y = np.where(big, np.copysign(self.overflow_value, x), y)
        return y, u

    def round_ulp_below(self, b) -> tuple[np.ndarray, np.ndarray]:
        """(rounding, ulp) shared by every real just below b (b a float64; the limit from below).

        Differs from round_ulp(b) where b is a midpoint (values below round to the
        neighbour on the -inf side) or a positive power of two (values below are in
        the binade with half the ulp).
        """
        b = np.asarray(b, dtype=np.float64)
        r, u = self.round_ulp(b)
        with np.errstate(all="ignore"):
            mid = np.abs(b - r) == u / 2
            r = np.where(mid, b - u / 2, r)
            # below a positive power of two the binade is the one below (0.75 b lies in it);
            # below a negative b, |r| > |b| stays in |b|'s binade
            pow2 = (b > 0) & (np.frexp(b)[0] == 0.5)
            if pow2.any():
                u = np.where(pow2, self.ulp(b * 0.75), u)
        return r, u

    def round_ulp_above(self, a) -> tuple[np.ndarray, np.ndarray]:
        """(rounding, ulp) shared by every real just above a: the mirror of round_ulp_below."""
        r, u = self.round_ulp_below(-np.asarray(a, dtype=np.float64))
        return -r, u

    def ulp(self, r) -> np.ndarray:
        """ulp_F(r) = 2^(max(floor(log2|r|), emin) - p + 1); smallest subnormal for r = 0."""
        return self.round_ulp(r)[1]

    def round_exact(self, negative: bool, man: int, exp: int) -> float:
        """Round the exact value (-1)^negative * man * 2^exp (Python ints) into the format."""
        if man == 0:
            return -0.0 if negative else 0.0
        e = man.bit_length() - 1 + exp  # floor(log2 |v|)
        q = max(e, self.emin) - self.p + 1
        if e <= q - 2:  # |v| < half the smallest subnormal: 0 (also for absurdly tiny exponents)
            return -0.0 if negative else 0.0
        if e > self.emax + 1:  # far beyond max: overflow without building huge integers
            return -self.overflow_value if negative else self.overflow_value
        shift = exp - q
        if shift >= 0:
            k = man << shift
        else:
            k, rem = divmod(man, 1 << -shift)
            half = 1 << (-shift - 1)
            if rem > half or (rem == half and k & 1):
                k += 1
        if k == 0:
            return -0.0 if negative else 0.0
        qm = self.emax - self.p + 1  # exponent of the quantum of max
        max_sig = self.max_significand if self.max_significand is not None else 2**self.p - 1
        too_big = (k << (q - qm)) > max_sig if q >= qm else k > (max_sig << (qm - q))
        v = self.overflow_value if too_big else math.ldexp(k, q)
        return -v if negative else v

    def ulp_exponent_exact(self, man: int, exp: int) -> int:
        """Exponent of ulp_F(r) for r = man * 2^exp exactly (man >= 0)."""
        if man == 0:
            return self.emin - self.p + 1
        return max(man.bit_length() - 1 + exp, self.emin) - self.p + 1

    def cast(self, values) -> np.ndarray:
        """Cast float64 values that are already representable into this format's dtype."""
        return np.asarray(values, dtype=np.float64).astype(self.dtype)


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("float16", 11, -14, 15, _dtype_name="float16"),
        Format("bfloat16", 8, -126, 127, _dtype_name="bfloat16"),
        Format("float32", 24, -126, 127, _dtype_name="float32"),
        Format("float64", 53, -1022, 1023, _dtype_name="float64"),
        Format(
            "float8_e4m3fn", 4, -6, 8, has_inf=False, max_significand=0b1110,
            note="no infinity: overflow gives NaN", _dtype_name="float8_e4m3fn",
        ),
        Format("float8_e5m2", 3, -14, 15, _dtype_name="float8_e5m2"),
    )
}

#: The formats `compare` runs by default (float8 kernels come later).
DEFAULT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def get_format(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise unknown_name("dtype", name, FORMATS) from None
