"""Hostile use: devices, signals, memory, misbehaving callables, pipes, validation gaps.

Each test is a reproducer of one defect of the hostile run (488 cases, 84 failures).
"""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from numstab.cli import main

ROOT = Path(__file__).resolve().parent.parent
EVIL = ROOT / "tests" / "data" / "evil_impls.py"
SMALL = ["--dtype", "float16", "--sizes", "2", "--jobs", "1", "-q"]


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def sub(*argv, timeout=60, env=None, **kw):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "numstab.cli", *map(str, argv)], capture_output=True,
                          timeout=timeout, cwd=ROOT, env=e, **kw)


def one_line_error(err: str, code: int, want: str = ""):
    assert code == 2, err
    assert err.startswith("numstab: error:") and err.count("\n") == 1 and "Traceback" not in err, err
    assert want.lower() in err.lower(), err


# ------------------------------------------------ 1. -o onto devices and special files
@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_output_onto_a_char_device_keeps_the_device(tmp_path, capsys):
    dev = tmp_path / "null"
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a copy of /dev/null
    code, _, err = cli(capsys, "compare", *SMALL, "-o", dev)
    assert code == 0, err
    assert stat.S_ISCHR(os.stat(dev).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["null"]  # no temp file either


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_output_to_dev_full_says_no_space(capsys):
    import stat

    if not stat.S_ISCHR(os.stat("/dev/full").st_mode):
        pytest.skip("/dev/full is not a character device on this machine")
    code, _, err = cli(capsys, "compare", *SMALL, "--format", "json", "-o", "/dev/full")
    one_line_error(err, code, "no space")


def test_output_to_dev_stdout_prints():
    p = sub("compare", *SMALL, "--format", "csv", "-o", "/dev/stdout")
    assert p.returncode == 0 and p.stdout.startswith(b"function,impl,dtype"), p.stderr


def test_output_to_a_fifo_without_reader_fails_fast(tmp_path, capsys):
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    code, _, err = cli(capsys, "compare", *SMALL, "-o", fifo)
    one_line_error(err, code, "no reader")


def test_output_keeps_permission_bits_and_refuses_trailing_slash(tmp_path, capsys):
    f = tmp_path / "x.json"
    f.write_text("old")
    f.chmod(0o600)
    code, _, err = cli(capsys, "compare", *SMALL, "--format", "json", "-o", f)
    assert code == 0, err
    assert stat.S_IMODE(f.stat().st_mode) == 0o600 and json.loads(f.read_text())
    code, _, err = cli(capsys, "compare", *SMALL, "-o", str(tmp_path / "y.json") + "/")
    one_line_error(err, code, "cannot end with '/'")
    assert not (tmp_path / "y.json").exists()


# ------------------------------------------------ 2. SIGTERM / SIGHUP
def _children(pid):
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")
@pytest.mark.parametrize("sig,argv", [
    (signal.SIGTERM, ["report", "--jobs", "2", "--formats", "md,json"]),
    (signal.SIGHUP, ["report", "--jobs", "1", "--formats", "md,json"]),
    (signal.SIGTERM, ["compare", "--jobs", "1", "--format", "json", "-o", "OUT/x.json"]),
])
def test_term_and_hup_stop_workers_and_leave_nothing(tmp_path, sig, argv):
    out = tmp_path / "rep"
    argv = [a.replace("OUT", str(tmp_path)) for a in argv]
    if argv[0] == "report":
        argv += ["--out", str(out)]
    grid = ["--dtype", "float16", "--sizes", "1000", "--offsets", "0:1:2000", "-q"]
    p = subprocess.Popen([sys.executable, "-m", "numstab.cli", *argv, *grid], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 20
    want_workers = "--jobs" in argv and argv[argv.index("--jobs") + 1] == "2"
    while time.time() < deadline and (want_workers and len(_children(p.pid)) < 2 or
                                      not want_workers and time.time() < deadline - 18.5):
        time.sleep(0.1)
    kids = _children(p.pid)
    assert not want_workers or len(kids) >= 2
    p.send_signal(sig)
    _, err = p.communicate(timeout=30)  # returns only when nobody holds the pipes any more
    assert p.returncode == 2 and "interrupted by" in err.decode() and err.count(b"\n") == 1, err
    time.sleep(0.2)
    assert not [k for k in kids if _alive(k)]
    assert list(tmp_path.iterdir()) == []  # no temp file, no staging directory, no empty report dir
    if argv[0] == "report":  # and the rerun is not blocked
        r = sub("report", "--dtype", "float16", "--sizes", "2", "--formats", "md", "--out", out)
        assert r.returncode == 0, r.stderr


def test_force_replaces_the_previous_report_whole(tmp_path, capsys):
    out = tmp_path / "r"
    (out / "plots").mkdir(parents=True)
    (out / "plots" / "float32_softmax.png").write_bytes(b"old")
    (out / "results.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    code, _, err = cli(capsys, "report", *SMALL, "--out", out, "--formats", "md", "--force")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "report.md"]  # stale files gone
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


def test_disk_full_during_force_keeps_the_old_report(tmp_path, capsys, monkeypatch):
    import errno

    import numstab.commands.report as report

    out = tmp_path / "r"
    assert cli(capsys, "report", *SMALL, "--out", out, "--formats", "md,json")[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = []

    def full(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report.os, "fsync", full)
    code, _, err = cli(capsys, "report", *SMALL, "--out", out, "--formats", "md,json,csv", "--force")
    one_line_error(err, code, "no space left")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


def test_failed_report_leaves_no_directory(tmp_path, capsys, monkeypatch):
    import numstab.exporters.markdown as markdown

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(markdown, "report_stream", boom)
    out = tmp_path / "r"
    code, _, err = cli(capsys, "report", *SMALL, "--out", out, "--formats", "json,md")
    assert code == 2 and list(tmp_path.iterdir()) == []


# ------------------------------------------------ 3. memory
def test_huge_grid_is_refused_before_starting():
    t = time.time()
    # the grid: 10M offsets x 2 default spreads x 3 trials x n = 2 is 120M input elements per format
    p = sub("compare", "--offsets", "0:1:10000000", "--sizes", "2", timeout=60)
    err = p.stderr.decode()
    assert p.returncode == 2 and "120,000,000 input elements per format" in err and err.count("\n") == 1, err
    p = sub("compare", "--offsets", "0:1:30000000", "--sizes", "2", "--trials", "1", timeout=60)
    err = p.stderr.decode()
    assert p.returncode == 2 and "above the limit of 20,000,000" in err and err.count("\n") == 1, err
    # 200,000 offsets now fit in 8 GB (columnar cells, spilled past 256 MB), not in 300 MB
    p = sub("compare", "--offsets", "0:1:200000", "--sizes", "2", "--trials", "1", timeout=60,
            env={"NUMSTAB_MEMORY_LIMIT": "300M"})
    err = p.stderr.decode()
    assert p.returncode == 2 and "memory" in err and "limit" in err and err.count("\n") == 1, err
    assert time.time() - t < 20


def test_memory_limit_names_the_limit_and_the_way_out(capsys, monkeypatch):
    monkeypatch.setenv("NUMSTAB_MEMORY_LIMIT", "100M")
    code, _, err = cli(capsys, "compare", "--dtype", "float16", "--sizes", "1000", "--offsets", "0:1:100")
    one_line_error(err, code, "NUMSTAB_MEMORY_LIMIT")
    assert "use fewer" in err
    code, _, err = cli(capsys, "audit", "--function", "softmax", "--impl", "stable", "--sizes", "1000",
                       "--offsets", "0:1:100")
    one_line_error(err, code, "memory")
    np.save(Path(os.environ.get("TMPDIR", "/tmp")) / f"numstab_mem_{os.getpid()}.npy", np.zeros(60_000))
    code, _, err = cli(capsys, "inspect", "softmax", "--input",
                       Path(os.environ.get("TMPDIR", "/tmp")) / f"numstab_mem_{os.getpid()}.npy")
    one_line_error(err, code, "memory")


def test_text_and_npy_inputs_are_bounded_before_reading(tmp_path, capsys, monkeypatch):
    import numstab.inputs as inputs

    monkeypatch.setattr(inputs, "MAX_TEXT_BYTES", 1000)
    (tmp_path / "big.csv").write_text("1 2\n" * 400)
    code, _, err = cli(capsys, "inspect", "softmax", "--input", tmp_path / "big.csv")
    one_line_error(err, code, "above the limit")
    monkeypatch.setattr(inputs, "MAX_INPUT_ELEMENTS", 10)
    np.save(tmp_path / "big.npy", np.zeros(11))
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("loaded before checking the size"))
    code, _, err = cli(capsys, "inspect", "softmax", "--input", tmp_path / "big.npy")
    one_line_error(err, code, "11 values, above the limit")


@pytest.mark.parametrize("dev", ["/dev/zero", "/dev/urandom"])
def test_devices_are_not_read(capsys, dev):
    if not os.path.exists(dev):
        pytest.skip(dev)
    code, _, err = cli(capsys, "inspect", "softmax", "--input", dev)
    one_line_error(err, code, "not a regular file")


@pytest.mark.slow
def test_memory_estimate_bounds_the_real_peak(tmp_path):
    """A run's measured peak RSS stays below numstab's estimate (the refusal is conservative)."""
    from numstab.limits import compare_bytes

    code = ("import resource, sys; from numstab.cli import main; rc = main(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)")
    argv = ["compare", "--dtype", "float16", "--sizes", "1000", "--offsets", "0:1:300", "--jobs", "1",
            "--format", "json", "-o", str(tmp_path / "x.json")]
    p = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, timeout=300, cwd=ROOT)
    peak = int(p.stdout.split()[-1])
    est = compare_bytes([300 * 3 * 1000], 300, 37, 1, call_elements=1 << 16, task_cells=1 << 14)
    assert peak < est, (peak, est)


# ------------------------------------------------ 4./5. callables that misbehave
def _audit(capsys, *names, fn="softmax", extra=()):
    argv = ["audit", "--function", fn, "--dtype", "float16", "--sizes", "4", "--format", "json",
            *extra]
    for n in names:
        argv += ["--callable", f"{EVIL}:{n}"]
    code, out, err = cli(capsys, *argv)
    return code, json.loads(out) if out.strip() else None, err


def test_a_callable_writing_its_input_is_a_finding_and_harms_no_one(capsys):
    code, rep, err = _audit(capsys, "good")
    honest = rep["results"][0]["max_ulp"]
    code, rep, err = _audit(capsys, "writer", "good", "sneaky")
    assert code == 1
    w, g, s = rep["results"]
    assert not w["passed"] and "writer tried to write into its input" in w["reasons"][0]
    assert not s["passed"] and "sneaky wrote into its input" in s["reasons"][0]
    assert g["passed"] and g["max_ulp"] == honest


def test_a_callable_changing_target_does_not_move_the_reference(capsys):
    code, rep, _ = _audit(capsys, "target_writer", "good_ce", fn="cross_entropy")
    assert code == 1
    w, g = rep["results"]
    assert "target_writer" in w["reasons"][0] and "target" in w["reasons"][0]
    code2, rep2, _ = _audit(capsys, "good_ce", fn="cross_entropy")
    assert g == rep2["results"][0]


@pytest.mark.parametrize("name,reason", [
    ("exit0", "called sys.exit(0)"), ("exit3", "called sys.exit(3)"), ("base", "raised Boom: boom"),
    ("osexit", "exit status 5"), ("segv", "crashed (SIGSEGV)"), ("close1", None), ("printer", None),
])
def test_callables_that_exit_crash_or_print(name, reason):
    p = sub("audit", "--function", "softmax", "--dtype", "float16", "--sizes", "4", "--format", "json",
            "--callable", f"{EVIL}:{name}")
    rep = json.loads(p.stdout)  # stdout stays clean JSON, whatever the callable prints
    if reason is None:
        assert p.returncode == 0 and rep["passed"], p.stderr
    else:
        assert p.returncode == 1 and reason in rep["results"][0]["reasons"][0], (p.stdout, p.stderr)
        assert "Traceback" not in p.stderr.decode()
    if name == "printer":
        assert b"hello from the callable" in p.stderr and b"raw write" in p.stderr


def test_timeout_stops_a_callable_that_never_returns(tmp_path, capsys):
    t = time.time()
    code, rep, _ = _audit(capsys, "hang", extra=("--timeout", "0.5"))
    assert code == 1 and "did not return within 0.5 s" in rep["results"][0]["reasons"][0]
    (tmp_path / "numstab.toml").write_text(
        f'[[audit]]\nfunction = "softmax"\ncallable = "{EVIL}:hang"\ndtypes = ["float16"]\n'
        'sizes = "2"\ntimeout = 0.5\n')
    code, out, _ = cli(capsys, "audit", "--config", tmp_path / "numstab.toml", "--format", "json")
    assert code == 1 and "did not return" in out
    assert time.time() - t < 15
    for bad in ("0", "-1", "nan", "inf"):
        code, _, err = cli(capsys, "audit", "--function", "softmax", "--impl", "stable", "--timeout", bad)
        one_line_error(err, code, "--timeout")


@pytest.mark.parametrize("mod", ["exit_at_import", "base_at_import"])
def test_callable_module_exiting_at_import_is_a_usage_error(tmp_path, mod):
    (tmp_path / f"{mod}.py").write_text(
        "import sys\nprint('noise')\n" + ("sys.exit(0)\n" if mod == "exit_at_import"
                                            else "class B(BaseException): pass\nraise B('x')\n"))
    p = sub("audit", "--function", "softmax", "--dtype", "float16", "--sizes", "2", "--format", "json",
            "--callable", f"{tmp_path / mod}.py:f")
    err = p.stderr.decode()
    assert p.returncode == 2 and p.stdout == b"" and "cannot import" in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("numstab: error:")


# ------------------------------------------------ 6. broken pipe
BIG = {
    "compare-table": ["compare", "--dtype", "float16", "--sizes", "2", "--offsets", "-10:10:200",
                      "--details"],
    "compare-html": ["compare", "--dtype", "float16", "--sizes", "2", "--offsets", "-10:10:100",
                     "--format", "html"],
    "compare-json": ["compare", "--dtype", "float16", "--sizes", "2", "--format", "json"],
    "compare-csv": ["compare", "--dtype", "float16", "--sizes", "2", "--offsets", "-10:10:60",
                    "--format", "csv"],
    "compare-markdown": ["compare", "--dtype", "float16", "--sizes", "2", "--offsets", "-10:10:300",
                         "--format", "markdown"],
    "inspect-table": ["inspect", "softmax", "--dtype", "float16", "--input", "V"],
    "inspect-json": ["inspect", "softmax", "--dtype", "float16", "--input", "V", "--format", "json"],
    "thresholds-table": ["thresholds"],
    "thresholds-json": ["thresholds", "--format", "json"],
    "audit-table": ["audit", "--function", "softmax", "--impl", "stable", "--dtype", "float16",
                    "--sizes", "2"],
    "audit-json": ["audit", "--function", "softmax", "--impl", "stable", "--dtype", "float16", "--sizes", "2",
                   "--format", "json"],
}


def test_broken_pipe_exits_0_for_every_command_and_format(tmp_path):
    """`... | head -c 100` (output above the 64 KB pipe buffer) and `... | true` (reader gone first)."""
    vec = tmp_path / "v.txt"
    vec.write_text(" ".join(str(i % 7) for i in range(600)) + "\n")
    procs = []
    for name, argv in BIG.items():
        argv = [str(vec) if a == "V" else a for a in argv] + (["--jobs", "1", "-q"] if argv[0] == "compare"
                                                               else [])
        for mode in ("head", "true"):
            p = subprocess.Popen([sys.executable, "-m", "numstab.cli", *argv], cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if mode == "true":
                p.stdout.close()
            procs.append((name, mode, p))
    sizes = {}
    for name, mode, p in procs:
        if mode == "head":
            p.stdout.read(100)
            p.stdout.close()
        err = p.stderr.read().decode()
        assert p.wait(timeout=120) == 0 and err == "", (name, mode, p.returncode, err)
    for name, argv in BIG.items():
        if name.startswith(("compare", "inspect")) and name != "compare-html":
            argv = [str(vec) if a == "V" else a for a in argv]
            sizes[name] = len(sub(*argv, *(["--jobs", "1", "-q"] if argv[0] == "compare" else [])).stdout)
    assert min(sizes.values()) > 65536, sizes


# ------------------------------------------------ 7. validation gaps
@pytest.mark.parametrize("argv,want", [
    (["inspect", "softmax", "--tolerance", "-1", "--", "1", "2"], "--tolerance"),
    (["inspect", "softmax", "--tolerance", "nan", "--", "1", "2"], "--tolerance"),
    (["audit", "--function", "softmax", "--impl", "naive", "--tolerance", "-1"], "--tolerance"),
    (["audit", "--function", "softmax", "--impl", "naive", "--tolerance", "nan", "--fail-on", "inaccurate"],
     "--tolerance"),
    (["compare", "--tolerance", "nan"], "--tolerance"),
    (["audit", "--function", "softmax", "--impl", "naive", "--fail-on", ""], "--fail-on is empty"),
    (["audit", "--function", "softmax", "--impl", "naive", "--fail-on", ","], "--fail-on is empty"),
])
def test_validation_is_the_same_everywhere(capsys, argv, want):
    code, _, err = cli(capsys, *argv)
    one_line_error(err, code, want)


@pytest.mark.parametrize("line,want", [
    ("fail_on = []", "'fail_on' is empty"), ('target = "x"', "'target'"), ("tolerance = nan", "'tolerance'"),
    ("tolerance = -1", "'tolerance'"), ("input = 5", "'input'"), ('timeout = "soon"', "'timeout'"),
])
def test_config_validation(tmp_path, capsys, line, want):
    cfg = tmp_path / "numstab.toml"
    cfg.write_text(f'[[audit]]\nfunction = "softmax"\nimpl = "naive"\ndtypes = ["float16"]\n{line}\n')
    code, _, err = cli(capsys, "audit", "--config", cfg)
    one_line_error(err, code, want)


# ------------------------------------------------ 8. bad input is not an internal error
def test_bad_files_are_one_line_errors(tmp_path, capsys, monkeypatch):
    (tmp_path / "trunc.npz").write_bytes(b"PK\x03\x04garbage")
    (tmp_path / "notzip.npz").write_bytes(b"hello")
    for f in ("trunc.npz", "notzip.npz"):
        code, _, err = cli(capsys, "inspect", "softmax", "--input", tmp_path / f)
        one_line_error(err, code, "cannot read")
    cfg = tmp_path / "a.toml"
    for text in ("audit = 5\n", "[[audit]]\nfunction = 'softmax'\nimpl='naive'\ninput = 5\n",
                 "audit = [1]\n"):
        cfg.write_text(text)
        code, _, err = cli(capsys, "audit", "--config", cfg)
        one_line_error(err, code)
    real_open = open

    def no_perm(path, *a, **k):
        if str(path).endswith(("a.toml", "v.csv")):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *a, **k)

    (tmp_path / "v.csv").write_text("1 2\n")
    monkeypatch.setattr("builtins.open", no_perm)
    code, _, err = cli(capsys, "audit", "--config", cfg)
    one_line_error(err, code, "permission denied")
    code, _, err = cli(capsys, "inspect", "softmax", "--input", tmp_path / "v.csv")
    one_line_error(err, code, "permission denied")


def test_input_in_an_unsearchable_directory(tmp_path, capsys, monkeypatch):
    import numstab.inputs as inputs

    def stat_denied(p, *a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(inputs.os, "stat", stat_denied)
    code, _, err = cli(capsys, "inspect", "softmax", "--input", tmp_path / "locked" / "x.npy")
    one_line_error(err, code, "permission denied")


@pytest.mark.parametrize("mutate", ["counts_list", "unknown_function", "meta_list", "nan_token", "deep",
                                    "results_dict", "bad_status"])
def test_hostile_report_from(tmp_path, capsys, mutate):
    src = tmp_path / "src"
    assert cli(capsys, "report", *SMALL, "--out", src, "--formats", "json")[0] == 0
    text = (src / "results.json").read_text()
    d = json.loads(text)
    if mutate == "counts_list":
        d["results"][0]["counts"] = [1, 2]
    elif mutate == "unknown_function":
        d["results"][0]["function"] = "bogus"
    elif mutate == "meta_list":
        d["meta"] = [1]
    elif mutate == "results_dict":
        d["results"] = {"a": 1}
    elif mutate == "bad_status":
        d["results"][0]["status"] = "fine"
    bad = tmp_path / "bad.json"
    if mutate == "nan_token":
        bad.write_text(text.replace('"max_ulp":0.0', '"max_ulp":NaN', 1).replace('"max_ulp":"inf"',
                                                                                '"max_ulp":Infinity', 1))
    elif mutate == "deep":
        bad.write_text("[" * 100000 + "]" * 100000)
    else:
        bad.write_text(json.dumps(d))
    code, _, err = cli(capsys, "report", "--from", bad, "--out", tmp_path / "out")
    one_line_error(err, code)
    assert not (tmp_path / "out").exists()


def test_non_utf8_out_name_is_refused_without_a_partial_report(tmp_path):
    out = os.fsencode(tmp_path) + b"/rep\xff"
    p = subprocess.run([sys.executable, "-m", "numstab.cli", "report", "--dtype", "float16", "--sizes", "2",
                        "--formats", "md,json", "--out", out], capture_output=True, cwd=ROOT, timeout=60)
    err = p.stderr.decode()
    assert p.returncode == 2 and err.startswith("numstab: error:") and err.count("\n") == 1, err
    assert os.listdir(tmp_path) == []


# ------------------------------------------------ 9. numpy warnings
def test_no_numpy_warnings_on_stderr(tmp_path):
    a = np.array([np.longdouble("1e4000"), 1], dtype=np.longdouble)
    if np.finfo(np.longdouble).max <= np.finfo(np.float64).max:
        pytest.skip("long double is no wider than double here")
    np.save(tmp_path / "wide.npy", a)
    p = sub("inspect", "softmax", "--input", tmp_path / "wide.npy")
    err = p.stderr.decode()
    assert p.returncode == 2 and err.count("\n") == 1 and "Warning" not in err and "fit float64" in err, err
    p = sub("compare", "--dtype", "float16", "--sizes", "2", "--offsets=-1e308:1e308:3")
    err = p.stderr.decode()
    assert p.returncode == 2 and err.count("\n") == 1 and "Warning" not in err, err
    assert "do not fit float16" in err and "finite" not in err
    p = sub("compare", "--dtype", "float64", "--function", "softmax", "--impl", "stable", "--sizes", "2",
            "--offsets=-1e308:1e308:3", "--format", "json")
    assert p.returncode == 0 and p.stderr == b"", p.stderr


# ------------------------------------------------ 10. FIFOs and duplicates
def test_fifo_input_does_not_hang(tmp_path):
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    p = sub("inspect", "softmax", "--input", fifo, timeout=20)
    err = p.stderr.decode()
    assert p.returncode == 2 and "FIFO" in err and err.count("\n") == 1, err


def test_duplicates_are_computed_and_reported_once(capsys):
    code, out, _ = cli(capsys, "compare", "--dtype", "float16", "--dtype", "float16", "--function", "softmax",
                       "--function", "softmax", "--offsets", "1,1,1", "--spreads", "1,1", "--sizes", "2,2",
                           "--format", "json",
                       "--jobs", "1")
    d = json.loads(out)
    assert code == 0 and len(d["results"]) == 4 and len(d["thresholds"]) == 1  # 4 softmax impls, 1 cell
    assert d["meta"]["grids"]["float16"]["offsets"] == [1.0] and d["meta"]["grids"]["float16"]["sizes"] == [2]
    code, out, _ = cli(capsys, "audit", "--function", "softmax", "--impl", "stable", "--impl", "stable",
                       "--dtype", "float16", "--dtype", "float16", "--sizes", "2", "--format", "json")
    assert code == 0 and len(json.loads(out)["results"]) == 1
    code, out, _ = cli(capsys, "inspect", "softmax", "--dtype", "float16", "--dtype", "float16", "--impl",
                       "stable", "--format", "json", "--", "1", "2")
    assert code == 0 and [r["impl"] for r in json.loads(out)["results"]] == ["stable"]
