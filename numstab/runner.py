"""Domain work of the commands: evaluate implementations against the reference.

Nothing here parses arguments or prints; the CLI and the tests call these
functions and get result objects back.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from . import __version__
from .errors import NumstabError, UsageError, unknown_name
from .formats import DEFAULT_DTYPES, Format, get_format
from .functions import FUNCTIONS, REGISTRY, Impl, as_args
from .functions import get as get_function
from .grids import GridSpec, make_grid, stack
from .grids import cells as grid_cells
from .metrics import DEFAULT_TOLERANCE, INACCURATE, STATUSES, element_metrics, quantize
from .reference import compute_reference, fast_supported
from .results import FLAG_NAMES, STATUS_KEYS, CellResult, CompareRun, RefData, jnum
from .steps import ACC_MODELS as ACCUMULATE

REFERENCE_MODES = ("auto", "mpmath")
_FLAG_OF = {"overflow": "overflow", "underflow": "underflow", "invalid value": "invalid",
            "divide by zero": "divide"}


class CallableError(NumstabError):
    """A user implementation raised, or returned the wrong shape or dtype."""


class ReferenceMismatch(NumstabError):
    """--verify found a reference value that changes at twice the precision."""


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


def run_traced(impl: Impl, fmt: Format, x: np.ndarray, acc: str, target, groups):
    """Run a built-in kernel step by step over the whole batch.

    Returns (outputs as float64, root codes, flags raised in the format for each group of rows).
    """
    from .steps import FLAG_BIT, Tracer

    tr = Tracer(fmt, x.shape[0])
    with np.errstate(all="ignore"):
        out = impl.run(x, acc, impl.record.arg(as_args(target)), tr)
        y = out.v.astype(np.float64)
    flags = []
    for g in groups:
        bits = int(np.bitwise_or.reduce(tr.flags[g])) if tr.flags[g].size else 0
        flags.append(tuple(f for f in FLAG_NAMES if bits & FLAG_BIT[f]))
    return y, out.root, flags


def _settle_exactly(fmt, x, target, ref, open_) -> None:
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
            for i, fig in zip(sel, exact_figures(fmt, x[b], row_args(target, b), f, items)):
                if fig is None:
                    ref[f].determined[i] = False
                    continue
                done[i] = True
                for kind, v, arr in (("ulp", fig[0], eu), ("rel", fig[1], er)):
                    if isinstance(v, Decimal):
                        o.big[(kind, i)] = v
                        v = np.inf
                    arr[i] = v
        o.exact = (done, eu, er)


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
    inferred: bool = False  # causes inferred (a black box), not established from the steps
    events: list = field(default_factory=list)  # (rows, tracer events) of the attribution passes
    #: figures beyond float64's range (inf in ``ulp`` / ``rel``), exactly: {("ulp" or "rel", index): Decimal}
    big: dict = field(default_factory=dict)
    exact: tuple | None = None  # (mask, ULP figures, relative figures) decided by reference.exact_figures

    def figure(self, kind: str, index):
        """One element's ULP ("ulp") or relative ("rel") figure: a float, or a Decimal beyond float64."""
        index = tuple(np.atleast_1d(index).tolist()) if not isinstance(index, tuple) else index
        if (kind, index) in self.big:
            return self.big[(kind, index)]
        return float((self.ulp if kind == "ulp" else self.rel)[index])


