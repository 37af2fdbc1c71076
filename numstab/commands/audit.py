"""The audit command: implementations checked against limits, for CI.

Exit codes (set by the CLI): 0 every audit passed, 1 a limit was exceeded (a
finding; a user callable that raises or returns the wrong shape or dtype is a
finding too), 2 bad usage or input. The settings and their limits: audit_config.
"""

from __future__ import annotations

import math

import numpy as np

from ..adapters import load_callable, user_impl
from ..engine import evaluate, summarize
from ..errors import UsageError
from ..formats import get_format
from ..functions import Impl, get_impl
from ..functions import get as get_function
from ..grids import cells as grid_cells
from ..grids import make_grid, stack
from ..libraries import library_impls
from ..results import STATUSES, AuditReport, AuditResult, jnum
from .audit_config import AuditSpec


# ------------------------------------------------------------ running
def _impls_of(spec: AuditSpec) -> list[Impl]:
    out = [get_impl(spec.function, i) for i in spec.impls]
    for c in spec.callables:
        if isinstance(c, tuple):
            name, fn = c
        else:
            name, fn = c, load_callable(c)
        out.append(user_impl(spec.function, fn, name, timeout=spec.timeout))
    for lib in spec.libraries:
        impls = library_impls(lib, spec.function, timeout=spec.timeout, device=spec.device)
        if not impls:
            raise UsageError(f"--library {lib} has no {spec.function}")
        out.extend(impls)
    return out


def _runs_in(impl: Impl, dtype: str) -> bool:
    """Whether the implementation has a kernel for the format (libraries say which they have)."""
    dtypes = getattr(impl, "dtypes", None)
    return dtypes is None or dtype in dtypes


def _inputs(spec: AuditSpec, fmt, n_impls: int = 1):
    from ..grids import load_args
    from ..inputs import load_input, round_inputs
    from ..limits import audit_bytes, require
    from ..masks import check_function

    hint = "audit fewer implementations or formats per audit, or a smaller grid or input"
    if spec.input is not None:
        x0, src = load_input(spec.input, spec.key, spec.axis)
        check_function(spec.function, x0, src.what)
        require(f"auditing {x0.size:,} input values with {n_impls} implementations",
                audit_bytes(x0.size, n_impls), hint)
        x = round_inputs(fmt, x0)
        t = load_args(fmt, x, get_function(spec.function), spec.target, spec.targets, spec.extras)
        return [(x, t, src, "none")]
    g = dict(spec.grid)
    grid = make_grid(fmt, g.get("offsets"), g.get("spreads"), g.get("sizes"), g.get("trials"),
                     g.get("seed", 0), spec.masks, spec.temperatures)
    elements = len(grid.offsets) * len(grid.spreads) * sum(grid.sizes) * grid.trials * len(grid.masks)
    require(f"auditing a grid of {elements:,} input elements with {n_impls} implementations",
            audit_bytes(elements, n_impls), hint)
    by_n: dict = {}
    for c in grid_cells(fmt, grid, spec.extras):
        by_n.setdefault((c.mask, c.n), []).append(c)
    kinds = {"target", get_function(spec.function).takes}  # only what the function takes (the mask
    out = []                                                # layer reads a target index alone)
    for (mask, _n), cs in by_n.items():
        x, args = stack(cs)
        out.append((x, {k: v for k, v in args.items() if k in kinds}, None, mask))
    return out


def run_audit(specs, argv=None) -> AuditReport:
    from . import run_meta

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
            batches = _inputs(spec, fmt, len(impls))
            for temp in spec.temperatures:
                for mask in dict.fromkeys(b[3] for b in batches):
                    results += _audit_one(spec, fmt, impls, [b for b in batches if b[3] == mask], temp, mask)
        if not ran:
            raise UsageError(f"nothing to audit: {', '.join(i.name for i in all_impls)} "
                             f"{'has' if len(all_impls) == 1 else 'have'} no kernel for "
                             f"{', '.join(spec.dtypes)}")
    meta = run_meta(argv, audits=[{"function": s.function, "accumulate": s.accumulate,
                                   "tolerance": jnum(s.tolerance), "fail_on": list(s.fail_on),
                                   "max_ulp": dict(s.max_ulp), "grid": dict(s.grid), "input": s.input,
                                   "temperatures": [jnum(t) for t in s.temperatures], "masks": list(s.masks),
                                   "device": s.device}
                                  for s in specs],
                    libraries=libs, skipped=skipped)
    return AuditReport(tuple(results), meta, tuple(notes))


def _audit_one(spec: AuditSpec, fmt, impls, batches, temp: float, mask: str) -> list[AuditResult]:
    """The results of one format, temperature and mask: one per implementation."""
    import dataclasses

    acc: dict = {}
    t_arg = None if temp == 1 else temp
    for x, t, _src, _m in batches:
        outs, ref, _ = evaluate(fmt, x, t, impls, spec.accumulate, spec.tolerance,
                                on_error="record", specials=spec.specials, temperature=t_arg)
        for o in outs:
            acc.setdefault(o.impl.name, []).append((o, x, t, ref))
    out = []
    for impl in impls:
        res = dataclasses.replace(_judge(spec, fmt, impl, acc[impl.name]), temperature=temp, mask=mask)
        if spec.input is not None and spec.top and res.counts and not acc[impl.name][0][0].error:
            from ..locate import worst

            o, x, t, _ref = acc[impl.name][0]
            xe = x
            if t_arg is not None:
                from ..engine import scaled

                xe, _ = scaled(fmt, x, [], t_arg)
            res = dataclasses.replace(res, worst=tuple(worst(o, x, t, fmt, spec.top, batches[0][2],
                                                              spec.specials, x_exact=xe)))
        out.append(res)
    return out


