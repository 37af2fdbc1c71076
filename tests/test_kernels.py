import math

import ml_dtypes
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from numstab.formats import FORMATS
from numstab.functions import REGISTRY
from numstab.reference import mp_reference
from numstab.steps import acc_sum

SM, LS, LSE, CE = (REGISTRY[f] for f in ("softmax", "log_softmax", "logsumexp", "cross_entropy"))
MAIN = ("float16", "bfloat16", "float32", "float64")


def run(impl, x, dtype, acc="sequential", target=None):
    with np.errstate(all="ignore"):
        return np.asarray(impl(np.asarray([x], dtype=FORMATS[dtype].dtype), acc, target))[0]


def test_float16_naive_softmax_overflows_past_ln_65520():
    assert abs(math.log(65520) - 11.0901107) < 1e-7
    last_ok = 11.0859375  # largest float16 below ln(65520)
    nxt = float(np.nextafter(np.float16(last_ok), np.float16(20)))
    assert nxt == 11.09375 and last_ok < math.log(65520) < nxt
    ok = run(SM["naive"], [last_ok, 0.0], "float16").astype(float)
    assert np.all(np.isfinite(ok)) and abs(ok.sum() - 1) < 2e-3
    bad = run(SM["naive"], [nxt, 0.0], "float16").astype(float)
    assert math.isnan(bad[0]) and bad[1] == 0.0  # inf/inf and 1/inf
    assert np.all(np.isfinite(run(SM["stable"], [nxt, 0.0], "float16").astype(float)))


def test_log_softmax_of_1000_0_in_float32():
    naive = run(LS["naive"], [1000.0, 0.0], "float32")
    assert naive[1] == -np.inf
    for name in ("stable", "log1p"):
        got = run(LS[name], [1000.0, 0.0], "float32")
        assert got[1] == -1000.0 and got[0] == 0.0


def test_clipped_cross_entropy_saturates_at_minus_log_1e7():
    for dt in ("float32", "float64"):
        got = float(run(CE["clipped"], [0.0, -200.0], dt, target=np.array([1])))
        assert math.isclose(got, -math.log(1e-7), rel_tol=1e-6), got  # 16.1180956...
        stable = float(run(CE["stable"], [0.0, -200.0], dt, target=np.array([1])))
        assert stable == 200.0


def test_logsumexp_11_11_float16():
    assert float(run(LSE["naive"], [11.0, 11.0], "float16")) == math.inf
    assert float(run(LSE["stable"], [11.0, 11.0], "float16")) == 11.6953125


def test_np_sum_matches_documented_accumulation():
    rng = np.random.default_rng(3)
    for dt, model in ((np.float16, "float32"), (ml_dtypes.bfloat16, "sequential")):
        for _ in range(50):
            x = (rng.standard_normal(1000) * 20).astype(dt)
            assert float(np.sum(x)) == float(acc_sum(x[None], model)[0])


def test_sequential_is_left_to_right():
    x = np.array([[2048, 1, 1, 1, 1]], dtype=np.float16)  # 2048 + 1 rounds back to 2048 (tie, even)
    assert float(acc_sum(x, "sequential")[0]) == 2048.0
    assert float(acc_sum(x, "pairwise")[0]) == 2052.0
    assert float(acc_sum(x, "float32")[0]) == 2052.0


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@given(st.sampled_from(tuple(FORMATS)), st.lists(finite, min_size=1, max_size=40),
       st.sampled_from(("sequential", "pairwise", "float32")))
def test_stable_implementations_never_return_inf_or_nan(dtype, values, acc):
    """Finite input: a stable kernel is finite wherever the exact result rounds to a finite number."""
    f = FORMATS[dtype]
    x = f.round(np.array(values))
    x = x[np.isfinite(x)]
    if x.size == 0:
        return
    target = np.array([len(x) - 1])
    ref = mp_reference(f, x[None], target)
    for impl in (SM["stable"], SM["online"], LS["stable"], LS["log1p"], LSE["stable"],
                 LSE["log1p"], CE["stable"]):
        y = np.asarray(run(impl, x, dtype, acc, target), dtype=np.float64)
        want = ref[impl.function].rounded[0]
        # only where the exact value itself leaves the format (inf, or NaN in float8_e4m3fn)
        assert np.all(np.isfinite(y) | ~np.isfinite(want)), (impl.key, dtype, x, y)
        if f.has_inf:
            assert not np.any(np.isnan(y)), (impl.key, dtype, x, y)
    # softmax outputs are probabilities: never inf for any finite input
    assert np.all(np.isfinite(np.asarray(run(SM["stable"], x, dtype, acc), dtype=np.float64)))
