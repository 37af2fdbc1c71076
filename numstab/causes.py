"""Final status and cause of every element: established for built-ins, inferred for black boxes.

Statuses answer "where do overflow and underflow occur" truthfully:

* ``nan``: the output is NaN.
* ``overflow``: something overflowed -- an infinite output where the exact value
  rounds to a finite number, and also the zeros (and logs of zeros) of x/inf after
  an overflowed sum.
* ``underflow``: something underflowed -- a zero (or the log of a zero) where the
  exact value is not, produced by a flush to zero.
* ``inaccurate``: the ULP error is above the tolerance; this includes zeros that
  come from cancellation or absorption (an accuracy failure, not an underflow).

Causes (``results.CAUSES``): for built-in kernels they come from the step-by-step
trace (numstab.steps): the root of a special value, else the largest category of
the propagated rounding error. For user callables and libraries they are inferred
from the inputs, outputs and exact values, and marked as inferred.
"""

from __future__ import annotations

import math

import numpy as np

from .functions import get as _record
from .results import CAUSES, INACCURATE, NAN, OK, OVERFLOW, STATUSES, UNDERFLOW, UNDETERMINED
from .steps import CATEGORY_CODE, CODE, DEFAULT_COMPUTE, EXP_OVF, INVALID, OUT_ROUND, SUM_OVF, Tracer
from .steps import UNDERFLOW as C_UNDERFLOW

#: rows per traced attribution pass are limited so its arrays stay small
ATTRIBUTE_ELEMENTS = 1 << 16


def cause_name(code: int) -> str | None:
    return CAUSES[code - 1] if code else None


def _status_of_root(root: np.ndarray) -> np.ndarray:
    st = np.full(root.shape, -1, dtype=np.int8)
    st[(root == EXP_OVF) | (root == SUM_OVF)] = OVERFLOW
    st[root == C_UNDERFLOW] = UNDERFLOW
    st[root == INVALID] = NAN
    return st


