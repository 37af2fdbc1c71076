"""Memory guarantee: estimate a run's peak memory before starting it and refuse what cannot fit.

The figures are measured peak resident sizes (``benchmarks``-style runs under
``getrusage``, 2-core x86_64, numpy 2.4): a compare piece of E input elements with
k implementations peaks at about E * (300 + 30 k) bytes (the reference and every
implementation's outputs, ULP errors and statuses), every result cell (one per
implementation and grid cell) holds about 3 KB as a CellResult (the HTML and PNG exporters and the
terminal's --details table hold every one), else about 100 bytes in numstab.cells' columns
(written to a temp file past 256 MB, and read back a chunk at a time), and an audit keeps
every implementation's figures of a format: E * (400 + 40 k). ``inspect`` of one
vector keeps decimal reference strings per element: about n * (1000 + 500 k) per format.
The estimates are rounded up; the budget is 80% of the memory available now
(MemAvailable, the cgroup's memory.max and RLIMIT_AS, whichever is least), or
``NUMSTAB_MEMORY_LIMIT`` (bytes, with an optional K/M/G suffix) when set.
"""

from __future__ import annotations

import os

from .errors import UsageError

#: Most input elements one run holds per format (a grid per format, an input file): the one
#: count limit of numstab; beyond it a run is refused before it starts.
MAX_ELEMENTS = 20_000_000
BASE_BYTES = 200 * 2**20
COMPARE_EL_BYTES, COMPARE_EL_PER_IMPL = 300, 30
CELL_BYTES = 4096
ROW_BYTES = 160  # a cell of one implementation, columnar (numstab.cells), with its share of overhead
AUDIT_EL_BYTES, AUDIT_EL_PER_IMPL = 400, 40
INSPECT_EL_BYTES, INSPECT_EL_PER_IMPL = 1000, 500
BUDGET_FRACTION = 0.8
#: Compare cells (numstab.cells) are kept in memory up to this many bytes in all, then written to a
#: temp directory and read back a chunk at a time.
SPILL_BYTES = int(os.environ.get("NUMSTAB_SPILL_BYTES", 256 * 2**20))


def _parse_size(text: str) -> int:
    t = text.strip().upper().rstrip("B")
    mult = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(t[-1:], 1)
    if t[-1:] in "KMGT":
        t = t[:-1]
    return int(float(t) * mult)


def available_bytes() -> tuple[int, str]:
    """(bytes this process may still use, where that figure comes from)."""
    env = os.environ.get("NUMSTAB_MEMORY_LIMIT")
    if env:
        try:
            return _parse_size(env), "NUMSTAB_MEMORY_LIMIT"
        except ValueError:
            raise UsageError(f"NUMSTAB_MEMORY_LIMIT={env!r}: not a size (e.g. 4G)") from None
    best, where = None, "unknown"
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    best, where = int(line.split()[1]) * 1024, "MemAvailable"
                    break
    except OSError:
        pass
    if best is None:
        try:
            best = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            where = "free physical memory"
        except (ValueError, OSError, AttributeError):
            best = None
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            mx = fh.read().strip()
        if mx != "max":
            with open("/sys/fs/cgroup/memory.current") as fh:
                cur = int(fh.read().strip())
            room = int(mx) - cur
            if best is None or room < best:
                best, where = room, "the cgroup's memory.max"
    except (OSError, ValueError):
        pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY and (best is None or soft < best):
            best, where = soft, "RLIMIT_AS"
    except (ImportError, OSError, ValueError):
        pass
    return (best if best is not None else 2**62), where


