"""Result records: frozen dataclasses with a versioned JSON schema.

``numstab.compare/1`` is the record of a compare (and report) run; the other
commands' schemas live beside their builders. Non-finite numbers are written
as the strings "inf", "-inf" and "nan" (never bare NaN tokens); a figure that
could not be determined is null.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from decimal import Decimal

import numpy as np

from .errors import UsageError

COMPARE_SCHEMA = "numstab.compare/5"  # /3: target_at per result; /4: temperature and mask per result;
#: /5: meta.compute (the precision model)
#: what a record older than /5 was computed with: every operation in the format
OLD_COMPUTE = "format"
#: THE status vocabulary, from best to worst: an element's status code is its index here, a
#: cell's status is the worst of its elements', counts are listed in this order everywhere
#: (JSON, CSV, tables, plots, legends). README "What the numbers mean" defines each.
STATUSES = ("ok", "undetermined", "inaccurate", "underflow", "overflow", "nan")
OK, UNDETERMINED, INACCURATE, UNDERFLOW, OVERFLOW, NAN = range(len(STATUSES))
#: What each status means, in a few words (legends of tables, plots and the HTML report).
STATUS_MEANING = {
    "ok": "every output within the tolerance",
    "undetermined": "the exact value could not be settled at the precision limit (no figure)",
    "inaccurate": "ULP error above the tolerance",
    "underflow": "0 (or the log of 0) where the exact value is not, from a flush to zero",
    "overflow": "inf where the exact value is finite, or 0 from x/inf after an overflow",
    "nan": "NaN output",
}
#: Why an element failed, one word each, in this order (cause code = index + 1; 0 = none):
CAUSES = ("exp_overflow", "sum_overflow", "invalid", "underflow", "cancellation", "absorption",
          "clipping", "rounding", "nan_hidden", "output_rounding")
#: What each cause means, in a few words (legends).
CAUSE_MEANING = {
    "exp_overflow": "exp(x) overflows the format",
    "sum_overflow": "every exp(x) is finite but their sum overflows",
    "invalid": "an invalid operation (inf - inf, 0 * inf, 0/0, inf/inf) gives NaN",
    "underflow": "exp flushes to 0, or a result is subnormal and loses digits",
    "cancellation": "a subtraction of nearly equal rounded values leaves only their errors",
    "absorption": "small terms are absorbed into a larger one",
    "clipping": "a probability is clipped (e.g. to [1e-7, 1 - 1e-7])",
    "rounding": "accumulated rounding",
    "nan_hidden": "a number where the exact value is NaN (a NaN input, or no value under the policy)",
    "output_rounding": "finite and nonzero in the compute type (--compute float32), inf or 0 once rounded "
                       "to the format",
}
FLAG_NAMES = ("overflow", "underflow", "invalid", "divide")


@dataclass
class RefData:
    """Reference for one function over a batch: arrays of shape (B, n) or (B,)."""

    rounded: np.ndarray
    ulp: np.ndarray
    dlo: np.ndarray
    dhi: np.ndarray
    qlo: np.ndarray  # bounds of ulp / |r| (inf for r = 0): relative error = ULP error * q
    qhi: np.ndarray
    decided: np.ndarray  # bool: the interval fixes the rounded value and the ulp
    determined: np.ndarray  # bool: False where mpmath could not settle the value

    def put(self, rows, other: RefData) -> None:
        """``other``'s values written at ``rows`` (any numpy index), field by field."""
        for f in self.__dataclass_fields__:
            getattr(self, f)[rows] = getattr(other, f)

    def at(self, index) -> RefData:
        """The values at ``index`` (any numpy index), field by field: a new RefData."""
        return RefData(*(getattr(self, f)[index] for f in self.__dataclass_fields__))


def jvalue(v):
    """An output value as JSON: finite floats as numbers (shortest round-trip repr: every digit
    of a float64 kept), "inf", "-inf" and "nan" as strings -- a value, never null."""
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


