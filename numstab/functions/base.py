"""The records of the function registry: :class:`Function` (a definition) and :class:`Impl`
(one implementation of it). No numerics here; see ``numstab/functions/__init__.py``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..steps import DEFAULT_COMPUTE, PLAIN, compute_dtype

#: What a function gives back for a batch x of shape (B, n):
#: ``vector`` one number per vector (B,); ``same`` one per element, coupled along the vector
#: (B, n); ``elementwise`` one per element, each from its own input (B, n).
OUTPUT_KINDS = ("vector", "same", "elementwise")
#: What a function takes besides x, one per vector: ``none``; ``target`` an integer index
#: in [0, n) (B,); ``label`` a real in [0, 1] (B,) or (B, n) for elementwise functions;
#: ``cotangent`` a vector of the format (B, n), the upstream gradient of a backward pass;
#: ``smoothing`` a record of ``target`` (an index) and ``epsilon`` (a label-smoothing weight in
#: [0, 1], an exact format value) per vector (B,).
EXTRA_KINDS = ("none", "target", "label", "cotangent", "smoothing")

#: Every registered function by name, in display order (filled by numstab.functions.register).
RECORDS: dict = {}


@dataclass(frozen=True)
class Function:
    """A function under test: what it is, what it takes, how its exact value is found.

    ``reference`` names the reference layer's formula module, ``numstab.reference.<reference>``,
    which computes the exact values (mpmath enclosures) and a fast rigorous float64 bound of
    every function of its family at once (see ``numstab/reference/__init__.py``).
    ``log_of_zero``: the value an underflowed probability gives in the output when the function
    is a logarithm (-inf for log_softmax and logsumexp; +inf for -log p); None otherwise.
    ``inferred_cause``: the cause given to a black box's inaccurate outputs (causes.infer);
    ``log1p_keeps``: a log1p form keeps the small terms a plain sum absorbs (words of verdicts).
    ``nonzero``: the exact value is never 0 where the reference encloses it in more than the point
    0 (that point being a masked entry's or an infinite input's limit): an output of 0 there has a
    relative error of exactly 1, however far below every format's range the exact value lies
    (softmax of a -1e9 mask, sigmoid(-1e9)), which metrics uses instead of the bounds' ratio.
    ``zero_after_overflow``: an elementwise function whose 0 can follow an overflow (sigmoid's
    1 / (1 + exp(-x)) with exp(-x) = inf); causes.infer calls the others' zeros flushes.
    ``impls``: the built-in implementations, filled by :func:`builtin`.
    """

    name: str
    output: str
    extra: str
    reference: str
    description: str = ""
    log_of_zero: float | None = None
    inferred_cause: str = "rounding"
    log1p_keeps: bool = False
    nonzero: bool = False
    zero_after_overflow: bool = False
    impls: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.output not in OUTPUT_KINDS:
            raise ValueError(f"{self.name}: output {self.output!r} is not one of {OUTPUT_KINDS}")
        if self.extra not in EXTRA_KINDS:
            raise ValueError(f"{self.name}: extra {self.extra!r} is not one of {EXTRA_KINDS}")

    @property
    def per_vector(self) -> bool:
        """One output per vector (the last axis is reduced)."""
        return self.output == "vector"

    @property
    def takes(self) -> str | None:
        """The extra argument's kind, or None."""
        return None if self.extra == "none" else self.extra

    def output_shape(self, shape: tuple) -> tuple:
        """The shape of the output for an input of ``shape`` (vectors along the last axis)."""
        return tuple(shape[:-1]) if self.per_vector else tuple(shape)

    def arg(self, args):
        """This function's extra argument out of ``args`` (see :func:`numstab.functions.as_args`)."""
        return None if self.takes is None else args.get(self.takes)


