"""What ``layerprof.watch`` costs a training run (a script, not a test).

resnet18, batch 16, random images (``--size``, default 64x64), SGD with momentum, on the CPU with
``torch.set_num_threads(--threads)`` (default 2). Two copies of the model train side by side, step by
step: one plain, one under ``watch(every=--every)`` (default 50), on the same batches, the order of
the two alternating every step so that drift and background load fall on both alike. Reported:

* total slowdown: the watched run's summed step times over the plain run's (target <= 2 %), with a
  95 % interval from the spread of the step-by-step differences (the machine's noise);
* unsampled steps: the median time of the watched run's steps that are not sampled (neither a
  counting nor a timing step) over the plain median, and the mean of the step-by-step differences
  of those steps with its 95 % interval (target <= 0.5 %);
* the counting and the timing steps against the plain median;
* the root pre-hook alone: a forward of a 1-layer model with and without an idle watcher, medians of
  many repeats (the whole per-step cost of an unsampled step, without the noise of a big model).

Each of ``--repeats`` runs starts from fresh models; the runs are pooled at the end.
Run ``python benchmarks/bench_watch.py [--steps 200] [--size 64] [--repeats 3] [--out results.json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import layerprof
from layerprof.report.facade import Report


def step_fn(
    model: nn.Module, optimizer: torch.optim.Optimizer
) -> Callable[[torch.Tensor, torch.Tensor], float]:
    def step(images: torch.Tensor, labels: torch.Tensor) -> float:
        began = time.perf_counter()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - began

    return step


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % interval (normal approximation)."""
    mean = statistics.fmean(values)
    half = 1.96 * statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return mean, half


def training_run(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    plain = torchvision.models.resnet18(num_classes=10)
    watched = torchvision.models.resnet18(num_classes=10)
    watched.load_state_dict(plain.state_dict())
    plain_step = step_fn(plain, torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9))
    watched_step = step_fn(watched, torch.optim.SGD(watched.parameters(), lr=0.01, momentum=0.9))
    generator = torch.Generator().manual_seed(seed)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.randn(args.batch, 3, args.size, args.size, generator=generator)
        return images, torch.randint(0, 10, (args.batch,), generator=generator)

    for _ in range(args.warmup):  # allocator and thread pools warm, for both models
        images, labels = batch()
        plain_step(images, labels)
        watched_step(images, labels)

    reports: list[Report] = []
    plain_s: list[float] = []
    watched_s: list[float] = []
    with layerprof.watch(watched, every=args.every, target=args.target, sink=reports.append) as watcher:
        for index in range(args.steps):
            images, labels = batch()
            if index % 2:
                plain_s.append(plain_step(images, labels))
                watched_s.append(watched_step(images, labels))
            else:
                watched_s.append(watched_step(images, labels))
                plain_s.append(plain_step(images, labels))
    # Forward n (1-based) is counted when n % every == 0 and timed when it is the next one.
    counted = [n - 1 for n in range(1, args.steps + 1) if n % args.every == 0]
    timed = [i + 1 for i in counted if i + 1 < args.steps]
    sampled = set(counted) | set(timed)
    unsampled_watched = [t for i, t in enumerate(watched_s) if i not in sampled]
    unsampled_plain = [t for i, t in enumerate(plain_s) if i not in sampled]
    plain_median = statistics.median(plain_s)
    plain_mean = statistics.fmean(plain_s)
    _, total_half = mean_ci([w - p for w, p in zip(watched_s, plain_s, strict=True)])
    unsampled_diff, unsampled_half = mean_ci(
        [w - p for i, (w, p) in enumerate(zip(watched_s, plain_s, strict=True)) if i not in sampled]
    )
    return {
        "steps": args.steps,
        "samples": watcher.samples,
        "plain_total_s": sum(plain_s),
        "watched_total_s": sum(watched_s),
        "total_slowdown": sum(watched_s) / sum(plain_s) - 1,
        "total_slowdown_ci95": total_half / plain_mean,
        "plain_median_ms": plain_median * 1e3,
        "unsampled_median_ms": statistics.median(unsampled_watched) * 1e3,
        "unsampled_slowdown": statistics.median(unsampled_watched) / statistics.median(unsampled_plain) - 1,
        "unsampled_mean_difference": unsampled_diff / plain_mean,
        "unsampled_mean_difference_ci95": unsampled_half / plain_mean,
        "sampled_steps_cost": sum(watched_s[i] - plain_median for i in sampled) / sum(plain_s),
        "counting_steps_vs_median": [watched_s[i] / plain_median for i in counted],
        "timing_steps_vs_median": [watched_s[i] / plain_median for i in timed],
        "report_coverage": [r.coverage for r in reports],
        "plain_step_ms": [t * 1e3 for t in plain_s],
        "watched_step_ms": [t * 1e3 for t in watched_s],
    }


