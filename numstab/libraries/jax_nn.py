"""jax (``--library jax``): jax.nn, with JAX's x64 mode on (without it JAX silently computes
float64 input in float32), on the CPU or the first CUDA device (``--device cuda``)."""

from __future__ import annotations

import numpy as np

from . import Adapter, Unavailable


def load(device: str) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    if device == "cuda":
        return {"cuda": _check_gpu()}
    return {}


def _check_gpu() -> str:
    """The GPU's name, found in a forked child (JAX's backends must not start in numstab's own
    process: a forked child of a process running XLA's threads can deadlock)."""
    from ..adapters import isolate
    from ..errors import CallableError

    def probe():
        import jax

        try:
            return str(jax.devices("gpu")[0].device_kind)
        except RuntimeError:
            return ""

    try:
        kind = str(isolate(probe, "jax.devices('gpu')", timeout=120)().item())
    except CallableError as exc:
        raise Unavailable(str(exc)) from None
    if not kind:
        raise Unavailable("no CUDA device here (jax.devices('gpu') finds none); run on a machine with an "
                          "NVIDIA GPU and jax[cuda12]")
    return kind


def put(x, device: str):
    import jax
    import jax.numpy as jnp

    if device == "cpu":
        return jnp.asarray(x)
    return jax.device_put(x, jax.devices("gpu")[0])


def adapters(function: str, device: str) -> list[Adapter]:
    import jax
    import jax.numpy as jnp

    from . import cast

    def wrap(f):
        return lambda x: np.asarray(f(put(x, device), axis=-1))

    def elementwise(f):
        return lambda x: np.asarray(f(put(x, device)))

    def nll(x, target):
        """-log_softmax(x)[target], as optax.softmax_cross_entropy_with_integer_labels computes it."""
        t = jnp.asarray(np.asarray(target, dtype=np.int64))[:, None]
        return -jnp.take_along_axis(jax.nn.log_softmax(x, axis=-1), t, axis=-1)[:, 0]

    def cross_entropy(x, target):
        return np.asarray(nll(put(x, device), target))

    def vjp(f):
        def run(x, v):
            _, back = jax.vjp(lambda a: f(a, axis=-1), put(x, device))
            return np.asarray(back(put(cast(v, x.dtype), device))[0])  # a cotangent of the output's dtype
        return run

    def ce_grad(x, target):
        return np.asarray(jax.grad(lambda a: jnp.sum(nll(a, target)))(put(x, device)))

    take = "-take_along_axis(jax.nn.log_softmax(x, axis=-1), target)"
    table = {
        "softmax": [Adapter("jax.nn.softmax", "jax.nn.softmax(x, axis=-1)", wrap(jax.nn.softmax))],
        "log_softmax": [Adapter("jax.nn.log_softmax", "jax.nn.log_softmax(x, axis=-1)",
                                wrap(jax.nn.log_softmax))],
        "logsumexp": [Adapter("jax.nn.logsumexp", "jax.nn.logsumexp(x, axis=-1)", wrap(jax.nn.logsumexp))],
        "cross_entropy": [Adapter("jax.nn.log_softmax[target]", f"{take} (optax's integer-label form)",
                                  cross_entropy)],
        "sigmoid": [Adapter("jax.nn.sigmoid", "jax.nn.sigmoid(x)", elementwise(jax.nn.sigmoid))],
        "log_sigmoid": [Adapter("jax.nn.log_sigmoid", "jax.nn.log_sigmoid(x)",
                                elementwise(jax.nn.log_sigmoid))],
        "softplus": [Adapter("jax.nn.softplus", "jax.nn.softplus(x)", elementwise(jax.nn.softplus))],
        "softmax_backward": [Adapter("jax.vjp(jax.nn.softmax)",
                                     "jax.vjp(jax.nn.softmax(., axis=-1), x)[1](v)", vjp(jax.nn.softmax))],
        "log_softmax_backward": [Adapter("jax.vjp(jax.nn.log_softmax)",
                                         "jax.vjp(jax.nn.log_softmax(., axis=-1), x)[1](v)",
                                         vjp(jax.nn.log_softmax))],
        "cross_entropy_backward": [Adapter("jax.grad(jax.nn.log_softmax[target])",
                                           f"jax.grad(sum({take}))(x)", ce_grad)],
    }
    return table.get(function, [])
