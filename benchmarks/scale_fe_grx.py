"""FE+GRX on a synthetic scene far larger than a tile, out of core: peak memory and linear scaling.

Writes a synthetic ``N x N x B`` float32 ``.npy`` by row band (default 2000 x 2000 x 200: 3.2 GB) into
an ignored folder, runs :func:`fencli.engine.run` on it in tiles (read by window), and compares time
per pixel with a small scene (default 250 x 250) through the same tiled path. ``--enhance`` measures
:func:`fencli.engine.enhance` streaming the enhanced cube to a ``.npy`` instead (``fencli enhance --tile``).
Wall and CPU time per pixel are both reported: on a loaded shared machine the CPU-time ratio is the
fairer scaling figure. Peak resident memory is the kernel's ``VmHWM`` (anonymous + file-backed pages), reset before each
run through ``/proc/self/clear_refs``, cross-checked by a psutil sampling thread.

    python benchmarks/scale_fe_grx.py                       # the full run (minutes)
    python benchmarks/scale_fe_grx.py --size 400 --small 100 --model fencli-50   # a quick check
    python benchmarks/scale_fe_grx.py --enhance             # enhance 2000 x 2000 x 200 to disk
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fencli.engine import enhance, run  # noqa: E402
from fencli.metrics import roc_auc  # noqa: E402
from fencli.tiles import create_raw, default_tile  # noqa: E402


def write_scene(path: Path, n: int, bands: int, seed: int = 0, band_rows: int = 50) -> np.ndarray:
    """A smooth endmember mixture with planted 2x2 targets, written row band by row band; returns gt."""
    rng = np.random.default_rng(seed)
    wl = np.linspace(0, 1, bands)
    ends = np.stack([0.5 + 0.25 * np.sin(2 * np.pi * (k + 1) * wl / 3 + rng.uniform(0, np.pi)) for k in range(4)])
    target = 0.5 + 0.4 * np.cos(10 * np.pi * wl + 1.0)
    gt = np.zeros((n, n), np.uint8)
    n_targets = max(4, n * n // 20000)
    rc = rng.integers(4, n - 6, size=(n_targets, 2))
    for r, c in rc:
        gt[r:r + 2, c:c + 2] = 1
    out = create_raw(path, (n, n, bands), np.float32)
    xx = np.arange(n) / n
    for r0 in range(0, n, band_rows):
        r1 = min(n, r0 + band_rows)
        yy = (np.arange(r0, r1) / n)[:, None]
        ab = np.stack([np.sin(3 * yy + 0 * xx) ** 2, np.cos(2 * xx + 0 * yy) ** 2, yy * xx, 1 - yy + 0 * xx], -1)
        ab /= ab.sum(-1, keepdims=True) + 1e-9
        block = ab @ ends + 0.01 * np.random.default_rng(seed + r0 + 1).standard_normal((r1 - r0, n, bands))
        mask = gt[r0:r1].astype(bool)
        block[mask] = 0.85 * block[mask] + 0.15 * target
        out.write(r0, 0, block.astype(np.float32))
    out.close()
    return gt


class PeakRSS:
    """Peak resident set (VmHWM, incl. file-backed pages) of this process over a ``with`` block."""

    def __enter__(self) -> "PeakRSS":
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        except OSError:
            pass
        import psutil

        self.proc, self.sampled, self._stop = psutil.Process(), 0, threading.Event()
        self._t = threading.Thread(target=self._sample, daemon=True)
        self._t.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.sampled = max(self.sampled, self.proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        status = Path("/proc/self/status").read_text()
        self.hwm = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmHWM"))) * 1024


def run_one(path: Path, gt: np.ndarray, session, tile: int, workdir: Path, to_disk: bool) -> dict:
    out = workdir / "enhanced.npy"
    with PeakRSS() as mem:
        t0, c0 = time.perf_counter(), time.process_time()
        if to_disk:
            h, w = gt.shape
            with create_raw(out, (h, w, session.bands), np.float32) as sink:
                enhance(path, session, tile=tile, out=sink)
            res = None
        else:
            res = run(path, "grx", enhancer=session, tile=tile, workdir=workdir)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = gt.size
    row = {"shape": [*gt.shape, session.bands], "seconds": round(seconds, 2),
           "us_per_pixel": round(seconds / n * 1e6, 2), "cpu_us_per_pixel": round(cpu / n * 1e6, 2),
           "peak_rss_gb": round(mem.hwm / 1e9, 3), "peak_rss_sampled_gb": round(mem.sampled / 1e9, 3)}
    if res is not None:
        row |= {"stages": {k: round(v, 2) for k, v in res.seconds.items()}, "auc": round(roc_auc(res.scores, gt), 6)}
    out.unlink(missing_ok=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2000)
    ap.add_argument("--small", type=int, default=250)
    ap.add_argument("--tile", type=int, default=None, help="tile side (default: from available memory)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="fencli-200", help="FEN model name/path (default: fencli's embedded 200-band model)")
    ap.add_argument("--enhance", action="store_true", help="stream the enhanced cube to disk instead of detecting")
    ap.add_argument("--dir", type=Path, default=ROOT / ".cache" / "bench-scale")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic scenes")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    from fencli.enhancers import load_session

    session = load_session(args.model, device="cpu", threads=args.threads)
    bands = session.bands
    tile = args.tile or default_tile(bands)  # both scenes tiled: the same code path
    report = {"fen": args.model, "mode": "enhance to .npy" if args.enhance else "FE+GRX", "threads": args.threads,
              "tile": tile}
    one = lambda path, gt: run_one(path, gt, session, tile, args.dir, args.enhance)  # noqa: E731
    small = args.dir / f"scene-{args.small}x{args.small}x{bands}.npy"
    small_gt = write_scene(small, args.small, bands)
    one(small, small_gt)  # warm-up: thread pools, allocator
    # The small scene runs before and after the large one: on a shared machine the load drifts.
    report["small_before"] = one(small, small_gt)
    print("small", json.dumps(report["small_before"]), flush=True)
    large = args.dir / f"scene-{args.size}x{args.size}x{bands}.npy"
    t0 = time.perf_counter()
    gt = write_scene(large, args.size, bands)
    report["large_write_seconds"] = round(time.perf_counter() - t0, 1)
    report["large"] = one(large, gt)
    print("large", json.dumps(report["large"]), flush=True)
    report["small_after"] = one(small, small_gt)
    if not args.keep:
        small.unlink()
        large.unlink()
    per_small = (report["small_before"]["us_per_pixel"] + report["small_after"]["us_per_pixel"]) / 2
    report["time_per_pixel_ratio"] = round(report["large"]["us_per_pixel"] / per_small, 3)
    # CPU seconds (all threads) per pixel: what a shared machine's load distorts least.
    cpu_small = (report["small_before"]["cpu_us_per_pixel"] + report["small_after"]["cpu_us_per_pixel"]) / 2
    report["cpu_time_per_pixel_ratio"] = round(report["large"]["cpu_us_per_pixel"] / cpu_small, 3)
    report["cpu_load_1min"] = round(__import__("os").getloadavg()[0], 2)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
