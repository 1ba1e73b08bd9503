"""FERD training: the loop, checkpoints and resume, validation, and the FEN it produces.

Everything a run writes lives in one folder (``out``):

    train.log        one line per step and per epoch
    config.json      the run's settings (a resumed run reuses them)
    checkpoint.pt    the latest state: step, trainable weights, BN statistics, Adam state, history
    fen/             the FEN checkpoint of the best validated epoch, in the published layout
    fen.onnx         its ONNX export

The frozen teacher's layer2/layer3 are not saved (160 MB of constants): a resumed run rebuilds them
from the same source and a fingerprint check refuses a different teacher.

fencli's recipe (the defaults) differs from the reference in three measured ways (README, "Training"):
the teacher stops at layer1 (``teacher_depth=1``, a seventh of the FLOPs), ConvH starts from the
principal directions of the training backgrounds (``init="pca"``) and the crop is the largest that
fits every scene. ``--teacher-depth 3 --init random --crop 64`` is the reference network.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .data import CropSampler, TrainScene, default_crop, load_scene
from .ferd import FERD, TEACHER_DEPTHS, check_crop, ferd_loss
from .fixed import background_stats
from .run import (CHECKPOINT, RunLog, TrainConfig, TrainResult, check_new_out, check_recipe,
                        create_out, files_sha256, load_training_data)
from fencli.convh import CONVH_WIDTH, principal_convh
from fencli.detectors import grx
from fencli.errors import FencliError
from fencli.metrics import roc_auc
from fencli.preprocess import fen_input

INITS = ("pca", "random")
# ConvH's Frobenius norm under PCA init: the expected norm of PyTorch's default init of that layer
# (kaiming-uniform a=sqrt(5): variance 1/(3 fan_in), so E||W||^2 = 64 B / (3 B) = 64/3 whatever B).
# The directions come from the data, the scale from the framework's own convention; measured on the
# four shared scenes it is level with an orthonormal (norm 8) or Xavier scale (within 0.002 AUC).
PCA_INIT_NORM = math.sqrt(CONVH_WIDTH / 3)

NOT_SAVED = ("layer2.", "layer3.")  # frozen teacher stages rebuilt on resume


def _atomic_save(obj: object, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _load_pt(path: Path) -> dict:
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # corrupt or foreign files: one line for the user
        raise FencliError(f"{path}: not a readable torch file ({type(err).__name__})") from None


# --- model -----------------------------------------------------------------------------------
def build_model(cfg: TrainConfig, log: Callable[[str], None]) -> tuple[FERD, str]:
    """The network with its teacher from ``cfg``; returns it and a one-line teacher description."""
    if cfg.teacher_weights and cfg.teacher_layer1:
        raise FencliError("give --teacher-weights or --teacher-layer1, not both")
    torch.manual_seed(cfg.seed)  # fixes every random init, the random teacher's included
    model = FERD(cfg.bands, depth=cfg.teacher_depth)
    if cfg.teacher_weights:
        sd = _load_pt(Path(cfg.teacher_weights))
        sd = sd.get("state_dict", sd) if isinstance(sd, dict) else sd
        try:
            model.load_teacher(sd)
        except (KeyError, ValueError) as err:
            raise FencliError(f"{cfg.teacher_weights}: {err}") from None
        return model, f"wide_resnet101_2 layers 1-3 from {cfg.teacher_weights}"
    if cfg.teacher_layer1:
        enc = Path(cfg.teacher_layer1) / "enc.pt"
        if not enc.is_file():
            raise FencliError(f"{cfg.teacher_layer1}: no enc.pt (a FERD checkpoint folder holds one)")
        sd = _load_pt(enc)
        try:
            model.load_teacher(sd.get("state_dict", sd), layers=("layer1",))
        except (KeyError, ValueError) as err:
            raise FencliError(f"{enc}: {err}") from None
        if cfg.teacher_depth == 1:
            return model, f"layer1 from {enc}"
        log(f"WARNING: teacher layer2/layer3 are RANDOM (seed {cfg.seed}); only layer1 comes from {enc}")
        return model, f"layer1 from {enc}, layer2-3 random (seed {cfg.seed})"
    if cfg.teacher_depth == 1:
        return model, f"random layer1 (seed {cfg.seed}), depth 1"
    log(f"WARNING: NO TEACHER WEIGHTS: the teacher is RANDOMLY initialised (seed {cfg.seed}). "
        "The paper uses ImageNet weights: pass --teacher-weights wide_resnet101_2.pth")
    return model, f"random (seed {cfg.seed})"


def init_convh_pca(model: FERD, scenes: list[TrainScene]) -> None:
    """Set ConvH to the leading principal directions of the scenes' backgrounds, at the norm
    :data:`PCA_INIT_NORM`."""
    weight = principal_convh(background_stats(scenes, model.bands), PCA_INIT_NORM)
    with torch.no_grad():
        model.convh.weight.copy_(torch.from_numpy(weight)[:, :, None, None])


def teacher_fingerprint(model: FERD) -> float:
    """A cheap checksum of the frozen teacher, to refuse resuming with a different one."""
    with torch.no_grad():
        return float(sum(p.double().abs().sum() for p in model.teacher_parameters()))


def fen_state(model: FERD) -> dict[str, dict[str, dict[str, torch.Tensor]]]:
    """The three published files' contents: convh.pt, enc.pt (layer1), pc.pt (conv1-3)."""
    sd = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    pick = {"convh": ("convh.",), "enc": ("layer1.",), "pc": ("conv1.", "conv2.", "conv3.")}
    return {f: {"state_dict": {k: v for k, v in sd.items() if k.startswith(p)}} for f, p in pick.items()}


