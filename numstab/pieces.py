"""One long vector of a function with reductions, traced a piece of columns at a time.

A built-in kernel couples the elements of a vector only through its reductions -- ``o.max``,
``o.sum``, ``o.pick``, ``o.drop_argmax`` -- and every other step is elementwise (or on a
per-vector value). So the kernel run on a piece of the vector, each reduction answered by its
value over the whole vector, computes at the piece's elements the very bits the run on the whole
vector computes: values, roots, error components, flags and events. :class:`PieceTracer` is that
run; :func:`learn` finds the whole-vector answers first, one reduction per pass over the pieces (a
pass runs the kernel on each piece up to the reduction it learns, which every piece feeds, and
stops there), so a kernel with R reductions takes R passes, and memory stays that of one piece.

Each reduction is taken across the pieces in its own order, bit for bit:

* ``max`` and the argmax of ``drop_argmax``: the first maximum (NaN first, as np.argmax);
* ``pick``: the element at the (global) target, read by the piece that holds it;
* ``sum``, ``sequential``: the running sum carried from piece to piece (np.add.accumulate with
  the carry in front adds the same operands in the same order); the error components' totals
  too (steps.Total: by aligned blocks, a short one carried to the next piece);
* ``sum``, ``pairwise`` (the tracer's tree: adjacent pairs, an odd last term carried up): the
  pieces are aligned blocks of 2^k columns, and that tree is the tree of its aligned
  power-of-two blocks folded from the smallest, so each piece sums to one node and the tree over
  the pieces' nodes is the rest of the vector's tree;
* ``sum``, ``float32`` (numpy's own summation: 8 lanes up to 128 terms, halves rounded to a
  multiple of 8 above): the pieces are the nodes of numpy's recursion at the first level where
  they hold at most a block, each summed by numpy itself (``initial=-0.0``: the node's own sum,
  exactly), and the nodes above are added as numpy adds them, then to numpy's initial 0.

* ``online`` (the online softmax's running max and rescaled sum, :meth:`steps.Tracer.online`):
  sequentially, the scan's state carried from piece to piece (the running maximum's element in
  front of the piece, the running sum it starts from: the same operations on the same operands),
  and for the errors a second pass weighing each piece's by the product of the later pieces'
  rescaling factors; ``pairwise``, one node of the tree per aligned piece, as for the sum.

``put`` (and ``drop_at``) at an index and ``argmax`` read the index in the whole vector: the piece
that holds it puts the value there. A step that needs the whole vector in another way
(``o.concat``, an operand of another length) raises :class:`NotPiecewise`: such a kernel is
evaluated whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .steps import (
    CATEGORIES,
    SEQ_BLOCK,
    Err,
    T,
    Total,
    Tracer,
    _clean,
    _online_scan,
    _seq_close,
    _special,
    acc_dtype,
    online_after,
    online_factors,
    online_pairs,
    online_root,
)

#: numpy's pairwise summation sums at most this many terms without splitting (PW_BLOCKSIZE)
NP_LEAF = 128


class NotPiecewise(Exception):
    """A kernel step that needs the whole vector at once: the kernel is evaluated whole."""


class _Fed(Exception):
    """Stops a learning run once the piece has fed the reduction being learned."""


# ------------------------------------------------------------------ partitions
def _np_tree(lo: int, n: int, most: int):
    """numpy's pairwise recursion over [lo, lo + n), cut where a node holds at most ``most``
    terms: a leaf (lo, lo + n), or (left, right)."""
    if n <= max(most, NP_LEAF):
        return (lo, lo + n)
    n2 = n // 2
    n2 -= n2 % 8
    return (_np_tree(lo, n2, most), _np_tree(lo + n2, n - n2, most))


def _leaves(tree) -> list:
    if isinstance(tree[0], int):
        return [tree]
    return _leaves(tree[0]) + _leaves(tree[1])


def partition(n: int, acc: str, block: int):
    """(the pieces' column bounds, numpy's tree over them or None) for a vector of n under the
    accumulation model ``acc`` with pieces of at most ``block`` columns."""
    if acc == "float32":
        tree = _np_tree(0, n, block)
        return _leaves(tree), tree
    size = block
    if acc == "pairwise":
        size = 1 << max(0, int(block).bit_length() - 1)  # aligned power-of-two blocks
    return [(c, min(n, c + size)) for c in range(0, n, size)], None


@dataclass
class _Red:
    """A learned reduction: its result over the whole vector and what each piece's own part of it
    needs again in the final runs (``carry``: the sequential sum before the piece; ``emit``: the
    events and flag bits of the vector-level steps, recorded again in every piece)."""

    kind: object
    result: object
    carry: dict = field(default_factory=dict)
    emit: tuple = ((), 0)
    later: dict = field(default_factory=dict)  # the online scan: piece -> its later pieces' factors


@dataclass
class Plan:
    """The reductions of one kernel over one long vector, learned by :func:`learn`."""

    fmt: object
    n: int
    acc: str
    bounds: list
    tree: object = None
    attribute: bool = False
    reductions: list = field(default_factory=list)
    _collector: object = None

    @classmethod
    def for_vector(cls, fmt, n: int, acc: str, block: int, attribute: bool = False) -> Plan:
        bounds, tree = partition(n, acc, block)
        return cls(fmt, n, acc, bounds, tree, attribute)


def learn(plan: Plan, run) -> Plan:
    """Learn every reduction of a kernel: ``run(tracer)`` runs the kernel on the piece the tracer
    is for (:meth:`PieceTracer.piece`). One pass over the pieces per reduction."""
    while True:
        plan._collector = None
        for j in range(len(plan.bounds)):
            try:
                run(PieceTracer(plan, j, learning=True))
            except _Fed:
                continue
            if j:
                raise NotPiecewise("the kernel meets its reductions differently in different pieces")
            plan._collector = None
            return plan
        plan.reductions.append(plan._collector.finish())


# ------------------------------------------------------------------ collectors
def _first_root(r) -> int:
    nz = np.flatnonzero(r)
    return int(r.ravel()[nz[0]]) if nz.size else 0


def _add_total(carry, add, start: int, width: int):
    """A running total (steps.Total; None: none yet) of one error component, one piece more:
    ``add``, the component at the summed columns start..start+width-1 (None where it is all zeros
    there). The whole vector's blocks are aligned at its first summed column and hold every
    column: a piece without the component adds its zeros, and a total begun in a later piece first
    takes the zeros of the columns before it in its block (full blocks of zeros add nothing)."""
    if add is None:
        return None if carry is None else carry.feed(np.zeros(carry.rest.shape[:-1] + (width,)))
    if carry is None:
        carry = Total(None, np.zeros(np.shape(add)[:-1] + (start % SEQ_BLOCK,)))
    return carry.feed(add)


def _value(total):
    """The value of a running total (steps.Total; None: none)."""
    return None if total is None else total.value()


class _Terms:
    """What every sum keeps of its terms across the pieces: the first root among its special
    terms and among its non-finite ones (:meth:`steps.Tracer._sum_root` picks by the sum), and the
    running totals of the terms' error components (steps.Total)."""

    def __init__(self, plan, kind):
        self.plan, self.kind = plan, kind
        self.root_special = self.root_inf = 0
        self.err = [None] * len(CATEGORIES)

    def _take(self, tr, a) -> None:
        if not self.root_special:
            self.root_special = _first_root(np.where(_special(a.v), a.root, 0))
        if not self.root_inf:
            self.root_inf = _first_root(np.where(~np.isfinite(a.v), a.root, 0))
        if a.err is not None:
            self.err = [_add_total(c, e, tr.c0, tr.c1 - tr.c0) for c, e in zip(self.err, a.err.c)]

    def _root(self, v):
        root = np.int8(self.root_special if np.isfinite(v).all() else self.root_inf)
        return np.where(_special(v), root, 0).astype(np.int8)

    def _errors(self):
        return Err([_value(c) for c in self.err]) if self.plan.attribute else None


