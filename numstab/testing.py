"""Helpers for test suites: assert that an implementation is stable.

    from numstab.testing import assert_stable
    assert_stable(my_softmax, function="softmax", dtypes=("float16",), max_ulp=4)
"""

from __future__ import annotations

import json


def assert_stable(fn, function: str = "softmax", dtypes=("float16",), max_ulp=None,
                  fail_on=("overflow", "nan"), accumulate: str = "sequential", offsets=None,
                  spreads=None, sizes=None, trials=None, seed: int = 0, input=None, targets=None,
                  target=None, compute: str = "float32"):
    """Raise AssertionError, with the failing input and figures, if fn breaks a limit.

    ``fn`` takes a numpy array of the target dtype (vectors along the last axis;
    plus ``target`` for cross_entropy) and returns an array of the same dtype.
    ``max_ulp`` (a number) also fails on a finite ULP error above it. ``compute``: the precision
    model of built-in implementations (a callable computes as it does).
    Returns the audit report when everything passes.
    """
    from .commands.audit import run_audit
    from .commands.audit_config import grid_items, make_spec

    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", "callable")
    grid = grid_items(offsets, spreads, sizes, trials, seed)
    spec = make_spec(function, callables=((name, fn),), dtypes=tuple(dtypes),
                     max_ulp=max_ulp, fail_on=tuple(fail_on), accumulate=accumulate, input=input,
                     targets=targets, target=target, grid=grid, compute=compute)
    report = run_audit([spec])
    failed = [r for r in report.results if not r.passed]
    if failed:
        lines = [f"{name} is not stable as {function}:"]
        for r in failed:
            lines.append(f"  {r.dtype}: " + "; ".join(r.reasons)
                         + f" (max ULP {r.max_ulp:.3g}, counts {dict(r.counts)})")
            if r.first_failure:
                lines.append("    worst failing input: " + json.dumps(r.first_failure))
        raise AssertionError("\n".join(lines))
    return report
