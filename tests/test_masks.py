"""Masks (-inf), fully masked rows, +inf and NaN inputs: exact values are the limits (issue 12).

Expected values are computed here independently (math / mpmath / numpy casts of exact
values), never from numstab's reference.
"""

import math

import mpmath
import numpy as np
import pytest

from numstab.engine import evaluate
from numstab.formats import FORMATS
from numstab.functions import REGISTRY, Impl
from numstab.masks import Specials
from numstab.results import STATUSES

INF = math.inf
F16, F32 = FORMATS["float16"], FORMATS["float32"]


def run(function, fmt, x, target=0, impls=None, specials=None):
    x = np.array([x], dtype=np.float64)
    chosen = impls or list(REGISTRY[function].values())
    outs, ref, _ = evaluate(fmt, fmt.round(x), np.array([target]), chosen, specials=specials)
    return {o.impl.name: o for o in outs}, ref[function]


def status(o):
    return [STATUSES[int(s)] for s in np.atleast_1d(o.status[0])]


def cause(o):
    from numstab.causes import cause_name

    return [cause_name(int(c)) for c in np.atleast_1d(o.cause[0])]


def black_box(function, fn, name="user"):
    if REGISTRY[function] and function == "cross_entropy":
        return Impl(function, name, lambda x, acc, target: fn(x, target), name)
    return Impl(function, name, lambda x, acc: fn(x), name)


def test_softmax_of_a_mask_is_zero_and_one():
    outs, ref = run("softmax", F32, [-INF, 0.0])
    assert list(ref.rounded[0]) == [0.0, 1.0]
    for name in ("naive", "stable", "lse", "online"):
        o = outs[name]
        assert list(o.y[0]) == [0.0, 1.0], name
        assert list(o.ulp[0]) == [0.0, 0.0] and status(o) == ["ok", "ok"]


def test_log_softmax_of_a_mask_is_minus_inf_and_the_cpu_library_bug_is_a_finding():
    # a CPU library returned [0, -64] for log_softmax([-1, -inf]) in float32
    outs, ref = run("log_softmax", F32, [-1.0, -INF])
    assert list(ref.rounded[0]) == [0.0, -INF]
    for name in ("naive", "log_of_stable", "stable", "log1p"):
        assert list(outs[name].y[0]) == [0.0, -INF] and status(outs[name]) == ["ok", "ok"]

    def buggy(x):
        out = x - x.max(axis=-1, keepdims=True)
        return np.maximum(out, np.float32(-64))
    o, _ = run("log_softmax", F32, [-1.0, -INF], impls=[black_box("log_softmax", buggy)])
    o = o["user"]
    assert list(o.y[0]) == [0.0, -64.0]
    assert status(o) == ["ok", "inaccurate"] and o.ulp[0, 1] == INF
    assert cause(o)[1] == "clipping" and o.inferred


def test_logsumexp_ignores_minus_inf_terms():
    outs, ref = run("logsumexp", F16, [-INF, 0.0, 1.0, -INF])
    exact = mpmath.log(1 + mpmath.e)  # 1.3132616875...
    want = float(np.float16(float(exact)))
    assert ref.rounded[0] == want == 1.3134765625
    # ULP error: |fl - exact| / ulp(exact) with ulp = 2^-10 in [1, 2)
    ulp_err = float(abs(mpmath.mpf(want) - exact) * 2**10)
    for o in outs.values():
        assert o.y[0] == want and o.ulp[0] == round(ulp_err, 3) == 0.22


def test_cross_entropy_with_a_mask_is_exact_zero():
    outs, ref = run("cross_entropy", F32, [-INF, 0.0], target=1)
    assert ref.rounded[0] == 0.0
    assert outs["stable"].y[0] == 0.0 and outs["naive"].y[0] == 0.0
    assert status(outs["stable"]) == ["ok"] and outs["stable"].ulp[0] == 0.0
    # Keras's clip keeps p = 1 - 1e-7 (rounded to float32: 1 - 2^-23): -log of it, never 0
    clipped = outs["clipped"]
    p = float(np.float32(1 - 1e-7))
    assert clipped.y[0] == float(np.float32(-math.log(p)))
    assert status(clipped) == ["inaccurate"] and cause(clipped) == ["clipping"]
    # ULP of an exact 0 is the smallest subnormal 2^-149
    assert clipped.ulp[0] == float(f"{clipped.y[0] / 2.0**-149:.3g}")


