"""numstab benchmarks: reference throughput, kernel throughput, command wall times.

Run:  python benchmarks/bench.py [--quick]

Prints, in one run on the same inputs: elements/s of a plain per-element mpmath
softmax loop, of numstab's reference (proven float64 fast path + mpmath fallback,
all four functions at once) and of numpy evaluating the stable softmax kernel;
their ratios; how numstab's reference scales (1e4, 1e5, 1e6 elements); and the
wall time of `numstab compare --dtype float16` and of `python -c "import numstab"`.
Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

from numstab.formats import FORMATS
from numstab.functions import REGISTRY
from numstab.reference import MP_TIER
from numstab.reference.escalation import compute_reference as reference


def logits(fmt, elements: int, n: int = 100, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    b = elements // n
    x = rng.standard_normal((b, n)) * 3 + rng.uniform(-8, 8, (b, 1))
    return fmt.round(x)


def plain_mpmath(x: np.ndarray, prec: int = 64) -> float:
    """The plain loop: the same reference values, mpmath element by element. Returns seconds.

    Per vector L = logsumexp(x); per element log_softmax = x_i - L and softmax =
    exp(x_i - L), as floats -- at one fixed precision, with no escalation and no
    checks, so it is cheaper than a real reference.
    """
    import mpmath

    t0 = time.perf_counter()
    with mpmath.mp.workprec(prec):
        for row in x:
            xs = [mpmath.mpf(float(v)) for v in row]
            m = max(xs)
            L = m + mpmath.log(mpmath.fsum(mpmath.exp(v - m) for v in xs))
            _ = [(float(v - L), float(mpmath.exp(v - L))) for v in xs]
    return time.perf_counter() - t0


def numstab_reference(fmt, x: np.ndarray, repeat: int = 3) -> tuple[float, int]:
    """Best of `repeat` runs of numstab's reference (all four functions). Returns (s, mpmath rows)."""
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        _, tier = reference(fmt, x, np.zeros(len(x), dtype=np.int64), "auto")
        best = min(best, time.perf_counter() - t0)
    return best, int(np.sum(tier == MP_TIER))


def kernel(fmt, x: np.ndarray, repeat: int = 5) -> float:
    xc = fmt.cast(x)
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        with np.errstate(all="ignore"):
            REGISTRY["softmax"]["stable"](xc, "sequential")
        best = min(best, time.perf_counter() - t0)
    return best


def wall(cmd: list[str], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1e4 elements instead of 1e5, no 1e6 point")
    args = ap.parse_args()
    size = 10_000 if args.quick else 100_000
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}")
    print(f"\n== reference throughput on {size:,} logits (vectors of n=100) ==")
    print(f"{'format':10} {'plain mpmath el/s':>18} {'numstab ref el/s':>17} {'mpmath rows':>12} "
          f"{'numpy stable el/s':>18} {'ref / plain':>12} {'numpy / ref':>12}")
    for name in ("float16", "float32"):
        f = FORMATS[name]
        x = logits(f, size)
        tp = plain_mpmath(x)
        tr, rows = numstab_reference(f, x)
        tk = kernel(f, x)
        print(f"{name:10} {size / tp:18,.0f} {size / tr:17,.0f} {rows:12d} {size / tk:18,.0f} "
              f"{tp / tr:11.0f}x {tr / tk:11.1f}x")
    print("\n== numstab reference scaling (float16, n=100) ==")
    for el in (10_000, 100_000) + (() if args.quick else (1_000_000,)):
        f = FORMATS["float16"]
        x = logits(f, el, seed=1)
        tr, rows = numstab_reference(f, x)
        print(f"{el:>10,} elements: {tr:7.3f} s  ({el / tr:12,.0f} el/s, {rows} rows by mpmath)")
    exe = os.path.join(os.path.dirname(sys.executable), "numstab")
    print("\n== wall time (median of 5) ==")
    print(f"numstab compare --dtype float16 : {wall([exe, 'compare', '--dtype', 'float16']):.3f} s")
    print(f"python -c 'import numstab'      : {wall([sys.executable, '-c', 'import numstab']):.3f} s")
    print(f"python -c 'import numstab.cli'  : {wall([sys.executable, '-c', 'import numstab.cli']):.3f} s")


if __name__ == "__main__":
    main()
