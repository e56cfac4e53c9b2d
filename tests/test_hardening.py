"""Issue #12's findings about the user's model, each written so that it failed before its fix.

Profiling must leave the model and the program exactly as they were: the model's own containers,
its RNG stream, and the objects layerprof no longer needs.
"""

from __future__ import annotations

import collections

import pytest
import torch
from torch import nn

import layerprof


class Caching(nn.Module):
    """A forward that writes into the module's own containers, as memoising models do."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.cache: dict[tuple[int, ...], torch.Tensor] = {}
        self.seen: list[torch.Tensor] = []
        self.history: collections.deque[int] = collections.deque(maxlen=4)
        self.nested = {"outputs": []}  # type: ignore[var-annotated]
        self.anchors = [torch.ones(4, 1, 1)]  # a real tensor inside a container, read by forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x) * self.anchors[0]
        self.cache[tuple(x.shape)] = out
        self.seen.append(out)
        self.history.append(int(x.shape[0]))
        self.nested["outputs"].append(out)
        return out


@pytest.mark.parametrize("how", ["input_size", "inputs", "profile"])
def test_the_models_own_containers_are_not_written(how: str) -> None:
    model = Caching().eval()
    x = torch.randn(2, 3, 8, 8)
    if how == "input_size":
        layerprof.analyze(model, input_size=(2, 3, 8, 8))
    elif how == "inputs":
        layerprof.analyze(model, x)
    else:
        layerprof.profile(model, x, target="t4", warmup=1, repeat=2)
    assert (
        model.cache == {}
        and model.seen == []
        and list(model.history) == []
        and model.nested == {"outputs": []}
    )
    assert model.anchors[0].device.type == "cpu"
    out = model(x)  # the user's next forward works and fills the user's own containers
    assert model.seen[0] is out and model.cache[(2, 3, 8, 8)] is out and list(model.history) == [2]


def test_shared_containers_stay_shared_in_the_twin() -> None:
    from layerprof.walk.twin import make_twin

    model = Caching()
    model.alias = model.seen  # the same list under two names
    twin = make_twin(model, to_meta=True)
    assert twin.seen is twin.alias and twin.seen is not model.seen
    assert twin.anchors[0].device.type == "meta" and model.anchors[0].device.type == "cpu"
