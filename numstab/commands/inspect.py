"""The inspect command: one input (or a batch), every implementation, element by element."""

from __future__ import annotations

import numpy as np

from .. import validate
from ..engine import cause_counts, evaluate, main_cause, select_impls, summarize
from ..errors import UsageError
from ..formats import get_format
from ..functions import as_args
from ..functions import get as get_function
from ..metrics import DEFAULT_TOLERANCE
from ..results import FLAG_NAMES, INACCURATE, INSPECT_SCHEMA, STATUSES, jnum


def run_inspect(function: str, values=None, input_file=None, target=None, targets_file=None,
                dtypes=("float32",), impls=None, accumulate: str = "sequential",
                tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """The inspect job. Returns the JSON-ready dict (schema numstab.inspect/1)."""
    from ..causes import cause_name, verdict
    from ..inputs import load_targets, load_vectors, parse_values, round_inputs
    from ..reference import exact_strings
    from ..reference import thresholds as exact_thresholds

    rec = get_function(function)
    function = rec.name
    validate.accumulate(accumulate)
    if (values is None or len(values) == 0) == (input_file is None):
        raise UsageError("give the values after -- (e.g. numstab inspect softmax -- 1 2 3) "
                         "or --input FILE, not both and not neither")
    x0 = load_vectors(input_file) if input_file is not None else parse_values(values)
    B, n = x0.shape
    tg = load_targets(target, targets_file, B, n, required=rec.takes == "target")
    chosen = select_impls([function], impls)
    from ..limits import inspect_bytes, require  # refuse before the work what cannot fit

    require(f"inspecting {B:,} x {n:,} values", inspect_bytes(B, n, len(chosen), len(dtypes or ("float32",))),
            "inspect fewer values (a long single vector is reported element by element) or use audit")
    results = []
    for dt in dtypes or ("float32",):
        fmt = get_format(dt)
        x = round_inputs(fmt, x0)
        th = exact_thresholds(fmt)
        groups = [slice(i, i + 1) for i in range(B)] if B <= 64 else None
        outs, _, _ = evaluate(fmt, x, tg, chosen, accumulate, tolerance, groups)
        # the exact values depend only on the vector: one escalated mpmath run serves every impl
        ex = exact_strings(fmt, x[0], int(tg[0]), functions=[function])[function] if B == 1 else None
        for o in outs:
            flags = tuple(f for f in FLAG_NAMES if any(f in fl for fl in o.flags))
            names = [cause_name(int(c)) for c in np.atleast_1d(o.cause[0])] if B == 1 else None
            if B == 1:
                y, st, u = o.y[0], o.status[0], o.ulp[0]
                scalar = rec.per_vector
                yy = np.atleast_1d(y)
                events = o.events[0][1] if o.events else []  # the attribution pass's, if it ran
                if o.impl.builtin and not o.events:  # trace the vector step by step for the verdict's words
                    from ..steps import Tracer

                    tr = Tracer(fmt, 1, attribute=True)
                    with np.errstate(all="ignore"):
                        o.impl.run(fmt.cast(x[:1]), accumulate, rec.arg(as_args(tg[:1])), tr)
                    events = tr.events
                results.append({
                    "schema": INSPECT_SCHEMA, "function": function, "dtype": fmt.name,
                    "impl": o.impl.name, "accumulate": accumulate,
                    **({"target": int(tg[0])} if rec.takes == "target" else {}),
                    "inputs": [float(v) for v in x[0]],
                    "outputs": [jnum(v) for v in yy],
                    "reference": ex,
                    "ulp_error": [jnum(o.figure("ulp", (0,) if scalar else (0, j)))
                                  for j in range(np.atleast_1d(u).size)],
                    "element_status": [STATUSES[int(s)] for s in np.atleast_1d(st)],
                    "element_cause": names,
                    "status": STATUSES[int(np.max(st))],
                    "cause": main_cause(np.atleast_1d(st), np.atleast_1d(o.cause[0])),
                    "causes": cause_counts(np.atleast_1d(st), np.atleast_1d(o.cause[0])),
                    "cause_inferred": o.inferred,
                    "flags": list(flags),
                    "verdict": verdict(fmt, th, function, o.impl.name, x[0], yy, st, o.cause[0], u,
                                       flags, events, tolerance, o.inferred,
                                       tg[0] if rec.takes == "target" else None),
                    **({"scalar": True} if scalar else {}),
                })
            else:
                summ = summarize(o, slice(0, B))
                results.append({
                    "schema": INSPECT_SCHEMA, "function": function, "dtype": fmt.name,
                    "impl": o.impl.name, "accumulate": accumulate, "vectors": B, "n": n,
                    "counts": summ["counts"], "causes": summ["causes"], "cause": summ["cause"],
                    "cause_inferred": o.inferred,
                    "vectors_failing": int(np.sum((o.status >= INACCURATE).reshape(B, -1).any(axis=1))),
                    "max_ulp": jnum(summ["max_ulp"]), "median_ulp": jnum(summ["median_ulp"]),
                    "max_rel": jnum(summ["max_rel"]), "status": summ["status"], "flags": list(flags),
                })
    if len(results) == 1:
        return results[0]
    return {"schema": INSPECT_SCHEMA, "results": results}
