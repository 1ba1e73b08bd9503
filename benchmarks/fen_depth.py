"""Issue 24: the adaptive FEN's core configurations on the six shared scenes, with leave-one-scene-out.

Every configuration is a core file (``python -m export.adaptive OUT --blocks N``) run through the
same adaptive FEN (ConvH from the scene, seeded output layer), so only the core differs. Raw GRX and
SLRX are computed alongside. All bands of every scene, one fixed configuration per row, nothing
tuned per scene. Leave-one-scene-out: for each scene, the configuration with the best mean on the
other five is scored on it; the mean of those is the selection's honest estimate. ``--baseline``
names configurations shown but not selectable (today's core: over the cost budget).

    python benchmarks/fen_depth.py CONFIG=CORE.onnx [CONFIG=CORE.onnx ...] [--centre CONFIG=CORE.onnx]
        [--shared ../shared] [--json benchmarks/results/fen_depth.json]

``--centre`` adds a configuration with the core's 3x3 convs cut to their centre tap (no spatial
context: the issue's third row), made from the given core in memory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:1] = [str(HERE.parent)]

import numpy as np  # noqa: E402

from fencli.adaptive import AdaptiveFEN  # noqa: E402
from fencli.detectors import DETECTORS  # noqa: E402
from fencli.io import read_scene  # noqa: E402
from fencli.metrics import roc_auc  # noqa: E402

SCENES = ("abu-airport-1", "abu-airport-2", "hydice", "sandiego", "pavia-centre", "muufl")
METHODS = ("grx", "slrx")


def centre_tap(core: Path, out: Path) -> Path:
    """``core`` with every 3x3 Conv weight zeroed off its centre tap."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(core))
    for t in model.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.ndim == 4 and a.shape[2:] == (3, 3):
            b = np.zeros_like(a)
            b[:, :, 1, 1] = a[:, :, 1, 1]
            t.CopyFrom(numpy_helper.from_array(b, t.name))
    onnx.save(model, str(out))
    return out


def loso(table: dict[str, dict[str, float]]) -> dict[str, float]:
    """Per held-out scene: the AUC on it of the configuration best on the mean of the other scenes."""
    out = {}
    for held in SCENES:
        rest = [s for s in SCENES if s != held]
        best = max(table, key=lambda c: np.mean([table[c][s] for s in rest]))
        out[held] = (best, table[best][held])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("configs", nargs="+", help="NAME=core.onnx")
    ap.add_argument("--centre", help="NAME=core.onnx: that core cut to its centre taps")
    ap.add_argument("--shared", type=Path, default=HERE.parents[1] / "shared")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--baseline", action="append", default=[], help="a configuration shown, not selectable")
    args = ap.parse_args()
    cores = dict(c.split("=", 1) for c in args.configs)
    if args.centre:
        name, path = args.centre.split("=", 1)
        cores[name] = str(centre_tap(Path(path), Path(path).with_suffix(".centre.onnx")))
    fens = {name: AdaptiveFEN("cpu", path=path) for name, path in cores.items()}
    table: dict[str, dict[str, dict[str, float]]] = {m: {} for m in METHODS}  # method -> config -> scene
    seconds: dict[str, float] = {name: 0.0 for name in fens}
    for scene in SCENES:
        sc = read_scene(args.shared / "data" / f"{scene}.mat")
        cube, gt = np.asarray(sc.cube), sc.gt
        for m in METHODS:
            table[m].setdefault("raw", {})[scene] = roc_auc(DETECTORS[m]().fit_score(cube), gt)
        for name, fen in fens.items():
            t0 = time.perf_counter()
            y = fen.enhance(cube)
            seconds[name] += time.perf_counter() - t0
            for m in METHODS:
                table[m].setdefault(name, {})[scene] = roc_auc(DETECTORS[m]().fit_score(y), gt)
        print(scene, {m: {c: round(v[scene], 4) for c, v in table[m].items()} for m in METHODS},
              file=sys.stderr, flush=True)
    for m in METHODS:
        print(f"\n{m.upper()}\n| configuration | " + " | ".join(SCENES) + " | mean |")
        print("|---|" + "---:|" * (len(SCENES) + 1))
        for c, aucs in table[m].items():
            print(f"| {c} | " + " | ".join(f"{aucs[s]:.4f}" for s in SCENES) + f" | {np.mean(list(aucs.values())):.4f} |")
        fe = {c: v for c, v in table[m].items() if c != "raw" and c not in args.baseline}
        sel = loso(fe)
        print(f"leave-one-scene-out ({m}): " + ", ".join(f"{s}: {c} {a:.4f}" for s, (c, a) in sel.items())
              + f"; mean {np.mean([a for _, a in sel.values()]):.4f}")
    result = {"scenes": list(SCENES), "auc": table, "fen_seconds_total": seconds, "cores": cores,
              "loso": {m: loso({c: v for c, v in table[m].items() if c != "raw" and c not in args.baseline})
                       for m in METHODS}, "not_selectable": args.baseline}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
