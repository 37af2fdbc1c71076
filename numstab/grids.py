"""Input grids: x = offset + spread * z over a seeded standard normal z.

A grid has four axes of inputs -- offset, spread, n (vector length) and trials -- and two of
evaluation: the additive mask on the second half of every vector (``masks``, MASKS) and the
temperature T by which every implementation first divides its inputs (``temperatures``;
engine.scaled). The same z (drawn from ``numpy.random.default_rng([seed, n])``) is used for
every offset, spread, mask and temperature, so neighbouring cells differ only by the shift,
the scale, the mask or T. Inputs are generated in float64 and rounded correctly into the
target format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import validate
from .errors import UsageError
from .formats import Format
from .limits import MAX_ELEMENTS

MAX_N = 10_000_000
#: Most values of one grid axis (a count above it is refused before anything is built).
MAX_SPEC_VALUES = 20_000_000  # = limits.MAX_ELEMENTS: every value of an axis is at least one element


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
    masks: tuple = ("none",)  # MASKS: additive attention masks on the second half of every vector
    temperatures: tuple = (1.0,)  # T: every implementation divides x by T in the format first

    def to_dict(self) -> dict:
        return {
            "offsets": list(self.offsets), "spreads": list(self.spreads),
            "sizes": list(self.sizes), "trials": self.trials, "seed": self.seed,
            **({"masks": list(self.masks)} if self.masks != ("none",) else {}),
            **({"temperatures": list(self.temperatures)} if self.temperatures != (1.0,) else {}),
        }

    def sub(self, **changes) -> GridSpec:
        """The same grid with some axes replaced (a piece of work)."""
        import dataclasses

        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Extras:
    """How a grid makes the second inputs of the functions that take one (numstab.functions):

    * ``label``: binary_cross_entropy's z, a real in [0, 1] for every element (``--target``);
      None: labels 0 or 1 drawn per element;
    * ``cotangent``: the backward passes' upstream gradient (``--cotangent``): ``"normal"``
      (seeded standard normal values, the default), ``"onehot"`` (1 at each vector's argmax, 0
      elsewhere: the gradient of log_softmax(x)[argmax]) or a tuple of n values for every vector;
    * ``epsilon``: the label smoothing of smoothed_cross_entropy (``--label-smoothing``).

    Everything is rounded to the format like the logits. Target indices (cross_entropy) are
    drawn per vector as before; labels and cotangents come from their own seeded stream, so
    the logits and targets of a grid do not depend on them.
    """

    label: float | None = None
    cotangent: str | tuple = "normal"
    epsilon: float = 0.1

    def to_dict(self) -> dict:
        return {"label": self.label, "cotangent": list(self.cotangent) if isinstance(self.cotangent, tuple)
                else self.cotangent, "label_smoothing": self.epsilon}


DEFAULT_EXTRAS = Extras()


def make_extras(label=None, cotangent=None, label_smoothing=None) -> Extras:
    """Extras from the options (--target, --cotangent, --label-smoothing), validated."""
    return Extras(label=validate.label(label),
                  cotangent=validate.cotangent(cotangent),
                  epsilon=0.1 if label_smoothing is None else validate.label_smoothing(label_smoothing))


@dataclass(frozen=True)
class Cell:
    offset: float
    spread: float
    n: int
    x: np.ndarray  # (trials, n) float64, exactly representable in the format
    target: np.ndarray  # (trials,) int, for cross_entropy
    args: dict = None  # every extra argument kind: {kind: (trials,) or (trials, n)} (functions.as_args)
    mask: str = "none"  # the additive mask on positions n//2.. (MASKS), already in x


def offset_scale(fmt: Format) -> float:
    """ln(max), the scale of the default offsets (float64 is enough to place grid points; the
    exact limits of exp are reference.thresholds, the only place they are computed)."""
    return math.log(fmt.max)


def default_grid(fmt: Format, seed: int = 0) -> GridSpec:
    """Offsets from -1.6T to +1.6T (T = ln(max)) in 17 steps, crossing both exp limits."""
    t = offset_scale(fmt)
    offsets = tuple(round(t * k / 10, 6) for k in range(-16, 17, 2))
    return GridSpec(offsets=offsets, spreads=(1.0, 8.0), sizes=(2, 10, 1000), trials=3, seed=seed)


#: Additive attention masks (``--mask``), applied to positions n//2.. of every vector, in the
#: format: ``-inf``; ``min`` adds finfo.min once, ``min2`` twice (two summed masks), each addition
#: rounded to the format -- where score + min overflows, the entry becomes -inf.
MASKS = validate.MASKS


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
              mask=None, temperature=None) -> GridSpec:
    """The grid of one format from the options; ``mask`` and ``temperature``: a name or value, a
    comma list or a list (validate.masks, validate.temperatures), each value its own cells."""
    masks = validate.masks(mask)
    temperatures = validate.temperatures(temperature)
    if int(seed) < 0:
        raise UsageError(f"--seed {seed}: must be a non-negative integer")
    base = default_grid(fmt, seed)
    trials = base.trials if trials is None else int(trials)
    if trials < 1:
        raise UsageError("--trials must be at least 1")
    spreads_ = parse_spec(spreads, "spreads") if spreads is not None else base.spreads
    sizes_ = parse_spec(sizes, "sizes", integer=True) if sizes is not None else base.sizes
    count = _range_count(offsets)
    if count is not None:  # refuse a huge range before making its values (seconds for 10M)
        _check_total(count * len(spreads_) * sum(sizes_) * trials * len(masks))
    g = GridSpec(
        offsets=parse_spec(offsets, "offsets") if offsets is not None else base.offsets,
        spreads=spreads_,
        sizes=sizes_,
        trials=trials,
        seed=int(seed),
        masks=masks,
        temperatures=temperatures,
    )
    bad = [m for m in masks if m != "none"]
    if bad and not fmt.has_inf:
        raise UsageError(f"--mask {bad[0]}: {fmt.name} has no infinity to hold a masked entry")
    for t in temperatures:
        format_temperature(fmt, t)
    _check_total(len(g.offsets) * len(g.spreads) * sum(g.sizes) * g.trials * len(masks))
    return g


def _check_total(total: int) -> None:
    if total > MAX_ELEMENTS:
        raise UsageError(
            f"grid has {total:,} input elements per format, above the limit of {MAX_ELEMENTS:,}; "
            "use fewer offsets, spreads, sizes or trials"
        )


def _range_count(spec) -> int | None:
    """The count of a ``start:stop:count`` spec with distinct finite ends (its values are then
    distinct unless they are closer than 1e-12), else None."""
    parts = str(spec).split(":") if spec is not None else []
    try:
        if len(parts) == 3 and abs(float(parts[1]) - float(parts[0])) >= 1e-12 * (int(parts[2]) + 1):
            return int(parts[2])
    except (ValueError, OverflowError):
        pass
    return None


def check_extras(extras: Extras, sizes) -> None:
    """A cotangent given as values must have every vector's length."""
    if isinstance(extras.cotangent, tuple):
        bad = [n for n in sizes if n != len(extras.cotangent)]
        if bad:
            raise UsageError(f"--cotangent has {len(extras.cotangent)} values, the vectors have n = {bad[0]}")


