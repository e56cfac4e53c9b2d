"""Which card for this model? Predicted time on every device in layerprof's table, and, where the table
has a price, throughput per dollar: the seed talk's price/performance question.

The model is counted once (``layerprof.analyze`` on the meta device, nothing run) and judged on all
devices at once. Times are roofline predictions: the sum of each layer's ``max(compute, memory)``
time, a lower bound that ranks devices by their ceilings, not a benchmark.

    python examples/which_card.py                                  # resnet50, fp16, batch 1
    python examples/which_card.py --model mobilenet_v3_large --batch 32 --dtype fp32
    python examples/which_card.py --model path/to/net.py:build --input-size 1,3,256,256
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from tabulate import tabulate

import layerprof
from layerprof.budgets import memory_bound_share
from layerprof.cli.config import parse_input_size
from layerprof.cli.loader import DEFAULT_INPUT_SIZE, load_model
from layerprof.hardware.specs import PeakFallbackWarning, normalize_dtype


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="torchvision:resnet50", help="MODEL as layerprof audit takes it")
    parser.add_argument("--dtype", default="fp16", help="fp32, fp16, bf16 (default fp16)")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--input-size", default=None, help="input size without the batch default: crop size")
    args = parser.parse_args(argv)

    loaded = load_model(args.model, on_meta=True)  # torchvision models: shapes only, no weights
    size = (
        parse_input_size(args.input_size)
        if args.input_size
        else (loaded.input_sizes or (DEFAULT_INPUT_SIZE,))[0]
    )
    size = (args.batch, *size[1:])
    devices = layerprof.list_devices()
    dtype_key = normalize_dtype(args.dtype)
    with warnings.catch_warnings():
        # A device without a figure for this dtype is priced at its float32 peak; the table says so.
        warnings.simplefilter("ignore", PeakFallbackWarning)
        report = layerprof.analyze(
            loaded.model.eval(), input_size=size, dtype=args.dtype, target=list(devices)
        )

    rows = []
    for device in devices:
        predicted_ms = report.total.roofline[device.name].roofline_time_ms
        per_second = args.batch / (predicted_ms / 1e3)
        has_dtype = dtype_key in device.matrix_peak_flops_per_s
        per_kilodollar = None if device.price_usd is None else per_second / (device.price_usd / 1e3)
        rows.append((device, predicted_ms, per_second, per_kilodollar, has_dtype))
    rows.sort(key=lambda r: r[1])

    table = [
        [
            device.name,
            device.kind,
            f"{predicted_ms:.3f}",
            f"{per_second:,.0f}",
            f"{memory_bound_share(report, device.name):.0%}",
            "-" if device.price_usd is None else f"${device.price_usd:,.0f}",
            "-" if per_kilodollar is None else f"{per_kilodollar:,.0f}",
            "" if has_dtype else f"no {dtype_key} peak: float32's used",
        ]
        for device, predicted_ms, per_second, per_kilodollar, has_dtype in rows
    ]
    shape = "x".join(map(str, size))
    total = report.total
    moved_mib = total.bytes_total / 2**20
    print(
        f"{args.model} ({shape}, {dtype_key}): {total.flops / 1e9:.2f} GFLOPs, {moved_mib:.1f} MiB moved, ",
        end="",
    )
    print(f"{total.params / 1e6:.1f} M params")
    headers = [
        "device",
        "kind",
        "predicted ms",
        "inputs/s",
        "memory-bound",
        "price",
        "inputs/s per $1k",
        "note",
    ]
    print(tabulate(table, headers=headers, disable_numparse=True))
    priced = [r for r in rows if r[3] is not None]
    if priced:
        best = max(priced, key=lambda r: r[3] or 0.0)
        print(
            f"best price/performance among priced devices: {best[0].name} ({best[3]:,.0f} inputs/s per $1k)"
        )
    print(
        "predicted = sum of per-layer roofline times: a lower bound; prices are list prices from the table."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
