"""Masks and infinite inputs: the exact value of a vector holding -inf, +inf or NaN.

A layer over the exact reference, generic over the functions that declare their
limits (:data:`RULES`): it splits the non-finite entries off each vector, has the
reference compute the exact value of the finite vector that is left, and puts the
limit values back. The reference itself only ever sees finite vectors.

Semantics (README "Masks and infinite inputs"):

* **-inf** (a mask) always means the limit x_i -> -inf: the entry drops out of the
  sum. softmax_i = 0, log_softmax_i = -inf at a masked position, every other value is
  the function of the unmasked entries (logsumexp ignores -inf terms); a
  cross-entropy target at a masked position has loss +inf.
* **fully masked rows** (every entry -inf) have no mathematical softmax; the policy
  ``masked_rows`` says which output counts as correct: ``nan`` (IEEE: 0/0), ``zeros``
  ("safe softmax": softmax 0, log_softmax -inf, cross-entropy +inf) or ``uniform``
  (the limit of equal entries: softmax 1/n, log_softmax -ln n, cross-entropy ln n).
  logsumexp of an empty sum is -inf under every policy.
* **+inf** follows ``nonfinite``: ``ieee`` (default): every output of the row is NaN
  (inf/inf, inf - inf), except logsumexp, which is +inf; ``limit``: the limit of the
  +inf entries growing together: the k of them share the mass (softmax 1/k there, 0
  elsewhere; log_softmax -ln k there, -inf elsewhere; cross-entropy ln k at a +inf
  target, else +inf), logsumexp +inf.
* **NaN** makes every output of its row NaN under both: an implementation that returns
  a number there hides the NaN (cause ``nan_hidden``).

An exact value that is itself infinite or NaN is stored in :class:`reference.RefData`
with ``rounded`` = that value and ``ulp`` = +inf (no finite number of the format is
near it); metrics give an output equal to it error 0 and any other output an infinite
error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import UsageError

NONFINITE = ("ieee", "limit")
MASKED_ROWS = ("nan", "zeros", "uniform")


@dataclass(frozen=True)
class Specials:
    """How non-finite inputs are read: ``nonfinite`` (+inf) and the ``masked_rows`` policy."""

    nonfinite: str = "ieee"
    masked_rows: str = "nan"

    def __post_init__(self):
        from .errors import unknown_name

        if self.nonfinite not in NONFINITE:
            raise unknown_name("non-finite semantics", self.nonfinite, NONFINITE)
        if self.masked_rows not in MASKED_ROWS:
            raise unknown_name("masked-rows policy", self.masked_rows, MASKED_ROWS)

    def to_dict(self) -> dict:
        return {"nonfinite": self.nonfinite, "masked_rows": self.masked_rows}


DEFAULT = Specials()


@dataclass(frozen=True)
class Rule:
    """The limits of one function.

    ``per_element``: one output per input element (softmax, log_softmax), else one per
    vector. ``dropped``: the value at an entry that drops out (a masked entry; a finite
    entry beside +inf under ``limit``). ``target_dropped``: a per-vector function's value
    when its target entry drops out (cross-entropy: +inf); None: no target. ``empty``: the
    value of a fully masked row per policy (None: computed as for ``uniform``, the
    reference of n equal entries). ``ieee_inf``: the value under ``ieee`` with +inf.
    ``pinf``: a per-vector value fixed whenever +inf is present (logsumexp: +inf), None to
    compute it from the entries that stay.
    """

    per_element: bool
    dropped: float = math.nan
    target_dropped: float | None = None
    empty: tuple = ()  # ((policy, value or None), ...)
    ieee_inf: float = math.nan
    pinf: float | None = None
    empty_scalar: float | None = None  # a per-vector value of a fully masked row, whatever the policy


INF, NAN = math.inf, math.nan
#: The functions whose exact value at non-finite inputs numstab knows.
RULES: dict[str, Rule] = {
    "softmax": Rule(True, dropped=0.0, empty=(("nan", NAN), ("zeros", 0.0), ("uniform", None))),
    "log_softmax": Rule(True, dropped=-INF, empty=(("nan", NAN), ("zeros", -INF), ("uniform", None))),
    "logsumexp": Rule(False, ieee_inf=INF, pinf=INF, empty_scalar=-INF),
    "cross_entropy": Rule(False, target_dropped=INF,
                          empty=(("nan", NAN), ("zeros", INF), ("uniform", None))),
}


def supports(function: str) -> bool:
    return function in RULES


def check_function(function: str, x: np.ndarray, what: str = "input") -> None:
    """Refuse non-finite inputs for a function whose limits are not known."""
    if not supports(function) and not np.isfinite(x).all():
        raise UsageError(f"{what}: non-finite values, but numstab knows the exact value of {function} "
                         f"for finite inputs only (masks and infinities: {', '.join(RULES)})")


def check_format(fmt, x: np.ndarray, what: str = "input") -> None:
    """A format without infinities cannot hold -inf or +inf inputs."""
    if not fmt.has_inf and np.isinf(x).any():
        raise UsageError(f"{what}: {fmt.name} has no infinity, so masks (-inf) and +inf inputs cannot be "
                         "given in it")


@dataclass
class Plan:
    """How every row of a batch reduces to a finite vector, and which values are fixed."""

    keep: np.ndarray  # (B, n) bool: the entries the reference sees
    values: np.ndarray  # (B, n) float64: what it sees there (x, or 0 for the +inf entries)
    computed: np.ndarray  # (B,) bool: the row has a vector left to compute
    pinf: np.ndarray  # (B,) bool: +inf present (and no NaN) under limit semantics
    fixed: dict  # function -> (B,) float64 of values fixed per row (NaN where not fixed) ...
    fixed_mask: dict  # ... and (B,) bool where they are fixed


def plan(x: np.ndarray, target: np.ndarray, specials: Specials | None = DEFAULT) -> Plan:
    specials = specials or DEFAULT
    B, n = x.shape
    nan_row = np.isnan(x).any(axis=1)
    pos = x == np.inf
    pinf_row = pos.any(axis=1) & ~nan_row
    neg = x == -np.inf
    empty = neg.all(axis=1)
    keep = np.isfinite(x)
    values = np.where(keep, x, 0.0)
    computed = ~nan_row & ~empty
    limit = specials.nonfinite == "limit"
    if limit:
        keep = np.where(pinf_row[:, None], pos, keep)
        values = np.where(pinf_row[:, None], 0.0, values)
    else:
        computed &= ~pinf_row
    uniform = empty & (specials.masked_rows == "uniform")
    keep = np.where(uniform[:, None], True, keep)
    values = np.where(uniform[:, None], 0.0, values)
    computed |= uniform
    fixed, fixed_mask = {}, {}
    for f, rule in RULES.items():
        v = np.full(B, np.nan)
        m = nan_row.copy()  # NaN in: NaN out
        if not limit:
            m |= pinf_row
            v[pinf_row] = rule.ieee_inf
        elif rule.pinf is not None:
            m |= pinf_row
            v[pinf_row] = rule.pinf
        pol = dict(rule.empty).get(specials.masked_rows, NAN) if rule.empty else NAN
        e = empty & ~nan_row
        if rule.empty_scalar is not None:
            m |= e
            v[e] = rule.empty_scalar
        elif not (specials.masked_rows == "uniform" and rule.empty):
            m |= e
            v[e] = pol
        v[nan_row] = np.nan
        fixed[f], fixed_mask[f] = v, m
    return Plan(keep, values, computed, pinf_row & limit, fixed, fixed_mask)


def _special_ref(shape, value):
    """RefData fields for an exact value that is 0, +-inf or NaN."""
    from .results import RefData

    v = np.full(shape, value, dtype=np.float64)
    ulp = np.full(shape, np.inf)
    z = np.zeros(shape)
    return RefData(v, ulp, z.copy(), z.copy(), z.copy(), z.copy(), np.ones(shape, dtype=bool),
                   np.ones(shape, dtype=bool))


def _zero_ref(fmt, shape):
    """RefData of an exact 0: a number of the format, so it keeps its ulp (the smallest subnormal)."""
    from .results import RefData

    z = np.zeros(shape)
    return RefData(z.copy(), np.full(shape, fmt.smallest_subnormal), z.copy(), z.copy(),
                   np.full(shape, np.inf), np.full(shape, np.inf), np.ones(shape, dtype=bool),
                   np.ones(shape, dtype=bool))


def _fill(fmt, shape, value):
    return _zero_ref(fmt, shape) if value == 0 else _special_ref(shape, value)


def _put(dst, index, src) -> None:
    for k in dst.__dataclass_fields__:
        getattr(dst, k)[index] = getattr(src, k)


def reference(compute, fmt, x: np.ndarray, args, specials: Specials | None = DEFAULT,
              functions=None) -> dict:
    """The exact reference of a batch that may hold -inf, +inf or NaN.

    ``compute(fmt, x, args)`` is the reference of finite vectors (dict of RefData; ``args``
    the batch's extra arguments, functions.as_args); rows without a non-finite entry go to
    it unchanged, the others as their compacted finite vectors (grouped by length), with
    the limit values put back around them. ``functions``: the names needed (default: every
    function of :data:`RULES`).
    """
    from .functions import as_args

    x = np.asarray(x, dtype=np.float64)
    if np.isfinite(x).all():
        return compute(fmt, x, args)
    args = as_args(args)
    functions = list(functions or [f for f, r in RULES.items()
                                   if r.target_dropped is None or "target" in args])
    for f in functions:
        if f not in RULES:
            raise UsageError(f"non-finite inputs: numstab knows the exact value of {f} for finite "
                             f"inputs only (masks and infinities: {', '.join(RULES)})")
    if set(args) - {"target", "scale"}:
        raise UsageError("non-finite inputs: only functions with a target index or none are supported")
    B, n = x.shape
    target = np.asarray(args["target"]) if "target" in args else np.zeros(B, dtype=np.int64)
    p = plan(x, target, specials)
    out = {}
    for f in functions:
        rule = RULES[f]
        shape = (B, n) if rule.per_element else (B,)
        out[f] = _fill(fmt, shape, rule.dropped if rule.per_element else np.nan)
    k = p.keep.sum(axis=1)
    for size in np.unique(k[p.computed]):
        rows = np.nonzero(p.computed & (k == size))[0]
        cols = np.nonzero(p.keep[rows])[1].reshape(len(rows), int(size))
        xs = np.take_along_axis(p.values[rows], cols, axis=1)
        tg = target[rows]
        hit = cols == tg[:, None]
        has_t = hit.any(axis=1)
        tc = np.where(has_t, np.argmax(hit, axis=1), 0)
        sub = compute(fmt, xs, {**({"target": tc} if "target" in args else {}),
                                **({"scale": np.asarray(args["scale"])[rows]} if "scale" in args else {})})
        for f in functions:
            rule = RULES[f]
            if rule.per_element:
                _put(out[f], (rows[:, None], cols), sub[f])
            else:
                _put(out[f], rows, sub[f])
                if rule.target_dropped is not None and not has_t.all():
                    miss = rows[~has_t]
                    _put(out[f], miss, _fill(fmt, (len(miss),), rule.target_dropped))
    for f in functions:
        m = p.fixed_mask[f]
        per = RULES[f].per_element
        for val in np.unique(p.fixed[f][m]):  # NaN at most once (numpy >= 1.21)
            rows = np.nonzero(m & ((p.fixed[f] == val) | (np.isnan(p.fixed[f]) & np.isnan(val))))[0]
            _put(out[f], rows, _fill(fmt, (len(rows), n) if per else (len(rows),), float(val)))
    return out


def compact_row(x_row, target: int, specials: Specials = DEFAULT):
    """(finite vector the reference sees, its target, the original positions) of one row, or None
    when every value of the row is fixed."""
    p = plan(np.asarray(x_row, dtype=np.float64)[None, :], np.array([target]), specials)
    if not p.computed[0]:
        return None
    cols = np.nonzero(p.keep[0])[0]
    hit = np.nonzero(cols == target)[0]
    return p.values[0, cols], int(hit[0]) if hit.size else 0, cols


def special_text(v: float) -> str:
    """The exact-value string of a limit value (as reference.exact_strings writes numbers)."""
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return "0.0"


def exact_strings(strings_of, fmt, x_row, target: int, specials: Specials = DEFAULT, digits: int = 25,
                  functions=None, elements=None) -> dict:
    """reference.exact_strings (``strings_of``) of a row that may hold non-finite entries
    (``elements``: the indices wanted of per-element functions, default all)."""
    x_row = np.asarray(x_row, dtype=np.float64)
    if np.isfinite(x_row).all():
        return strings_of(fmt, x_row, target, digits, functions=functions, elements=elements)
    extra = {}
    if isinstance(target, dict):  # a row's arguments: the target index and a temperature's scale
        extra = {"scale": target["scale"]} if "scale" in target else {}
        target = int(target.get("target", 0))
    n = x_row.size
    p = plan(x_row[None, :], np.array([target]), specials)
    cols, sub = np.array([], dtype=np.int64), None
    if p.computed[0]:
        cols = np.nonzero(p.keep[0])[0]
        hit = np.nonzero(cols == target)[0]
        keep = None if elements is None else [i for i, c in enumerate(cols.tolist()) if c in set(elements)]
        tc = int(hit[0]) if hit.size else 0
        sub = strings_of(fmt, p.values[0, cols], {"target": tc, **extra} if extra else tc, digits,
                         functions=functions, elements=keep)
    out = {}
    for f in functions or RULES:
        rule = RULES[f]
        size = n if rule.per_element else 1
        if p.fixed_mask[f][0]:
            out[f] = [special_text(float(p.fixed[f][0]))] * size
        elif rule.per_element:
            row = [special_text(rule.dropped)] * n
            for i, c in enumerate(cols):
                row[int(c)] = sub[f][i]
            out[f] = row
        elif rule.target_dropped is not None and target not in cols:
            out[f] = [special_text(rule.target_dropped)]
        else:
            out[f] = list(sub[f])
    return out


def exact_special(ulp: np.ndarray) -> np.ndarray:
    """Where a reference value is an exact infinity or NaN (stored with ulp = +inf)."""
    return np.isinf(ulp)


def returned_kind(y: np.ndarray, function: str) -> str:
    """What an implementation returned for a fully masked row: nan, zeros, uniform or other."""
    y = np.asarray(y, dtype=np.float64)
    if np.isnan(y).all():
        return "nan"
    n = y.size
    if function == "softmax":
        if (y == 0).all():
            return "zeros"
        if np.allclose(y, 1.0 / n, rtol=1e-2, atol=0):
            return "uniform"
    elif function == "log_softmax":
        if (y == -np.inf).all():
            return "zeros"
        if np.allclose(y, -math.log(n), rtol=1e-2, atol=1e-3):
            return "uniform"
    return "other"
