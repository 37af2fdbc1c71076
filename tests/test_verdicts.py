"""True verdicts: statuses say what happened, every failure has its established cause.

Expected figures are computed independently here (plain float arithmetic, ml_dtypes
rounding, mpmath at high precision), not through numstab's reference.
"""

import json
import math

import ml_dtypes
import mpmath
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from numstab.cli import main
from numstab.engine import evaluate
from numstab.formats import FORMATS
from numstab.functions import REGISTRY
from numstab.results import CAUSES
from numstab.steps import Tracer
from tests.models import in_format  # the textbook model: --compute format


def inspect(capsys, *argv):
    cut = argv.index("--")
    code = main(["inspect", *argv[:cut], "--format", "json", *argv[cut:]])
    out, err = capsys.readouterr()
    assert code == 0, err
    d = json.loads(out)
    return {r["impl"]: r for r in d["results"]} if "results" in d else {d["impl"]: d}


def test_zeros_of_x_over_inf_are_overflow_not_underflow(capsys):
    # exp(10) in float16 is 22032 (spacing 16 above 16384); 3 x 22032 = 66096 > 65504: the sum overflows
    assert float(np.float16(math.exp(10))) == 22032.0 and 3 * 22032 > 65504
    d = inspect(capsys, "softmax", "--dtype", "float16", "--impl", "naive", "--compute", "format",
                "--", "10", "10", "10")["naive"]  # float16 steps (in float32 the sum is 66096)
    assert d["outputs"] == [0.0, 0.0, 0.0]
    assert d["element_status"] == ["overflow"] * 3
    assert d["element_cause"] == ["sum_overflow"] * 3
    assert d["flags"] == ["overflow"]  # nothing underflowed
    assert "their sum overflows float16" in d["verdict"] and "x/inf is 0" in d["verdict"]


def test_default_float16_compare_has_no_underflow_without_an_underflow(capsys):
    assert main(in_format(["compare", "--dtype", "float16", "--format", "json", "--jobs", "1"])) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["schema"] == "numstab.compare/5"
    unf = [r for r in data["results"] if r["status"] == "underflow"]
    assert unf and all("underflow" in r["flags"] for r in unf)
    ovf = [r for r in data["results"] if r["status"] == "overflow"]
    assert ovf and all("overflow" in r["flags"] for r in ovf)
    for r in data["results"]:
        failing = sum(r["counts"][k] for k in ("inaccurate", "underflow", "overflow", "nan"))
        assert sum(r["causes"].values()) == failing, r  # every failing element has a cause
        assert set(r["causes"]) <= set(CAUSES)
        assert (r["cause"] is None) == (failing == 0)


def test_absorption_in_logsumexp_float64(capsys):
    exact = mpmath.log1p(mpmath.exp(-40))
    with mpmath.workdps(40):
        assert float(mpmath.log1p(mpmath.exp(-40))) == 4.248354255291589e-18
    assert 1.0 + math.exp(-40) == 1.0  # the small term vanishes in float64
    d = inspect(capsys, "logsumexp", "--dtype", "float64", "--", "0", "-40")
    for impl in ("naive", "stable"):
        assert d[impl]["outputs"] == [0.0]
        assert d[impl]["status"] == "inaccurate" and d[impl]["element_cause"] == ["absorption"]
        assert d[impl]["flags"] == []  # no flag: nothing overflowed or underflowed
        assert "1 + 4.248e-18 rounds to 1 in float64" in d[impl]["verdict"]
        assert "absorbed (log1p keeps it)" in d[impl]["verdict"]
    assert d["log1p"]["outputs"] == [float(exact)] and d["log1p"]["status"] == "ok"


def test_cancellation_in_cross_entropy_float32(capsys):
    assert np.float32(1e8) + np.float32(math.log(2)) == np.float32(1e8)  # ulp(1e8) = 8 in float32
    d = inspect(capsys, "cross_entropy", "--dtype", "float32", "--target", "1", "--", "1e8", "1e8")
    s = d["stable"]
    assert s["outputs"] == [0.0] and s["reference"][0].startswith("0.6931471805599453")
    assert s["status"] == "inaccurate" and s["element_cause"] == ["cancellation"]
    # the step that lost the loss: max + log(sum) absorbed ln 2, then the subtraction cancels to 0
    assert ("logsumexp(x) - x[1] = 1e+08 - 1e+08 = 0 in float32 after 1e+08 + 0.6931 rounded to 1e+08 "
            "(max + log(sum)): every digit cancels") in s["verdict"]
    assert d["naive"]["status"] == "nan" and d["naive"]["element_cause"] == ["exp_overflow"]


