"""``fencli detect`` and ``fencli demo``: anomaly maps of one scene, raw or FEN-enhanced."""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from fencli.cli import app
from fencli.cli.options import (Bands, ConstantBands, Device, DetectThreads, Force, GtFile, GtKey, Json, Key, Layout,
                                Model, Nan, Nodata, Tile, with_detector_options)
from fencli.cluster import DaskExecutor, dask_client  # Dask itself is imported only when a client starts
from fencli.enhancers import load_enhancer
from fencli.errors import FencliError

if TYPE_CHECKING:
    from fencli.engine import Result


def result_row(scene: str, shape: tuple[int, ...], res: Result, seconds: dict, out: Path | None) -> dict:
    """The JSON contract of ``fencli detect --json``: ``nodata_pixels`` (the scene's nodata pixels,
    scored NaN) and ``gt_nodata_pixels`` (the ground truth's), both left out of ``auc`` and ``metrics``."""
    return {"scene": scene, "shape": list(shape), "bands": res.bands, "method": res.method,
            "model": res.model, "auc": res.auc, "metrics": res.metrics, "seconds": seconds,
            "out": str(out) if out else None, "nodata_pixels": res.nodata_pixels,
            "gt_nodata_pixels": res.gt_nodata_pixels}


def nodata_text(values: list[float]) -> list[float | str]:
    """Nodata values for JSON: numbers, ``"nan"`` for NaN/Inf (JSON has no NaN)."""
    return ["nan" if v != v else v for v in values]


Cubes = Annotated[list[Path], typer.Argument(
    help="Scene file(s): .mat (v5/v7.3), .npy, .npz, .h5/.hdf5, ENVI .hdr or GeoTIFF .tif; with --out-dir also folders and globs.",
    show_default=False)]
Engine = Annotated[str, typer.Option("--engine", help="local, or dask (needs fencli[dask]): tiles and scenes as Dask tasks.")]
Scheduler = Annotated[Optional[str], typer.Option("--scheduler", help="Address of a running dask.distributed scheduler (default: a LocalCluster).")]
OutDir = Annotated[Optional[Path], typer.Option("--out-dir", help="Many scenes: write <scene>.<method>.npy each and summary.csv/json here; finished scenes are skipped unless --force.")]


def objects_line(summary: dict) -> str:
    """One terminal line about the thresholded objects."""
    t = summary["threshold"]
    line = (f"{summary['count']} objects above {t['value']:.6g} ({t['rule']}"
            + (f" {t['requested']:g}" if t["requested"] is not None else "")
            + f", {t['flagged_pixels']} pixels)")
    if summary["recall"] is not None:
        prec = "-" if summary["precision"] is None else f"{summary['precision']:.3f}"
        line += f"; object precision {prec}, recall {summary['recall']:.3f} of {summary['gt_objects']} targets"
    return line


def write_products(scene, scores, found, grid, label: str, *, out: Path | None, mask: Path | None,
                   objects: Path | None, polygons: bool, quicklook: Path | None, force: bool) -> list[str]:
    """Write the map, mask, object table and quick-look on the input's grid; returns stderr notes."""
    from fencli.georef import describe
    from fencli.objects import write_objects
    from fencli.output import asks_for_grid, write_raster
    from fencli.quicklook import save_quicklook

    notes = []
    if out is not None:
        notes.append(write_raster(out, scores.astype("float32"), grid, force=force, key="scores",
                                  description=f"anomaly score ({label})", nodata=float("nan")))
    if mask is not None:
        notes.append(write_raster(mask, found.mask, grid, force=force, key="mask",
                                  description=f"detection mask ({label} > {found.threshold.value:.6g})"))
    if objects is not None:
        write_objects(objects, found.objects, georef=grid, labels=found.labels, polygons=polygons, force=force)
    if quicklook is not None:
        save_quicklook(quicklook, scene.cube, scores, found.labels, wavelengths=scene.meta.get("wavelengths"),
                       title=label, threshold=found.threshold.value, force=force)
    if grid is None and asks_for_grid(out, mask, objects):  # not on every --out x.npy (issue 23)
        notes.append(describe(None))
    return notes


