"""``fencli models``: the named models and where (whether) each is installed."""

from __future__ import annotations

import json

import typer

from fencli.cli import app
from fencli.models import list_models, search_dirs


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the FEN models, embedded (fencli's own, shipped) and published, installed or not."""
    rows = [{"name": m.name, "kind": m.entry.kind if m.entry else None,
             "bands": m.entry.bands if m.entry else None,
             "variant": m.entry.variant if m.entry else None,
             "source": m.entry.source if m.entry else None,
             "installed": m.path is not None, "path": str(m.path) if m.path else None}
            for m in list_models()]
    if as_json:
        print(json.dumps({"models": rows, "search_path": [str(d) for d in search_dirs()]}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "kind", "bands", "variant", "source")
    table.add_column("installed", overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["kind"] or "?", str(r["bands"] or "?"), r["variant"] or "?",
                      r["source"] or "(unregistered)", r["path"] or "no")
    console = Console()
    console.print(table)
    console.print("search path: " + ", ".join(str(d) for d in search_dirs()))
