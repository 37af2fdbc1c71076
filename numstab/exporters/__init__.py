"""Exporters: one module per output medium, all drawing the shared table model (numstab.tables).

"Format" in numstab means a number format (numstab.formats); how results are written is an
*exporter*. Each exporter module provides ``compare(run) -> str | bytes`` (a compare run as
one document; json, csv and markdown also ``stream(run)``, the same text in pieces, a chunk of
cells at a time, so that memory does not grow with the number of cells) and
``report_files(run, plots) -> {relative path: content}`` (its files in a report directory,
content text, bytes or an iterable of text pieces; ``plots`` the PNGs of the run, made once).
The CLI's ``--format`` and ``-o`` and the report writer's ``--formats`` loop over
:data:`EXPORTERS`.

To add an exporter: one module here and one line in :data:`EXPORTERS`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import PurePath

from ..errors import unknown_name


@dataclass(frozen=True)
class Exporter:
    name: str
    module: str  # numstab.exporters.<module>
    aliases: tuple = ()  # other names the options accept (compatibility: "table", "md")
    suffixes: tuple = ()  # file suffixes that pick this exporter for -o FILE
    report_names: tuple = ()  # the files it writes in a report directory (png: plots/*.png)
    links_plots: bool = False  # its report page links plots/*.png (only when png is written too)
    binary: bool = False

    @property
    def in_report(self) -> bool:
        """Written by ``numstab report``."""
        return bool(self.report_names)

    def load(self):
        return importlib.import_module(f"{__name__}.{self.module}")

    def compare(self, run):
        return self.load().compare(run)

    def stream(self, run):
        """The document in pieces of text (an exporter without ``stream`` gives it whole)."""
        mod = self.load()
        if hasattr(mod, "stream"):
            yield from mod.stream(run)
        else:
            yield mod.compare(run)

    def report_files(self, run, plots: dict) -> dict:
        return self.load().report_files(run, plots)


#: Every exporter, in the order a report writes them.
EXPORTERS: dict[str, Exporter] = {e.name: e for e in (
    Exporter("terminal", "terminal", aliases=("table",), suffixes=(".txt",)),
    Exporter("markdown", "markdown", aliases=("md",), suffixes=(".md", ".markdown"),
             report_names=("report.md",), links_plots=True),
    Exporter("json", "jsonfile", suffixes=(".json",), report_names=("results.json",)),
    Exporter("csv", "csvfile", suffixes=(".csv",), report_names=("results.csv",)),
    Exporter("html", "htmlpage", suffixes=(".html", ".htm"), report_names=("report.html",)),
    Exporter("png", "png", report_names=("plots/*.png",), binary=True),
)}


def names(report: bool = False) -> tuple:
    """The names the options accept (aliases included); ``report``: those a report can write."""
    out = []
    for e in EXPORTERS.values():
        if not report or e.in_report:
            out += [e.name, *e.aliases]
    return tuple(out)


def get(name: str, report: bool = False, kind: str = "output format") -> Exporter:
    for e in EXPORTERS.values():
        if name == e.name or name in e.aliases:
            if report and not e.in_report:
                break
            return e
    raise unknown_name(kind, name, names(report))


def by_suffix(path) -> Exporter | None:
    """The exporter that the suffix of ``path`` names (``out.md`` -> markdown), or None."""
    suffix = PurePath(str(path)).suffix.lower()
    for e in EXPORTERS.values():
        if suffix in e.suffixes:
            return e
    return None
