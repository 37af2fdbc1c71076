"""The precision models (--compute): which one torch's and jax's CPU kernels follow, measured
output by output through numstab's library adapters (each call in a forked child: torch and jax
never compute in the test process, whose forked children must not inherit their thread pools),
and what each model changes in statuses, causes and records.

The library-specific variants (torch's half-precision row sum, XLA's reciprocal) are written out
here in plain numpy, independently of numstab's kernels."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from numstab.cli import main
from numstab.formats import get_format
from numstab.functions import REGISTRY

SIZES = (2, 10, 1000)
ROWS = 60


def need(module: str):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not installed (pip install 'numstab[{module}]')")


def logits(fmt, n: int, rows: int = ROWS, seed: int = 0) -> np.ndarray:
    """N(0, s) logits, s in 1, 4, 16 per row, in the format's dtype."""
    rng = np.random.default_rng([seed, n])
    s = np.array([1.0, 4.0, 16.0])[rng.integers(0, 3, rows)][:, None]
    return fmt.cast(fmt.round(rng.standard_normal((rows, n)) * s))


def library(name: str, function: str):
    from numstab.libraries import library_impls

    (impl,) = library_impls(name, function)
    return lambda x, *arg: np.asarray(impl.fn(x, "sequential", *arg), dtype=np.float64)


def ours(function: str, impl: str, x, acc: str, compute: str, arg=None) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.asarray(REGISTRY[function][impl](x, acc, arg, compute=compute), dtype=np.float64)


def f32(a):
    return np.asarray(a).astype(np.float32)


def in_format(fmt, a):
    """a (float32) rounded to the format and back to float32 (exact)."""
    return np.asarray(a, dtype=np.float32).astype(fmt.dtype).astype(np.float32)


# ------------------------------------------------------------------ torch
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_torch_softmax_is_the_float32_model(dtype):
    """torch.nn.functional.softmax of half logits on the CPU = --compute float32 (the default):
    every step in float32, the output rounded once; bit for bit for n = 2 and 10, and for all but
    a few in 10^4 outputs of n = 1000 (torch's vectorized float32 sum adds in another order). The
    textbook model (every step in the format) differs on a large share of outputs."""
    need("torch")
    fmt = get_format(dtype)
    torch_softmax = library("torch", "softmax")
    for n in SIZES:
        x = logits(fmt, n)
        want = torch_softmax(x)
        same = np.mean(want == ours("softmax", "stable", x, "float32", "float32"))
        assert same == 1.0 if n <= 10 else same >= 0.999, (n, same)
        assert np.mean(want == ours("softmax", "stable", x, "sequential", "format")) < 0.9


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_torch_log_softmax_and_cross_entropy_hold_the_row_sum_in_the_format(dtype):
    """torch's CPU log_softmax for half types computes in float32 but stores the row's sum of
    exp(x - max) and its log in the format: with those two values rounded, every output is equal
    (log_softmax and nll(log_softmax), i.e. cross_entropy); the plain float32 model misses some."""
    need("torch")
    fmt = get_format(dtype)
    ls, ce = library("torch", "log_softmax"), library("torch", "cross_entropy")
    for n in SIZES:
        x = logits(fmt, n)
        t = np.random.default_rng([1, n]).integers(0, n, x.shape[0])
        d = f32(x) - f32(x).max(axis=-1, keepdims=True)
        s = in_format(fmt, np.sum(np.exp(d), axis=-1, keepdims=True, dtype=np.float32))
        y = d - in_format(fmt, np.log(s))
        assert np.array_equal(ls(x), in_format(fmt, y).astype(np.float64)), n
        loss = -np.take_along_axis(y, t[:, None], axis=-1)[:, 0]
        assert np.array_equal(ce(x, t), in_format(fmt, loss).astype(np.float64)), n
    plain = np.mean(ls(x) == ours("log_softmax", "stable", x, "sequential", "float32"))
    assert 0.5 < plain < 1


