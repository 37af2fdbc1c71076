"""One vector longer than a block (issue 16, item 3): summarized like a batch, its --top K worst
elements named with exact strings from the row's shared sum (no mpmath re-sum of the row), the
figures those of the element-by-element run; the exact strings checked against mpmath here."""

import json

import mpmath
import numpy as np
import pytest

from numstab import reference
from numstab.cli import main
from numstab.formats import get_format


def run(capsys, monkeypatch, *argv, block=None):
    if block is None:
        monkeypatch.delenv("NUMSTAB_BLOCK", raising=False)
    else:
        monkeypatch.setenv("NUMSTAB_BLOCK", str(block))
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def vector(tmp_path_factory):
    """600 float32 logits N(0, 3) with outliers near +25 (naive exp overflows in float16 steps)."""
    rng = np.random.default_rng(16)
    x = rng.normal(0, 3, 600).astype(np.float32)
    x[[37, 301, 555]] = [24.75, 25.5, 25.25]
    path = tmp_path_factory.mktemp("long") / "long.npy"
    np.save(path, x)
    return path, x


def _digits(s: str, v) -> None:
    """s is v (an mpf at 300 bits) rounded to 25 significant digits."""
    e = int(mpmath.floor(mpmath.log10(abs(v))))
    assert abs(mpmath.mpf(s) - v) <= mpmath.mpf(10) ** (e - 24) / 2 * (1 + mpmath.mpf(2) ** -200), (s, v)
    assert len(s.lstrip("-0.").replace(".", "").split("e")[0]) <= 25


def _rank(status):
    return ["ok", "undetermined", "inaccurate", "underflow", "overflow", "nan"].index(status)


@pytest.mark.parametrize("impl", ["naive", "stable"])
def test_long_vector_summary_is_the_element_by_element_run(capsys, monkeypatch, vector, impl):
    path, x = vector
    argv = ["inspect", "softmax", "--impl", impl, "--input", path, "--dtype", "float16", "--compute",
            "format", "--format", "json", "--top", "4"]
    code, out, err = run(capsys, monkeypatch, *argv, block=100)  # 600 > 100: summarized
    assert code == 0, err
    summ = json.loads(out)["results"][0]
    code, out, err = run(capsys, monkeypatch, *argv)  # one block: element by element
    assert code == 0, err
    each = json.loads(out)["results"][0]
    assert summ["vectors"] == 1 and summ["n"] == 600 and "element_status" in each
    counts = {s: each["element_status"].count(s) for s in summ["counts"]}
    assert summ["counts"] == counts and summ["status"] == each["status"]
    assert summ["cause"] == each["cause"] and summ["causes"] == each["causes"]
    ulp = [-1.0 if u is None else float(u) for u in each["ulp_error"]]  # "inf" for a NaN output
    assert float(summ["max_ulp"]) == max(ulp)
    # the K worst elements: status, then ULP error, then position
    order = sorted(range(600), key=lambda j: (-_rank(each["element_status"][j]), -ulp[j], j))[:4]
    assert [w["element"] for w in summ["worst"]] == order
    for w in summ["worst"]:
        j = w["element"]
        assert w["status"] == each["element_status"][j] and w["cause"] == each["element_cause"][j]
        assert w["exact"] == each["reference"][j]
    if impl == "naive":  # exp(x) overflows float16 at the outliers: NaN there
        assert summ["status"] == "nan" and summ["worst"][0]["element"] in (37, 301, 555)
    # the exact values, independently: softmax of the float16-rounded vector at 300 bits
    xf = get_format("float16").round(x.astype(np.float64))
    with mpmath.workprec(300):
        e = [mpmath.exp(mpmath.mpf(float(v))) for v in xf]
        s = mpmath.fsum(e)
        for w in summ["worst"]:
            _digits(w["exact"], e[w["element"]] / s)


