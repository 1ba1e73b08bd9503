"""Typer option declarations shared by the commands, so every command spells them the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

Cube = Annotated[Path, typer.Argument(help="Scene file: .mat (v5/v7.3), .npy, .npz, .h5/.hdf5, ENVI .hdr or GeoTIFF .tif.",
                                       show_default=False)]
Key = Annotated[Optional[str], typer.Option("--key", help="Name of the cube array (default: the largest 3-D array).")]
GtFile = Annotated[Optional[Path], typer.Option("--gt", help="Ground-truth file (.mat/.npy/.npz/.h5/.png; nonzero = anomaly).")]
GtKey = Annotated[Optional[str], typer.Option("--gt-key", help="Name of the ground-truth array (default: map/gt/groundtruth/mask).")]
Layout = Annotated[str, typer.Option("--layout", help="Axis order of the stored cube, e.g. hwb (bands last) or bhw.")]
Nan = Annotated[str, typer.Option("--nan", help="NaN/Inf pixels: 'error' or 'fill' (band mean).")]
ConstantBands = Annotated[str, typer.Option("--constant-bands", help="Constant bands: 'error' or 'keep' (RX then relies on its pseudo-inverse / ridge).")]
Bands = Annotated[Optional[int], typer.Option("--bands", "-b", help="Keep the first N bands (default: all, or the model's).")]
Model = Annotated[str, typer.Option("--model", "-m", help="FEN model: registry name (see `fencli models`), 'adaptive' (any band count, no training), .onnx path, 'none' (raw), or 'auto' (the default of every command): the adaptive FEN on every band.")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu or cuda (ONNX Runtime execution provider).")]
Threads = Annotated[Optional[int], typer.Option("--threads", help="ONNX Runtime intra-op threads (default: all cores).")]
DetectThreads = Annotated[Optional[int], typer.Option("--threads", help="Threads for ONNX Runtime and for SLRX's and LRX's workers (default: all cores).")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of a table.")]
Force = Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")]
Tile = Annotated[Optional[int], typer.Option("--tile", help="Tile side in pixels for scenes larger than memory "
                                             "(results equal whole-scene ones). Default: from available memory; 0: whole scene in memory.")]
