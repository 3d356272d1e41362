"""Overhead of gqlib.torch direct mode's stiffness check: forward + backward of a small MLP
(D = 16, W = 64, batch 4, dopri5 rtol 1e-6, t in [0, 20], 1 thread), medians of 20 runs,
interleaved, with the check and without it (a monitor without a stage pair: the plain solve).

    PYTHONPATH=. python validation/bench_direct_stiffcheck.py
"""

import statistics
import time

import torch

import gqlib.torch._odeint as direct
from gqlib.adjoint._stiffness import StiffnessMonitor
from gqlib.torch import odeint


class Off(StiffnessMonitor):
    """No stage pair: direct mode takes the solve without the check."""

    def __init__(self, tab, xp):
        super().__init__(tab, xp)
        self.j = None


def main(reps: int = 20):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    d, w = 16, 64
    net = torch.nn.Sequential(torch.nn.Linear(d, w), torch.nn.Tanh(), torch.nn.Linear(w, w),
                              torch.nn.Tanh(), torch.nn.Linear(w, d))
    y0 = torch.randn(4, d)
    t = torch.linspace(0.0, 20.0, 11)

    def once():
        t0 = time.perf_counter()
        ys, st = odeint(lambda t, y: net(y), y0, t, rtol=1e-6, atol=1e-8, return_stats=True)
        ys.square().sum().backward()
        return time.perf_counter() - t0, st

    for _ in range(3):
        once()
    res = {"on": [], "off": []}
    for i in range(reps):
        for mode in ("on", "off") if i % 2 else ("off", "on"):
            direct.StiffnessMonitor = StiffnessMonitor if mode == "on" else Off
            res[mode].append(once()[0])
    direct.StiffnessMonitor = StiffnessMonitor
    st = once()[1]
    med = {k: statistics.median(v) for k, v in res.items()}
    print(f"steps {st.forward['n_accepted']}, nfe {st.forward['nfe']}, "
          f"growth {st.forward['stiff_growth']}; median ms: on {med['on'] * 1e3:.2f}, "
          f"off {med['off'] * 1e3:.2f}, ratio {med['on'] / med['off']:.4f}")


if __name__ == "__main__":
    main()
