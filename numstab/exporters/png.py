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


#: Resolution of the PNGs; every figure is at least MIN_WIDTH_IN inches wide (>= 1250 px).
DPI = 100
MIN_WIDTH_IN = 12.5
#: Implementations stay distinguishable where their lines coincide: marker and line style per line.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":")
#: How a failed cell is drawn along the top, by its cause (in the implementation's colour).
CAUSE_MARKERS = {"exp_overflow": ("^", "exp overflow"), "sum_overflow": ("2", "sum overflow"),
                 "underflow": ("v", "underflow"), "invalid": ("X", "invalid (NaN)")}
OTHER_FAILURE = ("x", "other failure")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _axes_suffix(temperature: float, mask: str, shown: tuple) -> str:
    """The part of a plot's file name that names its temperature and mask (where the run varies
    them): ``_T0.01``, ``_mask_min``, ``_mask_neginf``."""
    out = f"_T{temperature:g}" if shown[0] else ""
    return out + (f"_mask_{mask.replace('-', 'neg')}" if shown[1] else "")


def plot_names(run: CompareRun) -> list[tuple]:
    """(file name, dtype, function, temperature, mask) of every plot the run gives: one pair of
    plots per format, function, temperature and mask."""
    from ..tables import shown_axes

    shown = shown_axes(run.results)
    keys = list(dict.fromkeys((r.dtype, r.function, r.temperature, r.mask) for r in run.results))
    out = []
    for dt, fn, t, m in keys:
        sfx = _axes_suffix(t, m, shown)
        out.append((f"{dt}_{fn}{sfx}_ulp.png", dt, fn, t, m))
        out.append((f"{dt}_{fn}{sfx}_status.png", dt, fn, t, m))
    return out


def make_plots(run: CompareRun) -> dict[str, bytes]:
    from ..tables import axes_text, shown_axes, working_thresholds

    plt = require_matplotlib()
    ths = {t["dtype"]: t for t in run.thresholds}
    shown = shown_axes(run.results)
    out = {}
    for name, dt, fn, temp, mask in plot_names(run):
        rs = [r for r in run.results if (r.dtype, r.function, r.temperature, r.mask) == (dt, fn, temp, mask)]
        at = next((r.target_at for r in rs if r.target_at), None)  # one place of the target per plot
        rs = [r for r in rs if r.target_at == at]
        axes = axes_text(rs[0], shown)
        title = f"{fn} in {dt}" + (f" ({axes})" if axes else "")
        if name.endswith("_ulp.png"):
            # exp's limits where the built-in kernels computed (float32 under --compute float32)
            th, work = working_thresholds(run, dt, ths)
            out[name] = _ulp_plot(plt, rs, th or None, title, run.meta.get("tolerance", 4.0), temp, work)
        else:
            out[name] = _status_plot(plt, rs, title)
    return out


