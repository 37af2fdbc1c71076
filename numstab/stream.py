"""Streaming evaluation: a batch of vectors (an input file, shards of one, or a grid's batch)
evaluated a block of rows at a time, with results identical to one pass.

The unit of work is a :class:`Chunk` -- some rows of the batch and the settings of the run
(:class:`Job`) -- and :func:`run_chunk` is the one chunk function: the same in this process,
in worker processes (``--jobs``) and on a Dask cluster (``--scheduler``). It reads only its
rows (inputs.InputArray.read_rows), evaluates them through engine.evaluate and returns a
:class:`Partial`: per implementation, the counts of every (status, cause) pair, a histogram
of the ULP figures (quantized, so few distinct values), the largest relative error, the
figures beyond float64's range, the flags, and the candidates for the worst rows. Partials
merge exactly and in any order (sums, maxima, histograms; candidates ranked by a total key
that ends with the global row index), so every figure -- medians and the --top K rows
included -- is the one a single pass over the whole batch gives. Peak memory is that of the
chunks in flight, whatever the size of the input.

A row of a function with reductions needs the whole vector (its max and sum, and the
implementations' own reductions in their accumulation order). One longer than a block, of the
softmax family, label smoothing or cross-entropy's gradient (finite, or with non-finite entries
whose limits are known without the whole vector), with built-in implementations whose kernels are
piecewise, is cut in pieces of columns all the same, each evaluated with the context of the whole
vector (numstab.vector: the kernels' reductions and the reference's row quantities, learned from
passes over the pieces), with the figures of the whole vector's evaluation. Any other such row is
the smallest chunk, and :func:`rows_per_chunk` refuses before any work a row whose evaluation
would not fit. An elementwise function (the sigmoid family: every output depends
on its own element alone) has no such bound: a vector longer than a block is cut into pieces of
columns (``Chunk.c0``, ``c1``), each read and evaluated alone, so a single vector of any length
streams in bounded memory with the figures of one pass (its elements ranked by their place in
the whole vector, the vector counted once).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from .errors import UsageError
from .results import FLAG_NAMES, INACCURATE, OVERFLOW, STATUSES

#: Input elements per chunk (rows are never split; NUMSTAB_BLOCK overrides it, for tests).
BLOCK_ELEMENTS = 1 << 20


def block_elements() -> int:
    env = os.environ.get("NUMSTAB_BLOCK")
    if env:
        try:
            v = int(env)
        except ValueError:
            raise UsageError(f"NUMSTAB_BLOCK={env!r}: not a number of elements") from None
        if v < 1:
            raise UsageError(f"NUMSTAB_BLOCK={env!r}: must be at least 1")
        return v
    return BLOCK_ELEMENTS


# ------------------------------------------------------------------ sources
@dataclass(frozen=True)
class FileSource:
    """One input file, or several shards read as one batch (rows in file order, then row order
    within each file). Picklable: a worker (or a Dask worker on a shared file system) opens the
    files itself, reading only the header until a chunk asks for rows."""

    paths: tuple
    key: str | None = None
    axis: int | None = None

    def arrays(self) -> list:
        """The files' arrays (each opened afresh: only headers are read)."""
        from .inputs import open_input

        return [open_input(p, self.key, self.axis, whole=False) for p in self.paths]

    def array(self, i: int):
        from .inputs import open_input

        return open_input(self.paths[i], self.key, self.axis, whole=False)

    @property
    def sharded(self) -> bool:
        return len(self.paths) > 1


def open_source(spec, key=None, axis=None) -> tuple[FileSource, list]:
    """The source of ``--input`` (a file, or a glob pattern naming several shards), checked:
    every shard holds vectors of the same length."""
    import glob

    from .inputs import open_regular

    spec = str(spec)
    if any(c in spec for c in "*?["):
        paths = sorted(glob.glob(spec))
        if not paths:
            raise UsageError(f"--input {spec!r}: no file matches the pattern")
    else:
        paths = [spec]
    for p in paths:
        if len(paths) > 1:
            open_regular(p, "input").close()
    src = FileSource(tuple(paths), key, axis)
    arrays = src.arrays()
    ns = {a.n for a in arrays}
    if len(ns) > 1:
        lens = ", ".join(f"{a.what}: {a.n}" for a in arrays[:4])
        raise UsageError(f"--input {spec!r}: the shards hold vectors of different lengths ({lens}); "
                         "every vector must have the same length")
    return src, arrays


# -------------------------------------------------------------------- jobs
_LOCAL_IMPLS: list = []  # implementations that cannot be pickled (callables, libraries): forked workers
#                         inherit this list; a Job names them by their index


@dataclass(frozen=True)
class Job:
    """The settings every chunk of a run shares."""

    function: str
    dtype: str
    impls: tuple  # ("builtin", function, name) or ("local", index into _LOCAL_IMPLS)
    accumulate: str = "sequential"
    tolerance: float = 4.0
    specials: object = None  # masks.Specials
    temperature: float | None = None
    top: int = 0  # candidates for the K worst rows
    on_error: str = "raise"
    audit: tuple | None = None  # (fail_on, max ULP limit or None): the audit's extra counts
    extras: object = None  # grids.Extras (cotangents)
    source: FileSource | None = None
    compute: str = "float32"  # the built-ins' precision model (steps.COMPUTE_MODELS)
    elements: bool = False  # a batch of one vector: name its K worst elements (locate.worst)

    def resolve(self) -> list:
        from .functions import REGISTRY

        out = []
        for ref in self.impls:
            if ref[0] == "builtin":
                out.append(REGISTRY[ref[1]][ref[2]])
            elif ref[0] == "source":
                out.append(_rebuilt(ref[1:]))
            else:
                out.append(_LOCAL_IMPLS[ref[1]])
        return out


