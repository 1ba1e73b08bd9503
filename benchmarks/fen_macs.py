"""Multiply-adds per output pixel of a FEN graph: the sum of its Conv weights (issue 24's measure).

A ``k x k`` conv from ``c_in`` to ``c_out`` channels costs ``c_out * c_in * k * k`` multiply-adds per
pixel it computes, i.e. the size of its weight tensor; the sum over the graph's Conv nodes is the
cost per pixel, ignoring the few pixels of reflect padding each 3x3 conv also computes (2 rows and
columns per block: under 5% for a 100 x 100 scene). For the adaptive core, whose ConvH and output
layer are graph inputs, ``--bands B`` adds their ``64 B + head_width B``.

    python benchmarks/fen_macs.py weights/adaptive-core.onnx weights/fencli-200.onnx [--bands 200]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def conv_macs(path: str | Path, bands: int | None = None) -> dict[str, int]:
    """``{"stored": MACs of the Conv weights stored in the graph, "inputs": of those fed as inputs
    (the adaptive core's ConvH and output layer, for ``bands``), "total": both}`` per pixel."""
    import onnx

    model = onnx.load(str(path))
    sizes = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer}
    head = int({p.key: p.value for p in model.metadata_props}.get("head_width", 256))
    inputs = {"convh": 64 * (bands or 0), "w_out": head * (bands or 0)}
    stored = fed = 0
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        w = node.input[1]
        if w in sizes:
            stored += sizes[w]
        elif w in inputs:
            fed += inputs[w]
        else:  # a weight made by another node (none in fencli's graphs)
            raise ValueError(f"{path}: Conv {node.name} weight {w} is neither stored nor a known input")
    return {"stored": stored, "inputs": fed, "total": stored + fed}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--bands", type=int, default=200, help="B for the adaptive core's fed ConvH and output layer")
    args = ap.parse_args()
    for m in args.models:
        print(json.dumps({"model": str(m), "bands": args.bands, **conv_macs(m, args.bands)}))


if __name__ == "__main__":
    main()
