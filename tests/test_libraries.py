"""Library adapters (--library): one known finding per library, with its figure computed here
independently (mpmath for the exact value, numpy for the format), and the adapters' plumbing
(missing extras, devices, isolation, library records in JSON).

Libraries that are not installed skip with the reason; .ci/run installs scipy (dev), torch
(the machine's local CPU wheel), jax, keras and onnxruntime ('numstab[libraries]').
"""

import importlib.metadata as md
import importlib.util
import json
import math
import sys
from decimal import Decimal
from fractions import Fraction

import ml_dtypes  # noqa: F401 - registers bfloat16 for np.dtype("bfloat16")
import mpmath
import numpy as np
import pytest

from numstab.cli import main

mpmath.mp.prec = 300

P = {"float16": (11, -14), "float32": (24, -126), "float64": (53, -1022)}  # precision, emin


def need(module: str, extra: str):
    """Skip unless the library is installed (found, not imported: keras must not pick its
    backend before numstab does)."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not installed (pip install 'numstab[{extra}]')")


def ulp(r, dtype: str) -> mpmath.mpf:
    """ulp_F(r) = 2^(max(floor(log2|r|), emin) - p + 1); the smallest subnormal at 0."""
    p, emin = P[dtype]
    if r == 0:
        return mpmath.mpf(2) ** (emin - p + 1)
    e = int(mpmath.floor(mpmath.log(abs(r), 2)))
    return mpmath.mpf(2) ** (max(e, emin) - p + 1)


def ulp_error(y: float, r, dtype: str) -> mpmath.mpf:
    return abs(mpmath.mpf(y) - r) / ulp(r, dtype)


def sig3(v) -> float:
    """The README's quantization: 3 decimals below 1, else 3 significant digits."""
    v = mpmath.mpf(v)
    if v < 1:
        return float(mpmath.nint(v * 1000) / 1000)
    return float(f"{float(v):.3g}")


def round_to(r, dtype: str) -> float:
    """r correctly rounded into the format (round half to even), as a float."""
    p, emin = P[dtype]
    u = ulp(r, dtype)
    q = Fraction(str(mpmath.nstr(r / u, 80, min_fixed=-1, max_fixed=1000)))
    n = round(q)  # Python's round: half to even
    return float(Fraction(n) * Fraction(Decimal(str(mpmath.nstr(u, 80)))))


def ce_exact(x, t):
    """-log softmax(x)[t] = log(sum_i exp(x_i - x_t)), at 300 bits."""
    return mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v)) - mpmath.mpf(float(x[t]))) for v in x))


def audit_file(capsys, tmp_path, function, dtype, library, rows, target=None, *extra):
    np.save(tmp_path / "x.npy", np.asarray(rows, dtype=np.float64))
    argv = ["audit", "--function", function, "--dtype", dtype, "--library", library,
            "--input", str(tmp_path / "x.npy"), "--format", "json", *extra]
    if target is not None:
        argv += ["--target", str(target)]
    code = main(argv)
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def by_impl(data) -> dict:
    return {r["impl"]: r for r in data["results"]}


# ------------------------------------------------------------------ one finding per library
def test_scipy_log_softmax_float32_absorbs_exp_minus_12(capsys, tmp_path):
    """scipy.special.log_softmax([12, 0]) in float32: 1 + exp(-12) rounds in the sum, so the
    first element is -6.198864e-06 where the exact value is -6.1441934e-06 (~120,000 ULP)."""
    need("scipy", "scipy")
    code, data, _ = audit_file(capsys, tmp_path, "log_softmax", "float32", "scipy", [[12, 0]], None,
                               "--max-ulp", "4")
    assert code == 1
    r = data["results"][0]
    assert r["impl"] == "scipy.special.log_softmax"
    ff = r["first_failure"]
    # what scipy computes, step by step in float32: 0 - log(fl(1 + fl(exp(-12))))
    s = np.float32(1) + np.exp(np.float32(-12))
    y = np.float32(0) - np.log(s)
    assert ff["element"] == 0 and ff["output"] == float(y) == pytest.approx(-6.198864e-06, rel=1e-6)
    exact = -mpmath.log1p(mpmath.exp(-12))
    assert ff["exact_rounded"] == round_to(exact, "float32")
    assert r["max_ulp"] == sig3(ulp_error(float(y), exact, "float32")) == 120000.0