_REBUILT: dict = {}  # black boxes built again from their source, once per (worker) process


def _rebuilt(source: tuple):
    """The implementation an Impl.source names, built in this process (a Dask worker): the
    callable imported by its reference, the library adapter loaded by its name."""
    if source not in _REBUILT:
        if source[0] == "callable":
            from .adapters import load_callable, user_impl

            _, function, spec, timeout = source
            impl = user_impl(function, load_callable(spec), spec, timeout=timeout)
        else:
            from .libraries import library_impls

            _, function, lib, name, timeout, device = source
            found = [i for i in library_impls(lib, function, timeout=timeout, device=device)
                     if i.name == name]
            if not found:
                raise UsageError(f"--library {lib}: this worker's {lib} has no {name}")
            impl = found[0]
        _REBUILT[source] = impl
    return _REBUILT[source]


def callable_reference(spec: str) -> str:
    """A --callable as another machine imports it: module:function as given, a file's path made
    absolute (the workers see the files at the same paths)."""
    mod, _, attr = spec.rpartition(":")
    if mod.endswith(".py") or "/" in mod:
        from pathlib import Path

        return f"{Path(mod).resolve()}:{attr}"
    return spec


def impl_refs(impls, remote: bool = False) -> tuple:
    """Job.impls for these implementations: black boxes are kept in this process's list (forked
    workers inherit it), or with ``remote`` (a Dask cluster) named by their source, which the
    worker builds again; one without a source is refused in one line."""
    _LOCAL_IMPLS.clear()
    refs = []
    for i in impls:
        if i.builtin:
            refs.append(("builtin", i.function, i.name))
        elif remote:
            if not getattr(i, "source", ()):
                raise UsageError(f"--scheduler: {i.name} cannot be rebuilt on a Dask worker (a callable "
                                 "passed as an object: give it as module:function or file.py:function); "
                                 "use --jobs")
            refs.append(("source",) + tuple(i.source))
        else:
            _LOCAL_IMPLS.append(i)
            refs.append(("local", len(_LOCAL_IMPLS) - 1))
    return tuple(refs)


@dataclass(frozen=True)
class Chunk:
    """Rows [r0, r1) of shard ``shard`` of the job's source (or the inline values ``x0``), the
    ``row0``-th row of the whole batch onwards; ``args``: the extra arguments of these rows as
    prepared by :func:`prepare_args` (or final, for inline values); ``rng``: the state of the
    cotangents' normal stream at the chunk's first element. ``c1 > 0``: only the elements
    c0..c1-1 of the one row r0 (a piece of a long vector of an elementwise function)."""

    job: Job
    row0: int
    shard: int = 0
    r0: int = 0
    r1: int = 0
    x0: np.ndarray | None = None
    args: dict = field(default_factory=dict)
    rng: dict | None = None
    n: int = 0  # the vectors' length
    c0: int = 0
    c1: int = 0  # > 0: the piece c0..c1-1 of the row (elementwise functions)
    vector: object = None  # a piece of a long vector with reductions: the vector (vector.LongVector) ...
    piece: int = -1  # ... and the piece's number in it

    @property
    def rows(self) -> int:
        return self.x0.shape[0] if self.x0 is not None else self.r1 - self.r0

    @property
    def split(self) -> bool:
        return self.c1 > 0

    @property
    def size(self) -> int:
        """The input elements of the chunk."""
        return self.c1 - self.c0 if self.split else self.rows * self.n


# ------------------------------------------------------------ extra arguments
@dataclass(frozen=True)
class LabelFile:
    """Labels given one per element in a .npy file, read a chunk at a time (like the inputs) instead
    of whole: element j of the batch's row r is the value at position r * n + j of the file in C
    order (the layout grids.load_labels reads). ``r0``..``r1``: the window of rows (batch rows
    from 0), and with ``c1 > 0`` the elements c0..c1-1 of the one row r0. Picklable: a worker
    (or a Dask worker on a shared file system) maps the file itself."""

    path: str
    n: int
    r0: int = 0
    r1: int = 0
    c0: int = 0
    c1: int = 0

    def rows(self, r0: int, r1: int) -> LabelFile:
        import dataclasses

        return dataclasses.replace(self, r0=self.r0 + r0, r1=self.r0 + r1)

    def columns(self, c0: int, c1: int) -> LabelFile:
        import dataclasses

        return dataclasses.replace(self, c0=c0, c1=c1)

    def flat(self):
        return np.load(self.path, mmap_mode="r", allow_pickle=False).reshape(-1)

    def read(self) -> np.ndarray:
        """The window as a float64 array, (rows, n) or (1, c1 - c0)."""
        start = self.r0 * self.n
        a = (self.flat()[start + self.c0: start + self.c1].reshape(1, -1) if self.c1 else
             self.flat()[start: self.r1 * self.n].reshape(-1, self.n))
        with np.errstate(all="ignore"):
            return a.astype(np.float64)


