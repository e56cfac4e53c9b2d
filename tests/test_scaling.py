"""Data-parallel scaling (``predict_scaling``, ``layerprof scale``) and the interconnect table.

The model under test, written out so the expected values below can be checked by hand::

    compute   = forward + backward roofline times (backward = 2 x forward when there are none)
    all-reduce(N) = 2 (N - 1) / N x params x 4 B / bandwidth + 2 (N - 1) x latency
    step(N)   = compute + all-reduce(N), or forward + max(backward, all-reduce(N)) when overlapped
    speedup   = N x step(1) / step(N), efficiency = speedup / N

The hand-built report has a 1 ms forward row, a 2 ms backward row and 1,000,000 parameters, and the
toy link moves 1e9 B/s per direction with 1 us per step, so every figure is short arithmetic.
"""

from __future__ import annotations

import json
import math
import re
from types import MappingProxyType

import pytest
import torch
from torch import nn

import layerprof
from layerprof.analysis.scaling import ScalingPrediction, predict_scaling, ring_allreduce_s
from layerprof.cli import main
from layerprof.core.records import LayerRow, Verdict
from layerprof.errors import InvalidArgumentError, InvalidDeviceSpecError, UnknownDeviceError
from layerprof.hardware.links import LinkSpec
from layerprof.hardware.specs import DeviceSpec
from layerprof.hardware.table import get_device, get_link, list_links
from layerprof.report.facade import Report
from layerprof.walk.inputs import InputSpec, TensorSpec
from models import ConvBnReluNet

H100 = get_device("h100-sxm")
TOY_LINK = LinkSpec("toy", "Toy link", bandwidth_bytes_per_s=1e9, latency_s=1e-6)
PARAMS = 1_000_000
BATCH = 16


def _row(name: str, phase: str, time_ms: float, params: int = 0) -> LayerRow:
    verdict = Verdict(H100.name, "compute", "matrix", ridge_point=1.0, roofline_time_ms=time_ms)
    return LayerRow(
        name=name,
        kind="Linear",
        phase=phase,  # type: ignore[arg-type]
        params=params,
        flops=1,
        roofline=MappingProxyType({H100.name: verdict}),
    )


def _report(*rows: LayerRow, targets: tuple[DeviceSpec, ...] = (H100,)) -> Report:
    total = LayerRow(name="total", kind="Toy", params=sum(r.params for r in rows))
    inputs = InputSpec((TensorSpec((BATCH, 8), torch.float32, "meta"),))
    return Report(layers=rows, total=total, targets=targets, model_name="Toy", inputs=inputs)


@pytest.fixture
def toy_report() -> Report:
    # forward 1 ms, backward 2 ms
    return _report(_row("fc", "forward", 1.0, PARAMS), _row("fc", "backward", 2.0))


# --- predict_scaling against hand arithmetic ---------------------------------------------------


def test_step_time_without_overlap(toy_report: Report) -> None:
    prediction = predict_scaling(toy_report, gpus=(1, 2, 4, 8), link=TOY_LINK, overlap=False)
    assert prediction.gradient_bytes == 4_000_000  # 1e6 params x 4 B (float32)
    assert prediction.forward_ms == 1.0 and prediction.backward_ms == 2.0
    assert not prediction.backward_estimated
    assert [r.gpus for r in prediction.rows] == [1, 2, 4, 8]
    # N=2: 2*1/2 * 4e6 / 1e9 s = 4 ms, + 2*1 * 1 us = 0.002 ms -> 4.002 ms
    # N=4: 2*3/4 * 4e6 / 1e9 s = 6 ms, + 6 us                  -> 6.006 ms
    # N=8: 2*7/8 * 4e6 / 1e9 s = 7 ms, + 14 us                 -> 7.014 ms
    expected_allreduce = {1: 0.0, 2: 4.002, 4: 6.006, 8: 7.014}
    for row in prediction.rows:
        assert row.compute_ms == pytest.approx(3.0)
        assert row.allreduce_ms == pytest.approx(expected_allreduce[row.gpus])
        assert row.step_ms == pytest.approx(3.0 + expected_allreduce[row.gpus])
        assert row.speedup == pytest.approx(row.gpus * 3.0 / (3.0 + expected_allreduce[row.gpus]))
        assert row.efficiency == pytest.approx(3.0 / (3.0 + expected_allreduce[row.gpus]))
        # N x 16 samples per step of step_ms milliseconds
        assert row.samples_per_s == pytest.approx(
            row.gpus * BATCH / ((3.0 + expected_allreduce[row.gpus]) / 1e3)
        )
    assert prediction.row(8).speedup == pytest.approx(8 * 3.0 / 10.014)  # 2.3966...
    assert prediction.row(8).time_fraction == pytest.approx(10.014 / (8 * 3.0))


