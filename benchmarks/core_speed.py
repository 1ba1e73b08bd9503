"""In-process FE+GRX and FE+SLRX with the shipped adaptive core against another core, same run (issue 24).

Both cores run through the same adaptive FEN (ConvH from the scene, seeded output layer) and the same
engine call; runs are interleaved (baseline, new, baseline, ...) after one warm-up round, so load from
other jobs hits both alike. Prints medians and their ratios (new / baseline), for the FEN alone and
for FE+GRX and FE+SLRX end to end. The three-block core (before issue 24) is in git history:

    git show 9be2c1e:weights/adaptive-core.onnx > /tmp/core-3blocks.onnx
    python benchmarks/core_speed.py --baseline /tmp/core-3blocks.onnx [--scene abu-airport-1] [--repeat 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:1] = [str(HERE.parent)]

from fencli.adaptive import AdaptiveFEN  # noqa: E402
from fencli.engine import run  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", required=True, type=Path, help="the other core (.onnx), e.g. the three-block one")
    ap.add_argument("--scene", default="abu-airport-1", help="a ../shared scene (all its bands), or 'demo'")
    ap.add_argument("--shared", type=Path, default=HERE.parents[1] / "shared")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.scene == "demo":
        from fencli.synthetic import demo_scene

        cube = demo_scene()[0]
    else:
        from fencli.io import read_scene
        import numpy as np

        cube = np.asarray(read_scene(args.shared / "data" / f"{args.scene}.mat").cube)
    fens = {"baseline": AdaptiveFEN("cpu", args.threads, path=args.baseline),
            "new": AdaptiveFEN("cpu", args.threads)}
    jobs = {"fen": lambda f: f.enhance(cube), "fe+grx": lambda f: run(cube, "grx", enhancer=f),
            "fe+slrx": lambda f: run(cube, "slrx", enhancer=f)}
    times = {j: {k: [] for k in fens} for j in jobs}
    for i in range(args.repeat + 1):
        for job, fn in jobs.items():
            for name, fen in fens.items():
                t0 = time.perf_counter()
                fn(fen)
                if i:  # the first round warms everything up
                    times[job][name].append(time.perf_counter() - t0)
    out = {"scene": args.scene, "shape": list(cube.shape), "baseline": str(args.baseline), "repeat": args.repeat,
           "threads": args.threads}
    for job, t in times.items():
        med = {k: statistics.median(v) for k, v in t.items()}
        out[job] = {"median_ms": {k: round(1000 * v, 1) for k, v in med.items()},
                    "min_ms": {k: round(1000 * min(v), 1) for k, v in t.items()},
                    "ratio_median": round(med["new"] / med["baseline"], 3),
                    "ratio_min": round(min(t["new"]) / min(t["baseline"]), 3)}
    import os

    out["load_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
