"""Default gradient vs reference on stiff problems, adaptive methods: default (auto), checkpoint
alone, interpolated on the same forward. FN = default err > 10 rtol and > 10x interpolated's,
no warning/fallback. FP = warning/fallback while checkpoint alone err <= max(10 rtol, 2x interp)."""
import sys
import time

from common import forced_linear, oregonator, reference, rel, robertson, run, vdp

from gqlib.adjoint import CheckpointAdjoint, InterpolatedAdjoint

probs = {"vdp50": vdp, "vdp200": lambda: vdp(200.0), "robertson": robertson,
         "forced_linear": forced_linear, "oregonator": oregonator}
names = sys.argv[1].split(",") if len(sys.argv) > 1 else list(probs)
methods = sys.argv[2].split(",") if len(sys.argv) > 2 else ["bosh3", "fehlberg2", "adaptive_heun", "dopri5", "tsit5", "dop853", "dopri8"]
rtols = [float(r) for r in sys.argv[3].split(",")] if len(sys.argv) > 3 else [1e-3, 1e-5, 1e-7]
for name in names:
    field, y0, t = probs[name]()
    ref = reference(field, y0, t)
    ref2 = reference(field, y0, t, 1e-11)
    print(f"== {name}: ref self-check {rel(ref2, ref):.1e}", flush=True)
    for m in methods:
        for rtol in rtols:
            t0 = time.time()
            try:
                g, st, w, sol = run(field, y0, t, method=m, rtol=rtol, atol=rtol / 100)
                gc, stc, wc, _ = run(field, y0, t, adjoint=CheckpointAdjoint(), method=m, rtol=rtol, atol=rtol / 100)
                gi, _, _, _ = run(field, y0, t, adjoint=InterpolatedAdjoint(), method=m, rtol=rtol, atol=rtol / 100)
            except Exception as e:
                print(f"{m:14s} rtol {rtol:.0e}: {type(e).__name__} {str(e)[:100]}")
                continue
            err, errc, erri = rel(g, ref), rel(gc, ref), rel(gi, ref)
            acted = bool(w) or st.get("stiff_fallback") is not None
            flag = ""
            if err > 10 * rtol and err > 10 * erri and not acted:
                flag = "  <-- FN"
            if acted and errc <= max(10 * rtol, 2 * erri):
                flag = "  <-- FP"
            sg = st.get("stiff_growth")
            print(f"{m:13s} rtol {rtol:.0e}: steps {sol.stats['n_accepted']:6d} rej {sol.stats['n_rejected']:5d} "
                  f"err default {err:.1e} ckpt {errc:.1e} interp {erri:.1e} growth {sg if sg is None else round(sg, 2)} "
                  f"strat {st.get('strategy')} warned {bool(w)} ({time.time()-t0:.1f}s){flag}", flush=True)
