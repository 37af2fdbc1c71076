"""The library adapters on the CPU and on a CUDA device: figures and the cost of a call.

Run:  python benchmarks/devices.py [--library torch --library jax] [--function softmax ...]
      [--dtype float16 ...] [--spreads 1,10,30] [--calls 4]

Prints, in one run, for each library: the time of each of ``--calls`` isolated calls of its
softmax (and softmax_backward) on a 459 x 1000 float16 batch, on each device (the first call
forks the child and sets the library up; the others reuse it), then, for each function and format,
``numstab audit --library L --device D --mask none,-inf``'s max ULP error, failing elements and
wall time per device side by side. A device the machine lacks is reported in one line and
skipped. Not a test: the figures depend on the library versions, the timings on the machine. The
README's "Measured on a GPU" table came from these audits on an H100.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

DEVICES = ("cpu", "cuda")


def call_times(library: str, device: str, calls: int) -> list[str] | None:
    """Lines of per-call times, or None where the library cannot use the device (said once)."""
    from numstab.errors import UsageError
    from numstab.libraries import library_impls

    lines = []
    x = np.random.default_rng(0).normal(size=(459, 1000)).astype(np.float16)
    for function in ("softmax", "softmax_backward"):
        try:
            impls = library_impls(library, function, device=device)
        except UsageError as exc:
            print(f"  {device}: {exc}")
            return None
        if not impls:
            continue
        ts = []
        for _ in range(calls):
            t = time.perf_counter()
            impls[0].fn(x, None) if function == "softmax" else impls[0].fn(x, None, np.ones_like(x))
            ts.append(time.perf_counter() - t)
        lines.append(f"  {device:5s} {function:17s} s per call: " + ", ".join(f"{v:.3f}" for v in ts))
    return lines


def audit(library: str, device: str, function: str, dtypes, spreads: str):
    argv = [sys.executable, "-m", "numstab.cli", "audit", "--library", library, "--device", device,
            "--function", function, "--spreads", spreads, "--mask", "none,-inf", "--quiet",
            "--format", "json"]
    for d in dtypes:
        argv += ["--dtype", d]
    t = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - t
    if p.returncode == 2:
        return None, wall, (p.stderr.strip().splitlines() or ["exit 2"])[-1]
    d = json.loads(p.stdout)
    rows = {}
    for r in d["results"]:
        bad = {k: v for k, v in r["counts"].items() if v and k != "ok"}
        rows[(r["dtype"], r["mask"])] = f"{r['max_ulp']} ULP {bad or ''} {'PASS' if r['passed'] else 'FAIL'}"
    return rows, wall, d["meta"].get("libraries", {}).get(library)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library", action="append", default=None)
    ap.add_argument("--function", action="append", default=None)
    ap.add_argument("--dtype", action="append", default=None)
    ap.add_argument("--spreads", default="1,10,30")
    ap.add_argument("--calls", type=int, default=4)
    a = ap.parse_args()
    libraries = a.library or ["torch", "jax"]
    functions = a.function or ["softmax", "log_softmax", "cross_entropy"]
    dtypes = a.dtype or ["float16", "bfloat16", "float32", "float64"]
    for lib in libraries:
        print(f"{lib}: isolated calls (a 459 x 1000 float16 batch)")
        devices = []
        for dev in DEVICES:
            lines = call_times(lib, dev, a.calls)
            if lines is not None:
                devices.append(dev)
                print("\n".join(lines))
        for f in functions:
            res = {dev: audit(lib, dev, f, dtypes, a.spreads) for dev in devices}
            walls = [f"{dev} {w:.1f} s ({info})" for dev, (_, w, info) in res.items()]
            print(f"{lib} {f}: " + "; ".join(walls))
            keys = next((list(r) for r, _, _ in res.values() if r), [])
            for k in keys:
                cells = [(r or {}).get(k, "-") for r, _, _ in res.values()]
                print(f"  {k[0]:9s} mask {k[1]:5s} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