def test_bfloat16_sum_overflow_is_seen(capsys):
    bf = ml_dtypes.bfloat16
    e = [float(bf(np.exp(np.float32(v)))) for v in (85.0, 88.0, 88.0)]
    assert sum(e) > float(ml_dtypes.finfo(bf).max)  # each finite, the sum is not
    d = inspect(capsys, "softmax", "--dtype", "bfloat16", "--impl", "naive", "--compute", "format",
                "--", "85", "88", "88")["naive"]  # bfloat16 steps: in float32 the sum, 3.38e38, is finite
    assert "overflow" in d["flags"]
    assert d["element_status"] == ["overflow"] * 3 and d["element_cause"] == ["sum_overflow"] * 3


def test_float8_e5m2_overflow_is_seen(capsys):
    assert math.exp(12) > 57344  # float8_e5m2 max
    d = inspect(capsys, "softmax", "--dtype", "float8_e5m2", "--impl", "naive", "--compute", "format",
                "--", "12", "5")["naive"]  # float8 steps: exp(12) overflows it, not float32
    assert "overflow" in d["flags"]
    assert d["element_status"] == ["nan", "overflow"]
    assert d["element_cause"] == ["exp_overflow", "exp_overflow"]


def test_no_spurious_flag_from_the_clip_constant(capsys):
    # 1e-7 is subnormal in float16; converting the constant must not raise underflow
    d = inspect(capsys, "cross_entropy", "--dtype", "float16", "--impl", "clipped", "--target", "2",
                "--", "1", "2", "3")["clipped"]
    assert d["flags"] == [] and d["status"] == "ok"


def test_clipping_cause(capsys):
    d = inspect(capsys, "cross_entropy", "--dtype", "float32", "--impl", "clipped", "--target", "1",
                "--", "0", "-200")["clipped"]
    assert d["element_cause"] == ["clipping"]
    assert math.isclose(d["outputs"][0], -math.log(np.float32(1e-7)), rel_tol=1e-6)


def test_audit_fails_on_zeros_from_an_overflowed_sum(capsys):
    code = main(in_format(["audit", "--function", "softmax", "--dtype", "float16", "--impl", "naive",
                           "--sizes", "1000", "--spreads", "1", "--offsets", "4.4,6.6", "--format", "json"]))
    d = json.loads(capsys.readouterr().out)
    assert code == 1 and d["schema"] == "numstab.audit/7" and d["passed"] is False
    r = d["results"][0]
    assert r["counts"]["overflow"] == 6000 and r["zeros"] == 6000
    assert r["causes"] == {"sum_overflow": 6000}
    assert r["first_failure"]["output"] == 0.0 and r["first_failure"]["cause"] == "sum_overflow"


def test_audit_fails_on_an_absorbed_zero_by_default(tmp_path, capsys):
    (tmp_path / "x.csv").write_text("0,-40\n")
    code = main(["audit", "--function", "logsumexp", "--dtype", "float64", "--impl", "stable",
                 "--input", str(tmp_path / "x.csv"), "--format", "json"])
    d = json.loads(capsys.readouterr().out)
    assert code == 1 and any(s.startswith("zero:") for s in d["results"][0]["reasons"])


def test_black_box_causes_are_inferred(capsys):
    def naive(x):
        e = np.exp(x)
        return e / np.sum(e, axis=-1, keepdims=True)

    fmt = FORMATS["float16"]
    x = fmt.round(np.array([[10.0, 10.0, 10.0]]))
    from numstab.adapters import user_impl

    outs, _, _ = evaluate(fmt, x, np.zeros(1, dtype=int), [user_impl("softmax", naive, "mine")])
    o = outs[0]
    assert o.inferred and list(o.status[0]) == [4, 4, 4]  # overflow: x/inf = 0
    assert [CAUSES[c - 1] for c in o.cause[0]] == ["sum_overflow"] * 3


