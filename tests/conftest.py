"""Shared fixtures. Tests that need ``../shared`` (real scenes, published checkpoints) skip with a
printed reason when it is absent; synthetic scenes keep the suite meaningful without it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from fencli.models import registry
from fencli.synthetic import planted_scene  # noqa: F401  (re-exported for the tests)

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FENCLI_SHARED", ROOT.parent / "shared"))
SCENES = ("abu-airport-1", "abu-airport-2", "hydice", "sandiego")
CHECKPOINTS = {name: entry.source for name, entry in registry().items()  # name -> shared folder
               if entry.kind == "published"}


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared is not beside the checkout)")
    return path


@pytest.fixture(autouse=True)
def _detector_threads_reset():
    """A CLI run with --threads caps SLRX's and LRX's workers for its process: not for the next test."""
    from fencli import threads

    yield
    threads.limit_threads(None)


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


def pair_auc(scores: np.ndarray, gt: np.ndarray) -> float:
    """ROC AUC by its definition, independent of fencli.metrics and of scikit-learn: the share of
    (anomaly, background) pixel pairs the anomaly outscores, a tie counting one half."""
    s, y = np.asarray(scores, np.float64).ravel(), np.asarray(gt).ravel() != 0
    pos, neg = s[y][:, None], s[~y][None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


def rx_reference(cube: np.ndarray) -> np.ndarray:
    """Global RX with the textbook formula: (x - mu)^T pinv(S) (x - mu), S unbiased."""
    x = np.asarray(cube, dtype=np.float64).reshape(-1, cube.shape[-1])
    d = x - x.mean(0)
    s = np.cov(x, rowvar=False, ddof=1)
    return np.einsum("ij,jk,ik->i", d, np.linalg.pinv(s), d).reshape(cube.shape[:2])
