"""Reading user input vectors and targets (command line values or files).

Accepted files: ``.npy``, ``.npz`` holding exactly one array, ``.csv`` / ``.txt``
(comma, semicolon or whitespace separated). A 1-D array is one vector; a 2-D
array is a batch, one vector per row. NaN and infinite inputs are refused:
numstab measures finite inputs (for non-finite ones IEEE already fixes the
answer, e.g. softmax with a +inf entry is NaN).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import UsageError

MAX_INPUT_ELEMENTS = 20_000_000


def parse_values(values) -> np.ndarray:
    out = []
    for i, v in enumerate(values):
        try:
            f = float(v)
        except ValueError:
            raise UsageError(f"{v!r} (value {i}) is not a number") from None
        out.append(f)
    if not out:
        raise UsageError("no input values: give values after -- or --input FILE")
    return _check(np.array(out, dtype=np.float64)[None, :], "the values")


def _read_text(path: Path) -> np.ndarray:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text file") from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [p for p in line.replace(",", " ").replace(";", " ").split()]
        try:
            rows.append([float(p) for p in parts])
        except ValueError:
            bad = next(p for p in parts if not _is_float(p))
            raise UsageError(f"{path}:{lineno}: {bad!r} is not a number") from None
    if not rows:
        raise UsageError(f"{path}: file is empty")
    lengths = {len(r) for r in rows}
    if len(lengths) > 1:
        raise UsageError(f"{path}: ragged rows (lengths {sorted(lengths)}); every vector must have "
                         "the same length")
    return np.array(rows, dtype=np.float64)


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def load_array(path) -> np.ndarray:
    """Any numeric array from a supported file, as float64 (ndim unchecked)."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if path.is_dir():
        raise UsageError(f"{path}: is a directory")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            a = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if len(z.files) != 1:
                    raise UsageError(f"{path}: .npz must hold exactly one array (has {len(z.files)})")
                a = z[z.files[0]]
        elif suffix in (".csv", ".txt", ".tsv", ""):
            a = _read_text(path)
        else:
            raise UsageError(f"{path}: unsupported file type {suffix!r} (use .npy, .npz, .csv or .txt)")
    except UsageError:
        raise
    except PermissionError:
        raise UsageError(f"{path}: permission denied") from None
    except (OSError, ValueError, EOFError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else "corrupt"
        raise UsageError(f"{path}: cannot read ({why})") from None
    a = np.asarray(a)
    if a.dtype.kind not in "fiub":
        raise UsageError(f"{path}: array of {a.dtype} is not numeric")
    return a.astype(np.float64)


def load_vectors(path) -> np.ndarray:
    a = load_array(path)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise UsageError(f"{path}: a {a.ndim}-D array; give a vector or a 2-D batch (one vector per row)")
    return _check(a, str(path))


def _check(a: np.ndarray, what: str) -> np.ndarray:
    if a.size == 0 or a.shape[-1] == 0:
        raise UsageError(f"{what}: no values")
    if a.size > MAX_INPUT_ELEMENTS:
        raise UsageError(f"{what}: {a.size:,} values, above the limit of {MAX_INPUT_ELEMENTS:,}")
    bad = ~np.isfinite(a)
    if bad.any():
        r, c = (int(i[0]) for i in np.nonzero(bad))
        raise UsageError(f"{what}: non-finite input {a[r, c]} at row {r}, column {c}; numstab measures "
                         "finite inputs only")
    return a


def load_targets(target, targets_file, batch: int, n: int, required: bool) -> np.ndarray:
    """Integer target per vector from --target K or --targets FILE, range-checked."""
    if target is not None and targets_file is not None:
        raise UsageError("give --target or --targets, not both")
    if targets_file is not None:
        t = load_array(targets_file).ravel()
        if t.size != batch:
            raise UsageError(f"{targets_file}: {t.size} targets for {batch} vectors")
    elif target is not None:
        t = np.full(batch, target, dtype=np.float64)
    else:
        if required:
            raise UsageError("cross_entropy needs --target K (or --targets FILE for a batch)")
        return np.zeros(batch, dtype=np.int64)
    if not np.all(np.isfinite(t)) or np.any(t != np.floor(t)):
        raise UsageError("targets must be integers")
    if np.any(t < 0) or np.any(t >= n):
        bad = t[(t < 0) | (t >= n)][0]
        raise UsageError(f"target {int(bad)} is out of range for vectors of length {n} (0..{n - 1})")
    return t.astype(np.int64)


def round_inputs(fmt, x: np.ndarray, what: str = "input") -> np.ndarray:
    """Round to the format; refuse values that do not fit it."""
    xr = fmt.round(x)
    bad = ~np.isfinite(xr)
    if bad.any():
        v = x[bad][0]
        raise UsageError(f"{what} {v:g} does not fit {fmt.name} (max {fmt.max:g})")
    return xr