def test_report_reads_compare_1_files(tmp_path, capsys):
    old = {"schema": "numstab.compare/1", "meta": {}, "thresholds": [], "results": [{
        "function": "softmax", "impl": "naive", "dtype": "float16", "offset": 12.0, "spread": 1.0, "n": 2,
        "trials": 1, "x_min": 11.0, "x_max": 12.0, "max_ulp": "inf", "median_ulp": "inf", "max_rel": "inf",
        "status": "nan", "flags": ["overflow", "invalid"], "underflow_cause": "overflow",
        "counts": {"ok": 0, "inaccurate": 0, "underflow": 1, "overflow": 0, "nan": 1, "undetermined": 0}}]}
    f = tmp_path / "old.json"
    f.write_text(json.dumps(old))
    assert main(["report", "--from", str(f), "--out", str(tmp_path / "r"), "--formats", "md,json"]) == 0
    capsys.readouterr()
    new = json.loads((tmp_path / "r" / "results.json").read_text())
    assert new["schema"] == "numstab.compare/5" and new["results"][0]["cause"] == "overflow"


# ------------------------------------------------------------------ properties
FMT = st.sampled_from(["float16", "bfloat16", "float32", "float64", "float8_e4m3fn", "float8_e5m2"])


@settings(max_examples=40, deadline=None)
@given(FMT, st.integers(2, 12), st.floats(-120, 120), st.floats(0, 30), st.integers(0, 2**31),
       st.sampled_from(["sequential", "pairwise", "float32"]), st.sampled_from(["float32", "format"]))
def test_every_failure_has_a_cause_and_statuses_match_the_flags(dt, n, offset, spread, seed, acc, compute):
    """Under both precision models: every failing element has a cause, an underflow or overflow
    status comes with that flag (raised in the format, or in float32 for float32 steps), the
    traced run equals the plain kernel bit for bit, and an exp_overflow cause under float32 steps
    needs an input whose exp overflows float32 (x >= 88.72...)."""
    fmt = FORMATS[dt]
    rng = np.random.default_rng(seed)
    with np.errstate(all="ignore"):
        x = fmt.round(np.clip(offset + spread * rng.standard_normal((3, n)), -0.9 * fmt.max, 0.9 * fmt.max))
    if not np.isfinite(x).all():
        return
    from numstab.grids import batch_args

    t = batch_args(fmt, x, rng.integers(0, n, 3), seed=seed)  # every function's second input
    impls = [i for f in REGISTRY.values() for i in f.values()]
    outs, _, _ = evaluate(fmt, x, t, impls, acc, groups=[slice(i, i + 1) for i in range(3)], compute=compute)
    wide = compute == "float32" and fmt.dtype.itemsize < 4
    big32 = np.abs(x).max(axis=1) >= math.log(float(np.finfo(np.float32).max))
    for o in outs:
        st_ = o.status.reshape(3, -1)
        cs = o.cause.reshape(3, -1)
        failing = st_ >= 2
        assert np.all((cs != 0) == failing), (o.impl.key, st_, cs)
        for row in range(3):
            if (st_[row] == 3).any():  # an underflow status needs an underflow in the format
                assert "underflow" in o.flags[row], (o.impl.key, x[row], o.y)
            if (st_[row] == 4).any():
                assert "overflow" in o.flags[row], (o.impl.key, x[row], o.y)
            if wide and (cs[row] == 1).any():  # exp_overflow in float32 steps
                assert big32[row], (o.impl.key, x[row], o.y)
        # the traced run is bit-identical to the plain kernel
        arg = o.impl.record.arg(t)
        with np.errstate(all="ignore"):
            plain = np.asarray(o.impl(fmt.cast(x), acc, arg, compute=compute), dtype=np.float64)
            traced = o.impl.run(fmt.cast(x), acc, arg, Tracer(fmt, 3, attribute=True),
                                compute).v.astype(np.float64)
        assert np.array_equal(plain, o.y, equal_nan=True) and np.array_equal(traced, o.y, equal_nan=True)


