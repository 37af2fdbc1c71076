"""Markdown exporter: the error tables of a compare run, and the report page."""

from __future__ import annotations

from ..results import CompareRun
from ..tables import (
    CAUSE_LEGEND,
    command_line,
    fmt_num,
    sig,
    summary_lines,
    summary_rows,
    tables_with_thresholds,
)


def summary(run: CompareRun, agg=None) -> list[str]:
    """The summary as Markdown list items: one per function x implementation x format."""
    out = []
    for line in summary_lines(run, agg):
        head, _, rest = line.partition(": ")
        out.append(f"* **{head}**: {rest}")
    return out


def stream(run: CompareRun, with_summary: bool = True, rows: int = 8192):
    """The Markdown text in pieces: the summary, then every table a few thousand rows at a time."""
    out = []
    if with_summary:
        out += ["## Where each implementation breaks, and why", "", *summary(run), "", "## Error tables", ""]
    for line, t in tables_with_thresholds(run):
        if line:
            out.append(f"**{line}**\n")
        out.append(f"### {t.title}\n")
        out.append("| n | offset | x range | " + " | ".join(t.impls) + " |")
        out.append("|---:|---:|---|" + "---:|" * len(t.impls))
        for n, off, lo, hi, vals in t.rows:
            cells = [f"**{txt}**" if st not in ("ok", "") else txt for txt, st in vals]
            out.append(f"| {n} | {fmt_num(off, 4)} | {fmt_num(lo, 4)}..{fmt_num(hi, 4)} | "
                       + " | ".join(cells) + " |")
            if len(out) >= rows:
                yield "\n".join(out) + "\n"
                out = []
        out.append("")
    out.append(f"Cells: max ULP error over all trials; {CAUSE_LEGEND}.")
    yield "\n".join(out) + "\n"


def compare(run: CompareRun, with_summary: bool = True) -> str:
    return "".join(stream(run, with_summary))


def report(run: CompareRun, plot_files=()) -> str:
    return "".join(report_stream(run, plot_files))


def report_stream(run: CompareRun, plot_files=()):
    """The report page in pieces: the summary and verdicts (aggregated once, chunk by chunk), then
    the error tables a few thousand rows at a time."""
    from ..tables import Aggregates

    agg = Aggregates(run)
    m = run.meta
    out = ["# numstab report", ""]
    out.append(f"Command: `{command_line(run)}`  ")
    out.append(f"numstab {m.get('version')}, seed {m.get('seed')}, accumulate {m.get('accumulate')}, "
               + (f"compute {m['compute']}, " if m.get("compute") else "")
               + f"tolerance {m.get('tolerance')} ULP, reference {m.get('reference')}; numpy "
               f"{m.get('numpy')}, mpmath {m.get('mpmath')}, ml_dtypes {m.get('ml_dtypes')}, Python "
               f"{m.get('python')}.")
    out += ["", "## Where each implementation breaks, and why", "", *summary(run, agg)]
    out += ["", "## Verdict per implementation", "",
            "| function | dtype | impl | worst status | failing cells | worst max ULP | causes (elements) |",
            "|---|---|---|---|---:|---:|---|"]
    for f, i, d, st, bad, tot, mu, causes in summary_rows(run, agg):
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
            "bold: not ok.", ""]
    yield "\n".join(out) + "\n"
    yield from stream(run, with_summary=False)
    yield "\n"


def report_files(run: CompareRun, plots: dict) -> dict:
    return {"report.md": report_stream(run, sorted(plots))}
