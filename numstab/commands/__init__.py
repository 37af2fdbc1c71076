"""One module per command: compare, inspect, thresholds, report, audit (+ audit_config).

Each builds result records (numstab.results) from plain arguments; the CLI only parses
options and hands the records to an exporter.
"""

from __future__ import annotations

import sys


def library_versions() -> dict:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for name in ("numpy", "mpmath", "gmpy2", "ml_dtypes"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def run_meta(argv, **fields) -> dict:
    """The ``meta`` of a run's record: numstab's version, the command line, the run's settings
    and the versions of the libraries the figures depend on. Built here only."""
    from .. import __version__

    return {"version": __version__, "argv": list(argv) if argv is not None else None, **fields,
            **library_versions()}
