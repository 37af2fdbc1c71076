"""Implementations that compose two functions (log of a softmax, -log of a sigmoid, nll of a
log_softmax) under the default precision model: the inner function's output is a tensor in the
format, rounded there (functions.base.Ops.tensor); and the default grid's wide spread (8), on
which those classic mistakes fail visibly.

Every expected figure is computed here independently: the kernels written out in numpy float32
with the format's roundings where the model puts them, the exact values in mpmath."""

from __future__ import annotations

import json
from importlib import util

import mpmath
import numpy as np
import pytest

from numstab.cli import main
from numstab.commands.compare import run_compare
from numstab.formats import get_format
from numstab.grids import cells, default_grid, make_grid

F16 = get_format("float16")


def ulp16(r: mpmath.mpf) -> mpmath.mpf:
    """ulp_F(r) of the README for float16 (p = 11, emin = -14)."""
    if r == 0:
        return mpmath.mpf(2) ** -24
    e = max(int(mpmath.floor(mpmath.log(abs(r), 2))), -14)
    return mpmath.mpf(2) ** (e - 10)


def inspect_json(capsys, *argv):
    k = argv.index("--")
    code = main(["inspect", *argv[:k], "--format", "json", *argv[k:]])
    out, err = capsys.readouterr()
    assert code == 0, err
    return {(r["impl"]): r for r in json.loads(out)["results"]}


def test_log_of_a_softmax_reads_the_probability_in_the_format(capsys):
    """log_softmax of [0, -20] in float16: softmax's second output e^-20 / (1 + e^-20) =
    2.06e-9 is below 2^-25 (half float16's smallest subnormal), so the float16 tensor holds 0 and
    its log is -inf -- an underflow, though every float32 step is finite; the single-kernel
    log_softmax keeps -20."""
    p = mpmath.exp(-20) / (1 + mpmath.exp(-20))
    assert p < mpmath.mpf(2) ** -25 and np.float16(np.float32(float(p))) == 0
    rs = inspect_json(capsys, "log_softmax", "--dtype", "float16", "--", "0", "-20")
    for impl in ("naive", "log_of_stable"):
        r = rs[impl]
        assert r["outputs"][1] == "-inf" and r["element_status"][1] == "underflow", impl
        assert r["element_cause"][1] == "underflow", impl
        assert "the softmax output 2.061e-09 flushes to 0 when rounded to float16" in r["verdict"]
    assert rs["stable"]["outputs"][1] == -20.0 and rs["stable"]["element_status"][1] == "ok"
    # the textbook model (every step in float16) gets there through exp(-20) = 0 in float16
    rs = inspect_json(capsys, "log_softmax", "--dtype", "float16", "--compute", "format", "--impl",
                      "log_of_stable", "--", "0", "-20")
    assert rs["log_of_stable"]["outputs"][1] == "-inf"


def test_keras_clipped_bce_in_float16_is_the_bug_report_figure(capsys):
    """binary cross-entropy of x = 20, z = 0 from clipped probabilities (Keras, from_logits=False)
    in float16: sigmoid(20) = 1 - 2.1e-9 is 1 in float32 and float16, clipped to 1 - 1e-7 (in
    float32: 1 - 2^-23), -log(2^-23 ... ) = 15.94 rounds to 15.9453125 in float16: the 15.95 of
    the Keras report, 259.5 ULP from the exact 20.000000002."""
    p = np.float32(np.float16(np.float32(1) / (np.float32(1) + np.exp(np.float32(-20)))))
    p = np.clip(p, np.float32(1e-7), np.float32(1 - 1e-7))
    loss = np.float16(-np.log(np.float32(1) - p))
    assert float(loss) == 15.9453125
    exact = mpmath.log(1 + mpmath.exp(20))
    figure = float(abs(mpmath.mpf(float(loss)) - exact) / ulp16(exact))
    assert 259.4 < figure < 259.6
    r = inspect_json(capsys, "binary_cross_entropy", "--dtype", "float16", "--target", "0", "--",
                     "20")["clipped"]
    assert r["outputs"][0] == 15.9453125 and r["element_status"][0] == "inaccurate"
    assert r["ulp_error"][0] == 260.0  # 259.5 to 3 significant digits
    # the same loss from the logits is exact to the format
    r = inspect_json(capsys, "binary_cross_entropy", "--dtype", "float16", "--target", "0", "--",
                     "20")["logits"]
    assert r["outputs"][0] == 20.0 and r["element_status"][0] == "ok"


def test_nll_of_log_softmax_rounds_log_softmax_to_the_format():
    """cross_entropy 'log_softmax' = -log_softmax(x)[t] with log_softmax a float16 tensor: on
    [0, -3.1] with t = 1, -(x_1 - lse) = 3.1 + log1p(e^-3.1) in float32, rounded to float16 (the
    negation is exact): equal to the float16 rounding of the float32 value."""
    from numstab.functions import REGISTRY

    x = F16.cast(F16.round(np.array([[0.0, -3.1]])))
    ce = REGISTRY["cross_entropy"]["log_softmax"]
    got = float(np.asarray(ce(x, "sequential", np.array([1])))[0])
    xf = x.astype(np.float32)
    d = xf - xf.max(axis=-1, keepdims=True)
    ls = d - np.log(np.sum(np.exp(d), axis=-1, keepdims=True, dtype=np.float32))
    assert got == float(np.float16(-ls[0, 1]))


def test_the_default_grid_has_a_wide_spread():
    g = default_grid(F16)
    assert g.spreads == (1.0, 8.0) and g.sizes == (2, 10, 1000)


