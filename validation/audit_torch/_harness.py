"""Shared harness of the gqlib.torch gradient audit: one case's gradients from every mode,
against a reference (torchdiffeq's direct backprop at rtol = atol = 1e-10, float64, or central
differences), with the warnings each mode raised.

A case is a function returning a dict:
  func, y0 (tensor or tuple), t, params (tuple, the tensors to differentiate besides y0/t),
  loss(ys) -> scalar, kw (odeint keyword arguments for gqlib, e.g. method/options/rtol),
  ref_kw (torchdiffeq keyword arguments of the reference; default rtol=atol=1e-10, dopri5),
  ref: optional callable () -> list of reference gradients (e.g. central differences).
Inputs differentiated: y0 components that require grad, t if it requires grad, then params.
"""

from __future__ import annotations

import math
import warnings

import torch
import torchdiffeq

from gqlib.errors import GradientAccuracyWarning
from gqlib.torch import odeint, odeint_adjoint

MODES = [None, "checkpoint", "interpolated", "gq", "backsolve", "collocation", "auto",
         "odeint_adjoint"]


def inputs_of(case):
    y0 = case["y0"]
    ys = tuple(y0) if isinstance(y0, (tuple, list)) else (y0,)
    out = [y for y in ys if y.requires_grad]
    if case["t"].requires_grad:
        out.append(case["t"])
    return out + list(case["params"])


def _grad(ys_fn, case):
    ins = inputs_of(case)
    ys = ys_fn()
    loss = case["loss"](ys)
    gs = torch.autograd.grad(loss, ins, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(gs, ins, strict=False)]


def reference(case):
    if case.get("ref") is not None:
        return case["ref"]()
    kw = dict(rtol=1e-10, atol=1e-10, method="dopri5")
    kw.update(case.get("ref_kw", {}))
    return _grad(lambda: torchdiffeq.odeint(case["func"], case["y0"], case["t"], **kw), case)


def mode_grads(case, mode):
    kw = dict(case.get("kw", {}))
    if mode == "odeint_adjoint":
        call = lambda: odeint_adjoint(case["func"], case["y0"], case["t"], **kw)  # noqa: E731
    else:
        if mode is not None:
            kw.setdefault("adjoint_params", case.get("adjoint_params"))
            if kw["adjoint_params"] is None:
                del kw["adjoint_params"]
        else:
            kw.pop("adjoint_params", None)
        call = lambda: odeint(case["func"], case["y0"], case["t"], adjoint=mode, **kw)  # noqa: E731
    if mode == "odeint_adjoint" and case.get("adjoint_params") is not None:
        kw.setdefault("adjoint_params", case["adjoint_params"])
    return _grad(call, case)


def rel_errors(gs, ref):
    total = math.sqrt(sum(float(r.double().norm()) ** 2 for r in ref)) or 1.0
    out = []
    for g, r in zip(gs, ref, strict=False):
        den = max(float(r.double().norm()), 1e-3 * total, 1e-300)
        out.append(float((g.double() - r.double()).norm()) / den)
    return out


def run_case(name, make, modes=MODES, limit=None, verbose=True):
    """Run every mode; return rows (name, mode, max rel err, per-input errs, warnings, error)."""
    case = make()
    ref = reference(case)
    rtol = case.get("kw", {}).get("rtol", 1e-7)
    rtol = float(rtol.max()) if torch.is_tensor(rtol) else rtol  # per-element: the loosest
    limit = 100 * rtol if limit is None else limit
    rows = []
    for mode in modes:
        case = make()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            try:
                gs = mode_grads(case, mode)
                err = None
            except Exception as e:  # noqa: BLE001
                gs, err = None, f"{type(e).__name__}: {str(e)[:160]}"
        ws = sorted({x.category.__name__ for x in w
                     if issubclass(x.category, (GradientAccuracyWarning, UserWarning))})
        if gs is not None:
            errs = rel_errors(gs, ref)
            worst = max(errs)
        else:
            errs, worst = [], float("nan")
        silent_bad = gs is not None and worst > limit and "GradientAccuracyWarning" not in ws
        flag = "FINDING" if silent_bad else ("ok" if gs is not None else "raised")
        rows.append((name, str(mode), worst, errs, ws, err, flag))
        if verbose:
            print(f"{name:40s} {str(mode):15s} {worst:9.2e} {flag:8s} "
                  f"{','.join(ws) or '-'} {err or ''}", flush=True)
    return rows
