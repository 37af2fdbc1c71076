"""Audit settings: AuditSpec, from the command line or from numstab.toml / pyproject.toml.

Limits: ``fail_on`` (default: nan, overflow, underflow and zero -- every output that is
NaN, infinite, or 0 (or the log of 0) where the exact value is not fails, whatever
produced it; ``inaccurate`` adds the ULP tolerance) and ``max_ulp`` (the largest
finite ULP error allowed, per format or for all). Elements whose ULP error is
infinite (NaN, overflow, the log of 0) are judged by ``fail_on``, not by ``max_ulp``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError, unknown_name
from ..formats import get_format
from ..functions import get as get_function
from ..functions import get_impl
from ..metrics import DEFAULT_TOLERANCE
from ..steps import DEFAULT_COMPUTE
from ..validate import FAIL_ON_CHOICES  # noqa: F401 - re-exported

DEFAULT_FAIL_ON = ("overflow", "underflow", "nan", "zero", "limit")


CONFIG_KEYS = ("function", "impl", "callable", "library", "dtypes", "max_ulp", "fail_on",
               "accumulate", "compute", "tolerance", "input", "targets", "target", "offsets", "spreads",
               "sizes", "trials", "seed", "name", "timeout", "device", "key", "axis", "nonfinite",
               "masked_rows", "top", "temperature", "cotangent", "label_smoothing", "mask")


@dataclass(frozen=True)
class AuditSpec:
    function: str
    impls: tuple = ()
    callables: tuple = ()  # specs "module:function" or "file.py:function", or (name, fn) pairs
    libraries: tuple = ()
    dtypes: tuple = ("float16", "bfloat16", "float32", "float64")
    max_ulp: tuple = ()  # ((dtype or "*", limit), ...)
    fail_on: tuple = DEFAULT_FAIL_ON
    accumulate: str = "sequential"
    tolerance: float = DEFAULT_TOLERANCE
    input: str | None = None
    targets: str | None = None
    target: int | float | None = None  # an index, or binary_cross_entropy's label z in [0, 1]
    grid: tuple = ()  # ((key, value), ...) for make_grid
    name: str = ""
    timeout: float | None = None  # seconds each implementation may take (None: no limit)
    device: str = "cpu"  # where library implementations run (cpu, cuda)
    cotangent: str | tuple = "normal"  # the backward passes' cotangent (grids.Extras)
    label_smoothing: float = 0.1  # smoothed_cross_entropy's epsilon
    key: str | None = None  # the array of a .npz / .safetensors input
    axis: int | None = None  # the axis of the vectors in an N-D input (None: the last)
    nonfinite: str = "ieee"  # masks.Specials: +inf inputs
    masked_rows: str = "nan"  # masks.Specials: fully masked rows
    top: int = 5  # the worst rows of an --input named in the result
    compute: str = DEFAULT_COMPUTE  # the precision model of the built-in kernels
    temperatures: tuple = (1.0,)  # inputs divided by each T in the format first (engine.scaled); 1: not
    masks: tuple = ("none",)  # the grid's additive masks (grids.MASKS), each its own results

    @property
    def extras(self):
        """The second inputs on the grid or a file (grids.Extras)."""
        from ..grids import Extras

        label = self.target if get_function(self.function).takes == "label" else None
        return Extras(label=label, cotangent=self.cotangent, epsilon=self.label_smoothing)

    @property
    def specials(self):
        from ..masks import Specials

        return Specials(self.nonfinite, self.masked_rows)

    def limit_for(self, dtype: str):
        lim = dict(self.max_ulp)
        return lim.get(dtype, lim.get("*"))


# ------------------------------------------------------------- parsing
def parse_fail_on(values, where: str = "--fail-on") -> tuple:
    from .. import validate

    return validate.fail_on(values, where)


def parse_max_ulp(values) -> tuple:
    """'X' (every format) or 'dtype=X', repeatable; a dict from a config file."""
    if isinstance(values, dict):
        values = [f"{k}={v}" for k, v in values.items()]
    elif isinstance(values, (int, float)):
        values = [str(values)]
    out = []
    for v in values or ():
        key, _, num = str(v).rpartition("=")
        key = key or "*"
        if key != "*":
            get_format(key)
        try:
            lim = float(num)
        except ValueError:
            raise UsageError(f"--max-ulp {v!r}: not a number (use X or dtype=X)") from None
        if not lim >= 0:  # NaN too
            raise UsageError(f"--max-ulp {v!r}: must be >= 0")
        out.append((key, lim))
    return tuple(out)


def grid_items(offsets=None, spreads=None, sizes=None, trials=None, seed=None) -> tuple:
    """The grid settings that were given, as ((key, value), ...) for AuditSpec.grid."""
    given = (("offsets", offsets), ("spreads", spreads), ("sizes", sizes), ("trials", trials),
             ("seed", seed))
    return tuple((k, v) for k, v in given if v is not None)


def _as_tuple(v) -> tuple:
    if v is None:
        return ()
    if isinstance(v, (list, tuple)):
        return tuple(str(x) for x in v)
    return (str(v),)


def spec_from_mapping(d: dict, where: str) -> AuditSpec:
    from .. import validate

    if not isinstance(d, dict):
        raise UsageError(f"{where}: must be a table ([[audit]]), not {type(d).__name__}")
    for k in d:
        if k not in CONFIG_KEYS:
            raise unknown_name(f"key in {where}", k, CONFIG_KEYS)
    if "function" not in d:
        raise UsageError(f"{where}: 'function' is required")
    for k in ("function", "accumulate", "compute", "name", "device", "key", "nonfinite", "masked_rows"):
        if k in d and not isinstance(d[k], str):
            raise UsageError(f"{where} {k!r}: must be a string, not {d[k]!r}")
    for k in ("trials", "seed", "axis", "top"):
        if k in d and (isinstance(d[k], bool) or not isinstance(d[k], int)):
            raise UsageError(f"{where} {k!r}: must be an integer, not {d[k]!r}")
    for k in ("impl", "callable", "library", "dtypes", "offsets", "spreads", "sizes"):
        v = d.get(k)
        if v is not None and not isinstance(v, (str, int, float, list)) or isinstance(v, bool) or (
                isinstance(v, list) and not all(isinstance(x, (str, int, float)) for x in v)):
            raise UsageError(f"{where} {k!r}: must be a string or a list, not {v!r}")
    if "max_ulp" in d and (isinstance(d["max_ulp"], bool)
                           or not isinstance(d["max_ulp"], (int, float, str, dict, list))):
        raise UsageError(f"{where} 'max_ulp': must be a number or a table, not {d['max_ulp']!r}")
    grid = grid_items(**{k: d.get(k) for k in ("offsets", "spreads", "sizes", "trials", "seed")})
    dtypes = _as_tuple(d.get("dtypes")) or AuditSpec.dtypes
    fail_on = validate.fail_on(d["fail_on"], f"{where} 'fail_on'") if "fail_on" in d else None
    try:
        return make_spec(
            function=str(d["function"]), impls=_as_tuple(d.get("impl")),
            callables=_as_tuple(d.get("callable")), libraries=_as_tuple(d.get("library")),
            dtypes=dtypes, max_ulp=d.get("max_ulp"), fail_on=fail_on,
            accumulate=str(d.get("accumulate", "sequential")),
            compute=str(d.get("compute", DEFAULT_COMPUTE)),
            tolerance=validate.tolerance(d.get("tolerance", DEFAULT_TOLERANCE), f"{where} 'tolerance'"),
            input=validate.path(d.get("input"), f"{where} 'input'"),
            targets=validate.path(d.get("targets"), f"{where} 'targets'"),
            target=_target_of(d, where),
            cotangent=validate.cotangent(d.get("cotangent"), f"{where} 'cotangent'"),
            label_smoothing=validate.label_smoothing(d.get("label_smoothing", 0.1),
                                                     f"{where} 'label_smoothing'"),
            grid=tuple((k, str(v) if k in ("offsets", "spreads", "sizes") else v) for k, v in grid),
            name=str(d.get("name", "")),
            timeout=validate.timeout(d.get("timeout"), f"{where} 'timeout'"),
            device=str(d.get("device", "cpu")),
            key=d.get("key"), axis=d.get("axis"), nonfinite=d.get("nonfinite", "ieee"),
            masked_rows=d.get("masked_rows", "nan"), top=d.get("top", 5),
            temperature=validate.temperatures(d.get("temperature"), f"{where} 'temperature'"),
            mask=validate.masks(d.get("mask"), f"{where} 'mask'"),
        )
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{where}: {exc}") from None


def _target_of(d: dict, where: str):
    """A config's ``target``: an index, or a label in [0, 1] for binary_cross_entropy."""
    from .. import validate
    from ..functions import FUNCTIONS

    label = d.get("function") in FUNCTIONS and get_function(d["function"]).takes == "label"
    return (validate.label if label else validate.target)(d.get("target"), f"{where} 'target'")


