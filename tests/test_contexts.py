"""Every context counts the same: no_grad, inference_mode, autocast, train and eval.

Under ``torch.inference_mode()`` composites (``aten.conv2d``, ``aten.linear``, ``aten.batch_norm``)
reach the dispatcher whole; layerprof counts them through their decomposition. The checks: resnet18
row by row, and a test generated from the formula registry: for every op with a forward formula, a
call that reaches it (found by trying the op's name on ``torch``, ``torch.Tensor`` and
``torch.nn.functional`` with small inputs, or one of the module calls below) counts the same FLOPs
under both. An op no call reaches must be in ``EXCLUDED`` with its reason, so a new formula without
a way to reach it fails here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import layerprof
from layerprof.formulas import FORMULAS

FORWARD_PACKETS = sorted(
    {str(op.overloadpacket) for op, formula in FORMULAS.items() if ".backward" not in formula.__module__}
)

# Ops whose formulas no CPU call from Python reaches, with why. They are priced by the same formula in
# every context: nothing decomposes into them differently under inference_mode.
EXCLUDED = {
    "aten.cudnn_convolution": "CUDA backend kernel (cuDNN)",
    "aten.cudnn_convolution_transpose": "CUDA backend kernel (cuDNN)",
    "aten.cudnn_batch_norm": "CUDA backend kernel (cuDNN)",
    "aten.miopen_batch_norm": "ROCm backend kernel (MIOpen)",
    "aten.convolution_overrideable": "out-of-tree backends only",
    "aten._flash_attention_forward": "CUDA attention kernel",
    "aten._efficient_attention_forward": "CUDA attention kernel",
    "aten._scaled_dot_product_flash_attention": "CUDA attention kernel",
    "aten._scaled_dot_product_efficient_attention": "CUDA attention kernel",
    "aten._scaled_dot_product_cudnn_attention": "CUDA attention kernel",
    "aten._scaled_dot_product_fused_attention_overrideable": "out-of-tree backends only",
    "aten._native_batch_norm_legit_functional": "functionalized graphs only (torch.compile)",
    "aten._fused_rms_norm": "CUDA fused kernel",
    "aten.mkldnn_max_pool2d": "mkldnn tensors only",
    "aten.quantized_max_pool2d": "quantized tensors: tests/test_quantized.py",
    "aten.select_backward": "autograd-only (a backward op registered with movement)",
    "aten.slice_backward": "autograd-only (a backward op registered with movement)",
    "aten._log_softmax_backward_data": "autograd-only",
    "aten._softmax_backward_data": "autograd-only",
    "aten.native_dropout_backward": "autograd-only",
    "aten.lift_fresh_copy": "tracing only (torch.tensor under make_fx)",
    "aten._copy_from": "cross-device copies only",
    "aten.cudnn_grid_sampler": "CUDA backend kernel (cuDNN)",
    "aten._scaled_mm": "float8 GEMM: CUDA (and some CPUs) only; no composite decomposes into it",
}
# quantized::* ops: no composite decomposes into them, so every context dispatches the same op;
# tests/test_quantized.py counts a quantized resnet18 under no_grad and inference_mode alike.
EXCLUDED |= {
    packet: "a quantized kernel: the same op in every context (tests/test_quantized.py)"
    for packet in FORWARD_PACKETS
    if packet.startswith("quantized.")
}


def _x() -> torch.Tensor:
    return torch.rand(2, 3, 8, 8) * 0.8 + 0.1


# Calls that the name-based search cannot build: (label, function, inputs).
MODULE_CALLS: list[tuple[str, Callable[..., Any], tuple[Any, ...]]] = [
    ("conv2d", nn.Conv2d(3, 4, 3, groups=1), (_x(),)),
    ("conv_transpose2d", nn.ConvTranspose2d(3, 4, 3), (_x(),)),
    ("conv1d", nn.Conv1d(3, 4, 3), (torch.rand(2, 3, 8),)),
    ("linear", nn.Linear(8, 5), (_x(),)),
    ("linear_1d", nn.Linear(8, 5), (torch.rand(8),)),
    ("batch_norm_eval", nn.BatchNorm2d(3).eval(), (_x(),)),
    ("batch_norm_train", nn.BatchNorm2d(3).train(), (_x(),)),
    ("layer_norm", nn.LayerNorm(8), (_x(),)),
    ("group_norm", nn.GroupNorm(1, 3), (_x(),)),
    ("rms_norm", nn.RMSNorm(8), (_x(),)),
    ("instance_norm", nn.InstanceNorm2d(3), (_x(),)),
    ("mha", nn.MultiheadAttention(8, 2, batch_first=True).eval(), (torch.rand(2, 5, 8),) * 3),
    ("sdpa", F.scaled_dot_product_attention, (torch.rand(2, 2, 5, 8),) * 3),
    ("dropout_train", nn.Dropout(0.5).train(), (_x(),)),
    ("max_pool1d", lambda x: F.max_pool1d(x, 2), (torch.rand(2, 3, 8),)),
    ("max_pool2d", lambda x: F.max_pool2d(x, 2), (_x(),)),
    ("max_pool2d_idx", lambda x: F.max_pool2d(x, 2, return_indices=True)[0], (_x(),)),
    ("max_pool3d", lambda x: F.max_pool3d(x, 2), (torch.rand(1, 2, 4, 4, 4),)),
    ("avg_pool1d", lambda x: F.avg_pool1d(x, 2), (torch.rand(2, 3, 8),)),
    ("avg_pool3d", lambda x: F.avg_pool3d(x, 2), (torch.rand(1, 2, 4, 4, 4),)),
    ("adaptive_avg_pool2d", lambda x: F.adaptive_avg_pool2d(x, 3), (_x(),)),
    ("adaptive_avg_pool3d", lambda x: F.adaptive_avg_pool3d(x, 2), (torch.rand(1, 2, 4, 4, 4),)),
    ("adaptive_max_pool1d", lambda x: F.adaptive_max_pool1d(x, 3), (torch.rand(2, 3, 8),)),
    ("adaptive_max_pool2d", lambda x: F.adaptive_max_pool2d(x, 3), (_x(),)),
    ("adaptive_max_pool3d", lambda x: F.adaptive_max_pool3d(x, 2), (torch.rand(1, 2, 4, 4, 4),)),
    ("log_softmax", lambda x: F.log_softmax(x, -1), (_x(),)),
    ("softmax", lambda x: F.softmax(x, -1), (_x(),)),
    ("prelu", nn.PReLU(), (_x(),)),
    ("embedding", nn.Embedding(10, 4), (torch.tensor([[1, 2], [3, 4]]),)),
    ("pad_reflect1d", lambda x: F.pad(x, (1, 1), mode="reflect"), (torch.rand(2, 3, 8),)),
    ("pad_reflect2d", lambda x: F.pad(x, (1, 1, 1, 1), mode="reflect"), (_x(),)),
    ("pad_reflect3d", lambda x: F.pad(x, (1,) * 6, mode="reflect"), (torch.rand(1, 2, 4, 4, 4),)),
    ("pad_replicate1d", lambda x: F.pad(x, (1, 1), mode="replicate"), (torch.rand(2, 3, 8),)),
    ("pad_replicate2d", lambda x: F.pad(x, (1, 1, 1, 1), mode="replicate"), (_x(),)),
    ("pad_replicate3d", lambda x: F.pad(x, (1,) * 6, mode="replicate"), (torch.rand(1, 2, 4, 4, 4),)),
    ("pad_constant", lambda x: F.pad(x, (1, 1)), (_x(),)),
    ("addmm_gelu", lambda a, b, c: torch._addmm_activation(c, a, b, use_gelu=True), (
        torch.rand(3, 4), torch.rand(4, 5), torch.rand(5),
    )),
    ("mv", torch.mv, (torch.rand(3, 4), torch.rand(4))),
    ("vdot", torch.vdot, (torch.rand(4), torch.rand(4))),
    ("baddbmm", torch.baddbmm, (torch.rand(2, 3, 5), torch.rand(2, 3, 4), torch.rand(2, 4, 5))),
    ("bmm", torch.bmm, (torch.rand(2, 3, 4), torch.rand(2, 4, 5))),
    ("matmul", torch.matmul, (torch.rand(3, 4), torch.rand(4, 5))),
    ("einsum", lambda a, b: torch.einsum("ij,jk->ik", a, b), (torch.rand(3, 4), torch.rand(4, 5))),
    ("norm", lambda x: torch.norm(x, p=2, dim=1), (_x(),)),
    ("vector_norm", lambda x: torch.linalg.vector_norm(x), (_x(),)),
    ("std_mean", lambda x: torch.std_mean(x, dim=1), (_x(),)),
    ("var_mean", lambda x: torch.var_mean(x, dim=1), (_x(),)),
    ("max_dim", lambda x: torch.max(x, dim=1)[0], (_x(),)),
    ("min_dim", lambda x: torch.min(x, dim=1)[0], (_x(),)),
    ("where", lambda x: torch.where(x > 0.5, x, -x), (_x(),)),
    ("masked_fill", lambda x: x.masked_fill(x > 0.5, 0.0), (_x(),)),
    ("masked_fill_", lambda x: x.clone().masked_fill_(x > 0.5, 0.0), (_x(),)),
    ("masked_select", lambda x: x.masked_select(x > 0.5), (_x(),)),
    ("index", lambda x: x[torch.tensor([0, 1])], (_x(),)),
    ("unsafe_index", lambda x: torch.ops.aten._unsafe_index(x, [torch.tensor([0, 1])]), (_x(),)),
    ("index_put", lambda x: x.index_put((torch.tensor([0]),), torch.tensor(1.0)), (_x(),)),
    ("index_put_", lambda x: x.clone().index_put_((torch.tensor([0]),), torch.tensor(1.0)), (_x(),)),
    ("index_select", lambda x: x.index_select(1, torch.tensor([0, 2])), (_x(),)),
    ("gather", lambda x: x.gather(1, torch.zeros(2, 1, 8, 8, dtype=torch.long)), (_x(),)),
    ("scatter", lambda x: x.scatter(1, torch.zeros(2, 1, 8, 8, dtype=torch.long), 1.0), (_x(),)),
    ("scatter_", lambda x: x.clone().scatter_(1, torch.zeros(2, 1, 8, 8, dtype=torch.long), 1.0), (_x(),)),
    ("slice_scatter", lambda x: x.slice_scatter(x[:, :1], 1, 0, 1), (_x(),)),
    ("select_scatter", lambda x: x.select_scatter(x[:, 0], 1, 0), (_x(),)),
    ("as_strided_scatter", lambda x: x.as_strided_scatter(x[:, 0], (2, 8, 8), x[:, 0].stride()), (_x(),)),
    ("narrow_copy", lambda x: x.narrow_copy(1, 0, 2), (_x(),)),
    ("copy_", lambda x: torch.empty_like(x).copy_(x), (_x(),)),
    ("gelu_", lambda x: torch.ops.aten.gelu_(x.clone()), (_x(),)),
    ("hardsigmoid_", lambda x: F.hardsigmoid(x.clone(), inplace=True), (_x(),)),
    ("hardswish_", lambda x: F.hardswish(x.clone(), inplace=True), (_x(),)),
    ("mish_", lambda x: F.mish(x.clone(), inplace=True), (_x(),)),
    ("silu_", lambda x: F.silu(x.clone(), inplace=True), (_x(),)),
    ("threshold", lambda x: F.threshold(x, 0.5, 0.0), (_x(),)),
    ("threshold_", lambda x: F.threshold(x.clone(), 0.5, 0.0, inplace=True), (_x(),)),
    ("max_pool1d_idx", lambda x: F.max_pool1d(x, 2, return_indices=True)[0], (torch.rand(2, 3, 8),)),
    ("grid_sample", lambda x, g: F.grid_sample(x, g, align_corners=False), (_x(), torch.rand(2, 4, 5, 2))),
    ("grid_sample_3d", lambda x, g: F.grid_sample(x, g, align_corners=False), (
        torch.rand(1, 2, 4, 4, 4), torch.rand(1, 2, 3, 3, 3),
    )),
    ("unfold", nn.Unfold(3), (_x(),)),
    ("fold", nn.Fold((4, 4), 2, stride=2), (torch.rand(1, 12, 4),)),
    ("max_unpool2d", lambda x: F.max_unpool2d(*F.max_pool2d(x, 2, return_indices=True), 2), (_x(),)),
    ("max_unpool3d", lambda x: F.max_unpool3d(*F.max_pool3d(x, 2, return_indices=True), 2), (
        torch.rand(1, 2, 4, 4, 4),
    )),
    ("topk", lambda x: x.topk(3)[0], (_x(),)),
    ("cumsum", lambda x: x.cumsum(1), (_x(),)),
    ("cumprod", lambda x: x.cumprod(1), (_x(),)),
    ("logcumsumexp", lambda x: x.logcumsumexp(1), (_x(),)),
    ("cumsum_", lambda x: x.clone().cumsum_(1), (_x(),)),
    ("cumprod_", lambda x: x.clone().cumprod_(1), (_x(),)),
    ("unique_dim", lambda x: torch.unique(x > 0.5, dim=0), (torch.rand(6, 3),)),
    ("quantize_per_tensor", lambda x: torch.quantize_per_tensor(
        x, 0.1, 0, torch.quint8
    ).dequantize(), (_x(),)),
    ("quantize_per_channel", lambda x: torch.quantize_per_channel(
        x, torch.ones(3) * 0.1, torch.zeros(3, dtype=torch.long), 1, torch.quint8
    ).dequantize(), (_x(),)),
    ("dot", torch.dot, (torch.rand(4), torch.rand(4))),
    ("norm_p", lambda x: torch.ops.aten.norm(x, 2), (_x(),)),
    ("safe_softmax", lambda x: torch.ops.aten._safe_softmax(x, -1), (_x(),)),
    ("native_dropout", lambda x: torch.ops.aten.native_dropout(x, 0.5, True)[0], (_x(),)),
    ("_convolution", lambda x, w: torch.ops.aten._convolution(
        x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, False, False, True, True
    ), (_x(), torch.rand(4, 3, 3, 3))),
    ("mkldnn_convolution", lambda x, w: torch.ops.aten.mkldnn_convolution(
        x, w, None, [0, 0], [1, 1], [1, 1], 1
    ), (_x(), torch.rand(4, 3, 3, 3))),
    ("batch_norm_legit", lambda x: torch.ops.aten._native_batch_norm_legit.no_stats(
        x, None, None, True, 0.1, 1e-5
    )[0], (_x(),)),
    ("batch_norm_legit_no_training", lambda x, m, v: torch.ops.aten._native_batch_norm_legit_no_training(
        x, None, None, m, v, 0.1, 1e-5
    )[0], (_x(), torch.zeros(3), torch.ones(3))),
    ("copy", lambda x: torch.ops.aten.copy(x, x), (_x(),)),
    ("to_copy", lambda x: x.to(torch.float64), (_x(),)),
    ("fill", lambda x: torch.ops.aten.fill(x, 1.0), (_x(),)),
    ("new_full", lambda x: x.new_full((2, 3), 1.0), (_x(),)),
    ("new_ones", lambda x: x.new_ones((2, 3)), (_x(),)),
    ("new_zeros", lambda x: x.new_zeros((2, 3)), (_x(),)),
    ("full", lambda x: x + torch.full((8,), 2.0), (_x(),)),
    ("ones", lambda x: x + torch.ones(8), (_x(),)),
    ("zeros", lambda x: x + torch.zeros(8), (_x(),)),
    ("arange", lambda x: x + torch.arange(8.0), (_x(),)),
    ("scalar_tensor", lambda x: x + torch.scalar_tensor(2.0), (_x(),)),
    ("full_like", lambda x: torch.full_like(x, 2.0), (_x(),)),
    ("repeat", lambda x: x.repeat(1, 2, 1, 1), (_x(),)),
    ("roll", lambda x: x.roll(1, 2), (_x(),)),
    ("flip", lambda x: x.flip(2), (_x(),)),
    ("cat", lambda x: torch.cat([x, x]), (_x(),)),
    ("stack", lambda x: torch.stack([x, x]), (_x(),)),
    ("pixel_shuffle", lambda x: F.pixel_shuffle(x, 2), (torch.rand(1, 4, 4, 4),)),
    ("pixel_unshuffle", lambda x: F.pixel_unshuffle(x, 2), (_x(),)),
    ("channel_shuffle", lambda x: F.channel_shuffle(x, 3), (torch.rand(1, 6, 4, 4),)),
    ("bernoulli", lambda x: torch.bernoulli(x), (_x(),)),
    ("bernoulli_", lambda x: x.clone().bernoulli_(0.5), (_x(),)),
    ("elu_backward", lambda x: torch.ops.aten.elu_backward(x, 1.0, 1, 1, False, x), (_x(),)),
    ("rsub", lambda x: 1 - x, (_x(),)),
    ("pow_scalar", lambda x: 2**x, (_x(),)),
    ("sum", lambda x: x.sum(1), (_x(),)),
    ("mean", lambda x: x.mean(1), (_x(),)),
    ("prod", lambda x: x.prod(1), (_x(),)),
    ("std", lambda x: x.std(1), (_x(),)),
    ("var", lambda x: x.var(1), (_x(),)),
    ("amax", lambda x: x.amax(1), (_x(),)),
    ("amin", lambda x: x.amin(1), (_x(),)),
    ("argmax", lambda x: x.argmax(1), (_x(),)),
    ("argmin", lambda x: x.argmin(1), (_x(),)),
    ("logit", lambda x: x.logit(), (_x(),)),
    ("logit_", lambda x: x.clone().logit_(), (_x(),)),
    ("nan_to_num_", lambda x: x.clone().nan_to_num_(), (_x(),)),
    ("tril", lambda x: x.tril(), (_x(),)),
    ("triu", lambda x: x.triu(), (_x(),)),
    ("bitwise_and", lambda x: (x > 0.5) & (x < 0.8), (_x(),)),
    ("bitwise_and_", lambda x: (x > 0.5).bitwise_and_(x < 0.8), (_x(),)),
    ("logical_not_", lambda x: (x > 0.5).logical_not_(), (_x(),)),
    ("sgn_", lambda x: x.clone().sgn_(), (_x(),)),
    ("upsample_bilinear", lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"), (_x(),)),
    ("upsample_bilinear_aa", lambda x: F.interpolate(x, size=4, mode="bilinear", antialias=True), (_x(),)),
    ("upsample_bicubic", lambda x: F.interpolate(x, scale_factor=2, mode="bicubic"), (_x(),)),
    ("upsample_bicubic_aa", lambda x: F.interpolate(x, size=4, mode="bicubic", antialias=True), (_x(),)),
    ("upsample_linear1d", lambda x: F.interpolate(x, scale_factor=2, mode="linear"), (torch.rand(2, 3, 8),)),
    ("upsample_trilinear", lambda x: F.interpolate(x, scale_factor=2, mode="trilinear"), (
        torch.rand(1, 2, 4, 4, 4),
    )),
    ("nearest1d", lambda x: F.interpolate(x, scale_factor=2), (torch.rand(2, 3, 8),)),
    ("nearest2d", lambda x: F.interpolate(x, scale_factor=2), (_x(),)),
    ("nearest3d", lambda x: F.interpolate(x, scale_factor=2), (torch.rand(1, 2, 4, 4, 4),)),
    ("nearest_exact1d", lambda x: F.interpolate(x, scale_factor=2, mode="nearest-exact"), (
        torch.rand(2, 3, 8),
    )),
    ("nearest_exact2d", lambda x: F.interpolate(x, scale_factor=2, mode="nearest-exact"), (_x(),)),
    ("nearest_exact3d", lambda x: F.interpolate(x, scale_factor=2, mode="nearest-exact"), (
        torch.rand(1, 2, 4, 4, 4),
    )),
]  # fmt: skip


def _name_calls(packet: str) -> list[tuple[str, Callable[..., Any], tuple[Any, ...]]]:
    """Calls built from an op's name: torch.<name>, Tensor.<name> (in place on a copy), F.<name>."""
    name = packet.removeprefix("aten.")
    calls: list[tuple[str, Callable[..., Any], tuple[Any, ...]]] = []
    # aten's own entry points only for the activation backward ops: other ops' C++ kernels do not all
    # check their arguments (a wrong call can crash the process)
    spaces = (torch.ops.aten,) if name.endswith("_backward") else (torch, torch.Tensor, F, torch.special)
    for space in spaces:
        fn = getattr(space, name, None)
        if fn is None:
            continue
        inplace = name.endswith("_")
        # (grad, input, ...) for the activation backward ops: threshold, hardtanh's bounds, a slope
        for extra in ((), ("y",), (2.0,), ("y", "y"), ("y", 0.5), ("y", 0.0, 1.0), ("y", 0.01, False)):

            def call(
                x: torch.Tensor, y: torch.Tensor, fn: Any = fn, extra: Any = extra, inplace: bool = inplace
            ) -> Any:
                rest = [y if e == "y" else e for e in extra]
                return fn(x.clone() if inplace else x, *rest)

            calls.append((f"{getattr(space, '__name__', 'Tensor')}.{name}{extra}", call, (_x(), _x())))
    return calls


