"""The implementations under test, computed in the target format.

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

To add an implementation, write a function and add one line to :data:`REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import unknown_name

ACCUMULATE = ("sequential", "pairwise", "float32")
FUNCTIONS = ("softmax", "log_softmax", "logsumexp", "cross_entropy")
#: Functions whose output is one number per vector (the others: one per element).
SCALAR_FUNCTIONS = ("logsumexp", "cross_entropy")


def acc_dtype(dtype: np.dtype, acc: str) -> np.dtype:
    if acc == "float32" and dtype.itemsize < 4:
        return np.dtype(np.float32)
    return dtype


def acc_sum(a: np.ndarray, acc: str) -> np.ndarray:
    """Sum along the last axis under the accumulation model; result in a's dtype."""
    dt = a.dtype
    if acc == "sequential":
        return np.add.accumulate(a, axis=-1)[..., -1]
    if acc == "pairwise":
        while a.shape[-1] > 1:
            k = a.shape[-1] // 2
            head = a[..., 0 : 2 * k : 2] + a[..., 1 : 2 * k : 2]
            a = np.concatenate([head, a[..., 2 * k :]], axis=-1) if a.shape[-1] % 2 else head
        return a[..., 0]
    if acc == "float32":
        w = acc_dtype(dt, acc)
        return np.sum(a.astype(w), axis=-1, dtype=w).astype(dt)
    raise unknown_name("accumulation model", acc, ACCUMULATE)


def _max(x):
    return np.max(x, axis=-1, keepdims=True)


def _sum_others(e: np.ndarray, x: np.ndarray, acc: str) -> np.ndarray:
    """Sum of e over every element but the (first) argmax of x."""
    idx = np.argmax(x, axis=-1)[..., None]
    e = e.copy()
    np.put_along_axis(e, idx, 0, axis=-1)
    return acc_sum(e, acc)


# ---------------------------------------------------------------- softmax
def softmax_naive(x, acc):
    e = np.exp(x)
    return e / acc_sum(e, acc)[..., None]


def softmax_stable(x, acc):
    e = np.exp(x - _max(x))
    return e / acc_sum(e, acc)[..., None]


def softmax_lse(x, acc):
    return np.exp(x - logsumexp_stable(x, acc)[..., None])


def _online_state(x, acc):
    """Running max and rescaled sum (Milakov & Gimelshein 2018)."""
    w = acc_dtype(x.dtype, acc)
    if acc == "pairwise":
        m, d = x, np.ones_like(x, dtype=w)
        while m.shape[-1] > 1:
            k = m.shape[-1] // 2
            m1, m2 = m[..., 0 : 2 * k : 2], m[..., 1 : 2 * k : 2]
            d1, d2 = d[..., 0 : 2 * k : 2], d[..., 1 : 2 * k : 2]
            mm = np.maximum(m1, m2)
            dd = d1 * np.exp(m1 - mm).astype(w) + d2 * np.exp(m2 - mm).astype(w)
            if m.shape[-1] % 2:
                mm = np.concatenate([mm, m[..., 2 * k :]], axis=-1)
                dd = np.concatenate([dd, d[..., 2 * k :]], axis=-1)
            m, d = mm, dd
        return m[..., 0], d[..., 0].astype(x.dtype)
    m = x[..., 0]
    d = np.ones_like(m, dtype=w)
    for j in range(1, x.shape[-1]):
        xj = x[..., j]
        mn = np.maximum(m, xj)
        d = d * np.exp(m - mn).astype(w) + np.exp(xj - mn).astype(w)
        m = mn
    return m, d.astype(x.dtype)


def softmax_online(x, acc):
    m, d = _online_state(x, acc)
    return np.exp(x - m[..., None]) / d[..., None]


# ------------------------------------------------------------ log_softmax
def log_softmax_naive(x, acc):
    return np.log(softmax_naive(x, acc))


def log_softmax_log_of_stable(x, acc):
    return np.log(softmax_stable(x, acc))


