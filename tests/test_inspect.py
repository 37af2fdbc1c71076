import json

import numpy as np
import pytest

from numstab.cli import main
from numstab.commands.inspect import run_inspect
from tests.models import in_format  # the textbook model: --compute format


def cli_json(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def by_impl(data):
    return {r["impl"]: r for r in data["results"]}


def test_log_softmax_1000_1_float32(capsys):
    data = by_impl(cli_json(capsys, "inspect", "log_softmax", "--dtype", "float32", "--format", "json",
                            "--", "1000", "1"))
    for bad in ("naive", "log_of_stable"):
        assert data[bad]["outputs"][1] == "-inf"
    # naive: exp(1000) overflows, 1/inf = 0, then log(0): an overflow, not an underflow
    assert data["naive"]["element_status"] == ["nan", "overflow"]
    assert data["naive"]["element_cause"] == ["exp_overflow", "exp_overflow"]
    # log of stable: exp(-999) flushes to 0 in float32, then log(0) = -inf
    assert data["log_of_stable"]["element_status"][1] == "underflow"
    assert data["log_of_stable"]["element_cause"] == [None, "underflow"]
    assert "exp flushes to 0 in float32" in data["log_of_stable"]["verdict"]
    for good in ("stable", "log1p"):
        assert data[good]["outputs"] == [0.0, -999.0]
        assert data[good]["status"] == "ok"
    ref = data["stable"]["reference"]
    assert ref[0].startswith("-1.37978868332136968031") and ref[0].endswith("e-434")
    assert ref[1].startswith("-999.0")


def test_logsumexp_11_11_float16(capsys):
    # every step in float16: exp(11) + exp(11) overflows
    data = by_impl(cli_json(capsys, "inspect", "logsumexp", "--dtype", "float16", "--format", "json",
                            "--compute", "format", "--", "11", "11"))
    assert data["naive"]["status"] == "overflow" and data["naive"]["outputs"] == ["inf"]
    assert "overflow" in data["naive"]["flags"]
    assert data["stable"]["outputs"] == [11.6953125]
    assert data["stable"]["reference"][0].startswith("11.6931471805599453094")  # 11 + ln 2
    assert len(data["stable"]["reference"][0].replace(".", "")) >= 21


def test_single_impl_json_has_the_same_shape(capsys):
    top = cli_json(capsys, "inspect", "softmax", "--dtype", "float16", "--impl", "naive", "--format",
                   "json", "--compute", "format", "--", "12", "0")  # float16 steps: exp(12) overflows
    assert top["schema"] == "numstab.inspect/5" and set(top) == {"schema", "results"}
    (d,) = top["results"]
    assert d["impl"] == "naive"
    # exp(12) = inf in float16: inf/inf is NaN -- "nan", never null (null means no figure)
    assert d["outputs"] == ["nan", 0.0]
    assert d["status"] == "nan"
    assert "exp(12) overflows float16 (exp(x) is inf for x >= 11.0901)" in d["verdict"]
    assert d["element_cause"] == ["exp_overflow", "exp_overflow"] and d["cause_inferred"] is False
    for key in ("function", "dtype", "inputs", "reference", "ulp_error", "flags"):
        assert key in d


def test_table_output_has_verdicts(capsys):
    assert main(in_format(["inspect", "logsumexp", "--dtype", "float16", "--", "11", "11"])) == 0
    out = capsys.readouterr().out
    assert "verdict" in out and "11.6953125" in out and "overflows float16" in out


def test_batch_file_summary(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 8)) * 4 + 10
    f = tmp_path / "logits.npy"
    np.save(f, x)
    t = tmp_path / "t.txt"
    t.write_text("\n".join(str(i % 8) for i in range(50)))
    d = run_inspect("cross_entropy", input_file=str(f), targets_file=str(t), dtypes=["float16"],
                    compute="format")
    res = {r["impl"]: r for r in d["results"]}
    st = res["stable"]["counts"]
    assert st["nan"] == st["overflow"] == 0 and sum(st.values()) == 50
    # lse - x[target] cancels when the target dominates: a few inaccurate (or 0 where the exact
    # loss is tiny but nonzero: underflow), never NaN or inf
    assert st["ok"] >= 40
    assert res["naive"]["vectors_failing"] > 0 and res["naive"]["vectors"] == 50


