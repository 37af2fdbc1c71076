"""The operations kernels are written with: plain numpy, or traced step by step.

A built-in kernel is written once against an ``ops`` object (``o.exp(x)``,
``o.div(e, o.sum(e, acc))``, ...). :data:`PLAIN` runs it on numpy arrays of
the target dtype. :class:`Tracer` runs the very same numpy operations (so the
outputs are bit-identical) and, per element, establishes what each step did
in the target format itself -- bfloat16 and float8 included, where numpy only
sees float32:

* **IEEE flags** per row (overflow, underflow, invalid, divide), decided from
  the format's own range: a bfloat16 sum that rounds past bfloat16's max raises
  overflow here even though float32 did not.
* **root**: why a value is special (inf, NaN or a zero that should not be):
  the first step that overflowed (``exp_overflow``: exp of a finite input
  overflowed; ``sum_overflow``: a sum, product or quotient of finite values
  overflowed), flushed a nonzero result to 0 (``underflow``), or an invalid
  operation with no earlier cause (``invalid``). Special values carry their
  root through later steps (x/inf = 0 keeps the overflow's root, inf/inf = NaN
  too, log(0) keeps the flush's root).
* **error attribution** (``attribute=True``): a first-order propagation of every
  step's local rounding error to the outputs, split by category: ``underflow``
  (a result in the subnormal range lost digits), ``absorption`` (an addend
  vanished entirely: fl(a + b) == a with b != 0), ``clipping`` (a clip bound
  replaced the value), ``rounding`` (ordinary rounding), and ``cancellation``:
  an effective subtraction whose result is at least 4x smaller than its
  operands (condition number (|a| + |b|) / |a + b| >= 4) amplifies the rounding
  errors its operands carry, which are then counted as cancellation (a clip's
  replacement of a value stays ``clipping``).

Local errors are measured against a shadow of each step computed from the
same format operands in a wider type (float64; long double for float64).
"""

from __future__ import annotations

import numpy as np

from .results import CAUSES, FLAG_NAMES

# cause codes: 0 = none, else 1 + index in CAUSES
CODE = {c: i + 1 for i, c in enumerate(CAUSES)}
EXP_OVF, SUM_OVF, INVALID, UNDERFLOW, OUT_ROUND = (CODE[c] for c in ("exp_overflow", "sum_overflow",
                                                                       "invalid", "underflow",
                                                                       "output_rounding"))
#: categories of the error attribution, in the order of the last axis of ``T.err``
CATEGORIES = ("underflow", "cancellation", "absorption", "clipping", "rounding")
C_UNF, C_CANC, C_ABS, C_CLIP, C_ROUND = range(len(CATEGORIES))
CATEGORY_CODE = np.array([CODE[c] for c in CATEGORIES], dtype=np.int8)
ACC_MODELS = ("sequential", "pairwise", "float32")
#: Precision models (``--compute``): ``float32`` (the default) -- every intermediate of a
#: float16/bfloat16/float8 kernel in float32, only the output rounded to the format (what torch
#: and jax users see for half types); ``format`` -- every operation rounded to the format (the
#: textbook model of Blanchard, Higham & Higham). For float32 and float64 the two are the same.
COMPUTE_MODELS = ("float32", "format")
DEFAULT_COMPUTE = "float32"
FLAG_BIT = {f: 1 << i for i, f in enumerate(FLAG_NAMES)}
#: condition number of an addition from which its incoming errors count as cancellation
CANCEL_KAPPA = 4.0


# ------------------------------------------------------------------ plain numpy
def compute_dtype(dtype: np.dtype, compute: str) -> np.dtype:
    """The type a kernel's intermediates live in under the precision model."""
    if compute not in COMPUTE_MODELS:
        from .errors import unknown_name

        raise unknown_name("precision model", compute, COMPUTE_MODELS)
    dtype = np.dtype(dtype)
    if compute == "float32" and dtype.itemsize < 4:
        return np.dtype(np.float32)
    return dtype


def acc_dtype(dtype: np.dtype, acc: str) -> np.dtype:
    if acc == "float32" and dtype.itemsize < 4:
        return np.dtype(np.float32)
    return dtype


def acc_sum(a: np.ndarray, acc: str) -> np.ndarray:
    """Sum along the last axis under the accumulation model; result in a's dtype."""
    if acc == "sequential":
        return np.add.accumulate(a, axis=-1)[..., -1]
    if acc == "pairwise":
        while a.shape[-1] > 1:
            k = a.shape[-1] // 2
            head = a[..., 0: 2 * k: 2] + a[..., 1: 2 * k: 2]
            a = np.concatenate([head, a[..., 2 * k:]], axis=-1) if a.shape[-1] % 2 else head
        return a[..., 0]
    if acc == "float32":
        w = acc_dtype(a.dtype, acc)
        return np.sum(a.astype(w), axis=-1, dtype=w).astype(a.dtype)
    from .errors import unknown_name

    raise unknown_name("accumulation model", acc, ACC_MODELS)


def _argmax_mask(x: np.ndarray) -> np.ndarray:
    k = np.argmax(x, axis=-1)[..., None]
    mask = np.zeros(x.shape, dtype=bool)
    np.put_along_axis(mask, k, True, axis=-1)
    return mask


#: A step whose special results (non-finite, or below the normal range) are fewer than one in this
#: many elements has its events, flags and roots found on those elements alone (Tracer._finish)
FEW_SPECIAL = 8

#: float16 bit pattern -> its value in a wider float type: numpy's own conversion of each of the
#: 65,536 patterns, made once per type (:func:`widen`)
_HALF_TABLES: dict = {}


def widen(a, dtype) -> np.ndarray:
    """``a.astype(dtype)``, bit for bit; float16 to a wider float type by a table of numpy's own
    conversions of the 65,536 patterns. numpy converts a float16 subnormal element by element in a
    slow path: 7.5 ms for 2^19 float16 softmax outputs of a 32k vocabulary (most below 2^-14), 2.6
    ms by the table (the outputs' conversion to float64, the tiny test of a step's special results);
    for normal values numpy's conversion is the faster (2.1 ms against 2.8)."""
    a = np.asarray(a)
    dtype = np.dtype(dtype)
    if a.dtype != np.float16 or dtype.kind != "f" or dtype.itemsize < 4 or a.size < 4096:
        return a.astype(dtype)
    table = _HALF_TABLES.get(dtype)
    if table is None:
        with np.errstate(all="ignore"):  # the NaN patterns
            table = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(dtype)
        _HALF_TABLES[dtype] = table
    return table[a.view(np.uint16)]


def narrow(a: np.ndarray, dtype) -> np.ndarray:
    """``a.astype(dtype)``, bit for bit; float32 to float16 without numpy's slow path.

    numpy converts a float32 that lands in float16's subnormal range about 25x slower than a
    normal one (100 ms for 2^20 softmax outputs near exp(-25)). There the result is
    k * 2^-24 with k = rint(|a| * 2^24) (an exact scaling, rounded to nearest even: the one
    correct rounding), and the float16 bit pattern of k * 2^-24 is k itself for k <= 1024
    (k = 1024 is 2^-14, the smallest normal): sign bit | k. Everything else (normal values,
    overflow, infinities, NaN) goes through numpy.
    """
    dtype = np.dtype(dtype)
    if not (a.dtype == np.float32 and dtype == np.float16):
        return a.astype(dtype)
    sub = np.abs(a) < np.float32(2.0**-14)
    if not sub.any():
        return a.astype(dtype)
    out = np.where(sub, np.float32(0), a).astype(dtype)
    k = np.rint(np.abs(a[sub]) * np.float32(2.0**24)).astype(np.uint16)
    out.view(np.uint16)[sub] = k | (np.signbit(a[sub]).astype(np.uint16) << 15)
    return out


