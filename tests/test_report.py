import csv
import io
import json
import math
import shutil
import subprocess
import sys

import pytest

from numstab.cli import main
from numstab.commands.compare import run_compare
from numstab.results import CompareRun
from numstab.tables import CSV_FIELDS

GRID = ["--dtype", "float16", "--sizes", "2,30", "--offsets", "-18:18:7", "--trials", "2"]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "r"
    assert main(["report", *GRID, "--out", str(out), "--quiet"]) == 0
    return out


def test_files_written(report_dir):
    names = sorted(p.name for p in report_dir.iterdir())
    assert names == ["plots", "report.html", "report.md", "results.csv", "results.json"]
    pngs = list((report_dir / "plots").glob("*.png"))
    from numstab.functions import FUNCTIONS

    assert len(pngs) == 2 * len(FUNCTIONS)  # ulp and status plots for every function
    for p in pngs:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    md = (report_dir / "report.md").read_text()
    assert "## Verdict per implementation" in md and "11.09011071853" in md
    assert "(plots/float16_softmax_ulp.png)" in md


def test_json_and_csv_match_in_memory(report_dir):
    kw = dict(dtypes=["float16"], sizes="2,30", offsets="-18:18:7", trials=2)
    mem = run_compare(**kw)
    saved = CompareRun.from_dict(json.loads((report_dir / "results.json").read_text()))
    assert [r.to_dict() for r in saved.results] == [r.to_dict() for r in mem.results]
    assert saved.meta["seed"] == 0 and saved.meta["argv"][0] == "report"
    rows = list(csv.DictReader(io.StringIO((report_dir / "results.csv").read_text())))
    assert len(rows) == len(mem.results) and list(rows[0]) == list(CSV_FIELDS)
    for row, r in zip(rows, mem.results):
        assert (row["function"], row["impl"], float(row["offset"]), int(row["n"])) == \
            (r.function, r.impl, r.offset, r.n)
        assert row["status"] == r.status and int(row["nan"]) == r.count["nan"]
        mu = float(row["max_ulp"]) if row["max_ulp"] not in ("", "inf") else \
            (math.inf if row["max_ulp"] == "inf" else math.nan)
        assert mu == r.max_ulp or (math.isnan(mu) and math.isnan(r.max_ulp))


def test_from_json_rerenders_without_recomputing(report_dir, tmp_path, capsys):
    out = tmp_path / "again"
    assert main(["report", "--from", str(report_dir / "results.json"), "--out", str(out),
                 "--formats", "md,json,png", "--quiet"]) == 0
    assert (out / "results.json").read_text() == (report_dir / "results.json").read_text()
    assert (out / "report.md").read_text() == (report_dir / "report.md").read_text()


def test_newer_schema_refused(tmp_path, capsys):
    f = tmp_path / "r.json"
    f.write_text(json.dumps({"schema": "numstab.compare/6", "results": []}))
    assert main(["report", "--from", str(f), "--out", str(tmp_path / "o")]) == 2
    assert "newer than this numstab understands" in capsys.readouterr().err
    f.write_text(json.dumps({"schema": "other.thing/1"}))
    assert main(["report", "--from", str(f), "--out", str(tmp_path / "o")]) == 2
    f.write_text("{not json")
    assert main(["report", "--from", str(f), "--out", str(tmp_path / "o")]) == 2


def test_existing_dir_needs_force_and_bad_paths_fail_fast(tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["report", *GRID, "--out", str(out), "--formats", "md"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["report", *GRID, "--out", str(out), "--formats", "md", "--force"]) == 0
    assert (out / "keep.txt").exists() and (out / "report.md").exists()
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["report", *GRID, "--out", str(blocker / "sub")]) == 2
    assert main(["report", *GRID, "--out", str(tmp_path / "x"), "--formats", "md,pdf"]) == 2
    assert "unknown report format 'pdf'" in capsys.readouterr().err


