"""cross_entropy's target at the argmax, the argmin and a random index (issue 12, item 7).

The figures are recomputed here: the exact loss in mpmath, the ULP of float16 by hand.
"""

import math

import mpmath
import numpy as np

from numstab.commands.compare import run_compare
from numstab.formats import FORMATS
from numstab.functions import REGISTRY
from numstab.grids import GridSpec, cells, targets_at
from numstab.tables import build_tables

F16 = FORMATS["float16"]


def ulp16(r) -> float:
    e = max(math.floor(math.log2(abs(r))), -14) if r != 0 else -14
    return 2.0 ** (e - 10)


def test_targets_at_the_largest_and_smallest_entry():
    x = np.array([[0.5, 3.0, -1.0, 3.0], [-2.0, -2.0, 7.0, 1.0]])
    assert targets_at("argmax", x, np.array([0, 0])).tolist() == [1, 2]  # the first of ties
    assert targets_at("argmin", x, np.array([0, 0])).tolist() == [2, 0]
    assert targets_at("random", x, np.array([3, 1])).tolist() == [3, 1]


def test_confident_target_exposes_the_cancellation_of_the_stable_loss():
    """Every step in float16 (--compute format): lse(x) - x[target] cancels in float16. In float32
    steps the same cancellation costs float32 digits only, and the loss rounded to float16 is fine."""
    run = run_compare(dtypes=["float16"], functions=["cross_entropy"], impls=["stable"], offsets="0",
                      spreads="8", sizes="10", trials=1, jobs=1, target_at="argmax,argmin", compute="format")
    assert [r.target_at for r in run.results] == ["argmax", "argmin"]
    assert [t.title for t in build_tables(run)] == [
        "cross_entropy in float16 (spread 8, target at argmax): max ULP error",
        "cross_entropy in float16 (spread 8, target at argmin): max ULP error"]
    (cell,) = cells(F16, GridSpec((0.0,), (8.0,), (10,), 1, 0))
    impl = REGISTRY["cross_entropy"]["stable"]
    for r in run.results:
        t = targets_at(r.target_at, cell.x, cell.target)
        y = float(impl(F16.cast(cell.x), "sequential", t, compute="format")[0])
        with mpmath.workdps(60):
            xs = [mpmath.mpf(float(v)) for v in cell.x[0]]
            exact = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in xs)) - xs[int(t[0])]
            err = abs(mpmath.mpf(y) - exact) / ulp16(float(exact))
        want = float(f"{float(err):.3g}") if err >= 1 else round(float(err), 3)
        assert r.max_ulp == want, (r.target_at, r.max_ulp, want)
    at_max, at_min = run.results
    # the loss at the argmax is tiny and lse - x[target] cancels: far above 4 ULP; at the argmin
    # it is large and nothing cancels
    assert at_max.max_ulp > 4 and at_max.status == "inaccurate" and at_max.cause == "cancellation"
    assert at_min.max_ulp < 4 and at_min.status == "ok"
    f32 = run_compare(dtypes=["float16"], functions=["cross_entropy"], impls=["stable"], offsets="0",
                      spreads="8", sizes="10", trials=1, jobs=1, target_at="argmax")
    assert f32.results[0].max_ulp < 1 and f32.results[0].status == "ok"


def test_functions_without_a_target_are_reported_once():
    run = run_compare(dtypes=["float16"], functions=["softmax", "cross_entropy"], impls=["stable"],
                      offsets="0", spreads="1", sizes="2", trials=1, jobs=1)
    got = [(r.function, r.target_at) for r in run.results]
    assert got == [("softmax", None), ("cross_entropy", "argmax"), ("cross_entropy", "argmin"),
                   ("cross_entropy", "random")]
    assert run.meta["target_at"] == ["argmax", "argmin", "random"]


def test_target_at_moves_the_smoothed_cross_entropy_target():
    """Issue 13: --target-at places smoothed_cross_entropy's target too. The loss at the argmax
    and at the argmin of the same vectors, recomputed here: (1 - eps)(lse(x) - x_t) +
    (eps / n) sum_j (lse(x) - x_j), eps = 0.1 rounded to float16 (1638 * 2^-14), in mpmath; the
    kernel's output in float16 steps."""
    run = run_compare(dtypes=["float16"], functions=["smoothed_cross_entropy"], impls=["stable"],
                      offsets="0", spreads="8", sizes="10", trials=1, jobs=1, target_at="argmax,argmin",
                      compute="format")
    assert [r.target_at for r in run.results] == ["argmax", "argmin"]
    (cell,) = cells(F16, GridSpec((0.0,), (8.0,), (10,), 1, 0))
    eps = float(np.float16(0.1))
    assert eps == 1638 * 2.0 ** -14
    impl = REGISTRY["smoothed_cross_entropy"]["stable"]
    figures = []
    for r in run.results:
        t = targets_at(r.target_at, cell.x, cell.target)
        rec = np.rec.fromarrays([t, np.full(t.shape, eps)], names="target,epsilon")
        y = float(impl(F16.cast(cell.x), "sequential", rec, compute="format")[0])
        with mpmath.workdps(60):
            xs = [mpmath.mpf(float(v)) for v in cell.x[0]]
            lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in xs))
            e = mpmath.mpf(eps)
            exact = (1 - e) * (lse - xs[int(t[0])]) + e / len(xs) * mpmath.fsum(lse - v for v in xs)
            err = abs(mpmath.mpf(y) - exact) / ulp16(float(exact))
        want = float(f"{float(err):.3g}") if err >= 1 else round(float(err), 3)
        assert r.max_ulp == want, (r.target_at, r.max_ulp, want)
        figures.append(float(exact))
    assert figures[0] < figures[1]  # the target moved: the confident target has the smaller loss
