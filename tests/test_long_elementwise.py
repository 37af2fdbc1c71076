"""A vector of an elementwise function longer than a block (issue 16, item 3) is cut in pieces of
columns (stream.split_rows): read a piece at a time, evaluated alone, merged into the figures of
the whole vector -- the element-by-element run's, its elements ranked and named by their place in
the vector, the vector counted once, the exact strings those of an independent mpmath computation.
A vector with reductions (the softmax family) is never cut."""

import json

import mpmath
import numpy as np
import pytest

from numstab import stream
from numstab.errors import UsageError
from numstab.formats import get_format
from tests.test_long_vector import _rank, run  # the CLI at a block size; the --top ranking of statuses

N = 2503  # a prime: no piece boundary falls on a multiple of the vector's structure


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One long vector of logits (extremes where the naive forms overflow or flush, a NaN, +-inf),
    labels per element, and the same vector in 6 rows of a 4-D array along axis 2."""
    rng = np.random.default_rng(16)
    x = rng.normal(0, 8, N).astype(np.float32)
    x[[3, 700, 1500, 2100, 2400]] = [95.0, -120.0, 17.25, -11.5, 60.0]
    x[[11, 1999]] = [np.inf, -np.inf]
    x[[2, 1234]] = np.nan  # one among the first values every entry shows
    z = rng.uniform(0, 1, N)
    z[[5, 900]] = [0.0, 1.0]
    d = tmp_path_factory.mktemp("longew")
    np.save(d / "v.npy", x)
    np.save(d / "z.npy", z)
    rows = np.stack([np.roll(x, 97 * k) for k in range(6)])  # (6, N), each a different order
    np.save(d / "m.npy", rows.reshape(2, 3, 1, N).transpose(0, 1, 3, 2))  # vectors along axis 2
    return d, x, z, rows


@pytest.mark.parametrize("function,dtype,impl", [
    ("sigmoid", "float16", "naive"), ("log_sigmoid", "bfloat16", "naive"), ("softplus", "float16", "stable"),
    ("binary_cross_entropy", "float16", "clipped"), ("binary_cross_entropy", "float8_e5m2", "logits"),
])
def test_pieces_of_one_vector_are_the_element_by_element_run(capsys, monkeypatch, files, function, dtype,
                                                             impl):
    d, x, z, _ = files
    argv = ["inspect", function, "--impl", impl, "--input", d / "v.npy", "--dtype", dtype, "--format",
            "json", "--top", "5", "--jobs", "1"]
    if function == "binary_cross_entropy":
        argv += ["--targets", d / "z.npy"]
    code, out, err = run(capsys, monkeypatch, *argv, block=300)  # 9 pieces of 300 and one of 103
    assert code == 0, err
    summ = json.loads(out)["results"][0]
    code, out, err = run(capsys, monkeypatch, *argv)  # one block: element by element
    assert code == 0, err
    each = json.loads(out)["results"][0]
    assert summ["vectors"] == 1 and summ["n"] == N and "element_status" in each
    counts = {s: each["element_status"].count(s) for s in summ["counts"]}
    assert summ["counts"] == counts and sum(counts.values()) == N
    assert summ["status"] == each["status"] and summ["cause"] == each["cause"]
    assert summ["causes"] == each["causes"]
    assert summ["vectors_failing"] == (1 if summ["status"] not in ("ok", "undetermined") else 0)
    ulp = [-1.0 if u is None else float(u) for u in each["ulp_error"]]
    assert float(summ["max_ulp"]) == max(ulp)
    order = sorted(range(N), key=lambda j: (-_rank(each["element_status"][j]), -ulp[j], j))[:5]
    assert [w["element"] for w in summ["worst"]] == order
    for w in summ["worst"]:
        j = w["element"]
        assert w["index"] == [j] and w["status"] == each["element_status"][j]
        assert w["cause"] == each["element_cause"][j] and w["exact"] == each["reference"][j]
        assert w["input"] == each["inputs"][j] and w["output"] == each["outputs"][j]
        assert w["vector"] == each["inputs"][:8] + ["..."]  # the vector's first values, not the piece's


def test_exact_strings_of_pieces_are_mpmath_at_300_bits(capsys, monkeypatch, files):
    """The worst elements' exact values, independently: softplus(x) - x z of the rounded logit
    and label (binary_cross_entropy's loss), at 300 bits, to 25 digits."""
    d, x, z, _ = files
    code, out, err = run(capsys, monkeypatch, "inspect", "binary_cross_entropy", "--impl", "naive", "--input",
                         d / "v.npy", "--targets", d / "z.npy", "--dtype", "bfloat16", "--format", "json",
                         "--top", "6", block=400)
    assert code == 0, err
    fmt = get_format("bfloat16")
    xf, zf = fmt.round(x.astype(np.float64)), fmt.round(z)
    worst = json.loads(out)["results"][0]["worst"]
    assert len(worst) == 6
    with mpmath.workprec(300):
        for w in worst:
            j = w["element"]
            if not np.isfinite(xf[j]):
                continue
            xv, zv = mpmath.mpf(float(xf[j])), mpmath.mpf(float(zf[j]))
            exact = mpmath.log1p(mpmath.exp(xv)) - xv * zv
            if exact == 0:
                assert float(w["exact"]) == 0
                continue
            e = int(mpmath.floor(mpmath.log10(abs(exact))))
            half_digit = mpmath.mpf(10) ** (e - 24) / 2
            assert abs(mpmath.mpf(w["exact"]) - exact) <= half_digit * (1 + 2 ** -100), (j, w)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_rows_of_an_nd_file_in_pieces_equal_whole_rows(capsys, monkeypatch, files, jobs):
    """Six long vectors along axis 2 of a 4-D file: cut in pieces (in worker processes too), the
    figures, the --top rows and their N-D indices are those of whole rows, byte for byte."""
    d, *_ = files
    argv = ["inspect", "log_sigmoid", "--input", d / "m.npy", "--axis", "2", "--dtype", "float16",
            "--dtype", "bfloat16", "--format", "json", "--top", "4"]
    code, whole, err = run(capsys, monkeypatch, *argv, "--jobs", "1", block=N)  # whole rows
    assert code == 0, err
    code, pieces, err = run(capsys, monkeypatch, *argv, "--jobs", jobs, block=500)
    assert code == 0, err
    assert pieces == whole
    res = json.loads(pieces)["results"]
    assert {r["vectors"] for r in res} == {6} and {r["n"] for r in res} == {N}
    naive = next(r for r in res if r["impl"] == "naive" and r["dtype"] == "float16")
    assert naive["vectors_failing"] == 6  # every row holds the overflowing exp(-x) of x = -120
    w = naive["worst"][0]
    assert len(w["index"]) == 4 and w["index"][2] == w["element"]


def test_audit_of_pieces_is_the_audit_of_whole_rows(capsys, monkeypatch, files, tmp_path):
    """audit over the 4-D file: the same verdicts, counts and worst rows in pieces as whole; the
    first failure names the same element, its vector shown by its first values and its input."""
    d, _, _, rows = files
    argv = ["audit", "--function", "log_sigmoid", "--impl", "naive", "--impl", "stable", "--dtype", "float16",
            "--input", d / "m.npy", "--axis", "2", "--top", "3", "--format", "json"]
    code, whole, err = run(capsys, monkeypatch, *argv, "--jobs", "1", block=N)
    assert code == 1, err
    code2, pieces, err = run(capsys, monkeypatch, *argv, "--jobs", "2", block=700)
    assert code2 == 1, err
    a, b = json.loads(whole), json.loads(pieces)
    assert a["schema"] == b["schema"] == "numstab.audit/7"
    for ra, rb in zip(a["results"], b["results"]):
        fa, fb = ra.pop("first_failure"), rb.pop("first_failure")
        assert ra == rb
        if fa is None:
            assert fb is None
            continue
        va, vb = fa.pop("vector"), fb.pop("vector")
        assert fb.pop("input") == va[fa["element"]]
        assert fa == fb and vb == va[:8] + ["..."] and len(va) == N
        r, j = fa["row"], fa["element"]
        x16 = get_format("float16").round(rows.astype(np.float64))
        assert fb["n"] == N and float(x16[r, j]) == float(va[j])


def test_only_elementwise_vectors_are_cut(monkeypatch):
    """A vector of 10^10 values: an elementwise function's streams in pieces of a block (nothing
    refused); one with reductions must be held whole, and is refused before any work."""
    monkeypatch.delenv("NUMSTAB_BLOCK", raising=False)
    monkeypatch.setenv("NUMSTAB_MEMORY_LIMIT", "2G")
    assert stream.split_rows("binary_cross_entropy", 10**10) and not stream.split_rows("sigmoid", 1000)
    assert not stream.split_rows("softmax", 10**10) and not stream.split_rows("softmax_backward", 10**10)
    assert stream.rows_per_chunk(1, 10**10, 2, 2, "a long vector", "sigmoid") == 1
    with pytest.raises(UsageError, match="a vector is evaluated whole"):
        stream.rows_per_chunk(1, 10**10, 2, 2, "a long vector", "logsumexp")


def test_labels_per_element_are_read_a_chunk_at_a_time(capsys, monkeypatch, files, tmp_path):
    """binary_cross_entropy's labels in a .npy are mapped and read with each chunk (stream.LabelFile,
    checked block by block before any work) -- the figures of the same labels read whole from a
    .npz, in pieces and in whole rows, byte for byte; a bad label at the very end is refused in one
    line before any work."""
    d, _, _, rows = files
    zz = np.random.default_rng(2).uniform(0, 1, rows.shape)
    zz[3, [0, N - 1]] = [0.0, 1.0]
    np.save(tmp_path / "zz.npy", zz)
    np.savez(tmp_path / "zz.npz", zz)
    np.save(tmp_path / "zf.npy", np.asfortranarray(zz))  # its flat C-order view would copy the file
    assert stream.label_file(tmp_path / "zz.npy", 6, N) == stream.LabelFile(str(tmp_path / "zz.npy"), N, 0, 6)
    assert stream.label_file(tmp_path / "zz.npz", 6, N) is None
    assert stream.label_file(tmp_path / "zf.npy", 6, N) is None  # read whole
    assert stream.label_file(tmp_path / "zz.npy", 3, 2 * N) is not None  # the same flat layout
    argv = ["inspect", "binary_cross_entropy", "--impl", "naive", "--impl", "logits", "--input", d / "m.npy",
            "--axis", "2", "--dtype", "bfloat16", "--format", "json", "--top", "3", "--jobs", "1",
            "--targets"]
    outs = []
    for labels, block in (("zz.npz", N), ("zz.npy", N), ("zz.npy", 700), ("zz.npz", 700), ("zf.npy", 700)):
        code, out, err = run(capsys, monkeypatch, *argv, tmp_path / labels, block=block)
        assert code == 0, err
        outs.append(out)
    assert outs[0] == outs[1] == outs[2] == outs[3] == outs[4]
    zz[5, N - 1] = 1.5
    np.save(tmp_path / "bad.npy", zz)
    code, out, err = run(capsys, monkeypatch, *argv, tmp_path / "bad.npy", block=700)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("numstab: error:") and "labels must be numbers in [0, 1]" in err
