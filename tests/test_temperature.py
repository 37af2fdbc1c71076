"""Temperature: softmax(x / T) with the division in the format (issue 12, a sampler's case).

Expected values are computed here with mpmath and numpy, independently of numstab's reference.
"""

import json
from fractions import Fraction

import mpmath
import numpy as np

from numstab.cli import main
from numstab.engine import evaluate
from numstab.formats import FORMATS
from numstab.functions import REGISTRY
from numstab.results import CAUSES, STATUSES

F16, F32 = FORMATS["float16"], FORMATS["float32"]


def test_logit_over_a_tiny_temperature_overflows_float16_then_nan():
    x = np.array([[11.0625, 0.0]])
    outs, ref, _ = evaluate(F16, x, np.zeros(1, dtype=int), list(REGISTRY["softmax"].values()),
                            temperature=1e-5)
    tf = float(np.float16(1e-5))  # T held in float16: 1.0013580322265625e-05 (subnormal)
    assert tf == 1.0013580322265625e-05 and 11.0625 / tf > 65504  # x / T is inf in float16
    # exact: softmax([q, 0]) = [1 / (1 + e^-q), e^-q / (1 + e^-q)], q = 11.0625 / T_F ~ 1.1e6
    with mpmath.workdps(30):
        q = mpmath.mpf(11.0625) / mpmath.mpf(tf)
        assert mpmath.exp(-q) < mpmath.mpf(2) ** -25  # rounds to [1, 0] in float16
    assert list(ref["softmax"].rounded[0]) == [1.0, 0.0]
    for o in outs:
        st = [STATUSES[s] for s in o.status[0]]
        assert st[0] == "nan" and CAUSES[o.cause[0, 0] - 1] == "sum_overflow", o.impl.name  # x / T overflowed
    naive = next(o for o in outs if o.impl.name == "naive")
    assert naive.y[0, 1] == 0.0 and STATUSES[naive.status[0, 1]] == "ok"  # 0 / inf: exact here


def test_a_moderate_temperature_is_exact():
    x = np.array([[2.0, 1.0, -0.5]])
    outs, ref, _ = evaluate(F32, x, np.zeros(1, dtype=int), [REGISTRY["softmax"]["stable"]], temperature=0.5)
    with mpmath.workdps(40):
        z = [mpmath.mpf(4), mpmath.mpf(2), mpmath.mpf(-1)]
        s = sum(mpmath.exp(v) for v in z)
        want = [float(np.float32(float(mpmath.exp(v) / s))) for v in z]
    assert list(ref["softmax"].rounded[0]) == want
    assert STATUSES[outs[0].status.max()] == "ok"


def test_inspect_and_audit_take_temperature(capsys, tmp_path):
    assert main(["inspect", "softmax", "--dtype", "float16", "--temperature", "1e-5", "--impl", "stable",
                 "--format", "json", "--", "11.0625", "0"]) == 0
    d = json.loads(capsys.readouterr().out)["results"][0]
    assert d["temperature"] == 1e-5 and d["inputs"] == [11.0625, 0.0]
    assert d["scaled_inputs"][0] == 11.0625 / float(np.float16(1e-5))
    assert d["element_status"] == ["nan", "nan"] and "x / T overflows float16" in d["verdict"]
    f = tmp_path / "logits.npy"
    np.save(f, np.array([[11.0625, 0.0], [0.5, 0.0]], dtype=np.float16))  # 0.5 / T_F = 49932: finite
    code = main(["audit", "--function", "softmax", "--input", str(f), "--dtype", "float16", "--impl",
                 "stable", "--temperature", "1e-5", "--format", "json"])
    r = json.loads(capsys.readouterr().out)["results"][0]
    assert code == 1 and r["counts"]["nan"] == 2 and r["worst"][0]["row"] == [0]
    assert main(["inspect", "softmax", "--temperature", "0", "--", "1"]) == 2
    assert "must be a finite number > 0" in capsys.readouterr().err
    # a function without one is named as asked (it was its family's first, sigmoid)
    argv = ["inspect", "binary_cross_entropy", "--target", "0.3", "--temperature", "0.5", "--", "1"]
    assert main(argv) == 2
    assert capsys.readouterr().err.rstrip().endswith("cross_entropy, not binary_cross_entropy")
    # refused before any work, whatever the inputs: a row that a NaN fixes never asks the reference
    np.save(f, np.array([[np.nan, 0.0, 1.0]], dtype=np.float32))
    for argv in (["inspect", "softmax_backward", "--input", str(f)],
                 ["audit", "--function", "softmax_backward", "--impl", "naive", "--input", str(f)]):
        assert main([*argv, "--dtype", "float16", "--temperature", "0.7"]) == 2
        assert capsys.readouterr().err.rstrip().endswith("cross_entropy, not softmax_backward")
    assert main(["inspect", "softmax_backward", "--input", str(f), "--dtype", "float16", "--temperature", "1",
                 "--format", "json"]) == 0  # (T = 1: no division)


