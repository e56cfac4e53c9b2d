"""layerprof.compare_devices: one bias-free Linear on hand-made devices, checked by hand arithmetic;
the ranking against figures computed here from analyze's report per target; prices; the paragraph."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from torch import nn

import layerprof
from layerprof import DeviceSpec
from layerprof.errors import InvalidArgumentError, UnknownDeviceError

N = 1024  # Linear(N, N, bias=False) on (B, N) float32 inputs
MIB = 2**20


def device(name: str, *, bw: float, flops: float, memory: int | None, price: float | None = None,
           hourly: float | None = None) -> DeviceSpec:  # fmt: skip
    return DeviceSpec(
        name=name, full_name=name.upper(), kind="gpu", memory_bandwidth_bytes_per_s=bw,
        matrix_peak_flops_per_s={"float32": flops}, vector_peak_flops_per_s={"float32": min(flops, 1e12)},
        memory_bytes=memory, price_usd=price, price_per_hour_usd=hourly,
    )  # fmt: skip


# No cache levels and no launch floor: the step takes max(FLOPs / peak, bytes / bandwidth).
SLOW_BW = device("slowbw", bw=1e11, flops=1e14, memory=64 * MIB, price=2000.0, hourly=1.0)
SLOW_FLOPS = device("slowflops", bw=1e12, flops=1e12, memory=16 * MIB, price=500.0, hourly=0.5)
NO_PRICE = device("noprice", bw=5e11, flops=5e13, memory=None)
DEVICES = [SLOW_BW, SLOW_FLOPS, NO_PRICE]


def hand_time_ms(batch: int, spec: DeviceSpec) -> float:
    flops = 2 * batch * N * N
    moved = 4 * (batch * N + N * N + batch * N)  # read x and W, write y (float32)
    return (
        max(flops / spec.matrix_peak_flops_per_s["float32"], moved / spec.memory_bandwidth_bytes_per_s) * 1e3
    )


def hand_peak(batch: int) -> int:
    return 4 * N * N + 2 * 4 * batch * N  # weights + the input + the output, all held at once


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(N, N, bias=False)


@pytest.mark.parametrize("batch", [1, 8, 1000])
def test_times_throughput_and_fits_match_hand_arithmetic(batch: int) -> None:
    result = layerprof.compare_devices(model(), DEVICES, input_size=(batch, N))
    for spec in DEVICES:
        row = result.row(spec.name)
        assert row.batch == batch
        assert row.time_ms == pytest.approx(hand_time_ms(batch, spec), rel=1e-9)
        assert row.images_per_s == pytest.approx(batch / (hand_time_ms(batch, spec) / 1e3), rel=1e-9)
        assert row.peak_bytes == hand_peak(batch)
        expected_fits = None if spec.memory_bytes is None else hand_peak(batch) <= spec.memory_bytes
        assert row.fits is expected_fits
    # batch 1000 on slowflops: 2.097e9 FLOPs / 1e12 = 2.1 ms of compute vs 12.4 MB / 1e12 = 0.012 ms
    assert result.row("slowflops").bound == ("compute" if batch >= 8 else "memory(DRAM)")


def test_fits_turns_false_one_byte_short() -> None:
    tight = dataclasses.replace(SLOW_BW, name="tight", memory_bytes=hand_peak(8) - 1)
    result = layerprof.compare_devices(model(), [tight, SLOW_BW], input_size=(8, N))
    assert result.row("tight").fits is False and result.row("slowbw").fits is True
    assert "1 of 2 cannot hold this step in memory (tight)" in result.answer


def test_max_batch_is_the_hand_bound_and_rows_run_at_it() -> None:
    result = layerprof.compare_devices(model(), DEVICES, input_size=(1, N), max_batch=True)
    # peak(B) = 4 N^2 + 8 N B <= capacity  ->  B <= (capacity - 4 N^2) / (8 N)
    for spec in (SLOW_BW, SLOW_FLOPS):
        assert spec.memory_bytes is not None
        largest = (spec.memory_bytes - 4 * N * N) // (8 * N)
        row = result.row(spec.name)
        assert row.max_batch == largest  # 7680 and 1536
        assert row.batch == largest
        assert row.time_ms == pytest.approx(hand_time_ms(largest, spec), rel=1e-9)
        assert row.fits is True
    assert result.row("noprice").max_batch is None and result.row("noprice").batch == 1


def test_price_performance_by_hand_and_missing_prices_are_none() -> None:
    result = layerprof.compare_devices(model(), DEVICES, input_size=(8, N))
    row = result.row("slowflops")
    per_s = 8 / (hand_time_ms(8, SLOW_FLOPS) / 1e3)
    assert row.images_per_s_per_kusd == pytest.approx(per_s / 0.5, rel=1e-9)  # $500 = 0.5 k$
    assert row.usd_per_million_images == pytest.approx(0.5 * 1e6 / (per_s * 3600), rel=1e-9)
    assert row.hourly_price_from == "table"
    missing = result.row("noprice")
    assert missing.price_usd is None and missing.images_per_s_per_kusd is None
    assert missing.price_per_hour_usd is None and missing.usd_per_million_images is None
    document = json.loads(json.dumps(result.to_dict()))
    as_json = next(r for r in document["rows"] if r["device"] == "noprice")
    assert as_json["usd_per_million_images"] is None and as_json["images_per_s_per_kusd"] is None


def test_given_hourly_prices_replace_the_tables() -> None:
    result = layerprof.compare_devices(
        model(), DEVICES, input_size=(8, N), price_per_hour={"SLOWFLOPS": 2.0, "noprice": 0.25}
    )
    per_s = 8 / (hand_time_ms(8, SLOW_FLOPS) / 1e3)
    row = result.row("slowflops")
    assert row.price_per_hour_usd == 2.0 and row.hourly_price_from == "given"
    assert row.usd_per_million_images == pytest.approx(2.0 * 1e6 / (per_s * 3600), rel=1e-9)
    assert result.row("noprice").price_per_hour_usd == 0.25
    assert result.row("slowbw").hourly_price_from == "table"


@pytest.mark.parametrize("sort", ["time", "throughput", "cost", "value"])
def test_ranking_matches_figures_computed_from_each_targets_own_report(sort: str) -> None:
    batch = 8
    figures = {}
    for spec in DEVICES:  # each target counted on its own, priced here
        report = layerprof.analyze(model(), input_size=(batch, N), target=spec)
        ms = report.total.roofline[spec.name].roofline_time_ms
        per_s = batch / (ms / 1e3)
        figures[spec.name] = {
            "time": ms,
            "throughput": -per_s,
            "cost": None if spec.price_per_hour_usd is None else spec.price_per_hour_usd / (per_s * 3600),
            "value": None if spec.price_usd is None else -per_s / spec.price_usd,
        }
    ranked = sorted(
        (name for name in figures if figures[name][sort] is not None), key=lambda n: figures[n][sort] or 0.0
    )
    result = layerprof.compare_devices(model(), DEVICES, input_size=(batch, N), sort=sort)
    assert [r.device for r in result.rows][: len(ranked)] == ranked
    assert result.best == ranked[0]
    assert [r.device for r in result.rows if r.best] == [ranked[0]]


def test_table_devices_counted_once_agree_with_one_target_at_a_time() -> None:
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1)).eval()
    result = layerprof.compare_devices(
        net, ["t4", "l4", "h100-sxm"], input_size=(2, 3, 32, 32), dtype="float16"
    )
    for name in ("t4", "l4", "h100-sxm"):
        alone = layerprof.analyze(net, input_size=(2, 3, 32, 32), dtype="float16", target=name)
        assert result.row(name).time_ms == pytest.approx(
            alone.total.roofline[name].roofline_time_ms, rel=1e-12
        )
        assert result.row(name).bound == alone.total.roofline[name].bound
    t4 = result.row("t4")
    assert t4.price_per_hour_usd == layerprof.get_device("t4").price_per_hour_usd is not None
    assert sum(t4.shares.values()) == pytest.approx(1.0)


def test_a_report_is_judged_as_it_is() -> None:
    report = layerprof.analyze(model(), input_size=(8, N), target=DEVICES)
    result = layerprof.compare_devices(report, ["slowflops"])
    assert [r.device for r in result.rows] == ["slowflops"]
    assert result.row("slowflops").time_ms == pytest.approx(hand_time_ms(8, SLOW_FLOPS), rel=1e-9)
    assert result.row("slowflops").batch == 8
    with pytest.raises(InvalidArgumentError, match="not among the report's targets"):
        layerprof.compare_devices(report, ["t4"])
    with pytest.raises(InvalidArgumentError, match="pass the model"):
        layerprof.compare_devices(report, max_batch=True)


def test_the_paragraph_is_built_from_the_numbers() -> None:
    result = layerprof.compare_devices(model(), DEVICES, input_size=(8, N), sort="cost")
    cheapest = min(
        (r for r in result.rows if r.usd_per_million_images is not None),
        key=lambda r: r.usd_per_million_images or math.inf,
    )
    # the baseline is the cheapest by the hour: slowflops ($0.5/h)
    assert result.answer.startswith(
        "On a slowflops this model (float32, inference step) is compute-bound at batch 8"
    )
    assert f"The cheapest per million images is {cheapest.device}" in result.answer
    # batch 8: noprice moves 4.26 MB at 5e11 B/s = 8.5 us, slowflops computes 16.8 MFLOP at 1e12 = 16.8 us
    speedup = hand_time_ms(8, SLOW_FLOPS) / hand_time_ms(8, NO_PRICE)
    assert f"The fastest, noprice (memory(DRAM)-bound), gives {speedup:.1f}x the images/s." in result.answer
    priced = layerprof.compare_devices(model(), DEVICES, input_size=(8, N), price_per_hour={"noprice": 2.0})
    assert f"gives {speedup:.1f}x the images/s for 4.0x the hourly price." in priced.answer
    dearer = layerprof.compare_devices(
        model(), DEVICES, input_size=(8, N), sort="cost", price_per_hour={"slowbw": 0.1}
    )
    assert dearer.answer != result.answer
    assert dearer.answer.startswith("On a slowbw")  # now the cheapest by the hour
    assert "The cheapest per million images is slowbw" in dearer.answer
    assert f"${dearer.row('slowbw').usd_per_million_images:#.3g}" in dearer.answer


def test_bad_arguments_name_the_value() -> None:
    with pytest.raises(InvalidArgumentError, match="'speed'"):
        layerprof.compare_devices(model(), DEVICES, input_size=(1, N), sort="speed")
    with pytest.raises(InvalidArgumentError, match=r"price_per_hour\['slowbw'\].*-1"):
        layerprof.compare_devices(model(), DEVICES, input_size=(1, N), price_per_hour={"slowbw": -1})
    with pytest.raises(InvalidArgumentError, match="'0'"):
        layerprof.compare_devices(model(), DEVICES, input_size=(1, N), price_per_hour={"slowbw": "0"})
    with pytest.raises(UnknownDeviceError, match=r"'slowbx'.*closest: slowbw"):
        layerprof.compare_devices(model(), DEVICES, input_size=(1, N), price_per_hour={"slowbx": 1.0})
    with pytest.raises(InvalidArgumentError, match=r"'t4'.*not among the devices compared"):
        layerprof.compare_devices(model(), DEVICES, input_size=(1, N), price_per_hour={"t4": 1.0})
    with pytest.raises(InvalidArgumentError, match="batch or max_batch"):
        layerprof.compare_devices(model(), DEVICES, input_size=(1, N), batch=2, max_batch=True)
    with pytest.raises(InvalidArgumentError, match="0"):
        layerprof.compare_devices(model(), DEVICES, input_size=(1, N), batch=0)


def test_the_model_is_left_as_it_was() -> None:
    net = model()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    layerprof.compare_devices(
        net, DEVICES, input_size=(2, N), max_batch=True, backward=True, optimizer="adam"
    )
    assert net.training and not net._forward_hooks and not net._forward_pre_hooks
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
