"""``fencli bench``: AUC and timing of every method, raw and FEN-enhanced, over a set of scenes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fencli.cli import app
from fencli.cli.options import Bands, Device, Force, Json
from fencli.errors import FencliError


def _table(rows: list[dict], title: str):
    """Compact terminal table (the Markdown/CSV/JSON outputs hold every column)."""
    from rich.table import Table

    from fencli.bench import COLUMNS, _cell

    heads = ("scene", "method", "model", "B", "AUC", "ref", "diff", "enh ms", "det ms", "best ms", "med ms")
    # Narrow terminals: leave out the columns that say nothing for these rows.
    empty = {k for k in ("reference_auc", "auc_diff") if all(r[k] is None for r in rows)}
    if all(not r["enhance_ms_best"] for r in rows):
        empty.add("enhance_ms_best")
    cols = [(key, head) for key, head in zip(COLUMNS, heads) if key not in empty]
    table = Table(title=title, header_style="bold", pad_edge=False, padding=(0, 1))
    for key, head in cols:
        left = key in ("scene", "method", "model")
        table.add_column(head, justify="left" if left else "right", no_wrap=True,
                         overflow="ellipsis", min_width=6 if left else None)
    for r in rows:
        table.add_row(*(_cell(r[k], k).upper() if k == "method" else _cell(r[k], k) for k, _ in cols))
    return table


@app.command()
def bench(
    scenes: Annotated[Optional[list[Path]], typer.Argument(help="Scene files, or `demo` for the synthetic demo scene (default: the shared scenes when present, else the demo scene).", show_default=False)] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="FEN model(s), comma-separated names or .onnx paths, or 'none'. Default (auto): each scene raw and with the adaptive FEN on every band.")] = None,
    bands: Bands = None,
    methods: Annotated[str, typer.Option("--methods", help="Comma-separated detectors: grx, slrx, lrx (lrx is opt-in: 6-7 s per 100 x 100 x 200 scene on 2 cores).")] = "grx,slrx",
    repeat: Annotated[Optional[int], typer.Option("--repeat", help="Timed runs per row; the table shows the best and the median (default 3; 1 with --had100).")] = None,
    warmup: Annotated[Optional[int], typer.Option("--warmup", help="Untimed runs before them (default 1; 0 with --had100).")] = None,
    had100: Annotated[Optional[Path], typer.Option("--had100", help="A HAD100 folder (test/aviris_ng/*.npy, ground_truth/aviris_ng/*.png): per-scene and mean AUC.")] = None,
    reference: Annotated[Optional[str], typer.Option("--reference", help="AUC reference JSON to compare with (default: ../shared/reference/auc_reference.json when present; 'none' to skip).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="Write bench.md, bench.csv and a figure per scene (maps and ROC curves).")] = None,
    device: Device = "auto",
    threads: Annotated[Optional[int], typer.Option("--threads", help="Threads for ONNX Runtime, for SLRX's and LRX's workers and for NumPy's BLAS (default: all cores).")] = None,
    json: Json = False,
    force: Force = False,
) -> None:
    """Benchmark the detectors, raw and FEN-enhanced: AUC, and the best/median in-process seconds
    of enhance + detect (reading files and creating the model session are excluded).

    --json prints a list of rows {scene, method, model, bands, auc, metrics, seconds, reference_auc,
    auc_diff}; with --had100, an object {scenes: rows, mean: rows per method and model, notes}.

    Examples:

    \b
      fencli bench
      fencli bench scene.mat --model ferd-200-supp --methods grx,slrx --repeat 5 --json
      fencli bench --had100 HAD100/ --model ferd-100 --methods grx
      fencli bench --out-dir out/bench --force
    """
    from rich.console import Console

    from fencli import bench as B
    from fencli.enhancers import load_enhancer
    from fencli.models import ADAPTIVE, ADAPTIVE_CORE, find_installed, installed_embedded
    from fencli.output import refuse_existing
    from fencli.report import console, print_json

    if not console.is_terminal:  # a log or a pipe: no reason to squeeze the table into 80 columns
        console = Console(width=200)

    method_list = B.parse_methods(methods)
    if threads is not None:
        B.limit_blas_threads(threads)
    auto = model is None or model.strip().lower() == "auto"
    # auto: each scene gets the model default_model picks for it: the adaptive FEN (or, without its
    # core, the installed embedded model with the most bands the scene has)
    fallback = [ADAPTIVE] if find_installed(ADAPTIVE_CORE) else [e.name for e in installed_embedded()]
    names = fallback if auto else [m.strip() for m in model.split(",") if m.strip()]
    enhancers = [e for e in (load_enhancer(n, device, threads) for n in names) if e is not None]
    if had100 is not None:
        if scenes:
            raise FencliError("give either scene files or --had100, not both")
        rows, means, notes = B.bench_had100(had100, method_list, enhancers, bands=bands,
                                            repeat=1 if repeat is None else repeat,
                                            warmup=0 if warmup is None else warmup, auto=auto)
        gts, extra_md = {}, "## mean over scenes\n\n" + B.markdown_table(means)
        doc: dict | list = {"scenes": [r.as_dict() for r in rows], "mean": means, "notes": notes}
        tables = [(rows, f"HAD100 {had100} ({len({r.scene for r in rows})} scenes)"),
                  (means, "HAD100 mean over scenes")]
    else:
        ref_path = None if reference and reference.lower() == "none" else (Path(reference) if reference else B.default_reference())
        ref = B.load_reference(ref_path) if ref_path else None
        loaded = B.load_scenes(scenes or [])
        if out_dir is not None:  # fail before minutes of computing
            refuse_existing([Path(out_dir) / "bench.md", Path(out_dir) / "bench.csv"], force)
        rows, notes = B.bench(loaded, method_list, enhancers, bands=bands,
                              repeat=3 if repeat is None else repeat, warmup=1 if warmup is None else warmup,
                              reference=ref, auto=auto)
        gts, extra_md = {s.name: s.gt for s in loaded}, ""
        doc = [r.as_dict() for r in rows]
        tables = [(rows, "fencli bench" + (f" (reference: {ref_path})" if ref_path else ""))]
    if out_dir is not None:
        B.write_outputs(out_dir, rows, gts, notes=notes, force=force, extra_md=extra_md)
    if json:
        print_json(doc)
        return
    for table_rows, title in tables:
        console.print(_table([B.flat(r) for r in table_rows], title))
    for n in notes:
        console.print(n)
    console.print(B.TIMING_NOTE)
    if not enhancers:
        console.print("no FEN model: raw detectors only (see `fencli models`)")
    if out_dir is not None:
        console.print(f"tables and figures written to {out_dir}")
