"""`numstab report`: a directory of report files from one compare run.

Files: report.md, results.json (the compare record, schema numstab.compare/1),
results.csv (one row per grid cell), report.html (self-contained: inline CSS, plots
embedded as data URIs, no scripts, no network) and plots/*.png. Every output path
is created and checked before the computation starts, and every file is written to
a temp file and renamed into place.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import UsageError
from ..outputs import _umask
from ..results import STATUSES, CompareRun

_LIVE_DIRS: set = set()


def parse_formats(spec) -> tuple:
    """The exporters a report writes, from ``md,json,csv,html,png`` (names or aliases), once each."""
    from .. import exporters

    items = [s.strip() for s in str(spec).split(",") if s.strip()]
    if not items:
        raise UsageError(f"--formats is empty (choose from {','.join(exporters.names(report=True))})")
    return tuple(dict.fromkeys(exporters.get(s, report=True, kind="report format").name for s in items))


def default_dir() -> Path:
    return Path("reports") / _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


class ReportWriter:
    """Checks every output before the run; builds the report in a temp sibling directory and
    swaps it in at the end.

    A failed or interrupted run leaves the target as it was (no empty directory that would
    block the rerun); ``force`` replaces the whole previous report, so no stale file of it
    survives; a write error (disk full) leaves the previous report whole.
    """

    def __init__(self, out_dir, formats, force: bool = False):
        raw = os.fspath(out_dir)
        self.dir = Path(raw)
        self.formats = tuple(formats)
        self.force = force
        self.stage = None
        if "png" in self.formats:
            from ..exporters.png import require_matplotlib

            require_matplotlib()
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"--out {raw.encode('utf-8', 'surrogateescape')!r}: the name is not "
                             "valid UTF-8; choose a UTF-8 name") from None
        try:
            exists = self.dir.exists() or self.dir.is_symlink()
            if exists and not self.dir.is_dir():
                raise UsageError(f"{self.dir} exists and is not a directory")
            if exists and any(self.dir.iterdir()) and not force:
                raise UsageError(f"{self.dir} already exists and is not empty; use --force to overwrite "
                                 "or --out to choose another directory")
            parent = self.dir.absolute().parent
            parent.mkdir(parents=True, exist_ok=True)
            self.stage = Path(tempfile.mkdtemp(prefix=f".{self.dir.name}.", suffix=".tmp", dir=parent))
            _LIVE_DIRS.add(self.stage)
            mode = os.stat(self.dir).st_mode & 0o7777 if exists else 0o777 & ~_umask()
            os.chmod(self.stage, mode)
            if "png" in self.formats:
                (self.stage / "plots").mkdir()
        except OSError as exc:
            self.abort()
            raise UsageError(f"cannot create {self.dir}: {exc.strerror or exc}") from None
        from .. import exporters

        self.names = {e.name: n for e in exporters.EXPORTERS.values() for n in e.report_names
                      if "*" not in n}

    def abort(self) -> None:
        if self.stage is not None:
            shutil.rmtree(self.stage, ignore_errors=True)
            _LIVE_DIRS.discard(self.stage)
            self.stage = None

    def render(self, run: CompareRun) -> dict:
        """Every file's content, in memory: {relative path: str or bytes}."""
        from .. import exporters

        chosen = [exporters.get(name, report=True) for name in self.formats]
        plots = {}
        if any(e.name in ("png", "html") for e in chosen):
            try:
                from ..exporters.png import make_plots

                plots = make_plots(run)
            except UsageError:
                if any(e.name == "png" for e in chosen):
                    raise
                plots = {}  # HTML without plots when matplotlib is absent
        linked = plots if any(e.name == "png" for e in chosen) else {}
        from ..cells import CellRows

        files = {}
        for e in chosen:
            files.update(e.report_files(run, linked if e.links_plots else plots))
        if not isinstance(run.results, CellRows):  # records from a file: render now (their errors here)
            files = {k: v if isinstance(v, (str, bytes)) else "".join(v) for k, v in files.items()}
        return files

    def write(self, run: CompareRun, files: dict | None = None) -> list[Path]:
        files = self.render(run) if files is None else files
        written = []
        try:
            for rel, data in files.items():
                with open(self.stage / rel, "wb") as fh:
                    for piece in ([data] if isinstance(data, (str, bytes)) else data):  # text, or its pieces
                        fh.write(piece if isinstance(piece, bytes)
                                 else piece.encode("utf-8", "surrogateescape"))
                    fh.flush()
                    os.fsync(fh.fileno())
                os.chmod(self.stage / rel, 0o666 & ~_umask())
                written.append(self.dir / rel)
            self._swap()
        except OSError as exc:
            self.abort()
            why = "no space left on device" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
            raise UsageError(f"cannot write the report into {self.dir}: {why}; nothing was changed") from None
        except BaseException:
            self.abort()
            raise
        return written

    def _adopt_foreign(self) -> list:
        """Move files in self.dir that are not report files (a user's notes) into the stage, so the
        swap keeps them; returns the moves, to undo on failure."""
        moved = []
        own = set(self.names.values())
        try:
            for entry in sorted(self.dir.iterdir()):
                if entry.name in own:
                    continue
                if entry.name == "plots" and entry.is_dir() and not entry.is_symlink():
                    for sub in sorted(entry.iterdir()):
                        if sub.suffix != ".png":
                            (self.stage / "plots").mkdir(exist_ok=True)
                            moved.append((sub, self.stage / "plots" / sub.name))
                            os.replace(*moved[-1])
                    continue
                moved.append((entry, self.stage / entry.name))
                os.replace(*moved[-1])
        except OSError:
            for src, dst in reversed(moved):
                os.replace(dst, src)
            raise
        return moved

    def _swap(self) -> None:
        """Put the staged report at self.dir; the previous one (if any) goes only after.

        Files of the previous report (report.*, results.*, plots/*.png) are replaced as a whole,
        so none of them survives a --force rerun; any other file in the directory is kept."""
        old = None
        moved = self._adopt_foreign() if self.dir.is_dir() and any(self.dir.iterdir()) else []
        try:
            if self.dir.is_dir() and any(self.dir.iterdir()):
                old = Path(tempfile.mkdtemp(prefix=f".{self.dir.name}.", suffix=".old",
                                            dir=self.stage.parent))
                _LIVE_DIRS.add(old)
                os.replace(self.dir, old / "report")
            try:
                os.replace(self.stage, self.dir)  # also replaces an empty directory
            except OSError:
                if old is not None:  # put the previous report back
                    os.replace(old / "report", self.dir)
                raise
        except OSError:
            for src, dst in reversed(moved):  # the user's files go back where they were
                try:
                    os.replace(dst, src)
                except OSError:
                    pass
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
                _LIVE_DIRS.discard(old)
            raise
        _LIVE_DIRS.discard(self.stage)
        self.stage = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
            _LIVE_DIRS.discard(old)