def test_binary_cross_entropy_verdicts_name_the_step_that_failed(capsys):
    """Issue 13: the naive BCE's verdict names the traced step. x = -20, z = 1 in float16 steps:
    p = 1 / (1 + exp(-x)) takes exp(20) = 4.85e8 > 65504, which overflows (not exp(-20)).
    x = 20, z = 0: exp(-20) = 2.06e-9 is below half float16's smallest subnormal (2^-25), so it
    flushes, p = 1 and 1 - p = 0 (log(0) = -inf); in float32 steps exp(-20) is kept but
    1 + 2.061e-09 rounds to 1 (below half float32's eps, 2^-24), with the same end."""
    assert math.exp(20) > 65504 and math.exp(-20) < 2.0 ** -25
    assert np.float32(1) + np.float32(math.exp(-20)) == np.float32(1) and math.exp(-20) < 2.0 ** -24
    d = inspect(capsys, "binary_cross_entropy", "--dtype", "float16", "--target", "1", "--compute",
                "format", "--impl", "naive", "--", "-20")["naive"]
    assert d["element_cause"] == ["exp_overflow"]
    assert "exp(20) overflows float16" in d["verdict"] and "exp(-20)" not in d["verdict"]
    for impl in ("naive", "clipped"):
        d = inspect(capsys, "binary_cross_entropy", "--dtype", "float16", "--target", "0", "--compute",
                    "format", "--impl", impl, "--", "20")[impl]
        assert d["outputs"] == ["inf"] and d["element_cause"] == ["cancellation"]
        assert "1 - p = 1 - 1 = 0 in float16 after exp(-20) flushed to 0" in d["verdict"], impl
    d = inspect(capsys, "binary_cross_entropy", "--dtype", "float16", "--target", "0", "--impl", "naive",
                "--", "20")["naive"]
    assert f"after 1 + {math.exp(-20):.4g} rounded to 1 (1 + exp(-x))" in d["verdict"]
    assert "1 - p = 1 - 1 = 0 in float32" in d["verdict"]
    # the clipped form in float32 steps: p = 1 is clipped to 1 - 2^-23 (1 - 1e-7 in float32), so the
    # loss is -log(2^-23) = 23 ln 2 = 15.9424 (rounded to float16: 2041 * 2^-7): the clip's, not the logit's
    assert float(np.float32(1 - 1e-7)) == 1 - 2.0 ** -23 and round(23 * math.log(2) * 128) == 2041
    d = inspect(capsys, "binary_cross_entropy", "--dtype", "float16", "--target", "0", "--impl", "clipped",
                "--", "20")["clipped"]
    assert d["outputs"] == [2041 / 128] and d["element_cause"] == ["clipping"]
    assert "the probability 1 is clipped to 0.9999999 (clip(p, 1e-7, 1 - 1e-7) in float32)" in d["verdict"]


def test_an_overflow_beside_a_flushed_exp_is_the_overflow(capsys):
    # float16 steps: exp(-2152) flushes to 0 and exp(157.25) overflows (ln 65504 = 11.09). Their
    # sum is inf because of the inf term: the sum's root was the first special term, the
    # flushed 0, so logsumexp's inf was called an underflow and softmax's inf/inf "0/0"
    assert math.exp(-2152) == 0.0 and 157.25 > math.log(65504)
    d = inspect(capsys, "logsumexp", "--dtype", "float16", "--impl", "naive", "--compute", "format",
                "--", "-2152", "157.25", "-550.5")["naive"]
    assert d["outputs"] == ["inf"] and d["element_status"] == ["overflow"]
    assert d["element_cause"] == ["exp_overflow"]
    assert "exp(157.25) overflows float16" in d["verdict"]
    assert "flush" not in d["verdict"] and "log(0)" not in d["verdict"]  # log(inf), not of a 0
    d = inspect(capsys, "softmax", "--dtype", "float16", "--impl", "naive", "--compute", "format",
                "--", "-2152", "157.25", "-550.5")["naive"]
    assert d["outputs"][1] == "nan" and d["element_cause"][1] == "exp_overflow"
    assert "inf/inf is NaN" in d["verdict"] and "0/0" not in d["verdict"]
    # the pairwise sum (0 + inf) keeps the inf's root too
    d = inspect(capsys, "logsumexp", "--dtype", "float16", "--impl", "naive", "--compute", "format",
                "--accumulate", "pairwise", "--", "-2152", "157.25")["naive"]
    assert d["element_cause"] == ["exp_overflow"]


