"""A vector of softmax or log_softmax longer than a block, evaluated a piece of columns at a time
(numstab.vector, issue 16 item 3): every figure, status, cause, flag and --top K entry (its exact
string included) is the one the evaluation of the whole vector gives, under every accumulation
model, precision model and format; the exact strings are checked against mpmath here too."""

import json

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from numstab import masks, stream, vector
from numstab.cli import main
from numstab.formats import get_format


def run(capsys, monkeypatch, *argv, block=None, pieces=True):
    if block is None:
        monkeypatch.delenv("NUMSTAB_BLOCK", raising=False)
    else:
        monkeypatch.setenv("NUMSTAB_BLOCK", str(block))
    used = []
    orig = vector.Piece.__init__

    def spy(self, vec, j, fmt):
        used.append(j)
        orig(self, vec, j, fmt)

    monkeypatch.setattr(vector.Piece, "__init__", spy)
    if not pieces:  # the whole vector as one chunk: the evaluation before pieces
        monkeypatch.setattr(stream, "in_pieces", lambda *a: False)
    code = main([str(a) for a in argv])
    monkeypatch.undo()
    out, err = capsys.readouterr()
    return code, out, err, used


@pytest.fixture(scope="module")
def logits(tmp_path_factory):
    """Two vectors of 1,500 logits N(0, 3) with outliers (+25: exp overflows float16), a tied
    maximum, and a run of very negative values (their exps flush)."""
    rng = np.random.default_rng(24)
    x = rng.normal(0, 3, (2, 1500)).astype(np.float32)
    x[0, [37, 901, 1402]] = [24.75, 25.5, 25.5]
    x[1, 200:260] = -30.0
    x[1, 1499] = 12.0
    path = tmp_path_factory.mktemp("longred") / "x.npy"
    np.save(path, x)
    return path, x


def _same_results(a: dict, b: dict) -> None:
    for ra, rb in zip(a["results"], b["results"]):
        for key in ("counts", "causes", "cause", "status", "max_ulp", "median_ulp", "max_rel", "flags",
                    "vectors_failing", "worst", "masked_rows_returned"):
            assert ra.get(key) == rb.get(key), (ra["impl"], ra["dtype"], key, ra.get(key), rb.get(key))


_IMPLS = {"softmax": ["naive", "stable", "lse", "online"],
          "log_softmax": ["naive", "stable", "log1p", "log_of_stable"],
          "logsumexp": ["naive", "stable", "log1p"],
          "cross_entropy": ["naive", "clipped", "stable", "log_softmax", "log1p"],
          "smoothed_cross_entropy": ["naive", "stable", "log1p"],
          "cross_entropy_backward": ["naive", "fused", "stable"],
          "softmax_backward": ["naive", "fused", "stable"],
          "log_softmax_backward": ["naive", "fused", "stable"]}
#: the gradients' cotangent in the pieces' tests: the batch's seeded normal stream (each row's own
#: draws), or 1 at the vector's first argmax
_COTANGENT = {"softmax_backward": "normal", "log_softmax_backward": "onehot"}


@pytest.mark.parametrize("function", list(_IMPLS))
@pytest.mark.parametrize("acc,compute", [("sequential", "float32"), ("pairwise", "format"),
                                         ("float32", "float32")])
def test_pieces_give_the_figures_of_the_whole_vector(capsys, monkeypatch, logits, function, acc, compute):
    path, _ = logits
    dtypes = [a for d in ("float16", "bfloat16", "float32", "float64") for a in ("--dtype", d)]
    argv = ["inspect", function, "--input", path, *dtypes,
            "--accumulate", acc, "--compute", compute, "--format", "json", "--top", "5", "--jobs", "1"]
    if function in ("cross_entropy", "cross_entropy_backward"):  # an outlier (901), an ordinary logit
        argv += ["--target", "901"]
    if function == "smoothed_cross_entropy":
        argv += ["--target", "5", "--label-smoothing", "0.3"]
    if function in _COTANGENT:
        argv += ["--cotangent", _COTANGENT[function]]
    impls = [a for i in _IMPLS[function] for a in ("--impl", i)]
    code, out, err, used = run(capsys, monkeypatch, *argv, *impls, block=256)
    assert code == 0, err
    assert len(set(used)) > 4  # evaluated in pieces
    code, out2, err, used2 = run(capsys, monkeypatch, *argv, *impls, block=256, pieces=False)
    assert code == 0, err
    assert not used2
    a, b = json.loads(out), json.loads(out2)
    _same_results(a, b)
    naive = [r for r in a["results"] if r["impl"] == "naive" and r["dtype"] == "float16"][0]
    if compute == "format":  # exp(25.5) overflows float16 steps
        assert naive["status"] in ("nan", "overflow") and "overflow" in naive["flags"], naive