def _spurious_zero(function: str, y: np.ndarray, rounded: np.ndarray) -> np.ndarray:
    """Outputs that are 0, or the log of 0 (-inf; +inf for a loss), where the exact value is not."""
    from ..causes import wrong_special

    zero, inf = wrong_special(y, rounded)
    return zero | inf if get_function(function).log_of_zero is not None else zero


def _wrong_limit(y: np.ndarray, r) -> np.ndarray:
    """Outputs other than the exact value where that is exactly 0, +-inf or NaN (masks.py: a masked
    entry's limit, a fully masked row's policy, a NaN input); an infinite or NaN exact value is
    stored with ulp = +inf."""
    with np.errstate(all="ignore"):
        point = np.isinf(r.ulp) | ((r.rounded == 0) & (r.dlo == 0) & (r.dhi == 0))
        same = (y == r.rounded) | (np.isnan(y) & np.isnan(r.rounded))
    return point & ~same


def _judge(spec: AuditSpec, fmt, impl: Impl, parts) -> AuditResult:
    errors = [o.error for o, *_ in parts if o.error]
    if errors:
        counts = {k: 0 for k in STATUSES}
        return AuditResult(spec.function, impl.name, fmt.name, tuple(counts.items()), math.nan, math.nan,
                           False, (f"error: {errors[0]}",), None, spec.name,
                           library=getattr(impl, "library", ()))
    summ = summarize([(o, slice(None)) for o, *_ in parts])  # the figures compare gives for these inputs
    counts, causes = summ["counts"], summ["causes"]
    max_u, med_u = summ["max_ulp"], summ["median_ulp"]
    zeros = sum(int(np.sum(_spurious_zero(spec.function, o.y, ref[spec.function].rounded)))
                for o, _x, _t, ref in parts)
    limits = sum(int(np.sum(_wrong_limit(o.y, ref[spec.function]))) for o, _x, _t, ref in parts)
    u = np.concatenate([o.ulp.ravel() for o, *_ in parts])
    fin = u[np.isfinite(u)]
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
    first = _first_failure(spec, fmt, parts, limit) if reasons else None
    inferred = any(o.inferred for o, *_ in parts)
    return AuditResult(spec.function, impl.name, fmt.name, tuple(counts.items()), max_u, med_u,
                       not reasons, tuple(reasons), first, spec.name,
                       tuple(sorted(causes.items(), key=lambda kv: -kv[1])), inferred, zeros,
                       getattr(impl, "library", ()), limits)


def _first_failure(spec, fmt, parts, limit):
    """The worst failing element (highest status, then largest ULP error) and its whole input
    vector: ``first_failure`` of the audit record (the name kept for older readers)."""
    from ..causes import cause_name

    codes = [STATUSES.index(s) for s in spec.fail_on if s in STATUSES]
    best, best_key = None, None
    row0 = 0
    for o, x, t, ref in parts:
        st, u = o.status, o.ulp
        bad = np.isin(st, codes)
        if "zero" in spec.fail_on:
            bad |= _spurious_zero(spec.function, o.y, ref[spec.function].rounded)
        if "limit" in spec.fail_on:
            bad |= _wrong_limit(o.y, ref[spec.function])
        if limit is not None:
            bad |= np.isfinite(u) & (u > limit)
        if bad.any():
            with np.errstate(invalid="ignore"):
                score = np.where(np.isnan(u), -1.0, u)
            # rank: status first, then the ULP error; ties keep the first element
            order = np.lexsort((-score[bad], -st[bad].astype(np.int64)))
            idx = tuple(int(i[order[0]]) for i in np.nonzero(bad))
            key = (int(st[idx]), float(score[idx]))
            if best_key is None or key > best_key:
                best_key, best = key, (o, x, t, ref, idx, row0)
        row0 += x.shape[0]
    if best is None:
        return None
    o, x, t, ref, idx, row0 = best
    r = idx[0]
    j = idx[1] if len(idx) > 1 else 0
    at = idx if len(idx) > 1 else (r,)
    return {
        "row": row0 + r, "n": int(x.shape[-1]),
        "vector": [jnum(v) for v in x[r]],
        **({"target": int(t["target"][r])} if get_function(spec.function).takes == "target" else {}),
        "element": None if get_function(spec.function).per_vector else j,
        "output": jnum(o.y[at]), "exact_rounded": jnum(ref[spec.function].rounded[at]),
        "ulp_error": jnum(o.ulp[at]), "status": STATUSES[int(o.status[at])],
        "cause": cause_name(int(o.cause[at])), "cause_inferred": o.inferred,
    }
