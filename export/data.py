"""Training data for FERD: background scenes and random anomaly-free crops of them.

FERD learns backgrounds only, so no training crop may contain a pixel marked anomalous in its
scene's ground truth. A batch is a pure function of ``(seed, step)``: a resumed run draws exactly
the crops the uninterrupted run would have drawn, with no sampler state to save.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fencli.errors import FencliError
from fencli.io import read_scene
from fencli.preprocess import fen_scale, select_bands

SCENE_SUFFIXES = (".mat", ".npy", ".npz", ".h5", ".hdf5", ".he5", ".hdr")  # one file per scene
SENSORS = ("aviris_ng", "aviris", "all")


@dataclass
class TrainScene:
    name: str
    cube: np.ndarray              # H x W x B, first ``bands`` bands
    gt: np.ndarray | None         # H x W bool, True = anomalous (never inside a crop)


MAX_CROP = 64  # the reference's crop; the default crop is the largest multiple of 8 up to it that fits


def load_scene(path: str | Path, bands: int | None, need_gt: bool = False) -> TrainScene:
    """A scene's first ``bands`` bands (all when None) as float32 and its ground truth (bool) if any."""
    scene = read_scene(path, constant_bands="keep")  # NaN, tiny or constant cubes are errors
    cube = np.ascontiguousarray(select_bands(scene.cube, bands), dtype=np.float32)
    if scene.gt is None and need_gt:
        raise FencliError(f"{path}: a validation scene needs a ground-truth map (key 'map')")
    return TrainScene(scene.name, cube, scene.gt)


def collect_files(paths: list[str | Path], sensor: str = "aviris_ng") -> list[Path]:
    """Scene files named directly or found in folders; a HAD100 root contributes ``train/<sensor>``."""
    if sensor not in SENSORS:
        raise FencliError(f"--sensor must be one of {', '.join(SENSORS)}, not {sensor!r}")
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            had = p / "train"
            subdirs = [had / s for s in (("aviris_ng", "aviris") if sensor == "all" else (sensor,))]
            folders = [d for d in subdirs if d.is_dir()] if had.is_dir() else [p]
            if had.is_dir() and not folders:
                raise FencliError(f"{p}: HAD100 layout without train/{sensor}/")
            found = sorted(f for d in folders for f in d.iterdir() if f.suffix in SCENE_SUFFIXES)
            if not found:
                raise FencliError(f"{p}: no scene file ({', '.join(SCENE_SUFFIXES)}) inside")
            files += found
        else:
            raise FencliError(f"{p}: no such file or folder")
    if not files:
        raise FencliError("no training data given")
    return files


def scale_crop(x: np.ndarray) -> np.ndarray:
    """One min/max over the crop to [-0.1, 0.1], as the reference scales each training image."""
    lo, hi = float(x.min()), float(x.max())
    return fen_scale(x, (lo, hi if hi > lo else lo + 1.0))


def clean_origins(gt: np.ndarray | None, h: int, w: int, crop: int) -> np.ndarray:
    """Flat indices (into the ``(h-crop+1) x (w-crop+1)`` grid) of crops holding no anomalous pixel."""
    if h < crop or w < crop:
        return np.empty(0, np.int64)
    if gt is None:
        return np.arange((h - crop + 1) * (w - crop + 1))
    s = np.zeros((h + 1, w + 1), np.int64)  # integral image: window sums in O(1) each
    s[1:, 1:] = gt.astype(np.int64).cumsum(0).cumsum(1)
    win = s[crop:, crop:] - s[:-crop, crop:] - s[crop:, :-crop] + s[:-crop, :-crop]
    return np.flatnonzero(win.reshape(-1) == 0)


def largest_clean_crop(scene: TrainScene, limit: int = MAX_CROP) -> int:
    """The largest multiple of 8 (at most ``limit``) for which ``scene`` holds an anomaly-free crop; 0 if none."""
    h, w, _ = scene.cube.shape
    for crop in range(min(limit, h, w) // 8 * 8, 0, -8):
        if clean_origins(scene.gt, h, w, crop).size:
            return crop
    return 0


def default_crop(scenes: list[TrainScene]) -> int:
    """The crop for these scenes: the largest multiple of 8, at most 64, that fits every one of them
    (the smallest scene decides, so no scene is dropped from training)."""
    sizes = {sc.name: largest_clean_crop(sc) for sc in scenes}
    small = [name for name, c in sizes.items() if c == 0]
    if small:
        raise FencliError(f"{small[0]}: no anomaly-free 8x8 crop (the smallest crop training takes)")
    return min(sizes.values())


class CropSampler:
    """Random anomaly-free ``crop x crop`` windows with the 8 flips/rotations, as N x B x c x c."""

    def __init__(self, scenes: list[TrainScene], crop: int, norm: str = "crop") -> None:
        if norm not in ("crop", "scene"):
            raise FencliError(f"norm must be 'crop' or 'scene', not {norm!r}")
        self.crop, self.norm = crop, norm
        self.scenes, self.origins = [], []
        for sc in scenes:
            h, w, _ = sc.cube.shape
            origins = clean_origins(sc.gt, h, w, crop)
            if origins.size:
                cube = sc.cube
                if norm == "scene":
                    cube = fen_scale(cube)
                self.scenes.append(TrainScene(sc.name, cube.astype(np.float32), sc.gt))
                self.origins.append(origins)
        if not self.scenes:
            names = ", ".join(sc.name for sc in scenes)
            raise FencliError(f"no {crop}x{crop} crop free of ground-truth anomalies exists in {names}: "
                              f"use a smaller --crop or other scenes")
        counts = np.array([o.size for o in self.origins], np.float64)
        self.weights = counts / counts.sum()  # each clean window equally likely

    def windows_per_epoch(self) -> float:
        """How many crop-sized tiles the clean scenes hold: a pass over the data, in crops."""
        return sum(sc.cube.shape[0] * sc.cube.shape[1] for sc in self.scenes) / self.crop ** 2

    def draw(self, n: int, seed: int, step: int) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        """Batch ``step`` of run ``seed``: (N x B x c x c float32, [(scene, row, col)] origins)."""
        rng = np.random.default_rng([seed, step])
        c = self.crop
        out = np.empty((n, self.scenes[0].cube.shape[2], c, c), np.float32)
        where = []
        for i in range(n):
            k = int(rng.choice(len(self.scenes), p=self.weights))
            sc, origins = self.scenes[k], self.origins[k]
            r, col = divmod(int(origins[rng.integers(origins.size)]), sc.cube.shape[1] - c + 1)
            patch = np.rot90(sc.cube[r:r + c, col:col + c], int(rng.integers(4)))
            if rng.integers(2):
                patch = patch[:, ::-1]
            if self.norm == "crop":
                patch = scale_crop(patch)
            out[i] = patch.transpose(2, 0, 1)
            where.append((k, r, col))
        return out, where
