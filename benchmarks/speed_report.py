"""Speed a user feels, in ONE run: start-up, whole process and in-process work against the published code.

Every figure is a ratio against a baseline measured in the same run, interleaved (baseline, fencli,
baseline, ...), after warm-up runs, as a median:

1. start-up: ``fencli --help`` and ``fencli detect --help`` against ``python -c pass``; and
   ``fencli detect SCENE --model none --json``: whole-process wall against its own ``seconds.total``;
2. whole process, FE+GRX on SCENE: ``fencli detect --method grx --model MODEL --json`` against the
   published code as its users run it (``published_run.py``: import torch, load the checkpoint, read
   the ``.mat``, FEN, RX loop, AUC), wall time and peak memory (``ru_maxrss`` of each process);
3. in process (``compare_published.py``'s pairs): GRX, SLRX, FE+GRX, FE+SLRX against the published
   loops (SLRX's in PyTorch, as published, and once more against its NumPy stand-in) and PyTorch
   FEN; LRX against Spectral Python's ``rx(window=(5, 21))`` on a crop; SLRX's FLOP floor and how
   close fencli's SLRX comes to it;
4. the FEN under the ONNX Runtime wheel of the main environment and of ``--ort-python`` (a plain
   virtual environment with the other wheel), alternated, with the installed package sizes.

Writes ``benchmarks/results/speed_report.{md,json}`` and reassembles ``benchmarks/RESULTS.md``.
About 5 minutes on 2 idle cores. Needs ``../shared`` and the exported models
(``python -m export.export_shared .cache/weights``, found there without ``$FENCLI_WEIGHTS``); the
ORT comparison needs ``python -m venv /tmp/venv-ort && /tmp/venv-ort/bin/pip install numpy
onnxruntime`` (skipped when absent).

    python benchmarks/speed_report.py [--scene abu-airport-1] [--model ferd-200-supp] [--runs 5]
        [--repeat 5] [--ort-python /tmp/venv-ort/bin/python] [--lrx-crop 21]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

import numpy as np  # noqa: E402

from machine import describe, gemm_gflops, machine_info, save_results, timed  # noqa: E402

if "FENCLI_WEIGHTS" not in os.environ and (ROOT / ".cache" / "weights").is_dir():
    os.environ["FENCLI_WEIGHTS"] = str(ROOT / ".cache" / "weights")  # python -m export.export_shared's output
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


# A small launcher forks and times the command: a process's ru_maxrss keeps the high-water mark of
# the memory it was forked from (Linux folds it in at exec), so measuring from this (large) process
# would report its own size for any smaller command.
LAUNCHER = ("import os, sys, time\n"
            "t = time.perf_counter()\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    os.execvp(sys.argv[2], sys.argv[2:])\n"
            "_, status, usage = os.wait4(pid, 0)\n"
            "with open(sys.argv[1], 'w') as f:\n"
            "    f.write(f'{time.perf_counter() - t} {usage.ru_maxrss}')\n"
            "sys.exit(os.waitstatus_to_exitcode(status))\n")


def run_process(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak resident MiB, stdout) of one command, both measured by a small launcher
    process around it; fails loudly."""
    with tempfile.TemporaryDirectory() as tmp:
        stats = Path(tmp) / "stats"
        proc = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, str(stats), *cmd], capture_output=True,
                              cwd=ROOT, env=env or ENV)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-800:]}")
        wall, maxrss = stats.read_text().split()
        return float(wall), int(maxrss) / 1024, proc.stdout.decode()


def interleaved(cmds: dict[str, list[str]], runs: int, warmup: int = 1) -> dict[str, list[tuple]]:
    """Each command ``warmup + runs`` times, round-robin; returns the timed (wall, MiB, stdout)."""
    got = {k: [] for k in cmds}
    for i in range(warmup + runs):
        for name, cmd in cmds.items():
            r = run_process(cmd)
            if i >= warmup:
                got[name].append(r)
    return got


