"""Functions as data: the engine asks the Function record, so a function defined elsewhere (one
module of kernels, one formula module in the reference layer, one registry entry) runs through
evaluate, compare and inspect with no other change. The toy function here, exp(x) elementwise,
has its exact values checked against mpmath directly."""

import math
import sys
import types

import mpmath
import numpy as np
import pytest

from numstab import functions
from numstab.commands.compare import run_compare
from numstab.engine import evaluate
from numstab.formats import FORMATS
from numstab.functions import Function, builtin
from numstab.reference.core import from_interval

F16 = FORMATS["float16"]


def _toy_modules():
    rec = Function("toy_exp", output="elementwise", extra="none", reference="toy_exp_exact",
                   description="exp(x) elementwise")
    builtin(rec, "plain", lambda x, acc, o: o.exp(x), "exp(x) in the format")

    ref = types.ModuleType("numstab.reference.toy_exp_exact")
    ref.FUNCTIONS = ("toy_exp",)

    def fast_block(fmt, x, args):
        u = float(np.finfo(x.dtype).eps) / 2
        with np.errstate(all="ignore"):
            v = np.exp(x)
            return {"toy_exp": from_interval(fmt, v, np.abs(v) * (16 * u + u * np.abs(x)))}

    def enclose(x_row, args_row, prec, fmt_p=64):
        from mpmath.libmp import from_float, mpf_exp

        out = []
        for v in x_row:
            lo, hi = mpf_exp(from_float(float(v)), prec, "f"), mpf_exp(from_float(float(v)), prec, "c")
            out.append((lo, hi, lo, hi))
        return {"toy_exp": out}

    ref.fast_block, ref.enclose = fast_block, enclose
    return rec, ref


@pytest.fixture
def toy(monkeypatch):
    rec, ref = _toy_modules()
    monkeypatch.setitem(sys.modules, ref.__name__, ref)
    monkeypatch.setitem(functions.FUNCTIONS, rec.name, rec)
    monkeypatch.setitem(functions.REGISTRY, rec.name, rec.impls)
    return rec


def _ulp16(r: mpmath.mpf) -> float:
    e = max(int(mpmath.floor(mpmath.log(abs(r), 2))), -14)
    return 2.0 ** (e - 10)


@pytest.mark.parametrize("mode", ["auto", "mpmath"])
def test_a_registered_elementwise_function_is_evaluated(toy, mode):
    x = F16.round(np.array([[0.5, -3.25, 2.0, 11.5], [12.0, 0.0, -20.0, 1.0]]))
    (o,), ref, _ = evaluate(F16, x, None, [toy.impls["plain"]], mode=mode)
    assert o.y.shape == x.shape and ref["toy_exp"].rounded.shape == x.shape
    with np.errstate(over="ignore"):
        y16 = np.exp(x.astype(np.float16)).astype(np.float64)
    for (b, j), v in np.ndenumerate(x):
        r = mpmath.exp(mpmath.mpf(float(v)))
        if math.isinf(y16[b, j]):  # exp(12) = 162755 rounds to inf in float16 (max 65504): right
            assert r > 65520 and o.status[b, j] == 0 and o.ulp[b, j] == 0
            continue
        want = float(abs(mpmath.mpf(float(y16[b, j])) - r) / _ulp16(r))
        assert abs(o.ulp[b, j] - want) <= 0.0005 + 1e-12, (v, o.ulp[b, j], want)


def test_compare_runs_a_registered_function(toy):
    run = run_compare(dtypes=["float16"], functions=["toy_exp"], sizes="4", offsets="0,12", spreads="1",
                      trials=2, jobs=1)
    assert {r.function for r in run.results} == {"toy_exp"}
    by = {r.offset: r for r in run.results}
    # numpy's float16 exp is correctly rounded here: within half an ULP, and inf where exp(x) is
    assert by[0.0].status == by[12.0].status == "ok" and 0 < by[0.0].max_ulp <= 0.5
    assert by[12.0].x_min > 10 and by[12.0].max_ulp <= 0.5


def test_records_say_what_the_engine_needs():
    ce = functions.get("cross_entropy")
    assert ce.per_vector and ce.takes == "target"
    assert functions.get("softmax").output_shape((3, 5)) == (3, 5)
    assert functions.get("logsumexp").output_shape((3, 5)) == (3,)
    with pytest.raises(ValueError):
        Function("bad", output="matrix", extra="none", reference="softmax")
    from numstab.errors import UsageError

    with pytest.raises(UsageError, match="unknown function"):
        functions.get("softmaxx")


def test_inspect_runs_a_registered_function(toy):
    from numstab.commands.inspect import run_inspect

    (d,) = run_inspect("toy_exp", values=["1", "-2"], dtypes=("float16",))["results"]
    assert d["reference"][0].startswith("2.71828182845904523536028")  # e, 25 digits, all right
    assert d["reference"][1].startswith("0.135335283236612691893999")  # exp(-2)
    assert d["status"] == "ok" and "target" not in d and "scalar" not in d
