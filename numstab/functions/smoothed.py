"""Label-smoothed cross-entropy: smoothed_cross_entropy.

The target distribution is q = (1 - epsilon) onehot(t) + epsilon / n (epsilon in [0, 1],
``--label-smoothing``), the loss -sum_i q_i log_softmax_i
= (1 - epsilon) (-log_softmax_t) + (epsilon / n) sum_i (-log_softmax_i), as torch's
cross_entropy(label_smoothing=epsilon) computes it. The kernels' argument is the batch's
``smoothing`` record: ``target`` (an index per vector) and ``epsilon`` (per vector, an exact
value of the format); the weights 1 - epsilon and epsilon / n are rounded to the format.
Exact formula: numstab/reference/smoothed.py.
"""

from __future__ import annotations

import numpy as np

from .base import Function, builtin


def _shifted(x, o):
    return o.sub(x, o.max(x))


# ------------------------------------------------------------ label smoothing
def _args(arg):
    """(target indices (B,), epsilon as a column (B, 1)) of the batch's smoothing records."""
    return np.asarray(arg["target"]), np.asarray(arg["epsilon"], dtype=np.float64)[..., None]


def _smoothed(ls, target, epsilon, acc, o):
    """(1 - eps) (-ls_t) + (eps / n) sum(-ls): every term non-negative; the weights rounded to
    the format."""
    n = o.length(ls)
    nll = o.neg(o.pick(ls, target))
    w_t = o.mul(o.const(nll, 1.0 - epsilon), nll)
    w_all = o.mul(o.const(nll, epsilon / n), o.neg(o.sum(ls, acc, "the sum of log_softmax")))
    return o.add(w_t, w_all, "(1 - eps) nll + eps mean(-log_softmax)")


def smoothed_naive(x, acc, arg, o):
    target, epsilon = _args(arg)
    e = o.exp(x)
    return _smoothed(o.log(o.div(e, o.sum(e, acc, "the sum of exp(x)"))), target, epsilon, acc, o)


def smoothed_stable(x, acc, arg, o):
    target, epsilon = _args(arg)
    d = _shifted(x, o)
    ls = o.sub(d, o.log(o.sum(o.exp(d), acc, "the sum of exp(x - max)")), "(x - max) - log(sum)")
    return _smoothed(ls, target, epsilon, acc, o)


def smoothed_log1p(x, acc, arg, o):
    """log1p(t) - (1 - eps) d_t - (eps / n) sum(d): no cancellation, d = x - max <= 0."""
    target, epsilon = _args(arg)
    n = o.length(x)
    d = _shifted(x, o)
    lp = o.log1p(o.sum(o.drop_argmax(o.exp(d), x), acc, "the sum of exp(x - max) over the others"))
    a = o.mul(o.const(lp, 1.0 - epsilon), o.neg(o.pick(d, target)))
    b = o.mul(o.const(lp, epsilon / n), o.neg(o.sum(d, acc, "the sum of x - max")))
    return o.add(lp, o.add(a, b, "(1 - eps) (max - x_t) + eps/n sum(max - x)"), "log1p(sum) + ...")


SMOOTHED_CROSS_ENTROPY = Function(
    "smoothed_cross_entropy", output="vector", extra="smoothing", reference="smoothed",
    log_of_zero=float("inf"), inferred_cause="rounding",
    description="-sum_i q_i log_softmax(x)_i, q = (1 - eps) onehot(target) + eps / n")

#: The records this module defines, in display order (the registry reads this).
FUNCTIONS = (SMOOTHED_CROSS_ENTROPY,)

for _n, _fn, _d in (
    ("naive", smoothed_naive, "(1 - eps) (-log p_t) + eps/n sum(-log p), p = exp(x) / sum(exp(x))"),
    ("stable", smoothed_stable, "the same with the stable log_softmax (torch's label_smoothing)"),
    ("log1p", smoothed_log1p,
     "log1p(sum over others of exp(x - max)) + (1 - eps)(max - x_t) + eps/n sum(max - x)"),
):
    builtin(SMOOTHED_CROSS_ENTROPY, _n, _fn, _d)