def evaluate(fmt: Format, x: np.ndarray, target: np.ndarray, impls, acc: str = "sequential",
             tolerance: float = DEFAULT_TOLERANCE, groups=None, mode: str = "auto",
             ref=None, on_error: str = "raise", verify: int = 0):
    """Evaluate impls on the batch x (B, n) float64 exact values of fmt.

    ``groups``: row slices whose IEEE flags are recorded separately (default: one).
    Returns (list of ImplOutcome, reference dict, its reference.escalation.Escalation).
    """
    B = x.shape[0]
    groups = groups or [slice(0, B)]
    xc = fmt.cast(x)
    outs = []
    for impl in impls:
        o = ImplOutcome(impl, inferred=not impl.builtin)
        ys = []
        try:
            if impl.builtin:
                o.y, o.root, o.flags = run_traced(impl, fmt, xc, acc, target, groups)
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
    if ref is None:
        needed = {o.impl.function for o in outs}
        if any(not o.impl.builtin for o in outs) and "logsumexp" in FUNCTIONS:
            # causes.infer reads the exact logsumexp of a black box's family (one sum: no extra cost)
            fam = FUNCTIONS["logsumexp"].reference
            if any(FUNCTIONS[f].reference == fam for f in needed):
                needed.add("logsumexp")
        ref, esc = compute_reference(fmt, x, target, mode, functions=[f for f in FUNCTIONS if f in needed])
    else:
        ref, esc = ref
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
                sub = RefData(*(getattr(ref[f], k)[moved] for k in RefData.__dataclass_fields__))
                o.ulp[moved], o.rel[moved], o.status[moved], settled[id(o)][moved] = element_metrics(
                    fmt, f, o.y[moved], sub, tolerance)
    open_ = [(o, ~settled[id(o)]) for o in live]
    if any(m.any() for _, m in open_):
        _settle_exactly(fmt, x, target, ref, open_)
        for o, _ in open_:
            o.ulp, o.rel, o.status, _s = element_metrics(fmt, o.impl.function, o.y, ref[o.impl.function],
                                                         tolerance, exact=o.exact)
    for o in outs:
        if o.error is None:
            _causes(fmt, x, xc, target, acc, tolerance, ref, o)
    if verify:
        from .reference import verify_rows

        rows = np.random.default_rng(B).choice(B, size=min(verify, B), replace=False)
        bad = verify_rows(fmt, x, target, ref, sorted(rows.tolist()),
                          [o for o in outs if o.error is None])
        if bad:
            raise ReferenceMismatch(f"reference self-check FAILED in {fmt.name}: {bad[0]} "
                                    f"({len(bad)} disagreements)")
    return outs, ref, esc


def _causes(fmt, x, xc, target, acc, tolerance, ref, o: ImplOutcome) -> None:
    """Final statuses and causes of one outcome (established for built-ins, inferred otherwise)."""
    from .causes import attribute, finalize, infer

    f = o.impl.function
    r = ref[f]
    if o.impl.builtin:
        st, cause, need = finalize(fmt, f, o.y, r.rounded, o.ulp, o.status, o.root, tolerance)
        rows = np.nonzero(need.reshape(need.shape[0], -1).any(axis=1))[0]
        if rows.size:
            codes, o.events = attribute(o.impl, fmt, xc, acc, o.impl.record.arg(as_args(target)), rows)
            cause[rows] = np.where(need[rows], codes, cause[rows])
    else:
        st, cause = infer(fmt, f, x, o.y, ref, o.status, o.ulp, tolerance)
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


def summarize(o: ImplOutcome, rows) -> dict:
    """Aggregate figures over the given rows of an outcome."""
    st = o.status[rows].ravel()
    u = o.ulp[rows].ravel()
    r = o.rel[rows].ravel()
    cs = o.cause[rows].ravel()
    counts = {k: 0 for k in STATUS_KEYS}
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
        "max_rel": float(np.max(r[known])) if known.any() else float("nan"),
    }
    if o.big:
        _big_summary(o, rows, u[known], out)
    return out


def _big_summary(o: ImplOutcome, rows, known_u, out: dict) -> None:
    """Replace the infinite maxima (and median) that stand for figures beyond float64's range."""
    from decimal import Decimal

    picked = set(range(o.status.shape[0])[rows])
    big = {k: [v for (kind, i), v in o.big.items() if kind == k and i[0] in picked] for k in ("ulp", "rel")}
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


def check_choice(kind: str, value: str, choices) -> str:
    if value not in choices:
        raise unknown_name(kind, value, choices)
    return value


