"""AUC of the adaptive FEN on the shared scenes, beside raw detection and the published checkpoints.

Adaptive and raw rows are computed here (all bands of each scene, and the first 100), on the six
shared scenes; the published rows (four scenes) are read from
``../shared/reference/auc_reference.json`` (the published code's own figures,
which fencli's export reproduces: ``tests/test_fen_shared.py``). One fixed configuration, no
per-scene setting. Prints a Markdown table (the README's) and a JSON line.

    python benchmarks/adaptive_auc.py [--methods grx,slrx] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:1] = [str(HERE.parent)]

import numpy as np  # noqa: E402

from fencli.detectors import DETECTORS  # noqa: E402
from fencli.metrics import roc_auc  # noqa: E402
from fencli.enhancers import load_session  # noqa: E402
from fencli.io import read_scene  # noqa: E402

SCENES = ("abu-airport-1", "abu-airport-2", "hydice", "sandiego", "pavia-centre", "muufl")
PUBLISHED = ("ferd-50", "ferd-100", "ferd-200", "ferd-200-supp")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="grx,slrx")
    ap.add_argument("--shared", type=Path, default=HERE.parents[1] / "shared")
    ap.add_argument("--first", type=int, default=100, help="also the adaptive FEN on the first N bands (0: skip)")
    args = ap.parse_args()
    methods = args.methods.split(",")
    ref = json.loads((args.shared / "reference" / "auc_reference.json").read_text())
    fen = load_session("adaptive", device="cpu")
    table: dict[str, dict[str, dict[str, float]]] = {}  # config -> method -> scene -> auc
    for scene in SCENES:
        sc = read_scene(args.shared / "data" / f"{scene}.mat")  # muufl is MAT v7.3 (gt key groundtruth)
        cube, gt = np.asarray(sc.cube), sc.gt
        cubes = {"raw, all bands": cube, "adaptive, all bands": fen.enhance(cube)}
        if args.first:
            cubes[f"adaptive, first {args.first}"] = fen.enhance(cube[..., :args.first])
        for config, data in cubes.items():
            for m in methods:
                table.setdefault(config, {}).setdefault(m, {})[scene] = roc_auc(DETECTORS[m]().fit_score(data), gt)
        for name in PUBLISHED:
            for m in methods:
                auc = ref.get(scene, {}).get(name, {}).get(f"FE+{m.upper()}", {}).get("auc")
                if auc is not None:
                    table.setdefault(f"published {name}", {}).setdefault(m, {})[scene] = auc
        print(scene, file=sys.stderr, flush=True)
    head = "| configuration | method | " + " | ".join(SCENES) + " | mean (scenes listed) |"
    print(head + "\n|---|---|" + "---:|" * (len(SCENES) + 1))
    for config, per in table.items():
        for m, aucs in per.items():
            cells = [f"{aucs[s]:.4f}" if s in aucs else "-" for s in SCENES]
            print(f"| {config} | {'FE+' if 'raw' not in config else ''}{m.upper()} | {' | '.join(cells)} | "
                  f"{np.mean(list(aucs.values())):.4f} ({len(aucs)}) |")
    print(json.dumps({k: v for k, v in table.items() if not k.startswith("published")}))  # no ../shared values


if __name__ == "__main__":
    main()