def log_softmax_stable(x, acc):
    s = x - _max(x)
    return s - np.log(acc_sum(np.exp(s), acc))[..., None]


def log_softmax_log1p(x, acc):
    s = x - _max(x)
    return s - np.log1p(_sum_others(np.exp(s), x, acc))[..., None]


# -------------------------------------------------------------- logsumexp
def logsumexp_naive(x, acc):
    return np.log(acc_sum(np.exp(x), acc))


def logsumexp_stable(x, acc):
    m = _max(x)
    return m[..., 0] + np.log(acc_sum(np.exp(x - m), acc))


def logsumexp_log1p(x, acc):
    m = _max(x)
    return m[..., 0] + np.log1p(_sum_others(np.exp(x - m), x, acc))


# ---------------------------------------------------------- cross_entropy
def _pick(v, target):
    return np.take_along_axis(v, np.asarray(target)[..., None], axis=-1)[..., 0]


def cross_entropy_naive(x, acc, target):
    return -np.log(_pick(softmax_naive(x, acc), target))


def cross_entropy_clipped(x, acc, target):
    """Keras-style: probabilities from a (stable) softmax, clipped to [1e-7, 1-1e-7]."""
    p = _pick(softmax_stable(x, acc), target)
    lo, hi = np.array([1e-7, 1 - 1e-7]).astype(x.dtype)
    return -np.log(np.minimum(np.maximum(p, lo), hi))


def cross_entropy_stable(x, acc, target):
    return logsumexp_stable(x, acc) - _pick(x, target)


@dataclass(frozen=True)
class Impl:
    function: str
    name: str
    fn: Callable
    description: str

    @property
    def key(self) -> str:
        return f"{self.function}:{self.name}"

    def __call__(self, x, acc="sequential", target=None):
        if self.function == "cross_entropy":
            return self.fn(x, acc, target)
        return self.fn(x, acc)


REGISTRY: dict[str, dict[str, Impl]] = {f: {} for f in FUNCTIONS}


def register(function: str, name: str, fn: Callable, description: str) -> Impl:
    impl = Impl(function, name, fn, description)
    REGISTRY[function][name] = impl
    return impl


for _f, _n, _fn, _d in (
    ("softmax", "naive", softmax_naive, "exp(x) / sum(exp(x))"),
    ("softmax", "stable", softmax_stable, "exp(x - max) / sum(exp(x - max))"),
    ("softmax", "lse", softmax_lse, "exp(x - logsumexp(x)), division-free"),
    ("softmax", "online", softmax_online, "one pass: running max and rescaled sum"),
    ("log_softmax", "naive", log_softmax_naive, "log(exp(x) / sum(exp(x)))"),
    ("log_softmax", "log_of_stable", log_softmax_log_of_stable, "log(stable softmax)"),
    ("log_softmax", "stable", log_softmax_stable, "x - max - log(sum(exp(x - max)))"),
    ("log_softmax", "log1p", log_softmax_log1p, "x - max - log1p(sum over others of exp(x - max))"),
    ("logsumexp", "naive", logsumexp_naive, "log(sum(exp(x)))"),
    ("logsumexp", "stable", logsumexp_stable, "max + log(sum(exp(x - max)))"),
    ("logsumexp", "log1p", logsumexp_log1p, "max + log1p(sum over others of exp(x - max))"),
    ("cross_entropy", "naive", cross_entropy_naive, "-log(naive softmax at target)"),
    ("cross_entropy", "clipped", cross_entropy_clipped, "-log(clip(softmax, 1e-7, 1-1e-7)) (Keras)"),
    ("cross_entropy", "stable", cross_entropy_stable, "logsumexp(x) - x[target]"),
):
    register(_f, _n, _fn, _d)


def get_function(name: str) -> str:
    if name not in FUNCTIONS:
        raise unknown_name("function", name, FUNCTIONS)
    return name


def get_impl(function: str, name: str) -> Impl:
    impls = REGISTRY[get_function(function)]
    if name not in impls:
        raise unknown_name(f"{function} implementation", name, impls)
    return impls[name]