def test_torch_cross_entropy_float64_returns_zero_for_a_tiny_loss(capsys, tmp_path):
    """torch.nn.functional.cross_entropy([100, 0], target 0) in float64 returns -0.0: the exact
    loss log1p(exp(-100)) = 3.720075976020836e-44 is a normal float64 (absorbed by 1 + ...)."""
    need("torch", "torch")
    code, data, _ = audit_file(capsys, tmp_path, "cross_entropy", "float64", "torch", [[100, 0]], 0)
    assert code == 1
    r = data["results"][0]
    assert r["impl"] == "torch.nn.functional.cross_entropy" and r["zeros"] == 1
    assert any(s.startswith("zero: 1 of 1") for s in r["reasons"])
    ff = r["first_failure"]
    exact = ce_exact([100, 0], 0)
    assert ff["output"] == 0.0 and (ff["status"], ff["cause"]) == ("inaccurate", "cancellation")
    assert ff["exact_rounded"] == round_to(exact, "float64") == 3.720075976020836e-44
    # every digit of the loss is lost: |0 - r| / ulp(r) = r / 2^-197
    assert ff["ulp_error"] == sig3(ulp_error(0.0, exact, "float64")) == 7.47e15


def test_jax_log_softmax_float16_returns_zero(capsys, tmp_path):
    """jax.nn.log_softmax([12, 0]) in float16: 1 + exp(-12) rounds to 1, so the first element is
    0 where the exact value -6.144e-06 rounds to the float16 subnormal -6.139e-06 (103 x 2^-24)."""
    need("jax", "jax")
    code, data, _ = audit_file(capsys, tmp_path, "log_softmax", "float16", "jax", [[12, 0]])
    assert code == 1
    r = data["results"][0]
    assert r["impl"] == "jax.nn.log_softmax" and r["zeros"] == 1
    ff = r["first_failure"]
    exact = -mpmath.log1p(mpmath.exp(-12))
    assert ff["element"] == 0 and ff["output"] == 0.0
    assert (ff["status"], ff["cause"]) == ("inaccurate", "absorption")
    assert ff["exact_rounded"] == round_to(exact, "float16") == -103 * 2.0**-24
    assert ff["ulp_error"] == sig3(ulp_error(0.0, exact, "float16")) == 103.0


def test_keras_from_logits_false_clips_float16_loss(capsys, tmp_path):
    """The seed question, measured: keras' categorical cross-entropy of [20, 0] with target 1 in
    float16. from_logits=True gives 20 (exact 20.000000002 rounds to 20); from_logits=False
    clips softmax's 2e-9 to float16's 1e-7 (= 2^-23 after rounding) and returns
    -log(2^-23) = 15.9453125: 259.5 ULP off. And from_logits=True is not accurate either near a
    zero loss: [12, 0] with target 0 gives 0 where the exact loss is 6.144e-06."""
    need("keras", "keras")
    code, data, _ = audit_file(capsys, tmp_path, "cross_entropy", "float16", "keras", [[20, 0]], 1,
                               "--max-ulp", "4")
    res = by_impl(data)
    assert code == 1 and len(res) == 4
    exact = ce_exact([20, 0], 1)
    for loss in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
        good = res[f"keras.losses.{loss}(from_logits=True)"]
        bad = res[f"keras.losses.{loss}(from_logits=False)"]
        assert good["passed"] and good["max_ulp"] == sig3(ulp_error(20.0, exact, "float16"))
        ff = bad["first_failure"]
        clipped = float(-np.log(np.float16(1e-7).astype(np.float64)))  # -log(2^-23) = 15.942...
        assert np.float16(1e-7) == 2.0**-23
        assert ff["output"] == float(np.float16(clipped)) == 15.9453125
        assert ff["exact_rounded"] == 20.0
        assert ulp_error(15.9453125, exact, "float16") == pytest.approx(259.5, abs=1e-6)
        assert bad["max_ulp"] == sig3(ulp_error(15.9453125, exact, "float16")) == 260.0
        assert bad["library"]["name"] == "keras" and bad["library"]["backend"] == "jax"
        assert bad["library"]["version"] == md.version("keras")
    assert data["meta"]["libraries"]["keras"]["version"] == md.version("keras")
    code, data, _ = audit_file(capsys, tmp_path, "cross_entropy", "float16", "keras", [[12, 0]], 0)
    r = by_impl(data)["keras.losses.categorical_crossentropy(from_logits=True)"]
    exact = ce_exact([12, 0], 0)
    assert code == 1 and r["zeros"] == 1
    assert r["first_failure"]["output"] == 0.0
    assert r["first_failure"]["exact_rounded"] == round_to(exact, "float16") == 103 * 2.0**-24


