"""Reading user input vectors and targets (command line values or files).

Accepted files: ``.npy`` (memory-mapped), ``.npz`` and ``.safetensors`` (``key`` names
the array when there are several), ``.csv`` / ``.txt`` (comma, semicolon or whitespace
separated; 1-D or 2-D). An array of any rank is a batch of vectors along ``axis``
(default the last); the vectors are indexed by the other axes. Values stored as
float16 or bfloat16 convert to float64 exactly, so in their own format they are used
bit for bit. -inf (masks), +inf and NaN are read as they are (masks.py gives them
their exact values).

:class:`InputArray` reads lazily: :meth:`InputArray.blocks` yields row blocks of the
batch, reading only their part of a memory-mapped .npy or a .safetensors file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import UsageError
from .limits import MAX_ELEMENTS

MAX_INPUT_ELEMENTS = MAX_ELEMENTS  # read at each check (tests lower it)


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


INPUT_SUFFIXES = (".npy", ".npz", ".safetensors", ".csv", ".txt", ".tsv", "")


class InputArray:
    """An N-D array of input vectors in a file, read lazily.

    ``shape`` and ``dtype`` (the stored numpy dtype) are known without reading the data;
    the vectors lie along ``axis``, and row r of the batch is the vector at the index
    ``index(r)`` of the other axes (C order). :meth:`blocks` reads the batch a block of
    rows at a time (only that part of a memory-mapped .npy or a .safetensors tensor).
    """

    def __init__(self, what: str, shape: tuple, dtype, get, axis: int | None = None):
        self.what = what
        self.shape = tuple(int(v) for v in shape)
        self.dtype = np.dtype(dtype)
        self._get = get  # get(tuple of slices) -> ndarray in the stored dtype
        nd = len(self.shape)
        if nd == 0:
            raise UsageError(f"{what}: a single number, not a vector")
        ax = -1 if axis is None else int(axis)
        if not -nd <= ax < nd:
            raise UsageError(f"{what}: --axis {ax} is out of range for a {nd}-D array of shape {self.shape}")
        self.axis = ax % nd
        if self.dtype.kind not in "fiub" and self.dtype.name != "bfloat16":
            raise UsageError(f"{what}: array of {self.dtype} is not numeric")
        if 0 in self.shape:
            raise UsageError(f"{what}: no values (shape {self.shape})")

    @property
    def n(self) -> int:
        return self.shape[self.axis]

    @property
    def batch_shape(self) -> tuple:
        return self.shape[:self.axis] + self.shape[self.axis + 1:]

    @property
    def rows(self) -> int:
        return int(np.prod(self.batch_shape, dtype=np.int64))

    @property
    def size(self) -> int:
        return self.rows * self.n

    def index(self, row: int) -> tuple:
        """The index of row ``row``'s vector along the other axes (() for a single vector)."""
        return tuple(int(i) for i in np.unravel_index(int(row), self.batch_shape)) if self.batch_shape else ()

    def element_index(self, row: int, j: int | None = None) -> tuple:
        """The full N-D index of element j of row ``row`` (the batch index alone when j is None)."""
        b = list(self.index(row))
        if j is None:
            return tuple(b)
        return tuple(b[:self.axis] + [int(j)] + b[self.axis:])

    def _block_dim(self) -> int | None:
        """The first batch axis: blocks are slices along it (None for a single vector)."""
        dims = [d for d in range(len(self.shape)) if d != self.axis]
        return dims[0] if dims else None

    def blocks(self, max_rows: int = 1 << 16):
        """Yield (first row, (r, n) float64 array) over the batch, in row order."""
        d = self._block_dim()
        if d is None:
            yield 0, self._as_rows(self._get((slice(None),)))
            return
        per = max(1, self.rows // self.shape[d])  # rows per index along d
        step = max(1, max_rows // per)
        for i in range(0, self.shape[d], step):
            stop = min(i + step, self.shape[d])
            key = tuple(slice(i, stop) if k == d else slice(None) for k in range(len(self.shape)))
            yield i * per, self._as_rows(self._get(key))

    def read_rows(self, r0: int, r1: int) -> np.ndarray:
        """Rows r0..r1-1 of the batch as an (r1 - r0, n) float64 array, reading only their part
        of the file (a few boxes of the N-D array, each contiguous in the batch's C order)."""
        if not self.batch_shape:
            return self._as_rows(self._get((slice(None),)))
        parts = []
        for box in _row_boxes(self.batch_shape, int(r0), int(r1)):
            key = box[:self.axis] + (slice(None),) + box[self.axis:]
            parts.append(self._as_rows(self._get(key)))
        if not parts:
            return np.zeros((0, self.n))
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def read_cols(self, row: int, c0: int, c1: int) -> np.ndarray:
        """Elements c0..c1-1 of row ``row``'s vector as a (1, c1 - c0) float64 array, reading only
        them (a vector too long to read whole, evaluated a piece at a time)."""
        b = tuple(slice(i, i + 1) for i in self.index(row))
        key = b[:self.axis] + (slice(int(c0), int(c1)),) + b[self.axis:]
        return self._as_rows(self._get(key), int(c1) - int(c0))

    def read(self) -> np.ndarray:
        """Every vector as one (rows, n) float64 array."""
        if self.size > MAX_INPUT_ELEMENTS:
            raise UsageError(f"{self.what}: {self.size:,} values, above the limit of {MAX_INPUT_ELEMENTS:,}")
        parts = [b for _, b in self.blocks()]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def _as_rows(self, a, width: int | None = None) -> np.ndarray:
        a = np.asarray(a)
        if a.ndim:
            a = np.moveaxis(a, self.axis, -1)
        with np.errstate(all="ignore"):
            out = a.astype(np.float64).reshape(-1, self.n if width is None else width)
        if a.dtype.kind == "f" and a.dtype.itemsize > 8:  # long double: values beyond float64
            wide = np.isfinite(a) & ~np.isfinite(out.reshape(a.shape))
            if wide.any():
                raise UsageError(f"{self.what}: value {a[wide].ravel()[0]!r} does not fit float64 "
                                 f"(max {np.finfo(np.float64).max:g})")
        return out


def _row_boxes(shape: tuple, r0: int, r1: int):
    """Boxes (tuples of slices over the batch axes ``shape``) that together hold the rows
    r0..r1-1 of the batch in C order, in that order: at most two partial boxes per axis."""
    if r1 <= r0:
        return
    if len(shape) == 1:
        yield (slice(r0, r1),)
        return
    inner = int(np.prod(shape[1:], dtype=np.int64))
    rest = tuple(slice(None) for _ in shape[1:])
    i0, o0 = divmod(r0, inner)
    i1, o1 = divmod(r1, inner)
    if i0 == i1:
        for b in _row_boxes(shape[1:], o0, o1):
            yield (slice(i0, i0 + 1),) + b
        return
    if o0:
        for b in _row_boxes(shape[1:], o0, inner):
            yield (slice(i0, i0 + 1),) + b
        i0 += 1
    if i1 > i0:
        yield (slice(i0, i1),) + rest
    if o1:
        for b in _row_boxes(shape[1:], 0, o1):
            yield (slice(i1, i1 + 1),) + b


def _npy_getter(path):
    """Slices of a .npy file through a memory map opened for each read and dropped after it, so
    the pages a block touched leave this process's resident memory with the block."""

    def get(k, path=str(path)):
        return np.load(path, mmap_mode="r", allow_pickle=False)[k]  # unmapped once converted

    return get


def open_input(path, key: str | None = None, axis: int | None = None, whole: bool = True) -> InputArray:
    """The input array of a file (nothing but its header read yet for .npy and .safetensors).

    ``whole``: the caller reads it all at once, so the count limit (MAX_INPUT_ELEMENTS) applies;
    a caller that reads .npy or .safetensors files a block of rows at a time passes False
    (.npz and text files are read whole whatever the caller: the limit applies to them)."""
    import zipfile

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in INPUT_SUFFIXES:
        open_regular(path, "input").close()
        raise UsageError(f"{path}: unsupported file type {suffix!r} "
                         "(use .npy, .npz, .safetensors, .csv or .txt)")
    if key is not None and suffix not in (".npz", ".safetensors"):
        raise UsageError(f"{path}: --key names an array of a .npz or .safetensors file")
    try:
        if suffix == ".npy":
            open_regular(path, "input").close()
            with open(path, "rb") as fh:
                header = _check_npy_header(fh, path, whole)
            if header is None:  # a damaged header: np.load says what is wrong
                a = np.load(path, mmap_mode="r", allow_pickle=False)
                header = (a.shape, a.dtype)
                del a
            return InputArray(str(path), header[0], header[1], _npy_getter(path), axis)
        if suffix == ".safetensors":
            return _open_safetensors(path, key, axis, whole)
        if suffix == ".npz":
            with open_regular(path, "input") as fh, np.load(fh, allow_pickle=False) as z:
                name = _pick_key(path, key, list(z.files))
                member = name if name in z.zip.namelist() else name + ".npy"
                with z.zip.open(member) as m:
                    _check_npy_header(m, path)
                a = z[name]
            return InputArray(f"{path}[{name}]", a.shape, a.dtype, lambda k, a=a: a[k], axis)
        a = _read_text(path)
        if a.shape[0] == 1 and axis is None:
            a = a[0]
        return InputArray(str(path), a.shape, a.dtype, lambda k, a=a: a[k], axis)
    except UsageError:
        raise
    except PermissionError:
        raise UsageError(f"{path}: permission denied") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, TypeError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else "corrupt"
        raise UsageError(f"{path}: cannot read ({why})") from None


def _pick_key(path, key, names) -> str:
    if key is not None:
        if key not in names:
            raise UsageError(f"{path}: no array {key!r} (has {', '.join(map(repr, names)) or 'none'})")
        return key
    if len(names) != 1:
        raise UsageError(f"{path}: holds {len(names)} arrays ({', '.join(map(repr, names[:8]))}); "
                         "name one with --key")
    return names[0]


def _open_safetensors(path, key, axis, whole: bool = True) -> InputArray:
    """A tensor of a .safetensors file through the safetensors package, sliced lazily."""
    try:
        from safetensors import safe_open
    except ImportError:  # pragma: no cover - a dependency
        raise UsageError("reading .safetensors needs the safetensors package "
                         "(pip install safetensors)") from None
    import ml_dtypes  # noqa: F401 - registers bfloat16 for safetensors' numpy frames

    open_regular(path, "input").close()
    try:
        fh = safe_open(str(path), framework="numpy")
        with fh as f:
            name = _pick_key(path, key, list(f.keys()))
            sl = f.get_slice(name)
            shape, stype = tuple(sl.get_shape()), sl.get_dtype()
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - the package raises its own error types
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"{path}: cannot read ({why})") from None
    dtypes = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64", "I8": "int8",
              "I16": "int16", "I32": "int32", "I64": "int64", "U8": "uint8", "U16": "uint16",
              "U32": "uint32", "U64": "uint64", "BOOL": "bool"}
    if stype not in dtypes:
        raise UsageError(f"{path}: tensor {name!r} of {stype} is not a supported numeric type")
    dt = ml_dtypes.bfloat16 if stype == "BF16" else dtypes[stype]
    count = int(np.prod(shape, dtype=object)) if shape else 1
    if count > MAX_INPUT_ELEMENTS:
        raise UsageError(f"{path}: {count:,} values, above the limit of {MAX_INPUT_ELEMENTS:,}")

    def get(k, path=str(path), name=name):
        try:
            with safe_open(path, framework="numpy") as f:
                return f.get_slice(name)[k]
        except Exception as exc:  # noqa: BLE001 - the package raises its own error types
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UsageError(f"{path}: cannot read tensor {name!r} ({why})") from None

    return InputArray(f"{path}[{name}]", shape, dt, get, axis)


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