def cells(fmt: Format, grid: GridSpec, extras: Extras = DEFAULT_EXTRAS) -> list[Cell]:
    out = []
    for n in grid.sizes:
        rng = np.random.default_rng([grid.seed, n])
        z = rng.standard_normal((grid.trials, n))
        target = rng.integers(0, n, size=grid.trials)
        rng_extra = np.random.default_rng([grid.seed, n, 13])  # labels and cotangents: their own stream
        label_draw = rng_extra.integers(0, 2, size=(grid.trials, n)).astype(np.float64)
        v_draw = rng_extra.standard_normal((grid.trials, n))
        for spread in grid.spreads:
            for offset in grid.offsets:
                with np.errstate(all="ignore"):
                    x = fmt.round(offset + spread * z)
                if not np.all(np.isfinite(x)):
                    raise UsageError(
                        f"offset {offset:g} with spread {spread:g} gives inputs that do not fit "
                        f"{fmt.name} (max {fmt.max:g})"
                    )
                for mask in grid.masks:
                    xm = apply_mask(fmt, x, mask)
                    out.append(Cell(offset, spread, n, xm, target,
                                    _cell_args(fmt, xm, target, extras, label_draw, v_draw), mask))
    return out


def format_temperature(fmt: Format, t: float) -> float:
    """T held in the format (correctly rounded; a sampler holds T in the model's dtype): the
    divisor of engine.scaled. A T that rounds to 0 or overflows the format is refused."""
    with np.errstate(all="ignore"):
        tf = float(fmt.round(np.float64(t)))
    if tf == 0 or not math.isfinite(tf):
        raise UsageError(f"--temperature {t:g} is {tf:g} in {fmt.name}")
    return tf


