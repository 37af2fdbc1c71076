"""Exact figures ("True verdicts" items 1-4 and --verify), each against an independent oracle.

The oracle here does not use numstab's reference: it evaluates the plain formulas with
mpmath at 2000 bits and quantizes the error with Python fractions, following the README
definitions (ulp_F(r) = 2^(max(floor(log2|r|), emin) - p + 1); 3 decimals below 1 ULP,
else 3 significant digits, ties to even).
"""

import json
import math
from decimal import Decimal
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from numstab.cli import main
from numstab.commands.inspect import run_inspect
from numstab.engine import evaluate
from numstab.errors import ReferenceMismatch
from numstab.formats import FORMATS
from numstab.functions import REGISTRY, Impl
from numstab.grids import batch_args
from numstab.reference import FAST_TIERS, enclose, exact_strings, family
from numstab.reference.escalation import compute_reference

F32, F64, BF16 = FORMATS["float32"], FORMATS["float64"], FORMATS["bfloat16"]
ORACLE_BITS = 2000


# ------------------------------------------------------------------ oracle
def oracle_value(function: str, x, j: int = 0, target: int = 0) -> Fraction:
    """The exact value (to 2000 bits) by the textbook formulas, as a rational."""
    with mpmath.workprec(ORACLE_BITS):
        xs = [mpmath.mpf(float(v)) for v in x]
        m = max(xs)
        s = mpmath.fsum(mpmath.exp(v - m) for v in xs)
        lse = m + mpmath.log(s)
        v = {"softmax": lambda: mpmath.exp(xs[j] - m) / s, "log_softmax": lambda: xs[j] - lse,
             "logsumexp": lambda: lse, "cross_entropy": lambda: lse - xs[target]}[function]()
        man, exp = v.man_exp
        return Fraction(abs(int(man))) * Fraction(2) ** int(exp) * (-1 if v < 0 else 1)


def _floor_log2(r: Fraction) -> int:
    e = r.numerator.bit_length() - r.denominator.bit_length()
    while Fraction(2) ** e > r:
        e -= 1
    while Fraction(2) ** (e + 1) <= r:
        e += 1
    return e


def oracle_ulp(fmt, r: Fraction) -> Fraction:
    if r == 0:
        return Fraction(2) ** (fmt.emin - fmt.p + 1)
    return Fraction(2) ** (max(_floor_log2(abs(r)), fmt.emin) - fmt.p + 1)


def quantize_exact(v: Fraction) -> Fraction:
    """3 decimals below 1, else 3 significant digits; ties to even (Python's round)."""
    if v < 1:
        return Fraction(round(v * 1000), 1000)
    e = 0
    while Fraction(10) ** (e + 1) <= v:
        e += 1
    step = Fraction(10) ** (e - 2)
    return round(v / step) * step


def oracle_ulp_figure(fmt, function, x, y: float, j=0, target=0) -> Fraction:
    r = oracle_value(function, x, j, target)
    return quantize_exact(abs(Fraction(y) - r) / oracle_ulp(fmt, r))


def as_text(q: Fraction) -> str:
    """3 significant digits as the JSON writes a figure beyond float64's range."""
    return f"{Decimal(q.numerator) / Decimal(q.denominator):.3g}"


def inspect(fmt_name, function, values, impl, target=None):
    (one,) = run_inspect(function, values=[repr(float(v)) for v in values], dtypes=(fmt_name,),
                         compute="format",
                         impls=[impl], target=target)["results"]
    return one


# ----------------------------------------------------- item 1: ulp binade
@pytest.mark.parametrize("dtype,impl,values,elem,want", [
    ("float32", "lse", [18.089799880981445] * 8, 0, 4.0),  # y = 1/8 + 2^-24, r = 1/8 exactly
    ("float32", "naive", [-4.5] * 8, 0, 1.0),
    ("float64", "naive", [-9.0] * 8, 0, 1.0),
    ("bfloat16", "lse", [0.0] * 15 + [-1e-39], 15, 2.0),  # r just below 1/16: the smaller ulp
])
def test_ulp_is_taken_in_the_binade_of_the_exact_value(dtype, impl, values, elem, want):
    fmt = FORMATS[dtype]
    d = inspect(dtype, "softmax", values, impl)
    x = d["inputs"]
    for j, (y, u) in enumerate(zip(d["outputs"], d["ulp_error"])):
        assert u == float(oracle_ulp_figure(fmt, "softmax", x, y, j)), (j, y, u)
    assert d["ulp_error"][elem] == want
    assert d["element_status"][elem] == "ok"