def test_cross_entropy_is_ln2_and_the_xla_one_hot_nan_is_a_finding():
    outs, ref = run("cross_entropy", F32, [-INF, 0.0, 0.0], target=1)
    want = float(np.float32(math.log(2)))
    assert ref.rounded[0] == want
    for name in ("naive", "stable", "clipped"):
        assert outs[name].y[0] == want and status(outs[name]) == ["ok"], name

    def one_hot(x, target):  # -sum(onehot * log_softmax): 0 * -inf = NaN (an XLA path)
        ls = x - x.max(axis=-1, keepdims=True)
        ls = ls - np.log(np.exp(ls).sum(axis=-1, keepdims=True))
        hot = np.zeros_like(x)
        hot[np.arange(x.shape[0]), target] = 1
        return -(hot * ls).sum(axis=-1)
    o, _ = run("cross_entropy", F32, [-INF, 0.0, 0.0], target=1,
               impls=[black_box("cross_entropy", one_hot)])
    assert math.isnan(o["user"].y[0]) and status(o["user"]) == ["nan"] and cause(o["user"]) == ["invalid"]


def test_cross_entropy_target_on_a_mask_is_plus_inf():
    outs, ref = run("cross_entropy", F32, [-INF, 0.0, 0.0], target=0)
    assert ref.rounded[0] == INF
    for name in ("naive", "stable"):
        assert outs[name].y[0] == INF and outs[name].ulp[0] == 0.0 and status(outs[name]) == ["ok"]
    c = outs["clipped"]  # clip(0, 1e-7): -log(1e-7 in float32) instead of inf
    assert c.y[0] == float(np.float32(-math.log(float(np.float32(1e-7)))))
    assert c.ulp[0] == INF and status(c) == ["inaccurate"] and cause(c) == ["clipping"]


def test_online_softmax_with_a_masked_prefix_is_invalid():
    # the running max starts at -inf: exp(-inf - (-inf)) = exp(NaN) -- the flash-attention bug
    outs, ref = run("softmax", F32, [-INF, -INF, 0.0, 1.0])
    e = 1 / (1 + math.e)
    assert list(ref.rounded[0]) == [0.0, 0.0, float(np.float32(e)), float(np.float32(1 - e))]
    assert status(outs["online"]) == ["nan"] * 4 and cause(outs["online"]) == ["invalid"] * 4
    assert status(outs["stable"]) == ["ok"] * 4


@pytest.mark.parametrize("policy,sm,ls,lse,ce", [
    ("nan", [math.nan] * 3, [math.nan] * 3, -INF, math.nan),
    ("zeros", [0.0] * 3, [-INF] * 3, -INF, INF),
    ("uniform", [float(np.float32(1 / 3))] * 3, [float(np.float32(-math.log(3)))] * 3, -INF,
     float(np.float32(math.log(3)))),
])
def test_fully_masked_rows_follow_the_policy(policy, sm, ls, lse, ce):
    sp = Specials(masked_rows=policy)
    x = [-INF] * 3
    got = {f: run(f, F32, x, specials=sp)[1].rounded[0] for f in ("softmax", "log_softmax", "logsumexp",
                                                                 "cross_entropy")}
    np.testing.assert_array_equal(got["softmax"], sm)
    np.testing.assert_array_equal(got["log_softmax"], ls)
    assert got["logsumexp"] == lse
    np.testing.assert_array_equal(got["cross_entropy"], ce)
    outs, _ = run("softmax", F32, x, specials=sp)
    # every built-in softmax returns NaN there (0/0, or -inf - -inf): right only under "nan"
    for o in outs.values():
        assert np.isnan(o.y[0]).all()
        assert status(o) == (["ok"] * 3 if policy == "nan" else ["nan"] * 3)


def test_safe_softmax_hides_the_nan_under_the_ieee_policy():
    def safe(x):
        m = np.where(np.isinf(x.max(axis=-1, keepdims=True)), 0, x.max(axis=-1, keepdims=True))
        e = np.exp(x - m)
        s = e.sum(axis=-1, keepdims=True)
        return np.where(s == 0, 0, e / np.where(s == 0, 1, s)).astype(x.dtype)
    o, _ = run("softmax", F32, [-INF] * 2, impls=[black_box("softmax", safe)])
    assert list(o["user"].y[0]) == [0.0, 0.0]
    assert status(o["user"]) == ["inaccurate"] * 2 and cause(o["user"]) == ["nan_hidden"] * 2
    o, _ = run("softmax", F32, [-INF] * 2, impls=[black_box("softmax", safe)],
               specials=Specials(masked_rows="zeros"))
    assert status(o["user"]) == ["ok"] * 2