def test_audit_first_failure_and_temperature_are_the_whole_vectors(capsys, monkeypatch, logits, tmp_path):
    path, x = logits
    argv = ["inspect", "softmax", "--impl", "naive", "--impl", "stable", "--input", path, "--dtype",
            "float16", "--temperature", "0.7", "--format", "json", "--top", "3", "--jobs", "1"]
    code, out, err, used = run(capsys, monkeypatch, *argv, block=200)
    assert code == 0 and used, err
    code, out2, err, _ = run(capsys, monkeypatch, *argv, block=200, pieces=False)
    _same_results(json.loads(out), json.loads(out2))
    argv = ["audit", "--function", "softmax", "--impl", "naive", "--dtype", "float16", "--input", path,
            "--compute", "format", "--jobs", "1", "--format", "json"]
    code, out, err, used = run(capsys, monkeypatch, *argv, block=200)
    assert used and code == 1, err
    code2, out2, err2, _ = run(capsys, monkeypatch, *argv, block=200, pieces=False)
    assert code2 == 1
    a, b = json.loads(out), json.loads(out2)
    fa, fb = a["results"][0]["first_failure"], b["results"][0]["first_failure"]
    # a vector too long to list (longer than a block, in pieces or whole) is shown by its first values
    # and the element's input
    assert fa == fb and fa["vector"] == [float(np.float16(v)) for v in x[0, :8]] + ["..."]
    assert fa["input"] == 24.75 and fa["element"] == 37 and fa["status"] == "nan"
    for fn, extra in (("logsumexp", []), ("cross_entropy", ["--target", "901"]),
                      ("cross_entropy_backward", ["--target", "901"])):  # one output per vector, or not
        argv = ["audit", "--function", fn, "--impl", "naive", "--dtype", "float16", "--input", path,
                "--compute", "format", "--jobs", "1", "--format", "json", *extra]
        code, out, err, used = run(capsys, monkeypatch, *argv, block=200)
        code2, out2, err2, _ = run(capsys, monkeypatch, *argv, block=200, pieces=False)
        assert used and code == code2 == 1, (err, err2)
        fa, fb = (json.loads(o)["results"][0]["first_failure"] for o in (out, out2))
        assert fa == fb and fa.pop("vector")[-1] == "...", (fa, fb)
        inp = fa.pop("input", None)  # a per-element output's input (the vector is shown cut)
        assert inp == (None if fa["element"] is None else float(np.float16(x[0, fa["element"]])))


def test_worker_processes_give_the_one_process_figures(capsys, monkeypatch, logits):
    path, _ = logits
    argv = ["inspect", "log_softmax", "--impl", "naive", "--impl", "stable", "--input", path, "--dtype",
            "float16", "--dtype", "float32", "--format", "json", "--top", "4"]
    code, out, err, _ = run(capsys, monkeypatch, *argv, "--jobs", "2", block=300)
    assert code == 0, err
    code, out2, err, _ = run(capsys, monkeypatch, *argv, "--jobs", "1", block=300, pieces=False)
    _same_results(json.loads(out), json.loads(out2))


@pytest.fixture(scope="module")
def masked(tmp_path_factory):
    """Two vectors of 1,500 logits with -inf masks across the pieces' bounds: a masked run and a
    masked tail beside overflowing outliers; a masked prefix of 700 (the online scan's running
    maximum starts at -inf: exp(-inf - -inf) is NaN)."""
    rng = np.random.default_rng(31)
    x = rng.normal(0, 3, (2, 1500)).astype(np.float32)
    x[0, [37, 901, 1402]] = [24.75, 25.5, 25.5]
    x[0, 100:400] = -np.inf
    x[0, 1450:] = -np.inf
    x[1, 0:700] = -np.inf
    x[1, 1499] = 12.0
    path = tmp_path_factory.mktemp("masked") / "m.npy"
    np.save(path, x)
    return path, x


