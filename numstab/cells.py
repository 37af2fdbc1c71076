"""Compare cells, columnar: the statistics of every grid cell as numpy arrays (one per field),
never an object per cell, so that a grid of millions of cells runs with bounded memory.

* :func:`summarize_cells` turns one engine outcome over C cells of T rows each (the rows of one
  2-D batch) into the cells' figures at once -- the same figures, statuses and causes as
  :func:`numstab.engine.summarize` of each cell (tests/test_cells.py compares both);
* a :class:`CellStore` holds the blocks of cells a run computes (in memory, or spilled to
  ``.npy`` files in a temp directory once they pass :data:`SPILL_BYTES`, read back
  memory-mapped) and yields them as :class:`CellColumns` chunks in the run's order, which the
  exporters write streaming (numstab.tables);
* :class:`CellRows` is the sequence of :class:`numstab.results.CellResult` a run's ``results``
  still offers (each made when asked for).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .limits import SPILL_BYTES
from .metrics import quantize
from .results import CAUSES, FLAG_NAMES, INACCURATE, STATUSES, CellResult

NS, NC = len(STATUSES), len(CAUSES)
#: Per-row fields of a block (name -> dtype; counts and causes have NS and NC columns).
ROW_FIELDS = {"impl": np.int16, "at": np.int8, "offset": np.float64, "x_min": np.float64,
              "x_max": np.float64, "max_ulp": np.float64, "median_ulp": np.float64,
              "max_rel": np.float64, "status": np.int8, "cause": np.int8, "flags": np.uint8,
              "counts": np.int32, "causes": np.int32}
_FLAG_BIT = {f: 1 << i for i, f in enumerate(FLAG_NAMES)}  # = steps.FLAG_BIT (steps is heavy to import)


def summarize_cells(o, C: int, T: int, row_flags=None) -> dict:
    """The figures of C cells of T consecutive rows each, from one engine outcome (ImplOutcome).

    Returns arrays of length C: max_ulp, median_ulp, max_rel, status, cause (0 = none),
    flags (FLAG bits), counts (C, NS), causes (C, NC), and ``big``: {cell: summarize(...)} for the
    cells holding a figure beyond float64's range (computed the per-cell way, rare).
    """
    from .engine import summarize

    st = o.status.reshape(C, -1)
    u = o.ulp.reshape(C, -1)
    rel = o.rel.reshape(C, -1)
    cs = o.cause.reshape(C, -1).astype(np.int64)
    m = st.shape[1]
    cell = np.arange(C)[:, None]
    counts = np.bincount((cell * NS + st).ravel(), minlength=C * NS).reshape(C, NS)
    failing = st >= INACCURATE
    causes = np.bincount((cell * (NC + 1) + cs)[failing], minlength=C * (NC + 1)).reshape(C, NC + 1)[:, 1:]
    worst = st.max(axis=1) if m else np.zeros(C, dtype=np.int8)
    at_worst = (st == worst[:, None]) & (cs != 0)
    wc = np.bincount((cell * (NC + 1) + cs)[at_worst], minlength=C * (NC + 1)).reshape(C, NC + 1)[:, 1:]
    main = np.where(wc.any(axis=1) & (worst >= INACCURATE), wc.argmax(axis=1) + 1, 0)
    known = ~np.isnan(u)
    anyk = known.any(axis=1)
    with np.errstate(all="ignore"):
        max_ulp = np.where(anyk, np.where(known, u, -np.inf).max(axis=1, initial=-np.inf), np.nan)
        max_rel = np.where(anyk, np.where(known, rel, -np.inf).max(axis=1, initial=-np.inf), np.nan)
        full = known.all(axis=1)
        med = np.full(C, np.nan)
        if full.any():
            med[full] = np.median(u[full], axis=1)
        for i in np.nonzero(anyk & ~full)[0]:  # cells with undetermined elements: the known ones
            med[i] = np.median(u[i][known[i]])
        med = np.where(anyk, quantize(med), np.nan)
    if row_flags is None:
        flags = np.array([sum(_FLAG_BIT[f] for f in fl) for fl in o.flags], dtype=np.uint8)
    else:
        flags = np.bitwise_or.reduce(np.asarray(row_flags).reshape(C, T), axis=1).astype(np.uint8)
    big = {}
    if o.big:
        for i in sorted({k[1][0] // T for k in o.big}):
            big[int(i)] = summarize(o, slice(i * T, (i + 1) * T))
    return {"max_ulp": max_ulp, "median_ulp": med, "max_rel": max_rel, "status": worst.astype(np.int8),
            "cause": main.astype(np.int8), "flags": flags, "counts": counts.astype(np.int32),
            "causes": causes.astype(np.int32), "big": big}


def flag_names(bits: int) -> tuple:
    return tuple(f for f in FLAG_NAMES if bits & _FLAG_BIT[f])


def _figure(big: dict, key: str, v: float):
    return big[key] if key in big else v


@dataclass
class Block:
    """Cells of one piece of work: one dtype, spread, n (and the other per-piece axes in
    ``const``), some offsets, every implementation. Rows are ordered by (function, target
    placement, cell, implementation); ``seg`` marks where each (function, placement) starts."""

    const: dict  # dtype, spread, n, trials, and any other per-piece axis value
    outer: tuple  # the sort key of the piece before the target placement (dtype, spread...)
    inner: tuple  # after the placement, before the offset (n,)
    start: float  # its first offset
    segs: list  # [(function, at index, first row, rows, implementations per cell)]
    cols: dict  # ROW_FIELDS arrays (memory-mapped once spilled)
    big: dict = field(default_factory=dict)  # row -> {"max_ulp": Decimal, ...}

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.cols.values() if isinstance(a, np.ndarray))

    @property
    def rows(self) -> int:
        return sum(s[3] for s in self.segs)


def _read(a, lo: int, hi: int) -> np.ndarray:
    """Rows lo:hi of a column held in memory or spilled to a .npy file (copied out of the mapping)."""
    if isinstance(a, str):
        m = np.load(a, mmap_mode="r")
        out = np.array(m[lo:hi])
        del m
        return out
    return a[lo:hi]


@dataclass
class CellColumns:
    """Rows of cells in the run's order, as arrays: a chunk the exporters write in one go."""

    names: tuple  # (function, impl, inferred) per impl code
    ats: tuple  # target placement per at code (None first)
    const: dict
    cols: dict
    big: dict  # local row -> {field: Decimal}
    vocab: tuple = CAUSES  # cause code - 1 -> name (records of old files may name others)

    def __len__(self) -> int:
        return len(self.cols["impl"])

    def records(self):
        """The rows as CellResult.to_dict() dicts (JSON-ready), in order."""
        from .results import jnum

        c, k = self.cols, self.const
        L = len(self)
        cols = {f: c[f].tolist() for f in ("impl", "at", "offset", "x_min", "x_max", "max_ulp", "median_ulp",
                                           "max_rel", "status", "cause", "flags")}
        counts, causes = c["counts"].tolist(), c["causes"].tolist()
        spread, n, trials, dtype = jnum(k["spread"]), int(k["n"]), int(k["trials"]), k["dtype"]
        tail = {"temperature": jnum(k.get("temperature", 1.0)), "mask": k.get("mask", "none")}
        fnames = {}
        for i in range(L):
            fn, impl, inf = self.names[cols["impl"][i]]
            b = self.big.get(i, {})
            cause = cols["cause"][i]
            fl = cols["flags"][i]
            d = {"function": fn, "impl": impl, "dtype": dtype, "offset": jnum(cols["offset"][i]),
                 "spread": spread, "n": n, "trials": trials, "x_min": jnum(cols["x_min"][i]),
                 "x_max": jnum(cols["x_max"][i]),
                 "max_ulp": jnum(_figure(b, "max_ulp", cols["max_ulp"][i])),
                 "median_ulp": jnum(_figure(b, "median_ulp", cols["median_ulp"][i])),
                 "max_rel": jnum(_figure(b, "max_rel", cols["max_rel"][i])),
                 "status": STATUSES[cols["status"][i]],
                 "flags": list(fnames[fl] if fl in fnames else fnames.setdefault(fl, flag_names(fl))),
                 "counts": dict(zip(STATUSES, counts[i])),
                 "cause": self.vocab[cause - 1] if cause else None,
                 "causes": {self.vocab[j]: v for j, v in enumerate(causes[i]) if v},
                 "cause_inferred": inf, "target_at": self.ats[cols["at"][i]], **tail}
            yield d

    def results(self):
        """The rows as CellResult objects (figures beyond float64's range kept as they are: a
        BigFigure's text is beyond what Decimal parses)."""
        import dataclasses

        for i, d in enumerate(self.records()):
            b = self.big.get(i)
            if not b:
                yield CellResult.from_dict(d)
                continue
            yield dataclasses.replace(CellResult.from_dict({**d, **{k: None for k in b}}), **b)


