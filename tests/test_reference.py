import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from numstab.commands.compare import run_compare
from numstab.formats import FORMATS
from numstab.metrics import INACCURATE, OK, OVERFLOW, UNDERFLOW, element_metrics
from numstab.reference import (
    FAST_TIERS,
    QUAD,
    RefData,
    escalate,
    exact_values,
    fast_reference,
    mp_reference,
    round_mpf,
    thresholds,
)

F16, F32, F64 = FORMATS["float16"], FORMATS["float32"], FORMATS["float64"]


def point_ref(fmt, exact: list[Fraction]) -> RefData:
    """A reference built by hand from exact rationals (independent of mpmath)."""
    r = np.array([float(v) for v in exact])
    rounded = fmt.round(r)
    ulp = fmt.ulp(r)
    anchor = [q if math.isfinite(q) else math.copysign(fmt.max, q) for q in rounded]
    delta = np.array([float((v - Fraction(a)) / Fraction(float(u))) for v, a, u in zip(exact, anchor, ulp)])
    with np.errstate(divide="ignore"):
        q = ulp / np.abs(r)
    ones = np.ones(len(exact), dtype=bool)
    return RefData(rounded, ulp, delta, delta.copy(), q, q.copy(), ones, ones.copy())


def test_ulp_error_hand_computed_cases():
    exact = [Fraction(1), Fraction(1) - Fraction(1, 2**12), Fraction(3, 2**24), Fraction(0),
             Fraction(1, 3)]
    y = np.array([1 + 2.0**-10, 1.0, 2.0**-24, 2.0**-23, 0.0])
    ref = point_ref(F16, exact)
    ulp, rel, status, settled = element_metrics(F16, "softmax", y, ref, 4.0)
    # 1 ULP above 1; 2^-12 off where the ulp is 2^-11: 0.5; subnormal 2 ULPs; zero reference: ulp is
    # the smallest subnormal, so 2^-23 is 2 ULPs away; 0 where 1/3 rounds to nonzero: underflow
    assert list(ulp[:4]) == [1.0, 0.5, 2.0, 2.0]
    assert status[4] == UNDERFLOW and ulp[4] == pytest.approx(float(Fraction(1, 3) / 2**-12), rel=5e-3)
    assert list(status[:4]) == [OK] * 4
    assert rel[0] == pytest.approx(2.0**-10, rel=1e-2) and rel[3] == math.inf
    assert settled.all()


def test_status_overflow_inaccurate_and_exact_infinity():
    ref = point_ref(F16, [Fraction(10), Fraction(10), Fraction(70000)])
    y = np.array([np.inf, 10.0 + 5 * 2.0**-7, np.inf])
    ulp, _, status, _ = element_metrics(F16, "logsumexp", y, ref, 4.0)
    assert status[0] == OVERFLOW and ulp[0] == math.inf
    assert status[1] == INACCURATE and ulp[1] == 5.0
    assert status[2] == OK and ulp[2] == 0.0  # 70000 rounds to inf in float16: inf is right


def test_precision_escalation_beats_fixed_precision():
    # log_softmax of [0, -40] at index 0 in float64, by the naive formula: log(1 / (1 + e^-40)).
    # At 53 bits 1 + e^-40 rounds to 1 and the answer comes out 0; the truth is -4.248e-18.
    def naive(prec):
        with mpmath.mp.workprec(prec):
            return [mpmath.log(1 / (1 + mpmath.exp(-40)))]

    assert round_mpf(F64, naive(53)[0]) == 0.0
    vals, settled = escalate(F64, naive, start=53)
    assert all(settled)
    with mpmath.mp.workdps(50):
        truth = -mpmath.log1p(mpmath.exp(-40))
    assert round_mpf(F64, vals[0]) == float(truth) == pytest.approx(-4.248354255291589e-18, rel=1e-15)


def test_escalation_reports_unsettled_instead_of_guessing():
    # a value that keeps moving with the precision never settles: flagged, not printed
    def moving(prec):
        return [mpmath.mpf(1) + mpmath.ldexp(1, -40) * (prec.bit_length() % 2)]

    _, settled = escalate(F64, moving, start=64, max_prec=1024)
    assert settled == [False]


def test_reference_spot_checks_against_independent_formulas():
    with mpmath.mp.workdps(60):
        v = exact_values([11.0, 11.0], 0, 200)
        assert round_mpf(F16, v["logsumexp"][0]) == 11.6953125
        assert mpmath.almosteq(v["logsumexp"][0], 11 + mpmath.log(2), 1e-50)
        v = exact_values([1000.0, 0.0], 1, 200)
        assert round_mpf(F32, v["log_softmax"][1]) == -1000.0
        assert round_mpf(F64, v["softmax"][1]) == float(mpmath.exp(-1000) / (1 + mpmath.exp(-1000)))
        assert round_mpf(F64, v["cross_entropy"][0]) == 1000.0
    ref = mp_reference(F16, np.array([[0.0, 0.0]]), np.array([0]))
    assert ref["softmax"].rounded.tolist() == [[0.5, 0.5]]
    assert ref["softmax"].dlo.tolist() == [[0.0, 0.0]]


