"""How far does a nodata border leak into the map? (issue 23 item 1; the README's "Nodata" section.)

``python benchmarks/nodata_leak.py [--scene ../shared/data/abu-airport-1.mat] [--border 10]``

A scene's first ``border`` columns are overwritten with a fill value (FLT_MAX, then -9999) and run
with ``--nodata``. The reference is the scene without those columns (the crop ``cube[:, border:]``):
what a perfect nodata rule gives, since the pixels are simply not there. Raw GRX and SLRX (a border
on the block grid) equal the crop up to rounding: every statistic leaves the border out. With the
adaptive FEN the border pixels hold the valid mean spectrum, where the crop's FEN reflects its edge:
the difference is the leak. Printed per distance to the border (1 = the first valid column): the
largest (and the median) score difference relative to the map's largest score, and the AUCs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fencli.engine import run  # noqa: E402
from fencli.enhancers import load_enhancer  # noqa: E402
from fencli.metrics import roc_auc  # noqa: E402

FLT_MAX = float(np.finfo(np.float32).max)


def load(path: Path | None) -> tuple[np.ndarray, np.ndarray, str]:
    if path is not None and path.exists():
        import scipy.io

        mat = scipy.io.loadmat(path)
        return np.ascontiguousarray(mat["data"], dtype=np.float32), mat["map"] != 0, path.stem
    from fencli.synthetic import planted_scene

    cube, gt = planted_scene(100, 100, 60, n_anomalies=12, seed=1, texture=0.3, fraction=0.3)
    return cube, gt != 0, "planted 100 x 100 x 60"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scene", type=Path, default=ROOT.parent / "shared" / "data" / "abu-airport-1.mat")
    ap.add_argument("--border", type=int, default=10)
    ap.add_argument("--distances", type=int, default=8)
    args = ap.parse_args()
    cube, gt, name = load(args.scene)
    k = args.border
    adaptive = load_enhancer("adaptive")
    crop, gt_crop = np.ascontiguousarray(cube[:, k:]), gt[:, k:]
    bs = 2  # SLRX blocks of 2 px: the border (even) stays on the block grid
    print(f"# {name} {cube.shape}, a {k}-px nodata border on the left; reference: the scene without it")
    for fill in (FLT_MAX, -9999.0):
        dirty = cube.copy()
        dirty[:, :k] = fill
        for label, enh, method, opts in (("GRX", None, "grx", {}), ("SLRX", None, "slrx", {"block_size": bs}),
                                         ("FE+GRX", adaptive, "grx", {}),
                                         ("FE+SLRX", adaptive, "slrx", {"block_size": bs})):
            ref = run(crop, method, enhancer=enh, options=opts, gt=gt_crop, tile=0)
            got = run(dirty, method, enhancer=enh, options=opts, gt=gt, tile=0, nodata=[fill])
            valid = got.scores[:, k:]
            assert not np.isnan(valid).any() and np.isnan(got.scores[:, :k]).all()
            top = float(np.max(np.abs(ref.scores)))
            diff = np.abs(valid - ref.scores) / top
            by_distance = [float(diff[:, d - 1].max()) for d in range(1, args.distances + 1)]
            row = {"fill": "FLT_MAX" if fill == FLT_MAX else fill, "case": label,
                   "auc_crop": round(ref.auc, 6), "auc_nodata": round(got.auc, 6),
                   "auc_of_valid": round(roc_auc(valid, gt_crop), 6),
                   "max_rel_diff_by_distance": [f"{v:.1e}" for v in by_distance],
                   "median_rel_diff_by_distance": [f"{float(np.median(diff[:, d - 1])):.1e}"
                                                   for d in range(1, args.distances + 1)],
                   "max_rel_diff_beyond": f"{float(diff[:, args.distances:].max()):.1e}",
                   "median_rel_diff_beyond": f"{float(np.median(diff[:, args.distances:])):.1e}"}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
