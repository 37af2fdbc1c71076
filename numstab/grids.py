"""Input grids: x = offset + spread * z over a seeded standard normal z.

A grid has four axes: offset, spread, n (vector length) and trials. The same
z (drawn from ``numpy.random.default_rng([seed, n])``) is used for every offset
and spread, so neighbouring cells differ only by the shift and scale. Inputs are
generated in float64 and rounded correctly into the target format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import UsageError
from .formats import Format
from .limits import MAX_ELEMENTS

MAX_N = 10_000_000
#: Most values of one grid axis (a count above it is refused before anything is built).
MAX_SPEC_VALUES = 1_000_000


def parse_spec(spec: str, what: str, integer: bool = False) -> tuple:
    """Parse ``start:stop:count`` (inclusive, evenly spaced) or a comma list."""
    text = str(spec).strip()
    if not text:
        raise UsageError(f"empty {what} spec")
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError
            start, stop = float(parts[0]), float(parts[1])
            count = int(parts[2])
            if count < 1:
                raise UsageError(f"bad {what} spec {spec!r}: count must be at least 1")
            values = [start] if count == 1 else _linspace(start, stop, count)
        else:
            values = [float(v) for v in text.split(",") if v.strip() != ""]
            if not values:
                raise ValueError
    except UsageError:
        raise
    except ValueError:
        raise UsageError(
            f"malformed {what} spec {spec!r}: use start:stop:count (e.g. -20:20:41) or a comma list"
        ) from None
    if any(not math.isfinite(v) for v in values):
        raise UsageError(f"bad {what} spec {spec!r}: values must be finite (at most {np.finfo(float).max:g} "
                         "in magnitude)")
    if integer:
        if any(v != int(v) or v < 1 for v in values):
            raise UsageError(f"bad {what} spec {spec!r}: sizes must be positive integers")
        if any(v > MAX_N for v in values):
            raise UsageError(f"bad {what} spec {spec!r}: n above {MAX_N} is refused")
        return tuple(dict.fromkeys(int(v) for v in values))
    return tuple(dict.fromkeys(round(float(v), 12) for v in values))  # duplicates once, in order


def _linspace(start: float, stop: float, count: int) -> list:
    """np.linspace, without overflow for finite endpoints whose difference overflows (-1e308:1e308)."""
    if count > MAX_SPEC_VALUES:
        raise UsageError(f"count {count:,} is above the limit of {MAX_SPEC_VALUES:,} values per grid axis")
    with np.errstate(all="ignore"):
        v = np.linspace(start, stop, count)
    if not np.all(np.isfinite(v)):
        t = np.arange(count) / (count - 1)
        v = start * (1 - t) + stop * t
    return list(v)


@dataclass(frozen=True)
class GridSpec:
    offsets: tuple
    spreads: tuple
    sizes: tuple
    trials: int
    seed: int
    mask: str = "none"  # MASKS: an additive attention mask on the second half of every vector

    def to_dict(self) -> dict:
        return {
            "offsets": list(self.offsets), "spreads": list(self.spreads),
            "sizes": list(self.sizes), "trials": self.trials, "seed": self.seed,
            **({"mask": self.mask} if self.mask != "none" else {}),
        }


@dataclass(frozen=True)
class Cell:
    offset: float
    spread: float
    n: int
    x: np.ndarray  # (trials, n) float64, exactly representable in the format
    target: np.ndarray  # (trials,) int, for cross_entropy


def offset_scale(fmt: Format) -> float:
    """ln(max), the scale of the default offsets (float64 is enough to place grid points; the
    exact limits of exp are reference.thresholds, the only place they are computed)."""
    return math.log(fmt.max)


def default_grid(fmt: Format, seed: int = 0) -> GridSpec:
    """Offsets from -1.6T to +1.6T (T = ln(max)) in 17 steps, crossing both exp limits."""
    t = offset_scale(fmt)
    offsets = tuple(round(t * k / 10, 6) for k in range(-16, 17, 2))
    return GridSpec(offsets=offsets, spreads=(1.0,), sizes=(2, 10, 1000), trials=3, seed=seed)


#: Additive attention masks (``--mask``), applied to positions n//2.. of every vector, in the
#: format: ``-inf``; ``min`` adds finfo.min once, ``min2`` twice (two summed masks), each addition
#: rounded to the format -- where score + min overflows, the entry becomes -inf.
MASKS = ("none", "-inf", "min", "min2")


def apply_mask(fmt: Format, x: np.ndarray, mask: str) -> np.ndarray:
    """x with the additive mask on its second half, each addition correctly rounded in the format."""
    if mask == "none":
        return x
    out = x.copy()
    h = x.shape[-1] // 2
    if mask == "-inf":
        out[..., h:] = -np.inf
        return out
    xs = fmt.cast(out[..., h:])
    lo = fmt.cast(np.array(-fmt.max))
    with np.errstate(all="ignore"):
        for _ in range(2 if mask == "min2" else 1):
            xs = xs + lo  # numpy rounds the format's sum correctly (float32 holds more than 2p+2 bits)
    out[..., h:] = xs.astype(np.float64)
    return out


def make_grid(fmt: Format, offsets=None, spreads=None, sizes=None, trials=None, seed=0,
              mask: str = "none") -> GridSpec:
    if int(seed) < 0:
        raise UsageError(f"--seed {seed}: must be a non-negative integer")
    base = default_grid(fmt, seed)
    trials = base.trials if trials is None else int(trials)
    if trials < 1:
        raise UsageError("--trials must be at least 1")
    g = GridSpec(
        offsets=parse_spec(offsets, "offsets") if offsets is not None else base.offsets,
        spreads=parse_spec(spreads, "spreads") if spreads is not None else base.spreads,
        sizes=parse_spec(sizes, "sizes", integer=True) if sizes is not None else base.sizes,
        trials=trials,
        seed=int(seed),
        mask=mask,
    )
    if mask not in MASKS:
        from .errors import unknown_name

        raise unknown_name("--mask", mask, MASKS)
    if mask != "none" and not fmt.has_inf:
        raise UsageError(f"--mask {mask}: {fmt.name} has no infinity to hold a masked entry")
    total = len(g.offsets) * len(g.spreads) * sum(g.sizes) * g.trials
    if total > MAX_ELEMENTS:
        raise UsageError(
            f"grid has {total:,} input elements per format, above the limit of {MAX_ELEMENTS:,}; "
            "use fewer offsets, spreads, sizes or trials"
        )
    return g


def cells(fmt: Format, grid: GridSpec) -> list[Cell]:
    out = []
    for n in grid.sizes:
        rng = np.random.default_rng([grid.seed, n])
        z = rng.standard_normal((grid.trials, n))
        target = rng.integers(0, n, size=grid.trials)
        for spread in grid.spreads:
            for offset in grid.offsets:
                with np.errstate(all="ignore"):
                    x = fmt.round(offset + spread * z)
                if not np.all(np.isfinite(x)):
                    raise UsageError(
                        f"offset {offset:g} with spread {spread:g} gives inputs that do not fit "
                        f"{fmt.name} (max {fmt.max:g})"
                    )
                out.append(Cell(offset, spread, n, apply_mask(fmt, x, grid.mask), target))
    return out


#: Where a grid's target index sits in each vector (functions that take a target): the largest
#: entry (a confident, correct prediction), the smallest, or a seeded random index.
TARGET_AT = ("argmax", "argmin", "random")


def targets_at(mode: str, x: np.ndarray, random_target: np.ndarray) -> np.ndarray:
    """The target index of each row of x under ``mode`` (TARGET_AT; the first of ties)."""
    if mode == "argmax":
        return np.argmax(x, axis=-1)
    if mode == "argmin":
        return np.argmin(x, axis=-1)
    return np.asarray(random_target)


def parse_target_at(value) -> tuple:
    """A comma list (or sequence) of TARGET_AT names, duplicates once, in the given order."""
    from .errors import unknown_name

    parts = value.split(",") if isinstance(value, str) else list(value)
    out = tuple(dict.fromkeys(str(p).strip() for p in parts if str(p).strip()))
    if not out:
        raise UsageError(f"--target-at is empty: give some of {', '.join(TARGET_AT)}")
    for p in out:
        if p not in TARGET_AT:
            raise unknown_name("--target-at", p, TARGET_AT)
    return out


def stack(group: list[Cell]) -> tuple[np.ndarray, np.ndarray]:
    """The cells' vectors as one batch (rows in cell order) and their targets."""
    return np.concatenate([c.x for c in group]), np.concatenate([c.target for c in group])