@pytest.mark.parametrize("tier", range(len(FAST_TIERS)))
def test_fast_reference_agrees_with_mpmath_where_it_decides(tier):
    rng = np.random.default_rng(7)
    for name in ("float16", "bfloat16", "float32"):
        f = FORMATS[name]
        z = rng.standard_normal((40, 9)) * rng.uniform(0.1, 60, (40, 1))
        x = f.round(z + rng.uniform(-90, 90, (40, 1)))
        t = rng.integers(0, 9, 40)
        fast, exact = fast_reference(f, x, t, tier=tier), mp_reference(f, x, t)
        for fn in fast:
            d = fast[fn].decided
            assert d.mean() > 0.99, (name, fn, d.mean())
            assert np.array_equal(fast[fn].rounded[d], exact[fn].rounded[d])
            assert np.array_equal(fast[fn].ulp[d], exact[fn].ulp[d])
            a, b = fast[fn], exact[fn]
            if FAST_TIERS[tier] == QUAD:  # as tight as mpmath's point: the two enclosures meet
                assert np.all(a.dlo[d] <= b.dhi[d]) and np.all(b.dlo[d] <= a.dhi[d])
                assert np.all(a.qlo[d] <= b.qhi[d]) and np.all(b.qlo[d] <= a.qhi[d])
            else:
                assert np.all(a.dlo[d] <= b.dlo[d]) and np.all(b.dhi[d] <= a.dhi[d])


def _float64_rows(rng, kind: int, B: int, n: int) -> np.ndarray:
    """Rows that take the quad tier's rarer paths for a float64 target."""
    if kind == 0:
        x = rng.standard_normal((B, n)) * rng.uniform(0.01, 50, (B, 1))
    elif kind == 1:  # one dominant entry: softmax just below its strict bound 1, log_softmax near d
        x = rng.standard_normal((B, n))
        x[:, 0] += rng.uniform(30, 740, B)
    elif kind == 2:  # outputs below float64's range (done in quad, not in float64 pairs)
        x = rng.standard_normal((B, n)) * 400
    elif kind == 3:  # few distinct values
        x = rng.choice([0.0, 1.0, -2.5, 0.5], (B, n))
    elif kind == 4:  # large offsets
        x = rng.standard_normal((B, n)) * 3 + rng.uniform(-1e5, 1e5, (B, 1))
    elif kind == 5:  # entries a few ulp apart
        x = 1 + rng.integers(-3, 3, (B, n)) * 2.0**-52 + rng.uniform(-1, 1, (B, 1))
    else:  # exps about half float64's smallest subnormal (745.13 below the max) and huge finite masks
        x = rng.standard_normal((B, n))
        x[:, 1:] -= rng.choice([745.13, 744.4, 746.0, 1e9, 1e300, 2000.0], (B, n - 1))
        x[:, 1:] += rng.uniform(-0.05, 0.05, (B, n - 1))
    return F64.round(x)


def test_a_rows_range_proves_x_minus_max_exact_only_where_it_is():
    # fast_rows takes every x - m of a row as exact from the row's range alone (rows_exact): a
    # claim TwoSum must confirm for every element -- on rows of every format with zeros,
    # subnormals, the format's extremes and a given maximum outside the row (a long vector's), and
    # it must be made on the usual rows of logits (else the saving is lost), and refused where the
    # range is too wide for the working type (float64 values spanning more than 2^53 ulps)
    from numstab.reference.core import diff_exact, rows_exact

    rng = np.random.default_rng(5)
    claimed = 0
    for name, f in FORMATS.items():
        for wt in (np.float64, np.longdouble):
            for kind in range(6):
                z = rng.standard_normal((30, 17)) * 10.0 ** rng.uniform(-8, 6, (30, 1))
                if kind == 1:
                    z[:, :3] = 0.0
                if kind == 2:
                    z[:, 0] *= f.smallest_subnormal * 3
                if kind == 3:
                    z[:, 1] = f.max * rng.choice([-1, 1], 30)
                if kind == 4:
                    z = z * 10.0 ** rng.uniform(-30, 30, (30, 17))
                with np.errstate(all="ignore"):
                    x = f.round(np.clip(z, -f.max, f.max))
                m = x.max(axis=-1) if kind != 5 else f.round(rng.standard_normal(30) * 1e4)
                ok = rows_exact(f, x, m, wt)
                _, exact = diff_exact(x, m[:, None], wt)
                assert np.all(exact[ok]), (name, wt, kind)
                claimed += int(ok.sum())
    assert claimed > 1000
    x = F32.round(np.random.default_rng(1).normal(0, 3, (16, 32000)))
    assert rows_exact(F32, x, x.max(axis=-1), np.float64).all()  # logits: every row by its range
    wide = F64.round(np.array([[1.0, 2.0**-60, 3.0]]))  # x - m needs 62 bits: refused
    assert not rows_exact(F64, wide, wide.max(axis=-1), np.float64).any()
    assert not diff_exact(wide, wide.max(axis=-1)[:, None], np.float64)[1].all()
    assert rows_exact(None, wide, wide.max(axis=-1), np.float64) is None