@pytest.mark.parametrize("lib", ["torch", "jax"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_logsumexp_is_the_format_model_with_float32_sums(lib, dtype):
    """torch.logsumexp and jax.nn.logsumexp of half logits: each step's tensor in the format, the
    sum accumulated in float32 (--compute format --accumulate float32), bit for bit."""
    need(lib)
    fmt = get_format(dtype)
    lse = library(lib, "logsumexp")
    for n in SIZES:
        x = logits(fmt, n)
        assert np.array_equal(lse(x), ours("logsumexp", "stable", x, "float32", "format")), n


# -------------------------------------------------------------------- jax
def test_jax_softmax_is_the_format_model_with_float32_sums():
    """jax.nn.softmax: exp(x - max) in the format, the sum in float32 rounded to the format. In
    bfloat16 the quotient is rounded once: --compute format --accumulate float32, every output
    for n = 2 and 10 (a few in 10^3 of n = 1000: XLA's reduction order). In float16 XLA multiplies
    by the reciprocal of the rounded sum, itself rounded to float16: every output, with that."""
    need("jax")
    sm = library("jax", "softmax")
    bf = get_format("bfloat16")
    for n in SIZES:
        x = logits(bf, n)
        same = np.mean(sm(x) == ours("softmax", "stable", x, "float32", "format"))
        assert same == 1.0 if n <= 10 else same >= 0.99, (n, same)
    fmt = get_format("float16")
    for n in SIZES:
        x = logits(fmt, n)
        e = in_format(fmt, np.exp(in_format(fmt, f32(x) - f32(x).max(axis=-1, keepdims=True))))
        s = in_format(fmt, np.sum(e, axis=-1, keepdims=True, dtype=np.float32))
        y = in_format(fmt, e * in_format(fmt, np.float32(1) / s))
        assert np.array_equal(sm(x), y.astype(np.float64)), n
        assert np.mean(sm(x) == ours("softmax", "stable", x, "float32", "format")) < 1


def test_jax_float16_log_softmax_and_cross_entropy_are_the_format_model():
    """jax.nn.log_softmax and optax's integer-label cross-entropy in float16: every step in
    float16, the sum in float32 (--compute format --accumulate float32), bit for bit."""
    need("jax")
    fmt = get_format("float16")
    ls, ce = library("jax", "log_softmax"), library("jax", "cross_entropy")
    for n in SIZES:
        x = logits(fmt, n)
        t = np.random.default_rng([1, n]).integers(0, n, x.shape[0])
        assert np.array_equal(ls(x), ours("log_softmax", "stable", x, "float32", "format")), n
        assert np.array_equal(ce(x, t), ours("cross_entropy", "log_softmax", x, "float32", "format", t)), n


# ---------------------------------------------------- what the model changes
def test_float32_model_moves_exp_overflow_to_float32():
    """float16 naive logsumexp of [12, 12]: exp(12) = 162754.8 overflows float16 (max 65504) but
    not float32: under the default model the output is ln(2 e^12) = 12.693... rounded to float16
    (12.6953125: float16's spacing at 12 is 2^-7); the textbook model's is inf with cause
    exp_overflow. [100, 0] overflows float32 too (exp(100) = 2.7e43 > 3.4e38): exp_overflow
    under both."""
    from numstab.engine import evaluate

    fmt = get_format("float16")
    naive = REGISTRY["logsumexp"]["naive"]
    x = fmt.round(np.array([[12.0, 12.0], [100.0, 0.0]]))
    (f32_,), _, _ = evaluate(fmt, x, None, [naive], compute="float32")
    (txt,), _, _ = evaluate(fmt, x, None, [naive], compute="format")
    assert f32_.y[0] == 12 + round(np.log(2) * 128) / 128 and f32_.status[0] == 0
    assert np.isinf(txt.y[0]) and txt.cause[0] == 1  # exp_overflow
    assert np.isinf(f32_.y[1]) and np.isinf(txt.y[1]) and f32_.cause[1] == txt.cause[1] == 1


def test_inspect_names_float32_in_the_verdict(capsys):
    """The verdict of an exp overflow under --compute float32 names float32 and its limit
    ln(max_float32) = 88.72283935546875 rounded ... (88.7228)."""
    code = main(["inspect", "softmax", "--dtype", "float16", "--impl", "naive", "--format", "json",
                 "--", "100", "0"])
    d = json.loads(capsys.readouterr().out)
    assert code == 0 and d["schema"] == "numstab.inspect/5"
    (r,) = d["results"]
    assert r["compute"] == "float32" and r["element_cause"][0] == "exp_overflow"
    assert "overflows float32 (exp(x) is inf for x >= 88.7228)" in r["verdict"]
    code = main(["inspect", "softmax", "--dtype", "float16", "--impl", "naive", "--compute", "format",
                 "--format", "json", "--", "100", "0"])
    (r,) = json.loads(capsys.readouterr().out)["results"]
    assert r["compute"] == "format" and "overflows float16 (exp(x) is inf for x >= 11.0901)" in r["verdict"]


def test_temperature_divides_in_the_format_under_both_models(capsys):
    """x / T is a sampler's own tensor, in the model's dtype: 11.0625 / 1e-5 overflows float16
    (1.1e6 > 65504) whatever the kernel's precision model, and the verdict says so."""
    for compute in ("float32", "format"):
        code = main(["inspect", "softmax", "--dtype", "float16", "--temperature", "1e-5", "--impl",
                     "naive", "--compute", compute, "--format", "json", "--", "11.0625", "0"])
        (r,) = json.loads(capsys.readouterr().out)["results"]
        assert code == 0 and r["outputs"][0] == "nan", compute
        assert "x / T overflows float16 (max 65504) before any exp" in r["verdict"], compute


def test_output_rounding_is_its_own_step():
    """A result finite in float32 that overflows (70000 > 65504) or flushes (1e-9 < 2^-25) only
    when rounded to float16 has the root output_rounding, recorded as the step 'output'; a
    result already infinite in float32 keeps its own root."""
    from numstab.causes import finalize
    from numstab.results import OVERFLOW, UNDERFLOW
    from numstab.steps import CODE, EXP_OVF, Tracer

    fmt = get_format("float16")
    tr = Tracer(fmt, 1)
    a = tr.wrap(np.array([[7e4, 1e-9, 1.0]], dtype=np.float32))
    y = tr.round_output(a, np.float16)
    assert list(y.v[0]) == [np.inf, 0.0, 1.0]
    assert list(y.root[0]) == [CODE["output_rounding"]] * 2 + [0]
    assert {(lb, k) for lb, k, _m, _d in tr.events} == {("output", "overflow"), ("output", "flush")}
    # statuses: the exact values round to 65504 and 2^-24 in float16 (not inf, not 0)
    rounded = np.array([[65504.0, 2.0 ** -24, 1.0]])
    st, cause, _ = finalize(fmt, "softmax", y.v.astype(np.float64), rounded, np.ones((1, 3)),
                            np.zeros((1, 3), dtype=np.int8), y.root, 4.0)
    assert list(st[0]) == [OVERFLOW, UNDERFLOW, 0] and list(cause[0][:2]) == [CODE["output_rounding"]] * 2
    inf = tr.wrap(np.array([[np.inf]], dtype=np.float32))
    inf.root[...] = EXP_OVF
    assert tr.round_output(inf, np.float16).root[0, 0] == EXP_OVF


def test_compute_is_recorded_and_validated(capsys, tmp_path):
    assert main(["inspect", "softmax", "--compute", "float64", "--", "1", "2"]) == 2
    assert "precision model" in capsys.readouterr().err
    assert main(["compare", "--function", "softmax", "--dtype", "float16", "--sizes", "2", "--offsets", "0",
                 "--format", "json", "--compute", "format"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["schema"] == "numstab.compare/5" and d["meta"]["compute"] == "format"
    cfg = tmp_path / "numstab.toml"
    cfg.write_text('[[audit]]\nfunction = "softmax"\nimpl = ["stable"]\ndtypes = ["float16"]\n'
                   'compute = "float64"\n')
    assert main(["audit", "--config", str(cfg)]) == 2
    assert "precision model" in capsys.readouterr().err
    cfg.write_text('[[audit]]\nfunction = "softmax"\nimpl = ["stable"]\ndtypes = ["float16"]\n'
                   'compute = "format"\nsizes = "2"\n')
    assert main(["audit", "--config", str(cfg), "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["schema"] == "numstab.audit/7" and d["meta"]["audits"][0]["compute"] == "format"


def test_report_reads_a_compare_4_file_as_the_textbook_model(tmp_path, capsys):
    """Files written before --compute (numstab.compare/4 and older) were computed in the format."""
    assert main(["compare", "--function", "softmax", "--dtype", "float16", "--sizes", "2", "--offsets", "0",
                 "--format", "json", "--compute", "format"]) == 0
    d = json.loads(capsys.readouterr().out)
    d["schema"] = "numstab.compare/4"
    del d["meta"]["compute"]
    f = tmp_path / "old.json"
    f.write_text(json.dumps(d))
    assert main(["report", "--from", str(f), "--out", str(tmp_path / "r"), "--formats", "md,json"]) == 0
    capsys.readouterr()
    new = json.loads((tmp_path / "r" / "results.json").read_text())
    assert new["schema"] == "numstab.compare/5" and new["meta"]["compute"] == "format"
    assert "compute format" in (tmp_path / "r" / "report.md").read_text()
