"""Many scenes per command: expand inputs, skip finished scenes, isolate failures, write a summary.

Each scene's scores go to ``OUT_DIR/<scene>.<tag>.npy`` (atomically); a scene whose output exists is
skipped unless ``force``, so an interrupted campaign resumes where it stopped. A scene that fails
(corrupt file, too few bands, ...) becomes an ``error`` row and the batch goes on; the caller turns
``Summary.failed`` into a non-zero exit status. ``summary.csv`` and ``summary.json`` list every scene,
keeping the rows of earlier runs with another method or model (rows keyed by scene, method, model).
"""

from __future__ import annotations

import glob
import json
import time
import traceback
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from fencli.errors import FencliError
from fencli.io import read_scene
from fencli.output import csv_text, write_array, write_text
from fencli.report import ProgressBar

SCENE_SUFFIXES = (".mat", ".npy", ".npz", ".h5", ".hdf5", ".he5", ".hdr", ".tif", ".tiff")
FIELDS = ("scene", "path", "status", "shape", "bands", "method", "model", "auc", "seconds", "out", "error",
          "nodata_pixels", "gt_nodata_pixels")


@dataclass
class Row:
    """One scene's line in the summary."""

    scene: str
    path: str
    status: str  # ok | skipped | error
    shape: list[int] | None = None
    bands: int | None = None
    method: str | None = None
    model: str | None = None
    auc: float | None = None
    seconds: float | None = None
    out: str | None = None
    error: str | None = None
    nodata_pixels: int | None = None  # scored NaN (the map's nodata), left out of the AUC
    gt_nodata_pixels: int | None = None


@dataclass
class Summary:
    rows: list[Row] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(r.status == "error" for r in self.rows)

    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.rows) for s in ("ok", "skipped", "error")}


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files, directories (their scene files, not recursive) and glob patterns, deduplicated, in order."""
    found: list[Path] = []
    for item in inputs:
        text = str(item)
        p = Path(text)
        if p.is_dir():
            found += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in SCENE_SUFFIXES)
        elif p.exists():
            found.append(p)
        elif glob.has_magic(text):
            matches = sorted(Path(m) for m in glob.glob(text) if Path(m).is_file())
            if not matches:
                raise FencliError(f"{text}: matches no file")
            found += matches
        else:
            raise FencliError(f"{text}: no such file or directory")
    unique: dict[Path, Path] = {}
    for f in found:
        unique.setdefault(f.resolve(), f)  # the first spelling of a file given twice
    if not unique:
        raise FencliError("no scene files found in the inputs")
    return list(unique.values())


def scene_names(paths: list[Path]) -> list[str]:
    """Output stems: the file stem, prefixed by parent folders where two inputs would collide."""
    names = [p.stem for p in paths]
    depth = 1
    while len(set(names)) < len(names) and depth < 8:
        counts = {n: names.count(n) for n in names}
        names = [("-".join(p.resolve().parts[-1 - depth:-1]) + "-" + p.stem) if counts[n] > 1 else n
                 for p, n in zip(paths, names)]
        depth += 1
    return names


def detect_scene(path: Path, out: Path, *, method: str = "grx", enhancer: Any = None, model: str | None = None,
                 bands: int | None = None, tile: int | None = None, options: dict | None = None,
                 key: str | None = None, nodata: list[str] | None = None) -> dict:
    """One scene through :func:`fencli.api.run_scene` (tiled when larger than memory allows), scores
    saved to ``out``; returns its summary fields. ``enhancer`` pickles as a handle that reloads the
    model, so a Dask worker in another process runs it too."""
    from fencli.api import run_scene

    t0 = time.perf_counter()
    scene = read_scene(path, key=key, validate=False, nodata=nodata)  # checked as a single-scene run checks it
    res = run_scene(scene, method, enhancer, bands=bands, options=options, tile=tile, workdir=out.parent)
    write_array(out, res.scores.astype(np.float32), force=True)  # run_batch already skipped finished scenes
    return {"shape": list(res.shape), "bands": res.bands, "auc": res.auc,
            "seconds": round(time.perf_counter() - t0, 3), "nodata_pixels": res.nodata_pixels,
            "gt_nodata_pixels": res.gt_nodata_pixels}


def _guarded(process: Callable[..., dict], path: Path, out: Path) -> tuple[dict | None, str | None]:
    """Run one scene, turning any failure into a one-line message (a bad file must not stop a batch)."""
    try:
        return process(path, out), None
    except FencliError as err:
        return None, str(err)
    except Exception as err:  # noqa: BLE001 - corrupt files raise anything from h5py/scipy/numpy
        last = traceback.extract_tb(err.__traceback__)[-1]
        return None, f"{type(err).__name__}: {err} ({Path(last.filename).name}:{last.lineno})"


def _summary_rows(out_dir: Path) -> list[dict]:
    """The rows of ``out_dir/summary.json``: the ``{out_dir, counts, scenes}`` object, or the bare list
    of rows older fencli wrote; none when it is absent or unreadable."""
    try:
        data = json.loads((out_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return []
    rows = data.get("scenes") if isinstance(data, dict) else data
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def _earlier_rows(out_dir: Path) -> dict[str, dict]:
    """An earlier run's summary rows by output path, so a resumed batch keeps their figures."""
    return {r["out"]: r for r in _summary_rows(out_dir)
            if r.get("status") in ("ok", "skipped") and isinstance(r.get("out"), str)}