def last_json(text: str) -> dict:
    """The JSON document a command printed: its whole stdout (fencli --json), else its last line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(text.strip().splitlines()[-1])


def med(xs) -> float:
    return float(statistics.median(xs))


def startup(scene: Path, runs: int) -> dict:
    py = sys.executable
    res = interleaved({"python -c pass": [py, "-c", "pass"],
                       "fencli --help": [py, "-m", "fencli", "--help"],
                       "fencli detect --help": [py, "-m", "fencli", "detect", "--help"]}, runs + 2)
    walls = {k: med([w for w, _, _ in v]) for k, v in res.items()}
    det = interleaved({"detect": [py, "-m", "fencli", "detect", str(scene), "--model", "none", "--json"]}, runs)
    whole = [w for w, _, _ in det["detect"]]
    total = [json.loads(o)["seconds"]["total"] for _, _, o in det["detect"]]
    return {"wall_s": walls, "detect_none": {"whole_s": whole, "total_s": total,
                                             "overhead_s": [a - b for a, b in zip(whole, total)]}}


def whole_process(scene: Path, model: str, checkpoint: Path, runs: int) -> dict:
    py = sys.executable
    res = interleaved({
        "published": [py, str(HERE / "published_run.py"), str(scene), str(checkpoint), "--method", "grx"],
        "fencli": [py, "-m", "fencli", "detect", str(scene), "--method", "grx", "--model", model, "--json"]},
        runs)
    out = {}
    for k, v in res.items():
        aucs = [last_json(o)["auc"] for _, _, o in v]
        out[k] = {"wall_s": [w for w, _, _ in v], "peak_mib": [m for _, m, _ in v], "auc": aucs[0]}
    return out


def slrx_flops(h: int, w: int, b: int, bs: int) -> dict[str, float]:
    """FLOPs of SLRX on an ``h x w x b`` cube with ``bs`` blocks: the floor (each covariance formed
    by syrk, each factorization a Cholesky, each distance one triangular solve) and what fencli
    executes (each block row's own-block Gram matrices by one stacked GEMM, the full map's triangle
    in four row blocks: 1.25x trmm's FLOPs; see fencli/detectors/stats.py)."""
    n = h * w
    full = n * b * b + 2 * b**3 / 3 + n * b * b  # scatter (syrk), Cholesky and L^-1, the map (trmm)
    floor, executed = full, full + 0.25 * n * b * b
    rows = [min(bs, h - r) for r in range(0, h, bs)]
    cols = [min(bs, w - c) for c in range(0, w, bs)]
    blocks = len(rows) * len(cols)
    for rh in rows:
        for cw in cols:
            k = rh * cw
            surround = k * b * b + b**3 / 3 + k * b * b  # moments (syrk), potrf, trsm
            floor += surround + k * k * b + 2 * k**3 / 3  # own: Gram (syrk), Cholesky + L^-1
            executed += surround + 2 * k * k * b + 2 * k**3 / 3  # own: Gram (GEMM), Cholesky + L^-1
    if blocks == 1:  # no surround at all
        floor -= rows[0] * cols[0] * 2 * b * b + b**3 / 3
    return {"floor": floor, "executed": executed, "blocks": blocks}


def in_process(scene: Path, bands: int, model: str, checkpoint: Path, repeat: int, lrx_crop: int) -> dict:
    from compare_published import published_grx, torch_fe
    from published import published_slrx, published_slrx_numpy

    from export.checkpoint import load_checkpoint
    from fencli.detectors import slrx_block_size
    from fencli.io import read_scene
    from fencli.metrics import roc_auc
    from fencli.engine import run
    from fencli.enhancers import load_session

    sc = read_scene(scene)
    cube, gt = sc.cube[:, :, :bands], sc.gt
    torch_fen = load_checkpoint(checkpoint).eval()
    session = load_session(model, device="cpu")
    cases = {
        "GRX": (lambda: published_grx(cube), lambda: run(cube, "grx").scores),
        "SLRX": (lambda: published_slrx(cube), lambda: run(cube, "slrx").scores),
        "SLRX against the published loop in NumPy": (lambda: published_slrx_numpy(cube),
                                                     lambda: run(cube, "slrx").scores),
        "FE only": (lambda: torch_fe(torch_fen, cube), lambda: session.enhance(cube)),
        "FE+GRX": (lambda: published_grx(torch_fe(torch_fen, cube)), lambda: run(cube, "grx", enhancer=session).scores),
        "FE+SLRX": (lambda: published_slrx(torch_fe(torch_fen, cube)),
                    lambda: run(cube, "slrx", enhancer=session).scores),
    }
    rows = []
    for name, (pub, fen) in cases.items():
        t_pub, t_fen = [], []
        for i in range(1 + repeat):
            tp, _, s_pub = timed(pub)
            tf, _, s_fen = timed(fen)
            if i:
                t_pub.append(tp)
                t_fen.append(tf)
        row = {"case": name, "published_s": t_pub, "fencli_s": t_fen,
               "ratio_median": med(t_pub) / med(t_fen), "ratio_min": min(t_pub) / min(t_fen)}
        if name == "FE only":
            row["max_abs_diff"] = float(np.max(np.abs(s_pub - s_fen)))
        else:
            row["auc_published"], row["auc_fencli"] = roc_auc(s_pub, gt), roc_auc(s_fen, gt)
        rows.append(row)
        print(f"   {name}: published {1e3 * med(t_pub):.0f} ms, fencli {1e3 * med(t_fen):.0f} ms, "
              f"{row['ratio_median']:.1f}x", flush=True)
    h, w, b = cube.shape
    flops = slrx_flops(h, w, b, slrx_block_size(b))
    slrx_s = med(next(r for r in rows if r["case"] == "SLRX")["fencli_s"])
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):  # SLRX's per-block work runs on one BLAS thread
        gemm1 = gemm_gflops(dtype=np.float64)
    gemm2 = gemm_gflops(dtype=np.float64)
    out = {"rows": rows, "slrx_flops": flops, "slrx_s": slrx_s, "gemm_f64_gflops_1thread": gemm1,
           "gemm_f64_gflops": gemm2}
    if lrx_crop:
        out["lrx"] = lrx_vs_spectral(cube, gt, lrx_crop)
    return out