def test_long_double_row_sums_split_at_small_terms_enclose_the_exact_sum():
    # the long double tier sums a long row's small terms (exp(d) < 2^-20) in float64 and only the
    # few large ones in long double (softmax._split_sum): on rows of logits its t must enclose the
    # exact sum (mpmath, 200 bits) within et, about as tightly as the whole long double sum; a row
    # whose sum lies mostly in small terms keeps the whole long double sum
    from numstab.reference import softmax as S

    if np.finfo(np.longdouble).nmant <= 52:
        pytest.skip("long double is float64 here")
    rng = np.random.default_rng(11)
    x = rng.standard_normal((6, 3000)) * rng.uniform(1, 6, (6, 1))
    for b in range(6):  # a few outliers, and terms near the split (2^-20 = exp(-13.86))
        x[b, rng.integers(0, 3000, 4)] = 25 + rng.uniform(-2, 2, 4)
        x[b, rng.integers(0, 3000, 50)] = 25 - 13.8629 + rng.uniform(-0.01, 0.01, 50)
    x = F32.round(x)
    m, k = x.max(axis=-1), x.argmax(axis=-1)
    d = x.astype(np.longdouble) - m[:, None].astype(np.longdouble)
    t, et = S._split_sum(F32, x, m, k, d, np.longdouble)
    whole = S.fast_rows(None, x, {}, np.longdouble)  # no format: the whole long double sum
    mpmath.mp.prec = 200
    for b in range(6):
        exact = mpmath.fsum(mpmath.exp(mpmath.mpf(float(v)) - mpmath.mpf(float(m[b])))
                            for j, v in enumerate(x[b]) if j != k[b])
        hi = mpmath.mpf(float(t[b])) + mpmath.mpf(float(t[b] - np.longdouble(float(t[b]))))
        assert abs(hi - exact) <= mpmath.mpf(float(et[b])), b
        assert float(et[b]) <= 1.3 * float(whole["et"][b])
    many = np.full((2, 3000), 25.0 - 15)  # exp(-15) = 3.1e-7 < 2^-20, 3,000 of them: 9e-4 > 2^-12
    many[:, 0] = 25.0
    flat = F32.round(rng.standard_normal((2, 3000)))  # no small term
    for z in (F32.round(many), flat):
        mz, kz = z.max(axis=-1), z.argmax(axis=-1)
        dz = z.astype(np.longdouble) - mz[:, None].astype(np.longdouble)
        assert S._split_sum(F32, z, mz, kz, dz, np.longdouble) is None
    assert S._split_sum(F32, x[:, :500], m, k, d[:, :500], np.longdouble) is None  # short rows


def test_step_up_and_down_are_nextafter_bit_for_bit():
    # the reference's outward steps (core.step_up / step_down) replace np.nextafter: the same
    # double for every bit pattern -- zeros of both signs, subnormals, the binade edges, max,
    # infinities and NaN -- and for a million random ones, in arrays of any layout and 0-d
    from numstab.reference.core import step_down, step_up

    tiny, big = 5e-324, np.finfo(np.float64).max
    edges = np.array([0.0, -0.0, tiny, -tiny, 2 * tiny, 2.0**-1022, -(2.0**-1022), 2.0**-1022 - tiny,
                      1.0, -1.0, 1 - 2.0**-53, 2.0, 0.5, big, -big, np.inf, -np.inf, np.nan, -np.nan])
    rng = np.random.default_rng(3)
    pats = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, 1_000_000, dtype=np.int64)
    for a in (edges, pats.view(np.float64), pats.view(np.float64).reshape(1000, 1000)[:, ::3],
              np.float64(-0.0), np.asarray(1.0)):
        for mine, to in ((step_up, np.inf), (step_down, -np.inf)):
            with np.errstate(all="ignore"):
                want = np.nextafter(a, to)
            got = mine(a)
            assert got.shape == np.shape(want)
            nan = np.isnan(want)
            assert np.array_equal(np.isnan(got), nan)
            assert np.array_equal(np.asarray(got)[~nan].view(np.int64), np.asarray(want)[~nan].view(np.int64))


@pytest.mark.parametrize("tier", [0, 1, 2])
@pytest.mark.parametrize("fmt_name", ["float32", "float64"])
def test_fast_elements_in_chunks_equal_one_pass(monkeypatch, tier, fmt_name):
    # the families' per-element bounds are computed a few thousand elements at a time
    # (core.by_chunks): every field of every element is the one a single pass gives, on every tier
    # (float64, long double, quad for float32; quad and beyond for float64), scaled or not
    import numstab.reference.core as core
    from numstab.reference import tiers

    fmt = FORMATS[fmt_name]
    if tier >= len(tiers(fmt)):
        pytest.skip("no such tier here")
    rng = np.random.default_rng(7 + tier)
    x = fmt.round(_float64_rows(rng, 0, 3, 50) * 3)
    x[1, :] += 20
    args = {"target": rng.integers(0, 50, 3)}
    for scaled in (False, True):
        if scaled:
            args["scale"] = np.full(3, 0.7)
        names = ["softmax", "log_softmax", "logsumexp", "cross_entropy"]
        whole = fast_reference(fmt, x, args, tier=tier, functions=names)
        monkeypatch.setattr(core, "ELEMENT_CHUNK", 7)  # 150 elements in 22 pieces, rows cut inside
        pieces = fast_reference(fmt, x, args, tier=tier, functions=names)
        monkeypatch.setattr(core, "ELEMENT_CHUNK", 1 << 15)
        for fn in names:
            for k in ("rounded", "ulp", "dlo", "dhi", "qlo", "qhi", "decided", "determined"):
                a, b = getattr(whole[fn], k), getattr(pieces[fn], k)
                assert a.shape == b.shape and np.array_equal(a, b, equal_nan=True), (fn, k, scaled)
        assert whole["softmax"].decided.sum() > 100