def test_plus_inf_ieee_and_limit():
    x = [INF, 0.0, INF]
    _, ref = run("softmax", F32, x)
    assert np.isnan(ref.rounded[0]).all()
    _, ref = run("logsumexp", F32, x)
    assert ref.rounded[0] == INF
    lim = Specials(nonfinite="limit")
    outs, ref = run("softmax", F32, x, specials=lim)
    assert list(ref.rounded[0]) == [0.5, 0.0, 0.5]
    assert status(outs["stable"]) == ["nan"] * 3 and cause(outs["stable"]) == ["invalid"] * 3  # inf - inf
    _, ref = run("log_softmax", F16, x, specials=lim)
    assert list(ref.rounded[0]) == [float(np.float16(-math.log(2))), -INF, float(np.float16(-math.log(2)))]
    _, ref = run("cross_entropy", F32, x, target=2, specials=lim)
    assert ref.rounded[0] == float(np.float32(math.log(2)))
    _, ref = run("cross_entropy", F32, x, target=1, specials=lim)
    assert ref.rounded[0] == INF
    _, ref = run("softmax", F32, [INF, 0.0], specials=lim)
    assert list(ref.rounded[0]) == [1.0, 0.0]


def test_a_nan_input_must_come_out_nan():
    for sp in (Specials(), Specials(nonfinite="limit")):
        outs, ref = run("softmax", F32, [math.nan, 0.0, 1.0], specials=sp)
        assert np.isnan(ref.rounded[0]).all()
        assert all(status(o) == ["ok"] * 3 for o in outs.values())
    o, _ = run("softmax", F32, [math.nan, 0.0, 1.0],
               impls=[black_box("softmax", lambda x: np.nan_to_num(x * 0, nan=0.5).astype(x.dtype))])
    assert status(o["user"]) == ["inaccurate"] * 3 and cause(o["user"]) == ["nan_hidden"] * 3


def test_masked_rows_in_a_batch_keep_the_exact_figures_of_the_rest():
    # one batch: clean rows, masked rows of several lengths; the unmasked part of each row must
    # be figured exactly as the same finite vector on its own
    rng = np.random.default_rng(5)
    x = F16.round(rng.normal(0, 4, (12, 7)))
    x[1, 2] = -INF
    x[3, :5] = -INF
    x[7, 6] = -INF
    t = rng.integers(0, 7, 12)
    impls = list(REGISTRY["softmax"].values())
    outs, ref, _ = evaluate(F16, x, t, impls)
    for r in (1, 3, 7):
        keep = np.isfinite(x[r])
        o2, ref2, _ = evaluate(F16, x[r:r + 1, keep], t[r:r + 1] * 0, impls)
        np.testing.assert_array_equal(ref["softmax"].rounded[r, keep], ref2["softmax"].rounded[0])
        for a, b in zip(outs, o2):  # same output, same figure (online's masked prefix gives NaN)
            same = a.y[r, keep] == b.y[0]
            assert same.any() or a.impl.name == "online"
            np.testing.assert_array_equal(a.ulp[r, keep][same], b.ulp[0][same])
        assert (ref["softmax"].rounded[r, ~keep] == 0).all()


def test_float8_without_infinity_refuses_masks(capsys):
    from numstab.cli import main

    assert main(["inspect", "softmax", "--dtype", "float8_e4m3fn", "--", "1", "-inf"]) == 2
    assert "has no infinity" in capsys.readouterr().err


