"""Ship a model ``fencli train`` made: measure it, stamp the measurements in, register it.

    python -m export.ship RUN_DIR NAME --eval scene.mat [--eval ...] [--description TEXT]

reads ``RUN_DIR/fen.onnx`` (its metadata already says how it was trained), measures FE+GRX and
FE+SLRX AUC on each evaluation scene that has the model's band count (ONNX Runtime, the shipped
path), writes ``weights/NAME.onnx`` with those AUCs in ``metadata_props["auc"]`` and records the
file's sha256 in ``weights/registry.json`` as an ``embedded`` model. Only a model whose metadata says
``source = fencli train`` is accepted: nothing converted from a published checkpoint can ship.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from fencli.errors import FencliError
from fencli.io import read_scene
from fencli.models import REGISTRY, REPO_WEIGHTS
from fencli.engine import run
from fencli.output import atomic_path
from fencli.runtime import FENSession

TRAINED_SOURCE = "fencli train"
SHIPPED_METHODS = ("grx", "slrx")


def measure(model: Path, scenes: list[Path]) -> dict[str, dict[str, float]]:
    """``{scene: {"GRX", "FE+GRX", "SLRX", "FE+SLRX"}}`` for the scenes with enough bands."""
    session = FENSession(model, device="cpu")
    out: dict[str, dict[str, float]] = {}
    for path in scenes:
        scene = read_scene(path)
        if scene.gt is None:
            raise FencliError(f"{path}: an evaluation scene needs ground truth")
        if scene.cube.shape[2] < session.bands:
            continue
        row = {}
        for method in SHIPPED_METHODS:
            row[method.upper()] = run(scene.cube, method, bands=session.bands, gt=scene.gt).auc
            row["FE+" + method.upper()] = run(scene.cube, method, enhancer=session, gt=scene.gt).auc
        out[scene.name] = {k: round(float(v), 4) for k, v in row.items()}
    return out


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ship(run_dir: Path, name: str, scenes: list[Path], description: str = "",
         dest: Path = REPO_WEIGHTS, registry: Path = REGISTRY) -> Path:
    """Write ``dest/NAME.onnx`` (metadata + AUCs) and its ``embedded`` registry entry; returns the file."""
    import onnx

    src = run_dir / "fen.onnx"
    proto = onnx.load(str(src))
    meta = {p.key: p.value for p in proto.metadata_props}
    if meta.get("source") != TRAINED_SOURCE:
        raise FencliError(f"{src}: source is {meta.get('source')!r}, not {TRAINED_SOURCE!r}: only models "
                          "fencli trained can ship")
    done = [ln for ln in (run_dir / "train.log").read_text().splitlines() if " done: " in ln]
    if done:  # "... done: 60 steps in 591.6 s; ..." -> the run's training seconds, resumed parts included
        meta["train_seconds"] = done[-1].split(" steps in ")[1].split(" s")[0]
    aucs = measure(src, scenes)
    meta["auc"] = json.dumps(aucs, sort_keys=True)
    print(json.dumps(aucs, indent=1))
    meta["name"] = name
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    target = dest / f"{name}.onnx"
    with atomic_path(target, force=True) as tmp:
        onnx.save(proto, str(tmp))
    doc = json.loads(registry.read_text())
    bands = int(meta["bands"])
    doc["models"][name] = {
        "kind": "embedded", "bands": bands, "variant": meta["variant"], "head_width": int(meta["head_width"]),
        "source": TRAINED_SOURCE, "description": description or f"fencli's own FEN, first {bands} bands",
        "sha256": file_sha256(target), "source_sha256": "",  # no published checkpoint in it
        "training_data_sha256": meta["training_data_sha256"]}
    with atomic_path(registry, force=True) as tmp:
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
    return target


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("name")
    ap.add_argument("--eval", type=Path, action="append", default=[], help="scene with ground truth")
    ap.add_argument("--description", default="")
    args = ap.parse_args(argv)
    try:
        target = ship(args.run_dir, args.name, args.eval, args.description)
    except FencliError as err:
        raise SystemExit(f"export.ship: {err}") from None
    print(target)


if __name__ == "__main__":
    main()
