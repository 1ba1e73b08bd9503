"""The adaptive FEN: FERD's enhancement for any sensor and band count, with no training.

A departure from FERD. What the trained FEN gains over raw RX comes from ConvH, its ``B -> 64``
spectral projection; the ResNet ``layer1`` and the head work as well with random weights (issue 11's
ablation). So the adaptive FEN takes ConvH from the scene itself and keeps the rest random but fixed:

1. **ConvH** (NumPy): the scene's 64 leading spectral directions, the top right singular vectors of
   its FEN input (from its :class:`fencli.detectors.RXStats`, which a tiled run gathers in a
   streaming pass), scaled so that the output has unit mean square per channel (:func:`scene_convh`).
2. **Core** (``weights/adaptive-core.onnx``, built by ``python -m export.adaptive``): the first
   Wide-ResNet block of ``layer1`` (one 3x3 conv: receptive radius 1, on a reflect pad of 1; FERD
   keeps three blocks, which cost three times as much and measured no better, issue 24), the head's
   ``1x1 256 -> 128`` + ReLU (FERD's head for B <= 128, for every B); weights drawn once with a
   fixed seed and shipped, identical for every band count. The core's metadata names its
   ``receptive_radius``: a tiled run's halo (:attr:`AdaptiveFEN.halo`).
3. **Output layer**: ``1x1 128 -> B`` (the core's head width) + bias + ReLU, then the residual
   ``+ x``; weights drawn per band
   count from a seeded NumPy generator with PyTorch's default ``Conv2d`` distribution.

The weights of 1 and 3 are computed in NumPy; ONNX Runtime runs the whole forward pass in one call
(the core graph takes them as inputs, with a dynamic band count), so the adaptive FEN costs what a
fixed FEN of the same band count costs, plus one covariance and one eigendecomposition per scene.

Everything is a fixed function of the scene: same scene, same output, in any process. Bands: all of
the scene's by default (``--bands N`` keeps the first N); at least :data:`MIN_BANDS`. With fewer than
64 bands ConvH takes all ``B`` principal directions and its remaining channels are zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from fencli.convh import CONVH_WIDTH, as_convh, leading_eigenvectors
from fencli.detectors import RXStats
from fencli.threads import one_blas_thread
from fencli.errors import FencliError
from fencli.models import (ADAPTIVE, ADAPTIVE_CORE as CORE_NAME, ADAPTIVE_MIN_BANDS as MIN_BANDS,
                           find_installed)
from fencli.preprocess import FEN_SCALE, checked_range, fen_input, fen_output, require_finite, value_range
from fencli.runtime import CORE_FORMAT, OnnxModel, per_process

HEAD_WIDTH = 128  # the reference's head width for B <= 128, used for every B (the core cannot depend on B;
# 256, the reference's for B > 128, until the fen2 follow-up of issue 24: 128 measured level on the six
# shared scenes, better on many small dense targets, 12% fewer multiply-adds; README, "The adaptive FEN")
OUTPUT_SEED = 14  # NumPy seed of the output layer (the core's torch seed is in its metadata)
CORE_INPUTS = ("x", "convh", "w_out", "b_out")  # the core graph's inputs, in this order
CORE_OUTPUT = "y"


@dataclass(frozen=True)
class CoreInfo:
    """What the core's metadata says (``variant`` is always ``plain``: no Frobenius norm)."""

    width: int
    head_width: int
    seed: int
    init: str
    fencli_version: str
    variant: str = "plain"
    receptive_radius: int = 3  # pixels the core reaches on each side (a core without the key: 3 blocks)