@pytest.mark.parametrize("function", ["softmax", "log_softmax", "logsumexp", "cross_entropy"])
@pytest.mark.parametrize("temperature", [None, 0.7])
def test_shared_row_sum_strings_are_mpmath_strings(monkeypatch, function, temperature):
    """exact strings of a long row's elements from its quad row sum (reference.softmax.row_sum)
    equal those of mpmath's own sum and the digits of an independent mpmath computation."""
    pytest.importorskip("numpy_quaddtype")
    from numstab.reference import exact_strings
    from numstab.reference import softmax as fam

    fmt = get_format("float32")
    rng = np.random.default_rng(3)
    x = fmt.round(rng.normal(0, 3, 5000))
    x[[10, 4000]] = [25.0, 24.5]
    args = {"target": 7}
    t_f = None
    if temperature is not None:
        t_f = float(fmt.round(np.float64(temperature)))
        args["scale"] = t_f
    if function == "cross_entropy" and temperature is not None:
        pytest.skip("cross_entropy takes no temperature")
    js = [0, 10, 7, 4999]
    monkeypatch.setattr(reference, "QUAD_STRINGS_MAX", 0)  # the row_sum path, not the quad strings
    monkeypatch.setattr(fam, "ROW_SUM_MIN", 64)
    fast = exact_strings(fmt, x, args, 25, functions=[function], elements=js)[function]
    monkeypatch.setattr(fam, "ROW_SUM_MIN", 1 << 40)
    slow = exact_strings(fmt, x, args, 25, functions=[function], elements=js)[function]
    assert fast == slow
    with mpmath.workprec(300):
        T = mpmath.mpf(1) if t_f is None else mpmath.mpf(t_f)
        z = [mpmath.mpf(float(v)) / T for v in x]
        lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in z))
        want = {"softmax": [mpmath.exp(z[j] - lse) for j in js],
                "log_softmax": [z[j] - lse for j in js],
                "logsumexp": [lse], "cross_entropy": [lse - z[7]]}[function]
        got = [fast[j] for j in js] if function in ("softmax", "log_softmax") else [fast[0]]
        for s, v in zip(got, want):
            _digits(s, v)


def test_rows_longer_than_the_block_equal_one_pass(capsys, monkeypatch, tmp_path):
    """A batch whose rows are longer than the block (one row a chunk): the one-pass figures."""
    rng = np.random.default_rng(5)
    x = rng.normal(0, 3, (3, 500)).astype(np.float32)
    x[1, 17] = 25.0
    np.save(tmp_path / "b.npy", x)
    argv = ["inspect", "log_softmax", "--input", tmp_path / "b.npy", "--dtype", "float16", "--compute",
            "format", "--format", "json", "--top", "3", "--jobs", "1"]
    code, whole, err = run(capsys, monkeypatch, *argv)
    code2, blocked, err2 = run(capsys, monkeypatch, *argv, block=64)
    assert code == code2 == 0, err + err2
    assert json.loads(blocked) == json.loads(whole)


def test_progress_reaches_the_end_for_one_vector(vector):
    from numstab.commands.inspect import run_inspect

    path, _ = vector
    calls = []
    run_inspect("softmax", input_file=str(path), dtypes=("float16", "bfloat16"), impls=["stable"],
                progress=lambda d, t: calls.append((d, t)))
    assert calls[0] == (0, 1200) and calls[-1] == (1200, 1200)


def test_every_element_of_a_long_vector_from_the_shared_sum(monkeypatch):
    """The element-by-element strings (elements=None) of a long vector from its quad row sum equal
    mpmath's own, element for element (float16: many equal values, the exps shared)."""
    pytest.importorskip("numpy_quaddtype")
    from numstab.reference import exact_strings
    from numstab.reference import softmax as fam

    fmt = get_format("float16")
    x = fmt.round(np.random.default_rng(9).normal(0, 3, 3000))
    x[5] = 25.0
    monkeypatch.setattr(reference, "QUAD_STRINGS_MAX", 0)  # the row_sum path, not the quad strings
    monkeypatch.setattr(fam, "ROW_SUM_MIN", 64)
    fast = exact_strings(fmt, x, {}, 25, functions=["log_softmax"])["log_softmax"]
    monkeypatch.setattr(fam, "ROW_SUM_MIN", 1 << 40)
    slow = exact_strings(fmt, x, {}, 25, functions=["log_softmax"])["log_softmax"]
    assert fast == slow and None not in fast
    with mpmath.workprec(300):
        lse = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in x))
        for j in (0, 5, 2999):
            _digits(fast[j], mpmath.mpf(float(x[j])) - lse)


