"""Replay issue 14's repro probes family by family and count clean and bad outcomes.

Each probe is a deterministic call from the issue's ten families (its repro calls and close
variants). Its outcome is *clean* when it is the right value, a gqlib error (``GQLibError``), a
``ValueError``/``TypeError`` naming the argument (a backtick-quoted name in the message), or the
user's own exception where the probe raises one; *bad* when it is a wrong value, a NaN, a hang
(more than 10 s: the probes run in a worker process that is killed and restarted), or any other
exception. Run it on any checkout (the tree on ``PYTHONPATH``); the tables before and after
issue 14 in ``docs/failures.md`` come from this script on commit e8901af and on the fix.

Run: ``PYTHONPATH=. .venv/bin/python validation/fuzz_families.py [--json out.json]``.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

TIMEOUT = 10.0

PRELUDE = r'''
import math, warnings
import numpy as np, numba, torch
import gqlib
from gqlib.errors import GQLibError
from gqlib.adjoint import gradient, FunctionField
from gqlib.torch import odeint
from gqlib import sde
warnings.simplefilter("ignore")
E1 = math.exp(-1.0)
@numba.njit
def decay_nb(t, y):
    return -y
@numba.njit
def nan_nb(t, y):
    return y * np.nan
@numba.njit
def grows_late_nb(t, y):
    if t > 0.3:
        return np.zeros(y.shape[0] + 1)
    return -y
@numba.njit
def raises_late_nb(t, y):
    if t > 0.3:
        raise ZeroDivisionError("my own error")
    return -y
def decay(t, y):
    return -y
def T(*v):
    return torch.tensor(v, dtype=torch.float64)
def field(vjp_y=None, vjp_params=None):
    return FunctionField(lambda t, y: -0.5 * y, vjp_y or (lambda t, y, a: -0.5 * a),
                         vjp_params or (lambda t, y, a: np.array([-np.sum(a * y)])))
def late(good, bad, at=0.3):
    calls = []
    def g(*args):
        calls.append(1)
        return good(*args) if len(calls) < 3 else bad(*args)
    return g
def path1():
    return sde.BrownianPath(0.0, 1.0, shape=(1,), seed=0)
gqlib.solve(decay_nb, np.ones(1), [0.0, 1.0])  # compile the numba driver before any timing
'''

# (family, name, code setting `result`, kind, expected)
# kinds: value (float, relative 1e-5), error (must raise), finite (finite array or error),
#        true (a check that must hold), own (the user's own exception must arrive),
#        nonfinite (a NaN: NonFiniteState or an input error; a spin to TooManySteps is bad)
F1, F2, F3, F4, F5 = ("1 large t", "2 NaN detection", "3 Wong-Zakai span", "4 aliasing",
                      "5 sdeint NaN / cap")
F6, F7, F8, F9, F10 = ("6 per-call shapes", "7 numba > 2**63 steps", "8 NaN param gradient",
                       "9 deep errors", "10 bad input")
PROBES = [
    (F1, "1e12 dopri5", "result = gqlib.solve(decay, np.ones(1), [1e12, 1e12 + 1], method='dopri5').y[-1, 0]", "value", "E1"),
    (F1, "1e12 bosh3", "result = gqlib.solve(decay, np.ones(1), [1e12, 1e12 + 1], method='bosh3').y[-1, 0]", "value", "E1"),
    (F1, "1e12 dopri5 numba", "result = gqlib.solve(decay_nb, np.ones(1), [1e12, 1e12 + 1], method='dopri5').y[-1, 0]", "value", "E1"),
    (F1, "1e12 bosh3 numba", "result = gqlib.solve(decay_nb, np.ones(1), [1e12, 1e12 + 1], method='bosh3').y[-1, 0]", "value", "E1"),
    (F1, "2e15 dopri5", "result = gqlib.solve(decay, np.ones(1), [2e15, 2e15 + 1], method='dopri5').y[-1, 0]", "value", "E1"),
    (F1, "2e15 dopri5 numba", "result = gqlib.solve(decay_nb, np.ones(1), [2e15, 2e15 + 1], method='dopri5').y[-1, 0]", "value", "E1"),
    (F1, "3e15 bosh3", "result = gqlib.solve(decay, np.ones(1), [3e15, 3e15 + 1], method='bosh3').y[-1, 0]", "value", "E1"),
    (F1, "3e15 bosh3 numba", "result = gqlib.solve(decay_nb, np.ones(1), [3e15, 3e15 + 1], method='bosh3').y[-1, 0]", "value", "E1"),
    (F1, "1e12 dopri5 torch", "result = odeint(lambda t, y: -y, T(1.0), T(1e12, 1e12 + 1))[-1, 0].item()", "value", "E1"),
    (F1, "2e15 dopri5 torch", "result = odeint(lambda t, y: -y, T(1.0), T(2e15, 2e15 + 1))[-1, 0].item()", "value", "E1"),
    (F1, "3e15 bosh3 torch", "result = odeint(lambda t, y: -y, T(1.0), T(3e15, 3e15 + 1), method='bosh3')[-1, 0].item()", "value", "E1"),
    (F1, "1e12 rk4 step 0.1", "result = gqlib.solve(decay, np.ones(1), [1e12, 1e12 + 1], method='rk4', step_size=0.1).y[-1, 0]", "value", "E1"),
    (F1, "1e12 backwards", "result = gqlib.solve(decay, np.ones(1), [1e12 + 1, 1e12], method='dopri5').y[-1, 0]", "value", "math.e"),
    (F2, "NaN field", "result = gqlib.solve(lambda t, y: y * np.nan, np.ones(1), [0.0, 1.0]).y", "nonfinite", None),
    (F2, "NaN field numba", "result = gqlib.solve(nan_nb, np.ones(1), [0.0, 1.0]).y", "nonfinite", None),
    (F2, "NaN y0", "result = gqlib.solve(decay, np.array([np.nan]), [0.0, 1.0]).y", "nonfinite", None),
    (F2, "NaN late", "result = gqlib.solve(lambda t, y: -y if t < 0.5 else y * np.nan, np.ones(1), [0.0, 1.0]).y", "nonfinite", None),
    (F2, "overflow to inf", "result = gqlib.solve(lambda t, y: y * y, np.array([1e200]), [0.0, 1.0]).y", "finite", None),
    (F2, "torch NaN weight", "lin = torch.nn.Linear(2, 2).double()\nwith torch.no_grad(): lin.weight[0, 0] = float('nan')\nresult = odeint(lambda t, y: lin(y), torch.ones(2, dtype=torch.float64), T(0.0, 1.0))", "nonfinite", None),
    (F2, "torch NaN weight gq", "lin = torch.nn.Linear(2, 2).double()\nwith torch.no_grad(): lin.weight[0, 0] = float('nan')\nresult = odeint(lambda t, y: lin(y), torch.ones(2, dtype=torch.float64), T(0.0, 1.0), adjoint='gq', adjoint_params=tuple(lin.parameters()))", "nonfinite", None),
    (F2, "torch float16 y0", "result = odeint(lambda t, y: -y, torch.ones(2, dtype=torch.float16), T(0.0, 1.0))", "error", None),
    (F2, "torch empty y0", "result = odeint(lambda t, y: -y, torch.ones(0, dtype=torch.float64), T(0.0, 1.0))", "error", None),
    (F2, "torch NaN upstream gradient", "lin = torch.nn.Linear(2, 2).double()\ny = odeint(lambda t, y: torch.tanh(lin(y)), torch.ones(2, dtype=torch.float64), T(0.0, 0.5, 1.0), adjoint='gq', adjoint_params=tuple(lin.parameters()))\n(y[-1] * float('nan')).sum().backward()\nresult = lin.weight.grad", "finite", None),
    (F3, "solve past the noise's end", "noise = sde.PiecewiseLinearNoise(path1(), 0.1)\nf = sde.wong_zakai(lambda t, y: -y, lambda t, y: 0.5 * y, noise)\nresult = gqlib.solve(f, np.ones(1), [0.0, 2.0]).y", "error", None),
    (F3, "piecewise dW(nan)", "result = sde.PiecewiseLinearNoise(path1(), 0.1).dW(float('nan'))", "error", None),
    (F3, "piecewise dW(5)", "result = sde.PiecewiseLinearNoise(path1(), 0.1).dW(5.0)", "error", None),
    (F3, "piecewise dW(-1)", "result = sde.PiecewiseLinearNoise(path1(), 0.1).dW(-1.0)", "error", None),
    (F3, "KL dW(2)", "result = sde.KarhunenLoeveNoise(0.0, 1.0, np.ones((10, 1))).dW(2.0)", "error", None),
    (F3, "KL dW(nan)", "result = sde.KarhunenLoeveNoise(0.0, 1.0, np.ones((10, 1))).dW(float('nan'))", "error", None),
    (F3, "KL solve past the end", "noise = sde.KarhunenLoeveNoise(0.0, 1.0, np.ones((10, 1)))\nf = sde.wong_zakai(lambda t, y: -y, lambda t, y: 0.5 * y, noise)\nresult = gqlib.solve(f, np.ones(1), [0.0, 3.0]).y", "error", None),
    (F4, "sol.t is a copy", "t = np.array([0.0, 1.0])\nsol = gqlib.solve(decay, np.ones(1), t)\nt[1] = 5.0\nresult = sol.t[1] == 1.0", "true", None),
    (F4, "dW array not a buffer", "noise = sde.PiecewiseLinearNoise(path1(), 0.1)\ntq = np.array([0.05, 0.15])\nd = noise.dW(tq)\nd[...] = 99.0\nresult = not np.any(noise.dW(tq) == 99.0)", "true", None),
    (F4, "dW scalar not a buffer", "noise = sde.PiecewiseLinearNoise(path1(), 0.1)\nd = noise.dW(0.05)\nd[...] = 99.0\nresult = not np.any(noise.dW(0.05) == 99.0)", "true", None),
    (F4, "single-time gradient y0", "fl = field()\nsol = gqlib.solve(fl, np.ones(2), [0.0])\ng = np.ones((1, 2))\nout = gradient(fl, sol, g)\ng[0, 0] = 7.0\nresult = out.y0[0] == 1.0", "true", None),
    (F4, "sol.y not y0", "y0 = np.ones(1)\nsol = gqlib.solve(decay, y0, [0.0, 1.0])\ny0[0] = 5.0\nresult = sol.y[0, 0] == 1.0", "true", None),
    (F4, "grad_y kept", "fl = field()\nsol = gqlib.solve(fl, np.ones(2), [0.0, 1.0], dense_output=True)\ng = np.ones((2, 2))\nout = gradient(fl, sol, g, adjoint='gq')\nv = out.y0.copy()\ng[...] = 7.0\nresult = bool(np.all(out.y0 == v))", "true", None),
    (F5, "explosive midpoint", "result = sde.sdeint(lambda t, y: 10 * y ** 3, lambda t, y: 0.5 * np.ones_like(y), np.ones(1), [0.0, 1.0], path1(), method='midpoint', dt=0.01)", "finite", None),
    (F5, "NaN drift", "result = sde.sdeint(lambda t, y: y * np.nan, lambda t, y: 0.5 * y, np.ones(1), [0.0, 1.0], path1(), method='euler_heun', dt=0.01)", "nonfinite", None),
    (F5, "NaN y0", "result = sde.sdeint(lambda t, y: -y, lambda t, y: 0.5 * y, np.array([np.nan]), [0.0, 1.0], path1(), method='euler_heun', dt=0.01)", "nonfinite", None),
    (F5, "NaN diffusion ito", "result = sde.sdeint(lambda t, y: -y, lambda t, y: y * np.nan, np.ones(1), [0.0, 1.0], path1(), method='euler_maruyama', sde_type='ito', dt=0.01)", "nonfinite", None),
    (F5, "dt = 1e-8", "result = sde.sdeint(lambda t, y: -y, lambda t, y: 0.5 * y, np.ones(1), [0.0, 1.0], path1(), method='euler_heun', dt=1e-8)", "finite", None),
    (F5, "explosive reversible_heun", "result = sde.sdeint(lambda t, y: 10 * y ** 3, lambda t, y: 0.5 * np.ones_like(y), np.ones(1), [0.0, 1.0], path1(), method='reversible_heun', dt=0.01)", "finite", None),
    (F6, "solve f shape later", "result = gqlib.solve(lambda t, y: -y if t < 0.3 else -y[:1], np.ones(2), [0.0, 1.0]).y", "error", None),
    (F6, "solve f (2,1) later", "result = gqlib.solve(lambda t, y: -y if t < 0.3 else -y[:, None], np.ones(2), [0.0, 1.0]).y", "error", None),
    (F6, "numba f length later", "result = gqlib.solve(grows_late_nb, np.ones(2), [0.0, 1.0]).y", "error", None),
    (F6, "torch direct shape later", "result = odeint(lambda t, y: -y if t < 0.3 else -y[:1], torch.ones(2, dtype=torch.float64), T(0.0, 1.0))", "error", None),
    (F6, "sdeint diffusion shape later", "result = sde.sdeint(lambda t, y: -y, late(lambda t, y: 0.5 * y, lambda t, y: 0.5 * y[:1]), np.ones(2), [0.0, 1.0], sde.BrownianPath(0.0, 1.0, shape=(2,), seed=0), method='euler_heun', dt=0.01)", "error", None),
    (F6, "vjp_y shape interpolated", "fl = field(vjp_y=late(lambda t, y, a: -0.5 * a, lambda t, y, a: -0.5 * a[:1]))\nsol = gqlib.solve(fl, np.ones(2), [0.0, 1.0], dense_output=True)\nresult = gradient(fl, sol, np.ones((2, 2)), adjoint='interpolated').y0", "error", None),
    (F6, "vjp_y shape collocation", "fl = field(vjp_y=late(lambda t, y, a: -0.5 * a, lambda t, y, a: -0.5 * a[:1]))\nsol = gqlib.solve(fl, np.ones(2), [0.0, 1.0], dense_output=True)\nresult = gradient(fl, sol, np.ones((2, 2)), adjoint='collocation').y0", "error", None),
    (F7, "numba rk4 step 1e-300", "result = gqlib.solve(decay_nb, np.ones(1), [0.0, 1.0], method='rk4', step_size=1e-300).y[-1, 0]", "value", "E1"),
    (F7, "numba euler step 5e-324", "result = gqlib.solve(decay_nb, np.ones(1), [0.0, 1.0], method='euler', step_size=5e-324).y[-1, 0]", "value", "E1"),
    (F7, "numba rk4 step 2**-64", "result = gqlib.solve(decay_nb, np.ones(1), [0.0, 1.0], method='rk4', step_size=2.0 ** -64).y[-1, 0]", "value", "E1"),
    (F7, "python rk4 step 1e-300", "result = gqlib.solve(decay, np.ones(1), [0.0, 1.0], method='rk4', step_size=1e-300).y[-1, 0]", "value", "E1"),
    (F7, "numba rk4 step 1e-19", "result = gqlib.solve(decay_nb, np.ones(1), [0.0, 1.0], method='rk4', step_size=1e-19).y[-1, 0]", "value", "E1"),
] + [
    (F8, f"NaN vjp_params {a}", f"fl = field(vjp_params=lambda t, y, a: np.array([np.nan]))\nsol = gqlib.solve(fl, np.ones(2), [0.0, 1.0], dense_output=True)\nresult = gradient(fl, sol, np.ones((2, 2)), adjoint='{a}').params", "nonfinite", None)
    for a in ("gq", "interpolated", "collocation", "backsolve", "checkpoint")
] + [
    (F9, "initial step overflow", "result = gqlib.solve(lambda t, y: -1e160 * y, np.ones(1), [0.0, 1.0]).y[-1, 0]", "value", "0.0"),
    (F9, "step_size 5e-324", "result = gqlib.solve(decay, np.ones(1), [0.0, 1.0], method='rk4', step_size=5e-324).y[-1, 0]", "value", "E1"),
    (F9, "numba per-element rtol", "result = gqlib.solve(decay_nb, np.ones(2), [0.0, 1.0], rtol=np.array([1e-6, 1e-8])).y[-1, 0]", "value", "E1"),
    (F9, "jitted f's own exception", "result = gqlib.solve(raises_late_nb, np.ones(1), [0.0, 1.0]).y", "own", None),
    (F9, "Python f's own exception", "def f(t, y):\n    if t > 0.3: raise ZeroDivisionError('my own error')\n    return -y\nresult = gqlib.solve(f, np.ones(1), [0.0, 1.0]).y", "own", None),
    (F9, "gauss_legendre(10**12)", "result = gqlib.gauss_legendre(10 ** 12)", "error", None),
    (F9, "gradient controller='x'", "fl = field()\nsol = gqlib.solve(fl, np.ones(2), [0.0, 1.0], dense_output=True)\nresult = gradient(fl, sol, np.ones((2, 2)), adjoint='gq', controller='x')", "error", None),
    (F9, "NaN adjoint message", "fl = field(vjp_y=lambda t, y, a: a * np.nan)\nsol = gqlib.solve(fl, np.ones(2), [0.0, 1.0], dense_output=True)\nresult = gradient(fl, sol, np.ones((2, 2)), adjoint='gq').y0", "nonfinite", None),
    (F10, "complex t", "result = gqlib.solve(decay, np.ones(1), np.array([0.0, 1.0j])).y", "error", None),
    (F10, "bool t", "result = gqlib.solve(decay, np.ones(1), np.array([False, True])).y", "error", None),
    (F10, "string t", "result = gqlib.solve(decay, np.ones(1), ['0', '1']).y", "error", None),
    (F10, "complex grad_y", "fl = field()\nsol = gqlib.solve(fl, np.ones(2), [0.0, 1.0], dense_output=True)\nresult = gradient(fl, sol, np.ones((2, 2)) * 1j, adjoint='gq').y0", "error", None),
    (F10, "float16 y0", "result = gqlib.solve(decay, np.ones(1, dtype=np.float16), [0.0, 1.0]).y", "error", None),
    (F10, "gradient min_step=-1", "fl = field()\nsol = gqlib.solve(fl, np.ones(2), [0.0, 1.0], dense_output=True)\nresult = gradient(fl, sol, np.ones((2, 2)), adjoint='gq', min_step=-1).y0", "error", None),
    (F10, "gradient max_step=0", "fl = field()\nsol = gqlib.solve(fl, np.ones(2), [0.0, 1.0], dense_output=True)\nresult = gradient(fl, sol, np.ones((2, 2)), adjoint='gq', max_step=0).y0", "error", None),
    (F10, "Stepper NaN t0", "st = gqlib.Stepper(decay, float('nan'), np.ones(1), 1.0, gqlib.METHODS['dopri5'])\nresult = st.step().y1", "error", None),
    (F10, "Stepper inf t_end", "st = gqlib.Stepper(decay, 0.0, np.ones(1), float('inf'), gqlib.METHODS['dopri5'])\nresult = st.step().y1", "error", None),
    (F10, "Stepper negative rtol", "st = gqlib.Stepper(decay, 0.0, np.ones(1), 1.0, gqlib.METHODS['dopri5'], rtol=-1.0)\nresult = st.step().y1", "error", None),
    (F10, "Stepper int y0", "st = gqlib.Stepper(decay, 0.0, np.ones(1, dtype=np.int64), 1.0, gqlib.METHODS['dopri5'])\nresult = st.step().y1", "error", None),
    (F10, "Stepper step(nan)", "st = gqlib.Stepper(decay, 0.0, np.ones(1), 1.0, gqlib.METHODS['dopri5'])\nresult = st.step(float('nan')).y1", "error", None),
    (F10, "Stepper wrong-shape reset", "st = gqlib.Stepper(decay, 0.0, np.ones(1), 1.0, gqlib.METHODS['dopri5'])\nst.step(0.5)\nst.reset(np.ones(3))\nresult = st.step().y1", "error", None),
    (F10, "observed_order equal h", "result = gqlib.convergence.observed_order([0.1, 0.1], [1e-3, 1e-3])", "error", None),
    (F10, "refinement_study empty", "result = gqlib.convergence.refinement_study(lambda h: h ** 2, []).order", "error", None),
]


def _worker(ids):
    ns: dict = {}
    exec(PRELUDE, ns)
    from gqlib.errors import GQLibError
    print("ready", flush=True)
    for i in ids:
        family, name, code, kind, expected = PROBES[i]
        print(f"start {i}", flush=True)
        local = dict(ns)
        try:
            exec(code, local)
            res = local.get("result")
            out = _classify_value(res, kind, expected, ns)
        except GQLibError as e:
            if kind == "nonfinite" and type(e).__name__ != "NonFiniteState":
                out = ("bad", f"{type(e).__name__}, not NonFiniteState: {str(e)[:50]}")
            elif kind == "own":
                out = ("bad", f"{type(e).__name__} instead of the user's exception")
            else:
                out = ("clean", f"{type(e).__name__}: {str(e)[:50]}")
        except (ValueError, TypeError) as e:
            if kind == "own":
                out = ("bad", f"{type(e).__name__} instead of the user's: {str(e)[:50]}")
            elif "`" in str(e):
                out = ("clean", f"{type(e).__name__} naming the argument: {str(e)[:50]}")
            else:
                out = ("bad", f"{type(e).__name__} naming no argument: {str(e)[:50]}")
        except Exception as e:  # noqa: BLE001 - the point is to classify every exception
            if kind == "own" and "my own error" in str(e) and type(e) is ZeroDivisionError:
                out = ("clean", "the user's own exception")
            else:
                out = ("bad", f"{type(e).__name__}: {str(e)[:50]}")
        print("result " + json.dumps([i, *out]), flush=True)


def _classify_value(res, kind, expected, ns):
    import numpy as np
    if kind == "true":
        return ("clean", "holds") if bool(res) else ("bad", "does not hold")
    if kind in ("error", "nonfinite"):
        return "bad", "returned instead of raising"
    if hasattr(res, "detach"):
        res = res.detach().cpu().numpy()
    if kind == "own":
        return "bad", "returned instead of the user's exception"
    arr = np.asarray(res, dtype=float)
    if not np.all(np.isfinite(arr)):
        return "bad", "non-finite result"
    if kind == "finite":
        return "clean", "finite"
    want = float(eval(expected, ns))
    got = float(arr.reshape(-1)[-1])
    ok = abs(got - want) <= 1e-5 * abs(want) if want != 0 else abs(got) < 1e-12
    return ("clean", "right value") if ok else ("bad", f"wrong value {got:.6g} (want {want:.6g})")


def run_all():
    results: dict[int, tuple[str, str]] = {}
    todo = list(range(len(PROBES)))
    while todo:
        proc = subprocess.Popen([sys.executable, __file__, "--worker", *map(str, todo)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env=os.environ.copy())
        current, deadline = None, time.monotonic() + 600.0
        fd = proc.stdout.fileno()
        buf = b""
        while True:
            if b"\n" not in buf:
                r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
                if not r:  # the probe ran past its time: a hang
                    proc.kill()
                    proc.wait()
                    if current is None:
                        raise RuntimeError("the worker did not start")
                    results[current] = ("bad", f"hang (> {TIMEOUT:.0f} s)")
                    todo.remove(current)
                    break
                chunk = os.read(fd, 65536)
                if not chunk:  # the worker died (a crash): the current probe is bad
                    proc.wait()
                    if current is not None:
                        results[current] = ("bad", f"crash (exit {proc.returncode})")
                        todo.remove(current)
                    elif todo:
                        raise RuntimeError(f"the worker exited ({proc.returncode}) between probes")
                    break
                buf += chunk
                continue
            raw, buf = buf.split(b"\n", 1)
            line = raw.decode()
            if line.startswith("start "):
                current, deadline = int(line.split()[1]), time.monotonic() + TIMEOUT
            elif line.startswith("result "):
                i, verdict, why = json.loads(line[7:])
                results[i] = (verdict, why)
                todo.remove(i)
                current, deadline = None, time.monotonic() + 600.0
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return results


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker([int(a) for a in sys.argv[2:]])
        return 0
    results = run_all()
    families: dict[str, list[int]] = {}
    for i, (family, name, *_rest) in enumerate(PROBES):
        verdict, why = results[i]
        families.setdefault(family, [0, 0, 0])
        families[family][0] += 1
        families[family][1 if verdict == "clean" else 2] += 1
        print(f"{verdict:5s} {family:24s} {name:32s} {why}")
    print("\n| family | tries | clean | bad |\n|---|---|---|---|")
    for fam, (n, c, b) in families.items():
        print(f"| {fam} | {n} | {c} | {b} |")
    if "--json" in sys.argv:
        path = sys.argv[sys.argv.index("--json") + 1]
        with open(path, "w") as fh:
            json.dump({"probes": [[*PROBES[i][:2], *results[i]] for i in range(len(PROBES))],
                       "families": families}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
