"""The softmax family: softmax, log_softmax, logsumexp and cross_entropy.

Their definitions (output kinds, extra argument), their built-in implementations
(kernels) and where their exact formulas live (``numstab.reference.softmax``: the
exact values of all four from one rigorous enclosure per vector).

Kernels are computed in the dtype of the array they are given: the target format, or float32
for a half format under ``--compute float32`` (functions.base.Impl.run widens the input and
rounds the output once).

Every kernel takes ``x`` of the target dtype with the vectors along the last
axis (shape ``(..., n)``), an accumulation model and, for cross_entropy, an
integer ``target`` per vector. Every elementary operation is one numpy ufunc on
the target dtype, so it is rounded to the format: numpy evaluates float16 (and
ml_dtypes bfloat16) ufuncs in float32 and rounds the result, which is correctly
rounded for + - * / (float32 has more than 2p+2 bits) and within float32's
accuracy for exp/log, as real half-precision kernels are.

Accumulation models (``--accumulate``):

* ``sequential``: each addition rounded to the format, left to right
  (textbook recursive summation; ``np.add.accumulate``).
* ``pairwise``: a balanced tree of additions, each rounded to the format.
* ``float32``: accumulate in float32 (or the format itself when it is wider)
  with numpy's summation, round once at the end: what CPU/GPU kernels do for
  half types. This is what ``np.sum`` itself does for a float16 array: numpy's
  half-precision reduction accumulates in float32 (``tests/test_kernels.py``
  checks this), while for bfloat16 ``np.sum`` matches ``sequential``.

To add an implementation, write a kernel and add one line to the table at the end.
"""

from __future__ import annotations

from .base import Function, builtin, composition

# Every kernel is written against ``o`` (numstab.steps): o.exp, o.sub, o.sum(e, acc), ... run
# plain numpy (steps.PLAIN) or traced step by step (steps.Tracer) with bit-identical results.
# Per-vector results keep a length-1 last axis until Impl strips it.


# ---------------------------------------------------------------- softmax
def softmax_naive(x, acc, o):
    e = o.exp(x)
    return o.div(e, o.sum(e, acc, "the sum of exp(x)"))


def softmax_stable(x, acc, o):
    e = o.exp(o.sub(x, o.max(x)))
    return o.div(e, o.sum(e, acc, "the sum of exp(x - max)"))


def softmax_lse(x, acc, o):
    return o.exp(o.sub(x, logsumexp_stable(x, acc, o), "x - logsumexp(x)"))


def _online_state(x, acc, o):
    """Running max and rescaled sum (Milakov & Gimelshein 2018): a scan column after column, or
    under ``pairwise`` a tree of (max, sum) pairs (steps.online_pairs); both with a length-1 last
    axis, the sum cast to x's dtype."""
    return o.online(x, acc)


def softmax_online(x, acc, o):
    m, d = _online_state(x, acc, o)
    return o.div(o.exp(o.sub(x, m)), d)


# ------------------------------------------------------------ log_softmax
@composition("softmax")
def log_softmax_naive(x, acc, o):
    return o.log(o.tensor(softmax_naive(x, acc, o), "softmax"))


@composition("softmax")
def log_softmax_log_of_stable(x, acc, o):
    return o.log(o.tensor(softmax_stable(x, acc, o), "softmax"))


def log_softmax_stable(x, acc, o):
    s = o.sub(x, o.max(x))
    return o.sub(s, o.log(o.sum(o.exp(s), acc, "the sum of exp(x - max)")), "(x - max) - log(sum)")


def log_softmax_log1p(x, acc, o):
    s = o.sub(x, o.max(x))
    return o.sub(s, o.log1p(o.sum(o.drop_argmax(o.exp(s), x), acc)))


# -------------------------------------------------------------- logsumexp
def logsumexp_naive(x, acc, o):
    return o.log(o.sum(o.exp(x), acc, "the sum of exp(x)"))


def logsumexp_stable(x, acc, o):
    m = o.max(x)
    return o.add(m, o.log(o.sum(o.exp(o.sub(x, m)), acc, "the sum of exp(x - max)")), "max + log(sum)")


def logsumexp_log1p(x, acc, o):
    m = o.max(x)
    return o.add(m, o.log1p(o.sum(o.drop_argmax(o.exp(o.sub(x, m)), x), acc)), "max + log1p(sum)")


# ---------------------------------------------------------- cross_entropy
@composition("softmax")
def cross_entropy_naive(x, acc, target, o):
    return o.neg(o.log(o.pick(o.tensor(softmax_naive(x, acc, o), "softmax"), target)))


