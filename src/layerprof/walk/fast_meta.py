"""Cheaper meta kernels for common ops, so that counting on meta costs less than a meta forward.

PyTorch's meta kernels for batch norm, elementwise ops and several activations are Python
decompositions that cost up to 2 ms per call (more than the rest of a ResNet-50's meta forward
together); even ``torch.empty_like`` on meta is a Python reference, fifty times the cost of
``torch.empty_strided``. Their outputs need little computation: an in-place op returns its input, an
elementwise activation returns a tensor like its input, batch norm one like its input plus per-channel
statistics, a binary op of contiguous operands a contiguous tensor of the broadcast shape, a
convolution of contiguous operands a contiguous tensor of the usual output size, ``addmm`` and a mean
over some dims contiguous tensors of their shapes. Each kernel takes only the plain case (contiguous
operands of one floating dtype, sizes that fit) and returns None otherwise, and torch's own meta
kernel runs, so errors (a size that does not fit) are torch's. Counting reads shapes, strides and
dtypes; ``tests/test_meta_first.py`` checks every fast kernel's output against torch's meta kernel's,
op by op, on real models.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch._ops import OpOverload

from layerprof.formulas.registry import overload_names

aten = torch.ops.aten

FastKernel = Callable[[tuple[Any, ...], Mapping[str, Any]], Any]

_UNARY = (
    "relu", "hardswish", "hardsigmoid", "silu", "sigmoid", "tanh", "gelu", "hardtanh", "leaky_relu",
    "elu", "mish", "threshold", "celu", "selu",
)  # fmt: skip


def _same_as_input(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    return args[0]


def _empty_like(x: torch.Tensor) -> torch.Tensor:
    if x.is_contiguous():  # a dense tensor's strides are what empty_like keeps
        return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=x.device)
    return torch.empty_like(x)


def _like_input(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    return _empty_like(args[0])


def _contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def _exact(x: object) -> bool:
    """A meta floating tensor laid out exactly row-major: the case every kernel below takes."""
    return (
        isinstance(x, torch.Tensor)
        and x.is_meta
        and x.is_floating_point()
        and x.stride() == _contiguous_strides(x.shape)
    )


def _contiguous(shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    return torch.empty(tuple(shape), dtype=like.dtype, device="meta")


def _binary(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    a, b = args[0], args[1]
    if isinstance(b, (int, float)) and not isinstance(b, bool) and _exact(a):
        return _contiguous(a.shape, a)  # a float tensor and a Python number: the tensor's dtype
    if not (_exact(a) and _exact(b)) or a.dtype != b.dtype:
        return None
    if a.shape == b.shape:
        return _contiguous(a.shape, a)
    try:
        shape = torch.broadcast_shapes(a.shape, b.shape)  # type: ignore[no-untyped-call]
    except RuntimeError:
        return None  # torch's kernel raises its own error
    return _contiguous(shape, a)


def _convolution(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    x, weight, bias, stride, padding, dilation, transposed, _output_padding, groups = args[:9]
    spatial = x.dim() - 2 if isinstance(x, torch.Tensor) else 0
    if (
        transposed
        or spatial < 1
        or not (_exact(x) and _exact(weight))
        or x.dtype != weight.dtype
        or weight.dim() != x.dim()
        or x.shape[1] != weight.shape[1] * groups
        or (bias is not None and tuple(bias.shape) != (weight.shape[0],))
        or not len(stride) == len(padding) == len(dilation) == spatial
    ):
        return None
    out = []
    for size, k, s, p, d in zip(x.shape[2:], weight.shape[2:], stride, padding, dilation, strict=True):
        length = (size + 2 * p - d * (k - 1) - 1) // s + 1
        if length <= 0:
            return None  # torch's kernel says the input is too small
        out.append(length)
    return _contiguous((x.shape[0], weight.shape[0], *out), x)


def _addmm(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    bias, m1, m2 = args[:3]
    # m2 is most often a weight's transpose (a view): the output is contiguous whatever its strides.
    if not (_exact(m1) and isinstance(m2, torch.Tensor) and m2.is_meta and isinstance(bias, torch.Tensor)):
        return None
    if not bias.is_meta:
        return None
    if m1.dim() != 2 or m2.dim() != 2 or m1.shape[1] != m2.shape[0] or not m1.dtype == m2.dtype == bias.dtype:
        return None
    shape = (m1.shape[0], m2.shape[1])
    if tuple(bias.shape) not in (shape, shape[1:], (1, shape[1])):
        return None
    return _contiguous(shape, m1)


def _mean_dim(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    x = args[0]
    dims = args[1] if len(args) > 1 else kwargs.get("dim")
    keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
    if not _exact(x) or kwargs.get("dtype") is not None or len(args) > 3 or not dims or x.dim() == 0:
        return None
    wanted = {d % x.dim() for d in dims}
    if len(wanted) != len(dims):
        return None
    shape = [1 if i in wanted else size for i, size in enumerate(x.shape) if keepdim or i not in wanted]
    return _contiguous(shape, x)


def _batch_norm(training_index: int | None) -> FastKernel:
    """``training_index``: where the op's ``training`` flag is; None for the inference-only variant."""

    def kernel(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        x = args[0]
        training = training_index is not None and bool(args[training_index])
        # The saved statistics are per channel in training and placeholders in inference; low
        # precision inputs keep them in float32, as the real kernels do.
        stats_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        stats = torch.empty((x.shape[1] if training else 0,), dtype=stats_dtype, device=x.device)
        return _empty_like(x), stats, _empty_like(stats)

    return kernel


def _build() -> dict[OpOverload, FastKernel]:
    table: dict[OpOverload, FastKernel] = {}
    for name in _UNARY:
        table[getattr(aten, name).default] = _like_input
        inplace = getattr(aten, name + "_", None)
        if inplace is not None and "default" in overload_names(inplace):
            table[inplace.default] = _same_as_input
    table[aten.native_batch_norm.default] = _batch_norm(5)
    table[aten._native_batch_norm_legit.default] = _batch_norm(5)
    table[aten._native_batch_norm_legit_no_training.default] = _batch_norm(None)
    for name in ("add", "sub", "mul", "div"):
        table[getattr(aten, name).Tensor] = _binary
    table[aten.convolution.default] = _convolution
    table[aten.addmm.default] = _addmm
    table[aten.mean.dim] = _mean_dim
    return table


#: Kernels that take only the plain case and return None otherwise, for torch's own kernel to run.
_PLAIN_CASE_ONLY = frozenset({_binary, _convolution, _addmm, _mean_dim})


def _or_torchs(kernel: FastKernel, func: OpOverload, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    out = kernel(args, kwargs)
    return func(*args, **kwargs) if out is None else out


FAST_META: Mapping[OpOverload, FastKernel] = _build()


def fast_meta_kernel(func: OpOverload, args: tuple[Any, ...]) -> FastKernel | None:
    """The cheap kernel for ``func`` when its first argument is a meta tensor with a plain layout."""
    kernel = FAST_META.get(func)
    if kernel is None:
        return None
    first = args[0] if args else None
    if not isinstance(first, torch.Tensor) or not first.is_meta:
        return None
    if kernel in _PLAIN_CASE_ONLY:
        return functools.partial(_or_torchs, kernel, func)
    return kernel