def make_spec(function, impls=(), callables=(), libraries=(), dtypes=None, max_ulp=None,
              fail_on=None, accumulate="sequential", tolerance=DEFAULT_TOLERANCE, input=None,
              targets=None, target=None, grid=(), name="", timeout=None, device="cpu", key=None,
              axis=None, nonfinite="ieee", masked_rows="nan", top=5, temperature=None, cotangent=None,
              label_smoothing=0.1, mask=None, compute=DEFAULT_COMPUTE) -> AuditSpec:
    """An audit from its settings; ``temperature`` and ``mask``: a value, a comma list or a list
    (validate.temperatures, validate.masks)."""
    from .. import libraries as libraries_mod
    from .. import validate

    function = get_function(function).name
    tolerance = validate.tolerance(tolerance)
    target = (validate.label if get_function(function).takes == "label" else validate.target)(target)
    cotangent = validate.cotangent(cotangent)
    label_smoothing = validate.label_smoothing(label_smoothing)
    timeout = validate.timeout(timeout)
    impls, callables, libraries = (validate.dedupe(v) for v in (impls, callables, libraries))
    dtypes = tuple({get_format(d).name: None for d in dtypes}) if dtypes else None
    validate.accumulate(accumulate)
    validate.compute(compute)
    for i in impls:
        get_impl(function, i)
    for lib in libraries:
        libraries_mod.get(lib)
    libraries_mod.check_device(device or "cpu")
    for d in dtypes or ():
        get_format(d)
    if not (impls or callables or libraries):
        raise UsageError("nothing to audit: give --impl, --callable or --library")
    from ..masks import Specials

    Specials(nonfinite, masked_rows)  # unknown names refused here
    if top < 0:
        raise UsageError("--top must be >= 0")
    if input is None and (key is not None or axis is not None):
        raise UsageError("--key and --axis apply to --input FILE")
    temperatures, masks = validate.temperatures(temperature), validate.masks(mask)
    if input is not None and masks != ("none",):
        raise UsageError("--mask applies to the grid; an --input file carries its own -inf entries")
    return AuditSpec(
        function=function, impls=tuple(impls), callables=tuple(callables),
        libraries=tuple(libraries), dtypes=tuple(dtypes or AuditSpec.dtypes),
        max_ulp=parse_max_ulp(max_ulp),
        fail_on=parse_fail_on(fail_on) if fail_on is not None else DEFAULT_FAIL_ON,
        accumulate=accumulate, compute=compute, tolerance=float(tolerance), input=input, targets=targets,
        target=target, grid=tuple(grid), name=name, timeout=timeout, device=device or "cpu",
        key=key, axis=axis, nonfinite=nonfinite, masked_rows=masked_rows, top=int(top),
        temperatures=temperatures, masks=masks,
        cotangent=cotangent, label_smoothing=label_smoothing,
    )


