"""The binary family: sigmoid, log_sigmoid, softplus and binary cross-entropy.

Elementwise functions of the logits x (one output per element). Every kernel is written
against the operations ``o`` (numstab.steps), so it runs as plain numpy and traced step by
step with the same results. The stable forms never call exp on a positive argument: they
use e = exp(-|x|) in (0, 1] and pick the branch by the sign of x.

binary_cross_entropy takes targets z, reals in [0, 1] (rounded to the format like the
logits), one per vector or one per element. Its exact value is the loss of the logit,
softplus(x) - x z, whichever way an implementation computes it.
"""

from __future__ import annotations

from .base import Function, builtin, composition


def _e_neg_abs(x, o):
    """exp(-|x|): in (0, 1], it cannot overflow (it flushes to 0 only for large |x|)."""
    return o.exp(o.neg(o.abs(x)))


# ---------------------------------------------------------------- sigmoid
def sigmoid_naive(x, acc, o):
    one = o.const(x, 1.0)
    return o.div(one, o.add(one, o.exp(o.neg(x)), "1 + exp(-x)"))


def sigmoid_stable(x, acc, o):
    one = o.const(x, 1.0)
    e = _e_neg_abs(x, o)
    d = o.add(one, e, "1 + exp(-|x|)")
    return o.where(o.nonneg(x), o.div(one, d), o.div(e, d))


# ------------------------------------------------------------ log_sigmoid
@composition("sigmoid")
def log_sigmoid_naive(x, acc, o):
    return o.log(o.tensor(sigmoid_naive(x, acc, o), "sigmoid"))


def log_sigmoid_stable(x, acc, o):
    """-softplus(-x) = min(x, 0) - log1p(exp(-|x|))."""
    return o.sub(o.minimum(x, o.const(x, 0.0)), o.log1p(_e_neg_abs(x, o)), "min(x, 0) - log1p(exp(-|x|))")


# --------------------------------------------------------------- softplus
def softplus_naive(x, acc, o):
    return o.log(o.add(o.const(x, 1.0), o.exp(x), "1 + exp(x)"))


def softplus_stable(x, acc, o):
    """max(x, 0) + log1p(exp(-|x|))."""
    return o.add(o.maximum(x, o.const(x, 0.0)), o.log1p(_e_neg_abs(x, o)), "max(x, 0) + log1p(exp(-|x|))")


# --------------------------------------------------- binary cross-entropy
#: Keras's epsilon: probabilities are clipped to [1e-7, 1 - 1e-7] (from_logits=False)
KERAS_EPSILON = 1e-7


def _bce_from_probabilities(p, z, o):
    """-(z log(p) + (1 - z) log(1 - p))."""
    one = o.const(p, 1.0)
    a = o.mul(z, o.log(p), "z log(p)")
    b = o.mul(o.sub(one, z), o.log(o.sub(one, p, "1 - p")), "(1 - z) log(1 - p)")
    return o.neg(o.add(a, b, "z log(p) + (1 - z) log(1 - p)"))


@composition("sigmoid")
def bce_naive(x, acc, z, o):
    """From the naive sigmoid's probabilities, unclipped."""
    return _bce_from_probabilities(o.tensor(sigmoid_naive(x, acc, o), "sigmoid"), o.lift(z, x), o)


@composition("sigmoid")
def bce_clipped(x, acc, z, o):
    """As Keras with from_logits=False: the (accurate) sigmoid's probabilities clipped to
    [1e-7, 1 - 1e-7], both bounds rounded to the format (in float16 1 - 1e-7 rounds to 1)."""
    p = o.clip(o.tensor(sigmoid_stable(x, acc, o), "sigmoid"), KERAS_EPSILON, 1 - KERAS_EPSILON)
    return _bce_from_probabilities(p, o.lift(z, x), o)


def bce_logits(x, acc, z, o):
    """From the logits: max(x, 0) - x z + log1p(exp(-|x|))."""
    zz = o.lift(z, x)
    a = o.sub(o.maximum(x, o.const(x, 0.0)), o.mul(x, zz), "max(x, 0) - x z")
    return o.add(a, o.log1p(_e_neg_abs(x, o)), "max(x, 0) - x z + log1p(exp(-|x|))")


SIGMOID = Function(
    "sigmoid", output="elementwise", extra="none", reference="sigmoid", nonzero=True,
    zero_after_overflow=True, description="1 / (1 + exp(-x)): a probability")
LOG_SIGMOID = Function(
    "log_sigmoid", output="elementwise", extra="none", reference="sigmoid", log_of_zero=-float("inf"),
    log1p_keeps=True, inferred_cause="absorption", nonzero=True,
    description="log(sigmoid(x)) = -softplus(-x)")
SOFTPLUS = Function(
    "softplus", output="elementwise", extra="none", reference="sigmoid", log1p_keeps=True,
    inferred_cause="absorption", nonzero=True, description="log(1 + exp(x))")
BINARY_CROSS_ENTROPY = Function(
    "binary_cross_entropy", output="elementwise", extra="label", reference="sigmoid",
    log_of_zero=float("inf"), log1p_keeps=True, inferred_cause="absorption",
    description="-(z log(sigmoid(x)) + (1 - z) log(1 - sigmoid(x))) for a label z in [0, 1]")

#: The records this module defines, in display order (the registry reads this).
FUNCTIONS = (SIGMOID, LOG_SIGMOID, SOFTPLUS, BINARY_CROSS_ENTROPY)

for _f, _n, _fn, _d in (
    (SIGMOID, "naive", sigmoid_naive, "1 / (1 + exp(-x))"),
    (SIGMOID, "stable", sigmoid_stable, "1 / (1 + exp(-|x|)) for x >= 0, exp(-|x|) / (1 + exp(-|x|)) below"),
    (LOG_SIGMOID, "naive", log_sigmoid_naive, "log(1 / (1 + exp(-x)))"),
    (LOG_SIGMOID, "stable", log_sigmoid_stable, "-softplus(-x) = min(x, 0) - log1p(exp(-|x|))"),
    (SOFTPLUS, "naive", softplus_naive, "log(1 + exp(x))"),
    (SOFTPLUS, "stable", softplus_stable, "max(x, 0) + log1p(exp(-|x|))"),
    (BINARY_CROSS_ENTROPY, "naive", bce_naive, "-(z log(p) + (1 - z) log(1 - p)), p = 1 / (1 + exp(-x))"),
    (BINARY_CROSS_ENTROPY, "clipped", bce_clipped,
     "the same with p = sigmoid(x) clipped to [1e-7, 1 - 1e-7] (Keras, from_logits=False)"),
    (BINARY_CROSS_ENTROPY, "logits", bce_logits, "max(x, 0) - x z + log1p(exp(-|x|)) (from_logits=True)"),
):
    builtin(_f, _n, _fn, _d)
