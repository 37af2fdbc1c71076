"""Streaming (issue 16, items 3-5): inputs evaluated a block of rows at a time, in worker
processes or on a Dask cluster, give exactly the figures of one pass."""

import json

import numpy as np
import pytest

from numstab.cli import main


def run(capsys, *argv, block=None, monkeypatch=None):
    if block is not None:
        monkeypatch.setenv("NUMSTAB_BLOCK", str(block))
    elif monkeypatch is not None:
        monkeypatch.delenv("NUMSTAB_BLOCK", raising=False)
    # every step in float16 (--compute format): the failing rows and worst rows compared between a
    # blocked and a one-pass run come from float16 arithmetic (float32 steps leave few to compare)
    argv = [str(a) for a in argv]
    if argv and argv[0] in ("audit", "inspect") and "--compute" not in argv:
        argv = [argv[0], "--compute", "format", *argv[1:]]
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def record(out: str) -> dict:
    data = json.loads(out)
    data.get("meta", {}).pop("argv", None)  # the command line itself differs (-j)
    return data


def one_line_error(err: str, code: int, want: str = ""):
    assert code == 2, err
    assert err.startswith("numstab: error:") and err.count("\n") == 1 and "Traceback" not in err, err
    assert want.lower() in err.lower(), err


@pytest.fixture(scope="module")
def logits(tmp_path_factory):
    """(batch 3, seq 7, vocab 40) float32 logits: N(0, 3), a few outliers, masked entries, a fully
    masked row; 21 vectors, so a block of 100 elements holds 2 of them."""
    rng = np.random.default_rng(7)
    x = rng.normal(0, 3, (3, 7, 40)).astype(np.float32)
    x[0, 2, 5] = 25.0
    x[1, 4, :] += 11.0  # naive exp overflows in float16 here
    x[2, 1, :10] = -np.inf
    x[2, 6, :] = -np.inf
    d = tmp_path_factory.mktemp("stream")
    np.save(d / "logits.npy", x)
    return d / "logits.npy", x


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_inspect_chunked_equals_one_pass(capsys, monkeypatch, logits, jobs):
    path, _ = logits
    argv = ["inspect", "log_softmax", "--input", path, "--dtype", "float16", "--dtype", "bfloat16",
            "--top", "4", "--format", "json"]
    code, whole, err = run(capsys, *argv, "--jobs", "1", block=None, monkeypatch=monkeypatch)
    assert code == 0, err
    code, chunked, err = run(capsys, *argv, "--jobs", jobs, block=100, monkeypatch=monkeypatch)
    assert code == 0, err
    assert record(chunked) == record(whole)
    res = record(whole)["results"]
    assert {r["vectors"] for r in res} == {21} and res[0]["shape"] == [3, 7, 40]
    assert res[0]["masked_rows_returned"]["nan"] == 1  # the fully masked row (2, 6)


def test_audit_chunked_equals_one_pass_with_targets(capsys, monkeypatch, logits, tmp_path):
    path, x = logits
    targets = np.random.default_rng(3).integers(0, 40, 21)
    np.save(tmp_path / "t.npy", targets)
    argv = ["audit", "--function", "cross_entropy", "--impl", "stable", "--impl", "log1p",
            "--impl", "naive", "--input", path, "--targets", tmp_path / "t.npy", "--dtype", "float16",
            "--max-ulp", "8", "--top", "3", "--format", "json"]
    code1, whole, err = run(capsys, *argv, "--jobs", "1", monkeypatch=monkeypatch)
    assert code1 == 1, err
    code2, chunked, err = run(capsys, *argv, "--jobs", "2", block=60, monkeypatch=monkeypatch)
    assert code2 == 1, err
    assert record(chunked) == record(whole)
    naive = next(r for r in record(whole)["results"] if r["impl"] == "naive")
    # independently: the naive softmax overflows in float16 in every row whose max reaches
    # ln(65504 + 16) = 11.0901... (exp rounds to inf there): those rows' losses are NaN or inf
    x16 = x.astype(np.float16).astype(np.float64).reshape(21, 40)
    finite = np.isfinite(x16).any(axis=1)
    overflowing = int(np.sum(np.max(np.where(np.isfinite(x16), x16, -np.inf), axis=1) >= 11.0901107))
    assert overflowing >= 1
    c = naive["counts"]
    assert c["nan"] + c["overflow"] >= overflowing and sum(c.values()) == 21 and finite.sum() == 20
    assert naive["first_failure"]["status"] in ("nan", "overflow")


def test_grid_audit_in_blocks_equals_one_pass(capsys, monkeypatch):
    argv = ["audit", "--function", "softmax", "--impl", "naive", "--impl", "stable", "--dtype", "float16",
            "--sizes", "2,10", "--offsets", "-20:20:9", "--format", "json"]
    code, whole, err = run(capsys, *argv, "--jobs", "1", monkeypatch=monkeypatch)
    code2, chunked, err2 = run(capsys, *argv, "--jobs", "2", block=7, monkeypatch=monkeypatch)
    assert code == code2 == 1, err + err2
    assert record(chunked) == record(whole)