@pytest.mark.skipif(QUAD is None, reason="numpy-quaddtype not installed")
@pytest.mark.parametrize("scaled", [False, True])
def test_quad_tier_agrees_with_mpmath_for_float64(scaled):
    # the quad tier of a float64 target holds softmax and log_softmax bounds in float64
    # (core.Affine) and decides them in float64 pairs: where it decides, it agrees with mpmath
    rng = np.random.default_rng(23 + scaled)
    names = ["softmax", "log_softmax", "logsumexp", "cross_entropy"]
    decided = 0
    for trial in range(28):
        n = int(rng.choice([1, 2, 3, 5, 17]))
        x = _float64_rows(rng, trial % 7, 4, n)
        args = {"target": rng.integers(0, n, 4)}
        if scaled:
            args["scale"] = np.full(4, float(rng.choice([0.7, 1.3, 0.05, 3.1])))
        fast = fast_reference(F64, x, args, tier=0, functions=names)
        exact = mp_reference(F64, x, args, functions=names)
        for fn in names:
            a, b = fast[fn], exact[fn]
            d = a.decided
            decided += int(d.sum())
            assert np.array_equal(a.rounded[d], b.rounded[d]), (trial, fn)
            assert np.array_equal(a.ulp[d], b.ulp[d]), (trial, fn)
            assert np.all(a.dlo[d] <= b.dhi[d]) and np.all(b.dlo[d] <= a.dhi[d]), (trial, fn)
            assert np.all(a.qlo[d] <= b.qhi[d]) and np.all(b.qlo[d] <= a.qhi[d]), (trial, fn)
    assert decided > 800


@pytest.mark.skipif(QUAD is None, reason="numpy-quaddtype not installed")
def test_float64_pairs_decide_values_near_a_midpoint_rigorously():
    # values 2^-95 .. 2^-108 from the midpoint between 1 and 1 + 2^-52: a bound held in float64
    # (core.Affine, absolute or relative) must round each to its side, as quad ends do, where the
    # bound keeps the interval on that side, and leave it open where the interval holds the
    # midpoint (2^-90 holds them all; the midpoint itself is a tie no bound breaks)
    from numstab.reference.core import Affine, from_interval

    q = QUAD
    mid = np.array([1.0]).astype(q) + np.array([2.0**-53]).astype(q)
    deltas = [-(2.0**-95), -(2.0**-100), -(2.0**-108), 0.0, 2.0**-108, 2.0**-100, 2.0**-95]
    v = mid + np.array(deltas).astype(q)
    for e, opens in ((2.0**-115, [3]), (2.0**-90, range(7))):
        for err in (Affine(e, 0.0), Affine(0.0, e), np.full(7, e).astype(q)):
            r = from_interval(F64, v, err)
            assert [i for i in range(7) if not r.decided[i]] == list(opens), (e, err)
            for i in range(7):
                if r.decided[i]:  # (r - rounded) / ulp: 1/2 + delta 2^52, less 1 above the midpoint
                    assert r.rounded[i] == (1.0 if i < 3 else 1 + 2.0**-52)
                    true = Fraction(1, 2) + Fraction(deltas[i]) * 2**52 - (1 if i > 3 else 0)
                    assert r.dlo[i] <= true <= r.dhi[i] and r.dhi[i] - r.dlo[i] < 2.0**-40, (i, err)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64", "float8_e4m3fn",
                                   "float8_e5m2"])
def test_fast_path_and_mpmath_report_identical_figures(dtype):
    seed = {"float16": 11, "bfloat16": 12, "float32": 13, "float64": 14, "float8_e4m3fn": 15,
            "float8_e5m2": 16}[dtype]
    rng = np.random.default_rng(seed)
    lim = {"float16": 12, "bfloat16": 90, "float32": 90, "float64": 700, "float8_e4m3fn": 6,
           "float8_e5m2": 11}[dtype]
    offs = ",".join(f"{v:.3f}" for v in rng.uniform(-1.5 * lim, 1.5 * lim, 5))
    spreads = ",".join(f"{v:.3f}" for v in rng.uniform(0.01, lim / 3, 2))
    kw = dict(dtypes=[dtype], offsets=offs, spreads=spreads, sizes="2,5,33", trials=3, seed=seed)
    a = run_compare(**kw)
    b = run_compare(reference_mode="mpmath", **kw)
    assert [r.to_dict() for r in a.results] == [r.to_dict() for r in b.results]


def test_thresholds_exact_values():
    t16, t32 = thresholds(F16), thresholds(F32)
    assert t16["exp_overflow_x"].startswith("11.0901107185")
    assert t16["largest_finite_exp_input"] == 11.0859375
    assert t16["exp_underflow_x"].startswith("-17.3286795")
    assert round(float(t32["exp_overflow_x"]), 10) == 88.7228390819
    assert round(float(t32["exp_underflow_x"]), 9) == -103.972077084
    assert thresholds(F64)["exp_overflow_x"].startswith("709.78271289338")


