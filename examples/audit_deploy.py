"""Before deploying: will ResNet-50 or MobileNetV3-Large fit the latency budget of a T4 server and of a
Jetson Orin Nano, at fp16? Counted only (``layerprof.analyze`` on the meta device): nothing is run,
no weights are downloaded, no GPU is needed; the times are roofline predictions, lower bounds.

    python examples/audit_deploy.py                     # both models, both devices, default budgets
    python examples/audit_deploy.py --t4-ms 1.5 --orin-ms 8 --show-table

The same audit from the command line, one model at a time (exit 1 when a budget fails):

    layerprof audit torchvision:resnet50 --dtype fp16 --target t4 --target jetson-orin-nano-8gb \\
        --max-latency-ms 8 --max-memory-bound-share 0.6
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tabulate import tabulate

import layerprof
from layerprof.budgets import Budgets, check, failures, memory_bound_share
from layerprof.cli.loader import load_model

MODELS = ("resnet50", "mobilenet_v3_large")
TARGETS = ("t4", "jetson-orin-nano-8gb")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="torchvision model names")
    parser.add_argument("--t4-ms", type=float, default=2.0, help="latency budget on the T4 (ms)")
    parser.add_argument("--orin-ms", type=float, default=10.0, help="latency budget on the Orin Nano (ms)")
    parser.add_argument("--max-gflops", type=float, default=10.0, help="FLOP budget (GFLOPs)")
    parser.add_argument("--show-table", action="store_true", help="print each model's per-block table")
    args = parser.parse_args(argv)

    limits = {"t4": args.t4_ms, "jetson-orin-nano-8gb": args.orin_ms}
    summary = []
    failed_any = False
    for name in args.models:
        loaded = load_model(f"torchvision:{name}", on_meta=True)  # shapes only, no weights
        size = (loaded.input_sizes or ((1, 3, 224, 224),))[0]  # the DEFAULT weights' crop size
        model = loaded.model.eval()  # inference: no dropout, batch norm on running statistics
        report = layerprof.analyze(model, input_size=size, dtype="fp16", target=list(TARGETS))
        if args.show_table:
            print(report.table(depth=1))
            print()
        results = list(check(report, Budgets(max_gflops=args.max_gflops)))
        for target, limit in limits.items():
            results += check(report, Budgets(max_latency_ms=limit), target=target)
        failed = failures(results)
        failed_any = failed_any or bool(failed)
        for target in TARGETS:
            verdict = report.total.roofline[target]
            summary.append(
                [
                    name,
                    "x".join(map(str, size)),
                    f"{report.total.flops / 1e9:.2f}",
                    f"{report.total.params / 1e6:.1f}",
                    target,
                    f"{verdict.roofline_time_ms:.3f}",
                    f"{limits[target]:g}",
                    f"{memory_bound_share(report, target):.0%}",
                    "ok" if all(r.passed for r in results if r.target in (None, target)) else "FAIL",
                ]
            )
        for result in failed:
            print(f"{name}: {result.describe()}")
    headers = [
        "model",
        "input",
        "GFLOPs",
        "Mparams",
        "target",
        "predicted ms",
        "budget ms",
        "memory-bound",
        "",
    ]
    print(tabulate(summary, headers=headers, disable_numparse=True))
    print("fp16; predicted = sum of per-layer roofline times (a lower bound: real kernels are slower).")
    return 1 if failed_any else 0


if __name__ == "__main__":
    sys.exit(main())
