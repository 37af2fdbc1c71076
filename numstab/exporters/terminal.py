"""Terminal exporter: rich tables of every command's results, and the progress bar.

Only the exporters import rich (this one) or matplotlib (png).
"""

from __future__ import annotations

import io
import json

from ..results import STATUSES, CompareRun
from ..tables import CAUSE_LEGEND, fmt_num, sig, summary_lines, tables_with_thresholds

STYLE = {"ok": "green", "inaccurate": "yellow", "underflow": "magenta", "overflow": "bold red",
         "nan": "bold red", "undetermined": "cyan"}


def console(file=None, width=None):
    """A rich console; output that is not a terminal gets 200 columns instead of rich's 80."""
    import sys

    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:  # rich exits 1 here; numstab's reader left: exit 0 (cli.main)
            self.quiet = True
            raise BrokenPipeError

    target = file if file is not None else sys.stdout
    if width is None and not (hasattr(target, "isatty") and target.isatty()):
        width = 200
    return _Console(file=file, width=width, highlight=False, soft_wrap=False)


def compare_table(run: CompareRun, file=None, details: bool = True) -> None:
    """The summary (one line per function x implementation x format), then with ``details`` the
    table of every grid cell."""
    from rich.table import Table as RTable

    con = console(file)
    con.print("[bold]Where each implementation breaks, and why[/bold]")
    for line in summary_lines(run):
        head, _, rest = line.partition(": ")
        con.print(f"  [bold]{head}[/bold]: {rest}", soft_wrap=True)
    if not details:
        con.print("(--details: the table of every grid cell)")
        return
    con.print()
    for line, t in tables_with_thresholds(run):
        if line:
            con.print(f"[bold]{line}[/bold]")
        con.print(t.title, soft_wrap=True)  # above the table: a narrow table would fold a long title
        tab = RTable(show_lines=False)
        for h in ("n", "offset", "x range"):
            tab.add_column(h, justify="right", overflow="fold")
        for i in t.impls:
            tab.add_column(i, justify="right", overflow="fold")
        prev_n = None
        for n, off, lo, hi, vals in t.rows:
            if prev_n is not None and n != prev_n:
                tab.add_section()
            prev_n = n
            cells = [f"[{STYLE.get(st, '')}]{txt}[/]" if st else "" for txt, st in vals]
            tab.add_row(str(n), fmt_num(off, 4), f"{fmt_num(lo, 4)}..{fmt_num(hi, 4)}", *cells)
        con.print(tab)
    con.print(
        f"cells: max ULP error over all trials; OVF/UNF/NaN = overflow/underflow/NaN in some element; "
        f"yellow and * = above the tolerance ({run.meta.get('tolerance')} ULP); accumulate="
        f"{run.meta.get('accumulate')}"
        + (f", compute={run.meta['compute']}" if run.meta.get("compute") else "")
        + f", seed={run.meta.get('seed')}"
    )
    con.print(CAUSE_LEGEND)










def thresholds_table(data: dict, file=None) -> None:
    from rich.table import Table as RTable

    con = console(file)
    fmts = data["formats"]
    tab = RTable(title="exp limits per format (exact, mpmath): limits rounded to 13 digits, "
                       "format values as shortest round-trip decimals", title_justify="left")
    tab.add_column("", overflow="fold")
    for f in fmts:
        tab.add_column(f["dtype"], justify="right", overflow="fold")
    n = fmts[0]["n"] if fmts else 1000
    rows = (("exp overflows for x >=", "exp_overflow_x"),
            ("largest finite exp input", "largest_finite_exp_input"),
            ("exp subnormal below x =", "exp_subnormal_x"),
            ("exp rounds to 0 for x <=", "exp_underflow_x"),
            (f"naive sum of {n} overflows above", "naive_sum_overflow_offset"),
            ("sigmoid rounds to 1 for x >=", "sigmoid_rounds_to_1_x"),
            ("1 + exp(x) rounds to 1 for x <=", "one_plus_exp_absorbed_x"),
            ("eps", "eps"), ("max", "max"), ("tiny (smallest normal)", "tiny"),
            ("smallest subnormal", "smallest_subnormal"), ("precision p (bits)", "p"))
    for label, key in rows:
        vals = [f[key] for f in fmts]
        tab.add_row(label, *(sig(v, 13) if isinstance(v, str) else repr(v) for v in vals))
    con.print(tab)
    con.print(f"naive sum: the largest offset at which {n} equal values keep sum(exp(x)) finite "
              "(exact arithmetic).")
    for f in fmts:
        if f.get("note"):
            con.print(f"{f['dtype']}: {f['note']}")


