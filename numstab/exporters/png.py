"""PNG plots of a compare run (matplotlib, an optional extra: pip install 'numstab[plots]').

For each format and function: max ULP error (log scale) against the input offset,
one line per implementation and one panel per vector length n, with exp's overflow
and underflow thresholds as vertical lines and the regions beyond them shaded
(failures are drawn as crosses along the top); and a heat map of the status of
every grid cell over (offset, n), one panel per implementation.
"""

from __future__ import annotations

import io
import math

from ..errors import UsageError
from ..results import STATUSES, CompareRun

STATUS_COLORS = ("#4caf50", "#80deea", "#ffd54f", "#ba68c8", "#e53935", "#212121")


def require_matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("PNG plots need matplotlib: pip install 'numstab[plots]' "
                         "(or choose --formats without png)") from None
    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72)
    return buf.getvalue()


def plot_names(run: CompareRun) -> list[tuple[str, str, str]]:
    """(file name, dtype, function) of every plot the run gives."""
    pairs = list(dict.fromkeys((r.dtype, r.function) for r in run.results))
    out = []
    for dt, fn in pairs:
        out.append((f"{dt}_{fn}_ulp.png", dt, fn))
        out.append((f"{dt}_{fn}_status.png", dt, fn))
    return out


def make_plots(run: CompareRun) -> dict[str, bytes]:
    plt = require_matplotlib()
    ths = {t["dtype"]: t for t in run.thresholds}
    out = {}
    for name, dt, fn in plot_names(run):
        rs = [r for r in run.results if r.dtype == dt and r.function == fn]
        at = next((r.target_at for r in rs if r.target_at), None)  # one place of the target per plot
        rs = [r for r in rs if r.target_at == at]
        if name.endswith("_ulp.png"):
            out[name] = _ulp_plot(plt, rs, ths.get(dt), dt, fn, run.meta.get("tolerance", 4.0))
        else:
            out[name] = _status_plot(plt, rs, dt, fn)
    return out


def _ulp_plot(plt, rs, th, dt, fn, tol) -> bytes:
    sizes = sorted({r.n for r in rs})
    impls = list(dict.fromkeys(r.impl for r in rs))
    spread = min(r.spread for r in rs)
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 3.4), sharey=True, squeeze=False)
    finite = [r.max_ulp for r in rs if math.isfinite(r.max_ulp) and r.max_ulp > 0]
    top = max(finite + [10.0]) * 10
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, n in zip(axes[0], sizes):
        offs = sorted({r.offset for r in rs if r.n == n})
        lo, hi = min(offs), max(offs)
        if th:
            ovf, unf = float(th["exp_overflow_x"]), float(th["exp_underflow_x"])
            span = hi - lo or 1.0
            ax.axvspan(ovf, max(hi, ovf) + span, color="#e53935", alpha=0.08, lw=0)
            ax.axvspan(min(lo, unf) - span, unf, color="#1e88e5", alpha=0.08, lw=0)
            ax.axvline(ovf, color="#e53935", ls="--", lw=1, label="exp overflow" if n == sizes[0] else None)
            ax.axvline(unf, color="#1e88e5", ls="--", lw=1, label="exp underflow" if n == sizes[0] else None)
        ax.axhline(tol, color="0.5", ls=":", lw=1)
        for k, impl in enumerate(impls):
            c = colors[k % len(colors)]
            pts = sorted((r.offset, r.max_ulp, r.status) for r in rs
                         if r.n == n and r.impl == impl and r.spread == spread)
            xs = [p[0] for p in pts if math.isfinite(p[1])]
            ys = [max(p[1], 1e-3) for p in pts if math.isfinite(p[1])]
            ax.plot(xs, ys, marker="o", ms=3, lw=1.2, color=c, label=impl if n == sizes[0] else None)
            bad = [p[0] for p in pts if not math.isfinite(p[1]) or p[2] in ("overflow", "nan")]
            ax.plot(bad, [top * (1.6 ** (k + 1))] * len(bad), ls="none", marker="x", color=c, ms=6)
        ax.set_yscale("log")
        pad = 0.03 * (hi - lo or 1.0)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_title(f"n = {n}", fontsize=9)
        ax.set_xlabel("input offset")
        ax.grid(alpha=0.3, which="major")
    axes[0][0].set_ylabel("max ULP error (x: failure)")
    fig.suptitle(f"{fn} in {dt}: max ULP error vs offset (spread {spread:g})", fontsize=10)
    fig.legend(loc="lower center", ncol=len(impls) + 2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    data = _png(fig)
    plt.close(fig)
    return data


def _status_plot(plt, rs, dt, fn) -> bytes:
    import numpy as np
    from matplotlib.colors import BoundaryNorm, ListedColormap

    impls = list(dict.fromkeys(r.impl for r in rs))
    sizes = sorted({r.n for r in rs})
    offs = sorted({r.offset for r in rs})
    fig, axes = plt.subplots(1, len(impls), figsize=(2.9 * len(impls), 2.6), sharey=True, squeeze=False)
    cmap = ListedColormap(STATUS_COLORS)
    norm = BoundaryNorm(np.arange(len(STATUSES) + 1) - 0.5, len(STATUSES))
    for ax, impl in zip(axes[0], impls):
        grid = np.full((len(sizes), len(offs)), np.nan)
        for r in rs:
            if r.impl == impl:
                i, j = sizes.index(r.n), offs.index(r.offset)
                grid[i, j] = max(STATUSES.index(r.status), 0 if np.isnan(grid[i, j]) else grid[i, j])
        ax.imshow(grid, aspect="auto", cmap=cmap, norm=norm, origin="lower", interpolation="nearest",
                  extent=(-0.5, len(offs) - 0.5, -0.5, len(sizes) - 0.5))
        step = max(1, len(offs) // 5)
        ax.set_xticks(range(0, len(offs), step), [f"{o:.3g}" for o in offs[::step]], fontsize=7)
        ax.set_yticks(range(len(sizes)), [str(n) for n in sizes], fontsize=7)
        ax.set_title(impl, fontsize=9)
        ax.set_xlabel("offset", fontsize=8)
    axes[0][0].set_ylabel("n", fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in STATUS_COLORS]
    fig.legend(handles, STATUSES, loc="lower center", ncol=len(STATUSES), fontsize=7, frameon=False)
    fig.suptitle(f"{fn} in {dt}: worst status per grid cell", fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 0.92))
    data = _png(fig)
    plt.close(fig)
    return data


def report_files(run: CompareRun, plots: dict) -> dict:
    return {f"plots/{name}": data for name, data in plots.items()}
