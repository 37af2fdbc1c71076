"""numstab benchmarks: reference throughput, kernel throughput, command wall times.

Run:  python benchmarks/bench.py [--quick] [--logits | --stream MB | --long M]

Prints, in one run on the same inputs: elements/s of a plain per-element mpmath
softmax loop, of numstab's reference (proven float64 fast path + mpmath fallback,
all four functions at once) and of numpy evaluating the stable softmax kernel;
their ratios; how numstab's reference scales (1e4, 1e5, 1e6 elements); the
streamed path (elements/s and peak memory of `audit --input` on a generated .npy); and the
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
    """Best of `repeat` runs of numstab's reference (all four functions). Returns (s, elements
    computed by mpmath)."""
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        _, esc = reference(fmt, x, np.zeros(len(x), dtype=np.int64), "auto")
        best = min(best, time.perf_counter() - t0)
    return best, int(esc.stats()["elements"][-1])


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


def real_logits(path: str, rows: int, vocab: int, seed: int = 0) -> None:
    """Language-model-like logits as float32 .npy: N(0, 3) plus 3 outliers per row near +25."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, vocab)) * 3).astype(np.float32)
    for b in range(rows):
        x[b, rng.integers(0, vocab, 3)] = 25 + rng.uniform(-1, 1, 3)
    np.save(path, x)