class _Arg:
    """The first maximum of the vector (np.argmax: the first NaN if any): its index and its
    element (a T of one column)."""

    def __init__(self, plan, kind):
        self.plan, self.kind = plan, kind
        self.best, self.at, self.item = None, -1, None

    def feed(self, tr, x):
        v = x.v if isinstance(x, T) else np.asarray(x)
        k = int(np.argmax(v[0]))
        b = v[0, k]
        take = self.best is None or (not np.isnan(self.best) and (np.isnan(b) or b > self.best))
        if take:
            self.best, self.at = b, tr.c0 + k
            self.item = x[..., k: k + 1] if isinstance(x, T) else None

    def finish(self):
        return _Red(self.kind, self.item if self.kind == "max" else self.at)


class _Pick:
    def __init__(self, plan, kind):
        self.kind, self.item = kind, None

    def feed(self, tr, a, target):
        t = int(np.asarray(target).ravel()[0])
        if tr.c0 <= t < tr.c1:
            self.item = a[..., t - tr.c0: t - tr.c0 + 1]

    def finish(self):
        if self.item is None:
            raise NotPiecewise("the target lies outside the vector")
        return _Red(self.kind, self.item)


class _SeqSum(_Terms):
    """The sequential sum: the running sum carried from piece to piece."""

    def __init__(self, plan, kind):
        super().__init__(plan, kind)
        self.value, self.carry = None, {}
        self.over = self.absorbed = False
        self.abs_local = self.round_local = None

    def feed(self, tr, a, what):
        self.carry[tr.j] = self.value
        s = tr._seq_terms(a, self.value, what, record=False)
        self.value = s["P"][..., -1:].copy()  # kept per piece (carry): not a view of the piece's sums
        self._take(tr, a)
        self.over |= bool(s["over"].any())
        if a.err is not None:
            absorbed, local = s["absorbed"], s["local"]
            self.absorbed |= bool(absorbed.any())
            # the additions are at the vector's columns 1..: this piece's from column max(c0, 1)
            start, w = max(tr.c0 - 1, 0), local.shape[-1]
            self.abs_local = _add_total(self.abs_local, np.where(absorbed, local, 0.0), start, w)
            self.round_local = _add_total(self.round_local, np.where(absorbed, 0.0, local), start, w)

    def finish(self):
        v = self.value
        return _Red(self.kind, _seq_close(v, self._root(v), self.over, self._errors(), self.absorbed,
                                          _value(self.abs_local), _value(self.round_local)), self.carry)


