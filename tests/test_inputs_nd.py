"""N-D inputs from real files (issue 12): .npy memory-mapped, .npz and .safetensors with --key,
--axis, float16/bfloat16 used bit for bit, and --top K naming the worst rows.

Expected figures are computed here (mpmath, numpy), independently of numstab's reference.
"""

import json
import math

import ml_dtypes
import mpmath
import numpy as np
import pytest
import safetensors.numpy as safetensors_numpy

from numstab.cli import main
from numstab.formats import FORMATS
from numstab.inputs import load_input, open_input, round_inputs


def cli_json(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    d = json.loads(out) if out.strip() else None
    if d and argv[0] == "inspect" and len(d.get("results", ())) == 1:
        d = d["results"][0]  # numstab.inspect/5: one record per implementation and format
    return code, d, err


def logits(shape, seed=0, dtype=np.float16):
    return np.random.default_rng(seed).normal(0, 3, shape).astype(dtype)


def test_npy_is_memory_mapped_and_read_in_row_blocks(tmp_path):
    a = logits((4, 5, 7))
    f = tmp_path / "x.npy"
    np.save(f, a)
    src = open_input(f)
    assert src.shape == (4, 5, 7) and src.dtype == np.float16 and src.n == 7 and src.rows == 20
    assert isinstance(src._get((slice(0, 1),)), np.memmap)
    starts, parts = zip(*src.blocks(max_rows=10))  # 10 rows = 2 slices of the first axis
    assert starts == (0, 10)
    np.testing.assert_array_equal(np.concatenate(parts), a.reshape(20, 7).astype(np.float64))
    assert src.index(13) == (2, 3) and src.element_index(13, 6) == (2, 3, 6)


def test_axis_moves_the_vectors(tmp_path):
    a = logits((3, 6, 4))
    f = tmp_path / "x.npy"
    np.save(f, a)
    x, src = load_input(f, axis=1)
    want = np.moveaxis(a, 1, -1).reshape(-1, 6).astype(np.float64)
    np.testing.assert_array_equal(x, want)
    assert src.batch_shape == (3, 4) and src.element_index(5, 2) == (1, 2, 1)
    x0, _ = load_input(f, axis=0)  # blocks along axis 1 when the vectors lie along axis 0
    np.testing.assert_array_equal(x0, np.moveaxis(a, 0, -1).reshape(-1, 3).astype(np.float64))


def test_npz_needs_a_key_when_it_holds_several(tmp_path, capsys):
    f = tmp_path / "two.npz"
    np.savez(f, logits=logits((2, 3)), labels=np.array([0, 1]))
    code, _, err = cli_json(capsys, "inspect", "softmax", "--input", str(f))
    assert code == 2 and "holds 2 arrays" in err and "--key" in err
    code, d, _ = cli_json(capsys, "inspect", "softmax", "--input", str(f), "--key", "logits", "--impl",
                          "stable", "--format", "json")
    assert code == 0 and d["vectors"] == 2 and d["shape"] == [2, 3]
    code, _, err = cli_json(capsys, "inspect", "softmax", "--input", str(f), "--key", "nope")
    assert code == 2 and "no array 'nope'" in err


@pytest.mark.parametrize("stored", [np.float16, ml_dtypes.bfloat16])
def test_half_inputs_are_used_bit_for_bit(tmp_path, stored):
    bits = np.arange(1 << 16, dtype=np.uint16)
    vals = bits.view(stored)
    keep = np.isfinite(vals.astype(np.float32))
    a = vals[keep][: (keep.sum() // 64) * 64].reshape(-1, 4, 16)
    f = tmp_path / "h.safetensors"
    safetensors_numpy.save_file({"logits": a, "other": np.zeros(3, np.float32)}, str(f))
    x, src = load_input(f, key="logits")
    fmt = FORMATS["float16" if stored is np.float16 else "bfloat16"]
    xr = round_inputs(fmt, x)
    got = fmt.cast(xr).view(np.uint16).reshape(a.shape)
    np.testing.assert_array_equal(got, a.view(np.uint16))  # -0.0 and subnormals too


def test_safetensors_batch_seq_vocab_top_k_names_the_worst(tmp_path, capsys):
    # (batch 2, seq 3, vocab 4) float16 logits; row (1, 2) overflows the naive logsumexp
    a = np.zeros((2, 3, 4), dtype=np.float16)
    a[...] = np.array([1.0, 0.5, -2.0, 0.0], dtype=np.float16)
    a[1, 2] = np.array([12.0, 0.0, -np.inf, 3.0], dtype=np.float16)
    a[0, 1, 3] = -np.inf
    f = tmp_path / "logits.safetensors"
    safetensors_numpy.save_file({"logits": a}, str(f))
    code, d, _ = cli_json(capsys, "inspect", "logsumexp", "--compute", "format", "--input", str(f),
                          "--dtype", "float16", "--impl", "naive", "--top", "2", "--format", "json")
    assert code == 0 and d["shape"] == [2, 3, 4] and d["axis"] == 2 and d["vectors"] == 6
    w = d["worst"]
    assert len(w) == 2
    assert w[0]["row"] == [1, 2] and w[0]["index"] == [1, 2] and w[0]["status"] == "overflow"
    assert w[0]["output"] == "inf" and w[0]["cause"] == "exp_overflow"
    exact = mpmath.log(mpmath.exp(12) + 1 + mpmath.exp(3))
    assert abs(mpmath.mpf(w[0]["exact"]) - exact) < mpmath.mpf(10) ** -20
    assert w[0]["vector"] == [12.0, 0.0, "-inf", 3.0]
    # the other rows are ok; the runner-up is the worst by ULP error among them
    assert w[1]["status"] == "ok"


def test_audit_input_names_the_worst_rows_in_json_and_table(tmp_path, capsys):
    a = logits((2, 3, 5), seed=3).astype(np.float32)
    a[..., 0] = 100.0  # exp(100) overflows float16: the naive softmax fails in every row
    a[1, 1] = [-np.inf, 0.0, -np.inf, 1.0, -np.inf]
    f = tmp_path / "scores.npy"
    np.save(f, a)
    code, d, _ = cli_json(capsys, "audit", "--function", "softmax", "--input", str(f), "--dtype", "float16",
                          "--impl", "naive", "--impl", "stable", "--top", "3", "--format", "json")
    assert code == 1 and d["schema"] == "numstab.audit/7"
    naive, stable = d["results"]
    assert not naive["passed"] and stable["passed"]
    assert len(naive["worst"]) == 3 and all(w["status"] == "nan" for w in naive["worst"])
    assert [w["row"] for w in naive["worst"]] == [[0, 0], [0, 1], [0, 2]]  # ties: first rows first
    assert naive["worst"][0]["index"] == [0, 0, 0] and naive["worst"][0]["cause"] == "exp_overflow"
    # row (1, 1): the masked entries are exact zeros; e = 1/(1 + e) at index 1
    assert stable["counts"]["ok"] == 30
    code = main(["audit", "--function", "softmax", "--input", str(f), "--dtype", "float16",
                 "--impl", "naive", "--top", "2"])
    out = capsys.readouterr().out
    assert code == 1 and "worst 2 rows" in out and "(0, 0, 0)" in out


def test_audit_limit_fails_a_finite_value_where_the_limit_is_infinite(tmp_path, capsys):
    f = tmp_path / "v.npy"
    np.save(f, np.array([[-1.0, -np.inf]], dtype=np.float32))
    impl = tmp_path / "clamp.py"
    impl.write_text("import numpy as np\n"
                    "def log_softmax(x):\n"
                    "    out = x - x.max(axis=-1, keepdims=True)\n"
                    "    return np.maximum(out, np.float32(-64)).astype(x.dtype)\n")
    code, d, _ = cli_json(capsys, "audit", "--function", "log_softmax", "--input", str(f), "--dtype",
                          "float32", "--callable", f"{impl}:log_softmax", "--format", "json")
    r = d["results"][0]
    assert code == 1 and r["limits"] == 1 and any(x.startswith("limit: 1 of 2") for x in r["reasons"])
    assert r["first_failure"]["output"] == -64.0 and r["first_failure"]["exact_rounded"] == "-inf"
    assert r["worst"][0]["index"] == [0, 1] and r["worst"][0]["exact"] == "-inf"
    assert r["worst"][0]["cause"] == "clipping"


def test_text_input_with_a_mask(tmp_path, capsys):
    f = tmp_path / "v.txt"
    f.write_text("-inf 0 0\n")
    code, d, _ = cli_json(capsys, "inspect", "cross_entropy", "--target", "1", "--input", str(f),
                          "--impl", "stable", "--format", "json")
    assert code == 0 and d["inputs"] == ["-inf", 0.0, 0.0]
    with mpmath.workdps(40):
        assert d["reference"][0] == mpmath.nstr(mpmath.log(2), 25)
    assert d["outputs"] == [float(np.float32(math.log(2)))]
