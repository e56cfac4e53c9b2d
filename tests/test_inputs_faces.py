"""Issue #13: the faces of inputs. A dict is keyword inputs and ``kwargs=`` gives them next to positional
ones (analyze, profile, crosscheck); the header names every input's shape and a dtype other than
float32; ``profile(input_size=...)`` makes random inputs on the model's device without moving the RNG;
a ``.pt2`` program's rows carry the module names of the eager model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import layerprof
from layerprof.errors import InvalidArgumentError


class Masked(nn.Module):
    """``forward(x, mask=None, scale=1.0)``: a convolution, then a linear layer on the masked mean."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, scale: float = 1.0) -> torch.Tensor:
        y = self.conv(x)
        if mask is not None:
            y = y * mask
        out: torch.Tensor = self.fc(y.mean((2, 3))) * scale
        return out


CONV_MACS = 4 * 6 * 6 * 3 * 3 * 3  # 3,888
FC_MACS = 4 * 2


def _macs(report: layerprof.Report) -> dict[str, int]:
    return {row.name: row.macs for row in report.forward}


def test_a_dict_is_keyword_inputs_and_kwargs_sit_next_to_positional_ones() -> None:
    model = Masked().eval()
    x, mask = torch.randn(1, 3, 8, 8), torch.ones(1, 1, 6, 6)
    by_dict = layerprof.analyze(model, {"x": x, "mask": mask})
    side_by_side = layerprof.analyze(model, x, kwargs={"mask": mask})
    assert _macs(by_dict) == _macs(side_by_side)
    assert _macs(side_by_side)["conv"] == CONV_MACS and _macs(side_by_side)["fc"] == FC_MACS
    assert str(by_dict).splitlines()[0] == "layerprof: Masked (x=1x3x8x8, mask=1x1x6x6)"
    assert str(side_by_side).splitlines()[0] == "layerprof: Masked (1x3x8x8, mask=1x1x6x6)"
    # kwargs alone are keyword inputs too.
    assert _macs(layerprof.analyze(model, kwargs={"x": x})) == _macs(layerprof.analyze(model, x))


def test_kwargs_are_checked() -> None:
    model = Masked().eval()
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(InvalidArgumentError, match="both in the inputs dict and in kwargs"):
        layerprof.analyze(model, {"x": x}, kwargs={"x": x})
    with pytest.raises(InvalidArgumentError, match="kwargs must be a dict"):
        layerprof.analyze(model, x, kwargs=[x])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="not both"):
        layerprof.analyze(model, kwargs={"x": x}, input_size=(1, 3, 8, 8))


def test_the_header_names_dtypes_other_than_float32() -> None:
    class Ids(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 4)

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.embed(ids) * mask.unsqueeze(-1)
            return out

    report = layerprof.analyze(Ids(), input_size={"ids": ((2, 5), torch.long), "mask": ((2, 5), torch.bool)})
    assert str(report).splitlines()[0] == "layerprof: Ids (ids=2x5 int64, mask=2x5 bool)"
    half = layerprof.analyze(nn.Conv2d(3, 4, 3), input_size=(1, 3, 8, 8), dtype=torch.float16)
    assert str(half).splitlines()[0] == "layerprof: Conv2d (1x3x8x8 float16)"
    assert repr(half).startswith("<layerprof Report: Conv2d (1x3x8x8 float16), 1 rows")


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_crosscheck_takes_the_keyword_inputs_analyze_took() -> None:
    pytest.importorskip("fvcore")
    model = Masked().eval()
    x, mask = torch.randn(1, 3, 8, 8), torch.ones(1, 1, 6, 6)
    for report in (
        layerprof.analyze(model, {"x": x, "mask": mask}),
        layerprof.analyze(model, x, kwargs={"mask": mask, "scale": 2.0}),
        layerprof.analyze(model, input_size={"x": (1, 3, 8, 8)}),
    ):
        check = report.crosscheck()  # inputs made from the report's, keyword ones too
        assert check.agrees, check.summary()
        assert (check.rows_compared, check.layerprof_macs, check.fvcore_macs) == (
            3,
            CONV_MACS + FC_MACS,
            CONV_MACS + FC_MACS,
        )
    given = layerprof.analyze(model, x).crosscheck(inputs=x, kwargs={"mask": mask})
    assert given.agrees and given.fvcore_macs == CONV_MACS + FC_MACS
    by_dict = layerprof.analyze(model, x).crosscheck(inputs={"x": x})
    assert by_dict.agrees and by_dict.fvcore_macs == CONV_MACS + FC_MACS


def test_crosscheck_names_the_rows_of_a_keyword_model_without_the_adapter() -> None:
    pytest.importorskip("fvcore")
    # A disagreement names the model's own row, not the adapter's ``model.conv``.
    model = Masked().eval()
    report = layerprof.analyze(model, {"x": torch.randn(1, 3, 8, 8)})
    other = Masked().eval()
    other.conv = nn.Conv2d(3, 4, 3, padding=1)  # 8x8 out: more MACs than the report's
    check = report.crosscheck(other, {"x": torch.randn(1, 3, 8, 8)})
    assert [(d.name, d.layerprof_macs, d.fvcore_macs) for d in check.disagreements] == [
        ("conv", CONV_MACS, 4 * 8 * 8 * 27)
    ]


