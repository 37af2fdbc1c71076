"""The inspect command: one input (or a batch), every implementation, element by element."""

from __future__ import annotations

import numpy as np

from .. import validate
from ..engine import cause_counts, evaluate, main_cause, select_impls, summarize
from ..errors import UsageError
from ..formats import get_format
from ..functions import get as get_function
from ..functions import take_args
from ..metrics import DEFAULT_TOLERANCE
from ..results import FLAG_NAMES, INACCURATE, INSPECT_SCHEMA, STATUSES, jnum, jvalue
from ..steps import DEFAULT_COMPUTE, compute_dtype

#: inspect's cotangent when none is given: 1 at each vector's argmax, the gradient of the largest
#: probability (softmax_backward) or log-probability (log_softmax_backward)
DEFAULT_COTANGENT = "onehot"


def run_inspect(function: str, values=None, input_file=None, target=None, targets_file=None,
                dtypes=("float32",), impls=None, accumulate: str = "sequential",
                tolerance: float = DEFAULT_TOLERANCE, key=None, axis=None, specials=None,
                top: int = 5, temperature=None, cotangent=None, label_smoothing=None,
                jobs: int | None = 1, progress=None, scheduler=None,
                compute: str = DEFAULT_COMPUTE) -> dict:
    """The inspect job. Returns the JSON-ready dict
    (schema numstab.inspect/5: {"schema", "results": [one per format and implementation]}).

    ``target``: the target index (cross_entropy, ...) or the label z in [0, 1]
    (binary_cross_entropy); ``cotangent``: the backward passes' cotangent (values v1,...,vn,
    ``onehot`` or ``normal``; default :data:`DEFAULT_COTANGENT`, ``onehot``); ``label_smoothing``:
    epsilon; ``compute``: the precision model of the built-in kernels (steps.COMPUTE_MODELS).

    ``temperature``: T, or several (a comma list or a list): the inputs divided by T in the format
    first, each T its own results (each with ``temperature``).

    ``key``/``axis``: the array of a .npz/.safetensors file and the axis of the vectors;
    ``specials`` (masks.Specials): how -inf, +inf and NaN inputs are read; ``top``: how many
    of the worst rows a batch names.

    A batch (a file of several vectors, or shards matched by a glob pattern) is streamed: read
    and evaluated a block of rows at a time (numstab.stream), in ``jobs`` worker processes or on
    the Dask scheduler at ``scheduler``, with the figures of one pass; ``progress(done, total)``
    is called with element counts as blocks finish.
    """
    from .. import masks
    from ..causes import cause_name, verdict
    from ..grids import load_args, make_extras
    from ..inputs import load_input, parse_values, round_inputs
    from ..locate import worst
    from ..reference import exact_strings
    from ..reference import thresholds as exact_thresholds

    rec = get_function(function)
    function = rec.name
    validate.accumulate(accumulate)
    validate.compute(compute)
    if rec.takes == "cotangent" and cotangent is None:
        cotangent = DEFAULT_COTANGENT
    if (values is None or len(values) == 0) == (input_file is None):
        raise UsageError("give the values after -- (e.g. numstab inspect softmax -- 1 2 3) "
                         "or --input FILE, not both and not neither")
    specials = specials or masks.DEFAULT
    if top < 0:
        raise UsageError("--top must be >= 0")
    if temperature is not None:  # refused before any input is read
        from ..reference import check_temperature

        check_temperature(function, validate.temperatures(temperature))
    src = None
    if input_file is not None:
        from .. import stream

        fsrc, arrays = stream.open_source(input_file, key, axis)
        if fsrc.sharded or arrays[0].rows > 1 or arrays[0].n > stream.block_elements():
            # a batch, or one vector too long to list element by element: summarized, its --top K
            return _inspect_batch(rec, fsrc, arrays, target, targets_file, dtypes, impls, accumulate,
                                  tolerance, specials, top, temperature, cotangent, label_smoothing, jobs,
                                  progress, scheduler, compute)
        x0, src = load_input(input_file, key, axis)
    else:
        if key is not None or axis is not None:
            raise UsageError("--key and --axis apply to --input FILE")
        x0 = parse_values(values)
    masks.check_function(function, x0)
    B, n = x0.shape
    extras = make_extras(None, cotangent, label_smoothing)
    chosen = select_impls([function], impls)
    from ..limits import inspect_bytes, require  # refuse before the work what cannot fit

    require(f"inspecting {B:,} x {n:,} values", inspect_bytes(B, n, len(chosen), len(dtypes or ("float32",))),
            "inspect fewer values (a long single vector is reported element by element) or use audit")
    temps = (None,) if temperature is None else validate.temperatures(temperature)
    results = []
    runs = [(d, t) for d in dtypes or ("float32",) for t in temps]
    if progress:
        progress(0, B * n * len(runs))  # arms the bar (a long vector: shown after about a second)
    for k, (dt, temperature) in enumerate(runs):
        if progress and k:
            progress(k * B * n, B * n * len(runs))
        fmt = get_format(dt)
        x = round_inputs(fmt, x0)
        args = load_args(fmt, x, rec, target, targets_file, extras)
        tg = args.get("target", np.zeros(B, dtype=np.int64))
        th = exact_thresholds(fmt)
        wfmt = get_format(compute_dtype(fmt.dtype, compute).name)  # the built-ins' working format
        wth = th if wfmt is fmt else exact_thresholds(wfmt)
        groups = [slice(i, i + 1) for i in range(B)] if B <= 64 else None
        t_arg = None if temperature in (None, 1) else temperature
        stage = None
        if progress:  # the bar moves inside the evaluation too (engine.evaluate's stages)
            def stage(f, k=k):
                progress(int((k + f) * B * n), B * n * len(runs))
        outs, _, _ = evaluate(fmt, x, args, chosen, accumulate, tolerance, groups, specials=specials,
                              temperature=t_arg, compute=compute, stage=stage)
        xe = x  # x / T rounded to float64 (the scaled inputs shown, and the verdict's words)
        if t_arg is not None:
            from ..engine import scaled

            xe, _ = scaled(fmt, x, [], t_arg)
        from ..engine import scale_args

        args_e = scale_args(fmt, args, B, t_arg)  # the exact values: f at the exact x / T_F
        # the exact values depend only on the vector: one escalated mpmath run serves every impl
        row = {k: v[0] for k, v in args_e.items()}
        row_arg = int(tg[0]) if set(row) <= {"target"} else row  # the mask layer reads an index
        ex = (masks.exact_strings(exact_strings, fmt, x[0], row_arg, specials,
                                  functions=[function])[function] if B == 1 else None)
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
                        o.impl.run(fmt.cast(x[:1]), accumulate, rec.arg(take_args(args, slice(0, 1))), tr,
                                   compute)
                    events = tr.events
                results.append({
                    "schema": INSPECT_SCHEMA, "function": function, "dtype": fmt.name,
                    "impl": o.impl.name, "accumulate": accumulate, "compute": compute,
                    **_inspect_args(rec, {k: v[0] for k, v in args.items()}),
                    "inputs": [jvalue(v) for v in x[0]],
                    **({"temperature": temperature, "scaled_inputs": [jvalue(v) for v in xe[0]]}
                       if temperature is not None else {}),
                    "outputs": [jvalue(v) for v in yy],
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
                    "verdict": verdict(fmt, th, function, o.impl.name, xe[0], yy, st, o.cause[0], u,
                                       flags, events, tolerance, o.inferred,
                                       tg[0] if rec.takes == "target" else None, wfmt, wth),
                    **({"scalar": True} if scalar else {}),
                    **_masked_row_note(function, x[0], yy),
                })
            else:
                summ = summarize(o, slice(0, B))
                results.append({
                    "schema": INSPECT_SCHEMA, "function": function, "dtype": fmt.name,
                    "impl": o.impl.name, "accumulate": accumulate, "compute": compute, "vectors": B, "n": n,
                    **({"temperature": temperature} if temperature is not None else {}),
                    "counts": summ["counts"], "causes": summ["causes"], "cause": summ["cause"],
                    "cause_inferred": o.inferred,
                    "vectors_failing": int(np.sum((o.status >= INACCURATE).reshape(B, -1).any(axis=1))),
                    "max_ulp": jnum(summ["max_ulp"]), "median_ulp": jnum(summ["median_ulp"]),
                    "max_rel": jnum(summ["max_rel"]), "status": summ["status"], "flags": list(flags),
                    **({"shape": list(src.shape), "axis": src.axis} if src is not None else {}),
                    **_masked_rows_returned(function, x, o.y),
                    "worst": worst(o, x, args_e, fmt, top, src, specials),
                })
    if progress:
        progress(B * n * len(runs), B * n * len(runs))
    return {"schema": INSPECT_SCHEMA, "results": results}


