"""The functions under test, as data: one :class:`Function` record per function, and a registry.

The engine (runner, audit, grids, inspect, tables, plots) never tests a function's name: it
asks the record. A record says

* ``output``: ``"vector"`` (one number per vector, e.g. logsumexp), ``"same"`` (one per
  element, coupled along the vector, e.g. softmax) or ``"elementwise"`` (one per element from
  its own input, e.g. sigmoid);
* ``extra``: what it takes besides x: ``"none"``, ``"target"`` (an integer index per vector),
  ``"label"`` (a real in [0, 1]) or ``"cotangent"`` (a vector of the format: a backward pass);
* ``reference``: the name of its exact-formula module in the reference layer,
  ``numstab/reference/<reference>.py`` (mpmath is imported only there);
* its built-in implementations (``impls``), and a few words for verdicts and inferred causes.

How to add a function (or a family of functions sharing one exact formula)
-------------------------------------------------------------------------
1. ``numstab/functions/<family>.py``: the kernels, written against the step interface of
   ``numstab.steps`` as ``def k(x, acc, o)`` (``def k(x, acc, arg, o)`` when the function
   takes an extra argument; ``arg`` is that argument for the batch: (B,) or (B, n)); x has
   shape (B, n), vectors along the last axis; a per-vector result keeps a length-1 last
   axis (the engine strips it). Then the records and their implementations::

       SIGMOID = Function("sigmoid", output="elementwise", extra="none", reference="sigmoid",
                          description="1 / (1 + exp(-x))")
       FUNCTIONS = (SIGMOID,)                     # the registry reads this, in display order
       builtin(SIGMOID, "naive", sigmoid_naive, "1 / (1 + exp(-x))")

2. ``numstab/reference/<reference>.py``: the exact values, in the reference layer (see the
   docstring of ``numstab/reference/__init__.py`` for the contract: ``FUNCTIONS``, a rigorous
   mpmath ``enclose`` and a proven fast float64 bound ``fast_block``). The softmax family's
   module ``numstab/reference/softmax.py`` is the worked example.
3. One line in :data:`MODULES` below.

Nothing else changes: the CLI's choices, compare, inspect, audit, reports and plots follow
the registry. A new *extra* kind (beyond the four above) or output kind is a change to
``base.py`` and to the grid's input generation (``numstab.grids``).
"""

from __future__ import annotations

import importlib

import numpy as np

from ..errors import unknown_name
from .base import EXTRA_KINDS, OUTPUT_KINDS, RECORDS, Function, Impl, builtin

__all__ = ["EXTRA_KINDS", "FUNCTIONS", "MODULES", "OUTPUT_KINDS", "REGISTRY", "Function", "Impl",
           "as_args", "builtin", "get", "get_impl", "names", "register", "take_args"]

#: The function modules of this package, in display order: one line per module.
MODULES = (
    "softmax",
)

#: Every function by name, in display order.
FUNCTIONS: dict[str, Function] = RECORDS
#: The built-in implementations: {function name: {impl name: Impl}} (the records' ``impls``).
REGISTRY: dict[str, dict[str, Impl]] = {}


def register(function: Function) -> Function:
    """Add a record to the registry (the loop below does it for every module of :data:`MODULES`)."""
    FUNCTIONS[function.name] = function
    REGISTRY[function.name] = function.impls
    return function


for _m in MODULES:
    for _f in importlib.import_module(f"{__name__}.{_m}").FUNCTIONS:
        register(_f)


def names() -> tuple:
    """Every function's name, in display order."""
    return tuple(FUNCTIONS)


def get(name: str) -> Function:
    """The record of a function; a clear error naming the choices for an unknown one."""
    if name not in FUNCTIONS:
        raise unknown_name("function", name, tuple(FUNCTIONS))
    return FUNCTIONS[name]


def get_impl(function: str, name: str) -> Impl:
    impls = get(function).impls
    if name not in impls:
        raise unknown_name(f"{function} implementation", name, impls)
    return impls[name]


def as_args(args) -> dict:
    """The extra arguments of a batch as ``{kind: array with one entry (or row) per vector}``.

    A bare array is the target indices (``{"target": array}``), as the softmax family's
    callers always passed them; None is no extra argument.
    """
    if args is None:
        return {}
    if isinstance(args, dict):
        return args
    return {"target": np.asarray(args)}


def take_args(args, rows) -> dict:
    """The extra arguments of some rows of the batch."""
    return {k: np.asarray(v)[rows] for k, v in as_args(args).items()}