def lrx_vs_spectral(cube: np.ndarray, gt: np.ndarray, side: int) -> dict:
    """fencli's dual-window LRX against spectral.rx(window=(5, 21)) on the crop with the most targets
    (Spectral's windowed RX takes minutes on a whole scene): one run each after a fencli warm-up."""
    try:
        import spectral
    except ImportError:
        return {"skipped": "spectral not installed"}
    from compare_spectral import best_crop

    from fencli.detectors import lrx
    from fencli.metrics import roc_auc

    rs, cs = best_crop(gt, side)
    crop = np.ascontiguousarray(cube[rs, cs])
    x01 = (crop - crop.min()) / (crop.max() - crop.min())
    lrx(crop)
    tf, _, s_fen = timed(lambda: lrx(crop))
    tp, _, s_pub = timed(lambda: spectral.rx(x01, window=(5, 21)))
    return {"crop": side, "spectral_s": tp, "fencli_s": tf, "ratio": tp / tf,
            "auc_spectral": roc_auc(s_pub, gt[rs, cs]), "auc_fencli": roc_auc(s_fen, gt[rs, cs])}


def ort_builds(scene: Path, bands: int, model: str, other: list[str], rounds: int) -> dict:
    """The FEN under each interpreter's ONNX Runtime, alternated ``rounds`` times (fen_timing.py)."""
    from fencli.io import read_scene
    from fencli.models import resolve_model

    path = str(resolve_model(model))
    pythons = [sys.executable] + [p for p in other if Path(p).exists()]
    with tempfile.TemporaryDirectory() as tmp:
        cube = Path(tmp) / "cube.npy"
        np.save(cube, np.ascontiguousarray(read_scene(scene).cube[:, :, :bands]))
        got: dict[str, dict] = {}
        for _ in range(rounds):
            for i, py in enumerate(pythons):
                out = Path(tmp) / f"y{i}.npy"
                _, _, text = run_process([py, str(HERE / "fen_timing.py"), path, str(cube), str(out)],
                                         env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)})
                doc = last_json(text)
                entry = got.setdefault(py, {k: doc[k] for k in ("onnxruntime", "provider", "package_mb")}
                                       | {"seconds": []})
                entry["seconds"] += doc["seconds"]
        ys = [np.load(Path(tmp) / f"y{i}.npy") for i in range(len(pythons))]
    for entry in got.values():
        entry["median_ms"] = 1e3 * med(entry["seconds"])
    if len(ys) > 1:
        got["max_rel_diff"] = float(max(np.max(np.abs(y - ys[0])) for y in ys[1:]) / np.max(np.abs(ys[0])))
    return got