@pytest.mark.parametrize("function,acc,compute,target", [
    ("softmax", "sequential", "float32", None), ("log_softmax", "pairwise", "format", None),
    ("logsumexp", "float32", "float32", None), ("cross_entropy", "sequential", "format", "150"),
    ("cross_entropy", "float32", "float32", "901")])
def test_masked_vectors_in_pieces_give_the_figures_of_the_whole_vector(capsys, monkeypatch, masked, function,
                                                                       acc, compute, target):
    """-inf masks (beside two or more finite entries) drop out of the pieces' sums as out of the
    whole vector's: the masked entries' limits exactly (softmax 0, log_softmax -inf; a masked
    target's loss +inf: 150 is masked in both vectors), every figure, cause and --top entry as the
    whole vector's evaluation (the mask layer's rows)."""
    path, _ = masked
    dtypes = [a for d in ("float16", "bfloat16", "float32", "float64") for a in ("--dtype", d)]
    argv = ["inspect", function, "--input", path, *dtypes, "--accumulate", acc, "--compute", compute,
            "--format", "json", "--top", "5", "--jobs", "1", *(["--target", target] if target else [])]
    impls = [a for i in _IMPLS[function] for a in ("--impl", i)]
    code, out, err, used = run(capsys, monkeypatch, *argv, *impls, block=256)
    assert code == 0 and len(set(used)) > 4, err
    code, out2, err, used2 = run(capsys, monkeypatch, *argv, *impls, block=256, pieces=False)
    assert code == 0 and not used2, err
    a, b = json.loads(out), json.loads(out2)
    _same_results(a, b)
    if function == "cross_entropy" and target == "150":  # a masked target: the exact loss is +inf
        assert all(r["counts"]["ok"] == 2 for r in a["results"] if r["impl"] != "clipped")


def _special_vector(case: str) -> np.ndarray:
    x = np.random.default_rng(41).normal(0, 3, (1, 1500)).astype(np.float32)
    if case == "nan":  # behind a masked prefix
        x[0, :1000] = -np.inf
        x[0, 1100] = np.nan
    elif case == "pinf":
        x[0, [300, 1200]] = np.inf
    elif case == "pinf1":  # one +inf (as a limit: softmax 1 there), beside masked entries
        x[0, 1200] = np.inf
        x[0, 100:200] = -np.inf
    elif case in ("single", "empty"):
        x[0] = -np.inf
        if case == "single":
            x[0, 700] = 3.25
    return x