def test_cli_json_reports_four_ulp_at_one_eighth(capsys):
    code = main(["inspect", "softmax", "--dtype", "float32", "--impl", "lse", "--format", "json", "--"]
                + ["18.089799880981445"] * 8)
    (out,) = json.loads(capsys.readouterr().out)["results"]
    assert code == 0 and out["ulp_error"] == [4.0] * 8 and out["status"] == "ok"
    assert out["reference"] == ["0.125"] * 8


def test_all_equal_power_of_two_vectors_match_the_oracle():
    rng = np.random.default_rng(3)
    impls = list(REGISTRY["softmax"].values())
    for n in (2, 4, 8, 16, 32):
        x = F32.round(np.repeat(rng.uniform(-80, 80, (6, 1)), n, axis=1))
        outs, _, _ = evaluate(F32, x, np.zeros(6, dtype=int), impls)
        for o in outs:
            for b in range(6):
                for j in (0, n - 1):
                    want = oracle_ulp_figure(F32, "softmax", x[b], o.y[b, j], j)
                    assert o.ulp[b, j] == float(want), (o.impl.name, x[b, 0], n, o.y[b, j])


# -------------------------------------------------- item 2: printed digits
def test_exact_digits_of_an_astronomically_small_probability():
    x = BF16.round(np.array([1e38, 0.25]))
    got = exact_strings(BF16, x, 0)["softmax"]
    with mpmath.workprec(600):
        d = mpmath.mpf(float(x[1])) - mpmath.mpf(float(x[0]))
        want = mpmath.nstr(mpmath.exp(d) / (1 + mpmath.exp(d)), 25)
    assert want == "5.602349390537557732129067e-43295728782053088240689489947452709058"
    assert got == ["1.0", want]
    d = inspect("bfloat16", "softmax", [1e38, 0.25], "stable")
    assert d["reference"] == ["1.0", want]
    assert d["element_status"] == ["ok", "ok"] and d["ulp_error"] == [0.0, 0.0]


# ------------------------------------------ item 3: quantization boundaries
def _fixed(function, value):
    """A user implementation that returns one chosen value (a crafted output)."""
    return Impl(function, "fixed", lambda x, acc: np.full(x.shape[:-1], value, dtype=x.dtype), "test")


@pytest.mark.parametrize("steps,want", [(1015, 1010), (-1005, 1010), (-1015, 1020), (1005, 1000)])
@pytest.mark.parametrize("mode", ["auto", "mpmath"])
def test_figure_a_hair_from_a_quantization_step(steps, want, mode):
    # logsumexp([1.5, -998.5]) = 1.5 + log1p(e^-1000): 5e-435 above 1.5, so an output k ulps
    # from 1.5 has the exact error |k| -+ 4e-428 ULP: a float64 error rounds it onto the
    # step (x.5 of the last digit) and ties-to-even then picks 1020 for 1014.999... ULP.
    u = 2.0**-23
    y = 1.5 + steps * u
    x = F32.round(np.array([[1.5, -998.5]]))
    outs, _, _ = evaluate(F32, x, np.zeros(1, dtype=int), [_fixed("logsumexp", y)], mode=mode)
    fig = oracle_ulp_figure(F32, "logsumexp", x[0], y)
    assert fig == want
    assert outs[0].ulp[0] == want
    assert outs[0].status[0] != 0  # inaccurate at tolerance 4


def test_figure_from_a_registered_kernel_on_a_crafted_vector():
    # cross_entropy of [0, -1000] in float32 at target 1 is 1000 + log1p(e^-1000): every kernel's
    # answer is compared with the oracle figure (the error is an integer plus a 5e-435 hair)
    x = F32.round(np.array([[0.0, -1000.0]]))
    impls = list(REGISTRY["cross_entropy"].values())
    outs, _, _ = evaluate(F32, x, np.ones(1, dtype=int), impls)
    for o in outs:
        if np.isfinite(o.y[0]):
            assert o.ulp[0] == float(oracle_ulp_figure(F32, "cross_entropy", x[0], o.y[0], target=1))