def run_batch(inputs: Iterable[str | Path], out_dir: str | Path, *, method: str = "grx",
              model: str | None = None, force: bool = False, process: Callable[..., dict] | None = None,
              client: Any = None, progress: bool = True, **scene_kw: Any) -> Summary:
    """Detect anomalies in every input scene; ``process(path, out) -> fields`` defaults to
    :func:`detect_scene` with ``scene_kw``. With a Dask ``client`` each scene is one task."""
    paths = expand_inputs(inputs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    process = process or partial(detect_scene, method=method, model=model, **scene_kw)
    tag = f"{Path(model).stem}-{method}" if model else method  # a map made with another model is not 'done'
    earlier = _earlier_rows(out_dir)
    rows: list[Row] = []
    todo = []
    names = scene_names(paths)
    _check_outputs(paths, [out_dir / f"{name}.{tag}.npy" for name in names], out_dir)
    for i, (p, name) in enumerate(zip(paths, names)):
        out = out_dir / f"{name}.{tag}.npy"
        prev = earlier.get(str(out), {})
        rows.append(Row(name, str(p), "skipped", method=method, model=model, out=str(out),
                        **{k: prev.get(k) for k in ("shape", "bands", "auc", "seconds", "nodata_pixels",
                                                    "gt_nodata_pixels")}))
        if force or not out.exists():
            todo.append((i, p, out))
    with ProgressBar("scenes", len(todo), progress, counted=True) as bar:
        if client is None:
            for i, p, out in todo:
                bar.show(rows[i].scene)
                rows[i] = _row(rows[i], *_guarded(process, p, out))
                bar()
        else:
            from distributed import as_completed

            futures = {client.submit(_guarded, process, p, out, pure=False): i for i, p, out in todo}
            for fut in as_completed(futures):
                i = futures[fut]
                rows[i] = _row(rows[i], *fut.result())
                bar.show(rows[i].scene)
                bar()
    summary = Summary(rows)
    write_summary(summary, out_dir)
    return summary


def _check_outputs(paths: list[Path], outs: list[Path], out_dir: Path) -> None:
    """Before any scene: the folder takes files, and no map or summary is one of the input scenes
    (however spelled: symlinks, hard links), ``--force`` or not (issue 23)."""
    from fencli.output import OutputPlan

    plan = OutputPlan(force=True, inputs={"scene": paths})
    for out in outs:
        plan.add("--out-dir", out, "npy")
    plan.add("--out-dir", out_dir / "summary.json", "json")
    plan.add("--out-dir", out_dir / "summary.csv", "csv")
    plan.check()


def _row(row: Row, fields: dict | None, error: str | None) -> Row:
    if error is not None:
        return Row(row.scene, row.path, "error", method=row.method, model=row.model, error=error)
    return Row(row.scene, row.path, "ok", method=row.method, model=row.model, out=row.out, **fields)


def _key(row: dict) -> tuple:
    return row.get("scene"), row.get("method"), row.get("model")


def summary_json(summary: Summary | list[dict], out_dir: Path) -> dict:
    """The shape of ``summary.json`` and of ``fencli detect --out-dir ... --json``:
    ``{"out_dir", "counts": {ok, skipped, error}, "scenes": [rows]}``."""
    rows = [asdict(r) for r in summary.rows] if isinstance(summary, Summary) else summary
    counts = {s: sum(r.get("status") == s for r in rows) for s in ("ok", "skipped", "error")}
    return {"out_dir": str(out_dir), "counts": counts, "scenes": rows}


def write_summary(summary: Summary, out_dir: Path) -> list[dict]:
    """``summary.json`` (:func:`summary_json`) and ``summary.csv`` in ``out_dir``, each written
    atomically; returns the rows written.

    The folder's history is kept: rows are keyed by (scene, method, model), so this run's rows
    replace the earlier rows with the same key, in place, and earlier rows of other keys (a run with
    another method or model in the same folder) stay, this run's new keys following them.
    """
    current = [asdict(r) for r in summary.rows]
    mine = {_key(r): r for r in current}
    data, placed = [], set()
    for old in _summary_rows(out_dir):
        key = _key(old)
        if key in placed:
            continue
        data.append(mine.get(key, old))
        placed.add(key)
    data += [r for r in current if _key(r) not in placed]
    text = json.dumps(summary_json(data, out_dir), indent=1) + "\n"
    write_text(out_dir / "summary.json", text, force=True)  # rewritten every run, history kept
    rows = ([d.get(k) if k != "shape" or not d.get(k) else "x".join(map(str, d[k])) for k in FIELDS] for d in data)
    write_text(out_dir / "summary.csv", csv_text(FIELDS, rows, line_end="\r\n"), force=True)  # csv's default line end
    return data


def summary_table(summary: Summary, out_dir: Path) -> Any:
    """The terminal table of a batch run: scene, method, model, status, shape, AUC, seconds, error."""
    from rich.table import Table

    table = Table("scene", "method", "model", "status", "shape", "AUC", "seconds", "error",
                  title=f"{len(summary.rows)} scenes -> {out_dir}")
    for r in summary.rows:
        table.add_row(r.scene, r.method or "", r.model or "none", r.status,
                      "x".join(map(str, r.shape)) if r.shape else "",
                      f"{r.auc:.4f}" if r.auc is not None else "", f"{r.seconds:.1f}" if r.seconds else "",
                      r.error or "")
    return table