def test_onnxruntime_reduce_log_sum_exp_float16_is_finite(capsys, tmp_path):
    """ReduceLogSumExp of [11, 11] in float16 (exp(11) is 59874, a float16; their sum is not):
    the CPU provider returns 11.6953125, the correctly rounded 11 + ln 2, not inf."""
    need("onnxruntime", "onnxruntime")
    from numstab.libraries import library_impls

    (impl,) = library_impls("onnxruntime", "logsumexp")
    y = impl(np.array([[11, 11]], dtype=np.float16))
    assert y.dtype == np.float16 and float(y[0]) == 11.6953125
    exact = 11 + mpmath.log(2)
    assert round_to(exact, "float16") == 11.6953125
    code, data, _ = audit_file(capsys, tmp_path, "logsumexp", "float16", "onnxruntime", [[11, 11]])
    r = data["results"][0]
    assert code == 0 and r["impl"] == "onnxruntime:ReduceLogSumExp"
    assert r["max_ulp"] == sig3(ulp_error(11.6953125, exact, "float16")) == 0.277
    assert r["library"]["opset"] == 18 and r["library"]["version"] == md.version("onnxruntime")


def test_onnxruntime_softmax_cross_entropy_float32_returns_zero(capsys, tmp_path):
    """SoftmaxCrossEntropyLoss of [100, 0, -100] with label 0 in float32 returns -0: the exact loss
    3.72e-44 is the float32 subnormal 27 x 2^-149 = 3.7835e-44."""
    need("onnxruntime", "onnxruntime")
    code, data, _ = audit_file(capsys, tmp_path, "cross_entropy", "float32", "onnxruntime",
                               [[100, 0, -100]], 0)
    r = data["results"][0]
    exact = ce_exact([100, 0, -100], 0)
    assert code == 1 and r["zeros"] == 1
    assert r["first_failure"]["output"] == 0.0
    assert r["first_failure"]["exact_rounded"] == round_to(exact, "float32") == 27 * 2.0**-149
    assert r["first_failure"]["ulp_error"] == sig3(ulp_error(0.0, exact, "float32")) == 26.5


def test_onnxruntime_bfloat16_left_out_with_a_note(capsys, tmp_path):
    need("onnxruntime", "onnxruntime")
    code, data, _ = audit_file(capsys, tmp_path, "softmax", "float16", "onnxruntime", [[1, 2]], None,
                               "--dtype", "bfloat16")
    assert code == 0 and [r["dtype"] for r in data["results"]] == ["float16"]
    assert data["meta"]["skipped"] == [{"impl": "onnxruntime:Softmax", "dtype": "bfloat16"}]
    code = main(["audit", "--function", "softmax", "--dtype", "bfloat16", "--library", "onnxruntime"])
    err = capsys.readouterr().err
    assert code == 2 and "no kernel for bfloat16" in err and err.count("\n") == 1


# ------------------------------------------------------------------ the losses and gradients
def audit_args(capsys, tmp_path, function, dtype, libraries, rows, *extra):
    np.save(tmp_path / "x.npy", np.asarray(rows, dtype=np.float64))
    argv = ["audit", "--function", function, "--dtype", dtype, "--input", str(tmp_path / "x.npy"),
            "--format", "json", *extra]
    for lib in libraries:
        argv += ["--library", lib]
    code = main(argv)
    out, _ = capsys.readouterr()
    return code, json.loads(out)


