"""What layerprof's timing hooks cost, and how well the row times add up (a script, not a test).

CPU (``--device cpu``, the default; ``torch.set_num_threads(--threads)``, default 2):

* resnet50, batch 8: a forward with layerprof's timing hooks on every module vs a plain forward,
  medians over interleaved repeats. Target: ratio <= 1.03.
* mobilenet_v3_small, batch 1 (many small layers: the hooks' worst case): layerprof's hooks vs bare
  hooks that only read ``time.perf_counter``, i.e. what any per-layer timer must pay. Target <= 1.2.

CUDA (``--device cuda``):

* resnet50, batch 32, float16: hooked vs plain forward (CUDA events around each), interleaved.
* ``layerprof.profile(...)``: coverage (sum of row times / end-to-end forward without hooks).
* ``profile(..., kernel_time=True)``: event times vs CUDA kernel times for the rows over 50 us.

Run ``python benchmarks/bench_timing.py [--device cpu|cuda] [--out results.json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from layerprof import profile
from layerprof.timing.clocks import clock_for
from layerprof.timing.layers import LayerTimer
from layerprof.walk.collect import ROOT_NAME
from layerprof.walk.twin import make_twin


def _torchvision_model(name: str) -> nn.Module:
    import torchvision

    return torchvision.models.get_model(name, weights=None).eval()  # type: ignore[no-any-return]


def attach_bare_hooks(model: nn.Module) -> list[Any]:
    """A pre-hook and a hook on every module that only read the clock: the floor for any layer timer."""
    clock = time.perf_counter

    def pre(_module: nn.Module, _args: Any) -> None:
        clock()

    def post(_module: nn.Module, _args: Any, _output: Any) -> None:
        clock()

    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    return handles


def interleaved(
    first: Callable[[], object],
    second: Callable[[], object],
    device: torch.device,
    *,
    warmup: int,
    repeat: int,
    after_second: Callable[[], None] = lambda: None,
) -> tuple[list[float], list[float]]:
    """Milliseconds of ``first`` and ``second`` per round; which one runs first alternates between
    rounds, so that neither always follows the other. ``after_second`` runs untimed."""
    stopwatch = clock_for(device)
    firsts: list[float] = []
    seconds: list[float] = []
    for round_index in range(warmup + repeat):
        if round_index % 2:
            b = stopwatch.time_ms(second)
            after_second()
            a = stopwatch.time_ms(first)
        else:
            a = stopwatch.time_ms(first)
            b = stopwatch.time_ms(second)
            after_second()
        if round_index >= warmup:
            firsts.append(a)
            seconds.append(b)
    return firsts, seconds


def hooks_vs(
    model: nn.Module,
    x: torch.Tensor,
    *,
    baseline: str,
    warmup: int,
    repeat: int,
) -> dict[str, Any]:
    """layerprof's hooks on one twin vs ``baseline`` ("plain": no hooks, "bare": clock-only hooks)."""
    device = x.device
    hooked = make_twin(model, to_meta=False)
    other = make_twin(model, to_meta=False)
    timer = LayerTimer(hooked, device=device, root_name=ROOT_NAME)
    bare = attach_bare_hooks(other) if baseline == "bare" else []
    calls = sum(1 for _ in model.modules())

    def flush() -> None:
        timer.flush()
        timer.discard()  # keep no samples: only the cost is measured here

    try:
        with torch.no_grad(), timer:
            base_ms, hooked_ms = interleaved(
                lambda: other(x), lambda: hooked(x), device, warmup=warmup, repeat=repeat, after_second=flush
            )
    finally:
        for handle in bare:
            handle.remove()
    base, with_hooks = statistics.median(base_ms), statistics.median(hooked_ms)
    # Paired: each round's two forwards saw the same background load, so their ratio cancels it.
    paired = statistics.median(h / b for h, b in zip(hooked_ms, base_ms, strict=True))
    return {
        "baseline": baseline,
        "baseline_ms": base,
        "layerprof_ms": with_hooks,
        "ratio": with_hooks / base,
        "paired_ratio": paired,
        "baseline_samples_ms": base_ms,
        "layerprof_samples_ms": hooked_ms,
        "modules": calls,
        "extra_us_per_module_call": (with_hooks - base) * 1e3 / calls,
    }


def event_vs_kernel(model: nn.Module, x: torch.Tensor, *, warmup: int, repeat: int) -> dict[str, Any]:
    report = profile(model, x, target=None, warmup=warmup, repeat=repeat, kernel_time=True)
    kernels = report.kernel_time_ms or {}
    rows: list[dict[str, Any]] = []
    for row in report.layers:
        if row.time_ms is not None and row.time_ms > 0.05:
            kernel = kernels.get(row.name, 0.0)
            rows.append(
                {
                    "row": row.name,
                    "event_ms": row.time_ms,
                    "kernel_ms": kernel,
                    "kernel_over_event": kernel / row.time_ms,
                }
            )
    ratios = [float(r["kernel_over_event"]) for r in rows]
    return {
        "coverage": report.coverage,
        "end_to_end_ms": report.total.time_ms,
        "sum_row_ms": sum(r.time_ms for r in report.layers if r.time_ms is not None),
        "sum_kernel_ms": sum(kernels.values()),
        "rows_over_50us": len(rows),
        "median_kernel_over_event": statistics.median(ratios) if ratios else None,
        "rows": rows,
    }