class Plain:
    """Kernels' operations on plain numpy arrays of the target dtype."""

    exp = staticmethod(np.exp)
    log = staticmethod(np.log)
    log1p = staticmethod(np.log1p)
    maximum = staticmethod(np.maximum)

    @staticmethod
    def add(a, b, what=None):
        return a + b

    @staticmethod
    def sub(a, b, what=None):
        return a - b

    @staticmethod
    def mul(a, b, what=None):
        return a * b

    @staticmethod
    def div(a, b):
        return a / b

    @staticmethod
    def neg(a):
        return -a

    @staticmethod
    def max(x):
        return np.max(x, axis=-1, keepdims=True)

    @staticmethod
    def sum(a, acc, what=None):
        """Sum along the last axis, kept as a length-1 axis."""
        return acc_sum(a, acc)[..., None]

    @staticmethod
    def drop_argmax(e, x):
        """e with the element at x's (first) argmax set to 0."""
        return np.where(_argmax_mask(x), e.dtype.type(0), e)

    @staticmethod
    def pick(v, target):
        return np.take_along_axis(v, np.asarray(target)[..., None], axis=-1)

    @staticmethod
    def clip(a, lo: float, hi: float):
        lo_, hi_ = _consts(a.dtype, lo, hi)
        return np.minimum(np.maximum(a, lo_), hi_)

    @staticmethod
    def cast(a, dtype):
        return a.astype(dtype)

    @staticmethod
    def round_output(a, dtype, label="output"):
        """A kernel's output computed in a wider type (``--compute float32``), rounded once to
        the format (``label``: which output, for a function's output inside an implementation
        that composes two -- functions.base.Ops.tensor)."""
        return narrow(a, dtype)

    @staticmethod
    def tensor(a, what):
        """A function's output inside a composition: unchanged when every step is in one type
        (functions.base.Ops rounds it to the format under ``--compute float32``)."""
        return a

    @staticmethod
    def ones(like, dtype):
        return np.ones(like.shape, dtype=dtype)

    @staticmethod
    def concat(parts):
        return np.concatenate(parts, axis=-1)

    @staticmethod
    def first(a):
        return a[..., 0]

    @staticmethod
    def wrap(x):
        return x

    @staticmethod
    def length(x) -> int:
        """The length of the vectors (a piece of a long vector answers its vector's:
        numstab.pieces)."""
        return x.shape[-1]

    # elementwise selection and constants (the binary family, the backward passes)
    abs = staticmethod(np.abs)
    minimum = staticmethod(np.minimum)

    @staticmethod
    def nonneg(x):
        """The mask x >= 0 (a plain boolean array: branch selection, not a computed value)."""
        return np.asarray(x) >= 0

    @staticmethod
    def where(mask, a, b):
        """a where mask else b: both branches computed, one kept per element (no arithmetic)."""
        return np.where(mask, a, b)

    @staticmethod
    def const(like, value):
        """``value`` (a number, or an array broadcastable to like's shape) correctly rounded to
        like's format, broadcast to like's shape."""
        c = _consts(like.dtype, np.asarray(value, dtype=np.float64))[0]
        return np.broadcast_to(np.asarray(c, dtype=like.dtype), like.shape).copy()

    @staticmethod
    def put(a, index, value):
        """a with the element ``index`` (one per vector) of the last axis replaced by ``value``."""
        out = np.array(a, copy=True)
        np.put_along_axis(out, np.asarray(index)[..., None], value, axis=-1)
        return out

    @staticmethod
    def drop_at(a, index):
        """a with the element ``index`` (one per vector) set to 0."""
        return Plain.put(a, index, a.dtype.type(0))

    @staticmethod
    def lift(values, like):
        """A second input (targets z, cotangents) into like's dtype, broadcast to like's shape:
        the values are already exact in the format, so the conversion is exact."""
        return np.broadcast_to(np.asarray(values, dtype=np.float64), like.shape).astype(like.dtype)

    @staticmethod
    def argmax(x):
        """The (first) argmax of each vector, a plain index array (structure, not a value)."""
        return np.argmax(x, axis=-1)

    @staticmethod
    def online(x, acc):
        """Running max and rescaled sum, one column after the other (the sequential online
        softmax scan): m' = max(m, x_j); d' = d * exp(m - m') + exp(x_j - m'), d in the
        accumulation type; under ``pairwise``, a tree of pairs (:func:`online_pairs`). Returns
        (m, d cast to x's dtype), each with a length-1 last axis."""
        if acc == "pairwise":
            m, d = online_pairs(x, np.ones(x.shape, dtype=acc_dtype(x.dtype, acc)), PLAIN)
            return m, d.astype(x.dtype)
        return _online_scan(x, acc)[:2]


def online_pairs(m, d, o):
    """The pairwise online softmax: a tree over the nodes (m, d) -- adjacent pairs, an odd last
    node carried up -- in the steps of ``o``: m = max(m1, m2) and d = d1 * exp(m1 - m) +
    d2 * exp(m2 - m), the factors cast to d's type. (A long vector's aligned power-of-two pieces
    reduce to one node each, and the tree over them is the rest of the vector's: numstab.pieces.)"""
    w = d.dtype
    while m.shape[-1] > 1:
        k = m.shape[-1] // 2
        m1, m2 = m[..., 0: 2 * k: 2], m[..., 1: 2 * k: 2]
        d1, d2 = d[..., 0: 2 * k: 2], d[..., 1: 2 * k: 2]
        mm = o.maximum(m1, m2)
        dd = o.add(o.mul(d1, o.cast(o.exp(o.sub(m1, mm)), w)), o.mul(d2, o.cast(o.exp(o.sub(m2, mm)), w)))
        if m.shape[-1] % 2:
            mm = o.concat([mm, m[..., 2 * k:]])
            dd = o.concat([dd, d[..., 2 * k:]])
        m, d = mm, dd
    return m, d


PLAIN = Plain()


#: Vectors at least this long are scanned by runs of their running maximum (:func:`_online_runs`);
#: shorter ones column by column, all vectors of the batch at once
ONLINE_RUNS_MIN = 1024


def _online_scan(x: np.ndarray, acc: str, keep: bool = False, d0=None):
    """The sequential online scan on plain arrays; with ``keep``, also every column's operands
    (running max before and after, running sum before, argmax index after) for the tracer.
    ``d0``: the running sum at the first column (None: 1), which a piece of a long vector starts
    from (numstab.pieces: its first column the running maximum of the columns before it)."""
    w = acc_dtype(x.dtype, acc)
    n = x.shape[-1]
    if n >= ONLINE_RUNS_MIN:
        return _online_runs(x, w, keep, d0)
    m = x[..., 0:1]
    d = np.ones(m.shape, dtype=w) if d0 is None else np.array(d0, dtype=w).reshape(m.shape)
    stacks = None
    if keep:
        shape = x.shape[:-1] + (max(n - 1, 0),)
        stacks = (np.empty(shape, x.dtype), np.empty(shape, x.dtype), np.empty(shape, w),
                  np.empty(shape, np.intp))
        idx = np.zeros(m.shape, dtype=np.intp)
    for j in range(1, n):
        xj = x[..., j: j + 1]
        mn = np.maximum(m, xj)
        if keep:
            stacks[0][..., j - 1: j] = m
            stacks[1][..., j - 1: j] = mn
            stacks[2][..., j - 1: j] = d
            idx = np.where(m >= xj, idx, j)
            stacks[3][..., j - 1: j] = idx
        d = d * np.exp(m - mn).astype(w) + np.exp(xj - mn).astype(w)
        m = mn
    return m, d.astype(x.dtype), d, stacks