def _inspect_batch(rec, fsrc, arrays, target, targets_file, dtypes, impls, accumulate, tolerance,
                   specials, top, temperature, cotangent, label_smoothing, jobs, progress, scheduler,
                   compute: str = DEFAULT_COMPUTE) -> dict:
    """inspect of a batch, streamed: one summary per format and implementation, its --top K rows."""
    from .. import stream
    from ..grids import make_extras
    from ..workers import default_jobs

    function = rec.name
    jobs = default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if scheduler is not None:
        from ..dask_run import check_available

        check_available()
    rows, n = sum(a.rows for a in arrays), arrays[0].n
    extras = make_extras(None, cotangent, label_smoothing)
    chosen = select_impls([function], impls)
    dts = list(dtypes or ("float32",))
    rpc = stream.rows_per_chunk(rows, n, len(chosen), 1 if scheduler else jobs,
                                f"inspecting {rows:,} vectors of {n:,} values", function,
                                stream.in_pieces(function, chosen, n, accumulate, compute))
    refs = stream.impl_refs(chosen)
    temps = (None,) if temperature is None else validate.temperatures(temperature)
    runs = [(dt, t) for dt in dts for t in temps]
    results = []
    for k, (dt, temperature) in enumerate(runs):
        fmt = get_format(dt)
        args = stream.prepare_args(fmt, rec, rows, n, target, targets_file, extras)
        job = stream.Job(function, fmt.name, refs, accumulate, tolerance, specials,
                         None if temperature in (None, 1) else temperature, top, extras=extras, source=fsrc,
                         compute=compute, elements=rows == 1)
        chunks = stream.plan_chunks(job, arrays, args, rpc)

        def step(done, total, k=k):
            if progress:
                progress(k * total + done, total * len(runs))

        merged = stream.run(chunks, jobs, step, scheduler, top)
        for impl, part in zip(chosen, merged.parts):
            summ = part.summary()
            where = ({"shape": list(arrays[0].shape), "axis": arrays[0].axis} if not fsrc.sharded else
                     {"shards": [{"file": p, "shape": list(a.shape)} for p, a in zip(fsrc.paths, arrays)],
                      "axis": arrays[0].axis})
            results.append({
                "schema": INSPECT_SCHEMA, "function": function, "dtype": fmt.name,
                "impl": impl.name, "accumulate": accumulate, "compute": compute, "vectors": rows, "n": n,
                **({"temperature": temperature} if temperature is not None else {}),
                "counts": summ["counts"], "causes": summ["causes"], "cause": summ["cause"],
                "cause_inferred": part.inferred, "vectors_failing": part.vectors_failing(),
                "max_ulp": jnum(summ["max_ulp"]), "median_ulp": jnum(summ["median_ulp"]),
                "max_rel": jnum(summ["max_rel"]), "status": summ["status"], "flags": part.flag_names(),
                **where,
                **({"masked_rows_returned": {k: part.masked_rows().get(k, 0) for k in ("nan", "zeros",
                                                                                     "uniform", "other")}}
                   if part.masked_rows() else {}),
                "worst": stream.finish_worst(fmt, function, part, specials),
            })
    return {"schema": INSPECT_SCHEMA, "results": results}


