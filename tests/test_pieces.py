"""A long vector's kernel traced a piece at a time (numstab.pieces) computes the bits of the trace of
the whole vector: outputs, roots, error components, flags and the kinds of events, for every
built-in of the softmax family under every accumulation model, both precision models and every
format -- with overflows, flushes, NaN and absorption in the vectors."""

import numpy as np
import pytest

from numstab.formats import get_format
from numstab.functions import REGISTRY, as_args
from numstab.pieces import NotPiecewise, PieceTracer, Plan, learn, partition
from numstab.steps import CATEGORIES, Tracer

FAMILY = ("softmax", "log_softmax", "logsumexp", "cross_entropy", "smoothed_cross_entropy",
          "cross_entropy_backward")


def _same(a, b) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


def _whole(impl, fmt, xc, acc, arg, compute, attribute):
    tr = Tracer(fmt, 1, attribute=attribute)
    with np.errstate(all="ignore"):
        return impl.run(xc, acc, arg, tr, compute), tr


def _pieces(impl, fmt, xc, acc, arg, compute, attribute, block):
    plan = Plan.for_vector(fmt, xc.shape[-1], acc, block, attribute)

    def run(tr):
        with np.errstate(all="ignore"):
            return impl.run(tr.piece(xc), acc, arg, tr, compute)

    learn(plan, run)
    trs = [PieceTracer(plan, j) for j in range(len(plan.bounds))]
    return plan, [run(tr) for tr in trs], trs


def _err(out, c):
    e = out.err.c[c]
    return np.zeros(out.shape) if e is None else np.broadcast_to(e, out.shape)


def _check(impl, fmt, xc, acc, arg, compute, attribute, block) -> None:
    whole, wt = _whole(impl, fmt, xc, acc, arg, compute, attribute)
    plan, outs, trs = _pieces(impl, fmt, xc, acc, arg, compute, attribute, block)
    assert len(trs) > 1
    what = f"{impl.key} {fmt.name} {acc} {compute} block={block}"
    if impl.record.per_vector:  # every piece gives the vector's one output
        for o in outs:
            assert _same(o.v, whole.v) and _same(o.root, whole.root), what
            if attribute:
                assert all(_same(_err(o, c), _err(whole, c)) for c in range(len(CATEGORIES))), what
    else:
        assert _same(np.concatenate([o.v for o in outs], -1), whole.v), what
        assert _same(np.concatenate([o.root for o in outs], -1), whole.root), what
        if attribute:
            for c in range(len(CATEGORIES)):
                assert _same(np.concatenate([_err(o, c) for o in outs], -1), _err(whole, c)), (what, c)
    assert np.bitwise_or.reduce([int(t.flags[0]) for t in trs]) == int(wt.flags[0]), what
    kinds = {(lb, k) for lb, k, m, _d in wt.events if np.any(m)}
    assert {(lb, k) for t in trs for lb, k, m, _d in t.events if np.any(m)} == kinds, what


def _vector(rng, fmt, n):
    x = rng.standard_normal((1, n)) * float(rng.choice([1, 3, 30, 300])) + float(rng.choice([0, 5, -50]))
    x[0, rng.integers(0, n, 3)] = float(rng.choice([1e4, 90.0, 12.0, -1e4]))
    with np.errstate(all="ignore"):
        return fmt.cast(np.clip(x, -fmt.max, fmt.max))


@pytest.mark.parametrize("acc", ["sequential", "pairwise", "float32"])
@pytest.mark.parametrize("fmt_name,compute", [("float16", "float32"), ("bfloat16", "format"),
                                              ("float32", "float32"), ("float64", "format")])
def test_pieces_trace_the_bits_of_the_whole_vector(acc, fmt_name, compute):
    fmt = get_format(fmt_name)
    rng = np.random.default_rng([7, len(acc), len(fmt_name)])
    for attribute in (False, True):
        n = int(rng.integers(900, 2100))
        xc = _vector(rng, fmt, n)
        tg = np.array([int(rng.integers(0, n))])
        target = {"target": tg, "smoothing": np.rec.fromarrays([tg, fmt.round(np.array([0.2]))],
                                                               names="target,epsilon")}
        block = 300 if attribute else 200  # the pairwise tree: aligned pieces of 256 and 128
        for f in FAMILY:
            for impl in REGISTRY[f].values():
                if not impl.builtin:
                    continue
                arg = impl.record.arg(as_args(target if impl.record.takes else None))
                _check(impl, fmt, xc, acc, arg, compute, attribute, block)


