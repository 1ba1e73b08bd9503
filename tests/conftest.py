"""Shared fixtures. Tests that need ``../shared`` (real scenes, published checkpoints) skip with a
printed reason when it is absent; synthetic scenes keep the suite meaningful without it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FENCLI_SHARED", ROOT.parent / "shared"))
SCENES = ("abu-airport-1", "abu-airport-2", "hydice", "sandiego")
CHECKPOINTS = {"ferd-50": "50bands", "ferd-100": "100bands", "ferd-200": "200bands",
               "ferd-200-supp": "200bands-supp"}


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared is not beside the checkout)")
    return path


@pytest.fixture(scope="session")
def shared() -> Path:
    """The ``../shared`` folder; skips the test when it is absent."""
    return _need(SHARED / "README.md").parent


@pytest.fixture(scope="session")
def auc_reference(shared: Path) -> dict:
    return json.loads((shared / "reference" / "auc_reference.json").read_text())


def load_shared_scene(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(cube H x W x bands, ground truth H x W) of a shared scene; skips when absent."""
    import scipy.io

    mat = scipy.io.loadmat(_need(SHARED / "data" / f"{name}.mat"))
    return mat["data"], mat["map"]


def planted_scene(h: int = 40, w: int = 48, bands: int = 30, n_anomalies: int = 6,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth low-rank background with a few single-pixel targets of a foreign spectrum."""
    rng = np.random.default_rng(seed)
    endmembers = rng.random((4, bands)) + np.linspace(0.5, 1.5, bands)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    abundances = np.stack([np.sin(3 * yy) ** 2, np.cos(2 * xx) ** 2, yy * xx, 1 - yy], -1)
    cube = abundances @ endmembers + 0.01 * rng.standard_normal((h, w, bands))
    gt = np.zeros((h, w), np.uint8)
    target = rng.random(bands) * 2
    for _ in range(n_anomalies):
        r, c = rng.integers(2, h - 2), rng.integers(2, w - 2)
        cube[r, c] = 0.5 * cube[r, c] + 0.5 * target
        gt[r, c] = 1
    return cube.astype(np.float32), gt
