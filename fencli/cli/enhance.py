"""``fencli enhance``: write the FEN-enhanced cube (``H x W x B`` float32) of a scene."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from fencli.cli import app
from fencli.cli.options import Bands, Cube, Device, Force, Json, Key, Layout, Nan, Nodata, Threads, Tile
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
    model: Annotated[str, typer.Option("--model", "-m", help="FEN model: registry name (see `fencli models`), .onnx path, 'adaptive', or 'auto' (the default): the adaptive FEN on every band.")] = "auto",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output file, format by extension: .npy, .mat, .h5, .hdr (default: <stem>_fen.<ext> beside the input).")] = None,
    bands: Bands = None,
    key: Key = None,
    layout: Layout = "hwb",
    nan: Nan = "error",
    nodata: Nodata = None,
    tile: Tile = None,
    device: Device = "auto",
    threads: Threads = None,
    json: Json = False,
    force: Force = False,
) -> None:
    """Write the FEN-enhanced cube of CUBE: the model's first B bands, scaled, enhanced, bands last.

    A scene larger than a tile the free memory allows (or any scene with --tile N) is enhanced tile by
    tile and streamed to a .npy output, with the same values as a whole-scene run. Nodata pixels
    (--nodata, or declared by the file) are NaN in the output; the FEN sees the valid pixels' mean
    spectrum there.

    Examples:

    \b
      fencli enhance scene.mat
      fencli enhance scene.mat --model ferd-200-supp
      fencli enhance scene.hdr -m weights/mine.onnx --out enhanced.h5 --json
      fencli enhance big.npy --tile 512 --out big_fen.npy
    """
    from fencli.engine import enhance as run_enhance, kept_bands, plan_tile
    from fencli.io import read_scene
    from fencli.models import AUTO, pick_model
    from fencli.output import OutputPlan, atomic_path, write_array
    from fencli.enhancers import load_session
    from fencli.report import ProgressBar, print_json

    auto = model.lower() == AUTO
    if not auto:  # a named model fails before the scene is read
        session = load_session(model, device=device, threads=threads)
    scene = read_scene(cube, key=key, layout=layout, nan=nan, nodata=nodata)
    nodata_pixels = scene.meta["validation"]["nodata_pixels"]
    values = scene.nodata if nodata_pixels else None
    if auto:
        model, why = pick_model("enhance", model, scene.cube.shape[2], bands)
        if why:
            raise FencliError(f"{cube.name}: {why}: nothing to enhance with (name one with --model)")
        session = load_session(model, device=device, threads=threads)
    session.check(scene.cube)
    h, w, nb = scene.cube.shape
    nb = kept_bands(nb, bands, session)  # the model's bands, or for the adaptive FEN every band kept
    target = out or default_output(cube, scene.meta.get("format"))
    streamed = plan_tile(scene.cube.shape, nb, tile) > 0 and (tile is not None or target.suffix.lower() == ".npy")
    if streamed and target.suffix.lower() != ".npy":
        raise FencliError(f"--tile streams the enhanced cube to a .npy file, not {target.suffix or target.name}: "
                          "pass --out NAME.npy")
    # fail before the forward pass, not after it; never onto the input, --force or not
    plan = OutputPlan.checked(force=force, inputs={"scene": cube}, outputs={"--out": (target, "cube")})
    start = time.perf_counter()
    with plan.publishing():  # the output appears whole when the run succeeds, else nothing does
        if streamed:
            from fencli.tiles import create_raw

            with atomic_path(target, force=force) as tmp, create_raw(tmp, (h, w, nb)) as sink, \
                    ProgressBar(f"{cube.name} in tiles", h * w * 2, enabled=not json) as progress:
                checked = scene.meta["validation"]  # read_scene's per-band range spares a pass over the file
                run_enhance(scene.engine_source(), session, bands=bands, tile=tile, out=sink, progress=progress,
                            band_range=(checked["band_min"], checked["band_max"]), nodata=values)
            written = target
        else:
            enhanced = run_enhance(scene.cube, session, bands=bands, tile=0, nodata=values)
        seconds = time.perf_counter() - start
        if not streamed:
            wavelengths = scene.meta.get("wavelengths")
            meta = {"georef": scene.meta.get("georef"), "wavelengths": wavelengths[:nb] if wavelengths else None,
                    "nodata": float("nan") if nodata_pixels else None}
            written = write_array(target, enhanced, force=force, meta=meta)
    label = session.name if session.bands is None else str(session.path)  # adaptive: no single model file
    summary = {"input": str(cube), "output": str(written), "model": label, "model_name": session.name,
               "bands": nb, "variant": session.info.variant, "device": session.device,
               "provider": session.provider, "tiled": streamed,
               "shape": [h, w, nb], "seconds": round(seconds, 4), "nodata_pixels": nodata_pixels}
    if json:
        print_json(summary)
    else:
        print(f"wrote {written}: {h} x {w} x {nb} float32 ({session.name}, {session.info.variant}, "
              f"{session.device}{', in tiles' if streamed else ''}, {seconds:.2f} s)")
