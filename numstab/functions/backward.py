"""Gradients: vector-Jacobian products of softmax, log_softmax and cross-entropy.

softmax_backward and log_softmax_backward take a cotangent v (one per element: the
gradient arriving from above) and return the gradient with respect to x:

    softmax_backward_i     = s_i (v_i - sum_j s_j v_j)
    log_softmax_backward_i = v_i - s_i sum_j v_j
    cross_entropy_backward = s - onehot(target)

Three ways to compute each:

* ``naive``: what automatic differentiation gives for the naive forward pass
  (exp(x) / sum(exp(x)), its log, -log of its target element), step by step
  through the graph: a division's two partial derivatives, the sum's broadcast,
  exp's derivative exp(x).
* ``fused``: the closed form frameworks use, on the stable forward's outputs:
  s * (v - sum(v * s)) (torch's _softmax_backward_data, jax.nn.softmax's rule),
  v - exp(log_softmax) * sum(v), softmax - onehot.
* ``stable``: the same closed forms rearranged so that nothing cancels where the
  largest probability is near 1: 1 - s_k is computed as the sum of the other
  terms over the sum (never as 1 - s_k), and the softmax cotangent is shifted by
  its value at the argmax (the result is unchanged: s sums to 1).
"""

from __future__ import annotations

from .base import Function, builtin


def _stable_parts(x, acc, o):
    """e = exp(x - max), S = sum(e), s = e / S."""
    e = o.exp(o.sub(x, o.max(x)))
    S = o.sum(e, acc, "the sum of exp(x - max)")
    return e, S, o.div(e, S)


def _naive_parts(x, acc, o):
    e = o.exp(x)
    S = o.sum(e, acc, "the sum of exp(x)")
    return e, S, o.div(e, S)


def _through_naive_softmax(g, e, S, acc, o):
    """Backpropagate the cotangent g of p = e / S (e = exp(x), S = sum(e)) to x, as torch's
    autograd does: de = g / S (numerator) plus sum(-g ((e / S) / S)) (denominator, broadcast
    back by the sum), dx = de * exp(x)."""
    d_den = o.sum(o.neg(o.mul(g, o.div(o.div(e, S), S))), acc, "sum(-g (e / S) / S)")
    return o.mul(o.add(o.div(g, S), d_den, "g / S + sum(-g (e / S) / S)"), e)


# -------------------------------------------------------- softmax_backward
def softmax_backward_naive(x, acc, v, o):
    e, S, _ = _naive_parts(x, acc, o)
    return _through_naive_softmax(o.lift(v, x), e, S, acc, o)


def softmax_backward_fused(x, acc, v, o):
    _, _, s = _stable_parts(x, acc, o)
    vv = o.lift(v, x)
    return o.mul(s, o.sub(vv, o.sum(o.mul(vv, s), acc, "sum(v s)"), "v - sum(v s)"))


def softmax_backward_stable(x, acc, v, o):
    _, _, s = _stable_parts(x, acc, o)
    vv = o.lift(v, x)
    w = o.sub(vv, o.pick(vv, o.argmax(x)), "v - v[argmax]")
    return o.mul(s, o.sub(w, o.sum(o.mul(w, s), acc, "sum(w s)"), "w - sum(w s)"))


# ---------------------------------------------------- log_softmax_backward
def log_softmax_backward_naive(x, acc, v, o):
    e, S, p = _naive_parts(x, acc, o)
    return _through_naive_softmax(o.div(o.lift(v, x), p), e, S, acc, o)


def log_softmax_backward_fused(x, acc, v, o):
    m = o.max(x)
    sh = o.sub(x, m)
    y = o.sub(sh, o.log(o.sum(o.exp(sh), acc, "the sum of exp(x - max)")), "(x - max) - log(sum)")
    vv = o.lift(v, x)
    return o.sub(vv, o.mul(o.exp(y), o.sum(vv, acc, "sum(v)")), "v - exp(log_softmax) sum(v)")