def read_core_metadata(meta: dict[str, str], path: Path) -> CoreInfo:
    """Validate the core's ``metadata_props`` (written by ``export.adaptive``)."""
    if meta.get("format") != CORE_FORMAT:
        raise FencliError(f"{path} is not an adaptive FEN core (format {meta.get('format')!r}): "
                          "rebuild it with `python -m export.adaptive`")
    try:
        info = CoreInfo(int(meta["width"]), int(meta["head_width"]), int(meta["seed"]), meta["init"],
                        meta.get("fencli_version", ""), receptive_radius=int(meta.get("receptive_radius", 3)))
        io = (tuple(meta["inputs"].split(",")), meta["output_name"])
    except (KeyError, ValueError) as err:
        raise FencliError(f"{path} has incomplete adaptive-core metadata ({err})") from None
    if io != (CORE_INPUTS, CORE_OUTPUT):
        raise FencliError(f"{path}: core graph {io} is not the {CORE_INPUTS} -> {CORE_OUTPUT} this fencli feeds")
    if info.width != CONVH_WIDTH or info.head_width < 1:  # the output layer is drawn at the core's head width
        raise FencliError(f"{path}: core is {info.width} -> {info.head_width}, this fencli needs "
                          f"{CONVH_WIDTH} -> any head width (shipped: {HEAD_WIDTH})")
    return info


def core_path() -> Path:
    """The installed core (``adaptive-core.onnx`` in the model search path), or a clear error."""
    path = find_installed(CORE_NAME)
    if path is None:
        raise FencliError(f"the adaptive FEN's core {CORE_NAME}.onnx is not installed: "
                          "rebuild it with `python -m export.adaptive`")
    return path


def output_layer(bands: int, width: int = HEAD_WIDTH) -> tuple[np.ndarray, np.ndarray]:
    """The ``width -> bands`` 1x1 conv (weight ``(bands, width)``, bias ``(bands,)``), float32.

    PyTorch's default ``Conv2d`` init (uniform in +-1/sqrt(fan_in) for weight and bias), drawn from a
    NumPy generator seeded with :data:`OUTPUT_SEED` and the band count: fixed for each ``bands``.
    """
    rng = np.random.default_rng([OUTPUT_SEED, bands])
    bound = 1.0 / math.sqrt(width)
    weight = rng.uniform(-bound, bound, (bands, width))
    bias = rng.uniform(-bound, bound, bands)
    return weight.astype(np.float32), bias.astype(np.float32)


def input_moment(stats: RXStats, vrange: tuple[float, float] | None) -> np.ndarray:
    """``E[x x^T]`` over the scene's pixels of the FEN input ``x`` (values scaled to [-0.1, 0.1]), from
    the raw-value statistics ``stats`` and their global range ``vrange`` (None: ``stats`` are of the
    FEN input itself): not centred, because ConvH has no bias and receives ``x`` itself. Built from
    the centred statistics, which keep the small (noise) directions accurate; a plain ``x^T x`` loses
    them to cancellation against the mean."""
    a, c = 1.0, 0.0
    if vrange is not None:
        lo, hi = checked_range(*vrange)
        a = 2 * FEN_SCALE / (hi - lo)  # fen_input is x -> a * x + c, the same a and c for every band
        c = -FEN_SCALE - a * lo
    mean = a * stats.mean + c
    return (a * a * (stats.n - 1) / stats.n) * stats.covariance + np.outer(mean, mean)


def pixels_view(x: np.ndarray) -> np.ndarray:
    """The pixels of an ``H x W x B`` array as ``(H*W, B)`` rows, a view for either memory order
    (the order of the pixels does not matter to their statistics)."""
    order = "F" if x.flags.f_contiguous and not x.flags.c_contiguous else "C"
    return np.reshape(x, (-1, x.shape[-1]), order=order)


def scene_convh(stats: RXStats, vrange: tuple[float, float] | None) -> np.ndarray:
    """The scene's ConvH ``(64, B)``: the leading eigenvectors of :func:`input_moment`, one scale.

    Those are the top right singular vectors of the scene's (uncentred) FEN input, the rank-64
    linear summary that keeps the most of what ConvH receives. The rows are orthonormal directions
    times one scalar chosen so that ConvH's output has a mean square of 1 per channel over the scene:
    the scale the core's BatchNorm layers (fresh running statistics, variance 1) assume, the
    first-layer rule of LSUV initialisation. It makes the enhancement independent of the sensor's
    units and of how much of the range the scene's spectra span.
    """
    if stats.bands < MIN_BANDS:
        raise FencliError(f"the adaptive FEN needs at least {MIN_BANDS} bands, the scene has {stats.bands}")
    if stats.n < 2 or not np.any(stats.covariance):
        raise FencliError("every pixel has the same spectrum: nothing to enhance")
    moment = input_moment(stats, vrange)
    k = min(CONVH_WIDTH, stats.bands)
    rows = leading_eigenvectors(moment, k)
    power = np.einsum("ij,jk,ik->", rows, moment, rows)  # mean square of the k outputs, summed
    return as_convh(rows, norm=k / math.sqrt(power), width=CONVH_WIDTH)