def test_log_softmax_backward_bug_report_torch_and_jax(capsys, tmp_path):
    """The bug report: the gradient of log_softmax at [37.42994775023705, 0] (float64) with
    cotangent [1, 0] is v - softmax(x) sum(v) = [1 - s_0, -s_1] = [s_1, -s_1], s_1 = 5.551115123125776e-17;
    torch's autograd and jax.vjp return 0 for the first (1 - s_0 with s_0 rounded to 1)."""
    libs = [lib for lib in ("torch", "jax") if importlib.util.find_spec(lib)]
    if not libs:
        pytest.skip("neither torch nor jax installed (pip install 'numstab[torch]' or 'numstab[jax]')")
    code, data = audit_args(capsys, tmp_path, "log_softmax_backward", "float64", libs,
                            [[37.42994775023705, 0]], "--cotangent", "1,0")
    x0 = mpmath.mpf(37.42994775023705)
    s1 = 1 / (1 + mpmath.exp(x0))  # softmax(x)_1 = sigmoid(-x0); the gradient's first element 1 - s_0 = s_1
    assert round_to(s1, "float64") == 5.551115123125776e-17 == float.fromhex("0x1.ffffffffffff5p-55")
    assert code == 1 and len(data["results"]) == len(libs)
    for r in data["results"]:
        ff = r["first_failure"]
        assert r["zeros"] == 1 and ff["element"] == 0 and ff["output"] == 0.0
        assert ff["exact_rounded"] == round_to(s1, "float64")
        assert ff["ulp_error"] == sig3(ulp_error(0.0, s1, "float64")) == 9.01e15


def test_torch_binary_cross_entropy_with_logits_bug_report(capsys, tmp_path):
    """binary_cross_entropy from logits, x = -40, z = 0 (float64): exact log1p(exp(-40)) =
    4.248354255291589e-18; torch.nn.functional.binary_cross_entropy_with_logits returns 0."""
    need("torch", "torch")
    code, data = audit_args(capsys, tmp_path, "binary_cross_entropy", "float64", ["torch"], [[-40]],
                            "--target", "0")
    r = by_impl(data)["torch.nn.functional.binary_cross_entropy_with_logits"]
    exact = mpmath.log1p(mpmath.exp(-40))
    assert code == 1 and r["zeros"] == 1 and r["first_failure"]["output"] == 0.0
    assert r["first_failure"]["exact_rounded"] == round_to(exact, "float64") == 4.248354255291589e-18


def test_torch_label_smoothing_float16_overflows_in_its_sum_of_log_probabilities(capsys, tmp_path):
    """torch's cross_entropy(label_smoothing=0.1) in float16 of [0, -100 x 999], target 0: the exact
    loss is (1 - eps) (-log p_0) + eps mean(-log p) = 9.9876 (eps = 0.1 in float16; 9.984375
    rounded), but torch sums the 999 terms -log p_j = 100 in float16, past 65504, and returns inf
    -- an overflow of that sum, inferred (~sum_overflow), never a zero. On the CPU, and on an H100
    in the same audit on the grid (51 of 459 float16 losses). The bug reports: huggingface/
    transformers#10674 (LabelSmoother's sum of log-probabilities in fp16) and PFCCLab/
    PaddleAPITest#478 (torch's float16 cross_entropy with label_smoothing overflows). 600 entries
    keep the sum below 65504: finite."""
    need("torch", "torch")
    with mpmath.workprec(200):
        def exact(n):
            xs = [mpmath.mpf(0)] + [mpmath.mpf(-100)] * (n - 1)
            lse = mpmath.log(1 + (n - 1) * mpmath.exp(-100))
            eps = mpmath.mpf(float(np.float16(0.1)))  # epsilon rounded to the format, as numstab holds it
            return (1 - eps) * lse + eps * mpmath.fsum(lse - v for v in xs) / n
        code, data = audit_args(capsys, tmp_path, "smoothed_cross_entropy", "float16", ["torch"],
                                [[0] + [-100] * 999], "--target", "0")
        r = by_impl(data)["torch.nn.functional.cross_entropy(label_smoothing)"]
        assert code == 1 and r["counts"]["overflow"] == 1 and r["first_failure"]["output"] == "inf"
        assert r["causes"] == {"sum_overflow": 1} and r["zeros"] == 0
        assert r["first_failure"]["exact_rounded"] == round_to(exact(1000), "float16") == 9.984375
        code, data = audit_args(capsys, tmp_path, "smoothed_cross_entropy", "float16", ["torch"],
                                [[0] + [-100] * 599], "--target", "0")
        r = by_impl(data)["torch.nn.functional.cross_entropy(label_smoothing)"]
        assert code == 0 and r["counts"]["overflow"] == 0
        assert r["max_ulp"] == sig3(ulp_error(9.984375, exact(600), "float16"))