def startup_lines(su: dict, scene: str) -> list[str]:
    w, dn = su["wall_s"], su["detect_none"]
    lines = ["### 1. Start-up (whole process, wall)", "",
             "| command | median s | minus `python -c pass` |", "|---|---:|---:|"]
    lines += [f"| `{k}` | {v:.3f} | {v - w['python -c pass']:+.3f} |" for k, v in w.items()]
    lines += ["", f"`fencli detect {scene}.mat --model none --json` ({len(dn['whole_s'])} runs): whole process "
              f"{med(dn['whole_s']):.3f} s, its own `seconds.total` {med(dn['total_s']):.3f} s, overhead "
              f"{med(dn['overhead_s']):.3f} s (median of the per-run differences; target <= 0.35 s).", ""]
    return lines


def whole_lines(wp: dict, model: str) -> list[str]:
    pub, fen = wp["published"], wp["fencli"]
    return ["### 2. Whole process, FE+GRX (one scene per process)", "",
            "| | wall s, median (min) | peak MiB, median | AUC |", "|---|---:|---:|---:|",
            f"| published code (`published_run.py`) | {med(pub['wall_s']):.2f} ({min(pub['wall_s']):.2f}) | "
            f"{med(pub['peak_mib']):.0f} | {pub['auc']:.6f} |",
            f"| `fencli detect --method grx --model {model} --json` | {med(fen['wall_s']):.2f} "
            f"({min(fen['wall_s']):.2f}) | {med(fen['peak_mib']):.0f} | {fen['auc']:.6f} |", "",
            f"Speed-up {med(pub['wall_s']) / med(fen['wall_s']):.1f}x (target >= 5x); peak memory "
            f"{med(fen['peak_mib']) / med(pub['peak_mib']):.2f} of the published code's (target < 0.5).", ""]