def test_verify_checks_masked_rows_through_the_mask_layer():
    """--verify recomputes rows with -inf / +inf entries too (their compacted finite vector, at the
    positions it came from): a wrong reference value there is caught, the right one passes."""
    from numstab.engine import evaluate
    from numstab.formats import FORMATS
    from numstab.functions import REGISTRY
    from numstab.masks import Specials
    from numstab.reference import verify_rows

    f16 = FORMATS["float16"]
    x = np.array([[-1.0, -np.inf, 2.0, 0.5], [np.inf, 0.0, 1.0, -np.inf], [-np.inf] * 4,
                  [0.25, 1.0, 3.0, 2.0]])
    sp = Specials("limit", "uniform")
    impls = [REGISTRY["log_softmax"]["stable"], REGISTRY["softmax"]["naive"]]
    outs, ref, _ = evaluate(f16, x, np.zeros(4, dtype=int), impls, specials=sp, verify=4)  # no mismatch
    assert verify_rows(f16, x, np.zeros(4, dtype=int), ref, [0, 1, 2], outs, sp) == []
    outs[0].ulp[0, 2] += 1  # a wrong figure of a finite output on a masked row
    bad = verify_rows(f16, x, np.zeros(4, dtype=int), ref, [0], outs, sp)
    assert len(bad) == 1 and "log_softmax:stable" in bad[0] and "element 2" in bad[0]
    outs[0].ulp[0, 2] -= 1
    ref["log_softmax"].rounded[0, 2] = np.nextafter(np.float16(ref["log_softmax"].rounded[0, 2]),
                                                    np.float16(0)).astype(np.float64)  # a wrong value
    bad = verify_rows(f16, x, np.zeros(4, dtype=int), ref, [0], (), sp)
    assert len(bad) == 1 and "log_softmax of" in bad[0] and "element 2" in bad[0]


@pytest.mark.parametrize("fmt_name, fills", [
    ("float16", (-65504.0, -1e4)), ("bfloat16", (-3.38e38, -1e9)),
    ("float32", (-3.4028234663852886e38, -1e9)), ("float64", (-1.7976931348623157e308, -1e300, -1e9))])
def test_large_finite_masks_are_decided_without_mpmath(fmt_name, fills):
    # masks written as a large finite number (torch.finfo(dtype).min, -1e9, -1e4 in half precision,
    # as attention masks are): the exp of a masked entry lies far below every format's range, and
    # the masked entry's x - max carries an absolute error up to 1e22 in the working type. The fast
    # tiers decide every element there (none reaches mpmath), with mpmath's very figures, and a
    # flushed 0 has ULP error 0 and relative error exactly 1 (|0 - r| / |r| for any r != 0)
    fmt = FORMATS[fmt_name]
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 24)) * 3 + 0.25
    x[:, 12:] = rng.choice(fills, (6, 12))
    x = fmt.round(x)
    tg = rng.integers(0, 24, 6)
    names = ("softmax", "log_softmax", "logsumexp", "cross_entropy", "sigmoid", "log_sigmoid", "softplus")
    impls = [i for f in names for i in REGISTRY[f].values()]
    outs, _, esc = evaluate(fmt, x, tg, impls)
    assert esc.stats()["elements"][-1] == 0
    exact, _, _ = evaluate(fmt, x, tg, impls, mode="mpmath")
    for a, b in zip(outs, exact):
        for k in ("ulp", "rel", "status", "cause"):
            same = np.array_equal(getattr(a, k), getattr(b, k), equal_nan=True)
            assert same, (a.impl.function, a.impl.name, k)
        if a.impl.function in ("softmax", "sigmoid"):
            flushed = (a.y == 0) & (x < -1e3)
            assert flushed.sum() >= 6 * 12 if a.impl.function == "softmax" else flushed.any()
            assert np.all(a.rel[flushed] == 1.0) and np.all(a.ulp[flushed] == 0.0)


@pytest.mark.parametrize("fmt_name", ["float16", "bfloat16", "float32", "float64"])
def test_a_single_finite_entry_is_an_exact_point(fmt_name):
    # a row whose other entries are masked (the first query of causal attention), or a vector of
    # one element: softmax 1, log_softmax and cross-entropy 0, logsumexp x exactly. The fast tiers
    # give these as points (1 is a power of two, which no interval without a strict bound settles),
    # so the row no longer goes to mpmath; every figure is mpmath's
    fmt = FORMATS[fmt_name]
    x = fmt.round(np.array([[1.0, -np.inf, -np.inf], [0.3, -np.inf, -np.inf], [-np.inf, 2.5, -np.inf]]))
    names = ("softmax", "log_softmax", "logsumexp")
    impls = [REGISTRY[f][k] for f in names for k in ("naive", "stable")]
    for rows in (x, x[:, :1]):
        outs, ref, esc = evaluate(fmt, rows, None, impls)
        assert esc.stats()["elements"][-1] == 0
        exact, _, _ = evaluate(fmt, rows, None, impls, mode="mpmath")
        for a, b in zip(outs, exact):
            for k in ("ulp", "rel", "status", "cause"):
                assert np.array_equal(getattr(a, k), getattr(b, k), equal_nan=True), (a.impl.name, k)
        finite = np.isfinite(rows)
        assert np.all(ref["softmax"].rounded[finite] == 1.0)
        assert np.all(ref["log_softmax"].rounded[finite] == 0)
        assert np.array_equal(ref["logsumexp"].rounded, np.max(rows, axis=1))  # -inf: fully masked


