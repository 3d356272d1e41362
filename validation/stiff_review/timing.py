"""Default odeint_adjoint backward time, small MLP (D=16, W=64, batch 4, dopri5 rtol 1e-6)."""
import sys
import time

import torch

from gqlib.torch import odeint_adjoint

torch.manual_seed(0)
torch.set_num_threads(1)
f = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.Tanh(), torch.nn.Linear(64, 16))
class G(torch.nn.Module):
    def __init__(s):
        super().__init__()
        s.f = f

    def forward(s, t, y): return s.f(y)
g = G()
y0 = torch.randn(4, 16)
t = torch.linspace(0, float(sys.argv[2]) if len(sys.argv) > 2 else 1.0, 2)
out = []
for _r in range(int(sys.argv[1]) if len(sys.argv) > 1 else 15):
    ys, st = odeint_adjoint(g, y0, t, rtol=1e-6, atol=1e-8, return_stats=True)
    loss = ys[-1].pow(2).sum()
    t0 = time.perf_counter()
    loss.backward()
    out.append(time.perf_counter() - t0)
out = sorted(out[2:])
print(f"steps {st.forward['n_accepted']} backward ms: min {1e3*out[0]:.2f} median {1e3*out[len(out)//2]:.2f} max {1e3*out[-1]:.2f} strategy {st.backward.get('strategy')} growth {st.backward.get('stiff_growth')}")
