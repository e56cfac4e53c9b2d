"""What does memory tracking cost analyze()? Counting with and without the storage tracker, side by side.

Memory tracking always runs in ``analyze`` and ``profile`` (it is what fills ``report.memory`` and
``row.activation_bytes``). To price it, this script calls the counting step itself
(``layerprof.api.counting.count``, what ``analyze(input_size=...)`` runs) with ``memory=None`` and with
a ``FootprintRun`` (as analyze makes it), interleaved, median of repeats, plus the whole
``analyze(input_size=...)`` for scale. Target from issue 11: tracking adds at most 15%.

    python benchmarks/bench_memory_tracking.py [--models resnet50 mobilenet_v3_large] [--repeat 9]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence

import torch
import torchvision

import layerprof
from layerprof.api.counting import count
from layerprof.walk.memory_run import FootprintRun


def bench(name: str, batch: int, repeat: int, backward: bool) -> dict[str, float]:
    model = torchvision.models.get_model(name, weights=None)
    model.train(backward)
    size = (batch, 3, 224, 224)
    x = torch.empty(size, device="meta")
    runs: dict[str, Callable[[], object]] = {
        "count": lambda: count(model, (x,), {}, to_meta_device=True, backward=backward),
        "count+memory": lambda: count(
            model, (x,), {}, to_meta_device=True, backward=backward, memory=FootprintRun()
        ),
        "analyze": lambda: layerprof.analyze(model, input_size=size, backward=backward),
    }
    times: dict[str, list[float]] = {key: [] for key in runs}
    for run in runs.values():
        run()  # warm-up: caches of op descriptions, formulas
    order = list(runs)
    for round_ in range(repeat):
        # interleaved, the order reversed every other round: load on the machine (and the garbage one
        # variant leaves for the next to collect) hits every variant alike
        for key in order if round_ % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            runs[key]()
            times[key].append((time.perf_counter() - start) * 1e3)
    return {key: statistics.median(values) for key, values in times.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["resnet50", "mobilenet_v3_large", "convnext_tiny"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--backward", action="store_true", help="count a training step (forward + backward)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    print(f"{'model':22} {'count ms':>10} {'+memory ms':>11} {'overhead':>9} {'analyze ms':>11}")
    worst = 0.0
    for name in args.models:
        result = bench(name, args.batch, args.repeat, args.backward)
        overhead = result["count+memory"] / result["count"] - 1
        worst = max(worst, overhead)
        print(
            f"{name:22} {result['count']:10.1f} {result['count+memory']:11.1f} {overhead:9.1%} "
            f"{result['analyze']:11.1f}"
        )
    print(f"worst overhead {worst:.1%} (target: at most 15%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