def detect(
    cubes: Cubes,
    method: Annotated[str, typer.Option("--method", help="The detector (help derived from the registry).")] = "grx",
    bands: Bands = None,
    model: Model = "auto",
    gt: GtFile = None,
    gt_key: GtKey = None,
    key: Key = None,
    layout: Layout = "hwb",
    nan: Nan = "error",
    constant_bands: ConstantBands = "error",
    nodata: Nodata = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the score map: .tif (GeoTIFF), .hdr (ENVI), .h5, .npy or .mat; .tif, .hdr and .h5 keep the input's georeferencing.")] = None,
    png: Annotated[Optional[Path], typer.Option("--png", help="Write a PNG of the map (and the ground truth).")] = None,
    threshold: Annotated[Optional[str], typer.Option("--threshold", "-t", help="Detection threshold: a score (3.5), a percentile (99.5%), 'auto' (median + 5 MAD) or 'f1' (oracle: best pixel F1 against --gt). Flags scores strictly above it.")] = None,
    far: Annotated[Optional[str], typer.Option("--far", help="Threshold by false-alarm rate: flag at most this fraction of pixels (the empirical 1-FAR quantile).")] = None,
    mask: Annotated[Optional[Path], typer.Option("--mask", help="Write the uint8 detection mask (same formats as --out).")] = None,
    objects: Annotated[Optional[Path], typer.Option("--objects", help="Write the detected objects (8-connected): .csv or .geojson.")] = None,
    polygons: Annotated[bool, typer.Option("--polygons", help="GeoJSON objects as pixel outlines instead of centroid points.")] = False,
    min_pixels: Annotated[int, typer.Option("--min-pixels", help="Drop objects smaller than this many pixels.")] = 1,
    quicklook: Annotated[Optional[Path], typer.Option("--quicklook", help="Write a PNG: the scene in colour with objects outlined, beside the map.")] = None,
    tile: Tile = None,
    engine: Engine = "local",
    scheduler: Scheduler = None,
    out_dir: OutDir = None,
    device: Device = "auto",
    threads: DetectThreads = None,
    json: Json = False,
    force: Force = False,
    detector_options: dict | None = None,
) -> None:
    """Score every pixel of CUBE for anomaly, FEN-enhanced by default (--model none: raw).

    Without --model the adaptive FEN (every band, no training) enhances the scene first; a one-band
    scene runs raw, said in one line. --model fencli-200 (or -100, -50) uses fencli's fixed FEN of that band count.
    Scenes larger than a tile run out of core (tiled FEN, streamed detectors) with the same result.

    Examples:

    \b
      fencli detect scene.mat
      fencli detect scene.mat --model none --method slrx
      fencli detect scene.mat --method slrx --model ferd-200-supp --bands 200
      fencli detect scene.hdr --gt truth.png --out map.npy --png map.png --json
      fencli detect strip.tif --nodata -9999 --out map.tif
      fencli detect scene.hdr --far 1e-3 --out map.tif --mask mask.tif --objects objs.geojson --quicklook ql.png
      fencli detect flights/ 'more/*.hdr' --model ferd-200 --out-dir maps/ --engine dask
    """
    if engine not in ("local", "dask"):
        raise FencliError(f"--engine must be local or dask, not {engine!r}")
    if scheduler and engine != "dask":
        raise FencliError("--scheduler needs --engine dask")
    if tile is not None and tile < 0:
        raise FencliError(f"--tile must be >= 0, got {tile}")
    options = detector_options or {}
    from fencli.detectors import make_detector
    from fencli.threads import limit_threads

    make_detector(method, options)  # an unknown method or a flag it does not take fails first
    limit_threads(threads)
    if out_dir is not None or len(cubes) > 1:
        refuse_batch_flags(
            out_dir,
            per_scene={"--threshold": threshold, "--far": far, "--mask": mask, "--objects": objects,
                       "--quicklook": quicklook, "--gt-key": gt_key,
                       "--constant-bands keep": None if constant_bands == "error" else constant_bands},
            outputs={"--out": out, "--png": png, "--gt": gt},
            whole_scene=layout != "hwb" or nan != "error" or tile == 0)
        return detect_many(cubes, out_dir, method=method, bands=bands, model=model, key=key, options=options,
                           tile=tile, engine=engine, scheduler=scheduler, device=device, threads=threads,
                           json=json, force=force, nodata=nodata)
    one_scene(cubes[0], method, options, bands=bands, model=model, gt=gt, gt_key=gt_key, key=key, layout=layout,
              nan=nan, constant_bands=constant_bands, out=out, png=png, threshold=threshold, far=far, mask=mask,
              objects=objects, polygons=polygons, min_pixels=min_pixels, quicklook=quicklook, tile=tile,
              engine=engine, scheduler=scheduler, device=device, threads=threads, json=json, force=force,
              nodata=nodata)


