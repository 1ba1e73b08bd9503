"""Benchmark table: AUC and in-process timings of every method, raw and FEN-enhanced, per scene.

Every row comes from :func:`fencli.engine.run`, so a benchmark figure is exactly what
``fencli detect`` computes. Timings are the engine's own ``enhance`` and ``detect`` seconds:
reading the file and creating the ONNX Runtime session are excluded on purpose (they are paid
once per process, not per scene).
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fencli.errors import FencliError
from fencli.detectors import make_detector
from fencli.engine import Enhancer, Result, run
from fencli.output import csv_text, refuse_existing, write_text
from fencli.preprocess import model_bands

SHARED_SCENES = ("abu-airport-1", "abu-airport-2", "hydice", "sandiego")


@dataclass
class BenchScene:
    """One scene to benchmark: the cube ``H x W x bands`` and its ground truth (or None)."""

    name: str
    cube: np.ndarray
    gt: np.ndarray | None


@dataclass
class Row:
    """One (scene, method, model) measurement; ``result`` keeps the last run's map for the figures."""

    scene: str
    method: str
    model: str | None
    bands: int
    auc: float | None
    metrics: dict[str, float]
    seconds: dict[str, dict[str, float]]
    result: Result
    reference_auc: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON contract of ``fencli bench --json`` (one element of the printed list)."""
        diff = None if self.auc is None or self.reference_auc is None else self.auc - self.reference_auc
        return {"scene": self.scene, "method": self.method, "model": self.model, "bands": self.bands,
                "auc": self.auc, "metrics": self.metrics, "seconds": self.seconds,
                "reference_auc": self.reference_auc, "auc_diff": diff}


# ---------------------------------------------------------------- scenes and defaults

def shared_dir() -> Path:
    """``$FENCLI_SHARED``, else ``../shared`` beside the repository (the project's data layout)."""
    env = os.environ.get("FENCLI_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared"


def default_scene_paths() -> list[Path]:
    """The shared scenes that are present (none on a fresh clone)."""
    data = shared_dir() / "data"
    return [data / f"{n}.mat" for n in SHARED_SCENES if (data / f"{n}.mat").is_file()]


def default_reference() -> Path | None:
    path = shared_dir() / "reference" / "auc_reference.json"
    return path if path.is_file() else None


def limit_blas_threads(threads: int) -> None:
    """Cap NumPy's BLAS threads and the detectors' worker threads like ONNX Runtime's: same-thread
    timings."""
    from threadpoolctl import threadpool_limits

    from fencli.threads import limit_threads

    limit_threads(threads)
    threadpool_limits(threads)


def load_scenes(paths: Sequence[Path]) -> list[BenchScene]:
    """Read each scene with :func:`fencli.io.read_scene` (``demo``, when no such file exists, is the
    synthetic demo scene); with no paths, the shared scenes, else the demo scene."""
    from fencli.io import read_scene
    from fencli.synthetic import demo_scene

    paths = list(paths) or default_scene_paths()
    if not paths:
        return [BenchScene("demo", *demo_scene())]
    scenes = []
    for p in paths:
        s = BenchScene("demo", *demo_scene()) if str(p) == "demo" and not Path(p).exists() else read_scene(p)
        scenes.append(BenchScene(s.name, s.cube, s.gt))
    return scenes


def parse_methods(text: str | Iterable[str]) -> list[str]:
    """``"grx,slrx"`` -> ``["grx", "slrx"]``, each checked against the registered detectors."""
    items = text.split(",") if isinstance(text, str) else list(text)
    methods = [m.strip().lower() for m in items if m.strip()]
    if not methods:
        raise FencliError("no method given: pass e.g. --methods grx,slrx")
    for m in methods:
        make_detector(m)  # raises the clear "unknown method" error
    return list(dict.fromkeys(methods))


# ---------------------------------------------------------------- reference AUCs

def load_reference(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        ref = json.loads(path.read_text())
    except FileNotFoundError:
        raise FencliError(f"{path}: no such reference file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FencliError(f"{path}: not a JSON reference file ({err})") from None
    if not isinstance(ref, dict):
        raise FencliError(f"{path}: expected {{scene: {{checkpoint: {{DETECTOR: {{auc}}}}}}}}")
    return ref


def reference_auc(ref: dict[str, Any] | None, scene: str, method: str, model: str | None,
                  bands: int) -> float | None:
    """The published code's AUC for this row, when the reference lists it.

    Layout: ``{scene: {checkpoint: {"GRX"|"FE+GRX"|"SLRX"|"FE+SLRX": {"auc": a}}}}``. A raw row's
    AUC depends only on the band count, so it is read from any checkpoint of that band count.
    """
    entry = (ref or {}).get(scene)
    if not isinstance(entry, dict):
        return None
    if model is not None:
        cells = [entry[model].get(f"FE+{method.upper()}")] if model in entry else []
    else:
        cells = [cell.get(method.upper()) for ckpt, cell in entry.items()
                 if isinstance(cell, dict) and _ckpt_bands(ckpt) == bands]
    aucs = [c["auc"] for c in cells if isinstance(c, dict) and isinstance(c.get("auc"), (int, float))]
    return float(aucs[0]) if aucs else None


def _ckpt_bands(name: str) -> int | None:
    """``ferd-200-supp`` -> 200."""
    parts = name.split("-")
    return int(parts[1]) if len(parts) >= 2 and parts[0] == "ferd" and parts[1].isdigit() else None


# ---------------------------------------------------------------- measuring

def measure(scene: BenchScene, method: str, enhancer: Any = None, *,
            bands: int | None = None, repeat: int = 3, warmup: int = 1) -> Row:
    """Run the engine ``warmup + repeat`` times; AUC of the last run, best/median seconds of the rest."""
    if repeat < 1 or warmup < 0:
        raise FencliError(f"--repeat must be >= 1 and --warmup >= 0 (got {repeat}, {warmup})")
    timed: list[tuple[float, float]] = []
    for _ in range(warmup + repeat):
        res = run(scene.cube, method, enhancer=enhancer, bands=bands, gt=scene.gt)
        timed.append((res.seconds["enhance"], res.seconds["detect"]))
    enhance, detect = zip(*timed[warmup:])
    samples = {"enhance": enhance, "detect": detect, "total": [e + d for e, d in zip(enhance, detect)]}
    return Row(scene.name, method, res.model, res.bands, res.auc, res.metrics,
               {k: {"best": min(v), "median": statistics.median(v)} for k, v in samples.items()}, res)


def bench_scene(scene: BenchScene, methods: Sequence[str], enhancers: Sequence[Enhancer], notes: list[str], *,
                bands: int | None = None, repeat: int = 3, warmup: int = 1,
                reference: dict[str, Any] | None = None, auto: bool = False) -> list[Row]:
    """Raw rows (once per band count in use) then FE rows for each enhancer the scene can feed.

    With models, the raw rows use each model's band count so raw and FE compare like for like; a
    model with more bands than the scene is skipped with a note in ``notes``. ``auto``: of the
    enhancers, only the scene's default model (:func:`fencli.models.pick_model`) runs.
    """
    n = scene.cube.shape[2]
    if auto:
        from fencli.models import AUTO, pick_model

        pick, _ = pick_model("bench", AUTO, n, bands)
        enhancers = [e for e in enhancers if e.name == pick]
        if not enhancers:
            notes.append(f"{scene.name}: {n} bands, no embedded FEN model for it: raw rows only")
    usable = []
    for e in enhancers:
        if e.bands is not None and e.bands > n:
            notes.append(f"{scene.name}: {n} bands, fewer than the {e.bands} of {e.name}: no FE rows")
        else:
            model_bands(bands, e)  # an explicit --bands must equal the model's
            usable.append(e)
    raw_bands = list(dict.fromkeys([e.bands or bands for e in usable] or [bands]))
    rows = []
    for method in methods:
        rows += [measure(scene, method, None, bands=b, repeat=repeat, warmup=warmup) for b in raw_bands]
        rows += [measure(scene, method, e, bands=bands, repeat=repeat, warmup=warmup) for e in usable]
    for r in rows:
        r.reference_auc = reference_auc(reference, r.scene, r.method, r.model, r.bands)
    return rows


def bench(scenes: Sequence[BenchScene], methods: Sequence[str], enhancers: Sequence[Enhancer] = (), *,
          bands: int | None = None, repeat: int = 3, warmup: int = 1,
          reference: dict[str, Any] | None = None, auto: bool = False) -> tuple[list[Row], list[str]]:
    """Every scene x method, raw and enhanced. Returns the rows and notes for the reader."""
    notes: list[str] = []
    rows = [r for s in scenes for r in bench_scene(s, methods, enhancers, notes, bands=bands, repeat=repeat,
                                                   warmup=warmup, reference=reference, auto=auto)]
    return rows, notes


# ---------------------------------------------------------------- HAD100

def had100_scenes(root: str | Path, sensor: str = "aviris_ng") -> list[tuple[str, Path, Path]]:
    """(name, cube .npy, ground-truth .png) of a HAD100 folder: ``test/<sensor>/*.npy`` and
    ``ground_truth/<sensor>/<name>.png``. Fails clearly on a missing folder or a missing mask."""
    root = Path(root)
    cubes_dir, gt_dir = root / "test" / sensor, root / "ground_truth" / sensor
    if not cubes_dir.is_dir():
        raise FencliError(f"{root} is not a HAD100 folder: {cubes_dir} is missing")
    cubes = sorted(cubes_dir.glob("*.npy"))
    if not cubes:
        raise FencliError(f"no HAD100 scenes (*.npy) in {cubes_dir}")
    out = []
    for c in cubes:
        g = gt_dir / f"{c.stem}.png"
        if not g.is_file():
            raise FencliError(f"{c.name} has no ground truth: {g} is missing")
        out.append((c.stem, c, g))
    return out


def read_had100_gt(path: str | Path) -> np.ndarray:
    """HAD100 mask: anomaly = nonzero in the PNG's second channel (a single-channel PNG: nonzero)."""
    from PIL import Image

    try:
        img = np.asarray(Image.open(path))
    except (OSError, ValueError) as err:
        raise FencliError(f"{path}: not a readable PNG ({err})") from None
    if img.ndim == 3:
        img = img[:, :, 1 if img.shape[2] >= 2 else 0]
    return (img != 0).astype(np.uint8)


def read_had100_scene(name: str, cube_path: Path, gt_path: Path) -> BenchScene:
    cube = np.load(cube_path, allow_pickle=False)
    if cube.ndim != 3:
        raise FencliError(f"{cube_path}: expected an H x W x bands array, got shape {cube.shape}")
    gt = read_had100_gt(gt_path)
    if gt.shape != cube.shape[:2]:
        raise FencliError(f"{gt_path}: mask {gt.shape} differs from the cube's {cube.shape[:2]}")
    return BenchScene(name, cube, gt)


def bench_had100(root: str | Path, methods: Sequence[str], enhancers: Sequence[Enhancer] = (), *,
                 bands: int | None = None, repeat: int = 1, warmup: int = 0,
                 sensor: str = "aviris_ng", auto: bool = False) -> tuple[list[Row], list[dict[str, Any]], list[str]]:
    """Per-scene rows of a HAD100 folder and the mean AUC per (method, model), scenes read one at a time."""
    rows: list[Row] = []
    notes: list[str] = []
    for name, c, g in had100_scenes(root, sensor):
        scene = read_had100_scene(name, c, g)
        for r in bench_scene(scene, methods, enhancers, notes, bands=bands, repeat=repeat, warmup=warmup,
                             auto=auto):
            r.result.scores = np.empty(0)  # keep memory flat over hundreds of scenes
            rows.append(r)
    return rows, mean_rows(rows), notes


def mean_rows(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Mean AUC and mean best total seconds per (method, model, bands), in first-seen order."""
    groups: dict[tuple, list[Row]] = {}
    for r in rows:
        groups.setdefault((r.method, r.model, r.bands), []).append(r)
    out = []
    for (method, model, b), rs in groups.items():
        aucs = [r.auc for r in rs if r.auc is not None]
        out.append({"scene": "mean", "method": method, "model": model, "bands": b, "scenes": len(rs),
                    "auc": float(np.mean(aucs)) if aucs else None,
                    "seconds": {"total": {"best": float(np.mean([r.seconds["total"]["best"] for r in rs]))}}})
    return out


# ---------------------------------------------------------------- writers

COLUMNS = ("scene", "method", "model", "bands", "auc", "reference_auc", "auc_diff",
           "enhance_ms_best", "detect_ms_best", "total_ms_best", "total_ms_median")


def flat(row: Row | dict[str, Any]) -> dict[str, Any]:
    """One table line: the columns of :data:`COLUMNS`, times (``<part>_ms_<stat>``) in milliseconds."""
    d = row.as_dict() if isinstance(row, Row) else row
    line = {c: d.get(c) for c in COLUMNS[:7]} | {"model": d["model"] or "none"}
    for col in COLUMNS[7:]:
        part, _, stat = col.split("_")
        line[col] = 1000 * d["seconds"][part][stat] if stat in d.get("seconds", {}).get(part, {}) else None
    return line


def _cell(v: Any, col: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if col == "auc_diff":
            return f"{v:+.6f}"
        return f"{v:.1f}" if col.endswith("_ms_best") or col.endswith("_ms_median") else f"{v:.4f}"
    return str(v)


def markdown_table(rows: Sequence[Row | dict[str, Any]], columns: Sequence[str] = COLUMNS) -> str:
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---" if c in ("scene", "method", "model") else "---:" for c in columns) + "|"]
    for r in rows:
        f = flat(r)
        lines.append("| " + " | ".join(_cell(f[c], c) for c in columns) + " |")
    return "\n".join(lines) + "\n"


TIMING_NOTE = ("seconds: best and median of the in-process enhance + detect time over the repeats "
               "(file reading and ONNX Runtime session creation excluded)")


def scene_figure(path: str | Path, rows: Sequence[Row], gt: np.ndarray | None, *, force: bool = False) -> Path:
    """Maps of one scene, one line per method (raw, then each model), the ground truth, and ROC curves."""
    from fencli.metrics import roc_curve
    from fencli.report import png_figure

    per = {m: [r for r in rows if r.method == m] for m in dict.fromkeys(r.method for r in rows)}  # in order
    n_maps = max(len(v) for v in per.values())
    ncols = n_maps + (2 if gt is not None else 0)
    with png_figure(path, dpi=100, force=force, nrows=len(per), ncols=ncols,
                    figsize=(2.9 * ncols, 2.9 * len(per)), squeeze=False) as (fig, axes):
        for i, (m, ax_row) in enumerate(zip(per, axes)):
            for ax in ax_row[:n_maps]:
                ax.set_axis_off()
            for ax, r in zip(ax_row, per[m]):
                label = f"{'FE+' if r.model else ''}{m.upper()}" + (f"\nAUC {r.auc:.4f}" if r.auc is not None else "")
                ax.imshow(r.result.scores, cmap="inferno", interpolation="nearest")
                ax.set_title(label, fontsize=8)
            if gt is None:
                continue
            ax = ax_row[n_maps]
            ax.set_axis_off()
            if i == 0:
                ax.imshow(gt, cmap="gray", interpolation="nearest")
                ax.set_title("ground truth", fontsize=8)
            ax = ax_row[n_maps + 1]
            for r in per[m]:
                pf, pd, _ = roc_curve(r.result.scores, gt)
                ax.plot(np.maximum(pf, 1e-4), pd, label=f"{r.model or 'raw'} {r.auc:.4f}", lw=1.2)
            ax.set(xscale="log", xlim=(1e-4, 1), ylim=(0, 1.01))
            ax.set_xlabel("false-alarm rate", fontsize=7)
            ax.set_ylabel("detection rate", fontsize=7)
            ax.tick_params(labelsize=6)
            ax.set_title(f"ROC {m.upper()}", fontsize=8)
            ax.legend(fontsize=6, loc="lower right")
        fig.suptitle(rows[0].scene if rows else "", fontsize=10)
        fig.tight_layout()
    return Path(path)


def write_outputs(out_dir: str | Path, rows: Sequence[Row], gts: dict[str, np.ndarray | None], *,
                  notes: Sequence[str] = (), force: bool = False, extra_md: str = "") -> list[Path]:
    """``bench.md``, ``bench.csv`` and one ``<scene>.png`` per scene into ``out_dir`` (created)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FencliError(f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    # fail before writing anything
    refuse_existing([out / "bench.md", out / "bench.csv"] + [out / f"{s}.png" for s in gts], force)
    md = "\n".join(["# fencli bench", "", markdown_table(rows), f"_{TIMING_NOTE}._", ""]
                   + [f"- {n}" for n in notes] + ([""] if notes else []) + ([extra_md] if extra_md else []))
    table = csv_text(COLUMNS, (flat(r).values() for r in rows))
    written = [write_text(out / "bench.md", md, force), write_text(out / "bench.csv", table, force)]
    for s, gt in gts.items():
        scene_rows = [r for r in rows if r.scene == s and r.result.scores.size]
        if scene_rows:
            written.append(scene_figure(out / f"{s}.png", scene_rows, gt, force=force))
    return written
