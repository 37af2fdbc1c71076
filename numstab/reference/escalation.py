"""The reference's tiers and their escalation, element by element.

The first fast tier computes every element of every row; an element whose bound does not
decide its rounding -- or whose figures the caller could not settle (:meth:`Escalation.bump`)
-- goes one tier up alone. Tiers (reference.tiers): float64, long double where wider, quad
where numpy-quaddtype is installed (float64 targets start there), then mpmath.

A formula module (numstab/reference/<family>.py) that has ``fast_rows`` and
``fast_elements`` shares its row quantities: they are computed once per tier for the rows
that need them (for the softmax family: the max, the sum of exps and its log1p) and each
open element is then computed from them alone. Other families recompute the rows at the next
tier with ``fast_block`` and keep only the open elements. At the last tier mpmath encloses
only the open elements (``enclose(..., wanted=...)``; its row sum is still over the whole
row, one exp per distinct value).

The interface on a batch (``args``: its extra arguments, functions.as_args):
:func:`compute_reference` (the reference of every needed function and its Escalation),
:func:`bump` and :func:`decide`.
"""

from __future__ import annotations

import inspect

import numpy as np

from .. import functions as _functions
from ..formats import Format
from ..results import RefData
from . import (
    BLOCK,
    _decided,
    _interval_point,
    enclose,
    escalate,
    families,
    fast_reference,
    masked_functions,
    mp_reference,
    row_args,
    start_prec,
    tiers,
)


def _empty_ref(shape) -> RefData:
    def nan():
        return np.full(shape, np.nan)

    return RefData(nan(), nan(), nan(), nan(), nan(), nan(), np.zeros(shape, dtype=bool),
                   np.ones(shape, dtype=bool))


class _Climb:
    """What both escalations share: raise every undecided element until a tier decides it."""

    def undecided(self) -> dict:
        return {f: ~r.decided for f, r in self.ref.items()}

    def decide(self) -> None:
        """Raise every undecided element until a tier decides it (or mpmath's limit)."""
        while self.bump(self.undecided()):
            pass