class _TreeSum:
    """The tracer's pairwise tree: one node per aligned piece, then the tree over the nodes."""

    def __init__(self, plan, kind):
        self.plan, self.kind, self.nodes = plan, kind, []

    def feed(self, tr, a, what):
        self.nodes.append(tr._inner_sum(a, "pairwise", what))

    def finish(self):
        tr = Tracer(self.plan.fmt, 1, attribute=self.plan.attribute)
        top = self.nodes[0]
        if len(self.nodes) > 1:
            top = tr.sum(tr.concat(self.nodes), "pairwise")
        return _Red(self.kind, top, emit=(tuple(tr.events), int(tr.flags[0])))


class _NumpySum(_Terms):
    """numpy's pairwise summation (the ``float32`` model): each piece a node of numpy's tree."""

    def __init__(self, plan, kind):
        super().__init__(plan, kind)
        self.s, self.sh = {}, {}
        self.big = None
        self.nonzero = 0
        self.finite = True
        self.dtype = self.what = None

    def feed(self, tr, a, what):
        w = acc_dtype(a.dtype, self.plan.acc)
        self.dtype, self.what = a.dtype, what
        with np.errstate(all="ignore"):
            self.s[tr.bounds] = np.add.reduce(a.v.astype(w), axis=-1, dtype=w, initial=-0.0, keepdims=True)
            self.sh[tr.bounds] = np.add.reduce(tr._w(a.v), axis=-1, initial=-0.0, keepdims=True)
            big = np.max(a.v, axis=-1, keepdims=True)
        self.big = big if self.big is None else np.maximum(self.big, big)
        self.nonzero += int(np.count_nonzero(a.v))
        self.finite &= bool(np.isfinite(a.v).all())
        self._take(tr, a)

    def _up(self, node, vals):
        if isinstance(node[0], int):
            return vals[node]
        return self._up(node[0], vals) + self._up(node[1], vals)

    def finish(self):
        tr = Tracer(self.plan.fmt, 1, attribute=self.plan.attribute)
        with np.errstate(all="ignore"):
            s = self._up(self.plan.tree, self.s)
            s = s + s.dtype.type(0.0)  # numpy's initial 0 (a sum of -0.0 terms is +0.0)
            sh = self._up(self.plan.tree, self.sh)
            sh = sh + sh.dtype.type(0.0)
            v = s.astype(self.dtype)
        top = tr._wide_close(v, sh, np.array([[self.finite]]), self._root(v), self._errors(), self.what,
                             lambda: (self.big, np.array([[self.nonzero > 1]])))
        return _Red(self.kind, top, emit=(tuple(tr.events), int(tr.flags[0])))