def test_csv_input(tmp_path, capsys):
    f = tmp_path / "v.csv"
    f.write_text("1000, 1\n")
    (d,) = cli_json(capsys, "inspect", "log_softmax", "--input", str(f), "--impl", "stable", "--format",
                    "json")["results"]
    assert d["outputs"] == [0.0, -999.0]


@pytest.mark.parametrize("setup,argv,msg", [
    (None, ["inspect", "softmaks", "--", "1"], "unknown function 'softmaks'; did you mean 'softmax'"),
    (None, ["inspect", "softmax", "--", "1", "abc"], "'abc' (value 1) is not a number"),
    ("empty.csv", ["inspect", "softmax", "--input", "{f}"], "file is empty"),
    (None, ["inspect", "cross_entropy", "--target", "5", "--", "1", "2"], "target 5 is out of range"),
    (None, ["inspect", "cross_entropy", "--", "1", "2"], "needs --target"),
    ("cube.npy", ["inspect", "softmax", "--input", "{f}", "--axis", "3"], "--axis 3 is out of range"),
    ("cube.npy", ["inspect", "softmax", "--input", "{f}", "--key", "a"], "--key names an array"),
    ("ragged.txt", ["inspect", "softmax", "--input", "{f}"], "ragged rows"),
    ("words.txt", ["inspect", "softmax", "--input", "{f}"], "is not a number"),
    (None, ["inspect", "softmax", "--input", "/nonexistent.npy"], "no such file"),
    (None, ["inspect", "softmax", "--dtype", "float8_e4m3fn", "--", "1", "-inf"], "has no infinity"),
    (None, ["inspect", "softmax", "--masked-rows", "zero", "--", "1"], "unknown masked-rows policy 'zero'"),
    (None, ["inspect", "softmax", "--dtype", "float16", "--", "1", "1e6"], "does not fit float16"),
    (None, ["inspect", "softmax"], "give the values"),
])
def test_bad_input_exit_2(tmp_path, capsys, setup, argv, msg):
    f = tmp_path / (setup or "x")
    if setup == "empty.csv":
        f.write_text("")
    elif setup == "cube.npy":
        np.save(f, np.zeros((2, 2, 2)))
    elif setup == "ragged.txt":
        f.write_text("1 2 3\n4 5\n")
    elif setup == "words.txt":
        f.write_text("1 2 three\n")
    code = main([a.replace("{f}", str(f)) for a in argv])
    _, err = capsys.readouterr()
    assert code == 2
    assert msg in err, err
    assert err.count("\n") == 1


def test_float64_outputs_keep_every_digit_in_json_and_text(capsys):
    """A float64 output is shown with all its digits (shortest round-trip form), in JSON and text."""
    argv = ["inspect", "logsumexp", "--dtype", "float64", "--impl", "stable"]
    (d,) = cli_json(capsys, *argv, "--format", "json", "--", "0.1", "0.2")["results"]
    y = d["outputs"][0]
    # max + log(sum(exp(x - max))) in float64, step by step as the kernel does
    want = 0.2 + float(np.log(np.exp(0.1 - 0.2) + np.exp(0.0)))
    assert y == want and len(repr(y).replace(".", "").lstrip("0")) >= 16
    assert main([*argv, "--", "0.1", "0.2"]) == 0
    assert repr(want) in capsys.readouterr().out


def test_narrow_terminal_wraps_numbers_and_never_cuts_them(capsys):
    """At 60 columns a 25-digit exact value wraps inside its cell: no ellipsis, every digit kept."""
    from numstab.exporters.terminal import inspect_table

    data = run_inspect("log_softmax", values=["1000", "1"], dtypes=("float32",), impls=["stable"])
    ref = data["results"][0]["reference"][0]
    assert ref.startswith("-1.37978868332136968031") and ref.endswith("e-434")
    import io

    buf = io.StringIO()
    from numstab.exporters import terminal

    con = terminal.console(buf, width=60)
    orig = terminal.console
    terminal.console = lambda file=None, width=None: con
    try:
        inspect_table(data)
    finally:
        terminal.console = orig
    text = buf.getvalue()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 60
    rows = [line.split("│") for line in text.splitlines() if line.startswith("│")]
    exact_col = "".join(r[4].strip() for r in rows)
    assert ref in exact_col
