"""analyze() on real inputs counts on meta from their shapes, and on the real forward only when needed.

The reference is the real forward itself, counted the way analyze did before (a twin on the real
inputs, real kernels): every row field must be equal, and the path taken is read from the log.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torchvision.models import mobilenet_v3_large, resnet18

import layerprof
from layerprof.api.counting import count
from layerprof.core.records import LayerRow
from layerprof.walk.fast_meta import FAST_META, fast_meta_kernel

LOGGER = "layerprof.api.real_inputs"


def fields(rows: Any) -> list[tuple[Any, ...]]:
    return [
        (
            r.name, r.kind, r.phase, r.depth, r.calls, r.kernel_size, r.input_shapes, r.output_shapes,
            r.shapes_vary, r.dtype, r.params, r.flops, r.matrix_flops, r.bytes_read, r.bytes_written,
        )
        for r in rows
    ]  # fmt: skip


def real_rows(
    model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None
) -> list[LayerRow]:
    """The rows of the real forward, counted as analyze counted real inputs before meta-first."""
    with torch.no_grad():
        rows, _, _ = count(model, args, kwargs or {}, to_meta_device=False)
    return rows


def analyzed(
    caplog: pytest.LogCaptureFixture, model: nn.Module, *inputs: Any, **kwargs: Any
) -> tuple[list[LayerRow], str]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        report = layerprof.analyze(model, *inputs, **kwargs)
    said = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(said) == 1, said
    return list(report.layers), said[0]


ON_META = "on meta from the inputs' shapes"


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("build", [resnet18, mobilenet_v3_large], ids=["resnet18", "mobilenet_v3_large"])
def test_torchvision_models_count_on_meta_as_on_the_real_forward(
    build: Any, train: bool, caplog: pytest.LogCaptureFixture
) -> None:
    model = build(weights=None).train(train)
    x = torch.randn(2, 3, 64, 64)
    rows, said = analyzed(caplog, model, x)
    assert ON_META in said
    assert fields(rows) == fields(real_rows(model, (x,)))


class Keyword(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, image: torch.Tensor, scale: float = 1.0, mode: str = "mean", extra: Any = None) -> Any:
        y = self.conv(image.contiguous()) * scale  # a copy exactly when the input is not contiguous
        y = y.mean((2, 3)) if mode == "mean" else y.amax((2, 3))
        if extra is not None:
            y = y + extra[0].sum() * extra[1]
        return {"logits": self.fc(y), "features": [y, y.relu()]}


@pytest.mark.parametrize(
    ("inputs", "kwargs"),
    [
        ({"image": torch.randn(2, 3, 9, 9)}, None),
        ((torch.randn(2, 3, 9, 9),), {"scale": 0.5, "mode": "max"}),
        ((torch.randn(2, 3, 9, 9), 2.0, "mean", [torch.randn(4), torch.randn(2, 4)]), None),
        ((torch.randn(2, 9, 9, 3).permute(0, 3, 1, 2),), None),  # channels-last strides
        ((torch.randn(2, 3, 18, 9)[:, :, ::2],), None),  # a strided slice, not dense
    ],
    ids=["dict", "non-tensor-kwargs", "nested-list", "channels-last", "slice"],
)
def test_inputs_of_every_form_count_on_meta_as_on_the_real_forward(
    inputs: Any, kwargs: Any, caplog: pytest.LogCaptureFixture
) -> None:
    model = Keyword().eval()
    rows, said = analyzed(caplog, model, inputs, kwargs=kwargs)
    assert ON_META in said
    args, named = ((), dict(inputs)) if isinstance(inputs, dict) else (tuple(inputs), dict(kwargs or {}))
    assert fields(rows) == fields(real_rows(model, args, named))


class Twice(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * b + a


def test_one_tensor_given_twice_stays_one_tensor(caplog: pytest.LogCaptureFixture) -> None:
    x = torch.randn(4, 5)
    rows, said = analyzed(caplog, Twice(), (x, x))
    assert ON_META in said
    assert fields(rows) == fields(real_rows(Twice(), (x, x)))
    # mul reads one distinct tensor (4 * 5 * 4 bytes), not two; add reads a*b and a.
    assert rows[0].bytes_read == 4 * 5 * 4 + 2 * 4 * 5 * 4


def test_autocast_is_counted_on_the_real_forward(caplog: pytest.LogCaptureFixture) -> None:
    model = Keyword().eval()
    x = torch.randn(2, 3, 9, 9)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # one block each: autocast caches its weight casts
        rows, said = analyzed(caplog, model, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = real_rows(model, (x,))
    assert "autocast" in said
    assert fields(rows) == fields(expected)
    assert rows[0].dtype == "bfloat16"  # the convolution ran in bfloat16, as autocast makes it


class Branches(nn.Module):
    """A model that needs its input's values, in one of several ways."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.fc = nn.Linear(6, 6)
        self.attn = nn.MultiheadAttention(6, 2, batch_first=True) if how == "mha" else None
        self.rnn = nn.LSTM(6, 6, batch_first=True) if how == "lstm" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        if self.how == "if":
            y = y * 2 if y.sum() > 0 else y - 1
        elif self.how == "item":
            y = y * y.abs().max().item()
        elif self.how == "nonzero":
            y = y.flatten()[torch.nonzero(y.flatten() > 0).flatten()]
        elif self.how == "tolist":
            y = y + len(y.tolist())
        elif self.how == "numpy":
            y = y + float(y.detach().numpy().size)
        elif self.how == "cpu-tensor":
            y = y + torch.arange(6.0)
        elif self.how == "moved":
            y = y + torch.arange(6.0).to(y.device)
        elif self.how == "caught":
            try:
                y = y * int(y.argmax())
            except RuntimeError:
                y = y - 1  # a model that catches the failure must not be counted on this path
        elif self.how == "sdpa":
            q = y.view(y.shape[0], 1, -1, 6)
            y = F.scaled_dot_product_attention(q, q, q).view_as(y)
        elif self.how == "setitem":
            mask = y.new_zeros(y.shape)
            mask[:, :2] = 1
            y = y * mask
        elif self.attn is not None:
            y = self.attn(y, y, y, need_weights=False)[0]
        elif self.rnn is not None:
            y = self.rnn(y)[0]
        return y