def write_fen_checkpoint(state: dict, folder: Path) -> None:
    """Write a FEN checkpoint folder atomically (a half-written folder is never left in place)."""
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for name, obj in state.items():
        torch.save(obj, tmp / f"{name}.pt")
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        os.replace(folder, old)
        os.replace(tmp, folder)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        os.replace(tmp, folder)


def export_onnx(fen_dir: Path, onnx_path: Path, cfg: TrainConfig, steps: int) -> None:
    """ONNX export of the FEN checkpoint folder (parity-checked), with how it was made in its metadata."""
    from .checkpoint import load_checkpoint
    from .onnx_export import export_model

    recipe = {k: v for k, v in asdict(cfg).items() if k not in ("data", "val", "out", "device")}
    extra = {"recipe": json.dumps(recipe, sort_keys=True), "steps": str(steps), "seed": str(cfg.seed),
             "training_data": json.dumps([Path(f).name for f in cfg.data]),
             "training_data_sha256": cfg.data_sha256}
    export_model(load_checkpoint(fen_dir, "plain"), onnx_path, source="fencli train",
                 source_sha256=cfg.data_sha256, force=True, extra=extra)


# --- validation ------------------------------------------------------------------------------
def fe_grx_auc(fen: torch.nn.Module, cube: np.ndarray, gt: np.ndarray, device: str = "cpu") -> float:
    """AUC of GRX on the FEN output of one scene (``cube`` already cut to the FEN's bands)."""
    with torch.no_grad():
        y = fen(torch.from_numpy(fen_input(cube)).to(device))[0].cpu().numpy()
    return roc_auc(grx(y.transpose(1, 2, 0)), gt)


# --- the run ---------------------------------------------------------------------------------
def _prepare_out(cfg: TrainConfig, resume: bool, force: bool) -> tuple[TrainConfig, dict | None]:
    out = Path(cfg.out)
    ckpt = out / CHECKPOINT
    if resume:
        if not ckpt.is_file():
            raise FencliError(f"{out}: nothing to resume (no {CHECKPOINT})")
        state = _load_pt(ckpt)
        old = {"teacher_depth": 3, "init": "random"}  # runs from before fencli's recipe existed
        saved = TrainConfig(**{**old, **state["config"], "betas": tuple(state["config"]["betas"])})
        # what may change on resume: how long to run, where to run it
        saved.epochs, saved.max_steps, saved.device = cfg.epochs, cfg.max_steps, cfg.device
        return saved, state
    check_new_out(out, force, "--resume to continue or --force to start over")
    return cfg, None


