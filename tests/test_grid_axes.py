"""Temperature and mask as grid axes of compare, report and audit (issue 12, items 4 and 5):
every (T, mask) is its own cells, keyed and labelled in every exporter.

The figure checked here is recomputed independently: the naive float16 kernel with numpy's
float16 operations and the exact softmax of the exact quotients x / T with mpmath.
"""

import csv
import io
import json
import re

import mpmath
import numpy as np
import pytest

from numstab.cli import main
from numstab.commands.compare import run_compare
from numstab.exporters import htmlpage, markdown
from numstab.formats import FORMATS
from numstab.grids import cells, make_grid
from numstab.results import CompareRun

F16 = FORMATS["float16"]


def _run(**kw):
    opts = dict(dtypes=["float16"], functions=["softmax"], impls=["naive", "stable"], offsets="-12,0,8",
                spreads="1", sizes="2,10", trials=2, jobs=1)
    opts.update(kw)
    return run_compare(**opts)


def _ulp16(r: mpmath.mpf) -> mpmath.mpf:
    """ulp_F(r) of the README for float16 (p = 11, emin = -14)."""
    if r == 0:
        return mpmath.mpf(2) ** -24
    return mpmath.mpf(2) ** (max(int(mpmath.floor(mpmath.log(abs(r), 2))), -14) - 10)


def _quantized(v: float) -> float:
    return round(v, 3) if v < 1 else float(f"{v:.3g}")


def test_every_temperature_and_mask_is_its_own_cell():
    run = _run(temperature="1,0.5", mask="none,min")
    keys = {(r.temperature, r.mask) for r in run.results}
    assert keys == {(1.0, "none"), (1.0, "min"), (0.5, "none"), (0.5, "min")}
    assert len(run.results) == 4 * 2 * 3 * 2  # (T, mask) x impls x offsets x sizes
    assert run.meta["grids"]["float16"]["temperatures"] == [1.0, 0.5]
    assert run.meta["grids"]["float16"]["masks"] == ["none", "min"]
    # T = 1 with no mask is the plain run, figure for figure; each (T, mask) alone gives its cells
    plain = {(r.impl, r.n, r.offset): r for r in _run().results}
    alone = {(r.impl, r.n, r.offset): r for r in _run(temperature="0.5", mask="min").results}
    for r in run.results:
        k = (r.impl, r.n, r.offset)
        if (r.temperature, r.mask) == (1.0, "none"):
            assert r == plain[k]
        if (r.temperature, r.mask) == (0.5, "min"):
            assert r == alone[k]


def test_a_temperature_cell_figure_recomputed_independently():
    """softmax/naive in float16 at T = 0.5 (n = 10, offset 0): numpy's float16 kernel on x / T, against
    the exact softmax of the exact quotients (x / 0.5 = 2x, exact)."""
    run = _run(temperature="0.5", compute="format")  # the figure below: every step in float16
    grid = make_grid(F16, "0", "1", "10", 2, 0)
    (cell,) = cells(F16, grid)
    worst = mpmath.mpf(0)
    with np.errstate(all="ignore"), mpmath.workdps(50):
        for row in cell.x:
            q = (row.astype(np.float16) / np.float16(0.5)).astype(np.float16)
            e = np.exp(q)
            s = np.float16(0)
            for v in e:  # sequential accumulation, each addition rounded to float16
                s = np.float16(s + v)
            y = (e / s).astype(np.float16)
            z = [mpmath.mpf(float(v)) / mpmath.mpf(0.5) for v in row]
            tot = mpmath.fsum(mpmath.exp(v) for v in z)
            for yi, zi in zip(y, z):
                r = mpmath.exp(zi) / tot
                worst = max(worst, abs(mpmath.mpf(float(yi)) - r) / _ulp16(r))
    got = next(r for r in run.results if (r.impl, r.n, r.offset) == ("naive", 10, 0.0))
    assert got.temperature == 0.5 and got.max_ulp == _quantized(float(worst))


def test_every_exporter_keys_and_labels_the_axes(tmp_path):
    run = _run(temperature="1,0.01", mask="none,-inf")
    # JSON: each result carries its T and mask, and reads back
    d = json.loads(run.to_json())
    assert d["schema"] == "numstab.compare/5"
    assert {(r["temperature"], r["mask"]) for r in d["results"]} == {
        (1.0, "none"), (1.0, "-inf"), (0.01, "none"), (0.01, "-inf")}
    assert CompareRun.from_dict(d).results == run.results
    # CSV: columns temperature and mask
    rows = list(csv.DictReader(io.StringIO(_export(run, "csv"))))
    assert {(r["temperature"], r["mask"]) for r in rows} == {("1.0", "none"), ("1.0", "-inf"),
                                                             ("0.01", "none"), ("0.01", "-inf")}
    # tables (terminal, Markdown, HTML): one per (T, mask), titled with both; summary lines too
    term = _export(run, "terminal")
    for label in ("T 1, mask none", "T 1, mask -inf", "T 0.01, mask none", "T 0.01, mask -inf"):
        assert f"softmax in float16 (spread 1, {label}): max ULP error" in term
        assert f"softmax/naive float16 ({label}):" in term
        assert f"### softmax in float16 (spread 1, {label}): max ULP error" in _export(run, "markdown")
        assert f"<h3>softmax in float16 (spread 1, {label}): max ULP error</h3>" in _export(run, "html")
        assert f"| softmax | float16 ({label}) | naive |" in markdown.report(run)
        assert f"<td class=l>float16 ({label})</td>" in htmlpage.report(run, {})
    # a run with T = 1 and no mask only names neither
    assert "T 1" not in _export(_run(), "terminal") and "mask" not in _export(_run(), "markdown")