def test_integer_decimal_cell_is_the_rational_one():
    """reference._int_decimal_cell (plain integers) against the cell computed here with Fractions:
    v rounded to d significant digits, ties to even, on random values, ties and powers of ten."""
    import random
    from fractions import Fraction

    from mpmath.libmp import from_man_exp

    from numstab.reference import _int_decimal_cell

    def cell(v: Fraction, d: int):
        e = 0
        while Fraction(10) ** (e + 1) <= v:
            e += 1
        while Fraction(10) ** e > v:
            e -= 1
        q = v / Fraction(10) ** (e - d + 1)
        k = int(q)
        r = q - k
        if r > Fraction(1, 2) or (r == Fraction(1, 2) and k % 2):
            k += 1
        return (10 ** (d - 1), e + 1) if k == 10**d else (k, e)

    rnd = random.Random(4)
    cases = [(rnd.getrandbits(rnd.randint(1, 150)) | 1, rnd.randint(-300, 200)) for _ in range(3000)]
    cases += [(v, 0) for k in range(1, 40) for v in (10**k, 10**k - 1, 5 * 10**k, 10**k + 5, 125 * 10**k)]
    for man, exp in cases:
        v = Fraction(man) * Fraction(2) ** exp
        for d in (1, 2, 3, 25):
            assert _int_decimal_cell(from_man_exp(man, exp), d) == cell(v, d), (man, exp, d)


@pytest.mark.parametrize("block", [None, 256])
def test_progress_moves_inside_one_long_evaluation(vector, monkeypatch, block):
    # one vector is one evaluation (element by element, or summarized as one chunk when longer
    # than a block): the bar advances through its stages instead of jumping from 0 to the end
    from numstab.commands.inspect import run_inspect

    if block is None:
        monkeypatch.delenv("NUMSTAB_BLOCK", raising=False)
    else:
        monkeypatch.setenv("NUMSTAB_BLOCK", str(block))
    path, _ = vector
    calls = []
    run_inspect("softmax", input_file=str(path), dtypes=("float16",), impls=["naive", "stable"],
                progress=lambda d, t: calls.append((d, t)))
    done = [d for d, _ in calls]
    assert calls[0] == (0, 600) and calls[-1] == (600, 600)
    inside = sorted({d for d in done if 0 < d < 600})
    assert len(inside) >= 4, calls  # kernels, reference, figures, causes of each implementation
    assert done == sorted(done)  # never backwards


# ------------------------------------------------ exact strings from the quad tier's intervals
_KINDS = {"softmax": None, "log_softmax": None, "logsumexp": None, "cross_entropy": "target",
          "sigmoid": None, "log_sigmoid": None, "softplus": None, "binary_cross_entropy": "label",
          "softmax_backward": "cotangent", "log_softmax_backward": "cotangent",
          "cross_entropy_backward": "target", "smoothed_cross_entropy": "smoothing"}


def _args(kind, fmt, rng, n):
    if kind is None:
        return {}
    if kind == "target":
        return {"target": 7}
    if kind == "label":
        return {"label": fmt.round(rng.random(n))}
    if kind == "cotangent":
        return {"cotangent": fmt.round(rng.normal(0, 1, n))}
    return {"smoothing": np.rec.fromarrays([np.array([7]), np.array([fmt.round(np.float64(0.1))[()]])],
                                           names="target,epsilon")[0]}


def _independent(function, x, a, j):
    """Element j of ``function`` at x (args a), from mpmath at 400 bits, written out here."""
    with mpmath.workprec(400):
        z = [mpmath.mpf(float(v)) for v in x]
        n = len(z)
        lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in z))
        s = [mpmath.exp(v - lse) for v in z]
        xj = z[j]
        if function in ("sigmoid", "log_sigmoid", "softplus", "binary_cross_entropy"):
            sp = mpmath.log1p(mpmath.exp(xj)) if xj < 0 else xj + mpmath.log1p(mpmath.exp(-xj))
            return {"sigmoid": 1 / (1 + mpmath.exp(-xj)), "log_sigmoid": -(sp - xj), "softplus": sp,
                    "binary_cross_entropy": sp - xj * mpmath.mpf(float(a.get("label", [0] * n)[j]))}[function]
        if function == "softmax":
            return s[j]
        if function == "log_softmax":
            return xj - lse
        if function in ("logsumexp",):
            return lse
        if function == "cross_entropy":
            return lse - z[7]
        if function == "cross_entropy_backward":
            return s[j] - (1 if j == 7 else 0)
        if function == "smoothed_cross_entropy":
            eps = mpmath.mpf(float(a["smoothing"]["epsilon"]))
            return (1 - eps) * (lse - z[7]) + eps / n * mpmath.fsum(lse - v for v in z)
        v = [mpmath.mpf(float(c)) for c in a["cotangent"]]
        if function == "softmax_backward":
            return s[j] * (v[j] - mpmath.fsum(si * vi for si, vi in zip(s, v)))
        return v[j] - s[j] * mpmath.fsum(v)


