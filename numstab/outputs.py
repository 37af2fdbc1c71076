"""Writing files safely: created before the run (bad paths fail fast), replaced atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import UsageError


class AtomicFile:
    """A temp file beside ``path``, opened now and renamed over ``path`` on commit.

    Opening early proves the directory is writable before any computation; a run
    that fails leaves whatever was at ``path`` untouched.
    """

    def __init__(self, path, binary: bool = False):
        self.path = Path(path)
        parent = self.path.parent if str(self.path.parent) else Path(".")
        if self.path.is_dir():
            raise UsageError(f"cannot write {self.path}: it is a directory")
        if not parent.is_dir():
            raise UsageError(f"cannot write {self.path}: directory {parent} does not exist")
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=parent)
        except OSError as exc:
            raise UsageError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        os.close(fd)
        self.tmp = Path(tmp)
        self.binary = binary

    def commit(self, data) -> Path:
        mode = "wb" if self.binary or isinstance(data, bytes) else "w"
        try:
            with open(self.tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(self.tmp, 0o644)
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.abort()
            raise UsageError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        return self.path

    def abort(self) -> None:
        try:
            self.tmp.unlink()
        except FileNotFoundError:
            pass
