"""fencli's public Python API: read a scene, enhance it with a FEN, detect its anomalies.

The command line is a thin layer over these functions, so a notebook gets exactly what
``fencli detect`` computes, with the same checks and the same one-line :class:`FencliError`.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from fencli.detectors import Detector, make_detector
from fencli.engine import Enhancer, Progress, Result, kept_bands, run
from fencli.errors import FencliError
from fencli.io import Scene, as_truth, read_scene, read_truth, validate_cube
from fencli.threads import threads_limited

CubeLike = Any  # an H x W x bands array (ndarray, memmap, h5py dataset), a Scene, or a scene file's path


def as_scene(cube: CubeLike, gt: Any = None, nodata: Any = None) -> Scene:
    """A :class:`~fencli.io.Scene` from what the API accepts: a path is read (lazily where the format
    allows), an array is wrapped, a Scene passes; ``gt`` (an ``H x W`` array, nonzero = anomaly)
    replaces the scene's own ground truth. ``nodata`` (a value or a list: numbers, ``nan``, ``"auto"``)
    adds to the nodata values the file declares (``Scene.nodata``)."""
    if isinstance(cube, (str, os.PathLike)):
        scene = read_scene(cube, validate=False, nodata=nodata)
    elif isinstance(cube, Scene):
        scene = cube
        add_nodata(scene, nodata)
    else:
        if not hasattr(cube, "shape") or not hasattr(cube, "dtype"):
            raise FencliError(f"expected an H x W x bands array, a Scene or a path, got {type(cube).__name__}")
        if len(cube.shape) != 3:
            raise FencliError(f"the cube is {len(cube.shape)}-D, not H x W x bands")
        if np.dtype(cube.dtype).kind not in "biuf":
            raise FencliError(f"the cube holds {np.dtype(cube.dtype)} values, not real numbers: pass its real "
                              "part or magnitude")
        scene = Scene(cube=cube, gt=None, name="the scene", path=None, meta={})
        add_nodata(scene, nodata)
    if gt is not None:  # checked as the CLI checks it: 0 and one positive value, else one line
        mask, valid = read_truth(gt) if isinstance(gt, (str, os.PathLike)) else as_truth(gt, "gt")
        if mask.shape != tuple(scene.cube.shape[:2]):
            raise FencliError(f"ground truth is {' x '.join(map(str, mask.shape))} but the scene is "
                              f"{scene.cube.shape[0]} x {scene.cube.shape[1]}")
        scene.gt, scene.gt_valid = mask, valid
    return scene


def add_nodata(scene: Scene, nodata: Any) -> Scene:
    """Merge ``nodata`` values (as ``--nodata`` takes them) into ``scene.nodata``; returns the scene."""
    if nodata is not None:
        from fencli.io import merged_nodata

        scene.nodata = merged_nodata(scene.nodata, nodata, scene.cube)
        scene.meta["nodata"] = scene.nodata
    return scene


def load_model(model: str | Enhancer | None, command: str, scene_bands: int, bands: int | None = None, *,
               device: str = "auto", threads: int | None = None) -> tuple[Enhancer | None, str | None]:
    """The FEN a call uses and, when ``auto`` found none, why it runs raw.

    ``model``: ``"auto"`` (the command's default for this band count, :func:`fencli.models.default_model`),
    a registry name, ``"adaptive"``, an ``.onnx`` path, ``"none"``/None (raw), or an enhancer already loaded.
    """
    from fencli.enhancers import load_enhancer
    from fencli.models import pick_model

    if model is None:
        return None, None
    if not isinstance(model, (str, os.PathLike)):
        return model, None
    name, why = pick_model(command, str(model), scene_bands, bands)
    return load_enhancer(name, device, threads), why


def run_scene(scene: Scene, method: str | Detector, enhancer: Enhancer | None, *, bands: int | None = None,
              options: dict[str, Any] | None = None, nan: str = "error", constant_bands: str = "error",
              tile: int | None = None, executor: Any = None, workdir: Any = None,
              progress: Progress | None = None, nodata: Any = None) -> Result:
    """Validate a scene (the checks every command makes), then detect: the one read -> validate -> run
    path of the CLI, batches and :func:`detect`. ``result.seconds["validate"]`` is the check's time.

    Nodata: the values in ``scene.nodata`` (what the file declares) plus ``nodata`` mark pixels that
    validation leaves out, every statistic leaves out, that score NaN and that the metrics leave out
    (with the ground truth's own nodata, ``scene.gt_valid``); ``result.nodata_pixels`` counts them."""
    detector = make_detector(method, options)  # an unknown method or option fails before any pass
    add_nodata(scene, nodata)
    t0 = time.perf_counter()
    keep = kept_bands(scene.cube.shape[2], bands, enhancer)  # the bands the engine will meet
    report = scene.meta.get("validation")
    asked = {"nan": nan, "constant_bands": constant_bands, "bands": keep}
    if not (report and report.get("checked") == asked and report["nodata"] == [float(v) for v in scene.nodata]):
        # (read_scene checks by default: the same checks are not made twice)
        cube, report = validate_cube(scene.cube, nan=nan, constant_bands=constant_bands, name=scene.label,
                                     nodata=scene.nodata, bands=keep)
        scene.cube, scene.meta["validation"] = cube, report
    validated = time.perf_counter() - t0
    res = run(scene.engine_source(), detector, enhancer=enhancer, bands=bands, gt=scene.gt, tile=tile,
              executor=executor, workdir=workdir, progress=progress,
              band_range=(report["band_min"], report["band_max"]),
              nodata=scene.nodata if report["nodata_pixels"] else None, gt_valid=scene.gt_valid)
    res.seconds["validate"] = validated
    return res


def detect(cube: CubeLike, method: str | Detector = "slrx", model: str | Enhancer | None = "auto",
           gt: Any = None, *, bands: int | None = None, tile: int | None = None, nan: str = "error",
           constant_bands: str = "error", device: str = "auto", threads: int | None = None,
           nodata: Any = None, **options: Any) -> Result:
    """Anomaly scores of a scene, FEN-enhanced first unless ``model`` is None or ``"none"``.

    Parameters
    ----------
    cube: ``H x W x bands`` array (any numeric dtype; memmaps and h5py datasets are read in tiles
        when large), a :class:`~fencli.io.Scene` from :func:`read_scene`, or a scene file's path.
    method: ``"slrx"``, ``"grx"``, ``"lrx"`` (any registered :class:`~fencli.detectors.Detector`
        name) or a detector instance.
    model: ``"auto"`` (the adaptive FEN: every band, no training), a model name (``fencli models``),
        an ``.onnx`` path, ``None``/``"none"`` for the raw detector, or a loaded enhancer.
    gt: ``H x W`` ground truth (nonzero = anomaly); default the scene's own, if it has one.
    bands: keep the first N bands (a fixed model's band count by default).
    tile: None decides from the scene's size and free memory, 0 whole scene, N tiles of N px.
    nan, constant_bands: ``"error"`` (default) or ``"fill"`` / ``"keep"``, as ``--nan`` and
        ``--constant-bands``.
    device, threads: ONNX Runtime's device (``auto``, ``cpu``, ``cuda``) and threads.
    nodata: a value or a list (numbers, ``"nan"`` for NaN/Inf pixels, ``"auto"``) marking nodata
        pixels, added to what the file declares (ENVI ``data ignore value``, GeoTIFF nodata,
        HDF5/netCDF ``_FillValue``...): left out of every statistic, scored NaN, left out of the AUC.
    **options: the detector's options (``block_size=4``, ``windows=(3, 11)``, ...).

    Returns
    -------
    :class:`~fencli.engine.Result` with ``scores`` (``H x W`` float64, NaN at nodata pixels), ``auc``
    and ``metrics`` (None / empty without ground truth), ``model`` (its name, None when raw),
    ``seconds``, ``nodata_pixels`` and ``gt_nodata_pixels``.

    Raises :class:`FencliError` (one line) for what the CLI refuses: NaN, a constant band, too few
    bands or pixels, an unknown method, option or model.
    """
    scene = as_scene(cube, gt, nodata)
    detector = make_detector(method, options)
    enhancer, _ = load_model(model, "detect", scene.cube.shape[2], bands, device=device, threads=threads)
    t0 = time.perf_counter()
    with threads_limited(threads):  # this call's limit, not the process's
        res = run_scene(scene, detector, enhancer, bands=bands, nan=nan, constant_bands=constant_bands, tile=tile)
    res.seconds["total"] = time.perf_counter() - t0
    return res


def enhance(cube: CubeLike, model: str | Enhancer = "auto", *, bands: int | None = None, nan: str = "error",
            device: str = "auto", threads: int | None = None, nodata: Any = None) -> np.ndarray:
    """The FEN-enhanced cube of a scene held in memory (``fencli enhance`` streams larger ones to a file).

    Parameters
    ----------
    cube: ``H x W x bands`` array, a :class:`~fencli.io.Scene` or a scene file's path.
    model: as for :func:`detect`; ``"none"`` is an error here.
    bands, nan, device, threads, nodata: as for :func:`detect`.

    Returns
    -------
    ``H x W x B`` float32 ndarray: every band for the adaptive FEN, a fixed model's first B bands;
    NaN at nodata pixels (the FEN saw the valid pixels' mean spectrum there).
    """
    scene = as_scene(cube, nodata=nodata)
    enhancer, why = load_model(model, "enhance", scene.cube.shape[2], bands, device=device, threads=threads)
    if enhancer is None:
        raise FencliError(f"{scene.label}: {why or 'model none'}: nothing to enhance with (name a model)")
    from fencli.engine import enhance as run_enhance

    cube_, report = validate_cube(scene.cube, nan=nan, name=scene.label, nodata=scene.nodata,
                                  bands=kept_bands(scene.cube.shape[2], bands, enhancer))
    return run_enhance(cube_, enhancer, bands=bands, tile=0, nodata=scene.nodata if report["nodata_pixels"] else None)


__all__ = ["as_scene", "detect", "enhance", "load_model", "read_scene", "run_scene"]
