"""Typer option declarations shared by the commands, so every command spells them the same way."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from fencli.errors import FencliError

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


def detector_flags() -> dict[str, tuple[Any, str]]:
    """Every registered detector's options as command-line flags: ``name -> (type, help)``. Detectors
    that share an option name (``ridge``) share its flag; the help names each one's default."""
    return {name: (typ, help) for name, (typ, help, _) in _detector_flags().items()}


def _detector_flags() -> dict[str, tuple[Any, str, float | None]]:
    from fencli.detectors import REGISTRY

    flags: dict[str, tuple[Any, list[str], list[str], list[float]]] = {}
    for cls in REGISTRY.values():
        for opt in cls.options:
            typ, helps, defaults, minima = flags.setdefault(opt.name, (opt.type, [], [], []))
            if opt.minimum is not None:
                minima.append(opt.minimum)
            if typ != opt.type:
                raise TypeError(f"option {opt.name} is {typ} in one detector and {opt.type} in {cls.__name__}")
            if opt.help not in helps:
                helps.append(opt.help)
            if opt.default is not None and opt.default is not False:
                defaults.append(f"{cls.name} {opt.default!r}")
    return {name: (typ, " ".join(helps) + (f" [default: {', '.join(defaults)}]" if defaults else ""),
                   min(minima) if minima else None)
            for name, (typ, helps, defaults, minima) in flags.items()}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def method_help() -> str:
    """``--method``'s help from the registered detectors' one-line summaries."""
    from fencli.detectors import REGISTRY

    return "Detector: " + "; ".join(f"{name} ({cls.summary})" for name, cls in REGISTRY.items()) + "."


def with_detector_options(command: Callable[..., Any], derive: bool = True) -> Callable[..., Any]:
    """``command`` with one flag per detector option appended to its parameters; the values given
    reach it as the dict ``detector_options`` (absent flags left out: each detector's default).
    ``derive=False`` adds none and imports no detector (a command line that does not run it)."""
    sig = inspect.signature(command, eval_str=True)
    own = [p for p in sig.parameters.values() if p.name != "detector_options"]
    flags = _detector_flags() if derive else {}
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                               annotation=Annotated[Optional[typ], typer.Option(_flag(name), help=help,
                                                                                show_default=False)])
             for name, (typ, help, _) in flags.items() if name not in sig.parameters]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        given = {k: kwargs.pop(k) for k in flags if k in kwargs and k not in sig.parameters}
        for k, v in given.items():  # named as the user typed it, before any detector sees it
            low = flags[k][2]
            if low is not None and v is not None and v < low:
                raise FencliError(f"{_flag(k)} must be at least {low:g}, got {v}")
        return command(**kwargs, detector_options={k: v for k, v in given.items() if v is not None})

    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + extra
    if derive and "method" in sig.parameters:  # its help lists the detectors registered now
        i = [p.name for p in params].index("method")
        params[i] = params[i].replace(annotation=Annotated[str, typer.Option("--method", help=method_help())])
    wrapper.__signature__ = sig.replace(parameters=params)
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper


Nodata = Annotated[Optional[list[str]], typer.Option(
    "--nodata", help="A value that marks nodata pixels (repeatable): a number, nan (NaN/Inf pixels) or auto "
    "(-9999, -32768, -32767, +-FLT_MAX or +-DBL_MAX held by a pixel in every band). Added to what the file "
    "declares: ENVI 'data ignore value', GeoTIFF nodata, HDF5/netCDF _FillValue, missing_value or nodata.",
    show_default=False)]
