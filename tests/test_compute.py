"""The precision models (--compute): which one the frameworks' CPU kernels follow, measured
output by output on random logits, and what each model changes."""

from __future__ import annotations

import numpy as np
import pytest

from numstab.formats import get_format
from numstab.functions import REGISTRY

SOFTMAX, LOG_SOFTMAX = REGISTRY["softmax"]["stable"], REGISTRY["log_softmax"]["stable"]


def _logits(fmt, n: int, rows: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng([seed, n])
    return fmt.round(rng.standard_normal((rows, n)) * 4)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("n", [2, 10, 1000])
def test_torch_softmax_is_the_float32_model(dtype, n):
    """torch (CPU) computes a half-precision softmax in float32 and rounds once: the outputs of
    torch.softmax equal the stable kernel under --compute float32 bit for bit (n = 1000: all but
    a few in 10^4 -- torch's vectorized float32 sum adds in another order than numpy's)."""
    torch = pytest.importorskip("torch")
    fmt = get_format(dtype)
    x = _logits(fmt, n)
    xt = torch.tensor(x, dtype=torch.float32).to(getattr(torch, dtype))
    want = torch.softmax(xt, dim=-1).to(torch.float64).numpy()
    with np.errstate(all="ignore"):
        f32 = SOFTMAX(fmt.cast(x), "float32", compute="float32").astype(np.float64)
        fmt_ = SOFTMAX(fmt.cast(x), "float32", compute="format").astype(np.float64)
    if n <= 10:
        assert np.array_equal(want, f32)
    else:
        assert np.mean(want == f32) > 0.9999
    assert np.mean(want == fmt_) < 0.9  # the textbook model rounds every step: it differs


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_torch_log_softmax_keeps_its_row_sum_in_the_format(dtype):
    """torch's CPU log_softmax for half types: float32 arithmetic, but the row's sum of exp and its
    log are stored in the format -- the float32 model matches most outputs, not all."""
    torch = pytest.importorskip("torch")
    fmt = get_format(dtype)
    x = _logits(fmt, 10)
    xt = torch.tensor(x, dtype=torch.float32).to(getattr(torch, dtype))
    want = torch.log_softmax(xt, dim=-1).to(torch.float64).numpy()
    with np.errstate(all="ignore"):
        f32 = LOG_SOFTMAX(fmt.cast(x), "sequential", compute="float32").astype(np.float64)
        # the same with the row's sum and its log rounded to the format (torch's half buffer)
        x32 = x.astype(np.float32)
        m = x32.max(axis=-1, keepdims=True)
        s = np.sum(np.exp(x32 - m), axis=-1, keepdims=True, dtype=np.float32)
        ls = np.log(fmt.cast(s).astype(np.float32)).astype(fmt.dtype).astype(np.float32)
        buffered = ((x32 - m) - ls).astype(fmt.dtype).astype(np.float64)
    assert np.array_equal(want, buffered)
    assert 0.7 < np.mean(want == f32) < 1


def test_jax_bfloat16_softmax_is_the_format_model_with_float32_sums():
    """XLA on the CPU rounds every elementwise step of a bfloat16 softmax to bfloat16 and sums in
    float32: --compute format --accumulate float32."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    fmt = get_format("bfloat16")
    for n in (2, 10, 1000):
        x = _logits(fmt, n)
        y = jax.nn.softmax(jnp.asarray(fmt.cast(x)), axis=-1)
        want = np.asarray(y.astype(jnp.float32), dtype=np.float64)
        with np.errstate(all="ignore"):
            got = SOFTMAX(fmt.cast(x), "float32", compute="format").astype(np.float64)
        assert np.array_equal(want, got), n


def test_float32_model_changes_where_exp_overflows():
    """float16 naive logsumexp: exp(12) overflows float16, not float32 -- the float32 model's output
    is the exact value rounded; the textbook model's is inf."""
    from numstab.engine import evaluate

    fmt = get_format("float16")
    x = fmt.round(np.array([[12.0, 12.0]]))
    naive = REGISTRY["logsumexp"]["naive"]
    (f32,), _, _ = evaluate(fmt, x, None, [naive], compute="float32")
    (txt,), _, _ = evaluate(fmt, x, None, [naive], compute="format")
    assert f32.y[0] == 12.6953125 and f32.status[0] == 0  # ln(2 e^12) = 12.693..., rounded
    assert np.isinf(txt.y[0]) and "overflow" in txt.flags[0]


def test_compute_option_is_validated(capsys):
    from numstab.cli import main

    assert main(["inspect", "softmax", "--compute", "float64", "--", "1", "2"]) == 2
    assert "precision model" in capsys.readouterr().err
