"""Which precision model (--compute, --accumulate) reproduces torch's and jax's CPU kernels bit for bit.

For float16 and bfloat16 logits (N(0, s) rows, s in 1, 4, 16; n in 2, 10, 100, 1000) each
library function is called through numstab's own adapters (numstab.libraries: a forked child,
the result rounded into the format) and compared output by output with numstab's built-in
implementation of the same formula under every (compute, accumulate) pair, and under the
variants the libraries were seen to use (the README's "Precision model" table):

* ``float32 + row sum in the format``: float32 arithmetic, but the row's sum of exp(x - max)
  and its log are rounded to the format (torch's CPU log_softmax for half types);
* ``format + reciprocal``: every step in the format with float32 sums, the division done as a
  multiplication by the reciprocal of the rounded sum, itself rounded to the format (XLA's
  float16 softmax).

    python benchmarks/precision_models.py [--rows 100] [--library torch --library jax]

Prints one line per library, format, function and model: outputs equal / outputs compared.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from numstab.formats import get_format
from numstab.functions import REGISTRY
from numstab.libraries import library_impls

#: the built-in implementation each library function computes (same formula)
SAME = {"softmax": "stable", "log_softmax": "stable", "logsumexp": "stable", "cross_entropy": "log_softmax"}
SIZES = (2, 10, 100, 1000)
SCALES = (1.0, 4.0, 16.0)


def logits(fmt, n: int, rows: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng([seed, n])
    s = np.array(SCALES)[rng.integers(0, len(SCALES), rows)][:, None]
    return fmt.round(rng.standard_normal((rows, n)) * s)


def variants(fn: str, xc: np.ndarray, target, fmt) -> dict:
    """The library-specific variants, written out here in numpy (float32 steps)."""
    out = {}
    x32 = xc.astype(np.float32)
    with np.errstate(all="ignore"):
        m = x32.max(axis=-1, keepdims=True)
        d = x32 - m
        if fn in ("log_softmax", "cross_entropy"):
            s = np.sum(np.exp(d), axis=-1, keepdims=True, dtype=np.float32)
            ls = np.log(fmt.cast(s).astype(np.float32)).astype(fmt.dtype).astype(np.float32)
            y = d - ls
            if fn == "cross_entropy":
                y = -np.take_along_axis(y, np.asarray(target)[:, None], axis=-1)[:, 0]
            out["float32 + row sum in the format"] = fmt.cast(y)
        if fn == "softmax":
            e = np.exp(fmt.cast(d).astype(np.float32)).astype(fmt.dtype)  # x - max and exp in the format
            s = np.sum(e.astype(np.float32), axis=-1, keepdims=True, dtype=np.float32).astype(fmt.dtype)
            r = (np.float32(1) / s.astype(np.float32)).astype(fmt.dtype)  # 1 / sum, in the format
            out["format + reciprocal"] = (e.astype(np.float32) * r.astype(np.float32)).astype(fmt.dtype)
    return out


def measure(library: str, dtypes, functions, rows: int) -> list[tuple]:
    lines = []
    for fn in functions:
        impls = library_impls(library, fn)
        if not impls:
            continue
        lib = impls[0]
        ours = REGISTRY[fn][SAME[fn]]
        for dt in dtypes:
            fmt = get_format(dt)
            tally: dict = {}
            for n in SIZES:
                x = logits(fmt, n, rows)
                xc = fmt.cast(x)
                target = np.random.default_rng([1, n]).integers(0, n, rows)
                args = (target,) if fn == "cross_entropy" else ()
                want = np.asarray(lib.fn(xc, "sequential", *args), dtype=np.float64)
                models = {}
                with np.errstate(all="ignore"):
                    for compute in ("float32", "format"):
                        for acc in ("sequential", "pairwise", "float32"):
                            models[f"{compute} / {acc}"] = ours(xc, acc, *(args or (None,)), compute=compute)
                    models.update(variants(fn, xc, target, fmt))
                for name, y in models.items():
                    y = np.asarray(y, dtype=np.float64)
                    same = (y == want) | (np.isnan(y) & np.isnan(want))
                    eq, tot = tally.get(name, (0, 0))
                    tally[name] = (eq + int(same.sum()), tot + same.size)
                    eqn, _ = tally.get((name, n), (0, 0))
                    tally[(name, n)] = (eqn + int(same.sum()), same.size)
            for name, (eq, tot) in sorted(((k, v) for k, v in tally.items() if isinstance(k, str)),
                                          key=lambda kv: -kv[1][0]):
                per_n = ", ".join(f"n={n}: {tally[(name, n)][0]}/{tally[(name, n)][1]}" for n in SIZES)
                lines.append((library, dt, fn, name, eq, tot, per_n))
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100)
    ap.add_argument("--library", action="append", choices=("torch", "jax"))
    ap.add_argument("--function", action="append", choices=tuple(SAME))
    a = ap.parse_args(argv)
    for library in a.library or ("torch", "jax"):
        for line in measure(library, ("float16", "bfloat16"), a.function or tuple(SAME), a.rows):
            lib, dt, fn, name, eq, tot, per_n = line
            print(f"{lib:6s} {dt:9s} {fn:14s} {name:34s} {eq:6d}/{tot:<6d} {100 * eq / tot:6.2f}%  ({per_n})")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