def _log_of_stable_f32(x: np.ndarray) -> np.ndarray:
    """log(softmax(x)) for float16 x as torch computes it on the CPU: the softmax in float32,
    sequential sum, its output a float16 tensor, then log in float32 rounded to float16."""
    xf = x.astype(np.float32)
    e = np.exp(xf - xf.max(axis=-1, keepdims=True))
    s = np.zeros(x.shape[:-1] + (1,), dtype=np.float32)
    for j in range(x.shape[-1]):
        s = (s + e[..., j: j + 1]).astype(np.float32)
    p = (e / s).astype(np.float16).astype(np.float32)
    with np.errstate(divide="ignore"):
        return np.log(p).astype(np.float16)


def test_log_of_stable_fails_visibly_on_the_default_grid():
    """On the default float16 grid (spreads 1 and 8), log(stable softmax) has underflow cells --
    a probability below 2^-25 held in float16, its log -inf -- while the single-kernel log_softmax
    has none. One spread-8 cell (n = 10, offset 0) recomputed independently: its -inf outputs and
    the exact log-probabilities they stand for."""
    run = run_compare(dtypes=["float16"], functions=["log_softmax"], impls=["log_of_stable", "stable"],
                      jobs=1)
    by = {(r.impl, r.spread, r.n, r.offset): r for r in run.results}
    los = [r for r in run.results if r.impl == "log_of_stable"]
    stable = [r for r in run.results if r.impl == "stable"]
    assert any(r.status == "underflow" and r.cause == "underflow" for r in los)
    assert all(r.status == "ok" for r in stable)
    assert not any(r.status == "underflow" for r in los if r.spread == 1.0 and r.n <= 10)
    grid = make_grid(F16, "0", "8", "10", 3, 0)
    (cell,) = cells(F16, grid)
    x = F16.cast(cell.x)
    y = _log_of_stable_f32(x)
    flushed = np.isneginf(y)
    assert flushed.any()
    with mpmath.workdps(40):
        for row, fl in zip(cell.x, flushed):
            lse = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in row))
            for v, f in zip(row, fl):
                # every -inf stands for a log-probability below ln(2^-25) = -17.33
                assert not f or mpmath.mpf(float(v)) - lse < mpmath.log(mpmath.mpf(2) ** -25)
    r = by[("log_of_stable", 8.0, 10, 0.0)]
    assert r.status == "underflow" and r.max_ulp == float("inf")


def test_a_black_box_zero_beside_live_outputs_is_no_overflow():
    """A shifted softmax computed in float16 by a user callable, on a vector whose exact sum of
    exps is beyond float16 (max 10.94, 30 values: logsumexp > ln 65504): its 0 output (x - max =
    -16.52, exp is 6.7e-8, divided by the sum about 2.4) is a flush of a subnormal, not a
    0 from x / inf -- the other outputs are finite and nonzero, so the sum did not overflow."""
    v = [-3.626953125, 1.9755859375, 3.80078125, 10.90625, -5.6171875, -0.34814453125, -7.58984375,
         -1.03515625, 1.7802734375, 8.390625, 2.0234375, -3.35546875, -11.8203125, -8.03125, -2.904296875,
         3.265625, -3.755859375, -2.01953125, 10.9375, 1.6572265625, 6.9609375, 3.2421875, -1.2216796875,
         -7.12890625, -7.75, -0.87158203125, 2.009765625, 1.861328125, 5.4296875, -0.09649658203125]
    lse = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(t)) for t in v))
    assert lse > mpmath.log(65504)
    x = np.array(v, dtype=np.float16)
    e = np.exp(x - x.max())
    y = e / e.sum()
    assert y[4] == 0 and np.all(y[np.arange(30) != 4][:3] > 0)
    from numstab.engine import evaluate
    from numstab.functions.base import Impl
    from numstab.results import OVERFLOW, UNDERFLOW
    from numstab.steps import CODE

    def user(xx, acc):  # the user's float16 softmax, shifted by the max (a black box)
        e = np.exp(xx - xx.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    impl = Impl("softmax", "user", user, "a user's shifted softmax")
    (o,), _, _ = evaluate(F16, np.array([v]), None, [impl])
    assert o.y[0, 4] == 0 and o.status[0, 4] == UNDERFLOW and o.cause[0, 4] == CODE["underflow"]
    assert not (o.status == OVERFLOW).any()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_torch_log_of_softmax_is_the_composition_model(dtype):
    """torch.log(torch.softmax(x, -1)) on half CPU tensors equals numstab's log_of_stable under
    the default model, bit for bit on n = 2 and 10 (each function one float32 kernel, its output
    a tensor in the format)."""
    if util.find_spec("torch") is None:
        pytest.skip("torch not installed")
    import multiprocessing as mp

    fmt = get_format(dtype)
    rng = np.random.default_rng(3)
    xs = [fmt.cast(fmt.round(rng.standard_normal((50, n)) * 8)) for n in (2, 10)]
    with mp.get_context("spawn").Pool(1) as pool:
        want = pool.map(_torch_log_softmax_of_softmax, [(x.astype(np.float32), dtype) for x in xs])
    from numstab.functions import REGISTRY

    impl = REGISTRY["log_softmax"]["log_of_stable"]
    for x, w in zip(xs, want):
        with np.errstate(all="ignore"):
            got = np.asarray(impl(x, "float32"), dtype=np.float64)
        assert np.array_equal(got, w), (dtype, x.shape)
        # flushes in float16 only (bfloat16 has float32's range)
        assert np.isneginf(w).any() == (dtype == "float16")


def _torch_log_softmax_of_softmax(args):
    import torch

    x, dtype = args
    t = torch.from_numpy(x).to(getattr(torch, dtype))
    return torch.log(torch.softmax(t, dim=-1)).to(torch.float64).numpy()