def test_exact_value_beyond_float64_range_keeps_exact_figures():
    # cross-entropy of [1.5e308, -1.5e308] at target 1 is 3e308 (+ a hair): beyond float64's max
    x = np.array([[1.5e308, -1.5e308]])
    ref = mp_reference(F64, x, np.array([1]))["cross_entropy"]
    assert ref.rounded[0] == math.inf
    ulp, rel, status, _ = element_metrics(F64, "cross_entropy", np.array([math.inf, F64.max]),
                                          point_like(ref), 4.0)
    assert status[0] == OK and ulp[0] == 0.0  # inf is the correctly rounded answer
    want = (Fraction(3 * 10**308) - Fraction(F64.max)) / 2**972  # |y - r| / ulp(r), r ~ 3e308
    assert status[1] == INACCURATE and ulp[1] == pytest.approx(float(want), rel=5e-3)
    assert rel[1] == pytest.approx(float((Fraction(3 * 10**308) - Fraction(F64.max)) / (3 * 10**308)),
                                   rel=5e-3)


def point_like(ref):
    return RefData(np.repeat(ref.rounded, 2), np.repeat(ref.ulp, 2), np.repeat(ref.dlo, 2),
                   np.repeat(ref.dhi, 2), np.repeat(ref.qlo, 2), np.repeat(ref.qhi, 2),
                   np.repeat(ref.decided, 2), np.repeat(ref.determined, 2))


@pytest.mark.parametrize("dtype,row", [
    ("float32", [64.0, 2.0**-47]),  # x_1 - max = -(64 - 2^-47): log_softmax just above -64
    ("float32", [1.0, 2.0**-53, -300.0]),
    ("bfloat16", [-75.5, -29.375, -239.0, -82.0, -42.0, -33.75, 26.75, -6.90625, -55.75]),
    ("float16", [0.0, -40.0, -60000.0]),  # -40 - tiny: a midpoint neighbourhood in float16
    ("float16", [69.3125, 26.609375, -22.640625]),
])
def test_crafted_boundary_cases_agree_with_mpmath(dtype, row):
    """Exact values a hair away from a midpoint or a power of two, through every tier."""
    from numstab.engine import evaluate
    from numstab.functions import REGISTRY

    f = FORMATS[dtype]
    x = f.round(np.array([row]))
    from numstab.grids import batch_args

    impls = [i for fn in REGISTRY.values() for i in fn.values()]
    t = batch_args(f, x, [1])  # every function's argument (target 1, labels, cotangents, smoothing)
    fast, _, _ = evaluate(f, x, t, impls)
    exact, _, _ = evaluate(f, x, t, impls, mode="mpmath")
    for a, b in zip(fast, exact):
        assert np.array_equal(a.ulp, b.ulp, equal_nan=True), (a.impl.key, a.ulp, b.ulp)
        assert np.array_equal(a.rel, b.rel, equal_nan=True) and np.array_equal(a.status, b.status)
    for tier in range(len(FAST_TIERS)):
        ref = fast_reference(f, x, t, tier=tier)
        mp = mp_reference(f, x, t)
        for fn in ref:
            d = ref[fn].decided
            assert np.array_equal(ref[fn].rounded[d], mp[fn].rounded[d]), (tier, fn)
            assert np.array_equal(ref[fn].ulp[d], mp[fn].ulp[d]), (tier, fn)


def test_bump_moves_rows_of_several_tiers_with_their_own_targets():
    """Rows at different tiers climb in one bump, each with its own extra argument (target)."""
    from numstab.reference.escalation import RowEscalation

    f = FORMATS["float16"]
    x = f.round(np.array([[0.5, 2.0, -1.0], [3.0, 0.25, 1.5], [-2.0, 0.0, 4.0]]))
    t = np.array([2, 0, 1])
    esc = RowEscalation(f, x, t)
    if esc.mp < 2:
        pytest.skip("needs two fast tiers below mpmath")
    esc.tier[:] = [0, 1, 0]
    assert esc.bump({"cross_entropy": np.ones(3, dtype=bool)})
    # cross_entropy = logsumexp(x) - x[target], independently in mpmath
    for b in range(3):
        lse = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in x[b]))
        ce = lse - mpmath.mpf(float(x[b, t[b]]))
        assert esc.ref["cross_entropy"].rounded[b] == float(np.float16(float(ce)))


def test_bump_moves_elements_of_several_tiers_one_tier_each():
    """Elements at different tiers climb one tier each in one bump, each row with its own extra
    argument (target), and end with mpmath's values."""
    from numstab.reference.escalation import compute_reference

    f = FORMATS["float16"]
    x = f.round(np.array([[0.5, 2.0, -1.0], [3.0, 0.25, 1.5], [-2.0, 0.0, 4.0]]))
    t = np.array([2, 0, 1])
    ref, esc = compute_reference(f, x, t)
    esc.level["cross_entropy"][1] = 1  # as if row 1 had already gone up a tier
    assert esc.bump({fn: np.ones(lv.shape, dtype=bool) for fn, lv in esc.level.items()})
    assert esc.level["cross_entropy"].tolist() == [1, 2, 1]
    for b in range(3):  # cross_entropy = logsumexp(x) - x[target], independently in mpmath
        lse = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in x[b]))
        ce = lse - mpmath.mpf(float(x[b, t[b]]))
        assert ref["cross_entropy"].rounded[b] == float(np.float16(float(ce)))