_CHILD = """
import resource, sys, time, json
import numpy as np
from numstab.engine import evaluate
from numstab.formats import FORMATS
from numstab.functions import REGISTRY
from numstab.inputs import round_inputs
fmt = FORMATS[sys.argv[2]]
x = round_inputs(fmt, np.load(sys.argv[1]).astype(np.float64))
times = []
for _ in range(4):  # the first call in a fresh process, then the same batch again 3 times (warm)
    t0 = time.perf_counter()
    outs, ref, esc = evaluate(fmt, x, np.zeros(len(x), dtype=np.int64), [REGISTRY["softmax"]["stable"]])
    times.append(time.perf_counter() - t0)
st = esc.stats()
print(json.dumps({"s": times[0], "again": min(times[1:]), "median": sorted(times[1:])[1],
                  "elements": st["elements"], "tiers": st["tiers"],
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def logits_section(quick: bool) -> None:
    """elements/s of `inspect softmax --impl stable` on real-logit-like files, per format: the
    engine in-process (kernel traced, reference, figures, causes) and the whole command."""
    import json
    import tempfile

    shapes = ((4, 32_000), (2, 128_000)) if quick else ((16, 32_000), (8, 128_000))
    print("\n== real logits: inspect softmax --impl stable (float32 .npy, N(0,3) + outliers near +25) ==")
    print("engine: evaluate() in a fresh process (one core), its first call and the same batch again, "
          "3 times (warm: imports done, memory already faulted in; the best call and the median, which "
          "a shared machine's load moves by 10-20%); command: `numstab inspect` wall time, "
          "peak RSS; load: the machine's 1-minute load average after the row")
    print(f"{'vocab':>7} {'rows':>5} {'format':9} {'engine el/s':>12} {'again el/s':>11} {'median':>10} "
          f"{'command el/s':>13} {'peak MB':>8} {'by mpmath':>10} {'load':>5}  elements per tier")
    with tempfile.TemporaryDirectory() as tmp:
        for rows, vocab in shapes:
            path = os.path.join(tmp, f"logits_{vocab}.npy")
            real_logits(path, rows, vocab)
            el = rows * vocab
            exe = os.path.join(os.path.dirname(sys.executable), "numstab")
            for name in ("float16", "bfloat16", "float32", "float64"):
                r = subprocess.run([sys.executable, "-c", _CHILD, path, name], capture_output=True, text=True,
                                   check=True)
                d = json.loads(r.stdout)
                t0 = time.perf_counter()
                p = subprocess.Popen([exe, "inspect", "softmax", "--impl", "stable", "--input", path,
                                      "--dtype", name, "--format", "json"], stdout=subprocess.DEVNULL)
                _, status, usage = os.wait4(p.pid, 0)  # this command's own peak resident size
                wall_s = time.perf_counter() - t0
                p.returncode = os.waitstatus_to_exitcode(status)
                assert p.returncode == 0, p.returncode
                peak = usage.ru_maxrss * 1024
                by_mp = d["elements"][-1] / el
                tiers = ", ".join(f"{t.split('(')[0]}={c}" for t, c in zip(d["tiers"], d["elements"]))
                print(f"{vocab:>7,} {rows:>5} {name:9} {el / d['s']:12,.0f} {el / d['again']:11,.0f} "
                      f"{el / d['median']:10,.0f} "
                      f"{el / wall_s:13,.0f} "
                      f"{peak / 2**20:8.0f} {by_mp:10.1e} {os.getloadavg()[0]:5.1f}  {tiers}")


def write_logits(path: str, rows: int, vocab: int, seed: int = 0) -> None:
    """real_logits written a block at a time into a memory-mapped .npy (files larger than memory)."""
    from numpy.lib.format import open_memmap

    a = open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, vocab))
    rng = np.random.default_rng(seed)
    step = max(1, (1 << 24) // vocab)
    for r in range(0, rows, step):
        b = (rng.standard_normal((min(step, rows - r), vocab)) * 3).astype(np.float32)
        for i in range(b.shape[0]):
            b[i, rng.integers(0, vocab, 3)] = 25 + rng.uniform(-1, 1, 3)
        a[r:r + b.shape[0]] = b
    a.flush()
    del a


def _tree_rss(pid: int) -> tuple[int, int]:
    """(sum, largest) resident bytes of a process and its descendants, from /proc."""
    def tree(p):
        out = [p]
        try:
            with open(f"/proc/{p}/task/{p}/children") as fh:
                for c in fh.read().split():
                    out += tree(int(c))
        except OSError:
            pass
        return out

    sizes = []
    for q in tree(pid):
        try:
            with open(f"/proc/{q}/status") as fh:
                sizes += [int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:")]
        except OSError:
            pass
    return sum(sizes), max(sizes, default=0)


def stream_section(megabytes: int) -> None:
    """The streamed path: `numstab audit --input` of a float32 .npy of the given size (vocabulary
    32k), read a block of rows at a time; elements/s and the peak resident memory of the whole
    process tree (sampled every 0.1 s) and of its largest process, for --jobs 1 and 2."""
    import tempfile

    vocab = 32_000
    rows = max(1, megabytes * 2**20 // (4 * vocab))
    el = rows * vocab
    exe = os.path.join(os.path.dirname(sys.executable), "numstab")
    print(f"\n== streamed input: audit softmax --impl stable, float16, a {rows * vocab * 4 / 2**20:,.0f} MB "
          f"float32 .npy ({rows:,} x {vocab:,}) ==")
    print(f"{'jobs':>4} {'el/s':>12} {'wall s':>8} {'peak MB (tree)':>15} {'peak MB (largest process)':>26}")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "stream.npy")
        write_logits(path, rows, vocab)
        for jobs in (1, 2):
            t0 = time.perf_counter()
            p = subprocess.Popen([exe, "audit", "--function", "softmax", "--impl", "stable", "--input", path,
                                  "--dtype", "float16", "--format", "json", "--quiet", "--jobs", str(jobs)],
                                 stdout=subprocess.DEVNULL)
            peak_sum = peak_one = 0
            while p.poll() is None:
                a, b = _tree_rss(p.pid)
                peak_sum, peak_one = max(peak_sum, a), max(peak_one, b)
                time.sleep(0.1)
            wall_s = time.perf_counter() - t0
            assert p.returncode in (0, 1), p.returncode
            print(f"{jobs:>4} {el / wall_s:12,.0f} {wall_s:8.1f} {peak_sum / 2**20:15.0f} "
                  f"{peak_one / 2**20:26.0f}")


def long_section(millions: float) -> None:
    """One long vector: `numstab inspect FUNCTION --input long.npy` of a single float32 row (N(0, 3),
    3 outliers near +25) of the given number of millions of values: softmax --impl stable in
    float16 and float32, --impl online in float16, softmax_backward --impl fused with a normal
    cotangent in float16 and float32 (with reductions: in pieces of a block, numstab.vector),
    sigmoid --impl
    stable in float16 and binary_cross_entropy --impl logits in bfloat16 with one label per element
    from a .npy (elementwise: streamed in pieces of a block); wall time, peak resident memory (sampled every
    0.1 s) and bytes per element."""
    import tempfile

    n = int(millions * 1_000_000)
    exe = os.path.join(os.path.dirname(sys.executable), "numstab")
    print(f"\n== one long vector: inspect, a float32 .npy of 1 x {n:,} ==")
    print(f"{'function':22} {'impl':7} {'format':9} {'wall s':>8} {'el/s':>12} {'peak MB':>9} "
          f"{'bytes/el':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        path, labels = os.path.join(tmp, "long.npy"), os.path.join(tmp, "labels.npy")
        rng = np.random.default_rng(0)
        x = (rng.standard_normal(n) * 3).astype(np.float32)
        x[rng.integers(0, n, 3)] = 25 + rng.uniform(-1, 1, 3)
        np.save(path, x)
        del x
        np.save(labels, rng.uniform(0, 1, n).astype(np.float32))
        runs = [("softmax", "stable", "float16", []), ("softmax", "stable", "float32", []),
                ("softmax", "online", "float16", []),
                ("softmax_backward", "fused", "float16", ["--cotangent", "normal"]),
                ("softmax_backward", "fused", "float32", ["--cotangent", "normal"]),
                ("sigmoid", "stable", "float16", []),
                ("binary_cross_entropy", "logits", "bfloat16", ["--targets", labels])]
        for function, impl, fmt, extra in runs:
            t0 = time.perf_counter()
            p = subprocess.Popen([exe, "inspect", function, "--impl", impl, "--input", path, *extra,
                                  "--dtype", fmt, "--format", "json", "--quiet", "--jobs", "1"],
                                 stdout=subprocess.DEVNULL)
            peak = 0
            while p.poll() is None:
                peak = max(peak, _tree_rss(p.pid)[0])
                time.sleep(0.1)
            wall_s = time.perf_counter() - t0
            assert p.returncode in (0, 1), p.returncode
            print(f"{function:22} {impl:7} {fmt:9} {wall_s:8.1f} {n / wall_s:12,.0f} {peak / 2**20:9.0f} "
                  f"{peak / n:9.0f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1e4 elements instead of 1e5, no 1e6 point")
    ap.add_argument("--logits", action="store_true", help="only the real-logits section")
    ap.add_argument("--stream", type=int, metavar="MB",
                    help="only the streamed-input section, on a generated file of MB megabytes")
    ap.add_argument("--long", type=float, metavar="M",
                    help="only the long-vector section: one row of M million values")
    args = ap.parse_args()
    if args.long:
        long_section(args.long)
        return
    if args.logits:
        logits_section(args.quick)
        return
    if args.stream:
        stream_section(args.stream)
        return
    size = 10_000 if args.quick else 100_000
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}")
    print(f"\n== reference throughput on {size:,} logits (vectors of n=100) ==")
    print(f"{'format':10} {'plain mpmath el/s':>18} {'numstab ref el/s':>17} {'mpmath el.':>12} "
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
        print(f"{el:>10,} elements: {tr:7.3f} s  ({el / tr:12,.0f} el/s, {rows} elements by mpmath)")
    logits_section(args.quick)
    stream_section(16 if args.quick else 64)
    exe = os.path.join(os.path.dirname(sys.executable), "numstab")
    print("\n== wall time (median of 5) ==")
    print(f"numstab compare --dtype float16 : {wall([exe, 'compare', '--dtype', 'float16']):.3f} s")
    print(f"python -c 'import numstab'      : {wall([sys.executable, '-c', 'import numstab']):.3f} s")
    print(f"python -c 'import numstab.cli'  : {wall([sys.executable, '-c', 'import numstab.cli']):.3f} s")


if __name__ == "__main__":
    main()