@pytest.mark.parametrize("case", ["nan", "pinf", "pinf1", "single", "empty"])
def test_vectors_whose_limits_fix_their_values_go_in_pieces(capsys, monkeypatch, tmp_path, case):
    """A NaN, +inf read as IEEE does or as a limit, one finite entry (under a temperature too),
    none (under every policy): the limits fix the outputs the finite entries do not decide
    (masks.vector_limits), or the reference sees the mask layer's vector (+inf as a limit: k zeros;
    ``uniform``: n zeros), so the vector goes in pieces, with the figures, causes and --top entries
    (their exact strings) of the mask layer's whole-row evaluation."""
    np.save(tmp_path / "s.npy", _special_vector(case))
    policies = {"pinf": [[], ["--masked-rows", "zeros"], ["--nonfinite", "limit"]],
                "pinf1": [[], ["--nonfinite", "limit"], ["--nonfinite", "limit", "--temperature", "0.7"]],
                "empty": [["--masked-rows", "nan"], ["--masked-rows", "zeros"], ["--masked-rows", "uniform"]],
                "single": [[], ["--temperature", "0.7"]]}
    for fn, impls in (("softmax", ["naive", "stable", "online"]), ("log_softmax", ["naive", "stable"]),
                      ("logsumexp", ["naive", "stable"]), ("cross_entropy", ["stable", "log1p", "clipped"])):
        for pol in policies.get(case, [[]]):
            argv = ["inspect", fn, "--input", tmp_path / "s.npy", "--dtype", "float16", "--dtype", "float32",
                    "--format", "json", "--top", "3", "--jobs", "1", *pol,
                    *[a for i in impls for a in ("--impl", i)]]
            for target in (["--target", "700"], ["--target", "1200"]) if fn == "cross_entropy" else ([],):
                code, out, err, used = run(capsys, monkeypatch, *argv, *target, block=256)
                assert code in (0, 1) and len(set(used)) > 4, err
                code2, out2, err, used2 = run(capsys, monkeypatch, *argv, *target, block=256, pieces=False)
                assert code2 == code and not used2, err
                a, b = json.loads(out), json.loads(out2)
                assert a["results"] == b["results"], (case, fn, pol, target)
                if (case, pol) == ("pinf", ["--nonfinite", "limit"]) and fn != "logsumexp":  # 1/2, -ln 2
                    ln2 = "0.6931471805599453094172321"
                    exact = {"softmax": "0.5", "log_softmax": "-" + ln2,
                             "cross_entropy": ln2 if target[-1:] == ["1200"] else "inf"}
                    at = [e for e in a["results"][0]["worst"] if e.get("element", 1200) in (300, 1200)]
                    assert at and all(e["exact"] == exact[fn] for e in at), a["results"][0]["worst"]
    for fn, extra in (("cross_entropy_backward", ["--target", "700"]), ("softmax_backward", []),
                      ("log_softmax_backward", ["--cotangent", "normal"])):
        # a gradient in pieces: a NaN or +inf (IEEE) makes every value NaN; a dropped entry's value is
        # fixed (0, its cotangent, the target's -1; every entry's under the zeros policy); a single
        # entry's too, but log_softmax_backward's (v_k - sum v, from the vector's exact sum)
        pols = {"pinf": ([], ["--nonfinite", "limit"]), "pinf1": ([], ["--nonfinite", "limit"]),
                "empty": ([], ["--masked-rows", "zeros"], ["--masked-rows", "uniform"])}
        for pol in pols.get(case, ([],)):
            argv = ["inspect", fn, "--input", tmp_path / "s.npy", "--dtype", "float16", "--format", "json",
                    "--top", "3", "--jobs", "1", "--impl", "naive", "--impl", "stable", *extra, *pol]
            code, out, err, used = run(capsys, monkeypatch, *argv, block=256)
            code2, out2, err, used2 = run(capsys, monkeypatch, *argv, block=256, pieces=False)
            assert code2 == code and not used2 and used, err
            assert json.loads(out)["results"] == json.loads(out2)["results"], (case, fn, pol)


@pytest.mark.parametrize("case", ["masked", "nan", "pinf", "single", "empty"])
def test_label_smoothing_of_vectors_with_dropped_entries_goes_in_pieces(capsys, monkeypatch,
                                                                                      tmp_path, masked, case):
    """A dropped entry's weight eps / n multiplies log 0: with eps > 0 the loss is +inf, fixed in
    every piece (masks.vector_limits); a NaN, +inf (IEEE: NaN; as a limit: +inf, or the loss of the
    +inf entries as zeros) and a fully masked vector's policies likewise. With eps = 0 the loss is
    that of the entries left (no smoothing term: the pieces' sum of d is -inf there) -- every way
    the figures of the mask layer's whole-row evaluation."""
    path = masked[0]
    if case != "masked":
        path = tmp_path / "s.npy"
        np.save(path, _special_vector(case))
    for eps, pol in (("0.1", []), ("0.1", ["--nonfinite", "limit"]), ("0.1", ["--masked-rows", "uniform"]),
                     ("0.1", ["--masked-rows", "zeros"]), ("0", [])):
        argv = ["inspect", "smoothed_cross_entropy", "--input", path, "--dtype", "float16", "--dtype",
                "float32", "--target", "901", "--label-smoothing", eps, "--format", "json", "--top", "2",
                "--jobs", "1", "--impl", "naive", "--impl", "stable", *pol]
        code, out, err, used = run(capsys, monkeypatch, *argv, block=256)
        code2, out2, err2, used2 = run(capsys, monkeypatch, *argv, block=256, pieces=False)
        assert code == code2 == 0 and not used2, err
        a, b = json.loads(out), json.loads(out2)
        assert a["results"] == b["results"], (case, eps, pol)
        assert used, (case, eps, pol)
        if case == "masked" and eps == "0.1":  # +inf, exactly: every implementation right there
            assert all(r["counts"]["ok"] == 2 for r in a["results"]), a["results"]