@pytest.mark.parametrize("function", list(_KINDS))
@pytest.mark.parametrize("fmt_name", ["float16", "float32", "float64"])
def test_quad_interval_strings_are_mpmath_strings(function, fmt_name):
    """The exact strings of a long vector from the quad tier's intervals (reference._quad_strings:
    ~5 us an element against mpmath's 30-180 us) are mpmath's, element for element, and the digits
    of an independent mpmath computation at 400 bits."""
    pytest.importorskip("numpy_quaddtype")
    fmt = get_format(fmt_name)
    rng = np.random.default_rng(len(function) + fmt.p)
    n = 200
    x = fmt.round(rng.normal(0, 3, n))
    x[[3, 150]] = [25.0, 24.5]
    x[[20, 21]] = fmt.round(np.array([-60.0, 40.0]))
    a = _args(_KINDS[function], fmt, rng, n)
    fast = reference._quad_strings(fmt, x, a, 25, [function], None)[function]
    slow = reference._mp_strings(fmt, x, a, 25, [function], None)[function]
    assert fast == slow and None not in fast
    for j in ([0] if len(fast) == 1 else [0, 3, 20, 21, 150, n - 1]):
        with mpmath.workprec(400):
            _digits(fast[j], _independent(function, x, a, j))


def test_quad_strings_at_a_decimal_tie():
    """A value 10^-339 beyond a tie of its 25th digit (log_softmax_backward = v_j - s_j V with
    v_j = -0.23774702847003936767578125, a float32 value, and s_j ~ 7.5e-339): quad holds v_j
    itself, so its interval straddles the tie and the element goes to mpmath, which rounds away
    from the tie (a negation in Decimal's default context once rounded it onto the tie: ...812)."""
    pytest.importorskip("numpy_quaddtype")
    fmt = get_format("float32")
    rng = np.random.default_rng(0)
    x = fmt.round(rng.normal(0, 300, 100))
    x[0], x[10] = 480.0, -300.0
    v = fmt.round(rng.normal(0, 1, 100))
    v[10] = -0.23774702847003936767578125
    v[11] = v[11] + 12.0 - float(np.sum(v))  # V = sum(v) > 0
    got = reference.exact_strings(fmt, x, {"cotangent": v}, 25, ["log_softmax_backward"], [10])
    s = got["log_softmax_backward"][10]
    with mpmath.workprec(1400):
        z = [mpmath.mpf(float(c)) for c in x]
        lse = mpmath.log(mpmath.fsum(mpmath.exp(c) for c in z))
        V = mpmath.fsum(mpmath.mpf(float(c)) for c in v)
        exact = mpmath.mpf(float(v[10])) - mpmath.exp(z[10] - lse) * V
    assert exact < mpmath.mpf(float(v[10])) and float(np.sum(v.astype(np.float64))) > 0
    assert s == "-0.2377470284700393676757813"


@pytest.mark.parametrize("function", ["softmax_backward", "log_softmax_backward", "cross_entropy_backward"])
def test_gradient_enclosures_of_wanted_elements(function):
    """backward.enclose with ``wanted``: the enclosures of those elements only, the very ones of
    the whole vector's (mpmath escalations of a long gradient no longer enclose every element of
    every gradient for the few left undecided)."""
    from numstab.reference import backward

    rng = np.random.default_rng(2)
    x = get_format("float32").round(rng.normal(0, 3, 40))
    a = {"cotangent": get_format("float32").round(rng.normal(0, 1, 40)), "target": 5}
    whole = backward.enclose(x, a, 120)[function]
    js = [39, 5, 0]
    part = backward.enclose(x, a, 120, wanted={function: js})
    assert list(part) == [function] and part[function] == [whole[j] for j in js]