def log_softmax_backward_stable(x, acc, v, o):
    e, S, s = _stable_parts(x, acc, o)
    vv = o.lift(v, x)
    V = o.sum(vv, acc, "sum(v)")
    g = o.sub(vv, o.mul(s, V), "v - s sum(v)")
    k = o.argmax(x)
    vk, sk = o.pick(vv, k), o.pick(s, k)
    rest = o.div(o.sum(o.drop_at(e, k), acc, "the sum of the other exp(x - max)"), S)  # 1 - s_k
    gk = o.sub(o.mul(vk, rest), o.mul(sk, o.sub(V, vk, "sum(v) - v[argmax]")),
               "v_k (1 - s_k) - s_k (sum(v) - v_k)")
    return o.put(g, k, gk)


# -------------------------------------------------- cross_entropy_backward
def cross_entropy_backward_naive(x, acc, target, o):
    e, S, p = _naive_parts(x, acc, o)
    g = o.put(o.const(x, 0.0), target, o.neg(o.div(o.const(o.pick(p, target), 1.0), o.pick(p, target))))
    return _through_naive_softmax(g, e, S, acc, o)


def cross_entropy_backward_fused(x, acc, target, o):
    _, _, s = _stable_parts(x, acc, o)
    st = o.pick(s, target)
    return o.put(s, target, o.sub(st, o.const(st, 1.0), "s[target] - 1"))


def cross_entropy_backward_stable(x, acc, target, o):
    e, S, s = _stable_parts(x, acc, o)
    others = o.sum(o.drop_at(e, target), acc, "the sum of exp(x - max) over the other elements")
    return o.put(s, target, o.neg(o.div(others, S)))


SOFTMAX_BACKWARD = Function(
    "softmax_backward", output="same", extra="cotangent", reference="backward", inferred_cause="cancellation",
    description="vector-Jacobian product of softmax: s * (v - sum(v * s))")
LOG_SOFTMAX_BACKWARD = Function(
    "log_softmax_backward", output="same", extra="cotangent", reference="backward",
    inferred_cause="cancellation", description="vector-Jacobian product of log_softmax: v - s * sum(v)")
CROSS_ENTROPY_BACKWARD = Function(
    "cross_entropy_backward", output="same", extra="target", reference="backward",
    inferred_cause="cancellation", description="gradient of cross_entropy: softmax(x) - onehot(target)")

#: The records this module defines, in display order (the registry reads this).
FUNCTIONS = (SOFTMAX_BACKWARD, LOG_SOFTMAX_BACKWARD, CROSS_ENTROPY_BACKWARD)

for _f, _n, _fn, _d in (
    (SOFTMAX_BACKWARD, "naive", softmax_backward_naive, "autodiff through exp(x) / sum(exp(x))"),
    (SOFTMAX_BACKWARD, "fused", softmax_backward_fused,
     "s (v - sum(v s)), s the stable softmax (torch, jax)"),
    (SOFTMAX_BACKWARD, "stable", softmax_backward_stable, "s (w - sum(w s)), w = v - v[argmax]"),
    (LOG_SOFTMAX_BACKWARD, "naive", log_softmax_backward_naive, "autodiff through log(exp(x) / sum(exp(x)))"),
    (LOG_SOFTMAX_BACKWARD, "fused", log_softmax_backward_fused,
     "v - exp(log_softmax(x)) sum(v) (torch, jax)"),
    (LOG_SOFTMAX_BACKWARD, "stable", log_softmax_backward_stable,
     "v - s sum(v); at the argmax k: v_k (sum of the other e) / S - s_k (sum(v) - v_k)"),
    (CROSS_ENTROPY_BACKWARD, "naive", cross_entropy_backward_naive,
     "autodiff through -log(naive softmax[target])"),
    (CROSS_ENTROPY_BACKWARD, "fused", cross_entropy_backward_fused, "stable softmax - onehot(target)"),
    (CROSS_ENTROPY_BACKWARD, "stable", cross_entropy_backward_stable,
     "stable softmax; at the target -(sum of the other exp(x - max)) / sum(exp(x - max))"),
):
    builtin(_f, _n, _fn, _d)
