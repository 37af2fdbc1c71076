"""The compare command: every selected implementation over the grid of every format."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import validate
from ..engine import evaluate, select_impls, summarize
from ..errors import UsageError
from ..formats import DEFAULT_DTYPES, get_format
from ..functions import FUNCTIONS, REGISTRY
from ..grids import (
    DEFAULT_EXTRAS,
    TARGET_AT,
    Extras,
    GridSpec,
    check_extras,
    make_extras,
    make_grid,
    parse_target_at,
    stack,
    targets_at,
)
from ..grids import cells as grid_cells
from ..metrics import DEFAULT_TOLERANCE
from ..reference import fast_supported
from ..results import CellResult, CompareRun, jnum
from ..steps import DEFAULT_COMPUTE
from ..validate import choice as check_choice
from ..workers import default_jobs, run_tasks
from . import run_meta

REFERENCE_MODES = ("auto", "mpmath")


@dataclass(frozen=True)
class _Task:
    """One unit of compare work: some offsets of one (dtype, spread, n, temperature), every mask."""

    dtype: str
    grid: GridSpec  # a sub-grid: one spread, one n, one T, some offsets (same z as the full grid)
    impl_keys: tuple
    accumulate: str
    tolerance: float
    mode: str
    verify: int = 0
    target_at: tuple = TARGET_AT  # where the target sits, for functions that take one
    extras: Extras = DEFAULT_EXTRAS  # labels, cotangents, label smoothing
    compute: str = DEFAULT_COMPUTE  # the precision model of the built-in kernels

    @property
    def elements(self) -> int:
        g = self.grid
        return len(g.offsets) * g.trials * g.sizes[0] * len(g.masks) * len(g.temperatures)

    @property
    def cost(self) -> float:
        """Rough seconds: mpmath settles ~1.5e4 elements/s, the fast path ~2e6 (with the kernels),
        its quad tier (float64 targets) ~3e5."""
        fmt = get_format(self.dtype)
        mp = self.mode == "mpmath" or not fast_supported(fmt)
        return self.elements / (1.5e4 if mp else 3e5 if fmt.p > 24 else 2e6)


def _run_task(task: _Task) -> list[CellResult]:
    from ..masks import MASKABLE
    from ..reference import temperature_functions

    fmt = get_format(task.dtype)
    chosen = [REGISTRY[f][name] for f, name in task.impl_keys]
    cells_all = grid_cells(fmt, task.grid, task.extras)
    n, T = task.grid.sizes[0], task.grid.trials
    results = []
    for mask in task.grid.masks:
        group = [c for c in cells_all if c.mask == mask]
        # a masked cell is evaluated for the functions along a vector (masks.MASKABLE); the
        # element-wise ones (an additive mask is meaningless there) have the unmasked cells only
        impls = chosen if mask == "none" else [i for i in chosen if i.function in MASKABLE]
        x, args = stack(group)
        target = args["target"]
        slices = [slice(i * T, (i + 1) * T) for i in range(len(group))]
        placed = ("target", "smoothing")  # the kinds that carry a target index (--target-at moves it)
        plain = [i for i in impls if i.record.takes not in placed]
        with_target = [i for i in impls if i.record.takes in placed]
        kinds = {"target"} | {i.record.takes for i in plain}  # only what the run's functions take
        runs = [(None, plain, {k: v for k, v in args.items() if k in kinds})] if plain else []
        runs += ([(m, with_target, _placed({k: v for k, v in args.items() if k in placed},
                                           targets_at(m, x, target))) for m in task.target_at]
                 if with_target else [])
        for temp in task.grid.temperatures:
            for mode, run_impls, tg in runs:
                if temp != 1:  # a temperature: the functions whose exact f(x / T) the reference has
                    run_impls = [i for i in run_impls if i.function in temperature_functions()]
                    if not run_impls:
                        continue
                outs, _, _ = evaluate(fmt, x, tg, run_impls, task.accumulate, task.tolerance, slices,
                                      task.mode, verify=task.verify, temperature=None if temp == 1 else temp,
                                      compute=task.compute)
                results += _cells(fmt, group, slices, outs, n, T, mode, temp)
    return results


def _placed(args: dict, t: np.ndarray) -> dict:
    """The extra arguments with the target index t, in ``target`` and in the label smoothing's
    record (smoothed_cross_entropy's target moves with --target-at too)."""
    out = {**args, "target": t}
    if "smoothing" in args:
        out["smoothing"] = np.rec.fromarrays([np.asarray(t, dtype=np.int64), args["smoothing"].epsilon],
                                             names="target,epsilon")
    return out


def _cells(fmt, group, slices, outs, n: int, T: int, target_at, temperature: float = 1.0) -> list[CellResult]:
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
                cause_inferred=o.inferred, target_at=target_at,
                temperature=temperature, mask=c.mask,
            ))
    return results