def label_file(path, rows: int, n: int) -> LabelFile | None:
    """Per-element labels in a C-order .npy file of rows * n numbers, checked block by block
    before any work (numbers in [0, 1], as grids.load_labels checks them); None for any other
    file (a .npz or text file, one label per vector, a Fortran-order array, whose flat C-order
    view would be a copy of the whole file), which is read whole."""
    from pathlib import Path

    from .grids import check_labels
    from .inputs import open_input

    if Path(path).suffix.lower() != ".npy":
        return None
    arr = open_input(path, whole=False)
    if arr.size != rows * n or arr.dtype.kind not in "fiu":
        return None
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError:
        return None
    if not mapped.flags.c_contiguous:
        return None
    flat = mapped.reshape(-1)
    step = block_elements()
    for i in range(0, flat.size, step):
        with np.errstate(all="ignore"):
            check_labels(flat[i:i + step].astype(np.float64), path)
    return LabelFile(str(path), n, 0, rows)


def prepare_args(fmt, rec, rows: int, n: int, target=None, targets_file=None, extras=None) -> dict:
    """The extra argument of the batch, compact (one value per row, or one for all), checked before
    any work: target indices, labels (per vector, per element from a file, or one for all), the
    label smoothing. The cotangents are made per chunk (:func:`chunk_args`)."""
    from . import validate
    from .grids import DEFAULT_EXTRAS, check_extras, load_labels
    from .inputs import load_targets

    extras = extras or DEFAULT_EXTRAS
    kind = rec.takes
    if kind is None:
        return {}
    if kind in ("target", "smoothing"):
        t = load_targets(validate.target(target), targets_file, rows, n, required=True, what=rec.name)
        out = {"target": t}
        if kind == "smoothing":
            out["epsilon"] = fmt.round(np.float64(extras.epsilon))[()]
        return out
    if kind == "label":
        if targets_file is not None and target is None:
            lazy = label_file(targets_file, rows, n)
            if lazy is not None:
                return {"label": lazy}
        return {"label": load_labels(rec, target, targets_file, rows, n)}
    if kind == "cotangent":
        check_extras(extras, (n,))
        return {}
    raise UsageError(f"{rec.name}: unknown extra argument kind {kind!r}")


def slice_args(args: dict, r0: int, r1: int) -> dict:
    return {k: (v.rows(r0, r1) if isinstance(v, LabelFile)
                else v[r0:r1] if isinstance(v, np.ndarray) and v.ndim else v) for k, v in args.items()}


def slice_columns(args: dict, c0: int, c1: int) -> dict:
    """The extra arguments of the piece c0..c1-1 of a row's elements (``args`` sliced to the row):
    per-element values (labels from a file) cut to the piece, per-vector ones kept."""
    return {k: (v.columns(c0, c1) if isinstance(v, LabelFile) else v[..., c0:c1]
                if isinstance(v, np.ndarray) and v.ndim == 2 else v) for k, v in args.items()}


def chunk_args(fmt, rec, x: np.ndarray, args: dict, extras, rng_state) -> dict:
    """The extra arguments of a chunk's rounded rows x, as grids.load_args makes them for the
    whole batch (the same values, row for row)."""
    from .grids import DEFAULT_EXTRAS, cotangents

    B, n = x.shape
    kind = rec.takes
    if kind is None:
        return {}
    if kind == "target":
        return {"target": args["target"]}
    if kind == "smoothing":
        eps = np.full(B, args["epsilon"])
        return {"smoothing": np.rec.fromarrays([args["target"], eps], names="target,epsilon")}
    if kind == "label":
        lab = args["label"]
        z = np.broadcast_to(lab.read() if isinstance(lab, LabelFile) else lab, (B, n))
        return {"label": fmt.round(np.ascontiguousarray(z, dtype=np.float64))}
    rng = np.random.default_rng([0, n, 13])
    if rng_state is not None:
        rng.bit_generator.state = rng_state
    return {"cotangent": cotangents(fmt, x, extras or DEFAULT_EXTRAS, rng.standard_normal((B, n)))}