def test_audit_shows_a_long_vector_evaluated_whole_by_its_first_values(capsys, monkeypatch, masked):
    """A vector longer than a block evaluated whole (every built-in goes in pieces; a kernel that
    could not would not) is shown in audit's first_failure as a vector in pieces is -- its first 8
    values, then "...", and the element's input -- not by its 1,500 values."""
    path, x = masked
    argv = ["audit", "--function", "cross_entropy_backward", "--impl", "naive", "--input", path, "--target",
            "901", "--dtype", "float16", "--compute", "format", "--format", "json"]
    code, out, err, used = run(capsys, monkeypatch, *argv, block=256, pieces=False)
    assert code == 1 and not used, err
    ff = json.loads(out)["results"][0]["first_failure"]
    r, j = ff["row"], ff["element"]
    assert ff["n"] == 1500 and ff["vector"] == [float(np.float16(v)) for v in x[r, :8]] + ["..."]
    assert ff["input"] == float(np.float16(x[r, j])) and ff["status"] in ("overflow", "nan")
    code2, out2, err, used = run(capsys, monkeypatch, *argv, block=256)  # the same in pieces
    assert code2 == 1 and used and json.loads(out2)["results"][0]["first_failure"] == ff


def test_online_scans_go_in_pieces(capsys, monkeypatch, tmp_path):
    x = np.random.default_rng(1).normal(0, 2, (1, 900)).astype(np.float32)
    np.save(tmp_path / "o.npy", x)
    argv = ["inspect", "softmax", "--impl", "online", "--input", tmp_path / "o.npy", "--dtype", "float16",
            "--format", "json"]
    for acc in ("sequential", "pairwise", "float32"):  # its state carried across the pieces; its tree's nodes
        code, out, err, used = run(capsys, monkeypatch, *argv, "--accumulate", acc, block=100)
        assert code == 0 and used, err


def test_exact_strings_of_pieces_are_mpmath_digits(capsys, monkeypatch, logits, masked, tmp_path):
    """The --top entries' exact values, from the vector's context (its max and sum bounds), against
    an independent 300-bit mpmath computation of the whole vector (a masked entry: its limit)."""
    for x, fn, impl in ((logits[1], "log_softmax", "naive"), (masked[1], "log_softmax", "naive"),
                        (masked[1], "softmax", "online"), (logits[1], "smoothed_cross_entropy", "naive"),
                        (logits[1], "cross_entropy_backward", "naive")):
        for r in (0, 1):
            np.save(tmp_path / "v.npy", x[r])
            argv = ["inspect", fn, "--impl", impl, "--input", tmp_path / "v.npy", "--dtype",
                    "float16", "--compute", "format", "--format", "json", "--top", "6", "--jobs", "1"]
            if fn == "smoothed_cross_entropy":
                argv += ["--target", "901", "--label-smoothing", "0.1"]
            if fn == "cross_entropy_backward":
                argv += ["--target", "901"]
            code, out, err, used = run(capsys, monkeypatch, *argv, block=128)
            assert code == 0 and used, err
            res = json.loads(out)["results"][0]
            assert len(res["worst"]) >= 1
            xf = get_format("float16").round(x[r].astype(np.float64))
            with mpmath.workprec(300):
                lse = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in xf if v != -np.inf))
                if fn == "smoothed_cross_entropy":  # L - (1 - eps) x_t - eps mean(x), eps held in float16
                    eps = mpmath.mpf(float(get_format("float16").round(np.float64(0.1))))
                    v = lse - (1 - eps) * mpmath.mpf(float(xf[901])) - eps * mpmath.fsum(
                        mpmath.mpf(float(a)) for a in xf) / len(xf)
                    (w,) = res["worst"]
                    assert abs(mpmath.mpf(w["exact"]) - v) <= abs(v) * mpmath.mpf(10) ** -24, (w, v)
                    continue
                for w in res["worst"]:
                    xi = float(xf[w["element"]])
                    if xi == -np.inf:
                        assert w["exact"] == ("0.0" if fn == "softmax" else "-inf"), w
                        continue
                    v = mpmath.mpf(xi) - lse
                    v = mpmath.exp(v) if fn != "log_softmax" else v
                    if fn == "cross_entropy_backward" and w["element"] == 901:
                        v -= 1
                    e = int(mpmath.floor(mpmath.log10(abs(v))))
                    half = mpmath.mpf(10) ** (e - 24) / 2 * (1 + mpmath.mpf(2) ** -200)
                    assert abs(mpmath.mpf(w["exact"]) - v) <= half, (w, v)