def _tasks(fmts, grids, chosen, accumulate, tolerance, mode, jobs, verify=0,
           target_at=TARGET_AT, extras: Extras = DEFAULT_EXTRAS,
           compute: str = DEFAULT_COMPUTE) -> list[_Task]:
    keys = tuple((i.function, i.name) for i in chosen)
    whole = []
    for fmt in fmts:
        g = grids[fmt.name]
        for n in g.sizes:
            for sp in g.spreads:
                for temp in g.temperatures:
                    sub = g.sub(spreads=(sp,), sizes=(n,), temperatures=(temp,))
                    whole.append(_Task(fmt.name, sub, keys, accumulate, tolerance, mode, verify, target_at,
                                       extras, compute))
    total = sum(t.cost for t in whole)
    if jobs <= 1 or total < 1.0:
        return whole
    # split the costly ones so every worker gets several pieces
    piece = total / (4 * jobs)
    out = []
    for t in whole:
        k = min(len(t.grid.offsets), max(1, int(np.ceil(t.cost / piece))))
        for chunk in np.array_split(np.array(t.grid.offsets), k):
            sub = t.grid.sub(offsets=tuple(float(v) for v in chunk))
            out.append(_Task(t.dtype, sub, t.impl_keys, accumulate, tolerance, mode, verify, target_at,
                             extras, compute))
    return out


