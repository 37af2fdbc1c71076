import json
import os
from pathlib import Path

import numpy as np
import pytest

from numstab.cli import main
from numstab.testing import assert_stable

DATA = Path(__file__).parent / "data"
USER = str(DATA / "user_impls.py")
SMALL = ["--sizes", "2,50", "--trials", "2"]
BHH = Path(__file__).resolve().parents[1].parent / "shared" / "validation" / "bhh2021_presoftmax.npy"


def audit(capsys, *argv):
    code = main(["audit", *argv, "--format", "json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def test_good_implementation_passes_exit_0(capsys):
    code, data, _ = audit(capsys, "--function", "softmax", "--dtype", "float16",
                          "--callable", f"{USER}:stable_softmax", *SMALL)
    assert code == 0 and data["passed"] is True
    assert data["schema"] == "numstab.audit/7"
    r = data["results"][0]
    assert r["passed"] and r["counts"]["nan"] == 0 and r["counts"]["overflow"] == 0


def test_naive_softmax_fails_in_float16_exit_1(capsys):
    code, data, _ = audit(capsys, "--function", "softmax", "--dtype", "float16",
                          "--callable", f"{USER}:naive_softmax", *SMALL)
    assert code == 1 and data["passed"] is False
    r = data["results"][0]
    assert r["counts"]["nan"] > 0 and any(x.startswith("nan:") for x in r["reasons"])
    ff = r["first_failure"]
    assert ff["status"] == "nan" and ff["output"] is None and len(ff["vector"]) == 2


def test_max_ulp_limit_and_fail_on(capsys):
    # sequential float16 summation of 50 terms is not within 0.5 ULP: a finding
    # every step in float16 (in float32 steps the outputs are correctly rounded: within 0.5 ULP)
    code, data, _ = audit(capsys, "--function", "softmax", "--dtype", "float16", "--impl", "stable",
                          "--max-ulp", "0.5", "--compute", "format", *SMALL)
    assert code == 1 and "max ULP error" in data["results"][0]["reasons"][0]
    code, data, _ = audit(capsys, "--function", "softmax", "--dtype", "float16", "--impl", "stable",
                          "--max-ulp", "float16=1000", "--fail-on", "overflow,nan,underflow", *SMALL)
    assert code == 0


@pytest.mark.parametrize("fn,msg", [
    ("raises", "raised RuntimeError: kaput"),
    ("wrong_shape", ", 1), expected ("),
    ("wrong_dtype", "returned dtype float64, expected float16"),
])
def test_broken_callables_are_findings_not_crashes(capsys, fn, msg):
    code, data, err = audit(capsys, "--function", "softmax", "--dtype", "float16",
                            "--callable", f"{USER}:{fn}", *SMALL)
    assert code == 1 and "Traceback" not in err
    assert msg in data["results"][0]["reasons"][0]


def test_scipy_implementations_audited(capsys):
    for f in ("softmax", "log_softmax", "logsumexp"):
        code, data, _ = audit(capsys, "--function", f, "--dtype", "float32", "--library", "scipy", *SMALL)
        assert code == 0, data
        assert data["results"][0]["impl"] == f"scipy.special.{f}"


def test_torch_implementations_audited(capsys):
    pytest.importorskip("torch", reason="torch not installed (.ci/run installs torch==2.13.0 from the "
                        "machine's local wheel when there is one)")
    for f in ("softmax", "log_softmax", "logsumexp", "cross_entropy"):
        code, data, _ = audit(capsys, "--function", f, "--dtype", "float16", "--dtype", "bfloat16",
                              "--library", "torch", "--spreads", "1", *SMALL)
        assert code == 0, data
        assert all(r["counts"]["nan"] == r["counts"]["overflow"] == 0 for r in data["results"])
    # torch's half softmax computes in float32 inside: correctly rounded here
    code, data, _ = audit(capsys, "--function", "softmax", "--dtype", "float16", "--library", "torch",
                          "--max-ulp", "0.5", *SMALL)
    assert code == 0


def test_cross_entropy_callable_with_targets(capsys, tmp_path):
    x = np.array([[1000.0, 0.0, -5.0], [1.0, 2.0, 3.0]])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", np.array([1, 2]))
    code, data, _ = audit(capsys, "--function", "cross_entropy", "--dtype", "float32",
                          "--callable", f"{USER}:stable_cross_entropy", "--impl", "naive",
                          "--input", str(tmp_path / "x.npy"), "--targets", str(tmp_path / "t.npy"))
    res = {r["impl"]: r for r in data["results"]}
    assert code == 1
    assert res[f"{USER}:stable_cross_entropy"]["passed"]
    assert not res["naive"]["passed"]


@pytest.mark.parametrize("argv,msg", [
    (["--function", "softmax"], "nothing to audit"),
    (["--function", "softmax", "--callable", "nomodule_xyz:f"], "cannot import"),
    (["--function", "softmax", "--callable", f"{USER}:missing"], "has no attribute 'missing'"),
    (["--function", "softmax", "--callable", "nocolon"], "module:function"),
    (["--function", "cross_entropy", "--library", "scipy"], "has no cross_entropy"),
    (["--function", "softmax", "--impl", "stable", "--fail-on", "overflw"], "did you mean 'overflow'"),
    (["--function", "softmax", "--impl", "stable", "--max-ulp", "abc"], "not a number"),
    (["--function", "softmax", "--library", "numpyy"], "unknown library"),
])
def test_bad_usage_exit_2(capsys, argv, msg):
    code = main(["audit", *argv])
    _, err = capsys.readouterr()
    assert code == 2 and msg in err and err.count("\n") == 1


def test_config_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "numstab.toml").write_text(f'''
[[audit]]
function = "softmax"
callable = "{USER}:stable_softmax"
dtypes = ["float16", "bfloat16"]
sizes = "2,20"
trials = 2

[[audit]]
function = "logsumexp"
impl = ["stable", "log1p"]
dtypes = ["float16"]
max_ulp = {{ float16 = 3 }}
sizes = "2"
''')
    code = main(["audit"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "all audits passed" in out
    (tmp_path / "numstab.toml").write_text('[[audit]]\nfunction = "softmax"\nimpl = "stable"\nmax_ulps = 3\n')
    code = main(["audit"])
    _, err = capsys.readouterr()
    assert code == 2 and "unknown key in numstab.toml audit #1 'max_ulps'" in err and "max_ulp" in err


def test_pyproject_config(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text(f'''
[tool.numstab]
[[tool.numstab.audit]]
function = "softmax"
callable = "{USER}:naive_softmax"
dtypes = ["float16"]
sizes = "2"
''')
    assert main(["audit"]) == 1
    capsys.readouterr()


def test_no_config_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["audit"]) == 2
    assert "no audit given" in capsys.readouterr().err


def test_assert_stable_api():
    from tests.data import user_impls as u

    assert_stable(u.stable_softmax, function="softmax", dtypes=("float16", "float32"), sizes="2,30")
    with pytest.raises(AssertionError, match="worst failing input") as info:
        assert_stable(u.naive_softmax, function="softmax", dtypes=("float16",), sizes="2,30")
    assert "nan:" in str(info.value) and "float16" in str(info.value)
    with pytest.raises(AssertionError, match="max ULP error"):
        assert_stable(u.stable_softmax, function="softmax", dtypes=("float16",), max_ulp=0.5,
                      sizes="50")


@pytest.mark.skipif(not BHH.is_file(), reason=f"validation data not found at {BHH} (../shared/validation)")
def test_reproduces_blanchard_higham_higham_2021(capsys):
    """BHH 2021, MNIST logits in binary16, sequential sums: the published figures. The paper's
    model: every operation in binary16 (--compute format)."""
    code, data, _ = audit(capsys, "--function", "logsumexp", "--dtype", "float16", "--accumulate",
                          "sequential", "--compute", "format", "--input", str(BHH), "--impl", "naive",
                          "--impl", "stable", "--impl", "log1p")
    res = {r["impl"]: r for r in data["results"]}
    assert code == 1
    assert res["naive"]["counts"]["overflow"] == 475  # of 2500 vectors
    assert res["stable"]["counts"]["overflow"] == 0 and res["log1p"]["counts"]["overflow"] == 0
    assert res["stable"]["passed"] and res["log1p"]["passed"]

    # the paper's other figures, from the same engine
    from numstab.engine import evaluate
    from numstab.formats import FORMATS
    from numstab.functions import REGISTRY
    from numstab.reference import exact_values

    f = FORMATS["float16"]
    x = f.round(np.load(BHH))
    t = np.zeros(len(x), dtype=int)
    lse = REGISTRY["logsumexp"]
    sm = REGISTRY["softmax"]
    outs, ref, _ = evaluate(f, x, t, [lse["naive"], lse["log1p"], sm["naive"], sm["stable"]],
                            compute="format")  # the paper's model: every operation in binary16
    a, b = outs[0].y, outs[1].y
    both = np.isfinite(a) & np.isfinite(b)
    assert both.sum() == 2025
    exact = np.array([float(exact_values(row, 0, 120)["logsumexp"][0]) for row in x])
    ea, eb = np.abs(a - exact) / np.abs(exact), np.abs(b - exact) / np.abs(exact)
    assert np.sum(ea[both] == eb[both]) == 1863  # identical errors on 92%
    ratio = ea[both] / eb[both]
    assert round(ratio.min(), 2) == 0.19 and round(ratio.max()) == 59 and round(ratio.mean(), 2) == 1.07
    # first-order bounds (u = 2^-11), where no exp overflows or underflows and outputs are normal
    u, n = 2.0**-11, x.shape[1]
    r = ref["softmax"]
    ex = r.rounded + r.dlo * r.ulp
    normal = ex >= f.tiny
    clean = np.isfinite(a) & (x.min(axis=1) > np.log(f.tiny))
    rel = np.where(normal, np.abs(outs[2].y - ex) / ex, 0).max(axis=1)
    assert np.all(rel[clean] <= (n + 3) * u)
    rel = np.where(normal, np.abs(outs[3].y - ex) / ex, 0).max(axis=1)
    assert np.all(rel <= (n + 2 + 2 * (x.max(axis=1) - x.min(axis=1))) * u)


def test_torch_half_log_softmax_fails_the_default_audit_on_a_wide_spread(capsys):
    """On the default grid's spread 8, torch's float16 log_softmax returns 0 for the largest entry
    of [7.49609375, 17.84375]: its row sum 1 + e^-10.35 = 1.000032 is held in float16, where it
    rounds to 1, so log(sum) = 0; the exact value -log1p(e^-10.34765625) = -3.2067e-5 is a
    subnormal of float16 (spacing 2^-24): 538 ULP, and a 0 where the exact value is not (the
    default audit's `zero`)."""
    import mpmath

    pytest.importorskip("torch", reason="torch not installed")
    exact = -mpmath.log1p(mpmath.exp(mpmath.mpf(7.49609375) - mpmath.mpf(17.84375)))
    assert round(float(abs(exact) / mpmath.mpf(2) ** -24), 0) == 538
    assert np.float16(1 + np.exp(np.float32(7.49609375 - 17.84375))) == 1
    code, data, _ = audit(capsys, "--function", "log_softmax", "--dtype", "float16", "--library",
                          "torch", *SMALL)
    (r,) = data["results"]
    assert code == 1 and not r["passed"] and r["reasons"][0].startswith("zero: ")
    w = r["first_failure"]
    assert w["vector"] == [7.49609375, 17.84375] and w["element"] == 1 and w["output"] == 0.0
    assert w["exact_rounded"] == float(np.float16(float(exact))) and w["ulp_error"] == 538.0


def test_env_independent_of_cwd():
    assert os.path.isfile(USER)


def test_jax_implementations_audited(capsys):
    pytest.importorskip("jax", reason="jax not installed (optional: pip install jax)")
    for f in ("softmax", "log_softmax", "logsumexp"):
        code, data, _ = audit(capsys, "--function", f, "--dtype", "float32", "--dtype", "float64",
                              "--library", "jax", "--spreads", "1", *SMALL)
        assert code == 0, data
        # float64 really computed in float64 (x64 mode): errors of a few ULP, not float32's 1e9
        assert all(r["max_ulp"] < 100 for r in data["results"]), data["results"]


def _naive_softmax_median_ulp_float16(seed: int, n: int, trials: int) -> float:
    """The median ULP figure of exp(x) / sum(exp(x)) in float16 (sequential sum) on the grid cell
    offset 0, spread 1: inputs as the grid draws them, exact values with mpmath at 200 bits."""
    import mpmath

    z = np.random.default_rng([seed, n]).standard_normal((trials, n))
    x = z.astype(np.float16)  # offset 0 + spread 1 * z, rounded to nearest
    errs = []
    with mpmath.workprec(200):
        for row in x:
            e = np.exp(row)
            s = np.float16(0)
            for v in e:  # sequential: every addition rounded to float16
                s = np.float16(s + v)
            y = e / s
            ex = [mpmath.exp(mpmath.mpf(float(v))) for v in row]
            tot = mpmath.fsum(ex)
            for yi, ei in zip(y, ex):
                r = ei / tot
                k = max(int(mpmath.floor(mpmath.log(r, 2))), -14)
                err = abs(mpmath.mpf(float(yi)) - r) / mpmath.ldexp(1, k - 10)
                errs.append(int(mpmath.nint(err * 1000)) / 1000)  # each figure: 3 decimals below 1 ULP
    # the median of the element figures (float64, as reported), quantized again
    return float(np.round(np.median(errs) * 1000) / 1000)


def test_compare_and_audit_give_identical_figures(capsys):
    """One engine: the same cell gives the same figures in compare and in audit."""
    cell = ["--function", "softmax", "--impl", "naive", "--dtype", "float16", "--sizes", "10",
            "--spreads", "1", "--offsets", "0", "--trials", "3", "--seed", "0",
            "--compute", "format"]  # the figure below is computed in float16 steps
    assert main(["compare", *cell, "--format", "json", "--jobs", "1"]) == 0
    c = json.loads(capsys.readouterr().out)["results"][0]
    code, a, _ = audit(capsys, *cell)
    a = a["results"][0]
    assert code == 0
    want = _naive_softmax_median_ulp_float16(0, 10, 3)
    assert c["median_ulp"] == a["median_ulp"] == want
    assert c["max_ulp"] == a["max_ulp"] and c["counts"] == a["counts"] and c["causes"] == a["causes"]


def test_first_failure_is_the_worst_failing_input_and_long_vectors_are_elided(capsys, tmp_path):
    """Row 0 is merely inaccurate (1000 values near 0: the float16 sum absorbs), row 1 gives NaN
    (exp(12) is inf in float16, inf/inf): the reported input is row 1, the worst. Every step in
    float16 (--compute format): in float32 steps neither fails."""
    z = np.random.default_rng(3).standard_normal(1000)
    bad = np.zeros(1000)
    bad[0] = 12.0
    f = tmp_path / "x.npy"
    np.save(f, np.stack([z, bad]))
    argv = ["--function", "softmax", "--impl", "naive", "--dtype", "float16", "--input", str(f),
            "--fail-on", "nan,inaccurate", "--compute", "format"]
    code, data, _ = audit(capsys, *argv)
    r = data["results"][0]
    # row 1: exp(12) = inf, so element 0 is inf/inf = NaN and the others x/inf = 0 (overflow)
    assert code == 1 and r["counts"]["inaccurate"] > 0 and r["counts"]["nan"] == 1
    assert r["counts"]["overflow"] == 999
    ff = r["first_failure"]
    assert ff["row"] == 1 and ff["element"] == 0 and ff["status"] == "nan" and ff["n"] == 1000
    assert len(ff["vector"]) == 1000
    assert ff["vector"][0] == 12.0 and ff["output"] is None  # NaN: no figure
    assert main(["audit", *argv]) == 1
    text = " ".join(capsys.readouterr().out.split())
    assert "worst failing input (row 1): [12.0, 0.0, 0.0, 0.0, ..., 0.0, 0.0, 0.0, 0.0] (1000 values" in text


def test_an_overflowed_infinity_is_no_zero(capsys, tmp_path):
    # --fail-on zero: an output 0, or the log of 0, where the exact value is not. The naive
    # logsumexp of [12, 0] in float16 overflows (exp(12) = 162755 > 65504): +inf is no log of 0, so
    # the zero criterion passes it and the overflow one fails it. The naive cross-entropy of
    # [10, -10] at target 1 flushes softmax_1 = e^-20 to 0 and returns -log(0) = +inf: a zero.
    # (The zeros count took every wrong infinity of a log-type function: the bhh2021 audit's
    # 475 overflows were reported as "zero: 475 of 2500 outputs are 0 (or the log of 0)".)
    path = tmp_path / "x.npy"
    np.save(path, np.array([[12.0, 0.0], [10.0, -10.0]]))
    common = ["--dtype", "float16", "--compute", "format", "--impl", "naive", "--input", str(path)]
    code, data, _ = audit(capsys, "--function", "logsumexp", "--fail-on", "zero", *common)
    (r,) = data["results"]
    assert code == 0 and r["passed"] and r["zeros"] == 0 and r["counts"]["overflow"] == 1
    code, data, _ = audit(capsys, "--function", "logsumexp", "--fail-on", "overflow,zero", *common)
    (r,) = data["results"]
    assert code == 1 and r["reasons"] == ["overflow: 1 of 2 elements"]
    code, data, _ = audit(capsys, "--function", "cross_entropy", "--fail-on", "zero", "--target", "1",
                          *common)
    (r,) = data["results"]
    assert code == 1 and r["zeros"] == 1 and r["reasons"][0].startswith("zero: 1 of 2 outputs")
    assert r["first_failure"]["vector"] == [10.0, -10.0] and r["first_failure"]["status"] == "underflow"
    # the naive binary cross-entropy of x = 20 at label 0: sigmoid(20) rounds to 1, 1 - p cancels to
    # 0 and -log(0) = +inf, an inaccurate output (the 0 came from a cancellation): a zero too, so
    # the default audit fails it
    np.save(path, np.array([[20.0, 0.5]]))
    code, data, _ = audit(capsys, "--function", "binary_cross_entropy", "--target", "0", *common)
    (r,) = data["results"]
    assert code == 1 and r["zeros"] == 1 and r["counts"]["inaccurate"] == 1, r
    assert r["first_failure"]["element"] == 0 and r["first_failure"]["cause"] == "cancellation"
