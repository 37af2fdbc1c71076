"""Temperature: softmax(x / T) with the division in the format (issue 12, a sampler's case).

Expected values are computed here with mpmath and numpy, independently of numstab's reference.
"""

import json

import mpmath
import numpy as np

from numstab.cli import main
from numstab.engine import evaluate
from numstab.formats import FORMATS
from numstab.functions import REGISTRY
from numstab.results import CAUSES, STATUSES

F16, F32 = FORMATS["float16"], FORMATS["float32"]


def test_logit_over_a_tiny_temperature_overflows_float16_then_nan():
    x = np.array([[11.0625, 0.0]])
    outs, ref, _ = evaluate(F16, x, np.zeros(1, dtype=int), list(REGISTRY["softmax"].values()),
                            temperature=1e-5)
    tf = float(np.float16(1e-5))  # T held in float16: 1.0013580322265625e-05 (subnormal)
    assert tf == 1.0013580322265625e-05 and 11.0625 / tf > 65504  # x / T is inf in float16
    # exact: softmax([q, 0]) = [1 / (1 + e^-q), e^-q / (1 + e^-q)], q = 11.0625 / T_F ~ 1.1e6
    with mpmath.workdps(30):
        q = mpmath.mpf(11.0625) / mpmath.mpf(tf)
        assert mpmath.exp(-q) < mpmath.mpf(2) ** -25  # rounds to [1, 0] in float16
    assert list(ref["softmax"].rounded[0]) == [1.0, 0.0]
    for o in outs:
        st = [STATUSES[s] for s in o.status[0]]
        assert st[0] == "nan" and CAUSES[o.cause[0, 0] - 1] == "sum_overflow", o.impl.name  # x / T overflowed
    naive = next(o for o in outs if o.impl.name == "naive")
    assert naive.y[0, 1] == 0.0 and STATUSES[naive.status[0, 1]] == "ok"  # 0 / inf: exact here


def test_a_moderate_temperature_is_exact():
    x = np.array([[2.0, 1.0, -0.5]])
    outs, ref, _ = evaluate(F32, x, np.zeros(1, dtype=int), [REGISTRY["softmax"]["stable"]], temperature=0.5)
    with mpmath.workdps(40):
        z = [mpmath.mpf(4), mpmath.mpf(2), mpmath.mpf(-1)]
        s = sum(mpmath.exp(v) for v in z)
        want = [float(np.float32(float(mpmath.exp(v) / s))) for v in z]
    assert list(ref["softmax"].rounded[0]) == want
    assert STATUSES[outs[0].status.max()] == "ok"


def test_inspect_and_audit_take_temperature(capsys, tmp_path):
    assert main(["inspect", "softmax", "--dtype", "float16", "--temperature", "1e-5", "--impl", "stable",
                 "--format", "json", "--", "11.0625", "0"]) == 0
    d = json.loads(capsys.readouterr().out)["results"][0]
    assert d["temperature"] == 1e-5 and d["inputs"] == [11.0625, 0.0]
    assert d["scaled_inputs"][0] == 11.0625 / float(np.float16(1e-5))
    assert d["element_status"] == ["nan", "nan"] and "x / T overflows float16" in d["verdict"]
    f = tmp_path / "logits.npy"
    np.save(f, np.array([[11.0625, 0.0], [0.5, 0.0]], dtype=np.float16))  # 0.5 / T_F = 49932: finite
    code = main(["audit", "--function", "softmax", "--input", str(f), "--dtype", "float16", "--impl",
                 "stable", "--temperature", "1e-5", "--format", "json"])
    r = json.loads(capsys.readouterr().out)["results"][0]
    assert code == 1 and r["counts"]["nan"] == 2 and r["worst"][0]["row"] == [0]
    assert main(["inspect", "softmax", "--temperature", "0", "--", "1"]) == 2
    assert "must be a finite number > 0" in capsys.readouterr().err