# ------------------------------------------------------------------ partials
@dataclass
class Part:
    """One implementation's figures over some rows, ready to merge."""

    error: str | None = None
    error_at: int = -1  # the first row of the chunk whose call failed (the earliest error is kept)
    inferred: bool = False
    sc: np.ndarray | None = None  # (statuses, causes + 1) element counts
    uvals: np.ndarray = field(default_factory=lambda: np.zeros(0))  # distinct known ULP figures ...
    ucnt: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # ... and their counts
    rel_max: list = field(default_factory=list)  # max relative error of each piece with known figures
    big_ulp: list = field(default_factory=list)  # figures beyond float64's range
    big_rel: list = field(default_factory=list)
    flags: int = 0
    failing_rows: int = 0  # whole rows with a failing element ...
    failing_split: set = field(default_factory=set)  # ... and long rows (their batch index) cut in pieces
    masked: dict = field(default_factory=dict)  # fully masked rows: what came out, counted ...
    masked_split: dict = field(default_factory=dict)  # ... and long rows in pieces: row -> what
    zeros: int = 0
    limits: int = 0
    worst: list = field(default_factory=list)  # (key, entry, exact-string inputs)
    one_per_row: bool = True  # the worst entries are rows (their worst element), not one vector's elements
    first: tuple | None = None  # (key, first_failure dict)

    def merge(self, other: Part, top: int) -> None:
        if other.error and (not self.error or other.error_at < self.error_at):
            self.error, self.error_at = other.error, other.error_at
        self.inferred |= other.inferred
        self.sc = other.sc if self.sc is None else (self.sc if other.sc is None else self.sc + other.sc)
        if other.uvals.size:
            v = np.concatenate([self.uvals, other.uvals])
            c = np.concatenate([self.ucnt, other.ucnt])
            self.uvals, inv = np.unique(v, return_inverse=True)
            self.ucnt = np.bincount(inv.ravel(), weights=c, minlength=self.uvals.size).astype(np.int64)
        self.rel_max += other.rel_max
        self.big_ulp += other.big_ulp
        self.big_rel += other.big_rel
        self.flags |= other.flags
        self.failing_rows += other.failing_rows
        self.failing_split |= other.failing_split
        for k, v in other.masked.items():
            self.masked[k] = self.masked.get(k, 0) + v
        for r, k in other.masked_split.items():  # a long row's pieces: one kind, or "other"
            self.masked_split[r] = k if self.masked_split.get(r, k) == k else "other"
        self.zeros += other.zeros
        self.limits += other.limits
        worst = sorted(self.worst + other.worst, key=lambda w: w[0])
        if self.one_per_row:  # a long row's pieces each name a candidate: the row's worst stays
            seen: set = set()
            worst = [w for w in worst if not (w[0][2] in seen or seen.add(w[0][2]))]
        self.worst = worst[:top]
        if other.first is not None and (self.first is None or other.first[0] < self.first[0]):
            self.first = other.first

    # the figures of engine.summarize, from the merged counts
    def summary(self) -> dict:
        from .metrics import quantize
        from .results import CAUSES

        sc = self.sc if self.sc is not None else np.zeros((len(STATUSES), len(CAUSES) + 1), dtype=np.int64)
        per_status = sc.sum(axis=1)
        counts = {k: int(per_status[i]) for i, k in enumerate(STATUSES)}
        present = np.nonzero(per_status)[0]
        worst = int(present.max()) if present.size else 0
        failing = sc[INACCURATE:].sum(axis=0)
        causes = {CAUSES[c - 1]: int(failing[c]) for c in range(1, sc.shape[1]) if failing[c]}
        cause = None
        if present.size and worst >= INACCURATE:
            row = sc[worst, 1:]
            cause = CAUSES[int(np.argmax(row))] if row.any() else None
        known = int(self.ucnt.sum())
        out = {"status": STATUSES[worst], "counts": counts, "causes": causes, "cause": cause,
               "max_ulp": float(self.uvals.max()) if known else math.nan,
               "median_ulp": float(quantize(self._median())) if known else math.nan,
               "max_rel": float(np.max(np.array(self.rel_max))) if self.rel_max else math.nan}
        if self.big_ulp:
            out["max_ulp"] = max(self.big_ulp)
        if self.big_rel:
            out["max_rel"] = max(self.big_rel)
        if self.big_ulp and math.isinf(out["median_ulp"]):
            out["median_ulp"] = self._big_median()
        return out

    def _nth(self, k: int):
        """The k-th (0-based) smallest known ULP figure."""
        cum = np.cumsum(self.ucnt)
        return float(self.uvals[int(np.searchsorted(cum, k, side="right"))])

    def _median(self) -> float:
        total = int(self.ucnt.sum())
        h = total // 2
        if total % 2:
            return self._nth(h)
        return float(np.mean(np.array([self._nth(h - 1), self._nth(h)])))

    def _big_median(self):
        """engine._big_summary's median when figures beyond float64's range are present."""
        from decimal import Decimal

        fin = np.isfinite(self.uvals)
        n_inf = int(self.ucnt[~fin].sum()) - len(self.big_ulp)
        pairs = [(Decimal(float(v)), int(c)) for v, c in zip(self.uvals[fin], self.ucnt[fin])]
        pairs += [(v, 1) for v in sorted(self.big_ulp)]
        pairs.append((Decimal("Infinity"), n_inf))
        pairs = [p for p in pairs if p[1] > 0]
        total = sum(c for _, c in pairs)

        def nth(k):
            for v, c in pairs:
                if k < c:
                    return v
                k -= c
            raise IndexError(k)  # pragma: no cover

        h = total // 2
        med = nth(h) if total % 2 else (nth(h - 1) + nth(h)) / 2
        q = Decimal(f"{med:.3g}") if med.is_finite() else med
        return q if not math.isfinite(float(q)) and q.is_finite() else float(q)

    def flag_names(self) -> list:
        return [f for i, f in enumerate(FLAG_NAMES) if self.flags & (1 << i)]

    def vectors_failing(self) -> int:
        """Vectors with at least one failing element (a long vector's pieces counted as one)."""
        return self.failing_rows + len(self.failing_split)

    def masked_rows(self) -> dict:
        """What the fully masked rows returned (masks.returned_kind), counted; {} without any."""
        out = dict(self.masked)
        for k in self.masked_split.values():
            out[k] = out.get(k, 0) + 1
        return out


@dataclass
class Partial:
    """The merged figures of a run, per implementation (in the job's order)."""

    parts: list
    elements: int = 0
    rows: int = 0

    def merge(self, other: Partial, top: int) -> None:
        for a, b in zip(self.parts, other.parts):
            a.merge(b, top)
        self.elements += other.elements
        self.rows += other.rows