class CellStore:
    """The cells of a run: blocks added as pieces finish, read back in the run's order."""

    def __init__(self, names=(), ats=(None,)):
        self.names = list(names)  # (function, impl, inferred)
        self.ats = tuple(ats)
        self.blocks: list[Block] = []
        self._mem = 0
        self._dir = None
        self.fn_order: dict = {}
        self.ordered: list | None = None  # rows given in order (from_results): one chunk each
        self.shown = (False, False)  # (temperature, mask): whether the run varies them (tables.shown_axes)

    # ---------------------------------------------------------------- building
    def add(self, block: Block) -> None:
        self.blocks.append(block)
        self._mem += block.nbytes
        if self._mem > SPILL_BYTES:
            self._spill(block)

    def _spill(self, block: Block) -> None:
        from .outputs import track_dir

        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="numstab-cells-")
            track_dir(self._dir)
        base = os.path.join(self._dir, f"b{len(self.blocks)}")
        self._mem -= block.nbytes
        for k, a in list(block.cols.items()):
            path = f"{base}_{k}.npy"
            np.save(path, a)
            block.cols[k] = path  # read back a slice at a time (_read): no mapping stays resident

    def close(self) -> None:
        """Remove the spilled blocks (the run's files are written)."""
        from .outputs import untrack_dir

        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            untrack_dir(self._dir)
            self._dir = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    @classmethod
    def from_results(cls, results) -> CellStore:
        """A store of CellResult records, kept in their given order (report --from)."""
        s = cls()
        s.ordered = list(results)
        return s

    # ---------------------------------------------------------------- reading
    def __len__(self) -> int:
        if self.ordered is not None:
            return len(self.ordered)
        return sum(b.rows for b in self.blocks)

    def chunks(self, max_rows: int = 65536):
        """CellColumns in the run's order: function, the pieces' outer key, target placement,
        inner key (n), offset, implementation."""
        if self.ordered is not None:
            yield from _chunks_of(self.ordered)
            return
        keys = []
        for bi, b in enumerate(self.blocks):
            for si, (fn, at, _lo, _rows, _k) in enumerate(b.segs):
                keys.append(((self.fn_order.get(fn, 0), b.outer, at, b.inner, b.start), bi, si))
        keys.sort(key=lambda t: t[0])
        for _, bi, si in keys:
            b = self.blocks[bi]
            fn, at, lo, rows, k = b.segs[si]
            for a in range(0, rows, max(k, max_rows - max_rows % k)):
                hi = min(rows, a + max(k, max_rows - max_rows % k))
                cols = {f: _read(v, lo + a, lo + hi) for f, v in b.cols.items()}
                big = {r - lo - a: v for r, v in b.big.items() if lo + a <= r < lo + hi}
                yield CellColumns(tuple(self.names), self.ats, b.const, cols, big)