class SceneFen:
    """The adaptive FEN fixed to one scene's ConvH: a per-tile FEN (``1 x B x h x w`` in, same out).

    Picklable (arrays, and the FEN pickles as :func:`get_adaptive`), so Dask workers can run it.
    """

    def __init__(self, convh: np.ndarray, fen: AdaptiveFEN) -> None:
        self.convh = np.ascontiguousarray(convh[:, :, None, None], dtype=np.float32)
        weight, self.bias = output_layer(convh.shape[1], fen.info.head_width)
        self.weight = np.ascontiguousarray(weight[:, :, None, None])
        self.fen = fen

    def __call__(self, x: np.ndarray) -> np.ndarray:
        bands = self.convh.shape[1]
        if x.ndim != 4 or x.shape[1] != bands:
            raise FencliError(f"this scene's adaptive FEN takes N x {bands} x H x W, got {x.shape}")
        return self.fen.run(x, self.convh, self.weight, self.bias)


class AdaptiveFEN(OnnxModel):
    """The adaptive FEN with :class:`fencli.runtime.FENSession`'s interface; ``bands`` is None (any).
    Its session runs the core; get one through :func:`get_adaptive`."""

    name = ADAPTIVE
    bands = None

    def __init__(self, device: str = "auto", threads: int | None = None, path: str | Path | None = None) -> None:
        """``path``: another core file (the benchmarks' comparisons); default the installed one."""
        super().__init__(path or core_path(), device, threads, read_core_metadata)

    @property
    def halo(self) -> int:
        """Real pixels a tile needs around its core for the whole-scene result: the receptive radius."""
        return self.info.receptive_radius

    def __reduce__(self) -> tuple:
        return get_adaptive, (self.device_asked, self.threads)  # Dask workers load the core themselves

    def run(self, x: np.ndarray, convh: np.ndarray, w_out: np.ndarray, b_out: np.ndarray) -> np.ndarray:
        """``N x B x H x W`` FEN input and the B-dependent weights -> ``N x B x H x W`` enhanced."""
        return self.run_graph([CORE_OUTPUT], dict(zip(CORE_INPUTS, (x, convh, w_out, b_out))))

    needs_scene_stats = True  # ConvH comes from the scene's statistics

    def check_bands(self, available: int) -> None:
        if available < MIN_BANDS:
            raise FencliError(f"the scene has {available} band(s); the adaptive FEN needs at least {MIN_BANDS}")

    def tile_fen(self, stats: RXStats, vrange: tuple[float, float] | None) -> SceneFen:
        """The per-tile FEN of the scene whose raw values (all its kept bands) have statistics ``stats``
        and global range ``vrange`` (one streaming pass gathers both; None: ``stats`` are of the FEN
        input itself)."""
        return SceneFen(scene_convh(stats, vrange), self)

    def enhance(self, cube: np.ndarray) -> np.ndarray:
        """``H x W x B`` cube -> enhanced ``H x W x B`` float32, every band of the cube."""
        self.check(cube)
        require_finite(cube)
        vrange = value_range(cube)  # refuses a constant cube
        if (cube.min(axis=(0, 1)) == cube.max(axis=(0, 1))).all():  # exact on raw values; the scaled
            raise FencliError("every pixel has the same spectrum: nothing to enhance")  # ones round
        with one_blas_thread():  # idle OpenBLAS threads would spin against ONNX Runtime's next run
            # raw-value statistics and the range, as the engine's tiled scan gathers them
            scene = self.tile_fen(RXStats(cube.shape[2]).fit(pixels_view(cube)), vrange)
        return fen_output(scene(fen_input(cube, vrange)))


def get_adaptive(device: str = "auto", threads: int | None = None) -> AdaptiveFEN:
    """The process-wide adaptive FEN for ``device`` and ``threads`` (one core session each)."""
    return per_process(("adaptive", device, threads), partial(AdaptiveFEN, device, threads))
