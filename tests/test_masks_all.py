"""Masks (-inf), +inf and NaN inputs for every function family beyond the softmax four:
the binary family (element-wise limits), label-smoothed cross-entropy and the gradients
(issue 12 items 1-3). Expected values are computed here with mpmath from the definitions,
never from numstab's reference.
"""

import json
import math

import mpmath
import numpy as np
import pytest

from numstab.cli import main

mpmath.mp.prec = 200


def inspect(capsys, function, values, *opts, dtype="float64", impl=None):
    argv = ["inspect", function, "--dtype", dtype, "--format", "json", *opts]
    if impl:
        argv += ["--impl", impl]
    code = main([*argv, "--", *[str(v) for v in values]])
    out, err = capsys.readouterr()
    assert code == 0, err
    return {r["impl"]: r for r in json.loads(out)["results"]}


def softmax_mp(x):
    xs = [mpmath.mpf(v) for v in x if v != -math.inf]
    m = max(xs)
    e = [mpmath.exp(mpmath.mpf(v) - m) if v != -math.inf else mpmath.mpf(0) for v in x]
    s = mpmath.fsum(e)
    return [v / s for v in e]


def ulps(y, exact, p=53, emin=-1022):
    """ULP error of a float64 output against an mpmath exact value (README definition)."""
    exact = mpmath.mpf(exact)
    if exact == 0:
        e = emin
    else:
        e = max(int(mpmath.floor(mpmath.log(abs(exact), 2))), emin)
    return float(abs(mpmath.mpf(y) - exact) / mpmath.mpf(2) ** (e - p + 1))


def close_figure(fig, value):
    """A 3-digit figure (README quantization) against an independent value."""
    return fig == pytest.approx(value, rel=5e-3, abs=1e-3)


@pytest.mark.parametrize("function,expected", [
    ("sigmoid", ["0.0", "1.0", "nan"]),
    ("log_sigmoid", ["-inf", "0.0", "nan"]),
    ("softplus", ["0.0", "inf", "nan"]),
])
def test_binary_family_limits_at_infinities_and_nan(capsys, function, expected):
    # sigmoid(-inf) = 0, sigmoid(inf) = 1; log_sigmoid -inf / 0; softplus 0 / inf; NaN stays NaN
    res = inspect(capsys, function, ["-inf", "inf", "nan"], dtype="float16", impl="stable")
    r = res["stable"]
    assert r["inputs"] == ["-inf", "inf", "nan"]  # a NaN input is a value, written "nan"
    assert r["reference"] == expected
    assert r["element_status"] == ["ok", "ok", "ok"]
    assert r["ulp_error"][:2] == [0.0, 0.0]


def test_binary_family_infinities_keep_the_finite_elements_exact(capsys):
    # one element is its own vector: a -inf beside 3 changes nothing at 3
    r = inspect(capsys, "sigmoid", ["-inf", 3], impl="stable")["stable"]
    assert r["reference"][0] == "0.0"
    assert r["reference"][1].startswith(mpmath.nstr(1 / (1 + mpmath.exp(-3)), 20)[:18])


@pytest.mark.parametrize("z,at_minus,at_plus", [(0.0, "0.0", "inf"), (1.0, "inf", "0.0"),
                                                (0.5, "inf", "inf")])
def test_bce_from_logits_limits(capsys, z, at_minus, at_plus):
    # BCE(x, z) = softplus(x) - x z: x -> -inf gives -x z (0 only for z = 0); x -> +inf gives
    # x (1 - z) (0 only for z = 1)
    res = inspect(capsys, "binary_cross_entropy", ["-inf", "inf"], "--target", str(z), dtype="float32")
    assert res["logits"]["reference"] == [at_minus, at_plus]


def test_bce_from_logits_at_plus_inf_with_a_soft_label_is_a_nan_finding(capsys):
    # max(x, 0) - x z at x = inf, z = 0.5 is inf - inf: NaN where the exact loss is +inf
    r = inspect(capsys, "binary_cross_entropy", ["inf"], "--target", "0.5", dtype="float32",
                impl="logits")["logits"]
    assert r["outputs"] == ["nan"] and r["reference"] == ["inf"]
    assert r["element_status"] == ["nan"] and r["element_cause"] == ["invalid"]


def test_softmax_backward_with_a_mask(capsys):
    # s = softmax([-inf, 0, 1]) = [0, 1/(1+e), e/(1+e)]; r_i = s_i (v_i - s.v); r_0 = 0 exactly
    x, v = ["-inf", 0, 1], [1, 2, 3]
    r = inspect(capsys, "softmax_backward", x, "--cotangent", "1,2,3", impl="fused")["fused"]
    s = softmax_mp([-math.inf, 0, 1])
    sv = mpmath.fsum(si * vi for si, vi in zip(s, v))
    exact = [si * (vi - sv) for si, vi in zip(s, v)]
    assert r["reference"][0] == "0.0"
    for j in (1, 2):
        assert mpmath.mpf(r["reference"][j]) == pytest.approx(exact[j], rel=1e-22)
        assert close_figure(r["ulp_error"][j], ulps(r["outputs"][j], exact[j]))


