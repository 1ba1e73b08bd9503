"""Time fencli's FEN session in whichever Python runs this file (needs only NumPy and ONNX Runtime).

``speed_report.py`` runs it, alternately, under the main environment and under a plain virtual
environment holding another ONNX Runtime wheel, so both builds are timed in one run on one input.
Prints one JSON line: the ONNX Runtime version, the provider that ran, the seconds of each timed
``enhance`` and the installed size of the ``onnxruntime`` package; writes the output cube to OUT.

    python benchmarks/fen_timing.py MODEL.onnx CUBE.npy OUT.npy [--repeat 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

from fencli.runtime import get_session  # noqa: E402


def package_mb() -> float:
    root = Path(ort.__file__).parent
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("cube")
    ap.add_argument("out")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    cube = np.load(args.cube)
    session = get_session(args.model, device="cpu", threads=args.threads)
    y = session.enhance(cube)  # warm-up
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        y = session.enhance(cube)
        times.append(time.perf_counter() - t)
    np.save(args.out, y)
    print(json.dumps({"onnxruntime": ort.__version__, "provider": session.provider, "seconds": times,
                      "package_mb": round(package_mb(), 1), "python": sys.executable,
                      "pid": os.getpid()}))


if __name__ == "__main__":
    main()