# ------------------------------------- item 4: figures beyond float64's range
def test_finite_error_beyond_float64_is_never_inf(capsys):
    argv = ["inspect", "cross_entropy", "--dtype", "float64", "--impl", "clipped", "--target", "0"]
    assert main(argv + ["--format", "json", "--", "0", "-1000"]) == 0
    (d,) = json.loads(capsys.readouterr().out)["results"]
    y = d["outputs"][0]
    assert math.isfinite(y) and y == pytest.approx(1e-7, rel=1e-6)
    want = oracle_ulp_figure(F64, "cross_entropy", [0.0, -1000.0], y, target=0)
    assert want > Fraction(2) ** 1050 and as_text(want) == "2.02e+316"
    assert d["ulp_error"] == [as_text(want)] and d["status"] == "inaccurate"
    assert main(argv + ["--", "0", "-1000"]) == 0
    table = capsys.readouterr().out
    assert "2.02e+316" in table and "inf" not in table.split("IEEE")[0].split("exact")[1]


def test_compare_cell_keeps_a_finite_maximum_beyond_float64(capsys):
    assert main(["compare", "--dtype", "float64", "--function", "cross_entropy", "--impl", "clipped",
                 "--offsets", "0", "--spreads", "600", "--sizes", "2", "--format", "json",
                 "--jobs", "1"]) == 0
    cell = json.loads(capsys.readouterr().out)["results"][0]
    assert cell["max_ulp"] != "inf"


# --------------------------------------------------------------- --verify
def test_verify_catches_a_wrong_ulp():
    f = FORMATS["float16"]
    x = f.round(np.array([[0.0, 1.0, 2.0]]))
    t = np.zeros(1, dtype=int)
    ref, tier = compute_reference(f, x, t)
    ref["softmax"].ulp[0, 1] *= 2  # the right rounded value, the ulp of the binade above
    with pytest.raises(ReferenceMismatch, match="ulp"):
        evaluate(f, x, t, [REGISTRY["softmax"]["stable"]], ref=(ref, tier), verify=1)


def test_verify_catches_a_wrong_figure():
    x = F32.round(np.array([[0.5, 0.25, -3.0]]))
    t = np.zeros(1, dtype=int)
    ref, tier = compute_reference(F32, x, t)
    ref["logsumexp"].dlo[0] += 3  # the ULP figure of every output moves by 3
    ref["logsumexp"].dhi[0] += 3
    with pytest.raises(ReferenceMismatch):
        evaluate(F32, x, t, [REGISTRY["logsumexp"]["naive"]], ref=(ref, tier), verify=1)


def test_verify_passes_on_crafted_cases():
    for fmt, row in ((F32, [18.089799880981445] * 8), (BF16, [1e38, 0.25]), (F64, [0.0, -1000.0])):
        x = fmt.round(np.array([row]))
        impls = [i for fn in REGISTRY.values() for i in fn.values()]
        evaluate(fmt, x, batch_args(fmt, x), impls, verify=1)


# ------------------------------------------------------ enclosures are rigorous
def test_enclosures_hold_the_oracle_value():
    rng = np.random.default_rng(5)
    for fmt in (BF16, F32, F64):
        for _ in range(8):
            n = int(rng.integers(1, 7))
            x = fmt.round(rng.standard_normal(n) * rng.uniform(0.1, 300) + rng.uniform(-50, 50))
            t = int(rng.integers(0, n))
            vals = enclose(x, t, 80, fmt.p, [family("softmax")])  # the oracle's four functions
            for f, items in vals.items():
                for j, (lo, hi, _, _) in enumerate(items):
                    r = oracle_value(f, x, j, t)
                    a, b = (Fraction(int(v[1])) * Fraction(2) ** int(v[2]) * (-1 if v[0] else 1)
                            for v in (lo, hi))
                    assert a <= r <= b, (fmt.name, list(x), f, j)


def test_reference_tiers_agree():
    # the fast tiers and the rigorous one give the same decided values on all-equal vectors
    x = F32.round(np.array([[18.089799880981445] * 8, [-4.5] * 8, [3.0] * 8]))
    t = np.zeros(3, dtype=int)
    a, _ = compute_reference(F32, x, t)
    b, _ = compute_reference(F32, x, t, "mpmath")
    for f in a:
        assert np.array_equal(a[f].rounded, b[f].rounded) and np.array_equal(a[f].ulp, b[f].ulp)