class BigFigure:
    """A figure whose decimal exponent is beyond even Decimal's (about 10^18): k * 10^(e - 2), k of
    3 digits. Finite (e.g. the relative error of a finite output against an exact value near
    exp(-2e308)); it orders above every float and Decimal and prints its digits."""

    __slots__ = ("k", "e")

    def __init__(self, k: int, e: int):
        self.k, self.e = int(k), int(e)

    def _key(self):
        return (self.e, self.k)

    def __eq__(self, other):
        return isinstance(other, BigFigure) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __lt__(self, other):
        return isinstance(other, BigFigure) and self._key() < other._key()

    def __gt__(self, other):
        return not isinstance(other, BigFigure) or self._key() > other._key()

    def __le__(self, other):
        return self == other or self < other

    def __ge__(self, other):
        return self == other or self > other

    def __format__(self, spec: str) -> str:
        d = str(self.k).rstrip("0")
        return f"{d[0]}{'.' + d[1:] if len(d) > 1 else ''}e+{self.e}"

    def __str__(self) -> str:
        return format(self, "")

    __repr__ = __str__


def big_figure(k: int, e: int):
    """The figure k * 10^(e - 2) beyond float64's range: a Decimal (exponents within Decimal's
    range, computed in a context that allows them), else a :class:`BigFigure`."""
    from decimal import MAX_EMAX, MIN_EMIN, Context

    k, e = int(k), int(e)
    if e + 3 < MAX_EMAX:
        return Decimal(k).scaleb(e - 2, context=Context(Emax=MAX_EMAX, Emin=MIN_EMIN))
    return BigFigure(k, e)


def _figure_text(v: str):
    """A figure written as its digits (jnum): a Decimal, or a :class:`BigFigure` where the
    exponent is beyond even Decimal's; a malformed one is a UsageError (a hostile file)."""
    from decimal import InvalidOperation

    try:
        return Decimal(v)
    except InvalidOperation:
        pass
    try:
        mant, ex = v.lower().split("e")
        neg = mant.startswith("-")
        digits = mant.lstrip("+-").replace(".", "")
        lead = len(mant.lstrip("+-").split(".")[0])  # digits before the point
        if neg or not digits.isdigit() or not digits.strip("0") or lead != 1:
            raise ValueError
        return BigFigure(int(digits[:3].ljust(3, "0")), int(ex))
    except ValueError:
        raise UsageError(f"a figure {v[:40]!r} is neither a number nor a figure's digits") from None


def jnum(v):
    """A float as JSON allows it: finite floats as numbers, infinities as strings, NaN as null.

    A figure beyond float64's range (a ``Decimal``, 3 significant digits) is the string of its
    digits, e.g. "1.13e+316": finite, never "inf".
    """
    if v is None:
        return None
    if isinstance(v, (Decimal, BigFigure)):
        return f"{v:.3g}"
    v = float(v)
    if math.isnan(v):
        return None
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def unjnum(v) -> float:
    if isinstance(v, str) and v not in ("inf", "-inf"):
        return _figure_text(v)  # a figure beyond float64's range
    return math.nan if v is None else float(v)  # float("inf") / float("-inf") for the strings


