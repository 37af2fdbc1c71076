"""Keras 3 (``--library keras``): keras.ops and keras.losses, on the JAX backend by default.

The backend is chosen before keras is first imported: ``KERAS_BACKEND`` when it is set (jax,
torch or numpy: whatever is installed), else ``jax`` (``pip install 'numstab[keras]'`` installs
keras and jax). With JAX, numstab turns x64 mode on, as for ``--library jax``, so float64
inputs are computed in float64. Each ``from_logits`` variant of a loss is its own
implementation; ``from_logits=False`` gets its probabilities from keras' own
``keras.ops.softmax`` (``keras.ops.sigmoid`` for the binary loss) in the same dtype, as a model
with a softmax output layer does.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from . import Adapter, Unavailable


def load(device: str) -> dict:
    if "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", "jax")
        if os.environ["KERAS_BACKEND"] == "jax":
            import jax

            jax.config.update("jax_enable_x64", True)
    from ..adapters import stdout_to_stderr

    try:
        with stdout_to_stderr():  # keras may print a banner about its backend
            import keras
    except ImportError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. a backend keras cannot start
        raise Unavailable(f"keras cannot start its {os.environ.get('KERAS_BACKEND')!r} backend "
                          f"({type(exc).__name__}: {exc})") from None
    backend = keras.backend.backend()
    from . import version

    return {"backend": backend, "backend_version": version(backend)}


def _np(y) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(y))


def adapters(function: str, device: str) -> list[Adapter]:
    import keras

    from . import by_groups, labels_like

    ops = keras.ops

    def softmax(x):
        return _np(ops.softmax(x, axis=-1))

    def log_softmax(x):
        return _np(ops.log_softmax(x, axis=-1))

    def logsumexp(x):
        return _np(ops.logsumexp(x, axis=-1))

    def cce(from_logits):
        def run(x, target):
            onehot = np.eye(x.shape[-1], dtype=x.dtype)[np.asarray(target, dtype=np.int64)]
            y_pred = x if from_logits else ops.softmax(x, axis=-1)
            return _np(keras.losses.categorical_crossentropy(onehot, y_pred, from_logits=from_logits))
        return run

    def scce(from_logits):
        def run(x, target):
            y_pred = x if from_logits else ops.softmax(x, axis=-1)
            t = np.asarray(target, dtype=np.int64)
            return _np(keras.losses.sparse_categorical_crossentropy(t, y_pred, from_logits=from_logits))
        return run

    def elementwise(f):
        return lambda x: _np(f(x))

    def bce(from_logits):
        def run(x, z):
            """keras.losses.binary_crossentropy means over the last axis: each element is given
            alone, as a (B * n, 1) batch, so the mean of one value is that value."""
            zz = labels_like(z, x).reshape(-1, 1)
            xx = x.reshape(-1, 1)
            y_pred = xx if from_logits else ops.sigmoid(xx)
            return _np(keras.losses.binary_crossentropy(zz, y_pred, from_logits=from_logits)).reshape(x.shape)
        return run

    def smoothed(x, arg):
        def run(rows, t, eps):
            onehot = np.eye(x.shape[-1], dtype=x.dtype)[t]
            return _np(keras.losses.categorical_crossentropy(onehot, x[rows], from_logits=True,
                                                             label_smoothing=eps)).astype(np.float64)
        return by_groups(arg, x.shape[0], run)

    bces = [Adapter(f"keras.losses.binary_crossentropy(from_logits={fl})",
                    f"keras.losses.binary_crossentropy(z, {'x' if fl else 'keras.ops.sigmoid(x)'}, "
                    f"from_logits={fl}) on (B * n, 1)", bce(fl)) for fl in (True, False)]
    ce = []
    for loss, make, y_true in (("categorical_crossentropy", cce, "one_hot(target)"),
                               ("sparse_categorical_crossentropy", scce, "target")):
        for fl in (True, False):
            y_pred = "x" if fl else "keras.ops.softmax(x)"
            ce.append(Adapter(f"keras.losses.{loss}(from_logits={fl})",
                              f"keras.losses.{loss}({y_true}, {y_pred}, from_logits={fl})", make(fl)))
    table = {
        "softmax": [Adapter("keras.ops.softmax", "keras.ops.softmax(x, axis=-1)", softmax)],
        "log_softmax": [Adapter("keras.ops.log_softmax", "keras.ops.log_softmax(x, axis=-1)", log_softmax)],
        "logsumexp": [Adapter("keras.ops.logsumexp", "keras.ops.logsumexp(x, axis=-1)", logsumexp)],
        "cross_entropy": ce,
        "smoothed_cross_entropy": [Adapter(
            "keras.losses.categorical_crossentropy(label_smoothing)",
            "keras.losses.categorical_crossentropy(one_hot(target), x, from_logits=True, "
            "label_smoothing=epsilon)", smoothed)],
        "sigmoid": [Adapter("keras.ops.sigmoid", "keras.ops.sigmoid(x)", elementwise(ops.sigmoid))],
        "log_sigmoid": [Adapter("keras.ops.log_sigmoid", "keras.ops.log_sigmoid(x)",
                                elementwise(ops.log_sigmoid))],
        "softplus": [Adapter("keras.ops.softplus", "keras.ops.softplus(x)", elementwise(ops.softplus))],
        "binary_cross_entropy": bces,
    }
    return table.get(function, [])


__all__ = ["Unavailable", "adapters", "load"]