def test_jax_sigmoid_float16_zero_is_an_overflow_not_a_flush(capsys, tmp_path):
    """jax.nn.sigmoid in float16 of -12: exact 6.144e-06, rounded a float16 subnormal (103 x 2^-24); jax
    returns 0 -- 1 / (1 + exp(12)) with exp(12) = 162755 beyond 65504: a 0 from x/inf after an
    overflow (~exp_overflow), not a flush to zero. The row-wide inference called these 17,951 grid
    zeros underflows (CPU and H100 alike)."""
    need("jax", "jax")
    code, data = audit_args(capsys, tmp_path, "sigmoid", "float16", ["jax"], [[-12.0, 0.0]])
    r = by_impl(data)["jax.nn.sigmoid"]
    ff = r["first_failure"]
    assert code == 1 and r["counts"]["overflow"] == 1 and r["counts"]["underflow"] == 0
    assert ff["element"] == 0 and ff["output"] == 0.0 and ff["cause"] == "exp_overflow"
    assert ff["exact_rounded"] == round_to(1 / (1 + mpmath.exp(12)), "float16") == 103 * 2.0**-24


def test_keras_binary_crossentropy_from_probabilities_float16_nan_and_inf(capsys, tmp_path):
    """keras' binary_crossentropy(from_logits=False) in float16: sigmoid(40) and sigmoid(12) round
    to 1, the clip's 1 - 1e-7 rounds to 1 too, so log(1 - p) = -inf: label 1 gives 0 * -inf = NaN
    (exact losses 4.2e-18 and 6.1e-06), label 0 gives inf (exact 40 and 12.000006, which round to
    40 and 12). from_logits=True gets every one of them right."""
    need("keras", "keras")
    for label, status in (("1", "nan"), ("0", "overflow")):
        code, data = audit_args(capsys, tmp_path, "binary_cross_entropy", "float16", ["keras"],
                                [[40, 12]], "--target", label)
        res = by_impl(data)
        bad, good = (res[f"keras.losses.binary_crossentropy(from_logits={f})"] for f in (False, True))
        assert code == 1 and bad["counts"][status] == 2 and good["passed"]
        ff = bad["first_failure"]
        exact = mpmath.log1p(mpmath.exp(-40)) if label == "1" else 40 + mpmath.log1p(mpmath.exp(-40))
        assert ff["element"] == 0 and ff["exact_rounded"] == round_to(exact, "float16")
        assert ff["output"] == (None if label == "1" else "inf")  # NaN is null in JSON
        assert good["max_ulp"] == max(sig3(ulp_error(round_to(e, "float16"), e, "float16")) for e in (
            (mpmath.log1p(mpmath.exp(-40)), mpmath.log1p(mpmath.exp(-12))) if label == "1" else
            (40 + mpmath.log1p(mpmath.exp(-40)), 12 + mpmath.log1p(mpmath.exp(-12)))))


def test_keras_binary_crossentropy_float64_has_float32_accuracy(capsys, tmp_path):
    """keras.losses.binary_crossentropy (jax backend) takes keras.ops.mean over the last axis,
    which computes in float32: the float64 loss of x = 0, z = 0 is float32's ln 2,
    0.6931471824645996, 1.7e7 ULP from ln 2 (keras.ops.binary_crossentropy alone keeps float64)."""
    need("keras", "keras")
    code, data = audit_args(capsys, tmp_path, "binary_cross_entropy", "float64", ["keras"], [[0]],
                            "--target", "0", "--max-ulp", "4")
    r = by_impl(data)["keras.losses.binary_crossentropy(from_logits=True)"]
    y = float(np.float32(math.log(2)))
    assert code == 1 and r["first_failure"]["output"] == y == 0.6931471824645996
    assert r["max_ulp"] == sig3(ulp_error(y, mpmath.log(2), "float64")) == 1.72e7


# ------------------------------------------------------------------ plumbing
@pytest.mark.parametrize("library,module,extra", [
    ("keras", "keras", "keras"), ("onnxruntime", "onnxruntime", "onnxruntime"), ("jax", "jax", "jax"),
    ("torch", "torch", "torch"), ("scipy", "scipy.special", "scipy"),
])
def test_missing_library_names_the_extra(capsys, monkeypatch, library, module, extra):
    for name in list(sys.modules):
        if name == module or name.startswith(module + ".") or name == library:
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError (name=module)
    code = main(["audit", "--function", "softmax", "--dtype", "float32", "--library", library])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"pip install 'numstab[{extra}]'" in err and "not installed" in err


