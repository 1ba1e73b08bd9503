"""The published checkpoints (../shared) through our export and ONNX Runtime: parity with the
PyTorch FEN on the four shared scenes, and FE+GRX (and FE+SLRX when present) AUCs equal to
``auc_reference.json``. Skips without ../shared. Exports are cached in ``.cache/weights/<key>``
(ignored), keyed by the export code, so reruns cost no export."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch FEN needs torch (pip install 'fencli[export]')")

from conftest import CHECKPOINTS, ROOT, SCENES, load_shared_scene  # noqa: E402
from fencli import detectors  # noqa: E402
from fencli.metrics import roc_auc  # noqa: E402
from fencli.preprocess import fen_input  # noqa: E402
from fencli.runtime import get_session  # noqa: E402

pytestmark = pytest.mark.shared
BANDS = {"ferd-50": 50, "ferd-100": 100, "ferd-200": 200, "ferd-200-supp": 200}
SCENE_BANDS = {"abu-airport-1": 205, "abu-airport-2": 205, "hydice": 162, "sandiego": 189}
CASES = [(m, s) for s in SCENES for m in CHECKPOINTS if SCENE_BANDS[s] >= BANDS[m]]


def _export_key() -> str:
    h = hashlib.sha256(torch.__version__.encode())
    for name in ("fen.py", "resnet.py", "checkpoint.py", "onnx_export.py"):
        h.update((ROOT / "export" / name).read_bytes())
    return h.hexdigest()[:12]


@pytest.fixture(scope="session")
def shared_onnx(shared: Path) -> dict[str, Path]:
    from export.onnx_export import export_all_shared

    return export_all_shared(ROOT / ".cache" / "weights" / _export_key(), shared=shared)


@pytest.fixture(scope="session")
def enhanced(shared_onnx):
    """(model, scene) -> (ORT-enhanced cube, ground truth), computed once per session."""
    cache: dict = {}

    def get(model: str, scene: str):
        if (model, scene) not in cache:
            cube, gt = load_shared_scene(scene)
            cache[model, scene] = get_session(shared_onnx[model], device="cpu").enhance(cube), gt
        return cache[model, scene]
    return get


def test_every_case_is_covered(auc_reference):
    listed = {(m, s) for s in SCENES for m in auc_reference[s] if m in CHECKPOINTS}
    assert listed == set(CASES)
    assert all(auc_reference[s]["shape"][2] == SCENE_BANDS[s] for s in SCENES)


def test_checkpoint_metadata(shared, shared_onnx):
    from export.checkpoint import checkpoint_sha256
    from fencli.models import registry

    for name, path in shared_onnx.items():
        info = get_session(path, device="cpu").info
        entry = registry()[name]
        assert (info.bands, info.variant, info.head_width) == (entry.bands, entry.variant, entry.head_width)
        folder = shared / "ferd-checkpoints" / entry.source
        assert info.source_sha256 == entry.source_sha256 == checkpoint_sha256(folder)
        for f, sha in entry.files_sha256.items():
            assert hashlib.sha256((folder / f).read_bytes()).hexdigest() == sha


@pytest.mark.parametrize("model, scene", CASES)
def test_parity_on_shared_scene(shared, enhanced, model, scene):
    from export.checkpoint import load_checkpoint

    fen = load_checkpoint(shared / "ferd-checkpoints" / CHECKPOINTS[model])
    cube, _ = load_shared_scene(scene)
    with torch.inference_mode():
        ref = fen(torch.from_numpy(fen_input(cube[:, :, :fen.bands])))[0].numpy().transpose(1, 2, 0)
    got, _ = enhanced(model, scene)
    assert np.abs(got - ref).max() / np.abs(ref).max() <= 1e-5


@pytest.mark.parametrize("model, scene", CASES)
def test_fe_grx_auc_equals_reference(auc_reference, enhanced, model, scene):
    cube, gt = enhanced(model, scene)
    want = auc_reference[scene][model]["FE+GRX"]["auc"]
    assert roc_auc(detectors.grx(cube), gt) == pytest.approx(want, abs=1e-3)


@pytest.mark.parametrize("model, scene", CASES)
def test_fe_slrx_auc_equals_reference(auc_reference, enhanced, model, scene):
    cube, gt = enhanced(model, scene)
    want = auc_reference[scene][model]["FE+SLRX"]["auc"]
    assert roc_auc(detectors.slrx(cube), gt) == pytest.approx(want, abs=2e-3)
