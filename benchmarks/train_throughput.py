"""Training throughput of ``fencli train`` against its FLOP floor, light (depth 1) vs reference (depth 3).

    python -m benchmarks.train_throughput [--bands 200] [--crop 40] [--batch 8] [--steps 3]

For each teacher depth: the FLOPs of one training step per crop (forward + backward, counted by
torch's FlopCounterMode), the measured crops/s (median of ``--steps`` timed steps after one warm-up,
the depths interleaved step by step so both see the same machine load), and the floor: the crops/s a
step would reach at the machine's measured float32 matmul rate (2048^3 GEMMs, timed in the same run).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from export.ferd import FERD, ferd_loss


def gemm_gflops(n: int = 2048, reps: int = 5) -> float:
    a = torch.randn(n, n)
    a @ a
    t = time.perf_counter()
    for _ in range(reps):
        a @ a
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bands", type=int, default=200)
    ap.add_argument("--crop", type=int, default=40)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args(argv)
    x = torch.rand(args.batch, args.bands, args.crop, args.crop) * 0.2 - 0.1
    nets, opts, flops, times = {}, {}, {}, {}
    for depth in (1, 3):
        torch.manual_seed(0)
        nets[depth] = FERD(args.bands, depth=depth).train()
        opts[depth] = torch.optim.Adam(nets[depth].trainable_parameters(), lr=0.005, betas=(0.5, 0.999))
        with FlopCounterMode(display=False) as fc:
            ferd_loss(x, nets[depth](x)).total.backward()
        flops[depth] = fc.get_total_flops() / args.batch
        times[depth] = []

    def step(depth: int) -> float:
        t = time.perf_counter()
        loss = ferd_loss(x, nets[depth](x)).total
        opts[depth].zero_grad(set_to_none=True)
        loss.backward()
        opts[depth].step()
        return time.perf_counter() - t

    rates = []
    for i in range(args.steps + 1):
        rates.append(gemm_gflops())
        for depth in (1, 3):
            dt = step(depth)
            if i:  # the first round warms up
                times[depth].append(dt)
    peak = statistics.median(rates)
    print(f"bands {args.bands}, crop {args.crop}, batch {args.batch}, torch threads {torch.get_num_threads()}, "
          f"GEMM {peak:.1f} GFLOP/s (median of {len(rates)})")
    print("| teacher | GFLOP per crop (fwd+bwd) | crops/s measured | crops/s floor | of floor |")
    print("|---|---:|---:|---:|---:|")
    for depth in (1, 3):
        rate = args.batch / statistics.median(times[depth])
        floor = peak * 1e9 / flops[depth]
        label = "depth 1 (fencli)" if depth == 1 else "depth 3 (reference)"
        print(f"| {label} | {flops[depth] / 1e9:.1f} | {rate:.2f} | {floor:.2f} | {rate / floor:.0%} |")


if __name__ == "__main__":
    main()