def test_device_cuda_without_a_gpu_is_one_line(capsys):
    need("torch", "torch")
    import torch

    from numstab.adapters import isolate

    if isolate(lambda: torch.cuda.is_available(), "probe")().item():
        pytest.skip("this machine has a CUDA device")
    code = main(["audit", "--function", "softmax", "--dtype", "float32", "--library", "torch",
                 "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no CUDA device here" in err


@pytest.mark.parametrize("argv,msg", [
    (["--library", "scipy", "--device", "cuda"], "runs on cpu only"),
    (["--library", "scipy", "--device", "tpu"], "unknown device 'tpu'"),
    (["--library", "onnx"], "unknown library 'onnx'"),
])
def test_device_and_library_usage_errors(capsys, argv, msg):
    code = main(["audit", "--function", "softmax", "--dtype", "float32", *argv])
    err = capsys.readouterr().err
    assert code == 2 and msg in err and err.count("\n") == 1, err


def test_an_isolated_function_keeps_its_child_between_calls():
    """One forked child serves call after call (a library's CUDA context or compiled kernels are
    set up once per process: a fork per call cost 0.4 s for torch and over 2 s for jax on an
    H100); a call that crashes, exits or hangs ends it and the next call forks a new one;
    threads calling at once each get their own; none is left running once the function is gone."""
    import gc
    import os
    import threading

    from numstab.adapters import isolate
    from numstab.errors import CallableError

    state = {"n": 0}

    def count(x):
        if x[0] < 0:
            os._exit(3)
        state["n"] += 1
        return np.array([os.getpid(), state["n"]])

    f = isolate(count, "count", timeout=30)
    a, b = f(np.ones(1)), f(np.ones(1))
    assert a[0] == b[0] != os.getpid() and (a[1], b[1]) == (1, 2)  # the same child, its state kept
    with pytest.raises(CallableError, match="exit status 3"):
        f(-np.ones(1))
    c = f(np.ones(1))
    assert c[0] != a[0] and c[1] == 1  # a new child after the crash
    out = []
    ts = [threading.Thread(target=lambda: out.append(int(f(np.ones(1))[0]))) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(out) == 3
    pids = set(out) | {int(c[0])}
    f = None  # the function gone: its children end
    gc.collect()
    for pid in pids:  # ended and reaped: no such process any more
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.parametrize("body,msg", [
    ("os._exit(3)", "ended the process (exit status 3)"),
    ("x[...] = 0", "wrote into its input array"),
    ("print('noise') or (_ for _ in ()).throw(MemoryError('big'))", "raised MemoryError: big"),
    ("__import__('time').sleep(30)", "did not return within 0.5 s (--timeout)"),
])
def test_library_calls_run_isolated(capsys, monkeypatch, body, msg):
    """Every adapter goes through one wrapper: a library that crashes, writes into its input or
    prints is a finding, numstab's stdout stays JSON."""
    from numstab.libraries import Adapter, scipy_special

    scope = {}
    exec(f"import os\ndef bad(x):\n    {body}\n    return x", scope)
    monkeypatch.setattr(scipy_special, "adapters", lambda f, d: [Adapter("bad", "bad(x)", scope["bad"])])
    code = main(["audit", "--function", "softmax", "--dtype", "float32", "--library", "scipy",
                 "--sizes", "2", "--offsets", "0", "--timeout", "0.5", "--format", "json"])
    out, err = capsys.readouterr()
    r = json.loads(out)["results"][0]
    assert code == 1 and msg in r["reasons"][0] and "Traceback" not in err


def test_config_device_key(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "numstab.toml").write_text('[[audit]]\nfunction = "softmax"\nlibrary = "scipy"\n'
                                           'device = "gpu"\n')
    code = main(["audit"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown device 'gpu'" in err


def test_a_black_box_zero_log_probability_is_absorption(capsys, tmp_path):
    """scipy's log_softmax of [-188.88, -170.81] in float32 is 0 at element 1 (exact -1.4e-8):
    log(1 + exp(-18.07)) with the sum rounded to 1, an absorption. Inference called it an
    overflow (|logsumexp| > ln(max) was read as a sum overflow) and, with every exp(x)
    below float32's range, an underflow; neither happened in a shifted implementation."""
    need("scipy", "scipy")
    code, data, _ = audit_file(capsys, tmp_path, "log_softmax", "float32", "scipy",
                               [[-188.88014221191406, -170.80958557128906]])
    r = data["results"][0]
    assert r["counts"]["overflow"] == r["counts"]["underflow"] == 0 and r["zeros"] == 1
    assert r["causes"] == {"absorption": 1} and r["first_failure"]["status"] == "inaccurate"
    exact = -mpmath.log1p(mpmath.exp(mpmath.mpf(-188.88014221191406) - mpmath.mpf(-170.80958557128906)))
    assert r["first_failure"]["exact_rounded"] == round_to(exact, "float32")


def test_library_record_in_json_and_table(capsys, tmp_path):
    need("scipy", "scipy")
    code, data, _ = audit_file(capsys, tmp_path, "softmax", "float32", "scipy", [[1, 2]])
    assert data["schema"] == "numstab.audit/7"
    r = data["results"][0]
    assert r["library"] == {"name": "scipy", "version": md.version("scipy"), "device": "cpu"}
    assert data["meta"]["libraries"] == {"scipy": r["library"]}
    main(["audit", "--function", "softmax", "--dtype", "float32", "--library", "scipy",
          "--input", str(tmp_path / "x.npy")])
    out = capsys.readouterr().out
    assert f"library: scipy {md.version('scipy')} (cpu)" in out


def test_builtin_results_have_no_library(capsys):
    main(["audit", "--function", "softmax", "--dtype", "float16", "--impl", "stable", "--sizes", "2",
          "--offsets", "0", "--format", "json"])
    data = json.loads(capsys.readouterr().out)
    assert data["results"][0]["library"] is None and data["meta"]["libraries"] == {}


def test_quantized_helper_matches_readme():
    assert sig3(mpmath.mpf("0.27714")) == 0.277 and sig3(259.5000001) == 260.0
    assert math.isclose(round_to(mpmath.mpf(1) / 3, "float16"), 0.333251953125)


def test_backward_adapters_take_the_cotangent_in_the_logits_format():
    """Cotangents arrive as float64 arrays of the format's values; jax.vjp refuses a cotangent of
    another dtype than the output's, so the adapters pass it in the logits' format: the VJP of
    softmax at [0, 0] (float16) with v = [1, 0] is s * (v - s.v) = [0.25, -0.25] exactly."""
    from numstab.adapters import isolate
    from numstab.libraries import cast, load

    x = np.zeros((1, 2), dtype=np.float16)
    v = np.array([[1.0, 0.0]])
    for lib in ("jax", "torch"):
        if importlib.util.find_spec(lib) is None:
            continue
        mod, _ = load(lib)
        (ad,) = mod.adapters("softmax_backward", "cpu")
        # in a child, as every library call: JAX's threads must not start in the test process
        g = isolate(lambda ad=ad: cast(ad.call(x, v), x.dtype), lib, timeout=120)()
        assert g.dtype == np.float16 and g.tolist() == [[0.25, -0.25]], lib


def test_a_collected_copy_in_a_child_leaves_the_childs_files_alone():
    """A child forked by isolate holds copies of every other isolated function's children and
    closes their pipe ends at its start; the numbers are then free for its own files. When the
    child's garbage collector later freed such a copy, the copy closed those numbers again --
    the child's own files, not the pipes (under load, jax's gradient came back as an error in a
    test run). Only the process that forked a child closes its ends."""
    import gc
    import os

    from numstab.adapters import isolate

    old = isolate(lambda x: x, "old")
    old(np.ones(1))  # a child, and two pipe ends in the parent
    cycle = [old]
    cycle.append(cycle)  # freed only by the collector, not when the last name goes
    del old, cycle

    def reopen(x):
        fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(8)]  # reuses the closed numbers
        gc.collect()  # frees this child's copy of the old function
        try:
            return np.array([len(os.fstat(fd) and os.read(fd, 1) or b"") for fd in fds])
        finally:
            for fd in fds:
                os.close(fd)

    assert isolate(reopen, "reopen", timeout=30)(np.ones(1)).tolist() == [0] * 8
    gc.collect()
