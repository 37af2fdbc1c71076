"""Reading user input vectors and targets (command line values or files).

Accepted files: ``.npy``, ``.npz`` holding exactly one array, ``.csv`` / ``.txt``
(comma, semicolon or whitespace separated). A 1-D array is one vector; a 2-D
array is a batch, one vector per row. NaN and infinite inputs are refused:
numstab measures finite inputs (for non-finite ones IEEE already fixes the
answer, e.g. softmax with a +inf entry is NaN).
"""

from __future__ import annotations

import os
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


#: Largest text input read (about 6 million values); larger inputs belong in a .npy file.
MAX_TEXT_BYTES = 64 * 2**20


def open_regular(path, what: str = "file"):
    """Open a regular file for reading, with one clear line for everything else.

    FIFOs, devices and sockets are refused before they are opened: a FIFO with no
    writer would block forever and /dev/zero never ends.
    """
    import stat

    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except PermissionError:
        raise UsageError(f"{path}: permission denied") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{path}: is a directory")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a character device" if stat.S_ISCHR(st.st_mode)
                else "a block device" if stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "not a regular file")
        raise UsageError(f"{path}: {kind}, not a regular file; numstab reads {what}s from regular files only")
    try:
        return open(path, "rb")
    except PermissionError:
        raise UsageError(f"{path}: permission denied") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror or exc})") from None


def read_bounded(path, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file, refused (before reading) above ``limit`` bytes."""
    with open_regular(path, what) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise UsageError(f"{path}: {size:,} bytes, above the limit of {limit:,} for a {what}"
                             + ("; save larger inputs as .npy" if what == "text input" else ""))
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise UsageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise UsageError(f"{path}: above the limit of {limit:,} bytes for a {what}")
    return data


def _read_text(path: Path) -> np.ndarray:
    data = read_bounded(path, MAX_TEXT_BYTES, "text input")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text file") from None
    rows = []
    count = 0
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
        count += len(parts)
        if count > MAX_INPUT_ELEMENTS:
            raise UsageError(f"{path}: more than {MAX_INPUT_ELEMENTS:,} values, above the limit")
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


def _check_npy_header(fh, path) -> None:
    """Refuse an oversized .npy before its data is read (the header gives shape and dtype)."""
    from numpy.lib import format as npf

    pos = fh.tell()
    try:
        version = npf.read_magic(fh)
        shape, _, dtype = (npf.read_array_header_1_0(fh) if version == (1, 0)
                           else npf.read_array_header_2_0(fh))
    except (ValueError, OSError, EOFError):
        fh.seek(pos)
        return  # np.load reports the damage
    fh.seek(pos)
    count = int(np.prod(shape, dtype=object)) if shape else 1
    if count > MAX_INPUT_ELEMENTS:
        raise UsageError(f"{path}: {count:,} values, above the limit of {MAX_INPUT_ELEMENTS:,}")
    if dtype.hasobject:
        raise UsageError(f"{path}: array of {dtype} is not numeric")


def load_array(path) -> np.ndarray:
    """Any numeric array from a supported file, as float64 (ndim unchecked)."""
    import zipfile

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz", ".csv", ".txt", ".tsv", ""):
        open_regular(path, "input").close()
        raise UsageError(f"{path}: unsupported file type {suffix!r} (use .npy, .npz, .csv or .txt)")
    try:
        if suffix == ".npy":
            with open_regular(path, "input") as fh:
                _check_npy_header(fh, path)
                a = np.load(fh, allow_pickle=False)
        elif suffix == ".npz":
            with open_regular(path, "input") as fh, np.load(fh, allow_pickle=False) as z:
                if len(z.files) != 1:
                    raise UsageError(f"{path}: .npz must hold exactly one array (has {len(z.files)})")
                name = z.files[0]
                member = name if name in z.zip.namelist() else name + ".npy"
                with z.zip.open(member) as m:
                    _check_npy_header(m, path)
                a = z[name]
        else:
            a = _read_text(path)
    except UsageError:
        raise
    except PermissionError:
        raise UsageError(f"{path}: permission denied") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else "corrupt"
        raise UsageError(f"{path}: cannot read ({why})") from None
    a = np.asarray(a)
    if a.dtype.kind not in "fiub":
        raise UsageError(f"{path}: array of {a.dtype} is not numeric")
    with np.errstate(all="ignore"):
        out = a.astype(np.float64)
    if a.dtype.kind == "f" and a.dtype.itemsize > 8:
        wide = np.isfinite(a) & ~np.isfinite(out)
        if wide.any():
            raise UsageError(f"{path}: value {a[wide].ravel()[0]!r} does not fit float64 "
                             f"(max {np.finfo(np.float64).max:g}); numstab measures finite inputs only")
    return out


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


def load_targets(target, targets_file, batch: int, n: int, required: bool,
                 what: str = "cross_entropy") -> np.ndarray:
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
            raise UsageError(f"{what} needs --target K (or --targets FILE for a batch)")
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



def load_args(fmt, x: np.ndarray, rec, target=None, targets_file=None, extras=None) -> dict:
    """The extra argument of function ``rec`` (numstab.functions) for the rounded inputs x (B, n)
    from the command line or a config: {kind: array} (functions.as_args).

    ``target``: an index (``target``, ``smoothing`` kinds) or a label z in [0, 1] (``label``);
    ``targets_file``: one per vector (labels: one per vector or one per element);
    ``extras`` (grids.Extras): the cotangent and the label smoothing.
    """
    from . import validate
    from .grids import DEFAULT_EXTRAS, check_extras, cotangents

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
        if target is not None and targets_file is not None:
            raise UsageError("give --target or --targets, not both")
        if targets_file is not None:
            z = load_array(targets_file).astype(np.float64)
            if z.size == B:
                z = np.broadcast_to(z.reshape(B, 1), (B, n))
            elif z.size == B * n:
                z = z.reshape(B, n)
            else:
                raise UsageError(f"{targets_file}: {z.size} labels for {B} vectors of {n} "
                                 f"(give one per vector or one per element)")
            if not np.all((z >= 0) & (z <= 1)):
                raise UsageError(f"{targets_file}: labels must be numbers in [0, 1]")
        elif target is not None:
            z = np.full((B, n), validate.label(target))
        else:
            raise UsageError(f"{rec.name} needs --target Z (a label in [0, 1]) or --targets FILE")
        return {"label": fmt.round(np.ascontiguousarray(z, dtype=np.float64))}
    if kind == "cotangent":
        check_extras(extras, (n,))
        rng = np.random.default_rng([0, n, 13])
        return {"cotangent": cotangents(fmt, x, extras, rng.standard_normal((B, n)))}
    raise UsageError(f"{rec.name}: unknown extra argument kind {kind!r}")