def _chunks_of(results: list):
    """CellColumns of CellResult records, one per run of rows with the same function, target
    placement and per-piece constants."""
    def key(r):
        return (r.function, r.target_at, r.dtype, r.spread, r.n, r.trials, r.temperature, r.mask)

    i = 0
    while i < len(results):
        r0 = results[i]
        const = {"dtype": r0.dtype, "spread": r0.spread, "n": r0.n, "trials": r0.trials,
                 "temperature": r0.temperature, "mask": r0.mask}
        j = i
        while j < len(results) and key(results[j]) == key(r0):
            j += 1
        rs = results[i:j]
        names = list(dict.fromkeys((r.function, r.impl, r.cause_inferred) for r in rs))
        ats = tuple(dict.fromkeys(r.target_at for r in rs))
        ni, ai = {v: k for k, v in enumerate(names)}, {v: k for k, v in enumerate(ats)}
        vocab = tuple(dict.fromkeys([*CAUSES, *(r.cause for r in rs if r.cause),
                                     *(k for r in rs for k, _ in r.causes)]))
        vi = {v: k for k, v in enumerate(vocab)}
        big = {}
        cols = {f: np.zeros(len(rs), dtype=dt) for f, dt in ROW_FIELDS.items()
                if f not in ("counts", "causes")}
        cols["counts"] = np.zeros((len(rs), NS), dtype=np.int64)
        cols["causes"] = np.zeros((len(rs), len(vocab)), dtype=np.int64)
        for k, r in enumerate(rs):
            cols["impl"][k] = ni[(r.function, r.impl, r.cause_inferred)]
            cols["at"][k] = ai[r.target_at]
            for f in ("offset", "x_min", "x_max", "max_ulp", "median_ulp", "max_rel"):
                v = getattr(r, f)
                if not isinstance(v, float):
                    big.setdefault(k, {})[f] = v
                    v = math.inf
                cols[f][k] = v
            cols["status"][k] = STATUSES.index(r.status)
            cols["cause"][k] = vi[r.cause] + 1 if r.cause else 0
            cols["flags"][k] = sum(_FLAG_BIT[f] for f in r.flags if f in _FLAG_BIT)
            cols["counts"][k] = [dict(r.counts).get(s, 0) for s in STATUSES]
            cs = dict(r.causes)
            cols["causes"][k] = [cs.get(c, 0) for c in vocab]
        yield CellColumns(tuple(names), ats, const, cols, big, vocab)
        i = j


