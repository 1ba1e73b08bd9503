"""What machine a benchmark ran on: CPU, cores, load, BLAS, library versions, a measured GEMM rate.

Every script in ``benchmarks/`` prints this first, so a number is never read without its context.
Run it alone: ``python benchmarks/machine.py``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_info() -> list[dict[str, Any]]:
    """NumPy's BLAS/OpenMP pools as threadpoolctl sees them (library, version, threads)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [{k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for p in threadpool_info()]


def gemm_gflops(n: int = 1024, dtype: type = np.float32, repeat: int = 3) -> float:
    """Best-of-``repeat`` rate of an ``n^3`` matrix product, in GFLOP/s (2 n^3 flops)."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n)).astype(dtype)
    b = rng.random((n, n)).astype(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("scipy", "onnxruntime", "torch", "spectral"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return out


def machine_info(gemm: bool = True) -> dict[str, Any]:
    import psutil

    info = {"cpu": cpu_model(), "logical_cores": os.cpu_count(),
            "physical_cores": psutil.cpu_count(logical=False),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "versions": versions(), "blas": blas_info()}
    if gemm:
        info["gemm_gflops_f32"] = round(gemm_gflops(), 1)
        info["gemm_gflops_f64"] = round(gemm_gflops(dtype=np.float64), 1)
    return info


def describe(info: dict[str, Any]) -> str:
    """Markdown lines for a RESULTS section."""
    blas = ", ".join(f"{b['internal_api']} {b['version']} ({b['num_threads']} threads)" for b in info["blas"])
    v = info["versions"]
    lines = [f"- CPU: {info['cpu']}, {info['physical_cores']} physical / {info['logical_cores']} logical cores, "
             f"{info['memory_gb']} GiB",
             f"- load average at start (1, 5, 15 min): {', '.join(map(str, info['load_average']))}"
             + ("  **(machine shared with other jobs: absolute times are inflated, compare ratios)**"
                if info["load_average"][0] > 0.5 * (info["logical_cores"] or 1) else ""),
             f"- BLAS: {blas or 'unknown'}",
             "- versions: " + ", ".join(f"{k} {x}" for k, x in v.items())]
    if "gemm_gflops_f32" in info:
        lines.append(f"- measured GEMM 1024^3: {info['gemm_gflops_f32']} GFLOP/s float32, "
                     f"{info['gemm_gflops_f64']} GFLOP/s float64")
    return "\n".join(lines)


def limit_threads(n: int) -> None:
    """Same thread count for NumPy's BLAS, PyTorch, fencli's SLRX/LRX workers and (by the caller's
    session) ONNX Runtime."""
    from fencli.bench import limit_blas_threads

    limit_blas_threads(n)  # NumPy's BLAS and the detectors' workers, as `fencli bench --threads`
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass


RESULTS = Path(__file__).resolve().parent / "results"


def save_results(name: str, markdown: str, data: Any) -> Path:
    """``benchmarks/results/<name>.md`` (a RESULTS.md section) and ``<name>.json`` (the raw figures)."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=1, default=float) + "\n")
    path = RESULTS / f"{name}.md"
    path.write_text(markdown)
    return path


SETTLE_S = 0.3  # idle time before each timed call


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, process CPU seconds over all threads, result): CPU time moves less than wall
    time when other jobs share the cores, though BLAS spin-waits inflate it.

    Each call starts after :data:`SETTLE_S` idle, so that neither side of an interleaved comparison
    pays for the thread pools the other left spinning: OpenBLAS workers spin about 0.1 s after a
    call, and the published SLRX's left fencli's two-thread SLRX 95-117 ms against 136-137 ms.
    """
    time.sleep(SETTLE_S)
    c, t = time.process_time(), time.perf_counter()
    out = fn()
    return time.perf_counter() - t, time.process_time() - c, out


if __name__ == "__main__":
    print(describe(machine_info()))
