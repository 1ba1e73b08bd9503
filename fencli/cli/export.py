"""``fencli export``: a FERD checkpoint folder -> an ONNX model with fencli metadata (needs torch)."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Optional

import typer

from fencli.cli import app
from fencli.errors import FencliError
from fencli.models import IN_PACKAGE, default_export_dir, name_for_source

CHECKOUT_STAGE = Path(__file__).resolve().parents[2] / "export"  # the repository's export/ beside fencli/


def stage(module: str) -> ModuleType:
    """The export stage's ``module`` (``onnx_export``, ``run``, ``fixed``, ``train``, ...).

    An installed wheel carries it as ``fencli.export`` (pyproject maps the repository's ``export/``
    there). A checkout imports it as the top-level ``export`` package the tests and ``python -m
    export.adaptive`` use, so one copy of each module is loaded; an editable install run from
    elsewhere (no ``export`` on ``sys.path``) falls back to ``fencli.export``.
    """
    if not IN_PACKAGE and (CHECKOUT_STAGE / "__init__.py").is_file():
        spec = importlib.util.find_spec("export")
        if spec is not None and spec.origin and Path(spec.origin).resolve().parent == CHECKOUT_STAGE:
            return importlib.import_module(f"export.{module}")
    return importlib.import_module(f"fencli.export.{module}")


@app.command()
def export(
    checkpoint: Optional[Path] = typer.Option(
        None, "--checkpoint", help="Folder with the published convh.pt, enc.pt, pc.pt."),
    torchscript: Optional[Path] = typer.Option(
        None, "--torchscript", help="Folder with the authors' cwl_script.pt, rnl_script.pt, fpl_script.pt."),
    variant: Optional[str] = typer.Option(
        None, "--variant", help="plain or supp [default: supp for a folder named *-supp, else plain]."),
    name: Optional[str] = typer.Option(
        None, "--name", help="Model name [default: the registry name of the folder, else its name]."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output .onnx [default: weights/<name>.onnx]."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output."),
    dynamo: bool = typer.Option(False, "--dynamo", help="Use torch.onnx's dynamo exporter."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Import a FERD checkpoint, export it to ONNX and check ONNX Runtime against PyTorch."""
    if (checkpoint is None) == (torchscript is None):
        raise FencliError("give exactly one of --checkpoint DIR or --torchscript DIR")
    if variant not in (None, "plain", "supp"):
        raise FencliError(f"--variant must be plain or supp, not {variant!r}")
    folder = checkpoint or torchscript
    try:
        export_checkpoint = stage("onnx_export").export_checkpoint
    except ImportError as err:
        raise FencliError(f"fencli export needs the export extra (torch, onnx): pip install 'fencli[export]' "
                          f"({err})") from None
    name = name or name_for_source(folder) or Path(folder).resolve().name
    out = out or default_export_dir() / f"{name}.onnx"
    if out.suffix.lower() != ".onnx":
        raise FencliError(f"--out must end in .onnx, got {out.name}")
    path = export_checkpoint(folder, out, variant=variant, force=force,
                             torchscript=torchscript is not None, dynamo=dynamo)
    from fencli.report import print_json
    from fencli.runtime import get_session

    info = get_session(path, device="cpu").info
    summary = {"name": name, "out": str(path), "bands": info.bands, "variant": info.variant,
               "head_width": info.head_width, "source_sha256": info.source_sha256}
    if as_json:
        print_json(summary)
    else:
        print(f"wrote {path}: {info.bands} bands, {info.variant}, head {info.head_width}, "
              f"checkpoint sha256 {info.source_sha256[:12]}")