def test_cotangent_stream_is_the_one_pass_stream(capsys, monkeypatch, tmp_path):
    """The backward passes' normal cotangents are drawn for the whole batch as one stream; each
    chunk starts from the stream's state at its first row."""
    x = np.random.default_rng(1).normal(0, 4, (9, 6))
    np.save(tmp_path / "x.npy", x)
    argv = ["inspect", "log_softmax_backward", "--cotangent", "normal", "--input", tmp_path / "x.npy",
            "--dtype", "float16", "--format", "json", "--top", "9"]
    _, whole, _ = run(capsys, *argv, monkeypatch=monkeypatch)
    _, chunked, _ = run(capsys, *argv, block=12, monkeypatch=monkeypatch)
    assert record(chunked) == record(whole)
    rng = np.random.default_rng([0, 6, 13])
    draws = np.concatenate([rng.standard_normal((2, 6)), rng.standard_normal((7, 6))])
    assert np.array_equal(draws, np.random.default_rng([0, 6, 13]).standard_normal((9, 6)))


def test_merged_summary_is_engine_summarize():
    """stream.Part's figures from counts and a histogram equal engine.summarize over the batch,
    medians of even counts included."""
    from numstab.engine import evaluate, select_impls, summarize
    from numstab.formats import get_format
    from numstab.stream import Chunk, Job, Partial, _part

    fmt = get_format("float16")
    rng = np.random.default_rng(5)
    x = fmt.round(rng.normal(0, 6, (30, 16)))
    impls = select_impls(["softmax"], None)
    outs, ref, _ = evaluate(fmt, x, {}, impls)
    job = Job("softmax", "float16", ())
    for o in outs:
        want = summarize(o)
        parts = []
        for a in range(0, 30, 7):  # the same outcome cut into pieces, merged
            sub = type(o)(o.impl, y=o.y[a:a + 7], flags=o.flags, ulp=o.ulp[a:a + 7], rel=o.rel[a:a + 7],
                          status=o.status[a:a + 7], cause=o.cause[a:a + 7], inferred=o.inferred)
            parts.append(Partial([_part(fmt, job, Chunk(job, a), sub, x[a:a + 7], x[a:a + 7], {}, ref, None,
                                        None)]))
        acc = parts[0]
        for p in parts[1:]:
            acc.merge(p, 0)
        got = acc.parts[0].summary()
        assert json.dumps(got, default=str) == json.dumps(want, default=str), o.impl.name


def test_shards_are_one_input(capsys, monkeypatch, tmp_path, logits):
    """Shards matched by a glob: one batch, the rows of each file in turn; the worst rows name
    their file; the figures are those of the concatenated file."""
    _, x = logits
    rows = x.reshape(21, 40)
    (tmp_path / "sh").mkdir()
    np.save(tmp_path / "sh" / "part-0.npy", rows[:8])
    np.save(tmp_path / "sh" / "part-1.npy", rows[8:])
    np.save(tmp_path / "all.npy", rows)
    argv = ["--dtype", "float16", "--format", "json", "--top", "3"]
    code, one, err = run(capsys, "inspect", "softmax", "--input", tmp_path / "all.npy", *argv,
                         monkeypatch=monkeypatch)
    assert code == 0, err
    code, sh, err = run(capsys, "inspect", "softmax", "--input", str(tmp_path / "sh" / "*.npy"), *argv,
                        block=90, monkeypatch=monkeypatch)
    assert code == 0, err
    for a, b in zip(record(one)["results"], record(sh)["results"]):
        shards = b.pop("shards")
        assert [s["shape"] for s in shards] == [[8, 40], [13, 40]]
        a.pop("shape")
        for wa, wb in zip(a["worst"], b["worst"]):
            r = wa["row"][0]
            assert wb["file"].endswith("part-0.npy" if r < 8 else "part-1.npy")
            assert wb["row"] == [r if r < 8 else r - 8]
            for k in ("row", "index"):
                wa.pop(k), wb.pop(k)
            wb.pop("file")
        assert a == b


def test_bad_shards_and_scheduler_are_one_line(capsys, monkeypatch, tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 3)))
    np.save(tmp_path / "b.npy", np.zeros((2, 4)))
    code, _, err = run(capsys, "inspect", "softmax", "--input", str(tmp_path / "*.npy"))
    one_line_error(err, code, "different lengths")
    code, _, err = run(capsys, "inspect", "softmax", "--input", str(tmp_path / "none-*.npy"))
    one_line_error(err, code, "no file matches")
    try:
        import distributed  # noqa: F401
    except ImportError:
        code, _, err = run(capsys, "inspect", "softmax", "--input", tmp_path / "a.npy", "--scheduler",
                           "tcp://127.0.0.1:1")
        one_line_error(err, code, "pip install 'numstab[dask]'")


