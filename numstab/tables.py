"""Table model shared by every exporter (terminal, Markdown, HTML, CSV).

One function builds the tables of a compare run as plain data; each exporter
only decides how to draw them (the hyperfine way: one exporter per format,
one table logic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

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


def _table_key(c) -> tuple:
    """(function, dtype, temperature, mask, spread, target placement) of a chunk (one table's rows)."""
    fn = c.names[int(c.cols["impl"][0])][0]
    k = c.const
    return (fn, k["dtype"], k.get("temperature", 1.0), k.get("mask", "none"), k["spread"],
            c.ats[int(c.cols["at"][0])])


def run_axes(run: CompareRun) -> tuple[bool, bool]:
    """shown_axes of the run: from its grids for a computed run, else from its records."""
    from .cells import CellRows

    rs = run.results
    if isinstance(rs, CellRows) and rs.store.ordered is None:
        return rs.store.shown
    return shown_axes(rs)


class _Axes:
    __slots__ = ("temperature", "mask")

    def __init__(self, temperature, mask):
        self.temperature, self.mask = temperature, mask


def iter_tables(run: CompareRun):
    """The error tables of the run, one per (function, dtype, spread, target placement), each
    Table's ``rows`` a generator read from the chunks as it is drawn (read the rows of one
    table before asking for the next)."""
    import itertools

    impls_of = _table_impls(run)
    shown = run_axes(run)
    for key, group in itertools.groupby(chunks(run, tables=True), key=_table_key):
        f, dt, temp, mask, sp, at = key
        impls = impls_of[key] if impls_of is not None else None
        group = iter(group)
        first = next(group)
        if impls is None:
            impls = tuple(first.names[int(i)][1] for i in np.unique(first.cols["impl"]))  # chosen order
        yield Table(f, dt, sp, impls, _table_rows(itertools.chain([first], group), impls), at,
                    axes_text(_Axes(temp, mask), shown))


def _table_impls(run: CompareRun):
    """Each table's implementations, in order of appearance (a pre-pass, for records read from a
    file); None for a computed run, where every row holds every implementation of its function."""
    from .cells import CellRows

    if isinstance(run.results, CellRows) and run.results.store.ordered is None:
        return None
    out: dict = {}
    for c in chunks(run, tables=True):
        k = _table_key(c)
        seen = out.setdefault(k, {})
        for i in c.cols["impl"].tolist():
            seen.setdefault(c.names[i][1], None)
    return {k: tuple(v) for k, v in out.items()}


def _table_rows(group, impls):
    pos = {name: j for j, name in enumerate(impls)}
    for c in group:
        cols, n = c.cols, int(c.const["n"])
        off = cols["offset"].tolist()
        imp, st, cz = cols["impl"].tolist(), cols["status"].tolist(), cols["cause"].tolist()
        mu = cols["max_ulp"].tolist()
        x_min, x_max = cols["x_min"].tolist(), cols["x_max"].tolist()
        i, L = 0, len(off)
        while i < L:
            j = i
            vals = [("", "")] * len(impls)
            while j < L and off[j] == off[i]:
                fn, name, inferred = c.names[imp[j]]
                status = STATUSES[st[j]]
                m = c.big[j]["max_ulp"] if j in c.big and "max_ulp" in c.big[j] else mu[j]
                cause = c.vocab[cz[j] - 1] if cz[j] else None
                vals[pos[name]] = (cell_text(status, m, cause, inferred), status)
                j += 1
            yield (n, off[i], x_min[i], x_max[i], tuple(vals))
            i = j


def build_tables(run: CompareRun) -> list[Table]:
    """Every table of the run with its rows (iter_tables, materialized)."""
    import dataclasses

    return [dataclasses.replace(t, rows=tuple(t.rows)) for t in iter_tables(run)]


def tables_with_thresholds(run: CompareRun):
    """(threshold line or None, Table): the line comes with the first table of each dtype."""
    ths = thresholds_by_dtype(run)
    shown = set()
    for t in iter_tables(run):
        line = None
        if t.dtype not in shown:
            shown.add(t.dtype)
            line = threshold_line(ths.get(t.dtype, {}))
        yield line, t


def thresholds_by_dtype(run: CompareRun) -> dict:
    return {t["dtype"]: t for t in run.thresholds}


def csv_rows(run: CompareRun):
    for c in chunks(run):
        for d in c.records():
            cn = d.pop("counts")
            d["flags"] = "|".join(d["flags"])
            d["causes"] = "|".join(f"{k}:{v}" for k, v in d["causes"].items())
            d.update(cn)
            yield [("" if d[k] is None else d[k]) for k in CSV_FIELDS]


def verdicts(run: CompareRun, agg: Aggregates | None = None) -> list[tuple]:
    """(function, impl, dtype, worst status, cells failing, cells, worst max ULP, causes) per implementation.

    ``causes``: "cause (elements), ..." over every cell, most frequent first.
    """
    agg = agg or Aggregates(run)
    shown = run_axes(run)
    out = {}
    for (f, i, d, temp, mask), s in agg.keys.items():
        axes = axes_text(_Axes(temp, mask), shown)
        k = (f, i, d + (f" ({axes})" if axes else ""))
        if k in out:  # the same label twice (not in a computed run): merge
            o = out[k]
            o["worst"] = max(o["worst"], s["worst"])
            o["bad"], o["cells"] = o["bad"] + s["bad"], o["cells"] + s["cells"]
            o["mu"] = max(o["mu"], s["mu"])
            o["causes"] = {k: o["causes"].get(k, 0) + s["causes"].get(k, 0)
                           for k in {**o["causes"], **s["causes"]}}
            o["order"] = o["order"] + [j for j in s["order"] if j not in o["order"]]
        else:
            out[k] = dict(s)
    rows = []
    for (f, i, d), s in out.items():
        causes = sorted(((j, s["causes"][j]) for j in s["order"]), key=lambda kv: -kv[1])
        rows.append((f, i, d, STATUSES[s["worst"]], s["bad"], s["cells"], s["mu"],
                     ", ".join(f"{c} ({n})" for c, n in causes)))
    return rows


def summary_rows(run: CompareRun, agg: Aggregates | None = None):
    """verdicts() sorted by function, dtype, worst status first, then implementation."""
    order = tuple(reversed(STATUSES))  # worst first
    rows = sorted(verdicts(run, agg), key=lambda v: (v[0], v[2], order.index(v[3]), v[1]))
    return rows


def command_line(run: CompareRun) -> str:
    argv = run.meta.get("argv")
    return "numstab " + " ".join(argv) if argv else "(library call)"


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


def _composes(function: str, impl: str) -> str | None:
    """The inner function a built-in composition rounds to the format (functions.base.Ops)."""
    from .functions import REGISTRY

    i = REGISTRY.get(function, {}).get(impl)
    return i.composes if i is not None and i.builtin else None


def _half_subnormal(dtype: str) -> float:
    """Half the smallest subnormal: the largest magnitude that rounds to 0 (ties to even)."""
    from .formats import get_format

    return get_format(dtype).smallest_subnormal / 2


def summary_lines(run: CompareRun, agg: Aggregates | None = None) -> list[str]:
    """One line per function x implementation x format: where it breaks and why.

    Failing cells are grouped by their main cause, worst status first; each group says its worst
    status, where (the offsets, and n where not every n fails; for an exp overflow the exact
    threshold of max(x), for an underflow the exact limits of exp), the largest ULP error of an
    inaccurate group, and the cause. A clean implementation gets 'ok (max ... ULP)'.
    Computed chunk by chunk (:class:`Aggregates`), whatever the number of cells.
    """
    agg = agg or Aggregates(run)
    ths = thresholds_by_dtype(run)
    shown = run_axes(run)
    out = []
    for (f, impl, dt, temp, mask), s in agg.keys.items():
        axes = axes_text(_Axes(temp, mask), shown)
        sizes = sorted(s["sizes"])
        parts = []
        for cause, g in sorted(s["groups"].items(), key=lambda kv: (-kv[1].worst, kv[1].first)):
            worst = STATUSES[g.worst]
            ns = sorted(g.ns)
            where_n = "" if ns == sizes else ", n = " + ", ".join(map(str, ns))
            th, work = working_thresholds(run, dt, ths)
            inferred = g.inferred
            if inferred:  # a black box: its own arithmetic, judged by the format's limits
                th, work = ths.get(dt, {}), ""
            why = cause.replace("_", " ") + (" (inferred)" if inferred else "")
            where = f" in {work}" if work else ""
            if cause == "exp_overflow" and th:
                arg = "max(x)" if temp == 1 else "max(x / T)"
                parts.append(f"{worst} where {arg} >= {sig(th['exp_overflow_x'], 4)} ({why}{where})")
                continue
            inner = _composes(f, impl) if work and not inferred else None
            if cause == "underflow" and inner:  # the inner function's output tensor, in the format
                why += (f": the {inner} output is 0 once rounded to {dt} (at or below "
                        f"{sig(_half_subnormal(dt), 3)}), before the next function")
            elif cause == "underflow" and th:
                arg = "x" if temp == 1 else "x / T"
                why += (f": exp({arg}) is subnormal{where} below {sig(th['exp_subnormal_x'], 4)}, "
                        f"0 at or below {sig(th['exp_underflow_x'], 4)}")
            figure = ""
            if worst == "inaccurate":
                figure = f" (up to {fmt_num(float('nan') if g.top is None else g.top)} ULP)"
            vals, every = agg.region(g, (f, impl, dt, temp, mask))
            at = (f"offset {fmt_num(float(vals[0]), 4)}" if len(vals) == 1
                  else f"offsets {_region_arr(vals, every)}")
            parts.append(f"{worst}{figure} in {g.count} of {s['cells']} cells ({at}{where_n}; {why})")
        if s["undet"]:
            parts.append(f"undetermined in {s['undet']} cell{'' if s['undet'] == 1 else 's'}")
        if not parts:
            parts.append(f"ok (max {fmt_num(float('nan') if s['top'] is None else s['top'])} ULP)")
        out.append(f"{f}/{impl} {dt}{f' ({axes})' if axes else ''}: " + "; ".join(parts))
    return out


# ------------------------------------------------------------------ streaming, from columns
def chunks(run: CompareRun, tables: bool = False):
    """The run's cells as numstab.cells.CellColumns chunks, in the run's order. ``tables``: the
    records of a run read from a file in the tables' order (function as first seen, dtype,
    spread, target placement as first seen, n, offset), as a computed run gives them."""
    from .cells import CellRows, CellStore

    rs = run.results
    if isinstance(rs, CellRows) and rs.store.ordered is None:
        return rs.store.chunks()
    rs = list(rs)
    if tables:
        rank = {f: i for i, f in enumerate(dict.fromkeys(r.function for r in rs))}
        at_rank = {m: i for i, m in enumerate(dict.fromkeys(r.target_at for r in rs))}
        t_rank = {t: i for i, t in enumerate(dict.fromkeys(r.temperature for r in rs))}
        m_rank = {m: i for i, m in enumerate(dict.fromkeys(r.mask for r in rs))}
        rs.sort(key=lambda r: (rank[r.function], r.dtype, t_rank[r.temperature], m_rank[r.mask], r.spread,
                               at_rank[r.target_at], r.n, r.offset))
    return CellStore.from_results(rs).chunks()


class _Group:
    """Failing cells of one implementation and format with one main cause."""

    __slots__ = ("first", "count", "worst", "ns", "inferred", "top", "marks", "values")

    def __init__(self, first: int):
        self.first, self.count, self.worst, self.ns, self.inferred = first, 0, 0, set(), False
        self.top = None
        self.marks = None  # one bit per grid offset (index into the key's offsets)
        self.values = set()  # the failing offsets themselves, when no grid axis is known


def _top(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _max_of(vals: np.ndarray, big: list):
    """max over the finite-or-inf figures (NaN left out) and the figures beyond float64's range."""
    v = vals[~np.isnan(vals)]
    out = float(v.max()) if v.size else None
    for b in big:
        out = _top(out, b)
    return out


class Aggregates:
    """What the summary lines and the verdicts need, gathered chunk by chunk: memory bounded by
    the number of implementations x causes (and one bit per grid offset for each failing group),
    not by the number of cells."""

    def __init__(self, run: CompareRun):
        self.run = run
        self.keys: dict = {}  # (function, impl, dtype) -> state dict
        self.axes: dict = {}  # dtype -> sorted offsets of the grid (from meta) of a computed run
        from .cells import CellRows

        computed = isinstance(run.results, CellRows) and run.results.store.ordered is None
        for dt, g in (run.meta.get("grids") or {}).items() if computed else ():
            if isinstance(g, dict) and isinstance(g.get("offsets"), list):
                try:
                    self.axes[dt] = np.unique(np.asarray(g["offsets"], dtype=np.float64))
                except (TypeError, ValueError):
                    pass
        self.row = 0
        for c in chunks(run):
            self.add(c)

    def add(self, c) -> None:
        cols, dt = c.cols, c.const["dtype"]
        temp, mask = c.const.get("temperature", 1.0), c.const.get("mask", "none")
        n = int(c.const["n"])
        impl = cols["impl"]
        codes = np.unique(impl)
        axis = self.axes.get(dt)
        for code in codes:
            fn, name, inferred = c.names[int(code)]
            key = (fn, name, dt, temp, mask)
            rows = np.nonzero(impl == code)[0]
            s = self.keys.get(key)
            if s is None:
                s = self.keys[key] = {"cells": 0, "sizes": set(), "top": None, "undet": 0, "groups": {},
                                      "worst": 0, "bad": 0, "mu": 0.0, "order": [],
                                      "causes": {},
                                      "offsets": set() if axis is None else None}
            st = cols["status"][rows]
            mu = cols["max_ulp"][rows]
            bigs = [(int(np.searchsorted(rows, r)), v["max_ulp"]) for r, v in c.big.items()
                    if "max_ulp" in v and r in set(rows.tolist())]
            mu_f = mu.copy()
            if bigs:
                mu_f[[i for i, _ in bigs]] = np.nan
            s["cells"] += rows.size
            s["sizes"].add(n)
            s["top"] = _top(s["top"], _max_of(mu_f, [v for _, v in bigs]))
            s["undet"] += int(np.sum(st == 1))
            s["worst"] = max(s["worst"], int(st.max()))
            s["bad"] += int(np.sum(st != 0))
            m = _max_of(mu_f, [v for _, v in bigs])
            if m is not None:
                s["mu"] = max(s["mu"], m)
            cz_rows = cols["causes"][rows]
            seen = cz_rows > 0
            tot = cz_rows.sum(axis=0).tolist()
            for j in np.nonzero(seen.any(axis=0))[0].tolist():
                s["causes"][c.vocab[j]] = s["causes"].get(c.vocab[j], 0) + int(tot[j])
            new = [j for j in np.nonzero(seen.any(axis=0))[0].tolist() if c.vocab[j] not in s["order"]]
            s["order"] += [c.vocab[j] for j in sorted(new, key=lambda j: (int(np.argmax(seen[:, j])), j))]
            offs = cols["offset"][rows]
            if s["offsets"] is not None:
                s["offsets"].update(offs.tolist())
            fail = st >= 2
            if fail.any():
                cz = cols["cause"][rows][fail]
                fr = np.nonzero(fail)[0]
                for code_c in np.unique(cz):
                    sel = fr[cz == code_c]
                    cause = c.vocab[int(code_c) - 1] if code_c else "unknown"
                    g = s["groups"].get(cause)
                    if g is None:
                        g = s["groups"][cause] = _Group(self.row + int(rows[sel[0]]))
                    g.count += sel.size
                    g.worst = max(g.worst, int(st[sel].max()))
                    g.ns.add(n)
                    g.inferred = g.inferred or inferred
                    sel_big = [v for i, v in bigs if i in set(sel.tolist())]
                    gm = mu_f[sel]
                    g.top = _top(g.top, _max_of(gm, sel_big))
                    o = offs[sel]
                    if axis is not None:
                        idx = np.searchsorted(axis, o)
                        if g.marks is None:
                            g.marks = np.zeros((axis.size + 7) // 8, dtype=np.uint8)
                        np.bitwise_or.at(g.marks, idx >> 3, (128 >> (idx & 7)).astype(np.uint8))
                    else:
                        g.values.update(o.tolist())
        self.row += len(c)

    def region(self, g: _Group, key) -> tuple:
        """(sorted failing offsets' text as _region gives it, their count)."""
        s = self.keys[key]
        axis = self.axes.get(key[2])
        if axis is None:
            vals, every = sorted(g.values), sorted(s["offsets"])
            return vals, every
        idx = np.nonzero(np.unpackbits(g.marks)[:axis.size])[0]
        return axis[idx], axis


def _region_arr(vals, every) -> str:
    """_region for sorted unique arrays."""
    vals, every = np.asarray(vals, dtype=np.float64), np.asarray(every, dtype=np.float64)
    if vals.size == 1:
        return fmt_num(float(vals[0]), 4)
    lo, hi = float(vals[0]), float(vals[-1])
    inside = int(np.searchsorted(every, hi, side="right") - np.searchsorted(every, lo, side="left"))
    contiguous = inside == vals.size
    if contiguous and hi == float(every[-1]):
        return f">= {fmt_num(lo, 4)}"
    if contiguous and lo == float(every[0]):
        return f"<= {fmt_num(hi, 4)}"
    return f"{fmt_num(lo, 4)}..{fmt_num(hi, 4)}"