def print_table(title: str, lines: Sequence[tuple[str, str, str]]) -> None:
    print(f"\n{title}")
    width = max(len(name) for name, _, _ in lines)
    for name, value, target in lines:
        print(f"  {name:<{width}}  {value:>12}  {target}")


def run_cpu(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    size = args.image_size
    resnet = hooks_vs(
        _torchvision_model("resnet50"),
        torch.randn(8, 3, size, size),
        baseline="plain",
        warmup=args.warmup,
        repeat=args.repeat,
    )
    mobile = hooks_vs(
        _torchvision_model("mobilenet_v3_small"),
        torch.randn(1, 3, size, size),
        baseline="bare",
        warmup=args.warmup,
        repeat=max(args.repeat, 30),
    )
    print_table(
        f"CPU, {args.threads} threads, torch {torch.__version__}, {args.repeat} interleaved repeats",
        [
            ("resnet50 b8 plain ms", f"{resnet['baseline_ms']:.1f}", ""),
            ("resnet50 b8 layerprof hooks ms", f"{resnet['layerprof_ms']:.1f}", ""),
            ("resnet50 b8 hooks / plain (medians)", f"{resnet['ratio']:.4f}", "target <= 1.03"),
            ("resnet50 b8 hooks / plain (paired)", f"{resnet['paired_ratio']:.4f}", "target <= 1.03"),
            ("mobilenet_v3_small b1 bare hooks ms", f"{mobile['baseline_ms']:.2f}", ""),
            ("mobilenet_v3_small b1 layerprof hooks ms", f"{mobile['layerprof_ms']:.2f}", ""),
            ("mobilenet_v3_small b1 layerprof / bare (medians)", f"{mobile['ratio']:.4f}", "target <= 1.2"),
            (
                "mobilenet_v3_small b1 layerprof / bare (paired)",
                f"{mobile['paired_ratio']:.4f}",
                "target <= 1.2",
            ),
            ("  extra per module call us", f"{mobile['extra_us_per_module_call']:.2f}", ""),
        ],
    )
    return {"resnet50_b8_hooks_vs_plain": resnet, "mobilenet_v3_small_b1_layerprof_vs_bare": mobile}


def run_cuda(args: argparse.Namespace) -> dict[str, Any]:
    if not torch.cuda.is_available():
        raise SystemExit("--device cuda needs an NVIDIA GPU")
    model = _torchvision_model("resnet50").cuda().half()
    x = torch.randn(32, 3, args.image_size, args.image_size, device="cuda", dtype=torch.float16)
    overhead = hooks_vs(model, x, baseline="plain", warmup=args.warmup, repeat=args.repeat)
    kernels = event_vs_kernel(model, x, warmup=args.warmup, repeat=args.repeat)
    print_table(
        f"CUDA {torch.cuda.get_device_name()}, resnet50 b32 fp16, {args.repeat} repeats",
        [
            ("plain forward ms (events)", f"{overhead['baseline_ms']:.3f}", ""),
            ("layerprof hooks forward ms", f"{overhead['layerprof_ms']:.3f}", ""),
            ("hooks / plain (medians)", f"{overhead['ratio']:.4f}", ""),
            ("hooks / plain (paired)", f"{overhead['paired_ratio']:.4f}", ""),
            ("coverage (rows / end-to-end)", f"{kernels['coverage']:.3f}", "want 0.9 .. 1.1"),
            ("rows over 50 us", str(kernels["rows_over_50us"]), ""),
            ("median kernel / event time", f"{kernels['median_kernel_over_event'] or 0:.3f}", "<= 1"),
        ],
    )
    print("\n  row                                   event ms   kernel ms   kernel/event")
    for row in kernels["rows"]:
        print(
            f"  {row['row']:<36} {row['event_ms']:>9.3f} {row['kernel_ms']:>11.3f} "
            f"{row['kernel_over_event']:>14.3f}"
        )
    return {
        "resnet50_b32_fp16_hooks_vs_plain": overhead,
        "resnet50_b32_fp16_profile": kernels,
        "device_name": torch.cuda.get_device_name(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    results = run_cuda(args) if args.device == "cuda" else run_cpu(args)
    results["torch"] = torch.__version__
    results["args"] = {k: str(v) for k, v in vars(args).items()}
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
