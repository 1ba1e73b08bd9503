"""Quick-look PNG: the scene as a colour picture with the detected objects outlined, beside the map.

Band choice: with wavelengths (nm, or micrometres when every value is below 100) the bands nearest
640 / 550 / 460 nm (red / green / blue) make a true-colour picture, provided each lies within 30 nm
of its target; otherwise (no wavelengths, or a scene that misses the visible) the bands at 3/4,
1/2 and 1/4 of the band index range make a false-colour picture. Each channel is stretched
linearly between its 2nd and 98th percentiles.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

RGB_NM = (640.0, 550.0, 460.0)
MAX_GAP_NM = 30.0
STRETCH = (2.0, 98.0)


def rgb_bands(n_bands: int, wavelengths: Sequence[float] | None = None) -> tuple[tuple[int, int, int], str]:
    """(band indices for R, G, B, a short note of how they were chosen)."""
    if wavelengths is not None and len(wavelengths) == n_bands:
        wl = np.asarray(wavelengths, dtype=float)
        if np.nanmax(wl) < 100.0:
            wl = wl * 1000.0  # micrometres
        picks = [int(np.nanargmin(np.abs(wl - t))) for t in RGB_NM]
        if all(abs(wl[i] - t) <= MAX_GAP_NM for i, t in zip(picks, RGB_NM)):
            return tuple(picks), "true colour " + "/".join(f"{wl[i]:.0f}" for i in picks) + " nm"
    picks = tuple(int(round(f * (n_bands - 1))) for f in (0.75, 0.5, 0.25))
    return picks, "false colour, bands " + "/".join(str(i + 1) for i in picks)


def stretch(channel: np.ndarray) -> np.ndarray:
    """Linear 2-98 percentile stretch to [0, 1] (NaN -> 0)."""
    c = np.asarray(channel, dtype=np.float64)
    ok = np.isfinite(c)
    if not ok.any():
        return np.zeros_like(c)
    lo, hi = np.percentile(c[ok], STRETCH)
    if hi <= lo:
        hi = lo + 1.0
    return np.clip(np.nan_to_num((c - lo) / (hi - lo), nan=0.0), 0.0, 1.0)


def rgb_image(cube: np.ndarray, wavelengths: Sequence[float] | None = None,
              nodata: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """``H x W x 3`` float image in [0, 1] and the band note; ``nodata`` pixels (``H x W`` bool) are
    left out of the stretch and black."""
    bands, note = rgb_bands(cube.shape[2], wavelengths)

    def channel(b: int) -> np.ndarray:
        c = np.asarray(cube[:, :, b], dtype=np.float64)
        return c if nodata is None else np.where(nodata, np.nan, c)

    return np.stack([stretch(channel(b)) for b in bands], -1), note


def save_quicklook(path: str | Path, cube: np.ndarray, scores: np.ndarray, labels: np.ndarray | None = None,
                   *, wavelengths: Sequence[float] | None = None, title: str = "",
                   threshold: float | None = None, force: bool = False) -> Path:
    """Write the two-panel PNG (RGB + outlines | score map + outlines), atomically. The scene's
    nodata pixels (NaN scores) are black in the RGB panel and left out of its stretch."""
    from matplotlib.collections import LineCollection

    from fencli.objects import outline_segments
    from fencli.report import png_figure

    missing = np.isnan(scores)
    rgb, note = rgb_image(cube, wavelengths, missing if missing.any() else None)
    h, w = scores.shape
    with png_figure(path, dpi=120, force=force, nrows=1, ncols=2, figsize=(10, 4.6 * h / max(w, 1) + 0.6),
                    squeeze=False, layout="constrained") as (fig, axes):
        ax_rgb, ax_map = axes[0]
        ax_rgb.imshow(rgb, interpolation="nearest")
        ax_rgb.set_title(f"scene ({note})", fontsize=9)
        shown = np.asarray(scores, dtype=float)
        finite = shown[np.isfinite(shown)]
        vmax = float(np.percentile(finite, 99.9)) if finite.size else None  # a few peaks must not blank the map
        im = ax_map.imshow(shown, cmap="inferno", interpolation="nearest", vmax=vmax)
        fig.colorbar(im, ax=ax_map, shrink=0.8, extend="max")
        n = int(labels.max()) if labels is not None and labels.size else 0
        sub = f"{n} objects" + (f", threshold {threshold:.4g}" if threshold is not None else "")
        ax_map.set_title(f"{title}  {sub}".strip(), fontsize=9)
        if n:
            segs = outline_segments(labels) - 0.5  # imshow puts pixel centres on integers
            for ax, colour in ((ax_rgb, "yellow"), (ax_map, "cyan")):
                ax.add_collection(LineCollection(segs, colors=colour, linewidths=0.8))
            from scipy import ndimage

            tops = ndimage.find_objects(labels)[:20]  # ids are ranks: label the 20 strongest
            for i, box in enumerate(tops, start=1):
                if box is not None:
                    ax_rgb.text(box[1].stop - 0.5, box[0].start - 0.5, str(i), color="yellow", fontsize=6)
        for ax in (ax_rgb, ax_map):
            ax.set(xlim=(-0.5, w - 0.5), ylim=(h - 0.5, -0.5))
            ax.set_axis_off()
    return Path(path)


MAP_STRETCH = (1.0, 99.0)  # score maps: the top 1% saturates (the titles count its targets), the floor too


def map_limits(scores: np.ndarray, percentiles: tuple[float, float] = MAP_STRETCH) -> tuple[float, float]:
    """``(vmin, vmax)`` of a score map's percentile stretch (finite values; a flat map gets a unit span)."""
    s = np.asarray(scores, dtype=np.float64)
    finite = s[np.isfinite(s)]
    if not finite.size:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, percentiles))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def top_hits(scores: np.ndarray, gt: np.ndarray, fraction: float = 0.01) -> tuple[int, int]:
    """(target pixels among the map's top ``fraction`` of pixels, how many pixels that is)."""
    flat = np.asarray(scores, dtype=np.float64).ravel()
    k = max(1, int(round(fraction * flat.size)))
    top = np.argpartition(flat, flat.size - k)[flat.size - k:]
    return int(np.asarray(gt).ravel()[top].astype(bool).sum()), k


