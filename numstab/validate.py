"""One validation function per option, used by every command and by the config file.

Each takes the raw value and the name to show (``--tolerance`` on the command line,
``numstab.toml audit #1 'tolerance'`` in a config) and returns the clean value or
raises a one-line :class:`UsageError`.
"""

from __future__ import annotations

import math

from .errors import UsageError, unknown_name

#: "zero": an output that is 0, or the log of 0 (-inf; +inf for a loss), where the exact value is not
#: "limit": an output other than the exact value where that is exactly 0, +-inf or NaN (masks.py)
FAIL_ON_CHOICES = ("overflow", "underflow", "nan", "zero", "limit", "inaccurate")


def _number(v, where: str) -> float:
    if isinstance(v, bool):
        raise UsageError(f"{where} {v!r}: not a number")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise UsageError(f"{where} {v!r}: not a number") from None


def tolerance(v, where: str = "--tolerance") -> float:
    """ULP tolerance: a number >= 0 (inf allowed: nothing is then inaccurate); NaN refused."""
    t = _number(v, where)
    if math.isnan(t) or t < 0:
        raise UsageError(f"{where} {v!r}: must be a number >= 0")
    return t


def fail_on(values, where: str = "--fail-on") -> tuple:
    """Statuses that fail an audit: a non-empty selection of FAIL_ON_CHOICES, duplicates once."""
    if isinstance(values, str):
        values = (values,)
    if not isinstance(values, (list, tuple)):
        raise UsageError(f"{where} {values!r}: give a list of statuses ({', '.join(FAIL_ON_CHOICES)})")
    out = []
    for v in values:
        if not isinstance(v, str):
            raise UsageError(f"{where} {v!r}: not a status name ({', '.join(FAIL_ON_CHOICES)})")
        for part in v.split(","):
            part = part.strip()
            if not part:
                continue
            if part not in FAIL_ON_CHOICES:
                raise unknown_name(f"{where} status", part, FAIL_ON_CHOICES)
            out.append(part)
    if not out:
        raise UsageError(f"{where} is empty: give at least one of {', '.join(FAIL_ON_CHOICES)}")
    return tuple(dict.fromkeys(out))


def target(v, where: str = "--target"):
    """A target index: None or an integer >= 0 (the range is checked against the vectors)."""
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        elif isinstance(v, str) and v.strip().lstrip("+").isdigit():
            v = int(v)
        else:
            raise UsageError(f"{where} {v!r}: must be an integer >= 0")
    if v < 0:
        raise UsageError(f"{where} {v}: must be an integer >= 0")
    return v


def timeout(v, where: str = "--timeout"):
    """Seconds an implementation may take: None (no limit) or a finite number > 0."""
    if v is None:
        return None
    t = _number(v, where)
    if not (math.isfinite(t) and t > 0):
        raise UsageError(f"{where} {v!r}: must be a number of seconds > 0")
    return t


def path(v, where: str):
    """A file name from a config: a string (or None)."""
    if v is None:
        return None
    if not isinstance(v, str) or not v:
        raise UsageError(f"{where} {v!r}: must be a file name (a string)")
    return v


def dedupe(values) -> tuple:
    """The values once each, in the order given."""
    return tuple(dict.fromkeys(values or ()))


def choice(kind: str, value, choices):
    """``value`` if it is one of ``choices``; else the one-line error naming them."""
    if value not in choices:
        raise unknown_name(kind, value, choices)
    return value


def compute(v, where: str = "--compute") -> str:
    """A precision model (numstab.steps.COMPUTE_MODELS): float32 or format."""
    from .steps import COMPUTE_MODELS

    if not isinstance(v, str):
        raise UsageError(f"{where} {v!r}: must be a string, one of {', '.join(COMPUTE_MODELS)}")
    return choice("precision model", v, COMPUTE_MODELS)