def _count_fast_calls(monkeypatch) -> list:
    """The (tier, rows shape) of every call of the fast reference the escalation makes, in a list
    filled as they happen."""
    import numstab.reference.escalation as escalation

    calls = []
    real = escalation.fast_reference

    def counted(*a, **k):
        calls.append((k.get("tier"), a[1].shape))
        return real(*a, **k)

    monkeypatch.setattr(escalation, "fast_reference", counted)
    return calls


@pytest.mark.parametrize("fmt_name", ["float16", "bfloat16", "float32", "float64"])
def test_causal_rows_go_to_the_fast_reference_together(fmt_name, monkeypatch):
    # causal attention: row i keeps its first i + 1 entries, so there are as many lengths as rows.
    # The softmax family's fast tiers read a -inf entry as an exact zero term, so the rows of two
    # or more entries left go to the fast reference whole, in one call (one per length before:
    # about 0.9 ms each), with mpmath's figures; exact values checked here at a few rows
    fmt = FORMATS[fmt_name]
    rng = np.random.default_rng(11)
    S = 40
    x = fmt.round(rng.standard_normal((S, S)) * 3)
    x[np.triu_indices(S, 1)] = -INF
    tg = rng.integers(0, S, S)  # a target beyond the diagonal is masked: cross-entropy +inf
    calls = _count_fast_calls(monkeypatch)
    names = ("softmax", "log_softmax", "logsumexp", "cross_entropy")
    impls = [REGISTRY[f][k] for f in names for k in ("naive", "stable")]
    outs, ref, esc = evaluate(fmt, x, tg, impls)
    assert esc.stats()["elements"][-1] == 0
    # at the first tier, the S - 1 rows of two or more entries whole (those whose target is masked
    # apart) and the first row; a row with an open element goes up a tier alone
    first = [s for t, s in calls if t == 0]
    assert len(first) <= 3 and sum(s[0] for s in first if s[1] == S) == S - 1, calls
    exact, _, _ = evaluate(fmt, x, tg, impls, mode="mpmath")
    for a, b in zip(outs, exact):
        for k in ("ulp", "rel", "status", "cause"):
            same = np.array_equal(getattr(a, k), getattr(b, k), equal_nan=True)
            assert same, (a.impl.function, a.impl.name, k)
    for i in (1, 7, 39):
        with mpmath.workprec(200):
            xs = [mpmath.mpf(float(v)) for v in x[i, :i + 1]]
            total = mpmath.fsum(mpmath.exp(v) for v in xs)
            want = [float(mpmath.exp(v) / total) for v in xs]
            lse = float(mpmath.log(total))
            ce = INF if tg[i] > i else float(mpmath.log(total) - xs[tg[i]])
        assert np.array_equal(ref["softmax"].rounded[i, :i + 1], fmt.round(np.array(want)))
        assert np.all(ref["softmax"].rounded[i, i + 1:] == 0)
        assert np.all(ref["log_softmax"].rounded[i, i + 1:] == -INF)
        assert ref["logsumexp"].rounded[i] == fmt.round(np.array([lse]))[0]
        assert ref["cross_entropy"].rounded[i] == fmt.round(np.array([ce]))[0]