def run_compare(dtypes=None, functions=None, impls=None, offsets=None, spreads=None,
                sizes=None, trials=None, seed: int = 0, accumulate: str = "sequential",
                tolerance: float = DEFAULT_TOLERANCE, reference_mode: str = "auto",
                argv=None, progress=None, jobs: int | None = None, verify: int = 0,
                target_at=TARGET_AT, mask=None, label=None, cotangent=None,
                label_smoothing=None, temperature=None, compute: str = DEFAULT_COMPUTE) -> CompareRun:
    """The compare job: every selected implementation over the grid of every dtype.

    ``label``, ``cotangent``, ``label_smoothing``: the second inputs of the functions that
    take one (grids.Extras: --target, --cotangent, --label-smoothing). ``compute``: the
    precision model of the built-in kernels (steps.COMPUTE_MODELS, ``--compute``).

    ``target_at``: where the target of cross_entropy (any function taking a target) sits in
    each vector, each reported separately (grids.TARGET_AT: argmax, argmin, random).

    ``mask``: the additive masks (grids.MASKS), ``temperature``: the temperatures T (every
    implementation divides x by T in the format first; engine.scaled): a name or number, a comma
    list or a list, each value its own cells (CellResult.mask, CellResult.temperature).

    ``jobs``: worker processes for independent grid cells (default: the machine's
    cores; small runs stay in this process). ``progress(done, total)`` is called
    with element counts as pieces finish.
    """
    validate.accumulate(accumulate)
    validate.compute(compute)
    check_choice("reference mode", reference_mode, REFERENCE_MODES)
    if not (tolerance >= 0):
        raise UsageError("--tolerance must be a number >= 0")
    jobs = default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    fmts = [get_format(d) for d in dict.fromkeys(dtypes or DEFAULT_DTYPES)]
    fmts = list({f.name: f for f in fmts}.values())  # an alias and its name count once
    chosen = select_impls(functions, impls)
    _check_masks(chosen, mask, temperature)
    grids = {f.name: make_grid(f, offsets, spreads, sizes, trials, seed, mask, temperature) for f in fmts}
    extras = make_extras(label, cotangent, label_smoothing)
    for g in grids.values():
        check_extras(extras, g.sizes)
    jobs_ = default_jobs() if jobs is None else int(jobs)
    _check_memory(fmts, grids, None, len(chosen), max(1, jobs_))  # before building any cell
    for f in fmts:  # inputs that do not fit the format: refuse before any work
        g = grids[f.name]
        probe = g.sub(sizes=(min(g.sizes),))
        grid_cells(f, probe, extras)
    if verify < 0:
        raise UsageError("--verify must be >= 0")
    target_at = parse_target_at(target_at)
    tasks = _tasks(fmts, grids, chosen, accumulate, tolerance, reference_mode, jobs, verify, target_at,
                   extras, compute)
    total = sum(t.elements for t in tasks)
    parallel = jobs > 1 and len(tasks) > 1 and sum(t.cost for t in tasks) >= 1.0
    _check_memory(fmts, grids, tasks, len(chosen), min(jobs, len(tasks)) if parallel else 1)
    results, done = [], 0

    def take(task, cells):
        nonlocal done
        results.extend(cells)
        done += task.elements
        if progress:
            progress(done, total)

    run_tasks(_run_task, tasks, jobs if parallel else 1, take)  # the one parallel engine (workers.py)
    order = {f: i for i, f in enumerate(FUNCTIONS)}
    impl_order = {(i.function, i.name): k for k, i in enumerate(chosen)}
    at_order = {m: i for i, m in enumerate((None,) + target_at)}
    g0 = next(iter(grids.values()))
    t_order = {t: i for i, t in enumerate(g0.temperatures)}
    m_order = {m: i for i, m in enumerate(g0.masks)}
    results.sort(key=lambda r: (order[r.function], r.dtype, t_order[r.temperature], m_order[r.mask], r.spread,
                                at_order[r.target_at], r.n, r.offset, impl_order[(r.function, r.impl)]))
    meta = run_meta(argv, seed=int(seed), accumulate=accumulate, compute=compute, tolerance=jnum(tolerance),
                    reference=reference_mode, **({"verify": int(verify)} if verify else {}),
                    grids={k: g.to_dict() for k, g in grids.items()}, target_at=list(target_at),
                    **({"extras": extras.to_dict()}
                       if any(i.record.takes not in (None, "target") for i in chosen) else {}))
    from ..reference import thresholds as exact_thresholds

    th = tuple(exact_thresholds(f) for f in fmts)
    return CompareRun(meta=meta, results=tuple(results), thresholds=th)


def _check_masks(chosen, mask, temperature=None) -> None:
    """A mask other than none needs a function whose exact value with -inf entries numstab knows; a
    temperature other than 1 one whose exact value at x / T the reference computes."""
    from ..masks import MASKABLE
    from ..reference import temperature_functions

    hot = [t for t in validate.temperatures(temperature) if t != 1]
    if hot and not any(i.function in temperature_functions() for i in chosen):
        raise UsageError(f"--temperature {hot[0]:g} applies to {', '.join(temperature_functions())}; "
                         "the functions chosen have the T = 1 cells only")
    masked = [m for m in validate.masks(mask) if m != "none"]
    if masked and not any(i.function in MASKABLE for i in chosen):
        raise UsageError(f"--mask {masked[0]} applies to {', '.join(MASKABLE)} (masked attention scores); "
                         "the functions chosen have the unmasked cells only")


def _check_memory(fmts, grids, tasks, n_impls: int, workers: int) -> None:
    """Refuse, before any work, a run whose estimated peak does not fit in memory."""
    from ..limits import compare_bytes, require

    cells = sum(len(g.offsets) * len(g.spreads) * len(g.sizes) * len(g.masks) * len(g.temperatures)
                for g in grids.values())
    if tasks is None:  # before the split into pieces: the whole of each (dtype, n, spread, T) at once
        pieces = [len(g.offsets) * g.trials * n * len(g.masks) for g in grids.values() for n in g.sizes
                  for _ in g.spreads for _ in g.temperatures]
        workers = 1
    else:
        pieces = [t.elements for t in tasks]
    need = compare_bytes(pieces, cells, n_impls, workers)
    elements = sum(pieces)
    require(f"this run ({elements:,} input elements in {cells:,} grid cells, {n_impls} implementations)",
            need, "use fewer offsets, spreads, sizes, trials, formats or implementations, or --jobs 1")