def test_log_softmax_backward_with_a_mask_counts_the_masked_cotangent(capsys):
    # r_i = v_i - s_i sum(v), sum over every entry (the masked one's v = 1 too): r_0 = v_0 = 1
    r = inspect(capsys, "log_softmax_backward", ["-inf", 0, 1], "--cotangent", "1,2,3", dtype="float32",
                impl="fused")["fused"]
    s = softmax_mp([-math.inf, 0, 1])
    exact = [1, 2 - 6 * s[1], 3 - 6 * s[2]]
    assert r["reference"][0] == "1.0" and r["ulp_error"][0] == 0.0
    for j in (1, 2):
        assert mpmath.mpf(r["reference"][j]) == pytest.approx(exact[j], rel=1e-22)
        assert close_figure(r["ulp_error"][j], ulps(r["outputs"][j], exact[j], p=24, emin=-126))


def test_cross_entropy_backward_with_the_target_masked(capsys):
    # s - onehot(0) with s_0 = 0: [-1, s_1, s_2]
    r = inspect(capsys, "cross_entropy_backward", ["-inf", 0, 1], "--target", "0", impl="fused")["fused"]
    s = softmax_mp([-math.inf, 0, 1])
    assert r["reference"][0] == "-1.0"
    for j in (1, 2):
        assert mpmath.mpf(r["reference"][j]) == pytest.approx(s[j], rel=1e-22)


@pytest.mark.parametrize("function,opts,expected", [
    ("softmax_backward", ["--cotangent", "1,2"], ["0.0", "0.0"]),
    ("log_softmax_backward", ["--cotangent", "1,2"], ["1.0", "2.0"]),
    ("cross_entropy_backward", ["--target", "1"], ["0.0", "-1.0"]),
])
def test_fully_masked_gradients_under_safe_softmax(capsys, function, opts, expected):
    # a safe softmax's s = 0 on a fully masked row: s (v - s.v) = 0, v - s sum(v) = v, s - onehot
    res = inspect(capsys, function, ["-inf", "-inf"], *opts, "--masked-rows", "zeros", dtype="float32")
    for r in res.values():
        assert r["reference"] == expected
    nan = inspect(capsys, function, ["-inf", "-inf"], *opts, dtype="float32")
    for r in nan.values():
        assert r["reference"] == ["nan", "nan"]


def test_log_softmax_backward_plus_inf_limit(capsys):
    # +inf at 0 and 2 share the mass: s = [1/2, 0, 1/2], sum(v) = 8: r = [1 - 4, 2, 5 - 4]
    res = inspect(capsys, "log_softmax_backward", ["inf", 3, "inf"], "--cotangent", "1,2,5",
                  "--nonfinite", "limit", dtype="float32")
    for r in res.values():
        assert r["reference"] == ["-3.0", "2.0", "1.0"]
    ieee = inspect(capsys, "log_softmax_backward", ["inf", 3, "inf"], "--cotangent", "1,2,5", dtype="float32")
    for r in ieee.values():
        assert r["reference"] == ["nan"] * 3


def test_smoothed_cross_entropy_with_a_mask(capsys):
    # epsilon > 0 puts weight epsilon/n on log s_0 = -inf: the loss is +inf exactly
    res = inspect(capsys, "smoothed_cross_entropy", ["-inf", 0, 1], "--target", "1",
                  "--label-smoothing", "0.1", dtype="float32")
    for r in res.values():
        assert r["reference"] == ["inf"]
    # epsilon = 0 is the cross-entropy of the unmasked entries: ln(1 + e) at x_t = 0; the kernels'
    # (epsilon / n) * sum(log_softmax) is 0 * -inf = NaN: a finding
    res = inspect(capsys, "smoothed_cross_entropy", ["-inf", 0, 1], "--target", "1",
                  "--label-smoothing", "0", dtype="float32")
    exact = mpmath.log(1 + mpmath.e)
    for r in res.values():
        assert mpmath.mpf(r["reference"][0]) == pytest.approx(exact, rel=1e-22)
        assert r["outputs"] == ["nan"] and r["status"] == "nan"