def test_buckets_overlap_the_backward_rows_that_come_after_them() -> None:
    # Two layers of 500,000 params (2 MB of float32 gradients each, above DDP's 1 MiB first bucket):
    # fc2's backward runs first (0-1 ms), fc1's second (1-2 ms), so fc2's bucket is ready at 1 ms.
    report = _report(
        _row("fc1", "forward", 0.5, PARAMS // 2),
        _row("fc2", "forward", 0.5, PARAMS // 2),
        _row("fc2", "backward", 1.0),
        _row("fc1", "backward", 1.0),
    )
    fast = LinkSpec("fast", "Fast toy link", bandwidth_bytes_per_s=2e9, latency_s=1e-6)
    prediction = predict_scaling(report, gpus=(1, 2, 8), link=fast)
    assert prediction.overlap and prediction.bucket_mb == 25.0
    # N=2: each bucket 2e6 / 2e9 s = 1 ms + 2 x 1 us: bucket 0 1 -> 2.002, bucket 1 2.002 -> 3.004
    two = prediction.row(2)
    assert [(b.start_ms, b.end_ms) for b in two.buckets] == [
        pytest.approx((1.0, 2.002)),
        pytest.approx((2.002, 3.004)),
    ]
    assert prediction.row(1).step_ms == pytest.approx(3.0)
    assert two.step_ms == pytest.approx(1.0 + 3.004)
    assert two.exposed_ms == pytest.approx(1.004) and two.allreduce_ms == pytest.approx(2.004)
    # N=8: 2*7/8 * 2e6 / 2e9 s = 1.75 ms + 14 us = 1.764 ms: 1 -> 2.764, 2.764 -> 4.528
    assert prediction.row(8).step_ms == pytest.approx(1.0 + 4.528)
    assert prediction.row(8).speedup == pytest.approx(8 * 3.0 / 5.528)
    # A faster link: bucket 0 (1 -> 1.5 ms) is hidden; the last bucket (2 -> 2.5 ms) never can be.
    faster = LinkSpec("faster", "Faster toy link", bandwidth_bytes_per_s=4e9, latency_s=0.0)
    hidden = predict_scaling(report, gpus=(2,), link=faster).row(2)
    assert hidden.step_ms == pytest.approx(3.5) and hidden.exposed_ms == pytest.approx(0.5)
    # One all-reduce after the backward: 4e6 / 4e9 s = 1 ms, all exposed.
    after = predict_scaling(report, gpus=(2,), link=faster, overlap=False).row(2)
    assert after.step_ms == pytest.approx(4.0) and after.exposed_ms == pytest.approx(1.0)


def test_one_gpu_has_no_allreduce(toy_report: Report) -> None:
    row = predict_scaling(toy_report, gpus=1, link="10gbe").row(1)
    assert row.allreduce_ms == 0.0
    assert row.step_ms == pytest.approx(3.0)
    assert row.speedup == 1.0 and row.efficiency == 1.0
    assert ring_allreduce_s(1e9, 1, "pcie3") == 0.0


def test_backward_estimated_as_twice_the_forward_when_absent() -> None:
    report = _report(_row("fc", "forward", 1.5, PARAMS))
    prediction = predict_scaling(report, gpus=(1, 2), link=TOY_LINK)
    assert prediction.backward_estimated
    assert prediction.backward_ms == pytest.approx(3.0)  # 2 x 1.5 ms
    assert prediction.row(2).step_ms == pytest.approx(1.5 + 3.0 + 4.002)
    text = prediction.table()
    assert "estimated" in text and "backward=True" in text


def test_grad_dtype_sets_the_gradient_bytes(toy_report: Report) -> None:
    half = predict_scaling(toy_report, gpus=(2,), link=TOY_LINK, grad_dtype=torch.float16)
    assert half.gradient_bytes == 2_000_000  # 1e6 params x 2 B
    assert half.grad_dtype == "float16"
    # 2*1/2 * 2e6 / 1e9 s = 2 ms + 0.002 ms
    assert half.row(2).allreduce_ms == pytest.approx(2.002)
    assert predict_scaling(toy_report, link=TOY_LINK, grad_dtype="bf16").gradient_bytes == 2_000_000


def test_tiny_model_against_its_rows_and_the_link_table() -> None:
    model = ConvBnReluNet().train()
    report = layerprof.analyze(model, input_size=(2, 3, 8, 8), target="h100-sxm", backward=True)
    assert report.backward, "analyze(backward=True) gives backward rows"
    prediction = predict_scaling(report, gpus=(1, 2, 8), link="nvlink4")

    forward_ms = sum(r.roofline["h100-sxm"].roofline_time_ms for r in report.layers if r.phase == "forward")
    backward_ms = sum(r.roofline["h100-sxm"].roofline_time_ms for r in report.layers if r.phase == "backward")
    # conv 8*3*3*3 = 216, bn 2*8 = 16, fc 8*5 + 5 = 45 -> 277 parameters
    params = 8 * 3 * 3 * 3 + 2 * 8 + 8 * 5 + 5
    assert params == sum(p.numel() for p in model.parameters())
    assert prediction.params == params
    assert prediction.gradient_bytes == params * 4
    assert prediction.forward_ms == pytest.approx(forward_ms)
    assert prediction.backward_ms == pytest.approx(backward_ms)
    assert prediction.batch_per_gpu == 2
    one = forward_ms + backward_ms
    # NVLink 4: 18 links x 25 GB/s per direction; NCCL's 3.4 us per ring step
    bandwidth, latency = 18 * 25e9, 3.4e-6
    for gpus in (2, 8):
        allreduce_s = 2 * (gpus - 1) / gpus * params * 4 / bandwidth + 2 * (gpus - 1) * latency
        row = prediction.row(gpus)
        assert row.allreduce_ms == pytest.approx(allreduce_s * 1e3)
        assert row.step_ms == pytest.approx(one + allreduce_s * 1e3)
        assert row.speedup == pytest.approx(gpus * one / (one + allreduce_s * 1e3))


def test_a_target_the_report_was_not_judged_on_is_judged_from_the_counts() -> None:
    model = ConvBnReluNet().train()
    on_t4 = layerprof.analyze(model, input_size=(2, 3, 8, 8), target="t4", backward=True)
    on_a100 = layerprof.analyze(model, input_size=(2, 3, 8, 8), target="a100", backward=True)
    from_t4 = predict_scaling(on_t4, gpus=(2,), target="a100", link="nvlink3")
    direct = predict_scaling(on_a100, gpus=(2,), link="nvlink3")
    assert from_t4.target == direct.target == "a100-40gb"
    assert from_t4.forward_ms == pytest.approx(direct.forward_ms)
    assert from_t4.backward_ms == pytest.approx(direct.backward_ms)
    assert predict_scaling(on_t4, gpus=(2,)).target == "t4"  # the report's first target by default


def test_table_and_dict(toy_report: Report) -> None:
    prediction = predict_scaling(toy_report, gpus=(1, 8), link=TOY_LINK)
    text = prediction.table()
    assert "Toy" in text and "h100-sxm" in text and "toy" in text
    lines = text.splitlines()
    eight = next(line for line in lines if line.startswith("8 "))
    # one bucket of 4 MB ready at the backward's end: all 7.014 ms exposed
    # step 3 + 7.014 = 10.014 ms; speedup 24 / 10.014 = 2.40x; efficiency 30%
    cells = re.split(r"\s{2,}", eight.strip())[:8]
    assert cells == ["8", "16", "3.000", "7.014", "7.014", "10.014", "2.40x", "30%"]
    assert lines[-1].startswith("Going from 1 to 8 h100-sxm GPUs over toy multiplies throughput by 2.40")
    assert "7.01 ms of the 10 ms step waits for it" in lines[-1]
    assert lines[-1] == prediction.paragraph()
    with pytest.raises(InvalidArgumentError, match="table format"):
        prediction.table(fmt="nope")
    document = json.loads(json.dumps(prediction.to_dict()))
    assert document["link"]["bandwidth_bytes_per_s"] == 1e9
    assert document["rows"][1]["allreduce_ms"] == pytest.approx(7.014)


def test_public_names() -> None:
    assert layerprof.predict_scaling is predict_scaling
    assert layerprof.get_link("nvlink4") is get_link("nvlink4")
    assert layerprof.list_links() == list_links()
    assert layerprof.LinkSpec is LinkSpec
    assert layerprof.ScalingPrediction is ScalingPrediction


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "gpus",
    [0, -2, 1.5, True, "8", [], [2, 2], [1, None], [1, 0]],
    ids=["zero", "negative", "float", "bool", "str", "empty", "duplicate", "none", "zero-in-list"],
)
def test_gpus_must_be_positive_ints(toy_report: Report, gpus: object) -> None:
    with pytest.raises(InvalidArgumentError, match=r"gpus|GPU count"):
        predict_scaling(toy_report, gpus=gpus, link=TOY_LINK)  # type: ignore[arg-type]


def test_unknown_link_and_target(toy_report: Report) -> None:
    with pytest.raises(UnknownDeviceError, match="nvlink4"):
        predict_scaling(toy_report, link="nvlink44")
    with pytest.raises(UnknownDeviceError, match="h100-sxm"):
        predict_scaling(toy_report, target="h1000")
    with pytest.raises(InvalidArgumentError, match="target"):
        predict_scaling(toy_report, target=3)  # type: ignore[arg-type]


def test_a_report_without_targets_names_the_choices() -> None:
    report = _report(_row("fc", "forward", 1.0, PARAMS), targets=())
    with pytest.raises(InvalidArgumentError, match=r"target=.*h100-sxm"):
        predict_scaling(report)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"overlap": "yes"}, "overlap"),
        ({"grad_dtype": torch.int8}, "floating"),
        ({"grad_dtype": "float13"}, "unknown dtype"),
    ],
    ids=["overlap", "int-grads", "bad-dtype"],
)
def test_bad_options(toy_report: Report, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        predict_scaling(toy_report, link=TOY_LINK, **kwargs)  # type: ignore[arg-type]


def test_a_report_is_required_and_must_predict_some_time() -> None:
    with pytest.raises(InvalidArgumentError, match="Report"):
        predict_scaling("resnet50")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="nothing to scale"):
        predict_scaling(_report(_row("fc", "forward", 0.0, PARAMS)), link=TOY_LINK)