# ------------------------------------------------------------ the chunk function
def run_chunk(chunk: Chunk, stage=None) -> Partial:
    """Evaluate one chunk: the same function locally, in worker processes and on a Dask cluster.
    ``stage(fraction)``: the progress inside the chunk (engine.evaluate), where it runs here."""
    from . import masks
    from .engine import evaluate, scale_args
    from .formats import get_format
    from .functions import get as get_function
    from .inputs import round_inputs

    job = chunk.job
    fmt = get_format(job.dtype)
    rec = get_function(job.function)
    specials = job.specials or masks.DEFAULT
    names = None
    if chunk.x0 is not None:
        x0 = chunk.x0
        what = "input"
    else:
        arr = job.source.array(chunk.shard)
        x0 = arr.read_cols(chunk.r0, chunk.c0, chunk.c1) if chunk.split else arr.read_rows(chunk.r0, chunk.r1)
        what = arr.what
        names = _Names(arr, chunk.r0, job.source.paths[chunk.shard] if job.source.sharded else None, chunk.c0)
    masks.check_function(job.function, x0, what)
    x = round_inputs(fmt, x0)
    piece = None
    if chunk.vector is not None:
        from .vector import Piece

        piece = Piece(chunk.vector, chunk.piece, fmt)
    if piece is not None and chunk.vector.cotangent is not None:  # the vector's cotangent at the piece
        args = {"cotangent": piece.cotangent(chunk.c0, chunk.c1)}
    else:
        args = chunk_args(fmt, rec, x, chunk.args, job.extras, chunk.rng) if chunk.x0 is None else chunk.args
    impls = job.resolve()
    outs, ref, _ = evaluate(fmt, x, args, impls, job.accumulate, job.tolerance, on_error=job.on_error,
                            specials=specials, temperature=job.temperature, compute=job.compute,
                            stage=stage, piece=piece, flags_only=_flags_only(chunk))
    args_e = scale_args(fmt, args, x.shape[0], job.temperature)  # exact values at the exact x / T_F
    head = None
    if chunk.split:  # the first values of the whole vector, which entries show
        from .locate import VECTOR_SHOWN

        head = x if chunk.c0 == 0 else round_inputs(fmt, arr.read_cols(chunk.r0, 0,
                                                                         min(chunk.n, VECTOR_SHOWN)))
    xe = x if piece is None else piece.seen(x)  # (the exact strings' inputs: the vector the reference sees)
    parts = [_part(fmt, job, chunk, o, x, xe, args_e, ref, names, specials, head) for o in outs]
    # a long vector's pieces: counted as one vector, by its first piece
    return Partial(parts, int(x.size), 0 if chunk.split and chunk.c0 else int(x.shape[0]))


def _flags_only(chunk: Chunk) -> bool:
    """A piece after the first of a long vector with one output (logsumexp, the losses): that output
    is the same in every piece and judged by the first; this piece adds only the flags its own
    steps raise (engine.evaluate's ``flags_only``)."""
    from .functions import get as get_function

    return chunk.vector is not None and chunk.c0 > 0 and get_function(chunk.job.function).per_vector


class _Names:
    """The N-D index of a chunk's rows in their file (the chunk's row r is row r0 + r there, its
    element j the element c0 + j of the vector)."""

    def __init__(self, arr, r0: int, path, c0: int = 0):
        self.arr, self.r0, self.path, self.c0 = arr, r0, path, c0

    def index(self, r):
        return self.arr.index(self.r0 + r)

    def element_index(self, r, j=None):
        return self.arr.element_index(self.r0 + r, None if j is None else self.c0 + j)


def _part(fmt, job: Job, chunk: Chunk, o, x, xe, args, ref, names, specials, head=None) -> Part:
    """One implementation's figures over the chunk's rows, as a mergeable Part. A piece of a long
    vector (``chunk.split``; ``head``: the vector's first values) names its elements by their place
    in the vector (c0 + j) and keeps, for each candidate, its own element alone (an elementwise
    function's exact value needs nothing else)."""
    from .functions import get as get_function
    from .masks import returned_kind
    from .results import CAUSES

    p = Part(inferred=o.inferred, one_per_row=not job.elements)
    if o.error is not None:
        p.error, p.error_at = o.error, chunk.row0
        return p
    if _flags_only(chunk):
        p.flags = _flag_bits(o.flags)
        return p
    B = x.shape[0]
    st = o.status.ravel().astype(np.int64)
    cs = o.cause.ravel().astype(np.int64)
    width = len(CAUSES) + 1
    p.sc = np.bincount(st * width + cs, minlength=len(STATUSES) * width).reshape(len(STATUSES), width)
    u = o.ulp.ravel()
    known = ~np.isnan(u)
    if known.any():
        p.uvals, p.ucnt = np.unique(u[known], return_counts=True)
        p.ucnt = p.ucnt.astype(np.int64)
        p.rel_max = [float(np.max(o.rel.ravel()[known]))]
    for (kind, _i), v in o.big.items():
        (p.big_ulp if kind == "ulp" else p.big_rel).append(v)
    p.flags = _flag_bits(o.flags)
    failing = (o.status >= INACCURATE).reshape(B, -1).any(axis=1)
    if chunk.split:
        p.failing_split = {chunk.row0} if failing.any() else set()
    else:
        p.failing_rows = int(np.sum(failing))
    if job.function in ("softmax", "log_softmax") and chunk.vector is not None:
        # a long vector's pieces: what the fully masked vector returned, decided over all of them
        facts = chunk.vector.facts
        if facts is not None and facts.finite == 0:
            p.masked_split = {chunk.row0: returned_kind(o.y[0], job.function, chunk.n)}
    elif job.function in ("softmax", "log_softmax"):
        for r in np.nonzero((x == -np.inf).all(axis=1))[0]:
            k = returned_kind(o.y[r], job.function)
            p.masked[k] = p.masked.get(k, 0) + 1
    if job.audit is not None:
        fail_on, limit = job.audit
        r = ref[job.function]
        p.zeros = int(np.sum(spurious_zero(job.function, o.y, r.rounded, o.status)))
        p.limits = int(np.sum(wrong_limit(o.y, r)))
        p.first = _first_failure(job, fail_on, limit, o, x, args, r, chunk.row0,
                                 (chunk.c0, chunk.n, head) if chunk.split else None)
    if job.top > 0 and names is not None:
        from .locate import worst

        keys: list = []
        entries = worst(o, x, args, fmt, job.top, names, specials, exact=False, x_exact=xe, keys=keys,
                        elements=job.elements)
        tg = args.get("target", np.zeros(B, dtype=np.int64)) if isinstance(args, dict) else args
        rows: dict = {}  # each candidate row copied once (a long vector's K elements share it)
        for entry, (r, rs, ru, j) in zip(entries, keys):
            row_arg = (int(tg[r]) if not isinstance(args, dict) or set(args) <= {"target"}
                       else {k: v[r] for k, v in args.items()})
            if names.path is not None:
                entry = {"file": names.path, **entry}
            if chunk.split:  # the element alone, named by its place in the whole vector
                from .locate import shown_vector

                at = {} if get_function(job.function).per_vector else {"element": chunk.c0 + j}
                entry = {**entry, **at, "vector": shown_vector(head[0], chunk.n)}
                if isinstance(row_arg, dict):  # per-element arguments (labels) cut to the element
                    row_arg = {k: (v[j:j + 1] if isinstance(v, np.ndarray) and v.ndim == 1 else v)
                               for k, v in row_arg.items()}
                p.worst.append(((-rs, -ru, chunk.row0 + r, chunk.c0 + j), entry,
                                (xe[r, j:j + 1].copy(), row_arg, 0, (chunk.row0 + r, chunk.c0 + j),
                                 chunk.vector)))
                continue
            if r not in rows:
                rows[r] = xe[r].copy()
            p.worst.append(((-rs, -ru, chunk.row0 + r, j), entry, (rows[r], row_arg, j, chunk.row0 + r)))
    return p


