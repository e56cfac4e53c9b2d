"""The cache-aware roofline end to end: the access trace, bytes per level, the launch floor, the
bounds that name a level, the shares in the footer, and ``cache_model=False`` as the first design."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torchvision
from torch import nn

import layerprof
from layerprof.core.records import LayerRow, Verdict
from layerprof.errors import InvalidArgumentError
from layerprof.hardware.specs import CacheLevel, DeviceSpec
from layerprof.report.shares import share_kind, time_shares
from layerprof.roofline import model as roofline
from layerprof.walk.access_trace import StorageIds


def _toy(**overrides: object) -> DeviceSpec:
    fields: dict[str, object] = {
        "name": "toy",
        "full_name": "Toy accelerator",
        "kind": "gpu",
        "memory_bandwidth_bytes_per_s": 1e8,
        "matrix_peak_flops_per_s": {"float32": 1e7},
        "vector_peak_flops_per_s": {"float32": 1e7},
        "cache_levels": (CacheLevel("L2", 100, 1e9),),
        "memory_bytes": 2**20,
        "launch_overhead_s": 1e-6,
    }
    fields.update(overrides)
    return DeviceSpec(**fields)  # type: ignore[arg-type]


def _tiny() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8, bias=False), nn.ReLU())


# --- the trace ----------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_views_share_their_base_storage_identity(device: str) -> None:
    ids = StorageIds()
    base = torch.empty(4, 8, device=device)
    other = torch.empty(4, 8, device=device)
    assert ids.of(base) == ids.of(base.view(32)) == ids.of(base[1:]) == ids.of(base.t())
    assert ids.of(other) != ids.of(base)


def test_a_storage_an_op_makes_is_new_data_even_at_a_reused_address() -> None:
    ids = StorageIds()
    tensor = torch.empty(16, device="meta")
    before = ids.of(tensor)
    assert ids.of(tensor[2:]) == before
    made = ids.made(tensor)  # as if an op had just made it where a dead storage was
    assert made != before and ids.of(tensor) == made and ids.of(tensor.view(4, 4)) == made


def test_an_in_place_op_writes_the_storage_it_reads() -> None:
    from layerprof.walk.access_trace import AccessTrace
    from layerprof.walk.ledger import Acc
    from layerprof.walk.pricing import describe, price

    x = torch.empty(8, device="meta")
    trace, acc = AccessTrace(), Acc(0)
    for op, args in ((torch.ops.aten.relu_.default, (x,)), (torch.ops.aten.relu.default, (x,))):
        info = describe(op)
        out = op(*args)
        trace.record(acc, info, args, {}, out, price(info, args, {}, out))
    (read1, _, _), (write1, _, _), (read2, _, _), (write2, _, _) = trace.accesses
    assert read1 == write1 == read2 != write2  # relu_ writes x; relu makes a new tensor


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_large"])
def test_every_row_s_accesses_sum_to_its_bytes(name: str) -> None:
    model = torchvision.models.get_model(name, weights=None).eval()
    report = layerprof.analyze(model, input_size=(2, 3, 64, 64), target=["a100-40gb", "xeon-8480plus"])
    for row in report.layers:
        assert row.traffic is not None
        assert sum(n for _, n in row.traffic.reach_bytes) == row.bytes_total, row.name
        for verdict in row.roofline.values():
            assert sum(verdict.bytes_by_level.values()) == row.bytes_total, row.name
            assert verdict.kernels == row.traffic.kernels
    kernels = sum(r.traffic.kernels for r in report.layers if r.traffic is not None)
    assert report.total.roofline["a100-40gb"].kernels == kernels
    assert sum(report.total.roofline["a100-40gb"].bytes_by_level.values()) == report.total.bytes_total


def test_a_backward_step_is_traced_too() -> None:
    report = layerprof.analyze(_tiny(), input_size=(1, 4), target=_toy(), backward=True)
    backward = [r for r in report.layers if r.phase == "backward"]
    assert backward
    for row in report.layers:
        assert sum(row.roofline["toy"].bytes_by_level.values()) == row.bytes_total


# --- a tiny model by hand -----------------------------------------------------------------------


def test_tiny_model_by_hand_arithmetic() -> None:
    report = layerprof.analyze(_tiny(), input_size=(1, 4), target=_toy())
    linear, relu = report.layers
    # The pass (repeated): mm reads x (16 B) and w^T (128 B), writes y (32 B); relu reads y, writes z.
    # x: w, y, z (192 B) touched since its last read -> reach 208 > 100: DRAM; w likewise (80 + 128).
    # y is read right after it is written: reach 32 -> L2, write and read. z is next touched by the
    # next pass's write, x, w, y (176 B) in between: DRAM.
    assert dict(linear.roofline["toy"].bytes_by_level) == {"L2": 32, "DRAM": 16 + 128}
    assert dict(relu.roofline["toy"].bytes_by_level) == {"L2": 32, "DRAM": 32}
    # Linear: 2 * 4 * 8 = 64 matrix FLOPs / 1e7 = 6.4 us, over 144 B / 1e8 = 1.44 us, 32 B / 1e9 and
    # one kernel * 1 us: compute-bound, 6.4 us.
    assert linear.roofline["toy"].bound == "compute"
    assert linear.roofline["toy"].roofline_time_ms == pytest.approx(64 / 1e7 * 1e3)
    # ReLU: 8 FLOPs / 1e7 = 0.8 us, 32 B / 1e8 = 0.32 us, 32 B / 1e9; one kernel at 1 us binds it.
    assert relu.roofline["toy"].bound == "overhead"
    assert relu.roofline["toy"].roofline_time_ms == pytest.approx(1e-3)
    total = report.total.roofline["toy"]
    assert total.roofline_time_ms == pytest.approx(6.4e-3 + 1e-3)
    assert total.kernels == 2 and dict(total.bytes_by_level) == {"L2": 64, "DRAM": 176}
    assert total.bound == "compute"
    # 6.4 / 7.4 = 86% compute, 1 / 7.4 = 14% overhead.
    assert time_shares(report.layers, "toy") == pytest.approx(
        {"compute": 6.4 / 7.4, "DRAM": 0.0, "cache": 0.0, "overhead": 1 / 7.4}
    )
    footer = report.table().splitlines()
    shares = "compute 86%, DRAM 0%, cache 0%, overhead 14% (2 kernels)"
    assert f"predicted time on toy by what binds each row: {shares}" in footer


def test_tiny_model_dram_and_cache_bound() -> None:
    # Fast compute: the Linear's 144 DRAM bytes take 1.44 us: memory(DRAM). A slow L2 (1e7 B/s) makes
    # the ReLU's 32 L2 bytes take 3.2 us: memory(L2).
    spec = _toy(
        matrix_peak_flops_per_s={"float32": 1e12},
        vector_peak_flops_per_s={"float32": 1e12},
        cache_levels=(CacheLevel("L2", 100, 1e7),),
    )
    report = layerprof.analyze(_tiny(), input_size=(1, 4), target=spec)
    linear, relu = report.layers
    assert linear.roofline["toy"].bound == "memory(L2)"  # 32 / 1e7 = 3.2 us > 144 / 1e8 = 1.44 us
    assert relu.roofline["toy"].bound == "memory(L2)"
    assert relu.roofline["toy"].roofline_time_ms == pytest.approx(32 / 1e7 * 1e3)
    assert relu.roofline["toy"].memory_bound
    spec = _toy(matrix_peak_flops_per_s={"float32": 1e12}, vector_peak_flops_per_s={"float32": 1e12})
    linear, relu = layerprof.analyze(_tiny(), input_size=(1, 4), target=spec).layers
    assert linear.roofline["toy"].bound == "memory(DRAM)"
    assert linear.roofline["toy"].roofline_time_ms == pytest.approx(144 / 1e8 * 1e3)
    assert share_kind(linear.roofline["toy"]) == "DRAM" and share_kind(relu.roofline["toy"]) == "overhead"


def test_a_target_without_cache_levels_serves_every_byte_from_dram() -> None:
    spec = _toy(
        cache_levels=(),
        launch_overhead_s=None,
        matrix_peak_flops_per_s={"float32": 1e12},
        vector_peak_flops_per_s={"float32": 1e12},
    )
    report = layerprof.analyze(_tiny(), input_size=(1, 4), target=spec)
    for row in report.layers:
        verdict = row.roofline["toy"]
        assert dict(verdict.bytes_by_level) == {"DRAM": row.bytes_total}
        assert verdict.bound in ("compute", "memory(DRAM)")
    # No launch floor: the ReLU's 64 B / 1e8 = 0.64 us bind it, not its 8 FLOPs / 1e12.
    assert report.layers[1].roofline["toy"].bound == "memory(DRAM)"
    assert report.layers[1].roofline["toy"].roofline_time_ms == pytest.approx(64 / 1e8 * 1e3)


def test_an_in_place_relu_reads_what_the_conv_just_wrote_from_cache() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True)).eval()
    report = layerprof.analyze(model, input_size=(1, 3, 32, 32), target="a100-40gb")
    relu = report.row("1").roofline["a100-40gb"]
    # relu_ reads and writes the conv's output, 8 * 32 * 32 * 4 = 32 KiB, both from the 40 MB L2.
    assert dict(relu.bytes_by_level) == {"L2": 2 * 8 * 32 * 32 * 4, "DRAM": 0}


# --- cache_model=False is the first design -----------------------------------------------------


def _old_verdict(row: LayerRow, device: DeviceSpec) -> tuple[str, float]:
    """The DRAM-only verdict of main before issue 10, written out: (bound, roofline ms)."""
    allow = roofline.allow_tf32_for(device.kind, "conv" if row.kernel_size else "matmul")
    vector = row.flops - row.matrix_flops
    compute = 0.0
    if row.matrix_flops:
        compute += row.matrix_flops / device.peak_flops_per_s("float32", "matrix", allow_tf32=allow)
    if vector:
        compute += vector / device.peak_flops_per_s("float32", "vector")
    memory = row.bytes_total / device.memory_bandwidth_bytes_per_s
    if row.bytes_total == 0:
        bound = "compute" if row.flops > 0 else "memory"
    else:
        bound = "compute" if compute >= memory * (1 - 1e-9) else "memory"
    return bound, max(compute, memory) * 1e3


def test_cache_model_false_gives_the_dram_only_verdicts_of_before() -> None:
    model = torchvision.models.resnet18(weights=None).eval()
    targets = [
        layerprof.get_device("t4"),
        layerprof.get_device("a100-40gb"),
        layerprof.get_device("xeon-e5345"),
    ]
    report = layerprof.analyze(model, input_size=(1, 3, 64, 64), target=targets, cache_model=False)
    for row in report.layers:
        assert row.traffic is None
        for device in targets:
            verdict = row.roofline[device.name]
            bound, time_ms = _old_verdict(row, device)
            assert verdict.bound == bound, row.name
            assert verdict.roofline_time_ms == pytest.approx(time_ms, rel=1e-9), row.name
            assert dict(verdict.bytes_by_level) == {} and verdict.kernels == 0
    total = report.total.roofline["t4"]
    assert total.roofline_time_ms == pytest.approx(sum(_old_verdict(r, targets[0])[1] for r in report.layers))
    assert total.bound in ("compute", "memory") and not total.bytes_by_level
    assert "by what binds each row" not in report.table()


def test_the_cache_model_never_predicts_more_time_than_dram_only_plus_the_launch_floor() -> None:
    model = torchvision.models.resnet18(weights=None).eval()
    kwargs = {"input_size": (8, 3, 224, 224), "target": "a100-40gb"}
    cached = layerprof.analyze(model, **kwargs)  # type: ignore[arg-type]
    dram = layerprof.analyze(model, cache_model=False, **kwargs)  # type: ignore[arg-type]
    floor = layerprof.get_device("a100-40gb").launch_overhead_s or 0.0
    for new, old in zip(cached.layers, dram.layers, strict=True):
        assert new.name == old.name
        verdict = new.roofline["a100-40gb"]
        assert verdict.roofline_time_ms <= old.roofline_time_ms + 1e-12 or math.isclose(
            verdict.roofline_time_ms, verdict.kernels * floor * 1e3
        )
    # bn1 reads conv1's 8 * 64 * 112 * 112 * 4 = 25.7 MB output, which the 40 MB L2 still holds.
    assert cached.row("bn1").roofline["a100-40gb"].bound == "memory(L2)"
    assert dram.row("bn1").roofline["a100-40gb"].bound == "memory"


@pytest.mark.parametrize("value", [1, "no", None])
def test_cache_model_must_be_a_bool(value: object) -> None:
    with pytest.raises(InvalidArgumentError, match=f"cache_model must be True or False, got {value!r}"):
        layerprof.analyze(_tiny(), input_size=(1, 4), cache_model=value)  # type: ignore[arg-type]


def test_profile_profiler_and_watch_take_cache_model(one_torch_thread: None) -> None:
    model, x = _tiny(), torch.randn(1, 4)
    spec = _toy(measured=True)
    for cache_model in (True, False):
        reports = [layerprof.profile(model, x, target=spec, warmup=1, repeat=2, cache_model=cache_model)]
        with layerprof.Profiler(model, target=spec, cache_model=cache_model) as prof:
            model(x)
        reports.append(prof.report())
        seen: list[layerprof.Report] = []
        watcher = layerprof.watch(
            model, every=1, target=spec, backward=False, sink=seen.append, cache_model=cache_model
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(3):
                model(x)
        watcher.remove()
        reports += seen[:1]
        assert len(reports) == 3
        for report in reports:
            bounds = {r.roofline["toy"].bound for r in report.layers}
            if cache_model:
                assert bounds <= {"compute", "overhead", "memory(DRAM)", "memory(L2)"}
                assert all(r.roofline["toy"].kernels == 1 for r in report.layers)
            else:
                assert bounds <= {"compute", "memory"}


# --- the verdict itself -------------------------------------------------------------------------


def test_verdict_names_the_largest_term() -> None:
    spec = _toy(cache_levels=(CacheLevel("L1", 10, 4e9), CacheLevel("L2", 100, 1e9)))

    def bound(by_level: dict[str, int], flops: int = 0, kernels: int = 0) -> Verdict:
        return roofline.verdict(
            "toy", spec, flops=flops, matrix_flops=flops, bytes_moved=sum(by_level.values()),
            dtype="float32", bytes_by_level=by_level, kernels=kernels,
        )  # fmt: skip

    # 4000 B from L1 at 4e9 = 1 us; 1000 from L2 at 1e9 = 1 us; 100 from DRAM at 1e8 = 1 us: a tie
    # goes to the slowest level, DRAM.
    assert bound({"L1": 4000, "L2": 1000, "DRAM": 100}).bound == "memory(DRAM)"
    assert bound({"L1": 4001, "L2": 1000, "DRAM": 100}).bound == "memory(L1)"
    assert bound({"L1": 0, "L2": 2000, "DRAM": 100}).roofline_time_ms == pytest.approx(2e-3)
    assert bound({"DRAM": 100}, flops=10).bound == "compute"  # 10 / 1e7 = 1 us, ties go to compute
    assert bound({"DRAM": 100}, kernels=2).bound == "overhead"  # 2 us of launch floor
    assert bound({"DRAM": 0}).bound == "memory(DRAM)"  # nothing at all
    with pytest.raises(InvalidArgumentError, match="has no memory level 'L3'"):
        bound({"L3": 5})
    with pytest.raises(InvalidArgumentError, match="bytes_by_level sums to 5, not to bytes_moved = 6"):
        roofline.verdict(
            "toy", spec, flops=0, matrix_flops=0, bytes_moved=6, dtype="float32", bytes_by_level={"DRAM": 5}
        )
    with pytest.raises(InvalidArgumentError, match="kernels must be an int >= 0, got -1"):
        bound({"DRAM": 5}, kernels=-1)


def test_rolled_up_rows_sum_bytes_by_level_kernels_and_times() -> None:
    model = torchvision.models.resnet18(weights=None).eval()
    report = layerprof.analyze(model, input_size=(1, 3, 64, 64), target="a100-40gb")
    from layerprof.report.rollup import roll_up

    rolled = roll_up(list(report.layers), 1, report.targets, report.module_kinds)
    for group in rolled:
        members = [r for r in report.layers if r.name == group.name or r.name.startswith(group.name + ".")]
        verdict = group.roofline["a100-40gb"]
        expected: dict[str, int] = {}
        for member in members:
            for level, nbytes in member.roofline["a100-40gb"].bytes_by_level.items():
                expected[level] = expected.get(level, 0) + nbytes
        assert dict(verdict.bytes_by_level) == expected, group.name
        assert verdict.kernels == sum(m.roofline["a100-40gb"].kernels for m in members)
        assert verdict.roofline_time_ms == pytest.approx(
            sum(m.roofline["a100-40gb"].roofline_time_ms for m in members)
        )
    layer1 = next(g for g in rolled if g.name == "layer1").roofline["a100-40gb"]
    by_bound: dict[str, float] = {}
    for member in (r for r in report.layers if r.name.startswith("layer1.")):
        verdict = member.roofline["a100-40gb"]
        by_bound[verdict.bound] = by_bound.get(verdict.bound, 0.0) + verdict.roofline_time_ms
    assert layer1.bound == max(by_bound, key=lambda b: by_bound[b])  # what binds most of its time