def cleanup_live() -> None:
    """Remove the staging directories of this process (on a signal)."""
    for d in list(_LIVE_DIRS):
        shutil.rmtree(d, ignore_errors=True)
        _LIVE_DIRS.discard(d)










#: Largest results.json that --from reads (a default float16 run is ~0.1 MB).
MAX_RESULT_BYTES = 256 * 1024 * 1024


def _no_constant(token):
    raise ValueError(f"the non-JSON token {token} (numstab writes non-finite numbers as strings)")


def load_run(path) -> CompareRun:
    """A saved compare run, checked record by record: anything malformed is one UsageError."""
    from ..inputs import read_bounded

    p = Path(path)
    raw = read_bounded(p, MAX_RESULT_BYTES, "result file")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{p}: not a JSON result file ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise UsageError(f"{p}: not a JSON result file (nested too deeply)") from None
    try:
        _check_shape(data)
        run = CompareRun.from_dict(data)
        _check_run(run)
    except UsageError as exc:
        raise UsageError(f"{p}: {exc}") from None
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
        raise UsageError(f"{p}: malformed result file ({type(exc).__name__}: {exc})") from None
    return run


def _check_shape(data) -> None:
    if not isinstance(data, dict):
        raise UsageError("not a numstab result file (not a JSON object)")
    for key, kind in (("meta", dict), ("results", list), ("thresholds", list)):
        if key in data and not isinstance(data[key], kind):
            raise UsageError(f"'{key}' must be a JSON {'object' if kind is dict else 'array'}")
    for i, r in enumerate(data.get("results", [])):
        if not isinstance(r, dict):
            raise UsageError(f"results[{i}] is not an object")
        if not isinstance(r.get("counts"), dict) or not isinstance(r.get("flags"), list):
            raise UsageError(f"results[{i}]: 'counts' must be an object and 'flags' an array")
    for i, t in enumerate(data.get("thresholds", [])):
        if not isinstance(t, dict):
            raise UsageError(f"thresholds[{i}] is not an object")


def _check_run(run: CompareRun) -> None:
    from ..formats import FORMATS
    from ..functions import FUNCTIONS
    from ..results import FLAG_NAMES

    for i, r in enumerate(run.results):
        if r.function not in FUNCTIONS:
            raise UsageError(f"results[{i}]: unknown function {r.function!r}")
        if r.dtype not in FORMATS:
            raise UsageError(f"results[{i}]: unknown dtype {r.dtype!r}")
        if r.status not in STATUSES:
            raise UsageError(f"results[{i}]: unknown status {r.status!r}")
        if any(f not in FLAG_NAMES for f in r.flags):
            raise UsageError(f"results[{i}]: unknown flag in {list(r.flags)!r}")
        if r.n < 1 or r.trials < 1 or any(c < 0 for _, c in r.counts):
            raise UsageError(f"results[{i}]: n, trials and counts must be positive")
    for i, t in enumerate(run.thresholds):
        if t.get("dtype") not in FORMATS:
            raise UsageError(f"thresholds[{i}]: unknown dtype {t.get('dtype')!r}")
