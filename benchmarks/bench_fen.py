"""FEN forward speed against the dense-FLOP floor: PyTorch eager vs ONNX Runtime (several exports
and session options), on one ``1 x B x H x W`` input, same thread count everywhere.

Prints the machine, the measured NumPy float32 GEMM rate, the FEN's FLOP count (counted from the
model's conv shapes on this input), and per configuration the best and median of N warm runs, the
achieved GFLOP/s (of the FLOPs that configuration executes) and the ratio of its time to the floor
(the FEN's FLOPs at the GEMM rate). Timings on a shared machine move: the GEMM and every
configuration are timed round-robin in one process so their ratios stay comparable, and the same
ratios are also given in CPU time (all threads of this process), which other processes' load
barely moves (spinning ORT threads count as CPU time: spin=1 looks worse there).

    python benchmarks/bench_fen.py [--threads 2] [--repeat 9] [--size 100] [--bands 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of all this process's threads) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def conv_flops(model, x) -> int:
    """FLOPs (2 x multiply-adds) of every convolution in one forward pass on ``x``, from the shapes
    torch dispatches (module or functional convs alike)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    return counter.get_total_flops()


def load_model(bands: int, checkpoint: Path | None):
    from export.checkpoint import load_checkpoint
    from export.fen import FEN

    if checkpoint is not None and checkpoint.is_dir():
        return load_checkpoint(checkpoint), str(checkpoint)
    return FEN(bands).eval(), "random weights"


def ort_session(path: Path, threads: int, level: str, spinning: bool):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--bands", type=int, default=200)
    ap.add_argument("--checkpoint", type=Path, default=ROOT.parent / "shared" / "ferd-checkpoints" / "200bands-supp")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    from threadpoolctl import threadpool_limits

    from export.onnx_export import TrimmedFEN, export_model, max_rel_diff

    torch.set_num_threads(args.threads)
    model, source = load_model(args.bands, args.checkpoint)
    trimmed = TrimmedFEN(model).eval()
    x = np.random.default_rng(0).uniform(-0.1, 0.1, (1, model.bands, args.size, args.size)).astype(np.float32)
    xt = torch.from_numpy(x)
    flops = conv_flops(model, xt)
    flops_trim = conv_flops(trimmed, xt)
    gemm_n = 2048
    ga = np.random.default_rng(1).random((gemm_n, gemm_n), dtype=np.float32)

    configs: dict[str, tuple] = {}  # name -> (callable, FLOPs it executes)
    with torch.inference_mode():
        ref = model(xt).numpy()
    configs["numpy gemm 2048^3"] = (lambda: ga @ ga, 2 * gemm_n**3)
    configs["torch eager FEN"] = (lambda: model(xt), flops)
    configs["torch eager TrimmedFEN"] = (lambda: trimmed(xt), flops_trim)
    plan = [("legacy", False, "ORT_ENABLE_EXTENDED", True), ("legacy", False, "ORT_ENABLE_ALL", True),
            ("legacy", False, "ORT_ENABLE_ALL", False), ("legacy", True, "ORT_ENABLE_ALL", True),
            ("legacy", True, "ORT_ENABLE_ALL", False), ("dynamo", False, "ORT_ENABLE_ALL", True),
            ("dynamo", True, "ORT_ENABLE_ALL", True), ("dynamo", True, "ORT_ENABLE_ALL", False)]
    export_s = {}
    with tempfile.TemporaryDirectory() as tmp:
        for exporter, trim, level, spin in plan:
            tag = f"{exporter}{' trim' if trim else ''}"
            path = Path(tmp) / f"{tag.replace(' ', '-')}.onnx"
            if not path.exists():
                t0 = time.perf_counter()
                export_model(model, path, dynamo=exporter == "dynamo", trim=trim)
                export_s[tag] = time.perf_counter() - t0
            sess = ort_session(path, args.threads, level, spin)
            assert max_rel_diff(sess.run(None, {"x": x})[0], ref) <= 1e-5  # parity, every config
            name = f"ort {tag} {level.removeprefix('ORT_ENABLE_').lower()} spin={int(spin)}"
            configs[name] = ((lambda s: lambda: s.run(None, {"x": x}))(sess), flops_trim if trim else flops)
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in configs}
        with torch.inference_mode(), threadpool_limits(args.threads):
            for fn, _ in configs.values():  # warm-up
                fn()
            for _ in range(args.repeat):  # round-robin: load changes hit every config alike
                for name, (fn, _) in configs.items():
                    times[name].append(_timed(fn))

    gemm_runs = times.pop("numpy gemm 2048^3")
    gemm = 2 * gemm_n**3 / min(w for w, _ in gemm_runs) / 1e9
    gemm_cpu = 2 * gemm_n**3 / min(c for _, c in gemm_runs) / 1e9  # per CPU-second: load-robust
    floor, floor_cpu = flops / (gemm * 1e9), flops / (gemm_cpu * 1e9)
    rows = []
    for k, runs in times.items():
        wall, cpu = [w for w, _ in runs], [c for _, c in runs]
        rows.append({"config": k, "best_ms": min(wall) * 1e3, "median_ms": statistics.median(wall) * 1e3,
                     "gflops": configs[k][1] / min(wall) / 1e9, "ratio_to_floor": min(wall) / floor,
                     "median_ratio_to_floor": statistics.median(wall) / floor,
                     "best_cpu_ms": min(cpu) * 1e3, "cpu_ratio_to_floor": min(cpu) / floor_cpu})
    report = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "load_avg": os.getloadavg(),
                    "python": platform.python_version(), "numpy": np.__version__,
                    "torch": torch.__version__, "onnxruntime": ort.__version__},
        "threads": args.threads, "input": list(x.shape), "weights": source,
        "gemm_gflops_f32": gemm, "gemm_gflops_per_cpu_second": gemm_cpu,
        "fen_gflop": flops / 1e9, "trimmed_gflop": flops_trim / 1e9,
        "floor_ms": floor * 1e3, "floor_cpu_ms": floor_cpu * 1e3, "export_seconds": export_s, "repeat": args.repeat, "results": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    m = report["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, load {m['load_avg'][0]:.1f}; numpy {m['numpy']}, "
          f"torch {m['torch']}, onnxruntime {m['onnxruntime']}")
    print(f"threads {args.threads}; input {report['input']}; weights: {source}")
    print(f"NumPy float32 GEMM (best of the round-robin): {gemm:.1f} GFLOP/s")
    print(f"FEN conv FLOPs: {flops / 1e9:.2f} GFLOP -> dense-FLOP floor {floor * 1e3:.1f} ms "
          f"(TrimmedFEN executes {report['trimmed_gflop']:.2f} GFLOP)")
    print("export seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in export_s.items()))
    print(f"CPU-time view (robust to other load): GEMM {gemm_cpu:.1f} GFLOP per CPU-second, "
          f"floor {floor_cpu * 1e3:.1f} CPU-ms")
    print(f"{'config':34s} {'best ms':>8s} {'median ms':>10s} {'GFLOP/s':>8s} {'x floor':>8s} "
          f"{'(median)':>8s} {'CPU ms':>8s} {'x floor':>8s}")
    for r in rows:
        print(f"{r['config']:34s} {r['best_ms']:8.1f} {r['median_ms']:10.1f} {r['gflops']:8.1f} "
              f"{r['ratio_to_floor']:8.2f} {r['median_ratio_to_floor']:8.2f} {r['best_cpu_ms']:8.1f} "
              f"{r['cpu_ratio_to_floor']:8.2f}")


if __name__ == "__main__":
    main()
