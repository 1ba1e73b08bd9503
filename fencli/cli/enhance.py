"""``fencli enhance``: write the FEN-enhanced cube (``H x W x B`` float32) of a scene."""

from __future__ import annotations

import json as jsonlib
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from fencli.cli import app
from fencli.cli.options import Bands, Cube, Device, Force, Json, Key, Layout, Nan, Threads
from fencli.errors import FencliError

_SAME_FAMILY = {".mat": ".mat", ".npy": ".npy", ".npz": ".npy", ".h5": ".h5", ".hdf5": ".hdf5",
                ".he5": ".h5", ".hdr": ".hdr"}


def default_output(cube: Path, fmt: str | None) -> Path:
    """``<stem>_fen.<ext>`` beside the input, in the input's format family (ENVI -> ``.hdr``)."""
    ext = _SAME_FAMILY.get(cube.suffix.lower(), ".hdr" if fmt == "envi" else ".npy")
    return cube.with_name(f"{cube.stem}_fen{ext}")


@app.command()
def enhance(
    cube: Cube,
    model: Annotated[str, typer.Option("--model", "-m", help="FEN model: registry name (see `fencli models`), .onnx path, or 'auto': fencli's embedded model with the most bands the scene has (50, 100, 200).")] = "auto",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output file, format by extension: .npy, .mat, .h5, .hdr (default: <stem>_fen.<ext> beside the input).")] = None,
    bands: Bands = None,
    key: Key = None,
    layout: Layout = "hwb",
    nan: Nan = "error",
    device: Device = "auto",
    threads: Threads = None,
    json: Json = False,
    force: Force = False,
) -> None:
    """Write the FEN-enhanced cube of CUBE: the model's first B bands, scaled, enhanced, bands last.

    Examples:

    \b
      fencli enhance scene.mat
      fencli enhance scene.mat --model ferd-200-supp
      fencli enhance scene.hdr -m weights/mine.onnx --out enhanced.h5 --json
    """
    from fencli.io import read_scene
    from fencli.models import AUTO, pick_model
    from fencli.output import write_array
    from fencli.preprocess import model_bands, select_bands
    from fencli.runtime import load_session

    auto = model.lower() == AUTO
    if not auto:  # a named model fails before the scene is read
        session = load_session(model, device=device, threads=threads)
    scene = read_scene(cube, key=key, layout=layout, nan=nan)
    if auto:
        model, why = pick_model("enhance", model, scene.cube.shape[2], bands)
        if why:
            raise FencliError(f"{cube.name}: {why}: nothing to enhance with (name one with --model)")
        session = load_session(model, device=device, threads=threads)
    data = select_bands(scene.cube, model_bands(bands, session))
    session.check(data)
    target = out or default_output(cube, scene.meta.get("format"))
    if target.exists() and not force:  # fail before the forward pass, not after it
        raise FencliError(f"{target} exists: pass --force to overwrite it")
    start = time.perf_counter()
    enhanced = session.enhance(data)
    seconds = time.perf_counter() - start
    nb = enhanced.shape[2]  # the model's bands, or for the adaptive FEN every band kept
    wavelengths = scene.meta.get("wavelengths")
    meta = {"georef": scene.meta.get("georef"), "wavelengths": wavelengths[:nb] if wavelengths else None}
    written = write_array(target, enhanced, force=force, meta=meta)
    label = session.name if session.bands is None else str(session.path)  # adaptive: no single model file
    summary = {"input": str(cube), "output": str(written), "model": label, "model_name": session.name,
               "bands": nb, "variant": session.info.variant, "device": session.device,
               "provider": session.provider,
               "shape": list(enhanced.shape), "seconds": round(seconds, 4)}
    if json:
        print(jsonlib.dumps(summary, indent=2))
    else:
        print(f"wrote {written}: {enhanced.shape[0]} x {enhanced.shape[1]} x {enhanced.shape[2]} "
              f"float32 ({session.name}, {session.info.variant}, {session.device}, {seconds:.2f} s)")