def library_versions() -> dict:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for name in ("numpy", "mpmath", "gmpy2", "ml_dtypes"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


@dataclass(frozen=True)
class _Task:
    """One unit of compare work: some offsets of one (dtype, spread, n)."""

    dtype: str
    grid: GridSpec  # a sub-grid: one spread, one n, some offsets (same z as the full grid)
    impl_keys: tuple
    accumulate: str
    tolerance: float
    mode: str
    verify: int = 0

    @property
    def elements(self) -> int:
        return len(self.grid.offsets) * self.grid.trials * self.grid.sizes[0]

    @property
    def cost(self) -> float:
        """Rough seconds: mpmath settles ~1.5e4 elements/s, the fast path ~2e6 (with the kernels)."""
        mp = self.mode == "mpmath" or not fast_supported(get_format(self.dtype))
        return self.elements / (1.5e4 if mp else 2e6)


def _run_task(task: _Task) -> list[CellResult]:
    fmt = get_format(task.dtype)
    chosen = [REGISTRY[f][name] for f, name in task.impl_keys]
    group = grid_cells(fmt, task.grid)
    n, T = task.grid.sizes[0], task.grid.trials
    x, target = stack(group)
    slices = [slice(i * T, (i + 1) * T) for i in range(len(group))]
    outs, _, _ = evaluate(fmt, x, target, chosen, task.accumulate, task.tolerance, slices, task.mode,
                          verify=task.verify)
    results = []
    for o in outs:
        for c, s, fl in zip(group, slices, o.flags):
            summ = summarize(o, s)
            results.append(CellResult(
                function=o.impl.function, impl=o.impl.name, dtype=fmt.name,
                offset=c.offset, spread=c.spread, n=n, trials=T,
                x_min=float(c.x.min()), x_max=float(c.x.max()),
                max_ulp=summ["max_ulp"], median_ulp=summ["median_ulp"],
                max_rel=summ["max_rel"], status=summ["status"], flags=fl,
                counts=tuple(summ["counts"].items()),
                cause=summ["cause"], causes=tuple(summ["causes"].items()),
                cause_inferred=o.inferred,
            ))
    return results


def _tasks(fmts, grids, chosen, accumulate, tolerance, mode, jobs, verify=0) -> list[_Task]:
    keys = tuple((i.function, i.name) for i in chosen)
    whole = []
    for fmt in fmts:
        g = grids[fmt.name]
        for n in g.sizes:
            for sp in g.spreads:
                sub = GridSpec(g.offsets, (sp,), (n,), g.trials, g.seed)
                whole.append(_Task(fmt.name, sub, keys, accumulate, tolerance, mode, verify))
    total = sum(t.cost for t in whole)
    if jobs <= 1 or total < 1.0:
        return whole
    # split the costly ones so every worker gets several pieces
    piece = total / (4 * jobs)
    out = []
    for t in whole:
        k = min(len(t.grid.offsets), max(1, int(np.ceil(t.cost / piece))))
        for chunk in np.array_split(np.array(t.grid.offsets), k):
            sub = GridSpec(tuple(float(v) for v in chunk), t.grid.spreads, t.grid.sizes,
                           t.grid.trials, t.grid.seed)
            out.append(_Task(t.dtype, sub, t.impl_keys, accumulate, tolerance, mode, verify))
    return out


def default_jobs() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def run_compare(dtypes=None, functions=None, impls=None, offsets=None, spreads=None,
                sizes=None, trials=None, seed: int = 0, accumulate: str = "sequential",
                tolerance: float = DEFAULT_TOLERANCE, reference_mode: str = "auto",
                argv=None, progress=None, jobs: int | None = None, verify: int = 0) -> CompareRun:
    """The compare job: every selected implementation over the grid of every dtype.

    ``jobs``: worker processes for independent grid cells (default: the machine's
    cores; small runs stay in this process). ``progress(done, total)`` is called
    with element counts as pieces finish.
    """
    check_choice("accumulation model", accumulate, ACCUMULATE)
    check_choice("reference mode", reference_mode, REFERENCE_MODES)
    if not (tolerance >= 0):
        raise UsageError("--tolerance must be a number >= 0")
    jobs = default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    fmts = [get_format(d) for d in dict.fromkeys(dtypes or DEFAULT_DTYPES)]
    fmts = list({f.name: f for f in fmts}.values())  # an alias and its name count once
    chosen = select_impls(functions, impls)
    grids = {f.name: make_grid(f, offsets, spreads, sizes, trials, seed) for f in fmts}
    jobs_ = default_jobs() if jobs is None else int(jobs)
    _check_memory(fmts, grids, None, len(chosen), max(1, jobs_))  # before building any cell
    for f in fmts:  # inputs that do not fit the format: refuse before any work
        g = grids[f.name]
        probe = GridSpec(g.offsets, g.spreads, (min(g.sizes),), g.trials, g.seed)
        grid_cells(f, probe)
    if verify < 0:
        raise UsageError("--verify must be >= 0")
    tasks = _tasks(fmts, grids, chosen, accumulate, tolerance, reference_mode, jobs, verify)
    total = sum(t.elements for t in tasks)
    parallel = jobs > 1 and len(tasks) > 1 and sum(t.cost for t in tasks) >= 1.0
    _check_memory(fmts, grids, tasks, len(chosen), min(jobs, len(tasks)) if parallel else 1)
    results, done = [], 0
    if parallel:
        import concurrent.futures as cf
        import multiprocessing as mp

        pool = cf.ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=mp.get_context("fork"),
                                      initializer=_worker_init)
        try:
            futs = {pool.submit(_run_task, t): t for t in tasks}
            for fut in cf.as_completed(futs):
                results.extend(fut.result())
                done += futs[fut].elements
                if progress:
                    progress(done, total)
        except BaseException:
            stop_pool(pool)  # a signal or an error: no worker may outlive this run
            raise
        pool.shutdown(wait=True)
    else:
        for t in tasks:
            results.extend(_run_task(t))
            done += t.elements
            if progress:
                progress(done, total)
    order = {f: i for i, f in enumerate(FUNCTIONS)}
    impl_order = {(i.function, i.name): k for k, i in enumerate(chosen)}
    results.sort(key=lambda r: (order[r.function], r.dtype, r.spread, r.n, r.offset,
                                impl_order[(r.function, r.impl)]))
    meta = {
        "version": __version__,
        "seed": int(seed),
        "argv": list(argv) if argv is not None else None,
        "accumulate": accumulate,
        "tolerance": jnum(tolerance),
        "reference": reference_mode,
        **({"verify": int(verify)} if verify else {}),
        "grids": {k: g.to_dict() for k, g in grids.items()},
        **library_versions(),
    }
    from .reference import thresholds as exact_thresholds

    th = tuple(exact_thresholds(f) for f in fmts)
    return CompareRun(meta=meta, results=tuple(results), thresholds=th)