# --- the link table --------------------------------------------------------------------------

LINKS = list_links()


def _key(label: str) -> str:
    return re.sub(r"[-_\s]+", "", label.lower())


def test_the_links_the_brief_names_are_there() -> None:
    names = [link.name for link in LINKS]
    assert names == ["pcie3", "pcie4", "pcie5", "nvlink2", "nvlink3", "nvlink4", "10gbe", "25gbe", "100gbe"]


@pytest.mark.parametrize("link", LINKS, ids=lambda link: link.name)
def test_link_figures_are_positive_with_a_source_each(link: LinkSpec) -> None:
    assert math.isfinite(link.bandwidth_bytes_per_s) and link.bandwidth_bytes_per_s > 0
    assert math.isfinite(link.latency_s) and 0 < link.latency_s < 1e-3
    assert link.full_name and link.name == link.name.lower()
    for figure in ("bandwidth_bytes_per_s", "latency_s"):
        assert "http" in link.sources.get(figure, ""), f"{link.name}.{figure} has no source"
    assert get_link(link.name) is link
    for alias in link.aliases:
        assert get_link(alias.upper()) is link


def test_link_names_and_aliases_are_unique() -> None:
    labels = [_key(label) for link in LINKS for label in (link.name, *link.aliases)]
    assert len(labels) == len(set(labels))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pcie3", 8e9 * 16 * 128 / 130 / 8),  # 8 GT/s x 16 lanes x 128b/130b / 8 bits = 15.75 GB/s
        ("pcie4", 16e9 * 16 * 128 / 130 / 8),  # 31.5 GB/s
        ("pcie5", 32e9 * 16 * 128 / 130 / 8),  # 63.0 GB/s
        ("nvlink2", 300e9 / 2),  # V100: 6 links x 25 GB/s per direction, 300 GB/s both ways
        ("nvlink3", 600e9 / 2),  # A100: 12 x 25 GB/s
        ("nvlink4", 900e9 / 2),  # H100: 18 x 25 GB/s
        ("10gbe", 10e9 / 8),
        ("25gbe", 25e9 / 8),
        ("100gbe", 100e9 / 8),
    ],
)
def test_link_bandwidth_is_per_direction(name: str, expected: float) -> None:
    assert get_link(name).bandwidth_bytes_per_s == pytest.approx(expected, rel=2e-3)