def one_scene(cube: Path, method: str, options: dict, *, bands: int | None, model: str, gt: Path | None,
              gt_key: str | None, key: str | None, layout: str, nan: str, constant_bands: str, out: Path | None,
              png: Path | None, threshold: str | None, far: str | None, mask: Path | None, objects: Path | None,
              polygons: bool, min_pixels: int, quicklook: Path | None, tile: int | None, engine: str,
              scheduler: str | None, device: str, threads: int | None, json: bool, force: bool,
              nodata: list[str] | None) -> None:
    """One scene: outputs checked, read, model chosen, :func:`fencli.api.run_scene`, products written
    together, then the table or the JSON contract."""
    from fencli import georef as geo
    from fencli.io import read_scene
    from fencli.models import AUTO
    from fencli.objects import detect_objects, parse_threshold
    from fencli.output import OutputPlan
    from fencli.report import print_json, save_maps_png

    rule = parse_threshold(threshold, far)
    if polygons and (objects is None or objects.suffix.lower() not in (".geojson", ".json")):
        raise FencliError("--polygons needs --objects FILE.geojson")
    defaulted = rule is None and any((mask, objects, quicklook))
    if defaulted:
        rule = parse_threshold("auto")
    plan = OutputPlan.checked(force=force, inputs={"scene": cube, "ground truth": gt}, outputs={  # issue 23
        "--out": (out, "raster"), "--mask": (mask, "raster"), "--objects": (objects, "objects"),
        "--png": (png, "png"), "--quicklook": (quicklook, "png")})
    t_start = time.perf_counter()
    auto = model.lower() == AUTO
    if not auto:  # a named model fails before the scene is read
        enhancer = load_enhancer(model, device, threads)  # session creation: in "total", not in "read"
    t0 = time.perf_counter()
    scene = read_scene(cube, key=key, gt=gt, gt_key=gt_key, layout=layout, nan=nan, validate=False, nodata=nodata)
    if auto:
        model = auto_model(model, scene.cube.shape[2], bands, method)
        enhancer = load_enhancer(model, device, threads)
    t_read = time.perf_counter() - t0
    res = run_scene(scene, method, enhancer, bands, tile, engine, scheduler, options, nan=nan,
                    constant_bands=constant_bands, bar=not json)
    t_read += res.seconds.pop("validate")  # the JSON's "read" has always included the checks
    grid = geo.from_meta(scene.meta)
    label = f"{'FE+' if res.model else ''}{method.upper()}"
    found = None if rule is None else detect_objects(res.scores, rule, min_pixels=min_pixels, georef=grid,
                                                     gt=scene.gt)
    with plan.publishing():  # all outputs appear together, or none (issue 23)
        notes = write_products(scene, res.scores, found, grid, label, out=out, mask=mask, objects=objects,
                               polygons=polygons, quicklook=quicklook, force=force)
        if png is not None:
            title = label + (f"  AUC {res.auc:.4f}" if res.auc is not None else "")
            save_maps_png(png, [(title, res.scores)], scene.gt, force=force)
    if defaulted:
        notes.append(f"no --threshold/--far: objects use --threshold auto ({found.threshold.value:.6g})")
    for note in filter(None, notes):
        typer.echo(f"fencli: {note}", err=True)
    seconds = {"read": t_read, **res.seconds, "total": time.perf_counter() - t_start}
    row = result_row(scene.name, scene.cube.shape, res, seconds, out)
    row["nodata"] = nodata_text(scene.nodata)
    row["provider"] = enhancer.provider if enhancer is not None else None
    row.update(geo.json_fields(grid))
    row["objects"] = found.summary() if found is not None else None
    row["files"] = {k: str(v) for k, v in (("mask", mask), ("objects", objects), ("quicklook", quicklook)) if v}
    if json:
        print_json(row)
    else:
        from fencli.report import console, results_table

        console.print(results_table([row], title=f"{scene.name}  {tuple(scene.cube.shape)}"))
        if res.auc is None:
            console.print("no ground truth: AUC not computed (pass --gt or --gt-key)")
        if res.nodata_pixels or res.gt_nodata_pixels:
            console.print(f"nodata: {res.nodata_pixels} pixels of the scene (scored NaN) and "
                          f"{res.gt_nodata_pixels} of the ground truth, left out of the metrics")
        if found is not None:
            console.print(objects_line(found.summary()))