def test_a_sum_overflow_and_nan_across_pieces():
    """float16 under --compute format: the naive softmax's exps overflow in one piece and its sum
    becomes inf in another (the overflow's root carried into every piece: x/inf = 0 there), and a
    NaN input in a third makes every output NaN."""
    fmt = get_format("float16")
    impl = REGISTRY["softmax"]["naive"]
    x = np.zeros((1, 1000))
    x[0, 700] = 12.0  # exp(12) = 162755 > 65504: exp overflows (piece 2 of 4)
    for acc in ("sequential", "pairwise", "float32"):
        _check(impl, fmt, fmt.cast(x), acc, None, "format", True, 256)
        outs = _pieces(impl, fmt, fmt.cast(x), acc, None, "format", False, 256)[1]
        y = np.concatenate([o.v for o in outs], -1)
        assert (y[0, :700] == 0).all() and np.isnan(y[0, 700])  # x / inf, inf / inf
    x[0, 300] = np.nan
    _check(impl, fmt, fmt.cast(x), "sequential", None, "format", True, 256)


def test_the_partitions_follow_each_summation_tree():
    """Pieces of the pairwise tree are aligned powers of two; numpy's are nodes of its recursion
    (halves rounded down to a multiple of 8), each summed by numpy to the same bits."""
    assert partition(1000, "pairwise", 300)[0][:2] == [(0, 256), (256, 512)]
    assert partition(1000, "sequential", 300)[0] == [(0, 300), (300, 600), (600, 900), (900, 1000)]
    bounds, tree = partition(1000, "float32", 300)
    assert bounds == [(0, 248), (248, 496), (496, 744), (744, 1000)]
    rng = np.random.default_rng(3)
    a = (rng.standard_normal(100_003) * 1000).astype(np.float32)
    bounds, tree = partition(a.size, "float32", 4096)

    def up(node):
        if isinstance(node[0], int):
            return np.add.reduce(a[node[0]:node[1]], initial=-0.0, dtype=np.float32)
        return up(node[0]) + up(node[1])

    assert up(tree) + np.float32(0) == np.sum(a)
    assert np.sum(a[: bounds[0][1]]) != np.sum(a)  # (a piece is not the vector)


@pytest.mark.parametrize("acc", ["sequential", "pairwise", "float32"])
def test_masked_vectors_trace_the_bits_of_the_whole_vector(acc):
    """-inf masks across the pieces' bounds (a masked prefix, a run, a tail), with +inf or NaN in
    a later piece: every built-in of the family, both precision models, with and without
    attribution, as the whole vector's trace."""
    rng = np.random.default_rng([3, len(acc)])
    for fmt_name, compute, extra in (("float16", "float32", None), ("bfloat16", "format", np.inf),
                                     ("float32", "format", None), ("float16", "format", np.nan)):
        fmt = get_format(fmt_name)
        x = rng.normal(0, 4, (1, 1100))
        x[0, :90] = x[0, 300:520] = x[0, 1000:] = -np.inf
        x[0, 700] = 30.0
        if extra is not None:
            x[0, 820] = extra
        xc = fmt.cast(x)
        tg = np.array([int(rng.choice([301, 650]))])  # masked, or not
        target = {"target": tg,
                  "smoothing": np.rec.fromarrays([tg, np.array([0.25])], names="target,epsilon")}
        for f in FAMILY:
            for impl in REGISTRY[f].values():
                if impl.builtin:
                    arg = impl.record.arg(as_args(target if impl.record.takes else None))
                    for attribute in (False, True):
                        _check(impl, fmt, xc, acc, arg, compute, attribute, 256)


def test_the_online_scan_across_pieces_with_jumps_infinities_and_nan():
    """The online softmax's state carried across the pieces (sequential, numpy's float32) and its
    tree's nodes (pairwise): the running maximum jumping in later pieces (every earlier term
    rescaled, the factors exp(m_old - m_new) flushing to 0 in float16), a +inf input (inf - inf:
    NaN from there on) and a NaN one, every bit and error component as the whole vector's."""
    fmt = get_format("float16")
    impl = REGISTRY["softmax"]["online"]
    rng = np.random.default_rng(5)
    base = rng.normal(-40, 3, (1, 1000))
    base[0, [310, 640, 999]] = [-10.0, 8.0, 11.0]  # the maximum moves up in three later pieces
    for extra in ({}, {700: np.inf}, {450: np.nan}):
        x = base.copy()
        for k, v in extra.items():
            x[0, k] = v
        xc = fmt.cast(x)
        for acc in ("sequential", "pairwise", "float32"):
            for compute in ("format", "float32"):
                _check(impl, fmt, xc, acc, None, compute, True, 256)
                _check(impl, fmt, xc, acc, None, compute, False, 100)