def test_escalation_is_per_element_and_reports_what_mpmath_reports():
    """Language-model-like rows (N(0, 3), one outlier near +25) in float32: an element sent up
    a tier goes alone through every tier (its row stays), decided like mpmath at each; and the
    whole evaluation reports exactly what the all-mpmath run reports."""
    from numstab.engine import evaluate
    from numstab.functions import REGISTRY
    from numstab.reference import mp_reference
    from numstab.reference.escalation import compute_reference

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3000)) * 3
    x[:, 7] = 25.25
    x = F32.round(x)
    t = np.zeros(2, dtype=np.int64)
    ref, esc = compute_reference(F32, x, t, functions=["softmax"])
    mp = mp_reference(F32, x[:1], t[:1])["softmax"]
    first = ref["softmax"].dlo.copy()
    mask = np.zeros(x.shape, dtype=bool)
    mask[0, 5] = True
    for tier in range(1, esc.mp + 1):
        assert esc.bump({"softmax": mask})
        assert esc.level["softmax"][0, 5] == tier and (esc.level["softmax"] > 0).sum() == 1
        r = ref["softmax"]
        assert r.decided[0, 5] and r.rounded[0, 5] == mp.rounded[0, 5] and r.ulp[0, 5] == mp.ulp[0, 5]
        assert r.dlo[0, 5] <= mp.dhi[0, 5] and mp.dlo[0, 5] <= r.dhi[0, 5]
    assert not esc.bump({"softmax": mask})  # at mpmath: nowhere further
    others = ~mask
    np.testing.assert_array_equal(ref["softmax"].dlo[others], first[others])
    assert esc.stats()["mpmath_rows"] == 1 and esc.stats()["elements"][-1] == 1
    impls = [REGISTRY["softmax"]["stable"], REGISTRY["log_softmax"]["stable"]]
    fast, _, _ = evaluate(F32, x, t, impls)
    exact, _, esc_mp = evaluate(F32, x, t, impls, mode="mpmath")
    assert (esc_mp.level["softmax"] == esc_mp.mp).all()
    for a, b in zip(fast, exact):
        np.testing.assert_array_equal(a.ulp, b.ulp)
        np.testing.assert_array_equal(a.rel, b.rel)
        np.testing.assert_array_equal(a.status, b.status)


def test_backward_bounds_of_a_long_vector_grow_with_log_n_not_n():
    """The gradients' fast bounds sum by halving (error <= ceil(log2 n) u sum|a|): on 100,000
    float32 logits the first tier's enclosures of log_softmax_backward are at most 2e-6 ULP wide
    and decide every element (with n u they left 0.08% open, and each open element made mpmath
    sum the whole row); they contain mpmath's value."""
    from numstab.reference import backward as fam

    rng = np.random.default_rng(16)
    f = FORMATS["float32"]
    x = f.round(rng.normal(0, 3, (1, 100_000)))
    x[0, [5, 77, 9000]] = 25.0
    v = np.zeros_like(x)
    v[0, 77] = 1.0  # onehot at an argmax
    r = fam.fast_block(f, x.copy(), {"cotangent": v})["log_softmax_backward"]
    assert r.decided.all()
    assert np.max(r.dhi - r.dlo) < 2e-6  # (r - rounded) / ulp, both ends
    # against mpmath at 200 bits: g_i = v_i - s_i sum(v) = [i = 77] - s_i
    mpmath.mp.prec = 200
    xs = [mpmath.mpf(float(a)) for a in x[0]]
    m = max(xs)
    S = mpmath.fsum(mpmath.exp(a - m) for a in xs)
    for i in (0, 5, 77, 12345, 99_999):
        g = (1 if i == 77 else 0) - mpmath.exp(xs[i] - m) / S
        d = (g - mpmath.mpf(float(r.rounded[0, i]))) / mpmath.mpf(float(r.ulp[0, i]))
        assert r.dlo[0, i] <= d <= r.dhi[0, i], (i, d, r.dlo[0, i], r.dhi[0, i])


def test_float64_sigmoid_family_is_decided_by_quad_with_mpmath_figures():
    """float64 targets of the binary family: the quad tier computes in quad (it computed in long
    double, which cannot settle a float64 figure, so every element went to mpmath, ~4,000/s);
    the figures are those of --reference mpmath, element for element."""
    pytest.importorskip("numpy_quaddtype")
    from numstab.engine import evaluate
    from numstab.functions import REGISTRY, get
    from numstab.grids import load_args

    rng = np.random.default_rng(11)
    f = FORMATS["float64"]
    # |x| < 745 (values below float64's range are decided by mpmath: quad's bounds carry a 2^-1060
    # absolute slack into float64)
    x = f.round(np.clip(np.concatenate([rng.standard_normal((1, 400)) * 30,
                                        rng.standard_normal((1, 400)) * 200]), -740, 740))
    x[:, :4] = [0.0, -745.0, 40.0, -40.0]
    for fn, label in (("sigmoid", None), ("log_sigmoid", None), ("softplus", None),
                      ("binary_cross_entropy", "0.3"), ("binary_cross_entropy", "1")):
        args = load_args(f, x, get(fn), label, None, None)
        a, _, esc = evaluate(f, x, args, list(REGISTRY[fn].values()), mode="auto")
        b, _, _ = evaluate(f, x, args, list(REGISTRY[fn].values()), mode="mpmath")
        by_tier = esc.stats()["elements"]
        assert by_tier[0] >= 0.98 * x.size, (fn, by_tier)  # quad; the rest by mpmath
        for oa, ob in zip(a, b):
            assert np.array_equal(oa.ulp, ob.ulp, equal_nan=True), (fn, oa.impl.name)
            assert np.array_equal(oa.rel, ob.rel, equal_nan=True) and np.array_equal(oa.status, ob.status)


