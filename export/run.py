"""What both recipes of ``fencli train`` share, without torch: the run's settings and result, its
folder and log, and the training scenes.

:mod:`export.train` (reverse distillation, torch) and :mod:`export.fixed` (the ``adaptive`` recipe,
NumPy and ONNX only) build on it, so a runtime install can build a fixed FEN without PyTorch.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import TrainScene, collect_files, load_scene
from fencli.errors import FencliError
from fencli.preprocess import band_count, select_bands

RECIPES = ("ferd", "adaptive")  # reverse distillation (export.train); no gradient steps (export.fixed)
STANDARD_BANDS = (200, 100, 50)  # the band counts fencli ships models for (and the published ones)
CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainConfig:
    data: list[str]
    bands: int | None  # None: the largest of STANDARD_BANDS every scene has
    out: str
    val: list[str] = field(default_factory=list)
    sensor: str = "aviris_ng"
    crop: int | None = None  # None: the largest multiple of 8 (<= 64) that fits every scene
    batch_size: int = 16
    epochs: int = 60
    steps_per_epoch: int | None = None    # default: one pass over the scenes' area in crops
    max_steps: int | None = None
    lr: float = 0.005
    betas: tuple[float, float] = (0.5, 0.999)
    seed: int = 10
    teacher_weights: str | None = None
    teacher_layer1: str | None = None
    norm: str = "crop"
    bce_on_logits: bool = False
    device: str = "cpu"
    teacher_depth: int = 1
    init: str = "pca"
    data_sha256: str = ""
    recipe: str = "ferd"


@dataclass
class TrainResult:
    checkpoint: str
    onnx: str
    best_epoch: int
    val_auc: float | None
    val_aucs: dict[str, float]
    grx_aucs: dict[str, float]
    epochs: int
    steps: int
    seconds: float
    final_loss: dict[str, float]
    teacher: str
    out: str


class RunLog:
    """Appends timestamped lines to ``train.log`` and hands each to ``echo`` (the CLI's console)."""

    def __init__(self, path: Path, echo: Callable[[str], None] | None = None) -> None:
        self.path, self.echo = path, echo

    def __call__(self, line: str) -> None:
        with self.path.open("a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        if self.echo is not None:
            self.echo(line)


def default_bands(available: list[int]) -> int:
    """The largest standard band count (200, 100, 50) every scene has; else all the smallest one has."""
    fewest = min(available)
    return next((b for b in STANDARD_BANDS if b <= fewest), fewest)


def files_sha256(files: list[Path]) -> str:
    """sha256 of the training files' bytes, concatenated in the order given (the data's identity)."""
    digest = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def check_new_out(out: Path, force: bool, remedy: str = "--force to start over") -> None:
    """Refuse an --out that is a file, already holds files (unless ``force``; ``remedy`` says what to
    pass) or cannot be created or written, before anything is written anywhere."""
    if out.exists() and not out.is_dir():
        raise FencliError(f"--out {out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise FencliError(f"{out} already holds files: pass {remedy}")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise FencliError(f"--out {out}: {parent} is not a writable folder")


def check_recipe(recipe: str) -> None:
    if recipe not in RECIPES:
        raise FencliError(f"--recipe must be one of {', '.join(RECIPES)}, not {recipe!r}")


def create_out(cfg: TrainConfig, force: bool) -> None:
    """Make the run folder (after every input was checked), clearing a forced run's old files."""
    out = Path(cfg.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise FencliError(f"--out {out}: cannot write there ({err.strerror})") from None
    if force:
        for stale in (out / CHECKPOINT, out / "train.log", out / "fen.onnx"):
            stale.unlink(missing_ok=True)


def load_training_data(cfg: TrainConfig) -> tuple[list[TrainScene], list[Path]]:
    """The training scenes cut to the run's bands; resolves ``cfg.bands`` when unset."""
    files = collect_files(cfg.data, cfg.sensor)
    scenes = [load_scene(f, None) for f in files]
    if cfg.bands is None:
        cfg.bands = default_bands([sc.cube.shape[2] for sc in scenes])
    for f, sc in zip(files, scenes):
        try:
            band_count(sc.cube.shape[2], cfg.bands)
        except FencliError as err:
            raise FencliError(f"{f}: {err}") from None
    scenes = [TrainScene(sc.name, np.ascontiguousarray(select_bands(sc.cube, cfg.bands)), sc.gt)
              for sc in scenes]
    return scenes, files
