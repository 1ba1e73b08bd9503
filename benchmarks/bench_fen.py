"""FEN forward speed against the dense-FLOP floor: PyTorch eager vs ONNX Runtime (several exports
and session options), on one ``1 x B x H x W`` input, same thread count everywhere.

Prints the machine, the measured NumPy float32 GEMM rate, the FEN's FLOP count (counted from the
model's conv shapes on this input), and per configuration the best and median of N warm runs, the
achieved GFLOP/s and the ratio to the floor (FLOPs / GEMM rate). Timings on a shared machine move:
configurations are timed round-robin in one process so their ratios stay comparable.

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


def gemm_gflops(threads: int, n: int = 2048, repeat: int = 5) -> float:
    """Best float32 GEMM rate of NumPy's BLAS with ``threads`` threads."""
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    with threadpool_limits(threads):
        a @ b
        best = min(_timed(lambda: a @ b) for _ in range(repeat))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def conv_flops(model, x) -> int:
    """2 x multiply-adds of every Conv2d on this input, from the shapes seen in a forward pass."""
    import torch

    total = 0

    def hook(mod, _inp, out):
        nonlocal total
        kh, kw = mod.kernel_size
        total += 2 * out.numel() * (mod.in_channels // mod.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        model(x)
    for h in handles:
        h.remove()
    return total


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

    from export.onnx_export import export_model, max_rel_diff

    torch.set_num_threads(args.threads)
    model, source = load_model(args.bands, args.checkpoint)
    x = np.random.default_rng(0).uniform(-0.1, 0.1, (1, model.bands, args.size, args.size)).astype(np.float32)
    xt = torch.from_numpy(x)
    flops = conv_flops(model, xt)
    gemm = gemm_gflops(args.threads)

    configs: dict[str, object] = {}
    with torch.inference_mode():
        ref = model(xt).numpy()
    configs["torch eager"] = lambda: model(xt)
    with tempfile.TemporaryDirectory() as tmp:
        export_s = {}
        for exporter in ("legacy", "dynamo"):
            path = Path(tmp) / f"{exporter}.onnx"
            t0 = time.perf_counter()
            export_model(model, path, dynamo=exporter == "dynamo")
            export_s[exporter] = time.perf_counter() - t0
            for level, spin in (("ORT_ENABLE_EXTENDED", True), ("ORT_ENABLE_ALL", True), ("ORT_ENABLE_ALL", False)):
                sess = ort_session(path, args.threads, level, spin)
                assert max_rel_diff(sess.run(None, {"x": x})[0], ref) <= 1e-5
                name = f"ort {exporter} {level.removeprefix('ORT_ENABLE_').lower()} spin={int(spin)}"
                configs[name] = (lambda s: lambda: s.run(None, {"x": x}))(sess)
        times: dict[str, list[float]] = {k: [] for k in configs}
        for fn in configs.values():  # warm-up
            fn()
        with torch.inference_mode():
            for _ in range(args.repeat):
                for name, fn in configs.items():
                    times[name].append(_timed(fn))

    floor = flops / (gemm * 1e9)
    rows = [{"config": k, "best_ms": min(v) * 1e3, "median_ms": statistics.median(v) * 1e3,
             "gflops": flops / min(v) / 1e9, "ratio_to_floor": min(v) / floor} for k, v in times.items()]
    report = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "load_avg": os.getloadavg(),
                    "python": platform.python_version(), "numpy": np.__version__,
                    "torch": torch.__version__, "onnxruntime": ort.__version__},
        "threads": args.threads, "input": list(x.shape), "weights": source,
        "gemm_gflops_f32": gemm, "fen_gflop": flops / 1e9, "floor_ms": floor * 1e3,
        "export_seconds": export_s, "repeat": args.repeat, "results": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    m = report["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, load {m['load_avg'][0]:.1f}; numpy {m['numpy']}, "
          f"torch {m['torch']}, onnxruntime {m['onnxruntime']}")
    print(f"threads {args.threads}; input {report['input']}; weights: {source}")
    print(f"NumPy float32 GEMM: {gemm:.1f} GFLOP/s")
    print(f"FEN conv FLOPs: {flops / 1e9:.2f} GFLOP -> dense-FLOP floor {floor * 1e3:.1f} ms")
    print(f"export seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in export_s.items()))
    print(f"{'config':38s} {'best ms':>8s} {'median ms':>10s} {'GFLOP/s':>8s} {'x floor':>8s}")
    for r in rows:
        print(f"{r['config']:38s} {r['best_ms']:8.1f} {r['median_ms']:10.1f} {r['gflops']:8.1f} "
              f"{r['ratio_to_floor']:8.2f}")


if __name__ == "__main__":
    main()
