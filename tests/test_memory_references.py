"""The memory footprint against torch's own MemTracker, run on the same models with real tensors on CPU.

``torch.distributed._tools.mem_tracker.MemTracker`` tracks every storage of the real run (parameters,
buffers, the input, activations, gradients, optimizer state, temporaries) and keeps the highest total
after each op: the same moment layerprof's peak is taken at, so the two peaks compare like with like.
MemTracker's run is inference under ``no_grad``, or one training step: ``model(x).sum().backward()``
then ``optimizer.step()``; layerprof's is ``analyze(..., backward=True, optimizer=...)`` on meta.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn

import layerprof

torchvision = pytest.importorskip("torchvision")
mem_tracker = pytest.importorskip("torch.distributed._tools.mem_tracker")

MODELS = ["resnet18", "mobilenet_v3_large", "convnext_tiny"]
SIZE = (2, 3, 224, 224)
OPTIMIZERS: dict[str, Callable[[nn.Module], torch.optim.Optimizer]] = {
    "sgd-momentum": lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9),
    "adam": lambda m: torch.optim.Adam(m.parameters()),
}


def _memtracker_peak(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> int:
    x = torch.randn(SIZE)
    tracker = mem_tracker.MemTracker()
    tracker.track_external(model, x, *([optimizer] if optimizer is not None else []))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with tracker:
            if optimizer is None:
                with torch.no_grad():
                    model(x)
            else:
                model(x).sum().backward()
                optimizer.step()
    return int(tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"])


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_inference_peak_matches_memtracker(name: str, one_torch_thread: None) -> None:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    report = layerprof.analyze(model, input_size=SIZE)
    assert report.memory is not None
    reference = _memtracker_peak(model, None)
    assert report.memory.peak_bytes == pytest.approx(reference, rel=0.05)
    assert report.memory.parameters == sum(p.numel() for p in model.parameters()) * 4


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("name", MODELS)
def test_training_step_peak_matches_memtracker(name: str, optimizer: str, one_torch_thread: None) -> None:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).train()
    counted = copy.deepcopy(model)
    report = layerprof.analyze(
        counted, input_size=SIZE, backward=True, optimizer=OPTIMIZERS[optimizer](counted)
    )
    assert report.memory is not None
    reference = _memtracker_peak(model, OPTIMIZERS[optimizer](model))
    assert report.memory.peak_bytes == pytest.approx(reference, rel=0.05)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("optimizer", [None, "adam"])
def test_cuda_peak_matches_max_memory_allocated(optimizer: str | None) -> None:
    """On a GPU: the prediction for a GPU target (512-byte blocks, foreach step) within 10% of the
    caching allocator's own high-water mark over the same step (cuDNN workspaces included there)."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).train(optimizer is not None)
    gpu = layerprof.get_device("h100-sxm")
    report = layerprof.analyze(
        model, input_size=(8, 3, 224, 224), target=gpu, backward=optimizer is not None, optimizer=optimizer
    )
    assert report.memory is not None and report.memory.allocator == "cuda"
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()  # what earlier tests left on the device
    real = model.cuda()
    x = torch.randn(8, 3, 224, 224, device="cuda")
    step = OPTIMIZERS[optimizer](real) if optimizer is not None else None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    if step is None:
        with torch.no_grad():
            real(x)
    else:
        real(x).sum().backward()
        step.step()
    torch.cuda.synchronize()
    measured = torch.cuda.max_memory_allocated() - before
    assert report.memory.peak_bytes == pytest.approx(measured, rel=0.10)