def inspect_table(data: dict, file=None) -> None:
    from rich.table import Table as RTable

    con = console(file)
    items = data["results"] if "results" in data else [data]
    for d in items:
        temp = f", T = {_j(d['temperature'])}" if d.get("temperature") is not None else ""
        comp = f", compute {d['compute']}" if d.get("compute") else ""
        head = f"{d['function']} / {d['impl']} in {d['dtype']} (accumulate {d['accumulate']}{comp}{temp})"
        if "vectors" in d:
            c = d["counts"]
            shards = f" in {len(d['shards'])} files" if d.get("shards") else ""
            con.print(f"[bold]{head}[/bold]: {d['vectors']} vectors of n={d['n']}{shards}, "
                      f"{d['vectors_failing']} with a failure; status [{STYLE[d['status']]}]{d['status']}[/]")
            con.print("  counts: " + ", ".join(f"{k} {v}" for k, v in c.items() if v)
                      + f"; max ULP {_j(d['max_ulp'])}, median ULP {_j(d['median_ulp'])}"
                      + (f"; flags: {', '.join(d['flags'])}" if d["flags"] else ""))
            if d.get("masked_rows_returned"):
                con.print("  fully masked rows returned: " + ", ".join(
                    f"{k} {v}" for k, v in d["masked_rows_returned"].items() if v))
            if d.get("worst"):
                worst_table(con, d["worst"], f"worst {len(d['worst'])} rows")
            continue
        tab = RTable(title=head, title_justify="left")
        for h in ("i", "input", "output", "exact", "ULP error", "status"):
            tab.add_column(h, justify="right" if h != "exact" else "left", overflow="fold")
        scalar = d.get("scalar", False)
        for i, (y, ex, u, st) in enumerate(zip(d["outputs"], d["reference"], d["ulp_error"],
                                               d["element_status"])):
            inp = "all" if scalar else _j(d['inputs'][i])
            tab.add_row("-" if scalar else str(i), inp, _j(y), ex if ex is not None else "(not settled)",
                        _j(u), f"[{STYLE[st]}]{st}[/]")
        con.print(tab)
        if scalar:
            con.print("  inputs: " + ", ".join(_j(v) for v in d["inputs"])
                      + (f"; target {d['target']}" if "target" in d else ""))
        con.print(f"  IEEE flags: {', '.join(d['flags']) or 'none'}")
        con.print(f"  verdict: [{STYLE[d['status']]}]{d['verdict']}[/]")


def worst_table(con, rows: list, title: str) -> None:
    """The worst rows of a batch (locate.worst): N-D index, input, output, exact, ULP, status, cause."""
    from rich.table import Table as RTable

    tab = RTable(title=title, title_justify="left")
    for h in ("index", "input", "output", "exact", "ULP error", "status", "cause"):
        tab.add_column(h, justify="left" if h in ("index", "exact", "cause") else "right", overflow="fold")
    for w in rows:
        inp = _j(w["input"]) if "input" in w else "[" + ", ".join(
            _j(v) if v != "..." else v for v in w["vector"]) + "]"
        if "target" in w:
            inp += f" t={w['target']}"
        where = (w["file"] + " " if "file" in w else "") + "(" + ", ".join(map(str, w["index"])) + ")"
        tab.add_row(where, inp, _j(w["output"]),
                    w["exact"] if w["exact"] is not None else "(not settled)", _j(w["ulp_error"]),
                    f"[{STYLE[w['status']]}]{w['status']}[/]", w["cause"] or "")
    con.print(tab)


def _j(v) -> str:
    """A JSON value as text: every digit of a float64 kept (shortest round-trip repr), strings
    ("inf", "nan") as they are, null (no figure) as "-"."""
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return repr(float(v))


