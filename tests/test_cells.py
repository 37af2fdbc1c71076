"""Columnar compare cells (numstab/cells.py): the batched, columnar path gives the figures,
statuses and causes of evaluating every grid cell on its own (the per-cell path, rebuilt here
from the engine's public pieces), and every exporter writes the same text from the columns as
from CellResult records."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from numstab import cells as cells_mod
from numstab.commands.compare import run_compare
from numstab.engine import evaluate, select_impls, summarize
from numstab.exporters import EXPORTERS
from numstab.formats import get_format
from numstab.grids import cells as grid_cells
from numstab.grids import make_extras, make_grid, targets_at
from numstab.masks import MASKABLE
from numstab.reference import temperature_functions
from numstab.results import CellResult, CompareRun


def _per_cell(dtype, offsets, sizes, spreads, mask=None, temperature=None):
    """Every cell evaluated alone (its own engine call) and summarized by engine.summarize."""
    fmt = get_format(dtype)
    g = make_grid(fmt, offsets, spreads, sizes, None, 0, mask, temperature)
    out = []
    for c in grid_cells(fmt, g, make_extras()):
        impls = [i for i in select_impls() if c.mask == "none" or i.function in MASKABLE]
        placed = ("target", "smoothing")  # the kinds whose target index --target-at moves
        plain = [i for i in impls if i.record.takes not in placed]
        with_t = [i for i in impls if i.record.takes in placed]
        kinds = {"target"} | {i.record.takes for i in plain}
        runs = [(None, plain, {k: v for k, v in c.args.items() if k in kinds})]
        for m in ("argmax", "argmin", "random"):
            t = targets_at(m, c.x, c.target)
            eps = c.args["smoothing"].epsilon
            runs.append((m, with_t, {"target": t, "smoothing": np.rec.fromarrays(
                [np.asarray(t, dtype=np.int64), eps], names="target,epsilon")}))
        for temp in g.temperatures:
            for mode, ii, tg in runs:
                if temp != 1:  # the families whose exact f(x / T) the reference has
                    ii = [i for i in ii if i.function in temperature_functions()]
                if not ii:
                    continue
                outs, _, _ = evaluate(fmt, c.x, tg, ii, "sequential", 4.0, None, "auto",
                                      temperature=None if temp == 1 else temp)
                for o in outs:
                    s = summarize(o)
                    out.append(CellResult(
                        function=o.impl.function, impl=o.impl.name, dtype=fmt.name, offset=c.offset,
                        spread=c.spread, n=c.n, trials=c.x.shape[0], x_min=float(c.x.min()),
                        x_max=float(c.x.max()), max_ulp=s["max_ulp"], median_ulp=s["median_ulp"],
                        max_rel=s["max_rel"], status=s["status"], flags=o.flags[0],
                        counts=tuple(s["counts"].items()), cause=s["cause"],
                        causes=tuple(s["causes"].items()),
                        cause_inferred=o.inferred, target_at=mode, temperature=temp, mask=c.mask))
    return out


def _key(r):
    return (r.function, r.impl, r.dtype, r.offset, r.spread, r.n, r.target_at, r.temperature, r.mask)


def _same(a: CellResult, b: CellResult) -> bool:
    da, db = a.to_dict(), b.to_dict()
    return da == db or all(
        (isinstance(da[k], float) and math.isnan(da[k]) and math.isnan(db[k])) or da[k] == db[k] for k in da)


@pytest.mark.parametrize("dtype,offsets,sizes,spreads,mask,temperature", [
    ("float16", "-20,-9,0,5,11.5", "2,5", "1,4", None, None),
    ("bfloat16", "-90,0,88.8", "3", "1", "none,min", None),
    ("float32", "-100,0,89", "2,7", "2", None, "1,0.25"),
])
def test_batched_columnar_cells_equal_per_cell_evaluation(dtype, offsets, sizes, spreads, mask, temperature):
    run = run_compare([dtype], offsets=offsets, sizes=sizes, spreads=spreads, mask=mask,
                      temperature=temperature, jobs=1)
    got = {_key(r): r for r in run.results}
    want = _per_cell(dtype, offsets, sizes, spreads, mask, temperature)
    assert len(got) == len(run.results) == len(want)
    statuses = set()
    for w in want:
        assert _same(got[_key(w)], w), (got[_key(w)], w)
        statuses.add(w.status)
    assert {"ok", "inaccurate"} <= statuses and statuses & {"nan", "overflow", "underflow"}  # a varied grid


@pytest.mark.parametrize("name", ["json", "csv", "markdown", "terminal"])
def test_exporters_write_the_same_text_from_columns_and_from_records(name):
    run = run_compare(["float16", "bfloat16"], offsets="-12,0,12", sizes="2,4", jobs=1, mask="none,min")
    records = CompareRun(meta=run.meta, results=tuple(run.results), thresholds=run.thresholds)
    exp = EXPORTERS[name]
    assert "".join(exp.stream(run)) == "".join(exp.stream(records)) == exp.compare(records)


def test_spilled_cells_read_back_identically_and_are_removed(monkeypatch):
    kw = dict(offsets="-15:15:9", sizes="2,3", jobs=1)
    whole = run_compare(["float16"], **kw)
    monkeypatch.setattr(cells_mod, "SPILL_BYTES", 0)
    spilled = run_compare(["float16"], **kw)
    store = spilled.results.store
    assert store._dir is not None and os.listdir(store._dir)
    assert all(isinstance(v, str) for b in store.blocks for v in b.cols.values())  # on disk
    js = EXPORTERS["json"]
    assert js.compare(spilled) == js.compare(whole)
    where = store._dir
    spilled.close()
    assert not os.path.exists(where)