class Escalation(_Climb):
    """The reference of a batch x ((B, n) float64 values of the format), element by element.

    ``ref``: {function: RefData}; ``level``: {function: the tier of each element} (the
    last, ``mp``, is mpmath); :meth:`stats` counts them. ``mode="mpmath"`` sends every
    element straight to mpmath.
    """

    def __init__(self, fmt: Format, x, args, functions=None, mode: str = "auto"):
        self.fmt = fmt
        self.x = np.asarray(x, dtype=np.float64)
        self.args = _functions.as_args(args)
        B, n = self.x.shape
        self.fams = families(functions, self.args)
        have = set(self.args)
        names = [f for fam in self.fams for f in fam.FUNCTIONS
                 if _functions.get(f).takes is None or _functions.get(f).takes in have]
        self.functions = tuple(f for f in names if functions is None or f in functions)
        self.tiers = tiers(fmt) if mode != "mpmath" else ()
        self.mp = len(self.tiers)
        self.ref = {f: _empty_ref(_functions.get(f).output_shape((B, n))) for f in self.functions}
        self.level = {f: np.zeros(r.rounded.shape, dtype=np.int8) for f, r in self.ref.items()}
        self._rows: dict = {}  # (family, tier) -> (rows computed (B,) bool, {name: array over the batch})
        self.mp_rows = 0  # rows whose sum mpmath computed
        if self.mp == 0:
            self._all_mpmath()
        else:
            self._first()
        self.decide()

    #: a piece of a long vector: its context (:class:`PieceEscalation`)
    piece = None

    def _all_mpmath(self) -> None:
        """Every element by mpmath (no fast tier: ``mode="mpmath"``)."""
        self._mpmath({f: np.ones(lv.shape, dtype=bool) for f, lv in self.level.items()})

    def _first(self) -> None:
        """Every element at the first tier."""
        fmt, (B, n) = self.fmt, self.x.shape
        step = max(1, BLOCK // max(1, n))
        wt = self.tiers[0]
        for i in range(0, B, step):
            sel = slice(i, i + step)
            for fam in self.fams:
                xs, a = self.x[sel].astype(wt), _functions.take_args(self.args, sel)
                part = (fam.fast_block(fmt, xs, a, functions=self.functions)
                        if "functions" in inspect.signature(fam.fast_block).parameters
                        else fam.fast_block(fmt, xs, a))
                for f in self.functions:
                    if f in part:
                        self.ref[f].put(sel, part[f])

    def bump(self, masks: dict) -> bool:
        """Recompute the masked elements ({function: bool array shaped like its reference})
        one tier up; False when none could move (all at the last tier)."""
        moved = False
        start = {f: lv.copy() for f, lv in self.level.items()}  # one tier up each, not more
        for t in range(self.mp):
            sel = {f: np.asarray(m) & (start[f] == t) for f, m in masks.items() if f in self.ref}
            sel = {f: m for f, m in sel.items() if m.any()}
            if not sel:
                continue
            moved = True
            if t + 1 < self.mp:
                self._fast(t + 1, sel)
            else:
                self._mpmath(sel)
            for f, m in sel.items():
                self.level[f][m] = t + 1
        return moved

    def _row_mask(self, sel: dict, names) -> np.ndarray:
        need = np.zeros(self.x.shape[0], dtype=bool)
        for f in names:
            m = sel[f]
            need |= m if m.ndim == 1 else m.any(axis=-1)
        return need

    def _shared_rows(self, fam, t: int, need: np.ndarray) -> dict:
        """The family's row quantities at tier t over the batch, computed for the rows in need."""
        B = self.x.shape[0]
        key = (fam.__name__, t)
        have, rows = self._rows.get(key, (np.zeros(B, dtype=bool), None))
        todo = np.nonzero(need & ~have)[0]
        if todo.size:
            new = fam.fast_rows(self.fmt, self.x[todo], _functions.take_args(self.args, todo), self.tiers[t])
            if rows is None:
                rows = {k: np.zeros((B,) + v.shape[1:], dtype=v.dtype) for k, v in new.items()}
            for k, v in new.items():
                rows[k][todo] = v
            have = have.copy()
            have[todo] = True
            self._rows[key] = (have, rows)
        return rows

    def _fast(self, t: int, sel: dict) -> None:
        wt = self.tiers[t]
        for fam in self.fams:
            names = [f for f in sel if f in fam.FUNCTIONS]
            if not names:
                continue
            need = self._row_mask(sel, names)
            if hasattr(fam, "fast_rows") or self.piece is not None:  # (a piece: the vector's rows)
                rows = self._shared_rows(fam, t, need)
                for f in names:
                    m = sel[f]
                    if m.ndim == 2:
                        bi, ji = np.nonzero(m)
                        new = fam.fast_elements(self.fmt, rows, self.x, self.args, wt, f, bi, ji)
                        self.ref[f].put((bi, ji), new)
                    else:
                        bi = np.nonzero(m)[0]
                        self.ref[f].put(bi, fam.fast_elements(self.fmt, rows, self.x, self.args, wt, f, bi))
                continue
            # no shared row quantities: the rows again, keeping the open elements
            rows_idx = np.nonzero(need)[0]
            new = fam.fast_block(self.fmt, self.x[rows_idx].astype(wt),
                                 _functions.take_args(self.args, rows_idx))
            for f in names:
                m = sel[f][rows_idx]
                r = new[f].at(m)
                self.ref[f].put((rows_idx[np.nonzero(m)[0]],) + np.nonzero(m)[1:], r)

    def _mpmath(self, sel: dict) -> None:
        fmt = self.fmt
        start = start_prec(fmt)
        for b in np.nonzero(self._row_mask(sel, list(sel)))[0].tolist():
            wanted = {f: (np.nonzero(m[b])[0].tolist() if m.ndim == 2 else [0])
                      for f, m in sel.items() if m[b].any()}
            row, ra = self.x[b], row_args(self.args, b)
            fams = [fam for fam in self.fams if any(f in fam.FUNCTIONS for f in wanted)]

            whole = None if self.piece is None else self.piece.whole(self.args)

            def compute(prec, row=row, ra=ra, wanted=wanted, fams=fams, whole=whole):
                vals = enclose(row, ra, prec, fmt.p, fams, wanted=wanted, whole=whole)
                return [v for f in wanted for v in vals[f]]

            vals, settled = escalate(fmt, compute, start=start, done=lambda iv: _decided(fmt, iv))
            self.mp_rows += 1
            flat = [(f, j) for f, js in wanted.items() for j in js]
            points: dict = {}  # a row's repeated values (a mask's entries): each enclosure once
            for (f, j), iv, ok in zip(flat, vals, settled):
                idx = (b, j) if sel[f].ndim == 2 else b
                key = (tuple(iv), bool(ok))
                if key not in points:
                    points[key] = _interval_point(fmt, iv, ok)
                rounded, ulp, dlo, dhi, qlo, qhi, _ = points[key]
                r = self.ref[f]
                r.rounded[idx], r.ulp[idx], r.dlo[idx], r.dhi[idx] = rounded, ulp, dlo, dhi
                r.qlo[idx], r.qhi[idx] = qlo, qhi
                r.decided[idx], r.determined[idx] = True, bool(ok)

    def stats(self) -> dict:
        """{"elements": element count per tier (the last is mpmath), "mpmath_rows": rows whose
        sum mpmath computed, "tiers": the working types' names}."""
        counts = np.zeros(self.mp + 1, dtype=np.int64)
        for lv in self.level.values():
            counts += np.bincount(lv.ravel(), minlength=self.mp + 1)
        return {"elements": counts.tolist(), "mpmath_rows": self.mp_rows,
                "tiers": [str(t) for t in self.tiers] + ["mpmath"]}


class PieceEscalation(Escalation):
    """The reference of a piece of columns x (1, w) of one long vector (finite, or with the
    non-finite entries numstab.vector evaluates in pieces), element by element,
    as the elements of that vector: every tier's row quantities are the whole vector's
    (``piece.rows(tier)``: reference.softmax.piece_rows over all its pieces, computed once, and
    label smoothing's reference.smoothed.piece_rows), and mpmath encloses with ``piece.whole``
    (softmax.Whole: the vector's m, argmax, n, t and sum(x - m)). Only families with
    ``fast_elements`` (the softmax family, label smoothing) are evaluated so."""

    def __init__(self, fmt: Format, x, args, functions, mode: str, piece):
        self.piece = piece
        self._fixed: dict = {}  # function -> where a -inf entry (a mask) fixes the value
        super().__init__(fmt, x, args, functions, mode)

    def _first(self) -> None:
        """Every element at the first tier, but those the vector's non-finite entries fix
        (numstab.vector.Piece.limits: a masked entry's limit, a masked target's loss, NaN, ...),
        which are exact and never go up a tier."""
        self._fast(0, self._put_fixed())

    def _all_mpmath(self) -> None:
        """Every element by mpmath but those the limits fix (as :meth:`_first`)."""
        sel = self._put_fixed()
        if sel:
            self._mpmath(sel)

    def _put_fixed(self) -> dict:
        """The values the vector's non-finite entries fix, put in place; returns, per function, the
        elements left to compute."""
        from ..masks import exact_ref

        sel = {}
        for f, lv in self.level.items():
            vals, fixed = self.piece.limits(f, self.x[0], self.args)
            fixed = fixed.reshape(lv.shape)
            if fixed.any():
                self._fixed[f] = fixed
                idx = np.nonzero(fixed)
                self.ref[f].put(idx, exact_ref(self.fmt, vals.reshape(lv.shape)[idx]))
            if not fixed.all():
                sel[f] = ~fixed
        return sel

    def bump(self, masks: dict) -> bool:
        masks = {f: np.asarray(m) & ~self._fixed[f] if f in self._fixed else m for f, m in masks.items()}
        return super().bump(masks)

    def _shared_rows(self, fam, t: int, need: np.ndarray) -> dict:
        if not hasattr(fam, "fast_elements"):
            raise ValueError(f"{fam.__name__}: no row quantities of a piece of a vector")
        return {**self.piece.rows(t, self.args), "c0": self.piece.c0}


class RowEscalation(_Climb):
    """The reference of a batch holding -inf, +inf or NaN entries, row by row: every tier goes
    through the mask layer (numstab.masks: the limit values around the reference of the finite
    part, compacted), and a row with an open element goes up a tier whole. Same interface as
    :class:`Escalation`."""

    def __init__(self, fmt: Format, x, args, functions=None, mode: str = "auto", specials=None):
        self.fmt, self.x, self.args, self.specials = fmt, np.asarray(x, dtype=np.float64), args, specials
        self.functions = functions
        self.tiers = tiers(fmt) if mode != "mpmath" else ()
        self.mp = len(self.tiers)
        B = self.x.shape[0]
        self.tier = np.full(B, 0, dtype=np.int8)
        self.ref = self._at(0 if self.mp else -1, slice(None), functions)
        if not self.mp:
            self.tier[:] = 0
        self.level = {f: self._levels(r.rounded.shape) for f, r in self.ref.items()}
        self.mp_rows = B if not self.mp else 0
        self.decide()

    def _levels(self, shape):
        return np.broadcast_to(self.tier.reshape((-1,) + (1,) * (len(shape) - 1)), shape).copy()

    def _at(self, t: int, rows, functions):
        """The reference of some rows at tier t (-1 or self.mp: mpmath)."""
        from .. import masks

        whole_rows = ()
        if t < 0 or t >= self.mp:
            def compute(f, xs, a, fs):
                return mp_reference(f, xs, a, fs)
        else:
            def compute(f, xs, a, fs):
                return fast_reference(f, xs, a, tier=t, functions=fs)
            whole_rows = masked_functions()
        return masks.reference(compute, self.fmt, self.x[rows], _functions.take_args(self.args, rows),
                               self.specials, functions, whole_rows)

    def bump(self, masks: dict) -> bool:
        need = np.zeros(self.x.shape[0], dtype=bool)
        for m in masks.values():
            m = np.asarray(m)
            need |= m.reshape(m.shape[0], -1).any(axis=1) if m.ndim else bool(m)
        rows = np.nonzero(need & (self.tier < self.mp))[0]
        if not rows.size:
            return False
        for t in np.unique(self.tier[rows]):
            sel = rows[self.tier[rows] == t]
            new = self._at(int(t) + 1, sel, list(self.ref))
            for f in self.ref:
                self.ref[f].put(sel, new[f])
            self.tier[sel] = t + 1
            self.mp_rows += int(sel.size) if int(t) + 1 == self.mp else 0
        self.level = {f: self._levels(r.rounded.shape) for f, r in self.ref.items()}
        return True

    def stats(self) -> dict:
        counts = np.zeros(self.mp + 1, dtype=np.int64)
        for lv in self.level.values():
            counts += np.bincount(lv.ravel(), minlength=self.mp + 1)
        return {"elements": counts.tolist(), "mpmath_rows": self.mp_rows,
                "tiers": [str(t) for t in self.tiers] + ["mpmath"]}


def compute_reference(fmt: Format, x: np.ndarray, args, mode: str = "auto", functions=None, specials=None,
                      piece=None):
    """Reference for ``functions`` (names; default every one the extra arguments ``args``
    allow); returns (dict of RefData, its escalation: ``level`` per element, ``bump``,
    ``stats()``). A batch with -inf, +inf or NaN entries goes row by row through the mask layer
    (:class:`RowEscalation`; ``specials``, masks.Specials: how they are read); a finite one
    element by element (:class:`Escalation`); a piece of a long finite vector (``piece``: its
    context, numstab.vector.Piece) as the elements of that vector (:class:`PieceEscalation`)."""
    if piece is not None:
        esc = PieceEscalation(fmt, x, args, functions, mode, piece)
    elif not np.isfinite(np.asarray(x, dtype=np.float64)).all():
        esc = RowEscalation(fmt, x, args, functions, mode, specials)
    else:
        esc = Escalation(fmt, x, args, functions, mode)
    return esc.ref, esc


def bump(esc, masks: dict) -> bool:
    """Recompute the masked elements one tier up (see :meth:`Escalation.bump`)."""
    return esc.bump(masks)


def decide(esc) -> None:
    esc.decide()
