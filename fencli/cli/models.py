"""``fencli models``: the named models and where (whether) each is installed."""

from __future__ import annotations

import json

import typer

from fencli.cli import app
from fencli.models import ADAPTIVE, ADAPTIVE_MIN_BANDS, list_models, search_dirs

# Both wheels install the same `onnxruntime` package; pip lets the CPU wheel's files win when both are
# asked for, so the GPU build is reinstalled over them (measured; see benchmarks/RESULTS.md).
GPU_INSTALL = "pip install 'fencli[gpu]' && pip install --force-reinstall --no-deps onnxruntime-gpu"


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the FEN models, embedded (fencli's own, shipped) and published, installed or not."""
    rows = [{"name": m.name, **{k: getattr(m.entry, k, None) for k in ("kind", "bands", "variant", "source")},
             "installed": m.path is not None, "path": str(m.path) if m.path else None}
            for m in list_models()]
    for r in rows:
        if r["name"] == ADAPTIVE:  # not one model file: a shipped core plus the scene's own ConvH
            r.update(kind="embedded", bands=None, min_bands=ADAPTIVE_MIN_BANDS, variant="plain",
                     source="scene's own spectra + seeded core")
    from fencli.runtime import runtime_info

    rt = runtime_info()
    if as_json:
        print(json.dumps({"models": rows, "search_path": [str(d) for d in search_dirs()], "runtime": rt},
                         indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "kind", "bands", "variant", "source")
    table.add_column("installed", overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["kind"] or "?", str(r["bands"] or (f">= {r['min_bands']}, all" if "min_bands" in r else "?")), r["variant"] or "?",
                      r["source"] or "(unregistered)", r["path"] or "no")
    console = Console()
    console.print(table)
    console.print("search path: " + ", ".join(str(d) for d in search_dirs()))
    console.print(f"ONNX Runtime {rt['onnxruntime']} ({', '.join(rt['packages']) or 'package unknown'}): "
                  f"providers {', '.join(rt['available_providers'])}; --device auto runs the FEN on "
                  f"{rt['auto_provider']}" + (" (no usable GPU here)" if rt["auto_device"] == "cpu"
                                              and "CUDAExecutionProvider" in rt["available_providers"] else ""),
                  markup=False, highlight=False)
    if "CUDAExecutionProvider" not in rt["available_providers"]:
        console.print(f"for CUDA: {GPU_INSTALL}", markup=False, highlight=False)
