"""The published FERD code's whole process for one scene, as its users run it: one scene per process.

Import torch, load the published checkpoint into the PyTorch FEN, read the ``.mat`` with SciPy, run
the FEN in eager mode, score with the published per-pixel RX loop (``published.py``; GRX with the
float64 statistics that reproduce the reference AUCs, see ``compare_published.published_grx``),
and compute the AUC with scikit-learn. Prints one JSON line: ``{"auc", "seconds"}``. For
``speed_report.py``'s whole-process comparison; not used by fencli.

    python benchmarks/published_run.py SCENE.mat CHECKPOINT_DIR [--method grx|slrx] [--bands 200]
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import numpy as np  # noqa: E402
import scipy.io  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from compare_published import published_grx, torch_fe  # noqa: E402
from export.checkpoint import load_checkpoint  # noqa: E402
from published import published_slrx  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scene")
    ap.add_argument("checkpoint")
    ap.add_argument("--method", choices=("grx", "slrx"), default="grx")
    ap.add_argument("--bands", type=int, default=200)
    args = ap.parse_args()
    model = load_checkpoint(args.checkpoint).eval()
    mat = scipy.io.loadmat(args.scene)
    cube, gt = mat["data"][:, :, :args.bands], mat["map"]
    enhanced = torch_fe(model, cube)
    scores = (published_grx if args.method == "grx" else published_slrx)(enhanced)
    auc = roc_auc_score(np.ravel(gt) != 0, np.ravel(scores))
    print(json.dumps({"auc": float(auc), "seconds": time.perf_counter() - T0,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