@dataclass(frozen=True)
class Impl:
    """An implementation of a function.

    ``builtin`` ones are written against ``o`` (numstab.steps) and can be traced step by
    step, so the causes of their failures are established; others (user callables,
    libraries) are black boxes: ``fn(x, acc)``, plus the extra argument when the function
    takes one (``fn(x, acc, target)`` for cross_entropy).
    """

    function: str
    name: str
    fn: Callable
    description: str
    builtin: bool = False
    #: steps a built-in runs on x in the format itself before its kernel, whatever the precision
    #: model (a sampler's ``x / T``: its own tensor in the model's dtype); ``prologue(x, o)``
    prologue: Callable | None = None
    #: how another process (a Dask worker) builds this black box again, without pickling it:
    #: ("callable", function, "module:function" or "/abs/file.py:function", timeout) or
    #: ("library", function, library, name, timeout, device); () where it cannot (a callable
    #: given as an object)
    source: tuple = ()

    @property
    def key(self) -> str:
        return f"{self.function}:{self.name}"

    @property
    def composes(self) -> str | None:
        """The inner function whose output a built-in composition reads as a tensor in the
        format (``log(softmax)``: "softmax"; see :class:`Ops` and :func:`composition`)."""
        return getattr(self.fn, "composes", None)

    @property
    def record(self) -> Function:
        return RECORDS[self.function]

    def __call__(self, x, acc="sequential", target=None, compute=DEFAULT_COMPUTE):
        """Run on ``x`` (target dtype); ``target``: the function's extra argument, if it takes one;
        ``compute``: the precision model of a built-in kernel (steps.COMPUTE_MODELS)."""
        if self.builtin:
            return self.run(x, acc, target, PLAIN, compute)
        if self.record.takes:
            return self.fn(x, acc, target)
        return self.fn(x, acc)

    def run(self, x, acc, target, o, compute=DEFAULT_COMPUTE):
        """A built-in kernel on ``x`` with the operations ``o``; per-vector outputs lose their last axis.

        ``compute="float32"`` (steps.COMPUTE_MODELS): x is widened to float32 (exactly), the
        kernel runs in float32 and only its output is rounded to x's format, a step of its own
        (``o.round_output``); ``"format"``: every operation in x's format. A ``prologue`` runs
        in the format first under both."""
        rec = self.record
        if rec.takes and target is None:
            from ..errors import UsageError

            raise UsageError(f"{rec.name} needs its {rec.takes} argument")
        x = o.wrap(x)
        if self.prologue is not None:
            x = self.prologue(x, o)
        wide = compute_dtype(x.dtype, compute)
        xin = o.cast(x, wide) if wide != x.dtype else x  # widening is exact
        ok = Ops(o, x.dtype if wide != x.dtype else None)
        y = self.fn(xin, acc, target, ok) if rec.takes else self.fn(xin, acc, ok)
        if wide != x.dtype:
            y = o.round_output(y, x.dtype)  # the output, rounded once to the format
        return o.first(y) if rec.per_vector else y


def composition(inner: str):
    """Mark a kernel that feeds the output of the function ``inner`` into another one (it calls
    ``o.tensor(..., inner)`` there): the summaries then name that tensor's flush to 0."""
    def mark(fn):
        fn.composes = inner
        return fn
    return mark


class Ops:
    """The operations a kernel is given: every operation of ``o`` (steps.PLAIN or a
    steps.Tracer), plus ``tensor(a, what)``, the boundary between two functions an
    implementation composes (log of a softmax, -log of a sigmoid, nll of a log_softmax).

    Under ``--compute float32`` a function's kernel runs in float32 and its output is a
    tensor in the format, so where an implementation feeds one function's output into the
    next, that output is rounded to the format there (a traced step of its own, like the
    final output rounding: a probability below the format's smallest subnormal flushes to 0
    before the log, as torch.log(torch.softmax(x)) does for float16 x) and widened again,
    exactly. Under ``--compute format`` (``fmt`` None) every step is already in the format
    and ``tensor`` changes nothing."""

    __slots__ = ("_o", "_fmt")

    def __init__(self, o, fmt):
        self._o, self._fmt = o, fmt

    def __getattr__(self, name):
        return getattr(self._o, name)

    def tensor(self, a, what: str):
        if self._fmt is None:
            return a
        wide = a.dtype
        return self._o.cast(self._o.round_output(a, self._fmt, f"output of {what}"), wide)


def builtin(function: Function, name: str, fn: Callable, description: str) -> Impl:
    """Register a built-in kernel ``fn(x, acc, o)`` (``fn(x, acc, arg, o)`` with an extra argument)."""
    impl = Impl(function.name, name, fn, description, builtin=True)
    function.impls[name] = impl
    return impl