@composition("softmax")
def cross_entropy_clipped(x, acc, target, o):
    """Keras-style: probabilities from a (stable) softmax, clipped to [1e-7, 1-1e-7] in the format."""
    p = o.pick(o.tensor(softmax_stable(x, acc, o), "softmax"), target)
    return o.neg(o.log(o.clip(p, 1e-7, 1 - 1e-7)))


def cross_entropy_stable(x, acc, target, o):
    return o.sub(logsumexp_stable(x, acc, o), o.pick(x, target), "logsumexp(x) - x[target]")


@composition("log_softmax")
def cross_entropy_log_softmax(x, acc, target, o):
    """-log_softmax(x)[target]: nll(log_softmax(x)), as torch and jax compute it."""
    return o.neg(o.pick(o.tensor(log_softmax_stable(x, acc, o), "log_softmax"), target))


def cross_entropy_log1p(x, acc, target, o):
    """log1p(sum over j != argmax of exp(x_j - max)) - (x[target] - max): two non-negative terms,
    so the loss keeps its relative accuracy near 0 (confident, correct predictions), where
    logsumexp(x) - x[target] cancels."""
    d = o.sub(x, o.max(x))
    lp = o.log1p(o.sum(o.drop_argmax(o.exp(d), x), acc, "the sum of exp(x - max) over the others"))
    return o.sub(lp, o.pick(d, target), "log1p(sum) - (x[target] - max)")


SOFTMAX = Function(
    "softmax", output="same", extra="none", reference="softmax", nonzero=True,
    description="exp(x_i) / sum_j exp(x_j): probabilities summing to 1")
LOG_SOFTMAX = Function(
    "log_softmax", output="same", extra="none", reference="softmax", log_of_zero=-float("inf"),
    log1p_keeps=True, description="x_i - logsumexp(x): log-probabilities")
LOGSUMEXP = Function(
    "logsumexp", output="vector", extra="none", reference="softmax", log_of_zero=-float("inf"),
    log1p_keeps=True, inferred_cause="absorption", description="log(sum_j exp(x_j))")
CROSS_ENTROPY = Function(
    "cross_entropy", output="vector", extra="target", reference="softmax", log_of_zero=float("inf"),
    inferred_cause="cancellation", description="-log(softmax(x)[target]) for a target index")

#: The records this module defines, in display order (the registry reads this).
FUNCTIONS = (SOFTMAX, LOG_SOFTMAX, LOGSUMEXP, CROSS_ENTROPY)

for _f, _n, _fn, _d in (
    (SOFTMAX, "naive", softmax_naive, "exp(x) / sum(exp(x))"),
    (SOFTMAX, "stable", softmax_stable, "exp(x - max) / sum(exp(x - max))"),
    (SOFTMAX, "lse", softmax_lse, "exp(x - logsumexp(x)), division-free"),
    (SOFTMAX, "online", softmax_online, "one pass: running max and rescaled sum"),
    (LOG_SOFTMAX, "naive", log_softmax_naive, "log(exp(x) / sum(exp(x)))"),
    (LOG_SOFTMAX, "log_of_stable", log_softmax_log_of_stable, "log(stable softmax)"),
    (LOG_SOFTMAX, "stable", log_softmax_stable, "x - max - log(sum(exp(x - max)))"),
    (LOG_SOFTMAX, "log1p", log_softmax_log1p, "x - max - log1p(sum over others of exp(x - max))"),
    (LOGSUMEXP, "naive", logsumexp_naive, "log(sum(exp(x)))"),
    (LOGSUMEXP, "stable", logsumexp_stable, "max + log(sum(exp(x - max)))"),
    (LOGSUMEXP, "log1p", logsumexp_log1p, "max + log1p(sum over others of exp(x - max))"),
    (CROSS_ENTROPY, "naive", cross_entropy_naive, "-log(naive softmax at target)"),
    (CROSS_ENTROPY, "clipped", cross_entropy_clipped, "-log(clip(softmax, 1e-7, 1-1e-7)) (Keras)"),
    (CROSS_ENTROPY, "stable", cross_entropy_stable, "logsumexp(x) - x[target]"),
    (CROSS_ENTROPY, "log_softmax", cross_entropy_log_softmax, "-log_softmax(x)[target] (torch, jax)"),
    (CROSS_ENTROPY, "log1p", cross_entropy_log1p,
     "log1p(sum over others of exp(x - max)) - (x[target] - max)"),
):
    builtin(_f, _n, _fn, _d)