def _check_npy_header(fh, path, whole: bool = True):
    """Refuse an oversized .npy before its data is read (the header gives shape and dtype);
    returns (shape, dtype), or None when the header cannot be read."""
    from numpy.lib import format as npf

    pos = fh.tell()
    try:
        version = npf.read_magic(fh)
        shape, _, dtype = (npf.read_array_header_1_0(fh) if version == (1, 0)
                           else npf.read_array_header_2_0(fh))
    except (ValueError, OSError, EOFError):
        fh.seek(pos)
        return None  # np.load reports the damage
    fh.seek(pos)
    count = int(np.prod(shape, dtype=object)) if shape else 1
    if whole and count > MAX_INPUT_ELEMENTS:
        raise UsageError(f"{path}: {count:,} values, above the limit of {MAX_INPUT_ELEMENTS:,}")
    if dtype.hasobject:
        raise UsageError(f"{path}: array of {dtype} is not numeric")
    return tuple(shape), dtype


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


def load_vectors(path, key: str | None = None, axis: int | None = None) -> np.ndarray:
    """The vectors of a file as a (rows, n) float64 batch (see :func:`load_input`)."""
    return load_input(path, key, axis)[0]


def load_input(path, key: str | None = None, axis: int | None = None):
    """(the vectors as a (rows, n) float64 batch, the InputArray that indexes them)."""
    src = open_input(path, key, axis)
    return _check(src.read(), src.what), src


def _check(a: np.ndarray, what: str) -> np.ndarray:
    if a.size == 0 or a.shape[-1] == 0:
        raise UsageError(f"{what}: no values")
    if a.size > MAX_INPUT_ELEMENTS:
        raise UsageError(f"{what}: {a.size:,} values, above the limit of {MAX_INPUT_ELEMENTS:,}")
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
    """Round to the format; refuse finite values that do not fit it (infinities and NaN stay)."""
    with np.errstate(all="ignore"):
        xr = fmt.round(x)
    bad = ~np.isfinite(xr) & np.isfinite(x)
    if bad.any():
        v = x[bad][0]
        raise UsageError(f"{what} {v:g} does not fit {fmt.name} (max {fmt.max:g})")
    if not fmt.has_inf and np.isinf(x).any():
        raise UsageError(f"{what}: {fmt.name} has no infinity, so masks (-inf) and +inf inputs cannot be "
                         "given in it")
    return xr


