"""Audits: implementations checked against limits, for CI.

Exit codes (set by the CLI): 0 every audit passed, 1 a limit was exceeded (a
finding; a user callable that raises or returns the wrong shape or dtype is a
finding too), 2 bad usage or input.

Limits: ``fail_on`` (default: nan, overflow, underflow and zero -- every output that is
NaN, infinite, or 0 (or the log of 0) where the exact value is not fails, whatever
produced it; ``inaccurate`` adds the ULP tolerance) and ``max_ulp`` (the largest
finite ULP error allowed, per format or for all). Elements whose ULP error is
infinite (NaN, overflow, the log of 0) are judged by ``fail_on``, not by ``max_ulp``.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .adapters import library_impl, load_callable, user_impl
from .errors import UsageError, unknown_name
from .formats import get_format
from .functions import Impl, get_impl
from .functions import get as get_function
from .grids import cells as grid_cells
from .grids import make_grid, stack
from .metrics import DEFAULT_TOLERANCE, STATUSES, quantize
from .results import STATUS_KEYS, jnum
from .steps import ACC_MODELS as ACCUMULATE
from .validate import FAIL_ON_CHOICES  # noqa: F401 - re-exported

AUDIT_SCHEMA = "numstab.audit/2"
DEFAULT_FAIL_ON = ("overflow", "underflow", "nan", "zero")
CONFIG_KEYS = ("function", "impl", "callable", "library", "dtypes", "max_ulp", "fail_on",
               "accumulate", "tolerance", "input", "targets", "target", "offsets", "spreads",
               "sizes", "trials", "seed", "name", "timeout")


@dataclass(frozen=True)
class AuditSpec:
    function: str
    impls: tuple = ()
    callables: tuple = ()  # specs "module:function" or "file.py:function", or (name, fn) pairs
    libraries: tuple = ()
    dtypes: tuple = ("float16", "bfloat16", "float32", "float64")
    max_ulp: tuple = ()  # ((dtype or "*", limit), ...)
    fail_on: tuple = DEFAULT_FAIL_ON
    accumulate: str = "sequential"
    tolerance: float = DEFAULT_TOLERANCE
    input: str | None = None
    targets: str | None = None
    target: int | None = None
    grid: tuple = ()  # ((key, value), ...) for make_grid
    name: str = ""
    timeout: float | None = None  # seconds each implementation may take (None: no limit)

    def limit_for(self, dtype: str):
        lim = dict(self.max_ulp)
        return lim.get(dtype, lim.get("*"))


@dataclass(frozen=True)
class AuditResult:
    function: str
    impl: str
    dtype: str
    counts: tuple
    max_ulp: float
    median_ulp: float
    passed: bool
    reasons: tuple
    first_failure: dict | None = None
    audit: str = ""
    causes: tuple = ()  # ((cause, failing elements), ...)
    cause_inferred: bool = False
    zeros: int = 0  # outputs that are 0 or the log of 0 where the exact value is not

    def to_dict(self) -> dict:
        return {
            "audit": self.audit, "function": self.function, "impl": self.impl, "dtype": self.dtype,
            "counts": dict(self.counts), "causes": dict(self.causes), "cause_inferred": self.cause_inferred,
            "zeros": self.zeros, "max_ulp": jnum(self.max_ulp),
            "median_ulp": jnum(self.median_ulp), "passed": self.passed,
            "reasons": list(self.reasons), "first_failure": self.first_failure,
        }


@dataclass(frozen=True)
class AuditReport:
    results: tuple
    meta: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def to_dict(self) -> dict:
        return {"schema": AUDIT_SCHEMA, "passed": self.passed, "meta": self.meta,
                "results": [r.to_dict() for r in self.results]}


# ------------------------------------------------------------- parsing
def parse_fail_on(values, where: str = "--fail-on") -> tuple:
    from . import validate

    return validate.fail_on(values, where)


def parse_max_ulp(values) -> tuple:
    """'X' (every format) or 'dtype=X', repeatable; a dict from a config file."""
    if isinstance(values, dict):
        values = [f"{k}={v}" for k, v in values.items()]
    elif isinstance(values, (int, float)):
        values = [str(values)]
    out = []
    for v in values or ():
        key, _, num = str(v).rpartition("=")
        key = key or "*"
        if key != "*":
            get_format(key)
        try:
            lim = float(num)
        except ValueError:
            raise UsageError(f"--max-ulp {v!r}: not a number (use X or dtype=X)") from None
        if not lim >= 0:  # NaN too
            raise UsageError(f"--max-ulp {v!r}: must be >= 0")
        out.append((key, lim))
    return tuple(out)


def grid_items(offsets=None, spreads=None, sizes=None, trials=None, seed=None) -> tuple:
    """The grid settings that were given, as ((key, value), ...) for AuditSpec.grid."""
    given = (("offsets", offsets), ("spreads", spreads), ("sizes", sizes), ("trials", trials),
             ("seed", seed))
    return tuple((k, v) for k, v in given if v is not None)


def _as_tuple(v) -> tuple:
    if v is None:
        return ()
    if isinstance(v, (list, tuple)):
        return tuple(str(x) for x in v)
    return (str(v),)


def spec_from_mapping(d: dict, where: str) -> AuditSpec:
    from . import validate

    if not isinstance(d, dict):
        raise UsageError(f"{where}: must be a table ([[audit]]), not {type(d).__name__}")
    for k in d:
        if k not in CONFIG_KEYS:
            raise unknown_name(f"key in {where}", k, CONFIG_KEYS)
    if "function" not in d:
        raise UsageError(f"{where}: 'function' is required")
    for k in ("function", "accumulate", "name"):
        if k in d and not isinstance(d[k], str):
            raise UsageError(f"{where} {k!r}: must be a string, not {d[k]!r}")
    for k in ("trials", "seed"):
        if k in d and (isinstance(d[k], bool) or not isinstance(d[k], int)):
            raise UsageError(f"{where} {k!r}: must be an integer, not {d[k]!r}")
    for k in ("impl", "callable", "library", "dtypes", "offsets", "spreads", "sizes"):
        v = d.get(k)
        if v is not None and not isinstance(v, (str, int, float, list)) or isinstance(v, bool) or (
                isinstance(v, list) and not all(isinstance(x, (str, int, float)) for x in v)):
            raise UsageError(f"{where} {k!r}: must be a string or a list, not {v!r}")
    if "max_ulp" in d and (isinstance(d["max_ulp"], bool)
                           or not isinstance(d["max_ulp"], (int, float, str, dict, list))):
        raise UsageError(f"{where} 'max_ulp': must be a number or a table, not {d['max_ulp']!r}")
    grid = grid_items(**{k: d.get(k) for k in ("offsets", "spreads", "sizes", "trials", "seed")})
    dtypes = _as_tuple(d.get("dtypes")) or AuditSpec.dtypes
    fail_on = validate.fail_on(d["fail_on"], f"{where} 'fail_on'") if "fail_on" in d else None
    try:
        return make_spec(
            function=str(d["function"]), impls=_as_tuple(d.get("impl")),
            callables=_as_tuple(d.get("callable")), libraries=_as_tuple(d.get("library")),
            dtypes=dtypes, max_ulp=d.get("max_ulp"), fail_on=fail_on,
            accumulate=str(d.get("accumulate", "sequential")),
            tolerance=validate.tolerance(d.get("tolerance", DEFAULT_TOLERANCE), f"{where} 'tolerance'"),
            input=validate.path(d.get("input"), f"{where} 'input'"),
            targets=validate.path(d.get("targets"), f"{where} 'targets'"),
            target=validate.target(d.get("target"), f"{where} 'target'"),
            grid=tuple((k, str(v) if k in ("offsets", "spreads", "sizes") else v) for k, v in grid),
            name=str(d.get("name", "")),
            timeout=validate.timeout(d.get("timeout"), f"{where} 'timeout'"),
        )
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{where}: {exc}") from None


def make_spec(function, impls=(), callables=(), libraries=(), dtypes=None, max_ulp=None,
              fail_on=None, accumulate="sequential", tolerance=DEFAULT_TOLERANCE, input=None,
              targets=None, target=None, grid=(), name="", timeout=None) -> AuditSpec:
    from . import validate

    function = get_function(function).name
    tolerance = validate.tolerance(tolerance)
    target = validate.target(target)
    timeout = validate.timeout(timeout)
    impls, callables, libraries = (validate.dedupe(v) for v in (impls, callables, libraries))
    dtypes = tuple({get_format(d).name: None for d in dtypes}) if dtypes else None
    if accumulate not in ACCUMULATE:
        raise unknown_name("accumulation model", accumulate, ACCUMULATE)
    for i in impls:
        get_impl(function, i)
    for d in dtypes or ():
        get_format(d)
    if not (impls or callables or libraries):
        raise UsageError("nothing to audit: give --impl, --callable or --library")
    return AuditSpec(
        function=function, impls=tuple(impls), callables=tuple(callables),
        libraries=tuple(libraries), dtypes=tuple(dtypes or AuditSpec.dtypes),
        max_ulp=parse_max_ulp(max_ulp),
        fail_on=parse_fail_on(fail_on) if fail_on is not None else DEFAULT_FAIL_ON,
        accumulate=accumulate, tolerance=float(tolerance), input=input, targets=targets,
        target=target, grid=tuple(grid), name=name, timeout=timeout,
    )


def load_config(path=None) -> list[AuditSpec]:
    """Audits from numstab.toml ([[audit]] tables) or pyproject.toml ([[tool.numstab.audit]])."""
    if path is None:
        for cand in ("numstab.toml", "pyproject.toml"):
            if Path(cand).is_file():
                specs = _load(Path(cand), quiet=cand == "pyproject.toml")
                if specs:
                    return specs
        raise UsageError("no audit given: pass --function with --impl/--callable/--library, or write "
                         "[[audit]] tables in numstab.toml (or [[tool.numstab.audit]] in pyproject.toml)")
    p = Path(path)
    specs = _load(p, quiet=False)
    if not specs:
        raise UsageError(f"config {p}: no [[audit]] tables")
    return specs


def _load(p: Path, quiet: bool) -> list[AuditSpec]:
    from .inputs import read_bounded

    try:
        raw = read_bounded(p, 16 * 2**20, "config file")
    except UsageError as exc:
        raise UsageError(f"config {exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise UsageError(f"config {p}: {str(exc).splitlines()[0] if str(exc) else 'malformed'}") from None
    if p.name == "pyproject.toml":
        tool = data.get("tool", {})
        data = tool.get("numstab", {}) if isinstance(tool, dict) else {}
        if not isinstance(data, dict):
            raise UsageError(f"config {p}: [tool.numstab] must be a table")
        if not data and quiet:
            return []
    for k in data:
        if k != "audit":
            raise unknown_name(f"key in {p}", k, ["audit"])
    audits = data.get("audit", [])
    if isinstance(audits, dict):
        audits = [audits]
    if not isinstance(audits, list) or not all(isinstance(a, dict) for a in audits):
        raise UsageError(f"config {p}: 'audit' must be [[audit]] tables, not {audits!r}"[:300])
    return [spec_from_mapping(a, f"{p} audit #{i + 1}") for i, a in enumerate(audits)]


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
        impl = library_impl(lib, spec.function, timeout=spec.timeout)
        if impl is None:
            raise UsageError(f"--library {lib} has no {spec.function}")
        out.append(impl)
    return out


def _inputs(spec: AuditSpec, fmt, n_impls: int = 1):
    from .inputs import load_targets, load_vectors, round_inputs
    from .limits import audit_bytes, require

    hint = "audit fewer implementations or formats per audit, or a smaller grid or input"
    if spec.input is not None:
        x0 = load_vectors(spec.input)
        require(f"auditing {x0.size:,} input values with {n_impls} implementations",
                audit_bytes(x0.size, n_impls), hint)
        x = round_inputs(fmt, x0)
        t = load_targets(spec.target, spec.targets, x.shape[0], x.shape[1],
                         required=get_function(spec.function).takes == "target")
        return [(x, t)]
    g = dict(spec.grid)
    grid = make_grid(fmt, g.get("offsets"), g.get("spreads"), g.get("sizes"), g.get("trials"),
                     g.get("seed", 0))
    elements = len(grid.offsets) * len(grid.spreads) * sum(grid.sizes) * grid.trials
    require(f"auditing a grid of {elements:,} input elements with {n_impls} implementations",
            audit_bytes(elements, n_impls), hint)
    by_n: dict = {}
    for c in grid_cells(fmt, grid):
        by_n.setdefault(c.n, []).append(c)
    return [stack(cs) for cs in by_n.values()]


def run_audit(specs, argv=None) -> AuditReport:
    from . import __version__
    from .runner import evaluate, library_versions

    results = []
    for spec in specs:
        impls = _impls_of(spec)
        for dt in spec.dtypes:
            fmt = get_format(dt)
            batches = _inputs(spec, fmt, len(impls))
            acc: dict = {}
            for x, t in batches:
                outs, ref, _ = evaluate(fmt, x, t, impls, spec.accumulate, spec.tolerance,
                                        on_error="record")
                for o in outs:
                    acc.setdefault(o.impl.name, []).append((o, x, t, ref))
            for impl in impls:
                results.append(_judge(spec, fmt, impl, acc[impl.name]))
    meta = {"version": __version__, "argv": list(argv) if argv is not None else None,
            "audits": [{"function": s.function, "accumulate": s.accumulate, "tolerance": jnum(s.tolerance),
                        "fail_on": list(s.fail_on), "max_ulp": dict(s.max_ulp), "grid": dict(s.grid),
                        "input": s.input} for s in specs],
            **library_versions()}
    return AuditReport(tuple(results), meta)


def _spurious_zero(function: str, y: np.ndarray, rounded: np.ndarray) -> np.ndarray:
    """Outputs that are 0, or the log of 0 (-inf; +inf for a loss), where the exact value is not."""
    from .causes import wrong_special

    zero, inf = wrong_special(y, rounded)
    return zero | inf if get_function(function).log_of_zero is not None else zero


def _judge(spec: AuditSpec, fmt, impl: Impl, parts) -> AuditResult:
    from .runner import cause_counts

    errors = [o.error for o, *_ in parts if o.error]
    counts = {k: 0 for k in STATUS_KEYS}
    if errors:
        return AuditResult(spec.function, impl.name, fmt.name, tuple(counts.items()), math.nan, math.nan,
                           False, (f"error: {errors[0]}",), None, spec.name)
    ulps, causes, zeros = [], {}, 0
    for o, _x, _t, ref in parts:
        for code, cnt in zip(*np.unique(o.status, return_counts=True)):
            counts[STATUSES[code]] += int(cnt)
        for c, k in cause_counts(o.status, o.cause).items():
            causes[c] = causes.get(c, 0) + k
        zeros += int(np.sum(_spurious_zero(spec.function, o.y, ref[spec.function].rounded)))
        ulps.append(o.ulp.ravel())
    u = np.concatenate(ulps)
    known = u[~np.isnan(u)]
    fin = known[np.isfinite(known)]
    max_u = float(known.max()) if known.size else math.nan
    med_u = float(quantize(np.median(known))) if known.size else math.nan
    total = sum(counts.values())
    reasons = []
    for s in spec.fail_on:
        if s == "zero":
            if zeros:
                reasons.append(f"zero: {zeros} of {total} outputs are 0 (or the log of 0) where the exact "
                               "value is not")
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
                       tuple(sorted(causes.items(), key=lambda kv: -kv[1])), inferred, zeros)


def _first_failure(spec, fmt, parts, limit):
    from .causes import cause_name

    codes = [STATUSES.index(s) for s in spec.fail_on if s in STATUSES]
    for o, x, t, ref in parts:
        st, u = o.status, o.ulp
        bad = np.isin(st, codes)
        if "zero" in spec.fail_on:
            bad |= _spurious_zero(spec.function, o.y, ref[spec.function].rounded)
        if limit is not None:
            bad |= np.isfinite(u) & (u > limit)
        if st.ndim == 1:
            bad = bad[:, None]
        rows = np.nonzero(bad.any(axis=-1))[0]
        if rows.size:
            r = int(rows[0])
            row_bad = bad[r]
            j = int(np.argmax(row_bad))
            y = o.y[r] if o.y.ndim == 2 else o.y[r:r + 1]
            exact = ref[spec.function].rounded[r]
            exact = exact if np.ndim(exact) else np.array([exact])
            uu = u[r] if u.ndim == 2 else u[r:r + 1]
            ss = st[r] if st.ndim == 2 else st[r:r + 1]
            cc = o.cause[r] if o.cause.ndim == 2 else o.cause[r:r + 1]
            return {
                "vector": [float(v) for v in x[r]],
                **({"target": int(t[r])} if get_function(spec.function).takes == "target" else {}),
                "element": None if get_function(spec.function).per_vector else j,
                "output": jnum(y[j]), "exact_rounded": jnum(exact[j]), "ulp_error": jnum(uu[j]),
                "status": STATUSES[int(ss[j])], "cause": cause_name(int(cc[j])),
                "cause_inferred": o.inferred,
            }
    return None
