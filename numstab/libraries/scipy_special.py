"""scipy.special (``--library scipy``): numpy code on the input's own dtype."""

from __future__ import annotations

from . import Adapter


def load(device: str) -> dict:
    import scipy.special  # noqa: F401 - ImportError when missing

    return {}


def adapters(function: str, device: str) -> list[Adapter]:
    import scipy.special as sp

    def softmax(x):
        return sp.softmax(x, axis=-1)

    def log_softmax(x):
        return sp.log_softmax(x, axis=-1)

    def logsumexp(x):
        return sp.logsumexp(x, axis=-1)

    def elementwise(name):
        f = getattr(sp, name, None)
        if f is None:  # softplus came with scipy 1.15
            return []
        return [Adapter(f"scipy.special.{name}", f"scipy.special.{name}(x)", lambda x: f(x))]

    table = {
        "sigmoid": elementwise("expit"),
        "log_sigmoid": elementwise("log_expit"),
        "softplus": elementwise("softplus"),
        "softmax": [Adapter("scipy.special.softmax", "scipy.special.softmax(x, axis=-1)", softmax)],
        "log_softmax": [Adapter("scipy.special.log_softmax", "scipy.special.log_softmax(x, axis=-1)",
                                log_softmax)],
        "logsumexp": [Adapter("scipy.special.logsumexp", "scipy.special.logsumexp(x, axis=-1)", logsumexp)],
    }
    return table.get(function, [])
