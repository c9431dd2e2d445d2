"""Where the CPU fast path's training step spends its time: ``torch.profiler`` by op.

Usage: .venv/bin/python benchmarks/profile_step.py [--model mtl_oca] [--threads 2] [--steps 3]

Profiles ``train.train_step`` on the engine's default path (``benchmark.engine_paths``),
``cpu`` profile, 128x128, batch 16, after two warm-up steps, and prints self CPU time per
op group as a share of the total. The profiler's own overhead inflates absolute times
(about 2x here), so read the shares, not the milliseconds.
"""
from __future__ import annotations

import collections

from torch.profiler import ProfilerActivity, profile

from _cli import fast_trainer, step_parser

#: op-name fragments -> the group reported (first match wins)
GROUPS = [
    ("convolution", "convolution forward + backward (oneDNN)"),
    ("copy_", "copy_ (layout and dtype conversions)"),
    ("clone", "copy_ (layout and dtype conversions)"),
    ("group_norm", "GroupNorm forward + backward"),
    ("threshold_backward", "ReLU forward + backward"),
    ("clamp_min", "ReLU forward + backward"),
    ("relu", "ReLU forward + backward"),
    ("add", "residual / skip / gradient-accumulation add"),
    ("cat", "concatenation (skip connections, OCA fuse)"),
    ("bmm", "OCA bmm, softmax, amax"),
    ("softmax", "OCA bmm, softmax, amax"),
    ("amax", "OCA bmm, softmax, amax"),
    ("upsample", "bilinear upsampling forward + backward"),
    ("max_pool", "max-pool forward + backward"),
]


def main() -> None:
    args = step_parser(__doc__, steps=3).parse_args()
    step, fast = fast_trainer(args)
    step(), step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    shares: dict[str, float] = collections.defaultdict(float)
    total = 0.0
    for ev in prof.key_averages():
        if not ev.key.startswith("aten::"):
            continue
        total += ev.self_cpu_time_total
        group = next((g for frag, g in GROUPS if frag in ev.key), "other aten ops")
        shares[group] += ev.self_cpu_time_total
    print(f"{args.model}, fast path ({fast.describe()}), {args.threads} thread(s), {args.steps} steps")
    print("| op (self CPU time) | share |\n|---|---:|")
    for group, t in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"| {group} | {100 * t / total:.0f} % |")


if __name__ == "__main__":
    main()
