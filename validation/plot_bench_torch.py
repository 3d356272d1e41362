"""Plot the JSON of validation/bench_torch.py: backward time and memory against width.

    python validation/plot_bench_torch.py results.json docs/bench_torch_cpu.png
"""

from __future__ import annotations

import json
import sys


def main(src: str, dst: str) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in json.load(open(src)) if "bwd" in r]
    batches = sorted({r["batch"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(2, len(batches), figsize=(5.5 * len(batches), 8), squeeze=False)
    for col, B in enumerate(batches):
        for m in methods:
            pts = sorted((r["W"], r["bwd"], r["peak_mib"]) for r in rows
                         if r["batch"] == B and r["method"] == m)
            if not pts:
                continue
            style = "-" if m.startswith(("gq", "interp", "back")) else "--"
            W, bwd, mem = zip(*pts, strict=True)
            axes[0, col].loglog(W, bwd, style, marker="o", label=m)
            axes[1, col].loglog(W, [max(x, 0.1) for x in mem], style, marker="o", label=m)
        axes[0, col].set_title(f"batch {B}: backward time")
        axes[0, col].set_ylabel("seconds (median)")
        axes[1, col].set_title(f"batch {B}: peak memory growth")
        axes[1, col].set_ylabel("MiB")
        for ax in axes[:, col]:
            ax.set_xlabel("hidden width W")
            ax.grid(True, which="both", alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
