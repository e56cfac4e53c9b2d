"""A real training loop with ``layerprof.watch``: a per-layer table, forward and backward, every N steps.

The data are random images and labels (nothing is downloaded). The model trains with SGD; every
``--every`` steps the watcher counts one step and times the next, then prints the table: FLOPs,
bytes, forward and backward times, ``bwd/fwd`` (a backward row's FLOPs over its forward row's,
about 2 for convolutions and linear layers, 1 for a first layer whose input needs no gradient) and
the roofline verdicts on ``--target``.

    python examples/train_watch.py                                # DemoNet, 64x64, a table every 20 steps
    python examples/train_watch.py --model resnet18 --size 112 --every 50 --steps 120
    python examples/train_watch.py --accumulate 4 --depth 1       # gradient accumulation, rolled-up rows
    python examples/train_watch.py --jsonl samples.jsonl          # also one JSON line per sample
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

import layerprof
from layerprof.report.facade import Report


def build(name: str, classes: int) -> nn.Module:
    if name == "demo":
        return layerprof.demo_model(num_classes=classes).train()
    import torchvision  # the vision extra

    return torchvision.models.get_model(name, weights=None, num_classes=classes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", help="demo, or a torchvision model name (resnet18, ...)")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps")
    parser.add_argument("--every", type=int, default=20, help="sample one step in this many forwards")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=64, help="image height and width")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--accumulate", type=int, default=1, help="forwards and backwards per optimizer step")
    parser.add_argument("--target", default="auto", help="device to judge against: a name, or auto")
    parser.add_argument("--depth", type=int, default=None, help="roll rows up to this module depth")
    parser.add_argument("--jsonl", default=None, help="also append each sample to this JSON-lines file")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build(args.model, args.classes).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def show(report: Report) -> None:
        print(report.table(depth=args.depth))
        if args.jsonl:
            with open(args.jsonl, "a", encoding="utf-8") as file:
                file.write(report.to_json(indent=None))

    began = time.perf_counter()
    with layerprof.watch(model, every=args.every, target=args.target, sink=show) as watcher:
        for step in range(args.steps):
            for _ in range(args.accumulate):
                images = torch.randn(args.batch, 3, args.size, args.size, device=device)
                labels = torch.randint(0, args.classes, (args.batch,), device=device)
                loss = F.cross_entropy(model(images), labels) / args.accumulate
                loss.backward()
                watcher.flush()  # optional: on CUDA, emit now rather than at the next forward
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step % 10 == 0:
                print(f"step {step:4d}  loss {loss.item() * args.accumulate:.3f}")
    elapsed = time.perf_counter() - began
    print(f"{args.steps} steps in {elapsed:.1f} s; {watcher.samples} samples of {watcher.forwards} forwards")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