def test_float64_gradients_are_decided_by_quad_with_mpmath_figures():
    """float64 targets of the gradients: the quad tier computes in quad (in long double every
    element went to mpmath: 20,000 values took 4.5 s); figures those of --reference mpmath."""
    pytest.importorskip("numpy_quaddtype")
    from numstab.engine import evaluate
    from numstab.functions import REGISTRY, get
    from numstab.grids import load_args, make_extras

    rng = np.random.default_rng(21)
    f = FORMATS["float64"]
    x = f.round(rng.normal(0, 3, (3, 700)))
    x[:, :3] = 25.0
    x[2, 9] = -np.inf  # a mask: the cotangent's rest counts in sum(v)
    for fn, target, cot in (("softmax_backward", None, "normal"), ("log_softmax_backward", None, "normal"),
                            ("log_softmax_backward", None, "onehot"), ("cross_entropy_backward", "4", None)):
        args = load_args(f, x, get(fn), target, None, make_extras(None, cot, 0.1))
        a, _, esc = evaluate(f, x, args, list(REGISTRY[fn].values()), mode="auto")
        b, _, _ = evaluate(f, x, args, list(REGISTRY[fn].values()), mode="mpmath")
        by_tier = esc.stats()["elements"]
        assert by_tier[0] >= 0.6 * x.size, (fn, by_tier)  # the masked row goes through the mask layer
        for oa, ob in zip(a, b):
            assert np.array_equal(oa.ulp, ob.ulp, equal_nan=True), (fn, oa.impl.name)
            assert np.array_equal(oa.rel, ob.rel, equal_nan=True) and np.array_equal(oa.status, ob.status)


def test_float64_smoothed_cross_entropy_is_decided_by_quad_with_mpmath_figures():
    pytest.importorskip("numpy_quaddtype")
    from numstab.engine import evaluate
    from numstab.functions import REGISTRY, get
    from numstab.grids import load_args, make_extras

    rng = np.random.default_rng(5)
    f = FORMATS["float64"]
    x = f.round(rng.normal(0, 3, (6, 500)) + rng.uniform(-50, 50, (6, 1)))
    for eps in (0.1, 0.37, 1.0):
        args = load_args(f, x, get("smoothed_cross_entropy"), "3", None, make_extras(None, None, eps))
        a, _, esc = evaluate(f, x, args, list(REGISTRY["smoothed_cross_entropy"].values()), mode="auto")
        b, _, _ = evaluate(f, x, args, list(REGISTRY["smoothed_cross_entropy"].values()), mode="mpmath")
        assert esc.stats()["elements"] == [6, 0]  # every loss by quad, none by a row sum in mpmath
        for oa, ob in zip(a, b):
            assert np.array_equal(oa.ulp, ob.ulp, equal_nan=True) and np.array_equal(oa.status, ob.status)


def test_a_tiny_error_at_the_rounded_value_is_settled_without_mpmath():
    """An output equal to the rounded exact value whose error is far below 2^-50 ULP -- the loss
    log1p(exp(x)) of x = -1136 (about 1e-494, rounded to 0 in float64) output as 0, or
    40 + 4.2e-18 output as 40 -- is settled by the quad tier's bounds: the figures' absolute
    2^-50 widening (for k - d when they nearly cancel) sent 54,726 of torch's 154,836 float64
    binary cross-entropy losses on the grid to mpmath. Figures: an independent mpmath
    computation, and the same as an mpmath-only reference."""
    pytest.importorskip("numpy_quaddtype")
    from numstab.engine import evaluate
    from numstab.functions import Impl
    from numstab.metrics import quantize

    f = FORMATS["float64"]
    x = np.array([[-1136.002858528091, -994.046315528091, -40.0, 40.0, 0.5]])
    z = np.zeros_like(x)

    def naive(xs, acc, args):
        with np.errstate(under="ignore"):
            return np.log1p(np.exp(xs))  # 0, 0, 4.248e-18, 40.0 (exact 40 + 4.2e-18), 0.974

    impl = Impl("binary_cross_entropy", "naive", naive, "log1p(exp(x))")
    (o,), _, esc = evaluate(f, x, {"label": z}, [impl], mode="auto")
    assert esc.stats()["elements"][-1] == 0  # nothing reached mpmath
    (m,), _, _ = evaluate(f, x, {"label": z}, [impl], mode="mpmath")
    for k in ("ulp", "rel", "status"):
        assert np.array_equal(getattr(o, k), getattr(m, k))
    with mpmath.workprec(400):
        for j, xv in enumerate(x[0]):
            exact = mpmath.log1p(mpmath.exp(mpmath.mpf(xv)))
            r = float(exact)  # rounded to nearest: 0.0 for the two losses below 2^-1075
            ulp = mpmath.mpf(2) ** (-1074 if r == 0 else mpmath.floor(mpmath.log(abs(r), 2)) - 52)
            assert o.ulp[0, j] == quantize(float(abs(mpmath.mpf(float(o.y[0, j])) - exact) / ulp)), xv
    assert o.ulp[0].tolist() == [0.0, 0.0, 0.15, 0.001, 0.05]
    assert o.rel[0, 0] == o.rel[0, 1] == 1.0  # 0 for a nonzero loss: every digit lost


