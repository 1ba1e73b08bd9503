"""``fencli enhance``: write the FEN-enhanced cube (``H x W x B`` float32) of a scene."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from fencli.cli import app
from fencli.errors import FencliError

_SAME_FAMILY = {".mat": ".mat", ".npy": ".npy", ".npz": ".npy", ".h5": ".h5", ".hdf5": ".hdf5",
                ".he5": ".h5", ".hdr": ".hdr"}


def default_output(cube: Path, fmt: str | None) -> Path:
    """``<stem>_fen.<ext>`` beside the input, in the input's format family (ENVI -> ``.hdr``)."""
    ext = _SAME_FAMILY.get(cube.suffix.lower(), ".hdr" if fmt == "envi" else ".npy")
    return cube.with_name(f"{cube.stem}_fen{ext}")


@app.command()
def enhance(
    cube: Path = typer.Argument(..., help="Scene file (.mat, .npy, .npz, .h5, ENVI)."),
    model: str = typer.Option(..., "--model", "-m", help="Model name (fencli models) or .onnx path."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Output file; format by extension [default: <stem>_fen.<ext>]."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    threads: Optional[int] = typer.Option(None, "--threads", help="ONNX Runtime intra-op threads."),
    key: Optional[str] = typer.Option(None, "--key", help="Array name inside the file."),
    layout: str = typer.Option("hwb", "--layout", help="Stored axis order, e.g. hwb or bhw."),
    bands: Optional[int] = typer.Option(None, "--bands", help="Use only the first N bands of the scene."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Enhance a scene with the FEN: first B bands, global min-max, FEN forward, bands last."""
    from fencli.io import read_scene, write_array
    from fencli.models import resolve_model
    from fencli.preprocess import select_bands
    from fencli.runtime import get_session

    path = resolve_model(model)
    if path is None:
        raise FencliError("--model none cannot enhance: name a model")
    session = get_session(path, device=device, threads=threads)
    scene = read_scene(cube, key=key, layout=layout)
    target = out or default_output(cube, scene.meta.get("format"))
    if target.exists() and not force:  # fail before the forward pass, not after
        raise FencliError(f"{target} already exists; pass --force to overwrite it")
    start = time.perf_counter()
    enhanced = session.enhance(select_bands(scene.cube, bands))
    seconds = time.perf_counter() - start
    wavelengths = scene.meta.get("wavelengths")
    meta = {"georef": scene.meta.get("georef"),
            "wavelengths": wavelengths[: session.bands] if wavelengths else None}
    written = write_array(target, enhanced, force=force, meta=meta)
    summary = {"input": str(cube), "output": str(written), "model": str(path),
               "bands": session.bands, "variant": session.info.variant, "device": session.device,
               "shape": list(enhanced.shape), "seconds": round(seconds, 4)}
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"wrote {written}: {enhanced.shape[0]} x {enhanced.shape[1]} x {enhanced.shape[2]} "
              f"({session.info.variant}, {session.device}, {seconds:.2f} s)")