def train(cfg: TrainConfig, *, resume: bool = False, force: bool = False,
          echo: Callable[[str], None] | None = None,
          on_step: Callable[[int, int, dict[str, float], float], None] | None = None) -> TrainResult:
    """Train FERD; ``on_step(step, total, losses, crops_per_s)`` feeds a progress display. The
    ``adaptive`` recipe has no steps: :func:`export.fixed.build`."""
    check_recipe(cfg.recipe)
    if cfg.recipe == "adaptive":
        from .fixed import build

        return build(cfg, resume=resume, force=force, echo=echo)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise FencliError("--device cuda: no CUDA device is available to torch")
    if cfg.device not in ("cpu", "cuda"):
        raise FencliError(f"--device must be cpu or cuda, not {cfg.device!r}")
    if cfg.teacher_depth not in TEACHER_DEPTHS:
        raise FencliError(f"--teacher-depth must be one of {', '.join(map(str, TEACHER_DEPTHS))}")
    if cfg.init not in INITS:
        raise FencliError(f"--init must be one of {', '.join(INITS)}, not {cfg.init!r}")
    for name in ("batch_size", "epochs"):
        if getattr(cfg, name) < 1:
            raise FencliError(f"--{name.replace('_', '-')} must be at least 1")
    if cfg.max_steps is not None and cfg.max_steps < 1:
        raise FencliError("--max-steps must be at least 1")
    # Every input is checked before the run folder is touched: a bad call leaves nothing behind.
    cfg, state = _prepare_out(cfg, resume, force)
    scenes, files = load_training_data(cfg)
    if cfg.crop is None:
        cfg.crop = default_crop(scenes)
    try:
        check_crop(cfg.crop)
    except ValueError as err:
        raise FencliError(f"--crop: {err}") from None
    sampler = CropSampler(scenes, cfg.crop, cfg.norm)
    val = [load_scene(f, cfg.bands, need_gt=True) for f in cfg.val]
    if state is None:
        cfg.data_sha256 = files_sha256(files)
        create_out(cfg, force)
    elif cfg.data_sha256 and files_sha256(files) != cfg.data_sha256:
        raise FencliError("--resume: the training data differ from the run's (other files or contents)")
    out = Path(cfg.out)
    log = RunLog(out / "train.log", echo)
    per_epoch = cfg.steps_per_epoch or max(1, math.ceil(sampler.windows_per_epoch() / cfg.batch_size))
    cfg.steps_per_epoch = per_epoch
    total = cfg.epochs * per_epoch if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * per_epoch)

    model, teacher = build_model(cfg, log)
    if cfg.init == "pca" and state is None:
        init_convh_pca(model, sampler.scenes)
        teacher += ", ConvH from the data's principal directions"
    model.to(cfg.device)
    opt = torch.optim.Adam(model.trainable_parameters(), lr=cfg.lr, betas=cfg.betas)
    history: list[dict] = []
    best = {"epoch": 0, "auc": -math.inf, "aucs": {}}
    step, spent = 0, 0.0  # spent: training seconds of earlier sessions of this run
    if state is None:
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
        log(f"start: {len(sampler.scenes)} scenes, crop {cfg.crop}, batch {cfg.batch_size}, "
            f"{per_epoch} steps/epoch, {total} steps, teacher {teacher}")
    else:
        if abs(state["teacher_fingerprint"] - teacher_fingerprint(model)) > 1e-6 * state["teacher_fingerprint"]:
            raise FencliError("--resume: the rebuilt teacher differs from the run's (other weights?)")
        missing, unexpected = model.load_state_dict(state["model"], strict=False)
        if unexpected or any(not k.startswith(NOT_SAVED) for k in missing):
            raise FencliError(f"{out / CHECKPOINT}: does not match this network")
        opt.load_state_dict(state["optimizer"])
        step, history, best, spent = state["step"], state["history"], state["best"], state.get("seconds", 0.0)
        log(f"resume at step {step} of {total}")

    grx_aucs = {sc.name: roc_auc(grx(sc.cube), sc.gt) for sc in val}
    for name, a in grx_aucs.items():
        log(f"val {name}: GRX AUC {a:.4f}")

    def checkpoint() -> None:
        saved = {k: v for k, v in model.state_dict().items() if not k.startswith(NOT_SAVED)}
        _atomic_save({"step": step, "config": asdict(cfg), "model": saved, "optimizer": opt.state_dict(),
                      "history": history, "best": best, "teacher_fingerprint": teacher_fingerprint(model),
                      "seconds": spent + time.time() - t0},
                     out / CHECKPOINT)

    def end_of_epoch() -> None:
        epoch = math.ceil(step / per_epoch)
        model.eval()
        fen = model.fen().to(cfg.device)
        aucs = {sc.name: fe_grx_auc(fen, sc.cube, sc.gt, cfg.device) for sc in val}
        mean = float(np.mean(list(aucs.values()))) if aucs else None
        history.append({"epoch": epoch, "step": step, "loss": last, "val": aucs, "val_mean": mean})
        improved = mean is not None and mean > best["auc"]
        if improved or not val:
            best.update(epoch=epoch, auc=mean if mean is not None else -math.inf, aucs=aucs)
            write_fen_checkpoint(fen_state(model), out / "fen")
        checkpoint()
        shown = " ".join(f"{k} {v:.4f}" for k, v in aucs.items())
        log(f"epoch {epoch} step {step}: loss {last.get('total', float('nan')):.4f}"
            + (f" | FE+GRX {shown} mean {mean:.4f}{' (best)' if improved else ''}" if val else ""))
        model.train()

    t0, last = time.time(), (history[-1]["loss"] if history else {})
    model.train()
    while step < total:
        x, _ = sampler.draw(cfg.batch_size, cfg.seed, step)
        x = torch.from_numpy(x).to(cfg.device)
        t = time.time()
        terms = ferd_loss(x, model(x), cfg.bce_on_logits)
        opt.zero_grad(set_to_none=True)
        terms.total.backward()
        opt.step()
        step += 1
        last = terms.items()
        if not all(math.isfinite(v) for v in last.values()):
            checkpoint()
            raise FencliError(f"step {step}: the loss is not finite ({last}); try a lower --lr")
        rate = cfg.batch_size / max(time.time() - t, 1e-9)
        log(f"step {step}/{total} " + " ".join(f"{k} {v:.5f}" for k, v in last.items()) + f" {rate:.2f} crops/s")
        if on_step is not None:
            on_step(step, total, last, rate)
        if step % per_epoch == 0 or step == total:
            end_of_epoch()
    if not (out / "fen").is_dir():  # a resumed run that was already complete
        write_fen_checkpoint(fen_state(model), out / "fen")
    export_onnx(out / "fen", out / "fen.onnx", cfg, step)
    seconds = spent + time.time() - t0
    log(f"done: {step} steps in {seconds:.1f} s; FEN {out / 'fen'}, ONNX {out / 'fen.onnx'}")
    return TrainResult(
        checkpoint=str(out / "fen"), onnx=str(out / "fen.onnx"), best_epoch=best["epoch"],
        val_auc=best["auc"] if val else None, val_aucs=best["aucs"], grx_aucs=grx_aucs,
        epochs=math.ceil(step / per_epoch), steps=step, seconds=round(seconds, 2),
        final_loss=last, teacher=teacher, out=str(out))
