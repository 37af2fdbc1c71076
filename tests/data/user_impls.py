"""User implementations for the audit tests: one good, one bad, two broken."""

import numpy as np


def naive_softmax(x):
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def stable_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def raises(x):
    raise RuntimeError("kaput")


def wrong_shape(x):
    return x[..., :1]


def wrong_dtype(x):
    return stable_softmax(x.astype(np.float64))


def stable_cross_entropy(x, target):
    m = x.max(axis=-1, keepdims=True)
    lse = m[..., 0] + np.log(np.exp(x - m).sum(axis=-1))
    return lse - np.take_along_axis(x, target[:, None], axis=-1)[:, 0]