def human(b: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if b < 1024 or unit == "TB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024
    return f"{b:.1f} TB"  # pragma: no cover


def require(what: str, need: float, hint: str) -> None:
    """Refuse, in one line, a run estimated to need more memory than is available."""
    avail, where = available_bytes()
    budget = avail * BUDGET_FRACTION
    if need > budget:
        raise UsageError(f"{what} needs about {human(need)} of memory, above the limit of {human(budget)} "
                         f"(80% of the {human(avail)} available, from {where}); {hint}")


def compare_bytes(task_elements, cells: int, n_impls: int, workers: int, call_elements: int | None = None,
                  task_cells: int | None = None, materialized: bool = False) -> float:
    """Peak of a compare run: per worker, one engine call (``call_elements``, default the whole
    piece) and the columnar cells of one piece (``task_cells`` grid cells); the cells kept in
    memory (numstab.cells: ROW_BYTES each, at most SPILL_BYTES before they go to a temp file);
    with ``materialized`` (HTML, PNG, the --details terminal table: every cell as a CellResult)
    CELL_BYTES per cell."""
    biggest = sorted(task_elements, reverse=True)[:max(1, workers)]
    per_el = COMPARE_EL_BYTES + COMPARE_EL_PER_IMPL * n_impls
    call = [min(e, call_elements) if call_elements else e for e in biggest]
    rows = cells * n_impls
    piece_rows = min(cells, task_cells or cells) * n_impls * len(biggest)
    held = rows * CELL_BYTES if materialized else min(rows * ROW_BYTES, SPILL_BYTES) + piece_rows * ROW_BYTES
    return BASE_BYTES * (1 + len(biggest)) + sum(call) * per_el + held


def audit_bytes(elements: int, n_impls: int) -> float:
    return BASE_BYTES + elements * (AUDIT_EL_BYTES + AUDIT_EL_PER_IMPL * n_impls)


def inspect_bytes(batch: int, n: int, n_impls: int, n_dtypes: int) -> float:
    if batch == 1:  # per-element tables and decimal reference strings
        return BASE_BYTES + n * (INSPECT_EL_BYTES + INSPECT_EL_PER_IMPL * n_impls) * n_dtypes
    return BASE_BYTES + batch * n * (AUDIT_EL_BYTES + AUDIT_EL_PER_IMPL * n_impls)


#: a black box's run on a whole long vector (vector.Piece.black_box): the vector in float64, its
#: quotients x / T and its cast to the format, the box's own temporaries; and its outputs, kept
BOX_EL_BYTES, BOX_EL_PER_BOX = 48, 8


def box_bytes(n: int, boxes: int) -> float:
    """Peak of the black boxes' runs on one long vector of n values (each kept while its pieces run)."""
    return BASE_BYTES + n * (BOX_EL_BYTES + BOX_EL_PER_BOX * boxes)


def stream_bytes(chunk_elements: int, n_impls: int, workers: int) -> float:
    """Peak of a streamed run (inspect and audit of input files): ``workers`` chunks in flight, each
    held as an audit holds its inputs, and the merged figures (a few MB)."""
    per = BASE_BYTES + chunk_elements * (AUDIT_EL_BYTES + AUDIT_EL_PER_IMPL * n_impls)
    return BASE_BYTES + max(1, workers) * per


_HEAP_KEPT: list = []


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed blocks of up to 32 MB for reuse (once per process).

    The engine works on whole batches: every numpy temporary of a 2^19-element batch is a 4 MB
    block, which glibc by default takes from the kernel with mmap and returns on free, so each
    one is faulted in page by page again (measured: about 3.5 ms per 4 MB here, a third of the
    engine's time on real logits). With the mmap threshold at 32 MB, a trim threshold of 256 MB
    and the heap grown 64 MB at a time, freed temporaries are reused from the heap; the peak
    resident size stays about that of the live arrays (up to 256 MB of freed heap may stay
    resident after a run).
    No effect where the C library has no ``mallopt`` (not glibc) or with ``NUMSTAB_MALLOPT=0``.
    Returns whether the setting was applied.
    """
    if not _HEAP_KEPT:
        ok = False
        if os.environ.get("NUMSTAB_MALLOPT", "1") != "0":
            try:
                import ctypes

                libc = ctypes.CDLL(None)
                m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
                ok = all(libc.mallopt(k, v) for k, v in ((m_mmap_threshold, 32 * 2**20),
                                                         (m_trim_threshold, 256 * 2**20),
                                                         (m_top_pad, 64 * 2**20)))
            except (OSError, AttributeError):
                ok = False
        _HEAP_KEPT.append(ok)
    return _HEAP_KEPT[0]