_SUMS = {"sequential": _SeqSum, "pairwise": _TreeSum, "float32": _NumpySum}


def _online_close(plan, state, err, dtype) -> _Red:
    """The online scan's result (the running maximum's element, the running sum cast to the
    input's type) from its final state, and the events and flags of that cast."""
    m, d, root = state
    tr = Tracer(plan.fmt, 1, attribute=plan.attribute)
    d = tr.cast(T(d, root, err), dtype)
    return _Red(None, (m, d), emit=(tuple(tr.events), int(tr.flags[0])))


def _online_state(xs, acc, d0):
    """(the state after the plain online scan of xs from d0, None, the factors in float64 where xs
    carries errors) -- or None where the running sum leaves the finite numbers (inf and NaN stay:
    the traced steps then find its root). A finite running sum is never special (it is at least 1:
    every step adds exp(0) = 1 or keeps d), so its root is 0."""
    w = acc_dtype(xs.dtype, acc)
    with np.errstate(all="ignore"):
        _m, _, d, (mprev, mn, _dprev, idx) = _online_scan(xs.v, acc, keep=True, d0=d0)
        if not np.isfinite(d).all():
            return None
        k = idx[..., -1:]
        m = T(np.take_along_axis(xs.v, k, axis=-1), np.take_along_axis(xs.root, k, axis=-1),
              None if xs.err is None else xs.err.take(k))
        a64 = None
        if xs.err is not None:  # Tracer.online_steps' factors: cast(exp(m_{j-1} - m_j), w), in float64
            a64 = online_factors(np.exp(mprev - mn).astype(w))
    return (m, d.copy(), np.zeros((1, 1), np.int8)), None, a64


class _TreeOnline:
    """The pairwise online softmax (steps.online_pairs): one node (m, d) per aligned piece, then
    the tree over the nodes, its sum cast to the input's type."""

    def __init__(self, plan, kind):
        self.plan, self.kind, self.nodes, self.dtype = plan, kind, [], None

    def feed(self, tr, x, acc):
        self.dtype = x.dtype
        self.nodes.append(tr._inner_online(x, acc))

    def finish(self):
        tr = Tracer(self.plan.fmt, 1, attribute=self.plan.attribute)
        m, d = self.nodes[0]
        if len(self.nodes) > 1:
            ms, ds = zip(*self.nodes)
            m, d = online_pairs(tr.concat(ms), tr.concat(ds), tr)
        d = tr.cast(d, self.dtype)
        return _Red(self.kind, (m, d), emit=(tuple(tr.events), int(tr.flags[0])))


class _Online:
    """The sequential online scan (``o.online``): its state carried from piece to piece -- the
    running maximum's element (value, root, errors), the running sum in the accumulation type, the
    root of the sum's final run of special values -- and each piece's rescaling factors other than
    1, whose products over the later columns weigh the errors (:func:`steps.online_after`)."""

    def __init__(self, plan, kind):
        self.plan, self.kind = plan, kind
        self.state, self.carry, self.factors, self.dtype = None, {}, {}, None

    def feed(self, tr, x, acc):
        self.carry[tr.j] = self.state
        self.dtype = x.dtype
        self.state, _dnew, a64 = tr._online_piece(x, acc, self.state, state_only=True)
        if a64 is not None:
            self.factors[tr.j] = a64[a64 != 1.0]

    def finish(self):
        later, p = {}, np.float64(1.0)
        for j in reversed(range(len(self.plan.bounds))):
            later[j] = p
            for f in self.factors.get(j, np.zeros(0))[::-1]:
                p = p * f  # np.cumprod's order: from the last column back
        self.carry[len(self.plan.bounds)] = self.state  # after the last piece
        red = _online_close(self.plan, self.state, None, self.dtype)
        red.kind, red.carry, red.later = self.kind, self.carry, later
        return red