def _status_of(root: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Statuses from roots; the output rounding's is overflow for an inf, underflow for a 0."""
    st = _status_of_root(root)
    out = root == OUT_ROUND
    if out.any():
        st[out & np.isinf(y)] = OVERFLOW
        st[out & (y == 0)] = UNDERFLOW
    return st


def wrong_special(y, rounded):
    """Zeros and infinities the exact value does not round to."""
    with np.errstate(all="ignore"):
        zero = (y == 0) & (rounded != 0) & ~np.isnan(rounded)
        inf = np.isinf(y) & (y != rounded)
    return zero, inf


def _exact_special(rounded, exact_special):
    """(where the exact value is an infinite limit or NaN, where it is NaN) -- see masks.py."""
    if exact_special is None:
        z = np.zeros(np.shape(rounded), dtype=bool)
        return z, z
    return exact_special, exact_special & np.isnan(rounded)


def finalize(fmt, function, y, rounded, ulp, status, root, tolerance, exact_special=None):
    """Statuses from the roots of special outputs; returns (status, cause codes, needs attribution).

    ``status`` comes from metrics (figures only know the value); zeros and infinities
    get the status of what produced them: an overflow (x/inf), a flush, or neither
    (absorption, cancellation: then their ULP error decides, with an attributed cause).
    """
    status = status.copy()
    cause = np.zeros(status.shape, dtype=np.int8)
    zero, inf = wrong_special(y, rounded)
    ex, ex_nan = _exact_special(rounded, exact_special)
    special = (zero | inf) & ~ex  # a limit's own zeros and infinities are judged by metrics
    by_root = _status_of(root, y)
    nan = np.isnan(y)
    cause[nan] = np.where(root[nan] != 0, root[nan], INVALID)
    cause[ex_nan & ~nan] = CODE["nan_hidden"]  # a number where NaN is the answer
    rooted = special & (by_root >= 0) & ~nan
    status[rooted] = by_root[rooted]
    cause[rooted] = root[rooted]
    unrooted = special & ~rooted & ~nan & (status != UNDETERMINED)
    # an unrooted zero or infinity is an accuracy failure (its ULP error is judged)
    status[unrooted] = np.where(ulp[unrooted] > tolerance, INACCURATE, OK)
    need = ((status == INACCURATE) & (cause == 0))
    return status, cause, need


def attribute(impl, fmt, xc, acc, target, rows, compute: str = DEFAULT_COMPUTE, tracer=None,
              vector_events=None, outputs: list | None = None):
    """Cause codes (largest propagated error category) of every element of the given rows, and the
    attribution passes' (rows, tracer events). ``tracer()``: the attributing tracer of xc, a piece of
    a long vector (numstab.vector.Piece; one row), whose infinite outputs are named from the whole
    vector's events (``vector_events()``). ``outputs``: a list each pass appends its kernel's
    (values, roots, flag bits per row) to -- the run engine.run_attributed takes from it."""
    n = xc.shape[-1]
    step = max(1, ATTRIBUTE_ELEMENTS // max(1, n))
    parts, events = [], []
    for i in range(0, len(rows), step):
        sel = rows[i:i + step]
        tr = Tracer(fmt, len(sel), attribute=True) if tracer is None else tracer()
        with np.errstate(all="ignore"):
            out = impl.run(xc[sel], acc, None if target is None else target[sel], tr, compute)
        best, top = _largest(out.err, out.shape)
        code = CATEGORY_CODE[best]
        seen = tr.events
        if vector_events is not None and not np.isfinite(np.asarray(out.v, dtype=np.float64)).all():
            seen = seen + vector_events()
        code = np.where(top > 0, code, _unpropagated(seen, out.v, len(sel)))
        parts.append(code)
        events.append((sel, tr.events))
        if outputs is not None:  # (not the errors: they go with this pass)
            outputs.append((out.v, out.root, tr.flags))
    return np.concatenate(parts, axis=0), events


def _largest(err, shape) -> tuple[np.ndarray, np.ndarray]:
    """(argmax, max) of |error| over the categories (steps.Err), as np.argmax and np.max give
    them along a stacked last axis where no NaN is involved (the first of equal maxima; a NaN
    makes the max NaN, and its argmax is then not used). A missing component is 0, which never
    beats a magnitude (>= 0) nor unsets a NaN: it is skipped."""
    top = np.zeros(shape)
    best = np.zeros(shape, dtype=np.intp)
    nan = np.zeros(shape, dtype=bool)
    for c, e in enumerate(err.c):
        if e is None:
            continue
        e = np.abs(e)
        gt = e > top
        best[gt] = c
        np.maximum(top, e, out=top)
        nan |= np.isnan(e)
    top[nan] = np.nan
    return best, top


def _unpropagated(events, y, rows: int) -> np.ndarray:
    """The cause of outputs no first-order error reaches: an infinity from the log of a zero (or
    a division by it) carries no propagated error, so a wrong one is named by what made the zero
    in its row -- a cancellation (1 - p with p rounded to 1), else an absorption -- and plain
    rounding otherwise."""
    code = np.full(y.shape, CODE["rounding"], dtype=np.int8)
    infinite = ~np.isfinite(np.asarray(y, dtype=np.float64))
    if not infinite.any():
        return code
    for kind in ("absorption", "cancellation"):  # the later one wins
        hit = np.zeros(rows, dtype=bool)
        for _label, k, mask, _detail in events:
            if k == kind:
                m = np.asarray(mask)
                hit |= np.broadcast_to(m.reshape(m.shape[0], -1).any(axis=1) if m.ndim else m, (rows,))
        rowhit = hit.reshape((rows,) + (1,) * (y.ndim - 1))
        code = np.where(infinite & rowhit, CODE[kind], code)
    return code


def smoothing_sums(x) -> tuple:
    """Per row, in float64: sum_j -log softmax(x)_j = n logsumexp(x) - sum(x), and the largest
    -log softmax(x)_j = logsumexp(x) - min(x) (a black box's inferred cause: their accuracy only
    matters next to the format's limits, far inside float64). NaN for a row holding a non-finite
    entry (its exact loss is then a limit, not a sum)."""
    with np.errstate(all="ignore"):
        m = np.max(x, axis=-1, keepdims=True)
        lse = m[..., 0] + np.log(np.sum(np.exp(x - m), axis=-1))
        total = x.shape[-1] * lse - np.sum(x, axis=-1)
        widest = lse - np.min(x, axis=-1)
    finite = np.isfinite(x).all(axis=-1)
    return np.where(finite, total, np.nan), np.where(finite, widest, np.nan)


def infer(fmt, function, x, y, ref_all, status, ulp, tolerance, exact_special=None, vector=None):
    """Statuses and causes of a black box's elements, inferred from inputs, outputs and exact values.
    ``vector`` (vector.BoxRun): x and y are a piece of one long vector, whose largest input, label
    smoothing's sums and whether any output is finite and nonzero are the whole vector's."""
    status = status.copy()
    rec = _record(function)
    is_log = rec.log_of_zero is not None
    lnmax = math.log(fmt.max)
    ln_unf = math.log(fmt.smallest_subnormal) - math.log(2)
    rounded = ref_all[function].rounded
    elementwise = rec.output == "elementwise"
    with np.errstate(all="ignore"):
        if elementwise:  # each output from its own input: exp(x) or exp(-x) of that input alone
            xf = np.where(np.isfinite(x), x, np.nan)  # an infinite input's exp is exact (inf or 0)
            xmax = np.abs(xf)
        else:
            xmax = np.max(x, axis=-1) if vector is None else vector.xmax
        exp_ovf = xmax >= lnmax
        sum_ovf = np.zeros(exp_ovf.shape, dtype=bool)
        if "logsumexp" in ref_all:  # the exact sum of exps beyond the format: its logarithm
            L = ref_all["logsumexp"].rounded  # exact logsumexp rounded to the format (inf beyond max)
            sum_ovf = ~exp_ovf & ~(L < lnmax)  # a very negative L is no overflow (exps underflow)
        # a loss's +inf is the log of a probability flushed to 0 where the smallest one it takes
        # lies below half the format's smallest subnormal: p_t (cross_entropy), every p_j (label
        # smoothing's mean of -log p_j)
        p_flush = np.zeros(exp_ovf.shape, dtype=bool)
        smooth_ovf = np.zeros(exp_ovf.shape, dtype=bool)
        if function == "cross_entropy":
            p_flush = rounded >= -ln_unf
        elif function == "smoothed_cross_entropy" and x.ndim == 2:
            # label smoothing's sum of -log p_j = n logsumexp(x) - sum(x) beyond the format: a sum
            # of the log-probabilities in the format overflows (torch's float16 label_smoothing)
            total, widest = smoothing_sums(x) if vector is None else vector.smooth
            smooth_ovf = ~(total <= fmt.max)
            sum_ovf = sum_ovf | (~exp_ovf & smooth_ovf)
            p_flush = widest > -ln_unf
        all_unf = (xmax <= ln_unf) & (not elementwise)  # every exp of a vector flushed (0/0)
    shape = status.shape
    per_row = (lambda a: a[:, None] * np.ones(shape, dtype=bool)) if len(shape) == 2 and not elementwise \
        else (lambda a: a)
    exp_ovf, sum_ovf, all_unf, p_flush = (per_row(a) for a in (exp_ovf, sum_ovf, all_unf, p_flush))
    ovf_code = np.where(exp_ovf, EXP_OVF, np.where(sum_ovf, SUM_OVF, 0))
    # an exp overflow makes a loss NaN (inf/inf) or inf through a 0 (x/inf); a +inf loss where the
    # sum of -log p_j overflows is that sum's (a kernel that shifts by the max never overflows exp)
    ovf_code = np.where(per_row(smooth_ovf) & (y == np.inf), SUM_OVF, ovf_code)
    cause = np.zeros(shape, dtype=np.int8)
    nan = np.isnan(y)
    cause[nan] = np.where(ovf_code[nan] != 0, ovf_code[nan], np.where(all_unf[nan], C_UNDERFLOW, INVALID))
    zero, inf = wrong_special(y, rounded)
    ex, ex_nan = _exact_special(rounded, exact_special)
    zero, inf = zero & ~ex, inf & ~ex
    limit_wrong = ex & ~nan & (status >= INACCURATE)
    # a number where the answer is NaN hides it; a finite value where it is an infinite limit
    # means a bound replaced the infinity (e.g. -inf read as -64, a clipped probability)
    cause[limit_wrong] = np.where(ex_nan[limit_wrong], CODE["nan_hidden"], CODE["clipping"])
    if is_log:
        # a logarithm's output of exactly 0 is log(1): the other terms vanished beside the
        # largest (absorbed) or logsumexp(x) - x[target] cancelled -- never a flush to zero or an
        # overflow, which give -inf, inf or NaN, whatever the inputs' range
        logged = zero & ~nan & (status != UNDETERMINED)
        status[logged] = np.where(ulp[logged] > tolerance, INACCURATE, OK)
        cause[logged] = CODE["cancellation" if rec.inferred_cause == "cancellation" else "absorption"]
        zero = zero & ~logged
    with np.errstate(all="ignore"):
        tiny_exact = np.abs(rounded) < fmt.tiny
        if rec.log_of_zero is not None and not rec.per_vector:  # log-probabilities
            tiny_exact = rounded <= ln_unf  # the probability itself underflows
    # an overflowed sum makes every output of its row 0 (x / inf) or NaN (inf / inf): a zero
    # beside finite nonzero outputs of the same vector did not come from one -- the sum of a
    # black box that shifts by the max never overflows, whatever the exact sum
    dead = np.ones(shape, dtype=bool)
    if len(shape) == 2 and not elementwise:
        with np.errstate(all="ignore"):
            live = (np.isfinite(y) & (y != 0)).any(axis=-1) if vector is None else vector.live
        dead = ~live[:, None] & dead
    for mask in (zero, inf):
        m = mask & ~nan & (status != UNDETERMINED)
        ovf = m & (ovf_code != 0) & dead
        if elementwise and mask is zero and not rec.zero_after_overflow:
            ovf = np.zeros_like(ovf)  # a 0 of softplus, log_sigmoid, a loss: a flush (overflows give inf)
        status[ovf] = OVERFLOW
        cause[ovf] = ovf_code[ovf]
        unf = m & ~ovf & (tiny_exact | all_unf | (is_log & inf & (y < 0)) | (inf & (y > 0) & p_flush))
        status[unf] = UNDERFLOW
        cause[unf] = C_UNDERFLOW
        rest = m & ~ovf & ~unf
        status[rest] = np.where(ulp[rest] > tolerance, INACCURATE, OK)
    inacc = (status == INACCURATE) & (cause == 0)
    if inacc.any():
        guess = CODE[rec.inferred_cause]
        cause[inacc] = np.where(tiny_exact[inacc], C_UNDERFLOW, guess)
        if rec.log1p_keeps:
            zero_in = inacc & zero
            cause[zero_in] = CODE["absorption"]
    return status, cause


# ------------------------------------------------------------------ verdicts in words
def _row_events(events, kind):
    """(label, details at each flagged element) of one vector's tracer events of a kind."""
    out = []
    for label, k, mask, detail in events:
        if k != kind:
            continue
        m = np.asarray(mask)[0]
        if detail is None:
            out.append((label, None))
            continue
        cols = [np.broadcast_to(np.asarray(d)[0], m.shape)[m] for d in detail]
        out.append((label, cols))
    return out


def _first_loss(events, fmt) -> str:
    """Words for the first step of one vector's trace that lost a small quantity entirely: an
    absorbed addend (1 + 2.061e-09 rounds to 1) or an exp flushed to 0 -- what rounded an operand
    of a later subtraction onto the other; "" when the trace has neither."""
    for label, kind, mask, detail in events:
        m = np.asarray(mask)[0]
        if kind not in ("absorption", "flush") or detail is None or not m.any():
            continue
        cols = [np.broadcast_to(np.asarray(d)[0], m.shape)[m] for d in detail]
        if kind == "absorption":
            a, b, r = cols
            k = int(np.argmax(np.abs(b)))
            return f" after {_g(a[k])} + {_g(b[k], 4)} rounded to {_g(r[k])} ({label})"
        if label == "exp":
            return f" after exp({_g(float(np.max(cols[0])), 6)}) flushed to 0"
    return ""


def _other_sum(label: str) -> bool:
    """An overflow event's step is a named sum of terms other than exps (label smoothing's sum of
    log_softmax, a long vector's sum of x - max): its infinity is the sum's own, not an exp's."""
    return label not in ("sum", "mul", "div", "exp") and "exp" not in label


def _g(v: float, d: int = 7) -> str:
    return f"{v:.{d}g}"


def _underflowed(y, status) -> str:
    """What the underflowed outputs are, in words: 0, the log of 0 (an infinity), or both."""
    und = status == UNDERFLOW
    inf, zero = bool(np.any(np.isinf(y) & und)), bool(np.any((y == 0) & und))
    if inf and zero:
        return "0, or the log of 0, from a flush to zero"
    return "the log of a 0 from a flush to zero" if inf else "0 from a flush to zero"


#: What a step that flushed to 0 computed, by its label (the verdict's words)
_FLUSHED = {"div": "a quotient", "mul": "a product", "sum": "a sum", "sub": "a difference"}

#: How an invalid step's operands are written, by the step's label
_INVALID_OPS = {"mul": "{a} * {b}", "div": "{a}/{b}", "sum": "{a} + {b}", "sub": "{a} - {b}",
                "log": "log({a})", "log1p": "log1p({a})"}


def invalid_words(events, at=None) -> str:
    """Words for the first step of one vector's trace whose result is NaN from operands that are
    not (Tracer._finish records it): the operation and its operands, as the step computed them --
    "0 * -inf is NaN in (1 - z) log(1 - p)" -- or "" when the trace has none. ``at``: the output
    elements to explain (a step of the outputs' shape counts only at those)."""
    for label, kind, mask, detail in events:
        if kind != "invalid" or not detail:
            continue
        m = np.asarray(mask)[0]
        if at is not None and m.shape == np.shape(at):
            m = m & at
        if not m.any():
            continue
        op, _, what = label.partition("|")
        form = _INVALID_OPS.get(op)
        if form is None or ("{b}" in form and len(detail) < 2):
            continue
        ops = dict(zip("ab", (_g(float(np.broadcast_to(np.asarray(d)[0], m.shape)[m][0])) for d in detail)))
        return form.format(**ops) + " is NaN" + (f" in {what}" if what else "")
    return ""


def verdict(fmt, th: dict, function: str, impl_name: str, x, y, status, cause, ulp, flags, events,
            tolerance: float, inferred: bool, target=None, work=None, work_th=None) -> str:
    """One line, in words, of what happened to one vector and why (naming the step).

    ``work`` / ``work_th``: the format a built-in's steps computed in and its thresholds
    (``--compute float32`` for a half format: float32's); by default the format itself."""

    status, cause, ulp = np.atleast_1d(status), np.atleast_1d(cause), np.atleast_1d(ulp)
    y = np.atleast_1d(y)
    n_el = status.size
    counts = {s: int(np.sum(status == i)) for i, s in enumerate(STATUSES)}
    if counts["ok"] == n_el:
        fin = ulp[np.isfinite(ulp)]
        return f"ok: every output within {tolerance:g} ULP (max {fin.max() if fin.size else 0:.3g} ULP)"
    present = [CAUSES[c - 1] for c in sorted(set(int(c) for c in cause[status >= INACCURATE]) - {0})]
    out_fmt = fmt
    if work is not None and not inferred:
        fmt, th = work, work_th  # every step but a temperature's x / T and the output rounding
    ovf_x, unf_x = float(th["exp_overflow_x"]), float(th["exp_underflow_x"])
    xmax = float(np.max(x))
    words = []
    if inferred:
        words.append("inferred from inputs, outputs and exact values (a black box)")
    consequences = []
    if counts["nan"] and not inferred and "invalid" not in present:
        invalid = invalid_words(events, np.isnan(y))
        if invalid:  # the operation the trace saw turn NaN
            consequences.append(invalid)
        else:
            nan_causes = {CAUSES[int(c) - 1] for c in cause[np.isnan(y)] if c}
            if nan_causes & {"exp_overflow", "sum_overflow"}:
                consequences.append("inf/inf is NaN")
            if "underflow" in nan_causes:
                consequences.append("0/0 is NaN")
    if any((y == 0) & (status == OVERFLOW)):
        consequences.append("x/inf is 0")
    lz = _record(function).log_of_zero  # only an infinity of that sign can be the log of a 0
    ovf_labels = [lb for lb, _ in _row_events(events, "overflow")]
    own_inf = bool(ovf_labels) and all(_other_sum(lb) for lb in ovf_labels)  # that sum's inf, no log's
    if lz is not None and not own_inf and any((y == lz) & (status >= UNDERFLOW)):
        consequences.append("the log of 0 is -inf" if lz < 0 else "-log(0) is inf")
    for c in present:
        if c == "exp_overflow":
            args = [float(np.max(cols[0])) for lb, cols in _row_events(events, "overflow")
                    if lb == "exp" and cols and cols[0].size]
            arg = args[0] if args else xmax  # the traced exp's argument (exp(-x) in a sigmoid)
            words.append(f"exp({_g(arg, 6)}) overflows {fmt.name} (exp(x) is inf for x >= {ovf_x:.6g})")
        elif c == "sum_overflow":
            labels = [lb for lb, _ in _row_events(events, "overflow") if lb not in ("exp",)]
            if labels and labels[0] == "div" and all(lb != "exp" for lb, _ in _row_events(events, "flush")) \
                    and events and events[0][0] == "div":  # the first step: a temperature's x / T
                words.append(f"x / T overflows {out_fmt.name} (max {out_fmt.max:.6g}) before any exp")
            elif labels and _other_sum(labels[0]):  # a sum of other terms (label smoothing's -log p)
                words.append(f"{labels[0]} overflows {fmt.name} (max {fmt.max:.6g})")
            else:
                words.append(f"every exp(x) is finite but their sum overflows {fmt.name} (max {fmt.max:.6g})")
        elif c == "underflow":
            flushes = _row_events(events, "flush")
            tensors = [(lb, cols) for lb, cols in flushes if lb.startswith("output of ")]
            steps = [(lb, cols) for lb, cols in flushes if lb != "exp" and not lb.startswith("output")
                     and cols is not None and cols[0].size]
            if tensors and tensors[0][1] is not None and tensors[0][1][0].size:
                lb, cols = tensors[0]
                what = lb[len("output of "):]
                words.append(f"the {what} output {_g(float(np.max(cols[0])), 4)} flushes to 0 "
                             f"when rounded to {out_fmt.name} between the two functions (below half its "
                             f"smallest subnormal {out_fmt.smallest_subnormal:.3g})")
            elif any(lb == "exp" for lb, _ in flushes) or (not flushes and y.size and any(y == 0)):
                words.append(f"exp flushes to 0 in {fmt.name} (exp(x) is 0 for x <= {unf_x:.6g})")
            elif steps:  # another step flushed (a quotient or a product below the range): named
                lb, cols = steps[0]
                v = cols[0][np.argmax(np.abs(cols[0]))]
                value = f" ({_g(v, 4)})" if v != 0 else ""
                step = _FLUSHED.get(lb, f"a result of {lb}")
                words.append(f"{step}{value} flushes to 0 in {fmt.name} (below half its smallest "
                             f"subnormal {fmt.smallest_subnormal:.3g})")
            else:
                words.append(f"results below {fmt.tiny:.3g} are subnormal in {fmt.name} and lose digits")
        elif c == "absorption":
            ev = _row_events(events, "absorption")
            hint = " (log1p keeps it)" if _record(function).log1p_keeps else ""
            if ev and ev[0][1] is not None:
                label, (a, b, r) = max(ev, key=lambda e: np.max(np.abs(e[1][1])) if e[1] else 0)
                j = int(np.argmax(np.abs(b)))
                words.append(f"{_g(a[j])} + {_g(b[j], 4)} rounds to {_g(r[j])} in {fmt.name} "
                             f"({label}): the small term is absorbed{hint}")
            else:
                words.append(f"small terms are absorbed into a larger one in {fmt.name}{hint}")
        elif c == "cancellation":
            ev = _row_events(events, "cancellation")
            if ev and ev[0][1] is not None:
                label, (a, b, r) = ev[-1]
                j = int(np.argmin(np.abs(r)))
                names = label.split(" - ") if " - " in label else ["a", "b"]
                tgt = f"x[{int(target)}]" if target is not None else names[-1]
                nb = names[-1].replace("x[target]", tgt)
                if r[j] == 0:  # every digit cancelled: say what rounded the operand onto the other
                    why = _first_loss(events, fmt)
                    tail = ", and log(0) = -inf" if any(np.isinf(y)) else ""
                    words.append(f"{names[0]} - {nb} = {_g(a[j])} - {_g(-b[j])} = 0 in {fmt.name}{why}: "
                                 f"every digit cancels{tail}")
                else:
                    words.append(f"{names[0]} = {_g(a[j])} and {nb} = {_g(-b[j])} cancel (difference "
                                 f"{_g(r[j])}): only their rounding errors are left")
            else:
                words.append("a subtraction of nearly equal rounded values cancels")
        elif c == "clipping":
            ev = _row_events(events, "clipping")
            if ev and ev[0][1] is not None:
                a, r = ev[0][1]
                words.append(f"the probability {_g(a[0])} is clipped to {_g(r[0])} "
                             f"(clip(p, 1e-7, 1 - 1e-7) in {fmt.name})")
            else:
                words.append("the probability is clipped")
        elif c == "rounding":
            fin = ulp[np.isfinite(ulp)]
            top = fin.max() if fin.size else 0
            words.append(f"accumulated rounding (up to {top:.3g} ULP, n = {np.size(x)})")
        elif c == "nan_hidden":
            words.append("the exact value is NaN (a NaN input, or no value under the masked-rows policy) "
                         "but the output is a number: the NaN is hidden")
        elif c == "invalid":
            words.append(invalid_words(events, (cause == CODE["invalid"]) & (status >= INACCURATE))
                         or "an invalid operation (inf - inf, 0 * inf, 0/0 or inf/inf) gives NaN")
        elif c == "output_rounding":
            what = ("overflows" if any(np.isinf(y) & (status >= UNDERFLOW))
                    else "flushes to 0" if any((y == 0) & (status >= UNDERFLOW)) else "overflows or flushes")
            words.append(f"the result is finite and nonzero in {fmt.name} but {what} when rounded to "
                         f"{out_fmt.name} (the output rounding; max {out_fmt.max:.6g}, smallest subnormal "
                         f"{out_fmt.smallest_subnormal:.3g})")
    words += consequences
    parts = []
    for s in reversed(STATUSES[1:]):  # worst first
        if counts[s]:
            what = {"nan": "NaN", "overflow": "overflow (inf, or 0 from x/inf)",
                    "underflow": f"underflow ({_underflowed(y, status)})",
                    "inaccurate": f"above {tolerance:g} ULP", "undetermined": "with no settled reference"}[s]
            parts.append(f"{counts[s]} of {n_el} outputs {what}")
    finite = ulp[np.isfinite(ulp) & (status == OK)]
    tail = f" (max error of the rest {finite.max():.3g} ULP)" if finite.size and counts["ok"] else ""
    return "; ".join(words + parts) + tail
