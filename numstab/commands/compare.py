"""The compare command: every selected implementation over the grid of every format."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import validate
from ..cells import ROW_FIELDS, Block, CellRows, CellStore, summarize_cells
from ..engine import evaluate, select_impls
from ..errors import UsageError
from ..formats import DEFAULT_DTYPES, get_format
from ..functions import FUNCTIONS, REGISTRY
from ..grids import (
    DEFAULT_EXTRAS,
    TARGET_AT,
    Extras,
    GridSpec,
    check_extras,
    check_fit,
    draws,
    make_extras,
    make_grid,
    parse_target_at,
    targets_at,
    unmasked,
)
from ..grids import block as grid_block
from ..metrics import DEFAULT_TOLERANCE
from ..reference import fast_supported
from ..results import CompareRun, jnum
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
    t_rank: int = 0  # the place of its temperature among the grid's (the run's order)
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


#: Input elements per engine call: the cells of a piece go through the engine as the rows of
#: 2-D batches of about this size (memory per call is bounded whatever the grid).
BLOCK_ELEMENTS = 1 << 16
#: Input elements and grid cells per piece of work (a worker's unit; the cells it returns are
#: columnar, about 90 bytes per implementation and cell: at most TASK_CELLS cells per piece).
TASK_ELEMENTS = 1 << 19
TASK_CELLS = 1 << 14


def _run_task(task: _Task) -> list[Block]:
    """The cells of one piece: blocks of cells evaluated as the rows of one batch each, for
    every mask (masked cells only for the functions along a vector, masks.MASKABLE: an additive
    mask means nothing to an element-wise function) and the piece's temperature."""
    from ..masks import MASKABLE
    from ..reference import temperature_functions

    fmt = get_format(task.dtype)
    chosen = [REGISTRY[f][name] for f, name in task.impl_keys]
    code = {k: i for i, k in enumerate(task.impl_keys)}
    ats = (None,) + task.target_at
    g = task.grid
    n, T, sp, temp = g.sizes[0], g.trials, g.spreads[0], g.temperatures[0]
    drawn = draws(g, n)
    per = max(1, BLOCK_ELEMENTS // (T * n))
    fn_rank = {f: i for i, f in enumerate(FUNCTIONS)}
    blocks = []
    for a in range(0, len(g.offsets), per):
        offs = np.asarray(g.offsets[a:a + per], dtype=np.float64)
        C = offs.size
        x0 = unmasked(fmt, n, sp, offs, drawn[0])
        for m_rank, mask in enumerate(g.masks):
            impls = chosen if mask == "none" else [i for i in chosen if i.function in MASKABLE]
            x, args = grid_block(fmt, g, n, sp, offs, task.extras, drawn, mask, x0)
            target = args["target"]
            placed = ("target", "smoothing")  # the kinds that carry a target index (--target-at moves it)
            plain = [i for i in impls if i.record.takes not in placed]
            with_target = [i for i in impls if i.record.takes in placed]
            kinds = {"target"} | {i.record.takes for i in plain}  # only what the run's functions take
            runs = [(None, plain, {k: v for k, v in args.items() if k in kinds})] if plain else []
            runs += ([(m, with_target, _placed({k: v for k, v in args.items() if k in placed},
                                               targets_at(m, x, target))) for m in task.target_at]
                     if with_target else [])
            xs = x.reshape(C, T * n)
            x_min, x_max = xs.min(axis=1), xs.max(axis=1)
            parts = {}  # (function rank, at index) -> [(impl code, summary)]
            for mode, run_impls, tg in runs:
                if temp != 1:  # a temperature: the functions whose exact f(x / T) the reference has
                    run_impls = [i for i in run_impls if i.function in temperature_functions()]
                    if not run_impls:
                        continue
                outs, _, _ = evaluate(fmt, x, tg, run_impls, task.accumulate, task.tolerance, None, task.mode,
                                      verify=task.verify, temperature=None if temp == 1 else temp,
                                      compute=task.compute, row_flags=True)
                for o in outs:
                    key = (fn_rank[o.impl.function], ats.index(mode))
                    parts.setdefault(key, []).append((code[(o.impl.function, o.impl.name)],
                                                      summarize_cells(o, C, T, o.row_flags)))
            if parts:
                const = {"dtype": fmt.name, "spread": sp, "n": n, "trials": T, "temperature": temp,
                         "mask": mask}
                blocks.append(_block(const, (fmt.name, task.t_rank, m_rank, sp), offs, x_min, x_max, parts))
    return blocks


def _block(const: dict, outer: tuple, offs, x_min, x_max, parts) -> Block:
    """One block's rows ordered by (function, target placement, cell, implementation)."""
    C = offs.size
    cols = {f: [] for f in ROW_FIELDS}
    segs, big, row = [], {}, 0
    names = list(FUNCTIONS)  # at call time: a function registered after import counts too
    for (fr, at) in sorted(parts):
        items = sorted(parts[(fr, at)], key=lambda t: t[0])
        k = len(items)
        cols["impl"].append(np.tile(np.array([c for c, _ in items], dtype=np.int16), C))
        cols["at"].append(np.full(C * k, at, dtype=np.int8))
        cols["offset"].append(np.repeat(offs, k))
        cols["x_min"].append(np.repeat(x_min, k))
        cols["x_max"].append(np.repeat(x_max, k))
        for f in ("max_ulp", "median_ulp", "max_rel", "status", "cause", "flags", "counts", "causes"):
            stacked = np.stack([sm[f] for _, sm in items], axis=1)
            cols[f].append(stacked.reshape((C * k,) + stacked.shape[2:]))
        for j, (_, sm) in enumerate(items):
            for c, summ in sm["big"].items():
                big[row + c * k + j] = {f: summ[f] for f in ("max_ulp", "median_ulp", "max_rel")
                                        if not isinstance(summ[f], float)}
        segs.append((names[fr], at, row, C * k, k))
        row += C * k
    arrays = {f: np.concatenate(v).astype(ROW_FIELDS[f], copy=False) for f, v in cols.items()}
    return Block(const=const, outer=outer, inner=(const["n"],), start=float(offs[0]), segs=segs, cols=arrays,
                 big=big)


def _placed(args: dict, t: np.ndarray) -> dict:
    """The extra arguments with the target index t, in ``target`` and in the label smoothing's
    record (smoothed_cross_entropy's target moves with --target-at too)."""
    out = {**args, "target": t}
    if "smoothing" in args:
        out["smoothing"] = np.rec.fromarrays([np.asarray(t, dtype=np.int64), args["smoothing"].epsilon],
                                             names="target,epsilon")
    return out


def _tasks(fmts, grids, chosen, accumulate, tolerance, mode, jobs, verify=0,
           target_at=TARGET_AT, extras: Extras = DEFAULT_EXTRAS,
           compute: str = DEFAULT_COMPUTE) -> list[_Task]:
    """Pieces of work: the offsets of each (dtype, spread, n, T), in ascending order, in pieces of
    at most TASK_ELEMENTS input elements -- and, for a parallel run, small enough that every
    worker gets several."""
    keys = tuple((i.function, i.name) for i in chosen)
    whole = []
    for fmt in fmts:
        g = grids[fmt.name]
        offs = tuple(sorted(g.offsets))
        for n in g.sizes:
            for sp in g.spreads:
                for t_rank, temp in enumerate(g.temperatures):
                    sub = g.sub(offsets=offs, spreads=(sp,), sizes=(n,), temperatures=(temp,))
                    whole.append(_Task(fmt.name, sub, keys, accumulate, tolerance, mode, verify, target_at,
                                       extras, t_rank, compute))
    total = sum(t.cost for t in whole)
    piece = total / (4 * jobs) if jobs > 1 and total >= 1.0 else math.inf
    out = []
    for t in whole:
        k = max(1, math.ceil(t.elements / TASK_ELEMENTS),
                math.ceil(len(t.grid.offsets) * len(t.grid.masks) / TASK_CELLS))
        if piece < math.inf:  # split the costly ones so every worker gets several pieces
            k = max(k, int(np.ceil(t.cost / piece)))
        k = min(len(t.grid.offsets), k)
        if k == 1:
            out.append(t)
            continue
        for chunk in np.array_split(np.array(t.grid.offsets), k):
            sub = t.grid.sub(offsets=tuple(chunk.tolist()))
            out.append(_Task(t.dtype, sub, t.impl_keys, accumulate, tolerance, mode, verify, target_at,
                             extras, t.t_rank, compute))
    return out


def run_compare(dtypes=None, functions=None, impls=None, offsets=None, spreads=None,
                sizes=None, trials=None, seed: int = 0, accumulate: str = "sequential",
                tolerance: float = DEFAULT_TOLERANCE, reference_mode: str = "auto",
                argv=None, progress=None, jobs: int | None = None, verify: int = 0,
                target_at=TARGET_AT, mask=None, label=None, cotangent=None,
                label_smoothing=None, temperature=None, compute: str = DEFAULT_COMPUTE,
                materialized: bool = False) -> CompareRun:
    """The compare job: every selected implementation over the grid of every dtype.

    ``label``, ``cotangent``, ``label_smoothing``: the second inputs of the functions that
    take one (grids.Extras: --target, --cotangent, --label-smoothing). ``compute``: the
    precision model of the built-in kernels (steps.COMPUTE_MODELS, ``--compute``).

    ``target_at``: where the target of cross_entropy (any function taking a target) sits in
    each vector, each reported separately (grids.TARGET_AT: argmax, argmin, random).

    ``mask``: the additive masks (grids.MASKS), ``temperature``: the temperatures T (every
    implementation divides x by T in the format first; engine.scaled): a name or number, a comma
    list or a list, each value its own cells (CellResult.mask, CellResult.temperature).

    ``materialized``: the output will hold every cell as a CellResult (HTML, PNG, the terminal's
    --details table); the memory estimate counts them (numstab.limits.compare_bytes).

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
    _check_memory(fmts, grids, None, len(chosen), max(1, jobs_), materialized)  # before building any cell
    for f in fmts:  # inputs that do not fit the format: refuse before any work
        check_fit(f, grids[f.name], extras)
    if verify < 0:
        raise UsageError("--verify must be >= 0")
    target_at = parse_target_at(target_at)
    tasks = _tasks(fmts, grids, chosen, accumulate, tolerance, reference_mode, jobs, verify, target_at,
                   extras, compute)
    total = sum(t.elements for t in tasks)
    parallel = jobs > 1 and len(tasks) > 1 and sum(t.cost for t in tasks) >= 1.0
    _check_memory(fmts, grids, tasks, len(chosen), min(jobs, len(tasks)) if parallel else 1, materialized)
    store = CellStore(names=[(i.function, i.name, not i.builtin) for i in chosen], ats=(None,) + target_at)
    store.fn_order = {f: i for i, f in enumerate(FUNCTIONS)}
    done = 0

    def take(task, blocks):
        nonlocal done
        for b in blocks:
            store.add(b)  # columnar, spilled to a temp directory past limits.SPILL_BYTES
        done += task.elements
        if progress:
            progress(done, total)

    try:
        run_tasks(_run_task, tasks, jobs if parallel else 1, take)  # the one parallel engine (workers.py)
    except BaseException:
        store.close()
        raise
    g0 = next(iter(grids.values()))
    store.shown = (g0.temperatures != (1.0,), g0.masks != ("none",))
    meta = run_meta(argv, seed=int(seed), accumulate=accumulate, compute=compute, tolerance=jnum(tolerance),
                    reference=reference_mode, **({"verify": int(verify)} if verify else {}),
                    grids={k: g.to_dict() for k, g in grids.items()}, target_at=list(target_at),
                    **({"extras": extras.to_dict()}
                       if any(i.record.takes not in (None, "target") for i in chosen) else {}))
    from ..reference import thresholds as exact_thresholds

    th = tuple(exact_thresholds(f) for f in fmts)
    return CompareRun(meta=meta, results=CellRows(store), thresholds=th)


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


def _check_memory(fmts, grids, tasks, n_impls: int, workers: int, materialized: bool = False) -> None:
    """Refuse, before any work, a run whose estimated peak does not fit in memory."""
    from ..limits import compare_bytes, require

    cells = sum(len(g.offsets) * len(g.spreads) * len(g.sizes) * len(g.masks) * len(g.temperatures)
                for g in grids.values())
    if tasks is None:  # before the split into pieces: pieces of at most TASK_ELEMENTS (or one cell)
        pieces = [min(len(g.offsets) * g.trials * n * len(g.masks),
                      max(TASK_ELEMENTS, g.trials * n * len(g.masks)))
                  for g in grids.values() for n in g.sizes for _ in g.spreads for _ in g.temperatures]
        workers = 1
    else:
        pieces = [t.elements for t in tasks]
    largest = max(g.trials * n for g in grids.values() for n in g.sizes)
    need = compare_bytes(pieces, cells, n_impls, workers, call_elements=max(BLOCK_ELEMENTS, largest),
                         task_cells=TASK_CELLS, materialized=materialized)
    elements = sum(len(g.offsets) * g.trials * sum(g.sizes) * len(g.spreads) * len(g.masks)
                   * len(g.temperatures) for g in grids.values())
    require(f"this run ({elements:,} input elements in {cells:,} grid cells, {n_impls} implementations)",
            need, "use fewer offsets, spreads, sizes, trials, formats or implementations, or --jobs 1"
            + (", or --format json/csv (written a chunk at a time)" if materialized else ""))
