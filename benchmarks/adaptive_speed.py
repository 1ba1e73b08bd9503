"""In-process FE+GRX time of the adaptive FEN against a fixed FEN of the same band count, same run.

The adaptive FEN pays for a covariance of the input, an eigendecomposition and two NumPy 1x1 convs
that a fixed model does inside ONNX Runtime. Runs are interleaved (fixed, adaptive, fixed, ...)
after a warm-up, so load from other jobs hits both alike; the medians and their ratio are printed.

    python benchmarks/adaptive_speed.py --model .cache/weights/ferd-200.onnx [--scene abu-airport-1] [--repeat 15]
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

from fencli.engine import run  # noqa: E402
from fencli.enhancers import load_session  # noqa: E402
from fencli.runtime import get_session  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="a fixed FEN (.onnx path or name), e.g. an exported ferd-200")
    ap.add_argument("--scene", default="abu-airport-1", help="a ../shared scene, or 'demo' (synthetic 100 x 100 x 200)")
    ap.add_argument("--shared", type=Path, default=HERE.parents[1] / "shared")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    fixed = (get_session(args.model, "cpu", args.threads) if args.model.endswith(".onnx")
             else load_session(args.model, "cpu", args.threads))
    if args.scene == "demo":
        from fencli.synthetic import demo_scene

        cube = demo_scene()[0]
    else:
        import scipy.io

        cube = scipy.io.loadmat(args.shared / "data" / f"{args.scene}.mat")["data"]
    cube = cube[..., :fixed.bands]
    adaptive = load_session("adaptive", "cpu", args.threads)
    times: dict[str, list[float]] = {"fixed": [], "adaptive": []}
    for i in range(args.repeat + 1):
        for name, enhancer in (("fixed", fixed), ("adaptive", adaptive)):
            t0 = time.perf_counter()
            run(cube, "grx", enhancer=enhancer)
            if i:  # the first round warms both up
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({"scene": args.scene, "shape": list(cube.shape), "fixed_model": fixed.name,
                      "median_s": {k: round(v, 4) for k, v in med.items()},
                      "min_s": {k: round(min(v), 4) for k, v in times.items()},
                      "ratio_median": round(med["adaptive"] / med["fixed"], 3), "repeat": args.repeat}))


if __name__ == "__main__":
    main()
