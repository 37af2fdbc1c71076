"""Losses and gradients (issue 13): the cases of the real bug reports with exact figures
computed here, independently, with plain mpmath at 60 digits (no numstab reference code),
the kernels against them, and the enclosures against an independent evaluation."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numstab.formats import get_format
from numstab.functions import REGISTRY
from numstab.functions import backward as bk
from numstab.functions import sigmoid as sg
from numstab.steps import PLAIN, Tracer

mp = mpmath.mp


def _round(v, p: int, emin: int) -> float:
    """An mpf rounded to nearest-even into a binary format with precision p and minimum normal
    exponent emin (subnormals included), from its exact digits: independent of numstab."""
    v = mpmath.mpf(v)
    if v == 0:
        return 0.0
    e = max(int(mpmath.floor(mpmath.log(abs(v), 2))), emin)
    # guard the log's own rounding at binade edges
    while abs(v) >= mpmath.ldexp(1, e + 1):
        e += 1
    while e > emin and abs(v) < mpmath.ldexp(1, e):
        e -= 1
    q = mpmath.ldexp(1, e - p + 1)
    k = v / q
    r = mpmath.floor(k)
    frac = k - r
    if frac > 0.5 or (frac == 0.5 and int(r) % 2 == 1):
        r += 1
    return float(r * q)


F64 = (53, -1022)
F16 = (11, -14)


def _softmax(x):
    e = [mpmath.exp(mpmath.mpf(float(v))) for v in x]
    s = mpmath.fsum(e)
    return [ei / s for ei in e]


def _run(kernel, x, *extra, dtype="float64"):
    """A kernel on one vector, plain and traced (the two must agree bit for bit)."""
    fmt = get_format(dtype)
    xx = np.asarray([x], dtype=np.float64).astype(fmt.dtype)
    ex = tuple(np.asarray([e]) for e in extra)
    with np.errstate(all="ignore"):
        y = kernel(xx, "sequential", *ex, PLAIN)
        tr = Tracer(fmt, 1, attribute=True)
        yt = kernel(tr.wrap(xx), "sequential", *ex, tr)
    y = np.asarray(y, dtype=np.float64)[0]
    np.testing.assert_array_equal(y, np.asarray(yt.v, dtype=np.float64)[0])
    return y, np.asarray(yt.root)[0]


# ------------------------------------------------------------ the bug reports
def test_bce_from_logits_of_minus_40_is_not_zero():
    with mp.workdps(60):
        exact = mpmath.log1p(mpmath.exp(-40))  # softplus(-40) - (-40) * 0
        r = _round(exact, *F64)
    assert r == 4.248354255291589e-18
    y, _ = _run(sg.bce_logits, [-40.0], [0.0])
    assert y[0] == r  # exactly rounded
    y, _ = _run(sg.bce_naive, [-40.0], [0.0])
    assert y[0] == 0.0  # 1 - sigmoid(-40) rounds to 1: the library's 0
    y, _ = _run(sg.softplus_stable, [-40.0])
    assert y[0] == r
    y, _ = _run(sg.softplus_naive, [-40.0])
    assert y[0] == 0.0  # log(1 + 4.2e-18) = log(1)


def test_log_softmax_backward_of_a_confident_vector():
    x = [37.42994775023705, 0.0]
    with mp.workdps(60):
        s = _softmax(x)
        v = [1, 0]
        V = sum(v)
        exact = [v[i] - s[i] * V for i in range(2)]
        r = [_round(g, *F64) for g in exact]
    assert r == [5.551115123125776e-17, -5.551115123125776e-17]
    y, _ = _run(bk.log_softmax_backward_fused, x, [1.0, 0.0])
    assert y.tolist() == [0.0, r[1]]  # v - exp(log_softmax) sum(v): 1 - 1 = 0 (the library's answer)
    y, _ = _run(bk.log_softmax_backward_stable, x, [1.0, 0.0])
    assert y.tolist() == r


def test_cross_entropy_backward_float16_of_12_0():
    x = [12.0, 0.0]
    with mp.workdps(60):
        s = _softmax(x)
        exact = [s[0] - 1, s[1]]
        r = [_round(g, *F16) for g in exact]
    # 1 / (1 + e^12) = 6.144e-06 is subnormal in float16: 103 * 2^-24
    assert r == [-103 * 2.0**-24, 103 * 2.0**-24] == [-6.139278411865234e-06, 6.139278411865234e-06]
    y, root = _run(bk.cross_entropy_backward_naive, x, 0, dtype="float16")
    assert np.isnan(y).all()  # exp(12) = inf in float16: inf/inf
    assert (root == 1).all()  # steps.CODE["exp_overflow"]
    y, _ = _run(bk.cross_entropy_backward_fused, x, 0, dtype="float16")
    assert y.tolist() == [0.0, r[1]]  # s_0 rounds to 1: s_0 - 1 = 0
    y, _ = _run(bk.cross_entropy_backward_stable, x, 0, dtype="float16")
    assert y.tolist() == r


# --------------------------------------------------- exact forms, independently
def _independent(function, x, extra):
    """The exact value of each new function, straight from its definition at 60 digits."""
    xs = [mpmath.mpf(float(v)) for v in x]
    n = len(xs)
    if function == "sigmoid":
        return [1 / (1 + mpmath.exp(-a)) for a in xs]
    if function == "log_sigmoid":
        return [-mpmath.log1p(mpmath.exp(-a)) if a >= 0 else a - mpmath.log1p(mpmath.exp(a)) for a in xs]
    if function == "softplus":
        return [mpmath.log1p(mpmath.exp(a)) if a < 0 else a + mpmath.log1p(mpmath.exp(-a)) for a in xs]
    if function == "binary_cross_entropy":
        z = [mpmath.mpf(float(v)) for v in np.broadcast_to(extra, (n,))]
        # -(z log(sigmoid(x)) + (1 - z) log(1 - sigmoid(x)))
        out = []
        for a, zz in zip(xs, z):
            ls = -mpmath.log1p(mpmath.exp(-a)) if a >= 0 else a - mpmath.log1p(mpmath.exp(a))
            l1 = ls - a  # log(1 - sigmoid(x)) = log(sigmoid(-x))
            out.append(-(zz * ls + (1 - zz) * l1))
        return out
    m = max(xs)
    lse = m + mpmath.log(mpmath.fsum(mpmath.exp(a - m) for a in xs))
    s = [mpmath.exp(a - lse) for a in xs]
    if function == "smoothed_cross_entropy":
        t, eps = int(extra[0]), mpmath.mpf(float(extra[1]))
        ls = [a - lse for a in xs]
        return [-((1 - eps) * ls[t] + eps / n * mpmath.fsum(ls))]
    if function == "cross_entropy_backward":
        return [s[i] - (1 if i == int(extra) else 0) for i in range(n)]
    v = [mpmath.mpf(float(a)) for a in extra]
    if function == "softmax_backward":
        dot = mpmath.fsum(si * vi for si, vi in zip(s, v))
        return [s[i] * (v[i] - dot) for i in range(n)]
    if function == "log_softmax_backward":
        V = mpmath.fsum(v)
        return [v[i] - s[i] * V for i in range(n)]
    raise AssertionError(function)


_values = st.floats(-60, 60, allow_nan=False).map(lambda v: float(np.float16(v)))


@settings(max_examples=60, deadline=None)
@given(st.lists(_values, min_size=1, max_size=5), st.data())
def test_enclosures_hold_the_independent_exact_values(x, data):
    from mpmath.libmp import to_str

    from numstab.reference import backward as rb
    from numstab.reference import sigmoid as rs
    from numstab.reference import smoothed as rsm

    ENCLOSURES = {"sigmoid": rs.enclose_sigmoid, "log_sigmoid": rs.enclose_log_sigmoid,
                  "softplus": rs.enclose_softplus, "binary_cross_entropy": rs.enclose_binary_cross_entropy,
                  "smoothed_cross_entropy": rsm.enclose_smoothed_cross_entropy,
                  "cross_entropy_backward": rb.enclose_cross_entropy_backward,
                  "softmax_backward": rb.enclose_softmax_backward,
                  "log_softmax_backward": rb.enclose_log_softmax_backward}

    n = len(x)
    t = data.draw(st.integers(0, n - 1))
    v = data.draw(st.lists(st.sampled_from([0.0, 1.0, -1.0, 0.5, 3.0, -2.25]), min_size=n, max_size=n))
    z = data.draw(st.sampled_from([0.0, 1.0, 0.25, 0.5]))
    extras = {"sigmoid": None, "log_sigmoid": None, "softplus": None, "binary_cross_entropy": [z],
              "smoothed_cross_entropy": (t, 0.125), "cross_entropy_backward": t,
              "softmax_backward": v, "log_softmax_backward": v}
    with mp.workdps(80):
        for f, extra in extras.items():
            got = ENCLOSURES[f](np.array(x), extra, 120, 11)
            want = _independent(f, x, extra)
            assert len(got) == len(want)
            for (lo, hi, _, _), w in zip(got, want):
                lo_, hi_ = mp.make_mpf(lo), mp.make_mpf(hi)
                # the enclosure at 120 bits holds the 80-digit value (its own error is ~1e-78 relative)
                # (absolute 1e-70: the 80-digit evaluation of an exact 0 leaves a residue near 1e-80)
                slack = abs(w) * mpmath.mpf(10) ** -70 + mpmath.mpf(10) ** -70
                assert lo_ - slack <= w <= hi_ + slack, (f, x, extra, to_str(lo, 20), to_str(hi, 20), w)


def test_exact_zero_gradients_are_points():
    """Lindemann-Weierstrass: sum_j c_j exp(d_j) = 0 only when each group of equal d_j has c = 0."""
    from numstab.reference.backward import enclose_log_softmax_backward, enclose_softmax_backward

    # x = [1, 1, 2], v = [1, 3, 2]: the group {x = 1} has mean cotangent 2 = v_2: g_2 = 0 exactly
    g = enclose_softmax_backward(np.array([1.0, 1.0, 2.0]), [1.0, 3.0, 2.0], 64)
    assert g[2][0] == g[2][1] and not g[2][0][1]
    assert all(e[0][1] for e in g[:2])
    # v_i = 0 and sum(v) = 0: g_i = 0
    g = enclose_log_softmax_backward(np.array([0.5, -3.0, 2.0]), [1.0, 0.0, -1.0], 64)
    assert not g[1][0][1] and not g[1][1][1]
    assert g[0][0][1] and g[2][0][1]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_kernels_run_plain_and_traced_alike(dtype):
    fmt = get_format(dtype)
    rng = np.random.default_rng(3)
    x = fmt.round(np.concatenate([rng.standard_normal((4, 6)) * s for s in (1, 8, 40)]))
    xx = x.astype(fmt.dtype)
    v = fmt.round(rng.standard_normal(x.shape))
    t = rng.integers(0, x.shape[1], x.shape[0])
    z = fmt.round(rng.uniform(0, 1, (x.shape[0], 1)))
    smoothing = np.rec.fromarrays([t, np.full(t.shape, 0.099976)], names="target,epsilon")
    extra_of = {"none": (), "label": (z,), "cotangent": (v,), "target": (t,), "smoothing": (smoothing,)}
    from numstab.functions import get

    kernels = [(impl.fn, extra_of[get(f).extra]) for f, impls in REGISTRY.items() for impl in impls.values()]
    for k, extra in kernels:
        with np.errstate(all="ignore"):
            y = np.asarray(k(xx, "sequential", *extra, PLAIN), dtype=np.float64)
            tr = Tracer(fmt, x.shape[0], attribute=True)
            yt = k(tr.wrap(xx), "sequential", *extra, tr)
        np.testing.assert_array_equal(y, np.asarray(yt.v, dtype=np.float64), err_msg=k.__name__)
        if k.__name__.endswith(("_stable", "_logits", "_log1p")):
            assert not np.isnan(y).any(), k.__name__  # the stable forms never produce NaN here


# ------------------------------------------------------------ end to end: inspect
def _inspect(capsys, *argv):
    import json

    from numstab.cli import main

    code = main(["inspect", argv[0], "--format", "json", *argv[1:]])  # --compute as given
    out, err = capsys.readouterr()
    assert code == 0, err
    d = json.loads(out)
    return {r["impl"]: r for r in d.get("results", [d])}


def test_inspect_bce_from_logits_minus_40(capsys):
    r = _inspect(capsys, "binary_cross_entropy", "--dtype", "float64", "--target", "0", "--", "-40")
    with mp.workdps(60):
        exact = mpmath.log1p(mpmath.exp(-40))
        assert abs(mpmath.mpf(r["logits"]["reference"][0]) - exact) <= exact * mpmath.mpf(10) ** -24
    assert r["logits"]["outputs"] == [4.248354255291589e-18] and r["logits"]["status"] == "ok"
    assert r["logits"]["ulp_error"][0] < 0.5 and r["logits"]["label"] == [0.0]
    # the library's 0: log(1 - p) with 1 - 4.2e-18 = 1, an absorbed term -- inaccurate, not underflow
    assert r["naive"]["outputs"] == [0.0]
    assert r["naive"]["element_status"] == ["inaccurate"] and r["naive"]["element_cause"] == ["absorption"]
    # Keras's from_logits=False: the probability 4.2e-18 clipped to 1e-7
    assert r["clipped"]["element_cause"] == ["clipping"]
    assert abs(r["clipped"]["outputs"][0] - 1.0000000494736474e-07) < 1e-22


def test_inspect_log_softmax_backward_confident(capsys):
    r = _inspect(capsys, "log_softmax_backward", "--dtype", "float64", "--cotangent", "1,0",
                 "--", "37.42994775023705", "0")
    want = [5.551115123125776e-17, -5.551115123125776e-17]
    assert r["stable"]["outputs"] == want and r["stable"]["status"] == "ok"
    assert r["fused"]["outputs"] == [0.0, want[1]]
    assert r["fused"]["element_status"] == ["inaccurate", "ok"]
    assert r["fused"]["element_cause"][0] == "cancellation"  # 1 - exp(log_softmax_0) = 1 - 1
    assert r["fused"]["cotangent"] == [1.0, 0.0]
    assert r["naive"]["element_status"][0] == "inaccurate"


def test_inspect_cross_entropy_backward_float16(capsys):
    # every operation in float16 (--compute format): exp(12) overflows
    r = _inspect(capsys, "cross_entropy_backward", "--dtype", "float16", "--compute", "format",
                 "--target", "0", "--", "12", "0")
    with mp.workdps(60):
        g = 1 / (1 + mpmath.exp(12))
        for s, w in zip(r["stable"]["reference"], (-g, g)):  # 25 correct significant digits
            assert abs(mpmath.mpf(s) - w) <= abs(w) * mpmath.mpf(10) ** -24, (s, w)
    assert r["stable"]["outputs"] == [-103 * 2.0**-24, 103 * 2.0**-24] and r["stable"]["status"] == "ok"
    assert r["naive"]["status"] == "nan" and set(r["naive"]["element_cause"]) == {"exp_overflow"}
    assert "overflow" in r["naive"]["flags"]
    assert r["fused"]["outputs"][0] == 0.0 and r["fused"]["element_cause"][0] == "cancellation"
    assert r["fused"]["ulp_error"][0] == 103.0  # |0 - 6.144e-6| / 2^-24, rounded to 3 digits


def test_inspect_needs_the_second_input(capsys):
    from numstab.cli import main

    # the backward passes' cotangent defaults to onehot: 1 at the argmax (x = [1, 2]: v = [0, 1])
    assert main(["inspect", "softmax_backward", "--format", "json", "--", "1", "2"]) == 0
    import json

    (r, *_) = json.loads(capsys.readouterr().out)["results"]
    assert r["cotangent"] == [0.0, 1.0]
    assert main(["inspect", "binary_cross_entropy", "--target", "1.5", "--", "1"]) == 2
    assert "[0, 1]" in capsys.readouterr().err
    assert main(["inspect", "softmax_backward", "--cotangent", "1,2,3", "--", "1", "2"]) == 2
    assert "3 values" in capsys.readouterr().err


# ------------------------------------------------------------------ validation data
VALIDATION = __import__("pathlib").Path(__file__).resolve().parents[1] / ".." / "shared" / "validation"


@pytest.mark.skipif(not (VALIDATION / "bhh2021_presoftmax.npy").exists(),
                    reason="../shared/validation (bhh2021 data) is absent")
def test_log1p_cross_entropy_fixes_the_validation_median():
    """Issue 13: on the bhh2021 logits with the true labels, in float16 with every operation in
    the format, lse(x) - x_t has median error 124 ULP; log1p(sum of the others) - (x_t - max) < 1."""
    from numstab.engine import evaluate

    x0 = np.load(VALIDATION / "bhh2021_presoftmax.npy")
    labels = np.load(VALIDATION / "bhh2021_labels.npy").astype(np.int64) - 1
    fmt = get_format("float16")
    x = fmt.round(x0)
    ce = REGISTRY["cross_entropy"]
    outs, _, _ = evaluate(fmt, x, labels, [ce["stable"], ce["log_softmax"], ce["log1p"]], "sequential",
                          compute="format")
    med = {o.impl.name: float(np.median(o.ulp)) for o in outs}
    assert med["stable"] == 124.0
    assert med["log1p"] < 1 and np.max(outs[2].ulp) < 8
    assert med["log_softmax"] > 20  # nll(log_softmax): (x - max) - log(sum) cancels the same way
    # in float32 steps (the default) the cancellation costs float32 digits: rare and small in float16
    # ULP, and the log1p form is correctly rounded (within half an ULP) on every vector
    outs, _, _ = evaluate(fmt, x, labels, [ce["stable"], ce["log1p"]], "sequential", compute="float32")
    assert np.median(outs[0].ulp) < 0.5 < 4 < np.max(outs[0].ulp) < 100
    assert np.max(outs[1].ulp) <= 0.5


# ------------------------------------------------------------------ thresholds, compare, audit
def test_thresholds_of_the_binary_family(capsys):
    import json

    from numstab.cli import main

    assert main(["thresholds", "--format", "json", "--dtype", "float16", "--dtype", "float64"]) == 0
    d = {f["dtype"]: f for f in json.loads(capsys.readouterr().out)["formats"]}
    with mp.workdps(50):
        for name, p in (("float16", 11), ("float64", 53)):
            s1 = mpmath.log(mpmath.mpf(2) ** (p + 1) - 1)
            ab = -p * mpmath.log(2)
            assert d[name]["sigmoid_rounds_to_1_x"].startswith(mpmath.nstr(s1, 20)[:18])
            assert d[name]["one_plus_exp_absorbed_x"].startswith(mpmath.nstr(ab, 20)[:18])
    # float64: the bug report's input 37.42994775023705 is where sigmoid reaches 1
    assert d["float64"]["sigmoid_rounds_to_1_x"].startswith("37.4299477502370")


def test_compare_shows_where_the_binary_family_breaks():
    from numstab.commands.compare import run_compare

    run = run_compare(dtypes=["float16"], functions=["softplus", "binary_cross_entropy"], sizes="4",
                      offsets="-9,0,12", spreads="1", trials=2, jobs=1, compute="format")
    by = {(r.function, r.impl, r.offset): r for r in run.results}
    assert by[("softplus", "naive", 12.0)].status == "overflow"
    assert by[("softplus", "naive", 12.0)].cause == "exp_overflow"
    # 1 + exp(-9) rounds to 1 in float16 (exp(x) <= 2^-11 below x = -7.62): log(1) = 0
    assert by[("softplus", "naive", -9.0)].status == "inaccurate"
    assert by[("softplus", "naive", -9.0)].cause == "absorption"
    for off in (-9.0, 0.0, 12.0):
        assert by[("softplus", "stable", off)].status == "ok"
        assert by[("binary_cross_entropy", "logits", off)].status == "ok"
    assert by[("binary_cross_entropy", "naive", 12.0)].status in ("nan", "overflow")
    assert run.meta["extras"]["label"] is None  # random 0/1 labels


def test_audit_bce(capsys):
    from numstab.cli import main

    argv = ["audit", "--function", "binary_cross_entropy", "--dtype", "float32", "--target", "0",
            "--sizes", "3", "--offsets", "-40,0,40", "--format", "json"]
    assert main([*argv, "--impl", "logits"]) == 0
    capsys.readouterr()
    assert main([*argv, "--impl", "naive"]) == 1
    import json

    res = json.loads(capsys.readouterr().out)["results"][0]
    assert not res["passed"]
    assert res["first_failure"]["status"] in ("inaccurate", "underflow", "nan", "overflow")


def test_inspect_backward_default_cotangent_is_onehot(capsys):
    """Without --cotangent, inspect uses 1 at the argmax: the bug report's log_softmax_backward of
    [37.42994775023705, 0] in float64 with v = [1, 0] is 1 - softmax_0 = softmax_1 =
    1 / (1 + e^37.43) = 5.551115123125776e-17 at element 0 (exactly rounded, computed here)."""
    r = _inspect(capsys, "log_softmax_backward", "--dtype", "float64", "--", "37.42994775023705", "0")
    with mp.workdps(60):
        g = 1 / (1 + mpmath.exp(mpmath.mpf(37.42994775023705)))
        want = float(g)  # mpmath rounds to nearest
    assert want == 5.551115123125776e-17
    assert r["stable"]["cotangent"] == [1.0, 0.0] and r["stable"]["outputs"] == [want, -want]
    assert r["stable"]["element_status"] == ["ok", "ok"]


@pytest.mark.parametrize("x,v", [((20000.0, 0.0), (0.0, 1.0)), ((0.0, 20000.0), (1.0, 0.0)),
                                 ((20000.0, 0.0, 0.0), (1.0, 0.0, 0.5))])
def test_log_softmax_backward_of_a_dominant_logit_is_decided(capsys, x, v):
    """Issue 13: a gap of 20000 made g_i = v_i - s_i sum(v) astronomically close to v_i or to
    v_i - sum(v) (s_i = e^-20000 or 1 - e^-20000), and the reference undetermined. The strict
    bounds (s_i in (0, 1)) decide it: each output is the value computed here at 30000 digits,
    rounded to float64, and the 25-digit reference string is that value's."""
    r = _inspect(capsys, "log_softmax_backward", "--dtype", "float64", "--cotangent",
                 ",".join(map(str, v)), "--", *map(str, x))
    with mp.workdps(30000):
        xs = [mpmath.mpf(a) for a in x]
        m = max(xs)
        e = [mpmath.exp(a - m) for a in xs]
        S = mpmath.fsum(e)
        V = sum(v)
        g = [mpmath.mpf(vi) - ei / S * V for vi, ei in zip(v, e)]
        want = [float(gi) for gi in g]
        strings = [mpmath.nstr(gi, 25, min_fixed=-1, max_fixed=1) for gi in g]
    for impl in ("fused", "stable"):
        assert r[impl]["element_status"] == ["ok"] * len(x), (impl, r[impl]["element_status"])
        assert r[impl]["outputs"] == want, impl
    for got, w, gi in zip(r["stable"]["reference"], strings, g):
        with mp.workdps(60):
            assert abs(mpmath.mpf(got) - gi) <= abs(gi) * mpmath.mpf(10) ** -24, (got, w)