def _inspect_args(rec, row: dict) -> dict:
    """The second input of one vector, as inspect's JSON shows it: ``target`` (an index),
    ``label`` (binary_cross_entropy's z, one per element), ``cotangent`` (one per element),
    ``target`` and ``label_smoothing`` (smoothed_cross_entropy)."""
    kind = rec.takes
    if kind == "target":
        return {"target": int(row["target"])}
    if kind == "label":
        return {"label": [float(v) for v in np.atleast_1d(row["label"])]}
    if kind == "cotangent":
        return {"cotangent": [float(v) for v in np.atleast_1d(row["cotangent"])]}
    if kind == "smoothing":
        sm = row["smoothing"]
        return {"target": int(sm["target"]), "label_smoothing": float(sm["epsilon"])}
    return {}


def _masked_row_note(function: str, x_row, y) -> dict:
    """For a fully masked vector: what the implementation returned (nan, zeros, uniform, other)."""
    from ..masks import returned_kind

    if not (np.asarray(x_row) == -np.inf).all() or function not in ("softmax", "log_softmax"):
        return {}
    return {"masked_row_returned": returned_kind(y, function)}


def _masked_rows_returned(function: str, x, y) -> dict:
    """For a batch: how many fully masked rows came out as nan, zeros, uniform or other."""
    from ..masks import returned_kind

    rows = np.nonzero((x == -np.inf).all(axis=1))[0]
    if not rows.size or function not in ("softmax", "log_softmax"):
        return {}
    kinds = [returned_kind(y[r], function) for r in rows]
    return {"masked_rows_returned": {k: kinds.count(k) for k in ("nan", "zeros", "uniform", "other")}}
