"""fencli against Spectral Python's ``spectral.rx``: agreement of the scores, AUC and time, one process.

Global RX on whole scenes (the shared abu-airport-1 when present, and the synthetic demo scene).
Windowed RX (``rx(window=(inner, outer))``) computes a covariance per pixel and takes minutes on a
100 x 100 scene, so it is timed on a crop (default 30 x 30) and extrapolated linearly in pixels
(the work per pixel is the same away from the borders); ``--full-window`` also runs it once on the
whole scene. fencli's dual-window ``lrx`` runs on the same crop and on the whole scene.

    python benchmarks/compare_spectral.py [--threads 2] [--crop 30] [--full-window]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import numpy as np  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from machine import describe, limit_threads, machine_info, save_results, timed  # noqa: E402


def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Rank correlation and the largest relative difference after the best scale factor
    (biased vs unbiased covariance differ by a constant factor)."""
    a, b = np.ravel(a).astype(float), np.ravel(b).astype(float)
    scale = float(a @ b / (b @ b))
    return {"spearman": float(spearmanr(a, b).statistic), "scale": scale,
            "max_rel_diff": float(np.max(np.abs(a - scale * b)) / np.max(np.abs(a)))}


def best_crop(gt: np.ndarray, side: int) -> tuple[slice, slice]:
    """The ``side`` square holding the most anomalous pixels (AUC needs both classes)."""
    h, w = gt.shape
    best, where = -1, (0, 0)
    for r in range(0, h - side + 1, 2):
        for c in range(0, w - side + 1, 2):
            n = int(gt[r:r + side, c:c + side].sum())
            if n > best:
                best, where = n, (r, c)
    return slice(where[0], where[0] + side), slice(where[1], where[1] + side)


def bench_pair(fn_a, fn_b, repeat: int, warmup: int = 1):
    ta, tb = [], []
    for i in range(warmup + repeat):
        t1, _, a = timed(fn_a)
        t2, _, b = timed(fn_b)
        if i >= warmup:
            ta.append(t1)
            tb.append(t2)
    return {"median": statistics.median(ta), "min": min(ta)}, {"median": statistics.median(tb), "min": min(tb)}, a, b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--bands", type=int, default=200)
    ap.add_argument("--crop", type=int, default=30)
    ap.add_argument("--window", type=int, nargs=2, default=(5, 21), metavar=("INNER", "OUTER"))
    ap.add_argument("--full-window", action="store_true", help="also run the windowed spectral.rx on the whole scene")
    ap.add_argument("--full-lrx", action="store_true", help="also run fencli lrx on the whole scene (minutes at 200 bands)")
    args = ap.parse_args()

    if args.crop < args.window[1]:
        ap.error("--crop must be at least the outer window (spectral.rx fails on smaller images)")
    limit_threads(args.threads)
    import spectral

    from fencli.bench import default_scene_paths
    from fencli.detectors import DETECTORS
    from fencli.io import read_scene
    from fencli.metrics import roc_auc
    from fencli.engine import run
    from fencli.synthetic import demo_scene

    info = machine_info()
    print(describe(info), flush=True)
    scenes = []
    shared = [p for p in default_scene_paths() if p.stem == "abu-airport-1"]
    if shared:
        s = read_scene(shared[0])
        scenes.append((s.name, s.cube[:, :, :args.bands], s.gt))
    cube, gt = demo_scene()
    scenes.append(("demo (synthetic)", cube, gt))

    glob_rows = []
    for name, cube, gt in scenes:
        x = cube.astype(np.float64)
        t_sp, t_fe, s_sp, s_fe = bench_pair(lambda: spectral.rx(x), lambda: run(cube, "grx").scores, args.repeat)
        row = {"scene": name, "shape": list(cube.shape), "spectral_s": t_sp, "fencli_s": t_fe,
               "auc_spectral": roc_auc(s_sp, gt), "auc_fencli": roc_auc(s_fe, gt), **agreement(s_sp, s_fe)}
        glob_rows.append(row)
        print(row, flush=True)

    save_results("compare_spectral", render(args, glob_rows, None, []), {"machine": info, "global": glob_rows,
                                                                        "windowed": "not finished"})
    inner, outer = args.window
    name, cube, gt = scenes[0]
    rs, cs = best_crop(gt, args.crop)
    crop, crop_gt = np.ascontiguousarray(cube[rs, cs]).astype(np.float64), gt[rs, cs]
    t_sp, _, s_sp = timed(lambda: spectral.rx(crop, window=(inner, outer)))
    lrx = DETECTORS["lrx"]().whole if "lrx" in DETECTORS else None
    win = {"scene": name, "crop": [rs.start, cs.start, args.crop], "window": [inner, outer],
           "spectral_crop_s": t_sp, "auc_spectral_crop": roc_auc(s_sp, crop_gt) if crop_gt.any() else None,
           "spectral_full_s_extrapolated": t_sp * cube.shape[0] * cube.shape[1] / args.crop**2}
    if lrx is not None:
        runs = [timed(lambda: DETECTORS["lrx"](inner=inner, outer=outer).whole(crop)) for _ in range(2)]
        s_fe = runs[-1][2]
        win |= {"fencli_crop_s": min(r[0] for r in runs), "auc_fencli_crop": roc_auc(s_fe, crop_gt) if crop_gt.any() else None,
                **{f"crop_{k}": v for k, v in agreement(s_sp, s_fe).items()}}
    if lrx is not None and args.full_lrx:
        t_full, _, res = timed(lambda: run(cube, "lrx", options={"windows": (inner, outer)}))
        win |= {"fencli_full_s": t_full, "auc_fencli_full": roc_auc(res.scores, gt)}
    if args.full_window:
        t_full_sp, _, s_full = timed(lambda: spectral.rx(cube.astype(np.float64), window=(inner, outer)))
        win |= {"spectral_full_s": t_full_sp, "auc_spectral_full": roc_auc(s_full, gt)}
    print(win, flush=True)
    end_load = [round(x, 2) for x in __import__("os").getloadavg()]
    md = render(args, glob_rows, win, end_load)
    print(md)
    save_results("compare_spectral", md, {"machine": info, "args": vars(args), "global": glob_rows,
                                          "windowed": win, "load_average_end": end_load})


