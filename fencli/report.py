"""What a person sees: Rich tables on the terminal, PNG figures of anomaly maps, JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fencli.output import atomic_path

if TYPE_CHECKING:
    from rich.table import Table


def __getattr__(name: str) -> Any:
    """``console``, the Rich console of the terminal output, made on first use: ``--json`` runs
    never import Rich (~30 ms of start-up)."""
    if name == "console":
        from rich.console import Console

        globals()["console"] = made = Console(stderr=False)
        return made
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def print_json(obj: Any) -> None:
    """One JSON document on stdout (NaN/inf become null: JSON has neither)."""
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not np.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, np.generic):
            return clean(v.item())
        if isinstance(v, Path):
            return str(v)
        return v
    sys.stdout.write(json.dumps(clean(obj), indent=2) + "\n")


def fmt(v: float | None, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def results_table(rows: Sequence[dict[str, Any]], title: str | None = None) -> Table:
    """A table of detection rows (``scene, method, model, bands, auc, seconds`` keys)."""
    from rich.table import Table

    table = Table(title=title, header_style="bold")
    for col, justify in (("scene", "left"), ("method", "left"), ("model", "left"), ("bands", "right"),
                         ("AUC", "right"), ("SNPR", "right"), ("enhance ms", "right"),
                         ("detect ms", "right")):
        table.add_column(col, justify=justify)
    for r in rows:
        sec = r.get("seconds", {})
        table.add_row(str(r["scene"]), r["method"].upper(), r.get("model") or "none", str(r["bands"]),
                      fmt(r.get("auc")), fmt(r.get("metrics", {}).get("snpr"), 2),
                      f"{1000 * sec.get('enhance', 0.0):.1f}", f"{1000 * sec.get('detect', 0.0):.1f}")
    return table


@contextmanager
def png_figure(path: str | Path, *, dpi: int, force: bool = False, **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """``(figure, axes)`` of ``pyplot.subplots(**subplots)`` on the Agg backend (files only, imported
    when a figure is asked for), written to ``path`` as a PNG, atomically, when the block ends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(**subplots)
    try:
        yield fig, axes
        with atomic_path(path, force=force) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)  # also when drawing or writing failed


def save_maps_png(path: str | Path, maps: Sequence[tuple[str, np.ndarray]],
                  gt: np.ndarray | None = None, *, force: bool = False, ncols: int | None = None) -> Path:
    """Anomaly maps side by side (plus the ground truth when known), written atomically; ``ncols``
    wraps them into rows (the demo: raw maps above, FE maps below). An ``H x W x 3`` panel is shown
    as a colour image."""
    panels = list(maps) + ([("ground truth", gt)] if gt is not None else [])
    ncols = min(ncols or len(panels), len(panels))
    nrows = -(-len(panels) // ncols)
    with png_figure(path, dpi=110, force=force, nrows=nrows, ncols=ncols,
                    figsize=(3.2 * ncols, 3.4 * nrows), squeeze=False) as (fig, axes):
        for ax in axes.flat:
            ax.set_axis_off()
        for ax, (title, img) in zip(axes.flat, panels):
            ax.imshow(np.asarray(img, dtype=float), cmap="gray" if title == "ground truth" else "inferno",
                      interpolation="nearest")
            ax.set_title(title, fontsize=9)
        fig.tight_layout()
    return Path(path)


class ProgressBar:
    """A Rich progress bar, silent when disabled. Over pixels (a tiled run) it is transient, with Rich's
    default columns, and starts on the first update: a scene run whole (no tiles, no updates) never
    imports Rich's progress machinery. ``counted`` (the scenes of a batch): the scene at hand, done of
    total and elapsed time, on screen from the start and left there."""

    def __init__(self, label: str, total: int, enabled: bool = True, counted: bool = False) -> None:
        self.label, self.total, self.counted, self.bar = label, total, counted, None
        self.enabled = enabled and total > 0

    def __call__(self, n: int = 1) -> None:
        """Advance by ``n`` pixels (or scenes)."""
        if self._started():
            self.bar.advance(self.task, n)

    def show(self, item: str) -> None:
        """Name the item in progress (a batch's scene) in place of the label."""
        if self._started():
            self.bar.update(self.task, description=item)

    def _started(self) -> bool:
        if self.enabled and self.bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn()) if self.counted else ()
            self.bar = Progress(*columns, transient=not self.counted)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=self.total)
        return self.bar is not None

    def __enter__(self) -> ProgressBar:
        if self.counted:
            self._started()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