def _online_runs(x: np.ndarray, w: np.dtype, keep: bool, d0=None):
    """:func:`_online_scan`'s column-by-column recurrence, the same operations on the same
    operands, a vector at a time by runs of its running maximum m_j = max(m_{j-1}, x_j)
    (np.maximum.accumulate: the same maximum, column after column).

    Where m stays the same finite value, exp(m_{j-1} - m_j) is exp(0) = 1 exactly and d * 1 = d,
    so the step is d_j = d_{j-1} + exp(x_j - m_j): a sequential sum, which np.add.accumulate
    takes with the same additions in the same order. Only the columns where m changes (or is
    not finite: -inf - -inf is NaN) take the whole step d * exp(m_{j-1} - m_j) + exp(x_j - m_j),
    one by one -- a few dozen in a vector of real logits, whose running maximum rarely moves.
    From a NaN on, d stays NaN (NaN * a + b). The argmax index is the last column where x_j
    was not <= the running maximum before it (as ``np.where(m >= x_j, idx, j)`` keeps it)."""
    shape = x.shape
    n = shape[-1]
    xr = x.reshape(-1, n)
    M = np.maximum.accumulate(xr, axis=-1)
    D = np.empty(xr.shape, dtype=w)  # exp(x_j - m_j) first, the running sums d_j in place
    D[:, 0] = 1 if d0 is None else np.asarray(d0, dtype=w).reshape(-1)
    D[:, 1:] = np.exp(xr[:, 1:] - M[:, 1:]).astype(w)
    brk = ~((M[:, 1:] == M[:, :-1]) & np.isfinite(M[:, 1:]))
    for r in range(xr.shape[0]):
        d = D[r]
        pos = np.flatnonzero(brk[r]) + 1
        a = np.exp(M[r, pos - 1] - M[r, pos]).astype(w)
        start = 0
        for i, p in enumerate(pos.tolist()):
            np.add.accumulate(d[start:p], out=d[start:p])
            d[p: p + 1] = d[p - 1: p] * a[i: i + 1] + d[p: p + 1]
            start = p
            if np.isnan(d[p]):
                d[p:] = d[p]
                start = n
                break
        if start < n:
            np.add.accumulate(d[start:], out=d[start:])
    lead = shape[:-1]
    m = M[:, -1:].reshape(lead + (1,))
    d = D[:, -1:].reshape(lead + (1,))
    stacks = None
    if keep:
        cols = np.arange(1, n)
        idx = np.maximum.accumulate(np.where(M[:, :-1] >= xr[:, 1:], 0, cols), axis=-1)
        stacks = tuple(a.reshape(lead + (n - 1,)) for a in (M[:, :-1], M[:, 1:], D[:, :-1], idx))
    return m, d.astype(x.dtype), d, stacks


def _consts(dtype, *values):
    """Constants in the format, correctly rounded, without touching the IEEE flags."""
    from .formats import get_format

    fmt = get_format(np.dtype(dtype).name)
    with np.errstate(all="ignore"):
        return tuple(fmt.cast(fmt.round(np.float64(v)))[()] for v in values)


# ---------------------------------------------------------------------- tracing
class T:
    """A traced value: the format's array, its root cause codes and its error components."""

    __slots__ = ("v", "root", "err")

    def __init__(self, v, root, err):
        self.v, self.root, self.err = v, root, err

    @property
    def shape(self):
        return self.v.shape

    @property
    def dtype(self):
        return self.v.dtype

    def __getitem__(self, key):
        return T(self.v[key], self.root[key], None if self.err is None else self.err[key])


#: A sum's first-order error components (its terms' errors, its own local ones) are totalled by
#: blocks of SEQ_BLOCK columns aligned at column 0: numpy's pairwise reduce within each block, the
#: blocks' totals then added in column order (:class:`Total`). Columns fed a piece at a time
#: (numstab.pieces) give the same totals, bit for bit, at a seventh of the time np.add.accumulate
#: took adding them term after term (a latency-bound chain of float64 additions).
SEQ_BLOCK = 128


