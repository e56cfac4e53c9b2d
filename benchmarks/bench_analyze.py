"""How much does counting cost? analyze() against the floor and the other counters, side by side.

For each model and batch size, in one run, interleaved, median of repeats (ms):
  meta floor   a bare forward of a meta-device copy of the model: shape propagation alone
  analyze      layerprof.analyze(model, input_size=...): twin on meta + hooks + dispatch counter
  fvcore       fvcore FlopCountAnalysis(...).total() on real CPU inputs (jit trace)
  flopcounter  torch.utils.flop_counter.FlopCounterMode around a real CPU forward
  plain        a plain CPU forward under no_grad (real inputs): the baseline of the x-plain ratios
  analyze-real layerprof.analyze(model, real_inputs): counted on meta from the inputs' shapes
Ratios against the floor, fvcore and the plain forward are printed; targets from the issues:
analyze <= 1.25x floor, <= 0.5x fvcore, batch 64 <= 1.2x batch 1; analyze-real at batch 1 <= 0.6x
plain for resnet50 and <= 1.8x plain for mobilenet_v3_large (issue 11), and flopcounter x plain for
reference. The real-input passes are interleaved too (plain, analyze-real, flopcounter, fvcore in
turn, each repeat), so load on the machine hits them alike.

    python benchmarks/bench_analyze.py [--models resnet50 mobilenet_v3_large] [--batches 1 64] [--repeat 7]
    python benchmarks/bench_analyze.py --batches 1 --slow-repeat 15 --no-fvcore   # the issue-11 ratios
    python benchmarks/bench_analyze.py --batches 1 --no-fvcore --threads 1 --clock cpu  # on a loaded machine
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import layerprof

CLOCK: Callable[[], float] = time.perf_counter


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = CLOCK()
        fn()
        times.append((CLOCK() - start) * 1e3)
    return statistics.median(times)


def bench(name: str, batch: int, repeat: int, slow_repeat: int, with_fvcore: bool = True) -> dict[str, float]:
    model = torchvision.models.get_model(name, weights=None).eval()
    size = (batch, 3, 224, 224)
    meta_model = copy.deepcopy(model).to("meta")
    meta_x = torch.empty(size, device="meta")
    x = torch.randn(size)

    def floor() -> None:
        with torch.no_grad():
            meta_model(meta_x)

    def analyze() -> None:
        layerprof.analyze(model, input_size=size)

    def plain() -> None:
        with torch.no_grad():
            model(x)

    def analyze_real() -> None:
        layerprof.analyze(model, x)

    def fvcore() -> None:
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(model, x)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        analysis.total()

    def flopcounter() -> None:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
        counter.get_total_flops()

    for fn in (floor, analyze):  # warm-up: lazy imports, allocator, meta kernels
        fn()
    results = {"meta floor": [], "analyze": []}  # interleaved so drift hits both alike
    for _ in range(repeat):
        results["meta floor"].append(median_ms(floor, 1))
        results["analyze"].append(median_ms(analyze, 1))
    row = {k: statistics.median(v) for k, v in results.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain()
        analyze_real()
        slow: dict[str, list[float]] = {"plain": [], "analyze-real": [], "flopcounter": [], "fvcore": []}
        for _ in range(slow_repeat):
            slow["plain"].append(median_ms(plain, 1))
            slow["analyze-real"].append(median_ms(analyze_real, 1))
            slow["flopcounter"].append(median_ms(flopcounter, 1))
            if with_fvcore:
                slow["fvcore"].append(median_ms(fvcore, 1))
    row.update({k: statistics.median(v) if v else float("nan") for k, v in slow.items()})
    return row


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["resnet50", "mobilenet_v3_large"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--repeat", type=int, default=9, help="repeats of the meta passes")
    parser.add_argument("--slow-repeat", type=int, default=3, help="repeats of the real-compute passes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-fvcore", action="store_true", help="skip fvcore (its jit trace is slow)")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: this process's CPU time (with --threads 1, the cost on a machine others load too)",
    )
    args = parser.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads, {args.clock} clock, "
        f"median of {args.repeat} / {args.slow_repeat}"
    )
    header = (
        f"{'model':<20}{'batch':>6}{'floor':>9}{'analyze':>9}{'x floor':>8}{'fvcore':>9}{'x fvc':>7}"
        f"{'flopctr':>9}{'x plain':>8}{'plain':>9}{'an-real':>9}{'x plain':>8}"
    )
    print(header)
    by_batch: dict[str, dict[int, float]] = {}
    real_by_batch: dict[str, dict[int, float]] = {}
    for name in args.models:
        for batch in args.batches:
            r = bench(name, batch, args.repeat, args.slow_repeat, with_fvcore=not args.no_fvcore)
            by_batch.setdefault(name, {})[batch] = r["analyze"]
            real_by_batch.setdefault(name, {})[batch] = r["analyze-real"]
            print(
                f"{name:<20}{batch:>6}{r['meta floor']:>9.1f}{r['analyze']:>9.1f}"
                f"{r['analyze'] / r['meta floor']:>8.2f}{r['fvcore']:>9.1f}{r['analyze'] / r['fvcore']:>7.2f}"
                f"{r['flopcounter']:>9.1f}{r['flopcounter'] / r['plain']:>8.2f}"
                f"{r['plain']:>9.1f}{r['analyze-real']:>9.1f}"
                f"{r['analyze-real'] / r['plain']:>8.2f}",
                flush=True,
            )
    for name, times in by_batch.items():
        if len(times) > 1:
            small, large = min(times), max(times)
            print(f"{name}: analyze at batch {large} / batch {small} = {times[large] / times[small]:.2f}")
            real = real_by_batch[name]
            print(f"{name}: analyze-real at batch {large} / batch {small} = {real[large] / real[small]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