def hook_cost(repeats: int) -> dict[str, float]:
    """The idle watcher's root pre-hook on a forward too small to hide it."""
    model = nn.Sequential(nn.Linear(64, 64))
    x = torch.randn(8, 64)

    def forward_us(n: int) -> float:
        began = time.perf_counter_ns()
        for _ in range(n):
            model(x)
        return (time.perf_counter_ns() - began) / n / 1e3

    plain: list[float] = []
    hooked: list[float] = []
    watcher = layerprof.watch(model, every=10**9, target=None, sink=lambda report: None)
    try:
        for _ in range(repeats):
            hooked.append(forward_us(200))
            watcher.remove()
            plain.append(forward_us(200))
            watcher = layerprof.watch(model, every=10**9, target=None, sink=lambda report: None)
    finally:
        watcher.remove()
    return {
        "plain_forward_us": statistics.median(plain),
        "watched_forward_us": statistics.median(hooked),
        "hook_us": statistics.median(hooked) - statistics.median(plain),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=64, help="image height and width (64 or 112)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--target", default="t4")
    parser.add_argument("--hook-repeats", type=int, default=51)
    parser.add_argument("--repeats", type=int, default=3, help="training runs, each from fresh models")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    hook = hook_cost(args.hook_repeats)
    model = f"resnet18, batch {args.batch}, {args.size}x{args.size}, every={args.every}, {args.steps} steps"
    print(model, f"torch {torch.__version__}, {args.threads} threads")
    runs = []
    for repeat in range(args.repeats):
        run = training_run(args, seed=repeat)
        runs.append(run)
        print(
            f"run {repeat}: plain {run['plain_total_s']:.1f} s, watched {run['watched_total_s']:.1f} s: "
            f"total {run['total_slowdown']:+.2%} +- {run['total_slowdown_ci95']:.2%} "
            f"(sampled steps {run['sampled_steps_cost']:+.2%}); unsampled median "
            f"{run['unsampled_median_ms']:.1f} vs {run['plain_median_ms']:.1f} ms "
            f"({run['unsampled_slowdown']:+.2%}), mean difference {run['unsampled_mean_difference']:+.2%} "
            f"+- {run['unsampled_mean_difference_ci95']:.2%}; {run['samples']} samples"
        )
        print(
            "  counting steps / plain median:", ", ".join(f"{r:.2f}" for r in run["counting_steps_vs_median"])
        )
        print(
            "  timing steps / plain median:  ", ", ".join(f"{r:.2f}" for r in run["timing_steps_vs_median"])
        )
    plain_total = sum(r["plain_total_s"] for r in runs)
    watched_total = sum(r["watched_total_s"] for r in runs)
    pooled_unsampled = statistics.median(r["unsampled_slowdown"] for r in runs)
    print(
        f"pooled: total {watched_total / plain_total - 1:+.2%} (target <= 2%); unsampled-step median "
        f"slowdown, median over runs {pooled_unsampled:+.2%} (target <= 0.5%)"
    )
    print(
        f"root pre-hook alone: {hook['hook_us']:.2f} us per forward "
        f"({hook['plain_forward_us']:.1f} -> {hook['watched_forward_us']:.1f} us for a 1-layer forward), "
        f"{hook['hook_us'] * 1e-3 / runs[0]['plain_median_ms']:.4%} of a plain step"
    )
    results = {
        "torch": torch.__version__,
        "threads": args.threads,
        "model": model,
        "hook": hook,
        "runs": runs,
    }
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