@pytest.mark.parametrize("fmt_name,mode,acc,masked", [("float16", "mpmath", "sequential", False),
                                                      ("float16", "mpmath", "float32", True),
                                                      ("float64", "auto", "pairwise", False),
                                                      ("bfloat16", "auto", "float32", False),
                                                      ("float32", "auto", "sequential", True)])
def test_engine_pieces_at_every_tier(fmt_name, mode, acc, masked):
    """engine.evaluate on each piece (numstab.vector.Piece) against the whole vector, element by
    element: outputs, statuses, causes, ULP and relative figures, flags -- mpmath's tier enclosing
    the pieces' elements with the vector's sum bounds (mode "mpmath": every element); ``masked``:
    -inf entries, whose limits are exact in the pieces (the whole vector: the mask layer's rows)."""
    from numstab.engine import evaluate, select_impls

    fmt = get_format(fmt_name)
    rng = np.random.default_rng(9)
    n = 300 if mode == "mpmath" else 1100
    raw = rng.normal(0, 6, (1, n))
    raw[0, [5, 250]] = [40.0, 11.0]
    if masked:
        raw[0, 20:90] = raw[0, 200:240] = -np.inf
    x = fmt.round(raw)
    v = fmt.round(rng.normal(0, 1, (1, n)))  # the gradients' cotangent, given as values
    for fn in ("softmax", "log_softmax", "logsumexp", "cross_entropy", "smoothed_cross_entropy",
               "cross_entropy_backward", "softmax_backward", "log_softmax_backward"):
        impls = [i for i in select_impls([fn]) if vector.pieceable(fn, [i], acc, "format")]
        assert {"naive", "stable"} <= {i.name for i in impls}
        args = {"target": np.array([250 if not masked or fmt_name == "float32" else 210])} \
            if fn in ("cross_entropy", "cross_entropy_backward") else {}
        if fn == "smoothed_cross_entropy":  # (masked: eps = 0, the loss of the entries left; else +inf)
            eps = np.array([0.0]) if masked else fmt.round(np.array([0.1]))
            args = {"smoothing": np.rec.fromarrays([np.array([250]), eps], names="target,epsilon")}
        cot = None
        if fn.endswith("softmax_backward"):
            args, cot = {"cotangent": v}, vector.Cotangent("values", tuple(v[0]))
        whole, _, _ = evaluate(fmt, x, args, impls, acc, compute="format", mode=mode)
        facts = masks.VectorFacts.of([(0, raw[0])]) if masked else None
        vec = vector.LongVector(lambda c0, c1: raw[:, c0:c1], ("engine", fmt_name, n), n, acc,
                                "format", 64, facts, None, cot)
        vector.forget()
        parts = [evaluate(fmt, x[:, c0:c1], {"cotangent": v[:, c0:c1]} if cot else args, impls, acc,
                          compute="format", mode=mode, piece=vector.Piece(vec, j, fmt))[0]
                 for j, (c0, c1) in enumerate(vec.bounds)]
        assert len(parts) > 3
        for k, o in enumerate(whole):
            for attr in ("y", "status", "cause", "ulp", "rel"):
                a = getattr(o, attr)
                if fn in ("logsumexp", "cross_entropy", "smoothed_cross_entropy"):  # the vector's one output
                    assert all(np.array_equal(a, getattr(p[k], attr), equal_nan=a.dtype.kind == "f")
                               for p in parts), (fn, o.impl.name, attr)
                    continue
                b = np.concatenate([getattr(p[k], attr) for p in parts], -1)
                assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), (fn, o.impl.name, attr)
            assert set(o.flags[0]) == set().union(*(p[k].flags[0] for p in parts)), (fn, o.impl.name)


