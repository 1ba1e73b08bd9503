"""Timings of the RX detectors against this machine's measured GEMM and memory rates.

Run from the repository root: ``python benchmarks/bench_detectors.py [--repeats 7] [--no-lrx]
[--no-published] [--spectral-window]``. Prints the machine, the BLAS and its threads, the measured
float64/float32 GEMM GFLOP/s and copy bandwidth, then per detector best/median milliseconds on a
synthetic 100 x 100 x 200 cube (and abu-airport-1's first 200 bands when ../shared is present),
the FLOP/byte floor from the measured rates, and ratios against the published per-pixel loops.
Other processes on a shared machine move the figures: compare the ratios within one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from fencli.detectors import grx, lrx, slrx  # noqa: E402

SHARED_SCENE = ROOT.parent / "shared" / "data" / "abu-airport-1.mat"


CPU_BEST: list[float] = []  # best process CPU milliseconds of the last ``timed`` call


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(best, median) wall milliseconds of ``repeats`` calls after one warm-up call.

    Also records the best process CPU time: on a machine shared with other jobs, CPU time with
    one BLAS thread is the steadier estimate of the single-core cost."""
    fn()
    times, cpu = [], []
    for _ in range(max(repeats, 1)):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    CPU_BEST[:] = [1e3 * min(cpu)]
    return 1e3 * min(times), 1e3 * float(np.median(times))


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    lines = [f"CPU: {cpu}, {os.cpu_count()} logical cores, load average {os.getloadavg()}",
             f"Python {platform.python_version()}, NumPy {np.__version__}"]
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            lines.append(f"BLAS: {pool.get('internal_api')} {pool.get('version')} "
                         f"({pool.get('architecture')}), {pool.get('num_threads')} threads")
    except ImportError:
        lines.append("BLAS: threadpoolctl not installed")
    return "\n".join(lines)


def rates() -> tuple[float, ...]:
    """Measured float64 and float32 GEMM GFLOP/s (each by wall and by CPU time), and copy GB/s
    counting read + write."""
    out = []
    for dtype in (np.float64, np.float32):
        a = np.random.default_rng(0).random((2048, 2048)).astype(dtype)
        best, _ = timed(lambda: a @ a, 3)
        out.append(2 * 2048**3 / best / 1e6)
        out.append(2 * 2048**3 / CPU_BEST[0] / 1e6)
    src = np.ones(1 << 25)  # 256 MiB
    dst = np.empty_like(src)
    best, _ = timed(lambda: np.copyto(dst, src), 5)
    out.append(2 * src.nbytes / best / 1e6)
    return tuple(out)