class _Seen(TorchDispatchMode):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.packets: set[str] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.packets.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def _reached(fn: Callable[..., Any], inputs: tuple[Any, ...]) -> set[str] | None:
    """The ops ``fn`` dispatches under no_grad or inference_mode (composites such as max_pool2d reach
    the dispatcher under the latter only); None when it fails."""
    seen = _Seen()
    try:
        for context in (torch.no_grad, torch.inference_mode):
            with warnings.catch_warnings(), context(), seen:
                warnings.simplefilter("ignore")
                fn(*inputs)
    except Exception:
        return None
    return seen.packets


def _find_calls() -> dict[str, tuple[str, Callable[..., Any], tuple[Any, ...]]]:
    found: dict[str, tuple[str, Callable[..., Any], tuple[Any, ...]]] = {}
    for call in MODULE_CALLS:
        for packet in _reached(call[1], call[2]) or ():
            found.setdefault(packet, call)
    for packet in FORWARD_PACKETS:
        for call in _name_calls(packet) if packet not in found else ():
            if packet in (_reached(call[1], call[2]) or ()):
                found[packet] = call
                break
    return found


CALLS = _find_calls()


class Call(nn.Module):
    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *inputs: Any) -> Any:
        return self.fn(*inputs)


def _counts(
    fn: Callable[..., Any], inputs: tuple[Any, ...], context: Any
) -> tuple[int, int, Mapping[str, int]]:
    with warnings.catch_warnings(), context:
        warnings.simplefilter("ignore")
        report = layerprof.analyze(Call(fn), inputs)
    return report.total.flops, report.total.matrix_flops, dict(report.unsupported)


