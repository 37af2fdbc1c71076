"""Table model shared by every exporter (terminal, Markdown, HTML, CSV).

One function builds the tables of a compare run as plain data; each exporter
only decides how to draw them (the hyperfine way: one exporter per format,
one table logic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from .results import STATUSES, BigFigure, CompareRun

WORD = {"overflow": "OVF", "underflow": "UNF", "nan": "NaN", "undetermined": "?"}
#: short tags of the causes, appended to failing cells (e.g. "OVF:sum", "29:round")
CAUSE_TAG = {"exp_overflow": "exp", "sum_overflow": "sum", "invalid": "inv", "underflow": "unf",
             "cancellation": "canc", "absorption": "abs", "clipping": "clip", "rounding": "round",
             "nan_hidden": "hid", "output_rounding": "out"}
CAUSE_LEGEND = ("* = above the tolerance; cause after ':': exp = exp overflow, sum = sum overflow, "
                "inv = invalid operation, unf = "
                "underflow (flush or subnormal digits), canc = cancellation, abs = absorption, clip = "
                "clipping, round = accumulated rounding, hid = a NaN hidden (a number where the exact value "
                "is NaN), out = the output's rounding to the format (finite in float32, inf or 0 in the "
                "format); ~ = inferred (a black box)")
CSV_FIELDS = ("function", "impl", "dtype", "offset", "spread", "n", "trials", "x_min", "x_max",
              "max_ulp", "median_ulp", "max_rel", "status", "cause", "causes", "cause_inferred", "flags",
              *STATUSES, "target_at", "temperature", "mask")


def sig(text: str, digits: int = 12) -> str:
    """Round an exact decimal string to `digits` significant digits (decimal rounding, not truncation)."""
    from decimal import Decimal

    return format(Decimal(text), f".{digits}g")


def fmt_num(v: float, digits: int = 3) -> str:
    if isinstance(v, (Decimal, BigFigure)):  # a figure beyond float64's range: finite
        return f"{v:.{digits}g}"
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}g}"


#: The mark of a figure above the tolerance: visible without colour (NO_COLOR, a pipe, a file).
ABOVE = "*"


def cell_text(status: str, max_ulp: float, cause: str | None = None, inferred: bool = False) -> str:
    """A cell's text: the max ULP error (``12.3*`` above the tolerance) or the status word, then
    the cause tag of a failing cell (``12.3*:round``, ``OVF:sum``)."""
    text = WORD[status] if status in WORD else fmt_num(max_ulp) + (ABOVE if status == "inaccurate" else "")
    if cause and status not in ("ok", "undetermined"):
        text += (":~" if inferred else ":") + CAUSE_TAG.get(cause, cause)
    return text


@dataclass(frozen=True)
class Table:
    function: str
    dtype: str
    spread: float
    impls: tuple
    rows: tuple  # ((n, offset, x_min, x_max, ((text, status), ...)), ...)
    target_at: str | None = None  # where the target sat (cross_entropy), one table per place
    axes: str = ""  # the temperature and mask of the table, where the run has others (axes_text)

    @property
    def title(self) -> str:
        at = f", target at {self.target_at}" if self.target_at else ""
        axes = f", {self.axes}" if self.axes else ""
        return f"{self.function} in {self.dtype} (spread {fmt_num(self.spread)}{axes}{at}): max ULP error"


def shown_axes(results) -> tuple[bool, bool]:
    """(temperature, mask): whether the results hold more than T = 1 and no mask -- then every
    table, summary line and verdict row of the run names its T and its mask."""
    return ({r.temperature for r in results} != {1.0}, {r.mask for r in results} != {"none"})


def axes_text(r, shown: tuple) -> str:
    """'T 0.01, mask min' for a result (the axes the run varies, tables.shown_axes)."""
    parts = []
    if shown[0]:
        parts.append(f"T {fmt_num(r.temperature, 6)}")
    if shown[1]:
        parts.append(f"mask {r.mask}")
    return ", ".join(parts)


def threshold_line(th: dict) -> str:
    if not th:
        return ""
    return (
        f"{th['dtype']}: exp(x) overflows for x >= {sig(th['exp_overflow_x'], 11)} "
        f"(largest finite input {th['largest_finite_exp_input']!r}); "
        f"exp(x) is subnormal below {sig(th['exp_subnormal_x'], 8)} and rounds to 0 for "
        f"x <= {sig(th['exp_underflow_x'], 9)}; eps {th['eps']:.3g}; "
        f"sum of {th['n']} equal exp(x) overflows above x = {sig(th['naive_sum_overflow_offset'], 7)}"
    )


def _table_key(r) -> tuple:
    return (r.function, r.dtype, r.temperature, r.mask, r.spread, r.target_at)


def build_tables(run: CompareRun) -> list[Table]:
    tables = []
    groups: dict = {}
    for r in run.results:
        groups.setdefault(_table_key(r), []).append(r)
    keys = list(groups)
    shown = shown_axes(run.results)
    # functions in the run's order (the runner orders them as the registry), then dtype, T, mask, spread
    rank = {f: i for i, f in enumerate(dict.fromkeys(k[0] for k in keys))}
    t_rank = {t: i for i, t in enumerate(dict.fromkeys(k[2] for k in keys))}
    m_rank = {m: i for i, m in enumerate(dict.fromkeys(k[3] for k in keys))}
    at_rank = {m: i for i, m in enumerate(dict.fromkeys(k[5] for k in keys))}
    keys.sort(key=lambda k: (rank[k[0]], k[1], t_rank[k[2]], m_rank[k[3]], k[4], at_rank[k[5]]))
    for key in keys:
        f, dt, _t, _m, sp, at = key
        rs = groups[key]
        impls = tuple(dict.fromkeys(r.impl for r in rs))
        cells = {}
        for r in rs:
            cells[(r.n, r.offset, r.impl)] = r
        row_keys = sorted({(r.n, r.offset) for r in rs})
        rows = []
        for n, off in row_keys:
            first = next(cells[(n, off, i)] for i in impls if (n, off, i) in cells)
            vals = tuple(
                (cell_text(cells[(n, off, i)].status, cells[(n, off, i)].max_ulp, cells[(n, off, i)].cause,
                           cells[(n, off, i)].cause_inferred),
                 cells[(n, off, i)].status) if (n, off, i) in cells else ("", "")
                for i in impls
            )
            rows.append((n, off, first.x_min, first.x_max, vals))
        tables.append(Table(f, dt, sp, impls, tuple(rows), at, axes_text(rs[0], shown)))
    return tables


def tables_with_thresholds(run: CompareRun):
    """(threshold line or None, Table): the line comes with the first table of each dtype."""
    ths = thresholds_by_dtype(run)
    shown = set()
    for t in build_tables(run):
        line = None
        if t.dtype not in shown:
            shown.add(t.dtype)
            line = threshold_line(ths.get(t.dtype, {}))
        yield line, t


def thresholds_by_dtype(run: CompareRun) -> dict:
    return {t["dtype"]: t for t in run.thresholds}


def csv_rows(run: CompareRun):
    for r in run.results:
        d = r.to_dict()
        c = d.pop("counts")
        d["flags"] = "|".join(d["flags"])
        d["causes"] = "|".join(f"{k}:{v}" for k, v in d["causes"].items())
        d.update(c)
        yield [("" if d[k] is None else d[k]) for k in CSV_FIELDS]


def verdicts(run: CompareRun) -> list[tuple]:
    """(function, impl, dtype, worst status, cells failing, cells, worst max ULP, causes) per implementation.

    ``causes``: "cause (elements), ..." over every cell, most frequent first. The dtype is
    followed by the temperature and the mask, where the run has others ("float16 (T 0.01)").
    """
    from .results import STATUSES

    out, causes = {}, {}
    shown = shown_axes(run.results)
    for r in run.results:
        axes = axes_text(r, shown)
        k = (r.function, r.impl, r.dtype + (f" ({axes})" if axes else ""))
        st, bad, tot, mu = out.get(k, ("ok", 0, 0, 0.0))
        worse = r.status if STATUSES.index(r.status) > STATUSES.index(st) else st
        mu = max(mu, r.max_ulp) if not math.isnan(r.max_ulp) else mu
        out[k] = (worse, bad + (r.status != "ok"), tot + 1, mu)
        for c, cnt in r.causes:
            causes.setdefault(k, {})
            causes[k][c] = causes[k].get(c, 0) + cnt
    return [(f, i, d, *v, ", ".join(f"{c} ({n})" for c, n in sorted(causes.get((f, i, d), {}).items(),
                                                                       key=lambda kv: -kv[1])))
            for (f, i, d), v in out.items()]


def summary_rows(run: CompareRun):
    """verdicts() sorted by function, dtype, worst status first, then implementation."""
    order = tuple(reversed(STATUSES))  # worst first
    rows = sorted(verdicts(run), key=lambda v: (v[0], v[2], order.index(v[3]), v[1]))
    return rows


def command_line(run: CompareRun) -> str:
    argv = run.meta.get("argv")
    return "numstab " + " ".join(argv) if argv else "(library call)"


def _region(vals, every) -> str:
    """Where in a sorted grid axis the values lie: '>= a', '<= b', 'a..b' or one value."""
    vals, every = sorted(set(vals)), sorted(set(every))
    inside = [v for v in every if vals[0] <= v <= vals[-1]]
    if len(vals) == 1:
        return fmt_num(vals[0], 4)
    if vals == inside and vals[-1] == every[-1]:
        return f">= {fmt_num(vals[0], 4)}"
    if vals == inside and vals[0] == every[0]:
        return f"<= {fmt_num(vals[-1], 4)}"
    return f"{fmt_num(vals[0], 4)}..{fmt_num(vals[-1], 4)}"


def working_thresholds(run: CompareRun, dtype: str, ths: dict) -> tuple[dict, str]:
    """(exp's limits where the built-in kernels computed, the name of that format, or "" when it
    is the format itself): float32's for a half format under ``--compute float32`` (a record
    older than numstab.compare/5 computed in the format)."""
    from .formats import get_format
    from .steps import compute_dtype

    compute = run.meta.get("compute") or "format"
    try:
        work = compute_dtype(get_format(dtype).dtype, compute).name
    except Exception:  # an unknown format or model in a file: the format's own limits
        return ths.get(dtype, {}), ""
    if work == dtype:
        return ths.get(dtype, {}), ""
    if work in ths:
        return ths[work], work
    from .reference import thresholds as exact_thresholds

    return exact_thresholds(get_format(work)), work


def summary_lines(run: CompareRun) -> list[str]:
    """One line per function x implementation x format: where it breaks and why.

    Failing cells are grouped by their main cause, worst status first; each group says its worst
    status, where (the offsets, and n where not every n fails; for an exp overflow the exact
    threshold of max(x), for an underflow the exact limits of exp), the largest ULP error of an
    inaccurate group, and the cause. A clean implementation gets 'ok (max ... ULP)'.
    """
    ths = thresholds_by_dtype(run)
    shown = shown_axes(run.results)
    by: dict = {}
    for r in run.results:
        by.setdefault((r.function, r.impl, r.dtype, r.temperature, r.mask), []).append(r)
    rank = {s: i for i, s in enumerate(STATUSES)}
    out = []
    for (f, impl, dt, temp, _mask), cells in by.items():
        axes = axes_text(cells[0], shown)
        offsets, sizes = [r.offset for r in cells], sorted({r.n for r in cells})
        groups: dict = {}
        for r in cells:
            if r.status not in ("ok", "undetermined"):
                groups.setdefault(r.cause or "unknown", []).append(r)
        parts = []
        for cause, rs in sorted(groups.items(), key=lambda kv: -max(rank[r.status] for r in kv[1])):
            worst = max((r.status for r in rs), key=rank.get)
            ns = sorted({r.n for r in rs})
            where_n = "" if ns == sizes else ", n = " + ", ".join(map(str, ns))
            th, work = working_thresholds(run, dt, ths)
            inferred = any(r.cause_inferred for r in rs)
            if inferred:  # a black box: its own arithmetic, judged by the format's limits
                th, work = ths.get(dt, {}), ""
            why = cause.replace("_", " ") + (" (inferred)" if inferred else "")
            where = f" in {work}" if work else ""
            if cause == "exp_overflow" and th:
                arg = "max(x)" if temp == 1 else "max(x / T)"
                parts.append(f"{worst} where {arg} >= {sig(th['exp_overflow_x'], 4)} ({why}{where})")
                continue
            if cause == "underflow" and th:
                arg = "x" if temp == 1 else "x / T"
                why += (f": exp({arg}) is subnormal{where} below {sig(th['exp_subnormal_x'], 4)}, "
                        f"0 at or below {sig(th['exp_underflow_x'], 4)}")
            figure = ""
            if worst == "inaccurate":
                top = max((r.max_ulp for r in rs if r.max_ulp == r.max_ulp), default=float("nan"))
                figure = f" (up to {fmt_num(top)} ULP)"
            offs = sorted({r.offset for r in rs})
            at = (f"offset {fmt_num(offs[0], 4)}" if len(offs) == 1
                  else f"offsets {_region(offs, offsets)}")
            parts.append(f"{worst}{figure} in {len(rs)} of {len(cells)} cells ({at}{where_n}; {why})")
        if any(r.status == "undetermined" for r in cells):
            parts.append(f"undetermined in {sum(r.status == 'undetermined' for r in cells)} cells")
        if not parts:
            top = max((r.max_ulp for r in cells if r.max_ulp == r.max_ulp), default=float("nan"))
            parts.append(f"ok (max {fmt_num(top)} ULP)")
        out.append(f"{f}/{impl} {dt}{f' ({axes})' if axes else ''}: " + "; ".join(parts))
    return out