@given(seed=st.integers(0, 2**32 - 1))
@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_random_long_vectors_in_pieces_give_the_whole_vectors_figures(capsys, monkeypatch, tmp_path,
                                                                      seed):
    """A random vector (masked runs, a NaN, +inf, fully masked or one finite entry, ties at the
    maximum, outliers; 2 to 7 blocks and a few columns), function, implementations, format, models,
    policy, +inf's semantics, temperature and block: inspect's whole results in pieces are those of
    the whole-row evaluation."""
    rng = np.random.default_rng(seed)
    block = int(rng.choice([128, 200, 256, 300]))
    n = block * int(rng.integers(2, 8)) + int(rng.choice([0, 1, 2, 77]))
    x = rng.normal(float(rng.choice([0, 5, -20])), float(rng.choice([1, 3, 8, 30])), (1, n))
    x[0, rng.integers(0, n, int(rng.integers(0, 4)))] = float(rng.choice([25.5, 90.0, 11.0, -60.0, 1e4]))
    r = rng.random()
    if r < 0.3:
        a = int(rng.integers(0, n - 50))
        x[0, a: a + int(rng.integers(1, 400))] = -np.inf
    elif r < 0.4:
        x[0, rng.integers(0, n)] = np.nan
    elif r < 0.5:
        x[0, rng.integers(0, n, int(rng.integers(1, 3)))] = np.inf  # one or two
    elif r < 0.55:
        x[0] = -np.inf
        if rng.random() < 0.5:
            x[0, rng.integers(0, n)] = 1.5
    fin = np.isfinite(x[0])
    if rng.random() < 0.3 and fin.any():  # ties at the maximum
        x[0, rng.integers(0, n, 2)] = x[0][fin].max()
    path = tmp_path / f"r{seed}.npy"
    np.save(path, x.astype(np.float32))
    fn = str(rng.choice(list(_IMPLS)))
    impls = list(rng.choice(_IMPLS[fn], size=int(rng.integers(1, len(_IMPLS[fn]) + 1)), replace=False))
    fmt = str(rng.choice(["float16", "bfloat16", "float32", "float64"]))
    argv = ["inspect", fn, "--input", path, "--dtype", fmt,
            "--accumulate", str(rng.choice(["sequential", "pairwise", "float32"])),
            "--compute", str(rng.choice(["float32", "format"])), "--format", "json", "--top", "4",
            "--jobs", "1", *[a for i in impls for a in ("--impl", str(i))]]
    if fn in ("cross_entropy", "smoothed_cross_entropy", "cross_entropy_backward"):
        argv += ["--target", str(int(rng.integers(0, n)))]
    if fn == "smoothed_cross_entropy":
        argv += ["--label-smoothing", str(float(rng.choice([0.0, 0.1, 0.5])))]
    if rng.random() < 0.3:
        argv += ["--masked-rows", str(rng.choice(["nan", "zeros", "uniform"]))]
    if rng.random() < 0.3:  # +inf as a limit (the reference sees k zeros); a temperature
        argv += ["--nonfinite", "limit"]
    if rng.random() < 0.2 and fmt != "float64" and fn in ("softmax", "log_softmax", "logsumexp",
                                                           "cross_entropy"):
        argv += ["--temperature", str(float(rng.choice([0.7, 3.0])))]
    if fn in _COTANGENT:
        argv += ["--cotangent", str(rng.choice(["normal", "onehot"]))]
    code, out, err, used = run(capsys, monkeypatch, *argv, block=block)
    note(f"in pieces: {len(set(used))}")
    code2, out2, err2, used2 = run(capsys, monkeypatch, *argv, block=block, pieces=False)
    assert code == code2 and not used2, (err, err2)
    if code in (0, 1):
        assert json.loads(out)["results"] == json.loads(out2)["results"], (seed, argv)


_BOXES = '''
import numpy as np


def softmax(x):
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def logsumexp(x):
    return np.log(np.exp(x).sum(axis=-1))


def softmax_backward(x, v):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    y = e / e.sum(axis=-1, keepdims=True)
    return y * (v - (v * y).sum(axis=-1, keepdims=True))


def smoothed(x, s):  # label smoothing in the format: its sum of -log p overflows float16 (torch's)
    t, eps = np.asarray(s["target"]), np.asarray(s["epsilon"]).astype(x.dtype)
    lp = x - x.max(axis=-1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(axis=-1, keepdims=True))
    n = x.dtype.type(x.shape[-1])
    return -(1 - eps) * lp[np.arange(len(t)), t] - eps / n * lp.sum(axis=-1)
'''


