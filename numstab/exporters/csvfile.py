"""CSV exporter: one row per grid cell (columns: tables.CSV_FIELDS)."""

from __future__ import annotations

import csv
import io

from ..results import CompareRun
from ..tables import CSV_FIELDS


def stream(run: CompareRun, rows: int = 8192):
    """The CSV text in pieces of ``rows`` rows."""
    from ..cells import csv_columns
    from ..tables import chunks

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for c in chunks(run):
        w.writerows(zip(*csv_columns(c)))
        if buf.tell() > rows * 200:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def compare(run: CompareRun) -> str:
    return "".join(stream(run))


def report_files(run: CompareRun, plots: dict) -> dict:
    return {"results.csv": stream(run)}
