"""How time and memory grow with the scene: synthetic 100^2 .. 1000^2 pixels x 200 bands, per method.

Each (size, method) runs in its own subprocess, so the peak memory is that run's alone: the child
builds the scene, warms up on a small crop (imports, ONNX Runtime session, first allocations),
then samples its resident set size every 5 ms while ``fencli.engine.run`` works. Reported: wall
and CPU seconds of that one run, and the peak RSS above the level before it (the scene itself is
listed apart). A run whose time, extrapolated linearly in pixels from the previous size, exceeds
``--budget`` seconds is skipped and noted.

    python benchmarks/scaling.py [--sizes 100 250 500 1000] [--methods grx slrx lrx fe fe+grx] [--budget 120]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from machine import describe, limit_threads, machine_info, save_results  # noqa: E402

FIGURES = HERE / "figures"


class PeakRSS:
    """Samples this process's RSS in a thread; ``peak`` is the highest seen."""

    def __init__(self, interval: float = 0.005) -> None:
        import psutil

        self.proc, self.interval = psutil.Process(), interval
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def child(size: int, method: str, threads: int, model: str, bands: int) -> dict:
    """One measured run; prints its JSON row."""
    import gc

    import numpy as np

    limit_threads(threads)
    from fencli.engine import run
    from fencli.synthetic import planted_scene

    cube, gt = planted_scene(size, size, bands, n_anomalies=max(4, size // 20), seed=1, target_size=2,
                             fraction=0.07, texture=0.5, noise=0.02)
    enhancer = None
    if method.startswith("fe"):
        from fencli.enhancers import load_session

        enhancer = load_session(model, device="cpu", threads=threads)
    det = method.split("+")[-1] if "+" in method else ("grx" if method == "fe" else method)

    def once(c):
        if method == "fe":
            return enhancer.enhance(c)
        return run(c, det, enhancer=enhancer, bands=None if enhancer else bands).scores

    once(np.ascontiguousarray(cube[:32, :32]))  # warm-up
    gc.collect()
    import psutil

    before = psutil.Process().memory_info().rss
    with PeakRSS() as peak:
        c0, t0 = time.process_time(), time.perf_counter()
        out = once(cube)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    row = {"size": size, "pixels": size * size, "bands": bands, "method": method, "seconds": wall,
           "cpu_seconds": cpu, "scene_mb": cube.nbytes / 2**20, "rss_before_mb": before / 2**20,
           "peak_increase_mb": (peak.peak - before) / 2**20, "output_shape": list(out.shape)}
    if method != "fe":
        from fencli.metrics import roc_auc

        row["auc"] = roc_auc(out, gt)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 250, 500, 1000])
    ap.add_argument("--methods", nargs="+", default=["grx", "slrx", "lrx", "fe", "fe+grx"])
    ap.add_argument("--bands", type=int, default=200)
    ap.add_argument("--model", default="ferd-200-supp")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget", type=float, default=120.0, help="skip a run predicted to take longer (seconds)")
    ap.add_argument("--child", nargs=2, metavar=("SIZE", "METHOD"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.child[1], args.threads, args.model, args.bands)))
        return

    info = machine_info()
    print(describe(info), flush=True)
    rows, notes = [], []
    t_start = time.perf_counter()
    for method in args.methods:
        last = None
        for size in args.sizes:
            if last is not None:
                predicted = last["seconds"] * size * size / last["pixels"]
                if predicted > args.budget:
                    notes.append(f"{method} at {size}^2 skipped: ~{predicted:.0f} s predicted from {last['size']}^2, "
                                 f"over the {args.budget:g} s budget")
                    print(notes[-1], flush=True)
                    break
            cmd = [sys.executable, __file__, "--child", str(size), method, "--threads", str(args.threads),
                   "--model", args.model, "--bands", str(args.bands)]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(60.0, 3 * args.budget))
            except subprocess.TimeoutExpired:
                notes.append(f"{method} at {size}^2: timed out after {3 * args.budget:g} s")
                print(notes[-1], flush=True)
                break
            if proc.returncode != 0:
                notes.append(f"{method} at {size}^2 failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
                print(notes[-1], flush=True)
                break
            last = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(last)
            print(json.dumps(last), flush=True)
    total = time.perf_counter() - t_start
    end_load = [round(x, 2) for x in os.getloadavg()]
    fig = figure(rows)
    md = render(args, rows, notes, total, end_load, fig)
    print(md)
    save_results("scaling", md, {"machine": info, "args": vars(args), "rows": rows, "notes": notes,
                                 "total_seconds": total, "load_average_end": end_load})


def figure(rows: list[dict]) -> Path | None:
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    for method in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == method]
        px = [r["pixels"] for r in rs]
        a.loglog(px, [r["seconds"] for r in rs], "o-", label=method.upper())
        b.loglog(px, [max(r["peak_increase_mb"], 1) for r in rs], "o-", label=method.upper())
    for ax, title in ((a, "seconds (one run)"), (b, "peak RSS increase, MiB")):
        ax.set_xlabel("pixels (x 200 bands)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    FIGURES.mkdir(exist_ok=True)
    path = FIGURES / "scaling.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def render(args, rows, notes, total, end_load, fig) -> str:
    lines = [f"Synthetic scenes, {args.bands} bands, {args.threads} threads, one warm run per cell in a fresh "
             f"subprocess; model `{args.model}` for FE rows (`fe` = enhancement alone).", "",
             "| method | pixels | seconds | CPU seconds | peak RSS increase MiB | scene MiB | AUC |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        auc = f"{r['auc']:.4f}" if "auc" in r else "-"
        lines.append(f"| {r['method'].upper()} | {r['size']}^2 | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | "
                     f"{r['peak_increase_mb']:.0f} | {r['scene_mb']:.0f} | {auc} |")
    lines += [""] + [f"- {n}" for n in notes]
    if fig is not None:
        lines += ["", f"![scaling](figures/{fig.name})"]
    lines += ["", f"Whole script: {total:.0f} s. Load average at the end: {', '.join(map(str, end_load))}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