def run_scene(scene, method: str, enhancer, bands: int | None, tile: int | None, engine: str,
              scheduler: str | None, options: dict, *, nan: str, constant_bands: str, bar: bool = False) -> Result:
    """:func:`fencli.api.run_scene` (validate, then detect), on Dask when asked, with a progress bar."""
    from fencli.api import run_scene as validated_run
    from fencli.report import ProgressBar

    h, w = scene.cube.shape[:2]
    passes = 3 if enhancer is not None else 2  # scan, (enhance,) detect
    with (dask_client(scheduler) if engine == "dask" else nullcontext()) as client, \
            ProgressBar(f"{scene.name} in tiles", h * w * passes, enabled=bar) as progress:
        return validated_run(scene, method, enhancer, bands=bands, options=options, nan=nan,
                             constant_bands=constant_bands, tile=tile,
                             executor=None if client is None else DaskExecutor(client), progress=progress)


def auto_model(model: str, scene_bands: int, bands: int | None, method: str) -> str:
    """``--model auto`` for detect: the default model, or ``none`` said in one line on stderr."""
    from fencli.models import pick_model

    model, why = pick_model("detect", model, scene_bands, bands)
    if why:
        typer.echo(f"fencli: {why}: ran raw {method.upper()} (--model none: raw without this note)", err=True)
    return model


def first_scene_bands(cubes: list[Path], key: str | None) -> int:
    """The band count of the first scene that reads (a bad file is the batch's error row, not this)."""
    from fencli.batch import expand_inputs
    from fencli.io import read_scene

    for path in expand_inputs(cubes):
        try:
            return read_scene(path, key=key, validate=False).cube.shape[2]
        except FencliError:
            continue
    return 0


def refuse_batch_flags(out_dir: Path | None, *, per_scene: dict, outputs: dict, whole_scene: bool) -> None:
    """Refuse, before any scene is read, the flags a batch cannot honour (``flag: value`` given or None)."""
    for flag, value in per_scene.items():
        if value is not None:
            raise FencliError(f"{flag} is for one scene; with --out-dir each scene's score map goes to the folder")
    if out_dir is None:
        raise FencliError("several scenes need --out-dir (one score map per scene goes there)")
    for flag, value in outputs.items():
        if value is not None:
            raise FencliError(f"{flag} is for one scene; with --out-dir each scene's map goes to the folder")
    if whole_scene:
        raise FencliError("--layout, --nan fill and --tile 0 are for one scene at a time")