def _check_memory(fmts, grids, tasks, n_impls: int, workers: int) -> None:
    """Refuse, before any work, a run whose estimated peak does not fit in memory."""
    from .limits import compare_bytes, require

    cells = sum(len(g.offsets) * len(g.spreads) * len(g.sizes) for g in grids.values())
    if tasks is None:  # before the split into pieces: the whole of each (dtype, n, spread) at once
        pieces = [len(g.offsets) * g.trials * n for g in grids.values() for n in g.sizes for _ in g.spreads]
        workers = 1
    else:
        pieces = [t.elements for t in tasks]
    need = compare_bytes(pieces, cells, n_impls, workers)
    elements = sum(pieces)
    require(f"this run ({elements:,} input elements in {cells:,} grid cells, {n_impls} implementations)",
            need, "use fewer offsets, spreads, sizes, trials, formats or implementations, or --jobs 1")


def _worker_init() -> None:
    """In a worker: default signal actions (the parent handles INT/TERM/HUP and stops the
    workers), and die with the parent even if it is killed outright."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, signal.SIG_DFL)
    die_with_parent()


def die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent exits (best effort elsewhere)."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def stop_pool(pool) -> None:
    """Terminate a ProcessPoolExecutor's workers now, without waiting for their tasks."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        try:
            p.terminate()
        except (OSError, AttributeError):
            pass
    try:
        pool.shutdown(wait=False, cancel_futures=True)
    except Exception:  # noqa: BLE001 - best effort while stopping
        pass
    for p in procs:
        try:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
        except (OSError, AttributeError, ValueError):
            pass


def run_thresholds(dtypes=None, n: int = 1000) -> dict:
    """The thresholds job: exact exp limits of each format."""
    from .formats import FORMATS
    from .reference import thresholds

    if n < 1:
        raise UsageError("--n must be at least 1")
    fmts = [get_format(d) for d in (dtypes or FORMATS)]
    return {"schema": "numstab.thresholds/1", "formats": [thresholds(f, n) for f in fmts]}


# ------------------------------------------------------------------ inspect
INSPECT_SCHEMA = "numstab.inspect/2"