def test_outputs_flushed_to_zero_are_underflows_in_an_ordinary_batch():
    # the figures' first statuses (metrics.element_metrics, before causes: README "What the
    # numbers mean") on a batch with nothing special in it (every output, exact value and ulp
    # finite: the figures' plain path), where a user's softmax flushes its outputs below 1e-3 to
    # 0: those are underflows with a relative error of exactly 1, the others ok; a 0 where the
    # exact value rounds to 0 (exp(-200) in float16) is no underflow. (The final verdict of a 0
    # far above the format's range is a black box's inaccuracy: nothing underflowed.)
    from numstab.functions import Impl
    from numstab.metrics import element_metrics
    from numstab.results import STATUSES

    def flushing(x, acc):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        p = e / e.sum(axis=-1, keepdims=True)
        return np.where(p < 1e-3, 0, p).astype(x.dtype)

    impl = Impl("softmax", "flushing", flushing, "flushes below 1e-3")
    for name in ("float16", "float32", "float64"):
        fmt = FORMATS[name]
        x = np.array([[0.0, -1.0, -10.0, -20.0, -200.0] + [-3.0] * 3])
        outs, ref, _ = evaluate(fmt, x, np.zeros(1, dtype=np.int64), [impl], compute="format")
        ulp, rel, status, settled = element_metrics(fmt, "softmax", outs[0].y, ref["softmax"], 4.0)
        exact = [mpmath.exp(mpmath.mpf(v)) for v in x[0]]
        total = mpmath.fsum(exact)
        rounded_nonzero = [fmt.round(float(e / total)) != 0 for e in exact]
        flushed = [float(e / total) < 1e-3 for e in exact]
        want = ["underflow" if f and nz else "ok" for f, nz in zip(flushed, rounded_nonzero)]
        assert [STATUSES[k] for k in status[0]] == want, name
        # 3e-5 is a float16 subnormal, 1.4e-9 rounds to 0 there; 1.4e-87 is 0 in float32
        assert want.count("underflow") == {"float16": 1, "float32": 2, "float64": 3}[name]
        assert all(rel[0, j] == 1.0 for j, w in enumerate(want) if w == "underflow")
        assert settled.all()


def test_a_nan_is_named_by_the_operation_that_made_it(capsys):
    # the trace records the step whose result turned NaN from operands that were not, with its
    # operands, and the verdict names it: the naive binary cross-entropy of x = 20 at label 1 in
    # float16 rounds sigmoid(20) to 1, so log(1 - p) = -inf and (1 - z) log(1 - p) = 0 * -inf (the
    # "why from_logits=True" NaN); it was called "an invalid operation (inf - inf, 0/0 or
    # inf/inf)", none of which happened. The softmax of exps that all flush to 0 divides 0 by 0.
    assert np.float16(1 / (1 + np.exp(np.float32(-20)))) == 1
    d = inspect(capsys, "binary_cross_entropy", "--dtype", "float16", "--impl", "naive", "--target", "1",
                "--", "20")["naive"]
    assert d["outputs"] == ["nan"] and d["element_cause"] == ["invalid"]
    assert d["verdict"].startswith("0 * -inf is NaN in (1 - z) log(1 - p)"), d["verdict"]
    assert "inf - inf" not in d["verdict"]
    d = inspect(capsys, "softmax", "--dtype", "float16", "--impl", "naive", "--compute", "format",
                "--", "-20", "-30")["naive"]
    assert d["outputs"] == ["nan", "nan"] and "0/0 is NaN" in d["verdict"], d["verdict"]
    assert "inf/inf" not in d["verdict"]


def test_a_flush_is_named_by_the_step_that_flushed(capsys):
    # the naive cross_entropy_backward (autograd through exp(x) / sum) of [-46.5, 36.34375] at
    # target 0 under --compute float32: no exp flushes (exp(-46.5) = 6.3e-21), but the chain rule's
    # (e / S) / S = 1.7e-52 is below float32's range and flushes to 0, so the gradient at the
    # argmax is 0 where the exact value is 1. The verdict said "exp flushes to 0 in float32", a
    # guess from the zero output; it names the quotient now, with its value. A softmax, which takes
    # no log, says "0 from a flush", not "the log of 0"
    e0, e1 = math.exp(-46.5), math.exp(36.34375)
    q = (e0 / (e0 + e1)) / (e0 + e1)
    assert 0 < q < 2.0**-150 and np.float32(e0) > 0
    d = inspect(capsys, "cross_entropy_backward", "--dtype", "float16", "--impl", "naive", "--target", "0",
                "--", "-46.5", "36.34375")["naive"]
    assert d["outputs"] == [-1.0, 0.0] and d["element_status"] == ["ok", "underflow"]
    assert d["verdict"].startswith(f"a quotient ({q:.4g}) flushes to 0 in float32"), d["verdict"]
    assert "exp flushes" not in d["verdict"] and "log of 0" not in d["verdict"]
    d = inspect(capsys, "softmax", "--dtype", "float8_e5m2", "--impl", "stable", "--compute", "format",
                "--", "5.1857", "-11.3764", "16.8309", "-64.0749", "6.9712")["stable"]
    assert d["element_status"][0] == "underflow" and "(0 from a flush to zero)" in d["verdict"]
    assert d["verdict"].startswith("exp flushes to 0 in float8_e5m2") and "log of 0" not in d["verdict"]
    # a log of the flushed 0 says so, and only then
    d = inspect(capsys, "log_softmax", "--dtype", "float16", "--impl", "log_of_stable", "--compute", "format",
                "--", "20", "0", "-20")["log_of_stable"]
    assert d["outputs"][2] == "-inf"
    assert "2 of 3 outputs underflow (the log of a 0 from a flush to zero)" in d["verdict"]


