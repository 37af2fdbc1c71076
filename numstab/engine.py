"""The engine: run implementations on a batch, judge every output against the exact
reference, and summarize outcomes. compare, inspect and audit all go through
:func:`evaluate` and :func:`summarize`, so they report identical figures for the same inputs.

Nothing here parses arguments or prints.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np

from .errors import CallableError, NumstabError, ReferenceMismatch, unknown_name
from .formats import Format
from .functions import FUNCTIONS, REGISTRY, Impl, as_args
from .functions import get as get_function
from .limits import keep_freed_memory
from .metrics import DEFAULT_TOLERANCE, element_metrics, quantize
from .reference.escalation import compute_reference
from .results import FLAG_NAMES, INACCURATE, STATUSES, BigFigure
from .steps import DEFAULT_COMPUTE

# every numpy temporary of a batch reused from the heap, not faulted in again (limits.py); from the
# import on, so that the inputs' own temporaries (loading, rounding) are reused too
keep_freed_memory()

_FLAG_OF = {"overflow": "overflow", "underflow": "underflow", "invalid value": "invalid",
            "divide by zero": "divide"}






@contextlib.contextmanager
def capture_flags():
    """Collect the IEEE exception flags numpy sees inside the block."""
    seen: set = set()

    def record(kind, _flag):
        seen.add(_FLAG_OF.get(kind, kind))

    old = np.seterrcall(record)
    try:
        with np.errstate(all="call"):
            yield seen
    finally:
        np.seterrcall(old)


def run_impl(impl: Impl, x: np.ndarray, acc: str, target) -> tuple[np.ndarray, tuple]:
    """Run one implementation on x (target dtype); (outputs as float64, sorted flags)."""
    expected = impl.record.output_shape(x.shape)
    with capture_flags() as seen:
        try:
            y = impl(x, acc, target)
        except NumstabError:
            raise
        except Exception as exc:  # a user's callable: report, don't crash
            raise CallableError(f"{impl.name} raised {type(exc).__name__}: {exc}") from None
    y = np.asarray(y)
    if y.shape != expected:
        raise CallableError(f"{impl.name} returned shape {y.shape}, expected {expected}")
    if y.dtype != x.dtype:
        raise CallableError(f"{impl.name} returned dtype {y.dtype}, expected {x.dtype}")
    with np.errstate(all="ignore"):
        return y.astype(np.float64), tuple(f for f in FLAG_NAMES if f in seen)


def _run_box(impl: Impl, x: np.ndarray, acc: str, arg) -> tuple:
    """:func:`run_impl` of a black box as (outputs, flags, None), or (None, (), its error's words)."""
    try:
        return (*run_impl(impl, x, acc, arg), None)
    except CallableError as exc:
        return None, (), str(exc)


def run_traced(impl: Impl, fmt: Format, x: np.ndarray, acc: str, target, groups,
               compute: str = DEFAULT_COMPUTE, tracer=None):
    """Run a built-in kernel step by step over the whole batch (``tracer``: a given one, a
    piece's: numstab.vector.Piece.tracer).

    Returns (outputs as float64, root codes, flags raised in the format for each group of rows,
    the flag bits of every row: steps.FLAG_BIT).
    """
    from .steps import Tracer, widen

    tr = Tracer(fmt, x.shape[0]) if tracer is None else tracer
    with np.errstate(all="ignore"):
        out = impl.run(x, acc, impl.record.arg(as_args(target)), tr, compute)
        y = widen(out.v, np.float64)
    return y, out.root, _group_flags(tr.flags, groups), tr.flags


def _group_flags(row_flags: np.ndarray, groups) -> list:
    """The flags raised in each group of rows (names), from the flag bits of every row."""
    from .steps import FLAG_BIT

    flags = []
    for g in groups or ():
        bits = int(np.bitwise_or.reduce(row_flags[g])) if row_flags[g].size else 0
        flags.append(tuple(f for f in FLAG_NAMES if bits & FLAG_BIT[f]))
    return flags


def attributes_first(fmt: Format, impl: Impl, shape: tuple, acc: str, compute: str, tolerance: float) -> bool:
    """Whether a built-in's run on a batch of vectors of this shape had better be its attributed run
    (:func:`run_attributed`): a sequential sum over 4,096 or more terms in the format's own precision
    (float32, float64; a half format computed in the format) leaves nearly every output above a few
    ULPs, so every row would be traced again for its causes. Only a matter of time: both runs give the
    same values, roots, flags and codes."""
    from .steps import compute_dtype

    if impl.record.output == "elementwise" or acc != "sequential" or tolerance > 16 or shape[-1] < 4096:
        return False
    return compute_dtype(fmt.dtype, compute) == fmt.dtype and len(shape) == 2


def run_attributed(impl: Impl, fmt: Format, x: np.ndarray, acc: str, target, groups,
                   compute: str = DEFAULT_COMPUTE):
    """:func:`run_traced`'s (outputs, roots, flags per group, flag bits per row) from the attributing
    tracer's passes over every row (causes.attribute), with their cause codes and events."""
    from .causes import attribute
    from .steps import widen

    runs: list = []
    rows = np.arange(x.shape[0])
    codes, events = attribute(impl, fmt, x, acc, impl.record.arg(as_args(target)), rows, compute,
                              outputs=runs)
    with np.errstate(all="ignore"):
        y = np.concatenate([widen(v, np.float64) for v, _, _ in runs], axis=0)
    root = np.concatenate([r for _, r, _ in runs], axis=0)
    row_flags = np.concatenate([fl for _, _, fl in runs])
    return y, root, _group_flags(row_flags, groups), row_flags, (codes, events)


def _settle_exactly(fmt, x, target, ref, open_, specials=None, piece=None) -> None:
    """Figures whose bounds straddle a quantization step at the last tier: decided exactly.

    Sets each outcome's ``exact`` (and ``big`` for figures beyond float64's range); an
    element the precision limit cannot decide makes its reference undetermined.
    """
    from decimal import Decimal

    from .reference import exact_figures, row_args

    for o, mask in open_:
        if not mask.any():
            continue
        f = o.impl.function
        eu, er = np.full(mask.shape, np.nan), np.full(mask.shape, np.nan)
        done = np.zeros(mask.shape, dtype=bool)
        idx = np.argwhere(mask)
        for b in np.unique(idx[:, 0]):
            sel = [tuple(i) for i in idx[idx[:, 0] == b]]
            items = [(i[1] if len(i) > 1 else 0, float(o.y[i])) for i in sel]
            xb, ab = x[b], row_args(target, b)
            figs = [None] * len(items)
            if piece is not None:  # a piece of a long vector: the values its limits fix (Piece.limits)
                figs = _limit_figures(fmt, f, xb, items, piece, target)
            elif not np.isfinite(xb).all():  # the finite vector the reference saw (masks.py)
                figs, xb, ab, items = _masked_figures(fmt, f, xb, ab, items, specials)
            rest = [k for k, g in enumerate(figs) if g is None]
            if rest and xb is not None:
                whole = None if piece is None else piece.whole(target)
                for k, g in zip(rest, exact_figures(fmt, xb, ab, f, [items[k] for k in rest], whole=whole)):
                    figs[k] = g
            for i, fig in zip(sel, figs):
                if fig is None:
                    ref[f].determined[i] = False
                    continue
                done[i] = True
                for kind, v, arr in (("ulp", fig[0], eu), ("rel", fig[1], er)):
                    if isinstance(v, (Decimal, BigFigure)):
                        o.big[(kind, i)] = v
                        v = np.inf
                    arr[i] = v
        o.exact = (done, eu, er)


def _fixed_figures(fmt, v: float, y: float):
    """The figures of an output y against an exact value v that the limits fix: rationally for a
    finite number of the format, else 0 or infinite (never open)."""
    from fractions import Fraction

    from .reference import rational_figures

    if np.isfinite(v):
        return rational_figures(fmt, Fraction(v), y)
    return (0.0, 0.0) if y == v or (np.isnan(y) and np.isnan(v)) else (np.inf, np.inf)


def _limit_figures(fmt, function: str, x_row, items, piece, args):
    """Figures of the items of a piece of a long vector that its non-finite entries fix
    (numstab.vector.Piece.limits), None for the others (each at its own place in the piece)."""
    vals, fixed = piece.limits(function, x_row, args)
    return [_fixed_figures(fmt, float(vals[j]), y) if fixed[j] else None for j, y in items]


def _masked_figures(fmt, function: str, x_row, args_row, items, specials):
    """Figures of a row holding non-finite entries: exactly (rationals) where the limits fix
    the exact value; the other items moved to the finite vector the reference saw.
    Returns (figures or None per item, that vector, its arguments, the moved items)."""
    from .masks import compact, fixed_values

    vals, fixed = fixed_values(fmt, function, x_row, args_row, specials)
    c = compact(function, x_row, args_row, specials)
    xs, a, cols = c if c is not None else (None, None, np.array([], dtype=np.int64))
    pos = {int(j): i for i, j in enumerate(cols)}
    figs, moved = [], []
    for j, y in items:
        if fixed[j if len(fixed) > 1 else 0]:
            figs.append(_fixed_figures(fmt, float(vals[j if len(fixed) > 1 else 0]), y))
            moved.append((0, y))
        else:
            figs.append(None)
            moved.append((pos[j] if len(fixed) > 1 else 0, y))
    return figs, xs, a, moved


@dataclass
class ImplOutcome:
    impl: Impl
    y: np.ndarray | None = None
    flags: list = field(default_factory=list)  # one tuple per group
    error: str | None = None
    ulp: np.ndarray | None = None
    rel: np.ndarray | None = None
    status: np.ndarray | None = None
    cause: np.ndarray | None = None  # int8 codes per element (steps.CODE; 0 = none)
    root: np.ndarray | None = None
    row_flags: np.ndarray | None = None  # a built-in's flag bits per row (steps.FLAG_BIT)
    inferred: bool = False  # causes inferred (a black box), not established from the steps
    events: list = field(default_factory=list)  # (rows, tracer events) of the attribution passes
    #: figures beyond float64's range (inf in ``ulp`` / ``rel``), exactly: {("ulp" or "rel", index): Decimal}
    big: dict = field(default_factory=dict)
    exact: tuple | None = None  # (mask, ULP figures, relative figures) decided by reference.exact_figures
    box: object = None  # a black box's run on the whole long vector a piece is of (vector.BoxRun)
    attributed: tuple | None = None  # (cause codes, events) of every row, from run_attributed

    def figure(self, kind: str, index):
        """One element's ULP ("ulp") or relative ("rel") figure: a float, or a Decimal beyond float64."""
        index = tuple(np.atleast_1d(index).tolist()) if not isinstance(index, tuple) else index
        if (kind, index) in self.big:
            return self.big[(kind, index)]
        return float((self.ulp if kind == "ulp" else self.rel)[index])


def evaluate(fmt: Format, x: np.ndarray, target: np.ndarray, impls, acc: str = "sequential",
             tolerance: float = DEFAULT_TOLERANCE, groups=None, mode: str = "auto",
             ref=None, on_error: str = "raise", verify: int = 0, specials=None, temperature=None,
             compute: str = DEFAULT_COMPUTE, row_flags: bool = False, stage=None, piece=None,
             flags_only: bool = False):
    """Evaluate impls on the batch x (B, n) float64 exact values of fmt.

    ``stage(fraction)``: called as the evaluation passes its stages (the kernels, the reference,
    the figures, each implementation's causes) with the fraction done so far, in [0, 1) --
    the progress of one long evaluation (a single long vector).

    ``compute``: the precision model of the built-in kernels (steps.COMPUTE_MODELS; black
    boxes compute as they do).

    ``groups``: row slices whose IEEE flags are recorded separately (default: one);
    ``row_flags``: built-ins keep the flag bits of every row instead (``ImplOutcome.row_flags``;
    their per-group ``flags`` are then left empty: numstab.cells reduces them per cell).
    ``specials`` (masks.Specials): how -inf (masks), +inf and NaN inputs are read.
    ``temperature`` T: every implementation first divides x by T held in the format, in the
    format (a sampler's ``logits / T``; a traced step for built-ins), and the reference is the
    exact value at the exact quotients x / T_F (:func:`scale_args`).
    ``piece`` (numstab.vector.Piece): x is that piece of columns of one long vector, whose
    every built-in implementation (only those) is traced and judged as in the whole vector.
    ``flags_only``: the implementations' outputs and flags alone (a long vector's one output is
    judged by its first piece; the others add their flags): no reference, figures or causes.
    Returns (list of ImplOutcome, reference dict, its reference.escalation.Escalation).
    """
    B = x.shape[0]
    groups = groups or [slice(0, B)]
    xc = fmt.cast(x)
    xq = x  # the inputs black boxes' causes are inferred from: x / T rounded to float64
    if temperature is not None:
        xq, impls = scaled(fmt, x, impls, temperature)
        target = scale_args(fmt, target, B, temperature)  # the reference: f at the exact x / T_F
    stage = stage or (lambda fraction: None)
    outs = []
    for k, impl in enumerate(impls):
        if k:
            stage(0.25 * k / len(impls))
        o = ImplOutcome(impl, inferred=not impl.builtin)
        ys = []
        try:
            first = impl.builtin and piece is None  # (a piece's attribution is the vector's: not here)
            if first and attributes_first(fmt, impl, xc.shape, acc, compute, tolerance):
                o.y, o.root, o.flags, o.row_flags, o.attributed = run_attributed(
                    impl, fmt, xc, acc, target, None if row_flags else groups, compute)
            elif impl.builtin:
                tr = None if piece is None else piece.tracer(impl, impl.record.arg(as_args(target)), target)
                o.y, o.root, o.flags, o.row_flags = run_traced(impl, fmt, xc, acc, target,
                                                               None if row_flags else groups, compute, tr)
            elif piece is not None:  # a long vector's black box: run once on the whole vector
                o.box = piece.black_box(impl, target, lambda xc, a, impl=impl: _run_box(impl, xc, acc, a))
                if o.box.error is not None:
                    raise CallableError(o.box.error)
                o.y = o.box.at(piece.c0, piece.c1)
                o.flags = [o.box.flags for _ in groups]
            else:
                arg = impl.record.arg(as_args(target))
                for g in groups:
                    y, fl = run_impl(impl, xc[g], acc, None if arg is None else arg[g])
                    ys.append(y)
                    o.flags.append(fl)
                o.y = np.concatenate(ys, axis=0)
        except CallableError as exc:
            if on_error == "raise":
                raise
            o.error = str(exc)
        outs.append(o)
    if flags_only:
        return outs, None, None
    stage(0.25)
    xr = x if piece is None else piece.seen(x)  # the vector the reference sees (+inf as a limit: Piece.seen)
    if ref is None:
        needed = {o.impl.function for o in outs}
        if any(not o.impl.builtin for o in outs) and "logsumexp" in FUNCTIONS:
            # causes.infer reads the exact logsumexp of a black box's family (one sum: no extra cost)
            fam = FUNCTIONS["logsumexp"].reference
            if any(FUNCTIONS[f].reference == fam for f in needed):
                needed.add("logsumexp")
        ref, esc = compute_reference(fmt, xr, target, mode, functions=[f for f in FUNCTIONS if f in needed],
                                     specials=specials, piece=piece)
    else:
        ref, esc = ref
    stage(0.5)
    live = [o for o in outs if o.error is None]
    settled = {}
    for o in live:
        o.ulp, o.rel, o.status, settled[id(o)] = element_metrics(fmt, o.impl.function, o.y,
                                                                 ref[o.impl.function], tolerance)
    while True:  # elements whose figures the bounds leave open go up a tier, alone
        masks: dict = {}
        for o in live:
            f = o.impl.function
            masks[f] = masks.get(f, False) | ~settled[id(o)]
        before = {f: lv.copy() for f, lv in esc.level.items()}
        if not esc.bump(masks):
            break
        esc.decide()
        for o in live:  # figures again where the reference moved
            f = o.impl.function
            moved = esc.level[f] != before[f]
            if moved.any():
                sub = ref[f].at(moved)
                o.ulp[moved], o.rel[moved], o.status[moved], settled[id(o)][moved] = element_metrics(
                    fmt, f, o.y[moved], sub, tolerance)
    open_ = [(o, ~settled[id(o)]) for o in live]
    if any(m.any() for _, m in open_):
        _settle_exactly(fmt, xr, target, ref, open_, specials, piece)
        for o, _ in open_:
            o.ulp, o.rel, o.status, _s = element_metrics(fmt, o.impl.function, o.y, ref[o.impl.function],
                                                         tolerance, exact=o.exact)
    for k, o in enumerate(outs):
        stage(0.6 + 0.35 * k / len(outs))
        if o.error is None:
            _causes(fmt, xq, xc, target, acc, tolerance, ref, o, compute, piece)
    stage(0.95)
    if verify:
        from .reference import verify_rows

        # rows with masks or infinities too: verify_rows checks them through the mask layer; rows that
        # hold one are drawn first (up to half of K), as they take the rarer paths
        masked = np.nonzero(~np.isfinite(x).all(axis=1))[0]
        clean = np.nonzero(np.isfinite(x).all(axis=1))[0]
        rng = np.random.default_rng(B)
        k_m = min(masked.size, max(verify - clean.size, (verify + 1) // 2))
        picked = rng.choice(masked, size=k_m, replace=False).tolist() if k_m else []
        k_c = min(clean.size, verify - k_m)
        picked += rng.choice(clean, size=k_c, replace=False).tolist() if k_c else []
        bad = verify_rows(fmt, x, target, ref, sorted(picked), [o for o in outs if o.error is None],
                          specials)
        if bad:
            raise ReferenceMismatch(f"reference self-check FAILED in {fmt.name}: {bad[0]} "
                                    f"({len(bad)} disagreements)")
    return outs, ref, esc


def scale_args(fmt: Format, args, B: int, temperature):
    """The batch's extra arguments with ``scale``: T_F (T held in the format) for every vector, so
    that the reference computes f(x / T_F) with the exact quotients (reference.softmax.SCALED).
    Without a temperature (None or 1) the arguments as they are."""
    from .functions import as_args
    from .grids import format_temperature

    if temperature is None or float(temperature) == 1:
        return args
    return {**as_args(args), "scale": np.full(B, format_temperature(fmt, float(temperature)))}


def scaled(fmt: Format, x: np.ndarray, impls, temperature: float):
    """(the float64 quotients x / T_F, the implementations with the division in front).

    T_F is T rounded to the format (a sampler holds T in the model's dtype). Each
    implementation runs on x and divides by T_F in the format first: a built-in as a traced
    step of its kernel (an overflow of x / T is then established as the root of what
    follows), a black box on the quotients rounded to the format. The float64 quotients
    returned serve the words of verdicts and the inferred causes; the exact reference is f at
    the exact quotients (:func:`scale_args`).
    """
    import dataclasses

    from .errors import UsageError
    from .grids import format_temperature

    t = float(temperature)
    if not (math.isfinite(t) and t > 0):
        raise UsageError(f"--temperature {temperature!r}: must be a finite number > 0")
    tf = format_temperature(fmt, t)
    with np.errstate(all="ignore"):
        z = x / tf
    if (np.isfinite(x) & ~np.isfinite(z)).any():
        raise UsageError(f"x / {t:g} overflows float64: numstab cannot hold the scaled inputs exactly enough")
    tc = fmt.cast(np.full((1, 1), tf))

    def wrap(impl):
        if impl.builtin:  # x / T in the format, before the kernel (whatever its precision model)
            def pre(xx, o):
                return o.div(xx, tc)
            return dataclasses.replace(impl, prologue=pre)
        if impl.record.takes:
            def fn(xx, acc, arg, f=impl.fn):
                with np.errstate(all="ignore"):
                    return f(xx / tc, acc, arg)
        else:
            def fn(xx, acc, f=impl.fn):
                with np.errstate(all="ignore"):
                    return f(xx / tc, acc)
        return dataclasses.replace(impl, fn=fn)

    return z, [wrap(i) for i in impls]


def _causes(fmt, x, xc, target, acc, tolerance, ref, o: ImplOutcome, compute: str = DEFAULT_COMPUTE,
            piece=None) -> None:
    """Final statuses and causes of one outcome (established for built-ins, inferred otherwise)."""
    from .causes import attribute, finalize, infer

    f = o.impl.function
    r = ref[f]
    if o.impl.builtin:
        st, cause, need = finalize(fmt, f, o.y, r.rounded, o.ulp, o.status, o.root, tolerance,
                                   exact_special=np.isinf(r.ulp))
        rows = np.nonzero(need.reshape(need.shape[0], -1).any(axis=1))[0]
        if rows.size:
            arg = o.impl.record.arg(as_args(target))
            more = {}
            if piece is not None:  # the piece's attributed run; infinities named from the vector's events
                more = {"tracer": lambda: piece.tracer(o.impl, arg, target, attribute=True),
                        "vector_events": lambda: piece.vector_events(o.impl, arg, target)}
            if o.attributed is not None:  # every row's codes, from the attributed run
                codes, o.events = o.attributed[0][rows], o.attributed[1]
            else:
                codes, o.events = attribute(o.impl, fmt, xc, acc, arg, rows, compute, **more)
            cause[rows] = np.where(need[rows], codes, cause[rows])
    else:
        st, cause = infer(fmt, f, x, o.y, ref, o.status, o.ulp, tolerance, exact_special=np.isinf(r.ulp),
                          vector=o.box)
    cause[np.isinf(r.ulp) & (st < INACCURATE)] = 0  # NaN where NaN is the answer: nothing to explain
    o.status, o.cause = st, cause


def cause_counts(status: np.ndarray, cause: np.ndarray) -> dict:
    """How many failing elements (nan, overflow, underflow, inaccurate) have each cause."""
    from .results import CAUSES

    failing = status >= INACCURATE
    codes, cnt = np.unique(cause[failing], return_counts=True)
    return {CAUSES[int(c) - 1]: int(k) for c, k in zip(codes, cnt) if c}


def main_cause(status: np.ndarray, cause: np.ndarray) -> str | None:
    """The most frequent cause among the elements with the worst failing status."""
    from .results import CAUSES

    if not status.size or status.max() < INACCURATE:
        return None
    worst = cause[status == status.max()]
    codes, cnt = np.unique(worst[worst != 0], return_counts=True)
    return CAUSES[int(codes[np.argmax(cnt)]) - 1] if codes.size else None


def summarize(o, rows=slice(None)) -> dict:
    """Aggregate figures of an outcome over the given rows -- or of several pieces of one
    implementation's work, ``o`` a list of (ImplOutcome, rows) (audit's batches of each n).

    The one summary of compare cells, inspect batches and audit results: worst status, counts
    per status (STATUSES), failing elements per cause, the main cause, max and median
    ULP error (quantized) and max relative error.
    """
    parts = o if isinstance(o, list) else [(o, rows)]
    st = np.concatenate([p.status[r].ravel() for p, r in parts])
    u = np.concatenate([p.ulp[r].ravel() for p, r in parts])
    rel = np.concatenate([p.rel[r].ravel() for p, r in parts])
    cs = np.concatenate([p.cause[r].ravel() for p, r in parts])
    counts = {k: 0 for k in STATUSES}
    for code, cnt in zip(*np.unique(st, return_counts=True)):
        counts[STATUSES[code]] += int(cnt)
    known = ~np.isnan(u)
    worst = STATUSES[int(st.max())] if st.size else "ok"
    out = {
        "status": worst,
        "counts": counts,
        "causes": cause_counts(st, cs),
        "cause": main_cause(st, cs),
        "max_ulp": float(np.max(u[known])) if known.any() else float("nan"),
        "median_ulp": float(quantize(np.median(u[known]))) if known.any() else float("nan"),
        "max_rel": float(np.max(rel[known])) if known.any() else float("nan"),
    }
    if any(p.big for p, _ in parts):
        _big_summary(parts, u[known], out)
    return out


def _big_summary(parts, known_u, out: dict) -> None:
    """Replace the infinite maxima (and median) that stand for figures beyond float64's range."""
    from decimal import Decimal

    big: dict = {"ulp": [], "rel": []}
    for o, rows in parts:
        picked = set(range(o.status.shape[0])[rows])
        for (kind, i), v in o.big.items():
            if i[0] in picked:
                big[kind].append(v)
    if big["ulp"]:
        out["max_ulp"] = max(big["ulp"])
    if big["rel"]:
        out["max_rel"] = max(big["rel"])
    if big["ulp"] and math.isinf(out["median_ulp"]):
        vals = sorted([Decimal(float(v)) for v in known_u if math.isfinite(v)] + big["ulp"]
                      + [Decimal("Infinity")] * int(np.sum(np.isinf(known_u)) - len(big["ulp"])))
        h = len(vals) // 2
        med = vals[h] if len(vals) % 2 else (vals[h - 1] + vals[h]) / 2
        q = Decimal(f"{med:.3g}") if med.is_finite() else med
        out["median_ulp"] = q if not math.isfinite(float(q)) and q.is_finite() else float(q)


def select_impls(functions=None, impl_names=None) -> list[Impl]:
    functions = list(dict.fromkeys(get_function(f).name for f in (functions or FUNCTIONS)))
    chosen = []
    names = list(impl_names or [])
    all_names = sorted({n for f in FUNCTIONS for n in REGISTRY[f]})
    for name in names:
        if not any(name in REGISTRY[f] for f in functions):
            raise unknown_name("implementation", name, all_names)
    for f in functions:
        for name, impl in REGISTRY[f].items():
            if not names or name in names:
                chosen.append(impl)
    return chosen
