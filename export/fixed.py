"""``fencli train --recipe adaptive``: a fixed FEN with no gradient step and no torch.

The adaptive FEN's construction (:mod:`fencli.adaptive`) fixed to the training backgrounds: ConvH is
the leading eigenvectors of their pooled FEN-input moment, scaled to unit mean-square output;
layer1 and the head's first conv are the seeded ``adaptive-core.onnx``; the output layer is its
seeded draw for B bands. The graph is the core with those three inputs frozen into initializers,
so ONNX Runtime runs it as any fixed FEN. Issue 11's ablation found that what training delivers is
ConvH, and a ConvH from the data's principal directions level with a trained one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

import fencli
from .data import TrainScene
from .run import (RunLog, TrainConfig, TrainResult, check_new_out, check_recipe, create_out,
                        files_sha256, load_training_data)
from fencli.adaptive import (CORE_INPUTS, CORE_OUTPUT, OUTPUT_SEED, SceneFen, get_adaptive,
                             output_layer, scene_convh)
from fencli.detectors import RXStats
from fencli.threads import one_blas_thread
from fencli.errors import FencliError
from fencli.output import atomic_path
from fencli.preprocess import fen_scale
from fencli.runtime import FORMAT, expected_preprocessing

def background_stats(scenes: list[TrainScene], bands: int) -> RXStats:
    """Statistics of the scenes' anomaly-free pixels, each scene scaled as the FEN sees it (one
    global min-max), pooled: the data both ConvH starts take their directions from."""
    stats = RXStats(bands)
    for sc in scenes:
        x = fen_scale(sc.cube)
        stats.update(x[~sc.gt] if sc.gt is not None else x)
    return stats


def frozen(convh: np.ndarray, meta: dict[str, str]) -> bytes:
    """The installed core with ``convh`` (``64 x B``) and the seeded ``B``-band output layer frozen
    into initializers, ``meta`` as its metadata; checked against the adaptive FEN's own forward pass
    with the same weights."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    bands = convh.shape[1]
    core = get_adaptive("cpu")
    proto = onnx.load(str(core.path))
    weight, bias = output_layer(bands, core.info.head_width)
    fixed = {"convh": convh[:, :, None, None], "w_out": weight[:, :, None, None], "b_out": bias}
    graph = proto.graph
    graph.initializer.extend(numpy_helper.from_array(np.ascontiguousarray(v, dtype=np.float32), k)
                             for k, v in fixed.items())
    kept = [i for i in graph.input if i.name not in fixed]
    del graph.input[:]
    graph.input.extend(kept)
    for value in (graph.input[0], graph.output[0]):
        value.type.tensor_type.shape.dim[1].dim_value = bands
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = f"fencli FEN, {bands} bands: the adaptive core with ConvH fixed to its training data"
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    x = np.random.default_rng(0).uniform(-0.1, 0.1, (1, bands, 23, 19)).astype(np.float32)
    got = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {CORE_INPUTS[0]: x})[0]
    want = SceneFen(convh, core)(x)
    if (diff := float(np.abs(got - want).max() / np.abs(want).max())) > 1e-6:
        raise FencliError(f"the frozen FEN differs from the adaptive FEN by {diff:.2e}")
    return data


def build(cfg: TrainConfig, *, resume: bool = False, force: bool = False,
          echo: Callable[[str], None] | None = None) -> TrainResult:
    """Build the fixed FEN of ``cfg``'s scenes into ``cfg.out`` (``fen.onnx``, ``config.json``,
    ``train.log``): every input is checked before the folder is touched, as for a training run."""
    check_recipe(cfg.recipe)
    out = Path(cfg.out)
    if resume:
        raise FencliError("--resume: --recipe adaptive has no steps to resume; run it again (--force)")
    check_new_out(out, force)
    scenes, files = load_training_data(cfg)
    cfg.data_sha256 = files_sha256(files)
    create_out(cfg, force)
    log = RunLog(out / "train.log", echo)
    t0 = time.time()
    with one_blas_thread():  # the same bits on any machine and load: shipped weights rebuild exactly
        convh = scene_convh(background_stats(scenes, cfg.bands), None)
    core = get_adaptive("cpu")
    recipe = {"recipe": cfg.recipe, "bands": cfg.bands, "convh": "pooled background moment, unit mean square",
              "core": core.path.name, "core_sha256": files_sha256([core.path]), "core_seed": core.info.seed,
              "output_seed": OUTPUT_SEED, "teacher_weights": None, "teacher_layer1": None}
    meta = {"format": FORMAT, "bands": str(cfg.bands), "variant": "plain", "head_width": str(core.info.head_width),
            "preprocessing": json.dumps(expected_preprocessing(cfg.bands), sort_keys=True),
            "source": "fencli train", "source_sha256": cfg.data_sha256, "fencli_version": fencli.__version__,
            "input_name": CORE_INPUTS[0], "output_name": CORE_OUTPUT,
            "recipe": json.dumps(recipe, sort_keys=True), "steps": "0", "seed": str(core.info.seed),
            "training_data": json.dumps([Path(f).name for f in cfg.data]),
            "training_data_sha256": cfg.data_sha256,
            "receptive_radius": str(core.info.receptive_radius)}  # the tile halo it needs (the core's)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    with atomic_path(out / "fen.onnx", force=True) as tmp:
        Path(tmp).write_bytes(frozen(convh, meta))
    seconds = time.time() - t0
    log(f"done: 0 steps in {seconds:.1f} s; ONNX {out / 'fen.onnx'} (recipe adaptive, {len(scenes)} scenes)")
    return TrainResult(checkpoint="", onnx=str(out / "fen.onnx"), best_epoch=0, val_auc=None, val_aucs={},
                       grx_aucs={}, epochs=0, steps=0, seconds=round(seconds, 2), final_loss={},
                       teacher="none (recipe adaptive: no gradient steps)", out=str(out))
