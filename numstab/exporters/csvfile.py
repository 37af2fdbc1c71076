"""CSV exporter: one row per grid cell (columns: tables.CSV_FIELDS)."""

from __future__ import annotations

import csv
import io

from ..results import CompareRun
from ..tables import CSV_FIELDS, csv_rows


def compare(run: CompareRun) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for row in csv_rows(run):
        w.writerow(row)
    return buf.getvalue()


def report_files(run: CompareRun, plots: dict) -> dict:
    return {"results.csv": compare(run)}