def test_masked_gradients_in_a_batch_match_the_unmasked_vector(tmp_path, capsys):
    # a row with a mask has the figures of its unmasked part (softmax_backward: s_j = 0 there)
    x = np.array([[-np.inf, 0.5, -1.25, 2.0], [0.5, -1.25, 2.0, 3.0]], dtype=np.float32)
    f = tmp_path / "x.npy"
    np.save(f, x)
    assert main(["inspect", "softmax_backward", "--dtype", "float32", "--impl", "fused", "--cotangent",
                 "0.25,1,-2,0.5", "--input", str(f), "--format", "json", "--top", "8"]) == 0
    out = json.loads(capsys.readouterr().out)
    r = out["results"][0]
    assert r["status"] in ("ok", "inaccurate")
    worst = {tuple(w["index"]): w for w in r["worst"]}
    s = softmax_mp([-math.inf, 0.5, -1.25, 2.0])
    v = [0.25, 1, -2, 0.5]
    sv = mpmath.fsum(si * vi for si, vi in zip(s, v))
    for (b, j), w in worst.items():
        if b == 0:
            exact = s[j] * (v[j] - sv)
            assert close_figure(w["ulp_error"], ulps(float(np.float32(w["output"])), exact, p=24, emin=-126))


def test_masked_softmax_backward_does_not_depend_on_the_other_gradients_run(capsys):
    # [x, -inf] with cotangent [a, b]: s = [1, 0], r = [1 (a - a), 0] = [0, 0] exactly, whether or
    # not log_softmax_backward (whose sum(v) counts the masked b) is computed in the same run
    from numstab.cli import main as cli

    runs = []
    for fs in (["softmax_backward"], ["softmax_backward", "log_softmax_backward"]):
        argv = ["compare", "--dtype", "float16", "--mask", "-inf", "--sizes", "2", "--format", "json"]
        for f in fs:
            argv += ["--function", f]
        assert cli(argv) == 0
        out = json.loads(capsys.readouterr().out)
        runs.append({(r["impl"], r["offset"]): r["max_ulp"] for r in out["results"]
                     if r["function"] == "softmax_backward"})
    assert runs[0] == runs[1]
    assert all(runs[1][k] == 0 for k in runs[1] if k[0] in ("fused", "stable"))


def test_verify_checks_masked_gradient_and_elementwise_rows():
    """--verify recomputes every function's compacted vector of a masked row (per function: the
    element-wise ones keep their finite elements) and catches a wrong value there."""
    from numstab.engine import evaluate
    from numstab.formats import FORMATS
    from numstab.functions import REGISTRY
    from numstab.masks import Specials
    from numstab.reference import verify_rows

    f32 = FORMATS["float32"]
    x = np.array([[-np.inf, 0.5, -1.25, 2.0], [np.inf, 1.0, 3.0, np.inf], [0.5, -1.25, 2.0, 3.0]])
    v = np.array([[0.25, 1.0, -2.0, 0.5]] * 3)
    sp = Specials("limit", "nan")
    impls = [REGISTRY["softmax_backward"]["fused"], REGISTRY["log_softmax_backward"]["fused"],
             REGISTRY["sigmoid"]["stable"]]
    args = {"cotangent": v}
    outs, ref, _ = evaluate(f32, x, args, impls, specials=sp)
    assert verify_rows(f32, x, args, ref, [0, 1, 2], outs, sp) == []
    # log_softmax_backward at row 1 (+inf at 0 and 3 under limit): s = [1/2, 0, 0, 1/2], sum(v) = -0.25
    assert list(ref["log_softmax_backward"].rounded[1]) == [0.375, 1.0, -2.0, 0.625]
    r = ref["log_softmax_backward"]
    r.rounded[0, 1] = np.nextafter(np.float32(r.rounded[0, 1]), np.float32(0)).astype(np.float64)
    bad = verify_rows(f32, x, args, ref, [0], (), sp)
    assert len(bad) == 1 and "log_softmax_backward of" in bad[0] and "element 1" in bad[0]


def test_per_vector_function_with_its_first_entry_masked_has_an_exact_string(capsys):
    # logsumexp takes no target; the index 0 the command passes along must not drop it out
    # (its exact string was null, and its exact figures were settled on a wrong problem)
    r = inspect(capsys, "logsumexp", ["-inf", "10.6875", "-8.0625"], dtype="bfloat16")
    exact = mpmath.mpf("10.6875") + mpmath.log1p(mpmath.exp(mpmath.mpf("-18.75")))
    for impl in ("naive", "stable", "log1p"):
        s = r[impl]["reference"][0]
        assert s is not None and s.startswith("10.68750000719413300444")
        assert mpmath.mpf(s) == pytest.approx(exact, rel=1e-24)


def test_the_exact_string_of_a_masked_cotangent_has_every_digit(capsys):
    # log_softmax_backward at a masked entry is exactly v_0, a float32 number whose decimal has
    # 25 digits: -0.4699001014232635498046875 (it printed float64's shortest repr, 17 digits)
    v0 = float(np.float32(-0.4699001))
    r = inspect(capsys, "log_softmax_backward", ["-inf", 1], f"--cotangent={v0!r},1", dtype="float32",
                impl="fused")["fused"]
    assert r["reference"][0] == "-0.4699001014232635498046875"
    assert mpmath.mpf(r["reference"][0]) == mpmath.mpf(v0)