@pytest.mark.parametrize("tier", range(len(FAST_TIERS)))
def test_fast_tiers_leave_an_interval_touching_a_power_of_two_undecided(tier):
    from numstab.reference.core import from_interval as _from_interval

    wt = FAST_TIERS[tier].type
    v = np.array([wt(0.125), wt(0.125) + wt(2.0**-40)], dtype=FAST_TIERS[tier])
    # [1/8 - 2^-60, 1/8 + 2^-60] holds values of two binades; [1/8 + 2^-40 -+ 2^-60] one
    r = _from_interval(F32, v, np.full(2, 2.0**-60, dtype=FAST_TIERS[tier]))
    assert r.decided.tolist() == [False, True]
    assert r.ulp[1] == 2.0**-26
    # only a strict bound makes the one-sided neighbourhood of 1/8 decidable
    r = _from_interval(F32, v[:1], np.full(1, 2.0**-60, dtype=FAST_TIERS[tier]), upper=wt(0.125))
    assert r.decided.tolist() == [True] and r.ulp[0] == 2.0**-27 and r.rounded[0] == 0.125


def test_exact_strings_of_chosen_elements_match_the_whole_vector():
    # --top shows one element's exact value: computed alone, it is the same string, the rest None
    x = F32.round(np.array([1.5, -2.0, 0.25, 40.0, -1e4]))
    whole = exact_strings(F32, x, 0)
    one = exact_strings(F32, x, 0, functions=["softmax", "logsumexp"], elements=[1, 4])
    assert one["softmax"] == [None, whole["softmax"][1], None, None, whole["softmax"][4]]
    assert one["logsumexp"] == whole["logsumexp"] and set(one) == {"softmax", "logsumexp"}
    with mpmath.workdps(40):  # independently: softmax_1 = e^-2 / sum e^x_j
        v = mpmath.exp(-2) / mpmath.fsum(mpmath.exp(mpmath.mpf(float(t))) for t in x)
    assert one["softmax"][1][:20] == mpmath.nstr(v, 25)[:20]


def test_rational_exact_value_on_a_quantization_tie_is_decided_whatever_else_runs():
    """Five equal float8_e4m3fn inputs: softmax is exactly 1/5, stable's y = 0.203125 has ULP error
    exactly 0.2 (ulp 2^-6) and relative error exactly 2^-6 = 0.015625, a tie of the 3-significant-
    digit quantization (ties to even: 0.0156). No enclosure of 1/5 decides a tie; the exact rational
    does -- with or without naive's NaN in the same batch (it once turned the others undetermined)."""
    fmt = FORMATS["float8_e4m3fn"]
    x = np.full((1, 5), 5.0)
    y = Fraction(13, 64)  # 0.203125
    assert abs(y - Fraction(1, 5)) / Fraction(1, 64) == Fraction(1, 5)
    assert abs(y - Fraction(1, 5)) / Fraction(1, 5) == Fraction(1, 64)
    for names in (["stable"], ["naive", "stable"], ["naive", "stable", "lse", "online"]):
        impls = [REGISTRY["softmax"][n] for n in names]
        outs, ref, _ = evaluate(fmt, x, np.zeros(1, dtype=np.int64), impls)
        o = outs[names.index("stable")]
        assert float(o.y[0, 0]) == 0.203125
        assert ref["softmax"].determined.all(), names
        np.testing.assert_array_equal(o.ulp, np.full((1, 5), 0.2))
        np.testing.assert_array_equal(o.rel, np.full((1, 5), 0.0156))
        assert (o.status == 0).all(), names


def test_relative_figure_beyond_every_decimal_exponent_is_printed_with_its_digits():
    """cross_entropy in float64 of [1e308, -1e308], target 0: exact log1p(exp(-2e308)), about
    10^-8.7e307; clipped's output ~1e-7 has a relative error of about 10^8.7e307 -- beyond float64
    and beyond Decimal's largest exponent (10^18). It once crashed numstab (internal error)."""
    from numstab.results import jnum

    fmt = FORMATS["float64"]
    x = np.array([[1e308, -1e308]])
    outs, _, _ = evaluate(fmt, x, np.zeros(1, dtype=np.int64), [REGISTRY["cross_entropy"]["clipped"]])
    o = outs[0]
    y = float(o.y[0])
    with mpmath.workdps(700):
        r = mpmath.log1p(mpmath.exp(mpmath.mpf(-1e308) - mpmath.mpf(1e308)))
        lg = mpmath.log10(abs(mpmath.mpf(y) - r)) - mpmath.log10(r)
        e = int(mpmath.floor(lg))
        k = int(mpmath.nint(mpmath.power(10, lg - e + 2)))
    want = f"{str(k)[0]}.{str(k)[1:].rstrip('0')}e+{e}".replace(".e", "e")
    assert jnum(o.figure("rel", (0,))) == want
    assert e > 10**307


