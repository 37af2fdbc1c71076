"""Locating failures in a batch: the worst rows and elements of an outcome (``--top K``).

Elements are ranked by status (worst first: nan, overflow, underflow, inaccurate,
undetermined, ok), then by ULP error (largest first), then by position. Each of the K
entries is the worst element of a distinct row, named by its N-D index in the input
array (the vector's index along the other axes, and the element's along ``--axis``),
with its input, output, exact value (decimal, every digit right), ULP error, status and
cause.
"""

from __future__ import annotations

import numpy as np

from .causes import cause_name
from .results import STATUSES, jnum

#: Values of the vector shown with each entry (the first ones).
VECTOR_SHOWN = 8


def worst(o, x: np.ndarray, target: np.ndarray, fmt, k: int, src=None, specials=None,
          exact: bool = True, x_exact=None, keys: list | None = None, elements: bool = False) -> list[dict]:
    """The K worst rows of an outcome (engine.ImplOutcome over the (B, n) batch x).

    ``src``: the inputs.InputArray the rows come from (for N-D indices; None: row numbers);
    ``x_exact``: the inputs of the exact values when they differ from x (x / T, a temperature);
    ``keys``: a list that receives (row, status code, ULP score, element) of each entry, the
    ranking (status, then ULP error, then row, then element) that merges the worst rows of
    several chunks; ``elements``: the K worst elements of the batch's one vector instead (a
    vector too long to list element by element).
    """
    if k <= 0 or o.status is None:
        return []
    B = x.shape[0]
    args = target if isinstance(target, dict) else None  # every extra argument of the batch
    if args is not None:
        target = args.get("target", np.zeros(B, dtype=np.int64))
    st = o.status.reshape(B, -1).astype(np.int64)
    u = np.nan_to_num(o.ulp.reshape(B, -1), nan=-1.0, posinf=np.inf)
    # the worst element of each row: max status, then max ULP, then the first
    best = np.lexsort((-u, -st), axis=-1)[:, 0] if st.shape[1] > 1 else np.zeros(B, dtype=np.int64)
    rs = st[np.arange(B), best]
    ru = u[np.arange(B), best]
    scalar = o.status.ndim == 1
    if elements and not scalar and B == 1:  # one vector: its K worst elements
        cols = np.lexsort((np.arange(st.shape[1]), -u[0], -st[0]))[:k]
        picks = [(0, int(j)) for j in cols]
    else:
        picks = [(int(r), int(best[r])) for r in np.lexsort((np.arange(B), -ru, -rs))[:k]]
    out = []
    for r, j in picks:
        if keys is not None:
            keys.append((r, int(st[r, j]), float(u[r, j]), j))
        idx = (r,) if scalar else (r, j)
        row_index = src.index(r) if src is not None else (r,)
        el_index = (src.element_index(r, None if scalar else j) if src is not None
                    else ((r,) if scalar else (r, j)))
        entry = {
            "row": list(row_index),
            "index": list(el_index),
            **({} if scalar else {"element": j, "input": _value(x[r, j])}),
            "vector": shown_vector(x[r], x.shape[1]),
            **({"target": int(target[r])} if o.impl.function == "cross_entropy" else {}),
            "output": _value(o.y[idx]),
            "exact": None,
            "ulp_error": jnum(o.figure("ulp", idx)),
            "status": STATUSES[int(o.status[idx])],
            "cause": cause_name(int(o.cause[idx])) if o.cause is not None else None,
        }
        if exact:
            xr = (x if x_exact is None else x_exact)[r]
            row_arg = (int(target[r]) if args is None or set(args) <= {"target"}
                       else {key: v[r] for key, v in args.items()})  # the mask layer reads an index
            entry["exact"] = exact_string(fmt, xr, row_arg, o.impl.function, 0 if scalar else j, specials)
        out.append(entry)
    return out


def shown_vector(values, n: int, value=None) -> list:
    """The first values of a vector of n (VECTOR_SHOWN of them, then "..." if there are more), each
    written by ``value`` (default: a NaN as "nan", as --top entries write inputs)."""
    value = value or _value
    return [value(v) for v in values[:VECTOR_SHOWN]] + (["..."] if n > VECTOR_SHOWN else [])


def _value(v):
    """An input or output value: a number, or the strings "inf", "-inf", "nan" (a NaN output is a
    value here, not a missing figure)."""
    return "nan" if np.isnan(v) else jnum(v)


def exact_string(fmt, row, target, function: str, j: int, specials):
    """Element j's exact value (decimal, every digit right) of the function at the vector ``row``."""
    return exact_strings_at(fmt, row, target, function, [j], specials)[0]


def exact_strings_at(fmt, row, target, function: str, js, specials, whole=None) -> list:
    """The exact values (decimal, every digit right) of elements ``js`` of the function at the
    vector ``row``, computed together (a long row's shared quantities once); ``whole``: row is a
    piece of a longer finite vector (reference.softmax.Whole)."""
    from .masks import exact_strings
    from .reference import exact_strings as strings_of

    if whole is not None:
        strings = strings_of(fmt, row, target, functions=[function], elements=list(js), whole=whole)
        return [strings[function][j] for j in js]

    strings = exact_strings(strings_of, fmt, row, target, specials, functions=[function], elements=list(js))
    return [strings[function][j] for j in js]
