"""The online softmax scan of long vectors by runs of the running maximum (steps._online_runs)
gives, bit for bit, what the column-by-column recurrence gives -- the definition, written out
again here: m' = max(m, x_j); d' = d * exp(m - m') + exp(x_j - m'), d in the accumulation type."""

import numpy as np
import pytest

from numstab import steps
from numstab.formats import FORMATS

N = steps.ONLINE_RUNS_MIN + 37


def column_loop(x, acc):
    w = steps.acc_dtype(x.dtype, acc)
    n = x.shape[-1]
    m = x[..., 0:1]
    d = np.ones(m.shape, dtype=w)
    idx = np.zeros(m.shape, dtype=np.intp)
    cols = [np.empty(x.shape[:-1] + (n - 1,), dt) for dt in (x.dtype, x.dtype, w, np.intp)]
    for j in range(1, n):
        xj = x[..., j: j + 1]
        mn = np.maximum(m, xj)
        cols[0][..., j - 1: j], cols[1][..., j - 1: j], cols[2][..., j - 1: j] = m, mn, d
        idx = np.where(m >= xj, idx, j)
        cols[3][..., j - 1: j] = idx
        d = d * np.exp(m - mn).astype(w) + np.exp(xj - mn).astype(w)
        m = mn
    return m, d.astype(x.dtype), d, tuple(cols)


def same(a, b):
    a64, b64 = np.asarray(a).astype(np.float64), np.asarray(b).astype(np.float64)
    return a.shape == b.shape and np.array_equal(a64, b64, equal_nan=True)


def rows(fmt, rng):
    """Vectors whose running maximum moves rarely, at every column, or through -inf, +inf, NaN."""
    z = rng.standard_normal((3, N)) * 3
    z[0, rng.integers(0, N, 3)] = 25.0  # real logits: a few outliers
    out = [z[0], z[1] * 0.1, z[2]]
    out.append(np.sort(z[2]))  # ascending: the maximum moves at every column
    out.append(np.sort(z[2])[::-1])
    out.append(np.full(N, 2.0))  # ties everywhere
    v = z[1].copy()
    v[: N // 3] = -np.inf  # a masked prefix: -inf - -inf is NaN
    out.append(v)
    v = z[1].copy()
    v[N // 2:] = -np.inf  # a masked tail
    out.append(v)
    v = z[0].copy()
    v[N // 4] = np.inf
    out.append(v)
    v = z[0].copy()
    v[N // 5] = np.nan
    out.append(v)
    v = np.where(rng.random(N) < 0.5, 0.0, -0.0)  # signed zeros only
    out.append(v)
    v = z[2] * 40  # exps that flush to 0
    out.append(v)
    x = np.stack(out)
    with np.errstate(all="ignore"):
        return fmt.cast(fmt.round(x))


@pytest.mark.parametrize("name", sorted(FORMATS))
@pytest.mark.parametrize("acc", ["sequential", "float32"])
def test_runs_equal_the_column_loop(name, acc):
    fmt = FORMATS[name]
    x = rows(fmt, np.random.default_rng(5))
    with np.errstate(all="ignore"):
        got = steps._online_scan(x, acc, keep=True)
        want = column_loop(x, acc)
    for g, w in zip(got[:3], want[:3]):
        assert g.dtype == w.dtype and same(g, w)
    for g, w in zip(got[3], want[3]):
        assert g.dtype == w.dtype and same(g, w)


def test_runs_in_a_batch_of_any_shape():
    """Leading axes are kept: a (2, 3, n) batch is scanned as its six vectors."""
    fmt = FORMATS["float32"]
    x = rows(fmt, np.random.default_rng(6))[:6].reshape(2, 3, N)
    with np.errstate(all="ignore"):
        got = steps._online_scan(x, "sequential", keep=True)
        want = column_loop(x, "sequential")
    assert got[0].shape == (2, 3, 1) and got[3][2].shape == (2, 3, N - 1)
    assert all(same(g, w) for g, w in zip(got[:3] + got[3], want[:3] + want[3]))


def test_a_real_logit_row_takes_few_steps():
    """The run path is what makes a long vector cheap: a row of N(0, 3) logits has a running
    maximum that moves about ln(n) times (here <= 30 of 1,061 columns), and its d is the
    sequential sum of exp(x_j - m) after the last move, up to the last rounding."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(N) * 3).astype(np.float32)
    M = np.maximum.accumulate(x)
    assert np.count_nonzero(M[1:] != M[:-1]) <= 30
    with np.errstate(all="ignore"):
        m, d, _, _ = steps._online_scan(x[None], "sequential")
    exact = np.exp(x.astype(np.float64) - float(x.max())).sum()
    assert m[0, 0] == x.max()
    assert abs(float(d[0, 0]) - exact) <= 1e-4 * exact
