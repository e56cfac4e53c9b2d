"""DDP training with ``layerprof.watch``: one per-layer table of every rank's step, on rank 0.

Every rank samples the same step (``every`` counts forwards); rank 0 prints one table whose times
are medians over the ranks, with the slowest rank's time and number, stragglers flagged (``*``), a
``(ddp)/allreduce`` row for DDP's gradient all-reduce and, in the footer, how much of it the backward
hid. The data are random images and labels (nothing is downloaded). gloo on the CPU, nccl with one
GPU per rank when CUDA is present::

    torchrun --nproc_per_node=2 examples/ddp_watch.py                       # 2 ranks, DemoNet, 64x64
    torchrun --nproc_per_node=4 examples/ddp_watch.py --model resnet50 --size 224 --batch 32
    torchrun --nproc_per_node=2 examples/ddp_watch.py --every 5 --steps 12 --straggler 1.5
    torchrun --nnodes=2 --node_rank=0 --master_addr=HOST --master_port=29500 \\
        --nproc_per_node=8 examples/ddp_watch.py                           # then node_rank=1 on the other
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import layerprof


def build(name: str, classes: int) -> nn.Module:
    if name == "demo":
        return layerprof.demo_model(num_classes=classes).train()
    import torchvision  # the vision extra

    return torchvision.models.get_model(name, weights=None, num_classes=classes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", help="demo, or a torchvision model name (resnet18, ...)")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps")
    parser.add_argument("--every", type=int, default=10, help="sample one step in this many forwards")
    parser.add_argument("--batch", type=int, default=8, help="images per rank")
    parser.add_argument("--size", type=int, default=64, help="image height and width")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--target", default="auto", help="device to judge against: a name, or auto")
    parser.add_argument("--straggler", type=float, default=1.2, help="flag rows whose max / median is above")
    parser.add_argument("--depth", type=int, default=None, help="roll rows up to this module depth")
    parser.add_argument("--timeout", type=float, default=120, help="seconds a rank waits for the others")
    args = parser.parse_args(argv)
    if "RANK" not in os.environ:
        parser.error("run me under torchrun: torchrun --nproc_per_node=2 examples/ddp_watch.py")

    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if not cuda:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["LOCAL_WORLD_SIZE"])))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=args.timeout))
    rank = dist.get_rank()
    try:
        torch.manual_seed(0)  # the same initial weights on every rank (DDP broadcasts rank 0's anyway)
        model = DistributedDataParallel(
            build(args.model, args.classes).to(device), device_ids=[local_rank] if cuda else None
        )
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        generator = torch.Generator(device=device).manual_seed(1000 + rank)  # each rank its own batches

        def show(report: layerprof.Report) -> None:  # called on rank 0 only
            print(report.table(depth=args.depth), flush=True)

        gather = layerprof.RankGather(straggler_threshold=args.straggler)
        began = time.perf_counter()
        with layerprof.watch(
            model, every=args.every, target=args.target, sink=show, gather=gather
        ) as watcher:
            for step in range(args.steps):
                images = torch.randn(args.batch, 3, args.size, args.size, device=device, generator=generator)
                labels = torch.randint(0, args.classes, (args.batch,), device=device, generator=generator)
                loss = F.cross_entropy(model(images), labels)
                loss.backward()
                watcher.flush()  # on CUDA: gather now (every rank calls it at the same step)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if rank == 0 and step % 10 == 0:
                    print(f"step {step:4d}  loss {loss.item():.3f}", flush=True)
        if rank == 0:
            elapsed = time.perf_counter() - began
            print(
                f"{args.steps} steps in {elapsed:.1f} s on {dist.get_world_size()} ranks; "
                f"{watcher.samples} samples of {watcher.forwards} forwards"
            )
        dist.barrier()  # no rank tears the group down while another is still in a collective
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
