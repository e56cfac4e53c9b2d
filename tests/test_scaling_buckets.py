"""DDP's buckets and their per-bucket overlap with the backward, against hand arithmetic and torch.

The two-bucket model is ``Linear(256, 256) -> ReLU -> Linear(256, 128)``: gradients (float32)
``0.weight`` 262,144 B, ``0.bias`` 1,024 B, ``2.weight`` 131,072 B, ``2.bias`` 512 B. The backward
runs row ``2`` first, then ``1`` (ReLU), then ``0``; with a 0.1 MiB cap (104,857 B) DDP's buckets
are ``[2.bias, 2.weight]`` (131,584 B: the weight crosses the cap) and ``[0.bias, 0.weight]``
(263,168 B). On 2 GPUs a ring all-reduce of b bytes takes ``2 (2 - 1) / 2 x b / bandwidth + 2 x
latency``: bucket 0 starts when row 2's backward ends, bucket 1 when the backward ends and bucket
0's all-reduce is over.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import layerprof
from layerprof.analysis.buckets import (
    FIRST_BUCKET_BYTES,
    GradTensor,
    assign_buckets,
    gradient_tensors,
    schedule_buckets,
)
from layerprof.analysis.scaling import predict_scaling
from layerprof.errors import InvalidArgumentError
from layerprof.hardware.links import LinkSpec

MIB = 1024 * 1024


def two_linear() -> nn.Module:
    return nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 128)).train()


@pytest.fixture(scope="module")
def counted() -> tuple[nn.Module, layerprof.Report]:
    model = two_linear()
    return model, layerprof.analyze(model, input_size=(32, 256), target="h100-sxm", backward=True)


def _times(report: layerprof.Report) -> tuple[float, dict[str, float]]:
    forward = sum(r.roofline["h100-sxm"].roofline_time_ms for r in report.layers if r.phase == "forward")
    backward = {
        r.name: r.roofline["h100-sxm"].roofline_time_ms for r in report.layers if r.phase == "backward"
    }
    return forward, backward


def test_two_buckets_by_hand(counted: tuple[nn.Module, layerprof.Report]) -> None:
    model, report = counted
    forward, back = _times(report)
    assert [r.name for r in report.layers if r.phase == "backward"] == ["2", "1", "0"]
    t2, t1, t0 = back["2"], back["1"], back["0"]
    backward = t2 + t1 + t0
    bucket0, bucket1 = 512 + 131_072, 1_024 + 262_144
    for slow in (True, False):
        # Bucket 0's data time is 2x (slow: it runs past the backward) or 0.5x rows 1 + 0's time.
        data0_ms = (2.0 if slow else 0.5) * (t1 + t0)
        bandwidth = bucket0 / (data0_ms / 1e3)
        latency = 1e-6
        link = LinkSpec("toy", "Toy", bandwidth_bytes_per_s=bandwidth, latency_s=latency)
        prediction = predict_scaling(report, gpus=(1, 2), link=link, model=model, bucket_mb=0.1)
        row = prediction.row(2)
        assert [(b.tensors, b.nbytes) for b in row.buckets] == [(2, bucket0), (2, bucket1)]
        # 2 (N - 1) / N = 1 on 2 GPUs; 2 (N - 1) = 2 latencies
        ar0 = bucket0 / bandwidth * 1e3 + 2 * latency * 1e3
        ar1 = bucket1 / bandwidth * 1e3 + 2 * latency * 1e3
        start0 = t2
        end0 = start0 + ar0
        start1 = max(backward, end0)
        end1 = start1 + ar1
        first, second = row.buckets
        assert first.start_ms == pytest.approx(start0) and first.end_ms == pytest.approx(end0)
        assert second.ready_ms == pytest.approx(backward)
        assert second.start_ms == pytest.approx(start1) and second.end_ms == pytest.approx(end1)
        assert (second.start_ms > backward) is slow
        assert row.step_ms == pytest.approx(forward + max(backward, end1))
        assert row.exposed_ms == pytest.approx(end1 - backward)
        assert row.allreduce_ms == pytest.approx(ar0 + ar1)
        assert row.speedup == pytest.approx(2 * (forward + backward) / (forward + end1))
        # One all-reduce of every gradient after the backward: 1 latency pair, no overlap.
        after = predict_scaling(report, gpus=(2,), link=link, model=model, overlap=False).row(2)
        total = bucket0 + bucket1
        assert prediction.gradient_bytes == total
        assert after.step_ms == pytest.approx(
            forward + backward + total / bandwidth * 1e3 + 2 * latency * 1e3
        )


def test_without_the_model_each_row_is_one_tensor(counted: tuple[nn.Module, layerprof.Report]) -> None:
    model, report = counted
    _, back = _times(report)
    link = LinkSpec("toy", "Toy", bandwidth_bytes_per_s=1e9, latency_s=0.0)
    rows_only = predict_scaling(report, gpus=(2,), link=link, bucket_mb=0.1).row(2)
    per_tensor = predict_scaling(report, gpus=(2,), link=link, bucket_mb=0.1, model=model).row(2)
    # Row 2's 32,896 params x 4 B = 131,584 B, row 0's 65,792 x 4 B = 263,168 B: the same two buckets.
    assert (
        [b.nbytes for b in rows_only.buckets] == [b.nbytes for b in per_tensor.buckets] == [131_584, 263_168]
    )
    assert rows_only.buckets[0].ready_ms == pytest.approx(back["2"])
    assert rows_only.step_ms == pytest.approx(per_tensor.step_ms)


def test_default_cap_makes_a_1_mib_first_bucket_then_25_mib() -> None:
    sizes = [0.6, 0.6, 10, 20, 5]  # MiB
    tensors = [GradTensor(str(i), int(s * MIB), 0.0) for i, s in enumerate(sizes)]
    buckets = assign_buckets(tensors)
    # 0.6 + 0.6 >= 1 MiB closes the first; 10 + 20 >= 25 MiB the second; 5 is left.
    assert [[t.name for t in b] for b in buckets] == [["0", "1"], ["2", "3"], ["4"]]
    assert FIRST_BUCKET_BYTES == dist._DEFAULT_FIRST_BUCKET_BYTES == MIB
    # A cap the user sets applies to the first bucket too (DDP's first_bucket_bytes_cap).
    assert [[t.name for t in b] for b in assign_buckets(tensors, 11)] == [["0", "1", "2"], ["3"], ["4"]]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 3_000_000), min_size=1, max_size=12),
    st.sampled_from([0.5, 1.0, 2.0, 25.0]),
)
def test_bucket_assignment_matches_torch(sizes: list[int], cap_mb: float) -> None:
    """torch's own ``_compute_bucket_assignment_by_size`` with DDP's limits for that cap."""
    tensors = [GradTensor(str(i), 4 * n, 0.0) for i, n in enumerate(sizes)]
    ours = [[int(t.name) for t in b] for b in assign_buckets(tensors, cap_mb)]
    cap = int(cap_mb * MIB)
    limits = [dist._DEFAULT_FIRST_BUCKET_BYTES, cap] if cap_mb == 25.0 else [cap]
    flat = [torch.empty(n) for n in sizes]
    theirs, _ = dist._compute_bucket_assignment_by_size(
        flat, limits, [False] * len(flat), list(range(len(flat)))
    )
    assert ours == [list(b) for b in theirs]


def test_buckets_wait_for_the_link_and_for_earlier_buckets() -> None:
    # Bucket 1 is ready at 1 ms but the link is busy with bucket 0 until 5 ms.
    a, b = GradTensor("a", 400, 2.0), GradTensor("b", 100, 1.0)
    times = schedule_buckets([[a], [b]], lambda nbytes: nbytes / 100)
    assert [(t.ready_ms, t.start_ms, t.end_ms) for t in times] == [(2.0, 2.0, 6.0), (2.0, 6.0, 7.0)]


def test_ready_order_follows_the_backward_rows() -> None:
    model = two_linear()
    tensors = gradient_tensors([], [("2", 1.0), ("1", 0.5), ("0", 2.0)], 4, model)
    assert [(t.name, t.nbytes, t.ready_ms) for t in tensors] == [
        ("2.bias", 512, 1.0),
        ("2.weight", 131_072, 1.0),
        ("0.bias", 1_024, 3.5),
        ("0.weight", 262_144, 3.5),
    ]


@pytest.mark.parametrize("bucket_mb", [0, -1.0, float("nan"), "25", True])
def test_bad_bucket_sizes_are_named(counted: tuple[nn.Module, layerprof.Report], bucket_mb: object) -> None:
    with pytest.raises(InvalidArgumentError, match="bucket_mb"):
        predict_scaling(counted[1], link="nvlink4", bucket_mb=bucket_mb)  # type: ignore[arg-type]
