"""How long does an analyse-only audit of the whole torchvision classification zoo take?

Every model in ``torchvision.models.list_models(module=torchvision.models)`` is loaded the way
``layerprof audit torchvision:NAME`` loads it (``layerprof.cli.loader.load_model(..., on_meta=True)``:
built on the meta device, no weights, no initialisation; RegNets, whose builders need real values,
on the CPU) and counted with ``layerprof.analyze`` at its default input size (the DEFAULT weights'
crop size, batch 1), judged on one target. Target from the issue: under a minute for the zoo.

    python benchmarks/bench_audit_zoo.py                 # all models, t4
    python benchmarks/bench_audit_zoo.py --real          # built on the CPU with random init (slow)
    python benchmarks/bench_audit_zoo.py --models resnet50 vit_b_16 --target t4 a100
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence

import torchvision
from tabulate import tabulate

import layerprof
from layerprof.cli.loader import DEFAULT_INPUT_SIZE, load_model


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=None, help="default: every classification model")
    parser.add_argument("--target", nargs="+", default=["t4"], help="devices to judge on (default t4)")
    parser.add_argument("--real", action="store_true", help="build real models (random init) instead of meta")
    parser.add_argument("--slowest", type=int, default=8, help="list this many slowest models")
    args = parser.parse_args(argv)

    names = args.models or torchvision.models.list_models(module=torchvision.models)
    rows = []
    failed: list[tuple[str, str]] = []
    started = time.perf_counter()
    for name in names:
        begin = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # init-time FutureWarnings, unsupported-op notes
                loaded = load_model(f"torchvision:{name}", on_meta=not args.real)
                built = time.perf_counter()
                size = (loaded.input_sizes or (DEFAULT_INPUT_SIZE,))[0]
                report = layerprof.analyze(loaded.model.eval(), input_size=size, target=args.target)
        except Exception as error:  # a benchmark lists every failure and goes on
            failed.append((name, f"{type(error).__name__}: {error}"))
            continue
        done = time.perf_counter()
        rows.append(
            (
                name,
                "x".join(map(str, size)),
                report.total.flops / 1e9,
                built - begin,
                done - built,
                done - begin,
            )
        )
    total_s = time.perf_counter() - started

    rows.sort(key=lambda r: r[5], reverse=True)
    table = [
        [n, s, f"{g:.2f}", f"{b:.3f}", f"{a:.3f}", f"{t:.3f}"] for n, s, g, b, a, t in rows[: args.slowest]
    ]
    print(tabulate(table, headers=["slowest models", "input", "GFLOPs", "load s", "analyze s", "total s"]))
    load_s = sum(r[3] for r in rows)
    analyze_s = sum(r[4] for r in rows)
    print(
        f"\n{len(rows)} of {len(names)} models audited in {total_s:.1f} s "
        f"(loading {load_s:.1f} s, analyze {analyze_s:.1f} s; {'real' if args.real else 'meta'} models; "
        f"target under 60 s)"
    )
    for name, reason in failed:
        print(f"FAILED {name}: {reason}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
