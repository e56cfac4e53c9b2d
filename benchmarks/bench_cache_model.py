"""What does the cache model cost? analyze(input_size=...) with and without it, side by side.

For each model and batch size, in one run, interleaved so that drift hits both alike, the median of
repeats (ms) of ``layerprof.analyze(model, input_size=..., target=...)`` with ``cache_model=True``
(the access trace, the reuse model and the per-level verdicts) and ``cache_model=False`` (the
DRAM-only verdicts). Target from the issue: the cache model adds at most 10%. Times are the
process's CPU time (``time.process_time``), so that other processes on a shared machine do not
count; a full garbage collection runs before each timed call, so that neither pays for the other's
garbage.

    python benchmarks/bench_cache_model.py [--models resnet50 mobilenet_v3_large] [--batches 1 64]
                                           [--repeat 15] [--target a100-40gb]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Sequence

import torch
import torchvision

import layerprof


def bench(name: str, batch: int, repeat: int, target: str) -> tuple[float, float]:
    model = torchvision.models.get_model(name, weights=None).eval()
    size = (batch, 3, 224, 224)
    times: dict[bool, list[float]] = {True: [], False: []}
    for cache_model in (True, False):  # warm-up: lazy imports, meta kernels
        layerprof.analyze(model, input_size=size, target=target, cache_model=cache_model)
    for _ in range(repeat):
        for cache_model in (True, False):
            gc.collect()
            start = time.process_time()
            layerprof.analyze(model, input_size=size, target=target, cache_model=cache_model)
            times[cache_model].append((time.process_time() - start) * 1e3)
    return statistics.median(times[True]), statistics.median(times[False])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["resnet50", "mobilenet_v3_large"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--target", default="a100-40gb")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), target {args.target}, median of {args.repeat}"
    )
    print(f"{'model':<20}{'batch':>6}{'cache ms':>10}{'dram ms':>10}{'ratio':>8}  (CPU ms)")
    for name in args.models:
        for batch in args.batches:
            cached, dram = bench(name, batch, args.repeat, args.target)
            print(f"{name:<20}{batch:>6}{cached:>10.1f}{dram:>10.1f}{cached / dram:>8.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