class CellRows(Sequence):
    """A run's cells as a sequence of CellResult, each made when read (``run.results``)."""

    def __init__(self, store: CellStore):
        self.store = store
        self._cache: list | None = None

    def _all(self) -> list:
        if self._cache is None:
            if self.store.ordered is not None:
                self._cache = self.store.ordered
            else:
                self._cache = [r for c in self.store.chunks() for r in c.results()]
        return self._cache

    def __len__(self) -> int:
        return len(self.store)

    def close(self) -> None:
        self.store.close()

    def __getitem__(self, i):
        return self._all()[i]

    def __iter__(self):
        if self._cache is not None or self.store.ordered is not None:
            yield from self._all()
            return
        for c in self.store.chunks():
            yield from c.results()

    def __eq__(self, other):
        return list(self) == list(other)

    def __hash__(self):  # pragma: no cover - unhashable like a list
        raise TypeError("unhashable")


# ------------------------------------------------------------------ fast text of a chunk
def _float_col(vals: np.ndarray, big: dict, key: str, nan, inf: tuple) -> list:
    """Values of a float column as Python objects: floats where finite (their repr is the
    shortest round-trip decimal), ``inf`` = (text of +inf, of -inf) and ``nan`` elsewhere, the
    figures beyond float64's range as their 3 digits."""
    out = vals.tolist()
    for i in np.nonzero(~np.isfinite(vals))[0].tolist():
        v = out[i]
        out[i] = nan if v != v else (inf[0] if v > 0 else inf[1])
    for i, b in big.items():
        if key in b:
            out[i] = f"{b[key]:.3g}"
    return out


def _memo(codes: np.ndarray, fn) -> list:
    """fn(code) for every code of an integer column, computed once per distinct code."""
    table = {c: fn(c) for c in np.unique(codes).tolist()}
    return [table[c] for c in codes.tolist()]


def _rows_memo(arr: np.ndarray, fn) -> list:
    """fn(row tuple) for every row of a 2-D integer column, once per distinct row."""
    if not len(arr):
        return []
    u, inv = np.unique(arr, axis=0, return_inverse=True)
    table = [fn(tuple(r)) for r in u.tolist()]
    return [table[i] for i in inv.ravel().tolist()]


