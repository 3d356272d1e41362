"""Runner for the paper's experiments: ``python -m validation.experiments --quick|--full``.

Every (task, method, width, seed) is one training run from the same initial weights for a given
seed. Per task it writes, into the output folder:

- ``<task>_runs.csv``: one row per run (mean time per epoch, forward and backward NFE per
  iteration, final loss and metric, machine load while it ran);
- ``<task>_epochs.csv``: loss and cumulative wall time per epoch;
- ``<task>.md``: mean and std over seeds per method and width, speed ratios;
- ``<task>_time_vs_width.png``, ``<task>_metric_vs_width.png``, ``<task>_loss_vs_epoch.png``,
  ``<task>_loss_vs_time.png``;

and ``summary.md`` (one headline row per task) and ``meta.json`` (command, machine, load
averages, wall time). The toy gradient experiment writes its own files (see ``toy_gradient``).
Timings are taken on whatever machine runs this; ``meta.json`` and the tables record its load.
A run of some experiments (``--only``) keeps the other experiments' records in ``meta.json``.

    python -m validation.experiments --quick                    # docs/results/quick/
    python -m validation.experiments --full --only g1d --seeds 2 --widths 5,100,3000
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import math
import os
import sys
import time

EXPERIMENTS = ["toy_gradient", "g1d", "nested_spheres", "sines", "ornstein_uhlenbeck"]
OUT = {"quick": "docs/results/quick", "full": "docs/results", "tiny": "docs/results/tiny"}


def _mean_std(values):
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    m = sum(vals) / len(vals)
    s = (sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5 if len(vals) > 1 else 0.0
    return m, s


def _fmt(m, s, sig=3):
    if not math.isfinite(m):
        return "-"
    return f"{m:.{sig}g} ± {s:.2g}"


def epoch_time(hist):
    """Mean wall time per epoch, the first epoch left out when there are more (warm-up)."""
    times = hist["epoch_time"][1:] if len(hist["epoch_time"]) > 1 else hist["epoch_time"]
    return sum(times) / len(times)


def read_csv(path):
    """Rows written by :func:`write_csv`, numbers parsed back (``[]`` if there is no file)."""
    if not os.path.exists(path):
        return []

    def parse(key, value):
        if key in ("task", "method"):
            return value
        return int(value) if key in ("width", "seed", "epochs", "epoch") else float(value)

    with open(path, newline="") as fh:
        return [{k: parse(k, v) for k, v in row.items()} for row in csv.DictReader(fh)]


def run_task(mod, task, cfg, methods, out, bar, log, resume=False):
    """Train every (width, seed, method) of ``cfg``; with ``resume``, keep the runs already in
    ``<task>_runs.csv`` and train only the missing ones. The CSVs are rewritten after every
    run, so an interrupted run loses one training run at most."""
    runs_csv = os.path.join(out, f"{task}_runs.csv")
    epochs_csv = os.path.join(out, f"{task}_epochs.csv")
    wanted = {(w, s, m) for w in cfg["widths"] for s in range(cfg["seeds"]) for m in methods}
    rows, epochs = [], []
    if resume:  # every run of these methods already in the folder counts, whatever its width
        rows = [r for r in read_csv(runs_csv) if r["method"] in methods]
        done_keys = {(r["width"], r["seed"], r["method"]) for r in rows}
        epochs = [e for e in read_csv(epochs_csv)
                  if (e["width"], e["seed"], e["method"]) in done_keys]
        if rows:
            log(f"{task}: resuming, {len(wanted & done_keys)} of {len(wanted)} runs already in "
                f"{runs_csv} ({len(rows)} of these methods in all)")
    done_keys = {(r["width"], r["seed"], r["method"]) for r in rows}
    for width in cfg["widths"]:
        for seed in range(cfg["seeds"]):
            for method in methods:
                if (width, seed, method) in done_keys:
                    bar.update(cfg["epochs"])
                    continue
                bar.set_description(f"{task} W={width} seed={seed} {method}")
                l0 = os.getloadavg()[0]
                t0 = time.perf_counter()
                hist = mod.run_one(task, method, width, seed, cfg,
                                   progress=lambda: bar.update(1))
                wall = time.perf_counter() - t0
                done = len(hist["epoch_loss"])
                bar.update(cfg["epochs"] - done)  # a diverged run stops early
                rows.append(dict(task=task, method=method, width=width, seed=seed,
                                 epochs=done, time_per_epoch_s=epoch_time(hist),
                                 fwd_nfe=sum(hist["fwd_nfe"]) / done,
                                 bwd_nfe=sum(hist["bwd_nfe"]) / done,
                                 final_loss=hist["epoch_loss"][-1], metric=hist["metric"],
                                 wall_s=wall, load1_start=l0, load1_end=os.getloadavg()[0]))
                cum = 0.0
                pairs = zip(hist["epoch_loss"], hist["epoch_time"], strict=True)
                for k, (loss, sec) in enumerate(pairs):
                    cum += sec
                    epochs.append(dict(task=task, method=method, width=width, seed=seed,
                                       epoch=k + 1, loss=loss, epoch_s=sec, cum_s=cum))
                log(f"{task} W={width} seed={seed} {method}: {rows[-1]['time_per_epoch_s']:.4f} "
                    f"s/epoch, NFE {rows[-1]['fwd_nfe']:.1f}/{rows[-1]['bwd_nfe']:.1f}, "
                    f"{mod.METRIC} {hist['metric']:.4g}")
                write_csv(runs_csv, rows)
                write_csv(epochs_csv, epochs)
    widths = sorted({*cfg["widths"], *(r["width"] for r in rows)})
    cfg = {**cfg, "widths": widths}
    table = aggregate(rows, methods, widths)
    write_markdown(os.path.join(out, f"{task}.md"), mod, task, cfg, table, methods, rows)
    plots(os.path.join(out, task), mod, table, methods, widths, epochs)
    return table, widths


def write_csv(path, rows):
    if not rows:
        return
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def aggregate(rows, methods, widths):
    table = {}
    for method in methods:
        for width in widths:
            sel = [r for r in rows if r["method"] == method and r["width"] == width]
            if not sel:
                continue
            table[method, width] = {k: _mean_std([r[k] for r in sel]) for k in
                                    ("time_per_epoch_s", "fwd_nfe", "bwd_nfe", "final_loss",
                                     "metric", "load1_start", "epochs")}
            table[method, width]["n"] = len(sel)
    return table


def write_markdown(path, mod, task, cfg, table, methods, rows):
    lines = [f"**{mod.TITLE}** (`{task}`)", "",
             f"Widths {cfg['widths']}, {cfg['epochs']} epochs, {cfg['seeds']} seeds (a folder "
             "grown with --resume may hold other runs: the seeds and epochs columns count each "
             "row's runs); mean ± std over seeds. Time: wall seconds per epoch (forward + backward + Adam step, first "
             "epoch left out), one torch thread. NFE: calls of the field per iteration, forward / "
             f"backward (direct backprop: backward = forward). Metric: {mod.METRIC}. Ratios: mean "
             "time per epoch over torchdiffeq direct's and adjoint's at the same width.", ""]
    for width in cfg["widths"]:
        ref_d = table.get(("torchdiffeq direct", width), {}).get("time_per_epoch_s", (math.nan,))[0]
        ref_a = table.get(("torchdiffeq adjoint", width), {}).get("time_per_epoch_s",
                                                                    (math.nan,))[0]
        lines += [f"#### {task}, width {width}", "",
                  f"| method | seeds | epochs | s / epoch | x tdq direct | x tdq adjoint | NFE fwd | "
                  f"NFE bwd | final loss | {mod.METRIC} | load (1 min) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for method in methods:
            r = table.get((method, width))
            if r is None:
                continue
            t = r["time_per_epoch_s"][0]
            lines.append(
                f"| {method} | {r['n']} | {r['epochs'][0]:.0f} | {_fmt(*r['time_per_epoch_s'])} | "
                f"{t / ref_d:.2f} | "
                f"{t / ref_a:.2f} | {_fmt(*r['fwd_nfe'])} | {_fmt(*r['bwd_nfe'])} | "
                f"{_fmt(*r['final_loss'])} | {_fmt(*r['metric'])} | {r['load1_start'][0]:.1f} |")
        lines.append("")
    with open(path, "w") as fh:
        fh.write("\n".join(lines))


def plots(stem, mod, table, methods, widths, epochs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for key, ylabel, fname, logy in (("time_per_epoch_s", "s / epoch", "time_vs_width", True),
                                     ("metric", mod.METRIC, "metric_vs_width",
                                      not mod.HIGHER_IS_BETTER)):
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for method in methods:
            ws = [w for w in widths if (method, w) in table]
            m = [table[method, w][key][0] for w in ws]
            s = [table[method, w][key][1] for w in ws]
            ax.errorbar(ws, m, yerr=s, marker="o", ms=3, capsize=2, label=method)
        ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("width W")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(f"{stem}_{fname}.png", dpi=110)
        plt.close(fig)
    width = max(widths)
    for xkey, xlabel, fname in (("epoch", "epoch", "loss_vs_epoch"),
                                ("cum_s", "wall-clock s", "loss_vs_time")):
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for method in methods:
            sel = [e for e in epochs if e["method"] == method and e["width"] == width]
            if not sel:
                continue
            seeds = sorted({e["seed"] for e in sel})
            n = min(sum(1 for e in sel if e["seed"] == s) for s in seeds)
            xs, ys = [], []
            for k in range(n):
                at = [e for e in sel if e["epoch"] == k + 1]
                xs.append(sum(e[xkey] for e in at) / len(at))
                ys.append(sum(e["loss"] for e in at) / len(at))
            ax.plot(xs, ys, label=method)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel + " (mean over seeds)")
        ax.set_ylabel("training loss (mean over seeds)")
        ax.set_title(f"{mod.NAME}, width {width}")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(f"{stem}_{fname}.png", dpi=110)
        plt.close(fig)


HEADLINE = ("torchdiffeq direct", "torchdiffeq adjoint", "torchdiffeq seminorm", "gqlib default",
            "gqlib gq adaptive", "gqlib gq paper")


def headline(mod, task, table, widths):
    """One row: s/epoch at the largest width for the headline methods, and their metric."""
    width = max(widths)
    cells = []
    for short in HEADLINE:
        key = next((k for k in table if k[1] == width and k[0].startswith(short)), None)
        cells.append(table[key] if key else None)
    times = " / ".join(f"{c['time_per_epoch_s'][0]:.3g}" if c else "-" for c in cells)
    metrics = " / ".join(f"{c['metric'][0]:.3g}" if c else "-" for c in cells)
    return f"| {task} | {width} | {times} | {metrics} |"


def write_summary(out, meta):
    """``summary.md``: one headline row per task, from every experiment recorded in meta.json."""
    exps = meta["experiments"]
    train = [r for n in EXPERIMENTS if n in exps and n != "toy_gradient"
             for r in exps[n]["summary"]]
    lines = []
    if train:
        lines += ["| task | width | s / epoch: " + " / ".join(HEADLINE) + " | metric: same order |",
                  "|---|---|---|---|", *train, ""]
    if "toy_gradient" in exps:
        lines += ["| toy | horizons | median rel. error of dL/da: " + " / ".join(HEADLINE)
                  + " | max: same order |", "|---|---|---|---|",
                  *exps["toy_gradient"]["summary"], ""]
    lines += ["| experiment | command | started | wall s | load average (1 min) start / end |",
              "|---|---|---|---|---|"]
    lines += [f"| {n} | `{exps[n]['command']}` | {exps[n]['started']} | {exps[n]['wall_s']:.0f} | "
              f"{exps[n]['load_start'][0]:.1f} / {exps[n]['load_end'][0]:.1f} |"
              for n in EXPERIMENTS if n in exps]
    lines += ["", f"Total wall time of the recorded experiments: "
              f"{sum(e['wall_s'] for e in exps.values()):.0f} s, on "
              f"{next(iter(exps.values()))['machine']['cpus']} CPUs shared with other jobs, "
              "torch on 1 thread."]
    with open(os.path.join(out, "summary.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick",
                      help="2 seeds, reduced widths and epochs (the default); docs/results/quick/")
    mode.add_argument("--full", action="store_const", dest="mode", const="full",
                      help="the paper's settings; docs/results/")
    mode.add_argument("--tiny", action="store_const", dest="mode", const="tiny",
                      help="smoke test: one width, 1-2 epochs (the test suite's)")
    ap.add_argument("--only", default="", help=f"comma-separated experiments of {EXPERIMENTS}")
    ap.add_argument("--seeds", type=int, default=None, help="override the number of seeds")
    ap.add_argument("--widths", default="", help="override the widths (comma-separated)")
    ap.add_argument("--epochs", type=int, default=None, help="override the epochs")
    ap.add_argument("--methods", default="", help="';'-separated subset of the methods")
    ap.add_argument("--variants", default="", help="sines: comma-separated subset of the variants")
    ap.add_argument("--out", default="", help="output folder (default by mode)")
    ap.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    ap.add_argument("--resume", action="store_true",
                    help="keep the runs already in the output folder's CSVs; train the rest")
    args = ap.parse_args(argv)
    mode = args.mode or "quick"
    out = args.out or OUT[mode]
    os.makedirs(out, exist_ok=True)

    from tqdm import tqdm

    from .common import load, machine, method_names, set_threads

    set_threads()
    names = [s.strip() for s in args.only.split(",") if s.strip()] or EXPERIMENTS
    unknown = set(names) - set(EXPERIMENTS)
    if unknown:
        raise SystemExit(f"--only: unknown experiments {sorted(unknown)}; known: {EXPERIMENTS}")
    include = [s.strip() for s in args.methods.split(";") if s.strip()] or None
    t_start = time.perf_counter()
    meta_path = os.path.join(out, "meta.json")
    meta = {}
    if os.path.exists(meta_path):  # a run of some experiments keeps the others' records
        with open(meta_path) as fh:
            meta = json.load(fh)
    meta.setdefault("experiments", {})
    command = " ".join(["python", "-m", "validation.experiments"]
                       + (argv if argv is not None else sys.argv[1:]))
    with open(os.path.join(out, "log.txt"), "a") as log_fh:
        def log(msg):
            log_fh.write(msg + "\n")
            log_fh.flush()

        log(f"== {command} ({time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())})")
        for name in names:
            mod = importlib.import_module(f"{__package__}.{name}")
            cfg = dict(mod.CONFIGS[mode])
            if args.seeds is not None and "seeds" in cfg:
                cfg["seeds"] = args.seeds
            if args.widths and "widths" in cfg:
                cfg["widths"] = [int(w) for w in args.widths.split(",")]
            if args.epochs is not None and "epochs" in cfg:
                cfg["epochs"] = args.epochs
            if args.variants and "variants" in cfg:
                cfg["variants"] = [v.strip() for v in args.variants.split(",") if v.strip()]
            t0, l0 = time.perf_counter(), load()
            started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            if hasattr(mod, "run"):  # an experiment with its own protocol
                with tqdm(total=mod.units(cfg, include), disable=args.no_progress,
                          desc=name) as bar:
                    rows = mod.run(cfg, out, include, bar, log)
            else:
                rows = []
                methods = getattr(mod, "method_names", method_names)(include)
                for task in mod.tasks(cfg):
                    total = len(cfg["widths"]) * cfg["seeds"] * len(methods) * cfg["epochs"]
                    with tqdm(total=total, disable=args.no_progress, desc=task) as bar:
                        table, widths = run_task(mod, task, cfg, methods, out, bar, log,
                                                 resume=args.resume)
                    rows.append(headline(mod, task, table, widths))
            meta["experiments"][name] = dict(
                command=command, mode=mode, config=cfg, started=started,
                wall_s=time.perf_counter() - t0, load_start=l0, load_end=load(),
                machine=machine(), summary=rows)
            log(f"{name}: {time.perf_counter() - t0:.1f} s")
    wall = time.perf_counter() - t_start
    with open(meta_path, "w") as fh:
        json.dump(meta, fh, indent=1)
    write_summary(out, meta)
    print(f"wrote {out}/ in {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
