"""Backward ops: the gradients of convolution, normalisation, activations, pooling, attention.

Convolution: the input gradient and the weight gradient each cost as many MACs as the forward
(groups kept: a depthwise layer's weight gradient is as cheap as its forward; torch's own counter
ignores groups there), 2 FLOPs per MAC; the bias gradient is a sum of the output gradient (one add
per element). Matrix products arrive as mm/bmm and are counted by their own formulas.

Per-element constants (per element of the tensor named):

===========================  =====  ==========================================================
op                           FLOPs  form, per element of the input
===========================  =====  ==========================================================
batch/layer/group norm       9      weight/bias grads: x_hat (2), multiply-accumulate (2),
(training)                          accumulate (1); input grad: 4 (two scaled subtractions)
batch norm (inference)       6      weight/bias grads as above (5); input grad: one multiply
relu/threshold               1      select
leaky_relu, hardtanh,        2      compare, multiply / select
hardsigmoid
sigmoid, tanh                3      g * y * (1 - y) / g * (1 - y * y)
hardswish                    4      compare, affine, multiply
elu, softplus                4      exp, compare, multiply, add
silu                         7      sigmoid (4), 1 + x (1 - s), multiply (2 more)
gelu                         8      exp, erf, multiplies and adds
mish                         10     softplus, tanh, their derivatives
softmax, log_softmax         4      per element: multiply, accumulate, subtract, multiply
dropout                      2      mask, scale
===========================  =====  ==========================================================

Pooling: max pooling's gradient is scattered through the saved indices, one add per output-gradient
element; average pooling spreads each output-gradient element over its ``K``-element window (``K``
FLOPs); interpolation costs as much per output-gradient element as the forward. Attention's backward
is four matrix products (dV, dP, dQ, dK: twice the forward's matrix FLOPs) plus the softmax gradient.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from layerprof.formulas.activation import per_element
from layerprof.formulas.attention import attention_flops
from layerprof.formulas.interpolate import interpolation_flops_per_element
from layerprof.formulas.pooling import adaptive_window_elements
from layerprof.formulas.registry import REGISTRY, OpFlops, numel, register

aten = torch.ops.aten

NORM_BACKWARD_TRAINING_FLOPS_PER_ELEMENT = 9
NORM_BACKWARD_INFERENCE_FLOPS_PER_ELEMENT = 6
SOFTMAX_BACKWARD_FLOPS_PER_ELEMENT = 4


def conv_backward_flops(
    *, macs: int, grad_output_elements: int, input_grad: bool, weight_grad: bool, bias_grad: bool
) -> OpFlops:
    matrix = (2 * macs if input_grad else 0) + (2 * macs if weight_grad else 0)
    return OpFlops(matrix=matrix, vector=grad_output_elements if bias_grad else 0)


@register(aten.convolution_backward)
def convolution_backward(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    # (grad_output, input, weight, bias_sizes, stride, padding, dilation, transposed, output_padding,
    #  groups, output_mask). Forward MACs = N * prod(spatial) * numel(weight), where spatial is the
    # output's for a convolution and the input's for a transposed one: groups are in weight's shape.
    grad_output, x, weight = args[0], args[1], args[2]
    transposed = bool(args[7])
    mask = args[10]
    spatial = x.shape[2:] if transposed else grad_output.shape[2:]
    macs = int(x.shape[0]) * numel(spatial) * int(weight.numel())
    cost = conv_backward_flops(
        macs=macs,
        grad_output_elements=int(grad_output.numel()),
        input_grad=bool(mask[0]),
        weight_grad=bool(mask[1]),
        bias_grad=bool(mask[2]),
    )
    return OpFlops(
        matrix=cost.matrix, vector=cost.vector, kernel_size=tuple(int(k) for k in weight.shape[2:])
    )


def _norm_backward(elements: int, training: bool) -> OpFlops:
    per = NORM_BACKWARD_TRAINING_FLOPS_PER_ELEMENT if training else NORM_BACKWARD_INFERENCE_FLOPS_PER_ELEMENT
    return OpFlops(vector=per * elements)


@register(aten.native_batch_norm_backward)
def batch_norm_backward(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    # (grad_out, input, weight, running_mean, running_var, save_mean, save_invstd, train, eps, mask)
    return _norm_backward(int(args[1].numel()), bool(args[7]))


@register(aten.batch_norm_backward)
def batch_norm_backward_v2(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    # (grad_out, input, weight, running_mean, running_var, save_mean, save_var, update, eps, mask, reserve)
    return _norm_backward(int(args[1].numel()), bool(args[7]))


@register(aten.cudnn_batch_norm_backward, aten.miopen_batch_norm_backward)
def backend_batch_norm_backward(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return _norm_backward(int(args[0].numel()), True)


@register(aten.native_layer_norm_backward, aten.native_group_norm_backward)
def layer_norm_backward(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return _norm_backward(int(args[1].numel()), True)


_ACTIVATION_BACKWARD = {
    "threshold_backward": 1,
    "leaky_relu_backward": 2,
    "hardtanh_backward": 2,
    "hardsigmoid_backward": 2,
    "sigmoid_backward": 3,
    "tanh_backward": 3,
    "hardswish_backward": 4,
    "elu_backward": 4,
    "softplus_backward": 4,
    "silu_backward": 7,
    "gelu_backward": 8,
    "mish_backward": 10,
    "native_dropout_backward": 2,
}
for _name, _cost in _ACTIVATION_BACKWARD.items():
    REGISTRY.add_all([getattr(aten, _name)], per_element(_cost))
REGISTRY.add_all(
    [aten._softmax_backward_data, aten._log_softmax_backward_data],
    per_element(SOFTMAX_BACKWARD_FLOPS_PER_ELEMENT),
)


@register(
    aten.max_pool2d_with_indices_backward,
    aten.max_pool3d_with_indices_backward,
    aten.adaptive_max_pool2d_backward,
    aten.adaptive_max_pool3d_backward,
    aten.upsample_nearest1d_backward,
    aten.upsample_nearest2d_backward,
    aten.upsample_nearest3d_backward,
    aten.embedding_dense_backward,
)
def scatter_backward(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    # One add per output-gradient element, scattered into the input gradient.
    return OpFlops(vector=int(args[0].numel()))


def _avg_pool_backward(rank: int) -> Any:
    def formula(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
        kernel = args[2]
        sizes = (kernel,) * rank if isinstance(kernel, int) else tuple(kernel)
        sizes = sizes * rank if len(sizes) == 1 else sizes
        return OpFlops(vector=int(args[0].numel()) * numel(sizes), kernel_size=tuple(int(k) for k in sizes))

    return formula


register(aten.avg_pool2d_backward)(_avg_pool_backward(2))
register(aten.avg_pool3d_backward)(_avg_pool_backward(3))


def _adaptive_avg_backward(rank: int) -> Any:
    def formula(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
        grad_output, x = args[0], args[1]
        elements = numel(grad_output.shape[:-rank])
        for size_in, size_out in zip(x.shape[-rank:], grad_output.shape[-rank:], strict=True):
            elements *= adaptive_window_elements(int(size_in), int(size_out))
        return OpFlops(vector=elements)

    return formula


register(aten._adaptive_avg_pool2d_backward)(_adaptive_avg_backward(2))
register(aten._adaptive_avg_pool3d_backward)(_adaptive_avg_backward(3))


def _per_grad_output_element(flops_per_element: int) -> Any:
    # The gradient is as large as the forward's output (the upsampled tensor), not as the op's output
    # (the input gradient): price each of its elements as the forward prices each output element.
    def formula(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
        return OpFlops(vector=flops_per_element * int(args[0].numel()))

    return formula


for _op, _taps in (
    (aten.upsample_linear1d_backward, 2),
    (aten.upsample_bilinear2d_backward, 4),
    (aten.upsample_trilinear3d_backward, 8),
    (aten.upsample_bicubic2d_backward, 16),
):
    REGISTRY.add_all([_op], _per_grad_output_element(interpolation_flops_per_element(_taps)))


def _attention_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> OpFlops:
    *lead, q_len, head_dim = q.shape
    batch_heads = numel(lead)
    forward = attention_flops(batch_heads, int(q_len), int(k.shape[-2]), int(head_dim), int(v.shape[-1]))
    scores = batch_heads * int(q_len) * int(k.shape[-2])
    return OpFlops(
        matrix=2 * forward.matrix,
        vector=(SOFTMAX_BACKWARD_FLOPS_PER_ELEMENT + 1) * scores,  # softmax gradient and the scale
    )


@register(
    aten._scaled_dot_product_flash_attention_for_cpu_backward,
    aten._scaled_dot_product_flash_attention_backward,
    aten._scaled_dot_product_efficient_attention_backward,
    aten._scaled_dot_product_cudnn_attention_backward,
)
def sdpa_backward(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    # (grad_out, query, key, value, ...) in (..., L, E) layout.
    return _attention_backward(args[1], args[2], args[3])
