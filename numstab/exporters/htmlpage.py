"""HTML exporter: one self-contained page (inline CSS, plots as data URIs, no scripts)."""

from __future__ import annotations

import base64
import html

from ..results import CompareRun
from ..tables import command_line, fmt_num, summary_lines, summary_rows, tables_with_thresholds

STATUS_CSS = {"ok": "#2e7d32", "inaccurate": "#b28704", "underflow": "#7b1fa2", "overflow": "#c62828",
              "nan": "#c62828", "undetermined": "#00838f"}


def report(run: CompareRun, plots: dict) -> str:
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
             f"<p>Command: <code>{esc(command_line(run))}</code><br>numstab {esc(str(m.get('version')))}, "
             f"seed {esc(str(m.get('seed')))}, accumulate {esc(str(m.get('accumulate')))}, "
             + (f"compute {esc(str(m['compute']))}, " if m.get("compute") else "") + "tolerance "
             f"{esc(str(m.get('tolerance')))} ULP, reference {esc(str(m.get('reference')))}.</p>",
             "<h2>Where each implementation breaks, and why</h2>", "<ul>",
             *(f"<li><b>{esc(line.partition(': ')[0])}</b>: {esc(line.partition(': ')[2])}</li>"
               for line in summary_lines(run)), "</ul>",
             *_legend(),
             "<h2>Verdict per implementation</h2>",
             "<table><tr><th>function</th><th>dtype</th><th>impl</th><th>worst status</th>"
             "<th>failing cells</th><th>worst max ULP</th><th>causes (elements)</th></tr>"]
    for f, i, d, st, bad, tot, mu, causes in summary_rows(run):
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


def compare(run: CompareRun) -> str:
    """The page of a compare run, with its plots where matplotlib is installed."""
    from ..errors import UsageError
    from .png import make_plots

    try:
        plots = make_plots(run)
    except UsageError:
        plots = {}
    return report(run, plots)


def report_files(run: CompareRun, plots: dict) -> dict:
    return {"report.html": report(run, plots)}


def _legend() -> list[str]:
    """What each status (in its table colour) and each cause means: the page explains itself."""
    from ..results import CAUSE_MEANING, CAUSES, STATUS_MEANING, STATUSES
    from ..tables import CAUSE_TAG, WORD

    esc = html.escape
    out = ["<details open><summary><b>Statuses and causes</b></summary>",
           "<table class=legend><tr><th>status</th><th>in tables</th><th>meaning</th></tr>"]
    for st in STATUSES:
        out.append(f"<tr><td class=l style=\"color:{STATUS_CSS[st]}\">{esc(st)}</td>"
                   f"<td>{esc(WORD.get(st, 'ULP figure' + (' with *' if st == 'inaccurate' else '')))}</td>"
                   f"<td class=l>{esc(STATUS_MEANING[st])}</td></tr>")
    out.append("</table><table class=legend><tr><th>cause</th><th>tag</th><th>meaning</th></tr>")
    for c in CAUSES:
        out.append(f"<tr><td class=l>{esc(c)}</td><td>:{esc(CAUSE_TAG.get(c, c))}</td>"
                   f"<td class=l>{esc(CAUSE_MEANING[c])}</td></tr>")
    out.append("</table><p>~ before a cause: inferred (a black box), not established from the steps.</p>"
               "</details>")
    return out
