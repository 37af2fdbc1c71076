"""Cross-entropy as frameworks compute it, an accurate form, and label smoothing.

cross_entropy(x, t) = -log_softmax(x)_t. With m = max(x) and d = x - m:

* ``log_softmax``: -(d_t - log(sum(exp(d)))), nll(log_softmax(x)) as torch and jax compute it;
* ``log1p``: log1p(sum over j != argmax of exp(d_j)) - d_t: two non-negative terms, so the loss
  keeps its relative accuracy even near 0 (the confident, correct predictions training ends
  with), where lse(x) - x_t cancels.

Label smoothing (``smoothed_cross_entropy``, epsilon in [0, 1]): the target distribution is
q = (1 - epsilon) onehot(t) + epsilon / n, the loss -sum_i q_i log_softmax_i
= (1 - epsilon) (-log_softmax_t) + (epsilon / n) sum_i (-log_softmax_i), as torch's
cross_entropy(label_smoothing=epsilon) computes it.
"""

from __future__ import annotations


def _shifted(x, o):
    return o.sub(x, o.max(x))


def cross_entropy_log_softmax(x, acc, target, o):
    d = _shifted(x, o)
    ls = o.sub(d, o.log(o.sum(o.exp(d), acc, "the sum of exp(x - max)")), "(x - max) - log(sum)")
    return o.neg(o.pick(ls, target))


def cross_entropy_log1p(x, acc, target, o):
    d = _shifted(x, o)
    lp = o.log1p(o.sum(o.drop_argmax(o.exp(d), x), acc, "the sum of exp(x - max) over the others"))
    return o.sub(lp, o.pick(d, target), "log1p(sum) - (x[target] - max)")


# ------------------------------------------------------------ label smoothing
def _smoothed(ls, target, epsilon, acc, o):
    """(1 - eps) (-ls_t) + (eps / n) sum(-ls): every term non-negative; the weights rounded to
    the format."""
    n = ls.shape[-1]
    w_t = o.mul(o.const(ls, 1.0 - epsilon)[..., :1], o.neg(o.pick(ls, target)))
    w_all = o.mul(o.const(ls, epsilon / n)[..., :1], o.neg(o.sum(ls, acc, "the sum of log_softmax")))
    return o.add(w_t, w_all, "(1 - eps) nll + eps mean(-log_softmax)")


def smoothed_naive(x, acc, extra, o):
    target, epsilon = extra
    e = o.exp(x)
    return _smoothed(o.log(o.div(e, o.sum(e, acc, "the sum of exp(x)"))), target, epsilon, acc, o)


def smoothed_stable(x, acc, extra, o):
    target, epsilon = extra
    d = _shifted(x, o)
    ls = o.sub(d, o.log(o.sum(o.exp(d), acc, "the sum of exp(x - max)")), "(x - max) - log(sum)")
    return _smoothed(ls, target, epsilon, acc, o)


def smoothed_log1p(x, acc, extra, o):
    """log1p(t) - (1 - eps) d_t - (eps / n) sum(d): no cancellation, d = x - max <= 0."""
    target, epsilon = extra
    n = x.shape[-1]
    d = _shifted(x, o)
    lp = o.log1p(o.sum(o.drop_argmax(o.exp(d), x), acc, "the sum of exp(x - max) over the others"))
    a = o.mul(o.const(lp, 1.0 - epsilon), o.neg(o.pick(d, target)))
    b = o.mul(o.const(lp, epsilon / n), o.neg(o.sum(d, acc, "the sum of x - max")))
    return o.add(lp, o.add(a, b, "(1 - eps) (max - x_t) + eps/n sum(max - x)"), "log1p(sum) + ...")


CE_KERNELS = (
    ("cross_entropy", "log_softmax", cross_entropy_log_softmax, "-log_softmax(x)[target] (nll(log_softmax), torch/jax)"),
    ("cross_entropy", "log1p", cross_entropy_log1p, "log1p(sum over others of exp(x - max)) - (x[target] - max)"),
)

SMOOTHED_KERNELS = (
    ("smoothed_cross_entropy", "naive", smoothed_naive,
     "(1 - eps) (-log p_t) + eps/n sum(-log p), p = exp(x) / sum(exp(x))"),
    ("smoothed_cross_entropy", "stable", smoothed_stable,
     "the same with the stable log_softmax (torch's label_smoothing)"),
    ("smoothed_cross_entropy", "log1p", smoothed_log1p,
     "log1p(sum over others of exp(x - max)) + (1 - eps)(max - x_t) + eps/n sum(max - x)"),
)
