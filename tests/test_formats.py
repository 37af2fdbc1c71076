import math

import ml_dtypes
import numpy as np
import pytest

from numstab.errors import UsageError
from numstab.formats import FORMATS, get_format

F16, BF16, F32, F64 = (FORMATS[k] for k in ("float16", "bfloat16", "float32", "float64"))


def test_constants_match_numpy_finfo():
    for name in ("float16", "bfloat16", "float32", "float64", "float8_e4m3fn", "float8_e5m2"):
        f = FORMATS[name]
        fi = ml_dtypes.finfo(f.dtype) if "float8" in name or name == "bfloat16" else np.finfo(f.dtype)
        assert f.max == float(fi.max)
        assert f.tiny == float(fi.smallest_normal)
        assert f.smallest_subnormal == float(fi.smallest_subnormal)
        assert f.eps == float(fi.eps)


def test_float16_constants_by_hand():
    assert F16.max == 65504.0
    assert F16.tiny == 2.0**-14
    assert F16.smallest_subnormal == 2.0**-24
    assert F16.eps == 2.0**-10


def test_bfloat16_rounding_is_direct_not_through_float32():
    # 1 + 2^-8 + 2^-30: just above the midpoint between 1 and 1 + 2^-7. Correct rounding: up.
    # Through float32 it first becomes 1 + 2^-8 (an exact tie), then ties to even: 1.0.
    x = 1 + 2.0**-8 + 2.0**-30
    assert float(np.float32(x).astype(ml_dtypes.bfloat16)) == 1.0
    assert BF16.round(x) == 1 + 2.0**-7


def test_round_matches_numpy_for_float16_and_float32():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(200_000) * np.exp(rng.uniform(-30, 15, 200_000))
    with np.errstate(over="ignore"):
        assert np.array_equal(F16.round(x), x.astype(np.float16).astype(np.float64))
        assert np.array_equal(F32.round(x), x.astype(np.float32).astype(np.float64))


def test_round_exact_matches_vectorized_round():
    rng = np.random.default_rng(1)
    for f in FORMATS.values():
        for v in rng.standard_normal(300) * np.exp(rng.uniform(-20, 12, 300)):
            m, e = math.frexp(v)
            got = f.round_exact(v < 0, int(abs(m) * 2**53), e - 53)
            want = float(f.round(v))
            assert got == want or (math.isnan(got) and math.isnan(want)), (f.name, v)


def test_overflow_and_ties():
    assert F16.round(65519.99) == 65504.0
    assert F16.round(65520.0) == math.inf  # the tie rounds to even: 2^16 -> inf
    assert F16.round(2.0**-25) == 0.0  # half the smallest subnormal ties to 0
    assert F16.round(2.0**-25 * 1.001) == 2.0**-24
    e4 = FORMATS["float8_e4m3fn"]
    assert e4.round(464.0) == 448.0 and math.isnan(e4.round(464.5))


def test_ulp_by_hand():
    assert F16.ulp(1.0) == 2.0**-10
    assert F16.ulp(0.999) == 2.0**-11
    assert F16.ulp(0.0) == 2.0**-24
    assert F16.ulp(3 * 2.0**-24) == 2.0**-24  # subnormal: ulp is the smallest subnormal
    assert F16.ulp(65504.0) == 32.0
    assert F64.ulp(1.0) == 2.0**-52


def test_unknown_dtype_suggests():
    with pytest.raises(UsageError, match="did you mean 'float16'"):
        get_format("flaot16")


def test_round_ulp_matches_round_and_ulp():
    rng = np.random.default_rng(5)
    x = rng.standard_normal(100_000) * np.exp(rng.uniform(-120, 120, 100_000))
    x[:5] = [0.0, -0.0, 2.0**-30, 65520.0, -1e-300]
    for f in FORMATS.values():
        r, u = f.round_ulp(x)
        with np.errstate(all="ignore"):
            assert np.array_equal(r, f.round(x), equal_nan=True)
            assert np.array_equal(u, f.ulp(x))
    assert F16.round_ulp(np.array([0.0]))[1][0] == 2.0**-24


def test_one_sided_limits_of_rounding_and_ulp():
    # just below a midpoint: the lower neighbour; just above: the upper one
    mid = 1 + 2.0**-11  # halfway between 1 and 1 + 2^-10 in float16
    assert F16.round(mid) == 1.0  # the tie goes to even
    assert F16.round_ulp_below(np.array([mid]))[0][0] == 1.0
    assert F16.round_ulp_above(np.array([mid]))[0][0] == 1 + 2.0**-10
    # just below 1 the ulp halves; just above -1 (toward 0) too; just below -1 it does not
    assert F16.round_ulp_below(np.array([1.0]))[1][0] == 2.0**-11
    assert F16.round_ulp_above(np.array([-1.0]))[1][0] == 2.0**-11
    assert F16.round_ulp_below(np.array([-1.0]))[1][0] == 2.0**-10
    assert F16.round_ulp_above(np.array([1 - 2.0**-53]))[1][0] == 2.0**-11
    # at zero and in the subnormal range the spacing is the smallest subnormal
    assert F16.round_ulp_below(np.array([0.0]))[1][0] == 2.0**-24
    assert F16.round_ulp_below(np.array([2.0**-14]))[1][0] == 2.0**-24


def test_ulp_from_the_bits_is_the_frexp_definition_on_every_kind_of_double():
    """round_ulp builds ulp_F(x) from x's exponent bits where every ulp of the format is a normal
    double; the definition, written here with frexp/ldexp (as round_ulp computed it before), must
    give the same doubles for random bit patterns (NaN payloads, subnormals, infinities), signed
    zeros and every binade edge, in every format, for arrays and 0-d values alike."""
    rng = np.random.default_rng(11)
    x = rng.integers(-(2**63), 2**63 - 1, 200_000, dtype=np.int64).view(np.float64)
    edges = [2.0**k * s for k in range(-1075, 1024) for s in (1.0, -1.0)]
    nbrs = np.concatenate([np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf)])
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 1.7976931348623157e308]
    x = np.concatenate([x, edges, nbrs, special])
    for f in FORMATS.values():
        with np.errstate(all="ignore"):
            _, e = np.frexp(x)
            e = np.where(x == 0, f.emin + 1, e)
            want = np.ldexp(1.0, np.maximum(e - 1, f.emin) - (f.p - 1))
            got = f.round_ulp(x)[1]
            assert got.tobytes() == want.tobytes(), f.name
            assert f.round_ulp(x[::3])[1].tobytes() == want[::3].tobytes()  # a strided view
            assert f.ulp(np.float64(3.0)) == f.ulp(np.array([3.0]))[0]
            assert np.shape(f.ulp(np.float64(3.0))) == ()
