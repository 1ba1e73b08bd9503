"""``fencli train``: a FEN for your sensor and band count, by FERD's reverse distillation (``--recipe
ferd``) or, with no gradient step, the adaptive FEN fixed to your backgrounds (``--recipe adaptive``).

Needs the ``train`` extra (torch): imported only when the command runs, so ``fencli`` itself never
imports torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer

from fencli.cli import app
from fencli.errors import FencliError


@app.command()
def train(
    data: list[Path] = typer.Argument(..., help="Background scenes: .mat/.npy files or folders "
                                      "(a HAD100 root uses train/<sensor>/)."),
    bands: int = typer.Option(None, "--bands", "-b", help="Train on the first N bands (default: the "
                              "largest of 200, 100, 50 that every scene has; else all bands of the smallest)."),
    out: Path = typer.Option(Path("fencli-train"), "--out", "-o", help="Folder for everything the run writes."),
    val: list[Path] = typer.Option([], "--val", help="Scene with ground truth, scored with FE+GRX each epoch."),
    sensor: str = typer.Option("aviris_ng", help="HAD100 training sensor: aviris_ng, aviris or all."),
    crop: int = typer.Option(None, help="Crop side in pixels, a multiple of 8 (default: the largest, "
                             "up to 64, with an anomaly-free crop in every scene)."),
    batch_size: int = typer.Option(16, "--batch-size"),
    epochs: int = typer.Option(60),
    steps_per_epoch: int = typer.Option(None, "--steps-per-epoch",
                                        help="Default: one pass over the scenes' area in crops."),
    max_steps: int = typer.Option(None, "--max-steps", help="Stop after this many steps in all."),
    lr: float = typer.Option(0.005, help="Adam learning rate (betas 0.5, 0.999)."),
    seed: int = typer.Option(10),
    teacher_weights: Path = typer.Option(None, "--teacher-weights",
                                         help="torchvision wide_resnet101_2 ImageNet state dict (.pth)."),
    teacher_layer1: Path = typer.Option(None, "--teacher-layer1",
                                        help="FERD checkpoint folder: its enc.pt gives the teacher's layer1."),
    norm: str = typer.Option("crop", help="Scale each crop by its own min/max (crop, the reference) "
                             "or by its scene's (scene)."),
    bce_on_logits: bool = typer.Option(False, "--bce-on-logits",
                                       help="Feed BCE the logits (textbook) instead of the reference's "
                                       "sigmoided scores."),
    teacher_depth: int = typer.Option(1, "--teacher-depth", help="Teacher stages: 1 (fencli's light "
                                      "recipe, ~1/6 of the FLOPs) or 3 (the reference network)."),
    init: str = typer.Option("pca", help="ConvH start: pca (principal directions of the training "
                             "backgrounds) or random (the reference's Xavier init)."),
    recipe: str = typer.Option("ferd", help="ferd (reverse distillation, the default) or adaptive: no "
                               "gradient steps, the adaptive FEN fixed to the training backgrounds "
                               "(seconds; how fencli's shipped models are made)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
    force: bool = typer.Option(False, "--force", help="Start over in a non-empty --out."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train a FEN by reverse distillation on background crops (or build one: --recipe adaptive); write ONNX.

    Examples:\n
      fencli train scene.mat --max-steps 200                  # fencli's recipe, defaults from the data\n
      fencli train backgrounds/ --bands 100 --out runs/b100 --resume\n
      fencli train had100/ --teacher-depth 3 --init random --crop 64   # the reference network\n
      fencli train a.mat b.mat --recipe adaptive           # no gradient step: how fencli-B are made
    """
    from fencli.cli.export import stage  # export/ in a checkout, fencli.export installed

    TrainConfig, check_recipe = stage("run").TrainConfig, stage("run").check_recipe
    check_recipe(recipe)
    if recipe == "adaptive":  # NumPy and ONNX only: a runtime install builds it
        run = stage("fixed").build
    else:
        try:
            import torch  # noqa: F401  (the one dependency the runtime install lacks)
        except ImportError:
            raise FencliError("fencli train needs PyTorch: pip install 'fencli[train]' "
                              "(or --recipe adaptive)") from None
        run = stage("train").train
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    console = Console(stderr=True)
    cfg = TrainConfig(
        data=[str(p) for p in data], bands=bands, out=str(out), val=[str(p) for p in val], sensor=sensor,
        crop=crop, batch_size=batch_size, epochs=epochs, steps_per_epoch=steps_per_epoch,
        max_steps=max_steps, lr=lr, seed=seed, norm=norm, bce_on_logits=bce_on_logits, device=device,
        teacher_depth=teacher_depth, init=init, recipe=recipe,
        teacher_weights=str(teacher_weights) if teacher_weights else None,
        teacher_layer1=str(teacher_layer1) if teacher_layer1 else None)

    def echo(line: str) -> None:
        if line.startswith("step "):
            return  # the bar shows steps; the log file keeps them
        style = "bold red" if line.startswith("WARNING") else None
        console.print(line, style=style, markup=False, highlight=False)

    progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[losses]}"), TextColumn("{task.fields[rate]}"),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                        disable=quiet or not console.is_terminal)
    task = progress.add_task("train", total=None, losses="", rate="")

    def on_step(step: int, total: int, losses: dict[str, float], rate: float) -> None:
        shown = " ".join(f"{k} {v:.4f}" for k, v in losses.items())
        progress.update(task, completed=step, total=total, losses=shown, rate=f"{rate:.2f} crops/s")

    with progress:
        steps = {} if recipe == "adaptive" else {"on_step": on_step}
        result = run(cfg, resume=resume, force=force, echo=echo, **steps)
    if as_json:
        print(json.dumps(asdict(result), indent=1))
    else:
        auc = f", best epoch {result.best_epoch} FE+GRX mean AUC {result.val_auc:.4f}" if result.val_auc else ""
        made = f"FEN checkpoint {result.checkpoint}, ONNX" if result.checkpoint else "FEN ONNX"
        console.print(f"{made} {result.onnx}{auc}", markup=False)
