"""softmax_backward and log_softmax_backward of a vector longer than a block, in pieces
(numstab.vector): each piece's cotangent is the whole row's (the seeded normal stream, one-hot at the
vector's argmax, given values), the cotangent's sums over the vector are bounded at every tier
(reference.backward.piece_rows) and, for mpmath, computed exactly (WholeCotangent); checked here
against independent Fraction and mpmath computations, and the pieces against the whole vector."""

import json
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numstab import masks, vector
from numstab.formats import get_format
from numstab.reference import backward
from tests.test_long_reductions import run  # the CLI at a block size, in pieces or whole


def _results(out: str) -> list:
    return [{k: r.get(k) for k in ("impl", "dtype", "counts", "causes", "max_ulp", "median_ulp", "max_rel",
                                   "flags", "worst")} for r in json.loads(out)["results"]]


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), max_size=60),
       st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), max_size=60))
@settings(max_examples=200, deadline=None)
def test_exact_total_is_the_exact_sum(a, b):
    man, ex = backward.exact_total([np.array(a), np.array(b, dtype=np.float64)])
    assert Fraction(man) * Fraction(2) ** ex == sum((Fraction(v) for v in a + b), Fraction(0))


def _vector(fmt, n, seed, groups=False):
    rng = np.random.default_rng(seed)
    raw = rng.normal(0, 4, (1, n))
    raw[0, 100] = 30.0
    if groups:
        raw = rng.choice([0.5, 1.0, 2.0, -3.0], (1, n))
    return raw, fmt.round(raw)


def _whole(fmt, raw, v, block=256):
    n = raw.shape[-1]
    cot = vector.Cotangent("values", tuple(v[0]))
    vec = vector.LongVector(lambda c0, c1: raw[:, c0:c1], ("gradients", fmt.name, n, float(v.sum())), n,
                            "sequential", "format", block, None, None, cot)
    vector.forget()
    return vector.Piece(vec, 0, fmt).whole({})


@pytest.mark.parametrize("batch", [None, 500])
def test_the_exact_sums_of_the_vector_hold_the_mpmath_ones(monkeypatch, batch):
    """P = sum_{j != k} v_j exp(x_j - m) and t from the groups of equal x (precisions beyond the quad
    tier), V exactly: against 1000-bit mpmath sums over every element -- in one batch of groups, or
    in 6 (``batch``: backward.GROUP_BATCH distinct values a pass)."""
    from numstab.reference import backward

    if batch is not None:
        monkeypatch.setattr(backward, "GROUP_BATCH", batch)
    fmt = get_format("float32")
    raw, x = _vector(fmt, 3000, 3)
    x[0, 200:230] = x[0, 5]  # ties: groups of more than one entry
    raw[0, 200:230] = raw[0, 5]
    v = fmt.round(np.random.default_rng(4).normal(0, 1, (1, 3000)))
    cot = _whole(fmt, raw, v).cot
    k = int(np.argmax(x[0]))
    m = mpmath.mpf(float(x[0, k]))
    with mpmath.workprec(1000):
        e = [mpmath.exp(mpmath.mpf(float(a)) - m) for a in x[0]]
        P = mpmath.fsum(mpmath.mpf(float(v[0, j])) * e[j] for j in range(3000) if j != k)
        t = mpmath.fsum(e[j] for j in range(3000) if j != k)
        A = mpmath.fsum(abs(mpmath.mpf(float(v[0, j]))) * e[j] for j in range(3000) if j != k)  # P cancels
        V = mpmath.fsum(mpmath.mpf(float(a)) for a in v[0])
        assert mpmath.mpf(cot.V.numerator) / cot.V.denominator == V
        for prec in (60, 200, 400):
            lo, hi = (mpmath.mpf(b) for b in cot.p(prec))
            assert lo <= P <= hi and (hi - lo) <= A * mpmath.mpf(2) ** (8 - prec), prec
        tl, th = (mpmath.mpf(b) for b in cot.t_exact[400])
        assert tl <= t <= th and th - tl <= t * mpmath.mpf(2) ** -390