def test_get_link_misses_and_bad_specs() -> None:
    with pytest.raises(UnknownDeviceError, match="closest: nvlink4"):
        get_link("nvlink-5")
    with pytest.raises(InvalidArgumentError, match="LinkSpec"):
        get_link(4)  # type: ignore[arg-type]
    assert get_link(TOY_LINK) is TOY_LINK
    with pytest.raises(InvalidDeviceSpecError, match="bandwidth"):
        LinkSpec("bad", "Bad", bandwidth_bytes_per_s=0.0, latency_s=0.0)
    with pytest.raises(InvalidDeviceSpecError, match="latency"):
        LinkSpec("bad", "Bad", bandwidth_bytes_per_s=1e9, latency_s=-1.0)
    assert LinkSpec(**{**TOY_LINK.to_dict(), "aliases": ("t",)}).aliases == ("t",)


# --- the command line ------------------------------------------------------------------------

# torchvision resnet18: 11,689,512 parameters (its model card), all-reduced as float32.
RESNET18_PARAMS = 11_689_512


def test_cli_table(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["scale", "torchvision:resnet18", "--input-size", "1,3,64,64", "--gpus", "1,2", "--link", "pcie4"]
    code = main([*argv, "--no-overlap", "--no-max-batch"])
    out, err = capsys.readouterr()
    assert code == 0, err
    # 2*1/2 * 11,689,512 * 4 B / 31.5e9 B/s = 1.4844 ms, + 2 * 5.7 us = 1.4958 ms
    allreduce_ms = (RESNET18_PARAMS * 4 / 31.5e9 + 2 * 5.7e-6) * 1e3
    assert f"{allreduce_ms:.3f}" in out
    assert "torchvision:resnet18 on h100-sxm over pcie4" in out
    assert "11,689,512 params" in out
    assert out.rstrip().splitlines()[-1].startswith("Going from 1 to 2 h100-sxm GPUs over pcie4")


def test_cli_json_with_batch_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "scale", "torchvision:resnet18", "--input-size", "1,3,64,64", "--batch", "2", "--gpus", "4",
        "--target", "a100", "--link", "nvlink3", "--dtype", "fp16", "--grad-dtype", "fp16", "--overlap",
        "--format", "json", "--no-max-batch",
    ]  # fmt: skip
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    document = json.loads(out)
    assert document["batch_per_gpu"] == 2
    assert document["target"] == "a100-40gb" and document["link"]["name"] == "nvlink3"
    assert document["overlap"] is True and document["backward_estimated"] is False
    assert document["gradient_bytes"] == RESNET18_PARAMS * 2  # fp16 gradients
    (row,) = document["rows"]
    # each bucket: 2*3/4 * its bytes / 300e9 B/s + 6 * 3.4 us; the buckets hold every gradient
    buckets = row["buckets"]
    assert len(buckets) > 1 and sum(b["bytes"] for b in buckets) == RESNET18_PARAMS * 2
    assert row["allreduce_ms"] == pytest.approx(
        sum((1.5 * b["bytes"] / 300e9 + 6 * 3.4e-6) * 1e3 for b in buckets)
    )
    forward, backward = document["forward_ms"], document["backward_ms"]
    # sgd (the default): read p and g, write p: 3 x 4 B per parameter over A100's 1,555 GB/s
    assert row["optimizer_ms"] == pytest.approx(RESNET18_PARAMS * 12 / 1555e9 * 1e3, rel=1e-3)
    end = buckets[-1]["end_ms"]
    assert row["step_ms"] == pytest.approx(forward + max(backward, end) + row["optimizer_ms"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--gpus", "0,2"], "--gpus"),
        (["--gpus", "2,2"], "twice"),
        (["--batch", "x"], "--batch"),
        (["--link", "nvlink9"], "unknown link"),
        (["--target", "h1000"], "unknown device"),
    ],
    ids=["gpus-zero", "gpus-twice", "batch", "link", "target"],
)
def test_cli_usage_errors(capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    code = main(["scale", "torchvision:resnet18", *extra])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and message in err and err.startswith("layerprof scale: error:")


def test_cli_refuses_an_exported_program(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scale", "model.pt2"]) == 2
    assert "backward" in capsys.readouterr().err


def test_devices_lists_the_links(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("nvlink4 "))
    assert "450" in line  # 900 GB/s both ways / 2
    assert all(link.name in out for link in LINKS)


def test_a_gathered_reports_allreduce_row_is_not_counted_twice() -> None:
    from dataclasses import replace

    from layerprof.distributed.allreduce import ALLREDUCE_ROW

    report = layerprof.analyze(
        nn.Sequential(nn.Linear(64, 64)), input_size=(8, 64), target="h100-sxm", backward=True
    )
    allreduce = replace(report.layers[-1], name=ALLREDUCE_ROW, kind="allreduce", bytes_read=10**9)
    with_row = replace(report, layers=(*report.layers, allreduce))
    plain = layerprof.predict_scaling(report, gpus=[1, 2], link="nvlink4")
    gathered = layerprof.predict_scaling(with_row, gpus=[1, 2], link="nvlink4")
    assert gathered.row(2).step_ms == plain.row(2).step_ms