def finish_worst(fmt, function: str, part: Part, specials) -> list:
    """The merged --top K rows with their exact values (25 digits, every one right): computed
    for those K rows only, once the whole input has been ranked; the elements of one row together, so
    a long row's shared quantities are computed once)."""
    from .locate import exact_strings_at

    by_row: dict = {}  # a row's (or a long vector's piece's) candidates together
    for _key, _entry, (xr, row_arg, j, group, *vec) in part.worst:
        by_row.setdefault(group, (xr, row_arg, [], vec[0] if vec else None))[2].append(j)
    exact = {}
    for g, (xr, row_arg, js, vec) in by_row.items():
        whole = None
        if vec is not None:  # an element of a long vector with reductions: as that vector's element
            from .masks import special_text
            from .vector import element_reference

            fixed, whole = element_reference(vec, fmt, function, row_arg, g[1])
            if fixed is not None:  # a value its limits fix
                exact.update({(g, j): special_text(fixed) for j in js})
                continue
        strings = exact_strings_at(fmt, xr, row_arg, function, js, specials, whole)
        exact.update({(g, j): s for j, s in zip(js, strings)})
    return [{**entry, "exact": exact[(g, j)]} for _key, entry, (_xr, _a, j, g, *_v) in part.worst]


def spurious_zero(function: str, y: np.ndarray, rounded: np.ndarray, status: np.ndarray) -> np.ndarray:
    """Outputs that are 0, or the log of 0 (-inf; +inf for a loss), where the exact value is not.
    An infinity is the log of 0 only with that sign and where the verdict is no overflow (a flush
    to 0 before the log, or a 0 that a cancellation made: 1 - p with p rounded to 1); a logsumexp
    whose sum overflowed to +inf, or a loss made +inf by an overflow, is an overflow, not a zero."""
    from .causes import wrong_special
    from .functions import get as get_function

    zero, inf = wrong_special(y, rounded)
    lz = get_function(function).log_of_zero
    if lz is None:
        return zero
    return zero | (inf & (y == lz) & (np.asarray(status) != OVERFLOW))


def wrong_limit(y: np.ndarray, r) -> np.ndarray:
    """Outputs other than the exact value where that is exactly 0, +-inf or NaN (masks.py: a masked
    entry's limit, a fully masked row's policy, a NaN input); an infinite or NaN exact value is
    stored with ulp = +inf."""
    with np.errstate(all="ignore"):
        point = np.isinf(r.ulp) | ((r.rounded == 0) & (r.dlo == 0) & (r.dhi == 0))
        same = (y == r.rounded) | (np.isnan(y) & np.isnan(r.rounded))
    return point & ~same


