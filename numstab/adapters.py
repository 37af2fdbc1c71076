"""Implementations from outside numstab: user callables and well-known libraries.

A user callable takes a numpy array of the target dtype with the vectors along
the last axis (shape (batch, n)) -- and ``target`` (batch,) for cross_entropy --
and returns an array of the same dtype: (batch, n) for softmax/log_softmax,
(batch,) for logsumexp/cross_entropy. Returning another shape or dtype, or
raising, is a finding, not a crash.

Library adapters (``--library scipy|torch|jax``) call the library on the same
array and cast its result to the target format, since libraries may compute in
a wider type (that is then what is measured).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import numpy as np

from .errors import UsageError
from .kernels import Impl

LIBRARIES = ("scipy", "torch", "jax")


def load_callable(spec: str):
    """'package.module:function' or 'path/to/file.py:function' -> the function."""
    if ":" not in spec:
        raise UsageError(f"--callable {spec!r}: use module:function or path/to/file.py:function")
    mod_name, _, attr = spec.rpartition(":")
    if not mod_name or not attr:
        raise UsageError(f"--callable {spec!r}: use module:function or path/to/file.py:function")
    try:
        if mod_name.endswith(".py") or "/" in mod_name:
            path = Path(mod_name)
            if not path.is_file():
                raise UsageError(f"--callable {spec!r}: no such file {path}")
            name = f"numstab_user_{abs(hash(str(path.resolve())))}"
            s = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(s)
            sys.modules[name] = module
            s.loader.exec_module(module)
        else:
            if "" not in sys.path and "." not in sys.path:
                sys.path.insert(0, "")
            module = importlib.import_module(mod_name)
    except UsageError:
        raise
    except Exception as exc:  # the user's module failed to import: say why in one line
        raise UsageError(f"--callable {spec!r}: cannot import: {type(exc).__name__}: {exc}") from None
    fn = getattr(module, attr, None)
    if fn is None:
        raise UsageError(f"--callable {spec!r}: {mod_name} has no attribute {attr!r}")
    if not callable(fn):
        raise UsageError(f"--callable {spec!r}: {attr!r} is not callable")
    return fn


def user_impl(function: str, fn, name: str) -> Impl:
    if function == "cross_entropy":
        return Impl(function, name, lambda x, acc, target: fn(x, target), f"user callable {name}")
    return Impl(function, name, lambda x, acc: fn(x), f"user callable {name}")


# ------------------------------------------------------------ libraries
def _cast(y, dtype):
    """A library's result, correctly rounded into the target format (not through float32)."""
    from .formats import get_format

    fmt = get_format(np.dtype(dtype).name)
    with np.errstate(all="ignore"):
        return fmt.cast(fmt.round(np.asarray(y).astype(np.float64)))


def _scipy(function: str):
    import scipy.special as sp

    table = {
        "softmax": lambda x, acc: _cast(sp.softmax(x, axis=-1), x.dtype),
        "log_softmax": lambda x, acc: _cast(sp.log_softmax(x, axis=-1), x.dtype),
        "logsumexp": lambda x, acc: _cast(sp.logsumexp(x, axis=-1), x.dtype),
    }
    return table.get(function)


def _torch_tensor(torch, x):
    import ml_dtypes

    if x.dtype == np.dtype(ml_dtypes.bfloat16):
        return torch.from_numpy(x.astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(x))


def _torch_back(t, dtype):
    import torch

    if t.dtype == torch.bfloat16:
        t = t.to(torch.float32)
    return _cast(t.numpy(), dtype)


def _torch(function: str):
    import torch
    import torch.nn.functional as F

    def sm(x, acc):
        return _torch_back(F.softmax(_torch_tensor(torch, x), dim=-1), x.dtype)

    def lsm(x, acc):
        return _torch_back(F.log_softmax(_torch_tensor(torch, x), dim=-1), x.dtype)

    def lse(x, acc):
        return _torch_back(torch.logsumexp(_torch_tensor(torch, x), dim=-1), x.dtype)

    def ce(x, acc, target):
        t = torch.from_numpy(np.asarray(target, dtype=np.int64))
        out = F.cross_entropy(_torch_tensor(torch, x), t, reduction="none")
        return _torch_back(out, x.dtype)

    return {"softmax": sm, "log_softmax": lsm, "logsumexp": lse, "cross_entropy": ce}.get(function)


def _jax(function: str):
    import jax

    # without x64 JAX silently computes float64 inputs in float32: audit what was asked for
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def wrap(f):
        return lambda x, acc: _cast(np.asarray(f(jnp.asarray(x), axis=-1)), x.dtype)

    return {
        "softmax": wrap(jax.nn.softmax),
        "log_softmax": wrap(jax.nn.log_softmax),
        "logsumexp": wrap(jax.nn.logsumexp),
    }.get(function)


def library_impl(library: str, function: str) -> Impl | None:
    """The library's implementation of the function, or None if it has none.

    Raises UsageError when the library is not installed.
    """
    if library not in LIBRARIES:
        from .errors import unknown_name

        raise unknown_name("library", library, LIBRARIES)
    try:
        fn = {"scipy": _scipy, "torch": _torch, "jax": _jax}[library](function)
    except ImportError:
        raise UsageError(f"--library {library}: {library} is not installed") from None
    if fn is None:
        return None
    name = {"scipy": "scipy.special", "torch": "torch.nn.functional", "jax": "jax.nn"}[library]
    if library == "torch" and function == "logsumexp":
        name = "torch"  # torch.logsumexp: nn.functional has none
    return Impl(function, name, fn, f"{name}.{function}")