def test_exact_zeros_of_the_gradient_from_the_vectors_groups():
    """M_i = sum_j (v_i - v_j) e_j is 0 exactly where every group of equal x has the mean cotangent
    v_i (Lindemann-Weierstrass): decided from the exact group sums, as the whole vector decides it."""
    fmt = get_format("float16")
    raw, x = _vector(fmt, 1200, 5, groups=True)
    rng = np.random.default_rng(6)
    v = np.full((1, 1200), 0.25)
    for val in np.unique(x[0]):  # pairs 0.25 +- d (exact in float16) within each group: its mean stays 0.25
        idx = np.nonzero(x[0] == val)[0][:200]
        d = rng.integers(1, 60, idx.size // 2) / 16
        v[0, idx[0:2 * d.size:2]], v[0, idx[1:2 * d.size:2]] = 0.25 + d, 0.25 - d
    assert np.array_equal(fmt.round(v), v) and (v == 0.25).sum() > 100
    cot = _whole(fmt, raw, v).cot
    assert cot.m_is_zero(0.25) and not cot.m_is_zero(float(v[0, np.nonzero(v[0] != 0.25)[0][0]]))
    v2 = v.copy()
    j = int(np.nonzero(v2[0] != 0.25)[0][0])
    v2[0, j] = 0.25  # that group's mean moves off 0.25 (and the vector's mean with it)
    assert not _whole(fmt, raw, v2).cot.m_is_zero(0.25)


def test_exact_zeros_of_a_masked_vectors_gradient_read_the_entries_left():
    """With masked entries (s = 0 there) M_i sums over the entries left only: their count and
    cotangent sum decide the test n v_i = V, whatever the masked entries' cotangents (V over every
    entry would say no)."""
    fmt = get_format("float16")
    raw, x = _vector(fmt, 1200, 5, groups=True)
    raw[0, 300:500] = -np.inf
    v = np.full((1, 1200), 0.25)
    v[0, 300:500] = 3.0  # the masked entries' cotangents: not in M_i
    cot = vector.Cotangent("values", tuple(v[0]))
    facts = masks.VectorFacts.of([(0, raw[0])])
    vec = vector.LongVector(lambda c0, c1: raw[:, c0:c1], ("masked-gradients", 1200), 1200, "sequential",
                            "format", 256, facts, None, cot)
    vector.forget()
    whole = vector.Piece(vec, 0, fmt).whole({})
    assert whole.cot.kept == (1000, 250) and whole.cot.V == 850
    assert whole.cot.m_is_zero(0.25) and not whole.cot.m_is_zero(3.0)


@pytest.fixture(scope="module")
def logits(tmp_path_factory):
    rng = np.random.default_rng(24)
    x = rng.normal(0, 3, (2, 1500)).astype(np.float32)
    x[0, [37, 901, 1402]] = [24.75, 25.5, 25.5]
    x[1, 200:260] = -30.0
    path = tmp_path_factory.mktemp("grad") / "x.npy"
    np.save(path, x)
    return path, x


@pytest.mark.parametrize("fn", ["softmax_backward", "log_softmax_backward"])
def test_given_cotangents_in_pieces_are_the_whole_vectors(capsys, monkeypatch, tmp_path, fn):
    """A cotangent given as values (--cotangent v1,...,vn): a constant one (softmax_backward is 0
    exactly), one whose groups' means are equal (exact zeros), one summing to 0 (log_softmax_backward
    = v exactly): the pieces' figures are the whole vector's."""
    fmt = get_format("float16")
    raw, x = _vector(fmt, 1200, 5, groups=True)
    np.save(tmp_path / "g.npy", raw.astype(np.float32))
    rng = np.random.default_rng(7)
    h = fmt.round(rng.normal(0, 1, 600))
    for v in (np.full(1200, 0.75), np.concatenate([h, -h]), fmt.round(rng.normal(0, 1, 1200))):
        argv = ["inspect", fn, "--input", tmp_path / "g.npy", "--dtype", "float16", "--dtype", "float32",
                "--cotangent", ",".join(repr(float(a)) for a in v), "--format", "json", "--top", "4",
                "--jobs", "1"]
        code, out, err, used = run(capsys, monkeypatch, *argv, block=256)
        assert code == 0 and len(set(used)) > 3, err
        code, out2, err, used2 = run(capsys, monkeypatch, *argv, block=256, pieces=False)
        assert code == 0 and not used2, err
        assert _results(out) == _results(out2)
        if fn == "softmax_backward" and v[0] == v[1]:
            assert all(w["exact"] == "0.0" for r in json.loads(out)["results"] for w in r["worst"])


def test_exact_strings_of_gradient_pieces_are_mpmath_digits(capsys, monkeypatch, logits, tmp_path):
    """The --top entries' exact values of softmax_backward and log_softmax_backward from a piece with
    the vector's context, against 300-bit mpmath over the whole vector and the row's cotangent drawn
    independently here (the seeded stream of the batch, default_rng([0, n, 13]), row after row)."""
    path, x = logits
    f16 = get_format("float16")
    draws = f16.round(np.random.default_rng([0, 1500, 13]).standard_normal((2, 1500)))
    xf = f16.round(x.astype(np.float64))
    for fn in ("softmax_backward", "log_softmax_backward"):
        argv = ["inspect", fn, "--impl", "naive", "--input", path, "--dtype", "float16", "--compute",
                "format", "--cotangent", "normal", "--format", "json", "--top", "6", "--jobs", "1"]
        code, out, err, used = run(capsys, monkeypatch, *argv, block=128)
        assert code == 0 and used, err
        worst = json.loads(out)["results"][0]["worst"]
        assert len(worst) == 2  # the worst element of each row
        with mpmath.workprec(300):
            for w in worst:
                r, j = w["index"]
                xs = [mpmath.mpf(float(a)) for a in xf[r]]
                vs = [mpmath.mpf(float(a)) for a in draws[r]]
                lse = mpmath.log(mpmath.fsum(mpmath.exp(a) for a in xs))
                s = [mpmath.exp(a - lse) for a in xs]
                if fn == "softmax_backward":
                    val = s[j] * (vs[j] - mpmath.fsum(a * b for a, b in zip(vs, s)))
                else:
                    val = vs[j] - s[j] * mpmath.fsum(vs)
                half = mpmath.mpf(10) ** (int(mpmath.floor(mpmath.log10(abs(val)))) - 24) / 2
                assert abs(mpmath.mpf(w["exact"]) - val) <= half * (1 + mpmath.mpf(2) ** -200), (w, val)


@pytest.mark.parametrize("mode", ["auto", "mpmath"])
def test_a_single_entry_lefts_log_softmax_gradient_is_the_rational_v_k_minus_the_sum(mode):
    """One entry left of a long masked vector: s_k = 1 there, so log_softmax_backward = v_k - sum v
    (every cotangent counts, the masked ones too) -- a rational, here exactly -74.75 in float16:
    the pieces' reference gives that point (an output equal to it has 0 ULP), as the whole vector's
    mask layer does; every masked entry's value is its own cotangent."""
    from numstab.engine import evaluate, select_impls
    from numstab.reference.escalation import compute_reference

    fmt = get_format("float16")
    n = 300
    raw = np.full((1, n), -np.inf)
    raw[0, 123] = 2.5
    v = np.full((1, n), 0.25)
    v[0, 123] = 0.5  # v_k - V = 0.5 - (0.5 + 299 / 4) = -74.75
    cot = vector.Cotangent("values", tuple(v[0]))
    vec = vector.LongVector(lambda c0, c1: raw[:, c0:c1], ("single-entry", n, mode), n, "sequential",
                            "format", 64, masks.VectorFacts.of([(0, raw[0])]), None, cot)
    vector.forget()
    impls = [i for i in select_impls(["log_softmax_backward"]) if i.name == "stable"]
    whole, _, _ = evaluate(fmt, raw, {"cotangent": v}, impls, "sequential", compute="format", mode=mode)
    for j, (c0, c1) in enumerate(vec.bounds):
        piece = vector.Piece(vec, j, fmt)
        ref, _ = compute_reference(fmt, raw[:, c0:c1], {"cotangent": v[:, c0:c1]}, mode,
                                   functions=["log_softmax_backward"], piece=piece)
        r = ref["log_softmax_backward"]
        expected = np.where(np.arange(c0, c1) == 123, -74.75, 0.25)
        point = (r.dlo[0] == 0) & (r.dhi[0] == 0)  # (mpmath: the rational itself; a fast tier: a bound)
        assert np.array_equal(r.rounded[0], expected) and (point.all() if mode == "mpmath" else point.any())
        o = evaluate(fmt, raw[:, c0:c1], {"cotangent": v[:, c0:c1]}, impls, "sequential", compute="format",
                     mode=mode, piece=piece)[0][0]
        assert np.array_equal(o.ulp, whole[0].ulp[:, c0:c1])
        assert np.array_equal(o.status, whole[0].status[:, c0:c1])
