"""Which part of the FEN matters: FE+GRX AUC with parts of the weights random, on the shared scenes.

    python -m benchmarks.fen_ablation [--seeds 3] [--json benchmarks/results/fen_ablation.json]

Per band count B (50, 100, 200), over the shared scenes with at least B bands (first B bands), the
mean FE+GRX AUC of: the published checkpoint; every weight random (PyTorch's default init, one row
per seed, then their mean); published ConvH + layer1 with a random head; published ConvH only;
published layer1 only; fencli's PCA-initialised ConvH before any training (the step-0 network of
``fencli train``), and the same at the published ConvH's Frobenius norm (the configuration issue 11
measured on 15 scenes); the shipped ``fencli-B``; raw GRX. The published weights are only measured here,
never copied into anything fencli ships. Needs ``../shared`` and torch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from export.checkpoint import load_checkpoint
from export.data import TrainScene
from export.ferd import FERD
from export.fen import FEN
from export.train import fe_grx_auc, init_convh_pca
from fencli.detectors import grx
from fencli.io import read_scene
from fencli.metrics import roc_auc
from fencli.models import find_installed
from fencli.engine import run
from fencli.runtime import FENSession

SHARED = Path(__file__).resolve().parents[2] / "shared"
SCENES = ("abu-airport-1", "abu-airport-2", "hydice", "sandiego")
PARTS = {"convh": ("convh.",), "layer1": ("layer1.",), "head": ("conv1.", "conv2.")}


def mixed(published: FEN, keep: tuple[str, ...], seed: int) -> FEN:
    """A FEN with PyTorch's default init (seeded) except the ``keep`` parts, taken from ``published``."""
    torch.manual_seed(seed)
    fen = FEN(published.bands, published.head_width)
    own = published.state_dict()
    prefixes = tuple(p for part in keep for p in PARTS[part])
    fen.load_state_dict({**fen.state_dict(), **{k: v for k, v in own.items() if k.startswith(prefixes)}})
    return fen.eval()


def pca_step0(scenes: list[TrainScene], bands: int, seed: int = 10, norm: float | None = None) -> FEN:
    """The network ``fencli train`` starts from: its seeded random layer1/head, ConvH from PCA (at
    Frobenius ``norm`` when given, else ``fencli train``'s)."""
    torch.manual_seed(seed)
    model = FERD(bands, depth=1)
    init_convh_pca(model, scenes)
    if norm is not None:
        with torch.no_grad():
            model.convh.weight *= norm / model.convh.weight.norm()
    return model.fen()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--bands", default="50,100,200", help="comma-separated band counts")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    loaded = {n: read_scene(SHARED / "data" / f"{n}.mat") for n in SCENES}
    table: dict[str, dict] = {}
    for bands in map(int, args.bands.split(",")):
        names = [n for n in SCENES if loaded[n].cube.shape[2] >= bands]
        cubes = {n: np.ascontiguousarray(loaded[n].cube[:, :, :bands], dtype=np.float32) for n in names}
        gts = {n: loaded[n].gt.astype(bool) for n in names}
        published = load_checkpoint(SHARED / "ferd-checkpoints" / f"{bands}bands", "plain").eval()
        rows: dict[str, dict[str, float]] = {}

        def score(label: str, fen: FEN) -> None:
            rows[label] = {n: fe_grx_auc(fen, cubes[n], gts[n]) for n in names}
            print(bands, label, {k: round(v, 4) for k, v in rows[label].items()}, flush=True)

        rows["raw GRX"] = {n: roc_auc(grx(cubes[n].astype(np.float64)), gts[n]) for n in names}
        score("published checkpoint", published)
        for s in range(args.seeds):
            score(f"every weight random (seed {s})", mixed(published, (), s))
        score("published ConvH + layer1, random head", mixed(published, ("convh", "layer1"), 0))
        score("published ConvH only, random layer1 and head", mixed(published, ("convh",), 0))
        score("published layer1 only", mixed(published, ("layer1",), 0))
        bg = [TrainScene(n, cubes[n], gts[n]) for n in names]
        score("fencli PCA ConvH, random layer1 and head (step 0 of fencli train)", pca_step0(bg, bands))
        norm = float(published.convh.weight.norm())  # measured here only: issue 11's configuration
        score("PCA ConvH at the published ConvH's norm, random layer1 and head", pca_step0(bg, bands, norm=norm))
        if path := find_installed(f"fencli-{bands}"):
            session = FENSession(path, device="cpu")
            rows[f"fencli-{bands} (shipped)"] = {n: run(cubes[n], "grx", enhancer=session, gt=gts[n]).auc
                                                 for n in names}
        table[str(bands)] = {"scenes": names, "rows": rows,
                             "mean": {k: float(np.mean(list(v.values()))) for k, v in rows.items()}}
    first = next(iter(table.values()))
    seeds = [k for k in first["rows"] if k.startswith("every weight random")]
    print("\n| FEN weights | " + " | ".join(f"FE+GRX, {b} bands" for b in table) + " |")
    print("|---|" + "---:|" * len(table))
    labels = list(dict.fromkeys(k for t in table.values() for k in t["rows"]))
    for label in labels:
        print(f"| {label} | " + " | ".join(f"{t['mean'][label]:.4f}" if label in t["mean"] else ""
                                         for t in table.values()) + " |")
        if label == seeds[-1]:
            print("| every weight random, mean of the seeds | " + " | ".join(
                f"{np.mean([t['mean'][k] for k in seeds]):.4f}" for t in table.values()) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