def _first_failure(job: Job, fail_on, limit, o, x, args, r, row0: int, piece=None):
    """The chunk's worst failing element (highest status, then largest ULP error, then the first)
    as (merge key, the audit record's ``first_failure`` with the whole input vector). ``piece``:
    (c0, n, head): the chunk is the piece c0.. of a long vector of n whose first values are
    ``head``; the element is named by its place in the vector, and the vector, too long to list,
    is shown by its first values and its element's input, as --top entries show it -- as is a
    vector longer than a block evaluated whole (a kernel that is not piecewise, :func:`in_pieces`)."""
    from .causes import cause_name
    from .functions import get as get_function
    from .results import jnum

    codes = [STATUSES.index(s) for s in fail_on if s in STATUSES]
    st, u = o.status, o.ulp
    bad = np.isin(st, codes)
    if "zero" in fail_on:
        bad |= spurious_zero(job.function, o.y, r.rounded, st)
    if "limit" in fail_on:
        bad |= wrong_limit(o.y, r)
    if limit is not None:
        bad |= np.isfinite(u) & (u > limit)
    if not bad.any():
        return None
    with np.errstate(invalid="ignore"):
        score = np.where(np.isnan(u), -1.0, u)
    order = np.lexsort((-score[bad], -st[bad].astype(np.int64)))
    idx = tuple(int(i[order[0]]) for i in np.nonzero(bad))
    rr = idx[0]
    j = idx[1] if len(idx) > 1 else 0
    rec = get_function(job.function)
    tg = args.get("target") if isinstance(args, dict) else args
    if piece is None and x.shape[-1] > block_elements():  # a long vector evaluated whole: shown as in pieces
        piece = (0, int(x.shape[-1]), x[rr:rr + 1])
    if piece is None:
        n, vector = int(x.shape[-1]), [jnum(v) for v in x[rr]]
    else:  # the vector's first values, written as the whole vector's are (NaN as null)
        from .locate import shown_vector

        c0, n, head = piece
        j, vector = c0 + j, shown_vector(head[0], n, jnum)
    first = {
        "row": row0 + rr, "n": n,
        "vector": vector,
        **({"target": int(tg[rr])} if rec.takes == "target" else {}),
        "element": None if rec.per_vector else j,
        "output": jnum(o.y[idx]), "exact_rounded": jnum(r.rounded[idx]),
        "ulp_error": jnum(o.ulp[idx]), "status": STATUSES[int(o.status[idx])],
        "cause": cause_name(int(o.cause[idx])), "cause_inferred": o.inferred,
    }
    if piece is not None and not rec.per_vector:  # (a per-vector output has no element of its own)
        first["input"] = jnum(x[idx])
    return ((-int(st[idx]), -float(score[idx]), row0 + rr, j), first)


def _flag_bits(flags) -> int:
    bits = 0
    for fl in flags:
        for f in fl:
            bits |= 1 << FLAG_NAMES.index(f)
    return bits


# ------------------------------------------------------------- planning, running
def split_rows(function: str, n: int) -> bool:
    """Whether vectors of n are cut in pieces of columns: those of an elementwise function longer
    than a block (a vector with reductions is never cut)."""
    from .functions import get as get_function

    return get_function(function).output == "elementwise" and n > block_elements()


def in_pieces(function: str, impls, n: int, acc: str, compute: str) -> bool:
    """Whether vectors of n of a function with reductions are evaluated in pieces of columns
    (numstab.vector): longer than a block and every built-in's kernel piecewise (black boxes are run
    once on the whole vector: vector.pieceable), whatever the vectors' non-finite entries
    (:func:`_vector_chunks`)."""
    from .vector import is_long, pieceable

    return is_long(function, n, block_elements()) and pieceable(function, impls, acc, compute)


@dataclass(frozen=True)
class ColumnReader:
    """Columns of one row of a file source, as a (1, w) float64 array (picklable: a worker opens
    the file itself)."""

    source: FileSource
    shard: int
    row: int

    def __call__(self, c0: int, c1: int) -> np.ndarray:
        return self.source.array(self.shard).read_cols(self.row, c0, c1)


def _row_facts(read, n: int, block: int):
    """masks.VectorFacts of a long row, its values read a block at a time."""
    from .masks import VectorFacts

    return VectorFacts.of((c0, read(c0, min(n, c0 + block))[0]) for c0 in range(0, n, block))


def _vector_chunks(job: Job, arrays, args: dict) -> list:
    """The chunks of long vectors with reductions (:func:`in_pieces`): each row in the pieces of
    columns vector.LongVector cuts it in, with the context its pieces share (its non-finite
    entries' facts, masks.VectorFacts, read first, a block at a time: the limits of every such
    vector are known in pieces, masks.vector_limits)."""
    import copy

    from .functions import get as get_function
    from .grids import DEFAULT_EXTRAS
    from .limits import box_bytes, require, stream_bytes
    from .vector import Cotangent, LongVector, partition

    n, block, chunks, row0 = arrays[0].n, block_elements(), [], 0
    boxes = sum(r[0] != "builtin" for r in job.impls)
    if boxes:  # each black box is given the whole vector, beside the pieces in flight
        require(f"{boxes} black box(es) on vectors of {n:,} values",
                box_bytes(n, boxes) + stream_bytes(block, 1, 1),
                "a callable or library is given each vector whole: use shorter vectors")
    cot = None
    if get_function(job.function).takes == "cotangent":
        c = (job.extras or DEFAULT_EXTRAS).cotangent
        cot = Cotangent("values", c) if isinstance(c, tuple) else Cotangent(c)
    rng = np.random.default_rng([0, n, 13]) if cot is not None and cot.kind == "normal" else None
    for s, arr in enumerate(arrays):
        path = job.source.paths[s]
        st = os.stat(path)
        for r in range(arr.rows):
            read = ColumnReader(job.source, s, r)
            row_args = slice_args(args, row0, row0 + 1)
            facts = _row_facts(read, n, block)
            row_cot = cot
            if rng is not None:  # each piece's first draw's state
                states = []
                for c0, c1 in partition(n, job.accumulate, block)[0]:
                    states.append(copy.deepcopy(rng.bit_generator.state))
                    _skip_normals(rng, c1 - c0)
                row_cot = Cotangent("normal", states=tuple(states))
            vec = LongVector(read, (str(path), st.st_size, st.st_mtime_ns, s, r), n, job.accumulate,
                             job.compute, block, None if facts.finite == n else facts, job.specials, row_cot)
            chunks += [Chunk(job, row0, s, r, r + 1, args=row_args, n=n, c0=c0, c1=c1, vector=vec,
                             piece=j) for j, (c0, c1) in enumerate(vec.bounds)]
            row0 += 1
    return chunks