def detect_many(cubes: list[Path], out_dir: Path, *, method: str, bands: int | None, model: str, key: str | None,
                options: dict, tile: int | None, engine: str, scheduler: str | None, device: str,
                threads: int | None, json: bool, force: bool, nodata: list[str] | None = None) -> None:
    """Many scenes: one progress bar, per-scene rows in OUT_DIR/summary.{csv,json}, failures isolated."""
    from fencli.batch import run_batch
    from fencli.models import AUTO
    from fencli.report import console, print_json

    if model.lower() == AUTO:  # one model for the batch: chosen by --bands, else by the first readable scene
        first = bands if bands is not None else first_scene_bands(cubes, key)
        model = auto_model(model, first, bands, method)
    enhancer = load_enhancer(model, device, threads)  # fail early on a bad model, before any scene
    with (dask_client(scheduler) if engine == "dask" else nullcontext()) as client:
        summary = run_batch(cubes, out_dir, method=method, model=enhancer.name if enhancer else None, force=force,
                            client=client, progress=not json, enhancer=enhancer, bands=bands, tile=tile,
                            options=options, key=key, nodata=nodata)
    if json:
        from fencli.batch import summary_json

        print_json(summary_json(summary, out_dir))  # this run's rows; summary.json keeps earlier runs' too
    else:
        from fencli.batch import summary_table

        console.print(summary_table(summary, out_dir))  # shows method and model (issue 23)
        console.print(f"summary: {out_dir / 'summary.csv'}, {out_dir / 'summary.json'}")
    if summary.failed:  # the others are done: say so in one line and exit non-zero
        raise FencliError(f"{summary.failed} of {len(summary.rows)} scenes failed (see {out_dir / 'summary.csv'})")


def register(derive: bool = True) -> None:
    """(Re-)register ``detect`` with a flag for each option of the detectors registered now, so a
    detector class defined before the CLI runs brings its own flags (``derive=False``: none, for a
    command line that does not run ``detect``)."""
    app.registered_commands[:] = [c for c in app.registered_commands if c.callback is None
                                  or getattr(c.callback, "__wrapped__", c.callback) is not detect]
    app.command(name="detect")(with_detector_options(detect, derive))


@app.command()
def demo(
    model: Annotated[str, typer.Option("--model", "-m", help="FEN model for the FE rows: a name, a path, 'auto' (detect's default, the adaptive FEN) or 'none'.")] = "auto",
    methods: Annotated[str, typer.Option("--methods", help="Comma-separated detectors (lrx is opt-in: 6-7 s on 2 cores).")] = "grx,slrx",
    png: Annotated[Path, typer.Option("--png", help="Where to write the figure of the maps.")] = Path("fencli-demo.png"),
    json: Json = False,
    force: Force = False,
) -> None:
    """Run the detectors, raw and FEN-enhanced, on the embedded synthetic scene (100 x 100 x 200:
    fields, roads and a town block, with 12 small roof-material objects out of place inside fields).

    Prints the detection table and writes a PNG: the scene with the targets boxed, raw maps above, FE
    maps below (each with its percentile stretch and colour bar), the ground truth.

    Example:

    \b
      fencli demo --force
    """
    from fencli.detectors import make_detector
    from fencli.engine import run
    from fencli.models import pick_model
    from fencli.output import refuse_existing
    from fencli.quicklook import rgb_image, save_demo_png, top_hits
    from fencli.report import console, print_json, results_table
    from fencli.synthetic import demo_scene

    method_list = [m.strip().lower() for m in methods.split(",") if m.strip()]
    for m in method_list:
        make_detector(m)  # an unknown name fails before any work
    refuse_existing([png], force)
    cube, gt = demo_scene()
    model, why = pick_model("demo", model, cube.shape[2])
    enhancers = [None] if model.lower() == "none" else [None, load_enhancer(model)]
    rows, maps = [], []
    for enhancer in enhancers:
        maps.append([])  # raw maps on the first row, FE maps below
        for method in method_list:
            res = run(cube, method, enhancer=enhancer, gt=gt)
            rows.append(result_row("demo", cube.shape, res, res.seconds, None))
            name = f"FE+{method.upper()} ({res.model})" if res.model else f"raw {method.upper()}"
            hits, k = top_hits(res.scores, gt)
            maps[-1].append((f"{name}  AUC {res.auc:.4f}\ntop 1% of pixels: {hits} of {k} on targets", res.scores))
    save_demo_png(png, rgb_image(cube)[0], gt, maps, scene_title="the scene (fields, roads, a town)", force=force)
    if json:
        print_json(rows)
    else:
        console.print(results_table(rows, title="fencli demo: synthetic fields/roads/town 100 x 100 x 200, 12 targets"))
        if len(enhancers) == 1:
            console.print(f"raw detectors only ({why or 'model none'}; see `fencli models`)")
        console.print(f"maps written to {png}")