def test_label_smoothings_sum_of_log_probabilities_overflows_in_its_own_words(capsys, tmp_path):
    """Label-smoothed cross-entropy of [0, -100 x 999], target 0, in float16 steps: the exact loss
    is 9.9876 (epsilon 0.1 rounded to float16), but sum_j log_softmax_j = -99,900 is beyond 65504.
    The stable kernel (torch's formula) overflows in that sum, not in an exp, and its inf is the
    overflowed sum's (no log of 0); the naive one takes log(exp(-100)) = log(0) first (exp(-100)
    flushes). Before, the stable verdict read 'every exp(x) is finite but their sum overflows;
    -log(0) is inf', and a black box's inf (torch's) was 'inaccurate, ~rounding', counted as a zero."""
    assert -99900 < -65504
    np.save(tmp_path / "x.npy", np.array([[0.0] + [-100.0] * 999]))
    code = main(["inspect", "smoothed_cross_entropy", "--input", str(tmp_path / "x.npy"), "--target", "0",
                 "--dtype", "float16", "--compute", "format", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    r = {d["impl"]: d for d in json.loads(out)["results"]}
    assert r["stable"]["status"] == "overflow" and r["stable"]["cause"] == "sum_overflow"
    assert r["stable"]["verdict"].startswith("the sum of log_softmax overflows float16 (max 65504); 1 of 1")
    assert "-log(0)" not in r["stable"]["verdict"] and "exp(x)" not in r["stable"]["verdict"]
    assert r["log1p"]["verdict"].startswith("the sum of x - max overflows float16 (max 65504)")
    assert r["naive"]["status"] == "underflow" and "-log(0) is inf" in r["naive"]["verdict"]
    # a black box returning inf here: an overflow of that sum, inferred, not a zero
    code = main(["audit", "--function", "smoothed_cross_entropy", "--dtype", "float16", "--input",
                 str(tmp_path / "x.npy"), "--target", "0", "--callable", f"{_write_inf(tmp_path)}:loss",
                 "--format", "json"])
    out, _ = capsys.readouterr()
    res = json.loads(out)["results"][0]
    assert code == 1 and res["counts"]["overflow"] == 1 and res["zeros"] == 0
    assert res["causes"] == {"sum_overflow": 1} and res["cause_inferred"]


def _write_inf(tmp_path):
    p = tmp_path / "infloss.py"
    p.write_text("import numpy as np\n\ndef loss(x, target):\n"
                 "    return np.full(x.shape[0], np.inf, x.dtype)\n")
    return p


def test_a_black_box_losss_inf_is_named_by_what_could_make_it(capsys, tmp_path):
    """A black box's +inf loss where the exact loss is finite, inferred from the exact values:
    cross-entropy's naive float16 softmax flushes p_1 = exp(-20) = 2.06e-09 (below half of 2^-24)
    and -log(0) is inf: an underflow, not 'inaccurate, ~cancellation'. Label smoothing of
    [20, -100 x 999]: exp(20) would overflow float16, but a +inf (not NaN, what inf/inf gives) where
    the exact sum of -log p_j (999 x 120 = 119,880) is beyond 65504 is that sum's overflow."""
    assert math.exp(-20) < 2.0**-25 and math.exp(20) > 65504 and 999 * 120 > 65504
    p = tmp_path / "losses.py"
    p.write_text("import numpy as np\n\n"
                 "def naive_ce(x, target):\n"
                 "    e = np.exp(x)\n"
                 "    p = e / e.sum(axis=-1, keepdims=True)\n"
                 "    with np.errstate(divide='ignore'):\n"
                 "        return -np.log(p[np.arange(len(target)), target])\n\n"
                 "def inf_loss(x, target):\n"
                 "    return np.full(x.shape[0], np.inf, x.dtype)\n")
    cases = (("cross_entropy", [[0.0, -20.0]], "1", "naive_ce", "underflow", "underflow"),
             ("smoothed_cross_entropy", [[20.0] + [-100.0] * 999], "0", "inf_loss", "overflow",
              "sum_overflow"))
    for function, rows, target, fn, status, cause in cases:
        np.save(tmp_path / "x.npy", np.array(rows))
        code = main(["audit", "--function", function, "--dtype", "float16",
                     "--input", str(tmp_path / "x.npy"), "--target", target,
                     "--callable", f"{p}:{fn}", "--format", "json"])
        out, err = capsys.readouterr()
        r = json.loads(out)["results"][0]
        assert code == 1 and r["first_failure"]["output"] == "inf", err
        assert r["counts"][status] == 1 and r["causes"] == {cause: 1} and r["cause_inferred"]
        assert r["zeros"] == (1 if status == "underflow" else 0)  # the log of a flushed 0 is a zero


def test_an_elementwise_black_boxs_causes_come_from_its_own_input(capsys, tmp_path):
    """binary_cross_entropy is elementwise: an output's inferred cause is read from its own input,
    not from the largest input of the row it was passed in. torch's formula max(x, 0) - x z +
    log1p(exp(-|x|)) at x = -inf, z = 0 is 0 - (-inf * 0) = NaN: an invalid operation (the exact
    loss is the limit 0), not the exp overflow that x = 20 beside it (exp(20) > 65504) suggested.
    A naive float16 -z log(sigmoid(x)) at x = -20, z = 1: exp(20) overflows, sigmoid is 0 and the
    loss inf (exact 20.000000002) -- an overflow from that element's exp, although x = 1 beside
    it comes out finite (the row-wide rule wanted the whole row dead)."""
    assert math.exp(20) > 65504
    p = tmp_path / "bce.py"
    p.write_text("import numpy as np\n\n"
                 "def torch_form(x, z):\n"
                 "    with np.errstate(all='ignore'):\n"
                 "        y = np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x)))\n"
                 "    return y.astype(x.dtype)\n\n"
                 "def naive(x, z):\n"
                 "    with np.errstate(all='ignore'):\n"
                 "        s = 1 / (1 + np.exp(-x))\n"
                 "        return (-(z * np.log(s) + (1 - z) * np.log(1 - s))).astype(x.dtype)\n")
    for fn, row, z, status, cause in (("torch_form", [-np.inf, 20.0, 1.0], "0", "nan", "invalid"),
                                      ("naive", [-20.0, 1.0], "1", "overflow", "exp_overflow")):
        np.save(tmp_path / "x.npy", np.array([row]))
        code = main(["audit", "--function", "binary_cross_entropy", "--dtype", "float16",
                     "--input", str(tmp_path / "x.npy"), "--target", z,
                     "--callable", f"{p}:{fn}", "--format", "json"])
        out, err = capsys.readouterr()
        r = json.loads(out)["results"][0]
        assert code == 1, err
        assert r["counts"][status] == 1 and r["causes"] == {cause: 1} and r["first_failure"]["element"] == 0
    # softplus' 0 is a flush, never an overflow (log1p(inf) is inf), however far |x| is beyond
    # ln(max) = 88.7: a float32 kernel flushing subnormal results (FTZ) returns 0 at x = -100,
    # exact 3.72e-44 (27 x 2^-149)
    p.write_text("import numpy as np\n\ndef ftz(x):\n    with np.errstate(all='ignore'):\n"
                 "        y = np.log1p(np.exp(x))\n"
                 "    return np.where(np.abs(y) < np.finfo(x.dtype).tiny, 0, y).astype(x.dtype)\n")
    np.save(tmp_path / "x.npy", np.array([[-100.0, 1.0]]))
    code = main(["audit", "--function", "softplus", "--dtype", "float32", "--input", str(tmp_path / "x.npy"),
                 "--callable", f"{p}:ftz", "--format", "json"])
    r = json.loads(capsys.readouterr().out)["results"][0]
    assert code == 1 and r["counts"]["underflow"] == 1 and r["causes"] == {"underflow": 1}
    assert r["first_failure"]["exact_rounded"] == 27 * 2.0**-149 and mpmath.exp(-100) > 26.5 * 2.0**-149
