"""Library adapters: the implementations people deploy, audited as black boxes.

A library is one module of this package and one line in :data:`LIBRARIES`. The module has

* ``load(device)``: imports the library in numstab's process (nothing is computed there) and
  returns what to record about it (``{"backend": ...}`` or ``{}``); ``ImportError`` when it is
  missing (numstab turns that into a one-line error naming the extra to install), and
  ``Unavailable`` when it cannot run on the ``device`` that was asked for;
* ``adapters(function, device)``: the library's implementations of a numstab function, as
  :class:`Adapter` records (name, what it calls, and ``call(x)`` or ``call(x, arg)`` on numpy
  arrays: ``arg`` is the function's extra argument, e.g. the target indices of cross_entropy).

Every call runs isolated (``numstab.adapters.isolate``): in a forked child process, on private
copies of the inputs (a write into them is a finding), with its prints sent to stderr and the
``--timeout`` applied. The result is correctly rounded into the target format, since libraries
may compute (and return) a wider type: what is measured is what a user gets in that format.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
from dataclasses import dataclass

import numpy as np

from ..adapters import isolate
from ..errors import NumstabError, UsageError, unknown_name
from ..functions import Impl
from ..functions import get as get_function

#: Where a library runs: the CPU, or the first CUDA device (torch and jax).
DEVICES = ("cpu", "cuda")


class Unavailable(NumstabError):
    """The library cannot run what was asked here (no CUDA device, a backend that is missing)."""


@dataclass(frozen=True)
class Library:
    """One library: ``--library NAME``, its adapter module here, the pip extra that installs
    it (``pip install 'numstab[EXTRA]'``), the distributions it needs (the first is the
    library itself: its version is recorded) and the devices its adapters can use."""

    name: str
    module: str
    extra: str
    dists: tuple
    devices: tuple = ("cpu",)


#: Every library adapter: one line each.
LIBRARIES: dict[str, Library] = {lib.name: lib for lib in (
    Library("scipy", "scipy_special", "scipy", ("scipy",)),
    Library("torch", "torch_nn", "torch", ("torch",), ("cpu", "cuda")),
    Library("jax", "jax_nn", "jax", ("jax", "jaxlib"), ("cpu", "cuda")),
    Library("keras", "keras_ops", "keras", ("keras",)),
    Library("onnxruntime", "onnxruntime_ops", "onnxruntime", ("onnxruntime", "onnx")),
)}


@dataclass(frozen=True)
class Adapter:
    """One implementation a library offers: its name in tables, the call it makes, and
    ``call(x)`` / ``call(x, arg)`` (numpy in; anything numpy can read out). ``dtypes``: the
    formats it has kernels for (None: all); others are left out of the audit with a note."""

    name: str
    calls: str
    call: object
    dtypes: tuple | None = None


@dataclass(frozen=True, eq=False)
class LibraryImpl(Impl):
    """An implementation from a library: an Impl that also carries the library's name,
    version, device and the details ``load`` recorded (``library``: ((key, value), ...)) and
    the formats it has kernels for."""

    library: tuple = ()
    dtypes: tuple | None = None

    @property
    def library_info(self) -> dict:
        return dict(self.library)


def names() -> tuple:
    return tuple(LIBRARIES)


def get(name: str) -> Library:
    if name not in LIBRARIES:
        raise unknown_name("library", name, LIBRARIES)
    return LIBRARIES[name]


def version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def check_device(device: str) -> str:
    if device not in DEVICES:
        raise unknown_name("device", device, DEVICES)
    return device


def _module(lib: Library):
    return importlib.import_module(f"{__name__}.{lib.module}")


def _missing(lib: Library, exc: ImportError) -> UsageError:
    what = getattr(exc, "name", None) or lib.name
    return UsageError(f"--library {lib.name}: {what} is not installed (pip install 'numstab[{lib.extra}]')")


def load(name: str, device: str = "cpu") -> tuple:
    """Import the library (and check the device); returns (module, info dict)."""
    lib = get(name)
    check_device(device)
    if device not in lib.devices:
        raise UsageError(f"--library {name} runs on {', '.join(lib.devices)} only, not --device {device}")
    mod = _module(lib)
    try:
        details = mod.load(device)
    except ImportError as exc:
        if (getattr(exc, "name", None) or "").split(".")[0] == "numstab":
            raise  # numstab's own bug, not a missing library
        raise _missing(lib, exc) from None
    except Unavailable as exc:
        raise UsageError(f"--library {name} --device {device}: {exc}") from None
    info = {"name": name, "version": version(lib.dists[0]), "device": device, **(details or {})}
    return mod, info


def library_impls(name: str, function: str, timeout=None, device: str = "cpu") -> list[Impl]:
    """The library's implementations of ``function`` (an empty list if it has none), each
    running isolated, its results rounded into the target format.

    Raises UsageError when the library is not installed or cannot use the device.
    """
    mod, info = load(name, device)
    out = []
    for ad in mod.adapters(function, device):
        label = ad.name if device == "cpu" else f"{ad.name} [{device}]"
        safe = isolate(_rounded(ad.call), label, timeout, readonly=False)
        if _takes(function):
            fn = _with_arg(safe)
        else:
            fn = _without_arg(safe)
        out.append(LibraryImpl(function, label, fn, ad.calls, library=tuple(info.items()),
                               dtypes=ad.dtypes))
    return out


def _with_arg(safe):
    return lambda x, acc, arg: safe(x, arg)


def _without_arg(safe):
    return lambda x, acc: safe(x)


def _takes(function: str) -> bool:
    """Whether the function takes an extra argument besides x (cross_entropy's target...)."""
    return get_function(function).takes is not None


def _rounded(call):
    """call's result, correctly rounded into x's format (libraries may return a wider type)."""

    def run(x, *arg):
        return cast(call(x, *arg), x.dtype)

    return run


def cast(y, dtype) -> np.ndarray:
    """A library's result correctly rounded into the format of ``dtype`` (never through float32)."""
    from ..formats import get_format

    fmt = get_format(np.dtype(dtype).name)
    with np.errstate(all="ignore"):
        return fmt.cast(fmt.round(np.asarray(y).astype(np.float64)))


def labels_like(z, x) -> np.ndarray:
    """binary_cross_entropy's labels in x's shape and format: (B,) labels apply to a whole
    vector, (B, n) to each element; each is rounded correctly into the format (libraries take
    labels of the logits' dtype)."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == x.ndim - 1:
        z = z[..., None]
    return cast(np.broadcast_to(z, x.shape), x.dtype)


def smoothing_groups(arg):
    """(epsilon, rows, targets) per distinct label-smoothing weight of the batch: libraries take one
    float per call (``arg``: the smoothing record, with ``target`` and ``epsilon`` per vector)."""
    target = np.asarray(arg["target"], dtype=np.int64)
    eps = np.asarray(arg["epsilon"], dtype=np.float64)
    return [(float(e), np.nonzero(eps == e)[0], target[eps == e]) for e in np.unique(eps)]


def by_groups(arg, n_rows: int, run) -> np.ndarray:
    """run(rows, targets, epsilon) -> (len(rows),) for each smoothing weight, put back in order."""
    out = np.empty(n_rows, dtype=np.float64)
    for e, rows, t in smoothing_groups(arg):
        out[rows] = np.asarray(run(rows, t, e), dtype=np.float64)
    return out


def info(name: str, device: str = "cpu") -> dict:
    """What numstab records about the library (name, version, device, backend...)."""
    return load(name, device)[1]
