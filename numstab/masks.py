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
* **element-wise functions** (the binary family): each element is its own vector; a
  non-finite element has its own limit (sigmoid(-inf) = 0, softplus(+inf) = +inf, ...)
  and leaves the others alone.
* **gradients**: s_j = 0 at a dropped entry, so softmax_backward is 0 there,
  log_softmax_backward v_j (and v_j still counts in sum(v): the reference gets the
  dropped cotangents as ``cotangent_rest``), cross_entropy_backward 0, or -1 at a dropped
  target (the rest is then computed without a target: index len(x)).

An exact value that is itself infinite or NaN is stored in :class:`reference.RefData`
with ``rounded`` = that value and ``ulp`` = +inf (no finite number of the format is
near it); metrics give an output equal to it error 0 and any other output an infinite
error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import UsageError
from .results import RefData

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
    entry beside +inf under ``limit``), or the name of an extra argument whose value it is
    there (log_softmax_backward: the cotangent). ``target_dropped``: a per-vector
    function's value when its target entry drops out (cross-entropy: +inf); None: no
    target. ``target_element``: a per-element function's value at a dropped target entry
    (cross_entropy_backward: s - onehot = -1 there); the entries that stay are then
    computed without a target. ``empty``: the value of a fully masked row per policy
    (None: computed as for ``uniform``, the reference of n equal entries; :data:`DROPPED`:
    every entry takes its dropped value, as a safe softmax's s = 0 gives). ``ieee_inf``:
    the value under ``ieee`` with +inf. ``pinf``: a per-vector value fixed whenever +inf
    is present (logsumexp: +inf), None to compute it from the entries that stay.
    ``smoothing_dropped``: a per-vector value whenever an entry drops out and the label
    smoothing is > 0 (its eps/n weight then multiplies log 0). ``rest``: an extra
    argument whose dropped entries still count through their sum (log_softmax_backward:
    sum(v) over every entry); the reference gets it as ``<rest>_rest``. ``elementwise``:
    for element-wise functions, ``limit(x, args)`` -> the exact values at the non-finite
    entries of x (each element is its own vector: nothing is dropped or masked).
    """

    per_element: bool
    dropped: float | str = math.nan
    target_dropped: float | None = None
    target_element: float | None = None
    empty: tuple = ()  # ((policy, value, None or DROPPED), ...)
    ieee_inf: float = math.nan
    pinf: float | None = None
    empty_scalar: float | None = None  # a per-vector value of a fully masked row, whatever the policy
    smoothing_dropped: float | None = None
    rest: str | None = None
    elementwise: Callable | None = None


INF, NAN = math.inf, math.nan
DROPPED = "dropped"


def _limits(at_minus_inf: float, at_plus_inf: float) -> Callable:
    """An element-wise function's limits at -inf and +inf (NaN stays NaN)."""
    def limit(x, args):
        return np.where(np.isnan(x), NAN, np.where(x > 0, at_plus_inf, at_minus_inf))
    return limit


def _bce_limit(x, args):
    """binary_cross_entropy(x, z) = softplus(x) - x z: at x -> -inf it tends to -x z (+inf unless
    z = 0, then 0); at x -> +inf to x (1 - z) (+inf unless z = 1, then 0)."""
    z = np.broadcast_to(_label(args, x), x.shape)
    return np.where(np.isnan(x) | np.isnan(z), NAN,
                    np.where(x > 0, np.where(z == 1, 0.0, INF), np.where(z == 0, 0.0, INF)))


def _label(args, x):
    z = np.asarray(args["label"], dtype=np.float64)
    return z[..., None] if z.ndim == x.ndim - 1 else z


_SAFE = (("nan", NAN), ("zeros", DROPPED), ("uniform", None))
#: The functions whose exact value at non-finite inputs numstab knows.
RULES: dict[str, Rule] = {
    "softmax": Rule(True, dropped=0.0, empty=(("nan", NAN), ("zeros", 0.0), ("uniform", None))),
    "log_softmax": Rule(True, dropped=-INF, empty=(("nan", NAN), ("zeros", -INF), ("uniform", None))),
    "logsumexp": Rule(False, ieee_inf=INF, pinf=INF, empty_scalar=-INF),
    "cross_entropy": Rule(False, target_dropped=INF,
                          empty=(("nan", NAN), ("zeros", INF), ("uniform", None))),
    "smoothed_cross_entropy": Rule(False, target_dropped=INF, smoothing_dropped=INF,
                                   empty=(("nan", NAN), ("zeros", INF), ("uniform", None))),
    # s_i (v_i - s.v): 0 where s_i = 0
    "softmax_backward": Rule(True, dropped=0.0, empty=_SAFE),
    # v_i - s_i sum(v): v_i where s_i = 0, and every v_j counts in the sum
    "log_softmax_backward": Rule(True, dropped="cotangent", rest="cotangent", empty=_SAFE),
    # s_i - [i = target]
    "cross_entropy_backward": Rule(True, dropped=0.0, target_element=-1.0, empty=_SAFE),
    "sigmoid": Rule(True, elementwise=_limits(0.0, 1.0)),
    "log_sigmoid": Rule(True, elementwise=_limits(-INF, 0.0)),
    "softplus": Rule(True, elementwise=_limits(0.0, INF)),
    "binary_cross_entropy": Rule(True, elementwise=_bce_limit),
}


#: The functions along a vector, where an additive attention mask (compare's ``--mask``) means
#: something: every function of :data:`RULES` but the element-wise ones.
MASKABLE: tuple = tuple(f for f, r in RULES.items() if r.elementwise is None)


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
    """How each row of x (B, n) reduces to the finite vector the reference sees, for the
    row-coupled functions of :data:`RULES` (element-wise ones need no plan)."""
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
        if rule.elementwise:
            continue
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
        elif isinstance(pol, str):  # DROPPED: every entry keeps its dropped value
            pass
        elif not (specials.masked_rows == "uniform" and rule.empty):
            m |= e
            v[e] = pol
        v[nan_row] = np.nan
        fixed[f], fixed_mask[f] = v, m
    return Plan(keep, values, computed, pinf_row & limit, fixed, fixed_mask)


def exact_ref(fmt, values) -> RefData:
    """RefData of exact values known in float64: numbers of the format (their own rounding,
    error 0), 0 (ulp: the smallest subnormal) or +-inf and NaN (ulp = +inf: no finite number
    of the format is near them) -- a masked entry's limit, the softmax 1 of a one-element vector
    (reference.softmax)."""
    v = np.array(values, dtype=np.float64)
    fin = np.isfinite(v)
    ulp = np.where(fin, fmt.ulp(np.where(fin, v, 0.0)), np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(fin, np.where(v != 0, ulp / np.abs(v), np.inf), 0.0)
    z = np.zeros(v.shape)
    yes = np.ones(v.shape, dtype=bool)
    return RefData(v, ulp, z, z.copy(), q, q.copy(), yes, yes.copy())


def _fill(fmt, shape, value):
    return exact_ref(fmt, np.full(shape, value, dtype=np.float64))


def dropped_values(function: str, x: np.ndarray, args: dict) -> np.ndarray:
    """(B, n): the exact value of a per-element function at each entry, were it dropped."""
    rule = RULES[function]
    if isinstance(rule.dropped, str):
        out = np.broadcast_to(np.asarray(args[rule.dropped], dtype=np.float64), x.shape).copy()
    else:
        out = np.full(x.shape, rule.dropped, dtype=np.float64)
    if rule.target_element is not None and "target" in args:
        hit = np.arange(x.shape[1]) == np.asarray(args["target"]).reshape(-1, 1)
        out[hit] = rule.target_element
    return out


@dataclass(frozen=True)
class VectorFacts:
    """What the limits of one long vector depend on, read in one pass over it (numstab.stream):
    a NaN in it, its number of +inf entries and of finite ones, and the column and value of its
    only finite entry (-1 unless exactly one)."""

    nan: bool = False
    pinf: int = 0
    finite: int = 2
    single: int = -1
    value: float = math.nan

    @classmethod
    def of(cls, blocks) -> VectorFacts:
        """The facts of the vector whose values ``blocks`` yields, (c0, 1-D array) in order."""
        nan, pinf, finite, single, value = False, 0, 0, -1, math.nan
        for c0, v in blocks:
            nan |= bool(np.isnan(v).any())
            pinf += int(np.count_nonzero(v == np.inf))
            fin = np.flatnonzero(np.isfinite(v))
            if finite == 0 and fin.size:
                single, value = c0 + int(fin[0]), float(v[fin[0]])
            finite += int(fin.size)
        return cls(nan, pinf, finite, single, value) if finite == 1 else cls(nan, pinf, finite)

    def seen(self, specials: Specials | None) -> str | None:
        """How the reference sees the vector where the mask layer (:func:`plan`) replaces it:
        ``limit`` -- +inf entries read as a limit: the k of them as k zeros, every other entry
        dropped (a -inf); ``uniform`` -- every entry -inf under the ``uniform`` policy: n zeros
        (:func:`seen_values`); None: the vector as it is."""
        specials = specials or DEFAULT
        if self.nan:
            return None
        if self.pinf:
            return "limit" if specials.nonfinite == "limit" else None
        return "uniform" if self.finite == 0 and specials.masked_rows == "uniform" else None

    def seen_facts(self, n: int, blocks=None) -> VectorFacts:
        """The facts of the vector of n the reference sees (:meth:`seen`: k zeros, or n; ``blocks``:
        its values, read only for a single +inf entry's column)."""
        if self.pinf == 1:
            return VectorFacts.of(blocks)
        return VectorFacts(finite=self.pinf or n)


def seen_values(kind: str | None, x: np.ndarray) -> np.ndarray:
    """The values the reference sees of a piece of a vector (:meth:`VectorFacts.seen`): under
    ``limit`` 0 at +inf, -inf elsewhere; under ``uniform`` 0 everywhere; else x."""
    if kind == "limit":
        return np.where(x == np.inf, 0.0, -np.inf)
    if kind == "uniform":
        return np.zeros_like(x, dtype=np.float64)
    return x


def vector_limits(function: str, x_piece, c0: int, facts: VectorFacts, specials: Specials | None = None,
                  target=None, xt=None, scaled: bool = False, n: int | None = None,
                  eps: float | None = None, rest=None, kind: str | None = None) -> tuple:
    """(values, fixed) of the outputs that the limits fix on a piece of columns ``x_piece`` (first
    column c0) of one long vector (``facts``; where the reference sees another vector,
    :meth:`VectorFacts.seen`, x_piece, ``facts`` and ``xt`` are that vector's), the values its
    pieces' reference then leaves alone: NaN everywhere for a NaN in the vector; IEEE's values for
    +inf; a fully masked vector's policy; a single finite entry's exact values (softmax 1,
    log_softmax 0, logsumexp the entry -- ``facts.value``, rounded to the format; under a
    temperature, ``scaled``, x / T is left to the vector's rows --, cross-entropy 0 at it, +inf
    elsewhere); label smoothing's +inf where an entry of the n dropped and ``eps`` > 0; else a
    per-element function's dropped value at each -inf entry and a per-vector one's value when its
    ``target`` (input ``xt``) is masked -- a gradient's: 0, or the piece's cotangent ``rest`` where
    :data:`RULES` names it, and the target's -1 at a masked target. ``kind``: how the reference sees
    the vector (:meth:`VectorFacts.seen`), whose per-vector values a function may fix whatever its
    entries (logsumexp: +inf beside +inf entries, -inf for an empty sum). Per-element: one per column
    of the piece; per-vector: one."""
    rule = RULES[function]
    x = np.asarray(x_piece, dtype=np.float64).reshape(-1)
    specials = specials or DEFAULT
    shape = x.shape if rule.per_element else (1,)

    def every(v):
        return np.full(shape, float(v)), np.ones(shape, dtype=bool)

    fixed_by_kind = {"limit": rule.pinf, "uniform": rule.empty_scalar}.get(kind)
    if fixed_by_kind is not None:
        return every(fixed_by_kind)
    if facts.nan:
        return every(NAN)
    if facts.pinf:
        return every(rule.ieee_inf)
    t = None if target is None else int(np.ravel(target)[0])

    def dropped_here(fixed):
        """A per-element function's values at the dropped entries ``fixed``: its dropped value (the
        cotangent ``rest`` where :data:`RULES` names it), the target's own at the target."""
        if isinstance(rule.dropped, str):  # (log_softmax_backward: the cotangent there)
            vals = np.asarray(rest, dtype=np.float64).reshape(-1).copy()
        else:
            vals = np.full(shape, float(rule.dropped))
        if rule.target_element is not None and t is not None and c0 <= t < c0 + x.size:
            vals[t - c0] = rule.target_element
        return np.where(fixed, vals, np.nan), fixed

    if facts.finite == 0:  # fully masked: the policy (``nan`` or ``zeros``)
        pol = rule.empty_scalar if rule.empty_scalar is not None else dict(rule.empty)[specials.masked_rows]
        if pol == DROPPED:  # (a gradient's safe softmax: s = 0, every entry its dropped value)
            return dropped_here(np.ones(shape, dtype=bool))
        return every(pol)
    if rule.smoothing_dropped is not None and eps is not None and eps > 0 and facts.finite < n:
        return every(rule.smoothing_dropped)  # (masks._compute_rows: eps / n times log 0)
    if facts.finite == 1:  # the one finite entry k: a vector of one
        k = facts.single
        if rule.per_element:  # s_k = 1: softmax 1, log_softmax 0, softmax_backward 0, s_k - [k = t]
            vals, fixed = dropped_here(np.ones(shape, dtype=bool))
            if c0 <= k < c0 + x.size:
                if function == "log_softmax_backward":  # v_k - sum v: the vector's rows compute it
                    vals[k - c0], fixed[k - c0] = np.nan, False
                else:
                    vals[k - c0] = {"softmax": 1.0, "log_softmax": 0.0, "softmax_backward": 0.0,
                                    "cross_entropy_backward": 0.0 if t == k else 1.0}[function]
            return vals, fixed
        if function == "logsumexp":  # x / T: no number of the format (the vector's rows)
            return (np.full(1, np.nan), np.zeros(1, dtype=bool)) if scaled else every(facts.value)
        return every(0.0 if t == k else rule.target_dropped)
    if rule.per_element:
        fixed = x == -np.inf
        return dropped_here(fixed) if fixed.any() else (np.full(shape, np.nan), fixed)
    hit = rule.target_dropped is not None and xt is not None and float(xt) == -np.inf
    return np.full(1, np.nan if rule.target_dropped is None else float(rule.target_dropped)), np.array([hit])


def _default_functions(args: dict) -> list:
    from .functions import FUNCTIONS

    return [f for f, rec in FUNCTIONS.items() if f in RULES and (rec.takes is None or rec.takes in args)]


def reference(compute, fmt, x: np.ndarray, args, specials: Specials | None = DEFAULT,
              functions=None, whole_rows=()) -> dict:
    """The exact reference of a batch that may hold -inf, +inf or NaN.

    ``compute(fmt, x, args, functions)`` is the reference of finite vectors (dict of RefData;
    ``args`` the batch's extra arguments, functions.as_args); rows without a non-finite
    entry go to it unchanged, the others as their compacted finite vectors (grouped by
    length, extra arguments compacted alike), with the limit values put back around them.
    Element-wise functions see every element, the non-finite ones replaced by 0 and then
    by their limits. ``functions``: the names needed (default: every function of
    :data:`RULES` whose extra argument ``args`` holds). ``whole_rows``: the functions ``compute``
    reads -inf entries of as exact zero terms (reference.masked_functions, at the fast tiers):
    their rows of two or more entries left go to it uncompacted, in one call.
    """
    from .functions import as_args

    x = np.asarray(x, dtype=np.float64)
    args = as_args(args)
    functions = list(functions or _default_functions(args))
    if np.isfinite(x).all():
        return compute(fmt, x, args, functions)
    for f in functions:
        if f not in RULES:
            raise UsageError(f"non-finite inputs: numstab knows the exact value of {f} for finite "
                             f"inputs only (masks and infinities: {', '.join(RULES)})")
    out = {}
    elem = [f for f in functions if RULES[f].elementwise]
    if elem:
        fin = np.isfinite(x)
        sub = compute(fmt, np.where(fin, x, 0.0), args, elem)
        idx = np.nonzero(~fin)
        for f in elem:
            sub[f].put(idx, exact_ref(fmt, RULES[f].elementwise(x, args)[idx]))
            out[f] = sub[f]
    rows_fs = [f for f in functions if not RULES[f].elementwise]
    if rows_fs:
        out.update(_row_reference(compute, fmt, x, args, specials, rows_fs, whole_rows))
    return out


def _compact_args(args: dict, rows, cols, keep_rows, n: int, functions) -> dict:
    """The extra arguments of compacted rows: per-element ones (B, n) taken at ``cols``, a
    target index moved to its compacted position (``size`` -- no target -- where it dropped),
    per-vector ones as they are; ``<rest>_rest``: the dropped entries of a ``rest`` argument."""
    size = cols.shape[1]
    out = {}

    def moved(t):
        hit = cols == np.asarray(t)[rows][:, None]
        return np.where(hit.any(axis=1), np.argmax(hit, axis=1), size)

    for k, v in args.items():
        v = np.asarray(v)
        if _holds_target(k, v):
            out[k] = _with_target(k, v[rows], moved(_target_of(k, v)))
        elif v.ndim == 2 and v.shape[1] == n:
            out[k] = np.take_along_axis(v[rows], cols, axis=1)
        else:
            out[k] = v[rows]
    for f in functions:
        r = RULES[f].rest
        if r is not None and r in args:
            v = np.asarray(args[r], dtype=np.float64)
            v = np.broadcast_to(v[rows] if v.ndim == 2 else v, keep_rows.shape)  # (rows, n)
            out[f"{r}_rest"] = np.where(keep_rows, 0.0, v)
    return out


def _holds_target(k: str, v: np.ndarray) -> bool:
    """Whether argument k carries the target indices: ``target`` itself, or a record holding
    them (the label smoothing's)."""
    return k == "target" or bool(v.dtype.names and "target" in v.dtype.names)


def _target_of(k: str, v: np.ndarray) -> np.ndarray:
    return v if k == "target" else np.asarray(v["target"])


def _with_target(k: str, v: np.ndarray, t) -> np.ndarray:
    """Argument k (v) with its target indices replaced by t."""
    if k == "target":
        return np.broadcast_to(np.asarray(t, dtype=np.int64), v.shape).copy()
    r = np.array(v, copy=True)
    r["target"] = t
    return r


def _target(args: dict):
    """The batch's target indices (:func:`_holds_target`); None without one."""
    for k, v in args.items():
        v = np.asarray(v)
        if _holds_target(k, v):
            return _target_of(k, v)
    return None


def _retarget(args: dict, t) -> dict:
    """``args`` with every target index set to t (None: as they are). Index len(x): none."""
    if t is None:
        return args
    return {k: _with_target(k, np.asarray(v), t) if _holds_target(k, np.asarray(v)) else v
            for k, v in args.items()}


def _epsilon(args: dict, B: int):
    s = args.get("smoothing")
    if s is None:
        return None
    return np.broadcast_to(np.asarray(np.asarray(s)["epsilon"], dtype=np.float64), (B,))


def _row_reference(compute, fmt, x, args, specials, functions, whole_rows=()) -> dict:
    B, n = x.shape
    target = _target(args)
    target = np.zeros(B, dtype=np.int64) if target is None else target
    p = plan(x, target, specials)
    out = {}
    for f in functions:
        rule = RULES[f]
        if rule.per_element:
            out[f] = exact_ref(fmt, dropped_values(f, x, args))
        else:
            out[f] = _fill(fmt, (B,), np.nan)
    eps = _epsilon(args, B)
    k = p.keep.sum(axis=1)
    # functions whose reference reads -inf entries as exact zero terms (``whole_rows``: the softmax
    # family's fast tiers): every row of two or more entries left in one call, uncompacted,
    # instead of one call per compacted length (a causal mask has as many lengths as rows)
    native = [f for f in functions if f in whole_rows]
    if native:
        rows = np.nonzero(p.computed & (k >= 2))[0]
        if rows.size:
            from .functions import take_args

            xs = np.where(p.keep[rows], p.values[rows], -np.inf)
            a = take_args(args, rows)
            t = _target(a)
            has_t = (np.take_along_axis(p.keep[rows], np.asarray(t, dtype=np.int64)[:, None], axis=1)[:, 0]
                     if t is not None else np.ones(len(rows), dtype=bool))
            _compute_rows(compute, fmt, out, rows, xs, a, has_t, p.keep[rows], native, n, eps, k)
    for size in np.unique(k[p.computed]):
        fs_here = functions if size < 2 else [f for f in functions if f not in native]
        if not fs_here:
            continue
        rows = np.nonzero(p.computed & (k == size))[0]
        cols = np.nonzero(p.keep[rows])[1].reshape(len(rows), int(size))
        xs = np.take_along_axis(p.values[rows], cols, axis=1)
        a = _compact_args(args, rows, cols, p.keep[rows], n, fs_here)
        t = _target(a)
        has_t = t < size if t is not None else np.ones(len(rows), dtype=bool)
        _compute_rows(compute, fmt, out, rows, xs, a, has_t, cols, fs_here, n, eps, k)
    for f in functions:
        m = p.fixed_mask[f]
        per = RULES[f].per_element
        for val in np.unique(p.fixed[f][m]):  # NaN at most once (numpy >= 1.21)
            rows = np.nonzero(m & ((p.fixed[f] == val) | (np.isnan(p.fixed[f]) & np.isnan(val))))[0]
            out[f].put(rows, _fill(fmt, (len(rows), n) if per else (len(rows),), float(val)))
    return out


def _compute_rows(compute, fmt, out: dict, rows, xs, a: dict, has_t, cols, functions, n: int, eps, k) -> None:
    """The reference of ``rows`` (their vectors ``xs``, extra arguments ``a``) put into ``out``:
    rows whose target stays compute every function; rows whose target dropped out (``has_t``
    False) compute the functions without a target (any index serves) and, without a target
    (index len(x)), the per-element ones that have one; the per-vector ones with a target are
    fixed. ``cols``: the original column of each entry of xs (compacted rows),
    or the (rows, n) mask of the entries left (rows given whole, -inf where dropped)."""
    plain = [f for f in functions if RULES[f].target_dropped is None and RULES[f].target_element is None]
    no_t = [f for f in functions if RULES[f].target_element is not None]
    whole = cols.dtype == bool
    size = xs.shape[1]
    runs = ((has_t, functions, None), (~has_t, plain, None if whole else 0), (~has_t, no_t, size))
    for sel, fs, tg in runs:
        if not sel.any() or not fs:
            continue
        sub = compute(fmt, xs[sel], _retarget({kk: v[sel] for kk, v in a.items()}, tg), fs)
        r = rows[sel]
        if whole:  # the entries left of each row, as (row, column) pairs
            ri, ci = np.nonzero(cols[sel])
        for f in fs:
            if not RULES[f].per_element:
                out[f].put(r, sub[f])
            elif whole:
                out[f].put((r[ri], ci), sub[f].at((ri, ci)))
            else:
                out[f].put((r[:, None], cols[sel]), sub[f])
    miss = rows[~has_t]
    for f in functions:
        rule = RULES[f]
        if rule.target_dropped is not None and miss.size:
            out[f].put(miss, _fill(fmt, (len(miss),), rule.target_dropped))
        if rule.smoothing_dropped is not None and eps is not None:
            hit = rows[(eps[rows] > 0) & (k[rows] < n)]
            out[f].put(hit, _fill(fmt, (len(hit),), rule.smoothing_dropped))


def fixed_values(fmt, function: str, x_row, args_row,
                 specials: Specials = DEFAULT) -> tuple[np.ndarray, np.ndarray]:
    """(values, fixed) of one row of ``function`` (n entries, or 1 for a per-vector function):
    the exact values the limits fix (0, +-inf, NaN, a cotangent), and where they are fixed;
    the other entries are computed from the finite problem :func:`compact` gives. One
    source of truth: the same :func:`reference` run, its finite part left undecided."""
    from .functions import as_args, get

    x = np.asarray(x_row, dtype=np.float64)[None, :]
    args = {k: np.asarray(v)[None, ...] for k, v in as_args(args_row).items()}

    def open_(fmt, xs, a, fs):
        out = {}
        for f in fs:
            r = _fill(fmt, xs.shape[:1] if get(f).per_vector else xs.shape, np.nan)
            r.decided[...] = False
            out[f] = r
        return out

    r = reference(open_, fmt, x, args, specials, [function])[function]
    return r.rounded[0].reshape(-1), r.decided[0].reshape(-1)


def compact(function: str, x_row, args_row, specials: Specials = DEFAULT):
    """The finite problem the reference solves for one row of ``function``: (finite vector,
    its extra arguments, the original positions of its entries), or None when the limits fix
    every value of the row (:func:`fixed_values` gives them)."""
    from .functions import as_args, get

    x = np.asarray(x_row, dtype=np.float64)[None, :]
    args = {k: np.asarray(v)[None, ...] for k, v in as_args(args_row).items()}
    if get(function).takes not in ("target", "smoothing"):  # a target index given along means nothing here
        args = {k: v for k, v in args.items() if not _holds_target(k, v)}
    n = x.shape[1]
    rule = RULES[function]
    if rule.elementwise:
        keep = np.isfinite(x)
        values = x
    else:
        target = _target(args)
        target = np.zeros(1, dtype=np.int64) if target is None else np.asarray(target).reshape(1)
        p = plan(x, target, specials)
        if not p.computed[0] or p.fixed_mask[function][0]:
            return None
        keep, values = p.keep, p.values
    cols = np.nonzero(keep[0])[0]
    if not cols.size:
        return None
    a = _compact_args(args, np.array([0]), cols[None, :], keep, n, [function])
    t = _target(a)
    if not rule.per_element and t is not None and t[0] >= cols.size:
        return None  # the target dropped out: fixed
    eps = _epsilon(args, 1)
    if rule.smoothing_dropped is not None and cols.size < n and eps is not None and eps[0] > 0:
        return None
    return values[0, cols], {k: v[0] for k, v in a.items()}, cols


def special_text(v: float, digits: int = 25) -> str:
    """The exact-value string of a limit value, as reference.exact_strings writes numbers: a
    number of the format (a cotangent) with its exact decimal digits, ``digits`` significant
    ones at most (rounded half-even; a binary fraction's decimal ends, so this is exact)."""
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "0.0"
    from decimal import ROUND_HALF_EVEN, Context, Decimal

    from .results import decimal_text

    d = Context(prec=digits, rounding=ROUND_HALF_EVEN).plus(Decimal(abs(float(v))))
    _, ds, _ = d.as_tuple()  # Decimal(float) is the exact binary value, rounded above
    k = int("".join(map(str, ds))) * 10 ** (digits - len(ds))
    return decimal_text(k, d.adjusted(), digits, v < 0)


def exact_strings(strings_of, fmt, x_row, target, specials: Specials = DEFAULT, digits: int = 25,
                  functions=None, elements=None) -> dict:
    """reference.exact_strings (``strings_of``) of a row that may hold non-finite entries
    (``target``: the row's extra arguments, or a bare target index; ``elements``: the indices
    wanted of per-element functions, default all)."""
    from .functions import as_args

    x_row = np.asarray(x_row, dtype=np.float64)
    if np.isfinite(x_row).all():
        return strings_of(fmt, x_row, target, digits, functions=functions, elements=elements)
    args = {"target": target} if isinstance(target, (int, np.integer)) else dict(as_args(target))
    out = {}
    for f in functions or _default_functions(args):
        vals, fixed = fixed_values(fmt, f, x_row, args, specials)
        row = [special_text(float(v), digits) if ok else None for v, ok in zip(vals, fixed)]
        c = compact(f, x_row, args, specials)
        if c is not None:
            xs, a, cols = c
            if len(row) == 1:
                row = strings_of(fmt, xs, a, digits, functions=[f])[f] if not fixed[0] else row
            else:
                want = set(range(x_row.size) if elements is None else elements)
                pos = [i for i, j in enumerate(cols.tolist()) if j in want]
                sub = strings_of(fmt, xs, a, digits, functions=[f], elements=pos)[f] if pos else []
                for i in pos:
                    row[int(cols[i])] = sub[i]
        out[f] = row
    return out


def exact_special(ulp: np.ndarray) -> np.ndarray:
    """Where a reference value is an exact infinity or NaN (stored with ulp = +inf)."""
    return np.isinf(ulp)


def returned_kind(y: np.ndarray, function: str, n: int | None = None) -> str:
    """What an implementation returned for a fully masked row: nan, zeros, uniform or other (``n``:
    the row's length, where y is a piece of it)."""
    y = np.asarray(y, dtype=np.float64)
    if np.isnan(y).all():
        return "nan"
    n = y.size if n is None else n
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
