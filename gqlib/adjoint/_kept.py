"""The forward's stage linearisations, kept for the discrete adjoint within a memory budget.

:class:`CheckpointAdjoint` recomputes each forward step from its checkpoint before
back-propagating it: one extra forward pass. Where the activations that a field's backward pass
needs are small against its parameters (a wide network at a small batch), the forward can record
each stage call's graph instead, as direct backpropagation does, and the backward pass then
recomputes nothing. :class:`StageKeeper` is that forward field: it linearises every call, drops the
calls of rejected attempts at once, and keeps the stages of every accepted step while the kept
bytes fit its budget. The first step over the budget is dropped and the rest of the forward runs
without graphs: the steps before it stay kept and the backward pass recomputes the others, as
without a keeper, so it never holds more than the budget besides what the checkpoint adjoint
holds. A first call too big for ``min_steps`` steps stops the keeper before it holds anything.

The backward pass uses a kept step only if its stage times and its first stage's state equal the
checkpoint's (:meth:`StageKeeper.step`); any other step is recomputed. Its gradient is the
discrete adjoint of the forward's own stage evaluations, which the recomputation reproduces to
round-off.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from .._backend import namespace

__all__ = ["StageKeeper"]


class _Call(NamedTuple):
    """One forward call: ``lin`` its linearisation (``lin.value`` is ``f(t, y)``; None once
    dropped), ``nbytes`` what it holds, ``token`` what :attr:`StageKeeper.replay` captured
    before it (None: nothing)."""

    t: float
    y: Any
    lin: Any
    nbytes: int
    token: Any = None


class StageKeeper:
    """A forward field that records the accepted steps' stage linearisations (see module doc).

    Parameters
    ----------
    field : VectorField
        The forward field; it must have ``linearize(t, y)`` (an object with ``value``,
        ``vjp_y(a)`` and ``vjp(a, into)``), and may have ``linearize_measured(t, y)``, the same
        with the bytes the linearisation holds (default: the state's and the value's).
    tableau : ButcherTableau
        The forward method; the graphs of methods with stages beyond the step's own
        (dense-output extras, dop853's) are not kept, their replay tokens are: the extra stages
        that the forward's interpolation calls right after a step is accepted are that step's
        stages ``stages ..`` (at their times ``t0 + c h``).
    budget : int
        Bytes the kept stages may hold; 0 keeps nothing.
    min_steps : int
        The fewest steps the forward is expected to take (a step per output interval, say): a
        first call too big for ``min_steps`` steps of the method's calls within the budget
        stops the keeper at once, before the forward holds more graphs than it can keep.
    replay : object, optional
        For a field that draws random numbers (dropout): ``replay()`` is called before every
        forward call and returns a token (the generator's state), or None while the field
        needs none; ``replay.apply(token)`` restores it before the backward pass recomputes
        that call, so that the recomputed step is the forward's. ``replay.wanted`` False: the
        field needs no tokens. Tokens are kept for every accepted step, whatever the budget,
        and stay after the backward pass used them (a second backward pass through a graph
        retained by ``retain_graph=True`` replays the same draws, as
        ``torch.utils.checkpoint`` restores its saved state at every recompute); graphs are
        used once.

    Use it as the forward's ``f`` and ``observer``:
    ``gqlib.solve(keeper, y0, t, checkpoints=True, observer=keeper.observe)``, then
    ``gradient(field, sol, grad_y, adjoint="checkpoint", kept=keeper)``.
    """

    def __init__(self, field: Any, tableau: Any, budget: int, min_steps: int = 1,
                 replay: Any = None):
        self.field = field
        self.replay = replay
        self.stages = int(tableau.stages)
        # dense-output extra stages (dop853's): tracked for their replay tokens
        self._extra_c = [float(c) for c in tableau.C[self.stages:tableau.A.shape[0]]]
        self.fsal = bool(tableau.fsal)
        self._calls_per_step = self.stages - self.fsal  # FSAL: the first stage is the last's
        # stages at the step's ends, where a tstop's one-sided times lie an ulp or two apart:
        # their times must match exactly
        self._exact = [j == 0 or float(c) == 1.0 for j, c in enumerate(tableau.C[:self.stages])]
        self.budget = int(budget)
        self.min_steps = max(int(min_steps), 1)
        self.active = (self.budget > 0 and tableau.A.shape[0] == tableau.stages
                       and callable(getattr(field, "linearize", None)))
        self.full = not self.active  # over budget (or never active): plain calls from now on
        self._measured = getattr(field, "linearize_measured", None)
        self.nbytes = 0  # bytes of the calls held now (kept steps, the current attempt)
        self.peak_bytes = 0
        self._steps: dict[int, list] = {}
        # the state: calls since the last accepted step, before the next attempt (`_pre`: the
        # step's f0 among them unless FSAL gives it); the current attempt's stages 1.. (None
        # between attempts); each accepted step's [f0, *attempt] in `_steps`
        self._pre: list = []
        self._attempt: list | None = None
        self._f0 = None  # the current step's first stage
        self._fsal_last = None  # the last accepted step's last stage
        self._new_step = True  # the next attempt starts a step (not a retry)
        self._n_accepted = 0
        self._pruned = False  # steps without graphs dropped once tracking ended
        # the last accepted step's (t0, h) and its extra stages' calls so far, while the calls
        # after its acceptance may be its extra stages (None: they are not)
        self._extra: tuple | None = None

    # -- the forward --------------------------------------------------------------------------
    @property
    def tracking(self) -> bool:
        """Whether forward calls are still mapped to steps (graphs or replay tokens kept)."""
        return not self.full or (self.replay is not None and getattr(self.replay, "wanted", True))

    def __call__(self, t: float, y):
        if not self.tracking:
            return self.field(t, y)
        token = None if self.replay is None else self.replay()
        if self.full:
            value = self.field(t, y)
            self._record(_Call(t, y, None, 0, token))
            return value
        if self._measured is not None:
            lin, nbytes = self._measured(t, y)
        else:
            lin = self.field.linearize(t, y)
            nbytes = int(getattr(y, "nbytes", 0)) + int(getattr(lin.value, "nbytes", 0))
        rec = _Call(t, y, lin, int(nbytes), token)
        if self._n_accepted == 0 and not self._pre and \
                rec.nbytes * self._calls_per_step * self.min_steps > self.budget:
            self.stop()
            self._record(rec._replace(lin=None, nbytes=0))
            return lin.value
        self.nbytes += rec.nbytes
        self._record(rec)
        self.peak_bytes = max(self.peak_bytes, self.nbytes)
        return lin.value

    def _record(self, rec: _Call) -> None:
        if self._attempt is None and self._extra is not None and self._is_extra(rec):
            return
        (self._pre if self._attempt is None else self._attempt).append(rec)

    def _is_extra(self, rec: _Call) -> bool:
        """Whether ``rec`` is the next dense-output extra stage of the last accepted step (its
        time ``t0 + c h`` to 8 ulps: the interpolant's ``t0 + c (t1 - t0)``); when all are in,
        they become the step's stages ``stages ..``. The forward calls them in order right after
        the step is accepted, or not at all: any other call ends the search."""
        t0, h, calls = self._extra
        tol = 8 * math.ulp(max(abs(t0), abs(t0 + h)))
        if abs(rec.t - (t0 + self._extra_c[len(calls)] * h)) > tol:
            self._extra = None
            return False
        calls.append(rec._replace(lin=None, nbytes=0))  # no graph kept for an extra stage
        if len(calls) == len(self._extra_c):
            self._steps[self._n_accepted - 1].extend(calls)
            self._extra = None
        return True

    def observe(self, event: str, t0: float, y0, h: float) -> None:
        """The forward stepper's observer: ``"step"``, then ``"accept"`` or ``"reject"``."""
        if not self.tracking:
            if not self._pruned:  # no tokens wanted after all: only the steps with graphs stay
                self._pruned = True
                self._steps = {k: st for k, st in self._steps.items()
                               if all(r is not None and r.lin is not None for r in st)}
                self._pre, self._attempt, self._f0, self._fsal_last = [], None, None, None
            return
        self._extra = None
        if event == "step":
            if self._new_step:
                # f(t0, y0) called anew (the first step, after a tstop, without FSAL) is the last
                # call since the last step at the step's own state y0: the initial-step probe
                # follows it (at another state), a Hermite f(t1, y1) of the last step may
                # precede it (one-sided from before a tstop, where f0 is from after it);
                # none: FSAL's last stage (take() checks its time and state)
                # (dense-output extra stages of the last step, dop853's, were taken by
                # _is_extra; untracked ones, after another call, may precede it too)
                at_y0 = [rec for rec in self._pre if rec.y is y0]
                self._f0 = at_y0[-1] if at_y0 else self._fsal_last
                self._release([rec for rec in self._pre if rec is not self._f0])
                self._pre, self._new_step = [], False
            self._attempt = []
        elif event == "reject":
            self._release(self._attempt or [])
            self._attempt = None
        elif event == "accept":
            stages = self._slim([self._f0, *(self._attempt or [])])
            self._attempt, self._new_step = None, True
            self._steps[self._n_accepted] = stages
            self._n_accepted += 1
            self._fsal_last = stages[-1] if self.fsal else None
            if self._extra_c and self.replay is not None:
                self._extra = (t0, h, [])
            if not self.full and self.nbytes > self.budget:
                self.stop(keep=self._n_accepted - 1)  # the steps before this one stay kept

    def _slim(self, stages: list) -> list:
        """An accepted step's calls without the states that only their graphs need: a call
        without a graph (replay token only) keeps its state where :meth:`take` checks it, the
        first stage, and at the last stage of an FSAL method (the next step's first), so that
        tokens alone cost no more than the checkpoints."""
        last = len(stages) - 1 if self.fsal else 0
        return [r if r is None or r.lin is not None or j in (0, last) else r._replace(y=None)
                for j, r in enumerate(stages)]

    def _release(self, calls) -> None:
        for rec in calls:
            if rec is not None:
                self.nbytes -= rec.nbytes

    def stop(self, keep: int = 0) -> None:
        """Free the kept graphs of every step from ``keep`` on (all by default) and of the calls
        since; the rest of the forward keeps none (replay tokens stay)."""
        self.full = True

        def bare(rec):
            return None if rec is None else rec._replace(lin=None, nbytes=0)
        self._steps = {k: st if k < keep else self._slim([bare(r) for r in st])
                       for k, st in self._steps.items()}
        held = {id(r): r.nbytes for st in self._steps.values() for r in st if r is not None}
        self.nbytes = sum(held.values())  # an FSAL stage is two steps' call: counted once
        self._pre = [bare(r) for r in self._pre]
        self._attempt = None if self._attempt is None else [bare(r) for r in self._attempt]
        self._f0, self._fsal_last = bare(self._f0), bare(self._fsal_last)

    # -- the backward -------------------------------------------------------------------------
    @property
    def n_kept(self) -> int:
        """Steps whose graphs are kept (the first ones, up to the budget)."""
        return sum(1 for st in self._steps.values()
                   if all(r is not None and r.lin is not None for r in st))

    @property
    def n_tracked(self) -> int:
        """Steps whose calls are held (graphs or replay tokens)."""
        return len(self._steps)

    def step(self, k: int, times: list[float], y0) -> list | None:
        """Step ``k``'s stages ``[(t, Y, lin)]``, or None unless all were kept; see
        :meth:`take`."""
        stages = self.take(k, times, y0)
        if stages is None or any(r.lin is None for r in stages):
            return None
        return [(r.t, r.y, r.lin) for r in stages]

    def tokens(self, k: int, times: list[float], y0) -> list | None:
        """Step ``k``'s replay tokens, stage by stage, or None unless every stage has one; see
        :meth:`take`."""
        stages = self.take(k, times, y0)
        if stages is None or any(r.token is None for r in stages):
            return None
        return [r.token for r in stages]

    def take(self, k: int, times: list[float], y0) -> list | None:
        """Step ``k``'s calls, or None unless all its stages were tracked, at the times
        ``times`` (exactly at the step's ends; inside it to 8 ulps: the stepper's ``t0 + c h``
        and the checkpoints' ``t0 + c (t1 - t0)`` may round apart; the extra stages' times
        follow the step's own, where the forward called them) and with the first stage at the
        state ``y0`` (exactly). Their graphs are handed over once (the keeper drops them); the
        replay tokens stay for another backward pass."""
        stages = self._steps.get(k)
        if stages is None or len(stages) < self.stages or any(s is None for s in stages):
            return None
        # what stays: the times, the first stage's state (take's check) and the tokens; once
        # the check passed, that state is the caller's ``y0`` (the checkpoint, held anyway)
        first = y0 if self._matches(stages, times, y0) else None
        self._steps[k] = [s._replace(lin=None, nbytes=0,
                                     y=(s.y if first is None else first) if j == 0 else None)
                          for j, s in enumerate(stages)]
        return None if first is None else stages[:len(times)]

    def _matches(self, stages: list, times: list[float], y0) -> bool:
        """Whether ``stages`` were called at ``times`` and from ``y0`` (see :meth:`take`)."""
        stages = stages[:len(times)]  # the extra stages where the caller asks for them
        exact = self._exact + [False] * (len(stages) - self.stages)
        tol = 8 * math.ulp(max(abs(t) for t in times))
        if any(abs(s.t - t) > (0.0 if ex else tol)
               for s, t, ex in zip(stages, times[:len(stages)], exact, strict=True)):
            return False
        y = stages[0].y
        xp = namespace(y0)
        return tuple(y.shape) == tuple(y0.shape) and bool(xp.all(y == y0))