FALLBACKS = {
    "if": "aten._local_scalar_dense.default needs the tensors' values",
    "item": "aten._local_scalar_dense.default needs the tensors' values",
    "nonzero": "aten.nonzero.default needs the tensors' values",
    "tolist": "copies a meta tensor out to the CPU",
    "numpy": ".numpy() needs the tensor's values",
    "cpu-tensor": "a tensor made on the CPU inside the forward next to meta tensors",
    "moved": "moved to the inputs' device",
    "caught": "aten._local_scalar_dense.default needs the tensors' values",
    "sdpa": "scaled_dot_product_attention runs its math fallback on meta",
    "setitem": "a Python number written into a tensor",
    "mha": "layer attn is a MultiheadAttention",
    "lstm": "layer rnn is a LSTM",
}


@pytest.mark.parametrize("how", sorted(FALLBACKS))
def test_a_model_that_needs_values_is_counted_on_the_real_forward(
    how: str, caplog: pytest.LogCaptureFixture
) -> None:
    model = Branches(how).eval()
    x = torch.randn(3, 4, 6)
    rows, said = analyzed(caplog, model, x)
    assert "on the real forward" in said and FALLBACKS[how] in said, said
    assert fields(rows) == fields(real_rows(model, (x,)))


SEEN: list[str] = []  # the device of every input Recorder's forward was given


class Recorder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        SEEN.append(x.device.type)
        return self.conv(x)  # type: ignore[no-any-return]


def test_the_forward_sees_meta_tensors_only_so_the_batch_costs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    SEEN.clear()
    x = torch.randn(512, 3, 32, 32)
    rows, said = analyzed(caplog, Recorder(), x)
    assert SEEN == ["meta"] and ON_META in said
    assert rows[0].matrix_flops == 2 * 512 * 8 * 30 * 30 * 3 * 3 * 3  # 2 * N * Cout * HW * Cin * k * k


def test_a_genuine_error_is_raised_with_torchs_cpu_wording() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    with pytest.raises(layerprof.ForwardError) as caught:
        layerprof.analyze(model, torch.randn(1, 4, 8, 8))
    # The CPU kernel's message (meta's says "Invalid channel dimensions").
    assert "expected input[1, 4, 8, 8] to have 3 channels" in str(caught.value)
    assert caught.value.layer == "0"


class DropoutNet(nn.Module):
    def __init__(self, needs_values: bool) -> None:
        super().__init__()
        self.needs_values = needs_values
        self.fc = nn.Linear(8, 8)
        self.bn = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.drop(self.bn(self.fc(x)))
        return y * y.sum().item() if self.needs_values else y


@pytest.mark.parametrize("needs_values", [False, True], ids=["meta", "real"])
def test_the_rng_and_the_model_are_left_as_they_were(
    needs_values: bool, caplog: pytest.LogCaptureFixture
) -> None:
    model = DropoutNet(needs_values).train()
    x = torch.randn(4, 8)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    pointers = [p.data_ptr() for p in model.parameters()]
    rng = torch.get_rng_state()
    rows, said = analyzed(caplog, model, x)
    assert torch.equal(torch.get_rng_state(), rng)
    assert (ON_META in said) != needs_values
    assert model.training and model.drop.training and model.bn.training
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # bit-identical, BN stats too
    assert [p.data_ptr() for p in model.parameters()] == pointers
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert [r.name for r in rows][:3] == ["fc", "bn", "drop"]


class CheckFast(TorchDispatchMode):
    """Runs torch's meta kernel of every op that has a fast one, and compares the two outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.checked: dict[str, int] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        kernel = fast_meta_kernel(func, args)
        in_place = func.overloadpacket.__name__.endswith("_")  # its fast kernel returns its input
        if kernel is None or func not in FAST_META or in_place:
            return func(*args, **kwargs)
        fast = kernel(args, kwargs)
        slow = func(*args, **kwargs)
        # Batch norm's statistics are the CPU kernel's (empty in eval), not meta's: its output only.
        a, b = (fast[0], slow[0]) if isinstance(fast, tuple) else (fast, slow)
        assert (a.shape, a.stride(), a.dtype, a.device) == (b.shape, b.stride(), b.dtype, b.device), func
        self.checked[str(func)] = self.checked.get(str(func), 0) + 1
        return slow


@pytest.mark.parametrize("build", [resnet18, mobilenet_v3_large], ids=["resnet18", "mobilenet_v3_large"])
def test_every_fast_meta_kernel_gives_torchs_meta_output(build: Any) -> None:
    model = build(weights=None).eval().to("meta")
    checker = CheckFast()
    with torch.no_grad(), checker:
        model(torch.empty(2, 3, 64, 64, device="meta"))
        a = torch.empty(2, 3, 8, 8, device="meta")
        a + torch.empty(3, 1, 1, device="meta")  # broadcast
        a * 2.0  # a Python number
        a.mean((1, -1), keepdim=False)
    expected = {"aten.convolution.default", "aten.addmm.default", "aten.mean.dim", "aten.add.Tensor"}
    if build is mobilenet_v3_large:
        expected |= {"aten.mul.Tensor", "aten.hardsigmoid.default"}
    assert expected <= set(checker.checked), checker.checked