def floors(h: int, w: int, b: int, bs: int) -> dict[str, tuple[float, float]]:
    """(FLOPs, streamed bytes outside BLAS) of each detector as implemented."""
    n = h * w
    p = bs * bs
    blocks = -(-h // bs) * -(-w // bs)
    grx_flops = 2 * n * b * b  # syrk n b^2 + triangular solve n b^2
    grx_bytes = n * b * (2 * 2 + 8 + 8 + 8)  # uint16 read twice, centered written, norms read
    slrx_flops = (grx_flops + 2 * n * b * b  # full map + block second moments
                  + 2 * n * p * b + blocks * (8 / 3) * p**3  # Gram matrices and their solves
                  + blocks * ((b + p) ** 3 / 3))  # bordered Cholesky of the surround
    slrx_bytes = n * b * 8 * 6 + blocks * b * b * 8 * 12
    lrx_flops = n * ((b + 1) ** 3 / 3 + 8 * b * b)  # per pixel Cholesky + window updates
    lrx_bytes = n * b * b * 8 * 14  # ~14 passes over a B x B matrix per pixel
    return {"grx": (grx_flops, grx_bytes), "grx32": (grx_flops, grx_bytes),
            "slrx": (slrx_flops, slrx_bytes), "lrx": (lrx_flops, lrx_bytes)}


def synthetic(h: int = 100, w: int = 100, b: int = 200) -> np.ndarray:
    """A smooth 6-endmember mixture with noise, uint16 like the AVIRIS scenes."""
    rng = np.random.default_rng(7)
    ends = rng.random((6, b)) * 3000 + 500
    ab = rng.dirichlet(np.ones(6), size=(h, w))
    cube = ab @ ends + rng.normal(0, 20, (h, w, b))
    return np.clip(cube, 0, 65535).astype(np.uint16)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--no-lrx", action="store_true", help="skip LRX (seconds per run)")
    ap.add_argument("--no-published", action="store_true", help="skip the published per-pixel loops")
    ap.add_argument("--spectral-window", action="store_true",
                    help="time spectral.rx(window=(5, 21)) against lrx on a 30 x 30 crop (slow)")
    args = ap.parse_args(argv)

    print(machine())
    gemm64, cpu64, gemm32, cpu32, bw = rates()
    print(f"measured: float64 GEMM {gemm64:.1f} GFLOP/s ({cpu64:.1f} per CPU second), float32 GEMM "
          f"{gemm32:.1f} GFLOP/s ({cpu32:.1f} per CPU second), copy {bw:.1f} GB/s")

    cubes = {"synthetic": synthetic()}
    if SHARED_SCENE.exists():
        import scipy.io

        cubes["abu-airport-1"] = np.ascontiguousarray(scipy.io.loadmat(SHARED_SCENE)["data"][:, :, :200])
    else:
        print(f"({SHARED_SCENE} absent: synthetic cube only)")

    h, w, b = 100, 100, 200
    work = floors(h, w, b, b // 25)
    for name, cube in cubes.items():
        print(f"\n{name} {cube.shape} {cube.dtype}")
        results, cpu_results = {}, {}
        for det, fn, reps in (("grx", lambda: grx(cube), args.repeats),
                              ("grx32", lambda: grx(cube, float32_scores=True), args.repeats),
                              ("slrx", lambda: slrx(cube), args.repeats),
                              ("lrx", lambda: lrx(cube), 1)):
            if det == "lrx" and args.no_lrx:
                continue
            best, med = timed(fn, reps)
            results[det], cpu_results[det] = best, CPU_BEST[0]
            flops, nbytes = work[det]
            rate = 2 / (1 / gemm64 + 1 / gemm32) if det == "grx32" else gemm64  # half float32
            cpu_rate = 2 / (1 / cpu64 + 1 / cpu32) if det == "grx32" else cpu64
            floor = flops / rate / 1e6 + nbytes / bw / 1e6
            cpu_floor = flops / cpu_rate / 1e6 + nbytes / bw / 1e6
            print(f"  {det:6s} best {best:9.1f} ms  median {med:9.1f} ms  cpu {CPU_BEST[0]:9.1f} ms"
                  f"  | {flops / 1e9:6.2f} GFLOP, "
                  f"{nbytes / 1e6:7.0f} MB -> floor {floor:8.1f} ms ({best / floor:.1f}x; by CPU time "
                  f"{cpu_floor:.1f} ms, {CPU_BEST[0] / cpu_floor:.1f}x)")
        if not args.no_published:
            from published import published_grx, published_slrx

            for det, fn in (("grx", published_grx), ("slrx", published_slrx)):
                best, _ = timed(lambda: fn(cube), 1)
                by_cpu = CPU_BEST[0] / cpu_results[det]
                print(f"  published {det:5s} (per-pixel loop, float32) {best:9.1f} ms: ours is "
                      f"{best / results[det]:.1f}x faster (by CPU time {by_cpu:.1f}x)")
        try:
            import spectral

            best, _ = timed(lambda: spectral.rx(cube.astype(np.float64)), 3)
            print(f"  spectral.rx (global) {best:9.1f} ms: grx is {best / results['grx']:.1f}x faster "
                  f"(by CPU time {CPU_BEST[0] / cpu_results['grx']:.1f}x)")
        except ImportError:
            pass
    if args.spectral_window:
        import spectral

        crop = cubes["synthetic"][:30, :30].astype(np.float64)
        ours, _ = timed(lambda: lrx(crop), 1)
        ours_cpu = CPU_BEST[0]
        t0, c0 = time.perf_counter(), time.process_time()
        spectral.rx(crop, window=(5, 21))
        theirs, theirs_cpu = 1e3 * (time.perf_counter() - t0), 1e3 * (time.process_time() - c0)
        print(f"\n30x30x200 crop, window (5, 21): lrx {ours:.0f} ms, spectral.rx {theirs:.0f} ms "
              f"({theirs / ours:.1f}x; by CPU time {theirs_cpu / ours_cpu:.1f}x)")


if __name__ == "__main__":
    main()