def test_png_without_matplotlib_names_the_extra(tmp_path):
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from numstab.cli import main\n"
        f"a = main(['report', '--dtype', 'float16', '--sizes', '2', '--out', {str(tmp_path / 'p')!r}, "
        "'--formats', 'png'])\n"
        f"b = main(['report', '--dtype', 'float16', '--sizes', '2', '--out', {str(tmp_path / 'q')!r}, "
        "'--formats', 'md,json,csv,html', '--quiet'])\n"
        "sys.exit(a * 10 + b)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 20, p.stderr
    assert "pip install 'numstab[plots]'" in p.stderr
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())
    assert (tmp_path / "q" / "report.html").exists() and (tmp_path / "q" / "results.csv").exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _console_lines(url: str, tmp_path) -> tuple[str, list[str]]:
    p = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chrome'}", "--enable-logging=stderr", "--v=0", "--dump-dom", url],
        capture_output=True, text=True, timeout=120)
    return p.stdout, [ln for ln in p.stderr.splitlines() if ":CONSOLE" in ln]


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian package chromium; "
                    ".ci/run installs it when it can)")
def test_html_opens_in_headless_chromium_without_console_errors(report_dir, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>console.error('boom')</script></body></html>")
    _, lines = _console_lines(bad.as_uri(), tmp_path)
    assert any("boom" in ln for ln in lines)  # the check can fail
    dom, lines = _console_lines((report_dir / "report.html").as_uri(), tmp_path)
    assert lines == []
    from numstab.functions import FUNCTIONS

    assert dom.count("<img") == 2 * len(FUNCTIONS) and "data:image/png;base64," in dom
    assert "Verdict per implementation" in dom and "<table>" in dom


def test_plots_are_wide_and_the_html_explains_every_status_and_cause(tmp_path, capsys):
    """Issue 15: PNGs at least 1200 px wide; the HTML page has a legend row per status and cause."""
    import struct

    from numstab.results import CAUSE_MEANING, CAUSES, STATUS_MEANING, STATUSES

    out = tmp_path / "r"
    assert main(["report", "--dtype", "float16", "--function", "softmax", "--sizes", "2,10",
                 "--offsets", "-18,0,9,12", "--trials", "1", "--jobs", "1", "--quiet", "--out", str(out),
                 "--formats", "png,html"]) == 0
    pngs = sorted((out / "plots").glob("*.png"))
    assert pngs
    for p in pngs:
        head = p.read_bytes()[:24]  # PNG signature, IHDR length and type, then width and height
        assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
        width, height = struct.unpack(">II", head[16:24])
        assert width >= 1200, (p.name, width)
    page = (out / "report.html").read_text()
    for st in STATUSES:
        assert STATUS_MEANING[st] in page or STATUS_MEANING[st].replace("'", "&#x27;") in page
    for c in CAUSES:
        assert f"<td class=l>{c}</td>" in page and CAUSE_MEANING[c].split(" (")[0] in page


def test_report_pages_open_with_the_summary(tmp_path):
    """The report's Markdown and HTML open with the one-line-per-implementation summary."""
    out = tmp_path / "r"
    assert main(["report", "--dtype", "float16", "--function", "logsumexp", "--sizes", "2",
                 "--offsets", "8,12", "--trials", "1", "--jobs", "1", "--quiet", "--out", str(out),
                 "--formats", "md,html", "--compute", "format"]) == 0  # exp(12) overflows float16
    md = (out / "report.md").read_text()
    s, v = md.index("## Where each implementation breaks, and why"), md.index("## Verdict per implementation")
    assert s < v and "* **logsumexp/naive float16**: overflow where max(x) >= 11.09 (exp overflow)" in md[s:v]
    assert "* **logsumexp/stable float16**: ok (max " in md[s:v]
    page = (out / "report.html").read_text()
    assert page.index("Where each implementation breaks") < page.index("Verdict per implementation")
    assert "<b>logsumexp/naive float16</b>: overflow where max(x) &gt;= 11.09 (exp overflow)" in page


def test_figures_beyond_decimal_range_read_back():
    # a relative error against an exact value near exp(-1e20) is a finite figure whose exponent
    # Decimal cannot hold: written as its digits, it must read back (report --from) as the same figure
    from numstab.results import BigFigure, big_figure, jnum, unjnum

    for k, e in ((202, 316), (560, 10**12), (560, 10**20), (100, 3 * 10**19)):
        v = big_figure(k, e)
        back = unjnum(jnum(v))
        assert back == v and jnum(back) == jnum(v)
    assert isinstance(unjnum("5.6e+100000000000000000000"), BigFigure)
    assert unjnum("5.6e+100000000000000000000") > unjnum("9.99e+316")