def test_every_forward_formula_is_reached_or_excluded_with_a_reason() -> None:
    unreached = [p for p in FORWARD_PACKETS if p not in CALLS and p not in EXCLUDED]
    assert unreached == []
    assert not set(EXCLUDED) - set(FORWARD_PACKETS), "an exclusion names an op without a formula"


#: Ops that analyze with real inputs counts differently under the two modes, since it counts on meta
#: (README, "Real inputs are counted on meta"): without a Meta kernel, torch runs their
#: CompositeImplicitAutograd kernel at the autograd key under no_grad, before any dispatch mode sees
#: the op, so no_grad counts their parts and inference_mode the whole op's formula. strict: a fix
#: makes the test fail until the entry goes.
META_DECOMPOSED = {
    "aten.mish_backward": "decomposed at the autograd key on meta: add/mul parts 14 per element vs "
    "the formula's 10",
}


@pytest.mark.parametrize(
    "packet",
    [
        pytest.param(p, marks=pytest.mark.xfail(strict=True, reason=META_DECOMPOSED[p]))
        if p in META_DECOMPOSED
        else p
        for p in FORWARD_PACKETS
        if p in CALLS
    ],
)
def test_a_forward_formula_counts_the_same_under_inference_mode(packet: str) -> None:
    label, fn, inputs = CALLS[packet]
    torch.manual_seed(0)
    under_no_grad = _counts(fn, inputs, torch.no_grad())
    torch.manual_seed(0)
    under_inference = _counts(fn, inputs, torch.inference_mode())
    assert under_inference == under_no_grad, label
    assert under_no_grad[2] == {}, label