class Total:
    """The running total of arrays fed in column order along the last axis: after the columns of a
    whole vector, in one call or a piece at a time, :meth:`value` is :func:`_seq_total` of them all
    (the columns of a block not yet full wait in ``rest``). Immutable: :meth:`feed` returns a new
    Total."""

    __slots__ = ("acc", "rest")

    def __init__(self, acc=None, rest=None):
        self.acc, self.rest = acc, rest  # the full blocks' total (..., 1); the columns after them

    def feed(self, a) -> Total:
        a = np.asarray(a)
        if self.rest is not None and self.rest.shape[-1]:
            a = np.concatenate([self.rest, np.broadcast_to(a, self.rest.shape[:-1] + a.shape[-1:])], axis=-1)
        n = a.shape[-1]
        full = n - n % SEQ_BLOCK
        acc = self.acc
        if full:
            s = np.add.reduce(a[..., :full].reshape(a.shape[:-1] + (full // SEQ_BLOCK, SEQ_BLOCK)), axis=-1)
            if acc is not None:
                s = np.concatenate([acc, s], axis=-1)
            acc = np.add.accumulate(s, axis=-1)[..., -1:].copy()  # (not a view of the block totals)
        return Total(acc, a[..., full:].copy())

    def value(self) -> np.ndarray:
        """The total, keeping the last axis (length 1)."""
        if self.rest is None or (self.acc is not None and not self.rest.shape[-1]):
            return self.acc
        tail = np.add.reduce(self.rest, axis=-1, keepdims=True)
        return tail if self.acc is None else self.acc + tail


def _seq_total(a: np.ndarray) -> np.ndarray:
    """Sum along the last axis keeping it (length 1), by aligned blocks (:class:`Total`)."""
    return Total().feed(a).value()


class Err:
    """The first-order error components of a traced value, one per category (CATEGORIES): an
    array of the value's shape, or None where the component is exactly 0 everywhere.

    Most components are: a kernel with no cancellation, absorption, clipping or underflow
    carries ordinary rounding alone, so propagation works on the components there are. Every
    operation is the per-category formula of the stacked (..., categories) array it replaces,
    with 0.0 for a missing operand -- the same numbers, NaN and infinity included (0 * inf is
    NaN here as there) -- and a result is missing only where the formula gives 0 for zero
    operands. Components are never written in place (they may be shared or broadcast views).
    """

    __slots__ = ("c",)

    def __init__(self, c):
        self.c = tuple(c)

    @staticmethod
    def zero() -> Err:
        return Err((None,) * len(CATEGORIES))

    def __getitem__(self, key):
        return self.map(lambda a: a[key])

    def map(self, f) -> Err:
        """f on every present component (f(0) = 0: missing ones stay missing)."""
        return Err(None if a is None else f(a) for a in self.c)

    def zip(self, other: Err, f, shape=None) -> Err:
        """f(a, b) per category, a missing operand as 0.0 (f(0, 0) = 0: both missing stay
        missing); ``shape``: the results broadcast to it (a per-vector operand's errors)."""
        out = []
        for a, b in zip(self.c, other.c):
            if a is None and b is None:
                out.append(None)
                continue
            out.append(_fit(f(0.0 if a is None else a, 0.0 if b is None else b), shape))
        return Err(out)

    def take(self, k) -> Err:
        """Every component at the indices k along the last axis (np.take_along_axis)."""
        return self.map(lambda a: np.take_along_axis(a, k, axis=-1))

    def put(self, c: int, a) -> Err:
        """These errors with the component c replaced."""
        out = list(self.c)
        out[c] = a
        return Err(out)

    def plus(self, c: int, add, shape=None) -> Err:
        """These errors with ``add`` added to the component c (``add`` None: nothing)."""
        if add is None:
            return self
        a = self.c[c]
        return self.put(c, _fit(add if a is None else a + add, shape))

    def total(self):
        """The sum over the categories, in their order (0.0 when none is present)."""
        s = None
        for a in self.c:
            if a is not None:
                s = a if s is None else s + a
        return 0.0 if s is None else s

    def zeroed(self, mask) -> Err:
        """0 where ``mask`` (every component)."""
        if not np.any(mask):
            return self
        return self.map(lambda a: np.where(mask, 0.0, a))

    def stacked(self, shape) -> np.ndarray:
        """The (shape..., categories) array of the components (missing ones 0)."""
        out = np.zeros(tuple(shape) + (len(CATEGORIES),))
        for i, a in enumerate(self.c):
            if a is not None:
                out[..., i] = a
        return out


def _fit(r, shape):
    """r broadcast to ``shape`` (None: r as it is) -- a per-vector operand's errors beside a
    per-element result's."""
    return r if shape is None or np.shape(r) == shape else np.broadcast_to(r, shape)


def _into(op, a, b):
    """op(a, b) written into a (a fresh temporary) where a has the result's shape; a new array
    where b broadcasts a (a per-vector operand against a per-element one)."""
    return op(a, b, out=a) if a.shape == np.broadcast_shapes(a.shape, b.shape) else op(a, b)


def _quotient_error(fa, fb):
    """The first-order error of a / b per category, f(ea, eb) = ea / fb - eb fa / fb^2 (a missing
    operand's component is 0.0), as ea (1 / fb) + fa (-eb / fb^2): the factors of fb are computed
    at fb's shape, once per row where b is a row's value (softmax's e / S: two passes over the
    elements instead of four), and the same operations on the same values whatever the shapes, so
    a long vector's pieces (numstab.pieces) give the whole vector's bits. NaN and infinities are 0
    (_clean), as is ea's term where fa is not finite (0 fa / fb^2 was NaN there)."""
    with np.errstate(all="ignore"):
        inv, fb2 = 1.0 / fb, fb * fb

    def f(ea, eb):
        out = None
        if np.ndim(ea):
            out = ea * inv
            if np.ndim(eb) == 0 and not np.isfinite(fa).all():
                out = np.where(np.isfinite(fa), out, 0.0)
        if np.ndim(eb):
            t = fa * -(eb / fb2)
            out = t if out is None else _into(np.add, out, t)
        return _clean(out)

    return f


def _special(v):
    return ~np.isfinite(v) | (v == 0)


class _Kinds:
    """Which values of a step's result are non-finite, NaN, zero or below the normal range
    (``below``: finite, |v| < tiny, zero included). A 2-byte format (float16, bfloat16, both with
    infinities) is read from its bit patterns: numpy takes every float16 comparison through
    float32, element by element, and a float16 softmax's outputs are nearly all below the normal
    range, so each test ran on all of them; an integer comparison of the magnitude bits is a
    fraction of that. Other types use the float tests."""

    __slots__ = ("mag", "tb", "ib", "v", "tiny")

    def __init__(self, v, fmt):
        self.v, self.tiny, self.mag = v, fmt.tiny, None
        if v.dtype.itemsize == 2 and fmt.has_inf:
            self.mag = v.view(np.uint16) & np.uint16(0x7FFF)
            self.tb = np.array(fmt.tiny, dtype=v.dtype).view(np.uint16)[()]
            self.ib = np.array(np.inf, dtype=v.dtype).view(np.uint16)[()]

    def spec(self):
        """Non-finite or below the normal range."""
        if self.mag is not None:
            return (self.mag < self.tb) | (self.mag >= self.ib)
        return ~np.isfinite(self.v) | (np.abs(self.v) < self.tiny)

    def take(self, pick):
        """(non-finite, NaN, zero, below) at the elements ``pick`` selects."""
        if self.mag is not None:
            m = pick(self.mag)
            return m >= self.ib, m > self.ib, m == 0, m < self.tb
        v = pick(self.v)
        fin = np.isfinite(v)
        return ~fin, np.isnan(v), v == 0, (np.abs(v) < self.tiny) & fin


def _clean(e: np.ndarray) -> np.ndarray:
    """A propagated error with NaN and infinities (0 * inf, an overflowed product) as 0, in place
    (np.nan_to_num's values, with one test of the common case: every value finite)."""
    if np.ndim(e) == 0:
        return np.nan_to_num(e, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    fin = np.isfinite(e)
    if not fin.all():
        e[~fin] = 0.0
    return e


def _finite(a: np.ndarray) -> np.ndarray:
    """a with its NaN and infinities as 0 (a itself when every value is finite)."""
    fin = np.isfinite(a)
    return a if fin.all() else np.where(fin, a, 0.0)


def _concat_err(parts) -> Err:
    """The errors of traced values joined along the last axis (a missing component as zeros)."""
    out = []
    for i in range(len(CATEGORIES)):
        cs = [p.err.c[i] for p in parts]
        if all(c is None for c in cs):
            out.append(None)
        else:
            out.append(np.concatenate([np.zeros(p.shape) if c is None else np.broadcast_to(c, p.shape)
                                       for p, c in zip(parts, cs)], axis=-1))
    return Err(out)


class Tracer:
    """Runs kernels with the same numpy operations as :data:`PLAIN`, recording what each step did."""

    def __init__(self, fmt, batch: int, attribute: bool = False):
        self.fmt = fmt
        self._dtype = fmt.dtype
        self._formats: dict = {}
        self.attribute = attribute
        self.flags = np.zeros(batch, dtype=np.uint8)  # FLAG_BIT per row
        self.wide = np.dtype(np.float64) if fmt.p <= 24 else np.dtype(np.longdouble)
        #: per step: (label, event, element mask broadcast to the batch's rows) for verdicts
        self.events: list = []

    # -------------------------------------------------------------- helpers
    def wrap(self, x: np.ndarray) -> T:
        return T(x, np.zeros(x.shape, dtype=np.int8), Err.zero() if self.attribute else None)

    def _flag(self, name: str, mask) -> None:
        if mask.any():
            rows = np.asarray(mask).reshape(mask.shape[0], -1).any(axis=1) if np.ndim(mask) else mask
            self.flags[np.broadcast_to(rows, self.flags.shape)] |= FLAG_BIT[name]

    def _w(self, v):
        return np.asarray(v).astype(self.wide)

    def _fmt(self, v):
        """The format a step's result lives in: the target format, or the compute type of the
        precision model (``--compute float32``: float32 intermediates of a float16 kernel)."""
        dt = np.asarray(v).dtype if not isinstance(v, T) else v.dtype
        if dt == self._dtype:
            return self.fmt
        fmt = self._formats.get(dt)
        if fmt is None:
            from .formats import get_format

            fmt = self._formats[dt] = get_format(dt.name)
        return fmt

    def _record(self, label, kind, mask, detail=None):
        if np.any(mask):
            self.events.append((label, kind, np.asarray(mask), detail))

    def _finish(self, label, v, sh, root, err, local_cat=None, operands=(), nonzero=None, what=None):
        """Common bookkeeping of one step: overflow/flush/underflow/invalid events, flags, root.

        ``sh``: the step's result from the same operands in the wide type. Overflow: a
        non-finite result from finite operands whose exact result is beyond max (a pole such
        as log(0) or x/0 is not an overflow); flush: 0 from finite operands where the exact
        result is not 0 (``nonzero``: where the exact result is known to be nonzero, e.g. exp of
        any finite input, even where the wide shadow itself flushed). An invalid result (NaN from
        operands that are not NaN) is an event too, with its operands, labelled by the step and
        ``what`` (its words): the verdict names the operation (0 * -inf, inf - inf, 0/0, inf/inf).
        """
        fmt = self._fmt(v)
        shape = v.shape
        kinds = _Kinds(v, fmt)
        with np.errstate(all="ignore"):
            spec = kinds.spec()
            if not spec.any():
                # nothing special happened in this step (the common case): no event, flag or root;
                # only the attribution's local error, exactly as below (every category C_ROUND
                # without local_cat: the other two get + 0.0)
                if err is not None:
                    err = self._local(err, v, sh, C_ROUND if local_cat is None else local_cat)
                return T(v, np.zeros(shape, dtype=np.int8), err)
        # every event, flag and root below is at an element of ``spec`` (a non-finite result, or one
        # below the normal range): where they are few (the zero of x - max at each row's maximum),
        # the tests run on those elements alone and are put back in place, the same masks
        few = np.count_nonzero(spec) * FEW_SPECIAL < spec.size
        idx = np.nonzero(spec) if few else None

        def pick(a):
            a = np.broadcast_to(a, shape)
            return a[idx] if few else a

        def full(m):
            if not few:
                return m
            out = np.zeros(shape, dtype=bool)
            out[idx] = m
            return out

        vv, shv = pick(v), pick(sh)
        fin_in, nan_in = True, False
        for o in operands:
            o = pick(o)
            fin_in = fin_in & np.isfinite(o)
            nan_in = nan_in | np.isnan(o)
        fin_in = np.broadcast_to(fin_in, vv.shape)
        nan_in = np.broadcast_to(nan_in, vv.shape)
        with np.errstate(all="ignore"):
            v_inf, v_nan, v_zero, v_below = kinds.take(pick)
            big = np.abs(shv) > fmt.max  # an infinite shadow too; a NaN one is not
            # an infinite shadow is beyond max only for the steps whose exact result is then
            # infinite too (exp, a sum, a product), not at a pole
            beyond = big if label in ("exp", "sum", "mul") else big & np.isfinite(shv)
            over = v_inf & fin_in & beyond
            nz = (shv != 0) & np.isfinite(shv) if nonzero is None else pick(nonzero)
            flush = v_zero & nz & fin_in
            # (widen: the results below the normal range are many here, numpy's slow path for float16)
            moved = widen(vv, self.wide) != shv
            tiny = v_below & (moved | flush) & fin_in
            invalid = v_nan & ~nan_in & ~over
        for name, m in (("overflow", over), ("underflow", tiny), ("invalid", invalid)):
            if m.any():
                self._flag(name, full(m))
        if invalid.any():  # the label "op|words" (causes.invalid_words reads it)
            self._record(label if what is None else f"{label}|{what}", "invalid", full(invalid),
                         tuple(np.broadcast_to(np.asarray(o, dtype=np.float64), shape) for o in operands))
        root = np.array(pick(root), dtype=np.int8)
        fresh = root == 0
        # the output rounding (a flush to 0 there is the output's own underflow: a cause of its
        # own); a function's output tensor inside a composition (``output of softmax``) that
        # flushes to 0 is an underflow the next function (a log) then turns into -inf
        boundary = label.startswith("output of ")
        rounding = label == "output" or boundary
        root[over & fresh] = OUT_ROUND if rounding else EXP_OVF if label == "exp" else SUM_OVF
        root[flush & fresh] = OUT_ROUND if label == "output" else UNDERFLOW
        root[v_nan & (root == 0)] = INVALID
        root[~(v_inf | v_zero)] = 0  # only a special result (_special) keeps a root
        if few:
            root, part = np.zeros(shape, dtype=np.int8), root
            root[idx] = part
        arg = None
        for kind, m in (("overflow", over), ("flush", flush)):
            if m.any():
                # an exp's events keep its argument (the verdict names exp(arg), not the function's
                # input), converted once for both kinds; another step's flush keeps the value it
                # flushed (its wide shadow: the verdict names the quotient or product that did)
                if arg is None and (label == "exp" or boundary) and operands:
                    arg = (np.broadcast_to(np.asarray(operands[0], dtype=np.float64), shape),)
                detail = arg
                if kind == "flush" and not (label == "exp" or rounding):
                    detail = (np.broadcast_to(np.asarray(sh, dtype=np.float64), shape),)
                self._record(label, kind, full(m), detail)
        if err is not None:
            with np.errstate(all="ignore"):
                if few and local_cat is None:
                    # the results below the normal range (underflow's local error) and the
                    # non-finite ones (errors zeroed) are among the few special ones
                    err = self._local_below(err, v, sh, tuple(i[v_below] for i in idx))
                    if v_inf.any():
                        err = err.zeroed(full(v_inf))
                else:
                    cat = np.where(np.abs(v) < fmt.tiny, np.int8(C_UNF), np.int8(C_ROUND)) \
                        if local_cat is None else local_cat
                    err = self._local(err, v, sh, cat).zeroed(~np.isfinite(v))
        return T(v, root, err)

    def _local_error(self, v, sh) -> np.ndarray:
        """A step's local rounding error v - sh (its result less its wide shadow) in float64, NaN and
        infinities as 0: what :meth:`_local`, :meth:`_local_below` and the sums add to the errors."""
        return _finite((self._w(v) - sh).astype(np.float64, copy=False))

    def _local_below(self, err: Err, v, sh, below) -> Err:
        """:meth:`_local` with the category underflow at the indices ``below`` (results below the
        normal range) and rounding elsewhere: the same components, written at those few indices."""
        local = self._local_error(v, sh)
        unf = local[below]
        if unf.any():
            part = np.zeros(local.shape)
            part[below] = unf
            err = err.plus(C_UNF, part)
        local[below] = 0.0
        return err.plus(C_ROUND, local) if np.count_nonzero(local) else err

    def _local(self, err: Err, v, sh, cat) -> Err:
        """err plus the step's local error v - sh, in the category ``cat`` (one code, or one per
        element: underflow, rounding or absorption)."""
        with np.errstate(all="ignore"):
            local = self._local_error(v, sh)
            if np.ndim(cat) == 0:  # (an all-zero component other than rounding is left out too)
                return err.plus(cat, local) if cat == C_ROUND or np.count_nonzero(local) else err
            for c in (C_UNF, C_ROUND, C_ABS):
                hit = cat == c
                if hit.any():
                    part = np.where(hit, local, 0.0)
                    if np.count_nonzero(part):  # an all-zero component is left out (as none), not carried on
                        err = err.plus(c, part)
        return err

    def _root_of(self, *ts, v=None):
        """Root of a result from its operands: the first operand root that is set, among the
        operands that can explain the result ``v``: an infinite result comes from an infinite
        (or NaN) operand, never from a zero one (exp(-2152) flushed to 0 plus exp(157) = inf is
        the overflow's inf, not the flush's); a zero or NaN result from any special operand."""
        shape = np.broadcast_shapes(*(t.shape for t in ts))
        root = np.zeros(shape, dtype=np.int8)
        inf_v = None if v is None else np.isinf(v)
        for t in ts:
            if t.root.any():
                set_ = t.root != 0
                if inf_v is not None and inf_v.any():
                    set_ = set_ & ~(inf_v & np.isfinite(t.v))
                root = np.where((root == 0) & set_, t.root, root)
        return root

    def _quick(self, v, attribute_needed: bool):
        """The common case of a step in flags mode: a finite, normal result -- no event, no root."""
        if attribute_needed:
            return None
        with np.errstate(all="ignore"):
            if not _Kinds(v, self._fmt(v)).spec().any():
                return T(v, np.zeros(v.shape, dtype=np.int8), None)
        return None

    def _t(self, a) -> T:
        return a if isinstance(a, T) else self.wrap(np.asarray(a))

    # ------------------------------------------------------------- unary
    def _unary(self, label, f, a, deriv):
        a = self._t(a)
        with np.errstate(all="ignore"):
            v = f(a.v)
            quick = self._quick(v, a.err is not None)
            if quick is not None:
                if label == "log":
                    self._flag("divide", (a.v == 0))
                return quick
            sh = f(self._w(a.v))
            err = None
            if a.err is not None:
                dv = np.asarray(deriv(a.v.astype(np.float64), v.astype(np.float64)), dtype=np.float64)
                f = np.where(np.isfinite(dv), dv, 0.0)
                err = a.err.map(lambda e: e * f)
        root = np.where(_special(v), a.root, 0).astype(np.int8)
        if label == "log":
            self._flag("divide", (a.v == 0))
        if label == "log1p":
            self._flag("divide", (a.v == -1))
        nonzero = {"exp": np.isfinite(a.v), "log": a.v != 1, "log1p": a.v != 0}[label]
        return self._finish(label, v, sh, root, err, operands=(a.v,), nonzero=nonzero)

    def exp(self, a):
        return self._unary("exp", np.exp, a, lambda x, y: y)

    def log(self, a):
        return self._unary("log", np.log, a, lambda x, y: 1.0 / x)

    def log1p(self, a):
        return self._unary("log1p", np.log1p, a, lambda x, y: 1.0 / (1.0 + x))

    def neg(self, a):
        a = self._t(a)
        return T(-a.v, a.root, None if a.err is None else a.err.map(np.negative))

    # ------------------------------------------------------------ binary
    def _addsub(self, label, a, b, sign, what=None):
        a, b = self._t(a), self._t(b)
        with np.errstate(all="ignore"):
            v = a.v + b.v if sign > 0 else a.v - b.v
            quick = self._quick(v, a.err is not None)
            if quick is not None:
                return quick
            wa, wb = self._w(a.v), self._w(b.v)
            sh = wa + wb if sign > 0 else wa - wb
        root = self._root_of(a, b, v=v)
        err = None
        local_cat = None
        if a.err is not None:
            with np.errstate(all="ignore"):
                err = a.err.zip(b.err, np.add if sign > 0 else np.subtract, v.shape)
                # (the wide operands themselves where the wide type is float64)
                fa, fb = (wa, wb) if self.wide == np.float64 else (a.v.astype(np.float64),
                                                                   b.v.astype(np.float64))
                bb = fb if sign > 0 else -fb
                fv = v.astype(np.float64)
                if self._fmt(v).p <= 24:
                    # values of float32 or narrower: their float64 products neither overflow nor
                    # flush, and (|a| + |b|) / |a + b| lies 2^-25 or more from 4 unless it is 4, so
                    # these are the tests below, bit for bit, without the quotient and the signs
                    effective_sub = (fa * bb < 0) & (np.abs(fa) + np.abs(fb) >= CANCEL_KAPPA * np.abs(fv))
                else:
                    kappa = (np.abs(fa) + np.abs(fb)) / np.abs(fv)
                    effective_sub = (np.sign(fa) * np.sign(bb) < 0) & (kappa >= CANCEL_KAPPA)
                effective_sub &= np.isfinite(fa) & np.isfinite(fb)
                if effective_sub.any():
                    # the operands' rounding errors, amplified, become cancellation; a clip's
                    # replacement is no rounding error and stays clipping
                    if any(e is not None for e in err.c):
                        clip = err.c[C_CLIP]
                        moved = err.total() - (0.0 if clip is None else clip)
                        err = err.zeroed(effective_sub).put(C_CLIP, clip)
                        err = err.plus(C_CANC, np.where(effective_sub, moved, 0.0), v.shape)
                absorbed = ((fv == fa) & (bb != 0)) | ((fv == bb) & (fa != 0))
                absorbed &= np.isfinite(fv)
                if absorbed.any():  # else _finish's own categories: the same (underflow, rounding)
                    below = np.where(np.abs(v) < self._fmt(v).tiny, np.int8(C_UNF), np.int8(C_ROUND))
                    local_cat = np.where(absorbed, np.int8(C_ABS), below)
                self._record(what or label, "absorption", absorbed & (fa != 0) & (bb != 0), (fa, bb, fv))
                self._record(what or label, "cancellation", effective_sub, (fa, bb, fv))
        return self._finish("sum" if label == "add" else label, v, sh, root, err, local_cat, (a.v, b.v),
                            what=what)

    def add(self, a, b, what=None):
        return self._addsub("add", a, b, +1, what)

    def sub(self, a, b, what=None):
        return self._addsub("sub", a, b, -1, what)

    def mul(self, a, b, what=None):
        a, b = self._t(a), self._t(b)
        with np.errstate(all="ignore"):
            v = a.v * b.v
            quick = self._quick(v, a.err is not None)
            if quick is not None:
                return quick
            sh = self._w(a.v) * self._w(b.v)
            err = None
            if a.err is not None:
                fa, fb = a.v.astype(np.float64), b.v.astype(np.float64)
                err = a.err.zip(b.err, lambda ea, eb: _clean(_into(np.add, ea * fb, eb * fa)), v.shape)
        return self._finish("mul", v, sh, self._root_of(a, b, v=v), err, operands=(a.v, b.v),
                            nonzero=(a.v != 0) & (b.v != 0), what=what)

    def div(self, a, b):
        a, b = self._t(a), self._t(b)
        with np.errstate(all="ignore"):
            v = a.v / b.v
            quick = self._quick(v, a.err is not None)
            if quick is not None:
                return quick
            sh = self._w(a.v) / self._w(b.v)
            err = None
            if a.err is not None:
                fa, fb = a.v.astype(np.float64), b.v.astype(np.float64)
                err = a.err.zip(b.err, _quotient_error(fa, fb), v.shape)
        self._flag("divide", (b.v == 0) & (a.v != 0) & np.isfinite(a.v))
        # 0/0 and inf/inf keep their operands' roots; x/inf = 0 keeps the inf's root
        return self._finish("div", v, sh, self._root_of(b, a, v=v), err, operands=(a.v, b.v),
                            nonzero=(a.v != 0) & np.isfinite(b.v))

    def maximum(self, a, b):
        a, b = self._t(a), self._t(b)
        pick_a = np.broadcast_to(a.v >= b.v, np.broadcast_shapes(a.shape, b.shape))
        return self._select(pick_a, a, b, np.maximum(a.v, b.v))

    def _select(self, mask, a, b, v):
        root = np.where(mask, np.broadcast_to(a.root, v.shape), np.broadcast_to(b.root, v.shape))
        err = None
        if a.err is not None:
            err = a.err.zip(b.err, lambda ea, eb: np.where(mask, ea, eb), v.shape)
        return T(v, root.astype(np.int8), err)

    # ---------------------------------------------------------- structure
    def max(self, x):
        x = self._t(x)
        k = np.argmax(x.v, axis=-1)[..., None]
        return T(np.take_along_axis(x.v, k, axis=-1), np.take_along_axis(x.root, k, axis=-1),
                 None if x.err is None else x.err.take(k))

    def pick(self, a, target):
        k = np.asarray(target)[..., None]
        return T(np.take_along_axis(a.v, k, axis=-1), np.take_along_axis(a.root, k, axis=-1),
                 None if a.err is None else a.err.take(k))

    def drop_argmax(self, e, x):
        return self._drop(e, _argmax_mask(x.v if isinstance(x, T) else x))

    def _drop(self, e, mask):
        """e with 0 (no root, no error) where ``mask``."""
        v = np.where(mask, e.v.dtype.type(0), e.v)
        err = None if e.err is None else e.err.zeroed(mask)
        return T(v, np.where(mask, 0, e.root).astype(np.int8), err)

    def clip(self, a, lo: float, hi: float):
        a = self._t(a)
        lo_, hi_ = _consts(a.dtype, lo, hi)
        v = np.minimum(np.maximum(a.v, lo_), hi_)
        clipped = v != a.v
        self._record("clip", "clipping", clipped, (a.v.astype(np.float64), v.astype(np.float64)))
        err = None
        if a.err is not None:
            with np.errstate(all="ignore"):
                err = a.err
                if clipped.any():
                    true = a.v.astype(np.float64) - err.total()
                    fix = np.where(clipped, v.astype(np.float64) - true, 0.0)
                    err = err.zeroed(clipped).plus(C_CLIP, fix, v.shape)
        return T(v, np.where(clipped, 0, a.root).astype(np.int8), err)

    def cast(self, a, dtype):
        a = self._t(a)
        dtype = np.dtype(dtype)
        if dtype.itemsize >= a.dtype.itemsize:  # widening: exact
            return T(a.v.astype(dtype), a.root, a.err)
        with np.errstate(all="ignore"):
            v = a.v.astype(dtype)
        return self._finish("sum", v, self._w(a.v), a.root, a.err,
                            operands=(a.v,))

    def round_output(self, a, dtype, label="output"):
        """The output rounding of ``--compute float32``: a traced step of its own (``output``),
        so an output that is finite in float32 and overflows or flushes to 0 only in the format
        has the root ``output_rounding``, and its rounding error (subnormal digits included) is
        attributed like any step's."""
        a = self._t(a)
        with np.errstate(all="ignore"):
            v = narrow(a.v, dtype)
        return self._finish(label, v, self._w(a.v), a.root, a.err,
                            operands=(a.v,), nonzero=(a.v != 0) & np.isfinite(a.v))

    def tensor(self, a, what):
        return a  # see Plain.tensor

    def ones(self, like, dtype):
        return self.wrap(np.ones(like.shape, dtype=dtype))

    def concat(self, parts):
        return T(np.concatenate([p.v for p in parts], axis=-1),
                 np.concatenate([p.root for p in parts], axis=-1),
                 None if parts[0].err is None else _concat_err(parts))

    def first(self, a):
        return a[..., 0]

    def length(self, x) -> int:
        return self._t(x).shape[-1]

    # ------------------------------------------------- selection, constants
    def abs(self, a):
        a = self._t(a)
        neg = np.signbit(a.v)
        return T(np.abs(a.v), a.root, None if a.err is None else a.err.map(lambda e: np.where(neg, -e, e)))

    def minimum(self, a, b):
        a, b = self._t(a), self._t(b)
        pick_a = np.broadcast_to(a.v <= b.v, np.broadcast_shapes(a.shape, b.shape))
        return self._select(pick_a, a, b, np.minimum(a.v, b.v))

    def nonneg(self, x):
        return (x.v if isinstance(x, T) else np.asarray(x)) >= 0

    def where(self, mask, a, b):
        """Selection: the kept branch's value, root and errors; the other branch's events were
        recorded when it was computed, so kernels only select between branches that cannot
        overflow or flush where they are dropped (e.g. both from exp(-|x|))."""
        a, b = self._t(a), self._t(b)
        shape = np.broadcast_shapes(np.shape(mask), a.shape, b.shape)
        mask = np.broadcast_to(mask, shape)
        av, bv = np.broadcast_to(a.v, shape), np.broadcast_to(b.v, shape)
        ta = T(av, np.broadcast_to(a.root, shape), a.err)
        tb = T(bv, np.broadcast_to(b.root, shape), b.err)
        return self._select(mask, ta, tb, np.where(mask, av, bv))

    def const(self, like, value):
        return self.wrap(PLAIN.const(like, value))

    def put(self, a, index, value):
        a, value = self._t(a), self._t(value)
        k = np.asarray(index)[..., None]
        v = np.array(a.v, copy=True)
        np.put_along_axis(v, k, value.v, axis=-1)
        root = np.array(a.root, copy=True)
        np.put_along_axis(root, k, value.root, axis=-1)
        err = None
        if a.err is not None:
            def put(ea, ev):
                out = np.array(np.broadcast_to(ea, a.shape), dtype=np.float64, copy=True)
                np.put_along_axis(out, k, ev, axis=-1)
                return out
            err = a.err.zip(value.err, put)
        return T(v, root, err)

    def lift(self, values, like):
        return self.wrap(PLAIN.lift(values, like))

    def argmax(self, x):
        return np.argmax(x.v if isinstance(x, T) else x, axis=-1)

    def drop_at(self, a, index):
        a = self._t(a)
        return self.put(a, index, self.wrap(np.zeros(a.shape[:-1] + (1,), dtype=a.dtype)))

    # ------------------------------------------------------------ online scan
    def online(self, x, acc):
        """:meth:`Plain.online`, traced without a Python-level step per column: the scan runs on
        plain arrays keeping every column's operands, then each kind of step is replayed once on
        all columns together (same values, so the same flags and events). Roots and errors carry
        along the scan: the running sum's root is the first one set in its final run of special
        values (as step-by-step tracing keeps an operand's root), and its first-order error is
        sum_j c_j * prod_{k > j} exp(m_{k-1} - m_k), c_j the errors made at column j."""
        x = self._t(x)
        if acc == "pairwise":
            m, d = online_pairs(x, self.ones(x, acc_dtype(x.dtype, acc)), self)
            return m, self.cast(d, x.dtype)
        if x.shape[-1] < 2:
            w = acc_dtype(x.dtype, acc)
            return self.max(x), self.cast(self.wrap(np.ones(x.shape[:-1] + (1,), dtype=w)), x.dtype)
        m, d_v, dnew, a64 = self.online_steps(x, acc)
        root = online_root(dnew)
        err = None
        if x.err is not None:
            after = online_after(a64)
            with np.errstate(all="ignore"):
                err = dnew.err.map(lambda e: _clean(_seq_total(e * after))).zeroed(~np.isfinite(d_v))
        return m, self.cast(T(d_v, root, err), x.dtype)

    def online_steps(self, xs, acc, d0=None):
        """The traced steps of the online scan over the columns 1.. of ``xs`` (a T), from its column
        0 with the running sum ``d0`` (None: 1): (the running maximum's element, a T of one column;
        the final running sum in the accumulation type; the running sums d_j (a T, one per scanned
        column); the rescaling factors exp(m_{j-1} - m_j) in float64, NaN and inf as 0)."""
        w = acc_dtype(xs.dtype, acc)
        with np.errstate(all="ignore"):
            _m, _, d_v, stacks = _online_scan(xs.v, acc, keep=True, d0=d0)
        mprev_v, mn_v, dprev_v, idx = stacks
        prev_idx = np.concatenate([np.zeros(idx.shape[:-1] + (1,), np.intp), idx[..., :-1]], axis=-1)

        def gathered(v, k):
            return T(v, np.take_along_axis(xs.root, k, axis=-1),
                     None if xs.err is None else xs.err.take(k))

        mprev, mn = gathered(mprev_v, prev_idx), gathered(mn_v, idx)
        aw = self.cast(self.exp(self.sub(mprev, mn)), w)
        bw = self.cast(self.exp(self.sub(xs[..., 1:], mn)), w)
        dnew = self.add(self.mul(self.wrap(dprev_v), aw), bw)
        a64 = None
        if xs.err is not None:
            with np.errstate(all="ignore"):
                a64 = online_factors(aw.v)
        return gathered(_m, idx[..., -1:]), d_v, dnew, a64

    # ---------------------------------------------------------------- sums
    def sum(self, a, acc, what=None):
        a = self._t(a)
        if acc == "pairwise" or a.shape[-1] == 1:
            while a.shape[-1] > 1:
                k = a.shape[-1] // 2
                head = self.add(a[..., 0: 2 * k: 2], a[..., 1: 2 * k: 2])
                a = self.concat([head, a[..., 2 * k:]]) if a.shape[-1] % 2 else head
            return a
        if acc == "sequential":
            return self._seq_sum(a, what)
        if acc == "float32":
            return self._wide_sum(a, acc, what)
        return PLAIN.sum(a.v, acc)  # raises the unknown-model error

    def _sum_root(self, a, v):
        """Root of a sum: where the sum is special, the first root among the terms that explain
        it (a non-finite sum: the non-finite terms, not a flushed 0 before them; a zero sum: the
        zero terms)."""
        if not a.root.any():  # no term has a root: neither has the sum
            return np.zeros(np.broadcast_shapes(np.shape(v), a.shape[:-1] + (1,)), dtype=np.int8)
        r = np.where(np.where(np.isfinite(v), _special(a.v), ~np.isfinite(a.v)), a.root, 0)
        first = np.argmax(r != 0, axis=-1)[..., None]
        root = np.take_along_axis(r, first, axis=-1)
        return np.where(_special(v), root, 0).astype(np.int8)

    def _seq_sum(self, a, what=None):
        s = self._seq_terms(a, None, what)
        v = s["P"][..., -1:]
        err = abs_local = round_local = None
        absorbed = False
        if a.err is not None:
            with np.errstate(all="ignore"):
                local, absorbed = s["local"], s["absorbed"]
                err = a.err.map(_seq_total)
                # the local errors summed in index order too, as pieces of a long vector carry
                # them (numstab.pieces)
                absorbed = bool(absorbed.any())
                if absorbed:
                    abs_local = _seq_total(np.where(s["absorbed"], local, 0.0))
                round_local = _seq_total(np.where(s["absorbed"], 0.0, local))
        return _seq_close(v, self._sum_root(a, v), s["over"].any(axis=-1, keepdims=True), err, absorbed,
                          abs_local, round_local)

    def _seq_terms(self, a, carry=None, what=None, record: bool = True) -> dict:
        """The sequential sum's running sums ``P`` after ``carry`` (the running sum before a's
        first term, a piece of a long vector (numstab.pieces); None: a's first term starts it) and,
        per added term, ``over`` (the running sum overflowed) and, with errors, its ``local``
        rounding error and ``absorbed`` (the term vanished); the events and flags recorded."""
        if carry is None:
            P = np.add.accumulate(a.v, axis=-1)
            prev, terms, cur = P[..., :-1], a.v[..., 1:], P[..., 1:]
        else:  # the same additions in the same order: the carry in front
            P = np.add.accumulate(np.concatenate([carry, a.v], axis=-1), axis=-1)[..., 1:]
            prev = np.concatenate([carry, P[..., :-1]], axis=-1)
            terms, cur = a.v, P
        out = {"P": P}
        # a running sum that is once infinite or NaN stays so (inf + finite, inf - inf, NaN + any):
        # where every row's last one is finite, every one is, and none overflowed
        finite = not P.shape[-1] or bool(np.isfinite(P[..., -1]).all())
        with np.errstate(all="ignore"):
            sh = self._w(prev) + self._w(terms)
            if finite:
                over = np.zeros(cur.shape, dtype=bool)
            else:
                over = np.isinf(cur) & np.isfinite(prev) & np.isfinite(terms)
                over = over | (np.isnan(cur) & ~np.isnan(prev) & ~np.isnan(terms) & np.isfinite(sh)
                               & (np.abs(sh) > self._fmt(cur).max))
        out["over"] = over
        if record:
            self._flag("overflow", over)
            self._record(what or "sum", "overflow", over)
        if a.err is not None:
            with np.errstate(all="ignore"):
                out["local"] = self._local_error(cur, sh)
                absorbed = (cur == prev) & (terms != 0) & (prev != 0)
                if not finite:
                    absorbed &= np.isfinite(cur)
                out["absorbed"] = absorbed
                if record:
                    self._record(what or "sum", "absorption", absorbed,
                                 (prev.astype(np.float64), terms.astype(np.float64), cur.astype(np.float64)))
        return out

    def _wide_sum(self, a, acc, what=None):
        w = acc_dtype(a.dtype, acc)
        with np.errstate(all="ignore"):
            s = np.sum(a.v.astype(w), axis=-1, dtype=w, keepdims=True)
            v = s.astype(a.dtype)
            sh = np.sum(self._w(a.v), axis=-1, keepdims=True)
            terms_fin = np.isfinite(a.v).all(axis=-1, keepdims=True)
        return self._wide_close(v, sh, terms_fin, self._sum_root(a, v),
                                None if a.err is None else a.err.map(_seq_total), what,
                                lambda: (np.max(a.v, axis=-1, keepdims=True),
                                         (np.count_nonzero(a.v, axis=-1) > 1)[..., None]))

    def _wide_close(self, v, sh, terms_fin, root, err, what, extremes):
        """The end of the ``float32`` model's sum v (its wide shadow sh; ``terms_fin``: every term
        finite; ``root``: :meth:`_sum_root`): the overflow (flag, event, root) and, with ``err`` (the
        terms' errors, summed), its local error as absorption -- v is the largest term and
        ``extremes()`` = (that term, more than one term nonzero) -- or rounding. A long vector's sum
        taken by pieces (numstab.pieces) ends here too."""
        with np.errstate(all="ignore"):
            over = ~np.isfinite(v) & terms_fin & (np.abs(sh) > self._fmt(v).max)
        self._flag("overflow", over)
        self._record(what or "sum", "overflow", over)
        root = np.where((root == 0) & over, SUM_OVF, root).astype(np.int8)
        if err is not None:
            with np.errstate(all="ignore"):
                local = np.where(np.isfinite(v), (self._w(v) - sh).astype(np.float64), 0.0)
                big, others = extremes()
                absorbed = (v == big) & others & (local != 0)
                self._record(what or "sum", "absorption", absorbed,
                             (big.astype(np.float64), (sh - self._w(big)).astype(np.float64),
                              v.astype(np.float64)))
                if absorbed.any():
                    err = err.plus(C_ABS, np.where(absorbed, local, 0.0))
                err = err.plus(C_ROUND, np.where(absorbed, 0.0, local))
        return T(v, root, err)


def online_root(dnew: T, carry=0):
    """The root of the online scan's running sum (its sums ``dnew``, one per scanned column): the
    first root set in the final run of special values -- or, where every column is special, the
    root ``carry`` of the run of the columns before them (a piece of a long vector) when set."""
    spec = _special(dnew.v)
    L = spec.shape[-1]
    every = spec.all(axis=-1)[..., None]
    last_plain = L - 1 - np.argmax(~spec[..., ::-1], axis=-1)
    last_plain = np.where(every[..., 0], -1, last_plain)[..., None]
    cand = (np.arange(L) > last_plain) & (dnew.root != 0)
    first = np.argmax(cand, axis=-1)[..., None]
    root = np.where(cand.any(axis=-1, keepdims=True), np.take_along_axis(dnew.root, first, axis=-1), 0)
    return np.where(every & (np.asarray(carry) != 0), carry, root).astype(np.int8)


def online_factors(a: np.ndarray) -> np.ndarray:
    """The online scan's rescaling factors exp(m_{j-1} - m_j) (in the accumulation type) as the
    errors weigh them: float64, NaN and inf as 0."""
    return np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0)


def online_after(a64: np.ndarray, later=1.0) -> np.ndarray:
    """prod_{k > j} a_k at every scanned column j, taken from the last column back (np.cumprod)
    after ``later``: the product of the factors of the columns beyond these (a long vector's later
    pieces; 1 multiplies exactly, so the factors equal to 1 may be left out of it)."""
    a = a64[..., ::-1]
    start = np.broadcast_to(np.asarray(later, dtype=np.float64), a.shape[:-1] + (1,))
    cum = np.cumprod(np.concatenate([start, a], axis=-1), axis=-1)
    return cum[..., : a.shape[-1]][..., ::-1]


def _seq_close(v, root, over, err, absorbed, abs_local, round_local) -> T:
    """The end of a sequential sum v: its root (``root`` from the terms, :meth:`Tracer._sum_root`;
    ``over``: the running sum overflowed) and, with ``err`` (the terms' errors, summed), the local
    errors summed over the terms, as absorption (where ``absorbed``) and rounding. A long vector's
    sum taken by pieces (numstab.pieces) ends here too."""
    root = np.where((root == 0) & over & _special(v), SUM_OVF, root)
    root = np.where(np.isnan(v) & (root == 0), INVALID, root).astype(np.int8)
    if err is not None:
        with np.errstate(all="ignore"):
            if absorbed:
                err = err.plus(C_ABS, abs_local)
            err = err.plus(C_ROUND, round_local).zeroed(~np.isfinite(v))
    return T(v, root, err)
