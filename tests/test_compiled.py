"""A torch.compile'd model (OptimizedModule) is counted through the module it wraps.

Compiled with ``backend="eager"``: dynamo's graph capture without inductor's code generation, so the
tests need no C++ compiler and stay fast; the wrapper layerprof unwraps is the same.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import nn

import layerprof
from layerprof.api.compiled import COMPILED_TIMES_NOTE, is_compiled


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4)
    )


def counts(report: Any) -> list[tuple[Any, ...]]:
    return [(r.name, r.kind, r.flops, r.bytes_read, r.bytes_written, r.params) for r in report.layers]


def untouched(compiled: nn.Module, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    assert compiled._orig_mod is model and is_compiled(compiled)
    for module in (compiled, *model.modules()):
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


@pytest.fixture
def compiled() -> tuple[nn.Module, nn.Module, dict[str, torch.Tensor]]:
    model = net().eval()
    return torch.compile(model, backend="eager"), model, {k: v.clone() for k, v in model.state_dict().items()}


def test_analyze_counts_through_the_wrapped_module(compiled: Any) -> None:
    wrapper, model, state = compiled
    x = torch.randn(2, 3, 8, 8)
    on_size = layerprof.analyze(wrapper, input_size=(2, 3, 8, 8))  # failed before: dynamo on meta
    assert counts(on_size) == counts(layerprof.analyze(model, input_size=(2, 3, 8, 8)))
    assert [r.name for r in on_size.layers] == ["0", "1", "2", "3", "4"]  # not _orig_mod.0
    assert on_size.model_name == "Sequential"
    assert counts(layerprof.analyze(wrapper, x)) == counts(layerprof.analyze(model, x))
    assert on_size.total.matrix_flops == 2 * 2 * 8 * 6 * 6 * 3 * 3 * 3 + 2 * 2 * 4 * 288  # conv + linear
    untouched(wrapper, model, state)


def test_profile_warns_that_compiled_times_are_not_per_layer(compiled: Any) -> None:
    wrapper, model, state = compiled
    with pytest.warns(UserWarning, match="times of compiled code are not per layer"):
        report = layerprof.profile(wrapper, torch.randn(2, 3, 8, 8), target=None, warmup=1, repeat=2)
    assert [r.name for r in report.layers] == ["0", "1", "2", "3", "4"]
    assert all(r.time_ms is not None for r in report.layers)  # the wrapped module's, timed eagerly
    untouched(wrapper, model, state)


def test_profiler_counts_a_compiled_model_and_times_no_layer(compiled: Any) -> None:
    wrapper, model, state = compiled
    x = torch.randn(2, 3, 8, 8)
    with pytest.warns(UserWarning, match="times of compiled code are not per layer"):
        profiler = layerprof.Profiler(wrapper, target=None)
    with profiler:
        wrapper(x)
    report = profiler.report()
    assert counts(report) == counts(layerprof.analyze(model, x))
    assert all(r.time_ms is None for r in report.layers)
    untouched(wrapper, model, state)


def test_watch_samples_a_compiled_model_under_its_own_row_names(compiled: Any) -> None:
    wrapper, model, state = compiled
    reports: list[Any] = []
    with pytest.warns(UserWarning, match="times of compiled code are not per layer"):
        watcher = layerprof.watch(wrapper, every=2, target=None, backward=False, sink=reports.append)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dynamo's own, about tracing the timing hooks
        for _ in range(3):
            wrapper(torch.randn(2, 3, 8, 8))
    watcher.remove()
    assert reports and [r.name for r in reports[0].forward] == ["0", "1", "2", "3", "4"]
    assert counts(reports[0])[:5] == counts(layerprof.analyze(model, torch.randn(2, 3, 8, 8)))
    untouched(wrapper, model, state)


def test_the_note_is_documented() -> None:
    from pathlib import Path

    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split()).lower()
    assert "times of compiled code are not per layer" in readme and "not per layer" in COMPILED_TIMES_NOTE


def test_the_cli_audits_a_factory_that_returns_a_compiled_model(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from layerprof.cli import main

    path = tmp_path / "compiled_models.py"
    path.write_text(
        "import torch\nfrom torch import nn\n\n\ndef make():\n"
        "    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 2))\n"
        "    return torch.compile(model, backend='eager')\n",
        encoding="utf-8",
    )
    code = main(["audit", f"{path}:make", "--input-size", "1,3,8,8", "--target", "t4", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    import json

    document = json.loads(out)
    names = [row["name"] for row in document["layers"]] if "layers" in document else None
    assert names == ["0", "1", "2", "3"], document.keys()
