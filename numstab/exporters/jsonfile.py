"""JSON exporter: the record itself (schema numstab.<kind>/<n>), indented, no NaN tokens."""

from __future__ import annotations

import json

from ..results import COMPARE_SCHEMA, CompareRun


def stream(run: CompareRun):
    """The record in pieces (header keys indented, then one compact line per result, a chunk of
    cells at a time): what CompareRun.to_json() gives, without the whole text in memory."""
    from ..cells import json_lines
    from ..tables import chunks

    head = json.dumps({"schema": COMPARE_SCHEMA, "meta": run.meta, "thresholds": list(run.thresholds)},
                      indent=1, allow_nan=False)
    yield head[:-2] + ',\n "results": [\n'
    sep = ""
    for c in chunks(run):
        body = ",\n".join(json_lines(c))
        if body:
            yield sep + body
            sep = ",\n"
    yield "\n ]\n}\n"


def compare(run: CompareRun) -> str:
    return "".join(stream(run))


def record(data) -> str:
    """Any JSON-ready record (inspect, thresholds, audit)."""
    return json.dumps(data, indent=1, allow_nan=False) + "\n"


def report_files(run: CompareRun, plots: dict) -> dict:
    return {"results.json": stream(run)}