class _OnlineErr:
    """The online scan's first-order error (attribution): sum_j c_j * prod_{k > j} a_k summed
    column after column across the pieces (the scan's state and factors learned first)."""

    def __init__(self, plan, kind):
        self.plan, self.kind = plan, kind
        self.err, self.scan = [None] * len(CATEGORIES), None

    def feed(self, tr, x, acc, scan):
        self.scan = scan
        _state, dnew, a64 = tr._online_piece(x, acc, scan.carry[tr.j])
        if dnew is not None:
            with np.errstate(all="ignore"):
                after = online_after(a64, scan.later[tr.j])
                # the scanned columns are the vector's 1..: this piece's from column max(c0, 1)
                start, w = max(tr.c0 - 1, 0), dnew.shape[-1]
                self.err = [_add_total(c, None if e is None else e * after, start, w)
                            for c, e in zip(self.err, dnew.err.c)]

    def finish(self):
        m, d, root = self.scan.carry[len(self.plan.bounds)]
        err = Err([_value(c) for c in self.err]).map(_clean).zeroed(~np.isfinite(d))
        red = _online_close(self.plan, (m, d, root), err, self.scan.result[1].dtype)
        red.kind = self.kind
        return red


# ------------------------------------------------------------------ the tracer
class PieceTracer(Tracer):
    """A :class:`steps.Tracer` on the piece ``j`` of one long vector (its input has one row, the
    piece's columns): every step as the whole vector's trace takes it, each reduction answered from
    the plan (``learning``: the first one the plan lacks is fed instead, and the run stops)."""

    def __init__(self, plan: Plan, j: int, learning: bool = False):
        super().__init__(plan.fmt, 1, attribute=plan.attribute)
        self.plan, self.j, self.learning = plan, j, learning
        self.c0, self.c1 = plan.bounds[j]
        self._k = 0
        self._inner = 0

    @property
    def bounds(self) -> tuple:
        return (self.c0, self.c1)

    @property
    def width(self) -> int:
        return self.c1 - self.c0

    def piece(self, a):
        """The piece's columns of an array over the whole vector."""
        return a[..., self.c0: self.c1]

    def _next(self, kind, make, *feed):
        """The learned reduction ``kind`` next in the kernel's order; or, learning, feed the
        first one the plan lacks and stop the run."""
        k = self._k
        self._k += 1
        reds = self.plan.reductions
        if k < len(reds):
            if reds[k].kind != kind:
                raise NotPiecewise("the kernel meets its reductions differently in different pieces")
            return reds[k]
        if not self.learning:
            raise NotPiecewise(f"a reduction ({kind}) the plan has not learned")
        if self.plan._collector is None:
            self.plan._collector = make(self.plan, kind)
        self.plan._collector.feed(self, *feed)
        raise _Fed

    def _whole(self, *ts):
        """Refuse an operand that is neither the piece nor one value per vector (inside a step's
        own work on the piece, :meth:`_inner_sum`, any)."""
        if self._inner:
            return
        for t in ts:
            w = np.shape(t.v if isinstance(t, T) else t)[-1:]
            if w and w[0] not in (1, self.width):
                raise NotPiecewise("a step on part of the vector")

    def _emit(self, red) -> None:
        events, flags = red.emit
        self.events.extend(events)
        self.flags |= np.uint8(flags)

    # ---------------------------------------------------------- reductions
    def max(self, x):
        if self._inner:
            return super().max(x)
        x = self._t(x)
        self._whole(x)
        return self._next("max", _Arg, x).result

    def pick(self, a, target):
        if self._inner:
            return super().pick(a, target)
        self._whole(a)
        return self._next("pick", _Pick, a, target).result

    def drop_argmax(self, e, x):
        xv = x.v if isinstance(x, T) else np.asarray(x)
        self._whole(e, xv)
        k = self._next("argmax", _Arg, xv).result
        mask = np.zeros(np.shape(e.v), dtype=bool)
        if self.c0 <= k < self.c1:
            mask[..., k - self.c0] = True
        return self._drop(e, mask)

    def sum(self, a, acc, what=None):
        if self._inner:
            return super().sum(a, acc, what)
        if acc not in _SUMS:
            return super().sum(a, acc, what)  # raises the unknown-model error
        if acc != self.plan.acc:
            raise NotPiecewise("a sum under another accumulation model than the pieces'")
        a = self._t(a)
        self._whole(a)
        red = self._next(("sum", acc), _SUMS[acc], a, what)
        if not self.learning:  # the piece's own part of the sum: its steps' events and flags
            if acc == "sequential":
                self._seq_terms(a, red.carry.get(self.j), what)
            elif acc == "pairwise":
                self._inner_sum(a, "pairwise", what)
            self._emit(red)
        return red.result

    def _inner_sum(self, a, acc, what):
        self._inner += 1
        try:
            return Tracer.sum(self, a, acc, what)
        finally:
            self._inner -= 1

    # ------------------------------------------- steps on the whole vector
    def length(self, x) -> int:
        self._whole(x)
        return self.plan.n

    def first(self, a):
        self._whole(a)
        if a.shape[-1] != 1:
            raise NotPiecewise("a per-vector output from the elements")
        return super().first(a)

    def lift(self, values, like):
        """A second input (a cotangent) of the piece's columns: given over the whole vector, the
        piece's columns of it; else the piece's own (or one per vector)."""
        w = np.shape(values)[-1:]
        if w and w[0] == self.plan.n and w[0] != self.width:
            values = np.asarray(values)[..., self.c0: self.c1]
        elif w and w[0] not in (1, self.width):
            raise NotPiecewise("a second input of another length")
        return super().lift(values, like)

    def concat(self, parts):
        if not self._inner:
            raise NotPiecewise("a vector joined from parts")
        return super().concat(parts)

    def maximum(self, a, b):
        self._whole(a, b)
        return super().maximum(a, b)

    def minimum(self, a, b):
        self._whole(a, b)
        return super().minimum(a, b)

    def put(self, a, index, value):
        """a with its element at the (global) ``index`` replaced, where this piece holds it."""
        if self._inner:
            return super().put(a, index, value)
        self._whole(a, value)
        k = int(np.ravel(index)[0])
        if not self.c0 <= k < self.c1:
            return self._t(a)
        return super().put(a, np.array([k - self.c0]), value)

    def argmax(self, x):
        """The (global) column of the vector's first maximum, as np.argmax gives it."""
        xv = x.v if isinstance(x, T) else np.asarray(x)
        self._whole(xv)
        return np.array([self._next("argmax", _Arg, xv).result])

    def online(self, x, acc):
        if self._inner:
            return super().online(x, acc)
        x = self._t(x)
        self._whole(x)
        if acc == "pairwise":  # the piece's node of the tree, then the tree over the pieces' nodes
            red = self._next(("online", acc), _TreeOnline, x, acc)
            if not self.learning:
                self._inner_online(x, acc)
                self._emit(red)
            return red.result
        scan = red = self._next(("online", acc), _Online, x, acc)
        if self.plan.attribute:
            red = self._next(("online errors", acc), _OnlineErr, x, acc, scan)
        if not self.learning:  # the piece's own steps of the scan: their events and flags
            self._online_piece(x, acc, scan.carry[self.j])
            self._emit(red)
        return red.result

    def _inner_online(self, x, acc):
        """The pairwise online tree of the piece alone: its node (m, d), d in the accumulation type."""
        self._inner += 1
        try:
            return online_pairs(x, self.ones(x, acc_dtype(x.dtype, acc)), self)
        finally:
            self._inner -= 1

    def _online_piece(self, x, acc, state, state_only: bool = False):
        """The online scan's steps on this piece (a T) after the ``state`` of the columns before it
        (None: the first piece): (the state after it, the running sums (a T per scanned column),
        the rescaling factors in float64), the last two None where nothing is scanned.
        ``state_only`` (learning the state): where the running sum stays finite, the plain scan
        gives the state and the factors without the traced steps (their values, the same
        operations; no root: the sum is then never special), the running sums None."""
        if state is None:
            xs, d0, carry = x, None, 0
        else:
            item, d0, carry = state
            xs = Tracer.concat(self, [item, x])  # the running maximum's element in front
        if xs.shape[-1] < 2:
            return (x, np.ones((1, 1), dtype=acc_dtype(x.dtype, acc)), np.zeros((1, 1), np.int8)), None, None
        if state_only:
            fast = _online_state(xs, acc, d0)
            if fast is not None:
                return fast
        m, d, dnew, a64 = self.online_steps(xs, acc, d0)
        root = online_root(dnew, carry)
        # copies, not views: a piece's state must not keep its arrays
        m = T(m.v.copy(), m.root.copy(), None if m.err is None else m.err.map(np.copy))
        return (m, d.copy(), root), dnew, a64


__all__ = ["NotPiecewise", "Plan", "PieceTracer", "learn", "partition"]