def _ulp_plot(plt, rs, th, title, tol, temperature: float = 1.0, work: str = "") -> bytes:
    """One panel per size (columns) and spread (rows): the default grid's spread 8 is where the
    classic mistakes fail, so every spread gets its own row. ``work``: the format the built-in
    kernels computed in when it is not the plotted one (its exp limits are drawn)."""
    sizes = sorted({r.n for r in rs})
    spreads = sorted({r.spread for r in rs})
    impls = list(dict.fromkeys(r.impl for r in rs))
    fig, axes = plt.subplots(len(spreads), len(sizes),
                             figsize=(max(MIN_WIDTH_IN, 4.6 * len(sizes)), 1.2 + 3.8 * len(spreads)),
                             sharey=True, squeeze=False)
    finite = [r.max_ulp for r in rs if math.isfinite(r.max_ulp) and r.max_ulp > 0]
    top = max(finite + [10.0]) * 10
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    causes_seen: set = set()
    where = f" in {work}" if work else ""
    panels = [(ax, n, spread) for row, spread in zip(axes, spreads) for ax, n in zip(row, sizes)]
    for ax, n, spread in panels:
        first = ax is axes[0][0]
        offs = sorted({r.offset for r in rs if r.n == n and r.spread == spread})
        if not offs:
            ax.set_visible(False)
            continue
        lo, hi = min(offs), max(offs)
        if th:  # exp's limits on x / T, drawn on the offsets of x
            ovf, unf = float(th["exp_overflow_x"]) * temperature, float(th["exp_underflow_x"]) * temperature
            span = hi - lo or 1.0
            pad = 0.03 * span
            if ovf <= hi + pad:  # only limits inside the offsets drawn (float32's are far outside float16's)
                ax.axvspan(ovf, max(hi, ovf) + span, color="#e53935", alpha=0.08, lw=0)
                ax.axvline(ovf, color="#e53935", ls="--", lw=1, label=f"exp overflow{where}")
            if unf >= lo - pad:
                ax.axvspan(min(lo, unf) - span, unf, color="#1e88e5", alpha=0.08, lw=0)
                ax.axvline(unf, color="#1e88e5", ls="--", lw=1, label=f"exp underflow{where}")
        ax.axhline(tol, color="0.5", ls=":", lw=1)
        for k, impl in enumerate(impls):
            c = colors[k % len(colors)]
            pts = sorted((r.offset, r.max_ulp, r.status, r.cause) for r in rs
                         if r.n == n and r.impl == impl and r.spread == spread)
            xs = [p[0] for p in pts if math.isfinite(p[1])]
            ys = [max(p[1], 1e-3) for p in pts if math.isfinite(p[1])]
            ax.plot(xs, ys, marker=MARKERS[k % len(MARKERS)], ms=5, lw=1.6,
                    ls=LINESTYLES[k % len(LINESTYLES)], color=c, alpha=0.9,
                    label=impl if first else None)
            bad = [p for p in pts if not math.isfinite(p[1]) or p[2] in ("overflow", "nan", "underflow")]
            for p in bad:  # one row per implementation along the top, its colour, the cause's marker
                m, _ = CAUSE_MARKERS.get(p[3], OTHER_FAILURE)
                ax.plot([p[0]], [top * (1.8 ** (k + 1))], ls="none", marker=m, color=c, ms=8, mew=1.5)
                causes_seen.add(p[3] if p[3] in CAUSE_MARKERS else None)
        ax.set_yscale("log")
        pad = 0.03 * (hi - lo or 1.0)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_title(f"n = {n}, spread {spread:g}", fontsize=12)
        ax.set_xlabel("input offset", fontsize=11)
        ax.tick_params(labelsize=10)
        ax.grid(alpha=0.3, which="major")
    for row in axes:
        row[0].set_ylabel("max ULP error (top rows: failed cells)", fontsize=11)
    fig.suptitle(f"{title}: max ULP error vs offset; dotted: tolerance {tol:g} ULP", fontsize=13)
    handles, labels = [], []
    for ax, _n, _s in panels:
        for h, lb in zip(*ax.get_legend_handles_labels()):
            if lb not in labels:
                handles.append(h)
                labels.append(lb)
    for cause in sorted(causes_seen, key=lambda c: c or "~"):
        m, word = CAUSE_MARKERS.get(cause, OTHER_FAILURE)
        handles.append(plt.Line2D([], [], ls="none", marker=m, color="0.3", ms=8, mew=1.5))
        labels.append(f"failed: {word}")
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=10, frameon=False)
    fig.tight_layout(rect=(0, 0.12 / len(spreads), 1, 1 - 0.07 / len(spreads)))
    data = _png(fig)
    plt.close(fig)
    return data


def _status_plot(plt, rs, title) -> bytes:
    import numpy as np
    from matplotlib.colors import BoundaryNorm, ListedColormap

    impls = list(dict.fromkeys(r.impl for r in rs))
    sizes = sorted({(r.n, r.spread) for r in rs})  # one row per size and spread
    offs = sorted({r.offset for r in rs})
    spreads = {r.spread for r in rs}
    fig, axes = plt.subplots(1, len(impls), figsize=(max(MIN_WIDTH_IN, 3.4 * len(impls)), 3.8), sharey=True,
                             squeeze=False)
    cmap = ListedColormap(STATUS_COLORS)
    norm = BoundaryNorm(np.arange(len(STATUSES) + 1) - 0.5, len(STATUSES))
    for ax, impl in zip(axes[0], impls):
        grid = np.full((len(sizes), len(offs)), np.nan)
        for r in rs:
            if r.impl == impl:
                i, j = sizes.index((r.n, r.spread)), offs.index(r.offset)
                grid[i, j] = max(STATUSES.index(r.status), 0 if np.isnan(grid[i, j]) else grid[i, j])
        ax.imshow(grid, aspect="auto", cmap=cmap, norm=norm, origin="lower", interpolation="nearest",
                  extent=(-0.5, len(offs) - 0.5, -0.5, len(sizes) - 0.5))
        step = max(1, len(offs) // 5)
        ax.set_xticks(range(0, len(offs), step), [f"{o:.3g}" for o in offs[::step]], fontsize=10)
        ax.set_yticks(range(len(sizes)), [str(n) if len(spreads) == 1 else f"{n}, {sp:g}" for n, sp in sizes],
                      fontsize=10)
        ax.set_title(impl, fontsize=12)
        ax.set_xlabel("offset", fontsize=11)
    axes[0][0].set_ylabel("n" if len(spreads) == 1 else "n, spread", fontsize=11)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in STATUS_COLORS]
    fig.legend(handles, STATUSES, loc="lower center", ncol=len(STATUSES), fontsize=10, frameon=False)
    fig.suptitle(f"{title}: worst status per grid cell", fontsize=13)
    fig.tight_layout(rect=(0, 0.12, 1, 0.9))
    data = _png(fig)
    plt.close(fig)
    return data


def report_files(run: CompareRun, plots: dict) -> dict:
    return {f"plots/{name}": data for name, data in plots.items()}
