"""One long vector of a function with reductions, evaluated a piece of columns at a time.

A vector longer than a block (stream.BLOCK_ELEMENTS) of softmax, log_softmax, logsumexp,
cross_entropy, smoothed_cross_entropy or cross_entropy_backward is cut in pieces of columns, each
evaluated alone in bounded memory with the figures of the whole vector's evaluation. What a piece
needs of the rest of the vector is its context, learned from passes over the pieces and kept once
per process (:class:`Piece` reads it):

* each built-in kernel's reductions (numstab.pieces: the plan of its flags run and, when a piece
  needs causes, of its attributed run), so the piece's outputs, roots, flags and error
  components are the bits of the whole vector's trace;
* the reference's row quantities at each tier (reference.softmax.piece_rows: the vector's max,
  argmax and sum of exps with its bound), computed when a piece's element first needs that tier,
  and for mpmath the bounds of the sum at each working precision (reference.softmax.Whole): the
  last fast tier's where they are narrow enough, else the exact sum over the vector's distinct
  values;
* for the causes of infinite outputs (causes.attribute), the kinds of events the whole vector's
  attributed run records (an absorption or cancellation in another piece names them).

:func:`pieceable` (with stream.in_pieces and stream's check of the inputs) decides before any work
whether a vector can be so evaluated: the function one of :data:`FUNCTIONS`, every built-in's
kernel piecewise (its steps meet the vector only through the reductions pieces knows, the online
scan included; else pieces.NotPiecewise), black boxes given the whole vector once
(:meth:`Piece.black_box`, with what their inferred causes read of it), whatever the vector's
non-finite entries (masks.VectorFacts, read in one pass by stream). A -inf entry
(a mask) adds no term to the sums, and the outputs the non-finite entries fix
(masks.vector_limits: a mask's limit, NaN, IEEE's +inf, a single finite entry's values, a fully
masked vector's policy) are exact in every piece (reference.escalation.PieceEscalation). Where
the mask layer gives the reference another vector (+inf read as a limit: its k +inf entries as k
zeros, the rest dropped; a fully masked vector under the ``uniform`` policy: n zeros), the
pieces' reference reads that vector (:meth:`Piece.seen`) and the kernels the inputs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .functions import as_args
from .functions import get as get_function
from .pieces import NotPiecewise, PieceTracer, Plan, learn, partition

#: the functions evaluated in pieces (their reference: the softmax family's row quantities, with
#: label smoothing's); the one output of logsumexp and the losses is the same in every piece (each
#: piece's run ends on the whole vector's reductions), and stream counts it once, by the first piece
FUNCTIONS = ("softmax", "log_softmax", "logsumexp", "cross_entropy", "smoothed_cross_entropy",
             "cross_entropy_backward", "softmax_backward", "log_softmax_backward")


@dataclass(frozen=True)
class Cotangent:
    """The cotangent of one long vector (softmax_backward, log_softmax_backward) as
    grids.cotangents makes it for the whole batch, a piece at a time (:meth:`Piece.cotangent`):
    ``values`` (--cotangent v1,...: the vector's n values), ``onehot`` (1 at the first argmax of the
    rounded vector) or ``normal`` (the batch's seeded stream of standard normal draws: ``states``, the
    generator's state at each piece's first column; numpy's Generator draws them one after the other,
    so a piece's draws from its state are the whole row's at its columns)."""

    kind: str
    values: tuple | None = None
    states: tuple = ()


@dataclass(frozen=True)
class LongVector:
    """One long vector, picklable: ``read(c0, c1)`` gives its columns c0..c1-1 as a (1, w) float64
    array of the inputs as given (a stream reader); ``key`` names its content (file, size, time,
    row), so that what one process learned is never used for another vector."""

    read: object
    key: tuple
    n: int
    acc: str
    compute: str
    block: int
    facts: object = None  # masks.VectorFacts (None: every entry finite)
    specials: object = None  # masks.Specials: how its non-finite entries are read
    cotangent: Cotangent | None = None  # the gradients' cotangent (softmax_backward, log_softmax_backward)

    @property
    def bounds(self) -> list:
        """The pieces' column bounds (pieces.partition: the sums' trees cut at their nodes)."""
        return partition(self.n, self.acc, self.block)[0]


def pieceable(function: str, impls, acc: str, compute: str) -> bool:
    """Whether every implementation can be evaluated in pieces: a function of :data:`FUNCTIONS`,
    built-ins whose kernels meet only piecewise reductions (tried on a small vector; a kernel's
    steps do not depend on the format) and black boxes (run once on the whole vector,
    :meth:`Piece.black_box`: they never keep a vector whole)."""
    from .formats import get_format

    if function not in FUNCTIONS:
        return False
    impls = [i for i in impls if i.builtin]
    fmt = get_format("float16")
    rng = np.random.default_rng(0)
    x = fmt.round(rng.normal(0, 3, (1, 1000)))  # several pieces under every model (numpy's: 8 leaves)
    xc = fmt.cast(x)
    takes = get_function(function).takes
    args = {"target": np.array([700])} if takes == "target" else {}
    if takes == "cotangent":  # (a kernel's lift reads the piece's columns of the vector's cotangent)
        args = {"cotangent": fmt.round(rng.normal(0, 1, (1, 1000)))}
    if takes == "smoothing":
        args = {"smoothing": np.rec.fromarrays([np.array([700]), np.array([0.125])], names="target,epsilon")}
    for impl in impls:
        plan = Plan.for_vector(fmt, 1000, acc, 128)

        def run(tr, impl=impl):
            with np.errstate(all="ignore"):
                return impl.run(tr.piece(xc), acc, impl.record.arg(args), tr, compute)

        try:
            learn(plan, run)
        except NotPiecewise:
            return False
    return True


# ---------------------------------------------------------------- what a process learned
@dataclass
class _Learned:
    plans: dict = field(default_factory=dict)  # (impl key, attribute) -> Plan
    rows: dict = field(default_factory=dict)  # tier -> the reference's row quantities
    top: tuple | None = None  # (m, the column of the first argmax)
    xt: dict = field(default_factory=dict)  # target column -> its input
    distinct: tuple | None = None  # (the distinct values, their counts, the maximum's counted out)
    d_sum: tuple | None = None  # sum(x - m), exactly (raw mpf: label smoothing)
    t: dict = field(default_factory=dict)  # working precision -> (tlo, thi) from the distinct values
    events: dict = field(default_factory=dict)  # impl key -> the kinds of events of the attributed run
    cot: object = None  # reference.backward.WholeCotangent (the gradients' cotangent, for mpmath)
    boxes: dict = field(default_factory=dict)  # impl key -> a black box's run on the whole vector
    seen: object = None  # masks.VectorFacts of the vector the reference sees (Piece.seen)


_LEARNED: dict = {}


def forget() -> None:
    """Drop what this process learned (a run's start: the files may have changed)."""
    _LEARNED.clear()


def _learned(vec: LongVector, fmt, scale) -> _Learned:
    key = (vec.key, fmt.name, vec.acc, vec.compute, vec.block, None if scale is None else float(scale))
    if key not in _LEARNED:
        _LEARNED[key] = _Learned()
    return _LEARNED[key]


@dataclass(frozen=True)
class BoxRun:
    """A black box's run on a whole long vector (:meth:`Piece.black_box`): its outputs (float64, None
    where it raised ``error``), the flags it raised, and what causes.infer reads of the whole vector:
    ``xmax``, the largest input (x / T), ``live``, whether any output is finite and nonzero, and
    for label smoothing ``smooth``, causes.smoothing_sums of the vector."""

    y: np.ndarray | None
    flags: tuple
    error: str | None
    xmax: np.ndarray
    live: np.ndarray | None
    per_vector: bool
    smooth: tuple | None = None

    def at(self, c0: int, c1: int):
        """The outputs of the columns c0..c1-1 (a per-vector function's one output)."""
        return self.y if self.y is None or self.per_vector else self.y[:, c0:c1]


# ---------------------------------------------------------------- one piece
class Piece:
    """Piece ``j`` of a long vector, as engine.evaluate and the escalation read it: its kernels'
    tracers (:meth:`tracer`), the vector's row quantities (:meth:`rows`) and its sum's bounds for
    mpmath (:meth:`whole`)."""

    def __init__(self, vec: LongVector, j: int, fmt):
        self.vec, self.j, self.fmt = vec, j, fmt
        self.c0, self.c1 = vec.bounds[j]
        #: how the reference sees the vector (masks.VectorFacts.seen): None, "limit" or "uniform"
        self.kind = None if vec.facts is None else vec.facts.seen(vec.specials)

    def _state(self, args) -> _Learned:
        sc = as_args(args).get("scale")
        return _learned(self.vec, self.fmt, None if sc is None else np.ravel(sc)[0])

    # ------------------------------------------------------------ kernels
    def _run(self, impl, arg):
        fmt, acc, compute = self.fmt, self.vec.acc, self.vec.compute

        per_piece = impl.record.takes == "cotangent"  # (the target of cross-entropy: one per vector)

        def run(tr):
            xc = fmt.cast(self._read(tr.c0, tr.c1))
            a = self.cotangent(tr.c0, tr.c1) if per_piece else arg
            with np.errstate(all="ignore"):
                return impl.run(xc, acc, a, tr, compute)

        return run

    def cotangent(self, c0: int, c1: int) -> np.ndarray:
        """The vector's cotangent at its columns c0..c1-1, (1, w) values of the format: those
        grids.cotangents gives the whole row (:class:`Cotangent`)."""
        from .grids import Extras, cotangents

        cot, fmt, w = self.vec.cotangent, self.fmt, c1 - c0
        if cot.kind == "onehot":  # 1 at the first argmax of the rounded vector
            v = np.zeros((1, w))
            k = self._top({})[1]
            if c0 <= k < c1:
                v[0, k - c0] = 1.0
            return v
        if cot.kind == "values":
            return cotangents(fmt, np.zeros((1, w)), Extras(cotangent=tuple(cot.values[c0:c1])), None)
        j = next(i for i, (a, b) in enumerate(self.vec.bounds) if a <= c0 < b)
        rng = np.random.default_rng(0)
        rng.bit_generator.state = cot.states[j]
        if c0 > self.vec.bounds[j][0]:
            rng.standard_normal(c0 - self.vec.bounds[j][0])  # the draws of the piece's columns before c0
        return cotangents(fmt, np.zeros((1, w)), Extras(cotangent="normal"), rng.standard_normal((1, w)))

    def _read(self, c0, c1):
        from .inputs import round_inputs

        return round_inputs(self.fmt, self.vec.read(c0, c1))

    def seen(self, x: np.ndarray) -> np.ndarray:
        """The values the reference sees of inputs x of this vector (masks.seen_values): x, or where
        the mask layer replaces the vector (+inf read as a limit: 0 at +inf, -inf elsewhere; the
        ``uniform`` policy of a fully masked vector: zeros) that vector's."""
        from .masks import seen_values

        return seen_values(self.kind, x)

    def _seen_read(self, c0, c1):
        return self.seen(self._read(c0, c1))

    def plan(self, impl, arg, args, attribute: bool = False) -> Plan:
        st = self._state(args)
        key = (impl.key, attribute)
        if key not in st.plans:
            plan = Plan.for_vector(self.fmt, self.vec.n, self.vec.acc, self.vec.block, attribute)
            st.plans[key] = learn(plan, self._run(impl, arg))
        return st.plans[key]

    def tracer(self, impl, arg, args, attribute: bool = False) -> PieceTracer:
        """A tracer of this piece for the kernel of ``impl`` (its extra argument ``arg``; ``args``:
        the batch's, for the temperature), every reduction answered by the whole vector's."""
        return PieceTracer(self.plan(impl, arg, args, attribute), self.j)

    def vector_events(self, impl, arg, args) -> list:
        """The kinds of absorption and cancellation events of the whole vector's attributed run
        (as events of one row), for the causes of its infinite outputs (causes._unpropagated)."""
        st = self._state(args)
        if impl.key not in st.events:
            plan = self.plan(impl, arg, args, attribute=True)
            run = self._run(impl, arg)
            kinds = set()
            for j in range(len(plan.bounds)):
                tr = PieceTracer(plan, j)
                run(tr)
                kinds |= {(lb, k) for lb, k, m, _d in tr.events
                          if k in ("absorption", "cancellation") and np.any(m)}
            st.events[impl.key] = [(lb, k, np.ones(1, dtype=bool), None) for lb, k in sorted(kinds)]
        return st.events[impl.key]

    def black_box(self, impl, args, run) -> BoxRun:
        """The run of a black box (a user callable, a library) on the whole vector, once per process:
        it is given the vector as a model would give it, all of its values at once; ``run(xc,
        arg)`` -> (outputs as float64, flags, error: None or its words), engine.run_impl's. Its
        outputs at this piece's columns (a per-vector function's one output) are
        :meth:`BoxRun.at`; ``args``: the batch's (the temperature's T_F as ``scale``). Another vector's
        outputs are dropped then (a piece of it that comes later runs its box again)."""
        st = self._state(args)
        if impl.key not in st.boxes:
            for other in _LEARNED.values():  # only this vector's outputs are kept (bounded memory)
                if other is not st:
                    other.boxes.clear()
            n, a = self.vec.n, as_args(args)
            x = self._read(0, n)
            arg = self.cotangent(0, n) if impl.record.takes == "cotangent" else impl.record.arg(a)
            y, flags, error = run(self.fmt.cast(x), arg)
            with np.errstate(all="ignore"):
                xq = x if "scale" not in a else x / np.ravel(a["scale"])[0]  # engine.scaled's quotients
                xmax = np.max(xq, axis=-1)
                live = None if y is None else (np.isfinite(y) & (y != 0)).reshape(1, -1).any(axis=-1)
            smooth = None
            if impl.record.takes == "smoothing":  # (its sums of -log p over the whole vector)
                from .causes import smoothing_sums

                smooth = smoothing_sums(xq)
            del x, xq
            st.boxes[impl.key] = BoxRun(y, flags, error, xmax, live, impl.record.per_vector, smooth)
        return st.boxes[impl.key]

    # ------------------------------------------------------------ reference
    def _pieces(self):
        """The vector's values as the reference sees them (:meth:`seen`), a piece at a time."""
        for c0, c1 in self.vec.bounds:
            yield c0, self._seen_read(c0, c1)

    def rows(self, tier: int, args) -> dict:
        """The reference's row quantities of the whole vector at ``tier`` (reference.tiers)."""
        from .reference import tiers
        from .reference.softmax import piece_rows

        st = self._state(args)
        if tier not in st.rows:
            a = as_args(args)
            wt = tiers(self.fmt)[tier]
            st.rows[tier] = piece_rows(self.fmt, self._pieces, a, wt, top=self._top(args))
            if "smoothing" in a:  # its sum(x - m) and d at its target too
                from .reference import smoothed

                st.rows[tier].update(smoothed.piece_rows(self.fmt, self._pieces, a, wt, self._top(args)[0]))
            if self.vec.cotangent is not None:  # the cotangent's sums (the gradients with a cotangent)
                from .reference import backward

                st.rows[tier].update(backward.piece_rows(self.fmt, self._pieces_v, wt, *self._top(args)))
        return st.rows[tier]

    def _pieces_v(self):
        for c0, c1 in self.vec.bounds:
            yield c0, self._seen_read(c0, c1), self.cotangent(c0, c1)

    def _top(self, args) -> tuple:
        from .reference.softmax import piece_max

        st = self._state(args)
        if st.top is None:
            st.top = piece_max(self._pieces)
        return st.top

    def _xt(self, args):
        """The input at the target (cross-entropy, label smoothing's), read from its piece once;
        None without one."""
        tg = _target(args)
        if tg is None:
            return None
        t, st = int(np.ravel(tg)[0]), self._state(args)
        if t not in st.xt:
            st.xt[t] = float(self._seen_read(t, t + 1)[0, 0])
        return st.xt[t]

    def limits(self, function: str, x_piece, args, c0: int | None = None) -> tuple:
        """(values, fixed) of the outputs of ``function`` at the columns x_piece (from c0, default
        the piece's first; the values the reference sees, :meth:`seen`) that the vector's non-finite
        entries fix (masks.vector_limits)."""
        from .masks import VectorFacts, vector_limits

        facts = self.vec.facts or VectorFacts(finite=self.vec.n)  # (None: every entry finite)
        if self.kind:
            st = self._state(args)
            if st.seen is None:
                st.seen = facts.seen_facts(self.vec.n, ((c0, v[0]) for c0, v in self._pieces()))
            facts = st.seen
        if facts.finite == 1:  # the only finite entry, as the reference sees it (rounded)
            k = facts.single
            facts = dataclasses.replace(facts, value=float(self._seen_read(k, k + 1)[0, 0]))
        a = as_args(args)
        eps = None if a.get("smoothing") is None else float(np.ravel(a["smoothing"]["epsilon"])[0])
        c0 = self.c0 if c0 is None else c0
        rest = None  # (log_softmax_backward's value at a masked entry: the cotangent there)
        if self.vec.cotangent is not None and facts.finite < self.vec.n:
            rest = self.cotangent(c0, c0 + np.asarray(x_piece).size)
        return vector_limits(function, x_piece, c0, facts, self.vec.specials, _target(args), self._xt(args),
                             "scale" in a, self.vec.n, eps, rest, self.kind)

    def whole(self, args, cols: tuple | None = None):
        """reference.softmax.Whole of this piece (or of its columns ``cols`` = (c0, c1)): the
        vector's m, argmax (in those columns, or -1), n, and the bounds of its sum t at a working
        precision."""
        from .reference.softmax import Whole

        m, k = self._top(args)
        c0, c1 = cols or (self.c0, self.c1)
        local = k - c0 if c0 <= k < c1 else -1
        return Whole(m, local, self.vec.n, lambda prec: self._t(prec, args), self._xt(args),
                     lambda: self._d_sum(args), c0, self._cot(args))

    def _cot(self, args):
        """reference.backward.WholeCotangent of the vector (None without a cotangent): made once."""
        if self.vec.cotangent is None:
            return None
        st = self._state(args)
        if st.cot is None:
            from .reference import tiers
            from .reference.backward import WholeCotangent, piece_rows

            ts = tiers(self.fmt)

            def fast():
                return (self.rows(len(ts) - 1, args), ts[-1]) if ts else None

            top = self._top(args)  # (the first tier's rows, computed before mpmath; or float64's)
            rows = self.rows(0, args) if ts else piece_rows(self.fmt, self._pieces_v, np.dtype(np.float64),
                                                            *top)
            st.cot = WholeCotangent(self._pieces_v, *top, self.vec.n, fast, lambda: self._distinct(args)[0],
                                    st.t, rows)
        return st.cot

    def _distinct(self, args) -> tuple:
        """The vector's distinct finite values and their counts, the maximum's count less one (its
        own term is outside t): one pass over the vector, kept."""
        st = self._state(args)
        if st.distinct is None:
            m, _k = self._top(args)
            vals, cnt = np.zeros(0), np.zeros(0, dtype=np.int64)
            for _c0, xp in self._pieces():
                v, c = np.unique(xp[0][np.isfinite(xp[0])], return_counts=True)  # a mask adds no term
                vals, inv = np.unique(np.concatenate([vals, v]), return_inverse=True)
                cnt = np.bincount(inv.ravel(), weights=np.concatenate([cnt, c]),
                                  minlength=vals.size).astype(np.int64)
            cnt[np.searchsorted(vals, m)] -= 1
            st.distinct = (vals, cnt)
        return st.distinct

    def _d_sum(self, args):
        """sum(x - m) over the vector, exactly (raw mpf; its maximum's own term is 0)."""
        from .reference.smoothed import exact_d_sum

        st = self._state(args)
        if st.d_sum is None:
            st.d_sum = exact_d_sum(*self._distinct(args), self._top(args)[0])
        return st.d_sum

    def _t(self, prec: int, args):
        """Bounds (tlo, thi) on the vector's t for mpmath at ``prec``: the last fast tier's interval
        where its working type is at least that precise, else the exact sum of exps over the
        vector's distinct values (each exp once, at this precision)."""
        from .reference import tiers
        from .reference.softmax import exp_sum, fast_bounds

        ts = tiers(self.fmt)
        if ts:
            bounds = fast_bounds(self.rows(len(ts) - 1, args), ts[-1], prec)
            if bounds is not None:
                return bounds
        st = self._state(args)
        m, _k = self._top(args)
        if prec not in st.t:  # the distinct values read once, whatever the precisions asked later
            sc = as_args(args).get("scale")
            st.t[prec] = exp_sum(*self._distinct(args), m, prec, None if sc is None else np.ravel(sc)[0])
        return st.t[prec]


def _target(args):
    """The target index of a vector's arguments (cross-entropy's, or label smoothing's), or None."""
    a = as_args(args)
    if a.get("target") is not None:
        return a["target"]
    s = a.get("smoothing")
    return None if s is None else np.asarray(s["target"])


def element_reference(vec: LongVector, fmt, function: str, row_arg, col: int):
    """The exact value of the element ``col`` of the vector alone, for its exact string
    (``row_arg``: the vector's extra arguments as stream's candidates keep them): (the value its
    limits fix or None, reference.softmax.Whole of that element)."""
    ra = row_arg if isinstance(row_arg, dict) else {"target": row_arg}  # a bare int: the target
    args = {}
    if "scale" in ra:
        args["scale"] = np.atleast_1d(np.asarray(ra["scale"], dtype=np.float64))
    if "target" in ra and get_function(function).takes == "target":
        args["target"] = np.atleast_1d(np.asarray(ra["target"], dtype=np.int64))
    if "smoothing" in ra:  # label smoothing's record (target, epsilon)
        s = ra["smoothing"]
        args["smoothing"] = np.rec.fromarrays([np.atleast_1d(np.asarray(s["target"], dtype=np.int64)),
                                               np.atleast_1d(np.asarray(s["epsilon"], dtype=np.float64))],
                                              names="target,epsilon")
    j = next(i for i, (c0, c1) in enumerate(vec.bounds) if c0 <= col < c1)
    piece = Piece(vec, j, fmt)
    vals, fixed = piece.limits(function, piece._seen_read(col, col + 1), args, col)
    if fixed[0]:
        return float(vals[0]), None
    return None, piece.whole(args, (col, col + 1))


def is_long(function: str, n: int, block: int) -> bool:
    """A vector of n of ``function`` to be cut in pieces: longer than a block, with reductions."""
    return get_function(function).output != "elementwise" and n > block