@pytest.mark.parametrize("fmt_name", ["float16", "float32", "float64"])
def test_backward_rows_with_exact_zeros_stay_off_mpmath(fmt_name, monkeypatch):
    # a causal mask's first row keeps one entry (softmax 1): softmax_backward there is 1 (v - v) = 0,
    # cross_entropy_backward 1 - 1 = 0 at its target and 1 where the target is masked, and
    # log_softmax_backward v - (v + R) = -R; a cotangent of zeros gives softmax_backward 0 and, with
    # the dropped entries' cotangents 0 too, log_softmax_backward 0. The intervals around those
    # exact zeros left the relative figure open and sent the row to mpmath; the values are exact now.
    # The backward passes' fast tiers read -inf entries as exact zero terms too (MASKED): the rows
    # of two or more entries go to them whole, in one call, not one call per compacted length
    calls = _count_fast_calls(monkeypatch)
    fmt = FORMATS[fmt_name]
    rng = np.random.default_rng(5)
    S = 12
    x = fmt.round(rng.standard_normal((S, S)) * 3)
    x[np.triu_indices(S, 1)] = -INF
    v = fmt.round(rng.standard_normal((S, S)))
    v[3] = 0.0  # a whole cotangent row of zeros (its dropped entries' too)
    v[5, :6] = 0.0  # the entries kept are 0, the dropped ones not: -s_i R, no exact zero
    tg = np.array([0, 5] + [1] * (S - 2))  # row 1's target is masked
    for fam, args in (("softmax_backward", {"cotangent": v}), ("log_softmax_backward", {"cotangent": v}),
                      ("cross_entropy_backward", {"target": tg})):
        impls = list(REGISTRY[fam].values())
        calls.clear()
        outs, ref, esc = evaluate(fmt, x, args, impls)
        assert esc.stats()["elements"][-1] == 0, fam
        # rows 1..S-1 whole (row 1 apart for cross_entropy_backward: its target is masked), row 0
        # compacted to its one entry
        first = [shape for t, shape in calls if t == 0]
        assert len(first) <= 3 and sum(r for r, w in first if w == S) == S - 1, (fam, calls)
        exact, ref_mp, _ = evaluate(fmt, x, args, impls, mode="mpmath")
        for a, b in zip(outs, exact):
            for k in ("ulp", "rel", "status", "cause"):
                assert np.array_equal(getattr(a, k), getattr(b, k), equal_nan=True), (fam, a.impl.name, k)
        r = ref[fam].rounded
        with mpmath.workprec(200):  # row 0 keeps x[0, 0] alone; the rest of row 0 is masked
            rest = mpmath.fsum(mpmath.mpf(float(c)) for c in v[0, 1:])
        want0 = {"softmax_backward": 0.0, "log_softmax_backward": fmt.round(np.array([float(-rest)]))[0],
                 "cross_entropy_backward": 0.0}[fam]
        assert r[0, 0] == want0, fam
        if fam == "cross_entropy_backward":
            # row 1's target (5) is masked: s there, and s_5 - 1 = -1 at the target itself
            assert r[1, 0] > 0 and r[1, 1] > 0 and r[1, 5] == -1 and np.all(np.delete(r[1, 2:], 3) == 0)
        if fam == "softmax_backward":
            assert np.all(r[3] == 0) and np.all(r[5, :6] == 0)  # s (0 - 0) whatever R
        if fam == "log_softmax_backward":
            assert np.all(r[3, :4] == 0) and np.all(r[5, :6] != 0)  # -s_i R with R != 0


def test_a_forced_token_row_under_finfo_min_decides_each_repeated_value_once(monkeypatch):
    # constrained decoding: every logit but one masked by float16's finfo.min (-65504). log_softmax
    # at a masked entry is exactly -65504 - 2 - log1p(t), t = 15 e^-65506 > 0: a hair below -65506,
    # so the stable kernel's -65504 is 2 + 10^-28448 away, 0.0625 ULP plus a hair -- a 3-decimal
    # rounding tie that only the exact value decides (0.063, not 0.062) and that the fast bounds
    # leave to mpmath. The row's masked entries are one value: the exact stage (and mpmath's
    # points) decide it once, not once per entry
    import numstab.reference as reference
    import numstab.reference.escalation as escalation

    fmt = FORMATS["float16"]
    n = 400
    x = np.full((1, n), -65504.0)
    x[0, 7] = 2.0
    pairs, points = [], []
    real_pair, real_point = reference._exact_pair, escalation._interval_point
    monkeypatch.setattr(reference, "_exact_pair", lambda *a: pairs.append(1) or real_pair(*a))
    monkeypatch.setattr(escalation, "_interval_point", lambda *a: points.append(1) or real_point(*a))
    outs, ref, esc = evaluate(fmt, x, None, [REGISTRY["log_softmax"]["stable"]])
    o = outs[0]
    assert o.y[0, 0] == -65504.0 and ref["log_softmax"].rounded[0, 0] == -65504.0
    with mpmath.workprec(200):
        lp = mpmath.log1p((n - 1) * mpmath.exp(mpmath.mpf(-65506)))
    assert 0 < lp < mpmath.mpf(10) ** -28000  # a hair: |y - r| / 32 = 0.0625 + lp / 32
    assert np.all(np.delete(o.ulp[0], 7) == 0.063) and np.all(np.delete(o.status[0], 7) == 0)
    assert esc.stats()["elements"][-1] == n  # the row went to mpmath (the tie)
    assert len(pairs) <= 8 and len(points) <= 4, (len(pairs), len(points))  # not one per entry