def draws(grid: GridSpec, n: int) -> tuple:
    """(z, target indices, label draws, cotangent draws) of the vectors of length n: the same
    for every offset and spread (see :func:`cells`)."""
    rng = np.random.default_rng([grid.seed, n])
    z = rng.standard_normal((grid.trials, n))
    target = rng.integers(0, n, size=grid.trials)
    rng_extra = np.random.default_rng([grid.seed, n, 13])
    label_draw = rng_extra.integers(0, 2, size=(grid.trials, n)).astype(np.float64)
    return z, target, label_draw, rng_extra.standard_normal((grid.trials, n))


def block(fmt: Format, grid: GridSpec, n: int, spread: float, offsets, extras: Extras = DEFAULT_EXTRAS,
          drawn=None, mask: str = "none", x: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """The vectors of the cells (offset, spread, n) for some offsets, as one batch: rows in cell
    order, ``trials`` rows per cell, and their extra arguments -- ``stack(cells(...))`` of those
    cells, computed at once (numpy, no object per cell). ``drawn``: :func:`draws` of n, reused;
    ``mask``: the additive mask (MASKS) applied; ``x``: the unmasked vectors, already made."""
    z, target, label_draw, v_draw = drawn if drawn is not None else draws(grid, n)
    offs = np.asarray(offsets, dtype=np.float64)
    C = offs.size
    if x is None:
        x = unmasked(fmt, n, spread, offs, z)
    x = apply_mask(fmt, x, mask)
    tiled = np.tile(target, C)
    args = _cell_args(fmt, x, tiled, extras, np.tile(label_draw, (C, 1)), np.tile(v_draw, (C, 1)))
    args["smoothing"] = np.rec.array(args["smoothing"])
    return x, args


def unmasked(fmt: Format, n: int, spread: float, offs: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The cells' vectors before any mask, (cells * trials, n); refuses the first offset whose
    inputs do not fit the format."""
    C = offs.size
    with np.errstate(all="ignore"):
        x = fmt.round(offs[:, None, None] + spread * z[None])
    bad = ~np.isfinite(x).reshape(C, -1).all(axis=1)
    if bad.any():
        offset = float(offs[np.argmax(bad)])
        raise UsageError(f"offset {offset:g} with spread {spread:g} gives inputs that do not fit "
                         f"{fmt.name} (max {fmt.max:g})")
    return x.reshape(-1, n)


def check_fit(fmt: Format, grid: GridSpec, extras: Extras = DEFAULT_EXTRAS, per: int = 65536) -> None:
    """Refuse, before any work, offsets whose inputs do not fit the format (the first in the
    given order, at the smallest n) -- what building every cell would raise, a block at a time."""
    n = min(grid.sizes)
    drawn = draws(grid, n)
    step = max(1, per // (grid.trials * n))
    for spread in grid.spreads:
        for a in range(0, len(grid.offsets), step):
            x = unmasked(fmt, n, spread, np.asarray(grid.offsets[a:a + step], dtype=np.float64), drawn[0])
            for mask in grid.masks:
                block(fmt, grid, n, spread, grid.offsets[a:a + step], extras, drawn, mask, x)


def _cell_args(fmt, x, target, extras: Extras, label_draw, v_draw) -> dict:
    """The cell's extra arguments: the same label and cotangent draws for every offset."""
    B, n = x.shape
    label = label_draw if extras.label is None else np.full((B, n), fmt.round(np.float64(extras.label))[()])
    v = cotangents(fmt, x, extras, v_draw)
    eps = np.full(B, fmt.round(np.float64(extras.epsilon))[()])
    smoothing = np.rec.fromarrays([np.asarray(target, dtype=np.int64), eps], names="target,epsilon")
    return {"target": target, "label": label, "cotangent": v, "smoothing": smoothing}


def batch_args(fmt, x: np.ndarray, target=None, extras: Extras = DEFAULT_EXTRAS, seed: int = 0) -> dict:
    """Every extra argument kind for a batch x (B, n) of format values, as a grid makes them:
    ``target`` (given, or 0), random 0/1 labels (or extras.label), cotangents, smoothing."""
    B, n = x.shape
    target = np.zeros(B, dtype=np.int64) if target is None else np.asarray(target, dtype=np.int64)
    rng = np.random.default_rng([seed, n, 13])
    label_draw = rng.integers(0, 2, size=(B, n)).astype(np.float64)
    return _cell_args(fmt, x, target, extras, label_draw, rng.standard_normal((B, n)))


def cotangents(fmt, x: np.ndarray, extras: Extras, v_draw: np.ndarray) -> np.ndarray:
    """The cotangents of the batch x (B, n) in the format: the given values, one-hot at each
    vector's argmax, or the standard normal draws ``v_draw`` rounded."""
    B, n = x.shape
    if isinstance(extras.cotangent, tuple):
        with np.errstate(all="ignore"):
            c = fmt.round(np.asarray(extras.cotangent, dtype=np.float64))
        if not np.all(np.isfinite(c)):
            bad = np.asarray(extras.cotangent)[~np.isfinite(c)][0]
            raise UsageError(f"--cotangent value {bad:g} does not fit {fmt.name} (max {fmt.max:g})")
        v = np.broadcast_to(c, (B, n)).copy()
    elif extras.cotangent == "onehot":
        v = np.zeros((B, n))
        np.put_along_axis(v, np.argmax(x, axis=-1)[..., None], 1.0, axis=-1)
    else:
        v = fmt.round(v_draw)
    return v


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


def stack(group: list[Cell]) -> tuple[np.ndarray, dict]:
    """The cells' vectors as one batch (rows in cell order) and their extra arguments
    ({kind: array}, numstab.functions.as_args; ``target`` the indices)."""
    x = np.concatenate([c.x for c in group])
    if group and group[0].args is not None:
        args = {k: np.concatenate([c.args[k] for c in group]) for k in group[0].args}
        if "smoothing" in args:
            args["smoothing"] = np.rec.array(args["smoothing"])
    else:
        args = {"target": np.concatenate([c.target for c in group])}
    return x, args


def check_labels(z: np.ndarray, path) -> None:
    """Labels read from ``path`` (all of them, or a block) are numbers in [0, 1]."""
    if not np.all((z >= 0) & (z <= 1)):
        raise UsageError(f"{path}: labels must be numbers in [0, 1]")


def load_labels(rec, target, targets_file, rows: int, n: int) -> np.ndarray:
    """binary_cross_entropy's labels z in [0, 1], checked, compact: (rows, 1) (one per vector, or
    ``target`` for all) or (rows, n) (one per element from ``targets_file``)."""
    from .inputs import load_array

    if target is not None and targets_file is not None:
        raise UsageError("give --target or --targets, not both")
    if targets_file is not None:
        z = load_array(targets_file).astype(np.float64)
        if z.size == rows:
            z = z.reshape(rows, 1)
        elif z.size == rows * n:
            z = z.reshape(rows, n)
        else:
            raise UsageError(f"{targets_file}: {z.size} labels for {rows} vectors of {n} "
                             f"(give one per vector or one per element)")
        check_labels(z, targets_file)
        return z
    if target is not None:
        return np.full((rows, 1), validate.label(target))
    raise UsageError(f"{rec.name} needs --target Z (a label in [0, 1]) or --targets FILE")


def load_args(fmt, x: np.ndarray, rec, target=None, targets_file=None, extras=None) -> dict:
    """The extra argument of function ``rec`` (numstab.functions) for the rounded inputs x (B, n)
    from the command line or a config: {kind: array} (functions.as_args).

    ``target``: an index (``target``, ``smoothing`` kinds) or a label z in [0, 1] (``label``);
    ``targets_file``: one per vector (labels: one per vector or one per element);
    ``extras`` (grids.Extras): the cotangent and the label smoothing.
    """
    from .inputs import load_targets

    extras = extras or DEFAULT_EXTRAS
    B, n = x.shape
    kind = rec.takes
    if kind is None:
        return {}
    if kind in ("target", "smoothing"):
        t = load_targets(validate.target(target), targets_file, B, n, required=True,
                         what=rec.name)
        if kind == "target":
            return {"target": t}
        eps = np.full(B, fmt.round(np.float64(extras.epsilon))[()])
        return {"smoothing": np.rec.fromarrays([t, eps], names="target,epsilon")}
    if kind == "label":
        z = np.broadcast_to(load_labels(rec, target, targets_file, B, n), (B, n))
        return {"label": fmt.round(np.ascontiguousarray(z, dtype=np.float64))}
    if kind == "cotangent":
        check_extras(extras, (n,))
        rng = np.random.default_rng([0, n, 13])
        return {"cotangent": cotangents(fmt, x, extras, rng.standard_normal((B, n)))}
    raise UsageError(f"{rec.name}: unknown extra argument kind {kind!r}")
