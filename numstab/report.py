"""`numstab report`: a directory of report files from one compare run.

Files: report.md, results.json (the compare record, schema numstab.compare/1),
results.csv (one row per grid cell), report.html (self-contained: inline CSS, plots
embedded as data URIs, no scripts, no network) and plots/*.png. Every output path
is created and checked before the computation starts, and every file is written to
a temp file and renamed into place.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from pathlib import Path

from .errors import UsageError
from .outputs import AtomicFile
from .results import CompareRun
from .tables import fmt_num, sig, tables_with_thresholds, verdicts

REPORT_FORMATS = ("md", "json", "csv", "html", "png")
STATUS_CSS = {"ok": "#2e7d32", "inaccurate": "#b28704", "underflow": "#7b1fa2", "overflow": "#c62828",
              "nan": "#c62828", "undetermined": "#00838f"}


def parse_formats(spec) -> tuple:
    items = [s.strip() for s in str(spec).split(",") if s.strip()]
    if not items:
        raise UsageError("--formats is empty (choose from md,json,csv,html,png)")
    for s in items:
        if s not in REPORT_FORMATS:
            from .errors import unknown_name

            raise unknown_name("report format", s, REPORT_FORMATS)
    return tuple(dict.fromkeys(items))


def default_dir() -> Path:
    return Path("reports") / _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


class ReportWriter:
    """Checks and reserves every output before the run; writes them atomically after."""

    def __init__(self, out_dir, formats, force: bool = False):
        self.dir = Path(out_dir)
        self.formats = tuple(formats)
        if "png" in self.formats:
            from .plots import require_matplotlib

            require_matplotlib()
        if self.dir.exists() and not self.dir.is_dir():
            raise UsageError(f"{self.dir} exists and is not a directory")
        if self.dir.is_dir() and any(self.dir.iterdir()) and not force:
            raise UsageError(f"{self.dir} already exists and is not empty; use --force to overwrite "
                             "or --out to choose another directory")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if "png" in self.formats:
                (self.dir / "plots").mkdir(exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create {self.dir}: {exc.strerror or exc}") from None
        names = {"md": "report.md", "json": "results.json", "csv": "results.csv", "html": "report.html"}
        self.files = {f: AtomicFile(self.dir / names[f]) for f in self.formats if f in names}

    def abort(self) -> None:
        for a in self.files.values():
            a.abort()

    def write(self, run: CompareRun) -> list[Path]:
        from . import render

        written = []
        try:
            plots = {}
            if "png" in self.formats or "html" in self.formats:
                try:
                    from .plots import make_plots

                    plots = make_plots(run)
                except UsageError:
                    if "png" in self.formats:
                        raise
                    plots = {}  # HTML without plots when matplotlib is absent
            if "png" in self.formats:
                for name, data in plots.items():
                    written.append(AtomicFile(self.dir / "plots" / name, binary=True).commit(data))
            if "json" in self.files:
                written.append(self.files["json"].commit(render.compare_json(run)))
            if "csv" in self.files:
                written.append(self.files["csv"].commit(render.compare_csv(run)))
            if "md" in self.files:
                written.append(self.files["md"].commit(
                    report_markdown(run, sorted(plots) if "png" in self.formats else [])))
            if "html" in self.files:
                written.append(self.files["html"].commit(report_html(run, plots)))
        except BaseException:
            self.abort()
            raise
        return written


def _summary_rows(run: CompareRun):
    order = ("nan", "overflow", "underflow", "inaccurate", "undetermined", "ok")
    rows = sorted(verdicts(run), key=lambda v: (v[0], v[2], order.index(v[3]), v[1]))
    return rows


def _command(run: CompareRun) -> str:
    argv = run.meta.get("argv")
    return "numstab " + " ".join(argv) if argv else "(library call)"


def report_markdown(run: CompareRun, plot_files=()) -> str:
    from .render import compare_markdown

    m = run.meta
    out = ["# numstab report", ""]
    out.append(f"Command: `{_command(run)}`  ")
    out.append(f"numstab {m.get('version')}, seed {m.get('seed')}, accumulate {m.get('accumulate')}, "
               f"tolerance {m.get('tolerance')} ULP, reference {m.get('reference')}; numpy "
               f"{m.get('numpy')}, mpmath {m.get('mpmath')}, ml_dtypes {m.get('ml_dtypes')}, Python "
               f"{m.get('python')}.")
    out += ["", "## Verdict per implementation", "",
            "| function | dtype | impl | worst status | failing cells | worst max ULP | causes (elements) |",
            "|---|---|---|---|---:|---:|---|"]
    for f, i, d, st, bad, tot, mu, causes in _summary_rows(run):
        out.append(f"| {f} | {d} | {i} | **{st}** | {bad}/{tot} | {fmt_num(mu)} | {causes} |")
    out += ["", "## Thresholds (exact, mpmath)", "",
            "| dtype | exp overflows for x >= | largest finite exp input | exp is 0 for x <= | "
            "exp subnormal below | eps |", "|---|---:|---:|---:|---:|---:|"]
    for t in run.thresholds:
        out.append(f"| {t['dtype']} | {sig(t['exp_overflow_x'], 13)} | {t['largest_finite_exp_input']!r} | "
                   f"{sig(t['exp_underflow_x'], 13)} | {sig(t['exp_subnormal_x'], 13)} | {t['eps']!r} |")
    if plot_files:
        out += ["", "## Plots", ""]
        for p in plot_files:
            out.append(f"![{p}](plots/{p})")
    out += ["", "## Error tables", "",
            "Cells: max ULP error over the trials; OVF/UNF/NaN: overflow/underflow/NaN in some element; "
            "bold: not ok.", "", compare_markdown(run)]
    return "\n".join(out) + "\n"


def report_html(run: CompareRun, plots: dict) -> str:
    esc = html.escape
    m = run.meta
    parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
             "<title>numstab report</title>", "<style>",
             "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
             "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right;font-size:13px}"
             "th{background:#f3f3f3}td.l{text-align:left}img{max-width:100%;display:block;margin:1em 0}"
             "code{background:#f5f5f5;padding:1px 4px}",
             "</style></head><body>", "<h1>numstab report</h1>",
             f"<p>Command: <code>{esc(_command(run))}</code><br>numstab {esc(str(m.get('version')))}, "
             f"seed {esc(str(m.get('seed')))}, accumulate {esc(str(m.get('accumulate')))}, tolerance "
             f"{esc(str(m.get('tolerance')))} ULP, reference {esc(str(m.get('reference')))}.</p>",
             "<h2>Verdict per implementation</h2>",
             "<table><tr><th>function</th><th>dtype</th><th>impl</th><th>worst status</th>"
             "<th>failing cells</th><th>worst max ULP</th><th>causes (elements)</th></tr>"]
    for f, i, d, st, bad, tot, mu, causes in _summary_rows(run):
        parts.append(f"<tr><td class=l>{esc(f)}</td><td class=l>{esc(d)}</td><td class=l>{esc(i)}</td>"
                     f"<td style=\"color:{STATUS_CSS[st]}\">{esc(st)}</td><td>{bad}/{tot}</td>"
                     f"<td>{esc(fmt_num(mu))}</td><td class=l>{esc(causes)}</td></tr>")
    parts.append("</table>")
    for name in sorted(plots):
        b64 = base64.b64encode(plots[name]).decode("ascii")
        parts.append(f"<img alt=\"{esc(name)}\" src=\"data:image/png;base64,{b64}\">")
    for line, t in tables_with_thresholds(run):
        if line:
            parts.append(f"<p><b>{esc(line)}</b></p>")
        parts.append(f"<h3>{esc(t.title)}</h3><table><tr><th>n</th><th>offset</th><th>x range</th>"
                     + "".join(f"<th>{esc(i)}</th>" for i in t.impls) + "</tr>")
        for n, off, lo, hi, vals in t.rows:
            cells = "".join(f"<td style=\"color:{STATUS_CSS.get(st, '#222')}\">{esc(txt)}</td>"
                            for txt, st in vals)
            parts.append(f"<tr><td>{n}</td><td>{esc(fmt_num(off, 4))}</td>"
                         f"<td>{esc(fmt_num(lo, 4))}..{esc(fmt_num(hi, 4))}</td>{cells}</tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def load_run(path) -> CompareRun:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{p}: not a JSON result file ({exc})") from None
    return CompareRun.from_dict(data)