def test_rational_gradients_are_settled():
    """Gradients that are rational are decided exactly, not left undetermined: with sum(v) = 0,
    log_softmax_backward = v whatever x (bfloat16 [1, 2, 3], v = [1, -1, 0]: exactly 1 and -1,
    powers of two whose binade no enclosure could pick); with equal x, softmax_backward =
    (v_i - mean v) / n (2/9 and -1/9 for v = [1, 0, 0], n = 3) and cross_entropy_backward =
    1/n - onehot (1/3, -2/3), with their ULP errors computed here from the fractions."""
    from numstab.functions import get

    def run(function, dtype, x, **args):
        fmt = FORMATS[dtype]
        rec = get(function)
        impls = list(REGISTRY[function].values())
        xs = np.array([x], dtype=np.float64)
        outs, ref, _ = evaluate(fmt, xs, {k: np.array([v]) for k, v in args.items()}, impls)
        assert ref[function].determined.all(), function
        return fmt, outs, rec

    fmt, outs, _ = run("log_softmax_backward", "bfloat16", [1.0, 2.0, 3.0], cotangent=[1.0, -1.0, 0.0])
    for o in outs:
        assert (o.status[0, :2] != 1).all()  # none undetermined (1 = undetermined in STATUSES)
    fmt, outs, _ = run("softmax_backward", "float16", [2.0, 2.0, 2.0], cotangent=[1.0, 0.0, 0.0])
    exact = [Fraction(2, 9), Fraction(-1, 9), Fraction(-1, 9)]
    for o in outs:
        for i, r in enumerate(exact):
            e = math.floor(math.log2(abs(r)))
            u = abs(Fraction(float(o.y[0, i])) - r) / Fraction(2) ** (e - 10)
            assert float(o.ulp[0, i]) == (round(u * 1000) / 1000 if u < 1 else float(f"{float(u):.3g}"))
    fmt, outs, _ = run("cross_entropy_backward", "float16", [2.0, 2.0, 2.0], target=1)
    for o in outs:
        r = Fraction(-2, 3)
        u = abs(Fraction(float(o.y[0, 1])) - r) / Fraction(2) ** (-1 - 10)
        assert float(o.ulp[0, 1]) == (round(u * 1000) / 1000 if u < 1 else float(f"{float(u):.3g}"))


def test_figure_on_a_quantization_tie_next_to_a_strict_bound_is_decided():
    # log_softmax of [-6, -65504] in float16 at element 1 is r = -65498 - log1p(exp(-65498)):
    # below the dyadic -65498 by about 2^-94494, which no working precision separates from it.
    # The output -65504 is 6 - 2^-94494 away, ulp 32: 0.1875 - tiny, whose
    # 3-decimal figure is 0.187 (0.1875 itself would round half-even to 0.188). It used to be
    # "undetermined" (the masked compare cell --mask min, offset -4.436, n = 2).

    from numstab.engine import evaluate
    from numstab.formats import FORMATS
    from numstab.functions import REGISTRY

    f16 = FORMATS["float16"]
    outs, ref, _ = evaluate(f16, np.array([[-6.0, -65504.0]]), np.zeros(1, dtype=int),
                            [REGISTRY["log_softmax"]["stable"]])
    assert ref["log_softmax"].determined.all()
    assert outs[0].figure("ulp", (0, 1)) == 0.187


