"""Rewrite the README's headline table (between ``<!-- results:start -->`` and
``<!-- results:end -->``) from the runner's outputs: one row per experiment, from the full-size
results (``docs/results/``) where an experiment was run there, else from the quick set.

    python -m validation.experiments.headline
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys

from .run import EXPERIMENTS, _mean_std

FOLDERS = ("docs/results", "docs/results/g1d_full", "docs/results/sines_full",
           "docs/results/g1d_3000_repeat", "docs/results/g1d_widths", "docs/results/quick")
START, END = "<!-- results:start -->", "<!-- results:end -->"
GQ, DEFAULT = "gqlib gq adaptive", "gqlib default"


def _runs(folder, task):
    with open(os.path.join(folder, f"{task}_runs.csv")) as fh:
        return list(csv.DictReader(fh))


def _n(rows, method_prefix, width):
    return sum(1 for r in rows if r["method"].startswith(method_prefix) and int(r["width"]) == width)


def _ratio(num, den):
    return "-" if not (num == num and den == den and den) else f"{num / den:.2f}x"


def _at(rows, method_prefix, width, key):
    vals = [float(r[key]) for r in rows if r["method"].startswith(method_prefix)
            and int(r["width"]) == width]
    return _mean_std(vals)[0]


def row(folder, name, entry):
    cfg = entry["config"]
    where = f"[{folder}/]({folder}/summary.md)"
    if name == "toy_gradient":
        with open(os.path.join(folder, "toy_gradient.csv")) as fh:
            rows = list(csv.DictReader(fh))

        def worst(m):
            return max(float(r["rel_err_a"]) for r in rows if r["method"].startswith(m))
        n = len({r["T"] for r in rows})
        return (f"| toy gradient | {n} horizons T = 19..29 | - | - | - | max rel. error of dL/da: "
                f"tdq adjoint {worst('torchdiffeq adjoint'):.1e}, gq {worst(GQ):.1e}, default "
                f"{worst(DEFAULT):.1e}, tdq direct {worst('torchdiffeq direct'):.1e} | {where} |")
    mod_metric = {"g1d": "MSE", "nested_spheres": "val acc.", "sines": "val MSE",
                  "ornstein_uhlenbeck": "KL"}[name]
    task = name if name != "sines" else f"sines_{cfg['variants'][0]}"
    rows = _runs(folder, task)
    w = max(cfg["widths"])
    t = {m: _at(rows, m, w, "time_per_epoch_s") for m in
         ("torchdiffeq direct", "torchdiffeq adjoint", GQ, DEFAULT)}
    met = {m: _at(rows, m, w, "metric") for m in ("torchdiffeq direct", "torchdiffeq adjoint",
                                                   GQ, DEFAULT)}
    seeds = _n(rows, GQ, w)
    n_adj = _n(rows, "torchdiffeq adjoint", w)
    run = f"W = {w}, {cfg['epochs']} epochs, {seeds} seed(s)" + (
        "" if n_adj == seeds else " (tdq adjoint not run)" if n_adj == 0 else
        f" (tdq adjoint: {n_adj})")

    def m(key):
        return "-" if met[key] != met[key] else f"{met[key]:.3g}"
    return (f"| {task} | {run} | {_ratio(t['torchdiffeq adjoint'], t[GQ])} | "
            f"{_ratio(t['torchdiffeq direct'], t[GQ])} | {_ratio(t['torchdiffeq direct'], t[DEFAULT])} | "
            f"{mod_metric}: tdq direct {m('torchdiffeq direct')}, tdq adjoint "
            f"{m('torchdiffeq adjoint')}, gq {m(GQ)}, default {m(DEFAULT)} | {where} |")


def table() -> str:
    lines = ["| experiment | run | gq adaptive speed-up over tdq adjoint | over tdq direct (< 1: slower) | "
             "gqlib default over tdq direct | final metric (mean over seeds) | source |",
             "|---|---|---|---|---|---|---|"]
    for name in EXPERIMENTS:
        for folder in FOLDERS:
            path = os.path.join(folder, "meta.json")
            if not os.path.exists(path):
                continue
            with open(path) as fh:
                exps = json.load(fh)["experiments"]
            if name in exps:
                lines.append(row(folder, name, exps[name]))
                break
    return "\n".join(lines)


def main() -> int:
    with open("README.md") as fh:
        text = fh.read()
    if START not in text:
        raise SystemExit(f"README.md has no {START} ... {END} block")
    text = re.sub(re.escape(START) + ".*?" + re.escape(END),
                  lambda _: f"{START}\n{table()}\n{END}", text, flags=re.S)
    with open("README.md", "w") as fh:
        fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