def load_config(path=None) -> list[AuditSpec]:
    """Audits from numstab.toml ([[audit]] tables) or pyproject.toml ([[tool.numstab.audit]])."""
    if path is None:
        for cand in ("numstab.toml", "pyproject.toml"):
            if Path(cand).is_file():
                specs = _load(Path(cand), quiet=cand == "pyproject.toml")
                if specs:
                    return specs
        raise UsageError("no audit given: pass --function with --impl/--callable/--library, or write "
                         "[[audit]] tables in numstab.toml (or [[tool.numstab.audit]] in pyproject.toml)")
    p = Path(path)
    specs = _load(p, quiet=False)
    if not specs:
        raise UsageError(f"config {p}: no [[audit]] tables")
    return specs


def _load(p: Path, quiet: bool) -> list[AuditSpec]:
    from ..inputs import read_bounded

    try:
        raw = read_bounded(p, 16 * 2**20, "config file")
    except UsageError as exc:
        raise UsageError(f"config {exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise UsageError(f"config {p}: {str(exc).splitlines()[0] if str(exc) else 'malformed'}") from None
    if p.name == "pyproject.toml":
        tool = data.get("tool", {})
        data = tool.get("numstab", {}) if isinstance(tool, dict) else {}
        if not isinstance(data, dict):
            raise UsageError(f"config {p}: [tool.numstab] must be a table")
        if not data and quiet:
            return []
    for k in data:
        if k != "audit":
            raise unknown_name(f"key in {p}", k, ["audit"])
    audits = data.get("audit", [])
    if isinstance(audits, dict):
        audits = [audits]
    if not isinstance(audits, list) or not all(isinstance(a, dict) for a in audits):
        raise UsageError(f"config {p}: 'audit' must be [[audit]] tables, not {audits!r}"[:300])
    return [spec_from_mapping(a, f"{p} audit #{i + 1}") for i, a in enumerate(audits)]
