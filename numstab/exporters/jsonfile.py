"""JSON exporter: the record itself (schema numstab.<kind>/<n>), indented, no NaN tokens."""

from __future__ import annotations

import json

from ..results import CompareRun


def compare(run: CompareRun) -> str:
    return run.to_json() + "\n"


def record(data) -> str:
    """Any JSON-ready record (inspect, thresholds, audit)."""
    return json.dumps(data, indent=1, allow_nan=False) + "\n"


def report_files(run: CompareRun, plots: dict) -> dict:
    return {"results.json": compare(run)}