def run_inspect(function: str, values=None, input_file=None, target=None, targets_file=None,
                dtypes=("float32",), impls=None, accumulate: str = "sequential",
                tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """The inspect job. Returns the JSON-ready dict (schema numstab.inspect/1)."""
    from .causes import cause_name, verdict
    from .inputs import load_targets, load_vectors, parse_values, round_inputs
    from .reference import exact_strings
    from .reference import thresholds as exact_thresholds

    rec = get_function(function)
    function = rec.name
    check_choice("accumulation model", accumulate, ACCUMULATE)
    if (values is None or len(values) == 0) == (input_file is None):
        raise UsageError("give the values after -- (e.g. numstab inspect softmax -- 1 2 3) "
                         "or --input FILE, not both and not neither")
    x0 = load_vectors(input_file) if input_file is not None else parse_values(values)
    B, n = x0.shape
    tg = load_targets(target, targets_file, B, n, required=rec.takes == "target")
    chosen = select_impls([function], impls)
    from .limits import inspect_bytes, require  # refuse before the work what cannot fit

    require(f"inspecting {B:,} x {n:,} values", inspect_bytes(B, n, len(chosen), len(dtypes or ("float32",))),
            "inspect fewer values (a long single vector is reported element by element) or use audit")
    results = []
    for dt in dtypes or ("float32",):
        fmt = get_format(dt)
        x = round_inputs(fmt, x0)
        th = exact_thresholds(fmt)
        groups = [slice(i, i + 1) for i in range(B)] if B <= 64 else None
        outs, _, _ = evaluate(fmt, x, tg, chosen, accumulate, tolerance, groups)
        # the exact values depend only on the vector: one escalated mpmath run serves every impl
        ex = exact_strings(fmt, x[0], int(tg[0]), functions=[function])[function] if B == 1 else None
        for o in outs:
            flags = tuple(f for f in FLAG_NAMES if any(f in fl for fl in o.flags))
            names = [cause_name(int(c)) for c in np.atleast_1d(o.cause[0])] if B == 1 else None
            if B == 1:
                y, st, u = o.y[0], o.status[0], o.ulp[0]
                scalar = rec.per_vector
                yy = np.atleast_1d(y)
                events = o.events[0][1] if o.events else []  # the attribution pass's, if it ran
                if o.impl.builtin and not o.events:  # trace the vector step by step for the verdict's words
                    from .steps import Tracer

                    tr = Tracer(fmt, 1, attribute=True)
                    with np.errstate(all="ignore"):
                        o.impl.run(fmt.cast(x[:1]), accumulate, rec.arg(as_args(tg[:1])), tr)
                    events = tr.events
                results.append({
                    "schema": INSPECT_SCHEMA, "function": function, "dtype": fmt.name,
                    "impl": o.impl.name, "accumulate": accumulate,
                    **({"target": int(tg[0])} if rec.takes == "target" else {}),
                    "inputs": [float(v) for v in x[0]],
                    "outputs": [jnum(v) for v in yy],
                    "reference": ex,
                    "ulp_error": [jnum(o.figure("ulp", (0,) if scalar else (0, j)))
                                  for j in range(np.atleast_1d(u).size)],
                    "element_status": [STATUSES[int(s)] for s in np.atleast_1d(st)],
                    "element_cause": names,
                    "status": STATUSES[int(np.max(st))],
                    "cause": main_cause(np.atleast_1d(st), np.atleast_1d(o.cause[0])),
                    "causes": cause_counts(np.atleast_1d(st), np.atleast_1d(o.cause[0])),
                    "cause_inferred": o.inferred,
                    "flags": list(flags),
                    "verdict": verdict(fmt, th, function, o.impl.name, x[0], yy, st, o.cause[0], u,
                                       flags, events, tolerance, o.inferred,
                                       tg[0] if rec.takes == "target" else None),
                    **({"scalar": True} if scalar else {}),
                })
            else:
                summ = summarize(o, slice(0, B))
                results.append({
                    "schema": INSPECT_SCHEMA, "function": function, "dtype": fmt.name,
                    "impl": o.impl.name, "accumulate": accumulate, "vectors": B, "n": n,
                    "counts": summ["counts"], "causes": summ["causes"], "cause": summ["cause"],
                    "cause_inferred": o.inferred,
                    "vectors_failing": int(np.sum((o.status >= INACCURATE).reshape(B, -1).any(axis=1))),
                    "max_ulp": jnum(summ["max_ulp"]), "median_ulp": jnum(summ["median_ulp"]),
                    "max_rel": jnum(summ["max_rel"]), "status": summ["status"], "flags": list(flags),
                })
    if len(results) == 1:
        return results[0]
    return {"schema": INSPECT_SCHEMA, "results": results}