def accumulate(v, where: str = "--accumulate") -> str:
    """An accumulation model (numstab.steps.ACC_MODELS): the one check every command and config use."""
    from .steps import ACC_MODELS

    if not isinstance(v, str):
        raise UsageError(f"{where} {v!r}: must be a string, one of {', '.join(ACC_MODELS)}")
    return choice("accumulation model", v, ACC_MODELS)


def label(v, where: str = "--target") -> float | None:
    """binary_cross_entropy's label z: None or a real in [0, 1]."""
    if v is None:
        return None
    z = _number(v, where)
    if not (0 <= z <= 1):
        raise UsageError(f"{where} {v!r}: a label must be a number in [0, 1]")
    return z


def label_smoothing(v, where: str = "--label-smoothing") -> float:
    """smoothed_cross_entropy's epsilon: a real in [0, 1]."""
    e = _number(v, where)
    if not (0 <= e <= 1):
        raise UsageError(f"{where} {v!r}: must be a number in [0, 1]")
    return e


COTANGENT_KINDS = ("normal", "onehot")


def cotangent(v, where: str = "--cotangent"):
    """A backward pass's cotangent: ``normal`` (seeded standard normal values), ``onehot`` (1 at
    each vector's argmax) or values ``v1,v2,...`` (a comma list or a list of finite numbers)."""
    if v is None:
        return "normal"
    if isinstance(v, str) and v.strip() in COTANGENT_KINDS:
        return v.strip()
    parts = v.split(",") if isinstance(v, str) else v
    if not isinstance(parts, (list, tuple)) or not parts:
        raise UsageError(f"{where} {v!r}: give normal, onehot or values v1,v2,...")
    out = []
    for p in parts:
        if isinstance(p, str) and not p.strip():
            raise UsageError(f"{where} {v!r}: an empty value; give normal, onehot or values v1,v2,...")
        x = _number(p, where)
        if not math.isfinite(x):
            raise UsageError(f"{where} {v!r}: values must be finite numbers")
        out.append(x)
    return tuple(out)


def _items(v, where: str, what: str) -> list:
    """A comma list, one value, or a list (a config's array) as a list of items."""
    if isinstance(v, bool):
        raise UsageError(f"{where} {v!r}: give {what}")
    if isinstance(v, str):
        parts = [p.strip() for p in v.split(",")]
        if not v.strip() or any(not p for p in parts):
            raise UsageError(f"{where} {v!r}: an empty value; give {what}")
        return parts
    if isinstance(v, (list, tuple)):
        if not v:
            raise UsageError(f"{where} is empty: give {what}")
        return list(v)
    return [v]


def temperatures(v, where: str = "--temperature") -> tuple:
    """Temperatures T (a comma list, one number or a list): each a finite number > 0, duplicates
    once, in the order given; None is T = 1 alone (inputs not divided)."""
    if v is None:
        return (1.0,)
    out = []
    for p in _items(v, where, "temperatures T > 0 (e.g. 1,0.01,1e-5)"):
        t = _number(p, where)
        if not (math.isfinite(t) and t > 0):
            raise UsageError(f"{where} {p!r}: a temperature must be a finite number > 0")
        out.append(t)
    return tuple(dict.fromkeys(out))


#: Additive attention masks of a grid (``--mask``; grids.apply_mask): none, ``-inf``, finfo.min once
#: (``min``) or twice (``min2``, two summed masks).
MASKS = ("none", "-inf", "min", "min2")


def masks(v, where: str = "--mask") -> tuple:
    """Additive grid masks (MASKS), a comma list or a list, duplicates once, in the order given;
    None is none alone."""
    if v is None:
        return ("none",)
    out = []
    for p in _items(v, where, f"masks ({', '.join(MASKS)})"):
        if not isinstance(p, str):
            raise UsageError(f"{where} {p!r}: not a mask name ({', '.join(MASKS)})")
        out.append(choice(f"{where} value", p, MASKS))
    return tuple(dict.fromkeys(out))
