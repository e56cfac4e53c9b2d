"""Which card for this model? A thin caller of ``layerprof.compare_devices`` (``layerprof cards`` is the
same as a command): predicted time on every device in layerprof's table, images/s, what bounds it,
whether it fits, and price/performance where the table has a price (list price; typical hourly
cloud price).

The model is counted once (``layerprof.analyze`` on the meta device, nothing run) and judged on all
devices at once. Times are roofline predictions (cache levels and the launch floor included), a
lower bound that ranks devices by their ceilings, not a benchmark.

    python examples/which_card.py                                  # resnet50, fp16, batch 1
    python examples/which_card.py --model mobilenet_v3_large --batch 32 --dtype fp32
    python examples/which_card.py --model path/to/net.py:build --input-size 1,3,256,256 --sort cost
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import layerprof
from layerprof.cli.cards_render import render
from layerprof.cli.config import parse_input_size
from layerprof.cli.loader import DEFAULT_INPUT_SIZE, load_model


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="torchvision:resnet50", help="MODEL as layerprof audit takes it")
    parser.add_argument("--dtype", default="fp16", help="fp32, fp16, bf16 (default fp16)")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--input-size", default=None, help="input size without the batch default: crop size")
    parser.add_argument("--sort", default="time", choices=("time", "throughput", "cost", "value"))
    args = parser.parse_args(argv)

    loaded = load_model(args.model, on_meta=True)  # torchvision models: shapes only, no weights
    size = (
        parse_input_size(args.input_size)
        if args.input_size
        else (loaded.input_sizes or (DEFAULT_INPUT_SIZE,))[0]
    )
    result = layerprof.compare_devices(
        loaded.model.eval(), input_size=size, batch=args.batch, dtype=args.dtype, sort=args.sort
    )
    print(render(result, "table"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