def _rows(report: Any) -> list[tuple[Any, ...]]:
    return [
        (r.name, r.kind, r.flops, r.matrix_flops, r.params, r.dtype, r.output_shapes) for r in report.layers
    ]


def test_resnet18_under_inference_mode_equals_no_grad_row_by_row() -> None:
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        plain = layerprof.analyze(model, x)
    with torch.inference_mode():
        inferred = layerprof.analyze(model, x)
        on_meta = layerprof.analyze(model, input_size=(1, 3, 224, 224))
    assert inferred.unsupported == {} and on_meta.unsupported == {}
    assert _rows(inferred) == _rows(plain) == _rows(on_meta)
    assert round(inferred.total.matrix_flops / 2 / 1e9, 3) == 1.814  # torchvision's published GMACs
    # Bytes agree too, except where the kernels differ: under no_grad max pooling runs
    # max_pool2d_with_indices and writes its int64 indices; under inference_mode max_pool2d does not.
    for a, b in zip(plain.layers, inferred.layers, strict=True):
        indices = 64 * 56 * 56 * 8 if a.name == "maxpool" else 0
        assert (a.bytes_read, a.bytes_written - indices) == (b.bytes_read, b.bytes_written), a.name


def test_train_and_eval_count_the_same_convolution_and_linear_flops() -> None:
    model = torchvision.models.resnet18()
    train = layerprof.analyze(model.train(), input_size=(2, 3, 64, 64))
    evaluated = layerprof.analyze(model.eval(), input_size=(2, 3, 64, 64))
    assert train.total.matrix_flops == evaluated.total.matrix_flops
    # batch norm's FLOPs differ by design (training computes the batch statistics), never the matrix work
    for a, b in zip(train.layers, evaluated.layers, strict=True):
        if a.kind != "BatchNorm2d":
            assert (a.name, a.flops) == (b.name, b.flops)


def test_autocast_bf16_on_cpu_counts_the_same_flops() -> None:
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        plain = layerprof.analyze(model, x)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = layerprof.analyze(model, x)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        both = layerprof.analyze(model, x)
    assert autocast.total.flops == plain.total.flops == both.total.flops
    assert autocast.total.matrix_flops == plain.total.matrix_flops == both.total.matrix_flops
    assert autocast.row("conv1").dtype == both.row("conv1").dtype == "bfloat16"


def test_an_op_with_neither_formula_nor_decomposition_is_unsupported_and_a_composite_is_not() -> None:
    # aten.cosine_similarity is a composite without a formula of its own: counted through its parts.
    a, b = torch.rand(4, 16), torch.rand(4, 16)
    with torch.inference_mode():
        flops, _, unsupported = _counts(F.cosine_similarity, (a, b), torch.inference_mode())
    assert flops > 0 and unsupported == {}
    # aten.cummax has a CPU kernel and no decomposition: listed, bytes kept, 0 FLOPs.
    flops, _, unsupported = _counts(lambda x: torch.cummax(x, 1)[0], (a,), torch.no_grad())
    assert flops == 0 and unsupported == {"aten.cummax": 1}