def csv_columns(c: CellColumns) -> list:
    """The columns of tables.CSV_FIELDS for a chunk (lists of what csv.writer writes), the same
    as the per-record path (CellResult.to_dict) gives."""
    from .results import jnum

    cols, k, L = c.cols, c.const, len(c)
    big = c.big
    ints = cols["impl"]
    fl = {f: _float_col(cols[f], big, f, "", ("inf", "-inf")) for f in
          ("offset", "x_min", "x_max", "max_ulp", "median_ulp", "max_rel")}
    spread = jnum(k["spread"])
    out = [_memo(ints, lambda i: c.names[i][0]), _memo(ints, lambda i: c.names[i][1]), [k["dtype"]] * L,
           fl["offset"], [spread] * L, [int(k["n"])] * L, [int(k["trials"])] * L, fl["x_min"], fl["x_max"],
           fl["max_ulp"], fl["median_ulp"], fl["max_rel"],
           _memo(cols["status"], lambda s: STATUSES[s]),
           _memo(cols["cause"], lambda z: c.vocab[z - 1] if z else ""),
           _rows_memo(cols["causes"], lambda t: "|".join(f"{c.vocab[j]}:{v}" for j, v in enumerate(t) if v)),
           _memo(ints, lambda i: c.names[i][2]),
           _memo(cols["flags"], lambda b: "|".join(flag_names(b))),
           *np.asarray(cols["counts"]).T.tolist(),
           _memo(cols["at"], lambda a: "" if c.ats[a] is None else c.ats[a]),
           [jnum(k.get("temperature", 1.0))] * L, [k.get("mask", "none")] * L]
    return out


def json_lines(c: CellColumns) -> list:
    """Each row of a chunk as the compact JSON text of CellResult.to_dict() (key order kept)."""
    import json

    cols, k, L = c.cols, c.const, len(c)
    big = c.big
    dump = json.dumps
    fl = {f: _float_col(cols[f], big, f, "null", ('"inf"', '"-inf"')) for f in
          ("offset", "x_min", "x_max", "max_ulp", "median_ulp", "max_rel")}
    for f, vals in fl.items():  # finite floats as their repr, "null" / "inf" as they are, big figures quoted
        fl[f] = [repr(v) if isinstance(v, float) else v if v.startswith(("n", '"')) else dump(v)
                 for v in vals]
    from .results import jnum

    ints = cols["impl"]
    dtype = dump(k["dtype"])
    head = _memo(ints, lambda i: f'{{"function":{dump(c.names[i][0])},"impl":{dump(c.names[i][1])},'
                                 f'"dtype":{dtype},')
    mid = f',"spread":{dump(jnum(k["spread"]))},"n":{int(k["n"])},"trials":{int(k["trials"])},"x_min":'

    status = _memo(cols["status"], lambda s: dump(STATUSES[s]))
    flags = _memo(cols["flags"], lambda b: dump(list(flag_names(b)), separators=(",", ":")))
    counts = _rows_memo(cols["counts"], lambda t: dump(dict(zip(STATUSES, t)), separators=(",", ":")))
    cause = _memo(cols["cause"], lambda z: dump(c.vocab[z - 1]) if z else "null")
    causes = _rows_memo(cols["causes"], lambda t: dump({c.vocab[j]: v for j, v in enumerate(t) if v},
                                                       separators=(",", ":")))
    tail = _memo(ints, lambda i: "true" if c.names[i][2] else "false")
    axes = f',"temperature":{dump(jnum(k.get("temperature", 1.0)))},"mask":{dump(k.get("mask", "none"))}'
    ats = _memo(cols["at"], lambda a: dump(c.ats[a]) + axes)
    return [f'{h}"offset":{o}{mid}{x0},"x_max":{x1},"max_ulp":{mu},"median_ulp":{md},"max_rel":{mr},'
            f'"status":{s},"flags":{fg},"counts":{ct},"cause":{cz},"causes":{cs},"cause_inferred":{t},'
            f'"target_at":{a}}}'
            for h, o, x0, x1, mu, md, mr, s, fg, ct, cz, cs, t, a in zip(
                head, fl["offset"], fl["x_min"], fl["x_max"], fl["max_ulp"], fl["median_ulp"], fl["max_rel"],
                status, flags, counts, cause, causes, tail, ats)] if L else []