@dataclass(frozen=True)
class CellResult:
    function: str
    impl: str
    dtype: str
    offset: float
    spread: float
    n: int
    trials: int
    x_min: float
    x_max: float
    max_ulp: float
    median_ulp: float
    max_rel: float
    status: str
    flags: tuple
    counts: tuple  # ((status, count), ...) in STATUSES order
    cause: str | None = None  # the main cause of the worst status (CAUSES), None when all is ok
    causes: tuple = ()  # ((cause, failing elements), ...)
    cause_inferred: bool = False  # a black box: causes inferred, not established from its steps
    target_at: str | None = None  # where the target sat (grids.TARGET_AT), for functions taking one
    temperature: float = 1.0  # T: the inputs divided by T (held in the format) first; 1: not divided
    mask: str = "none"  # the additive mask on the second half of every vector (grids.MASKS)

    @property
    def count(self) -> dict:
        return dict(self.counts)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("offset", "spread", "x_min", "x_max", "max_ulp", "median_ulp", "max_rel", "temperature"):
            d[k] = jnum(d[k])
        d["flags"] = list(self.flags)
        d["counts"] = dict(self.counts)
        d["causes"] = dict(self.causes)
        return d

    @classmethod
    def from_dict(cls, d: dict, mask: str = "none") -> CellResult:
        """A result record; ``mask``: the grid's mask where the record has none (/3 kept it in
        meta.grids.<dtype>.mask); /3 and older records have T = 1."""
        try:
            return cls(
                function=str(d["function"]), impl=str(d["impl"]), dtype=str(d["dtype"]),
                offset=unjnum(d["offset"]), spread=unjnum(d["spread"]), n=int(d["n"]),
                trials=int(d.get("trials", 1)),
                x_min=unjnum(d["x_min"]), x_max=unjnum(d["x_max"]),
                max_ulp=unjnum(d["max_ulp"]), median_ulp=unjnum(d["median_ulp"]),
                max_rel=unjnum(d["max_rel"]), status=str(d["status"]),
                flags=tuple(d["flags"]),
                counts=tuple((k, int(d["counts"].get(k, 0))) for k in STATUSES),
                cause=_cause_of(d),
                causes=tuple((str(k), int(v)) for k, v in dict(d.get("causes") or {}).items()),
                cause_inferred=bool(d.get("cause_inferred", False)),
                target_at=None if d.get("target_at") is None else str(d["target_at"]),
                temperature=unjnum(d.get("temperature", 1.0)), mask=str(d.get("mask", mask)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"malformed result record: {exc}") from None


def _cause_of(d: dict) -> str | None:
    """The cause of a record; a numstab.compare/1 record only had ``underflow_cause``."""
    if "cause" in d:
        return None if d["cause"] is None else str(d["cause"])
    # /1: "overflow" (an overflow was raised: exp or sum, it did not say) or "underflow" (exp flushed)
    old = d.get("underflow_cause")
    return str(old) if old else None


@dataclass(frozen=True)
class CompareRun:
    meta: dict
    results: tuple
    thresholds: tuple = field(default=())  # one dict per dtype (strings for exact values)

    def to_dict(self) -> dict:
        return {
            "schema": COMPARE_SCHEMA,
            "meta": self.meta,
            "thresholds": list(self.thresholds),
            "results": [r.to_dict() for r in self.results],
        }

    def close(self) -> None:
        """Remove the temp files of a large run's cells (numstab.cells), once its output is written."""
        close = getattr(self.results, "close", None)
        if close is not None:
            close()

    def to_json(self) -> str:
        """Header keys indented, then one compact line per result record."""
        d = self.to_dict()
        results = d.pop("results")
        head = json.dumps(d, indent=1, allow_nan=False)
        body = ",\n".join(json.dumps(r, allow_nan=False, separators=(",", ":")) for r in results)
        return head[:-2] + ',\n "results": [\n' + body + "\n ]\n}"

    @classmethod
    def from_dict(cls, d: dict) -> CompareRun:
        if not isinstance(d, dict) or "schema" not in d:
            raise UsageError("not a numstab result file (no 'schema' key)")
        check_schema(d["schema"], COMPARE_SCHEMA)
        grids = dict(d.get("meta", {})).get("grids") or {}
        old_mask = {k: str(g.get("mask", "none")) for k, g in grids.items() if isinstance(g, dict)}
        meta = dict(d.get("meta", {}))
        if _version(d["schema"]) < 5:  # before --compute every kernel computed in the format
            meta.setdefault("compute", OLD_COMPUTE)
        return cls(
            meta=meta,
            results=tuple(CellResult.from_dict(r, old_mask.get(r.get("dtype"), "none") if isinstance(r, dict)
                                               else "none")
                          for r in d.get("results", [])),
            thresholds=tuple(d.get("thresholds", [])),
        )


def _version(schema: str) -> int:
    return int(str(schema).rpartition("/")[2])


def check_schema(found: str, expected: str) -> None:
    """Accept the expected kind at a version we know; refuse others clearly."""
    kind, _, version = str(found).rpartition("/")
    ekind, _, eversion = expected.rpartition("/")
    if kind != ekind:
        raise UsageError(f"schema {found!r} is not {expected!r}")
    if not version.isdigit() or int(version) > int(eversion):
        raise UsageError(
            f"schema {found!r} is newer than this numstab understands ({expected}); upgrade numstab"
        )



AUDIT_SCHEMA = "numstab.audit/7"  # /3: each result names its library; /4: limits and worst rows;
#                                    /5: temperature and mask of each result;
#                                    /6: meta.audits[].compute (the precision model);
#                                    /7: first_failure of a vector cut in pieces (stream.py: an
#                                    elementwise function's vector longer than a block) shows its
#                                    first values then "...", and the element's "input"


@dataclass(frozen=True)
class AuditResult:
    function: str
    impl: str
    dtype: str
    counts: tuple
    max_ulp: float
    median_ulp: float
    passed: bool
    reasons: tuple
    first_failure: dict | None = None
    audit: str = ""
    causes: tuple = ()  # ((cause, failing elements), ...)
    cause_inferred: bool = False
    zeros: int = 0  # outputs that are 0 or the log of 0 where the exact value is not
    library: tuple = ()  # ((key, value), ...): name, version, device... of a library's implementation
    limits: int = 0  # outputs other than an exact 0, +-inf or NaN (a mask's limit, a NaN input)
    worst: tuple = ()  # the worst rows of an --input (locate.worst dicts), --top K
    temperature: float = 1.0  # the inputs divided by T first (1: not divided)
    mask: str = "none"  # the grid's additive mask (grids.MASKS)

    def to_dict(self) -> dict:
        return {
            "audit": self.audit, "function": self.function, "impl": self.impl, "dtype": self.dtype,
            "temperature": jnum(self.temperature), "mask": self.mask,
            "library": dict(self.library) or None,
            "counts": dict(self.counts), "causes": dict(self.causes), "cause_inferred": self.cause_inferred,
            "zeros": self.zeros, "max_ulp": jnum(self.max_ulp),
            "median_ulp": jnum(self.median_ulp), "passed": self.passed,
            "reasons": list(self.reasons), "first_failure": self.first_failure,
            "limits": self.limits, "worst": list(self.worst),
        }


@dataclass(frozen=True)
class AuditReport:
    results: tuple
    meta: dict = field(default_factory=dict)
    notes: tuple = ()  # lines for the reader: (implementation, format) pairs left out, and why

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def to_dict(self) -> dict:
        return {"schema": AUDIT_SCHEMA, "passed": self.passed, "meta": self.meta,
                "results": [r.to_dict() for r in self.results]}


# ------------------------------------------------------------------ inspect
#: /4: always {"schema", "results": [...]} whatever the number of implementations and formats,
#: and NaN outputs are "nan" (null stays "no figure"); /3 gave one object for one result;
#: /5: ``compute`` (the precision model) in each result.
INSPECT_SCHEMA = "numstab.inspect/5"


def decimal_text(k: int, e: int, digits: int, sign: bool) -> str:
    """mpmath.nstr's layout (min_fixed=-6, max_fixed=12, trailing zeros stripped) of
    k * 10^(e - digits + 1)."""
    ds = str(k)
    if -6 < e < 12:
        if e < 0:
            ds, split = "0" * -e + ds, 1
        else:
            split = e + 1
            if split > digits:
                ds += "0" * (split - digits)
        exponent = 0
    else:
        split, exponent = 1, e
    ds = (ds[:split] + "." + ds[split:]).rstrip("0")
    if ds.endswith("."):
        ds += "0"
    s = ("-" if sign else "") + ds
    if exponent == 0:
        return s
    return s + ("e+" if exponent > 0 else "e") + str(exponent)