@pytest.mark.parametrize("function,boxes", [
    ("softmax", ["--callable", "boxes:softmax", "--library", "scipy"]),
    ("log_softmax", ["--library", "scipy"]),
    ("logsumexp", ["--callable", "boxes:logsumexp"]),
    ("softmax_backward", ["--callable", "boxes:softmax_backward"]),
    ("smoothed_cross_entropy", ["--callable", "boxes:smoothed"])])
def test_black_boxes_run_once_on_the_whole_vector_beside_pieces(capsys, monkeypatch, tmp_path, function,
                                                                boxes):
    """A callable or a library is given the whole long vector once (as a model would give it), and its
    outputs are judged piece by piece beside the built-ins' pieces: the figures, statuses, inferred
    causes (an exp overflow named in every piece from the vector's maximum, which one piece holds),
    flags and first failures of the whole vector's evaluation; label smoothing's black boxes with
    their inferred causes from its sums over the whole vector (a sum of -log p beyond float16)."""
    pytest.importorskip("scipy")
    (tmp_path / "boxes.py").write_text(_BOXES)
    rng = np.random.default_rng(8)
    x = rng.normal(0, 3, (2, 1500)).astype(np.float32)
    x[0, 1200] = 12.5  # exp(12.5) overflows float16 (in the last pieces only)
    x[1, 100:400] = -np.inf  # a mask
    x[1, 1000] = 25.0
    path = tmp_path / "x.npy"
    np.save(path, x)
    extra = ["--cotangent", "normal"] if function == "softmax_backward" else []
    if function == "smoothed_cross_entropy":  # (two finite vectors: n -log p_j ~ 1500 x 25 > 65504?)
        extra = ["--target", "5"]
        x[1, 100:400] = -7.0
        x[0, 1200] = 60.0  # its -log p_j are about 60: their sum beyond float16
        np.save(path, x)
    if function == "softmax_backward":
        x[1, 100:400] = -7.0  # (the gradients go in pieces where every entry is finite)
        np.save(path, x)
    argv = ["audit", "--function", function, "--impl", "stable", *boxes, "--input", path,
            "--dtype", "float16", "--dtype", "float32", "--format", "json", "--jobs", "1", *extra]
    calls = []
    monkeypatch.syspath_prepend(str(tmp_path))
    orig = vector.Piece.black_box

    def spy(self, impl, args, run):
        def counted(xc, arg):
            calls.append((impl.key, self.vec.key, self.fmt.name, xc.shape))
            return run(xc, arg)
        return orig(self, impl, args, counted)

    monkeypatch.setattr(vector.Piece, "black_box", spy)
    code, out, err, used = run(capsys, monkeypatch, *argv, block=256)
    assert code in (0, 1), err
    assert len(set(used)) > 4 and calls  # in pieces, the black boxes among them
    n_boxes = len(boxes) // 2
    # each box once per vector and format, on all of its values
    assert len(calls) == len(set(calls)) == 2 * 2 * n_boxes and {c[3] for c in calls} == {(1, 1500)}
    monkeypatch.syspath_prepend(str(tmp_path))
    code2, out2, err2, used2 = run(capsys, monkeypatch, *argv, block=256, pieces=False)
    assert code2 == code and not used2, err2
    a, b = json.loads(out), json.loads(out2)
    assert len(a["results"]) == 2 * (1 + n_boxes)
    for ra, rb in zip(a["results"], b["results"]):
        for key in ("counts", "causes", "max_ulp", "max_rel", "flags", "status", "passed", "reasons"):
            assert ra.get(key) == rb.get(key), (ra["impl"], ra["dtype"], key, ra.get(key), rb.get(key))
        # (the vector, longer than a block, shown by its first values and the element's input)
        assert ra.get("first_failure") == rb.get("first_failure"), (ra["impl"], ra["dtype"])
    if function == "smoothed_cross_entropy":  # row 0's sum of -log p_j overflows float16: named so
        box = [r for r in a["results"] if r["impl"] == "boxes:smoothed" and r["dtype"] == "float16"][0]
        assert box["causes"] == {"sum_overflow": 1} and box["cause_inferred"], box
    if function == "softmax":  # the callable's exps overflow: in every piece the zeros are named by it
        naive = [r for r in a["results"] if r["impl"] == "boxes:softmax" and r["dtype"] == "float16"][0]
        assert naive["causes"].get("exp_overflow", 0) > 1300 and naive["cause_inferred"], naive