def save_demo_png(path: str | Path, scene_rgb: np.ndarray, gt: np.ndarray,
                  rows: Sequence[Sequence[tuple[str, np.ndarray]]], *, scene_title: str = "the scene",
                  force: bool = False) -> Path:
    """The demo figure: the scene (colour, targets outlined) then each row's score maps.

    ``rows``: e.g. ``[[raw GRX, raw SLRX], [FE+GRX, FE+SLRX]]`` as ``(title, H x W scores)``. Every map
    has its own percentile stretch (:data:`MAP_STRETCH`: 1st to 99th percentile, ``inferno``: the saturated top is the top 1%) and
    colour bar, so a map whose scores span orders of magnitude (SLRX's product) is not a black panel
    with a few dots. The first column holds the scene with each target boxed (one pixel outside it,
    so the target stays visible), and below it the ground truth itself. Written atomically.
    """
    from matplotlib.patches import Rectangle
    from scipy import ndimage

    from fencli.report import png_figure

    ncols = 1 + max(len(r) for r in rows)
    nrows = max(2, len(rows))
    h, w = gt.shape
    boxes = [b for b in ndimage.find_objects(ndimage.label(np.asarray(gt) > 0)[0]) if b is not None]
    with png_figure(path, dpi=110, force=force, nrows=nrows, ncols=ncols, squeeze=False,
                    figsize=(3.6 * ncols, 3.35 * nrows), layout="constrained") as (fig, axes):
        for ax in axes.flat:
            ax.set_axis_off()
        ax = axes[0][0]
        ax.imshow(scene_rgb, interpolation="nearest")
        for rs, cs in boxes:  # a box one pixel outside each target: the target itself stays visible
            ax.add_patch(Rectangle((cs.start - 1.5, rs.start - 1.5), cs.stop - cs.start + 2, rs.stop - rs.start + 2,
                                   fill=False, edgecolor="cyan", linewidth=1.0))
        ax.set_title(f"{scene_title}\n{len(boxes)} targets ({int(np.count_nonzero(gt))} px) boxed", fontsize=9)
        ax = axes[1][0]
        ax.imshow(np.asarray(gt, dtype=float), cmap="gray", interpolation="nearest")
        ax.set_title("ground truth", fontsize=9)
        for i, row in enumerate(rows):
            for j, (title, scores) in enumerate(row, start=1):
                ax = axes[i][j]
                vmin, vmax = map_limits(scores)
                im = ax.imshow(np.asarray(scores, dtype=float), cmap="inferno", interpolation="nearest",
                               vmin=vmin, vmax=vmax)
                fig.colorbar(im, ax=ax, shrink=0.82, extend="both", format="%.3g").ax.tick_params(labelsize=7)
                ax.set_title(title, fontsize=9)
        for ax in axes.flat:
            ax.set(xlim=(-0.5, w - 0.5), ylim=(h - 0.5, -0.5))
    return Path(path)
