"""``fencli train --recipe adaptive`` in and out of sample: FE+GRX / FE+SLRX AUC of the fixed FEN
built from all shared scenes with >= B bands (the shipped models' data) and, leaving each scene out
in turn, from the other scenes only, scored on the one left out.

    python benchmarks/fen_recipes.py [--shared ../shared]

Writes ``benchmarks/results/fen_recipes.json``. The models are built in process exactly as the recipe
builds them (:func:`export.fixed.background_stats`, :func:`fencli.adaptive.scene_convh`), about a
minute on 2 cores (SLRX dominates).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from export.data import load_scene
from export.fixed import background_stats
from fencli.adaptive import SceneFen, get_adaptive, scene_convh
from fencli.detectors import grx, slrx
from fencli.metrics import roc_auc
from fencli.preprocess import fen_input

HERE = Path(__file__).resolve().parent
SCENES = ("abu-airport-1", "abu-airport-2", "hydice", "sandiego")


def scores(train: list, test, bands: int) -> dict[str, float]:
    fen = SceneFen(scene_convh(background_stats(train, bands), None), get_adaptive("cpu"))
    y = fen(fen_input(test.cube))[0].transpose(1, 2, 0)
    return {"FE+GRX": round(roc_auc(grx(y), test.gt), 4), "FE+SLRX": round(roc_auc(slrx(y), test.gt), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=HERE.parent.parent / "shared")
    args = ap.parse_args()
    result = {}
    for bands in (50, 100, 200):
        scenes = [load_scene(args.shared / "data" / f"{n}.mat", None) for n in SCENES]
        scenes = [load_scene(args.shared / "data" / f"{s.name}.mat", bands, need_gt=True)
                  for s in scenes if s.cube.shape[2] >= bands]
        row = {"scenes": [s.name for s in scenes],
               "in_sample": {s.name: scores(scenes, s, bands) for s in scenes}}
        if len(scenes) > 2:
            row["leave_one_out"] = {s.name: scores([t for t in scenes if t is not s], s, bands) for s in scenes}
        for key in ("in_sample", "leave_one_out"):
            if key in row:
                row[f"{key}_mean"] = {m: round(float(np.mean([v[m] for v in row[key].values()])), 4)
                                      for m in ("FE+GRX", "FE+SLRX")}
        result[str(bands)] = row
        print(bands, {k: v for k, v in row.items() if k.endswith("_mean")}, flush=True)
    out = HERE / "results" / "fen_recipes.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(out)


if __name__ == "__main__":
    main()