def test_a_row_too_long_for_memory_is_refused_before_any_work(capsys, monkeypatch, tmp_path):
    np.save(tmp_path / "long.npy", np.zeros((2, 300_000), dtype=np.float32))
    monkeypatch.setenv("NUMSTAB_MEMORY_LIMIT", "300M")
    code, _, err = run(capsys, "audit", "--function", "softmax", "--impl", "stable", "--input",
                       tmp_path / "long.npy", "--dtype", "float16")
    one_line_error(err, code, "a vector is evaluated whole")


def test_files_above_the_whole_read_limit_are_streamed(capsys, monkeypatch, tmp_path):
    """The count limit of inputs read whole does not apply to .npy batches read in blocks."""
    import numstab.inputs as inputs

    monkeypatch.setattr(inputs, "MAX_INPUT_ELEMENTS", 100)
    x = np.random.default_rng(0).normal(0, 2, (30, 10))
    np.save(tmp_path / "x.npy", x)
    code, out, err = run(capsys, "inspect", "softmax", "--impl", "stable", "--input", tmp_path / "x.npy",
                         "--dtype", "float16", "--format", "json", block=50, monkeypatch=monkeypatch)
    assert code == 0, err
    assert json.loads(out)["results"][0]["vectors"] == 30
    np.savez(tmp_path / "x.npz", x=x)  # an .npz member is read whole: the limit holds
    code, _, err = run(capsys, "inspect", "softmax", "--input", tmp_path / "x.npz")
    one_line_error(err, code, "above the limit")


def test_dask_cluster_gives_the_local_result(capsys, monkeypatch, logits, tmp_path):
    """The same chunk function on a distributed.LocalCluster: merged results identical to local."""
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed "
                                      "(pip install 'numstab[dask]')")
    path, x = logits
    rows = x.reshape(21, 40)
    np.save(tmp_path / "s0.npy", rows[:10])
    np.save(tmp_path / "s1.npy", rows[10:])
    argv = ["audit", "--function", "log_softmax", "--impl", "stable", "--impl", "log_of_stable",
            "--input", str(tmp_path / "s*.npy"), "--dtype", "float16", "--format", "json", "--top", "3"]
    code, local, err = run(capsys, *argv, "--jobs", "1", block=80, monkeypatch=monkeypatch)
    assert code == 1, err
    with distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        code2, remote, err2 = run(capsys, *argv, "--scheduler", cluster.scheduler_address, block=80,
                                  monkeypatch=monkeypatch)
    assert code2 == 1, err2
    want, got = record(local), record(remote)
    assert got["results"] == want["results"]
    assert len(want["results"][0]["worst"]) == 3 and "file" in want["results"][0]["worst"][0]


def test_callable_in_worker_processes_equals_one_pass(capsys, monkeypatch, logits, tmp_path):
    """A user callable (a black box, not picklable in general) runs in the forked workers too."""
    path, _ = logits
    (tmp_path / "mysm.py").write_text(
        "import numpy as np\n"
        "def softmax(x):\n"
        "    e = np.exp(x)\n"
        "    return (e / e.sum(axis=-1, keepdims=True)).astype(x.dtype)\n")
    argv = ["audit", "--function", "softmax", "--callable", f"{tmp_path / 'mysm.py'}:softmax",
            "--input", path,
            "--dtype", "float16", "--format", "json"]
    code, whole, err = run(capsys, *argv, "--jobs", "1", monkeypatch=monkeypatch)
    code2, chunked, err2 = run(capsys, *argv, "--jobs", "2", block=100, monkeypatch=monkeypatch)
    assert code == code2 == 1, err + err2  # exp overflows in float16 in row (1, 4)
    assert record(chunked) == record(whole)
    assert record(whole)["results"][0]["cause_inferred"] is True


def test_temperatures_on_shards_chunked_equal_one_pass(capsys, monkeypatch, logits, tmp_path):
    """--temperature (several) on shards: every (format, T) result of a blocked run with workers
    equals the one-pass result."""
    _, x = logits
    rows = x.reshape(21, 40)
    np.save(tmp_path / "t0.npy", rows[:11])
    np.save(tmp_path / "t1.npy", rows[11:])
    argv = ["audit", "--function", "log_softmax", "--impl", "stable", "--impl", "log_of_stable",
            "--input", str(tmp_path / "t*.npy"), "--dtype", "bfloat16", "--temperature", "0.5,2",
            "--format", "json", "--top", "2"]
    code, whole, err = run(capsys, *argv, "--jobs", "1", monkeypatch=monkeypatch)
    code2, chunked, err2 = run(capsys, *argv, "--jobs", "2", block=90, monkeypatch=monkeypatch)
    assert code == code2 and code in (0, 1), err + err2
    assert record(chunked) == record(whole)
    assert len(record(whole)["results"]) == 4