def test_a_step_needing_the_whole_vector_refuses():
    """A vector joined from parts (o.concat), a reduction of part of the vector, a per-vector
    value read from the elements (o.first) are no piecewise steps: NotPiecewise, so the vector is
    evaluated whole instead of wrongly. (A step at an index -- o.put, o.drop_at, o.argmax -- reads
    it in the whole vector: the backward pass's bits above.)"""
    fmt = get_format("float32")
    xc = _vector(np.random.default_rng(1), fmt, 1000)
    for step in (lambda o, x: o.concat([x, x]), lambda o, x: o.max(x[..., :5]),
                 lambda o, x: o.sum(x[..., 1:], "sequential"), lambda o, x: o.first(x)):
        plan = Plan.for_vector(fmt, 1000, "sequential", 256)
        with pytest.raises(NotPiecewise):
            learn(plan, lambda tr, step=step: step(tr, tr.wrap(tr.piece(xc))))


@pytest.mark.parametrize("tier", [0, -1])
def test_the_reference_row_quantities_from_pieces_enclose_the_exact_sum(tier):
    """reference.softmax.piece_rows: the max and the sum t = sum_{i != k} exp(x_i - m) of a long
    vector read a piece at a time, bounded rigorously -- the exact t (mpmath, 200 bits, an exp per
    distinct value) lies within t +- et -- and the elements computed from them in each piece are
    decided to the rounding of the whole vector's reference."""
    import mpmath

    from numstab.reference import tiers
    from numstab.reference.softmax import fast_block, fast_elements, fast_rows, piece_rows

    fmt = get_format("float32")
    wt = tiers(fmt)[tier]
    rng = np.random.default_rng(11)
    n = 5003
    x = fmt.round(rng.standard_normal((1, n)) * 3.0)
    x[0, [17, 4000]] = fmt.round(np.float64(25.3))  # a tied maximum: the first one is left out of t
    block = 512

    def pieces():
        for c0 in range(0, n, block):
            yield c0, x[:, c0: c0 + block]

    rows = piece_rows(fmt, pieces, {}, wt)
    assert rows["n"] == n and rows["m"][0] == x.max()
    with mpmath.workprec(200):
        m = mpmath.mpf(float(x.max()))
        vals, counts = np.unique(x[0], return_counts=True)
        counts[-1] -= 1  # the argmax
        exact = mpmath.fsum(int(c) * mpmath.exp(mpmath.mpf(float(v)) - m) for v, c in zip(vals, counts))
        t = mpmath.mpf(str(rows["t"][0]) if tier else float(rows["t"][0]))  # quad: all its digits
        et = mpmath.mpf(str(rows["et"][0]) if tier else float(rows["et"][0]))
        assert t - et <= exact <= t + et and et < exact * 2.0**(-40 if tier else -20)
    whole = fast_rows(fmt, x, {}, wt)
    assert float(rows["et"][0]) <= 4 * float(whole["et"][0])  # hardly wider than the whole vector's
    ref = fast_block(fmt, x.astype(wt), {})
    for f in ("softmax", "log_softmax"):
        parts = [fast_elements(fmt, rows, xp, {}, wt, f, np.zeros(xp.shape[-1], dtype=np.intp),
                               np.arange(xp.shape[-1])) for _c0, xp in pieces()]
        got = np.concatenate([p.rounded for p in parts])
        both = np.concatenate([p.decided for p in parts]) & ref[f].decided[0]
        assert both.mean() > 0.99 and np.array_equal(got[both], ref[f].rounded[0][both])


def test_error_totals_by_aligned_blocks_are_the_same_fed_a_piece_at_a_time():
    # a sum's error components are totalled by blocks of SEQ_BLOCK columns aligned at column 0
    # (steps.Total); a long vector's pieces feed them piece by piece, and a piece without a
    # component (all zeros there, left out) adds its zeros, a total begun in a later piece the
    # zeros before it (pieces._add_total): the bits of the whole vector's one call, at any cuts
    from numstab.pieces import _add_total
    from numstab.steps import SEQ_BLOCK, _seq_total

    rng = np.random.default_rng(3)
    for trial in range(300):
        n = int(rng.integers(1, 5 * SEQ_BLOCK))
        a = rng.standard_normal((1, n)) * 10.0 ** rng.integers(-20, 20, (1, n))
        cuts = np.unique(np.concatenate([[0, n], rng.integers(0, n, int(rng.integers(0, 6)))]))
        gone = rng.random(len(cuts) - 1) < 0.3  # pieces whose component is all zeros there
        whole = a.copy()
        total = None
        for (c0, c1), g in zip(zip(cuts[:-1], cuts[1:]), gone):
            if g:
                whole[:, c0:c1] = 0.0
            total = _add_total(total, None if g else a[:, c0:c1], c0, c1 - c0)
        want = _seq_total(whole)
        if total is None:  # every piece without the component: the whole's is all zeros
            assert not whole.any()
            continue
        assert total.value().tobytes() == want.tobytes(), (trial, n, cuts, gone)
        assert abs(float(want[0, 0]) - float(np.sum(whole))) <= 1e-12 * float(np.sum(np.abs(whole)))