def in_process_lines(ip: dict) -> list[str]:
    lines = ["### 3. In process (enhance + detect; reading and session creation excluded)", "",
             "| case | published ms, median | fencli ms, median | ratio median (min) | AUC published | AUC fencli |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in ip["rows"]:
        auc_p = f"{r['auc_published']:.6f}" if "auc_published" in r else f"max abs diff {r['max_abs_diff']:.1e}"
        auc_f = f"{r['auc_fencli']:.6f}" if "auc_fencli" in r else "-"
        lines.append(f"| {r['case']} | {1e3 * med(r['published_s']):.1f} | {1e3 * med(r['fencli_s']):.1f} | "
                     f"{r['ratio_median']:.1f}x ({r['ratio_min']:.1f}x) | {auc_p} | {auc_f} |")
    lx = ip.get("lrx", {})
    if "ratio" in lx:
        lines.append(f"| LRX, {lx['crop']} x {lx['crop']} crop, vs `spectral.rx(window=(5, 21))`, one run | "
                     f"{1e3 * lx['spectral_s']:.0f} | {1e3 * lx['fencli_s']:.0f} | {lx['ratio']:.1f}x | "
                     f"{lx['auc_spectral']:.6f} | {lx['auc_fencli']:.6f} |")
    f, t, g1, g_all = ip["slrx_flops"], ip["slrx_s"], ip["gemm_f64_gflops_1thread"], ip["gemm_f64_gflops"]
    at_floor, at_floor_all = f["floor"] / g1 / 1e9, f["floor"] / g_all / 1e9
    lines += ["", f"SLRX FLOPs ({f['blocks']} blocks): floor {f['floor'] / 1e9:.2f} GFLOP, executed "
              f"{f['executed'] / 1e9:.2f} GFLOP; fencli's SLRX (one thread per core) runs them at "
              f"{f['executed'] / t / 1e9:.1f} GFLOP/s against a float64 GEMM of {g1:.1f} GFLOP/s on one thread "
              f"({g_all:.1f} on all): the floor is {1e3 * at_floor:.0f} ms at the one-thread GEMM rate and "
              f"{1e3 * at_floor_all:.0f} ms at the all-core rate; fencli takes {1e3 * t:.0f} ms "
              f"({t / at_floor_all:.1f}x the all-core floor).", ""]
    return lines


def render(doc: dict) -> str:
    a = doc["args"]
    lines = [f"`python benchmarks/speed_report.py` on `{a['scene']}` (first {a['bands']} bands), model "
             f"`{a['model']}`; medians, every baseline measured in the same run, interleaved. Load average "
             f"{', '.join(map(str, doc['machine']['load_average']))} at the start, "
             f"{', '.join(map(str, doc['load_end']))} at the end. Machine:", "", describe(doc["machine"]), ""]
    if "startup" in doc:
        lines += startup_lines(doc["startup"], a["scene"])
    if "whole_process" in doc:
        lines += whole_lines(doc["whole_process"], a["model"])
    if "in_process" in doc:
        lines += in_process_lines(doc["in_process"])
    ob = doc.get("ort_builds")
    if ob:
        lines += ["### 4. The FEN under each ONNX Runtime wheel (same model, input and run, alternated)", "",
                  "| interpreter | onnxruntime | provider | installed MiB | FEN ms, median |", "|---|---|---|---:|---:|"]
        for py, e in ob.items():
            if py != "max_rel_diff":
                lines.append(f"| `{py}` | {e['onnxruntime']} | {e['provider']} | {e['package_mb']:.0f} | "
                             f"{e['median_ms']:.1f} |")
        if "max_rel_diff" in ob:
            lines.append(f"\nOutputs of the two builds: max |diff| / max |y| = {ob['max_rel_diff']:.1e}.")
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scene", default="abu-airport-1")
    ap.add_argument("--bands", type=int, default=200)
    ap.add_argument("--model", default="ferd-200-supp")
    ap.add_argument("--checkpoint", default=None, help="published checkpoint folder (default: the shared 200bands-supp)")
    ap.add_argument("--runs", type=int, default=5, help="whole-process runs per command")
    ap.add_argument("--repeat", type=int, default=5, help="in-process timed runs per case")
    ap.add_argument("--ort-python", nargs="*", default=["/tmp/venv-ort/bin/python"],
                    help="interpreters of plain venvs with another ONNX Runtime wheel (skipped when absent)")
    ap.add_argument("--ort-rounds", type=int, default=3)
    ap.add_argument("--lrx-crop", type=int, default=21, help="0 skips the LRX comparison")
    ap.add_argument("--skip", nargs="*", default=[], choices=["startup", "whole", "inprocess", "ort"])
    ap.add_argument("--render-only", action="store_true", help="rewrite the Markdown from results/speed_report.json")
    args = ap.parse_args()
    if args.render_only:
        from machine import RESULTS
        from make_results import assemble

        doc = json.loads((RESULTS / "speed_report.json").read_text())
        save_results("speed_report", render(doc), doc)
        print(f"wrote {assemble()}")
        return
    from fencli.bench import shared_dir

    scene = shared_dir() / "data" / f"{args.scene}.mat"
    ckpt = Path(args.checkpoint) if args.checkpoint else shared_dir() / "ferd-checkpoints" / "200bands-supp"
    info = machine_info()
    print(describe(info), flush=True)
    doc = {"machine": info, "args": vars(args)}
    steps = [("startup", lambda: startup(scene, args.runs)),
             ("whole_process", lambda: whole_process(scene, args.model, ckpt, args.runs)),
             ("in_process", lambda: in_process(scene, args.bands, args.model, ckpt, args.repeat, args.lrx_crop)),
             ("ort_builds", lambda: ort_builds(scene, args.bands, args.model, args.ort_python, args.ort_rounds))]
    skip = {"startup": "startup", "whole": "whole_process", "inprocess": "in_process", "ort": "ort_builds"}
    for name, fn in steps:
        if name in {skip[s] for s in args.skip}:
            continue
        t = time.perf_counter()
        print(f"== {name}", flush=True)
        doc[name] = fn()
        print(f"   {time.perf_counter() - t:.0f} s", flush=True)
    doc["load_end"] = [round(x, 2) for x in os.getloadavg()]
    md = render(doc)
    print(md)
    save_results("speed_report", md, doc)
    from make_results import assemble

    print(f"wrote {assemble()}")


if __name__ == "__main__":
    main()
