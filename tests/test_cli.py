import json

import numpy as np
import pytest

from numstab.cli import main
from tests.models import in_format  # the textbook model: --compute format


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_compare_json_schema_and_figures(capsys):
    # every step in float16: exp(12) overflows (in float32 steps it does not)
    code, out, err = run_cli(capsys, "compare", "--compute", "format", "--dtype", "float16", "--function",
                             "softmax", "--sizes", "2", "--spreads", "1", "--offsets", "0,12",
                             "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["schema"] == "numstab.compare/5"
    meta = data["meta"]
    for k in ("version", "seed", "argv", "accumulate", "numpy", "mpmath"):
        assert k in meta
    assert meta["argv"][0] == "compare"
    cells = {(r["impl"], r["offset"]): r for r in data["results"]}
    assert cells[("naive", 12.0)]["status"] == "nan"
    assert cells[("naive", 12.0)]["max_ulp"] == "inf"
    assert "overflow" in cells[("naive", 12.0)]["flags"]
    assert cells[("stable", 12.0)]["status"] == "ok"
    assert cells[("stable", 12.0)]["max_ulp"] <= 1.5
    assert set(cells[("stable", 0.0)]["counts"]) >= {"ok", "inaccurate", "underflow", "overflow", "nan"}
    assert "NaN" not in out  # never a bare NaN token


def test_compare_table_shows_thresholds(capsys):
    code, out, _ = run_cli(capsys, "compare", "--dtype", "float16", "--function", "logsumexp",
                           "--sizes", "2", "--offsets", "12", "--details")
    assert code == 0
    assert "11.0901107" in out and "OVF" in out


@pytest.mark.parametrize("argv,msg", [
    (["compare", "--dtype", "float17"], "unknown dtype 'float17'"),
    (["compare", "--offsets", "1:2:0"], "count must be at least 1"),
    (["compare", "--offsets", "a:b"], "malformed offsets spec"),
    (["compare", "--sizes", "-3"], "positive integers"),
    (["compare", "--impl", "stabel"], "did you mean 'stable'"),
    (["compare", "--accumulate", "kahan"], "unknown accumulation model"),
    (["compare", "--format", "yaml"], "unknown output format"),
    (["compare", "--bogus"], "No such option"),
    (["compare", "--dtype", "float16", "--offsets", "70000"], "do not fit float16"),
    (["compare", "--sizes", "100000000"], "refused"),
])
def test_bad_usage_exits_2_with_one_line(capsys, argv, msg):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert msg in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_output_file_is_written_atomically(tmp_path, capsys):
    target = tmp_path / "out.json"
    target.write_text("precious")
    code, _, _ = run_cli(capsys, "compare", "--dtype", "float17", "-o", str(target))
    assert code == 2 and target.read_text() == "precious"  # a failed run keeps what was there
    assert list(tmp_path.iterdir()) == [target]  # and leaves no temp file
    code, _, _ = run_cli(capsys, "compare", "--dtype", "float16", "--sizes", "2", "--format", "json",
                         "-o", str(target))
    assert code == 0 and json.loads(target.read_text())["schema"] == "numstab.compare/5"
    code, _, err = run_cli(capsys, "compare", "-o", str(tmp_path / "nodir" / "x.json"))
    assert code == 2 and "does not exist" in err


def test_thresholds_json(capsys):
    code, out, _ = run_cli(capsys, "thresholds", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["schema"] == "numstab.thresholds/2"
    f16 = next(f for f in data["formats"] if f["dtype"] == "float16")
    assert f16["exp_overflow_x"].startswith("11.0901107185")
    assert f16["largest_finite_exp_input"] == 11.0859375
    assert {f["dtype"] for f in data["formats"]} >= {"float8_e4m3fn", "float8_e5m2"}
    e4 = next(f for f in data["formats"] if f["dtype"] == "float8_e4m3fn")
    assert "NaN" in e4["note"] and e4["has_inf"] is False


INACC = ["compare", "--dtype", "float16", "--function", "log_softmax", "--impl", "stable", "--sizes", "1000",
         "--offsets", "0", "--spreads", "3", "--trials", "1", "--jobs", "1", "--details"]


@pytest.mark.parametrize("medium", ["pipe_no_color", "file_txt", "file_md"])
def test_cells_above_the_tolerance_keep_a_mark_without_colour(medium, capsys, tmp_path, monkeypatch):
    import math

    assert main(in_format([*INACC, "--format", "json"])) == 0
    (r,) = json.loads(capsys.readouterr().out)["results"]
    assert r["status"] == "inaccurate" and r["max_ulp"] > 4  # the cell is above the tolerance
    mark = f"{r['max_ulp']:.3g}*"
    assert math.isclose(float(mark[:-1]), r["max_ulp"], rel_tol=5e-3)
    if medium == "pipe_no_color":
        monkeypatch.setenv("NO_COLOR", "1")
        assert main(in_format(INACC)) == 0
        text = capsys.readouterr().out
        assert "\x1b[" not in text
    else:
        out = tmp_path / ("t.txt" if medium == "file_txt" else "t.md")
        assert main(in_format([*INACC, "-o", str(out)])) == 0
        text = out.read_text()
    assert mark + ":" in text and "* = above the tolerance" in text


@pytest.mark.parametrize("suffix,check", [
    (".md", lambda t: t.startswith("## Where each implementation breaks") and "| n | offset |" in t
     and "┃" not in t),
    (".json", lambda t: json.loads(t)["schema"] == "numstab.compare/5"),
    (".csv", lambda t: t.startswith("function,impl,dtype,")),
    (".html", lambda t: t.startswith("<!DOCTYPE html>") and "</html>" in t),
    (".txt", lambda t: "┃" in t and "\x1b[" not in t),
])
def test_output_file_suffix_picks_the_exporter(suffix, check, tmp_path, capsys):
    out = tmp_path / f"r{suffix}"
    small = ["compare", "--dtype", "float16", "--function", "softmax", "--sizes", "2", "--offsets", "0",
             "--trials", "1", "--jobs", "1", "--details"]
    assert main([*small, "-o", str(out)]) == 0
    assert capsys.readouterr().out == ""
    assert check(out.read_text())
    # an explicit --format wins over the suffix
    assert main([*small, "--format", "csv", "-o", str(out)]) == 0
    assert out.read_text().startswith("function,impl,dtype,")


@pytest.mark.parametrize("cmd", ["compare", "report", "inspect", "audit", "thresholds"])
def test_help_shows_choices_and_defaults(cmd, capsys):
    from numstab.formats import FORMATS

    assert main([cmd, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # one line: click wraps the help
    assert "--dtype [" + "|".join(FORMATS) + "]" in text
    if cmd != "thresholds":
        assert "--accumulate [sequential|pairwise|float32]" in text and "[default: sequential]" in text
    if cmd in ("compare", "report", "audit"):
        assert "[default: 2,10,1000]" in text and "[default: 1]" in text and "[default: 3]" in text
        assert "cross_entropy targets" in text  # what the seed drives
    if cmd == "compare":
        assert "--format [table|markdown|json|csv|html]" in text
    if cmd == "audit":
        assert "[default: overflow, underflow, nan, zero]" in text


def test_compare_opens_with_one_summary_line_per_implementation(capsys):
    """Summary first: where each implementation breaks and why, the limits exact."""
    import math

    argv = ["compare", "--dtype", "float16", "--function", "softmax", "--impl", "naive", "--impl", "stable",
            "--sizes", "10", "--spreads", "1", "--offsets=-16,0,9,12", "--trials", "2", "--jobs", "1",
            "--compute", "format"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    naive = next(ln for ln in lines if ln.strip().startswith("softmax/naive float16:"))
    stable = next(ln for ln in lines if ln.strip().startswith("softmax/stable float16:"))
    # exp(x) overflows float16 from ln(65504 + 16) = ln(65520) (the rounding boundary to inf)
    assert f"{math.log(65520):.4g}" == "11.09" and "where max(x) >= 11.09 (exp overflow)" in naive
    # 10 values near 9: each exp(x) ~ 8100 is finite, their sum is not
    assert "overflow in 1 of 4 cells (offset 9; sum overflow)" in naive
    # exp(x) is 0 at or below ln(2^-25) (half the smallest subnormal 2^-24)
    assert f"0 at or below {math.log(2.0 ** -25):.4g}" in naive and "underflow in 1 of 4 cells" in naive
    assert stable.strip().startswith("softmax/stable float16: ok (max ") and "--details" in lines[-1]
    assert not any("┃" in ln for ln in lines)  # the tables only with --details
    # float32 steps (the default): exp overflows from ln(max_float32) ~ 88.72 on, and is 0 at or
    # below ln(2^-150) ~ -103.97 (float16 holds offsets 90 and -110)
    argv[argv.index("--offsets=-16,0,9,12")] = "--offsets=-16,0,12,90,-110"
    assert main(argv[:-2]) == 0
    naive = next(ln for ln in capsys.readouterr().out.splitlines() if "softmax/naive float16:" in ln)
    assert f"{math.log(float(np.finfo(np.float32).max) * (1 + 2.0 ** -24)):.4g}" == "88.72"
    assert "nan where max(x) >= 88.72 (exp overflow in float32)" in naive
    assert f"0 at or below {math.log(2.0 ** -150):.4g}" == "0 at or below -104"
    assert "nan in 1 of 5 cells (offset -110; underflow: exp(x) is subnormal in float32 below -87.34, " \
           "0 at or below -104" in naive
