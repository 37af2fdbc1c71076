"""The additive attention-mask preset of the grid (issue 12, item 4): score + finfo.min (+ finfo.min)
in the format, and where it overflows to -inf. Expected roundings are computed here by numpy's
correctly rounded float64 -> float16 conversion of the exact sums."""

import ml_dtypes
import numpy as np
import pytest

from numstab.commands.compare import run_compare
from numstab.errors import UsageError
from numstab.formats import FORMATS
from numstab.grids import apply_mask, make_grid

F16, BF16 = FORMATS["float16"], FORMATS["bfloat16"]


def test_score_plus_finfo_min_overflows_below_minus_16_in_float16():
    scores = np.array([[0.0, 0.0, -20.0, -16.0, -15.0, 0.0, 15.0, 17.0]])
    got = apply_mask(F16, scores, "min")
    with np.errstate(over="ignore"):
        want = [float(np.float16(v - 65504.0)) for v in scores[0, 4:]]  # exact sums, rounded once
    assert got[0, :4].tolist() == [0.0, 0.0, -20.0, -16.0]
    assert got[0, 4:].tolist() == want == [-65504.0, -65504.0, -65504.0, -65472.0]
    got = apply_mask(F16, np.array([[0.0, -20.0, -16.0, -15.9]]), "min")
    # -65520 is the midpoint between -65504 and -65536 (= -inf): ties to even overflow
    assert got[0, 2:].tolist() == [-np.inf, -65504.0]
    with np.errstate(over="ignore"):
        assert float(np.float16(-16.0 - 65504.0)) == -np.inf
    assert np.isneginf(apply_mask(F16, np.array([[1.0, 2.0, 3.0, 4.0]]), "min2")[0, 2:]).all()


def test_bfloat16_needs_two_masks_to_overflow():
    s = np.array([[0.0, 0.0, 5.0, -5.0]])
    one = apply_mask(BF16, s, "min")
    lo = float(np.array(-BF16.max).astype(ml_dtypes.bfloat16))
    assert one[0, 2:].tolist() == [lo, lo]  # 5 is far below half an ulp of max (2^119)
    assert np.isneginf(apply_mask(BF16, s, "min2")[0, 2:]).all()


def test_compare_with_a_mask_grid():
    run = run_compare(dtypes=["float16"], functions=["softmax"], impls=["naive", "stable"], offsets="-20,0",
                      sizes="4", trials=2, jobs=1, mask="min", compute="format")
    assert run.meta["grids"]["float16"]["masks"] == ["min"]
    assert {r.mask for r in run.results} == {"min"}
    by = {(r.impl, r.offset): r for r in run.results}
    assert by[("stable", -20.0)].x_min == -np.inf  # score + min overflowed to -inf
    assert by[("stable", 0.0)].x_min == -65504.0  # scores near 0: the mask stays finite
    assert by[("stable", -20.0)].status == by[("stable", 0.0)].status == "ok"
    assert by[("naive", -20.0)].status == "nan"  # exp of every unmasked score flushes in float16: 0/0
    # in float32 steps exp(-20 +- 1) ~ 2e-9 is a normal number: the masked entries' exp is 0, the
    # unmasked ones' share is exact enough
    f32 = run_compare(dtypes=["float16"], functions=["softmax"], impls=["naive"], offsets="-20", sizes="4",
                      trials=2, jobs=1, mask="min")
    assert f32.meta["compute"] == "float32" and f32.results[0].status == "ok"
    with pytest.raises(UsageError, match="has no infinity"):
        make_grid(FORMATS["float8_e4m3fn"], mask="min")