def _skip_normals(rng, count: int) -> None:
    """Move the generator on by ``count`` standard normal draws (a block at a time: bounded memory)."""
    for a in range(0, count, 1 << 20):
        rng.standard_normal(min(1 << 20, count - a))


def plan_chunks(job: Job, arrays, args: dict, rows_per_chunk: int) -> list:
    """The chunks of a file source, in row order (never across a shard's end), each with its
    extra arguments and, for normal cotangents, the state of their stream at its first row;
    a long vector of an elementwise function in pieces of a block (:func:`split_rows`), one with
    reductions in the pieces of numstab.vector (:func:`in_pieces`)."""
    from .functions import REGISTRY
    from .functions import get as get_function

    rec = get_function(job.function)
    # (black boxes are not built here to learn whether the vector goes in pieces: none is cut, each is
    # given the whole vector)
    builtins = [REGISTRY[r[1]][r[2]] for r in job.impls if r[0] == "builtin"]
    if job.source is not None and in_pieces(job.function, builtins, arrays[0].n, job.accumulate, job.compute):
        return _vector_chunks(job, arrays, args)
    normal = rec.takes == "cotangent" and (job.extras is None or job.extras.cotangent == "normal")
    n = arrays[0].n
    rng = np.random.default_rng([0, n, 13]) if normal else None
    chunks, row0 = [], 0
    if split_rows(job.function, n):  # no cotangents here: elementwise functions take none
        width = block_elements()
        for s, arr in enumerate(arrays):
            for r in range(arr.rows):
                row_args = slice_args(args, row0, row0 + 1)
                chunks += [Chunk(job, row0, s, r, r + 1, args=slice_columns(row_args, c0, min(n, c0 + width)),
                                 n=n, c0=c0, c1=min(n, c0 + width)) for c0 in range(0, n, width)]
                row0 += 1
        return chunks
    for s, arr in enumerate(arrays):
        for r0 in range(0, arr.rows, rows_per_chunk):
            r1 = min(arr.rows, r0 + rows_per_chunk)
            state = None
            if rng is not None:
                import copy

                state = copy.deepcopy(rng.bit_generator.state)
                rng.standard_normal((r1 - r0, n))  # the stream moves on as one pass over the batch draws it
            chunks.append(Chunk(job, row0, s, r0, r1, args=slice_args(args, row0, row0 + r1 - r0),
                                rng=state, n=n))
            row0 += r1 - r0
    return chunks


def rows_per_chunk(rows: int, n: int, n_impls: int, jobs: int, what: str, function: str | None = None,
                   pieces: bool = False) -> int:
    """Rows per chunk for ``rows`` vectors of n, refusing before any work a run whose chunks in
    flight (one per worker) would not fit in memory (a vector with reductions is split only with
    ``pieces``, :func:`in_pieces`, else one row is the smallest chunk; one of an elementwise
    ``function`` is, in pieces of a block)."""
    from .limits import require, stream_bytes

    per = max(1, block_elements() // max(1, n))
    size = min(rows, per) * n
    count = -(-rows // per)
    if pieces or (function is not None and split_rows(function, n)):
        size, count = block_elements(), rows * -(-n // block_elements())
    workers = max(1, min(jobs, count))
    way = ("a long vector is evaluated in pieces of a block: use fewer --jobs or implementations, or "
           "smaller blocks (NUMSTAB_BLOCK, values)" if pieces else
           "a vector is evaluated whole (its max, its sum and each implementation's reductions need "
           "all of it): use fewer --jobs or implementations, or shorter vectors")
    require(f"{what} ({workers} chunk{'s' if workers > 1 else ''} of {size:,} values at once, "
            f"{n_impls} implementation{'s' if n_impls > 1 else ''})",
            stream_bytes(size, n_impls, workers), way)
    return per


def run(chunks, jobs: int, progress=None, scheduler: str | None = None, top: int = 0) -> Partial:
    """Every chunk through :func:`run_chunk` -- here, in ``jobs`` worker processes or on the Dask
    scheduler at ``scheduler`` -- merged into one Partial (the same whatever the order)."""
    from .vector import forget
    from .workers import run_tasks

    forget()  # what an earlier run learned of its long vectors (the files may have changed since)
    total = sum(c.size for c in chunks)
    if total <= block_elements():
        jobs = 1  # one chunk's worth of work: no worker processes to start
    state = {"acc": None, "done": 0}

    def take(chunk, part):
        if state["acc"] is None:
            state["acc"] = part
        else:
            state["acc"].merge(part, top)
        state["done"] += chunk.size
        if progress:
            progress(state["done"], total)

    fn = run_chunk
    if progress:
        progress(0, total)  # arms the bar
        if scheduler is None and (jobs <= 1 or len(chunks) <= 1):
            # chunks evaluated here (one long vector is one chunk): the bar moves inside each one
            # too, as engine.evaluate passes its stages
            def fn(chunk):
                size = chunk.size
                return run_chunk(chunk, stage=lambda f: progress(state["done"] + int(f * size), total))
    run_tasks(fn, chunks, jobs, take, scheduler=scheduler)
    return state["acc"]