def audit_table(report, file=None) -> None:

    from rich.table import Table as RTable

    from ..tables import shown_axes

    con = console(file)
    tab = RTable(title="numstab audit", title_justify="left")
    show_t, show_m = shown_axes(report.results)  # columns T and mask where some result has others
    heads = ("function", "impl", "dtype", *(("T",) if show_t else ()), *(("mask",) if show_m else ()),
             "result", "ok", "undet", "inacc", "unf", "ovf", "nan", "max ULP", "causes", "reasons")
    for h in heads:
        left = h in ("function", "impl", "dtype", "mask", "reasons")
        tab.add_column(h, justify="left" if left else "right", overflow="fold")
    for r in report.results:
        c = dict(r.counts)
        res = "[green]PASS[/]" if r.passed else "[bold red]FAIL[/]"
        axes = ((fmt_num(r.temperature, 6),) if show_t else ()) + ((r.mask,) if show_m else ())
        tab.add_row(r.function, r.impl, r.dtype, *axes, res, *(str(c[s]) for s in STATUSES),
                    fmt_num(r.max_ulp),
                    ("~" if r.cause_inferred else "") + ", ".join(f"{k} {v}" for k, v in r.causes),
                    "; ".join(r.reasons))
    con.print(tab)
    for lib in report.meta.get("libraries", {}).values():
        con.print(f"library: {library_line(lib)}", soft_wrap=True)
    for note in getattr(report, "notes", ()):
        con.print(f"note: {note}", soft_wrap=True)
    for r in report.results:
        if r.first_failure:
            ff = dict(r.first_failure)
            vec = ff.pop("vector", [])
            shown = _elide(vec)
            where = r.dtype + "".join(f", {a}" for a in axes_of(r, (show_t, show_m)))
            con.print(f"[bold]{r.impl}[/] in {where}, worst failing input (row {ff.pop('row', '?')}): "
                      f"{shown}; " + json.dumps(ff), soft_wrap=True)
        if r.worst and not r.passed:
            where = r.dtype + "".join(f", {a}" for a in axes_of(r, (show_t, show_m)))
            worst_table(con, list(r.worst), f"{r.impl} in {where}: worst {len(r.worst)} rows")
    con.print("[green]all audits passed[/]" if report.passed else "[bold red]audit failed[/]")


def axes_of(r, shown: tuple) -> list:
    """['T 0.01', 'mask min'] for a result, as far as the report varies them."""
    from ..tables import axes_text

    text = axes_text(r, shown)
    return text.split(", ") if text else []


def library_line(lib: dict) -> str:
    """'keras 3.15.1 (backend jax 0.10.2, cpu)' from a library record of an audit's meta."""
    extra = [f"{k} {v}" for k, v in lib.items() if k not in ("name", "version", "device", "backend_version")]
    if "backend" in lib:
        extra = [f"backend {lib['backend']} {lib.get('backend_version') or ''}".rstrip()] + \
            [e for e in extra if not e.startswith("backend ")]
    return f"{lib['name']} {lib.get('version')} ({', '.join([*extra, lib.get('device', 'cpu')])})"


class ProgressBar:
    """A rich progress bar on stderr, shown only on a terminal and only once a run passes ~1 s.

    The first call arms a timer: a run that reports nothing more for a while (one long vector,
    evaluated in one go) still shows its bar, with the elapsed time, from about a second on."""

    def __init__(self, label: str, enabled: bool = True, delay: float = 1.0):
        import sys
        import threading
        import time

        self.enabled = enabled and sys.stderr.isatty()
        self.label = label
        self.start = time.monotonic()
        self.delay = delay
        self._bar = None
        self._task = None
        self._last = (0, 0)
        self._timer = None
        self._lock = threading.Lock()
        self._closed = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        import time

        with self._lock:
            self._last = (done, total)
            if self._bar is None:
                wait = self.delay - (time.monotonic() - self.start)
                if wait > 0:
                    if self._timer is None:
                        import threading

                        self._timer = threading.Timer(wait, self._show)
                        self._timer.daemon = True
                        self._timer.start()
                    return
                self._open()
            self._bar.update(self._task, completed=done, total=total)

    def _show(self) -> None:
        with self._lock:
            if self._bar is None and not self._closed:
                self._open()

    def _open(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        done, total = self._last
        self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                             TextColumn("{task.completed:,}/{task.total:,} elements"),
                             TimeElapsedColumn(), console=Console(stderr=True), transient=True)
        self._bar.start()
        self._task = self._bar.add_task(self.label, total=total, completed=done)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            if self._bar is not None:
                self._bar.stop()
                self._bar = None


def compare(run: CompareRun, details: bool = True) -> str:
    """The summary and the tables as text (no colour), for a file."""
    buf = io.StringIO()
    compare_table(run, file=buf, details=details)
    return buf.getvalue()


def report_files(run: CompareRun, plots: dict) -> dict:
    return {}


def _elide(vec, keep: int = 4) -> str:
    """A vector as text; a long one as its first and last elements, its length and where the
    whole of it is."""
    items = [_j(v) for v in vec]
    if len(items) <= 2 * keep + 2:
        return "[" + ", ".join(items) + "]"
    return ("[" + ", ".join(items[:keep]) + ", ..., " + ", ".join(items[-keep:])
            + f"] ({len(items)} values; all of them in --format json, first_failure.vector)")