def test_profile_takes_kwargs_and_input_size() -> None:
    model = Masked().eval()
    x, mask = torch.randn(1, 3, 8, 8), torch.ones(1, 1, 6, 6)
    timed = layerprof.profile(model, x, kwargs={"mask": mask}, target=None, warmup=0, repeat=1)
    assert _macs(timed)["conv"] == CONV_MACS and timed.total.time_ms is not None
    made = layerprof.profile(model, input_size={"x": (1, 3, 8, 8)}, target=None, warmup=0, repeat=1)
    assert _macs(made)["conv"] == CONV_MACS
    assert str(made).splitlines()[0] == "layerprof: Masked (x=1x3x8x8)"
    with pytest.raises(InvalidArgumentError, match="got both"):
        layerprof.profile(model, x, input_size=(1, 3, 8, 8))
    with pytest.raises(InvalidArgumentError, match="got neither"):
        layerprof.profile(model)


def test_profile_input_size_makes_inputs_of_the_model_dtype_without_moving_the_rng() -> None:
    seen: list[torch.Tensor] = []

    class Seeing(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 4, dtype=torch.float64)

        def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
            seen.append(x)
            seen.append(ids)
            out: torch.Tensor = self.embed(ids).sum() + x.sum()
            return out

    model = Seeing()  # its initialisation draws from the RNG: before the seed
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    report = layerprof.profile(
        model,
        input_size=[(2, 3), ((2, 5), torch.long)],  # type: ignore[arg-type]
        target=None,
        warmup=0,
        repeat=1,
    )
    assert torch.equal(torch.rand(3), expected)  # the draws came from a fork
    real = [t for t in seen if t.device.type == "cpu"]
    assert real and {(t.dtype, tuple(t.shape)) for t in real} == {
        (torch.float64, (2, 3)),
        (torch.int64, (2, 5)),
    }
    assert all(int(t.abs().sum()) == 0 for t in real if t.dtype == torch.int64)  # index 0: zeros
    assert any(float(t.std()) > 0 for t in real if t.dtype == torch.float64)  # randn, not zeros
    assert str(report).splitlines()[0] == "layerprof: Seeing (2x3 float64, 2x5 int64)"


# -- .pt2 programs: rows named as the eager model's ----------------------------------------------------
class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.relu(self.conv2(self.relu(self.conv1(x))) + x)
        return out


class SmallResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.layer1 = nn.Sequential(Block(), Block())
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layer1(self.relu(self.bn1(self.conv1(x)))).mean((2, 3))
        out: torch.Tensor = self.fc(y)
        return out


def _rows(report: layerprof.Report) -> list[tuple[str, str, int, int, int, object]]:
    return [(r.name, r.kind, r.calls, r.flops, r.params, r.output_shapes) for r in report.forward]


def test_a_pt2_program_gets_the_eager_model_rows(tmp_path: Path) -> None:
    from layerprof.cli.loader import load_model

    model = SmallResNet().eval()
    path = tmp_path / "resnet.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(1, 3, 10, 10),)), path)
    loaded = load_model(str(path))
    eager = layerprof.analyze(model, input_size=(1, 3, 10, 10))
    exported = layerprof.analyze(loaded.model, input_size=(1, 3, 10, 10))
    names = [r.name for r in exported.forward]
    assert names[:4] == ["conv1", "bn1", "relu", "layer1.0.conv1"]
    assert "layer1.0/add" in names and "layer1.1.conv2" in names and "(root)/mean" in names
    assert _rows(exported) == _rows(eager)
    assert exported.forward[0].flops == 2 * 4 * 8 * 8 * 27 + 4 * 8 * 8  # conv1: MACs and bias
    assert exported.row("layer1.0.relu").calls == 2  # one module, two calls, as in the eager model
    assert exported.row("layer1.0.conv1").input_shapes == ((1, 4, 8, 8),)  # the input, not the weights
    assert exported.total.flops == eager.total.flops and exported.total.params == eager.total.params


def test_a_pt2_program_leaves_the_loaded_module_as_it_was(tmp_path: Path) -> None:
    from layerprof.cli.loader import load_model

    path = tmp_path / "resnet.pt2"
    torch.export.save(torch.export.export(SmallResNet().eval(), (torch.randn(1, 3, 10, 10),)), path)
    module = load_model(str(path)).model
    before = [name for name, _ in module.named_modules()]
    layerprof.analyze(module, input_size=(1, 3, 10, 10))
    assert [name for name, _ in module.named_modules()] == before and "forward" not in module.__dict__
    assert "layer1.0.relu" not in before  # the stand-ins went to the twin only