def render(args, glob_rows, win, end_load) -> str:
    def ms(d):
        return f"{1000 * d['median']:.1f} ({1000 * d['min']:.1f})"

    lines = [f"Global RX, {args.threads} threads, {args.repeat} interleaved runs after a warm-up "
             "(`spectral.rx(cube)` vs `fencli.engine.run(cube, 'grx')`):", "",
             "| scene | shape | spectral ms, median (min) | fencli ms, median (min) | speed-up | AUC spectral | AUC fencli | Spearman | max rel. diff (after scale) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in glob_rows:
        lines.append(f"| {r['scene']} | {'x'.join(map(str, r['shape']))} | {ms(r['spectral_s'])} | {ms(r['fencli_s'])} | "
                     f"{r['spectral_s']['median'] / r['fencli_s']['median']:.1f}x | {r['auc_spectral']:.6f} | "
                     f"{r['auc_fencli']:.6f} | {r['spearman']:.6f} | {r['max_rel_diff']:.1e} |")
    if win is None:
        return "\n".join(lines + ["", "Windowed RX: not finished."]) + "\n"
    w = win
    inner, outer = w["window"]
    lines += ["", f"Windowed RX, window ({inner}, {outer}), `{w['scene']}`, crop {w['crop'][2]} x {w['crop'][2]} "
              f"at row {w['crop'][0]}, column {w['crop'][1]} (the crop holding the most anomalies), one run each:", "",
              "| what | seconds | AUC |", "|---|---:|---:|",
              f"| spectral.rx(window) on the crop | {w['spectral_crop_s']:.2f} | {fmt(w['auc_spectral_crop'])} |",
              f"| spectral.rx(window) on the whole scene, extrapolated (x pixels) | ~{w['spectral_full_s_extrapolated']:.0f} | - |"]
    if "spectral_full_s" in w:
        lines.append(f"| spectral.rx(window) on the whole scene, measured | {w['spectral_full_s']:.1f} | {w['auc_spectral_full']:.6f} |")
    if "fencli_crop_s" in w:
        lines.append(f"| fencli lrx on the crop (best of 2) | {w['fencli_crop_s']:.3f} | {fmt(w['auc_fencli_crop'])} |")
        if "fencli_full_s" in w:
            lines.append(f"| fencli lrx on the whole scene, measured | {w['fencli_full_s']:.3f} | {w['auc_fencli_full']:.6f} |")
        lines += ["", f"Crop scores, spectral vs fencli lrx: Spearman {w['crop_spearman']:.6f}, "
                  f"max relative difference after scale {w['crop_max_rel_diff']:.1e} (scale {w['crop_scale']:.4f})."]
    lines += ["", f"Load average at the end: {', '.join(map(str, end_load))}."]
    return "\n".join(lines) + "\n"


def fmt(v):
    return "-" if v is None else f"{v:.6f}"


if __name__ == "__main__":
    main()
