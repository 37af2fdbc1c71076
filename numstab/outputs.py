"""Writing files safely: created before the run (bad paths fail fast), replaced atomically.

Regular files (new or existing) are written to a temp file beside them and renamed
into place, keeping an existing file's permission bits. Anything else -- a
character device such as /dev/null or /dev/full, a FIFO, /dev/stdout -- is opened
and written directly: renaming over it would replace the device node (or the
/dev/stdout link) with a regular file.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from .errors import UsageError

#: Temp files of this process that a signal must not leave behind (see cli._on_signal).
_LIVE: set = set()


def _why(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on device"
    return (exc.strerror or str(exc)).lower() if exc.strerror else str(exc)


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


def _is_fd_alias(path: Path) -> bool:
    s = str(path)
    return s in ("/dev/stdout", "/dev/stderr") or s.startswith(("/dev/fd/", "/proc/self/fd/"))


class AtomicFile:
    """A temp file beside ``path``, opened now and renamed over ``path`` on commit.

    Opening early proves the directory is writable before any computation; a run
    that fails leaves whatever was at ``path`` untouched. A path that exists and is
    not a regular file (device, FIFO, /dev/stdout) is opened now and written in place.
    """

    def __init__(self, path, binary: bool = False):
        raw = os.fspath(path)
        self.path = Path(raw)
        self.binary = binary
        self.tmp = None
        self.fd = None
        if raw.endswith(os.sep) and not self.path.is_dir():
            raise UsageError(f"cannot write {raw}: a file name cannot end with '/'")
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise UsageError(f"cannot write {self.path}: {_why(exc)}") from None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise UsageError(f"cannot write {self.path}: it is a directory")
        if st is not None and (not stat.S_ISREG(st.st_mode) or _is_fd_alias(self.path)):
            self._open_direct(st)
            return
        target = Path(os.path.realpath(self.path)) if self.path.is_symlink() else self.path
        self.target = target
        parent = target.parent if str(target.parent) else Path(".")
        if not parent.is_dir():
            raise UsageError(f"cannot write {self.path}: directory {parent} does not exist")
        self.mode = stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask()
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
        except OSError as exc:
            raise UsageError(f"cannot write {self.path}: {_why(exc)}") from None
        os.close(fd)
        self.tmp = Path(tmp)
        _LIVE.add(self.tmp)

    def _open_direct(self, st) -> None:
        flags = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
        if stat.S_ISFIFO(st.st_mode):
            flags |= os.O_NONBLOCK  # no reader: fail now instead of hanging
        try:
            self.fd = os.open(self.path, flags)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                raise UsageError(f"cannot write {self.path}: a FIFO with no reader") from None
            raise UsageError(f"cannot write {self.path}: {_why(exc)}") from None
        if flags & os.O_NONBLOCK:
            os.set_blocking(self.fd, True)
        if stat.S_ISREG(os.fstat(self.fd).st_mode):  # /dev/stdout redirected to a file: like `>`
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass

    def commit(self, data) -> Path:
        """Write ``data`` (str or bytes, or an iterable of pieces of them) and rename it into place."""
        pieces = [data] if isinstance(data, (str, bytes)) else data
        errors = "surrogateescape" if not self.binary else "strict"
        pieces = (p.encode("utf-8", errors) if isinstance(p, str) else p for p in pieces)
        if self.fd is not None:
            return self._commit_direct(pieces)
        try:
            with open(self.tmp, "wb") as fh:
                for p in pieces:
                    fh.write(p)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(self.tmp, self.mode)
            os.replace(self.tmp, self.target)
            _LIVE.discard(self.tmp)
        except OSError as exc:
            self.abort()
            raise UsageError(f"cannot write {self.path}: {_why(exc)}") from None
        return self.path

    def _commit_direct(self, pieces) -> Path:
        try:
            for data in pieces:
                view = memoryview(data)
                while view:
                    k = os.write(self.fd, view)
                    view = view[k:]
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise UsageError(f"cannot write {self.path}: {_why(exc)}") from None
        finally:
            self.abort()
        return self.path

    def abort(self) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None
        if self.tmp is not None:
            _LIVE.discard(self.tmp)
            try:
                self.tmp.unlink()
            except FileNotFoundError:
                pass


_LIVE_DIRS: set = set()


def track_dir(path) -> None:
    """A temp directory of this process (spilled compare cells), removed on a signal."""
    _LIVE_DIRS.add(str(path))


def untrack_dir(path) -> None:
    _LIVE_DIRS.discard(str(path))


def cleanup_live() -> None:
    """Remove every temp file and directory this process still holds (on a signal)."""
    import shutil

    for d in list(_LIVE_DIRS):
        shutil.rmtree(d, ignore_errors=True)
        _LIVE_DIRS.discard(d)
    for p in list(_LIVE):
        try:
            Path(p).unlink()
        except OSError:
            pass
        _LIVE.discard(p)
