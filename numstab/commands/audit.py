"""The audit command: implementations checked against limits, for CI.

Exit codes (set by the CLI): 0 every audit passed, 1 a limit was exceeded (a
finding; a user callable that raises or returns the wrong shape or dtype is a
finding too), 2 bad usage or input. The settings and their limits: audit_config.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..adapters import load_callable, user_impl
from ..errors import UsageError
from ..formats import get_format
from ..functions import Impl, get_impl, take_args
from ..functions import get as get_function
from ..grids import make_grid, stack
from ..libraries import library_impls
from ..results import STATUSES, AuditReport, AuditResult, jnum
from .audit_config import AuditSpec


# ------------------------------------------------------------ running
def _impls_of(spec: AuditSpec) -> list[Impl]:
    import dataclasses

    from ..stream import callable_reference

    out = [get_impl(spec.function, i) for i in spec.impls]
    for c in spec.callables:
        if isinstance(c, tuple):
            name, fn = c
            out.append(user_impl(spec.function, fn, name, timeout=spec.timeout))
        else:
            impl = user_impl(spec.function, load_callable(c), c, timeout=spec.timeout)
            out.append(dataclasses.replace(impl, source=("callable", spec.function, callable_reference(c),
                                                         spec.timeout)))
    for lib in spec.libraries:
        impls = library_impls(lib, spec.function, timeout=spec.timeout, device=spec.device)
        if not impls:
            raise UsageError(f"--library {lib} has no {spec.function}")
        out.extend(dataclasses.replace(i, source=("library", spec.function, lib, i.name, spec.timeout,
                                                  spec.device)) for i in impls)
    return out


def _runs_in(impl: Impl, dtype: str) -> bool:
    """Whether the implementation has a kernel for the format (libraries say which they have)."""
    dtypes = getattr(impl, "dtypes", None)
    return dtypes is None or dtype in dtypes


def _evaluate(spec: AuditSpec, fmt, impls, jobs: int, progress=None, scheduler=None, temperature: float = 1.0,
              mask: str = "none"):
    """Every implementation on the audit's inputs, streamed a block of rows at a time
    (numstab.stream): an --input file (or shards) read block by block, or the grid's batches
    of each n (with the additive ``mask``), each divided by ``temperature`` first (1: not divided).
    Returns the merged stream.Partial (one Part per implementation)."""
    from .. import stream
    from ..grids import cells as grid_cells
    from ..limits import audit_bytes, require

    rec = get_function(spec.function)
    job = stream.Job(spec.function, fmt.name, stream.impl_refs(impls, remote=scheduler is not None),
                     spec.accumulate, spec.tolerance,
                     spec.specials, None if temperature == 1 else temperature,
                     spec.top if spec.input is not None else 0, "record",
                     (tuple(spec.fail_on), spec.limit_for(fmt.name)), spec.extras, compute=spec.compute)
    if spec.input is not None:
        fsrc, arrays = stream.open_source(spec.input, spec.key, spec.axis)
        rows, n = sum(a.rows for a in arrays), arrays[0].n
        rpc = stream.rows_per_chunk(rows, n, len(impls), 1 if scheduler else jobs,
                                    f"auditing {rows * n:,} input values", spec.function,
                                    stream.in_pieces(spec.function, impls, n, spec.accumulate, spec.compute))
        args = stream.prepare_args(fmt, rec, rows, n, spec.target, spec.targets, spec.extras)

        job = dataclasses.replace(job, source=fsrc)
        chunks = stream.plan_chunks(job, arrays, args, rpc)
    else:
        g = dict(spec.grid)
        grid = make_grid(fmt, g.get("offsets"), g.get("spreads"), g.get("sizes"), g.get("trials"),
                         g.get("seed", 0), mask, temperature)
        elements = len(grid.offsets) * len(grid.spreads) * sum(grid.sizes) * grid.trials
        require(f"auditing a grid of {elements:,} input elements with {len(impls)} implementations",
                audit_bytes(elements, len(impls)),
                "audit fewer implementations or formats per audit, or a smaller grid or input")
        by_n: dict = {}
        for c in grid_cells(fmt, grid, spec.extras):
            by_n.setdefault(c.n, []).append(c)
        chunks, row0 = [], 0
        kinds = {"target", rec.takes}  # only what the function takes (the mask layer reads a target alone)
        for cs in by_n.values():
            x, t = stack(cs)
            t = {k: v for k, v in t.items() if k in kinds}
            per = stream.rows_per_chunk(x.shape[0], x.shape[1], len(impls), 1, "auditing the grid")
            for a in range(0, x.shape[0], per):
                b = min(x.shape[0], a + per)
                chunks.append(stream.Chunk(job, row0 + a, x0=x[a:b], args=take_args(t, slice(a, b)),
                                           n=x.shape[1]))
            row0 += x.shape[0]
    return stream.run(chunks, jobs, progress, scheduler, job.top)


def run_audit(specs, argv=None, jobs: int | None = 1, progress=None, scheduler=None) -> AuditReport:
    """Every audit of ``specs``: ``jobs`` worker processes (None: the machine's cores) or the Dask
    scheduler at ``scheduler`` evaluate its blocks of rows; ``progress(done, total)`` is called
    with element counts as blocks finish."""
    from .. import stream
    from ..workers import default_jobs
    from . import run_meta

    jobs = default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if scheduler is not None:
        from ..dask_run import check_available

        check_available()
    from ..reference import check_temperature

    for spec in specs:  # refused before any work
        check_temperature(spec.function, spec.temperatures)
    results, notes, skipped, libs = [], [], [], {}
    for spec in specs:
        all_impls = _impls_of(spec)
        for impl in all_impls:
            if getattr(impl, "library", ()):
                info = dict(impl.library)
                libs[info["name"]] = info
        ran = False
        for dt in spec.dtypes:
            fmt = get_format(dt)
            impls = [i for i in all_impls if _runs_in(i, fmt.name)]
            for i in all_impls:
                if i not in impls:
                    skipped.append({"impl": i.name, "dtype": fmt.name})
                    notes.append(f"{i.name} has no {fmt.name} kernel: left out of the {fmt.name} audit")
            if not impls:
                continue
            ran = True
            for temp, mask in ((t, m) for t in spec.temperatures for m in spec.masks):
                merged = _evaluate(spec, fmt, impls, jobs, progress, scheduler, temp, mask)
                for impl, part in zip(impls, merged.parts):
                    res = dataclasses.replace(_judge(spec, fmt, impl, part), temperature=temp, mask=mask)
                    if spec.input is not None and spec.top and not part.error:
                        rows = stream.finish_worst(fmt, spec.function, part, spec.specials)
                        res = dataclasses.replace(res, worst=tuple(rows))
                    results.append(res)
        if not ran:
            raise UsageError(f"nothing to audit: {', '.join(i.name for i in all_impls)} "
                             f"{'has' if len(all_impls) == 1 else 'have'} no kernel for "
                             f"{', '.join(spec.dtypes)}")
    meta = run_meta(argv, audits=[{"function": s.function, "accumulate": s.accumulate, "compute": s.compute,
                                   "tolerance": jnum(s.tolerance), "fail_on": list(s.fail_on),
                                   "max_ulp": dict(s.max_ulp), "grid": dict(s.grid), "input": s.input,
                                   "temperatures": [jnum(t) for t in s.temperatures], "masks": list(s.masks),
                                   "device": s.device}
                                  for s in specs],
                    libraries=libs, skipped=skipped)
    return AuditReport(tuple(results), meta, tuple(notes))


def _judge(spec: AuditSpec, fmt, impl: Impl, part) -> AuditResult:
    """The verdict on one implementation's merged figures (stream.Part) against the limits."""
    if part.error:
        counts = {k: 0 for k in STATUSES}
        return AuditResult(spec.function, impl.name, fmt.name, tuple(counts.items()), math.nan, math.nan,
                           False, (f"error: {part.error}",), None, spec.name,
                           library=getattr(impl, "library", ()))
    summ = part.summary()  # the figures compare gives for these inputs
    counts, causes = summ["counts"], summ["causes"]
    max_u, med_u = summ["max_ulp"], summ["median_ulp"]
    zeros, limits = part.zeros, part.limits
    fin = part.uvals[np.isfinite(part.uvals)]
    total = sum(counts.values())
    reasons = []
    for s in spec.fail_on:
        if s == "zero":
            if zeros:
                reasons.append(f"zero: {zeros} of {total} outputs are 0 (or the log of 0) where the exact "
                               "value is not")
        elif s == "limit":
            if limits:
                reasons.append(f"limit: {limits} of {total} outputs differ from an exact 0, inf or NaN "
                               "(a masked entry's limit, a NaN input)")
        elif counts[s]:
            what = f"above {spec.tolerance:g} ULP" if s == "inaccurate" else ""
            reasons.append(f"{s}: {counts[s]} of {total} elements {what}".rstrip())
    limit = spec.limit_for(fmt.name)
    if limit is not None and fin.size and fin.max() > limit:
        reasons.append(f"max ULP error {fin.max():.3g} > {limit:g}")
    first = part.first[1] if reasons and part.first is not None else None
    return AuditResult(spec.function, impl.name, fmt.name, tuple(counts.items()), max_u, med_u,
                       not reasons, tuple(reasons), first, spec.name,
                       tuple(sorted(causes.items(), key=lambda kv: -kv[1])), part.inferred, zeros,
                       getattr(impl, "library", ()), limits)
