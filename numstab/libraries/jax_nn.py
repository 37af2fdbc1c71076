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

    def wrap(f):
        return lambda x: np.asarray(f(put(x, device), axis=-1))

    table = {
        "softmax": [Adapter("jax.nn.softmax", "jax.nn.softmax(x, axis=-1)", wrap(jax.nn.softmax))],
        "log_softmax": [Adapter("jax.nn.log_softmax", "jax.nn.log_softmax(x, axis=-1)",
                                wrap(jax.nn.log_softmax))],
        "logsumexp": [Adapter("jax.nn.logsumexp", "jax.nn.logsumexp(x, axis=-1)", wrap(jax.nn.logsumexp))],
    }
    return table.get(function, [])
