"""A scaling prediction as text: the assumptions, the table, and the answer in one paragraph.

Every figure in the paragraph comes from the prediction's rows; the words only choose between the
cases (the all-reduce hidden or not, the step fitting in memory or not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tabulate import tabulate, tabulate_formats

from layerprof.core.dtypes import parse_dtype
from layerprof.core.units import binary_bytes
from layerprof.errors import InvalidArgumentError

if TYPE_CHECKING:
    from layerprof.analysis.scaling_types import ScalingPrediction, ScalingRow

__all__ = ["EXPOSED_SHARE", "paragraph", "prediction_table"]

#: The all-reduce counts as "no longer hidden" once its exposed part is this share of the step.
EXPOSED_SHARE = 0.01


def prediction_table(prediction: ScalingPrediction, fmt: str = "simple") -> str:
    if fmt not in tabulate_formats:
        raise InvalidArgumentError(
            f"unknown table format {fmt!r}; tabulate knows {', '.join(tabulate_formats)}"
        )
    headers = [
        "GPUs", "batch/GPU", "compute ms", "all-reduce ms", "exposed ms", "step ms", "speedup",
        "efficiency", "samples/s", "time vs 1 GPU", "buckets", "peak/GPU",
    ]  # fmt: skip
    body = [
        [
            str(r.gpus),
            "-" if r.batch_per_gpu is None else str(r.batch_per_gpu),
            f"{r.compute_ms:.3f}",
            f"{r.allreduce_ms:.3f}",
            f"{r.exposed_ms:.3f}",
            f"{r.step_ms:.3f}",
            f"{r.speedup:.2f}x",
            f"{r.efficiency:.0%}",
            "-" if r.samples_per_s is None else f"{r.samples_per_s:,.0f}",
            f"{r.time_fraction:.1%}",
            str(len(r.buckets)),
            _peak_cell(r, prediction.capacity_bytes),
        ]
        for r in prediction.rows
    ]
    table = tabulate(body, headers=headers, tablefmt=fmt, disable_numparse=True)
    footer = []
    if prediction.backward_estimated:
        footer.append("The report has no backward rows; count them with analyze(..., backward=True).")
    return "\n".join([*_header(prediction), table, *footer, "", paragraph(prediction)])


def _peak_cell(row: ScalingRow, capacity: int | None) -> str:
    if row.peak_bytes is None:
        return "-"
    text = binary_bytes(row.peak_bytes)
    return text if capacity is None or row.peak_bytes <= capacity else f"{text} (too big)"


def _header(p: ScalingPrediction) -> list[str]:
    link = p.link
    if p.global_batch is not None:
        batch = f"global batch {p.global_batch} split over the GPUs"
    else:
        batch = ("batch ?" if p.batch_per_gpu is None else f"batch {p.batch_per_gpu}") + " per GPU"
    backward = f"backward {p.backward_ms:.3f}" + (" (estimated: 2 x forward)" if p.backward_estimated else "")
    one = min(p.rows, key=lambda r: r.gpus)
    optimizer = "no optimizer step" if p.optimizer is None else f"{p.optimizer} step {one.optimizer_ms:.3f}"
    if p.overlap:
        first = "1 MiB first, " if p.bucket_mb == 25.0 else ""
        comm = (
            f"all-reduced in DDP's buckets ({first}{p.bucket_mb:g} MiB each, in the order the backward "
            "rows make the gradients), each as soon as its gradients are ready"
        )
    else:
        comm = "one ring all-reduce after the whole backward"
    return [
        f"Data-parallel training of {p.model_name or 'model'} on {p.target} over {link.name} "
        f"({link.full_name}: {link.bandwidth_bytes_per_s / 1e9:.4g} GB/s per direction, "
        f"{link.latency_s * 1e6:.3g} us per ring step), {batch}.",
        f"Compute per step on one GPU {one.compute_ms:.3f} ms (forward {p.forward_ms:.3f} + {backward} + "
        f"{optimizer}; roofline lower bound). Gradients {p.params:,} params x "
        f"{parse_dtype(p.grad_dtype).itemsize} B ({p.grad_dtype}) = {p.gradient_bytes / 1e6:.4g} MB, {comm}.",
    ]


def paragraph(p: ScalingPrediction) -> str:
    """The answer in plain words: how far more GPUs cut the step, where the all-reduce stops being
    hidden, and what one GPU's memory says."""
    rows = sorted(p.rows, key=lambda r: r.gpus)
    low, high = rows[0], rows[-1]
    gpus = f"{p.target} GPUs"
    sentences = []
    if high.gpus == low.gpus:
        sentences.append(f"On {high.gpus} {gpus} over {p.link.name} a step takes {high.step_ms:.3g} ms.")
    elif p.global_batch is not None:
        sentences.append(
            f"Splitting a global batch of {p.global_batch} over {low.gpus} to {high.gpus} {gpus} over "
            f"{p.link.name} cuts a step from {low.step_ms:.3g} to {high.step_ms:.3g} ms "
            f"({high.speedup / low.speedup:.2f}x; {high.efficiency:.0%} efficiency on {high.gpus})."
        )
    else:
        sentences.append(
            f"Going from {low.gpus} to {high.gpus} {gpus} over {p.link.name} multiplies "
            f"throughput by {high.speedup / low.speedup:.2f} ({high.efficiency:.0%} efficiency on "
            f"{high.gpus}): a training run over a fixed data set takes "
            f"{high.time_fraction / low.time_fraction:.1%} of its time on {low.gpus}, "
            f"each step {low.step_ms:.3g} -> {high.step_ms:.3g} ms."
        )
    several = [r for r in rows if r.gpus > 1]
    exposed = [r for r in several if r.exposed_ms > EXPOSED_SHARE * r.step_ms]
    if several and not exposed:
        sentences.append(
            f"The all-reduce ({high.allreduce_ms:.3g} ms on {high.gpus} GPUs) stays hidden behind the "
            f"{high.backward_ms:.3g} ms backward."
            if p.overlap
            else f"The all-reduce after the backward costs at most {high.exposed_ms:.3g} ms."
        )
    elif exposed:
        first = exposed[0]
        where = f"from {first.gpus} GPUs on" if first is not several[0] else "on every GPU count"
        sentences.append(
            f"{where[0].upper()}{where[1:]} the all-reduce is no longer hidden: on {first.gpus} GPUs "
            f"{first.exposed_ms:.3g} ms of the {first.step_ms:.3g} ms step waits for it"
            + (
                f", on {high.gpus} {high.exposed_ms:.3g} ms of {high.step_ms:.3g} ms."
                if high is not first
                else "."
            )
        )
    sentences.extend(_memory_sentences(p, low, high))
    return " ".join(sentences)


def _memory_sentences(p: ScalingPrediction, low: ScalingRow, high: ScalingRow) -> list[str]:
    row = high
    if row.peak_bytes is None:
        return []
    of = "" if p.capacity_bytes is None else f" of {binary_bytes(p.capacity_bytes)}"
    ddp = " (DDP's bucket buffers included)" if row.gpus > 1 else ""
    batch = "?" if row.batch_per_gpu is None else str(row.batch_per_gpu)
    text = f"At batch {batch} per GPU the step needs {binary_bytes(row.peak_bytes)}{of} on each GPU{ddp}"
    if p.capacity_bytes is not None:
        text += "; it fits." if row.peak_bytes <= p.capacity_bytes else "; it does NOT fit."
    else:
        text += "."
    out = [text]
    if p.global_batch is not None and low.peak_bytes is not None and low is not high:
        out.append(
            f"On {low.gpus} GPU{'' if low.gpus == 1 else 's'} (batch {low.batch_per_gpu}) it needs "
            f"{binary_bytes(low.peak_bytes)}."
        )
    if p.max_batch_per_gpu is not None:
        out.append(f"The largest per-GPU batch that fits is {p.max_batch_per_gpu}.")
    return out