def test_the_binary_family_encloses_only_the_open_elements():
    """reference.sigmoid.enclose with ``wanted`` encloses those elements of those functions alone
    (an open element of a long row used to take every element of the row, four functions each),
    with the same intervals as the whole row's."""
    from numstab.reference import sigmoid as S

    rng = np.random.default_rng(3)
    x = FORMATS["float32"].round(rng.normal(0, 30, 200))
    z = rng.random(200)
    full = S.enclose(x, {"label": z}, 80, 24)
    wanted = {"binary_cross_entropy": [3, 150, 199], "sigmoid": [0], "softplus": [7, 8]}
    part = S.enclose(x, {"label": z}, 80, 24, wanted=wanted)
    assert set(part) == set(wanted)
    for fn, js in wanted.items():
        assert part[fn] == [full[fn][j] for j in js]


def test_the_decimal_cell_of_an_exact_string_refuses_special_values_instead_of_looping():
    """25 correct digits of 0.1 (its binary value), and 0, +inf and NaN refused: their mantissa is 0,
    and the search for the decade would never end (it hung on an infinite input)."""
    from numstab.reference import _int_decimal_cell

    k, e = _int_decimal_cell(mpmath.mpf(0.1)._mpf_, 25)
    assert (k, e) == (1000000000000000055511151, -1)
    for v in ("0", "inf", "nan"):
        with pytest.raises(ValueError):
            _int_decimal_cell(mpmath.mpf(v)._mpf_, 25)


def test_quad_values_beyond_float64s_range_convert_to_mpf_exactly():
    """The quad tier's bounds hold quad's tiny (2^-16382, far below float64's range): converted
    exactly (they were refused, which sent a long vector's cotangent sum P to the exact pass --
    one mpmath exp per distinct value, 35 s for 4 M float32 values). Each value is built by exact
    operations (a float64 with a second part 2^-60 below it, times powers of two) and compared with
    the same value made in mpmath's integers."""
    from numstab.reference.core import quad
    from numstab.reference.softmax import _exact_mpf

    q = quad()
    if q is None:
        pytest.skip("numpy-quaddtype not installed")
    one = np.ones(1).astype(q)[0]
    rng = np.random.default_rng(7)
    for k in (-16300, -5000, -1100, -1000, -60, 0, 700, 1100, 9000, 16000):
        a, b = float(rng.uniform(1, 2)), float(rng.uniform(1, 2))
        v = one * a + one * b * 2.0**-60  # 113 bits at most: exact
        step = 2.0**900 if k > 0 else 2.0**-900
        for _ in range(abs(k) // 900):
            v = v * step
        v = v * 2.0 ** (k - (abs(k) // 900) * 900 * (1 if k > 0 else -1))
        got = _exact_mpf(v)
        with mpmath.workprec(400):  # (exact: 2 x 53 bits, powers of two)
            expected = (mpmath.mpf(a) + mpmath.mpf(b) * mpmath.mpf(2) ** -60) * mpmath.mpf(2) ** k
            assert got is not None and mpmath.mpf(got) == expected, k
            assert mpmath.mpf(got) != mpmath.mpf(a) * mpmath.mpf(2) ** k  # (the second part is there)
    assert _exact_mpf(one * 0.0) == mpmath.mpf(0)._mpf_
    assert _exact_mpf(one * np.inf) is None and _exact_mpf(one * np.nan) is None


def test_the_exact_sum_over_a_long_vectors_distinct_values_keeps_no_exps():
    """softmax.exp_sum over distinct values (a long vector's t for mpmath: float64's exact strings)
    kept every value's exps in a memo, about 900 bytes each (3.5 GB for 4 M values); without a cache
    it keeps none -- the same bounds as with one, which enclose mpmath's sum at 200 bits."""
    import tracemalloc

    from numstab.reference.softmax import exp_sum

    vals = np.unique(np.random.default_rng(3).normal(0, 3, 100_000))
    counts = np.ones(vals.size, dtype=np.int64)
    m = float(vals[-1])
    counts[-1] = 0  # (the maximum's own term is outside t)
    tracemalloc.start()
    lo, hi = exp_sum(vals, counts, m, 100)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20e6, peak  # (the values themselves: 0.8 MB as a list; the memo took ~90 MB)
    assert (lo, hi) == exp_sum(vals, counts, m, 100, cache={})
    with mpmath.workprec(200):
        exact = mpmath.fsum(mpmath.exp(mpmath.mpf(float(v)) - mpmath.mpf(m)) for v in vals[:-1])
        # (each of 10^5 terms and sums rounded outward at 110 bits: within 10^5 2^-110 < 2^-90)
        lo, hi = mpmath.mpf(lo), mpmath.mpf(hi)
        assert lo <= exact <= hi and hi - lo < exact * 2.0**-90