def _ulp64(r) -> mpmath.mpf:
    """ulp_F(r) of the README for float64 (p = 53, emin = -1022)."""
    return mpmath.mpf(2) ** (max(int(mpmath.floor(mpmath.log(abs(r), 2))), -1022) - 52)


def test_the_reference_uses_the_exact_quotient_not_its_float64_rounding(capsys):
    """softmax([30, 0] / 0.1) in float64: T_F = 0.1000000000000000055511151231257827..., so the exact
    quotient 30 / T_F = 299.9999999999999833... while x / T in float64 is 300.0. exp turns that
    1.7e-14 into a relative change of 1.7e-14 of softmax[1] = e^-q / (1 + e^-q): about 150 ULP of
    float64. The figure against the exact quotient is recomputed here with fractions and mpmath."""
    assert main(["inspect", "softmax", "--dtype", "float64", "--temperature", "0.1", "--impl", "stable",
                 "--format", "json", "--", "30", "0"]) == 0
    d = json.loads(capsys.readouterr().out)["results"][0]
    y = d["outputs"][1]
    q = Fraction(30) / Fraction(0.1)  # the exact quotient of the binary values
    assert float(q) == 300.0 and q != 300  # float64 rounds it to 300 exactly
    with mpmath.workdps(60):
        qm = mpmath.mpf(q.numerator) / q.denominator
        exact = mpmath.exp(-qm) / (1 + mpmath.exp(-qm))
        at_rounded = mpmath.exp(-300) / (1 + mpmath.exp(-300))  # what the float64 quotient gives
        ulp_exact = abs(mpmath.mpf(y) - exact) / _ulp64(exact)
        ulp_rounded = abs(mpmath.mpf(y) - at_rounded) / _ulp64(at_rounded)
    want = float(mpmath.nstr(ulp_exact, 3))
    assert d["ulp_error"][1] == want and want > 4 and d["element_status"][1] == "inaccurate"
    assert ulp_rounded < 1  # against f(fl(x / T)) the same output would have looked right
    assert d["reference"][1] == mpmath.nstr(exact, 25, min_fixed=-6, max_fixed=12)


def test_the_issue_case_exact_value_is_at_the_exact_quotient(capsys):
    """The sampler case (float16, 11.0625 / T_F with T_F = float16(1e-5)): softmax[1] = e^-q / (1 + e^-q)
    at the exact q = 11.0625 / T_F, its 25 digits recomputed here."""
    assert main(["inspect", "softmax", "--dtype", "float16", "--temperature", "1e-5", "--impl", "naive",
                 "--format", "json", "--", "11.0625", "0"]) == 0
    d = json.loads(capsys.readouterr().out)["results"][0]
    q = Fraction(11.0625) / Fraction(float(np.float16(1e-5)))
    with mpmath.workdps(80):
        qm = mpmath.mpf(q.numerator) / q.denominator
        exact = mpmath.exp(-qm) / (1 + mpmath.exp(-qm))
    assert d["reference"] == ["1.0", mpmath.nstr(exact, 25, min_fixed=-6, max_fixed=12)]
    assert d["element_status"] == ["nan", "ok"]


def test_fast_tiers_and_mpmath_agree_with_a_temperature():
    """The fast tiers bound the quotient's rounding (reference.softmax._over); mpmath encloses the exact
    quotient: both give the same report, and --verify rechecks rows at twice the precision."""
    from numstab.commands.compare import run_compare

    kw = dict(dtypes=["float16", "bfloat16", "float32", "float64"], functions=["softmax", "log_softmax",
              "logsumexp", "cross_entropy"], offsets="-30,-3,0,7", sizes="2,7", trials=2, jobs=1,
              temperature="0.3,0.01", target_at="argmax,random")
    fast = run_compare(verify=2, **kw)
    slow = run_compare(reference_mode="mpmath", **kw)
    assert fast.results == slow.results
    assert {r.temperature for r in fast.results} == {0.3, 0.01}