def test_quantized_figures_do_not_depend_on_their_neighbours():
    # quantize and quantize_rel take a whole array in one pass (3 decimals and 3 significant
    # digits side by side, no element selection): each figure is the one it gets alone, and the
    # exact quantization (Fractions) wherever the value is not within 1e-6 of a rounding tie
    from numstab.metrics import quantize, quantize_rel

    rng = np.random.default_rng(11)
    v = np.concatenate([np.exp(rng.uniform(-12, 40, 3000)), rng.uniform(0, 2, 2000),
                        [0.0, 0.9994, 0.99951, 1.0, 99.94, 99.951, 999.4, 1e25, 3.3e30, np.inf, np.nan]])
    rng.shuffle(v)
    f32 = FORMATS["float32"]
    whole, rel = quantize(v), quantize_rel(v, f32)
    alone = np.array([quantize(v[i:i + 1])[0] for i in range(v.size)])
    rel_alone = np.array([quantize_rel(v[i:i + 1], f32)[0] for i in range(v.size)])
    assert np.array_equal(whole, alone, equal_nan=True) and np.array_equal(rel, rel_alone, equal_nan=True)
    checked = 0
    for a, q in zip(v, whole):
        if not np.isfinite(a) or a == 0:
            continue
        e = 0 if a >= 1 else -1
        while a >= 10.0 ** (e + 1):
            e += 1
        scaled = a * 1000 if a < 1 else a / 10.0 ** (e - 2)
        if abs(scaled - np.floor(scaled) - 0.5) < 1e-6:
            continue
        assert q == float(quantize_exact(Fraction(float(a)))), a
        checked += 1
    assert checked > 4900


def test_a_bounds_two_figures_are_compared_as_quantize_compares_them():
    # element_metrics settles an element when both ends of its bound quantize alike; the pair
    # quantizers take both ends to hi's scale: they must give quantize's figure for hi and its
    # verdict on q(lo) == q(hi) -- on ends across a decade edge (9.9996 and 10.004 share 10.0),
    # a hair either side of every power of ten and rounding tie, around the relative figures'
    # 0 floor (eps/1024), and on chunks outside the fast path (NaN, inf, figures of 100 and more)
    from numstab.metrics import quantize, quantize_pair, quantize_rel, quantize_rel_pair

    rng = np.random.default_rng(12)
    his = [np.exp(rng.uniform(-50, 4.6, 20000)), rng.uniform(0, 2, 5000), rng.uniform(0, 100, 5000),
           np.exp(rng.uniform(4.6, 55, 5000))]  # figures of 100 and more: the other scale, v / 10^(e-2)
    for k in range(-22, 24):
        p = 10.0**k
        for t in (p, p * 1.0005, p * 0.9995, p * 0.99995, p * 1.00005):  # ties and edges too
            his.append(np.nextafter(t, np.inf) * (1 + np.arange(-40, 41) * 2.0**-52))
    hi = np.abs(np.concatenate(his))
    hi = hi[hi < 1e24]
    assert (hi >= 100).sum() > 5000
    widths = [0.0, 2.0**-50, 1e-12, 1e-6, 1e-4, 1e-3, 0.01, 0.5]
    for f in (FORMATS["float16"], F32, F64, FORMATS["float8_e5m2"]):
        floor = f.eps / 1024
        near_floor = floor * (1 + np.arange(-40, 41) * 2.0**-52)
        for w in widths:
            h = np.concatenate([hi, near_floor, [0.0, floor]])
            lo = np.maximum(h * (1 - w) - w * 1e-3, 0.0)
            q, same = quantize_pair(lo, h)
            assert q.tobytes() == quantize(h).tobytes()
            assert np.array_equal(same, quantize(lo) == quantize(h))
            q, same = quantize_rel_pair(lo, h, f)
            assert q.tobytes() == quantize_rel(h, f).tobytes()
            assert np.array_equal(same, quantize_rel(lo, f) == quantize_rel(h, f))
        # settled across a decade edge (below and above 100), and the general path (NaN, inf, a
        # figure's decade above 24)
        q, same = quantize_pair(np.array([9.9996, 9.96, 999.6]), np.array([10.004, 10.04, 1000.4]))
        assert q.tolist() == [10.0, 10.0, 1000.0] and same.tolist() == [True, False, True]
        lo = np.array([1.0, np.nan, 150.0, 0.5, np.inf, 3.14159e30])
        h = np.array([1.0004, np.nan, 150.4, 0.5, np.inf, 3.14161e30])
        q, same = quantize_pair(lo, h)
        assert np.array_equal(q, quantize(h), equal_nan=True)
        assert same.tolist() == [True, False, True, True, True, True]
        q, same = quantize_rel_pair(lo, h, f)
        assert np.array_equal(q, quantize_rel(h, f), equal_nan=True)
        assert np.array_equal(same, quantize_rel(lo, f) == quantize_rel(h, f))