def test_png_plots_per_temperature_and_mask():
    pytest.importorskip("matplotlib")
    from numstab.exporters.png import make_plots

    plots = make_plots(_run(temperature="1,1e-5", mask="none,-inf", sizes="2"))
    assert sorted(plots) == sorted(f"float16_softmax_T{t}_mask_{m}_{k}.png" for t in ("1", "1e-05")
                                   for m in ("none", "neginf") for k in ("ulp", "status"))
    assert sorted(make_plots(_run(sizes="2"))) == ["float16_softmax_status.png", "float16_softmax_ulp.png"]


def test_report_from_a_compare_3_file_keeps_its_mask(tmp_path):
    run = _run(mask="min")
    d = json.loads(run.to_json())
    d["schema"] = "numstab.compare/3"  # /3: the mask only in meta.grids.<dtype>.mask, no T
    d["meta"]["grids"]["float16"] = {"mask": "min"}
    for r in d["results"]:
        del r["mask"], r["temperature"]
    old = CompareRun.from_dict(d)
    assert {(r.temperature, r.mask) for r in old.results} == {(1.0, "min")}


def test_audit_grid_results_per_temperature_and_mask(capsys, tmp_path):
    code = main(["audit", "--function", "softmax", "--impl", "stable", "--dtype", "float16", "--offsets", "0",
                 "--sizes", "4", "--temperature", "1,0.01", "--mask", "none,min", "--format", "json"])
    d = json.loads(capsys.readouterr().out)
    assert d["schema"] == "numstab.audit/7"
    assert [(r["temperature"], r["mask"]) for r in d["results"]] == [
        (1.0, "none"), (1.0, "min"), (0.01, "none"), (0.01, "min")]
    assert d["meta"]["audits"][0]["temperatures"] == [1.0, 0.01] and code in (0, 1)
    main(["audit", "--function", "softmax", "--impl", "stable", "--dtype", "float16", "--offsets", "0",
          "--sizes", "4", "--temperature", "1,0.01", "--mask", "none,min"])
    out = capsys.readouterr().out
    assert re.search(r"┃\s+T ┃ mask ┃", out) and re.search(r"│ float16 │ 0.01 │ min  │", out)
    cfg = tmp_path / "numstab.toml"
    cfg.write_text('[[audit]]\nfunction = "softmax"\nimpl = "stable"\ndtypes = ["float16"]\noffsets = "0"\n'
                   'sizes = "4"\ntemperature = [1, 0.01]\nmask = ["none", "-inf"]\n')
    main(["audit", "--config", str(cfg), "--format", "json"])
    d = json.loads(capsys.readouterr().out)
    assert [(r["temperature"], r["mask"]) for r in d["results"]] == [
        (1.0, "none"), (1.0, "-inf"), (0.01, "none"), (0.01, "-inf")]


BAD = [("0", "finite number > 0"), ("-1", "finite number > 0"), ("nan", "finite number > 0"),
       ("inf", "finite number > 0"), ("1,,2", "empty value"), ("x", "not a number")]


@pytest.mark.parametrize("value,words", BAD)
def test_bad_temperatures_are_refused_everywhere(value, words, capsys, tmp_path):
    cmds = [["compare", "--dtype", "float16", "--sizes", "2"],
            ["report", "--dtype", "float16", "--sizes", "2", "--out", str(tmp_path / "r")],
            ["audit", "--function", "softmax", "--impl", "stable", "--sizes", "2"],
            ["inspect", "softmax"]]
    for cmd in cmds:
        tail = ["--", "1", "2"] if cmd[0] == "inspect" else []
        assert main(cmd + ["--temperature", value] + tail) == 2, cmd
        err = capsys.readouterr().err
        assert err.startswith("numstab: error:") and words in err and err.count("\n") == 1, (cmd, err)
    cfg = tmp_path / "numstab.toml"
    cfg.write_text(f'[[audit]]\nfunction = "softmax"\nimpl = "stable"\ntemperature = "{value}"\n')
    assert main(["audit", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("numstab: error:") and words in err and err.count("\n") == 1


def test_bad_masks_are_refused_everywhere(capsys, tmp_path):
    for cmd in (["compare"], ["report", "--out", str(tmp_path / "r")],
                ["audit", "--function", "softmax", "--impl", "stable"]):
        for value in ("none,bogus", "", "min,,none"):
            assert main(cmd + ["--dtype", "float16", "--sizes", "2", "--mask", value]) == 2, (cmd, value)
            err = capsys.readouterr().err
            assert err.startswith("numstab: error:") and err.count("\n") == 1, (cmd, value, err)
    cfg = tmp_path / "numstab.toml"
    for value in ('"bogus"', '["none", 3]', "[]"):
        cfg.write_text(f'[[audit]]\nfunction = "softmax"\nimpl = "stable"\nmask = {value}\n')
        assert main(["audit", "--config", str(cfg)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("numstab: error:") and err.count("\n") == 1, err
    f = tmp_path / "x.npy"
    np.save(f, np.zeros((1, 4)))
    assert main(["audit", "--function", "softmax", "--impl", "stable", "--input", str(f),
                 "--mask", "min"]) == 2
    assert "--mask applies to the grid" in capsys.readouterr().err
    # a temperature that is 0 in the format is refused before any work
    assert main(["compare", "--dtype", "float16", "--sizes", "2", "--temperature", "1e-9"]) == 2
    assert "is 0 in float16" in capsys.readouterr().err


def _export(run, name: str) -> str:
    from numstab import exporters

    return exporters.get(name).compare(run)
